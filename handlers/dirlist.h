/* Directory listing (IIS's DirectoryListingModule): an HTML index of a directory. */
#ifndef H2POOL_DIRLIST_H
#define H2POOL_DIRLIST_H

#include <h2o.h>

/* Answers `req` with the listing of directory `physical` (URL path req->path_normalized). */
int h2p_dirlist_serve(h2o_req_t *req, const char *physical);

#endif

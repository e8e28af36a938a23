/* Directory listing (IIS's DirectoryListingModule): an HTML index of a directory. */
#ifndef H2POOL_DIRLIST_H
#define H2POOL_DIRLIST_H

#include <h2o.h>

/* Answers `req` with the listing of the directory open as `dir_fd` (URL path req->path_normalized);
 * `dir_fd` stays the caller's. */
int h2p_dirlist_serve(h2o_req_t *req, int dir_fd);

#endif

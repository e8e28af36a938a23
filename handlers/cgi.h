/* The CGI handler (RFC 3875): one process per request. */
#ifndef H2POOL_CGI_H
#define H2POOL_CGI_H

#include "handlers/cgi_env.h"

#define H2P_CGI_TIMEOUT_MS 90000 /* no output for this long: 504, the script is killed */

int h2p_cgi_handle(h2o_req_t *req, const h2p_cgi_script_t *script);

#endif

/* CGI/1.1 meta-variables (RFC 3875) for a request, shared by the FastCGI and CGI handlers. */
#ifndef H2POOL_CGI_ENV_H
#define H2POOL_CGI_ENV_H

#include <h2o.h>

typedef struct h2p_cgi_script {
    h2o_iovec_t script_name, path_info;
    const char *script_filename;
    const char *document_root;
} h2p_cgi_script_t;

typedef struct h2p_cgi_vars {
    h2o_iovec_t *pairs; /* name, value, name, value, ... (request pool memory) */
    size_t count;       /* number of iovecs: twice the number of variables */
    size_t cap;
} h2p_cgi_vars_t;

/* Every variable for `req` running `script`: RFC 3875 plus what PHP expects, HTTP_* headers
 * (hop-by-hop, `Proxy` and names with `_` left out, repeated headers joined). */
void h2p_cgi_vars_build(h2o_req_t *req, const h2p_cgi_script_t *script, h2p_cgi_vars_t *vars);

#endif

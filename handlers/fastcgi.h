/* The FastCGI handler: sends a request to a pool's worker and streams the answer back. */
#ifndef H2POOL_FASTCGI_H
#define H2POOL_FASTCGI_H

#include "frontend/server.h"

struct h2p_pool;
typedef struct h2p_fastcgi_thread h2p_fastcgi_thread_t;

typedef struct h2p_fastcgi_target {
    struct h2p_pool *pool;
    h2o_iovec_t script_name, path_info;
    const char *script_filename;
    const char *document_root;
} h2p_fastcgi_target_t;

int h2p_fastcgi_handle(h2o_req_t *req, const h2p_fastcgi_target_t *target);
/* A front-end thread's share (h2p_thread_t.fastcgi): set up when its loop starts, disposed when
 * it ends. */
void h2p_fastcgi_init_thread(h2p_thread_t *th);
void h2p_fastcgi_dispose_thread(h2p_thread_t *th);

#endif

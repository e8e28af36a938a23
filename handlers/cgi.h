/* The CGI handler (RFC 3875): one process per request. */
#ifndef H2POOL_CGI_H
#define H2POOL_CGI_H

#include "handlers/cgi_env.h"

#define H2P_CGI_TIMEOUT_MS 90000 /* no output for this long: 504, the script is killed */

struct h2p_thread;

int h2p_cgi_handle(h2o_req_t *req, const h2p_cgi_script_t *script);
/* A front-end thread's share (h2p_thread_t.cgi): set up when its loop starts; disposed when it
 * leaves its loop, before the loop's last runs (its channel to the spawner closes there). */
void h2p_cgi_init_thread(struct h2p_thread *th);
void h2p_cgi_dispose_thread(struct h2p_thread *th);

#endif

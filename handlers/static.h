/* The static file handler: a file opened once beneath the root, and sent from that descriptor. */
#ifndef H2POOL_STATIC_H
#define H2POOL_STATIC_H

#include "frontend/router.h"

/* Serves `physical` (the file behind req->path_normalized in the scope); always answers. */
int h2p_static_serve(h2o_req_t *req, h2p_scope_rt_t *scope, const char *physical);
/* 1 when `physical` (inside `app`'s root) resolves to a place outside the root through a symlink. */
int h2p_static_escapes_root(const h2p_app_rt_t *app, const char *physical);
/* Forgets this thread's open files and symlink verdicts (after every loop iteration). */
void h2p_static_clear_cache(void);
/* The thread's cache of open files (h2p_thread_t.static_cache), made when the thread starts. */
void h2p_static_init_thread(h2p_thread_t *th);
/* Frees the thread's cache; on the thread itself, after its loop has ended. */
void h2p_static_dispose_thread(h2p_thread_t *th);

#endif

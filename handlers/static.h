/* The static file handler: libh2o's file handler behind h2pool's path checks. */
#ifndef H2POOL_STATIC_H
#define H2POOL_STATIC_H

#include "frontend/router.h"

/* Serves `physical` (the file behind req->path_normalized in the scope); always answers. */
int h2p_static_serve(h2o_req_t *req, h2p_scope_rt_t *scope, const char *physical);
/* 1 when `physical` (inside `app`'s root) resolves to a place outside the root through a symlink. */
int h2p_static_escapes_root(const h2p_app_rt_t *app, const char *physical);
/* Forgets this thread's symlink verdicts (after every loop iteration). */
void h2p_static_clear_cache(void);

#endif

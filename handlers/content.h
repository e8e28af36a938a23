/* The content handler: the last handler of every scope's chain (IIS's handler mappings). */
#ifndef H2POOL_CONTENT_H
#define H2POOL_CONTENT_H

#include "frontend/router.h"

/* Appends the content handler of `scope` to `pathconf`'s handlers. */
void h2p_content_register(h2o_pathconf_t *pathconf, h2p_scope_rt_t *scope);

/* The physical path of URL path `path` inside `app` (in pool memory, NUL-terminated). */
char *h2p_physical_path(h2o_mem_pool_t *pool, const h2p_app_rt_t *app, const char *path, size_t len);

#endif

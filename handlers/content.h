/* The content handler: the last handler of every scope's chain (IIS's handler mappings). */
#ifndef H2POOL_CONTENT_H
#define H2POOL_CONTENT_H

#include <sys/types.h>

#include "frontend/router.h"

/* Appends the content handler of `scope` to `pathconf`'s handlers. */
void h2p_content_register(h2o_pathconf_t *pathconf, h2p_scope_rt_t *scope);

/* The type of what URL path `path` names under the scope's root (S_IFREG, S_IFDIR...), seen as
 * the static handler would see it (a symlink out of the root is nothing unless follow_symlinks);
 * 0 when nothing is there. */
mode_t h2p_resource_type(h2o_mem_pool_t *pool, const h2p_scope_rt_t *scope, const char *path, size_t len);

/* The physical path of URL path `path` inside `app` (in pool memory, NUL-terminated). */
char *h2p_physical_path(h2o_mem_pool_t *pool, const h2p_app_rt_t *app, const char *path, size_t len);

#endif

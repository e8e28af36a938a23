/*
 * Handler mappings, first match wins: a pool (FastCGI) or CGI; anything unmatched is served by
 * the static file handler (or the directory listing).  Runs last in a scope's chain, on the
 * path the request phase left in req->path_normalized (after default documents).
 */
#include "handlers/content.h"

#include <fnmatch.h>
#include <string.h>

#include "handlers/cgi.h"
#include "handlers/fastcgi.h"
#include "handlers/static.h"

typedef struct content_handler {
    h2o_handler_t super;
    h2p_scope_rt_t *scope;
} content_handler_t;

char *h2p_physical_path(h2o_mem_pool_t *pool, const h2p_app_rt_t *app, const char *path, size_t len)
{
    size_t rel = len >= app->prefix_len ? app->prefix_len : len;
    char *p = h2o_mem_alloc_pool(pool, app->root_len + (len - rel) + 1);
    memcpy(p, app->root, app->root_len);
    memcpy(p + app->root_len, path + rel, len - rel);
    p[app->root_len + len - rel] = '\0';
    return p;
}

/*
 * Handler-mapping patterns match like IIS's: a pattern without '/' ("*.php") is matched against
 * each path segment, one with '/' against the path up to each segment end.  The shortest match
 * is the script; what follows is PATH_INFO ("/index.php/a/b" -> "/index.php" + "/a/b").
 */
static int match_mapping(const char *pattern, const char *path, size_t path_len, size_t *script_len)
{
    int segment_only = strchr(pattern, '/') == NULL;
    char buf[path_len + 1];
    memcpy(buf, path, path_len);
    buf[path_len] = '\0';
    size_t seg_start = 1;
    for (size_t end = 1; end <= path_len; ++end) {
        if (end != path_len && buf[end] != '/')
            continue;
        char saved = buf[end];
        buf[end] = '\0';
        int hit = segment_only ? fnmatch(pattern, buf + seg_start, FNM_PERIOD) == 0 : fnmatch(pattern, buf, FNM_PATHNAME) == 0;
        buf[end] = saved;
        if (hit && end > seg_start) {
            *script_len = end;
            return 1;
        }
        seg_start = end + 1;
    }
    return 0;
}

static int on_content_req(h2o_handler_t *_self, h2o_req_t *req)
{
    content_handler_t *self = (void *)_self;
    h2p_scope_rt_t *scope = self->scope;
    h2p_app_rt_t *app = scope->app;
    h2o_iovec_t path = req->path_normalized;

    for (size_t h = 0; h != app->num_handlers; ++h) {
        h2p_handler_mapping_t *m = app->handlers + h;
        size_t script_len;
        if (!match_mapping(m->path, path.base, path.len, &script_len))
            continue;
        if (m->cgi) {
            h2p_cgi_script_t script = {h2o_iovec_init(path.base, script_len),
                                       h2o_iovec_init(path.base + script_len, path.len - script_len),
                                       h2p_physical_path(&req->pool, app, path.base, script_len), app->root};
            return h2p_cgi_handle(req, &script);
        }
        h2p_fastcgi_target_t target = {
            .pool = app->handler_pools[h],
            .script_name = h2o_iovec_init(path.base, script_len),
            .path_info = h2o_iovec_init(path.base + script_len, path.len - script_len),
            .script_filename = h2p_physical_path(&req->pool, app, path.base, script_len),
            .document_root = app->root,
        };
        return h2p_fastcgi_handle(req, &target);
    }
    return h2p_static_serve(req, scope, h2p_physical_path(&req->pool, app, path.base, path.len));
}

void h2p_content_register(h2o_pathconf_t *pathconf, h2p_scope_rt_t *scope)
{
    content_handler_t *self = (void *)h2o_create_handler(pathconf, sizeof(*self));
    self->super.on_req = on_content_req;
    self->scope = scope;
}

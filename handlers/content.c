/*
 * Handler mappings, first match wins: a pool (FastCGI) or CGI; anything unmatched is served by
 * the static file handler (or the directory listing).  Runs last in a scope's chain.
 *
 * What serves a request is resolved once, by h2p_request_served(), and the same answer is used
 * by the modules that decide about access (request filtering, authorization) and by the content
 * handler: the resource checked is the resource served.
 */
#include "handlers/content.h"

#include <fnmatch.h>
#include <string.h>
#include <sys/stat.h>

#include "handlers/cgi.h"
#include "handlers/fastcgi.h"
#include "handlers/static.h"
#include "native-modules/module.h"

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

mode_t h2p_resource_type(h2o_mem_pool_t *pool, const h2p_scope_rt_t *scope, const char *path, size_t len)
{
    const char *physical = h2p_physical_path(pool, scope->app, path, len);
    struct stat st;
    if (stat(physical, &st) != 0 || (!scope->follow_symlinks && h2p_static_escapes_root(scope->app, physical)))
        return 0;
    return st.st_mode & S_IFMT;
}

static int resource_exists(h2o_mem_pool_t *pool, const h2p_scope_rt_t *scope, h2p_resource_t resource, const char *path, size_t len)
{
    if (resource == H2P_RESOURCE_UNSPECIFIED)
        return 1;
    mode_t type = h2p_resource_type(pool, scope, path, len);
    switch (resource) {
    case H2P_RESOURCE_FILE:
        return type == S_IFREG;
    case H2P_RESOURCE_DIRECTORY:
        return type == S_IFDIR;
    default:
        return type == S_IFREG || type == S_IFDIR;
    }
}

/*
 * Handler-mapping patterns match like IIS's: a pattern without '/' ("*.php") is matched against
 * each path segment, one with '/' against the path up to each segment end.  Names starting with
 * a dot match too: ".config.php" is PHP, not source to send.  The first (shortest) match whose
 * resource exists is the script; what follows is PATH_INFO ("/index.php/a/b" -> "/index.php" +
 * "/a/b").  A match whose file does not exist is no match: "/img/evil.jpg/x.php" is not PHP.
 */
static int match_mapping(h2o_mem_pool_t *pool, const h2p_scope_rt_t *scope, const h2p_handler_mapping_t *m, const char *path,
                         size_t path_len, size_t *script_len)
{
    int segment_only = strchr(m->path, '/') == NULL;
    char buf[path_len + 1];
    memcpy(buf, path, path_len);
    buf[path_len] = '\0';
    size_t seg_start = 1;
    for (size_t end = 1; end <= path_len; ++end) {
        if (end != path_len && buf[end] != '/')
            continue;
        char saved = buf[end];
        buf[end] = '\0';
        int hit = segment_only ? fnmatch(m->path, buf + seg_start, 0) == 0 : fnmatch(m->path, buf, FNM_PATHNAME) == 0;
        buf[end] = saved;
        if (hit && end > seg_start && resource_exists(pool, scope, m->resource, path, end)) {
            *script_len = end;
            return 1;
        }
        seg_start = end + 1;
    }
    return 0;
}

/* "/dir/" -> "/dir/<first default document that is a file>", else the path itself. */
static h2o_iovec_t apply_default_document(h2o_req_t *req, const h2p_scope_rt_t *scope, h2o_iovec_t path)
{
    const h2p_strlist_t *docs = scope->default_documents;
    if (path.len == 0 || path.base[path.len - 1] != '/' || docs->count == 0)
        return path;
    for (size_t i = 0; i != docs->count; ++i) {
        h2o_iovec_t file = h2o_concat(&req->pool, path, h2o_iovec_init(docs->items[i], strlen(docs->items[i])));
        if (h2p_resource_type(&req->pool, scope, file.base, file.len) == S_IFREG)
            return file;
    }
    return path;
}

const struct h2p_served *h2p_request_served(h2p_request_t *r)
{
    h2o_req_t *req = r->req;
    h2o_iovec_t path = req->path_normalized;
    struct h2p_served *s = &r->served;
    if (s->from.base == path.base && s->from.len == path.len)
        return s;
    const h2p_scope_rt_t *scope = r->scope;
    const h2p_app_rt_t *app = scope->app;
    s->from = path;
    s->path = apply_default_document(req, scope, path);
    s->mapping = -1;
    s->script_len = s->path.len;
    for (size_t h = 0; h != app->num_handlers; ++h) {
        if (match_mapping(&req->pool, scope, app->handlers + h, s->path.base, s->path.len, &s->script_len)) {
            s->mapping = (int)h;
            break;
        }
    }
    return s;
}

static int on_content_req(h2o_handler_t *_self, h2o_req_t *req)
{
    content_handler_t *self = (void *)_self;
    h2p_app_rt_t *app = self->scope->app;
    h2p_request_t *r = h2p_request_of(req);
    const struct h2p_served *s = h2p_request_served(r);
    h2o_iovec_t path = s->path;

    r->track.stage = s->mapping < 0 ? H2P_STAGE_STATIC : app->handlers[s->mapping].cgi ? H2P_STAGE_CGI : H2P_STAGE_QUEUED;
    if (s->mapping < 0)
        return h2p_static_serve(req, self->scope, h2p_physical_path(&req->pool, app, path.base, path.len));
    h2o_iovec_t script_name = h2o_iovec_init(path.base, s->script_len),
                path_info = h2o_iovec_init(path.base + s->script_len, path.len - s->script_len);
    char *script_filename = h2p_physical_path(&req->pool, app, path.base, s->script_len);
    if (app->handlers[s->mapping].cgi) {
        h2p_cgi_script_t script = {script_name, path_info, script_filename, app->root};
        return h2p_cgi_handle(req, &script);
    }
    h2p_fastcgi_target_t target = {
        .pool = app->handler_pools[s->mapping],
        .script_name = script_name,
        .path_info = path_info,
        .script_filename = script_filename,
        .document_root = app->root,
    };
    return h2p_fastcgi_handle(req, &target);
}

void h2p_content_register(h2o_pathconf_t *pathconf, h2p_scope_rt_t *scope)
{
    content_handler_t *self = (void *)h2o_create_handler(pathconf, sizeof(*self));
    self->super.on_req = on_content_req;
    self->scope = scope;
}

#include "handlers/static.h"

#include "handlers/dirlist.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/*
 * libh2o's file handler already does what a static file needs (ETag, Last-Modified, 304,
 * Range/206/416, HEAD, MIME types, "dir" -> 301 "dir/").  What it does not do is keep symlinks
 * inside the root: open(2) follows them.  So unless the site allows it, the path is resolved
 * first and must land inside the root's own resolved path.
 */
static int escapes_root(const h2p_app_rt_t *app, const char *physical)
{
    char resolved[PATH_MAX];
    if (realpath(physical, resolved) == NULL)
        return 0; /* nothing there: the file handler answers 404 */
    size_t len = strlen(resolved);
    if (len < app->real_root_len || memcmp(resolved, app->real_root, app->real_root_len) != 0)
        return 1;
    return len != app->real_root_len && resolved[app->real_root_len] != '/' && app->real_root_len != 1;
}

int h2p_static_serve(h2o_req_t *req, h2p_scope_rt_t *scope, const char *physical)
{
    const h2p_app_rt_t *app = scope->app;
    if (!scope->follow_symlinks && escapes_root(app, physical)) {
        h2o_send_error_403(req, "Forbidden", "symbolic link leads out of the site root", 0);
        return 0;
    }
    size_t len = strlen(physical);
    if (len != 0 && physical[len - 1] == '/') {
        /* no default document here: a listing if allowed (IIS 403.14 when the directory exists) */
        struct stat st;
        if (stat(physical, &st) != 0 || !S_ISDIR(st.st_mode))
            h2o_send_error_404(req, "Not Found", "not found", 0);
        else if (scope->directory_listing)
            h2p_dirlist_serve(req, physical);
        else
            h2o_send_error_403(req, "Forbidden", "directory listing denied", 0);
        return 0;
    }
    return scope->file->on_req(scope->file, req);
}

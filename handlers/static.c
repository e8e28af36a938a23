#include "handlers/static.h"

#include "handlers/dirlist.h"
#include "native-modules/compression.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/*
 * libh2o's file handler already does what a static file needs (ETag, Last-Modified, 304,
 * Range/206/416, HEAD, MIME types, "dir" -> 301 "dir/").  What it does not do is keep symlinks
 * inside the root: open(2) follows them.  So unless the site allows it, the path must resolve
 * beneath the root.  openat2(RESOLVE_BENEATH) checks that in one system call; only what it
 * refuses (an absolute symlink, which may still point inside) takes the slow realpath check.
 */
static int escapes_root_slow(const h2p_app_rt_t *app, const char *physical)
{
    char resolved[PATH_MAX];
    if (realpath(physical, resolved) == NULL)
        return 0; /* nothing there: the file handler answers 404 */
    size_t len = strlen(resolved);
    if (len < app->real_root_len || memcmp(resolved, app->real_root, app->real_root_len) != 0)
        return 1;
    return len != app->real_root_len && resolved[app->real_root_len] != '/' && app->real_root_len != 1;
}

/* Verdicts of this loop iteration, like libh2o's file cache: a busy loop serves the same few
 * files to many requests, and a file changed on disk is seen from the next iteration on. */
#define VERDICTS 16
static __thread struct {
    char path[VERDICTS][192];
    int escapes[VERDICTS];
    size_t count;
} verdicts;

void h2p_static_clear_cache(void)
{
    verdicts.count = 0;
}

static int escapes_root_uncached(const h2p_app_rt_t *app, const char *physical);

int h2p_static_escapes_root(const h2p_app_rt_t *app, const char *physical)
{
    size_t len = strlen(physical);
    for (size_t i = 0; i != verdicts.count; ++i)
        if (memcmp(verdicts.path[i], physical, len + 1) == 0)
            return verdicts.escapes[i];
    int escapes = escapes_root_uncached(app, physical);
    if (verdicts.count != VERDICTS && len < sizeof(verdicts.path[0])) {
        memcpy(verdicts.path[verdicts.count], physical, len + 1);
        verdicts.escapes[verdicts.count++] = escapes;
    }
    return escapes;
}

static int escapes_root_uncached(const h2p_app_rt_t *app, const char *physical)
{
    static int no_openat2;
    const char *rel = physical + app->root_len;
    while (*rel == '/')
        ++rel;
    if (*rel == '\0')
        return 0;
    if (app->root_fd < 0 || no_openat2)
        return escapes_root_slow(app, physical);
    struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
    int fd = (int)syscall(SYS_openat2, app->root_fd, rel, &how, sizeof(how));
    if (fd >= 0) {
        close(fd);
        return 0;
    }
    switch (errno) {
    case EXDEV:
    case ELOOP:
        return escapes_root_slow(app, physical);
    case ENOSYS:
        no_openat2 = 1; /* kernel before 5.6 */
        return escapes_root_slow(app, physical);
    default:
        return 0; /* ENOENT, EACCES...: the file handler answers */
    }
}

int h2p_static_serve(h2o_req_t *req, h2p_scope_rt_t *scope, const char *physical)
{
    const h2p_app_rt_t *app = scope->app;
    if (!scope->follow_symlinks && h2p_static_escapes_root(app, physical)) {
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
    /* If-None-Match compares weakly (RFC 9110 13.1.2), libh2o's file handler byte for byte: a
     * client revalidating a compressed copy sends the weak tag compression gave it */
    ssize_t inm = h2o_find_header(&req->headers, H2O_TOKEN_IF_NONE_MATCH, -1);
    if (inm != -1 && req->headers.entries[inm].value.len > 2 && memcmp(req->headers.entries[inm].value.base, "W/", 2) == 0)
        req->headers.entries[inm].value =
            h2o_iovec_init(req->headers.entries[inm].value.base + 2, req->headers.entries[inm].value.len - 2);
    if (h2p_compression_send_precompressed(req, scope, physical) == 0)
        return 0;
    return scope->file->on_req(scope->file, req);
}

/*
 * Static files: the file served is the file checked.  A file is opened once, beneath the site
 * root, and the response (ETag, Last-Modified, 304, Range/206/416, HEAD, the body) comes from
 * that descriptor: no second open by name that a symlink swapped in meanwhile could redirect.
 *
 * Unless the scope has follow_symlinks, the open is openat2(RESOLVE_BENEATH) from the root's
 * descriptor: symlinks that stay inside the root work, one that leads out fails in the kernel.
 * RESOLVE_BENEATH also refuses absolute symlinks, even those pointing inside the root; those
 * take a slower path: the name is resolved (realpath), must lie beneath the root, and that
 * symlink-free name is then opened beneath the root refusing every symlink.  A component
 * swapped for a symlink in between makes that open fail; nothing outside the root is opened.
 * With follow_symlinks the file is opened from the root's descriptor following symlinks, with
 * the front end's rights (never root's).
 *
 * The descriptors a loop iteration opens are shared by its requests, as libh2o's file cache
 * does: a busy loop serves the same few files to many requests, and a file changed on disk is
 * seen from the next iteration on.  A response still streaming holds its own reference.  A small
 * file's bytes are read once, from that descriptor, by its first response that sends a body, and
 * the iteration's other responses copy them from memory: one pread() per file and iteration
 * instead of one per response (h2o's file handler reads each response's body from the file).
 * A client that takes gzip or brotli gets the compressed copy of the file that the compression
 * module kept, when it has one of this very file (native-modules/compression.c).
 */
#include "handlers/static.h"

#include "frontend/alloc.h"
#include "handlers/dirlist.h"
#include "native-modules/cache_store.h"
#include "native-modules/compression.h"
#include "native-modules/module.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* O_NONBLOCK: a FIFO in a root must not block the loop (reads of regular files ignore it) */
#define OPEN_FLAGS (O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
#define CHUNK_SIZE 65000           /* libh2o's file handler reads as much per turn */
#define SMALL_FILE_MAX (32 * 1024) /* read whole, once per loop iteration, and sent from memory */

/* An open file (or directory) and what its responses say about it. */
typedef struct static_file {
    unsigned refcnt; /* the cache's and each streaming response's (one thread only) */
    int fd;
    struct stat st;
    char etag[H2O_FILECACHE_ETAG_MAXLEN + 1]; /* as libh2o's file handler formats them */
    size_t etag_len;
    char last_modified[H2O_TIMESTR_RFC1123_LEN + 1];
    /* a small regular file's bytes, read from fd by the first response with a body (NULL: not
     * yet, or not small, or the read failed: then each response reads from fd) */
    char *content;
    size_t content_len; /* st_size, or less when the file shrank after the fstat */
    int content_tried;
} static_file_t;

#define CACHED_FILES 32
#define CACHED_PATH_MAX 256
#define VERDICTS 16
#define CACHED_ROOTS 8

/* A thread's state (h2p_thread_t.static_cache), forgotten after every loop iteration. */
struct h2p_static_cache {
    struct cached_open {
        const h2p_app_rt_t *app;
        int follow_symlinks;
        size_t rel_len;
        char rel[CACHED_PATH_MAX];
        int err; /* the open's errno, or 0 and `file` */
        static_file_t *file;
    } opens[CACHED_FILES];
    size_t num_opens;
    /* the roots of this iteration's applications, when they moved since the configuration loaded */
    struct moved_root {
        const h2p_app_rt_t *app; /* compared, never read through: its generation may be freed in the iteration */
        int fd;                  /* app->root_fd, or one opened for this iteration */
        char *real;              /* app->real_root, or realpath() of this iteration */
        size_t real_len;
        int owned; /* fd and real were opened for this iteration: closed and freed with it */
    } roots[CACHED_ROOTS];
    size_t num_roots;
    /* h2p_static_escapes_root()'s answers: per application, since the same file may be inside
     * one application's root and outside another's (compared, never read through) */
    struct {
        const h2p_app_rt_t *app;
        char path[192];
        int escapes;
    } verdicts[VERDICTS];
    size_t num_verdicts;
};

static atomic_int no_openat2; /* a kernel before 5.6 */

/* NULL off a front-end loop (a stale entry's refresh is still on one): nothing is cached */
static struct h2p_static_cache *this_cache(void)
{
    return h2p_this_thread != NULL ? h2p_this_thread->static_cache : NULL;
}

static void file_release(static_file_t *file)
{
    if (--file->refcnt == 0) {
        close(file->fd);
        free(file->content);
        free(file);
    }
}

void h2p_static_clear_cache(void)
{
    struct h2p_static_cache *cache = h2p_this_thread != NULL ? h2p_this_thread->static_cache : NULL;
    if (cache == NULL)
        return;
    for (size_t i = 0; i != cache->num_opens; ++i)
        if (cache->opens[i].file != NULL)
            file_release(cache->opens[i].file);
    cache->num_opens = 0;
    for (size_t i = 0; i != cache->num_roots; ++i) {
        if (cache->roots[i].owned) {
            close(cache->roots[i].fd);
            free(cache->roots[i].real);
        }
    }
    cache->num_roots = 0;
    cache->num_verdicts = 0;
}

void h2p_static_init_thread(h2p_thread_t *th)
{
    th->static_cache = h2p_calloc(1, sizeof(*th->static_cache));
}

void h2p_static_dispose_thread(h2p_thread_t *th)
{
    h2p_static_clear_cache();
    free(th->static_cache);
    th->static_cache = NULL;
}

/* ---- opening beneath the root ------------------------------------------------------------ */

/* A root to open beneath: its descriptor (-1: none) and its real path. */
typedef struct root {
    int fd;
    const char *real;
    size_t real_len;
} root_t;

/*
 * The application's root as its path names it now.  The descriptor opened with the
 * configuration serves while the path still leads to that directory (one stat() per loop
 * iteration checks); a root that is a symlink a deploy switched is opened anew for the
 * iteration, as a server opening files by name would see it.
 */
static root_t root_of(const h2p_app_rt_t *app)
{
    struct h2p_static_cache *cache = this_cache();
    if (cache == NULL || app->root_fd < 0)
        return (root_t){app->root_fd, app->real_root, app->real_root_len};
    struct moved_root *m = cache->roots;
    while (m != cache->roots + cache->num_roots && m->app != app)
        ++m;
    if (m == cache->roots + cache->num_roots) {
        if (cache->num_roots == CACHED_ROOTS)
            return (root_t){app->root_fd, app->real_root, app->real_root_len};
        ++cache->num_roots;
        *m = (struct moved_root){app, app->root_fd, app->real_root, app->real_root_len};
        struct stat st;
        if (stat(app->root, &st) == 0 && (st.st_dev != app->root_dev || st.st_ino != app->root_ino)) {
            char *real = realpath(app->root, NULL);
            int fd = real != NULL ? open(real, O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
            if (fd >= 0)
                *m = (struct moved_root){app, fd, real, strlen(real), 1};
            else
                free(real);
        }
    }
    return (root_t){m->fd, m->real, m->real_len};
}

/* The path of `physical` relative to its application's root ("." for the root itself). */
static const char *relative_path(const h2p_app_rt_t *app, const char *physical)
{
    const char *rel = physical + app->root_len;
    while (*rel == '/')
        ++rel;
    return *rel != '\0' ? rel : ".";
}

/* The part of the symlink-free absolute path `resolved` beneath the root's real path; NULL when outside. */
static const char *beneath_real_root(const root_t *root, const char *resolved)
{
    size_t n = root->real_len;
    if (n != 1) { /* (a root of "/" holds everything) */
        if (strncmp(resolved, root->real, n) != 0 || (resolved[n] != '\0' && resolved[n] != '/'))
            return NULL;
        resolved += n;
    }
    while (*resolved == '/')
        ++resolved;
    return *resolved != '\0' ? resolved : ".";
}

static int openat2_beneath(int dir_fd, const char *rel, uint64_t resolve)
{
    struct open_how how = {.flags = OPEN_FLAGS, .resolve = resolve};
    return (int)syscall(SYS_openat2, dir_fd, rel, &how, sizeof(how));
}

/* The slow path (an absolute symlink, or no openat2): open the resolved name, refusing symlinks. */
static int open_resolved(const root_t *root, const char *physical)
{
    char resolved[PATH_MAX];
    if (realpath(physical, resolved) == NULL)
        return -1;
    const char *rel = beneath_real_root(root, resolved);
    if (rel == NULL) {
        errno = EXDEV;
        return -1;
    }
    if (root->fd < 0 || atomic_load_explicit(&no_openat2, memory_order_relaxed))
        return open(resolved, OPEN_FLAGS | O_NOFOLLOW); /* (before Linux 5.6 a directory could still be swapped) */
    int fd = openat2_beneath(root->fd, rel, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
    if (fd < 0 && (errno == ELOOP || errno == EXDEV))
        errno = EXDEV; /* a component became a symlink since realpath looked: refused */
    return fd;
}

/* Opens `physical` (inside `app`'s root) for reading: a descriptor, or -1 and errno (EXDEV: a
 * symlink leads out of the root). */
static int open_beneath_root(const h2p_app_rt_t *app, int follow_symlinks, const char *physical)
{
    const char *rel = relative_path(app, physical);
    root_t root = root_of(app);
    if (root.fd < 0)
        return follow_symlinks ? open(physical, OPEN_FLAGS) : open_resolved(&root, physical);
    if (follow_symlinks)
        return openat(root.fd, rel, OPEN_FLAGS);
    if (!atomic_load_explicit(&no_openat2, memory_order_relaxed)) {
        int fd = openat2_beneath(root.fd, rel, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
        if (fd >= 0 || (errno != EXDEV && errno != ELOOP && errno != ENOSYS))
            return fd;
        if (errno == ENOSYS)
            atomic_store_explicit(&no_openat2, 1, memory_order_relaxed);
    }
    return open_resolved(&root, physical);
}

static int open_file(const h2p_app_rt_t *app, int follow_symlinks, const char *physical, static_file_t **out)
{
    int fd = open_beneath_root(app, follow_symlinks, physical);
    if (fd < 0)
        return errno;
    static_file_t *file = h2o_mem_alloc(sizeof(*file));
    if (fstat(fd, &file->st) != 0) {
        int err = errno;
        close(fd);
        free(file);
        return err;
    }
    file->refcnt = 1;
    file->fd = fd;
    file->content = NULL;
    file->content_len = 0;
    file->content_tried = 0;
    file->etag_len = (size_t)sprintf(file->etag, "\"%08x-%zx\"", (unsigned)file->st.st_mtime, (size_t)file->st.st_size);
    struct tm tm;
    gmtime_r(&file->st.st_mtime, &tm);
    h2o_time2str_rfc1123(file->last_modified, &tm);
    *out = file;
    return 0;
}

/* Opens `physical` as the scope allows: 0 and a reference the caller releases, or an errno. */
static int open_cached(const h2p_scope_rt_t *scope, const char *physical, static_file_t **out)
{
    const h2p_app_rt_t *app = scope->app;
    struct h2p_static_cache *cache = this_cache();
    const char *rel = relative_path(app, physical);
    size_t rel_len = strlen(rel);
    if (cache == NULL || rel_len >= CACHED_PATH_MAX)
        return open_file(app, scope->follow_symlinks, physical, out);
    for (size_t i = 0; i != cache->num_opens; ++i) {
        struct cached_open *c = cache->opens + i;
        if (c->app != app || c->follow_symlinks != scope->follow_symlinks || c->rel_len != rel_len ||
            memcmp(c->rel, rel, rel_len) != 0)
            continue;
        if (c->err == 0) {
            ++c->file->refcnt;
            *out = c->file;
        }
        return c->err;
    }
    int err = open_file(app, scope->follow_symlinks, physical, out);
    if (cache->num_opens != CACHED_FILES) {
        struct cached_open *c = cache->opens + cache->num_opens++;
        c->app = app;
        c->follow_symlinks = scope->follow_symlinks;
        c->rel_len = rel_len;
        memcpy(c->rel, rel, rel_len);
        c->err = err;
        c->file = err == 0 ? *out : NULL;
        if (err == 0)
            ++c->file->refcnt;
    }
    return err;
}

/* ---- symlink verdicts for those who decide by name (content.c, rewrite, output cache) ------ */

static int escapes_root_uncached(const h2p_app_rt_t *app, const char *physical)
{
    const char *rel = relative_path(app, physical);
    root_t root = root_of(app);
    if (root.fd < 0 || atomic_load_explicit(&no_openat2, memory_order_relaxed)) {
        char resolved[PATH_MAX];
        return realpath(physical, resolved) != NULL && beneath_real_root(&root, resolved) == NULL;
    }
    struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
    int fd = (int)syscall(SYS_openat2, root.fd, rel, &how, sizeof(how));
    if (fd >= 0) {
        close(fd);
        return 0;
    }
    if (errno == ENOSYS)
        atomic_store_explicit(&no_openat2, 1, memory_order_relaxed);
    if (errno == EXDEV || errno == ELOOP || errno == ENOSYS) {
        char resolved[PATH_MAX];
        return realpath(physical, resolved) != NULL && beneath_real_root(&root, resolved) == NULL;
    }
    return 0; /* ENOENT, EACCES...: the static handler answers */
}

int h2p_static_escapes_root(const h2p_app_rt_t *app, const char *physical)
{
    struct h2p_static_cache *cache = this_cache();
    size_t len = strlen(physical);
    if (cache != NULL && len < sizeof(cache->verdicts[0].path))
        for (size_t i = 0; i != cache->num_verdicts; ++i)
            if (cache->verdicts[i].app == app && memcmp(cache->verdicts[i].path, physical, len + 1) == 0)
                return cache->verdicts[i].escapes;
    int escapes = escapes_root_uncached(app, physical);
    if (cache != NULL && cache->num_verdicts != VERDICTS && len < sizeof(cache->verdicts[0].path)) {
        cache->verdicts[cache->num_verdicts].app = app;
        memcpy(cache->verdicts[cache->num_verdicts].path, physical, len + 1);
        cache->verdicts[cache->num_verdicts++].escapes = escapes;
    }
    return escapes;
}

/* ---- conditional requests and ranges ------------------------------------------------------- */

/* If-None-Match: a list of entity tags or "*", compared weakly (RFC 9110 13.1.2): a client
 * revalidating a compressed copy sends the weak tag compression gave it. */
static int etag_listed(h2o_iovec_t list, const char *etag, size_t etag_len)
{
    const char *p = list.base, *end = list.base + list.len;
    while (p != end) {
        while (p != end && (*p == ' ' || *p == '\t' || *p == ','))
            ++p;
        if (p != end && *p == '*')
            return 1;
        if (end - p >= 2 && p[0] == 'W' && p[1] == '/')
            p += 2;
        const char *tag = p;
        if (p != end && *p == '"') {
            const char *close = memchr(p + 1, '"', end - p - 1);
            p = close != NULL ? close + 1 : end;
        }
        while (p != end && *p != ',' && *p != ' ' && *p != '\t')
            ++p;
        if (h2o_memis(tag, p - tag, etag, etag_len))
            return 1;
        while (p != end && *p != ',')
            ++p;
    }
    return 0;
}

static int parse_http_date(h2o_iovec_t value, time_t *out)
{
    struct tm tm;
    if (h2o_time_parse_rfc1123(value.base, value.len, &tm) != 0)
        return -1;
    *out = timegm(&tm);
    return 0;
}

static int not_modified(h2o_req_t *req, const static_file_t *file)
{
    int has_inm = 0;
    for (ssize_t i = -1; (i = h2o_find_header(&req->headers, H2O_TOKEN_IF_NONE_MATCH, i)) != -1;) {
        has_inm = 1;
        if (etag_listed(req->headers.entries[i].value, file->etag, file->etag_len))
            return 1;
    }
    if (has_inm) /* If-Modified-Since is ignored then (RFC 9110 13.1.3) */
        return 0;
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_IF_MODIFIED_SINCE, -1);
    time_t since;
    return i != -1 && parse_http_date(req->headers.entries[i].value, &since) == 0 && since >= file->st.st_mtime;
}

/* If-Range (RFC 9110 13.1.5): the range only of the representation the client has. */
static int if_range_holds(h2o_req_t *req, const static_file_t *file)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_IF_RANGE, -1);
    if (i == -1)
        return 1;
    h2o_iovec_t v = req->headers.entries[i].value;
    if (v.len != 0 && (v.base[0] == '"' || v.base[0] == 'W'))
        return h2o_memis(v.base, v.len, file->etag, file->etag_len); /* strong comparison: a W/ tag never holds */
    time_t date;
    return parse_http_date(v, &date) == 0 && date == file->st.st_mtime;
}

enum range_kind { RANGE_IGNORED, RANGE_ONE, RANGE_UNSATISFIABLE };

static int parse_number(const char **p, const char *end, uint64_t *n)
{
    const char *start = *p;
    *n = 0;
    for (; *p != end && **p >= '0' && **p <= '9'; ++*p)
        *n = *n < UINT64_MAX / 10 - 1 ? *n * 10 + (uint64_t)(**p - '0') : UINT64_MAX;
    return *p != start;
}

/*
 * Range: bytes=... (RFC 9110 14.1.2).  One satisfiable range gives its offset and length; none
 * satisfiable gives 416; a malformed header, another unit or several satisfiable ranges are
 * ignored (the whole file: RFC 9110 14.2 lets a server do that, and it spares a
 * multipart/byteranges body that one request could make many times the file's size).
 */
static enum range_kind parse_range(h2o_iovec_t value, uint64_t size, uint64_t *off, uint64_t *len)
{
    const char *p = value.base, *end = value.base + value.len;
    if (value.len < 6 || !h2o_lcstris(p, 6, H2O_STRLIT("bytes=")))
        return RANGE_IGNORED;
    p += 6;
    size_t found = 0, satisfiable = 0;
    uint64_t first_start = 0, first_count = 0;
    while (p != end) {
        while (p != end && (*p == ' ' || *p == '\t' || *p == ','))
            ++p;
        if (p == end)
            break;
        uint64_t first, last;
        int has_first = parse_number(&p, end, &first);
        if (p == end || *p++ != '-')
            return RANGE_IGNORED;
        int has_last = parse_number(&p, end, &last);
        while (p != end && (*p == ' ' || *p == '\t'))
            ++p;
        if ((!has_first && !has_last) || (has_first && has_last && last < first) || (p != end && *p != ','))
            return RANGE_IGNORED;
        ++found;
        uint64_t start, count;
        if (has_first) {
            if (first >= size)
                continue;
            start = first;
            count = (has_last && last < size - 1 ? last : size - 1) - first + 1;
        } else {
            if (last == 0 || size == 0)
                continue;
            count = last < size ? last : size;
            start = size - count;
        }
        if (satisfiable++ == 0) {
            first_start = start;
            first_count = count;
        }
    }
    if (found == 0 || satisfiable > 1)
        return RANGE_IGNORED;
    if (satisfiable == 0)
        return RANGE_UNSATISFIABLE;
    *off = first_start;
    *len = first_count;
    return RANGE_ONE;
}

/* ---- sending from the descriptor ----------------------------------------------------------- */

typedef struct static_generator {
    h2o_generator_t super;
    static_file_t *file; /* NULL once the body is sent (or failed) */
    off_t off;
    size_t bytesleft;
    char *buf;
} static_generator_t;

static void generator_close(static_generator_t *self)
{
    if (self->file != NULL) {
        file_release(self->file);
        self->file = NULL;
    }
}

static void on_generator_dispose(void *self)
{
    generator_close(self); /* the request ended before its body did */
}

static void do_stop(h2o_generator_t *self, h2o_req_t *req)
{
    generator_close((static_generator_t *)self);
}

static ssize_t pread_fully(int fd, char *buf, size_t len, off_t off)
{
    size_t done = 0;
    while (done != len) {
        ssize_t got = pread(fd, buf + done, len - done, off + (off_t)done);
        if (got == -1 && errno == EINTR)
            continue;
        if (got == -1)
            return -1;
        if (got == 0)
            break;
        done += (size_t)got;
    }
    return (ssize_t)done;
}

/* A small file's bytes, read once from its descriptor; NULL for a file read per response. */
static const char *file_content(static_file_t *file)
{
    if (file->content_tried)
        return file->content;
    file->content_tried = 1;
    if (!S_ISREG(file->st.st_mode) || file->st.st_size <= 0 || file->st.st_size > SMALL_FILE_MAX)
        return NULL;
    char *content = h2o_mem_alloc((size_t)file->st.st_size);
    ssize_t got = pread_fully(file->fd, content, (size_t)file->st.st_size, 0);
    if (got < 0) {
        free(content);
        return NULL;
    }
    file->content = content;
    file->content_len = (size_t)got;
    return content;
}

static ssize_t read_chunk(static_generator_t *self, char *buf, size_t len)
{
    ssize_t got;
    const char *content = file_content(self->file);
    if (content != NULL) {
        size_t available = (size_t)self->off < self->file->content_len ? self->file->content_len - (size_t)self->off : 0;
        got = (ssize_t)(len < available ? len : available);
        if (got > 0)
            memcpy(buf, content + self->off, (size_t)got);
    } else {
        while ((got = pread(self->file->fd, buf, len, self->off)) == -1 && errno == EINTR)
            ;
    }
    if (got > 0) {
        self->off += got;
        self->bytesleft -= (size_t)got;
    }
    return got;
}

static void do_proceed(h2o_generator_t *_self, h2o_req_t *req)
{
    static_generator_t *self = (void *)_self;
    ssize_t got =
        self->file != NULL ? read_chunk(self, self->buf, self->bytesleft < CHUNK_SIZE ? self->bytesleft : CHUNK_SIZE) : -1;
    if (got <= 0) { /* a read error, or the file shrank: the response cannot be completed */
        generator_close(self);
        h2o_send(req, NULL, 0, H2O_SEND_STATE_ERROR);
        return;
    }
    h2o_send_state_t state = self->bytesleft != 0 ? H2O_SEND_STATE_IN_PROGRESS : H2O_SEND_STATE_FINAL;
    if (state == H2O_SEND_STATE_FINAL)
        generator_close(self);
    h2o_iovec_t chunk = h2o_iovec_init(self->buf, (size_t)got);
    h2o_send(req, &chunk, 1, state);
}

/* The connection's own buffer is filled (no filter in the way): libh2o's "pull" mode. */
static h2o_send_state_t do_pull(h2o_generator_t *_self, h2o_req_t *req, h2o_iovec_t *buf)
{
    static_generator_t *self = (void *)_self;
    if (buf->len > self->bytesleft)
        buf->len = self->bytesleft;
    ssize_t got = self->file != NULL ? read_chunk(self, buf->base, buf->len) : -1;
    if (got <= 0) {
        buf->len = 0;
        generator_close(self);
        return H2O_SEND_STATE_ERROR;
    }
    buf->len = (size_t)got;
    if (self->bytesleft != 0)
        return H2O_SEND_STATE_IN_PROGRESS;
    generator_close(self);
    return H2O_SEND_STATE_FINAL;
}

static void start_body(h2o_req_t *req, static_file_t *file, uint64_t off, uint64_t len)
{
    static_generator_t *self = h2o_mem_alloc_shared(&req->pool, sizeof(*self), on_generator_dispose);
    *self = (static_generator_t){{do_proceed, do_stop}, file, (off_t)off, (size_t)len, NULL};
    ++file->refcnt;
    h2o_start_response(req, &self->super);
    if (req->_ostr_top->start_pull != NULL) {
        req->_ostr_top->start_pull(req->_ostr_top, do_pull);
        return;
    }
    self->buf = h2o_mem_alloc_pool(&req->pool, len < CHUNK_SIZE ? (size_t)len : CHUNK_SIZE);
    do_proceed(&self->super, req);
}

static void add_header(h2o_req_t *req, const h2o_token_t *token, const char *value, size_t len)
{
    h2o_add_header(&req->pool, &req->res.headers, token, NULL, value, len);
}

/* Answers a GET or HEAD with `file` (a regular file) as a `type` representation. */
static void send_file(h2o_req_t *req, static_file_t *file, h2o_mimemap_type_t *type, int is_head)
{
    if (not_modified(req, file)) {
        /* a 304 carries the validator, not the representation's metadata (RFC 9110 15.4.5) */
        add_header(req, H2O_TOKEN_ETAG, file->etag, file->etag_len);
        req->res.status = 304;
        req->res.reason = "Not Modified";
        h2o_send_inline(req, NULL, 0);
        return;
    }
    uint64_t size = (uint64_t)file->st.st_size, off = 0, len = size;
    int partial = 0;
    ssize_t range = h2o_find_header(&req->headers, H2O_TOKEN_RANGE, -1);
    if (range != -1 && if_range_holds(req, file)) {
        switch (parse_range(req->headers.entries[range].value, size, &off, &len)) {
        case RANGE_ONE:
            partial = 1;
            break;
        case RANGE_UNSATISFIABLE: {
            char *content_range = h2o_mem_alloc_pool(&req->pool, sizeof("bytes */") + sizeof(H2O_UINT64_LONGEST_STR));
            add_header(req, H2O_TOKEN_CONTENT_RANGE, content_range,
                       (size_t)sprintf(content_range, "bytes */%llu", (unsigned long long)size));
            h2o_send_error_416(req, "Request Range Not Satisfiable", "requested range not satisfiable",
                               H2O_SEND_ERROR_KEEP_HEADERS);
            return;
        }
        case RANGE_IGNORED:
            break;
        }
    }
    req->res.status = partial ? 206 : 200;
    req->res.reason = partial ? "Partial Content" : "OK";
    req->res.content_length = (size_t)len;
    req->res.mime_attr = partial ? &h2o_mime_attributes_as_is : &type->data.attr;
    add_header(req, H2O_TOKEN_CONTENT_TYPE, type->data.mimetype.base, type->data.mimetype.len);
    add_header(req, H2O_TOKEN_LAST_MODIFIED, file->last_modified, H2O_TIMESTR_RFC1123_LEN);
    add_header(req, H2O_TOKEN_ETAG, file->etag, file->etag_len);
    if (partial) {
        char *content_range = h2o_mem_alloc_pool(&req->pool, sizeof("bytes -/") + 3 * sizeof(H2O_UINT64_LONGEST_STR));
        add_header(req, H2O_TOKEN_CONTENT_RANGE, content_range,
                   (size_t)sprintf(content_range, "bytes %llu-%llu/%llu", (unsigned long long)off,
                                   (unsigned long long)(off + len - 1), (unsigned long long)size));
    } else {
        add_header(req, H2O_TOKEN_ACCEPT_RANGES, H2O_STRLIT("bytes"));
    }
    if (is_head || len == 0) {
        static h2o_generator_t no_body = {NULL, NULL};
        h2o_start_response(req, &no_body);
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
        return;
    }
    start_body(req, file, off, len);
}

/* ---- the handler -------------------------------------------------------------------------- */

static h2o_mimemap_type_t *type_of(h2o_req_t *req, const char *physical)
{
    h2o_mimemap_type_t *type =
        h2o_mimemap_get_type_by_extension(req->pathconf->mimemap, h2o_get_filext(physical, strlen(physical)));
    return type->type == H2O_MIMEMAP_TYPE_MIMETYPE ? type : h2o_mimemap_get_default_type(req->pathconf->mimemap);
}

static int is_older(const struct stat *a, const struct stat *b)
{
    return a->st_mtim.tv_sec < b->st_mtim.tv_sec ||
           (a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec < b->st_mtim.tv_nsec);
}

/*
 * A precompressed sibling (file.br, file.gz) that compression picks for this client, opened
 * beneath the root like the file; an older sibling was left behind by an edit of the file.
 * 0 = answered with it.
 */
static int send_precompressed(h2o_req_t *req, h2p_scope_rt_t *scope, const char *physical, const static_file_t *file,
                              h2o_mimemap_type_t *type, int is_head)
{
    h2p_precompressed_choice_t choices[2];
    size_t n = h2p_compression_precompressed_choices(req, scope, type->data.mimetype, choices);
    size_t len = strlen(physical);
    for (size_t i = 0; i != n; ++i) {
        char *sibling = h2o_mem_alloc_pool(&req->pool, len + strlen(choices[i].ext) + 1);
        memcpy(sibling, physical, len);
        strcpy(sibling + len, choices[i].ext);
        static_file_t *compressed;
        if (open_cached(scope, sibling, &compressed) != 0)
            continue;
        if (S_ISREG(compressed->st.st_mode) && !is_older(&compressed->st, &file->st)) {
            h2p_compression_precompressed_sent(req, type->data.mimetype, choices[i].coding);
            send_file(req, compressed, type, is_head);
            file_release(compressed);
            return 0;
        }
        file_release(compressed);
    }
    return -1;
}

static void copy_release(void *p)
{
    h2p_cache_entry_release(*(h2p_cache_entry_t **)p);
}

/* The compressed copy compression kept of this file for this client's coding: no read, no
 * compression (or, the first time, compression is told to keep what it makes).  0 = answered. */
static int send_kept_copy(h2o_req_t *req, h2p_scope_rt_t *scope, const char *physical, const static_file_t *file,
                          h2o_mimemap_type_t *type, int is_head)
{
    if (is_head || h2o_find_header(&req->headers, H2O_TOKEN_RANGE, -1) != -1 || not_modified(req, file))
        return -1;
    h2p_cache_entry_t *copy = h2p_compression_kept_copy(req, scope, physical, &file->st, type->data.mimetype);
    if (copy == NULL)
        return -1;
    h2p_cache_entry_t **held = h2o_mem_alloc_shared(&req->pool, sizeof(*held), copy_release);
    *held = copy; /* the body is sent from the copy's memory */
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = copy->body.len;
    req->res.mime_attr = &type->data.attr;
    add_header(req, H2O_TOKEN_CONTENT_TYPE, type->data.mimetype.base, type->data.mimetype.len);
    add_header(req, H2O_TOKEN_LAST_MODIFIED, file->last_modified, H2O_TIMESTR_RFC1123_LEN);
    add_header(req, H2O_TOKEN_ETAG, file->etag, file->etag_len);
    static h2o_generator_t generator = {NULL, NULL};
    h2o_start_response(req, &generator);
    h2o_iovec_t body = copy->body;
    h2o_send(req, &body, 1, H2O_SEND_STATE_FINAL);
    return 0;
}

static void send_open_error(h2o_req_t *req, int err)
{
    switch (err) {
    case EXDEV:
        h2o_send_error_403(req, "Forbidden", "symbolic link leads out of the site root", 0);
        break;
    case ENOENT:
    case ENOTDIR:
    case ENAMETOOLONG:
        h2o_send_error_404(req, "Not Found", "not found", 0);
        break;
    case ENFILE:
    case EMFILE:
        h2o_send_error_503(req, "Service Unavailable", "please try again later", 0);
        break;
    default:
        h2o_send_error_403(req, "Access Forbidden", "access forbidden", 0);
        break;
    }
}

static void serve_directory(h2o_req_t *req, const h2p_scope_rt_t *scope, static_file_t *dir, int has_slash)
{
    if (!has_slash) {
        h2o_iovec_t dest = h2o_concat(&req->pool, req->path_normalized, h2o_iovec_init(H2O_STRLIT("/")));
        dest = h2o_uri_escape(&req->pool, dest.base, dest.len, "/");
        if (req->query_at != SIZE_MAX)
            dest = h2o_concat(&req->pool, dest, h2o_iovec_init(req->path.base + req->query_at, req->path.len - req->query_at));
        h2o_send_redirect(req, 301, "Moved Permanently", dest.base, dest.len);
    } else if (scope->directory_listing) {
        h2p_dirlist_serve(req, dir->fd);
    } else {
        /* no default document here: IIS's 403.14 */
        h2o_send_error_403(req, "Forbidden", "directory listing denied", 0);
    }
}

int h2p_static_serve(h2o_req_t *req, h2p_scope_rt_t *scope, const char *physical)
{
    static_file_t *file;
    int err = open_cached(scope, physical, &file);
    if (err != 0) {
        send_open_error(req, err);
        return 0;
    }
    size_t len = strlen(physical);
    int has_slash = len != 0 && physical[len - 1] == '/';
    int is_head = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    if (S_ISDIR(file->st.st_mode)) {
        serve_directory(req, scope, file, has_slash);
    } else if (!S_ISREG(file->st.st_mode) || has_slash) {
        h2o_send_error_404(req, "Not Found", "not found", 0); /* a device, FIFO or socket is no file to send */
    } else if (!is_head && !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"))) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET, HEAD"));
        h2o_send_error_405(req, "Method Not Allowed", "method not allowed", H2O_SEND_ERROR_KEEP_HEADERS);
    } else {
        h2o_mimemap_type_t *type = type_of(req, physical);
        if (send_precompressed(req, scope, physical, file, type, is_head) != 0 &&
            send_kept_copy(req, scope, physical, file, type, is_head) != 0)
            send_file(req, file, type, is_head);
    }
    file_release(file);
    return 0;
}

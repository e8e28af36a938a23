/*
 * Directory listing: names sorted (directories first), HTML-escaped, links percent-encoded,
 * with size and modification time.  HEAD gets the headers only; other methods 405.
 */
#include "handlers/dirlist.h"
#include "frontend/alloc.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct dir_entry {
    char *name;
    int is_dir;
    off_t size;
    time_t mtime;
} dir_entry_t;

static int compare_entries(const void *a, const void *b)
{
    const dir_entry_t *x = a, *y = b;
    if (x->is_dir != y->is_dir)
        return y->is_dir - x->is_dir;
    return strcmp(x->name, y->name);
}

/* Appends `s` to the buffer, escaped for HTML text and attributes. */
static void append_html(h2o_buffer_t **buf, const char *s, size_t len)
{
    for (size_t i = 0; i != len; ++i) {
        const char *rep = NULL;
        switch (s[i]) {
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '&':
            rep = "&amp;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        }
        size_t n = rep != NULL ? strlen(rep) : 1;
        h2o_iovec_t dst = h2o_buffer_reserve(buf, n);
        memcpy(dst.base, rep != NULL ? rep : s + i, n);
        (*buf)->size += n;
    }
}

static void append_str(h2o_buffer_t **buf, const char *s)
{
    size_t n = strlen(s);
    h2o_iovec_t dst = h2o_buffer_reserve(buf, n);
    memcpy(dst.base, s, n);
    (*buf)->size += n;
}

static void append_link(h2o_buffer_t **buf, h2o_mem_pool_t *pool, const char *name, int is_dir)
{
    h2o_iovec_t href = h2o_uri_escape(pool, name, strlen(name), NULL);
    append_str(buf, "<a href=\"");
    append_html(buf, href.base, href.len);
    append_str(buf, is_dir ? "/\">" : "\">");
    append_html(buf, name, strlen(name));
    append_str(buf, is_dir ? "/</a>" : "</a>");
}

int h2p_dirlist_serve(h2o_req_t *req, int dir_fd)
{
    int is_head = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    if (!is_head && !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"))) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET, HEAD"));
        h2o_send_error_405(req, "Method Not Allowed", "method not allowed", H2O_SEND_ERROR_KEEP_HEADERS);
        return 0;
    }
    /* a descriptor of its own (the caller's is shared): the same directory, its own read position */
    int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (dir == NULL) {
        if (fd >= 0)
            close(fd);
        h2o_send_error_404(req, "Not Found", "not found", 0);
        return 0;
    }
    dir_entry_t *entries = NULL;
    size_t count = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if (count == cap) {
            cap = cap != 0 ? cap * 2 : 64;
            entries = h2o_mem_realloc(entries, sizeof(*entries) * cap);
        }
        entries[count++] =
            (dir_entry_t){h2o_strdup(&req->pool, de->d_name, SIZE_MAX).base, S_ISDIR(st.st_mode), st.st_size, st.st_mtime};
    }
    closedir(dir);
    if (count > 1) /* an empty directory leaves entries NULL, which qsort() must not get (C11 7.22.5) */
        qsort(entries, count, sizeof(*entries), compare_entries);

    h2o_buffer_t *buf;
    h2o_buffer_init(&buf, &h2o_socket_buffer_prototype);
    h2o_iovec_t path = req->path_normalized;
    append_str(&buf, "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Index of ");
    append_html(&buf, path.base, path.len);
    append_str(&buf, "</title></head>\n<body><h1>Index of ");
    append_html(&buf, path.base, path.len);
    append_str(&buf, "</h1>\n<table>\n<tr><th>Name</th><th>Size</th><th>Last modified (UTC)</th></tr>\n");
    if (path.len > 1)
        append_str(&buf, "<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    for (size_t i = 0; i != count; ++i) {
        char cells[96], when[32];
        struct tm tm;
        gmtime_r(&entries[i].mtime, &tm);
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
        if (entries[i].is_dir)
            snprintf(cells, sizeof(cells), "</td><td>-</td><td>%s</td></tr>\n", when);
        else
            snprintf(cells, sizeof(cells), "</td><td>%lld</td><td>%s</td></tr>\n", (long long)entries[i].size, when);
        append_str(&buf, "<tr><td>");
        append_link(&buf, &req->pool, entries[i].name, entries[i].is_dir);
        append_str(&buf, cells);
    }
    append_str(&buf, "</table>\n</body></html>\n");
    free(entries);

    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/html; charset=utf-8"));
    h2o_iovec_t body = h2o_strdup(&req->pool, buf->bytes, buf->size);
    h2o_buffer_dispose(&buf);
    /* h2o_send_inline() leaves the length unset: HTTP/1.1 then chunks, but an HTTP/1.0 keep-alive
     * client gets a body it cannot delimit on a connection that stays open.  A HEAD announces the
     * length its GET would get. */
    req->res.content_length = body.len;
    h2o_send_inline(req, is_head ? NULL : body.base, is_head ? 0 : body.len);
    return 0;
}

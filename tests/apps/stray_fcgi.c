/*
 * stray_fcgi: a worker that writes out of turn, to prove that bytes a worker sends outside its
 * answer to a request never reach a client.  It speaks FastCGI by hand (no libfcgi) so that it
 * controls every write.  Each request is answered with
 *
 *     Content-Type: text/plain
 *
 *     pid=<pid> id=<request id> cookie=<HTTP_COOKIE>
 *
 * and then, as the request's query string `stray=<mode>` says, followed by a forged response
 * ("LEAKED pid=<pid> cookie=<this request's cookie>", which would reach the next client if the
 * front end took it for the next request's answer):
 *
 *     same-write       in the same write as the answer, right after its END_REQUEST, same id
 *     same-write-next  the same, forged for the next request id (this one's + 1)
 *     extra-stdout     STDOUT records only (a head and a body, no END_REQUEST), same write
 *     delayed          200 ms after the answer (the connection is idle by then), same id
 *     delayed-next     the same, forged for the next request id
 *     then-close       in the same write as the answer, then the connection is closed
 *     on-next          once the next request has arrived (before reading it): the forged
 *                      response with this request's id, then the answer to the next request
 *     on-next-next     the same, forged with this request's id + 1
 *     close            nothing forged: the connection is closed after the answer (allowed)
 *
 * `headers=1` in the query string adds the worker's own Server, Date and X-Pad headers.
 *
 * usage: stray_fcgi                    accept on fd 0 (spawned by a web server)
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "write_all.h"

enum { BEGIN_REQUEST = 1, END_REQUEST = 3, PARAMS = 4, STDIN = 5, STDOUT = 6, GET_VALUES = 9, GET_VALUES_RESULT = 10 };

typedef struct buffer {
    char *bytes;
    size_t size, capacity;
} buffer_t;

static void append(buffer_t *b, const void *src, size_t len)
{
    if (b->size + len > b->capacity) {
        b->capacity = (b->size + len) * 2;
        b->bytes = realloc(b->bytes, b->capacity);
    }
    memcpy(b->bytes + b->size, src, len);
    b->size += len;
}

static int read_full(int fd, void *dst, size_t len)
{
    char *p = dst;
    while (len != 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= n;
    }
    return 0;
}

static void add_record(buffer_t *b, int type, unsigned request_id, const char *data, size_t len)
{
    unsigned char padding = (unsigned char)(-len & 7);
    unsigned char header[8] = {1, type, request_id >> 8, request_id & 0xff, len >> 8, len & 0xff, padding, 0};
    static const char zeros[8];
    append(b, header, sizeof(header));
    append(b, data, len);
    append(b, zeros, padding);
}

/* A whole response: its STDOUT, the empty STDOUT, END_REQUEST (or without the last two). */
static void add_response(buffer_t *b, unsigned request_id, const char *stdout_data, int complete)
{
    add_record(b, STDOUT, request_id, stdout_data, strlen(stdout_data));
    if (!complete)
        return;
    add_record(b, STDOUT, request_id, "", 0);
    add_record(b, END_REQUEST, request_id, "\0\0\0\0\0\0\0\0", 8);
}

typedef struct request {
    unsigned id;
    char cookie[512], query[512];
} request_t;

static size_t nv_length(const unsigned char **p, const unsigned char *end)
{
    if (*p >= end)
        return 0;
    if (**p < 0x80)
        return *(*p)++;
    if (end - *p < 4)
        return 0;
    size_t len = ((size_t)((*p)[0] & 0x7f) << 24) | ((size_t)(*p)[1] << 16) | ((size_t)(*p)[2] << 8) | (*p)[3];
    *p += 4;
    return len;
}

static void copy_value(char *dst, size_t size, const unsigned char *src, size_t len)
{
    if (len >= size)
        len = size - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static void parse_params(request_t *r, const buffer_t *params)
{
    const unsigned char *p = (const unsigned char *)params->bytes, *end = p + params->size;
    while (p < end) {
        size_t name_len = nv_length(&p, end), value_len = nv_length(&p, end);
        if ((size_t)(end - p) < name_len + value_len)
            return;
        const unsigned char *name = p, *value = p + name_len;
        if (name_len == 11 && memcmp(name, "HTTP_COOKIE", 11) == 0)
            copy_value(r->cookie, sizeof(r->cookie), value, value_len);
        if (name_len == 12 && memcmp(name, "QUERY_STRING", 12) == 0)
            copy_value(r->query, sizeof(r->query), value, value_len);
        p += name_len + value_len;
    }
}

/* Reads one request up to its empty STDIN record (answering FCGI_GET_VALUES on the way, which
 * is how the front end sees that a worker is ready); -1 when the connection is gone. */
static int read_request(int fd, request_t *r)
{
    static char content[65535 + 255];
    buffer_t params = {NULL, 0, 0};
    memset(r, 0, sizeof(*r));
    for (;;) {
        unsigned char header[8];
        if (read_full(fd, header, sizeof(header)) != 0)
            break;
        size_t len = (header[4] << 8) | header[5];
        if (read_full(fd, content, len + header[6]) != 0)
            break;
        if (header[1] == GET_VALUES) {
            unsigned char result[8] = {1, GET_VALUES_RESULT, 0, 0, 0, 0, 0, 0};
            write_all(fd, result, sizeof(result));
        }
        if (header[1] == BEGIN_REQUEST)
            r->id = (header[2] << 8) | header[3];
        if (header[1] == PARAMS)
            append(&params, content, len);
        if (header[1] == STDIN && len == 0) {
            parse_params(r, &params);
            free(params.bytes);
            return 0;
        }
    }
    free(params.bytes);
    return -1;
}

static const char *mode_of(const request_t *r)
{
    const char *m = strstr(r->query, "stray=");
    return m != NULL ? m + 6 : "";
}

static int is_mode(const char *mode, const char *name)
{
    size_t n = strlen(name);
    return strncmp(mode, name, n) == 0 && (mode[n] == '\0' || mode[n] == '&');
}

static void add_forged(buffer_t *b, unsigned request_id, const request_t *r, int complete)
{
    char forged[1024];
    snprintf(forged, sizeof(forged), "Content-Type: text/plain\r\n\r\nLEAKED pid=%d cookie=%s\n", (int)getpid(), r->cookie);
    add_response(b, request_id & 0xffff, forged, complete);
}

/* Answers r on fd; returns 0 to keep the connection, -1 to close it.  *pending is the forged
 * response an on-next mode owes the next request (its id, or 0). */
static int answer(int fd, const request_t *r, unsigned *pending_id, request_t *pending_for)
{
    const char *mode = mode_of(r);
    char head[2048];
    snprintf(head, sizeof(head), "Content-Type: text/plain\r\n%s\r\npid=%d id=%u cookie=%s\n",
             strstr(r->query, "headers=1") != NULL
                 ? "Server: stray-app/1.0\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nX-Pad: avoid browser bug\r\n"
                 : "",
             (int)getpid(), r->id, r->cookie);
    buffer_t out = {NULL, 0, 0};
    add_response(&out, r->id, head, 1);
    int keep = 0;
    if (is_mode(mode, "same-write") || is_mode(mode, "then-close"))
        add_forged(&out, r->id, r, 1);
    else if (is_mode(mode, "same-write-next"))
        add_forged(&out, r->id + 1, r, 1);
    else if (is_mode(mode, "extra-stdout"))
        add_forged(&out, r->id, r, 0);
    write_all(fd, out.bytes, out.size);
    out.size = 0;
    if (is_mode(mode, "delayed") || is_mode(mode, "delayed-next")) {
        usleep(200 * 1000);
        add_forged(&out, is_mode(mode, "delayed") ? r->id : r->id + 1, r, 1);
        write_all(fd, out.bytes, out.size);
    } else if (is_mode(mode, "on-next") || is_mode(mode, "on-next-next")) {
        *pending_id = is_mode(mode, "on-next") ? r->id : r->id + 1;
        *pending_for = *r;
    } else if (is_mode(mode, "then-close") || is_mode(mode, "close")) {
        keep = -1;
    }
    free(out.bytes);
    return keep;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    unsigned pending_id = 0;
    request_t pending_for;
    for (;;) {
        int fd = accept(0, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            perror("accept");
            return 1;
        }
        for (;;) {
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            while (poll(&pfd, 1, -1) < 0 && errno == EINTR)
                ;
            char byte;
            if (pending_id != 0 && recv(fd, &byte, 1, MSG_PEEK) == 1) {
                /* the next request is here, unread: the forged response goes first */
                buffer_t out = {NULL, 0, 0};
                add_forged(&out, pending_id, &pending_for, 1);
                write_all(fd, out.bytes, out.size);
                free(out.bytes);
                pending_id = 0;
            }
            request_t r;
            if (read_request(fd, &r) != 0 || answer(fd, &r, &pending_id, &pending_for) != 0)
                break;
        }
        close(fd);
    }
}

/*
 * The FastCGI client.  One request at a time per worker, over the worker's kept connection
 * (FCGI_KEEP_CONN): the request's PARAMS and STDIN go out in one write, the worker's STDOUT is
 * parsed as a CGI response and streamed to the client as it arrives.  When more than
 * MAX_PENDING bytes wait for a slow client, reading from the worker stops (back-pressure), so
 * a large response never sits whole in memory.  Anything malformed from the worker ends in 502
 * and the worker is replaced; nothing a worker sends can crash the front end.
 */
#include "handlers/fastcgi.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/log.h"
#include "handlers/fcgi_proto.h"
#include "poolmgr/pool.h"

#define MAX_PENDING (256 * 1024)
#define MAX_HEAD (64 * 1024)
#define REQUEST_ID 1
#define MAX_CONNECT_ATTEMPTS 8  /* a refused connection sent nothing: the request goes to another worker */
#define CONNECT_TIMEOUT_MS 5000 /* a TCP endpoint that drops connection attempts counts as refusing */

typedef struct fcgi_request {
    h2o_generator_t super;
    h2o_req_t *req; /* NULL once the client's request is gone */
    h2p_thread_t *thread;
    h2p_pool_t *pool;
    h2p_pool_waiter_t waiter;
    h2p_worker_t *worker;
    h2o_socket_t *sock;
    h2o_buffer_t *request_records; /* BEGIN_REQUEST + PARAMS, built once (a retry resends it) */
    char *stdin_headers;           /* record headers for the body, which is sent from req->entity */
    h2o_timeout_entry_t timeout;
    h2o_buffer_t *head;     /* STDOUT until the CGI header block is complete */
    h2o_buffer_t *pending;  /* body bytes not yet given to h2o */
    h2o_buffer_t *inflight; /* body bytes h2o is sending */
    uint64_t body_left;     /* Content-Length from the worker, or UINT64_MAX */
    unsigned waiting : 1, started : 1, sending : 1, final_sent : 1, end_seen : 1, reused_connection : 1, reconnected : 1,
        retried : 1, got_output : 1, read_stopped : 1, error_pending : 1, connecting : 1;
    unsigned connect_attempts;
} fcgi_request_t;

/* request_timeout per pool differs: one h2o_timeout_t per distinct duration on each thread */
typedef struct thread_timeouts {
    struct {
        uint64_t ms;
        h2o_timeout_t timeout;
    } entries[16];
    size_t count;
} thread_timeouts_t;
static __thread thread_timeouts_t timeouts;

static void start_on_worker(fcgi_request_t *fr, h2p_worker_t *worker);
static void dispatch(fcgi_request_t *fr);
static void on_worker_read(h2o_socket_t *sock, const char *err);

static h2o_timeout_t *timeout_for(h2o_evloop_t *loop, uint64_t ms)
{
    for (size_t i = 0; i != timeouts.count; ++i)
        if (timeouts.entries[i].ms == ms)
            return &timeouts.entries[i].timeout;
    size_t i = timeouts.count < 16 ? timeouts.count++ : 15; /* 16 distinct limits: share the last */
    timeouts.entries[i].ms = ms;
    h2o_timeout_init(loop, &timeouts.entries[i].timeout, ms);
    return &timeouts.entries[i].timeout;
}

/* ---- FastCGI params (RFC 3875 meta-variables) ------------------------------------------ */

typedef struct params_builder {
    h2o_mem_pool_t *pool;
    h2o_iovec_t *pairs; /* name, value, name, value... */
    size_t count, cap;
} params_builder_t;

static void add_param(params_builder_t *b, const char *name, size_t name_len, const char *value, size_t value_len)
{
    if (b->count + 2 > b->cap) {
        size_t cap = b->cap * 2;
        h2o_iovec_t *pairs = h2o_mem_alloc_pool(b->pool, sizeof(*pairs) * cap);
        memcpy(pairs, b->pairs, sizeof(*pairs) * b->count);
        b->pairs = pairs;
        b->cap = cap;
    }
    b->pairs[b->count++] = h2o_iovec_init(name, name_len);
    b->pairs[b->count++] = h2o_iovec_init(value, value_len);
}

#define ADD_LIT(b, name, ...) add_param(b, H2O_STRLIT(name), __VA_ARGS__)
#define ADD_STR(b, name, s) add_param(b, H2O_STRLIT(name), s, strlen(s))

static int is_hop_by_hop(const h2o_token_t *token)
{
    return token == H2O_TOKEN_CONNECTION || token == H2O_TOKEN_KEEP_ALIVE || token == H2O_TOKEN_TE ||
           token == H2O_TOKEN_TRANSFER_ENCODING || token == H2O_TOKEN_UPGRADE || token == H2O_TOKEN_CONTENT_LENGTH ||
           token == H2O_TOKEN_CONTENT_TYPE || token == H2O_TOKEN_HTTP2_SETTINGS;
}

static void add_header_params(params_builder_t *b, h2o_req_t *req)
{
    for (size_t i = 0; i != req->headers.size; ++i) {
        h2o_header_t *h = req->headers.entries + i;
        if (h2o_iovec_is_token(h->name) && is_hop_by_hop((const h2o_token_t *)h->name))
            continue;
        /* "Proxy" would become HTTP_PROXY (httpoxy); "_" in a name could impersonate "-" */
        if (h2o_lcstris(h->name->base, h->name->len, H2O_STRLIT("proxy")) || memchr(h->name->base, '_', h->name->len) != NULL)
            continue;
        /* repeated headers are joined, as CGI has one variable per name */
        int seen = 0;
        for (size_t j = 0; j != i && !seen; ++j)
            seen = h2o_lcstris(req->headers.entries[j].name->base, req->headers.entries[j].name->len, h->name->base, h->name->len);
        if (seen)
            continue;
        h2o_iovec_t value = h->value;
        for (size_t j = i + 1; j != req->headers.size; ++j) {
            h2o_header_t *other = req->headers.entries + j;
            if (h2o_lcstris(other->name->base, other->name->len, h->name->base, h->name->len))
                value = h2o_concat(b->pool, value,
                                   h->name == &H2O_TOKEN_COOKIE->buf ? h2o_iovec_init(H2O_STRLIT("; "))
                                                                     : h2o_iovec_init(H2O_STRLIT(", ")),
                                   other->value);
        }
        char *name = h2o_mem_alloc_pool(b->pool, h->name->len + 5);
        memcpy(name, "HTTP_", 5);
        for (size_t k = 0; k != h->name->len; ++k) {
            char c = h->name->base[k];
            name[5 + k] = c == '-' ? '_' : (char)toupper((unsigned char)c);
        }
        add_param(b, name, h->name->len + 5, value.base, value.len);
    }
}

static char *format_address(h2o_mem_pool_t *pool, struct sockaddr *sa, socklen_t len, char **port)
{
    char *host = h2o_mem_alloc_pool(pool, NI_MAXHOST);
    *port = h2o_mem_alloc_pool(pool, sizeof(H2O_UINT16_LONGEST_STR));
    if (len == 0 || h2o_socket_getnumerichost(sa, len, host) == SIZE_MAX)
        strcpy(host, "");
    int32_t p = len == 0 ? -1 : h2o_socket_getport(sa);
    sprintf(*port, "%d", p < 0 ? 0 : p);
    return host;
}

static void build_request_records(fcgi_request_t *fr, const h2p_fastcgi_target_t *t)
{
    h2o_req_t *req = fr->req;
    params_builder_t b = {&req->pool, h2o_mem_alloc_pool(&req->pool, sizeof(h2o_iovec_t) * 64), 0, 64};

    ADD_LIT(&b, "GATEWAY_INTERFACE", H2O_STRLIT("CGI/1.1"));
    ADD_LIT(&b, "SERVER_SOFTWARE", H2O_STRLIT("h2pool/" H2POOL_VERSION));
    ADD_LIT(&b, "REQUEST_METHOD", req->method.base, req->method.len);
    /* the URI the client sent, even after an internal rewrite */
    ADD_LIT(&b, "REQUEST_URI", req->input.path.base, req->input.path.len);
    if (req->query_at != SIZE_MAX)
        ADD_LIT(&b, "QUERY_STRING", req->path.base + req->query_at + 1, req->path.len - req->query_at - 1);
    else
        ADD_LIT(&b, "QUERY_STRING", "", 0);
    ADD_LIT(&b, "SCRIPT_NAME", t->script_name.base, t->script_name.len);
    ADD_STR(&b, "SCRIPT_FILENAME", t->script_filename);
    ADD_STR(&b, "DOCUMENT_ROOT", t->document_root);
    ADD_LIT(&b, "DOCUMENT_URI", t->script_name.base, t->script_name.len);
    if (t->path_info.len != 0) {
        ADD_LIT(&b, "PATH_INFO", t->path_info.base, t->path_info.len);
        h2o_iovec_t translated = h2o_concat(&req->pool, h2o_iovec_init(t->document_root, strlen(t->document_root)), t->path_info);
        ADD_LIT(&b, "PATH_TRANSLATED", translated.base, translated.len);
    }
    if (req->version >= 0x200)
        ADD_LIT(&b, "SERVER_PROTOCOL", H2O_STRLIT("HTTP/2.0"));
    else if (req->version == 0x100)
        ADD_LIT(&b, "SERVER_PROTOCOL", H2O_STRLIT("HTTP/1.0"));
    else
        ADD_LIT(&b, "SERVER_PROTOCOL", H2O_STRLIT("HTTP/1.1"));
    int https = req->scheme == &H2O_URL_SCHEME_HTTPS;
    ADD_STR(&b, "REQUEST_SCHEME", https ? "https" : "http");
    if (https)
        ADD_LIT(&b, "HTTPS", H2O_STRLIT("on"));

    struct sockaddr_storage ss;
    socklen_t sl = req->conn->callbacks->get_sockname(req->conn, (void *)&ss);
    char *port, *addr = format_address(&req->pool, (void *)&ss, sl, &port);
    ADD_STR(&b, "SERVER_ADDR", addr);
    ADD_STR(&b, "SERVER_PORT", port);
    sl = req->conn->callbacks->get_peername(req->conn, (void *)&ss);
    addr = format_address(&req->pool, (void *)&ss, sl, &port);
    ADD_STR(&b, "REMOTE_ADDR", addr);
    ADD_STR(&b, "REMOTE_PORT", port);

    h2o_iovec_t host;
    uint16_t host_port;
    if (h2o_url_parse_hostport(req->authority.base, req->authority.len, &host, &host_port) == NULL)
        host = req->authority;
    ADD_LIT(&b, "SERVER_NAME", host.base, host.len);
    ADD_LIT(&b, "HTTP_HOST", req->authority.base, req->authority.len);

    ssize_t ct = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (ct != -1)
        ADD_LIT(&b, "CONTENT_TYPE", req->headers.entries[ct].value.base, req->headers.entries[ct].value.len);
    if (req->entity.base != NULL) {
        char *len = h2o_mem_alloc_pool(&req->pool, sizeof(H2O_UINT64_LONGEST_STR));
        ADD_LIT(&b, "CONTENT_LENGTH", len, sprintf(len, "%zu", req->entity.len));
    }
    ADD_LIT(&b, "REDIRECT_STATUS", H2O_STRLIT("200")); /* php-cgi's cgi.force_redirect wants it */
    add_header_params(&b, req);

    size_t size = 0;
    for (size_t i = 0; i < b.count; i += 2)
        size += h2p_fcgi_nv_size(b.pairs[i].len, b.pairs[i + 1].len);
    char *block = h2o_mem_alloc_pool(&req->pool, size), *p = block;
    for (size_t i = 0; i < b.count; i += 2)
        p = h2p_fcgi_nv_write(p, b.pairs[i].base, b.pairs[i].len, b.pairs[i + 1].base, b.pairs[i + 1].len);

    h2o_buffer_init(&fr->request_records, &h2o_socket_buffer_prototype);
    h2p_fcgi_encode_begin_request(&fr->request_records, REQUEST_ID, H2P_FCGI_RESPONDER, 1);
    h2p_fcgi_encode_stream(&fr->request_records, H2P_FCGI_PARAMS, REQUEST_ID, block, size);
    h2p_fcgi_encode_stream(&fr->request_records, H2P_FCGI_PARAMS, REQUEST_ID, NULL, 0);

    size_t body = req->entity.base != NULL ? req->entity.len : 0, records = (body + 65534) / 65535;
    fr->stdin_headers = malloc((records + 1) * H2P_FCGI_HEADER_LEN);
    for (size_t i = 0; i != records; ++i) {
        size_t len = body - i * 65535 < 65535 ? body - i * 65535 : 65535;
        h2p_fcgi_write_header(fr->stdin_headers + i * H2P_FCGI_HEADER_LEN, H2P_FCGI_STDIN, REQUEST_ID, (uint16_t)len, 0);
    }
    h2p_fcgi_write_header(fr->stdin_headers + records * H2P_FCGI_HEADER_LEN, H2P_FCGI_STDIN, REQUEST_ID, 0, 0);
}

/* ---- life cycle ------------------------------------------------------------------------- */

static void free_request(fcgi_request_t *fr)
{
    if (fr->request_records != NULL)
        h2o_buffer_dispose(&fr->request_records);
    free(fr->stdin_headers);
    if (fr->head != NULL)
        h2o_buffer_dispose(&fr->head);
    if (fr->pending != NULL)
        h2o_buffer_dispose(&fr->pending);
    if (fr->inflight != NULL)
        h2o_buffer_dispose(&fr->inflight);
    free(fr);
}

/* Lets go of the worker: the connection goes back with it when it is clean and idle. */
static void release_worker(fcgi_request_t *fr, h2p_release_outcome_t outcome, int request_done)
{
    if (h2o_timeout_is_linked(&fr->timeout))
        h2o_timeout_unlink(&fr->timeout);
    fr->connecting = 0;
    int fd = -1;
    if (fr->sock != NULL) {
        h2o_socket_export_t info;
        if (outcome == H2P_RELEASE_OK && fr->sock->input->size == 0 && !h2o_socket_is_writing(fr->sock) &&
            h2o_socket_export(fr->sock, &info) == 0) {
            fd = info.fd;
            h2o_buffer_dispose(&info.input);
        } else {
            if (outcome == H2P_RELEASE_OK)
                outcome = H2P_RELEASE_CLOSED;
            h2o_socket_close(fr->sock);
        }
        fr->sock = NULL;
    }
    if (fr->worker != NULL) {
        h2p_worker_release(fr->worker, outcome, fd, request_done);
        fr->worker = NULL;
    }
}

static void send_pending(fcgi_request_t *fr)
{
    if (fr->req == NULL || fr->sending || fr->final_sent || !fr->started)
        return;
    if (fr->error_pending) {
        fr->final_sent = 1;
        h2o_send(fr->req, NULL, 0, H2O_SEND_STATE_ERROR);
        return;
    }
    if (fr->pending->size == 0 && !fr->end_seen)
        return;
    h2o_buffer_t *t = fr->inflight;
    fr->inflight = fr->pending;
    fr->pending = t;
    fr->sending = 1;
    h2o_iovec_t vec = h2o_iovec_init(fr->inflight->bytes, fr->inflight->size);
    h2o_send_state_t state = fr->end_seen && fr->pending->size == 0 ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS;
    if (state == H2O_SEND_STATE_FINAL)
        fr->final_sent = 1;
    h2o_send(fr->req, &vec, vec.len != 0, state);
}

static void on_generator_proceed(h2o_generator_t *generator, h2o_req_t *req)
{
    fcgi_request_t *fr = (void *)generator;
    fr->sending = 0;
    h2o_buffer_consume(&fr->inflight, fr->inflight->size);
    if (fr->read_stopped && fr->sock != NULL && fr->pending->size < MAX_PENDING) {
        fr->read_stopped = 0;
        h2o_socket_read_start(fr->sock, on_worker_read);
    }
    send_pending(fr);
}

static void on_generator_stop(h2o_generator_t *generator, h2o_req_t *req)
{
    /* the client left mid-response: the worker is still writing, so its connection is not reusable */
    fcgi_request_t *fr = (void *)generator;
    release_worker(fr, H2P_RELEASE_CLOSED, 0);
}

static void on_request_dispose(void *p)
{
    fcgi_request_t *fr = *(fcgi_request_t **)p;
    fr->req = NULL;
    if (fr->waiting) {
        if (!h2p_pool_cancel(fr->pool, &fr->waiter))
            return; /* a worker is on its way: the hand-over frees fr */
        fr->waiting = 0;
    }
    release_worker(fr, H2P_RELEASE_CLOSED, 0);
    free_request(fr);
}

static void send_error(fcgi_request_t *fr, int status, const char *reason, const char *body)
{
    if (fr->req == NULL)
        return;
    if (fr->started) {
        fr->error_pending = 1;
        send_pending(fr);
        return;
    }
    fr->started = fr->final_sent = 1;
    if (status == 503) {
        h2o_add_header(&fr->req->pool, &fr->req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("5"));
        h2o_send_error_generic(fr->req, status, reason, body, H2O_SEND_ERROR_KEEP_HEADERS);
    } else {
        h2o_send_error_generic(fr->req, status, reason, body, 0);
    }
}

/* ---- the worker's answer ---------------------------------------------------------------- */

static void log_stderr(fcgi_request_t *fr, const char *data, size_t len)
{
    char scope[96];
    snprintf(scope, sizeof(scope), "pool %s", h2p_pool_name(fr->pool));
    while (len != 0) {
        const char *nl = memchr(data, '\n', len);
        size_t line = nl != NULL ? (size_t)(nl - data) : len;
        if (line != 0)
            h2p_log(H2P_LOG_WARN, scope, "worker %d: %.*s", fr->worker != NULL ? (int)h2p_worker_pid(fr->worker) : 0,
                    (int)(line > 2000 ? 2000 : line), data);
        if (nl == NULL)
            break;
        len -= line + 1;
        data = nl + 1;
    }
}

static int is_response_hop_by_hop(const char *name, size_t len)
{
    return h2o_lcstris(name, len, H2O_STRLIT("connection")) || h2o_lcstris(name, len, H2O_STRLIT("transfer-encoding")) ||
           h2o_lcstris(name, len, H2O_STRLIT("keep-alive")) || h2o_lcstris(name, len, H2O_STRLIT("upgrade")) ||
           h2o_lcstris(name, len, H2O_STRLIT("proxy-connection")) || h2o_lcstris(name, len, H2O_STRLIT("te")) ||
           h2o_lcstris(name, len, H2O_STRLIT("trailer"));
}

/* The CGI head is complete: turn it into the HTTP response head and start the response. */
static int start_response(fcgi_request_t *fr, const h2p_cgi_head_t *head)
{
    h2o_req_t *req = fr->req;
    req->res.status = head->status;
    req->res.reason = head->reason_len != 0 ? h2o_strdup(&req->pool, head->reason, head->reason_len).base : "OK";
    fr->body_left = UINT64_MAX;
    for (size_t i = 0; i != head->num_headers; ++i) {
        const h2p_cgi_header_t *h = head->headers + i;
        if (is_response_hop_by_hop(h->name, h->name_len))
            continue;
        if (h2o_lcstris(h->name, h->name_len, H2O_STRLIT("content-length"))) {
            size_t cl = h2o_strtosize(h->value, h->value_len);
            if (cl == SIZE_MAX)
                return -1;
            req->res.content_length = fr->body_left = cl;
            continue;
        }
        h2o_iovec_t name = h2o_strdup(&req->pool, h->name, h->name_len);
        h2o_strtolower(name.base, name.len);
        h2o_iovec_t value = h2o_strdup(&req->pool, h->value, h->value_len);
        const h2o_token_t *token = h2o_lookup_token(name.base, name.len);
        if (token != NULL)
            h2o_add_header(&req->pool, &req->res.headers, token, NULL, value.base, value.len);
        else
            h2o_add_header_by_str(&req->pool, &req->res.headers, name.base, name.len, 0, NULL, value.base, value.len);
    }
    fr->started = 1;
    h2o_start_response(req, &fr->super);
    return 0;
}

static void append_body(fcgi_request_t *fr, const char *data, size_t len)
{
    if (len > fr->body_left) /* never more than the Content-Length the worker announced */
        len = (size_t)fr->body_left;
    if (fr->body_left != UINT64_MAX)
        fr->body_left -= len;
    if (len == 0)
        return;
    h2o_iovec_t dst = h2o_buffer_reserve(&fr->pending, len);
    memcpy(dst.base, data, len);
    fr->pending->size += len;
}

/* STDOUT bytes: the CGI head first, then the body. Returns -1 on a malformed head. */
static int on_stdout(fcgi_request_t *fr, const char *data, size_t len)
{
    if (fr->started) {
        append_body(fr, data, len);
        return 0;
    }
    h2o_iovec_t dst = h2o_buffer_reserve(&fr->head, len);
    memcpy(dst.base, data, len);
    fr->head->size += len;
    h2p_cgi_head_t head;
    int consumed = h2p_cgi_parse_head(fr->head->bytes, fr->head->size, MAX_HEAD, &head);
    if (consumed == -2)
        return 0;
    if (consumed < 0 || fr->req == NULL || start_response(fr, &head) != 0)
        return -1;
    append_body(fr, fr->head->bytes + consumed, fr->head->size - (size_t)consumed);
    h2o_buffer_dispose(&fr->head);
    return 0;
}

static int retry_allowed(fcgi_request_t *fr)
{
    h2o_iovec_t m = fr->req->method;
    return h2p_pool_conf(fr->pool)->retry_on_crash && !fr->retried &&
           (h2o_memis(m.base, m.len, H2O_STRLIT("GET")) || h2o_memis(m.base, m.len, H2O_STRLIT("HEAD")) ||
            h2o_memis(m.base, m.len, H2O_STRLIT("OPTIONS")));
}

/* The connection ended before the response did. */
static void on_worker_gone(fcgi_request_t *fr)
{
    if (!fr->got_output && fr->req != NULL) {
        /* a kept connection the worker had closed: the request never reached it, send it again */
        if (fr->reused_connection && !fr->reconnected) {
            h2p_worker_t *w = fr->worker;
            h2o_socket_close(fr->sock);
            fr->sock = NULL;
            fr->worker = NULL;
            fr->reconnected = 1;
            start_on_worker(fr, w);
            return;
        }
        /* LOST, not CLOSED: a worker that hangs up mid-request is dying (or untrustworthy); given
         * back as idle before it is reaped, the retry below or the next request would get it again */
        release_worker(fr, H2P_RELEASE_LOST, 0);
        if (retry_allowed(fr)) {
            fr->retried = 1;
            dispatch(fr);
            return;
        }
    } else {
        release_worker(fr, H2P_RELEASE_LOST, 0);
    }
    send_error(fr, 502, "Bad Gateway", "the application's worker process ended before it finished its response");
}

/* No connection to the worker could be made: nothing was sent, so any request may go elsewhere. */
static void on_connect_failed(fcgi_request_t *fr)
{
    release_worker(fr, H2P_RELEASE_UNREACHABLE, 0);
    if (fr->req == NULL)
        return;
    if (++fr->connect_attempts < MAX_CONNECT_ATTEMPTS) {
        dispatch(fr);
        return;
    }
    send_error(fr, 502, "Bad Gateway", "the application's workers cannot be reached");
}

static void on_malformed(fcgi_request_t *fr, const char *what)
{
    h2p_warn("fastcgi", "pool %s: worker %d sent %s: replacing it", h2p_pool_name(fr->pool),
             fr->worker != NULL ? (int)h2p_worker_pid(fr->worker) : 0, what);
    release_worker(fr, H2P_RELEASE_BROKEN, 0);
    send_error(fr, 502, "Bad Gateway", "the application sent a malformed response");
}

static void on_worker_read(h2o_socket_t *sock, const char *err)
{
    fcgi_request_t *fr = sock->data;
    if (err != NULL) {
        if (sock->input->size != 0) { /* a record cut short: the worker sent something, and it is broken */
            on_malformed(fr, "a truncated FastCGI record");
            return;
        }
        on_worker_gone(fr);
        return;
    }
    /* request_timeout counts from the worker's last output */
    h2o_timeout_unlink(&fr->timeout);
    h2o_timeout_link(fr->thread->loop, timeout_for(fr->thread->loop, h2p_pool_conf(fr->pool)->request_timeout_ms), &fr->timeout);

    h2p_fcgi_record_t rec;
    ssize_t n;
    while ((n = h2p_fcgi_decode_record(sock->input->bytes, sock->input->size, &rec)) > 0) {
        fr->got_output = 1;
        if (rec.request_id == REQUEST_ID || rec.type == H2P_FCGI_GET_VALUES_RESULT || rec.type == H2P_FCGI_UNKNOWN_TYPE) {
            switch (rec.type) {
            case H2P_FCGI_STDOUT:
                if (on_stdout(fr, rec.content, rec.content_length) != 0) {
                    on_malformed(fr, fr->req == NULL ? "output for a request that is gone" : "a malformed CGI header block");
                    return;
                }
                break;
            case H2P_FCGI_STDERR:
                log_stderr(fr, rec.content, rec.content_length);
                break;
            case H2P_FCGI_END_REQUEST:
                h2o_buffer_consume(&sock->input, (size_t)n);
                if (!fr->started) {
                    on_malformed(fr, "END_REQUEST before a CGI header block");
                    return;
                }
                fr->end_seen = 1;
                if (fr->body_left != UINT64_MAX && fr->body_left != 0) {
                    release_worker(fr, H2P_RELEASE_CLOSED, 1);
                    h2p_warn("fastcgi", "pool %s: response shorter than its Content-Length", h2p_pool_name(fr->pool));
                    fr->error_pending = 1;
                } else {
                    release_worker(fr, H2P_RELEASE_OK, 1);
                }
                send_pending(fr);
                return;
            default: /* GET_VALUES_RESULT, UNKNOWN_TYPE and unknown types carry nothing for us */
                break;
            }
        }
        h2o_buffer_consume(&sock->input, (size_t)n);
    }
    if (n < 0) {
        on_malformed(fr, "a malformed FastCGI record");
        return;
    }
    send_pending(fr);
    if (fr->pending->size >= MAX_PENDING) { /* back-pressure: the client reads slower than the worker writes */
        fr->read_stopped = 1;
        h2o_socket_read_stop(sock);
    }
}

static void on_request_written(h2o_socket_t *sock, const char *err)
{
    /* a failed write shows up as an error on the read side too */
}

static void on_timeout(h2o_timeout_entry_t *entry)
{
    fcgi_request_t *fr = H2O_STRUCT_FROM_MEMBER(fcgi_request_t, timeout, entry);
    if (fr->connecting) {
        fr->connecting = 0;
        on_connect_failed(fr);
        return;
    }
    h2p_warn("fastcgi", "pool %s: worker %d sent nothing for request_timeout (%llu ms): killing it", h2p_pool_name(fr->pool),
             fr->worker != NULL ? (int)h2p_worker_pid(fr->worker) : 0,
             (unsigned long long)h2p_pool_conf(fr->pool)->request_timeout_ms);
    release_worker(fr, H2P_RELEASE_BROKEN, 0);
    send_error(fr, 504, "Gateway Timeout", "the application did not answer in time");
}

static void send_request(fcgi_request_t *fr);

static void on_connected(h2o_socket_t *sock, const char *err)
{
    fcgi_request_t *fr = sock->data;
    fr->connecting = 0;
    if (err != NULL) {
        on_connect_failed(fr);
        return;
    }
    send_request(fr);
}

static void start_on_worker(fcgi_request_t *fr, h2p_worker_t *worker)
{
    fr->worker = worker;
    fr->got_output = 0;
    int reused, connecting, fd = h2p_worker_connect(worker, &reused, &connecting);
    fr->reused_connection = reused;
    if (fd < 0) {
        on_connect_failed(fr);
        return;
    }
    fr->sock = h2o_evloop_socket_create(fr->thread->loop, fd, connecting ? H2O_SOCKET_FLAG_IS_CONNECTING : 0);
    fr->sock->data = fr;
    if (connecting) { /* a TCP endpoint: a refusal shows once the connection is done, as SO_ERROR */
        uint64_t limit = h2p_pool_conf(fr->pool)->request_timeout_ms;
        fr->connecting = 1;
        h2o_socket_notify_write(fr->sock, on_connected);
        h2o_timeout_link(fr->thread->loop, timeout_for(fr->thread->loop, limit < CONNECT_TIMEOUT_MS ? limit : CONNECT_TIMEOUT_MS),
                         &fr->timeout);
        return;
    }
    send_request(fr);
}

static void send_request(fcgi_request_t *fr)
{
    h2o_req_t *req = fr->req;
    size_t body = req->entity.base != NULL ? req->entity.len : 0, records = (body + 65534) / 65535;
    h2o_iovec_t *vecs = h2o_mem_alloc_pool(&req->pool, sizeof(*vecs) * (2 * records + 2)), *v = vecs;
    *v++ = h2o_iovec_init(fr->request_records->bytes, fr->request_records->size);
    for (size_t i = 0; i != records; ++i) {
        size_t len = body - i * 65535 < 65535 ? body - i * 65535 : 65535;
        *v++ = h2o_iovec_init(fr->stdin_headers + i * H2P_FCGI_HEADER_LEN, H2P_FCGI_HEADER_LEN);
        *v++ = h2o_iovec_init(req->entity.base + i * 65535, len);
    }
    *v++ = h2o_iovec_init(fr->stdin_headers + records * H2P_FCGI_HEADER_LEN, H2P_FCGI_HEADER_LEN);
    h2o_socket_write(fr->sock, vecs, v - vecs, on_request_written);
    h2o_socket_read_start(fr->sock, on_worker_read);
    if (h2o_timeout_is_linked(&fr->timeout))
        h2o_timeout_unlink(&fr->timeout);
    h2o_timeout_link(fr->thread->loop, timeout_for(fr->thread->loop, h2p_pool_conf(fr->pool)->request_timeout_ms), &fr->timeout);
}

static void dispatch(fcgi_request_t *fr)
{
    h2p_worker_t *worker;
    fr->reconnected = 0; /* (that was about another worker's kept connection) */
    switch (h2p_pool_acquire(fr->pool, &fr->waiter, &worker)) {
    case H2P_ACQUIRE_READY:
        start_on_worker(fr, worker);
        break;
    case H2P_ACQUIRE_QUEUED:
        fr->waiting = 1;
        break;
    case H2P_ACQUIRE_QUEUE_FULL:
        send_error(fr, 503, "Service Unavailable", "the application pool's queue is full");
        break;
    case H2P_ACQUIRE_UNAVAILABLE:
        send_error(fr, 503, "Service Unavailable", "none of the application pool's endpoints can be reached");
        break;
    default:
        send_error(fr, 503, "Service Unavailable", "the application pool is stopped");
        break;
    }
}

/* A hand-over from the pool (on this thread): a worker, or a refusal. */
static void on_dispatch_messages(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    while (!h2o_linklist_is_empty(messages)) {
        h2p_pool_waiter_t *waiter = H2O_STRUCT_FROM_MEMBER(h2p_pool_waiter_t, message.link, messages->next);
        h2o_linklist_unlink(&waiter->message.link);
        fcgi_request_t *fr = H2O_STRUCT_FROM_MEMBER(fcgi_request_t, waiter, waiter);
        fr->waiting = 0;
        if (waiter->state == H2P_WAITER_ABANDONED) {
            if (waiter->worker != NULL)
                h2p_worker_release(waiter->worker, H2P_RELEASE_UNUSED, -1, 0);
            free_request(fr);
            continue;
        }
        waiter->state = H2P_WAITER_IDLE;
        if (waiter->worker != NULL)
            start_on_worker(fr, waiter->worker);
        else
            send_error(fr, waiter->status, "Service Unavailable",
                       waiter->status == 503 ? "no worker of the application pool became available" : "error");
    }
}

void h2p_fastcgi_init_thread(h2p_thread_t *th)
{
    h2o_multithread_register_receiver(th->queue, &th->dispatch, on_dispatch_messages);
}

int h2p_fastcgi_handle(h2o_req_t *req, const h2p_fastcgi_target_t *target)
{
    fcgi_request_t *fr = calloc(1, sizeof(*fr));
    fr->super.proceed = on_generator_proceed;
    fr->super.stop = on_generator_stop;
    fr->req = req;
    fr->thread = h2p_this_thread;
    fr->pool = target->pool;
    fr->waiter.thread = fr->thread;
    fr->timeout.cb = on_timeout;
    h2o_buffer_init(&fr->head, &h2o_socket_buffer_prototype);
    h2o_buffer_init(&fr->pending, &h2o_socket_buffer_prototype);
    h2o_buffer_init(&fr->inflight, &h2o_socket_buffer_prototype);
    *(fcgi_request_t **)h2o_mem_alloc_shared(&req->pool, sizeof(fr), on_request_dispose) = fr;
    build_request_records(fr, target);
    dispatch(fr);
    return 0;
}

#include "handlers/cgi_response.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "handlers/fcgi_proto.h"

#define READ_SLICE (64 * 1024)

const char *h2p_read_slice(h2o_socket_t *sock)
{
    h2o_iovec_t buf = h2o_buffer_reserve(&sock->input, READ_SLICE);
    if (buf.base == NULL)
        return "error";
    ssize_t r;
    while ((r = read(h2o_socket_get_fd(sock), buf.base, READ_SLICE)) < 0 && errno == EINTR)
        ;
    if (r > 0) {
        sock->input->size += (size_t)r;
        return NULL;
    }
    return r == 0 ? "closed" : errno == EAGAIN ? "again" : "error";
}

static void send_pending(h2p_cgi_response_t *self)
{
    if (self->req == NULL || self->sending || self->final_sent || !self->started)
        return;
    if (self->failed) {
        self->final_sent = 1;
        if (self->sent) {
            h2o_send(self->req, NULL, 0, H2O_SEND_STATE_ERROR); /* cut off: the client sees no clean end */
        } else {
            self->req->res.headers = (h2o_headers_t){NULL};
            self->req->res.content_length = SIZE_MAX;
            h2o_send_error_generic(self->req, 502, "Bad Gateway", "the response was cut short", 0);
        }
        return;
    }
    if (self->pending->size == 0 && !self->ended)
        return;
    h2o_buffer_t *t = self->inflight;
    self->inflight = self->pending;
    self->pending = t;
    self->sending = 1;
    h2o_iovec_t vec = h2o_iovec_init(self->inflight->bytes, self->inflight->size);
    h2o_send_state_t state = self->ended ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS;
    if (state == H2O_SEND_STATE_FINAL)
        self->final_sent = 1;
    if (!self->sent) {
        /* the whole body in the first send (the common case): a Content-Length, not chunks; the
         * head goes out only now, as libh2o picks the framing when the response starts */
        if (state == H2O_SEND_STATE_FINAL && self->req->res.content_length == SIZE_MAX && self->body_left == UINT64_MAX)
            self->req->res.content_length = vec.len;
        self->sent = 1;
        h2o_start_response(self->req, &self->super);
    }
    h2o_send(self->req, &vec, vec.len != 0, state);
}

static void on_proceed(h2o_generator_t *generator, h2o_req_t *req)
{
    h2p_cgi_response_t *self = (void *)generator;
    self->sending = 0;
    h2o_buffer_consume(&self->inflight, self->inflight->size);
    if (self->on_drained != NULL && !self->ended)
        self->on_drained(self);
    send_pending(self);
}

static void on_stop(h2o_generator_t *generator, h2o_req_t *req)
{
    h2p_cgi_response_t *self = (void *)generator;
    if (self->on_stop != NULL)
        self->on_stop(self);
}

void h2p_cgi_response_init(h2p_cgi_response_t *self, h2o_req_t *req)
{
    memset(self, 0, sizeof(*self));
    self->super.proceed = on_proceed;
    self->super.stop = on_stop;
    self->req = req;
    self->body_left = UINT64_MAX;
    h2o_buffer_init(&self->head, &h2o_socket_buffer_prototype);
    h2o_buffer_init(&self->pending, &h2o_socket_buffer_prototype);
    h2o_buffer_init(&self->inflight, &h2o_socket_buffer_prototype);
}

void h2p_cgi_response_dispose(h2p_cgi_response_t *self)
{
    h2o_buffer_dispose(&self->head);
    h2o_buffer_dispose(&self->pending);
    h2o_buffer_dispose(&self->inflight);
}

static int is_hop_by_hop(const char *name, size_t len)
{
    static const h2o_iovec_t names[] = {{H2O_STRLIT("connection")}, {H2O_STRLIT("transfer-encoding")}, {H2O_STRLIT("keep-alive")},
                                        {H2O_STRLIT("upgrade")},    {H2O_STRLIT("proxy-connection")},  {H2O_STRLIT("te")},
                                        {H2O_STRLIT("trailer")}};
    for (size_t i = 0; i != sizeof(names) / sizeof(names[0]); ++i)
        if (h2o_lcstris(name, len, names[i].base, names[i].len))
            return 1;
    return 0;
}

/* libh2o writes its own Server and Date on every response: the script's would go out next to
 * them, two of each.  As nginx hides an upstream's Date, Server and X-Pad by default, the front
 * end's win. */
static int is_front_end_header(const char *name, size_t len)
{
    return h2o_lcstris(name, len, H2O_STRLIT("server")) || h2o_lcstris(name, len, H2O_STRLIT("date")) ||
           h2o_lcstris(name, len, H2O_STRLIT("x-pad"));
}

static int start_response(h2p_cgi_response_t *self, const h2p_cgi_head_t *head)
{
    h2o_req_t *req = self->req;
    if (head->status < 200)
        return -1; /* an interim 1xx cannot be the script's final answer: malformed, 502 */
    req->res.status = head->status;
    req->res.reason = head->reason_len != 0 ? h2o_strdup(&req->pool, head->reason, head->reason_len).base : "OK";
    for (size_t i = 0; i != head->num_headers; ++i) {
        const h2p_cgi_header_t *h = head->headers + i;
        if (is_hop_by_hop(h->name, h->name_len) || is_front_end_header(h->name, h->name_len))
            continue;
        if (h2o_lcstris(h->name, h->name_len, H2O_STRLIT("content-length"))) {
            size_t cl = h2o_strtosize(h->value, h->value_len);
            if (cl == SIZE_MAX)
                return -1;
            req->res.content_length = self->body_left = cl;
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
    /* A HEAD response or a 204/304 has no body (RFC 9110 6.4.1), but scripts print one anyway:
     * libh2o 2.2.5's HTTP/1 writes whatever it is given, and those bytes would reach the client
     * as the start of the next response.  A budget of 0 drops them (a HEAD keeps the script's
     * Content-Length: it is the length a GET would get). */
    if (h2o_memis(req->input.method.base, req->input.method.len, H2O_STRLIT("HEAD")) || head->status == 204 || head->status == 304)
        self->body_left = 0;
    if (head->status == 204)
        req->res.content_length = SIZE_MAX; /* RFC 9110 8.6: no Content-Length in a 204 */
    /* libh2o 2.2.5 chunks HTTP/1.1 bodies only: to an HTTP/1.0 keep-alive client, a body of unknown
     * length on a connection that stays open never ends.  Closing the connection delimits it. */
    if (req->version < 0x101 && req->res.content_length == SIZE_MAX && self->body_left != 0)
        req->http1_is_persistent = 0;
    self->started = 1; /* libh2o's response starts with the first send (send_pending) */
    return 0;
}

static void append_body(h2p_cgi_response_t *self, const char *data, size_t len)
{
    if (len > self->body_left) /* never more than the announced Content-Length */
        len = (size_t)self->body_left;
    if (self->body_left != UINT64_MAX)
        self->body_left -= len;
    if (len == 0)
        return;
    h2o_iovec_t dst = h2o_buffer_reserve(&self->pending, len);
    memcpy(dst.base, data, len);
    self->pending->size += len;
}

int h2p_cgi_response_feed(h2p_cgi_response_t *self, const char *data, size_t len)
{
    if (self->req == NULL)
        return 0;
    if (self->started) {
        append_body(self, data, len);
        return 0;
    }
    h2o_iovec_t dst = h2o_buffer_reserve(&self->head, len);
    memcpy(dst.base, data, len);
    self->head->size += len;
    h2p_cgi_head_t head;
    int consumed = h2p_cgi_parse_head(self->head->bytes, self->head->size, H2P_CGI_MAX_HEAD, &head);
    if (consumed == -2)
        return 0;
    if (consumed < 0 || start_response(self, &head) != 0)
        return -1;
    append_body(self, self->head->bytes + consumed, self->head->size - (size_t)consumed);
    h2o_buffer_consume(&self->head, self->head->size);
    return 0;
}

void h2p_cgi_response_flush(h2p_cgi_response_t *self)
{
    send_pending(self);
}

void h2p_cgi_response_fail(h2p_cgi_response_t *self, int status, const char *reason, const char *body)
{
    if (self->req == NULL || self->final_sent)
        return;
    if (self->sent) {
        self->failed = 1;
        send_pending(self);
        return;
    }
    if (self->started) { /* the script's head was parsed but not sent: it is not this answer's */
        self->req->res.headers = (h2o_headers_t){NULL};
        self->req->res.content_length = SIZE_MAX;
    }
    self->started = self->final_sent = 1;
    h2o_send_error_generic(self->req, status, reason, body, H2O_SEND_ERROR_KEEP_HEADERS); /* e.g. Retry-After */
}

void h2p_cgi_response_end(h2p_cgi_response_t *self, int ok)
{
    if (!self->started) {
        h2p_cgi_response_fail(self, 502, "Bad Gateway", "the script ended without a complete CGI header block");
        return;
    }
    if (!ok || (self->body_left != UINT64_MAX && self->body_left != 0)) {
        self->failed = 1; /* cut off: the client must not take a short body for a whole one */
    }
    self->ended = 1;
    send_pending(self);
}

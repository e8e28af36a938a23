/* See conn_watch.h: the bounds on how long a client may take to send a request. */
#include "frontend/conn_watch.h"

#include <arpa/inet.h>
#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "frontend/counters.h"
#include "frontend/log.h"
#include "frontend/router.h"

#define MAX_HEAD_SCAN 65536 /* a head is found in the first bytes of the buffer, or never */

typedef struct conn_watch {
    h2o_linklist_t link;
    h2o_socket_t *sock;
    h2p_thread_t *thread;
    size_t in_flight;       /* requests that reached the router and are not disposed yet */
    uint64_t requests;      /* served so far: an idle connection that had one is kept alive */
    uint64_t wait_since;    /* when it last began to wait for a request (accept, or a response done) */
    uint64_t head_since;    /* when the bytes of the request being sent were first seen; 0 = none yet */
    uint64_t last_progress; /* when the request's bytes last grew */
    size_t last_size;
    size_t unread_at_close;            /* request bytes in the buffer when the client closed its side */
    h2o_socket_cb read;                /* libh2o's read callback, which on_read_seen calls */
    h2o_linklist_t rewatch;            /* in the thread's list of connections whose reads to watch anew */
    int in_body;                       /* the head is complete: the body is coming */
    int http2;                         /* libh2o's HTTP/2 idle timeout governs it */
    int shut;                          /* already shut down by the watch */
    void *ssl;                         /* https: the connection's SSL, once the SNI callback has seen it */
    struct sockaddr_storage peer_addr; /* from accept: the socket is closed when the client has left */
    socklen_t peer_addr_len;
    struct sockaddr_storage local_addr; /* asked once, by the first request that needs it */
    socklen_t local_addr_len;           /* 0 = not asked yet */
} conn_watch_t;

static void format_peer(const conn_watch_t *w, char *buf, size_t len)
{
    if (w->peer_addr_len == 0 || h2p_format_address((const struct sockaddr *)&w->peer_addr, buf, len) != 0)
        snprintf(buf, len, "a client");
}

/*
 * A connection that closes with a request half sent is a request dropped: the error log says
 * why.  libh2o refuses a body over max_request_body itself (413, then it closes): its counter of
 * 413s tells.  A client that left is known by the bytes of a request left in the buffer when its
 * side closed (on_read_seen), however soon it left.
 */
static void log_dropped_request(conn_watch_t *w)
{
    char peer[64];
    uint64_t refused = w->thread->ctx.emitted_error_status[H2O_STATUS_ERROR_413];
    if (refused != w->thread->refused_413_seen) {
        w->thread->refused_413_seen = refused;
        format_peer(w, peer, sizeof(peer));
        h2p_info(NULL, "connection from %s closed: its request body is over limits.max_request_body (413)", peer);
    } else if (!w->shut && !w->http2 && w->in_flight == 0 && (w->unread_at_close != 0 || w->head_since != 0)) {
        format_peer(w, peer, sizeof(peer));
        h2p_info(NULL, "connection from %s closed by the client before its request was complete (%s, %zu bytes)", peer,
                 w->in_body ? "in the body" : "in the head", w->unread_at_close != 0 ? w->unread_at_close : w->last_size);
    }
}

/*
 * libh2o 2.2.5 closes a connection whose client left from within its read callback, and frees
 * the socket's buffer before the close callback runs: what was in it is seen here, by a callback
 * put in front of libh2o's.  libh2o sets its own again whenever it starts reading anew (after a
 * response, after the TLS handshake): the watch is put back on the next turn of the loop
 * (watch_reads_soon), and by the once-a-second check.
 */
static int head_complete(const h2o_buffer_t *in)
{
    size_t n = in->size < MAX_HEAD_SCAN ? in->size : MAX_HEAD_SCAN;
    return memmem(in->bytes, n, "\r\n\r\n", 4) != NULL || memmem(in->bytes, n, "\n\n", 2) != NULL;
}

static void on_read_seen(h2o_socket_t *sock, const char *err)
{
    conn_watch_t *w = sock->on_close.data;
    if (w->requests == 0 && sock->input->size >= 12 && memcmp(sock->input->bytes, "PRI * HTTP/2", 12) == 0)
        w->http2 = 1; /* prior-knowledge h2c: frames follow */
    if (err != NULL && w->in_flight == 0 && (w->unread_at_close = sock->input->size) != 0)
        w->in_body |= head_complete(sock->input); /* (libh2o keeps the head before the body) */
    w->read(sock, err);
}

static void watch_reads(conn_watch_t *w)
{
    h2o_socket_cb current = w->sock->_cb.read;
    if (w->http2 || current == NULL || current == on_read_seen)
        return;
    w->read = current;
    w->sock->_cb.read = on_read_seen;
}

static void on_close(void *data)
{
    conn_watch_t *w = data;
    log_dropped_request(w);
    if (h2o_linklist_is_linked(&w->rewatch))
        h2o_linklist_unlink(&w->rewatch);
    atomic_fetch_sub(&h2p_server.num_connections, 1);
    h2o_linklist_unlink(&w->link);
    free(w);
}

void h2p_conn_watch_add(h2p_thread_t *th, h2o_socket_t *sock)
{
    conn_watch_t *w = h2o_mem_alloc(sizeof(*w));
    h2p_counters_connection_accepted();
    *w = (conn_watch_t){.sock = sock, .thread = th, .wait_since = h2o_now(th->loop), .peer_addr_len = sizeof(w->peer_addr)};
    if (getpeername(h2o_socket_get_fd(sock), (struct sockaddr *)&w->peer_addr, &w->peer_addr_len) != 0)
        w->peer_addr_len = 0;
    else
        h2o_socket_setpeername(sock, (struct sockaddr *)&w->peer_addr, w->peer_addr_len); /* libh2o's own lookup spared */
    h2o_linklist_insert(&th->watched, &w->link);
    sock->on_close.cb = on_close;
    sock->on_close.data = w;
}

static conn_watch_t *watch_of_socket(h2o_socket_t *sock)
{
    return sock != NULL && sock->on_close.cb == on_close ? sock->on_close.data : NULL;
}

static conn_watch_t *watch_of(h2o_req_t *req)
{
    if (req->conn->callbacks->get_socket == NULL)
        return NULL;
    return watch_of_socket(req->conn->callbacks->get_socket(req->conn));
}

socklen_t h2p_conn_local_address(h2o_req_t *req, struct sockaddr_storage *ss)
{
    conn_watch_t *w = watch_of(req);
    if (w == NULL)
        return req->conn->callbacks->get_sockname(req->conn, (struct sockaddr *)ss);
    if (w->local_addr_len == 0) {
        socklen_t len = sizeof(w->local_addr);
        if (getsockname(h2o_socket_get_fd(w->sock), (struct sockaddr *)&w->local_addr, &len) != 0)
            return 0;
        w->local_addr_len = len;
    }
    memcpy(ss, &w->local_addr, w->local_addr_len);
    return w->local_addr_len;
}

/* libh2o sets its read callback anew when this turn of the loop is over with the connection. */
static void watch_reads_soon(conn_watch_t *w)
{
    h2p_thread_t *th = w->thread;
    if (!h2o_linklist_is_linked(&w->rewatch))
        h2o_linklist_insert(&th->rewatch, &w->rewatch);
    if (!h2o_timeout_is_linked(&th->rewatch_soon))
        h2o_timeout_link(th->loop, &th->ctx.zero_timeout, &th->rewatch_soon);
}

static void on_rewatch_soon(h2o_timeout_entry_t *entry)
{
    h2p_thread_t *th = H2O_STRUCT_FROM_MEMBER(h2p_thread_t, rewatch_soon, entry);
    while (!h2o_linklist_is_empty(&th->rewatch)) {
        conn_watch_t *w = H2O_STRUCT_FROM_MEMBER(conn_watch_t, rewatch, th->rewatch.next);
        h2o_linklist_unlink(&w->rewatch);
        watch_reads(w);
    }
}

void h2p_conn_watch_request_begin(h2o_req_t *req)
{
    conn_watch_t *w = watch_of(req);
    if (w == NULL)
        return;
    w->in_flight++;
    w->requests++;
    w->http2 |= req->version >= 0x200;
    w->unread_at_close = 0;
}

void h2p_conn_watch_request_end(h2o_req_t *req)
{
    conn_watch_t *w = watch_of(req);
    if (w == NULL || w->in_flight == 0)
        return;
    if (--w->in_flight == 0) {
        watch_reads_soon(w);
        w->wait_since = h2o_now(w->thread->loop);
        w->head_since = 0;
        w->in_body = 0;
        w->last_size = 0;
    }
}

void h2p_conn_accepted(h2o_socket_t *sock)
{
    conn_watch_t *w = watch_of_socket(sock);
    if (w != NULL)
        watch_reads(w);
}

void h2p_conn_handshake_done(h2o_socket_t *sock, int http2)
{
    conn_watch_t *w = watch_of_socket(sock);
    if (w == NULL)
        return;
    w->http2 |= http2;
    if (!w->http2)
        watch_reads_soon(w); /* libh2o's HTTP/1 reading starts when the handshake's callbacks are done */
}

void h2p_conn_set_ssl(h2o_socket_t *sock, void *ssl)
{
    conn_watch_t *w = watch_of_socket(sock);
    if (w != NULL)
        w->ssl = ssl;
}

void *h2p_conn_ssl(h2o_socket_t *sock)
{
    conn_watch_t *w = watch_of_socket(sock);
    return w != NULL ? w->ssl : NULL;
}

/* Shuts the socket down under libh2o, which then closes the connection as one the client left
 * (closing it here would free what libh2o still holds). */
static void drop(conn_watch_t *w, const char *why, uint64_t limit_ms)
{
    if (why != NULL) {
        char peer[64];
        format_peer(w, peer, sizeof(peer));
        h2p_warn(NULL, "connection from %s closed: %s (%llu ms)", peer, why, (unsigned long long)limit_ms);
    }
    shutdown(h2o_socket_get_fd(w->sock), SHUT_RDWR);
    w->shut = 1;
}

static void check(conn_watch_t *w, const h2p_limits_conf_t *limits, uint64_t now)
{
    if (w->in_flight != 0 || w->http2 || w->shut)
        return;
    watch_reads(w);
    /* HTTP/2 over TLS: ALPN says so once the handshake is done (through the SSL the SNI callback
     * recorded: libh2o's own accessor cannot be called on a connection in every state) */
    if (w->ssl != NULL && SSL_is_init_finished(w->ssl)) {
        const unsigned char *proto;
        unsigned len;
        SSL_get0_alpn_selected(w->ssl, &proto, &len);
        if (len == 2 && memcmp(proto, "h2", 2) == 0) {
            w->http2 = 1;
            return;
        }
    }
    size_t size = w->sock->input != NULL ? w->sock->input->size : 0;
    if (size == 0) {
        /* nothing of a request yet: a new connection (TLS handshake included) gets
         * header_timeout to start one, a kept-alive one keepalive_timeout */
        if (w->requests == 0 && now - w->wait_since > limits->header_timeout_ms)
            drop(w, "no request within header_timeout", limits->header_timeout_ms);
        else if (w->requests != 0 && now - w->wait_since > limits->keepalive_timeout_ms)
            drop(w, NULL, 0); /* an idle kept-alive connection expires: nothing to report */
        return;
    }
    if (w->head_since == 0)
        w->head_since = w->last_progress = now;
    if (size != w->last_size) {
        w->last_size = size;
        w->last_progress = now;
    }
    if (!w->in_body && head_complete(w->sock->input))
        w->in_body = 1;
    if (!w->in_body && now - w->head_since > limits->header_timeout_ms)
        drop(w, "request head not complete within header_timeout", limits->header_timeout_ms);
    else if (w->in_body && now - w->last_progress > limits->body_timeout_ms)
        drop(w, "request body stalled: nothing received for body_timeout", limits->body_timeout_ms);
}

static void on_tick(h2o_timeout_entry_t *entry)
{
    h2p_thread_t *th = H2O_STRUCT_FROM_MEMBER(h2p_thread_t, watch_tick, entry);
    const h2p_limits_conf_t *limits = &th->gen->conf->server.limits;
    uint64_t now = h2o_now(th->loop);
    for (h2o_linklist_t *l = th->watched.next; l != &th->watched; l = l->next)
        check(H2O_STRUCT_FROM_MEMBER(conn_watch_t, link, l), limits, now);
    h2o_timeout_link(th->loop, &th->ctx.one_sec_timeout, &th->watch_tick);
}

void h2p_conn_watch_init_thread(h2p_thread_t *th)
{
    h2o_linklist_init_anchor(&th->watched);
    h2o_linklist_init_anchor(&th->rewatch);
    th->rewatch_soon.cb = on_rewatch_soon;
    th->watch_tick.cb = on_tick;
    h2o_timeout_link(th->loop, &th->ctx.one_sec_timeout, &th->watch_tick);
}

void h2p_conn_watch_dispose_thread(h2p_thread_t *th)
{
    h2o_timeout_unlink(&th->watch_tick);
    if (h2o_timeout_is_linked(&th->rewatch_soon))
        h2o_timeout_unlink(&th->rewatch_soon);
    /* connections still open when the thread ends are not closed by libh2o: forget them */
    while (!h2o_linklist_is_empty(&th->watched)) {
        conn_watch_t *w = H2O_STRUCT_FROM_MEMBER(conn_watch_t, link, th->watched.next);
        w->sock->on_close.cb = NULL;
        on_close(w);
    }
}

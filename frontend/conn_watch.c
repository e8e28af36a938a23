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
    int in_body;   /* the head is complete: the body is coming */
    int http2;     /* libh2o's HTTP/2 idle timeout governs it */
    int shut;      /* already shut down by the watch */
    void *ssl;     /* https: the connection's SSL, once the SNI callback has seen it */
    char peer[64]; /* "ip:port", once a request of it is being received */
} conn_watch_t;

/*
 * A connection that closes with a request half sent is a request dropped: the error log says
 * why.  libh2o refuses a body over max_request_body itself (413, then it closes): its counter of
 * 413s tells.  A client that left is known when a check saw its request's first bytes (a second
 * or more before), not for one that gave up at once.
 */
static void log_dropped_request(conn_watch_t *w)
{
    uint64_t refused = w->thread->ctx.emitted_error_status[H2O_STATUS_ERROR_413];
    if (refused != w->thread->refused_413_seen) {
        w->thread->refused_413_seen = refused;
        h2p_info(NULL, "connection from %s closed: its request body is over limits.max_request_body (413)",
                 w->peer[0] != '\0' ? w->peer : "a client");
    } else if (!w->shut && w->in_flight == 0 && w->head_since != 0) {
        h2p_info(NULL, "connection from %s closed by the client before its request was complete (%s, %zu bytes)", w->peer,
                 w->in_body ? "in the body" : "in the head", w->last_size);
    }
}

static void on_close(void *data)
{
    conn_watch_t *w = data;
    log_dropped_request(w);
    atomic_fetch_sub(&h2p_server.num_connections, 1);
    h2o_linklist_unlink(&w->link);
    free(w);
}

void h2p_conn_watch_add(h2p_thread_t *th, h2o_socket_t *sock)
{
    conn_watch_t *w = h2o_mem_alloc(sizeof(*w));
    h2p_counters_connection_accepted();
    *w = (conn_watch_t){.sock = sock, .thread = th, .wait_since = h2o_now(th->loop)};
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

void h2p_conn_watch_request_begin(h2o_req_t *req)
{
    conn_watch_t *w = watch_of(req);
    if (w == NULL)
        return;
    w->in_flight++;
    w->requests++;
    w->http2 |= req->version >= 0x200;
}

void h2p_conn_watch_request_end(h2o_req_t *req)
{
    conn_watch_t *w = watch_of(req);
    if (w == NULL || w->in_flight == 0)
        return;
    if (--w->in_flight == 0) {
        w->wait_since = h2o_now(w->thread->loop);
        w->head_since = 0;
        w->in_body = 0;
        w->last_size = 0;
    }
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

static int head_complete(const h2o_buffer_t *in)
{
    size_t n = in->size < MAX_HEAD_SCAN ? in->size : MAX_HEAD_SCAN;
    return memmem(in->bytes, n, "\r\n\r\n", 4) != NULL || memmem(in->bytes, n, "\n\n", 2) != NULL;
}

static void describe_peer(h2o_socket_t *sock, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    if (h2o_socket_getpeername(sock, (void *)&ss) == 0 || h2p_format_address((struct sockaddr *)&ss, buf, len) != 0)
        snprintf(buf, len, "?");
}

/* Shuts the socket down under libh2o, which then closes the connection as one the client left
 * (closing it here would free what libh2o still holds). */
static void drop(conn_watch_t *w, const char *why, uint64_t limit_ms)
{
    if (why != NULL) {
        char peer[64];
        describe_peer(w->sock, peer, sizeof(peer));
        h2p_warn(NULL, "connection from %s closed: %s (%llu ms)", peer, why, (unsigned long long)limit_ms);
    }
    shutdown(h2o_socket_get_fd(w->sock), SHUT_RDWR);
    w->shut = 1;
}

static void check(conn_watch_t *w, const h2p_limits_conf_t *limits, uint64_t now)
{
    if (w->in_flight != 0 || w->http2 || w->shut)
        return;
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
    if (w->head_since == 0) {
        w->head_since = w->last_progress = now;
        describe_peer(w->sock, w->peer, sizeof(w->peer)); /* for the log, should the request be dropped */
    }
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
    th->watch_tick.cb = on_tick;
    h2o_timeout_link(th->loop, &th->ctx.one_sec_timeout, &th->watch_tick);
}

void h2p_conn_watch_dispose_thread(h2p_thread_t *th)
{
    h2o_timeout_unlink(&th->watch_tick);
    /* connections still open when the thread ends are not closed by libh2o: forget them */
    while (!h2o_linklist_is_empty(&th->watched)) {
        conn_watch_t *w = H2O_STRUCT_FROM_MEMBER(conn_watch_t, link, th->watched.next);
        w->sock->on_close.cb = NULL;
        on_close(w);
    }
}

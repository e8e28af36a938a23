/*
 * The client connections of a front-end thread, timed while they send a request.
 *
 * libh2o 2.2.5 runs one HTTP/1 timer from the moment a connection waits for a request until
 * its head *and body* have arrived, fixed when the thread starts.  That cannot tell a slowloris
 * (a head trickled for minutes) from an upload on a slow link.  This watch can: once a second it
 * looks at each connection that is waiting for a request and applies, from the configuration in
 * force (so a reload changes them):
 *   - a connection that never sent a byte: header_timeout from accept (TLS handshake included);
 *   - an idle kept-alive HTTP/1 connection: keepalive_timeout since its last response;
 *   - a request head (its bytes arrived, no blank line yet): header_timeout from its first byte;
 *   - a request body: body_timeout between two reads (nginx's client_body_timeout), however
 *     long the whole upload takes.
 * A connection over its bound is shut down (libh2o then closes it as a client that left), and
 * the error log says which bound and who.  Connections with a request being handled, and HTTP/2
 * connections (libh2o's own idle timeout), are not timed here.
 */
#ifndef H2POOL_CONN_WATCH_H
#define H2POOL_CONN_WATCH_H

#include <h2o.h>

struct h2p_thread;

/* Starts watching a connection just accepted on this thread (takes sock->on_close). */
void h2p_conn_watch_add(struct h2p_thread *th, h2o_socket_t *sock);
/* A request of `conn` reached the router / was disposed. */
void h2p_conn_watch_request_begin(h2o_req_t *req);
void h2p_conn_watch_request_end(h2o_req_t *req);

/* The SSL object of an https connection, recorded by the SNI callback (libh2o 2.2.5 has no
 * accessor for it; the router compares its site's TLS policy with the Host's). */
/* libh2o has taken the connection (h2o_accept): its reads are watched for a client that leaves. */
void h2p_conn_accepted(h2o_socket_t *sock);
/* The TLS handshake is done; ALPN chose h2 (frames, not an HTTP/1 request) or not. */
void h2p_conn_handshake_done(h2o_socket_t *sock, int http2);
void h2p_conn_set_ssl(h2o_socket_t *sock, void *ssl);
void *h2p_conn_ssl(h2o_socket_t *sock);

/* The address the request's connection was accepted on (its SERVER_ADDR and SERVER_PORT): a
 * system call the first time, then remembered for the connection's later requests.  0 if unknown. */
socklen_t h2p_conn_local_address(h2o_req_t *req, struct sockaddr_storage *ss);

void h2p_conn_watch_init_thread(struct h2p_thread *th);
void h2p_conn_watch_dispose_thread(struct h2p_thread *th);

#endif

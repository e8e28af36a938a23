/*
 * The FastCGI client.  One request at a time per worker, over the worker's kept connection
 * (FCGI_KEEP_CONN): the request's PARAMS and STDIN go out in one write, the worker's STDOUT is
 * parsed as a CGI response and streamed to the client as it arrives.  When more than
 * MAX_PENDING bytes wait for a slow client, reading from the worker stops (back-pressure), so
 * a large response never sits whole in memory.  Anything malformed from the worker ends in 502
 * and the worker is replaced; nothing a worker sends can crash the front end.
 */
#include "handlers/fastcgi.h"
#include "frontend/alloc.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/log.h"
#include "handlers/cgi_env.h"
#include "handlers/cgi_response.h"
#include "handlers/fcgi_proto.h"
#include "native-modules/module.h"
#include "poolmgr/pool.h"

#define BUILD_REQUEST_ID 1      /* in the records as built; each attempt stamps the worker's next id */
#define MAX_CONNECT_ATTEMPTS 8  /* a refused connection sent nothing: the request goes to another worker */
#define CONNECT_TIMEOUT_MS 5000 /* a TCP endpoint that drops connection attempts counts as refusing */

typedef struct fcgi_request {
    h2p_cgi_response_t response; /* the generator, the client's request (NULL once it is gone), the body */
    h2p_thread_t *thread;
    h2p_pool_t *pool;
    h2p_request_track_t *track; /* the request's, for `h2pool ctl list requests` (NULL once it is gone) */
    h2p_pool_waiter_t waiter;
    h2p_worker_t *worker;
    h2o_socket_t *sock;
    h2o_buffer_t *request_records; /* BEGIN_REQUEST + PARAMS, built once (a retry resends it) */
    char *stdin_headers;           /* record headers for the body, which is sent from req->entity */
    h2o_timeout_entry_t timeout;
    h2o_timeout_entry_t watch; /* until the answer begins: is the HTTP/1 client still there? */
    int client_fd;
    uint16_t request_id; /* of this attempt: records with another id are not this request's */
    unsigned client_left_logged : 1;
    unsigned waiting : 1, reused_connection : 1, reconnected : 1, retried : 1, got_output : 1, read_stopped : 1, connecting : 1;
    unsigned connect_attempts;
} fcgi_request_t;

/*
 * request_timeout differs per pool, and reloads bring new values: each thread has one
 * h2o_timeout_t per duration, allocated on first use of that duration.  A timeout stays linked
 * into the loop until the thread ends (initialising one that is linked would corrupt the loop's
 * list of timeouts and spin the loop); one left with no entry takes the next new duration
 * instead (its entries all share one duration, and it has none), so there are never more than
 * the durations in use at once.
 */
typedef struct duration_timeout {
    h2o_timeout_t timeout;
    struct duration_timeout *next;
} duration_timeout_t;

#define CLIENT_CHECK_MS 1000

/* A front-end thread's share of the FastCGI client (h2p_thread_t.fastcgi), this file's alone: set
 * up when the thread starts (h2p_fastcgi_init_thread), disposed when its loop has ended, when its
 * timeouts leave the loop's list. */
struct h2p_fastcgi_thread {
    duration_timeout_t *duration_timeouts;
    h2o_timeout_t watch_timeout; /* queued requests' clients: still there? (on_watch) */
};

static void start_on_worker(fcgi_request_t *fr, h2p_worker_t *worker);
static void watch_client(fcgi_request_t *fr);
static void dispatch(fcgi_request_t *fr);
static void on_worker_read(h2o_socket_t *sock, const char *err);

static h2o_timeout_t *timeout_for(h2p_thread_t *th, uint64_t ms)
{
    h2p_fastcgi_thread_t *ft = th->fastcgi;
    duration_timeout_t *t, *unused = NULL;
    for (t = ft->duration_timeouts; t != NULL; t = t->next) {
        if (t->timeout.timeout == ms)
            return &t->timeout;
        if (unused == NULL && h2o_linklist_is_empty(&t->timeout._entries))
            unused = t;
    }
    if (unused != NULL) {
        unused->timeout.timeout = ms;
        return &unused->timeout;
    }
    t = h2o_mem_alloc(sizeof(*t));
    h2o_timeout_init(th->loop, &t->timeout, ms);
    t->next = ft->duration_timeouts;
    ft->duration_timeouts = t;
    return &t->timeout;
}

/* What the request is doing, and with which worker, for `h2pool ctl list requests`. */
static void set_stage(fcgi_request_t *fr, const char *stage, h2p_worker_t *worker)
{
    if (fr->track == NULL)
        return;
    fr->track->stage = stage;
    fr->track->worker_pid = worker != NULL ? h2p_worker_pid(worker) : 0;
}

/* ---- the request's records -------------------------------------------------------------- */

/* BEGIN_REQUEST + PARAMS (the CGI variables) once per request; STDIN goes from req->entity. */
static void build_request_records(fcgi_request_t *fr, const h2p_fastcgi_target_t *t)
{
    h2o_req_t *req = fr->response.req;
    h2p_cgi_script_t script = {t->script_name, t->path_info, t->script_filename, t->document_root};
    h2p_cgi_vars_t vars;
    h2p_cgi_vars_build(req, &script, &vars);

    size_t size = 0;
    for (size_t i = 0; i < vars.count; i += 2)
        size += h2p_fcgi_nv_size(vars.pairs[i].len, vars.pairs[i + 1].len);
    char *block = h2o_mem_alloc_pool(&req->pool, size), *p = block;
    for (size_t i = 0; i < vars.count; i += 2)
        p = h2p_fcgi_nv_write(p, vars.pairs[i].base, vars.pairs[i].len, vars.pairs[i + 1].base, vars.pairs[i + 1].len);

    h2o_buffer_init(&fr->request_records, &h2o_socket_buffer_prototype);
    h2p_fcgi_encode_begin_request(&fr->request_records, BUILD_REQUEST_ID, H2P_FCGI_RESPONDER, 1);
    h2p_fcgi_encode_stream(&fr->request_records, H2P_FCGI_PARAMS, BUILD_REQUEST_ID, block, size);
    h2p_fcgi_encode_stream(&fr->request_records, H2P_FCGI_PARAMS, BUILD_REQUEST_ID, NULL, 0);

    size_t body = req->entity.base != NULL ? req->entity.len : 0, records = (body + 65534) / 65535;
    fr->stdin_headers = h2o_mem_alloc((records + 1) * H2P_FCGI_HEADER_LEN);
    for (size_t i = 0; i != records; ++i) {
        size_t len = body - i * 65535 < 65535 ? body - i * 65535 : 65535;
        h2p_fcgi_write_header(fr->stdin_headers + i * H2P_FCGI_HEADER_LEN, H2P_FCGI_STDIN, BUILD_REQUEST_ID, (uint16_t)len, 0);
    }
    h2p_fcgi_write_header(fr->stdin_headers + records * H2P_FCGI_HEADER_LEN, H2P_FCGI_STDIN, BUILD_REQUEST_ID, 0, 0);
}

/* Stamps `id` on every record the request sends (BEGIN_REQUEST, PARAMS, STDIN). */
static void set_request_id(fcgi_request_t *fr, uint16_t id)
{
    fr->request_id = id;
    for (size_t off = 0; off + H2P_FCGI_HEADER_LEN <= fr->request_records->size;) {
        unsigned char *h = (unsigned char *)fr->request_records->bytes + off;
        h[2] = (unsigned char)(id >> 8);
        h[3] = (unsigned char)id;
        off += H2P_FCGI_HEADER_LEN + ((size_t)h[4] << 8 | h[5]) + h[6];
    }
    h2o_req_t *req = fr->response.req;
    size_t body = req->entity.base != NULL ? req->entity.len : 0, records = (body + 65534) / 65535;
    for (size_t i = 0; i <= records; ++i) {
        unsigned char *h = (unsigned char *)fr->stdin_headers + i * H2P_FCGI_HEADER_LEN;
        h[2] = (unsigned char)(id >> 8);
        h[3] = (unsigned char)id;
    }
}

/* ---- life cycle ------------------------------------------------------------------------- */

static void free_request(fcgi_request_t *fr)
{
    if (fr->request_records != NULL)
        h2o_buffer_dispose(&fr->request_records);
    free(fr->stdin_headers);
    h2p_cgi_response_dispose(&fr->response);
    free(fr);
}

/* Lets go of the worker: the connection goes back with it when it is clean and idle. */
static void release_worker(fcgi_request_t *fr, h2p_release_outcome_t outcome, int request_done)
{
    if (h2o_timeout_is_linked(&fr->timeout))
        h2o_timeout_unlink(&fr->timeout);
    fr->connecting = 0;
    int fd = -1;
    /* a worker that is killed for it, when it is a php-cgi master's child: found by this connection */
    if (outcome == H2P_RELEASE_BROKEN && fr->sock != NULL && fr->worker != NULL)
        h2p_worker_kill_connection_holder(fr->worker, h2o_socket_get_fd(fr->sock), SIGKILL);
    if (fr->sock != NULL) {
        if (outcome == H2P_RELEASE_OK && fr->sock->input->size == 0 && !h2o_socket_is_writing(fr->sock) && fr->worker != NULL) {
            /* the clean connection stays registered with this loop for the worker's next request,
             * watched: anything the worker sends before that request is out of turn */
            fr->sock->data = NULL;
            h2o_socket_read_start(fr->sock, h2p_worker_on_kept_readable);
            h2p_worker_keep_socket(fr->worker, fr->sock, fr->thread->pool);
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
    set_stage(fr, H2P_STAGE_SENDING, NULL);
}

static void on_drained(h2p_cgi_response_t *response)
{
    fcgi_request_t *fr = (void *)response;
    if (fr->read_stopped && fr->sock != NULL) {
        fr->read_stopped = 0;
        h2o_socket_read_start(fr->sock, on_worker_read);
    }
}

static void log_client_left(fcgi_request_t *fr, const char *when)
{
    /* a client that has the whole body its Content-Length announced may go: the worker's work
     * after it (MediaWiki's deferred updates, say) is no answer that is lost */
    int answered = fr->response.body_left == 0 && fr->response.pending->size == 0;
    if (fr->client_left_logged || answered)
        return;
    fr->client_left_logged = 1;
    h2p_info("fastcgi", "pool %s: the client left %s (worker %d): the answer is discarded", h2p_pool_name(fr->pool), when,
             fr->worker != NULL ? (int)h2p_worker_pid(fr->worker) : 0);
}

static void on_client_left(h2p_cgi_response_t *response)
{
    /* the client left mid-response: the worker is still writing, so its connection is not reusable */
    fcgi_request_t *fr = (fcgi_request_t *)response;
    log_client_left(fr, "in the middle of the answer");
    release_worker(fr, H2P_RELEASE_CLOSED, 0);
}

static void stop_watching(fcgi_request_t *fr)
{
    if (h2o_timeout_is_linked(&fr->watch))
        h2o_timeout_unlink(&fr->watch);
}

static void on_request_dispose(void *p)
{
    fcgi_request_t *fr = *(fcgi_request_t **)p;
    fr->response.req = NULL;
    fr->track = NULL;
    stop_watching(fr);
    if (fr->waiting) {
        /* an HTTP/2 stream reset, or its connection closed (HTTP/1 is polled while queued) */
        h2p_info("fastcgi", "pool %s: a queued request left the queue: its client left (stream reset or connection closed)",
                 h2p_pool_name(fr->pool));
        if (!h2p_pool_cancel(fr->pool, &fr->waiter))
            return; /* a worker is on its way: the hand-over frees fr */
        fr->waiting = 0;
    }
    if (fr->worker != NULL) /* the worker has not finished the answer: nobody will get it */
        log_client_left(fr, "before the end of the answer (stream reset or connection closed)");
    release_worker(fr, H2P_RELEASE_CLOSED, 0);
    free_request(fr);
}

static void send_error(fcgi_request_t *fr, int status, const char *reason, const char *body)
{
    h2o_req_t *req = fr->response.req;
    if (req != NULL && !fr->response.started && status == 503)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("5"));
    h2p_cgi_response_fail(&fr->response, status, reason, body);
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

static int retry_allowed(fcgi_request_t *fr)
{
    h2o_iovec_t m = fr->response.req->method;
    return h2p_pool_conf(fr->pool)->retry_on_crash && !fr->retried &&
           (h2o_memis(m.base, m.len, H2O_STRLIT("GET")) || h2o_memis(m.base, m.len, H2O_STRLIT("HEAD")) ||
            h2o_memis(m.base, m.len, H2O_STRLIT("OPTIONS")));
}

/* The connection ended before the response did. */
static void on_worker_gone(fcgi_request_t *fr)
{
    if (!fr->got_output && fr->response.req != NULL) {
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
    if (fr->response.req == NULL)
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

/* A record for another request: left over from an earlier one, or forged for a later one. */
static void on_other_request_record(fcgi_request_t *fr, uint16_t id)
{
    char what[128];
    snprintf(what, sizeof(what), "wrote out of turn (a record for request id %u; this request's is %u)", (unsigned)id,
             (unsigned)fr->request_id);
    h2p_worker_violation(fr->worker, what);
    int nothing_received = !fr->got_output;
    release_worker(fr, H2P_RELEASE_BROKEN, 0);
    if (nothing_received && fr->response.req != NULL && retry_allowed(fr)) {
        fr->retried = 1;
        dispatch(fr);
        return;
    }
    send_error(fr, 502, "Bad Gateway", "the application's worker broke the FastCGI protocol");
}

static void on_worker_read(h2o_socket_t *sock, const char *err)
{
    fcgi_request_t *fr = sock->data;
    if (err == NULL && (err = h2p_read_slice(sock)) != NULL && strcmp(err, "again") == 0)
        return;
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
    h2o_timeout_link(fr->thread->loop, timeout_for(fr->thread, h2p_pool_conf(fr->pool)->request_timeout_ms), &fr->timeout);

    h2p_fcgi_record_t rec;
    ssize_t n;
    while ((n = h2p_fcgi_decode_record(sock->input->bytes, sock->input->size, &rec)) > 0) {
        if (rec.request_id != fr->request_id) {
            if (rec.request_id == H2P_FCGI_NULL_REQUEST_ID &&
                (rec.type == H2P_FCGI_GET_VALUES_RESULT || rec.type == H2P_FCGI_UNKNOWN_TYPE)) {
                h2o_buffer_consume(&sock->input, (size_t)n); /* management records carry nothing for us */
                continue;
            }
            on_other_request_record(fr, rec.request_id);
            return;
        }
        fr->got_output = 1;
        switch (rec.type) {
        case H2P_FCGI_STDOUT:
            if (h2p_cgi_response_feed(&fr->response, rec.content, rec.content_length) != 0) {
                on_malformed(fr, "a malformed CGI header block");
                return;
            }
            break;
        case H2P_FCGI_STDERR:
            log_stderr(fr, rec.content, rec.content_length);
            break;
        case H2P_FCGI_END_REQUEST:
            h2o_buffer_consume(&sock->input, (size_t)n);
            if (!fr->response.started && fr->response.req != NULL) {
                on_malformed(fr, "END_REQUEST before a CGI header block");
                return;
            }
            if (sock->input->size != 0) {
                /* the response is whole and goes out; what follows it answers no request, and would
                 * answer the next one on this connection: neither connection nor worker is kept */
                h2p_worker_violation(fr->worker, "wrote out of turn (bytes after its END_REQUEST record)");
                release_worker(fr, H2P_RELEASE_BROKEN, 1);
            } else if (fr->response.body_left != UINT64_MAX && fr->response.body_left != 0) {
                h2p_warn("fastcgi", "pool %s: response shorter than its Content-Length", h2p_pool_name(fr->pool));
                release_worker(fr, H2P_RELEASE_CLOSED, 1);
            } else {
                release_worker(fr, H2P_RELEASE_OK, 1);
            }
            h2p_cgi_response_end(&fr->response, 1);
            /* the worker, if it went to a request queued on this thread, gets it now */
            h2p_pool_run_handed();
            return;
        default: /* GET_VALUES_RESULT, UNKNOWN_TYPE and unknown types carry nothing for us */
            break;
        }
        h2o_buffer_consume(&sock->input, (size_t)n);
    }
    if (n < 0) {
        on_malformed(fr, "a malformed FastCGI record");
        return;
    }
    h2p_cgi_response_flush(&fr->response);
    if (h2p_cgi_response_full(&fr->response)) { /* back-pressure: the client reads slower than the worker writes */
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

/* The kept connection's read watch may not have run yet for what arrived since this loop last
 * polled: what it has read, then the socket itself, just before the request goes out. */
static h2p_conn_state_t kept_connection_state(h2o_socket_t *sock)
{
    return sock->input->size != 0 ? H2P_CONN_WROTE : h2p_connection_state(h2o_socket_get_fd(sock));
}

static void start_on_worker(fcgi_request_t *fr, h2p_worker_t *worker)
{
    h2p_request_t *r = fr->response.req != NULL ? h2p_request_of(fr->response.req) : NULL;
    if (r != NULL) { /* for traces: who served it */
        r->pool_name = h2p_pool_name(fr->pool);
        r->worker_pid = (int)h2p_worker_pid(worker);
    }
    fr->worker = worker;
    set_stage(fr, H2P_STAGE_WORKER, worker);
    if (fr->response.req != NULL)
        watch_client(fr);
    fr->got_output = 0;
    set_request_id(fr, h2p_worker_next_request_id(worker));
    int connecting = 0;
    fr->sock = h2p_worker_take_socket(worker, fr->thread->pool);
    for (;;) {
        if (fr->sock == NULL) {
            int reused, fd = h2p_worker_connect(worker, &reused, &connecting);
            fr->reused_connection = 0;
            if (fd < 0) {
                on_connect_failed(fr);
                return;
            }
            fr->sock = h2o_evloop_socket_create(fr->thread->loop, fd,
                                                H2O_SOCKET_FLAG_DONT_READ | (connecting ? H2O_SOCKET_FLAG_IS_CONNECTING : 0));
            fr->sock->data = fr;
            if (!reused)
                break;
        }
        /* a kept connection: this thread's, or one handed over with the worker by another thread */
        fr->sock->data = fr;
        switch (kept_connection_state(fr->sock)) {
        case H2P_CONN_CLEAN:
            fr->reused_connection = 1;
            send_request(fr);
            return;
        case H2P_CONN_WROTE: /* nothing was sent: the request goes to another worker */
            h2p_worker_violation(worker, "wrote out of turn (bytes on its kept connection before its next request)");
            release_worker(fr, H2P_RELEASE_BROKEN, 0);
            if (fr->response.req != NULL && ++fr->connect_attempts < MAX_CONNECT_ATTEMPTS)
                dispatch(fr);
            else
                send_error(fr, 502, "Bad Gateway", "the application's workers broke the FastCGI protocol");
            return;
        case H2P_CONN_CLOSED: /* the worker hung up between requests: a new connection */
            h2o_socket_close(fr->sock);
            fr->sock = NULL;
            continue;
        }
    }
    if (connecting) { /* a TCP endpoint: a refusal shows once the connection is done, as SO_ERROR */
        uint64_t limit = h2p_pool_conf(fr->pool)->request_timeout_ms;
        fr->connecting = 1;
        h2o_socket_notify_write(fr->sock, on_connected);
        h2o_timeout_link(fr->thread->loop, timeout_for(fr->thread, limit < CONNECT_TIMEOUT_MS ? limit : CONNECT_TIMEOUT_MS),
                         &fr->timeout);
        return;
    }
    send_request(fr);
}

static void send_request(fcgi_request_t *fr)
{
    h2o_req_t *req = fr->response.req;
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
    h2o_timeout_link(fr->thread->loop, timeout_for(fr->thread, h2p_pool_conf(fr->pool)->request_timeout_ms), &fr->timeout);
}

/*
 * libh2o 2.2.5 stops reading an HTTP/1 connection while its request is handled, so a client that
 * leaves while its request waits in the queue goes unnoticed and would hold its place.  While
 * queued, its socket is polled for the peer's shutdown (POLLRDHUP); a departed client's request
 * leaves the queue.  While a worker prepares the answer, the poll goes on, so that the error log
 * says at once that the client left (the worker finishes; its answer is discarded).  (HTTP/2
 * resets the stream: the request is disposed and leaves at once.)
 */
static void on_watch(h2o_timeout_entry_t *entry)
{
    fcgi_request_t *fr = H2O_STRUCT_FROM_MEMBER(fcgi_request_t, watch, entry);
    if (fr->response.req == NULL || fr->response.started || (!fr->waiting && fr->worker == NULL))
        return;
    struct pollfd pfd = {.fd = fr->client_fd, .events = POLLRDHUP};
    if (poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) {
        /* (only while queued: a request whose worker is on its way is not freed under its
         * h2o_req_t; it goes to the worker, and its answer is discarded) */
        if (fr->waiting && h2p_pool_unqueue(fr->pool, &fr->waiter)) {
            fr->waiting = 0;
            h2p_info("fastcgi", "pool %s: a queued request left the queue: its client closed the connection",
                     h2p_pool_name(fr->pool));
            send_error(fr, 503, "Service Unavailable", "the client left");
        } else if (fr->worker != NULL) {
            log_client_left(fr, "before the answer (it closed its connection)");
        }
        return;
    }
    h2o_timeout_link(fr->thread->loop, &fr->thread->fastcgi->watch_timeout, &fr->watch);
}

static void watch_client(fcgi_request_t *fr)
{
    h2o_req_t *req = fr->response.req;
    h2o_socket_t *client = req->version < 0x200 ? req->conn->callbacks->get_socket(req->conn) : NULL;
    if (client == NULL || h2o_timeout_is_linked(&fr->watch)) /* (a retry: still watched since its first worker) */
        return;
    fr->client_fd = h2o_socket_get_fd(client);
    fr->watch.cb = on_watch;
    h2o_timeout_link(fr->thread->loop, &fr->thread->fastcgi->watch_timeout, &fr->watch);
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
        set_stage(fr, H2P_STAGE_QUEUED, NULL);
        watch_client(fr);
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
static void on_handed(h2p_pool_waiter_t *waiter)
{
    fcgi_request_t *fr = H2O_STRUCT_FROM_MEMBER(fcgi_request_t, waiter, waiter);
    fr->waiting = 0;
    stop_watching(fr);
    if (waiter->state == H2P_WAITER_ABANDONED) {
        if (waiter->worker != NULL)
            h2p_worker_release(waiter->worker, H2P_RELEASE_UNUSED, -1, 0);
        free_request(fr);
        return;
    }
    waiter->state = H2P_WAITER_IDLE;
    if (waiter->worker != NULL)
        start_on_worker(fr, waiter->worker);
    else
        send_error(fr, waiter->status, "Service Unavailable",
                   waiter->status == 503 ? "no worker of the application pool became available" : "error");
}

void h2p_fastcgi_init_thread(h2p_thread_t *th)
{
    h2p_fastcgi_thread_t *ft = h2p_calloc(1, sizeof(*ft));
    h2o_timeout_init(th->loop, &ft->watch_timeout, CLIENT_CHECK_MS);
    th->fastcgi = ft;
}

/* A timeout leaves the loop's list only when no entry is linked to it (libh2o asserts that):
 * every request is disposed by now, so none is; one that still were would stay, never freed. */
static int dispose_timeout(h2o_loop_t *loop, h2o_timeout_t *timeout)
{
    if (!h2o_linklist_is_empty(&timeout->_entries))
        return 0;
    h2o_timeout_dispose(loop, timeout);
    return 1;
}

void h2p_fastcgi_dispose_thread(h2p_thread_t *th)
{
    h2p_fastcgi_thread_t *ft = th->fastcgi;
    th->fastcgi = NULL;
    int all_disposed = dispose_timeout(th->loop, &ft->watch_timeout);
    while (ft->duration_timeouts != NULL) {
        duration_timeout_t *t = ft->duration_timeouts;
        ft->duration_timeouts = t->next;
        if (dispose_timeout(th->loop, &t->timeout))
            free(t);
        else
            all_disposed = 0;
    }
    if (all_disposed)
        free(ft);
}

int h2p_fastcgi_handle(h2o_req_t *req, const h2p_fastcgi_target_t *target)
{
    fcgi_request_t *fr = h2p_calloc(1, sizeof(*fr));
    h2p_cgi_response_init(&fr->response, req);
    fr->response.on_drained = on_drained;
    fr->response.on_stop = on_client_left;
    fr->thread = h2p_this_thread;
    fr->pool = target->pool;
    h2p_request_t *r = h2p_request_of(req);
    if (r != NULL) {
        fr->track = &r->track;
        h2p_request_track_pool(fr->track, h2p_pool_stats(fr->pool));
    }
    fr->waiter.thread = fr->thread->pool;
    fr->waiter.on_handed = on_handed;
    fr->timeout.cb = on_timeout;
    *(fcgi_request_t **)h2o_mem_alloc_shared(&req->pool, sizeof(fr), on_request_dispose) = fr;
    build_request_records(fr, target);
    dispatch(fr);
    return 0;
}

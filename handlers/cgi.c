/*
 * CGI: the script runs in its own process group with the request's CGI variables as its whole
 * environment, the request body on stdin, its stdout parsed as a CGI response and streamed to
 * the client, its stderr sent to the error log.  As for pool workers, a script never runs as
 * root: when h2pool is root, it runs as nobody.  The privileged part (privsep/privsep.h) forks,
 * execs, signals and reaps it: this loop only asks, and learns the pid from its answer.
 */
#include "handlers/cgi.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frontend/alloc.h"
#include "frontend/log.h"
#include "frontend/server.h"
#include "handlers/cgi_response.h"
#include "privsep/privsep.h"

/* A front-end thread's share of CGI (h2p_thread_t.cgi), this file's alone: set up when the thread
 * starts (h2p_cgi_init_thread), disposed when it leaves its loop.  Its timeouts stay in the
 * loop's list of timeouts until then (libh2o links every one it was given there). */
typedef struct h2p_cgi_thread {
    h2o_timeout_t script_timeout, watch_timeout;
    h2o_linklist_t spawning; /* cgi_request_t.spawning */
    h2p_privsep_cgi_channel_t *channel;
} h2p_cgi_thread_t;

typedef struct cgi_request {
    h2p_cgi_response_t response;
    h2p_cgi_thread_t *thread; /* the request's */
    uint64_t cookie;          /* names the script to the privileged part */
    h2o_linklist_t spawning;  /* in this thread's list while its pid is not known */
    pid_t pid;                /* 0 until the privileged part answers */
    h2o_socket_t *in, *out, *err;
    h2o_timeout_entry_t timeout, watch;
    h2o_loop_t *loop;
    int client_fd; /* an HTTP/1 client's socket, checked for the client leaving (see on_watch); else -1 */
    int done;
} cgi_request_t;

#define CLIENT_CHECK_MS 1000

static void on_stderr(h2o_socket_t *sock, const char *err);

static void close_socket(h2o_socket_t **sock)
{
    if (*sock != NULL) {
        h2o_socket_close(*sock);
        *sock = NULL;
    }
}

static void finish(cgi_request_t *cr, int kill_script)
{
    if (h2o_timeout_is_linked(&cr->timeout))
        h2o_timeout_unlink(&cr->timeout);
    if (h2o_timeout_is_linked(&cr->watch))
        h2o_timeout_unlink(&cr->watch);
    close_socket(&cr->in);
    close_socket(&cr->out);
    close_socket(&cr->err);
    if (kill_script && !cr->done)
        h2p_privsep_kill_cgi(cr->thread->channel, cr->cookie, SIGKILL); /* (asked after the spawn, on the same channel) */
    cr->done = 1;
}

static void on_stderr(h2o_socket_t *sock, const char *err)
{
    cgi_request_t *cr = sock->data;
    if (cr->pid == 0 && err == NULL)
        return; /* its lines are logged with its pid: kept until the spawn is answered */
    char *line = sock->input->bytes, *end = line + sock->input->size, *nl;
    while ((nl = memchr(line, '\n', end - line)) != NULL) {
        if (nl != line)
            h2p_warn("cgi", "script %d: %.*s", (int)cr->pid, (int)(nl - line), line);
        line = nl + 1;
    }
    if ((err != NULL || end - line > 4000) && end != line) {
        h2p_warn("cgi", "script %d: %.*s", (int)cr->pid, (int)(end - line), line);
        line = end;
    }
    h2o_buffer_consume(&sock->input, line - sock->input->bytes);
    if (err != NULL)
        close_socket(&cr->err);
}

static void on_stdout(h2o_socket_t *sock, const char *err)
{
    cgi_request_t *cr = sock->data;
    if (err == NULL && (err = h2p_read_slice(sock)) != NULL && strcmp(err, "again") == 0)
        return;
    h2o_timeout_unlink(&cr->timeout);
    h2o_timeout_link(cr->loop, &cr->thread->script_timeout, &cr->timeout);
    if (sock->input->size != 0) {
        if (h2p_cgi_response_feed(&cr->response, sock->input->bytes, sock->input->size) != 0) {
            h2p_warn("cgi", "script %d sent a malformed CGI header block", (int)cr->pid);
            finish(cr, 1);
            h2p_cgi_response_fail(&cr->response, 502, "Bad Gateway", "the script sent a malformed response");
            return;
        }
        h2o_buffer_consume(&sock->input, sock->input->size);
    }
    if (err != NULL) { /* EOF: the script is done; its stderr drains until it closes too */
        h2o_timeout_unlink(&cr->timeout);
        if (h2o_timeout_is_linked(&cr->watch))
            h2o_timeout_unlink(&cr->watch);
        close_socket(&cr->in);
        close_socket(&cr->out);
        h2p_cgi_response_end(&cr->response, 1);
        return;
    }
    h2p_cgi_response_flush(&cr->response);
    if (h2p_cgi_response_full(&cr->response))
        h2o_socket_read_stop(sock);
}

static void on_drained(h2p_cgi_response_t *response)
{
    cgi_request_t *cr = (void *)response;
    if (cr->out != NULL && !h2o_socket_is_reading(cr->out))
        h2o_socket_read_start(cr->out, on_stdout);
}

static void on_client_gone(h2p_cgi_response_t *response)
{
    finish((cgi_request_t *)response, 1);
}

static void on_timeout(h2o_timeout_entry_t *entry)
{
    cgi_request_t *cr = H2O_STRUCT_FROM_MEMBER(cgi_request_t, timeout, entry);
    h2p_warn("cgi", "script %d sent nothing for %d s: killing it", (int)cr->pid, H2P_CGI_TIMEOUT_MS / 1000);
    finish(cr, 1);
    h2p_cgi_response_fail(&cr->response, 504, "Gateway Timeout", "the script did not answer in time");
}

/*
 * libh2o 2.2.5's HTTP/1 stops reading a connection while its request is processed, so a client
 * that leaves is noticed only when a write to it fails: a script that is quiet for a while (a long
 * computation, a sleep, a blocked child) would run on for nobody, up to H2P_CGI_TIMEOUT_MS.  So
 * the client's socket is polled for the peer's shutdown (POLLRDHUP; unread pipelined bytes do not
 * hide it) and the script is killed, as nginx's broken-connection check does for its upstreams.
 * HTTP/2 needs none of this: libh2o reads h2 connections throughout and stops the stream.
 */
static void on_watch(h2o_timeout_entry_t *entry)
{
    cgi_request_t *cr = H2O_STRUCT_FROM_MEMBER(cgi_request_t, watch, entry);
    struct pollfd pfd = {.fd = cr->client_fd, .events = POLLRDHUP};
    if (poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) {
        h2p_info("cgi", "the client left: killing script %d", (int)cr->pid);
        finish(cr, 1);
        /* nobody reads it; 499 (nginx's "client closed request") is for the access log */
        h2p_cgi_response_fail(&cr->response, 499, "Client Closed Request", "the client closed the connection");
        return;
    }
    h2o_timeout_link(cr->loop, &cr->thread->watch_timeout, &cr->watch);
}

static void on_body_written(h2o_socket_t *sock, const char *err)
{
    cgi_request_t *cr = sock->data;
    close_socket(&cr->in); /* EOF on the script's stdin */
}

static void on_dispose(void *p)
{
    cgi_request_t *cr = p;
    cr->response.req = NULL;
    if (h2o_linklist_is_linked(&cr->spawning))
        h2o_linklist_unlink(&cr->spawning);
    if (!cr->done)
        finish(cr, 1);
    h2p_cgi_response_dispose(&cr->response);
}

/* The privileged part's answer: the script's pid, or why it could not start. */
static void on_spawned(void *data, uint64_t cookie, pid_t pid, int err)
{
    h2p_cgi_thread_t *ct = data;
    for (h2o_linklist_t *l = ct->spawning.next; l != &ct->spawning; l = l->next) {
        cgi_request_t *cr = H2O_STRUCT_FROM_MEMBER(cgi_request_t, spawning, l);
        if (cr->cookie != cookie)
            continue;
        h2o_linklist_unlink(&cr->spawning);
        if (err != 0) {
            h2p_error("cgi", "cannot start the script: %s", strerror(err));
            if (!cr->done) {
                finish(cr, 0);
                h2p_cgi_response_fail(&cr->response, err == EPERM ? 403 : 503, err == EPERM ? "Forbidden" : "Service Unavailable",
                                      "cannot start the script");
            }
            return;
        }
        cr->pid = pid;
        if (cr->err != NULL && cr->err->input->size != 0)
            on_stderr(cr->err, NULL);
        return;
    }
}

int h2p_cgi_handle(h2o_req_t *req, const h2p_cgi_script_t *script)
{
    struct stat st;
    if (stat(script->script_filename, &st) != 0 || !S_ISREG(st.st_mode)) {
        h2o_send_error_404(req, "Not Found", "not found", 0);
        return 0;
    }
    if ((st.st_mode & 0111) == 0) {
        h2o_send_error_403(req, "Forbidden", "the script is not executable", 0);
        return 0;
    }

    h2p_cgi_vars_t vars;
    h2p_cgi_vars_build(req, script, &vars);
    char **envp = h2o_mem_alloc_pool(&req->pool, sizeof(char *) * (vars.count / 2 + 2));
    size_t n = 0;
    for (size_t i = 0; i < vars.count; i += 2) {
        char *e = h2o_mem_alloc_pool(&req->pool, vars.pairs[i].len + vars.pairs[i + 1].len + 2);
        sprintf(e, "%.*s=%.*s", (int)vars.pairs[i].len, vars.pairs[i].base, (int)vars.pairs[i + 1].len, vars.pairs[i + 1].base);
        envp[n++] = e;
    }
    envp[n++] = "PATH=/usr/local/bin:/usr/bin:/bin";
    envp[n] = NULL;

    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
        h2p_error("cgi", "pipe: %s", strerror(errno));
        for (int i = 0; i != 2; ++i) {
            if (in[i] >= 0)
                close(in[i]);
            if (out[i] >= 0)
                close(out[i]);
            if (err[i] >= 0)
                close(err[i]);
        }
        h2o_send_error_503(req, "Service Unavailable", "cannot start the script", 0);
        return 0;
    }
    /* the privileged part forks and execs it (as nobody when h2pool was started as root) */
    h2p_cgi_thread_t *ct = h2p_this_thread->cgi;
    uint64_t cookie = h2p_privsep_new_cookie();
    int spawned = h2p_privsep_spawn_cgi(ct->channel, cookie, script->script_filename, envp, in[0], out[1], err[1]);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    if (spawned != 0) {
        h2p_error("cgi", "cannot ask for the script to be started: %s", strerror(errno));
        close(in[1]);
        close(out[0]);
        close(err[0]);
        h2o_send_error_503(req, "Service Unavailable", "cannot start the script", 0);
        return 0;
    }

    cgi_request_t *cr = h2o_mem_alloc_shared(&req->pool, sizeof(*cr), on_dispose);
    h2p_cgi_response_init(&cr->response, req);
    cr->response.on_drained = on_drained;
    cr->response.on_stop = on_client_gone;
    cr->thread = ct;
    cr->cookie = cookie;
    cr->pid = 0;
    cr->done = 0;
    cr->spawning = (h2o_linklist_t){NULL}; /* (the pool's memory is not zeroed) */
    h2o_linklist_insert(&ct->spawning, &cr->spawning);
    cr->loop = req->conn->ctx->loop;
    cr->timeout = (h2o_timeout_entry_t){0};
    cr->timeout.cb = on_timeout;
    cr->watch = (h2o_timeout_entry_t){0};
    cr->watch.cb = on_watch;
    h2o_timeout_link(cr->loop, &cr->thread->script_timeout, &cr->timeout);
    h2o_socket_t *client = req->version < 0x200 ? req->conn->callbacks->get_socket(req->conn) : NULL;
    cr->client_fd = client != NULL ? h2o_socket_get_fd(client) : -1;
    if (cr->client_fd >= 0)
        h2o_timeout_link(cr->loop, &cr->thread->watch_timeout, &cr->watch);

    fcntl(in[1], F_SETFL, O_NONBLOCK);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    fcntl(err[0], F_SETFL, O_NONBLOCK);
    cr->in = h2o_evloop_socket_create(cr->loop, in[1], 0);
    cr->out = h2o_evloop_socket_create(cr->loop, out[0], H2O_SOCKET_FLAG_DONT_READ); /* read a slice at a time */
    cr->err = h2o_evloop_socket_create(cr->loop, err[0], 0);
    cr->in->data = cr->out->data = cr->err->data = cr;
    if (req->entity.base != NULL && req->entity.len != 0) {
        h2o_iovec_t body = req->entity;
        h2o_socket_write(cr->in, &body, 1, on_body_written);
    } else {
        close_socket(&cr->in);
    }
    h2o_socket_read_start(cr->out, on_stdout);
    h2o_socket_read_start(cr->err, on_stderr);
    return 0;
}

void h2p_cgi_init_thread(h2p_thread_t *th)
{
    h2p_cgi_thread_t *ct = h2p_calloc(1, sizeof(*ct));
    h2o_timeout_init(th->loop, &ct->script_timeout, H2P_CGI_TIMEOUT_MS);
    h2o_timeout_init(th->loop, &ct->watch_timeout, CLIENT_CHECK_MS);
    h2o_linklist_init_anchor(&ct->spawning);
    ct->channel = h2p_privsep_cgi_channel_create(th->loop, on_spawned, ct);
    th->cgi = ct;
}

void h2p_cgi_dispose_thread(h2p_thread_t *th)
{
    h2p_cgi_thread_t *ct = th->cgi;
    th->cgi = NULL;
    h2p_privsep_cgi_channel_dispose(ct->channel);
    /* every request is disposed by now, so no entry is linked to the timeouts (libh2o asserts
     * that before one leaves the loop's list); were one still linked, its thread share stays */
    if (!h2o_linklist_is_empty(&ct->script_timeout._entries) || !h2o_linklist_is_empty(&ct->watch_timeout._entries))
        return;
    h2o_timeout_dispose(th->loop, &ct->script_timeout);
    h2o_timeout_dispose(th->loop, &ct->watch_timeout);
    free(ct);
}

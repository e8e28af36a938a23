/*
 * CGI: the script runs in its own process group with the request's CGI variables as its whole
 * environment, the request body on stdin, its stdout parsed as a CGI response and streamed to
 * the client, its stderr sent to the error log.  As for pool workers, a script never runs as
 * root: when h2pool is root, it runs as nobody.  The supervisor's SIGCHLD handler reaps it.
 */
#include "handlers/cgi.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "frontend/log.h"
#include "handlers/cgi_response.h"

typedef struct cgi_request {
    h2p_cgi_response_t response;
    pid_t pid;
    h2o_socket_t *in, *out, *err;
    h2o_timeout_entry_t timeout, watch;
    h2o_loop_t *loop;
    int client_fd; /* an HTTP/1 client's socket, checked for the client leaving (see on_watch); else -1 */
    int done;
} cgi_request_t;

#define CLIENT_CHECK_MS 1000

static __thread h2o_timeout_t cgi_timeout, watch_timeout;
static __thread int cgi_timeout_ready;

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
    if (kill_script && cr->pid > 0)
        kill(-cr->pid, SIGKILL);
    cr->done = 1;
}

static void on_stderr(h2o_socket_t *sock, const char *err)
{
    cgi_request_t *cr = sock->data;
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
    h2o_timeout_link(cr->loop, &cgi_timeout, &cr->timeout);
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
    h2o_timeout_link(cr->loop, &watch_timeout, &cr->watch);
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
    if (!cr->done)
        finish(cr, 1);
    h2p_cgi_response_dispose(&cr->response);
}

/* In the child: async-signal-safe calls only. */
static void exec_script(const char *path, const char *dir, char **envp, int in, int out, int err, uid_t uid, gid_t gid, int drop,
                        pid_t parent)
{
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
        _exit(127);
    syscall(SYS_close_range, 3, ~0U, 0);
    if (chdir(dir) != 0 || (drop && (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0)))
        _exit(127);
    /* after the credential change, which clears it; the parent may have died before it */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(127);
    char *argv[] = {(char *)path, NULL};
    execve(path, argv, envp);
    _exit(127);
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
    char *dir = h2o_strdup(&req->pool, script->script_filename, SIZE_MAX).base;
    *strrchr(dir, '/') = '\0';
    if (*dir == '\0')
        dir = "/";

    uid_t uid = 0;
    gid_t gid = 0;
    int drop = geteuid() == 0;
    if (drop) {
        struct passwd *pw = getpwnam("nobody");
        struct group *gr = getgrnam("nogroup");
        if (pw == NULL) {
            h2o_send_error_503(req, "Service Unavailable", "no unprivileged user to run CGI as", 0);
            return 0;
        }
        uid = pw->pw_uid;
        gid = gr != NULL ? gr->gr_gid : pw->pw_gid;
    }

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
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0)
        exec_script(script->script_filename, dir, envp, in[0], out[1], err[1], uid, gid, drop, parent);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    if (pid < 0) {
        h2p_error("cgi", "fork: %s", strerror(errno));
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
    cr->pid = pid;
    cr->done = 0;
    cr->loop = req->conn->ctx->loop;
    cr->timeout = (h2o_timeout_entry_t){0};
    cr->timeout.cb = on_timeout;
    cr->watch = (h2o_timeout_entry_t){0};
    cr->watch.cb = on_watch;
    if (!cgi_timeout_ready) {
        h2o_timeout_init(cr->loop, &cgi_timeout, H2P_CGI_TIMEOUT_MS);
        h2o_timeout_init(cr->loop, &watch_timeout, CLIENT_CHECK_MS);
        cgi_timeout_ready = 1;
    }
    h2o_timeout_link(cr->loop, &cgi_timeout, &cr->timeout);
    h2o_socket_t *client = req->version < 0x200 ? req->conn->callbacks->get_socket(req->conn) : NULL;
    cr->client_fd = client != NULL ? h2o_socket_get_fd(client) : -1;
    if (cr->client_fd >= 0)
        h2o_timeout_link(cr->loop, &watch_timeout, &cr->watch);

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

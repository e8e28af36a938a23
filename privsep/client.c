/*
 * The front end's side of privilege separation (privsep/privsep.h): what it asks the spawner.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "frontend/log.h"
#include "frontend/alloc.h"
#include "privsep/privsep.h"

static struct {
    pid_t pid;
    int command_fd, event_fd;
    pthread_mutex_t lock; /* one request and its answer at a time on the command channel */
    uint64_t next_cookie; /* atomic */
} ps = {.command_fd = -1, .event_fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER};

int h2p_privsep_start(const char *conf_dir, h2p_config_t *conf)
{
    int command[2], event[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, command) != 0)
        return -1;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, event) != 0) {
        close(command[0]);
        close(command[1]);
        return -1;
    }
    pid_t front_end = getpid();
    pid_t pid = fork();
    if (pid == 0)
        h2p_spawner_main(conf_dir, conf, command[1], event[1], front_end);
    close(command[1]);
    close(event[1]);
    if (pid < 0) {
        close(command[0]);
        close(event[0]);
        return -1;
    }
    ps.pid = pid;
    ps.command_fd = command[0];
    ps.event_fd = event[0];
    fcntl(ps.event_fd, F_SETFL, O_NONBLOCK);
    return 0;
}

int h2p_privsep_drop_privileges(const h2p_server_conf_t *server, char *err, size_t errlen)
{
    if (geteuid() != 0)
        return 0; /* started unprivileged: nothing to drop, the same two processes */
    const char *user = server->user != NULL ? server->user : H2P_DEFAULT_SERVER_USER;
    struct passwd *pw = getpwnam(user);
    if (pw == NULL) {
        snprintf(err, errlen, "server.user: no such user %s", user);
        return -1;
    }
    gid_t gid = pw->pw_gid;
    if (server->group != NULL) {
        struct group *gr = getgrnam(server->group);
        if (gr == NULL) {
            snprintf(err, errlen, "server.group: no such group %s", server->group);
            return -1;
        }
        gid = gr->gr_gid;
    }
    if (pw->pw_uid == 0) {
        snprintf(err, errlen, "server.user: the front end never runs as root (%s has uid 0)", user);
        return -1;
    }
    /* the user's supplementary groups too (ssl-cert, a site's group...), as nginx does */
    if (initgroups(pw->pw_name, gid) != 0 || setgid(gid) != 0 || setuid(pw->pw_uid) != 0) {
        snprintf(err, errlen, "cannot become %s: %s", user, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0 || geteuid() == 0) { /* for good */
        snprintf(err, errlen, "could regain root after becoming %s", user);
        return -1;
    }
    return 0;
}

pid_t h2p_privsep_spawner_pid(void)
{
    return ps.pid;
}

int h2p_privsep_event_fd(void)
{
    return ps.event_fd;
}

void h2p_privsep_read_events(void (*on_exit)(pid_t pid, int status))
{
    static char text[H2P_PS_MAX_PAYLOAD + 1];
    h2p_ps_msg_t msg;
    int fds[H2P_PS_MAX_FDS];
    size_t num_fds;
    ssize_t r;
    while ((r = h2p_ps_recv(ps.event_fd, &msg, text, H2P_PS_MAX_PAYLOAD, fds, &num_fds, MSG_DONTWAIT)) > 0) {
        for (size_t i = 0; i != num_fds; ++i)
            close(fds[i]);
        text[msg.len] = '\0';
        if (msg.type == H2P_PS_EXITED)
            on_exit((pid_t)msg.pid, msg.value);
        else if (msg.type == H2P_PS_LOG)
            h2p_log(msg.value, "spawner", "%s", text);
    }
    if (r == 0) {
        /* the spawner died (it never exits on its own while we run): its workers died with it,
         * and nothing can be started any more */
        h2p_error(NULL, "the privileged part (spawner %d) exited: stopping", (int)ps.pid);
        h2p_log_close();
        _exit(1);
    }
}

void h2p_privsep_stop(void)
{
    if (ps.pid <= 0)
        return;
    close(ps.command_fd); /* EOF: the spawner kills what it still runs and exits */
    ps.command_fd = -1;
    while (waitpid(ps.pid, NULL, 0) < 0 && errno == EINTR)
        ;
    ps.pid = 0; /* (the event channel is closed by the socket the supervisor loop reads it with) */
}

/* One request, one answer (main thread). */
static int request(h2p_ps_msg_t *msg, const void *payload, const int *fds, size_t num_fds, char *text, size_t textlen, int *fd_out)
{
    static char buf[4096];
    int got[H2P_PS_MAX_FDS];
    size_t num_got = 0;
    ssize_t r = -1;
    pthread_mutex_lock(&ps.lock);
    if (h2p_ps_send(ps.command_fd, msg, payload, fds, num_fds, 0) == 0) {
        while ((r = h2p_ps_recv(ps.command_fd, msg, buf, sizeof(buf) - 1, got, &num_got, 0)) > 0 && msg->type != H2P_PS_ANSWER) {
            for (size_t i = 0; i != num_got; ++i)
                close(got[i]);
        }
    }
    int err = errno;
    pthread_mutex_unlock(&ps.lock);
    if (r <= 0) {
        snprintf(text, textlen, "the privileged part does not answer (%s)", r == 0 ? "it exited" : strerror(err));
        msg->value = r == 0 ? EPIPE : err;
        return -1;
    }
    buf[msg->len] = '\0';
    snprintf(text, textlen, "%s", buf);
    for (size_t i = 0; i != num_got; ++i) {
        if (fd_out != NULL && *fd_out < 0)
            *fd_out = got[i];
        else
            close(got[i]);
    }
    return 0;
}

int h2p_privsep_reload(char *text, size_t textlen)
{
    text[0] = '\0';
    if (ps.pid <= 0)
        return -1;
    h2p_ps_msg_t msg = {.type = H2P_PS_RELOAD};
    if (request(&msg, NULL, NULL, 0, text, textlen, NULL) != 0) {
        h2p_error(NULL, "%s", text);
        text[0] = '\0';
        return -1;
    }
    return msg.value;
}

int h2p_privsep_bind(int fd, const struct sockaddr *addr, socklen_t addrlen)
{
    if (ps.pid <= 0)
        return bind(fd, addr, addrlen);
    h2p_ps_msg_t msg = {.type = H2P_PS_BIND, .len = addrlen};
    char text[256];
    if (request(&msg, addr, &fd, 1, text, sizeof(text), NULL) != 0 || msg.value != 0) {
        if (text[0] != '\0' && msg.value != EADDRINUSE && msg.value != EACCES)
            h2p_error(NULL, "bind: %s", text);
        errno = msg.value != 0 ? msg.value : EPIPE;
        return -1;
    }
    return 0;
}

static int read_all(int fd, char **data, size_t *len)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -1;
    size_t cap = st.st_size > 0 ? (size_t)st.st_size + 1 : 4096, n = 0;
    char *buf = h2o_mem_alloc(cap);
    ssize_t r;
    for (;;) {
        if (n == cap)
            buf = h2o_mem_realloc(buf, cap *= 2);
        if ((r = read(fd, buf + n, cap - n)) < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += r;
    }
    if (r < 0) {
        free(buf);
        return -1;
    }
    *data = buf;
    *len = n;
    return 0;
}

int h2p_privsep_read_file(const char *path, char **data, size_t *len, char *err, size_t errlen)
{
    int fd = -1;
    if (ps.pid <= 0) {
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
            snprintf(err, errlen, "%s", strerror(errno));
            return -1;
        }
    } else {
        h2p_ps_msg_t msg = {.type = H2P_PS_OPEN_FILE, .len = strlen(path) + 1};
        if (request(&msg, path, NULL, 0, err, errlen, &fd) != 0 || msg.value != 0 || fd < 0) {
            if (fd >= 0)
                close(fd);
            return -1;
        }
        fcntl(fd, F_SETFL, 0);
    }
    int r = read_all(fd, data, len);
    if (r != 0)
        snprintf(err, errlen, "%s", strerror(errno));
    close(fd);
    return r;
}

pid_t h2p_privsep_spawn_worker(const char *pool, int listen_fd, int output_fd, int *exec_errno, char *err, size_t errlen)
{
    int fds[2] = {listen_fd, output_fd};
    h2p_ps_msg_t msg = {.type = H2P_PS_SPAWN_WORKER, .len = strlen(pool) + 1};
    *exec_errno = 0;
    if (request(&msg, pool, fds, 2, err, errlen, NULL) != 0)
        return -1;
    if (msg.pid <= 0) {
        if (err[0] == '\0')
            snprintf(err, errlen, "%s", strerror(msg.value));
        return -1;
    }
    if ((*exec_errno = msg.exec_errno) != 0) {
        size_t used = strlen(err);
        snprintf(err + used, errlen - used, ": %s", strerror(msg.exec_errno));
    }
    return (pid_t)msg.pid;
}

void h2p_privsep_commit(const char *digest)
{
    if (ps.pid <= 0)
        return;
    /* answered: the CGI channels are read apart from this one, so the swap that follows must wait
     * until the spawner allows what the new generation runs */
    h2p_ps_msg_t msg = {.type = H2P_PS_COMMIT, .len = strlen(digest)};
    char text[256];
    if (request(&msg, digest, NULL, 0, text, sizeof(text), NULL) != 0)
        h2p_error(NULL, "%s", text);
}

void h2p_privsep_kill(pid_t pid, int sig)
{
    if (pid <= 0)
        return; /* never kill(-0): that is our own process group */
    /* any thread (a request that finds its worker broken kills it), without the lock: one
     * SEQPACKET message is sent whole, and no answer comes to it */
    h2p_ps_msg_t msg = {.type = H2P_PS_KILL, .pid = pid, .value = sig};
    h2p_ps_send(ps.command_fd, &msg, NULL, NULL, 0, 0);
}

void h2p_privsep_kill_socket_holder(pid_t master, uint64_t inode, int sig, int conn_fd)
{
    if (master <= 0 || inode == 0)
        return;
    h2p_ps_msg_t msg = {.type = H2P_PS_KILL_PEER, .pid = master, .cookie = inode, .value = sig};
    h2p_ps_send(ps.command_fd, &msg, NULL, &conn_fd, conn_fd >= 0 ? 1 : 0, 0);
}

/* ---- CGI: one channel per front-end thread, answered on that thread's loop ----------------- */

/*
 * Owned by the thread's CGI handler (handlers/cgi.c), created when the thread starts.  Its socket
 * is opened the first time the thread starts a script: a thread that never runs CGI costs the
 * spawner no channel.
 */
struct h2p_privsep_cgi_channel {
    h2o_loop_t *loop;
    h2o_socket_t *sock; /* NULL until the first script */
    h2p_privsep_cgi_cb cb;
    void *data;
};

uint64_t h2p_privsep_new_cookie(void)
{
    return __atomic_add_fetch(&ps.next_cookie, 1, __ATOMIC_RELAXED);
}

static void on_cgi_answer(h2o_socket_t *sock, const char *err)
{
    h2p_privsep_cgi_channel_t *channel = sock->data;
    h2p_ps_msg_t msg;
    char buf[256];
    int fds[H2P_PS_MAX_FDS];
    size_t num_fds;
    ssize_t r;
    while ((r = h2p_ps_recv(h2o_socket_get_fd(sock), &msg, buf, sizeof(buf), fds, &num_fds, MSG_DONTWAIT)) > 0) {
        for (size_t i = 0; i != num_fds; ++i)
            close(fds[i]);
        if (msg.type == H2P_PS_CGI_SPAWNED)
            channel->cb(channel->data, msg.cookie, (pid_t)msg.pid, msg.value);
    }
}

static int open_cgi_channel(h2p_privsep_cgi_channel_t *channel)
{
    int pair[2];
    if (ps.pid <= 0 || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) != 0)
        return -1;
    /* (no answer comes to this request: the main thread's requests and answers are not disturbed) */
    h2p_ps_msg_t msg = {.type = H2P_PS_CGI_CHANNEL};
    int sent = h2p_ps_send(ps.command_fd, &msg, NULL, pair + 1, 1, MSG_DONTWAIT);
    close(pair[1]);
    if (sent != 0) {
        close(pair[0]);
        return -1;
    }
    channel->sock = h2o_evloop_socket_create(channel->loop, pair[0], H2O_SOCKET_FLAG_DONT_READ);
    channel->sock->data = channel;
    h2o_socket_read_start(channel->sock, on_cgi_answer);
    return 0;
}

h2p_privsep_cgi_channel_t *h2p_privsep_cgi_channel_create(h2o_loop_t *loop, h2p_privsep_cgi_cb cb, void *data)
{
    h2p_privsep_cgi_channel_t *channel = h2p_calloc(1, sizeof(*channel));
    channel->loop = loop;
    channel->cb = cb;
    channel->data = data;
    return channel;
}

int h2p_privsep_spawn_cgi(h2p_privsep_cgi_channel_t *channel, uint64_t cookie, const char *path, char **envp, int in, int out,
                          int err)
{
    if (channel->sock == NULL && open_cgi_channel(channel) != 0)
        return -1;
    size_t len = strlen(path) + 1;
    for (char **e = envp; *e != NULL; ++e)
        len += strlen(*e) + 1;
    if (len > H2P_PS_MAX_PAYLOAD)
        return -1;
    char *payload = h2o_mem_alloc(len), *p = payload;
    p = stpcpy(p, path) + 1;
    for (char **e = envp; *e != NULL; ++e)
        p = stpcpy(p, *e) + 1;
    h2p_ps_msg_t msg = {.type = H2P_PS_SPAWN_CGI, .cookie = cookie, .len = len};
    int fds[3] = {in, out, err};
    int r = h2p_ps_send(h2o_socket_get_fd(channel->sock), &msg, payload, fds, 3, MSG_DONTWAIT);
    free(payload);
    return r;
}

void h2p_privsep_kill_cgi(h2p_privsep_cgi_channel_t *channel, uint64_t cookie, int sig)
{
    if (channel->sock == NULL)
        return;
    h2p_ps_msg_t msg = {.type = H2P_PS_KILL_CGI, .cookie = cookie, .value = sig};
    h2p_ps_send(h2o_socket_get_fd(channel->sock), &msg, NULL, NULL, 0, MSG_DONTWAIT);
}

void h2p_privsep_cgi_channel_dispose(h2p_privsep_cgi_channel_t *channel)
{
    if (channel->sock != NULL)
        h2o_socket_close(channel->sock); /* (the loop's next run frees it) */
    free(channel);
}

/*
 * The spawner: the privileged part of h2pool (privsep/privsep.h, ARCHITECTURE.md).
 *
 * One thread, one poll loop.  It reads requests from the front end, checks each against the
 * configuration it loaded itself, and does what is asked: bind a listening socket, open a
 * certificate or key, start a pool worker or a CGI script, signal a process it started.  It
 * reaps its children and reports their exits.  What arrives on a channel is never trusted: a
 * front end that was taken over can ask for anything, and gets only what the configuration
 * allows.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "frontend/log.h"
#include "frontend/alloc.h"
#include "privsep/privsep.h"

typedef struct child {
    pid_t pid;
    uint64_t cookie; /* CGI scripts; 0 for workers */
} child_t;

static struct {
    const char *conf_dir;
    h2p_config_t *conf; /* the one the front end serves */
    h2p_config_t *next; /* read by the reload in progress (NULL: none): the front end may serve it next */
    int command_fd, event_fd;
    int cgi_fds[64];
    size_t num_cgi_fds;
    child_t *children;
    size_t num_children, cap_children;
    pid_t self;
    char payload[H2P_PS_MAX_PAYLOAD + 1];
} sp;

/* ---- channels (shared with the front end's side) ----------------------------------------- */

int h2p_ps_send(int fd, const h2p_ps_msg_t *msg, const void *payload, const int *fds, size_t num_fds, int flags)
{
    struct iovec iov[2] = {{(void *)msg, sizeof(*msg)}, {(void *)payload, msg->len}};
    union {
        char buf[CMSG_SPACE(sizeof(int) * H2P_PS_MAX_FDS)];
        struct cmsghdr align;
    } control;
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = msg->len != 0 ? 2 : 1};
    if (num_fds != 0) {
        memset(&control, 0, sizeof(control));
        mh.msg_control = control.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * num_fds);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * num_fds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * num_fds);
    }
    ssize_t r;
    while ((r = sendmsg(fd, &mh, flags | MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    return r < 0 ? -1 : 0;
}

ssize_t h2p_ps_recv(int fd, h2p_ps_msg_t *msg, void *payload, size_t max, int *fds, size_t *num_fds, int flags)
{
    struct iovec iov[2] = {{msg, sizeof(*msg)}, {payload, max}};
    union {
        char buf[CMSG_SPACE(sizeof(int) * H2P_PS_MAX_FDS)];
        struct cmsghdr align;
    } control;
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2, .msg_control = control.buf, .msg_controllen = sizeof(control.buf)};
    ssize_t r;
    while ((r = recvmsg(fd, &mh, flags | MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
        ;
    *num_fds = 0;
    if (r <= 0)
        return r;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int *in = (int *)CMSG_DATA(cm);
        for (size_t i = 0; i != n; ++i) {
            if (*num_fds < H2P_PS_MAX_FDS)
                fds[(*num_fds)++] = in[i];
            else
                close(in[i]);
        }
    }
    if ((size_t)r < sizeof(*msg) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 || msg->len != (size_t)r - sizeof(*msg)) {
        for (size_t i = 0; i != *num_fds; ++i)
            close(fds[i]);
        *num_fds = 0;
        errno = EBADMSG;
        return -1;
    }
    return r;
}

/* ---- reporting ---------------------------------------------------------------------------- */

static void sp_log(h2p_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sp_log(h2p_log_level_t level, const char *fmt, ...)
{
    char text[1024];
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(text, sizeof(text), fmt, args);
    va_end(args);
    h2p_ps_msg_t msg = {.type = H2P_PS_LOG,
                        .value = level,
                        .len = n < 0                    ? 0
                               : n >= (int)sizeof(text) ? (uint32_t)sizeof(text) - 1
                                                        : (uint32_t)n};
    h2p_ps_send(sp.event_fd, &msg, text, NULL, 0, MSG_DONTWAIT);
}

static void answer(int fd, h2p_ps_msg_t *msg, const char *text, const int *fds, size_t num_fds)
{
    msg->len = text != NULL ? strlen(text) : 0;
    h2p_ps_send(fd, msg, text, fds, num_fds, 0);
}

static void answer_error(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void answer_error(int err, const char *fmt, ...)
{
    char text[512];
    va_list args;
    va_start(args, fmt);
    vsnprintf(text, sizeof(text), fmt, args);
    va_end(args);
    h2p_ps_msg_t msg = {.type = H2P_PS_ANSWER, .value = err};
    answer(sp.command_fd, &msg, text, NULL, 0);
}

/* ---- children ----------------------------------------------------------------------------- */

static void add_child(pid_t pid, uint64_t cookie)
{
    if (sp.num_children == sp.cap_children) {
        sp.cap_children = sp.cap_children != 0 ? sp.cap_children * 2 : 64;
        sp.children = h2o_mem_realloc(sp.children, sizeof(*sp.children) * sp.cap_children);
    }
    sp.children[sp.num_children++] = (child_t){pid, cookie};
}

static child_t *find_child(pid_t pid, uint64_t cookie)
{
    for (size_t i = 0; i != sp.num_children; ++i)
        if (cookie != 0 ? sp.children[i].cookie == cookie : sp.children[i].pid == pid && sp.children[i].cookie == 0)
            return sp.children + i;
    return NULL;
}

static void reap(void)
{
    for (;;) {
        /* which child exited, left a zombie (WNOWAIT) so that its pid, the id of its process group,
         * cannot be taken by a new group leader before the group is signalled */
        siginfo_t info;
        memset(&info, 0, sizeof(info));
        if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0)
            break;
        pid_t pid = info.si_pid;
        child_t *child = NULL;
        for (size_t i = 0; i != sp.num_children && child == NULL; ++i)
            if (sp.children[i].pid == pid)
                child = sp.children + i;
        /* A worker leads its own process group (exec_worker): what is left in it are its children,
         * a php-cgi master's, which nothing else would stop (the parent-death signal is not
         * inherited across fork).  Its zombie holds the group's id until it is reaped below, so
         * this reaches them and nothing else. */
        if (child != NULL && child->cookie == 0)
            kill(-pid, SIGKILL);
        int status;
        if (waitpid(pid, &status, WNOHANG) != pid)
            break; /* (not expected: the zombie is ours; the next SIGCHLD tries again) */
        if (child != NULL)
            *child = sp.children[--sp.num_children];
        h2p_ps_msg_t msg = {.type = H2P_PS_EXITED, .pid = pid, .value = status};
        h2p_ps_send(sp.event_fd, &msg, NULL, NULL, 0, 0);
    }
}

/* Only the two signals the pool manager and the CGI handler send. */
static int allowed_signal(int sig)
{
    return sig == SIGTERM || sig == SIGKILL;
}

/* ---- pool workers ------------------------------------------------------------------------- */

/* Does `pid` have `wanted` ("socket:[inode]") among its open files? */
static int holds_file(pid_t pid, const char *wanted)
{
    char dir[64], target[64];
    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    int found = 0;
    for (struct dirent *e; !found && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        ssize_t n = readlinkat(dirfd(d), e->d_name, target, sizeof(target) - 1);
        found = n > 0 && (size_t)n == strlen(wanted) && memcmp(target, wanted, (size_t)n) == 0;
    }
    closedir(d);
    return found;
}

ssize_t h2p_proc_children(pid_t pid, pid_t *kids, size_t max)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    int err = errno;
    close(fd);
    if (n < 0) {
        errno = err;
        return -1;
    }
    buf[n] = '\0';
    if ((size_t)n == sizeof(buf) - 1) { /* full: its last pid may be cut short */
        char *last = strrchr(buf, ' ');
        *(last != NULL ? last : buf) = '\0';
    }
    size_t count = 0;
    char *p = buf, *end;
    for (long kid; count != max && (kid = strtol(p, &end, 10)) > 0; p = end)
        kids[count++] = (pid_t)kid;
    return (ssize_t)count;
}

/* A php-cgi master's child that holds the socket `inode` (one end of a connection h2pool made to
 * the master's socket) gets `sig`: the request it serves ran past request_timeout, or its child
 * reached max_requests.  Only a child of a worker this spawner started. */
static void kill_socket_holder(pid_t master, uint64_t inode, int sig)
{
    char path[64], wanted[48];
    pid_t kids[512];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)master, (int)master);
    snprintf(wanted, sizeof(wanted), "socket:[%llu]", (unsigned long long)inode);
    ssize_t n = h2p_proc_children(master, kids, sizeof(kids) / sizeof(kids[0]));
    int err = errno;
    if (n < 0) {
        /* (a kernel without CONFIG_PROC_CHILDREN, or a /proc mounted with hidepid): the request
         * still ends, but its child keeps running; said once, not on every request_timeout */
        static int warned;
        char task[64];
        snprintf(task, sizeof(task), "/proc/%d/task/%d", (int)master, (int)master);
        if (!warned && (err != ENOENT || access(task, F_OK) == 0)) { /* (not: the master is gone) */
            warned = 1;
            sp_log(H2P_LOG_WARN,
                   "cannot read %s (%s): a php-cgi child past request_timeout, its ping or max_requests is not "
                   "killed (its connection is only closed)",
                   path, strerror(err));
        }
        return;
    }
    for (ssize_t i = 0; i != n; ++i) {
        if (holds_file(kids[i], wanted)) {
            kill(kids[i], sig);
            return;
        }
    }
}

static int resolve_worker_credentials(const h2p_pool_conf_t *conf, uid_t *uid, gid_t *gid, int *drop, char *err, size_t errlen)
{
    *drop = 0;
    if (geteuid() != 0)
        return 0; /* not root: workers run as we do */
    const char *user = conf->user != NULL ? conf->user : "nobody";
    if (strcmp(user, "root") == 0 && conf->group == NULL)
        return 0;
    struct passwd *pw = getpwnam(user);
    if (pw == NULL) {
        snprintf(err, errlen, "no such user %s", user);
        return -1;
    }
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    if (conf->group != NULL) {
        struct group *gr = getgrnam(conf->group);
        if (gr == NULL) {
            snprintf(err, errlen, "no such group %s", conf->group);
            return -1;
        }
        *gid = gr->gr_gid;
    } else if (conf->user == NULL) {
        struct group *gr = getgrnam("nogroup");
        if (gr != NULL)
            *gid = gr->gr_gid;
    }
    *drop = 1;
    return 0;
}

static char **build_worker_environment(const h2p_pool_conf_t *conf)
{
    char **envp = h2p_calloc(conf->env.count + 2, sizeof(char *));
    size_t n = 0;
    int has_path = 0;
    for (size_t i = 0; i != conf->env.count; ++i) {
        envp[n++] = conf->env.items[i];
        has_path |= strncmp(conf->env.items[i], "PATH=", 5) == 0;
    }
    if (!has_path)
        envp[n++] = "PATH=/usr/local/bin:/usr/bin:/bin";
    return envp;
}

/* In the child, between fork and exec: async-signal-safe calls only. */
static void exec_worker(const h2p_pool_conf_t *conf, int listen_fd, int output_fd, int errpipe, const char *dir, char **envp,
                        uid_t uid, gid_t gid, int drop, pid_t parent)
{
    int err;
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    /* fd 0: the listening socket (FCGI_LISTENSOCK_FILENO); 1 and 2: the error log; 3: exec errors */
    if (dup2(listen_fd, 0) < 0 || dup2(output_fd, 1) < 0 || dup2(output_fd, 2) < 0 || dup2(errpipe, 3) < 0)
        goto Fail;
    fcntl(3, F_SETFD, FD_CLOEXEC);
    syscall(SYS_close_range, 4, ~0U, 0);
    if (chdir(dir) != 0)
        goto Fail;
    if (drop && (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0))
        goto Fail;
    /* no orphans, even if h2pool is killed with SIGKILL: set after the credential change, which
     * clears it, and the parent checked again since it may have died before the prctl */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(127);
    if (strchr(conf->command.items[0], '/') != NULL)
        execve(conf->command.items[0], conf->command.items, envp);
    else
        execvpe(conf->command.items[0], conf->command.items, envp);
Fail:
    err = errno;
    if (write(3, &err, sizeof(err)) < 0) {
    }
    _exit(127);
}

static void spawn_worker(const char *name, int *fds, size_t num_fds)
{
    const h2p_pool_conf_t *conf = h2p_config_find_pool(sp.conf, name);
    if (num_fds != 2) {
        answer_error(EINVAL, "a worker needs a listening socket and an output pipe");
        return;
    }
    if (conf == NULL || conf->num_connect != 0 || conf->activation != H2P_ACTIVATION_FASTCGI || conf->command.count == 0) {
        answer_error(EPERM, "the configuration the privileged part loaded has no pool %s with a command", name);
        return;
    }
    uid_t uid = 0;
    gid_t gid = 0;
    int drop, errpipe[2];
    char why[256], dir_buf[PATH_MAX];
    if (resolve_worker_credentials(conf, &uid, &gid, &drop, why, sizeof(why)) != 0) {
        answer_error(ENOENT, "%s", why);
        return;
    }
    const char *dir = conf->working_dir;
    if (dir == NULL) {
        snprintf(dir_buf, sizeof(dir_buf), "%s", conf->origin.file);
        dir = dirname(dir_buf);
    }
    if (pipe2(errpipe, O_CLOEXEC) != 0) {
        answer_error(errno, "pipe: %s", strerror(errno));
        return;
    }
    char **envp = build_worker_environment(conf);
    pid_t pid = fork();
    if (pid == 0)
        exec_worker(conf, fds[0], fds[1], errpipe[1], dir, envp, uid, gid, drop, sp.self);
    free(envp);
    close(errpipe[1]);
    if (pid < 0) {
        close(errpipe[0]);
        answer_error(errno, "fork: %s", strerror(errno));
        return;
    }
    add_child(pid, 0);
    int child_errno = 0;
    ssize_t r;
    while ((r = read(errpipe[0], &child_errno, sizeof(child_errno))) < 0 && errno == EINTR)
        ;
    close(errpipe[0]);
    h2p_ps_msg_t msg = {.type = H2P_PS_ANSWER, .pid = pid, .exec_errno = r == sizeof(child_errno) ? child_errno : 0};
    char text[PATH_MAX + 64];
    snprintf(text, sizeof(text), "%s (in %s)", conf->command.items[0], dir);
    answer(sp.command_fd, &msg, text, NULL, 0);
}

/* ---- CGI scripts -------------------------------------------------------------------------- */

static int beneath(const char *path, const char *dir)
{
    size_t len = strlen(dir);
    if (len == 1 && dir[0] == '/')
        return 1;
    return strncmp(path, dir, len) == 0 && path[len] == '/';
}

static int maps_cgi(const h2p_handler_mapping_t *handlers, size_t count)
{
    for (size_t i = 0; i != count; ++i)
        if (handlers[i].cgi)
            return 1;
    return 0;
}

/* A CGI script runs only if, resolved, it lies beneath the root of an application (or site)
 * whose handler mappings run CGI; `resolved` gets its real path. */
static int allowed_cgi(const char *path, char *resolved)
{
    if (realpath(path, resolved) == NULL)
        return 0;
    for (size_t s = 0; s != sp.conf->num_sites; ++s) {
        const h2p_site_conf_t *site = sp.conf->sites + s;
        for (size_t a = 0; a != site->num_applications; ++a) {
            const h2p_application_conf_t *app = site->applications + a;
            int cgi = app->has_handlers ? maps_cgi(app->handlers, app->num_handlers) : maps_cgi(site->handlers, site->num_handlers);
            char root[PATH_MAX];
            if (cgi && app->root != NULL && realpath(app->root, root) != NULL && beneath(resolved, root))
                return 1;
        }
    }
    return 0;
}

/* In the child: async-signal-safe calls only. */
static void exec_script(const char *path, const char *resolved, const char *dir, char **envp, const int *fds, uid_t uid, gid_t gid,
                        int drop)
{
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    if (dup2(fds[0], 0) < 0 || dup2(fds[1], 1) < 0 || dup2(fds[2], 2) < 0)
        _exit(127);
    syscall(SYS_close_range, 3, ~0U, 0);
    if (chdir(dir) != 0 || (drop && (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0)))
        _exit(127);
    /* after the credential change, which clears it; the parent may have died before it */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != sp.self)
        _exit(127);
    char *argv[] = {(char *)path, NULL};
    execve(resolved, argv, envp); /* the file that was checked, not what `path` leads to now */
    _exit(127);
}

static void spawn_cgi(int channel, const h2p_ps_msg_t *req, char *payload, int *fds, size_t num_fds)
{
    h2p_ps_msg_t msg = {.type = H2P_PS_CGI_SPAWNED, .cookie = req->cookie};
    char resolved[PATH_MAX], dir[PATH_MAX];
    /* path NUL env NUL env ... NUL */
    char *end = payload + req->len, *path = payload;
    char *envp[1024];
    size_t n = 0;
    for (char *p = payload + strlen(payload) + 1; p < end && n != 1023; p += strlen(p) + 1)
        envp[n++] = p;
    envp[n] = NULL;
    if (num_fds != 3 || req->cookie == 0 || find_child(0, req->cookie) != NULL) {
        msg.value = EINVAL;
    } else if (!allowed_cgi(path, resolved)) {
        sp_log(H2P_LOG_ERROR, "refused to run %s as CGI: not beneath the root of a site or application that maps cgi: true", path);
        msg.value = EPERM;
    }
    uid_t uid = 0;
    gid_t gid = 0;
    int drop = geteuid() == 0;
    if (msg.value == 0 && drop) {
        struct passwd *pw = getpwnam("nobody");
        struct group *gr = getgrnam("nogroup");
        if (pw == NULL)
            msg.value = ENOENT;
        else {
            uid = pw->pw_uid;
            gid = gr != NULL ? gr->gr_gid : pw->pw_gid;
        }
    }
    if (msg.value == 0) {
        snprintf(dir, sizeof(dir), "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash != NULL)
            *slash = '\0';
        if (slash == NULL || dir[0] == '\0')
            strcpy(dir, "/");
        pid_t pid = fork();
        if (pid == 0)
            exec_script(path, resolved, dir, envp, fds, uid, gid, drop);
        if (pid < 0) {
            msg.value = errno;
        } else {
            add_child(pid, req->cookie);
            msg.pid = pid;
        }
    }
    h2p_ps_send(channel, &msg, NULL, NULL, 0, MSG_DONTWAIT);
}

/* ---- listeners and files ------------------------------------------------------------------ */

static int same_port_address(const struct sockaddr *a, socklen_t alen, const h2p_binding_t *b)
{
    if (a->sa_family == AF_INET && alen >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *sin = (const void *)a;
        if (ntohs(sin->sin_port) != b->port)
            return 0;
        if (b->any_address) /* `*` falls back to IPv4's any address on a host without IPv6 */
            return sin->sin_addr.s_addr == htonl(INADDR_ANY);
        return b->addr.ss_family == AF_INET && ((const struct sockaddr_in *)&b->addr)->sin_addr.s_addr == sin->sin_addr.s_addr;
    }
    if (a->sa_family == AF_INET6 && alen >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *sin6 = (const void *)a;
        return ntohs(sin6->sin6_port) == b->port && b->addr.ss_family == AF_INET6 &&
               memcmp(&((const struct sockaddr_in6 *)&b->addr)->sin6_addr, &sin6->sin6_addr, sizeof(sin6->sin6_addr)) == 0;
    }
    return 0;
}

static void bind_listener(const struct sockaddr *addr, socklen_t addrlen, int *fds, size_t num_fds)
{
    int type = 0, domain = 0;
    socklen_t len = sizeof(int);
    if (num_fds != 1 || getsockopt(fds[0], SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM ||
        getsockopt(fds[0], SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0 || domain != addr->sa_family) {
        answer_error(EINVAL, "not a TCP socket of that address family");
        return;
    }
    /* (the running configuration's, or the one a reload in progress read: it binds them first) */
    h2p_config_t *confs[] = {sp.conf, sp.next};
    for (size_t c = 0; c != 2 && confs[c] != NULL; ++c) {
        for (size_t s = 0; s != confs[c]->num_sites; ++s) {
            const h2p_site_conf_t *site = confs[c]->sites + s;
            for (size_t b = 0; b != site->num_bindings; ++b) {
                if (site->bindings[b].scheme == H2P_SCHEME_TCP || !same_port_address(addr, addrlen, site->bindings + b))
                    continue;
                h2p_ps_msg_t msg = {.type = H2P_PS_ANSWER};
                if (bind(fds[0], addr, addrlen) != 0)
                    msg.value = errno;
                answer(sp.command_fd, &msg, NULL, NULL, 0);
                return;
            }
        }
    }
    answer_error(EPERM, "no binding of the configuration the privileged part loaded has that address");
}

static int names_tls_file(const char *path)
{
    /* (the running configuration's, or the one a reload in progress read: it reads them first) */
    h2p_config_t *confs[] = {sp.conf, sp.next};
    for (size_t c = 0; c != 2 && confs[c] != NULL; ++c) {
        for (size_t s = 0; s != confs[c]->num_sites; ++s) {
            const h2p_site_conf_t *site = confs[c]->sites + s;
            const char *files[] = {site->tls.certificate, site->tls.key, site->tls.client_ca};
            for (size_t i = 0; i != 3; ++i)
                if (files[i] != NULL && strcmp(files[i], path) == 0)
                    return 1;
        }
    }
    return 0;
}

static void open_file(const char *path)
{
    if (!names_tls_file(path)) {
        answer_error(EPERM, "not a certificate, key or client CA of the configuration the privileged part loaded");
        return;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int err = fd < 0 ? errno : EINVAL;
        if (fd >= 0)
            close(fd);
        answer_error(err, "%s", strerror(err));
        return;
    }
    h2p_ps_msg_t msg = {.type = H2P_PS_ANSWER};
    answer(sp.command_fd, &msg, NULL, &fd, 1);
    close(fd);
}

static void reload(void)
{
    h2p_config_errors_t errors = {0};
    h2p_config_t *conf = h2p_config_load(sp.conf_dir, 1, &errors);
    h2p_ps_msg_t msg = {.type = H2P_PS_ANSWER, .value = (int32_t)errors.count};
    char first_error[512];
    snprintf(first_error, sizeof(first_error), "%s", errors.count != 0 ? errors.messages[0] : "");
    h2p_config_errors_clear(&errors);
    /* pending until the front end commits it: a reload it refuses leaves ours as it was */
    h2p_config_release(sp.next);
    sp.next = conf;
    /* the digest, for the front end to compare; or why it could not be loaded */
    answer(sp.command_fd, &msg, conf != NULL ? conf->digest : first_error, NULL, 0);
}

/* The reload is served (the pending configuration is the one of `digest`), or refused (""). */
static void commit(const char *digest)
{
    if (sp.next != NULL && strcmp(sp.next->digest, digest) == 0) {
        h2p_config_release(sp.conf);
        sp.conf = sp.next;
    } else {
        h2p_config_release(sp.next);
    }
    sp.next = NULL;
    h2p_ps_msg_t msg = {.type = H2P_PS_ANSWER};
    answer(sp.command_fd, &msg, NULL, NULL, 0);
}

/* ---- the loop ----------------------------------------------------------------------------- */

static void close_fds(int *fds, size_t n)
{
    for (size_t i = 0; i != n; ++i)
        close(fds[i]);
}

static void kill_everything(void) __attribute__((noreturn));
static void kill_everything(void)
{
    for (size_t i = 0; i != sp.num_children; ++i)
        kill(-sp.children[i].pid, SIGKILL);
    _exit(0);
}

static void on_command(void)
{
    h2p_ps_msg_t req;
    int fds[H2P_PS_MAX_FDS];
    size_t num_fds;
    ssize_t r = h2p_ps_recv(sp.command_fd, &req, sp.payload, H2P_PS_MAX_PAYLOAD, fds, &num_fds, MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EBADMSG))
        return;
    if (r <= 0) /* the front end is gone: so is everything we started for it */
        kill_everything();
    sp.payload[req.len] = '\0';
    switch (req.type) {
    case H2P_PS_SPAWN_WORKER:
        spawn_worker(sp.payload, fds, num_fds);
        break;
    case H2P_PS_KILL:
        if (allowed_signal(req.value) && find_child((pid_t)req.pid, 0) != NULL)
            kill(-(pid_t)req.pid, req.value);
        break;
    case H2P_PS_KILL_PEER:
        if (allowed_signal(req.value) && find_child((pid_t)req.pid, 0) != NULL)
            kill_socket_holder((pid_t)req.pid, req.cookie, req.value);
        break; /* (the connection it came with closes below: after the signal) */
    case H2P_PS_BIND:
        bind_listener((const struct sockaddr *)sp.payload, req.len, fds, num_fds);
        break;
    case H2P_PS_OPEN_FILE:
        open_file(sp.payload);
        break;
    case H2P_PS_RELOAD:
        reload();
        break;
    case H2P_PS_COMMIT:
        commit(sp.payload);
        break;
    case H2P_PS_CGI_CHANNEL:
        if (num_fds == 1 && sp.num_cgi_fds != sizeof(sp.cgi_fds) / sizeof(sp.cgi_fds[0])) {
            sp.cgi_fds[sp.num_cgi_fds++] = fds[0];
            num_fds = 0;
        }
        break;
    default:
        answer_error(EINVAL, "unknown request %u", req.type);
        break;
    }
    close_fds(fds, num_fds); /* the children have their copies */
}

/* A CGI channel: 0 once its thread has gone (EOF). */
static int on_cgi_request(int channel)
{
    h2p_ps_msg_t req;
    int fds[H2P_PS_MAX_FDS];
    size_t num_fds;
    ssize_t r = h2p_ps_recv(channel, &req, sp.payload, H2P_PS_MAX_PAYLOAD, fds, &num_fds, MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EBADMSG))
        return 1;
    if (r <= 0)
        return 0;
    sp.payload[req.len] = '\0';
    if (req.type == H2P_PS_SPAWN_CGI && req.len != 0) {
        spawn_cgi(channel, &req, sp.payload, fds, num_fds);
    } else if (req.type == H2P_PS_KILL_CGI) {
        child_t *c = find_child(0, req.cookie);
        if (c != NULL && req.cookie != 0 && allowed_signal(req.value))
            kill(-c->pid, req.value);
    }
    close_fds(fds, num_fds);
    return 1;
}

void h2p_spawner_main(const char *conf_dir, h2p_config_t *conf, int command_fd, int event_fd, pid_t front_end)
{
    prctl(PR_SET_NAME, "h2pool-spawner");
    /* The front end's death ends us, but not at once: first every worker's process group is
     * killed (kill_everything), for a php-cgi master's children have no parent-death signal of
     * their own (it is not inherited across fork) and would outlive their master.  The signal
     * arrives through the signalfd below, and so does the EOF on the command channel. */
    if (prctl(PR_SET_PDEATHSIG, SIGUSR2) != 0 || getppid() != front_end)
        _exit(1);
    /* nothing of the front end's but the two channels (and stdio, for a last word) */
    if (dup2(command_fd, 3) < 0 || dup2(event_fd, 4) < 0)
        _exit(1);
    syscall(SYS_close_range, 5, ~0U, 0);
    fcntl(3, F_SETFD, FD_CLOEXEC);
    fcntl(4, F_SETFD, FD_CLOEXEC);
    sp.command_fd = 3;
    sp.event_fd = 4;
    sp.conf_dir = conf_dir;
    sp.conf = conf;
    sp.self = getpid();

    /* SIGTERM from a service manager or SIGINT from a terminal go to the whole group: the front
     * end stops the workers gracefully, then closes the command channel, which ends us (SIGUSR1,
     * the access logs' reopen, is the front end's too: `pkill -USR1 h2pool` matches us) */
    sigset_t blocked, chld;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGINT);
    sigaddset(&blocked, SIGHUP);
    sigaddset(&blocked, SIGUSR1);
    sigaddset(&blocked, SIGCHLD);
    sigaddset(&blocked, SIGPIPE);
    sigaddset(&blocked, SIGUSR2);
    sigprocmask(SIG_SETMASK, &blocked, NULL);
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigaddset(&chld, SIGUSR2); /* (the parent-death signal) */
    int sfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);

    for (;;) {
        struct pollfd pfds[2 + sizeof(sp.cgi_fds) / sizeof(sp.cgi_fds[0])];
        pfds[0] = (struct pollfd){.fd = sp.command_fd, .events = POLLIN};
        pfds[1] = (struct pollfd){.fd = sfd, .events = POLLIN};
        for (size_t i = 0; i != sp.num_cgi_fds; ++i)
            pfds[2 + i] = (struct pollfd){.fd = sp.cgi_fds[i], .events = POLLIN};
        size_t num_cgi = sp.num_cgi_fds;
        if (poll(pfds, 2 + num_cgi, -1) < 0)
            continue;
        if (pfds[1].revents != 0) {
            struct signalfd_siginfo info;
            int parent_died = 0;
            while (read(sfd, &info, sizeof(info)) > 0)
                parent_died |= info.ssi_signo == SIGUSR2 && getppid() != front_end;
            reap();
            if (parent_died)
                kill_everything();
        }
        for (size_t i = num_cgi; i-- != 0;) {
            if (pfds[2 + i].revents != 0 && !on_cgi_request(sp.cgi_fds[i])) {
                close(sp.cgi_fds[i]);
                sp.cgi_fds[i] = sp.cgi_fds[--sp.num_cgi_fds];
            }
        }
        if (pfds[0].revents != 0)
            on_command();
    }
}

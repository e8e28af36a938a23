/*
 * Worker processes, run by the supervisor (the main thread's loop): spawn, readiness check,
 * pings, recycling, idle shutdown, reaping, and shutdown.  Nothing here runs on a front-end
 * loop except h2p_worker_connect().
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "frontend/log.h"
#include "frontend/alloc.h"
#include "handlers/fcgi_proto.h"
#include "poolmgr/pool_internal.h"
#include "privsep/privsep.h"

#define TICK_MS 250
#define MEMORY_CHECK_MS 5000
#define WORKER_BACKLOG 16

static struct {
    h2o_evloop_t *loop;
    h2o_multithread_queue_t *queue;
    h2o_multithread_receiver_t kick_receiver;
    h2o_multithread_message_t kick_message;
    int kick_pending; /* atomic */
    h2o_timeout_t tick_timeout;
    h2o_timeout_entry_t tick_entry;
    uint64_t last_memory_check;
    char sock_dir[64];
    unsigned long sequence;
    h2o_linklist_t outputs; /* stderr_reader_t: workers' output pipes not at EOF yet */
    int shutting_down;
} sup;

static void start_probe(h2p_worker_t *w, int is_ping);

/* ---- helpers ---------------------------------------------------------------------------- */

static const char *describe_status(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "signal %d (%s)%s", WTERMSIG(status), strsignal(WTERMSIG(status)),
                 WCOREDUMP(status) ? ", core dumped" : "");
    else
        snprintf(buf, len, "status %d", status);
    return buf;
}

static void pool_log(h2p_log_level_t level, h2p_pool_t *pool, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void pool_log(h2p_log_level_t level, h2p_pool_t *pool, const char *fmt, ...)
{
    char scope[96];
    snprintf(scope, sizeof(scope), "pool %s", pool->conf->name);
    va_list args;
    va_start(args, fmt);
    h2p_logv(level, scope, fmt, args);
    va_end(args);
}

void h2p_supervisor_kick(void)
{
    if (__atomic_exchange_n(&sup.kick_pending, 1, __ATOMIC_ACQ_REL) == 0)
        h2o_multithread_send_message(&sup.kick_receiver, &sup.kick_message);
}

h2p_conn_state_t h2p_connection_state(int fd)
{
    char byte;
    ssize_t r;
    while ((r = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT)) < 0 && errno == EINTR)
        ;
    if (r > 0)
        return H2P_CONN_WROTE;
    return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? H2P_CONN_CLEAN : H2P_CONN_CLOSED;
}

int h2p_worker_connect(h2p_worker_t *w, int *reused, int *connecting)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    const struct sockaddr *addr = (void *)&sa;
    socklen_t addrlen = sizeof(sa);
    *reused = *connecting = 0;

    pthread_mutex_lock(&w->pool->lock);
    h2p_worker_drop_kept_locked(w); /* (its owner thread closes it: then the worker accepts us) */
    int fd = w->fd;
    w->fd = -1;
    if (w->external) {
        int e = h2p_pool_pick_endpoint_locked(w->pool, w->endpoint, h2p_now_ms());
        if (fd >= 0 && e != (int)w->conn_endpoint) { /* kept to an endpoint now skipped */
            close(fd);
            fd = -1;
        }
        if (e < 0) {
            pthread_mutex_unlock(&w->pool->lock);
            return -1;
        }
        w->conn_endpoint = (size_t)e;
        addr = (void *)&w->pool->conf->connect[e].addr;
        addrlen = w->pool->conf->connect[e].addrlen;
    } else {
        memcpy(sa.sun_path, w->sock_path, sizeof(sa.sun_path));
    }
    if (fd < 0)
        w->conn_requests = 0; /* (a new connection: perhaps another child) */
    pthread_mutex_unlock(&w->pool->lock);
    if ((*reused = fd >= 0))
        return fd;

    if ((fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
        return -1;
    if (addr->sa_family != AF_UNIX) {
        int on = 1; /* records are small and each is sent as soon as it is complete */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    }
    if (connect(fd, addr, addrlen) != 0) {
        if (errno == EINPROGRESS) {
            *connecting = 1;
            return fd;
        }
        close(fd);
        return -1;
    }
    return fd;
}

/* The inode of the other end of the unix connection `fd` (0 if unknown), from the kernel's
 * sock_diag (UDIAG_SHOW_PEER), which any process may ask about its own sockets. */
static uint64_t unix_peer_inode(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return 0;
    int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (nl < 0)
        return 0;
    struct {
        struct nlmsghdr nlh;
        struct unix_diag_req req;
    } ask = {.nlh = {.nlmsg_len = sizeof(ask), .nlmsg_type = SOCK_DIAG_BY_FAMILY, .nlmsg_flags = NLM_F_REQUEST},
             .req = {.sdiag_family = AF_UNIX,
                     .udiag_states = ~0u,
                     .udiag_ino = (uint32_t)st.st_ino,
                     .udiag_show = UDIAG_SHOW_PEER,
                     .udiag_cookie = {INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE}}};
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    uint64_t peer = 0;
    union {
        struct nlmsghdr nlh;
        char bytes[8192];
    } answer;
    ssize_t n;
    if (sendto(nl, &ask, sizeof(ask), 0, (struct sockaddr *)&kernel, sizeof(kernel)) == (ssize_t)sizeof(ask) &&
        (n = recv(nl, &answer, sizeof(answer), 0)) > 0) {
        for (struct nlmsghdr *h = &answer.nlh; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY)
                break;
            struct unix_diag_msg *msg = NLMSG_DATA(h);
            int len = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(*msg)));
            for (struct rtattr *a = (struct rtattr *)(msg + 1); RTA_OK(a, len); a = RTA_NEXT(a, len))
                if (a->rta_type == UNIX_DIAG_PEER && RTA_PAYLOAD(a) >= (int)sizeof(uint32_t))
                    peer = *(uint32_t *)RTA_DATA(a);
        }
    }
    close(nl);
    return peer;
}

void h2p_worker_kill_connection_holder(h2p_worker_t *w, int fd, int sig)
{
    if (w->master == NULL || fd < 0)
        return;
    uint64_t peer = unix_peer_inode(fd);
    if (peer == 0) {
        pthread_mutex_lock(&w->pool->lock); /* (for its name: a reload may replace the pool's conf) */
        pool_log(H2P_LOG_WARN, w->pool, "cannot tell which php-cgi child of master %d holds the connection: closing it only",
                 (int)w->pid);
        pthread_mutex_unlock(&w->pool->lock);
        return;
    }
    h2p_privsep_kill_socket_holder(w->pid, peer, sig, fd); /* (its exit is the master's to reap: no crash) */
}

/* ---- stopping --------------------------------------------------------------------------- */

/* The worker leaves the pool's counts (starting, live, idle): it is stopping or gone. */
static void leave_service_locked(h2p_worker_t *w)
{
    if (w->state == WORKER_STARTING)
        w->pool->num_starting--;
    if (w->state == WORKER_IDLE) {
        h2o_linklist_unlink(&w->idle_link);
        w->pool->num_idle--;
    }
    if (w->state == WORKER_IDLE || w->state == WORKER_BUSY)
        w->pool->num_live--;
    if (w->fd >= 0) {
        close(w->fd);
        w->fd = -1;
    }
    h2p_worker_drop_kept_locked(w);
}

/* An external worker or a php-cgi master's slot has no process: stopping it takes it out of the
 * pool at once.  A running master whose last slot goes is stopped. */
static void remove_slot_locked(h2p_worker_t *w, const char *why)
{
    h2p_worker_t *master = w->master;
    leave_service_locked(w);
    w->state = WORKER_DEAD;
    h2o_linklist_unlink(&w->all_link);
    if (master != NULL && --master->num_slots == 0 && master->state == WORKER_RUNNING)
        h2p_worker_stop_locked(master, why);
    h2p_worker_unref_locked(w); /* the pool's reference; a request holding it keeps it until released */
}

/* A master that stops or died takes its slots with it (it is no longer RUNNING: no recursion). */
static void remove_slots_of_locked(h2p_worker_t *master, const char *why)
{
    h2p_pool_t *pool = master->pool;
    for (h2o_linklist_t *l = pool->workers.next, *next; l != &pool->workers && master->num_slots != 0; l = next) {
        next = l->next;
        h2p_worker_t *w = H2O_STRUCT_FROM_MEMBER(h2p_worker_t, all_link, l);
        if (w->master == master)
            remove_slot_locked(w, why);
    }
}

static const char *process_kind(const h2p_worker_t *w)
{
    return w->is_master ? "php-cgi master" : "worker";
}

void h2p_worker_stop_locked(h2p_worker_t *w, const char *why)
{
    if (w->state == WORKER_STOPPING || w->state == WORKER_DEAD)
        return;
    if (w->external || w->master != NULL) {
        remove_slot_locked(w, why);
        return;
    }
    if (w->state == WORKER_STARTING)
        w->killed = 1; /* its exit is ours, not a failed start */
    leave_service_locked(w);
    w->state = WORKER_STOPPING;
    w->stop_deadline = h2p_now_ms() + w->pool->conf->shutdown_time_limit_ms;
    if (w->is_master)
        remove_slots_of_locked(w, why);
    pool_log(H2P_LOG_INFO, w->pool, "stopping %s %d (%s) after %llu requests", process_kind(w), (int)w->pid, why,
             (unsigned long long)w->requests);
    /* (a php-cgi master passes SIGTERM on to its process group, its children) */
    h2p_privsep_kill(w->pid, SIGTERM);
}

void h2p_worker_kill_locked(h2p_worker_t *w)
{
    if (w->state == WORKER_DEAD)
        return;
    if (w->external || w->master != NULL) { /* never kill(-0): that is our own process group */
        remove_slot_locked(w, "killed");
        return;
    }
    leave_service_locked(w);
    w->state = WORKER_STOPPING;
    w->killed = 1;
    if (w->is_master)
        remove_slots_of_locked(w, "its php-cgi master was killed");
    h2p_privsep_kill(w->pid, SIGKILL); /* (the spawner signals the process group: a master's children too) */
}

/* Recycling overlaps: the replacement starts now, this worker stops once it is ready. */
void h2p_worker_retire_locked(h2p_worker_t *w, const char *reason)
{
    if (w->retire_reason != NULL || w->pool->draining) /* (a draining pool's workers stop: no replacement) */
        return;
    w->retire_reason = reason;
    h2p_counter_add(&w->pool->stats->recycles, 1);
    pool_log(H2P_LOG_INFO, w->pool, "recycling %s %d: %s", process_kind(w), (int)w->pid, reason);
    h2p_pool_want_spawn_locked(w->pool, 1);
}

void h2p_master_wind_down_locked(h2p_worker_t *m, const char *why)
{
    if (m->state != WORKER_RUNNING)
        return;
    if (m->retire_reason == NULL)
        m->retire_reason = why;
    m->replacement_ready = 1; /* (its busy slots stop when released, its idle ones on the tick) */
    /* (the last of its slots to go stops it, and no other slot: `next` stays valid) */
    for (h2o_linklist_t *l = m->pool->idle.next, *next; l != &m->pool->idle; l = next) {
        next = l->next;
        h2p_worker_t *slot = H2O_STRUCT_FROM_MEMBER(h2p_worker_t, idle_link, l);
        if (slot->master == m)
            h2p_worker_stop_locked(slot, m->retire_reason);
    }
}

void h2p_master_gone_locked(h2p_worker_t *m)
{
    if (m->state != WORKER_RUNNING)
        return;
    m->state = WORKER_STOPPING;
    m->gone = 1;
    m->stop_deadline = UINT64_MAX / 2; /* (nothing left to signal) */
    remove_slots_of_locked(m, "its php-cgi master died");
}

/* ---- spawning --------------------------------------------------------------------------- */

typedef struct stderr_reader {
    char scope[96];
    pid_t pid;
    h2o_socket_t *sock;
    h2o_linklist_t link; /* sup.outputs */
} stderr_reader_t;

static void close_output(stderr_reader_t *reader)
{
    h2o_linklist_unlink(&reader->link);
    h2o_socket_close(reader->sock);
    free(reader);
}

static void on_worker_output(h2o_socket_t *sock, const char *err)
{
    stderr_reader_t *reader = sock->data;
    h2o_buffer_t *in = sock->input;
    char *line = in->bytes, *end = in->bytes + in->size, *nl;
    while ((nl = memchr(line, '\n', end - line)) != NULL) {
        if (nl != line)
            h2p_log(H2P_LOG_WARN, reader->scope, "worker %d: %.*s", (int)reader->pid, (int)(nl - line), line);
        line = nl + 1;
    }
    if (err != NULL || end - line > 4000) { /* flush a partial line at EOF or when it grows too long */
        if (end != line)
            h2p_log(H2P_LOG_WARN, reader->scope, "worker %d: %.*s", (int)reader->pid, (int)(end - line), line);
        line = end;
    }
    h2o_buffer_consume(&sock->input, line - in->bytes);
    if (err != NULL)
        close_output(reader);
}

static void spawn_worker(h2p_pool_t *pool)
{
    const h2p_pool_conf_t *conf = pool->conf;
    h2p_worker_t *w = h2p_calloc(1, sizeof(*w));
    w->pool = pool;
    w->refcnt = 1;
    w->fd = -1;
    w->state = WORKER_STARTING;
    w->is_master = conf->php_master;
    snprintf(w->sock_path, sizeof(w->sock_path), "%s/%lu.sock", sup.sock_dir, ++sup.sequence);

    int listen_fd = -1, output[2] = {-1, -1};
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, w->sock_path, sizeof(sa.sun_path));
    if ((listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 || bind(listen_fd, (void *)&sa, sizeof(sa)) != 0 ||
        listen(listen_fd, WORKER_BACKLOG + (w->is_master ? (int)conf->max_processes : 0)) != 0) {
        pool_log(H2P_LOG_ERROR, pool, "cannot create worker socket %s: %s", w->sock_path, strerror(errno));
        goto Fail;
    }
    if (pipe2(output, O_CLOEXEC) != 0) {
        pool_log(H2P_LOG_ERROR, pool, "pipe: %s", strerror(errno));
        goto Fail;
    }
    /* the privileged part forks and execs it, as the pool's user, from its own configuration */
    char why[512];
    int exec_errno;
    if ((w->pid = h2p_privsep_spawn_worker(conf->name, listen_fd, output[1], &exec_errno, why, sizeof(why))) < 0) {
        pool_log(H2P_LOG_ERROR, pool, "cannot start a worker: %s", why);
        goto Fail;
    }
    close(listen_fd);
    close(output[1]);
    if (exec_errno != 0)
        pool_log(H2P_LOG_ERROR, pool, "cannot start %s", why);

    stderr_reader_t *reader = h2p_calloc(1, sizeof(*reader));
    snprintf(reader->scope, sizeof(reader->scope), "pool %s", conf->name);
    reader->pid = w->pid;
    h2o_socket_t *out = h2o_evloop_socket_create(sup.loop, output[0], 0);
    out->data = reader;
    reader->sock = out;
    h2o_linklist_insert(&sup.outputs, &reader->link);
    h2o_socket_read_start(out, on_worker_output);

    w->started_at = h2p_now_ms();
    pthread_mutex_lock(&pool->lock);
    h2o_linklist_insert(w->is_master ? &pool->masters : &pool->workers, &w->all_link);
    pool->spawned_total++;
    h2p_counter_add(&pool->stats->spawns, 1);
    pthread_mutex_unlock(&pool->lock);
    if (w->is_master)
        pool_log(H2P_LOG_INFO, pool, "spawned php-cgi master %d (PHP_FCGI_CHILDREN=%u: a slot each and a spare)", (int)w->pid,
                 conf->max_processes + 1);
    else
        pool_log(H2P_LOG_INFO, pool, "spawned worker %d", (int)w->pid);
    if (exec_errno == 0)
        start_probe(w, 0);
    return;

Fail:
    if (listen_fd >= 0)
        close(listen_fd);
    for (int i = 0; i != 2; ++i)
        if (output[i] >= 0)
            close(output[i]);
    unlink(w->sock_path);
    free(w);
    h2o_linklist_t failed;
    h2o_linklist_init_anchor(&failed);
    pthread_mutex_lock(&pool->lock);
    pool->num_starting--;
    h2p_pool_record_crash_locked(pool, h2p_now_ms(), &failed);
    pool->spawn_not_before = h2p_now_ms() + 1000;
    pthread_mutex_unlock(&pool->lock);
    h2p_pool_deliver_all(&failed);
}

/* ---- the php-cgi master layout ------------------------------------------------------------ */

static void add_slot_locked(h2p_worker_t *master, uint64_t now, h2o_linklist_t *handed)
{
    h2p_pool_t *pool = master->pool;
    h2p_worker_t *slot = h2p_calloc(1, sizeof(*slot));
    slot->pool = pool;
    slot->refcnt = 1;
    slot->fd = -1;
    slot->pid = master->pid;
    slot->master = master;
    master->refcnt++;
    master->num_slots++;
    memcpy(slot->sock_path, master->sock_path, sizeof(slot->sock_path));
    slot->state = WORKER_BUSY; /* (h2p_pool_give_worker_locked makes it idle, or hands it over) */
    slot->started_at = slot->ready_at = slot->last_active = slot->last_ping = now;
    h2o_linklist_insert(&pool->workers, &slot->all_link);
    pool->num_live++;
    h2p_pool_waiter_t *to;
    h2p_pool_give_worker_locked(pool, slot, &to);
    if (to != NULL)
        h2o_linklist_insert(handed, &to->link);
}

/*
 * A php-cgi master answered its readiness probe: its max_processes slots join the pool (the queue
 * gets them first).  A master it replaces loses its idle slots now and its busy ones as their
 * requests end; it stops with its last slot.
 */
static void master_ready_locked(h2p_worker_t *m, uint64_t now, h2o_linklist_t *handed)
{
    h2p_pool_t *pool = m->pool;
    if (pool->stopped) {
        h2p_worker_stop_locked(m, "pool stopped"); /* (no longer starting: it never was live) */
        return;
    }
    if (pool->draining && h2o_linklist_is_empty(&pool->queue)) {
        h2p_worker_stop_locked(m, "configuration changed"); /* (nothing for it to do: it would idle for ever) */
        return;
    }
    pool->num_starting--;
    m->state = WORKER_RUNNING;
    pool_log(H2P_LOG_INFO, pool, "php-cgi master %d is ready: %u slots", (int)m->pid, pool->conf->max_processes);
    for (h2o_linklist_t *l = pool->masters.next; l != &pool->masters; l = l->next) {
        h2p_worker_t *old = H2O_STRUCT_FROM_MEMBER(h2p_worker_t, all_link, l);
        if (old == m || old->state != WORKER_RUNNING || old->retire_reason == NULL || old->replacement_ready)
            continue;
        old->replacement_ready = 1;
        /* (the last of its slots to go stops it, and no other slot: `next` stays valid) */
        for (h2o_linklist_t *il = pool->idle.next, *next; il != &pool->idle; il = next) {
            next = il->next;
            h2p_worker_t *slot = H2O_STRUCT_FROM_MEMBER(h2p_worker_t, idle_link, il);
            if (slot->master == old)
                h2p_worker_stop_locked(slot, old->retire_reason);
        }
    }
    for (unsigned i = 0; i != pool->conf->max_processes; ++i)
        add_slot_locked(m, now, handed);
}

/* The resident memory of the largest of a php-cgi master's children (and of the master itself):
 * the children are listed in /proc/<pid>/task/<pid>/children. */
static uint64_t master_largest_rss(pid_t master)
{
    pid_t kids[512];
    uint64_t largest = h2p_process_rss(master);
    ssize_t n = h2p_proc_children(master, kids, sizeof(kids) / sizeof(kids[0]));
    for (ssize_t i = 0; i < n; ++i) {
        uint64_t rss = h2p_process_rss(kids[i]);
        if (rss > largest)
            largest = rss;
    }
    return largest;
}

/* A php-cgi master with all its slots idle for idle_timeout (and min_processes 0). */
static int master_idle_locked(h2p_worker_t *m, uint64_t now)
{
    h2p_pool_t *pool = m->pool;
    if (pool->conf->min_processes != 0 || m->num_slots == 0) /* (a retiring master too: its replacement may never come) */
        return 0;
    for (h2o_linklist_t *l = pool->workers.next; l != &pool->workers; l = l->next) {
        h2p_worker_t *w = H2O_STRUCT_FROM_MEMBER(h2p_worker_t, all_link, l);
        if (w->master == m && (w->state != WORKER_IDLE || now - w->last_active < pool->conf->idle_timeout_ms))
            return 0;
    }
    return 1;
}

/* The tick for a running master: recycling by time and by its children's memory, idle_timeout. */
static void tick_master_locked(h2p_worker_t *m, uint64_t now, int check_memory)
{
    const h2p_pool_conf_t *conf = m->pool->conf;
    if (m->pool->draining) {
        /* a drained pool's master serves its queue and the requests in flight, then stops (its
         * slots are exempt from idle_timeout, and min_processes would keep it): never replaced */
        if (h2o_linklist_is_empty(&m->pool->queue))
            h2p_master_wind_down_locked(m, "configuration changed");
        return;
    }
    if (conf->recycle_time_ms != 0 && now - m->started_at >= conf->recycle_time_ms)
        h2p_worker_retire_locked(m, "recycle.time");
    /* a retiring master whose replacement failed to start: another, after the start back-off (else
     * only a queue would ask for one, and with min_processes 0 it would retire for ever) */
    if (m->retire_reason != NULL && !m->replacement_ready && m->pool->num_starting == 0 && now >= m->pool->spawn_not_before)
        h2p_pool_want_spawn_locked(m->pool, 1);
    if (check_memory && conf->recycle_memory != 0 && m->retire_reason == NULL && master_largest_rss(m->pid) > conf->recycle_memory)
        h2p_worker_retire_locked(m, "recycle.memory");
    if (master_idle_locked(m, now))
        h2p_worker_stop_locked(m, "idle_timeout");
}

/* ---- readiness and pings: FCGI_GET_VALUES, answered or not within the limit ------------- */

static void end_probe(h2p_worker_t *w, int ok)
{
    h2p_pool_t *pool = w->pool;
    int was_ping = w->probe_is_ping;
    if (w->probe != NULL)
        h2o_socket_close(w->probe);
    w->probe = NULL;
    h2p_pool_waiter_t *handed_to = NULL;
    h2o_linklist_t failed;
    h2o_linklist_init_anchor(&failed);

    pthread_mutex_lock(&pool->lock);
    uint64_t now = h2p_now_ms();
    if (w->state == WORKER_STARTING && ok && w->is_master) {
        pool->failed_starts = 0;
        w->ready_at = now;
        w->last_ping = now;
        master_ready_locked(w, now, &failed); /* (the waiters handed a slot are delivered with the failed) */
    } else if (w->state == WORKER_STARTING && ok) {
        pool->failed_starts = 0;
        w->ready_at = now;
        w->last_ping = now;
        /* a replacement is ready: the worker it replaces stops as soon as it is idle */
        h2o_linklist_t *l;
        for (l = pool->workers.next; l != &pool->workers; l = l->next) {
            h2p_worker_t *old = H2O_STRUCT_FROM_MEMBER(h2p_worker_t, all_link, l);
            if (old->retire_reason != NULL && !old->replacement_ready && (old->state == WORKER_IDLE || old->state == WORKER_BUSY)) {
                old->replacement_ready = 1;
                if (old->state == WORKER_IDLE && !old->retire_at_limit)
                    h2p_worker_stop_locked(old, old->retire_reason);
                break;
            }
        }
        if (pool->stopped) {
            h2p_worker_stop_locked(w, "pool stopped"); /* (no longer starting: it never was live) */
        } else {
            pool->num_starting--;
            pool->num_live++;
            h2p_pool_give_worker_locked(pool, w, &handed_to);
        }
    } else if (w->state == WORKER_STARTING) {
        pool_log(H2P_LOG_ERROR, pool, "worker %d did not become ready (no answer to FCGI_GET_VALUES within %llu ms)", (int)w->pid,
                 (unsigned long long)pool->conf->startup_time_limit_ms);
        h2p_privsep_kill(w->pid, SIGKILL); /* its exit counts as a failed start */
    } else if (w->state == WORKER_BUSY && was_ping && w->master != NULL) {
        /* a php-cgi child behind the slot's connection (closed now; killed if it did not answer in time) */
        if (!ok)
            pool_log(H2P_LOG_WARN, pool, "a php-cgi child of master %d failed its ping", (int)w->pid);
        w->last_ping = now;
        h2p_slot_release_locked(w, ok ? H2P_RELEASE_OK : H2P_RELEASE_CLOSED, &handed_to, &failed);
    } else if (w->state == WORKER_BUSY && was_ping && ok) {
        w->last_ping = now;
        h2p_pool_give_worker_locked(pool, w, &handed_to);
    } else if (w->state == WORKER_BUSY && was_ping && w->external) {
        /* the endpoint's processes are not ours to kill: the endpoint is skipped for a while */
        h2p_pool_endpoint_failed_locked(pool, w->conn_endpoint, "failed a ping", &failed);
        w->last_ping = now; /* the next ping one interval from now, not on the next tick */
        h2p_pool_give_worker_locked(pool, w, &handed_to);
    } else if (w->state == WORKER_BUSY && was_ping) {
        pool_log(H2P_LOG_WARN, pool, "worker %d failed its ping (no answer within %llu ms): killing it", (int)w->pid,
                 (unsigned long long)pool->conf->ping_timeout_ms);
        h2p_worker_kill_locked(w);
    }
    h2p_worker_unref_locked(w); /* the probe's reference */
    pthread_mutex_unlock(&pool->lock);
    if (handed_to != NULL)
        h2p_pool_deliver(handed_to);
    h2p_pool_deliver_all(&failed);
}

static void on_probe_read(h2o_socket_t *sock, const char *err)
{
    h2p_worker_t *w = sock->data;
    h2p_fcgi_record_t rec;
    ssize_t n;
    /* A starting worker that answers anything at all runs and reads its socket: it is ready.  Not
     * every FastCGI implementation answers FCGI_GET_VALUES as it should, and what a worker makes of
     * requests is for its requests to show (a malformed answer there is a 502 and a new worker);
     * waiting for an answer that never comes would only leave the queue to time out. */
    if (w->state == WORKER_STARTING && sock->input->size != 0) {
        n = h2p_fcgi_decode_record(sock->input->bytes, sock->input->size, &rec);
        if (n == 0 && err == NULL)
            return; /* the first record is not complete yet */
        if (n <= 0 || rec.type != H2P_FCGI_GET_VALUES_RESULT)
            pool_log(H2P_LOG_WARN, w->pool, "worker %d answered FCGI_GET_VALUES with something else: taking it as ready",
                     (int)w->pid);
        end_probe(w, 1);
        return;
    }
    if (err != NULL) {
        end_probe(w, 0);
        return;
    }
    while ((n = h2p_fcgi_decode_record(sock->input->bytes, sock->input->size, &rec)) > 0) {
        if (rec.type == H2P_FCGI_GET_VALUES_RESULT) {
            end_probe(w, 1);
            return;
        }
        h2o_buffer_consume(&sock->input, (size_t)n);
    }
    if (n < 0)
        end_probe(w, 0);
}

static void on_probe_written(h2o_socket_t *sock, const char *err)
{
    if (err != NULL)
        end_probe(sock->data, 0);
}

static void start_probe(h2p_worker_t *w, int is_ping)
{
    static const char *const names[] = {H2P_FCGI_MAX_CONNS, H2P_FCGI_MAX_REQS, H2P_FCGI_MPXS_CONNS};
    /* a ping travels on the kept connection: a one-at-a-time worker would not accept another */
    int reused, connecting, fd = h2p_worker_connect(w, &reused, &connecting); /* (connecting: the write waits for it) */
    if (reused && h2p_connection_state(fd) == H2P_CONN_CLOSED) {
        /* a connection handed over by another thread, unwatched since, that the worker closed: a
         * ping on it would fail a worker that is fine (bytes it wrote fail the ping, as they should) */
        close(fd);
        fd = h2p_worker_connect(w, &reused, &connecting);
    }
    pthread_mutex_lock(&w->pool->lock);
    w->refcnt++;
    w->probe_is_ping = is_ping;
    w->probe_deadline = h2p_now_ms() + (is_ping ? w->pool->conf->ping_timeout_ms : w->pool->conf->startup_time_limit_ms);
    pthread_mutex_unlock(&w->pool->lock);
    if (fd < 0) {
        /* not reachable (yet): a starting worker is retried on the next tick until its limit */
        w->probe = NULL;
        if (is_ping) {
            end_probe(w, 0);
        } else {
            pthread_mutex_lock(&w->pool->lock);
            h2p_worker_unref_locked(w);
            pthread_mutex_unlock(&w->pool->lock);
        }
        return;
    }
    w->probe = h2o_evloop_socket_create(sup.loop, fd, 0);
    w->probe->data = w;
    h2o_buffer_t *buf;
    h2o_buffer_init(&buf, &h2o_socket_buffer_prototype);
    h2p_fcgi_encode_get_values(&buf, names, 3);
    /* libfcgi answers a management record only once it has read the next record's header:
     * an empty GET_VALUES follows (php-cgi answers the first and closes; either way we close) */
    h2o_iovec_t tail = h2o_buffer_reserve(&buf, H2P_FCGI_HEADER_LEN);
    h2p_fcgi_write_header(tail.base, H2P_FCGI_GET_VALUES, H2P_FCGI_NULL_REQUEST_ID, 0, 0);
    buf->size += H2P_FCGI_HEADER_LEN;
    h2o_iovec_t vec = h2o_iovec_init(buf->bytes, buf->size);
    h2o_socket_write(w->probe, &vec, 1, on_probe_written);
    h2o_buffer_dispose(&buf); /* the evloop copies what it cannot write at once */
    h2o_socket_read_start(w->probe, on_probe_read);
}

/* ---- reaping ---------------------------------------------------------------------------- */

static h2p_worker_t *find_worker_locked_pool(pid_t pid, h2p_pool_t **pool_out)
{
    pthread_mutex_lock(&h2p_pools_lock);
    for (h2o_linklist_t *pl = h2p_pools.next; pl != &h2p_pools; pl = pl->next) {
        h2p_pool_t *pool = H2O_STRUCT_FROM_MEMBER(h2p_pool_t, registry_link, pl);
        pthread_mutex_lock(&pool->lock);
        h2o_linklist_t *lists[] = {&pool->masters, &pool->workers};
        for (size_t i = 0; i != 2; ++i) {
            for (h2o_linklist_t *l = lists[i]->next; l != lists[i]; l = l->next) {
                h2p_worker_t *w = H2O_STRUCT_FROM_MEMBER(h2p_worker_t, all_link, l);
                if (w->pid == pid && w->master == NULL) { /* (a slot has its master's pid, no process) */
                    pthread_mutex_unlock(&h2p_pools_lock);
                    *pool_out = pool;
                    return w; /* pool->lock stays held */
                }
            }
        }
        pthread_mutex_unlock(&pool->lock);
    }
    pthread_mutex_unlock(&h2p_pools_lock);
    return NULL;
}

/* A master that died with children that hung up mid-request: one crash for it all. */
static void log_lost_children(h2p_worker_t *m)
{
    if (m->lost_children != 0)
        pool_log(H2P_LOG_INFO, m->pool, "%u php-cgi child%s of master %d hung up mid-request as it died: one crash",
                 m->lost_children, m->lost_children == 1 ? "" : "ren", (int)m->pid);
    m->lost_children = 0;
}

static void on_worker_exit(h2p_pool_t *pool, h2p_worker_t *w, int status, h2o_linklist_t *failed)
{
    char how[96];
    uint64_t now = h2p_now_ms();
    int clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    describe_status(status, how, sizeof(how));

    if (w->probe != NULL) {
        h2o_socket_close(w->probe);
        w->probe = NULL;
        h2p_worker_unref_locked(w);
    }
    switch (w->state) {
    case WORKER_STARTING:
        pool->num_starting--;
        if (w->killed) {
            pool_log(H2P_LOG_INFO, pool, "worker %d exited before it was ready (%s)", (int)w->pid, how);
            break;
        }
        pool_log(H2P_LOG_ERROR, pool, "worker %d failed to start: %s", (int)w->pid, how);
        pool->failed_starts++;
        pool->spawn_not_before = now + (pool->failed_starts < 6 ? 100u << pool->failed_starts : 5000);
        h2p_pool_record_crash_locked(pool, now, failed);
        break;
    case WORKER_IDLE:
    case WORKER_BUSY:
        leave_service_locked(w);
        if (clean) {
            /* php-cgi retiring after PHP_FCGI_MAX_REQUESTS: expected, not a crash */
            pool_log(H2P_LOG_INFO, pool, "worker %d exited (%s) after %llu requests", (int)w->pid, how,
                     (unsigned long long)w->requests);
        } else {
            pool_log(H2P_LOG_ERROR, pool, "worker %d crashed: %s, after %llu requests", (int)w->pid, how,
                     (unsigned long long)w->requests);
            h2p_pool_record_crash_locked(pool, now, failed);
        }
        break;
    case WORKER_RUNNING:
        /* a php-cgi master: nothing of ours stops it without first leaving RUNNING; the spawner
         * has killed what was left of its process group, its children */
        w->state = WORKER_STOPPING;
        remove_slots_of_locked(w, "its php-cgi master exited");
        pool_log(H2P_LOG_ERROR, pool, "php-cgi master %d exited unexpectedly: %s; its children are killed", (int)w->pid, how);
        log_lost_children(w);
        h2p_pool_record_crash_locked(pool, now, failed);
        break;
    case WORKER_STOPPING:
        if (w->gone) { /* (h2p_master_gone_locked) */
            pool_log(H2P_LOG_ERROR, pool, "php-cgi master %d exited unexpectedly: %s; its children are killed", (int)w->pid, how);
            log_lost_children(w);
            h2p_pool_record_crash_locked(pool, now, failed);
            break;
        }
        /* one stopped because it hung up mid-request was usually dead already: unless our signal
         * ended it, that is a crash, and rapid-fail protection must count it */
        if (w->lost && !clean && !(WIFSIGNALED(status) && (WTERMSIG(status) == SIGTERM || WTERMSIG(status) == SIGKILL))) {
            pool_log(H2P_LOG_ERROR, pool, "worker %d crashed: %s, after %llu requests", (int)w->pid, how,
                     (unsigned long long)w->requests);
            h2p_pool_record_crash_locked(pool, now, failed);
            break;
        }
        pool_log(H2P_LOG_INFO, pool, "worker %d stopped (%s)", (int)w->pid, how);
        break;
    case WORKER_DEAD:
        break;
    }
    w->state = WORKER_DEAD;
    unlink(w->sock_path);
    h2o_linklist_unlink(&w->all_link);
    h2p_worker_unref_locked(w);
}

void h2p_poolmgr_on_exit(pid_t pid, int status)
{
    h2p_pool_t *pool;
    h2o_linklist_t failed;
    h2o_linklist_init_anchor(&failed);
    h2p_worker_t *w = find_worker_locked_pool(pid, &pool);
    if (w != NULL) { /* (else a CGI script) */
        on_worker_exit(pool, w, status, &failed);
        pthread_mutex_unlock(&pool->lock);
        h2p_pool_deliver_all(&failed);
    }
    h2p_supervisor_kick(); /* replacements, if the queue or min_processes need them */
}

/* ---- the periodic tick ------------------------------------------------------------------ */

uint64_t h2p_process_rss(pid_t pid)
{
    char path[64], buf[128];
    snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    unsigned long size, resident;
    if (sscanf(buf, "%lu %lu", &size, &resident) != 2)
        return 0;
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* When the worker last had something to do: its last request, or its start when it has served none
 * (a recycled worker's replacement, or one spawned for a request that left before it was ready). */
static uint64_t idle_since(const h2p_worker_t *w)
{
    return w->last_active > w->ready_at ? w->last_active : w->ready_at;
}

static void tick_pool(h2p_pool_t *pool, uint64_t now, int check_memory, h2o_linklist_t *expired, h2p_worker_t **pings,
                      size_t *num_pings, size_t max_pings, h2p_worker_t **late, size_t *num_late)
{
    const h2p_pool_conf_t *conf = pool->conf;
    h2o_linklist_t *l, *next;
    /* the workers (and slots), then the php-cgi masters: a master that stops takes its slots out of
     * pool->workers, which is no longer being walked */
    h2o_linklist_t *lists[] = {&pool->workers, &pool->masters};
    for (size_t i = 0; i != 2; ++i)
        for (l = lists[i]->next; l != lists[i]; l = next) {
            next = l->next;
            h2p_worker_t *w = H2O_STRUCT_FROM_MEMBER(h2p_worker_t, all_link, l);
            switch (w->state) {
            case WORKER_STARTING:
                if (now > w->started_at + conf->startup_time_limit_ms && !w->killed) {
                    pool_log(H2P_LOG_ERROR, pool, "worker %d not ready within startup_time_limit (%llu ms): killing it",
                             (int)w->pid, (unsigned long long)conf->startup_time_limit_ms);
                    h2p_privsep_kill(w->pid, SIGKILL); /* counted as a failed start when reaped */
                    w->started_at = UINT64_MAX / 2;    /* once */
                } else if (w->probe == NULL && !w->killed && pings != NULL && *num_pings < max_pings) {
                    w->refcnt++; /* (a readiness probe that could not connect yet: retry) */
                    pings[(*num_pings)++] = w;
                }
                break;
            case WORKER_IDLE:
                /* a draining pool with nothing queued has no use for an idle worker: one that became
                 * ready, or came back from a ping, after the reload stopped the idle ones (a php-cgi
                 * master's slots go with their master: tick_master_locked) */
                if (pool->draining && h2o_linklist_is_empty(&pool->queue) && w->master == NULL) {
                    h2p_worker_stop_locked(w, "configuration changed");
                    break;
                }
                /* (an external worker is a slot, not a process: nothing of it idles out or ages) */
                /* (a php-cgi master's slot goes with its master: tick_master_locked) */
                if (!w->external && w->master == NULL && pool->num_live > conf->min_processes &&
                    now - idle_since(w) >= conf->idle_timeout_ms) {
                    h2p_worker_stop_locked(w, "idle_timeout");
                    break;
                }
                /* fall through */
            case WORKER_BUSY:
                /* a ping unanswered within ping.timeout fails (the probe would wait for ever) */
                if (w->state == WORKER_BUSY && w->probe != NULL && w->probe_is_ping && now >= w->probe_deadline &&
                    *num_late < max_pings) {
                    w->refcnt++;
                    late[(*num_late)++] = w;
                    break;
                }
                if (w->master != NULL && w->master->replacement_ready && w->state == WORKER_IDLE) {
                    h2p_worker_stop_locked(w, w->master->retire_reason); /* (its master's replacement is ready) */
                    break;
                }
                if (!w->external && w->master == NULL && conf->recycle_time_ms != 0 && now - w->started_at >= conf->recycle_time_ms)
                    h2p_worker_retire_locked(w, "recycle.time");
                if (!w->external && w->master == NULL && check_memory && conf->recycle_memory != 0 &&
                    h2p_process_rss(w->pid) > conf->recycle_memory)
                    h2p_worker_retire_locked(w, "recycle.memory");
                if (w->state == WORKER_IDLE && w->retire_reason != NULL && w->replacement_ready && !w->retire_at_limit) {
                    h2p_worker_stop_locked(w, w->retire_reason);
                } else if (w->state == WORKER_IDLE && conf->ping_interval_ms != 0 && pings != NULL && *num_pings < max_pings &&
                           now - (w->last_active > w->last_ping ? w->last_active : w->last_ping) >= conf->ping_interval_ms &&
                           !(w->master != NULL && w->kept_sock != NULL)) {
                    /* (a php-cgi master's slot with its connection kept is not pinged: its child is
                     * watched through that connection, whose end shows at once, and a ping would
                     * need a new one, taken by whichever child is free: the slot would lose its
                     * child, and the child's count of requests, to the spare) */
                    h2o_linklist_unlink(&w->idle_link);
                    pool->num_idle--;
                    w->state = WORKER_BUSY;
                    w->refcnt++;
                    pings[(*num_pings)++] = w;
                }
                break;
            case WORKER_RUNNING:
                h2p_master_count_lost_locked(w, now, expired); /* (may stop the pool: its masters wind down) */
                if (w->state == WORKER_RUNNING)
                    tick_master_locked(w, now, check_memory);
                break;
            case WORKER_STOPPING:
                h2p_master_count_lost_locked(w, now, expired);
                if (now >= w->stop_deadline) {
                    pool_log(H2P_LOG_WARN, pool, "%s %d still running after shutdown_time_limit: SIGKILL", process_kind(w),
                             (int)w->pid);
                    h2p_privsep_kill(w->pid, SIGKILL);
                    w->stop_deadline = UINT64_MAX / 2;
                }
                break;
            case WORKER_DEAD:
                break;
            }
        }
    /* requests that waited longer than request_timeout for a worker: 503 */
    while (!h2o_linklist_is_empty(&pool->queue)) {
        h2p_pool_waiter_t *waiter = H2O_STRUCT_FROM_MEMBER(h2p_pool_waiter_t, link, pool->queue.next);
        if (now - waiter->queued_at < conf->request_timeout_ms)
            break;
        h2o_linklist_unlink(&waiter->link);
        pool->num_queued--;
        waiter->state = H2P_WAITER_HANDED;
        waiter->status = 503;
        h2o_linklist_insert(expired, &waiter->link);
    }
}

static void spawn_what_is_wanted(uint64_t now)
{
    pthread_mutex_lock(&h2p_pools_lock);
    for (h2o_linklist_t *pl = h2p_pools.next; pl != &h2p_pools; pl = pl->next) {
        h2p_pool_t *pool = H2O_STRUCT_FROM_MEMBER(h2p_pool_t, registry_link, pl);
        if (pool->conf->num_connect != 0 || pool->conf->activation != H2P_ACTIVATION_FASTCGI)
            continue;
        pthread_mutex_lock(&pool->lock);
        if (!pool->stopped && !sup.shutting_down) {
            size_t total = pool->num_live + pool->num_starting;
            if (pool->conf->php_master) { /* one master (with max_processes children) is min_processes' worth */
                if (pool->conf->min_processes != 0 && !pool->draining && pool->num_starting == 0 &&
                    h2p_pool_running_master_locked(pool) == NULL)
                    h2p_pool_want_spawn_locked(pool, 1);
            } else if (total < pool->conf->min_processes && !pool->draining) {
                h2p_pool_want_spawn_locked(pool, pool->conf->min_processes - total);
            }
            h2p_pool_spawn_for_queue_locked(pool); /* (counts what min_processes just asked for) */
        }
        size_t n = 0;
        if (now >= pool->spawn_not_before) {
            n = pool->spawn_pending;
            pool->spawn_pending = 0;
        }
        if (pool->stopped || sup.shutting_down) {
            pool->num_starting -= pool->spawn_pending + n;
            pool->spawn_pending = n = 0;
        }
        pthread_mutex_unlock(&pool->lock);
        while (n-- != 0)
            spawn_worker(pool);
    }
    pthread_mutex_unlock(&h2p_pools_lock);
}

#ifndef NDEBUG
/* Debug builds (the sanitizer suite runs them): every count a pool keeps of its workers and
 * waiters agrees with the lists it counts.  A drift would show as requests that wait for an idle
 * worker that is not there, or as workers beyond max_processes (or too few), long after the
 * change that caused it.  Run by the supervisor's tick, which is also the only thread that
 * spawns: no spawn is half done (taken from spawn_pending, not in the list yet) meanwhile. */
static void check_counts_locked(h2p_pool_t *pool)
{
    size_t in_idle_list = 0, queued = 0, starting = 0, idle = 0, live = 0;
    for (h2o_linklist_t *l = pool->idle.next; l != &pool->idle; l = l->next) {
        if (H2O_STRUCT_FROM_MEMBER(h2p_worker_t, idle_link, l)->state != WORKER_IDLE)
            h2o_fatal("pool invariant: a worker in the idle list is not idle");
        ++in_idle_list;
    }
    for (h2o_linklist_t *l = pool->workers.next; l != &pool->workers; l = l->next) {
        h2p_worker_t *w = H2O_STRUCT_FROM_MEMBER(h2p_worker_t, all_link, l);
        if (w->pool != pool || w->refcnt == 0 || w->state == WORKER_DEAD)
            h2o_fatal("pool invariant: a worker in the pool's list is another pool's, unreferenced or dead");
        if ((w->kept_sock == NULL) != (w->kept_thread == NULL))
            h2o_fatal("pool invariant: a kept connection without its thread, or a thread without its connection");
        if ((w->external || w->master != NULL) && w->state != WORKER_IDLE && w->state != WORKER_BUSY)
            h2o_fatal("pool invariant: an external worker or a slot is neither idle nor busy");
        if (w->is_master || (w->master != NULL && w->master->state != WORKER_RUNNING))
            h2o_fatal("pool invariant: a php-cgi master among the workers, or a slot of a master that is not running");
        starting += w->state == WORKER_STARTING;
        idle += w->state == WORKER_IDLE;
        live += w->state == WORKER_IDLE || w->state == WORKER_BUSY;
    }
    for (h2o_linklist_t *l = pool->masters.next; l != &pool->masters; l = l->next) {
        h2p_worker_t *m = H2O_STRUCT_FROM_MEMBER(h2p_worker_t, all_link, l);
        if (!m->is_master || m->pool != pool || m->state == WORKER_IDLE || m->state == WORKER_BUSY || m->state == WORKER_DEAD)
            h2o_fatal("pool invariant: a php-cgi master is not one, another pool's, idle, busy or dead");
        size_t slots = 0;
        for (h2o_linklist_t *sl = pool->workers.next; sl != &pool->workers; sl = sl->next)
            slots += H2O_STRUCT_FROM_MEMBER(h2p_worker_t, all_link, sl)->master == m;
        if (slots != m->num_slots || (slots != 0 && m->state != WORKER_RUNNING))
            h2o_fatal("pool invariant: a php-cgi master's slot count is wrong, or a master that is not running has slots");
        starting += m->state == WORKER_STARTING;
    }
    for (h2o_linklist_t *l = pool->queue.next; l != &pool->queue; l = l->next) {
        if (H2O_STRUCT_FROM_MEMBER(h2p_pool_waiter_t, link, l)->state != H2P_WAITER_QUEUED)
            h2o_fatal("pool invariant: a waiter in the queue is not queued");
        ++queued;
    }
    if (in_idle_list != pool->num_idle || idle != pool->num_idle)
        h2o_fatal("pool invariant: num_idle differs from the idle list or from the idle workers");
    if (queued != pool->num_queued)
        h2o_fatal("pool invariant: num_queued differs from the queue");
    if (live != pool->num_live)
        h2o_fatal("pool invariant: num_live differs from the idle and busy workers");
    if (starting + pool->spawn_pending != pool->num_starting)
        h2o_fatal("pool invariant: num_starting differs from the starting workers and the spawns asked for");
    if (pool->conf->num_connect != 0 && pool->num_starting != 0)
        h2o_fatal("pool invariant: a connect: pool has workers starting");
}
#else
#define check_counts_locked(pool)
#endif

static void on_tick(h2o_timeout_entry_t *entry)
{
    uint64_t now = h2p_now_ms();
    int check_memory = now - sup.last_memory_check >= MEMORY_CHECK_MS;
    if (check_memory)
        sup.last_memory_check = now;
    h2p_worker_t *probes[64], *late[64];
    size_t num_probes = 0, num_late = 0;
    h2o_linklist_t expired;
    h2o_linklist_init_anchor(&expired);

    pthread_mutex_lock(&h2p_pools_lock);
    for (h2o_linklist_t *pl = h2p_pools.next; pl != &h2p_pools; pl = pl->next) {
        h2p_pool_t *pool = H2O_STRUCT_FROM_MEMBER(h2p_pool_t, registry_link, pl);
        pthread_mutex_lock(&pool->lock);
        check_counts_locked(pool);
        tick_pool(pool, now, check_memory, &expired, sup.shutting_down ? NULL : probes, &num_probes, 64, late, &num_late);
        pthread_mutex_unlock(&pool->lock);
    }
    pthread_mutex_unlock(&h2p_pools_lock);

    for (size_t i = 0; i != num_late; ++i) {
        h2p_worker_t *w = late[i];
        if (w->probe != NULL && w->probe_is_ping) { /* (its answer may have come in the meantime) */
            /* a php-cgi master's child that does not answer is killed (the master forks another) */
            h2p_worker_kill_connection_holder(w, h2o_socket_get_fd(w->probe), SIGKILL);
            end_probe(w, 0);
        }
        pthread_mutex_lock(&w->pool->lock);
        h2p_worker_unref_locked(w);
        pthread_mutex_unlock(&w->pool->lock);
    }
    for (size_t i = 0; i != num_probes; ++i) {
        h2p_worker_t *w = probes[i];
        if (w->state == WORKER_STARTING || w->state == WORKER_BUSY)
            start_probe(w, w->state == WORKER_BUSY);
        pthread_mutex_lock(&w->pool->lock);
        h2p_worker_unref_locked(w);
        pthread_mutex_unlock(&w->pool->lock);
    }
    while (!h2o_linklist_is_empty(&expired)) {
        h2p_pool_waiter_t *waiter = H2O_STRUCT_FROM_MEMBER(h2p_pool_waiter_t, link, expired.next);
        h2o_linklist_unlink(&waiter->link);
        h2p_pool_deliver(waiter);
    }
    spawn_what_is_wanted(now);
    h2p_poolmgr_free_drained();
    h2o_timeout_link(sup.loop, &sup.tick_timeout, &sup.tick_entry);
}

static void on_kick(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    while (!h2o_linklist_is_empty(messages))
        h2o_linklist_unlink(messages->next);
    __atomic_store_n(&sup.kick_pending, 0, __ATOMIC_RELEASE);
    spawn_what_is_wanted(h2p_now_ms());
}

/* ---- life cycle ------------------------------------------------------------------------- */

int h2p_poolmgr_init(h2o_evloop_t *loop)
{
    sup.loop = loop;
    h2o_linklist_init_anchor(&sup.outputs);
    const char *tmp = getenv("TMPDIR");
    snprintf(sup.sock_dir, sizeof(sup.sock_dir), "%s/h2pool.%d.XXXXXX", tmp != NULL && strlen(tmp) < 32 ? tmp : "/tmp",
             (int)getpid());
    if (mkdtemp(sup.sock_dir) == NULL) {
        h2p_error(NULL, "cannot create the workers' socket directory %s: %s", sup.sock_dir, strerror(errno));
        return -1;
    }
    sup.queue = h2o_multithread_create_queue(loop);
    h2o_multithread_register_receiver(sup.queue, &sup.kick_receiver, on_kick);
    h2o_timeout_init(loop, &sup.tick_timeout, TICK_MS);
    sup.tick_entry.cb = on_tick;
    h2o_timeout_link(loop, &sup.tick_timeout, &sup.tick_entry);
    return 0;
}

void h2p_poolmgr_start(h2p_config_t *conf)
{
    for (size_t i = 0; i != conf->num_pools; ++i) {
        h2p_pool_t *pool = h2p_pool_get(conf, conf->pools + i);
        h2p_pool_release(pool);
    }
    spawn_what_is_wanted(h2p_now_ms());
}

static size_t count_workers(void)
{
    size_t n = 0;
    pthread_mutex_lock(&h2p_pools_lock);
    for (h2o_linklist_t *pl = h2p_pools.next; pl != &h2p_pools; pl = pl->next) {
        h2p_pool_t *pool = H2O_STRUCT_FROM_MEMBER(h2p_pool_t, registry_link, pl);
        pthread_mutex_lock(&pool->lock);
        for (h2o_linklist_t *l = pool->workers.next; l != &pool->workers; l = l->next)
            ++n;
        for (h2o_linklist_t *l = pool->masters.next; l != &pool->masters; l = l->next)
            ++n;
        pthread_mutex_unlock(&pool->lock);
    }
    pthread_mutex_unlock(&h2p_pools_lock);
    return n;
}

void h2p_poolmgr_shutdown(h2o_evloop_t *loop)
{
    sup.shutting_down = 1;
    pthread_mutex_lock(&h2p_pools_lock);
    for (h2o_linklist_t *pl = h2p_pools.next; pl != &h2p_pools; pl = pl->next) {
        h2p_pool_t *pool = H2O_STRUCT_FROM_MEMBER(h2p_pool_t, registry_link, pl);
        pthread_mutex_lock(&pool->lock);
        /* the masters first: each takes its slots out of pool->workers */
        for (h2o_linklist_t *l = pool->masters.next; l != &pool->masters; l = l->next)
            h2p_worker_stop_locked(H2O_STRUCT_FROM_MEMBER(h2p_worker_t, all_link, l), "server shutdown");
        for (h2o_linklist_t *l = pool->workers.next, *next; l != &pool->workers; l = next) {
            next = l->next; /* an external worker leaves the list at once */
            h2p_worker_t *w = H2O_STRUCT_FROM_MEMBER(h2p_worker_t, all_link, l);
            h2p_worker_stop_locked(w, "server shutdown");
        }
        pthread_mutex_unlock(&pool->lock);
    }
    pthread_mutex_unlock(&h2p_pools_lock);
    /* the tick escalates to SIGKILL after shutdown_time_limit; SIGCHLD reaps */
    while (count_workers() != 0)
        h2o_evloop_run(loop, TICK_MS);
    /* a php-cgi master's children hold its output pipe a moment longer (the spawner kills them
     * when it reaps the master): their last lines, for a second at most; then the pipes close */
    for (uint64_t until = h2p_now_ms() + 1000; !h2o_linklist_is_empty(&sup.outputs) && h2p_now_ms() < until;)
        h2o_evloop_run(loop, TICK_MS);
    while (!h2o_linklist_is_empty(&sup.outputs))
        close_output(H2O_STRUCT_FROM_MEMBER(stderr_reader_t, link, sup.outputs.next));
    rmdir(sup.sock_dir);
}

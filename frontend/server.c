#include "frontend/server.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/counters.h"
#include "frontend/log.h"
#include "frontend/conn_watch.h"
#include "frontend/router.h"
#include "handlers/static.h"
#include "poolmgr/pool.h"
#include "privsep/privsep.h"

h2p_server_t h2p_server;
__thread h2p_thread_t *h2p_this_thread;

/* Messages on a thread's control receiver. */
typedef struct control_message {
    h2o_multithread_message_t super;
    enum { CONTROL_SHUTDOWN, CONTROL_SWAP_GENERATION, CONTROL_START_LISTENER, CONTROL_STOP_LISTENER } type;
    h2p_gen_t *gen;
    h2p_listener_t *listener;
    unsigned epoch; /* START/STOP: which opening of the listener's sockets, and this thread's one */
    int fd;
} control_message_t;

static int open_listen_socket(const h2p_listener_t *l, char *err, size_t errlen)
{
    int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int on = 1, off = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
    if (l->addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, l->any_address ? &off : &on, sizeof(int));
    /* the first bytes of a request wake the loop, not the bare handshake */
    int defer = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof(defer));
    if (h2p_privsep_bind(fd, (const struct sockaddr *)&l->addr, l->addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
        snprintf(err, errlen, "%s: %s", l->name, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void format_listener_name(h2p_listener_t *l)
{
    char host[INET6_ADDRSTRLEN] = "*";
    if (!l->any_address) {
        if (l->addr.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&l->addr)->sin_addr, host, sizeof(host));
        else
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&l->addr)->sin6_addr, host, sizeof(host));
    }
    snprintf(l->name, sizeof(l->name), l->addr.ss_family == AF_INET6 && !l->any_address ? "%s://[%s]:%u" : "%s://%s:%u",
             l->scheme == H2P_SCHEME_HTTPS ? "https" : "http", host, l->port);
}

static int same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET)
        return ((struct sockaddr_in *)a)->sin_addr.s_addr == ((struct sockaddr_in *)b)->sin_addr.s_addr;
    return memcmp(&((struct sockaddr_in6 *)a)->sin6_addr, &((struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

h2p_listener_t *h2p_server_find_listener(h2p_scheme_t scheme, const struct sockaddr_storage *addr, uint16_t port)
{
    for (size_t i = 0; i != h2p_server.num_listeners; ++i) {
        h2p_listener_t *l = h2p_server.listeners[i];
        if (l->scheme == scheme && l->port == port && same_address(&l->addr, addr))
            return l;
    }
    return NULL;
}

static int open_listener_fds(h2p_listener_t *l, char *err, size_t errlen)
{
    for (size_t i = 0; i != h2p_server.num_threads; ++i) {
        if ((l->fds[i] = open_listen_socket(l, err, errlen)) < 0 && l->any_address && i == 0 && errno == EAFNOSUPPORT) {
            /* no IPv6 on this host: `*` means every IPv4 address */
            struct sockaddr_in *sin = (struct sockaddr_in *)&l->addr;
            memset(&l->addr, 0, sizeof(l->addr));
            sin->sin_family = AF_INET;
            sin->sin_port = htons(l->port);
            l->addrlen = sizeof(*sin);
            l->fds[i] = open_listen_socket(l, err, errlen);
        }
        if (l->fds[i] < 0) {
            while (i-- != 0) {
                close(l->fds[i]);
                l->fds[i] = -1;
            }
            return -1;
        }
    }
    l->active = 1;
    l->epoch++;
    return 0;
}

static h2p_listener_t *add_listener(const h2p_binding_t *b, char *err, size_t errlen)
{
    h2p_listener_t *l = calloc(1, sizeof(*l));
    l->index = h2p_server.num_listeners;
    l->scheme = b->scheme;
    l->addr = b->addr;
    l->addrlen = b->addrlen;
    l->port = b->port;
    l->any_address = b->any_address;
    format_listener_name(l);
    l->fds = malloc(sizeof(int) * h2p_server.num_threads);
    if (open_listener_fds(l, err, errlen) != 0) {
        free(l->fds);
        free(l);
        return NULL;
    }
    /* the router is the only handler h2o sees; it picks the site from the generation */
    l->router_hostconf = h2p_router_create_hostconf(&h2p_server.globalconf, l);
    h2p_server.listeners = realloc(h2p_server.listeners, sizeof(*h2p_server.listeners) * (h2p_server.num_listeners + 1));
    h2p_server.listeners[h2p_server.num_listeners++] = l;
    return l;
}

static int config_binds(h2p_config_t *conf, h2p_listener_t *l)
{
    for (size_t s = 0; s != conf->num_sites; ++s)
        for (size_t b = 0; b != conf->sites[s].num_bindings; ++b) {
            h2p_binding_t *binding = conf->sites[s].bindings + b;
            if (binding->scheme != H2P_SCHEME_TCP && h2p_server_find_listener(binding->scheme, &binding->addr, binding->port) == l)
                return 1;
        }
    return 0;
}

int h2p_server_open_listeners(h2p_config_t *conf, char *err, size_t errlen)
{
    size_t num_before = h2p_server.num_listeners;
    h2p_listener_t *reopened[64];
    size_t num_reopened = 0;
    for (size_t s = 0; s != conf->num_sites; ++s) {
        for (size_t b = 0; b != conf->sites[s].num_bindings; ++b) {
            h2p_binding_t *binding = conf->sites[s].bindings + b;
            if (binding->scheme == H2P_SCHEME_TCP)
                continue;
            h2p_listener_t *l = h2p_server_find_listener(binding->scheme, &binding->addr, binding->port);
            char why[256];
            if (l == NULL ? add_listener(binding, why, sizeof(why)) != NULL
                          : l->active || (num_reopened < 64 && open_listener_fds(l, why, sizeof(why)) == 0 &&
                                          (reopened[num_reopened++] = l) != NULL))
                continue;
            snprintf(err, errlen, "cannot listen on %s: %s", binding->text, why);
            /* nothing changes: close what this attempt opened */
            for (size_t i = num_before; i != h2p_server.num_listeners; ++i)
                for (size_t t = 0; t != h2p_server.num_threads; ++t)
                    close(h2p_server.listeners[i]->fds[t]);
            for (size_t i = num_before; i != h2p_server.num_listeners; ++i)
                h2p_server.listeners[i]->active = 0;
            for (size_t i = 0; i != num_reopened; ++i) {
                for (size_t t = 0; t != h2p_server.num_threads; ++t)
                    close(reopened[i]->fds[t]);
                reopened[i]->active = 0;
            }
            return -1;
        }
    }
    return 0;
}

#define BACKSTOP_TIMEOUT_MS (24 * 3600 * 1000)

void h2p_server_apply_limits(const h2p_server_conf_t *s)
{
    h2o_globalconf_t *g = &h2p_server.globalconf;
    h2p_server.max_connections = s->limits.max_connections;
    g->max_request_entity_size = s->limits.max_request_body;
    /* libh2o 2.2.5 runs one HTTP/1 timer from the start of the wait for a request until its
     * head and body have arrived, and sets it when a thread starts.  frontend/conn_watch.c times
     * the head and the body apart, from the configuration in force; libh2o's own timers are
     * only a backstop behind it. */
    g->http1.req_timeout = BACKSTOP_TIMEOUT_MS;
    g->handshake_timeout = BACKSTOP_TIMEOUT_MS;
    g->http2.idle_timeout = s->limits.keepalive_timeout_ms;
    g->server_name = h2o_iovec_init(H2O_STRLIT("h2pool"));
    g->filecache.capacity = g->http2.max_concurrent_requests_per_connection * 2;
}

int h2p_server_init(h2p_config_t *conf)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    h2p_server.num_threads = conf->server.threads != 0 ? conf->server.threads : (size_t)(ncpu > 0 ? ncpu : 1);
    pthread_mutex_init(&h2p_server.gen_lock, NULL);
    h2o_config_init(&h2p_server.globalconf);
    h2p_server_apply_limits(&conf->server);

    char err[512];
    if (h2p_server_open_listeners(conf, err, sizeof(err)) != 0) {
        h2p_error(NULL, "%s", err);
        return -1;
    }
    return 0;
}

static void on_accept(h2o_socket_t *listen_sock, const char *err)
{
    h2p_thread_listener_t *tl = listen_sock->data;
    if (err != NULL)
        return;
    /* accept a batch per wake-up, as h2o does, without starving the other sockets */
    for (int i = 0; i != 16; ++i) {
        h2o_socket_t *sock = h2o_evloop_socket_accept(listen_sock);
        if (sock == NULL)
            return;
        if (atomic_fetch_add(&h2p_server.num_connections, 1) >= h2p_server.max_connections) {
            atomic_fetch_sub(&h2p_server.num_connections, 1);
            h2p_counters_connection_refused();
            h2o_socket_close(sock);
            continue;
        }
        h2p_conn_watch_add(h2p_this_thread, sock);
        h2o_accept(&tl->accept_ctx, sock);
    }
}

/* Listener sockets change hands by message only: the main thread opens them, each thread
 * adopts (START) or closes (STOP) its own, so a quick remove-then-re-add cannot cross wires. */
static h2p_thread_listener_t *thread_listener(h2p_thread_t *th, h2p_listener_t *l)
{
    if (l->index >= th->num_listeners) {
        th->listeners = realloc(th->listeners, sizeof(*th->listeners) * (l->index + 1));
        memset(th->listeners + th->num_listeners, 0, sizeof(*th->listeners) * (l->index + 1 - th->num_listeners));
        th->num_listeners = l->index + 1;
    }
    h2p_thread_listener_t *tl = th->listeners[l->index];
    if (tl == NULL) {
        tl = th->listeners[l->index] = calloc(1, sizeof(*tl));
        tl->listener = l;
        tl->accept_ctx.ctx = &th->ctx;
        tl->accept_ctx.hosts = h2p_router_hosts(l);
    }
    return tl;
}

static void close_thread_listener(h2p_thread_listener_t *tl)
{
    if (tl != NULL && tl->sock != NULL) {
        h2o_socket_read_stop(tl->sock);
        h2o_socket_close(tl->sock); /* closes this thread's socket of the listener */
        tl->sock = NULL;
    }
}

static void stop_listener(h2p_thread_t *th, h2p_listener_t *l, unsigned epoch, int fd)
{
    h2p_thread_listener_t *tl = thread_listener(th, l);
    if (tl->sock != NULL && tl->epoch == epoch)
        close_thread_listener(tl);
    else if (tl->sock == NULL || tl->epoch != epoch)
        close(fd); /* an opening this thread never adopted (a reload refused after opening it) */
}

static void start_listener(h2p_thread_t *th, h2p_listener_t *l, unsigned epoch, int fd)
{
    h2p_thread_listener_t *tl = thread_listener(th, l);
    if (tl->sock != NULL && tl->epoch == epoch)
        return;
    close_thread_listener(tl);
    tl->epoch = epoch;
    tl->accept_ctx.ssl_ctx = h2p_gen_ssl_ctx(th->gen, l);
    tl->sock = h2o_evloop_socket_create(th->loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    tl->sock->data = tl;
    h2o_socket_read_start(tl->sock, on_accept);
}

static void stop_accepting(h2p_thread_t *th)
{
    for (size_t i = 0; i != th->num_listeners; ++i)
        close_thread_listener(th->listeners[i]);
}

static void use_generation(h2p_thread_t *th, h2p_gen_t *gen)
{
    h2p_gen_t *old = th->gen;
    th->gen = h2p_gen_retain(gen);
    for (size_t i = 0; i != th->num_listeners; ++i)
        if (th->listeners[i] != NULL)
            th->listeners[i]->accept_ctx.ssl_ctx = h2p_gen_ssl_ctx(gen, th->listeners[i]->listener);
    if (old != NULL)
        h2p_gen_release(old);
}

static void on_control(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    h2p_thread_t *th = H2O_STRUCT_FROM_MEMBER(h2p_thread_t, control, receiver);
    while (!h2o_linklist_is_empty(messages)) {
        control_message_t *msg = H2O_STRUCT_FROM_MEMBER(control_message_t, super.link, messages->next);
        h2o_linklist_unlink(&msg->super.link);
        switch (msg->type) {
        case CONTROL_SHUTDOWN:
            th->shutting_down = 1;
            stop_accepting(th);
            h2o_context_request_shutdown(&th->ctx);
            break;
        case CONTROL_SWAP_GENERATION:
            use_generation(th, msg->gen);
            h2p_gen_release(msg->gen);
            break;
        case CONTROL_START_LISTENER:
            if (th->shutting_down)
                close(msg->fd);
            else
                start_listener(th, msg->listener, msg->epoch, msg->fd);
            break;
        case CONTROL_STOP_LISTENER:
            stop_listener(th, msg->listener, msg->epoch, msg->fd);
            break;
        }
        free(msg);
    }
}

static h2o_barrier_t threads_ready;

static void *thread_main(void *arg)
{
    h2p_thread_t *th = arg;
    h2p_this_thread = th;

    /* everything this loop owns is created here, on its own thread: libh2o's buffer recycling
     * is per thread, so a socket created elsewhere would recycle into another thread's lists */
    th->loop = h2o_evloop_create();
    h2o_context_init(&th->ctx, th->loop, &h2p_server.globalconf);
    th->queue = h2o_multithread_create_queue(th->loop);
    h2o_multithread_register_receiver(th->queue, &th->control, on_control);
    h2p_router_init_thread(th);
    use_generation(th, h2p_server.gen);
    h2p_conn_watch_init_thread(th);
    for (size_t i = 0; i != h2p_server.num_listeners; ++i)
        if (h2p_server.listeners[i]->active)
            start_listener(th, h2p_server.listeners[i], h2p_server.listeners[i]->epoch, h2p_server.listeners[i]->fds[th->index]);
    h2o_barrier_wait(&threads_ready); /* after this, listeners change hands by message only */
    while (!th->shutting_down || th->requests_in_flight != 0) {
        h2o_evloop_run(th->loop, th->shutting_down ? 50 : INT32_MAX);
        /* open files are shared by the requests of one loop iteration only, as h2o does: a
         * changed file is seen by the next request */
        h2o_filecache_clear(th->ctx.filecache);
        h2p_static_clear_cache();
    }
    /* the kept worker connections on this loop close here, on their own thread, so the workers
     * see EOF (php-cgi waits for its next request through SIGTERM); then the loop frees them */
    h2p_poolmgr_release_thread(th);
    h2p_privsep_thread_exit();
    for (int i = 0; i != 3; ++i)
        h2o_evloop_run(th->loop, 0);
    h2p_conn_watch_dispose_thread(th);
    h2p_router_dispose_thread(th);
    return NULL;
}

int h2p_server_start(h2p_gen_t *gen)
{
    h2p_server.gen = h2p_gen_retain(gen);
    h2p_server.threads = calloc(h2p_server.num_threads, sizeof(h2p_thread_t));
    for (size_t t = 0; t != h2p_server.num_threads; ++t) {
        h2p_thread_t *th = h2p_server.threads + t;
        th->index = t;
    }
    for (size_t i = 0; i != h2p_server.num_listeners; ++i)
        h2p_server.listeners[i]->epoch_started = h2p_server.listeners[i]->epoch;
    h2o_barrier_init(&threads_ready, h2p_server.num_threads + 1);
    for (size_t t = 0; t != h2p_server.num_threads; ++t)
        h2o_multithread_create_thread(&h2p_server.threads[t].tid, NULL, thread_main, h2p_server.threads + t);
    h2o_barrier_wait(&threads_ready); /* from here on, every thread can take messages */
    return 0;
}

static void send_control(h2p_thread_t *th, int type, h2p_gen_t *gen, h2p_listener_t *listener)
{
    control_message_t *msg = calloc(1, sizeof(*msg));
    msg->type = type;
    msg->gen = gen;
    msg->listener = listener;
    if (listener != NULL) {
        msg->epoch = listener->epoch;
        msg->fd = listener->fds[th->index];
    }
    h2o_multithread_send_message(&th->control, &msg->super);
}

void h2p_server_swap_generation(h2p_gen_t *gen)
{
    pthread_mutex_lock(&h2p_server.gen_lock);
    h2p_gen_t *old = h2p_server.gen;
    h2p_server.gen = h2p_gen_retain(gen);
    pthread_mutex_unlock(&h2p_server.gen_lock);
    for (size_t t = 0; t != h2p_server.num_threads; ++t)
        send_control(h2p_server.threads + t, CONTROL_SWAP_GENERATION, h2p_gen_retain(gen), NULL);
    h2p_gen_release(old);
}

void h2p_server_commit_listeners(h2p_config_t *conf)
{
    /* messages reach each thread in order: it already serves the new generation */
    for (size_t i = 0; i != h2p_server.num_listeners; ++i) {
        h2p_listener_t *l = h2p_server.listeners[i];
        int wanted = config_binds(conf, l);
        if (l->active && !wanted) {
            l->active = 0;
            h2p_notice(NULL, "no longer listening on %s", l->name);
            for (size_t t = 0; t != h2p_server.num_threads; ++t)
                send_control(h2p_server.threads + t, CONTROL_STOP_LISTENER, NULL, l);
        } else if (l->active && l->epoch != l->epoch_started) {
            l->epoch_started = l->epoch;
            for (size_t t = 0; t != h2p_server.num_threads; ++t)
                send_control(h2p_server.threads + t, CONTROL_START_LISTENER, NULL, l);
        }
    }
}

int h2p_server_stop(uint64_t grace_ms)
{
    int running = 0;
    for (size_t t = 0; t != h2p_server.num_threads; ++t)
        send_control(h2p_server.threads + t, CONTROL_SHUTDOWN, NULL, NULL);
    /* a request that outlives the grace period is cut off by the process exit */
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += grace_ms / 1000;
    deadline.tv_nsec += (grace_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    for (size_t t = 0; t != h2p_server.num_threads; ++t) {
        if (pthread_timedjoin_np(h2p_server.threads[t].tid, NULL, &deadline) != 0) {
            h2p_warn(NULL, "shutdown: requests still in flight after %llu ms, cutting them off", (unsigned long long)grace_ms);
            running = 1;
        }
    }
    return running ? -1 : 0;
}

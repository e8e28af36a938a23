#include "frontend/server.h"
#include "frontend/alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/counters.h"
#include "frontend/log.h"
#include "frontend/conn_watch.h"
#include "frontend/router.h"
#include "handlers/cgi.h"
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
    unsigned epoch; /* START/STOP: which opening of the listener, and this thread's descriptor of its socket */
    int fd;         /* -1 for a listener riding another one's socket (`via`) */
    h2p_listener_t *via;
} control_message_t;

/*
 * One socket per listener, never SO_REUSEPORT.
 *
 * With SO_REUSEPORT every socket of the same user that sets it too may bind the same address,
 * and the kernel then splits the connections between them in silence: a second h2pool, or any
 * other process of the user, would get a share of the traffic.  Without it the kernel refuses
 * the address to everybody else (EADDRINUSE, for sockets bound before or after ours), so h2pool
 * fails loudly at start or reload when a port is taken and nobody can join it afterwards.
 *
 * The front-end threads share each listening socket: every thread's loop polls its own dup of
 * the descriptor and accepts from it, as h2o's own server does.  A connection wakes the idle
 * loops and one of them gets it; with several threads a loop accepts one connection per
 * wake-up, so a burst spreads over the loops instead of landing on the first one awake.
 *
 * The kernel also refuses to bind a specific address on a port a wildcard socket listens on
 * (and the reverse), which SO_REUSEPORT used to allow between h2pool's own sockets.  So a
 * listener covered by a wildcard one (127.0.0.1:80 and *:80, or 127.0.0.1:80 and 0.0.0.0:80)
 * has no socket: it rides the wildcard's, and each accepted connection goes to the listener
 * that matches its local address best (the exact address, then 0.0.0.0 or [::], then `*`) --
 * the listener the kernel would have picked.
 */

static int is_unspecified(const struct sockaddr_storage *a)
{
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr == htonl(INADDR_ANY);
    return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)a)->sin6_addr);
}

/* 2: `*` (every address), 1: 0.0.0.0 or [::] (every address of a family), 0: one address */
static int wildcard_rank(const h2p_listener_t *l)
{
    return l->any_address ? 2 : is_unspecified(&l->addr) ? 1 : 0;
}

/* Whether l's addresses include all of m's (same port): then m cannot have a socket of its own. */
static int covers(const h2p_listener_t *l, const h2p_listener_t *m)
{
    if (l->port != m->port || wildcard_rank(l) <= wildcard_rank(m))
        return 0;
    /* `*` is dual-stack [::]; without IPv6 it fell back to 0.0.0.0 and covers IPv4 only */
    return (l->any_address && l->addr.ss_family == AF_INET6) || l->addr.ss_family == m->addr.ss_family;
}

/* Whether the kernel would refuse to bind both l and m (without SO_REUSEPORT). */
static int overlaps(const h2p_listener_t *l, const h2p_listener_t *m)
{
    if (l->port != m->port)
        return 0;
    if (covers(l, m) || covers(m, l))
        return 1;
    if (l->addr.ss_family != m->addr.ss_family)
        return 0;
    if (l->addr.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&l->addr)->sin_addr.s_addr == ((const struct sockaddr_in *)&m->addr)->sin_addr.s_addr;
    return memcmp(&((const struct sockaddr_in6 *)&l->addr)->sin6_addr, &((const struct sockaddr_in6 *)&m->addr)->sin6_addr,
                  sizeof(struct in6_addr)) == 0;
}

static int open_listen_socket(const h2p_listener_t *l, char *err, size_t errlen)
{
    char where[64]; /* "127.0.0.1:8080", "[::]:8080": the address the socket binds, as nginx says it */
    h2p_format_address((const struct sockaddr *)&l->addr, where, sizeof(where));
    int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int saved = errno;
        snprintf(err, errlen, "socket() for %s failed (%d: %s)", where, saved, strerror(saved));
        errno = saved;
        return -1;
    }
    /* SO_REUSEADDR only lets us bind over connections of an earlier run (TIME_WAIT): it never
     * lets two sockets listen on one address.  No SO_REUSEPORT: see above. */
    int on = 1, off = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (l->addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, l->any_address ? &off : &on, sizeof(int));
    /* the first bytes of a request wake the loop, not the bare handshake */
    int defer = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof(defer));
    const char *call = "bind";
    if (h2p_privsep_bind(fd, (const struct sockaddr *)&l->addr, l->addrlen) != 0 || (call = "listen", listen(fd, SOMAXCONN) != 0)) {
        int saved = errno;
        snprintf(err, errlen, "%s() to %s failed (%d: %s)%s", call, where, saved, strerror(saved),
                 saved == EADDRINUSE ? ": another process holds this address (h2pool never shares a port)" : "");
        close(fd);
        errno = saved;
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

/* Opens l's socket and one dup of it per thread. */
static int open_listener_fds(h2p_listener_t *l, char *err, size_t errlen)
{
    int fd = open_listen_socket(l, err, errlen);
    if (fd < 0 && l->any_address && errno == EAFNOSUPPORT) {
        /* no IPv6 on this host: `*` means every IPv4 address */
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(l->port), .sin_addr = {htonl(INADDR_ANY)}};
        memset(&l->addr, 0, sizeof(l->addr));
        memcpy(&l->addr, &sin, sizeof(sin));
        l->addrlen = sizeof(sin);
        fd = open_listen_socket(l, err, errlen);
    }
    if (fd < 0)
        return -1;
    l->fds[0] = fd;
    for (size_t i = 1; i != h2p_server.num_threads; ++i) {
        if ((l->fds[i] = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
            snprintf(err, errlen, "dup of the socket of %s failed (%d: %s)", l->name, errno, strerror(errno));
            while (i-- != 0)
                close(l->fds[i]);
            return -1;
        }
    }
    atomic_fetch_add(&l->open_fds, (int)h2p_server.num_threads);
    l->via = NULL;
    l->active = 1;
    l->epoch++;
    return 0;
}

static void close_listener_fds(h2p_listener_t *l)
{
    for (size_t t = 0; t != h2p_server.num_threads; ++t) {
        close(l->fds[t]);
        l->fds[t] = -1;
    }
    atomic_fetch_sub(&l->open_fds, (int)h2p_server.num_threads);
}

static h2p_listener_t *new_listener(const h2p_binding_t *b)
{
    h2p_listener_t *l = h2p_calloc(1, sizeof(*l));
    l->index = h2p_server.num_listeners;
    l->scheme = b->scheme;
    l->addr = b->addr;
    l->addrlen = b->addrlen;
    l->port = b->port;
    l->any_address = b->any_address;
    format_listener_name(l);
    l->fds = h2o_mem_alloc(sizeof(int) * h2p_server.num_threads);
    for (size_t t = 0; t != h2p_server.num_threads; ++t)
        l->fds[t] = -1;
    atomic_init(&l->open_fds, 0);
    h2p_server.listeners = h2o_mem_realloc(h2p_server.listeners, sizeof(*h2p_server.listeners) * (h2p_server.num_listeners + 1));
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

/* Marks the listeners `conf` names (creating the new ones) and picks the socket serving each. */
static void plan_listeners(h2p_config_t *conf)
{
    for (size_t i = 0; i != h2p_server.num_listeners; ++i) {
        h2p_server.listeners[i]->wanted = 0;
        h2p_server.listeners[i]->binding = NULL;
    }
    for (size_t s = 0; s != conf->num_sites; ++s) {
        for (size_t b = 0; b != conf->sites[s].num_bindings; ++b) {
            const h2p_binding_t *binding = conf->sites[s].bindings + b;
            if (binding->scheme == H2P_SCHEME_TCP)
                continue;
            h2p_listener_t *l = h2p_server_find_listener(binding->scheme, &binding->addr, binding->port);
            if (l == NULL)
                l = new_listener(binding);
            l->wanted = 1;
            if (l->binding == NULL)
                l->binding = binding;
        }
    }
    for (size_t i = 0; i != h2p_server.num_listeners; ++i) {
        h2p_listener_t *l = h2p_server.listeners[i];
        l->root = l;
        for (size_t j = 0; l->wanted && j != h2p_server.num_listeners; ++j) {
            h2p_listener_t *other = h2p_server.listeners[j];
            if (other->wanted && other->scheme == l->scheme && covers(other, l) && wildcard_rank(other) > wildcard_rank(l->root))
                l->root = other;
        }
    }
}

/*
 * What a reload cannot do: the kernel refuses to bind an address while a socket of ours
 * overlapping it still listens, and closing that socket first would refuse connections on a
 * binding that stays (or lose one if the reload then failed).  So a reload that would move an
 * address to another socket is refused, with what to do instead.
 */
static int check_socket_moves(char *err, size_t errlen)
{
    for (size_t i = 0; i != h2p_server.num_listeners; ++i) {
        h2p_listener_t *l = h2p_server.listeners[i];
        if (!l->wanted)
            continue;
        h2p_listener_t *serving = l->via != NULL ? l->via : l;
        if (l->active && l->root != serving) {
            if (l->root != l)
                snprintf(err, errlen,
                         "%s covers %s, which listens on a socket of its own: adding a wildcard binding over bound addresses "
                         "needs a restart",
                         l->root->name, l->name);
            else
                snprintf(err, errlen,
                         "%s would need a socket of its own, but %s still listens there: removing a wildcard binding while the "
                         "bindings it covers stay needs a restart",
                         l->name, serving->name);
            return -1;
        }
        if (l->active || l->root != l)
            continue;
        for (size_t j = 0; j != h2p_server.num_listeners; ++j) {
            h2p_listener_t *other = h2p_server.listeners[j];
            if (other != l && other->active && other->via == NULL && overlaps(l, other)) {
                snprintf(err, errlen,
                         "%s overlaps %s, which this reload removes but which still listens: remove it in one reload and add "
                         "the new binding in the next, or restart",
                         l->name, other->name);
                return -1;
            }
        }
    }
    return 0;
}

/* A removed listener's socket closes when every thread has closed its descriptor: wait for that
 * (a few milliseconds at most) before binding an address that overlaps it. */
static void wait_for_closing_sockets(const h2p_listener_t *l)
{
    for (int waited_ms = 0; waited_ms < 2000; ++waited_ms) {
        int pending = 0;
        for (size_t i = 0; i != h2p_server.num_listeners; ++i) {
            h2p_listener_t *other = h2p_server.listeners[i];
            if (!other->active && atomic_load(&other->open_fds) != 0 && overlaps(l, other))
                pending = 1;
        }
        if (!pending)
            return;
        usleep(1000);
    }
}

/* Undoes h2p_server_open_listeners: closes what it opened, forgets the listeners it created. */
static void abandon_opening(size_t num_before, h2p_listener_t **opened, size_t num_opened)
{
    for (size_t i = 0; i != num_opened; ++i) {
        if (opened[i]->via == NULL)
            close_listener_fds(opened[i]);
        opened[i]->via = NULL;
        opened[i]->active = 0;
    }
    while (h2p_server.num_listeners > num_before) {
        h2p_listener_t *l = h2p_server.listeners[--h2p_server.num_listeners];
        free(l->fds);
        free(l);
    }
}

int h2p_server_open_listeners(h2p_config_t *conf, char *err, size_t errlen)
{
    size_t num_before = h2p_server.num_listeners;
    plan_listeners(conf);
    if (check_socket_moves(err, errlen) != 0) {
        abandon_opening(num_before, NULL, 0);
        return -1;
    }
    h2p_listener_t **opened = h2o_mem_alloc(sizeof(*opened) * (h2p_server.num_listeners + 1));
    size_t num_opened = 0;
    /* the sockets first, then the listeners they cover */
    for (size_t i = 0; i != h2p_server.num_listeners; ++i) {
        h2p_listener_t *l = h2p_server.listeners[i];
        if (!l->wanted || l->active || l->root != l)
            continue;
        wait_for_closing_sockets(l);
        char why[384];
        if (open_listener_fds(l, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "cannot listen on %s: %s", l->binding->text, why);
            abandon_opening(num_before, opened, num_opened);
            free(opened);
            return -1;
        }
        opened[num_opened++] = l;
    }
    for (size_t i = 0; i != h2p_server.num_listeners; ++i) {
        h2p_listener_t *l = h2p_server.listeners[i];
        if (l->wanted && !l->active) {
            l->via = l->root;
            l->active = 1;
            l->epoch++;
        }
    }
    free(opened);
    /* the router is the only handler h2o sees; it picks the site from the generation */
    for (size_t i = num_before; i != h2p_server.num_listeners; ++i)
        h2p_server.listeners[i]->router_hostconf = h2p_router_create_hostconf(&h2p_server.globalconf, h2p_server.listeners[i]);
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

/* An address as family and bytes, IPv4-mapped IPv6 addresses as IPv4 (built by copying: no type punning). */
typedef struct ip_address {
    sa_family_t family;
    unsigned char bytes[16];
} ip_address_t;

static ip_address_t ip_address_of(const struct sockaddr_storage *ss)
{
    ip_address_t ip = {ss->ss_family, {0}};
    if (ss->ss_family == AF_INET) {
        memcpy(ip.bytes, &((const struct sockaddr_in *)ss)->sin_addr, 4);
    } else {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)ss)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) { /* an IPv4 client of the dual-stack `*` socket */
            ip.family = AF_INET;
            memcpy(ip.bytes, a6->s6_addr + 12, 4);
        } else {
            memcpy(ip.bytes, a6->s6_addr, 16);
        }
    }
    return ip;
}

/* How well a listener's address matches `local`, the address a connection arrived at (0: not
 * at all): the exact address, then 0.0.0.0 / [::] of its family, then `*`, as the kernel ranks
 * sockets. */
static int local_address_score(const h2p_listener_t *l, const ip_address_t *local)
{
    if (l->any_address)
        return 1;
    ip_address_t own = ip_address_of(&l->addr);
    if (own.family != local->family)
        return 0;
    if (is_unspecified(&l->addr))
        return 2;
    return memcmp(own.bytes, local->bytes, own.family == AF_INET ? 4 : 16) == 0 ? 3 : 0;
}

/* The listener of a connection accepted on a socket that also serves covered listeners. */
static h2p_thread_listener_t *listener_of_connection(h2p_thread_t *th, h2p_thread_listener_t *tl, h2o_socket_t *sock)
{
    struct sockaddr_storage ss;
    if (h2o_socket_getsockname(sock, (struct sockaddr *)&ss) == 0)
        return tl;
    ip_address_t local = ip_address_of(&ss);
    h2p_thread_listener_t *best = tl;
    int best_score = local_address_score(tl->listener, &local);
    for (size_t i = 0; i != th->num_listeners; ++i) {
        h2p_thread_listener_t *covered = th->listeners[i];
        int score;
        if (covered != NULL && covered->via == tl && (score = local_address_score(covered->listener, &local)) > best_score) {
            best = covered;
            best_score = score;
        }
    }
    return best;
}

static void on_accept(h2o_socket_t *listen_sock, const char *err)
{
    h2p_thread_listener_t *tl = listen_sock->data;
    if (err != NULL)
        return;
    /* the threads share the socket: with several, take one connection per wake-up so that a
     * burst spreads over the loops; alone, take a batch without starving the other sockets */
    int batch = h2p_server.num_threads == 1 ? 16 : 1;
    for (int i = 0; i != batch; ++i) {
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
        h2p_thread_listener_t *target = tl->num_covered != 0 ? listener_of_connection(h2p_this_thread, tl, sock) : tl;
        h2o_accept(&target->accept_ctx, sock);
        h2p_conn_accepted(sock);
    }
}

/* Listener sockets change hands by message only: the main thread opens them, each thread
 * adopts (START, or COVER for a listener without a socket) or lets go (STOP) of its own, so a
 * quick remove-then-re-add cannot cross wires. */
static h2p_thread_listener_t *thread_listener(h2p_thread_t *th, h2p_listener_t *l)
{
    if (l->index >= th->num_listeners) {
        th->listeners = h2o_mem_realloc(th->listeners, sizeof(*th->listeners) * (l->index + 1));
        memset(th->listeners + th->num_listeners, 0, sizeof(*th->listeners) * (l->index + 1 - th->num_listeners));
        th->num_listeners = l->index + 1;
    }
    h2p_thread_listener_t *tl = th->listeners[l->index];
    if (tl == NULL) {
        tl = th->listeners[l->index] = h2p_calloc(1, sizeof(*tl));
        tl->listener = l;
        tl->accept_ctx.ctx = &th->ctx;
        tl->accept_ctx.hosts = h2p_router_hosts(l);
    }
    return tl;
}

static void close_thread_listener(h2p_thread_listener_t *tl)
{
    if (tl == NULL)
        return;
    if (tl->sock != NULL) {
        h2o_socket_read_stop(tl->sock);
        h2o_socket_close(tl->sock); /* closes this thread's descriptor of the listener's socket */
        tl->sock = NULL;
        atomic_fetch_sub(&tl->listener->open_fds, 1);
    }
    if (tl->via != NULL) {
        tl->via->num_covered--;
        tl->via = NULL;
    }
}

static void close_unadopted_fd(h2p_listener_t *l, int fd)
{
    if (fd >= 0) {
        close(fd);
        atomic_fetch_sub(&l->open_fds, 1);
    }
}

static void stop_listener(h2p_thread_t *th, h2p_listener_t *l, unsigned epoch, int fd)
{
    h2p_thread_listener_t *tl = thread_listener(th, l);
    if ((tl->sock != NULL || tl->via != NULL) && tl->epoch == epoch)
        close_thread_listener(tl);
    else
        close_unadopted_fd(l, fd); /* an opening this thread never adopted (a reload refused after opening it) */
}

static void start_listener(h2p_thread_t *th, h2p_listener_t *l, unsigned epoch, int fd, h2p_listener_t *via)
{
    h2p_thread_listener_t *tl = thread_listener(th, l);
    if ((tl->sock != NULL || tl->via != NULL) && tl->epoch == epoch)
        return;
    close_thread_listener(tl);
    tl->epoch = epoch;
    tl->accept_ctx.ssl_ctx = h2p_gen_ssl_ctx(th->gen, l);
    if (via != NULL) {
        tl->via = thread_listener(th, via);
        tl->via->num_covered++;
        return;
    }
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
                close_unadopted_fd(msg->listener, msg->fd);
            else
                start_listener(th, msg->listener, msg->epoch, msg->fd, msg->via);
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
    /* the per-thread state of every part (server.h: h2p_thread_t), before the first request */
    th->pool = h2p_poolmgr_thread_start(th->loop, th->queue);
    h2p_cgi_init_thread(th);
    h2p_router_init_thread(th);
    h2p_static_init_thread(th);
    use_generation(th, h2p_server.gen);
    h2p_conn_watch_init_thread(th);
    for (size_t i = 0; i != h2p_server.num_listeners; ++i) {
        h2p_listener_t *l = h2p_server.listeners[i];
        if (l->active)
            start_listener(th, l, l->epoch, l->via == NULL ? l->fds[th->index] : -1, l->via);
    }
    h2o_barrier_wait(&threads_ready); /* after this, listeners change hands by message only */
    while (!th->shutting_down || th->requests_in_flight != 0) {
        h2o_evloop_run(th->loop, th->shutting_down ? 50 : INT32_MAX);
        /* open static files are shared by the requests of one loop iteration only, as h2o does:
         * a changed file is seen by the next request (libh2o's own file cache is not used) */
        h2p_static_clear_cache();
    }
    /* the kept worker connections on this loop close here, on their own thread, so the workers
     * see EOF (php-cgi waits for its next request through SIGTERM), and so does the CGI channel
     * to the spawner; then the loop frees them.  (th->pool stays: poolmgr frees it once every
     * thread has been joined, h2p_poolmgr_front_end_stopped.) */
    h2p_poolmgr_thread_stop(th->pool);
    h2p_cgi_dispose_thread(th);
    for (int i = 0; i != 3; ++i)
        h2o_evloop_run(th->loop, 0);
    h2p_conn_watch_dispose_thread(th);
    h2p_static_dispose_thread(th);
    h2p_router_dispose_thread(th);
    return NULL;
}

int h2p_server_start(h2p_gen_t *gen)
{
    h2p_server.gen = h2p_gen_retain(gen);
    h2p_server.threads = h2p_calloc(h2p_server.num_threads, sizeof(h2p_thread_t));
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
    control_message_t *msg = h2p_calloc(1, sizeof(*msg));
    msg->type = type;
    msg->gen = gen;
    msg->listener = listener;
    if (listener != NULL) {
        msg->epoch = listener->epoch;
        msg->via = listener->via;
        msg->fd = listener->via == NULL ? listener->fds[th->index] : -1;
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
            l->via = NULL;
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

/* Pools: the queue, dispatch, hand-over between threads and rapid-fail protection. */
#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "frontend/log.h"
#include "frontend/alloc.h"
#include "poolmgr/pool_internal.h"

pthread_mutex_t h2p_pools_lock = PTHREAD_MUTEX_INITIALIZER;
h2o_linklist_t h2p_pools = {&h2p_pools, &h2p_pools};

uint64_t h2p_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * php-cgi exits by itself after PHP_FCGI_MAX_REQUESTS requests (500 unless set; 0 = never).
 * Knowing that limit lets the pool retire the worker itself, with its replacement already
 * started, instead of discovering the exit with a request in hand.
 */
static uint64_t effective_max_requests(const h2p_pool_conf_t *conf)
{
    uint64_t limit = conf->max_requests;
    if (conf->command.count == 0)
        return limit;
    if (conf->php_master) /* php-cgi replaces its children at PHP_FCGI_MAX_REQUESTS with forks of the master */
        return 0;
    const char *argv0 = conf->command.items[0], *base = strrchr(argv0, '/');
    base = base != NULL ? base + 1 : argv0;
    if (strncmp(base, "php-cgi", 7) != 0)
        return limit;
    uint64_t php_limit = 500;
    for (size_t i = 0; i != conf->env.count; ++i)
        if (strncmp(conf->env.items[i], "PHP_FCGI_MAX_REQUESTS=", 22) == 0)
            php_limit = strtoull(conf->env.items[i] + 22, NULL, 10);
    if (php_limit != 0 && (limit == 0 || php_limit < limit))
        limit = php_limit;
    return limit;
}

/*
 * A `connect:` pool's workers: max_processes slots without a process, spread round-robin over the
 * endpoints.  Each holds at most one connection, so a slot is busy exactly while one of the
 * endpoint's processes is (as far as this server's requests go).
 */
static void add_external_workers(h2p_pool_t *pool)
{
    uint64_t now = h2p_now_ms();
    pool->endpoint_down_until = h2p_calloc(pool->conf->num_connect, sizeof(*pool->endpoint_down_until));
    for (unsigned i = 0; i != pool->conf->max_processes; ++i) {
        h2p_worker_t *w = h2p_calloc(1, sizeof(*w));
        w->pool = pool;
        w->refcnt = 1;
        w->fd = -1;
        w->external = 1;
        w->endpoint = w->conn_endpoint = i % pool->conf->num_connect;
        w->state = WORKER_IDLE;
        w->started_at = w->ready_at = w->last_active = w->last_ping = now;
        h2o_linklist_insert(&pool->workers, &w->all_link);
        h2o_linklist_insert(&pool->idle, &w->idle_link); /* all idle until a request takes them */
        pool->num_live++;
        pool->num_idle++;
    }
}

h2p_pool_t *h2p_pool_get(h2p_config_t *config, h2p_pool_conf_t *conf)
{
    pthread_mutex_lock(&h2p_pools_lock);
    for (h2o_linklist_t *l = h2p_pools.next; l != &h2p_pools; l = l->next) {
        h2p_pool_t *pool = H2O_STRUCT_FROM_MEMBER(h2p_pool_t, registry_link, l);
        if (pool->conf == conf) {
            __atomic_add_fetch(&pool->refcnt, 1, __ATOMIC_RELAXED);
            pthread_mutex_unlock(&h2p_pools_lock);
            return pool;
        }
        /* a reload that leaves a pool's settings as they were keeps its workers */
        if (!pool->draining && strcmp(pool->conf->name, conf->name) == 0 && h2p_pool_conf_equal(pool->conf, conf)) {
            pthread_mutex_lock(&pool->lock);
            h2p_config_t *old = pool->config;
            pool->conf = conf;
            pool->config = h2p_config_retain(config);
            pthread_mutex_unlock(&pool->lock);
            h2p_config_release(old);
            __atomic_add_fetch(&pool->refcnt, 1, __ATOMIC_RELAXED);
            pthread_mutex_unlock(&h2p_pools_lock);
            return pool;
        }
    }
    h2p_pool_t *pool = h2p_calloc(1, sizeof(*pool));
    pool->refcnt = 2; /* the registry's and the caller's */
    pool->conf = conf;
    pool->config = h2p_config_retain(config);
    pthread_mutex_init(&pool->lock, NULL);
    h2o_linklist_init_anchor(&pool->workers);
    h2o_linklist_init_anchor(&pool->idle);
    h2o_linklist_init_anchor(&pool->queue);
    h2o_linklist_init_anchor(&pool->masters);
    pool->max_requests = effective_max_requests(conf);
    pool->crashes = h2p_calloc(conf->rapid_fail.max_crashes + 1, sizeof(uint64_t));
    pool->stats = h2p_stats_get(H2P_STATS_POOL, conf->name);
    if (conf->num_connect != 0)
        add_external_workers(pool);
    h2o_linklist_insert(&h2p_pools, &pool->registry_link);
    pthread_mutex_unlock(&h2p_pools_lock);
    return pool;
}

void h2p_pool_release(h2p_pool_t *pool)
{
    /* the registry keeps its reference until shutdown (reload will drain removed pools) */
    __atomic_sub_fetch(&pool->refcnt, 1, __ATOMIC_ACQ_REL);
}

const char *h2p_pool_name(h2p_pool_t *pool)
{
    return pool->conf->name;
}

const h2p_pool_conf_t *h2p_pool_conf(h2p_pool_t *pool)
{
    return pool->conf;
}

h2p_stats_t *h2p_pool_stats(h2p_pool_t *pool)
{
    return pool->stats;
}

pid_t h2p_worker_pid(h2p_worker_t *worker)
{
    return worker->pid;
}

h2p_pool_t *h2p_worker_pool(h2p_worker_t *worker)
{
    return worker->pool;
}

int h2p_worker_is_dead(h2p_worker_t *worker)
{
    return worker->state == WORKER_DEAD;
}

typedef struct drop_kept_message {
    h2o_multithread_message_t super;
    h2o_socket_t *sock;
} drop_kept_message_t;

/* Only the loop that registered a socket may close it: the owner thread is asked to. */
static int front_end_stopped;
static h2o_linklist_t front_end_threads = {&front_end_threads, &front_end_threads}; /* h2p_pool_thread_t.link */

static void on_drop_kept(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    while (!h2o_linklist_is_empty(messages)) {
        drop_kept_message_t *msg = H2O_STRUCT_FROM_MEMBER(drop_kept_message_t, super.link, messages->next);
        h2o_linklist_unlink(&msg->super.link);
        h2o_socket_close(msg->sock);
        free(msg);
    }
}

/* A worker, or a refusal, for a waiter of this thread (sent by h2p_pool_deliver). */
static void on_handed(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    while (!h2o_linklist_is_empty(messages)) {
        h2p_pool_waiter_t *waiter = H2O_STRUCT_FROM_MEMBER(h2p_pool_waiter_t, message.link, messages->next);
        h2o_linklist_unlink(&waiter->message.link);
        waiter->on_handed(waiter);
    }
}

static __thread h2p_pool_thread_t *this_pool_thread;

static void run_own_handed(h2p_pool_thread_t *th)
{
    /* (a hand-over made by one of these is appended, and runs in this same loop) */
    while (!h2o_linklist_is_empty(&th->own_handed)) {
        h2p_pool_waiter_t *waiter = H2O_STRUCT_FROM_MEMBER(h2p_pool_waiter_t, message.link, th->own_handed.next);
        h2o_linklist_unlink(&waiter->message.link);
        waiter->on_handed(waiter);
    }
}

static void on_end_of_turn(h2o_timeout_entry_t *entry)
{
    run_own_handed(H2O_STRUCT_FROM_MEMBER(h2p_pool_thread_t, end_of_turn_entry, entry));
}

void h2p_pool_run_handed(void)
{
    if (this_pool_thread != NULL)
        run_own_handed(this_pool_thread);
}

h2p_pool_thread_t *h2p_poolmgr_thread_start(h2o_evloop_t *loop, h2o_multithread_queue_t *queue)
{
    h2p_pool_thread_t *th = h2p_calloc(1, sizeof(*th));
    h2o_multithread_register_receiver(queue, &th->handed, on_handed);
    h2o_multithread_register_receiver(queue, &th->drop_kept, on_drop_kept);
    th->loop = loop;
    h2o_linklist_init_anchor(&th->own_handed);
    h2o_timeout_init(loop, &th->end_of_turn, 0);
    th->end_of_turn_entry.cb = on_end_of_turn;
    this_pool_thread = th;
    pthread_mutex_lock(&h2p_pools_lock);
    h2o_linklist_insert(&front_end_threads, &th->link);
    pthread_mutex_unlock(&h2p_pools_lock);
    return th;
}

void h2p_poolmgr_thread_stop(h2p_pool_thread_t *th)
{
    run_own_handed(th);
    th->loop_ended = 1;
    if (h2o_timeout_is_linked(&th->end_of_turn_entry))
        h2o_timeout_unlink(&th->end_of_turn_entry);
    h2o_timeout_dispose(th->loop, &th->end_of_turn);
    pthread_mutex_lock(&h2p_pools_lock);
    for (h2o_linklist_t *pl = h2p_pools.next; pl != &h2p_pools; pl = pl->next) {
        h2p_pool_t *pool = H2O_STRUCT_FROM_MEMBER(h2p_pool_t, registry_link, pl);
        pthread_mutex_lock(&pool->lock);
        for (h2o_linklist_t *l = pool->workers.next; l != &pool->workers; l = l->next) {
            h2p_worker_t *w = H2O_STRUCT_FROM_MEMBER(h2p_worker_t, all_link, l);
            if (w->kept_thread == th) {
                h2o_socket_close(w->kept_sock);
                w->kept_sock = NULL;
                w->kept_thread = NULL;
            }
        }
        pthread_mutex_unlock(&pool->lock);
    }
    pthread_mutex_unlock(&h2p_pools_lock);
}

void h2p_poolmgr_front_end_stopped(void)
{
    pthread_mutex_lock(&h2p_pools_lock);
    front_end_stopped = 1;
    /* no thread is left to send to them (the supervisor is the caller), and their queues are
     * never run again: their receivers stay registered there, with nothing left to receive */
    while (!h2o_linklist_is_empty(&front_end_threads)) {
        h2p_pool_thread_t *th = H2O_STRUCT_FROM_MEMBER(h2p_pool_thread_t, link, front_end_threads.next);
        h2o_linklist_unlink(&th->link);
        free(th);
    }
    pthread_mutex_unlock(&h2p_pools_lock);
}

void h2p_worker_drop_kept_locked(h2p_worker_t *worker)
{
    if (worker->kept_sock == NULL)
        return;
    if (front_end_stopped) { /* no loop left to ask: the worker must see EOF to exit */
        close(h2o_socket_get_fd(worker->kept_sock));
        worker->kept_sock = NULL;
        worker->kept_thread = NULL;
        return;
    }
    drop_kept_message_t *msg = h2p_calloc(1, sizeof(*msg));
    msg->sock = worker->kept_sock;
    h2o_multithread_send_message(&worker->kept_thread->drop_kept, &msg->super);
    worker->kept_sock = NULL;
    worker->kept_thread = NULL;
}

h2o_socket_t *h2p_worker_take_socket(h2p_worker_t *worker, h2p_pool_thread_t *th)
{
    h2o_socket_t *sock = NULL;
    pthread_mutex_lock(&worker->pool->lock);
    /* (an external worker's only while it still goes to the endpoint that connection leads to) */
    if (worker->kept_sock != NULL && worker->kept_thread == th &&
        (!worker->external ||
         h2p_pool_pick_endpoint_locked(worker->pool, worker->endpoint, h2p_now_ms()) == (int)worker->conn_endpoint)) {
        sock = worker->kept_sock;
        worker->kept_sock = NULL;
        worker->kept_thread = NULL;
    } else {
        /* another thread's: closed there, so a one-connection-at-a-time worker accepts ours */
        h2p_worker_drop_kept_locked(worker);
    }
    pthread_mutex_unlock(&worker->pool->lock);
    return sock;
}

void h2p_worker_keep_socket(h2p_worker_t *worker, h2o_socket_t *sock, h2p_pool_thread_t *th)
{
    h2p_pool_t *pool = worker->pool;
    pthread_mutex_lock(&pool->lock);
    h2p_worker_drop_kept_locked(worker);
    uint64_t limit = worker->master != NULL ? pool->conf->php_child_max_requests : 0;
    if (limit != 0 && ++worker->conn_requests >= limit) {
        /* the php-cgi child behind this connection has served max_requests: it is killed now,
         * between requests (SIGTERM would have it shut PHP down, which costs more than all its
         * requests: frontend/config.c, pair_php_max_requests), and the slot's next request goes
         * to the spare */
        h2p_counter_add(&pool->stats->recycles, 1);
        h2p_info("pool", "pool %s: a php-cgi child of master %d served %llu requests (max_requests %llu): ending it",
                 pool->conf->name, (int)worker->pid, (unsigned long long)worker->conn_requests, (unsigned long long)limit);
        worker->conn_requests = 0;
        pthread_mutex_unlock(&pool->lock);
        h2p_worker_kill_connection_holder(worker, h2o_socket_get_fd(sock), SIGKILL);
        h2o_socket_close(sock);
        return;
    }
    worker->kept_sock = sock;
    worker->kept_thread = th;
    pthread_mutex_unlock(&pool->lock);
}

static void violation_locked(h2p_worker_t *worker, const char *what)
{
    h2p_pool_t *pool = worker->pool;
    ++pool->violations_total;
    h2p_counter_add(&pool->stats->violations, 1);
    if (worker->external)
        h2p_error("pool", "pool %s: a worker at %s %s: closing its connection (protocol violation %llu in this pool)",
                  pool->conf->name, pool->conf->connect[worker->conn_endpoint].text, what,
                  (unsigned long long)pool->violations_total);
    else if (worker->master != NULL)
        h2p_error("pool", "pool %s: a php-cgi child of master %d %s: closing its connection (protocol violation %llu in this pool)",
                  pool->conf->name, (int)worker->pid, what, (unsigned long long)pool->violations_total);
    else
        h2p_error("pool", "pool %s: worker %d %s: replacing it (protocol violation %llu in this pool)", pool->conf->name,
                  (int)worker->pid, what, (unsigned long long)pool->violations_total);
}

void h2p_worker_violation(h2p_worker_t *worker, const char *what)
{
    pthread_mutex_lock(&worker->pool->lock);
    violation_locked(worker, what);
    pthread_mutex_unlock(&worker->pool->lock);
}

uint16_t h2p_worker_next_request_id(h2p_worker_t *worker)
{
    /* a stride coprime with 65535 walks all of 1..65535 before it repeats, and is no step of 1 */
    uint64_t k = worker->request_seq++;
    return (uint16_t)(1 + (k * 7919) % 65535);
}

/* Detaches `sock` from the worker it is kept for; NULL if it is no longer kept (taken, or its
 * owner has been asked to close it). */
static h2p_worker_t *detach_kept_socket(h2o_socket_t *sock, int wrote)
{
    h2p_worker_t *found = NULL;
    pthread_mutex_lock(&h2p_pools_lock);
    for (h2o_linklist_t *pl = h2p_pools.next; pl != &h2p_pools && found == NULL; pl = pl->next) {
        h2p_pool_t *pool = H2O_STRUCT_FROM_MEMBER(h2p_pool_t, registry_link, pl);
        pthread_mutex_lock(&pool->lock);
        for (h2o_linklist_t *l = pool->workers.next; l != &pool->workers; l = l->next) {
            h2p_worker_t *w = H2O_STRUCT_FROM_MEMBER(h2p_worker_t, all_link, l);
            if (w->kept_sock != sock)
                continue;
            w->kept_sock = NULL;
            w->kept_thread = NULL;
            if (wrote) {
                violation_locked(w, "wrote out of turn (bytes on its kept connection while it had no request)");
                /* (an endpoint's processes are not ours, nor is a php-cgi master's child known by
                 * its connection: the connection goes, the slot stays) */
                if (!w->external && w->master == NULL)
                    h2p_worker_kill_locked(w);
                h2p_pool_spawn_for_queue_locked(pool);
            }
            found = w;
            break;
        }
        pthread_mutex_unlock(&pool->lock);
    }
    pthread_mutex_unlock(&h2p_pools_lock);
    return found;
}

void h2p_worker_on_kept_readable(h2o_socket_t *sock, const char *err)
{
    /* (the socket does not read by itself: H2O_SOCKET_FLAG_DONT_READ; what is there is peeked at) */
    char byte;
    ssize_t r;
    while ((r = recv(h2o_socket_get_fd(sock), &byte, 1, MSG_PEEK | MSG_DONTWAIT)) < 0 && errno == EINTR)
        ;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (detach_kept_socket(sock, r > 0) == NULL) {
        h2o_socket_read_stop(sock); /* its owner thread (this one) has a message to close it */
        return;
    }
    h2o_socket_close(sock);
}

void h2p_worker_unref_locked(h2p_worker_t *worker)
{
    if (--worker->refcnt == 0) {
        h2p_worker_t *master = worker->master; /* (a slot's reference to it) */
        h2p_worker_drop_kept_locked(worker);
        if (worker->fd >= 0)
            close(worker->fd);
        free(worker);
        if (master != NULL)
            h2p_worker_unref_locked(master);
    }
}

/* Asks the supervisor for `n` more workers (counted as starting from now on). */
void h2p_pool_want_spawn_locked(h2p_pool_t *pool, size_t n)
{
    if (n == 0)
        return;
    pool->num_starting += n;
    pool->spawn_pending += n;
    h2p_supervisor_kick();
}

h2p_worker_t *h2p_pool_running_master_locked(h2p_pool_t *pool)
{
    for (h2o_linklist_t *l = pool->masters.next; l != &pool->masters; l = l->next) {
        h2p_worker_t *m = H2O_STRUCT_FROM_MEMBER(h2p_worker_t, all_link, l);
        if (m->state == WORKER_RUNNING && m->retire_reason == NULL)
            return m;
    }
    return NULL;
}

void h2p_pool_spawn_for_queue_locked(h2p_pool_t *pool)
{
    if (pool->conf->php_master) {
        /* one master at a time (two while one replaces the other, which it asked for itself); a
         * queue beside a running master waits for one of its slots */
        if (!pool->stopped && pool->num_queued != 0 && pool->num_starting == 0 && h2p_pool_running_master_locked(pool) == NULL)
            h2p_pool_want_spawn_locked(pool, 1);
        return;
    }
    size_t total = pool->num_live + pool->num_starting;
    if (pool->conf->num_connect != 0 || pool->stopped || pool->num_queued <= pool->num_starting ||
        total >= pool->conf->max_processes)
        return;
    size_t want = pool->num_queued - pool->num_starting, room = pool->conf->max_processes - total;
    h2p_pool_want_spawn_locked(pool, want < room ? want : room);
}

int h2p_pool_endpoint_up_locked(h2p_pool_t *pool, size_t endpoint, uint64_t now)
{
    return now >= pool->endpoint_down_until[endpoint];
}

static int any_endpoint_up_locked(h2p_pool_t *pool, uint64_t now)
{
    for (size_t i = 0; i != pool->conf->num_connect; ++i)
        if (h2p_pool_endpoint_up_locked(pool, i, now))
            return 1;
    return 0;
}

/*
 * An endpoint refused a connection or failed its ping: it is skipped for H2P_ENDPOINT_RETRY_MS
 * (then tried again by the next request).  When no endpoint is left, the queue is answered 503 at
 * once (into *failed, for h2p_pool_deliver_all after unlocking) rather than left to time out.
 */
void h2p_pool_endpoint_failed_locked(h2p_pool_t *pool, size_t endpoint, const char *why, h2o_linklist_t *failed)
{
    uint64_t now = h2p_now_ms();
    if (!h2p_pool_endpoint_up_locked(pool, endpoint, now))
        return; /* already down: the period runs from the first failure, or it would never end under load */
    pool->endpoint_down_until[endpoint] = now + H2P_ENDPOINT_RETRY_MS;
    int none_left = !any_endpoint_up_locked(pool, now);
    h2p_warn("pool", "pool %s: endpoint %s %s: skipping it for %d s%s", pool->conf->name, pool->conf->connect[endpoint].text, why,
             H2P_ENDPOINT_RETRY_MS / 1000, none_left ? "; no endpoint is left: answering 503" : "");
    if (none_left)
        h2p_pool_fail_waiters_locked(pool, 503, failed);
}

/* An external worker connects to its own endpoint, or while that is down to the next one up; -1: none. */
int h2p_pool_pick_endpoint_locked(h2p_pool_t *pool, size_t home, uint64_t now)
{
    size_t n = pool->conf->num_connect;
    for (size_t i = 0; i != n; ++i) {
        size_t e = (home + i) % n;
        if (h2p_pool_endpoint_up_locked(pool, e, now))
            return (int)e;
    }
    return -1;
}

/*
 * A spawned worker that went idle less than this long ago is "in use": a steady load goes round
 * the workers in use, least recently used first.  Always taking the most recently used one made
 * one php-cgi process do most of the work: on a busy machine the scheduler then held that
 * process back behind the others, and the requests handed to it waited (PHP hello's p99 about
 * halved with the rotation, interleaved rounds: README's benchmark section).
 */
#define IN_USE_MS 1000

/* A worker retiring at its max_requests whose replacement is ready goes first: it serves the
 * requests it has left, then stops (the pool is a worker over its size until then). */
static int finishing(const h2p_worker_t *w)
{
    return w->retire_at_limit && w->replacement_ready;
}

/* Among the spawned idle workers in use, the least recently used, preferring one whose kept
 * connection is on this thread's loop; NULL when none is in use.  The idle list is a stack, so
 * the workers in use are at its top: the walk stops at the first one that is not. */
static h2p_worker_t *least_recently_used_in_use_locked(h2p_pool_t *pool, uint64_t now, h2p_pool_thread_t *th)
{
    h2p_worker_t *found = NULL, *found_here = NULL;
    for (h2o_linklist_t *l = pool->idle.next; l != &pool->idle; l = l->next) {
        h2p_worker_t *w = H2O_STRUCT_FROM_MEMBER(h2p_worker_t, idle_link, l);
        if (now - w->last_active >= IN_USE_MS)
            break;
        if (finishing(w))
            return w;
        found = w;
        if (w->kept_thread == th)
            found_here = w;
    }
    return found_here != NULL ? found_here : found;
}

/* The idle worker a request gets. */
static h2p_worker_t *take_idle_locked(h2p_pool_t *pool, uint64_t now, h2p_pool_thread_t *th)
{
    if (pool->conf->num_connect == 0) {
        h2p_worker_t *in_use = least_recently_used_in_use_locked(pool, now, th);
        if (in_use != NULL)
            return in_use;
        /* a light load: the most recently used (its code and data are warm; the others are left
         * to idle_timeout), one whose kept connection is on this thread's loop if there is one (no
         * re-registering, no closing elsewhere) */
        h2p_worker_t *here = NULL;
        for (h2o_linklist_t *l = pool->idle.next; l != &pool->idle; l = l->next) {
            h2p_worker_t *w = H2O_STRUCT_FROM_MEMBER(h2p_worker_t, idle_link, l);
            if (finishing(w))
                return w;
            if (here == NULL && w->kept_thread == th)
                here = w;
        }
        return here != NULL ? here : H2O_STRUCT_FROM_MEMBER(h2p_worker_t, idle_link, pool->idle.next);
    }
    /* external workers: least recently used first, which goes round the endpoints; one whose own
     * endpoint is up if there is one (the others connect elsewhere while theirs is down) */
    for (h2o_linklist_t *l = pool->idle.prev; l != &pool->idle; l = l->prev) {
        h2p_worker_t *w = H2O_STRUCT_FROM_MEMBER(h2p_worker_t, idle_link, l);
        if (h2p_pool_endpoint_up_locked(pool, w->endpoint, now))
            return w;
    }
    return H2O_STRUCT_FROM_MEMBER(h2p_worker_t, idle_link, pool->idle.prev);
}

int h2p_pool_acquire(h2p_pool_t *pool, h2p_pool_waiter_t *waiter, h2p_worker_t **worker)
{
    pthread_mutex_lock(&pool->lock);
    if (pool->stopped) {
        pthread_mutex_unlock(&pool->lock);
        return H2P_ACQUIRE_STOPPED;
    }
    uint64_t now = h2p_now_ms();
    if (pool->conf->num_connect != 0 && !any_endpoint_up_locked(pool, now)) {
        pthread_mutex_unlock(&pool->lock);
        return H2P_ACQUIRE_UNAVAILABLE;
    }
    if (!h2o_linklist_is_empty(&pool->idle)) {
        h2p_worker_t *w = take_idle_locked(pool, now, waiter->thread);
        h2o_linklist_unlink(&w->idle_link);
        pool->num_idle--;
        w->state = WORKER_BUSY;
        w->refcnt++;
        pthread_mutex_unlock(&pool->lock);
        *worker = w;
        return H2P_ACQUIRE_READY;
    }
    if (pool->num_queued >= pool->conf->queue_length) {
        pthread_mutex_unlock(&pool->lock);
        return H2P_ACQUIRE_QUEUE_FULL;
    }
    waiter->state = H2P_WAITER_QUEUED;
    waiter->worker = NULL;
    waiter->queued_at = now;
    h2o_linklist_insert(&pool->queue, &waiter->link);
    pool->num_queued++;
    h2p_pool_spawn_for_queue_locked(pool);
    pthread_mutex_unlock(&pool->lock);
    return H2P_ACQUIRE_QUEUED;
}

static void unqueue_locked(h2p_pool_t *pool, h2p_pool_waiter_t *waiter)
{
    h2o_linklist_unlink(&waiter->link);
    pool->num_queued--;
    waiter->state = H2P_WAITER_IDLE;
}

int h2p_pool_unqueue(h2p_pool_t *pool, h2p_pool_waiter_t *waiter)
{
    pthread_mutex_lock(&pool->lock);
    int queued = waiter->state == H2P_WAITER_QUEUED;
    if (queued)
        unqueue_locked(pool, waiter);
    pthread_mutex_unlock(&pool->lock);
    return queued;
}

int h2p_pool_cancel(h2p_pool_t *pool, h2p_pool_waiter_t *waiter)
{
    int can_free = 1;
    pthread_mutex_lock(&pool->lock);
    switch (waiter->state) {
    case H2P_WAITER_QUEUED:
        unqueue_locked(pool, waiter);
        break;
    case H2P_WAITER_HANDED:
        waiter->state = H2P_WAITER_ABANDONED;
        can_free = 0;
        break;
    default:
        break;
    }
    pthread_mutex_unlock(&pool->lock);
    return can_free;
}

/*
 * A worker is free: it goes to the oldest waiter, or back to the idle list.  The caller
 * delivers to *handed_to after unlocking (h2p_pool_deliver).
 */
void h2p_pool_give_worker_locked(h2p_pool_t *pool, h2p_worker_t *worker, h2p_pool_waiter_t **handed_to)
{
    *handed_to = NULL;
    if (!h2o_linklist_is_empty(&pool->queue)) {
        h2p_pool_waiter_t *waiter = H2O_STRUCT_FROM_MEMBER(h2p_pool_waiter_t, link, pool->queue.next);
        h2o_linklist_unlink(&waiter->link);
        pool->num_queued--;
        waiter->state = H2P_WAITER_HANDED;
        waiter->worker = worker;
        waiter->status = 0;
        worker->state = WORKER_BUSY;
        worker->refcnt++;
        *handed_to = waiter;
        return;
    }
    /* (last_active is not touched: it is the end of the worker's last request, or its start,
     * so that a ping does not keep an idle worker from idle_timeout) */
    worker->state = WORKER_IDLE;
    h2o_linklist_insert(pool->idle.next, &worker->idle_link); /* the idle list is a stack */
    pool->num_idle++;
}

/*
 * Sends the result to the waiter's thread; waiter->on_handed runs there.  A waiter of this very
 * thread gets it in this turn of the loop instead: at once from a handler that set the worker
 * free where that is safe (h2p_pool_run_handed), else when the turn's events are done.  A message
 * to our own loop would leave the worker idle for the rest of this turn and a whole next one (its
 * wake-up is one more event to wait for), with the queue full of requests for it.  It is not run
 * from here, in the caller's stack: a release while a connection is torn down (a reset HTTP/2
 * connection disposes each of its streams) must not start the next request of a stream that
 * is being disposed too.
 */
void h2p_pool_deliver(h2p_pool_waiter_t *waiter)
{
    h2p_pool_thread_t *th = waiter->thread;
    if (th != this_pool_thread || th->loop_ended) {
        h2o_multithread_send_message(&th->handed, &waiter->message);
        return;
    }
    h2o_linklist_insert(&th->own_handed, &waiter->message.link);
    if (!h2o_timeout_is_linked(&th->end_of_turn_entry))
        h2o_timeout_link(th->loop, &th->end_of_turn, &th->end_of_turn_entry);
}

void h2p_pool_fail_waiters_locked(h2p_pool_t *pool, int status, h2o_linklist_t *failed)
{
    while (!h2o_linklist_is_empty(&pool->queue)) {
        h2p_pool_waiter_t *waiter = H2O_STRUCT_FROM_MEMBER(h2p_pool_waiter_t, link, pool->queue.next);
        h2o_linklist_unlink(&waiter->link);
        pool->num_queued--;
        waiter->state = H2P_WAITER_HANDED;
        waiter->worker = NULL;
        waiter->status = status;
        h2o_linklist_insert(failed, &waiter->link);
    }
}

void h2p_pool_deliver_all(h2o_linklist_t *waiters)
{
    while (!h2o_linklist_is_empty(waiters)) {
        h2p_pool_waiter_t *waiter = H2O_STRUCT_FROM_MEMBER(h2p_pool_waiter_t, link, waiters->next);
        h2o_linklist_unlink(&waiter->link);
        h2p_pool_deliver(waiter);
    }
}

/* IIS rapid-fail protection: max_crashes within interval stop the pool (503 until restarted). */
void h2p_pool_record_crash_locked(h2p_pool_t *pool, uint64_t now, h2o_linklist_t *failed)
{
    pool->crashed_total++;
    h2p_counter_add(&pool->stats->crashes, 1);
    if (!pool->conf->rapid_fail.enabled || pool->stopped)
        return;
    size_t cap = pool->conf->rapid_fail.max_crashes;
    pool->crashes[pool->crash_head] = now;
    pool->crash_head = (pool->crash_head + 1) % cap;
    if (pool->crash_count < cap)
        pool->crash_count++;
    if (pool->crash_count < cap)
        return;
    uint64_t oldest = pool->crashes[pool->crash_head]; /* the ring is full: the next slot is the oldest */
    if (now - oldest > pool->conf->rapid_fail.interval_ms)
        return;
    h2p_error("pool",
              "pool %s stopped by rapid-fail protection: %zu crashes within %llu ms; answering 503 until it is "
              "restarted (h2pool ctl start pool %s) or its configuration changes",
              pool->conf->name, cap, (unsigned long long)pool->conf->rapid_fail.interval_ms, pool->conf->name);
    h2p_counter_add(&pool->stats->rapid_fail_trips, 1);
    h2p_pool_stop_locked(pool, "rapid-fail protection", failed);
}

void h2p_pool_stop_locked(h2p_pool_t *pool, const char *by, h2o_linklist_t *failed)
{
    char why[96];
    pool->stopped = 1;
    pool->stopped_by = by;
    snprintf(why, sizeof(why), "pool stopped by %s", by);
    h2p_pool_fail_waiters_locked(pool, 503, failed);
    while (!h2o_linklist_is_empty(&pool->idle)) {
        h2p_worker_t *w = H2O_STRUCT_FROM_MEMBER(h2p_worker_t, idle_link, pool->idle.next);
        h2p_worker_stop_locked(w, why);
    }
    /* a php-cgi master with busy slots: they finish their requests, then it stops; a start spawns
     * a fresh master with all its slots (this one, left running with fewer, would be the pool's
     * running master for good) */
    for (h2o_linklist_t *l = pool->masters.next; l != &pool->masters; l = l->next)
        h2p_master_wind_down_locked(H2O_STRUCT_FROM_MEMBER(h2p_worker_t, all_link, l), "pool stopped");
}

/* A process that is gone, or a zombie not reaped yet (kill(pid, 0) succeeds on one). */
static int process_exited(pid_t pid)
{
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return 1;
    char path[64], buf[256];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return errno == ENOENT;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')'); /* "pid (comm) state ...": comm may hold anything */
    return paren != NULL && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X');
}

void h2p_master_count_lost_locked(h2p_worker_t *m, uint64_t now, h2o_linklist_t *failed)
{
    h2p_pool_t *pool = m->pool;
    /* a tick later: the spawner has reaped a master that died with its children, and reported it */
    if (m->lost_children == 0 || now - m->lost_at < 250 || process_exited(m->pid))
        return;
    for (; m->lost_children != 0; --m->lost_children) {
        h2p_error("pool", "pool %s: a php-cgi child of master %d hung up before its response ended: counted as a crash",
                  pool->conf->name, (int)m->pid);
        h2p_pool_record_crash_locked(pool, now, failed);
    }
}

/*
 * A php-cgi master's slot after a request.  Its connection is already closed unless it was clean;
 * the child behind it is php-cgi's to replace: one that hung up mid-response died (or dropped the
 * request), which counts as a crash; the slot itself stays, and connects again next time.
 */
void h2p_slot_release_locked(h2p_worker_t *slot, h2p_release_outcome_t outcome, h2p_pool_waiter_t **handed_to,
                             h2o_linklist_t *failed)
{
    h2p_pool_t *pool = slot->pool;
    h2p_worker_t *master = slot->master;
    if ((outcome == H2P_RELEASE_LOST || outcome == H2P_RELEASE_UNREACHABLE) && process_exited(master->pid)) {
        /* the master has died (a zombie still, or reaped: the spawner kills its children while the
         * zombie holds the group's id, so a child's lost connection can be seen before the reap):
         * its own exit is the crash, counted when it is reported; each of its busy children is not
         * another.  Its
         * slots go now, so that this request's retry (and the next) waits for a new master
         * instead of meeting the dead one's socket. */
        h2p_info("pool", "pool %s: a php-cgi child of master %d hung up with it", pool->conf->name, (int)master->pid);
        h2p_master_gone_locked(master);
        return;
    }
    if (outcome == H2P_RELEASE_LOST) {
        /* counted on the tick unless the master's exit is reported by then: the death of its whole
         * process group (a signal to the group, the OOM killer) is one crash, not one per busy child */
        if (master->lost_children++ == 0)
            master->lost_at = h2p_now_ms();
    } else if (outcome == H2P_RELEASE_UNREACHABLE) {
        h2p_warn("pool", "pool %s: php-cgi master %d's socket refused a connection", pool->conf->name, (int)master->pid);
    }
    if (pool->stopped)
        h2p_worker_stop_locked(slot, "pool stopped");
    else if (master->retire_reason != NULL && master->replacement_ready)
        h2p_worker_stop_locked(slot, master->retire_reason);
    else if (pool->draining && h2o_linklist_is_empty(&pool->queue))
        h2p_worker_stop_locked(slot, "configuration changed");
    else
        h2p_pool_give_worker_locked(pool, slot, handed_to);
}

/*
 * The worker goes to a request of another thread: its kept connection, registered with this
 * thread's loop, goes with it as a bare descriptor (h2p_worker_connect hands it out), rather than
 * being closed here while the other thread connects anew.  A php-cgi child (or any worker that
 * serves one connection at a time) would otherwise have to see the old connection end before it
 * accepts the new one, and a php-cgi master's slot would lose the count of its child's requests
 * (conn_requests) on every such hand-over.
 */
static void hand_over_kept_locked(h2p_worker_t *worker)
{
    h2o_socket_export_t info;
    if (h2o_socket_export(worker->kept_sock, &info) == 0) {
        int clean = info.input->size == 0; /* (nothing arrived since it was kept: the loop has not read it) */
        h2o_buffer_dispose(&info.input);
        if (worker->fd >= 0)
            close(worker->fd);
        worker->fd = clean ? info.fd : -1;
        if (!clean)
            close(info.fd);
    }
    worker->kept_sock = NULL;
    worker->kept_thread = NULL;
}

void h2p_worker_release(h2p_worker_t *worker, h2p_release_outcome_t outcome, int fd, int request_done)
{
    h2p_pool_t *pool = worker->pool;
    h2p_pool_waiter_t *handed_to = NULL;
    h2o_linklist_t failed;
    h2o_linklist_init_anchor(&failed);

    pthread_mutex_lock(&pool->lock);
    if (request_done) {
        worker->requests++;
        worker->last_active = h2p_now_ms();
    }
    if (outcome != H2P_RELEASE_UNUSED) {
        if (worker->fd >= 0) /* a connection left from before this request: never two */
            close(worker->fd);
        worker->fd = outcome == H2P_RELEASE_OK ? fd : -1;
        if (outcome != H2P_RELEASE_OK && fd >= 0)
            close(fd);
    }

    if (worker->state == WORKER_BUSY) {
        if (worker->external) {
            /* no process of ours to stop or recycle: the endpoint runs its own; only its health is ours */
            if (outcome == H2P_RELEASE_UNREACHABLE)
                h2p_pool_endpoint_failed_locked(pool, worker->conn_endpoint, "refused a connection", &failed);
            if (pool->draining && h2o_linklist_is_empty(&pool->queue))
                h2p_worker_stop_locked(worker, "configuration changed");
            else
                h2p_pool_give_worker_locked(pool, worker, &handed_to);
        } else if (worker->master != NULL) {
            h2p_slot_release_locked(worker, outcome, &handed_to, &failed);
        } else if (outcome == H2P_RELEASE_BROKEN) {
            h2p_worker_kill_locked(worker);
        } else if (outcome == H2P_RELEASE_LOST || outcome == H2P_RELEASE_UNREACHABLE) {
            /* Usually dead already, and then reaped a moment later: until then it must not go back
             * to the idle list, where the next request (or this one's retry) would find it again.
             * If it still runs, a worker that drops a request is not to be trusted either. */
            worker->lost = 1;
            h2p_worker_stop_locked(worker, outcome == H2P_RELEASE_LOST ? "it hung up before its response ended"
                                                                       : "its socket refused a connection");
        } else if (pool->max_requests != 0 && worker->requests >= pool->max_requests) {
            if (worker->retire_reason == NULL) /* (else counted when its replacement was asked for) */
                h2p_counter_add(&pool->stats->recycles, 1);
            h2p_worker_stop_locked(worker, "max_requests reached");
        } else if (worker->retire_reason != NULL && worker->replacement_ready && !worker->retire_at_limit) {
            h2p_worker_stop_locked(worker, worker->retire_reason);
        } else if (pool->stopped) {
            h2p_worker_stop_locked(worker, "pool stopped");
        } else if (pool->draining && h2o_linklist_is_empty(&pool->queue)) {
            h2p_worker_stop_locked(worker, "configuration changed");
        } else {
            /* overlapped recycling for max_requests: the replacement starts when a tenth of the
             * worker's requests are left, and the worker serves them all (php-cgi exits at its own
             * limit, which is the same): the pool never has a worker less.  (A margin of 8
             * requests was 3 ms of a busy php-cgi, against 100 ms of CPU to start the next one:
             * each recycle cost a quarter of a 4-worker pool's capacity for that long, which was
             * most of PHP hello's p99.) */
            if (pool->max_requests != 0 && worker->retire_reason == NULL) {
                uint64_t margin = pool->max_requests / 10;
                if (margin != 0 && worker->requests >= pool->max_requests - margin) {
                    worker->retire_reason = "max_requests reached";
                    worker->retire_at_limit = 1;
                    h2p_counter_add(&pool->stats->recycles, 1);
                    h2p_pool_want_spawn_locked(pool, 1);
                }
            }
            h2p_pool_give_worker_locked(pool, worker, &handed_to);
        }
    }
    if (worker->state != WORKER_IDLE && worker->state != WORKER_BUSY)
        h2p_pool_spawn_for_queue_locked(pool); /* the queue may still need a worker */
    if (handed_to != NULL && worker->kept_sock != NULL && worker->kept_thread == this_pool_thread &&
        handed_to->thread != this_pool_thread)
        hand_over_kept_locked(worker);
    h2p_worker_unref_locked(worker);
    pthread_mutex_unlock(&pool->lock);

    if (handed_to != NULL)
        h2p_pool_deliver(handed_to);
    h2p_pool_deliver_all(&failed);
}

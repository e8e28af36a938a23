/*
 * Application pools (IIS's WAS): groups of FastCGI worker processes.
 *
 * Every worker listens on its own unix socket and serves one request at a time over a
 * connection h2pool keeps open, so the pool always knows which worker is idle.  A pool with
 * `connect:` spawns nothing: it has max_processes external workers (no process of ours, pid 0)
 * spread round-robin over its endpoints, each with at most one connection, so that it still
 * knows how many of the endpoints' processes are busy; an endpoint that refuses connections or
 * fails its ping is skipped for a few seconds.  A php-cgi pool (conf->php_master) spawns one
 * php-cgi master with max_processes children instead (pool->masters) and, once it is ready, has
 * max_processes slots on its socket, built like external workers: a php-cgi child serves one
 * connection until it is closed, so a busy slot is a busy child.  A request
 * takes an idle worker, or waits in the pool's queue while a worker is spawned (lazily, up to
 * max_processes) or set free.  Pool state is shared by all front-end threads under one mutex;
 * a worker set free on one thread is handed to a request queued on another by a message to
 * that thread's loop.  Processes are spawned, reaped, pinged and recycled by the supervisor
 * (the main thread's loop), never on a front-end loop.
 *
 * Threading model
 * ---------------
 * Processes: the front end (this code, running as server.user) and the spawner (privsep/, the
 * privileged part).  Workers are the spawner's children: the pool manager never forks, execs,
 * signals or waits itself; it asks (h2p_privsep_spawn_worker, h2p_privsep_kill) and learns of
 * exits from the spawner's event channel (h2p_poolmgr_on_exit), all on the supervisor's loop.
 *
 * Threads of the front end that touch pools:
 *   - the supervisor (main thread, its own evloop): spawn requests (spawn_what_is_wanted),
 *     exits, readiness probes and pings, the 250 ms tick (idle_timeout, recycling, stop
 *     deadlines, queue timeouts), reload (h2p_poolmgr_apply) and shutdown; and, for the
 *     management endpoint and `h2pool ctl` (pool_status.c), the pools' states as JSON and the
 *     operator's start / stop / recycle, under the same locks;
 *   - each front-end thread (one evloop each): h2p_pool_acquire / h2p_pool_cancel /
 *     h2p_worker_release for its requests, h2p_worker_connect, and the kept connections that
 *     stay registered with its loop (only that loop may close them: others ask it by message,
 *     h2p_worker_drop_kept_locked -> the thread's drop_kept receiver).
 * A request on a front-end thread never waits for the supervisor: what it needs later (a
 * worker, or a failure status) arrives as a message on its own loop.
 *
 * Each front-end thread is known to the pool manager as an h2p_pool_thread_t, which the pool
 * manager creates (h2p_poolmgr_thread_start, on that thread, with its loop's message queue) and
 * owns: the two receivers other threads send to (hand-overs to its waiters, kept connections
 * to close).  The front end calls in; the pool manager never includes the front end's server
 * (frontend/server.h): the dependency goes one way.  A thread's h2p_pool_thread_t outlives the
 * thread (a hand-over may still be on its way when the loop ends) and is freed once every
 * front-end thread has been joined (h2p_poolmgr_front_end_stopped).
 *
 * Locks, in this order (never the other way round):
 *   1. h2p_pools_lock: the registry of pools (h2p_pools) and of front-end threads
 *      (h2p_pool_thread_t), taken to walk or change them;
 *   2. pool->lock, one pool at a time: everything in h2p_pool_t and in its workers
 *      (state, lists, counters, worker refcnt, fd, kept_sock, kept_thread);
 *   3. inside h2o_multithread_send_message, the receiving loop's queue mutex (libh2o's): held
 *      for the send only, and no receiver runs under it.
 * The pool's own refcnt is atomic, under no lock.  The spawner's command channel has its own
 * mutex (privsep/client.c), taken with or without the above and never held while taking them.
 *
 * `_locked`: a function whose name ends in `_locked` expects the caller to hold pool->lock of
 * the pool (or worker's pool) it is given, and leaves it held.
 *
 * "Deliver after unlocking": a function that hands a worker or a failure to a waiting request
 * (h2p_pool_give_worker_locked, h2p_pool_fail_waiters_locked, ..._endpoint_failed_locked,
 * h2p_pool_stop_locked, h2p_pool_record_crash_locked) only records it (*handed_to, or a list)
 * under the lock; the caller sends it to the waiter's thread (h2p_pool_deliver /
 * h2p_pool_deliver_all) once pool->lock is released.  The message wakes another thread that
 * takes pool->lock itself and may free the waiter: sending under the lock would make it wait
 * on us, and nothing may touch the waiter once it is sent.  Two messages do go out under the
 * lock, because nothing of a waiter is in them and their receivers take no pool lock: a kept
 * connection to close (h2p_worker_drop_kept_locked) and the supervisor's wake-up
 * (h2p_supervisor_kick).
 *
 * Counts: each pool counts its workers starting (num_starting, with the spawns asked for and
 * not yet made, spawn_pending), live (idle or busy: num_live), idle (num_idle) and its waiters
 * (num_queued).  Debug builds check on every supervisor tick that each count agrees with the
 * lists (worker.c: check_counts_locked) and stop at the first drift.
 */
#ifndef H2POOL_POOL_H
#define H2POOL_POOL_H

#include <h2o.h>
#include <jansson.h>
#include <sys/types.h>

#include "frontend/config.h"

typedef struct h2p_pool h2p_pool_t;
typedef struct h2p_worker h2p_worker_t;
/* A front-end thread as the pool manager knows it (see "Threading model" above). */
typedef struct h2p_pool_thread h2p_pool_thread_t;

/* A request waiting for a worker.  Embedded in the FastCGI request. */
typedef struct h2p_pool_waiter {
    h2o_linklist_t link; /* in the pool's queue */
    h2o_multithread_message_t message;
    h2p_pool_thread_t *thread; /* the request's: hand-overs arrive on its loop */
    /* runs there with what was handed over (worker, or status); the waiter is its caller's again */
    void (*on_handed)(struct h2p_pool_waiter *waiter);
    enum { H2P_WAITER_IDLE, H2P_WAITER_QUEUED, H2P_WAITER_HANDED, H2P_WAITER_ABANDONED } state;
    h2p_worker_t *worker;
    int status;
    uint64_t queued_at;
} h2p_pool_waiter_t;

/* What became of a worker's connection when a request gives the worker back. */
typedef enum h2p_release_outcome {
    H2P_RELEASE_OK,          /* request complete, connection reusable (its fd is handed back) */
    H2P_RELEASE_CLOSED,      /* connection closed or unusable; the process may be fine */
    H2P_RELEASE_BROKEN,      /* the worker misbehaved (garbage, timeout): it is killed */
    H2P_RELEASE_UNUSED,      /* handed over but never used (the request left): as it was */
    H2P_RELEASE_LOST,        /* the worker hung up before its response ended: it is dying, or no longer
                              * to be trusted (an external worker's endpoint handles its own processes) */
    H2P_RELEASE_UNREACHABLE, /* the connection could not be made: nothing was sent */
} h2p_release_outcome_t;

enum {
    H2P_ACQUIRE_READY = 1,
    H2P_ACQUIRE_QUEUED = 0,
    H2P_ACQUIRE_QUEUE_FULL = -1,
    H2P_ACQUIRE_STOPPED = -2,
    H2P_ACQUIRE_UNAVAILABLE = -3 /* every endpoint of a `connect:` pool is down */
};

/* The pool `conf` describes: the running one when its settings did not change (a reload keeps
 * its workers), else a new one.  `config` is the generation that owns `conf`. */
h2p_pool_t *h2p_pool_get(h2p_config_t *config, h2p_pool_conf_t *conf);
int h2p_pool_conf_equal(const h2p_pool_conf_t *a, const h2p_pool_conf_t *b);
/* After a reload: pools `conf` no longer names drain (their queue and requests in flight
 * finish, then their workers stop) and are freed. */
void h2p_poolmgr_apply(h2p_config_t *conf);
void h2p_pool_release(h2p_pool_t *pool);
const char *h2p_pool_name(h2p_pool_t *pool);
const h2p_pool_conf_t *h2p_pool_conf(h2p_pool_t *pool);
struct h2p_stats *h2p_pool_stats(h2p_pool_t *pool); /* its counters (frontend/counters.h) */

/* Takes an idle worker (READY, *worker set), or queues the waiter (QUEUED: on_ready follows). */
int h2p_pool_acquire(h2p_pool_t *pool, h2p_pool_waiter_t *waiter, h2p_worker_t **worker);
/* Takes the waiter out of the queue if it is still there (1), else leaves it as it is (0: a worker
 * or a refusal is on its way to it).  For a client that left while its request waited: the
 * request itself lives on until libh2o disposes it (then h2p_pool_cancel). */
int h2p_pool_unqueue(h2p_pool_t *pool, h2p_pool_waiter_t *waiter);
/* The waiter's request is gone.  Returns 1 if the waiter may be freed now, 0 if a worker is on
 * its way to it (the hand-over message will find it abandoned and free it). */
int h2p_pool_cancel(h2p_pool_t *pool, h2p_pool_waiter_t *waiter);
/* Gives a worker back after a request; `fd` is the kept connection (OK) or -1. */
void h2p_worker_release(h2p_worker_t *worker, h2p_release_outcome_t outcome, int fd, int request_done);

/* The worker's kept connection (*reused = 1) or a new one, without blocking; -1 if it cannot be
 * reached.  *connecting = 1 when a TCP connection is still being made (wait for writability and
 * check SO_ERROR: the h2o socket's H2O_SOCKET_FLAG_IS_CONNECTING). */
int h2p_worker_connect(h2p_worker_t *worker, int *reused, int *connecting);
/* A kept connection, looked at just before it is used again (a look at the socket itself: its
 * loop may not have read what arrived since): clean, written to out of turn, or closed. */
typedef enum h2p_conn_state { H2P_CONN_CLEAN, H2P_CONN_WROTE, H2P_CONN_CLOSED } h2p_conn_state_t;
h2p_conn_state_t h2p_connection_state(int fd);
/* The worker's kept connection as a socket of `th`'s loop, or NULL (then h2p_worker_connect). */
h2o_socket_t *h2p_worker_take_socket(h2p_worker_t *worker, h2p_pool_thread_t *th);
/* Before releasing with H2P_RELEASE_OK: the clean connection stays registered with `th`'s loop;
 * or, when a php-cgi master's child has answered php_child_max_requests on it, the child is
 * ended and the connection closed. */
void h2p_worker_keep_socket(h2p_worker_t *worker, h2o_socket_t *sock, h2p_pool_thread_t *th);
/*
 * A kept connection stays watched while its worker is idle (its read callback, on the owner
 * thread): a worker that writes between requests wrote out of turn, and those bytes would read
 * as the next request's response.  The connection is closed at once; a worker that wrote is
 * replaced (killed, counted, logged), one that only hung up keeps running.
 */
void h2p_worker_on_kept_readable(h2o_socket_t *sock, const char *err);
/* A php-cgi master's slot whose request ran past request_timeout (or whose child broke the
 * protocol, or reached max_requests): the child serving it over `fd` (the slot's connection,
 * still open) gets `sig`, found by the inode of the connection's other end (sock_diag) among the
 * master's children (by the spawner, which holds the connection open until then).  Nothing for
 * any other worker (h2p_worker_release kills those).  Any thread. */
void h2p_worker_kill_connection_holder(h2p_worker_t *worker, int fd, int sig);
/* The worker broke the protocol (`what` it did, for the error log): counted and logged; the
 * caller then releases it with H2P_RELEASE_BROKEN, which replaces it. */
void h2p_worker_violation(h2p_worker_t *worker, const char *what);
/* The FastCGI request id for the worker's next request (its holder only): never the previous
 * one nor the one after it, and distinct over 65535 consecutive requests, so records left over
 * from an earlier request, or forged for the next, are told apart from the answer. */
uint16_t h2p_worker_next_request_id(h2p_worker_t *worker);
pid_t h2p_worker_pid(h2p_worker_t *worker);
h2p_pool_t *h2p_worker_pool(h2p_worker_t *worker);
int h2p_worker_is_dead(h2p_worker_t *worker);

/* Supervisor side (main thread). */
int h2p_poolmgr_init(h2o_evloop_t *loop);
void h2p_poolmgr_start(h2p_config_t *conf); /* spawns min_processes of every pool */
/* A process the spawner started has exited (its report on the event channel). */
void h2p_poolmgr_on_exit(pid_t pid, int status);
void h2p_poolmgr_shutdown(h2o_evloop_t *loop);

/* Front-end threads.  A thread starting its loop, on that thread: its receivers are registered
 * with `queue` (the loop's message queue). */
h2p_pool_thread_t *h2p_poolmgr_thread_start(h2o_evloop_t *loop, h2o_multithread_queue_t *queue);
/* Runs now the hand-overs this thread made to its own waiters (h2p_pool_deliver), which would
 * otherwise wait for the end of the loop's turn: for a handler that has just set a worker free,
 * outside any teardown, where starting another request is safe. */
void h2p_pool_run_handed(void);
/* The thread leaves its loop (on that thread, before the loop's last runs): the kept connections
 * it owns are closed there. */
void h2p_poolmgr_thread_stop(h2p_pool_thread_t *th);
/* Every front-end thread has been joined: kept connections they owned are closed directly, and
 * their h2p_pool_thread_t are freed. */
void h2p_poolmgr_front_end_stopped(void);

uint64_t h2p_now_ms(void);

/* Management (poolmgr/pool_status.c; supervisor thread). */
json_t *h2p_poolmgr_pools_json(int with_workers); /* every pool: state, workers, queue, counters, history */
json_t *h2p_poolmgr_workers_json(void);           /* every worker: pool, pid, state, requests, uptime, memory */
void h2p_poolmgr_sample_history(void);            /* once a second: busy workers and queue length per pool */
enum { H2P_POOL_CTL_OK = 0, H2P_POOL_CTL_UNKNOWN = -1, H2P_POOL_CTL_REFUSED = -2 };
/* `action` is "start" (also after rapid-fail protection), "stop" or "recycle"; `name` a valid pool
 * name.  The outcome, for the operator, in `message`. */
int h2p_poolmgr_control(const char *action, const char *name, char *message, size_t len);

#endif

/* State shared by poolmgr/pool.c (dispatch) and poolmgr/worker.c (processes). */
#ifndef H2POOL_POOL_INTERNAL_H
#define H2POOL_POOL_INTERNAL_H

#include "frontend/counters.h"
#include "poolmgr/pool.h"

/* A front-end thread (pool.h: h2p_poolmgr_thread_start). */
struct h2p_pool_thread {
    h2o_multithread_receiver_t handed;    /* hand-overs to this thread's waiters (h2p_pool_deliver) */
    h2o_multithread_receiver_t drop_kept; /* kept connections this thread must close */
    h2o_linklist_t link;                  /* in pool.c's list of front-end threads, under h2p_pools_lock */
    /* hand-overs made on this thread to its own waiters (h2p_pool_deliver): run by the handler
     * that set the worker free (h2p_pool_run_handed), or else at the end of the loop's turn */
    h2o_evloop_t *loop;
    h2o_linklist_t own_handed; /* h2p_pool_waiter_t.message.link */
    h2o_timeout_t end_of_turn; /* a zero timeout */
    h2o_timeout_entry_t end_of_turn_entry;
    int loop_ended; /* h2p_poolmgr_thread_stop: hand-overs go by message (never run) */
};

typedef enum worker_state {
    WORKER_STARTING, /* spawned; the supervisor waits for its first FCGI_GET_VALUES answer */
    WORKER_IDLE,     /* in pool->idle, ready for a request */
    WORKER_BUSY,     /* held by a request or by the supervisor's ping */
    WORKER_RUNNING,  /* a php-cgi master that is ready: it serves through its slots (never idle or busy) */
    WORKER_STOPPING, /* SIGTERM sent; SIGKILL at stop_deadline */
    WORKER_DEAD      /* reaped; freed when the last holder lets go */
} worker_state_t;

struct h2p_worker {
    h2o_linklist_t all_link;  /* pool->workers */
    h2o_linklist_t idle_link; /* pool->idle while IDLE */
    h2p_pool_t *pool;
    unsigned refcnt; /* the pool's list, plus whoever holds it; under pool->lock */
    worker_state_t state;
    pid_t pid;
    /* a kept connection registered with no loop: handed over with the worker to another thread's
     * request (h2p_worker_release exports it; h2p_worker_connect hands it out); else -1 */
    int fd;
    /* or the kept connection still registered with the loop of the thread that last used it: that
     * thread takes it back without re-registering it; any other user has it closed by its owner */
    h2o_socket_t *kept_sock;
    h2p_pool_thread_t *kept_thread;
    char sock_path[108];
    uint64_t started_at, ready_at, last_active, last_ping, stop_deadline;
    uint64_t requests;
    uint64_t request_seq; /* FastCGI request ids handed out (h2p_worker_next_request_id) */
    int killed;           /* we sent the fatal signal: its exit is no crash */
    int lost;             /* stopped because it hung up mid-request: an exit of its own is still a crash */
    /* external workers (`connect:` pools): no process; endpoint indexes into conf->connect */
    int external;
    size_t endpoint;      /* its own endpoint (round-robin over the list) */
    size_t conn_endpoint; /* where its connection (kept or in use) goes: another while its own is down */
    /* the php-cgi master layout (conf->php_master): the master is a process in pool->masters, never
     * handed to a request; its slots are workers in pool->workers without a process of their own
     * (pid: the master's), each with at most one connection to the master's socket, which one of
     * its children serves; a slot holds a reference to its master */
    int is_master;
    size_t num_slots;       /* a master's slots in pool->workers */
    int gone;               /* a master found dead before its exit was reported (h2p_master_gone_locked) */
    h2p_worker_t *master;   /* a slot's */
    uint64_t conn_requests; /* a slot's: requests answered on its current connection (one child's) */
    /* a master's children that hung up mid-request, counted as crashes by the tick once the master
     * is seen alive after them (h2p_master_count_lost_locked): when its whole process group died,
     * its exit is the one crash */
    unsigned lost_children;
    uint64_t lost_at;
    /* overlapped recycling: a replacement is spawned first; this worker stops once it is ready */
    const char *retire_reason;
    int replacement_ready;
    int retire_at_limit; /* retiring for max_requests: it serves up to the limit, its replacement ready beside it */
    h2p_worker_t *replaces;
    /* the supervisor's probe (readiness or ping) */
    h2o_socket_t *probe;
    int probe_is_ping;
    uint64_t probe_deadline;
};

struct h2p_pool {
    unsigned refcnt; /* atomic */
    h2p_pool_conf_t *conf;
    h2p_config_t *config; /* keeps conf alive */
    h2o_linklist_t registry_link;
    pthread_mutex_t lock;
    h2o_linklist_t workers, idle, queue;
    h2o_linklist_t masters; /* php-cgi masters (conf->php_master): starting, running or stopping */
    size_t num_live, num_starting, num_idle, num_queued;
    size_t spawn_pending;  /* spawns asked of the supervisor, not yet done */
    uint64_t max_requests; /* conf->max_requests, or php-cgi's own limit when lower */
    uint64_t *crashes;     /* ring of crash times (rapid-fail protection) */
    size_t crash_head, crash_count;
    int stopped;               /* by rapid-fail protection or `h2pool ctl stop pool`: answer 503 at once */
    const char *stopped_by;    /* which of the two, for the log and `h2pool ctl list pools` */
    int draining;              /* removed or changed by a reload: no new work, stops when empty */
    uint64_t spawn_not_before; /* back-off after failed starts */
    unsigned failed_starts;
    uint64_t spawned_total, crashed_total;
    uint64_t violations_total;     /* workers replaced for breaking the protocol (garbage, bytes out of turn) */
    uint64_t *endpoint_down_until; /* `connect:` pools: per endpoint, skipped until then */
    h2p_stats_t *stats;            /* counters by pool name (frontend/counters.h): they outlive this pool */
};

/* How long an endpoint that refused a connection or failed its ping is skipped. */
#define H2P_ENDPOINT_RETRY_MS 5000

/* pool.c */
extern pthread_mutex_t h2p_pools_lock;
extern h2o_linklist_t h2p_pools;
void h2p_pool_give_worker_locked(h2p_pool_t *pool, h2p_worker_t *worker, h2p_pool_waiter_t **handed_to);
void h2p_pool_deliver(h2p_pool_waiter_t *waiter);
void h2p_pool_fail_waiters_locked(h2p_pool_t *pool, int status, h2o_linklist_t *failed);
/* A crash: rapid-fail protection may stop the pool, its queue answered into *failed (deliver after unlocking). */
void h2p_pool_record_crash_locked(h2p_pool_t *pool, uint64_t now, h2o_linklist_t *failed);
void h2p_worker_unref_locked(h2p_worker_t *worker);
void h2p_worker_drop_kept_locked(h2p_worker_t *worker);
void h2p_pool_want_spawn_locked(h2p_pool_t *pool, size_t n);
/* Spawns what the queue needs, up to max_processes counting those already starting. */
void h2p_pool_spawn_for_queue_locked(h2p_pool_t *pool);
int h2p_pool_endpoint_up_locked(h2p_pool_t *pool, size_t endpoint, uint64_t now);
int h2p_pool_pick_endpoint_locked(h2p_pool_t *pool, size_t home, uint64_t now);
void h2p_pool_endpoint_failed_locked(h2p_pool_t *pool, size_t endpoint, const char *why, h2o_linklist_t *failed);
void h2p_pool_deliver_all(h2o_linklist_t *waiters);
/* Stops the pool (503 at once: the queue into *failed, for h2p_pool_deliver_all after unlocking;
 * idle workers stopped, busy ones when released). */
void h2p_pool_stop_locked(h2p_pool_t *pool, const char *by, h2o_linklist_t *failed);

/* pool_reload.c */
void h2p_poolmgr_free_drained(void);

/* worker.c (supervisor thread only) */
void h2p_supervisor_kick(void);
void h2p_worker_stop_locked(h2p_worker_t *worker, const char *why);
void h2p_worker_kill_locked(h2p_worker_t *worker);
/* Recycling with overlap: a replacement is asked for, the worker stops once it is ready. */
void h2p_worker_retire_locked(h2p_worker_t *worker, const char *reason);
/* A php-cgi master that is ready and not retiring (NULL: none). */
h2p_worker_t *h2p_pool_running_master_locked(h2p_pool_t *pool);
/* A running php-cgi master takes no new request: its idle slots go now, its busy ones once their
 * requests end, and it stops with its last slot (a stopped or draining pool; no replacement is
 * asked for).  h2p_pool_running_master_locked no longer returns it. */
void h2p_master_wind_down_locked(h2p_worker_t *m, const char *why);
/* A running php-cgi master is found dead before its exit is reported: its slots leave the pool
 * now; the report counts the crash. */
void h2p_master_gone_locked(h2p_worker_t *master);
/* The tick: a master's lost children are crashes once it outlived them by a tick (*failed:
 * rapid-fail protection's 503s, delivered after unlocking). */
void h2p_master_count_lost_locked(h2p_worker_t *m, uint64_t now, h2o_linklist_t *failed);
/* A php-cgi master's slot is free again (after a request, or a ping with H2P_RELEASE_OK or
 * _CLOSED): back to the pool, or out of it if its master is going (*handed_to, *failed: deliver
 * after unlocking). */
void h2p_slot_release_locked(h2p_worker_t *slot, h2p_release_outcome_t outcome, h2p_pool_waiter_t **handed_to,
                             h2o_linklist_t *failed);
/* A process's resident memory in bytes (0 if unknown). */
uint64_t h2p_process_rss(pid_t pid);

#endif

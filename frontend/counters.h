/*
 * Counters (IIS's performance counters): what h2pool has done, per site, per pool and for the
 * whole server, read by the management endpoint (/status, /metrics) and by `h2pool ctl`.
 *
 * Cost on the request path: each front-end thread writes only its own slot of every counter
 * (a relaxed load and store of a word it alone writes: no lock, no atomic read-modify-write,
 * no cache line shared with another writer); readers add the slots up.  A reader may see a
 * request counted in `requests` a moment before its latency bucket: Prometheus tolerates that.
 * Rare events (spawns, crashes, recycles, ...) are relaxed atomic additions.
 *
 * Counters are kept by name and live as long as the process: a site or pool that a reload
 * changes keeps counting where it was (Prometheus counters only reset at a restart), and the
 * old and new pool of one name, while the old one drains, add to the same counters.
 *
 * Requests in flight: each front-end thread keeps a list of its own (h2p_request_track_t, in
 * every h2p_request_t).  Only that thread touches it; the supervisor asks each thread by
 * message for a description of its requests (h2p_inflight_collect) and gets the answers back
 * on its own loop.
 */
#ifndef H2POOL_COUNTERS_H
#define H2POOL_COUNTERS_H

#include <h2o.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

struct h2p_thread;

/* Latency histogram bounds, in microseconds (Prometheus-style cumulative `le` buckets, +Inf last). */
#define H2P_LATENCY_BUCKETS 15
extern const uint64_t h2p_latency_bounds_us[H2P_LATENCY_BUCKETS - 1];

/* Status classes: 0 = no response (the client left first), 1..5 = 1xx..5xx. */
#define H2P_STATUS_CLASSES 6
extern const char *const h2p_status_class_names[H2P_STATUS_CLASSES];

/* One thread's share of a site's, pool's or the server's traffic (a cache line of its own). */
typedef struct h2p_traffic_slot {
    _Atomic uint64_t started, ended;
    _Atomic uint64_t by_class[H2P_STATUS_CLASSES];
    _Atomic uint64_t latency[H2P_LATENCY_BUCKETS]; /* per bucket, not cumulative */
    _Atomic uint64_t latency_sum_us;
} __attribute__((aligned(64))) h2p_traffic_slot_t;

/* The sum of every thread's slot. */
typedef struct h2p_traffic {
    uint64_t started, ended;
    uint64_t by_class[H2P_STATUS_CLASSES];
    uint64_t latency[H2P_LATENCY_BUCKETS];
    uint64_t latency_sum_us;
} h2p_traffic_t;

typedef enum h2p_stats_kind { H2P_STATS_SERVER, H2P_STATS_SITE, H2P_STATS_POOL } h2p_stats_kind_t;

#define H2P_POOL_HISTORY 300 /* seconds of busy-worker and queue samples per pool */

/* A site's, a pool's or the server's counters. */
typedef struct h2p_stats {
    h2p_stats_kind_t kind;
    char *name;
    h2p_traffic_slot_t *slots; /* one per front-end thread, plus one for any other thread */
    /* sites: stopped by `h2pool ctl stop site` (answered 503 until started again) */
    atomic_int stopped;
    /* pools: events (relaxed atomic additions) */
    _Atomic uint64_t spawns, crashes, recycles, rapid_fail_trips, violations;
    /* pools: busy workers and queue length, sampled each second by the supervisor (its thread only) */
    struct {
        uint16_t busy[H2P_POOL_HISTORY], queued[H2P_POOL_HISTORY];
        size_t head, count;
    } history;
    struct h2p_stats *next;
} h2p_stats_t;

/* The server-wide counters. */
extern h2p_stats_t *h2p_server_stats;

/* Per-thread connection counters (same single-writer rule). */
typedef struct h2p_conn_slot {
    _Atomic uint64_t accepted, refused;
} __attribute__((aligned(64))) h2p_conn_slot_t;

/* Sizes the per-thread slots (h2p_server.num_threads must be set); before any h2p_stats_get. */
void h2p_counters_init(void);
/* The counters of the site or pool of that name, made on first use; never freed. */
h2p_stats_t *h2p_stats_get(h2p_stats_kind_t kind, const char *name);
/* Looks one up without making it (NULL if unknown). */
h2p_stats_t *h2p_stats_find(h2p_stats_kind_t kind, const char *name);

void h2p_traffic_sum(const h2p_stats_t *stats, h2p_traffic_t *out);
void h2p_counters_connections(uint64_t *accepted, uint64_t *refused);

static inline void h2p_counter_add(_Atomic uint64_t *counter, uint64_t n)
{
    atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}

/* The calling thread's slot index: a front-end thread's own, else the shared last one. */
size_t h2p_counters_slot(void);
static inline void h2p_slot_add(_Atomic uint64_t *counter, uint64_t n)
{
    /* single writer per slot: no read-modify-write needed */
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + n, memory_order_relaxed);
}
void h2p_counters_connection_accepted(void);
void h2p_counters_connection_refused(void);

/* ---- requests in flight ------------------------------------------------------------------ */

/* What a request is doing, for `h2pool ctl list requests` (static strings). */
#define H2P_STAGE_MODULES "modules"
#define H2P_STAGE_STATIC "static"
#define H2P_STAGE_CGI "cgi"
#define H2P_STAGE_QUEUED "queued"
#define H2P_STAGE_WORKER "worker"
#define H2P_STAGE_SENDING "sending"

typedef struct h2p_request_track {
    h2o_linklist_t link; /* the thread's requests in flight */
    h2o_req_t *req;
    uint64_t started_us; /* CLOCK_MONOTONIC */
    h2p_stats_t *site, *pool;
    pid_t worker_pid; /* while a worker has it */
    const char *stage;
} h2p_request_track_t;

/* The router's calls: a request is in (site may still be NULL), a request is done. */
void h2p_request_track_begin(h2p_request_track_t *track, h2o_req_t *req);
/* The site it was routed to; the pool that serves it (counted once per pool). */
void h2p_request_track_site(h2p_request_track_t *track, h2p_stats_t *site);
void h2p_request_track_pool(h2p_request_track_t *track, h2p_stats_t *pool);
void h2p_request_track_end(h2p_request_track_t *track);

/* Registers / unregisters the thread's receiver for collection messages (on the thread). */
void h2p_counters_init_thread(struct h2p_thread *th);
void h2p_counters_dispose_thread(struct h2p_thread *th);

/*
 * Supervisor: asks every front-end thread for its requests in flight; `done` runs on `loop` once
 * all have answered, with a JSON array it owns.  `data` is the caller's.  Returns a handle that
 * h2p_inflight_abandon() may be given before `done` ran (then `done` is never called), or NULL
 * when no front-end thread runs: then `done` has run already, before the return.
 */
typedef struct h2p_inflight_collect h2p_inflight_collect_t;
h2p_inflight_collect_t *h2p_inflight_collect(void (*done)(json_t *requests, void *data), void *data);
void h2p_inflight_abandon(h2p_inflight_collect_t *collect);

/* ---- history (the dashboard's charts) ------------------------------------------------------ */

#define H2P_HISTORY_SECONDS 300

/* Supervisor: samples the counters once a second on `loop`. */
void h2p_counters_start_sampling(h2o_evloop_t *loop);
void h2p_counters_stop_sampling(void);
/* The last samples as {"interval_s", "time", "requests_per_s", "errors_per_s", "p50_ms", "p99_ms",
 * "connections"} (supervisor thread). */
json_t *h2p_counters_history_json(void);
/* Requests per second over the last `seconds` (supervisor thread). */
double h2p_counters_recent_rate(unsigned seconds);

/* ---- JSON helpers shared by management and control ---------------------------------------- */

/* A JSON string of arbitrary bytes: control characters and bytes beyond ASCII as %XX. */
json_t *h2p_json_bytes(const char *s, size_t len);
json_t *h2p_traffic_json(const h2p_traffic_t *t);
/* The q-quantile (0..1) of a histogram, in milliseconds, interpolated within its bucket; -1 when empty. */
double h2p_latency_quantile_ms(const uint64_t *buckets, double q);

#endif

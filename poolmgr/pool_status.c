/*
 * The pools as the management endpoint and `h2pool ctl` see them: their state, workers and
 * counters as JSON, and the operator's commands (start, stop, recycle).  Supervisor thread; each
 * pool's lock is held only while its fields are copied out.
 */
#include <stdio.h>
#include <string.h>

#include "frontend/log.h"
#include "frontend/alloc.h"
#include "poolmgr/pool_internal.h"

static const char *worker_state_name(const h2p_worker_t *w)
{
    switch (w->state) {
    case WORKER_STARTING:
        return "starting";
    case WORKER_IDLE:
        return "idle";
    case WORKER_BUSY:
        return "busy";
    case WORKER_RUNNING:
        return "running";
    case WORKER_STOPPING:
        return "stopping";
    default:
        return "dead";
    }
}

static const char *pool_state_locked(h2p_pool_t *pool)
{
    if (pool->stopped)
        return "stopped";
    if (pool->draining)
        return "draining";
    return h2o_linklist_is_empty(&pool->workers) && h2o_linklist_is_empty(&pool->masters) ? "idle" : "running";
}

/* The worker list needs each worker's memory, read from /proc outside the pool's lock. */
typedef struct rss_todo {
    json_t *worker;
    pid_t pid;
} rss_todo_t;

static json_t *worker_json_locked(const h2p_worker_t *w, uint64_t now)
{
    json_t *j = json_object();
    json_object_set_new(j, "pool", json_string(w->pool->conf->name));
    json_object_set_new(j, "pid", w->external ? json_null() : json_integer(w->pid));
    json_object_set_new(j, "state", json_string(worker_state_name(w)));
    uint64_t requests = w->requests;
    if (w->is_master) /* (its slots' requests: the ones its children served) */
        for (h2o_linklist_t *l = w->pool->workers.next; l != &w->pool->workers; l = l->next) {
            const h2p_worker_t *slot = H2O_STRUCT_FROM_MEMBER(h2p_worker_t, all_link, l);
            if (slot->master == w)
                requests += slot->requests;
        }
    json_object_set_new(j, "requests", json_integer((json_int_t)requests));
    json_object_set_new(j, "uptime_s", json_real(w->started_at <= now ? (double)(now - w->started_at) / 1000 : 0));
    if (w->external)
        json_object_set_new(j, "endpoint", json_string(w->pool->conf->connect[w->conn_endpoint].text));
    if (w->retire_reason != NULL)
        json_object_set_new(j, "retiring", json_string(w->retire_reason));
    /* the php-cgi master layout: the master, and its slots (pid: the master's) */
    if (w->is_master || w->master != NULL)
        json_object_set_new(j, "role", json_string(w->is_master ? "master" : "slot"));
    return j;
}

static void add_workers_locked(h2p_pool_t *pool, json_t *array, rss_todo_t *todo, size_t *num_todo, size_t max_todo)
{
    uint64_t now = h2p_now_ms();
    h2o_linklist_t *lists[] = {&pool->masters, &pool->workers};
    for (size_t i = 0; i != 2; ++i) {
        for (h2o_linklist_t *l = lists[i]->next; l != lists[i]; l = l->next) {
            h2p_worker_t *w = H2O_STRUCT_FROM_MEMBER(h2p_worker_t, all_link, l);
            json_t *j = worker_json_locked(w, now);
            json_array_append_new(array, j);
            if (!w->external && w->master == NULL && *num_todo < max_todo) /* (a slot's pid is its master's) */
                todo[(*num_todo)++] = (rss_todo_t){j, w->pid};
        }
    }
}

#define MAX_RSS_READS 1024

static void fill_rss(rss_todo_t *todo, size_t n)
{
    for (size_t i = 0; i != n; ++i)
        json_object_set_new(todo[i].worker, "rss_bytes", json_integer((json_int_t)h2p_process_rss(todo[i].pid)));
}

json_t *h2p_poolmgr_workers_json(void)
{
    json_t *array = json_array();
    rss_todo_t *todo = h2o_mem_alloc(sizeof(*todo) * MAX_RSS_READS);
    size_t num_todo = 0;
    pthread_mutex_lock(&h2p_pools_lock);
    for (h2o_linklist_t *pl = h2p_pools.next; pl != &h2p_pools; pl = pl->next) {
        h2p_pool_t *pool = H2O_STRUCT_FROM_MEMBER(h2p_pool_t, registry_link, pl);
        pthread_mutex_lock(&pool->lock);
        add_workers_locked(pool, array, todo, &num_todo, MAX_RSS_READS);
        pthread_mutex_unlock(&pool->lock);
    }
    pthread_mutex_unlock(&h2p_pools_lock);
    fill_rss(todo, num_todo); /* (the JSON holds its own references: the workers may be gone by now) */
    free(todo);
    return array;
}

static json_t *history_json(const h2p_stats_t *stats)
{
    json_t *busy = json_array(), *queued = json_array();
    for (size_t k = 0; k != stats->history.count; ++k) {
        size_t i = (stats->history.head + H2P_POOL_HISTORY - stats->history.count + k) % H2P_POOL_HISTORY;
        json_array_append_new(busy, json_integer(stats->history.busy[i]));
        json_array_append_new(queued, json_integer(stats->history.queued[i]));
    }
    return json_pack("{s:o, s:o}", "busy", busy, "queued", queued);
}

static json_t *pool_json_locked(h2p_pool_t *pool, json_t *workers)
{
    size_t busy = 0, idle = 0, starting = 0, stopping = 0;
    for (h2o_linklist_t *l = pool->workers.next; l != &pool->workers; l = l->next) {
        h2p_worker_t *w = H2O_STRUCT_FROM_MEMBER(h2p_worker_t, all_link, l);
        busy += w->state == WORKER_BUSY;
        idle += w->state == WORKER_IDLE;
        starting += w->state == WORKER_STARTING;
        stopping += w->state == WORKER_STOPPING;
    }
    for (h2o_linklist_t *l = pool->masters.next; l != &pool->masters; l = l->next) {
        h2p_worker_t *m = H2O_STRUCT_FROM_MEMBER(h2p_worker_t, all_link, l);
        starting += m->state == WORKER_STARTING;
        stopping += m->state == WORKER_STOPPING;
    }
    const h2p_pool_conf_t *conf = pool->conf;
    json_t *j = json_object();
    json_object_set_new(j, "name", json_string(conf->name));
    json_object_set_new(j, "state", json_string(pool_state_locked(pool)));
    json_object_set_new(j, "stopped_by", pool->stopped ? json_string(pool->stopped_by) : json_null());
    json_object_set_new(j, "generation", json_integer((json_int_t)pool->config->generation));
    json_object_set_new(j, "external", json_boolean(conf->num_connect != 0));
    json_object_set_new(j, "workers",
                        json_pack("{s:I, s:I, s:I, s:I}", "busy", (json_int_t)busy, "idle", (json_int_t)idle, "starting",
                                  (json_int_t)starting, "stopping", (json_int_t)stopping));
    json_object_set_new(j, "min_processes", json_integer(conf->min_processes));
    json_object_set_new(j, "max_processes", json_integer(conf->max_processes));
    json_object_set_new(j, "queue", json_integer((json_int_t)pool->num_queued));
    json_object_set_new(j, "queue_length", json_integer(conf->queue_length));
    if (workers != NULL)
        json_object_set_new(j, "worker_list", workers);
    return j;
}

/* Counters by name, shared by a pool and the one that replaces it while it drains. */
static void add_counters(json_t *j, const h2p_stats_t *stats)
{
    h2p_traffic_t traffic;
    h2p_traffic_sum(stats, &traffic);
    json_t *events =
               json_pack("{s:I, s:I, s:I, s:I, s:I}", "spawns_total", (json_int_t)atomic_load(&stats->spawns), "crashes_total",
                         (json_int_t)atomic_load(&stats->crashes), "recycles_total", (json_int_t)atomic_load(&stats->recycles),
                         "rapid_fail_trips_total", (json_int_t)atomic_load(&stats->rapid_fail_trips), "protocol_violations_total",
                         (json_int_t)atomic_load(&stats->violations)),
           *t = h2p_traffic_json(&traffic);
    json_object_update(j, events);
    json_object_update(j, t);
    json_decref(events);
    json_decref(t);
    json_object_set_new(j, "history", history_json(stats));
}

json_t *h2p_poolmgr_pools_json(int with_workers)
{
    json_t *array = json_array();
    rss_todo_t *todo = with_workers ? h2o_mem_alloc(sizeof(*todo) * MAX_RSS_READS) : NULL;
    size_t num_todo = 0;
    pthread_mutex_lock(&h2p_pools_lock);
    for (h2o_linklist_t *pl = h2p_pools.next; pl != &h2p_pools; pl = pl->next) {
        h2p_pool_t *pool = H2O_STRUCT_FROM_MEMBER(h2p_pool_t, registry_link, pl);
        pthread_mutex_lock(&pool->lock);
        json_t *workers = NULL;
        if (with_workers) {
            workers = json_array();
            add_workers_locked(pool, workers, todo, &num_todo, MAX_RSS_READS);
        }
        json_t *j = pool_json_locked(pool, workers);
        h2p_stats_t *stats = pool->stats;
        pthread_mutex_unlock(&pool->lock);
        add_counters(j, stats);
        json_array_append_new(array, j);
    }
    pthread_mutex_unlock(&h2p_pools_lock);
    fill_rss(todo, num_todo);
    free(todo);
    return array;
}

void h2p_poolmgr_sample_history(void)
{
    /* pools of one name (one draining, its replacement) add up into one sample */
    h2p_stats_t *seen[256];
    size_t num_seen = 0;
    pthread_mutex_lock(&h2p_pools_lock);
    for (h2o_linklist_t *pl = h2p_pools.next; pl != &h2p_pools; pl = pl->next) {
        h2p_pool_t *pool = H2O_STRUCT_FROM_MEMBER(h2p_pool_t, registry_link, pl);
        h2p_stats_t *stats = pool->stats;
        size_t i = 0;
        while (i != num_seen && seen[i] != stats)
            ++i;
        if (i == num_seen) {
            if (num_seen == sizeof(seen) / sizeof(seen[0]))
                continue;
            seen[num_seen++] = stats;
            stats->history.busy[stats->history.head] = stats->history.queued[stats->history.head] = 0;
        }
        size_t busy = 0;
        pthread_mutex_lock(&pool->lock);
        for (h2o_linklist_t *l = pool->workers.next; l != &pool->workers; l = l->next)
            busy += H2O_STRUCT_FROM_MEMBER(h2p_worker_t, all_link, l)->state == WORKER_BUSY;
        size_t queued = pool->num_queued;
        pthread_mutex_unlock(&pool->lock);
        stats->history.busy[stats->history.head] += busy > 65535 ? 65535 : (uint16_t)busy;
        stats->history.queued[stats->history.head] += queued > 65535 ? 65535 : (uint16_t)queued;
    }
    pthread_mutex_unlock(&h2p_pools_lock);
    for (size_t i = 0; i != num_seen; ++i) {
        seen[i]->history.head = (seen[i]->history.head + 1) % H2P_POOL_HISTORY;
        if (seen[i]->history.count < H2P_POOL_HISTORY)
            seen[i]->history.count++;
    }
}

/* ---- the operator's commands ----------------------------------------------------------- */

static h2p_pool_t *find_serving_locked(const char *name)
{
    for (h2o_linklist_t *pl = h2p_pools.next; pl != &h2p_pools; pl = pl->next) {
        h2p_pool_t *pool = H2O_STRUCT_FROM_MEMBER(h2p_pool_t, registry_link, pl);
        if (!pool->draining && strcmp(pool->conf->name, name) == 0)
            return pool;
    }
    return NULL;
}

static int start_locked(h2p_pool_t *pool, char *message, size_t len, h2o_linklist_t *failed)
{
    if (!pool->stopped) {
        snprintf(message, len, "pool %s is already started", pool->conf->name);
        return H2P_POOL_CTL_OK;
    }
    /* afresh, as after a restart: rapid-fail protection counts from here, no start back-off */
    h2p_info("pool", "pool %s started by h2pool ctl (it was stopped by %s)", pool->conf->name, pool->stopped_by);
    snprintf(message, len, "pool %s started (it was stopped by %s)", pool->conf->name, pool->stopped_by);
    pool->stopped = 0;
    pool->stopped_by = NULL;
    pool->crash_count = pool->crash_head = 0;
    pool->failed_starts = 0;
    pool->spawn_not_before = 0;
    return H2P_POOL_CTL_OK;
}

static int stop_locked(h2p_pool_t *pool, char *message, size_t len, h2o_linklist_t *failed)
{
    if (pool->stopped) {
        snprintf(message, len, "pool %s is already stopped (by %s)", pool->conf->name, pool->stopped_by);
        return H2P_POOL_CTL_OK;
    }
    h2p_notice("pool", "pool %s stopped by h2pool ctl: answering 503 until it is started again", pool->conf->name);
    h2p_pool_stop_locked(pool, "h2pool ctl", failed);
    snprintf(message, len, "pool %s stopped: its requests get 503 until `h2pool ctl start pool %s`", pool->conf->name,
             pool->conf->name);
    return H2P_POOL_CTL_OK;
}

static int recycle_locked(h2p_pool_t *pool, char *message, size_t len, h2o_linklist_t *failed)
{
    if (pool->stopped) {
        snprintf(message, len, "pool %s is stopped: start it first", pool->conf->name);
        return H2P_POOL_CTL_REFUSED;
    }
    if (pool->conf->num_connect != 0) {
        snprintf(message, len, "pool %s runs no process of h2pool's (connect:): nothing to recycle", pool->conf->name);
        return H2P_POOL_CTL_REFUSED;
    }
    if (pool->conf->php_master) {
        h2p_worker_t *m = h2p_pool_running_master_locked(pool);
        if (m == NULL) {
            snprintf(message, len, "pool %s: no php-cgi master is running (or one is being replaced already)", pool->conf->name);
            return H2P_POOL_CTL_OK;
        }
        h2p_worker_retire_locked(m, "recycled by h2pool ctl");
        snprintf(message, len, "pool %s: recycling php-cgi master %d (it stops once its replacement is ready)", pool->conf->name,
                 (int)m->pid);
        return H2P_POOL_CTL_OK;
    }
    size_t n = 0;
    for (h2o_linklist_t *l = pool->workers.next; l != &pool->workers; l = l->next) {
        h2p_worker_t *w = H2O_STRUCT_FROM_MEMBER(h2p_worker_t, all_link, l);
        if ((w->state == WORKER_IDLE || w->state == WORKER_BUSY) && w->retire_reason == NULL) {
            h2p_worker_retire_locked(w, "recycled by h2pool ctl");
            ++n;
        }
    }
    snprintf(message, len, "pool %s: recycling %zu worker%s (each stops once its replacement is ready)", pool->conf->name, n,
             n == 1 ? "" : "s");
    return H2P_POOL_CTL_OK;
}

int h2p_poolmgr_control(const char *action, const char *name, char *message, size_t len)
{
    int (*op)(h2p_pool_t *, char *, size_t, h2o_linklist_t *) = strcmp(action, "start") == 0  ? start_locked
                                                                : strcmp(action, "stop") == 0 ? stop_locked
                                                                                              : recycle_locked;
    pthread_mutex_lock(&h2p_pools_lock);
    h2p_pool_t *pool = find_serving_locked(name);
    if (pool == NULL) {
        pthread_mutex_unlock(&h2p_pools_lock);
        snprintf(message, len, "no pool named \"%s\"", name);
        return H2P_POOL_CTL_UNKNOWN;
    }
    h2o_linklist_t failed; /* (a stopped pool's queue, answered after unlocking) */
    h2o_linklist_init_anchor(&failed);
    pthread_mutex_lock(&pool->lock);
    int result = op(pool, message, len, &failed);
    pthread_mutex_unlock(&pool->lock);
    pthread_mutex_unlock(&h2p_pools_lock);
    h2p_pool_deliver_all(&failed);
    h2p_supervisor_kick(); /* min_processes of a started pool, replacements of recycled workers */
    return result;
}

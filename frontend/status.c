/* /status and /metrics: see status.h. */
#include "frontend/status.h"
#include "frontend/alloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "frontend/counters.h"
#include "frontend/log.h"
#include "frontend/router.h"
#include "frontend/server.h"
#include "native-modules/cache_store.h"
#include "poolmgr/pool.h"

static double started_at; /* unix time */

static double unix_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

void h2p_status_init(void)
{
    started_at = unix_now();
}

json_t *h2p_status_sites_json(void)
{
    json_t *sites = json_array();
    h2p_gen_t *gen = h2p_server.gen; /* (the supervisor is the thread that swaps it) */
    for (size_t s = 0; gen != NULL && s != gen->num_sites; ++s) {
        h2p_site_rt_t *site = gen->sites + s;
        json_t *bindings = json_array();
        for (size_t b = 0; b != site->conf->num_bindings; ++b)
            json_array_append_new(bindings, json_string(site->conf->bindings[b].text));
        h2p_traffic_t traffic;
        h2p_traffic_sum(site->stats, &traffic);
        json_t *j = h2p_traffic_json(&traffic);
        json_object_set_new(j, "name", json_string(site->conf->name));
        json_object_set_new(j, "state", json_string(atomic_load(&site->stats->stopped) ? "stopped" : "started"));
        json_object_set_new(j, "bindings", bindings);
        json_array_append_new(sites, j);
    }
    return sites;
}

static void add_error_line(const char *line, h2p_log_level_t level, void *data)
{
    json_array_append_new(data,
                          json_pack("{s:s, s:o}", "level", h2p_log_level_name(level), "line", h2p_json_bytes(line, strlen(line))));
}

json_t *h2p_status_json(int what)
{
    uint64_t accepted, refused;
    h2p_counters_connections(&accepted, &refused);
    h2p_traffic_t traffic;
    h2p_traffic_sum(h2p_server_stats, &traffic);
    double now = unix_now();
    json_t *status = json_pack("{s:s, s:i, s:f, s:f, s:f, s:I, s:I}", "version", H2POOL_VERSION, "pid", (int)getpid(), "time", now,
                               "started_at", started_at, "uptime_s", now - started_at, "generation",
                               (json_int_t)(h2p_server.gen != NULL ? h2p_server.gen->conf->generation : 0), "threads",
                               (json_int_t)h2p_server.num_threads);
    json_object_set_new(status, "connections",
                        json_pack("{s:I, s:I, s:I, s:I}", "current", (json_int_t)atomic_load(&h2p_server.num_connections), "max",
                                  (json_int_t)h2p_server.max_connections, "accepted_total", (json_int_t)accepted, "refused_total",
                                  (json_int_t)refused));
    json_t *requests = h2p_traffic_json(&traffic);
    json_object_set_new(requests, "per_second", json_real(h2p_counters_recent_rate(10)));
    json_object_set_new(status, "requests", requests);
    json_object_set_new(status, "sites", h2p_status_sites_json());
    json_object_set_new(status, "pools", h2p_poolmgr_pools_json((what & H2P_STATUS_WORKERS) != 0));
    h2p_cache_stats_t cache;
    h2p_cache_stats(&cache);
    json_object_set_new(
        status, "output_cache",
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "entries", (json_int_t)cache.entries, "bytes",
                  (json_int_t)cache.bytes, "hits_total", (json_int_t)cache.hits, "misses_total", (json_int_t)cache.misses,
                  "stale_hits_total", (json_int_t)cache.stale_hits, "stale_if_error_total", (json_int_t)cache.stale_if_error,
                  "refreshes_total", (json_int_t)cache.refreshes, "evictions_total", (json_int_t)cache.evictions,
                  "collapsed_waits_total", (json_int_t)cache.collapsed_waits, "stores_total", (json_int_t)cache.stores));
    if (what & H2P_STATUS_HISTORY)
        json_object_set_new(status, "history", h2p_counters_history_json());
    if (what & H2P_STATUS_ERRORS) {
        json_t *errors = json_array();
        h2p_log_recent(add_error_line, errors);
        json_object_set_new(status, "recent_errors", errors);
    }
    return status;
}

/* ---- Prometheus ---------------------------------------------------------------------------- */

typedef struct text {
    char *data;
    size_t len, cap;
} text_t;

static void appendf(text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void appendf(text_t *t, const char *fmt, ...)
{
    for (;;) {
        va_list args;
        va_start(args, fmt);
        int n = vsnprintf(t->data + t->len, t->cap - t->len, fmt, args);
        va_end(args);
        if (n >= 0 && (size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        t->cap = t->cap * 2 + (n > 0 ? (size_t)n : 0);
        t->data = h2o_mem_realloc(t->data, t->cap);
    }
}

/* A label value: backslash, double quote and newline escaped (names are plain already). */
/* A php-cgi master's slot in a pool's worker_list (its pid is the master's). */
static int is_slot(json_t *worker)
{
    const char *role = json_string_value(json_object_get(worker, "role"));
    return role != NULL && strcmp(role, "slot") == 0;
}

static const char *label(const char *s, char *buf, size_t len)
{
    size_t n = 0;
    for (; *s != '\0' && n + 3 < len; ++s) {
        if (*s == '\\' || *s == '"' || *s == '\n') {
            buf[n++] = '\\';
            buf[n++] = *s == '\n' ? 'n' : *s;
        } else {
            buf[n++] = *s;
        }
    }
    buf[n] = '\0';
    return buf;
}

static void family(text_t *t, const char *name, const char *type, const char *help)
{
    appendf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static uint64_t u64(json_t *object, const char *key)
{
    return (uint64_t)json_integer_value(json_object_get(object, key));
}

/* A metric of one unlabelled sample: its family lines, then the value. */
static void single(text_t *t, const char *name, const char *type, const char *help, uint64_t value)
{
    family(t, name, type, help);
    appendf(t, "%s %llu\n", name, (unsigned long long)value);
}

/* One value per site or pool: `labelname="<name>"` from each element's "name". */
static void per_element(text_t *t, json_t *elements, const char *metric, const char *labelname, const char *key, const char *type,
                        const char *help)
{
    family(t, metric, type, help);
    size_t i;
    json_t *e;
    char buf[256];
    json_array_foreach(elements, i, e)
    {
        json_t *v = json_object_get(e, key);
        appendf(t, "%s{%s=\"%s\"} %.17g\n", metric, labelname,
                label(json_string_value(json_object_get(e, "name")), buf, sizeof(buf)), json_number_value(v));
    }
}

static void requests_by_class(text_t *t, json_t *elements, const char *metric, const char *labelname, const char *help)
{
    family(t, metric, "counter", help);
    size_t i;
    json_t *e;
    char buf[256];
    json_array_foreach(elements, i, e)
    {
        json_t *classes = json_object_get(e, "by_class");
        for (size_t c = 0; c != H2P_STATUS_CLASSES; ++c)
            appendf(t, "%s{%s=\"%s\",class=\"%s\"} %llu\n", metric, labelname,
                    label(json_string_value(json_object_get(e, "name")), buf, sizeof(buf)), h2p_status_class_names[c],
                    (unsigned long long)u64(classes, h2p_status_class_names[c]));
    }
}

static void histogram(text_t *t, json_t *elements, const char *metric, const char *labelname, const char *help)
{
    family(t, metric, "histogram", help);
    size_t i;
    json_t *e;
    char buf[256], labels[320];
    json_array_foreach(elements, i, e)
    {
        json_t *latency = json_object_get(e, "latency"), *counts = json_object_get(latency, "counts");
        if (labelname != NULL)
            snprintf(labels, sizeof(labels), "%s=\"%s\",", labelname,
                     label(json_string_value(json_object_get(e, "name")), buf, sizeof(buf)));
        else
            labels[0] = '\0';
        uint64_t cumulative = 0;
        for (size_t b = 0; b != H2P_LATENCY_BUCKETS; ++b) {
            cumulative += (uint64_t)json_integer_value(json_array_get(counts, b));
            if (b != H2P_LATENCY_BUCKETS - 1)
                appendf(t, "%s_bucket{%sle=\"%g\"} %llu\n", metric, labels, (double)h2p_latency_bounds_us[b] / 1e6,
                        (unsigned long long)cumulative);
            else
                appendf(t, "%s_bucket{%sle=\"+Inf\"} %llu\n", metric, labels, (unsigned long long)cumulative);
        }
        size_t n = strlen(labels);
        if (n != 0)
            labels[n - 1] = '\0'; /* the trailing comma */
        appendf(t, "%s_sum%s%s%s %.6f\n", metric, n != 0 ? "{" : "", labels, n != 0 ? "}" : "",
                json_number_value(json_object_get(latency, "sum_s")));
        appendf(t, "%s_count%s%s%s %llu\n", metric, n != 0 ? "{" : "", labels, n != 0 ? "}" : "", (unsigned long long)cumulative);
    }
}

/* Pools of one name (one draining, its replacement) are one series: the first carries the counters. */
static json_t *pools_by_name(json_t *pools)
{
    json_t *merged = json_array(), *seen = json_object();
    size_t i;
    json_t *p;
    json_array_foreach(pools, i, p)
    {
        const char *name = json_string_value(json_object_get(p, "name"));
        json_t *first = json_object_get(seen, name);
        if (first == NULL) {
            json_t *copy = json_deep_copy(p);
            json_object_set(seen, name, copy);
            json_array_append_new(merged, copy);
            continue;
        }
        json_t *fw = json_object_get(first, "workers"), *w = json_object_get(p, "workers");
        const char *key;
        json_t *v;
        json_object_foreach(w, key, v)
        {
            json_object_set_new(fw, key, json_integer(json_integer_value(json_object_get(fw, key)) + json_integer_value(v)));
        }
        json_object_set_new(
            first, "queue",
            json_integer(json_integer_value(json_object_get(first, "queue")) + json_integer_value(json_object_get(p, "queue"))));
        if (strcmp(json_string_value(json_object_get(first, "state")), "draining") == 0)
            json_object_set(first, "state", json_object_get(p, "state"));
    }
    json_decref(seen);
    return merged;
}

char *h2p_metrics_text(size_t *len)
{
    json_t *status = h2p_status_json(H2P_STATUS_WORKERS);
    json_t *sites = json_object_get(status, "sites"), *pools = pools_by_name(json_object_get(status, "pools"));
    json_t *conns = json_object_get(status, "connections"), *requests = json_object_get(status, "requests");
    text_t t = {h2o_mem_alloc(16384), 0, 16384};
    char buf[256];

    family(&t, "h2pool_info", "gauge", "h2pool's version (always 1).");
    appendf(&t, "h2pool_info{version=\"%s\"} 1\n", H2POOL_VERSION);
    family(&t, "h2pool_start_time_seconds", "gauge", "When h2pool started (unix time).");
    appendf(&t, "h2pool_start_time_seconds %.3f\n", json_real_value(json_object_get(status, "started_at")));
    single(&t, "h2pool_configuration_generation", "gauge", "The configuration generation in force (each reload adds one).",
           u64(status, "generation"));
    single(&t, "h2pool_threads", "gauge", "Front-end event loops.", u64(status, "threads"));
    single(&t, "h2pool_connections", "gauge", "Client connections open now.", u64(conns, "current"));
    single(&t, "h2pool_connections_max", "gauge", "server.limits.max_connections.", u64(conns, "max"));
    single(&t, "h2pool_connections_accepted_total", "counter", "Client connections accepted.", u64(conns, "accepted_total"));
    single(&t, "h2pool_connections_refused_total", "counter", "Client connections closed at accept: max_connections reached.",
           u64(conns, "refused_total"));
    single(&t, "h2pool_requests_in_flight", "gauge", "Requests being handled now.", u64(requests, "in_flight"));
    family(&t, "h2pool_requests_total", "counter", "Requests answered, by status class (none: the client left before a response).");
    json_t *classes = json_object_get(requests, "by_class");
    for (size_t c = 0; c != H2P_STATUS_CLASSES; ++c)
        appendf(&t, "h2pool_requests_total{class=\"%s\"} %llu\n", h2p_status_class_names[c],
                (unsigned long long)u64(classes, h2p_status_class_names[c]));
    json_t *server = json_array();
    json_array_append(server, requests);
    histogram(&t, server, "h2pool_request_duration_seconds", NULL, "Time from a request's head to its last byte, all sites.");
    json_decref(server);

    static const struct {
        const char *key, *metric, *type, *help;
    } cache_metrics[] = {
        {"entries", "h2pool_output_cache_entries", "gauge", "Entries in the output cache."},
        {"bytes", "h2pool_output_cache_bytes", "gauge", "Bytes the output cache's entries hold."},
        {"hits_total", "h2pool_output_cache_hits_total", "counter", "Requests answered by a fresh entry."},
        {"misses_total", "h2pool_output_cache_misses_total", "counter", "Lookups that found no fresh entry."},
        {"stale_hits_total", "h2pool_output_cache_stale_hits_total", "counter",
         "Requests answered by an expired entry while it was refreshed (stale-while-revalidate)."},
        {"stale_if_error_total", "h2pool_output_cache_stale_if_error_total", "counter",
         "Requests answered by an expired entry instead of a 502, 503 or 504 (stale-if-error)."},
        {"refreshes_total", "h2pool_output_cache_refreshes_total", "counter", "Background refreshes of expired entries started."},
        {"evictions_total", "h2pool_output_cache_evictions_total", "counter", "Entries evicted for server.cache.max_memory."},
        {"collapsed_waits_total", "h2pool_output_cache_collapsed_waits_total", "counter",
         "Requests that waited for another's fetch of their key."},
        {"stores_total", "h2pool_output_cache_stores_total", "counter", "Entries stored."},
    };
    json_t *cache = json_object_get(status, "output_cache");
    for (size_t m = 0; m != sizeof(cache_metrics) / sizeof(cache_metrics[0]); ++m)
        single(&t, cache_metrics[m].metric, cache_metrics[m].type, cache_metrics[m].help, u64(cache, cache_metrics[m].key));

    json_t *up = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(sites, i, e)
    {
        json_array_append_new(up, json_pack("{s:O, s:i}", "name", json_object_get(e, "name"), "up",
                                            strcmp(json_string_value(json_object_get(e, "state")), "started") == 0));
    }
    per_element(&t, up, "h2pool_site_up", "site", "up", "gauge", "1 if the site serves, 0 if `h2pool ctl stop site` stopped it.");
    json_decref(up);
    requests_by_class(&t, sites, "h2pool_site_requests_total", "site", "Requests answered by the site, by status class.");
    histogram(&t, sites, "h2pool_site_request_duration_seconds", "site", "Time from a request's head to its last byte, by site.");

    up = json_array();
    json_array_foreach(pools, i, e)
    {
        json_array_append_new(up, json_pack("{s:O, s:i}", "name", json_object_get(e, "name"), "up",
                                            strcmp(json_string_value(json_object_get(e, "state")), "stopped") != 0));
    }
    per_element(&t, up, "h2pool_pool_up", "pool", "up", "gauge", "0 if the pool is stopped (rapid-fail protection or h2pool ctl).");
    json_decref(up);
    family(&t, "h2pool_pool_workers", "gauge", "Worker processes of the pool, by state.");
    static const char *const worker_states[] = {"busy", "idle", "starting", "stopping"};
    json_array_foreach(pools, i, e)
    {
        for (size_t s = 0; s != 4; ++s)
            appendf(&t, "h2pool_pool_workers{pool=\"%s\",state=\"%s\"} %llu\n",
                    label(json_string_value(json_object_get(e, "name")), buf, sizeof(buf)), worker_states[s],
                    (unsigned long long)u64(json_object_get(e, "workers"), worker_states[s]));
    }
    per_element(&t, pools, "h2pool_pool_max_processes", "pool", "max_processes", "gauge", "The pool's max_processes.");
    per_element(&t, pools, "h2pool_pool_queue", "pool", "queue", "gauge", "Requests waiting for a worker.");
    per_element(&t, pools, "h2pool_pool_queue_length", "pool", "queue_length", "gauge", "The pool's queue_length (503 beyond it).");
    per_element(&t, pools, "h2pool_pool_spawns_total", "pool", "spawns_total", "counter", "Workers started.");
    per_element(&t, pools, "h2pool_pool_crashes_total", "pool", "crashes_total", "counter",
                "Workers that crashed or failed to start.");
    per_element(&t, pools, "h2pool_pool_recycles_total", "pool", "recycles_total", "counter",
                "Workers recycled (max_requests, recycle.time, recycle.memory, h2pool ctl recycle).");
    per_element(&t, pools, "h2pool_pool_rapid_fail_trips_total", "pool", "rapid_fail_trips_total", "counter",
                "Times rapid-fail protection stopped the pool.");
    per_element(&t, pools, "h2pool_pool_protocol_violations_total", "pool", "protocol_violations_total", "counter",
                "Workers replaced for breaking the FastCGI protocol (garbage, writing out of turn).");
    requests_by_class(&t, pools, "h2pool_pool_requests_total", "pool", "Requests the pool served, by status class.");
    histogram(&t, pools, "h2pool_pool_request_duration_seconds", "pool", "Time from a request's head to its last byte, by pool.");

    family(&t, "h2pool_worker_requests_total", "counter", "Requests a worker process served.");
    json_t *all_pools = json_object_get(status, "pools");
    json_t *p, *w;
    size_t j;
    char pid[32];
    json_array_foreach(all_pools, i, p)
    {
        json_array_foreach(json_object_get(p, "worker_list"), j, w)
        {
            json_t *pidv = json_object_get(w, "pid");
            if (!json_is_integer(pidv) || is_slot(w)) /* (a slot has its php-cgi master's pid: the master's row counts) */
                continue;
            snprintf(pid, sizeof(pid), "%lld", (long long)json_integer_value(pidv));
            appendf(&t, "h2pool_worker_requests_total{pool=\"%s\",pid=\"%s\"} %llu\n",
                    label(json_string_value(json_object_get(p, "name")), buf, sizeof(buf)), pid,
                    (unsigned long long)u64(w, "requests"));
        }
    }
    family(&t, "h2pool_worker_resident_memory_bytes", "gauge", "A worker process's resident memory.");
    json_array_foreach(all_pools, i, p)
    {
        json_array_foreach(json_object_get(p, "worker_list"), j, w)
        {
            json_t *pidv = json_object_get(w, "pid");
            if (!json_is_integer(pidv) || is_slot(w)) /* (a slot has its php-cgi master's pid: the master's row counts) */
                continue;
            appendf(&t, "h2pool_worker_resident_memory_bytes{pool=\"%s\",pid=\"%lld\"} %llu\n",
                    label(json_string_value(json_object_get(p, "name")), buf, sizeof(buf)), (long long)json_integer_value(pidv),
                    (unsigned long long)u64(w, "rss_bytes"));
        }
    }
    json_decref(pools);
    json_decref(status);
    *len = t.len;
    return t.data;
}

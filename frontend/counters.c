/* Counters, requests in flight and the last minutes' history: see counters.h. */
#include "frontend/counters.h"
#include "frontend/alloc.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "frontend/log.h"
#include "frontend/server.h"

const uint64_t h2p_latency_bounds_us[H2P_LATENCY_BUCKETS - 1] = {500,    1000,   2500,   5000,    10000,   25000,   50000,
                                                                 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};
const char *const h2p_status_class_names[H2P_STATUS_CLASSES] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};

h2p_stats_t *h2p_server_stats;

static struct {
    pthread_mutex_t lock; /* the registry (the counters themselves are not under it) */
    h2p_stats_t *all;
    size_t num_slots; /* front-end threads + 1 */
    h2p_conn_slot_t *conns;
} registry = {PTHREAD_MUTEX_INITIALIZER};

static uint64_t monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

size_t h2p_counters_slot(void)
{
    return h2p_this_thread != NULL ? h2p_this_thread->index : registry.num_slots - 1;
}

static h2p_stats_t *new_stats(h2p_stats_kind_t kind, const char *name)
{
    h2p_stats_t *stats = h2p_calloc(1, sizeof(*stats));
    stats->kind = kind;
    stats->name = h2p_strdup(name);
    if (posix_memalign((void **)&stats->slots, 64, sizeof(*stats->slots) * registry.num_slots) != 0)
        abort();
    memset(stats->slots, 0, sizeof(*stats->slots) * registry.num_slots);
    return stats;
}

void h2p_counters_init(void)
{
    if (registry.num_slots != 0)
        return;
    registry.num_slots = h2p_server.num_threads + 1;
    if (posix_memalign((void **)&registry.conns, 64, sizeof(*registry.conns) * registry.num_slots) != 0)
        abort();
    memset(registry.conns, 0, sizeof(*registry.conns) * registry.num_slots);
    h2p_server_stats = new_stats(H2P_STATS_SERVER, "");
}

static h2p_stats_t *find_locked(h2p_stats_kind_t kind, const char *name)
{
    for (h2p_stats_t *s = registry.all; s != NULL; s = s->next)
        if (s->kind == kind && strcmp(s->name, name) == 0)
            return s;
    return NULL;
}

h2p_stats_t *h2p_stats_find(h2p_stats_kind_t kind, const char *name)
{
    pthread_mutex_lock(&registry.lock);
    h2p_stats_t *stats = find_locked(kind, name);
    pthread_mutex_unlock(&registry.lock);
    return stats;
}

h2p_stats_t *h2p_stats_get(h2p_stats_kind_t kind, const char *name)
{
    h2p_counters_init(); /* (idempotent: the first caller sizes the slots) */
    pthread_mutex_lock(&registry.lock);
    h2p_stats_t *stats = find_locked(kind, name);
    if (stats == NULL) {
        stats = new_stats(kind, name);
        stats->next = registry.all;
        registry.all = stats;
    }
    pthread_mutex_unlock(&registry.lock);
    return stats;
}

void h2p_traffic_sum(const h2p_stats_t *stats, h2p_traffic_t *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i != registry.num_slots; ++i) {
        const h2p_traffic_slot_t *slot = stats->slots + i;
        out->started += atomic_load_explicit(&slot->started, memory_order_relaxed);
        out->ended += atomic_load_explicit(&slot->ended, memory_order_relaxed);
        for (size_t c = 0; c != H2P_STATUS_CLASSES; ++c)
            out->by_class[c] += atomic_load_explicit(&slot->by_class[c], memory_order_relaxed);
        for (size_t b = 0; b != H2P_LATENCY_BUCKETS; ++b)
            out->latency[b] += atomic_load_explicit(&slot->latency[b], memory_order_relaxed);
        out->latency_sum_us += atomic_load_explicit(&slot->latency_sum_us, memory_order_relaxed);
    }
    /* a request counted as started by one thread's slot may be seen ended before it: never below 0 */
    if (out->ended > out->started)
        out->started = out->ended;
}

void h2p_counters_connections(uint64_t *accepted, uint64_t *refused)
{
    *accepted = *refused = 0;
    for (size_t i = 0; i != registry.num_slots; ++i) {
        *accepted += atomic_load_explicit(&registry.conns[i].accepted, memory_order_relaxed);
        *refused += atomic_load_explicit(&registry.conns[i].refused, memory_order_relaxed);
    }
}

void h2p_counters_connection_accepted(void)
{
    h2p_slot_add(&registry.conns[h2p_counters_slot()].accepted, 1);
}

void h2p_counters_connection_refused(void)
{
    h2p_slot_add(&registry.conns[h2p_counters_slot()].refused, 1);
}

/* ---- the request path -------------------------------------------------------------------- */

/* A front-end thread's share (h2p_thread_t.counters). */
typedef struct h2p_counters_thread {
    h2o_multithread_receiver_t receiver; /* collection requests from the supervisor */
    h2o_linklist_t in_flight;
    h2p_thread_t *thread;
} thread_state_t;

static thread_state_t **thread_states; /* by thread index, for the supervisor to address them */

static void observe(h2p_stats_t *stats, size_t slot_index, unsigned status_class, uint64_t elapsed_us)
{
    h2p_traffic_slot_t *slot = stats->slots + slot_index;
    size_t b = 0;
    while (b != H2P_LATENCY_BUCKETS - 1 && elapsed_us > h2p_latency_bounds_us[b])
        ++b;
    h2p_slot_add(&slot->ended, 1);
    h2p_slot_add(&slot->by_class[status_class], 1);
    h2p_slot_add(&slot->latency[b], 1);
    h2p_slot_add(&slot->latency_sum_us, elapsed_us);
}

void h2p_request_track_begin(h2p_request_track_t *track, h2o_req_t *req)
{
    *track = (h2p_request_track_t){.req = req, .started_us = monotonic_us(), .stage = H2P_STAGE_MODULES};
    h2p_thread_t *th = h2p_this_thread;
    if (th != NULL && th->counters != NULL)
        h2o_linklist_insert(&th->counters->in_flight, &track->link);
    h2p_slot_add(&h2p_server_stats->slots[h2p_counters_slot()].started, 1);
}

void h2p_request_track_site(h2p_request_track_t *track, h2p_stats_t *site)
{
    track->site = site;
    h2p_slot_add(&site->slots[h2p_counters_slot()].started, 1);
}

void h2p_request_track_pool(h2p_request_track_t *track, h2p_stats_t *pool)
{
    if (track->pool == pool)
        return;
    track->pool = pool;
    h2p_slot_add(&pool->slots[h2p_counters_slot()].started, 1);
}

void h2p_request_track_end(h2p_request_track_t *track)
{
    if (h2o_linklist_is_linked(&track->link))
        h2o_linklist_unlink(&track->link);
    uint64_t elapsed = monotonic_us() - track->started_us;
    int status = track->req->res.status;
    unsigned status_class = status >= 100 && status < 600 ? (unsigned)status / 100 : 0;
    size_t slot = h2p_counters_slot();
    observe(h2p_server_stats, slot, status_class, elapsed);
    if (track->site != NULL)
        observe(track->site, slot, status_class, elapsed);
    if (track->pool != NULL)
        observe(track->pool, slot, status_class, elapsed);
}

/* ---- collecting the requests in flight ------------------------------------------------------ */

struct h2p_inflight_collect {
    void (*done)(json_t *requests, void *data);
    void *data;
    size_t pending;
    int abandoned;
    json_t *requests;
};

typedef struct collect_message {
    h2o_multithread_message_t super;
    h2p_inflight_collect_t *collect;
    json_t *requests; /* the thread's answer */
} collect_message_t;

static struct {
    h2o_evloop_t *loop;
    h2o_multithread_queue_t *queue;
    h2o_multithread_receiver_t answers;
} supervisor;

static json_t *describe_peer(h2o_req_t *req)
{
    struct sockaddr_storage ss;
    socklen_t len = req->conn->callbacks->get_peername != NULL ? req->conn->callbacks->get_peername(req->conn, (void *)&ss) : 0;
    char text[64];
    if (len == 0 || h2p_format_address((struct sockaddr *)&ss, text, sizeof(text)) != 0)
        return json_null();
    return json_string(text);
}

#define MAX_URL_SHOWN 1024

static json_t *describe_request(h2p_request_track_t *track, uint64_t now_us, size_t thread_index)
{
    h2o_req_t *req = track->req;
    h2o_iovec_t path = req->input.path, authority = req->input.authority;
    char url[MAX_URL_SHOWN];
    int len = snprintf(url, sizeof(url), "%.*s%.*s", (int)(authority.len < 256 ? authority.len : 256), authority.base,
                       (int)(path.len < MAX_URL_SHOWN ? path.len : MAX_URL_SHOWN), path.base);
    if (len >= (int)sizeof(url))
        len = sizeof(url) - 1;
    json_t *r = json_object();
    json_object_set_new(r, "site", track->site != NULL ? json_string(track->site->name) : json_null());
    json_object_set_new(r, "method",
                        h2p_json_bytes(req->input.method.base, req->input.method.len < 32 ? req->input.method.len : 32));
    json_object_set_new(r, "url", h2p_json_bytes(url, (size_t)len));
    json_object_set_new(r, "client", describe_peer(req));
    json_object_set_new(r, "protocol",
                        json_string(req->version >= 0x200   ? "HTTP/2"
                                    : req->version == 0x100 ? "HTTP/1.0"
                                                            : "HTTP/1.1"));
    json_object_set_new(r, "pool", track->pool != NULL ? json_string(track->pool->name) : json_null());
    json_object_set_new(r, "worker_pid", track->worker_pid > 0 ? json_integer(track->worker_pid) : json_null());
    json_object_set_new(r, "stage", json_string(track->stage));
    json_object_set_new(r, "elapsed_ms", json_integer((json_int_t)((now_us - track->started_us) / 1000)));
    json_object_set_new(r, "thread", json_integer((json_int_t)thread_index));
    return r;
}

/* On a front-end thread: describe its requests, send the answer back to the supervisor. */
static void on_collect_request(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    thread_state_t *state = H2O_STRUCT_FROM_MEMBER(thread_state_t, receiver, receiver);
    uint64_t now = monotonic_us();
    while (!h2o_linklist_is_empty(messages)) {
        collect_message_t *msg = H2O_STRUCT_FROM_MEMBER(collect_message_t, super.link, messages->next);
        h2o_linklist_unlink(&msg->super.link);
        msg->requests = json_array();
        for (h2o_linklist_t *l = state->in_flight.next; l != &state->in_flight; l = l->next)
            json_array_append_new(
                msg->requests, describe_request(H2O_STRUCT_FROM_MEMBER(h2p_request_track_t, link, l), now, state->thread->index));
        h2o_multithread_send_message(&supervisor.answers, &msg->super);
    }
}

static void finish_collect(h2p_inflight_collect_t *collect)
{
    if (!collect->abandoned)
        collect->done(collect->requests, collect->data);
    else
        json_decref(collect->requests);
    free(collect);
}

/* On the supervisor: one thread's answer. */
static void on_collect_answer(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    while (!h2o_linklist_is_empty(messages)) {
        collect_message_t *msg = H2O_STRUCT_FROM_MEMBER(collect_message_t, super.link, messages->next);
        h2o_linklist_unlink(&msg->super.link);
        h2p_inflight_collect_t *collect = msg->collect;
        json_array_extend(collect->requests, msg->requests);
        json_decref(msg->requests);
        free(msg);
        if (--collect->pending == 0)
            finish_collect(collect);
    }
}

h2p_inflight_collect_t *h2p_inflight_collect(void (*done)(json_t *requests, void *data), void *data)
{
    h2p_inflight_collect_t *collect = h2p_calloc(1, sizeof(*collect));
    collect->done = done;
    collect->data = data;
    collect->requests = json_array();
    for (size_t i = 0; supervisor.queue != NULL && thread_states != NULL && i != h2p_server.num_threads; ++i)
        if (thread_states[i] != NULL)
            collect->pending++;
    if (collect->pending == 0) { /* no front-end thread runs: nothing is in flight */
        finish_collect(collect);
        return NULL;
    }
    for (size_t i = 0; i != h2p_server.num_threads; ++i) {
        if (thread_states[i] == NULL)
            continue;
        collect_message_t *msg = h2p_calloc(1, sizeof(*msg));
        msg->collect = collect;
        h2o_multithread_send_message(&thread_states[i]->receiver, &msg->super);
    }
    return collect;
}

void h2p_inflight_abandon(h2p_inflight_collect_t *collect)
{
    if (collect != NULL)
        collect->abandoned = 1;
}

void h2p_counters_init_thread(h2p_thread_t *th)
{
    thread_state_t *state = h2p_calloc(1, sizeof(*state));
    state->thread = th;
    h2o_linklist_init_anchor(&state->in_flight);
    h2o_multithread_register_receiver(th->queue, &state->receiver, on_collect_request);
    th->counters = state;
    pthread_mutex_lock(&registry.lock);
    if (thread_states == NULL)
        thread_states = h2p_calloc(h2p_server.num_threads, sizeof(*thread_states));
    thread_states[th->index] = state;
    pthread_mutex_unlock(&registry.lock);
}

void h2p_counters_dispose_thread(h2p_thread_t *th)
{
    /* the state stays: a collection request may still be on its way to this thread's queue, which
     * outlives the thread (it is never destroyed) */
    th->counters = NULL;
}

/* ---- history ------------------------------------------------------------------------------ */

static struct {
    h2o_timeout_t timeout;
    h2o_timeout_entry_t entry;
    int running;
    h2p_traffic_t last;
    uint64_t last_us;
    size_t head, count;
    double time[H2P_HISTORY_SECONDS], rps[H2P_HISTORY_SECONDS], eps[H2P_HISTORY_SECONDS], p50[H2P_HISTORY_SECONDS],
        p99[H2P_HISTORY_SECONDS];
    uint64_t connections[H2P_HISTORY_SECONDS];
} history;

void h2p_poolmgr_sample_history(void); /* poolmgr/pool_status.c */

double h2p_latency_quantile_ms(const uint64_t *buckets, double q)
{
    uint64_t total = 0;
    for (size_t b = 0; b != H2P_LATENCY_BUCKETS; ++b)
        total += buckets[b];
    if (total == 0)
        return -1;
    double rank = q * (double)total, below = 0;
    for (size_t b = 0; b != H2P_LATENCY_BUCKETS; ++b) {
        if (buckets[b] == 0 || below + (double)buckets[b] < rank) {
            below += (double)buckets[b];
            continue;
        }
        if (b == H2P_LATENCY_BUCKETS - 1) /* beyond the last bound: that bound is all we know */
            return (double)h2p_latency_bounds_us[b - 1] / 1000;
        double lower = b == 0 ? 0 : (double)h2p_latency_bounds_us[b - 1], upper = (double)h2p_latency_bounds_us[b];
        return (lower + (upper - lower) * (rank - below) / (double)buckets[b]) / 1000;
    }
    return (double)h2p_latency_bounds_us[H2P_LATENCY_BUCKETS - 2] / 1000;
}

static void sample(void)
{
    h2p_traffic_t now;
    h2p_traffic_sum(h2p_server_stats, &now);
    uint64_t now_us = monotonic_us();
    double seconds = (double)(now_us - history.last_us) / 1e6;
    if (history.last_us != 0 && seconds > 0) {
        uint64_t delta[H2P_LATENCY_BUCKETS];
        for (size_t b = 0; b != H2P_LATENCY_BUCKETS; ++b)
            delta[b] = now.latency[b] - history.last.latency[b];
        struct timeval tv;
        gettimeofday(&tv, NULL);
        size_t i = history.head;
        history.time[i] = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
        history.rps[i] = (double)(now.ended - history.last.ended) / seconds;
        history.eps[i] = (double)(now.by_class[5] - history.last.by_class[5]) / seconds;
        history.p50[i] = h2p_latency_quantile_ms(delta, 0.5);
        history.p99[i] = h2p_latency_quantile_ms(delta, 0.99);
        history.connections[i] = atomic_load(&h2p_server.num_connections);
        history.head = (history.head + 1) % H2P_HISTORY_SECONDS;
        if (history.count < H2P_HISTORY_SECONDS)
            history.count++;
    }
    history.last = now;
    history.last_us = now_us;
}

static void on_sample_tick(h2o_timeout_entry_t *entry)
{
    sample();
    h2p_poolmgr_sample_history();
    h2o_timeout_link(supervisor.loop, &history.timeout, &history.entry);
}

void h2p_counters_start_sampling(h2o_evloop_t *loop)
{
    supervisor.loop = loop;
    supervisor.queue = h2o_multithread_create_queue(loop);
    h2o_multithread_register_receiver(supervisor.queue, &supervisor.answers, on_collect_answer);
    h2o_timeout_init(loop, &history.timeout, 1000);
    history.entry.cb = on_sample_tick;
    h2o_timeout_link(loop, &history.timeout, &history.entry);
    history.running = 1;
    sample();
}

void h2p_counters_stop_sampling(void)
{
    if (!history.running)
        return;
    if (h2o_timeout_is_linked(&history.entry))
        h2o_timeout_unlink(&history.entry);
    history.running = 0;
}

static json_t *number_or_null(double v)
{
    return v < 0 ? json_null() : json_real(v);
}

json_t *h2p_counters_history_json(void)
{
    json_t *time = json_array(), *rps = json_array(), *eps = json_array(), *p50 = json_array(), *p99 = json_array(),
           *conns = json_array();
    for (size_t k = 0; k != history.count; ++k) {
        size_t i = (history.head + H2P_HISTORY_SECONDS - history.count + k) % H2P_HISTORY_SECONDS;
        json_array_append_new(time, json_real(history.time[i]));
        json_array_append_new(rps, json_real(history.rps[i]));
        json_array_append_new(eps, json_real(history.eps[i]));
        json_array_append_new(p50, number_or_null(history.p50[i]));
        json_array_append_new(p99, number_or_null(history.p99[i]));
        json_array_append_new(conns, json_integer((json_int_t)history.connections[i]));
    }
    return json_pack("{s:i, s:o, s:o, s:o, s:o, s:o, s:o}", "interval_s", 1, "time", time, "requests_per_s", rps, "errors_per_s",
                     eps, "p50_ms", p50, "p99_ms", p99, "connections", conns);
}

double h2p_counters_recent_rate(unsigned seconds)
{
    if (history.count == 0)
        return 0;
    if (seconds > history.count)
        seconds = (unsigned)history.count;
    double sum = 0;
    for (unsigned k = 1; k <= seconds; ++k)
        sum += history.rps[(history.head + H2P_HISTORY_SECONDS - k) % H2P_HISTORY_SECONDS];
    return sum / seconds;
}

/* ---- JSON ---------------------------------------------------------------------------------- */

json_t *h2p_json_bytes(const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    char *buf = h2o_mem_alloc(len * 3 + 1), *p = buf;
    for (size_t i = 0; i != len; ++i) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f) {
            *p++ = '%';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 15];
        } else {
            *p++ = (char)c;
        }
    }
    json_t *j = json_stringn(buf, (size_t)(p - buf));
    free(buf);
    return j;
}

json_t *h2p_traffic_json(const h2p_traffic_t *t)
{
    json_t *classes = json_object(), *buckets = json_array(), *bounds = json_array();
    for (size_t c = 0; c != H2P_STATUS_CLASSES; ++c)
        json_object_set_new(classes, h2p_status_class_names[c], json_integer((json_int_t)t->by_class[c]));
    for (size_t b = 0; b != H2P_LATENCY_BUCKETS; ++b) {
        json_array_append_new(buckets, json_integer((json_int_t)t->latency[b]));
        if (b != H2P_LATENCY_BUCKETS - 1)
            json_array_append_new(bounds, json_real((double)h2p_latency_bounds_us[b] / 1e6));
    }
    return json_pack("{s:I, s:I, s:o, s:{s:o, s:o, s:f, s:o, s:o}}", "requests_total", (json_int_t)t->ended, "in_flight",
                     (json_int_t)(t->started - t->ended), "by_class", classes, "latency", "bounds_s", bounds, "counts", buckets,
                     "sum_s", (double)t->latency_sum_us / 1e6, "p50_ms", number_or_null(h2p_latency_quantile_ms(t->latency, 0.5)),
                     "p99_ms", number_or_null(h2p_latency_quantile_ms(t->latency, 0.99)));
}

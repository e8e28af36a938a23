/*
 * failed_request_tracing: IIS's Failed Request Tracing (FREB).  A request of the scope whose
 * final status is in one of the `status` ranges, or that took at least `time_taken`, leaves one
 * JSON file in `dir` (default server.log_dir/<site>/FailedReqLogFiles) that tells what happened
 * to it: each step of the pipeline (the request-phase modules, the content handler, the
 * response) with its start, its duration and its outcome, the pool and worker that served it,
 * the request and response headers (credentials redacted: Authorization, Proxy-Authorization
 * and Cookie in the request, Set-Cookie in the response).  The newest `max_files` are kept.
 *
 * The router times each handler of a scope that traces (h2p_trace_step_begin/end, a clock read
 * per step); a scope without this module pays one test per request.  Whether a request is
 * traced is known only at its end (time taken): the h2o logger decides then, builds the JSON on
 * the event loop and hands it to the log writer's thread, which writes the file.
 */
#include <jansson.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "frontend/log.h"
#include "frontend/alloc.h"
#include "frontend/log_writer.h"
#include "frontend/router.h"
#include "native-modules/module.h"
#include "native-modules/failed_request_tracing.h"

#define MAX_STEPS 32 /* steps beyond it (rewrites into deep chains) are counted, not kept */

typedef struct trace_step {
    const char *module; /* NULL: the content handler */
    int64_t begin_ns, end_ns;
    int answered;
    size_t inner_steps; /* steps that ran inside this one (a rewrite goes on from its handler) */
} trace_step_t;

struct h2p_trace {
    int64_t start_ns, response_start_ns; /* CLOCK_MONOTONIC; 0 = no response began */
    size_t num_steps, steps_lost;
    trace_step_t steps[MAX_STEPS];
};

typedef struct trace_logger {
    h2o_logger_t super;
    int target;
    const char *site;
    const h2p_status_range_t *status;
    size_t num_status;
    uint64_t time_taken_ms; /* 0 = no rule on time */
} trace_logger_t;

static int64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the router's side: steps ------------------------------------------------------------- */

/* The request's trace: the module's state of the request (NULL until a step is traced) */
static struct h2p_trace *trace_of(h2p_request_t *r)
{
    return H2P_MODULE_REQUEST(r, failed_request_tracing);
}

int h2p_trace_step_begin(h2p_request_t *r, const char *module)
{
    struct h2p_trace *trace = H2P_MODULE_REQUEST(r, failed_request_tracing);
    int64_t now = monotonic_ns();
    if (trace == NULL) {
        trace = H2P_MODULE_REQUEST(r, failed_request_tracing) = h2o_mem_alloc_pool(&r->req->pool, sizeof(*trace));
        r->traced = 1;
        memset(trace, 0, sizeof(*trace));
        trace->start_ns = now;
    }
    if (trace->num_steps == MAX_STEPS) {
        trace->steps_lost++;
        return -1;
    }
    trace->steps[trace->num_steps] = (trace_step_t){module, now, 0, 0, 0};
    return (int)trace->num_steps++;
}

void h2p_trace_step_end(h2p_request_t *r, int step, int answered)
{
    if (step < 0)
        return;
    trace_step_t *s = trace_of(r)->steps + step;
    s->end_ns = monotonic_ns();
    s->answered = answered;
    s->inner_steps = trace_of(r)->num_steps - (size_t)step - 1;
}

/* ---- the trace as JSON ---------------------------------------------------------------------- */

/* A JSON string of request bytes: UTF-8 as it is, anything else with its non-ASCII bytes as %XX. */
static json_t *json_bytes(const char *s, size_t len)
{
    json_t *j = json_stringn(s, len);
    if (j != NULL)
        return j;
    char *escaped = h2o_mem_alloc(len * 3 + 1), *p = escaped;
    for (size_t i = 0; i != len; ++i) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80)
            p += sprintf(p, "%%%02X", c);
        else
            *p++ = (char)c;
    }
    j = json_stringn(escaped, (size_t)(p - escaped));
    free(escaped);
    return j;
}

static json_t *json_iovec(h2o_iovec_t v)
{
    return json_bytes(v.base, v.len);
}

/* Credentials never reach a trace: the value goes, an Authorization scheme stays ("Basic [redacted]"). */
static json_t *header_value(const h2o_header_t *h, int response)
{
    h2o_iovec_t name = *h->name, value = h->value;
    if (response ? h2o_lcstris(name.base, name.len, H2O_STRLIT("set-cookie"))
                 : h2o_lcstris(name.base, name.len, H2O_STRLIT("cookie"))) {
        return json_string("[redacted]");
    }
    if (!response && (h2o_lcstris(name.base, name.len, H2O_STRLIT("authorization")) ||
                      h2o_lcstris(name.base, name.len, H2O_STRLIT("proxy-authorization")))) {
        const char *space = memchr(value.base, ' ', value.len);
        if (space == NULL)
            return json_string("[redacted]");
        json_t *scheme = json_bytes(value.base, (size_t)(space - value.base));
        json_t *text = json_sprintf("%s [redacted]", json_string_value(scheme));
        json_decref(scheme);
        return text;
    }
    return json_iovec(value);
}

static json_t *headers_json(const h2o_headers_t *headers, int response)
{
    json_t *list = json_array();
    for (size_t i = 0; i != headers->size; ++i) {
        const h2o_header_t *h = headers->entries + i;
        json_t *pair = json_object();
        json_object_set_new(pair, "name", json_iovec(*h->name));
        json_object_set_new(pair, "value", header_value(h, response));
        json_array_append_new(list, pair);
    }
    return list;
}

static json_t *address_json(h2o_conn_t *conn, int peer)
{
    struct sockaddr_storage ss;
    char text[INET6_ADDRSTRLEN + 8] = "-";
    socklen_t len = peer ? conn->callbacks->get_peername(conn, (struct sockaddr *)&ss)
                         : conn->callbacks->get_sockname(conn, (struct sockaddr *)&ss);
    if (len != 0 && ss.ss_family == AF_INET) {
        struct sockaddr_in *sin = (void *)&ss;
        inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
        snprintf(text + strlen(text), 8, ":%u", ntohs(sin->sin_port));
    } else if (len != 0 && ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (void *)&ss;
        text[0] = '[';
        inet_ntop(AF_INET6, &sin6->sin6_addr, text + 1, sizeof(text) - 1);
        snprintf(text + strlen(text), 8, "]:%u", ntohs(sin6->sin6_port));
    }
    return json_string(text);
}

/* What served the request, for the content handler's step. */
static const char *content_name(h2p_request_t *r)
{
    if (r->scope == NULL || r->served.from.base == NULL)
        return "content";
    if (r->served.mapping < 0)
        return "static";
    return r->scope->app->handlers[r->served.mapping].cgi ? "cgi" : "fastcgi";
}

static json_t *step_outcome(h2p_request_t *r, const trace_step_t *s, unsigned status)
{
    if (!s->answered)
        return json_string("passed");
    if (s->inner_steps != 0)
        return json_string("changed the URL: the steps after it ran inside it");
    if (s->module != NULL && r->ended_by != NULL && strcmp(r->ended_by, s->module) == 0)
        return json_sprintf("ended the request: %u.%u", r->status, r->substatus);
    return json_sprintf("answered: %u", status);
}

static json_t *steps_json(h2p_request_t *r, const struct h2p_trace *trace, int64_t end_ns, unsigned status)
{
    json_t *steps = json_array();
    for (size_t i = 0; i != trace->num_steps; ++i) {
        const trace_step_t *s = trace->steps + i;
        json_t *step = json_object();
        json_object_set_new(step, "module", json_string(s->module != NULL ? s->module : content_name(r)));
        json_object_set_new(step, "start_us", json_integer((s->begin_ns - trace->start_ns) / 1000));
        json_object_set_new(step, "duration_us", json_integer(((s->end_ns != 0 ? s->end_ns : end_ns) - s->begin_ns) / 1000));
        json_object_set_new(step, "outcome", step_outcome(r, s, status));
        if (s->module == NULL && r->pool_name != NULL) {
            json_object_set_new(step, "pool", json_string(r->pool_name));
            json_object_set_new(step, "worker_pid", json_integer(r->worker_pid));
        }
        json_array_append_new(steps, step);
    }
    if (trace->response_start_ns != 0) {
        static const char *ends[] = {"the client left before the response was sent in full", "sent in full",
                                     "cut off: its producer failed mid-body"};
        json_t *step = json_object();
        json_object_set_new(step, "module", json_string("response"));
        json_object_set_new(step, "start_us", json_integer((trace->response_start_ns - trace->start_ns) / 1000));
        json_object_set_new(step, "duration_us", json_integer((end_ns - trace->response_start_ns) / 1000));
        json_object_set_new(step, "outcome", json_sprintf("%u: %s", status, ends[r->response_end]));
        json_array_append_new(steps, step);
    }
    return steps;
}

static json_t *reasons_json(const trace_logger_t *self, unsigned status, uint64_t taken_ms)
{
    json_t *why = json_array();
    for (size_t i = 0; i != self->num_status; ++i)
        if (status >= self->status[i].from && status <= self->status[i].to)
            json_array_append_new(why, json_sprintf("status %u is in %u-%u", status, self->status[i].from, self->status[i].to));
    if (self->time_taken_ms != 0 && taken_ms >= self->time_taken_ms)
        json_array_append_new(why, json_sprintf("time taken %llu ms >= %llu ms", (unsigned long long)taken_ms,
                                                (unsigned long long)self->time_taken_ms));
    return why;
}

static json_t *trace_json(trace_logger_t *self, h2o_req_t *req, h2p_request_t *r, const struct timeval *now, uint64_t taken_ms,
                          json_t *why)
{
    unsigned status = h2p_request_log_status(req);
    const struct timeval *begin =
        req->timestamps.request_begin_at.tv_sec != 0 ? &req->timestamps.request_begin_at : &req->processed_at.at;
    struct tm tm;
    char started[40];
    time_t begin_sec = begin->tv_sec;
    gmtime_r(&begin_sec, &tm);
    size_t n = strftime(started, sizeof(started), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(started + n, sizeof(started) - n, ".%03ldZ", (long)begin->tv_usec / 1000);

    json_t *o = json_object();
    json_object_set_new(o, "site", json_string(self->site));
    json_object_set_new(o, "started", json_string(started));
    json_object_set_new(o, "method", json_iovec(req->input.method));
    json_object_set_new(o, "url", json_iovec(req->input.path));
    json_object_set_new(o, "host", json_iovec(req->input.authority));
    json_object_set_new(o, "protocol", json_sprintf("HTTP/%d.%d", req->version >> 8, req->version & 0xff));
    json_object_set_new(o, "client", address_json(req->conn, 1));
    json_object_set_new(o, "server", address_json(req->conn, 0));
    if (r != NULL && r->served.from.base != NULL)
        json_object_set_new(o, "path_served", json_iovec(r->served.path));
    if (r != NULL && r->remote_user.len != 0)
        json_object_set_new(o, "user", json_iovec(r->remote_user));
    json_object_set_new(o, "status", json_integer(status));
    json_object_set_new(o, "substatus", json_integer(r != NULL && r->status == status ? r->substatus : 0));
    if (r != NULL && r->ended_by != NULL)
        json_object_set_new(o, "ended_by", json_string(r->ended_by));
    json_object_set_new(o, "time_taken_ms", json_integer((json_int_t)taken_ms));
    json_object_set_new(o, "traced_because", why);
    if (r != NULL && r->pool_name != NULL) {
        json_object_set_new(o, "pool", json_string(r->pool_name));
        json_object_set_new(o, "worker_pid", json_integer(r->worker_pid));
    }
    if (r != NULL && trace_of(r) != NULL) {
        int64_t end_ns = monotonic_ns();
        json_object_set_new(o, "steps", steps_json(r, trace_of(r), end_ns, status));
        if (trace_of(r)->steps_lost != 0)
            json_object_set_new(o, "steps_not_kept", json_integer((json_int_t)trace_of(r)->steps_lost));
    }
    json_object_set_new(o, "request_headers", headers_json(&req->headers, 0));
    json_object_set_new(o, "response_headers", headers_json(&req->res.headers, 1));
    return o;
}

/* ---- the module ----------------------------------------------------------------------------- */

static void on_log_access(h2o_logger_t *_self, h2o_req_t *req)
{
    trace_logger_t *self = (void *)_self;
    struct timeval now;
    gettimeofday(&now, NULL);
    uint64_t taken_ms = h2p_request_time_taken_ms(req, &now);
    json_t *why = reasons_json(self, h2p_request_log_status(req), taken_ms);
    if (json_array_size(why) == 0) {
        json_decref(why);
        return;
    }
    json_t *trace = trace_json(self, req, h2p_request_of(req), &now, taken_ms, why);
    char *text = json_dumps(trace, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(trace);
    if (text != NULL) {
        size_t len = strlen(text);
        text[len] = '\n'; /* (json_dumps leaves no newline; the NUL is not written) */
        h2p_log_writer_append(self->target, now.tv_sec, text, len + 1);
        free(text);
    }
}

static void on_setup_ostream(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    h2p_request_t *r = h2p_request_of(req);
    if (r != NULL && trace_of(r) != NULL && trace_of(r)->response_start_ns == 0)
        trace_of(r)->response_start_ns = monotonic_ns();
    h2o_setup_next_ostream(req, h2p_request_watch_response(req, slot));
}

static const h2p_status_range_t server_errors = {500, 599};

static int on_config(h2p_module_scope_t *ms)
{
    const h2p_failed_request_tracing_conf_t *settings = ms->settings->failed_request_tracing;
    char dir[PATH_MAX];
    if (!settings->enabled)
        return 0;
    if (settings->dir != NULL) {
        snprintf(dir, sizeof(dir), "%s", settings->dir);
    } else if (ms->server->log_dir != NULL) {
        snprintf(dir, sizeof(dir), "%s/%s/%s", ms->server->log_dir, ms->site->name, H2P_TRACE_DEFAULT_SUBDIR);
    } else {
        h2p_warn(ms->site->name, "failed_request_tracing: no `dir` and no server.log_dir: no traces are written");
        return 0;
    }
    h2p_log_target_conf_t target = {.dir = dir, .kind = H2P_LOG_FILE_TRACES, .max_files = settings->max_files};
    int id = h2p_log_writer_target(&target);
    if (id < 0) {
        snprintf(ms->err, ms->errlen, "site %s: failed_request_tracing: too many distinct trace settings in this process",
                 ms->site->name);
        return -1;
    }
    ms->scope->traced = 1;
    h2o_filter_t *filter = h2o_create_filter(ms->pathconf, sizeof(*filter));
    filter->on_setup_ostream = on_setup_ostream;
    trace_logger_t *logger = (void *)h2o_create_logger(ms->pathconf, sizeof(*logger));
    logger->super.log_access = on_log_access;
    logger->target = id;
    logger->site = ms->site->name;
    logger->time_taken_ms = settings->time_taken_ms;
    logger->status = settings->status;
    logger->num_status = settings->num_status;
    if (settings->num_status == 0 && settings->time_taken_ms == 0) { /* no rule: server errors, as one would mean */
        logger->status = &server_errors;
        logger->num_status = 1;
    }
    return 0;
}

const h2p_module_t h2p_module_failed_request_tracing = {"failed_request_tracing", H2P_PHASE_RESPONSE, on_config};

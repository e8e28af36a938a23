/*
 * logging: IIS's W3C extended log, one file set per site under server.log_dir/<site>/
 * (u_exYYMMDD.log, UTC), with IIS's default fields in IIS's order:
 *
 *   date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent)
 *   cs(Referer) sc-status sc-substatus sc-win32-status time-taken
 *
 * The line is written when the request is disposed, i.e. once the response ended (an h2o
 * logger on the scope's pathconf: libh2o calls it for every request bound to the scope,
 * whatever answered it: a module, a content handler or libh2o itself).  A filter puts a watch
 * in the response chain to tell a complete response from one cut off (sc-win32-status).
 *
 * A request cannot forge a line or a field: every value is escaped (a space becomes '+', as
 * IIS writes it; control bytes, '"', '#' and non-ASCII bytes become %XX), so a line is always
 * 15 space-separated fields ending in one newline.
 *
 * Formatting happens on the event loop (a few hundred bytes); the line then goes to the
 * calling thread's buffer of frontend/log_writer.c, whose thread writes and rotates the files.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "frontend/alloc.h"
#include "frontend/log.h"
#include "frontend/log_writer.h"
#include "frontend/server.h"
#include "native-modules/module.h"
#include "native-modules/logging.h"

#define LINE_MAX_BYTES 16384
/* the most a field may take once escaped; a longer one is cut (the line stays well-formed) */
#define MAX_METHOD 64
#define MAX_URI 4096
#define MAX_USER 256
#define MAX_HEADER 2048

typedef struct logging_logger {
    h2o_logger_t super;
    int target;
    int json;
} logging_logger_t;

/* ---- per-thread caches: the time as text, and each connection's addresses ------------------- */

typedef struct clock_text {
    time_t sec;
    char date[11], time[9];
} clock_text_t;

#define ADDRESS_CACHE_SIZE 64 /* kept-alive connections on this loop, by id */

typedef struct address_cache_entry {
    h2o_conn_t *conn;
    uint64_t conn_id;
    char server_ip[INET6_ADDRSTRLEN], client_ip[INET6_ADDRSTRLEN];
    unsigned server_port;
} address_cache_entry_t;

/* The module's state on a front-end thread (H2P_MODULE_THREAD) */
typedef struct logging_thread {
    clock_text_t clock_text;
    address_cache_entry_t address_cache[ADDRESS_CACHE_SIZE];
    char line[LINE_MAX_BYTES];
} logging_thread_t;

static void init_thread(h2p_thread_t *th)
{
    H2P_MODULE_THREAD(th, logging) = h2p_calloc(1, sizeof(logging_thread_t));
}

static void dispose_thread(h2p_thread_t *th)
{
    free(H2P_MODULE_THREAD(th, logging));
    H2P_MODULE_THREAD(th, logging) = NULL;
}

static void update_clock_text(clock_text_t *clock_text, time_t sec)
{
    if (clock_text->sec == sec)
        return;
    struct tm tm;
    gmtime_r(&sec, &tm);
    strftime(clock_text->date, sizeof(clock_text->date), "%Y-%m-%d", &tm);
    strftime(clock_text->time, sizeof(clock_text->time), "%H:%M:%S", &tm);
    clock_text->sec = sec;
}

/* "192.0.2.7" (an IPv4 client of a dual-stack listener too), "2001:db8::1", or "-". */
static unsigned format_address(const struct sockaddr *sa, socklen_t len, char *out)
{
    strcpy(out, "-");
    if (len == 0)
        return 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const void *)sa;
        inet_ntop(AF_INET, &sin->sin_addr, out, INET6_ADDRSTRLEN);
        return ntohs(sin->sin_port);
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const void *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
            inet_ntop(AF_INET, sin6->sin6_addr.s6_addr + 12, out, INET6_ADDRSTRLEN);
        else
            inet_ntop(AF_INET6, &sin6->sin6_addr, out, INET6_ADDRSTRLEN);
        return ntohs(sin6->sin6_port);
    }
    return 0;
}

/* getsockname is a system call: a connection's addresses are looked up once per connection. */
static const address_cache_entry_t *addresses_of(logging_thread_t *state, h2o_conn_t *conn)
{
    address_cache_entry_t *e = state->address_cache + conn->id % ADDRESS_CACHE_SIZE;
    if (e->conn == conn && e->conn_id == conn->id)
        return e;
    struct sockaddr_storage ss;
    socklen_t len = conn->callbacks->get_sockname(conn, (struct sockaddr *)&ss);
    e->server_port = format_address((struct sockaddr *)&ss, len, e->server_ip);
    len = conn->callbacks->get_peername(conn, (struct sockaddr *)&ss);
    format_address((struct sockaddr *)&ss, len, e->client_ip);
    e->conn = conn;
    e->conn_id = conn->id;
    return e;
}

/* ---- escaping ------------------------------------------------------------------------------ */

static const char hex_digits[] = "0123456789ABCDEF";

static char *put_hex(char *p, unsigned char c)
{
    *p++ = '%';
    *p++ = hex_digits[c >> 4];
    *p++ = hex_digits[c & 15];
    return p;
}

/* A W3C field: never empty ("-"), never a blank, a control byte, '"', '#' or a non-ASCII byte. */
static char *put_w3c_field(char *p, const char *s, size_t len, size_t max)
{
    if (len == 0) {
        *p++ = '-';
        return p;
    }
    char *end = p + max;
    for (size_t i = 0; i != len && p + 3 <= end; ++i) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ')
            *p++ = '+';
        else if (c < 0x21 || c >= 0x7f || c == '"' || c == '#')
            p = put_hex(p, c);
        else
            *p++ = (char)c;
    }
    return p;
}

/* A JSON string: control bytes as \u00XX, non-ASCII bytes as %XX (a request's bytes need not
 * be UTF-8, and the line must stay valid JSON). */
static char *put_json_string(char *p, const char *s, size_t len, size_t max)
{
    char *end = p + max;
    *p++ = '"';
    for (size_t i = 0; i != len && p + 6 <= end; ++i) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            p += sprintf(p, "\\u%04x", c);
        } else if (c >= 0x80) {
            p = put_hex(p, c);
        } else {
            *p++ = (char)c;
        }
    }
    *p++ = '"';
    return p;
}

static h2o_iovec_t header_value(h2o_req_t *req, const h2o_token_t *token)
{
    ssize_t i = h2o_find_header(&req->headers, token, -1);
    return i != -1 ? req->headers.entries[i].value : h2o_iovec_init(NULL, 0);
}

/* ---- the line ------------------------------------------------------------------------------ */

typedef struct log_fields {
    h2o_iovec_t method, stem, query, user, user_agent, referer;
    const address_cache_entry_t *addresses;
    const clock_text_t *clock_text;
    unsigned status, substatus, win32_status;
    uint64_t time_taken;
} log_fields_t;

/* (the line is formatted by hand: snprintf cost more than everything else a line takes) */
static char *put_text(char *p, const char *s)
{
    size_t len = strlen(s);
    memcpy(p, s, len);
    return p + len;
}

static char *put_uint(char *p, uint64_t n)
{
    char digits[20];
    size_t len = 0;
    do {
        digits[len++] = (char)('0' + n % 10);
        n /= 10;
    } while (n != 0);
    while (len != 0)
        *p++ = digits[--len];
    return p;
}

static size_t format_w3c(char *line, const log_fields_t *f)
{
    char *p = line;
    memcpy(p, f->clock_text->date, 10);
    p[10] = ' ';
    memcpy(p + 11, f->clock_text->time, 8);
    p[19] = ' ';
    p = put_text(p + 20, f->addresses->server_ip);
    *p++ = ' ';
    p = put_w3c_field(p, f->method.base, f->method.len, MAX_METHOD);
    *p++ = ' ';
    p = put_w3c_field(p, f->stem.base, f->stem.len, MAX_URI);
    *p++ = ' ';
    p = put_w3c_field(p, f->query.base, f->query.len, MAX_URI);
    *p++ = ' ';
    p = put_uint(p, f->addresses->server_port);
    *p++ = ' ';
    p = put_w3c_field(p, f->user.base, f->user.len, MAX_USER);
    *p++ = ' ';
    p = put_text(p, f->addresses->client_ip);
    *p++ = ' ';
    p = put_w3c_field(p, f->user_agent.base, f->user_agent.len, MAX_HEADER);
    *p++ = ' ';
    p = put_w3c_field(p, f->referer.base, f->referer.len, MAX_HEADER);
    *p++ = ' ';
    p = put_uint(p, f->status);
    *p++ = ' ';
    p = put_uint(p, f->substatus);
    *p++ = ' ';
    p = put_uint(p, f->win32_status);
    *p++ = ' ';
    p = put_uint(p, f->time_taken);
    *p++ = '\n';
    return (size_t)(p - line);
}

static char *put_json_member(char *p, const char *name, h2o_iovec_t value, size_t max)
{
    p += sprintf(p, ",\"%s\":", name);
    if (value.len == 0)
        return p + sprintf(p, "null");
    return put_json_string(p, value.base, value.len, max);
}

static size_t format_json(char *line, const log_fields_t *f)
{
    char *p = line;
    p += sprintf(p, "{\"date\":\"%s\",\"time\":\"%s\",\"s-ip\":\"%s\"", f->clock_text->date, f->clock_text->time,
                 f->addresses->server_ip);
    p = put_json_member(p, "cs-method", f->method, MAX_METHOD);
    p = put_json_member(p, "cs-uri-stem", f->stem, MAX_URI);
    p = put_json_member(p, "cs-uri-query", f->query, MAX_URI);
    p += sprintf(p, ",\"s-port\":%u", f->addresses->server_port);
    p = put_json_member(p, "cs-username", f->user, MAX_USER);
    p += sprintf(p, ",\"c-ip\":\"%s\"", f->addresses->client_ip);
    p = put_json_member(p, "cs(User-Agent)", f->user_agent, MAX_HEADER);
    p = put_json_member(p, "cs(Referer)", f->referer, MAX_HEADER);
    p += sprintf(p, ",\"sc-status\":%u,\"sc-substatus\":%u,\"sc-win32-status\":%u,\"time-taken\":%llu}\n", f->status, f->substatus,
                 f->win32_status, (unsigned long long)f->time_taken);
    return (size_t)(p - line);
}

/*
 * sc-win32-status, as IIS fills it: 0 when the response was sent in full, 64
 * (ERROR_NETNAME_DELETED) when the client went away first, 1236 (ERROR_CONNECTION_ABORTED) when
 * the server cut it off (its worker failed mid-body).
 */
static unsigned win32_status(const h2p_request_t *r)
{
    switch (r != NULL ? r->response_end : H2P_RESPONSE_COMPLETE) {
    case H2P_RESPONSE_COMPLETE:
        return 0;
    case H2P_RESPONSE_CUT_OFF:
        return 1236;
    default:
        return 64;
    }
}

static void on_log_access(h2o_logger_t *_self, h2o_req_t *req)
{
    logging_logger_t *self = (void *)_self;
    logging_thread_t *state = H2P_MODULE_THREAD(h2p_this_thread, logging);
    h2p_request_t *r = h2p_request_of(req);
    struct timeval now;
    gettimeofday(&now, NULL);
    update_clock_text(&state->clock_text, now.tv_sec);

    /* the URL as the client sent it: a rewrite is internal (IIS logs the original URL too) */
    h2o_iovec_t path = req->input.path;
    const char *question = memchr(path.base, '?', path.len);
    size_t stem_len = question != NULL ? (size_t)(question - path.base) : path.len;
    log_fields_t f = {
        .method = req->input.method,
        .stem = h2o_iovec_init(path.base, stem_len),
        .query = question != NULL ? h2o_iovec_init(question + 1, path.len - stem_len - 1) : h2o_iovec_init(NULL, 0),
        .user = r != NULL ? r->remote_user : h2o_iovec_init(NULL, 0),
        .user_agent = header_value(req, H2O_TOKEN_USER_AGENT),
        .referer = header_value(req, H2O_TOKEN_REFERER),
        .addresses = addresses_of(state, req->conn),
        .clock_text = &state->clock_text,
        .status = h2p_request_log_status(req),
        .win32_status = win32_status(r),
        .time_taken = h2p_request_time_taken_ms(req, &now),
    };
    if (r != NULL && r->status == f.status)
        f.substatus = r->substatus;
    size_t len = self->json ? format_json(state->line, &f) : format_w3c(state->line, &f);
    h2p_log_writer_append(self->target, now.tv_sec, state->line, len);
}

static void on_setup_ostream(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    h2o_setup_next_ostream(req, h2p_request_watch_response(req, slot));
}

static h2p_log_rotation_t rotation_of(const char *name)
{
    if (strcmp(name, "hourly") == 0)
        return H2P_ROTATE_HOURLY;
    if (strcmp(name, "size") == 0)
        return H2P_ROTATE_SIZE;
    if (strcmp(name, "none") == 0)
        return H2P_ROTATE_NONE;
    return H2P_ROTATE_DAILY;
}

static int on_config(h2p_module_scope_t *ms)
{
    if (!ms->settings->logging->enabled || ms->server->log_dir == NULL)
        return 0; /* no log_dir: no access logs */
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof(dir), "%s/%s", ms->server->log_dir, ms->site->name) >= (int)sizeof(dir)) {
        snprintf(ms->err, ms->errlen, "site %s: logging: server.log_dir is too long", ms->site->name);
        return -1;
    }
    int json = strcmp(ms->settings->logging->format, "json") == 0;
    h2p_log_target_conf_t target = {
        .dir = dir,
        .kind = json ? H2P_LOG_FILE_JSON : H2P_LOG_FILE_W3C,
        .rotate = rotation_of(ms->settings->logging->rotate),
        .max_size = ms->settings->logging->max_size,
    };
    int id = h2p_log_writer_target(&target);
    if (id < 0) {
        snprintf(ms->err, ms->errlen, "site %s: logging: too many distinct log settings in this process", ms->site->name);
        return -1;
    }
    h2o_filter_t *filter = h2o_create_filter(ms->pathconf, sizeof(*filter));
    filter->on_setup_ostream = on_setup_ostream;
    logging_logger_t *logger = (void *)h2o_create_logger(ms->pathconf, sizeof(*logger));
    logger->super.log_access = on_log_access;
    logger->target = id;
    logger->json = json;
    return 0;
}

const h2p_module_t h2p_module_logging = {"logging", H2P_PHASE_RESPONSE, on_config, .init_thread = init_thread,
                                         .dispose_thread = dispose_thread};

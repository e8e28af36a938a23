/*
 * output_cache: IIS's output cache (the HTTP.sys kernel cache role), in memory.  Responses of
 * FastCGI, CGI and static files are kept per rule (`path` pattern, `duration`, `vary_by_query`,
 * `vary_by_headers`) in one store shared by every thread (cache_store.c).
 *
 * Two hooks:
 *  - the lookup, a request-phase handler placed last before the content handler: every module
 *    that can refuse, redirect or rewrite a request, or answer it per client (ip_restriction,
 *    authentication, authorization), has run, so a hit never skips an access check; a hit is
 *    answered there, before any pool or file is touched.
 *  - the store, a response-phase filter that sits right after compression in the response's way
 *    (its entry is the response as compressed for one coding), copying a cacheable response as
 *    it streams to its client.
 *
 * Keys: scheme, site, Host, the path served (after default documents and rewrites), the query
 * when vary_by_query, each vary_by_headers header, and the content coding compression would
 * pick for the client's Accept-Encoding: one entry per coding.  HTTP semantics: GET stores, GET
 * and HEAD are answered (HEAD from the GET entry), only 200; the worker's Cache-Control is
 * honoured (no-store, private, no-cache: not stored; s-maxage, else max-age, shorten the
 * duration) and so is its Vary (`*`: not stored; other headers: the entry answers only requests
 * with the values it was fetched with); a response that sets a cookie is never stored and a
 * request with Authorization never looks up nor stores; If-None-Match and If-Modified-Since are
 * answered 304 from the entry; every answer from the cache has an Age.
 *
 * Collapsed forwarding: the first GET that misses a key leads (goes to the application); GETs
 * and HEADs for that key that arrive meanwhile wait for its answer, each woken on its own
 * thread's loop by a message.  When the leader's response is not stored (not 200, not
 * cacheable, too big, client gone), the waiters go to the application themselves.
 *
 * Stale entries (RFC 5861; the rule's stale_while_revalidate and stale_if_error, or the worker's
 * Cache-Control directives of those names): an expired entry within its stale-while-revalidate
 * bound is answered at once while one background request (the refresh: see below) fetches it
 * again as the leader of its key; one within its stale-if-error bound is kept by the request that
 * goes to the application, and answered instead of a 502, 503 or 504.  Both are answered only
 * where a fresh entry would be (after every access check, same key, same Vary values).
 */
#include <fnmatch.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "frontend/alloc.h"
#include "frontend/router.h"
#include "handlers/content.h"
#include "handlers/static.h"
#include "native-modules/cache_store.h"
#include "native-modules/compression.h"
#include "native-modules/module.h"
#include "native-modules/output_cache.h"

typedef struct lookup_handler {
    h2o_handler_t super;
    const h2p_modules_conf_t *settings; /* the scope's merged settings */
} lookup_handler_t;

/* A request a rule took; in the request's pool. */
typedef struct h2p_cache_request {
    h2o_req_t *req;
    h2p_cache_t *cache;
    const h2p_output_cache_rule_t *rule;
    h2o_handler_t *lookup; /* a woken waiter goes on with the handlers after it */
    h2o_iovec_t key;
    h2p_cache_pending_t *pending; /* this request leads the fetch of its key */
    h2p_cache_waiter_t *waiter;   /* this request waits for another's fetch */
    h2p_cache_entry_t *hit;       /* the entry being sent (held until the request ends) */
    h2p_cache_entry_t *stale;     /* an expired entry to answer with if the application fails (stale-if-error) */
    /* a static file: an entry stays valid while the file is the one that was read */
    const char *file_path;
    struct stat file_st;
    /* the copy of the response being stored */
    h2p_cache_body_t body;
    uint64_t ttl_ms, stale_while_revalidate_ms, stale_if_error_ms;
    unsigned storing : 1;
} h2p_cache_request_t;

typedef struct store_filter {
    h2o_filter_t super;
} store_filter_t;

typedef struct store_ostream {
    h2o_ostream_t super;
    h2p_cache_request_t *c;
} store_ostream_t;

/* The module's state on a front-end thread (H2P_MODULE_THREAD): where other threads' stores wake
 * this thread's requests waiting for the same entry */
typedef struct output_cache_thread {
    h2o_multithread_receiver_t wake_receiver;
} output_cache_thread_t;

/* ---- small helpers ---------------------------------------------------------------------- */

static int method_is(h2o_req_t *req, const char *name, size_t len)
{
    return h2o_memis(req->method.base, req->method.len, name, len);
}

static int has_request_header(h2o_req_t *req, const h2o_token_t *token)
{
    return h2o_find_header(&req->headers, token, -1) != -1;
}

/* A request header's value (repeated ones joined by ", "); 0 when absent. */
static int request_header(h2o_req_t *req, h2o_iovec_t name, h2o_iovec_t *value)
{
    const h2o_token_t *token = h2o_lookup_token(name.base, name.len);
    int found = 0;
    *value = h2o_iovec_init("", 0);
    for (ssize_t i = -1;;) {
        i = token != NULL ? h2o_find_header(&req->headers, token, i)
                          : h2o_find_header_by_str(&req->headers, name.base, name.len, i);
        if (i == -1)
            break;
        h2o_iovec_t v = req->headers.entries[i].value;
        *value = found ? h2o_concat(&req->pool, *value, h2o_iovec_init(H2O_STRLIT(", ")), v) : v;
        found = 1;
    }
    return found;
}

/* IIS-style patterns: without a slash (`*.php`) against the last segment, with one (`/api/...`) against
 * the whole path ('*' spans segments). */
static int rule_matches(const char *pattern, h2o_iovec_t path)
{
    char buf[path.len + 1];
    memcpy(buf, path.base, path.len);
    buf[path.len] = '\0';
    if (strchr(pattern, '/') != NULL)
        return fnmatch(pattern, buf, 0) == 0;
    const char *last = strrchr(buf, '/');
    return fnmatch(pattern, last != NULL ? last + 1 : buf, 0) == 0;
}

/* ---- the key ------------------------------------------------------------------------------ */

static h2o_iovec_t build_key(h2o_req_t *req, h2p_request_t *r, const h2p_output_cache_rule_t *rule, h2o_iovec_t path,
                             h2p_content_coding_t coding)
{
    static const char coding_names[] = {'i', 'g', 'b'};
    char head[64];
    int head_len = snprintf(head, sizeof(head), "%c%c%p|", req->scheme == &H2O_URL_SCHEME_HTTPS ? 's' : 'h', coding_names[coding],
                            (void *)r->site);
    h2o_iovec_t authority = h2o_strdup(&req->pool, req->input.authority.base, req->input.authority.len);
    for (size_t i = 0; i != authority.len; ++i)
        authority.base[i] = h2o_tolower(authority.base[i]);
    h2o_iovec_t key = h2o_concat(&req->pool, h2o_iovec_init(head, head_len), authority, h2o_iovec_init(H2O_STRLIT("|")), path);
    if (rule->vary_by_query) {
        h2o_iovec_t query = h2p_request_query(r);
        key = h2o_concat(&req->pool, key, h2o_iovec_init(H2O_STRLIT("?")), query);
    }
    for (size_t i = 0; i != rule->vary_by_headers.count; ++i) {
        h2o_iovec_t name = h2o_iovec_init(rule->vary_by_headers.items[i], strlen(rule->vary_by_headers.items[i])), value;
        int present = request_header(req, name, &value);
        /* "\n" cannot be in a path, a header name or a header value: the parts cannot run together */
        key = h2o_concat(&req->pool, key, h2o_iovec_init(H2O_STRLIT("\n")), name, h2o_iovec_init(present ? ":" : "!", 1), value);
    }
    return key;
}

typedef struct flush_filter {
    char site[32]; /* the key's "%p|" of the site: "" for every site */
    const char *path;
    size_t path_len;
    int prefix;
} flush_filter_t;

/* A key is "<scheme><coding><site>|<authority>|<path>[?query][\n<header>...]" (build_key). */
static int flush_matches(const char *key, size_t key_len, void *arg)
{
    const flush_filter_t *f = arg;
    size_t site_len = strlen(f->site);
    if (site_len != 0 && (key_len < 2 + site_len || memcmp(key + 2, f->site, site_len) != 0))
        return 0;
    if (f->path == NULL)
        return 1;
    const char *bar = memchr(key, '|', key_len), *path = bar != NULL ? memchr(bar + 1, '|', key_len - (bar + 1 - key)) : NULL;
    if (path == NULL)
        return 0;
    ++path;
    size_t len = 0;
    while (path + len != key + key_len && path[len] != '?' && path[len] != '\n')
        ++len;
    return f->prefix ? len >= f->path_len && memcmp(path, f->path, f->path_len) == 0
                     : len == f->path_len && memcmp(path, f->path, len) == 0;
}

size_t h2p_output_cache_flush(h2p_gen_t *gen, const h2p_site_rt_t *site, const char *path)
{
    flush_filter_t f = {.path = path};
    if (site != NULL)
        snprintf(f.site, sizeof(f.site), "%p|", (void *)site);
    if (path != NULL) {
        f.path_len = strlen(path);
        if ((f.prefix = f.path_len != 0 && path[f.path_len - 1] == '*'))
            --f.path_len;
    }
    return gen->cache != NULL ? h2p_cache_flush(gen->cache, site != NULL || path != NULL ? flush_matches : NULL, &f) : 0;
}

/* Whether a fresh entry answers this request: the worker's Vary headers have the values the entry was fetched with. */
static int entry_fits(const h2p_cache_entry_t *entry, void *arg)
{
    h2o_req_t *req = arg;
    for (size_t i = 0; i != entry->num_vary; ++i) {
        h2o_iovec_t value;
        int present = request_header(req, entry->vary[i].name, &value);
        if (present != entry->vary[i].present ||
            !h2o_memis(value.base, value.len, entry->vary[i].value.base, entry->vary[i].value.len))
            return 0;
    }
    return 1;
}

/* ---- answering from an entry ---------------------------------------------------------------- */

static int file_changed(const h2p_cache_entry_t *entry)
{
    struct stat st;
    return stat(entry->file_path, &st) != 0 || st.st_ino != entry->file_ino || st.st_dev != entry->file_dev ||
           st.st_size != entry->file_size || st.st_mtim.tv_sec != entry->file_mtime.tv_sec ||
           st.st_mtim.tv_nsec != entry->file_mtime.tv_nsec;
}

/* If-None-Match: a list of entity tags or "*", compared weakly (RFC 9110 13.1.2). */
static int etag_listed(h2o_iovec_t list, h2o_iovec_t etag)
{
    if (etag.len >= 2 && etag.base[0] == 'W' && etag.base[1] == '/')
        etag = h2o_iovec_init(etag.base + 2, etag.len - 2);
    const char *p = list.base, *end = list.base + list.len;
    while (p != end) {
        while (p != end && (*p == ' ' || *p == '\t' || *p == ','))
            ++p;
        const char *tag = p;
        if (p != end && *p == '*')
            return 1;
        if (end - p >= 2 && p[0] == 'W' && p[1] == '/')
            tag = p += 2;
        if (p != end && *p == '"') {
            const char *close = memchr(p + 1, '"', end - p - 1);
            if (close == NULL)
                return 0;
            p = close + 1;
        }
        while (p != end && *p != ',')
            ++p;
        if (h2o_memis(tag, p - tag, etag.base, etag.len))
            return 1;
    }
    return 0;
}

static int not_modified(h2o_req_t *req, const h2p_cache_entry_t *entry)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_IF_NONE_MATCH, -1);
    if (i != -1)
        return entry->etag.base != NULL && etag_listed(req->headers.entries[i].value, entry->etag);
    if ((i = h2o_find_header(&req->headers, H2O_TOKEN_IF_MODIFIED_SINCE, -1)) == -1 || entry->last_modified.base == NULL)
        return 0;
    struct tm since, modified;
    if (h2o_time_parse_rfc1123(req->headers.entries[i].value.base, req->headers.entries[i].value.len, &since) != 0 ||
        h2o_time_parse_rfc1123(entry->last_modified.base, entry->last_modified.len, &modified) != 0)
        return 0;
    return timegm(&modified) <= timegm(&since);
}

/* What a 304 carries (RFC 9110 15.4.5): the validators and the caching headers. */
static int kept_in_304(const h2p_cache_header_t *h)
{
    return h->token == H2O_TOKEN_ETAG || h->token == H2O_TOKEN_CACHE_CONTROL || h->token == H2O_TOKEN_EXPIRES ||
           h->token == H2O_TOKEN_VARY || h->token == H2O_TOKEN_CONTENT_LOCATION || h->token == H2O_TOKEN_LAST_MODIFIED;
}

/* The entry's headers and an Age into the response (those of a 304 only when is_304). */
static void add_entry_headers(h2o_req_t *req, const h2p_cache_entry_t *entry, int is_304)
{
    for (size_t i = 0; i != entry->num_headers; ++i) {
        const h2p_cache_header_t *h = entry->headers + i;
        if (is_304 && !kept_in_304(h))
            continue;
        if (h->token != NULL)
            h2o_add_header(&req->pool, &req->res.headers, h->token, NULL, h->value.base, h->value.len);
        else
            h2o_add_header_by_str(&req->pool, &req->res.headers, h->name.base, h->name.len, 0, NULL, h->value.base, h->value.len);
    }
    uint64_t now = h2p_cache_now_ms(), age = now > entry->stored_at_ms ? (now - entry->stored_at_ms) / 1000 : 0;
    char *age_text = h2o_mem_alloc_pool(&req->pool, sizeof(H2O_UINT64_LONGEST_STR));
    size_t age_len = sprintf(age_text, "%llu", (unsigned long long)age);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_AGE, NULL, age_text, age_len);
}

static void send_entry(h2o_req_t *req, h2p_cache_request_t *c, h2p_cache_entry_t *entry)
{
    static h2o_generator_t generator = {NULL, NULL};
    h2p_request_t *r = h2p_request_of(req);
    r->from_cache = 1;
    c->hit = entry; /* released when the request ends: the body is sent from the entry's memory */
    int is_304 = not_modified(req, entry);
    add_entry_headers(req, entry, is_304);
    if (is_304) {
        req->res.status = 304;
        req->res.reason = "Not Modified";
        h2o_send_inline(req, NULL, 0);
        return;
    }
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = entry->body.len;
    h2o_start_response(req, &generator);
    h2o_iovec_t body = entry->body;
    h2o_send(req, &body, method_is(req, H2O_STRLIT("HEAD")) ? 0 : 1, H2O_SEND_STATE_FINAL);
}

/* ---- stale-while-revalidate: the refresh -------------------------------------------------- */

/*
 * The refresh of a stale entry is a request of its own with no client: a copy of the request
 * that was answered stale (as a GET, without its conditional headers), on a connection without a
 * socket that has that client's addresses, processed from the start like any request (every
 * module runs: the refresh is refused where that client would be), whose lookup takes over the
 * refresh's pending fetch instead of looking up; the store filter stores its response (or, if it
 * is not stored, the stale entry stays), and the bytes are dropped.  It runs on the loop of the
 * request that started it, after that request's answer is on its way.
 */
typedef struct refresh {
    h2o_conn_t conn; /* first: a request's conn is its refresh */
    h2o_req_t req;
    h2o_ostream_t sink;
    h2o_timeout_entry_t tick; /* the next step, on the loop's zero timeout */
    void (*step)(struct refresh *rf);
    struct sockaddr_storage local, peer;
    socklen_t local_len, peer_len;
    h2p_gen_t *gen; /* the generation its cache belongs to */
    h2p_cache_t *cache;
    h2p_cache_pending_t *pending; /* until the refresh's lookup takes it */
    char *key;
    size_t key_len;
} refresh_t;

static socklen_t refresh_sockname(h2o_conn_t *conn, struct sockaddr *sa)
{
    refresh_t *rf = (refresh_t *)conn;
    memcpy(sa, &rf->local, rf->local_len);
    return rf->local_len;
}

static socklen_t refresh_peername(h2o_conn_t *conn, struct sockaddr *sa)
{
    refresh_t *rf = (refresh_t *)conn;
    memcpy(sa, &rf->peer, rf->peer_len);
    return rf->peer_len;
}

static h2o_socket_t *refresh_socket(h2o_conn_t *conn)
{
    return NULL;
}

static const h2o_conn_callbacks_t refresh_callbacks = {
    .get_sockname = refresh_sockname, .get_peername = refresh_peername, .get_socket = refresh_socket};

static refresh_t *refresh_of(h2o_req_t *req)
{
    return req->conn->callbacks == &refresh_callbacks ? (refresh_t *)req->conn : NULL;
}

int h2p_output_cache_is_refresh(h2o_req_t *req, const struct h2p_gen *gen)
{
    refresh_t *rf = refresh_of(req);
    return rf != NULL && rf->gen == gen;
}

static void on_refresh_tick(h2o_timeout_entry_t *entry)
{
    refresh_t *rf = H2O_STRUCT_FROM_MEMBER(refresh_t, tick, entry);
    rf->step(rf);
}

static void refresh_schedule(refresh_t *rf, void (*step)(refresh_t *rf))
{
    rf->step = step;
    h2o_timeout_link(rf->conn.ctx->loop, &rf->conn.ctx->zero_timeout, &rf->tick);
}

static void refresh_end(refresh_t *rf)
{
    h2o_dispose_request(&rf->req);
    if (rf->pending != NULL) /* it never reached its lookup (refused, redirected): the stale entry stays */
        h2p_cache_complete(rf->cache, rf->pending, NULL);
    h2p_gen_release(rf->gen);
    free(rf->key);
    free(rf);
}

static void refresh_proceed(refresh_t *rf)
{
    h2o_proceed_response(&rf->req);
}

static void refresh_sink_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t bufcnt, h2o_send_state_t state)
{
    refresh_t *rf = H2O_STRUCT_FROM_MEMBER(refresh_t, sink, self);
    refresh_schedule(rf, h2o_send_state_is_in_progress(state) ? refresh_proceed : refresh_end);
}

static void refresh_start(refresh_t *rf)
{
    h2o_process_request(&rf->req);
}

static void start_refresh(h2o_req_t *src, h2p_cache_request_t *c, h2p_cache_pending_t *pending)
{
    refresh_t *rf = h2o_mem_alloc(sizeof(*rf));
    memset(rf, 0, sizeof(*rf));
    rf->conn = (h2o_conn_t){.ctx = src->conn->ctx,
                            .hosts = src->conn->hosts,
                            .connected_at = src->conn->connected_at,
                            .id = src->conn->id,
                            .callbacks = &refresh_callbacks};
    rf->local_len =
        src->conn->callbacks->get_sockname != NULL ? src->conn->callbacks->get_sockname(src->conn, (void *)&rf->local) : 0;
    rf->peer_len =
        src->conn->callbacks->get_peername != NULL ? src->conn->callbacks->get_peername(src->conn, (void *)&rf->peer) : 0;
    h2o_init_request(&rf->req, &rf->conn, src);
    h2o_req_t *req = &rf->req;
    req->input.method = h2o_iovec_init(H2O_STRLIT("GET"));
    req->entity = h2o_iovec_init(NULL, 0);
    req->upgrade = h2o_iovec_init(NULL, 0);
    static const h2o_token_t *const dropped[] = {H2O_TOKEN_IF_NONE_MATCH,       H2O_TOKEN_IF_MODIFIED_SINCE, H2O_TOKEN_IF_MATCH,
                                                 H2O_TOKEN_IF_UNMODIFIED_SINCE, H2O_TOKEN_IF_RANGE,          H2O_TOKEN_RANGE};
    for (size_t i = 0; i != sizeof(dropped) / sizeof(dropped[0]); ++i)
        for (ssize_t at; (at = h2o_find_header(&req->headers, dropped[i], -1)) != -1;)
            h2o_delete_header(&req->headers, at);
    rf->sink = (h2o_ostream_t){.do_send = refresh_sink_send};
    req->_ostr_top = &rf->sink;
    rf->tick.cb = on_refresh_tick;
    rf->gen = h2p_gen_retain(h2p_request_of(src)->gen);
    rf->cache = c->cache;
    rf->pending = pending;
    rf->key = h2o_mem_alloc(c->key.len);
    memcpy(rf->key, c->key.base, c->key.len);
    rf->key_len = c->key.len;
    refresh_schedule(rf, refresh_start);
}

/* The refresh reached its lookup: it fetches its key as the leader (no lookup, no stale answer). */
static int take_refresh(h2p_cache_request_t *c, refresh_t *rf)
{
    if (rf->pending != NULL && rf->cache == c->cache && h2o_memis(rf->key, rf->key_len, c->key.base, c->key.len)) {
        c->pending = rf->pending;
        rf->pending = NULL;
    }
    return -1;
}

/* ---- the lookup --------------------------------------------------------------------------- */

static void on_cache_request_dispose(void *p)
{
    h2p_cache_request_t *c = p;
    if (c->stale != NULL)
        h2p_cache_entry_release(c->stale);
    if (c->pending != NULL) /* the leader ends without an entry: the waiters go to the application */
        h2p_cache_complete(c->cache, c->pending, NULL);
    if (c->waiter != NULL && h2p_cache_cancel_wait(c->cache, c->waiter))
        free(c->waiter);
    h2p_cache_body_free(&c->body);
    if (c->hit != NULL)
        h2p_cache_entry_release(c->hit);
}

/* Runs the lookup: 0 when the request is answered (or waits), -1 to go on to the content handler. */
static int lookup(h2o_req_t *req, h2p_cache_request_t *c)
{
    int may_lead = method_is(req, H2O_STRLIT("GET")) && !has_request_header(req, H2O_TOKEN_IF_NONE_MATCH) &&
                   !has_request_header(req, H2O_TOKEN_IF_MODIFIED_SINCE);
    h2p_cache_waiter_t *waiter = NULL;
    for (int attempt = 0; attempt != 3; ++attempt) {
        h2p_cache_entry_t *entry = NULL;
        h2p_cache_pending_t *refresh = NULL;
        if (c->stale != NULL) { /* (from the attempt before) */
            h2p_cache_entry_release(c->stale);
            c->stale = NULL;
        }
        switch (
            h2p_cache_lookup(c->cache, c->key.base, c->key.len, entry_fits, req, waiter, may_lead, &entry, &refresh, &c->stale)) {
        case H2P_CACHE_STALE:
            if (entry->file_path != NULL && file_changed(entry)) {
                if (refresh != NULL)
                    h2p_cache_complete(c->cache, refresh, NULL);
                h2p_cache_remove(c->cache, entry);
                h2p_cache_entry_release(entry);
                continue;
            }
            free(waiter);
            send_entry(req, c, entry);
            if (refresh != NULL)
                start_refresh(req, c, refresh);
            return 0;
        case H2P_CACHE_LEAD:
            c->pending = refresh;
            free(waiter);
            h2p_cache_count_miss();
            return -1;
        case H2P_CACHE_HIT:
            if (entry->file_path != NULL && file_changed(entry)) {
                h2p_cache_remove(c->cache, entry);
                h2p_cache_entry_release(entry);
                continue;
            }
            free(waiter);
            h2p_cache_count_hit();
            send_entry(req, c, entry);
            return 0;
        case H2P_CACHE_MUST_WAIT:
            waiter = h2o_mem_alloc(sizeof(*waiter));
            *waiter = (h2p_cache_waiter_t){
                .receiver = &((output_cache_thread_t *)H2P_MODULE_THREAD(h2p_this_thread, output_cache))->wake_receiver, .data = c};
            continue;
        case H2P_CACHE_WAIT:
            c->waiter = waiter;
            h2p_cache_count_miss();
            return 0;
        default: /* MISS */
            free(waiter);
            h2p_cache_count_miss();
            return -1;
        }
    }
    free(waiter);
    h2p_cache_count_miss();
    return -1;
}

static const h2p_output_cache_rule_t *find_rule(const h2p_modules_conf_t *m, h2o_iovec_t path)
{
    for (size_t i = 0; i != m->output_cache->count; ++i)
        if (rule_matches(m->output_cache->rules[i].path, path))
            return m->output_cache->rules + i;
    return NULL;
}

static int on_req(h2o_handler_t *_self, h2o_req_t *req)
{
    lookup_handler_t *self = (void *)_self;
    h2p_request_t *r = h2p_request_of(req);
    if (r == NULL || r->gen->cache == NULL || !(method_is(req, H2O_STRLIT("GET")) || method_is(req, H2O_STRLIT("HEAD"))))
        return -1;
    /* a response to credentials is that user's; a range is a part of a response */
    if (has_request_header(req, H2O_TOKEN_AUTHORIZATION) || has_request_header(req, H2O_TOKEN_RANGE))
        return -1;
    const struct h2p_served *s = h2p_request_served(r);
    if (s->mapping < 0 && s->path.len != 0 && s->path.base[s->path.len - 1] == '/')
        return -1; /* a directory (listing): not a file whose changes can be seen */
    const h2p_output_cache_rule_t *rule = find_rule(self->settings, s->path);
    if (rule == NULL)
        return -1;

    h2p_cache_request_t *c = h2o_mem_alloc_shared(&req->pool, sizeof(*c), on_cache_request_dispose);
    *c = (h2p_cache_request_t){.req = req, .cache = r->gen->cache, .rule = rule, .lookup = _self};
    int is_static = s->mapping < 0;
    if (is_static) {
        const char *physical = h2p_physical_path(&req->pool, r->app, s->path.base, s->path.len);
        if (stat(physical, &c->file_st) != 0 || !S_ISREG(c->file_st.st_mode) ||
            (!r->scope->follow_symlinks && h2p_static_escapes_root(r->app, physical)))
            return -1; /* the static handler answers (404, 403) */
        c->file_path = physical;
    }
    c->key = build_key(req, r, rule, s->path, h2p_compression_negotiate(self->settings, req, is_static));
    H2P_MODULE_REQUEST(r, output_cache) = c;
    refresh_t *rf = refresh_of(req);
    return rf != NULL ? take_refresh(c, rf) : lookup(req, c);
}

/* Goes on with the handlers after the lookup (the content handler), as if it had passed. */
static void continue_chain(h2o_req_t *req, h2o_handler_t *after)
{
    h2o_pathconf_t *pathconf = req->pathconf;
    size_t i = 0;
    while (i != pathconf->handlers.size && pathconf->handlers.entries[i] != after)
        ++i;
    for (++i; i < pathconf->handlers.size; ++i)
        if (pathconf->handlers.entries[i]->on_req(pathconf->handlers.entries[i], req) == 0)
            return;
    h2o_send_error_404(req, "Not Found", "not found", 0);
}

/* The leader answered: each waiter of this thread gets the entry, or goes to the application. */
static void on_wake(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    while (!h2o_linklist_is_empty(messages)) {
        h2p_cache_waiter_t *waiter = H2O_STRUCT_FROM_MEMBER(h2p_cache_waiter_t, message.link, messages->next);
        h2o_linklist_unlink(&waiter->message.link);
        h2p_cache_entry_t *entry = waiter->entry;
        if (waiter->state == H2P_CACHE_ABANDONED) { /* its request is gone */
            if (entry != NULL)
                h2p_cache_entry_release(entry);
            free(waiter);
            continue;
        }
        h2p_cache_request_t *c = waiter->data;
        c->waiter = NULL;
        free(waiter);
        /* the leader's Vary values may not be this request's */
        if (entry != NULL && entry_fits(entry, c->req)) {
            send_entry(c->req, c, entry);
            continue;
        }
        if (entry != NULL)
            h2p_cache_entry_release(entry);
        continue_chain(c->req, c->lookup);
    }
}

static void init_thread(h2p_thread_t *th)
{
    output_cache_thread_t *state = h2p_calloc(1, sizeof(*state));
    h2o_multithread_register_receiver(th->queue, &state->wake_receiver, on_wake);
    H2P_MODULE_THREAD(th, output_cache) = state;
}

static void dispose_thread(h2p_thread_t *th)
{
    output_cache_thread_t *state = H2P_MODULE_THREAD(th, output_cache);
    /* (no request waits any more: the loop ran until the last one ended) */
    h2o_multithread_unregister_receiver(th->queue, &state->wake_receiver);
    free(state);
    H2P_MODULE_THREAD(th, output_cache) = NULL;
}

/* ---- the store ---------------------------------------------------------------------------- */

/* A Cache-Control directive's value ("max-age=60"): 1 with *seconds, 0 when absent. */
typedef struct cache_control {
    int no_store, is_private, no_cache, has_max_age, has_s_maxage, must_revalidate;
    int has_stale_while_revalidate, has_stale_if_error;
    uint64_t max_age, s_maxage, stale_while_revalidate, stale_if_error;
} cache_control_t;

static uint64_t parse_seconds(const char *p, const char *end)
{
    if (p != end && *p == '"')
        ++p;
    uint64_t n = 0;
    for (; p != end && *p >= '0' && *p <= '9'; ++p)
        n = n < UINT64_MAX / 10 ? n * 10 + (uint64_t)(*p - '0') : UINT64_MAX;
    return n;
}

static void parse_cache_control(const h2o_headers_t *headers, cache_control_t *cc)
{
    memset(cc, 0, sizeof(*cc));
    for (ssize_t i = -1; (i = h2o_find_header(headers, H2O_TOKEN_CACHE_CONTROL, i)) != -1;) {
        const char *p = headers->entries[i].value.base, *end = p + headers->entries[i].value.len;
        while (p != end) {
            while (p != end && (*p == ' ' || *p == '\t' || *p == ','))
                ++p;
            const char *name = p;
            while (p != end && *p != ',' && *p != '=' && *p != ' ')
                ++p;
            size_t name_len = p - name;
            const char *value = NULL, *value_end = NULL;
            while (p != end && *p == ' ')
                ++p;
            if (p != end && *p == '=') {
                value = ++p;
                if (p != end && *p == '"') { /* a quoted value may hold commas */
                    const char *close = memchr(p + 1, '"', end - p - 1);
                    p = close != NULL ? close + 1 : end;
                }
                while (p != end && *p != ',')
                    ++p;
                value_end = p;
            }
            if (h2o_lcstris(name, name_len, H2O_STRLIT("no-store")))
                cc->no_store = 1;
            else if (h2o_lcstris(name, name_len, H2O_STRLIT("private")))
                cc->is_private = 1;
            else if (h2o_lcstris(name, name_len, H2O_STRLIT("no-cache")))
                cc->no_cache = 1;
            else if (h2o_lcstris(name, name_len, H2O_STRLIT("max-age")) && value != NULL)
                cc->has_max_age = 1, cc->max_age = parse_seconds(value, value_end);
            else if (h2o_lcstris(name, name_len, H2O_STRLIT("s-maxage")) && value != NULL)
                cc->has_s_maxage = 1, cc->s_maxage = parse_seconds(value, value_end);
            else if (h2o_lcstris(name, name_len, H2O_STRLIT("must-revalidate")) ||
                     h2o_lcstris(name, name_len, H2O_STRLIT("proxy-revalidate")))
                cc->must_revalidate = 1;
            else if (h2o_lcstris(name, name_len, H2O_STRLIT("stale-while-revalidate")) && value != NULL)
                cc->has_stale_while_revalidate = 1, cc->stale_while_revalidate = parse_seconds(value, value_end);
            else if (h2o_lcstris(name, name_len, H2O_STRLIT("stale-if-error")) && value != NULL)
                cc->has_stale_if_error = 1, cc->stale_if_error = parse_seconds(value, value_end);
            while (p != end && *p != ',')
                ++p;
        }
    }
}

static uint64_t seconds_to_ms(uint64_t seconds)
{
    return seconds < UINT64_MAX / 4000 ? seconds * 1000 : UINT64_MAX / 4;
}

static uint64_t saturating_add(uint64_t a, uint64_t b)
{
    return a + b >= a ? a + b : UINT64_MAX;
}

/* How long the response may be kept (ms), 0 when it may not be stored. */
static uint64_t storable_for(h2o_req_t *req, h2p_cache_request_t *c)
{
    if (req->res.status != 200 || !method_is(req, H2O_STRLIT("GET")))
        return 0;
    if (h2o_find_header(&req->res.headers, H2O_TOKEN_SET_COOKIE, -1) != -1 || has_request_header(req, H2O_TOKEN_AUTHORIZATION))
        return 0;
    for (ssize_t i = -1; (i = h2o_find_header(&req->res.headers, H2O_TOKEN_VARY, i)) != -1;)
        if (h2o_contains_token(req->res.headers.entries[i].value.base, req->res.headers.entries[i].value.len, H2O_STRLIT("*"), ','))
            return 0;
    cache_control_t cc;
    parse_cache_control(&req->res.headers, &cc);
    if (cc.no_store || cc.is_private || cc.no_cache)
        return 0;
    uint64_t ttl = c->rule->duration_ms;
    /* a shared cache: s-maxage wins over max-age (RFC 9111 5.2.2.10) */
    uint64_t limit_s = cc.has_s_maxage ? cc.s_maxage : cc.has_max_age ? cc.max_age : UINT64_MAX;
    if (limit_s < ttl / 1000 + 1 && limit_s * 1000 < ttl)
        ttl = limit_s * 1000;
    /* how long it may be answered stale: the response's own directives (RFC 5861), else the rule's;
     * must-revalidate and proxy-revalidate forbid it (RFC 9111 5.2.2.2) */
    c->stale_while_revalidate_ms =
        cc.has_stale_while_revalidate ? seconds_to_ms(cc.stale_while_revalidate) : c->rule->stale_while_revalidate_ms;
    c->stale_if_error_ms = cc.has_stale_if_error ? seconds_to_ms(cc.stale_if_error) : c->rule->stale_if_error_ms;
    if (cc.must_revalidate)
        c->stale_while_revalidate_ms = c->stale_if_error_ms = 0;
    return ttl;
}

/* Headers that describe the message or the connection, not the resource, and Age (ours). */
static int header_stored(const h2o_header_t *h)
{
    static const h2o_token_t *const dropped[] = {
        H2O_TOKEN_CONNECTION, H2O_TOKEN_KEEP_ALIVE, H2O_TOKEN_TRANSFER_ENCODING, H2O_TOKEN_CONTENT_LENGTH, H2O_TOKEN_DATE,
        H2O_TOKEN_SERVER,     H2O_TOKEN_AGE,        H2O_TOKEN_SET_COOKIE,        H2O_TOKEN_UPGRADE,        H2O_TOKEN_TE};
    for (size_t i = 0; i != sizeof(dropped) / sizeof(dropped[0]); ++i)
        if (h->name == &dropped[i]->buf)
            return 0;
    return 1;
}

/* The request headers the response varies on beyond what the key holds (coding, vary_by_headers). */
static size_t collect_vary(h2o_req_t *req, const h2p_output_cache_rule_t *rule, h2o_iovec_t *names, size_t max)
{
    size_t n = 0;
    for (ssize_t i = -1; (i = h2o_find_header(&req->res.headers, H2O_TOKEN_VARY, i)) != -1;) {
        h2o_iovec_t iter = req->res.headers.entries[i].value;
        const char *token;
        size_t token_len;
        while ((token = h2o_next_token(&iter, ',', &token_len, NULL)) != NULL && n != max) {
            if (h2o_lcstris(token, token_len, H2O_STRLIT("accept-encoding")))
                continue;
            int in_key = 0;
            for (size_t k = 0; k != rule->vary_by_headers.count && !in_key; ++k)
                in_key = h2o_lcstris(token, token_len, rule->vary_by_headers.items[k], strlen(rule->vary_by_headers.items[k]));
            if (in_key)
                continue;
            /* header names are compared in lower case (h2o's tokens and request headers are) */
            h2o_iovec_t name = h2o_strdup(&req->pool, token, token_len);
            for (size_t k = 0; k != name.len; ++k)
                name.base[k] = h2o_tolower(name.base[k]);
            names[n++] = name;
        }
    }
    return n;
}

static char *copy_into(char **cursor, const char *src, size_t len)
{
    char *dst = *cursor;
    memcpy(dst, src, len);
    *cursor += len;
    return dst;
}

static h2p_cache_entry_t *build_entry(h2o_req_t *req, h2p_cache_request_t *c)
{
    h2o_iovec_t vary_names[16], vary_values[16];
    int vary_present[16];
    size_t num_vary = collect_vary(req, c->rule, vary_names, 16), num_headers = 0, size = c->body.len;
    for (size_t i = 0; i != num_vary; ++i) {
        vary_present[i] = request_header(req, vary_names[i], vary_values + i);
        size += vary_names[i].len + vary_values[i].len;
    }
    for (size_t i = 0; i != req->res.headers.size; ++i) {
        const h2o_header_t *h = req->res.headers.entries + i;
        if (header_stored(h)) {
            size += h->name->len + h->value.len;
            ++num_headers;
        }
    }
    size_t path_len = c->file_path != NULL ? strlen(c->file_path) + 1 : 0;
    size += path_len + num_headers * sizeof(h2p_cache_header_t) + num_vary * sizeof(h2p_cache_vary_t) + sizeof(void *);
    if (size > h2p_cache_max_entry(c->cache))
        return NULL;

    h2p_cache_entry_t *entry = h2p_cache_entry_new(size);
    char *cursor = entry->data;
    /* the arrays first (aligned), then the bytes */
    cursor += (uintptr_t)cursor % sizeof(void *) != 0 ? sizeof(void *) - (uintptr_t)cursor % sizeof(void *) : 0;
    entry->headers = (h2p_cache_header_t *)cursor;
    cursor += num_headers * sizeof(h2p_cache_header_t);
    entry->vary = (h2p_cache_vary_t *)cursor;
    cursor += num_vary * sizeof(h2p_cache_vary_t);
    for (size_t i = 0; i != req->res.headers.size; ++i) {
        const h2o_header_t *h = req->res.headers.entries + i;
        if (!header_stored(h))
            continue;
        h2p_cache_header_t *out = entry->headers + entry->num_headers++;
        out->token = h2o_iovec_is_token(h->name) ? (const h2o_token_t *)h->name : NULL;
        out->name = h2o_iovec_init(copy_into(&cursor, h->name->base, h->name->len), h->name->len);
        out->value = h2o_iovec_init(copy_into(&cursor, h->value.base, h->value.len), h->value.len);
        if (out->token == H2O_TOKEN_ETAG)
            entry->etag = out->value;
        else if (out->token == H2O_TOKEN_LAST_MODIFIED)
            entry->last_modified = out->value;
    }
    for (size_t i = 0; i != num_vary; ++i) {
        h2p_cache_vary_t *v = entry->vary + entry->num_vary++;
        v->name = h2o_iovec_init(copy_into(&cursor, vary_names[i].base, vary_names[i].len), vary_names[i].len);
        v->value = h2o_iovec_init(copy_into(&cursor, vary_values[i].base, vary_values[i].len), vary_values[i].len);
        v->present = vary_present[i];
    }
    entry->body = h2o_iovec_init(copy_into(&cursor, c->body.base, c->body.len), c->body.len);
    if (c->file_path != NULL) {
        entry->file_path = copy_into(&cursor, c->file_path, path_len);
        entry->file_dev = c->file_st.st_dev;
        entry->file_ino = c->file_st.st_ino;
        entry->file_size = c->file_st.st_size;
        entry->file_mtime = c->file_st.st_mtim;
    }
    entry->stored_at_ms = h2p_cache_now_ms();
    entry->expires_at_ms = entry->stored_at_ms + c->ttl_ms;
    if (c->stale_while_revalidate_ms != 0)
        entry->stale_while_revalidate_until_ms = saturating_add(entry->expires_at_ms, c->stale_while_revalidate_ms);
    if (c->stale_if_error_ms != 0)
        entry->stale_if_error_until_ms = saturating_add(entry->expires_at_ms, c->stale_if_error_ms);
    return entry;
}

/* The response will not be stored: the leader lets its waiters go. */
static void give_up(h2p_cache_request_t *c)
{
    c->storing = 0;
    h2p_cache_body_free(&c->body);
    if (c->pending != NULL) {
        h2p_cache_complete(c->cache, c->pending, NULL);
        c->pending = NULL;
    }
}

static void store_do_send(h2o_ostream_t *_self, h2o_req_t *req, h2o_iovec_t *bufs, size_t bufcnt, h2o_send_state_t state)
{
    h2p_cache_request_t *c = ((store_ostream_t *)_self)->c;
    if (c->storing) {
        if (h2p_cache_body_append(c->cache, &c->body, bufs, bufcnt) != 0)
            give_up(c);
        if (c->storing && !h2o_send_state_is_in_progress(state)) {
            h2p_cache_entry_t *entry = state == H2O_SEND_STATE_FINAL ? build_entry(req, c) : NULL;
            if (entry == NULL) {
                give_up(c);
            } else if (c->pending != NULL) {
                h2p_cache_complete(c->cache, c->pending, entry);
                c->pending = NULL;
            } else {
                h2p_cache_insert(c->cache, c->key.base, c->key.len, entry);
            }
            c->storing = 0;
            h2p_cache_body_free(&c->body);
        }
    }
    h2o_ostream_send_next(_self, req, bufs, bufcnt, state);
}

/* ---- stale-if-error ---------------------------------------------------------------------- */

typedef struct stale_ostream {
    h2o_ostream_t super;
    h2p_cache_entry_t *entry;
    int body_sent;
} stale_ostream_t;

/* The application's error body is dropped; the entry's body goes in its place. */
static void stale_do_send(h2o_ostream_t *_self, h2o_req_t *req, h2o_iovec_t *bufs, size_t bufcnt, h2o_send_state_t state)
{
    stale_ostream_t *self = (void *)_self;
    h2o_iovec_t body = self->entry->body;
    size_t count = 0;
    if (!self->body_sent) {
        self->body_sent = 1;
        count = body.len != 0 && !method_is(req, H2O_STRLIT("HEAD")) ? 1 : 0;
    }
    /* an error of the application's stream after our whole body is no error of this response */
    h2o_ostream_send_next(_self, req, &body, count, state == H2O_SEND_STATE_ERROR ? H2O_SEND_STATE_FINAL : state);
}

static int is_gateway_error(int status)
{
    return status == 502 || status == 503 || status == 504;
}

/* Replaces the response being set up (a 502, 503 or 504) with the stale entry c->stale. */
static h2o_ostream_t **answer_stale(h2o_req_t *req, h2p_request_t *r, h2p_cache_request_t *c, h2o_ostream_t **slot)
{
    h2p_cache_entry_t *entry = c->stale;
    c->stale = NULL;
    c->hit = entry;
    r->from_cache = 1;
    h2p_cache_count_stale_if_error();
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.headers = (h2o_headers_t){NULL, 0, 0};
    add_entry_headers(req, entry, 0);
    req->res.content_length = entry->body.len;
    stale_ostream_t *ostream = (void *)h2o_add_ostream(req, sizeof(*ostream), slot);
    ostream->super.do_send = stale_do_send;
    ostream->entry = entry;
    ostream->body_sent = 0;
    return &ostream->super.next;
}

static void on_setup_ostream(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    h2p_request_t *r = h2p_request_of(req);
    h2p_cache_request_t *c = r != NULL ? H2P_MODULE_REQUEST(r, output_cache) : NULL;
    if (c == NULL || r->from_cache || c->waiter != NULL)
        goto Next;
    if (c->stale != NULL && is_gateway_error(req->res.status)) {
        give_up(c); /* the waiters go to the application, each with its own stale entry */
        slot = answer_stale(req, r, c, slot);
        goto Next;
    }
    if ((c->ttl_ms = storable_for(req, c)) == 0 ||
        (req->res.content_length != SIZE_MAX && req->res.content_length > h2p_cache_max_entry(c->cache))) {
        give_up(c);
        goto Next;
    }
    c->storing = 1;
    store_ostream_t *ostream = (void *)h2o_add_ostream(req, sizeof(*ostream), slot);
    ostream->super.do_send = store_do_send;
    ostream->c = c;
    slot = &ostream->super.next;
Next:
    h2o_setup_next_ostream(req, slot);
}

/* ---- set-up ------------------------------------------------------------------------------- */

/* libh2o sets filters up from the last created to the first: the store goes right after
 * compression in the response's way, so that an entry holds the compressed bytes of its coding. */
static void place_after_compression(h2o_pathconf_t *pathconf, h2o_filter_t *store)
{
    for (size_t i = 1; i < pathconf->filters.size; ++i) {
        if (!h2p_compression_is_filter(pathconf->filters.entries[i]))
            continue;
        memmove(pathconf->filters.entries, pathconf->filters.entries + 1, i * sizeof(pathconf->filters.entries[0]));
        pathconf->filters.entries[i] = store;
        return;
    }
}

static int on_config(h2p_module_scope_t *ms)
{
    const h2p_modules_conf_t *m = ms->settings;
    if (!m->output_cache->enabled || m->output_cache->count == 0)
        return 0;
    if (ms->phase == H2P_PHASE_REQUEST) {
        lookup_handler_t *self = (void *)h2o_create_handler(ms->pathconf, sizeof(*self));
        self->super.on_req = on_req;
        self->settings = &ms->scope->modules;
        return 0;
    }
    store_filter_t *store = (void *)h2o_create_filter(ms->pathconf, sizeof(*store));
    store->super.on_setup_ostream = on_setup_ostream;
    place_after_compression(ms->pathconf, &store->super);
    return 0;
}

const h2p_module_t h2p_module_output_cache = {"output_cache", H2P_PHASE_REQUEST | H2P_PHASE_RESPONSE, on_config,
                                              .init_thread = init_thread, .dispose_thread = dispose_thread};

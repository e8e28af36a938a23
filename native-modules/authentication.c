/*
 * authentication: who is asking (IIS's anonymous and basic authentication modules).
 *
 * anonymous: false -> every request needs valid credentials, else 401 with one challenge per
 * enabled scheme.  anonymous: true -> a request without credentials passes as anonymous, but one
 * that carries credentials is still checked (wrong ones get 401), as in IIS.  A verified user is
 * left in h2p_request_t.remote_user / auth_type for authorization and the FastCGI params.
 *
 * Only basic is implemented; digest, negotiate and client_certificate are accepted by the
 * config parser and ignored here with a warning until their issues are done.
 *
 * Checking a bcrypt hash costs up to a quarter of a second of CPU, so verified credentials are
 * remembered per thread for credential_cache.ttl, keyed by the exact Authorization value (IIS's
 * token cache).  A cache hit is answered on the spot; a miss goes to the crypt pool
 * (crypt_pool.h): the handler returns with the request pending, a pool thread computes the hash,
 * and the result comes back to this thread's loop, which goes on with the rest of the chain
 * (h2p_router_continue_after) or answers 401.  Nothing here blocks an event loop.  A client that
 * leaves meanwhile (an HTTP/2 stream reset disposes its request) cancels its check.
 *
 * The users file is watched (credfile.h): a change is in effect within H2P_CREDFILE_CHECK_MS,
 * and cache entries name the snapshot of the file they were verified against, so a deleted user
 * or a changed password is never served from the cache.
 */
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/log.h"
#include "frontend/alloc.h"
#include "frontend/router.h"
#include "native-modules/credfile.h"
#include "native-modules/crypt_pool.h"
#include "native-modules/module.h"
#include "native-modules/authentication.h"

#define MAX_AUTHORIZATION 8192 /* longer Authorization values are refused without decoding */
#define CACHE_SLOTS 512        /* per thread, direct-mapped: a colliding entry replaces the old one */

typedef struct authentication_handler {
    h2o_handler_t super;
    uint64_t id; /* owner of cache entries; never reused, unlike the handler's address */
    int anonymous;
    int basic;
    h2o_iovec_t challenge; /* WWW-Authenticate value; empty when no implemented scheme is enabled */
    h2p_credfile_t *users; /* basic: the users file */
    uint64_t cache_ttl_ms;
} authentication_handler_t;

typedef struct cache_entry {
    uint64_t owner;    /* 0 = empty */
    uint64_t snapshot; /* the users file's snapshot the credentials were verified against */
    uint64_t expires_at;
    const h2p_htpasswd_user_t *user; /* in that snapshot, dereferenced only while it is the current one */
    unsigned char key[SHA256_DIGEST_LENGTH];
} cache_entry_t;

/* A check waiting for the crypt pool; freed by the thread that submitted it, when it comes back. */
typedef struct pending_check {
    h2p_crypt_job_t job;
    h2o_req_t *req;                      /* NULL once the request is gone (the client left) */
    struct pending_check **request_hook; /* the request's pointer to this check */
    authentication_handler_t *handler;   /* valid while `req` is: the request holds its generation */
    uint64_t cache_owner, cache_ttl_ms;  /* the handler's, for the cache even when the request is gone */
    h2p_thread_t *thread;
    size_t credentials_len;
    char credentials[]; /* "user:password" as decoded; wiped before it is freed */
} pending_check_t;

/* The module's state on a front-end thread (H2P_MODULE_THREAD) */
typedef struct authentication_thread {
    h2o_multithread_receiver_t password_checks; /* results of the crypt pool, back on this thread */
    cache_entry_t credential_cache[CACHE_SLOTS];
} authentication_thread_t;

static uint64_t next_handler_id = 1; /* atomic */
static uint64_t last_queue_full_log; /* atomic; ms */

static cache_entry_t *cache_slot(h2p_thread_t *th, const unsigned char *key)
{
    authentication_thread_t *state = H2P_MODULE_THREAD(th, authentication);
    uint64_t h;
    memcpy(&h, key, sizeof(h));
    return state->credential_cache + h % CACHE_SLOTS;
}

static const h2p_htpasswd_user_t *cache_lookup(h2p_thread_t *th, authentication_handler_t *self,
                                               const h2p_credfile_snapshot_t *users, const unsigned char *key, uint64_t now)
{
    cache_entry_t *e = cache_slot(th, key);
    if (e->owner != self->id || e->snapshot != users->id || now >= e->expires_at || CRYPTO_memcmp(e->key, key, sizeof(e->key)) != 0)
        return NULL;
    return e->user;
}

static void cache_store(h2p_thread_t *th, uint64_t owner, uint64_t ttl_ms, const h2p_credfile_snapshot_t *users,
                        const unsigned char *key, uint64_t now, const h2p_htpasswd_user_t *user)
{
    cache_entry_t *e = cache_slot(th, key);
    e->owner = owner;
    e->snapshot = users->id;
    e->expires_at = now + ttl_ms;
    e->user = user;
    memcpy(e->key, key, sizeof(e->key));
}

/* Strict base64 (RFC 4648 alphabet, padding optional); returns the decoded length or -1. */
static ssize_t decode_base64(const char *src, size_t len, unsigned char *dst)
{
    size_t out = 0, bits = 0;
    uint32_t acc = 0;
    while (len != 0 && src[len - 1] == '=')
        --len;
    for (size_t i = 0; i != len; ++i) {
        char c = src[i];
        uint32_t v;
        if (c >= 'A' && c <= 'Z')
            v = (uint32_t)(c - 'A');
        else if (c >= 'a' && c <= 'z')
            v = (uint32_t)(c - 'a' + 26);
        else if (c >= '0' && c <= '9')
            v = (uint32_t)(c - '0' + 52);
        else if (c == '+')
            v = 62;
        else if (c == '/')
            v = 63;
        else
            return -1;
        acc = (acc << 6) | v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            dst[out++] = (unsigned char)(acc >> bits);
        }
    }
    return bits >= 6 ? -1 : (ssize_t)out; /* a lone trailing character carries no whole byte */
}

/* "Basic <token68>": the decoded "user:password" of a well-formed header in `decoded`
 * (MAX_AUTHORIZATION bytes), its length and the colon's offset; else -1. */
static ssize_t decode_basic(h2o_iovec_t value, unsigned char *decoded, size_t *colon_at)
{
    const char *p = value.base, *end = value.base + value.len;
    while (p != end && (*p == ' ' || *p == '\t'))
        ++p;
    if ((size_t)(end - p) < 6 || !h2o_lcstris(p, 5, H2O_STRLIT("basic")) || (p[5] != ' ' && p[5] != '\t'))
        return -1;
    p += 6;
    while (p != end && (*p == ' ' || *p == '\t'))
        ++p;
    while (end != p && (end[-1] == ' ' || end[-1] == '\t'))
        --end;
    if (p == end)
        return -1;

    ssize_t len = decode_base64(p, (size_t)(end - p), decoded);
    const unsigned char *colon = len > 0 ? memchr(decoded, ':', (size_t)len) : NULL;
    if (colon == NULL || colon == decoded || memchr(decoded, '\0', (size_t)len) != NULL)
        return -1;
    *colon_at = (size_t)(colon - decoded);
    return len;
}

static int send_challenge(authentication_handler_t *self, h2o_req_t *req, h2p_request_t *r, const char *body)
{
    if (self->challenge.len != 0)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, self->challenge.base, self->challenge.len);
    if (r == NULL) {
        h2o_send_error_generic(req, 401, "Unauthorized", body, H2O_SEND_ERROR_KEEP_HEADERS);
        return 0;
    }
    return h2p_request_deny(r, "authentication", 401, 2, "Unauthorized", body);
}

/* The verified user, for authorization and the application (REMOTE_USER). */
static void set_remote_user(h2p_request_t *r, const h2p_htpasswd_user_t *user)
{
    /* the name outlives the snapshot: a change of the file may free it mid-request */
    r->remote_user = h2o_strdup(&r->req->pool, user->name, user->name_len);
    r->auth_type = h2o_iovec_init(H2O_STRLIT("Basic"));
}

static void free_check(pending_check_t *check)
{
    h2p_credfile_release(check->job.users);
    OPENSSL_cleanse(check->credentials, check->credentials_len);
    free(check);
}

/* The request was disposed (its client left) while its check was away. */
static void on_request_gone(void *p)
{
    pending_check_t *check = *(pending_check_t **)p;
    if (check == NULL)
        return; /* answered already */
    check->req = NULL;
    h2p_crypt_pool_cancel(&check->job);
}

/* A check came back to this thread: go on with the request, or answer 401. */
static void finish_check(pending_check_t *check)
{
    const h2p_htpasswd_user_t *user = check->job.result;
    h2o_req_t *req = check->req;
    authentication_handler_t *self = check->handler;
    h2p_request_t *r = NULL;

    check->thread->requests_in_flight--;
    if (user != NULL && check->cache_ttl_ms != 0) /* a client that left and comes back finds it */
        cache_store(check->thread, check->cache_owner, check->cache_ttl_ms, check->job.users, check->job.key,
                    h2o_now(check->thread->loop), user);
    if (req != NULL) {
        *check->request_hook = NULL;
        r = h2p_request_of(req);
        if (user != NULL)
            set_remote_user(r, user);
    }
    free_check(check);
    if (req == NULL)
        return;
    if (user != NULL)
        h2p_router_continue_after(req, &self->super);
    else
        send_challenge(self, req, r, "invalid credentials");
}

static void on_checks_done(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    while (!h2o_linklist_is_empty(messages)) {
        pending_check_t *check = H2O_STRUCT_FROM_MEMBER(pending_check_t, job.message.link, messages->next);
        h2o_linklist_unlink(&check->job.message.link);
        finish_check(check);
    }
}

static void init_thread(h2p_thread_t *th)
{
    authentication_thread_t *state = h2p_calloc(1, sizeof(*state));
    h2o_multithread_register_receiver(th->queue, &state->password_checks, on_checks_done);
    H2P_MODULE_THREAD(th, authentication) = state;
}

static void dispose_thread(h2p_thread_t *th)
{
    authentication_thread_t *state = H2P_MODULE_THREAD(th, authentication);
    /* (no check is out: the loop ran until every one came back) */
    h2o_multithread_unregister_receiver(th->queue, &state->password_checks);
    OPENSSL_cleanse(state, sizeof(*state));
    free(state);
    H2P_MODULE_THREAD(th, authentication) = NULL;
}

static int send_busy(h2o_req_t *req, h2p_request_t *r)
{
    uint64_t now = h2o_now(req->conn->ctx->loop), last = __atomic_load_n(&last_queue_full_log, __ATOMIC_RELAXED);
    if (now >= last + 60000 && __atomic_compare_exchange_n(&last_queue_full_log, &last, now, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        h2p_warn(r->site->conf->name, "authentication: %d password checks are waiting: more get 503 (a password storm?)",
                 H2P_CRYPT_POOL_MAX_JOBS);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("5"));
    return h2p_request_deny(r, "authentication", 503, 0, "Service Unavailable", "too many password checks are waiting");
}

/* Sends decoded credentials to the crypt pool; the request stays pending until they come back. */
static int submit_check(authentication_handler_t *self, h2o_req_t *req, h2p_request_t *r, h2p_credfile_snapshot_t *users,
                        const unsigned char *key, const unsigned char *credentials, size_t len, size_t colon_at)
{
    pending_check_t *check = h2o_mem_alloc(offsetof(pending_check_t, credentials) + len);
    memset(check, 0, sizeof(*check));
    memcpy(check->credentials, credentials, len);
    check->credentials_len = len;
    check->job.receiver = &((authentication_thread_t *)H2P_MODULE_THREAD(h2p_this_thread, authentication))->password_checks;
    check->job.users = users;
    check->job.user = check->credentials;
    check->job.user_len = colon_at;
    check->job.password = check->credentials + colon_at + 1;
    check->job.password_len = len - colon_at - 1;
    memcpy(check->job.key, key, sizeof(check->job.key));
    check->req = req;
    check->handler = self;
    check->cache_owner = self->id;
    check->cache_ttl_ms = self->cache_ttl_ms;
    check->thread = h2p_this_thread;
    if (h2p_crypt_pool_submit(&check->job) != 0) {
        free_check(check);
        return send_busy(req, r);
    }
    check->request_hook = h2o_mem_alloc_shared(&req->pool, sizeof(*check->request_hook), on_request_gone);
    *check->request_hook = check;
    check->thread->requests_in_flight++; /* the loop runs until it is back, even at shutdown */
    return 0;
}

static int on_req(h2o_handler_t *_self, h2o_req_t *req)
{
    authentication_handler_t *self = (void *)_self;
    h2p_request_t *r = h2p_request_of(req);
    ssize_t found = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);

    if (found == -1)
        return self->anonymous ? -1 : send_challenge(self, req, r, "authentication required");
    /* two Authorization headers: which one would the application believe? */
    if (h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, found) != -1)
        return send_challenge(self, req, r, "more than one Authorization header");
    h2o_iovec_t value = req->headers.entries[found].value;
    /* (every chain runs from the router, so r exists: without it a check could not go on later) */
    if (!self->basic || value.len > MAX_AUTHORIZATION || r == NULL)
        return send_challenge(self, req, r, "invalid credentials");

    unsigned char key[SHA256_DIGEST_LENGTH], decoded[MAX_AUTHORIZATION];
    size_t colon_at;
    h2p_credfile_snapshot_t *users = h2p_credfile_acquire(self->users);
    SHA256((const unsigned char *)value.base, value.len, key);
    if (self->cache_ttl_ms != 0) {
        const h2p_htpasswd_user_t *user = cache_lookup(r->thread, self, users, key, h2o_now(req->conn->ctx->loop));
        if (user != NULL) {
            set_remote_user(r, user);
            h2p_credfile_release(users);
            return -1;
        }
    }
    ssize_t len = decode_basic(value, decoded, &colon_at);
    int ret;
    if (len < 0 || users->users.count == 0) { /* malformed, or no user to be (a broken file fails closed) */
        h2p_credfile_release(users);
        ret = send_challenge(self, req, r, "invalid credentials");
    } else {
        ret = submit_check(self, req, r, users, key, decoded, (size_t)len, colon_at); /* takes `users` */
    }
    OPENSSL_cleanse(decoded, sizeof(decoded));
    return ret;
}

static void on_dispose(h2o_handler_t *_self)
{
    authentication_handler_t *self = (void *)_self;
    if (self->users != NULL)
        h2p_credfile_close(self->users);
    free(self->challenge.base);
}

static int on_config(h2p_module_scope_t *ms)
{
    const h2p_authentication_conf_t *c = ms->settings->authentication;
    const char *site = ms->site->name;

    if (!ms->settings->authentication->enabled)
        return 0;
    static const struct {
        const char *name;
        size_t offset;
    } later[] = {{"digest", offsetof(h2p_authentication_conf_t, digest.enabled)},
                 {"negotiate", offsetof(h2p_authentication_conf_t, negotiate.enabled)},
                 {"client_certificate", offsetof(h2p_authentication_conf_t, client_certificate.enabled)}};
    for (size_t i = 0; i != sizeof(later) / sizeof(later[0]); ++i)
        if (*(const int *)((const char *)c + later[i].offset))
            h2p_warn(site, "authentication: %s is not implemented yet; it is ignored (no %s challenge, %s credentials get 401)",
                     later[i].name, later[i].name, later[i].name);
    if (c->anonymous && !c->basic.enabled)
        return 0; /* nothing to check: every request is anonymous */
    if (!c->anonymous && !c->basic.enabled)
        h2p_warn(site, "authentication: anonymous: false without basic: every request gets 401 until an implemented "
                       "scheme is enabled");

    authentication_handler_t *self = (void *)h2o_create_handler(ms->pathconf, sizeof(*self));
    self->super.on_req = on_req;
    self->super.dispose = on_dispose;
    self->id = __atomic_fetch_add(&next_handler_id, 1, __ATOMIC_RELAXED);
    self->anonymous = c->anonymous;
    self->basic = c->basic.enabled;
    self->cache_ttl_ms = c->credential_cache_ttl_ms;
    if (self->basic) {
        char err[1024];
        if ((self->users = h2p_credfile_open(H2P_CREDFILE_USERS, c->basic.users_file, err, sizeof(err))) == NULL) {
            const h2p_origin_t *o = &c->basic.users_file_origin;
            snprintf(ms->err, ms->errlen, "%s:%u:%u: site %s: authentication.basic.users_file: %s", o->file != NULL ? o->file : "",
                     o->line, o->column, site, err);
            return -1;
        }
        h2p_credfile_snapshot_t *users = h2p_credfile_acquire(self->users);
        if (users->users.count == 0)
            h2p_warn(site, "authentication: users file %s has no users: basic credentials get 401 until it has",
                     c->basic.users_file);
        h2p_credfile_release(users);
        size_t len = strlen(c->basic.realm) + sizeof("Basic realm=\"\"");
        self->challenge.base = h2o_mem_alloc(len);
        self->challenge.len = (size_t)snprintf(self->challenge.base, len, "Basic realm=\"%s\"", c->basic.realm);
    }
    return 0;
}

const h2p_module_t h2p_module_authentication = {"authentication", H2P_PHASE_REQUEST, on_config, .init_thread = init_thread,
                                                .dispose_thread = dispose_thread};

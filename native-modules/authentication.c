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
 * Checking a bcrypt hash costs milliseconds of CPU, so verified credentials are remembered per
 * thread for credential_cache.ttl, keyed by the exact Authorization value (IIS's token cache).
 *
 * The users file is watched (credfile.h): a change is in effect within H2P_CREDFILE_CHECK_MS,
 * and cache entries name the snapshot of the file they were verified against, so a deleted user
 * or a changed password is never served from the cache.
 */
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#include "frontend/log.h"
#include "native-modules/credfile.h"
#include "native-modules/module.h"

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

static __thread cache_entry_t credential_cache[CACHE_SLOTS];
static uint64_t next_handler_id = 1; /* atomic */

static cache_entry_t *cache_slot(const unsigned char *key)
{
    uint64_t h;
    memcpy(&h, key, sizeof(h));
    return credential_cache + h % CACHE_SLOTS;
}

static const h2p_htpasswd_user_t *cache_lookup(authentication_handler_t *self, const h2p_credfile_snapshot_t *users,
                                               const unsigned char *key, uint64_t now)
{
    cache_entry_t *e = cache_slot(key);
    if (e->owner != self->id || e->snapshot != users->id || now >= e->expires_at || CRYPTO_memcmp(e->key, key, sizeof(e->key)) != 0)
        return NULL;
    return e->user;
}

static void cache_store(authentication_handler_t *self, const h2p_credfile_snapshot_t *users, const unsigned char *key,
                        uint64_t now, const h2p_htpasswd_user_t *user)
{
    cache_entry_t *e = cache_slot(key);
    e->owner = self->id;
    e->snapshot = users->id;
    e->expires_at = now + self->cache_ttl_ms;
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

/* "Basic <token68>": the decoded user and password of a well-formed header, else NULL. */
static const h2p_htpasswd_user_t *verify_basic(const h2p_htpasswd_t *users, h2o_iovec_t value)
{
    const char *p = value.base, *end = value.base + value.len;
    while (p != end && (*p == ' ' || *p == '\t'))
        ++p;
    if ((size_t)(end - p) < 6 || !h2o_lcstris(p, 5, H2O_STRLIT("basic")) || (p[5] != ' ' && p[5] != '\t'))
        return NULL;
    p += 6;
    while (p != end && (*p == ' ' || *p == '\t'))
        ++p;
    while (end != p && (end[-1] == ' ' || end[-1] == '\t'))
        --end;
    if (p == end)
        return NULL;

    unsigned char decoded[MAX_AUTHORIZATION];
    ssize_t len = decode_base64(p, (size_t)(end - p), decoded);
    const unsigned char *colon = len > 0 ? memchr(decoded, ':', (size_t)len) : NULL;
    const h2p_htpasswd_user_t *user = NULL;
    if (colon != NULL && colon != decoded && memchr(decoded, '\0', (size_t)len) == NULL)
        user = h2p_htpasswd_verify(users, (const char *)decoded, (size_t)(colon - decoded), (const char *)colon + 1,
                                   (size_t)(decoded + len - colon - 1));
    OPENSSL_cleanse(decoded, sizeof(decoded));
    return user;
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
    if (!self->basic || value.len > MAX_AUTHORIZATION)
        return send_challenge(self, req, r, "invalid credentials");

    unsigned char key[SHA256_DIGEST_LENGTH];
    uint64_t now = h2o_now(req->conn->ctx->loop);
    h2p_credfile_snapshot_t *users = h2p_credfile_acquire(self->users);
    const h2p_htpasswd_user_t *user = NULL;
    if (self->cache_ttl_ms != 0) {
        SHA256((const unsigned char *)value.base, value.len, key);
        user = cache_lookup(self, users, key, now);
    }
    if (user == NULL && (user = verify_basic(&users->users, value)) != NULL && self->cache_ttl_ms != 0)
        cache_store(self, users, key, now, user);
    /* the name outlives the snapshot: a change of the file may free it mid-request */
    if (user != NULL && r != NULL) {
        r->remote_user = h2o_strdup(&req->pool, user->name, user->name_len);
        r->auth_type = h2o_iovec_init(H2O_STRLIT("Basic"));
    }
    h2p_credfile_release(users);
    return user != NULL ? -1 : send_challenge(self, req, r, "invalid credentials");
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
    const h2p_authentication_conf_t *c = &ms->settings->authentication.c;
    const char *site = ms->site->name;

    if (!ms->settings->authentication.enabled)
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
        self->challenge.base = malloc(len);
        self->challenge.len = (size_t)snprintf(self->challenge.base, len, "Basic realm=\"%s\"", c->basic.realm);
    }
    return 0;
}

const h2p_module_t h2p_module_authentication = {"authentication", H2P_PHASE_REQUEST, on_config};

/*
 * rewrite: IIS URL Rewrite's inbound rules, nginx's try_files.  An internal rewrite: the client
 * sees no redirect, and the application still sees the URI the client sent as REQUEST_URI.
 *
 * Rules are tried in order on the decoded, normalised path; the first whose `match` (PCRE2,
 * compiled once per generation) matches, and whose `unless` does not name what exists there,
 * rewrites the path to `to` with $1..$9 filled in.  One pass: a rewritten path is not matched
 * again, so no loop is possible.  The query string the client sent is kept, after the one `to`
 * carries.  The request then goes on in the scope of its new path (another application or
 * location may hold it) from the module after rewrite: authorization, default documents,
 * handler mapping and the output cache all see the rewritten URL.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <string.h>
#include <sys/stat.h>

#include "frontend/router.h"
#include "handlers/content.h"
#include "native-modules/module.h"
#include "native-modules/rewrite.h"

#define MAX_REFERENCES 10 /* $0..$9 */

typedef struct rewrite_handler {
    h2o_handler_t super;
    const h2p_rewrite_rule_t *rules;
    size_t count;
    h2p_scope_rt_t *scope;
} rewrite_handler_t;

/* The thread's state: one match-data block, big enough for $0..$9 (a pattern with more groups
 * still matches: pcre2_match() then fills what fits and returns 0). */
static void init_thread(h2p_thread_t *th)
{
    if ((H2P_MODULE_THREAD(th, rewrite) = pcre2_match_data_create(MAX_REFERENCES, NULL)) == NULL)
        h2o_fatal("no memory");
}

static void dispose_thread(h2p_thread_t *th)
{
    pcre2_match_data_free(H2P_MODULE_THREAD(th, rewrite));
    H2P_MODULE_THREAD(th, rewrite) = NULL;
}

static int is_unreserved(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
           c == '~';
}

/*
 * Appends `to` with $N replaced by the captures of `subject`.  Captures are percent-encoded
 * (all but unreserved bytes, and '/' in a path) so that nothing a client sent can add a query,
 * a fragment or an escape: the path part is decoded and normalised afterwards, once.
 */
static void expand(h2o_mem_pool_t *pool, h2o_iovec_t *out, const char *to, size_t to_len, const char *subject,
                   const PCRE2_SIZE *ovector, int pairs, int in_path)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t cap = to_len + 1;
    for (size_t i = 0; i + 1 < to_len; ++i)
        if (to[i] == '$' && to[i + 1] >= '0' && to[i + 1] <= '9' && to[i + 1] - '0' < pairs)
            cap += 3 * (ovector[2 * (to[i + 1] - '0') + 1] - ovector[2 * (to[i + 1] - '0')]);
    char *dst = h2o_mem_alloc_pool(pool, cap);
    size_t n = 0;
    for (size_t i = 0; i != to_len; ++i) {
        if (to[i] != '$' || i + 1 == to_len || to[i + 1] < '0' || to[i + 1] > '9') {
            dst[n++] = to[i];
            continue;
        }
        int ref = to[++i] - '0';
        if (ref >= pairs || ovector[2 * ref] == PCRE2_UNSET)
            continue; /* a group that took no part in the match is empty */
        for (PCRE2_SIZE j = ovector[2 * ref]; j != ovector[2 * ref + 1]; ++j) {
            unsigned char c = (unsigned char)subject[j];
            if (is_unreserved(c) || (in_path && c == '/')) {
                dst[n++] = (char)c;
            } else {
                dst[n++] = '%';
                dst[n++] = hex[c >> 4];
                dst[n++] = hex[c & 15];
            }
        }
    }
    *out = h2o_iovec_init(dst, n);
}

/* Rewrites the request to `rule`'s target; -1 when the result is no usable path. */
static int apply(h2o_req_t *req, h2p_request_t *r, const h2p_rewrite_rule_t *rule, const PCRE2_SIZE *ovector, int pairs)
{
    h2o_iovec_t subject = req->path_normalized, encoded, query = {NULL, 0};
    const char *q = strchr(rule->to, '?');
    size_t to_path_len = q != NULL ? (size_t)(q - rule->to) : strlen(rule->to);

    expand(&req->pool, &encoded, rule->to, to_path_len, subject.base, ovector, pairs, 1);
    if (q != NULL)
        expand(&req->pool, &query, q + 1, strlen(q + 1), subject.base, ovector, pairs, 0);
    /* "/a/$1" with "../../x" captured is "/a/%2E%2E/..." no more: the path is decoded and its dot
     * segments resolved here, as libh2o does for the client's path */
    size_t query_at, *norm_indexes; /* (libh2o 2.2.5 writes both) */
    h2o_iovec_t path = h2o_url_normalize_path(&req->pool, encoded.base, encoded.len, &query_at, &norm_indexes);
    if (path.len == 0 || memchr(path.base, '\0', path.len) != NULL)
        return -1;

    /* the client's query string is kept: after the target's own, joined with '&' */
    h2o_iovec_t original = h2p_request_query(r);
    if (q == NULL)
        query = original;
    else if (original.len != 0)
        query = query.len != 0 ? h2o_concat(&req->pool, query, h2o_iovec_init(H2O_STRLIT("&")), original) : original;
    req->path_normalized = path;
    r->query = query;
    r->query_rewritten = 1;
    return 0;
}

static int on_req(h2o_handler_t *_self, h2o_req_t *req)
{
    rewrite_handler_t *self = (void *)_self;
    h2p_request_t *r = h2p_request_of(req);
    h2o_iovec_t path = req->path_normalized;
    pcre2_match_data *match_data = H2P_MODULE_THREAD(r->thread, rewrite);

    for (size_t i = 0; i != self->count; ++i) {
        const h2p_rewrite_rule_t *rule = self->rules + i;
        int rc = pcre2_match(rule->re, (PCRE2_SPTR)path.base, path.len, 0, 0, match_data, NULL);
        if (rc < 0)
            continue; /* no match (or a match limit hit: no match either) */
        if (rule->unless_file || rule->unless_directory) {
            mode_t type = h2p_resource_type(&req->pool, self->scope, path.base, path.len);
            if ((rule->unless_file && type == S_IFREG) || (rule->unless_directory && type == S_IFDIR))
                continue;
        }
        int pairs = rc == 0 ? MAX_REFERENCES : rc;
        if (apply(req, r, rule, pcre2_get_ovector_pointer(match_data), pairs) != 0)
            return h2p_request_deny(r, "rewrite", 400, 0, "Bad Request", "bad rewritten path");
        return h2p_router_resume(req);
    }
    return -1;
}

static int on_config(h2p_module_scope_t *ms)
{
    if (!ms->settings->rewrite->enabled || ms->settings->rewrite->count == 0)
        return 0;
    rewrite_handler_t *self = (void *)h2o_create_handler(ms->pathconf, sizeof(*self));
    self->super.on_req = on_req;
    self->rules = ms->settings->rewrite->rules;
    self->count = ms->settings->rewrite->count;
    self->scope = ms->scope;
    return 0;
}

const h2p_module_t h2p_module_rewrite = {.name = "rewrite",
                                         .phase = H2P_PHASE_REQUEST,
                                         .on_config = on_config,
                                         .resume_after = 1,
                                         .init_thread = init_thread,
                                         .dispose_thread = dispose_thread};

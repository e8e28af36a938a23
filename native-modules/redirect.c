/*
 * IIS HTTP redirect: rules {from, to, status}, the first whose `from` matches the path wins.
 *
 * `from` is an exact path or a wildcard pattern ('*' matches anything, '/' too, and captures
 * it as $1..$9 for `to`); it is matched against the decoded, normalized path, so "/old/%61"
 * is "/old/a".  Captured text is percent-encoded again where the Location needs it, and the
 * client's query string is kept ("?" or "&" after what `to` has).  `to` is an absolute URL or
 * a path, sent as written; a capture never changes the scheme, userinfo, host or port it names
 * (h2p_target_expand: "https://www.example.com$1" with "@evil.com" is ".com/%40evil.com").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "native-modules/match.h"
#include "frontend/alloc.h"
#include "native-modules/module.h"
#include "native-modules/redirect.h"

typedef struct redirect_rule_rt {
    h2o_iovec_t from, to;
    unsigned status;
} redirect_rule_rt_t;

typedef struct redirect_handler {
    h2o_handler_t super;
    redirect_rule_rt_t *rules;
    size_t count;
} redirect_handler_t;

static const char *reason_of(unsigned status)
{
    switch (status) {
    case 301:
        return "Moved Permanently";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    default:
        return "Found";
    }
}

static int on_req(h2o_handler_t *_self, h2o_req_t *req)
{
    redirect_handler_t *self = (void *)_self;
    h2o_iovec_t path = req->path_normalized;

    for (size_t i = 0; i != self->count; ++i) {
        const redirect_rule_rt_t *rule = self->rules + i;
        h2p_capture_t captures[H2P_WILDCARD_MAX_CAPTURES];
        size_t num_captures;
        if (!h2p_wildcard_match(rule->from.base, rule->from.len, path.base, path.len, captures, &num_captures))
            continue;
        const char *query = "";
        size_t query_len = 0;
        if (req->input.query_at != SIZE_MAX) {
            query = req->input.path.base + req->input.query_at + 1;
            query_len = req->input.path.len - req->input.query_at - 1;
        }
        size_t len = h2p_target_expand(NULL, 0, rule->to.base, rule->to.len, path.base, captures, num_captures, query, query_len);
        char *location = h2o_mem_alloc_pool(&req->pool, len + 1);
        h2p_target_expand(location, len, rule->to.base, rule->to.len, path.base, captures, num_captures, query, query_len);
        location[len] = '\0';
        h2p_request_t *r = h2p_request_of(req);
        if (r != NULL) {
            r->ended_by = "redirect";
            r->status = rule->status;
            r->substatus = 0;
        }
        h2o_send_redirect(req, (int)rule->status, reason_of(rule->status), location, len);
        return 0;
    }
    return -1;
}

static void on_dispose(h2o_handler_t *_self)
{
    free(((redirect_handler_t *)_self)->rules);
}

static int on_config(h2p_module_scope_t *ms)
{
    if (!ms->settings->redirect->enabled || ms->settings->redirect->count == 0)
        return 0;
    size_t count = ms->settings->redirect->count;
    const h2p_redirect_rule_t *rules = ms->settings->redirect->rules;
    /* (a target with a control byte, or with a capture where it could change the host, is a
     * configuration error: frontend/config_modules.c) */
    redirect_handler_t *self = (void *)h2o_create_handler(ms->pathconf, sizeof(*self));
    self->super.on_req = on_req;
    self->super.dispose = on_dispose;
    self->rules = h2o_mem_alloc(sizeof(*self->rules) * count);
    self->count = count;
    for (size_t i = 0; i != count; ++i)
        self->rules[i] = (redirect_rule_rt_t){h2o_iovec_init(rules[i].from, strlen(rules[i].from)),
                                              h2o_iovec_init(rules[i].to, strlen(rules[i].to)), rules[i].status};
    return 0;
}

const h2p_module_t h2p_module_redirect = {"redirect", H2P_PHASE_REQUEST, on_config};

/*
 * authorization: IIS URL authorization.  Rules are tried in order and the first one that
 * matches decides; a rule matches when its path glob, its verbs (if any) and its users or roles
 * match.  As in IIS, "*" is everyone (anonymous included) and "?" the anonymous user: "deny *"
 * after "allow alice" leaves /admin to alice alone.  No rule matched = allowed (IIS's
 * default rule allows everyone).  Denied anonymous requests get 401 with the scope's challenge,
 * so that a browser asks for credentials; denied users get 403.
 *
 * Runs after rewrite, on req->path_normalized: the resource actually served is what is checked.
 */
#include <fnmatch.h>
#include <stdio.h>
#include <string.h>

#include "frontend/router.h"
#include "native-modules/htpasswd.h"
#include "native-modules/module.h"

typedef struct authorization_handler {
    h2o_handler_t super;
    const h2p_authz_rule_t *rules;
    size_t count;
    const h2p_groups_t *groups; /* authentication.groups_file, read with the configuration, when a rule names roles */
    h2o_iovec_t challenge;      /* WWW-Authenticate for denied anonymous requests, may be empty */
} authorization_handler_t;

/* A glob over the whole path; "/admin/" + "*" also covers "/admin" itself (no trailing slash). */
static int path_matches(const char *pattern, const char *path, size_t path_len)
{
    if (fnmatch(pattern, path, 0) == 0)
        return 1;
    size_t plen = strlen(pattern);
    return plen >= 2 && strcmp(pattern + plen - 2, "/*") == 0 && path_len == plen - 2 && memcmp(pattern, path, path_len) == 0;
}

static int user_listed(const h2p_strlist_t *users, h2o_iovec_t user)
{
    for (size_t i = 0; i != users->count; ++i) {
        const char *name = users->items[i];
        if (strcmp(name, "*") == 0 || (strcmp(name, "?") == 0 ? user.len == 0 : h2o_memis(name, strlen(name), user.base, user.len)))
            return 1;
    }
    return 0;
}

static int role_listed(authorization_handler_t *self, const h2p_strlist_t *roles, h2o_iovec_t user)
{
    for (size_t i = 0; i != roles->count; ++i) {
        const char *role = roles->items[i];
        if (strcmp(role, "*") == 0 ||
            (strcmp(role, "?") == 0 ? user.len == 0
                                    : user.len != 0 && h2p_groups_is_member(self->groups, role, user.base, user.len)))
            return 1;
    }
    return 0;
}

static int verb_listed(const h2p_strlist_t *verbs, h2o_iovec_t method)
{
    if (verbs->count == 0)
        return 1;
    for (size_t i = 0; i != verbs->count; ++i)
        if (h2o_memis(verbs->items[i], strlen(verbs->items[i]), method.base, method.len))
            return 1;
    return 0;
}

static int on_req(h2o_handler_t *_self, h2o_req_t *req)
{
    authorization_handler_t *self = (void *)_self;
    h2p_request_t *r = h2p_request_of(req);
    h2o_iovec_t user = r != NULL ? r->remote_user : h2o_iovec_init(NULL, 0);
    char *path = h2o_mem_alloc_pool(&req->pool, req->path_normalized.len + 1);
    size_t path_len = 0;

    /* "//admin/a.txt" is the file "/admin/a.txt": runs of slashes are one for the rules too */
    for (size_t i = 0; i != req->path_normalized.len; ++i)
        if (req->path_normalized.base[i] != '/' || path_len == 0 || path[path_len - 1] != '/')
            path[path_len++] = req->path_normalized.base[i];
    path[path_len] = '\0';
    for (size_t i = 0; i != self->count; ++i) {
        const h2p_authz_rule_t *rule = self->rules + i;
        if (rule->path != NULL && !path_matches(rule->path, path, path_len))
            continue;
        if (!verb_listed(&rule->verbs, req->method))
            continue;
        if (!user_listed(&rule->users, user) && !role_listed(self, &rule->roles, user))
            continue;
        if (rule->allow)
            return -1;
        if (user.len == 0) {
            if (self->challenge.len != 0)
                h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, self->challenge.base,
                               self->challenge.len);
            if (r == NULL) {
                h2o_send_error_generic(req, 401, "Unauthorized", "authentication required", H2O_SEND_ERROR_KEEP_HEADERS);
                return 0;
            }
            return h2p_request_deny(r, "authorization", 401, 2, "Unauthorized", "authentication required");
        }
        if (r == NULL) {
            h2o_send_error_403(req, "Forbidden", "access denied", 0);
            return 0;
        }
        return h2p_request_deny(r, "authorization", 403, 0, "Forbidden", "access denied");
    }
    return -1;
}

static void on_dispose(h2o_handler_t *_self)
{
    authorization_handler_t *self = (void *)_self;
    free(self->challenge.base);
}

static int on_config(h2p_module_scope_t *ms)
{
    const h2p_authentication_conf_t *authn = &ms->settings->authentication.c;
    int uses_roles = 0;

    if (!ms->settings->authorization.enabled || ms->settings->authorization.count == 0)
        return 0;
    authorization_handler_t *self = (void *)h2o_create_handler(ms->pathconf, sizeof(*self));
    self->super.on_req = on_req;
    self->super.dispose = on_dispose;
    self->rules = ms->settings->authorization.rules;
    self->count = ms->settings->authorization.count;
    for (size_t i = 0; i != self->count; ++i) {
        for (size_t j = 0; j != self->rules[i].roles.count; ++j) {
            const char *role = self->rules[i].roles.items[j];
            if (strcmp(role, "*") != 0 && strcmp(role, "?") != 0)
                uses_roles = 1;
        }
    }
    if (uses_roles && (self->groups = authn->groups) == NULL) {
        /* the configuration refuses rules with roles where no groups_file applies (and reads the file) */
        const h2p_origin_t *o = &ms->settings->authorization.origin;
        snprintf(ms->err, ms->errlen, "%s:%u:%u: site %s, path %s/: authorization: rules name roles, but no groups file was read",
                 o->file != NULL ? o->file : "", o->line, o->column, ms->site->name, ms->scope->prefix);
        return -1;
    }
    /* the challenge authentication would send: only basic is implemented */
    if (ms->settings->authentication.enabled && authn->basic.enabled) {
        size_t len = strlen(authn->basic.realm) + sizeof("Basic realm=\"\"");
        self->challenge.base = malloc(len);
        self->challenge.len = (size_t)snprintf(self->challenge.base, len, "Basic realm=\"%s\"", authn->basic.realm);
    }
    return 0;
}

const h2p_module_t h2p_module_authorization = {"authorization", H2P_PHASE_REQUEST, on_config};

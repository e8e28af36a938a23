/*
 * authorization: IIS URL authorization.  Rules are tried in order and the first one that
 * matches decides; a rule matches when its path glob, its verbs (if any) and its users or roles
 * match.  As in IIS, "*" is everyone (anonymous included) and "?" the anonymous user: "deny *"
 * after "allow alice" leaves /admin to alice alone.  No rule matched = allowed (IIS's
 * default rule allows everyone).  Denied anonymous requests get 401 with the scope's challenge,
 * so that a browser asks for credentials; denied users get 403.
 *
 * Runs after rewrite: the resource actually served is what is checked (see on_req).
 *
 * The groups file is watched (credfile.h): a change of memberships is in effect within
 * H2P_CREDFILE_CHECK_MS.  While it is unusable (missing, unreadable, malformed), a request that
 * reaches a rule whose decision needs a group membership is denied (403): fail closed.
 */
#include <fnmatch.h>
#include <stdio.h>
#include <string.h>

#include "frontend/router.h"
#include "frontend/alloc.h"
#include "native-modules/credfile.h"
#include "native-modules/module.h"
#include "native-modules/authorization.h"
#include "native-modules/authentication.h"

typedef struct authorization_handler {
    h2o_handler_t super;
    const h2p_authz_rule_t *rules;
    size_t count;
    h2p_credfile_t *groups; /* authentication.groups_file, when a rule names roles */
    h2o_iovec_t challenge;  /* WWW-Authenticate for denied anonymous requests, may be empty */
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

/* 1 when a role of `roles` covers `user`, 0 when none does, -1 when that cannot be known (the
 * groups file is unusable). */
static int role_listed(const h2p_credfile_snapshot_t *groups, const h2p_strlist_t *roles, h2o_iovec_t user)
{
    int unknown = 0;
    for (size_t i = 0; i != roles->count; ++i) {
        const char *role = roles->items[i];
        if (strcmp(role, "*") == 0 || (strcmp(role, "?") == 0 && user.len == 0))
            return 1;
        if (strcmp(role, "?") == 0 || user.len == 0)
            continue;
        if (groups == NULL || !groups->usable)
            unknown = 1;
        else if (h2p_groups_is_member(&groups->groups, role, user.base, user.len))
            return 1;
    }
    return unknown ? -1 : 0;
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

static int deny(authorization_handler_t *self, h2o_req_t *req, h2p_request_t *r, h2o_iovec_t user)
{
    if (user.len == 0) {
        if (self->challenge.len != 0)
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, self->challenge.base,
                           self->challenge.len);
        return h2p_request_deny(r, "authorization", 401, 2, "Unauthorized", "authentication required");
    }
    return h2p_request_deny(r, "authorization", 403, 0, "Forbidden", "access denied");
}

/* The first rule matching `path` (slashes already collapsed by the router) decides: 1 = allowed
 * (also when no rule matched: IIS's default rule allows everyone), 0 = denied.  A membership
 * that cannot be known (an unusable groups file) decides nothing in the user's favour. */
static int allowed(authorization_handler_t *self, h2o_req_t *req, const h2p_credfile_snapshot_t *groups, h2o_iovec_t user,
                   h2o_iovec_t path)
{
    char *p = h2o_mem_alloc_pool(&req->pool, path.len + 1);
    memcpy(p, path.base, path.len);
    p[path.len] = '\0';
    for (size_t i = 0; i != self->count; ++i) {
        const h2p_authz_rule_t *rule = self->rules + i;
        if (rule->path != NULL && !path_matches(rule->path, p, path.len))
            continue;
        if (!verb_listed(&rule->verbs, req->method))
            continue;
        int listed = user_listed(&rule->users, user);
        if (!listed && (listed = role_listed(groups, &rule->roles, user)) < 0)
            return 0;
        if (!listed)
            continue;
        return rule->allow;
    }
    return 1;
}

/*
 * Decides on the URL and on the resource actually served: "/" is also "/index.php" when that is
 * its default document (IIS authorizes both the request and its child request), and
 * "/admin.php/x" is the script "/admin.php" (PATH_INFO is the application's business).  Both must
 * be allowed.
 */
static int on_req(h2o_handler_t *_self, h2o_req_t *req)
{
    authorization_handler_t *self = (void *)_self;
    h2p_request_t *r = h2p_request_of(req);
    h2o_iovec_t user = r->remote_user;
    const struct h2p_served *served = h2p_request_served(r);
    h2o_iovec_t url = req->path_normalized, script = h2o_iovec_init(served->path.base, served->script_len);
    h2p_credfile_snapshot_t *groups = self->groups != NULL && user.len != 0 ? h2p_credfile_acquire(self->groups) : NULL;
    int ok = allowed(self, req, groups, user, url) &&
             (h2o_memis(script.base, script.len, url.base, url.len) || allowed(self, req, groups, user, script));
    if (groups != NULL)
        h2p_credfile_release(groups);
    return ok ? -1 : deny(self, req, r, user);
}

static void on_dispose(h2o_handler_t *_self)
{
    authorization_handler_t *self = (void *)_self;
    if (self->groups != NULL)
        h2p_credfile_close(self->groups);
    free(self->challenge.base);
}

static int on_config(h2p_module_scope_t *ms)
{
    const h2p_origin_t *groups_file_origin;
    const char *groups_file = h2p_authentication_groups_file(ms->settings, &groups_file_origin);
    const char *realm = h2p_authentication_challenge_realm(ms->settings);
    int uses_roles = 0;

    if (!ms->settings->authorization->enabled || ms->settings->authorization->count == 0)
        return 0;
    authorization_handler_t *self = (void *)h2o_create_handler(ms->pathconf, sizeof(*self));
    self->super.on_req = on_req;
    self->super.dispose = on_dispose;
    self->rules = ms->settings->authorization->rules;
    self->count = ms->settings->authorization->count;
    for (size_t i = 0; i != self->count; ++i) {
        for (size_t j = 0; j != self->rules[i].roles.count; ++j) {
            const char *role = self->rules[i].roles.items[j];
            if (strcmp(role, "*") != 0 && strcmp(role, "?") != 0)
                uses_roles = 1;
        }
    }
    if (uses_roles) {
        /* the configuration refuses rules with roles where no groups_file applies, and reads the file
         * once; the watcher (credfile.c) follows it from here on */
        const h2p_origin_t *o = &ms->settings->authorization->origin;
        char err[1024];
        if (groups_file == NULL) {
            /* a location or application that names authentication replaces all its settings, groups_file included */
            snprintf(ms->err, ms->errlen,
                     "%s:%u:%u: site %s, path %s/: authorization: rules name roles, but the authentication settings of that "
                     "path have no groups_file",
                     o->file != NULL ? o->file : "", o->line, o->column, ms->site->name, ms->scope->prefix);
            return -1;
        }
        if ((self->groups = h2p_credfile_open(H2P_CREDFILE_GROUPS, groups_file, err, sizeof(err))) == NULL) {
            o = groups_file_origin;
            snprintf(ms->err, ms->errlen, "%s:%u:%u: site %s: authentication.groups_file: %s", o->file != NULL ? o->file : "",
                     o->line, o->column, ms->site->name, err);
            return -1;
        }
    }
    /* the challenge authentication would send */
    if (realm != NULL) {
        size_t len = strlen(realm) + sizeof("Basic realm=\"\"");
        self->challenge.base = h2o_mem_alloc(len);
        self->challenge.len = (size_t)snprintf(self->challenge.base, len, "Basic realm=\"%s\"", realm);
    }
    return 0;
}

const h2p_module_t h2p_module_authorization = {"authorization", H2P_PHASE_REQUEST, on_config};

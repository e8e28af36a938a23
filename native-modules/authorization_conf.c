/* authorization's settings: the URL authorization rules. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "native-modules/module_conf.h"
#include "native-modules/authorization.h"
#include "native-modules/authentication.h"

#define RULE(type, field) offsetof(type, field)

static const h2p_cfg_key_t authz_who_keys[] = {
    {"users", H2P_CFG_STRLIST, RULE(h2p_authz_rule_t, users)},
    {"roles", H2P_CFG_STRLIST, RULE(h2p_authz_rule_t, roles)},
    {"verbs", H2P_CFG_CUSTOM, RULE(h2p_authz_rule_t, verbs), .parse = h2p_cfg_parse_verbs},
    {NULL}};

static void parse_authz_allow(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    ((h2p_authz_rule_t *)base)->allow = 1;
    h2p_cfg_parse_map(ctx, node, authz_who_keys, base);
}

static void parse_authz_deny(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    ((h2p_authz_rule_t *)base)->allow = 0;
    h2p_cfg_parse_map(ctx, node, authz_who_keys, base);
}

static const h2p_cfg_key_t authz_rule_keys[] = {{"path", H2P_CFG_STRING, RULE(h2p_authz_rule_t, path)},
                                                {"allow", H2P_CFG_CUSTOM, 0, .parse = parse_authz_allow},
                                                {"deny", H2P_CFG_CUSTOM, 0, .parse = parse_authz_deny},
                                                {NULL}};

static void check_authz_rule(h2p_cfg_ctx_t *ctx, yaml_node_t *item, void *data)
{
    h2p_authz_rule_t *rule = data;
    yaml_node_t *allow = h2p_cfg_map_get(ctx, item, "allow"), *deny = h2p_cfg_map_get(ctx, item, "deny");

    rule->origin = h2p_cfg_origin(ctx, item);
    if ((allow == NULL) == (deny == NULL))
        h2p_cfg_error(ctx, item, "a rule needs exactly one of allow or deny");
    else if (rule->users.count == 0 && rule->roles.count == 0)
        h2p_cfg_error_at_key(ctx, item, allow != NULL ? "allow" : "deny",
                             "a rule needs users or roles (\"*\" = everyone, \"?\" = anonymous)");
}

static void parse_authorization(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *settings)
{
    h2p_authorization_conf_t *c = settings;

    c->rules = h2p_cfg_parse_rules(ctx, node, authz_rule_keys, sizeof(h2p_authz_rule_t), &c->count, check_authz_rule);
}

static const char *role_needing_groups(const h2p_authorization_conf_t *c)
{
    if (!c->enabled)
        return NULL;
    for (size_t i = 0; i < c->count; i++)
        for (size_t j = 0; j < c->rules[i].roles.count; j++) {
            const char *role = c->rules[i].roles.items[j];
            if (strcmp(role, "*") != 0 && strcmp(role, "?") != 0)
                return role;
        }
    return NULL;
}

/* Authorization rules that name roles need a groups_file in the authentication settings of
 * every scope they apply to; a location or application that names authentication replaces all
 * of its settings, groups_file included.  The scopes are the router's: each application, and
 * each location under it, with the settings merged the same way. */
static void check_roles_have_groups(h2p_cfg_ctx_t *ctx, const h2p_site_conf_t *site)
{
    h2p_cfg_names_t reported = {NULL, NULL, 0, 0};
    const h2p_modules_conf_t *site_modules = &site->applications[0].scope.modules;

    for (size_t a = 0; a < site->num_applications; a++) {
        const h2p_application_conf_t *app = &site->applications[a];
        const char *prefix = a == 0 ? "" : app->path;
        h2p_modules_conf_t app_modules, scope_modules;
        h2p_modules_merge(&app_modules, site_modules, &app->scope.modules);
        for (size_t l = 0; l <= site->num_locations; l++) {
            const h2p_location_conf_t *location = l < site->num_locations ? &site->locations[l] : NULL;
            const char *role, *where = location != NULL ? location->path : a == 0 ? "/" : app->path;
            if (location != NULL && !h2p_location_applies(prefix, strlen(prefix), location->path))
                continue;
            h2p_modules_merge(&scope_modules, &app_modules, location != NULL ? &location->scope.modules : &app_modules);
            const h2p_authorization_conf_t *c = scope_modules.authorization;
            if ((role = role_needing_groups(c)) == NULL || h2p_authentication_groups_file(&scope_modules, NULL) != NULL ||
                c->path == NULL || h2p_cfg_names_put(&reported, c->path, 0) != SIZE_MAX)
                continue;
            h2p_cfg_error_at(ctx, &c->origin, c->path,
                             "the rules name role \"%s\", but the authentication settings that apply to %s have no groups_file "
                             "(a scope that names authentication replaces all of its settings, groups_file included)",
                             role, where);
        }
    }
    h2p_cfg_names_free(&reported);
}

const h2p_module_conf_t h2p_conf_authorization = {.size = sizeof(h2p_authorization_conf_t),
                                                  .default_enabled = 1,
                                                  .parse = parse_authorization,
                                                  .check_site = check_roles_have_groups,
                                                  .rules = 1};

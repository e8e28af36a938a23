/* authorization's settings: the URL authorization rules. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "native-modules/module_conf.h"

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

static void parse_authorization(h2p_cfg_ctx_t *ctx, yaml_node_t *node, h2p_modules_conf_t *m)
{
    m->authorization.rules =
        h2p_cfg_parse_rules(ctx, node, authz_rule_keys, sizeof(h2p_authz_rule_t), &m->authorization.count, check_authz_rule);
}

const h2p_module_conf_t h2p_conf_authorization = {.default_enabled = 1, .parse = parse_authorization, .rules = 1};

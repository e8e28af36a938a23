/* redirect's settings: rules whose targets a capture can never move to another host. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "native-modules/module_conf.h"
#include "native-modules/redirect.h"

#include "native-modules/match.h"

static void parse_redirect_status(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    uint64_t status;

    if (h2p_cfg_number(ctx, node, 0, 0, &status) != 0)
        return;
    if (status != 301 && status != 302 && status != 307 && status != 308) {
        h2p_cfg_error(ctx, node, "bad redirect status %llu (use 301, 302, 307 or 308)", (unsigned long long)status);
        return;
    }
    ((h2p_redirect_rule_t *)base)->status = status;
}

static const h2p_cfg_key_t redirect_keys[] = {{"from", H2P_CFG_STRING, RULE(h2p_redirect_rule_t, from), .flags = H2P_CFG_REQUIRED},
                                              {"to", H2P_CFG_STRING, RULE(h2p_redirect_rule_t, to), .flags = H2P_CFG_REQUIRED},
                                              {"status", H2P_CFG_CUSTOM, 0, .parse = parse_redirect_status},
                                              {NULL}};

static void check_redirect(h2p_cfg_ctx_t *ctx, yaml_node_t *item, void *data)
{
    h2p_redirect_rule_t *rule = data;
    const char *problem;

    if (rule->status == 0)
        rule->status = 302;
    /* a Location header cannot carry control bytes (response splitting) */
    for (const char *c = rule->to; c != NULL && *c != '\0'; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f) {
            char message[96];
            snprintf(message, sizeof(message), "bad redirect target: control character 0x%02x (a Location header cannot carry it)",
                     (unsigned char)*c);
            h2p_cfg_error_at_key(ctx, item, "to", message);
            break;
        }
    }
    if (rule->to != NULL && (problem = h2p_target_check(rule->to, strlen(rule->to))) != NULL)
        h2p_cfg_error_at_key(ctx, item, "to", problem);
}

static void parse_redirect(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *settings)
{
    h2p_redirect_conf_t *c = settings;

    c->rules = h2p_cfg_parse_rules(ctx, node, redirect_keys, sizeof(h2p_redirect_rule_t), &c->count, check_redirect);
}

const h2p_module_conf_t h2p_conf_redirect = {
    .size = sizeof(h2p_redirect_conf_t), .default_enabled = 1, .parse = parse_redirect, .rules = 1};

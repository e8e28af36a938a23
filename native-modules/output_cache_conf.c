/* output_cache's settings: the rules that say what may be kept, and for how long. */
#include <stdlib.h>
#include <string.h>

#include "native-modules/module_conf.h"
#include "native-modules/output_cache.h"

static const h2p_cfg_key_t output_cache_keys[] = {
    {"path", H2P_CFG_STRING, RULE(h2p_output_cache_rule_t, path), .flags = H2P_CFG_REQUIRED},
    {"duration", H2P_CFG_DURATION, RULE(h2p_output_cache_rule_t, duration_ms), 1, .flags = H2P_CFG_REQUIRED},
    {"vary_by_query", H2P_CFG_BOOL, RULE(h2p_output_cache_rule_t, vary_by_query)},
    {"vary_by_headers", H2P_CFG_CUSTOM, RULE(h2p_output_cache_rule_t, vary_by_headers), .parse = h2p_cfg_parse_header_names},
    {"stale_while_revalidate", H2P_CFG_DURATION, RULE(h2p_output_cache_rule_t, stale_while_revalidate_ms)},
    {"stale_if_error", H2P_CFG_DURATION, RULE(h2p_output_cache_rule_t, stale_if_error_ms)},
    {NULL}};

static void parse_output_cache(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *settings)
{
    h2p_output_cache_conf_t *c = settings;

    c->rules = h2p_cfg_parse_rules(ctx, node, output_cache_keys, sizeof(h2p_output_cache_rule_t), &c->count, NULL);
}

const h2p_module_conf_t h2p_conf_output_cache = {
    .size = sizeof(h2p_output_cache_conf_t), .default_enabled = 1, .parse = parse_output_cache, .rules = 1};

/* ip_restriction's settings: CIDR lists and the proxies whose X-Forwarded-For is believed. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "native-modules/module_conf.h"
#include "native-modules/ip_restriction.h"

static void parse_cidrs(h2p_cfg_ctx_t *ctx, yaml_node_t *node, h2p_cidr_t **cidrs, size_t *count)
{
    h2p_strlist_t texts = {NULL, 0};

    *count = 0;
    if (h2p_cfg_strlist(ctx, node, 0, &texts) != 0)
        return;
    *cidrs = h2p_cfg_alloc(ctx->arena, texts.count, sizeof(**cidrs));
    for (size_t i = 0; i < texts.count; i++) {
        if (h2p_parse_cidr(texts.items[i], &(*cidrs)[*count]) == 0) {
            (*count)++;
        } else {
            size_t mark = h2p_cfg_path_push_index(ctx, i);
            char *slash = strchr(texts.items[i], '/');
            h2p_cidr_t address;
            if (slash != NULL && (*slash = '\0', h2p_parse_cidr(texts.items[i], &address) == 0)) {
                *slash = '/';
                h2p_cfg_error(ctx, h2p_cfg_seq_item(ctx, node, i), "bad CIDR \"%s\": prefix length must be 0..%d", texts.items[i],
                              address.family == AF_INET ? 32 : 128);
            } else {
                if (slash != NULL)
                    *slash = '/';
                h2p_cfg_error(ctx, h2p_cfg_seq_item(ctx, node, i), "bad CIDR \"%s\" (want an IP address with an optional /prefix)",
                              texts.items[i]);
            }
            h2p_cfg_path_pop(ctx, mark);
        }
    }
}

static void parse_allow_cidrs(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_ip_restriction_conf_t *c = (h2p_ip_restriction_conf_t *)base;
    parse_cidrs(ctx, node, &c->allow, &c->num_allow);
}

static void parse_deny_cidrs(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_ip_restriction_conf_t *c = (h2p_ip_restriction_conf_t *)base;
    parse_cidrs(ctx, node, &c->deny, &c->num_deny);
}

static void parse_trusted_proxies(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_ip_restriction_conf_t *c = (h2p_ip_restriction_conf_t *)base;
    parse_cidrs(ctx, node, &c->trusted_proxies, &c->num_trusted_proxies);
}

static void ip_restriction_init(h2p_cfg_ctx_t *ctx, void *settings)
{
    h2p_ip_restriction_conf_t *c = settings;

    c->default_allow = 1;
}

static const char *const deny_allow_names[] = {"deny", "allow", NULL}; /* index = default_allow */

static const h2p_cfg_key_t ip_restriction_keys[] = {
    {"enabled", H2P_CFG_BOOL, SETTING(h2p_ip_restriction_conf_t, enabled)},
    {"default", H2P_CFG_ENUM, SETTING(h2p_ip_restriction_conf_t, default_allow), .arg = deny_allow_names},
    {"allow", H2P_CFG_CUSTOM, 0, .parse = parse_allow_cidrs},
    {"deny", H2P_CFG_CUSTOM, 0, .parse = parse_deny_cidrs},
    {"trusted_proxies", H2P_CFG_CUSTOM, 0, .parse = parse_trusted_proxies},
    {NULL}};

const h2p_module_conf_t h2p_conf_ip_restriction = {
    .size = sizeof(h2p_ip_restriction_conf_t), .default_enabled = 1, .init = ip_restriction_init, .keys = ip_restriction_keys};

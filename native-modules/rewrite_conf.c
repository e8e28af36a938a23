/* rewrite's settings: PCRE2 rules, compiled once per configuration. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "native-modules/module_conf.h"
#include "native-modules/rewrite.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

static void parse_rewrite_unless(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_rewrite_rule_t *rule = base;
    h2p_strlist_t list = {NULL, 0};

    if (h2p_cfg_strlist(ctx, node, 0, &list) != 0)
        return;
    for (size_t i = 0; i < list.count; i++) {
        if (strcmp(list.items[i], "file") == 0) {
            rule->unless_file = 1;
        } else if (strcmp(list.items[i], "directory") == 0) {
            rule->unless_directory = 1;
        } else {
            size_t mark = h2p_cfg_path_push_index(ctx, i);
            h2p_cfg_error(ctx, h2p_cfg_seq_item(ctx, node, i), "bad value \"%s\" (expected one of: file, directory)",
                          list.items[i]);
            h2p_cfg_path_pop(ctx, mark);
        }
    }
}

static const h2p_cfg_key_t rewrite_keys[] = {{"match", H2P_CFG_STRING, RULE(h2p_rewrite_rule_t, match), .flags = H2P_CFG_REQUIRED},
                                             {"to", H2P_CFG_STRING, RULE(h2p_rewrite_rule_t, to), .flags = H2P_CFG_REQUIRED},
                                             {"unless", H2P_CFG_CUSTOM, 0, .parse = parse_rewrite_unless},
                                             {NULL}};

static void free_regex(void *re)
{
    pcre2_code_free(re);
}

/* The highest $N in `to` ("$" followed by a digit 1..9), 0 if none. */
static unsigned highest_reference(const char *to)
{
    unsigned highest = 0;
    for (const char *p = to; (p = strchr(p, '$')) != NULL; ++p)
        if (p[1] >= '1' && p[1] <= '9' && (unsigned)(p[1] - '0') > highest)
            highest = p[1] - '0';
    return highest;
}

/* `match` is compiled once per generation (what -t and a reload check is what runs) */
static void check_rewrite(h2p_cfg_ctx_t *ctx, yaml_node_t *item, void *data)
{
    h2p_rewrite_rule_t *rule = data;
    int code;
    PCRE2_SIZE offset;
    uint32_t captures = 0;

    rule->origin = h2p_cfg_origin(ctx, item);
    if (rule->match == NULL || rule->to == NULL)
        return;
    if ((rule->re = pcre2_compile((PCRE2_SPTR)rule->match, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &code,
                                  &offset, NULL)) == NULL) {
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(code, message, sizeof(message));
        size_t mark = h2p_cfg_path_push_key(ctx, "match");
        h2p_cfg_error(ctx, h2p_cfg_map_get(ctx, item, "match"), "bad regular expression: %s at offset %zu", (char *)message,
                      (size_t)offset);
        h2p_cfg_path_pop(ctx, mark);
        return;
    }
    h2p_cfg_arena_on_free(ctx->arena, free_regex, rule->re);
    pcre2_jit_compile(rule->re, PCRE2_JIT_COMPLETE); /* the interpreter runs where JIT is not available */
    pcre2_pattern_info(rule->re, PCRE2_INFO_CAPTURECOUNT, &captures);
    unsigned wanted = highest_reference(rule->to);
    if (wanted > captures) {
        size_t mark = h2p_cfg_path_push_key(ctx, "to");
        h2p_cfg_error(ctx, h2p_cfg_map_get(ctx, item, "to"), "$%u names a capture the match has not (it has %u)", wanted,
                      (unsigned)captures);
        h2p_cfg_path_pop(ctx, mark);
    }
    if (rule->to[0] != '/') {
        size_t mark = h2p_cfg_path_push_key(ctx, "to");
        h2p_cfg_error(ctx, h2p_cfg_map_get(ctx, item, "to"), "a rewrite target is a path on this site: it must start with '/'");
        h2p_cfg_path_pop(ctx, mark);
    }
}

static void parse_rewrite(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *settings)
{
    h2p_rewrite_conf_t *c = settings;

    c->rules = h2p_cfg_parse_rules(ctx, node, rewrite_keys, sizeof(h2p_rewrite_rule_t), &c->count, check_rewrite);
}

const h2p_module_conf_t h2p_conf_rewrite = {
    .size = sizeof(h2p_rewrite_conf_t), .default_enabled = 1, .parse = parse_rewrite, .rules = 1};

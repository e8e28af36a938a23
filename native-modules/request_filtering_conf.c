/* request_filtering's settings: IIS's defaults, the lists, and the hidden segments every site gets. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "native-modules/module_conf.h"
#include "native-modules/request_filtering.h"

/* A path segment, optionally "!" first (remove) and "*" last (prefix). */
static int valid_segment(const char *s)
{
    const char *name = s[0] == '!' ? s + 1 : s, *star = strchr(name, '*');
    return name[0] != '\0' && name[0] != '*' && strchr(name, '/') == NULL && (star == NULL || star[1] == '\0');
}

/*
 * What no site means to publish: server and PHP settings, version-control metadata, secrets.
 * "/.well-known/" stays reachable.  A trailing '*' matches any name with that prefix.
 */
static const char *const default_hidden_segments[] = {".ht*", ".git*", ".svn", ".hg*", ".bzr", ".env*", ".user.ini", ".DS_Store"};

static void set_default_hidden_segments(h2p_cfg_ctx_t *ctx, h2p_strlist_t *list)
{
    size_t n = sizeof(default_hidden_segments) / sizeof(default_hidden_segments[0]);
    list->items = h2p_cfg_alloc(ctx->arena, n + 1, sizeof(char *));
    for (list->count = 0; list->count != n; ++list->count)
        list->items[list->count] = h2p_cfg_strdup(ctx->arena, default_hidden_segments[list->count]);
}

/* Names are added to the defaults; "!name" takes a name (a default one too) off the list. */
static void parse_segments(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_strlist_t *list = (h2p_strlist_t *)((char *)base + key->offset), given = {NULL, 0};
    h2p_cfg_checked_list(ctx, node, &given, 0, valid_segment, "path segment");
    set_default_hidden_segments(ctx, list);
    char **items = h2p_cfg_alloc(ctx->arena, list->count + given.count + 1, sizeof(char *));
    memcpy(items, list->items, sizeof(char *) * list->count);
    list->items = items;
    for (size_t i = 0; i != given.count; ++i) {
        if (given.items[i][0] != '!') {
            list->items[list->count++] = given.items[i];
            continue;
        }
        size_t kept = 0;
        for (size_t j = 0; j != list->count; ++j)
            if (strcasecmp(list->items[j], given.items[i] + 1) != 0)
                list->items[kept++] = list->items[j];
        list->count = kept;
    }
}

/* ---- request_filtering -------------------------------------------------------------------- */

static void request_filtering_init(h2p_cfg_ctx_t *ctx, void *settings)
{
    h2p_request_filtering_conf_t *c = settings;

    /* IIS's defaults; `..` segments, `\` and NUL are refused always, not through deny_sequences */
    c->max_url = 4096;
    c->max_query_string = 2048;
    c->max_header_size = 16384;
    c->allow_double_escaping = 0;
    c->allow_high_bit = 1;
    set_default_hidden_segments(ctx, &c->hidden_segments);
}

static const h2p_cfg_key_t request_filtering_verbs_keys[] = {
    {"allow", H2P_CFG_CUSTOM, SETTING(h2p_request_filtering_conf_t, verbs_allow), .parse = h2p_cfg_parse_verbs},
    {"deny", H2P_CFG_CUSTOM, SETTING(h2p_request_filtering_conf_t, verbs_deny), .parse = h2p_cfg_parse_verbs},
    {NULL}};

static const h2p_cfg_key_t request_filtering_extensions_keys[] = {
    {"allow", H2P_CFG_STRLIST, SETTING(h2p_request_filtering_conf_t, extensions_allow), .flags = H2P_CFG_EXTENSION},
    {"deny", H2P_CFG_STRLIST, SETTING(h2p_request_filtering_conf_t, extensions_deny), .flags = H2P_CFG_EXTENSION},
    {NULL}};

static const h2p_cfg_key_t request_filtering_keys[] = {
    {"enabled", H2P_CFG_BOOL, SETTING(h2p_request_filtering_conf_t, enabled)},
    {"verbs", H2P_CFG_MAP, 0, .arg = request_filtering_verbs_keys},
    {"file_extensions", H2P_CFG_MAP, 0, .arg = request_filtering_extensions_keys},
    {"hidden_segments", H2P_CFG_CUSTOM, SETTING(h2p_request_filtering_conf_t, hidden_segments), .parse = parse_segments},
    {"deny_sequences", H2P_CFG_STRLIST, SETTING(h2p_request_filtering_conf_t, deny_sequences)},
    {"max_url", H2P_CFG_SIZE, SETTING(h2p_request_filtering_conf_t, max_url), 1},
    {"max_query_string", H2P_CFG_SIZE, SETTING(h2p_request_filtering_conf_t, max_query_string), 0},
    {"max_header_size", H2P_CFG_SIZE, SETTING(h2p_request_filtering_conf_t, max_header_size), 1},
    {"allow_double_escaping", H2P_CFG_BOOL, SETTING(h2p_request_filtering_conf_t, allow_double_escaping)},
    {"allow_high_bit", H2P_CFG_BOOL, SETTING(h2p_request_filtering_conf_t, allow_high_bit)},
    {NULL}};

const h2p_module_conf_t h2p_conf_request_filtering = {.size = sizeof(h2p_request_filtering_conf_t),
                                                      .default_enabled = 1,
                                                      .init = request_filtering_init,
                                                      .keys = request_filtering_keys};

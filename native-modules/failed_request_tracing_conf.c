/* failed_request_tracing's settings: which requests are traced, where, how many traces are kept. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "native-modules/module_conf.h"
#include "native-modules/failed_request_tracing.h"

static int parse_status_code(const char *s, size_t len, unsigned *out)
{
    unsigned code = 0;

    if (len != 3)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        code = code * 10 + (s[i] - '0');
    }
    if (code < 100 || code > 599)
        return -1;
    *out = code;
    return 0;
}

/* [500-599, 404]: single codes or "from-to" ranges */
static void parse_status_ranges(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_failed_request_tracing_conf_t *c = base;
    h2p_strlist_t list = {NULL, 0};

    if (h2p_cfg_strlist(ctx, node, 0, &list) != 0)
        return;
    c->status = h2p_cfg_alloc(ctx->arena, list.count, sizeof(h2p_status_range_t));
    c->num_status = 0;
    for (size_t i = 0; i < list.count; i++) {
        h2p_status_range_t *range = &c->status[c->num_status];
        const char *text = list.items[i], *dash = strchr(text, '-');
        int ok;
        if (dash == NULL) {
            ok = parse_status_code(text, strlen(text), &range->from) == 0;
            range->to = range->from;
        } else {
            ok = parse_status_code(text, dash - text, &range->from) == 0 &&
                 parse_status_code(dash + 1, strlen(dash + 1), &range->to) == 0 && range->from <= range->to;
        }
        if (ok) {
            c->num_status++;
        } else {
            size_t mark = h2p_cfg_path_push_index(ctx, i);
            h2p_cfg_error(ctx, h2p_cfg_seq_item(ctx, node, i), "bad status \"%s\" (want a code 100..599 or a range like 500-599)",
                          text);
            h2p_cfg_path_pop(ctx, mark);
        }
    }
}

static void failed_request_tracing_init(h2p_cfg_ctx_t *ctx, void *settings)
{
    h2p_failed_request_tracing_conf_t *c = settings;

    c->max_files = 1000; /* the newest traces kept per directory */
}

static const h2p_cfg_key_t failed_request_tracing_keys[] = {
    {"enabled", H2P_CFG_BOOL, SETTING(h2p_failed_request_tracing_conf_t, enabled)},
    {"status", H2P_CFG_CUSTOM, 0, .parse = parse_status_ranges},
    {"time_taken", H2P_CFG_DURATION, SETTING(h2p_failed_request_tracing_conf_t, time_taken_ms), 0},
    {"dir", H2P_CFG_PATH, SETTING(h2p_failed_request_tracing_conf_t, dir)},
    {"max_files", H2P_CFG_UINT, SETTING(h2p_failed_request_tracing_conf_t, max_files), 1, 1000000}, /* added key */
    {NULL}};

/* the trace directory: `dir`, or <log_dir>/<site>/FailedReqLogFiles */
static void failed_request_tracing_prepare_dirs(const h2p_config_t *conf, const h2p_site_conf_t *site, const void *settings,
                                                void (*prepare)(const char *dir, void *arg), void *arg)
{
    const h2p_failed_request_tracing_conf_t *c = settings;
    char path[PATH_MAX];
    if (c->dir != NULL) {
        prepare(c->dir, arg);
    } else if (conf->server.log_dir != NULL) {
        snprintf(path, sizeof(path), "%s/%s/%s", conf->server.log_dir, site->name, H2P_TRACE_DEFAULT_SUBDIR);
        prepare(path, arg);
    }
}

const h2p_module_conf_t h2p_conf_failed_request_tracing = {.size = sizeof(h2p_failed_request_tracing_conf_t),
                                                           .default_enabled = 0,
                                                           .init = failed_request_tracing_init,
                                                           .keys = failed_request_tracing_keys,
                                                           .prepare_dirs = failed_request_tracing_prepare_dirs};

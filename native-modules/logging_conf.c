/* logging's settings: the W3C log's format and rotation. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "native-modules/module_conf.h"
#include "native-modules/logging.h"

static const char *const log_format_names[] = {"w3c", "json", NULL};
static const char *const log_rotate_names[] = {"daily", "hourly", "size", "none", NULL};

static void logging_init(h2p_cfg_ctx_t *ctx, void *settings)
{
    h2p_logging_conf_t *c = settings;

    c->format = h2p_cfg_strdup(ctx->arena, "w3c");
    c->rotate = h2p_cfg_strdup(ctx->arena, "daily");
    c->max_size = 20 * 1024 * 1024; /* IIS's truncateSize */
}

static const h2p_cfg_key_t logging_keys[] = {
    {"enabled", H2P_CFG_BOOL, SETTING(h2p_logging_conf_t, enabled)},
    {"format", H2P_CFG_ENUM_STRING, SETTING(h2p_logging_conf_t, format), .arg = log_format_names},
    {"rotate", H2P_CFG_ENUM_STRING, SETTING(h2p_logging_conf_t, rotate), .arg = log_rotate_names},
    {"max_size", H2P_CFG_SIZE, SETTING(h2p_logging_conf_t, max_size), 1},
    {NULL}};

/* A status code 100..599 written as exactly `len` digits. */

/* the site's log directory, <log_dir>/<site> */
static void logging_prepare_dirs(const h2p_config_t *conf, const h2p_site_conf_t *site, const void *settings,
                                 void (*prepare)(const char *dir, void *arg), void *arg)
{
    char path[PATH_MAX];
    if (conf->server.log_dir == NULL)
        return;
    snprintf(path, sizeof(path), "%s/%s", conf->server.log_dir, site->name);
    prepare(path, arg);
}

const h2p_module_conf_t h2p_conf_logging = {.size = sizeof(h2p_logging_conf_t),
                                            .default_enabled = 1,
                                            .init = logging_init,
                                            .keys = logging_keys,
                                            .prepare_dirs = logging_prepare_dirs};

/* logging's settings: the W3C log's format and rotation. */
#include <stdlib.h>
#include <string.h>

#include "native-modules/module_conf.h"

static const char *const log_format_names[] = {"w3c", "json", NULL};
static const char *const log_rotate_names[] = {"daily", "hourly", "size", "none", NULL};

static void logging_init(h2p_cfg_ctx_t *ctx, h2p_modules_conf_t *m)
{
    m->logging.format = h2p_cfg_strdup(ctx->arena, "w3c");
    m->logging.rotate = h2p_cfg_strdup(ctx->arena, "daily");
    m->logging.max_size = 20 * 1024 * 1024; /* IIS's truncateSize */
}

static const h2p_cfg_key_t logging_keys[] = {{"enabled", H2P_CFG_BOOL, MOD(logging.enabled)},
                                             {"format", H2P_CFG_ENUM_STRING, MOD(logging.format), .arg = log_format_names},
                                             {"rotate", H2P_CFG_ENUM_STRING, MOD(logging.rotate), .arg = log_rotate_names},
                                             {"max_size", H2P_CFG_SIZE, MOD(logging.max_size), 1},
                                             {NULL}};

/* A status code 100..599 written as exactly `len` digits. */

const h2p_module_conf_t h2p_conf_logging = {.default_enabled = 1, .init = logging_init, .keys = logging_keys};

/* compression's settings: which responses, of which types, from which size. */
#include <stdlib.h>
#include <string.h>

#include "native-modules/module_conf.h"

static void compression_init(h2p_cfg_ctx_t *ctx, h2p_modules_conf_t *m)
{
    static const char *const types[] = {"text/*", "application/javascript", "application/json", "application/xml", "image/svg+xml"};
    /* IIS: static compression on, dynamic (worker output) off unless asked for */
    m->compression.static_ = 1;
    m->compression.dynamic = 0;
    h2p_cfg_strlist_set(ctx, &m->compression.types, types, sizeof(types) / sizeof(types[0]));
    m->compression.min_size = 256;
}

static const h2p_cfg_key_t compression_keys[] = {
    {"enabled", H2P_CFG_BOOL, MOD(compression.enabled)},
    {"dynamic", H2P_CFG_BOOL, MOD(compression.dynamic)},
    {"static", H2P_CFG_BOOL, MOD(compression.static_)},
    {"types", H2P_CFG_CUSTOM, MOD(compression.types), .parse = h2p_cfg_parse_mime_types},
    {"min_size", H2P_CFG_SIZE, MOD(compression.min_size), 0},
    {NULL}};

const h2p_module_conf_t h2p_conf_compression = {.default_enabled = 1, .init = compression_init, .keys = compression_keys};

/* compression's settings: which responses, of which types, from which size. */
#include <stdlib.h>
#include <string.h>

#include "native-modules/module_conf.h"
#include "native-modules/compression.h"

static void compression_init(h2p_cfg_ctx_t *ctx, void *settings)
{
    h2p_compression_conf_t *c = settings;

    static const char *const types[] = {"text/*", "application/javascript", "application/json", "application/xml", "image/svg+xml"};
    /* IIS: static compression on, dynamic (worker output) off unless asked for */
    c->static_ = 1;
    c->dynamic = 0;
    h2p_cfg_strlist_set(ctx, &c->types, types, sizeof(types) / sizeof(types[0]));
    c->min_size = 256;
}

static const h2p_cfg_key_t compression_keys[] = {
    {"enabled", H2P_CFG_BOOL, SETTING(h2p_compression_conf_t, enabled)},
    {"dynamic", H2P_CFG_BOOL, SETTING(h2p_compression_conf_t, dynamic)},
    {"static", H2P_CFG_BOOL, SETTING(h2p_compression_conf_t, static_)},
    {"types", H2P_CFG_CUSTOM, SETTING(h2p_compression_conf_t, types), .parse = h2p_cfg_parse_mime_types},
    {"min_size", H2P_CFG_SIZE, SETTING(h2p_compression_conf_t, min_size), 0},
    {NULL}};

const h2p_module_conf_t h2p_conf_compression = {
    .size = sizeof(h2p_compression_conf_t), .default_enabled = 1, .init = compression_init, .keys = compression_keys};

/* webdav's settings: validated, as the configuration contract fixes them, and used by no code yet. */
#include <string.h>

#include "native-modules/module_conf.h"
#include "native-modules/webdav.h"

static const h2p_cfg_key_t webdav_keys[] = {{"enabled", H2P_CFG_BOOL, SETTING(h2p_webdav_conf_t, enabled)},
                                            {"depth_infinity", H2P_CFG_BOOL, SETTING(h2p_webdav_conf_t, depth_infinity)},
                                            {NULL}};

static void webdav_init(h2p_cfg_ctx_t *ctx, void *settings)
{
    h2p_webdav_conf_t *c = settings;
    c->depth_infinity = 0;
}

const h2p_module_conf_t h2p_conf_webdav = {
    .size = sizeof(h2p_webdav_conf_t), .default_enabled = 0, .init = webdav_init, .keys = webdav_keys};

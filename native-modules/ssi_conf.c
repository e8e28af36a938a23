/* ssi's settings: validated, as the configuration contract fixes them, and used by no code yet. */
#include <string.h>

#include "native-modules/module_conf.h"
#include "native-modules/ssi.h"

static void ssi_init(h2p_cfg_ctx_t *ctx, void *settings)
{
    static const char *const extensions[] = {".shtml", ".shtm", ".stm"};
    h2p_ssi_conf_t *c = settings;
    h2p_cfg_strlist_set(ctx, &c->extensions, extensions, 3);
    c->exec = 0;
}

static const h2p_cfg_key_t ssi_keys[] = {
    {"enabled", H2P_CFG_BOOL, SETTING(h2p_ssi_conf_t, enabled)},
    {"extensions", H2P_CFG_STRLIST, SETTING(h2p_ssi_conf_t, extensions), .flags = H2P_CFG_EXTENSION},
    {"exec", H2P_CFG_BOOL, SETTING(h2p_ssi_conf_t, exec)},
    {NULL}};

const h2p_module_conf_t h2p_conf_ssi = {.size = sizeof(h2p_ssi_conf_t), .default_enabled = 0, .init = ssi_init, .keys = ssi_keys};

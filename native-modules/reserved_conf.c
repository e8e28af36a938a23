/* Modules whose code is not written yet (webdav, ssi, request_monitor): their settings are validated, as the configuration contract
 * fixes them, and used by nothing. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "native-modules/module_conf.h"

static const h2p_cfg_key_t webdav_keys[] = {
    {"enabled", H2P_CFG_BOOL, MOD(webdav.enabled)}, {"depth_infinity", H2P_CFG_BOOL, MOD(webdav.depth_infinity)}, {NULL}};

static void webdav_init(h2p_cfg_ctx_t *ctx, h2p_modules_conf_t *m)
{
    m->webdav.depth_infinity = 0;
}

static void ssi_init(h2p_cfg_ctx_t *ctx, h2p_modules_conf_t *m)
{
    static const char *const extensions[] = {".shtml", ".shtm", ".stm"};
    h2p_cfg_strlist_set(ctx, &m->ssi.extensions, extensions, 3);
    m->ssi.exec = 0;
}

static const h2p_cfg_key_t ssi_keys[] = {{"enabled", H2P_CFG_BOOL, MOD(ssi.enabled)},
                                         {"extensions", H2P_CFG_STRLIST, MOD(ssi.extensions), .flags = H2P_CFG_EXTENSION},
                                         {"exec", H2P_CFG_BOOL, MOD(ssi.exec)},
                                         {NULL}};

const h2p_module_conf_t h2p_conf_webdav = {.default_enabled = 0, .init = webdav_init, .keys = webdav_keys};
const h2p_module_conf_t h2p_conf_ssi = {.default_enabled = 0, .init = ssi_init, .keys = ssi_keys};

static const h2p_cfg_key_t request_monitor_keys[] = {{"enabled", H2P_CFG_BOOL, MOD(request_monitor.enabled)}, {NULL}};

const h2p_module_conf_t h2p_conf_request_monitor = {.default_enabled = 1, .keys = request_monitor_keys};

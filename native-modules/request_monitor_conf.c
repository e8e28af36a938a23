/* request_monitor's settings: validated, as the configuration contract fixes them, and used by no code yet. */
#include <string.h>

#include "native-modules/module_conf.h"
#include "native-modules/request_monitor.h"

static const h2p_cfg_key_t request_monitor_keys[] = {{"enabled", H2P_CFG_BOOL, SETTING(h2p_request_monitor_conf_t, enabled)},
                                                     {NULL}};

const h2p_module_conf_t h2p_conf_request_monitor = {
    .size = sizeof(h2p_request_monitor_conf_t), .default_enabled = 1, .keys = request_monitor_keys};

/* request_monitor: reserved (its settings are validated; no code yet). */
#ifndef H2POOL_REQUEST_MONITOR_H
#define H2POOL_REQUEST_MONITOR_H

#include "frontend/config.h"

/* modules.request_monitor in a scope (request_monitor_conf.c) */
typedef struct h2p_request_monitor_conf {
    H2P_MODULE_HEAD;
} h2p_request_monitor_conf_t;

#endif

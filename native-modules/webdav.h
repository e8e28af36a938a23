/* webdav: reserved (its settings are validated; no code yet). */
#ifndef H2POOL_WEBDAV_H
#define H2POOL_WEBDAV_H

#include "frontend/config.h"

/* modules.webdav in a scope (webdav_conf.c) */
typedef struct h2p_webdav_conf {
    H2P_MODULE_HEAD;
    int depth_infinity;
} h2p_webdav_conf_t;

#endif

/* custom_headers: response headers set or removed (IIS's customHeaders). */
#ifndef H2POOL_CUSTOM_HEADERS_H
#define H2POOL_CUSTOM_HEADERS_H

#include "frontend/config.h"

typedef struct h2p_header_setting {
    char *name;  /* lower case */
    char *value; /* NULL = remove the header */
} h2p_header_setting_t;

/* modules.custom_headers in a scope (custom_headers_conf.c) */
typedef struct h2p_custom_headers_conf {
    H2P_MODULE_HEAD;
    h2p_header_setting_t *headers;
    size_t count;
} h2p_custom_headers_conf_t;

#endif

/* logging: the access log of a site (IIS's httpLogging), W3C or JSON lines. */
#ifndef H2POOL_LOGGING_H
#define H2POOL_LOGGING_H

#include "frontend/config.h"

/* modules.logging in a scope (logging_conf.c) */
typedef struct h2p_logging_conf {
    H2P_MODULE_HEAD;
    char *format;
    char *rotate;
    uint64_t max_size; /* rotate: size */
} h2p_logging_conf_t;

#endif

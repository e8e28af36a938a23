/* ssi: reserved (its settings are validated; no code yet). */
#ifndef H2POOL_SSI_H
#define H2POOL_SSI_H

#include "frontend/config.h"

/* modules.ssi in a scope (ssi_conf.c) */
typedef struct h2p_ssi_conf {
    H2P_MODULE_HEAD;
    h2p_strlist_t extensions;
    int exec;
} h2p_ssi_conf_t;

#endif

/* redirect: HTTP redirection rules (IIS's httpRedirect). */
#ifndef H2POOL_REDIRECT_H
#define H2POOL_REDIRECT_H

#include "frontend/config.h"

typedef struct h2p_redirect_rule {
    char *from, *to;
    unsigned status;
} h2p_redirect_rule_t;

/* modules.redirect in a scope (redirect_conf.c) */
typedef struct h2p_redirect_conf {
    H2P_MODULE_HEAD;
    h2p_redirect_rule_t *rules;
    size_t count;
} h2p_redirect_conf_t;

#endif

/* authorization: URL authorization rules (IIS's authorization). */
#ifndef H2POOL_AUTHORIZATION_H
#define H2POOL_AUTHORIZATION_H

#include "frontend/config.h"

typedef struct h2p_authz_rule {
    char *path; /* glob, NULL = every path */
    int allow;  /* 1 allow, 0 deny */
    h2p_strlist_t users, roles, verbs;
    h2p_origin_t origin;
} h2p_authz_rule_t;

/* modules.authorization in a scope (authorization_conf.c) */
typedef struct h2p_authorization_conf {
    H2P_MODULE_HEAD;
    h2p_authz_rule_t *rules;
    size_t count;
} h2p_authorization_conf_t;

#endif

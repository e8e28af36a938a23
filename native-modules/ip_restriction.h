/* ip_restriction: clients allowed or denied by address (IIS's ipSecurity). */
#ifndef H2POOL_IP_RESTRICTION_H
#define H2POOL_IP_RESTRICTION_H

#include "frontend/config.h"

/* modules.ip_restriction in a scope (ip_restriction_conf.c) */
typedef struct h2p_ip_restriction_conf {
    H2P_MODULE_HEAD;
    int default_allow;
    h2p_cidr_t *allow, *deny;
    size_t num_allow, num_deny;
    h2p_cidr_t *trusted_proxies; /* X-Forwarded-For is honoured only from these */
    size_t num_trusted_proxies;
} h2p_ip_restriction_conf_t;

#endif

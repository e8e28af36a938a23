/* rewrite: URL rewrite rules (IIS's URL Rewrite, inbound). */
#ifndef H2POOL_REWRITE_H
#define H2POOL_REWRITE_H

#include "frontend/config.h"

typedef struct h2p_rewrite_rule {
    char *match, *to;
    int unless_file, unless_directory;
    struct pcre2_real_code_8 *re; /* `match` compiled (JIT where available), freed with the generation */
    h2p_origin_t origin;
} h2p_rewrite_rule_t;

/* modules.rewrite in a scope (rewrite_conf.c) */
typedef struct h2p_rewrite_conf {
    H2P_MODULE_HEAD;
    h2p_rewrite_rule_t *rules;
    size_t count;
} h2p_rewrite_conf_t;

#endif

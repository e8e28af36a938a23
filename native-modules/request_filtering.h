/* request_filtering: requests refused by verb, extension, path segment, length (IIS's requestFiltering). */
#ifndef H2POOL_REQUEST_FILTERING_H
#define H2POOL_REQUEST_FILTERING_H

#include "frontend/config.h"

/* modules.request_filtering in a scope (request_filtering_conf.c) */
typedef struct h2p_request_filtering_conf {
    H2P_MODULE_HEAD;
    h2p_strlist_t verbs_allow, verbs_deny;           /* upper case */
    h2p_strlist_t extensions_allow, extensions_deny; /* lower case, with the dot */
    h2p_strlist_t hidden_segments;
    h2p_strlist_t deny_sequences; /* default none: `..` segments, `\` and NUL are refused always */
    uint64_t max_url, max_query_string, max_header_size;
    int allow_double_escaping, allow_high_bit;
} h2p_request_filtering_conf_t;

#endif

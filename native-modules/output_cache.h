/* output_cache: responses kept in memory and served again (IIS's output caching). */
#ifndef H2POOL_OUTPUT_CACHE_H
#define H2POOL_OUTPUT_CACHE_H

#include <h2o.h>

#include "frontend/config.h"

typedef struct h2p_output_cache_rule {
    char *path;
    uint64_t duration_ms;
    int vary_by_query;
    h2p_strlist_t vary_by_headers;
    /* how long past its duration an entry may still be answered (RFC 5861): while one request
     * refreshes it, and when the application fails with 502/503/504; 0: not at all */
    uint64_t stale_while_revalidate_ms, stale_if_error_ms;
} h2p_output_cache_rule_t;

/* modules.output_cache in a scope (output_cache_conf.c) */
typedef struct h2p_output_cache_conf {
    H2P_MODULE_HEAD;
    h2p_output_cache_rule_t *rules;
    size_t count;
} h2p_output_cache_conf_t;

/* `h2pool ctl cache flush [SITE [PATH]]`: drops the entries of the current generation's cache
 * (of one site, of one path or, for a PATH ending in '*', of the paths it starts: this module
 * knows the keys).  How many. */
struct h2p_gen;
struct h2p_site_rt;
size_t h2p_output_cache_flush(struct h2p_gen *gen, const struct h2p_site_rt *site, const char *path);
/* Whether req is the background refresh of a stale entry of generation gen (started where an
 * earlier request of that generation passed every check). */
int h2p_output_cache_is_refresh(h2o_req_t *req, const struct h2p_gen *gen);

#endif

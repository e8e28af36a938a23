/*
 * What the server is doing, as one JSON document (GET /status, `h2pool ctl status`) and as
 * Prometheus metrics (GET /metrics), both made from the same counters (frontend/counters.h) and
 * pool states (poolmgr).  Supervisor thread.
 */
#ifndef H2POOL_STATUS_H
#define H2POOL_STATUS_H

#include <jansson.h>
#include <stddef.h>

/* Notes the start time; after h2p_server_init. */
void h2p_status_init(void);

enum {
    H2P_STATUS_WORKERS = 1, /* each pool's worker list */
    H2P_STATUS_HISTORY = 2, /* the last minutes, for the dashboard's charts */
    H2P_STATUS_ERRORS = 4,  /* the last errors and warnings of the error log */
};
json_t *h2p_status_json(int what);
/* The sites of the configuration in force, with their counters. */
json_t *h2p_status_sites_json(void);

/* The Prometheus text exposition (version 0.0.4); malloc()ed, its length in *len. */
char *h2p_metrics_text(size_t *len);

#endif

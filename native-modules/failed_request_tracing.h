/* failed_request_tracing: a trace file per request that failed or took too long (IIS's FREB). */
#ifndef H2POOL_FAILED_REQUEST_TRACING_H
#define H2POOL_FAILED_REQUEST_TRACING_H

#include "frontend/config.h"

/* where traces go when the settings name no dir: <log_dir>/<site>/FailedReqLogFiles */
#define H2P_TRACE_DEFAULT_SUBDIR "FailedReqLogFiles"

typedef struct h2p_status_range {
    unsigned from, to;
} h2p_status_range_t;

/* modules.failed_request_tracing in a scope (failed_request_tracing_conf.c) */
typedef struct h2p_failed_request_tracing_conf {
    H2P_MODULE_HEAD;
    h2p_status_range_t *status;
    size_t num_status;
    uint64_t time_taken_ms;
    char *dir;
    unsigned max_files; /* the newest traces kept in dir */
} h2p_failed_request_tracing_conf_t;

#endif

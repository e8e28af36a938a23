/* custom_errors: error pages (IIS's httpErrors). */
#ifndef H2POOL_CUSTOM_ERRORS_H
#define H2POOL_CUSTOM_ERRORS_H

#include "frontend/config.h"

typedef enum h2p_custom_errors_mode {
    H2P_ERRORS_DETAILED_LOCAL_ONLY,
    H2P_ERRORS_ON,
    H2P_ERRORS_OFF /* detailed errors for everyone */
} h2p_custom_errors_mode_t;

/* H2P_CFG_ENUM stores an int into enum fields */
_Static_assert(sizeof(h2p_custom_errors_mode_t) == sizeof(int), "enums are int sized");

#define H2P_MAX_ERROR_PAGE_SIZE (1024 * 1024)

typedef struct h2p_error_page {
    unsigned status;
    char *path;
    char *body; /* the file's content, read when the configuration was loaded (with check_files; NULL otherwise) */
    size_t body_len;
} h2p_error_page_t;

/* modules.custom_errors in a scope (custom_errors_conf.c) */
typedef struct h2p_custom_errors_conf {
    H2P_MODULE_HEAD;
    h2p_custom_errors_mode_t mode;
    h2p_error_page_t *pages;
    size_t num_pages;
} h2p_custom_errors_conf_t;

#endif

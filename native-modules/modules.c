/* The pipeline table, settings inheritance, and the per-request state the modules share. */
#include "native-modules/module.h"

#include <string.h>

#include "frontend/router.h"

extern const h2p_module_t h2p_module_ip_restriction, h2p_module_request_filtering, h2p_module_redirect, h2p_module_authentication,
    h2p_module_authorization, h2p_module_default_document, h2p_module_custom_headers, h2p_module_custom_errors;

/* Slots whose issues are still open: named here so the order is fixed, they register nothing. */
static const h2p_module_t request_monitor = {"request_monitor", H2P_PHASE_REQUEST | H2P_PHASE_RESPONSE, NULL},
                          rewrite = {"rewrite", H2P_PHASE_REQUEST, NULL}, compression = {"compression", H2P_PHASE_RESPONSE, NULL},
                          output_cache = {"output_cache", H2P_PHASE_RESPONSE, NULL},
                          logging = {"logging", H2P_PHASE_RESPONSE, NULL},
                          failed_request_tracing = {"failed_request_tracing", H2P_PHASE_RESPONSE, NULL};

/* DESIGN.md's order: the request phase, then (after the content handler) the response phase. */
const h2p_module_t *const h2p_modules[] = {
    &request_monitor, &h2p_module_ip_restriction, &h2p_module_request_filtering, &h2p_module_redirect, &rewrite,
    &h2p_module_authentication, &h2p_module_authorization, &h2p_module_default_document,
    /* response phase */
    &h2p_module_custom_headers, &compression, &output_cache, &h2p_module_custom_errors, &logging, &failed_request_tracing, NULL};

int h2p_modules_setup_scope(h2p_module_scope_t *scope, h2p_module_phase_t phase)
{
    scope->phase = phase;
    for (const h2p_module_t *const *m = h2p_modules; *m != NULL; ++m) {
        if (((*m)->phase & phase) == 0 || (*m)->on_config == NULL)
            continue;
        if ((*m)->on_config(scope) != 0)
            return -1;
    }
    return 0;
}

int h2p_request_deny(h2p_request_t *r, const char *module, unsigned status, unsigned substatus, const char *reason,
                     const char *body)
{
    r->ended_by = module;
    r->status = status;
    r->substatus = substatus;
    h2o_send_error_generic(r->req, (int)status, reason, body, H2O_SEND_ERROR_KEEP_HEADERS);
    return 0;
}

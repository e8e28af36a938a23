/* The pipeline table, settings inheritance, and the per-request state the modules share. */
#include "native-modules/module.h"

#include <string.h>

#include "frontend/router.h"

extern const h2p_module_t h2p_module_ip_restriction, h2p_module_request_filtering, h2p_module_redirect, h2p_module_rewrite,
    h2p_module_authentication, h2p_module_authorization, h2p_module_default_document, h2p_module_custom_headers,
    h2p_module_compression, h2p_module_output_cache, h2p_module_custom_errors;

/* Slots whose issues are still open: named here so the order is fixed, they register nothing. */
static const h2p_module_t request_monitor = {"request_monitor", H2P_PHASE_REQUEST | H2P_PHASE_RESPONSE, NULL},
                          logging = {"logging", H2P_PHASE_RESPONSE, NULL},
                          failed_request_tracing = {"failed_request_tracing", H2P_PHASE_RESPONSE, NULL};

/* DESIGN.md's order: the request phase, then (after the content handler) the response phase. */
const h2p_module_t *const h2p_modules[] = {&request_monitor, &h2p_module_ip_restriction, &h2p_module_request_filtering,
                                           &h2p_module_redirect, &h2p_module_rewrite, &h2p_module_authentication,
                                           &h2p_module_authorization, &h2p_module_default_document,
                                           /* response phase */
                                           &h2p_module_custom_headers, &h2p_module_compression, &h2p_module_output_cache,
                                           &h2p_module_custom_errors, &logging, &failed_request_tracing, NULL};

void h2p_modules_merge(h2p_modules_conf_t *out, const h2p_modules_conf_t *parent, const h2p_modules_conf_t *child)
{
    *out = *parent;
#define INHERIT(field)                                                                                                             \
    if (child->field.set)                                                                                                          \
    out->field = child->field
    INHERIT(request_filtering);
    INHERIT(ip_restriction);
    INHERIT(authentication);
    INHERIT(authorization);
    INHERIT(redirect);
    INHERIT(rewrite);
    INHERIT(webdav);
    INHERIT(ssi);
    INHERIT(custom_headers);
    INHERIT(custom_errors);
    INHERIT(compression);
    INHERIT(output_cache);
    INHERIT(logging);
    INHERIT(failed_request_tracing);
    INHERIT(request_monitor);
#undef INHERIT
    if (child->num_plugin_settings != 0) {
        out->plugin_settings = child->plugin_settings;
        out->num_plugin_settings = child->num_plugin_settings;
    }
}

int h2p_modules_setup_scope(h2p_module_scope_t *scope, h2p_module_phase_t phase)
{
    scope->phase = phase;
    for (const h2p_module_t *const *m = h2p_modules; *m != NULL; ++m) {
        if (((*m)->phase & phase) == 0 || (*m)->on_config == NULL)
            continue;
        if ((*m)->on_config(scope) != 0)
            return -1;
        if (*m == &h2p_module_rewrite)
            scope->scope->resume_at = scope->pathconf->handlers.size;
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

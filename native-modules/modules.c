/* The pipeline table, settings inheritance, and the per-request state the modules share. */
#include "native-modules/module.h"

#include <string.h>

#include "frontend/router.h"

/*
 * Each module of native-modules/modules.def, in its order.  A module whose code is not written
 * yet gets a placeholder that registers nothing: a weak definition, replaced by the module's own
 * h2p_module_<name> when its file is built in.
 */
#define REQUEST H2P_PHASE_REQUEST
#define RESPONSE H2P_PHASE_RESPONSE
#define CONTENT H2P_PHASE_CONTENT
#define H2P_MODULE(name, phases, settings) __attribute__((weak)) const h2p_module_t h2p_module_##name = {#name, phases, NULL};
#include "native-modules/modules.def"
#undef H2P_MODULE
#undef REQUEST
#undef RESPONSE
#undef CONTENT

const h2p_module_t *const h2p_modules[] = {
#define H2P_MODULE(name, phases, settings) &h2p_module_##name,
#include "native-modules/modules.def"
#undef H2P_MODULE
    NULL};

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

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
        size_t first = scope->pathconf->handlers.size;
        if ((*m)->on_config(scope) != 0)
            return -1;
        for (size_t i = first; i < scope->pathconf->handlers.size && i < H2P_SCOPE_MAX_HANDLERS; ++i)
            scope->scope->handler_modules[i] = (*m)->name; /* (for traces) */
        if ((*m)->resume_after)
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

/* ---- how the response ended, for logs and traces ------------------------------------------ */

typedef struct response_watch {
    h2o_ostream_t super;
    h2p_request_t *r;
} response_watch_t;

static void on_watch_send(h2o_ostream_t *_self, h2o_req_t *req, h2o_iovec_t *bufs, size_t bufcnt, h2o_send_state_t state)
{
    response_watch_t *self = (void *)_self;
    if (state == H2O_SEND_STATE_FINAL)
        self->r->response_end = H2P_RESPONSE_COMPLETE;
    else if (state == H2O_SEND_STATE_ERROR)
        self->r->response_end = H2P_RESPONSE_CUT_OFF;
    h2o_ostream_send_next(&self->super, req, bufs, bufcnt, state);
}

h2o_ostream_t **h2p_request_watch_response(h2o_req_t *req, h2o_ostream_t **slot)
{
    h2p_request_t *r = h2p_request_of(req);
    if (r == NULL || r->response_watched)
        return slot;
    r->response_watched = 1;
    response_watch_t *watch = (void *)h2o_add_ostream(req, sizeof(*watch), slot);
    watch->super.do_send = on_watch_send;
    watch->r = r;
    return &watch->super.next;
}

unsigned h2p_request_log_status(h2o_req_t *req)
{
    return req->res.status != 0 ? (unsigned)req->res.status : 499;
}

uint64_t h2p_request_time_taken_ms(h2o_req_t *req, const struct timeval *now)
{
    /* libh2o 2.2.5 stamps request_begin_at on HTTP/1 only */
    const struct timeval *begin =
        req->timestamps.request_begin_at.tv_sec != 0 ? &req->timestamps.request_begin_at : &req->processed_at.at;
    int64_t us = (int64_t)(now->tv_sec - begin->tv_sec) * 1000000 + (now->tv_usec - begin->tv_usec);
    return us > 0 ? (uint64_t)us / 1000 : 0;
}

void h2p_modules_init_thread(struct h2p_thread *th)
{
    for (const h2p_module_t *const *m = h2p_modules; *m != NULL; ++m)
        if ((*m)->init_thread != NULL)
            (*m)->init_thread(th);
}

void h2p_modules_dispose_thread(struct h2p_thread *th)
{
    for (const h2p_module_t *const *m = h2p_modules; *m != NULL; ++m)
        if ((*m)->dispose_thread != NULL)
            (*m)->dispose_thread(th);
}

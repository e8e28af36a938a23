/*
 * Native modules: IIS's integrated pipeline on libh2o.
 *
 * Every scope (an application, or a `locations:` path inside one) gets its own h2o pathconf
 * whose handler list is the request phase: one h2o_handler_t per enabled request-phase module,
 * in the fixed order of h2p_modules[], then the content handler (FastCGI, CGI, directory
 * listing, static file).  A handler's on_req returns -1 to pass the request on, or 0 when it
 * has answered it.  Response-phase modules are h2o filters on the same pathconf, set up in the
 * same table order, so they see every response of the scope, whatever produced it.  A module
 * whose settings say `enabled: false` registers nothing there: it costs nothing at run time.
 *
 * Adding a module: its files, one line in native-modules/modules.def, its build entry
 * (ARCHITECTURE.md, "Adding a module").
 */
#ifndef H2POOL_MODULE_H
#define H2POOL_MODULE_H

#include <h2o.h>

#include "frontend/config.h"
#include "frontend/counters.h"
#include "native-modules/module_index.h"

struct h2p_gen;
struct h2p_site_rt;
struct h2p_app_rt;
struct h2p_scope_rt;
struct h2p_thread;

/* Per-request state the modules share (IIS's HttpContext); lives in the request's pool. */
typedef struct h2p_request {
    h2o_req_t *req;
    struct h2p_gen *gen;
    struct h2p_thread *thread;
    struct h2p_site_rt *site;
    struct h2p_app_rt *app;
    struct h2p_scope_rt *scope;
    /* why a module ended the request, for the log: status and IIS sub-status (404.7 = 404, 7) */
    const char *ended_by;
    unsigned status, substatus;
    /* written by authentication; read by authorization, logging and the FastCGI / CGI handlers
     * (REMOTE_USER and AUTH_TYPE) */
    h2o_iovec_t remote_user, auth_type;
    /* what the request will be served by, once h2p_request_served() has resolved it */
    struct h2p_served {
        h2o_iovec_t from;  /* the req->path_normalized it was resolved from */
        h2o_iovec_t path;  /* after default documents: "/" -> "/index.php" */
        int mapping;       /* index in the application's handler mappings, -1 = static file or listing */
        size_t script_len; /* path[0, script_len) is the script; the rest is PATH_INFO */
    } served;
    /* the query string after a rewrite (the target's own, then the client's): written by rewrite,
     * read through h2p_request_query() by the content handlers */
    h2o_iovec_t query;
    int query_rewritten;
    /* written by output_cache: the response is an entry's copy, which the response-phase modules
     * (compression, output_cache's store) leave as it was stored */
    unsigned from_cache : 1;
    /* written by failed_request_tracing when it starts a trace of the request: the router then
     * reports every step of the chain (h2p_trace_step_begin/end), in whatever scope it runs */
    unsigned traced : 1;
    /* how the response ended, for the log (see h2p_request_watch_response) */
    enum h2p_response_end {
        H2P_RESPONSE_NOT_ENDED, /* not (yet) sent in full: the client left, or no response began */
        H2P_RESPONSE_COMPLETE,  /* the last byte was handed to the protocol layer */
        H2P_RESPONSE_CUT_OFF    /* its producer failed mid-body (a worker died): the client got part of it */
    } response_end;
    int response_watched;
    /* written by the FastCGI handler: the pool and the worker that took the request; read by
     * failed_request_tracing; NULL / 0 otherwise */
    const char *pool_name;
    int worker_pid;
    /* each module's own state of the request (H2P_MODULE_REQUEST), NULL until the module sets it:
     * only the module knows what it points to (in the request's pool, as a rule) */
    void *module_data[H2P_NUM_MODULES];
    h2p_request_track_t track; /* counters and `h2pool ctl list requests` (frontend/counters.h) */
} h2p_request_t;

/* A module's own state of a request (h2p_request_t.module_data); `name` is the module's own. */
#define H2P_MODULE_REQUEST(r, name) ((r)->module_data[H2P_MODULE_INDEX(name)])

/* The query string the application sees: the client's, or what rewrite made of it. */
static inline h2o_iovec_t h2p_request_query(h2p_request_t *r)
{
    h2o_req_t *req = r->req;
    if (r->query_rewritten)
        return r->query;
    if (req->query_at == SIZE_MAX)
        return h2o_iovec_init("", 0);
    return h2o_iovec_init(req->path.base + req->query_at + 1, req->path.len - req->query_at - 1);
}

/* Goes on with a request whose path a module changed (rewrite): in the scope of the new path,
 * from the module after rewrite.  Always answers (returns 0). */
int h2p_router_resume(h2o_req_t *req);

/* Goes on with a request whose module `handler` answered later, on the request's own loop (a
 * password check done by another thread): with the handler after it in the request's scope.
 * Always answers (returns 0). */
int h2p_router_continue_after(h2o_req_t *req, h2o_handler_t *handler);

/*
 * The resource a request will be served by: its path after default documents, the handler
 * mapping that takes it and the script that mapping selects.  A decision about access
 * (filtering, authorization) is taken on this, the resource actually served, never on the URL
 * alone.  Resolved once per path: a module that changes req->path_normalized (rewrite) makes
 * the next call resolve again.
 */
const struct h2p_served *h2p_request_served(h2p_request_t *r);

/* The h2p_request_t of a request that went through the router (NULL otherwise). */
h2p_request_t *h2p_request_of(h2o_req_t *req);

/* Puts, once per request, an ostream into the response chain that records how the response
 * ended (r->response_end); returns the slot for the next ostream.  For response-phase filters. */
h2o_ostream_t **h2p_request_watch_response(h2o_req_t *req, h2o_ostream_t **slot);

/* The status for logs: the response's, or 499 (nginx's "client closed request") when the
 * request ended before any response began. */
unsigned h2p_request_log_status(h2o_req_t *req);

/* Milliseconds from the request's first byte (HTTP/1) or its arrival as a whole (HTTP/2) to `now`. */
uint64_t h2p_request_time_taken_ms(h2o_req_t *req, const struct timeval *now);

/*
 * failed_request_tracing's view of the request phase: the router calls these around each
 * handler of a scope that traces (h2p_scope_rt_t.traced).  `module` names the module the
 * handler belongs to; NULL is the content handler.  Begin returns the step's index for end.
 */
int h2p_trace_step_begin(h2p_request_t *r, const char *module);
void h2p_trace_step_end(h2p_request_t *r, int step, int answered);

/* Ends the request from a module: records who and why, sends status with `body` as text. */
int h2p_request_deny(h2p_request_t *r, const char *module, unsigned status, unsigned substatus, const char *reason,
                     const char *body);

typedef enum h2p_module_phase {
    H2P_PHASE_REQUEST = 1,  /* a handler of the chain, before the content handler */
    H2P_PHASE_RESPONSE = 2, /* a filter on every response of the scope */
    H2P_PHASE_CONTENT = 4   /* a content handler chosen by handler mapping (not in the chain) */
} h2p_module_phase_t;

/* What a module needs to set itself up in one scope. */
typedef struct h2p_module_scope {
    h2o_pathconf_t *pathconf;
    const h2p_modules_conf_t *settings; /* merged: site <- application <- location */
    const h2p_site_conf_t *site;
    const char *root; /* the scope's physical root */
    char *err;        /* on_config failure: a message, e.g. "users file: ..." */
    size_t errlen;
    h2p_module_phase_t phase; /* which phase is being set up (a module may take part in both) */
    struct h2p_scope_rt *scope;
    const h2p_server_conf_t *server; /* the generation's server settings (log_dir) */
} h2p_module_scope_t;

typedef struct h2p_module {
    const char *name;
    h2p_module_phase_t phase;
    /* Registers the module's handler or filter on the scope's pathconf when it is enabled there.
     * Returns 0, or -1 with scope->err filled (the generation is refused). */
    int (*on_config)(h2p_module_scope_t *scope);
    /* set by a module that changes the request's path (rewrite): h2p_router_resume() goes on with
     * the handler after this module's, in the scope of the new path */
    int resume_after;
    /* Optional: set up / free the module's state of a front-end thread, on that thread (before its
     * loop runs requests / after its last request).  The state hangs in the thread's slot for the
     * module, H2P_MODULE_THREAD(th, name): made once here, never on a request's path. */
    void (*init_thread)(struct h2p_thread *th);
    void (*dispose_thread)(struct h2p_thread *th);
} h2p_module_t;

/* A module's state on a front-end thread (frontend/server.h's h2p_thread_t.module_thread), as its
 * init_thread made it; `name` is the module's own. */
#define H2P_MODULE_THREAD(th, name) ((th)->module_thread[H2P_MODULE_INDEX(name)])

/* Runs every module's init_thread / dispose_thread on the calling front-end thread. */
void h2p_modules_init_thread(struct h2p_thread *th);
void h2p_modules_dispose_thread(struct h2p_thread *th);

/* The pipeline, in the order of native-modules/modules.def, NULL-terminated. */
extern const h2p_module_t *const h2p_modules[];

/* (h2p_modules_merge, the settings of a scope over its parent's, is in frontend/config.h) */

/* Sets up every module of one scope, in pipeline order. */
int h2p_modules_setup_scope(h2p_module_scope_t *scope, h2p_module_phase_t phase);

#endif

/* IIS's default document: "/dir/" is served as "/dir/<first listed file that exists>". */
#include "frontend/router.h"
#include "native-modules/module.h"

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    h2p_request_t *r = h2p_request_of(req);
    struct h2p_served *s = &r->served;
    h2p_request_served(r); /* authorization may have resolved it already */
    /* the handler mappings see the document: "/" -> "/index.php" goes to the PHP pool */
    req->path_normalized = s->path;
    s->from = s->path; /* the same resource: nothing to resolve again */
    return -1;
}

static int on_config(h2p_module_scope_t *ms)
{
    if (ms->scope->default_documents->count == 0)
        return 0;
    h2o_handler_t *self = h2o_create_handler(ms->pathconf, sizeof(*self));
    self->on_req = on_req;
    return 0;
}

const h2p_module_t h2p_module_default_document = {"default_document", H2P_PHASE_REQUEST, on_config};

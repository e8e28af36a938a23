/* IIS's default document: "/dir/" is served as "/dir/<first listed file that exists>". */
#include <string.h>
#include <sys/stat.h>

#include "frontend/router.h"
#include "handlers/content.h"
#include "native-modules/module.h"

typedef struct default_document_handler {
    h2o_handler_t super;
    h2p_scope_rt_t *scope;
} default_document_handler_t;

static int on_req(h2o_handler_t *_self, h2o_req_t *req)
{
    default_document_handler_t *self = (void *)_self;
    h2o_iovec_t path = req->path_normalized;
    if (path.len == 0 || path.base[path.len - 1] != '/')
        return -1;
    const char *dir = h2p_physical_path(&req->pool, self->scope->app, path.base, path.len);
    size_t dir_len = strlen(dir);
    const h2p_strlist_t *docs = self->scope->default_documents;
    for (size_t i = 0; i != docs->count; ++i) {
        size_t doc_len = strlen(docs->items[i]);
        char file[dir_len + doc_len + 1];
        memcpy(file, dir, dir_len);
        memcpy(file + dir_len, docs->items[i], doc_len + 1);
        struct stat st;
        if (stat(file, &st) == 0 && S_ISREG(st.st_mode)) {
            /* the handler mappings see the document: "/" -> "/index.php" goes to the PHP pool */
            req->path_normalized = h2o_concat(&req->pool, path, h2o_iovec_init(docs->items[i], doc_len));
            break;
        }
    }
    return -1;
}

static int on_config(h2p_module_scope_t *ms)
{
    if (ms->scope->default_documents->count == 0)
        return 0;
    default_document_handler_t *self = (void *)h2o_create_handler(ms->pathconf, sizeof(*self));
    self->super.on_req = on_req;
    self->scope = ms->scope;
    return 0;
}

const h2p_module_t h2p_module_default_document = {"default_document", H2P_PHASE_REQUEST, on_config};

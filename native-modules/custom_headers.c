/*
 * custom_headers: IIS's customHeaders.  Every response of the scope, including the error
 * responses libh2o and the other modules generate, gets each configured header set (any
 * existing one of that name replaced) or, for `Name: null`, removed.
 *
 * Headers the protocol layer owns are left alone: Content-Length, Transfer-Encoding and
 * Connection describe the message, not the resource.  Date and Server are written by libh2o
 * 2.2.5 itself while it serializes the response (Server from globalconf->server_name, for every
 * response of the process): a filter can neither replace nor remove them.  A Server setting is
 * applied only when that global server name is empty, i.e. when libh2o writes no Server header.
 */
#include <string.h>

#include "frontend/log.h"
#include "frontend/alloc.h"
#include "native-modules/module.h"
#include "native-modules/custom_headers.h"

typedef struct header_op {
    const h2o_token_t *token; /* NULL: a name libh2o has no token for */
    h2o_iovec_t name;         /* lower case */
    h2o_iovec_t value;        /* base NULL = remove */
} header_op_t;

typedef struct custom_headers_filter {
    h2o_filter_t super;
    header_op_t *ops;
    size_t count;
} custom_headers_filter_t;

static void remove_all(h2o_headers_t *headers, const header_op_t *op)
{
    ssize_t i;
    if (op->token != NULL) {
        while ((i = h2o_find_header(headers, op->token, -1)) != -1)
            h2o_delete_header(headers, i);
    } else {
        while ((i = h2o_find_header_by_str(headers, op->name.base, op->name.len, -1)) != -1)
            h2o_delete_header(headers, i);
    }
}

static void on_setup_ostream(h2o_filter_t *_self, h2o_req_t *req, h2o_ostream_t **slot)
{
    custom_headers_filter_t *self = (void *)_self;
    for (size_t i = 0; i != self->count; ++i) {
        const header_op_t *op = self->ops + i;
        if (op->token == H2O_TOKEN_SERVER && req->conn->ctx->globalconf->server_name.len != 0)
            continue; /* libh2o writes its own Server line: a second one would only be added */
        remove_all(&req->res.headers, op);
        if (op->value.base == NULL)
            continue;
        if (op->token != NULL)
            h2o_add_header(&req->pool, &req->res.headers, op->token, NULL, op->value.base, op->value.len);
        else
            h2o_add_header_by_str(&req->pool, &req->res.headers, op->name.base, op->name.len, 0, NULL, op->value.base,
                                  op->value.len);
    }
    h2o_setup_next_ostream(req, slot);
}

static void on_dispose(h2o_filter_t *_self)
{
    free(((custom_headers_filter_t *)_self)->ops);
}

static int on_config(h2p_module_scope_t *ms)
{
    const h2p_header_setting_t *settings = ms->settings->custom_headers->headers;
    size_t count = ms->settings->custom_headers->count;

    if (!ms->settings->custom_headers->enabled || count == 0)
        return 0;
    custom_headers_filter_t *self = (void *)h2o_create_filter(ms->pathconf, sizeof(*self));
    self->super.on_setup_ostream = on_setup_ostream;
    self->super.dispose = on_dispose;
    self->ops = h2p_calloc(count, sizeof(*self->ops));
    for (size_t i = 0; i != count; ++i) {
        const h2p_header_setting_t *s = settings + i;
        header_op_t *op = self->ops + self->count;
        op->name = h2o_iovec_init(s->name, strlen(s->name));
        op->token = h2o_lookup_token(op->name.base, op->name.len);
        op->value = s->value != NULL ? h2o_iovec_init(s->value, strlen(s->value)) : h2o_iovec_init(NULL, 0);
        if (op->token == H2O_TOKEN_CONTENT_LENGTH || op->token == H2O_TOKEN_TRANSFER_ENCODING ||
            op->token == H2O_TOKEN_CONNECTION || op->token == H2O_TOKEN_DATE) {
            h2p_warn(ms->site->name, "custom_headers: %s is written by the protocol layer; the setting is ignored", s->name);
            continue;
        }
        if (op->token == H2O_TOKEN_SERVER)
            h2p_warn(ms->site->name,
                     "custom_headers: server: libh2o 2.2.5 writes the Server header itself for every response; the setting "
                     "applies only while the server-wide server name is empty");
        ++self->count;
    }
    return 0;
}

const h2p_module_t h2p_module_custom_headers = {"custom_headers", H2P_PHASE_RESPONSE, on_config};

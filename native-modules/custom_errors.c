/*
 * custom_errors: IIS's httpErrors.  Error bodies (status >= 400) tell what went wrong inside
 * ("symbolic link leads out of the site root", "worker crashed"): that detail is for the admin.
 *
 *   mode off                  detailed bodies for everyone, pages unused (errorMode="Detailed")
 *   mode on                   the custom page for the status, else "404 Not Found", for everyone
 *   mode detailed_local_only  detailed for clients on loopback, custom for everyone else (default)
 *
 * Which bodies are replaced (IIS's existingResponse="Auto", decided for h2pool): those libh2o or
 * h2pool generated (h2o_send_error_* / h2o_send_inline: a generator without a proceed callback,
 * which no content handler has), and empty ones from a worker.  A body the application wrote
 * itself (a PHP 404 page, a JSON error of an API) passes through untouched.  Status and headers
 * are kept (a 401 keeps its WWW-Authenticate); only the body and its Content-Type change.
 *
 * Pages are read when the configuration is loaded (at most 1 MiB each), so serving one never
 * touches the disk; a changed page is picked up by the next reload.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "native-modules/module.h"
#include "native-modules/custom_errors.h"
#include "frontend/alloc.h"

typedef struct error_page {
    unsigned status;
    h2o_iovec_t body; /* the configuration's copy, read when it was loaded: the generation keeps it */
    h2o_iovec_t content_type;
} error_page_t;

typedef struct custom_errors_filter {
    h2o_filter_t super;
    h2p_custom_errors_mode_t mode;
    error_page_t *pages;
    size_t num_pages;
} custom_errors_filter_t;

typedef enum swap_state { SWAP_UNDECIDED, SWAP_REPLACE, SWAP_PASS } swap_state_t;

/* Sits in the response's ostream chain when the body may have to be replaced. */
typedef struct body_swap {
    h2o_ostream_t super;
    custom_errors_filter_t *filter;
    swap_state_t state;
    h2o_iovec_t body;
} body_swap_t;

static const char *reason_phrase(unsigned status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 421:
        return "Misdirected Request";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return status < 500 ? "Client Error" : "Server Error";
    }
}

static int peer_is_local(h2o_req_t *req)
{
    struct sockaddr_storage ss;
    socklen_t len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    if (len == 0)
        return 0;
    switch (ss.ss_family) {
    case AF_INET:
        return (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
    case AF_INET6: {
        const struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    case AF_UNIX:
        return 1;
    default:
        return 0;
    }
}

/* Turns the response into the error page for its status, or the generic one-line body. */
static void replace_body(body_swap_t *swap, h2o_req_t *req)
{
    custom_errors_filter_t *self = swap->filter;
    unsigned status = (unsigned)req->res.status;
    const error_page_t *page = NULL;

    for (size_t i = 0; i != self->num_pages; ++i)
        if (self->pages[i].status == status)
            page = self->pages + i;
    if (page != NULL) {
        swap->body = page->body;
        h2o_set_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, page->content_type.base, page->content_type.len, 1);
    } else {
        const char *reason = reason_phrase(status);
        char *text = h2o_mem_alloc_pool(&req->pool, strlen(reason) + sizeof("000 \n"));
        swap->body = h2o_iovec_init(text, (size_t)sprintf(text, "%03u %s\n", status % 1000, reason));
        h2o_set_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, H2O_STRLIT("text/plain; charset=utf-8"), 1);
    }
    ssize_t i;
    while ((i = h2o_find_header(&req->res.headers, H2O_TOKEN_CONTENT_ENCODING, -1)) != -1)
        h2o_delete_header(&req->res.headers, i);
    req->res.content_length = swap->body.len;
    swap->state = SWAP_REPLACE;
}

/*
 * SWAP_REPLACE swallows what the generator sends and sends the replacement with the final call.
 * SWAP_UNDECIDED (a worker's body of unknown length) holds back until the first byte or the end:
 * nothing has reached the protocol layer yet, so the headers can still change when it was empty.
 */
static void on_body_swap_send(h2o_ostream_t *_self, h2o_req_t *req, h2o_iovec_t *bufs, size_t bufcnt, h2o_send_state_t state)
{
    body_swap_t *self = (void *)_self;

    if (self->state == SWAP_UNDECIDED) {
        size_t bytes = 0;
        for (size_t i = 0; i != bufcnt; ++i)
            bytes += bufs[i].len;
        if (bytes != 0 || state == H2O_SEND_STATE_ERROR)
            self->state = SWAP_PASS;
        else if (state == H2O_SEND_STATE_FINAL)
            replace_body(self, req);
    }
    switch (self->state) {
    case SWAP_PASS:
        h2o_ostream_send_next(&self->super, req, bufs, bufcnt, state);
        break;
    case SWAP_REPLACE:
        if (state == H2O_SEND_STATE_FINAL && self->body.len != 0 &&
            !h2o_memis(req->input.method.base, req->input.method.len, H2O_STRLIT("HEAD"))) {
            h2o_ostream_send_next(&self->super, req, &self->body, 1, state);
            break;
        }
        /* fallthrough */
    case SWAP_UNDECIDED:
        /* nothing to pass on: an in-progress call only asks the generator for more */
        h2o_ostream_send_next(&self->super, req, NULL, 0, state);
        break;
    }
}

static void on_setup_ostream(h2o_filter_t *_self, h2o_req_t *req, h2o_ostream_t **slot)
{
    custom_errors_filter_t *self = (void *)_self;

    if (req->res.status < 400 || (self->mode == H2P_ERRORS_DETAILED_LOCAL_ONLY && peer_is_local(req)))
        goto Next;
    int generated = req->_generator != NULL && req->_generator->proceed == NULL;
    int unknown_length = req->res.content_length == SIZE_MAX;
    if (!generated && req->res.content_length != 0 &&
        !(unknown_length && !h2o_memis(req->input.method.base, req->input.method.len, H2O_STRLIT("HEAD"))))
        goto Next; /* the application's own error body */

    body_swap_t *swap = (void *)h2o_add_ostream(req, sizeof(*swap), slot);
    swap->super.do_send = on_body_swap_send;
    swap->filter = self;
    swap->state = SWAP_UNDECIDED;
    swap->body = h2o_iovec_init(NULL, 0);
    if (generated || req->res.content_length == 0)
        replace_body(swap, req);
    slot = &swap->super.next;
Next:
    h2o_setup_next_ostream(req, slot);
}

static void on_dispose(h2o_filter_t *_self)
{
    custom_errors_filter_t *self = (void *)_self;
    free(self->pages);
}

static h2o_iovec_t page_content_type(h2o_mimemap_t *mimemap, const char *path)
{
    const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
    if (dot != NULL && (slash == NULL || dot > slash)) {
        h2o_mimemap_type_t *type = h2o_mimemap_get_type_by_extension(mimemap, h2o_iovec_init(dot + 1, strlen(dot + 1)));
        if (type != NULL && type->type == H2O_MIMEMAP_TYPE_MIMETYPE) {
            h2o_iovec_t t = type->data.mimetype;
            if (t.len > 5 && memcmp(t.base, "text/", 5) == 0 && memchr(t.base, ';', t.len) == NULL) {
                static const h2o_iovec_t html = {H2O_STRLIT("text/html; charset=utf-8")},
                                         plain = {H2O_STRLIT("text/plain; charset=utf-8")};
                if (h2o_memis(t.base, t.len, H2O_STRLIT("text/html")))
                    return html;
                if (h2o_memis(t.base, t.len, H2O_STRLIT("text/plain")))
                    return plain;
            }
            return t;
        }
    }
    return h2o_iovec_init(H2O_STRLIT("text/html; charset=utf-8"));
}

static int on_config(h2p_module_scope_t *ms)
{
    if (!ms->settings->custom_errors->enabled || ms->settings->custom_errors->mode == H2P_ERRORS_OFF)
        return 0;
    custom_errors_filter_t *self = (void *)h2o_create_filter(ms->pathconf, sizeof(*self));
    self->super.on_setup_ostream = on_setup_ostream;
    self->super.dispose = on_dispose;
    self->mode = ms->settings->custom_errors->mode;
    self->pages = h2p_calloc(ms->settings->custom_errors->num_pages + 1, sizeof(*self->pages));
    for (size_t i = 0; i != ms->settings->custom_errors->num_pages; ++i) {
        const h2p_error_page_t *conf = ms->settings->custom_errors->pages + i;
        error_page_t *page = self->pages + self->num_pages;
        if (conf->body == NULL) { /* (only a configuration loaded without its files has none) */
            snprintf(ms->err, ms->errlen, "site %s: custom_errors.pages.%u: %s was not read with the configuration", ms->site->name,
                     conf->status, conf->path);
            return -1;
        }
        page->body = h2o_iovec_init(conf->body, conf->body_len);
        page->status = conf->status;
        page->content_type = page_content_type(ms->pathconf->mimemap, conf->path);
        ++self->num_pages;
    }
    return 0;
}

const h2p_module_t h2p_module_custom_errors = {"custom_errors", H2P_PHASE_RESPONSE, on_config};

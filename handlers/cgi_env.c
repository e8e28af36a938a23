/* CGI/1.1 meta-variables, built once per request for the FastCGI and CGI handlers. */
#include "handlers/cgi_env.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "frontend/conn_watch.h"
#include "native-modules/module.h"

typedef struct builder {
    h2o_mem_pool_t *pool;
    h2p_cgi_vars_t *v;
} builder_t;

static void add_param(builder_t *b, const char *name, size_t name_len, const char *value, size_t value_len)
{
    if (b->v->count + 2 > b->v->cap) {
        size_t cap = b->v->cap * 2;
        h2o_iovec_t *pairs = h2o_mem_alloc_pool(b->pool, sizeof(*pairs) * cap);
        memcpy(pairs, b->v->pairs, sizeof(*pairs) * b->v->count);
        b->v->pairs = pairs;
        b->v->cap = cap;
    }
    b->v->pairs[b->v->count++] = h2o_iovec_init(name, name_len);
    b->v->pairs[b->v->count++] = h2o_iovec_init(value, value_len);
}

#define ADD_LIT(b, name, ...) add_param(b, H2O_STRLIT(name), __VA_ARGS__)
#define ADD_STR(b, name, s) add_param(b, H2O_STRLIT(name), s, strlen(s))

static int is_hop_by_hop(const h2o_token_t *token)
{
    return token == H2O_TOKEN_CONNECTION || token == H2O_TOKEN_KEEP_ALIVE || token == H2O_TOKEN_TE ||
           token == H2O_TOKEN_TRANSFER_ENCODING || token == H2O_TOKEN_UPGRADE || token == H2O_TOKEN_CONTENT_LENGTH ||
           token == H2O_TOKEN_CONTENT_TYPE || token == H2O_TOKEN_HTTP2_SETTINGS;
}

static void add_header_params(builder_t *b, h2o_req_t *req)
{
    for (size_t i = 0; i != req->headers.size; ++i) {
        h2o_header_t *h = req->headers.entries + i;
        if (h2o_iovec_is_token(h->name) && is_hop_by_hop((const h2o_token_t *)h->name))
            continue;
        /* "Proxy" would become HTTP_PROXY (httpoxy); "_" in a name could impersonate "-" */
        if (h2o_lcstris(h->name->base, h->name->len, H2O_STRLIT("proxy")) || memchr(h->name->base, '_', h->name->len) != NULL)
            continue;
        /* repeated headers are joined, as CGI has one variable per name */
        int seen = 0;
        for (size_t j = 0; j != i && !seen; ++j)
            seen = h2o_lcstris(req->headers.entries[j].name->base, req->headers.entries[j].name->len, h->name->base, h->name->len);
        if (seen)
            continue;
        h2o_iovec_t value = h->value;
        for (size_t j = i + 1; j != req->headers.size; ++j) {
            h2o_header_t *other = req->headers.entries + j;
            if (h2o_lcstris(other->name->base, other->name->len, h->name->base, h->name->len))
                value = h2o_concat(b->pool, value,
                                   h->name == &H2O_TOKEN_COOKIE->buf ? h2o_iovec_init(H2O_STRLIT("; "))
                                                                     : h2o_iovec_init(H2O_STRLIT(", ")),
                                   other->value);
        }
        char *name = h2o_mem_alloc_pool(b->pool, h->name->len + 5);
        memcpy(name, "HTTP_", 5);
        for (size_t k = 0; k != h->name->len; ++k) {
            char c = h->name->base[k];
            name[5 + k] = c == '-' ? '_' : (char)toupper((unsigned char)c);
        }
        add_param(b, name, h->name->len + 5, value.base, value.len);
    }
}

static char *format_address(h2o_mem_pool_t *pool, struct sockaddr *sa, socklen_t len, char **port)
{
    char *host = h2o_mem_alloc_pool(pool, NI_MAXHOST);
    *port = h2o_mem_alloc_pool(pool, sizeof(H2O_UINT16_LONGEST_STR));
    if (len == 0 || h2o_socket_getnumerichost(sa, len, host) == SIZE_MAX)
        strcpy(host, "");
    int32_t p = len == 0 ? -1 : h2o_socket_getport(sa);
    sprintf(*port, "%d", p < 0 ? 0 : p);
    return host;
}

void h2p_cgi_vars_build(h2o_req_t *req, const h2p_cgi_script_t *t, h2p_cgi_vars_t *vars)
{
    *vars = (h2p_cgi_vars_t){h2o_mem_alloc_pool(&req->pool, sizeof(h2o_iovec_t) * 64), 0, 64};
    builder_t b = {&req->pool, vars};

    ADD_LIT(&b, "GATEWAY_INTERFACE", H2O_STRLIT("CGI/1.1"));
    ADD_LIT(&b, "SERVER_SOFTWARE", H2O_STRLIT("h2pool/" H2POOL_VERSION));
    ADD_LIT(&b, "REQUEST_METHOD", req->method.base, req->method.len);
    /* the URI the client sent, even after an internal rewrite */
    ADD_LIT(&b, "REQUEST_URI", req->input.path.base, req->input.path.len);
    h2p_request_t *r = h2p_request_of(req);
    h2o_iovec_t query = r != NULL ? h2p_request_query(r) : h2o_iovec_init("", 0);
    ADD_LIT(&b, "QUERY_STRING", query.base, query.len);
    ADD_LIT(&b, "SCRIPT_NAME", t->script_name.base, t->script_name.len);
    ADD_STR(&b, "SCRIPT_FILENAME", t->script_filename);
    ADD_STR(&b, "DOCUMENT_ROOT", t->document_root);
    ADD_LIT(&b, "DOCUMENT_URI", t->script_name.base, t->script_name.len);
    if (t->path_info.len != 0) {
        ADD_LIT(&b, "PATH_INFO", t->path_info.base, t->path_info.len);
        h2o_iovec_t translated = h2o_concat(&req->pool, h2o_iovec_init(t->document_root, strlen(t->document_root)), t->path_info);
        ADD_LIT(&b, "PATH_TRANSLATED", translated.base, translated.len);
    }
    if (req->version >= 0x200)
        ADD_LIT(&b, "SERVER_PROTOCOL", H2O_STRLIT("HTTP/2.0"));
    else if (req->version == 0x100)
        ADD_LIT(&b, "SERVER_PROTOCOL", H2O_STRLIT("HTTP/1.0"));
    else
        ADD_LIT(&b, "SERVER_PROTOCOL", H2O_STRLIT("HTTP/1.1"));
    int https = req->scheme == &H2O_URL_SCHEME_HTTPS;
    ADD_STR(&b, "REQUEST_SCHEME", https ? "https" : "http");
    if (https)
        ADD_LIT(&b, "HTTPS", H2O_STRLIT("on"));

    struct sockaddr_storage ss;
    socklen_t sl = h2p_conn_local_address(req, &ss);
    char *port, *addr = format_address(&req->pool, (void *)&ss, sl, &port);
    ADD_STR(&b, "SERVER_ADDR", addr);
    ADD_STR(&b, "SERVER_PORT", port);
    sl = req->conn->callbacks->get_peername(req->conn, (void *)&ss);
    addr = format_address(&req->pool, (void *)&ss, sl, &port);
    ADD_STR(&b, "REMOTE_ADDR", addr);
    ADD_STR(&b, "REMOTE_PORT", port);

    h2o_iovec_t host;
    uint16_t host_port;
    if (h2o_url_parse_hostport(req->authority.base, req->authority.len, &host, &host_port) == NULL)
        host = req->authority;
    ADD_LIT(&b, "SERVER_NAME", host.base, host.len);
    ADD_LIT(&b, "HTTP_HOST", req->authority.base, req->authority.len);

    ssize_t ct = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (ct != -1)
        ADD_LIT(&b, "CONTENT_TYPE", req->headers.entries[ct].value.base, req->headers.entries[ct].value.len);
    if (req->entity.base != NULL) {
        char *len = h2o_mem_alloc_pool(&req->pool, sizeof(H2O_UINT64_LONGEST_STR));
        ADD_LIT(&b, "CONTENT_LENGTH", len, sprintf(len, "%zu", req->entity.len));
    }
    ADD_LIT(&b, "REDIRECT_STATUS", H2O_STRLIT("200")); /* php-cgi's cgi.force_redirect wants it */
    add_header_params(&b, req);
    if (r != NULL && r->remote_user.base != NULL) {
        ADD_LIT(&b, "REMOTE_USER", r->remote_user.base, r->remote_user.len);
        ADD_LIT(&b, "AUTH_TYPE", r->auth_type.base, r->auth_type.len);
    }
}

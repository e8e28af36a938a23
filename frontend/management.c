/* The management endpoint: see management.h. */
#include "frontend/management.h"
#include "frontend/alloc.h"

#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <strings.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/log.h"
#include "native-modules/htpasswd.h"
#include "frontend/status.h"

#define MAX_MANAGEMENT_CONNECTIONS 32 /* a dashboard or two and a Prometheus server */

extern const char h2p_dashboard_html[], h2p_dashboard_js[]; /* frontend/dashboard/, embedded at build time */
extern const size_t h2p_dashboard_html_len, h2p_dashboard_js_len;

static struct {
    int fd;
    char *opened; /* server.management as it was at start */
    int loopback; /* bound to a loopback address: Host must not be a DNS name */
    char name[80];
    h2o_globalconf_t globalconf;
    h2o_hostconf_t *hostconf;
    h2o_hostconf_t *hosts[2];
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    h2o_socket_t *listener;
    size_t num_connections;
    /* server.management_users_file, read at start; NULL: no authentication */
    h2p_htpasswd_t *users;
    /* the last Authorization value that verified, and until when it is believed (a dashboard
     * polls every second: one crypt(3) a minute, not one a request, on the supervisor's loop) */
    char verified[512];
    uint64_t verified_until;
} mgmt = {.fd = -1};

int h2p_management_parse_address(const char *text, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon = strrchr(text, ':');
    memset(ss, 0, sizeof(*ss));
    if (colon == NULL || (size_t)(colon - text) >= sizeof(host) || colon[1] == '\0')
        return -1;
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (*end != '\0' || port == 0 || port > 65535 || !isdigit((unsigned char)colon[1]))
        return -1;
    memcpy(host, text, colon - text);
    host[colon - text] = '\0';
    struct sockaddr_in *sin = (void *)ss;
    struct sockaddr_in6 *sin6 = (void *)ss;
    if (strcmp(host, "*") == 0) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_addr = in6addr_any;
        sin6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*sin6);
        return 0;
    }
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host[n - 1] = '\0';
        if (inet_pton(AF_INET6, host + 1, &sin6->sin6_addr) != 1)
            return -1;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*sin6);
        return 0;
    }
    if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
        return -1;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    *len = sizeof(*sin);
    return 0;
}

static int is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
}

int h2p_management_open(const h2p_server_conf_t *server, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (server->management == NULL)
        return 0;
    mgmt.opened = h2p_strdup(server->management);
    snprintf(mgmt.name, sizeof(mgmt.name), "http://%s", server->management);
    if (h2p_management_parse_address(server->management, &ss, &len) != 0) {
        snprintf(err, errlen, "server.management: bad address \"%s\"", server->management);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 && errno == EAFNOSUPPORT && ss.ss_family == AF_INET6 &&
        IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&ss)->sin6_addr)) {
        /* `*` on a host without IPv6: every IPv4 address */
        uint16_t port = ((struct sockaddr_in6 *)&ss)->sin6_port;
        memset(&ss, 0, sizeof(ss));
        ((struct sockaddr_in *)&ss)->sin_family = AF_INET;
        ((struct sockaddr_in *)&ss)->sin_port = port;
        len = sizeof(struct sockaddr_in);
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    }
    int on = 1, off = 0;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
        if (ss.ss_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
    }
    if (fd < 0 || bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 64) != 0) {
        snprintf(err, errlen, "server.management: cannot listen on %s: %s", server->management, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    mgmt.fd = fd;
    mgmt.loopback = is_loopback(&ss);
    if (server->management_users_file != NULL) {
        mgmt.users = h2o_mem_alloc(sizeof(*mgmt.users));
        if (h2p_htpasswd_load(mgmt.users, server->management_users_file, err, errlen) != 0) {
            free(mgmt.users);
            mgmt.users = NULL;
            return -1;
        }
    }
    return 0;
}

/* ---- requests ------------------------------------------------------------------------------- */

/*
 * A page on a loopback address can be reached by any web page the machine's browser shows, through
 * a DNS name that resolves to 127.0.0.1 (DNS rebinding): then its Host is that name.  People and
 * Prometheus reach a loopback endpoint by address or as localhost.
 */
static int host_allowed(h2o_req_t *req)
{
    if (!mgmt.loopback || req->input.authority.base == mgmt.hostconf->authority.hostport.base)
        return 1; /* (no Host header: h2o put in the host configuration's own name) */
    h2o_iovec_t name;
    uint16_t port;
    if (req->input.authority.len > 255 ||
        h2o_url_parse_hostport(req->input.authority.base, req->input.authority.len, &name, &port) == NULL)
        return 0;
    char host[256];
    memcpy(host, name.base, name.len);
    host[name.len] = '\0';
    if (strcasecmp(host, "localhost") == 0)
        return 1;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return 1;
    if (name.len > 2 && host[0] == '[' && host[name.len - 1] == ']') {
        host[name.len - 1] = '\0';
        return inet_pton(AF_INET6, host + 1, &a6) == 1;
    }
    return inet_pton(AF_INET6, host, &a6) == 1;
}

static void respond(h2o_req_t *req, int status, const char *reason, const char *type, const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = reason;
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, type, strlen(type));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-content-type-options"), 0, NULL, H2O_STRLIT("nosniff"));
    h2o_send_inline(req, body, len);
}

static void respond_text(h2o_req_t *req, int status, const char *reason, const char *body)
{
    respond(req, status, reason, "text/plain; charset=utf-8", body, strlen(body));
}

static void serve_status(h2o_req_t *req)
{
    json_t *status = h2p_status_json(H2P_STATUS_WORKERS | H2P_STATUS_HISTORY | H2P_STATUS_ERRORS);
    char *body = json_dumps(status, JSON_COMPACT);
    json_decref(status);
    respond(req, 200, "OK", "application/json", body, strlen(body));
    free(body);
}

static void serve_metrics(h2o_req_t *req)
{
    size_t len;
    char *body = h2p_metrics_text(&len);
    respond(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body, len);
    free(body);
}

static void serve_dashboard(h2o_req_t *req, int script)
{
    if (!script) {
        /* the page runs only its own script, talks only to this server, and is framed by nobody */
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("content-security-policy"), 0, NULL,
                              H2O_STRLIT("default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
                                         "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"));
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-frame-options"), 0, NULL, H2O_STRLIT("DENY"));
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("referrer-policy"), 0, NULL, H2O_STRLIT("no-referrer"));
        respond(req, 200, "OK", "text/html; charset=utf-8", h2p_dashboard_html, h2p_dashboard_html_len);
    } else {
        respond(req, 200, "OK", "text/javascript; charset=utf-8", h2p_dashboard_js, h2p_dashboard_js_len);
    }
}

static int path_is(h2o_iovec_t path, const char *s)
{
    return h2o_memis(path.base, path.len, s, strlen(s));
}

/* "Basic base64(user:password)" of a user of server.management_users_file. */
static int authorized(h2o_req_t *req)
{
    if (mgmt.users == NULL)
        return 1;
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i < 0)
        return 0;
    h2o_iovec_t value = req->headers.entries[i].value;
    uint64_t now = h2o_now(mgmt.ctx.loop);
    if (value.len < sizeof(mgmt.verified) && now < mgmt.verified_until && strlen(mgmt.verified) == value.len &&
        memcmp(mgmt.verified, value.base, value.len) == 0)
        return 1;
    if (value.len < 7 || value.len > 400 || strncasecmp(value.base, "Basic ", 6) != 0)
        return 0;
    const char *b64 = value.base + 6;
    size_t b64_len = value.len - 6;
    unsigned char decoded[400];
    int n = b64_len % 4 == 0 ? EVP_DecodeBlock(decoded, (const unsigned char *)b64, (int)b64_len) : -1;
    if (n <= 0)
        return 0;
    for (size_t p = b64_len; p != 0 && b64[p - 1] == '='; --p)
        --n; /* EVP_DecodeBlock counts the padding as bytes */
    const unsigned char *colon = memchr(decoded, ':', (size_t)n);
    int ok = colon != NULL && colon != decoded &&
             h2p_htpasswd_verify(mgmt.users, (const char *)decoded, (size_t)(colon - decoded), (const char *)colon + 1,
                                 (size_t)(decoded + n - colon - 1)) != NULL;
    OPENSSL_cleanse(decoded, sizeof(decoded));
    if (ok && value.len < sizeof(mgmt.verified)) {
        memcpy(mgmt.verified, value.base, value.len);
        mgmt.verified[value.len] = '\0';
        mgmt.verified_until = now + 60000;
    }
    return ok;
}

static int on_management_req(h2o_handler_t *self, h2o_req_t *req)
{
    if (!host_allowed(req)) {
        respond_text(req, 403, "Forbidden",
                     "the management endpoint answers to its IP address or localhost only (another name may be DNS rebinding)\n");
        return 0;
    }
    if (!authorized(req)) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL,
                       H2O_STRLIT("Basic realm=\"h2pool management\""));
        respond_text(req, 401, "Unauthorized", "the management endpoint needs a user of server.management_users_file\n");
        return 0;
    }
    h2o_iovec_t path = req->path_normalized, method = req->method;
    if (!h2o_memis(method.base, method.len, H2O_STRLIT("GET")) && !h2o_memis(method.base, method.len, H2O_STRLIT("HEAD"))) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET, HEAD"));
        respond_text(req, 405, "Method Not Allowed", "the management endpoint only reads: GET or HEAD\n");
        return 0;
    }
    if (path_is(path, "/status"))
        serve_status(req);
    else if (path_is(path, "/metrics"))
        serve_metrics(req);
    else if (path_is(path, "/") || path_is(path, "/index.html"))
        serve_dashboard(req, 0);
    else if (path_is(path, "/dashboard.js"))
        serve_dashboard(req, 1);
    else
        respond_text(req, 404, "Not Found", "not found: the management endpoint has /, /status and /metrics\n");
    return 0;
}

/* ---- connections ---------------------------------------------------------------------------- */

static void on_connection_close(void *data)
{
    mgmt.num_connections--;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    if (err != NULL)
        return;
    for (int i = 0; i != 16; ++i) {
        h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
        if (sock == NULL)
            return;
        if (mgmt.num_connections >= MAX_MANAGEMENT_CONNECTIONS) {
            h2o_socket_close(sock);
            continue;
        }
        mgmt.num_connections++;
        sock->on_close.cb = on_connection_close;
        h2o_accept(&mgmt.accept_ctx, sock);
    }
}

void h2p_management_start(h2o_evloop_t *loop)
{
    if (mgmt.fd < 0)
        return;
    h2o_config_init(&mgmt.globalconf);
    mgmt.globalconf.server_name = h2o_iovec_init(H2O_STRLIT("h2pool"));
    mgmt.globalconf.max_request_entity_size = 4096; /* it takes no bodies */
    mgmt.hostconf = h2o_config_register_host(&mgmt.globalconf, h2o_iovec_init(H2O_STRLIT("h2pool-management")), 65535);
    h2o_pathconf_t *pathconf = h2o_config_register_path(mgmt.hostconf, "/", 0);
    h2o_create_handler(pathconf, sizeof(h2o_handler_t))->on_req = on_management_req;
    h2o_context_init(&mgmt.ctx, loop, &mgmt.globalconf);
    mgmt.hosts[0] = mgmt.hostconf;
    mgmt.accept_ctx.ctx = &mgmt.ctx;
    mgmt.accept_ctx.hosts = mgmt.hosts;
    mgmt.listener = h2o_evloop_socket_create(loop, mgmt.fd, H2O_SOCKET_FLAG_DONT_READ);
    h2o_socket_read_start(mgmt.listener, on_accept);
    h2p_notice(NULL, "management endpoint on %s (/, /status, /metrics)", mgmt.name);
}

void h2p_management_stop(void)
{
    if (mgmt.listener == NULL)
        return;
    h2o_socket_read_stop(mgmt.listener);
    h2o_socket_close(mgmt.listener);
    mgmt.listener = NULL;
    mgmt.fd = -1;
    h2o_context_request_shutdown(&mgmt.ctx);
}

void h2p_management_check_reload(const h2p_server_conf_t *next)
{
    const char *running = mgmt.opened;
    if ((running == NULL) != (next->management == NULL) || (running != NULL && strcmp(running, next->management) != 0))
        h2p_warn(NULL, "server.management changed: it applies at the next start (still %s)", running != NULL ? running : "off");
}

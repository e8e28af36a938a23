#include "frontend/router.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "frontend/log.h"
#include "frontend/tls.h"
#include "handlers/fastcgi.h"
#include "handlers/static.h"
#include "poolmgr/pool.h"

/* ---- generations --------------------------------------------------------------------- */

h2p_gen_t *h2p_gen_retain(h2p_gen_t *gen)
{
    __atomic_add_fetch(&gen->refcnt, 1, __ATOMIC_RELAXED);
    return gen;
}

static void free_gen(h2p_gen_t *gen)
{
    for (size_t i = 0; i != gen->num_listeners; ++i) {
        free(gen->listeners[i].routes);
        if (gen->listeners[i].ssl_ctx != NULL)
            SSL_CTX_free(gen->listeners[i].ssl_ctx);
    }
    free(gen->listeners);
    for (size_t s = 0; s != gen->num_sites; ++s) {
        h2p_site_rt_t *site = gen->sites + s;
        for (size_t a = 0; a != site->num_apps; ++a) {
            h2p_app_rt_t *app = site->apps + a;
            for (size_t h = 0; h != app->num_handlers; ++h)
                if (app->handler_pools[h] != NULL)
                    h2p_pool_release(app->handler_pools[h]);
            free(app->handler_pools);
            free(app->real_root);
        }
        free(site->apps);
        if (site->ssl_ctx != NULL)
            SSL_CTX_free(site->ssl_ctx);
    }
    free(gen->sites);
    h2o_config_dispose(&gen->globalconf);
    h2o_mem_release_shared(gen->mimemap);
    h2p_config_release(gen->conf);
    free(gen);
}

void h2p_gen_release(h2p_gen_t *gen)
{
    if (__atomic_sub_fetch(&gen->refcnt, 1, __ATOMIC_ACQ_REL) == 0)
        free_gen(gen);
}

SSL_CTX *h2p_gen_ssl_ctx(h2p_gen_t *gen, h2p_listener_t *listener)
{
    return listener->index < gen->num_listeners ? gen->listeners[listener->index].ssl_ctx : NULL;
}

static int build_app(h2p_gen_t *gen, h2p_site_rt_t *site, h2p_application_conf_t *conf, h2p_app_rt_t *app, char *err, size_t errlen)
{
    app->conf = conf;
    app->prefix = strcmp(conf->path, "/") == 0 ? "" : conf->path;
    app->prefix_len = strlen(app->prefix);
    app->root = conf->root;
    app->root_len = strlen(conf->root);
    while (app->root_len > 1 && app->root[app->root_len - 1] == '/')
        --app->root_len;
    if ((app->real_root = realpath(conf->root, NULL)) == NULL) {
        snprintf(err, errlen, "site %s: root %s: %s", site->conf->name, conf->root, strerror(errno));
        return -1;
    }
    app->real_root_len = strlen(app->real_root);
    h2p_scope_conf_t *root_scope = &site->conf->applications[0].scope;
    app->default_documents = conf->scope.has_default_documents ? &conf->scope.default_documents : &root_scope->default_documents;
    app->follow_symlinks = conf->scope.follow_symlinks >= 0 ? conf->scope.follow_symlinks : root_scope->follow_symlinks > 0;
    app->directory_listing = conf->scope.directory_listing >= 0 ? conf->scope.directory_listing : root_scope->directory_listing > 0;

    app->pathconf = h2o_config_register_path(site->hostconf, conf->path, 0);
    /* default documents are the router's job (apply_default_document): libh2o must not add its own
       index files (index.txt, ...) that the site never listed */
    static const char *no_index_files[] = {NULL};
    /* h2o_file_handler_t begins with its h2o_handler_t */
    app->file = (h2o_handler_t *)h2o_file_register(app->pathconf, conf->root, no_index_files, gen->mimemap,
                                                   app->directory_listing ? H2O_FILE_FLAG_DIR_LISTING : 0);

    if (conf->has_handlers) {
        app->handlers = conf->handlers;
        app->num_handlers = conf->num_handlers;
    } else {
        app->handlers = site->conf->handlers;
        app->num_handlers = site->conf->num_handlers;
    }
    app->handler_pools = calloc(app->num_handlers + 1, sizeof(*app->handler_pools));
    for (size_t h = 0; h != app->num_handlers; ++h) {
        h2p_handler_mapping_t *m = app->handlers + h;
        if (m->pool_conf == NULL)
            continue;
        /* IIS: an application's pool runs every pool-bound handler mapping of that application */
        h2p_pool_conf_t *pool_conf = conf->pool_conf != NULL ? conf->pool_conf : m->pool_conf;
        app->handler_pools[h] = h2p_pool_get(pool_conf);
    }
    return 0;
}

static void add_route(h2p_listener_rt_t *lr, const h2p_binding_t *b, h2p_site_rt_t *site, int exact_address)
{
    if (b->host == NULL) {
        /* a binding on the exact address beats a `*` binding for the same port */
        if (lr->fallback == NULL || exact_address)
            lr->fallback = site;
        return;
    }
    lr->routes = realloc(lr->routes, sizeof(*lr->routes) * (lr->num_routes + 1));
    h2p_route_t route = {b->host, strlen(b->host), site};
    if (exact_address) { /* exact-address routes come first */
        memmove(lr->routes + 1, lr->routes, sizeof(*lr->routes) * lr->num_routes);
        lr->routes[0] = route;
    } else {
        lr->routes[lr->num_routes] = route;
    }
    lr->num_routes++;
}

static h2p_site_rt_t *find_site(h2p_listener_rt_t *lr, const char *host, size_t host_len)
{
    for (size_t i = 0; i != lr->num_routes; ++i)
        if (lr->routes[i].host_len == host_len && memcmp(lr->routes[i].host, host, host_len) == 0)
            return lr->routes[i].site;
    return lr->fallback;
}

static SSL_CTX *pick_certificate(void *arg, const char *servername)
{
    h2p_listener_rt_t *lr = arg;
    char host[256];
    size_t len = strlen(servername);
    if (len >= sizeof(host))
        return NULL;
    for (size_t i = 0; i != len; ++i)
        host[i] = (char)tolower((unsigned char)servername[i]);
    h2p_site_rt_t *site = find_site(lr, host, len);
    return site != NULL ? site->ssl_ctx : NULL;
}

static int build_listener_routes(h2p_gen_t *gen, char *err, size_t errlen)
{
    gen->num_listeners = h2p_server.num_listeners;
    gen->listeners = calloc(gen->num_listeners + 1, sizeof(*gen->listeners));
    for (size_t i = 0; i != gen->num_listeners; ++i) {
        h2p_listener_t *l = h2p_server.listeners[i];
        h2p_listener_rt_t *lr = gen->listeners + i;
        h2p_site_rt_t *first = NULL;
        for (size_t s = 0; s != gen->num_sites; ++s) {
            h2p_site_rt_t *site = gen->sites + s;
            for (size_t b = 0; b != site->conf->num_bindings; ++b) {
                h2p_binding_t *binding = site->conf->bindings + b;
                if (binding->scheme != l->scheme || binding->port != l->port)
                    continue;
                int exact = !binding->any_address && h2p_server_find_listener(binding->scheme, &binding->addr, binding->port) == l;
                if (!exact && !binding->any_address)
                    continue; /* bound to another address of this port */
                add_route(lr, binding, site, exact);
                if (first == NULL)
                    first = site;
            }
        }
        if (l->scheme == H2P_SCHEME_HTTPS && first != NULL) {
            /* the listener's own context: the catch-all site's certificate (else the first site's) and SNI */
            h2p_site_rt_t *dflt = lr->fallback != NULL ? lr->fallback : first;
            if ((lr->ssl_ctx = h2p_tls_create_site_ctx(dflt->conf, err, errlen)) == NULL)
                return -1;
            h2p_tls_set_sni(lr->ssl_ctx, pick_certificate, lr);
        }
    }
    return 0;
}

h2p_gen_t *h2p_gen_create(h2p_config_t *conf, char *err, size_t errlen)
{
    h2p_gen_t *gen = calloc(1, sizeof(*gen));
    gen->refcnt = 1;
    gen->conf = h2p_config_retain(conf);
    h2o_config_init(&gen->globalconf);
    gen->mimemap = h2o_mimemap_create();
    gen->sites = calloc(conf->num_sites + 1, sizeof(*gen->sites));
    for (size_t s = 0; s != conf->num_sites; ++s) {
        h2p_site_conf_t *sc = conf->sites + s;
        if (sc->bindings[0].scheme == H2P_SCHEME_TCP)
            continue; /* socket-activated sites have no HTTP routing */
        h2p_site_rt_t *site = gen->sites + gen->num_sites++;
        site->conf = sc;
        site->hostconf = h2o_config_register_host(&gen->globalconf, h2o_iovec_init(sc->name, strlen(sc->name)), 65535);
        /* config lists the root application first; match longest prefix first, root last */
        site->num_apps = sc->num_applications;
        site->apps = calloc(site->num_apps, sizeof(*site->apps));
        for (size_t a = 0; a != sc->num_applications; ++a) {
            size_t slot = a == 0 ? sc->num_applications - 1 : a - 1;
            if (build_app(gen, site, sc->applications + a, site->apps + slot, err, errlen) != 0)
                goto Error;
        }
        if (sc->tls.certificate != NULL && (site->ssl_ctx = h2p_tls_create_site_ctx(sc, err, errlen)) == NULL)
            goto Error;
    }
    if (build_listener_routes(gen, err, errlen) != 0)
        goto Error;
    return gen;
Error:
    free_gen(gen);
    return NULL;
}

/* ---- the router ---------------------------------------------------------------------- */

typedef struct router_handler {
    h2o_handler_t super;
    h2p_listener_t *listener;
} router_handler_t;

/* Each request holds its generation until it is disposed: a reload never frees what it uses. */
typedef struct request_scope {
    h2p_gen_t *gen;
    h2p_thread_t *thread;
} request_scope_t;

static void on_request_dispose(void *p)
{
    request_scope_t *scope = p;
    scope->thread->requests_in_flight--;
    h2p_gen_release(scope->gen);
}

static int find_host(h2o_req_t *req, h2p_listener_t *listener, char *host, size_t *host_len)
{
    h2o_iovec_t authority = req->input.authority;
    if (authority.base == listener->router_hostconf->authority.hostport.base)
        return 0; /* no Host header: h2o filled in the router's placeholder */
    h2o_iovec_t name;
    uint16_t port;
    if (authority.len > 255 || h2o_url_parse_hostport(authority.base, authority.len, &name, &port) == NULL)
        return -1;
    while (name.len != 0 && name.base[name.len - 1] == '.') /* "example.com." is "example.com" */
        --name.len;
    for (size_t i = 0; i != name.len; ++i)
        host[i] = (char)tolower((unsigned char)name.base[i]);
    *host_len = name.len;
    return 1;
}

static h2p_app_rt_t *find_app(h2p_site_rt_t *site, h2o_iovec_t path)
{
    for (size_t a = 0; a + 1 < site->num_apps; ++a) {
        h2p_app_rt_t *app = site->apps + a;
        if (path.len >= app->prefix_len && memcmp(path.base, app->prefix, app->prefix_len) == 0 &&
            (path.len == app->prefix_len || path.base[app->prefix_len] == '/'))
            return app;
    }
    return site->apps + site->num_apps - 1;
}

/*
 * Handler-mapping patterns match like IIS's: a pattern without '/' ("*.php") is matched against
 * each path segment, one with '/' against the path up to each segment end.  The shortest match
 * is the script; what follows is PATH_INFO ("/index.php/a/b" -> "/index.php" + "/a/b").
 */
static int match_mapping(const char *pattern, const char *path, size_t path_len, size_t *script_len)
{
    int segment_only = strchr(pattern, '/') == NULL;
    char buf[path_len + 1];
    memcpy(buf, path, path_len);
    buf[path_len] = '\0';
    size_t seg_start = 1;
    for (size_t end = 1; end <= path_len; ++end) {
        if (end != path_len && buf[end] != '/')
            continue;
        char saved = buf[end];
        buf[end] = '\0';
        int hit = segment_only ? fnmatch(pattern, buf + seg_start, FNM_PERIOD) == 0 : fnmatch(pattern, buf, FNM_PATHNAME) == 0;
        buf[end] = saved;
        if (hit && end > seg_start) {
            *script_len = end;
            return 1;
        }
        seg_start = end + 1;
    }
    return 0;
}

/* The physical path of URL path `path` inside `app` (pool memory). */
static char *physical_path(h2o_mem_pool_t *pool, h2p_app_rt_t *app, const char *path, size_t len)
{
    size_t rel = app->prefix_len;
    char *p = h2o_mem_alloc_pool(pool, app->root_len + (len - rel) + 1);
    memcpy(p, app->root, app->root_len);
    memcpy(p + app->root_len, path + rel, len - rel);
    p[app->root_len + len - rel] = '\0';
    return p;
}

/* IIS's default document: "/dir/" becomes "/dir/index.php" when that file exists. */
static h2o_iovec_t apply_default_document(h2o_req_t *req, h2p_app_rt_t *app, h2o_iovec_t path)
{
    if (path.len == 0 || path.base[path.len - 1] != '/' || path.len < app->prefix_len)
        return path;
    const char *dir = physical_path(&req->pool, app, path.base, path.len);
    size_t dir_len = strlen(dir);
    for (size_t i = 0; i != app->default_documents->count; ++i) {
        const char *doc = app->default_documents->items[i];
        size_t doc_len = strlen(doc);
        char file[dir_len + doc_len + 1];
        memcpy(file, dir, dir_len);
        memcpy(file + dir_len, doc, doc_len + 1);
        struct stat st;
        if (stat(file, &st) == 0 && S_ISREG(st.st_mode))
            return h2o_concat(&req->pool, path, h2o_iovec_init(doc, doc_len));
    }
    return path;
}

static int serve_content(h2o_req_t *req, h2p_app_rt_t *app)
{
    h2o_iovec_t path = apply_default_document(req, app, req->path_normalized);

    for (size_t h = 0; h != app->num_handlers; ++h) {
        h2p_handler_mapping_t *m = app->handlers + h;
        size_t script_len;
        if (!match_mapping(m->path, path.base, path.len, &script_len))
            continue;
        if (m->cgi) {
            h2o_send_error_generic(req, 501, "Not Implemented", "CGI is not supported yet", 0);
            return 0;
        }
        h2p_fastcgi_target_t target = {
            .pool = app->handler_pools[h],
            .script_name = h2o_iovec_init(path.base, script_len),
            .path_info = h2o_iovec_init(path.base + script_len, path.len - script_len),
            .script_filename = physical_path(&req->pool, app, path.base, script_len),
            .document_root = app->root,
        };
        return h2p_fastcgi_handle(req, &target);
    }
    req->path_normalized = path;
    return h2p_static_serve(req, app, physical_path(&req->pool, app, path.base, path.len));
}

static int on_router_req(h2o_handler_t *_self, h2o_req_t *req)
{
    router_handler_t *self = (void *)_self;
    h2p_thread_t *th = h2p_this_thread;
    request_scope_t *scope = h2o_mem_alloc_shared(&req->pool, sizeof(*scope), on_request_dispose);
    scope->gen = h2p_gen_retain(th->gen);
    scope->thread = th;
    th->requests_in_flight++;

    h2p_listener_rt_t *lr = scope->gen->listeners + self->listener->index;
    char host[256];
    size_t host_len = 0;
    h2p_site_rt_t *site;
    switch (find_host(req, self->listener, host, &host_len)) {
    case 0:
        site = lr->fallback;
        break;
    case 1:
        site = find_site(lr, host, host_len);
        break;
    default:
        site = NULL;
        break;
    }
    if (site == NULL) {
        h2o_send_error_400(req, "Bad Request", "Invalid Hostname", 0);
        return 0;
    }
    if (memchr(req->path_normalized.base, '\0', req->path_normalized.len) != NULL) {
        h2o_send_error_400(req, "Bad Request", "Bad Request", 0);
        return 0;
    }
    h2p_app_rt_t *app = find_app(site, req->path_normalized);
    h2o_req_bind_conf(req, site->hostconf, app->pathconf);
    return serve_content(req, app);
}

h2o_hostconf_t *h2p_router_create_hostconf(h2o_globalconf_t *globalconf, h2p_listener_t *listener)
{
    /* the authority is a placeholder h2o substitutes when a request has no Host */
    char name[32];
    snprintf(name, sizeof(name), "h2pool-listener-%zu", listener->index);
    h2o_hostconf_t *hostconf = h2o_config_register_host(globalconf, h2o_iovec_init(name, strlen(name)), 65535);
    h2o_pathconf_t *pathconf = h2o_config_register_path(hostconf, "/", 0);
    router_handler_t *handler = (void *)h2o_create_handler(pathconf, sizeof(*handler));
    handler->super.on_req = on_router_req;
    handler->listener = listener;
    return hostconf;
}

h2o_hostconf_t **h2p_router_hosts(h2p_listener_t *listener)
{
    h2o_hostconf_t **hosts = calloc(2, sizeof(*hosts));
    hosts[0] = listener->router_hostconf;
    return hosts;
}

void h2p_router_init_thread(h2p_thread_t *th)
{
    h2p_fastcgi_init_thread(th);
}

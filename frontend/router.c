#include "frontend/router.h"
#include "frontend/alloc.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frontend/conn_watch.h"
#include "frontend/log.h"
#include "frontend/tls.h"
#include "handlers/content.h"
#include "handlers/fastcgi.h"
#include "native-modules/cache_store.h"
#include "native-modules/module.h"
#include "native-modules/output_cache.h"
#include "poolmgr/pool.h"

/* ---- generations --------------------------------------------------------------------- */

h2p_gen_t *h2p_gen_retain(h2p_gen_t *gen)
{
    __atomic_add_fetch(&gen->refcnt, 1, __ATOMIC_RELAXED);
    return gen;
}

static h2o_pathconf_t *new_pathconf(h2p_gen_t *gen, const char *path)
{
    h2o_pathconf_t *pathconf = h2p_calloc(1, sizeof(*pathconf));
    h2o_config_init_pathconf(pathconf, &gen->globalconf, path, gen->mimemap);
    return pathconf;
}

static void free_pathconf(h2o_pathconf_t *pathconf)
{
    if (pathconf == NULL)
        return;
    h2o_config_dispose_pathconf(pathconf);
    free(pathconf);
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
            if (app->root_fd >= 0)
                close(app->root_fd);
            for (size_t i = 0; i != app->num_scopes; ++i)
                free_pathconf(app->scopes[i].pathconf);
            free(app->scopes);
        }
        free(site->apps);
        if (site->ssl_ctx != NULL)
            SSL_CTX_free(site->ssl_ctx);
    }
    free(gen->sites);
    h2p_cache_destroy(gen->cache);
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

/* A scope's module chain: request-phase handlers, the content handler, response filters. */
static int build_scope(h2p_gen_t *gen, h2p_site_rt_t *site, h2p_app_rt_t *app, h2p_scope_rt_t *scope, const h2p_scope_conf_t *over,
                       const char *prefix, char *err, size_t errlen)
{
    const h2p_scope_conf_t *site_scope = &site->conf->applications[0].scope, *app_scope = &app->conf->scope;
    scope->app = app;
    scope->prefix = prefix;
    scope->prefix_len = strlen(prefix);
    /* each setting: the location's, else the application's, else the site's */
    const h2p_scope_conf_t *levels[] = {over, app_scope, site_scope};
    scope->default_documents = &site_scope->default_documents;
    scope->follow_symlinks = scope->directory_listing = -1;
    for (size_t i = 0; i != 3; ++i) {
        if (levels[i] == NULL)
            continue;
        if (levels[i]->has_default_documents && scope->default_documents == &site_scope->default_documents)
            scope->default_documents = &levels[i]->default_documents;
        if (scope->follow_symlinks < 0)
            scope->follow_symlinks = levels[i]->follow_symlinks;
        if (scope->directory_listing < 0)
            scope->directory_listing = levels[i]->directory_listing;
    }
    scope->follow_symlinks = scope->follow_symlinks > 0;
    scope->directory_listing = scope->directory_listing > 0;
    h2p_modules_conf_t app_modules;
    h2p_modules_merge(&app_modules, &site_scope->modules, &app_scope->modules);
    h2p_modules_merge(&scope->modules, &app_modules, over != NULL ? &over->modules : &app_modules);

    /* (a pathconf of our own: h2o_config_register_path's move when the host's vector grows) */
    scope->pathconf = new_pathconf(gen, app->conf->path);
    h2p_module_scope_t ms = {scope->pathconf, &scope->modules,   site->conf, app->conf->root, err, errlen, 0,
                             scope,           &gen->conf->server};
    if (h2p_modules_setup_scope(&ms, H2P_PHASE_REQUEST) != 0)
        return -1;
    h2p_content_register(scope->pathconf, scope);
    return h2p_modules_setup_scope(&ms, H2P_PHASE_RESPONSE);
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
    app->root_fd = open(app->real_root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    struct stat root_st;
    if (app->root_fd >= 0 && fstat(app->root_fd, &root_st) == 0) {
        app->root_dev = root_st.st_dev;
        app->root_ino = root_st.st_ino;
    }

    if (conf->has_handlers) {
        app->handlers = conf->handlers;
        app->num_handlers = conf->num_handlers;
    } else {
        app->handlers = site->conf->handlers;
        app->num_handlers = site->conf->num_handlers;
    }
    app->handler_pools = h2p_calloc(app->num_handlers + 1, sizeof(*app->handler_pools));
    for (size_t h = 0; h != app->num_handlers; ++h) {
        h2p_handler_mapping_t *m = app->handlers + h;
        if (m->pool_conf == NULL)
            continue;
        /* IIS: an application's pool runs every pool-bound handler mapping of that application */
        h2p_pool_conf_t *pool_conf = conf->pool_conf != NULL ? conf->pool_conf : m->pool_conf;
        app->handler_pools[h] = h2p_pool_get(gen->conf, pool_conf);
    }

    /* locations (longest first, as the config lists them), then the application itself */
    app->scopes = h2p_calloc(site->conf->num_locations + 1, sizeof(*app->scopes));
    for (size_t l = 0; l != site->conf->num_locations; ++l) {
        h2p_location_conf_t *loc = site->conf->locations + l;
        if (!h2p_location_applies(app->prefix, app->prefix_len, loc->path))
            continue;
        if (build_scope(gen, site, app, app->scopes + app->num_scopes++, &loc->scope, strcmp(loc->path, "/") == 0 ? "" : loc->path,
                        err, errlen) != 0)
            return -1;
    }
    return build_scope(gen, site, app, app->scopes + app->num_scopes++, NULL, app->prefix, err, errlen);
}

static void add_route(h2p_listener_rt_t *lr, const h2p_binding_t *b, h2p_site_rt_t *site, int exact_address)
{
    if (b->host == NULL) {
        /* a binding on the exact address beats a `*` binding for the same port */
        if (lr->fallback == NULL || exact_address)
            lr->fallback = site;
        return;
    }
    lr->routes = h2o_mem_realloc(lr->routes, sizeof(*lr->routes) * (lr->num_routes + 1));
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
        host[i] = (char)h2o_tolower(servername[i]);
    h2p_site_rt_t *site = find_site(lr, host, len);
    return site != NULL ? site->ssl_ctx : NULL;
}

static int build_listener_routes(h2p_gen_t *gen, char *err, size_t errlen)
{
    gen->num_listeners = h2p_server.num_listeners;
    gen->listeners = h2p_calloc(gen->num_listeners + 1, sizeof(*gen->listeners));
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
    h2p_gen_t *gen = h2p_calloc(1, sizeof(*gen));
    gen->refcnt = 1;
    gen->conf = h2p_config_retain(conf);
    h2o_config_init(&gen->globalconf);
    gen->mimemap = h2o_mimemap_create();
    gen->cache = h2p_cache_create(conf->server.cache.max_memory, conf->server.cache.max_entry);
    gen->sites = h2p_calloc(conf->num_sites + 1, sizeof(*gen->sites));
    for (size_t s = 0; s != conf->num_sites; ++s) {
        h2p_site_conf_t *sc = conf->sites + s;
        if (sc->bindings[0].scheme == H2P_SCHEME_TCP)
            continue; /* socket-activated sites have no HTTP routing */
        h2p_site_rt_t *site = gen->sites + gen->num_sites++;
        site->conf = sc;
        site->hostconf = h2o_config_register_host(&gen->globalconf, h2o_iovec_init(sc->name, strlen(sc->name)), 65535);
        site->stats = h2p_stats_get(H2P_STATS_SITE, sc->name);
        /* config lists the root application first; match longest prefix first, root last */
        site->num_apps = sc->num_applications;
        site->apps = h2p_calloc(site->num_apps, sizeof(*site->apps));
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

/*
 * h2o_req_t has no slot for a server's own per-request state, so each thread keeps a small
 * open-addressing map from the request to its h2p_request_t (filters and handlers only get req):
 * h2p_thread_t.requests, set up when the thread starts.
 */
#define REQUEST_MAP_INITIAL 256

static size_t request_slot(h2o_req_t *req, size_t cap)
{
    return ((uintptr_t)req >> 4) * 0x9E3779B97F4A7C15ull >> 20 & (cap - 1);
}

static void request_map_put(h2p_request_map_t *map, h2o_req_t *req, h2p_request_t *r)
{
    if ((map->count + 1) * 2 > map->cap) {
        size_t old_cap = map->cap, cap = old_cap * 2;
        h2o_req_t **keys = h2p_calloc(cap, sizeof(*keys));
        h2p_request_t **values = h2p_calloc(cap, sizeof(*values));
        for (size_t i = 0; i != old_cap; ++i) {
            if (map->keys[i] == NULL)
                continue;
            size_t j = request_slot(map->keys[i], cap);
            while (keys[j] != NULL)
                j = (j + 1) & (cap - 1);
            keys[j] = map->keys[i];
            values[j] = map->values[i];
        }
        free(map->keys);
        free(map->values);
        map->keys = keys;
        map->values = values;
        map->cap = cap;
    }
    size_t i = request_slot(req, map->cap);
    while (map->keys[i] != NULL)
        i = (i + 1) & (map->cap - 1);
    map->keys[i] = req;
    map->values[i] = r;
    map->count++;
}

h2p_request_t *h2p_request_of(h2o_req_t *req)
{
    h2p_thread_t *th = h2p_this_thread;
    if (th == NULL || th->requests.cap == 0) /* (not a front-end thread, or one whose loop has ended) */
        return NULL;
    h2p_request_map_t *map = &th->requests;
    for (size_t i = request_slot(req, map->cap); map->keys[i] != NULL; i = (i + 1) & (map->cap - 1))
        if (map->keys[i] == req)
            return map->values[i];
    return NULL;
}

static void request_map_remove(h2p_request_map_t *map, h2o_req_t *req)
{
    size_t mask = map->cap - 1, i = request_slot(req, map->cap);
    while (map->keys[i] != req)
        i = (i + 1) & mask;
    /* backward-shift deletion keeps every probe chain unbroken */
    for (size_t j = (i + 1) & mask; map->keys[j] != NULL; j = (j + 1) & mask) {
        size_t home = request_slot(map->keys[j], map->cap);
        if (((j - home) & mask) >= ((j - i) & mask)) {
            map->keys[i] = map->keys[j];
            map->values[i] = map->values[j];
            i = j;
        }
    }
    map->keys[i] = NULL;
    map->count--;
}

/* Each request holds its generation until it is disposed: a reload never frees what it uses. */
static void on_request_dispose(void *p)
{
    h2p_request_t *r = p;
    h2p_request_track_end(&r->track);
    h2p_conn_watch_request_end(r->req);
    request_map_remove(&r->thread->requests, r->req);
    r->thread->requests_in_flight--;
    h2p_gen_release(r->gen);
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
        host[i] = (char)h2o_tolower(name.base[i]);
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

static h2p_scope_rt_t *find_scope(h2p_app_rt_t *app, h2o_iovec_t path)
{
    for (size_t i = 0; i + 1 < app->num_scopes; ++i) {
        h2p_scope_rt_t *scope = app->scopes + i;
        if (path.len >= scope->prefix_len && memcmp(path.base, scope->prefix, scope->prefix_len) == 0 &&
            (path.len == scope->prefix_len || path.base[scope->prefix_len] == '/' || scope->prefix_len == 0))
            return scope;
    }
    return app->scopes + app->num_scopes - 1;
}

/* "//private" is "/private": every prefix match (applications, locations, handler mappings,
 * module rules) must see one spelling of a path, or a doubled slash walks around them. */
static void collapse_slashes(h2o_req_t *req)
{
    h2o_iovec_t path = req->path_normalized;
    if (path.len < 2 || memmem(path.base, path.len, "//", 2) == NULL)
        return;
    char *dst = h2o_mem_alloc_pool(&req->pool, path.len);
    size_t n = 0;
    for (size_t i = 0; i != path.len; ++i)
        if (!(path.base[i] == '/' && n != 0 && dst[n - 1] == '/'))
            dst[n++] = path.base[i];
    req->path_normalized = h2o_iovec_init(dst, n);
}

/* run_chain where failed_request_tracing runs: each handler is a step of the trace. */
static int run_traced(h2o_req_t *req, h2p_request_t *r, size_t from)
{
    h2p_scope_rt_t *scope = r->scope;
    for (size_t i = from; i < scope->pathconf->handlers.size; ++i) {
        h2o_handler_t *handler = scope->pathconf->handlers.entries[i];
        int step = h2p_trace_step_begin(r, i < H2P_SCOPE_MAX_HANDLERS ? scope->handler_modules[i] : NULL);
        int answered = handler->on_req(handler, req) == 0;
        h2p_trace_step_end(r, step, answered);
        if (answered)
            return 0;
    }
    h2o_send_error_404(req, "Not Found", "not found", 0);
    return 0;
}

/* Runs r->scope's chain from handler `from` on: each module passes (-1) or answers (0); the
 * content handler is last. */
static int run_chain(h2o_req_t *req, h2p_request_t *r, size_t from)
{
    if (r->scope->traced || r->traced)
        return run_traced(req, r, from);
    h2o_handler_t **handler = r->scope->pathconf->handlers.entries + from,
                  **end = r->scope->pathconf->handlers.entries + r->scope->pathconf->handlers.size;
    for (; handler < end; ++handler)
        if ((*handler)->on_req(*handler, req) == 0)
            return 0;
    h2o_send_error_404(req, "Not Found", "not found", 0);
    return 0;
}

/* Runs the scope of req->path_normalized, from handler `from` on. */
static int run_scope(h2o_req_t *req, h2p_request_t *r, size_t from)
{
    r->app = find_app(r->site, req->path_normalized);
    r->scope = find_scope(r->app, req->path_normalized);
    h2o_req_bind_conf(req, r->site->hostconf, r->scope->pathconf);
    return run_chain(req, r, from);
}

int h2p_router_continue_after(h2o_req_t *req, h2o_handler_t *handler)
{
    h2p_request_t *r = h2p_request_of(req);
    h2o_pathconf_t *pathconf = r->scope->pathconf;
    for (size_t i = 0; i != pathconf->handlers.size; ++i)
        if (pathconf->handlers.entries[i] == handler)
            return run_chain(req, r, i + 1);
    h2o_send_error_500(req, "Internal Server Error", "internal error", 0); /* not in the scope that ran it: a bug */
    return 0;
}

int h2p_router_resume(h2o_req_t *req)
{
    h2p_request_t *r = h2p_request_of(req);
    collapse_slashes(req);
    /* the new path's scope may have a chain of another shape: go on after its rewrite slot */
    h2p_app_rt_t *app = find_app(r->site, req->path_normalized);
    return run_scope(req, r, find_scope(app, req->path_normalized)->resume_at);
}

/*
 * On https, the site the Host picks must have the client-certificate policy the handshake
 * followed (the SNI's site, or the default one): else a handshake made for a site that asks for
 * no certificate could reach one that requires one.  421 Misdirected Request, as RFC 9110
 * says and Apache's mod_ssl does; a client opens a new connection with the right SNI.
 */
static int tls_policy_allows(h2o_req_t *req, h2p_site_rt_t *site)
{
    SSL *ssl = h2p_tls_connection_ssl(req->conn->callbacks->get_socket(req->conn));
    return ssl != NULL && h2p_tls_same_client_policy(SSL_get_SSL_CTX(ssl), site->ssl_ctx);
}

/* A request the site refuses before any scope is chosen: its root application's scope sends the
 * error, so that its response modules (custom errors, headers, the site's log) see it too. */
static void bind_site_root(h2o_req_t *req, h2p_request_t *r)
{
    r->app = r->site->apps + r->site->num_apps - 1;
    r->scope = r->app->scopes + r->app->num_scopes - 1;
    h2o_req_bind_conf(req, r->site->hostconf, r->scope->pathconf);
}

static int on_router_req(h2o_handler_t *_self, h2o_req_t *req)
{
    router_handler_t *self = (void *)_self;
    h2p_thread_t *th = h2p_this_thread;
    h2p_request_t *r = h2o_mem_alloc_shared(&req->pool, sizeof(*r), on_request_dispose);
    *r = (h2p_request_t){req, h2p_gen_retain(th->gen), th};
    request_map_put(&th->requests, req, r);
    h2p_request_track_begin(&r->track, req);
    th->requests_in_flight++;
    h2p_conn_watch_request_begin(req);

    h2p_listener_rt_t *lr = r->gen->listeners + self->listener->index;
    char host[256];
    size_t host_len = 0;
    switch (find_host(req, self->listener, host, &host_len)) {
    case 0:
        r->site = lr->fallback;
        break;
    case 1:
        r->site = find_site(lr, host, host_len);
        break;
    default:
        break;
    }
    if (r->site == NULL) {
        h2o_send_error_400(req, "Bad Request", "Invalid Hostname", 0);
        return 0;
    }
    h2p_request_track_site(&r->track, r->site->stats);
    /* (a stale entry's refresh has no socket: the request it copies passed this check on this generation) */
    if (self->listener->scheme == H2P_SCHEME_HTTPS && !h2p_output_cache_is_refresh(req, r->gen) &&
        !tls_policy_allows(req, r->site)) {
        bind_site_root(req, r);
        h2o_send_error_generic(req, 421, "Misdirected Request", "this host needs a connection of its own (TLS client policy)", 0);
        return 0;
    }
    if (atomic_load_explicit(&r->site->stats->stopped, memory_order_relaxed)) { /* by `h2pool ctl stop site` */
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("60"));
        h2o_send_error_503(req, "Service Unavailable", "this site is stopped", H2O_SEND_ERROR_KEEP_HEADERS);
        return 0;
    }
    if (memchr(req->path_normalized.base, '\0', req->path_normalized.len) != NULL) {
        bind_site_root(req, r);
        h2o_send_error_400(req, "Bad Request", "Bad Request", 0);
        return 0;
    }
    collapse_slashes(req);
    return run_scope(req, r, 0);
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
    h2o_hostconf_t **hosts = h2p_calloc(2, sizeof(*hosts));
    hosts[0] = listener->router_hostconf;
    return hosts;
}

void h2p_router_init_thread(h2p_thread_t *th)
{
    th->requests = (h2p_request_map_t){h2p_calloc(REQUEST_MAP_INITIAL, sizeof(*th->requests.keys)),
                                       h2p_calloc(REQUEST_MAP_INITIAL, sizeof(*th->requests.values)), REQUEST_MAP_INITIAL, 0};
    h2p_fastcgi_init_thread(th);
    h2p_modules_init_thread(th);
    h2p_counters_init_thread(th);
}

void h2p_router_dispose_thread(h2p_thread_t *th)
{
    h2p_counters_dispose_thread(th);
    h2p_modules_dispose_thread(th);
    h2p_fastcgi_dispose_thread(th);
    /* every request is disposed by now: the map is empty */
    free(th->requests.keys);
    free(th->requests.values);
    th->requests = (h2p_request_map_t){NULL};
}

/*
 * A generation's run-time form (h2p_gen_t) and the router: the one h2o handler of every
 * listener, which picks the site by Host, the application by longest prefix, and runs the
 * request through that application's pipeline and content handler.
 */
#ifndef H2POOL_ROUTER_H
#define H2POOL_ROUTER_H

#include "frontend/server.h"

struct h2p_pool;

struct h2p_app_rt;

#define H2P_SCOPE_MAX_HANDLERS 32

/* A scope: an application, or a `locations:` prefix inside it, with its own module chain. */
typedef struct h2p_scope_rt {
    struct h2p_app_rt *app;
    const char *prefix; /* the location's path; the application's own scope has its prefix */
    size_t prefix_len;
    h2o_pathconf_t *pathconf;   /* request-phase module handlers, then the content handler; filters */
    h2p_modules_conf_t modules; /* merged: site <- application <- location */
    const h2p_strlist_t *default_documents;
    int follow_symlinks;
    int directory_listing;
    size_t resume_at; /* the first handler after the rewrite slot: where a rewritten request goes on */
    int traced;       /* failed_request_tracing runs here: the router times each handler */
    /* the module each handler of pathconf belongs to, for traces (NULL: the content handler) */
    const char *handler_modules[H2P_SCOPE_MAX_HANDLERS];
} h2p_scope_rt_t;

typedef struct h2p_app_rt {
    h2p_application_conf_t *conf;
    const char *prefix; /* "" for the root application, else "/shop" */
    size_t prefix_len;
    const char *root; /* physical root, no trailing slash */
    size_t root_len;
    char *real_root; /* realpath(root): what symlinks must stay inside */
    size_t real_root_len;
    int root_fd;    /* O_PATH descriptor of the root, opened at load: static files open beneath it */
    dev_t root_dev; /* root_fd's directory: while the root's path leads there, root_fd serves */
    ino_t root_ino;
    h2p_handler_mapping_t *handlers;
    size_t num_handlers;
    struct h2p_pool **handler_pools; /* the pool of each mapping (the application's pool wins), NULL for cgi */
    h2p_scope_rt_t *scopes;          /* locations inside this application, longest first; the application's own last */
    size_t num_scopes;
} h2p_app_rt_t;

typedef struct h2p_site_rt {
    h2p_site_conf_t *conf;
    h2o_hostconf_t *hostconf;
    struct h2p_stats *stats; /* by site name: counters, and whether `h2pool ctl` stopped it */
    h2p_app_rt_t *apps;      /* longest prefix first; the root application last */
    size_t num_apps;
    SSL_CTX *ssl_ctx;
} h2p_site_rt_t;

typedef struct h2p_route {
    const char *host; /* NULL = any Host */
    size_t host_len;
    h2p_site_rt_t *site;
} h2p_route_t;

typedef struct h2p_listener_rt {
    h2p_route_t *routes; /* bindings on this listener's exact address first, then `*` ones */
    size_t num_routes;
    h2p_site_rt_t *fallback; /* the binding without hostname, if any */
    SSL_CTX *ssl_ctx;        /* https: the default certificate plus the SNI callback */
} h2p_listener_rt_t;

typedef struct h2p_gen {
    unsigned refcnt; /* atomic */
    h2p_config_t *conf;
    h2o_globalconf_t globalconf; /* owns the sites' hostconfs and pathconfs */
    h2o_mimemap_t *mimemap;
    h2p_site_rt_t *sites;
    size_t num_sites;
    h2p_listener_rt_t *listeners; /* indexed by h2p_listener_t.index */
    size_t num_listeners;
    struct h2p_cache *cache; /* the output cache: a generation starts empty (native-modules/cache_store.h) */
} h2p_gen_t;

/* Builds the run-time form of `conf` for the server's listeners; NULL + `err` on failure. */
h2p_gen_t *h2p_gen_create(h2p_config_t *conf, char *err, size_t errlen);
h2p_gen_t *h2p_gen_retain(h2p_gen_t *gen);
void h2p_gen_release(h2p_gen_t *gen);
SSL_CTX *h2p_gen_ssl_ctx(h2p_gen_t *gen, h2p_listener_t *listener);

h2o_hostconf_t *h2p_router_create_hostconf(h2o_globalconf_t *globalconf, h2p_listener_t *listener);
h2o_hostconf_t **h2p_router_hosts(h2p_listener_t *listener);
void h2p_router_init_thread(h2p_thread_t *th);
/* Frees the thread's own router state; on the thread itself, after its loop has ended. */
void h2p_router_dispose_thread(h2p_thread_t *th);

void h2p_server_swap_generation(h2p_gen_t *gen);

#endif

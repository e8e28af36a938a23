/*
 * `sites:` of the configuration: bindings, TLS, the root application, applications, handler
 * mappings and locations, then the checks across sites (a binding may serve one site only).
 * Module settings are parsed by config_modules.c.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include "frontend/config.h"
#include "frontend/config_internal.h"

/* A site while it is being parsed: the site-level settings of the root application sit in `root`. */
typedef struct site_build {
    h2p_site_conf_t site;
    h2p_application_conf_t root;
    yaml_node_t *applications, *locations; /* parsed once `root` is known */
} site_build_t;

#define SITE(field) offsetof(site_build_t, field)
#define APP(field) offsetof(h2p_application_conf_t, field)
#define LOCATION(field) offsetof(h2p_location_conf_t, field)
#define HANDLER(field) offsetof(h2p_handler_mapping_t, field)

static const char *const default_documents[] = {"index.php", "index.html", "index.htm", "default.htm"};

/* Looks up the pool named by `pool:` in `map`; reports against that key. */
static h2p_pool_conf_t *resolve_pool(h2p_cfg_ctx_t *ctx, yaml_node_t *map, const char *name, h2p_activation_t want)
{
    yaml_node_t *node = h2p_cfg_map_get(ctx, map, "pool");
    size_t mark = h2p_cfg_path_push_key(ctx, "pool");
    h2p_pool_conf_t *pool = h2p_config_find_pool(ctx->conf, name);

    if (pool == NULL) {
        h2p_cfg_error(ctx, node, "no pool named \"%s\"", name);
    } else if (pool->activation != want) {
        h2p_cfg_error(ctx, node, "pool \"%s\" has activation: %s, here it must be %s", name,
                      pool->activation == H2P_ACTIVATION_SOCKET ? "socket" : "fastcgi",
                      want == H2P_ACTIVATION_SOCKET ? "socket (tcp:// site)" : "fastcgi");
        pool = NULL;
    }
    h2p_cfg_path_pop(ctx, mark);
    return pool;
}

/* A URL path prefix of an application or location: "/shop", "/" (locations only). */
static char *parse_prefix(h2p_cfg_ctx_t *ctx, yaml_node_t *key_node, const char *key)
{
    size_t len = strlen(key);

    if (key[0] != '/' || strstr(key, "//") != NULL || strstr(key, "/./") != NULL || strstr(key, "/../") != NULL ||
        strpbrk(key, "*?# \t\r\n") != NULL || (len >= 2 && strcmp(key + len - 2, "/.") == 0) ||
        (len >= 3 && strcmp(key + len - 3, "/..") == 0)) {
        h2p_cfg_error(ctx, key_node, "bad path prefix \"%s\" (must start with '/', no '.', '..', wildcards)", key);
        return NULL;
    }
    while (len > 1 && key[len - 1] == '/')
        len--;
    return h2p_cfg_strndup(ctx->arena, key, len);
}

static int by_descending_length(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    return la != lb ? (la > lb ? -1 : 1) : strcmp(a, b);
}

static int compare_applications(const void *a, const void *b)
{
    return by_descending_length(((const h2p_application_conf_t *)a)->path, ((const h2p_application_conf_t *)b)->path);
}

static int compare_locations(const void *a, const void *b)
{
    return by_descending_length(((const h2p_location_conf_t *)a)->path, ((const h2p_location_conf_t *)b)->path);
}

static void scope_inherit_all(h2p_scope_conf_t *scope)
{
    scope->has_default_documents = 0;
    scope->directory_listing = -1;
    scope->follow_symlinks = -1;
}

/* ---- callbacks of the key tables ---------------------------------------------------------- */

static void parse_default_documents(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_scope_conf_t *scope = (h2p_scope_conf_t *)((char *)base + key->offset);

    if (h2p_cfg_strlist(ctx, node, 0, &scope->default_documents) != 0)
        return;
    for (size_t i = 0; i < scope->default_documents.count; i++) {
        if (strchr(scope->default_documents.items[i], '/') != NULL) {
            size_t mark = h2p_cfg_path_push_index(ctx, i);
            h2p_cfg_error(ctx, h2p_cfg_node(ctx, node->data.sequence.items.start[i]), "a default document is a file name, no '/'");
            h2p_cfg_path_pop(ctx, mark);
        }
    }
    scope->has_default_documents = 1;
}

static void parse_modules_cb(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_cfg_parse_modules(ctx, node, (h2p_modules_conf_t *)((char *)base + key->offset));
}

static void remember_node(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    *(yaml_node_t **)((char *)base + key->offset) = node;
}

static const char *const resource_names[] = {"file", "directory", "either", "unspecified", NULL};

static const h2p_cfg_key_t handler_keys[] = {{"path", H2P_CFG_STRING, HANDLER(path), .flags = H2P_CFG_REQUIRED},
                                             {"pool", H2P_CFG_STRING, HANDLER(pool)},
                                             {"cgi", H2P_CFG_BOOL, HANDLER(cgi)},
                                             {"resource", H2P_CFG_ENUM, HANDLER(resource), .arg = resource_names},
                                             {NULL}};

/*
 * A pattern whose last segment has a dot names files ("*.php", "/cgi-bin/ *.cgi", "/status.php"):
 * such a mapping dispatches only to a file that exists, or "/img/evil.jpg/x.php" would hand an
 * upload to the interpreter (php-cgi's cgi.fix_pathinfo walks back to evil.jpg).  A pattern
 * without one ("/api/ *") names URLs an application routes itself: nothing to check.
 */
static h2p_resource_t default_resource(const char *pattern)
{
    const char *last = strrchr(pattern, '/');
    return strchr(last != NULL ? last : pattern, '.') != NULL ? H2P_RESOURCE_FILE : H2P_RESOURCE_UNSPECIFIED;
}

static void parse_handler(h2p_cfg_ctx_t *ctx, yaml_node_t *node, h2p_handler_mapping_t *handler)
{
    yaml_node_t *pool = h2p_cfg_map_get(ctx, node, "pool"), *cgi = h2p_cfg_map_get(ctx, node, "cgi");

    handler->origin = h2p_cfg_origin(ctx, node);
    handler->resource = H2P_RESOURCE_DEFAULT;
    h2p_cfg_parse_map(ctx, node, handler_keys, handler);
    if (handler->resource == H2P_RESOURCE_DEFAULT)
        handler->resource = handler->path != NULL ? default_resource(handler->path) : H2P_RESOURCE_UNSPECIFIED;
    if (node->type != YAML_MAPPING_NODE)
        return;
    if (handler->path != NULL && handler->path[0] != '/' && handler->path[0] != '*') {
        size_t mark = h2p_cfg_path_push_key(ctx, "path");
        h2p_cfg_error(ctx, h2p_cfg_map_get(ctx, node, "path"), "bad handler path \"%s\" (must start with '/' or '*')",
                      handler->path);
        h2p_cfg_path_pop(ctx, mark);
    }
    if (pool != NULL && cgi != NULL) {
        h2p_cfg_error(ctx, node, "a handler takes either pool or cgi, not both");
    } else if (pool == NULL && (cgi == NULL || !handler->cgi)) {
        h2p_cfg_error(ctx, node, "a handler needs pool: NAME or cgi: true");
    } else if (handler->pool != NULL) {
        handler->pool_conf = resolve_pool(ctx, node, handler->pool, H2P_ACTIVATION_FASTCGI);
    }
}

static void parse_handlers(h2p_cfg_ctx_t *ctx, yaml_node_t *node, h2p_handler_mapping_t **handlers, size_t *count)
{
    if (!h2p_cfg_expect_seq(ctx, node))
        return;
    *count = h2p_cfg_seq_size(node);
    *handlers = h2p_cfg_alloc(ctx->arena, *count, sizeof(**handlers));
    for (size_t i = 0; i < *count; i++) {
        size_t mark = h2p_cfg_path_push_index(ctx, i);
        parse_handler(ctx, h2p_cfg_node(ctx, node->data.sequence.items.start[i]), &(*handlers)[i]);
        h2p_cfg_path_pop(ctx, mark);
    }
}

static void parse_site_handlers(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    site_build_t *b = base;
    parse_handlers(ctx, node, &b->site.handlers, &b->site.num_handlers);
}

static void parse_application_handlers(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_application_conf_t *app = base;
    parse_handlers(ctx, node, &app->handlers, &app->num_handlers);
    app->has_handlers = 1;
}

static void parse_bindings(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_site_conf_t *site = &((site_build_t *)base)->site;
    size_t count = h2p_cfg_seq_size(node);

    if (!h2p_cfg_expect_seq(ctx, node))
        return;
    if (count == 0) {
        h2p_cfg_error(ctx, node, "a site needs at least one binding (the list is empty)");
        return;
    }
    /* one slot per item, so that indexes in messages match the file; a bad one keeps text NULL */
    site->bindings = h2p_cfg_alloc(ctx->arena, count, sizeof(*site->bindings));
    site->num_bindings = count;
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item = h2p_cfg_node(ctx, node->data.sequence.items.start[i]);
        h2p_binding_t *binding = &site->bindings[i];
        size_t mark = h2p_cfg_path_push_index(ctx, i);
        h2p_cfg_span_t host, bad;
        const char *err;
        char *text = h2p_cfg_string(ctx, item);

        if (text != NULL && h2p_cfg_parse_binding(text, binding, &host, &err, &bad) != 0) {
            h2p_cfg_error(ctx, item, "%s \"%.*s\"", err, (int)bad.len, bad.p);
            memset(binding, 0, sizeof(*binding));
        } else if (text != NULL) {
            binding->text = text;
            binding->origin = h2p_cfg_origin(ctx, item);
            if (host.len != 0) {
                binding->host = h2p_cfg_strndup(ctx->arena, host.p, host.len);
                for (char *c = binding->host; *c != '\0'; c++)
                    if (*c >= 'A' && *c <= 'Z')
                        *c += 'a' - 'A';
            }
        }
        h2p_cfg_path_pop(ctx, mark);
    }
}

/* ---- tables ------------------------------------------------------------------------------- */

static const char *const client_verify_names[] = {"none", "optional", "required", NULL};

static const h2p_cfg_key_t site_tls_keys[] = {
    {"certificate", H2P_CFG_KEY_FILE, SITE(site.tls.certificate)},
    {"key", H2P_CFG_KEY_FILE, SITE(site.tls.key)},
    {"client_ca", H2P_CFG_KEY_FILE, SITE(site.tls.client_ca)},
    {"client_verify", H2P_CFG_ENUM, SITE(site.tls.client_verify), .arg = client_verify_names},
    {NULL}};

static const h2p_cfg_key_t site_keys[] = {{"bindings", H2P_CFG_CUSTOM, 0, .parse = parse_bindings, .flags = H2P_CFG_REQUIRED},
                                          {"tls", H2P_CFG_MAP, 0, .arg = site_tls_keys},
                                          {"http2", H2P_CFG_BOOL, SITE(site.http2)},
                                          {"pool", H2P_CFG_STRING, SITE(site.pool)},
                                          {"root", H2P_CFG_DIR, SITE(root.root)},
                                          {"default_documents", H2P_CFG_CUSTOM, SITE(root.scope), .parse = parse_default_documents},
                                          {"directory_listing", H2P_CFG_BOOL, SITE(root.scope.directory_listing)},
                                          {"follow_symlinks", H2P_CFG_BOOL, SITE(root.scope.follow_symlinks)},
                                          {"applications", H2P_CFG_CUSTOM, SITE(applications), .parse = remember_node},
                                          {"handlers", H2P_CFG_CUSTOM, 0, .parse = parse_site_handlers},
                                          {"modules", H2P_CFG_CUSTOM, SITE(root.scope.modules), .parse = parse_modules_cb},
                                          {"locations", H2P_CFG_CUSTOM, SITE(locations), .parse = remember_node},
                                          {NULL}};

static const h2p_cfg_key_t application_keys[] = {
    {"root", H2P_CFG_DIR, APP(root)},
    {"pool", H2P_CFG_STRING, APP(pool)},
    {"default_documents", H2P_CFG_CUSTOM, APP(scope), .parse = parse_default_documents},
    {"directory_listing", H2P_CFG_BOOL, APP(scope.directory_listing)},
    {"follow_symlinks", H2P_CFG_BOOL, APP(scope.follow_symlinks)},
    {"handlers", H2P_CFG_CUSTOM, 0, .parse = parse_application_handlers},
    {"modules", H2P_CFG_CUSTOM, APP(scope.modules), .parse = parse_modules_cb},
    {NULL}};

static const h2p_cfg_key_t location_keys[] = {
    {"default_documents", H2P_CFG_CUSTOM, LOCATION(scope), .parse = parse_default_documents},
    {"directory_listing", H2P_CFG_BOOL, LOCATION(scope.directory_listing)},
    {"follow_symlinks", H2P_CFG_BOOL, LOCATION(scope.follow_symlinks)},
    {"modules", H2P_CFG_CUSTOM, LOCATION(scope.modules), .parse = parse_modules_cb},
    {NULL}};

/* ---- applications and locations ----------------------------------------------------------- */

static void parse_application(h2p_cfg_ctx_t *ctx, yaml_node_t *node, h2p_application_conf_t *app, const char *site_root)
{
    scope_inherit_all(&app->scope);
    h2p_cfg_parse_map(ctx, node, application_keys, app);
    if (node->type != YAML_MAPPING_NODE && !h2p_cfg_is_null(node))
        return;
    if (app->pool != NULL)
        app->pool_conf = resolve_pool(ctx, node, app->pool, H2P_ACTIVATION_FASTCGI);
    if (app->root == NULL && h2p_cfg_map_get(ctx, node, "root") == NULL && site_root != NULL) {
        /* as an IIS virtual directory without a physical path of its own: below the site's root */
        struct stat st;
        app->root = h2p_cfg_alloc(ctx->arena, strlen(site_root) + strlen(app->path) + 1, 1);
        strcpy(app->root, strcmp(site_root, "/") == 0 ? "" : site_root);
        strcat(app->root, app->path);
        if (ctx->check_files && (stat(app->root, &st) != 0 || !S_ISDIR(st.st_mode)))
            h2p_cfg_error(ctx, node, "no root given and \"%s\" is not a directory: cannot access it", app->root);
    }
}

static void parse_applications(h2p_cfg_ctx_t *ctx, yaml_node_t *node, site_build_t *b)
{
    h2p_site_conf_t *site = &b->site;
    size_t count = node != NULL ? h2p_cfg_map_size(node) : 0, mark = h2p_cfg_path_push_key(ctx, "applications");

    h2p_cfg_names_t paths = {NULL, NULL, 0, 0};

    site->applications = h2p_cfg_alloc(ctx->arena, count + 1, sizeof(*site->applications));
    site->applications[0] = b->root;
    site->num_applications = 1;
    if (node == NULL || !h2p_cfg_expect_map(ctx, node))
        goto out;
    for (size_t i = 0; i < count; i++) {
        h2p_application_conf_t *app = &site->applications[site->num_applications];
        yaml_node_t *key_node, *value;
        const char *key = h2p_cfg_map_entry(ctx, node, i, &key_node, &value);
        size_t key_mark;
        if (key == NULL)
            continue;
        key_mark = h2p_cfg_path_push_key(ctx, key);
        if ((app->path = parse_prefix(ctx, key_node, key)) == NULL) {
            /* reported */
        } else if (strcmp(app->path, "/") == 0) {
            h2p_cfg_error(ctx, key_node, "\"/\" is the root application: set its root and pool on the site itself");
        } else {
            if (h2p_cfg_names_put(&paths, app->path, i) != SIZE_MAX) {
                h2p_cfg_error(ctx, key_node, "duplicate application \"%s\"", app->path);
            } else {
                app->origin = h2p_cfg_origin(ctx, key_node);
                parse_application(ctx, value, app, b->root.root);
                site->num_applications++;
            }
        }
        h2p_cfg_path_pop(ctx, key_mark);
    }
    qsort(site->applications + 1, site->num_applications - 1, sizeof(*site->applications), compare_applications);
out:
    h2p_cfg_names_free(&paths);
    h2p_cfg_path_pop(ctx, mark);
}

static void parse_locations(h2p_cfg_ctx_t *ctx, yaml_node_t *node, h2p_site_conf_t *site)
{
    size_t count = h2p_cfg_map_size(node), mark = h2p_cfg_path_push_key(ctx, "locations");
    h2p_cfg_names_t paths = {NULL, NULL, 0, 0};

    if (!h2p_cfg_expect_map(ctx, node))
        goto out;
    site->locations = h2p_cfg_alloc(ctx->arena, count, sizeof(*site->locations));
    for (size_t i = 0; i < count; i++) {
        h2p_location_conf_t *location = &site->locations[site->num_locations];
        yaml_node_t *key_node, *value;
        const char *key = h2p_cfg_map_entry(ctx, node, i, &key_node, &value);
        size_t key_mark;
        if (key == NULL)
            continue;
        key_mark = h2p_cfg_path_push_key(ctx, key);
        if ((location->path = parse_prefix(ctx, key_node, key)) != NULL) {
            if (h2p_cfg_names_put(&paths, location->path, i) != SIZE_MAX) {
                h2p_cfg_error(ctx, key_node, "duplicate location \"%s\"", location->path);
            } else {
                location->origin = h2p_cfg_origin(ctx, key_node);
                scope_inherit_all(&location->scope);
                h2p_cfg_parse_map(ctx, value, location_keys, location);
                site->num_locations++;
            }
        }
        h2p_cfg_path_pop(ctx, key_mark);
    }
    qsort(site->locations, site->num_locations, sizeof(*site->locations), compare_locations);
out:
    h2p_cfg_names_free(&paths);
    h2p_cfg_path_pop(ctx, mark);
}

/* ---- checks of one site ------------------------------------------------------------------- */

/* The certificate, key and client CA loaded as the start loads them: a key that does not match
 * its certificate, or a file that is no PEM, is an error of -t and of a reload, not a surprise
 * at the next start.  Each problem is reported against its own key. */
static void tls_error(h2p_cfg_ctx_t *ctx, yaml_node_t *tls, const char *name, const char *what, const char *path)
{
    unsigned long code = ERR_peek_error(); /* the first: "no start line" says more than "PEM lib" */
    char reason[256] = "not a PEM file of that kind";
    yaml_node_t *node = h2p_cfg_map_get(ctx, tls, name);
    size_t mark = h2p_cfg_path_push_key(ctx, name);

    if (code != 0)
        ERR_error_string_n(code, reason, sizeof(reason));
    ERR_clear_error();
    h2p_cfg_error(ctx, node != NULL ? node : tls, "%s \"%s\": %s", what, path, reason);
    h2p_cfg_path_pop(ctx, mark);
}

static void check_tls_files(h2p_cfg_ctx_t *ctx, yaml_node_t *tls, h2p_site_conf_t *site)
{
    SSL_CTX *ssl;
    int certificate_ok, key_ok;

    if (!ctx->check_files || site->tls.certificate == NULL || site->tls.key == NULL)
        return; /* (a missing or unreadable file has been reported) */
    /* a key only root may read: the front end reloads as server.user, and the spawner, which
     * reads it, loads and checks it with its own configuration (a start, as root, checks here) */
    if (access(site->tls.key, R_OK) != 0 || access(site->tls.certificate, R_OK) != 0 ||
        (site->tls.client_ca != NULL && access(site->tls.client_ca, R_OK) != 0))
        return;
    if ((ssl = SSL_CTX_new(TLS_server_method())) == NULL)
        return;
    ERR_clear_error();
    /* the key first: loaded after the certificate, a key of another pair would fail as "cannot load" */
    if (!(key_ok = SSL_CTX_use_PrivateKey_file(ssl, site->tls.key, SSL_FILETYPE_PEM) == 1))
        tls_error(ctx, tls, "key", "cannot load the key", site->tls.key);
    if (!(certificate_ok = SSL_CTX_use_certificate_chain_file(ssl, site->tls.certificate) == 1))
        tls_error(ctx, tls, "certificate", "cannot load the certificate", site->tls.certificate);
    if (certificate_ok && key_ok && SSL_CTX_check_private_key(ssl) != 1)
        tls_error(ctx, tls, "key", "the key does not match the certificate", site->tls.key);
    if (site->tls.client_ca != NULL && SSL_CTX_load_verify_locations(ssl, site->tls.client_ca, NULL) != 1)
        tls_error(ctx, tls, "client_ca", "cannot load the client CA", site->tls.client_ca);
    SSL_CTX_free(ssl);
}

static void check_tls(h2p_cfg_ctx_t *ctx, yaml_node_t *site_node, h2p_site_conf_t *site)
{
    yaml_node_t *tls = h2p_cfg_map_get(ctx, site_node, "tls");
    size_t mark;

    for (size_t i = 0; i < site->num_bindings; i++) {
        /* (a certificate that is given but unreadable has been reported already) */
        if (site->bindings[i].scheme == H2P_SCHEME_HTTPS && (tls == NULL || h2p_cfg_map_get(ctx, tls, "certificate") == NULL)) {
            char path[64];
            snprintf(path, sizeof(path), "bindings[%zu]", i);
            mark = h2p_cfg_path_push_key(ctx, path);
            h2p_cfg_error_at(ctx, &site->bindings[i].origin, ctx->path, "an https binding needs tls.certificate and tls.key");
            h2p_cfg_path_pop(ctx, mark);
            break;
        }
    }
    if (tls == NULL || tls->type != YAML_MAPPING_NODE)
        return;
    mark = h2p_cfg_path_push_key(ctx, "tls");
    if ((h2p_cfg_map_get(ctx, tls, "certificate") == NULL) != (h2p_cfg_map_get(ctx, tls, "key") == NULL))
        h2p_cfg_error(ctx, tls, "certificate and key go together: give both");
    if (h2p_cfg_map_get(ctx, tls, "client_ca") != NULL) {
        if (h2p_cfg_map_get(ctx, tls, "client_verify") == NULL)
            site->tls.client_verify = H2P_CLIENT_VERIFY_OPTIONAL;
    } else if (site->tls.client_verify != H2P_CLIENT_VERIFY_NONE) {
        h2p_cfg_error(ctx, tls, "client_verify needs client_ca");
    }
    h2p_cfg_path_pop(ctx, mark);
    mark = h2p_cfg_path_push_key(ctx, "tls");
    check_tls_files(ctx, tls, site);
    h2p_cfg_path_pop(ctx, mark);
}

/* Whether a location applies to an application: one of the two paths contains the other. */
int h2p_location_applies(const char *app_prefix, size_t app_len, const char *location)
{
    size_t loc_len = strcmp(location, "/") == 0 ? 0 : strlen(location);
    size_t n = app_len < loc_len ? app_len : loc_len;
    const char *longer = app_len < loc_len ? location : app_prefix;
    return memcmp(app_prefix, location, n) == 0 && (longer[n] == '\0' || longer[n] == '/');
}

static void check_tcp_site(h2p_cfg_ctx_t *ctx, yaml_node_t *node, site_build_t *b)
{
    for (size_t i = 0; i < h2p_cfg_map_size(node); i++) {
        yaml_node_pair_t *pair = node->data.mapping.pairs.start + i;
        yaml_node_t *key_node = h2p_cfg_node(ctx, pair->key);
        const char *key = key_node->type == YAML_SCALAR_NODE ? (const char *)key_node->data.scalar.value : "bindings";
        if (strcmp(key, "bindings") != 0 && strcmp(key, "pool") != 0) {
            size_t mark = h2p_cfg_path_push_key(ctx, key);
            h2p_cfg_error(ctx, key_node, "\"%s\" does not apply to a site with tcp:// bindings", key);
            h2p_cfg_path_pop(ctx, mark);
        }
    }
    if (b->site.pool == NULL)
        h2p_cfg_error(ctx, node, "a site with tcp:// bindings needs pool: (a pool with activation: socket)");
    else
        b->site.pool_conf = resolve_pool(ctx, node, b->site.pool, H2P_ACTIVATION_SOCKET);
}

void h2p_cfg_parse_site(h2p_cfg_ctx_t *ctx, yaml_node_t *name_node, yaml_node_t *node, h2p_site_conf_t *site)
{
    site_build_t b;
    size_t num_tcp = 0, num_bad = 0;

    memset(&b, 0, sizeof(b));
    b.site.name = site->name;
    b.site.origin = site->origin;
    b.site.http2 = 1;
    b.root.path = h2p_cfg_strdup(ctx->arena, "/");
    b.root.origin = site->origin;
    h2p_cfg_strlist_set(ctx, &b.root.scope.default_documents, default_documents,
                        sizeof(default_documents) / sizeof(default_documents[0]));
    b.root.scope.has_default_documents = 1;
    ctx->site_name = site->name;
    h2p_cfg_modules_defaults(ctx, &b.root.scope.modules);

    h2p_cfg_parse_map(ctx, node, site_keys, &b);
    if (node->type != YAML_MAPPING_NODE) {
        ctx->site_name = NULL;
        return;
    }

    for (size_t i = 0; i < b.site.num_bindings; i++) {
        num_bad += b.site.bindings[i].text == NULL;
        num_tcp += b.site.bindings[i].scheme == H2P_SCHEME_TCP && b.site.bindings[i].text != NULL;
    }
    if (num_tcp != 0 && num_tcp + num_bad != b.site.num_bindings) {
        size_t mark = h2p_cfg_path_push_key(ctx, "bindings");
        h2p_cfg_error(ctx, h2p_cfg_map_get(ctx, node, "bindings"), "tcp:// bindings cannot be mixed with http:// or https://");
        h2p_cfg_path_pop(ctx, mark);
    }

    if (num_tcp != 0) {
        check_tcp_site(ctx, node, &b); /* serves no HTTP: no applications */
    } else {
        check_tls(ctx, node, &b.site);
        if (h2p_cfg_map_get(ctx, node, "root") == NULL)
            h2p_cfg_error(ctx, node, "missing required key \"root\" (the directory the site serves)");
        if (b.site.pool != NULL) { /* the pool of the root application */
            b.root.pool = b.site.pool;
            b.root.pool_conf = resolve_pool(ctx, node, b.site.pool, H2P_ACTIVATION_FASTCGI);
            b.site.pool = NULL;
        }
        b.root.handlers = b.site.handlers;
        b.root.num_handlers = b.site.num_handlers;
        b.root.has_handlers = 1;
        parse_applications(ctx, b.applications, &b);
        if (b.locations != NULL)
            parse_locations(ctx, b.locations, &b.site);
        h2p_cfg_check_site_modules(ctx, &b.site);
    }
    *site = b.site;
    ctx->site_name = NULL;
}

/* ---- checks across sites ------------------------------------------------------------------ */

/*
 * Every binding is compared with the bindings before it (in this site and the sites before):
 * one ip:port serves one scheme, a wildcard and the addresses it includes too (they share one
 * socket: h2pool never shares a port through SO_REUSEPORT), and one (ip, port, hostname) one
 * site.  Sorted by address, so that thousands of sites on one port cost no more than a sort.
 */

typedef struct binding_ref {
    h2p_binding_t *binding;
    const h2p_site_conf_t *site;
    size_t site_index, index, order;
    sa_family_t family;
    unsigned char addr[16];
} binding_ref_t;

static int is_unspecified(const binding_ref_t *r)
{
    static const unsigned char zeros[16];
    return memcmp(r->addr, zeros, r->family == AF_INET ? 4 : 16) == 0;
}

/* 2: `*`, 1: 0.0.0.0 or [::] (every address of a family), 0: one address */
static int wildcard_rank(const binding_ref_t *r)
{
    return r->binding->any_address ? 2 : is_unspecified(r) ? 1 : 0;
}

/* Whether one binding's addresses include the other's (same port, not the same address). */
static int wildcard_overlap(const binding_ref_t *a, const binding_ref_t *b)
{
    if (a->binding->port != b->binding->port || wildcard_rank(a) == wildcard_rank(b))
        return 0;
    const binding_ref_t *wide = wildcard_rank(a) > wildcard_rank(b) ? a : b, *narrow = wide == a ? b : a;
    return wide->binding->any_address || wide->family == narrow->family;
}

static int compare_refs(const void *pa, const void *pb)
{
    const binding_ref_t *a = pa, *b = pb;
    int diff;

    if (a->binding->port != b->binding->port)
        return a->binding->port < b->binding->port ? -1 : 1;
    if (a->family != b->family)
        return a->family < b->family ? -1 : 1;
    if ((diff = memcmp(a->addr, b->addr, sizeof(a->addr))) != 0)
        return diff;
    return a->order < b->order ? -1 : a->order > b->order;
}

static int same_address(const binding_ref_t *a, const binding_ref_t *b)
{
    return a->binding->port == b->binding->port && a->family == b->family && memcmp(a->addr, b->addr, sizeof(a->addr)) == 0;
}

static const char *scheme_name(h2p_scheme_t scheme)
{
    return scheme == H2P_SCHEME_HTTP ? "http" : scheme == H2P_SCHEME_HTTPS ? "https" : "tcp";
}

static void binding_error(h2p_cfg_ctx_t *ctx, const binding_ref_t *r, const binding_ref_t *other, const char *what)
{
    char path[256];
    const h2p_binding_t *b = r->binding, *o = other->binding;

    snprintf(path, sizeof(path), "sites.%s.bindings[%zu]", r->site->name, r->index);
    if (strcmp(what, "duplicate") == 0)
        h2p_cfg_error_at(ctx, &b->origin, path, "duplicate binding \"%s\": also bound by site \"%s\" at %s:%u:%u", b->text,
                         other->site->name, o->origin.file, o->origin.line, o->origin.column);
    else if (strcmp(what, "scheme") == 0)
        h2p_cfg_error_at(ctx, &b->origin, path, "%s and %s on the same ip:port: site \"%s\" binds \"%s\" at %s:%u:%u",
                         scheme_name(b->scheme), scheme_name(o->scheme), other->site->name, o->text, o->origin.file, o->origin.line,
                         o->origin.column);
    else
        h2p_cfg_error_at(ctx, &b->origin, path,
                         "%s and %s on overlapping addresses of port %u: site \"%s\" binds \"%s\" at %s:%u:%u (a wildcard "
                         "address includes the other, and one port serves one scheme)",
                         scheme_name(b->scheme), scheme_name(o->scheme), b->port, other->site->name, o->text, o->origin.file,
                         o->origin.line, o->origin.column);
}

/* One address (port, ip) of the sorted refs: the first binding's scheme is the address's, and
 * a hostname is bound once.  Sets reported[order] for each binding it reports. */
static void check_one_address(h2p_cfg_ctx_t *ctx, binding_ref_t *refs, size_t count, char *reported)
{
    h2p_cfg_names_t hosts = {NULL, NULL, 0, 0};

    for (size_t i = 0; i < count; i++) {
        binding_ref_t *r = &refs[i];
        size_t first;
        if (r->binding->scheme != refs[0].binding->scheme) {
            binding_error(ctx, r, &refs[0], "scheme");
            reported[r->order] = 1;
        } else if ((first = h2p_cfg_names_put(&hosts, r->binding->host != NULL ? r->binding->host : "", i)) != SIZE_MAX) {
            binding_error(ctx, r, &refs[first], "duplicate");
            reported[r->order] = 1;
        }
    }
    h2p_cfg_names_free(&hosts);
}

/* One port of the sorted refs: a wildcard and the addresses it includes have one scheme.  The
 * bindings of one (scheme, rank, family) overlap the same others: the earliest of each stands
 * for them all. */
static void check_one_port(h2p_cfg_ctx_t *ctx, binding_ref_t *refs, size_t count, const char *reported)
{
    binding_ref_t *earliest[2][3][2] = {{{NULL}}}; /* [https][rank][IPv6] */

    for (size_t i = 0; i < count; i++) {
        binding_ref_t *r = &refs[i], **slot;
        if (r->binding->scheme == H2P_SCHEME_TCP)
            continue;
        slot = &earliest[r->binding->scheme == H2P_SCHEME_HTTPS][wildcard_rank(r)][r->family == AF_INET6];
        if (*slot == NULL || r->order < (*slot)->order)
            *slot = r;
    }
    for (size_t i = 0; i < count; i++) {
        binding_ref_t *r = &refs[i], *first = NULL;
        if (r->binding->scheme == H2P_SCHEME_TCP || reported[r->order])
            continue;
        for (int rank = 0; rank < 3; rank++)
            for (int v6 = 0; v6 < 2; v6++) {
                binding_ref_t *other = earliest[r->binding->scheme != H2P_SCHEME_HTTPS][rank][v6];
                if (other != NULL && other->order < r->order && wildcard_overlap(r, other) &&
                    (first == NULL || other->order < first->order))
                    first = other;
            }
        if (first != NULL)
            binding_error(ctx, r, first, "overlap");
    }
}

void h2p_cfg_check_bindings(h2p_cfg_ctx_t *ctx)
{
    size_t count = 0, n = 0;
    binding_ref_t *refs;
    char *reported;

    for (size_t s = 0; s < ctx->conf->num_sites; s++)
        count += ctx->conf->sites[s].num_bindings;
    refs = h2p_cfg_xmalloc((count + 1) * sizeof(*refs));
    reported = h2p_cfg_xmalloc(count + 1);
    memset(reported, 0, count + 1);
    for (size_t s = 0; s < ctx->conf->num_sites; s++) {
        const h2p_site_conf_t *site = &ctx->conf->sites[s];
        for (size_t i = 0; i < site->num_bindings; i++) {
            binding_ref_t *r = &refs[n];
            if (site->bindings[i].text == NULL)
                continue;
            memset(r, 0, sizeof(*r));
            *r = (binding_ref_t){&site->bindings[i], site, s, i, n, site->bindings[i].addr.ss_family, {0}};
            if (r->family == AF_INET)
                memcpy(r->addr, &((const struct sockaddr_in *)&site->bindings[i].addr)->sin_addr, 4);
            else
                memcpy(r->addr, &((const struct sockaddr_in6 *)&site->bindings[i].addr)->sin6_addr, 16);
            n++;
        }
    }
    qsort(refs, n, sizeof(*refs), compare_refs);
    for (size_t start = 0, end; start < n; start = end) {
        for (end = start + 1; end < n && same_address(&refs[start], &refs[end]); end++)
            ;
        check_one_address(ctx, refs + start, end - start, reported);
    }
    for (size_t start = 0, end; start < n; start = end) {
        for (end = start + 1; end < n && refs[end].binding->port == refs[start].binding->port; end++)
            ;
        check_one_port(ctx, refs + start, end - start, reported);
    }
    free(refs);
    free(reported);
}

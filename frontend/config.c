/*
 * Configuration loader: reads every *.yaml file of a conf.d directory, checks it against
 * the README's "Configuration" and builds one immutable, refcounted generation (frontend/config.h).
 *
 * Loading runs in passes over the parsed YAML documents of all files, so that the order of the
 * files never matters for what is known when:
 *   1. every top-level key (server, pools, sites)
 *   2. `server` of every file (load_modules decides whether unknown module names are plugins)
 *   3. `pools` of every file (sites resolve pool names while they are parsed)
 *   4. `sites` of every file (config_sites.c), then the checks across sites (bindings).
 * Every problem is reported (h2p_cfg_error) and loading goes on, so that the user sees all of
 * them at once; nothing is returned unless there were none.
 *
 * The machinery that turns a YAML map into a struct (h2p_cfg_parse_map and its key tables) is
 * in config_yaml.c, sites in config_sites.c, modules in config_modules.c.
 */
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>
#include "frontend/config.h"
#include "frontend/config_internal.h"
#include "frontend/log.h"
#include "native-modules/htpasswd.h"

static uint64_t last_generation; /* process-wide, atomic */

/* ---- server ------------------------------------------------------------------------------ */

#define SERVER(field) offsetof(h2p_server_conf_t, field)

static void parse_threads(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_server_conf_t *server = base;
    uint64_t threads;

    if (node->type == YAML_SCALAR_NODE && strcmp((const char *)node->data.scalar.value, "auto") == 0)
        server->threads = 0;
    else if (h2p_cfg_number(ctx, node, 1, 1024, &threads) == 0)
        server->threads = threads;
}

static void parse_management(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_server_conf_t *server = base;
    char *value = h2p_cfg_string(ctx, node);
    const char *err;

    if (value == NULL)
        return;
    if (value[strspn(value, "0123456789")] == '\0') { /* a bare port: loopback, the safe default */
        char with_address[32];
        snprintf(with_address, sizeof(with_address), "127.0.0.1:%.8s", value);
        value = h2p_cfg_strdup(ctx->arena, with_address);
    }
    if (h2p_cfg_parse_host_port(value, &err) != 0) {
        h2p_cfg_error(ctx, node, "%s in \"%s\" (want ip:port, or a port for 127.0.0.1)", err, value);
        return;
    }
    server->management = value;
}

/* The users the management endpoint lets in: read and checked now (as a site's users file is), so
 * -t reports a bad line with its place. */
static void parse_management_users(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_server_conf_t *server = base;
    char *path = h2p_cfg_path(ctx, node, H2P_CFG_REGULAR_FILE), err[1024];
    h2p_htpasswd_t users;

    if (path == NULL)
        return;
    server->management_users_file = path;
    if (!ctx->check_files)
        return;
    if (h2p_htpasswd_load(&users, path, err, sizeof(err)) != 0) {
        h2p_cfg_error(ctx, node, "%s", err);
        return;
    }
    h2p_htpasswd_dispose(&users);
}

static void parse_load_modules(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_server_conf_t *server = base;
    h2p_strlist_t *list = &server->load_modules;

    if (!h2p_cfg_expect_seq(ctx, node))
        return;
    list->items = h2p_cfg_alloc(ctx->arena, h2p_cfg_seq_size(node) + 1, sizeof(char *));
    for (size_t i = 0; i < h2p_cfg_seq_size(node); i++) {
        size_t mark = h2p_cfg_path_push_index(ctx, i);
        char *path = h2p_cfg_path(ctx, h2p_cfg_node(ctx, node->data.sequence.items.start[i]), H2P_CFG_REGULAR_FILE);
        if (path != NULL)
            list->items[list->count++] = path;
        h2p_cfg_path_pop(ctx, mark);
    }
}

/* server.user / server.group: the front end's identity when h2pool starts as root.  Checked
 * here, so that `-t` and a reload name an account that does not exist instead of a start that
 * fails later. */
static void parse_user(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_server_conf_t *server = base;
    char *value = h2p_cfg_string(ctx, node);

    if (value == NULL)
        return;
    if (getpwnam(value) == NULL) {
        h2p_cfg_error(ctx, node, "no such user \"%s\"", value);
        return;
    }
    server->user = value;
}

static void parse_group(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_server_conf_t *server = base;
    char *value = h2p_cfg_string(ctx, node);

    if (value == NULL)
        return;
    if (getgrnam(value) == NULL) {
        h2p_cfg_error(ctx, node, "no such group \"%s\"", value);
        return;
    }
    server->group = value;
}

static const h2p_cfg_key_t server_limits_keys[] = {{"max_connections", H2P_CFG_U64, SERVER(limits.max_connections), 1, 10000000},
                                                   {"header_timeout", H2P_CFG_DURATION, SERVER(limits.header_timeout_ms), 1},
                                                   {"body_timeout", H2P_CFG_DURATION, SERVER(limits.body_timeout_ms), 1},
                                                   {"keepalive_timeout", H2P_CFG_DURATION, SERVER(limits.keepalive_timeout_ms), 0},
                                                   {"max_request_body", H2P_CFG_SIZE, SERVER(limits.max_request_body), 0},
                                                   {NULL}};

static const h2p_cfg_key_t server_cache_keys[] = {
    {"max_memory", H2P_CFG_SIZE, SERVER(cache.max_memory), 0}, {"max_entry", H2P_CFG_SIZE, SERVER(cache.max_entry), 0}, {NULL}};

static const h2p_cfg_key_t server_keys[] = {{"threads", H2P_CFG_CUSTOM, 0, .parse = parse_threads},
                                            {"error_log", H2P_CFG_PATH, SERVER(error_log)},
                                            {"log_dir", H2P_CFG_PATH, SERVER(log_dir)},
                                            {"control_socket", H2P_CFG_PATH, SERVER(control_socket)},
                                            {"management", H2P_CFG_CUSTOM, 0, .parse = parse_management},
                                            {"management_users_file", H2P_CFG_CUSTOM, 0, .parse = parse_management_users},
                                            {"limits", H2P_CFG_MAP, 0, .arg = server_limits_keys},
                                            {"cache", H2P_CFG_MAP, 0, .arg = server_cache_keys},
                                            {"load_modules", H2P_CFG_CUSTOM, 0, .parse = parse_load_modules},
                                            {"user", H2P_CFG_CUSTOM, 0, .parse = parse_user},
                                            {"group", H2P_CFG_CUSTOM, 0, .parse = parse_group},
                                            {NULL}};

static void server_defaults(h2p_server_conf_t *server)
{
    server->threads = 0;
    server->limits.max_connections = 10000;
    server->limits.header_timeout_ms = 10 * 1000;
    server->limits.body_timeout_ms = 60 * 1000; /* nginx's client_body_timeout */
    server->limits.keepalive_timeout_ms = 120 * 1000;
    server->limits.max_request_body = 30000000;
    server->cache.max_memory = 256 * 1024 * 1024;
    server->cache.max_entry = 1024 * 1024;
}

static const h2p_cfg_seen_key_t *find_seen(h2p_cfg_ctx_t *ctx, const char *path)
{
    for (size_t i = 0; i < ctx->num_seen; i++)
        if (strcmp(ctx->seen[i].path, path) == 0)
            return &ctx->seen[i];
    return NULL;
}

/* The start opens the error log for appending (creating it): -t and a reload must find out
 * first that it cannot.  Nothing is created here.  The log a running h2pool has open is not
 * asked about again: a reload keeps it open, and the start that opened it may have had rights
 * (root's) that server.user, which reloads, has not. */
static void check_error_log(h2p_cfg_ctx_t *ctx)
{
    const char *path = ctx->conf->server.error_log;
    const h2p_cfg_seen_key_t *seen = find_seen(ctx, "server.error_log");
    struct stat st;
    char *dir, *slash;

    if (!ctx->check_files || path == NULL || seen == NULL || h2p_log_is_open(path))
        return;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            h2p_cfg_error_at(ctx, &seen->origin, seen->path, "\"%s\" is a directory", path);
        else if (access(path, W_OK) != 0)
            h2p_cfg_error_at(ctx, &seen->origin, seen->path, "cannot write \"%s\": %s", path, strerror(errno));
        return;
    }
    if (errno != ENOENT) {
        h2p_cfg_error_at(ctx, &seen->origin, seen->path, "cannot access \"%s\": %s", path, strerror(errno));
        return;
    }
    dir = h2p_cfg_strdup(ctx->arena, path); /* absolute: the parser made it so */
    slash = strrchr(dir, '/');
    *(slash == dir ? slash + 1 : slash) = '\0';
    if (access(dir, W_OK | X_OK) != 0)
        h2p_cfg_error_at(ctx, &seen->origin, seen->path, "cannot create \"%s\" in \"%s\": %s", path, dir, strerror(errno));
}

/* Checks across `server` keys, once every file has been read. */
static void check_server(h2p_cfg_ctx_t *ctx)
{
    h2p_server_conf_t *server = &ctx->conf->server;

    check_error_log(ctx);

    if (server->cache.max_entry > server->cache.max_memory) {
        const h2p_cfg_seen_key_t *seen = find_seen(ctx, "server.cache.max_entry");
        if (seen == NULL)
            seen = find_seen(ctx, "server.cache.max_memory");
        if (seen != NULL)
            h2p_cfg_error_at(ctx, &seen->origin, seen->path, "cache.max_entry (%llu) is larger than cache.max_memory (%llu)",
                             (unsigned long long)server->cache.max_entry, (unsigned long long)server->cache.max_memory);
    }
}

/* ---- pools ------------------------------------------------------------------------------- */

#define POOL(field) offsetof(h2p_pool_conf_t, field)

static void parse_command(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_pool_conf_t *pool = base;
    char *argv0;

    if (h2p_cfg_strlist(ctx, node, H2P_CFG_NONEMPTY, &pool->command) != 0 || pool->command.count == 0)
        return;
    /* "bin/app" is relative to the YAML file; a bare "php-cgi" is looked up in PATH */
    argv0 = pool->command.items[0];
    if (argv0[0] != '/' && strchr(argv0, '/') != NULL) {
        char *joined = h2p_cfg_alloc(ctx->arena, strlen(ctx->file_dir) + strlen(argv0) + 2, 1);
        sprintf(joined, "%s/%s", ctx->file_dir, argv0);
        pool->command.items[0] = h2p_cfg_alloc(ctx->arena, strlen(joined) + 2, 1);
        h2p_cfg_clean_path(joined, pool->command.items[0]);
    }
}

static int valid_env_name(const char *s)
{
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return 0;
    for (s++; *s != '\0'; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return 0;
    return 1;
}

static void parse_env(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_pool_conf_t *pool = base;

    if (!h2p_cfg_expect_map(ctx, node))
        return;
    pool->env.items = h2p_cfg_alloc(ctx->arena, h2p_cfg_map_size(node) + 1, sizeof(char *));
    for (size_t i = 0; i < h2p_cfg_map_size(node); i++) {
        yaml_node_t *key_node, *value_node;
        const char *name = h2p_cfg_map_entry(ctx, node, i, &key_node, &value_node), *value;
        size_t mark;
        if (name == NULL)
            continue;
        mark = h2p_cfg_path_push_key(ctx, name);
        if (!valid_env_name(name)) {
            h2p_cfg_error(ctx, key_node, "bad environment variable name \"%s\"", name);
        } else if ((value = h2p_cfg_scalar(ctx, value_node)) != NULL) {
            char *entry = h2p_cfg_alloc(ctx->arena, strlen(name) + strlen(value) + 2, 1);
            sprintf(entry, "%s=%s", name, h2p_cfg_is_null(value_node) ? "" : value);
            pool->env.items[pool->env.count++] = entry;
        }
        h2p_cfg_path_pop(ctx, mark);
    }
}

static void parse_connect(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_pool_conf_t *pool = base;
    h2p_strlist_t texts = {NULL, 0};

    if (h2p_cfg_strlist(ctx, node, H2P_CFG_NONEMPTY, &texts) != 0)
        return;
    pool->connect = h2p_cfg_alloc(ctx->arena, texts.count, sizeof(*pool->connect));
    for (size_t i = 0; i < texts.count; i++) {
        h2p_endpoint_t *endpoint = &pool->connect[pool->num_connect];
        const char *err;
        if (h2p_cfg_parse_endpoint(texts.items[i], ctx->file_dir, endpoint, &err) != 0) {
            size_t mark = h2p_cfg_path_push_index(ctx, i);
            h2p_cfg_error(ctx, h2p_cfg_node(ctx, node->data.sequence.items.start[i]), "%s: \"%s\"", err, texts.items[i]);
            h2p_cfg_path_pop(ctx, mark);
            continue;
        }
        endpoint->text = texts.items[i];
        pool->num_connect++;
    }
}

static const char *const activation_names[] = {"fastcgi", "socket", NULL};

static const h2p_cfg_key_t pool_recycle_keys[] = {
    {"time", H2P_CFG_DURATION, POOL(recycle_time_ms), 0}, {"memory", H2P_CFG_SIZE, POOL(recycle_memory), 0}, {NULL}};

static const h2p_cfg_key_t pool_ping_keys[] = {
    {"interval", H2P_CFG_DURATION, POOL(ping_interval_ms), 0}, {"timeout", H2P_CFG_DURATION, POOL(ping_timeout_ms), 1}, {NULL}};

static const h2p_cfg_key_t pool_rapid_fail_keys[] = {{"enabled", H2P_CFG_BOOL, POOL(rapid_fail.enabled)},
                                                     {"max_crashes", H2P_CFG_UINT, POOL(rapid_fail.max_crashes), 1, 1000000},
                                                     {"interval", H2P_CFG_DURATION, POOL(rapid_fail.interval_ms), 1},
                                                     {NULL}};

static const h2p_cfg_key_t pool_keys[] = {{"command", H2P_CFG_CUSTOM, 0, .parse = parse_command},
                                          {"connect", H2P_CFG_CUSTOM, 0, .parse = parse_connect},
                                          {"activation", H2P_CFG_ENUM, POOL(activation), .arg = activation_names},
                                          {"env", H2P_CFG_CUSTOM, 0, .parse = parse_env},
                                          {"working_dir", H2P_CFG_DIR, POOL(working_dir)},
                                          {"user", H2P_CFG_STRING, POOL(user)},
                                          {"group", H2P_CFG_STRING, POOL(group)},
                                          {"max_processes", H2P_CFG_UINT, POOL(max_processes), 1, 100000},
                                          {"min_processes", H2P_CFG_UINT, POOL(min_processes), 0, 100000},
                                          {"idle_timeout", H2P_CFG_DURATION, POOL(idle_timeout_ms), 0},
                                          {"queue_length", H2P_CFG_UINT, POOL(queue_length), 0, 10000000},
                                          {"max_requests", H2P_CFG_U64, POOL(max_requests), 0},
                                          {"recycle", H2P_CFG_MAP, 0, .arg = pool_recycle_keys},
                                          {"startup_time_limit", H2P_CFG_DURATION, POOL(startup_time_limit_ms), 1},
                                          {"shutdown_time_limit", H2P_CFG_DURATION, POOL(shutdown_time_limit_ms), 1},
                                          {"request_timeout", H2P_CFG_DURATION, POOL(request_timeout_ms), 1},
                                          {"ping", H2P_CFG_MAP, 0, .arg = pool_ping_keys},
                                          {"rapid_fail", H2P_CFG_MAP, 0, .arg = pool_rapid_fail_keys},
                                          {"retry_on_crash", H2P_CFG_BOOL, POOL(retry_on_crash)},
                                          {NULL}};

static void pool_defaults(h2p_pool_conf_t *pool)
{
    pool->activation = H2P_ACTIVATION_FASTCGI;
    pool->max_processes = 4;
    pool->min_processes = 0;
    pool->idle_timeout_ms = 20 * 60 * 1000;
    pool->queue_length = 1000;
    pool->max_requests = 10000;
    pool->recycle_time_ms = 29 * 3600 * 1000;
    pool->recycle_memory = 0;
    pool->startup_time_limit_ms = 90 * 1000;
    pool->shutdown_time_limit_ms = 90 * 1000;
    pool->request_timeout_ms = 90 * 1000;
    pool->ping_interval_ms = 30 * 1000;
    pool->ping_timeout_ms = 90 * 1000;
    pool->rapid_fail.enabled = 1;
    pool->rapid_fail.max_crashes = 5;
    pool->rapid_fail.interval_ms = 5 * 60 * 1000;
    pool->retry_on_crash = 1;
}

/* Pool and site names end up in file names (log_dir/<site>/) and in `h2pool ctl` commands. */
static int valid_name(const char *name)
{
    size_t len = strlen(name);

    if (len == 0 || len > 64 || name[0] == '.' || name[0] == '-')
        return 0;
    for (const char *p = name; *p != '\0'; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("._-", *p) != NULL))
            return 0;
    return 1;
}

/*
 * php-cgi exits by itself after PHP_FCGI_MAX_REQUESTS requests, 500 unless set: a pool written
 * as `command: [php-cgi]` would restart every worker every 500 requests, and a php-cgi start is
 * expensive.  As IIS pairs instanceMaxRequests with it, the pool's max_requests is passed on when
 * the user has not set the variable (h2pool recycles at that count itself, with overlap).
 */
static int runs_php_cgi(const h2p_pool_conf_t *pool)
{
    if (pool->command.count == 0)
        return 0;
    const char *argv0 = pool->command.items[0], *base = strrchr(argv0, '/');
    return strncmp(base != NULL ? base + 1 : argv0, "php-cgi", 7) == 0;
}

/* The value of `name` in the pool's environment, or NULL. */
static const char *pool_env_value(const h2p_pool_conf_t *pool, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i != pool->env.count; ++i)
        if (strncmp(pool->env.items[i], name, len) == 0 && pool->env.items[i][len] == '=')
            return pool->env.items[i] + len + 1;
    return NULL;
}

static void add_pool_env(h2p_cfg_ctx_t *ctx, h2p_pool_conf_t *pool, const char *entry)
{
    char **items = h2p_cfg_alloc(ctx->arena, pool->env.count + 2, sizeof(char *));
    if (pool->env.count != 0)
        memcpy(items, pool->env.items, sizeof(char *) * pool->env.count);
    items[pool->env.count] = h2p_cfg_strdup(ctx->arena, entry);
    pool->env.items = items;
    pool->env.count++;
}

/*
 * php-cgi's own PHP_FCGI_MAX_REQUESTS follows max_requests unless the pool sets it.  A master's
 * children are ended by h2pool instead (php_child_max_requests): a child that reaches its limit
 * by itself (or gets SIGTERM, which it catches) shuts PHP down first, and each of its frees then
 * writes to a page it still shares with the master, a copy-on-write fault and a TLB flush each:
 * about 50 ms of the machine's time on a 2-core VM, against 7 ms for a SIGKILL between requests
 * (README: "php-cgi runs as one master").  php-cgi's limit is then one more, for a child that
 * served its requests over several connections.
 */
static void pair_php_max_requests(h2p_cfg_ctx_t *ctx, h2p_pool_conf_t *pool)
{
    if (!runs_php_cgi(pool) || pool_env_value(pool, "PHP_FCGI_MAX_REQUESTS") != NULL)
        return;
    uint64_t php_limit = pool->max_requests;
    if (pool->php_master && php_limit != 0) {
        pool->php_child_max_requests = php_limit;
        php_limit++;
    }
    if (php_limit > INT_MAX) /* php-cgi reads an int, and refuses to start on a negative one: h2pool counts alone */
        php_limit = 0;
    char entry[64];
    snprintf(entry, sizeof(entry), "PHP_FCGI_MAX_REQUESTS=%" PRIu64, php_limit);
    add_pool_env(ctx, pool, entry);
}

/*
 * A php-cgi pool runs as one php-cgi master with PHP_FCGI_CHILDREN=max_processes + 1: its children
 * are forked after PHP's startup and share one opcache, and php-cgi replaces a child that reached
 * PHP_FCGI_MAX_REQUESTS with a fork of the warm master.  The pool has max_processes slots, one
 * connection each, so one child is always free: the spare.  A child that ends (its limit, a
 * request_timeout kill, a crash) closes its slot's connection, and the slot's next connection is
 * the spare's at once, not a wait for the master to see the exit (a child's shutdown of every PHP
 * module first) and fork again; the new fork is the next spare.  (Without it each recycle by
 * count stalled one slot for milliseconds: that was most of PHP hello's p99.)
 * PHP_FCGI_CHILDREN=0 set by the user keeps
 * independent processes (php-cgi's own meaning of 0: no children); any other value would make
 * each of max_processes processes a master, so it is refused.
 */
static void choose_php_layout(h2p_cfg_ctx_t *ctx, yaml_node_t *node, h2p_pool_conf_t *pool)
{
    if (!runs_php_cgi(pool) || pool->activation == H2P_ACTIVATION_SOCKET)
        return;
    const char *children = pool_env_value(pool, "PHP_FCGI_CHILDREN");
    if (children == NULL) {
        char entry[64];
        snprintf(entry, sizeof(entry), "PHP_FCGI_CHILDREN=%u", pool->max_processes + 1);
        add_pool_env(ctx, pool, entry);
        pool->php_master = 1;
        return;
    }
    if (strcmp(children, "0") == 0)
        return;
    yaml_node_t *env = h2p_cfg_map_get(ctx, node, "env"), *where = env;
    for (size_t i = 0; env != NULL && env->type == YAML_MAPPING_NODE && i < h2p_cfg_map_size(env); i++) {
        yaml_node_t *key_node, *value_node;
        const char *name = h2p_cfg_map_key(ctx, env, i, &key_node, &value_node);
        if (name != NULL && strcmp(name, "PHP_FCGI_CHILDREN") == 0)
            where = key_node;
    }
    size_t mark = h2p_cfg_path_push_key(ctx, "env");
    if (where != env)
        h2p_cfg_path_push_key(ctx, "PHP_FCGI_CHILDREN");
    h2p_cfg_error(
        ctx, where,
        "PHP_FCGI_CHILDREN is set by h2pool (to max_processes + 1, for one php-cgi master with a child per slot and a spare): "
        "set max_processes instead (\"0\" keeps independent php-cgi processes)");
    h2p_cfg_path_pop(ctx, mark);
}

static void parse_pool(h2p_cfg_ctx_t *ctx, yaml_node_t *node, h2p_pool_conf_t *pool)
{
    yaml_node_t *command = h2p_cfg_map_get(ctx, node, "command"), *connect = h2p_cfg_map_get(ctx, node, "connect");

    pool_defaults(pool);
    h2p_cfg_parse_map(ctx, node, pool_keys, pool);
    if (node->type != YAML_MAPPING_NODE && !h2p_cfg_is_null(node))
        return;

    if (command != NULL && connect != NULL) {
        size_t mark = h2p_cfg_path_push_key(ctx, "connect");
        h2p_cfg_error(ctx, connect, "command and connect exclude each other: give exactly one");
        h2p_cfg_path_pop(ctx, mark);
    } else if (command == NULL && connect == NULL) {
        h2p_cfg_error(ctx, node, "a pool needs either command or connect");
    }
    if (connect != NULL && pool->activation == H2P_ACTIVATION_SOCKET) {
        size_t mark = h2p_cfg_path_push_key(ctx, "connect");
        h2p_cfg_error(ctx, connect, "a pool with activation: socket must have a command, not connect");
        h2p_cfg_path_pop(ctx, mark);
    }
    if (pool->min_processes > pool->max_processes) {
        yaml_node_t *min = h2p_cfg_map_get(ctx, node, "min_processes");
        size_t mark = h2p_cfg_path_push_key(ctx, "min_processes");
        h2p_cfg_error(ctx, min, "min_processes (%u) is greater than max_processes (%u)", pool->min_processes, pool->max_processes);
        h2p_cfg_path_pop(ctx, mark);
    }
    choose_php_layout(ctx, node, pool);
    pair_php_max_requests(ctx, pool);
}

h2p_pool_conf_t *h2p_config_find_pool(h2p_config_t *conf, const char *name)
{
    for (size_t i = 0; i < conf->num_pools; i++)
        if (strcmp(conf->pools[i].name, name) == 0)
            return &conf->pools[i];
    return NULL;
}

/* ---- files ------------------------------------------------------------------------------- */

typedef struct yaml_file {
    const char *name; /* as shown in messages (arena) */
    yaml_document_t doc;
    size_t **duplicate_keys;
    int loaded; /* doc holds a document that must be deleted */
} yaml_file_t;

static int is_yaml_name(const struct dirent *entry)
{
    size_t len = strlen(entry->d_name);
    /* dot files are editor droppings (.#sites.yaml) */
    return entry->d_name[0] != '.' && len > 5 && strcmp(entry->d_name + len - 5, ".yaml") == 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name); /* not strcoll: the order must not depend on the locale */
}

/* Parses one file into file->doc; returns 0 or -1 after reporting. */
static int load_file(h2p_cfg_ctx_t *ctx, const char *path, yaml_file_t *file)
{
    ctx->file = file->name;
    if (h2p_cfg_load_yaml_file(ctx, path, &file->doc, &file->duplicate_keys) != 0)
        return -1;
    file->loaded = 1;
    return 0;
}

/* The top-level map of a file, or NULL when the file is empty or not a map (reported once). */
static yaml_node_t *file_root(h2p_cfg_ctx_t *ctx, yaml_file_t *file, int report)
{
    yaml_node_t *root = yaml_document_get_root_node(&file->doc);

    ctx->file = file->name;
    ctx->doc = &file->doc;
    ctx->duplicate_keys = file->duplicate_keys;
    if (root == NULL || h2p_cfg_is_null(root))
        return NULL;
    if (root->type != YAML_MAPPING_NODE) {
        if (report)
            h2p_cfg_error(ctx, root, "the top level must be a map of server, pools and sites, got %s", h2p_cfg_node_type(root));
        return NULL;
    }
    return root;
}

static void check_top_level(h2p_cfg_ctx_t *ctx, yaml_file_t *file)
{
    yaml_node_t *root = file_root(ctx, file, 1), *key_node, *value;

    if (root == NULL)
        return;
    for (size_t i = 0; i < h2p_cfg_map_size(root); i++) {
        const char *name = h2p_cfg_map_entry(ctx, root, i, &key_node, &value);
        if (name != NULL && strcmp(name, "server") != 0 && strcmp(name, "pools") != 0 && strcmp(name, "sites") != 0) {
            size_t mark = h2p_cfg_path_push_key(ctx, name);
            h2p_cfg_error(ctx, key_node, "unknown top-level key \"%s\" (expected server, pools or sites)", name);
            h2p_cfg_path_pop(ctx, mark);
        }
    }
}

static void load_servers(h2p_cfg_ctx_t *ctx, yaml_file_t *files, size_t num_files)
{
    ctx->track_keys = 1;
    for (size_t i = 0; i < num_files; i++) {
        yaml_node_t *root = file_root(ctx, &files[i], 0), *server;
        if (root != NULL && (server = h2p_cfg_map_get(ctx, root, "server")) != NULL) {
            size_t mark = h2p_cfg_path_push_key(ctx, "server");
            h2p_cfg_parse_map(ctx, server, server_keys, &ctx->conf->server);
            h2p_cfg_path_pop(ctx, mark);
        }
    }
    ctx->track_keys = 0;
    check_server(ctx);
}

/* Pairs of `section` over all files: an upper bound of the pools or sites to allocate. */
static size_t count_entries(h2p_cfg_ctx_t *ctx, yaml_file_t *files, size_t num_files, const char *section)
{
    size_t count = 0;

    for (size_t i = 0; i < num_files; i++) {
        yaml_node_t *root = file_root(ctx, &files[i], 0), *map;
        if (root != NULL && (map = h2p_cfg_map_get(ctx, root, section)) != NULL)
            count += h2p_cfg_map_size(map);
    }
    return count;
}

/*
 * Walks the `section` map (pools or sites) of every file: checks each name, refuses a name
 * defined twice anywhere and calls `parse` on the entry's node.  Returns the number of entries.
 */
static size_t load_named(h2p_cfg_ctx_t *ctx, yaml_file_t *files, size_t num_files, const char *section, void *array,
                         size_t elem_size, size_t name_offset, size_t origin_offset,
                         void (*parse)(h2p_cfg_ctx_t *ctx, yaml_node_t *name_node, yaml_node_t *node, void *elem))
{
    const char *what = strcmp(section, "pools") == 0 ? "pool" : "site";
    h2p_cfg_names_t names = {NULL, NULL, 0, 0}; /* of the entries so far, with their index */
    size_t count = 0;

    for (size_t f = 0; f < num_files; f++) {
        yaml_node_t *root = file_root(ctx, &files[f], 0), *map, *name_node, *node;
        size_t section_mark;
        if (root == NULL || (map = h2p_cfg_map_get(ctx, root, section)) == NULL)
            continue;
        section_mark = h2p_cfg_path_push_key(ctx, section);
        if (!h2p_cfg_expect_map(ctx, map)) {
            h2p_cfg_path_pop(ctx, section_mark);
            continue;
        }
        for (size_t i = 0; i < h2p_cfg_map_size(map); i++) {
            const char *name = h2p_cfg_map_key(ctx, map, i, &name_node, &node);
            char *elem = (char *)array + count * elem_size;
            size_t j, mark;
            if (name == NULL)
                continue;
            mark = h2p_cfg_path_push_key(ctx, name);
            if (!valid_name(name)) {
                h2p_cfg_error(ctx, name_node, "bad %s name \"%s\" (use letters, digits, '.', '_' and '-')", what, name);
            } else if ((j = h2p_cfg_names_put(&names, name, count)) != SIZE_MAX) {
                h2p_origin_t *first = (h2p_origin_t *)((char *)array + j * elem_size + origin_offset);
                h2p_cfg_error(ctx, name_node, "duplicate %s \"%s\" (first defined at %s:%u:%u)", what, name, first->file,
                              first->line, first->column);
            } else {
                *(char **)(elem + name_offset) = h2p_cfg_strdup(ctx->arena, name);
                *(h2p_origin_t *)(elem + origin_offset) = h2p_cfg_origin(ctx, name_node);
                count++;
                parse(ctx, name_node, node, elem);
            }
            h2p_cfg_path_pop(ctx, mark);
        }
        h2p_cfg_path_pop(ctx, section_mark);
    }
    h2p_cfg_names_free(&names);
    return count;
}

static void parse_pool_entry(h2p_cfg_ctx_t *ctx, yaml_node_t *name_node, yaml_node_t *node, void *elem)
{
    parse_pool(ctx, node, elem);
}

static void parse_site_entry(h2p_cfg_ctx_t *ctx, yaml_node_t *name_node, yaml_node_t *node, void *elem)
{
    h2p_cfg_parse_site(ctx, name_node, node, elem);
}

/* Reads the names of the *.yaml files of `dir`, sorted; returns their count or -1. */
static int list_yaml_files(h2p_cfg_ctx_t *ctx, const char *dir, char ***names)
{
    struct dirent **entries;
    int n = scandir(dir, &entries, is_yaml_name, by_name), count = 0;

    if (n < 0) {
        h2p_cfg_errors_add(ctx->errors, "%s: cannot read the directory: %s", dir, strerror(errno));
        return -1;
    }
    *names = h2p_cfg_xmalloc((n + 1) * sizeof(char *));
    for (int i = 0; i < n; i++) {
        char path[PATH_MAX];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, entries[i]->d_name);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) /* skip directories named x.yaml, dangling links */
            (*names)[count++] = h2p_cfg_strdup(ctx->arena, entries[i]->d_name);
        free(entries[i]);
    }
    free(entries);
    if (count == 0) {
        h2p_cfg_errors_add(ctx->errors, "no *.yaml files in %s", dir);
        free(*names);
        return -1;
    }
    return count;
}

static void load_all(h2p_cfg_ctx_t *ctx, const char *dir)
{
    h2p_config_t *conf = ctx->conf;
    size_t dir_len = strlen(dir), num_files;
    const char *sep = dir_len > 0 && dir[dir_len - 1] == '/' ? "" : "/";
    char **names, *absolute;
    yaml_file_t *files;
    int n;

    if ((absolute = realpath(dir, NULL)) == NULL) {
        h2p_cfg_errors_add(ctx->errors, "%s: cannot open the configuration directory: %s", dir, strerror(errno));
        return;
    }
    conf->dir = h2p_cfg_strdup(ctx->arena, absolute);
    ctx->file_dir = conf->dir;
    free(absolute);
    if ((n = list_yaml_files(ctx, dir, &names)) < 0)
        return;
    num_files = n;

    files = h2p_cfg_xmalloc(num_files * sizeof(*files));
    memset(files, 0, num_files * sizeof(*files));
    for (size_t i = 0; i < num_files; i++) {
        char *name = h2p_cfg_alloc(ctx->arena, dir_len + strlen(sep) + strlen(names[i]) + 1, 1);
        sprintf(name, "%s%s%s", dir, sep, names[i]);
        files[i].name = name;
        load_file(ctx, name, &files[i]);
    }

    /* after a syntax error the other files' references into that file would only add noise */
    if (h2p_cfg_error_count(ctx) == 0) {
        for (size_t i = 0; i < num_files; i++)
            check_top_level(ctx, &files[i]);
        load_servers(ctx, files, num_files);

        conf->pools = h2p_cfg_alloc(ctx->arena, count_entries(ctx, files, num_files, "pools"), sizeof(*conf->pools));
        conf->num_pools = load_named(ctx, files, num_files, "pools", conf->pools, sizeof(*conf->pools),
                                     offsetof(h2p_pool_conf_t, name), offsetof(h2p_pool_conf_t, origin), parse_pool_entry);
        conf->sites = h2p_cfg_alloc(ctx->arena, count_entries(ctx, files, num_files, "sites"), sizeof(*conf->sites));
        conf->num_sites = load_named(ctx, files, num_files, "sites", conf->sites, sizeof(*conf->sites),
                                     offsetof(h2p_site_conf_t, name), offsetof(h2p_site_conf_t, origin), parse_site_entry);
        h2p_cfg_check_bindings(ctx);
        if (conf->num_sites == 0 && h2p_cfg_error_count(ctx) == 0)
            h2p_cfg_errors_add(ctx->errors, "%s: no site is declared (`sites:`): there would be nothing to listen on", dir);
    }

    for (size_t i = 0; i < num_files; i++)
        if (files[i].loaded) {
            h2p_cfg_free_duplicate_keys(&files[i].doc, files[i].duplicate_keys);
            yaml_document_delete(&files[i].doc);
        }
    free(files);
    free(names);
}

h2p_config_t *h2p_config_load(const char *dir, int check_files, h2p_config_errors_t *errors)
{
    h2p_cfg_ctx_t ctx;
    h2p_config_t *conf;

    memset(&ctx, 0, sizeof(ctx));
    ctx.arena = h2p_cfg_arena_new();
    ctx.conf = conf = h2p_cfg_alloc(ctx.arena, 1, sizeof(*conf));
    conf->arena = ctx.arena;
    ctx.errors = errors;
    ctx.first_error = errors->count;
    ctx.check_files = check_files;
    ctx.digest = EVP_MD_CTX_new();
    server_defaults(&conf->server);

    if (ctx.digest == NULL || !EVP_DigestInit_ex(ctx.digest, EVP_sha256(), NULL))
        h2p_cfg_errors_add(errors, "%s: cannot compute a digest (out of memory)", dir);
    else
        load_all(&ctx, dir);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    if (ctx.digest != NULL && h2p_cfg_error_count(&ctx) == 0 && EVP_DigestFinal_ex(ctx.digest, md, &md_len))
        for (unsigned i = 0; i != md_len && 2 * i + 2 < sizeof(conf->digest); ++i)
            sprintf(conf->digest + 2 * i, "%02x", md[i]);
    EVP_MD_CTX_free(ctx.digest);

    for (size_t i = 0; i < ctx.num_seen; i++)
        free(ctx.seen[i].path);
    free(ctx.seen);
    if (h2p_cfg_error_count(&ctx) != 0) {
        h2p_cfg_arena_free(ctx.arena);
        return NULL;
    }
    conf->refcnt = 1;
    conf->generation = __atomic_add_fetch(&last_generation, 1, __ATOMIC_RELAXED);
    return conf;
}

h2p_config_t *h2p_config_retain(h2p_config_t *conf)
{
    __atomic_add_fetch(&conf->refcnt, 1, __ATOMIC_RELAXED);
    return conf;
}

void h2p_config_release(h2p_config_t *conf)
{
    if (conf != NULL && __atomic_sub_fetch(&conf->refcnt, 1, __ATOMIC_ACQ_REL) == 0)
        h2p_cfg_arena_free(conf->arena); /* conf itself lives in the arena */
}

void h2p_config_errors_clear(h2p_config_errors_t *errors)
{
    for (size_t i = 0; i < errors->count; i++)
        free(errors->messages[i]);
    free(errors->messages);
    errors->messages = NULL;
    errors->count = 0;
}

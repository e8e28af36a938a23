/* authentication's settings, and the users and groups files read with the configuration (so -t, a start and a reload see the same
 * errors). */
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "native-modules/module_conf.h"
#include "native-modules/authentication.h"

#include "native-modules/htpasswd.h"

typedef struct file_report {
    h2p_cfg_ctx_t *ctx;
    yaml_node_t *node;
} file_report_t;

static void report_file_problem(void *arg, const char *message)
{
    file_report_t *r = arg;
    h2p_cfg_error(r->ctx, r->node, "%s", message);
}

static void free_users(void *users)
{
    h2p_htpasswd_dispose(users);
    free(users);
}

static void free_groups(void *groups)
{
    h2p_groups_dispose(groups);
    free(groups);
}

/* The users file at `name` in `map` (already resolved to `path`): every bad line is an error. */
static const h2p_htpasswd_t *load_users_file(h2p_cfg_ctx_t *ctx, yaml_node_t *map, const char *name, const char *path)
{
    file_report_t r = {ctx, h2p_cfg_map_get(ctx, map, name)};
    h2p_htpasswd_t *users = h2p_cfg_xmalloc(sizeof(*users));
    size_t mark = h2p_cfg_path_push_key(ctx, name);
    int ret = h2p_htpasswd_load_all(users, path, report_file_problem, &r);

    h2p_cfg_path_pop(ctx, mark);
    if (ret != 0) {
        free(users);
        return NULL;
    }
    h2p_cfg_arena_on_free(ctx->arena, free_users, users);
    return users;
}

static const h2p_groups_t *load_groups_file(h2p_cfg_ctx_t *ctx, yaml_node_t *map, const char *name, const char *path)
{
    file_report_t r = {ctx, h2p_cfg_map_get(ctx, map, name)};
    h2p_groups_t *groups = h2p_cfg_xmalloc(sizeof(*groups));
    size_t mark = h2p_cfg_path_push_key(ctx, name);
    int ret = h2p_groups_load_all(groups, path, report_file_problem, &r);

    h2p_cfg_path_pop(ctx, mark);
    if (ret != 0) {
        free(groups);
        return NULL;
    }
    h2p_cfg_arena_on_free(ctx->arena, free_groups, groups);
    return groups;
}

/* ---- authentication ----------------------------------------------------------------------- */

static void authentication_init(h2p_cfg_ctx_t *ctx, void *settings)
{
    h2p_authentication_conf_t *c = settings;
    const char *realm = ctx->site_name != NULL ? ctx->site_name : "h2pool";

    c->anonymous = 1;
    c->basic.realm = h2p_cfg_strdup(ctx->arena, realm);
    c->digest.realm = h2p_cfg_strdup(ctx->arena, realm);
    c->credential_cache_ttl_ms = 60 * 1000;
}

static const h2p_cfg_key_t basic_keys[] = {{"enabled", H2P_CFG_BOOL, SETTING(h2p_authentication_conf_t, basic.enabled)},
                                           {"realm", H2P_CFG_STRING, SETTING(h2p_authentication_conf_t, basic.realm)},
                                           {"users_file", H2P_CFG_FILE, SETTING(h2p_authentication_conf_t, basic.users_file)},
                                           {NULL}};

static const h2p_cfg_key_t digest_keys[] = {{"enabled", H2P_CFG_BOOL, SETTING(h2p_authentication_conf_t, digest.enabled)},
                                            {"realm", H2P_CFG_STRING, SETTING(h2p_authentication_conf_t, digest.realm)},
                                            {"users_file", H2P_CFG_FILE, SETTING(h2p_authentication_conf_t, digest.users_file)},
                                            {NULL}};

/* basic and digest: naming the scheme enables it; it needs a users file. */
static void parse_password_scheme(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_authentication_conf_t *c = (h2p_authentication_conf_t *)base;
    int digest = strcmp(key->name, "digest") == 0;
    int *enabled = digest ? &c->digest.enabled : &c->basic.enabled;
    char **realm = digest ? &c->digest.realm : &c->basic.realm;
    h2p_origin_t *users_file_origin = digest ? &c->digest.users_file_origin : &c->basic.users_file_origin;

    *enabled = 1;
    h2p_cfg_parse_map(ctx, node, digest ? digest_keys : basic_keys, base);
    if (node->type != YAML_MAPPING_NODE && !h2p_cfg_is_null(node))
        return;
    yaml_node_t *users_file = h2p_cfg_map_get(ctx, node, "users_file");
    if (users_file != NULL)
        *users_file_origin = h2p_cfg_origin(ctx, users_file); /* where its errors point */
    if (*enabled && users_file == NULL)
        h2p_cfg_error(ctx, node, "%s authentication needs users_file", key->name);
    else if (!digest && ctx->check_files && c->basic.users_file != NULL) /* (digest is not implemented: nothing reads it) */
        c->basic_users = load_users_file(ctx, node, "users_file", c->basic.users_file);
    if (strpbrk(*realm, "\"\\\r\n") != NULL)
        h2p_cfg_error_at_key(ctx, node, "realm", "bad realm: no quotes, backslashes or line breaks");
}

static int parse_fingerprint(const char *text, char *out /* 65 bytes */)
{
    size_t len = 0;

    for (; *text != '\0'; text++) {
        char c = *text;
        if (c == ':')
            continue;
        if (c >= 'A' && c <= 'F')
            c += 'a' - 'A';
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) || len == 64)
            return -1;
        out[len++] = c;
    }
    out[len] = '\0';
    return len == 64 ? 0 : -1;
}

static void parse_certificate_map(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_authentication_conf_t *c = (h2p_authentication_conf_t *)base;
    h2p_strlist_t *fingerprints = &c->client_certificate.map_fingerprints, *users = &c->client_certificate.map_users;
    size_t count = h2p_cfg_map_size(node);

    if (!h2p_cfg_expect_map(ctx, node))
        return;
    fingerprints->items = h2p_cfg_alloc(ctx->arena, count + 1, sizeof(char *));
    users->items = h2p_cfg_alloc(ctx->arena, count + 1, sizeof(char *));
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *key_node, *value;
        const char *text = h2p_cfg_map_entry(ctx, node, i, &key_node, &value);
        char fingerprint[65], *user;
        size_t mark;
        if (text == NULL)
            continue;
        mark = h2p_cfg_path_push_key(ctx, text);
        if (parse_fingerprint(text, fingerprint) != 0) {
            h2p_cfg_error(ctx, key_node, "bad certificate fingerprint \"%s\" (want 64 hex digits of SHA-256)", text);
        } else if ((user = h2p_cfg_string(ctx, value)) != NULL) {
            fingerprints->items[fingerprints->count++] = h2p_cfg_strdup(ctx->arena, fingerprint);
            users->items[users->count++] = user;
        }
        h2p_cfg_path_pop(ctx, mark);
    }
}

static const char *const user_from_names[] = {"subject_cn", "subject_dn", "san_email", NULL};

static const h2p_cfg_key_t client_certificate_keys[] = {
    {"enabled", H2P_CFG_BOOL, SETTING(h2p_authentication_conf_t, client_certificate.enabled)},
    {"user_from", H2P_CFG_ENUM_STRING, SETTING(h2p_authentication_conf_t, client_certificate.user_from), .arg = user_from_names},
    {"map", H2P_CFG_CUSTOM, 0, .parse = parse_certificate_map},
    {NULL}};

static void parse_client_certificate(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_authentication_conf_t *c = (h2p_authentication_conf_t *)base;

    c->client_certificate.enabled = 1;
    h2p_cfg_parse_map(ctx, node, client_certificate_keys, base);
    if (!c->client_certificate.enabled || (node->type != YAML_MAPPING_NODE && !h2p_cfg_is_null(node)))
        return;
    if ((h2p_cfg_map_get(ctx, node, "user_from") == NULL) == (h2p_cfg_map_get(ctx, node, "map") == NULL))
        h2p_cfg_error(ctx, node, "client_certificate needs exactly one of user_from or map");
}

static const h2p_cfg_key_t negotiate_keys[] = {
    {"enabled", H2P_CFG_BOOL, SETTING(h2p_authentication_conf_t, negotiate.enabled)},
    {"keytab", H2P_CFG_FILE, SETTING(h2p_authentication_conf_t, negotiate.keytab)}, /* NULL = the GSSAPI default */
    {NULL}};

static void parse_negotiate(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    ((h2p_authentication_conf_t *)base)->negotiate.enabled = 1;
    h2p_cfg_parse_map(ctx, node, negotiate_keys, base);
}

static const h2p_cfg_key_t credential_cache_keys[] = {
    {"ttl", H2P_CFG_DURATION, SETTING(h2p_authentication_conf_t, credential_cache_ttl_ms), 0}, {NULL}};

static const h2p_cfg_key_t authentication_keys[] = {{"enabled", H2P_CFG_BOOL, SETTING(h2p_authentication_conf_t, enabled)},
                                                    {"anonymous", H2P_CFG_BOOL, SETTING(h2p_authentication_conf_t, anonymous)},
                                                    {"basic", H2P_CFG_CUSTOM, 0, .parse = parse_password_scheme},
                                                    {"digest", H2P_CFG_CUSTOM, 0, .parse = parse_password_scheme},
                                                    {"client_certificate", H2P_CFG_CUSTOM, 0, .parse = parse_client_certificate},
                                                    {"negotiate", H2P_CFG_CUSTOM, 0, .parse = parse_negotiate},
                                                    {"credential_cache", H2P_CFG_MAP, 0, .arg = credential_cache_keys},
                                                    {"groups_file", H2P_CFG_FILE, SETTING(h2p_authentication_conf_t, groups_file)},
                                                    {NULL}};

static void authentication_check(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *settings)
{
    h2p_authentication_conf_t *c = settings;
    yaml_node_t *groups_file = h2p_cfg_map_get(ctx, node, "groups_file");

    if (groups_file != NULL)
        c->groups_file_origin = h2p_cfg_origin(ctx, groups_file);
    if (c->enabled && !c->anonymous && !c->basic.enabled && !c->digest.enabled && !c->client_certificate.enabled &&
        !c->negotiate.enabled)
        h2p_cfg_error_at_key(ctx, node, "anonymous",
                             "anonymous: false needs an enabled scheme (basic, digest, client_certificate, negotiate)");
    if (ctx->check_files && c->groups_file != NULL)
        c->groups = load_groups_file(ctx, node, "groups_file", c->groups_file);
}

/* Client certificates can only be asked for with a CA to check them against. */
static void check_client_certificates(h2p_cfg_ctx_t *ctx, const h2p_site_conf_t *site)
{
    if (site->tls.client_ca != NULL)
        return;
    for (size_t i = 0; i < site->num_applications + site->num_locations; i++) {
        const h2p_authentication_conf_t *c;
        char path[1100];
        if (i < site->num_applications) {
            c = site->applications[i].scope.modules.authentication;
            if (i == 0)
                snprintf(path, sizeof(path), "sites.%s.modules.authentication", site->name);
            else
                snprintf(path, sizeof(path), "sites.%s.applications.%s.modules.authentication", site->name,
                         site->applications[i].path);
        } else {
            h2p_location_conf_t *location = &site->locations[i - site->num_applications];
            c = location->scope.modules.authentication;
            snprintf(path, sizeof(path), "sites.%s.locations.%s.modules.authentication", site->name, location->path);
        }
        if (c != NULL && c->set && c->enabled && c->client_certificate.enabled) {
            h2p_cfg_error_at(ctx, &c->origin, path, "client_certificate authentication needs tls.client_ca on the site");
            return;
        }
    }
}

const char *h2p_authentication_groups_file(const h2p_modules_conf_t *m, const h2p_origin_t **origin)
{
    if (origin != NULL)
        *origin = &m->authentication->groups_file_origin;
    return m->authentication->groups_file;
}

const char *h2p_authentication_challenge_realm(const h2p_modules_conf_t *m)
{
    /* only basic is implemented */
    return m->authentication->enabled && m->authentication->basic.enabled ? m->authentication->basic.realm : NULL;
}

const h2p_module_conf_t h2p_conf_authentication = {.size = sizeof(h2p_authentication_conf_t),
                                                   .default_enabled = 1,
                                                   .init = authentication_init,
                                                   .keys = authentication_keys,
                                                   .check = authentication_check,
                                                   .check_site = check_client_certificates};

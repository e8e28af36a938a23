/*
 * `modules:` of a site, application or location: one settings section per pipeline module.
 *
 * Every module has a descriptor below: its defaults, its keys (or a parse function when the
 * section is a list or a free-form map) and the checks across its keys.  A scope that names a
 * module gets set = 1 and the module's defaults overridden by what it wrote; at the site level
 * every module is filled with its defaults first, so that the merged result is always usable.
 * Names that are no built-in module are kept as YAML text for plugin modules
 * (server.load_modules), and are an error when no plugin is loaded.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <string.h>
#include <strings.h>
#include "frontend/config.h"
#include "frontend/config_internal.h"
#include "native-modules/match.h"

#define MOD(field) offsetof(h2p_modules_conf_t, field)

typedef struct module_head {
    H2P_MODULE_HEAD;
} module_head_t;

typedef struct module_desc {
    const char *name;
    size_t offset; /* of the module's settings (they start with H2P_MODULE_HEAD) */
    int default_enabled;
    void (*init)(h2p_cfg_ctx_t *ctx, h2p_modules_conf_t *m);
    const h2p_cfg_key_t *keys;                                                   /* the section is a map of these keys, */
    void (*parse)(h2p_cfg_ctx_t *ctx, yaml_node_t *node, h2p_modules_conf_t *m); /* or parse() reads it */
    void (*check)(h2p_cfg_ctx_t *ctx, yaml_node_t *node, h2p_modules_conf_t *m); /* after keys, on a map */
} module_desc_t;

/* Reports against the value of `name` in `map` (or the map itself), with the key in the path. */
static void error_at_key(h2p_cfg_ctx_t *ctx, yaml_node_t *map, const char *name, const char *message)
{
    yaml_node_t *node = h2p_cfg_map_get(ctx, map, name);
    size_t mark = node != NULL ? h2p_cfg_path_push_key(ctx, name) : ctx->path_len;

    h2p_cfg_error(ctx, node != NULL ? node : map, "%s", message);
    h2p_cfg_path_pop(ctx, mark);
}

static yaml_node_t *seq_item(h2p_cfg_ctx_t *ctx, yaml_node_t *seq, size_t i)
{
    return h2p_cfg_node(ctx, seq->data.sequence.items.start[i]);
}

/* A list of strings each checked by `valid`; reports the bad ones against their item. */
static void parse_checked_list(h2p_cfg_ctx_t *ctx, yaml_node_t *node, h2p_strlist_t *list, unsigned flags,
                               int (*valid)(const char *), const char *what)
{
    if (h2p_cfg_strlist(ctx, node, flags, list) != 0)
        return;
    for (size_t i = 0; i < list->count; i++) {
        if (!valid(list->items[i])) {
            size_t mark = h2p_cfg_path_push_index(ctx, i);
            h2p_cfg_error(ctx, seq_item(ctx, node, i), "bad %s \"%s\"", what, list->items[i]);
            h2p_cfg_path_pop(ctx, mark);
        }
    }
}

static void parse_verbs(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    parse_checked_list(ctx, node, (h2p_strlist_t *)((char *)base + key->offset), H2P_CFG_UPPER, h2p_cfg_valid_token, "verb");
}

static int valid_header_name(const char *s)
{
    return h2p_cfg_valid_token(s);
}

static void parse_header_names(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    parse_checked_list(ctx, node, (h2p_strlist_t *)((char *)base + key->offset), H2P_CFG_LOWER, valid_header_name, "header name");
}

/* A path segment, optionally "!" first (remove) and "*" last (prefix). */
static int valid_segment(const char *s)
{
    const char *name = s[0] == '!' ? s + 1 : s, *star = strchr(name, '*');
    return name[0] != '\0' && name[0] != '*' && strchr(name, '/') == NULL && (star == NULL || star[1] == '\0');
}

/*
 * What no site means to publish: server and PHP settings, version-control metadata, secrets.
 * "/.well-known/" stays reachable.  A trailing '*' matches any name with that prefix.
 */
static const char *const default_hidden_segments[] = {".ht*", ".git*", ".svn", ".hg*", ".bzr", ".env*", ".user.ini", ".DS_Store"};

static void set_default_hidden_segments(h2p_cfg_ctx_t *ctx, h2p_strlist_t *list)
{
    size_t n = sizeof(default_hidden_segments) / sizeof(default_hidden_segments[0]);
    list->items = h2p_cfg_alloc(ctx->arena, n + 1, sizeof(char *));
    for (list->count = 0; list->count != n; ++list->count)
        list->items[list->count] = h2p_cfg_strdup(ctx->arena, default_hidden_segments[list->count]);
}

/* Names are added to the defaults; "!name" takes a name (a default one too) off the list. */
static void parse_segments(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_strlist_t *list = (h2p_strlist_t *)((char *)base + key->offset), given = {NULL, 0};
    parse_checked_list(ctx, node, &given, 0, valid_segment, "path segment");
    set_default_hidden_segments(ctx, list);
    char **items = h2p_cfg_alloc(ctx->arena, list->count + given.count + 1, sizeof(char *));
    memcpy(items, list->items, sizeof(char *) * list->count);
    list->items = items;
    for (size_t i = 0; i != given.count; ++i) {
        if (given.items[i][0] != '!') {
            list->items[list->count++] = given.items[i];
            continue;
        }
        size_t kept = 0;
        for (size_t j = 0; j != list->count; ++j)
            if (strcasecmp(list->items[j], given.items[i] + 1) != 0)
                list->items[kept++] = list->items[j];
        list->count = kept;
    }
}

static int valid_mime_pattern(const char *s)
{
    const char *slash = strchr(s, '/');
    return slash != NULL && slash != s && slash[1] != '\0' && strchr(slash + 1, '/') == NULL;
}

static void parse_mime_types(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    parse_checked_list(ctx, node, (h2p_strlist_t *)((char *)base + key->offset), H2P_CFG_LOWER, valid_mime_pattern, "media type");
}

/*
 * A list of maps (authorization, redirect, rewrite, output_cache): each item parsed with `keys`
 * into an element of `size` bytes, then `check` runs on it.  Returns the array.
 */
static void *parse_rules(h2p_cfg_ctx_t *ctx, yaml_node_t *node, const h2p_cfg_key_t *keys, size_t size, size_t *count,
                         void (*check)(h2p_cfg_ctx_t *ctx, yaml_node_t *item, void *rule))
{
    char *rules;

    *count = 0;
    if (!h2p_cfg_expect_seq(ctx, node))
        return NULL;
    rules = h2p_cfg_alloc(ctx->arena, h2p_cfg_seq_size(node), size);
    for (size_t i = 0; i < h2p_cfg_seq_size(node); i++) {
        yaml_node_t *item = seq_item(ctx, node, i);
        void *rule = rules + *count * size;
        size_t mark = h2p_cfg_path_push_index(ctx, i);
        size_t errors = h2p_cfg_error_count(ctx);
        h2p_cfg_parse_map(ctx, item, keys, rule);
        if (item->type == YAML_MAPPING_NODE && check != NULL)
            check(ctx, item, rule);
        if (h2p_cfg_error_count(ctx) == errors)
            (*count)++;
        h2p_cfg_path_pop(ctx, mark);
    }
    return rules;
}

/* ---- request_filtering -------------------------------------------------------------------- */

static void request_filtering_init(h2p_cfg_ctx_t *ctx, h2p_modules_conf_t *m)
{
    h2p_request_filtering_conf_t *c = &m->request_filtering.c;

    memset(c, 0, sizeof(*c));
    /* IIS's defaults; `..` segments, `\` and NUL are refused always, not through deny_sequences */
    c->max_url = 4096;
    c->max_query_string = 2048;
    c->max_header_size = 16384;
    c->allow_double_escaping = 0;
    c->allow_high_bit = 1;
    set_default_hidden_segments(ctx, &c->hidden_segments);
}

static const h2p_cfg_key_t request_filtering_verbs_keys[] = {
    {"allow", H2P_CFG_CUSTOM, MOD(request_filtering.c.verbs_allow), .parse = parse_verbs},
    {"deny", H2P_CFG_CUSTOM, MOD(request_filtering.c.verbs_deny), .parse = parse_verbs},
    {NULL}};

static const h2p_cfg_key_t request_filtering_extensions_keys[] = {
    {"allow", H2P_CFG_STRLIST, MOD(request_filtering.c.extensions_allow), .flags = H2P_CFG_EXTENSION},
    {"deny", H2P_CFG_STRLIST, MOD(request_filtering.c.extensions_deny), .flags = H2P_CFG_EXTENSION},
    {NULL}};

static const h2p_cfg_key_t request_filtering_keys[] = {
    {"enabled", H2P_CFG_BOOL, MOD(request_filtering.enabled)},
    {"verbs", H2P_CFG_MAP, 0, .arg = request_filtering_verbs_keys},
    {"file_extensions", H2P_CFG_MAP, 0, .arg = request_filtering_extensions_keys},
    {"hidden_segments", H2P_CFG_CUSTOM, MOD(request_filtering.c.hidden_segments), .parse = parse_segments},
    {"deny_sequences", H2P_CFG_STRLIST, MOD(request_filtering.c.deny_sequences)},
    {"max_url", H2P_CFG_SIZE, MOD(request_filtering.c.max_url), 1},
    {"max_query_string", H2P_CFG_SIZE, MOD(request_filtering.c.max_query_string), 0},
    {"max_header_size", H2P_CFG_SIZE, MOD(request_filtering.c.max_header_size), 1},
    {"allow_double_escaping", H2P_CFG_BOOL, MOD(request_filtering.c.allow_double_escaping)},
    {"allow_high_bit", H2P_CFG_BOOL, MOD(request_filtering.c.allow_high_bit)},
    {NULL}};

/* ---- ip_restriction ----------------------------------------------------------------------- */

static void parse_cidrs(h2p_cfg_ctx_t *ctx, yaml_node_t *node, h2p_cidr_t **cidrs, size_t *count)
{
    h2p_strlist_t texts = {NULL, 0};

    *count = 0;
    if (h2p_cfg_strlist(ctx, node, 0, &texts) != 0)
        return;
    *cidrs = h2p_cfg_alloc(ctx->arena, texts.count, sizeof(**cidrs));
    for (size_t i = 0; i < texts.count; i++) {
        if (h2p_parse_cidr(texts.items[i], &(*cidrs)[*count]) == 0) {
            (*count)++;
        } else {
            size_t mark = h2p_cfg_path_push_index(ctx, i);
            char *slash = strchr(texts.items[i], '/');
            h2p_cidr_t address;
            if (slash != NULL && (*slash = '\0', h2p_parse_cidr(texts.items[i], &address) == 0)) {
                *slash = '/';
                h2p_cfg_error(ctx, seq_item(ctx, node, i), "bad CIDR \"%s\": prefix length must be 0..%d", texts.items[i],
                              address.family == AF_INET ? 32 : 128);
            } else {
                if (slash != NULL)
                    *slash = '/';
                h2p_cfg_error(ctx, seq_item(ctx, node, i), "bad CIDR \"%s\" (want an IP address with an optional /prefix)",
                              texts.items[i]);
            }
            h2p_cfg_path_pop(ctx, mark);
        }
    }
}

static void parse_allow_cidrs(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_ip_restriction_conf_t *c = &((h2p_modules_conf_t *)base)->ip_restriction.c;
    parse_cidrs(ctx, node, &c->allow, &c->num_allow);
}

static void parse_deny_cidrs(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_ip_restriction_conf_t *c = &((h2p_modules_conf_t *)base)->ip_restriction.c;
    parse_cidrs(ctx, node, &c->deny, &c->num_deny);
}

static void parse_trusted_proxies(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_ip_restriction_conf_t *c = &((h2p_modules_conf_t *)base)->ip_restriction.c;
    parse_cidrs(ctx, node, &c->trusted_proxies, &c->num_trusted_proxies);
}

static void ip_restriction_init(h2p_cfg_ctx_t *ctx, h2p_modules_conf_t *m)
{
    memset(&m->ip_restriction.c, 0, sizeof(m->ip_restriction.c));
    m->ip_restriction.c.default_allow = 1;
}

static const char *const deny_allow_names[] = {"deny", "allow", NULL}; /* index = default_allow */

static const h2p_cfg_key_t ip_restriction_keys[] = {
    {"enabled", H2P_CFG_BOOL, MOD(ip_restriction.enabled)},
    {"default", H2P_CFG_ENUM, MOD(ip_restriction.c.default_allow), .arg = deny_allow_names},
    {"allow", H2P_CFG_CUSTOM, 0, .parse = parse_allow_cidrs},
    {"deny", H2P_CFG_CUSTOM, 0, .parse = parse_deny_cidrs},
    {"trusted_proxies", H2P_CFG_CUSTOM, 0, .parse = parse_trusted_proxies},
    {NULL}};

/* ---- authentication ----------------------------------------------------------------------- */

static void authentication_init(h2p_cfg_ctx_t *ctx, h2p_modules_conf_t *m)
{
    h2p_authentication_conf_t *c = &m->authentication.c;
    const char *realm = ctx->site_name != NULL ? ctx->site_name : "h2pool";

    memset(c, 0, sizeof(*c));
    c->anonymous = 1;
    c->basic.realm = h2p_cfg_strdup(ctx->arena, realm);
    c->digest.realm = h2p_cfg_strdup(ctx->arena, realm);
    c->credential_cache_ttl_ms = 60 * 1000;
}

static const h2p_cfg_key_t basic_keys[] = {{"enabled", H2P_CFG_BOOL, MOD(authentication.c.basic.enabled)},
                                           {"realm", H2P_CFG_STRING, MOD(authentication.c.basic.realm)},
                                           {"users_file", H2P_CFG_FILE, MOD(authentication.c.basic.users_file)},
                                           {NULL}};

static const h2p_cfg_key_t digest_keys[] = {{"enabled", H2P_CFG_BOOL, MOD(authentication.c.digest.enabled)},
                                            {"realm", H2P_CFG_STRING, MOD(authentication.c.digest.realm)},
                                            {"users_file", H2P_CFG_FILE, MOD(authentication.c.digest.users_file)},
                                            {NULL}};

/* basic and digest: naming the scheme enables it; it needs a users file. */
static void parse_password_scheme(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_authentication_conf_t *c = &((h2p_modules_conf_t *)base)->authentication.c;
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
        *users_file_origin = h2p_cfg_origin(ctx, users_file);
    else if (*enabled)
        h2p_cfg_error(ctx, node, "%s authentication needs users_file", key->name);
    if (strpbrk(*realm, "\"\\\r\n") != NULL)
        error_at_key(ctx, node, "realm", "bad realm: no quotes, backslashes or line breaks");
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
    h2p_authentication_conf_t *c = &((h2p_modules_conf_t *)base)->authentication.c;
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
    {"enabled", H2P_CFG_BOOL, MOD(authentication.c.client_certificate.enabled)},
    {"user_from", H2P_CFG_ENUM_STRING, MOD(authentication.c.client_certificate.user_from), .arg = user_from_names},
    {"map", H2P_CFG_CUSTOM, 0, .parse = parse_certificate_map},
    {NULL}};

static void parse_client_certificate(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_authentication_conf_t *c = &((h2p_modules_conf_t *)base)->authentication.c;

    c->client_certificate.enabled = 1;
    h2p_cfg_parse_map(ctx, node, client_certificate_keys, base);
    if (!c->client_certificate.enabled || (node->type != YAML_MAPPING_NODE && !h2p_cfg_is_null(node)))
        return;
    if ((h2p_cfg_map_get(ctx, node, "user_from") == NULL) == (h2p_cfg_map_get(ctx, node, "map") == NULL))
        h2p_cfg_error(ctx, node, "client_certificate needs exactly one of user_from or map");
}

static const h2p_cfg_key_t negotiate_keys[] = {
    {"enabled", H2P_CFG_BOOL, MOD(authentication.c.negotiate.enabled)},
    {"keytab", H2P_CFG_FILE, MOD(authentication.c.negotiate.keytab)}, /* NULL = the GSSAPI default */
    {NULL}};

static void parse_negotiate(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    ((h2p_modules_conf_t *)base)->authentication.c.negotiate.enabled = 1;
    h2p_cfg_parse_map(ctx, node, negotiate_keys, base);
}

static const h2p_cfg_key_t credential_cache_keys[] = {{"ttl", H2P_CFG_DURATION, MOD(authentication.c.credential_cache_ttl_ms), 0},
                                                      {NULL}};

static const h2p_cfg_key_t authentication_keys[] = {{"enabled", H2P_CFG_BOOL, MOD(authentication.enabled)},
                                                    {"anonymous", H2P_CFG_BOOL, MOD(authentication.c.anonymous)},
                                                    {"basic", H2P_CFG_CUSTOM, 0, .parse = parse_password_scheme},
                                                    {"digest", H2P_CFG_CUSTOM, 0, .parse = parse_password_scheme},
                                                    {"client_certificate", H2P_CFG_CUSTOM, 0, .parse = parse_client_certificate},
                                                    {"negotiate", H2P_CFG_CUSTOM, 0, .parse = parse_negotiate},
                                                    {"credential_cache", H2P_CFG_MAP, 0, .arg = credential_cache_keys},
                                                    {"groups_file", H2P_CFG_FILE, MOD(authentication.c.groups_file)},
                                                    {NULL}};

static void authentication_check(h2p_cfg_ctx_t *ctx, yaml_node_t *node, h2p_modules_conf_t *m)
{
    h2p_authentication_conf_t *c = &m->authentication.c;
    yaml_node_t *groups_file = h2p_cfg_map_get(ctx, node, "groups_file");

    if (groups_file != NULL)
        c->groups_file_origin = h2p_cfg_origin(ctx, groups_file);
    if (m->authentication.enabled && !c->anonymous && !c->basic.enabled && !c->digest.enabled && !c->client_certificate.enabled &&
        !c->negotiate.enabled)
        error_at_key(ctx, node, "anonymous",
                     "anonymous: false needs an enabled scheme (basic, digest, client_certificate, negotiate)");
}

/* ---- authorization ------------------------------------------------------------------------ */

#define RULE(type, field) offsetof(type, field)

static const h2p_cfg_key_t authz_who_keys[] = {{"users", H2P_CFG_STRLIST, RULE(h2p_authz_rule_t, users)},
                                               {"roles", H2P_CFG_STRLIST, RULE(h2p_authz_rule_t, roles)},
                                               {"verbs", H2P_CFG_CUSTOM, RULE(h2p_authz_rule_t, verbs), .parse = parse_verbs},
                                               {NULL}};

static void parse_authz_allow(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    ((h2p_authz_rule_t *)base)->allow = 1;
    h2p_cfg_parse_map(ctx, node, authz_who_keys, base);
}

static void parse_authz_deny(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    ((h2p_authz_rule_t *)base)->allow = 0;
    h2p_cfg_parse_map(ctx, node, authz_who_keys, base);
}

static const h2p_cfg_key_t authz_rule_keys[] = {{"path", H2P_CFG_STRING, RULE(h2p_authz_rule_t, path)},
                                                {"allow", H2P_CFG_CUSTOM, 0, .parse = parse_authz_allow},
                                                {"deny", H2P_CFG_CUSTOM, 0, .parse = parse_authz_deny},
                                                {NULL}};

static void check_authz_rule(h2p_cfg_ctx_t *ctx, yaml_node_t *item, void *data)
{
    h2p_authz_rule_t *rule = data;
    yaml_node_t *allow = h2p_cfg_map_get(ctx, item, "allow"), *deny = h2p_cfg_map_get(ctx, item, "deny");

    rule->origin = h2p_cfg_origin(ctx, item);
    if ((allow == NULL) == (deny == NULL))
        h2p_cfg_error(ctx, item, "a rule needs exactly one of allow or deny");
    else if (rule->users.count == 0 && rule->roles.count == 0)
        error_at_key(ctx, item, allow != NULL ? "allow" : "deny",
                     "a rule needs users or roles (\"*\" = everyone, \"?\" = anonymous)");
}

static void parse_authorization(h2p_cfg_ctx_t *ctx, yaml_node_t *node, h2p_modules_conf_t *m)
{
    m->authorization.rules =
        parse_rules(ctx, node, authz_rule_keys, sizeof(h2p_authz_rule_t), &m->authorization.count, check_authz_rule);
}

/* ---- redirect, rewrite -------------------------------------------------------------------- */

static void parse_redirect_status(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    uint64_t status;

    if (h2p_cfg_number(ctx, node, 0, 0, &status) != 0)
        return;
    if (status != 301 && status != 302 && status != 307 && status != 308) {
        h2p_cfg_error(ctx, node, "bad redirect status %llu (use 301, 302, 307 or 308)", (unsigned long long)status);
        return;
    }
    ((h2p_redirect_rule_t *)base)->status = status;
}

static const h2p_cfg_key_t redirect_keys[] = {{"from", H2P_CFG_STRING, RULE(h2p_redirect_rule_t, from), .flags = H2P_CFG_REQUIRED},
                                              {"to", H2P_CFG_STRING, RULE(h2p_redirect_rule_t, to), .flags = H2P_CFG_REQUIRED},
                                              {"status", H2P_CFG_CUSTOM, 0, .parse = parse_redirect_status},
                                              {NULL}};

static void check_redirect(h2p_cfg_ctx_t *ctx, yaml_node_t *item, void *data)
{
    h2p_redirect_rule_t *rule = data;
    const char *problem;

    if (rule->status == 0)
        rule->status = 302;
    if (rule->to != NULL && (problem = h2p_redirect_check_target(rule->to, strlen(rule->to))) != NULL)
        error_at_key(ctx, item, "to", problem);
}

static void parse_redirect(h2p_cfg_ctx_t *ctx, yaml_node_t *node, h2p_modules_conf_t *m)
{
    m->redirect.rules = parse_rules(ctx, node, redirect_keys, sizeof(h2p_redirect_rule_t), &m->redirect.count, check_redirect);
}

static void parse_rewrite_unless(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_rewrite_rule_t *rule = base;
    h2p_strlist_t list = {NULL, 0};

    if (h2p_cfg_strlist(ctx, node, 0, &list) != 0)
        return;
    for (size_t i = 0; i < list.count; i++) {
        if (strcmp(list.items[i], "file") == 0) {
            rule->unless_file = 1;
        } else if (strcmp(list.items[i], "directory") == 0) {
            rule->unless_directory = 1;
        } else {
            size_t mark = h2p_cfg_path_push_index(ctx, i);
            h2p_cfg_error(ctx, seq_item(ctx, node, i), "bad value \"%s\" (expected one of: file, directory)", list.items[i]);
            h2p_cfg_path_pop(ctx, mark);
        }
    }
}

static const h2p_cfg_key_t rewrite_keys[] = {{"match", H2P_CFG_STRING, RULE(h2p_rewrite_rule_t, match), .flags = H2P_CFG_REQUIRED},
                                             {"to", H2P_CFG_STRING, RULE(h2p_rewrite_rule_t, to), .flags = H2P_CFG_REQUIRED},
                                             {"unless", H2P_CFG_CUSTOM, 0, .parse = parse_rewrite_unless},
                                             {NULL}};

static void free_regex(void *re)
{
    pcre2_code_free(re);
}

/* The highest $N in `to` ("$" followed by a digit 1..9), 0 if none. */
static unsigned highest_reference(const char *to)
{
    unsigned highest = 0;
    for (const char *p = to; (p = strchr(p, '$')) != NULL; ++p)
        if (p[1] >= '1' && p[1] <= '9' && (unsigned)(p[1] - '0') > highest)
            highest = p[1] - '0';
    return highest;
}

/* `match` is compiled once per generation (what -t and a reload check is what runs) */
static void check_rewrite(h2p_cfg_ctx_t *ctx, yaml_node_t *item, void *data)
{
    h2p_rewrite_rule_t *rule = data;
    int code;
    PCRE2_SIZE offset;
    uint32_t captures = 0;

    rule->origin = h2p_cfg_origin(ctx, item);
    if (rule->match == NULL || rule->to == NULL)
        return;
    if ((rule->re = pcre2_compile((PCRE2_SPTR)rule->match, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &code,
                                  &offset, NULL)) == NULL) {
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(code, message, sizeof(message));
        size_t mark = h2p_cfg_path_push_key(ctx, "match");
        h2p_cfg_error(ctx, h2p_cfg_map_get(ctx, item, "match"), "bad regular expression: %s at offset %zu", (char *)message,
                      (size_t)offset);
        h2p_cfg_path_pop(ctx, mark);
        return;
    }
    h2p_cfg_arena_on_free(ctx->arena, free_regex, rule->re);
    pcre2_jit_compile(rule->re, PCRE2_JIT_COMPLETE); /* the interpreter runs where JIT is not available */
    pcre2_pattern_info(rule->re, PCRE2_INFO_CAPTURECOUNT, &captures);
    unsigned wanted = highest_reference(rule->to);
    if (wanted > captures) {
        size_t mark = h2p_cfg_path_push_key(ctx, "to");
        h2p_cfg_error(ctx, h2p_cfg_map_get(ctx, item, "to"), "$%u names a capture the match has not (it has %u)", wanted,
                      (unsigned)captures);
        h2p_cfg_path_pop(ctx, mark);
    }
    if (rule->to[0] != '/') {
        size_t mark = h2p_cfg_path_push_key(ctx, "to");
        h2p_cfg_error(ctx, h2p_cfg_map_get(ctx, item, "to"), "a rewrite target is a path on this site: it must start with '/'");
        h2p_cfg_path_pop(ctx, mark);
    }
}

static void parse_rewrite(h2p_cfg_ctx_t *ctx, yaml_node_t *node, h2p_modules_conf_t *m)
{
    m->rewrite.rules = parse_rules(ctx, node, rewrite_keys, sizeof(h2p_rewrite_rule_t), &m->rewrite.count, check_rewrite);
}

/* ---- webdav, ssi -------------------------------------------------------------------------- */

static const h2p_cfg_key_t webdav_keys[] = {
    {"enabled", H2P_CFG_BOOL, MOD(webdav.enabled)}, {"depth_infinity", H2P_CFG_BOOL, MOD(webdav.depth_infinity)}, {NULL}};

static void webdav_init(h2p_cfg_ctx_t *ctx, h2p_modules_conf_t *m)
{
    m->webdav.depth_infinity = 0;
}

static void ssi_init(h2p_cfg_ctx_t *ctx, h2p_modules_conf_t *m)
{
    static const char *const extensions[] = {".shtml", ".shtm", ".stm"};
    h2p_cfg_strlist_set(ctx, &m->ssi.extensions, extensions, 3);
    m->ssi.exec = 0;
}

static const h2p_cfg_key_t ssi_keys[] = {{"enabled", H2P_CFG_BOOL, MOD(ssi.enabled)},
                                         {"extensions", H2P_CFG_STRLIST, MOD(ssi.extensions), .flags = H2P_CFG_EXTENSION},
                                         {"exec", H2P_CFG_BOOL, MOD(ssi.exec)},
                                         {NULL}};

/* ---- custom_headers ----------------------------------------------------------------------- */

static void custom_headers_init(h2p_cfg_ctx_t *ctx, h2p_modules_conf_t *m)
{
    m->custom_headers.headers = NULL;
    m->custom_headers.count = 0;
}

/* name: value (null = remove the header); `enabled` switches the module like everywhere else */
static void parse_custom_headers(h2p_cfg_ctx_t *ctx, yaml_node_t *node, h2p_modules_conf_t *m)
{
    size_t count = h2p_cfg_map_size(node);

    if (!h2p_cfg_expect_map(ctx, node))
        return;
    m->custom_headers.headers = h2p_cfg_alloc(ctx->arena, count, sizeof(*m->custom_headers.headers));
    for (size_t i = 0; i < count; i++) {
        h2p_header_setting_t *header = &m->custom_headers.headers[m->custom_headers.count];
        yaml_node_t *key_node, *value_node;
        const char *name = h2p_cfg_map_entry(ctx, node, i, &key_node, &value_node), *value;
        size_t mark;
        if (name == NULL)
            continue;
        mark = h2p_cfg_path_push_key(ctx, name);
        if (strcmp(name, "enabled") == 0) {
            h2p_cfg_bool(ctx, value_node, &m->custom_headers.enabled);
        } else if (!h2p_cfg_valid_token(name)) {
            h2p_cfg_error(ctx, key_node, "bad header name \"%s\"", name);
        } else if (h2p_cfg_is_null(value_node)) {
            header->name = h2p_cfg_strdup(ctx->arena, name);
            header->value = NULL;
            m->custom_headers.count++;
        } else if ((value = h2p_cfg_scalar(ctx, value_node)) != NULL) {
            if (strpbrk(value, "\r\n") != NULL) {
                h2p_cfg_error(ctx, value_node, "bad header value: no line breaks");
            } else {
                header->name = h2p_cfg_strdup(ctx->arena, name);
                header->value = h2p_cfg_strdup(ctx->arena, value);
                m->custom_headers.count++;
            }
        }
        if (header->name != NULL)
            for (char *c = header->name; *c != '\0'; c++)
                if (*c >= 'A' && *c <= 'Z')
                    *c += 'a' - 'A';
        h2p_cfg_path_pop(ctx, mark);
    }
}

/* ---- custom_errors ------------------------------------------------------------------------ */

static void custom_errors_init(h2p_cfg_ctx_t *ctx, h2p_modules_conf_t *m)
{
    m->custom_errors.mode = H2P_ERRORS_DETAILED_LOCAL_ONLY;
    m->custom_errors.pages = NULL;
    m->custom_errors.num_pages = 0;
}

static void parse_error_pages(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_modules_conf_t *m = base;
    size_t count = h2p_cfg_map_size(node);

    if (!h2p_cfg_expect_map(ctx, node))
        return;
    m->custom_errors.pages = h2p_cfg_alloc(ctx->arena, count, sizeof(*m->custom_errors.pages));
    m->custom_errors.num_pages = 0;
    for (size_t i = 0; i < count; i++) {
        h2p_error_page_t *page = &m->custom_errors.pages[m->custom_errors.num_pages];
        yaml_node_t *key_node, *value;
        const char *name = h2p_cfg_map_entry(ctx, node, i, &key_node, &value);
        uint64_t status;
        size_t mark;
        if (name == NULL)
            continue;
        mark = h2p_cfg_path_push_key(ctx, name);
        if (h2p_cfg_number(ctx, key_node, 400, 599, &status) == 0 &&
            (page->path = h2p_cfg_path(ctx, value, H2P_CFG_REGULAR_FILE)) != NULL) {
            page->status = status;
            m->custom_errors.num_pages++;
        }
        h2p_cfg_path_pop(ctx, mark);
    }
}

static const char *const custom_errors_mode_names[] = {"detailed_local_only", "on", "off", NULL}; /* h2p_custom_errors_mode_t */

static const h2p_cfg_key_t custom_errors_keys[] = {{"enabled", H2P_CFG_BOOL, MOD(custom_errors.enabled)},
                                                   {"mode", H2P_CFG_ENUM, MOD(custom_errors.mode), .arg = custom_errors_mode_names},
                                                   {"pages", H2P_CFG_CUSTOM, 0, .parse = parse_error_pages},
                                                   {NULL}};

/* ---- compression, output_cache ------------------------------------------------------------ */

static void compression_init(h2p_cfg_ctx_t *ctx, h2p_modules_conf_t *m)
{
    static const char *const types[] = {"text/*", "application/javascript", "application/json", "application/xml", "image/svg+xml"};
    /* IIS: static compression on, dynamic (worker output) off unless asked for */
    m->compression.static_ = 1;
    m->compression.dynamic = 0;
    h2p_cfg_strlist_set(ctx, &m->compression.types, types, sizeof(types) / sizeof(types[0]));
    m->compression.min_size = 256;
}

static const h2p_cfg_key_t compression_keys[] = {{"enabled", H2P_CFG_BOOL, MOD(compression.enabled)},
                                                 {"dynamic", H2P_CFG_BOOL, MOD(compression.dynamic)},
                                                 {"static", H2P_CFG_BOOL, MOD(compression.static_)},
                                                 {"types", H2P_CFG_CUSTOM, MOD(compression.types), .parse = parse_mime_types},
                                                 {"min_size", H2P_CFG_SIZE, MOD(compression.min_size), 0},
                                                 {NULL}};

static const h2p_cfg_key_t output_cache_keys[] = {
    {"path", H2P_CFG_STRING, RULE(h2p_output_cache_rule_t, path), .flags = H2P_CFG_REQUIRED},
    {"duration", H2P_CFG_DURATION, RULE(h2p_output_cache_rule_t, duration_ms), 1, .flags = H2P_CFG_REQUIRED},
    {"vary_by_query", H2P_CFG_BOOL, RULE(h2p_output_cache_rule_t, vary_by_query)},
    {"vary_by_headers", H2P_CFG_CUSTOM, RULE(h2p_output_cache_rule_t, vary_by_headers), .parse = parse_header_names},
    {NULL}};

static void parse_output_cache(h2p_cfg_ctx_t *ctx, yaml_node_t *node, h2p_modules_conf_t *m)
{
    m->output_cache.rules =
        parse_rules(ctx, node, output_cache_keys, sizeof(h2p_output_cache_rule_t), &m->output_cache.count, NULL);
}

/* ---- logging, failed_request_tracing, request_monitor ------------------------------------- */

static const char *const log_format_names[] = {"w3c", "json", NULL};
static const char *const log_rotate_names[] = {"daily", "hourly", "size", "none", NULL};

static void logging_init(h2p_cfg_ctx_t *ctx, h2p_modules_conf_t *m)
{
    m->logging.format = h2p_cfg_strdup(ctx->arena, "w3c");
    m->logging.rotate = h2p_cfg_strdup(ctx->arena, "daily");
    m->logging.max_size = 20 * 1024 * 1024; /* IIS's truncateSize */
}

static const h2p_cfg_key_t logging_keys[] = {{"enabled", H2P_CFG_BOOL, MOD(logging.enabled)},
                                             {"format", H2P_CFG_ENUM_STRING, MOD(logging.format), .arg = log_format_names},
                                             {"rotate", H2P_CFG_ENUM_STRING, MOD(logging.rotate), .arg = log_rotate_names},
                                             {"max_size", H2P_CFG_SIZE, MOD(logging.max_size), 1},
                                             {NULL}};

/* A status code 100..599 written as exactly `len` digits. */
static int parse_status_code(const char *s, size_t len, unsigned *out)
{
    unsigned code = 0;

    if (len != 3)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        code = code * 10 + (s[i] - '0');
    }
    if (code < 100 || code > 599)
        return -1;
    *out = code;
    return 0;
}

/* [500-599, 404]: single codes or "from-to" ranges */
static void parse_status_ranges(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_modules_conf_t *m = base;
    h2p_strlist_t list = {NULL, 0};

    if (h2p_cfg_strlist(ctx, node, 0, &list) != 0)
        return;
    m->failed_request_tracing.status = h2p_cfg_alloc(ctx->arena, list.count, sizeof(h2p_status_range_t));
    m->failed_request_tracing.num_status = 0;
    for (size_t i = 0; i < list.count; i++) {
        h2p_status_range_t *range = &m->failed_request_tracing.status[m->failed_request_tracing.num_status];
        const char *text = list.items[i], *dash = strchr(text, '-');
        int ok;
        if (dash == NULL) {
            ok = parse_status_code(text, strlen(text), &range->from) == 0;
            range->to = range->from;
        } else {
            ok = parse_status_code(text, dash - text, &range->from) == 0 &&
                 parse_status_code(dash + 1, strlen(dash + 1), &range->to) == 0 && range->from <= range->to;
        }
        if (ok) {
            m->failed_request_tracing.num_status++;
        } else {
            size_t mark = h2p_cfg_path_push_index(ctx, i);
            h2p_cfg_error(ctx, seq_item(ctx, node, i), "bad status \"%s\" (want a code 100..599 or a range like 500-599)", text);
            h2p_cfg_path_pop(ctx, mark);
        }
    }
}

static const h2p_cfg_key_t failed_request_tracing_keys[] = {
    {"enabled", H2P_CFG_BOOL, MOD(failed_request_tracing.enabled)},
    {"status", H2P_CFG_CUSTOM, 0, .parse = parse_status_ranges},
    {"time_taken", H2P_CFG_DURATION, MOD(failed_request_tracing.time_taken_ms), 0},
    {"dir", H2P_CFG_PATH, MOD(failed_request_tracing.dir)},
    {NULL}};

static const h2p_cfg_key_t request_monitor_keys[] = {{"enabled", H2P_CFG_BOOL, MOD(request_monitor.enabled)}, {NULL}};

/* ---- the module table (pipeline order is DESIGN.md's, kept by native-modules/) ------------- */

static const module_desc_t module_descs[] = {
    {"request_filtering", MOD(request_filtering), 1, request_filtering_init, request_filtering_keys},
    {"ip_restriction", MOD(ip_restriction), 1, ip_restriction_init, ip_restriction_keys},
    {"authentication", MOD(authentication), 1, authentication_init, authentication_keys, .check = authentication_check},
    {"authorization", MOD(authorization), 1, NULL, NULL, parse_authorization},
    {"redirect", MOD(redirect), 1, NULL, NULL, parse_redirect},
    {"rewrite", MOD(rewrite), 1, NULL, NULL, parse_rewrite},
    {"webdav", MOD(webdav), 0, webdav_init, webdav_keys},
    {"ssi", MOD(ssi), 0, ssi_init, ssi_keys},
    {"custom_headers", MOD(custom_headers), 1, custom_headers_init, NULL, parse_custom_headers},
    {"custom_errors", MOD(custom_errors), 1, custom_errors_init, custom_errors_keys},
    {"compression", MOD(compression), 1, compression_init, compression_keys},
    {"output_cache", MOD(output_cache), 1, NULL, NULL, parse_output_cache},
    {"logging", MOD(logging), 1, logging_init, logging_keys},
    {"failed_request_tracing", MOD(failed_request_tracing), 0, NULL, failed_request_tracing_keys},
    {"request_monitor", MOD(request_monitor), 1, NULL, request_monitor_keys},
    {NULL}};

static int *module_set(h2p_modules_conf_t *m, const module_desc_t *desc)
{
    return (int *)((char *)m + desc->offset + offsetof(module_head_t, set));
}

static int *module_enabled(h2p_modules_conf_t *m, const module_desc_t *desc)
{
    return (int *)((char *)m + desc->offset + offsetof(module_head_t, enabled));
}

static h2p_origin_t *module_origin(h2p_modules_conf_t *m, const module_desc_t *desc)
{
    return (h2p_origin_t *)((char *)m + desc->offset + offsetof(module_head_t, origin));
}

void h2p_cfg_modules_defaults(h2p_cfg_ctx_t *ctx, h2p_modules_conf_t *m)
{
    for (const module_desc_t *desc = module_descs; desc->name != NULL; desc++) {
        if (desc->init != NULL)
            desc->init(ctx, m);
        *module_set(m, desc) = 0;
        *module_enabled(m, desc) = desc->default_enabled;
    }
}

/* {enabled: ...} and nothing else: the one map a module of rules accepts */
static int only_enabled_key(h2p_cfg_ctx_t *ctx, yaml_node_t *node)
{
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start; pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *key = yaml_document_get_node(ctx->doc, pair->key);
        if (key == NULL || key->type != YAML_SCALAR_NODE || strcmp((const char *)key->data.scalar.value, "enabled") != 0)
            return 0;
    }
    return 1;
}

static void parse_module(h2p_cfg_ctx_t *ctx, yaml_node_t *key_node, yaml_node_t *node, h2p_modules_conf_t *m,
                         const module_desc_t *desc)
{
    if (desc->init != NULL)
        desc->init(ctx, m);
    *module_set(m, desc) = 1;
    *module_enabled(m, desc) = 1; /* naming a module turns it on unless it says enabled: false */
    *module_origin(m, desc) = h2p_cfg_origin(ctx, key_node);
    int list_shaped = desc->parse == parse_authorization || desc->parse == parse_redirect || desc->parse == parse_rewrite ||
                      desc->parse == parse_output_cache;
    if (desc->keys != NULL) {
        h2p_cfg_parse_map(ctx, node, desc->keys, m);
    } else if (list_shaped && node->type == YAML_MAPPING_NODE && only_enabled_key(ctx, node)) {
        /* a module of rules can still be switched off in a scope: `redirect: {enabled: false}` */
        const h2p_cfg_key_t switch_keys[] = {{"enabled", H2P_CFG_BOOL, desc->offset + offsetof(module_head_t, enabled)}, {NULL}};
        h2p_cfg_parse_map(ctx, node, switch_keys, m);
    } else {
        desc->parse(ctx, node, m);
    }
    if (desc->check != NULL && node->type == YAML_MAPPING_NODE)
        desc->check(ctx, node, m);
}

/* ---- plugin modules: their settings are kept as YAML text ---------------------------------- */

typedef struct text_buffer {
    char *data;
    size_t len;
} text_buffer_t;

static int append_output(void *data, unsigned char *buffer, size_t size)
{
    text_buffer_t *text = data;
    char *grown = realloc(text->data, text->len + size + 1);

    if (grown == NULL)
        return 0;
    text->data = grown;
    memcpy(text->data + text->len, buffer, size);
    text->len += size;
    text->data[text->len] = '\0';
    return 1;
}

/* Copies `node` into `dst`; the limits stop alias loops and alias bombs. Returns 0 on failure. */
static int copy_node(h2p_cfg_ctx_t *ctx, yaml_document_t *dst, yaml_node_t *node, int depth, size_t *budget)
{
    int copy = 0;

    if (depth > 64 || (*budget)-- == 0)
        return 0;
    switch (node->type) {
    case YAML_SCALAR_NODE:
        return yaml_document_add_scalar(dst, NULL, node->data.scalar.value, node->data.scalar.length, node->data.scalar.style);
    case YAML_SEQUENCE_NODE:
        if ((copy = yaml_document_add_sequence(dst, NULL, YAML_ANY_SEQUENCE_STYLE)) == 0)
            return 0;
        for (yaml_node_item_t *item = node->data.sequence.items.start; item < node->data.sequence.items.top; item++) {
            int child = copy_node(ctx, dst, h2p_cfg_node(ctx, *item), depth + 1, budget);
            if (child == 0 || !yaml_document_append_sequence_item(dst, copy, child))
                return 0;
        }
        return copy;
    case YAML_MAPPING_NODE:
        if ((copy = yaml_document_add_mapping(dst, NULL, YAML_ANY_MAPPING_STYLE)) == 0)
            return 0;
        for (yaml_node_pair_t *pair = node->data.mapping.pairs.start; pair < node->data.mapping.pairs.top; pair++) {
            int key = copy_node(ctx, dst, h2p_cfg_node(ctx, pair->key), depth + 1, budget);
            int value = key != 0 ? copy_node(ctx, dst, h2p_cfg_node(ctx, pair->value), depth + 1, budget) : 0;
            if (value == 0 || !yaml_document_append_mapping_pair(dst, copy, key, value))
                return 0;
        }
        return copy;
    default:
        return 0;
    }
}

static char *node_to_yaml(h2p_cfg_ctx_t *ctx, yaml_node_t *node)
{
    yaml_document_t doc;
    yaml_emitter_t emitter;
    text_buffer_t text = {NULL, 0};
    size_t budget = 100000;
    char *result = NULL;

    if (!yaml_document_initialize(&doc, NULL, NULL, NULL, 1, 1))
        return NULL;
    if (copy_node(ctx, &doc, node, 0, &budget) == 0) {
        yaml_document_delete(&doc);
        return NULL;
    }
    yaml_emitter_initialize(&emitter);
    yaml_emitter_set_output(&emitter, append_output, &text);
    yaml_emitter_set_unicode(&emitter, 1);
    if (!yaml_emitter_open(&emitter))
        yaml_document_delete(&doc);
    else if (yaml_emitter_dump(&emitter, &doc) && yaml_emitter_close(&emitter) &&
             yaml_emitter_flush(&emitter)) /* dump deletes doc */
        result = h2p_cfg_strdup(ctx->arena, text.data != NULL ? text.data : "");
    yaml_emitter_delete(&emitter);
    free(text.data);
    return result;
}

static int valid_module_name(const char *s)
{
    for (const char *p = s; *p != '\0'; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return 0;
    return *s != '\0';
}

static void parse_plugin(h2p_cfg_ctx_t *ctx, yaml_node_t *key_node, yaml_node_t *node, h2p_modules_conf_t *m, const char *name)
{
    char *yaml;

    if (ctx->conf->server.load_modules.count == 0) {
        h2p_cfg_error(ctx, key_node, "unknown module \"%s\" (and no server.load_modules to provide it)", name);
        return;
    }
    if (!valid_module_name(name)) {
        h2p_cfg_error(ctx, key_node, "bad module name \"%s\" (use a-z, 0-9 and _)", name);
        return;
    }
    if ((yaml = node_to_yaml(ctx, node)) == NULL) {
        h2p_cfg_error(ctx, node, "cannot copy the settings of module \"%s\" (nested too deep?)", name);
        return;
    }
    m->plugin_settings[m->num_plugin_settings].name = h2p_cfg_strdup(ctx->arena, name);
    m->plugin_settings[m->num_plugin_settings].yaml = yaml;
    m->plugin_settings[m->num_plugin_settings].origin = h2p_cfg_origin(ctx, key_node);
    m->num_plugin_settings++;
}

void h2p_cfg_parse_modules(h2p_cfg_ctx_t *ctx, yaml_node_t *node, h2p_modules_conf_t *m)
{
    size_t count = h2p_cfg_map_size(node);

    if (!h2p_cfg_expect_map(ctx, node))
        return;
    m->plugin_settings = h2p_cfg_alloc(ctx->arena, count, sizeof(*m->plugin_settings));
    m->num_plugin_settings = 0;
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *key_node, *value;
        const char *name = h2p_cfg_map_entry(ctx, node, i, &key_node, &value);
        const module_desc_t *desc;
        size_t mark;
        if (name == NULL)
            continue;
        for (desc = module_descs; desc->name != NULL && strcmp(desc->name, name) != 0; desc++)
            ;
        mark = h2p_cfg_path_push_key(ctx, name);
        if (desc->name != NULL)
            parse_module(ctx, key_node, value, m, desc);
        else
            parse_plugin(ctx, key_node, value, m, name);
        h2p_cfg_path_pop(ctx, mark);
    }
}

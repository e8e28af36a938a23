/*
 * `modules:` of a site, application or location: one settings section per pipeline module.
 *
 * Every module has a descriptor (its h2p_conf_<name>, by native-modules/modules.def): the size
 * of its settings, its defaults, its keys (or a parse function when the section is a list or a
 * free-form map) and the checks across its keys.  This file knows no module's settings beyond
 * their common head (H2P_MODULE_HEAD).  A scope that names a module gets fresh settings in its
 * slot, set = 1, the module's defaults overridden by what it wrote; at the site level every slot
 * is filled with the defaults first, so that the merged result is always complete.
 * Names that are no built-in module are kept as YAML text for plugin modules
 * (server.load_modules), and are an error when no plugin is loaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include "frontend/config.h"
#include "frontend/config_internal.h"
#include "native-modules/module_conf.h"

typedef struct module_head {
    H2P_MODULE_HEAD;
} module_head_t;

typedef struct module_desc {
    const char *name;
    size_t offset; /* of the module's slot in h2p_modules_conf_t (its settings start with H2P_MODULE_HEAD) */
    const h2p_module_conf_t *conf;
} module_desc_t;

/* Reports against the value of `name` in `map` (or the map itself), with the key in the path. */
void h2p_cfg_error_at_key(h2p_cfg_ctx_t *ctx, yaml_node_t *map, const char *name, const char *message)
{
    yaml_node_t *node = h2p_cfg_map_get(ctx, map, name);
    size_t mark = node != NULL ? h2p_cfg_path_push_key(ctx, name) : ctx->path_len;

    h2p_cfg_error(ctx, node != NULL ? node : map, "%s", message);
    h2p_cfg_path_pop(ctx, mark);
}

/* ---- files the modules use: read and checked here, so that start, reload and -t agree ----- */

/* A whole file of at most `max` bytes into the arena (NUL-terminated); NULL after reporting. */
char *h2p_cfg_read_small_file(h2p_cfg_ctx_t *ctx, yaml_node_t *node, const char *path, size_t max, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* (a FIFO put there since the check must not block) */
    struct stat st;
    char *body = NULL;

    if (fd < 0) {
        h2p_cfg_error(ctx, node, "cannot read \"%s\": %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        h2p_cfg_error(ctx, node, "\"%s\" is not a regular file", path);
    } else if ((uint64_t)st.st_size > max) {
        h2p_cfg_error(ctx, node, "\"%s\" is larger than %zu %s", path, max >= 1 << 20 ? max >> 20 : max >> 10,
                      max >= 1 << 20 ? "MiB" : "KiB");
    } else {
        body = h2p_cfg_alloc(ctx->arena, (size_t)st.st_size + 1, 1);
        *len = 0;
        while (*len < (size_t)st.st_size) {
            ssize_t n = read(fd, body + *len, (size_t)st.st_size - *len);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                h2p_cfg_error(ctx, node, "cannot read \"%s\": %s", path, n < 0 ? strerror(errno) : "the file shrank");
                body = NULL;
                break;
            }
            *len += (size_t)n;
        }
    }
    close(fd);
    return body;
}

yaml_node_t *h2p_cfg_seq_item(h2p_cfg_ctx_t *ctx, yaml_node_t *seq, size_t i)
{
    return h2p_cfg_node(ctx, seq->data.sequence.items.start[i]);
}

/* A list of strings each checked by `valid`; reports the bad ones against their item. */
void h2p_cfg_checked_list(h2p_cfg_ctx_t *ctx, yaml_node_t *node, h2p_strlist_t *list, unsigned flags, int (*valid)(const char *),
                          const char *what)
{
    if (h2p_cfg_strlist(ctx, node, flags, list) != 0)
        return;
    for (size_t i = 0; i < list->count; i++) {
        if (!valid(list->items[i])) {
            size_t mark = h2p_cfg_path_push_index(ctx, i);
            h2p_cfg_error(ctx, h2p_cfg_seq_item(ctx, node, i), "bad %s \"%s\"", what, list->items[i]);
            h2p_cfg_path_pop(ctx, mark);
        }
    }
}

void h2p_cfg_parse_verbs(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_cfg_checked_list(ctx, node, (h2p_strlist_t *)((char *)base + key->offset), H2P_CFG_UPPER, h2p_cfg_valid_token, "verb");
}

static int valid_header_name(const char *s)
{
    return h2p_cfg_valid_token(s);
}

void h2p_cfg_parse_header_names(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_cfg_checked_list(ctx, node, (h2p_strlist_t *)((char *)base + key->offset), H2P_CFG_LOWER, valid_header_name, "header name");
}

static int valid_mime_pattern(const char *s)
{
    const char *slash = strchr(s, '/');
    return slash != NULL && slash != s && slash[1] != '\0' && strchr(slash + 1, '/') == NULL;
}

void h2p_cfg_parse_mime_types(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    h2p_cfg_checked_list(ctx, node, (h2p_strlist_t *)((char *)base + key->offset), H2P_CFG_LOWER, valid_mime_pattern, "media type");
}

/*
 * A list of maps (authorization, redirect, rewrite, output_cache): each item parsed with `keys`
 * into an element of `size` bytes, then `check` runs on it.  Returns the array.
 */
void *h2p_cfg_parse_rules(h2p_cfg_ctx_t *ctx, yaml_node_t *node, const h2p_cfg_key_t *keys, size_t size, size_t *count,
                          void (*check)(h2p_cfg_ctx_t *ctx, yaml_node_t *item, void *rule))
{
    char *rules;

    *count = 0;
    if (!h2p_cfg_expect_seq(ctx, node))
        return NULL;
    rules = h2p_cfg_alloc(ctx->arena, h2p_cfg_seq_size(node), size);
    for (size_t i = 0; i < h2p_cfg_seq_size(node); i++) {
        yaml_node_t *item = h2p_cfg_seq_item(ctx, node, i);
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

/* ---- the module table --------------------------------------------------------------------- */

/* Every module with settings, by native-modules/modules.def. */
static const module_desc_t module_descs[] = {
#define SETTINGS(name) {#name, offsetof(h2p_modules_conf_t, name), &h2p_conf_##name},
#define NO_SETTINGS(name)
#define H2P_MODULE(name, phases, settings) settings(name)
#include "native-modules/modules.def"
#undef H2P_MODULE
#undef SETTINGS
#undef NO_SETTINGS
    {NULL}};

/* The slot of a module's settings in `m` */
static module_head_t **module_slot(h2p_modules_conf_t *m, const module_desc_t *desc)
{
    return (module_head_t **)((char *)m + desc->offset);
}

/* Fresh settings of a module: zeroed, then its defaults. */
static module_head_t *new_settings(h2p_cfg_ctx_t *ctx, h2p_modules_conf_t *m, const module_desc_t *desc)
{
    module_head_t *head = h2p_cfg_alloc(ctx->arena, 1, desc->conf->size);
    if (desc->conf->init != NULL)
        desc->conf->init(ctx, head);
    *module_slot(m, desc) = head;
    return head;
}

void h2p_cfg_modules_defaults(h2p_cfg_ctx_t *ctx, h2p_modules_conf_t *m)
{
    for (const module_desc_t *desc = module_descs; desc->name != NULL; desc++) {
        module_head_t *head = new_settings(ctx, m, desc);
        head->set = 0;
        head->enabled = desc->conf->default_enabled;
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
    const h2p_module_conf_t *conf = desc->conf;
    module_head_t *head = new_settings(ctx, m, desc);
    head->set = 1;
    head->enabled = 1; /* naming a module turns it on unless it says enabled: false */
    head->origin = h2p_cfg_origin(ctx, key_node);
    head->path = h2p_cfg_strdup(ctx->arena, ctx->path);
    if (conf->keys != NULL) {
        h2p_cfg_parse_map(ctx, node, conf->keys, head);
    } else if (conf->rules && node->type == YAML_MAPPING_NODE && only_enabled_key(ctx, node)) {
        /* a module of rules can still be switched off in a scope: `redirect: {enabled: false}` */
        const h2p_cfg_key_t switch_keys[] = {{"enabled", H2P_CFG_BOOL, offsetof(module_head_t, enabled)}, {NULL}};
        h2p_cfg_parse_map(ctx, node, switch_keys, head);
    } else {
        conf->parse(ctx, node, head);
    }
    if (conf->check != NULL && node->type == YAML_MAPPING_NODE)
        conf->check(ctx, node, head);
}

void h2p_cfg_check_site_modules(h2p_cfg_ctx_t *ctx, const h2p_site_conf_t *site)
{
    for (const module_desc_t *desc = module_descs; desc->name != NULL; desc++)
        if (desc->conf->check_site != NULL)
            desc->conf->check_site(ctx, site);
}

void h2p_modules_prepare_dirs(const h2p_config_t *conf, const h2p_site_conf_t *site, const h2p_modules_conf_t *m,
                              void (*prepare)(const char *dir, void *arg), void *arg)
{
    for (const module_desc_t *desc = module_descs; desc->name != NULL; desc++) {
        const module_head_t *head = *module_slot((h2p_modules_conf_t *)m, desc);
        if (desc->conf->prepare_dirs != NULL && head != NULL && head->enabled)
            desc->conf->prepare_dirs(conf, site, head, prepare, arg);
    }
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

/* ---- scopes ------------------------------------------------------------------------------- */

void h2p_modules_merge(h2p_modules_conf_t *out, const h2p_modules_conf_t *parent, const h2p_modules_conf_t *child)
{
    *out = *parent;
    /* a module the child scope names replaces the parent's settings of that module there */
#define MERGE_SETTINGS(name)                                                                                                       \
    if (child->name != NULL && ((const module_head_t *)child->name)->set)                                                          \
        out->name = child->name;
#define MERGE_NO_SETTINGS(name)
#define H2P_MODULE(name, phases, settings) MERGE_##settings(name)
#include "native-modules/modules.def"
#undef H2P_MODULE
#undef MERGE_SETTINGS
#undef MERGE_NO_SETTINGS
    if (child->num_plugin_settings != 0) {
        out->plugin_settings = child->plugin_settings;
        out->num_plugin_settings = child->num_plugin_settings;
    }
}

/*
 * The configuration part of a module: its settings section (`modules.<name>`), parsed by
 * frontend/config_modules.c into fresh settings of the module's own type (struct h2p_<name>_conf,
 * in native-modules/<name>.h), hung in its slot of h2p_modules_conf_t, with what the module's
 * native-modules/<name>_conf.c declares here.  Everything a check needs that is not a running
 * server happens there (files read, regular expressions compiled), so `-t`, a start and a reload
 * report the same errors, each as file:line:column: key.path: reason.
 */
#ifndef H2POOL_MODULE_CONF_H
#define H2POOL_MODULE_CONF_H

#include <stddef.h>

#include "frontend/config.h"
#include "frontend/config_internal.h"

/* The offset of a field of a module's settings struct (for its key tables) */
#define SETTING(type, field) offsetof(type, field)
#define RULE(type, field) offsetof(type, field)

typedef struct h2p_module_conf {
    size_t size; /* of the module's settings struct, which begins with H2P_MODULE_HEAD */
    int default_enabled;
    /* the defaults, on zeroed settings (also when the module is named: what it writes overrides them) */
    void (*init)(h2p_cfg_ctx_t *ctx, void *settings);
    /* the section is a map of these keys (offsets in the settings struct), or parse() reads it */
    const h2p_cfg_key_t *keys;
    void (*parse)(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *settings);
    /* checks across keys, after them (on a map) */
    void (*check)(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *settings);
    /* checks across the scopes of a site (after its applications and locations are read) */
    void (*check_site)(h2p_cfg_ctx_t *ctx, const h2p_site_conf_t *site);
    /* the directories the module writes into for a scope with these (merged) settings, which
     * the front end creates before it gives up root: prepare(dir, arg) for each */
    void (*prepare_dirs)(const h2p_config_t *conf, const h2p_site_conf_t *site, const void *settings,
                         void (*prepare)(const char *dir, void *arg), void *arg);
    /* a list of rules, which `{enabled: false}` switches off in a scope */
    int rules;
} h2p_module_conf_t;

/* Each module's settings (native-modules/<name>_conf.c), by the list of modules. */
#define SETTINGS(name) extern const h2p_module_conf_t h2p_conf_##name;
#define NO_SETTINGS(name)
#define H2P_MODULE(name, phases, settings) settings(name)
#include "native-modules/modules.def"
#undef H2P_MODULE
#undef SETTINGS
#undef NO_SETTINGS

/* ---- helpers the settings parsers share (frontend/config_modules.c) ----------------------- */

/* Reports against the value of `name` in `map` (or the map itself), with the key in the path. */
void h2p_cfg_error_at_key(h2p_cfg_ctx_t *ctx, yaml_node_t *map, const char *name, const char *message);
/* A whole file of at most `max` bytes into the arena (NUL-terminated); NULL after reporting. */
char *h2p_cfg_read_small_file(h2p_cfg_ctx_t *ctx, yaml_node_t *node, const char *path, size_t max, size_t *len);
yaml_node_t *h2p_cfg_seq_item(h2p_cfg_ctx_t *ctx, yaml_node_t *seq, size_t i);
/* A list of strings each checked by `valid`; reports the bad ones against their item. */
void h2p_cfg_checked_list(h2p_cfg_ctx_t *ctx, yaml_node_t *node, h2p_strlist_t *list, unsigned flags, int (*valid)(const char *),
                          const char *what);
void h2p_cfg_parse_verbs(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key);
void h2p_cfg_parse_header_names(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key);
void h2p_cfg_parse_mime_types(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key);
/* A list of maps: each item parsed with `keys` into an element of `size` bytes, then `check`
 * runs on it.  Returns the array. */
void *h2p_cfg_parse_rules(h2p_cfg_ctx_t *ctx, yaml_node_t *node, const h2p_cfg_key_t *keys, size_t size, size_t *count,
                          void (*check)(h2p_cfg_ctx_t *ctx, yaml_node_t *item, void *rule));

#endif

/*
 * The configuration part of a module: its settings section (`modules.<name>`), parsed into its
 * slot of h2p_modules_conf_t by frontend/config_modules.c with what the module's
 * native-modules/<name>_conf.c declares here.  Everything a check needs that is not a running
 * server happens there (files read, regular expressions compiled), so `-t`, a start and a reload
 * report the same errors, each as file:line:column: key.path: reason.
 */
#ifndef H2POOL_MODULE_CONF_H
#define H2POOL_MODULE_CONF_H

#include <stddef.h>

#include "frontend/config.h"
#include "frontend/config_internal.h"

#define MOD(field) offsetof(h2p_modules_conf_t, field)
#define RULE(type, field) offsetof(type, field)

typedef struct h2p_module_conf {
    int default_enabled;
    /* the defaults (also when the module is named: what it writes overrides them) */
    void (*init)(h2p_cfg_ctx_t *ctx, h2p_modules_conf_t *m);
    /* the section is a map of these keys, or parse() reads it */
    const h2p_cfg_key_t *keys;
    void (*parse)(h2p_cfg_ctx_t *ctx, yaml_node_t *node, h2p_modules_conf_t *m);
    /* checks across keys, after them (on a map) */
    void (*check)(h2p_cfg_ctx_t *ctx, yaml_node_t *node, h2p_modules_conf_t *m);
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

/*
 * Private to the configuration loader (frontend/config*.c): the parse context, the arena, error
 * reporting and the key tables that turn a YAML map into a C struct.  Nothing outside
 * frontend/config*.c includes this file; everybody else reads frontend/config.h.
 *
 * How a section is parsed: a NULL-terminated array of h2p_cfg_key_t names every key the section
 * may hold, its kind (bool, duration, path, nested map, ...) and the offset of the field it
 * fills in a `base` struct.  h2p_cfg_parse_map() walks the YAML map, reports unknown and
 * repeated keys, converts each value and reports a bad one against its node, so every message
 * gets file:line:column and the key path for free.  Checks that involve several keys run after
 * it, in the code that owns the section.
 */
#ifndef H2POOL_CONFIG_INTERNAL_H
#define H2POOL_CONFIG_INTERNAL_H

#include <stdarg.h>
#include <yaml.h>
#include "frontend/config.h"

/* ---- memory (config_yaml.c) ------------------------------------------------------------- */

/* malloc/realloc that abort when out of memory */
void *h2p_cfg_xmalloc(size_t size);
void *h2p_cfg_xrealloc(void *p, size_t size);

/* the arena: every allocation of a generation, freed at once */

struct h2p_config_arena *h2p_cfg_arena_new(void);
void h2p_cfg_arena_free(struct h2p_config_arena *arena);
void *h2p_cfg_alloc(struct h2p_config_arena *arena, size_t count, size_t size); /* zeroed */
/* Calls fn(data) when the arena is freed: for what a generation owns outside it. */
void h2p_cfg_arena_on_free(struct h2p_config_arena *arena, void (*fn)(void *), void *data);
char *h2p_cfg_strndup(struct h2p_config_arena *arena, const char *s, size_t len);
char *h2p_cfg_strdup(struct h2p_config_arena *arena, const char *s);

/* ---- parse context ---------------------------------------------------------------------- */

typedef struct h2p_cfg_seen_key {
    char *path; /* "server.limits.max_connections" */
    h2p_origin_t origin;
} h2p_cfg_seen_key_t;

typedef struct h2p_cfg_ctx {
    h2p_config_t *conf;
    struct h2p_config_arena *arena;
    h2p_config_errors_t *errors;
    size_t first_error; /* errors->count when loading started */
    int check_files;
    const char *file;     /* the YAML file being parsed, as shown in messages (arena) */
    const char *file_dir; /* absolute directory relative paths resolve against */
    yaml_document_t *doc;
    size_t **duplicate_keys; /* of doc: per node index, the first pair of each pair's key (see h2p_cfg_map_entry) */
    const char *site_name;   /* site being parsed, or NULL */
    char path[1024];         /* key path of the node being parsed: "sites.blog.bindings[1]" */
    size_t path_len;
    /* `server` keys may be split over files but not set twice: the leaves set so far */
    int track_keys;
    h2p_cfg_seen_key_t *seen;
    size_t num_seen;
    size_t total_bytes;           /* of the files read so far (H2P_CFG_MAX_TOTAL_SIZE) */
    struct evp_md_ctx_st *digest; /* of what was read (h2p_config_t.digest) */
} h2p_cfg_ctx_t;

static inline size_t h2p_cfg_error_count(h2p_cfg_ctx_t *ctx)
{
    return ctx->errors->count - ctx->first_error;
}

/* Key path: push returns a mark that pop restores. */
size_t h2p_cfg_path_push_key(h2p_cfg_ctx_t *ctx, const char *key);
size_t h2p_cfg_path_push_index(h2p_cfg_ctx_t *ctx, size_t index);
void h2p_cfg_path_pop(h2p_cfg_ctx_t *ctx, size_t mark);

/* Errors: "file:line:col: key.path: text" */
void h2p_cfg_error(h2p_cfg_ctx_t *ctx, const yaml_node_t *node, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void h2p_cfg_error_at(h2p_cfg_ctx_t *ctx, const h2p_origin_t *origin, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void h2p_cfg_errors_add(h2p_config_errors_t *errors, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
h2p_origin_t h2p_cfg_origin(h2p_cfg_ctx_t *ctx, const yaml_node_t *node);

/* ---- reading files (config_yaml.c) ------------------------------------------------------ */

/* What a configuration file may be: a broken or hostile one must not hold a (re)load for long. */
#define H2P_CFG_MAX_FILE_SIZE (4 << 20)   /* bytes of one file */
#define H2P_CFG_MAX_TOTAL_SIZE (16 << 20) /* bytes of all the files of a directory */
#define H2P_CFG_MAX_DEPTH 64              /* nested maps and lists */
#define H2P_CFG_MAX_ANCHORS 1000          /* per file */
#define H2P_CFG_MAX_ALIASES 10000         /* per file */
#define H2P_CFG_MAX_ALIAS_NODES 100000    /* nodes the aliases of a file stand for, counted expanded */

/* Reads and parses the YAML file at `path` (named ctx->file in messages) into `doc`, within the
 * limits above.  Returns 0, or -1 after reporting. */
int h2p_cfg_load_yaml_file(h2p_cfg_ctx_t *ctx, const char *path, yaml_document_t *doc, size_t ***duplicate_keys);
/* The table of repeated map keys the loader gave with a document (ctx->duplicate_keys). */
void h2p_cfg_free_duplicate_keys(yaml_document_t *doc, size_t **duplicate_keys);

/* A set of names (not copied) with a value each, in linear time however many there are. */
typedef struct h2p_cfg_names {
    const char **names;
    size_t *values;
    size_t capacity, count;
} h2p_cfg_names_t;

/* The value of `name` when it is in the set; else adds it with `value` and returns SIZE_MAX. */
size_t h2p_cfg_names_put(h2p_cfg_names_t *set, const char *name, size_t value);
void h2p_cfg_names_free(h2p_cfg_names_t *set);

/* ---- YAML node helpers ------------------------------------------------------------------ */

yaml_node_t *h2p_cfg_node(h2p_cfg_ctx_t *ctx, int index);
int h2p_cfg_is_null(const yaml_node_t *node);
const char *h2p_cfg_node_type(const yaml_node_t *node); /* "a map", "a list", "a string" */
/* value of `name` in a mapping, or NULL */
yaml_node_t *h2p_cfg_map_get(h2p_cfg_ctx_t *ctx, yaml_node_t *map, const char *name);
/* a map (or null = empty map) / a list (or null = empty list); else reports and returns 0 */
int h2p_cfg_expect_map(h2p_cfg_ctx_t *ctx, yaml_node_t *node);
int h2p_cfg_expect_seq(h2p_cfg_ctx_t *ctx, yaml_node_t *node);
/* number of pairs / items; 0 for null */
size_t h2p_cfg_map_size(const yaml_node_t *node);
size_t h2p_cfg_seq_size(const yaml_node_t *node);
/* Pair `i` of a map: returns the key text (a scalar), or reports and returns NULL. */
const char *h2p_cfg_map_key(h2p_cfg_ctx_t *ctx, yaml_node_t *map, size_t i, yaml_node_t **key_node, yaml_node_t **value);
/*
 * Checks pair `i` of a map: the key must be a scalar and not repeat an earlier key.  Returns the
 * key text and sets *key_node / *value, or reports and returns NULL.
 */
const char *h2p_cfg_map_entry(h2p_cfg_ctx_t *ctx, yaml_node_t *map, size_t i, yaml_node_t **key_node, yaml_node_t **value);

/* Scalar conversions: 0 on success, -1 after reporting the error against `node`. */
const char *h2p_cfg_scalar(h2p_cfg_ctx_t *ctx, yaml_node_t *node); /* the text, not copied */
char *h2p_cfg_string(h2p_cfg_ctx_t *ctx, yaml_node_t *node);       /* non-empty, arena copy */
int h2p_cfg_bool(h2p_cfg_ctx_t *ctx, yaml_node_t *node, int *out);
int h2p_cfg_number(h2p_cfg_ctx_t *ctx, yaml_node_t *node, uint64_t min, uint64_t max, uint64_t *out);
int h2p_cfg_duration(h2p_cfg_ctx_t *ctx, yaml_node_t *node, uint64_t min, uint64_t max, uint64_t *out);
int h2p_cfg_size(h2p_cfg_ctx_t *ctx, yaml_node_t *node, uint64_t min, uint64_t max, uint64_t *out);

#define H2P_CFG_ANY_PATH 0
#define H2P_CFG_REGULAR_FILE 1
#define H2P_CFG_DIRECTORY 2
/* a certificate or key: read by the privileged part, so the front end (server.user), which
 * reloads the configuration, need not be able to read it, nor reach it (EACCES is no error) */
#define H2P_CFG_PRIVILEGED_FILE 3
/* absolute path (arena); with check_files, `must_be` FILE/DIRECTORY must exist */
char *h2p_cfg_path(h2p_cfg_ctx_t *ctx, yaml_node_t *node, int must_be);

/* flags for string lists */
#define H2P_CFG_NONEMPTY 0x1  /* the list must have at least one item */
#define H2P_CFG_LOWER 0x2     /* lower-case every item */
#define H2P_CFG_UPPER 0x4     /* upper-case every item */
#define H2P_CFG_EXTENSION 0x8 /* file extensions: lower case, leading dot added */
#define H2P_CFG_REQUIRED 0x10 /* (any key) missing key is an error */
int h2p_cfg_strlist(h2p_cfg_ctx_t *ctx, yaml_node_t *node, unsigned flags, h2p_strlist_t *out);
void h2p_cfg_strlist_set(h2p_cfg_ctx_t *ctx, h2p_strlist_t *list, const char *const *items, size_t count);

/* ---- key tables ------------------------------------------------------------------------- */

typedef enum h2p_cfg_kind {
    H2P_CFG_BOOL,        /* int: true/false/yes/no/on/off */
    H2P_CFG_UINT,        /* unsigned in [min, max] (max 0 = UINT_MAX) */
    H2P_CFG_U64,         /* uint64_t in [min, max] (max 0 = no limit) */
    H2P_CFG_DURATION,    /* uint64_t milliseconds in [min, max] */
    H2P_CFG_SIZE,        /* uint64_t bytes in [min, max] */
    H2P_CFG_STRING,      /* char *, non-empty */
    H2P_CFG_PATH,        /* char *, absolute */
    H2P_CFG_FILE,        /* char *, absolute, a regular file when check_files */
    H2P_CFG_KEY_FILE,    /* H2P_CFG_FILE that the privileged part reads (H2P_CFG_PRIVILEGED_FILE) */
    H2P_CFG_DIR,         /* char *, absolute, a directory when check_files */
    H2P_CFG_STRLIST,     /* h2p_strlist_t, `flags` apply */
    H2P_CFG_ENUM,        /* an enum (int sized): index of the value in `arg` (NULL-terminated names) */
    H2P_CFG_ENUM_STRING, /* char *: one of the names in `arg` */
    H2P_CFG_MAP,         /* nested map: `arg` is its key table, offsets relative to the same base */
    H2P_CFG_CUSTOM       /* `parse` does it all */
} h2p_cfg_kind_t;

typedef struct h2p_cfg_key h2p_cfg_key_t;
typedef void (*h2p_cfg_parse_cb)(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key);

struct h2p_cfg_key {
    const char *name;
    h2p_cfg_kind_t kind;
    size_t offset; /* of the field in `base` */
    uint64_t min, max;
    const void *arg;
    h2p_cfg_parse_cb parse;
    unsigned flags;
};

/* Parses a map (null = empty) whose keys are all in `keys` into `base`. */
void h2p_cfg_parse_map(h2p_cfg_ctx_t *ctx, yaml_node_t *node, const h2p_cfg_key_t *keys, void *base);

/* ---- values (config_values.c) ----------------------------------------------------------- */

typedef struct h2p_cfg_span {
    const char *p;
    size_t len;
} h2p_cfg_span_t;

/*
 * h2p_parse_binding() without allocation: out->host and out->text stay NULL and the hostname's
 * place in `s` is returned in *host (len 0 = none).  On error *err says what is wrong and *bad
 * points at the offending part of `s`.
 */
int h2p_cfg_parse_binding(const char *s, h2p_binding_t *out, h2p_cfg_span_t *host, const char **err, h2p_cfg_span_t *bad);
/* "unix:/path" (relative paths against base_dir) or "tcp:ip:port"; out->text is left NULL */
int h2p_cfg_parse_endpoint(const char *s, const char *base_dir, h2p_endpoint_t *out, const char **err);
/* "ip:port", "[v6]:port" or "*:port" */
int h2p_cfg_parse_host_port(const char *s, const char **err);
/* Lexically cleans an absolute path ("/a/./b//../c/" -> "/a/c"); out holds strlen(in) + 1. */
void h2p_cfg_clean_path(const char *in, char *out);
int h2p_cfg_valid_hostname(const char *s, size_t len);
int h2p_cfg_valid_token(const char *s); /* RFC 9110 token (header names, methods) */

/* ---- sections (config_sites.c, config_modules.c) ----------------------------------------- */

/* Parses one entry of `sites:` into `site` (name and origin already set). */
void h2p_cfg_parse_site(h2p_cfg_ctx_t *ctx, yaml_node_t *name_node, yaml_node_t *node, h2p_site_conf_t *site);
/* Once every site is parsed: one ip:port serves one scheme, one (ip, port, host) one site. */
void h2p_cfg_check_bindings(h2p_cfg_ctx_t *ctx);

/* Fills every module with its defaults, as the site level must be usable without merging. */
void h2p_cfg_modules_defaults(h2p_cfg_ctx_t *ctx, h2p_modules_conf_t *modules);
/* Parses `modules:`; only the modules it names get set = 1. */
void h2p_cfg_parse_modules(h2p_cfg_ctx_t *ctx, yaml_node_t *node, h2p_modules_conf_t *modules);
/* Each module's checks across the scopes of a site (h2p_module_conf_t.check_site), in pipeline order. */
void h2p_cfg_check_site_modules(h2p_cfg_ctx_t *ctx, const h2p_site_conf_t *site);

#endif

/*
 * The machinery that turns YAML nodes into the C structs of frontend/config.h, shared by the
 * config*.c files (declared in config_internal.h): the arena a generation lives in, error
 * messages with file:line:column and key path, YAML node helpers, scalar conversions and
 * h2p_cfg_parse_map(), which walks a YAML map with a key table.
 */
#include <errno.h>
#include <limits.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>
#include "frontend/config.h"
#include "frontend/config_internal.h"

void *h2p_cfg_xmalloc(size_t size)
{
    void *p = malloc(size);
    if (p == NULL) {
        fprintf(stderr, "h2pool: out of memory while loading the configuration\n");
        abort();
    }
    return p;
}

void *h2p_cfg_xrealloc(void *p, size_t size)
{
    if ((p = realloc(p, size)) == NULL) {
        fprintf(stderr, "h2pool: out of memory while loading the configuration\n");
        abort();
    }
    return p;
}

/* ---- arena ------------------------------------------------------------------------------ */

#define ARENA_CHUNK_SIZE 16384

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t size, used;
    max_align_t data[];
} arena_chunk_t;

typedef struct arena_cleanup {
    struct arena_cleanup *next;
    void (*fn)(void *);
    void *data;
} arena_cleanup_t;

struct h2p_config_arena {
    arena_chunk_t *chunks;     /* the first one is the one being filled */
    arena_cleanup_t *cleanups; /* what the generation owns outside the arena (loaded users files, ...) */
};

struct h2p_config_arena *h2p_cfg_arena_new(void)
{
    struct h2p_config_arena *arena = h2p_cfg_xmalloc(sizeof(*arena));
    arena->chunks = NULL;
    arena->cleanups = NULL;
    return arena;
}

void h2p_cfg_arena_free(struct h2p_config_arena *arena)
{
    arena_chunk_t *chunk, *next;

    if (arena == NULL)
        return;
    while (arena->cleanups != NULL) {
        arena_cleanup_t *cleanup = arena->cleanups;
        arena->cleanups = cleanup->next;
        cleanup->fn(cleanup->data);
        free(cleanup);
    }
    for (chunk = arena->chunks; chunk != NULL; chunk = next) {
        next = chunk->next;
        free(chunk);
    }
    free(arena);
}

void *h2p_cfg_alloc(struct h2p_config_arena *arena, size_t count, size_t size)
{
    arena_chunk_t *chunk = arena->chunks;
    size_t bytes;
    void *p;

    if (__builtin_mul_overflow(count, size, &bytes) || bytes > SIZE_MAX / 2)
        abort();
    bytes = (bytes + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1);
    if (bytes > ARENA_CHUNK_SIZE / 4) {
        /* big blocks get a chunk of their own, behind the one being filled */
        arena_chunk_t *big = h2p_cfg_xmalloc(sizeof(*big) + bytes);
        big->size = big->used = bytes;
        if (chunk != NULL) {
            big->next = chunk->next;
            chunk->next = big;
        } else {
            big->next = NULL;
            arena->chunks = big;
        }
        memset(big->data, 0, bytes);
        return big->data;
    }
    if (chunk == NULL || chunk->size - chunk->used < bytes) {
        chunk = h2p_cfg_xmalloc(sizeof(*chunk) + ARENA_CHUNK_SIZE);
        chunk->size = ARENA_CHUNK_SIZE;
        chunk->used = 0;
        chunk->next = arena->chunks;
        arena->chunks = chunk;
    }
    p = (char *)chunk->data + chunk->used;
    chunk->used += bytes;
    memset(p, 0, bytes);
    return p;
}

void h2p_cfg_arena_on_free(struct h2p_config_arena *arena, void (*fn)(void *), void *data)
{
    arena_cleanup_t *cleanup = h2p_cfg_xmalloc(sizeof(*cleanup));
    *cleanup = (arena_cleanup_t){arena->cleanups, fn, data};
    arena->cleanups = cleanup;
}

char *h2p_cfg_strndup(struct h2p_config_arena *arena, const char *s, size_t len)
{
    char *copy = h2p_cfg_alloc(arena, len + 1, 1);
    memcpy(copy, s, len);
    copy[len] = '\0';
    return copy;
}

char *h2p_cfg_strdup(struct h2p_config_arena *arena, const char *s)
{
    return s != NULL ? h2p_cfg_strndup(arena, s, strlen(s)) : NULL;
}

/* ---- errors and key paths ---------------------------------------------------------------- */

static char *vformat(const char *fmt, va_list args)
{
    va_list copy;
    int len;
    char *buf;

    va_copy(copy, args);
    len = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    buf = h2p_cfg_xmalloc(len + 1);
    vsnprintf(buf, len + 1, fmt, args);
    return buf;
}

static void errors_push(h2p_config_errors_t *errors, char *message)
{
    errors->messages = h2p_cfg_xrealloc(errors->messages, (errors->count + 1) * sizeof(*errors->messages));
    errors->messages[errors->count++] = message;
}

void h2p_cfg_errors_add(h2p_config_errors_t *errors, const char *fmt, ...)
{
    va_list args;

    va_start(args, fmt);
    errors_push(errors, vformat(fmt, args));
    va_end(args);
}

static void error_v(h2p_cfg_ctx_t *ctx, const h2p_origin_t *origin, const char *path, const char *fmt, va_list args)
{
    char *text = vformat(fmt, args);

    h2p_cfg_errors_add(ctx->errors, "%s:%u:%u: %s%s%s", origin->file, origin->line, origin->column, path, *path != '\0' ? ": " : "",
                       text);
    free(text);
}

void h2p_cfg_error_at(h2p_cfg_ctx_t *ctx, const h2p_origin_t *origin, const char *path, const char *fmt, ...)
{
    va_list args;

    va_start(args, fmt);
    error_v(ctx, origin, path, fmt, args);
    va_end(args);
}

void h2p_cfg_error(h2p_cfg_ctx_t *ctx, const yaml_node_t *node, const char *fmt, ...)
{
    h2p_origin_t origin = h2p_cfg_origin(ctx, node);
    va_list args;

    va_start(args, fmt);
    error_v(ctx, &origin, ctx->path, fmt, args);
    va_end(args);
}

h2p_origin_t h2p_cfg_origin(h2p_cfg_ctx_t *ctx, const yaml_node_t *node)
{
    h2p_origin_t origin = {ctx->file, 1, 1};

    if (node != NULL) {
        origin.line = node->start_mark.line + 1;
        origin.column = node->start_mark.column + 1;
    }
    return origin;
}

static size_t path_append(h2p_cfg_ctx_t *ctx, const char *fmt, const char *key, size_t index)
{
    size_t mark = ctx->path_len, room = sizeof(ctx->path) - mark;
    int n = key != NULL ? snprintf(ctx->path + mark, room, fmt, key) : snprintf(ctx->path + mark, room, fmt, index);

    ctx->path_len = (size_t)n < room ? mark + n : sizeof(ctx->path) - 1;
    return mark;
}

size_t h2p_cfg_path_push_key(h2p_cfg_ctx_t *ctx, const char *key)
{
    return path_append(ctx, ctx->path_len == 0 ? "%s" : ".%s", key, 0);
}

size_t h2p_cfg_path_push_index(h2p_cfg_ctx_t *ctx, size_t index)
{
    return path_append(ctx, "[%zu]", NULL, index);
}

void h2p_cfg_path_pop(h2p_cfg_ctx_t *ctx, size_t mark)
{
    ctx->path_len = mark;
    ctx->path[mark] = '\0';
}

/* ---- name sets ---------------------------------------------------------------------------- */

static size_t hash_name(const char *s)
{
    size_t h = 14695981039346656037u; /* FNV-1a */
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

size_t h2p_cfg_names_put(h2p_cfg_names_t *set, const char *name, size_t value)
{
    size_t slot;

    if ((set->count + 1) * 2 > set->capacity) {
        h2p_cfg_names_t grown = {NULL, NULL, set->capacity != 0 ? set->capacity * 2 : 16, 0};
        grown.names = h2p_cfg_xmalloc(grown.capacity * sizeof(*grown.names));
        grown.values = h2p_cfg_xmalloc(grown.capacity * sizeof(*grown.values));
        memset(grown.names, 0, grown.capacity * sizeof(*grown.names));
        for (size_t i = 0; i < set->capacity; i++)
            if (set->names[i] != NULL)
                h2p_cfg_names_put(&grown, set->names[i], set->values[i]);
        h2p_cfg_names_free(set);
        *set = grown;
    }
    for (slot = hash_name(name) & (set->capacity - 1); set->names[slot] != NULL; slot = (slot + 1) & (set->capacity - 1))
        if (strcmp(set->names[slot], name) == 0)
            return set->values[slot];
    set->names[slot] = name;
    set->values[slot] = value;
    set->count++;
    return SIZE_MAX;
}

void h2p_cfg_names_free(h2p_cfg_names_t *set)
{
    free(set->names);
    free(set->values);
    memset(set, 0, sizeof(*set));
}

/* For every map of `doc` with a repeated key: for each pair, the index of the first pair with
 * its key (SIZE_MAX for a first one).  Found once per document, so that a map of many keys is
 * not checked pair against pair. */
static size_t **find_duplicate_keys(yaml_document_t *doc)
{
    size_t num_nodes = doc->nodes.top - doc->nodes.start;
    size_t **dups = h2p_cfg_xmalloc((num_nodes + 1) * sizeof(*dups));
    h2p_cfg_names_t keys = {NULL, NULL, 0, 0};

    memset(dups, 0, (num_nodes + 1) * sizeof(*dups));
    for (size_t n = 0; n < num_nodes; n++) {
        yaml_node_t *map = doc->nodes.start + n;
        size_t count = h2p_cfg_map_size(map);
        if (count < 2)
            continue;
        for (size_t i = 0; i < count; i++) {
            yaml_node_t *key = yaml_document_get_node(doc, map->data.mapping.pairs.start[i].key);
            size_t first;
            if (key == NULL || key->type != YAML_SCALAR_NODE ||
                (first = h2p_cfg_names_put(&keys, (const char *)key->data.scalar.value, i)) == SIZE_MAX)
                continue;
            if (dups[n] == NULL) {
                dups[n] = h2p_cfg_xmalloc(count * sizeof(**dups));
                for (size_t j = 0; j < count; j++)
                    dups[n][j] = SIZE_MAX;
            }
            dups[n][i] = first;
        }
        h2p_cfg_names_free(&keys);
    }
    return dups;
}

void h2p_cfg_free_duplicate_keys(yaml_document_t *doc, size_t **dups)
{
    if (dups == NULL)
        return;
    for (size_t n = 0; n < (size_t)(doc->nodes.top - doc->nodes.start); n++)
        free(dups[n]);
    free(dups);
}

/* ---- YAML node helpers ------------------------------------------------------------------- */

yaml_node_t *h2p_cfg_node(h2p_cfg_ctx_t *ctx, int index)
{
    return yaml_document_get_node(ctx->doc, index);
}

int h2p_cfg_is_null(const yaml_node_t *node)
{
    const char *v;

    if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    v = (const char *)node->data.scalar.value;
    return *v == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

const char *h2p_cfg_node_type(const yaml_node_t *node)
{
    switch (node->type) {
    case YAML_MAPPING_NODE:
        return "a map";
    case YAML_SEQUENCE_NODE:
        return "a list";
    default:
        return h2p_cfg_is_null(node) ? "nothing" : "a single value";
    }
}

int h2p_cfg_expect_map(h2p_cfg_ctx_t *ctx, yaml_node_t *node)
{
    if (node->type == YAML_MAPPING_NODE || h2p_cfg_is_null(node))
        return 1;
    h2p_cfg_error(ctx, node, "expected a map, got %s", h2p_cfg_node_type(node));
    return 0;
}

int h2p_cfg_expect_seq(h2p_cfg_ctx_t *ctx, yaml_node_t *node)
{
    if (node->type == YAML_SEQUENCE_NODE || h2p_cfg_is_null(node))
        return 1;
    h2p_cfg_error(ctx, node, "expected a list, got %s", h2p_cfg_node_type(node));
    return 0;
}

size_t h2p_cfg_map_size(const yaml_node_t *node)
{
    return node->type == YAML_MAPPING_NODE ? node->data.mapping.pairs.top - node->data.mapping.pairs.start : 0;
}

size_t h2p_cfg_seq_size(const yaml_node_t *node)
{
    return node->type == YAML_SEQUENCE_NODE ? node->data.sequence.items.top - node->data.sequence.items.start : 0;
}

static const char *scalar_key(yaml_node_t *node)
{
    return node != NULL && node->type == YAML_SCALAR_NODE ? (const char *)node->data.scalar.value : NULL;
}

yaml_node_t *h2p_cfg_map_get(h2p_cfg_ctx_t *ctx, yaml_node_t *map, const char *name)
{
    for (size_t i = 0; i < h2p_cfg_map_size(map); i++) {
        yaml_node_pair_t *pair = map->data.mapping.pairs.start + i;
        const char *key = scalar_key(h2p_cfg_node(ctx, pair->key));
        if (key != NULL && strcmp(key, name) == 0)
            return h2p_cfg_node(ctx, pair->value);
    }
    return NULL;
}

const char *h2p_cfg_map_key(h2p_cfg_ctx_t *ctx, yaml_node_t *map, size_t i, yaml_node_t **key_node, yaml_node_t **value)
{
    yaml_node_pair_t *pair = map->data.mapping.pairs.start + i;
    const char *key;

    *key_node = h2p_cfg_node(ctx, pair->key);
    *value = h2p_cfg_node(ctx, pair->value);
    if ((key = scalar_key(*key_node)) == NULL) {
        h2p_cfg_error(ctx, *key_node, "a key must be a single value, got %s", h2p_cfg_node_type(*key_node));
        return NULL;
    }
    return key;
}

const char *h2p_cfg_map_entry(h2p_cfg_ctx_t *ctx, yaml_node_t *map, size_t i, yaml_node_t **key_node, yaml_node_t **value)
{
    const char *key = h2p_cfg_map_key(ctx, map, i, key_node, value);

    size_t *first = ctx->duplicate_keys != NULL ? ctx->duplicate_keys[map - ctx->doc->nodes.start] : NULL;

    if (key == NULL)
        return NULL;
    if (first != NULL && first[i] != SIZE_MAX) {
        yaml_node_t *earlier = h2p_cfg_node(ctx, map->data.mapping.pairs.start[first[i]].key);
        size_t mark = h2p_cfg_path_push_key(ctx, key);
        h2p_cfg_error(ctx, *key_node, "duplicate key \"%s\" (first at line %zu)", key, earlier->start_mark.line + 1);
        h2p_cfg_path_pop(ctx, mark);
        return NULL;
    }
    return key;
}

/* ---- scalar conversions ------------------------------------------------------------------ */

const char *h2p_cfg_scalar(h2p_cfg_ctx_t *ctx, yaml_node_t *node)
{
    const char *value;

    if (node->type != YAML_SCALAR_NODE) {
        h2p_cfg_error(ctx, node, "expected a single value, got %s", h2p_cfg_node_type(node));
        return NULL;
    }
    value = (const char *)node->data.scalar.value;
    if (strlen(value) != node->data.scalar.length) {
        h2p_cfg_error(ctx, node, "value contains a NUL character");
        return NULL;
    }
    return value;
}

char *h2p_cfg_string(h2p_cfg_ctx_t *ctx, yaml_node_t *node)
{
    const char *value = h2p_cfg_scalar(ctx, node);

    if (value == NULL)
        return NULL;
    if (*value == '\0' || h2p_cfg_is_null(node)) {
        h2p_cfg_error(ctx, node, "missing value (empty)");
        return NULL;
    }
    return h2p_cfg_strdup(ctx->arena, value);
}

int h2p_cfg_bool(h2p_cfg_ctx_t *ctx, yaml_node_t *node, int *out)
{
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    const char *value = h2p_cfg_scalar(ctx, node);

    if (value == NULL)
        return -1;
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(value, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(value, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    h2p_cfg_error(ctx, node, "bad boolean \"%s\" (use true or false)", value);
    return -1;
}

static int check_range(h2p_cfg_ctx_t *ctx, yaml_node_t *node, uint64_t value, uint64_t min, uint64_t max)
{
    const char *text = (const char *)node->data.scalar.value;

    if (max == 0)
        max = UINT64_MAX;
    if (value >= min && value <= max)
        return 0;
    if (max == UINT64_MAX)
        h2p_cfg_error(ctx, node, "\"%s\" is out of range (must be at least %llu)", text, (unsigned long long)min);
    else
        h2p_cfg_error(ctx, node, "\"%s\" is out of range (%llu..%llu)", text, (unsigned long long)min, (unsigned long long)max);
    return -1;
}

int h2p_cfg_number(h2p_cfg_ctx_t *ctx, yaml_node_t *node, uint64_t min, uint64_t max, uint64_t *out)
{
    const char *value = h2p_cfg_scalar(ctx, node);
    uint64_t number = 0;

    if (value == NULL)
        return -1;
    if (*value == '\0') {
        h2p_cfg_error(ctx, node, "expected a number, got nothing");
        return -1;
    }
    for (const char *p = value; *p != '\0'; p++) {
        if (*p < '0' || *p > '9') {
            h2p_cfg_error(ctx, node, "bad number \"%s\"", value);
            return -1;
        }
        if (number > (UINT64_MAX - (*p - '0')) / 10) {
            h2p_cfg_error(ctx, node, "number \"%s\" is out of range", value);
            return -1;
        }
        number = number * 10 + (*p - '0');
    }
    if (check_range(ctx, node, number, min, max) != 0)
        return -1;
    *out = number;
    return 0;
}

int h2p_cfg_duration(h2p_cfg_ctx_t *ctx, yaml_node_t *node, uint64_t min, uint64_t max, uint64_t *out)
{
    const char *value = h2p_cfg_scalar(ctx, node);
    uint64_t ms;
    int ret;

    if (value == NULL)
        return -1;
    if ((ret = h2p_parse_duration_ms(value, &ms)) != 0) {
        if (ret == -2)
            h2p_cfg_error(ctx, node, "duration \"%s\" is too large", value);
        else
            h2p_cfg_error(ctx, node, "bad duration \"%s\" (use a number with ms, s, m or h)", value);
        return -1;
    }
    if (check_range(ctx, node, ms, min, max) != 0)
        return -1;
    *out = ms;
    return 0;
}

int h2p_cfg_size(h2p_cfg_ctx_t *ctx, yaml_node_t *node, uint64_t min, uint64_t max, uint64_t *out)
{
    const char *value = h2p_cfg_scalar(ctx, node);
    uint64_t bytes;
    int ret;

    if (value == NULL)
        return -1;
    if ((ret = h2p_parse_size(value, &bytes)) != 0) {
        if (ret == -2)
            h2p_cfg_error(ctx, node, "size \"%s\" is too large (overflow)", value);
        else
            h2p_cfg_error(ctx, node, "bad size \"%s\" (use a number with B, KiB, MiB, GiB, KB, MB or GB)", value);
        return -1;
    }
    if (check_range(ctx, node, bytes, min, max) != 0)
        return -1;
    *out = bytes;
    return 0;
}

char *h2p_cfg_path(h2p_cfg_ctx_t *ctx, yaml_node_t *node, int must_be)
{
    const char *value = h2p_cfg_scalar(ctx, node);
    char *joined, *path;
    struct stat st;

    if (value == NULL)
        return NULL;
    if (*value == '\0' || h2p_cfg_is_null(node)) {
        h2p_cfg_error(ctx, node, "missing path (empty)");
        return NULL;
    }
    joined = h2p_cfg_alloc(ctx->arena, strlen(ctx->file_dir) + strlen(value) + 2, 1);
    if (value[0] == '/')
        strcpy(joined, value);
    else
        sprintf(joined, "%s/%s", ctx->file_dir, value);
    path = h2p_cfg_alloc(ctx->arena, strlen(joined) + 2, 1);
    h2p_cfg_clean_path(joined, path);

    if (!ctx->check_files || must_be == H2P_CFG_ANY_PATH)
        return path;
    if (stat(path, &st) != 0) {
        if (errno == EACCES && must_be == H2P_CFG_PRIVILEGED_FILE)
            return path;
        h2p_cfg_error(ctx, node, "cannot access \"%s\": %s", path, strerror(errno));
        return NULL;
    }
    if (must_be == H2P_CFG_DIRECTORY && !S_ISDIR(st.st_mode)) {
        h2p_cfg_error(ctx, node, "\"%s\" is not a directory", path);
        return NULL;
    }
    if (must_be == H2P_CFG_PRIVILEGED_FILE && !S_ISREG(st.st_mode)) {
        h2p_cfg_error(ctx, node, "\"%s\" is not a regular file", path);
        return NULL;
    }
    if (must_be == H2P_CFG_REGULAR_FILE) {
        if (!S_ISREG(st.st_mode)) {
            h2p_cfg_error(ctx, node, "\"%s\" is not a regular file", path);
            return NULL;
        }
        if (access(path, R_OK) != 0) {
            h2p_cfg_error(ctx, node, "cannot read \"%s\": %s", path, strerror(errno));
            return NULL;
        }
    }
    return path;
}

static void change_case(char *s, unsigned flags)
{
    for (; *s != '\0'; s++) {
        if ((flags & (H2P_CFG_LOWER | H2P_CFG_EXTENSION)) && *s >= 'A' && *s <= 'Z')
            *s += 'a' - 'A';
        else if ((flags & H2P_CFG_UPPER) && *s >= 'a' && *s <= 'z')
            *s -= 'a' - 'A';
    }
}

int h2p_cfg_strlist(h2p_cfg_ctx_t *ctx, yaml_node_t *node, unsigned flags, h2p_strlist_t *out)
{
    size_t count = h2p_cfg_seq_size(node), errors = h2p_cfg_error_count(ctx);

    if (!h2p_cfg_expect_seq(ctx, node))
        return -1;
    if (count == 0 && (flags & H2P_CFG_NONEMPTY)) {
        h2p_cfg_error(ctx, node, "the list must not be empty");
        return -1;
    }
    out->items = h2p_cfg_alloc(ctx->arena, count + 1, sizeof(char *));
    out->count = 0;
    for (size_t i = 0; i < count; i++) {
        size_t mark = h2p_cfg_path_push_index(ctx, i);
        yaml_node_t *item = h2p_cfg_node(ctx, node->data.sequence.items.start[i]);
        char *s = h2p_cfg_string(ctx, item);
        if (s != NULL && (flags & H2P_CFG_EXTENSION) && s[0] != '.') {
            char *dotted = h2p_cfg_alloc(ctx->arena, strlen(s) + 2, 1);
            sprintf(dotted, ".%s", s);
            s = dotted;
        }
        if (s != NULL && (flags & H2P_CFG_EXTENSION) && (strchr(s, '/') != NULL || s[1] == '\0')) {
            h2p_cfg_error(ctx, item, "bad file extension \"%s\"", s);
            s = NULL;
        }
        if (s != NULL) {
            change_case(s, flags);
            out->items[out->count++] = s;
        }
        h2p_cfg_path_pop(ctx, mark);
    }
    return h2p_cfg_error_count(ctx) == errors ? 0 : -1;
}

void h2p_cfg_strlist_set(h2p_cfg_ctx_t *ctx, h2p_strlist_t *list, const char *const *items, size_t count)
{
    list->items = h2p_cfg_alloc(ctx->arena, count + 1, sizeof(char *));
    for (size_t i = 0; i < count; i++)
        list->items[i] = h2p_cfg_strdup(ctx->arena, items[i]);
    list->count = count;
}

/* ---- key tables -------------------------------------------------------------------------- */

static int parse_enum(h2p_cfg_ctx_t *ctx, yaml_node_t *node, const char *const *names)
{
    const char *value = h2p_cfg_scalar(ctx, node);
    char expected[256] = "";

    if (value == NULL)
        return -1;
    for (int i = 0; names[i] != NULL; i++) {
        if (strcmp(value, names[i]) == 0)
            return i;
        snprintf(expected + strlen(expected), sizeof(expected) - strlen(expected), "%s%s", i == 0 ? "" : ", ", names[i]);
    }
    h2p_cfg_error(ctx, node, "bad value \"%s\" (expected one of: %s)", value, expected);
    return -1;
}

/* `server` keys may be split over files but must not be set twice: remember each leaf. */
static void track_key(h2p_cfg_ctx_t *ctx, yaml_node_t *key_node)
{
    for (size_t i = 0; i < ctx->num_seen; i++) {
        if (strcmp(ctx->seen[i].path, ctx->path) == 0) {
            h2p_origin_t *first = &ctx->seen[i].origin;
            h2p_cfg_error(ctx, key_node, "set twice (first at %s:%u:%u)", first->file, first->line, first->column);
            return;
        }
    }
    ctx->seen = h2p_cfg_xrealloc(ctx->seen, (ctx->num_seen + 1) * sizeof(*ctx->seen));
    ctx->seen[ctx->num_seen].path = strdup(ctx->path);
    ctx->seen[ctx->num_seen].origin = h2p_cfg_origin(ctx, key_node);
    if (ctx->seen[ctx->num_seen].path == NULL)
        abort();
    ctx->num_seen++;
}

/* H2P_CFG_ENUM stores an int into enum fields */
_Static_assert(sizeof(h2p_activation_t) == sizeof(int) && sizeof(h2p_resource_t) == sizeof(int), "enums are int sized");

static void parse_value(h2p_cfg_ctx_t *ctx, yaml_node_t *node, void *base, const h2p_cfg_key_t *key)
{
    void *field = (char *)base + key->offset;
    uint64_t u64;
    char *s;
    int i;

    switch (key->kind) {
    case H2P_CFG_BOOL:
        h2p_cfg_bool(ctx, node, field);
        break;
    case H2P_CFG_UINT:
        if (h2p_cfg_number(ctx, node, key->min, key->max != 0 ? key->max : UINT_MAX, &u64) == 0)
            *(unsigned *)field = u64;
        break;
    case H2P_CFG_U64:
        h2p_cfg_number(ctx, node, key->min, key->max, field);
        break;
    case H2P_CFG_DURATION:
        h2p_cfg_duration(ctx, node, key->min, key->max, field);
        break;
    case H2P_CFG_SIZE:
        h2p_cfg_size(ctx, node, key->min, key->max, field);
        break;
    case H2P_CFG_STRING:
        if ((s = h2p_cfg_string(ctx, node)) != NULL)
            *(char **)field = s;
        break;
    case H2P_CFG_PATH:
    case H2P_CFG_FILE:
    case H2P_CFG_KEY_FILE:
    case H2P_CFG_DIR:
        s = h2p_cfg_path(ctx, node,
                         key->kind == H2P_CFG_KEY_FILE ? H2P_CFG_PRIVILEGED_FILE
                         : key->kind == H2P_CFG_FILE   ? H2P_CFG_REGULAR_FILE
                         : key->kind == H2P_CFG_DIR    ? H2P_CFG_DIRECTORY
                                                       : H2P_CFG_ANY_PATH);
        if (s != NULL)
            *(char **)field = s;
        break;
    case H2P_CFG_STRLIST:
        h2p_cfg_strlist(ctx, node, key->flags, field);
        break;
    case H2P_CFG_ENUM:
        if ((i = parse_enum(ctx, node, key->arg)) >= 0)
            memcpy(field, &i, sizeof(i));
        break;
    case H2P_CFG_ENUM_STRING:
        if ((i = parse_enum(ctx, node, key->arg)) >= 0)
            *(char **)field = h2p_cfg_strdup(ctx->arena, ((const char *const *)key->arg)[i]);
        break;
    case H2P_CFG_MAP:
        h2p_cfg_parse_map(ctx, node, key->arg, base);
        break;
    case H2P_CFG_CUSTOM:
        key->parse(ctx, node, base, key);
        break;
    }
}

void h2p_cfg_parse_map(h2p_cfg_ctx_t *ctx, yaml_node_t *node, const h2p_cfg_key_t *keys, void *base)
{
    if (!h2p_cfg_expect_map(ctx, node))
        return;

    for (size_t i = 0; i < h2p_cfg_map_size(node); i++) {
        yaml_node_t *key_node, *value;
        const char *name = h2p_cfg_map_entry(ctx, node, i, &key_node, &value);
        const h2p_cfg_key_t *key;
        size_t mark;

        if (name == NULL)
            continue;
        for (key = keys; key->name != NULL && strcmp(key->name, name) != 0; key++)
            ;
        mark = h2p_cfg_path_push_key(ctx, name);
        if (key->name == NULL) {
            h2p_cfg_error(ctx, key_node, "unknown key \"%s\"", name);
        } else {
            if (ctx->track_keys && key->kind != H2P_CFG_MAP)
                track_key(ctx, key_node);
            parse_value(ctx, value, base, key);
        }
        h2p_cfg_path_pop(ctx, mark);
    }

    for (const h2p_cfg_key_t *key = keys; key->name != NULL; key++) {
        if ((key->flags & H2P_CFG_REQUIRED) && h2p_cfg_map_get(ctx, node, key->name) == NULL)
            h2p_cfg_error(ctx, node, "missing required key \"%s\"", key->name);
    }
}

/* ---- reading a file, with limits ---------------------------------------------------------- */

/*
 * A configuration file is read whole, checked against the limits below with libyaml's event
 * parser, and only then loaded as a document.  The limits keep a hostile or broken file from
 * holding the loader (and a reload, the supervisor) for minutes or eating the memory:
 *   - size: libyaml's work grows with it;
 *   - nesting depth: libyaml's scanner is quadratic in it ("[[[[..." 100,000 deep takes half a
 *     minute), and the check stops the events long before that;
 *   - anchors and aliases: the loader looks anchors up linearly, and an alias re-uses a whole
 *     subtree, so aliases of aliases grow exponentially ("billion laughs"): what the aliases
 *     would copy in is counted, and the count is capped.
 */

static void report_yaml_error(h2p_cfg_ctx_t *ctx, yaml_parser_t *parser)
{
    const char *problem = parser->problem != NULL ? parser->problem : "malformed YAML";

    if (parser->error == YAML_READER_ERROR) {
        h2p_cfg_errors_add(ctx->errors, "%s:1:1: YAML syntax error: %s at byte %zu", ctx->file, problem, parser->problem_offset);
    } else if (parser->context != NULL) {
        h2p_cfg_errors_add(ctx->errors, "%s:%zu:%zu: YAML syntax error: %s %s (line %zu)", ctx->file, parser->problem_mark.line + 1,
                           parser->problem_mark.column + 1, problem, parser->context, parser->context_mark.line + 1);
    } else {
        h2p_cfg_errors_add(ctx->errors, "%s:%zu:%zu: YAML syntax error: %s", ctx->file, parser->problem_mark.line + 1,
                           parser->problem_mark.column + 1, problem);
    }
}

/* Reads at most `cap` bytes of `path`; returns 0, 1 when the file is larger, -1 (errno) on failure. */
static int read_capped(const char *path, size_t cap, unsigned char **out, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    unsigned char *buf;
    size_t n;

    if (fp == NULL)
        return -1;
    buf = h2p_cfg_xmalloc(cap + 1);
    n = fread(buf, 1, cap + 1, fp);
    if (ferror(fp)) {
        int saved = errno != 0 ? errno : EIO;
        free(buf);
        fclose(fp);
        errno = saved;
        return -1;
    }
    fclose(fp);
    if (n > cap) {
        free(buf);
        return 1;
    }
    *out = buf;
    *len = n;
    return 0;
}

typedef struct yaml_anchor {
    char *name;
    size_t nodes; /* the anchored node with everything in it, aliases expanded */
    int complete; /* 0 while its node is still being read: an alias to it would be a cycle */
} yaml_anchor_t;

typedef struct yaml_limits {
    h2p_cfg_ctx_t *ctx;
    size_t stack[H2P_CFG_MAX_DEPTH + 1]; /* nodes of each open collection so far */
    int stack_anchor[H2P_CFG_MAX_DEPTH + 1];
    size_t depth;
    yaml_anchor_t *anchors;
    size_t num_anchors, num_aliases, expanded;
} yaml_limits_t;

static void limit_error(yaml_limits_t *l, const yaml_mark_t *mark, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void limit_error(yaml_limits_t *l, const yaml_mark_t *mark, const char *fmt, ...)
{
    va_list args;
    char *text;
    int len;

    va_start(args, fmt);
    len = vsnprintf(NULL, 0, fmt, args);
    va_end(args);
    text = h2p_cfg_xmalloc(len + 1);
    va_start(args, fmt);
    vsnprintf(text, len + 1, fmt, args);
    va_end(args);
    h2p_cfg_errors_add(l->ctx->errors, "%s:%zu:%zu: %s", l->ctx->file, mark->line + 1, mark->column + 1, text);
    free(text);
}

/* A node of `nodes` nodes is complete: it counts in its parent. */
static void add_to_parent(yaml_limits_t *l, size_t nodes)
{
    if (l->depth != 0)
        l->stack[l->depth - 1] += nodes;
}

static int add_anchor(yaml_limits_t *l, const yaml_event_t *ev, const yaml_char_t *name, size_t nodes, int complete)
{
    if (name == NULL)
        return -1;
    if (l->num_anchors == H2P_CFG_MAX_ANCHORS) {
        limit_error(l, &ev->start_mark, "more than %d YAML anchors in one file", H2P_CFG_MAX_ANCHORS);
        return -2;
    }
    l->anchors = h2p_cfg_xrealloc(l->anchors, (l->num_anchors + 1) * sizeof(*l->anchors));
    l->anchors[l->num_anchors] = (yaml_anchor_t){strdup((const char *)name), nodes, complete};
    if (l->anchors[l->num_anchors].name == NULL)
        abort();
    return (int)l->num_anchors++;
}

static int on_alias(yaml_limits_t *l, const yaml_event_t *ev)
{
    const char *name = (const char *)ev->data.alias.anchor;
    yaml_anchor_t *anchor = NULL;

    if (++l->num_aliases > H2P_CFG_MAX_ALIASES) {
        limit_error(l, &ev->start_mark, "more than %d YAML aliases in one file", H2P_CFG_MAX_ALIASES);
        return -1;
    }
    for (size_t i = l->num_anchors; i-- != 0;) /* the latest anchor of that name */
        if (strcmp(l->anchors[i].name, name) == 0) {
            anchor = &l->anchors[i];
            break;
        }
    if (anchor == NULL)
        return 0; /* undefined: the loader reports it */
    if (!anchor->complete) {
        limit_error(l, &ev->start_mark, "YAML alias *%s refers to a node that contains it", name);
        return -1;
    }
    l->expanded += anchor->nodes;
    if (l->expanded > H2P_CFG_MAX_ALIAS_NODES) {
        limit_error(l, &ev->start_mark,
                    "YAML aliases expand to more than %d nodes (aliases of aliases grow exponentially); write the settings out",
                    H2P_CFG_MAX_ALIAS_NODES);
        return -1;
    }
    add_to_parent(l, anchor->nodes);
    return 0;
}

/* 0: within the limits, or a syntax error the loader will report; -1: reported. */
static int on_event(yaml_limits_t *l, const yaml_event_t *ev)
{
    int anchor;

    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        if ((anchor = add_anchor(l, ev, ev->data.scalar.anchor, 1, 1)) == -2)
            return -1;
        add_to_parent(l, 1);
        return 0;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        if (l->depth == H2P_CFG_MAX_DEPTH) {
            limit_error(l, &ev->start_mark, "nested deeper than %d levels", H2P_CFG_MAX_DEPTH);
            return -1;
        }
        anchor = add_anchor(
            l, ev, ev->type == YAML_SEQUENCE_START_EVENT ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor, 0, 0);
        if (anchor == -2)
            return -1;
        l->stack_anchor[l->depth] = anchor;
        l->stack[l->depth++] = 1;
        return 0;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        if (l->depth == 0)
            return 0;
        l->depth--;
        if (l->stack_anchor[l->depth] >= 0) {
            l->anchors[l->stack_anchor[l->depth]].nodes = l->stack[l->depth];
            l->anchors[l->stack_anchor[l->depth]].complete = 1;
        }
        add_to_parent(l, l->stack[l->depth]);
        return 0;
    case YAML_ALIAS_EVENT:
        return on_alias(l, ev);
    default:
        return 0;
    }
}

static int check_limits(h2p_cfg_ctx_t *ctx, const unsigned char *text, size_t len)
{
    yaml_limits_t l;
    yaml_parser_t parser;
    yaml_event_t ev;
    int ret = 0, done = 0;

    memset(&l, 0, sizeof(l));
    l.ctx = ctx;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, text, len);
    while (!done && ret == 0 && yaml_parser_parse(&parser, &ev)) {
        done = ev.type == YAML_STREAM_END_EVENT;
        ret = on_event(&l, &ev);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    for (size_t i = 0; i < l.num_anchors; i++)
        free(l.anchors[i].name);
    free(l.anchors);
    return ret;
}

int h2p_cfg_load_yaml_file(h2p_cfg_ctx_t *ctx, const char *path, yaml_document_t *doc, size_t ***duplicate_keys)
{
    unsigned char *text;
    size_t len, room = ctx->total_bytes < H2P_CFG_MAX_TOTAL_SIZE ? H2P_CFG_MAX_TOTAL_SIZE - ctx->total_bytes : 0;
    yaml_parser_t parser;
    yaml_document_t extra;
    int ret;

    switch (read_capped(path, room < H2P_CFG_MAX_FILE_SIZE ? room : H2P_CFG_MAX_FILE_SIZE, &text, &len)) {
    case -1:
        h2p_cfg_errors_add(ctx->errors, "%s: cannot open: %s", ctx->file, strerror(errno));
        return -1;
    case 1:
        if (room < H2P_CFG_MAX_FILE_SIZE)
            h2p_cfg_errors_add(ctx->errors, "%s:1:1: the configuration files are larger than %d MiB together", ctx->file,
                               H2P_CFG_MAX_TOTAL_SIZE >> 20);
        else
            h2p_cfg_errors_add(ctx->errors, "%s:1:1: the file is larger than %d MiB", ctx->file, H2P_CFG_MAX_FILE_SIZE >> 20);
        return -1;
    }
    ctx->total_bytes += len;
    uint64_t len64 = len;
    EVP_DigestUpdate(ctx->digest, path, strlen(path) + 1);
    EVP_DigestUpdate(ctx->digest, &len64, sizeof(len64));
    EVP_DigestUpdate(ctx->digest, text, len);
    if (check_limits(ctx, text, len) != 0) {
        free(text);
        return -1;
    }
    ret = -1;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, text, len);
    if (!yaml_parser_load(&parser, doc)) {
        report_yaml_error(ctx, &parser);
        goto out;
    }
    /* one document per file: a second one would be silently ignored otherwise */
    if (!yaml_parser_load(&parser, &extra)) {
        report_yaml_error(ctx, &parser);
        yaml_document_delete(doc);
        goto out;
    }
    if (yaml_document_get_root_node(&extra) != NULL) {
        h2p_cfg_errors_add(ctx->errors, "%s:%d:%d: more than one YAML document in a file", ctx->file,
                           (int)extra.start_mark.line + 1, (int)extra.start_mark.column + 1);
        yaml_document_delete(&extra);
        yaml_document_delete(doc);
        goto out;
    }
    yaml_document_delete(&extra);
    *duplicate_keys = find_duplicate_keys(doc);
    ret = 0;
out:
    yaml_parser_delete(&parser);
    free(text);
    return ret;
}

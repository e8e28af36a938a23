/*
 * FastCGI name-value pairs (the body of PARAMS, GET_VALUES and GET_VALUES_RESULT records).
 * Checks, besides what the sanitizers see: every pair lies inside the input, and a block that
 * decodes is decoded to the same pairs again after h2p_fcgi_nv_size / h2p_fcgi_nv_write have
 * encoded them (in no more bytes than the input, as the encoder writes the shortest lengths).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "handlers/fcgi_proto.h"

typedef struct pair {
    const char *name, *value;
    size_t name_len, value_len;
} pair_t;

typedef struct pairs {
    const char *start, *end;
    pair_t *items;
    size_t count, capacity;
    size_t next; /* while comparing: the pair expected next */
} pairs_t;

static int collect(const char *name, size_t name_len, const char *value, size_t value_len, void *ctx)
{
    pairs_t *pairs = ctx;
    if (name < pairs->start || name_len > (size_t)(pairs->end - name) || value != name + name_len ||
        value_len > (size_t)(pairs->end - value))
        abort();
    if (pairs->count == pairs->capacity) {
        pairs->capacity = pairs->capacity != 0 ? pairs->capacity * 2 : 16;
        pairs->items = realloc(pairs->items, pairs->capacity * sizeof(*pairs->items));
    }
    pairs->items[pairs->count++] = (pair_t){name, value, name_len, value_len};
    return 0;
}

static int compare(const char *name, size_t name_len, const char *value, size_t value_len, void *ctx)
{
    pairs_t *pairs = ctx;
    if (pairs->next == pairs->count)
        abort();
    const pair_t *want = pairs->items + pairs->next++;
    if (name_len != want->name_len || value_len != want->value_len || memcmp(name, want->name, name_len) != 0 ||
        memcmp(value, want->value, value_len) != 0)
        abort();
    return 0;
}

/* Stops at the pair numbered by ctx: the decoder must report the stop as -1. */
static int stop_at(const char *name, size_t name_len, const char *value, size_t value_len, void *ctx)
{
    size_t *left = ctx;
    return (*left)-- == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *src = (const char *)data;
    pairs_t pairs = {src, src + size, NULL, 0, 0, 0};
    if (h2p_fcgi_nv_decode(src, size, collect, &pairs) == 0) {
        size_t encoded_len = 0;
        for (size_t i = 0; i != pairs.count; ++i)
            encoded_len += h2p_fcgi_nv_size(pairs.items[i].name_len, pairs.items[i].value_len);
        if (encoded_len > size)
            abort();
        char *encoded = malloc(encoded_len + 1), *end = encoded;
        for (size_t i = 0; i != pairs.count; ++i)
            end = h2p_fcgi_nv_write(end, pairs.items[i].name, pairs.items[i].name_len, pairs.items[i].value,
                                    pairs.items[i].value_len);
        if ((size_t)(end - encoded) != encoded_len)
            abort();
        if (h2p_fcgi_nv_decode(encoded, encoded_len, compare, &pairs) != 0 || pairs.next != pairs.count)
            abort();
        free(encoded);
        if (pairs.count != 0) {
            size_t stop = pairs.count - 1;
            if (h2p_fcgi_nv_decode(src, size, stop_at, &stop) != -1)
                abort();
        }
    }
    free(pairs.items);
    return 0;
}

/*
 * Redirect rules (native-modules/match.c): a `from` wildcard pattern matched against the
 * request's path, then `to` expanded with the captures and the client's query string, as
 * native-modules/redirect.c does.
 *
 * Input: from NUL to NUL query NUL path (the path last: it may hold any byte).  A `to` with a
 * control character is skipped, as the configuration refuses it.  Checks, besides the
 * sanitizers: captures lie in the path, in order, and the pattern with its stars replaced by
 * them is the path again; the expansion has the same length whatever buffer it gets, never
 * writes past that buffer, and never carries a control byte into the Location.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "native-modules/match.h"

static const char *next_part(const char **p, const char *end, size_t *len)
{
    const char *start = *p, *nul = memchr(start, '\0', (size_t)(end - start));
    if (nul == NULL)
        return NULL;
    *len = (size_t)(nul - start);
    *p = nul + 1;
    return start;
}

/* A heap copy of exactly len bytes: a read past its end is seen. */
static char *exact_copy(const char *src, size_t len)
{
    char *copy = malloc(len != 0 ? len : 1);
    if (len != 0)
        memcpy(copy, src, len);
    return copy;
}

static void check_captures(const char *from, size_t from_len, const char *path, size_t path_len, const h2p_capture_t *captures,
                           size_t num_captures)
{
    size_t stars = 0, prev_end = 0;
    for (size_t i = 0; i != from_len; ++i)
        stars += from[i] == '*';
    if (num_captures != (stars < H2P_WILDCARD_MAX_CAPTURES ? stars : H2P_WILDCARD_MAX_CAPTURES))
        abort();
    for (size_t k = 0; k != num_captures; ++k) {
        if (captures[k].offset < prev_end || captures[k].offset > path_len || captures[k].len > path_len - captures[k].offset)
            abort();
        prev_end = captures[k].offset + captures[k].len;
    }
    if (stars > H2P_WILDCARD_MAX_CAPTURES)
        return; /* the captures past the ninth are not recorded: nothing to rebuild the path from */
    char *rebuilt = malloc(path_len + 1);
    size_t len = 0, k = 0;
    for (size_t i = 0; i != from_len; ++i) {
        if (from[i] == '*') {
            if (len + captures[k].len > path_len)
                abort();
            memcpy(rebuilt + len, path + captures[k].offset, captures[k].len);
            len += captures[k++].len;
        } else {
            if (len == path_len)
                abort();
            rebuilt[len++] = from[i];
        }
    }
    if (len != path_len || memcmp(rebuilt, path, path_len) != 0)
        abort();
    free(rebuilt);
}

static void check_expand(const char *to, size_t to_len, const char *path, const h2p_capture_t *captures, size_t num_captures,
                         const char *query, size_t query_len)
{
    size_t len = h2p_target_expand(NULL, 0, to, to_len, path, captures, num_captures, query, query_len);
    char *location = malloc(len != 0 ? len : 1);
    if (h2p_target_expand(location, len, to, to_len, path, captures, num_captures, query, query_len) != len)
        abort();
    for (size_t i = 0; i != len; ++i)
        if ((unsigned char)location[i] < 0x20 || location[i] == 0x7f)
            abort();
    free(location);
    /* a buffer too short is filled, never overrun, and the full length is still returned */
    size_t short_cap = len / 2;
    char *part = malloc(short_cap != 0 ? short_cap : 1);
    if (h2p_target_expand(part, short_cap, to, to_len, path, captures, num_captures, query, query_len) != len)
        abort();
    free(part);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    size_t from_len, to_len, query_len;
    const char *from = next_part(&p, end, &from_len);
    const char *to = from != NULL ? next_part(&p, end, &to_len) : NULL;
    const char *query = to != NULL ? next_part(&p, end, &query_len) : NULL;
    if (query == NULL)
        return 0;
    for (size_t i = 0; i != to_len; ++i)
        if ((unsigned char)to[i] < 0x20 || to[i] == 0x7f)
            return 0;
    size_t path_len = (size_t)(end - p);
    char *from_copy = exact_copy(from, from_len), *to_copy = exact_copy(to, to_len), *query_copy = exact_copy(query, query_len),
         *path = exact_copy(p, path_len);

    h2p_capture_t captures[H2P_WILDCARD_MAX_CAPTURES];
    size_t num_captures;
    if (h2p_wildcard_match(from_copy, from_len, path, path_len, captures, &num_captures)) {
        check_captures(from_copy, from_len, path, path_len, captures, num_captures);
        check_expand(to_copy, to_len, path, captures, num_captures, query_copy, query_len);
    }
    free(from_copy);
    free(to_copy);
    free(query_copy);
    free(path);
    return 0;
}

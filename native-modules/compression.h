/*
 * compression: IIS's static and dynamic compression (gzip, brotli) as a response-phase filter,
 * plus the precompressed siblings of static files (style.css.br, style.css.gz).
 */
#ifndef H2POOL_COMPRESSION_H
#define H2POOL_COMPRESSION_H

#include <h2o.h>
#include <sys/stat.h>

#include "frontend/config.h"

struct h2p_scope_rt;

/* modules.compression in a scope (compression_conf.c) */
typedef struct h2p_compression_conf {
    H2P_MODULE_HEAD;
    int dynamic, static_;
    h2p_strlist_t types;
    uint64_t min_size;
} h2p_compression_conf_t;

typedef enum h2p_content_coding { H2P_CODING_IDENTITY = 0, H2P_CODING_GZIP, H2P_CODING_BR } h2p_content_coding_t;

/* Quality values (0..1000) an Accept-Encoding header list gives each coding h2pool knows. */
typedef struct h2p_accept_encoding {
    unsigned gzip, br, identity;
} h2p_accept_encoding_t;

/* Parses every Accept-Encoding header of `headers` (RFC 9110 12.5.3: q-values, `*`, `identity`). */
void h2p_accept_encoding_parse(const h2o_headers_t *headers, h2p_accept_encoding_t *out);

/* The coding the client prefers among those it accepts (ties: br, then gzip); identity when none. */
h2p_content_coding_t h2p_accept_encoding_best(const h2p_accept_encoding_t *accepted);

/*
 * The coding a 200 response to `req` gets from the compression settings `m` if its type and
 * size qualify: what the output cache keys its entries on.  `is_static`: a static file (else
 * worker output).  Identity when the scope does not compress that kind of content.
 */
h2p_content_coding_t h2p_compression_negotiate(const h2p_modules_conf_t *m, h2o_req_t *req, int is_static);

typedef struct h2p_precompressed_choice {
    const char *coding; /* "br", "gzip" */
    const char *ext;    /* ".br", ".gz" */
} h2p_precompressed_choice_t;

/*
 * The precompressed siblings (`.br`, `.gz` next to the file) worth sending for a static file of
 * Content-Type `type`, best first: the client accepts the coding over identity and the scope
 * compresses static files of that type (never for a Range request).  Returns how many (0..2);
 * the static handler opens them beneath the root and sends one that is a regular file at least
 * as new as the file.
 */
size_t h2p_compression_precompressed_choices(h2o_req_t *req, const struct h2p_scope_rt *scope, h2o_iovec_t type,
                                             h2p_precompressed_choice_t out[2]);
/* The static handler sends the sibling of `coding` for a file of Content-Type `type`:
 * compression labels the response (Content-Encoding, Vary) instead of compressing it. */
void h2p_compression_precompressed_sent(h2o_req_t *req, h2o_iovec_t type, const char *coding);

/*
 * A static file's compressed copy (IIS's compressed-file cache, in memory): the one kept in this
 * scope for the file `st` at `physical` in the coding this request gets, a reference the caller
 * releases after sending its body as a 200 of Content-Type `type` with the file's ETag and
 * Last-Modified (compression labels it: Content-Encoding, Vary, a weak ETag), or NULL.  With
 * NULL, when the file qualifies and no other request is making its copy, the filter keeps what it
 * compresses of this whole file as the copy.  The caller answers a 304, HEAD and Range itself.
 */
struct h2p_cache_entry *h2p_compression_kept_copy(h2o_req_t *req, const struct h2p_scope_rt *scope, const char *physical,
                                                  const struct stat *st, h2o_iovec_t type);

/* Whether `filter` is the compression module's (the output cache's store goes right after it). */
int h2p_compression_is_filter(const h2o_filter_t *filter);

#endif

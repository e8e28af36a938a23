/*
 * compression: IIS's static and dynamic compression.  A response-phase filter compresses a
 * 200 response as it streams (gzip with zlib, brotli with libbrotlienc, both behind libh2o's
 * h2o_compress_context_t)
 * when the scope compresses that kind of content (`static`: files, `dynamic`: FastCGI and CGI
 * output), its Content-Type is listed in `types`, its length is unknown or at least `min_size`,
 * and the client accepts the coding (Accept-Encoding with q-values: `gzip;q=0` refuses gzip).
 *
 * Never compressed: a Range answer (206), a body that already has a Content-Encoding, HEAD,
 * 204 and 304 (no body), HTTP/1.0 (no chunked framing), Cache-Control: no-transform.  A
 * compressed response says `Vary: Accept-Encoding`, loses its Content-Length and its byte
 * ranges (Accept-Ranges: none), and its ETag becomes weak (W/"..."): the bytes differ from the
 * identity representation's, the resource does not.
 *
 * A static file with a sibling `file.br` or `file.gz` at least as new as the file is answered
 * with the sibling, labelled with the file's own Content-Type: this module says which siblings
 * the client takes (q-values), the static handler opens them beneath the root like the file
 * and sends them (ETag, 304, HEAD).
 *
 * Otherwise a static file is compressed once per coding, as IIS's static compression keeps its
 * compressed files: the filter keeps the bytes it compressed for a whole file as that file's
 * copy, in the output cache's store (one budget, least recently used out first), under the
 * file's path and coding and valid while the file is the one compressed (device, inode, size,
 * mtime); the static handler answers the next requests from the copy, without reading the file
 * or compressing.
 */
#include "native-modules/compression.h"

#include <brotli/encode.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "frontend/alloc.h"
#include "frontend/router.h"
#include "native-modules/cache_store.h"
#include "native-modules/module.h"

#define GZIP_LEVEL 1     /* on-the-fly: speed first, as nginx's gzip_comp_level and h2o's default */
#define BROTLI_QUALITY 1 /* likewise; smaller than gzip -1 at about the same speed */
#define BROTLI_WINDOW 19 /* 512 KiB: bounds the encoder's memory per response */

typedef struct compression_filter {
    h2o_filter_t super;
    const h2p_modules_conf_t *settings; /* the scope's merged settings (live as long as the generation) */
} compression_filter_t;

/*
 * A static file's compressed copy that this request makes: the store's pending fetch of the
 * copy's key is this request's until the copy is stored or given up, at the latest when the
 * request ends (copy_dispose), so that one request at a time collects a file's copy; the others
 * compress as they stream meanwhile.
 */
typedef struct kept_copy {
    h2p_cache_t *cache;
    h2p_cache_pending_t *pending; /* NULL once completed */
    h2p_content_coding_t coding;
    struct stat of; /* the file as opened for this request */
    h2p_cache_body_t body;
} kept_copy_t;

/* The module's state of a request (H2P_MODULE_REQUEST) */
typedef struct compression_request {
    /* a precompressed sibling (or a kept copy: `kept`) of a file of this Content-Type is being
     * sent in this coding: labelled, not compressed (coding NULL: neither) */
    h2o_iovec_t type;
    const char *coding;
    int kept;
    kept_copy_t *copy; /* the whole file is sent, and its compressed bytes are to be kept (NULL: not) */
} compression_request_t;

typedef struct compress_ostream {
    h2o_ostream_t super;
    h2o_compress_context_t *compressor;
    kept_copy_t *copy; /* NULL: not kept */
} compress_ostream_t;

/* ---- Accept-Encoding -------------------------------------------------------------------- */

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* A qvalue ("0", "0.5", "1.000") in thousandths; malformed ones count as 0 (not acceptable). */
static unsigned parse_qvalue(const char *p, const char *end)
{
    if (p == end || (*p != '0' && *p != '1'))
        return 0;
    unsigned q = (unsigned)(*p++ - '0') * 1000, scale = 100;
    if (p != end && *p == '.') {
        for (++p; p != end && *p >= '0' && *p <= '9' && scale != 0; ++p, scale /= 10)
            q += (unsigned)(*p - '0') * scale;
    }
    if (p != end)
        return 0;
    return q > 1000 ? 1000 : q;
}

typedef struct coding_q {
    unsigned q;
    int seen;
} coding_q_t;

static void parse_accept_encoding_value(h2o_iovec_t value, coding_q_t *gzip, coding_q_t *br, coding_q_t *identity, coding_q_t *star)
{
    const char *p = value.base, *end = value.base + value.len;
    while (p != end) {
        while (p != end && (is_blank(*p) || *p == ','))
            ++p;
        const char *name = p;
        while (p != end && *p != ',' && *p != ';' && !is_blank(*p))
            ++p;
        size_t name_len = p - name;
        unsigned q = 1000;
        /* parameters: only q matters */
        while (p != end && *p != ',') {
            while (p != end && (is_blank(*p) || *p == ';'))
                ++p;
            const char *param = p;
            while (p != end && *p != ',' && *p != ';')
                ++p;
            const char *param_end = p;
            while (param_end != param && is_blank(param_end[-1]))
                --param_end;
            if (param_end - param >= 2 && (param[0] == 'q' || param[0] == 'Q')) {
                const char *v = param + 1;
                while (v != param_end && is_blank(*v))
                    ++v;
                if (v != param_end && *v == '=') {
                    for (++v; v != param_end && is_blank(*v);)
                        ++v;
                    q = parse_qvalue(v, param_end);
                }
            }
        }
        coding_q_t *slot = NULL;
        if (h2o_lcstris(name, name_len, H2O_STRLIT("gzip")) || h2o_lcstris(name, name_len, H2O_STRLIT("x-gzip")))
            slot = gzip;
        else if (h2o_lcstris(name, name_len, H2O_STRLIT("br")))
            slot = br;
        else if (h2o_lcstris(name, name_len, H2O_STRLIT("identity")))
            slot = identity;
        else if (name_len == 1 && name[0] == '*')
            slot = star;
        if (slot != NULL) {
            slot->q = q;
            slot->seen = 1;
        }
    }
}

void h2p_accept_encoding_parse(const h2o_headers_t *headers, h2p_accept_encoding_t *out)
{
    coding_q_t gzip = {0, 0}, br = {0, 0}, identity = {0, 0}, star = {0, 0};
    for (ssize_t i = -1; (i = h2o_find_header(headers, H2O_TOKEN_ACCEPT_ENCODING, i)) != -1;)
        parse_accept_encoding_value(headers->entries[i].value, &gzip, &br, &identity, &star);
    /* a coding not named takes `*`'s value; identity stays acceptable unless excluded (RFC 9110 12.5.3),
     * as the least preferred coding unless named */
    out->gzip = gzip.seen ? gzip.q : star.seen ? star.q : 0;
    out->br = br.seen ? br.q : star.seen ? star.q : 0;
    out->identity = identity.seen ? identity.q : star.seen ? star.q : 1; /* acceptable, but last */
}

h2p_content_coding_t h2p_accept_encoding_best(const h2p_accept_encoding_t *accepted)
{
    if (accepted->br != 0 && accepted->br >= accepted->gzip && accepted->br >= accepted->identity)
        return H2P_CODING_BR;
    if (accepted->gzip != 0 && accepted->gzip >= accepted->identity)
        return H2P_CODING_GZIP;
    return H2P_CODING_IDENTITY;
}

static int scope_compresses(const h2p_modules_conf_t *m, int is_static)
{
    return m->compression->enabled && (is_static ? m->compression->static_ : m->compression->dynamic);
}

h2p_content_coding_t h2p_compression_negotiate(const h2p_modules_conf_t *m, h2o_req_t *req, int is_static)
{
    if (!scope_compresses(m, is_static) || req->version < 0x101)
        return H2P_CODING_IDENTITY;
    h2p_accept_encoding_t accepted;
    h2p_accept_encoding_parse(&req->headers, &accepted);
    return h2p_accept_encoding_best(&accepted);
}

/* ---- which responses ---------------------------------------------------------------------- */

/* Whether the media type of `content_type` (parameters ignored) is one of `types` (`text/...` patterns too). */
static int type_listed(const h2p_strlist_t *types, h2o_iovec_t content_type)
{
    size_t len = 0;
    while (len != content_type.len && content_type.base[len] != ';' && !is_blank(content_type.base[len]))
        ++len;
    const char *slash = memchr(content_type.base, '/', len);
    if (slash == NULL)
        return 0;
    size_t major_len = slash - content_type.base;
    for (size_t i = 0; i != types->count; ++i) {
        const char *pattern = types->items[i];
        size_t plen = strlen(pattern);
        if (h2o_lcstris(content_type.base, len, pattern, plen))
            return 1;
        if (strcmp(pattern, "*/*") == 0)
            return 1;
        if (plen == major_len + 2 && pattern[plen - 1] == '*' && pattern[plen - 2] == '/' &&
            h2o_lcstris(content_type.base, major_len, pattern, major_len))
            return 1;
    }
    return 0;
}

static int has_header(h2o_req_t *req, const h2o_token_t *token)
{
    return h2o_find_header(&req->res.headers, token, -1) != -1;
}

static int cache_control_says(const h2o_headers_t *headers, const char *directive, size_t len)
{
    for (ssize_t i = -1; (i = h2o_find_header(headers, H2O_TOKEN_CACHE_CONTROL, i)) != -1;)
        if (h2o_contains_token(headers->entries[i].value.base, headers->entries[i].value.len, directive, len, ','))
            return 1;
    return 0;
}

/* Adds Accept-Encoding to the response's Vary (once). */
static void add_vary_accept_encoding(h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->res.headers, H2O_TOKEN_VARY, -1);
    if (i == -1) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_VARY, NULL, H2O_STRLIT("Accept-Encoding"));
        return;
    }
    for (ssize_t j = i; j != -1; j = h2o_find_header(&req->res.headers, H2O_TOKEN_VARY, j)) {
        h2o_iovec_t v = req->res.headers.entries[j].value;
        if (h2o_contains_token(v.base, v.len, H2O_STRLIT("accept-encoding"), ',') ||
            h2o_contains_token(v.base, v.len, H2O_STRLIT("*"), ','))
            return;
    }
    h2o_iovec_t *v = &req->res.headers.entries[i].value;
    *v = h2o_concat(&req->pool, *v, h2o_iovec_init(H2O_STRLIT(", Accept-Encoding")));
}

/* Another byte sequence than the identity representation's: a strong validator would lie. */
static void weaken_etag(h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->res.headers, H2O_TOKEN_ETAG, -1);
    if (i == -1)
        return;
    h2o_iovec_t *v = &req->res.headers.entries[i].value;
    if (v->len >= 2 && v->base[0] == 'W' && v->base[1] == '/')
        return;
    *v = h2o_concat(&req->pool, h2o_iovec_init(H2O_STRLIT("W/")), *v);
}

static void set_accept_ranges_none(h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->res.headers, H2O_TOKEN_ACCEPT_RANGES, -1);
    if (i != -1)
        req->res.headers.entries[i].value = h2o_iovec_init(H2O_STRLIT("none"));
    else
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ACCEPT_RANGES, NULL, H2O_STRLIT("none"));
}

/* ---- gzip ------------------------------------------------------------------------------------ */

/*
 * libh2o's h2o_compress_gzip_open() sets a zlib stream up for every response and frees it at the
 * end: some 260 KiB of zlib state allocated, zeroed and returned to the system per response,
 * whose page faults cost more than the compression of a 100 KB text (a third of nginx's
 * throughput).  A thread keeps a few deflate streams and their output buffers instead, reset
 * between responses.
 */
#define SPARE_DEFLATERS 8

typedef struct deflater {
    z_stream zs;
    char *buf;
    size_t capacity;
} deflater_t;

/* The module's state on a front-end thread (H2P_MODULE_THREAD) */
typedef struct compression_thread {
    deflater_t *items[SPARE_DEFLATERS];
    size_t count;
} spare_deflaters_t;

typedef struct gzip_context {
    h2o_compress_context_t super;
    deflater_t *deflater;
    size_t size;
    h2o_iovec_t out;
} gzip_context_t;

static deflater_t *take_deflater(void)
{
    spare_deflaters_t *spare = H2P_MODULE_THREAD(h2p_this_thread, compression);
    if (spare->count != 0) {
        deflater_t *d = spare->items[--spare->count];
        deflateReset(&d->zs);
        return d;
    }
    deflater_t *d = h2o_mem_alloc(sizeof(*d));
    memset(d, 0, sizeof(*d));
    /* 31: a gzip wrapper; memLevel 8 as zlib's manual suggests */
    if (deflateInit2(&d->zs, GZIP_LEVEL, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        h2o_fatal("no memory");
    return d;
}

static void free_deflater(deflater_t *d)
{
    deflateEnd(&d->zs);
    free(d->buf);
    free(d);
}

static void gzip_dispose(void *_self)
{
    gzip_context_t *self = _self;
    spare_deflaters_t *spare = H2P_MODULE_THREAD(h2p_this_thread, compression);
    if (spare->count != SPARE_DEFLATERS)
        spare->items[spare->count++] = self->deflater;
    else
        free_deflater(self->deflater);
}

static void init_thread(h2p_thread_t *th)
{
    H2P_MODULE_THREAD(th, compression) = h2p_calloc(1, sizeof(spare_deflaters_t));
}

static void dispose_thread(h2p_thread_t *th)
{
    spare_deflaters_t *spare = H2P_MODULE_THREAD(th, compression);
    while (spare->count != 0)
        free_deflater(spare->items[--spare->count]);
    free(spare);
    H2P_MODULE_THREAD(th, compression) = NULL;
}

static void gzip_run(gzip_context_t *self, const char *src, size_t len, int flush)
{
    deflater_t *d = self->deflater;
    d->zs.next_in = (Bytef *)src;
    d->zs.avail_in = (uInt)len;
    for (;;) {
        if (d->capacity - self->size < 64) { /* (a sync flush needs a few bytes at least) */
            d->capacity = d->capacity != 0 ? d->capacity * 2 : 16384;
            d->buf = h2o_mem_realloc(d->buf, d->capacity);
        }
        d->zs.next_out = (Bytef *)d->buf + self->size;
        d->zs.avail_out = (uInt)(d->capacity - self->size);
        int ret = deflate(&d->zs, flush);
        self->size = d->capacity - d->zs.avail_out;
        if (ret == Z_STREAM_ERROR)
            return; /* (only on misuse) */
        if (flush == Z_FINISH ? ret == Z_STREAM_END : d->zs.avail_in == 0 && d->zs.avail_out != 0)
            return;
    }
}

static void gzip_transform(h2o_compress_context_t *_self, h2o_iovec_t *inbufs, size_t inbufcnt, h2o_send_state_t state,
                           h2o_iovec_t **outbufs, size_t *outbufcnt)
{
    gzip_context_t *self = (void *)_self;
    self->size = 0;
    for (size_t i = 0; i != inbufcnt; ++i)
        gzip_run(self, inbufs[i].base, inbufs[i].len, Z_NO_FLUSH);
    /* a flush per chunk: what the application streamed reaches the client as it comes */
    gzip_run(self, NULL, 0, h2o_send_state_is_in_progress(state) ? Z_SYNC_FLUSH : Z_FINISH);
    self->out = h2o_iovec_init(self->deflater->buf, self->size);
    *outbufs = &self->out;
    *outbufcnt = 1;
}

static h2o_compress_context_t *gzip_open(h2o_mem_pool_t *pool)
{
    gzip_context_t *self = h2o_mem_alloc_shared(pool, sizeof(*self), gzip_dispose);
    *self = (gzip_context_t){{h2o_iovec_init(H2O_STRLIT("gzip")), gzip_transform}, take_deflater()};
    return &self->super;
}

/* ---- brotli (libh2o 2.2.5 is built without it) -------------------------------------------- */

typedef struct brotli_context {
    h2o_compress_context_t super;
    BrotliEncoderState *encoder;
    char *buf; /* this call's output; the previous call's was sent before the next call */
    size_t size, capacity;
    h2o_iovec_t out;
} brotli_context_t;

static void brotli_append(brotli_context_t *self, const uint8_t *data, size_t len)
{
    if (self->size + len > self->capacity) {
        size_t capacity = self->capacity != 0 ? self->capacity : 8192;
        while (capacity < self->size + len)
            capacity *= 2;
        self->buf = h2o_mem_realloc(self->buf, capacity);
        self->capacity = capacity;
    }
    memcpy(self->buf + self->size, data, len);
    self->size += len;
}

static void brotli_run(brotli_context_t *self, BrotliEncoderOperation op, const uint8_t *data, size_t len)
{
    const uint8_t *next_in = data;
    size_t avail_in = len;
    for (;;) {
        size_t avail_out = 0;
        if (!BrotliEncoderCompressStream(self->encoder, op, &avail_in, &next_in, &avail_out, NULL, NULL))
            return; /* (only on misuse) the client gets a truncated stream rather than a hang */
        size_t out_len = 0;
        const uint8_t *out;
        while ((out = BrotliEncoderTakeOutput(self->encoder, &out_len)) != NULL && out_len != 0)
            brotli_append(self, out, out_len);
        if (avail_in != 0 || BrotliEncoderHasMoreOutput(self->encoder))
            continue;
        if (op == BROTLI_OPERATION_FINISH && !BrotliEncoderIsFinished(self->encoder))
            continue;
        return;
    }
}

static void brotli_transform(h2o_compress_context_t *_self, h2o_iovec_t *inbufs, size_t inbufcnt, h2o_send_state_t state,
                             h2o_iovec_t **outbufs, size_t *outbufcnt)
{
    brotli_context_t *self = (void *)_self;
    self->size = 0;
    for (size_t i = 0; i != inbufcnt; ++i)
        brotli_run(self, BROTLI_OPERATION_PROCESS, (const uint8_t *)inbufs[i].base, inbufs[i].len);
    /* a flush per chunk: what the application streamed reaches the client as it comes */
    brotli_run(self, h2o_send_state_is_in_progress(state) ? BROTLI_OPERATION_FLUSH : BROTLI_OPERATION_FINISH, NULL, 0);
    self->out = h2o_iovec_init(self->buf, self->size);
    *outbufs = &self->out;
    *outbufcnt = 1;
}

static void brotli_dispose(void *_self)
{
    brotli_context_t *self = _self;
    BrotliEncoderDestroyInstance(self->encoder);
    free(self->buf);
}

static h2o_compress_context_t *brotli_open(h2o_mem_pool_t *pool, size_t content_length)
{
    brotli_context_t *self = h2o_mem_alloc_shared(pool, sizeof(*self), brotli_dispose);
    *self = (brotli_context_t){{h2o_iovec_init(H2O_STRLIT("br")), brotli_transform}};
    self->encoder = BrotliEncoderCreateInstance(NULL, NULL, NULL);
    if (self->encoder == NULL)
        h2o_fatal("no memory");
    BrotliEncoderSetParameter(self->encoder, BROTLI_PARAM_QUALITY, BROTLI_QUALITY);
    BrotliEncoderSetParameter(self->encoder, BROTLI_PARAM_LGWIN, BROTLI_WINDOW);
    if (content_length != SIZE_MAX && content_length < UINT32_MAX)
        BrotliEncoderSetParameter(self->encoder, BROTLI_PARAM_SIZE_HINT, (uint32_t)content_length);
    return &self->super;
}

/* ---- kept copies of static files ------------------------------------------------------- */

/* The copy is stored (entry) or given up (NULL): the next request of the key may make one. */
static void end_copy(kept_copy_t *copy, h2p_cache_entry_t *entry)
{
    if (copy->pending != NULL) {
        h2p_cache_complete(copy->cache, copy->pending, entry);
        copy->pending = NULL;
    }
    h2p_cache_body_free(&copy->body);
}

static void copy_dispose(void *copy)
{
    end_copy(copy, NULL); /* (the request ended before its body did, or the filter did not compress it) */
}

/* What the filter sent goes into the copy; once the whole file is compressed, the copy is stored. */
static void keep_copy(compress_ostream_t *self, const h2o_iovec_t *bufs, size_t bufcnt, h2o_send_state_t state)
{
    kept_copy_t *copy = self->copy;
    /* an error is a read error, or a file that shrank */
    if (state == H2O_SEND_STATE_ERROR || h2p_cache_body_append(copy->cache, &copy->body, bufs, bufcnt) != 0) {
        end_copy(copy, NULL);
        self->copy = NULL;
        return;
    }
    if (h2o_send_state_is_in_progress(state))
        return;
    h2p_cache_entry_t *entry = h2p_cache_entry_new(copy->body.len);
    memcpy(entry->data, copy->body.base, copy->body.len);
    entry->body = h2o_iovec_init(entry->data, copy->body.len);
    entry->file_dev = copy->of.st_dev;
    entry->file_ino = copy->of.st_ino;
    entry->file_size = copy->of.st_size;
    entry->file_mtime = copy->of.st_mtim;
    entry->file_ctime = copy->of.st_ctim;
    entry->stored_at_ms = h2p_cache_now_ms();
    entry->expires_at_ms = UINT64_MAX; /* valid while the file is the same; evicted by max_memory */
    end_copy(copy, entry);
    self->copy = NULL;
}

static int same_time(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

static int copy_fits(const h2p_cache_entry_t *entry, void *arg)
{
    const struct stat *st = arg;
    return entry->file_dev == st->st_dev && entry->file_ino == st->st_ino && entry->file_size == st->st_size &&
           same_time(&entry->file_mtime, &st->st_mtim) && same_time(&entry->file_ctime, &st->st_ctim);
}

/*
 * Whether the file has been left alone for a second at least (its ctime, which a write and
 * every change of its times or inode set to the present).  A file changed within the clock's
 * granularity of the fstat could be changed again, while it is read, without another ctime: its
 * copy could be made of two versions and pass for the later one (git's "racily clean" files).
 */
static int settled(const struct stat *st)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return st->st_ctim.tv_sec + 2 <= now.tv_sec;
}

static compression_request_t *request_state(h2p_request_t *r)
{
    compression_request_t *state = H2P_MODULE_REQUEST(r, compression);
    if (state == NULL) {
        state = h2o_mem_alloc_pool(&r->req->pool, sizeof(*state));
        memset(state, 0, sizeof(*state));
        H2P_MODULE_REQUEST(r, compression) = state;
    }
    return state;
}

h2p_cache_entry_t *h2p_compression_kept_copy(h2o_req_t *req, const struct h2p_scope_rt *scope, const char *physical,
                                             const struct stat *st, h2o_iovec_t type)
{
    const h2p_modules_conf_t *m = &scope->modules;
    h2p_request_t *r = h2p_request_of(req);
    if (r == NULL || r->gen->cache == NULL || !scope_compresses(m, 1) || type.base == NULL ||
        !type_listed(&m->compression->types, type) || (uint64_t)st->st_size < m->compression->min_size ||
        (uint64_t)st->st_size == 0)
        return NULL;
    h2p_content_coding_t chosen = h2p_compression_negotiate(m, req, 1);
    if (chosen == H2P_CODING_IDENTITY)
        return NULL;
    /* "\0": no output cache key starts so (a URL's scheme does); one copy per scope, made under
     * its settings and headers (a path has no NUL) */
    char head[32];
    int head_len = snprintf(head, sizeof(head), "%c%c%p|", '\0', chosen == H2P_CODING_BR ? 'b' : 'g', (const void *)scope);
    h2o_iovec_t key = h2o_concat(&req->pool, h2o_iovec_init(head, head_len), h2o_iovec_init(physical, strlen(physical)));
    h2p_cache_entry_t *entry = NULL;
    h2p_cache_pending_t *pending = NULL;
    switch (h2p_cache_lookup(r->gen->cache, key.base, key.len, copy_fits, (void *)st, NULL, settled(st), &entry, &pending, NULL)) {
    case H2P_CACHE_HIT: {
        compression_request_t *state = request_state(r);
        state->type = type;
        state->coding = chosen == H2P_CODING_BR ? "br" : "gzip";
        state->kept = 1;
        return entry;
    }
    case H2P_CACHE_LEAD: { /* none, or one of an older version of the file: this response's is kept */
        kept_copy_t *copy = h2o_mem_alloc_shared(&req->pool, sizeof(*copy), copy_dispose);
        *copy = (kept_copy_t){r->gen->cache, pending, chosen, *st};
        request_state(r)->copy = copy;
        return NULL;
    }
    default: /* another request makes it, or the file changed a moment ago */
        return NULL;
    }
}

static void compress_do_send(h2o_ostream_t *_self, h2o_req_t *req, h2o_iovec_t *inbufs, size_t inbufcnt, h2o_send_state_t state)
{
    compress_ostream_t *self = (void *)_self;
    h2o_iovec_t *outbufs;
    size_t outbufcnt;
    self->compressor->transform(self->compressor, inbufs, inbufcnt, state, &outbufs, &outbufcnt);
    if (self->copy != NULL)
        keep_copy(self, outbufs, outbufcnt, state);
    h2o_ostream_send_next(&self->super, req, outbufs, outbufcnt, state);
}

/* A precompressed sibling or a kept copy went out: it is the file's representation in that coding. */
static void label_precompressed(h2o_req_t *req, const compression_request_t *sent)
{
    ssize_t i = h2o_find_header(&req->res.headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (i != -1)
        req->res.headers.entries[i].value = sent->type;
    if (req->res.status == 200)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_ENCODING, NULL, sent->coding, strlen(sent->coding));
    add_vary_accept_encoding(req);
}

static int is_head(h2o_req_t *req)
{
    return h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
}

static void on_setup_ostream(h2o_filter_t *_self, h2o_req_t *req, h2o_ostream_t **slot)
{
    compression_filter_t *self = (void *)_self;
    h2p_request_t *r = h2p_request_of(req);
    if (r != NULL && r->from_cache)
        goto Next; /* stored as the cache's entry for this coding */
    compression_request_t *state = r != NULL ? H2P_MODULE_REQUEST(r, compression) : NULL;
    if (state != NULL && state->coding != NULL) {
        label_precompressed(req, state);
        if (state->kept) { /* like the same bytes compressed as they stream */
            weaken_etag(req);
            set_accept_ranges_none(req);
        }
        goto Next;
    }
    if (req->res.status != 200)
        goto Next;
    int is_static = r == NULL || h2p_request_served(r)->mapping < 0;
    if (!scope_compresses(self->settings, is_static))
        goto Next;
    ssize_t type_index = h2o_find_header(&req->res.headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (type_index == -1 || !type_listed(&self->settings->compression->types, req->res.headers.entries[type_index].value))
        goto Next;
    if (has_header(req, H2O_TOKEN_CONTENT_ENCODING) || has_header(req, H2O_TOKEN_CONTENT_RANGE) ||
        cache_control_says(&req->res.headers, H2O_STRLIT("no-transform")))
        goto Next;
    if (req->res.content_length != SIZE_MAX && req->res.content_length < self->settings->compression->min_size)
        goto Next;
    /* from here on the answer depends on Accept-Encoding, compressed or not */
    add_vary_accept_encoding(req);
    if (is_head(req) || req->version < 0x101)
        goto Next;
    h2o_compress_context_t *compressor;
    h2p_content_coding_t coding = h2p_compression_negotiate(self->settings, req, is_static);
    /* the static handler sends the whole file whose compressed bytes are to be kept */
    kept_copy_t *copy = state != NULL ? state->copy : NULL;
    if (copy != NULL && (copy->coding != coding || req->res.content_length != (size_t)copy->of.st_size))
        copy = NULL; /* (given up when the request ends) */
    switch (coding) {
    case H2P_CODING_BR:
        compressor = brotli_open(&req->pool, req->res.content_length);
        break;
    case H2P_CODING_GZIP:
        compressor = gzip_open(&req->pool);
        break;
    default:
        goto Next;
    }
    req->res.content_length = SIZE_MAX;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_ENCODING, NULL, compressor->name.base, compressor->name.len);
    weaken_etag(req);
    set_accept_ranges_none(req);
    compress_ostream_t *encoder = (void *)h2o_add_ostream(req, sizeof(*encoder), slot);
    encoder->super.do_send = compress_do_send;
    encoder->compressor = compressor;
    encoder->copy = copy;
    slot = &encoder->super.next;
Next:
    h2o_setup_next_ostream(req, slot);
}

/* ---- precompressed siblings of static files ----------------------------------------------- */

size_t h2p_compression_precompressed_choices(h2o_req_t *req, const struct h2p_scope_rt *scope, h2o_iovec_t type,
                                             h2p_precompressed_choice_t out[2])
{
    const h2p_modules_conf_t *m = &scope->modules;
    if (h2p_request_of(req) == NULL || !scope_compresses(m, 1) || req->version < 0x101 ||
        h2o_find_header(&req->headers, H2O_TOKEN_RANGE, -1) != -1)
        return 0;
    h2p_accept_encoding_t accepted;
    h2p_accept_encoding_parse(&req->headers, &accepted);
    h2p_content_coding_t best = h2p_accept_encoding_best(&accepted);
    if (best == H2P_CODING_IDENTITY || type.base == NULL || !type_listed(&m->compression->types, type))
        return 0;
    /* the preferred coding's sibling, else the other one if the client takes it over identity */
    struct {
        h2p_precompressed_choice_t choice;
        unsigned q;
    } candidates[2] = {{{"br", ".br"}, accepted.br}, {{"gzip", ".gz"}, accepted.gzip}};
    if (best == H2P_CODING_GZIP) {
        candidates[0] = (typeof(candidates[0])){{"gzip", ".gz"}, accepted.gzip};
        candidates[1] = (typeof(candidates[1])){{"br", ".br"}, accepted.br};
    }
    size_t n = 0;
    for (size_t i = 0; i != 2; ++i)
        if (candidates[i].q != 0 && candidates[i].q >= accepted.identity)
            out[n++] = candidates[i].choice;
    return n;
}

void h2p_compression_precompressed_sent(h2o_req_t *req, h2o_iovec_t type, const char *coding)
{
    h2p_request_t *r = h2p_request_of(req);
    compression_request_t *state = request_state(r);
    state->type = type;
    state->coding = coding;
}

/* ---- set-up ------------------------------------------------------------------------------- */

int h2p_compression_is_filter(const h2o_filter_t *filter)
{
    return filter->on_setup_ostream == on_setup_ostream;
}

static int on_config(h2p_module_scope_t *ms)
{
    const h2p_modules_conf_t *m = ms->settings;
    if (!m->compression->enabled || (!m->compression->static_ && !m->compression->dynamic) || m->compression->types.count == 0)
        return 0;
    compression_filter_t *self = (void *)h2o_create_filter(ms->pathconf, sizeof(*self));
    self->super.on_setup_ostream = on_setup_ostream;
    self->settings = &ms->scope->modules;
    return 0;
}

const h2p_module_t h2p_module_compression = {"compression", H2P_PHASE_RESPONSE, on_config, .init_thread = init_thread,
                                             .dispose_thread = dispose_thread};

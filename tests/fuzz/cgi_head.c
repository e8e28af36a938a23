/*
 * The CGI response head a FastCGI worker or a CGI script writes at the start of its output:
 * h2p_cgi_parse_head (handlers/fcgi_proto.c) on its own, then the whole of
 * h2p_cgi_response_feed (handlers/cgi_response.c: the head becomes the HTTP response, the body
 * is buffered up to its Content-Length) on a request that is never sent.
 *
 * Input: one byte of options (bit 0: a HEAD request, bit 1: HTTP/1.0), two bytes of max_head
 * for the direct parse, one byte of chunk size for a second feed, then the output bytes.
 * Checks, besides the sanitizers: everything the parser returns lies inside what it consumed,
 * names are tokens and values have no control bytes, a complete head is incomplete one byte
 * shorter, and feeding the output in chunks ends exactly as feeding it whole.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <h2o.h>

#include "handlers/cgi_response.h"
#include "handlers/fcgi_proto.h"

static int within(const char *p, size_t len, const char *start, size_t size)
{
    return p >= start && len <= size && (size_t)(p - start) <= size - len;
}

static void check_head(const char *src, size_t len, size_t max_head)
{
    h2p_cgi_head_t head;
    int r = h2p_cgi_parse_head(src, len, max_head, &head);
    if (r == -2 && len >= max_head)
        abort(); /* max_head bytes without a blank line are malformed, not incomplete */
    if (r < 0) {
        if (r != -1 && r != -2)
            abort();
        return;
    }
    if ((size_t)r > len || (size_t)r > max_head || head.status < 100 || head.status > 999 || head.num_headers > H2P_CGI_MAX_HEADERS)
        abort();
    if (head.local_redirect && head.status != 302)
        abort();
    if (head.reason_len != 0 && !within(head.reason, head.reason_len, src, (size_t)r) && strcmp(head.reason, "Found") != 0)
        abort();
    for (size_t i = 0; i != head.num_headers; ++i) {
        const h2p_cgi_header_t *h = head.headers + i;
        if (h->name_len == 0 || !within(h->name, h->name_len, src, (size_t)r) || !within(h->value, h->value_len, src, (size_t)r))
            abort();
        for (size_t j = 0; j != h->name_len; ++j)
            if ((unsigned char)h->name[j] <= ' ' || h->name[j] == ':' || (unsigned char)h->name[j] >= 0x7f)
                abort();
        for (size_t j = 0; j != h->value_len; ++j)
            if (h->value[j] == '\r' || h->value[j] == '\n' || h->value[j] == '\0')
                abort();
    }
    h2p_cgi_head_t shorter;
    if (h2p_cgi_parse_head(src, (size_t)r - 1, max_head, &shorter) != -2)
        abort();
}

typedef struct outcome {
    int failed, started, status;
    size_t num_headers, content_length;
    uint64_t body_left;
    char *body;
    size_t body_len;
} outcome_t;

/* Feeds `src` in pieces of `chunk` bytes (all of it when chunk is 0) to a response that is never sent. */
static outcome_t feed(const char *src, size_t len, size_t chunk, unsigned options)
{
    h2o_req_t req;
    memset(&req, 0, sizeof(req));
    h2o_mem_init_pool(&req.pool);
    req.input.method = (options & 1) != 0 ? h2o_iovec_init(H2O_STRLIT("HEAD")) : h2o_iovec_init(H2O_STRLIT("GET"));
    req.version = (options & 2) != 0 ? 0x100 : 0x101;
    req.res.content_length = SIZE_MAX;
    req.http1_is_persistent = 1;

    h2p_cgi_response_t response;
    h2p_cgi_response_init(&response, &req);
    outcome_t out = {0};
    size_t pos = 0;
    do {
        size_t n = chunk == 0 || len - pos < chunk ? len - pos : chunk;
        if (h2p_cgi_response_feed(&response, src + pos, n) != 0) {
            out.failed = 1;
            break;
        }
        pos += n;
    } while (pos != len);
    if (!out.failed && response.started) {
        out.started = 1;
        out.status = req.res.status;
        out.num_headers = req.res.headers.size;
        out.content_length = req.res.content_length;
        out.body_left = response.body_left;
        out.body_len = response.pending->size;
        out.body = malloc(out.body_len + 1);
        if (out.body_len != 0)
            memcpy(out.body, response.pending->bytes, out.body_len);
        if (out.body_left != UINT64_MAX && out.content_length != SIZE_MAX && out.body_len > out.content_length)
            abort(); /* never more body than the announced Content-Length */
    }
    h2p_cgi_response_dispose(&response);
    h2o_mem_clear_pool(&req.pool);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    unsigned options = data[0];
    size_t max_head = (size_t)data[1] << 8 | data[2], chunk = (size_t)data[3] + 1;
    const char *src = (const char *)data + 4;
    size_t len = size - 4;

    check_head(src, len, max_head);
    check_head(src, len, H2P_CGI_MAX_HEAD);

    outcome_t whole = feed(src, len, 0, options), pieces = feed(src, len, chunk, options);
    if (whole.failed != pieces.failed || whole.started != pieces.started || whole.status != pieces.status ||
        whole.num_headers != pieces.num_headers || whole.content_length != pieces.content_length ||
        whole.body_left != pieces.body_left || whole.body_len != pieces.body_len ||
        (whole.body_len != 0 && memcmp(whole.body, pieces.body, whole.body_len) != 0))
        abort();
    free(whole.body);
    free(pieces.body);
    return 0;
}

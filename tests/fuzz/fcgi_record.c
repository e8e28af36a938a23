/*
 * FastCGI records as a worker sends them: the byte stream handlers/fastcgi.c and
 * poolmgr/worker.c decode record after record, and the name-value pairs of GET_VALUES_RESULT
 * (and PARAMS) records.  Checks, besides what the sanitizers see: a decoded record lies inside
 * the input and is exactly header + content + padding long, every shorter prefix of it is
 * "incomplete" (never complete, never malformed), and END_REQUEST bodies are 8 bytes.  The input
 * also goes through the STDOUT encoder and back.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "handlers/fcgi_proto.h"

typedef struct content_bounds {
    const char *start, *end;
} content_bounds_t;

static int check_pair(const char *name, size_t name_len, const char *value, size_t value_len, void *ctx)
{
    const content_bounds_t *bounds = ctx;
    if (name < bounds->start || name_len > (size_t)(bounds->end - name) || value != name + name_len ||
        value_len > (size_t)(bounds->end - value))
        abort();
    return 0;
}

static void check_record(const char *src, size_t len, ssize_t n, const h2p_fcgi_record_t *rec)
{
    if ((size_t)n > len || (size_t)n != H2P_FCGI_HEADER_LEN + (size_t)rec->content_length + rec->padding_length ||
        rec->content != src + H2P_FCGI_HEADER_LEN)
        abort();
    if (rec->type == H2P_FCGI_END_REQUEST && rec->content_length != 8)
        abort();
    /* a record that arrives a byte at a time is "incomplete" until its last byte is there */
    for (size_t prefix = 0; prefix != (size_t)n; ++prefix) {
        h2p_fcgi_record_t partial;
        if (h2p_fcgi_decode_record(src, prefix, &partial) != 0)
            abort();
    }
    if (rec->type == H2P_FCGI_GET_VALUES_RESULT || rec->type == H2P_FCGI_GET_VALUES || rec->type == H2P_FCGI_PARAMS) {
        content_bounds_t bounds = {rec->content, rec->content + rec->content_length};
        h2p_fcgi_nv_decode(rec->content, rec->content_length, check_pair, &bounds);
    }
}

/* The input as STDOUT records and back: the concatenated contents are the input. */
static void check_stream_round_trip(const uint8_t *data, size_t size)
{
    static h2o_buffer_prototype_t prototype = {{16}, {4096}};
    h2o_buffer_t *buf;
    h2o_buffer_init(&buf, &prototype);
    if (h2p_fcgi_encode_stream(&buf, H2P_FCGI_STDOUT, 1, data, size) != 0)
        abort();
    size_t pos = 0, got = 0;
    h2p_fcgi_record_t rec;
    ssize_t n;
    while ((n = h2p_fcgi_decode_record(buf->bytes + pos, buf->size - pos, &rec)) > 0) {
        if (rec.type != H2P_FCGI_STDOUT || rec.request_id != 1 || rec.content_length > size - got ||
            memcmp(rec.content, data + got, rec.content_length) != 0)
            abort();
        got += rec.content_length;
        pos += (size_t)n;
    }
    if (n != 0 || pos != buf->size || got != size)
        abort();
    h2o_buffer_dispose(&buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *src = (const char *)data;
    size_t left = size;
    for (;;) {
        h2p_fcgi_record_t rec;
        ssize_t n = h2p_fcgi_decode_record(src, left, &rec);
        if (n <= 0)
            break;
        check_record(src, left, n, &rec);
        src += n;
        left -= (size_t)n;
    }
    check_stream_round_trip(data, size);
    return 0;
}

/*
 * Unit tests for handlers/fcgi_proto.c: FastCGI records, name-value pairs, CGI response heads.
 *
 * Every decoder input is copied into a malloc of exactly its length, so AddressSanitizer
 * reports any read past the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "handlers/fcgi_proto.h"

/* small initial capacity so that the encoders exercise buffer growth */
static h2o_buffer_prototype_t test_prototype = {{16}, {64}};

static h2o_buffer_t *new_buffer(void)
{
    h2o_buffer_t *buf;
    h2o_buffer_init(&buf, &test_prototype);
    return buf;
}

/* exact-size heap copy: reads past len hit the redzone */
static char *exact_copy(const void *src, size_t len)
{
    char *p = malloc(len == 0 ? 1 : len);
    assert_non_null(p);
    if (len != 0)
        memcpy(p, src, len);
    return p;
}

static ssize_t decode_exact(const void *src, size_t len, h2p_fcgi_record_t *rec)
{
    char *copy = exact_copy(src, len);
    ssize_t ret = h2p_fcgi_decode_record(copy, len, rec);
    /* rec->content points into the copy; callers here only look at it when they kept src */
    if (ret > 0)
        rec->content = (const char *)src + (rec->content - copy);
    free(copy);
    return ret;
}

static int parse_head_exact(const char *src, size_t len, size_t max_head, h2p_cgi_head_t *out)
{
    char *copy = exact_copy(src, len);
    int ret = h2p_cgi_parse_head(copy, len, max_head, out);
    /* rebase pointers so the caller can inspect them after the copy is gone */
    if (ret > 0) {
        for (size_t i = 0; i != out->num_headers; ++i) {
            out->headers[i].name = src + (out->headers[i].name - copy);
            out->headers[i].value = src + (out->headers[i].value - copy);
        }
        if (out->reason >= copy && out->reason < copy + len)
            out->reason = src + (out->reason - copy);
    }
    free(copy);
    return ret;
}

static int parse_head_str(const char *src, h2p_cgi_head_t *out)
{
    return parse_head_exact(src, strlen(src), 65536, out);
}

static void assert_header(const h2p_cgi_head_t *head, size_t i, const char *name, const char *value)
{
    assert_true(i < head->num_headers);
    assert_int_equal(head->headers[i].name_len, strlen(name));
    assert_memory_equal(head->headers[i].name, name, strlen(name));
    assert_int_equal(head->headers[i].value_len, strlen(value));
    if (value[0] != '\0')
        assert_memory_equal(head->headers[i].value, value, strlen(value));
}

/* ---- encoders ---------------------------------------------------------------------------- */

static void test_begin_request_encodes_role_and_keep_conn(void **state)
{
    h2o_buffer_t *buf = new_buffer();
    assert_int_equal(h2p_fcgi_encode_begin_request(&buf, 0x1234, H2P_FCGI_RESPONDER, 1), 0);
    static const unsigned char expected[16] = {1, 1, 0x12, 0x34, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0};
    assert_int_equal(buf->size, 16);
    assert_memory_equal(buf->bytes, expected, 16);
    h2o_buffer_dispose(&buf);
}

static void test_begin_request_without_keep_conn(void **state)
{
    h2o_buffer_t *buf = new_buffer();
    assert_int_equal(h2p_fcgi_encode_begin_request(&buf, 1, H2P_FCGI_AUTHORIZER, 0), 0);
    h2p_fcgi_record_t rec;
    assert_int_equal(decode_exact(buf->bytes, buf->size, &rec), 16);
    assert_int_equal(rec.type, H2P_FCGI_BEGIN_REQUEST);
    assert_int_equal(rec.content_length, 8);
    assert_int_equal(rec.content[1], H2P_FCGI_AUTHORIZER);
    assert_int_equal(rec.content[2], 0);
    h2o_buffer_dispose(&buf);
}

static void test_abort_request_is_empty_record(void **state)
{
    h2o_buffer_t *buf = new_buffer();
    assert_int_equal(h2p_fcgi_encode_abort(&buf, 7), 0);
    static const unsigned char expected[8] = {1, 2, 0, 7, 0, 0, 0, 0};
    assert_int_equal(buf->size, 8);
    assert_memory_equal(buf->bytes, expected, 8);
    h2o_buffer_dispose(&buf);
}

static void test_stream_empty_writes_end_of_stream_record(void **state)
{
    h2o_buffer_t *buf = new_buffer();
    assert_int_equal(h2p_fcgi_encode_stream(&buf, H2P_FCGI_STDIN, 3, NULL, 0), 0);
    static const unsigned char expected[8] = {1, 5, 0, 3, 0, 0, 0, 0};
    assert_int_equal(buf->size, 8);
    assert_memory_equal(buf->bytes, expected, 8);
    h2o_buffer_dispose(&buf);
}

static void test_stream_small_is_padded_to_8(void **state)
{
    h2o_buffer_t *buf = new_buffer();
    assert_int_equal(h2p_fcgi_encode_stream(&buf, H2P_FCGI_PARAMS, 1, "hello", 5), 0);
    static const unsigned char expected[16] = {1, 4, 0, 1, 0, 5, 3, 0, 'h', 'e', 'l', 'l', 'o', 0, 0, 0};
    assert_int_equal(buf->size, 16);
    assert_memory_equal(buf->bytes, expected, 16);
    h2o_buffer_dispose(&buf);
}

static void test_stream_padding_for_lengths_1_to_17(void **state)
{
    char data[17];
    memset(data, 'x', sizeof(data));
    for (size_t len = 1; len <= sizeof(data); ++len) {
        h2o_buffer_t *buf = new_buffer();
        assert_int_equal(h2p_fcgi_encode_stream(&buf, H2P_FCGI_STDIN, 1, data, len), 0);
        size_t padding = (8 - len % 8) % 8;
        assert_int_equal(buf->size, 8 + len + padding);
        assert_int_equal(buf->size % 8, 0);
        assert_int_equal((unsigned char)buf->bytes[6], padding);
        for (size_t i = 0; i != padding; ++i)
            assert_int_equal(buf->bytes[8 + len + i], 0);
        h2o_buffer_dispose(&buf);
    }
}

static void test_stream_exactly_65535_is_one_record(void **state)
{
    char *data = malloc(65535);
    memset(data, 'a', 65535);
    h2o_buffer_t *buf = new_buffer();
    assert_int_equal(h2p_fcgi_encode_stream(&buf, H2P_FCGI_STDIN, 1, data, 65535), 0);
    assert_int_equal(buf->size, 8 + 65535 + 1);
    h2p_fcgi_record_t rec;
    assert_int_equal(decode_exact(buf->bytes, buf->size, &rec), 8 + 65535 + 1);
    assert_int_equal(rec.content_length, 65535);
    assert_int_equal(rec.padding_length, 1);
    h2o_buffer_dispose(&buf);
    free(data);
}

static void test_stream_65536_splits_into_two_records(void **state)
{
    char *data = malloc(65536);
    for (size_t i = 0; i != 65536; ++i)
        data[i] = (char)i;
    h2o_buffer_t *buf = new_buffer();
    assert_int_equal(h2p_fcgi_encode_stream(&buf, H2P_FCGI_STDIN, 9, data, 65536), 0);
    assert_int_equal(buf->size, (8 + 65535 + 1) + (8 + 1 + 7));
    h2p_fcgi_record_t rec;
    ssize_t first = decode_exact(buf->bytes, buf->size, &rec);
    assert_int_equal(first, 8 + 65535 + 1);
    assert_int_equal(rec.content_length, 65535);
    assert_memory_equal(rec.content, data, 65535);
    assert_int_equal(decode_exact(buf->bytes + first, buf->size - first, &rec), 16);
    assert_int_equal(rec.content_length, 1);
    assert_int_equal(rec.request_id, 9);
    assert_int_equal(rec.content[0], data[65535]);
    h2o_buffer_dispose(&buf);
    free(data);
}

static void test_stream_large_round_trips(void **state)
{
    size_t len = 300000;
    char *data = malloc(len), *out = malloc(len);
    for (size_t i = 0; i != len; ++i)
        data[i] = (char)(i * 31 + 7);
    h2o_buffer_t *buf = new_buffer();
    assert_int_equal(h2p_fcgi_encode_stream(&buf, H2P_FCGI_STDOUT, 2, data, len), 0);
    assert_int_equal(h2p_fcgi_encode_stream(&buf, H2P_FCGI_STDOUT, 2, NULL, 0), 0);
    size_t pos = 0, got = 0, records = 0;
    for (;;) {
        h2p_fcgi_record_t rec;
        ssize_t n = h2p_fcgi_decode_record(buf->bytes + pos, buf->size - pos, &rec);
        assert_true(n > 0);
        assert_int_equal(rec.type, H2P_FCGI_STDOUT);
        assert_int_equal(n % 8, 0);
        pos += n;
        ++records;
        if (rec.content_length == 0)
            break;
        memcpy(out + got, rec.content, rec.content_length);
        got += rec.content_length;
    }
    assert_int_equal(pos, buf->size);
    assert_int_equal(got, len);
    assert_int_equal(records, 5 + 1); /* 4 full records, one of 37860 bytes, end of stream */
    assert_memory_equal(out, data, len);
    h2o_buffer_dispose(&buf);
    free(data);
    free(out);
}

static void test_encoders_append_to_existing_content(void **state)
{
    h2o_buffer_t *buf = new_buffer();
    assert_int_equal(h2p_fcgi_encode_begin_request(&buf, 1, H2P_FCGI_RESPONDER, 1), 0);
    assert_int_equal(h2p_fcgi_encode_stream(&buf, H2P_FCGI_PARAMS, 1,
                                            "\x01\x01"
                                            "AB",
                                            4),
                     0);
    assert_int_equal(h2p_fcgi_encode_stream(&buf, H2P_FCGI_PARAMS, 1, NULL, 0), 0);
    assert_int_equal(h2p_fcgi_encode_abort(&buf, 1), 0);
    static const uint8_t types[] = {H2P_FCGI_BEGIN_REQUEST, H2P_FCGI_PARAMS, H2P_FCGI_PARAMS, H2P_FCGI_ABORT_REQUEST};
    size_t pos = 0;
    for (size_t i = 0; i != 4; ++i) {
        h2p_fcgi_record_t rec;
        ssize_t n = h2p_fcgi_decode_record(buf->bytes + pos, buf->size - pos, &rec);
        assert_true(n > 0);
        assert_int_equal(rec.type, types[i]);
        pos += n;
    }
    assert_int_equal(pos, buf->size);
    h2o_buffer_dispose(&buf);
}

struct nv_collect {
    size_t count;
    char names[8][300];
    size_t value_lens[8];
};

static int collect_nv(const char *name, size_t name_len, const char *value, size_t value_len, void *ctx)
{
    struct nv_collect *c = ctx;
    if (c->count == 8)
        return -1;
    size_t n = name_len < 299 ? name_len : 299;
    memcpy(c->names[c->count], name, n);
    c->names[c->count][n] = '\0';
    c->value_lens[c->count] = value_len;
    ++c->count;
    return 0;
}

static void test_get_values_encodes_names_with_empty_values(void **state)
{
    const char *names[] = {H2P_FCGI_MAX_CONNS, H2P_FCGI_MAX_REQS, H2P_FCGI_MPXS_CONNS};
    h2o_buffer_t *buf = new_buffer();
    assert_int_equal(h2p_fcgi_encode_get_values(&buf, names, 3), 0);
    h2p_fcgi_record_t rec;
    assert_int_equal(decode_exact(buf->bytes, buf->size, &rec), (ssize_t)buf->size);
    assert_int_equal(rec.type, H2P_FCGI_GET_VALUES);
    assert_int_equal(rec.request_id, 0);
    assert_int_equal(rec.content_length, (2 + 14) + (2 + 13) + (2 + 15));
    struct nv_collect c = {0};
    assert_int_equal(h2p_fcgi_nv_decode(rec.content, rec.content_length, collect_nv, &c), 0);
    assert_int_equal(c.count, 3);
    assert_string_equal(c.names[0], "FCGI_MAX_CONNS");
    assert_string_equal(c.names[1], "FCGI_MAX_REQS");
    assert_string_equal(c.names[2], "FCGI_MPXS_CONNS");
    assert_int_equal(c.value_lens[0] + c.value_lens[1] + c.value_lens[2], 0);
    h2o_buffer_dispose(&buf);
}

static void test_get_values_too_large_fails(void **state)
{
    char *big = malloc(40000);
    memset(big, 'N', 39999);
    big[39999] = '\0';
    const char *names[] = {big, big};
    h2o_buffer_t *buf = new_buffer();
    assert_int_equal(h2p_fcgi_encode_get_values(&buf, names, 2), -1);
    assert_int_equal(buf->size, 0);
    h2o_buffer_dispose(&buf);
    free(big);
}

/* ---- name-value pairs -------------------------------------------------------------------- */

static void test_nv_size_uses_1_byte_lengths_below_128(void **state)
{
    assert_int_equal(h2p_fcgi_nv_size(0, 0), 2);
    assert_int_equal(h2p_fcgi_nv_size(11, 5), 2 + 16);
    assert_int_equal(h2p_fcgi_nv_size(127, 127), 2 + 254);
}

static void test_nv_size_uses_4_byte_lengths_from_128(void **state)
{
    assert_int_equal(h2p_fcgi_nv_size(128, 0), 5 + 128);
    assert_int_equal(h2p_fcgi_nv_size(1, 128), 5 + 129);
    assert_int_equal(h2p_fcgi_nv_size(200, 70000), 8 + 70200);
}

static void test_nv_write_1_byte_lengths(void **state)
{
    char out[32];
    char *end = h2p_fcgi_nv_write(out, "HOST", 4, "a.b", 3);
    assert_int_equal(end - out, h2p_fcgi_nv_size(4, 3));
    assert_memory_equal(out, "\x04\x03HOSTa.b", 9);
}

static void test_nv_write_4_byte_lengths(void **state)
{
    char value[256], out[300];
    memset(value, 'v', sizeof(value));
    char *end = h2p_fcgi_nv_write(out, "Q", 1, value, 256);
    assert_int_equal(end - out, h2p_fcgi_nv_size(1, 256));
    assert_memory_equal(out, "\x01\x80\x00\x01\x00Q", 6);
}

static void test_nv_round_trip_mixed_lengths(void **state)
{
    size_t name_lens[] = {0, 1, 127, 128, 255};
    size_t value_lens[] = {70000, 0, 128, 127, 1};
    size_t total = 0;
    for (size_t i = 0; i != 5; ++i)
        total += h2p_fcgi_nv_size(name_lens[i], value_lens[i]);
    char *block = malloc(total), *dst = block;
    char *text = malloc(70000);
    memset(text, 'n', 70000);
    for (size_t i = 0; i != 5; ++i)
        dst = h2p_fcgi_nv_write(dst, text, name_lens[i], text, value_lens[i]);
    assert_int_equal(dst - block, total);

    struct nv_collect c = {0};
    assert_int_equal(h2p_fcgi_nv_decode(block, total, collect_nv, &c), 0);
    assert_int_equal(c.count, 5);
    for (size_t i = 0; i != 5; ++i) {
        assert_int_equal(strlen(c.names[i]), name_lens[i]);
        assert_int_equal(c.value_lens[i], value_lens[i]);
    }
    free(block);
    free(text);
}

static void test_nv_decode_empty_is_ok(void **state)
{
    struct nv_collect c = {0};
    char *p = exact_copy("", 0);
    assert_int_equal(h2p_fcgi_nv_decode(p, 0, collect_nv, &c), 0);
    assert_int_equal(c.count, 0);
    free(p);
}

static void test_nv_decode_truncated_at_every_byte(void **state)
{
    char value[200];
    memset(value, 'x', sizeof(value));
    char block[512], *dst = block;
    size_t boundaries[4] = {0};
    dst = h2p_fcgi_nv_write(dst, "A", 1, "b", 1);
    boundaries[1] = dst - block;
    dst = h2p_fcgi_nv_write(dst, "LONG", 4, value, sizeof(value));
    boundaries[2] = dst - block;
    dst = h2p_fcgi_nv_write(dst, value, 150, "", 0);
    boundaries[3] = dst - block;
    size_t total = dst - block;

    for (size_t len = 0; len <= total; ++len) {
        struct nv_collect c = {0};
        char *p = exact_copy(block, len);
        int ret = h2p_fcgi_nv_decode(p, len, collect_nv, &c);
        int at_boundary = len == boundaries[0] || len == boundaries[1] || len == boundaries[2] || len == boundaries[3];
        assert_int_equal(ret, at_boundary ? 0 : -1);
        free(p);
    }
}

static void test_nv_decode_name_length_past_end(void **state)
{
    struct nv_collect c = {0};
    char *p = exact_copy("\x05\x00"
                         "abcd",
                         6);
    assert_int_equal(h2p_fcgi_nv_decode(p, 6, collect_nv, &c), -1);
    assert_int_equal(c.count, 0);
    free(p);
}

static void test_nv_decode_value_length_past_end(void **state)
{
    struct nv_collect c = {0};
    char *p = exact_copy("\x01\x01"
                         "ab"
                         "\x01\x04"
                         "cde",
                         7);
    assert_int_equal(h2p_fcgi_nv_decode(p, 7, collect_nv, &c), -1);
    assert_int_equal(c.count, 1); /* the good pair before the bad one was reported */
    free(p);
}

static void test_nv_decode_huge_4_byte_lengths(void **state)
{
    static const char *inputs[] = {
        "\xff\xff\xff\xff\x01"
        "ab", /* name 0x7fffffff */
        "\x01\xff\xff\xff\xff"
        "ab",                               /* value 0x7fffffff */
        "\xff\xff\xff\xff\xff\xff\xff\xff", /* both: must not overflow when added */
        "\x80\x00\x00\x80\x01"
        "ab",           /* 4-byte length 128, only 3 bytes follow */
        "\x80\x00\x00", /* 4-byte length cut short */
        "\x01\x80\x00", /* 4-byte value length cut short */
    };
    static const size_t lens[] = {7, 7, 8, 7, 3, 3};
    for (size_t i = 0; i != sizeof(lens) / sizeof(lens[0]); ++i) {
        struct nv_collect c = {0};
        char *p = exact_copy(inputs[i], lens[i]);
        assert_int_equal(h2p_fcgi_nv_decode(p, lens[i], collect_nv, &c), -1);
        assert_int_equal(c.count, 0);
        free(p);
    }
}

static int stop_after_first(const char *name, size_t name_len, const char *value, size_t value_len, void *ctx)
{
    ++*(int *)ctx;
    return 1;
}

static void test_nv_decode_callback_can_stop(void **state)
{
    int calls = 0;
    assert_int_equal(h2p_fcgi_nv_decode("\x01\x01"
                                        "ab"
                                        "\x01\x01"
                                        "cd",
                                        8, stop_after_first, &calls),
                     -1);
    assert_int_equal(calls, 1);
}

/* ---- record decoder ---------------------------------------------------------------------- */

static void test_decode_record_stdout(void **state)
{
    static const char rec_bytes[] = "\x01\x06\x00\x2a\x00\x03\x05\x00"
                                    "abc\0\0\0\0\0";
    h2p_fcgi_record_t rec;
    assert_int_equal(decode_exact(rec_bytes, 16, &rec), 16);
    assert_int_equal(rec.type, H2P_FCGI_STDOUT);
    assert_int_equal(rec.request_id, 42);
    assert_int_equal(rec.content_length, 3);
    assert_int_equal(rec.padding_length, 5);
    assert_ptr_equal(rec.content, rec_bytes + 8);
    assert_memory_equal(rec.content, "abc", 3);
}

static void test_decode_record_truncated_at_every_byte(void **state)
{
    h2o_buffer_t *buf = new_buffer();
    assert_int_equal(h2p_fcgi_encode_stream(&buf, H2P_FCGI_STDERR, 5, "0123456789abc", 13), 0);
    assert_int_equal(buf->size, 24);
    for (size_t len = 0; len < buf->size; ++len) {
        h2p_fcgi_record_t rec;
        assert_int_equal(decode_exact(buf->bytes, len, &rec), 0);
    }
    h2p_fcgi_record_t rec;
    assert_int_equal(decode_exact(buf->bytes, buf->size, &rec), 24);
    h2o_buffer_dispose(&buf);
}

static void test_decode_end_request_truncated_at_every_byte(void **state)
{
    static const char bytes[16] = "\x01\x03\x00\x01\x00\x08\x00\x00"
                                  "\x00\x00\x00\x00\x00\x00\x00\x00";
    for (size_t len = 0; len < 16; ++len) {
        h2p_fcgi_record_t rec;
        assert_int_equal(decode_exact(bytes, len, &rec), 0);
    }
}

static void test_decode_record_bad_version(void **state)
{
    static const char bytes[16] = "\x09\x06\x00\x01\x00\x01\x07\x00"
                                  "x";
    h2p_fcgi_record_t rec;
    assert_int_equal(decode_exact(bytes, 16, &rec), -1);
    assert_int_equal(decode_exact("\x00", 1, &rec), -1);
    assert_int_equal(decode_exact("\x02\x06", 2, &rec), -1);
}

static void test_decode_record_bad_version_seen_from_first_byte(void **state)
{
    h2p_fcgi_record_t rec;
    assert_int_equal(decode_exact("H", 1, &rec), -1); /* an HTTP response, say */
    assert_int_equal(decode_exact("HTTP/1.1 200 OK\r\n", 17, &rec), -1);
}

static void test_decode_record_end_request_fields(void **state)
{
    static const char bytes[16] = "\x01\x03\x00\x07\x00\x08\x00\x00"
                                  "\x01\x02\x03\x04\x02\x00\x00\x00";
    h2p_fcgi_record_t rec;
    assert_int_equal(decode_exact(bytes, 16, &rec), 16);
    assert_int_equal(rec.type, H2P_FCGI_END_REQUEST);
    assert_int_equal(rec.request_id, 7);
    assert_int_equal(rec.app_status, 0x01020304);
    assert_int_equal(rec.protocol_status, H2P_FCGI_OVERLOADED);
}

static void test_decode_record_end_request_bad_length(void **state)
{
    static const char short_body[16] = "\x01\x03\x00\x01\x00\x04\x04\x00"
                                       "\x00\x00\x00\x00";
    static const char long_body[24] = "\x01\x03\x00\x01\x00\x10\x00\x00";
    h2p_fcgi_record_t rec;
    assert_int_equal(decode_exact(short_body, 16, &rec), -1);
    assert_int_equal(decode_exact(long_body, 24, &rec), -1);
    /* rejected as soon as the length bytes arrive */
    assert_int_equal(decode_exact(short_body, 6, &rec), -1);
    assert_int_equal(decode_exact("\x01\x03\x00\x01\x00\x00\x00\x00", 8, &rec), -1);
}

static void test_decode_record_unknown_type_is_returned(void **state)
{
    static const char bytes[16] = "\x01\x63\x00\x00\x00\x02\x06\x00"
                                  "zz";
    h2p_fcgi_record_t rec;
    assert_int_equal(decode_exact(bytes, 16, &rec), 16);
    assert_int_equal(rec.type, 99);
    assert_int_equal(rec.content_length, 2);
}

static void test_decode_record_max_padding(void **state)
{
    char bytes[8 + 1 + 255] = "\x01\x06\x00\x01\x00\x01\xff\x00"
                              "y";
    h2p_fcgi_record_t rec;
    assert_int_equal(decode_exact(bytes, sizeof(bytes) - 1, &rec), 0);
    assert_int_equal(decode_exact(bytes, sizeof(bytes), &rec), sizeof(bytes));
    assert_int_equal(rec.padding_length, 255);
}

static void test_decode_record_leaves_following_bytes(void **state)
{
    static const char bytes[] = "\x01\x06\x00\x01\x00\x00\x00\x00"
                                "\x01\x03\x00\x01\x00\x08\x00\x00"
                                "\x00\x00\x00\x00\x00\x00\x00\x00"
                                "\x01";
    h2p_fcgi_record_t rec;
    assert_int_equal(decode_exact(bytes, 25, &rec), 8);
    assert_int_equal(rec.type, H2P_FCGI_STDOUT);
    assert_int_equal(rec.content_length, 0);
    assert_int_equal(decode_exact(bytes + 8, 17, &rec), 16);
    assert_int_equal(rec.type, H2P_FCGI_END_REQUEST);
    assert_int_equal(rec.app_status, 0);
    assert_int_equal(decode_exact(bytes + 24, 1, &rec), 0);
}

static void test_decode_get_values_result(void **state)
{
    char content[64], *end = content;
    end = h2p_fcgi_nv_write(end, "FCGI_MAX_CONNS", 14, "10", 2);
    end = h2p_fcgi_nv_write(end, "FCGI_MPXS_CONNS", 15, "0", 1);
    size_t clen = end - content;
    char record[80];
    h2p_fcgi_write_header(record, H2P_FCGI_GET_VALUES_RESULT, 0, (uint16_t)clen, h2p_fcgi_padding(clen));
    memcpy(record + 8, content, clen);
    memset(record + 8 + clen, 0, h2p_fcgi_padding(clen));
    size_t total = 8 + clen + h2p_fcgi_padding(clen);

    h2p_fcgi_record_t rec;
    char *copy = exact_copy(record, total);
    assert_int_equal(h2p_fcgi_decode_record(copy, total, &rec), total);
    assert_int_equal(rec.type, H2P_FCGI_GET_VALUES_RESULT);
    struct nv_collect c = {0};
    assert_int_equal(h2p_fcgi_nv_decode(rec.content, rec.content_length, collect_nv, &c), 0);
    assert_int_equal(c.count, 2);
    assert_string_equal(c.names[1], "FCGI_MPXS_CONNS");
    free(copy);
}

/* ---- CGI response head ------------------------------------------------------------------- */

static void test_cgi_head_crlf(void **state)
{
    static const char src[] = "Content-Type: text/html\r\nX-A: 1\r\n\r\nbody";
    h2p_cgi_head_t head;
    assert_int_equal(parse_head_str(src, &head), strlen(src) - 4);
    assert_int_equal(head.status, 200);
    assert_int_equal(head.num_headers, 2);
    assert_header(&head, 0, "Content-Type", "text/html");
    assert_header(&head, 1, "X-A", "1");
    assert_int_equal(head.local_redirect, 0);
}

static void test_cgi_head_bare_lf(void **state)
{
    static const char src[] = "Content-type: text/plain\n\nhello";
    h2p_cgi_head_t head;
    assert_int_equal(parse_head_str(src, &head), strlen(src) - 5);
    assert_int_equal(head.num_headers, 1);
    assert_header(&head, 0, "Content-type", "text/plain");
}

static void test_cgi_head_mixed_line_endings(void **state)
{
    static const char src[] = "A: 1\nB: 2\r\n\n";
    h2p_cgi_head_t head;
    assert_int_equal(parse_head_str(src, &head), strlen(src));
    assert_int_equal(head.num_headers, 2);
    assert_header(&head, 1, "B", "2");
}

static void test_cgi_head_only_blank_line(void **state)
{
    h2p_cgi_head_t head;
    assert_int_equal(parse_head_str("\r\nbody", &head), 2);
    assert_int_equal(head.num_headers, 0);
    assert_int_equal(head.status, 200);
    assert_int_equal(parse_head_str("\nbody", &head), 1);
}

static void test_cgi_head_status_with_reason(void **state)
{
    h2p_cgi_head_t head;
    assert_true(parse_head_str("Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\n", &head) > 0);
    assert_int_equal(head.status, 404);
    assert_int_equal(head.reason_len, 9);
    assert_memory_equal(head.reason, "Not Found", 9);
    assert_int_equal(head.num_headers, 1); /* Status: is not passed on as a header */
    assert_header(&head, 0, "Content-Type", "text/plain");
}

static void test_cgi_head_status_without_reason(void **state)
{
    h2p_cgi_head_t head;
    assert_true(parse_head_str("status:503\n\n", &head) > 0);
    assert_int_equal(head.status, 503);
    assert_int_equal(head.reason_len, 0);
    assert_true(parse_head_str("STATUS: 999   \n\n", &head) > 0);
    assert_int_equal(head.status, 999);
    assert_true(parse_head_str("Status: 100\n\n", &head) > 0);
    assert_int_equal(head.status, 100);
}

static void test_cgi_head_bad_status(void **state)
{
    static const char *bad[] = {
        "Status: abc\n\n", "Status: 99\n\n",      "Status: 1000\n\n", "Status: 099\n\n",  "Status: 20x\n\n",
        "Status:\n\n",     "Status: 200x OK\n\n", "Status: -200\n\n", "Status: 2 00\n\n",
    };
    for (size_t i = 0; i != sizeof(bad) / sizeof(bad[0]); ++i) {
        h2p_cgi_head_t head;
        assert_int_equal(parse_head_str(bad[i], &head), -1);
    }
}

static void test_cgi_head_repeated_status(void **state)
{
    h2p_cgi_head_t head;
    assert_int_equal(parse_head_str("Status: 200\nStatus: 404\n\n", &head), -1);
}

static void test_cgi_head_location_absolute_is_302(void **state)
{
    h2p_cgi_head_t head;
    assert_true(parse_head_str("Location: https://example.com/x\r\n\r\n", &head) > 0);
    assert_int_equal(head.status, 302);
    assert_int_equal(head.local_redirect, 0);
    assert_header(&head, 0, "Location", "https://example.com/x");
}

static void test_cgi_head_location_local_path(void **state)
{
    h2p_cgi_head_t head;
    assert_true(parse_head_str("Location: /other?x=1\n\n", &head) > 0);
    assert_int_equal(head.status, 302);
    assert_int_equal(head.local_redirect, 1);
    /* network-path reference: another host, never served locally */
    assert_true(parse_head_str("Location: //evil.example/\n\n", &head) > 0);
    assert_int_equal(head.status, 302);
    assert_int_equal(head.local_redirect, 0);
}

static void test_cgi_head_location_with_status_keeps_status(void **state)
{
    h2p_cgi_head_t head;
    assert_true(parse_head_str("Location: http://a/\nStatus: 301 Moved Permanently\n\n", &head) > 0);
    assert_int_equal(head.status, 301);
    assert_true(parse_head_str("Status: 201\nLocation: /new\n\n", &head) > 0);
    assert_int_equal(head.status, 201);
    assert_int_equal(head.local_redirect, 0);
}

static void test_cgi_head_missing_blank_line_is_incomplete(void **state)
{
    h2p_cgi_head_t head;
    assert_int_equal(parse_head_str("Content-Type: text/plain\r\n", &head), -2);
    assert_int_equal(parse_head_str("Content-Type: text/plain\r\n\r", &head), -2);
    assert_int_equal(parse_head_str("Content-Type: text/pl", &head), -2);
    assert_int_equal(parse_head_str("", &head), -2);
}

static void test_cgi_head_incomplete_at_every_byte(void **state)
{
    static const char src[] = "Status: 201 Created\r\nContent-Type: text/plain\nX-Empty:\r\nLocation: /a\r\n\r\n";
    size_t total = strlen(src);
    for (size_t len = 0; len < total; ++len) {
        h2p_cgi_head_t head;
        assert_int_equal(parse_head_exact(src, len, 65536, &head), -2);
    }
    h2p_cgi_head_t head;
    assert_int_equal(parse_head_exact(src, total, 65536, &head), total);
    assert_int_equal(head.status, 201);
    assert_int_equal(head.num_headers, 3);
}

static void test_cgi_head_oversize_is_malformed(void **state)
{
    size_t len = 200 * 1024;
    char *src = malloc(len);
    for (size_t i = 0; i + 8 <= len; i += 8)
        memcpy(src + i, "X-A: b\r\n", 8);
    h2p_cgi_head_t head;
    assert_int_equal(h2p_cgi_parse_head(src, len, 8192, &head), -1);
    /* below the limit and still no blank line: wait for more */
    assert_int_equal(h2p_cgi_parse_head(src, 400, 8192, &head), -2);
    free(src);
}

static void test_cgi_head_complete_at_exactly_max_head(void **state)
{
    static const char src[] = "A: b\r\n\r\n";
    h2p_cgi_head_t head;
    assert_int_equal(parse_head_exact(src, 8, 8, &head), 8);
    assert_int_equal(parse_head_exact(src, 8, 7, &head), -1);
    assert_int_equal(parse_head_exact(src, 7, 7, &head), -1);
    assert_int_equal(parse_head_exact(src, 7, 8, &head), -2);
}

static void test_cgi_head_header_without_colon(void **state)
{
    h2p_cgi_head_t head;
    assert_int_equal(parse_head_str("Content-Type text/plain\r\n\r\n", &head), -1);
    /* rejected without waiting for the end of the head */
    assert_int_equal(parse_head_str("hello world\nmore", &head), -1);
}

static void test_cgi_head_invalid_name_chars(void **state)
{
    static const char *bad[] = {
        "Content Type: x\n\n", "Content-Type : x\n\n", ": x\n\n",     " A: x\n\n",
        "\tA: x\n\n",          "A(b): x\n\n",          "A\0B: x\n\n", "\xc3\xa9: x\n\n",
    };
    for (size_t i = 0; i != sizeof(bad) / sizeof(bad[0]); ++i) {
        h2p_cgi_head_t head;
        size_t len = i == 6 ? 8 : strlen(bad[i]); /* the one with a NUL */
        assert_int_equal(parse_head_exact(bad[i], len, 65536, &head), -1);
    }
}

static void test_cgi_head_control_chars_in_value(void **state)
{
    h2p_cgi_head_t head;
    assert_int_equal(parse_head_str("A: x\ry\r\n\r\n", &head), -1);
    assert_int_equal(parse_head_exact("A: x\0y\n\n", 8, 65536, &head), -1);
    assert_int_equal(parse_head_str("A: x\x7fy\n\n", &head), -1);
    /* tabs and obs-text are allowed */
    assert_true(parse_head_str("A: x\ty \xe9\n\n", &head) > 0);
    assert_header(&head, 0, "A", "x\ty \xe9");
}

static void test_cgi_head_empty_header_value(void **state)
{
    h2p_cgi_head_t head;
    assert_true(parse_head_str("X-Empty:\r\nX-Blank:   \r\n\r\n", &head) > 0);
    assert_int_equal(head.num_headers, 2);
    assert_header(&head, 0, "X-Empty", "");
    assert_header(&head, 1, "X-Blank", "");
}

static void test_cgi_head_value_blanks_trimmed(void **state)
{
    h2p_cgi_head_t head;
    assert_true(parse_head_str("X-A: \t a b \t\r\n\r\n", &head) > 0);
    assert_header(&head, 0, "X-A", "a b");
}

static char *make_headers(size_t n, size_t *len)
{
    char *src = malloc(n * 16 + 3), *p = src;
    for (size_t i = 0; i != n; ++i)
        p += sprintf(p, "X-H%03zu: v\r\n", i);
    p += sprintf(p, "\r\n");
    *len = p - src;
    return src;
}

static void test_cgi_head_100_headers(void **state)
{
    size_t len;
    char *src = make_headers(100, &len);
    h2p_cgi_head_t head;
    assert_int_equal(parse_head_exact(src, len, 65536, &head), len);
    assert_int_equal(head.num_headers, 100);
    assert_header(&head, 99, "X-H099", "v");
    free(src);
}

static void test_cgi_head_101_headers_is_malformed(void **state)
{
    size_t len;
    char *src = make_headers(101, &len);
    h2p_cgi_head_t head;
    assert_int_equal(parse_head_exact(src, len, 65536, &head), -1);
    free(src);
}

static void test_cgi_head_status_does_not_count_toward_limit(void **state)
{
    size_t len;
    char *src = make_headers(100, &len);
    char *with_status = malloc(len + 13);
    memcpy(with_status, "Status: 404\n", 12);
    memcpy(with_status + 12, src, len);
    h2p_cgi_head_t head;
    assert_int_equal(parse_head_exact(with_status, len + 12, 65536, &head), len + 12);
    assert_int_equal(head.status, 404);
    assert_int_equal(head.num_headers, 100);
    free(src);
    free(with_status);
}

/* ---- fuzz -------------------------------------------------------------------------------- */

static uint64_t fuzz_state = 0x9e3779b97f4a7c15ull;

static uint32_t fuzz_next(void)
{
    fuzz_state ^= fuzz_state << 13;
    fuzz_state ^= fuzz_state >> 7;
    fuzz_state ^= fuzz_state << 17;
    return (uint32_t)(fuzz_state >> 32);
}

struct nv_bounds {
    const char *start, *end;
};

static int check_nv_bounds(const char *name, size_t name_len, const char *value, size_t value_len, void *ctx)
{
    struct nv_bounds *b = ctx;
    assert_true(name >= b->start && name_len <= (size_t)(b->end - name));
    assert_true(value >= b->start && value_len <= (size_t)(b->end - value));
    return 0;
}

/* Runs every decoder over src (an exact-size heap block) and checks what they return. */
static void run_decoders(const char *src, size_t len)
{
    h2p_fcgi_record_t rec;
    ssize_t n = h2p_fcgi_decode_record(src, len, &rec);
    assert_true(n >= -1 && n <= (ssize_t)len);
    if (n > 0) {
        assert_true(rec.content + rec.content_length <= src + len);
        struct nv_bounds rb = {rec.content, rec.content + rec.content_length};
        h2p_fcgi_nv_decode(rec.content, rec.content_length, check_nv_bounds, &rb);
    }

    struct nv_bounds b = {src, src + len};
    int r = h2p_fcgi_nv_decode(src, len, check_nv_bounds, &b);
    assert_true(r == 0 || r == -1);

    static h2p_cgi_head_t head;
    size_t max_head = 1 + fuzz_next() % 128;
    int h = h2p_cgi_parse_head(src, len, max_head, &head);
    assert_true(h == -1 || h == -2 || (h > 0 && (size_t)h <= len && (size_t)h <= max_head));
    if (h > 0) {
        assert_true(head.status >= 100 && head.status <= 999);
        for (size_t i = 0; i != head.num_headers; ++i) {
            assert_true(head.headers[i].name >= src && head.headers[i].name + head.headers[i].name_len <= src + h);
            assert_true(head.headers[i].value >= src && head.headers[i].value + head.headers[i].value_len <= src + h);
        }
    }
}

static void test_fuzz_random_bytes(void **state)
{
    static const char alphabet[] = "Status: 200\r\nLocation:/ab\x01\x03\x08\x80\xff";
    unsigned char tmp[128];
    for (int iter = 0; iter != 100000; ++iter) {
        size_t len = fuzz_next() % sizeof(tmp);
        int mode = fuzz_next() % 3;
        for (size_t i = 0; i != len; ++i) {
            uint32_t x = fuzz_next();
            tmp[i] = mode == 0 ? (unsigned char)x : (unsigned char)alphabet[x % (sizeof(alphabet) - 1)];
        }
        /* often a plausible record header, so the decoders get past the first checks */
        if (mode == 2 && len >= 8) {
            tmp[0] = 1;
            tmp[1] = (unsigned char)(1 + fuzz_next() % 11);
            tmp[4] = 0;
            tmp[5] = (unsigned char)(fuzz_next() % 64);
            tmp[6] = (unsigned char)(fuzz_next() % 16);
        }
        char *src = exact_copy(tmp, len);
        run_decoders(src, len);
        free(src);
    }
}

static void test_fuzz_mutated_valid_input(void **state)
{
    /* a valid PARAMS record and a valid CGI head, then random byte flips and truncations */
    char params[256], *end = params;
    end = h2p_fcgi_nv_write(end, "SCRIPT_FILENAME", 15, "/srv/www/index.php", 18);
    end = h2p_fcgi_nv_write(end, "QUERY_STRING", 12, "a=1", 3);
    h2o_buffer_t *buf = new_buffer();
    assert_int_equal(h2p_fcgi_encode_stream(&buf, H2P_FCGI_PARAMS, 1, params, end - params), 0);
    static const char head[] = "Status: 302 Found\r\nLocation: /x\nContent-Type: text/html\r\n\r\n";

    char tmp[256];
    for (int iter = 0; iter != 20000; ++iter) {
        const char *base = iter & 1 ? head : buf->bytes;
        size_t base_len = iter & 1 ? sizeof(head) - 1 : buf->size;
        memcpy(tmp, base, base_len);
        for (int flips = fuzz_next() % 4; flips != 0; --flips)
            tmp[fuzz_next() % base_len] = (char)fuzz_next();
        size_t len = fuzz_next() % (base_len + 1);
        char *src = exact_copy(tmp, len);
        run_decoders(src, len);
        free(src);
    }
    h2o_buffer_dispose(&buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_begin_request_encodes_role_and_keep_conn),
        cmocka_unit_test(test_begin_request_without_keep_conn),
        cmocka_unit_test(test_abort_request_is_empty_record),
        cmocka_unit_test(test_stream_empty_writes_end_of_stream_record),
        cmocka_unit_test(test_stream_small_is_padded_to_8),
        cmocka_unit_test(test_stream_padding_for_lengths_1_to_17),
        cmocka_unit_test(test_stream_exactly_65535_is_one_record),
        cmocka_unit_test(test_stream_65536_splits_into_two_records),
        cmocka_unit_test(test_stream_large_round_trips),
        cmocka_unit_test(test_encoders_append_to_existing_content),
        cmocka_unit_test(test_get_values_encodes_names_with_empty_values),
        cmocka_unit_test(test_get_values_too_large_fails),
        cmocka_unit_test(test_nv_size_uses_1_byte_lengths_below_128),
        cmocka_unit_test(test_nv_size_uses_4_byte_lengths_from_128),
        cmocka_unit_test(test_nv_write_1_byte_lengths),
        cmocka_unit_test(test_nv_write_4_byte_lengths),
        cmocka_unit_test(test_nv_round_trip_mixed_lengths),
        cmocka_unit_test(test_nv_decode_empty_is_ok),
        cmocka_unit_test(test_nv_decode_truncated_at_every_byte),
        cmocka_unit_test(test_nv_decode_name_length_past_end),
        cmocka_unit_test(test_nv_decode_value_length_past_end),
        cmocka_unit_test(test_nv_decode_huge_4_byte_lengths),
        cmocka_unit_test(test_nv_decode_callback_can_stop),
        cmocka_unit_test(test_decode_record_stdout),
        cmocka_unit_test(test_decode_record_truncated_at_every_byte),
        cmocka_unit_test(test_decode_end_request_truncated_at_every_byte),
        cmocka_unit_test(test_decode_record_bad_version),
        cmocka_unit_test(test_decode_record_bad_version_seen_from_first_byte),
        cmocka_unit_test(test_decode_record_end_request_fields),
        cmocka_unit_test(test_decode_record_end_request_bad_length),
        cmocka_unit_test(test_decode_record_unknown_type_is_returned),
        cmocka_unit_test(test_decode_record_max_padding),
        cmocka_unit_test(test_decode_record_leaves_following_bytes),
        cmocka_unit_test(test_decode_get_values_result),
        cmocka_unit_test(test_cgi_head_crlf),
        cmocka_unit_test(test_cgi_head_bare_lf),
        cmocka_unit_test(test_cgi_head_mixed_line_endings),
        cmocka_unit_test(test_cgi_head_only_blank_line),
        cmocka_unit_test(test_cgi_head_status_with_reason),
        cmocka_unit_test(test_cgi_head_status_without_reason),
        cmocka_unit_test(test_cgi_head_bad_status),
        cmocka_unit_test(test_cgi_head_repeated_status),
        cmocka_unit_test(test_cgi_head_location_absolute_is_302),
        cmocka_unit_test(test_cgi_head_location_local_path),
        cmocka_unit_test(test_cgi_head_location_with_status_keeps_status),
        cmocka_unit_test(test_cgi_head_missing_blank_line_is_incomplete),
        cmocka_unit_test(test_cgi_head_incomplete_at_every_byte),
        cmocka_unit_test(test_cgi_head_oversize_is_malformed),
        cmocka_unit_test(test_cgi_head_complete_at_exactly_max_head),
        cmocka_unit_test(test_cgi_head_header_without_colon),
        cmocka_unit_test(test_cgi_head_invalid_name_chars),
        cmocka_unit_test(test_cgi_head_control_chars_in_value),
        cmocka_unit_test(test_cgi_head_empty_header_value),
        cmocka_unit_test(test_cgi_head_value_blanks_trimmed),
        cmocka_unit_test(test_cgi_head_100_headers),
        cmocka_unit_test(test_cgi_head_101_headers_is_malformed),
        cmocka_unit_test(test_cgi_head_status_does_not_count_toward_limit),
        cmocka_unit_test(test_fuzz_random_bytes),
        cmocka_unit_test(test_fuzz_mutated_valid_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * FastCGI 1.0 wire format: record encoders, a record decoder, name-value pairs, and the parser
 * for the CGI response head a worker writes at the start of its STDOUT stream.
 *
 * This file knows nothing about sockets or event loops (handlers/fastcgi.c does).  Nothing here
 * allocates except the encoders, which grow the caller's h2o_buffer_t.  Decoders never read past
 * the length they are given and never trust a length read from the wire: the front end must
 * survive anything a worker sends.
 */
#ifndef H2POOL_FCGI_PROTO_H
#define H2POOL_FCGI_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <h2o/memory.h>

#define H2P_FCGI_VERSION 1
#define H2P_FCGI_HEADER_LEN 8
#define H2P_FCGI_MAX_CONTENT_LEN 65535
#define H2P_FCGI_NULL_REQUEST_ID 0 /* management records (GET_VALUES) */

/* record types */
enum {
    H2P_FCGI_BEGIN_REQUEST = 1,
    H2P_FCGI_ABORT_REQUEST = 2,
    H2P_FCGI_END_REQUEST = 3,
    H2P_FCGI_PARAMS = 4,
    H2P_FCGI_STDIN = 5,
    H2P_FCGI_STDOUT = 6,
    H2P_FCGI_STDERR = 7,
    H2P_FCGI_DATA = 8,
    H2P_FCGI_GET_VALUES = 9,
    H2P_FCGI_GET_VALUES_RESULT = 10,
    H2P_FCGI_UNKNOWN_TYPE = 11
};

/* roles (BEGIN_REQUEST body) */
enum { H2P_FCGI_RESPONDER = 1, H2P_FCGI_AUTHORIZER = 2, H2P_FCGI_FILTER = 3 };

/* flags (BEGIN_REQUEST body): keep the connection open after the request */
#define H2P_FCGI_KEEP_CONN 1

/* protocol statuses (END_REQUEST body) */
enum { H2P_FCGI_REQUEST_COMPLETE = 0, H2P_FCGI_CANT_MPX_CONN = 1, H2P_FCGI_OVERLOADED = 2, H2P_FCGI_UNKNOWN_ROLE = 3 };

/* variable names for GET_VALUES */
#define H2P_FCGI_MAX_CONNS "FCGI_MAX_CONNS"
#define H2P_FCGI_MAX_REQS "FCGI_MAX_REQS"
#define H2P_FCGI_MPXS_CONNS "FCGI_MPXS_CONNS"

/* ---- encoders --------------------------------------------------------------------------
 * Each appends complete records to *buf (growing it with h2o_buffer_reserve) and returns 0, or
 * -1 if the buffer could not grow (or, for get_values, the names do not fit one record).
 * Padding bytes are zero; content is padded to a multiple of 8 bytes. */

/* Writes one 8-byte record header at dst (for callers that build content in place). */
void h2p_fcgi_write_header(char *dst, uint8_t type, uint16_t request_id, uint16_t content_length, uint8_t padding_length);
/* Padding that aligns content_length to 8 bytes. */
static inline uint8_t h2p_fcgi_padding(size_t content_length)
{
    return (uint8_t)(-content_length & 7);
}

int h2p_fcgi_encode_begin_request(h2o_buffer_t **buf, uint16_t request_id, uint16_t role, int keep_conn);
/* Splits data into records of at most 65535 bytes; len == 0 writes the empty record that ends
 * the stream.  data must not point into *buf (the buffer may move). */
int h2p_fcgi_encode_stream(h2o_buffer_t **buf, uint8_t type, uint16_t request_id, const void *data, size_t len);
int h2p_fcgi_encode_abort(h2o_buffer_t **buf, uint16_t request_id);
/* One GET_VALUES record (request id 0) asking for the NUL-terminated names, values empty. */
int h2p_fcgi_encode_get_values(h2o_buffer_t **buf, const char *const names[], size_t n);

/* ---- name-value pairs ------------------------------------------------------------------
 * A length below 128 takes one byte, otherwise four (high bit set, at most 0x7fffffff).
 * Size a whole PARAMS block with h2p_fcgi_nv_size, then fill it with h2p_fcgi_nv_write. */

#define H2P_FCGI_NV_MAX_LEN 0x7fffffffu

size_t h2p_fcgi_nv_size(size_t name_len, size_t value_len);
/* Writes one pair at dst and returns the end of what was written.  Lengths must not exceed
 * H2P_FCGI_NV_MAX_LEN. */
char *h2p_fcgi_nv_write(char *dst, const char *name, size_t name_len, const char *value, size_t value_len);

/* Called once per pair, pointers into the source; return 0 to continue, non-zero to stop. */
typedef int (*h2p_fcgi_nv_cb)(const char *name, size_t name_len, const char *value, size_t value_len, void *ctx);
/* Returns 0 when every pair was decoded, -1 when src is malformed (a length or a pair runs past
 * the end) or the callback asked to stop.  Pairs before a malformed one have been reported. */
int h2p_fcgi_nv_decode(const char *src, size_t len, h2p_fcgi_nv_cb cb, void *ctx);

/* ---- record decoder ------------------------------------------------------------------- */

typedef struct h2p_fcgi_record {
    uint8_t type; /* any value: unknown types are returned, not rejected */
    uint16_t request_id;
    const char *content; /* points into the source */
    uint16_t content_length;
    uint8_t padding_length;
    /* END_REQUEST only */
    uint32_t app_status;
    uint8_t protocol_status;
} h2p_fcgi_record_t;

/* Decodes the record at the start of src.  Returns the bytes it occupies (header, content and
 * padding) when complete, 0 when more bytes are needed, -1 when malformed (version other than
 * 1, END_REQUEST body not 8 bytes).  Malformed headers are reported as soon as the header bytes
 * that show it have arrived. */
ssize_t h2p_fcgi_decode_record(const char *src, size_t len, h2p_fcgi_record_t *rec);

/* ---- CGI response head (RFC 3875 section 6) ------------------------------------------- */

#define H2P_CGI_MAX_HEADERS 100

typedef struct h2p_cgi_header {
    const char *name;
    size_t name_len;
    const char *value; /* leading and trailing blanks trimmed; may be empty */
    size_t value_len;
} h2p_cgi_header_t;

typedef struct h2p_cgi_head {
    int status;         /* from Status:, else 302 when a non-empty Location: is set, else 200 */
    const char *reason; /* reason phrase of Status: ("Found" for that implied 302, else may be empty) */
    size_t reason_len;
    /* Location: is a local path ("/x", not "//x") and no Status: was given: RFC 3875 6.2.2
     * allows the server to serve that path instead (status is 302 either way). */
    int local_redirect;
    size_t num_headers; /* Status: is consumed, not listed */
    h2p_cgi_header_t headers[H2P_CGI_MAX_HEADERS];
} h2p_cgi_head_t;

/* Parses the header block at the start of a worker's STDOUT; lines end in CRLF or bare LF.
 * Returns the bytes consumed (through the blank line) when complete, -2 when incomplete, -1
 * when malformed: a line without a colon, a bad name or control bytes in a value, a bad or
 * repeated Status:, more than H2P_CGI_MAX_HEADERS headers, or no blank line within max_head
 * bytes.  Pointers in out point into src. */
int h2p_cgi_parse_head(const char *src, size_t len, size_t max_head, h2p_cgi_head_t *out);

#endif

/*
 * FastCGI 1.0 codec and CGI response head parser; see fcgi_proto.h.
 */
#include <limits.h>
#include <string.h>
#include "handlers/fcgi_proto.h"

/* ---- encoders ---------------------------------------------------------------------------- */

void h2p_fcgi_write_header(char *dst, uint8_t type, uint16_t request_id, uint16_t content_length, uint8_t padding_length)
{
    dst[0] = H2P_FCGI_VERSION;
    dst[1] = (char)type;
    dst[2] = (char)(request_id >> 8);
    dst[3] = (char)request_id;
    dst[4] = (char)(content_length >> 8);
    dst[5] = (char)content_length;
    dst[6] = (char)padding_length;
    dst[7] = 0;
}

/* Reserves len bytes at the end of *buf; the caller fills them all and commits with size += len. */
static char *reserve(h2o_buffer_t **buf, size_t len)
{
    h2o_iovec_t space = h2o_buffer_reserve(buf, len);
    return space.base;
}

/* Appends one record whose content (at most 65535 bytes) is copied from data. */
static char *write_record(char *dst, uint8_t type, uint16_t request_id, const void *data, size_t len)
{
    uint8_t padding = h2p_fcgi_padding(len);
    h2p_fcgi_write_header(dst, type, request_id, (uint16_t)len, padding);
    dst += H2P_FCGI_HEADER_LEN;
    if (len != 0)
        memcpy(dst, data, len);
    memset(dst + len, 0, padding);
    return dst + len + padding;
}

int h2p_fcgi_encode_begin_request(h2o_buffer_t **buf, uint16_t request_id, uint16_t role, int keep_conn)
{
    char body[8] = {(char)(role >> 8), (char)role, keep_conn ? H2P_FCGI_KEEP_CONN : 0};
    char *dst = reserve(buf, H2P_FCGI_HEADER_LEN + sizeof(body));
    if (dst == NULL)
        return -1;
    (*buf)->size += write_record(dst, H2P_FCGI_BEGIN_REQUEST, request_id, body, sizeof(body)) - dst;
    return 0;
}

int h2p_fcgi_encode_stream(h2o_buffer_t **buf, uint8_t type, uint16_t request_id, const void *data, size_t len)
{
    const char *src = data;
    size_t full = len / H2P_FCGI_MAX_CONTENT_LEN, rest = len % H2P_FCGI_MAX_CONTENT_LEN;
    /* a full record carries 65535 bytes plus 1 byte of padding */
    size_t total = full * (H2P_FCGI_HEADER_LEN + H2P_FCGI_MAX_CONTENT_LEN + 1);
    if (rest != 0 || len == 0)
        total += H2P_FCGI_HEADER_LEN + rest + h2p_fcgi_padding(rest);

    char *start = reserve(buf, total), *dst = start;
    if (start == NULL)
        return -1;
    for (size_t i = 0; i != full; ++i, src += H2P_FCGI_MAX_CONTENT_LEN)
        dst = write_record(dst, type, request_id, src, H2P_FCGI_MAX_CONTENT_LEN);
    if (rest != 0 || len == 0)
        dst = write_record(dst, type, request_id, src, rest);
    (*buf)->size += dst - start;
    return 0;
}

int h2p_fcgi_encode_abort(h2o_buffer_t **buf, uint16_t request_id)
{
    char *dst = reserve(buf, H2P_FCGI_HEADER_LEN);
    if (dst == NULL)
        return -1;
    (*buf)->size += write_record(dst, H2P_FCGI_ABORT_REQUEST, request_id, NULL, 0) - dst;
    return 0;
}

int h2p_fcgi_encode_get_values(h2o_buffer_t **buf, const char *const names[], size_t n)
{
    size_t content_len = 0;
    for (size_t i = 0; i != n; ++i) {
        content_len += h2p_fcgi_nv_size(strlen(names[i]), 0);
        if (content_len > H2P_FCGI_MAX_CONTENT_LEN)
            return -1;
    }
    uint8_t padding = h2p_fcgi_padding(content_len);
    char *start = reserve(buf, H2P_FCGI_HEADER_LEN + content_len + padding), *dst = start;
    if (start == NULL)
        return -1;
    h2p_fcgi_write_header(dst, H2P_FCGI_GET_VALUES, H2P_FCGI_NULL_REQUEST_ID, (uint16_t)content_len, padding);
    dst += H2P_FCGI_HEADER_LEN;
    for (size_t i = 0; i != n; ++i)
        dst = h2p_fcgi_nv_write(dst, names[i], strlen(names[i]), "", 0);
    memset(dst, 0, padding);
    (*buf)->size += dst + padding - start;
    return 0;
}

/* ---- name-value pairs -------------------------------------------------------------------- */

static size_t nv_length_size(size_t len)
{
    return len < 128 ? 1 : 4;
}

static char *nv_write_length(char *dst, size_t len)
{
    if (len < 128) {
        *dst++ = (char)len;
    } else {
        *dst++ = (char)((len >> 24) | 0x80);
        *dst++ = (char)(len >> 16);
        *dst++ = (char)(len >> 8);
        *dst++ = (char)len;
    }
    return dst;
}

size_t h2p_fcgi_nv_size(size_t name_len, size_t value_len)
{
    return nv_length_size(name_len) + nv_length_size(value_len) + name_len + value_len;
}

char *h2p_fcgi_nv_write(char *dst, const char *name, size_t name_len, const char *value, size_t value_len)
{
    dst = nv_write_length(dst, name_len);
    dst = nv_write_length(dst, value_len);
    if (name_len != 0)
        memcpy(dst, name, name_len);
    dst += name_len;
    if (value_len != 0)
        memcpy(dst, value, value_len);
    return dst + value_len;
}

/* Reads one length at *src, advancing it; -1 if it runs past end. */
static int nv_read_length(const unsigned char **src, const unsigned char *end, size_t *len)
{
    const unsigned char *p = *src;
    if (p == end)
        return -1;
    if (*p < 128) {
        *len = *p;
        *src = p + 1;
        return 0;
    }
    if (end - p < 4)
        return -1;
    *len = ((size_t)(p[0] & 0x7f) << 24) | ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | p[3];
    *src = p + 4;
    return 0;
}

int h2p_fcgi_nv_decode(const char *src, size_t len, h2p_fcgi_nv_cb cb, void *ctx)
{
    const unsigned char *p = (const unsigned char *)src, *end = p + len;
    while (p != end) {
        size_t name_len, value_len;
        if (nv_read_length(&p, end, &name_len) != 0 || nv_read_length(&p, end, &value_len) != 0)
            return -1;
        /* compare against what is left, never add wire lengths to pointers first */
        if (name_len > (size_t)(end - p) || value_len > (size_t)(end - p) - name_len)
            return -1;
        const char *name = (const char *)p, *value = name + name_len;
        p += name_len + value_len;
        if (cb(name, name_len, value, value_len, ctx) != 0)
            return -1;
    }
    return 0;
}

/* ---- record decoder ---------------------------------------------------------------------- */

ssize_t h2p_fcgi_decode_record(const char *src, size_t len, h2p_fcgi_record_t *rec)
{
    const unsigned char *p = (const unsigned char *)src;

    /* reject what is already visibly wrong before waiting for the rest */
    if (len >= 1 && p[0] != H2P_FCGI_VERSION)
        return -1;
    if (len >= 6 && p[1] == H2P_FCGI_END_REQUEST && ((p[4] << 8) | p[5]) != 8)
        return -1;
    if (len < H2P_FCGI_HEADER_LEN)
        return 0;

    uint16_t content_length = (uint16_t)((p[4] << 8) | p[5]);
    size_t total = H2P_FCGI_HEADER_LEN + (size_t)content_length + p[6];
    if (len < total)
        return 0;

    rec->type = p[1];
    rec->request_id = (uint16_t)((p[2] << 8) | p[3]);
    rec->content = src + H2P_FCGI_HEADER_LEN;
    rec->content_length = content_length;
    rec->padding_length = p[6];
    rec->app_status = 0;
    rec->protocol_status = 0;
    if (rec->type == H2P_FCGI_END_REQUEST) {
        const unsigned char *body = p + H2P_FCGI_HEADER_LEN;
        rec->app_status = ((uint32_t)body[0] << 24) | ((uint32_t)body[1] << 16) | ((uint32_t)body[2] << 8) | body[3];
        rec->protocol_status = body[4];
    }
    return (ssize_t)total;
}

/* ---- CGI response head ------------------------------------------------------------------- */

/* RFC 7230 tchar */
static int is_token_char(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-value bytes: visible ASCII, blanks and obs-text; no other control characters */
static int is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int name_is(const h2p_cgi_header_t *h, const char *lower)
{
    size_t n = strlen(lower);
    if (h->name_len != n)
        return 0;
    for (size_t i = 0; i != n; ++i)
        if ((h->name[i] | 0x20) != lower[i])
            return 0;
    return 1;
}

/* "NNN" or "NNN reason"; NNN in 100..999 */
static int parse_status(const h2p_cgi_header_t *h, h2p_cgi_head_t *out)
{
    const char *v = h->value;
    if (h->value_len < 3 || v[0] < '1' || v[0] > '9' || v[1] < '0' || v[1] > '9' || v[2] < '0' || v[2] > '9')
        return -1;
    if (h->value_len > 3 && v[3] != ' ' && v[3] != '\t')
        return -1;
    out->status = (v[0] - '0') * 100 + (v[1] - '0') * 10 + (v[2] - '0');
    out->reason = v + 3;
    out->reason_len = h->value_len - 3;
    while (out->reason_len != 0 && (*out->reason == ' ' || *out->reason == '\t')) {
        ++out->reason;
        --out->reason_len;
    }
    return 0;
}

/* scheme ":" as in RFC 3986; anything else is a path or a relative reference */
static int is_absolute_url(const char *v, size_t len)
{
    if (len == 0 || !((v[0] | 0x20) >= 'a' && (v[0] | 0x20) <= 'z'))
        return 0;
    for (size_t i = 1; i != len; ++i) {
        unsigned char c = v[i];
        if (c == ':')
            return 1;
        if (!((c | 0x20) >= 'a' && (c | 0x20) <= 'z') && !(c >= '0' && c <= '9') && c != '+' && c != '-' && c != '.')
            return 0;
    }
    return 0;
}

/* Splits one line (without its line ending) into a header; -1 if malformed. */
static int parse_header_line(const char *line, size_t len, h2p_cgi_header_t *h)
{
    size_t i = 0;
    while (i != len && line[i] != ':') {
        if (!is_token_char((unsigned char)line[i]))
            return -1;
        ++i;
    }
    if (i == 0 || i == len)
        return -1;
    h->name = line;
    h->name_len = i;

    const char *v = line + i + 1, *end = line + len;
    while (v != end && (*v == ' ' || *v == '\t'))
        ++v;
    while (end != v && (end[-1] == ' ' || end[-1] == '\t'))
        --end;
    for (const char *c = v; c != end; ++c)
        if (!is_value_char((unsigned char)*c))
            return -1;
    h->value = v;
    h->value_len = end - v;
    return 0;
}

int h2p_cgi_parse_head(const char *src, size_t len, size_t max_head, h2p_cgi_head_t *out)
{
    if (max_head > INT_MAX)
        max_head = INT_MAX;
    size_t limit = len < max_head ? len : max_head, pos = 0;
    int have_status = 0;
    const h2p_cgi_header_t *location = NULL;

    out->status = 200;
    out->reason = "";
    out->reason_len = 0;
    out->local_redirect = 0;
    out->num_headers = 0;

    for (;;) {
        const char *nl = pos < limit ? memchr(src + pos, '\n', limit - pos) : NULL;
        if (nl == NULL)
            return len >= max_head ? -1 : -2;
        size_t line_len = nl - (src + pos);
        if (line_len != 0 && nl[-1] == '\r')
            --line_len;
        const char *line = src + pos;
        pos = nl + 1 - src;
        if (line_len == 0)
            break;

        h2p_cgi_header_t h;
        if (parse_header_line(line, line_len, &h) != 0)
            return -1;
        if (name_is(&h, "status")) {
            if (have_status || parse_status(&h, out) != 0)
                return -1;
            have_status = 1;
            continue;
        }
        if (out->num_headers == H2P_CGI_MAX_HEADERS)
            return -1;
        out->headers[out->num_headers] = h;
        if (name_is(&h, "location"))
            location = &out->headers[out->num_headers];
        ++out->num_headers;
    }

    /* RFC 3875 6.2.3/6.2.4: a redirect without Status: is a 302 */
    if (!have_status && location != NULL && location->value_len != 0) {
        out->status = 302;
        out->reason = "Found";
        out->reason_len = 5;
        const char *v = location->value;
        if (!is_absolute_url(v, location->value_len) && v[0] == '/' && (location->value_len == 1 || v[1] != '/'))
            out->local_redirect = 1;
    }
    return (int)pos;
}

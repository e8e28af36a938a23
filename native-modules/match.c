/* Pure matching functions of the request-phase modules: see match.h. */
#include "native-modules/match.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

/* ---- IP addresses ---------------------------------------------------------------------- */

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* ::ffff:a.b.c.d is a.b.c.d: a dual-stack listener reports IPv4 clients that way */
static void unmap_v4(h2p_ip_t *ip)
{
    if (ip->family == AF_INET6 && memcmp(ip->addr, v4_mapped_prefix, sizeof(v4_mapped_prefix)) == 0) {
        memmove(ip->addr, ip->addr + 12, 4);
        memset(ip->addr + 4, 0, 12);
        ip->family = AF_INET;
    }
}

int h2p_ip_from_sockaddr(const struct sockaddr *sa, socklen_t len, h2p_ip_t *out)
{
    memset(out, 0, sizeof(*out));
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        out->family = AF_INET;
        memcpy(out->addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        out->family = AF_INET6;
        memcpy(out->addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        unmap_v4(out);
        return 0;
    }
    return -1;
}

int h2p_ip_parse(const char *s, size_t len, h2p_ip_t *out)
{
    char text[INET6_ADDRSTRLEN];

    while (len != 0 && (*s == ' ' || *s == '\t')) {
        ++s;
        --len;
    }
    while (len != 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        --len;
    if (len != 0 && *s == '[') { /* "[v6]" or "[v6]:port" */
        const char *close = memchr(s, ']', len);
        if (close == NULL)
            return -1;
        len = close - s - 1;
        ++s;
    } else {
        const char *colon = memchr(s, ':', len);
        if (colon != NULL && memchr(colon + 1, ':', len - (colon + 1 - s)) == NULL)
            len = colon - s; /* "v4:port" (a bare v6 address has two colons at least) */
    }
    if (len == 0 || len >= sizeof(text))
        return -1;
    memcpy(text, s, len);
    text[len] = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, text, out->addr) == 1) {
        out->family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, text, out->addr) == 1) {
        out->family = AF_INET6;
        unmap_v4(out);
        return 0;
    }
    return -1;
}

int h2p_cidr_contains(const h2p_cidr_t *cidr, const h2p_ip_t *ip)
{
    if (cidr->family != ip->family)
        return 0;
    /* the parser cleared the host bits of the rule: compare whole bytes, then the partial one */
    unsigned full = cidr->prefix / 8, rest = cidr->prefix % 8;
    if (memcmp(cidr->addr, ip->addr, full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (ip->addr[full] & mask) == cidr->addr[full];
}

int h2p_cidr_list_contains(const h2p_cidr_t *list, size_t count, const h2p_ip_t *ip)
{
    for (size_t i = 0; i != count; ++i)
        if (h2p_cidr_contains(list + i, ip))
            return 1;
    return 0;
}

int h2p_forwarded_for_client(const char *value, size_t len, const h2p_cidr_t *trusted, size_t num_trusted, h2p_ip_t *client)
{
    size_t end = len;
    while (1) {
        size_t start = end;
        while (start != 0 && value[start - 1] != ',')
            --start;
        h2p_ip_t hop;
        int is_blank = 1;
        for (size_t i = start; i != end; ++i)
            if (value[i] != ' ' && value[i] != '\t')
                is_blank = 0;
        if (!is_blank) { /* "a, , b": empty elements are skipped, as RFC 7230's list syntax allows */
            if (h2p_ip_parse(value + start, end - start, &hop) != 0)
                return -1;
            *client = hop;
            if (!h2p_cidr_list_contains(trusted, num_trusted, &hop))
                return 1;
        }
        if (start == 0)
            return 0;
        end = start - 1;
    }
}

/* ---- URLs ------------------------------------------------------------------------------ */

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int is_escape(const char *s, size_t i, size_t len)
{
    return s[i] == '%' && i + 2 < len && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0;
}

unsigned h2p_url_scan(const char *path, size_t len)
{
    unsigned found = 0;
    size_t segment = 0, segment_end = SIZE_MAX; /* the current segment, up to its first ';' */
    for (size_t i = 0; i <= len; ++i) {
        if (i == len || path[i] == '/') {
            if (segment_end == SIZE_MAX)
                segment_end = i;
            /* "..;x" too: some application servers drop path parameters before they resolve dots */
            if (segment_end - segment == 2 && path[segment] == '.' && path[segment + 1] == '.')
                found |= H2P_URL_DOT_DOT;
            segment = i + 1;
            segment_end = SIZE_MAX;
            continue;
        }
        unsigned char c = path[i];
        if (c == ';' && segment_end == SIZE_MAX) {
            segment_end = i;
        } else if (c == '%') {
            found |= H2P_URL_PERCENT;
            if (i + 2 < len && path[i + 1] == '0' && path[i + 2] == '0')
                found |= H2P_URL_NUL;
        } else if (c == '\\') {
            found |= H2P_URL_BACKSLASH;
        } else if (c == '\0') {
            found |= H2P_URL_NUL;
        } else if (c >= 0x80) {
            found |= H2P_URL_HIGH_BIT;
        }
    }
    return found;
}

size_t h2p_url_decode(char *dst, const char *src, size_t len)
{
    size_t out = 0;
    for (size_t i = 0; i != len; ++i) {
        if (is_escape(src, i, len)) {
            dst[out++] = (char)(hex_value(src[i + 1]) << 4 | hex_value(src[i + 2]));
            i += 2;
        } else {
            dst[out++] = src[i];
        }
    }
    return out;
}

int h2p_url_has_escape(const char *s, size_t len)
{
    for (const char *p = s, *end = s + len; (p = memchr(p, '%', end - p)) != NULL; ++p)
        if (is_escape(s, p - s, len))
            return 1;
    return 0;
}

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

int h2p_contains_nocase(const char *haystack, size_t haystack_len, const char *needle, size_t needle_len)
{
    if (needle_len == 0)
        return 1;
    if (needle_len > haystack_len)
        return 0;
    unsigned char first = lower(needle[0]);
    for (size_t i = 0; i + needle_len <= haystack_len; ++i) {
        if (lower(haystack[i]) != first)
            continue;
        size_t j = 1;
        while (j != needle_len && lower(haystack[i + j]) == lower(needle[j]))
            ++j;
        if (j == needle_len)
            return 1;
    }
    return 0;
}

size_t h2p_segment_canonical_len(const char *segment, size_t len)
{
    const char *semicolon = memchr(segment, ';', len);
    if (semicolon != NULL)
        len = semicolon - segment;
    while (len != 0 && (segment[len - 1] == '.' || segment[len - 1] == ' '))
        --len;
    return len;
}

size_t h2p_segment_extension(const char *segment, size_t len, const char **ext)
{
    for (size_t i = len; i != 0; --i) {
        if (segment[i - 1] == '.') {
            *ext = segment + i - 1;
            return len - (i - 1);
        }
    }
    *ext = segment + len;
    return 0;
}

/* ---- wildcards ------------------------------------------------------------------------- */

int h2p_wildcard_match(const char *pattern, size_t pattern_len, const char *s, size_t len, h2p_capture_t *captures,
                       size_t *num_captures)
{
    size_t p = 0, i = 0, stars = 0;
    /* the last star seen: where it is in the pattern, its index, how far it reaches in s */
    size_t star_p = SIZE_MAX, star_k = 0, star_end = 0;

    while (i != len) {
        if (p != pattern_len && pattern[p] == '*') {
            if (stars < H2P_WILDCARD_MAX_CAPTURES)
                captures[stars] = (h2p_capture_t){i, 0};
            star_p = p++;
            star_k = stars++;
            star_end = i;
        } else if (p != pattern_len && pattern[p] == s[i]) {
            ++p;
            ++i;
        } else if (star_p != SIZE_MAX) {
            /* the last star takes one byte more; the stars before it keep what they have */
            i = ++star_end;
            p = star_p + 1;
            stars = star_k + 1;
            if (star_k < H2P_WILDCARD_MAX_CAPTURES)
                captures[star_k].len = star_end - captures[star_k].offset;
        } else {
            return 0;
        }
    }
    for (; p != pattern_len && pattern[p] == '*'; ++p, ++stars)
        if (stars < H2P_WILDCARD_MAX_CAPTURES)
            captures[stars] = (h2p_capture_t){len, 0};
    if (p != pattern_len)
        return 0;
    *num_captures = stars < H2P_WILDCARD_MAX_CAPTURES ? stars : H2P_WILDCARD_MAX_CAPTURES;
    return 1;
}

/* ---- redirect targets ------------------------------------------------------------------ */

/*
 * A capture can never change the scheme, userinfo, host or port of a redirect target.  What `to`
 * says about them is read from its literal text once per expansion:
 *   - "scheme://authority..." and "//authority...": the authority is the literal text up to the
 *     first '/', '?', '#' or $N; whatever follows starts with '/', '?' or '#' (a '/' is put in
 *     when it would not), so "https://www.example.com$1" cannot become "...com@evil.com" or
 *     "...com.evil.com" or "...com:8080";
 *   - anything else is a reference relative to the request's URL: a capture can neither make its
 *     first segment a scheme (':' there is encoded) nor make it start with "//" (a network-path
 *     reference to another host: the second '/' is dropped);
 *   - captures are path text: '?', '#', '\', '@', '%', controls, blanks and non-ASCII bytes are
 *     percent-encoded.
 * A `to` with $N in its scheme or authority ("https://$1.example.com", "https://host:$1"), or
 * with a scheme but no "//host" before its first $N ("https:$1"), is refused when the
 * configuration is read (h2p_target_check).
 */

static int is_capture_ref(const char *to, size_t i, size_t to_len)
{
    return to[i] == '$' && i + 1 != to_len && to[i + 1] >= '1' && to[i + 1] <= '9';
}

static int is_scheme_char(char c, int first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (!first && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'));
}

/* The length of "scheme:" at the start of `to`, or 0. */
static size_t scheme_len(const char *to, size_t to_len)
{
    size_t i = 0;
    while (i != to_len && is_scheme_char(to[i], i == 0))
        ++i;
    return i != 0 && i != to_len && to[i] == ':' ? i + 1 : 0;
}

typedef struct target_shape {
    size_t authority_start, authority_end; /* authority_end == SIZE_MAX: `to` has no authority */
    size_t scheme_len;
} target_shape_t;

static target_shape_t target_shape(const char *to, size_t to_len)
{
    target_shape_t shape = {0, SIZE_MAX, scheme_len(to, to_len)};
    size_t i = shape.scheme_len;
    if (to_len - i >= 2 && to[i] == '/' && to[i + 1] == '/') {
        shape.authority_start = i + 2;
        for (i += 2; i != to_len && to[i] != '/' && to[i] != '?' && to[i] != '#' && !is_capture_ref(to, i, to_len); ++i)
            ;
        shape.authority_end = i;
    }
    return shape;
}

const char *h2p_target_check(const char *to, size_t to_len)
{
    size_t first_capture = 0;
    while (first_capture != to_len && !is_capture_ref(to, first_capture, to_len))
        ++first_capture;
    if (first_capture == to_len)
        return NULL; /* no captures: `to` is what the administrator wrote */
    /* "$1:" or "x$1y:" would let a capture write the scheme (a ':' in the first segment) */
    size_t first_segment_end = 0;
    while (first_segment_end != to_len && to[first_segment_end] != '/' && to[first_segment_end] != '?' &&
           to[first_segment_end] != '#')
        ++first_segment_end;
    for (size_t i = first_capture; i < first_segment_end; ++i)
        if (to[i] == ':')
            return "a capture ($N) in the scheme: a capture cannot choose the scheme";
    target_shape_t shape = target_shape(to, to_len);
    if (shape.authority_end == SIZE_MAX)
        return shape.scheme_len != 0 ? "a scheme without //host before the first capture ($N): write scheme://host/..." : NULL;
    /* "https://$1.example.com", "https://host:$1", "https://www.example.$1": the capture was meant
     * to be part of the authority (elsewhere a capture right after it starts the path) */
    if (shape.authority_end == shape.authority_start || strchr(":@.[", to[shape.authority_end - 1]) != NULL)
        return "a capture ($N) in the authority: a capture cannot choose the host, port or user";
    return NULL;
}

/* Bytes a capture may carry into a Location as they are; the rest is percent-encoded. */
static int is_plain_in_path(unsigned char c)
{
    /* (NUL is tested apart: strchr() would find the set's own terminator) */
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("-._~/!$'()*,;:", c) != NULL);
}

typedef struct writer {
    char *out;
    size_t cap, len;
    size_t path_start;    /* where the target's path starts in the output; SIZE_MAX until known */
    int path_slash;       /* the path starts with '/': 1 = written by `to` itself, 2 = by a capture or put in */
    int authority_open;   /* right after the literal authority: the next byte must be '/', '?' or '#' */
    int in_first_segment; /* a relative target before its first '/', '?' or '#' */
} writer_t;

static void put(writer_t *w, char c)
{
    if (w->len < w->cap)
        w->out[w->len] = c;
    w->len++;
}

/* A byte of the target (the writer's decisions never read `out`: measuring gives the same length). */
static void put_target(writer_t *w, char c, int from_capture)
{
    if (w->authority_open) {
        w->authority_open = 0;
        if (c != '/' && c != '?' && c != '#') {
            w->path_slash = 2;
            put(w, '/');
        }
    }
    if (w->path_start == SIZE_MAX) {
        /* scheme and authority: literal text only */
    } else if (w->len == w->path_start) {
        w->path_slash = c == '/' ? (from_capture ? 2 : 1) : 0;
    } else if (w->len == w->path_start + 1 && c == '/' && w->path_slash != 0 && (from_capture || w->path_slash == 2)) {
        return; /* "/" + "/evil.com" would be a reference to the host evil.com */
    }
    if (c == '/' || c == '?' || c == '#')
        w->in_first_segment = 0;
    put(w, c);
}

static void put_escaped(writer_t *w, unsigned char c)
{
    static const char hex[] = "0123456789ABCDEF";
    put_target(w, '%', 1);
    put(w, hex[c >> 4]);
    put(w, hex[c & 15]);
}

/* `to` (from offset `from` of the whole target, whose shape is `shape`) with its $N replaced;
 * says whether it wrote a '?' of its own. */
static int expand_captures(writer_t *w, const char *to, size_t from, size_t to_len, const target_shape_t *shape, const char *s,
                           const h2p_capture_t *captures, size_t num_captures)
{
    int has_query = 0;
    for (size_t i = from; i != to_len; ++i) {
        if (i == shape->authority_end) {
            w->authority_open = 1;
            w->path_start = w->len;
        }
        if (is_capture_ref(to, i, to_len)) {
            size_t k = to[++i] - '1';
            for (size_t j = 0; k < num_captures && j != captures[k].len; ++j) {
                unsigned char c = s[captures[k].offset + j];
                if (is_plain_in_path(c) && !(c == ':' && w->in_first_segment))
                    put_target(w, c, 1);
                else
                    put_escaped(w, c);
            }
            continue;
        }
        if (to[i] == '?')
            has_query = 1;
        put_target(w, to[i], 0);
    }
    return has_query;
}

size_t h2p_target_expand(char *out, size_t cap, const char *to, size_t to_len, const char *s, const h2p_capture_t *captures,
                         size_t num_captures, const char *query, size_t query_len)
{
    target_shape_t shape = target_shape(to, to_len);
    writer_t w = {out, cap, 0};
    /* a relative target's path starts at once; an absolute one's after its authority */
    w.path_start = shape.authority_end == SIZE_MAX && shape.scheme_len == 0 ? 0 : SIZE_MAX;
    w.in_first_segment = w.path_start == 0;
    /* the client's query goes before a fragment of `to` ("/new#top" -> "/new?q=1#top") */
    const char *hash = memchr(to, '#', to_len);
    size_t before_hash = hash != NULL ? (size_t)(hash - to) : to_len;

    int has_query = expand_captures(&w, to, 0, before_hash, &shape, s, captures, num_captures);
    if (query_len != 0) {
        put_target(&w, has_query ? '&' : '?', 0);
        for (size_t i = 0; i != query_len; ++i) {
            unsigned char c = query[i];
            /* the query goes on as the client sent it, but never with bytes a header may not carry */
            if (c <= 0x20 || c >= 0x7f)
                put_escaped(&w, c);
            else
                put(&w, c);
        }
    }
    expand_captures(&w, to, before_hash, to_len, &shape, s, captures, num_captures);
    return w.len;
}

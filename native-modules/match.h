/*
 * Pure matching functions of the request-phase modules (no libh2o, no allocation), kept apart
 * so that unit tests can reach them: IP addresses and CIDRs (ip_restriction), URL scanning and
 * decoding (request_filtering), wildcard patterns with captures (redirect).
 */
#ifndef H2POOL_MATCH_H
#define H2POOL_MATCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "frontend/config.h"

/* ---- IP addresses ---------------------------------------------------------------------- */

/* An address in network byte order: 4 bytes for AF_INET, 16 for AF_INET6. */
typedef struct h2p_ip {
    int family;
    uint8_t addr[16];
} h2p_ip_t;

/* From a socket address; an IPv4-mapped IPv6 address (::ffff:a.b.c.d) becomes AF_INET.  0 or -1. */
int h2p_ip_from_sockaddr(const struct sockaddr *sa, socklen_t len, h2p_ip_t *out);

/*
 * From one X-Forwarded-For element: surrounding blanks, "[v6]", "[v6]:port" and "v4:port" are
 * accepted; IPv4-mapped IPv6 becomes AF_INET.  0 or -1.
 */
int h2p_ip_parse(const char *s, size_t len, h2p_ip_t *out);

/* Whether `ip` lies in `cidr` (an AF_INET rule never matches an AF_INET6 address, nor the reverse). */
int h2p_cidr_contains(const h2p_cidr_t *cidr, const h2p_ip_t *ip);
int h2p_cidr_list_contains(const h2p_cidr_t *list, size_t count, const h2p_ip_t *ip);

/*
 * One X-Forwarded-For header value, walked from the right: each address in `trusted` is a
 * proxy that forwarded the request, the first one that is not is the client.  Returns 1 with
 * *client set to it; 0 when every address was trusted (*client = the left-most of them, so a
 * caller can go on with the previous header); -1 at an element that is no address (*client
 * is left at the last trusted hop: the walk stops there).
 */
int h2p_forwarded_for_client(const char *value, size_t len, const h2p_cidr_t *trusted, size_t num_trusted, h2p_ip_t *client);

/* ---- URLs ------------------------------------------------------------------------------ */

/* What one pass over a raw request path (without the query) finds. */
enum {
    H2P_URL_PERCENT = 0x1,   /* a '%' (so the decoded path may differ from the raw one) */
    H2P_URL_BACKSLASH = 0x2, /* '\' */
    H2P_URL_NUL = 0x4,       /* a NUL byte, or "%00" */
    H2P_URL_HIGH_BIT = 0x8,  /* a byte >= 0x80 */
    H2P_URL_DOT_DOT = 0x10   /* a ".." segment */
};
unsigned h2p_url_scan(const char *path, size_t len);

/* Decodes every %XX once (an incomplete escape stays as written); `dst` holds `len` bytes. Returns the length. */
size_t h2p_url_decode(char *dst, const char *src, size_t len);

/* Whether `s` contains '%' followed by two hex digits. */
int h2p_url_has_escape(const char *s, size_t len);

/* Case-insensitive (ASCII) substring search. */
int h2p_contains_nocase(const char *haystack, size_t haystack_len, const char *needle, size_t needle_len);

/*
 * A path segment as a Windows file system would name it: cut at the first ';' (path
 * parameters) and without trailing dots and blanks ("secret.ini." is "secret.ini").
 */
size_t h2p_segment_canonical_len(const char *segment, size_t len);

/* The extension of a canonical segment, from its last dot (".php.bak" -> ".bak"); len 0 = none. */
size_t h2p_segment_extension(const char *segment, size_t len, const char **ext);

/* ---- wildcards ------------------------------------------------------------------------- */

#define H2P_WILDCARD_MAX_CAPTURES 9

typedef struct h2p_capture {
    size_t offset, len;
} h2p_capture_t;

/*
 * Matches all of `s` against `pattern`, where each '*' matches any run of bytes (also '/' and
 * the empty one) and captures it; every other byte matches itself.  Earlier stars take as
 * little as they can (so "/a/x/y" against "/a/ * / *" gives "x" and "y"); linear backtracking,
 * no recursion.  Captures past H2P_WILDCARD_MAX_CAPTURES are matched but not recorded.
 * Returns 1 on a match with *num_captures set, else 0.
 */
int h2p_wildcard_match(const char *pattern, size_t pattern_len, const char *s, size_t len, h2p_capture_t *captures,
                       size_t *num_captures);

/*
 * Writes `to` with $1..$9 replaced by the captures of `s` (percent-encoded where a byte may not
 * stand in a URL path as it is; a capture that does not exist is empty; any other '$' is
 * literal), then `query` (without its '?') after '?' or '&' when it is not empty.  A capture
 * never changes the scheme, userinfo, host or port `to` names (see match.c).  Writes at most
 * `cap` bytes into `out` (which may be NULL when cap is 0) and returns the full length.
 */
/*
 * Whether `to` can be a redirect target with captures: NULL, or why not (a $N in its scheme or
 * authority, or a scheme without "//host" before the first $N).
 */
const char *h2p_target_check(const char *to, size_t to_len);

size_t h2p_target_expand(char *out, size_t cap, const char *to, size_t to_len, const char *s, const h2p_capture_t *captures,
                         size_t num_captures, const char *query, size_t query_len);

#endif

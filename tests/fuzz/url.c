/*
 * URL scanning, decoding and matching helpers of native-modules/match.c, on the request path
 * and header values as a client sends them (request_filtering, ip_restriction).
 *
 * Checks, besides the sanitizers: h2p_url_scan's flags against a plain reading of what they
 * mean, decoding never grows a path and changes nothing without an escape, the canonical
 * segment and extension stay inside the segment, the case-insensitive search agrees with
 * memmem on lower-cased copies, and an address that parses prints and parses back to itself.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "native-modules/match.h"

/* A segment (cut at its first ';') that is "..". */
static int has_dot_dot_segment(const char *path, size_t len)
{
    size_t start = 0;
    for (size_t i = 0; i <= len; ++i) {
        if (i != len && path[i] != '/')
            continue;
        const char *semicolon = memchr(path + start, ';', i - start);
        size_t seg_len = semicolon != NULL ? (size_t)(semicolon - (path + start)) : i - start;
        if (seg_len == 2 && path[start] == '.' && path[start + 1] == '.')
            return 1;
        start = i + 1;
    }
    return 0;
}

static void check_scan(const char *path, size_t len)
{
    unsigned found = h2p_url_scan(path, len), want = 0;
    if (memchr(path, '%', len) != NULL)
        want |= H2P_URL_PERCENT;
    if (memchr(path, '\\', len) != NULL)
        want |= H2P_URL_BACKSLASH;
    if (memchr(path, '\0', len) != NULL || memmem(path, len, "%00", 3) != NULL)
        want |= H2P_URL_NUL;
    for (size_t i = 0; i != len; ++i)
        if ((unsigned char)path[i] >= 0x80)
            want |= H2P_URL_HIGH_BIT;
    if (has_dot_dot_segment(path, len))
        want |= H2P_URL_DOT_DOT;
    if (found != want)
        abort();
}

static void check_decode(const char *path, size_t len)
{
    char *decoded = malloc(len + 1);
    size_t decoded_len = h2p_url_decode(decoded, path, len);
    if (decoded_len > len)
        abort();
    if (!h2p_url_has_escape(path, len) && (decoded_len != len || memcmp(decoded, path, len) != 0))
        abort();
    if (h2p_url_has_escape(path, len) && decoded_len == len)
        abort(); /* every escape takes three bytes to one */
    check_scan(decoded, decoded_len);
    char *twice = malloc(decoded_len + 1);
    h2p_url_decode(twice, decoded, decoded_len);
    free(twice);
    free(decoded);
}

static void check_segments(const char *path, size_t len)
{
    const char *p = path, *end = path + len;
    while (p <= end) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        size_t seg_len = slash != NULL ? (size_t)(slash - p) : (size_t)(end - p);
        size_t canonical = h2p_segment_canonical_len(p, seg_len);
        if (canonical > seg_len || (canonical != 0 && (p[canonical - 1] == '.' || p[canonical - 1] == ' ')) ||
            memchr(p, ';', canonical) != NULL)
            abort();
        const char *ext;
        size_t ext_len = h2p_segment_extension(p, canonical, &ext);
        if (ext < p || ext + ext_len != p + canonical || (ext_len != 0 && *ext != '.') ||
            (ext_len > 1 && memchr(ext + 1, '.', ext_len - 1) != NULL))
            abort();
        if (slash == NULL)
            break;
        p = slash + 1;
    }
}

static void check_contains_nocase(const char *s, size_t len)
{
    if (len == 0)
        return;
    size_t needle_len = (unsigned char)s[0] % 16;
    if (needle_len > len - 1)
        needle_len = len - 1;
    const char *needle = s + 1, *haystack = s + 1 + needle_len;
    size_t haystack_len = len - 1 - needle_len;
    char *lower_needle = malloc(needle_len + 1), *lower_haystack = malloc(haystack_len + 1);
    for (size_t i = 0; i != needle_len; ++i)
        lower_needle[i] = needle[i] >= 'A' && needle[i] <= 'Z' ? needle[i] + 32 : needle[i];
    for (size_t i = 0; i != haystack_len; ++i)
        lower_haystack[i] = haystack[i] >= 'A' && haystack[i] <= 'Z' ? haystack[i] + 32 : haystack[i];
    int want = needle_len == 0 || memmem(lower_haystack, haystack_len, lower_needle, needle_len) != NULL;
    if (h2p_contains_nocase(haystack, haystack_len, needle, needle_len) != want)
        abort();
    free(lower_needle);
    free(lower_haystack);
}

static void check_ip(const char *s, size_t len)
{
    h2p_ip_t ip, again;
    if (h2p_ip_parse(s, len, &ip) != 0)
        return;
    if (ip.family != AF_INET && ip.family != AF_INET6)
        abort();
    char text[INET6_ADDRSTRLEN];
    if (inet_ntop(ip.family, ip.addr, text, sizeof(text)) == NULL || h2p_ip_parse(text, strlen(text), &again) != 0 ||
        memcmp(&ip, &again, sizeof(ip)) != 0)
        abort();
}

static void check_forwarded_for(const char *value, size_t len)
{
    static h2p_cidr_t trusted[3];
    static int parsed;
    if (!parsed) {
        if (h2p_parse_cidr("10.0.0.0/8", trusted) != 0 || h2p_parse_cidr("::1", trusted + 1) != 0 ||
            h2p_parse_cidr("192.168.1.0/24", trusted + 2) != 0)
            abort();
        parsed = 1;
    }
    h2p_ip_t client;
    memset(&client, 0, sizeof(client));
    int r = h2p_forwarded_for_client(value, len, trusted, 3, &client);
    if (r == 1 && h2p_cidr_list_contains(trusted, 3, &client))
        abort();
    if (r == 0 && !h2p_cidr_list_contains(trusted, 3, &client) && client.family != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    check_scan(s, size);
    check_decode(s, size);
    check_segments(s, size);
    check_contains_nocase(s, size);
    check_ip(s, size);
    check_forwarded_for(s, size);
    return 0;
}

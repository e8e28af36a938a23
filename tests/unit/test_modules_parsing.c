/*
 * Unit tests for native-modules/match.c: IP addresses and CIDRs, X-Forwarded-For walking,
 * URL scanning and decoding, path segments, wildcard captures and redirect expansion.
 *
 * Inputs are copied into a malloc of exactly their length, so AddressSanitizer reports any
 * read past the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>
#include "frontend/config.h"
#include "native-modules/match.h"

/* exact-size heap copy: reads past len hit the redzone */
static char *exact_copy(const char *src, size_t len)
{
    char *p = malloc(len == 0 ? 1 : len);
    assert_non_null(p);
    if (len != 0)
        memcpy(p, src, len);
    return p;
}

static h2p_cidr_t cidr(const char *text)
{
    h2p_cidr_t c;
    assert_int_equal(h2p_parse_cidr(text, &c), 0);
    return c;
}

static h2p_ip_t ip(const char *text)
{
    h2p_ip_t out;
    char *copy = exact_copy(text, strlen(text));
    assert_int_equal(h2p_ip_parse(copy, strlen(text), &out), 0);
    free(copy);
    return out;
}

static int ip_parses(const char *text)
{
    h2p_ip_t out;
    char *copy = exact_copy(text, strlen(text));
    int ret = h2p_ip_parse(copy, strlen(text), &out);
    free(copy);
    return ret == 0;
}

static int in(const char *cidr_text, const char *ip_text)
{
    h2p_cidr_t c = cidr(cidr_text);
    h2p_ip_t i = ip(ip_text);
    return h2p_cidr_contains(&c, &i);
}

/* ---- IP addresses ---------------------------------------------------------------------- */

static void test_cidr_ipv4(void **state)
{
    assert_true(in("127.0.0.0/8", "127.0.0.1"));
    assert_true(in("127.0.0.0/8", "127.255.255.255"));
    assert_false(in("127.0.0.0/8", "128.0.0.1"));
    assert_true(in("10.1.2.3", "10.1.2.3"));
    assert_false(in("10.1.2.3", "10.1.2.4"));
    assert_true(in("192.168.0.0/23", "192.168.1.200"));
    assert_false(in("192.168.0.0/23", "192.168.2.1"));
    assert_true(in("0.0.0.0/0", "8.8.8.8"));
    assert_true(in("10.0.0.7/8", "10.200.0.1")); /* host bits of the rule are ignored */
}

static void test_cidr_ipv6(void **state)
{
    assert_true(in("::1", "::1"));
    assert_false(in("::1", "::2"));
    assert_true(in("2001:db8::/32", "2001:db8:ffff::1"));
    assert_false(in("2001:db8::/32", "2001:db9::1"));
    assert_true(in("fe80::/10", "febf::1"));
    assert_false(in("fe80::/10", "fec0::1"));
    assert_true(in("::/0", "2001:db8::1"));
}

static void test_cidr_family_mismatch(void **state)
{
    assert_false(in("0.0.0.0/0", "::1"));
    assert_false(in("::/0", "127.0.0.1"));
}

static void test_v4_mapped_is_ipv4(void **state)
{
    h2p_ip_t i = ip("::ffff:127.0.0.1");
    assert_int_equal(i.family, AF_INET);
    assert_true(in("127.0.0.0/8", "::ffff:127.0.0.1"));
    assert_true(in("127.0.0.0/8", "::FFFF:7f00:1"));

    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::ffff:10.1.2.3", &sin6.sin6_addr);
    assert_int_equal(h2p_ip_from_sockaddr((struct sockaddr *)&sin6, sizeof(sin6), &i), 0);
    assert_int_equal(i.family, AF_INET);
    h2p_cidr_t c = cidr("10.0.0.0/8");
    assert_true(h2p_cidr_contains(&c, &i));

    inet_pton(AF_INET6, "::1", &sin6.sin6_addr);
    assert_int_equal(h2p_ip_from_sockaddr((struct sockaddr *)&sin6, sizeof(sin6), &i), 0);
    assert_int_equal(i.family, AF_INET6);

    struct sockaddr_in sin = {.sin_family = AF_INET};
    inet_pton(AF_INET, "192.0.2.9", &sin.sin_addr);
    assert_int_equal(h2p_ip_from_sockaddr((struct sockaddr *)&sin, sizeof(sin), &i), 0);
    c = cidr("192.0.2.0/24");
    assert_true(h2p_cidr_contains(&c, &i));
    assert_int_equal(h2p_ip_from_sockaddr((struct sockaddr *)&sin, 4, &i), -1); /* short */
}

static void test_ip_parse_forms(void **state)
{
    assert_true(ip_parses("1.2.3.4"));
    assert_true(ip_parses("  1.2.3.4\t"));
    assert_true(ip_parses("1.2.3.4:8080"));
    assert_true(ip_parses("[::1]"));
    assert_true(ip_parses("[2001:db8::1]:443"));
    assert_true(ip_parses("2001:db8::1"));
    assert_false(ip_parses(""));
    assert_false(ip_parses("   "));
    assert_false(ip_parses("unknown"));
    assert_false(ip_parses("1.2.3"));
    assert_false(ip_parses("1.2.3.4.5"));
    assert_false(ip_parses("[::1"));
    assert_false(ip_parses("999.1.1.1"));
    assert_false(ip_parses("1.2.3.4/8"));
    assert_false(ip_parses("_hidden"));
    char longer[100];
    memset(longer, '1', sizeof(longer));
    h2p_ip_t out;
    assert_int_equal(h2p_ip_parse(longer, sizeof(longer), &out), -1);
    assert_true(in("1.2.3.4", "1.2.3.4:80"));
}

static int forwarded(const char *value, const char *trusted_text, char *client_text)
{
    h2p_cidr_t trusted[4];
    size_t n = 0;
    char buf[200];
    snprintf(buf, sizeof(buf), "%s", trusted_text);
    for (char *tok = strtok(buf, " "); tok != NULL; tok = strtok(NULL, " "))
        trusted[n++] = cidr(tok);
    h2p_ip_t client = ip("0.0.0.0");
    char *copy = exact_copy(value, strlen(value));
    int ret = h2p_forwarded_for_client(copy, strlen(value), trusted, n, &client);
    free(copy);
    inet_ntop(client.family, client.addr, client_text, INET6_ADDRSTRLEN);
    return ret;
}

static void test_forwarded_for_walk(void **state)
{
    char client[INET6_ADDRSTRLEN];
    assert_int_equal(forwarded("1.1.1.1", "127.0.0.1", client), 1);
    assert_string_equal(client, "1.1.1.1");
    /* the client wrote 6.6.6.6 itself; the proxy appended the address it saw */
    assert_int_equal(forwarded("6.6.6.6, 2.2.2.2", "127.0.0.1", client), 1);
    assert_string_equal(client, "2.2.2.2");
    /* a chain of trusted proxies is skipped */
    assert_int_equal(forwarded("6.6.6.6, 2.2.2.2, 10.0.0.5, 10.0.0.6", "10.0.0.0/8 127.0.0.1", client), 1);
    assert_string_equal(client, "2.2.2.2");
    /* every element trusted: the left-most one */
    assert_int_equal(forwarded("10.0.0.1,10.0.0.2", "10.0.0.0/8", client), 0);
    assert_string_equal(client, "10.0.0.1");
    /* garbage stops the walk at the last trusted hop */
    assert_int_equal(forwarded("1.1.1.1, junk, 10.0.0.2", "10.0.0.0/8", client), -1);
    assert_string_equal(client, "10.0.0.2");
    assert_int_equal(forwarded("junk", "10.0.0.0/8", client), -1);
    assert_string_equal(client, "0.0.0.0");
    /* empty elements are skipped; ports and brackets are accepted */
    assert_int_equal(forwarded(" , 3.3.3.3:1234 , ,", "127.0.0.1", client), 1);
    assert_string_equal(client, "3.3.3.3");
    assert_int_equal(forwarded("[2001:db8::7]:99", "127.0.0.1", client), 1);
    assert_string_equal(client, "2001:db8::7");
    assert_int_equal(forwarded("", "127.0.0.1", client), 0);
    assert_int_equal(forwarded("::ffff:4.4.4.4", "127.0.0.1", client), 1);
    assert_string_equal(client, "4.4.4.4");
}

/* ---- URLs ------------------------------------------------------------------------------ */

static unsigned scan(const char *s)
{
    char *copy = exact_copy(s, strlen(s));
    unsigned ret = h2p_url_scan(copy, strlen(s));
    free(copy);
    return ret;
}

static void test_url_scan(void **state)
{
    assert_int_equal(scan("/index.html"), 0);
    assert_int_equal(scan("/"), 0);
    assert_int_equal(scan(""), 0);
    assert_int_equal(scan("/a/../b"), H2P_URL_DOT_DOT);
    assert_int_equal(scan("/a/.."), H2P_URL_DOT_DOT);
    assert_int_equal(scan(".."), H2P_URL_DOT_DOT);
    assert_int_equal(scan("/..;/secret"), H2P_URL_DOT_DOT);
    assert_int_equal(scan("/..;x=1/secret"), H2P_URL_DOT_DOT);
    assert_int_equal(scan("/.../x"), 0);
    assert_int_equal(scan("/..a/x"), 0);
    assert_int_equal(scan("/a..b/x"), 0);
    assert_int_equal(scan("/a;../x"), 0);
    assert_int_equal(scan("/a%2e%2e"), H2P_URL_PERCENT);
    assert_int_equal(scan("/a%00"), H2P_URL_PERCENT | H2P_URL_NUL);
    assert_int_equal(scan("/a%0"), H2P_URL_PERCENT);
    assert_int_equal(scan("/a\\b"), H2P_URL_BACKSLASH);
    assert_int_equal(scan("/caf\xc3\xa9"), H2P_URL_HIGH_BIT);
    assert_int_equal(h2p_url_scan("/a\0b", 4), H2P_URL_NUL);
}

static void decode_is(const char *in_text, const char *expected)
{
    size_t len = strlen(in_text);
    char *copy = exact_copy(in_text, len), *out = malloc(len + 1);
    size_t n = h2p_url_decode(out, copy, len);
    assert_int_equal(n, strlen(expected));
    assert_memory_equal(out, expected, n);
    free(copy);
    free(out);
}

static void test_url_decode(void **state)
{
    decode_is("/a%2fb", "/a/b");
    decode_is("/%2E%2e/x", "/../x");
    decode_is("/%252e", "/%2e");
    decode_is("/100%", "/100%");
    decode_is("/100%2", "/100%2");
    decode_is("/%zz", "/%zz");
    decode_is("%41", "A");
    decode_is("", "");
    decode_is("/%c0%ae", "/\xc0\xae");
}

static int has_escape(const char *s)
{
    char *copy = exact_copy(s, strlen(s));
    int ret = h2p_url_has_escape(copy, strlen(s));
    free(copy);
    return ret;
}

static void test_url_has_escape(void **state)
{
    assert_true(has_escape("/%2e"));
    assert_true(has_escape("/x%41"));
    assert_false(has_escape("/100%"));
    assert_false(has_escape("/100%4"));
    assert_true(has_escape("/%%41x")); /* "%41" after a lone '%' still counts */
    assert_false(has_escape("/%g1"));
    assert_false(has_escape(""));
}

static void test_contains_nocase(void **state)
{
    assert_true(h2p_contains_nocase("/A/Admin.PHP", 12, "admin", 5));
    assert_true(h2p_contains_nocase("abc", 3, "ABC", 3));
    assert_false(h2p_contains_nocase("ab", 2, "abc", 3));
    assert_false(h2p_contains_nocase("xaxbx", 5, "ab", 2));
    assert_true(h2p_contains_nocase("x", 1, "", 0));
}

static void extension_is(const char *segment, const char *expected)
{
    size_t len = strlen(segment);
    char *copy = exact_copy(segment, len);
    const char *ext;
    size_t n = h2p_segment_extension(copy, h2p_segment_canonical_len(copy, len), &ext);
    assert_int_equal(n, strlen(expected));
    assert_memory_equal(ext, expected, n);
    free(copy);
}

static void test_segment_extension(void **state)
{
    extension_is("index.php", ".php");
    extension_is("index.php.bak", ".bak");
    extension_is("config.ini.", ".ini");
    extension_is("config.ini. . ", ".ini");
    extension_is("config.ini;.txt", ".ini");
    extension_is("config.INI", ".INI");
    extension_is("README", "");
    extension_is(".htaccess", ".htaccess");
    extension_is("...", "");
    extension_is("", "");
    assert_int_equal(h2p_segment_canonical_len("bin;x", 5), 3);
    assert_int_equal(h2p_segment_canonical_len(".git.", 5), 4);
}

/* ---- wildcards ------------------------------------------------------------------------- */

static int wildcard(const char *pattern, const char *s, h2p_capture_t *caps, size_t *n)
{
    char *p = exact_copy(pattern, strlen(pattern)), *copy = exact_copy(s, strlen(s));
    int ret = h2p_wildcard_match(p, strlen(pattern), copy, strlen(s), caps, n);
    free(p);
    free(copy);
    return ret;
}

#define assert_capture(s, cap, text)                                                                                               \
    do {                                                                                                                           \
        assert_int_equal((cap).len, strlen(text));                                                                                 \
        assert_memory_equal((s) + (cap).offset, text, (cap).len);                                                                  \
    } while (0)

static void test_wildcard_exact(void **state)
{
    h2p_capture_t caps[H2P_WILDCARD_MAX_CAPTURES];
    size_t n = 99;
    assert_true(wildcard("/old", "/old", caps, &n));
    assert_int_equal(n, 0);
    assert_false(wildcard("/old", "/old/", caps, &n));
    assert_false(wildcard("/old", "/ol", caps, &n));
    assert_false(wildcard("/old", "/OLD", caps, &n));
    assert_true(wildcard("", "", caps, &n));
}

static void test_wildcard_captures(void **state)
{
    h2p_capture_t caps[H2P_WILDCARD_MAX_CAPTURES];
    size_t n;
    const char *s = "/old/a/b.html";
    assert_true(wildcard("/old/*", s, caps, &n));
    assert_int_equal(n, 1);
    assert_capture(s, caps[0], "a/b.html");

    assert_true(wildcard("/old/*/*", s, caps, &n));
    assert_int_equal(n, 2);
    assert_capture(s, caps[0], "a");
    assert_capture(s, caps[1], "b.html");

    assert_true(wildcard("/old/*.html", s, caps, &n));
    assert_capture(s, caps[0], "a/b");

    assert_true(wildcard("*", s, caps, &n));
    assert_capture(s, caps[0], "/old/a/b.html");

    s = "/old/";
    assert_true(wildcard("/old/*", s, caps, &n));
    assert_capture(s, caps[0], "");
    assert_false(wildcard("/old/*", "/old", caps, &n));

    s = "/a.html.html";
    assert_true(wildcard("/*.html", s, caps, &n));
    assert_capture(s, caps[0], "a.html");

    s = "/x-y-z";
    assert_true(wildcard("/*-*", s, caps, &n));
    assert_capture(s, caps[0], "x");
    assert_capture(s, caps[1], "y-z");

    s = "/ab";
    assert_true(wildcard("/**b", s, caps, &n));
    assert_int_equal(n, 2);
    assert_capture(s, caps[0], "");
    assert_capture(s, caps[1], "a");

    assert_true(wildcard("/ab**", s, caps, &n));
    assert_int_equal(n, 2);
    assert_capture(s, caps[0], "");
    assert_capture(s, caps[1], "");

    assert_false(wildcard("/*c", "/ab", caps, &n));
    assert_false(wildcard("/a*b*c", "/a-b-", caps, &n));
}

static void test_wildcard_many_stars(void **state)
{
    h2p_capture_t caps[H2P_WILDCARD_MAX_CAPTURES];
    size_t n;
    const char *s = "/1/2/3/4/5/6/7/8/9/10/11";
    assert_true(wildcard("/*/*/*/*/*/*/*/*/*/*/*", s, caps, &n));
    assert_int_equal(n, H2P_WILDCARD_MAX_CAPTURES);
    assert_capture(s, caps[0], "1");
    assert_capture(s, caps[8], "9");

    /* a pattern that would be exponential with naive backtracking stays fast */
    char big[20001];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_false(wildcard("*a*a*a*a*a*a*a*a*a*a*a*b", big, caps, &n));
    assert_true(wildcard("*a*a*a*a*a*a*a*a*a*a*a*", big, caps, &n));
}

static char *expand(const char *to, const char *s, const h2p_capture_t *caps, size_t n, const char *query)
{
    size_t len = h2p_target_expand(NULL, 0, to, strlen(to), s, caps, n, query, strlen(query));
    char *out = malloc(len + 1);
    /* a short buffer gets a prefix and the same length */
    char small[4];
    assert_int_equal(h2p_target_expand(small, sizeof(small), to, strlen(to), s, caps, n, query, strlen(query)), len);
    assert_int_equal(h2p_target_expand(out, len, to, strlen(to), s, caps, n, query, strlen(query)), len);
    out[len] = '\0';
    return out;
}

static void test_redirect_expand(void **state)
{
    h2p_capture_t caps[H2P_WILDCARD_MAX_CAPTURES];
    size_t n;
    const char *s = "/old/a b/c?d";
    assert_true(wildcard("/old/*/*", s, caps, &n));
    char *out;

    out = expand("/new/$1/$2", s, caps, n, "");
    assert_string_equal(out, "/new/a%20b/c%3Fd");
    free(out);

    out = expand("https://x.test/n/$2", s, caps, n, "q=1&r=2");
    assert_string_equal(out, "https://x.test/n/c%3Fd?q=1&r=2");
    free(out);

    out = expand("/n?from=$1", s, caps, n, "q=1");
    assert_string_equal(out, "/n?from=a%20b&q=1");
    free(out);

    out = expand("/n#top", s, caps, n, "q=1");
    assert_string_equal(out, "/n?q=1#top");
    free(out);

    out = expand("/cost$5/$x/$$1/$", s, caps, n, "");
    assert_string_equal(out, "/cost/$x/$a%20b/$");
    free(out);

    /* bytes a header may not carry never reach the Location */
    const char *evil = "/old/\r\nSet-Cookie:x%";
    assert_true(wildcard("/old/*", evil, caps, &n));
    out = expand("/new/$1", evil, caps, n, "a\r\nb=\x80");
    assert_string_equal(out, "/new/%0D%0ASet-Cookie:x%25?a%0D%0Ab=%80");
    free(out);
}

/* `to` expanded for `path` matched against `from` (which must match), without a query. */
static char *redirect_of(const char *from, const char *to, const char *path)
{
    h2p_capture_t caps[H2P_WILDCARD_MAX_CAPTURES];
    size_t n;
    assert_true(wildcard(from, path, caps, &n));
    return expand(to, path, caps, n, "");
}

static void assert_redirect(const char *from, const char *to, const char *path, const char *expected)
{
    char *out = redirect_of(from, to, path);
    if (strcmp(out, expected) != 0)
        fail_msg("%s -> %s for %s: got \"%s\", want \"%s\"", from, to, path, out, expected);
    free(out);
}

/* A capture never changes the scheme, userinfo, host or port of the target. */
static void test_redirect_captures_keep_the_host(void **state)
{
    static const struct {
        const char *path, *expected;
    } after_authority[] = {
        {"/go", "https://www.example.com"},
        {"/go/", "https://www.example.com/"},
        {"/go/page?x", "https://www.example.com/page%3Fx"},
        {"/go@evil.com/", "https://www.example.com/%40evil.com/"}, /* userinfo */
        {"/go:8080/", "https://www.example.com/:8080/"},           /* port */
        {"/go:@evil.com", "https://www.example.com/:%40evil.com"}, /* empty port, userinfo */
        {"/go.evil.com/", "https://www.example.com/.evil.com/"},   /* a longer host */
        {"/go-x.evil.com", "https://www.example.com/-x.evil.com"}, /* a longer label */
        {"/go\\evil.com", "https://www.example.com/%5Cevil.com"},  /* browsers read '\\' as '/' */
        {"/go//evil.com", "https://www.example.com/evil.com"},     /* the path never starts with "//" */
        {"/go/\\evil.com", "https://www.example.com/%5Cevil.com"},
        {"/go\t/evil.com", "https://www.example.com/%09/evil.com"}, /* browsers drop tabs and newlines */
        {"/go\r\n@evil.com", "https://www.example.com/%0D%0A%40evil.com"},
        {"/go%40evil.com", "https://www.example.com/%2540evil.com"}, /* '%' is text: it stays text */
        {"/go?@evil.com", "https://www.example.com/%3F%40evil.com"},
        {"/go#@evil.com", "https://www.example.com/%23%40evil.com"},
        {"/go\xef\xbc\xa0"
         "evil.com",
         "https://www.example.com/%EF%BC%A0evil.com"}, /* U+FF20 FULLWIDTH @ */
        {"/go\xc3\xa9", "https://www.example.com/%C3%A9"},
        {"/go evil.com", "https://www.example.com/%20evil.com"},
    };
    for (size_t i = 0; i != sizeof(after_authority) / sizeof(after_authority[0]); ++i)
        assert_redirect("/go*", "https://www.example.com$1", after_authority[i].path, after_authority[i].expected);

    /* network-path targets, literal text after the capture, a second capture */
    assert_redirect("/go*", "//www.example.com$1", "/go@evil.com", "//www.example.com/%40evil.com");
    assert_redirect("/go*", "https://www.example.com$1.html", "/go", "https://www.example.com/.html");
    assert_redirect("/go*", "https://www.example.com$1.html", "/go/a", "https://www.example.com/a.html");
    assert_redirect("/go*/*", "https://www.example.com$2$1", "/go/@evil.com", "https://www.example.com/%40evil.com");
    assert_redirect("/go*", "https://www.example.com$1?x=1", "/go", "https://www.example.com?x=1");
    assert_redirect("/go*", "https://www.example.com$1#top", "/go", "https://www.example.com#top");
    assert_redirect("/go*", "https://user@www.example.com:8443$1", "/go@evil.com:1",
                    "https://user@www.example.com:8443/%40evil.com:1");
    assert_redirect("/go*", "https://[::1]:8443$1", "/go]:1", "https://[::1]:8443/%5D:1");
    assert_redirect("/go/*", "https://www.example.com/$1", "/go//evil.com", "https://www.example.com/evil.com");
    assert_redirect("/go/*", "https://www.example.com//$1", "/go/x", "https://www.example.com//x"); /* as written */

    /* relative targets: never "//host", never a scheme */
    assert_redirect("/rel*", "/$1", "/rel/evil.com", "/evil.com");
    assert_redirect("/rel*", "/$1", "/rel//evil.com", "/evil.com");
    assert_redirect("/rel*", "/$1", "/rel\\evil.com", "/%5Cevil.com");
    assert_redirect("/rel*", "/$1", "/rel/\\evil.com", "/%5Cevil.com");
    assert_redirect("/rel*", "/$1", "/rel\t/evil.com", "/%09/evil.com");
    assert_redirect("/rel*", "/new$1", "/rel//evil.com", "/new//evil.com"); /* a path of this host */
    assert_redirect("/rel*", "$1", "/rel//evil.com", "/evil.com");
    assert_redirect("/rel*", "$1", "/relhttps://evil.com", "https%3A//evil.com");
    assert_redirect("/rel*", "$1", "/reljavascript:alert(1)", "javascript%3Aalert(1)");
    assert_redirect("/rel*", "$1", "/rel/a:b", "/a:b");
    assert_redirect("/rel*x*", "$1$2", "/rel/x/evil.com", "/evil.com");
    assert_redirect("/rel*", "$1/evil.com", "/rel/", "/evil.com");
    assert_redirect("/rel*", "x$1", "/rel:y", "x%3Ay");
    assert_redirect("/rel*", "?to=$1", "/rel//evil.com", "?to=//evil.com");
}

static void test_redirect_check_target(void **state)
{
    static const char *const refused[] = {"https://$1.example.com/",
                                          "https://$1",
                                          "//$1/",
                                          "https://host:$1/",
                                          "https://$1@host/",
                                          "https://www.example.$1/",
                                          "https://[$1]/",
                                          "$1://example.com/",
                                          "x$1y:z",
                                          "https:$1",
                                          "https:/$1",
                                          "mailto:$1",
                                          "$1:"};
    static const char *const accepted[] = {"https://www.example.com$1",
                                           "https://www.example.com/$1",
                                           "//www.example.com$1",
                                           "/new/$1",
                                           "$1",
                                           "/a:$1",
                                           "?q=$1",
                                           "#$1",
                                           "https://x/",
                                           "https:$x",
                                           "$0://x",
                                           "https://user@host/$1",
                                           "/$1:x"};
    for (size_t i = 0; i != sizeof(refused) / sizeof(refused[0]); ++i)
        if (h2p_target_check(refused[i], strlen(refused[i])) == NULL)
            fail_msg("accepted %s", refused[i]);
    for (size_t i = 0; i != sizeof(accepted) / sizeof(accepted[0]); ++i) {
        const char *problem = h2p_target_check(accepted[i], strlen(accepted[i]));
        if (problem != NULL)
            fail_msg("refused %s: %s", accepted[i], problem);
    }
}

/* A NUL in the decoded path ("/old/%00") must not reach the Location raw: strchr() finds the
 * terminator of its set for '\0', which once made NUL a "plain" byte (found by fuzzing). */
static void test_redirect_expand_escapes_nul(void **state)
{
    static const struct {
        const char *path;
        size_t len;
        const char *pattern, *to, *expected;
    } cases[] = {
        {"/old/\0", 6, "/old/*", "/new/$1", "/new/%00"},
        {"/old/a\0b", 8, "/old/*", "/new/$1", "/new/a%00b"},
        {"/old/\0\0\r\n", 9, "/old/*", "/new/$1", "/new/%00%00%0D%0A"},
        {"/x\0/y\0", 6, "/*/*", "/$2/$1", "/y%00/x%00"},
        {"/\0", 2, "*", "https://h.test$1#f", "https://h.test/%00#f"},
    };
    for (size_t i = 0; i != sizeof(cases) / sizeof(cases[0]); ++i) {
        h2p_capture_t caps[H2P_WILDCARD_MAX_CAPTURES];
        size_t n;
        char *path = exact_copy(cases[i].path, cases[i].len);
        assert_true(h2p_wildcard_match(cases[i].pattern, strlen(cases[i].pattern), path, cases[i].len, caps, &n));
        char *out = expand(cases[i].to, path, caps, n, "");
        assert_string_equal(out, cases[i].expected);
        free(out);
        free(path);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cidr_ipv4),
        cmocka_unit_test(test_cidr_ipv6),
        cmocka_unit_test(test_cidr_family_mismatch),
        cmocka_unit_test(test_v4_mapped_is_ipv4),
        cmocka_unit_test(test_ip_parse_forms),
        cmocka_unit_test(test_forwarded_for_walk),
        cmocka_unit_test(test_url_scan),
        cmocka_unit_test(test_url_decode),
        cmocka_unit_test(test_url_has_escape),
        cmocka_unit_test(test_contains_nocase),
        cmocka_unit_test(test_segment_extension),
        cmocka_unit_test(test_wildcard_exact),
        cmocka_unit_test(test_wildcard_captures),
        cmocka_unit_test(test_wildcard_many_stars),
        cmocka_unit_test(test_redirect_expand),
        cmocka_unit_test(test_redirect_captures_keep_the_host),
        cmocka_unit_test(test_redirect_check_target),
        cmocka_unit_test(test_redirect_expand_escapes_nul),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

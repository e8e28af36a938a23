/*
 * Value parsers shared by the configuration loader and the control protocol: durations, sizes,
 * bindings, CIDRs and FastCGI endpoints.  They look at the text only: no file system, no DNS.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include "frontend/config.h"
#include "frontend/config_internal.h"

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_alnum(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Reads the decimal digits at *s.  Returns 0, -1 when there are none, -2 on overflow. */
static int parse_decimal(const char **s, uint64_t *out)
{
    const char *p = *s;
    uint64_t value = 0;

    if (!is_digit(*p))
        return -1;
    for (; is_digit(*p); p++) {
        unsigned digit = *p - '0';
        if (value > (UINT64_MAX - digit) / 10)
            return -2;
        value = value * 10 + digit;
    }
    *s = p;
    *out = value;
    return 0;
}

/* A port written as 1..65535, nothing else. */
static int parse_port(const char *s, size_t len, uint16_t *out)
{
    unsigned value = 0;

    if (len == 0 || len > 5)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(s[i]))
            return -1;
        value = value * 10 + (s[i] - '0');
    }
    if (value < 1 || value > 65535)
        return -1;
    *out = value;
    return 0;
}

typedef struct unit {
    const char *suffix;
    uint64_t factor;
} unit_t;

static int parse_with_units(const char *s, const unit_t *units, uint64_t *out)
{
    uint64_t number;
    int ret;

    if ((ret = parse_decimal(&s, &number)) != 0)
        return ret;
    for (; units->suffix != NULL; units++) {
        if (strcmp(s, units->suffix) == 0) {
            if (__builtin_mul_overflow(number, units->factor, out))
                return -2;
            return 0;
        }
    }
    return -1;
}

/* "90s", "20m", "500ms", "2h"; a bare integer is seconds.  -1 = bad syntax, -2 = overflow. */
int h2p_parse_duration_ms(const char *s, uint64_t *out)
{
    static const unit_t units[] = {{"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 3600 * 1000}, {NULL, 0}};
    return parse_with_units(s, units, out);
}

/* "256MiB", "30MB" (powers of 1000), "512B"; a bare integer is bytes.  -1 bad, -2 overflow. */
int h2p_parse_size(const char *s, uint64_t *out)
{
    static const unit_t units[] = {{"", 1},
                                   {"B", 1},
                                   {"KiB", 1024},
                                   {"MiB", 1024 * 1024},
                                   {"GiB", 1024 * 1024 * 1024},
                                   {"KB", 1000},
                                   {"MB", 1000 * 1000},
                                   {"GB", 1000 * 1000 * 1000},
                                   {NULL, 0}};
    return parse_with_units(s, units, out);
}

/* "10.0.0.0/8", "2001:db8::/32"; no prefix = a single address.  Host bits are cleared. */
int h2p_parse_cidr(const char *s, h2p_cidr_t *out)
{
    char addr[INET6_ADDRSTRLEN];
    const char *slash = strchr(s, '/');
    size_t len = slash != NULL ? (size_t)(slash - s) : strlen(s);
    unsigned max_prefix;

    memset(out, 0, sizeof(*out));
    if (len == 0 || len >= sizeof(addr))
        return -1;
    memcpy(addr, s, len);
    addr[len] = '\0';
    if (inet_pton(AF_INET, addr, out->addr) == 1) {
        out->family = AF_INET;
        max_prefix = 32;
    } else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
        out->family = AF_INET6;
        max_prefix = 128;
    } else {
        return -1;
    }

    out->prefix = max_prefix;
    if (slash != NULL) {
        const char *p = slash + 1;
        uint64_t prefix;
        if (parse_decimal(&p, &prefix) != 0 || *p != '\0' || prefix > max_prefix || p - slash > 4)
            return -1;
        out->prefix = prefix;
    }

    /* clear the host bits, so that matching is a plain compare under the mask */
    for (unsigned bit = out->prefix; bit < max_prefix; bit++)
        out->addr[bit / 8] &= ~(0x80 >> (bit % 8));
    return 0;
}

int h2p_cfg_valid_hostname(const char *s, size_t len)
{
    size_t label = 0;

    if (len >= 2 && s[0] == '*' && s[1] == '.') { /* wildcard: *.example.com */
        s += 2;
        len -= 2;
    }
    if (len == 0 || len > 253)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return 0;
            label = 0;
        } else if (is_alnum(c) || c == '_' || (c == '-' && label != 0)) {
            if (++label > 63)
                return 0;
        } else {
            return 0;
        }
    }
    return label != 0 && s[len - 1] != '-';
}

int h2p_cfg_valid_token(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s != '\0'; s++) {
        if (!is_alnum(*s) && strchr("!#$%&'*+-.^_`|~", *s) == NULL)
            return 0;
    }
    return 1;
}

static void set_span(h2p_cfg_span_t *span, const char *p, size_t len)
{
    span->p = p;
    span->len = len;
}

/* Parses "[v6]", "*" or dotted IPv4 at *s, up to the next ':'; sets the address with `port` 0. */
static int parse_ip(const char **s, struct sockaddr_storage *ss, socklen_t *len, int *any, const char **err, h2p_cfg_span_t *bad)
{
    const char *p = *s, *end;
    char text[INET6_ADDRSTRLEN];
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof(*ss));
    *any = 0;
    if (*p == '*') {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_addr = in6addr_any;
        *len = sizeof(*sin6);
        *any = 1;
        *s = p + 1;
        return 0;
    }
    if (*p == '[') {
        end = strchr(p, ']');
        if (end == NULL || (size_t)(end - p - 1) >= sizeof(text)) {
            set_span(bad, p, end != NULL ? (size_t)(end - p + 1) : strlen(p));
            *err = "bad IPv6 address";
            return -1;
        }
        memcpy(text, p + 1, end - p - 1);
        text[end - p - 1] = '\0';
        if (inet_pton(AF_INET6, text, &sin6->sin6_addr) != 1) {
            set_span(bad, p, end - p + 1);
            *err = "bad IPv6 address";
            return -1;
        }
        sin6->sin6_family = AF_INET6;
        *len = sizeof(*sin6);
        *s = end + 1;
        return 0;
    }
    end = strchr(p, ':');
    if (end == NULL)
        end = p + strlen(p);
    set_span(bad, p, end - p);
    *err = "bad IP address";
    if (end == p || (size_t)(end - p) >= sizeof(text))
        return -1;
    memcpy(text, p, end - p);
    text[end - p] = '\0';
    if (inet_pton(AF_INET, text, &sin->sin_addr) != 1)
        return -1;
    sin->sin_family = AF_INET;
    *len = sizeof(*sin);
    *s = end;
    return 0;
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

int h2p_cfg_parse_binding(const char *s, h2p_binding_t *out, h2p_cfg_span_t *host, const char **err, h2p_cfg_span_t *bad)
{
    const char *sep = strstr(s, "://"), *p, *port_end;

    memset(out, 0, sizeof(*out));
    set_span(host, NULL, 0);
    set_span(bad, s, strlen(s));
    if (sep == NULL) {
        *err = "bad binding";
        return -1;
    }
    if (sep - s == 4 && memcmp(s, "http", 4) == 0) {
        out->scheme = H2P_SCHEME_HTTP;
    } else if (sep - s == 5 && memcmp(s, "https", 5) == 0) {
        out->scheme = H2P_SCHEME_HTTPS;
    } else if (sep - s == 3 && memcmp(s, "tcp", 3) == 0) {
        out->scheme = H2P_SCHEME_TCP;
    } else {
        set_span(bad, s, sep - s);
        *err = "bad scheme";
        return -1;
    }

    p = sep + 3;
    if (parse_ip(&p, &out->addr, &out->addrlen, &out->any_address, err, bad) != 0)
        return -1;
    if (*p != ':') {
        set_span(bad, p, strlen(p));
        *err = *p == '\0' ? "missing port" : "bad IP address";
        return -1;
    }
    p++;
    port_end = strchr(p, ':');
    if (port_end == NULL)
        port_end = p + strlen(p);
    if (parse_port(p, port_end - p, &out->port) != 0) {
        set_span(bad, p, port_end - p);
        *err = "bad port";
        return -1;
    }
    set_port(&out->addr, out->port);

    if (*port_end == ':') {
        p = port_end + 1;
        if (out->scheme == H2P_SCHEME_TCP) {
            set_span(bad, p, strlen(p));
            *err = "tcp bindings take no hostname";
            return -1;
        }
        if (!h2p_cfg_valid_hostname(p, strlen(p))) {
            set_span(bad, p, strlen(p));
            *err = "bad hostname";
            return -1;
        }
        set_span(host, p, strlen(p));
    }
    return 0;
}

int h2p_parse_binding(const char *s, h2p_binding_t *out, const char **err)
{
    h2p_cfg_span_t host, bad;
    const char *dummy;

    if (err == NULL)
        err = &dummy;
    if (h2p_cfg_parse_binding(s, out, &host, err, &bad) != 0)
        return -1;
    if ((out->text = strdup(s)) == NULL || (host.len != 0 && (out->host = strndup(host.p, host.len)) == NULL)) {
        h2p_binding_clear(out);
        *err = "out of memory";
        return -1;
    }
    for (char *c = out->host; c != NULL && *c != '\0'; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c += 'a' - 'A';
    return 0;
}

void h2p_binding_clear(h2p_binding_t *binding)
{
    free(binding->host);
    free(binding->text);
    binding->host = NULL;
    binding->text = NULL;
}

int h2p_cfg_parse_host_port(const char *s, const char **err)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int any;
    uint16_t port;
    h2p_cfg_span_t bad;

    if (parse_ip(&s, &ss, &len, &any, err, &bad) != 0)
        return -1;
    if (*s != ':' || parse_port(s + 1, strlen(s + 1), &port) != 0) {
        *err = "bad port";
        return -1;
    }
    return 0;
}

int h2p_cfg_parse_endpoint(const char *s, const char *base_dir, h2p_endpoint_t *out, const char **err)
{
    memset(out, 0, sizeof(*out));

    if (strncmp(s, "unix:", 5) == 0) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&out->addr;
        const char *path = s + 5;
        size_t len;
        if (*path == '\0') {
            *err = "bad endpoint: empty socket path";
            return -1;
        }
        sun->sun_family = AF_UNIX;
        if (path[0] == '/')
            len = snprintf(sun->sun_path, sizeof(sun->sun_path), "%s", path);
        else
            len = snprintf(sun->sun_path, sizeof(sun->sun_path), "%s/%s", base_dir, path);
        if (len >= sizeof(sun->sun_path)) {
            *err = "bad endpoint: socket path too long";
            return -1;
        }
        out->is_unix = 1;
        out->addrlen = offsetof(struct sockaddr_un, sun_path) + len + 1;
        return 0;
    }

    if (strncmp(s, "tcp:", 4) == 0) {
        const char *p = s + 4, *colon;
        int any;
        uint16_t port;
        h2p_cfg_span_t bad;
        if (strncmp(p, "localhost:", 10) == 0) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&out->addr;
            sin->sin_family = AF_INET;
            sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            out->addrlen = sizeof(*sin);
            p += 9;
        } else if (*p == '*' || parse_ip(&p, &out->addr, &out->addrlen, &any, err, &bad) != 0) {
            *err = "bad endpoint: want a numeric address (or localhost)";
            return -1;
        }
        colon = p;
        if (*colon != ':' || parse_port(colon + 1, strlen(colon + 1), &port) != 0) {
            *err = "bad endpoint: bad port";
            return -1;
        }
        set_port(&out->addr, port);
        return 0;
    }

    *err = "bad endpoint (want unix:/path or tcp:ip:port)";
    return -1;
}

void h2p_cfg_clean_path(const char *in, char *out)
{
    size_t len = 0;

    while (*in != '\0') {
        const char *seg;
        size_t seg_len;
        while (*in == '/')
            in++;
        seg = in;
        while (*in != '\0' && *in != '/')
            in++;
        seg_len = in - seg;
        if (seg_len == 0 || (seg_len == 1 && seg[0] == '.'))
            continue;
        if (seg_len == 2 && seg[0] == '.' && seg[1] == '.') {
            while (len > 0 && out[len - 1] != '/')
                len--;
            if (len > 0)
                len--;
            continue;
        }
        out[len++] = '/';
        memcpy(out + len, seg, seg_len);
        len += seg_len;
    }
    if (len == 0)
        out[len++] = '/';
    out[len] = '\0';
}

/*
 * IIS request filtering: refuses requests by verb, file extension, hidden path segment, URL
 * sequence, length, double escaping and high-bit bytes, before anything else looks at them.
 *
 * It judges the URL the client sent (req->input.path) and the path libh2o decoded and
 * normalized from it (req->path_normalized, the one the router and the file handler use), so
 * an encoding can neither hide a denied sequence nor reach a denied file.  Every refusal is a
 * 404 with IIS's sub-status in the log (404.5 sequence ... 404.15 query too long): the client
 * is not told which rule it broke.  The per-request work is a few passes over the URL and the
 * headers; nothing is allocated unless the path is escaped and longer than a stack buffer.
 */
#include <stdlib.h>
#include <string.h>

#include "native-modules/match.h"
#include "frontend/alloc.h"
#include "native-modules/module.h"
#include "native-modules/request_filtering.h"

/* IIS's sub-statuses of 404 */
enum {
    DENIED_SEQUENCE = 5,
    DENIED_VERB = 6,
    DENIED_EXTENSION = 7,
    HIDDEN_SEGMENT = 8,
    HEADER_TOO_LONG = 10,
    DOUBLE_ESCAPED = 11,
    HIGH_BIT = 12,
    URL_TOO_LONG = 14,
    QUERY_TOO_LONG = 15
};

/* A settings list with the lengths computed once. */
typedef struct name_list {
    h2o_iovec_t *items;
    size_t count;
} name_list_t;

typedef struct request_filtering_handler {
    h2o_handler_t super;
    const h2p_request_filtering_conf_t *conf;
    name_list_t verbs_allow, verbs_deny, extensions_allow, extensions_deny, hidden_segments, deny_sequences;
} request_filtering_handler_t;

static void name_list_init(name_list_t *list, const h2p_strlist_t *from)
{
    list->count = from->count;
    list->items = from->count != 0 ? h2o_mem_alloc(sizeof(*list->items) * from->count) : NULL;
    for (size_t i = 0; i != from->count; ++i)
        list->items[i] = h2o_iovec_init(from->items[i], strlen(from->items[i]));
}

static int equals_nocase(const char *a, size_t a_len, const char *b, size_t b_len)
{
    if (a_len != b_len)
        return 0;
    for (size_t i = 0; i != a_len; ++i)
        if (h2o_tolower(a[i]) != h2o_tolower(b[i]))
            return 0;
    return 1;
}

static int name_list_has_nocase(const name_list_t *list, const char *s, size_t len)
{
    for (size_t i = 0; i != list->count; ++i)
        if (equals_nocase(list->items[i].base, list->items[i].len, s, len))
            return 1;
    return 0;
}

static int name_list_has_exact(const name_list_t *list, const char *s, size_t len)
{
    for (size_t i = 0; i != list->count; ++i)
        if (h2o_memis(list->items[i].base, list->items[i].len, s, len))
            return 1;
    return 0;
}

/* The client learns nothing about the rule; the log shows it as the sub-status. */
static int deny(h2o_req_t *req, unsigned substatus)
{
    h2p_request_t *r = h2p_request_of(req);
    if (r == NULL) {
        h2o_send_error_404(req, "Not Found", "not found", H2O_SEND_ERROR_KEEP_HEADERS);
        return 0;
    }
    return h2p_request_deny(r, "request_filtering", 404, substatus, "Not Found", "not found");
}

static int verb_denied(request_filtering_handler_t *self, h2o_iovec_t method)
{
    /* an allowlist takes the verb exactly as HTTP spells it; a denylist catches any case */
    if (self->verbs_allow.count != 0 && !name_list_has_exact(&self->verbs_allow, method.base, method.len))
        return 1;
    return name_list_has_nocase(&self->verbs_deny, method.base, method.len);
}

/* A hidden segment names the segment, or ends in '*' and names its prefix (".ht*"). */
static int is_hidden(const name_list_t *hidden, const char *seg, size_t len)
{
    for (size_t i = 0; i != hidden->count; ++i) {
        h2o_iovec_t name = hidden->items[i];
        if (name.len != 0 && name.base[name.len - 1] == '*'
                ? len >= name.len - 1 && equals_nocase(name.base, name.len - 1, seg, name.len - 1)
                : equals_nocase(name.base, name.len, seg, len))
            return 1;
    }
    return 0;
}

/* 1 when the extension of segment `seg` is refused: denied, or not on an allowlist.  The
 * extension is taken as the file system sees it ("a.ini." is "a.ini", ";params" dropped) and as
 * a server that keeps ';' would ("a.ini;.txt" is ".txt"): both must pass. */
static int extension_refused(request_filtering_handler_t *self, const char *seg, size_t len, int check_allow)
{
    for (int pass = 0; pass != 2; ++pass) {
        size_t n = len;
        if (pass == 0) {
            n = h2p_segment_canonical_len(seg, len);
        } else {
            while (n != 0 && (seg[n - 1] == '.' || seg[n - 1] == ' '))
                --n;
        }
        const char *ext;
        size_t ext_len = h2p_segment_extension(seg, n, &ext);
        if (ext_len == 0)
            continue; /* "/", "/about": an allowlist has no way to list "no extension" */
        if (name_list_has_nocase(&self->extensions_deny, ext, ext_len))
            return 1;
        if (check_allow && self->extensions_allow.count != 0 && !name_list_has_nocase(&self->extensions_allow, ext, ext_len))
            return 1;
    }
    return 0;
}

/*
 * 0, or the sub-status of the first rule the path's segments break (hidden segment, extension).
 * A denied extension is refused in any segment: "/upload/shell.php/x" runs shell.php through
 * PATH_INFO.  An allowlist applies to the last segment and to the script a handler mapping
 * selects (the resource served), not to directory names on the way ("/v1.2/a.html").
 */
static unsigned check_segments(request_filtering_handler_t *self, h2o_req_t *req, h2o_iovec_t path)
{
    const char *p = path.base, *end = path.base + path.len;
    while (p != end) {
        const char *slash = memchr(p, '/', end - p), *seg_end = slash != NULL ? slash : end;
        size_t len = h2p_segment_canonical_len(p, seg_end - p);
        if (len != 0 && is_hidden(&self->hidden_segments, p, len))
            return HIDDEN_SEGMENT;
        if (extension_refused(self, p, seg_end - p, seg_end == end))
            return DENIED_EXTENSION;
        p = slash != NULL ? slash + 1 : end;
    }
    if (self->extensions_allow.count != 0) {
        h2p_request_t *r = h2p_request_of(req);
        const struct h2p_served *served = r != NULL ? h2p_request_served(r) : NULL;
        if (served != NULL && served->mapping >= 0) {
            const char *script = served->path.base, *seg = script + served->script_len;
            while (seg != script && seg[-1] != '/')
                --seg;
            if (extension_refused(self, seg, script + served->script_len - seg, 1))
                return DENIED_EXTENSION;
        }
    }
    return 0;
}

static int has_denied_sequence(request_filtering_handler_t *self, const char *s, size_t len)
{
    for (size_t i = 0; i != self->deny_sequences.count; ++i)
        if (self->deny_sequences.items[i].len != 0 &&
            h2p_contains_nocase(s, len, self->deny_sequences.items[i].base, self->deny_sequences.items[i].len))
            return 1;
    return 0;
}

static int header_too_long(h2o_req_t *req, uint64_t max)
{
    if (4 + req->input.authority.len > max) /* "host" (HTTP/2's :authority is no header) */
        return 1;
    for (size_t i = 0; i != req->headers.size; ++i)
        if (req->headers.entries[i].name->len + req->headers.entries[i].value.len > max)
            return 1;
    return 0;
}

static int has_high_bit(const char *s, size_t len)
{
    for (size_t i = 0; i != len; ++i)
        if ((unsigned char)s[i] >= 0x80)
            return 1;
    return 0;
}

static int on_req(h2o_handler_t *_self, h2o_req_t *req)
{
    request_filtering_handler_t *self = (void *)_self;
    const h2p_request_filtering_conf_t *conf = self->conf;
    h2o_iovec_t url = req->input.path;
    size_t path_len = req->input.query_at != SIZE_MAX ? req->input.query_at : url.len;
    size_t query_len = req->input.query_at != SIZE_MAX ? url.len - path_len - 1 : 0;

    if ((self->verbs_allow.count != 0 || self->verbs_deny.count != 0) && verb_denied(self, req->method))
        return deny(req, DENIED_VERB);
    if (path_len > conf->max_url)
        return deny(req, URL_TOO_LONG);
    if (query_len > conf->max_query_string)
        return deny(req, QUERY_TOO_LONG);
    if (header_too_long(req, conf->max_header_size))
        return deny(req, HEADER_TOO_LONG);

    unsigned found = h2p_url_scan(url.base, path_len);
    if (!conf->allow_high_bit && ((found & H2P_URL_HIGH_BIT) != 0 || has_high_bit(url.base + path_len, url.len - path_len)))
        return deny(req, HIGH_BIT);
    if ((found & (H2P_URL_DOT_DOT | H2P_URL_BACKSLASH | H2P_URL_NUL)) != 0)
        return deny(req, DENIED_SEQUENCE);
    if (self->deny_sequences.count != 0 && has_denied_sequence(self, url.base, path_len))
        return deny(req, DENIED_SEQUENCE);

    if ((found & H2P_URL_PERCENT) != 0) {
        /* the same checks on the path decoded once: "%2e%2e", "%5c" and "%2500" hide nothing */
        char stack_buf[1024];
        char *decoded = path_len <= sizeof(stack_buf) ? stack_buf : h2o_mem_alloc_pool(&req->pool, path_len);
        size_t decoded_len = h2p_url_decode(decoded, url.base, path_len);
        if ((h2p_url_scan(decoded, decoded_len) & (H2P_URL_DOT_DOT | H2P_URL_BACKSLASH | H2P_URL_NUL)) != 0)
            return deny(req, DENIED_SEQUENCE);
        if (self->deny_sequences.count != 0 && has_denied_sequence(self, decoded, decoded_len))
            return deny(req, DENIED_SEQUENCE);
        if (!conf->allow_double_escaping && h2p_url_has_escape(decoded, decoded_len))
            return deny(req, DOUBLE_ESCAPED);
    }

    if (self->hidden_segments.count != 0 || self->extensions_allow.count != 0 || self->extensions_deny.count != 0) {
        unsigned substatus = check_segments(self, req, req->path_normalized);
        if (substatus != 0)
            return deny(req, substatus);
    }
    return -1;
}

static void on_dispose(h2o_handler_t *_self)
{
    request_filtering_handler_t *self = (void *)_self;
    free(self->verbs_allow.items);
    free(self->verbs_deny.items);
    free(self->extensions_allow.items);
    free(self->extensions_deny.items);
    free(self->hidden_segments.items);
    free(self->deny_sequences.items);
}

static int on_config(h2p_module_scope_t *ms)
{
    if (!ms->settings->request_filtering->enabled)
        return 0;
    const h2p_request_filtering_conf_t *conf = ms->settings->request_filtering;
    request_filtering_handler_t *self = (void *)h2o_create_handler(ms->pathconf, sizeof(*self));
    self->super.on_req = on_req;
    self->super.dispose = on_dispose;
    self->conf = conf;
    name_list_init(&self->verbs_allow, &conf->verbs_allow);
    name_list_init(&self->verbs_deny, &conf->verbs_deny);
    name_list_init(&self->extensions_allow, &conf->extensions_allow);
    name_list_init(&self->extensions_deny, &conf->extensions_deny);
    name_list_init(&self->hidden_segments, &conf->hidden_segments);
    name_list_init(&self->deny_sequences, &conf->deny_sequences);
    return 0;
}

const h2p_module_t h2p_module_request_filtering = {"request_filtering", H2P_PHASE_REQUEST, on_config};

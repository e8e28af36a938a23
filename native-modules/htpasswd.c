/* Users and groups files (see htpasswd.h). */
#include "native-modules/htpasswd.h"
#include "frontend/alloc.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FILE_SIZE (64 * 1024 * 1024)
#define MAX_PASSWORD 1024

/* Where problems go: every one to `report` when it is set, else the first one to `err`. */
typedef struct reporter {
    h2p_htpasswd_report_cb report;
    void *arg;
    char *err;
    size_t errlen;
    size_t count;
} reporter_t;

static void problem(reporter_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(reporter_t *r, const char *fmt, ...)
{
    char message[1024];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof(message), fmt, args);
    va_end(args);
    if (r->report != NULL)
        r->report(r->arg, message);
    else if (r->count == 0 && r->errlen != 0)
        snprintf(r->err, r->errlen, "%s", message);
    r->count++;
}

/* A NUL-terminated copy of the whole file. */
static char *read_file(const char *path, size_t *len, reporter_t *r)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    char *text = NULL;
    if (fd < 0) {
        problem(r, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0) {
        problem(r, "%s: %s", path, strerror(errno));
        goto Exit;
    }
    if (!S_ISREG(st.st_mode)) {
        problem(r, "%s: not a regular file", path);
        goto Exit;
    }
    if (st.st_size > MAX_FILE_SIZE) {
        problem(r, "%s: larger than %d MiB", path, MAX_FILE_SIZE / (1024 * 1024));
        goto Exit;
    }
    text = h2o_mem_alloc((size_t)st.st_size + 1);
    size_t done = 0;
    while (done < (size_t)st.st_size) {
        ssize_t n = read(fd, text + done, (size_t)st.st_size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            problem(r, "%s: %s", path, n < 0 ? strerror(errno) : "file shrank while being read");
            free(text);
            text = NULL;
            goto Exit;
        }
        done += (size_t)n;
    }
    text[done] = '\0';
    *len = done;
Exit:
    close(fd);
    return text;
}

/* Splits `text` (NUL-terminated, modified in place) into lines, calling `fn` for each one that is
 * not blank or a comment, with trailing CR and white space removed.  A bad line is reported by
 * `fn` and skipped, so that every problem of a file is told at once. */
static void for_each_line(char *text, size_t len, void (*fn)(void *ctx, char *line, unsigned lineno), void *ctx)
{
    char *p = text, *end = text + len;
    for (unsigned lineno = 1; p < end; ++lineno) {
        char *eol = memchr(p, '\n', (size_t)(end - p)), *next;
        if (eol == NULL)
            eol = end;
        next = eol + 1;
        while (eol > p && (eol[-1] == '\r' || eol[-1] == ' ' || eol[-1] == '\t'))
            --eol;
        *eol = '\0';
        while (*p == ' ' || *p == '\t')
            ++p;
        if (*p != '\0' && *p != '#')
            fn(ctx, p, lineno);
        p = next;
    }
}

static int is_crypt64(char c)
{
    return c == '.' || c == '/' || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int all_crypt64(const char *s, size_t n)
{
    for (size_t i = 0; i != n; ++i)
        if (!is_crypt64(s[i]))
            return 0;
    return 1;
}

/* $5$ / $6$: [rounds=N$]salt$digest, salt at most 16 characters. */
static const char *check_sha_crypt(const char *hash, size_t digest_len)
{
    const char *p = hash + 3, *salt, *dollar;
    if (strncmp(p, "rounds=", 7) == 0) {
        p += 7;
        const char *digits = p;
        while (*p >= '0' && *p <= '9')
            ++p;
        if (p == digits || p - digits > 9 || *p != '$')
            return "malformed SHA-crypt hash (rounds=)";
        ++p;
    }
    salt = p;
    if ((dollar = strchr(salt, '$')) == NULL || dollar - salt > 16)
        return "malformed SHA-crypt hash (salt)";
    for (p = salt; p != dollar; ++p)
        if ((unsigned char)*p <= ' ' || *p == ':' || *p == 0x7f)
            return "malformed SHA-crypt hash (salt)";
    if (strlen(dollar + 1) != digest_len || !all_crypt64(dollar + 1, digest_len))
        return "malformed SHA-crypt hash (digest)";
    return NULL;
}

const char *h2p_htpasswd_check_hash(const char *hash)
{
    size_t len = strlen(hash);
    const char *problem = NULL;

    if (strncmp(hash, "$2y$", 4) == 0 || strncmp(hash, "$2b$", 4) == 0) {
        if (len != 60 || !(hash[4] >= '0' && hash[4] <= '3') || !(hash[5] >= '0' && hash[5] <= '9') || hash[6] != '$' ||
            !all_crypt64(hash + 7, 53))
            return "malformed bcrypt hash";
        int cost = (hash[4] - '0') * 10 + (hash[5] - '0');
        if (cost < 4 || cost > 31)
            return "bcrypt cost out of range (4..31)";
    } else if (strncmp(hash, "$6$", 3) == 0) {
        problem = check_sha_crypt(hash, 86);
    } else if (strncmp(hash, "$5$", 3) == 0) {
        problem = check_sha_crypt(hash, 43);
    } else if (strncmp(hash, "$2a$", 4) == 0 || strncmp(hash, "$2x$", 4) == 0) {
        return "legacy bcrypt variant ($2a$/$2x$) not accepted";
    } else if (strncmp(hash, "$apr1$", 6) == 0 || strncmp(hash, "$1$", 3) == 0) {
        return "MD5 hashes ($apr1$, $1$) not accepted";
    } else if (strncmp(hash, "{SHA}", 5) == 0) {
        return "unsalted SHA-1 ({SHA}) not accepted";
    } else if (len == 13 && all_crypt64(hash, 13)) {
        return "DES crypt not accepted";
    } else if (hash[0] == '$') {
        return "unknown crypt scheme";
    } else {
        return "not a crypt(3) hash (plain-text password?)";
    }
    if (problem != NULL)
        return problem;
    int check = crypt_checksalt(hash);
    if (check == CRYPT_SALT_INVALID || check == CRYPT_SALT_METHOD_DISABLED)
        return "hash scheme not supported by this system's libcrypt";
    return NULL;
}

int h2p_htpasswd_check_cost(const char *hash, char *err, size_t errlen)
{
    if ((strncmp(hash, "$2y$", 4) == 0 || strncmp(hash, "$2b$", 4) == 0) && strlen(hash) >= 7) {
        int cost = (hash[4] - '0') * 10 + (hash[5] - '0');
        if (cost > H2P_HTPASSWD_MAX_BCRYPT_COST) {
            snprintf(err, errlen, "bcrypt cost %d is above the cap of %d (rehash it: htpasswd -B -C %d)", cost,
                     H2P_HTPASSWD_MAX_BCRYPT_COST, H2P_HTPASSWD_MAX_BCRYPT_COST);
            return -1;
        }
    } else if ((strncmp(hash, "$5$", 3) == 0 || strncmp(hash, "$6$", 3) == 0) && strncmp(hash + 3, "rounds=", 7) == 0) {
        unsigned long rounds = strtoul(hash + 10, NULL, 10); /* at most 9 digits (check_sha_crypt) */
        if (rounds > H2P_HTPASSWD_MAX_SHA_ROUNDS) {
            snprintf(err, errlen, "SHA-crypt rounds=%lu is above the cap of %d", rounds, H2P_HTPASSWD_MAX_SHA_ROUNDS);
            return -1;
        }
    }
    return 0;
}

/* ---- users -------------------------------------------------------------------------------- */

typedef struct users_parse {
    h2p_htpasswd_t *out;
    size_t capacity;
    const char *source;
    reporter_t *r;
} users_parse_t;

static int valid_user_name(const char *name, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i != len; ++i)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f || name[i] == ' ')
            return 0;
    return 1;
}

static void on_user_line(void *_ctx, char *line, unsigned lineno)
{
    users_parse_t *ctx = _ctx;
    char *colon = strchr(line, ':');
    if (colon == NULL) {
        problem(ctx->r, "%s:%u: want user:hash", ctx->source, lineno);
        return;
    }
    *colon = '\0';
    size_t name_len = (size_t)(colon - line);
    if (!valid_user_name(line, name_len)) {
        problem(ctx->r, "%s:%u: bad user name (empty, or has spaces or control characters)", ctx->source, lineno);
        return;
    }
    const char *why = h2p_htpasswd_check_hash(colon + 1);
    if (why != NULL) {
        problem(ctx->r, "%s:%u: user \"%s\": %s; use bcrypt (htpasswd -B: $2y$), SHA-512 ($6$: openssl passwd -6) or SHA-256 ($5$)",
                ctx->source, lineno, line, why);
        return;
    }
    char too_costly[160];
    if (h2p_htpasswd_check_cost(colon + 1, too_costly, sizeof(too_costly)) != 0) {
        problem(ctx->r, "%s:%u: user \"%s\": %s", ctx->source, lineno, line, too_costly);
        return;
    }
    if (ctx->out->count == ctx->capacity) {
        ctx->capacity = ctx->capacity != 0 ? ctx->capacity * 2 : 16;
        ctx->out->users = h2o_mem_realloc(ctx->out->users, ctx->capacity * sizeof(*ctx->out->users));
    }
    ctx->out->users[ctx->out->count++] = (h2p_htpasswd_user_t){line, colon + 1, name_len};
}

static int compare_users(const void *a, const void *b)
{
    return strcmp(((const h2p_htpasswd_user_t *)a)->name, ((const h2p_htpasswd_user_t *)b)->name);
}

static int parse_users_text(h2p_htpasswd_t *out, char *text, size_t len, const char *source, reporter_t *r)
{
    users_parse_t ctx = {out, 0, source, r};
    size_t problems = r->count;
    *out = (h2p_htpasswd_t){NULL, 0, text};
    if (memchr(text, '\0', len) != NULL) {
        problem(r, "%s: contains a NUL byte (not a text file)", source);
        goto Error;
    }
    for_each_line(text, len, on_user_line, &ctx);
    if (out->count > 1)
        qsort(out->users, out->count, sizeof(*out->users), compare_users);
    for (size_t i = 1; i < out->count; ++i)
        if (strcmp(out->users[i - 1].name, out->users[i].name) == 0 &&
            (i < 2 || strcmp(out->users[i - 2].name, out->users[i].name) != 0))
            problem(r, "%s: user \"%s\" is listed twice", source, out->users[i].name);
    if (r->count == problems)
        return 0;
Error:
    h2p_htpasswd_dispose(out);
    return -1;
}

int h2p_htpasswd_parse(h2p_htpasswd_t *out, const char *text, size_t len, const char *source, char *err, size_t errlen)
{
    reporter_t r = {NULL, NULL, err, errlen, 0};
    char *copy = h2o_mem_alloc(len + 1);
    memcpy(copy, text, len);
    copy[len] = '\0';
    return parse_users_text(out, copy, len, source, &r);
}

static int load_users(h2p_htpasswd_t *out, const char *path, reporter_t *r)
{
    size_t len;
    char *text = read_file(path, &len, r);
    if (text == NULL) {
        *out = (h2p_htpasswd_t){NULL, 0, NULL};
        return -1;
    }
    return parse_users_text(out, text, len, path, r);
}

char *h2p_htpasswd_read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    reporter_t r = {NULL, NULL, err, errlen, 0};
    return read_file(path, len, &r);
}

int h2p_htpasswd_load(h2p_htpasswd_t *out, const char *path, char *err, size_t errlen)
{
    reporter_t r = {NULL, NULL, err, errlen, 0};
    return load_users(out, path, &r);
}

int h2p_htpasswd_load_all(h2p_htpasswd_t *out, const char *path, h2p_htpasswd_report_cb report, void *arg)
{
    reporter_t r = {report, arg, NULL, 0, 0};
    return load_users(out, path, &r);
}

void h2p_htpasswd_dispose(h2p_htpasswd_t *users)
{
    free(users->users);
    free(users->text);
    *users = (h2p_htpasswd_t){NULL, 0, NULL};
}

const h2p_htpasswd_user_t *h2p_htpasswd_find(const h2p_htpasswd_t *users, const char *name, size_t name_len)
{
    size_t lo = 0, hi = users->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const h2p_htpasswd_user_t *u = users->users + mid;
        size_t n = u->name_len < name_len ? u->name_len : name_len;
        int cmp = memcmp(u->name, name, n);
        if (cmp == 0)
            cmp = u->name_len < name_len ? -1 : u->name_len > name_len;
        if (cmp == 0)
            return u;
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* crypt_rn's output for `password` with `hash` as the setting, compared in constant time. */
static int hash_matches(const char *hash, const char *password)
{
    struct crypt_data *data = h2p_calloc(1, sizeof(*data)); /* ~32 KiB: not on an event loop's stack */
    size_t hash_len = strlen(hash);
    const char *computed = crypt_rn(password, hash, data, (int)sizeof(*data));
    int ok = computed != NULL && strlen(computed) == hash_len && CRYPTO_memcmp(computed, hash, hash_len) == 0;
    OPENSSL_cleanse(data, sizeof(*data));
    free(data);
    return ok;
}

const h2p_htpasswd_user_t *h2p_htpasswd_verify(const h2p_htpasswd_t *users, const char *name, size_t name_len, const char *password,
                                               size_t password_len)
{
    char phrase[MAX_PASSWORD + 1];
    const h2p_htpasswd_user_t *user = h2p_htpasswd_find(users, name, name_len);
    int acceptable = password_len <= MAX_PASSWORD && memchr(password, '\0', password_len) == NULL;

    if (users->count == 0)
        return NULL;
    if (!acceptable)
        password_len = 0;
    memcpy(phrase, password, password_len);
    phrase[password_len] = '\0';
    /* an unknown user is checked against someone else's hash: the same work, the same time */
    int ok = hash_matches(user != NULL ? user->hash : users->users[0].hash, phrase);
    OPENSSL_cleanse(phrase, sizeof(phrase));
    return ok && acceptable && user != NULL ? user : NULL;
}

/* ---- groups ------------------------------------------------------------------------------- */

typedef struct groups_parse {
    h2p_groups_t *out;
    size_t capacity;
    const char *source;
    reporter_t *r;
} groups_parse_t;

static void on_group_line(void *_ctx, char *line, unsigned lineno)
{
    groups_parse_t *ctx = _ctx;
    char *colon = strchr(line, ':'), *name_end;
    if (colon == NULL) {
        problem(ctx->r, "%s:%u: want group: user user ...", ctx->source, lineno);
        return;
    }
    for (name_end = colon; name_end > line && (name_end[-1] == ' ' || name_end[-1] == '\t'); --name_end)
        ;
    *name_end = '\0';
    if (!valid_user_name(line, (size_t)(name_end - line))) {
        problem(ctx->r, "%s:%u: bad group name (empty, or has spaces or control characters)", ctx->source, lineno);
        return;
    }
    if (ctx->out->count == ctx->capacity) {
        ctx->capacity = ctx->capacity != 0 ? ctx->capacity * 2 : 16;
        ctx->out->groups = h2o_mem_realloc(ctx->out->groups, ctx->capacity * sizeof(*ctx->out->groups));
    }
    h2p_group_t *group = ctx->out->groups + ctx->out->count++;
    *group = (h2p_group_t){line, NULL, 0};
    size_t capacity = 0;
    for (char *p = colon + 1;;) {
        while (*p == ' ' || *p == '\t')
            ++p;
        if (*p == '\0')
            break;
        char *member = p;
        while (*p != '\0' && *p != ' ' && *p != '\t')
            ++p;
        if (*p != '\0')
            *p++ = '\0';
        if (!valid_user_name(member, strlen(member))) {
            problem(ctx->r, "%s:%u: group \"%s\": bad user name", ctx->source, lineno, line);
            continue;
        }
        if (group->count == capacity) {
            capacity = capacity != 0 ? capacity * 2 : 8;
            group->members = h2o_mem_realloc(group->members, capacity * sizeof(*group->members));
        }
        group->members[group->count++] = member;
    }
}

static int compare_groups(const void *a, const void *b)
{
    return strcmp(((const h2p_group_t *)a)->name, ((const h2p_group_t *)b)->name);
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int parse_groups_text(h2p_groups_t *out, char *text, size_t len, const char *source, reporter_t *r)
{
    groups_parse_t ctx = {out, 0, source, r};
    size_t problems = r->count;
    *out = (h2p_groups_t){NULL, 0, text};
    if (memchr(text, '\0', len) != NULL) {
        problem(r, "%s: contains a NUL byte (not a text file)", source);
        goto Error;
    }
    for_each_line(text, len, on_group_line, &ctx);
    if (r->count != problems)
        goto Error;
    /* a group named on several lines has the members of all of them */
    if (out->count > 1)
        qsort(out->groups, out->count, sizeof(*out->groups), compare_groups);
    size_t kept = 0;
    for (size_t i = 0; i != out->count; ++i) {
        h2p_group_t *g = out->groups + i;
        if (kept != 0 && strcmp(out->groups[kept - 1].name, g->name) == 0) {
            h2p_group_t *into = out->groups + kept - 1;
            into->members = h2o_mem_realloc(into->members, (into->count + g->count + 1) * sizeof(*into->members));
            if (g->count != 0)
                memcpy(into->members + into->count, g->members, g->count * sizeof(*g->members));
            into->count += g->count;
            free(g->members);
        } else {
            out->groups[kept++] = *g;
        }
    }
    out->count = kept;
    for (size_t i = 0; i != out->count; ++i)
        if (out->groups[i].count > 1)
            qsort(out->groups[i].members, out->groups[i].count, sizeof(char *), compare_strings);
    return 0;
Error:
    h2p_groups_dispose(out);
    return -1;
}

int h2p_groups_parse(h2p_groups_t *out, const char *text, size_t len, const char *source, char *err, size_t errlen)
{
    reporter_t r = {NULL, NULL, err, errlen, 0};
    char *copy = h2o_mem_alloc(len + 1);
    memcpy(copy, text, len);
    copy[len] = '\0';
    return parse_groups_text(out, copy, len, source, &r);
}

static int load_groups(h2p_groups_t *out, const char *path, reporter_t *r)
{
    size_t len;
    char *text = read_file(path, &len, r);
    if (text == NULL) {
        *out = (h2p_groups_t){NULL, 0, NULL};
        return -1;
    }
    return parse_groups_text(out, text, len, path, r);
}

int h2p_groups_load(h2p_groups_t *out, const char *path, char *err, size_t errlen)
{
    reporter_t r = {NULL, NULL, err, errlen, 0};
    return load_groups(out, path, &r);
}

int h2p_groups_load_all(h2p_groups_t *out, const char *path, h2p_htpasswd_report_cb report, void *arg)
{
    reporter_t r = {report, arg, NULL, 0, 0};
    return load_groups(out, path, &r);
}

void h2p_groups_dispose(h2p_groups_t *groups)
{
    for (size_t i = 0; i != groups->count; ++i)
        free(groups->groups[i].members);
    free(groups->groups);
    free(groups->text);
    *groups = (h2p_groups_t){NULL, 0, NULL};
}

int h2p_groups_is_member(const h2p_groups_t *groups, const char *group, const char *user, size_t user_len)
{
    h2p_group_t key = {(char *)group, NULL, 0};
    if (groups->count == 0)
        return 0;
    const h2p_group_t *g = bsearch(&key, groups->groups, groups->count, sizeof(*groups->groups), compare_groups);
    if (g == NULL)
        return 0;
    for (size_t i = 0; i != g->count; ++i)
        if (strlen(g->members[i]) == user_len && memcmp(g->members[i], user, user_len) == 0)
            return 1;
    return 0;
}

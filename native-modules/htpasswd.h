/*
 * Users and groups files for authentication and authorization (Apache's formats).
 *
 * Users file: one `user:hash` per line, the hash a crypt(3) string of a scheme that is still
 * safe to store passwords with: bcrypt ($2y$, $2b$), SHA-512 ($6$) or SHA-256 ($5$) crypt,
 * as `htpasswd -B`, `openssl passwd -6` or `mkpasswd -m sha-512` write them.  Legacy hashes
 * (DES, MD5, $apr1$, {SHA}, $2a$) and plain text are refused when the file is read, so a weak
 * entry is an error at load time, not a silent hole.
 *
 * The work factor is capped: every check of a wrong password costs a full hash computation,
 * so a cost above the cap would let anyone hold a CPU for as long as they keep sending
 * passwords.  bcrypt cost 12 and SHA-crypt rounds=1000000 take about a quarter of a second on
 * one core; a file with a higher one is refused like a malformed one.
 *
 * Groups file: one `group: user1 user2 ...` per line.
 *
 * In both, blank lines and lines starting with `#` are ignored.  Parsing is pure; nothing here
 * touches h2o, so the unit test can drive it directly.
 */
#ifndef H2POOL_HTPASSWD_H
#define H2POOL_HTPASSWD_H

#include <stddef.h>

#define H2P_HTPASSWD_MAX_BCRYPT_COST 12
#define H2P_HTPASSWD_MAX_SHA_ROUNDS 1000000

typedef struct h2p_htpasswd_user {
    char *name;
    char *hash;
    size_t name_len;
} h2p_htpasswd_user_t;

typedef struct h2p_htpasswd {
    h2p_htpasswd_user_t *users; /* sorted by name */
    size_t count;
    char *text; /* the file's text; names and hashes point into it */
} h2p_htpasswd_t;

typedef struct h2p_group {
    char *name;
    char **members; /* sorted */
    size_t count;
} h2p_group_t;

typedef struct h2p_groups {
    h2p_group_t *groups; /* sorted by name */
    size_t count;
    char *text;
} h2p_groups_t;

/* The whole file at `path` as NUL-terminated text (at most 64 MiB, a regular file), or NULL with
 * "path: why" in `err`. */
char *h2p_htpasswd_read_file(const char *path, size_t *len, char *err, size_t errlen);

/*
 * Parse `len` bytes of users-file text (`source` names it in messages).  Returns 0, or -1 with
 * "source:line: what is wrong" in `err`; on failure `out` holds nothing to dispose.
 */
int h2p_htpasswd_parse(h2p_htpasswd_t *out, const char *text, size_t len, const char *source, char *err, size_t errlen);
/* Reads and parses the file at `path`. */
int h2p_htpasswd_load(h2p_htpasswd_t *out, const char *path, char *err, size_t errlen);
void h2p_htpasswd_dispose(h2p_htpasswd_t *users);

const h2p_htpasswd_user_t *h2p_htpasswd_find(const h2p_htpasswd_t *users, const char *name, size_t name_len);

/*
 * Checks a password: the user's hash is recomputed with crypt(3) and compared in constant time.
 * An unknown user still costs one hash computation (against another user's hash), so response
 * times do not tell which user names exist.  Returns the user, or NULL.
 */
const h2p_htpasswd_user_t *h2p_htpasswd_verify(const h2p_htpasswd_t *users, const char *name, size_t name_len, const char *password,
                                               size_t password_len);

/* Whether `hash` is a crypt(3) string of an accepted scheme; NULL, or why not. */
const char *h2p_htpasswd_check_hash(const char *hash);
/* Whether an accepted hash's work factor is within the caps; 0, or -1 with why in `err`. */
int h2p_htpasswd_check_cost(const char *hash, char *err, size_t errlen);

/* Called with each problem of a file ("source:line: what is wrong"). */
typedef void (*h2p_htpasswd_report_cb)(void *arg, const char *message);
/*
 * As h2p_htpasswd_load and h2p_groups_load, but every problem of the file goes to `report` (a
 * bad line is skipped and the next one read), so that all of them are told at once.  Returns 0,
 * or -1 (nothing to dispose) when there was one.
 */
int h2p_htpasswd_load_all(h2p_htpasswd_t *out, const char *path, h2p_htpasswd_report_cb report, void *arg);
int h2p_groups_load_all(h2p_groups_t *out, const char *path, h2p_htpasswd_report_cb report, void *arg);

int h2p_groups_parse(h2p_groups_t *out, const char *text, size_t len, const char *source, char *err, size_t errlen);
int h2p_groups_load(h2p_groups_t *out, const char *path, char *err, size_t errlen);
void h2p_groups_dispose(h2p_groups_t *groups);

/* Whether `user` is listed in group `group`. */
int h2p_groups_is_member(const h2p_groups_t *groups, const char *group, const char *user, size_t user_len);

#endif

/* authentication: who the client is (anonymous, basic; REMOTE_USER for the application). */
#ifndef H2POOL_AUTHENTICATION_H
#define H2POOL_AUTHENTICATION_H

#include "frontend/config.h"

/* modules.authentication in a scope (authentication_conf.c) */
typedef struct h2p_authentication_conf {
    H2P_MODULE_HEAD;
    int anonymous;
    struct {
        int enabled;
        char *realm, *users_file;       /* realm defaults to the site name */
        h2p_origin_t users_file_origin; /* where users_file is named: its errors point there */
    } basic, digest;
    struct {
        int enabled;
        char *user_from;                           /* "subject_cn" etc., or NULL when map is used */
        h2p_strlist_t map_fingerprints, map_users; /* parallel; SHA-256 as 64 lower-case hex digits */
    } client_certificate;
    struct {
        int enabled;
        char *keytab;
    } negotiate;
    uint64_t credential_cache_ttl_ms;
    char *groups_file; /* roles for authorization: "group: user user ..." lines */
    /* basic.users_file and groups_file as read and checked when the configuration was loaded
       (with check_files; NULL otherwise): the modules use these, they never read the files */
    const struct h2p_htpasswd *basic_users;
    const struct h2p_groups *groups;
    h2p_origin_t groups_file_origin;
} h2p_authentication_conf_t;

/* What authorization needs of the authentication settings of a scope (`m` merged): */

/* the groups file its roles come from (NULL = none), and where it is named (origin may be NULL) */
const char *h2p_authentication_groups_file(const h2p_modules_conf_t *m, const h2p_origin_t **origin);

/* the realm of the challenge to send with a 401 (NULL when no challenge-based scheme is on) */
const char *h2p_authentication_challenge_realm(const h2p_modules_conf_t *m);

#endif

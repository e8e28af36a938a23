/*
 * h2pool configuration model (the README's "Configuration" is the contract users rely on).
 *
 * A configuration generation is built once by h2p_config_load(), never modified afterwards,
 * and shared by reference counting: the front end holds one reference for the generation it
 * serves, every request in flight holds one for the generation it started on.  Everything a
 * generation points to is owned by it and freed with it.
 *
 * Durations are stored in milliseconds, sizes in bytes.  Paths are absolute (resolved against
 * the directory of the YAML file that named them).  Every node that a later stage may want to
 * blame carries its origin (file:line:column) in an h2p_origin_t.
 */
#ifndef H2POOL_CONFIG_H
#define H2POOL_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

typedef struct h2p_origin {
    const char *file; /* owned by the generation */
    unsigned line, column;
} h2p_origin_t;

typedef struct h2p_strlist {
    char **items;
    size_t count;
} h2p_strlist_t;

/* ---- server ---------------------------------------------------------------------------- */

typedef struct h2p_limits_conf h2p_limits_conf_t;

typedef struct h2p_server_conf {
    unsigned threads; /* 0 = auto (number of CPUs) */
    char *error_log;  /* NULL = stderr */
    char *log_dir;
    char *control_socket;
    char *management;            /* "ip:port" or NULL */
    char *management_users_file; /* when set, the management endpoint asks for basic authentication */
    struct h2p_limits_conf {
        uint64_t max_connections;
        uint64_t header_timeout_ms;
        uint64_t body_timeout_ms; /* between two reads of a request body */
        uint64_t keepalive_timeout_ms;
        uint64_t max_request_body;
    } limits;
    struct {
        uint64_t max_memory;
        uint64_t max_entry;
    } cache;
    h2p_strlist_t load_modules; /* absolute paths of native module plugins */
    /* the front end's identity when h2pool starts as root; NULL = H2P_DEFAULT_SERVER_USER and
     * the user's own group */
    char *user, *group;
} h2p_server_conf_t;

#define H2P_DEFAULT_SERVER_USER "www-data" /* as Debian's nginx */

/* ---- pools ----------------------------------------------------------------------------- */

typedef enum h2p_activation { H2P_ACTIVATION_FASTCGI, H2P_ACTIVATION_SOCKET } h2p_activation_t;

typedef struct h2p_endpoint {
    int is_unix;
    char *text; /* as written, e.g. "unix:/run/php/fpm.sock" */
    struct sockaddr_storage addr;
    socklen_t addrlen;
} h2p_endpoint_t;

typedef struct h2p_pool_conf {
    char *name;
    h2p_origin_t origin;
    h2p_activation_t activation;
    h2p_strlist_t command; /* argv; empty when `connect` is used */
    h2p_strlist_t env;     /* "NAME=value" entries */
    char *working_dir;     /* NULL = directory of the YAML file */
    char *user, *group;    /* NULL = not set */
    unsigned max_processes, min_processes;
    uint64_t idle_timeout_ms;
    unsigned queue_length;
    uint64_t max_requests; /* 0 = never */
    uint64_t recycle_time_ms;
    uint64_t recycle_memory; /* RSS bytes, 0 = no limit */
    uint64_t startup_time_limit_ms, shutdown_time_limit_ms, request_timeout_ms;
    uint64_t ping_interval_ms, ping_timeout_ms; /* interval 0 = no pings */
    struct {
        int enabled;
        unsigned max_crashes;
        uint64_t interval_ms;
    } rapid_fail;
    int retry_on_crash;
    h2p_endpoint_t *connect; /* external workers (no spawning) */
    size_t num_connect;
} h2p_pool_conf_t;

/* ---- modules (settings per scope; inheritance is per module) --------------------------- */

typedef struct h2p_cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned prefix;
} h2p_cidr_t;

typedef struct h2p_status_range {
    unsigned from, to;
} h2p_status_range_t;

typedef struct h2p_request_filtering_conf {
    h2p_strlist_t verbs_allow, verbs_deny;           /* upper case */
    h2p_strlist_t extensions_allow, extensions_deny; /* lower case, with the dot */
    h2p_strlist_t hidden_segments;
    h2p_strlist_t deny_sequences; /* default none: `..` segments, `\` and NUL are refused always */
    uint64_t max_url, max_query_string, max_header_size;
    int allow_double_escaping, allow_high_bit;
} h2p_request_filtering_conf_t;

typedef struct h2p_ip_restriction_conf {
    int default_allow;
    h2p_cidr_t *allow, *deny;
    size_t num_allow, num_deny;
    h2p_cidr_t *trusted_proxies; /* X-Forwarded-For is honoured only from these */
    size_t num_trusted_proxies;
} h2p_ip_restriction_conf_t;

typedef struct h2p_authentication_conf {
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

typedef struct h2p_authz_rule {
    char *path; /* glob, NULL = every path */
    int allow;  /* 1 allow, 0 deny */
    h2p_strlist_t users, roles, verbs;
    h2p_origin_t origin;
} h2p_authz_rule_t;

typedef struct h2p_redirect_rule {
    char *from, *to;
    unsigned status;
} h2p_redirect_rule_t;

typedef struct h2p_rewrite_rule {
    char *match, *to;
    int unless_file, unless_directory;
    struct pcre2_real_code_8 *re; /* `match` compiled (JIT where available), freed with the generation */
    h2p_origin_t origin;
} h2p_rewrite_rule_t;

typedef struct h2p_header_setting {
    char *name;  /* lower case */
    char *value; /* NULL = remove the header */
} h2p_header_setting_t;

typedef enum h2p_custom_errors_mode {
    H2P_ERRORS_DETAILED_LOCAL_ONLY,
    H2P_ERRORS_ON,
    H2P_ERRORS_OFF /* detailed errors for everyone */
} h2p_custom_errors_mode_t;

#define H2P_MAX_ERROR_PAGE_SIZE (1024 * 1024)

typedef struct h2p_error_page {
    unsigned status;
    char *path;
    char *body; /* the file's content, read when the configuration was loaded (with check_files; NULL otherwise) */
    size_t body_len;
} h2p_error_page_t;

typedef struct h2p_output_cache_rule {
    char *path;
    uint64_t duration_ms;
    int vary_by_query;
    h2p_strlist_t vary_by_headers;
    /* how long past its duration an entry may still be answered (RFC 5861): while one request
     * refreshes it, and when the application fails with 502/503/504; 0: not at all */
    uint64_t stale_while_revalidate_ms, stale_if_error_ms;
} h2p_output_cache_rule_t;

/*
 * One module's settings in one scope.  `set` says the scope named the module (so it replaces
 * the parent's settings there); `enabled` = 0 removes the module from the chain.
 */
#define H2P_MODULE_HEAD                                                                                                            \
    int set;                                                                                                                       \
    int enabled;                                                                                                                   \
    h2p_origin_t origin;                                                                                                           \
    const char *path /* key path where the scope names the module, for messages */

typedef struct h2p_modules_conf {
    struct {
        H2P_MODULE_HEAD;
        h2p_request_filtering_conf_t c;
    } request_filtering;
    struct {
        H2P_MODULE_HEAD;
        h2p_ip_restriction_conf_t c;
    } ip_restriction;
    struct {
        H2P_MODULE_HEAD;
        h2p_authentication_conf_t c;
    } authentication;
    struct {
        H2P_MODULE_HEAD;
        h2p_authz_rule_t *rules;
        size_t count;
    } authorization;
    struct {
        H2P_MODULE_HEAD;
        h2p_redirect_rule_t *rules;
        size_t count;
    } redirect;
    struct {
        H2P_MODULE_HEAD;
        h2p_rewrite_rule_t *rules;
        size_t count;
    } rewrite;
    struct {
        H2P_MODULE_HEAD;
        int depth_infinity;
    } webdav;
    struct {
        H2P_MODULE_HEAD;
        h2p_strlist_t extensions;
        int exec;
    } ssi;
    struct {
        H2P_MODULE_HEAD;
        h2p_header_setting_t *headers;
        size_t count;
    } custom_headers;
    struct {
        H2P_MODULE_HEAD;
        h2p_custom_errors_mode_t mode;
        h2p_error_page_t *pages;
        size_t num_pages;
    } custom_errors;
    struct {
        H2P_MODULE_HEAD;
        int dynamic, static_;
        h2p_strlist_t types;
        uint64_t min_size;
    } compression;
    struct {
        H2P_MODULE_HEAD;
        h2p_output_cache_rule_t *rules;
        size_t count;
    } output_cache;
    struct {
        H2P_MODULE_HEAD;
        char *format;
        char *rotate;
        uint64_t max_size; /* rotate: size */
    } logging;
    struct {
        H2P_MODULE_HEAD;
        h2p_status_range_t *status;
        size_t num_status;
        uint64_t time_taken_ms;
        char *dir;
        unsigned max_files; /* the newest traces kept in dir */
    } failed_request_tracing;
    struct {
        H2P_MODULE_HEAD;
    } request_monitor;
    /* settings of plugin modules (server.load_modules), kept as YAML text per module name */
    struct {
        char *name;
        char *yaml;
        h2p_origin_t origin;
    } * plugin_settings;
    size_t num_plugin_settings;
} h2p_modules_conf_t;

/* ---- sites ----------------------------------------------------------------------------- */

typedef enum h2p_scheme { H2P_SCHEME_HTTP, H2P_SCHEME_HTTPS, H2P_SCHEME_TCP } h2p_scheme_t;

typedef struct h2p_binding {
    h2p_scheme_t scheme;
    struct sockaddr_storage addr; /* the wildcard address of AF_INET6 (dual stack) for `*` */
    socklen_t addrlen;
    int any_address; /* written as `*` */
    uint16_t port;
    char *host; /* lower case; NULL = any Host */
    char *text; /* as written */
    h2p_origin_t origin;
} h2p_binding_t;

/* IIS's resourceType: what must exist under the root for a handler mapping to take a request. */
typedef enum h2p_resource {
    H2P_RESOURCE_DEFAULT = -1, /* unset: file for patterns naming files ("*.php"), else unspecified */
    H2P_RESOURCE_FILE,
    H2P_RESOURCE_DIRECTORY,
    H2P_RESOURCE_EITHER,
    H2P_RESOURCE_UNSPECIFIED
} h2p_resource_t;

typedef struct h2p_handler_mapping {
    char *path;                 /* a glob: "*.php", "/cgi-bin/ *.cgi" (without the space) */
    char *pool;                 /* NULL unless the mapping targets a pool */
    int cgi;                    /* 1 = run as CGI */
    h2p_resource_t resource;    /* never H2P_RESOURCE_DEFAULT once loaded */
    h2p_pool_conf_t *pool_conf; /* resolved at load time */
    h2p_origin_t origin;
} h2p_handler_mapping_t;

/* Settings that `locations:` (and applications) may override; unset fields inherit. */
typedef struct h2p_scope_conf {
    h2p_strlist_t default_documents;
    int has_default_documents;
    int directory_listing; /* -1 = inherit */
    int follow_symlinks;   /* -1 = inherit */
    h2p_modules_conf_t modules;
} h2p_scope_conf_t;

typedef struct h2p_location_conf {
    char *path; /* prefix, no trailing slash except "/" */
    h2p_scope_conf_t scope;
    h2p_origin_t origin;
} h2p_location_conf_t;

typedef struct h2p_application_conf {
    char *path; /* prefix: "/" for the root application */
    char *root; /* absolute physical path; default: the site's root + path */
    char *pool; /* pool that runs this application's pool-bound handler mappings, or NULL */
    h2p_pool_conf_t *pool_conf;
    h2p_handler_mapping_t *handlers; /* NULL/0 = inherit the site's (the root application has them) */
    size_t num_handlers;
    int has_handlers;
    h2p_scope_conf_t scope;
    h2p_origin_t origin;
} h2p_application_conf_t;

typedef struct h2p_site_conf {
    char *name;
    h2p_origin_t origin;
    h2p_binding_t *bindings;
    size_t num_bindings;
    struct {
        char *certificate, *key, *client_ca; /* NULL = not set */
        enum { H2P_CLIENT_VERIFY_NONE, H2P_CLIENT_VERIFY_OPTIONAL, H2P_CLIENT_VERIFY_REQUIRED } client_verify;
    } tls;
    int http2;
    char *pool; /* for tcp:// sites: the socket-activated pool (on http sites `pool:` is the root app's) */
    h2p_pool_conf_t *pool_conf;
    /* the root application first, then the others sorted by descending path length; a tcp://
       site serves no HTTP and has none (no applications, handlers, locations) */
    h2p_application_conf_t *applications;
    size_t num_applications;
    h2p_handler_mapping_t *handlers;
    size_t num_handlers;
    /* sorted by descending path length */
    h2p_location_conf_t *locations;
    size_t num_locations;
} h2p_site_conf_t;

/* ---- a generation ---------------------------------------------------------------------- */

typedef struct h2p_config {
    unsigned refcnt; /* atomic */
    uint64_t generation;
    char *dir; /* absolute path of the conf.d directory */
    h2p_server_conf_t server;
    h2p_pool_conf_t *pools;
    size_t num_pools;
    h2p_site_conf_t *sites;
    size_t num_sites;
    struct h2p_config_arena *arena; /* owns every allocation of this generation */
} h2p_config_t;

/* Errors collected while loading: every one of them, not just the first. */
typedef struct h2p_config_errors {
    char **messages; /* "file:line:col: key.path: text" */
    size_t count;
} h2p_config_errors_t;

/*
 * Reads every *.yaml directly in `dir` (name order) and builds a generation.  Returns NULL and
 * fills `errors` when anything is wrong; nothing partial is ever returned.  `check_files` = 0
 * skips the checks that touch the file system (roots, certificates), for unit tests of syntax.
 * Messages are appended to `errors` (start with {NULL, 0}; free with h2p_config_errors_clear).
 * FILE in a message is `dir` as given + "/" + the file name.
 */
h2p_config_t *h2p_config_load(const char *dir, int check_files, h2p_config_errors_t *errors);
h2p_config_t *h2p_config_retain(h2p_config_t *conf);
void h2p_config_release(h2p_config_t *conf);
void h2p_config_errors_clear(h2p_config_errors_t *errors);

h2p_pool_conf_t *h2p_config_find_pool(h2p_config_t *conf, const char *name);

/* Settings of a child scope over its parent's: a module the child names replaces the parent's. */
void h2p_modules_merge(h2p_modules_conf_t *out, const h2p_modules_conf_t *parent, const h2p_modules_conf_t *child);
/* Whether a location applies to an application ("" for the root one): one path contains the other. */
int h2p_location_applies(const char *app_prefix, size_t app_len, const char *location);

/*
 * Shared value parsers, also used by the control protocol; return 0 on success.  Durations and
 * sizes return -1 for bad syntax and -2 when the value does not fit in 64 bits.
 * h2p_parse_binding() fills out->host and out->text with malloc()ed copies (free them with
 * h2p_binding_clear()); *err (a static string) says what is wrong on failure.
 */
int h2p_parse_duration_ms(const char *s, uint64_t *out);
int h2p_parse_size(const char *s, uint64_t *out);
int h2p_parse_binding(const char *s, h2p_binding_t *out, const char **err);
void h2p_binding_clear(h2p_binding_t *binding);
int h2p_parse_cidr(const char *s, h2p_cidr_t *out);

#endif

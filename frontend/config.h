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
    /* php-cgi as one master process with PHP_FCGI_CHILDREN=max_processes + 1 children (set by the
     * parser, which adds that variable to env): h2pool spawns the master and keeps max_processes
     * slots, one connection each, to its socket; the child left over is a spare that takes over
     * at once from one that ends */
    int php_master;
    /* a master's child is ended (SIGKILL, between requests) once it has answered this many
     * requests on its slot's connection (0: php-cgi's own PHP_FCGI_MAX_REQUESTS decides alone) */
    uint64_t php_child_max_requests;
} h2p_pool_conf_t;

/* ---- modules (settings per scope; inheritance is per module) --------------------------- */

typedef struct h2p_cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned prefix;
} h2p_cidr_t;

/*
 * One module's settings in one scope.  `set` says the scope named the module (so it replaces
 * the parent's settings there); `enabled` = 0 removes the module from the chain.  Every module's
 * settings struct (struct h2p_<name>_conf, in native-modules/<name>.h) begins with this head:
 * frontend/config_modules.c reads and writes it without knowing the module.
 */
#define H2P_MODULE_HEAD                                                                                                            \
    int set;                                                                                                                       \
    int enabled;                                                                                                                   \
    h2p_origin_t origin;                                                                                                           \
    const char *path /* key path where the scope names the module, for messages */

/*
 * The modules' settings in one scope: a slot per module with settings in
 * native-modules/modules.def, pointing to the module's own settings (allocated in the
 * generation's arena, shared by every scope that inherits them).  At the site level every slot
 * is filled (the defaults, or what the site wrote); in an application or location a slot is NULL
 * unless the scope names the module.  Only the module itself knows what its struct holds.
 */
typedef struct h2p_modules_conf {
#define SETTINGS(name) struct h2p_##name##_conf *name;
#define NO_SETTINGS(name)
#define H2P_MODULE(name, phases, settings) settings(name)
#include "native-modules/modules.def"
#undef H2P_MODULE
#undef SETTINGS
#undef NO_SETTINGS
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
    /* SHA-256 (hex) of what was read: every YAML file's name and bytes, in order.  Two loads of
     * conf.d agree on it exactly when they read the same files (the spawner and the front end
     * each read conf.d on a reload: a file renamed between the two reads shows here) */
    char digest[65];
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
/* Calls prepare(dir, arg) for each directory the enabled modules of a scope write into (log and
 * trace directories), for the front end to create them before it gives up root. */
void h2p_modules_prepare_dirs(const h2p_config_t *conf, const h2p_site_conf_t *site, const h2p_modules_conf_t *m,
                              void (*prepare)(const char *dir, void *arg), void *arg);
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

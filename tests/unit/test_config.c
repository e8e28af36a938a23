/*
 * Unit tests of the configuration loader (frontend/config*.c).
 *
 * A good, complete configuration lives in data/good/ (H2POOL_TEST_DATA); the bad ones are small
 * YAML strings written into a fresh mkdtemp() directory per case, and each case asserts one
 * message with the exact "FILE:LINE:COL: key.path: " prefix and a word of the reason.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "frontend/config.h"
#include "native-modules/htpasswd.h"
#include "native-modules/request_monitor.h"
#include "native-modules/ip_restriction.h"
#include "native-modules/request_filtering.h"
#include "native-modules/redirect.h"
#include "native-modules/rewrite.h"
#include "native-modules/authentication.h"
#include "native-modules/authorization.h"
#include "native-modules/webdav.h"
#include "native-modules/ssi.h"
#include "native-modules/custom_headers.h"
#include "native-modules/compression.h"
#include "native-modules/output_cache.h"
#include "native-modules/custom_errors.h"
#include "native-modules/logging.h"
#include "native-modules/failed_request_tracing.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static char *make_temp_dir(void)
{
    const char *tmp = getenv("TMPDIR");
    char *dir;

    assert_true(asprintf(&dir, "%s/h2pool-config-XXXXXX", tmp != NULL && *tmp != '\0' ? tmp : "/tmp") > 0);
    assert_non_null(mkdtemp(dir));
    return dir;
}

static void write_file(const char *dir, const char *name, const char *content)
{
    char path[4096];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_non_null(fp = fopen(path, "w"));
    assert_int_equal(fputs(content, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

static void make_subdir(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_int_equal(mkdir(path, 0755), 0);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void remove_dir(char *dir)
{
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

/* A directory holding a.yaml (and b.yaml when given). */
static char *conf_dir(const char *a_yaml, const char *b_yaml)
{
    char *dir = make_temp_dir();
    write_file(dir, "a.yaml", a_yaml);
    if (b_yaml != NULL)
        write_file(dir, "b.yaml", b_yaml);
    return dir;
}

static void print_errors(const h2p_config_errors_t *errors)
{
    for (size_t i = 0; i < errors->count; i++)
        print_message("    %s\n", errors->messages[i]);
}

/* Loads a config that must be good; fails the test with the messages otherwise. */
static h2p_config_t *load_good(const char *dir, int check_files)
{
    h2p_config_errors_t errors = {NULL, 0};
    h2p_config_t *conf = h2p_config_load(dir, check_files, &errors);

    if (conf == NULL || errors.count != 0)
        print_errors(&errors);
    assert_non_null(conf);
    assert_int_equal(errors.count, 0);
    return conf;
}

static h2p_config_t *load_yaml(const char *a_yaml, const char *b_yaml)
{
    char *dir = conf_dir(a_yaml, b_yaml);
    h2p_config_t *conf = load_good(dir, 0);
    remove_dir(dir);
    return conf;
}

static int has_item(const h2p_strlist_t *list, const char *item)
{
    for (size_t i = 0; i < list->count; i++)
        if (strcmp(list->items[i], item) == 0)
            return 1;
    return 0;
}

static const h2p_site_conf_t *find_site(const h2p_config_t *conf, const char *name)
{
    for (size_t i = 0; i < conf->num_sites; i++)
        if (strcmp(conf->sites[i].name, name) == 0)
            return &conf->sites[i];
    fail_msg("no site %s", name);
    return NULL;
}

static const h2p_application_conf_t *find_app(const h2p_site_conf_t *site, const char *path)
{
    for (size_t i = 0; i < site->num_applications; i++)
        if (strcmp(site->applications[i].path, path) == 0)
            return &site->applications[i];
    fail_msg("no application %s", path);
    return NULL;
}

static const char *ends_with(const char *s, const char *suffix)
{
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && strcmp(s + ls - lx, suffix) == 0 ? s : NULL;
}

#define PADDING_LINE "# padding padding padding padding padding padding padding padding padding\n" /* 74 bytes */
#define MINIMAL_SITE "sites:\n  s:\n    bindings: [http://*:80]\n    root: .\n"

/* ---- the good configuration of data/good ---------------------------------------------------- */

static char *good_dir(void)
{
    const char *data = getenv("H2POOL_TEST_DATA");
    char *dir;

    if (data == NULL)
        data = "tests/unit/data";
    assert_true(asprintf(&dir, "%s/good/conf.d", data) > 0);
    return dir;
}

static void test_good_config_server(void **state)
{
    char *dir = good_dir();
    h2p_config_t *conf = load_good(dir, 1);
    h2p_server_conf_t *server = &conf->server;

    assert_int_equal(conf->refcnt, 1);
    assert_true(conf->generation > 0);
    assert_non_null(ends_with(conf->dir, "/good/conf.d"));
    assert_int_equal(conf->dir[0], '/');
    assert_int_equal(server->threads, 0);
    assert_non_null(ends_with(server->error_log, "/good/conf.d/logs/error.log"));
    assert_int_equal(server->error_log[0], '/');
    assert_non_null(ends_with(server->log_dir, "/conf.d/logs"));
    assert_non_null(ends_with(server->control_socket, "/conf.d/run/h2pool.sock"));
    assert_string_equal(server->management, "127.0.0.1:8090");
    assert_int_equal(server->limits.max_connections, 20000);
    assert_int_equal(server->limits.header_timeout_ms, 15000);
    assert_int_equal(server->limits.keepalive_timeout_ms, 120000);
    assert_int_equal(server->limits.max_request_body, 50000000);
    /* set in another file than limits */
    assert_int_equal(server->cache.max_memory, 512ull * 1024 * 1024);
    assert_int_equal(server->cache.max_entry, 2 * 1024 * 1024);
    assert_int_equal(server->load_modules.count, 0);
    assert_string_equal(server->user, "nobody");
    assert_string_equal(server->group, "nogroup");
    h2p_config_release(conf);
    free(dir);
}

static void test_good_config_pools(void **state)
{
    char *dir = good_dir();
    h2p_config_t *conf = load_good(dir, 1);
    h2p_pool_conf_t *php, *shop, *capi, *echo;
    const struct sockaddr_in *sin;
    const struct sockaddr_in6 *sin6;

    assert_int_equal(conf->num_pools, 4);
    assert_non_null(php = h2p_config_find_pool(conf, "php"));
    assert_null(h2p_config_find_pool(conf, "nope"));
    assert_string_equal(php->name, "php");
    assert_non_null(ends_with(php->origin.file, "10-pools.yaml"));
    assert_int_equal(php->origin.line, 7);
    assert_int_equal(php->origin.column, 3);
    assert_int_equal(php->activation, H2P_ACTIVATION_FASTCGI);
    assert_int_equal(php->command.count, 1);
    assert_string_equal(php->command.items[0], "/usr/bin/php-cgi");
    assert_int_equal(php->env.count, 3);
    assert_string_equal(php->env.items[0], "PHP_FCGI_MAX_REQUESTS=0");
    assert_string_equal(php->env.items[1], "PHP_INI_SCAN_DIR=/etc/php");
    assert_string_equal(php->env.items[2], "PHP_FCGI_CHILDREN=9"); /* one master, a child per slot and a spare */
    assert_int_equal(php->php_master, 1);
    assert_int_equal(php->php_child_max_requests, 0); /* its own PHP_FCGI_MAX_REQUESTS decides */
    assert_non_null(ends_with(php->working_dir, "/good/www"));
    assert_string_equal(php->user, "www-data");
    assert_string_equal(php->group, "www-data");
    assert_int_equal(php->max_processes, 8);
    assert_int_equal(php->min_processes, 2);
    assert_int_equal(php->idle_timeout_ms, 600000);
    assert_int_equal(php->queue_length, 500);
    assert_int_equal(php->max_requests, 0);
    assert_int_equal(php->recycle_time_ms, 3600000);
    assert_int_equal(php->recycle_memory, 256 * 1024 * 1024);
    assert_int_equal(php->startup_time_limit_ms, 30000);
    assert_int_equal(php->shutdown_time_limit_ms, 5000);
    assert_int_equal(php->request_timeout_ms, 500);
    assert_int_equal(php->ping_interval_ms, 10000);
    assert_int_equal(php->ping_timeout_ms, 20000);
    assert_int_equal(php->rapid_fail.enabled, 1);
    assert_int_equal(php->rapid_fail.max_crashes, 3);
    assert_int_equal(php->rapid_fail.interval_ms, 120000);
    assert_int_equal(php->retry_on_crash, 0);
    assert_int_equal(php->num_connect, 0);

    /* argv[0] with a '/' resolves against the YAML file's directory; other arguments stay */
    shop = h2p_config_find_pool(conf, "shop");
    assert_int_equal(shop->command.count, 3);
    assert_non_null(ends_with(shop->command.items[0], "/good/conf.d/bin/shop-fcgi"));
    assert_string_equal(shop->command.items[1], "--threads");
    assert_string_equal(shop->command.items[2], "2");
    assert_null(shop->working_dir);
    assert_int_equal(shop->max_processes, 4);

    capi = h2p_config_find_pool(conf, "capi");
    assert_int_equal(capi->command.count, 0);
    assert_int_equal(capi->num_connect, 5);
    assert_int_equal(capi->connect[0].is_unix, 1);
    assert_string_equal(capi->connect[0].text, "unix:/run/capi.sock");
    assert_string_equal(((struct sockaddr_un *)&capi->connect[0].addr)->sun_path, "/run/capi.sock");
    assert_int_equal(capi->connect[1].is_unix, 0);
    sin = (const struct sockaddr_in *)&capi->connect[1].addr;
    assert_int_equal(sin->sin_family, AF_INET);
    assert_int_equal(ntohs(sin->sin_port), 9000);
    assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x0a000005);
    assert_int_equal(capi->connect[1].addrlen, sizeof(struct sockaddr_in));
    sin6 = (const struct sockaddr_in6 *)&capi->connect[2].addr;
    assert_int_equal(sin6->sin6_family, AF_INET6);
    assert_int_equal(ntohs(sin6->sin6_port), 9001);
    assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
    sin = (const struct sockaddr_in *)&capi->connect[3].addr;
    assert_int_equal(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
    assert_non_null(ends_with(((struct sockaddr_un *)&capi->connect[4].addr)->sun_path, "/good/conf.d/run/capi2.sock"));

    echo = h2p_config_find_pool(conf, "echo");
    assert_int_equal(echo->activation, H2P_ACTIVATION_SOCKET);
    assert_string_equal(echo->user, "root");
    h2p_config_release(conf);
    free(dir);
}

static void test_good_config_site(void **state)
{
    char *dir = good_dir();
    h2p_config_t *conf = load_good(dir, 1);
    const h2p_site_conf_t *blog = find_site(conf, "blog"), *echo = find_site(conf, "echo");
    const h2p_application_conf_t *root, *shop, *api;
    const struct sockaddr_in6 *sin6;

    assert_int_equal(blog->num_bindings, 3);
    assert_int_equal(blog->bindings[0].scheme, H2P_SCHEME_HTTP);
    assert_int_equal(blog->bindings[0].any_address, 1);
    sin6 = (const struct sockaddr_in6 *)&blog->bindings[0].addr;
    assert_int_equal(sin6->sin6_family, AF_INET6);
    assert_true(IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr));
    assert_int_equal(ntohs(sin6->sin6_port), 8080);
    assert_int_equal(blog->bindings[0].port, 8080);
    assert_string_equal(blog->bindings[0].host, "blog.test"); /* lower-cased */
    assert_string_equal(blog->bindings[0].text, "http://*:8080:Blog.Test");
    assert_int_equal(blog->bindings[1].scheme, H2P_SCHEME_HTTPS);
    assert_int_equal(blog->bindings[1].addr.ss_family, AF_INET);
    assert_int_equal(blog->bindings[1].any_address, 0);
    assert_int_equal(blog->bindings[2].addr.ss_family, AF_INET6);
    assert_null(blog->bindings[2].host);
    assert_non_null(ends_with(blog->tls.certificate, "/conf.d/certs/blog.pem"));
    assert_non_null(ends_with(blog->tls.key, "/conf.d/certs/blog.key"));
    assert_non_null(ends_with(blog->tls.client_ca, "/conf.d/certs/clients.pem"));
    assert_int_equal(blog->tls.client_verify, H2P_CLIENT_VERIFY_OPTIONAL); /* client_ca given, no client_verify */
    assert_int_equal(blog->http2, 0);
    assert_null(blog->pool);

    /* site-level handlers */
    assert_int_equal(blog->num_handlers, 3);
    assert_string_equal(blog->handlers[0].path, "*.php");
    assert_ptr_equal(blog->handlers[0].pool_conf, h2p_config_find_pool(conf, "php"));
    assert_ptr_equal(blog->handlers[1].pool_conf, h2p_config_find_pool(conf, "capi"));
    assert_int_equal(blog->handlers[2].cgi, 1);
    assert_null(blog->handlers[2].pool);
    assert_null(blog->handlers[2].pool_conf);

    /* root application first, then by descending length; trailing '/' stripped */
    assert_int_equal(blog->num_applications, 3);
    root = &blog->applications[0];
    assert_string_equal(root->path, "/");
    assert_non_null(ends_with(root->root, "/good/www/blog"));
    assert_int_equal(root->scope.has_default_documents, 1);
    assert_int_equal(root->scope.default_documents.count, 2);
    assert_string_equal(root->scope.default_documents.items[1], "index.html");
    assert_int_equal(root->scope.directory_listing, 0);
    assert_int_equal(root->scope.follow_symlinks, 1);
    assert_int_equal(root->num_handlers, 3);
    assert_string_equal(blog->applications[1].path, "/shop/api");
    assert_string_equal(blog->applications[2].path, "/shop");
    shop = find_app(blog, "/shop");
    assert_non_null(ends_with(shop->root, "/good/www/shop"));
    assert_string_equal(shop->pool, "shop");
    assert_ptr_equal(shop->pool_conf, h2p_config_find_pool(conf, "shop"));
    assert_int_equal(shop->has_handlers, 0);
    assert_int_equal(shop->scope.directory_listing, -1);
    assert_int_equal(shop->scope.follow_symlinks, -1);
    assert_int_equal(shop->scope.has_default_documents, 0);
    assert_null(shop->scope.modules.compression); /* not named: inherits */
    api = find_app(blog, "/shop/api");
    assert_int_equal(api->has_handlers, 1);
    assert_int_equal(api->num_handlers, 1);
    assert_ptr_equal(api->handlers[0].pool_conf, h2p_config_find_pool(conf, "capi"));
    assert_int_equal(api->scope.modules.compression->set, 1);
    assert_int_equal(api->scope.modules.compression->enabled, 0);
    assert_null(api->scope.modules.request_filtering);

    /* locations by descending length */
    assert_int_equal(blog->num_locations, 2);
    assert_string_equal(blog->locations[0].path, "/downloads");
    assert_int_equal(blog->locations[0].scope.directory_listing, 1);
    assert_int_equal(blog->locations[0].scope.follow_symlinks, -1);
    assert_string_equal(blog->locations[1].path, "/admin");
    assert_int_equal(blog->locations[1].scope.modules.ip_restriction->set, 1);
    assert_int_equal(blog->locations[1].scope.modules.ip_restriction->default_allow, 0);
    assert_int_equal(blog->locations[1].scope.modules.ip_restriction->num_allow, 2);
    assert_null(blog->locations[1].scope.modules.authentication);

    /* the tcp site */
    assert_int_equal(echo->num_bindings, 1);
    assert_int_equal(echo->bindings[0].scheme, H2P_SCHEME_TCP);
    assert_string_equal(echo->pool, "echo");
    assert_ptr_equal(echo->pool_conf, h2p_config_find_pool(conf, "echo"));
    assert_int_equal(echo->num_applications, 0);
    h2p_config_release(conf);
    free(dir);
}

static void test_good_config_modules(void **state)
{
    char *dir = good_dir();
    h2p_config_t *conf = load_good(dir, 1);
    const h2p_modules_conf_t *m = &find_site(conf, "blog")->applications[0].scope.modules;
    const h2p_request_filtering_conf_t *rf = m->request_filtering;
    const h2p_ip_restriction_conf_t *ip = m->ip_restriction;
    const h2p_authentication_conf_t *auth = m->authentication;

    assert_int_equal(m->request_filtering->set, 1);
    assert_int_equal(m->request_filtering->enabled, 1);
    assert_int_equal(m->request_filtering->origin.line, 24); /* the module's key */
    assert_int_equal(m->request_filtering->origin.column, 7);
    assert_int_equal(rf->verbs_allow.count, 3);
    assert_string_equal(rf->verbs_allow.items[0], "GET"); /* upper-cased */
    assert_int_equal(rf->extensions_deny.count, 3);
    assert_string_equal(rf->extensions_deny.items[1], ".bak"); /* lower case, dot added */
    assert_true(has_item(&rf->hidden_segments, "App_Data"));
    assert_int_equal(rf->max_url, 8192);
    assert_int_equal(rf->max_query_string, 1024);
    assert_int_equal(rf->max_header_size, 16384); /* default */
    assert_int_equal(rf->allow_double_escaping, 0);
    assert_int_equal(rf->allow_high_bit, 1);

    assert_int_equal(ip->default_allow, 1);
    assert_int_equal(ip->num_allow, 0);
    assert_int_equal(ip->num_deny, 2);
    assert_int_equal(ip->deny[0].family, AF_INET);
    assert_int_equal(ip->deny[0].prefix, 8);
    assert_int_equal(ip->deny[0].addr[0], 10);
    assert_int_equal(ip->deny[0].addr[1], 0); /* host bits cleared */
    assert_int_equal(ip->deny[1].family, AF_INET6);
    assert_int_equal(ip->deny[1].prefix, 32);
    assert_int_equal(ip->num_trusted_proxies, 1);
    assert_int_equal(ip->trusted_proxies[0].prefix, 32);

    assert_int_equal(auth->anonymous, 1);
    assert_int_equal(auth->basic.enabled, 1);
    assert_string_equal(auth->basic.realm, "blog");
    assert_non_null(ends_with(auth->basic.users_file, "/conf.d/users.htpasswd"));
    /* read and checked with the configuration: the module uses what was read */
    assert_non_null(auth->basic_users);
    assert_int_equal(auth->basic_users->count, 1);
    assert_string_equal(auth->basic_users->users[0].name, "alice");
    assert_int_equal(auth->digest.enabled, 1);
    assert_int_equal(auth->client_certificate.enabled, 1);
    assert_null(auth->client_certificate.user_from);
    assert_int_equal(auth->client_certificate.map_fingerprints.count, 1);
    assert_string_equal(auth->client_certificate.map_fingerprints.items[0],
                        "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
    assert_string_equal(auth->client_certificate.map_users.items[0], "alice");
    assert_int_equal(auth->negotiate.enabled, 1);
    assert_non_null(ends_with(auth->negotiate.keytab, "/http.keytab"));
    assert_int_equal(auth->credential_cache_ttl_ms, 90000);
    assert_non_null(ends_with(auth->groups_file, "/groups.txt"));
    assert_non_null(auth->groups);
    assert_true(h2p_groups_is_member(auth->groups, "admins", "alice", 5));

    assert_int_equal(m->authorization->count, 2);
    assert_int_equal(m->authorization->rules[0].allow, 1);
    assert_string_equal(m->authorization->rules[0].users.items[0], "alice");
    assert_string_equal(m->authorization->rules[0].roles.items[0], "admins");
    assert_string_equal(m->authorization->rules[0].verbs.items[0], "GET");
    assert_int_equal(m->authorization->rules[1].allow, 0);
    assert_string_equal(m->authorization->rules[1].users.items[0], "*");
    assert_int_equal(m->authorization->rules[1].origin.line, 42);

    assert_int_equal(m->redirect->count, 2);
    assert_string_equal(m->redirect->rules[0].to, "/new/$1");
    assert_int_equal(m->redirect->rules[0].status, 301);
    assert_int_equal(m->redirect->rules[1].status, 302); /* default */

    assert_int_equal(m->rewrite->count, 2);
    assert_string_equal(m->rewrite->rules[0].match, "^/post/([0-9]+)$");
    assert_int_equal(m->rewrite->rules[0].unless_file, 0);
    assert_int_equal(m->rewrite->rules[1].unless_file, 1);
    assert_int_equal(m->rewrite->rules[1].unless_directory, 1);

    assert_int_equal(m->webdav->set, 1);
    assert_int_equal(m->webdav->enabled, 0);
    assert_int_equal(m->webdav->depth_infinity, 1);
    assert_int_equal(m->ssi->set, 1);
    assert_int_equal(m->ssi->enabled, 1); /* named: on */
    assert_int_equal(m->ssi->extensions.count, 1);
    assert_string_equal(m->ssi->extensions.items[0], ".shtml");

    assert_int_equal(m->custom_headers->count, 3);
    assert_string_equal(m->custom_headers->headers[0].name, "x-frame-options");
    assert_string_equal(m->custom_headers->headers[0].value, "DENY");
    assert_string_equal(m->custom_headers->headers[1].name, "server");
    assert_null(m->custom_headers->headers[1].value); /* null: remove */
    assert_string_equal(m->custom_headers->headers[2].value, "");

    assert_int_equal(m->custom_errors->mode, H2P_ERRORS_ON);
    assert_int_equal(m->custom_errors->num_pages, 1);
    assert_int_equal(m->custom_errors->pages[0].status, 404);
    assert_non_null(ends_with(m->custom_errors->pages[0].path, "/conf.d/errors/404.html"));
    assert_non_null(m->custom_errors->pages[0].body);
    assert_int_equal(m->custom_errors->pages[0].body_len, 19);

    assert_int_equal(m->compression->dynamic, 1);
    assert_int_equal(m->compression->static_, 1);
    assert_int_equal(m->compression->types.count, 2);
    assert_int_equal(m->compression->min_size, 1024);

    assert_int_equal(m->output_cache->count, 1);
    assert_int_equal(m->output_cache->rules[0].duration_ms, 30000);
    assert_int_equal(m->output_cache->rules[0].vary_by_query, 1);
    assert_string_equal(m->output_cache->rules[0].vary_by_headers.items[0], "accept-language");
    assert_int_equal(m->output_cache->rules[0].stale_while_revalidate_ms, 10000);
    assert_int_equal(m->output_cache->rules[0].stale_if_error_ms, 3600000);

    assert_string_equal(m->logging->format, "json");
    assert_string_equal(m->logging->rotate, "hourly");
    assert_int_equal(m->failed_request_tracing->enabled, 1);
    assert_int_equal(m->failed_request_tracing->num_status, 2);
    assert_int_equal(m->failed_request_tracing->status[0].from, 500);
    assert_int_equal(m->failed_request_tracing->status[0].to, 599);
    assert_int_equal(m->failed_request_tracing->status[1].from, 404);
    assert_int_equal(m->failed_request_tracing->status[1].to, 404);
    assert_int_equal(m->failed_request_tracing->time_taken_ms, 5000);
    assert_non_null(ends_with(m->failed_request_tracing->dir, "/conf.d/logs/freb"));
    assert_int_equal(m->request_monitor->set, 1);
    assert_int_equal(m->request_monitor->enabled, 0);
    h2p_config_release(conf);
    free(dir);
}

/* ---- defaults ----------------------------------------------------------------------------- */

static void test_defaults(void **state)
{
    h2p_config_t *conf = load_yaml("pools:\n  php: {command: [php-cgi]}\n"
                                   "sites:\n  s: {bindings: [http://*:80], root: www, handlers: [{path: '*.php', pool: php}]}\n",
                                   NULL);
    const h2p_server_conf_t *server = &conf->server;
    const h2p_pool_conf_t *pool = h2p_config_find_pool(conf, "php");
    const h2p_site_conf_t *site = find_site(conf, "s");
    const h2p_scope_conf_t *scope = &site->applications[0].scope;
    const h2p_modules_conf_t *m = &scope->modules;

    assert_int_equal(server->threads, 0);
    assert_null(server->error_log);
    assert_null(server->management);
    assert_null(server->user); /* H2P_DEFAULT_SERVER_USER, its own group */
    assert_null(server->group);
    assert_int_equal(server->limits.max_connections, 10000);
    assert_int_equal(server->limits.header_timeout_ms, 10000);
    assert_int_equal(server->limits.body_timeout_ms, 60000);
    assert_int_equal(server->limits.keepalive_timeout_ms, 120000);
    assert_int_equal(server->limits.max_request_body, 30000000);
    assert_int_equal(server->cache.max_memory, 256 * 1024 * 1024);
    assert_int_equal(server->cache.max_entry, 1024 * 1024);

    assert_string_equal(pool->command.items[0], "php-cgi"); /* no '/': found in PATH, not resolved */
    assert_null(pool->working_dir);
    assert_null(pool->user);
    assert_int_equal(pool->activation, H2P_ACTIVATION_FASTCGI);
    assert_int_equal(pool->max_processes, 4);
    assert_int_equal(pool->min_processes, 0);
    assert_int_equal(pool->idle_timeout_ms, 20 * 60 * 1000);
    assert_int_equal(pool->queue_length, 1000);
    assert_int_equal(pool->max_requests, 10000);
    assert_int_equal(pool->recycle_time_ms, 29ull * 3600 * 1000);
    assert_int_equal(pool->recycle_memory, 0);
    assert_int_equal(pool->startup_time_limit_ms, 90000);
    assert_int_equal(pool->shutdown_time_limit_ms, 90000);
    assert_int_equal(pool->request_timeout_ms, 90000);
    assert_int_equal(pool->ping_interval_ms, 30000);
    assert_int_equal(pool->ping_timeout_ms, 90000);
    assert_int_equal(pool->rapid_fail.enabled, 1);
    assert_int_equal(pool->rapid_fail.max_crashes, 5);
    assert_int_equal(pool->rapid_fail.interval_ms, 300000);
    assert_int_equal(pool->retry_on_crash, 1);

    assert_int_equal(site->http2, 1);
    assert_int_equal(site->tls.client_verify, H2P_CLIENT_VERIFY_NONE);
    assert_null(site->tls.certificate);
    assert_int_equal(site->num_applications, 1);
    assert_int_equal(site->num_locations, 0);
    assert_null(site->applications[0].pool);
    assert_int_equal(scope->has_default_documents, 1);
    assert_int_equal(scope->default_documents.count, 4);
    assert_string_equal(scope->default_documents.items[0], "index.php");
    assert_string_equal(scope->default_documents.items[3], "default.htm");
    assert_int_equal(scope->directory_listing, 0);
    assert_int_equal(scope->follow_symlinks, 0);

    /* site level: no module named, yet every one holds its defaults */
    assert_int_equal(m->request_filtering->set, 0);
    assert_int_equal(m->request_filtering->enabled, 1);
    assert_int_equal(m->request_filtering->max_url, 4096);
    assert_int_equal(m->request_filtering->max_query_string, 2048);
    assert_int_equal(m->request_filtering->max_header_size, 16384);
    assert_int_equal(m->request_filtering->deny_sequences.count, 0);
    /* what no site means to publish: .htaccess, version control, secrets, PHP's .user.ini */
    assert_int_equal(m->request_filtering->hidden_segments.count, 8);
    assert_string_equal(m->request_filtering->hidden_segments.items[0], ".ht*");
    assert_string_equal(m->request_filtering->hidden_segments.items[6], ".user.ini");
    assert_int_equal(m->request_filtering->allow_high_bit, 1);
    assert_int_equal(m->ip_restriction->enabled, 1);
    assert_int_equal(m->ip_restriction->default_allow, 1);
    assert_int_equal(m->authentication->anonymous, 1);
    assert_int_equal(m->authentication->basic.enabled, 0);
    assert_string_equal(m->authentication->basic.realm, "s");
    assert_int_equal(m->authentication->credential_cache_ttl_ms, 60000);
    assert_int_equal(m->authorization->count, 0);
    assert_int_equal(m->webdav->enabled, 0);
    assert_int_equal(m->ssi->enabled, 0);
    assert_int_equal(m->ssi->extensions.count, 3);
    assert_int_equal(m->custom_errors->enabled, 1);
    assert_int_equal(m->custom_errors->mode, H2P_ERRORS_DETAILED_LOCAL_ONLY);
    assert_int_equal(m->compression->enabled, 1);
    assert_int_equal(m->compression->static_, 1);
    assert_int_equal(m->compression->dynamic, 0);
    assert_true(has_item(&m->compression->types, "text/*"));
    assert_int_equal(m->compression->min_size, 256);
    assert_int_equal(m->logging->enabled, 1);
    assert_string_equal(m->logging->format, "w3c");
    assert_string_equal(m->logging->rotate, "daily");
    assert_int_equal(m->logging->max_size, 20 * 1024 * 1024);
    assert_int_equal(m->failed_request_tracing->enabled, 0);
    assert_int_equal(m->failed_request_tracing->max_files, 1000);
    assert_int_equal(m->request_monitor->enabled, 1);
    assert_int_equal(m->num_plugin_settings, 0);
    h2p_config_release(conf);
}

/* A module named in a section gets its defaults for the keys it leaves out. */
static void test_named_module_takes_defaults(void **state)
{
    h2p_config_t *conf = load_yaml(MINIMAL_SITE "    applications:\n"
                                                "      /app:\n"
                                                "        modules:\n"
                                                "          request_filtering: {max_url: 100}\n"
                                                "          authentication: {basic: {users_file: u}}\n"
                                                "          request_monitor:\n",
                                   NULL);
    const h2p_application_conf_t *app = find_app(find_site(conf, "s"), "/app");
    const h2p_modules_conf_t *m = &app->scope.modules;

    assert_int_equal(m->request_filtering->set, 1);
    assert_int_equal(m->request_filtering->enabled, 1);
    assert_int_equal(m->request_filtering->max_url, 100);
    assert_int_equal(m->request_filtering->max_query_string, 2048);
    assert_int_equal(m->authentication->anonymous, 1);
    assert_string_equal(m->authentication->basic.realm, "s");
    assert_int_equal(m->request_monitor->set, 1); /* named with no settings */
    assert_int_equal(m->request_monitor->enabled, 1);
    assert_null(m->ip_restriction);
    /* no root: below the site's root, as an IIS virtual directory */
    assert_non_null(ends_with(app->root, "/app"));
    assert_int_equal(app->root[0], '/');
    h2p_config_release(conf);
}

/* hidden_segments adds to the defaults; "!name" takes one off (a default one too) */
static void test_hidden_segments_add_to_defaults(void **state)
{
    h2p_config_t *conf =
        load_yaml(MINIMAL_SITE "    modules:\n"
                               "      request_filtering: {hidden_segments: [App_Data, '!.git*', 'private*', '!.env*']}\n",
                  NULL);
    const h2p_strlist_t *hidden = &find_site(conf, "s")->applications[0].scope.modules.request_filtering->hidden_segments;
    assert_true(has_item(hidden, ".ht*"));
    assert_true(has_item(hidden, ".user.ini"));
    assert_true(has_item(hidden, "App_Data"));
    assert_true(has_item(hidden, "private*"));
    assert_false(has_item(hidden, ".git*"));
    assert_false(has_item(hidden, ".env*"));
    assert_false(has_item(hidden, "!.git*"));
    assert_int_equal(hidden->count, 8 - 2 + 2);
    h2p_config_release(conf);
}

/* php-cgi runs as one master with PHP_FCGI_CHILDREN=max_processes + 1 (a spare) unless the pool sets
 * "0" or activation: socket; it gets PHP_FCGI_MAX_REQUESTS from max_requests unless the pool sets it:
 * a master's children are ended by h2pool at max_requests, and php-cgi's own limit is one more */
static void test_php_max_requests_paired(void **state)
{
    h2p_config_t *conf =
        load_yaml("pools:\n"
                  "  a: {command: [php-cgi]}\n"
                  "  b: {command: [/usr/bin/php-cgi8.2], max_requests: 0, max_processes: 3, env: {X: y}}\n"
                  "  c: {command: [php-cgi], env: {PHP_FCGI_MAX_REQUESTS: '7', PHP_FCGI_CHILDREN: '0'}}\n"
                  "  d: {command: [/usr/bin/php-fpm]}\n"
                  "  e: {command: [php-cgi], activation: socket}\n"
                  "  f: {command: [php-cgi], max_requests: 50, env: {PHP_FCGI_CHILDREN: '0'}}\n"
                  "  g: {command: [php-cgi], max_requests: 3000000000}\n"
                  "  h: {command: [php-cgi], max_requests: 3000000000, env: {PHP_FCGI_CHILDREN: '0'}}\n" MINIMAL_SITE,
                  NULL);
    const h2p_pool_conf_t *a = h2p_config_find_pool(conf, "a"), *b = h2p_config_find_pool(conf, "b"),
                          *c = h2p_config_find_pool(conf, "c"), *d = h2p_config_find_pool(conf, "d"),
                          *e = h2p_config_find_pool(conf, "e"), *f = h2p_config_find_pool(conf, "f"),
                          *g = h2p_config_find_pool(conf, "g"), *h = h2p_config_find_pool(conf, "h");
    assert_int_equal(a->env.count, 2);
    assert_string_equal(a->env.items[0], "PHP_FCGI_CHILDREN=5");
    assert_string_equal(a->env.items[1], "PHP_FCGI_MAX_REQUESTS=10001");
    assert_int_equal(a->php_master, 1);
    assert_int_equal(a->php_child_max_requests, 10000);
    assert_int_equal(b->env.count, 3);
    assert_string_equal(b->env.items[0], "X=y");
    assert_string_equal(b->env.items[1], "PHP_FCGI_CHILDREN=4");
    assert_string_equal(b->env.items[2], "PHP_FCGI_MAX_REQUESTS=0");
    assert_int_equal(b->php_master, 1);
    assert_int_equal(b->php_child_max_requests, 0);
    assert_int_equal(c->env.count, 2);
    assert_string_equal(c->env.items[0], "PHP_FCGI_MAX_REQUESTS=7");
    assert_string_equal(c->env.items[1], "PHP_FCGI_CHILDREN=0");
    assert_int_equal(c->php_master, 0);
    assert_int_equal(c->php_child_max_requests, 0);
    assert_int_equal(d->env.count, 0);
    assert_int_equal(d->php_master, 0);
    assert_int_equal(e->env.count, 1);
    assert_int_equal(e->php_master, 0);
    assert_int_equal(e->php_child_max_requests, 0);
    assert_int_equal(f->env.count, 2); /* independent processes: h2pool recycles them, php-cgi's limit the same */
    assert_string_equal(f->env.items[1], "PHP_FCGI_MAX_REQUESTS=50");
    assert_int_equal(f->php_master, 0);
    assert_int_equal(f->php_child_max_requests, 0);
    /* php-cgi reads its limit as an int: beyond that, h2pool's count alone */
    assert_string_equal(g->env.items[1], "PHP_FCGI_MAX_REQUESTS=0");
    assert_int_equal(g->php_child_max_requests, 3000000000u);
    assert_string_equal(h->env.items[1], "PHP_FCGI_MAX_REQUESTS=0"); /* (h2pool recycles at 3e9 itself) */
    h2p_config_release(conf);
}

/* IIS's resourceType: file for patterns that name files, unspecified for URL patterns */
static void test_handler_resource(void **state)
{
    h2p_config_t *conf = load_yaml("pools:\n  p: {command: [/bin/true]}\n" MINIMAL_SITE "    handlers:\n"
                                   "      - {path: '*.php', pool: p}\n"
                                   "      - {path: '/cgi-bin/*.cgi', cgi: true}\n"
                                   "      - {path: '/api/*', pool: p}\n"
                                   "      - {path: '/app/hello', pool: p}\n"
                                   "      - {path: '/x/*', pool: p, resource: directory}\n"
                                   "      - {path: '*.y', pool: p, resource: either}\n"
                                   "      - {path: '*.z', pool: p, resource: unspecified}\n"
                                   "      - {path: '/w/*', pool: p, resource: file}\n",
                                   NULL);
    const h2p_site_conf_t *site = find_site(conf, "s");
    static const h2p_resource_t expected[] = {H2P_RESOURCE_FILE,        H2P_RESOURCE_FILE,      H2P_RESOURCE_UNSPECIFIED,
                                              H2P_RESOURCE_UNSPECIFIED, H2P_RESOURCE_DIRECTORY, H2P_RESOURCE_EITHER,
                                              H2P_RESOURCE_UNSPECIFIED, H2P_RESOURCE_FILE};
    assert_int_equal(site->num_handlers, 8);
    for (size_t i = 0; i != 8; ++i)
        assert_int_equal(site->handlers[i].resource, expected[i]);
    h2p_config_release(conf);
}

/* a module of rules (a YAML list) is switched off in a scope with a map: `redirect: {enabled: false}` */
static void test_rule_modules_switch_off_with_a_map(void **state)
{
    h2p_config_t *conf = load_yaml(MINIMAL_SITE "    modules:\n"
                                                "      redirect: [{from: /a, to: /b}]\n"
                                                "    applications:\n"
                                                "      /app:\n"
                                                "        modules:\n"
                                                "          redirect: {enabled: false}\n"
                                                "          authorization: {enabled: false}\n"
                                                "          rewrite: {enabled: true}\n",
                                   NULL);
    const h2p_site_conf_t *site = find_site(conf, "s");
    const h2p_modules_conf_t *m = &find_app(site, "/app")->scope.modules;
    assert_int_equal(m->redirect->set, 1);
    assert_int_equal(m->redirect->enabled, 0);
    assert_int_equal(m->redirect->count, 0);
    assert_int_equal(m->authorization->enabled, 0);
    assert_int_equal(m->rewrite->enabled, 1);
    assert_int_equal(site->applications[0].scope.modules.redirect->count, 1);
    h2p_config_release(conf);
}

static void test_server_keys_split_over_files(void **state)
{
    h2p_config_t *conf = load_yaml("server:\n  limits: {max_connections: 5}\n" MINIMAL_SITE,
                                   "server:\n  limits: {header_timeout: 500ms}\n  threads: 3\n");

    assert_int_equal(conf->server.limits.max_connections, 5);
    assert_int_equal(conf->server.limits.header_timeout_ms, 500);
    assert_int_equal(conf->server.threads, 3);
    h2p_config_release(conf);
}

/* Files are read in name order: a site in a.yaml may use a pool defined in b.yaml. */
static void test_pools_and_sites_in_any_file(void **state)
{
    h2p_config_t *conf = load_yaml("sites:\n  s: {bindings: [http://*:80], root: ., handlers: [{path: '*', pool: late}]}\n",
                                   "pools:\n  late: {connect: [tcp:127.0.0.1:9000]}\n");

    assert_ptr_equal(find_site(conf, "s")->handlers[0].pool_conf, h2p_config_find_pool(conf, "late"));
    h2p_config_release(conf);
}

static void test_plugin_settings_kept_as_yaml(void **state)
{
    h2p_config_t *conf = load_yaml("server:\n  load_modules: [mods/mod_geo.so]\n" MINIMAL_SITE "    modules:\n"
                                   "      geo: {db: /var/geo.mmdb, deny: [CN, RU]}\n"
                                   "      logging: {format: w3c}\n",
                                   NULL);
    const h2p_modules_conf_t *m = &find_site(conf, "s")->applications[0].scope.modules;

    assert_int_equal(conf->server.load_modules.count, 1);
    assert_non_null(ends_with(conf->server.load_modules.items[0], "/mods/mod_geo.so"));
    assert_int_equal(m->num_plugin_settings, 1);
    assert_string_equal(m->plugin_settings[0].name, "geo");
    assert_non_null(strstr(m->plugin_settings[0].yaml, "/var/geo.mmdb"));
    assert_non_null(strstr(m->plugin_settings[0].yaml, "RU"));
    assert_int_equal(m->plugin_settings[0].origin.line, 8);
    assert_int_equal(m->logging->set, 1);
    h2p_config_release(conf);
}

/* Dot files (editor droppings) and other extensions are not configuration. */
static void test_ignores_other_files(void **state)
{
    char *dir = conf_dir(MINIMAL_SITE, NULL);
    h2p_config_t *conf;

    write_file(dir, ".#a.yaml", "garbage: [");
    write_file(dir, "notes.txt", "garbage: [");
    write_file(dir, "a.yaml.bak", "garbage: [");
    make_subdir(dir, "sub.yaml");
    write_file(dir, "empty.yaml", "# only a comment\n");
    conf = load_good(dir, 0);
    assert_int_equal(conf->num_sites, 1);
    h2p_config_release(conf);
    remove_dir(dir);
}

static void test_refcount_and_generation(void **state)
{
    h2p_config_t *a = load_yaml(MINIMAL_SITE, NULL), *b = load_yaml(MINIMAL_SITE, NULL);

    assert_true(b->generation > a->generation);
    assert_ptr_equal(h2p_config_retain(a), a);
    assert_int_equal(a->refcnt, 2);
    h2p_config_release(a);
    assert_int_equal(a->refcnt, 1);
    h2p_config_release(a);
    h2p_config_release(b);
    h2p_config_release(NULL);
}

/* ---- whole-directory errors --------------------------------------------------------------- */

static void expect_one_error(const char *dir, const char *text)
{
    h2p_config_errors_t errors = {NULL, 0};

    assert_null(h2p_config_load(dir, 0, &errors));
    if (errors.count != 1 || strstr(errors.messages[0], text) == NULL) {
        print_errors(&errors);
        fail_msg("expected one error with \"%s\"", text);
    }
    h2p_config_errors_clear(&errors);
    assert_int_equal(errors.count, 0);
    assert_null(errors.messages);
}

static void test_empty_dir_is_an_error(void **state)
{
    char *dir = make_temp_dir(), expected[4200];

    write_file(dir, "README", "no yaml here");
    snprintf(expected, sizeof(expected), "no *.yaml files in %s", dir);
    expect_one_error(dir, expected);
    remove_dir(dir);
}

static void test_missing_dir_is_an_error(void **state)
{
    expect_one_error("/nonexistent/h2pool/conf.d", "/nonexistent/h2pool/conf.d: cannot open");
}

static void test_unreadable_dir_is_an_error(void **state)
{
    char *dir = make_temp_dir();

    write_file(dir, "a.yaml", MINIMAL_SITE);
    chmod(dir, 0);
    if (access(dir, R_OK) == 0) { /* root reads anyway */
        chmod(dir, 0700);
        remove_dir(dir);
        skip();
    }
    expect_one_error(dir, "cannot read");
    chmod(dir, 0700);
    remove_dir(dir);
}

/* same path as an unreadable directory, but also when the tests run as root */
static void test_dir_that_is_a_file_is_an_error(void **state)
{
    char *dir = conf_dir(MINIMAL_SITE, NULL), file[4200];

    snprintf(file, sizeof(file), "%s/a.yaml", dir);
    expect_one_error(file, "cannot read the directory");
    remove_dir(dir);
}

static void test_errors_accumulate_and_clear(void **state)
{
    char *dir = conf_dir("pools:\n  a: {}\n  b: {}\n", NULL);
    h2p_config_errors_t errors = {NULL, 0};

    assert_null(h2p_config_load(dir, 0, &errors));
    assert_int_equal(errors.count, 2);
    assert_null(h2p_config_load(dir, 0, &errors)); /* appended to what is there */
    assert_int_equal(errors.count, 4);
    h2p_config_errors_clear(&errors);
    assert_int_equal(errors.count, 0);
    h2p_config_errors_clear(&errors);
    remove_dir(dir);
}

/* A wildcard and the addresses it includes may share a port when they share the scheme; a
 * wildcard of one family does not include the other family's addresses. */
static void test_wildcard_and_its_addresses_of_one_scheme(void **state)
{
    h2p_config_release(load_yaml("sites:\n  s: {bindings: ['http://*:80', 'http://127.0.0.1:80', 'http://0.0.0.0:80'], root: .}\n"
                                 "  t: {bindings: ['https://*:443'], root: ., tls: {certificate: c, key: k}}\n",
                                 NULL));
    h2p_config_release(load_yaml("sites:\n  s: {bindings: ['http://0.0.0.0:80'], root: .}\n"
                                 "  t: {bindings: ['https://[::1]:80'], root: ., tls: {certificate: c, key: k}}\n",
                                 NULL));
}

/* ---- limits: a hostile or broken file must not hold a (re)load --------------------------- */

/* Loading `dir` fails with an error that starts with "<dir>/<where>" and contains `word`. */
static void expect_error_at(char *dir, const char *where, const char *word)
{
    h2p_config_errors_t errors = {NULL, 0};
    h2p_config_t *conf = h2p_config_load(dir, 0, &errors);
    char prefix[4400];
    int found = 0;

    snprintf(prefix, sizeof(prefix), "%s/%s", dir, where);
    for (size_t i = 0; i < errors.count; i++)
        if (strncmp(errors.messages[i], prefix, strlen(prefix)) == 0 && strstr(errors.messages[i], word) != NULL)
            found = 1;
    if (conf != NULL || !found) {
        print_message("expected \"%s...%s\" among:\n", prefix, word);
        for (size_t i = 0; i < errors.count && i < 10; i++)
            print_message("    %s\n", errors.messages[i]);
    }
    h2p_config_release(conf);
    h2p_config_errors_clear(&errors);
    remove_dir(dir);
    assert_null(conf);
    assert_true(found);
}

/* `count` copies of `unit` between `head` and `tail` (malloc'ed) */
static char *repeat(const char *head, const char *unit, size_t count, const char *tail)
{
    size_t hl = strlen(head), ul = strlen(unit), tl = strlen(tail);
    char *text = malloc(hl + ul * count + tl + 1), *p = text;

    assert_non_null(text);
    memcpy(p, head, hl);
    p += hl;
    for (size_t i = 0; i < count; i++, p += ul)
        memcpy(p, unit, ul);
    memcpy(p, tail, tl + 1);
    return text;
}

static void test_file_over_4_mib_is_refused(void **state)
{
    char *dir = make_temp_dir();
    /* a comment is valid YAML: only the size is wrong */
    char *text = repeat(MINIMAL_SITE, PADDING_LINE, (4 << 20) / 74 + 1, "");

    write_file(dir, "a.yaml", text);
    free(text);
    expect_error_at(dir, "a.yaml:1:1: ", "larger than 4 MiB");
}

static void test_file_of_almost_4_mib_is_read(void **state)
{
    char *dir = make_temp_dir();
    char *text = repeat(MINIMAL_SITE, PADDING_LINE, (4 << 20) / 74 - 10, "");

    write_file(dir, "a.yaml", text);
    free(text);
    h2p_config_release(load_good(dir, 0));
    remove_dir(dir);
}

static void test_files_over_16_mib_together_are_refused(void **state)
{
    char *dir = make_temp_dir(), name[16];
    char *text = repeat("", PADDING_LINE, (3 << 20) / 74 + 1, "");

    write_file(dir, "a.yaml", MINIMAL_SITE);
    for (int i = 0; i < 6; i++) { /* 6 x 3 MiB: the sixth goes over */
        snprintf(name, sizeof(name), "b%d.yaml", i);
        write_file(dir, name, text);
    }
    free(text);
    expect_error_at(dir, "b5.yaml:1:1: ", "larger than 16 MiB together");
}

static void test_deep_flow_nesting_is_refused_at_once(void **state)
{
    /* 100,000 levels took libyaml half a minute; the check stops at the 65th */
    char *open = repeat("sites: ", "[", 100000, ""), *text = repeat(open, "]", 100000, "\n");

    free(open);
    expect_error_at(conf_dir(text, NULL), "a.yaml:1:71: ", "nested deeper than 64 levels");
    free(text);
    text = repeat("sites: ", "{a: ", 100000, "");
    expect_error_at(conf_dir(text, NULL), "a.yaml:1:", "nested deeper than 64 levels");
    free(text);
}

static void test_deep_block_nesting_is_refused(void **state)
{
    char text[65 * 140 + 64] = "", line[200];

    for (int depth = 0; depth < 70; depth++) {
        snprintf(line, sizeof(line), "%*sk:\n", 2 * depth, "");
        strcat(text, line);
    }
    expect_error_at(conf_dir(text, NULL), "a.yaml:65:129: ", "nested deeper than 64 levels");
}

static void test_64_levels_are_allowed(void **state)
{
    /* the root map and 63 lists: no limit error, only what is wrong with the key */
    char *open = repeat("x: ", "[", 63, ""), *text = repeat(open, "]", 63, "\n"), *dir = conf_dir(text, NULL);
    h2p_config_errors_t errors = {NULL, 0};

    free(open);
    free(text);
    assert_null(h2p_config_load(dir, 0, &errors));
    assert_int_equal(errors.count, 1);
    assert_non_null(strstr(errors.messages[0], "unknown top-level key \"x\""));
    h2p_config_errors_clear(&errors);
    remove_dir(dir);
}

static void test_billion_laughs_is_refused(void **state)
{
    static const char laughs[] = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
                                 "a1: &a1 [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]\n"
                                 "a2: &a2 [*a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1]\n"
                                 "a3: &a3 [*a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2]\n"
                                 "a4: &a4 [*a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3]\n"
                                 "a5: &a5 [*a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4]\n"
                                 "a6: &a6 [*a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5]\n"
                                 "a7: &a7 [*a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6]\n"
                                 "a8: &a8 [*a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7]\n";
    /* a1..a5 stand for 9 + 90 + 819 + 7380 + 66429 nodes; the 4th alias of a5 goes past 100,000 */
    expect_error_at(conf_dir(laughs, NULL), "a.yaml:6:", "expand to more than 100000 nodes");
    /* the same with maps, as settings would be written */
    expect_error_at(conf_dir("x: &x {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8, i: 9, j: 0}\n"
                             "y: &y {a: *x, b: *x, c: *x, d: *x, e: *x, f: *x, g: *x, h: *x, i: *x, j: *x}\n"
                             "z: &z {a: *y, b: *y, c: *y, d: *y, e: *y, f: *y, g: *y, h: *y, i: *y, j: *y}\n"
                             "w: &w {a: *z, b: *z, c: *z, d: *z, e: *z, f: *z, g: *z, h: *z, i: *z, j: *z}\n"
                             "v: &v {a: *w, b: *w, c: *w, d: *w, e: *w, f: *w, g: *w, h: *w, i: *w, j: *w}\n",
                             NULL),
                    "a.yaml:5:", "expand to more than");
}

static void test_alias_cycle_is_refused(void **state)
{
    expect_error_at(conf_dir("sites: &s [1, *s]\n", NULL), "a.yaml:1:15: ", "refers to a node that contains it");
    expect_error_at(conf_dir("sites: &s {a: {b: *s}}\n", NULL), "a.yaml:1:19: ", "refers to a node that contains it");
}

static void test_too_many_anchors_or_aliases_are_refused(void **state)
{
    char unit[32], *text = malloc(1001 * 32), *p = text;

    for (int i = 0; i <= 1000; i++)
        p += sprintf(p, "- &a%d x\n", i);
    expect_error_at(conf_dir(text, NULL), "a.yaml:1001:3: ", "more than 1000 YAML anchors");
    free(text);
    snprintf(unit, sizeof(unit), "- *a\n");
    text = repeat("- &a x\n", unit, 10001, "");
    expect_error_at(conf_dir(text, NULL), "a.yaml:10002:3: ", "more than 10000 YAML aliases");
    free(text);
}

static void test_aliases_within_the_limits_work(void **state)
{
    h2p_config_t *conf = load_yaml("sites:\n"
                                   "  a:\n"
                                   "    bindings: [http://*:80]\n"
                                   "    root: .\n"
                                   "    modules: &shared\n"
                                   "      custom_headers: {X-Shared: yes}\n"
                                   "  b:\n"
                                   "    bindings: [http://*:81]\n"
                                   "    root: .\n"
                                   "    modules: *shared\n",
                                   NULL);

    for (size_t s = 0; s < 2; s++) {
        const h2p_modules_conf_t *m = &conf->sites[s].applications[0].scope.modules;
        assert_int_equal(m->custom_headers->count, 1);
        assert_string_equal(m->custom_headers->headers[0].name, "x-shared");
    }
    h2p_config_release(conf);
}

static void test_duplicate_key_in_a_big_map_is_found(void **state)
{
    /* 50,000 keys: checked in one pass, not each against all the earlier ones */
    size_t count = 50000;
    char *text = malloc(count * 24 + 64), *p = text;

    p += sprintf(p, "server:\n  limits:\n");
    for (size_t i = 0; i < count; i++)
        p += sprintf(p, "    k%zu: 1\n", i);
    sprintf(p, "    k7: 2\n");
    expect_error_at(conf_dir(text, NULL), "a.yaml:50003:5: server.limits.k7: ", "duplicate key \"k7\" (first at line 10)");
    free(text);
}

/* ---- bad configurations ------------------------------------------------------------------- */

typedef struct bad_case {
    const char *name;
    const char *a_yaml, *b_yaml;
    int check_files;
    const char *where; /* "a.yaml:LINE:COL: key.path: " */
    const char *word;  /* a word of the reason */
    size_t min_errors;
    const char *const *files; /* more files of the directory: name, content, ..., NULL ("@good:x" copies data/good's x) */
} bad_case_t;

#define SITE_HEAD "sites:\n  s:\n    bindings: [http://*:80]\n    root: .\n" /* lines 1-4 */
#define POOL_HEAD "pools:\n  php:\n    command: [x]\n"                       /* lines 1-3 */

static const bad_case_t bad_cases[] = {
    /* keys and types */
    {"unknown_key", POOL_HEAD "    max_proceses: 4\n", NULL, 0, "a.yaml:4:5: pools.php.max_proceses: ", "unknown key"},
    {"unknown_key_deep_in_modules", SITE_HEAD "    modules:\n      authentication:\n        basic: {realm: r, users_fil: u}\n",
     NULL, 0, "a.yaml:7:27: sites.s.modules.authentication.basic.users_fil: ", "unknown key"},
    {"unknown_key_in_location_module", SITE_HEAD "    locations:\n      /x: {modules: {ip_restriction: {alow: []}}}\n", NULL, 0,
     "a.yaml:6:39: sites.s.locations./x.modules.ip_restriction.alow: ", "unknown"},
    {"unknown_module", SITE_HEAD "    modules:\n      frobnicate: {}\n", NULL, 0,
     "a.yaml:6:7: sites.s.modules.frobnicate: ", "unknown module"},
    {"rule_module_switch_takes_only_enabled", SITE_HEAD "    modules:\n      redirect: {enabld: false}\n", NULL, 0,
     "a.yaml:6:17: sites.s.modules.redirect: ", "expected a list"},
    {"top_level_unknown_key", "site:\n  s: {}\n", NULL, 0, "a.yaml:1:1: site: ", "unknown top-level key"},
    {"non_map_top_level", "- server\n- pools\n", NULL, 0, "a.yaml:1:1: ", "top level must be a map"},
    {"wrong_type_scalar_for_map", "server:\n  limits: 100\n", NULL, 0, "a.yaml:2:11: server.limits: ", "expected a map"},
    {"wrong_type_map_for_scalar", POOL_HEAD "    user: {name: www}\n", NULL, 0,
     "a.yaml:4:11: pools.php.user: ", "expected a single value"},
    {"wrong_type_scalar_for_list", SITE_HEAD "    default_documents: index.php\n", NULL, 0,
     "a.yaml:5:24: sites.s.default_documents: ", "expected a list"},
    {"duplicate_key_in_map", POOL_HEAD "    user: a\n    user: b\n", NULL, 0, "a.yaml:5:5: pools.php.user: ", "duplicate key"},
    {"missing_value", POOL_HEAD "    user:\n", NULL, 0, "a.yaml:4:10: pools.php.user: ", "missing value"},
    {"bad_boolean", SITE_HEAD "    http2: maybe\n", NULL, 0, "a.yaml:5:12: sites.s.http2: ", "boolean"},
    {"bad_number", POOL_HEAD "    max_processes: four\n", NULL, 0, "a.yaml:4:20: pools.php.max_processes: ", "bad number"},
    {"negative_number", POOL_HEAD "    queue_length: -1\n", NULL, 0, "a.yaml:4:19: pools.php.queue_length: ", "bad number"},
    {"bad_threads", "server:\n  threads: lots\n", NULL, 0, "a.yaml:2:12: server.threads: ", "bad number"},
    {"server_user_unknown", "server:\n  user: no-such-user-h2p\n", NULL, 0, "a.yaml:2:9: server.user: ", "no such user"},
    {"server_group_unknown", "server:\n  user: nobody\n  group: no-such-group-h2p\n", NULL, 0,
     "a.yaml:3:10: server.group: ", "no such group"},
    {"server_user_not_scalar", "server:\n  user: [www-data]\n", NULL, 0, "a.yaml:2:9: server.user: ", "expected a single value"},
    {"server_user_empty", "server:\n  user: \"\"\n", NULL, 0, "a.yaml:2:9: server.user: ", ""},
    {"bad_management", "server:\n  management: localhost:8090\n", NULL, 0, "a.yaml:2:15: server.management: ", "IP address"},
    {"cache_entry_over_memory", "server:\n  cache: {max_memory: 1MiB, max_entry: 2MiB}\n", NULL, 0,
     "a.yaml:2:29: server.cache.max_entry: ", "larger"},
    {"yaml_syntax_error", "sites:\n  s:\n    root: a: b\n", NULL, 0, "a.yaml:3:12: ", "syntax error"},
    {"yaml_syntax_error_unclosed_list", POOL_HEAD "    env: [a, b\n    user: x\n", NULL, 0, "a.yaml:5:9: ", "syntax error"},
    {"invalid_utf8", "pools:\n  php:\n    user: \"caf\xe9\"\n", NULL, 0, "a.yaml:1:1: ", "syntax error"},
    {"two_documents", POOL_HEAD "---\npools: {}\n", NULL, 0, "a.yaml:4:1: ", "more than one YAML document"},

    /* durations and sizes */
    {"bad_duration", POOL_HEAD "    idle_timeout: 20 minutes\n", NULL, 0, "a.yaml:4:19: pools.php.idle_timeout: ", "bad duration"},
    {"bad_duration_fraction", POOL_HEAD "    request_timeout: 1.5s\n", NULL, 0,
     "a.yaml:4:22: pools.php.request_timeout: ", "bad duration"},
    {"duration_zero_not_allowed", POOL_HEAD "    startup_time_limit: 0s\n", NULL, 0,
     "a.yaml:4:25: pools.php.startup_time_limit: ", "out of range"},
    {"bad_size", "server:\n  cache:\n    max_memory: 12XB\n", NULL, 0, "a.yaml:3:17: server.cache.max_memory: ", "bad size"},
    {"bad_size_lowercase_unit", "server:\n  limits: {max_request_body: 30mb}\n", NULL, 0,
     "a.yaml:2:30: server.limits.max_request_body: ", "bad size"},
    {"size_overflow", "server:\n  cache:\n    max_entry: 20000000000GiB\n", NULL, 0,
     "a.yaml:3:16: server.cache.max_entry: ", "overflow"},
    {"size_overflow_bare", "server:\n  cache:\n    max_entry: 18446744073709551616\n", NULL, 0,
     "a.yaml:3:16: server.cache.max_entry: ", "overflow"},

    /* pools */
    {"empty_command", "pools:\n  php:\n    command: []\n", NULL, 0, "a.yaml:3:14: pools.php.command: ", "empty"},
    {"both_command_and_connect", POOL_HEAD "    connect: [tcp:127.0.0.1:9000]\n", NULL, 0,
     "a.yaml:4:14: pools.php.connect: ", "exclude each other"},
    {"neither_command_nor_connect", "pools:\n  php:\n    user: x\n", NULL, 0, "a.yaml:3:5: pools.php: ", "command or connect"},
    {"bad_connect_endpoint", "pools:\n  php:\n    connect: [tcp:db.example:9000]\n", NULL, 0,
     "a.yaml:3:15: pools.php.connect[0]: ", "bad endpoint"},
    {"bad_connect_scheme", "pools:\n  php:\n    connect: [unix:/a.sock, http://x]\n", NULL, 0,
     "a.yaml:3:29: pools.php.connect[1]: ", "bad endpoint"},
    {"bad_connect_port", "pools:\n  php:\n    connect: ['tcp:[::1]:0']\n", NULL, 0, "a.yaml:3:15: pools.php.connect[0]: ", "port"},
    {"min_greater_than_max", POOL_HEAD "    max_processes: 2\n    min_processes: 5\n", NULL, 0,
     "a.yaml:5:20: pools.php.min_processes: ", "greater than max_processes"},
    {"max_processes_zero", POOL_HEAD "    max_processes: 0\n", NULL, 0, "a.yaml:4:20: pools.php.max_processes: ", "out of range"},
    {"bad_activation", POOL_HEAD "    activation: spawn\n", NULL, 0, "a.yaml:4:17: pools.php.activation: ", "fastcgi, socket"},
    {"socket_pool_with_connect", "pools:\n  p:\n    activation: socket\n    connect: [tcp:127.0.0.1:1]\n", NULL, 0,
     "a.yaml:4:14: pools.p.connect: ", "activation: socket"},
    {"php_fcgi_children_set", "pools:\n  php:\n    command: [php-cgi]\n    env: {A: b, PHP_FCGI_CHILDREN: \"4\"}\n", NULL, 0,
     "a.yaml:4:17: pools.php.env.PHP_FCGI_CHILDREN: ", "set max_processes instead"},
    {"php_fcgi_children_set_block",
     "pools:\n  php:\n    command: [/usr/bin/php-cgi8.2, -d, x=1]\n    env:\n      PHP_FCGI_CHILDREN: 1\n", NULL, 0,
     "a.yaml:5:7: pools.php.env.PHP_FCGI_CHILDREN: ", "set max_processes instead"},
    {"bad_env_name", POOL_HEAD "    env: {1BAD: x}\n", NULL, 0, "a.yaml:4:11: pools.php.env.1BAD: ", "environment variable name"},
    {"env_value_not_scalar", POOL_HEAD "    env: {A: [1]}\n", NULL, 0, "a.yaml:4:14: pools.php.env.A: ", "expected a single value"},
    {"bad_pool_name", "pools:\n  my pool: {command: [x]}\n", NULL, 0, "a.yaml:2:3: pools.my pool: ", "bad pool name"},
    {"missing_working_dir", POOL_HEAD "    working_dir: nowhere\n", NULL, 1,
     "a.yaml:4:18: pools.php.working_dir: ", "No such file"},
    {"duplicate_pool_in_two_files", POOL_HEAD, "pools:\n  php:\n    command: [y]\n", 0,
     "b.yaml:2:3: pools.php: ", "duplicate pool"},
    {"duplicate_pool_in_one_file", "pools:\n  php: {command: [x]}\n  php: {command: [y]}\n", NULL, 0,
     "a.yaml:3:3: pools.php: ", "duplicate pool"},
    {"server_key_set_in_two_files", "server:\n  limits: {max_connections: 5}\n", "server:\n  limits:\n    max_connections: 6\n", 0,
     "b.yaml:3:5: server.limits.max_connections: ", "set twice"},

    /* bindings */
    {"bad_port", "sites:\n  blog:\n    root: .\n    bindings:\n      - http://*:8080\n      - http://*:80a\n", NULL, 0,
     "a.yaml:6:9: sites.blog.bindings[1]: ", "bad port \"80a\""},
    {"port_zero", "sites:\n  s:\n    root: .\n    bindings: [http://*:0]\n", NULL, 0,
     "a.yaml:4:16: sites.s.bindings[0]: ", "bad port \"0\""},
    {"port_65536", "sites:\n  s:\n    root: .\n    bindings: [http://*:65536]\n", NULL, 0,
     "a.yaml:4:16: sites.s.bindings[0]: ", "bad port \"65536\""},
    {"missing_port", "sites:\n  s:\n    root: .\n    bindings: [http://127.0.0.1]\n", NULL, 0,
     "a.yaml:4:16: sites.s.bindings[0]: ", "missing port"},
    {"bad_ip", "sites:\n  s:\n    root: .\n    bindings: [http://1.2.3.256:80]\n", NULL, 0,
     "a.yaml:4:16: sites.s.bindings[0]: ", "bad IP address \"1.2.3.256\""},
    {"hostname_as_ip", "sites:\n  s:\n    root: .\n    bindings: [http://example.com:80]\n", NULL, 0,
     "a.yaml:4:16: sites.s.bindings[0]: ", "bad IP address"},
    {"bad_ipv6", "sites:\n  s:\n    root: .\n    bindings: ['http://[::g]:80']\n", NULL, 0,
     "a.yaml:4:16: sites.s.bindings[0]: ", "bad IPv6 address"},
    {"bad_scheme", "sites:\n  s:\n    root: .\n    bindings: [ftp://*:21]\n", NULL, 0,
     "a.yaml:4:16: sites.s.bindings[0]: ", "bad scheme \"ftp\""},
    {"bad_hostname", "sites:\n  s:\n    root: .\n    bindings: ['http://*:80:bad_host!']\n", NULL, 0,
     "a.yaml:4:16: sites.s.bindings[0]: ", "bad hostname"},
    {"tcp_binding_with_hostname", "sites:\n  s:\n    bindings: [tcp://*:7000:x.test]\n", NULL, 0,
     "a.yaml:3:16: sites.s.bindings[0]: ", "tcp bindings take no hostname"},
    {"empty_bindings", "sites:\n  s:\n    root: .\n    bindings: []\n", NULL, 0,
     "a.yaml:4:15: sites.s.bindings: ", "at least one binding"},
    {"missing_bindings", "sites:\n  s:\n    root: .\n", NULL, 0, "a.yaml:3:5: sites.s: ", "missing required key \"bindings\""},
    {"duplicate_binding_across_sites", SITE_HEAD "  t:\n    root: .\n    bindings: [http://*:80]\n", NULL, 0,
     "a.yaml:7:16: sites.t.bindings[0]: ", "duplicate binding"},
    {"duplicate_binding_host_case", "sites:\n  s:\n    root: .\n    bindings: [http://*:80:A.test, http://*:80:a.TEST]\n", NULL, 0,
     "a.yaml:4:36: sites.s.bindings[1]: ", "duplicate binding"},
    {"http_and_https_same_port",
     SITE_HEAD "  t:\n    root: .\n    tls: {certificate: c, key: k}\n    bindings: [https://*:80:t.test]\n", NULL, 0,
     "a.yaml:8:16: sites.t.bindings[0]: ", "same ip:port"},
    /* one socket serves a wildcard and the addresses it includes (no SO_REUSEPORT): one scheme */
    {"https_inside_http_wildcard",
     SITE_HEAD "  t:\n    root: .\n    tls: {certificate: c, key: k}\n    bindings: [https://127.0.0.1:80]\n", NULL, 0,
     "a.yaml:8:16: sites.t.bindings[0]: ", "overlapping addresses of port 80"},
    {"https_inside_http_ipv4_wildcard",
     "sites:\n  s:\n    bindings: [http://0.0.0.0:80]\n    root: .\n  t:\n    root: .\n    tls: {certificate: c, key: k}\n"
     "    bindings: [https://127.0.0.1:80]\n",
     NULL, 0, "a.yaml:8:16: sites.t.bindings[0]: ", "overlapping addresses"},
    {"https_wildcard_over_http_address",
     "sites:\n  s:\n    bindings: ['http://[::1]:80']\n    root: .\n  t:\n    root: .\n    tls: {certificate: c, key: k}\n"
     "    bindings: ['https://*:80']\n",
     NULL, 0, "a.yaml:8:16: sites.t.bindings[0]: ", "overlapping addresses"},
    {"https_without_tls", "sites:\n  s:\n    root: .\n    bindings: [http://*:80, https://*:443]\n", NULL, 0,
     "a.yaml:4:29: sites.s.bindings[1]: ", "tls.certificate"},
    {"tcp_mixed_with_http",
     "pools:\n  e: {activation: socket, command: [x]}\nsites:\n  s:\n    bindings: [tcp://*:7, http://*:80]\n    pool: e\n", NULL,
     0, "a.yaml:5:15: sites.s.bindings: ", "cannot be mixed"},
    {"tcp_site_without_pool", "sites:\n  s:\n    bindings: [tcp://*:7000]\n", NULL, 0, "a.yaml:3:5: sites.s: ", "needs pool"},
    {"tcp_site_with_fastcgi_pool", POOL_HEAD "sites:\n  s:\n    bindings: [tcp://*:7000]\n    pool: php\n", NULL, 0,
     "a.yaml:7:11: sites.s.pool: ", "activation"},
    {"tcp_site_with_root",
     "pools:\n  e: {activation: socket, command: [x]}\nsites:\n  s:\n    bindings: [tcp://*:7]\n    pool: e\n    root: .\n", NULL,
     0, "a.yaml:7:5: sites.s.root: ", "does not apply"},

    /* sites */
    {"duplicate_site", "sites:\n  s: {bindings: [http://*:80], root: .}\n  s: {bindings: [http://*:81], root: .}\n", NULL, 0,
     "a.yaml:3:3: sites.s: ", "duplicate site"},
    {"duplicate_site_in_two_files", SITE_HEAD, "sites:\n  s: {bindings: [http://*:81], root: .}\n", 0,
     "b.yaml:2:3: sites.s: ", "duplicate site"},
    {"bad_site_name", "sites:\n  ../etc: {bindings: [http://*:80], root: .}\n", NULL, 0,
     "a.yaml:2:3: sites.../etc: ", "bad site name"},
    {"missing_root_key", "sites:\n  s:\n    bindings: [http://*:80]\n", NULL, 0,
     "a.yaml:3:5: sites.s: ", "missing required key \"root\""},
    {"missing_root_dir", "sites:\n  s:\n    bindings: [http://*:80]\n    root: no-such-dir\n", NULL, 1,
     "a.yaml:4:11: sites.s.root: ", "No such file"},
    {"root_is_a_file", "sites:\n  s:\n    bindings: [http://*:80]\n    root: a.yaml\n", NULL, 1,
     "a.yaml:4:11: sites.s.root: ", "not a directory"},
    {"missing_certificate", SITE_HEAD "    tls: {certificate: missing.pem, key: a.yaml}\n", NULL, 1,
     "a.yaml:5:24: sites.s.tls.certificate: ", "No such file"},
    {"certificate_without_key", SITE_HEAD "    tls: {certificate: c.pem}\n", NULL, 0, "a.yaml:5:10: sites.s.tls: ", "key"},
    {"bad_client_verify", SITE_HEAD "    tls: {client_ca: ca.pem, client_verify: maybe}\n", NULL, 0,
     "a.yaml:5:45: sites.s.tls.client_verify: ", "optional, required"},
    {"client_verify_without_ca", SITE_HEAD "    tls: {client_verify: required}\n", NULL, 0,
     "a.yaml:5:10: sites.s.tls: ", "client_ca"},
    {"handler_missing_pool", SITE_HEAD "    handlers: [{path: '*.php', pool: nope}]\n", NULL, 0,
     "a.yaml:5:38: sites.s.handlers[0].pool: ", "no pool named \"nope\""},
    {"handler_socket_pool", "pools:\n  e: {activation: socket, command: [x]}\n" SITE_HEAD "    handlers: [{path: '*', pool: e}]\n",
     NULL, 0, "a.yaml:7:34: sites.s.handlers[0].pool: ", "activation"},
    {"handler_pool_and_cgi", POOL_HEAD SITE_HEAD "    handlers:\n      - {path: /x, pool: php, cgi: true}\n", NULL, 0,
     "a.yaml:9:9: sites.s.handlers[0]: ", "not both"},
    {"handler_without_target", SITE_HEAD "    handlers:\n      - {path: /x, cgi: false}\n", NULL, 0,
     "a.yaml:6:9: sites.s.handlers[0]: ", "pool: NAME or cgi: true"},
    {"handler_bad_path", SITE_HEAD "    handlers: [{path: php, cgi: true}]\n", NULL, 0,
     "a.yaml:5:23: sites.s.handlers[0].path: ", "bad handler path"},
    {"application_missing_pool", SITE_HEAD "    applications:\n      /shop: {pool: shop}\n", NULL, 0,
     "a.yaml:6:21: sites.s.applications./shop.pool: ", "no pool named"},
    {"application_bad_path", SITE_HEAD "    applications:\n      shop: {}\n", NULL, 0,
     "a.yaml:6:7: sites.s.applications.shop: ", "bad path prefix"},
    {"application_root_path", SITE_HEAD "    applications:\n      /: {}\n", NULL, 0,
     "a.yaml:6:7: sites.s.applications./: ", "root application"},
    {"application_duplicate_path", SITE_HEAD "    applications:\n      /a: {}\n      /a/: {}\n", NULL, 0,
     "a.yaml:7:7: sites.s.applications./a/: ", "duplicate application"},
    {"application_missing_root_dir", SITE_HEAD "    applications:\n      /a: {root: nothing}\n", NULL, 1,
     "a.yaml:6:18: sites.s.applications./a.root: ", "No such file"},
    {"location_bad_path", SITE_HEAD "    locations:\n      /a/../b: {directory_listing: true}\n", NULL, 0,
     "a.yaml:6:7: sites.s.locations./a/../b: ", "bad path prefix"},
    {"location_unknown_key", SITE_HEAD "    locations:\n      /a: {root: x}\n", NULL, 0,
     "a.yaml:6:12: sites.s.locations./a.root: ", "unknown key"},
    {"default_document_with_slash", SITE_HEAD "    default_documents: [a/index.html]\n", NULL, 0,
     "a.yaml:5:25: sites.s.default_documents[0]: ", "file name"},

    /* modules */
    {"bad_cidr", SITE_HEAD "    modules:\n      ip_restriction: {deny: [10.0.0/8x]}\n", NULL, 0,
     "a.yaml:6:31: sites.s.modules.ip_restriction.deny[0]: ", "bad CIDR"},
    {"cidr_prefix_33", SITE_HEAD "    modules:\n      ip_restriction: {allow: [10.0.0.0/33]}\n", NULL, 0,
     "a.yaml:6:32: sites.s.modules.ip_restriction.allow[0]: ", "prefix length"},
    {"cidr_prefix_129", SITE_HEAD "    modules:\n      ip_restriction: {trusted_proxies: ['::/129']}\n", NULL, 0,
     "a.yaml:6:42: sites.s.modules.ip_restriction.trusted_proxies[0]: ", "0..128"},
    {"bad_ip_restriction_default", SITE_HEAD "    modules:\n      ip_restriction: {default: block}\n", NULL, 0,
     "a.yaml:6:33: sites.s.modules.ip_restriction.default: ", "deny, allow"},
    {"bad_verb", SITE_HEAD "    modules:\n      request_filtering: {verbs: {deny: ['GE T']}}\n", NULL, 0,
     "a.yaml:6:42: sites.s.modules.request_filtering.verbs.deny[0]: ", "bad verb"},
    {"bad_hidden_segment", SITE_HEAD "    modules:\n      request_filtering: {hidden_segments: [a/b]}\n", NULL, 0,
     "a.yaml:6:45: sites.s.modules.request_filtering.hidden_segments[0]: ", "segment"},
    {"hidden_segment_star_inside", SITE_HEAD "    modules:\n      request_filtering: {hidden_segments: [ok, 'a*b']}\n", NULL, 0,
     "a.yaml:6:49: sites.s.modules.request_filtering.hidden_segments[1]: ", "bad path segment \"a*b\""},
    {"hidden_segment_everything", SITE_HEAD "    modules:\n      request_filtering: {hidden_segments: ['*']}\n", NULL, 0,
     "a.yaml:6:45: sites.s.modules.request_filtering.hidden_segments[0]: ", "bad path segment \"*\""},
    {"hidden_segment_bare_bang", SITE_HEAD "    modules:\n      request_filtering: {hidden_segments: ['!']}\n", NULL, 0,
     "a.yaml:6:45: sites.s.modules.request_filtering.hidden_segments[0]: ", "bad path segment \"!\""},
    {"handler_bad_resource",
     "pools:\n  p: {command: [/bin/true]}\n" SITE_HEAD "    handlers: [{path: '*.php', pool: p, resource: files}]\n", NULL, 0,
     "a.yaml:7:51: sites.s.handlers[0].resource: ", "file, directory, either, unspecified"},
    {"basic_without_users_file", SITE_HEAD "    modules:\n      authentication: {basic: {realm: r}}\n", NULL, 0,
     "a.yaml:6:31: sites.s.modules.authentication.basic: ", "users_file"},
    {"missing_users_file", SITE_HEAD "    modules:\n      authentication: {digest: {users_file: nope.htdigest}}\n", NULL, 1,
     "a.yaml:6:45: sites.s.modules.authentication.digest.users_file: ", "No such file"},
    {"bad_realm", SITE_HEAD "    modules:\n      authentication: {basic: {realm: 'a\"b', users_file: u}}\n", NULL, 0,
     "a.yaml:6:39: sites.s.modules.authentication.basic.realm: ", "bad realm"},
    {"client_certificate_both_ways",
     SITE_HEAD "    modules:\n      authentication:\n        client_certificate: {user_from: subject_cn, map: {}}\n", NULL, 0,
     "a.yaml:7:29: sites.s.modules.authentication.client_certificate: ", "exactly one"},
    {"client_certificate_bad_user_from",
     SITE_HEAD "    modules:\n      authentication:\n        client_certificate: {user_from: cn}\n", NULL, 0,
     "a.yaml:7:41: sites.s.modules.authentication.client_certificate.user_from: ", "subject_cn"},
    {"client_certificate_bad_fingerprint",
     SITE_HEAD "    modules:\n      authentication:\n        client_certificate: {map: {abc: bob}}\n", NULL, 0,
     "a.yaml:7:36: sites.s.modules.authentication.client_certificate.map.abc: ", "fingerprint"},
    {"client_certificate_without_client_ca",
     SITE_HEAD "    modules:\n      authentication:\n        client_certificate: {user_from: subject_cn}\n", NULL, 0,
     "a.yaml:6:7: sites.s.modules.authentication: ", "client_ca"},
    {"anonymous_off_without_scheme", SITE_HEAD "    modules:\n      authentication: {anonymous: false}\n", NULL, 0,
     "a.yaml:6:35: sites.s.modules.authentication.anonymous: ", "needs an enabled scheme"},
    {"authorization_allow_and_deny",
     SITE_HEAD "    modules:\n      authorization:\n        - {allow: {users: [a]}, deny: {users: [b]}}\n", NULL, 0,
     "a.yaml:7:11: sites.s.modules.authorization[0]: ", "exactly one of allow or deny"},
    {"authorization_without_users", SITE_HEAD "    modules:\n      authorization:\n        - {path: /a, deny: {verbs: [GET]}}\n",
     NULL, 0, "a.yaml:7:28: sites.s.modules.authorization[0].deny: ", "users or roles"},
    {"authorization_not_a_list", SITE_HEAD "    modules:\n      authorization: {allow: {users: [a]}}\n", NULL, 0,
     "a.yaml:6:22: sites.s.modules.authorization: ", "expected a list"},
    {"rule_module_map_with_rule_keys", SITE_HEAD "    modules:\n      redirect: {from: /a, to: /b}\n", NULL, 0,
     "a.yaml:6:17: sites.s.modules.redirect: ", "expected a list"},
    {"bad_redirect_status", SITE_HEAD "    modules:\n      redirect: [{from: /a, to: /b, status: 303}]\n", NULL, 0,
     "a.yaml:6:45: sites.s.modules.redirect[0].status: ", "bad redirect status 303"},
    {"redirect_capture_in_host", SITE_HEAD "    modules:\n      redirect: [{from: /a*, to: \"https://$1.example.com/\"}]\n", NULL,
     0, "a.yaml:6:34: sites.s.modules.redirect[0].to: ", "a capture cannot choose the host, port or user"},
    {"redirect_capture_in_scheme", SITE_HEAD "    modules:\n      redirect: [{from: /a*, to: \"$1://example.com/\"}]\n", NULL, 0,
     "a.yaml:6:34: sites.s.modules.redirect[0].to: ", "a capture cannot choose the scheme"},
    {"redirect_capture_after_scheme", SITE_HEAD "    modules:\n      redirect: [{from: /a*, to: \"https:$1\"}]\n", NULL, 0,
     "a.yaml:6:34: sites.s.modules.redirect[0].to: ", "a scheme without //host before the first capture"},
    {"redirect_without_to", SITE_HEAD "    modules:\n      redirect:\n        - {from: /a}\n", NULL, 0,
     "a.yaml:7:11: sites.s.modules.redirect[0]: ", "missing required key \"to\""},
    {"rewrite_empty_match", SITE_HEAD "    modules:\n      rewrite: [{match: '', to: /x}]\n", NULL, 0,
     "a.yaml:6:25: sites.s.modules.rewrite[0].match: ", "empty"},
    {"body_timeout_zero", "server:\n  limits: {body_timeout: 0s}\n" MINIMAL_SITE, NULL, 0,
     "a.yaml:2:26: server.limits.body_timeout: ", "out of range"},
    {"rewrite_bad_regex", SITE_HEAD "    modules:\n      rewrite: [{match: '^/(unclosed', to: /x}]\n", NULL, 0,
     "a.yaml:6:25: sites.s.modules.rewrite[0].match: ", "bad regular expression: missing closing parenthesis at offset 11"},
    {"rewrite_reference_beyond_captures", SITE_HEAD "    modules:\n      rewrite: [{match: '^/(a)/b', to: '/x?$1=$2'}]\n", NULL, 0,
     "a.yaml:6:40: sites.s.modules.rewrite[0].to: ", "$2 names a capture the match has not (it has 1)"},
    {"rewrite_target_not_a_path", SITE_HEAD "    modules:\n      rewrite: [{match: x, to: 'http://evil/'}]\n", NULL, 0,
     "a.yaml:6:32: sites.s.modules.rewrite[0].to: ", "must start with '/'"},
    {"rewrite_bad_unless", SITE_HEAD "    modules:\n      rewrite: [{match: x, to: /x, unless: [file, symlink]}]\n", NULL, 0,
     "a.yaml:6:51: sites.s.modules.rewrite[0].unless[1]: ", "file, directory"},
    {"bad_header_name", SITE_HEAD "    modules:\n      custom_headers: {'Bad Header': x}\n", NULL, 0,
     "a.yaml:6:24: sites.s.modules.custom_headers.Bad Header: ", "bad header name"},
    {"header_value_with_newline", SITE_HEAD "    modules:\n      custom_headers: {X-A: \"a\\nb\"}\n", NULL, 0,
     "a.yaml:6:29: sites.s.modules.custom_headers.X-A: ", "line breaks"},
    {"bad_custom_errors_mode", SITE_HEAD "    modules:\n      custom_errors: {mode: sometimes}\n", NULL, 0,
     "a.yaml:6:29: sites.s.modules.custom_errors.mode: ", "detailed_local_only"},
    {"bad_error_page_status", SITE_HEAD "    modules:\n      custom_errors: {pages: {200: ok.html}}\n", NULL, 0,
     "a.yaml:6:31: sites.s.modules.custom_errors.pages.200: ", "out of range"},
    {"missing_error_page", SITE_HEAD "    modules:\n      custom_errors: {pages: {404: errors/404.html}}\n", NULL, 1,
     "a.yaml:6:36: sites.s.modules.custom_errors.pages.404: ", "No such file"},
    {"bad_compression_type", SITE_HEAD "    modules:\n      compression: {types: [html]}\n", NULL, 0,
     "a.yaml:6:29: sites.s.modules.compression.types[0]: ", "media type"},
    {"output_cache_without_duration", SITE_HEAD "    modules:\n      output_cache: [{path: '*.php'}]\n", NULL, 0,
     "a.yaml:6:22: sites.s.modules.output_cache[0]: ", "duration"},
    {"bad_stale_while_revalidate",
     SITE_HEAD "    modules:\n      output_cache: [{path: '*.php', duration: 5s, stale_while_revalidate: soon}]\n", NULL, 0,
     "a.yaml:6:76: sites.s.modules.output_cache[0].stale_while_revalidate: ", "bad duration"},
    {"bad_stale_if_error", SITE_HEAD "    modules:\n      output_cache: [{path: '*.php', duration: 5s, stale_if_error: -1s}]\n",
     NULL, 0, "a.yaml:6:68: sites.s.modules.output_cache[0].stale_if_error: ", "bad duration"},
    {"bad_log_format", SITE_HEAD "    modules:\n      logging: {format: xml}\n", NULL, 0,
     "a.yaml:6:25: sites.s.modules.logging.format: ", "w3c, json"},
    {"bad_log_rotate", SITE_HEAD "    modules:\n      logging: {rotate: weekly}\n", NULL, 0,
     "a.yaml:6:25: sites.s.modules.logging.rotate: ", "daily, hourly"},
    {"bad_trace_status", SITE_HEAD "    modules:\n      failed_request_tracing: {status: [600-700]}\n", NULL, 0,
     "a.yaml:6:41: sites.s.modules.failed_request_tracing.status[0]: ", "bad status"},
    {"bad_trace_status_order", SITE_HEAD "    modules:\n      failed_request_tracing: {status: [599-500]}\n", NULL, 0,
     "a.yaml:6:41: sites.s.modules.failed_request_tracing.status[0]: ", "bad status"},
    {"bad_trace_max_files", SITE_HEAD "    modules:\n      failed_request_tracing: {max_files: 0}\n", NULL, 0,
     "a.yaml:6:43: sites.s.modules.failed_request_tracing.max_files: ", "out of range"},
    {"module_enabled_not_boolean", SITE_HEAD "    modules:\n      webdav: {enabled: 2}\n", NULL, 0,
     "a.yaml:6:25: sites.s.modules.webdav.enabled: ", "boolean"},
    {"module_not_a_map", SITE_HEAD "    modules:\n      webdav: true\n", NULL, 0,
     "a.yaml:6:15: sites.s.modules.webdav: ", "expected a map"},
    {"plugin_name_invalid", "server:\n  load_modules: [m.so]\n" SITE_HEAD "    modules:\n      My-Mod: {}\n", NULL, 0,
     "a.yaml:8:7: sites.s.modules.My-Mod: ", "bad module name"},
    {"missing_plugin_file", "server:\n  load_modules: [mod_x.so]\n", NULL, 1,
     "a.yaml:2:18: server.load_modules[0]: ", "No such file"},

    /* what the modules and the TLS setup read: checked when the configuration is loaded, so that
       -t, a start and a reload agree (each file problem against the key that names the file) */
    {"users_file_md5", SITE_HEAD "    modules:\n      authentication:\n        basic: {users_file: users}\n", NULL, 1,
     "a.yaml:7:29: sites.s.modules.authentication.basic.users_file: ", "MD5", 0,
     (const char *const[]){"users", "alice:$1$salt$qJH7.N4xYta3aEG/dfqo/0\n", NULL}},
    {"users_file_plain_text", SITE_HEAD "    modules:\n      authentication:\n        basic: {users_file: users}\n", NULL, 1,
     "a.yaml:7:29: sites.s.modules.authentication.basic.users_file: ", "plain-text", 0,
     (const char *const[]){"users", "bob:secret\n", NULL}},
    {"users_file_every_bad_line", SITE_HEAD "    modules:\n      authentication:\n        basic: {users_file: users}\n", NULL, 1,
     "a.yaml:7:29: sites.s.modules.authentication.basic.users_file: ", "users:4: user \"carol\": DES", 3,
     (const char *const[]){"users",
                           "alice:$1$salt$qJH7.N4xYta3aEG/dfqo/0\n"
                           "bob:secret\n"
                           "dave:$2y$05$abcdefghijklmnopqrstuuGZx1Jx0b6Qm9Qe3f0m2v7Zq0m4JcJ6e\n"
                           "carol:abcdefghijklm\n",
                           NULL}},
    {"users_file_not_a_text_file", SITE_HEAD "    modules:\n      authentication:\n        basic: {users_file: users}\n", NULL, 1,
     "a.yaml:7:29: sites.s.modules.authentication.basic.users_file: ", "want user:hash", 0,
     (const char *const[]){"users", "just some words\n", NULL}},
    {"groups_file_bad_line", SITE_HEAD "    modules:\n      authentication:\n        groups_file: groups\n", NULL, 1,
     "a.yaml:7:22: sites.s.modules.authentication.groups_file: ", "groups:2: want group", 0,
     (const char *const[]){"groups", "admins: alice\nno colon here\n", NULL}},
    {"groups_file_bad_member", SITE_HEAD "    modules:\n      authentication:\n        groups_file: groups\n", NULL, 1,
     "a.yaml:7:22: sites.s.modules.authentication.groups_file: ", "bad group name", 0,
     (const char *const[]){"groups", ": alice\n", NULL}},
    {"roles_without_groups_file", SITE_HEAD "    modules:\n      authorization: [{allow: {roles: [admins]}}]\n", NULL, 0,
     "a.yaml:6:7: sites.s.modules.authorization: ", "role \"admins\", but the authentication settings that apply to / have no"},
    {"roles_where_a_location_replaces_authentication",
     SITE_HEAD "    modules:\n      authentication: {groups_file: groups}\n      authorization: [{allow: {roles: [admins]}}]\n"
               "    locations:\n      /x: {modules: {authentication: {anonymous: true}}}\n",
     NULL, 1, "a.yaml:7:7: sites.s.modules.authorization: ", "apply to /x have no groups_file", 0,
     (const char *const[]){"groups", "admins: alice\n", NULL}},
    {"redirect_to_with_control_byte", SITE_HEAD "    modules:\n      redirect: [{from: /a, to: \"/b\\x01\"}]\n", NULL, 0,
     "a.yaml:6:33: sites.s.modules.redirect[0].to: ", "control character 0x01"},
    {"redirect_to_with_line_break",
     SITE_HEAD "    modules:\n      redirect:\n        - {from: /a, to: \"/b\\r\\nSet-Cookie: x\"}\n", NULL, 0,
     "a.yaml:7:26: sites.s.modules.redirect[0].to: ", "control character 0x0d"},
    {"error_page_is_a_directory", SITE_HEAD "    modules:\n      custom_errors: {pages: {404: .}}\n", NULL, 1,
     "a.yaml:6:36: sites.s.modules.custom_errors.pages.404: ", "not a regular file"},
    {"error_page_too_large", SITE_HEAD "    modules:\n      custom_errors: {pages: {500: big.html}}\n", NULL, 1,
     "a.yaml:6:36: sites.s.modules.custom_errors.pages.500: ", "larger than 1 MiB", 0,
     (const char *const[]){"big.html", "@bytes:1048577", NULL}},
    {"certificate_not_pem", SITE_HEAD "    tls: {certificate: a.yaml, key: key.pem}\n", NULL, 1,
     "a.yaml:5:24: sites.s.tls.certificate: ", "cannot load the certificate", 0,
     (const char *const[]){"key.pem", "@good:certs/blog.key", NULL}},
    {"key_not_pem", SITE_HEAD "    tls: {certificate: cert.pem, key: a.yaml}\n", NULL, 1,
     "a.yaml:5:39: sites.s.tls.key: ", "cannot load the key", 0, (const char *const[]){"cert.pem", "@good:certs/blog.pem", NULL}},
    {"key_does_not_match_certificate", SITE_HEAD "    tls: {certificate: cert.pem, key: key.pem}\n", NULL, 1,
     "a.yaml:5:39: sites.s.tls.key: ", "does not match the certificate", 0,
     (const char *const[]){"cert.pem", "@good:certs/clients.pem", "key.pem", "@good:certs/blog.key", NULL}},
    {"client_ca_not_pem", SITE_HEAD "    tls: {certificate: cert.pem, key: key.pem, client_ca: a.yaml}\n", NULL, 1,
     "a.yaml:5:59: sites.s.tls.client_ca: ", "cannot load the client CA", 0,
     (const char *const[]){"cert.pem", "@good:certs/blog.pem", "key.pem", "@good:certs/blog.key", NULL}},
    {"error_log_in_missing_directory", "server:\n  error_log: no/such/dir/error.log\n" MINIMAL_SITE, NULL, 1,
     "a.yaml:2:3: server.error_log: ", "cannot create"},
    {"error_log_is_a_directory", "server:\n  error_log: .\n" MINIMAL_SITE, NULL, 1,
     "a.yaml:2:3: server.error_log: ", "is a directory"},

    /* several at once: all are reported */
    {"multiple_errors_reported_together",
     "pools:\n  php: {command: [x], max_processes: 0}\nsites:\n  s: {bindings: [http://*:80a], root: ., http2: maybe}\n",
     "server:\n  bogus: 1\n", 0, "b.yaml:2:3: server.bogus: ", "unknown key", 4},
    {"multiple_errors_in_one_list",
     "sites:\n  s:\n    root: .\n    bindings: [http://*:0, http://*:1, http://x:2, 'http://*:3:!']\n", NULL, 0,
     "a.yaml:4:40: sites.s.bindings[2]: ", "bad IP address", 3},
};

#define NUM_BAD_CASES (sizeof(bad_cases) / sizeof(bad_cases[0]))

/* Writes the name/content pairs of `files` into `dir`: "@good:PATH" is data/good's file,
 * "@bytes:N" N bytes of text. */
static void write_files(const char *dir, const char *const *files)
{
    for (; files != NULL && files[0] != NULL; files += 2) {
        if (strncmp(files[1], "@good:", 6) == 0) {
            char *good = good_dir(), path[4400], *text = NULL;
            size_t len = 0;
            FILE *fp;
            snprintf(path, sizeof(path), "%s/%s", good, files[1] + 6);
            assert_non_null(fp = fopen(path, "r"));
            assert_int_equal(getdelim(&text, &len, '\0', fp) > 0, 1);
            fclose(fp);
            write_file(dir, files[0], text);
            free(text);
            free(good);
        } else if (strncmp(files[1], "@bytes:", 7) == 0) {
            size_t n = strtoul(files[1] + 7, NULL, 10);
            char *text = malloc(n + 1);
            assert_non_null(text);
            memset(text, 'x', n);
            text[n] = '\0';
            write_file(dir, files[0], text);
            free(text);
        } else {
            write_file(dir, files[0], files[1]);
        }
    }
}

static void run_bad_case(void **state)
{
    const bad_case_t *c = *state;
    char *dir = conf_dir(c->a_yaml, c->b_yaml), where[4400];

    write_files(dir, c->files);
    h2p_config_errors_t errors = {NULL, 0};
    h2p_config_t *conf = h2p_config_load(dir, c->check_files, &errors);
    size_t min_errors = c->min_errors != 0 ? c->min_errors : 1, count = errors.count;
    int found = 0, loaded = conf != NULL;

    snprintf(where, sizeof(where), "%s/%s", dir, c->where); /* FILE is dir + name */
    for (size_t i = 0; i < errors.count; i++)
        if (strncmp(errors.messages[i], where, strlen(where)) == 0 && strstr(errors.messages[i] + strlen(where), c->word) != NULL)
            found = 1;
    if (loaded || !found || count < min_errors) {
        print_message("expected \"%s...%s\" among:\n", where, c->word);
        print_errors(&errors);
    }
    /* clean up first: a failed assertion does not return */
    h2p_config_release(conf);
    h2p_config_errors_clear(&errors);
    remove_dir(dir);
    assert_false(loaded);
    assert_true(found);
    assert_true(count >= min_errors);
}

/* ---- value parsers ------------------------------------------------------------------------ */

static void test_parse_duration(void **state)
{
    static const struct {
        const char *text;
        int ret;
        uint64_t ms;
    } cases[] = {
        {"90s", 0, 90000},
        {"20m", 0, 1200000},
        {"500ms", 0, 500},
        {"2h", 0, 7200000},
        {"30", 0, 30000},
        {"0", 0, 0},
        {"0ms", 0, 0},
        {"007s", 0, 7000},
        {"", -1, 0},
        {"s", -1, 0},
        {"1.5s", -1, 0},
        {"-1s", -1, 0},
        {"+1s", -1, 0},
        {"1 s", -1, 0},
        {" 1s", -1, 0},
        {"1s ", -1, 0},
        {"1S", -1, 0},
        {"1d", -1, 0},
        {"1sec", -1, 0},
        {"1mss", -1, 0},
        {"18446744073709551615ms", 0, UINT64_MAX},
        {"18446744073709551616ms", -2, 0},
        {"18446744073709551615", -2, 0},
        {"5124095576030432h", -2, 0},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t ms = 12345;
        int ret = h2p_parse_duration_ms(cases[i].text, &ms);
        if (ret != cases[i].ret)
            fail_msg("\"%s\": returned %d, expected %d", cases[i].text, ret, cases[i].ret);
        if (ret == 0 && ms != cases[i].ms)
            fail_msg("\"%s\": %llu ms", cases[i].text, (unsigned long long)ms);
    }
}

/* The digest says whether two loads read the same files: the spawner's and the front end's. */
static void test_digest_tells_what_was_read(void **state)
{
    const char *pools = "pools:\n  app: {command: [/bin/true], max_processes: 4}\n";
    char *dir = conf_dir(pools, "sites:\n  s: {bindings: [\"http://127.0.0.1:8080\"], root: /srv}\n");
    h2p_config_t *first = load_good(dir, 0), *again = load_good(dir, 0);
    assert_int_equal(strlen(first->digest), 64);
    assert_int_equal(strspn(first->digest, "0123456789abcdef"), 64);
    assert_string_equal(first->digest, again->digest);

    /* one byte changed; the same bytes under another file name; a file more */
    write_file(dir, "a.yaml", "pools:\n  app: {command: [/bin/true], max_processes: 3}\n");
    h2p_config_t *changed = load_good(dir, 0);
    assert_string_not_equal(changed->digest, first->digest);
    char from[4096], to[4096];
    snprintf(from, sizeof(from), "%s/a.yaml", dir);
    snprintf(to, sizeof(to), "%s/a2.yaml", dir); /* (read in the same order: the name itself counts) */
    write_file(dir, "a.yaml", pools);
    assert_int_equal(rename(from, to), 0);
    h2p_config_t *renamed = load_good(dir, 0);
    assert_string_not_equal(renamed->digest, first->digest);
    write_file(dir, "d.yaml", "pools:\n  other: {command: [/bin/true]}\n");
    h2p_config_t *more = load_good(dir, 0);
    assert_string_not_equal(more->digest, renamed->digest);

    h2p_config_release(first);
    h2p_config_release(again);
    h2p_config_release(changed);
    h2p_config_release(renamed);
    h2p_config_release(more);
    remove_dir(dir);
}

static void test_parse_size(void **state)
{
    static const struct {
        const char *text;
        int ret;
        uint64_t bytes;
    } cases[] = {
        {"0", 0, 0},
        {"512", 0, 512},
        {"512B", 0, 512},
        {"1KiB", 0, 1024},
        {"256MiB", 0, 268435456},
        {"2GiB", 0, 2147483648ull},
        {"1KB", 0, 1000},
        {"30MB", 0, 30000000},
        {"4GB", 0, 4000000000ull},
        {"18446744073709551615", 0, UINT64_MAX},
        {"18446744073709551615B", 0, UINT64_MAX},
        {"18446744073709551616", -2, 0},
        {"17179869184GiB", -2, 0},
        {"17179869183GiB", 0, 17179869183ull * 1073741824ull},
        {"", -1, 0},
        {"MB", -1, 0},
        {"1mb", -1, 0},
        {"1kib", -1, 0},
        {"1K", -1, 0},
        {"1TB", -1, 0},
        {"1.5MB", -1, 0},
        {"-1", -1, 0},
        {"1 MB", -1, 0},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t bytes = 12345;
        int ret = h2p_parse_size(cases[i].text, &bytes);
        if (ret != cases[i].ret)
            fail_msg("\"%s\": returned %d, expected %d", cases[i].text, ret, cases[i].ret);
        if (ret == 0 && bytes != cases[i].bytes)
            fail_msg("\"%s\": %llu bytes", cases[i].text, (unsigned long long)bytes);
    }
}

static void test_parse_binding(void **state)
{
    h2p_binding_t b;
    const char *err = NULL;
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&b.addr;
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&b.addr;

    assert_int_equal(h2p_parse_binding("http://*:8080:Blog.Test", &b, &err), 0);
    assert_int_equal(b.scheme, H2P_SCHEME_HTTP);
    assert_int_equal(b.any_address, 1);
    assert_int_equal(sin6->sin6_family, AF_INET6);
    assert_int_equal(b.addrlen, sizeof(struct sockaddr_in6));
    assert_true(IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr));
    assert_int_equal(b.port, 8080);
    assert_int_equal(ntohs(sin6->sin6_port), 8080);
    assert_string_equal(b.host, "blog.test");
    assert_string_equal(b.text, "http://*:8080:Blog.Test");
    h2p_binding_clear(&b);
    assert_null(b.host);

    assert_int_equal(h2p_parse_binding("https://127.0.0.1:443", &b, &err), 0);
    assert_int_equal(b.scheme, H2P_SCHEME_HTTPS);
    assert_int_equal(b.any_address, 0);
    assert_int_equal(sin->sin_family, AF_INET);
    assert_int_equal(b.addrlen, sizeof(struct sockaddr_in));
    assert_int_equal(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
    assert_int_equal(ntohs(sin->sin_port), 443);
    assert_null(b.host);
    h2p_binding_clear(&b);

    assert_int_equal(h2p_parse_binding("https://[::1]:65535:*.example.com", &b, &err), 0);
    assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
    assert_int_equal(b.port, 65535);
    assert_string_equal(b.host, "*.example.com");
    h2p_binding_clear(&b);

    assert_int_equal(h2p_parse_binding("tcp://0.0.0.0:1", &b, &err), 0);
    assert_int_equal(b.scheme, H2P_SCHEME_TCP);
    assert_int_equal(b.any_address, 0); /* only `*` is "any" in the IIS sense */
    h2p_binding_clear(&b);

    static const struct {
        const char *text, *err;
    } bad[] = {
        {"http://*:80a", "bad port"},
        {"http://*:0", "bad port"},
        {"http://*:65536", "bad port"},
        {"http://*:", "bad port"},
        {"http://*:-1", "bad port"},
        {"http://*:080000", "bad port"},
        {"http://*", "missing port"},
        {"http://1.2.3:80", "bad IP address"},
        {"http://1.2.3.4.5:80", "bad IP address"},
        {"http://:80", "bad IP address"},
        {"http://[::1:80", "bad IPv6 address"},
        {"http://[1.2.3.4]:80", "bad IPv6 address"},
        {"http://[::1]80", "bad IP address"},
        {"HTTP://*:80", "bad scheme"},
        {"ftp://*:21", "bad scheme"},
        {"*:80", "bad binding"},
        {"", "bad binding"},
        {"http://*:80:", "bad hostname"},
        {"http://*:80:a..b", "bad hostname"},
        {"http://*:80:-a.b", "bad hostname"},
        {"http://*:80:a b", "bad hostname"},
        {"http://*:80:a:b", "bad hostname"},
        {"tcp://*:80:host", "tcp bindings take no hostname"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err = NULL;
        if (h2p_parse_binding(bad[i].text, &b, &err) == 0)
            fail_msg("\"%s\" parsed", bad[i].text);
        if (err == NULL || strstr(err, bad[i].err) == NULL)
            fail_msg("\"%s\": error \"%s\", expected \"%s\"", bad[i].text, err ? err : "(null)", bad[i].err);
        assert_null(b.host);
        assert_null(b.text);
    }
}

static void test_parse_cidr(void **state)
{
    h2p_cidr_t c;

    assert_int_equal(h2p_parse_cidr("10.1.2.3/8", &c), 0);
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 8);
    assert_memory_equal(c.addr, "\x0a\x00\x00\x00", 4);

    assert_int_equal(h2p_parse_cidr("192.168.1.77/27", &c), 0);
    assert_memory_equal(c.addr, "\xc0\xa8\x01\x40", 4);

    assert_int_equal(h2p_parse_cidr("192.168.1.77", &c), 0);
    assert_int_equal(c.prefix, 32);
    assert_memory_equal(c.addr, "\xc0\xa8\x01\x4d", 4);

    assert_int_equal(h2p_parse_cidr("0.0.0.0/0", &c), 0);
    assert_int_equal(c.prefix, 0);

    assert_int_equal(h2p_parse_cidr("2001:db8:ffff::1/33", &c), 0);
    assert_int_equal(c.family, AF_INET6);
    assert_int_equal(c.prefix, 33);
    assert_memory_equal(c.addr, "\x20\x01\x0d\xb8\x80\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 16);

    assert_int_equal(h2p_parse_cidr("::1", &c), 0);
    assert_int_equal(c.prefix, 128);
    assert_int_equal(h2p_parse_cidr("::/0", &c), 0);
    assert_int_equal(h2p_parse_cidr("::ffff:1.2.3.4/128", &c), 0);

    static const char *const bad[] = {"10.0.0.0/33", "::/129",    "10.0.0.0/",     "10.0.0.0/-1", "10.0.0.0/8x",
                                      "10.0.0.0/+8", "10.0.0/8",  "10.0.0.256",    "/8",          "",
                                      "host/8",      "[::1]/128", "10.0.0.0/0008", "10.0.0.0 /8", "1.2.3.4/8/8"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (h2p_parse_cidr(bad[i], &c) == 0)
            fail_msg("\"%s\" parsed", bad[i]);
}

int main(void)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_good_config_server),
        cmocka_unit_test(test_good_config_pools),
        cmocka_unit_test(test_good_config_site),
        cmocka_unit_test(test_good_config_modules),
        cmocka_unit_test(test_wildcard_and_its_addresses_of_one_scheme),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_named_module_takes_defaults),
        cmocka_unit_test(test_hidden_segments_add_to_defaults),
        cmocka_unit_test(test_handler_resource),
        cmocka_unit_test(test_php_max_requests_paired),
        cmocka_unit_test(test_rule_modules_switch_off_with_a_map),
        cmocka_unit_test(test_server_keys_split_over_files),
        cmocka_unit_test(test_pools_and_sites_in_any_file),
        cmocka_unit_test(test_plugin_settings_kept_as_yaml),
        cmocka_unit_test(test_ignores_other_files),
        cmocka_unit_test(test_refcount_and_generation),
        cmocka_unit_test(test_empty_dir_is_an_error),
        cmocka_unit_test(test_missing_dir_is_an_error),
        cmocka_unit_test(test_unreadable_dir_is_an_error),
        cmocka_unit_test(test_dir_that_is_a_file_is_an_error),
        cmocka_unit_test(test_errors_accumulate_and_clear),
        cmocka_unit_test(test_file_over_4_mib_is_refused),
        cmocka_unit_test(test_file_of_almost_4_mib_is_read),
        cmocka_unit_test(test_files_over_16_mib_together_are_refused),
        cmocka_unit_test(test_deep_flow_nesting_is_refused_at_once),
        cmocka_unit_test(test_deep_block_nesting_is_refused),
        cmocka_unit_test(test_64_levels_are_allowed),
        cmocka_unit_test(test_billion_laughs_is_refused),
        cmocka_unit_test(test_alias_cycle_is_refused),
        cmocka_unit_test(test_too_many_anchors_or_aliases_are_refused),
        cmocka_unit_test(test_aliases_within_the_limits_work),
        cmocka_unit_test(test_duplicate_key_in_a_big_map_is_found),
        cmocka_unit_test(test_digest_tells_what_was_read),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_binding),
        cmocka_unit_test(test_parse_cidr),
    };
    size_t num_fixed = sizeof(fixed) / sizeof(fixed[0]);
    struct CMUnitTest tests[sizeof(fixed) / sizeof(fixed[0]) + NUM_BAD_CASES];

    /* one named test per bad configuration, so that a failure says which */
    memcpy(tests, fixed, sizeof(fixed));
    for (size_t i = 0; i < NUM_BAD_CASES; i++) {
        struct CMUnitTest t = cmocka_unit_test_prestate(run_bad_case, (void *)&bad_cases[i]);
        t.name = bad_cases[i].name;
        tests[num_fixed + i] = t;
    }
    return _cmocka_run_group_tests("config", tests, num_fixed + NUM_BAD_CASES, NULL, NULL);
}

/*
 * The configuration loader: YAML text to the model, as `h2pool -t` runs it.  The input is
 * written as conf.d files (split at lines "##file" into up to 8 files, which exercises what may
 * be split over files) into a private directory next to the unit tests' certificates, users and
 * groups files and content roots, then loaded with h2p_config_load(dir, 1, ...) and, when it
 * loads, every site's certificate and key go through h2p_tls_create_site_ctx as -t does.
 * Checks, besides the sanitizers and the leak checker: a refused configuration has at least one
 * message, an accepted one none.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frontend/config.h"
#include "frontend/conn_watch.h"
#include "frontend/tls.h"

/* tls.c records a connection's SSL and handshake on its connection-watch record; no connection is made here */
void h2p_conn_set_ssl(h2o_socket_t *sock, void *ssl)
{
}

void *h2p_conn_ssl(h2o_socket_t *sock)
{
    return NULL;
}

void h2p_conn_handshake_done(h2o_socket_t *sock, int http2)
{
}

#define MAX_FILES 8
#define FILE_SEPARATOR "\n##file\n"

static char base_dir[PATH_MAX], conf_dir[PATH_MAX];
static size_t files_written;

static void fail(const char *what)
{
    perror(what);
    abort();
}

static void link_into(const char *target, const char *dir, const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (symlink(target, path) != 0)
        fail(path);
}

static void remove_tree(const char *path)
{
    DIR *dir = opendir(path);
    struct dirent *e;
    while (dir != NULL && (e = readdir(dir)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char child[PATH_MAX];
        struct stat st;
        snprintf(child, sizeof(child), "%s/%s", path, e->d_name);
        if (lstat(child, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(child);
        else
            unlink(child);
    }
    if (dir != NULL)
        closedir(dir);
    rmdir(path);
}

static void remove_base_dir(void)
{
    remove_tree(base_dir);
}

/* base/conf.d holds links to every file of the unit tests' good conf.d except its YAML files
 * (certs, users, groups, error pages), base/www links to their content roots (../www/...). */
static void make_base_dir(void)
{
    const char *tmp = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
    snprintf(base_dir, sizeof(base_dir), "%s/h2pool-fuzz-config-XXXXXX", tmp);
    if (mkdtemp(base_dir) == NULL)
        fail(base_dir);
    atexit(remove_base_dir);
    snprintf(conf_dir, sizeof(conf_dir), "%s/conf.d", base_dir);
    if (mkdir(conf_dir, 0700) != 0)
        fail(conf_dir);
    link_into(H2POOL_FUZZ_DATA "/www", base_dir, "www");
    DIR *data = opendir(H2POOL_FUZZ_DATA "/conf.d");
    if (data == NULL)
        fail(H2POOL_FUZZ_DATA "/conf.d");
    struct dirent *e;
    while ((e = readdir(data)) != NULL) {
        size_t n = strlen(e->d_name);
        if (e->d_name[0] == '.' || (n > 5 && strcmp(e->d_name + n - 5, ".yaml") == 0))
            continue;
        char target[PATH_MAX];
        snprintf(target, sizeof(target), "%s/%s", H2POOL_FUZZ_DATA "/conf.d", e->d_name);
        link_into(target, conf_dir, e->d_name);
    }
    closedir(data);
}

static void file_path(char *path, size_t i)
{
    snprintf(path, PATH_MAX, "%s/%02zu.yaml", conf_dir, i * 10);
}

static void write_file(size_t i, const uint8_t *data, size_t len)
{
    char path[PATH_MAX];
    file_path(path, i);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || (len != 0 && write(fd, data, len) != (ssize_t)len) || close(fd) != 0)
        fail(path);
}

/* Writes the input's files and removes those the previous input had beyond them. */
static void write_files(const uint8_t *data, size_t size)
{
    size_t count = 0, sep_len = strlen(FILE_SEPARATOR);
    while (count != MAX_FILES - 1) {
        const uint8_t *sep = memmem(data, size, FILE_SEPARATOR, sep_len);
        if (sep == NULL)
            break;
        write_file(count++, data, (size_t)(sep - data) + 1); /* the file keeps its last newline */
        size -= (size_t)(sep - data) + sep_len;
        data = sep + sep_len;
    }
    write_file(count++, data, size);
    for (size_t i = count; i < files_written; ++i) {
        char path[PATH_MAX];
        file_path(path, i);
        unlink(path);
    }
    files_written = count;
}

/* What main.c's check_tls does for -t. */
static void check_tls(h2p_config_t *conf)
{
    for (size_t s = 0; s != conf->num_sites; ++s) {
        if (conf->sites[s].tls.certificate == NULL)
            continue;
        char err[512];
        SSL_CTX *ctx = h2p_tls_create_site_ctx(conf->sites + s, err, sizeof(err));
        if (ctx != NULL)
            SSL_CTX_free(ctx);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (base_dir[0] == '\0')
        make_base_dir();
    write_files(data, size);

    h2p_config_errors_t errors = {0};
    h2p_config_t *conf = h2p_config_load(conf_dir, 1, &errors);
    if ((conf == NULL) != (errors.count != 0))
        abort();
    for (size_t i = 0; i != errors.count; ++i)
        if (errors.messages[i] == NULL || errors.messages[i][0] == '\0')
            abort();
    if (conf != NULL) {
        check_tls(conf);
        h2p_config_release(conf);
    }
    h2p_config_errors_clear(&errors);
    return 0;
}

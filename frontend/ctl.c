/*
 * `h2pool ctl`: the operator's client of the control socket (frontend/control.h).  It finds the
 * socket in the configuration directory (server.control_socket, read straight from the YAML so
 * that a configuration broken by an edit does not keep `h2pool ctl reload` from saying so), sends
 * one request, and prints the answer as a table, or as JSON with --json.
 *
 * Exit status: 0 done; 1 the server refused or could not be reached; 2 a usage error, an unknown
 * command or an unknown site or pool name.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#include "frontend/control.h"
#include "frontend/alloc.h"

#define ANSWER_TIMEOUT_MS 120000

static const char ctl_usage[] =
    "usage: h2pool ctl [-c DIR] [-s SOCKET] [--json] COMMAND\n"
    "  status                          the server: uptime, connections, requests, sites, pools\n"
    "  list sites|pools|workers|requests\n"
    "  start site NAME, stop site NAME a stopped site answers 503\n"
    "  start pool NAME, stop pool NAME start also restarts a pool stopped by rapid-fail protection\n"
    "  recycle pool NAME               replace every worker (each old one stops once its replacement is ready)\n"
    "  reload                          re-read the configuration (as SIGHUP), print its errors if it is refused\n"
    "  cache flush [SITE [PATH]]       drop the output cache's entries (of a site; of a path, or paths starting PATH*)\n"
    "options:\n"
    "  -c, --conf DIR    the configuration h2pool runs with (default /etc/h2pool/conf.d): its server.control_socket\n"
    "  -s, --socket PATH the control socket itself\n"
    "  --json            the server's answer as JSON, for scripts\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    fputs("h2pool ctl: ", stderr);
    vfprintf(stderr, fmt, args);
    fputs("\n", stderr);
    va_end(args);
    return 2;
}

/* ---- finding the socket ----------------------------------------------------------------------- */

static yaml_node_t *map_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
    if (map == NULL || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; ++pair) {
        yaml_node_t *k = yaml_document_get_node(doc, pair->key);
        if (k != NULL && k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, key) == 0)
            return yaml_document_get_node(doc, pair->value);
    }
    return NULL;
}

/* server.control_socket of one file (relative to its directory), or NULL. */
static char *control_socket_of(const char *dir, const char *file)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return NULL;
    yaml_parser_t parser;
    yaml_document_t doc;
    char *found = NULL;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, fp);
    if (yaml_parser_load(&parser, &doc)) {
        yaml_node_t *node = map_get(&doc, map_get(&doc, yaml_document_get_root_node(&doc), "server"), "control_socket");
        if (node != NULL && node->type == YAML_SCALAR_NODE) {
            const char *value = (const char *)node->data.scalar.value;
            size_t len = strlen(dir) + strlen(value) + 2;
            found = h2o_mem_alloc(len);
            if (value[0] == '/')
                snprintf(found, len, "%s", value);
            else
                snprintf(found, len, "%s/%s", dir, value);
        }
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    fclose(fp);
    return found;
}

static int is_yaml(const struct dirent *entry)
{
    size_t len = strlen(entry->d_name);
    return entry->d_name[0] != '.' && len > 5 && strcmp(entry->d_name + len - 5, ".yaml") == 0;
}

static char *find_control_socket(const char *dir)
{
    struct dirent **entries;
    int n = scandir(dir, &entries, is_yaml, alphasort);
    if (n < 0) {
        fprintf(stderr, "h2pool ctl: cannot read %s: %s\n", dir, strerror(errno));
        return NULL;
    }
    char *found = NULL;
    for (int i = 0; i != n; ++i) {
        if (found == NULL)
            found = control_socket_of(dir, entries[i]->d_name);
        free(entries[i]);
    }
    free(entries);
    if (found == NULL)
        fprintf(stderr, "h2pool ctl: %s sets no server.control_socket: h2pool ctl needs one (or -s SOCKET)\n", dir);
    return found;
}

/* ---- talking ------------------------------------------------------------------------------------ */

static int connect_to(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "h2pool ctl: socket path too long: %s\n", path);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (void *)&sa, sizeof(sa)) == 0)
        return fd;
    int e = errno;
    if (fd >= 0)
        close(fd);
    if (e == ENOENT)
        fprintf(stderr, "h2pool ctl: no control socket at %s: is h2pool running?\n", path);
    else if (e == ECONNREFUSED)
        fprintf(stderr, "h2pool ctl: h2pool is not running (nothing answers at %s)\n", path);
    else if (e == EACCES || e == EPERM)
        fprintf(stderr, "h2pool ctl: permission denied on %s: run it as root or as the user h2pool runs as\n", path);
    else
        fprintf(stderr, "h2pool ctl: cannot connect to %s: %s\n", path, strerror(e));
    return -1;
}

/* Sends the request, half-closes, reads the one-line answer. */
static json_t *exchange(int fd, json_t *request)
{
    char *text = json_dumps(request, JSON_COMPACT);
    size_t len = strlen(text);
    text[len] = '\n';
    for (size_t off = 0; off <= len;) {
        ssize_t w = send(fd, text + off, len + 1 - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            break; /* (a refused client is answered and closed at once: read what it says) */
        off += (size_t)w;
    }
    free(text);
    shutdown(fd, SHUT_WR);

    size_t cap = 65536, used = 0;
    char *buf = h2o_mem_alloc(cap);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, ANSWER_TIMEOUT_MS) == 0) {
            fprintf(stderr, "h2pool ctl: no answer within %d s\n", ANSWER_TIMEOUT_MS / 1000);
            free(buf);
            return NULL;
        }
        if (used == cap)
            buf = h2o_mem_realloc(buf, cap *= 2);
        ssize_t r = read(fd, buf + used, cap - used);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        used += (size_t)r;
        if (memchr(buf + used - r, '\n', (size_t)r) != NULL)
            break;
    }
    json_error_t error;
    json_t *answer = used != 0 ? json_loadb(buf, used, JSON_DISABLE_EOF_CHECK, &error) : NULL;
    if (answer == NULL)
        fprintf(stderr, "h2pool ctl: %s\n", used == 0 ? "the server closed the connection without an answer" : "unreadable answer");
    free(buf);
    return answer;
}

/* ---- tables ------------------------------------------------------------------------------------ */

#define MAX_COLUMNS 16

typedef struct table {
    size_t columns, rows;
    char **cells; /* rows x columns, the header first */
    int right[MAX_COLUMNS];
} table_t;

static void table_init(table_t *t, const char *const *header, const char *right)
{
    memset(t, 0, sizeof(*t));
    while (header[t->columns] != NULL)
        ++t->columns;
    for (size_t c = 0; c != t->columns; ++c)
        t->right[c] = right[c] == 'r';
    t->cells = h2p_calloc(t->columns, sizeof(char *));
    for (size_t c = 0; c != t->columns; ++c)
        t->cells[c] = h2p_strdup(header[c]);
    t->rows = 1;
}

static void table_row(table_t *t, ...)
{
    va_list args;
    va_start(args, t);
    t->cells = h2o_mem_realloc(t->cells, sizeof(char *) * t->columns * (t->rows + 1));
    for (size_t c = 0; c != t->columns; ++c) {
        const char *v = va_arg(args, const char *);
        t->cells[t->rows * t->columns + c] = h2p_strdup(v != NULL ? v : "-");
    }
    va_end(args);
    t->rows++;
}

static void table_print(table_t *t)
{
    size_t width[MAX_COLUMNS] = {0};
    for (size_t r = 0; r != t->rows; ++r)
        for (size_t c = 0; c != t->columns; ++c) {
            size_t len = strlen(t->cells[r * t->columns + c]);
            if (len > width[c])
                width[c] = len;
        }
    size_t line_cap = 2;
    for (size_t c = 0; c != t->columns; ++c)
        line_cap += width[c] + 2;
    char *line = h2o_mem_alloc(line_cap);
    for (size_t r = 0; r != t->rows; ++r) {
        size_t n = 0;
        for (size_t c = 0; c != t->columns; ++c)
            n += (size_t)snprintf(line + n, line_cap - n, t->right[c] ? "%*s  " : "%-*s  ", (int)width[c],
                                  t->cells[r * t->columns + c]);
        while (n != 0 && line[n - 1] == ' ') /* (no trailing blanks) */
            --n;
        printf("%.*s\n", (int)n, line);
    }
    free(line);
    for (size_t i = 0; i != t->rows * t->columns; ++i)
        free(t->cells[i]);
    free(t->cells);
}

/* Formatted numbers for cells: a ring of buffers (a row takes several). */
static const char *num(json_t *v)
{
    static char bufs[32][32];
    static size_t next;
    char *b = bufs[next++ % 32];
    if (json_is_integer(v))
        snprintf(b, 32, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(b, 32, "%.1f", json_real_value(v));
    else
        return "-";
    return b;
}

static const char *duration(double seconds)
{
    static char bufs[8][32];
    static size_t next;
    char *b = bufs[next++ % 8];
    long s = (long)seconds;
    if (s >= 86400)
        snprintf(b, 32, "%ldd%02ldh", s / 86400, s / 3600 % 24);
    else if (s >= 3600)
        snprintf(b, 32, "%ldh%02ldm", s / 3600, s / 60 % 60);
    else if (s >= 60)
        snprintf(b, 32, "%ldm%02lds", s / 60, s % 60);
    else
        snprintf(b, 32, "%.1fs", seconds);
    return b;
}

static const char *bytes(json_t *v)
{
    static char bufs[8][32];
    static size_t next;
    char *b = bufs[next++ % 8];
    if (!json_is_integer(v))
        return "-";
    double n = (double)json_integer_value(v);
    if (n >= 1 << 30)
        snprintf(b, 32, "%.1fG", n / (1 << 30));
    else if (n >= 1 << 20)
        snprintf(b, 32, "%.1fM", n / (1 << 20));
    else
        snprintf(b, 32, "%.0fK", n / 1024);
    return b;
}

static const char *str(json_t *object, const char *key)
{
    return json_string_value(json_object_get(object, key));
}

static void print_sites(json_t *sites)
{
    static const char *const header[] = {"SITE", "STATE", "REQUESTS", "2XX",      "3XX", "4XX",
                                         "5XX",  "P50MS", "P99MS",    "BINDINGS", NULL};
    table_t t;
    table_init(&t, header, "llrrrrrrrl");
    size_t i, j;
    json_t *s, *b;
    json_array_foreach(sites, i, s)
    {
        char bindings[1024] = "";
        size_t n = 0;
        json_array_foreach(json_object_get(s, "bindings"), j, b)
        {
            n += (size_t)snprintf(bindings + n, n < sizeof(bindings) ? sizeof(bindings) - n : 0, "%s%s", j ? " " : "",
                                  json_string_value(b));
        }
        json_t *c = json_object_get(s, "by_class"), *l = json_object_get(s, "latency");
        table_row(&t, str(s, "name"), str(s, "state"), num(json_object_get(s, "requests_total")), num(json_object_get(c, "2xx")),
                  num(json_object_get(c, "3xx")), num(json_object_get(c, "4xx")), num(json_object_get(c, "5xx")),
                  num(json_object_get(l, "p50_ms")), num(json_object_get(l, "p99_ms")), bindings);
    }
    table_print(&t);
}

static void print_pools(json_t *pools)
{
    static const char *const header[] = {"POOL",   "STATE",   "BUSY",     "IDLE",       "STARTING", "QUEUE", "MAX",
                                         "SPAWNS", "CRASHES", "RECYCLES", "VIOLATIONS", "REQUESTS", "NOTE",  NULL};
    table_t t;
    table_init(&t, header, "llrrrrrrrrrrl");
    size_t i;
    json_t *p;
    json_array_foreach(pools, i, p)
    {
        json_t *w = json_object_get(p, "workers");
        char note[128] = "";
        if (json_is_string(json_object_get(p, "stopped_by")))
            snprintf(note, sizeof(note), "stopped by %s", str(p, "stopped_by"));
        else if (json_is_true(json_object_get(p, "external")))
            snprintf(note, sizeof(note), "external workers (connect:)");
        table_row(&t, str(p, "name"), str(p, "state"), num(json_object_get(w, "busy")), num(json_object_get(w, "idle")),
                  num(json_object_get(w, "starting")), num(json_object_get(p, "queue")), num(json_object_get(p, "max_processes")),
                  num(json_object_get(p, "spawns_total")), num(json_object_get(p, "crashes_total")),
                  num(json_object_get(p, "recycles_total")), num(json_object_get(p, "protocol_violations_total")),
                  num(json_object_get(p, "requests_total")), note);
    }
    table_print(&t);
}

static void print_workers(json_t *workers)
{
    static const char *const header[] = {"POOL", "PID", "STATE", "REQUESTS", "UPTIME", "RSS", "NOTE", NULL};
    table_t t;
    table_init(&t, header, "lrlrrrl");
    size_t i;
    json_t *w;
    json_array_foreach(workers, i, w)
    {
        const char *note = json_is_string(json_object_get(w, "retiring")) ? str(w, "retiring")
                           : json_is_string(json_object_get(w, "role"))   ? str(w, "role") /* php-cgi master or slot */
                                                                          : str(w, "endpoint");
        table_row(&t, str(w, "pool"), num(json_object_get(w, "pid")), str(w, "state"), num(json_object_get(w, "requests")),
                  duration(json_real_value(json_object_get(w, "uptime_s"))), bytes(json_object_get(w, "rss_bytes")), note);
    }
    table_print(&t);
}

static int by_elapsed(const void *a, const void *b)
{
    json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "elapsed_ms")),
               y = json_integer_value(json_object_get(*(json_t *const *)b, "elapsed_ms"));
    return x < y ? 1 : x > y ? -1 : 0;
}

static void print_requests(json_t *requests)
{
    static const char *const header[] = {"ELAPSED", "SITE", "POOL", "PID", "STAGE", "CLIENT", "METHOD", "URL", NULL};
    size_t n = json_array_size(requests);
    json_t **sorted = h2o_mem_alloc(sizeof(*sorted) * (n + 1));
    for (size_t i = 0; i != n; ++i)
        sorted[i] = json_array_get(requests, i);
    qsort(sorted, n, sizeof(*sorted), by_elapsed);
    if (n == 0) {
        printf("no request in flight\n");
        free(sorted);
        return;
    }
    table_t t;
    table_init(&t, header, "rllrllll");
    for (size_t i = 0; i != n; ++i) {
        json_t *r = sorted[i];
        table_row(&t, duration((double)json_integer_value(json_object_get(r, "elapsed_ms")) / 1000), str(r, "site"), str(r, "pool"),
                  num(json_object_get(r, "worker_pid")), str(r, "stage"), str(r, "client"), str(r, "method"), str(r, "url"));
    }
    table_print(&t);
    free(sorted);
}

static void print_status(json_t *s)
{
    json_t *c = json_object_get(s, "connections"), *r = json_object_get(s, "requests"), *classes = json_object_get(r, "by_class");
    printf("h2pool %s, pid %s, up %s, configuration generation %s, %s threads\n", str(s, "version"), num(json_object_get(s, "pid")),
           duration(json_real_value(json_object_get(s, "uptime_s"))), num(json_object_get(s, "generation")),
           num(json_object_get(s, "threads")));
    printf("connections: %s open (max %s), %s accepted, %s refused\n", num(json_object_get(c, "current")),
           num(json_object_get(c, "max")), num(json_object_get(c, "accepted_total")), num(json_object_get(c, "refused_total")));
    printf("requests: %s answered (%.1f/s over the last 10 s), %s in flight; 2xx %s, 3xx %s, 4xx %s, 5xx %s\n",
           num(json_object_get(r, "requests_total")), json_real_value(json_object_get(r, "per_second")),
           num(json_object_get(r, "in_flight")), num(json_object_get(classes, "2xx")), num(json_object_get(classes, "3xx")),
           num(json_object_get(classes, "4xx")), num(json_object_get(classes, "5xx")));
    printf("\n");
    print_sites(json_object_get(s, "sites"));
    printf("\n");
    print_pools(json_object_get(s, "pools"));
}

/* ---- the command line ---------------------------------------------------------------------------- */

/* The request for the command words, or NULL after a usage message. */
static json_t *build_request(int argc, char **argv)
{
    if (argc == 0) {
        fputs(ctl_usage, stderr);
        return NULL;
    }
    const char *command = argv[0];
    if (strcmp(command, "status") == 0 || strcmp(command, "reload") == 0) {
        if (argc != 1) {
            usage_error("%s takes no argument (\"%s\")", command, argv[1]);
            return NULL;
        }
        return json_pack("{s:s}", "command", command);
    }
    if (strcmp(command, "list") == 0) {
        static const char *const what[] = {"sites", "pools", "workers", "requests"};
        if (argc != 2) {
            usage_error(argc < 2 ? "list what? (sites, pools, workers, requests)" : "list takes one argument");
            return NULL;
        }
        for (size_t i = 0; i != 4; ++i)
            if (strcmp(argv[1], what[i]) == 0)
                return json_pack("{s:s, s:s}", "command", "list", "what", argv[1]);
        usage_error("cannot list \"%s\" (sites, pools, workers, requests)", argv[1]);
        return NULL;
    }
    if (strcmp(command, "cache") == 0) {
        if (argc < 2 || argc > 4 || strcmp(argv[1], "flush") != 0) {
            usage_error("usage: h2pool ctl cache flush [SITE [PATH]]");
            return NULL;
        }
        json_t *request = json_pack("{s:s, s:s}", "command", "cache", "what", "flush");
        if (argc >= 3)
            json_object_set_new(request, "name", json_string(argv[2]));
        if (argc == 4)
            json_object_set_new(request, "path", json_string(argv[3]));
        return request;
    }
    int recycle = strcmp(command, "recycle") == 0;
    if (recycle || strcmp(command, "start") == 0 || strcmp(command, "stop") == 0) {
        const char *types = recycle ? "pool" : "site or pool";
        if (argc != 3) {
            usage_error("usage: h2pool ctl %s %s NAME", command, recycle ? "pool" : "site|pool");
            return NULL;
        }
        if (strcmp(argv[1], "pool") != 0 && (recycle || strcmp(argv[1], "site") != 0)) {
            usage_error("cannot %s a \"%s\" (%s)", command, argv[1], types);
            return NULL;
        }
        return json_pack("{s:s, s:s, s:s}", "command", command, "type", argv[1], "name", argv[2]);
    }
    usage_error("unknown command \"%s\" (status, list, start, stop, recycle, reload, cache; -h for help)", command);
    return NULL;
}

static int exit_status(json_t *answer)
{
    if (json_is_true(json_object_get(answer, "ok")))
        return 0;
    const char *code = str(answer, "code");
    return code != NULL &&
                   (strcmp(code, "unknown_command") == 0 || strcmp(code, "unknown_name") == 0 || strcmp(code, "bad_request") == 0)
               ? 2
               : 1;
}

static void print_answer(json_t *request, json_t *answer)
{
    if (!json_is_true(json_object_get(answer, "ok"))) {
        fprintf(stderr, "h2pool ctl: %s\n", str(answer, "error") != NULL ? str(answer, "error") : "failed");
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(answer, "errors"), i, e)
        {
            fprintf(stderr, "  %s\n", json_string_value(e));
        }
        return;
    }
    const char *command = str(request, "command"), *what = str(request, "what");
    if (json_is_string(json_object_get(answer, "message")))
        printf("%s\n", str(answer, "message"));
    else if (strcmp(command, "status") == 0)
        print_status(json_object_get(answer, "status"));
    else if (strcmp(what, "sites") == 0)
        print_sites(json_object_get(answer, "sites"));
    else if (strcmp(what, "pools") == 0)
        print_pools(json_object_get(answer, "pools"));
    else if (strcmp(what, "workers") == 0)
        print_workers(json_object_get(answer, "workers"));
    else
        print_requests(json_object_get(answer, "requests"));
}

int h2p_ctl_main(int argc, char **argv)
{
    static const struct option longopts[] = {{"conf", required_argument, NULL, 'c'},
                                             {"socket", required_argument, NULL, 's'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL}};
    const char *conf_dir = "/etc/h2pool/conf.d", *socket_path = NULL;
    int as_json = 0, ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:s:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            conf_dir = optarg;
            break;
        case 's':
            socket_path = optarg;
            break;
        case 'j':
            as_json = 1;
            break;
        case 'h':
            fputs(ctl_usage, stdout);
            return 0;
        default:
            fputs(ctl_usage, stderr);
            return 2;
        }
    }
    json_t *request = build_request(argc - optind, argv + optind);
    if (request == NULL)
        return 2;
    char *found = socket_path == NULL ? find_control_socket(conf_dir) : NULL;
    if (socket_path == NULL && (socket_path = found) == NULL) {
        json_decref(request);
        return 1;
    }
    int fd = connect_to(socket_path);
    free(found);
    if (fd < 0) {
        json_decref(request);
        return 1;
    }
    json_t *answer = exchange(fd, request);
    close(fd);
    int status = 1;
    if (answer != NULL) {
        status = exit_status(answer);
        if (as_json) {
            char *text = json_dumps(answer, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
            printf("%s\n", text);
            free(text);
        } else {
            print_answer(request, answer);
        }
        json_decref(answer);
    }
    json_decref(request);
    return status;
}

/* The control socket: see control.h. */
#include "frontend/control.h"
#include "frontend/alloc.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "frontend/counters.h"
#include "frontend/log.h"
#include "frontend/router.h"
#include "frontend/server.h"
#include "frontend/status.h"
#include "native-modules/output_cache.h"
#include "poolmgr/pool.h"

#define MAX_CONTROL_CONNECTIONS 16
#define CONTROL_IDLE_TIMEOUT_MS 30000

typedef struct control_conn {
    h2o_linklist_t link;
    h2o_socket_t *sock;
    h2o_timeout_entry_t idle;
    int busy;    /* a request is being answered: the next line waits */
    int eof;     /* the client has finished sending (or is gone) */
    int closing; /* close once the answer is written */
    char *out;   /* the answer being written */
    h2p_inflight_collect_t *collecting;
} control_conn_t;

static struct {
    int fd;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    h2o_evloop_t *loop;
    h2o_socket_t *listener;
    h2o_timeout_t idle_timeout;
    h2o_linklist_t conns;
    size_t num_conns;
    h2p_control_reload_cb reload;
} control = {.fd = -1};

static void process(control_conn_t *conn);

/* ---- the socket ------------------------------------------------------------------------------ */

/* A socket left by an h2pool that did not exit cleanly is replaced; a live one, or anything that
 * is not a socket, is not touched. */
static int clear_stale_socket(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : (snprintf(err, errlen, "%s: %s", path, strerror(errno)), -1);
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "%s exists and is not a socket", path);
        return -1;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), connected = fd >= 0 && connect(fd, (void *)&sa, sizeof(sa)) == 0;
    if (fd >= 0)
        close(fd);
    if (connected) {
        snprintf(err, errlen, "%s is in use: another h2pool runs with it", path);
        return -1;
    }
    unlink(path);
    return 0;
}

/* The front end's identity after the drop (the socket's owner), as h2p_privsep_drop_privileges has it. */
static int front_end_identity(const h2p_server_conf_t *server, uid_t *uid, gid_t *gid)
{
    const char *user = server->user != NULL ? server->user : H2P_DEFAULT_SERVER_USER;
    struct passwd *pw = getpwnam(user);
    if (pw == NULL)
        return -1;
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    if (server->group != NULL) {
        struct group *gr = getgrnam(server->group);
        if (gr == NULL)
            return -1;
        *gid = gr->gr_gid;
    }
    return 0;
}

int h2p_control_open(const h2p_server_conf_t *server, char *err, size_t errlen)
{
    const char *path = server->control_socket;
    if (path == NULL)
        return 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "server.control_socket: path too long for a unix socket (%zu bytes at most): %s",
                 sizeof(sa.sun_path) - 1, path);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    char why[512];
    if (clear_stale_socket(path, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "server.control_socket: %s", why);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    /* 0600 from the start: nobody else may connect between bind and chown */
    mode_t old_umask = umask(0177);
    int bound = fd >= 0 && bind(fd, (void *)&sa, sizeof(sa)) == 0;
    umask(old_umask);
    if (!bound || listen(fd, 16) != 0) {
        snprintf(err, errlen, "server.control_socket: cannot create %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    uid_t uid;
    gid_t gid;
    /* (lchown: a symlink swapped in after bind is not followed) */
    if (geteuid() == 0 && (front_end_identity(server, &uid, &gid) != 0 || lchown(path, uid, gid) != 0)) {
        snprintf(err, errlen, "server.control_socket: cannot give %s to server.user: %s", path, strerror(errno));
        close(fd);
        unlink(path);
        return -1;
    }
    control.fd = fd;
    memcpy(control.path, path, strlen(path) + 1);
    return 0;
}

/* ---- answers -------------------------------------------------------------------------------- */

/* Something a client sent, fit for a message: printable ASCII, at most 64 bytes. */
static const char *printable(const char *s, size_t len, char *buf, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (size_t i = 0; i != len && n + 4 < size; ++i) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            buf[n++] = (char)c;
        } else {
            buf[n++] = '\\';
            buf[n++] = 'x';
            buf[n++] = hex[c >> 4];
            buf[n++] = hex[c & 15];
        }
        if (n > 64) {
            memcpy(buf + n, "...", 3);
            n += 3;
            break;
        }
    }
    buf[n] = '\0';
    return buf;
}

static json_t *failure(const char *code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static json_t *failure(const char *code, const char *fmt, ...)
{
    char message[512];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof(message), fmt, args);
    va_end(args);
    return json_pack("{s:b, s:s, s:o}", "ok", 0, "code", code, "error", h2p_json_bytes(message, strlen(message)));
}

static json_t *success(const char *key, json_t *value)
{
    json_t *answer = json_pack("{s:b}", "ok", 1);
    if (key != NULL)
        json_object_set_new(answer, key, value);
    return answer;
}

static json_t *message(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *message(const char *fmt, ...)
{
    char text[512];
    va_list args;
    va_start(args, fmt);
    vsnprintf(text, sizeof(text), fmt, args);
    va_end(args);
    return success("message", h2p_json_bytes(text, strlen(text)));
}

static void on_answer_written(h2o_socket_t *sock, const char *err);

static void send_answer(control_conn_t *conn, json_t *answer)
{
    char *text = json_dumps(answer, JSON_COMPACT);
    json_decref(answer);
    size_t len = strlen(text);
    conn->out = h2o_mem_realloc(text, len + 1);
    conn->out[len] = '\n';
    h2o_iovec_t buf = h2o_iovec_init(conn->out, len + 1);
    h2o_socket_write(conn->sock, &buf, 1, on_answer_written);
}

/* ---- commands ------------------------------------------------------------------------------- */

/* Site and pool names are [A-Za-z0-9._-], 64 bytes at most (frontend/config.c). */
static int valid_name(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > 64)
        return 0;
    for (const char *p = name; *p != '\0'; ++p)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("._-", *p) != NULL))
            return 0;
    return 1;
}

static h2p_site_rt_t *find_site(const char *name)
{
    h2p_gen_t *gen = h2p_server.gen; /* (swapped by this thread only) */
    for (size_t s = 0; gen != NULL && s != gen->num_sites; ++s)
        if (strcmp(gen->sites[s].conf->name, name) == 0)
            return gen->sites + s;
    return NULL;
}

static json_t *site_command(const char *action, const char *name)
{
    char shown[300];
    h2p_site_rt_t *site = valid_name(name) ? find_site(name) : NULL;
    if (site == NULL)
        return failure("unknown_name", "no site named \"%s\"", printable(name, strlen(name), shown, sizeof(shown)));
    int stop = strcmp(action, "stop") == 0;
    if (atomic_exchange(&site->stats->stopped, stop) == stop)
        return message("site %s is already %s", name, stop ? "stopped" : "started");
    h2p_notice(NULL, "site %s %s by h2pool ctl%s", name, stop ? "stopped" : "started", stop ? ": its requests get 503" : "");
    return message("site %s %s%s", name, stop ? "stopped" : "started",
                   stop ? ": its requests get 503 until `h2pool ctl start site` (a reload keeps it stopped)" : "");
}

static json_t *pool_command(const char *action, const char *name)
{
    char shown[300], text[512];
    if (!valid_name(name))
        return failure("unknown_name", "no pool named \"%s\"", printable(name, strlen(name), shown, sizeof(shown)));
    switch (h2p_poolmgr_control(action, name, text, sizeof(text))) {
    case H2P_POOL_CTL_OK:
        return message("%s", text);
    case H2P_POOL_CTL_UNKNOWN:
        return failure("unknown_name", "no pool named \"%s\"", name);
    default:
        return failure("refused", "%s", text);
    }
}

static json_t *pools_without_history(void)
{
    json_t *pools = h2p_poolmgr_pools_json(0);
    size_t i;
    json_t *p;
    json_array_foreach(pools, i, p)
    {
        json_object_del(p, "history");
    }
    return pools;
}

static void on_requests_collected(json_t *requests, void *data)
{
    control_conn_t *conn = data;
    conn->collecting = NULL;
    send_answer(conn, success("requests", requests));
}

/* The answer now, or NULL when it comes later (list requests). */
static json_t *run_command(control_conn_t *conn, json_t *request)
{
    static const char *const keys[] = {"command", "what", "type", "name", "path"};
    char shown[300];
    const char *key;
    json_t *value;
    json_object_foreach(request, key, value)
    {
        size_t k = 0;
        while (k != sizeof(keys) / sizeof(keys[0]) && strcmp(keys[k], key) != 0)
            ++k;
        if (k == sizeof(keys) / sizeof(keys[0]))
            return failure("bad_request", "unknown key \"%s\" (a request has command, what, type, name, path)",
                           printable(key, strlen(key), shown, sizeof(shown)));
        if (!json_is_string(value))
            return failure("bad_request", "\"%s\" must be a string", key);
    }
    json_t *command_value = json_object_get(request, "command");
    if (command_value == NULL)
        return failure("bad_request", "no \"command\" (one of list, start, stop, recycle, reload, status, cache)");
    const char *command = json_string_value(command_value), *what = json_string_value(json_object_get(request, "what")),
               *type = json_string_value(json_object_get(request, "type")),
               *name = json_string_value(json_object_get(request, "name"));
    size_t command_len = json_string_length(command_value);

    if (strcmp(command, "status") == 0)
        return success("status", h2p_status_json(0));
    if (strcmp(command, "reload") == 0) {
        json_t *errors = json_array();
        if (control.reload("h2pool ctl", errors) != 0) {
            json_t *answer = failure("reload_refused", "reload refused: the running configuration keeps serving");
            json_object_set_new(answer, "errors", errors);
            return answer;
        }
        json_decref(errors);
        return message("configuration reloaded: generation %llu",
                       (unsigned long long)(h2p_server.gen != NULL ? h2p_server.gen->conf->generation : 0));
    }
    if (strcmp(command, "list") == 0) {
        if (what == NULL)
            return failure("bad_request", "list what? (sites, pools, workers, requests)");
        if (strcmp(what, "sites") == 0)
            return success("sites", h2p_status_sites_json());
        if (strcmp(what, "pools") == 0)
            return success("pools", pools_without_history());
        if (strcmp(what, "workers") == 0)
            return success("workers", h2p_poolmgr_workers_json());
        if (strcmp(what, "requests") == 0) {
            conn->busy = 1;
            conn->collecting = h2p_inflight_collect(on_requests_collected, conn);
            return NULL;
        }
        return failure("unknown_command", "cannot list \"%s\" (sites, pools, workers, requests)",
                       printable(what, strlen(what), shown, sizeof(shown)));
    }
    if (strcmp(command, "cache") == 0) {
        if (what == NULL || strcmp(what, "flush") != 0)
            return failure("unknown_command", "cache what? (flush [SITE [PATH]])");
        const char *path = json_string_value(json_object_get(request, "path"));
        h2p_gen_t *gen = h2p_server.gen;
        const h2p_site_rt_t *site = NULL;
        if (name != NULL) {
            for (size_t i = 0; i != gen->num_sites && site == NULL; ++i)
                if (strcmp(gen->sites[i].conf->name, name) == 0)
                    site = gen->sites + i;
            if (site == NULL)
                return failure("unknown_name", "no site \"%s\"", printable(name, strlen(name), shown, sizeof(shown)));
        }
        if (path != NULL && path[0] != '/')
            return failure("bad_request", "a path starts with '/' (\"%s\")", printable(path, strlen(path), shown, sizeof(shown)));
        size_t n = h2p_output_cache_flush(gen, site, path);
        return message("cache flushed: %zu entr%s", n, n == 1 ? "y" : "ies");
    }
    int site_or_pool = strcmp(command, "start") == 0 || strcmp(command, "stop") == 0;
    if (site_or_pool || strcmp(command, "recycle") == 0) {
        if (type == NULL || name == NULL)
            return failure("bad_request", "%s needs a type (%s) and a name", command, site_or_pool ? "site or pool" : "pool");
        if (strcmp(type, "pool") == 0)
            return pool_command(command, name);
        if (site_or_pool && strcmp(type, "site") == 0)
            return site_command(command, name);
        return failure("unknown_command", "cannot %s a \"%s\" (%s)", command, printable(type, strlen(type), shown, sizeof(shown)),
                       site_or_pool ? "site or pool" : "pool");
    }
    return failure("unknown_command", "unknown command \"%s\" (list, start, stop, recycle, reload, status, cache)",
                   printable(command, command_len, shown, sizeof(shown)));
}

static void handle_line(control_conn_t *conn, const char *line, size_t len)
{
    json_error_t error;
    conn->busy = 1;
    json_t *request = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &error), *answer;
    if (request == NULL)
        answer = failure("bad_request", "not JSON: %s (at byte %d)", error.text, error.position);
    else if (!json_is_object(request))
        answer = failure("bad_request", "a request is a JSON object, e.g. {\"command\": \"status\"}");
    else
        answer = run_command(conn, request);
    json_decref(request);
    if (answer != NULL)
        send_answer(conn, answer);
}

/* ---- connections ------------------------------------------------------------------------------ */

static void close_conn(control_conn_t *conn)
{
    if (conn->collecting != NULL)
        h2p_inflight_abandon(conn->collecting);
    if (h2o_timeout_is_linked(&conn->idle))
        h2o_timeout_unlink(&conn->idle);
    h2o_linklist_unlink(&conn->link);
    h2o_socket_close(conn->sock);
    free(conn->out);
    free(conn);
    control.num_conns--;
}

static void touch(control_conn_t *conn)
{
    if (h2o_timeout_is_linked(&conn->idle))
        h2o_timeout_unlink(&conn->idle);
    h2o_timeout_link(control.loop, &control.idle_timeout, &conn->idle);
}

static void on_answer_written(h2o_socket_t *sock, const char *err)
{
    control_conn_t *conn = sock->data;
    free(conn->out);
    conn->out = NULL;
    conn->busy = 0;
    if (err != NULL || conn->closing) {
        close_conn(conn);
        return;
    }
    process(conn);
}

static void on_readable(h2o_socket_t *sock, const char *err)
{
    control_conn_t *conn = sock->data;
    if (err != NULL) {
        conn->eof = 1;
        h2o_socket_read_stop(sock);
    }
    process(conn);
}

/* Answers the next complete line, if the previous answer is out. */
static void process(control_conn_t *conn)
{
    while (!conn->busy) {
        h2o_buffer_t *in = conn->sock->input;
        char *nl = in->size == 0
                       ? NULL
                       : memchr(in->bytes, '\n', in->size < H2P_CONTROL_MAX_LINE + 1 ? in->size : H2P_CONTROL_MAX_LINE + 1);
        if (nl == NULL && in->size > H2P_CONTROL_MAX_LINE) {
            conn->busy = conn->closing = 1;
            send_answer(conn, failure("too_long", "a request line is %d bytes at most", H2P_CONTROL_MAX_LINE));
            return;
        }
        if (nl == NULL && conn->eof && in->size != 0)
            nl = in->bytes + in->size; /* the last request may lack its newline */
        if (nl == NULL) {
            if (conn->eof)
                close_conn(conn);
            else
                h2o_socket_read_start(conn->sock, on_readable);
            return;
        }
        size_t len = (size_t)(nl - in->bytes), eaten = len + (len < in->size);
        if (len != 0 && in->bytes[len - 1] == '\r')
            --len;
        if (len == 0) { /* an empty line asks nothing */
            h2o_buffer_consume(&conn->sock->input, eaten);
            continue;
        }
        touch(conn);
        /* no reading while answering: a client that sends without reading cannot fill our memory */
        if (!conn->eof)
            h2o_socket_read_stop(conn->sock);
        char *line = h2o_mem_alloc(len);
        memcpy(line, in->bytes, len);
        h2o_buffer_consume(&conn->sock->input, eaten);
        handle_line(conn, line, len);
        free(line);
    }
}

static void on_idle(h2o_timeout_entry_t *entry)
{
    control_conn_t *conn = H2O_STRUCT_FROM_MEMBER(control_conn_t, idle, entry);
    if (conn->busy) { /* (an answer is on its way or being written) */
        touch(conn);
        return;
    }
    close_conn(conn);
}

/* Refuses a client at once with a one-line answer (a fresh socket's buffer takes it whole). */
static void refuse(int fd, const char *code, const char *why)
{
    json_t *answer = failure(code, "%s", why);
    char *text = json_dumps(answer, JSON_COMPACT);
    json_decref(answer);
    size_t len = strlen(text);
    text[len] = '\n'; /* (replaces the NUL; written with its length) */
    ssize_t r = send(fd, text, len + 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)r;
    free(text);
}

static int peer_allowed(int fd, char *why, size_t len)
{
    struct ucred cred;
    socklen_t cred_len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) != 0) {
        snprintf(why, len, "cannot tell who the client is: %s", strerror(errno));
        return 0;
    }
    if (cred.uid == 0 || cred.uid == geteuid())
        return 1;
    struct passwd *pw = getpwuid(geteuid());
    snprintf(why, len, "permission denied: uid %u (pid %d) is neither root nor %s, the user h2pool runs as", (unsigned)cred.uid,
             (int)cred.pid, pw != NULL ? pw->pw_name : "?");
    return 0;
}

/* A local user who keeps knocking must not fill the error log: one line a second at most. */
static void log_refusal(const char *why)
{
    static uint64_t last_ms, suppressed;
    uint64_t now = h2p_now_ms();
    if (last_ms != 0 && now - last_ms < 1000) {
        ++suppressed;
        return;
    }
    if (suppressed != 0)
        h2p_warn(NULL, "control socket: refused a client: %s (and %llu more refusals)", why, (unsigned long long)suppressed);
    else
        h2p_warn(NULL, "control socket: refused a client: %s", why);
    last_ms = now;
    suppressed = 0;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    if (err != NULL)
        return;
    for (int i = 0; i != 16; ++i) {
        h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
        if (sock == NULL)
            return;
        int fd = h2o_socket_get_fd(sock);
        char why[256];
        if (!peer_allowed(fd, why, sizeof(why))) {
            log_refusal(why);
            refuse(fd, "permission_denied", why);
            h2o_socket_close(sock);
            continue;
        }
        if (control.num_conns >= MAX_CONTROL_CONNECTIONS) {
            refuse(fd, "busy", "too many control connections at once");
            h2o_socket_close(sock);
            continue;
        }
        control_conn_t *conn = h2p_calloc(1, sizeof(*conn));
        conn->sock = sock;
        conn->idle.cb = on_idle;
        sock->data = conn;
        h2o_linklist_insert(&control.conns, &conn->link);
        control.num_conns++;
        touch(conn);
        h2o_socket_read_start(sock, on_readable);
    }
}

void h2p_control_check_reload(const h2p_server_conf_t *next)
{
    const char *running = control.path[0] != '\0' ? control.path : NULL;
    if ((running == NULL) != (next->control_socket == NULL) || (running != NULL && strcmp(running, next->control_socket) != 0))
        h2p_warn(NULL, "server.control_socket changed: it applies at the next start (still %s)", running != NULL ? running : "off");
}

void h2p_control_start(h2o_evloop_t *loop, h2p_control_reload_cb reload)
{
    if (control.fd < 0)
        return;
    control.loop = loop;
    control.reload = reload;
    h2o_linklist_init_anchor(&control.conns);
    h2o_timeout_init(loop, &control.idle_timeout, CONTROL_IDLE_TIMEOUT_MS);
    control.listener = h2o_evloop_socket_create(loop, control.fd, H2O_SOCKET_FLAG_DONT_READ);
    h2o_socket_read_start(control.listener, on_accept);
    h2p_notice(NULL, "control socket %s (h2pool ctl)", control.path);
}

void h2p_control_stop(void)
{
    if (control.listener != NULL) {
        h2o_socket_read_stop(control.listener);
        h2o_socket_close(control.listener);
        control.listener = NULL;
        while (!h2o_linklist_is_empty(&control.conns))
            close_conn(H2O_STRUCT_FROM_MEMBER(control_conn_t, link, control.conns.next));
    } else if (control.fd >= 0) { /* (opened, never served: the start failed) */
        close(control.fd);
    }
    /* (the directory may be root's: then the file stays, and the next start replaces it) */
    if (control.fd >= 0)
        unlink(control.path);
    control.fd = -1;
}

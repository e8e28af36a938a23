/*
 * h2pool: an IIS-style application-hosting front end for FastCGI pools, on libh2o.
 *
 * The main thread is the supervisor: it loads the configuration, forks the privileged part
 * (privsep/privsep.h: the spawner, which keeps the rights h2pool was started with), drops to
 * server.user, opens the listeners (bound by the spawner), starts the front-end threads, and
 * then runs its own event loop for what must never block a front-end loop: signals, asking for
 * workers to be spawned and signalled, their exits, and the pools' timers.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "frontend/config.h"
#include "frontend/control.h"
#include "frontend/counters.h"
#include "frontend/log.h"
#include "frontend/log_writer.h"
#include "frontend/management.h"
#include "frontend/router.h"
#include "frontend/server.h"
#include "frontend/status.h"
#include "frontend/tls.h"
#include "native-modules/credfile.h"
#include "native-modules/crypt_pool.h"
#include "poolmgr/pool.h"
#include "privsep/privsep.h"

#define SHUTDOWN_GRACE_MS 30000

static const char usage[] = "usage: h2pool [-t] -c DIR\n"
                            "       h2pool ctl [-c DIR] [--json] COMMAND   (h2pool ctl -h for its commands)\n"
                            "  -c, --conf DIR   read the configuration from DIR/*.yaml (default /etc/h2pool/conf.d)\n"
                            "  -t, --test       validate the configuration, print `configuration OK` or the errors, exit\n"
                            "  -v, --version    print the version and exit\n"
                            "  -h, --help       print this help and exit\n";

#define RELOAD_DEBOUNCE_MS 200

#ifdef __SANITIZE_ADDRESS__
/* libh2o keeps freed buffers and memory-pool chunks in per-thread recycle lists that it never
 * empties; they die with the front-end threads at shutdown and are not h2pool's leaks.  FastCGI's
 * per-duration timeouts stay linked into their loop for the thread's life; once the thread has
 * exited, the loop's list reaches them only through thread-local timeouts (CGI's, FastCGI's
 * client watch) whose storage went with the thread, so LeakSanitizer cannot follow it. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:h2o_mem_alloc_recycle\nleak:timeout_for\n";
}
#endif

static int stop_requested;
static const char *conf_dir;
static h2p_config_t *current_conf;
static h2o_timeout_t debounce_timeout;
static h2o_timeout_entry_t debounce_entry;
static int conf_watch_fd = -1; /* inotify on conf.d (-1: not watched) */
static h2o_evloop_t *supervisor_loop;

static void print_errors(h2p_config_errors_t *errors);

/* A reason a reload was refused: to the error log, and to `h2pool ctl reload` when it asked. */
static void reload_error(json_t *errors, const char *message)
{
    h2p_error(NULL, "%s", message);
    if (errors != NULL)
        json_array_append_new(errors, h2p_json_bytes(message, strlen(message)));
}

/* Reads the watch's queued events: 1 if there were any. */
static int read_conf_events(int fd)
{
    char events[4096];
    int any = 0;
    while (read(fd, events, sizeof(events)) > 0)
        any = 1;
    return any;
}

/* Every change made to conf.d until now is read by the reload about to run: the events already
 * queued, and a debounced reload they started, would only repeat it later (a refused reload, say,
 * retried once what refused it has gone, though nobody asked again). */
static void absorb_pending_changes(void)
{
    if (conf_watch_fd >= 0)
        read_conf_events(conf_watch_fd);
    if (h2o_timeout_is_linked(&debounce_entry))
        h2o_timeout_unlink(&debounce_entry);
}

/* How often a reload reads conf.d again when the privileged part read other files than we did. */
#define RELOAD_READS 5

/*
 * A reload validates the whole new configuration first; a broken one changes nothing (its
 * errors go to the error log) and the old one keeps serving.  A valid one becomes a new
 * generation: new requests use it, requests in flight finish on theirs.  0, or -1 when refused
 * (the reasons appended to `errors` unless it is NULL).
 */
static int apply_reload(const char *why, json_t *errors_out)
{
    h2p_config_errors_t errors = {0};
    h2p_config_t *conf = NULL;
    char their[600], refusal[900];
    int their_errors = -1;
    /* The privileged part re-reads conf.d first (it allows what the new configuration names),
     * then we do: a file renamed between the two reads would leave it holding one version and us
     * another, refusing to bind our new addresses or to spawn our new pools.  Both read again
     * until they agree.  What it read stays pending until we commit it (or refuse: reload()). */
    for (int reads = 0; reads != RELOAD_READS; ++reads) {
        if (reads != 0 && their_errors == 0)
            h2p_info(NULL, "reload (%s): the privileged part read conf.d as it was changing: both read it again", why);
        h2p_config_release(conf);
        h2p_config_errors_clear(&errors);
        their_errors = h2p_privsep_reload(their, sizeof(their));
        conf = h2p_config_load(conf_dir, 1, &errors);
        if (conf == NULL || their_errors < 0 || (their_errors == 0 && strcmp(their, conf->digest) == 0))
            break;
    }
    if (conf != NULL && their_errors != -1 && (their_errors != 0 || strcmp(their, conf->digest) != 0)) {
        if (their_errors != 0) /* (checks only root can make: a key only it can read, say) */
            snprintf(refusal, sizeof(refusal),
                     "reload (%s) refused: the privileged part cannot load it (%d error(s); the first: %s); the running "
                     "configuration keeps serving",
                     why, their_errors, their);
        else
            snprintf(refusal, sizeof(refusal),
                     "reload (%s) refused: conf.d changed while it was read, %d times; the running configuration keeps serving",
                     why, RELOAD_READS);
        reload_error(errors_out, refusal);
        h2p_config_release(conf);
        return -1;
    }
    if (conf == NULL) {
        h2p_error(NULL, "reload (%s) refused: %zu error(s); the running configuration keeps serving", why, errors.count);
        for (size_t i = 0; i != errors.count; ++i)
            reload_error(errors_out, errors.messages[i]);
        h2p_config_errors_clear(&errors);
        return -1;
    }
    char err[512], message[600];
    if (h2p_server_open_listeners(conf, err, sizeof(err)) != 0) {
        snprintf(message, sizeof(message), "reload (%s) refused: %s; the running configuration keeps serving", why, err);
        reload_error(errors_out, message);
        h2p_config_release(conf);
        return -1;
    }
    h2p_gen_t *gen = h2p_gen_create(conf, err, sizeof(err));
    if (gen == NULL) {
        snprintf(message, sizeof(message), "reload (%s) refused: %s; the running configuration keeps serving", why, err);
        reload_error(errors_out, message);
        h2p_server_commit_listeners(current_conf); /* closes what this attempt opened */
        h2p_config_release(conf);
        return -1;
    }
    /* it will be served: the spawner takes it too (spawns and CGI scripts by it from now on) */
    h2p_privsep_commit(conf->digest);
    h2p_management_check_reload(&conf->server);
    h2p_control_check_reload(&conf->server);
    h2p_server_apply_limits(&conf->server);
    h2p_server_swap_generation(gen);
    h2p_server_commit_listeners(conf);
    h2p_poolmgr_apply(conf);
    h2p_gen_release(gen);
    h2p_config_release(current_conf);
    current_conf = conf;
    h2p_notice(NULL, "configuration reloaded (%s): generation %llu, %zu sites, %zu pools", why,
               (unsigned long long)conf->generation, conf->num_sites, conf->num_pools);
    return 0;
}

static int reload(const char *why, json_t *errors_out)
{
    absorb_pending_changes();
    int ret = apply_reload(why, errors_out);
    if (ret != 0)
        h2p_privsep_commit(""); /* what the privileged part read is dropped: it keeps the running one */
    return ret;
}

/* Our only child is the spawner: workers and CGI scripts are its children (their exits come
 * over the event channel).  Without it nothing can be started any more, and what it ran died
 * with it. */
static void on_child_exit(void)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid == h2p_privsep_spawner_pid()) {
            h2p_error(NULL, "the privileged part (spawner %d) exited: stopping", (int)pid);
            h2p_log_writer_stop();
            h2p_log_close();
            _exit(1);
        }
    }
}

static void on_spawner_event(h2o_socket_t *sock, const char *err)
{
    h2p_privsep_read_events(h2p_poolmgr_on_exit);
}

/* The signalfd and inotify sockets are read here, not by libh2o (H2O_SOCKET_FLAG_DONT_READ):
 * their reads must be whole records, which a byte-stream buffer does not guarantee. */
static void on_signal_readable(h2o_socket_t *sock, const char *err)
{
    struct signalfd_siginfo infos[16];
    ssize_t r;
    while ((r = read(h2o_socket_get_fd(sock), infos, sizeof(infos))) > 0) {
        for (size_t i = 0; i != (size_t)r / sizeof(infos[0]); ++i) {
            switch (infos[i].ssi_signo) {
            case SIGTERM:
            case SIGINT:
                stop_requested = 1;
                break;
            case SIGCHLD:
                on_child_exit();
                break;
            case SIGHUP:
                reload("SIGHUP", NULL);
                break;
            case SIGUSR1: /* logrotate moved the access logs: reopen them, as nginx does */
                h2p_log_writer_reopen();
                break;
            }
        }
    }
}

static void on_debounced_change(h2o_timeout_entry_t *entry)
{
    reload("conf.d changed", NULL);
}

/* inotify: writes, renames, and the ConfigMap pattern (a `..data` symlink swapped by rename) */
static void on_conf_dir_event(h2o_socket_t *sock, const char *err)
{
    /* (nothing left: a reload that ran in this turn of the loop took the events, and read the change) */
    if (read_conf_events(h2o_socket_get_fd(sock)) && !h2o_timeout_is_linked(&debounce_entry))
        h2o_timeout_link(supervisor_loop, &debounce_timeout, &debounce_entry);
}

static void print_errors(h2p_config_errors_t *errors)
{
    for (size_t i = 0; i != errors->count; ++i)
        fprintf(stderr, "%s\n", errors->messages[i]);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"conf", required_argument, NULL, 'c'},
                                             {"test", no_argument, NULL, 't'},
                                             {"version", no_argument, NULL, 'v'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL}};
    if (argc >= 2 && strcmp(argv[1], "ctl") == 0)
        return h2p_ctl_main(argc - 1, argv + 1);
    conf_dir = "/etc/h2pool/conf.d";
    int test_only = 0, ch;
    while ((ch = getopt_long(argc, argv, "c:tvh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            conf_dir = optarg;
            break;
        case 't':
            test_only = 1;
            break;
        case 'v':
            printf("h2pool %s (libh2o %s)\n", H2POOL_VERSION, H2O_VERSION);
            return 0;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (optind != argc) {
        fputs(usage, stderr);
        return 2;
    }

    /* watched before it is read: a change made while h2pool starts is not missed */
    int ifd = -1, watch_errno = 0;
    if (!test_only && ((ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0 ||
                       inotify_add_watch(ifd, conf_dir,
                                         IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB |
                                             IN_DONT_FOLLOW) < 0)) {
        watch_errno = errno;
        if (ifd >= 0)
            close(ifd);
        ifd = -1;
    }
    h2p_config_errors_t errors = {0};
    h2p_config_t *conf = h2p_config_load(conf_dir, 1, &errors);
    if (conf == NULL) {
        print_errors(&errors);
        h2p_config_errors_clear(&errors);
        return 1;
    }
    if (test_only) {
        /* the loader has read and checked every file the start would (certificates and keys,
           users and groups files, error pages, the error log's place): nothing more to try */
        printf("configuration OK\n");
        h2p_config_release(conf);
        return 0;
    }

    /* before any thread exists (the error log has one): the spawner forks from a single thread */
    if (h2p_privsep_start(conf_dir, conf) != 0) {
        fprintf(stderr, "cannot start the privileged part: %m\n");
        h2p_config_release(conf);
        return 1;
    }

    /* every thread inherits this mask: signals arrive only through the supervisor's signalfd */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    sigaddset(&signals, SIGUSR1);
    sigaddset(&signals, SIGCHLD);
    sigprocmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (h2p_log_open(conf->server.error_log) != 0) {
        fprintf(stderr, "cannot open error log %s: %m\n", conf->server.error_log);
        return 1;
    }
    /* the logs, the management listener and the control socket are opened with the rights h2pool
     * was started with; from here on, the front end has server.user's (the access log
     * directories are made that user's first) */
    h2p_log_writer_prepare_dirs(conf);
    char err[512];
    if (h2p_management_open(&conf->server, err, sizeof(err)) != 0 || h2p_control_open(&conf->server, err, sizeof(err)) != 0) {
        h2p_error(NULL, "%s", err);
        goto Fail;
    }
    if (h2p_privsep_drop_privileges(&conf->server, err, sizeof(err)) != 0) {
        h2p_error(NULL, "%s", err);
        goto Fail;
    }
    if (h2p_log_writer_start() != 0) {
        h2p_error(NULL, "cannot start the access log writer: %s", strerror(errno));
        goto Fail;
    }
    h2o_evloop_t *loop = supervisor_loop = h2o_evloop_create();
    h2o_socket_t *spawner_events = h2o_evloop_socket_create(loop, h2p_privsep_event_fd(), H2O_SOCKET_FLAG_DONT_READ);
    h2o_socket_read_start(spawner_events, on_spawner_event);
    if (h2p_poolmgr_init(loop) != 0 || h2p_server_init(conf) != 0)
        goto Fail;
    h2p_counters_init();
    h2p_status_init();
    h2p_gen_t *gen = h2p_gen_create(conf, err, sizeof(err));
    if (gen == NULL) {
        h2p_error(NULL, "%s", err);
        goto Fail;
    }
    h2p_poolmgr_start(conf);
    h2p_server_start(gen);
    h2p_gen_release(gen);
    h2p_counters_start_sampling(loop);
    h2p_management_start(loop);
    h2p_control_start(loop, reload);
    for (size_t i = 0; i != h2p_server.num_listeners; ++i)
        h2p_notice(NULL, "listening on %s", h2p_server.listeners[i]->name);
    h2p_notice(NULL, "h2pool %s started: %zu threads, %zu sites, %zu pools", H2POOL_VERSION, h2p_server.num_threads,
               conf->num_sites, conf->num_pools);

    int sfd = signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
    h2o_socket_t *sigsock = h2o_evloop_socket_create(loop, sfd, H2O_SOCKET_FLAG_DONT_READ);
    h2o_socket_read_start(sigsock, on_signal_readable);
    current_conf = h2p_config_retain(conf);
    h2o_timeout_init(loop, &debounce_timeout, RELOAD_DEBOUNCE_MS);
    debounce_entry.cb = on_debounced_change;
    h2o_socket_t *isock = NULL;
    if (ifd < 0) {
        h2p_warn(NULL, "cannot watch %s for changes (%s): reload with SIGHUP", conf_dir, strerror(watch_errno));
    } else {
        conf_watch_fd = ifd;
        isock = h2o_evloop_socket_create(loop, ifd, H2O_SOCKET_FLAG_DONT_READ);
        h2o_socket_read_start(isock, on_conf_dir_event);
    }
    while (!stop_requested)
        h2o_evloop_run(loop, INT32_MAX);

    h2p_notice(NULL, "shutting down: no new connections; waiting for requests in flight");
    h2p_control_stop();
    h2p_management_stop();
    h2p_counters_stop_sampling();
    if (h2p_server_stop(SHUTDOWN_GRACE_MS) == 0)
        h2p_poolmgr_front_end_stopped();
    h2p_poolmgr_shutdown(loop); /* waits for the workers' exits: the spawner's events close after it */
    if (isock != NULL) {
        conf_watch_fd = -1;
        h2o_socket_close(isock);
    }
    h2o_socket_close(sigsock);
    h2o_socket_close(spawner_events);
    h2p_privsep_stop();      /* it kills what it still runs (CGI scripts) and exits */
    h2o_evloop_run(loop, 0); /* frees the closed sockets */
    h2p_crypt_pool_stop();
    h2p_credfile_stop_watching();
    h2p_log_writer_stop(); /* every request is disposed: their lines are written */
    h2p_notice(NULL, "stopped");
    h2p_log_close();
    h2p_config_release(current_conf);
    h2p_config_release(conf);
    return 0;

Fail:
    h2p_control_stop();
    h2p_credfile_stop_watching();
    h2p_log_writer_stop();
    h2p_log_close();
    h2p_config_release(conf);
    return 1;
}

/*
 * Privilege separation (ARCHITECTURE.md, "Process model").
 *
 * h2pool runs as two processes.  The front end (the process started, which drops to
 * server.user / server.group when started as root) accepts, speaks HTTP and TLS, runs the module
 * pipeline, serves static files and runs the pool manager.  The spawner, a child forked before
 * any thread exists, keeps the rights h2pool was started with and does only what needs them:
 * binding listening sockets, opening certificates and keys, and starting, signalling and reaping
 * pool workers and CGI scripts under their own identities.  It never parses HTTP.
 *
 * The two talk over SOCK_SEQPACKET socketpairs (one message per request, descriptors passed with
 * SCM_RIGHTS):
 *   - the command channel: the front end's main thread asks and waits for the answer;
 *   - the event channel: the spawner reports exits (pid, wait status) and log lines;
 *   - a CGI channel per front-end thread that runs CGI, answered asynchronously on its loop.
 * The spawner decides from a configuration it loaded itself (as root, from the same -c
 * directory, re-read when the front end reloads): it spawns only pools that configuration
 * names, as their user; CGI only for files beneath the root of a site or application that maps
 * `cgi: true`, as nobody; it binds only addresses its bindings list, and opens only the
 * certificates, keys and client CAs it names.  It signals only processes it spawned and has not
 * yet reaped.  The spawner dies with the front end (PR_SET_PDEATHSIG, and EOF on the command
 * channel), after killing its workers' process groups (a php-cgi master's children), the
 * workers and scripts with the spawner.
 */
#ifndef H2POOL_PRIVSEP_H
#define H2POOL_PRIVSEP_H

#include <h2o.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "frontend/config.h"

/* ---- the wire format (both processes are the same binary) ------------------------------ */

enum {
    H2P_PS_SPAWN_WORKER = 1, /* payload: pool name; fds: listening socket, output; answer: pid, exec errno */
    H2P_PS_KILL,             /* pid (a worker's process group), value: signal; no answer */
    H2P_PS_BIND,             /* payload: sockaddr; fd: the socket; answer: errno */
    H2P_PS_OPEN_FILE,        /* payload: path; answer: errno, fd */
    H2P_PS_RELOAD,           /* answer: 0 and the digest of the configuration read (pending until H2P_PS_COMMIT),
                                or the number of errors and the first one */
    H2P_PS_CGI_CHANNEL,      /* fd: a front-end thread's CGI channel; no answer */
    H2P_PS_SPAWN_CGI,        /* (CGI channel) cookie; payload: path NUL env NUL env...; fds: stdin, stdout, stderr;
                                answer (H2P_PS_CGI_SPAWNED): cookie, pid or 0 and errno */
    H2P_PS_KILL_CGI,         /* (CGI channel) cookie, value: signal; no answer */
    H2P_PS_CGI_SPAWNED,
    H2P_PS_ANSWER,
    H2P_PS_EXITED,    /* (event channel) pid, value: wait status */
    H2P_PS_LOG,       /* (event channel) value: level; payload: the message */
    H2P_PS_KILL_PEER, /* pid: a php-cgi master; cookie: a unix socket's inode; value: signal; fd: our end of
                         the connection, closed after.  The master's child holding that socket is
                         signalled; no answer */
    H2P_PS_COMMIT     /* payload: a digest: the pending configuration becomes the spawner's if it is that
                         one (the front end serves it from now on), else ("") it is dropped; answer */
};

typedef struct h2p_ps_msg {
    uint32_t type;
    int32_t value; /* a signal, an errno, a wait status or a log level */
    int64_t pid;
    uint64_t cookie;
    int32_t exec_errno;
    uint32_t len; /* payload bytes that follow */
} h2p_ps_msg_t;

#define H2P_PS_MAX_PAYLOAD (160 * 1024) /* a unix SEQPACKET message must fit the default socket buffer */
#define H2P_PS_MAX_FDS 3

/* ---- the front end's side ---------------------------------------------------------------- */

/* Forks the spawner (before any thread exists).  `conf` is the configuration loaded as the user
 * h2pool was started as; the spawner keeps it and re-reads `conf_dir` on reload. */
int h2p_privsep_start(const char *conf_dir, h2p_config_t *conf);
/* When running as root: becomes server.user / server.group for good (-1 and `err` if not). */
int h2p_privsep_drop_privileges(const h2p_server_conf_t *server, char *err, size_t errlen);
pid_t h2p_privsep_spawner_pid(void);
/* The event channel (read by the supervisor loop), and what reading it reports. */
int h2p_privsep_event_fd(void);
void h2p_privsep_read_events(void (*on_exit)(pid_t pid, int status));
/* Before the front end reloads: the spawner re-reads the configuration and keeps it pending
 * (binds and files it names are allowed meanwhile, as the old one's are).  Returns the number of
 * errors its load found, -1 if none answered.  `text` gets the digest of the configuration read
 * (h2p_config_t.digest), or its first error ("" without a spawner, or no answer). */
int h2p_privsep_reload(char *text, size_t textlen);
/* The reload is served: the pending configuration of that digest becomes the spawner's (it
 * spawns pools and allows CGI scripts by it).  "": refused, the pending one is dropped. */
void h2p_privsep_commit(const char *digest);
/* Stops the spawner (it kills what it still runs) and waits for it.  The event channel is the
 * caller's to close (its loop's socket owns it). */
void h2p_privsep_stop(void);

/* Main thread only; without a spawner (`h2pool -t`), they do it themselves. */
int h2p_privsep_bind(int fd, const struct sockaddr *addr, socklen_t addrlen);
/* The whole file, malloc()ed (free it); -1 and `err` on failure. */
int h2p_privsep_read_file(const char *path, char **data, size_t *len, char *err, size_t errlen);
/* Starts a worker of `pool`: its pid, or -1 and `err`.  *exec_errno: why the exec failed (0: it did not). */
pid_t h2p_privsep_spawn_worker(const char *pool, int listen_fd, int output_fd, int *exec_errno, char *err, size_t errlen);
/* Signals the process group of a worker this spawner started (and has not reaped); any thread. */
void h2p_privsep_kill(pid_t pid, int sig);
/* Signals the child of `master` (a worker this spawner started) that holds the unix socket whose
 * inode is `inode` (the peer of our connection `conn_fd` to the master's socket); any thread.
 * The spawner gets a copy of `conn_fd` (-1: none) and closes it only once the child is signalled,
 * so the caller may close its own at once: the child never sees the connection end before the
 * signal (an idle php-cgi child would go and accept another connection). */
void h2p_privsep_kill_socket_holder(pid_t master, uint64_t inode, int sig, int conn_fd);

/* The children of `pid` (at most `max` of them, from /proc/<pid>/task/<pid>/children): their
 * number, or -1 and errno (a kernel without CONFIG_PROC_CHILDREN, /proc with hidepid, pid gone). */
ssize_t h2p_proc_children(pid_t pid, pid_t *kids, size_t max);

/* CGI, from a front-end thread: asynchronous, over that thread's own channel, answered on its
 * loop (cb(data, cookie, pid or 0, errno or 0)).  `cookie` names the script in the answer and in
 * h2p_privsep_kill_cgi.  A channel is created when the thread starts (h2p_privsep_cgi_channel_create,
 * on that thread) and disposed when it leaves its loop, before the loop's last runs. */
typedef struct h2p_privsep_cgi_channel h2p_privsep_cgi_channel_t;
typedef void (*h2p_privsep_cgi_cb)(void *data, uint64_t cookie, pid_t pid, int err);
h2p_privsep_cgi_channel_t *h2p_privsep_cgi_channel_create(h2o_loop_t *loop, h2p_privsep_cgi_cb cb, void *data);
void h2p_privsep_cgi_channel_dispose(h2p_privsep_cgi_channel_t *channel);
uint64_t h2p_privsep_new_cookie(void);
/* 0, or -1 when the request cannot even be sent. */
int h2p_privsep_spawn_cgi(h2p_privsep_cgi_channel_t *channel, uint64_t cookie, const char *path, char **envp, int in, int out,
                          int err);
void h2p_privsep_kill_cgi(h2p_privsep_cgi_channel_t *channel, uint64_t cookie, int sig);

/* ---- the spawner (privsep/spawner.c) ------------------------------------------------------ */

/* The spawner's main: never returns. */
void h2p_spawner_main(const char *conf_dir, h2p_config_t *conf, int command_fd, int event_fd, pid_t front_end)
    __attribute__((noreturn));

/* Messages over a channel: -1 and errno on failure; 0 on EOF for receive. */
int h2p_ps_send(int fd, const h2p_ps_msg_t *msg, const void *payload, const int *fds, size_t num_fds, int flags);
ssize_t h2p_ps_recv(int fd, h2p_ps_msg_t *msg, void *payload, size_t max, int *fds, size_t *num_fds, int flags);

#endif

/*
 * The front end's process-wide state: listeners, event-loop threads, and the configuration
 * generation each thread serves.
 *
 * Listeners are opened once per (scheme, address, port) in the main thread before any thread
 * starts (so "started" means "listening").  A listener is ONE socket, bound without
 * SO_REUSEPORT, that every front-end thread accepts on (through its own dup of the descriptor):
 * the kernel then refuses the port to any other process, in both directions.  A binding whose
 * address a wildcard binding of the same port covers (127.0.0.1:80 beside *:80) has no
 * socket: its connections arrive on the wildcard's socket and are handed to
 * it by their local address (see server.c).
 */
#ifndef H2POOL_SERVER_H
#define H2POOL_SERVER_H

#define H2O_USE_EPOLL 1
#include <h2o.h>
#include <pthread.h>
#include <stdatomic.h>

#include "frontend/config.h"
#include "native-modules/module_index.h"

struct h2p_gen;
struct h2p_request;         /* native-modules/module.h */
struct h2p_pool_thread;     /* poolmgr/pool.h */
struct h2p_fastcgi_thread;  /* handlers/fastcgi.c */
struct h2p_cgi_thread;      /* handlers/cgi.c */
struct h2p_counters_thread; /* frontend/counters.c */
struct h2p_static_cache;    /* handlers/static.c */

typedef struct h2p_listener {
    size_t index;
    h2p_scheme_t scheme;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint16_t port;
    int any_address;
    int *fds;                 /* the listening socket: fds[0], and a dup of it for every other front-end thread */
    struct h2p_listener *via; /* NULL: fds[] is this listener's own socket; else the wildcard listener whose socket
                                 receives this listener's connections (no fds) */
    int active;               /* named by the configuration in force (a removed one keeps its slot for reuse) */
    unsigned epoch;           /* counts openings (of fds[], or under `via`); written by the main thread only */
    unsigned epoch_started;   /* the opening the threads were told to accept on */
    atomic_int open_fds;      /* descriptors of this listener's sockets not closed yet (the threads close theirs) */
    h2o_hostconf_t *router_hostconf;
    char name[80]; /* "https://127.0.0.1:8443" for messages */
    /* h2p_server_open_listeners' scratch: named by the configuration being opened, and which listener's socket serves it */
    int wanted;
    struct h2p_listener *root;
    const h2p_binding_t *binding; /* the first binding naming it, for messages */
} h2p_listener_t;

typedef struct h2p_thread_listener {
    h2p_listener_t *listener;
    h2o_socket_t *sock;              /* own socket: this thread's descriptor of it */
    struct h2p_thread_listener *via; /* covered: the thread listener whose socket accepts its connections */
    size_t num_covered;              /* thread listeners whose `via` is this one */
    unsigned epoch;                  /* of the listener's opening this thread accepts on */
    h2o_accept_ctx_t accept_ctx;
} h2p_thread_listener_t;

/* A loop's requests by their h2o_req_t (frontend/router.c: h2p_request_of), open addressing. */
typedef struct h2p_request_map {
    h2o_req_t **keys;
    struct h2p_request **values;
    size_t cap, count;
} h2p_request_map_t;

/*
 * A front-end thread: its per-thread state lives here, not in __thread variables of the files
 * that use it (the log writer's buffer pointer is the exception, frontend/log_writer.c says
 * why).  The members below are each owned by the part named, set up on the thread when its
 * loop starts and disposed when it ends (thread_main in server.c).
 */
typedef struct h2p_thread {
    size_t index;
    pthread_t tid;
    h2o_evloop_t *loop;
    h2o_context_t ctx;
    struct h2p_gen *gen;               /* the generation new requests on this thread use */
    h2p_thread_listener_t **listeners; /* by listener index; never freed: pending handshakes point in */
    size_t num_listeners;
    h2o_multithread_queue_t *queue;
    h2o_multithread_receiver_t control; /* shutdown / generation swap */
    size_t requests_in_flight;          /* and password checks not back yet: the loop waits for both */
    int shutting_down;
    h2o_linklist_t watched;                /* client connections (frontend/conn_watch.c) */
    h2o_timeout_entry_t watch_tick;        /* once a second: their request timeouts */
    h2o_linklist_t rewatch;                /* connections whose reads conn_watch watches anew ... */
    h2o_timeout_entry_t rewatch_soon;      /* ... on the next turn of the loop */
    uint64_t refused_413_seen;             /* libh2o's count of 413s, as conn_watch last logged them */
    h2p_request_map_t requests;            /* frontend/router.c */
    struct h2p_counters_thread *counters;  /* frontend/counters.c: requests in flight, the supervisor's questions */
    struct h2p_pool_thread *pool;          /* poolmgr: hand-overs to this thread, kept connections to close */
    struct h2p_fastcgi_thread *fastcgi;    /* handlers/fastcgi.c: its timeouts */
    struct h2p_cgi_thread *cgi;            /* handlers/cgi.c: its timeouts, scripts starting, the spawner's channel */
    struct h2p_static_cache *static_cache; /* handlers/static.c: this loop iteration's open static files */

    /* each native module's state on this thread, made by its init_thread (native-modules/module.h) */
    void *module_thread[H2P_NUM_MODULES];
} h2p_thread_t;

typedef struct h2p_server {
    h2o_globalconf_t globalconf; /* limits and the listeners' router hostconfs; lives as long as the process */
    h2p_listener_t **listeners;
    size_t num_listeners;
    h2p_thread_t *threads;
    size_t num_threads;
    atomic_size_t num_connections;
    size_t max_connections;
    struct h2p_gen *gen; /* current generation (main thread's reference) */
    pthread_mutex_t gen_lock;
} h2p_server_t;

extern h2p_server_t h2p_server;
extern __thread h2p_thread_t *h2p_this_thread;

/* Opens the listeners named by `conf` and sets the limits; errors are logged, -1 returned. */
int h2p_server_init(h2p_config_t *conf);
/* Starts `num_threads` front-end loops serving `gen`. */
int h2p_server_start(struct h2p_gen *gen);
/* Stops accepting, lets requests in flight finish (bounded by `grace_ms`), joins the threads. */
int h2p_server_stop(uint64_t grace_ms); /* 0: every thread has exited */

h2p_listener_t *h2p_server_find_listener(h2p_scheme_t scheme, const struct sockaddr_storage *addr, uint16_t port);

/*
 * Reload, in three steps: open the listeners `conf` adds (nothing changes if one cannot be
 * opened: -1 and `err`), swap the generation in, then let the threads accept on the new ones
 * and close the ones `conf` no longer names.  Unchanged listeners keep their sockets.
 */
int h2p_server_open_listeners(h2p_config_t *conf, char *err, size_t errlen);
void h2p_server_commit_listeners(h2p_config_t *conf);
void h2p_server_apply_limits(const h2p_server_conf_t *server);

#endif

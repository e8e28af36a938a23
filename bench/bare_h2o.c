/*
 * bare_h2o: the benchmark's yardstick for the output cache, a libh2o server (the same
 * libh2o-evloop h2pool links) whose one handler answers every request with a constant body.
 * h2pool's cached FastCGI hit is measured against it: the gap is what h2pool does per request
 * beyond libh2o itself (router, modules, the cache's lookup).
 *
 * usage: bare_h2o PORT [THREADS [BODY_SIZE]]
 *        THREADS event loops (default 2, h2pool's default), each with its own listening socket
 *        on 127.0.0.1:PORT (SO_REUSEPORT, as h2pool's threads); BODY_SIZE bytes of text/plain
 *        (default 19, the size of tests/apps/hello_fcgi's answer).
 */
#include <h2o.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static h2o_globalconf_t config;
static h2o_iovec_t body;
static int port;

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    static h2o_generator_t generator = {NULL, NULL};
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = body.len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/plain"));
    h2o_start_response(req, &generator);
    h2o_iovec_t buf = body;
    h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
    return 0;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    if (err != NULL)
        return;
    h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
    if (sock != NULL)
        h2o_accept(listener->data, sock);
}

static int open_listener(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), on = 1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd == -1 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 || bind(fd, (void *)&addr, sizeof(addr)) != 0 ||
        listen(fd, 4096) != 0) {
        perror("bare_h2o: listen");
        exit(1);
    }
    return fd;
}

static void *run_loop(void *arg)
{
    h2o_evloop_t *loop = h2o_evloop_create();
    h2o_context_t ctx;
    h2o_context_init(&ctx, loop, &config);
    h2o_accept_ctx_t accept_ctx = {.ctx = &ctx, .hosts = config.hosts};
    h2o_socket_t *listener = h2o_evloop_socket_create(loop, open_listener(), H2O_SOCKET_FLAG_DONT_READ);
    listener->data = &accept_ctx;
    h2o_socket_read_start(listener, on_accept);
    while (h2o_evloop_run(loop, INT32_MAX) == 0)
        ;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT [THREADS [BODY_SIZE]]\n", argv[0]);
        return 2;
    }
    port = atoi(argv[1]);
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    size_t body_size = argc > 3 ? (size_t)atol(argv[3]) : 19;
    body = h2o_iovec_init(malloc(body_size), body_size);
    memset(body.base, 'x', body_size);
    if (body_size != 0)
        body.base[body_size - 1] = '\n';

    h2o_config_init(&config);
    h2o_hostconf_t *hostconf = h2o_config_register_host(&config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pathconf = h2o_config_register_path(hostconf, "/", 0);
    h2o_create_handler(pathconf, sizeof(h2o_handler_t))->on_req = on_req;

    for (int i = 1; i < threads; ++i) {
        pthread_t tid;
        pthread_create(&tid, NULL, run_loop, NULL);
    }
    run_loop(NULL);
    return 0;
}

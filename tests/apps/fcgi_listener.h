/*
 * The listening socket of a libfcgi test app: fd 0 (FCGI_LISTENSOCK_FILENO) when a web server
 * spawned it, or with `APP SOCKETPATH NPROC` a unix socket it opens itself (backlog 4096), served
 * by NPROC forked processes.
 */
#ifndef H2POOL_TEST_FCGI_LISTENER_H
#define H2POOL_TEST_FCGI_LISTENER_H

#include <fcgiapp.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int open_listener(int argc, char **argv)
{
    if (argc != 3)
        return 0; /* FCGI_LISTENSOCK_FILENO */
    unlink(argv[1]);
    int fd = FCGX_OpenSocket(argv[1], 4096);
    if (fd < 0) {
        perror("listen");
        exit(1);
    }
    for (int i = 1; i < atoi(argv[2]); i++)
        if (fork() == 0)
            break;
    return fd;
}

#endif

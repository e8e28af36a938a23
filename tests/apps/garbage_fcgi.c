/*
 * garbage_fcgi: a worker that breaks the FastCGI protocol, to prove the front end survives
 * anything a worker sends.  It speaks the protocol by hand (no libfcgi): it reads one request
 * (records up to the empty STDIN record; after 5 s of silence mid-request it answers anyway),
 * then answers according to the GARBAGE_MODE environment variable:
 *
 *     version       (default) a STDOUT and an END_REQUEST record with version 9; keeps the
 *                   connection open (and answers any further request the same way)
 *     truncated     a STDOUT header announcing 100 bytes, then 50 of them, then closes
 *     headers       well-formed records whose STDOUT is a head with a line without a colon,
 *                   then END_REQUEST; keeps the connection open
 *     huge-headers  200 KiB of header lines without a blank line in well-formed STDOUT records,
 *                   then END_REQUEST; keeps the connection open
 *     random        4 KiB of pseudo-random bytes (fixed seed); keeps the connection open
 *
 * usage: garbage_fcgi                    accept on fd 0 (spawned by a web server)
 *        garbage_fcgi SOCKETPATH NPROC   listen on a unix socket itself, NPROC processes
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "write_all.h"

enum { BEGIN_REQUEST = 1, END_REQUEST = 3, STDIN = 5, STDOUT = 6 };

static int open_listener(int argc, char **argv)
{
    if (argc != 3)
        return 0; /* FCGI_LISTENSOCK_FILENO */
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(argv[1]) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "socket path too long\n");
        exit(1);
    }
    strcpy(sa.sun_path, argv[1]);
    unlink(argv[1]);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 4096) != 0) {
        perror("listen");
        exit(1);
    }
    for (int i = 1; i < atoi(argv[2]); i++)
        if (fork() == 0)
            break;
    return fd;
}

/* Reads exactly len bytes, waiting at most timeout_ms (-1: forever) for each piece; 0 on success. */
static int read_full(int fd, void *dst, size_t len, int timeout_ms)
{
    char *p = dst;
    while (len != 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, timeout_ms) <= 0)
            return -1;
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= n;
    }
    return 0;
}

/* Reads one request's records up to the empty STDIN record.  Waits for the first record as long
 * as the front end keeps the connection, then at most 5 s for each further piece.  Returns -1
 * when the connection is gone before a record arrived, 0 otherwise (after a timeout too: answer
 * anyway). */
static int read_request(int fd, unsigned *request_id)
{
    unsigned char header[8];
    static char scratch[65535 + 255];
    for (int first = 1;; first = 0) {
        if (read_full(fd, header, sizeof(header), first ? -1 : 5000) != 0)
            return first ? -1 : 0;
        size_t content_length = (header[4] << 8) | header[5];
        if (read_full(fd, scratch, content_length + header[6], 5000) != 0)
            return 0;
        if (header[1] == BEGIN_REQUEST)
            *request_id = (header[2] << 8) | header[3];
        if (header[1] == STDIN && content_length == 0)
            return 0;
    }
}

static void write_record(int fd, int version, int type, unsigned request_id, const char *data, size_t len)
{
    unsigned char padding = (unsigned char)(-len & 7);
    unsigned char header[8] = {version, type, request_id >> 8, request_id & 0xff, len >> 8, len & 0xff, padding, 0};
    static const char zeros[8];
    write_all(fd, header, sizeof(header));
    write_all(fd, data, len);
    write_all(fd, zeros, padding);
}

/* STDOUT records for data, the empty STDOUT record and END_REQUEST (app status 0). */
static void write_response(int fd, unsigned request_id, const char *data, size_t len)
{
    for (size_t off = 0; off < len; off += 65535)
        write_record(fd, 1, STDOUT, request_id, data + off, len - off < 65535 ? len - off : 65535);
    write_record(fd, 1, STDOUT, request_id, "", 0);
    write_record(fd, 1, END_REQUEST, request_id, "\0\0\0\0\0\0\0\0", 8);
}

/* Answers one request; returns 0 to keep the connection open, -1 to close it. */
static int answer(int fd, const char *mode, unsigned request_id)
{
    if (strcmp(mode, "truncated") == 0) {
        unsigned char header[8] = {1, STDOUT, request_id >> 8, request_id & 0xff, 0, 100, 4, 0};
        write_all(fd, header, sizeof(header));
        write_all(fd, "Content-Type: text/plain\r\n\r\nthis record is cut sho", 50);
        return -1;
    }
    if (strcmp(mode, "headers") == 0) {
        static const char head[] = "Content-Type: text/plain\r\nthis line has no colon\r\n\r\nbody\n";
        write_response(fd, request_id, head, sizeof(head) - 1);
        return 0;
    }
    if (strcmp(mode, "huge-headers") == 0) {
        size_t size = 200 * 1024, len = 0;
        char *head = malloc(size + 64);
        for (unsigned i = 0; len < size; i++)
            len += sprintf(head + len, "X-Filler-%06u: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", i);
        write_response(fd, request_id, head, len);
        free(head);
        return 0;
    }
    if (strcmp(mode, "random") == 0) {
        char bytes[4096];
        unsigned state = 12345;
        for (size_t i = 0; i < sizeof(bytes); i++) {
            state = state * 1103515245 + 12345;
            bytes[i] = (char)(state >> 16);
        }
        write_all(fd, bytes, sizeof(bytes));
        return 0;
    }
    /* "version" */
    static const char body[] = "Content-Type: text/plain\r\n\r\nwrong version\n";
    write_record(fd, 9, STDOUT, request_id, body, sizeof(body) - 1);
    write_record(fd, 9, END_REQUEST, request_id, "\0\0\0\0\0\0\0\0", 8);
    return 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    int listen_fd = open_listener(argc, argv);
    const char *mode = getenv("GARBAGE_MODE");
    if (mode == NULL || *mode == '\0')
        mode = "version";

    for (;;) {
        int fd = accept(listen_fd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            perror("accept");
            return 1;
        }
        unsigned request_id = 1;
        while (read_request(fd, &request_id) == 0 && answer(fd, mode, request_id) == 0)
            ;
        close(fd);
    }
}

/*
 * big_fcgi: streams a large body, to test flow control and memory use on the response path.
 *
 *     ?mb=N    body of N MiB (default 10)
 *     ?kb=N    body of N KiB instead
 *
 * The body repeats one 64-byte line (63 characters and "\n"), so byte i of the body is
 * LINE[i % 64]; Content-Length is set.  Writes are 64 KiB FCGX_PutStr calls; the worker
 * stops early when the front end goes away.
 *
 * usage: big_fcgi                    accept on fd 0 (spawned by a web server)
 *        big_fcgi SOCKETPATH NPROC   listen on a unix socket itself, NPROC processes
 */
#include <fcgiapp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fcgi_listener.h"

#define LINE "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-\n"
#define CHUNK_SIZE (64 * 1024)

/* Integer value of key in a query string, or def when absent. */
static long long query_ll(const char *qs, const char *key, long long def)
{
    size_t key_len = strlen(key);
    for (const char *p = qs; p != NULL && *p != '\0';) {
        if (strncmp(p, key, key_len) == 0 && p[key_len] == '=')
            return strtoll(p + key_len + 1, NULL, 10);
        if ((p = strchr(p, '&')) != NULL)
            p++;
    }
    return def;
}

int main(int argc, char **argv)
{
    static char chunk[CHUNK_SIZE];
    _Static_assert(sizeof(LINE) - 1 == 64, "the pattern line is 64 bytes");
    for (size_t i = 0; i < CHUNK_SIZE; i++)
        chunk[i] = LINE[i % 64];

    FCGX_Init();
    FCGX_Request r;
    FCGX_InitRequest(&r, open_listener(argc, argv), 0);
    while (FCGX_Accept_r(&r) >= 0) {
        const char *qs = FCGX_GetParam("QUERY_STRING", r.envp);
        long long kb = query_ll(qs, "kb", -1), size = kb >= 0 ? kb * 1024 : query_ll(qs, "mb", 10) * 1024 * 1024;
        if (size < 0)
            size = 0;
        char head[128];
        snprintf(head, sizeof(head), "Content-Type: text/plain\r\nContent-Length: %lld\r\n\r\n", size);
        FCGX_PutS(head, r.out);
        /* CHUNK_SIZE is a multiple of 64, so every write starts at LINE[0] */
        for (long long left = size; left > 0; left -= CHUNK_SIZE) {
            int n = left < CHUNK_SIZE ? (int)left : CHUNK_SIZE;
            if (FCGX_PutStr(chunk, n, r.out) != n)
                break;
        }
        FCGX_Finish_r(&r);
    }
    return 0;
}

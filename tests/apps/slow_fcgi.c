/*
 * slow_fcgi: answers late, or streams slowly, to test timeouts, queueing and streaming.
 *
 *     ?ms=N        sleep N milliseconds (default 1000), then answer "slept N ms\n"
 *     ?chunks=K    send the head at once, then K lines "tick\n", each flushed on its own,
 *                  sleeping ms between two lines (stops early when the client is gone)
 *
 * usage: slow_fcgi                    accept on fd 0 (spawned by a web server)
 *        slow_fcgi SOCKETPATH NPROC   listen on a unix socket itself, NPROC processes
 */
#include <errno.h>
#include <fcgiapp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fcgi_listener.h"

/* Integer value of key in a query string, or def when absent. */
static long query_long(const char *qs, const char *key, long def)
{
    size_t key_len = strlen(key);
    for (const char *p = qs; p != NULL && *p != '\0';) {
        if (strncmp(p, key, key_len) == 0 && p[key_len] == '=')
            return strtol(p + key_len + 1, NULL, 10);
        if ((p = strchr(p, '&')) != NULL)
            p++;
    }
    return def;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void handle(FCGX_Request *r)
{
    const char *qs = FCGX_GetParam("QUERY_STRING", r->envp);
    long ms = query_long(qs, "ms", 1000), chunks = query_long(qs, "chunks", 0);
    if (ms < 0)
        ms = 0;

    if (chunks <= 0) {
        sleep_ms(ms);
        char body[64];
        snprintf(body, sizeof(body), "slept %ld ms\n", ms);
        FCGX_PutS("Content-Type: text/plain\r\n\r\n", r->out);
        FCGX_PutS(body, r->out);
        return;
    }
    FCGX_PutS("Content-Type: text/plain\r\n\r\n", r->out);
    if (FCGX_FFlush(r->out) != 0)
        return;
    for (long i = 0; i < chunks; i++) {
        if (i != 0)
            sleep_ms(ms);
        FCGX_PutS("tick\n", r->out);
        if (FCGX_FFlush(r->out) != 0)
            return;
    }
}

int main(int argc, char **argv)
{
    FCGX_Init();
    FCGX_Request r;
    FCGX_InitRequest(&r, open_listener(argc, argv), 0);
    while (FCGX_Accept_r(&r) >= 0) {
        handle(&r);
        FCGX_Finish_r(&r);
    }
    return 0;
}

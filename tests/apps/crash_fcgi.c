/*
 * crash_fcgi: dies in the middle of a request, to test how the front end and the pool manager
 * cope with a worker that goes away.
 *
 *     (no "crash" in the query)   answers "ok pid=<pid>\n"
 *     ?crash                      writes half a header line, flushes it, then abort()s
 *     ?crash&exit=N               same, but _exit(N) instead of abort()
 *     ?crash-before               dies (abort, or _exit(N) with exit=N) before writing anything
 *
 * Core dumps are switched off so that crashing in a loop leaves no core files behind.
 *
 * usage: crash_fcgi                    accept on fd 0 (spawned by a web server)
 *        crash_fcgi SOCKETPATH NPROC   listen on a unix socket itself, NPROC processes
 */
#include <fcgiapp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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

static void die(const char *qs)
{
    long code = query_long(qs, "exit", -1);
    if (code >= 0)
        _exit((int)code);
    abort();
}

static void handle(FCGX_Request *r)
{
    const char *qs = FCGX_GetParam("QUERY_STRING", r->envp);
    if (qs == NULL)
        qs = "";
    if (strstr(qs, "crash-before") != NULL)
        die(qs);
    if (strstr(qs, "crash") != NULL) {
        FCGX_PutS("Content-Type: text/pl", r->out);
        FCGX_FFlush(r->out);
        die(qs);
    }
    char body[64];
    snprintf(body, sizeof(body), "ok pid=%d\n", (int)getpid());
    FCGX_PutS("Content-Type: text/plain\r\n\r\n", r->out);
    FCGX_PutS(body, r->out);
}

int main(int argc, char **argv)
{
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);

    FCGX_Init();
    FCGX_Request r;
    FCGX_InitRequest(&r, open_listener(argc, argv), 0);
    while (FCGX_Accept_r(&r) >= 0) {
        handle(&r);
        FCGX_Finish_r(&r);
    }
    return 0;
}

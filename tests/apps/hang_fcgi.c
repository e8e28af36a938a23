/*
 * hang_fcgi: takes a request and never finishes it, to test timeouts and worker recycling.
 *
 *     (default)    never writes anything
 *     ?headers     writes a complete head and "partial\n", flushes, then hangs
 *
 * SIGTERM gets its default action back once the request is taken (libfcgi catches it to end
 * the accept loop, which would not end a hang), so a stop still ends the process at once.
 *
 * usage: hang_fcgi                    accept on fd 0 (spawned by a web server)
 *        hang_fcgi SOCKETPATH NPROC   listen on a unix socket itself, NPROC processes
 */
#include <fcgiapp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fcgi_listener.h"

int main(int argc, char **argv)
{
    FCGX_Init();
    FCGX_Request r;
    FCGX_InitRequest(&r, open_listener(argc, argv), 0);
    if (FCGX_Accept_r(&r) >= 0) {
        signal(SIGTERM, SIG_DFL);
        const char *qs = FCGX_GetParam("QUERY_STRING", r.envp);
        if (qs != NULL && strstr(qs, "headers") != NULL) {
            FCGX_PutS("Content-Type: text/plain\r\n\r\npartial\n", r.out);
            FCGX_FFlush(r.out);
        }
        for (;;)
            pause();
    }
    return 0;
}

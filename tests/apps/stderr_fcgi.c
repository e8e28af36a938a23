/*
 * stderr_fcgi: writes "stderr-marker <pid>" to the FastCGI error stream (FCGI_STDERR records),
 * then answers "ok\n", so tests can check that worker stderr reaches the error log.
 *
 * usage: stderr_fcgi                    accept on fd 0 (spawned by a web server)
 *        stderr_fcgi SOCKETPATH NPROC   listen on a unix socket itself, NPROC processes
 */
#include <fcgiapp.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fcgi_listener.h"

int main(int argc, char **argv)
{
    FCGX_Init();
    FCGX_Request r;
    FCGX_InitRequest(&r, open_listener(argc, argv), 0);
    while (FCGX_Accept_r(&r) >= 0) {
        char line[64];
        snprintf(line, sizeof(line), "stderr-marker %d\n", (int)getpid());
        FCGX_PutS(line, r.err);
        FCGX_PutS("Content-Type: text/plain\r\n\r\nok\n", r.out);
        FCGX_Finish_r(&r);
    }
    return 0;
}

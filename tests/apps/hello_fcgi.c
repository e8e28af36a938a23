/*
 * hello_fcgi: the smallest FastCGI responder; answers every request with a fixed text.
 *
 * usage: hello_fcgi                    accept on fd 0 (spawned by a web server)
 *        hello_fcgi SOCKETPATH NPROC   listen on a unix socket itself, NPROC processes
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
        FCGX_PutS("Content-Type: text/plain\r\n\r\nhello from fastcgi\n", r.out);
        FCGX_Finish_r(&r);
    }
    return 0;
}

/*
 * env_fcgi: answers with its own process environment and identity (not the FastCGI params:
 * echo_fcgi shows those), so tests can check what a pool gives its workers.
 *
 * Response body (text/plain), one line each:
 *     ENV <NAME=value>    every entry of environ, in order
 *     PID=<pid>
 *     UID=<real uid> EUID=<effective uid>
 *     GID=<real gid> EGID=<effective gid>
 *     GROUPS=<supplementary groups, comma-separated>
 *     CWD=<working directory>
 *     STDIN=<what fd 0 is: "socket" or other>
 *
 * usage: env_fcgi                    accept on fd 0 (spawned by a web server)
 *        env_fcgi SOCKETPATH NPROC   listen on a unix socket itself, NPROC processes
 */
#include <fcgiapp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fcgi_listener.h"

extern char **environ;

int main(int argc, char **argv)
{
    /* taken before libfcgi runs: what the pool manager gave us */
    char **env = environ;
    FCGX_Init();
    FCGX_Request r;
    FCGX_InitRequest(&r, open_listener(argc, argv), 0);
    while (FCGX_Accept_r(&r) >= 0) {
        char line[PATH_MAX + 64];
        FCGX_PutS("Content-Type: text/plain\r\n\r\n", r.out);
        for (char **e = env; *e != NULL; e++) {
            FCGX_PutS("ENV ", r.out);
            FCGX_PutS(*e, r.out);
            FCGX_PutS("\n", r.out);
        }
        snprintf(line, sizeof(line), "PID=%d\nUID=%d EUID=%d\nGID=%d EGID=%d\n", (int)getpid(), (int)getuid(), (int)geteuid(),
                 (int)getgid(), (int)getegid());
        FCGX_PutS(line, r.out);
        gid_t groups[64];
        int n = getgroups(64, groups);
        FCGX_PutS("GROUPS=", r.out);
        for (int i = 0; i < n; i++) {
            snprintf(line, sizeof(line), "%s%d", i != 0 ? "," : "", (int)groups[i]);
            FCGX_PutS(line, r.out);
        }
        char cwd[PATH_MAX];
        snprintf(line, sizeof(line), "\nCWD=%s\n", getcwd(cwd, sizeof(cwd)) != NULL ? cwd : "?");
        FCGX_PutS(line, r.out);
        struct stat st;
        FCGX_PutS(fstat(0, &st) == 0 && S_ISSOCK(st.st_mode) ? "STDIN=socket\n" : "STDIN=other\n", r.out);
        FCGX_Finish_r(&r);
    }
    return 0;
}

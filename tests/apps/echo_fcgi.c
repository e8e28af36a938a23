/*
 * echo_fcgi: answers with everything it was given, so tests can see what the front end sent.
 *
 * Response body (text/plain):
 *     NAME=value          one line per FastCGI param, in the order received
 *     PID=<pid>
 *     BODY-LENGTH=<n>
 *                         (blank line)
 *     BODY=<the request body, raw>
 *
 * Query parameters (percent-decoded, written out unchecked so tests can send bad heads too):
 *     status=NNN          adds "Status: NNN"
 *     header=Name:Value   adds "Name:Value" (repeatable)
 *
 * usage: echo_fcgi                    accept on fd 0 (spawned by a web server)
 *        echo_fcgi SOCKETPATH NPROC   listen on a unix socket itself, NPROC processes
 */
#include <fcgiapp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fcgi_listener.h"

static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes src[0..len) into out (NUL-terminated, truncated to size). */
static void url_decode(const char *src, size_t len, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 1 < size; i++) {
        if (src[i] == '%' && i + 2 < len && hex_value(src[i + 1]) >= 0 && hex_value(src[i + 2]) >= 0) {
            out[o++] = (char)(hex_value(src[i + 1]) * 16 + hex_value(src[i + 2]));
            i += 2;
        } else {
            out[o++] = src[i] == '+' ? ' ' : src[i];
        }
    }
    out[o] = '\0';
}

/* Reads the next key=value pair from *qs (advancing it); 0 at the end. */
static int query_next(const char **qs, char *key, size_t key_size, char *value, size_t value_size)
{
    while (**qs == '&')
        ++*qs;
    if (**qs == '\0')
        return 0;
    const char *pair = *qs, *end = strchr(pair, '&');
    if (end == NULL)
        end = pair + strlen(pair);
    const char *eq = memchr(pair, '=', end - pair);
    url_decode(pair, (eq != NULL ? eq : end) - pair, key, key_size);
    if (eq != NULL)
        url_decode(eq + 1, end - eq - 1, value, value_size);
    else
        value[0] = '\0';
    *qs = end;
    return 1;
}

/* Reads the whole request body. */
static char *read_body(FCGX_Stream *in, size_t *len)
{
    size_t cap = 65536;
    char *body = malloc(cap);
    *len = 0;
    for (;;) {
        if (*len == cap)
            body = realloc(body, cap *= 2);
        int n = FCGX_GetStr(body + *len, (int)(cap - *len), in);
        if (n <= 0)
            break;
        *len += n;
    }
    return body;
}

static void handle(FCGX_Request *r)
{
    const char *qs = FCGX_GetParam("QUERY_STRING", r->envp);
    char key[256], value[8192];

    FCGX_PutS("Content-Type: text/plain\r\n", r->out);
    for (const char *q = qs != NULL ? qs : ""; query_next(&q, key, sizeof(key), value, sizeof(value));) {
        if (strcmp(key, "status") == 0) {
            FCGX_PutS("Status: ", r->out);
            FCGX_PutS(value, r->out);
            FCGX_PutS("\r\n", r->out);
        } else if (strcmp(key, "header") == 0) {
            FCGX_PutS(value, r->out);
            FCGX_PutS("\r\n", r->out);
        }
    }
    FCGX_PutS("\r\n", r->out);

    for (char **env = r->envp; *env != NULL; env++) {
        FCGX_PutS(*env, r->out);
        FCGX_PutS("\n", r->out);
    }

    size_t body_len;
    char *body = read_body(r->in, &body_len);
    /* libfcgi's own printf knows no %zu: format here */
    char line[128];
    snprintf(line, sizeof(line), "PID=%d\nBODY-LENGTH=%zu\n\nBODY=", (int)getpid(), body_len);
    FCGX_PutS(line, r->out);
    FCGX_PutStr(body, (int)body_len, r->out);
    free(body);
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

/* Writes all of `src` to `fd` (the raw FastCGI test apps); a front end that hung up is fine. */
#ifndef H2POOL_TEST_WRITE_ALL_H
#define H2POOL_TEST_WRITE_ALL_H

#include <errno.h>
#include <unistd.h>

static void write_all(int fd, const void *src, size_t len)
{
    const char *p = src;
    while (len != 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        p += n;
        len -= n;
    }
}

#endif

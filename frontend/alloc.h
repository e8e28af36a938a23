/*
 * One allocation convention for everything that runs (the configuration loader has its own arena
 * and h2p_cfg_xmalloc): an allocation that fails aborts, as libh2o's h2o_mem_alloc and
 * h2o_mem_realloc do.  A server that cannot allocate a few bytes cannot answer anyway, and a NULL
 * check that no test ever takes is a crash waiting in a rarely run path.
 */
#ifndef H2POOL_ALLOC_H
#define H2POOL_ALLOC_H

#include <stdlib.h>
#include <string.h>

#include <h2o/memory.h>

static inline void *h2p_calloc(size_t count, size_t size)
{
    void *p = calloc(count, size);
    if (p == NULL && count != 0 && size != 0)
        h2o_fatal("no memory");
    return p;
}

static inline char *h2p_strdup(const char *s)
{
    size_t len = strlen(s) + 1;
    return memcpy(h2o_mem_alloc(len), s, len);
}

#endif

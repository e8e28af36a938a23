/*
 * The output cache's store (HTTP.sys's kernel cache role, in memory): entries by key, shared by
 * every front-end thread, sharded so that no lock is global, with one memory budget and
 * least-recently-used eviction across the shards, and collapsed forwarding: while one request
 * (the leader) fetches a key, the others for that key wait for its answer.
 *
 * The store knows nothing of HTTP: output_cache.c builds the key and the entry's content.
 * One store belongs to one configuration generation, so a reload starts with an empty cache.
 */
#ifndef H2POOL_CACHE_STORE_H
#define H2POOL_CACHE_STORE_H

#include <h2o.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct h2p_cache h2p_cache_t;

typedef struct h2p_cache_header {
    const h2o_token_t *token; /* NULL: a name libh2o has no token for */
    h2o_iovec_t name, value;
} h2p_cache_header_t;

/* A request header the stored response varies on (its Vary), with the value it had. */
typedef struct h2p_cache_vary {
    h2o_iovec_t name, value;
    int present;
} h2p_cache_vary_t;

typedef struct h2p_cache_entry {
    /* the response, immutable once stored */
    h2p_cache_header_t *headers;
    size_t num_headers;
    h2o_iovec_t body;
    h2o_iovec_t etag, last_modified; /* base NULL: none */
    h2p_cache_vary_t *vary;
    size_t num_vary;
    /* a static file's response is valid while the file is the one it was read from */
    char *file_path; /* NULL: not a file */
    dev_t file_dev;
    ino_t file_ino;
    off_t file_size;
    struct timespec file_mtime, file_ctime; /* (ctime: compression's copies only) */
    uint64_t stored_at_ms, expires_at_ms;   /* h2p_cache_now_ms() */
    /* past expires_at_ms, until when the entry may still be answered (RFC 5861): while a refresh
     * runs, and instead of a 502/503/504; the store keeps it until the later of the two */
    uint64_t stale_while_revalidate_until_ms, stale_if_error_until_ms;
    /* the store's own */
    char *key;
    size_t key_len;
    uint64_t hash, last_used_ns;
    size_t charge; /* bytes counted against max_memory */
    unsigned refcnt;
    struct h2p_cache_entry *bucket_next, *lru_prev, *lru_next;
    char data[]; /* the strings above point in here */
} h2p_cache_entry_t;

/* A request waiting for a leader's answer; lives in malloc'd memory (it may outlive its request). */
typedef enum h2p_cache_waiter_state { H2P_CACHE_WAITING, H2P_CACHE_WOKEN, H2P_CACHE_ABANDONED } h2p_cache_waiter_state_t;
typedef struct h2p_cache_waiter {
    h2o_multithread_message_t message;    /* sent to the waiting request's thread */
    h2o_multithread_receiver_t *receiver; /* that thread's */
    h2o_linklist_t link;                  /* in the leader's list while WAITING */
    h2p_cache_waiter_state_t state;       /* changed under the shard's lock */
    h2p_cache_entry_t *entry;             /* the answer (a reference), NULL: go to the application */
    unsigned shard;
    void *data; /* the waiting request's state */
} h2p_cache_waiter_t;

typedef struct h2p_cache_pending h2p_cache_pending_t;

typedef enum h2p_cache_lookup_result {
    H2P_CACHE_HIT,       /* *entry is a reference to a fresh entry the caller accepted */
    H2P_CACHE_LEAD,      /* a miss, and this request fetches the key: *pending must be completed */
    H2P_CACHE_WAIT,      /* the waiter was queued behind the request that fetches the key */
    H2P_CACHE_MUST_WAIT, /* a request fetches the key: call again with a waiter */
    H2P_CACHE_MISS,      /* go to the application (may_lead was 0) */
    H2P_CACHE_STALE      /* *entry is a reference to an expired entry within its stale-while-revalidate bound; *pending,
                          * when not NULL, is the refresh this request must start (completed like a leader's fetch) */
} h2p_cache_lookup_result_t;

/* Process-wide counters (over every generation's store), for /metrics. */
typedef struct h2p_cache_stats {
    uint64_t entries, bytes;  /* stored now */
    uint64_t hits, misses;    /* lookups answered from an entry, and not */
    uint64_t evictions;       /* entries dropped for max_memory */
    uint64_t collapsed_waits; /* requests that waited for another's fetch instead of going to the pool */
    uint64_t stores;          /* entries stored */
    uint64_t stale_hits;      /* expired entries answered while one request refreshed them (stale-while-revalidate) */
    uint64_t stale_if_error;  /* expired entries answered instead of a 502/503/504 (stale-if-error) */
    uint64_t refreshes;       /* background refreshes started */
} h2p_cache_stats_t;

void h2p_cache_stats(h2p_cache_stats_t *out);
void h2p_cache_count_hit(void);
void h2p_cache_count_miss(void);
void h2p_cache_count_stale_if_error(void);

uint64_t h2p_cache_now_ms(void);

h2p_cache_t *h2p_cache_create(uint64_t max_memory, uint64_t max_entry);
/* Frees the store and its entries (no request of the generation is left: none waits, none leads). */
void h2p_cache_destroy(h2p_cache_t *cache);
uint64_t h2p_cache_max_entry(const h2p_cache_t *cache);

/* An entry with room for `data_size` bytes of strings in entry->data, refcount 1, zeroed. */
h2p_cache_entry_t *h2p_cache_entry_new(size_t data_size);
h2p_cache_entry_t *h2p_cache_entry_retain(h2p_cache_entry_t *entry);
void h2p_cache_entry_release(h2p_cache_entry_t *entry);

/*
 * Looks `key` up.  `accept` (may be NULL) says whether a fresh entry fits this request (its
 * Vary).  With a waiter, a request that must wait is queued (H2P_CACHE_WAIT; its thread's
 * receiver gets the waiter's message when the leader completes); without one, H2P_CACHE_MUST_WAIT.
 * With `stale` (may be NULL), a result other than HIT and STALE may come with *stale: a reference
 * to an expired entry within its stale-if-error bound, to answer with if the application fails.
 */
h2p_cache_lookup_result_t h2p_cache_lookup(h2p_cache_t *cache, const char *key, size_t key_len,
                                           int (*accept)(const h2p_cache_entry_t *entry, void *arg), void *arg,
                                           h2p_cache_waiter_t *waiter, int may_lead, h2p_cache_entry_t **entry,
                                           h2p_cache_pending_t **pending, h2p_cache_entry_t **stale);

/* Stores `entry` under `key` (the store takes the caller's reference), replacing an older one. */
void h2p_cache_insert(h2p_cache_t *cache, const char *key, size_t key_len, h2p_cache_entry_t *entry);

/* The leader's fetch ended: stores `entry` if not NULL (taking the reference) and wakes the waiters. */
void h2p_cache_complete(h2p_cache_t *cache, h2p_cache_pending_t *pending, h2p_cache_entry_t *entry);

/* A body being collected as a response is sent, for an entry. */
typedef struct h2p_cache_body {
    char *base;
    size_t len, capacity;
} h2p_cache_body_t;

/* Appends `bufs` to `body`; -1 (the body freed and emptied) when it would pass the store's max_entry. */
int h2p_cache_body_append(h2p_cache_t *cache, h2p_cache_body_t *body, const h2o_iovec_t *bufs, size_t bufcnt);
void h2p_cache_body_free(h2p_cache_body_t *body);

/* Drops the entry stored under its key if it is still `entry` (a static file that changed). */
void h2p_cache_remove(h2p_cache_t *cache, h2p_cache_entry_t *entry);
/* Removes every entry whose key `match` accepts (every entry when match is NULL); how many.
 * Requests that hold an entry finish with it. */
size_t h2p_cache_flush(h2p_cache_t *cache, int (*match)(const char *key, size_t key_len, void *arg), void *arg);

/* A waiting request is gone: 1 when the waiter was unqueued (the caller frees it), 0 when its
 * message is on its way (the receiver frees it, seeing H2P_CACHE_ABANDONED). */
int h2p_cache_cancel_wait(h2p_cache_t *cache, h2p_cache_waiter_t *waiter);

#endif

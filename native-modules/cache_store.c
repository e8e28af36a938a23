/*
 * The output cache's store: see cache_store.h.
 *
 * Shards: the key's hash picks one of NUM_SHARDS, each with its own mutex, hash table, LRU list
 * and table of fetches in progress, so threads that look up different keys rarely meet.  The
 * memory budget is one for the whole store (an atomic byte count): an insert that goes over it
 * evicts the least recently used entry among the shards' LRU tails, one shard locked at a time,
 * until the store fits again.  Hits take the shard's lock for a hash probe and an LRU move only.
 */
#include "native-modules/cache_store.h"
#include "frontend/alloc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NUM_SHARDS 16

struct h2p_cache_pending {
    char *key;
    size_t key_len;
    uint64_t hash;
    h2o_linklist_t waiters;
    struct h2p_cache_pending *next;
};

typedef struct shard {
    pthread_mutex_t lock;
    h2p_cache_entry_t **buckets;
    size_t num_buckets, num_entries;
    h2p_cache_entry_t *lru_head, *lru_tail; /* head: most recently used */
    h2p_cache_pending_t *pending;           /* fetches in progress (few at a time: a list) */
} shard_t;

struct h2p_cache {
    uint64_t max_memory, max_entry;
    atomic_uint_least64_t bytes;
    shard_t shards[NUM_SHARDS];
};

static struct {
    atomic_uint_least64_t entries, bytes, hits, misses, evictions, collapsed_waits, stores, stale_hits, stale_if_error, refreshes;
} counters;

void h2p_cache_stats(h2p_cache_stats_t *out)
{
    out->entries = atomic_load(&counters.entries);
    out->bytes = atomic_load(&counters.bytes);
    out->hits = atomic_load(&counters.hits);
    out->misses = atomic_load(&counters.misses);
    out->evictions = atomic_load(&counters.evictions);
    out->collapsed_waits = atomic_load(&counters.collapsed_waits);
    out->stores = atomic_load(&counters.stores);
    out->stale_hits = atomic_load(&counters.stale_hits);
    out->stale_if_error = atomic_load(&counters.stale_if_error);
    out->refreshes = atomic_load(&counters.refreshes);
}

void h2p_cache_count_hit(void)
{
    atomic_fetch_add_explicit(&counters.hits, 1, memory_order_relaxed);
}

void h2p_cache_count_miss(void)
{
    atomic_fetch_add_explicit(&counters.misses, 1, memory_order_relaxed);
}

void h2p_cache_count_stale_if_error(void)
{
    atomic_fetch_add_explicit(&counters.stale_if_error, 1, memory_order_relaxed);
}

uint64_t h2p_cache_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

/* FNV-1a, 64 bits: keys are short strings; the low bits pick the bucket, the high ones the shard */
static uint64_t hash_key(const char *key, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i != len; ++i) {
        h ^= (unsigned char)key[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static shard_t *shard_of(h2p_cache_t *cache, uint64_t hash)
{
    return cache->shards + (hash >> 60) % NUM_SHARDS;
}

h2p_cache_t *h2p_cache_create(uint64_t max_memory, uint64_t max_entry)
{
    h2p_cache_t *cache = h2o_mem_alloc(sizeof(*cache));
    memset(cache, 0, sizeof(*cache));
    cache->max_memory = max_memory;
    cache->max_entry = max_entry;
    for (size_t i = 0; i != NUM_SHARDS; ++i)
        pthread_mutex_init(&cache->shards[i].lock, NULL);
    return cache;
}

uint64_t h2p_cache_max_entry(const h2p_cache_t *cache)
{
    return cache->max_entry;
}

/* ---- entries -------------------------------------------------------------------------- */

h2p_cache_entry_t *h2p_cache_entry_new(size_t data_size)
{
    h2p_cache_entry_t *entry = h2o_mem_alloc(sizeof(*entry) + data_size);
    memset(entry, 0, sizeof(*entry));
    entry->refcnt = 1;
    entry->charge = sizeof(*entry) + data_size;
    return entry;
}

void h2p_cache_body_free(h2p_cache_body_t *body)
{
    free(body->base);
    *body = (h2p_cache_body_t){NULL};
}

int h2p_cache_body_append(h2p_cache_t *cache, h2p_cache_body_t *body, const h2o_iovec_t *bufs, size_t bufcnt)
{
    for (size_t i = 0; i != bufcnt; ++i) {
        if (bufs[i].len > cache->max_entry - body->len) {
            h2p_cache_body_free(body);
            return -1;
        }
        if (body->len + bufs[i].len > body->capacity) {
            size_t capacity = body->capacity != 0 ? body->capacity : 16384;
            while (capacity < body->len + bufs[i].len)
                capacity *= 2;
            body->base = h2o_mem_realloc(body->base, capacity);
            body->capacity = capacity;
        }
        memcpy(body->base + body->len, bufs[i].base, bufs[i].len);
        body->len += bufs[i].len;
    }
    return 0;
}

h2p_cache_entry_t *h2p_cache_entry_retain(h2p_cache_entry_t *entry)
{
    __atomic_add_fetch(&entry->refcnt, 1, __ATOMIC_RELAXED);
    return entry;
}

void h2p_cache_entry_release(h2p_cache_entry_t *entry)
{
    if (__atomic_sub_fetch(&entry->refcnt, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    free(entry->key);
    free(entry);
}

/* ---- one shard (its lock held) --------------------------------------------------------- */

static h2p_cache_entry_t **find_slot(shard_t *shard, const char *key, size_t key_len, uint64_t hash)
{
    if (shard->num_buckets == 0)
        return NULL;
    h2p_cache_entry_t **slot = shard->buckets + (hash & (shard->num_buckets - 1));
    for (; *slot != NULL; slot = &(*slot)->bucket_next)
        if ((*slot)->hash == hash && (*slot)->key_len == key_len && memcmp((*slot)->key, key, key_len) == 0)
            return slot;
    return slot;
}

static void lru_unlink(shard_t *shard, h2p_cache_entry_t *entry)
{
    if (entry->lru_prev != NULL)
        entry->lru_prev->lru_next = entry->lru_next;
    else
        shard->lru_head = entry->lru_next;
    if (entry->lru_next != NULL)
        entry->lru_next->lru_prev = entry->lru_prev;
    else
        shard->lru_tail = entry->lru_prev;
    entry->lru_prev = entry->lru_next = NULL;
}

static void lru_push_head(shard_t *shard, h2p_cache_entry_t *entry)
{
    entry->lru_prev = NULL;
    entry->lru_next = shard->lru_head;
    if (shard->lru_head != NULL)
        shard->lru_head->lru_prev = entry;
    shard->lru_head = entry;
    if (shard->lru_tail == NULL)
        shard->lru_tail = entry;
    entry->last_used_ns = now_ns();
}

static void grow_buckets(shard_t *shard)
{
    size_t num = shard->num_buckets != 0 ? shard->num_buckets * 2 : 64;
    h2p_cache_entry_t **buckets = h2p_calloc(num, sizeof(*buckets));
    if (buckets == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i != shard->num_buckets; ++i) {
        for (h2p_cache_entry_t *e = shard->buckets[i], *next; e != NULL; e = next) {
            next = e->bucket_next;
            h2p_cache_entry_t **slot = buckets + (e->hash & (num - 1));
            e->bucket_next = *slot;
            *slot = e;
        }
    }
    free(shard->buckets);
    shard->buckets = buckets;
    shard->num_buckets = num;
}

/* Takes the entry at *slot out of the shard; returns it (the store's reference). */
static h2p_cache_entry_t *unlink_entry(h2p_cache_t *cache, shard_t *shard, h2p_cache_entry_t **slot)
{
    h2p_cache_entry_t *entry = *slot;
    *slot = entry->bucket_next;
    entry->bucket_next = NULL;
    lru_unlink(shard, entry);
    shard->num_entries--;
    atomic_fetch_sub(&cache->bytes, entry->charge);
    atomic_fetch_sub(&counters.bytes, entry->charge);
    atomic_fetch_sub(&counters.entries, 1);
    return entry;
}

/* Stores entry (whose key and hash are set) in the shard; returns the entry it replaced, if any. */
static h2p_cache_entry_t *link_entry(h2p_cache_t *cache, shard_t *shard, h2p_cache_entry_t *entry)
{
    h2p_cache_entry_t *replaced = NULL, **slot = find_slot(shard, entry->key, entry->key_len, entry->hash);
    if (slot != NULL && *slot != NULL)
        replaced = unlink_entry(cache, shard, slot);
    if (shard->num_entries + 1 > shard->num_buckets)
        grow_buckets(shard);
    slot = shard->buckets + (entry->hash & (shard->num_buckets - 1));
    entry->bucket_next = *slot;
    *slot = entry;
    shard->num_entries++;
    lru_push_head(shard, entry);
    atomic_fetch_add(&cache->bytes, entry->charge);
    atomic_fetch_add(&counters.bytes, entry->charge);
    atomic_fetch_add(&counters.entries, 1);
    atomic_fetch_add(&counters.stores, 1);
    return replaced;
}

/* ---- eviction -------------------------------------------------------------------------- */

/* Drops least recently used entries (over all shards) until the store fits its budget. */
static void evict_over_budget(h2p_cache_t *cache)
{
    while (atomic_load(&cache->bytes) > cache->max_memory) {
        shard_t *oldest = NULL;
        uint64_t oldest_ns = UINT64_MAX;
        for (size_t i = 0; i != NUM_SHARDS; ++i) {
            shard_t *shard = cache->shards + i;
            pthread_mutex_lock(&shard->lock);
            if (shard->lru_tail != NULL && shard->lru_tail->last_used_ns < oldest_ns) {
                oldest_ns = shard->lru_tail->last_used_ns;
                oldest = shard;
            }
            pthread_mutex_unlock(&shard->lock);
        }
        if (oldest == NULL)
            return;
        h2p_cache_entry_t *victim = NULL;
        pthread_mutex_lock(&oldest->lock);
        if (oldest->lru_tail != NULL) { /* (another thread may have used or dropped it meanwhile: still an old one) */
            h2p_cache_entry_t **slot = find_slot(oldest, oldest->lru_tail->key, oldest->lru_tail->key_len, oldest->lru_tail->hash);
            victim = unlink_entry(cache, oldest, slot);
        }
        pthread_mutex_unlock(&oldest->lock);
        if (victim != NULL) {
            atomic_fetch_add(&counters.evictions, 1);
            h2p_cache_entry_release(victim);
        }
    }
}

/* ---- the API --------------------------------------------------------------------------- */

static h2p_cache_pending_t **find_pending(shard_t *shard, const char *key, size_t key_len, uint64_t hash)
{
    h2p_cache_pending_t **p = &shard->pending;
    for (; *p != NULL; p = &(*p)->next)
        if ((*p)->hash == hash && (*p)->key_len == key_len && memcmp((*p)->key, key, key_len) == 0)
            break;
    return p;
}

static h2p_cache_pending_t *add_pending(shard_t *shard, const char *key, size_t key_len, uint64_t hash)
{
    h2p_cache_pending_t *lead = h2o_mem_alloc(sizeof(*lead));
    lead->key = h2o_mem_alloc(key_len);
    memcpy(lead->key, key, key_len);
    lead->key_len = key_len;
    lead->hash = hash;
    h2o_linklist_init_anchor(&lead->waiters);
    lead->next = shard->pending;
    shard->pending = lead;
    return lead;
}

static uint64_t kept_until(const h2p_cache_entry_t *entry)
{
    uint64_t until = entry->expires_at_ms;
    if (entry->stale_while_revalidate_until_ms > until)
        until = entry->stale_while_revalidate_until_ms;
    if (entry->stale_if_error_until_ms > until)
        until = entry->stale_if_error_until_ms;
    return until;
}

h2p_cache_lookup_result_t h2p_cache_lookup(h2p_cache_t *cache, const char *key, size_t key_len,
                                           int (*accept)(const h2p_cache_entry_t *entry, void *arg), void *arg,
                                           h2p_cache_waiter_t *waiter, int may_lead, h2p_cache_entry_t **entry,
                                           h2p_cache_pending_t **pending, h2p_cache_entry_t **stale)
{
    uint64_t hash = hash_key(key, key_len), now = h2p_cache_now_ms();
    shard_t *shard = shard_of(cache, hash);
    h2p_cache_entry_t *expired = NULL;
    h2p_cache_lookup_result_t result;

    pthread_mutex_lock(&shard->lock);
    h2p_cache_entry_t **slot = find_slot(shard, key, key_len, hash);
    if (slot != NULL && *slot != NULL) {
        h2p_cache_entry_t *found = *slot;
        if (kept_until(found) <= now) {
            expired = unlink_entry(cache, shard, slot);
        } else if (accept == NULL || accept(found, arg)) {
            if (found->expires_at_ms > now || found->stale_while_revalidate_until_ms > now) {
                lru_unlink(shard, found);
                lru_push_head(shard, found);
                *entry = h2p_cache_entry_retain(found);
                result = H2P_CACHE_HIT;
                if (found->expires_at_ms <= now) { /* stale: one request (the first) refreshes it, none waits */
                    result = H2P_CACHE_STALE;
                    *pending = NULL;
                    h2p_cache_pending_t **p = find_pending(shard, key, key_len, hash);
                    if (*p == NULL) {
                        *pending = add_pending(shard, key, key_len, hash);
                        atomic_fetch_add(&counters.refreshes, 1);
                    }
                    atomic_fetch_add(&counters.stale_hits, 1);
                }
                goto Exit;
            }
            if (stale != NULL && found->stale_if_error_until_ms > now)
                *stale = h2p_cache_entry_retain(found);
        }
    }
    h2p_cache_pending_t **p = find_pending(shard, key, key_len, hash);
    if (*p != NULL) {
        if (waiter == NULL) {
            result = H2P_CACHE_MUST_WAIT;
        } else {
            waiter->state = H2P_CACHE_WAITING;
            waiter->shard = (unsigned)(shard - cache->shards);
            h2o_linklist_insert(&(*p)->waiters, &waiter->link);
            atomic_fetch_add(&counters.collapsed_waits, 1);
            result = H2P_CACHE_WAIT;
        }
    } else if (may_lead) {
        *pending = add_pending(shard, key, key_len, hash);
        result = H2P_CACHE_LEAD;
    } else {
        result = H2P_CACHE_MISS;
    }
Exit:
    pthread_mutex_unlock(&shard->lock);
    if (expired != NULL)
        h2p_cache_entry_release(expired);
    return result;
}

static void set_key(h2p_cache_entry_t *entry, const char *key, size_t key_len, uint64_t hash)
{
    entry->key = h2o_mem_alloc(key_len);
    memcpy(entry->key, key, key_len);
    entry->key_len = key_len;
    entry->hash = hash;
    entry->charge += key_len;
}

void h2p_cache_insert(h2p_cache_t *cache, const char *key, size_t key_len, h2p_cache_entry_t *entry)
{
    uint64_t hash = hash_key(key, key_len);
    shard_t *shard = shard_of(cache, hash);
    set_key(entry, key, key_len, hash);
    pthread_mutex_lock(&shard->lock);
    h2p_cache_entry_t *replaced = link_entry(cache, shard, entry);
    pthread_mutex_unlock(&shard->lock);
    if (replaced != NULL)
        h2p_cache_entry_release(replaced);
    evict_over_budget(cache);
}

void h2p_cache_complete(h2p_cache_t *cache, h2p_cache_pending_t *pending, h2p_cache_entry_t *entry)
{
    shard_t *shard = shard_of(cache, pending->hash);
    h2p_cache_entry_t *replaced = NULL;
    h2o_linklist_t woken;
    h2o_linklist_init_anchor(&woken);
    if (entry != NULL)
        set_key(entry, pending->key, pending->key_len, pending->hash);

    pthread_mutex_lock(&shard->lock);
    h2p_cache_pending_t **p = find_pending(shard, pending->key, pending->key_len, pending->hash);
    *p = pending->next;
    if (entry != NULL)
        replaced = link_entry(cache, shard, entry);
    while (!h2o_linklist_is_empty(&pending->waiters)) {
        h2p_cache_waiter_t *waiter = H2O_STRUCT_FROM_MEMBER(h2p_cache_waiter_t, link, pending->waiters.next);
        h2o_linklist_unlink(&waiter->link);
        waiter->state = H2P_CACHE_WOKEN;
        waiter->entry = entry != NULL ? h2p_cache_entry_retain(entry) : NULL;
        h2o_linklist_insert(&woken, &waiter->link);
    }
    pthread_mutex_unlock(&shard->lock);

    /* each waiter is answered on its own thread's loop */
    while (!h2o_linklist_is_empty(&woken)) {
        h2p_cache_waiter_t *waiter = H2O_STRUCT_FROM_MEMBER(h2p_cache_waiter_t, link, woken.next);
        h2o_linklist_unlink(&waiter->link);
        h2o_multithread_send_message(waiter->receiver, &waiter->message);
    }
    if (replaced != NULL)
        h2p_cache_entry_release(replaced);
    free(pending->key);
    free(pending);
    if (entry != NULL)
        evict_over_budget(cache);
}

void h2p_cache_remove(h2p_cache_t *cache, h2p_cache_entry_t *entry)
{
    shard_t *shard = shard_of(cache, entry->hash);
    h2p_cache_entry_t *removed = NULL;
    pthread_mutex_lock(&shard->lock);
    h2p_cache_entry_t **slot = find_slot(shard, entry->key, entry->key_len, entry->hash);
    if (slot != NULL && *slot == entry)
        removed = unlink_entry(cache, shard, slot);
    pthread_mutex_unlock(&shard->lock);
    if (removed != NULL)
        h2p_cache_entry_release(removed);
}

int h2p_cache_cancel_wait(h2p_cache_t *cache, h2p_cache_waiter_t *waiter)
{
    shard_t *shard = cache->shards + waiter->shard;
    int unqueued = 0;
    pthread_mutex_lock(&shard->lock);
    if (waiter->state == H2P_CACHE_WAITING) {
        h2o_linklist_unlink(&waiter->link);
        unqueued = 1;
    } else {
        waiter->state = H2P_CACHE_ABANDONED;
    }
    pthread_mutex_unlock(&shard->lock);
    return unqueued;
}

void h2p_cache_destroy(h2p_cache_t *cache)
{
    if (cache == NULL)
        return;
    for (size_t i = 0; i != NUM_SHARDS; ++i) {
        shard_t *shard = cache->shards + i;
        for (size_t b = 0; b != shard->num_buckets; ++b) {
            while (shard->buckets[b] != NULL)
                h2p_cache_entry_release(unlink_entry(cache, shard, shard->buckets + b));
        }
        free(shard->buckets);
        pthread_mutex_destroy(&shard->lock);
    }
    free(cache);
}

size_t h2p_cache_flush(h2p_cache_t *cache, int (*match)(const char *key, size_t key_len, void *arg), void *arg)
{
    size_t count = 0;
    for (size_t i = 0; i != NUM_SHARDS; ++i) {
        shard_t *shard = cache->shards + i;
        h2p_cache_entry_t *removed = NULL; /* chained through bucket_next, released unlocked */
        pthread_mutex_lock(&shard->lock);
        for (size_t b = 0; b != shard->num_buckets; ++b) {
            h2p_cache_entry_t **slot = shard->buckets + b;
            while (*slot != NULL) {
                if (match != NULL && !match((*slot)->key, (*slot)->key_len, arg)) {
                    slot = &(*slot)->bucket_next;
                    continue;
                }
                h2p_cache_entry_t *entry = unlink_entry(cache, shard, slot);
                entry->bucket_next = removed;
                removed = entry;
                ++count;
            }
        }
        pthread_mutex_unlock(&shard->lock);
        while (removed != NULL) {
            h2p_cache_entry_t *next = removed->bucket_next;
            removed->bucket_next = NULL;
            h2p_cache_entry_release(removed);
            removed = next;
        }
    }
    return count;
}

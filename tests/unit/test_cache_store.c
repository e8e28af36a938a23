/*
 * Unit tests for native-modules/cache_store.c: the output cache's store (hits, expiry, Vary
 * acceptance, LRU eviction across shards at max_memory, collapsed forwarding's leader, counters).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "native-modules/cache_store.h"

#define BODY_SIZE 1000

static h2p_cache_entry_t *new_entry(uint64_t ttl_ms)
{
    h2p_cache_entry_t *entry = h2p_cache_entry_new(BODY_SIZE);
    memset(entry->data, 'x', BODY_SIZE);
    entry->body = h2o_iovec_init(entry->data, BODY_SIZE);
    entry->stored_at_ms = h2p_cache_now_ms();
    entry->expires_at_ms = entry->stored_at_ms + ttl_ms;
    return entry;
}

static h2p_cache_lookup_result_t look(h2p_cache_t *cache, const char *key)
{
    h2p_cache_entry_t *entry = NULL;
    h2p_cache_pending_t *pending = NULL;
    h2p_cache_lookup_result_t result = h2p_cache_lookup(cache, key, strlen(key), NULL, NULL, NULL, 0, &entry, &pending, NULL);
    if (entry != NULL)
        h2p_cache_entry_release(entry);
    return result;
}

static void insert(h2p_cache_t *cache, const char *key, uint64_t ttl_ms)
{
    h2p_cache_insert(cache, key, strlen(key), new_entry(ttl_ms));
}

static void hit_miss_and_counters(void **state)
{
    h2p_cache_stats_t before, after;
    h2p_cache_stats(&before);
    h2p_cache_t *cache = h2p_cache_create(1 << 20, 1 << 16);
    assert_int_equal(look(cache, "a"), H2P_CACHE_MISS);
    insert(cache, "a", 60000);
    assert_int_equal(look(cache, "a"), H2P_CACHE_HIT);
    assert_int_equal(look(cache, "b"), H2P_CACHE_MISS);
    insert(cache, "a", 60000); /* replaces */
    h2p_cache_stats(&after);
    assert_int_equal(after.entries - before.entries, 1);
    assert_int_equal(after.stores - before.stores, 2);
    assert_true(after.bytes - before.bytes > BODY_SIZE);
    h2p_cache_destroy(cache);
    h2p_cache_stats(&after);
    assert_int_equal(after.entries, before.entries);
    assert_int_equal(after.bytes, before.bytes);
}

static void expired_entry_is_a_miss(void **state)
{
    h2p_cache_t *cache = h2p_cache_create(1 << 20, 1 << 16);
    insert(cache, "old", 0);
    assert_int_equal(look(cache, "old"), H2P_CACHE_MISS);
    h2p_cache_destroy(cache);
}

static int refuse(const h2p_cache_entry_t *entry, void *arg)
{
    return 0;
}

static void entry_the_request_does_not_accept_is_no_hit(void **state)
{
    h2p_cache_t *cache = h2p_cache_create(1 << 20, 1 << 16);
    insert(cache, "k", 60000);
    h2p_cache_entry_t *entry = NULL;
    h2p_cache_pending_t *pending = NULL;
    assert_int_equal(h2p_cache_lookup(cache, "k", 1, refuse, NULL, NULL, 0, &entry, &pending, NULL), H2P_CACHE_MISS);
    assert_null(entry);
    h2p_cache_destroy(cache);
}

static void lru_eviction_across_shards(void **state)
{
    h2p_cache_stats_t before, after;
    h2p_cache_stats(&before);
    /* room for three entries: keys land in different shards, the budget is the store's */
    h2p_cache_entry_t *probe = new_entry(1);
    size_t charge = probe->charge + 2;
    h2p_cache_entry_release(probe);
    h2p_cache_t *cache = h2p_cache_create(3 * charge + charge / 2, charge);
    insert(cache, "k0", 60000);
    insert(cache, "k1", 60000);
    insert(cache, "k2", 60000);
    assert_int_equal(look(cache, "k0"), H2P_CACHE_HIT); /* k1 is now the least recently used */
    insert(cache, "k3", 60000);
    assert_int_equal(look(cache, "k1"), H2P_CACHE_MISS);
    assert_int_equal(look(cache, "k0"), H2P_CACHE_HIT);
    assert_int_equal(look(cache, "k2"), H2P_CACHE_HIT);
    assert_int_equal(look(cache, "k3"), H2P_CACHE_HIT);
    h2p_cache_stats(&after);
    assert_int_equal(after.evictions - before.evictions, 1);
    h2p_cache_destroy(cache);
}

static void one_leader_per_key(void **state)
{
    h2p_cache_t *cache = h2p_cache_create(1 << 20, 1 << 16);
    h2p_cache_entry_t *entry = NULL;
    h2p_cache_pending_t *pending = NULL, *other = NULL;
    assert_int_equal(h2p_cache_lookup(cache, "k", 1, NULL, NULL, NULL, 1, &entry, &pending, NULL), H2P_CACHE_LEAD);
    assert_non_null(pending);
    /* the others for that key wait; another key has a leader of its own */
    assert_int_equal(h2p_cache_lookup(cache, "k", 1, NULL, NULL, NULL, 1, &entry, &other, NULL), H2P_CACHE_MUST_WAIT);
    assert_int_equal(h2p_cache_lookup(cache, "j", 1, NULL, NULL, NULL, 1, &entry, &other, NULL), H2P_CACHE_LEAD);
    h2p_cache_complete(cache, other, NULL); /* no entry: the next request leads again */
    assert_int_equal(h2p_cache_lookup(cache, "j", 1, NULL, NULL, NULL, 1, &entry, &other, NULL), H2P_CACHE_LEAD);
    h2p_cache_complete(cache, other, NULL);
    h2p_cache_complete(cache, pending, new_entry(60000));
    assert_int_equal(h2p_cache_lookup(cache, "k", 1, NULL, NULL, NULL, 1, &entry, &pending, NULL), H2P_CACHE_HIT);
    h2p_cache_entry_release(entry);
    h2p_cache_destroy(cache);
}

/* An entry that expired a second ago and may still be answered for `swr_ms` / `sie_ms` past that. */
static h2p_cache_entry_t *new_stale_entry(uint64_t swr_ms, uint64_t sie_ms)
{
    h2p_cache_entry_t *entry = new_entry(0);
    entry->stored_at_ms -= 2000;
    entry->expires_at_ms -= 1000;
    entry->stale_while_revalidate_until_ms = swr_ms != 0 ? entry->expires_at_ms + swr_ms : 0;
    entry->stale_if_error_until_ms = sie_ms != 0 ? entry->expires_at_ms + sie_ms : 0;
    return entry;
}

static void stale_while_revalidate_starts_one_refresh(void **state)
{
    h2p_cache_stats_t before, after;
    h2p_cache_stats(&before);
    h2p_cache_t *cache = h2p_cache_create(1 << 20, 1 << 16);
    h2p_cache_insert(cache, "k", 1, new_stale_entry(60000, 0));
    h2p_cache_entry_t *entry = NULL, *stale = NULL;
    h2p_cache_pending_t *refresh = NULL, *other = NULL;
    /* the first request gets the stale entry and the refresh; the others get the entry only, none waits */
    assert_int_equal(h2p_cache_lookup(cache, "k", 1, NULL, NULL, NULL, 1, &entry, &refresh, &stale), H2P_CACHE_STALE);
    assert_non_null(refresh);
    h2p_cache_entry_release(entry);
    for (int i = 0; i != 3; ++i) {
        other = (void *)1;
        assert_int_equal(h2p_cache_lookup(cache, "k", 1, NULL, NULL, NULL, 1, &entry, &other, &stale), H2P_CACHE_STALE);
        assert_null(other);
        h2p_cache_entry_release(entry);
    }
    assert_null(stale);
    /* a failed refresh keeps the stale entry; a good one replaces it */
    h2p_cache_complete(cache, refresh, NULL);
    assert_int_equal(h2p_cache_lookup(cache, "k", 1, NULL, NULL, NULL, 1, &entry, &refresh, NULL), H2P_CACHE_STALE);
    h2p_cache_entry_release(entry);
    h2p_cache_complete(cache, refresh, new_entry(60000));
    assert_int_equal(h2p_cache_lookup(cache, "k", 1, NULL, NULL, NULL, 1, &entry, &refresh, NULL), H2P_CACHE_HIT);
    h2p_cache_entry_release(entry);
    h2p_cache_stats(&after);
    assert_int_equal(after.stale_hits - before.stale_hits, 5);
    assert_int_equal(after.refreshes - before.refreshes, 2);
    h2p_cache_destroy(cache);
}

static void stale_if_error_comes_with_the_miss(void **state)
{
    h2p_cache_t *cache = h2p_cache_create(1 << 20, 1 << 16);
    h2p_cache_insert(cache, "k", 1, new_stale_entry(0, 60000));
    h2p_cache_insert(cache, "gone", 4, new_stale_entry(0, 500)); /* expired by more than its bound */
    h2p_cache_entry_t *entry = NULL, *stale = NULL;
    h2p_cache_pending_t *pending = NULL;
    assert_int_equal(h2p_cache_lookup(cache, "k", 1, NULL, NULL, NULL, 1, &entry, &pending, &stale), H2P_CACHE_LEAD);
    assert_non_null(stale);
    h2p_cache_entry_release(stale);
    stale = NULL;
    assert_int_equal(h2p_cache_lookup(cache, "k", 1, NULL, NULL, NULL, 0, &entry, &pending, &stale), H2P_CACHE_MUST_WAIT);
    assert_non_null(stale);
    h2p_cache_entry_release(stale);
    stale = NULL;
    h2p_cache_complete(cache, pending, NULL);
    assert_int_equal(h2p_cache_lookup(cache, "gone", 4, NULL, NULL, NULL, 0, &entry, &pending, &stale), H2P_CACHE_MISS);
    assert_null(stale);
    h2p_cache_destroy(cache);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hit_miss_and_counters),
        cmocka_unit_test(expired_entry_is_a_miss),
        cmocka_unit_test(entry_the_request_does_not_accept_is_no_hit),
        cmocka_unit_test(lru_eviction_across_shards),
        cmocka_unit_test(one_leader_per_key),
        cmocka_unit_test(stale_while_revalidate_starts_one_refresh),
        cmocka_unit_test(stale_if_error_comes_with_the_miss),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

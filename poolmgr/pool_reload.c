/* Pools across reloads: unchanged pools keep their workers, the others drain and go away. */
#include <string.h>

#include "frontend/log.h"
#include "poolmgr/pool_internal.h"

static int strings_equal(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static int strlists_equal(const h2p_strlist_t *a, const h2p_strlist_t *b)
{
    if (a->count != b->count)
        return 0;
    for (size_t i = 0; i != a->count; ++i)
        if (strcmp(a->items[i], b->items[i]) != 0)
            return 0;
    return 1;
}

int h2p_pool_conf_equal(const h2p_pool_conf_t *a, const h2p_pool_conf_t *b)
{
    if (!strlists_equal(&a->command, &b->command) || !strlists_equal(&a->env, &b->env) ||
        !strings_equal(a->working_dir, b->working_dir) || !strings_equal(a->user, b->user) || !strings_equal(a->group, b->group))
        return 0;
    if (a->num_connect != b->num_connect)
        return 0;
    for (size_t i = 0; i != a->num_connect; ++i)
        if (strcmp(a->connect[i].text, b->connect[i].text) != 0)
            return 0;
    /* working_dir NULL means "the YAML file's directory", so the file matters then */
    if (a->working_dir == NULL && !strings_equal(a->origin.file, b->origin.file))
        return 0;
    return a->activation == b->activation && a->max_processes == b->max_processes && a->min_processes == b->min_processes &&
           a->idle_timeout_ms == b->idle_timeout_ms && a->queue_length == b->queue_length && a->max_requests == b->max_requests &&
           a->recycle_time_ms == b->recycle_time_ms && a->recycle_memory == b->recycle_memory &&
           a->startup_time_limit_ms == b->startup_time_limit_ms && a->shutdown_time_limit_ms == b->shutdown_time_limit_ms &&
           a->request_timeout_ms == b->request_timeout_ms && a->ping_interval_ms == b->ping_interval_ms &&
           a->ping_timeout_ms == b->ping_timeout_ms && a->rapid_fail.enabled == b->rapid_fail.enabled &&
           a->rapid_fail.max_crashes == b->rapid_fail.max_crashes && a->rapid_fail.interval_ms == b->rapid_fail.interval_ms &&
           a->retry_on_crash == b->retry_on_crash && a->php_master == b->php_master;
}

void h2p_poolmgr_apply(h2p_config_t *conf)
{
    pthread_mutex_lock(&h2p_pools_lock);
    for (h2o_linklist_t *l = h2p_pools.next; l != &h2p_pools; l = l->next) {
        h2p_pool_t *pool = H2O_STRUCT_FROM_MEMBER(h2p_pool_t, registry_link, l);
        int named = 0;
        for (size_t i = 0; i != conf->num_pools && !named; ++i)
            named = pool->conf == conf->pools + i;
        if (named || pool->draining)
            continue;
        /* removed, or changed (its replacement is a new pool): finish the queue and the requests
         * in flight, then stop; the new pool's workers start as requests arrive */
        pthread_mutex_lock(&pool->lock);
        pool->draining = 1;
        while (!h2o_linklist_is_empty(&pool->idle) && h2o_linklist_is_empty(&pool->queue)) {
            h2p_worker_t *w = H2O_STRUCT_FROM_MEMBER(h2p_worker_t, idle_link, pool->idle.next);
            h2p_worker_stop_locked(w, "configuration changed");
        }
        pthread_mutex_unlock(&pool->lock);
        h2p_info(NULL, "pool %s (generation %llu) drains: its configuration changed or was removed", pool->conf->name,
                 (unsigned long long)pool->config->generation);
    }
    pthread_mutex_unlock(&h2p_pools_lock);
    h2p_supervisor_kick(); /* min_processes of new pools */
}

/* Supervisor tick: a drained pool nobody references any more is freed. */
void h2p_poolmgr_free_drained(void)
{
    pthread_mutex_lock(&h2p_pools_lock);
    for (h2o_linklist_t *l = h2p_pools.next, *next; l != &h2p_pools; l = next) {
        next = l->next;
        h2p_pool_t *pool = H2O_STRUCT_FROM_MEMBER(h2p_pool_t, registry_link, l);
        if (!pool->draining || __atomic_load_n(&pool->refcnt, __ATOMIC_ACQUIRE) != 1 || !h2o_linklist_is_empty(&pool->workers) ||
            !h2o_linklist_is_empty(&pool->masters) || pool->num_starting != 0 || !h2o_linklist_is_empty(&pool->queue))
            continue;
        h2o_linklist_unlink(&pool->registry_link);
        pthread_mutex_destroy(&pool->lock);
        h2p_config_release(pool->config);
        free(pool->crashes);
        free(pool->endpoint_down_until);
        free(pool);
    }
    pthread_mutex_unlock(&h2p_pools_lock);
}

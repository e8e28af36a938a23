/* Password checks on a pool of threads (see crypt_pool.h). */
#include "native-modules/crypt_pool.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "frontend/log.h"

#define MAX_THREADS 8
/* The event loops run at 0 and get the CPU first when it is short; 5 (a third of a loop's weight)
 * rather than more: at 10, on a host busy with other work, checks got so little CPU that a login
 * waited many seconds. */
#define THREAD_NICENESS 5

static struct {
    pthread_mutex_t lock;
    pthread_cond_t work;
    h2o_linklist_t queue;                  /* jobs waiting for a thread (followers are not queued) */
    h2p_crypt_job_t *running[MAX_THREADS]; /* the job each thread computes, for sharing */
    size_t jobs;                           /* submitted, not yet sent back (followers included) */
    pthread_t threads[MAX_THREADS];
    size_t num_threads;
    int started, stopping;
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, {&pool.queue, &pool.queue}};

/* Sends `job` and its followers back, each to its own thread, with `result`. */
static void answer(h2p_crypt_job_t *job, const h2p_htpasswd_user_t *result)
{
    while (job != NULL) {
        h2p_crypt_job_t *next = job->_followers; /* the receiver may free the job at once */
        job->result = result;
        h2o_multithread_send_message(job->receiver, &job->message);
        job = next;
    }
}

/* Takes a computed job and its followers out of the pool's hands: a cancel cannot reach them now. */
static void detach_locked(h2p_crypt_job_t *job)
{
    for (; job != NULL; job = job->_followers) {
        job->_leader = NULL;
        pool.jobs--;
    }
}

static void *thread_main(void *arg)
{
    size_t self = (size_t)arg;
    /* a thread's nice value is its own on Linux: these yield to the event loops when CPUs are short */
    setpriority(PRIO_PROCESS, (id_t)gettid(), THREAD_NICENESS);

    pthread_mutex_lock(&pool.lock);
    while (!pool.stopping) {
        if (h2o_linklist_is_empty(&pool.queue)) {
            pthread_cond_wait(&pool.work, &pool.lock);
            continue;
        }
        h2p_crypt_job_t *job = H2O_STRUCT_FROM_MEMBER(h2p_crypt_job_t, _queued, pool.queue.next);
        h2o_linklist_unlink(&job->_queued);
        pool.running[self] = job; /* identical checks submitted from now on join it */
        pthread_mutex_unlock(&pool.lock);
        const h2p_htpasswd_user_t *result =
            h2p_htpasswd_verify(&job->users->users, job->user, job->user_len, job->password, job->password_len);
        pthread_mutex_lock(&pool.lock);
        pool.running[self] = NULL;
        detach_locked(job);
        pthread_mutex_unlock(&pool.lock);
        answer(job, result);
        pthread_mutex_lock(&pool.lock);
    }
    pthread_mutex_unlock(&pool.lock);
    return NULL;
}

static size_t thread_count(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus < 1 ? 1 : cpus > MAX_THREADS ? MAX_THREADS : (size_t)cpus;
}

static void start_locked(void)
{
    pool.started = 1;
    size_t wanted_threads = thread_count();
    for (size_t i = 0; i != wanted_threads; ++i) {
        if (pthread_create(&pool.threads[pool.num_threads], NULL, thread_main, (void *)pool.num_threads) != 0)
            break;
        pthread_setname_np(pool.threads[pool.num_threads], "h2pool-crypt");
        pool.num_threads++;
    }
    if (pool.num_threads == 0)
        h2p_error("authentication", "cannot start a thread to check passwords: every basic authentication gets 503");
}

/* A job queued or running with the same credentials against the same snapshot, or NULL. */
static h2p_crypt_job_t *find_same_locked(const h2p_crypt_job_t *job)
{
    for (size_t i = 0; i != pool.num_threads; ++i) {
        h2p_crypt_job_t *other = pool.running[i];
        if (other != NULL && other->users == job->users && CRYPTO_memcmp(other->key, job->key, sizeof(job->key)) == 0)
            return other;
    }
    for (h2o_linklist_t *l = pool.queue.next; l != &pool.queue; l = l->next) {
        h2p_crypt_job_t *other = H2O_STRUCT_FROM_MEMBER(h2p_crypt_job_t, _queued, l);
        if (other->users == job->users && CRYPTO_memcmp(other->key, job->key, sizeof(job->key)) == 0)
            return other;
    }
    return NULL;
}

int h2p_crypt_pool_submit(h2p_crypt_job_t *job)
{
    int ret = -1;
    job->result = NULL;
    job->_followers = job->_leader = NULL;
    job->_queued = (h2o_linklist_t){NULL, NULL};
    job->message.link = (h2o_linklist_t){NULL, NULL};

    pthread_mutex_lock(&pool.lock);
    if (!pool.started)
        start_locked();
    if (pool.num_threads == 0 || pool.stopping || pool.jobs >= H2P_CRYPT_POOL_MAX_JOBS)
        goto Exit;
    h2p_crypt_job_t *leader = find_same_locked(job);
    if (leader != NULL) {
        job->_leader = leader;
        job->_followers = leader->_followers;
        leader->_followers = job;
    } else {
        h2o_linklist_insert(&pool.queue, &job->_queued);
        pthread_cond_signal(&pool.work);
    }
    pool.jobs++;
    ret = 0;
Exit:
    pthread_mutex_unlock(&pool.lock);
    return ret;
}

void h2p_crypt_pool_cancel(h2p_crypt_job_t *job)
{
    int dropped = 1;
    pthread_mutex_lock(&pool.lock);
    if (h2o_linklist_is_linked(&job->_queued)) {
        h2p_crypt_job_t *heir = job->_followers; /* takes the job's place in the queue */
        if (heir != NULL) {
            h2o_linklist_insert(&job->_queued, &heir->_queued);
            heir->_leader = NULL;
            for (h2p_crypt_job_t *f = heir->_followers; f != NULL; f = f->_followers)
                f->_leader = heir;
        }
        h2o_linklist_unlink(&job->_queued);
    } else if (job->_leader != NULL) {
        h2p_crypt_job_t *prev = job->_leader;
        while (prev->_followers != job)
            prev = prev->_followers;
        prev->_followers = job->_followers;
    } else {
        dropped = 0; /* being computed, or on its way back */
    }
    if (dropped) {
        job->_followers = job->_leader = NULL;
        pool.jobs--;
    }
    pthread_mutex_unlock(&pool.lock);
    if (dropped)
        answer(job, NULL);
}

void h2p_crypt_pool_stop(void)
{
    pthread_mutex_lock(&pool.lock);
    pool.stopping = 1;
    pthread_cond_broadcast(&pool.work);
    pthread_mutex_unlock(&pool.lock);
    for (size_t i = 0; i != pool.num_threads; ++i)
        pthread_join(pool.threads[i], NULL);
    pool.num_threads = 0;
}

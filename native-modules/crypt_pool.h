/*
 * Password checks off the event loops (the role of IIS's token cache and LogonUser beside its
 * request threads).  crypt(3) of a bcrypt hash holds a CPU for up to a quarter of a second (the
 * cap, htpasswd.h): run on a front-end thread, it would stall every connection of that loop.
 *
 * A fixed pool of threads takes checks from one bounded queue, computes each with crypt_rn and
 * a struct crypt_data of its own (crypt() shares one static buffer, crypt_rn does not), and
 * posts the result back to the receiver the job names: the requesting thread's event loop,
 * as an h2o_multithread message, so the request never leaves its loop.  Checks of the same
 * credentials against the same users-file snapshot that are queued or running at the same time
 * share one computation (a browser opening six connections with new credentials costs one).
 *
 * A submitted job always comes back, exactly once, cancelled or not: the receiver owns and frees
 * it.  The pool's threads are started by the first submission and run at a lower scheduling
 * priority than the event loops, so a storm of checks cannot take the CPU from them either.
 */
#ifndef H2POOL_CRYPT_POOL_H
#define H2POOL_CRYPT_POOL_H

#include <h2o.h>
#include <openssl/sha.h>

#include "native-modules/credfile.h"

#define H2P_CRYPT_POOL_MAX_JOBS 1024 /* submitted and not yet answered; beyond it a submission is refused */

typedef struct h2p_crypt_job {
    h2o_multithread_message_t message;    /* the result comes back on it */
    h2o_multithread_receiver_t *receiver; /* of the thread that asked */
    h2p_credfile_snapshot_t *users;       /* the snapshot to check against; held by the submitter */
    const char *user, *password;          /* not NUL-terminated; owned by the submitter */
    size_t user_len, password_len;
    unsigned char key[SHA256_DIGEST_LENGTH]; /* names the credentials: equal keys share a computation */
    const h2p_htpasswd_user_t *result;       /* when it comes back: the user in `users`, or NULL */
    /* the pool's */
    h2o_linklist_t _queued;           /* a job that waits for a thread */
    struct h2p_crypt_job *_followers; /* the next job sharing the computation of a queued or running job */
    struct h2p_crypt_job *_leader;    /* of a follower: the job it shares the computation of */
} h2p_crypt_job_t;

/*
 * Queues a check (on any thread).  0: the job comes back on its receiver with `result` set.
 * -1: refused (H2P_CRYPT_POOL_MAX_JOBS are waiting, or no thread could be started); the job is
 * the caller's again.
 */
int h2p_crypt_pool_submit(h2p_crypt_job_t *job);

/* Nobody waits for the result any more (the client left).  A job still waiting leaves the queue
 * at once (its place is free for another check) and comes back without a result; one being
 * computed comes back when it is done.  On the receiver's thread. */
void h2p_crypt_pool_cancel(h2p_crypt_job_t *job);

/* Stops and joins the threads (at exit, once the event loops are gone). */
void h2p_crypt_pool_stop(void);

#endif

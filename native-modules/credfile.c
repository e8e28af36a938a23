/* Users and groups files that follow their changes (see credfile.h). */
#include "native-modules/credfile.h"
#include "frontend/alloc.h"

#include <errno.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "frontend/log.h"

/* What stat() said about a file: a change of any of it means the file may have changed. */
typedef struct file_signature {
    int error; /* errno of stat(), 0 when it succeeded */
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
} file_signature_t;

struct h2p_credfile {
    h2p_credfile_kind_t kind;
    char *path;
    unsigned refs; /* handlers that opened it, plus the watcher while it checks it; under registry.lock */
    struct h2p_credfile *next;

    pthread_mutex_t load_lock;                  /* one reader of the file at a time (the watcher, or an open) */
    file_signature_t seen;                      /* of the content `current` came from; under load_lock */
    int recheck;                                /* that content was read in the same second it was written: read again */
    unsigned char digest[SHA256_DIGEST_LENGTH]; /* of that content's bytes */
    char last_error[512];                       /* logged once per distinct error */

    pthread_mutex_t lock; /* guards `current`: held for a pointer copy only */
    h2p_credfile_snapshot_t *current;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake; /* the watcher waits on it between checks; signalled to stop it */
    h2p_credfile_t *files;
    int watcher_running, stopping;
    pthread_t watcher;
} registry = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

static uint64_t next_snapshot_id = 1; /* atomic */

static const char *kind_name(h2p_credfile_kind_t kind)
{
    return kind == H2P_CREDFILE_USERS ? "users file" : "groups file";
}

/* ---- snapshots -------------------------------------------------------------------------- */

h2p_credfile_snapshot_t *h2p_credfile_acquire(h2p_credfile_t *file)
{
    pthread_mutex_lock(&file->lock);
    h2p_credfile_snapshot_t *snapshot = file->current;
    __atomic_add_fetch(&snapshot->refcnt, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&file->lock);
    return snapshot;
}

void h2p_credfile_release(h2p_credfile_snapshot_t *snapshot)
{
    if (__atomic_sub_fetch(&snapshot->refcnt, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    h2p_htpasswd_dispose(&snapshot->users);
    h2p_groups_dispose(&snapshot->groups);
    free(snapshot);
}

static h2p_credfile_snapshot_t *new_snapshot(void)
{
    h2p_credfile_snapshot_t *snapshot = h2p_calloc(1, sizeof(*snapshot));
    snapshot->id = __atomic_fetch_add(&next_snapshot_id, 1, __ATOMIC_RELAXED);
    snapshot->refcnt = 1; /* the file's */
    return snapshot;
}

static void swap_in(h2p_credfile_t *file, h2p_credfile_snapshot_t *snapshot)
{
    pthread_mutex_lock(&file->lock);
    h2p_credfile_snapshot_t *old = file->current;
    file->current = snapshot;
    pthread_mutex_unlock(&file->lock);
    if (old != NULL)
        h2p_credfile_release(old);
}

/* ---- reading ---------------------------------------------------------------------------- */

static file_signature_t signature_of(const char *path)
{
    struct stat st;
    file_signature_t sig = {0};
    if (stat(path, &st) != 0) {
        sig.error = errno;
        return sig;
    }
    sig.dev = st.st_dev;
    sig.ino = st.st_ino;
    sig.size = st.st_size;
    sig.mtime = st.st_mtim;
    sig.ctime = st.st_ctim;
    return sig;
}

static int same_time(struct timespec a, struct timespec b)
{
    return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

static int same_signature(const file_signature_t *a, const file_signature_t *b)
{
    if (a->error != 0 || b->error != 0)
        return a->error == b->error;
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size && same_time(a->mtime, b->mtime) &&
           same_time(a->ctime, b->ctime);
}

/* Written within the last two seconds: a second write in the same clock tick would leave the
 * signature as it is, so such content is read again at the next check (as git's "racy" index). */
static int recently_written(const file_signature_t *sig)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    time_t newest = sig->mtime.tv_sec > sig->ctime.tv_sec ? sig->mtime.tv_sec : sig->ctime.tv_sec;
    return sig->error == 0 && newest + 2 >= now.tv_sec && newest <= now.tv_sec + 2;
}

/* Parses `text` into a usable snapshot, or NULL with `err`. */
static h2p_credfile_snapshot_t *parse(h2p_credfile_kind_t kind, const char *path, const char *text, size_t len, char *err,
                                      size_t errlen)
{
    h2p_credfile_snapshot_t *snapshot = new_snapshot();
    int ret = kind == H2P_CREDFILE_USERS ? h2p_htpasswd_parse(&snapshot->users, text, len, path, err, errlen)
                                         : h2p_groups_parse(&snapshot->groups, text, len, path, err, errlen);
    if (ret != 0) {
        free(snapshot);
        return NULL;
    }
    snapshot->usable = 1;
    return snapshot;
}

/*
 * Reads the file again and swaps in what it says now: its content, or an unusable snapshot when
 * it cannot be read or parsed (fail closed).  Content equal to the current one changes nothing,
 * so caches keyed on the snapshot survive a touch or a rewrite with the same text.  Returns 0, or
 * -1 with `err` when the file is unusable.  Called with load_lock held.
 */
static int reload_locked(h2p_credfile_t *file, const file_signature_t *sig, char *err, size_t errlen)
{
    size_t len = 0;
    unsigned char digest[SHA256_DIGEST_LENGTH];
    h2p_credfile_snapshot_t *snapshot = NULL;
    char *text = h2p_htpasswd_read_file(file->path, &len, err, errlen);

    file->seen = *sig;
    file->recheck = recently_written(sig);
    if (text != NULL) {
        SHA256((const unsigned char *)text, len, digest);
        if (file->current != NULL && file->current->usable && memcmp(digest, file->digest, sizeof(digest)) == 0) {
            free(text);
            return 0;
        }
        snapshot = parse(file->kind, file->path, text, len, err, errlen);
        free(text);
    }
    if (snapshot != NULL) {
        memcpy(file->digest, digest, sizeof(digest));
        file->last_error[0] = '\0';
        if (file->current != NULL)
            h2p_notice(NULL, "%s %s changed: %zu %s", kind_name(file->kind), file->path,
                       file->kind == H2P_CREDFILE_USERS ? snapshot->users.count : snapshot->groups.count,
                       file->kind == H2P_CREDFILE_USERS ? "users" : "groups");
        swap_in(file, snapshot);
        return 0;
    }
    if (file->current == NULL || file->current->usable || strcmp(err, file->last_error) != 0) {
        snprintf(file->last_error, sizeof(file->last_error), "%s", err);
        if (file->current != NULL)
            h2p_error(NULL, "%s %s: %s; %s until it is fixed", kind_name(file->kind), file->path, err,
                      file->kind == H2P_CREDFILE_USERS ? "no credentials are accepted"
                                                       : "requests that need a group membership are denied");
        swap_in(file, new_snapshot());
    }
    return -1;
}

/* ---- the watcher ------------------------------------------------------------------------ */

static void check_file(h2p_credfile_t *file)
{
    char err[1024];
    pthread_mutex_lock(&file->load_lock);
    file_signature_t sig = signature_of(file->path);
    if (file->recheck || !same_signature(&sig, &file->seen))
        reload_locked(file, &sig, err, sizeof(err));
    pthread_mutex_unlock(&file->load_lock);
}

static void free_file(h2p_credfile_t *file)
{
    if (file->current != NULL)
        h2p_credfile_release(file->current);
    pthread_mutex_destroy(&file->lock);
    pthread_mutex_destroy(&file->load_lock);
    free(file->path);
    free(file);
}

static void unref_locked(h2p_credfile_t *file)
{
    if (--file->refs != 0)
        return;
    for (h2p_credfile_t **p = &registry.files; *p != NULL; p = &(*p)->next) {
        if (*p == file) {
            *p = file->next;
            break;
        }
    }
    free_file(file);
}

/* Waits H2P_CREDFILE_CHECK_MS or until stopped; returns with registry.lock held. */
static void wait_interval_locked(void)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_nsec += H2P_CREDFILE_CHECK_MS * 1000000L;
    deadline.tv_sec += deadline.tv_nsec / 1000000000L;
    deadline.tv_nsec %= 1000000000L;
    while (!registry.stopping && pthread_cond_timedwait(&registry.wake, &registry.lock, &deadline) == 0)
        ;
}

/* Checks every open file each H2P_CREDFILE_CHECK_MS: reads happen here, never on an event loop. */
static void *watch_main(void *arg)
{
    pthread_mutex_lock(&registry.lock);
    for (;;) {
        wait_interval_locked();
        if (registry.stopping)
            break;
        size_t count = 0;
        for (h2p_credfile_t *f = registry.files; f != NULL; f = f->next)
            ++count;
        if (count == 0)
            continue;
        /* held while checked: a close meanwhile does not free them, and no lock is held while reading */
        h2p_credfile_t **files = h2o_mem_alloc(count * sizeof(*files));
        count = 0;
        for (h2p_credfile_t *f = registry.files; f != NULL; f = f->next) {
            f->refs++;
            files[count++] = f;
        }
        pthread_mutex_unlock(&registry.lock);
        for (size_t i = 0; i != count; ++i)
            check_file(files[i]);
        pthread_mutex_lock(&registry.lock);
        for (size_t i = 0; i != count; ++i)
            unref_locked(files[i]);
        free(files);
    }
    pthread_mutex_unlock(&registry.lock);
    return NULL;
}

static void start_watcher_locked(void)
{
    if (registry.watcher_running || registry.stopping)
        return;
    if (pthread_create(&registry.watcher, NULL, watch_main, NULL) == 0)
        registry.watcher_running = 1;
    else
        h2p_error(NULL, "cannot start the thread that watches users and groups files: changes need a reload");
}

void h2p_credfile_stop_watching(void)
{
    pthread_mutex_lock(&registry.lock);
    int running = registry.watcher_running;
    registry.stopping = 1;
    registry.watcher_running = 0;
    pthread_cond_signal(&registry.wake);
    pthread_mutex_unlock(&registry.lock);
    if (running)
        pthread_join(registry.watcher, NULL);
}

/* ---- open, close ------------------------------------------------------------------------ */

h2p_credfile_t *h2p_credfile_open(h2p_credfile_kind_t kind, const char *path, char *err, size_t errlen)
{
    pthread_mutex_lock(&registry.lock);
    h2p_credfile_t *file = registry.files;
    while (file != NULL && !(file->kind == kind && strcmp(file->path, path) == 0))
        file = file->next;
    if (file == NULL) {
        file = h2p_calloc(1, sizeof(*file));
        file->kind = kind;
        file->path = h2p_strdup(path);
        pthread_mutex_init(&file->load_lock, NULL);
        pthread_mutex_init(&file->lock, NULL);
        file->next = registry.files;
        registry.files = file;
    }
    file->refs++;
    start_watcher_locked();
    pthread_mutex_unlock(&registry.lock);

    /* read now: a configuration naming a broken file is refused, as it was before files were watched */
    pthread_mutex_lock(&file->load_lock);
    file_signature_t sig = signature_of(file->path);
    int ret = reload_locked(file, &sig, err, errlen);
    pthread_mutex_unlock(&file->load_lock);
    if (ret != 0) {
        h2p_credfile_close(file);
        return NULL;
    }
    return file;
}

void h2p_credfile_close(h2p_credfile_t *file)
{
    pthread_mutex_lock(&registry.lock);
    unref_locked(file);
    pthread_mutex_unlock(&registry.lock);
}

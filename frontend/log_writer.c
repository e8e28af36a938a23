/* See log_writer.h: the background writer of access logs and failed-request traces. */
#include "frontend/log_writer.h"
#include "frontend/alloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frontend/log.h"

#define CHUNK_SIZE (64 * 1024)           /* a thread's buffer: a few hundred lines */
#define LOG_WRITER_MAX_QUEUED (16 << 20) /* full buffers waiting for the writer; beyond: dropped */
#define SWEEP_MS 100                     /* partly filled buffers are collected this often */
#define OUT_BUFFER (64 * 1024)           /* per file: one write() per batch, or per 64 KiB */
#define MAX_TARGETS 1024                 /* distinct (directory, format, rotation) settings */
#define ALIGN8(n) (((n) + 7) & ~(size_t)7)

/* An entry in a chunk: this head, then `len` bytes, padded to 8. */
typedef struct entry_head {
    uint32_t len;
    int32_t target;
    int64_t when;
} entry_head_t;

typedef struct chunk {
    struct chunk *next;
    size_t len, cap, entries;
    char data[];
} chunk_t;

/* Each thread that appends has one: only it and the writer's sweep take its lock. */
typedef struct thread_buffer {
    pthread_mutex_t lock;
    chunk_t *chunk;
    struct thread_buffer *next;
} thread_buffer_t;

typedef struct target {
    h2p_log_target_conf_t conf; /* conf.dir is owned */
    /* below: the writer thread's alone */
    int fd;
    long period;     /* of the open file: yyyymmdd (daily), yyyymmddhh (hourly), 0 */
    unsigned number; /* u_extendN: 0 until the directory was looked at */
    uint64_t size;
    char *out; /* what waits for the next write() to fd */
    size_t out_len;
    int failing;    /* an error was logged; the next success clears it */
    int fresh;      /* the open file was empty and has no line yet: a size rotation would not help */
    int header_due; /* the W3C header goes before the next line */
    char **traces;  /* trace file names in the directory, oldest first */
    size_t num_traces, traces_cap;
    int scanned;
} target_t;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    int running, stopping, reopen, partial;
    thread_buffer_t *buffers; /* every thread that appended; never freed (threads may outlive a stop) */
    chunk_t *queue, **queue_tail;
    size_t queued;
    target_t *targets[MAX_TARGETS];
    size_t num_targets;
    unsigned trace_seq;
    uint64_t dropped_reported;
} writer = {.lock = PTHREAD_MUTEX_INITIALIZER, .queue_tail = &writer.queue};

static atomic_int accepting = 1;
static atomic_uint_fast64_t dropped;
/*
 * The calling thread's buffer: the one per-thread variable kept outside h2p_thread_t
 * (frontend/server.h), on purpose.  This writer is a lower layer (h2pool_core, which the unit
 * tests link without the server): it cannot see h2p_thread_t, and its callers are not only the
 * front-end loops (the native modules' logging and traces, through h2p_log_writer_append, whose
 * signature does not name a thread) but any thread, the unit tests' included.  So it keeps its
 * own pointer, registered on a thread's first append; the buffer itself is in writer.buffers,
 * which owns it and outlives every thread (the writer collects what a finished thread left).
 */
static __thread thread_buffer_t *my_buffer;

/* ---- targets ------------------------------------------------------------------------------ */

static int same_target(const h2p_log_target_conf_t *a, const h2p_log_target_conf_t *b)
{
    return strcmp(a->dir, b->dir) == 0 && a->kind == b->kind && a->rotate == b->rotate && a->max_size == b->max_size &&
           a->max_files == b->max_files;
}

int h2p_log_writer_target(const h2p_log_target_conf_t *conf)
{
    int id = -1;
    pthread_mutex_lock(&writer.lock);
    for (size_t i = 0; i != writer.num_targets; ++i)
        if (same_target(&writer.targets[i]->conf, conf))
            id = (int)i;
    if (id < 0 && writer.num_targets < MAX_TARGETS) {
        target_t *t = h2p_calloc(1, sizeof(*t));
        t->conf = *conf;
        t->conf.dir = h2p_strdup(conf->dir);
        t->fd = -1;
        id = (int)writer.num_targets;
        writer.targets[writer.num_targets++] = t;
    }
    pthread_mutex_unlock(&writer.lock);
    return id;
}

/* ---- the event loops' side ------------------------------------------------------------------ */

static thread_buffer_t *register_buffer(void)
{
    thread_buffer_t *tb = h2p_calloc(1, sizeof(*tb));
    pthread_mutex_init(&tb->lock, NULL);
    pthread_mutex_lock(&writer.lock);
    tb->next = writer.buffers;
    writer.buffers = tb;
    pthread_mutex_unlock(&writer.lock);
    return my_buffer = tb;
}

/* A full chunk goes to the writer's queue, unless too much waits there already. */
static void hand_over(chunk_t *chunk)
{
    pthread_mutex_lock(&writer.lock);
    if (writer.queued + chunk->cap > LOG_WRITER_MAX_QUEUED) {
        atomic_fetch_add(&dropped, chunk->entries);
        free(chunk);
    } else {
        chunk->next = NULL;
        *writer.queue_tail = chunk;
        writer.queue_tail = &chunk->next;
        writer.queued += chunk->cap;
        if (writer.running)
            pthread_cond_signal(&writer.wake);
    }
    pthread_mutex_unlock(&writer.lock);
}

/* A thread started a new buffer: the writer collects it within SWEEP_MS, full or not. */
static void note_partial(void)
{
    pthread_mutex_lock(&writer.lock);
    if (!writer.partial) {
        writer.partial = 1;
        if (writer.running)
            pthread_cond_signal(&writer.wake);
    }
    pthread_mutex_unlock(&writer.lock);
}

int h2p_log_writer_append(int target, time_t when, const char *data, size_t len)
{
    if (target < 0 || len > UINT32_MAX || !atomic_load_explicit(&accepting, memory_order_relaxed)) {
        atomic_fetch_add(&dropped, 1);
        return -1;
    }
    thread_buffer_t *tb = my_buffer != NULL ? my_buffer : register_buffer();
    size_t need = sizeof(entry_head_t) + ALIGN8(len);
    int fresh = 0;

    pthread_mutex_lock(&tb->lock);
    if (tb->chunk != NULL && tb->chunk->len + need > tb->chunk->cap) {
        hand_over(tb->chunk); /* (under our lock: this thread's entries keep their order) */
        tb->chunk = NULL;
    }
    if (tb->chunk == NULL) {
        size_t cap = need > CHUNK_SIZE ? need : CHUNK_SIZE;
        if ((tb->chunk = h2o_mem_alloc(sizeof(chunk_t) + cap)) == NULL) {
            pthread_mutex_unlock(&tb->lock);
            atomic_fetch_add(&dropped, 1);
            return -1;
        }
        *tb->chunk = (chunk_t){NULL, 0, cap, 0};
        fresh = 1;
    }
    chunk_t *c = tb->chunk;
    entry_head_t head = {(uint32_t)len, target, (int64_t)when};
    memcpy(c->data + c->len, &head, sizeof(head));
    memcpy(c->data + c->len + sizeof(head), data, len);
    c->len += need;
    c->entries++;
    pthread_mutex_unlock(&tb->lock);
    if (fresh)
        note_partial();
    return 0;
}

uint64_t h2p_log_writer_dropped(void)
{
    return atomic_load(&dropped);
}

/* ---- files -------------------------------------------------------------------------------- */

static void write_all(int fd, const char *p, size_t len, int *err)
{
    while (len != 0) {
        ssize_t r = write(fd, p, len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            *err = errno;
            return;
        }
        p += r;
        len -= (size_t)r;
    }
}

/* mkdir -p; 0 when `path` is a directory at the end. */
static int make_dirs(const char *path, uid_t uid, gid_t gid, int chown_created)
{
    char buf[PATH_MAX];
    struct stat st;
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return -1;
    for (char *p = buf + 1;; ++p) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (stat(buf, &st) != 0) {
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return -1;
            if (chown_created && chown(buf, uid, gid) != 0)
                return -1;
        }
        *p = saved;
        if (saved == '\0')
            break;
    }
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : -1;
}

static void report_failure(target_t *t, const char *what, const char *path, int err)
{
    atomic_fetch_add(&dropped, 1);
    if (t->failing)
        return; /* once until it works again */
    t->failing = 1;
    h2p_error(NULL, "%s %s: %s (entries are dropped until it works again)", what, path, strerror(err));
}

static void flush_target(target_t *t)
{
    if (t->out_len == 0 || t->fd < 0)
        return;
    int err = 0;
    write_all(t->fd, t->out, t->out_len, &err);
    if (err != 0)
        report_failure(t, "access log in", t->conf.dir, err);
    t->out_len = 0;
}

static void close_target(target_t *t)
{
    flush_target(t);
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
}

static void buffer_text(target_t *t, const char *p, size_t len)
{
    if (t->out == NULL)
        t->out = h2o_mem_alloc(OUT_BUFFER);
    if (t->out_len + len > OUT_BUFFER)
        flush_target(t);
    if (len > OUT_BUFFER) {
        int err = 0;
        write_all(t->fd, p, len, &err);
        if (err != 0)
            report_failure(t, "access log in", t->conf.dir, err);
    } else {
        memcpy(t->out + t->out_len, p, len);
        t->out_len += len;
    }
    t->size += len;
}

static long period_of(h2p_log_rotation_t rotate, time_t when)
{
    struct tm tm;
    gmtime_r(&when, &tm);
    long day = (tm.tm_year + 1900L) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday;
    switch (rotate) {
    case H2P_ROTATE_DAILY:
        return day;
    case H2P_ROTATE_HOURLY:
        return day * 100 + tm.tm_hour;
    default:
        return 0;
    }
}

/* The highest N of the u_extendN.log files in the directory (0 when there is none). */
static unsigned highest_extend_number(const char *dir)
{
    unsigned highest = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        unsigned n;
        char tail[8];
        if (sscanf(e->d_name, "u_extend%u.%7s", &n, tail) == 2 && strcmp(tail, "log") == 0 && n > highest)
            highest = n;
    }
    closedir(d);
    return highest;
}

static void file_name(target_t *t, long period, char *path, size_t size)
{
    switch (t->conf.rotate) {
    case H2P_ROTATE_DAILY: /* IIS: u_ex + yymmdd, "u_" for UTC */
        snprintf(path, size, "%s/u_ex%06ld.log", t->conf.dir, period % 1000000);
        break;
    case H2P_ROTATE_HOURLY:
        snprintf(path, size, "%s/u_ex%08ld.log", t->conf.dir, period % 100000000);
        break;
    default:
        snprintf(path, size, "%s/u_extend%u.log", t->conf.dir, t->number);
        break;
    }
}

/* The W3C header, written before the first line of each file opened (IIS writes it again after
 * each restart). */
static size_t format_header(char *header, size_t size)
{
    static const char fields[] = "date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) "
                                 "cs(Referer) sc-status sc-substatus sc-win32-status time-taken";
    time_t now = time(NULL);
    struct tm tm;
    char date[32];
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
    int len = snprintf(header, size, "#Software: h2pool %s\n#Version: 1.0\n#Date: %s\n#Fields: %s\n", H2POOL_VERSION, date, fields);
    return len > 0 && (size_t)len < size ? (size_t)len : 0;
}

static void write_header(target_t *t)
{
    char header[512];
    buffer_text(t, header, format_header(header, sizeof(header)));
    t->header_due = 0;
}

/* Opens the file for `period` (by size: the current u_extendN that is not full yet). */
static int open_target(target_t *t, long period)
{
    char path[PATH_MAX];
    struct stat st;
    if (make_dirs(t->conf.dir, 0, 0, 0) != 0) {
        report_failure(t, "access log directory", t->conf.dir, errno);
        return -1;
    }
    if ((t->conf.rotate == H2P_ROTATE_SIZE || t->conf.rotate == H2P_ROTATE_NONE) && t->number == 0) {
        unsigned highest = highest_extend_number(t->conf.dir);
        t->number = highest != 0 ? highest : 1;
    }
    for (;;) {
        file_name(t, period, path, sizeof(path));
        if ((t->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640)) < 0) {
            report_failure(t, "access log", path, errno);
            return -1;
        }
        t->size = fstat(t->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
        if (t->conf.rotate != H2P_ROTATE_SIZE || t->size < t->conf.max_size)
            break;
        close(t->fd); /* full already (written before a restart): the next number */
        t->fd = -1;
        t->number++;
    }
    t->period = period;
    t->failing = 0;
    t->fresh = t->size == 0;
    t->header_due = t->conf.kind == H2P_LOG_FILE_W3C;
    return 0;
}

static void write_line(target_t *t, time_t when, const char *line, size_t len)
{
    long period = period_of(t->conf.rotate, when);
    /* a line of the previous period that arrives late goes to the current file */
    if (t->fd >= 0 && period > t->period)
        close_target(t);
    if (t->fd < 0 && open_target(t, period > t->period ? period : t->period) != 0)
        return;
    if (t->conf.rotate == H2P_ROTATE_SIZE && !t->fresh) {
        char header[512];
        size_t header_len = t->header_due ? format_header(header, sizeof(header)) : 0;
        if (t->size + header_len + len > t->conf.max_size) {
            close_target(t);
            t->number++;
            if (open_target(t, t->period) != 0)
                return;
        }
    }
    if (t->header_due)
        write_header(t);
    buffer_text(t, line, len);
    t->fresh = 0;
}

/* ---- trace files -------------------------------------------------------------------------- */

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void remember_trace(target_t *t, const char *name)
{
    if (t->num_traces == t->traces_cap) {
        t->traces_cap = t->traces_cap != 0 ? t->traces_cap * 2 : 64;
        t->traces = h2o_mem_realloc(t->traces, t->traces_cap * sizeof(*t->traces));
    }
    t->traces[t->num_traces++] = h2p_strdup(name);
}

/* Removes the oldest traces beyond max_files. */
static void trim_traces(target_t *t)
{
    size_t excess = t->num_traces > t->conf.max_files ? t->num_traces - t->conf.max_files : 0;
    char path[PATH_MAX];
    for (size_t i = 0; i != excess; ++i) {
        snprintf(path, sizeof(path), "%s/%s", t->conf.dir, t->traces[i]);
        unlink(path);
        free(t->traces[i]);
    }
    memmove(t->traces, t->traces + excess, (t->num_traces - excess) * sizeof(*t->traces));
    t->num_traces -= excess;
}

/* The traces a previous run left count toward max_files: their names sort by time. */
static void scan_traces(target_t *t)
{
    DIR *d = opendir(t->conf.dir);
    t->scanned = 1;
    if (d == NULL)
        return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t n = strlen(e->d_name);
        if (n > 7 && strncmp(e->d_name, "fr", 2) == 0 && strcmp(e->d_name + n - 5, ".json") == 0)
            remember_trace(t, e->d_name);
    }
    closedir(d);
    if (t->num_traces != 0)
        qsort(t->traces, t->num_traces, sizeof(*t->traces), compare_names);
}

/* One file per trace, written under a hidden name and renamed: a reader never sees half of one. */
static void write_trace(target_t *t, time_t when, const char *text, size_t len)
{
    char name[64], path[PATH_MAX], tmp[PATH_MAX];
    struct tm tm;
    int err = 0;
    if (make_dirs(t->conf.dir, 0, 0, 0) != 0) {
        report_failure(t, "trace directory", t->conf.dir, errno);
        return;
    }
    if (!t->scanned)
        scan_traces(t);
    gmtime_r(&when, &tm);
    size_t n = strftime(name, sizeof(name), "fr%Y%m%d-%H%M%S", &tm);
    snprintf(name + n, sizeof(name) - n, "-%06u.json", writer.trace_seq++ % 1000000);
    snprintf(path, sizeof(path), "%s/%s", t->conf.dir, name);
    snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", t->conf.dir, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0) {
        report_failure(t, "trace file", tmp, errno);
        return;
    }
    write_all(fd, text, len, &err);
    if (close(fd) != 0 && err == 0)
        err = errno;
    if (err == 0 && rename(tmp, path) != 0)
        err = errno;
    if (err != 0) {
        unlink(tmp);
        report_failure(t, "trace file", path, err);
        return;
    }
    t->failing = 0;
    remember_trace(t, name);
    trim_traces(t);
}

/* ---- the writer thread -------------------------------------------------------------------- */

static void write_chunks(chunk_t *chunk)
{
    while (chunk != NULL) {
        for (size_t off = 0; off < chunk->len;) {
            entry_head_t head;
            memcpy(&head, chunk->data + off, sizeof(head));
            const char *text = chunk->data + off + sizeof(head);
            target_t *t = writer.targets[head.target]; /* (published before any request used its id) */
            if (t->conf.kind == H2P_LOG_FILE_TRACES)
                write_trace(t, (time_t)head.when, text, head.len);
            else
                write_line(t, (time_t)head.when, text, head.len);
            off += sizeof(head) + ALIGN8(head.len);
        }
        chunk_t *next = chunk->next;
        free(chunk);
        chunk = next;
    }
}

/* Takes every thread's partly filled chunk. */
static chunk_t *sweep_buffers(void)
{
    chunk_t *list = NULL, **tail = &list;
    pthread_mutex_lock(&writer.lock);
    thread_buffer_t *tb = writer.buffers;
    pthread_mutex_unlock(&writer.lock);
    for (; tb != NULL; tb = tb->next) {
        pthread_mutex_lock(&tb->lock);
        chunk_t *c = tb->chunk;
        tb->chunk = NULL;
        pthread_mutex_unlock(&tb->lock);
        if (c != NULL) {
            c->next = NULL;
            *tail = c;
            tail = &c->next;
        }
    }
    return list;
}

static size_t target_count(void)
{
    pthread_mutex_lock(&writer.lock);
    size_t n = writer.num_targets;
    pthread_mutex_unlock(&writer.lock);
    return n;
}

static void flush_all(void)
{
    for (size_t i = 0, n = target_count(); i != n; ++i)
        flush_target(writer.targets[i]);
}

/* logrotate moved the files: the next line of each goes to a new one (opened now, with its header). */
static void reopen_all(void)
{
    for (size_t i = 0, n = target_count(); i != n; ++i) {
        target_t *t = writer.targets[i];
        if (t->fd < 0)
            continue;
        close_target(t);
        if (open_target(t, t->period) == 0 && t->header_due)
            write_header(t); /* the new file starts at once, header first */
    }
    flush_all();
}

static void report_drops(void)
{
    uint64_t now = atomic_load(&dropped);
    if (now == writer.dropped_reported)
        return;
    h2p_warn(NULL, "access log: %llu entries dropped (the log writer fell behind or a file could not be written)",
             (unsigned long long)(now - writer.dropped_reported));
    writer.dropped_reported = now;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void *writer_main(void *arg)
{
    uint64_t last_sweep = 0;
    pthread_mutex_lock(&writer.lock);
    for (;;) {
        while (writer.queue == NULL && !writer.stopping && !writer.reopen) {
            if (!writer.partial) {
                pthread_cond_wait(&writer.wake, &writer.lock);
                continue;
            }
            uint64_t due = last_sweep + SWEEP_MS, now = now_ms();
            if (now >= due)
                break;
            struct timespec deadline;
            clock_gettime(CLOCK_MONOTONIC, &deadline);
            deadline.tv_nsec += (long)(due - now) * 1000000;
            deadline.tv_sec += deadline.tv_nsec / 1000000000;
            deadline.tv_nsec %= 1000000000;
            pthread_cond_timedwait(&writer.wake, &writer.lock, &deadline);
        }
        int stopping = writer.stopping, reopen = writer.reopen;
        int sweep = stopping || (writer.partial && now_ms() >= last_sweep + SWEEP_MS);
        chunk_t *batch = writer.queue;
        writer.queue = NULL;
        writer.queue_tail = &writer.queue;
        writer.queued = 0;
        writer.reopen = 0;
        if (sweep)
            writer.partial = 0;
        pthread_mutex_unlock(&writer.lock);

        write_chunks(batch);
        if (sweep) {
            last_sweep = now_ms();
            write_chunks(sweep_buffers());
        }
        flush_all();
        if (reopen)
            reopen_all();
        report_drops();

        pthread_mutex_lock(&writer.lock);
        if (stopping && writer.queue == NULL)
            break;
    }
    pthread_mutex_unlock(&writer.lock);
    return NULL;
}

int h2p_log_writer_start(void)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&writer.wake, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_lock(&writer.lock);
    writer.stopping = 0;
    atomic_store(&accepting, 1);
    int rc = pthread_create(&writer.thread, NULL, writer_main, NULL);
    writer.running = rc == 0;
    pthread_mutex_unlock(&writer.lock);
    return rc == 0 ? 0 : -1;
}

void h2p_log_writer_stop(void)
{
    if (!writer.running)
        return;
    atomic_store(&accepting, 0);
    pthread_mutex_lock(&writer.lock);
    writer.stopping = 1;
    pthread_cond_signal(&writer.wake);
    pthread_mutex_unlock(&writer.lock);
    pthread_join(writer.thread, NULL);
    writer.running = 0;
    for (size_t i = 0; i != writer.num_targets; ++i) {
        target_t *t = writer.targets[i];
        close_target(t);
        for (size_t j = 0; j != t->num_traces; ++j)
            free(t->traces[j]);
        free(t->traces);
        free(t->out);
        free((char *)t->conf.dir);
        free(t);
    }
    writer.num_targets = 0;
}

void h2p_log_writer_reopen(void)
{
    pthread_mutex_lock(&writer.lock);
    writer.reopen = 1;
    if (writer.running)
        pthread_cond_signal(&writer.wake);
    pthread_mutex_unlock(&writer.lock);
}

/* ---- directories, before the front end gives up root ----------------------------------------- */

static void prepare_dir(const char *path, uid_t uid, gid_t gid)
{
    if (make_dirs(path, uid, gid, 1) != 0)
        h2p_warn(NULL, "cannot create %s: %s", path, strerror(errno));
}

typedef struct dir_owner {
    uid_t uid;
    gid_t gid;
} dir_owner_t;

static void prepare_module_dir(const char *path, void *arg)
{
    const dir_owner_t *owner = arg;
    prepare_dir(path, owner->uid, owner->gid);
}

void h2p_log_writer_prepare_dirs(const h2p_config_t *conf)
{
    if (geteuid() != 0)
        return;
    const char *user = conf->server.user != NULL ? conf->server.user : H2P_DEFAULT_SERVER_USER;
    struct passwd *pw = getpwnam(user);
    if (pw == NULL)
        return; /* (dropping privileges reports it) */
    uid_t uid = pw->pw_uid;
    gid_t gid = pw->pw_gid;
    struct group *gr = conf->server.group != NULL ? getgrnam(conf->server.group) : NULL;
    if (gr != NULL)
        gid = gr->gr_gid;
    if (conf->server.log_dir != NULL)
        prepare_dir(conf->server.log_dir, uid, gid);
    dir_owner_t owner = {uid, gid};
    for (size_t s = 0; s != conf->num_sites; ++s) {
        const h2p_site_conf_t *site = conf->sites + s;
        /* (the site's own settings are its root application's) */
        for (size_t a = 0; a != site->num_applications; ++a)
            h2p_modules_prepare_dirs(conf, site, &site->applications[a].scope.modules, prepare_module_dir, &owner);
        for (size_t l = 0; l != site->num_locations; ++l)
            h2p_modules_prepare_dirs(conf, site, &site->locations[l].scope.modules, prepare_module_dir, &owner);
    }
}

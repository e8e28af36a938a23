#include "frontend/log.h"

#include <arpa/inet.h>
#include "frontend/alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_QUEUE_BYTES (1 << 20) /* lines waiting for the writer; beyond this they are dropped */
#define LOG_LINE_MAX 4096
#define RECENT_LINE_MAX 512 /* the management page shows recent problems, not whole lines */

static struct {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    pthread_t writer;
    int running, stopping, fd;
    char *queue;
    size_t queued;
    unsigned long dropped;
    h2p_log_level_t level;
    /* the last errors and warnings, for the management endpoint (a ring, under mutex) */
    struct {
        char line[RECENT_LINE_MAX];
        h2p_log_level_t level;
    } recent[H2P_LOG_RECENT];
    size_t recent_head, recent_count;
} logger = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 2, NULL, 0, 0, H2P_LOG_INFO};

static const char *level_names[] = {"error", "warn", "notice", "info", "debug"};

static void write_all(int fd, const char *p, size_t len)
{
    while (len != 0) {
        ssize_t r = write(fd, p, len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report a failing error log */
        }
        p += r;
        len -= (size_t)r;
    }
}

static void *writer_main(void *arg)
{
    char *batch = h2o_mem_alloc(LOG_QUEUE_BYTES);
    pthread_mutex_lock(&logger.mutex);
    for (;;) {
        while (logger.queued == 0 && !logger.stopping)
            pthread_cond_wait(&logger.cond, &logger.mutex);
        if (logger.queued == 0 && logger.stopping)
            break;
        size_t len = logger.queued;
        memcpy(batch, logger.queue, len);
        logger.queued = 0;
        pthread_mutex_unlock(&logger.mutex);
        write_all(logger.fd, batch, len);
        pthread_mutex_lock(&logger.mutex);
    }
    pthread_mutex_unlock(&logger.mutex);
    free(batch);
    return NULL;
}

static char *open_path; /* the file h2p_log_open opened, for the lifetime of the process */

int h2p_log_open(const char *path)
{
    int fd = 2;
    if (path != NULL && (fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640)) < 0)
        return -1;
    free(open_path);
    open_path = path != NULL ? strdup(path) : NULL;
    logger.fd = fd;
    logger.queue = h2o_mem_alloc(LOG_QUEUE_BYTES);
    if (logger.queue == NULL || pthread_create(&logger.writer, NULL, writer_main, NULL) != 0)
        return -1;
    logger.running = 1;
    return 0;
}

int h2p_log_is_open(const char *path)
{
    return path != NULL && open_path != NULL && strcmp(path, open_path) == 0;
}

void h2p_log_close(void)
{
    if (!logger.running)
        return;
    pthread_mutex_lock(&logger.mutex);
    logger.stopping = 1;
    pthread_cond_signal(&logger.cond);
    pthread_mutex_unlock(&logger.mutex);
    pthread_join(logger.writer, NULL);
    logger.running = 0;
    logger.stopping = 0;
    free(logger.queue);
    logger.queue = NULL;
    if (logger.fd != 2)
        close(logger.fd);
    logger.fd = 2;
}

void h2p_log_set_level(h2p_log_level_t level)
{
    logger.level = level;
}

void h2p_logv(h2p_log_level_t level, const char *scope, const char *fmt, va_list args)
{
    if (level > logger.level)
        return;

    char line[LOG_LINE_MAX];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    int len = (int)strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    len += snprintf(line + len, sizeof(line) - len, ".%03ldZ [%s] ", now.tv_nsec / 1000000, level_names[level]);
    if (scope != NULL)
        len += snprintf(line + len, sizeof(line) - len, "[%s] ", scope);
    int body = vsnprintf(line + len, sizeof(line) - len, fmt, args);
    len = body < 0 || len + body >= (int)sizeof(line) - 1 ? (int)sizeof(line) - 2 : len + body;
    /* one event is one line: an embedded newline (e.g. from a worker's stderr) is escaped */
    for (char *p = line; p != line + len; ++p)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    line[len++] = '\n';

    pthread_mutex_lock(&logger.mutex);
    if (level <= H2P_LOG_WARN) {
        size_t n = (size_t)len - 1 < RECENT_LINE_MAX - 1 ? (size_t)len - 1 : RECENT_LINE_MAX - 1;
        memcpy(logger.recent[logger.recent_head].line, line, n);
        logger.recent[logger.recent_head].line[n] = '\0';
        logger.recent[logger.recent_head].level = level;
        logger.recent_head = (logger.recent_head + 1) % H2P_LOG_RECENT;
        if (logger.recent_count < H2P_LOG_RECENT)
            logger.recent_count++;
    }
    if (!logger.running) { /* before start-up or after shutdown: write directly */
        pthread_mutex_unlock(&logger.mutex);
        write_all(logger.fd, line, (size_t)len);
        return;
    }
    if (logger.dropped != 0 && logger.queued + 64 < LOG_QUEUE_BYTES) {
        logger.queued +=
            (size_t)snprintf(logger.queue + logger.queued, 64, "(%lu log lines dropped: writer too slow)\n", logger.dropped);
        logger.dropped = 0;
    }
    if (logger.queued + (size_t)len <= LOG_QUEUE_BYTES) {
        memcpy(logger.queue + logger.queued, line, (size_t)len);
        logger.queued += (size_t)len;
        pthread_cond_signal(&logger.cond);
    } else {
        ++logger.dropped;
    }
    pthread_mutex_unlock(&logger.mutex);
}

void h2p_log(h2p_log_level_t level, const char *scope, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    h2p_logv(level, scope, fmt, args);
    va_end(args);
}

size_t h2p_log_recent(void (*cb)(const char *line, h2p_log_level_t level, void *data), void *data)
{
    /* copied out first: the callback must not run under the logger's mutex (it may log) */
    size_t n;
    char(*lines)[RECENT_LINE_MAX] = h2o_mem_alloc(sizeof(*lines) * H2P_LOG_RECENT);
    h2p_log_level_t levels[H2P_LOG_RECENT];
    pthread_mutex_lock(&logger.mutex);
    n = logger.recent_count;
    for (size_t k = 0; k != n; ++k) {
        size_t i = (logger.recent_head + H2P_LOG_RECENT - n + k) % H2P_LOG_RECENT;
        memcpy(lines[k], logger.recent[i].line, RECENT_LINE_MAX);
        levels[k] = logger.recent[i].level;
    }
    pthread_mutex_unlock(&logger.mutex);
    for (size_t k = 0; k != n; ++k)
        cb(lines[k], levels[k], data);
    free(lines);
    return n;
}

const char *h2p_log_level_name(h2p_log_level_t level)
{
    return level_names[level];
}

int h2p_format_address(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        snprintf(buf, len, "%s:%u", host, ntohs(sin->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        snprintf(buf, len, "[%s]:%u", host, ntohs(sin6->sin6_port));
    } else {
        snprintf(buf, len, "?");
        return -1;
    }
    return 0;
}

/*
 * Error log: one line per event, "2026-11-25T13:51:53Z [level] [site] message".
 *
 * Callers on event-loop threads never touch the disk: lines go into a bounded in-memory queue
 * that a writer thread drains.  When the queue is full, lines are counted and dropped (the
 * count is reported in the next line written), never waited for.
 */
#ifndef H2POOL_LOG_H
#define H2POOL_LOG_H

#include <stdarg.h>
#include <stddef.h>

typedef enum h2p_log_level { H2P_LOG_ERROR, H2P_LOG_WARN, H2P_LOG_NOTICE, H2P_LOG_INFO, H2P_LOG_DEBUG } h2p_log_level_t;

/* Opens `path` for appending (NULL = stderr) and starts the writer thread; 0 on success. */
int h2p_log_open(const char *path);
/* Whether `path` is the file h2p_log_open opened (a reload keeps it open). */
int h2p_log_is_open(const char *path);
/* Flushes what is queued and stops the writer thread. */
void h2p_log_close(void);
void h2p_log_set_level(h2p_log_level_t level);

/* `scope` names what the line is about: a site, "pool php", or NULL for the server. */
void h2p_log(h2p_log_level_t level, const char *scope, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void h2p_logv(h2p_log_level_t level, const char *scope, const char *fmt, va_list args);

struct sockaddr;
/* An address as messages show it: "192.0.2.7:8080", "[2001:db8::1]:8080"; 0, or -1 (and "?")
 * for a family that is neither IPv4 nor IPv6.  `len` of 56 bytes is always enough. */
int h2p_format_address(const struct sockaddr *sa, char *buf, size_t len);

/* The last H2P_LOG_RECENT errors and warnings (each line cut at 511 bytes), oldest first. */
#define H2P_LOG_RECENT 50
size_t h2p_log_recent(void (*cb)(const char *line, h2p_log_level_t level, void *data), void *data);
const char *h2p_log_level_name(h2p_log_level_t level);

#define h2p_error(scope, ...) h2p_log(H2P_LOG_ERROR, scope, __VA_ARGS__)
#define h2p_warn(scope, ...) h2p_log(H2P_LOG_WARN, scope, __VA_ARGS__)
#define h2p_notice(scope, ...) h2p_log(H2P_LOG_NOTICE, scope, __VA_ARGS__)
#define h2p_info(scope, ...) h2p_log(H2P_LOG_INFO, scope, __VA_ARGS__)

#endif

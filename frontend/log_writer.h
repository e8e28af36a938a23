/*
 * The writer of per-site access logs and failed-request traces: one background thread that
 * owns every such file, so no event loop ever touches the disk for them.
 *
 * An event-loop thread appends an entry (a log line, or a whole trace file) to a buffer of its
 * own; a full buffer is handed to the writer, and the writer collects partly filled ones every
 * 100 ms.  Memory is bounded: when the writer falls behind and LOG_WRITER_MAX_QUEUED bytes wait
 * already, a full buffer is dropped and its entries counted (reported in the error log, and by
 * h2p_log_writer_dropped()), never waited for.  Nothing handed over is lost at a reopen or at
 * h2p_log_writer_stop().
 *
 * Files are named and rotated the way IIS does: <dir>/u_exYYMMDD.log (daily, UTC),
 * u_exYYMMDDHH.log (hourly), u_extendN.log (by size, and for `none`); each file opened starts
 * with the W3C header.  Traces are <dir>/frYYYYMMDD-HHMMSS-NNNNNN.json, the newest max_files
 * kept.
 */
#ifndef H2POOL_LOG_WRITER_H
#define H2POOL_LOG_WRITER_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "frontend/config.h"

typedef enum h2p_log_file_kind {
    H2P_LOG_FILE_W3C,   /* W3C extended log, IIS's default fields */
    H2P_LOG_FILE_JSON,  /* one JSON object per line, the same fields */
    H2P_LOG_FILE_TRACES /* a directory of trace files, one per entry */
} h2p_log_file_kind_t;

typedef enum h2p_log_rotation { H2P_ROTATE_DAILY, H2P_ROTATE_HOURLY, H2P_ROTATE_SIZE, H2P_ROTATE_NONE } h2p_log_rotation_t;

typedef struct h2p_log_target_conf {
    const char *dir;
    h2p_log_file_kind_t kind;
    h2p_log_rotation_t rotate;
    uint64_t max_size; /* H2P_ROTATE_SIZE: a file grows to at most this many bytes */
    size_t max_files;  /* traces: the newest this many are kept */
} h2p_log_target_conf_t;

/*
 * The id of the target these settings describe (the same settings give the same id: a reload
 * keeps writing the same file).  Targets live as long as the process.  Called while a
 * configuration is built (the main thread); -1 when there are too many.
 */
int h2p_log_writer_target(const h2p_log_target_conf_t *conf);

/* Starts the writer thread; 0 on success. */
int h2p_log_writer_start(void);
/* Writes everything appended so far, closes the files and stops the thread. */
void h2p_log_writer_stop(void);
/* Closes and reopens every file (logrotate moved them: SIGUSR1); returns at once. */
void h2p_log_writer_reopen(void);

/* Appends one entry for `target`, stamped `when` (UTC seconds), from any thread.  Copies `data`
 * and returns at once: 0, or -1 when it was dropped (counted). */
int h2p_log_writer_append(int target, time_t when, const char *data, size_t len);

/* Entries dropped so far because the writer fell behind or a file could not be written. */
uint64_t h2p_log_writer_dropped(void);

/*
 * Started as root, before the front end becomes server.user: creates server.log_dir, a
 * directory per site in it and each failed_request_tracing dir that does not exist yet, owned
 * by server.user, so that the front end can write there.  Existing directories are left as
 * they are.  A no-op when not root.
 */
void h2p_log_writer_prepare_dirs(const h2p_config_t *conf);

#endif

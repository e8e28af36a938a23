/*
 * Users and groups files that follow their changes without a reload.
 *
 * Every handler that names a file opens it here; handlers of every generation that name the same
 * file share one h2p_credfile_t.  A watcher thread (one per process, started by the first open)
 * stat()s each file every H2P_CREDFILE_CHECK_MS; when the file changed it is read and
 * parsed there, off the event loops, and the result is swapped in as a new snapshot.  A request
 * takes the current snapshot (a mutex held for a pointer copy and a reference count), uses it,
 * and gives it back; an old snapshot is freed by whoever drops its last reference.
 *
 * A file that becomes missing, unreadable or malformed fails closed: its snapshot is unusable
 * (no user is accepted, no group membership can be established) and an error is logged, until
 * the file is valid again.  Each snapshot has an id never used again, so caches keyed on it
 * (the credential cache) forget everything a change may have revoked.
 */
#ifndef H2POOL_CREDFILE_H
#define H2POOL_CREDFILE_H

#include <stddef.h>
#include <stdint.h>

#include "native-modules/htpasswd.h"

#define H2P_CREDFILE_CHECK_MS 250

typedef enum h2p_credfile_kind { H2P_CREDFILE_USERS, H2P_CREDFILE_GROUPS } h2p_credfile_kind_t;

typedef struct h2p_credfile_snapshot {
    uint64_t id;          /* unique over the process's life */
    unsigned refcnt;      /* atomic */
    int usable;           /* 0: the file is missing, unreadable or malformed (users and groups are empty) */
    h2p_htpasswd_t users; /* H2P_CREDFILE_USERS */
    h2p_groups_t groups;  /* H2P_CREDFILE_GROUPS */
} h2p_credfile_snapshot_t;

typedef struct h2p_credfile h2p_credfile_t;

/*
 * Opens `path` (read now, on the calling thread, so a broken file refuses the configuration that
 * names it as before).  NULL with "path:line: why" in `err` when it cannot be used.
 */
h2p_credfile_t *h2p_credfile_open(h2p_credfile_kind_t kind, const char *path, char *err, size_t errlen);
void h2p_credfile_close(h2p_credfile_t *file);

/* The file's current content; give it back with h2p_credfile_release. Never NULL. */
h2p_credfile_snapshot_t *h2p_credfile_acquire(h2p_credfile_t *file);
void h2p_credfile_release(h2p_credfile_snapshot_t *snapshot);

/* Stops and joins the watcher thread (at exit, before the log and OpenSSL are torn down). */
void h2p_credfile_stop_watching(void);

#endif

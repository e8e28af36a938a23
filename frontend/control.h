/*
 * The control socket (server.control_socket), what `h2pool ctl` talks to: a unix socket, mode
 * 0600, owned by the user the front end runs as; a client whose uid (SO_PEERCRED) is neither
 * root nor that user is refused whatever the socket's mode.  Served by the supervisor's loop.
 *
 * Protocol: one JSON object per line in, one JSON object per line out, in order.
 *   {"command": "status"}
 *   {"command": "list", "what": "sites" | "pools" | "workers" | "requests"}
 *   {"command": "start" | "stop", "type": "site" | "pool", "name": NAME}
 *   {"command": "recycle", "type": "pool", "name": NAME}
 *   {"command": "reload"}
 * Answers: {"ok": true, ...} or {"ok": false, "code": CODE, "error": "what went wrong"} where
 * CODE is bad_request, unknown_command, unknown_name, refused, reload_refused or too_long.
 * A request line is at most 64 KiB; a connection idle for 30 s is closed.
 *
 * The socket is created once, at start, with the rights h2pool was started with (the directory
 * may be root's, as /run/h2pool); a reload that changes server.control_socket is logged and
 * applies at the next start.
 */
#ifndef H2POOL_CONTROL_H
#define H2POOL_CONTROL_H

#include <h2o.h>
#include <jansson.h>

#include "frontend/config.h"

#define H2P_CONTROL_MAX_LINE (64 * 1024)

/* Creates server.control_socket if it is set (before privileges are dropped); -1 and `err` on failure. */
int h2p_control_open(const h2p_server_conf_t *server, char *err, size_t errlen);

/* Reloads the configuration: 0, or -1 with the reasons appended to `errors` (strings). */
typedef int (*h2p_control_reload_cb)(const char *why, json_t *errors);
void h2p_control_start(h2o_evloop_t *loop, h2p_control_reload_cb reload);
/* Logs a change of server.control_socket by a reload (it applies at the next start). */
void h2p_control_check_reload(const h2p_server_conf_t *next);
/* Closes the socket and every client connection; removes the socket file where it can. */
void h2p_control_stop(void);

/* `h2pool ctl ...` (frontend/ctl.c): the client's main. */
int h2p_ctl_main(int argc, char **argv);

#endif

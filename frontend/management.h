/*
 * The management endpoint (server.management, "ip:port"): GET /status (JSON), GET /metrics
 * (Prometheus text format) and GET / (a dashboard that polls /status), on a listener of its own
 * with its own libh2o host configuration: never routed through sites, never counted as their
 * traffic.  It is served by the supervisor's loop (the main thread), so it answers while every
 * front-end loop is busy; what it reads is counters and, briefly, each pool's lock.
 *
 * The socket is bound once, at start, with the rights h2pool was started with (as the error log
 * is opened); a reload that changes server.management is logged and applies at the next start.
 */
#ifndef H2POOL_MANAGEMENT_H
#define H2POOL_MANAGEMENT_H

#include <h2o.h>
#include <sys/socket.h>

#include "frontend/config.h"

/* "127.0.0.1:8090", "[::1]:8090", "*:8090" -> an address; 0, or -1 if it is none of those. */
int h2p_management_parse_address(const char *text, struct sockaddr_storage *ss, socklen_t *len);

/* Binds server.management if it is set (before privileges are dropped); -1 and `err` on failure. */
int h2p_management_open(const h2p_server_conf_t *server, char *err, size_t errlen);
/* Serves it on the supervisor's loop. */
void h2p_management_start(h2o_evloop_t *loop);
/* Stops accepting (shutdown). */
void h2p_management_stop(void);
/* Logs a change of server.management by a reload (it applies at the next start). */
void h2p_management_check_reload(const h2p_server_conf_t *next);

#endif

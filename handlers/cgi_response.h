/*
 * A CGI response on its way to the client: the worker's or script's stdout is fed in, the CGI
 * header block becomes the HTTP response head, the body streams out as it arrives.  Callers
 * stop reading their source while h2p_cgi_response_full() is true and resume on `on_drained`
 * (back-pressure: a slow client never makes h2pool hold a whole large body).
 */
#ifndef H2POOL_CGI_RESPONSE_H
#define H2POOL_CGI_RESPONSE_H

#include <h2o.h>

#define H2P_CGI_MAX_PENDING (256 * 1024)
#define H2P_CGI_MAX_HEAD (64 * 1024)

typedef struct h2p_cgi_response {
    h2o_generator_t super;
    h2o_req_t *req; /* NULL once the client's request is gone */
    h2o_buffer_t *head, *pending, *inflight;
    uint64_t body_left; /* Content-Length announced by the script, or UINT64_MAX */
    unsigned started : 1, sending : 1, sent : 1, final_sent : 1, ended : 1, failed : 1;
    void (*on_drained)(struct h2p_cgi_response *self); /* the client took what was pending */
    void (*on_stop)(struct h2p_cgi_response *self);    /* the client left mid-response */
} h2p_cgi_response_t;

void h2p_cgi_response_init(h2p_cgi_response_t *self, h2o_req_t *req);
void h2p_cgi_response_dispose(h2p_cgi_response_t *self);
/* stdout bytes; -1 when the header block is malformed (nothing was sent yet: answer 502).
 * Nothing goes out before h2p_cgi_response_flush() or _end(): what one read brings (often the
 * whole response) leaves in one write, with a Content-Length when it is complete. */
int h2p_cgi_response_feed(h2p_cgi_response_t *self, const char *data, size_t len);
void h2p_cgi_response_flush(h2p_cgi_response_t *self);
/* End of stdout. `ok` = 0: the source failed; the response is cut off (or 502 before the head). */
void h2p_cgi_response_end(h2p_cgi_response_t *self, int ok);
/* An error status before the head was sent, or an aborted stream after. */
void h2p_cgi_response_fail(h2p_cgi_response_t *self, int status, const char *reason, const char *body);
/*
 * Reads one slice (64 KiB) of a socket created with H2O_SOCKET_FLAG_DONT_READ into its input.
 * libh2o would read until the socket is empty, which a source writing on another core may never
 * let happen, and back-pressure would come too late.  Returns NULL, "closed", "error", or
 * "again" when there was nothing to read.
 */
const char *h2p_read_slice(h2o_socket_t *sock);

static inline int h2p_cgi_response_full(h2p_cgi_response_t *self)
{
    return self->pending->size >= H2P_CGI_MAX_PENDING;
}

#endif

/* TLS contexts: one per site (its certificate), chosen per handshake by SNI. */
#ifndef H2POOL_TLS_H
#define H2POOL_TLS_H

#include <h2o/socket.h>
#include <openssl/ssl.h>

#include "frontend/config.h"

/* A server context for `site`: TLS 1.2+, modern ciphers, ALPN h2 (if site->http2) and
 * http/1.1.  NULL with `err` filled when the certificate or key cannot be used. */
SSL_CTX *h2p_tls_create_site_ctx(const h2p_site_conf_t *site, char *err, size_t errlen);

/* Installs the SNI callback on a listener's context: `pick(arg, servername)` returns the
 * context of the site that serves that name, or NULL to keep the default. */
void h2p_tls_set_sni(SSL_CTX *ctx, SSL_CTX *(*pick)(void *arg, const char *servername), void *arg);

/* The SSL of an https connection, as its handshake's SNI callback recorded it in the socket's
 * on_close.data (server.c leaves that slot to this file); NULL for plain http. */
SSL *h2p_tls_connection_ssl(h2o_socket_t *sock);

/*
 * Whether a request that arrived over a handshake made with `handshake_ctx` may be served by
 * the site whose context is `site_ctx` (NULL: a site without TLS settings): the same context,
 * or the same client-certificate policy (client_verify, and the same client_ca content).  Sites
 * that ask for no client certificate all share one policy, so HTTP/2 connection coalescing and
 * clients without SNI keep working among them.
 */
int h2p_tls_same_client_policy(SSL_CTX *handshake_ctx, SSL_CTX *site_ctx);

#endif

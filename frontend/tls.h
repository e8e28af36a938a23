/* TLS contexts: one per site (its certificate), chosen per handshake by SNI. */
#ifndef H2POOL_TLS_H
#define H2POOL_TLS_H

#include <openssl/ssl.h>

#include "frontend/config.h"

/* A server context for `site`: TLS 1.2+, modern ciphers, ALPN h2 (if site->http2) and
 * http/1.1.  NULL with `err` filled when the certificate or key cannot be used. */
SSL_CTX *h2p_tls_create_site_ctx(const h2p_site_conf_t *site, char *err, size_t errlen);

/* Installs the SNI callback on a listener's context: `pick(arg, servername)` returns the
 * context of the site that serves that name, or NULL to keep the default. */
void h2p_tls_set_sni(SSL_CTX *ctx, SSL_CTX *(*pick)(void *arg, const char *servername), void *arg);

#endif

#include "frontend/tls.h"
#include "frontend/alloc.h"

#include <h2o.h>
#include <h2o/http2.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>

#include "frontend/conn_watch.h"
#include "privsep/privsep.h"

/* Mozilla's "intermediate" list: forward secrecy and AEAD only. */
#define TLS12_CIPHERS                                                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"         \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* OpenSSL's TLS 1.3 suites in Mozilla's order: with the server's preference, OpenSSL's default
 * order (AES-256 first) picked AES-256-GCM even for clients that list AES-128-GCM first, 40% more
 * AES rounds on every record for no security a 128-bit key lacks.  A client that lists ChaCha20
 * first (no AES instructions) still gets it: SSL_OP_PRIORITIZE_CHACHA. */
#define TLS13_CIPHERSUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

static const h2o_iovec_t http1_only_alpn[] = {{H2O_STRLIT("http/1.1")}, {NULL}};
static const h2o_iovec_t h2_and_http1_alpn[] = {{H2O_STRLIT("h2")}, {H2O_STRLIT("http/1.1")}, {NULL}};

static void openssl_error(char *err, size_t errlen, const char *what, const char *path)
{
    unsigned long code = ERR_get_error();
    char reason[200] = "unknown error";
    if (code != 0)
        ERR_error_string_n(code, reason, sizeof(reason));
    snprintf(err, errlen, "%s %s: %s", what, path, reason);
    ERR_clear_error();
}

/* Certificates and keys are read through the privileged part: the front end runs as
 * server.user, which need not be able to read them (a key is usually root's alone). */
static BIO *read_privileged(const char *path, char *err, size_t errlen)
{
    char *data, why[256];
    size_t len;
    if (h2p_privsep_read_file(path, &data, &len, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "cannot read %s: %s", path, why);
        return NULL;
    }
    BIO *bio = BIO_new(BIO_s_mem());
    BIO_write(bio, data, (int)len);
    OPENSSL_cleanse(data, len);
    free(data);
    return bio;
}

/* SSL_CTX_use_certificate_chain_file, from memory: the first certificate, then its chain */
static int use_certificate_chain(SSL_CTX *ctx, BIO *bio)
{
    X509 *cert = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL);
    if (cert == NULL || SSL_CTX_use_certificate(ctx, cert) != 1) {
        X509_free(cert);
        return 0;
    }
    X509_free(cert);
    SSL_CTX_clear_chain_certs(ctx);
    X509 *ca;
    while ((ca = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
            X509_free(ca);
            return 0;
        }
    }
    unsigned long e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
        ERR_clear_error(); /* the end of the file */
    return ERR_peek_error() == 0;
}

static int use_private_key(SSL_CTX *ctx, BIO *bio)
{
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    int ok = key != NULL && SSL_CTX_use_PrivateKey(ctx, key) == 1;
    EVP_PKEY_free(key);
    return ok;
}

/* SSL_CTX_load_verify_locations + SSL_load_client_CA_file, from memory */
static int use_client_ca(SSL_CTX *ctx, BIO *bio)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
    X509 *ca;
    size_t count = 0;
    while ((ca = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        X509_STORE_add_cert(store, ca);
        X509_NAME *name = X509_NAME_dup(X509_get_subject_name(ca));
        if (name != NULL)
            sk_X509_NAME_push(names, name);
        X509_free(ca);
        ++count;
    }
    ERR_clear_error();
    if (count == 0) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        return 0;
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    return 1;
}

/*
 * A site's client-certificate policy, kept on each of its contexts.  Two policies are the same
 * when they ask for certificates the same way (client_verify) and trust the same CA certificates
 * (the CA file's content, not its name: a reload may change a file under the same name).
 */
typedef struct client_policy {
    int client_verify; /* H2P_CLIENT_VERIFY_*; NONE when the site has no client_ca */
    unsigned char ca_digest[EVP_MAX_MD_SIZE];
} client_policy_t;

static int policy_index = -1, sni_index = -1;

static void free_ex_data(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    free(ptr);
}

/* The CA file's content as the spawner read it (the front end need not be able to read it). */
static void digest_bio(BIO *bio, unsigned char *digest)
{
    char *data;
    long len = BIO_get_mem_data(bio, &data);
    EVP_Digest(data, (size_t)len, digest, NULL, EVP_sha256(), NULL);
}

/* `ca_digest` is NULL when the site has no client_ca */
static void attach_client_policy(SSL_CTX *ctx, const h2p_site_conf_t *site, const unsigned char *ca_digest)
{
    if (policy_index < 0)
        policy_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_ex_data);
    client_policy_t *policy = h2p_calloc(1, sizeof(*policy));
    if (ca_digest != NULL && site->tls.client_verify != H2P_CLIENT_VERIFY_NONE) {
        policy->client_verify = site->tls.client_verify;
        memcpy(policy->ca_digest, ca_digest, sizeof(policy->ca_digest));
    }
    SSL_CTX_set_ex_data(ctx, policy_index, policy);
}

int h2p_tls_same_client_policy(SSL_CTX *handshake_ctx, SSL_CTX *site_ctx)
{
    if (handshake_ctx == site_ctx)
        return 1;
    const client_policy_t *a = handshake_ctx != NULL ? SSL_CTX_get_ex_data(handshake_ctx, policy_index) : NULL;
    const client_policy_t *b = site_ctx != NULL ? SSL_CTX_get_ex_data(site_ctx, policy_index) : NULL;
    int verify_a = a != NULL ? a->client_verify : H2P_CLIENT_VERIFY_NONE,
        verify_b = b != NULL ? b->client_verify : H2P_CLIENT_VERIFY_NONE;
    if (verify_a != verify_b)
        return 0;
    return verify_a == H2P_CLIENT_VERIFY_NONE || memcmp(a->ca_digest, b->ca_digest, sizeof(a->ca_digest)) == 0;
}

/* The connection watch learns when libh2o starts reading requests, and that a connection that
 * chose h2 sends frames (a preface and SETTINGS are no half-sent HTTP/1 request).  OpenSSL asks
 * the connection's SSL_CTX of the moment, which SNI may have switched: every site's has it. */
static void on_tls_info(const SSL *ssl, int where, int ret)
{
    (void)ret;
    if ((where & SSL_CB_HANDSHAKE_DONE) == 0)
        return;
    const unsigned char *proto;
    unsigned len;
    SSL_get0_alpn_selected(ssl, &proto, &len);
    h2o_socket_t *sock = BIO_get_data(SSL_get_rbio(ssl));
    if (sock != NULL)
        h2p_conn_handshake_done(sock, len == 2 && memcmp(proto, "h2", 2) == 0);
}

SSL_CTX *h2p_tls_create_site_ctx(const h2p_site_conf_t *site, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_PRIORITIZE_CHACHA);
    SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS);
    SSL_CTX_set_ciphersuites(ctx, TLS13_CIPHERSUITES);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)site->name, (unsigned)strlen(site->name));

    BIO *bio;
    int ok;
    if ((bio = read_privileged(site->tls.certificate, err, errlen)) == NULL)
        goto Error;
    ok = use_certificate_chain(ctx, bio);
    BIO_free(bio);
    if (!ok) {
        openssl_error(err, errlen, "cannot load certificate", site->tls.certificate);
        goto Error;
    }
    if ((bio = read_privileged(site->tls.key, err, errlen)) == NULL)
        goto Error;
    ok = use_private_key(ctx, bio);
    BIO_free(bio);
    if (!ok) {
        openssl_error(err, errlen, "cannot load key", site->tls.key);
        goto Error;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        openssl_error(err, errlen, "key does not match certificate", site->tls.key);
        goto Error;
    }
    unsigned char ca_digest[EVP_MAX_MD_SIZE] = {0};
    if (site->tls.client_ca != NULL) {
        if ((bio = read_privileged(site->tls.client_ca, err, errlen)) == NULL)
            goto Error;
        digest_bio(bio, ca_digest);
        ok = use_client_ca(ctx, bio);
        BIO_free(bio);
        if (!ok) {
            openssl_error(err, errlen, "cannot load client CA", site->tls.client_ca);
            goto Error;
        }
        int mode = SSL_VERIFY_NONE;
        if (site->tls.client_verify == H2P_CLIENT_VERIFY_OPTIONAL)
            mode = SSL_VERIFY_PEER;
        else if (site->tls.client_verify == H2P_CLIENT_VERIFY_REQUIRED)
            mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx, mode, NULL);
    }
    attach_client_policy(ctx, site, site->tls.client_ca != NULL ? ca_digest : NULL);
    h2o_ssl_register_alpn_protocols(ctx, site->http2 ? h2_and_http1_alpn : http1_only_alpn);
    SSL_CTX_set_info_callback(ctx, on_tls_info);
    return ctx;
Error:
    SSL_CTX_free(ctx);
    return NULL;
}

struct sni_picker {
    SSL_CTX *(*pick)(void *arg, const char *servername);
    void *arg;
};

static int on_servername(SSL *ssl, int *ad, void *arg)
{
    struct sni_picker *picker = arg;
    /* libh2o's BIO carries the connection's socket: the router needs the SSL of a connection to
     * know which site's policy its handshake followed (libh2o has no accessor for it) */
    h2o_socket_t *sock = BIO_get_data(SSL_get_rbio(ssl));
    if (sock != NULL)
        h2p_conn_set_ssl(sock, ssl);
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (name == NULL)
        return SSL_TLSEXT_ERR_OK;
    SSL_CTX *ctx = picker->pick(picker->arg, name);
    if (ctx != NULL && ctx != SSL_get_SSL_CTX(ssl)) {
        SSL_set_SSL_CTX(ssl, ctx);
        /* SSL_set_SSL_CTX swaps the certificate only; the client-certificate policy goes with the site */
        SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), NULL);
        SSL_set_client_CA_list(ssl, SSL_dup_CA_list(SSL_CTX_get_client_CA_list(ctx)));
    }
    return SSL_TLSEXT_ERR_OK;
}

void h2p_tls_set_sni(SSL_CTX *ctx, SSL_CTX *(*pick)(void *arg, const char *servername), void *arg)
{
    if (sni_index < 0)
        sni_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_ex_data);
    struct sni_picker *picker = h2o_mem_alloc(sizeof(*picker));
    picker->pick = pick;
    picker->arg = arg;
    SSL_CTX_set_ex_data(ctx, sni_index, picker);
    SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    SSL_CTX_set_info_callback(ctx, on_tls_info);
    SSL_CTX_set_tlsext_servername_arg(ctx, picker);
}

SSL *h2p_tls_connection_ssl(h2o_socket_t *sock)
{
    return sock != NULL && sock->ssl != NULL ? h2p_conn_ssl(sock) : NULL;
}

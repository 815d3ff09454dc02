#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/crypto.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <openssl/evp.h>
#include <openssl/ec.h>
#include <openssl/rand.h>
#include <openssl/bio.h>

/* OpenSSL spells these as macros, which Swift cannot call; each is one
   line here so that every C call stays inside WeftTLS's reach. */

static inline int weft_ssl_ctx_set_min_proto(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}
static inline int weft_ssl_ctx_set_max_proto(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_max_proto_version(ctx, version);
}
static inline long weft_ssl_ctx_set_session_cache_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_session_cache_mode(ctx, mode);
}
static inline long weft_ssl_ctx_set_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_mode(ctx, mode);
}
static inline int weft_general_names_count(const GENERAL_NAMES *names) {
    return sk_GENERAL_NAME_num(names);
}
static inline GENERAL_NAME *weft_general_names_at(const GENERAL_NAMES *names, int index) {
    return sk_GENERAL_NAME_value(names, index);
}
static inline void weft_general_names_free(GENERAL_NAMES *names) {
    GENERAL_NAMES_free(names);
}
static inline int weft_bio_should_retry_read(BIO *bio) {
    BIO_set_retry_read(bio);
    return 1;
}
static inline void weft_bio_clear_retry(BIO *bio) {
    BIO_clear_retry_flags(bio);
}
static inline int weft_x509_set_version3(X509 *cert) {
    return X509_set_version(cert, X509_VERSION_3);
}
static inline int weft_ssl_set_sni(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}

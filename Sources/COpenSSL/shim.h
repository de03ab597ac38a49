// OpenSSL configures much of SSL_CTX/SSL/BIO through function-like macros (wrappers around
// SSL_CTX_ctrl, BIO_ctrl, the typed STACK_OF helpers) that Swift cannot call. Each wrapper below is
// a one-line static inline function with the macro's argument order and a COpenSSL_ prefix, so
// clang inlines it away: a wrapper costs nothing at run time.
#ifndef COPENSSL_SHIM_H
#define COPENSSL_SHIM_H
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

// SSL_OP_* are built with SSL_OP_BIT(n), a cast-and-shift expression the importer skips.
static const uint64_t COpenSSL_SSL_OP_NO_COMPRESSION = SSL_OP_NO_COMPRESSION;
static const uint64_t COpenSSL_SSL_OP_CIPHER_SERVER_PREFERENCE = SSL_OP_CIPHER_SERVER_PREFERENCE;
static const uint64_t COpenSSL_SSL_OP_NO_RENEGOTIATION = SSL_OP_NO_RENEGOTIATION;
static const uint64_t COpenSSL_SSL_OP_ALLOW_CLIENT_RENEGOTIATION = SSL_OP_ALLOW_CLIENT_RENEGOTIATION;
static const uint64_t COpenSSL_SSL_OP_NO_TICKET = SSL_OP_NO_TICKET;

// SSL_CTX / SSL controls.
static inline int COpenSSL_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) { return (int)SSL_CTX_set_min_proto_version(ctx, version); }
static inline int COpenSSL_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version) { return (int)SSL_CTX_set_max_proto_version(ctx, version); }
static inline long COpenSSL_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_mode(ctx, mode); }
static inline long COpenSSL_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_session_cache_mode(ctx, mode); }
// Session ticket keys (80 bytes: name, HMAC secret, AES key), shared by worker processes.
static inline long COpenSSL_SSL_CTX_set_tlsext_ticket_keys(SSL_CTX *ctx, void *keys, long length) { return SSL_CTX_set_tlsext_ticket_keys(ctx, keys, length); }
static inline int COpenSSL_SSL_set_tlsext_host_name(SSL *s, const char *name) { return (int)SSL_set_tlsext_host_name(s, name); }

// Per-SSL application data slot (SSL_get_ex_new_index is a macro over CRYPTO_get_ex_new_index).
static inline int COpenSSL_SSL_get_ex_new_index(long argl, void *argp) { return SSL_get_ex_new_index(argl, argp, NULL, NULL, NULL); }

// SNI: the callback runs while the ClientHello is processed; arg is passed back unchanged.
typedef int (*COpenSSL_servername_cb)(SSL *s, int *alert, void *arg);
static inline long COpenSSL_SSL_CTX_set_tlsext_servername_callback(SSL_CTX *ctx, COpenSSL_servername_cb cb) { return SSL_CTX_set_tlsext_servername_callback(ctx, cb); }
static inline long COpenSSL_SSL_CTX_set_tlsext_servername_arg(SSL_CTX *ctx, void *arg) { return SSL_CTX_set_tlsext_servername_arg(ctx, arg); }

// Memory BIOs.
static inline long COpenSSL_BIO_set_mem_eof_return(BIO *b, int v) { return BIO_set_mem_eof_return(b, v); }
static inline long COpenSSL_BIO_get_mem_ptr(BIO *b, BUF_MEM **pp) { return BIO_get_mem_ptr(b, pp); }

// STACK_OF(X509), for certificate chains.
static inline STACK_OF(X509) *COpenSSL_sk_X509_new_null(void) { return sk_X509_new_null(); }
static inline int COpenSSL_sk_X509_push(STACK_OF(X509) *sk, X509 *x) { return sk_X509_push(sk, x); }
static inline int COpenSSL_sk_X509_num(const STACK_OF(X509) *sk) { return sk_X509_num(sk); }
static inline void COpenSSL_sk_X509_pop_free(STACK_OF(X509) *sk) { sk_X509_pop_free(sk, X509_free); }

// GENERAL_NAMES (subjectAltName): count, and the dNSName of entry i or NULL for other name types.
static inline int COpenSSL_sk_GENERAL_NAME_num(const GENERAL_NAMES *sk) { return sk_GENERAL_NAME_num(sk); }
static inline const ASN1_IA5STRING *COpenSSL_GENERAL_NAME_dns(const GENERAL_NAMES *sk, int i) {
    const GENERAL_NAME *n = sk_GENERAL_NAME_value(sk, i);
    return (n != NULL && n->type == GEN_DNS) ? n->d.dNSName : NULL;
}
#endif

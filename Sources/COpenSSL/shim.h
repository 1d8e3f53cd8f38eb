/* COpenSSL shim: the few libcrypto calls Chorus uses (SHA-256, HMAC, constant-time compare, random bytes). */
#ifndef CHORUS_COPENSSL_SHIM_H
#define CHORUS_COPENSSL_SHIM_H
#include <openssl/sha.h>
#include <openssl/hmac.h>
#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
static inline void cossl_sha256(const void *data, size_t len, unsigned char out[32]) { SHA256((const unsigned char *)data, len, out); }
static inline int cossl_hmac_sha256(const void *key, int keylen, const void *data, size_t len, unsigned char out[32]) {
    unsigned int outlen = 32;
    return HMAC(EVP_sha256(), key, keylen, (const unsigned char *)data, len, out, &outlen) != NULL ? 0 : -1;
}
static inline int cossl_hmac_sha1(const void *key, int keylen, const void *data, size_t len, unsigned char out[20]) {
    unsigned int outlen = 20;
    return HMAC(EVP_sha1(), key, keylen, (const unsigned char *)data, len, out, &outlen) != NULL ? 0 : -1;
}
static inline int cossl_memcmp(const void *a, const void *b, size_t len) { return CRYPTO_memcmp(a, b, len); }
static inline int cossl_random(unsigned char *buf, int len) { return RAND_bytes(buf, len) == 1 ? 0 : -1; }
#endif

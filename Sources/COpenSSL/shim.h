/* COpenSSL shim: the few libcrypto calls Chorus uses (SHA-256, HMAC, constant-time compare, random bytes). */
#ifndef CHORUS_COPENSSL_SHIM_H
#define CHORUS_COPENSSL_SHIM_H
#include <openssl/sha.h>
#include <openssl/hmac.h>
#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <stdint.h>
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
/* RS256 (RSASSA-PKCS1-v1_5 with SHA-256) verification with a public key given as a JWK's modulus and exponent
   (big-endian bytes). Returns 1 when the signature holds, 0 when it does not, -1 when the key cannot be built. */
static inline int cossl_rs256_verify(const uint8_t *n, size_t nlen, const uint8_t *e, size_t elen,
                                     const void *data, size_t len, const uint8_t *sig, size_t siglen) {
    int result = -1;
    BIGNUM *bn = BN_bin2bn(n, (int)nlen, NULL), *be = BN_bin2bn(e, (int)elen, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *kctx = NULL;
    EVP_PKEY *pkey = NULL;
    EVP_MD_CTX *md = NULL;
    if (bn == NULL || be == NULL || bld == NULL) goto done;
    if (!OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be)) goto done;
    params = OSSL_PARAM_BLD_to_param(bld);
    kctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (params == NULL || kctx == NULL || EVP_PKEY_fromdata_init(kctx) <= 0
        || EVP_PKEY_fromdata(kctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0) goto done;
    md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) != 1) goto done;
    result = EVP_DigestVerify(md, sig, siglen, (const unsigned char *)data, len) == 1 ? 1 : 0;
done:
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(kctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return result;
}
#endif

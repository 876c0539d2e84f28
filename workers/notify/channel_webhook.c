/*
 * The generic webhook channel: the notification as a JSON object (notify_msg_json), POSTed
 * with X-Sluice-Timestamp (unix seconds of this attempt) and X-Sluice-Signature:
 * v1=hex(HMAC-SHA256(secret, "<timestamp>.<body>")). A receiver recomputes the HMAC over
 * the raw body and refuses old timestamps, so a captured request cannot be replayed later.
 */
#include "notify_int.h"

#include <inttypes.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"

int notify_webhook_sign(const char *secret, int64_t ts_s, const char *body, size_t body_len,
                        char out[NOTIFY_SIGNATURE_MAX])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char mac[EVP_MAX_MD_SIZE];
    char ts[24];
    size_t mac_len = 0;
    EVP_MAC *alg = NULL;
    EVP_MAC_CTX *ctx = NULL;
    OSSL_PARAM params[2];
    int n = snprintf(ts, sizeof(ts), "%" PRId64 ".", ts_s);
    int rc = SL_EINVAL;

    if (n < 0 || (size_t)n >= sizeof(ts)) {
        return SL_EINVAL;
    }
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
    ctx = alg != NULL ? EVP_MAC_CTX_new(alg) : NULL;
    if (ctx != NULL &&
        EVP_MAC_init(ctx, (const unsigned char *)secret, strlen(secret), params) == 1 &&
        EVP_MAC_update(ctx, (const unsigned char *)ts, (size_t)n) == 1 &&
        EVP_MAC_update(ctx, (const unsigned char *)body, body_len) == 1 &&
        EVP_MAC_final(ctx, mac, &mac_len, sizeof(mac)) == 1 && mac_len == 32) {
        memcpy(out, "v1=", 3);
        for (size_t i = 0; i < mac_len; i++) {
            out[3 + 2 * i] = hex[mac[i] >> 4];
            out[3 + 2 * i + 1] = hex[mac[i] & 15];
        }
        out[3 + 2 * mac_len] = '\0';
        rc = 0;
    }
    OPENSSL_cleanse(mac, sizeof(mac));
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(alg);
    return rc;
}

char *notify_webhook_body(const struct notify_msg *m)
{
    return notify_json_text_take(notify_msg_json(m));
}

int notify_webhook_send(const struct notify_msg *m, const char *url, const char *secret,
                        const struct notify_settings *s, int64_t now_s,
                        struct notify_send_result *r)
{
    char sig[NOTIFY_SIGNATURE_MAX];
    char ts_header[64], sig_header[128];
    const char *headers[3] = {ts_header, NULL, NULL};
    char *body = notify_webhook_body(m);
    int rc;

    snprintf(ts_header, sizeof(ts_header), "X-Sluice-Timestamp: %" PRId64, now_s);
    if (body != NULL && secret != NULL && secret[0] != '\0') {
        rc = notify_webhook_sign(secret, now_s, body, strlen(body), sig);
        if (rc != 0) {
            memset(r, 0, sizeof(*r));
            snprintf(r->error, sizeof(r->error), "libcrypto could not compute the HMAC");
            sl_free(body);
            return rc;
        }
        snprintf(sig_header, sizeof(sig_header), "X-Sluice-Signature: %s", sig);
        headers[1] = sig_header;
    }
    return notify_http_post_taken(url, body, headers, "webhook body", s, r);
}

/* API-key verdicts with a bounded, direct-mapped cache in front of the tenant store. */
#include "auth.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>

#include "alloc.h"

#define HASH_LEN 32

struct entry {
    unsigned char hash[HASH_LEN];
    bool is_used;
    int64_t valid_until_ms;   /* cache expiry */
    int64_t key_expires_ms;   /* the key's own expiry; 0 never */
    struct ingest_auth_result result;
};

struct ingest_auth {
    pthread_mutex_t lock;
    struct sl_store *store;
    struct ingest_auth_settings settings;
    struct entry *entries;
    size_t n_entries;
};

const struct sl_cfg_opt ingest_auth_cfg_opts[] = {
    {.key = "SLUICE_AUTH_CACHE_TTL_MS", .type = SL_CFG_INT, .def = "5000", .min = 0,
     .max = 600000, .offset = offsetof(struct ingest_auth_settings, cache_ttl_ms),
     .desc = "How long an accepted API key is trusted without asking the tenant store; a "
             "revoked key stops working within this time."},
    {.key = "SLUICE_AUTH_NEGATIVE_CACHE_TTL_MS", .type = SL_CFG_INT, .def = "2000", .min = 0,
     .max = 600000, .offset = offsetof(struct ingest_auth_settings, negative_cache_ttl_ms),
     .desc = "How long a refused API key is remembered (shields the store from floods of "
             "bad keys)."},
    {.key = "SLUICE_AUTH_CACHE_ENTRIES", .type = SL_CFG_INT, .def = "8192", .min = 1,
     .max = 4194304, .offset = offsetof(struct ingest_auth_settings, cache_entries),
     .desc = "Slots in the API-key cache (memory is about 250 bytes a slot)."},
};
const size_t ingest_auth_cfg_n_opts = sizeof(ingest_auth_cfg_opts) / sizeof(ingest_auth_cfg_opts[0]);

int ingest_auth_create(struct ingest_auth **out, const char *db_path, int64_t busy_timeout_ms,
                       const struct ingest_auth_settings *s, struct sl_err *err)
{
    struct ingest_auth *a = NULL;
    int rc;

    *out = NULL;
    a = sl_calloc(1, sizeof(*a));
    if (a == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory creating the key cache");
    }
    pthread_mutex_init(&a->lock, NULL);
    a->settings = *s;
    a->n_entries = (size_t)s->cache_entries;
    a->entries = sl_calloc(a->n_entries, sizeof(*a->entries));
    if (a->entries == NULL) {
        ingest_auth_destroy(a);
        return sl_err_set(err, SL_ENOMEM, "out of memory creating the key cache");
    }
    rc = sl_store_open(&a->store, db_path, busy_timeout_ms, err);
    if (rc != 0) {
        ingest_auth_destroy(a);
        return rc;
    }
    *out = a;
    return 0;
}

void ingest_auth_destroy(struct ingest_auth *a)
{
    if (a == NULL) {
        return;
    }
    sl_store_close(a->store);
    sl_free(a->entries);
    pthread_mutex_destroy(&a->lock);
    sl_free(a);
}

bool ingest_auth_has_scope(const char *scopes, const char *scope)
{
    size_t len = strlen(scope);
    const char *p = scopes;

    while (*p != '\0') {
        size_t n = strcspn(p, ",");

        if (n == len && strncmp(p, scope, len) == 0) {
            return true;
        }
        p += n;
        if (*p == ',') {
            p++;
        }
    }
    return false;
}

/* Looks the tenant's effective limits up; called with the lock held on a store verdict. */
static int load_limits(struct ingest_auth *a, struct ingest_auth_result *r, struct sl_err *err)
{
    struct sl_tenant t;
    struct sl_tier tier;
    int rc = sl_store_tenant_get(a->store, r->tenant_id, &t, err);

    if (rc == 0) {
        rc = sl_store_tier_get(a->store, t.tier, &tier, err);
    }
    if (rc != 0) {
        return rc;
    }
    r->rate_limit_eps = t.rate_limit_override >= 0 ? t.rate_limit_override : tier.rate_limit_eps;
    r->burst = t.burst_override >= 0 ? t.burst_override : tier.burst;
    return 0;
}

int ingest_auth_check(struct ingest_auth *a, const char *key, size_t len, int64_t now_ms,
                      struct ingest_auth_result *out, struct sl_err *err)
{
    unsigned char hash[HASH_LEN];
    unsigned int hash_len = 0;
    struct sl_key_check check;
    struct entry *e;
    size_t slot;
    int rc;

    memset(out, 0, sizeof(*out));
    if (EVP_Digest(key, len, hash, &hash_len, EVP_sha256(), NULL) != 1) {
        return sl_err_set(err, SL_EIO, "SHA-256 failed");
    }
    memcpy(&slot, hash, sizeof(slot));
    slot %= a->n_entries;
    pthread_mutex_lock(&a->lock);
    e = &a->entries[slot];
    if (e->is_used && now_ms < e->valid_until_ms && memcmp(e->hash, hash, HASH_LEN) == 0) {
        *out = e->result;
        out->is_cached = true;
        /* A cached key still expires on time. */
        if (out->status == SL_KEY_OK && e->key_expires_ms != 0 && now_ms >= e->key_expires_ms) {
            out->status = SL_KEY_EXPIRED;
        }
        pthread_mutex_unlock(&a->lock);
        return 0;
    }
    rc = sl_store_key_verify(a->store, key, len, now_ms / 1000, &check, err);
    if (rc == 0) {
        out->status = check.status;
        memcpy(out->key_id, check.key_id, sizeof(out->key_id));
        memcpy(out->tenant_id, check.tenant_id, sizeof(out->tenant_id));
        memcpy(out->scopes, check.scopes, sizeof(out->scopes));
        if (check.status == SL_KEY_OK) {
            rc = load_limits(a, out, err);
            /* Recording use is best effort: a busy store must not refuse a valid key. */
            if (rc == 0) {
                sl_store_key_touch(a->store, check.key_id, now_ms / 1000, NULL);
            }
        }
    }
    if (rc == 0) {
        memcpy(e->hash, hash, HASH_LEN);
        e->is_used = true;
        e->result = *out;
        e->key_expires_ms = check.expires_s * 1000;
        e->valid_until_ms = now_ms + (out->status == SL_KEY_OK ? a->settings.cache_ttl_ms
                                                               : a->settings.negative_cache_ttl_ms);
    }
    pthread_mutex_unlock(&a->lock);
    return rc;
}

bool ingest_auth_is_ready(struct ingest_auth *a)
{
    int rc;

    pthread_mutex_lock(&a->lock);
    rc = sl_store_ping(a->store, NULL);
    pthread_mutex_unlock(&a->lock);
    return rc == 0;
}

/*
 * Per-tenant token buckets in an open-addressing table with linear probing. Tokens are
 * kept in thousandths so slow rates refill smoothly without floating point.
 */
#include "ratelimit.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "store.h"

struct bucket {
    char tenant_id[SL_STORE_ID_MAX]; /* "" when free */
    int64_t milli_tokens;
    int64_t updated_ms;
};

struct ingest_ratelimit {
    pthread_mutex_t lock;
    struct bucket *buckets;
    size_t n_buckets; /* twice max_tenants, so probes stay short */
    size_t n_used;
    size_t max_tenants;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */

    for (; *s != '\0'; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    }
    return h;
}

int ingest_ratelimit_create(struct ingest_ratelimit **out, size_t max_tenants)
{
    struct ingest_ratelimit *rl = NULL;

    *out = NULL;
    if (max_tenants == 0) {
        return SL_EINVAL;
    }
    rl = sl_calloc(1, sizeof(*rl));
    if (rl == NULL) {
        return SL_ENOMEM;
    }
    rl->max_tenants = max_tenants;
    rl->n_buckets = max_tenants * 2;
    rl->buckets = sl_calloc(rl->n_buckets, sizeof(*rl->buckets));
    if (rl->buckets == NULL) {
        sl_free(rl);
        return SL_ENOMEM;
    }
    pthread_mutex_init(&rl->lock, NULL);
    *out = rl;
    return 0;
}

void ingest_ratelimit_destroy(struct ingest_ratelimit *rl)
{
    if (rl == NULL) {
        return;
    }
    pthread_mutex_destroy(&rl->lock);
    sl_free(rl->buckets);
    sl_free(rl);
}

static void refill(struct bucket *b, int64_t rate_eps, int64_t burst, int64_t now_ms)
{
    int64_t elapsed = now_ms - b->updated_ms;
    int64_t cap = burst * 1000;

    if (elapsed > 0) {
        /* rate_eps tokens a second = rate_eps milli-tokens a millisecond. */
        if (elapsed > cap / (rate_eps > 0 ? rate_eps : 1) + 1) {
            b->milli_tokens = cap;
        }
        else {
            b->milli_tokens += elapsed * rate_eps;
        }
        b->updated_ms = now_ms;
    }
    if (b->milli_tokens > cap) {
        b->milli_tokens = cap;
    }
}

/* Drops every bucket that would be full by now (they carry no state) and rebuilds the
 * table. Called with the lock held when the table is full. */
static void drop_full_buckets(struct ingest_ratelimit *rl, int64_t now_ms)
{
    struct bucket *old = rl->buckets;
    struct bucket *keep = sl_calloc(rl->n_buckets, sizeof(*keep));
    size_t n_keep = 0;

    if (keep == NULL) {
        return;
    }
    for (size_t i = 0; i < rl->n_buckets; i++) {
        /* Without the tenant's rate here, a bucket idle for a minute counts as full:
         * every tier refills its burst in well under that. */
        if (old[i].tenant_id[0] != '\0' && now_ms - old[i].updated_ms < 60000) {
            size_t j = hash_str(old[i].tenant_id) % rl->n_buckets;

            while (keep[j].tenant_id[0] != '\0') {
                j = (j + 1) % rl->n_buckets;
            }
            keep[j] = old[i];
            n_keep++;
        }
    }
    rl->buckets = keep;
    rl->n_used = n_keep;
    sl_free(old);
}

int ingest_ratelimit_take(struct ingest_ratelimit *rl, const char *tenant_id, int64_t rate_eps,
                          int64_t burst, int64_t n, int64_t now_ms, int64_t *retry_after_ms)
{
    struct bucket *b = NULL;
    size_t i;
    int rc = 0;

    *retry_after_ms = 0;
    if (rate_eps < 1) {
        rate_eps = 1;
    }
    if (burst < 1) {
        burst = 1;
    }
    pthread_mutex_lock(&rl->lock);
    for (int attempt = 0; attempt < 2 && b == NULL; attempt++) {
        i = hash_str(tenant_id) % rl->n_buckets;
        while (rl->buckets[i].tenant_id[0] != '\0' &&
               strcmp(rl->buckets[i].tenant_id, tenant_id) != 0) {
            i = (i + 1) % rl->n_buckets;
        }
        if (rl->buckets[i].tenant_id[0] != '\0') {
            b = &rl->buckets[i];
        }
        else if (rl->n_used < rl->max_tenants) {
            b = &rl->buckets[i];
            snprintf(b->tenant_id, sizeof(b->tenant_id), "%s", tenant_id);
            b->milli_tokens = burst * 1000;
            b->updated_ms = now_ms;
            rl->n_used++;
        }
        else {
            drop_full_buckets(rl, now_ms);
        }
    }
    if (b == NULL) {
        pthread_mutex_unlock(&rl->lock);
        return SL_ENOMEM;
    }
    refill(b, rate_eps, burst, now_ms);
    if (n > burst) {
        *retry_after_ms = (burst * 1000 - b->milli_tokens) / rate_eps + 1;
        rc = SL_EBUSY;
    }
    else if (b->milli_tokens >= n * 1000) {
        b->milli_tokens -= n * 1000;
    }
    else {
        *retry_after_ms = (n * 1000 - b->milli_tokens + rate_eps - 1) / rate_eps;
        rc = SL_EBUSY;
    }
    pthread_mutex_unlock(&rl->lock);
    return rc;
}

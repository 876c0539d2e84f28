/* Per-tenant enrichment policy through a bounded, direct-mapped cache over the store. */
#include "policy.h"

#include <pthread.h>
#include <string.h>

#include "alloc.h"

/* Slots of the table: tenants beyond this share slots (a colliding tenant replaces). */
#define N_SLOTS 4096

struct slot {
    char tenant_id[SL_STORE_ID_MAX];
    bool is_used;
    int64_t valid_until_ms;
    struct ingest_policy_tenant policy;
};

struct ingest_policy {
    pthread_mutex_t lock;
    struct sl_store *store;
    int64_t ttl_ms;
    struct slot slots[N_SLOTS];
};

int ingest_policy_create(struct ingest_policy **out, const char *db_path,
                         int64_t busy_timeout_ms, int64_t ttl_ms, struct sl_err *err)
{
    struct ingest_policy *p = sl_calloc(1, sizeof(*p));
    int rc;

    *out = NULL;
    if (p == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory creating the tenant policy cache");
    }
    pthread_mutex_init(&p->lock, NULL);
    p->ttl_ms = ttl_ms;
    rc = sl_store_open(&p->store, db_path, busy_timeout_ms, err);
    if (rc != 0) {
        ingest_policy_destroy(p);
        return rc;
    }
    *out = p;
    return 0;
}

void ingest_policy_destroy(struct ingest_policy *p)
{
    if (p == NULL) {
        return;
    }
    sl_store_close(p->store);
    pthread_mutex_destroy(&p->lock);
    sl_free(p);
}

/* FNV-1a of the tenant id, for the slot. */
static size_t slot_of(const char *tenant_id)
{
    uint64_t h = UINT64_C(14695981039346656037);

    for (const unsigned char *c = (const unsigned char *)tenant_id; *c != '\0'; c++) {
        h = (h ^ *c) * UINT64_C(1099511628211);
    }
    return (size_t)(h % N_SLOTS);
}

/* Reads the tenant and its tier; called with the lock held. */
static int load(struct ingest_policy *p, const char *tenant_id, struct ingest_policy_tenant *out,
                struct sl_err *err)
{
    struct sl_tenant t;
    struct sl_tier tier;
    int rc = sl_store_tenant_get(p->store, tenant_id, &t, err);

    if (rc == SL_ENOTFOUND) {
        return 0; /* the defaults */
    }
    if (rc == 0) {
        rc = sl_store_tier_get(p->store, t.tier, &tier, err);
    }
    if (rc != 0) {
        return rc;
    }
    out->is_known = true;
    out->has_enrichment = tier.has_enrichment;
    out->drop_bots = t.drop_bots;
    return 0;
}

int ingest_policy_get(struct ingest_policy *p, const char *tenant_id, int64_t now_ms,
                      struct ingest_policy_tenant *out, struct sl_err *err)
{
    size_t len = strlen(tenant_id);
    struct slot *s;
    bool is_same;
    int rc;

    *out = (struct ingest_policy_tenant){.has_enrichment = true};
    if (len >= SL_STORE_ID_MAX) {
        return 0; /* no tenant id is this long: an unknown tenant */
    }
    pthread_mutex_lock(&p->lock);
    s = &p->slots[slot_of(tenant_id)];
    is_same = s->is_used && strcmp(s->tenant_id, tenant_id) == 0;
    if (is_same && now_ms < s->valid_until_ms) {
        *out = s->policy;
        pthread_mutex_unlock(&p->lock);
        return 0;
    }
    rc = load(p, tenant_id, out, err);
    if (rc == 0) {
        memcpy(s->tenant_id, tenant_id, len + 1);
        s->is_used = true;
        s->policy = *out;
        s->valid_until_ms = now_ms + p->ttl_ms;
    }
    else if (is_same) {
        /* The store is busy or gone: the last answer is better than a guess. */
        *out = s->policy;
        rc = 0;
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

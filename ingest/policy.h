/*
 * Per-tenant enrichment policy for the loader and the edge: whether the tenant's tier has
 * enrichment on (tiers.enrichment) and whether the tenant has bots dropped at the edge
 * (tenants.drop_bots). Answers come from the tenant store through a bounded, direct-mapped
 * cache with a short TTL (as auth.c does for keys), so neither the loader nor the edge asks
 * SQLite per event: a change is seen within one TTL.
 *
 * Any thread may call; one mutex guards the table and the store handle.
 */
#ifndef SLUICE_INGEST_POLICY_H
#define SLUICE_INGEST_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

struct ingest_policy;

/* What one tenant's settings say. */
struct ingest_policy_tenant {
    bool is_known;       /* the store has the tenant (else the defaults below) */
    bool has_enrichment; /* its tier enriches (true for an unknown tenant, as every
                          * built-in tier does) */
    bool drop_bots;      /* bots are dropped at the edge (false for an unknown tenant) */
};

/*
 * Opens its own handle on the tenant store at db_path (borrowed) and an empty cache whose
 * entries live ttl_ms. Fails like sl_store_open, or SL_ENOMEM; *out is NULL on failure.
 */
int ingest_policy_create(struct ingest_policy **out, const char *db_path,
                         int64_t busy_timeout_ms, int64_t ttl_ms, struct sl_err *err);

/* Closes the store handle and frees the cache. Accepts NULL. */
void ingest_policy_destroy(struct ingest_policy *p);

/*
 * The policy of tenant_id (borrowed) at now_ms, monotonic milliseconds (CLOCK_MONOTONIC:
 * every caller of one cache must use the same clock).
 * Returns 0 with *out filled. When the store fails it returns the entry it had for the
 * tenant, however old, with 0; with none it returns the store's negative code, err says
 * why and *out holds the defaults (enrich, do not drop).
 */
int ingest_policy_get(struct ingest_policy *p, const char *tenant_id, int64_t now_ms,
                      struct ingest_policy_tenant *out, struct sl_err *err);

#endif

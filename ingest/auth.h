/*
 * API-key authentication for the edge: verdicts from the tenant store, kept in a bounded
 * in-memory cache (positive and negative entries with short TTLs) so the store is not hit
 * per request and a revoked key stops working within one TTL.
 *
 * The cache is keyed by the SHA-256 of the presented key, so raw secrets are never kept.
 * It is direct-mapped (a fixed table; a colliding key replaces the entry), which bounds
 * memory without an LRU list. Any thread may call; one mutex guards the table and the
 * store handle.
 */
#ifndef SLUICE_INGEST_AUTH_H
#define SLUICE_INGEST_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "err.h"
#include "store.h"

struct ingest_auth;

struct ingest_auth_settings {
    int64_t cache_ttl_ms;          /* SLUICE_AUTH_CACHE_TTL_MS: positive verdicts */
    int64_t negative_cache_ttl_ms; /* SLUICE_AUTH_NEGATIVE_CACHE_TTL_MS: refusals */
    int64_t cache_entries;         /* SLUICE_AUTH_CACHE_ENTRIES: table size */
};

extern const struct sl_cfg_opt ingest_auth_cfg_opts[];
extern const size_t ingest_auth_cfg_n_opts;

/* A verdict plus what the edge needs about the tenant. */
struct ingest_auth_result {
    enum sl_key_status status;
    char key_id[SL_STORE_ID_MAX];
    char tenant_id[SL_STORE_ID_MAX];
    char scopes[SL_STORE_SCOPES_MAX];
    int64_t rate_limit_eps; /* effective: tenant override or tier */
    int64_t burst;
    bool is_cached;         /* answered from the cache */
};

/*
 * Opens its own handle on the tenant store at db_path (borrowed) and an empty cache.
 * Fails like sl_store_open. *out is NULL on failure.
 */
int ingest_auth_create(struct ingest_auth **out, const char *db_path, int64_t busy_timeout_ms,
                       const struct ingest_auth_settings *s, struct sl_err *err);

/* Closes the store handle and frees the cache. Accepts NULL. */
void ingest_auth_destroy(struct ingest_auth *a);

/*
 * Checks a presented key (borrowed) at now_ms. Returns 0 with out->status set (SL_KEY_OK
 * or why not), or a negative code when the store failed and no verdict could be reached
 * (the edge answers 503 then; nothing is cached).
 */
int ingest_auth_check(struct ingest_auth *a, const char *key, size_t len, int64_t now_ms,
                      struct ingest_auth_result *out, struct sl_err *err);

/* Whether the tenant store answers a read (readiness). */
bool ingest_auth_is_ready(struct ingest_auth *a);

/* Whether scope (e.g. "ingest") is in a comma-separated scopes list. */
bool ingest_auth_has_scope(const char *scopes, const char *scope);

#endif

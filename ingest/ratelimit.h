/*
 * Per-tenant token buckets: each tenant earns rate_eps tokens a second up to burst, and a
 * request of n events takes n tokens or is refused whole with how long to wait. Buckets
 * live in a bounded table; a full bucket carries no state, so when the table is full an
 * idle tenant's bucket is dropped and recreated full later. Any thread may call.
 */
#ifndef SLUICE_INGEST_RATELIMIT_H
#define SLUICE_INGEST_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct ingest_ratelimit;

/* Creates a table for up to max_tenants buckets. *out is NULL on failure. */
int ingest_ratelimit_create(struct ingest_ratelimit **out, size_t max_tenants);

/* Frees the table. Accepts NULL. */
void ingest_ratelimit_destroy(struct ingest_ratelimit *rl);

/*
 * Takes n tokens from tenant's bucket at now_ms. Returns 0 when allowed; SL_EBUSY when not,
 * with *retry_after_ms set to when n tokens will be there (or, for n above burst, when a
 * full bucket is, since such a request can never pass whole); SL_ENOMEM when no bucket
 * could be made (the caller refuses with 503).
 */
int ingest_ratelimit_take(struct ingest_ratelimit *rl, const char *tenant_id, int64_t rate_eps,
                          int64_t burst, int64_t n, int64_t now_ms, int64_t *retry_after_ms);

#endif

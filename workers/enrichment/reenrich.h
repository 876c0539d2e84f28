/*
 * Re-enrichment of stored events: rewrites the rows of one tenant and time range whose
 * enrichment_version is missing (0) or older than the current one (enrich_version_id) with
 * freshly enriched values. The re-enrichment job (enrich_job.c) calls it per tenant and
 * hour; a backfill of kind "enrichment" may call it for any range.
 *
 * How a range is rewritten, all in ClickHouse except the lookups:
 *  1. The newest copy of every event in the range (argMax by the ReplacingMergeTree
 *     version) whose enrichment_version is below the current one is found, grouped by
 *     (ip, user_agent, client_hints): enrichment depends on nothing else, and real traffic
 *     repeats them (a "pair" below is such a key).
 *     At most batch_pairs pairs are taken per step.
 *  2. Each pair is enriched here and the answers are inserted (RowBinary) into a Memory
 *     table of this call (`_sluice_reenrich_<random>` in the same database, dropped after).
 *  3. `INSERT INTO events SELECT` joins the newest copies with the answers and writes each
 *     event again with every other column as it was (tenant_id, ts, ts_ms and id too, so
 *     the sorting key, and thus the event, stays the same), the new enrichment columns and
 *     a higher version (greatest(now in ms, old version + 1)). ReplacingMergeTree keeps the
 *     new row; counts by uniqExact(id) do not change. Rollups split by country_code,
 *     browser, os or device see the event under both values until rebuilt (SCHEMA.md,
 *     "Rollups and enrichment").
 *  Steps repeat until no pair is left. A rewritten event has the current version, so a
 *  second call (or a call after a crash in the middle) finds nothing more to do: the range
 *  is idempotent and resumable.
 *
 * Blocking (ClickHouse over HTTP); one thread per client.
 */
#ifndef SLUICE_WORKERS_ENRICHMENT_REENRICH_H
#define SLUICE_WORKERS_ENRICHMENT_REENRICH_H

#include <stddef.h>
#include <stdint.h>

#include "ch.h"
#include "enrich.h"
#include "err.h"

/* Default and largest number of (ip, user_agent) pairs enriched per step. */
#define ENRICH_REWRITE_BATCH_PAIRS 5000
#define ENRICH_REWRITE_MAX_BATCH_PAIRS 100000

/*
 * Whether e's data may be used to rewrite stored rows: 0 when every configured part loads
 * (a degraded part still serves what it had), else SL_ESTATE with err naming the first part
 * that does not. Rewriting with a database that does not load would blank its columns in
 * rows that had them.
 */
int enrich_rewrite_check_data(struct enrich *e, struct sl_err *err);

/*
 * Rewrites the events of tenant_id with from_s <= ts < to_s (unix seconds) whose
 * enrichment_version is below enrich_version_id(e), as described above.
 *
 *   ch            borrowed: a client with no default database or this one; this thread's
 *   e             borrowed: the enrichment to apply (its current data and version)
 *   database      borrowed: the ClickHouse database holding events
 *   tenant_id     borrowed
 *   batch_pairs   pairs per step, 1..ENRICH_REWRITE_MAX_BATCH_PAIRS
 *   now_ms        unix ms: the lower bound of the new rows' version
 *   rows_read     out (added to): events found needing a rewrite
 *   rows_written  out (added to): events written again
 *
 * Returns 0, or the client's failure (SL_ESERVER, SL_ENET, SL_ETIMEDOUT: retry later;
 * what was written stays written and counts as done), SL_EINVAL (bad names, batch_pairs),
 * SL_ENOMEM, or SL_ESTATE when a step wrote nothing although pairs were found (it stops
 * rather than loop). err says which step failed and why.
 */
int enrich_rewrite_range(struct sl_ch *ch, struct enrich *e, const char *database,
                         const char *tenant_id, int64_t from_s, int64_t to_s,
                         int64_t batch_pairs, int64_t now_ms, int64_t *rows_read,
                         int64_t *rows_written, struct sl_err *err);

#endif

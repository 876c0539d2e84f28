/*
 * Backfills: chunked, checkpointed, resumable recomputation of the ClickHouse tables the
 * materialized views fill (sessions, events_hourly, events_daily) for one tenant or all,
 * over a time range. This header is what the scheduler (the `backfill` worker), the CLI
 * (`sluice backfill`, its planning and --dry-run) and tests use:
 *
 *   - the kind registry: one const descriptor per kind (kinds.c);
 *   - planning: chunk sizes, ranges, the next chunk, progress and ETA (plan.c, pure);
 *   - one chunk: recompute, replace the slice, verify (replace.c, blocking ClickHouse I/O);
 *   - the runner, a scheduler worker (worker.c).
 *
 * The rows (jobs, checkpoints) live in the tenant store: lib/store_backfill.h. How a chunk
 * replaces its slice without ever showing it empty or doubled is in README.md.
 */
#ifndef SLUICE_WORKERS_BACKFILL_BACKFILL_H
#define SLUICE_WORKERS_BACKFILL_BACKFILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ch.h"
#include "err.h"
#include "store_backfill.h"

#define BACKFILL_HOUR_S 3600
#define BACKFILL_DAY_S 86400

/* The runner, registered in scheduler/registry.c (type in scheduler/worker.h). */
struct sched_worker;
struct enrich;
extern const struct sched_worker backfill_worker;

/* ---- kinds (kinds.c) ---- */

struct backfill_kind;

/* The kind named name, or NULL. Any thread. */
const struct backfill_kind *backfill_kind_find(const char *name);
/* The registry in order: i < backfill_kind_count(). */
size_t backfill_kind_count(void);
const struct backfill_kind *backfill_kind_at(size_t i);
const char *backfill_kind_name(const struct backfill_kind *k);
/* What it recomputes, one line (for --help). */
const char *backfill_kind_summary(const struct backfill_kind *k);
/* Whether its chunks need a struct enrich in backfill_chunk_opts (the enrichment kind):
 * callers create one only for such kinds, since creating it loads the rule files. */
bool backfill_kind_needs_enrich(const struct backfill_kind *k);
/* SL_EINVAL (err says which sizes work) when the kind cannot use chunks of chunk_s. */
int backfill_kind_check_chunk(const struct backfill_kind *k, int64_t chunk_s,
                              struct sl_err *err);

/* ---- planning (plan.c): pure functions ---- */

/* Parses a chunk size: "1h" or "1d" (also "3600", "86400"). SL_EINVAL otherwise. */
int backfill_plan_chunk_parse(const char *text, int64_t *chunk_s, struct sl_err *err);

/*
 * Turns --from and --to into a chunk-aligned range [*from_s, *to_s). Each is a date
 * (YYYY-MM-DD) or an RFC 3339 time. --from is rounded down to a chunk boundary; a bare
 * date in --to means the end of that day (the range includes it), a time is exclusive and
 * rounded up. SL_EINVAL (naming the text) for bad text or an empty range. Outputs are
 * unchanged on failure.
 */
int backfill_plan_range(const char *from_text, const char *to_text, int64_t chunk_s,
                        int64_t *from_s, int64_t *to_s, struct sl_err *err);

/* The chunk a job works on next, [*from_s, *to_s), or false when the cursor is at the end. */
bool backfill_plan_next(const struct sl_backfill_job *job, int64_t *from_s, int64_t *to_s);

struct backfill_progress {
    double fraction;   /* chunks done / total, 0..1 */
    double rows_per_s; /* rows read per second of chunk work; 0 when unknown */
    int64_t eta_s;     /* seconds of work left at the pace so far; -1 when unknown */
};

/* Progress of a job from its totals. */
void backfill_progress_of(const struct sl_backfill_job *job, struct backfill_progress *out);

/* ---- one chunk (replace.c): blocking, on the caller's thread ---- */

struct backfill_chunk_opts {
    const char *tag;          /* names the chunk's staging tables (_backfill_<tag>_*); the
                                 job id for jobs. Letters, digits and '_' */
    int64_t catchup_margin_s; /* how far before the snapshot the live catch-up looks (loader
                                 and scheduler clocks may differ) */
    int64_t now_s;            /* wall clock when the chunk starts */
    bool is_dry_run;          /* compute the numbers, write nothing */
    struct enrich *enrich;    /* borrowed: the enrichment data the enrichment kind applies;
                                 NULL when the process has none configured (that kind's
                                 chunks then fail naming the settings to set). Other kinds
                                 ignore it */
    int64_t enrich_batch_pairs; /* the enrichment kind: distinct (ip, user agent) pairs per
                                   rewrite step (enrich_rewrite_range); 0: its default */
};

struct backfill_chunk_result {
    int64_t rows_read;    /* source rows in the slice (raw events, or hourly rows; for the
                             enrichment kind, events counted once each) */
    int64_t rows_written; /* rows the recomputation wrote (or would write) for the slice;
                             for the enrichment kind, events rewritten (or to rewrite) */
    int64_t rows_before;  /* rows the slice held before (enrichment: its events) */
    char source[16];      /* "events", "hourly", or "none" when there was nothing to read */
    bool is_kept;         /* no source rows: the slice was left as it was */
};

/*
 * Recomputes kind k's rows for tenant_id ("" = every tenant) in [from_s, to_s) (within one
 * UTC day, aligned to the kind's chunks) in `database` (borrowed), replaces the slice with
 * them and checks that the slice now reads exactly as the recomputation from the source.
 * Re-running a finished chunk changes nothing. With opts->is_dry_run only reads. Fails as
 * sl_ch_query (the ClickHouse error in err) or SL_ESTATE when verification disagreed; the
 * slice then holds either the old rows or the recomputed ones, never a mix that reads
 * wrong, and running the chunk again completes it.
 *
 * The enrichment kind instead rewrites, in `events` itself, the events of the slice whose
 * newest copy has an enrichment_version below enrich_version_id(opts->enrich)
 * (kind_enrichment.c) and verifies that none is left. It fails with SL_EINVAL when
 * opts->enrich is NULL and SL_ESTATE when a configured data file does not load (rewriting
 * would blank its columns), before writing anything.
 */
int backfill_chunk_run(struct sl_ch *ch, const char *database, const struct backfill_kind *k,
                       const char *tenant_id, int64_t from_s, int64_t to_s,
                       const struct backfill_chunk_opts *opts,
                       struct backfill_chunk_result *out, struct sl_err *err);

#endif

/*
 * Internals shared by the files of workers/backfill/: the layout of a kind descriptor and
 * the slice a chunk works on. Nothing outside this folder includes it.
 */
#ifndef SLUICE_WORKERS_BACKFILL_BACKFILL_INT_H
#define SLUICE_WORKERS_BACKFILL_BACKFILL_INT_H

#include "backfill.h"

/* One chunk's work: a kind, a tenant ("" = all) and a range inside one UTC day. */
struct backfill_slice {
    const struct backfill_kind *kind;
    struct sl_ch *ch;
    const char *database;
    const char *tenant_id;
    int64_t from_s;
    int64_t to_s;
    const struct backfill_chunk_opts *opts;
};

/* Runs one chunk of a kind (recompute, replace, verify); see backfill_chunk_run. */
typedef int (*backfill_chunk_cb)(const struct backfill_slice *s,
                                 struct backfill_chunk_result *out, struct sl_err *err);

/*
 * A kind. The three rollup kinds share one chunk function (backfill_replace_chunk, which
 * verifies inside), driven by the SQL pieces below; a kind that works another way (the
 * enrichment kind rewriting raw rows, backfill_enrich_chunk) brings its own chunk function
 * and leaves the SQL pieces NULL.
 *
 * Templates: "{db}" is the quoted database, "{where}" the slice's filter on the source.
 */
struct backfill_kind {
    const char *name;
    const char *summary;
    int64_t min_chunk_s;       /* BACKFILL_HOUR_S or BACKFILL_DAY_S; chunks never cross days */
    backfill_chunk_cb chunk;
    bool needs_enrich;         /* chunks use opts->enrich (backfill_kind_needs_enrich) */
    /* For backfill_replace_chunk: */
    const char *table;         /* target table */
    const char *time_col;      /* its time column */
    bool is_date;              /* time_col is a Date (else DateTime('UTC')) */
    const char *keys;          /* the target's grouping key, for verification */
    const char *finals;        /* the states finalized (-Merge), for verification */
    const char *from_events;   /* SELECT of target rows from {db}.events WHERE {where} */
    const char *from_hourly;   /* NULL, or SELECT of target rows from {db}.events_hourly
                                  WHERE {where}, used when a day has no raw rows left
                                  (tenants whose raw events were compressed away) */
};

/* The chunk function of the rollup kinds (replace.c). */
int backfill_replace_chunk(const struct backfill_slice *s, struct backfill_chunk_result *out,
                           struct sl_err *err);

/* The enrichment kind's chunk function (kind_enrichment.c): rewrite, then verify. */
int backfill_enrich_chunk(const struct backfill_slice *s, struct backfill_chunk_result *out,
                          struct sl_err *err);

#endif

/*
 * The compression worker's rows in the tenant store: cold_exports, one row per tenant and
 * day that has cold files, and the deletion_audit rows for the raw events compression
 * deletes. A day's files may be several parts (late events that arrived after the day was
 * compressed make a new part); the row sums them up and its state and checksum describe
 * the last part, which moves exported -> verified -> deleted (and restored after
 * `sluice restore`). The files themselves and what is proven before a delete are the
 * worker's (workers/compression/). Retention reads and forgets these rows through
 * store_retention.h.
 *
 * Same rules as store.h: one struct sl_store per thread, 0 or a negative SL_E code with err
 * filled, every value bound as a parameter.
 */
#ifndef SLUICE_LIB_STORE_COLD_H
#define SLUICE_LIB_STORE_COLD_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

#define SL_STORE_COLD_DAY_MAX 11    /* "YYYY-MM-DD" + NUL */
#define SL_STORE_COLD_PATH_MAX 1024
#define SL_STORE_COLD_SHA_MAX 65
#define SL_STORE_COLD_STATE_MAX 16

/* One cold_exports row. */
struct sl_cold_day {
    char tenant_id[SL_STORE_ID_MAX];
    char day[SL_STORE_COLD_DAY_MAX];    /* YYYY-MM-DD (UTC) */
    char path[SL_STORE_COLD_PATH_MAX];  /* absolute folder of the day's parts and manifests */
    int64_t parts;                      /* parts written; the last is the one `state` is of */
    int64_t part_rows;                  /* rows of the last part */
    int64_t rows;                       /* rows of all parts */
    int64_t min_ts;                     /* first and last event time over all parts (unix s) */
    int64_t max_ts;
    int64_t max_version;                /* the last part's highest row version */
    char sha256[SL_STORE_COLD_SHA_MAX]; /* the last part's data file */
    char state[SL_STORE_COLD_STATE_MAX]; /* exported, verified, deleted, restored */
    int64_t created_s;
    int64_t updated_s;
};

/* The day's row; SL_ENOTFOUND when the day has no cold files recorded. */
int sl_store_cold_get(struct sl_store *st, const char *tenant_id, const char *day,
                      struct sl_cold_day *out, struct sl_err *err);

/*
 * Records that part d->parts of (d->tenant_id, d->day) was written with d->part_rows rows,
 * d->min_ts..d->max_ts, d->max_version and d->sha256 in d->path: state 'exported'. The
 * day's totals add the part; writing the same part number again (a re-export after an
 * interrupted run) replaces its rows in the totals instead. SL_ESTATE when the row's last
 * part is neither that part nor the one before it (parts are written in order).
 */
int sl_store_cold_exported(struct sl_store *st, const struct sl_cold_day *d, int64_t now_s,
                           struct sl_err *err);

/* Moves the day's row from state `from` to `to`; SL_ESTATE (nothing changed) when it is not
 * in `from`, SL_ENOTFOUND when there is no row. */
int sl_store_cold_set_state(struct sl_store *st, const char *tenant_id, const char *day,
                            const char *from, const char *to, int64_t now_s,
                            struct sl_err *err);

/* What compression deleted from the raw table for one part, for the deletion audit. */
struct sl_cold_deletion {
    int64_t run_id;      /* the scheduler run; 0 when none */
    int64_t from_s;      /* the day's first second */
    int64_t cutoff_s;    /* the day's end (exclusive) */
    int64_t rows;        /* raw events deleted (the part's rows) */
    const char *detail;  /* e.g. "day 2026-11-20 part 1 version<=..., cold <path>" */
};

/*
 * Marks the day's last part deleted (from 'verified') and inserts its deletion_audit row
 * (job 'compression', tbl 'events', method 'mutation', state done) in one transaction, so
 * a resumed run can never audit one delete twice. SL_ESTATE (nothing written) when the row
 * is not 'verified'.
 */
int sl_store_cold_deleted(struct sl_store *st, const char *tenant_id, const char *day,
                          const struct sl_cold_deletion *del, int64_t now_s,
                          struct sl_err *err);

/*
 * Returns a new array (free with sl_free; NULL when empty) of the rows of tenant_id with
 * from_day <= day <= to_day (either NULL: open), ordered by day.
 */
int sl_store_cold_list(struct sl_store *st, const char *tenant_id, const char *from_day,
                       const char *to_day, struct sl_cold_day **out, size_t *n_out,
                       struct sl_err *err);

#endif

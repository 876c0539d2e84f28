/*
 * Internals shared by the compression job's files: its settings and context, one chunk's
 * work (chunk.c) and the SQL it runs (sql.c). Tests include this to run chunks with hooks.
 * Nothing outside workers/compression/ and its tests includes this.
 */
#ifndef SLUICE_WORKERS_COMPRESSION_COMPRESS_INT_H
#define SLUICE_WORKERS_COMPRESSION_COMPRESS_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "ch.h"
#include "cold.h"
#include "log.h"
#include "metrics.h"
#include "store.h"
#include "worker.h"

/* SLUICE_COLD_DIR and SLUICE_JOB_COMPRESSION_*. */
struct compress_settings {
    char *cold_dir;               /* SLUICE_COLD_DIR */
    int64_t max_chunks;           /* tenant-days per run */
    int64_t mutation_timeout_s;   /* wait for the raw delete to finish */
    int64_t query_timeout_s;      /* one ClickHouse request (an export streams a day) */
    int64_t zstd_level;
    int64_t restore_hold_hours;   /* a restored day is left alone this long */
};

/* Test hooks: called between the steps of a chunk; NULL for none. */
struct compress_hooks {
    /* After the part's files are written, before they are verified (a test corrupts one). */
    void (*after_export)(void *user, const char *day_dir, const char *file);
    /* After the cold_exports row is 'verified', before the delete (a test stops here). */
    void (*before_delete)(void *user, const char *tenant_id, const char *day);
    void *user;
};

struct compress_ctx {
    struct sl_ch *ch;
    char *database;              /* unquoted */
    char *cold_dir;
    int64_t max_chunks;
    int64_t mutation_timeout_ms;
    int zstd_level;
    int64_t restore_hold_s;
    struct compress_hooks hooks;
    struct sl_metrics_series *m_chunks_done;
    struct sl_metrics_series *m_chunks_failed;
    struct sl_metrics_series *m_rows;
    struct sl_metrics_series *m_bytes;
    struct sl_metrics_series *m_refilled;
};

/* What one chunk did. */
struct compress_chunk_result {
    int64_t rows_deleted;     /* raw events moved to cold storage and deleted */
    int64_t rollup_refilled;  /* events that were missing from a rollup and were put back */
    int64_t bytes;            /* cold bytes written */
    int64_t parts;            /* parts written (0 or 1, 2 when a pending part was finished
                                 and late rows followed) */
};

/* One tenant-day being compressed: built by compress_chunk_run, read by its steps. */
struct compress_chunk {
    struct compress_ctx *c;
    struct sched_run *run;
    const char *tenant;
    const char *day;
    int64_t from_s;                   /* the day's first second */
    int64_t to_s;                     /* the next day's first second */
    char dir[COMPRESS_COLD_PATH_MAX]; /* its cold folder */
    struct sl_ch_buf sql;             /* the statement being built */
    struct sl_log_ctx log;
    struct compress_chunk_result *res;
    struct sl_err *err;
};

/*
 * Compresses one tenant-day: finishes a part a previous run left exported or verified,
 * then, while raw rows remain, proves the rollups hold them, exports, verifies and deletes
 * them as the next part. Fails with SL_ESTATE (a proof failed: nothing deleted), or as the
 * store, ClickHouse or the file system fail; SL_ECANCELED when the run was asked to stop
 * (at a safe point; the next run resumes). err says which tenant, day and step.
 */
int compress_chunk_run(struct compress_ctx *c, struct sched_run *run, const char *tenant_id,
                       const char *day, struct compress_chunk_result *res,
                       struct sl_err *err);

/*
 * Step 3 (rollup.c): proves events_hourly and events_daily hold every raw event of k's
 * tenant-day with version <= v (raw_rows of them), refilling a rollup from the raw rows
 * once when some are missing. SL_ESTATE naming the rollup and the shortfall when the proof
 * still fails; ClickHouse failures as compress_chunk_exec.
 */
int compress_rollup_prove(struct compress_chunk *k, int64_t v, int64_t raw_rows);

/* ---- SQL (sql.c) ---- */

/* Runs k->sql and reads n integers (compress_sql_ints); err says tenant, day and step. */
int compress_chunk_ints(struct compress_chunk *k, const char *step, int64_t *out, size_t n);

/* Runs k->sql for no result (sl_ch_exec); err says tenant, day and step. */
int compress_chunk_exec(struct compress_chunk *k, const char *step);

/* Appends to k->sql the WHERE of k's tenant-day (and version <= v when v >= 0). */
int compress_chunk_where(struct compress_chunk *k, int64_t v);

/* Appends to k->sql the quoted name of table in the job's database. */
int compress_chunk_table(struct compress_chunk *k, const char *table);

/* SL_ENOMEM into k->err: building k's SQL ran out of memory (names tenant and day). */
int compress_chunk_oom(struct compress_chunk *k);

/* Runs sql and parses its TabSeparated answer's first row as up to n integers into out
 * (missing ones 0). SL_ESERVER etc. as sl_ch_query; SL_EINVAL for an answer that is not
 * numbers. */
int compress_sql_ints(struct sl_ch *ch, const char *sql, int64_t *out, size_t n,
                      struct sl_err *err);

/*
 * Appends to b: "tenant_id = '<t>' AND ts >= toDateTime(<from_s>) AND ts < toDateTime(<to_s>)"
 * with the tenant quoted, and " AND version <= <v>" when max_version >= 0.
 */
int compress_sql_where(struct sl_ch_buf *b, const char *tenant_id, int64_t from_s, int64_t to_s,
                       int64_t max_version);

/*
 * The ordinary columns of db.events in table order (DESCRIBE TABLE), as "a,b,c" into out
 * (cap bytes). Fails as sl_ch_query, SL_EINVAL when they do not fit.
 */
int compress_sql_columns(struct sl_ch *ch, const char *database, char *out, size_t cap,
                         struct sl_err *err);

/* Appends the comma-separated column list cols as quoted identifiers. */
int compress_sql_column_list(struct sl_ch_buf *b, const char *cols);

#endif

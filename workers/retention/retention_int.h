/*
 * Internals shared by the files of workers/retention/: the tables retention deletes from,
 * the SQL condition builder, the context a deletion runs in and the functions of apply.c,
 * cold.c and wait.c. Nothing outside this folder includes it.
 */
#ifndef SLUICE_WORKERS_RETENTION_INT_H
#define SLUICE_WORKERS_RETENTION_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ch.h"
#include "err.h"
#include "metrics.h"
#include "plan.h"
#include "store.h"
#include "survey.h"
#include "worker.h"

#define RETENTION_N_TABLES 4
#define RETENTION_JOB "retention"

/* A ClickHouse table that holds tenant data, partitioned by toYYYYMMDD(time_col). */
struct retention_table {
    const char *name;
    const char *time_col;
    bool is_date; /* Date column (compared with toDate('YYYY-MM-DD')), else DateTime('UTC') */
};

/* events, sessions, events_hourly, events_daily (ingest/SCHEMA.md). */
extern const struct retention_table retention_tables[RETENTION_N_TABLES];

/* The table named name, or NULL. */
const struct retention_table *retention_table_find(const char *name);

/*
 * Appends " AND col >= <from_s> AND col < <cutoff_s>" for table to b: the first part only
 * when from_s > 0, the second only when cutoff_s is not RETENTION_ALL. Times are spelled
 * toDateTime(N) or toDate('YYYY-MM-DD'), so they do not depend on the server's zone.
 */
int retention_sql_range(struct sl_ch_buf *b, const struct retention_table *t, int64_t from_s,
                        int64_t cutoff_s);

/* Appends "database = '<database>' AND table = '<t's name>'" (system tables' filter) to b. */
int retention_sql_table_is(struct sl_ch_buf *b, const char *database,
                           const struct retention_table *t);

/* Where a deletion runs and what it reports to. Borrowed pointers. */
struct retention_exec {
    struct sl_ch *ch;
    const char *database;
    struct sl_store *st;
    const struct sched_run *run; /* NULL outside the scheduler (no stop requests) */
    int64_t run_id;
    int64_t now_s;
    int64_t mutation_timeout_ms;
    bool has_fail_reason;        /* system.mutations.latest_fail_reason exists */
    /* metrics (NULL series are ignored) */
    struct sl_metrics_series *rows_deleted[RETENTION_N_TABLES + 1]; /* + cold */
    struct sl_metrics_series *partitions_dropped[RETENTION_N_TABLES];
    struct sl_metrics_series *mutations_done[RETENTION_N_TABLES];
    struct sl_metrics_series *mutations_failed[RETENTION_N_TABLES];
    struct sl_metrics_series *cold_dirs_removed;
};

/* Whether the run was asked to stop. */
bool retention_exec_should_stop(const struct retention_exec *x);

/*
 * Checks once whether the server's system.mutations has latest_fail_reason (newer than
 * 18.16) and records it in x.
 */
int retention_wait_detect(struct retention_exec *x, struct sl_err *err);

/*
 * Waits until table has no unfinished mutation, polling system.mutations, for at most
 * timeout_ms. SL_ETIMEDOUT names the mutations still running (and why they fail, where the
 * server says), SL_ECANCELED when the run was asked to stop first.
 */
int retention_wait_mutations(struct retention_exec *x, const struct retention_table *t,
                             int64_t timeout_ms, struct sl_err *err);

/*
 * Deletes what item describes (a partition or a group's rows; see survey.h), auditing each
 * tenant's rows as pending before and done after. *rows_out gets the rows deleted. On
 * SL_ETIMEDOUT / SL_ECANCELED the mutation may still finish: the audit rows stay pending and
 * the next run settles them (retention_apply_resume).
 */
int retention_apply_item(struct retention_exec *x, const struct retention_item *item,
                         int64_t *rows_out, struct sl_err *err);

/*
 * Settles audit rows an earlier run left pending: waits for unfinished mutations on every
 * table, then counts what each pending row described: none left means it was deleted
 * (done); rows left means the delete did not happen (failed; this run deletes them again
 * and audits them anew). *n_out gets how many rows were settled.
 */
int retention_apply_resume(struct retention_exec *x, int64_t *n_out, struct sl_err *err);

/*
 * Removes the cold exports item (kind COLD) names: for each past its tenant's cutoff, the
 * files of its folder, the folder, and the row, audited. *rows_out gets the rows they held.
 */
int retention_cold_apply(struct retention_exec *x, const struct retention_plan *plan,
                         const struct retention_item *item, int64_t *rows_out,
                         struct sl_err *err);

/*
 * Removes the regular files of a tenant-day folder and the folder, and the tenant's folder
 * if it is then empty. Refuses (SL_EINVAL) a path that is not absolute or does not end in
 * "/<tenant_id>/<day>". A folder already gone is success.
 */
int retention_cold_remove_dir(const char *path, const char *tenant_id, const char *day,
                              struct sl_err *err);

#endif

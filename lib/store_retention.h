/*
 * The retention worker's rows in the tenant store: the deletion audit (what every delete
 * removed, per tenant and table, written as 'pending' before a delete and settled as 'done'
 * or 'failed' after it) and the side of cold_exports retention needs (finding a tenant's
 * cold days past a cutoff, and forgetting one after its files are gone, audited in the same
 * transaction). Which rows to delete is the worker's business (workers/retention/).
 *
 * Same rules as store.h: one struct sl_store per thread, 0 or a negative SL_E code with err
 * filled, every value bound as a parameter.
 */
#ifndef SLUICE_LIB_STORE_RETENTION_H
#define SLUICE_LIB_STORE_RETENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

#define SL_STORE_AUDIT_TBL_MAX 33
#define SL_STORE_AUDIT_METHOD_MAX 33
#define SL_STORE_AUDIT_DETAIL_MAX 1024
#define SL_STORE_AUDIT_STATE_MAX 16
#define SL_STORE_DAY_MAX 11 /* "YYYY-MM-DD" + NUL */

/* cutoff_s of a purge (a disabled tenant's data, all of it): nothing is kept. */
#define SL_STORE_AUDIT_ALL INT64_MAX

/* One deletion_audit row. */
struct sl_audit {
    int64_t id;
    int64_t run_id;                        /* 0 when not run by the scheduler */
    char job[SL_STORE_JOB_MAX];
    char tenant_id[SL_STORE_ID_MAX];       /* "" for a delete that names no tenant */
    char tbl[SL_STORE_AUDIT_TBL_MAX];      /* events, sessions, events_hourly, events_daily,
                                              cold */
    char method[SL_STORE_AUDIT_METHOD_MAX]; /* drop_partition, mutation, purge, cold */
    int64_t from_s;                        /* rows at or after this time (0: from the start) */
    int64_t cutoff_s;                      /* rows before this time; SL_STORE_AUDIT_ALL */
    int64_t rows;                          /* counted just before the delete */
    char detail[SL_STORE_AUDIT_DETAIL_MAX]; /* partition, mutation id, folder, failure */
    char state[SL_STORE_AUDIT_STATE_MAX];  /* pending, done, failed */
    int64_t created_s;
    int64_t updated_s;                     /* 0 until settled */
};

/*
 * Inserts n audit rows (a[i].id, state and the times are ignored: every row is written as
 * `state`, "pending" or "done", created at now_s) in one transaction and writes their new
 * ids into a[i].id. Nothing is written on failure. a is borrowed (ids written).
 */
int sl_store_retention_audit_add(struct sl_store *st, struct sl_audit *a, size_t n,
                                 const char *state, int64_t now_s, struct sl_err *err);

/*
 * Settles the audit rows ids[0..n) that are still pending as state ("done" or "failed"),
 * appending note (may be NULL) to their detail, in one transaction. Rows already settled
 * are left alone.
 */
int sl_store_retention_audit_settle(struct sl_store *st, const int64_t *ids, size_t n,
                                    const char *state, const char *note, int64_t now_s,
                                    struct sl_err *err);

/*
 * Returns a new array (free with sl_free; NULL when empty) of audit rows: of job (NULL:
 * any) in state (NULL: any), of tenant (NULL: any; "" the rows naming none), newest first,
 * at most limit.
 */
int sl_store_retention_audit_list(struct sl_store *st, const char *job, const char *state,
                                  const char *tenant, size_t limit, struct sl_audit **out,
                                  size_t *n_out, struct sl_err *err);

/* One cold_exports row, as retention reads it. */
struct sl_cold_export {
    char tenant_id[SL_STORE_ID_MAX];
    char day[SL_STORE_DAY_MAX];            /* YYYY-MM-DD */
    char path[SL_STORE_TARGET_MAX];        /* folder of the tenant-day's cold files */
    int64_t rows;
    char state[SL_STORE_AUDIT_STATE_MAX];  /* exported, verified, deleted, restored */
};

/*
 * Returns a new array (free with sl_free; NULL when empty) of at most limit cold exports
 * ordered by tenant and day: of tenant (non-NULL) with day < before_day ("YYYY-MM-DD";
 * NULL: every day); or, with tenant NULL, of tenants the store does not know, with day <
 * before_day (which must then be given).
 */
int sl_store_retention_cold_list(struct sl_store *st, const char *tenant,
                                 const char *before_day, size_t limit,
                                 struct sl_cold_export **out, size_t *n_out,
                                 struct sl_err *err);

/*
 * Counts the cold exports of tenant with day < before_day (NULL: every day): *days_out
 * rows of cold_exports holding *rows_out event rows. Outputs are 0 on failure.
 */
int sl_store_retention_cold_count(struct sl_store *st, const char *tenant,
                                  const char *before_day, int64_t *days_out, int64_t *rows_out,
                                  struct sl_err *err);

/*
 * Forgets the cold export (audit->tenant_id, day) and inserts audit as done, in one
 * transaction: call after its files were removed. When the row is already gone nothing is
 * written and *is_removed (may be NULL) is false; audit->id gets the new row's id.
 */
int sl_store_retention_cold_forget(struct sl_store *st, const char *day,
                                   struct sl_audit *audit, int64_t now_s, bool *is_removed,
                                   struct sl_err *err);

#endif

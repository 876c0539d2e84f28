/*
 * cold_exports and compression's deletion audit (see store_cold.h). Every value is a bound
 * parameter; the state change that ends a delete and its audit row are one transaction.
 */
#include "store_cold.h"

#include <string.h>

#include "alloc.h"
#include "store_int.h"

#define COLD_COLUMNS                                                                      \
    "tenant_id, day, path, parts, part_rows, rows, coalesce(min_ts, 0), "                 \
    "coalesce(max_ts, 0), max_version, sha256, state, created_at, updated_at"

static void read_day(sqlite3_stmt *stmt, void *dst)
{
    struct sl_cold_day *d = dst;

    memset(d, 0, sizeof(*d));
    sl_store_col_text(stmt, 0, d->tenant_id, sizeof(d->tenant_id));
    sl_store_col_text(stmt, 1, d->day, sizeof(d->day));
    sl_store_col_text(stmt, 2, d->path, sizeof(d->path));
    d->parts = sqlite3_column_int64(stmt, 3);
    d->part_rows = sqlite3_column_int64(stmt, 4);
    d->rows = sqlite3_column_int64(stmt, 5);
    d->min_ts = sqlite3_column_int64(stmt, 6);
    d->max_ts = sqlite3_column_int64(stmt, 7);
    d->max_version = sqlite3_column_int64(stmt, 8);
    sl_store_col_text(stmt, 9, d->sha256, sizeof(d->sha256));
    sl_store_col_text(stmt, 10, d->state, sizeof(d->state));
    d->created_s = sqlite3_column_int64(stmt, 11);
    d->updated_s = sqlite3_column_int64(stmt, 12);
}

int sl_store_cold_get(struct sl_store *st, const char *tenant_id, const char *day,
                      struct sl_cold_day *out, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st,
                              "SELECT " COLD_COLUMNS " FROM cold_exports "
                              "WHERE tenant_id = ?1 AND day = ?2",
                              &stmt, err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, tenant_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, day, -1, SQLITE_STATIC);
    rc = sl_store_row(st, stmt, read_day, out, "reading a cold export", err);
    if (rc == SL_ENOTFOUND) {
        rc = sl_err_set(err, SL_ENOTFOUND, "no cold export of tenant %s for %s", tenant_id, day);
    }
    return rc;
}

int sl_store_cold_exported(struct sl_store *st, const struct sl_cold_day *d, int64_t now_s,
                           struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc;

    /* One statement: a new day inserts; the next part adds to the totals; the same part
     * again replaces its own share. Any other part number changes nothing (checked by
     * sqlite3_changes below). */
    rc = sl_store_prepare(
        st,
        "INSERT INTO cold_exports (tenant_id, day, path, parts, part_rows, rows, min_ts, "
        "max_ts, max_version, sha256, state, created_at, updated_at) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8, ?9, 'exported', ?10, ?10) "
        "ON CONFLICT (tenant_id, day) DO UPDATE SET path = excluded.path, "
        "rows = cold_exports.rows - CASE WHEN cold_exports.parts = excluded.parts "
        "  THEN cold_exports.part_rows ELSE 0 END + excluded.part_rows, "
        "parts = excluded.parts, part_rows = excluded.part_rows, "
        "min_ts = min(coalesce(cold_exports.min_ts, excluded.min_ts), excluded.min_ts), "
        "max_ts = max(coalesce(cold_exports.max_ts, excluded.max_ts), excluded.max_ts), "
        "max_version = excluded.max_version, sha256 = excluded.sha256, state = 'exported', "
        "updated_at = excluded.updated_at "
        "WHERE (excluded.parts = cold_exports.parts AND cold_exports.state = 'exported') "
        "OR (excluded.parts = cold_exports.parts + 1 "
        "    AND cold_exports.state IN ('deleted', 'restored'))",
        &stmt, err);
    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, d->tenant_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, d->day, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, d->path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 4, d->parts);
    sqlite3_bind_int64(stmt, 5, d->part_rows);
    sqlite3_bind_int64(stmt, 6, d->min_ts);
    sqlite3_bind_int64(stmt, 7, d->max_ts);
    sqlite3_bind_int64(stmt, 8, d->max_version);
    sqlite3_bind_text(stmt, 9, d->sha256, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 10, now_s);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE) {
        rc = sqlite3_changes(st->db) == 1
                 ? 0
                 : sl_err_set(err, SL_ESTATE,
                              "cold export of tenant %s for %s: part %lld does not follow the "
                              "recorded parts",
                              d->tenant_id, d->day, (long long)d->parts);
    }
    else {
        rc = sl_store_fail(st, rc, "recording a cold export", err);
    }
    sqlite3_finalize(stmt);
    return rc;
}

/* UPDATE .. SET state = to WHERE state = from, inside or outside a transaction. */
static int move_state(struct sl_store *st, const char *tenant_id, const char *day,
                      const char *from, const char *to, int64_t now_s, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st,
                              "UPDATE cold_exports SET state = ?4, updated_at = ?5 "
                              "WHERE tenant_id = ?1 AND day = ?2 AND state = ?3",
                              &stmt, err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, tenant_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, day, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, from, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, to, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 5, now_s);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE) {
        rc = sqlite3_changes(st->db) == 1
                 ? 0
                 : sl_err_set(err, SL_ESTATE, "cold export of tenant %s for %s is not %s",
                              tenant_id, day, from);
    }
    else {
        rc = sl_store_fail(st, rc, "changing a cold export's state", err);
    }
    sqlite3_finalize(stmt);
    return rc;
}

int sl_store_cold_set_state(struct sl_store *st, const char *tenant_id, const char *day,
                            const char *from, const char *to, int64_t now_s,
                            struct sl_err *err)
{
    struct sl_cold_day d;
    int rc = move_state(st, tenant_id, day, from, to, now_s, err);

    if (rc == SL_ESTATE && sl_store_cold_get(st, tenant_id, day, &d, NULL) == SL_ENOTFOUND) {
        rc = sl_err_set(err, SL_ENOTFOUND, "no cold export of tenant %s for %s", tenant_id,
                        day);
    }
    return rc;
}

int sl_store_cold_deleted(struct sl_store *st, const char *tenant_id, const char *day,
                          const struct sl_cold_deletion *del, int64_t now_s,
                          struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_exec(st, "BEGIN IMMEDIATE", "locking the store to record a delete", err);

    if (rc != 0) {
        return rc;
    }
    rc = move_state(st, tenant_id, day, "verified", "deleted", now_s, err);
    if (rc == 0) {
        rc = sl_store_prepare(st,
                              "INSERT INTO deletion_audit (run_id, job, tenant_id, tbl, method, "
                              "from_s, cutoff_s, rows, detail, created_at, updated_at) VALUES "
                              "(?1, 'compression', ?2, 'events', 'mutation', ?3, ?4, ?5, ?6, "
                              "?7, ?7)",
                              &stmt, err);
    }
    if (rc == 0) {
        if (del->run_id > 0) {
            sqlite3_bind_int64(stmt, 1, del->run_id);
        }
        sqlite3_bind_text(stmt, 2, tenant_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 3, del->from_s);
        sqlite3_bind_int64(stmt, 4, del->cutoff_s);
        sqlite3_bind_int64(stmt, 5, del->rows);
        sqlite3_bind_text(stmt, 6, del->detail != NULL ? del->detail : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 7, now_s);
        rc = sl_store_step_done(st, stmt, "writing the deletion audit", err);
    }
    if (rc == 0) {
        rc = sl_store_exec(st, "COMMIT", "committing a delete's audit", err);
    }
    if (rc != 0) {
        sl_store_rollback(st);
    }
    return rc;
}

int sl_store_cold_list(struct sl_store *st, const char *tenant_id, const char *from_day,
                       const char *to_day, struct sl_cold_day **out, size_t *n_out,
                       struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc;

    *out = NULL;
    *n_out = 0;
    rc = sl_store_prepare(st,
                          "SELECT " COLD_COLUMNS " FROM cold_exports WHERE tenant_id = ?1 "
                          "AND (?2 IS NULL OR day >= ?2) AND (?3 IS NULL OR day <= ?3) "
                          "ORDER BY day",
                          &stmt, err);
    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, tenant_id, -1, SQLITE_STATIC);
    if (from_day != NULL) {
        sqlite3_bind_text(stmt, 2, from_day, -1, SQLITE_STATIC);
    }
    if (to_day != NULL) {
        sqlite3_bind_text(stmt, 3, to_day, -1, SQLITE_STATIC);
    }
    return sl_store_collect(st, stmt, sizeof(**out), read_day, (void **)out, n_out,
                            "listing cold exports", err);
}

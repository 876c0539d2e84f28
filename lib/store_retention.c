/*
 * The deletion audit and retention's side of cold_exports (see store_retention.h). Every
 * value is a bound parameter; several rows are written in one transaction so an audit is
 * never half there.
 */
#include "store_retention.h"

#include <string.h>

#include "alloc.h"
#include "store_int.h"

#define AUDIT_COLUMNS                                                                     \
    "id, coalesce(run_id, 0), job, coalesce(tenant_id, ''), tbl, method, "                \
    "coalesce(from_s, 0), cutoff_s, rows, detail, state, created_at, coalesce(updated_at, 0)"

#define COLD_COLUMNS "tenant_id, day, path, rows, state"

static int commit(struct sl_store *st, struct sl_err *err)
{
    int rc = sl_store_exec(st, "COMMIT", "committing the deletion audit", err);

    if (rc != 0) {
        sl_store_rollback(st);
    }
    return rc;
}

static int insert_audit(struct sl_store *st, struct sl_audit *a, const char *state,
                        int64_t now_s, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st,
                              "INSERT INTO deletion_audit (run_id, job, tenant_id, tbl, method, "
                              "from_s, cutoff_s, rows, detail, state, created_at, updated_at) "
                              "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                              &stmt, err);

    if (rc != 0) {
        return rc;
    }
    if (a->run_id > 0) {
        sqlite3_bind_int64(stmt, 1, a->run_id);
    }
    sqlite3_bind_text(stmt, 2, a->job, -1, SQLITE_STATIC);
    if (a->tenant_id[0] != '\0') {
        sqlite3_bind_text(stmt, 3, a->tenant_id, -1, SQLITE_STATIC);
    }
    sqlite3_bind_text(stmt, 4, a->tbl, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 5, a->method, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 6, a->from_s);
    sqlite3_bind_int64(stmt, 7, a->cutoff_s);
    sqlite3_bind_int64(stmt, 8, a->rows);
    sqlite3_bind_text(stmt, 9, a->detail, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 10, state, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 11, now_s);
    if (strcmp(state, "pending") != 0) {
        sqlite3_bind_int64(stmt, 12, now_s);
    }
    rc = sl_store_step_done(st, stmt, "writing the deletion audit", err);
    if (rc == 0) {
        a->id = sqlite3_last_insert_rowid(st->db);
        snprintf(a->state, sizeof(a->state), "%s", state);
        a->created_s = now_s;
    }
    return rc;
}

int sl_store_retention_audit_add(struct sl_store *st, struct sl_audit *a, size_t n,
                                 const char *state, int64_t now_s, struct sl_err *err)
{
    int rc;

    if (strcmp(state, "pending") != 0 && strcmp(state, "done") != 0) {
        return sl_err_set(err, SL_EINVAL, "an audit row starts pending or done, not '%s'",
                          state);
    }
    if (n == 0) {
        return 0;
    }
    rc = sl_store_exec(st, "BEGIN IMMEDIATE", "locking the store to write the deletion audit",
                       err);
    if (rc != 0) {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        rc = insert_audit(st, &a[i], state, now_s, err);
        if (rc != 0) {
            sl_store_rollback(st);
            return rc;
        }
    }
    return commit(st, err);
}

int sl_store_retention_audit_settle(struct sl_store *st, const int64_t *ids, size_t n,
                                    const char *state, const char *note, int64_t now_s,
                                    struct sl_err *err)
{
    int rc;

    if (strcmp(state, "done") != 0 && strcmp(state, "failed") != 0) {
        return sl_err_set(err, SL_EINVAL, "an audit row settles as done or failed, not '%s'",
                          state);
    }
    if (n == 0) {
        return 0;
    }
    rc = sl_store_exec(st, "BEGIN IMMEDIATE", "locking the store to settle the deletion audit",
                       err);
    if (rc != 0) {
        return rc;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        sqlite3_stmt *stmt = NULL;

        rc = sl_store_prepare(st,
                              "UPDATE deletion_audit SET state = ?2, updated_at = ?3, "
                              "detail = CASE WHEN ?4 IS NULL THEN detail "
                              "WHEN detail = '' THEN ?4 ELSE detail || '; ' || ?4 END "
                              "WHERE id = ?1 AND state = 'pending'",
                              &stmt, err);
        if (rc != 0) {
            break;
        }
        sqlite3_bind_int64(stmt, 1, ids[i]);
        sqlite3_bind_text(stmt, 2, state, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 3, now_s);
        if (note != NULL) {
            sqlite3_bind_text(stmt, 4, note, -1, SQLITE_STATIC);
        }
        rc = sl_store_step_done(st, stmt, "settling the deletion audit", err);
    }
    if (rc != 0) {
        sl_store_rollback(st);
        return rc;
    }
    return commit(st, err);
}

static void read_audit(sqlite3_stmt *stmt, void *dst)
{
    struct sl_audit *a = dst;

    memset(a, 0, sizeof(*a));
    a->id = sqlite3_column_int64(stmt, 0);
    a->run_id = sqlite3_column_int64(stmt, 1);
    sl_store_col_text(stmt, 2, a->job, sizeof(a->job));
    sl_store_col_text(stmt, 3, a->tenant_id, sizeof(a->tenant_id));
    sl_store_col_text(stmt, 4, a->tbl, sizeof(a->tbl));
    sl_store_col_text(stmt, 5, a->method, sizeof(a->method));
    a->from_s = sqlite3_column_int64(stmt, 6);
    a->cutoff_s = sqlite3_column_int64(stmt, 7);
    a->rows = sqlite3_column_int64(stmt, 8);
    sl_store_col_text(stmt, 9, a->detail, sizeof(a->detail));
    sl_store_col_text(stmt, 10, a->state, sizeof(a->state));
    a->created_s = sqlite3_column_int64(stmt, 11);
    a->updated_s = sqlite3_column_int64(stmt, 12);
}

static void read_cold(sqlite3_stmt *stmt, void *dst)
{
    struct sl_cold_export *c = dst;

    memset(c, 0, sizeof(*c));
    sl_store_col_text(stmt, 0, c->tenant_id, sizeof(c->tenant_id));
    sl_store_col_text(stmt, 1, c->day, sizeof(c->day));
    sl_store_col_text(stmt, 2, c->path, sizeof(c->path));
    c->rows = sqlite3_column_int64(stmt, 3);
    sl_store_col_text(stmt, 4, c->state, sizeof(c->state));
}

int sl_store_retention_audit_list(struct sl_store *st, const char *job, const char *state,
                                  const char *tenant, size_t limit, struct sl_audit **out,
                                  size_t *n_out, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st,
                              "SELECT " AUDIT_COLUMNS " FROM deletion_audit "
                              "WHERE (?1 IS NULL OR job = ?1) AND (?2 IS NULL OR state = ?2) "
                              "AND (?3 IS NULL OR coalesce(tenant_id, '') = ?3) "
                              "ORDER BY id DESC LIMIT ?4",
                              &stmt, err);

    *out = NULL;
    *n_out = 0;
    if (rc != 0) {
        return rc;
    }
    if (job != NULL) {
        sqlite3_bind_text(stmt, 1, job, -1, SQLITE_STATIC);
    }
    if (state != NULL) {
        sqlite3_bind_text(stmt, 2, state, -1, SQLITE_STATIC);
    }
    if (tenant != NULL) {
        sqlite3_bind_text(stmt, 3, tenant, -1, SQLITE_STATIC);
    }
    sqlite3_bind_int64(stmt, 4, limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
    return sl_store_collect(st, stmt, sizeof(**out), read_audit, (void **)out, n_out,
                            "reading the deletion audit", err);
}

int sl_store_retention_cold_list(struct sl_store *st, const char *tenant,
                                 const char *before_day, size_t limit,
                                 struct sl_cold_export **out, size_t *n_out,
                                 struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc;

    *out = NULL;
    *n_out = 0;
    if (tenant == NULL && before_day == NULL) {
        return sl_err_set(err, SL_EINVAL, "cold exports of unknown tenants need a day bound");
    }
    rc = sl_store_prepare(st,
                          tenant != NULL
                              ? "SELECT " COLD_COLUMNS " FROM cold_exports WHERE tenant_id = ?1 "
                                "AND (?2 IS NULL OR day < ?2) ORDER BY tenant_id, day LIMIT ?3"
                              : "SELECT " COLD_COLUMNS " FROM cold_exports WHERE tenant_id NOT "
                                "IN (SELECT id FROM tenants) AND day < ?2 "
                                "ORDER BY tenant_id, day LIMIT ?3",
                          &stmt, err);
    if (rc != 0) {
        return rc;
    }
    if (tenant != NULL) {
        sqlite3_bind_text(stmt, 1, tenant, -1, SQLITE_STATIC);
    }
    if (before_day != NULL) {
        sqlite3_bind_text(stmt, 2, before_day, -1, SQLITE_STATIC);
    }
    sqlite3_bind_int64(stmt, 3, limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
    return sl_store_collect(st, stmt, sizeof(**out), read_cold, (void **)out, n_out,
                            "reading cold exports", err);
}

int sl_store_retention_cold_count(struct sl_store *st, const char *tenant,
                                  const char *before_day, int64_t *days_out, int64_t *rows_out,
                                  struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st,
                              "SELECT count(*), coalesce(sum(rows), 0) FROM cold_exports "
                              "WHERE tenant_id = ?1 AND (?2 IS NULL OR day < ?2)",
                              &stmt, err);

    *days_out = 0;
    *rows_out = 0;
    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, tenant, -1, SQLITE_STATIC);
    if (before_day != NULL) {
        sqlite3_bind_text(stmt, 2, before_day, -1, SQLITE_STATIC);
    }
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        *days_out = sqlite3_column_int64(stmt, 0);
        *rows_out = sqlite3_column_int64(stmt, 1);
        rc = 0;
    }
    else {
        rc = sl_store_fail(st, rc, "counting cold exports", err);
    }
    sqlite3_finalize(stmt);
    return rc;
}

int sl_store_retention_cold_forget(struct sl_store *st, const char *day,
                                   struct sl_audit *audit, int64_t now_s, bool *is_removed,
                                   struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    bool removed = false;
    int rc;

    if (is_removed != NULL) {
        *is_removed = false;
    }
    rc = sl_store_exec(st, "BEGIN IMMEDIATE", "locking the store to forget a cold export", err);
    if (rc != 0) {
        return rc;
    }
    rc = sl_store_prepare(st, "DELETE FROM cold_exports WHERE tenant_id = ?1 AND day = ?2",
                          &stmt, err);
    if (rc == 0) {
        sqlite3_bind_text(stmt, 1, audit->tenant_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 2, day, -1, SQLITE_STATIC);
        rc = sl_store_step_done(st, stmt, "forgetting a cold export", err);
        removed = rc == 0 && sqlite3_changes(st->db) == 1;
    }
    if (rc == 0 && removed) {
        rc = insert_audit(st, audit, "done", now_s, err);
    }
    if (rc != 0) {
        sl_store_rollback(st);
        return rc;
    }
    rc = commit(st, err);
    if (rc == 0 && is_removed != NULL) {
        *is_removed = removed;
    }
    return rc;
}

/*
 * Tests lib/store_retention.c on a fresh tenant store: audit rows written pending and
 * settled once (a settled row stays as it is), listed by job, state and tenant; cold
 * exports listed and counted per tenant before a day, and listed for tenants the store does
 * not know; a cold export forgotten together with its audit row, and nothing written for
 * one already gone.
 * (It lives with the retention tests because retention is its only user.)
 */
#include <sqlite3.h>

#include "alloc.h"
#include "store.h"
#include "store_retention.h"
#include "test.h"

struct fixture {
    char *dir;
    char *path;
    struct sl_store *st;
    char tenant[SL_STORE_ID_MAX];
};

static void fixture_open(struct fixture *f)
{
    struct sl_tenant t;
    struct sl_err err;

    memset(f, 0, sizeof(*f));
    f->dir = test_tmpdir();
    f->path = test_path(f->dir, "sluice.db");
    ASSERT_OK(sl_store_open(&f->st, f->path, 5000, &err), &err);
    ASSERT_OK(sl_store_tenant_create(f->st, "acme", "free", 100, &t, &err), &err);
    snprintf(f->tenant, sizeof(f->tenant), "%s", t.id);
}

static void fixture_close(struct fixture *f)
{
    sl_store_close(f->st);
    test_rmtree(f->dir);
    sl_free(f->path);
    sl_free(f->dir);
}

static void exec_sql(struct fixture *f, const char *sql)
{
    sqlite3 *db = NULL;
    char *msg = NULL;

    ASSERT_EQ_INT(sqlite3_open(f->path, &db), SQLITE_OK);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        TEST_FAIL("%s: %s", sql, msg);
    }
    sqlite3_close(db);
}

static struct sl_audit audit(const char *tenant, const char *tbl, int64_t rows)
{
    struct sl_audit a = {.run_id = 3, .from_s = 10, .cutoff_s = 20, .rows = rows};

    snprintf(a.job, sizeof(a.job), "retention");
    snprintf(a.tenant_id, sizeof(a.tenant_id), "%s", tenant);
    snprintf(a.tbl, sizeof(a.tbl), "%s", tbl);
    snprintf(a.method, sizeof(a.method), "mutation");
    return a;
}

static void test_store_retention_audit_pending_then_settled(void)
{
    struct fixture f;
    struct sl_audit a[2];
    struct sl_audit *rows = NULL;
    struct sl_err err;
    size_t n = 0;
    int64_t ids[2];

    fixture_open(&f);
    a[0] = audit(f.tenant, "events", 5);
    a[1] = audit("", "sessions", 7);
    ASSERT_OK(sl_store_retention_audit_add(f.st, a, 2, "pending", 1000, &err), &err);
    ASSERT_TRUE(a[0].id > 0 && a[1].id == a[0].id + 1);
    ids[0] = a[0].id;
    ids[1] = a[1].id;

    ASSERT_OK(sl_store_retention_audit_list(f.st, "retention", "pending", NULL, 10, &rows, &n,
                                            &err), &err);
    ASSERT_EQ_INT(n, 2);
    ASSERT_EQ_INT(rows[0].id, ids[1]); /* newest first */
    ASSERT_EQ_STR(rows[0].tenant_id, "");
    ASSERT_EQ_INT(rows[1].rows, 5);
    ASSERT_EQ_INT(rows[1].from_s, 10);
    ASSERT_EQ_INT(rows[1].cutoff_s, 20);
    ASSERT_EQ_INT(rows[1].run_id, 3);
    ASSERT_EQ_INT(rows[1].updated_s, 0);
    sl_free(rows);

    ASSERT_OK(sl_store_retention_audit_settle(f.st, ids, 1, "done", "mutation m_1", 1010, &err),
              &err);
    /* Settled once: a later settle does not change it. */
    ASSERT_OK(sl_store_retention_audit_settle(f.st, ids, 2, "failed", "late", 1020, &err), &err);
    ASSERT_OK(sl_store_retention_audit_list(f.st, NULL, NULL, f.tenant, 10, &rows, &n, &err),
              &err);
    ASSERT_EQ_INT(n, 1);
    ASSERT_EQ_STR(rows[0].state, "done");
    ASSERT_EQ_STR(rows[0].detail, "mutation m_1");
    ASSERT_EQ_INT(rows[0].updated_s, 1010);
    sl_free(rows);
    ASSERT_OK(sl_store_retention_audit_list(f.st, NULL, "failed", "", 10, &rows, &n, &err),
              &err);
    ASSERT_EQ_INT(n, 1);
    ASSERT_EQ_STR(rows[0].detail, "late");
    sl_free(rows);

    /* Bad states are refused and write nothing. */
    ASSERT_EQ_INT(sl_store_retention_audit_add(f.st, a, 1, "failed", 1, &err), SL_EINVAL);
    ASSERT_EQ_INT(sl_store_retention_audit_settle(f.st, ids, 1, "pending", NULL, 1, &err),
                  SL_EINVAL);
    ASSERT_OK(sl_store_retention_audit_list(f.st, NULL, NULL, NULL, 10, &rows, &n, &err), &err);
    ASSERT_EQ_INT(n, 2);
    sl_free(rows);
    fixture_close(&f);
}

static void test_store_retention_cold_list_and_forget(void)
{
    struct fixture f;
    struct sl_cold_export *rows = NULL;
    struct sl_audit a;
    struct sl_audit *audits = NULL;
    struct sl_err err;
    char sql[1024];
    size_t n = 0;
    bool is_removed = true;

    fixture_open(&f);
    snprintf(sql, sizeof(sql),
             "INSERT INTO cold_exports (tenant_id, day, path, rows, sha256, state, created_at, "
             "updated_at) VALUES "
             "('%s', '2026-01-01', '/c/%s/2026-01-01', 5, 'x', 'verified', 1, 1), "
             "('%s', '2026-01-02', '/c/%s/2026-01-02', 6, 'x', 'deleted', 1, 1), "
             "('%s', '2026-01-03', '/c/%s/2026-01-03', 7, 'x', 'deleted', 1, 1), "
             "('tn_gone', '2026-01-01', '/c/tn_gone/2026-01-01', 8, 'x', 'deleted', 1, 1)",
             f.tenant, f.tenant, f.tenant, f.tenant, f.tenant, f.tenant);
    exec_sql(&f, sql);

    ASSERT_OK(sl_store_retention_cold_list(f.st, f.tenant, "2026-01-03", 10, &rows, &n, &err),
              &err);
    ASSERT_EQ_INT(n, 2);
    ASSERT_EQ_STR(rows[0].day, "2026-01-01");
    ASSERT_EQ_STR(rows[1].state, "deleted");
    ASSERT_EQ_INT(rows[1].rows, 6);
    sl_free(rows);
    ASSERT_OK(sl_store_retention_cold_list(f.st, f.tenant, NULL, 2, &rows, &n, &err), &err);
    ASSERT_EQ_INT(n, 2); /* the limit */
    sl_free(rows);
    ASSERT_OK(sl_store_retention_cold_list(f.st, NULL, "2026-02-01", 10, &rows, &n, &err),
              &err);
    ASSERT_EQ_INT(n, 1);
    ASSERT_EQ_STR(rows[0].tenant_id, "tn_gone");
    sl_free(rows);
    ASSERT_EQ_INT(sl_store_retention_cold_list(f.st, NULL, NULL, 10, &rows, &n, &err),
                  SL_EINVAL);
    {
        int64_t days = -1, cold_rows = -1;

        ASSERT_OK(sl_store_retention_cold_count(f.st, f.tenant, "2026-01-03", &days, &cold_rows,
                                                &err), &err);
        ASSERT_EQ_INT(days, 2);
        ASSERT_EQ_INT(cold_rows, 11);
        ASSERT_OK(sl_store_retention_cold_count(f.st, f.tenant, NULL, &days, &cold_rows, &err),
                  &err);
        ASSERT_EQ_INT(days, 3);
        ASSERT_EQ_INT(cold_rows, 18);
        ASSERT_OK(sl_store_retention_cold_count(f.st, "tn_none", NULL, &days, &cold_rows, &err),
                  &err);
        ASSERT_EQ_INT(days, 0);
        ASSERT_EQ_INT(cold_rows, 0);
    }

    a = audit(f.tenant, "cold", 5);
    snprintf(a.method, sizeof(a.method), "cold");
    ASSERT_OK(sl_store_retention_cold_forget(f.st, "2026-01-01", &a, 2000, &is_removed, &err),
              &err);
    ASSERT_TRUE(is_removed);
    ASSERT_TRUE(a.id > 0);
    /* Again: the row is gone, nothing more is audited. */
    ASSERT_OK(sl_store_retention_cold_forget(f.st, "2026-01-01", &a, 2001, &is_removed, &err),
              &err);
    ASSERT_TRUE(!is_removed);
    ASSERT_OK(sl_store_retention_audit_list(f.st, "retention", "done", f.tenant, 10, &audits, &n,
                                            &err), &err);
    ASSERT_EQ_INT(n, 1);
    ASSERT_EQ_STR(audits[0].tbl, "cold");
    ASSERT_EQ_INT(audits[0].rows, 5);
    sl_free(audits);
    ASSERT_OK(sl_store_retention_cold_list(f.st, f.tenant, NULL, 10, &rows, &n, &err), &err);
    ASSERT_EQ_INT(n, 2);
    sl_free(rows);
    fixture_close(&f);
}

static const struct test_case cases[] = {
    TEST_CASE(test_store_retention_audit_pending_then_settled),
    TEST_CASE(test_store_retention_cold_list_and_forget),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return test_main(argc, argv, cases);
}

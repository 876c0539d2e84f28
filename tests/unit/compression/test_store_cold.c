/*
 * Tests lib/store_cold.c: a day's row through exported -> verified -> deleted with exactly
 * one audit row per delete (a repeated delete changes nothing), totals over several parts,
 * a part written again replacing its own share, parts out of order refused, listing.
 */
#include <sqlite3.h>

#include "alloc.h"
#include "store.h"
#include "store_cold.h"
#include "test.h"

#define T "tn_00000000000000aa"

static struct sl_store *open_store(char **dir, char **path)
{
    struct sl_store *st = NULL;
    struct sl_err err;

    *dir = test_tmpdir();
    *path = test_path(*dir, "sluice.db");
    ASSERT_OK(sl_store_open(&st, *path, 5000, &err), &err);
    return st;
}

static int64_t sql_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    int64_t v = -1;

    ASSERT_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    ASSERT_EQ_INT(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        v = sqlite3_column_int64(stmt, 0);
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return v;
}

static struct sl_cold_day part(const char *day, int64_t n, int64_t rows, int64_t min_ts,
                               int64_t max_ts)
{
    struct sl_cold_day d;

    memset(&d, 0, sizeof(d));
    snprintf(d.tenant_id, sizeof(d.tenant_id), "%s", T);
    snprintf(d.day, sizeof(d.day), "%s", day);
    snprintf(d.path, sizeof(d.path), "/cold/%s/%s", T, day);
    snprintf(d.sha256, sizeof(d.sha256), "%064lld", (long long)n);
    d.parts = n;
    d.part_rows = rows;
    d.min_ts = min_ts;
    d.max_ts = max_ts;
    d.max_version = 1000 + n;
    return d;
}

static void test_store_cold_states_and_audit(void)
{
    char *dir, *path;
    struct sl_store *st = open_store(&dir, &path);
    struct sl_cold_day d = part("2026-11-20", 1, 10, 100, 200);
    struct sl_cold_day got;
    struct sl_cold_deletion del = {.run_id = 7, .from_s = 1795651200, .cutoff_s = 1795737600,
                                   .rows = 10, .detail = "day 2026-11-20 part 1"};
    struct sl_err err;

    ASSERT_EQ_INT(sl_store_cold_get(st, T, "2026-11-20", &got, &err), SL_ENOTFOUND);
    ASSERT_OK(sl_store_cold_exported(st, &d, 50, &err), &err);
    ASSERT_OK(sl_store_cold_get(st, T, "2026-11-20", &got, &err), &err);
    ASSERT_EQ_STR(got.state, "exported");
    ASSERT_EQ_INT(got.rows, 10);
    ASSERT_EQ_STR(got.path, "/cold/" T "/2026-11-20");
    /* Deleting before verification is refused. */
    ASSERT_EQ_INT(sl_store_cold_deleted(st, T, "2026-11-20", &del, 60, &err), SL_ESTATE);
    ASSERT_EQ_INT(sql_int(path, "SELECT count(*) FROM deletion_audit"), 0);
    ASSERT_OK(sl_store_cold_set_state(st, T, "2026-11-20", "exported", "verified", 55, &err),
              &err);
    ASSERT_OK(sl_store_cold_deleted(st, T, "2026-11-20", &del, 60, &err), &err);
    /* A resumed run repeating the step writes nothing twice. */
    ASSERT_EQ_INT(sl_store_cold_deleted(st, T, "2026-11-20", &del, 61, &err), SL_ESTATE);
    ASSERT_EQ_INT(sql_int(path, "SELECT count(*) FROM deletion_audit"), 1);
    ASSERT_EQ_INT(sql_int(path, "SELECT rows FROM deletion_audit WHERE job = 'compression' "
                                "AND tbl = 'events' AND method = 'mutation' AND run_id = 7 "
                                "AND tenant_id = '" T "' AND cutoff_s = 1795737600"),
                  10);
    ASSERT_OK(sl_store_cold_get(st, T, "2026-11-20", &got, &err), &err);
    ASSERT_EQ_STR(got.state, "deleted");
    ASSERT_EQ_INT(sl_store_cold_set_state(st, T, "2026-11-21", "deleted", "restored", 70, &err),
                  SL_ENOTFOUND);
    sl_store_close(st);
    test_rmtree(dir);
    free(dir);
    free(path);
}

static void test_store_cold_parts_add_up(void)
{
    char *dir, *path;
    struct sl_store *st = open_store(&dir, &path);
    struct sl_cold_day d1 = part("2026-11-20", 1, 10, 100, 200);
    struct sl_cold_day d2 = part("2026-11-20", 2, 3, 50, 150);
    struct sl_cold_day d2b = part("2026-11-20", 2, 4, 60, 250);
    struct sl_cold_day d4 = part("2026-11-20", 4, 1, 60, 250);
    struct sl_cold_day other = part("2026-11-22", 1, 5, 300, 400);
    struct sl_cold_day got;
    struct sl_cold_day *list = NULL;
    size_t n = 0;
    struct sl_err err;

    ASSERT_OK(sl_store_cold_exported(st, &d1, 50, &err), &err);
    /* Part 2 cannot start while part 1 is not finished. */
    ASSERT_EQ_INT(sl_store_cold_exported(st, &d2, 51, &err), SL_ESTATE);
    ASSERT_OK(sl_store_cold_set_state(st, T, d1.day, "exported", "verified", 52, &err), &err);
    ASSERT_OK(sl_store_cold_set_state(st, T, d1.day, "verified", "deleted", 53, &err), &err);
    ASSERT_OK(sl_store_cold_exported(st, &d2, 54, &err), &err);
    ASSERT_OK(sl_store_cold_get(st, T, d1.day, &got, &err), &err);
    ASSERT_EQ_INT(got.parts, 2);
    ASSERT_EQ_INT(got.rows, 13);
    ASSERT_EQ_INT(got.min_ts, 50);
    ASSERT_EQ_INT(got.max_ts, 200);
    /* The same part again (an interrupted run writing it anew) replaces its share. */
    ASSERT_OK(sl_store_cold_exported(st, &d2b, 55, &err), &err);
    ASSERT_OK(sl_store_cold_get(st, T, d1.day, &got, &err), &err);
    ASSERT_EQ_INT(got.rows, 14);
    ASSERT_EQ_INT(got.part_rows, 4);
    ASSERT_EQ_INT(got.max_ts, 250);
    ASSERT_EQ_INT(got.max_version, 1002);
    ASSERT_EQ_INT(sl_store_cold_exported(st, &d4, 56, &err), SL_ESTATE);
    ASSERT_OK(sl_store_cold_exported(st, &other, 57, &err), &err);
    ASSERT_OK(sl_store_cold_list(st, T, NULL, NULL, &list, &n, &err), &err);
    ASSERT_EQ_INT(n, 2);
    ASSERT_EQ_STR(list[0].day, "2026-11-20");
    ASSERT_EQ_STR(list[1].day, "2026-11-22");
    sl_free(list);
    ASSERT_OK(sl_store_cold_list(st, T, "2026-11-21", "2026-11-30", &list, &n, &err), &err);
    ASSERT_EQ_INT(n, 1);
    ASSERT_EQ_STR(list[0].day, "2026-11-22");
    sl_free(list);
    sl_store_close(st);
    test_rmtree(dir);
    free(dir);
    free(path);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_store_cold_states_and_audit),
        TEST_CASE(test_store_cold_parts_add_up),
        {NULL, NULL},
    };

    return test_main(argc, argv, cases);
}

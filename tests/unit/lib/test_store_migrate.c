/* Tests lib/store.c's migrations: a new file, every earlier version upgraded in place with
 * its data (1 to 4: tenants, alerts, key rotation, the scheduler's tables), newer and
 * foreign files refused, a failed upgrade leaves the file as it was. */
#include <sqlite3.h>
#include <stdio.h>

#include "store.h"
#include "test.h"

static const char *const tables[] = {"tiers",          "tenants",     "api_keys",
                                     "alert_channels", "alert_rules", "sched_leases",
                                     "sched_jobs",     "sched_runs"};

static int query_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    int v;

    ASSERT_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        TEST_FAIL("%s: %s", sql, sqlite3_errmsg(db));
    }
    ASSERT_EQ_INT(sqlite3_step(stmt), SQLITE_ROW);
    v = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return v;
}

static void exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    char *msg = NULL;

    ASSERT_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        TEST_FAIL("%s: %s", sql, msg);
    }
    sqlite3_close(db);
}

/* Appends "table(col type notnull default pk; ...)" for every table to out. */
static void describe_schema(const char *path, char *out, size_t cap)
{
    sqlite3 *db = NULL;
    size_t len = 0;

    out[0] = '\0';
    ASSERT_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
        sqlite3_stmt *stmt = NULL;
        char sql[128];

        snprintf(sql, sizeof(sql), "PRAGMA table_info(%s)", tables[t]);
        ASSERT_EQ_INT(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
        len += (size_t)snprintf(out + len, cap - len, "%s(", tables[t]);
        while (sqlite3_step(stmt) == SQLITE_ROW) {
            len += (size_t)snprintf(out + len, cap - len, "%s %s %d %s %d;",
                                    sqlite3_column_text(stmt, 1), sqlite3_column_text(stmt, 2),
                                    sqlite3_column_int(stmt, 3),
                                    sqlite3_column_text(stmt, 4) != NULL
                                        ? (const char *)sqlite3_column_text(stmt, 4)
                                        : "-",
                                    sqlite3_column_int(stmt, 5));
            ASSERT_TRUE(len < cap);
        }
        len += (size_t)snprintf(out + len, cap - len, ")");
        sqlite3_finalize(stmt);
        /* Indexes and UNIQUE constraints too: "no slot runs twice" rests on one. */
        snprintf(sql, sizeof(sql), "PRAGMA index_list(%s)", tables[t]);
        ASSERT_EQ_INT(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
        while (sqlite3_step(stmt) == SQLITE_ROW) {
            len += (size_t)snprintf(out + len, cap - len, " index %s unique %d",
                                    sqlite3_column_text(stmt, 1), sqlite3_column_int(stmt, 2));
            ASSERT_TRUE(len < cap);
        }
        sqlite3_finalize(stmt);
        len += (size_t)snprintf(out + len, cap - len, "\n");
    }
    sqlite3_close(db);
}

static void test_migrate_new_file(void)
{
    char *dir = test_tmpdir();
    char *path = test_path(dir, "new.db");
    struct sl_store *st = NULL;
    struct sl_tier *tiers = NULL;
    size_t n = 0;
    struct sl_err err;

    ASSERT_OK(sl_store_open(&st, path, 1000, &err), &err);
    ASSERT_EQ_INT(sl_store_schema_version(st), SL_STORE_SCHEMA_VERSION);
    ASSERT_OK(sl_store_ping(st, &err), &err);
    ASSERT_OK(sl_store_tier_list(st, &tiers, &n, &err), &err);
    ASSERT_EQ_INT(n, 3);
    ASSERT_EQ_STR(tiers[0].name, "enterprise");
    ASSERT_EQ_STR(tiers[1].name, "free");
    ASSERT_EQ_INT(tiers[1].compress_after_hours, 24);
    ASSERT_EQ_STR(tiers[2].name, "paid");
    free(tiers);
    sl_store_close(st);
    ASSERT_EQ_INT(query_int(path, "PRAGMA user_version"), SL_STORE_SCHEMA_VERSION);
    ASSERT_EQ_INT(query_int(path, "PRAGMA application_id"), 0x534C4345);
    {
        sqlite3 *db = NULL;
        sqlite3_stmt *stmt = NULL;

        ASSERT_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
        ASSERT_EQ_INT(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, NULL), SQLITE_OK);
        ASSERT_EQ_INT(sqlite3_step(stmt), SQLITE_ROW);
        ASSERT_EQ_STR((const char *)sqlite3_column_text(stmt, 0), "wal");
        sqlite3_finalize(stmt);
        sqlite3_close(db);
    }
    /* Opening again changes nothing. */
    ASSERT_OK(sl_store_open(&st, path, 1000, &err), &err);
    sl_store_close(st);
    ASSERT_EQ_INT(query_int(path, "SELECT count(*) FROM tiers"), 3);
    /* Every table of versions 5 to 7 is there, and the columns of 8. */
    ASSERT_EQ_INT(query_int(path, "SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                                  "AND name IN ('deletion_audit', 'cold_exports', "
                                  "'alert_state', 'alerts', 'deliveries', 'backfill_jobs', "
                                  "'backfill_chunks')"), 7);
    ASSERT_EQ_INT(query_int(path, "SELECT count(*) FROM pragma_table_info('tenants') "
                                  "WHERE name = 'drop_bots'"), 1);
    ASSERT_EQ_INT(query_int(path, "SELECT reenrich_days FROM tiers WHERE name = 'free'"), 7);
    test_rmtree(dir);
    free(path);
    free(dir);
}

/* Data only an older schema can hold, written with plain SQL at that version. */
static void seed_version(const char *path, int version)
{
    if (version >= 1) {
        exec(path, "INSERT INTO tenants (id, name, tier, created_at, updated_at) "
                   "VALUES ('tn_old', 'legacy', 'paid', 1, 1);"
                   "INSERT INTO api_keys (id, tenant_id, name, hash, scopes, created_at) "
                   "VALUES ('sl_oldoldoldold', 'tn_old', 'k', zeroblob(32), 'ingest', 1);"
                   "UPDATE tiers SET retention_days = 45 WHERE name = 'free';");
    }
    if (version >= 2) {
        exec(path, "INSERT INTO alert_channels (id, tenant_id, name, kind, target, created_at) "
                   "VALUES ('ch_old', 'tn_old', 'ops', 'log', '', 1);"
                   "INSERT INTO alert_rules (id, tenant_id, name, kind, threshold, window_s, "
                   "cooldown_s, channel_id, created_at) VALUES ('ru_old', 'tn_old', 'r', "
                   "'quota', 80, 60, 60, 'ch_old', 1);");
    }
}

static void test_migrate_from_each_version(void)
{
    char *dir = test_tmpdir();
    char *fresh = test_path(dir, "fresh.db");
    char expected[16384], actual[16384];
    struct sl_store *st = NULL;
    struct sl_err err;

    ASSERT_OK(sl_store_open(&st, fresh, 1000, &err), &err);
    sl_store_close(st);
    describe_schema(fresh, expected, sizeof(expected));

    for (int v = 1; v < SL_STORE_SCHEMA_VERSION; v++) {
        char name[32];
        char *path;
        struct sl_tenant t;
        struct sl_tier tier;
        struct sl_key k;

        snprintf(name, sizeof(name), "v%d.db", v);
        path = test_path(dir, name);
        ASSERT_OK(sl_store_open_version(&st, path, 1000, v, &err), &err);
        ASSERT_EQ_INT(sl_store_schema_version(st), v);
        sl_store_close(st);
        ASSERT_EQ_INT(query_int(path, "PRAGMA user_version"), v);
        seed_version(path, v);

        ASSERT_OK(sl_store_open(&st, path, 1000, &err), &err);
        ASSERT_EQ_INT(sl_store_schema_version(st), SL_STORE_SCHEMA_VERSION);
        ASSERT_OK(sl_store_tenant_get(st, "legacy", &t, &err), &err);
        ASSERT_EQ_STR(t.id, "tn_old");
        ASSERT_EQ_STR(t.tier, "paid");
        ASSERT_EQ_STR(t.previous_tier, "");
        ASSERT_OK(sl_store_tier_get(st, "free", &tier, &err), &err);
        ASSERT_EQ_INT(tier.retention_days, 45);
        ASSERT_OK(sl_store_key_get(st, "sl_oldoldoldold", &k, &err), &err);
        ASSERT_EQ_STR(k.rotated_to, "");
        if (v >= 2) {
            struct sl_channel ch;

            ASSERT_OK(sl_store_channel_get(st, "ch_old", &ch, &err), &err);
            ASSERT_EQ_STR(ch.kind, "log");
        }
        /* Features of the newest version work on the upgraded file. */
        ASSERT_OK(sl_store_tenant_set_tier(st, "legacy", "free", 5, &err), &err);
        ASSERT_OK(sl_store_tenant_get(st, "legacy", &t, &err), &err);
        ASSERT_EQ_STR(t.previous_tier, "paid");
        {
            struct sl_job job;
            bool is_leader = false;
            int64_t run_id = 0;

            memset(&job, 0, sizeof(job));
            snprintf(job.name, sizeof(job.name), "store_maintenance");
            ASSERT_OK(sl_store_job_register(st, &job, 10, &err), &err);
            ASSERT_OK(sl_store_lease_acquire(st, "scheduler", "s1", 15, 10, &is_leader, &err),
                      &err);
            ASSERT_TRUE(is_leader);
            ASSERT_OK(sl_store_run_begin(st, "scheduler", "s1", "store_maintenance", 60,
                                         "schedule", 10, &run_id, &err), &err);
            ASSERT_EQ_INT(sl_store_run_begin(st, "scheduler", "s1", "store_maintenance", 60,
                                             "schedule", 11, &run_id, &err), SL_EEXIST);
        }
        sl_store_close(st);
        describe_schema(path, actual, sizeof(actual));
        ASSERT_EQ_STR(actual, expected);
        free(path);
    }
    test_rmtree(dir);
    free(fresh);
    free(dir);
}

static void test_migrate_refuses_newer_file(void)
{
    char *dir = test_tmpdir();
    char *path = test_path(dir, "newer.db");
    struct sl_store *st = NULL;
    struct sl_err err;
    char sql[64];

    ASSERT_OK(sl_store_open(&st, path, 1000, &err), &err);
    sl_store_close(st);
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", SL_STORE_SCHEMA_VERSION + 1);
    exec(path, sql);
    ASSERT_EQ_INT(sl_store_open(&st, path, 1000, &err), SL_ESCHEMA);
    ASSERT_TRUE(st == NULL);
    ASSERT_CONTAINS(err.msg, "newer than this sluice");
    ASSERT_CONTAINS(err.msg, "upgrade sluice");
    /* Nothing was changed by the refusal. */
    ASSERT_EQ_INT(query_int(path, "PRAGMA user_version"), SL_STORE_SCHEMA_VERSION + 1);
    test_rmtree(dir);
    free(path);
    free(dir);
}

static void test_migrate_refuses_foreign_file(void)
{
    char *dir = test_tmpdir();
    char *path = test_path(dir, "other.db");
    char *junk = test_path(dir, "junk.db");
    struct sl_store *st = NULL;
    struct sl_err err;
    FILE *f;

    exec(path, "CREATE TABLE photos (id INTEGER); INSERT INTO photos VALUES (1);");
    ASSERT_EQ_INT(sl_store_open(&st, path, 1000, &err), SL_ESCHEMA);
    ASSERT_CONTAINS(err.msg, "not a sluice tenant store");
    ASSERT_EQ_INT(query_int(path, "SELECT count(*) FROM sqlite_master"), 1);

    f = fopen(junk, "w");
    ASSERT_TRUE(f != NULL);
    fputs("this is not a database, just text that is long enough to look like a header\n", f);
    fclose(f);
    ASSERT_NE_INT(sl_store_open(&st, junk, 1000, &err), 0);
    ASSERT_TRUE(st == NULL);
    ASSERT_CONTAINS(err.msg, junk);
    test_rmtree(dir);
    free(path);
    free(junk);
    free(dir);
}

/* The upgrade to version 4 (the scheduler's tables) fails half way and changes nothing. */
static void test_migrate_failure_to_4_rolls_back(void)
{
    char *dir = test_tmpdir();
    char *path = test_path(dir, "v3.db");
    struct sl_store *st = NULL;
    struct sl_err err;

    ASSERT_OK(sl_store_open_version(&st, path, 1000, 3, &err), &err);
    sl_store_close(st);
    seed_version(path, 3);
    exec(path, "CREATE TABLE sched_runs (x INTEGER)");
    ASSERT_NE_INT(sl_store_open(&st, path, 1000, &err), 0);
    ASSERT_CONTAINS(err.msg, "version 4");
    ASSERT_EQ_INT(query_int(path, "PRAGMA user_version"), 3);
    ASSERT_EQ_INT(query_int(path, "SELECT count(*) FROM sqlite_master WHERE name IN "
                                  "('sched_leases', 'sched_jobs')"), 0);
    ASSERT_EQ_INT(query_int(path, "SELECT count(*) FROM tenants"), 1);
    test_rmtree(dir);
    free(path);
    free(dir);
}

static void test_migrate_failure_rolls_back(void)
{
    char *dir = test_tmpdir();
    char *path = test_path(dir, "v1.db");
    struct sl_store *st = NULL;
    struct sl_err err;

    ASSERT_OK(sl_store_open_version(&st, path, 1000, 1, &err), &err);
    sl_store_close(st);
    /* An object in the way of migration 2 makes it fail half way. */
    exec(path, "CREATE TABLE alert_rules (x INTEGER)");
    ASSERT_NE_INT(sl_store_open(&st, path, 1000, &err), 0);
    ASSERT_CONTAINS(err.msg, "version 2");
    ASSERT_EQ_INT(query_int(path, "PRAGMA user_version"), 1);
    ASSERT_EQ_INT(query_int(path, "SELECT count(*) FROM sqlite_master WHERE name = "
                                  "'alert_channels'"), 0);
    test_rmtree(dir);
    free(path);
    free(dir);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_migrate_new_file),
        TEST_CASE(test_migrate_from_each_version),
        TEST_CASE(test_migrate_refuses_newer_file),
        TEST_CASE(test_migrate_refuses_foreign_file),
        TEST_CASE(test_migrate_failure_rolls_back),
        TEST_CASE(test_migrate_failure_to_4_rolls_back),
        {NULL, NULL},
    };
    return test_main(argc, argv, cases);
}

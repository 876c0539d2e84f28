/*
 * Tests the retention job (workers/retention/) against the real ClickHouse server
 * (SLUICE_TEST_CLICKHOUSE_URL) and a tenant store of its own. Events of tenants on every
 * tier, with an override, an upgrade, a downgrade inside and one past its grace, a disabled
 * tenant under the purge policy and a tenant the store does not know, are written on days
 * up to 800 days back; the loader's views fill sessions and the rollups from them. Then:
 * a dry run (the job's setting, and `sluice retention plan`) deletes nothing and writes no
 * audit; a run leaves exactly the kept days in every table, removes the cold exports past
 * retention, audits every tenant and table and counts metrics; a second run deletes nothing
 * and issues no mutation. Audit rows a killed run left pending are settled by the next. A
 * mutation that can never finish fails the run after its timeout instead of hanging it. And
 * the job runs through a real sluice-scheduler (`sluice jobs run retention`), with its audit
 * read back by `sluice retention audit`. Each case works in a database of its own
 * (sluice_test_retention_<case>_<pid>) and drops it.
 */
#include <inttypes.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "ch.h"
#include "chquery.h"
#include "daemon.h"
#include "metrics.h"
#include "retention.h"
#include "schema.h"
#include "store.h"
#include "test.h"

/* 2026-11-24T12:00:00Z; "today" is 2026-11-24. */
#define NOW_S INT64_C(1795521600)
#define TODAY_S INT64_C(1795478400)
#define DAY_S INT64_C(86400)

static const int offsets[] = {0, 1, 29, 30, 31, 89, 90, 91, 364, 365, 366, 729, 730, 731, 800};
#define N_OFFSETS (sizeof(offsets) / sizeof(offsets[0]))

static const char *const tables[] = {"events", "sessions", "events_hourly", "events_daily"};
static const char *const time_cols[] = {"ts", "day", "hour", "day"};

enum { T_FREE, T_PAID, T_OVERRIDE, T_GRACE, T_PAST_GRACE, T_UPGRADED, T_PURGED, T_GHOST, N_T };

struct fixture {
    struct sl_ch_settings ch_settings; /* names the test database */
    struct sl_cfg_section ch_sec;
    struct sl_ch *ch;                  /* names no database */
    char db[96];
    char url_env[1024];
    char db_env[160];
    char *dir;
    char *db_path;
    char *cold_root;
    struct sl_store *st;
    char ids[N_T][SL_STORE_ID_MAX];
    int64_t kept_days[N_T]; /* offsets <= this are kept; -1 none */
};

static void exec_ok(struct sl_ch *ch, const char *sql)
{
    struct sl_err err;

    if (sl_ch_exec(ch, sql, &err) != 0) {
        TEST_FAIL("%s: %s", sql, err.msg);
    }
}

/* Runs sql (with every "{db}" replaced) and returns its body (sl_free). */
static char *query_db(struct fixture *f, const char *sql)
{
    return test_ch_query_db(f->ch, f->db, sql);
}

static int64_t query_int(struct fixture *f, const char *sql)
{
    char *body = query_db(f, sql);
    int64_t v = strtoll(body, NULL, 10);

    sl_free(body);
    return v;
}

static void make_tenant(struct fixture *f, int which, const char *name, const char *tier)
{
    struct sl_tenant t;
    struct sl_err err;

    ASSERT_OK(sl_store_tenant_create(f->st, name, tier, NOW_S - 1000 * DAY_S, &t, &err), &err);
    snprintf(f->ids[which], sizeof(f->ids[which]), "%s", t.id);
}

static void sql_store(struct fixture *f, const char *sql)
{
    sqlite3 *db = NULL;
    char *msg = NULL;

    ASSERT_EQ_INT(sqlite3_open(f->db_path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        TEST_FAIL("%s: %s", sql, msg);
    }
    sqlite3_close(db);
}

static int64_t store_int(struct fixture *f, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    int64_t v = -1;

    ASSERT_EQ_INT(sqlite3_open(f->db_path, &db), SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        TEST_FAIL("%s: %s", sql, sqlite3_errmsg(db));
    }
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        v = sqlite3_column_int64(stmt, 0);
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return v;
}

/* Inserts, in one insert (one part per day and table), one event per offset (at noon of the
 * day that many days before today_s) for each of the n tenants ids, each in its own
 * session. */
static void insert_events_many(struct fixture *f, const char (*ids)[SL_STORE_ID_MAX], size_t n,
                               int64_t today_s)
{
    struct sl_ch_buf body, sql;
    struct sl_err err;
    static unsigned serial;

    sl_ch_buf_init(&body, 1 << 20);
    sl_ch_buf_init(&sql, 4096);
    for (size_t t = 0; t < n; t++) {
        for (size_t i = 0; i < N_OFFSETS; i++) {
            int64_t ts = today_s - offsets[i] * DAY_S + 12 * 3600;

            serial++;
            ASSERT_OK(sl_ch_buf_appendf(&body, "00000000-0000-4000-8000-%012x\t%s\tpageview\t%"
                                        PRId64 "\ts-%s-%d\t/p\t1\n", serial, ids[t], ts,
                                        ids[t], offsets[i]), NULL);
        }
    }
    ASSERT_OK(sl_ch_buf_appendf(&sql, "INSERT INTO %s.events (id, tenant_id, type, ts, "
                                "session_id, path, version) FORMAT TabSeparated", f->db), NULL);
    if (sl_ch_insert(f->ch, sql.data, body.data, body.len, &err) != 0) {
        TEST_FAIL("insert: %s", err.msg);
    }
    sl_ch_buf_fini(&body);
    sl_ch_buf_fini(&sql);
}

static void insert_events_at(struct fixture *f, const char *id, int64_t today_s)
{
    char ids[1][SL_STORE_ID_MAX];

    snprintf(ids[0], sizeof(ids[0]), "%s", id);
    insert_events_many(f, (const char (*)[SL_STORE_ID_MAX])ids, 1, today_s);
}

static void insert_events(struct fixture *f, const char *id)
{
    insert_events_at(f, id, TODAY_S);
}

static void fixture_open(struct fixture *f, const char *case_name)
{
    const char *url = test_env_require("SLUICE_TEST_CLICKHOUSE_URL");
    char *env[3] = {f->url_env, f->db_env, NULL};
    struct sl_ch_settings plain;
    struct sl_err err;
    char sql[512];

    memset(f, 0, sizeof(*f));
    snprintf(f->db, sizeof(f->db), "sluice_test_retention_%s_%d", case_name, (int)getpid());
    snprintf(f->url_env, sizeof(f->url_env), "SLUICE_CLICKHOUSE_URL=%s", url);
    snprintf(f->db_env, sizeof(f->db_env), "SLUICE_CLICKHOUSE_DATABASE=%s", f->db);
    f->ch_sec = SL_CFG_SECTION("clickhouse", sl_ch_cfg_opts, sl_ch_cfg_n_opts, &f->ch_settings);
    ASSERT_OK(sl_cfg_load(&f->ch_sec, 1, NULL, env, &err), &err);
    plain = f->ch_settings;
    plain.database = NULL;
    ASSERT_OK(sl_ch_create(&f->ch, &plain, &err), &err);
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", f->db);
    exec_ok(f->ch, sql);
    ASSERT_OK(ingest_schema_apply(f->ch, f->db, &err), &err);

    f->dir = test_tmpdir();
    f->db_path = test_path(f->dir, "sluice.db");
    f->cold_root = test_path(f->dir, "cold");
    ASSERT_EQ_INT(mkdir(f->cold_root, 0755), 0);
    ASSERT_OK(sl_store_open(&f->st, f->db_path, 5000, &err), &err);
}

static void fixture_close(struct fixture *f)
{
    char sql[256];

    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", f->db);
    exec_ok(f->ch, sql);
    sl_ch_destroy(f->ch);
    sl_cfg_fini(&f->ch_sec, 1);
    sl_store_close(f->st);
    test_rmtree(f->dir);
    sl_free(f->dir);
    sl_free(f->db_path);
    sl_free(f->cold_root);
}

/* The tenants of the big case, their events and what each keeps. */
static void populate(struct fixture *f)
{
    struct sl_err err;

    make_tenant(f, T_FREE, "free", "free");
    make_tenant(f, T_PAID, "paid", "paid");
    make_tenant(f, T_OVERRIDE, "override", "free");
    make_tenant(f, T_GRACE, "grace", "paid");
    make_tenant(f, T_PAST_GRACE, "past-grace", "paid");
    make_tenant(f, T_UPGRADED, "upgraded", "free");
    make_tenant(f, T_PURGED, "purged", "enterprise");
    snprintf(f->ids[T_GHOST], sizeof(f->ids[T_GHOST]), "tn_ghost0000000000");

    ASSERT_OK(sl_store_tenant_set_limits(f->st, f->ids[T_OVERRIDE], -1, -1, 90, NOW_S, &err),
              &err);
    ASSERT_OK(sl_store_tenant_set_tier(f->st, f->ids[T_GRACE], "free", NOW_S - 10 * DAY_S,
                                       &err), &err);
    ASSERT_OK(sl_store_tenant_set_tier(f->st, f->ids[T_PAST_GRACE], "free",
                                       NOW_S - 40 * DAY_S, &err), &err);
    ASSERT_OK(sl_store_tenant_set_tier(f->st, f->ids[T_UPGRADED], "paid", NOW_S - DAY_S, &err),
              &err);
    ASSERT_OK(sl_store_tenant_set_disabled(f->st, f->ids[T_PURGED], true, NOW_S - 20 * DAY_S,
                                           &err), &err);
    f->kept_days[T_FREE] = 30;
    f->kept_days[T_PAID] = 365;
    f->kept_days[T_OVERRIDE] = 90;
    f->kept_days[T_GRACE] = 365;      /* downgraded 10 days ago: paid's retention holds */
    f->kept_days[T_PAST_GRACE] = 30;  /* downgraded 40 days ago: free's */
    f->kept_days[T_UPGRADED] = 365;   /* upgraded yesterday: paid's at once */
    f->kept_days[T_PURGED] = -1;      /* disabled 20 days, purge after 10 */
    f->kept_days[T_GHOST] = 730;      /* unknown: whole partitions past the longest only */
    /* One insert: every table then holds one row per tenant and day. */
    insert_events_many(f, (const char (*)[SL_STORE_ID_MAX])f->ids, N_T, TODAY_S);
}

/* Writes a cold export of tenant `which` for the day offset days back: folder, two files,
 * row. Returns the folder (sl_free). */
static char *make_cold(struct fixture *f, int which, int offset)
{
    char day[11], path[2048], file[2200], sql[4096];
    time_t t = (time_t)(TODAY_S - offset * DAY_S);
    struct tm tm;
    FILE *fp;

    gmtime_r(&t, &tm);
    strftime(day, sizeof(day), "%Y-%m-%d", &tm);
    snprintf(path, sizeof(path), "%s/%s", f->cold_root, f->ids[which]);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/%s/%s", f->cold_root, f->ids[which], day);
    ASSERT_EQ_INT(mkdir(path, 0755), 0);
    snprintf(file, sizeof(file), "%s/part-0001.jsonl.zst", path);
    fp = fopen(file, "w");
    ASSERT_TRUE(fp != NULL);
    fputs("data", fp);
    fclose(fp);
    snprintf(file, sizeof(file), "%s/part-0001.manifest.json", path);
    fp = fopen(file, "w");
    ASSERT_TRUE(fp != NULL);
    fputs("{}", fp);
    fclose(fp);
    snprintf(sql, sizeof(sql),
             "INSERT INTO cold_exports (tenant_id, day, path, rows, sha256, state, created_at, "
             "updated_at) VALUES ('%s', '%s', '%s', 7, 'x', 'deleted', 1, 1)",
             f->ids[which], day, path);
    sql_store(f, sql);
    return sl_strdup(path);
}

static bool dir_exists(const char *path)
{
    struct stat sb;

    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Settings of the job: defaults, purge policy after 10 days, dry run as asked. */
struct job {
    struct retention_settings settings;
    struct sl_cfg_section sec;
    struct sl_metrics *metrics;
    struct sched_worker_env env;
    void *ctx;
};

static void job_create_with(struct job *j, struct fixture *f, bool is_dry_run,
                            const char *timeout_s)
{
    char timeout[96];
    char *env[] = {"SLUICE_JOB_RETENTION_DISABLED_POLICY=purge",
                   "SLUICE_JOB_RETENTION_DISABLED_PURGE_AFTER_DAYS=10", timeout,
                   is_dry_run ? "SLUICE_JOB_RETENTION_DRY_RUN=true" : NULL, NULL};
    struct sl_err err;

    snprintf(timeout, sizeof(timeout), "SLUICE_JOB_RETENTION_MUTATION_TIMEOUT_S=%s", timeout_s);
    memset(j, 0, sizeof(*j));
    j->sec = SL_CFG_SECTION("retention", retention_cfg_opts, retention_cfg_n_opts, &j->settings);
    ASSERT_OK(sl_cfg_load(&j->sec, 1, NULL, env, &err), &err);
    ASSERT_OK(sl_metrics_create(&j->metrics), NULL);
    j->env = (struct sched_worker_env){.store = NULL, .ch = &f->ch_settings,
                                       .metrics = j->metrics};
    ASSERT_OK(retention_worker.create(&j->settings, &j->env, &j->ctx, &err), &err);
}

static void job_create(struct job *j, struct fixture *f, bool is_dry_run)
{
    job_create_with(j, f, is_dry_run, "60");
}

static void job_destroy(struct job *j)
{
    retention_worker.destroy(j->ctx);
    sl_metrics_destroy(j->metrics);
    sl_cfg_fini(&j->sec, 1);
}

static enum sched_outcome job_run(struct job *j, struct fixture *f, int64_t run_id,
                                  int64_t *rows)
{
    struct sched_run run = {.job = "retention", .run_id = run_id, .slot_s = NOW_S,
                            .kind = "manual", .now_s = NOW_S, .store = f->st, .checkpoint = ""};
    enum sched_outcome out = retention_worker.run(j->ctx, &run);

    if (out != SCHED_DONE) {
        TEST_FAIL("run %" PRId64 " ended %d: %s", run_id, (int)out, run.err.msg);
    }
    *rows = run.rows;
    return out;
}

/* The offsets (days before today_s) of tenant `which` left in table i, as "[0,1,...]". */
static char *days_left_at(struct fixture *f, size_t i, int which, int64_t today_s)
{
    char sql[1024];

    snprintf(sql, sizeof(sql),
             "SELECT toString(arraySort(groupUniqArray(toInt32(toRelativeDayNum(toDate("
             "toDateTime(%" PRId64 ", 'UTC'))) - toRelativeDayNum(toDate(%s)))))) FROM {db}.%s "
             "WHERE tenant_id = '%s' FORMAT TabSeparated",
             today_s, time_cols[i], tables[i], f->ids[which]);
    return query_db(f, sql);
}

static char *days_left(struct fixture *f, size_t i, int which)
{
    return days_left_at(f, i, which, TODAY_S);
}

static void expected_days(int64_t kept, char *out, size_t cap)
{
    size_t used = 0;

    used += (size_t)snprintf(out + used, cap - used, "[");
    for (size_t i = 0; i < N_OFFSETS; i++) {
        if (offsets[i] <= kept) {
            used += (size_t)snprintf(out + used, cap - used, "%s%d", used > 1 ? "," : "",
                                     offsets[i]);
        }
    }
    snprintf(out + used, cap - used, "]\n");
}

static int64_t deleted_count(int64_t kept)
{
    int64_t n = 0;

    for (size_t i = 0; i < N_OFFSETS; i++) {
        n += offsets[i] > kept;
    }
    return n;
}

static int64_t total_rows(struct fixture *f)
{
    int64_t n = 0;
    char sql[256];

    for (size_t i = 0; i < 4; i++) {
        snprintf(sql, sizeof(sql), "SELECT count() FROM {db}.%s FORMAT TabSeparated", tables[i]);
        n += query_int(f, sql);
    }
    return n;
}

/* `sluice --json retention plan` against the fixture: the rows it says would go. */
static int64_t cli_plan_rows(struct fixture *f)
{
    char *bin = test_bin("sluice");
    char db_env[1100];
    char *argv[] = {bin, "--json", "retention", "plan", NULL};
    char *env[] = {db_env, f->url_env, f->db_env, "SLUICE_JOB_RETENTION_DISABLED_POLICY=purge",
                   "SLUICE_JOB_RETENTION_DISABLED_PURGE_AFTER_DAYS=10", NULL};
    struct test_proc p;
    const char *at;
    int64_t rows;

    snprintf(db_env, sizeof(db_env), "SLUICE_DB=%s", f->db_path);
    test_proc_run(&p, argv, env, NULL);
    if (p.status != 0) {
        TEST_FAIL("sluice retention plan exited %d: %s", p.status, p.err);
    }
    /* The top-level "rows" comes after "now", "longest_days", "drop_before". */
    at = strstr(p.out, "\"rows\":");
    ASSERT_TRUE(at != NULL);
    ASSERT_CONTAINS(p.out, "\"longest_days\":");
    rows = strtoll(at + 7, NULL, 10);
    test_proc_fini(&p);
    sl_free(bin);
    return rows;
}

static void test_retention_across_tiers(void)
{
    struct fixture f;
    struct job dry, job;
    char *cold_free_old, *cold_free_new, *cold_purged, *cold_ghost_old, *cold_ghost_new;
    int64_t rows = -1, before, expect_rows = 0, expect_cold = 0;
    char want[256], sql[1024];

    fixture_open(&f, "tiers");
    populate(&f);
    cold_free_new = make_cold(&f, T_FREE, 29);
    cold_free_old = make_cold(&f, T_FREE, 31);
    cold_purged = make_cold(&f, T_PURGED, 5);
    cold_ghost_new = make_cold(&f, T_GHOST, 100);
    cold_ghost_old = make_cold(&f, T_GHOST, 800);
    expect_cold = 3 * 7;
    for (int t = 0; t < N_T; t++) {
        expect_rows += 4 * deleted_count(f.kept_days[t]);
    }

    /* A dry run counts and deletes nothing, audits nothing. */
    before = total_rows(&f);
    ASSERT_EQ_INT(before, 4 * N_T * (int64_t)N_OFFSETS);
    job_create(&dry, &f, true);
    job_run(&dry, &f, 1, &rows);
    ASSERT_EQ_INT(rows, 0);
    job_destroy(&dry);
    ASSERT_EQ_INT(total_rows(&f), before);
    ASSERT_EQ_INT(store_int(&f, "SELECT count() FROM deletion_audit"), 0);
    ASSERT_EQ_INT(store_int(&f, "SELECT count() FROM cold_exports"), 5);
    ASSERT_EQ_INT(query_int(&f, "SELECT count() FROM system.mutations WHERE database = '{db}' "
                                "FORMAT TabSeparated"), 0);
    ASSERT_TRUE(dir_exists(cold_free_old));

    /* The CLI's plan says what the run will delete, and deletes nothing either. */
    ASSERT_EQ_INT(cli_plan_rows(&f), expect_rows + expect_cold);
    ASSERT_EQ_INT(total_rows(&f), before);

    /* The run. */
    job_create(&job, &f, false);
    job_run(&job, &f, 2, &rows);
    ASSERT_EQ_INT(rows, expect_rows + expect_cold);
    for (size_t i = 0; i < 4; i++) {
        for (int t = 0; t < N_T; t++) {
            char *got = days_left(&f, i, t);

            expected_days(f.kept_days[t], want, sizeof(want));
            if (strcmp(got, want) != 0) {
                TEST_FAIL("%s, tenant %d (%s): days left %s, want %s", tables[i], t, f.ids[t],
                          got, want);
            }
            sl_free(got);
            /* The audit has this tenant's rows of this table, all done. */
            snprintf(sql, sizeof(sql),
                     "SELECT coalesce(sum(rows), 0) FROM deletion_audit WHERE tenant_id = '%s' "
                     "AND tbl = '%s' AND state = 'done' AND job = 'retention' AND run_id = 2",
                     f.ids[t], tables[i]);
            ASSERT_EQ_INT(store_int(&f, sql), deleted_count(f.kept_days[t]));
        }
    }
    /* Days past the longest retention went as whole partitions (two per tenant and table:
     * 731 and 800 days back), the rest as mutations, the purged tenant's as a purge. */
    snprintf(sql, sizeof(sql), "SELECT sum(rows) FROM deletion_audit WHERE tenant_id = '%s' "
             "AND method = 'drop_partition'", f.ids[T_PAID]);
    ASSERT_EQ_INT(store_int(&f, sql), 4 * 2);
    snprintf(sql, sizeof(sql), "SELECT sum(rows) FROM deletion_audit WHERE tenant_id = '%s' "
             "AND method = 'purge'", f.ids[T_PURGED]);
    ASSERT_EQ_INT(store_int(&f, sql), 4 * (int64_t)(N_OFFSETS - 2));
    ASSERT_EQ_INT(store_int(&f, "SELECT count() FROM deletion_audit WHERE state != 'done'"), 0);
    /* Each mutation proved what it kept: the paid group's tenants (paid, grace, upgraded)
     * keep 10 of their 15 days in events, the one-tenant 90-day group 7. */
    snprintf(sql, sizeof(sql), "SELECT count() FROM deletion_audit WHERE tenant_id = '%s' AND "
             "tbl = 'events' AND method = 'mutation' AND detail LIKE '%%; kept 30 rows of these "
             "tenants'", f.ids[T_PAID]);
    ASSERT_EQ_INT(store_int(&f, sql), 1);
    snprintf(sql, sizeof(sql), "SELECT count() FROM deletion_audit WHERE tenant_id = '%s' AND "
             "tbl = 'sessions' AND method = 'mutation' AND detail LIKE '%%; kept 7 rows of "
             "these tenants'", f.ids[T_OVERRIDE]);
    ASSERT_EQ_INT(store_int(&f, sql), 1);
    /* One mutation per distinct cutoff and table: 30 (free, past grace), 90, 365 (paid,
     * grace, upgraded), purge. */
    ASSERT_EQ_INT(query_int(&f, "SELECT count() FROM system.mutations WHERE database = '{db}' "
                                "FORMAT TabSeparated"), 4 * 4);
    ASSERT_EQ_INT(store_int(&f, "SELECT count(DISTINCT tbl || detail) FROM deletion_audit "
                                "WHERE method IN ('mutation', 'purge') AND detail LIKE "
                                "'mutation mutation_%'"), 4 * 4);

    /* Cold exports past retention are gone with their rows, audited; the others stay. */
    ASSERT_TRUE(!dir_exists(cold_free_old));
    ASSERT_TRUE(dir_exists(cold_free_new));
    ASSERT_TRUE(!dir_exists(cold_purged));
    ASSERT_TRUE(!dir_exists(cold_ghost_old));
    ASSERT_TRUE(dir_exists(cold_ghost_new));
    ASSERT_EQ_INT(store_int(&f, "SELECT count() FROM cold_exports"), 2);
    ASSERT_EQ_INT(store_int(&f, "SELECT count() FROM deletion_audit WHERE tbl = 'cold' AND "
                                "rows = 7 AND state = 'done'"), 3);

    /* Metrics say the same. */
    {
        struct sl_metrics_family *fam = sl_metrics_counter(
            job.metrics, "sluice_retention_rows_deleted_total", NULL,
            (const char *const[]){"table"}, 1);
        const char *ev[] = {"events"};
        const char *cold[] = {"cold"};
        int64_t events = 0;

        for (int t = 0; t < N_T; t++) {
            events += deleted_count(f.kept_days[t]);
        }
        ASSERT_EQ_INT(sl_metrics_counter_value(sl_metrics_series_get(fam, ev)), events);
        ASSERT_EQ_INT(sl_metrics_counter_value(sl_metrics_series_get(fam, cold)), expect_cold);
    }

    /* A second run finds nothing: no rows, no audit, no mutation. */
    before = total_rows(&f);
    job_run(&job, &f, 3, &rows);
    ASSERT_EQ_INT(rows, 0);
    ASSERT_EQ_INT(total_rows(&f), before);
    ASSERT_EQ_INT(store_int(&f, "SELECT count() FROM deletion_audit WHERE run_id = 3"), 0);
    ASSERT_EQ_INT(query_int(&f, "SELECT count() FROM system.mutations WHERE database = '{db}' "
                                "FORMAT TabSeparated"), 4 * 4);
    job_destroy(&job);

    sl_free(cold_free_old);
    sl_free(cold_free_new);
    sl_free(cold_purged);
    sl_free(cold_ghost_old);
    sl_free(cold_ghost_new);
    fixture_close(&f);
}

/* A run killed after writing its audit as pending: once before the delete went out (the
 * rows are still there), once after (they are gone). The next run settles both, even one
 * asked to stop before its first delete; the one after deletes what is left, once. */
static void test_retention_settles_pending_audit(void)
{
    struct fixture f;
    struct job job;
    int64_t rows = 0;
    char sql[1024];

    fixture_open(&f, "pending");
    make_tenant(&f, T_FREE, "free", "free");
    insert_events(&f, f.ids[T_FREE]);
    /* Pending from a killed run 7: the events of 31..729 days back (not deleted yet), and
     * of the 40th day back (nothing there: as if deleted). */
    snprintf(sql, sizeof(sql),
             "INSERT INTO deletion_audit (run_id, job, tenant_id, tbl, method, from_s, cutoff_s, "
             "rows, state, created_at) VALUES "
             "(7, 'retention', '%s', 'events', 'mutation', %" PRId64 ", %" PRId64 ", 6, "
             "'pending', 1), "
             "(7, 'retention', '%s', 'events', 'mutation', %" PRId64 ", %" PRId64 ", 1, "
             "'pending', 1)",
             f.ids[T_FREE], TODAY_S - 730 * DAY_S, TODAY_S - 30 * DAY_S, f.ids[T_FREE],
             TODAY_S - 40 * DAY_S, TODAY_S - 39 * DAY_S);
    sql_store(&f, sql);

    job_create(&job, &f, false);
    /* Asked to stop before its first delete (shutdown): it settles the old pending rows,
     * deletes nothing and ends retry. */
    {
        atomic_int stop = 1;
        struct sched_run run = {.job = "retention", .run_id = 9, .slot_s = NOW_S,
                                .kind = "manual", .now_s = NOW_S, .store = f.st,
                                .checkpoint = "", ._stop = &stop};

        ASSERT_EQ_INT(retention_worker.run(job.ctx, &run), SCHED_RETRY);
        ASSERT_CONTAINS(run.err.msg, "stopped");
        ASSERT_EQ_INT(run.rows, 0);
        ASSERT_EQ_INT(total_rows(&f), 4 * (int64_t)N_OFFSETS);
        ASSERT_EQ_INT(store_int(&f, "SELECT count() FROM deletion_audit WHERE run_id = 9"), 0);
    }
    job_run(&job, &f, 8, &rows);
    job_destroy(&job);
    ASSERT_EQ_INT(store_int(&f, "SELECT count() FROM deletion_audit WHERE state = 'pending'"),
                  0);
    ASSERT_EQ_INT(store_int(&f, "SELECT count() FROM deletion_audit WHERE run_id = 7 AND "
                                "state = 'failed' AND rows = 6 AND detail LIKE '%still there%'"),
                  1);
    ASSERT_EQ_INT(store_int(&f, "SELECT count() FROM deletion_audit WHERE run_id = 7 AND "
                                "state = 'done' AND rows = 1 AND detail LIKE '%confirmed%'"),
                  1);
    /* Run 8 deleted and audited the rows itself. */
    ASSERT_EQ_INT(store_int(&f, "SELECT sum(rows) FROM deletion_audit WHERE run_id = 8 AND "
                                "tbl = 'events'"), deleted_count(30));
    ASSERT_EQ_INT(rows, 4 * deleted_count(30));
    fixture_close(&f);
}

/* The job as sluice-scheduler runs it: registered, settings from the environment, its
 * ClickHouse database from SLUICE_CLICKHOUSE_DATABASE, run through `sluice jobs run`; the
 * audit names the run and `sluice retention audit` shows it. Days are counted from the
 * real clock here, as the scheduler's are. */
static void test_retention_through_scheduler(void)
{
    struct fixture f;
    struct test_daemon d;
    struct test_proc p;
    char *sched_bin = test_bin("sluice-scheduler");
    char *cli_bin = test_bin("sluice");
    char db_env[1100], http_env[64], want[256], sql[512];
    int64_t today_s = (int64_t)time(NULL) / DAY_S * DAY_S;
    int64_t run_id;
    char *got;

    fixture_open(&f, "scheduler");
    make_tenant(&f, T_FREE, "free", "free");
    insert_events_at(&f, f.ids[T_FREE], today_s);
    snprintf(db_env, sizeof(db_env), "SLUICE_DB=%s", f.db_path);
    snprintf(http_env, sizeof(http_env), "SLUICE_SCHEDULER_HTTP_ADDR=127.0.0.1:%d",
             test_free_port());
    {
        char *env[] = {db_env, f.url_env, f.db_env, http_env, "SLUICE_LOG_LEVEL=info", NULL};
        char *run_argv[] = {cli_bin, "jobs", "run", "retention", "--wait", "--timeout", "120",
                            NULL};
        char *audit_argv[] = {cli_bin, "--json", "retention", "audit", "--tenant", "free",
                              NULL};
        char *cli_env[] = {db_env, NULL};

        test_daemon_start(&d, sched_bin, NULL, f.dir, env);
        test_daemon_wait_started(&d, "scheduler", 30000);
        test_proc_run(&p, run_argv, cli_env, NULL);
        if (p.status != 0) {
            test_daemon_read_log(&d);
            TEST_FAIL("jobs run retention exited %d: %s%s\n%s", p.status, p.out, p.err, d.log);
        }
        test_proc_fini(&p);
        test_daemon_stop(&d, 30000);
        test_daemon_fini(&d);

        got = days_left_at(&f, 0, T_FREE, today_s);
        expected_days(30, want, sizeof(want));
        ASSERT_EQ_STR(got, want);
        sl_free(got);
        run_id = store_int(&f, "SELECT max(id) FROM sched_runs WHERE job = 'retention' AND "
                               "status = 'done'");
        ASSERT_TRUE(run_id > 0);
        snprintf(sql, sizeof(sql), "SELECT sum(rows) FROM deletion_audit WHERE run_id = %"
                 PRId64 " AND tbl = 'events' AND state = 'done'", run_id);
        ASSERT_EQ_INT(store_int(&f, sql), deleted_count(30));
        snprintf(sql, sizeof(sql), "SELECT rows FROM sched_runs WHERE id = %" PRId64, run_id);
        ASSERT_EQ_INT(store_int(&f, sql), 4 * deleted_count(30));

        test_proc_run(&p, audit_argv, cli_env, NULL);
        ASSERT_EQ_INT(p.status, 0);
        ASSERT_CONTAINS(p.out, "\"method\":\"drop_partition\"");
        ASSERT_CONTAINS(p.out, "\"method\":\"mutation\"");
        ASSERT_CONTAINS(p.out, f.ids[T_FREE]);
        test_proc_fini(&p);

        /* Nothing is left to delete, and the text plan says so. */
        {
            char *plan_argv[] = {cli_bin, "retention", "plan", NULL};
            char *plan_env[] = {db_env, f.url_env, f.db_env, NULL};
            char *bad_env[] = {db_env, f.url_env, f.db_env,
                               "SLUICE_JOB_RETENTION_DISABLED_POLICY=shred", NULL};
            char *bad_argv[] = {cli_bin, "retention", "audit", "--state", "gone", NULL};

            test_proc_run(&p, plan_argv, plan_env, NULL);
            ASSERT_EQ_INT(p.status, 0);
            ASSERT_CONTAINS(p.out, "(nothing is past retention)");
            ASSERT_CONTAINS(p.out, "total: 0 rows would be deleted");
            ASSERT_CONTAINS(p.out, f.ids[T_FREE]);
            test_proc_fini(&p);
            /* A bad setting and a bad flag are usage errors (exit 2). */
            test_proc_run(&p, plan_argv, bad_env, NULL);
            ASSERT_EQ_INT(p.status, 2);
            ASSERT_CONTAINS(p.err, "SLUICE_JOB_RETENTION_DISABLED_POLICY");
            test_proc_fini(&p);
            test_proc_run(&p, bad_argv, cli_env, NULL);
            ASSERT_EQ_INT(p.status, 2);
            test_proc_fini(&p);
        }
    }
    sl_free(sched_bin);
    sl_free(cli_bin);
    fixture_close(&f);
}

/* A mutation that can never finish (its WHERE throws; 18.16 cannot kill it) blocks every
 * later one on its table. The run must not hang: it fails once the wait's timeout passed,
 * naming the mutation; what it had counted for that mutation stays pending in the audit,
 * and the metrics count a failed mutation. Dropping the test database ends the mutation. */
static void test_retention_stuck_mutation_fails(void)
{
    struct fixture f;
    struct job job;
    struct sched_run run = {.job = "retention", .run_id = 5, .slot_s = NOW_S, .kind = "manual",
                            .now_s = NOW_S, .checkpoint = ""};
    enum sched_outcome out;
    char sql[512];

    fixture_open(&f, "stuck");
    make_tenant(&f, T_FREE, "free", "free");
    insert_events(&f, f.ids[T_FREE]);
    snprintf(sql, sizeof(sql), "ALTER TABLE %s.events DELETE WHERE throwIf(tenant_id = '%s') "
             "= 1", f.db, f.ids[T_FREE]);
    exec_ok(f.ch, sql);

    job_create_with(&job, &f, false, "1");
    run.store = f.st;
    out = retention_worker.run(job.ctx, &run);
    ASSERT_EQ_INT(out, SCHED_FAILED);
    ASSERT_CONTAINS(run.err.msg, "unfinished after 1 s");
    ASSERT_CONTAINS(run.err.msg, "mutation_");
    /* The events' whole partitions went (done); the mutation's rows are pending. */
    ASSERT_EQ_INT(store_int(&f, "SELECT count() FROM deletion_audit WHERE run_id = 5 AND "
                                "method = 'drop_partition' AND state = 'done'"), 2);
    ASSERT_EQ_INT(store_int(&f, "SELECT rows FROM deletion_audit WHERE run_id = 5 AND "
                                "method = 'mutation' AND state = 'pending'"),
                  deleted_count(30) - 2);
    {
        struct sl_metrics_family *fam = sl_metrics_counter(
            job.metrics, "sluice_retention_mutations_total", NULL,
            (const char *const[]){"table", "result"}, 2);
        const char *failed[] = {"events", "failed"};

        ASSERT_EQ_INT(sl_metrics_counter_value(sl_metrics_series_get(fam, failed)), 1);
    }
    job_destroy(&job);
    fixture_close(&f);
}

static const struct test_case cases[] = {
    TEST_CASE(test_retention_across_tiers),
    TEST_CASE(test_retention_settles_pending_audit),
    TEST_CASE(test_retention_stuck_mutation_fails),
    TEST_CASE(test_retention_through_scheduler),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return test_main(argc, argv, cases);
}

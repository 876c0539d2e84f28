/*
 * The scheduled `enrichment` job (workers/enrichment/enrich_job.c, reenrich.c) against the
 * real ClickHouse: rows loaded with one GeoIP database (the country-only test database),
 * the database then replaced by rename with another (the city test database, written later),
 * and the job's run callback run as the scheduler would:
 *
 * - a run asked to stop at once rewrites nothing and keeps no checkpoint;
 * - a run that resumes from a checkpoint skips the hours before it and upgrades the rest;
 * - a full run upgrades every row of an enrichment tier within the look-back: new values and
 *   the new enrichment_version, the same tenant_id/ts/ts_ms/id, counts unchanged
 *   (uniqExact(id) in events and the rollups), and clears the checkpoint;
 * - a tier with enrichment off is left alone; a second run changes nothing;
 * - a tier with reenrich_days 0 is left alone; data that does not load fails the run.
 *
 * Rows are written with the loader's own encoder (ingest_rows_append_enriched). Needs
 * SLUICE_TEST_CLICKHOUSE_URL. Every case uses its own database and drops it.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "ch.h"
#include "enrich.h"
#include "enrich_job.h"
#include "rows.h"
#include "schema.h"
#include "store.h"
#include "chquery.h"
#include "test.h"

#define PER_HOUR 30

struct fixture {
    char *dir;
    char *store_path;
    char *geo_path;
    char *geo_dir;
    char database[96];
    char tenant_on[SL_STORE_ID_MAX];
    char tenant_off[SL_STORE_ID_MAX];
    struct sl_ch *ch;
    struct sl_ch_settings ch_settings; /* from the settings table; database = ours */
    struct sl_store_settings store_settings;
    int64_t now_s;
    int64_t hour1;                     /* two hours ago, on the hour */
    int64_t hour2;                     /* one hour ago */
};

/* Copies the test database name to path (through a temp file renamed over it, as
 * geoipupdate does) with the modification time mtime_s. */
static void put_db(struct fixture *f, const char *name, const char *path, int64_t mtime_s)
{
    char *src = test_path(f->geo_dir, name);
    char *tmp = test_path(f->dir, "db.tmp");
    struct timespec times[2] = {{.tv_sec = (time_t)mtime_s}, {.tv_sec = (time_t)mtime_s}};
    char buf[65536];
    int in = open(src, O_RDONLY);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ssize_t n;

    ASSERT_TRUE(in >= 0 && out >= 0);
    while ((n = read(in, buf, sizeof(buf))) > 0) {
        ASSERT_EQ_INT(write(out, buf, (size_t)n), n);
    }
    ASSERT_EQ_INT(n, 0);
    ASSERT_EQ_INT(futimens(out, times), 0);
    close(in);
    close(out);
    ASSERT_EQ_INT(rename(tmp, path), 0);
    free(src);
    free(tmp);
}

static void fixture_init(struct fixture *f, const char *name)
{
    const char *url = test_env_require("SLUICE_TEST_CLICKHOUSE_URL");
    struct sl_store *st = NULL;
    struct sl_tenant t;
    struct sl_tier tier;
    struct sl_err err;
    char env_url[256], env_db[160], env_store[1024];

    memset(f, 0, sizeof(*f));
    f->dir = test_tmpdir();
    f->store_path = test_path(f->dir, "tenants.db");
    f->geo_path = test_path(f->dir, "city.mmdb");
    f->geo_dir = test_path(getenv("SLUICE_SOURCE_DIR"), "../shared/testdata/geoip");
    f->now_s = (int64_t)time(NULL);
    f->hour2 = f->now_s / 3600 * 3600 - 3600;
    f->hour1 = f->hour2 - 3600;
    snprintf(f->database, sizeof(f->database), "sluice_test_reenrich_%s_%ld", name,
             (long)getpid());
    snprintf(env_url, sizeof(env_url), "SLUICE_CLICKHOUSE_URL=%s", url);
    snprintf(env_db, sizeof(env_db), "SLUICE_CLICKHOUSE_DATABASE=%s", f->database);
    snprintf(env_store, sizeof(env_store), "SLUICE_DB=%s", f->store_path);
    {
        char *env[] = {env_url, env_db, env_store, NULL};
        struct sl_cfg_section secs[] = {
            SL_CFG_SECTION("clickhouse", sl_ch_cfg_opts, sl_ch_cfg_n_opts, &f->ch_settings),
            SL_CFG_SECTION("store", sl_store_cfg_opts, sl_store_cfg_n_opts, &f->store_settings),
        };
        struct sl_ch_settings client;

        ASSERT_OK(sl_cfg_load(secs, 2, NULL, env, &err), &err);
        client = f->ch_settings;
        client.database = NULL;
        ASSERT_OK(sl_ch_create(&f->ch, &client, &err), &err);
    }
    ASSERT_OK(ingest_schema_apply(f->ch, f->database, &err), &err);

    ASSERT_OK(sl_store_open(&st, f->store_path, 1000, &err), &err);
    ASSERT_OK(sl_store_tier_get(st, "paid", &tier, &err), &err);
    ASSERT_EQ_INT(tier.reenrich_days, 7); /* migration 8's default */
    ASSERT_TRUE(tier.has_enrichment);
    snprintf(tier.name, sizeof(tier.name), "plain");
    tier.has_enrichment = false;
    ASSERT_OK(sl_store_tier_put(st, &tier, f->now_s, &err), &err);
    ASSERT_OK(sl_store_tenant_create(st, "rich", "paid", f->now_s, &t, &err), &err);
    memcpy(f->tenant_on, t.id, sizeof(f->tenant_on));
    ASSERT_OK(sl_store_tenant_create(st, "plain", "plain", f->now_s, &t, &err), &err);
    memcpy(f->tenant_off, t.id, sizeof(f->tenant_off));
    sl_store_close(st);
}

static void fixture_fini(struct fixture *f)
{
    struct sl_cfg_section secs[] = {
        SL_CFG_SECTION("clickhouse", sl_ch_cfg_opts, sl_ch_cfg_n_opts, &f->ch_settings),
        SL_CFG_SECTION("store", sl_store_cfg_opts, sl_store_cfg_n_opts, &f->store_settings),
    };

    test_ch_exec(f->ch, "DROP DATABASE IF EXISTS %s", f->database);
    sl_ch_destroy(f->ch);
    sl_cfg_fini(secs, 2);
    test_rmtree(f->dir);
    free(f->dir);
    free(f->store_path);
    free(f->geo_path);
    free(f->geo_dir);
}

/* The loader's enrichment callback for the test: the "rich" tenant only. */
struct enrich_ctx {
    struct enrich *e;
    const char *tenant_on;
};

static bool enrich_cb(void *user, const char *tenant_id, const char *ip, const char *agent,
                      const json_t *client_hints, struct enrich_result *out)
{
    struct enrich_ctx *c = user;

    if (strcmp(tenant_id, c->tenant_on) != 0) {
        return false;
    }
    enrich_lookup(c->e, ip, agent, NULL, out);
    return true;
}

/* PER_HOUR events of tenant in each of the two hours, inserted as the loader would (with e
 * for the enrichment tenant), and the first 5 of each hour delivered a second time. Every
 * fifth event carries client hints saying Windows 11 (the load-time lookup ignores them,
 * as a loader without hint support would have; the rewrite must apply them). */
static void load_rows(struct fixture *f, struct enrich *e, const char *tenant, int salt)
{
    static const char *const ips[] = {"81.2.69.142", "2001:218::1", "10.1.2.3"};
    struct enrich_ctx ctx = {.e = e, .tenant_on = f->tenant_on};
    struct sl_ch_buf rows;
    struct sl_err err;
    char sql[INGEST_ROWS_INSERT_SQL_MAX];

    sl_ch_buf_init(&rows, 16 * 1024 * 1024);
    for (int copy = 0; copy < 2; copy++) {
        for (int h = 0; h < 2; h++) {
            for (int i = 0; i < (copy == 0 ? PER_HOUR : 5); i++) {
                char json[1024];
                char ts[32];
                time_t t = (time_t)((h == 0 ? f->hour1 : f->hour2) + i * 60);
                struct tm tm;

                gmtime_r(&t, &tm);
                strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S.123Z", &tm);
                snprintf(json, sizeof(json),
                         "{\"schema_version\":1,\"id\":\"%08x-0000-4000-8000-%012x\","
                         "\"tenant_id\":\"%s\",\"type\":\"pageview\",\"ts\":\"%s\","
                         "\"session_id\":\"s%d\",\"anonymous_id\":\"a%d\",\"context\":{"
                         "\"ip\":\"%s\",\"user_agent\":\"Mozilla/5.0 (Windows NT 10.0; Win64; "
                         "x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
                         "Safari/537.36\",\"path\":\"/p%d\"%s}}",
                         (unsigned)salt, (unsigned)(h * 1000 + i), tenant, ts, i % 4, i % 7,
                         ips[i % 3], i % 3,
                         i % 5 == 0 ? ",\"client_hints\":{\"Sec-CH-UA-Platform\":"
                                      "\"\\\"Windows\\\"\",\"Sec-CH-UA-Platform-Version\":"
                                      "\"\\\"15.0.0\\\"\"}"
                                    : "");
                ASSERT_OK(ingest_rows_append_enriched(&rows, json, strlen(json),
                                                      INT64_C(1700000000000) + copy, enrich_cb,
                                                      &ctx, &err),
                          &err);
            }
        }
    }
    ASSERT_OK(ingest_rows_insert_sql(f->database, sql, sizeof(sql)), NULL);
    ASSERT_OK(sl_ch_insert(f->ch, sql, rows.data, rows.len, &err), &err);
    sl_ch_buf_fini(&rows);
}

/* GLOBAL: whether run_job accepts SCHED_FAILED, and the last run's error; the test thread
 * only. */
static bool g_expect_failure;
static char g_last_error[SL_ERR_MSG_MAX];

/* Runs the job's run callback once, as the scheduler does, with checkpoint and a stop flag. */
static enum sched_outcome run_job(struct fixture *f, void *ctx, const char *checkpoint,
                                  int stop, int64_t *rows, char cp_out[SL_STORE_CHECKPOINT_MAX],
                                  bool *has_cp)
{
    struct sl_store *st = NULL;
    struct sl_err err;
    atomic_int stop_flag;
    struct sched_run run;
    enum sched_outcome outcome;

    atomic_init(&stop_flag, stop);
    ASSERT_OK(sl_store_open(&st, f->store_path, 1000, &err), &err);
    memset(&run, 0, sizeof(run));
    run.job = "enrichment";
    run.run_id = 1;
    run.slot_s = f->now_s;
    run.kind = "manual";
    run.now_s = f->now_s;
    run.store = st;
    run.checkpoint = checkpoint;
    run._stop = &stop_flag;
    sl_err_clear(&run.err);
    outcome = enrich_worker.run(ctx, &run);
    if (outcome == SCHED_FAILED && !g_expect_failure) {
        TEST_FAIL("the job failed: %s", run.err.msg);
    }
    snprintf(g_last_error, sizeof(g_last_error), "%s", run.err.msg);
    *rows = run.rows;
    *has_cp = run._has_checkpoint;
    memcpy(cp_out, run._checkpoint, SL_STORE_CHECKPOINT_MAX);
    sl_store_close(st);
    return outcome;
}

/* Creates the job's context as the scheduler would, from its settings table. */
static void *job_create(struct fixture *f, void **settings_out)
{
    char env_geo[1100], env_ua[1100];
    char *env[] = {env_geo, env_ua, "SLUICE_JOB_ENRICHMENT_BATCH_PAIRS=1", NULL};
    struct sl_cfg_section sec;
    struct sched_worker_env wenv = {.store = &f->store_settings, .ch = &f->ch_settings};
    void *settings = calloc(1, enrich_worker.settings_size);
    void *ctx = NULL;
    struct sl_err err;

    ASSERT_TRUE(settings != NULL);
    snprintf(env_geo, sizeof(env_geo), "SLUICE_GEOIP_DB=%s", f->geo_path);
    /* ua-parser's rules too: client hints refine what they parse. */
    snprintf(env_ua, sizeof(env_ua), "SLUICE_UA_REGEXES=%s/regexes.yaml",
             test_env_require("SLUICE_TEST_UAP_CORE_DIR"));
    sec = SL_CFG_SECTION("enrichment", enrich_worker.opts, enrich_worker.n_opts, settings);
    ASSERT_OK(sl_cfg_load(&sec, 1, NULL, env, &err), &err);
    ASSERT_OK(enrich_worker.create(settings, &wenv, &ctx, &err), &err);
    *settings_out = settings;
    return ctx;
}

static void job_destroy(void *ctx, void *settings)
{
    struct sl_cfg_section sec = SL_CFG_SECTION("enrichment", enrich_worker.opts,
                                               enrich_worker.n_opts, settings);

    enrich_worker.destroy(ctx);
    sl_cfg_fini(&sec, 1);
    free(settings);
}

/* Rows (newest copy per event) of tenant in [from, to) whose enrichment_version is v. */
static long long count_version(struct fixture *f, const char *tenant, int64_t from, int64_t to,
                               uint32_t v)
{
    return test_ch_int(f->ch,
                       "SELECT count() FROM (SELECT argMax(enrichment_version, version) AS ev "
                       "FROM %s.events WHERE tenant_id = '%s' AND ts >= toDateTime(%lld) AND ts < "
                       "toDateTime(%lld) GROUP BY id) WHERE ev = %u", f->database, tenant,
                       (long long)from, (long long)to, (unsigned)v);
}

static void test_reenrich_upgrades_rows_after_the_database_changes(void)
{
    struct fixture f;
    struct enrich_settings es = {.asn_db = "", .crawler_patterns = "", .ua_cache_entries = 100};
    struct enrich *e1 = NULL;
    struct sl_err err;
    uint32_t v1, v2;
    void *ctx, *settings;
    char cp[SL_STORE_CHECKPOINT_MAX], resume[128], line[512];
    bool has_cp;
    int64_t rows = 0;
    long long daily_before, hourly_before, raw_before;

    fixture_init(&f, "upgrade");
    /* Loaded with the country-only database, written ten minutes ago. */
    put_db(&f, "GeoIP2-Country-Test.mmdb", f.geo_path, f.now_s - 600);
    ASSERT_OK(enrich_create(&es, f.geo_path, NULL, f.now_s, &e1, &err), &err);
    v1 = enrich_version_id(e1);
    ASSERT_TRUE(v1 >= (uint32_t)(f.now_s - 600));
    load_rows(&f, e1, f.tenant_on, 1);
    load_rows(&f, e1, f.tenant_off, 2);
    enrich_destroy(e1);

    ASSERT_EQ_INT(count_version(&f, f.tenant_on, f.hour1, f.hour2 + 3600, v1), 2 * PER_HOUR);
    ASSERT_EQ_INT(count_version(&f, f.tenant_off, f.hour1, f.hour2 + 3600, 0), 2 * PER_HOUR);
    test_ch_line(f.ch, line, sizeof(line),
                 "SELECT country_code, city FROM %s.events WHERE tenant_id = '%s' AND ip = "
                 "'81.2.69.142' LIMIT 1 FORMAT TabSeparated",
                 f.database, f.tenant_on);
    ASSERT_EQ_STR(line, "GB\t");
    daily_before = test_ch_int(f.ch, "SELECT uniqExactMerge(events) FROM %s.events_daily WHERE "
                               "tenant_id = '%s'", f.database, f.tenant_on);
    hourly_before = test_ch_int(f.ch, "SELECT uniqExactMerge(events) FROM %s.events_hourly WHERE "
                                "tenant_id = '%s'", f.database, f.tenant_on);
    ASSERT_EQ_INT(daily_before, 2 * PER_HOUR);
    ASSERT_EQ_INT(hourly_before, 2 * PER_HOUR);

    /* The city database replaces it by rename, written now. */
    put_db(&f, "GeoIP2-City-Test.mmdb", f.geo_path, f.now_s);
    ctx = job_create(&f, &settings);

    /* Asked to stop before the first hour: nothing written, no checkpoint. */
    ASSERT_EQ_INT(run_job(&f, ctx, "", 1, &rows, cp, &has_cp), SCHED_RETRY);
    ASSERT_EQ_INT(rows, 0);
    ASSERT_TRUE(!has_cp);
    ASSERT_EQ_INT(count_version(&f, f.tenant_on, f.hour1, f.hour2 + 3600, v1), 2 * PER_HOUR);

    /* Resumed after the first hour: only the second is upgraded. */
    v2 = (uint32_t)f.now_s;
    snprintf(resume, sizeof(resume), "v=%u t=%s h=%lld", (unsigned)v2, f.tenant_on,
             (long long)f.hour1);
    ASSERT_EQ_INT(run_job(&f, ctx, resume, 0, &rows, cp, &has_cp), SCHED_DONE);
    ASSERT_EQ_INT(rows, PER_HOUR);
    ASSERT_TRUE(has_cp);
    ASSERT_EQ_STR(cp, "");
    ASSERT_EQ_INT(count_version(&f, f.tenant_on, f.hour1, f.hour2, v1), PER_HOUR);
    ASSERT_EQ_INT(count_version(&f, f.tenant_on, f.hour2, f.hour2 + 3600, v2), PER_HOUR);

    /* A full run does the rest, and leaves the other tier alone. */
    ASSERT_EQ_INT(run_job(&f, ctx, "", 0, &rows, cp, &has_cp), SCHED_DONE);
    ASSERT_EQ_INT(rows, PER_HOUR);
    ASSERT_EQ_INT(count_version(&f, f.tenant_on, f.hour1, f.hour2 + 3600, v2), 2 * PER_HOUR);
    ASSERT_EQ_INT(count_version(&f, f.tenant_off, f.hour1, f.hour2 + 3600, 0), 2 * PER_HOUR);
    test_ch_line(f.ch, line, sizeof(line), "SELECT country_code, city, enrichment_version FROM "
                 "%s.events FINAL WHERE tenant_id = '%s' AND ip = '81.2.69.142' GROUP BY "
                 "country_code, city, enrichment_version FORMAT TabSeparated", f.database,
                 f.tenant_on);
    snprintf(resume, sizeof(resume), "GB\tLondon\t%u", (unsigned)v2);
    ASSERT_EQ_STR(line, resume);
    test_ch_line(f.ch, line, sizeof(line), "SELECT country_code, city FROM %s.events FINAL WHERE "
                 "tenant_id = '%s' AND ip = '2001:218::1' LIMIT 1 FORMAT TabSeparated", f.database,
                 f.tenant_on);
    ASSERT_CONTAINS(line, "JP\t");
    ASSERT_EQ_INT(test_ch_int(f.ch,
                              "SELECT count() FROM %s.events FINAL WHERE tenant_id = '%s' AND "
                              "city != ''", f.database, f.tenant_off), 0);

    /* The stored client hints were applied: Windows 11 for the hinted events only. */
    test_ch_line(f.ch, line, sizeof(line), "SELECT countIf(os_version = '11'), countIf("
                 "os_version = '10') FROM %s.events FINAL WHERE tenant_id = '%s' FORMAT "
                 "TabSeparated", f.database, f.tenant_on);
    snprintf(resume, sizeof(resume), "%d\t%d", 2 * (PER_HOUR / 5), 2 * (PER_HOUR - PER_HOUR / 5));
    ASSERT_EQ_STR(line, resume);

    /* Same events, same keys, counted once. */
    ASSERT_EQ_INT(test_ch_int(f.ch, "SELECT uniqExact(id) FROM %s.events WHERE tenant_id = '%s'",
                              f.database, f.tenant_on), 2 * PER_HOUR);
    ASSERT_EQ_INT(test_ch_int(f.ch,
                              "SELECT count() FROM (SELECT id, uniqExact(ts, ts_ms, tenant_id) "
                              "AS k FROM %s.events GROUP BY id HAVING k != 1)", f.database), 0);
    ASSERT_EQ_INT(test_ch_int(f.ch, "SELECT uniqExactMerge(events) FROM %s.events_daily WHERE "
                              "tenant_id = '%s'", f.database, f.tenant_on), daily_before);
    ASSERT_EQ_INT(test_ch_int(f.ch, "SELECT uniqExactMerge(events) FROM %s.events_hourly WHERE "
                              "tenant_id = '%s'", f.database, f.tenant_on), hourly_before);

    /* Again: nothing to do, nothing written. */
    raw_before = test_ch_int(f.ch, "SELECT count() FROM %s.events", f.database);
    ASSERT_EQ_INT(run_job(&f, ctx, "", 0, &rows, cp, &has_cp), SCHED_DONE);
    ASSERT_EQ_INT(rows, 0);
    ASSERT_EQ_INT(test_ch_int(f.ch, "SELECT count() FROM %s.events", f.database), raw_before);
    ASSERT_EQ_INT(test_ch_int(f.ch,
                              "SELECT count() FROM system.tables WHERE database = '%s' AND name "
                              "LIKE '_sluice_reenrich_%%'", f.database), 0);

    job_destroy(ctx, settings);
    fixture_fini(&f);
}

/* A tier with reenrich_days 0 is not rewritten even with enrichment on. */
static void test_reenrich_respects_zero_days(void)
{
    struct fixture f;
    struct enrich_settings es = {.asn_db = "", .crawler_patterns = "", .ua_cache_entries = 100};
    struct enrich *e1 = NULL;
    struct sl_store *st = NULL;
    struct sl_tier tier;
    struct sl_err err;
    void *ctx, *settings;
    char cp[SL_STORE_CHECKPOINT_MAX];
    bool has_cp;
    int64_t rows = -1;
    uint32_t v1;

    fixture_init(&f, "zero");
    put_db(&f, "GeoIP2-Country-Test.mmdb", f.geo_path, f.now_s - 600);
    ASSERT_OK(enrich_create(&es, f.geo_path, NULL, f.now_s, &e1, &err), &err);
    v1 = enrich_version_id(e1);
    load_rows(&f, e1, f.tenant_on, 3);
    enrich_destroy(e1);
    ASSERT_OK(sl_store_open(&st, f.store_path, 1000, &err), &err);
    ASSERT_OK(sl_store_tier_get(st, "paid", &tier, &err), &err);
    tier.reenrich_days = 0;
    ASSERT_OK(sl_store_tier_put(st, &tier, f.now_s, &err), &err);
    sl_store_close(st);
    put_db(&f, "GeoIP2-City-Test.mmdb", f.geo_path, f.now_s);
    ctx = job_create(&f, &settings);
    ASSERT_EQ_INT(run_job(&f, ctx, "", 0, &rows, cp, &has_cp), SCHED_DONE);
    ASSERT_EQ_INT(rows, 0);
    ASSERT_EQ_INT(count_version(&f, f.tenant_on, f.hour1, f.hour2 + 3600, v1), 2 * PER_HOUR);
    job_destroy(ctx, settings);
    fixture_fini(&f);
}

/* A city database that does not load: the job fails and rewrites nothing. */
static void test_reenrich_refuses_broken_data(void)
{
    struct fixture f;
    struct enrich_settings es = {.asn_db = "", .crawler_patterns = "", .ua_cache_entries = 100};
    struct enrich *e1 = NULL;
    struct sl_err err;
    void *ctx, *settings;
    char cp[SL_STORE_CHECKPOINT_MAX];
    bool has_cp;
    int64_t rows = -1;
    uint32_t v1;

    fixture_init(&f, "broken");
    put_db(&f, "GeoIP2-City-Test.mmdb", f.geo_path, f.now_s - 600);
    ASSERT_OK(enrich_create(&es, f.geo_path, NULL, f.now_s, &e1, &err), &err);
    v1 = enrich_version_id(e1);
    load_rows(&f, e1, f.tenant_on, 4);
    enrich_destroy(e1);
    put_db(&f, "GeoIP2-City-Test-Invalid-Node-Count.mmdb", f.geo_path, f.now_s);
    ctx = job_create(&f, &settings);
    g_expect_failure = true;
    ASSERT_EQ_INT(run_job(&f, ctx, "", 0, &rows, cp, &has_cp), SCHED_FAILED);
    g_expect_failure = false;
    ASSERT_CONTAINS(g_last_error, "does not load");
    ASSERT_EQ_INT(rows, 0);
    ASSERT_EQ_INT(count_version(&f, f.tenant_on, f.hour1, f.hour2 + 3600, v1), 2 * PER_HOUR);
    ASSERT_EQ_INT(test_ch_int(f.ch, "SELECT count() FROM %s.events FINAL WHERE city = 'London'",
                              f.database), 2 * PER_HOUR / 3);
    job_destroy(ctx, settings);
    fixture_fini(&f);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_reenrich_upgrades_rows_after_the_database_changes),
        TEST_CASE(test_reenrich_respects_zero_days),
        TEST_CASE(test_reenrich_refuses_broken_data),
        {NULL, NULL},
    };

    return test_main(argc, argv, cases);
}

/*
 * Tests the compression job (workers/compression/) and `sluice restore` against the real
 * ClickHouse server (SLUICE_TEST_CLICKHOUSE_URL). Tenants on the free tier (compress after
 * 24 h) and the paid tier (never) have events over five days, some delivered twice:
 *   - only the free tenant's days that ended 24 h ago are compressed; rollup totals are the
 *     same before and after; the cold parts hold the raw rows; raw rows are gone; every
 *     delete has one audit row; running again changes nothing; late events make a second
 *     part; `sluice restore` brings back exactly the original rows (compared column by
 *     column) and restoring twice counts nothing twice;
 *   - a cold file corrupted before verification fails the run loudly and deletes nothing
 *     of that tenant (whose later days wait too), while another tenant is compressed;
 *     one corrupted in cold storage later is refused by `sluice restore` (exit 1, nothing
 *     loaded);
 *   - a run stopped after verification, before the delete, is finished by a new worker
 *     without a second audit row or double counting;
 *   - an hourly rollup that lost events is refilled from the raw rows before the delete (on
 *     merged rows, so the export's plain path is compared with the original rows too);
 *   - kill -9 of a real sluice-scheduler in the middle of the job, then a new one: every
 *     day is deleted and audited once, in one part, and restore gives back every row.
 * Each case works in a database of its own (sluice_test_compression_<case>_<pid>) and drops
 * it.
 */
#include <sqlite3.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "ch.h"
#include "cold.h"
#include "compress.h"
#include "compress_int.h"
#include "daemon.h"
#include "metrics.h"
#include "schema.h"
#include "store.h"
#include "store_cold.h"
#include "test.h"

#define DAY0 INT64_C(1795132800)            /* 2026-11-20T00:00:00Z */
#define NOW (DAY0 + 4 * 86400 + 12 * 3600)  /* 2026-11-24T12:00:00Z */
#define PER_DAY 200

struct fixture {
    char db[128];
    char *dir;
    char *db_path;
    char *cold;
    char env_url[1024];
    char env_db[256];
    char env_cold[1024];
    struct sl_ch_settings chs;
    struct sl_cfg_section chsec;
    struct sl_ch *ch;
    struct sl_store *st;
    struct compress_settings ws;
    struct sl_cfg_section wsec;
    struct sl_metrics *metrics;
    struct sl_tenant free_t;
    struct sl_tenant paid_t;
    char cols[COMPRESS_COLD_COLUMNS_MAX];
    int64_t run_id;
    int64_t day0; /* the first second of insert_day's day 0 */
    atomic_int stop;
};

/* Replaces every "{db}" (identifier), "{dbs}" (string), "{free}" and "{paid}" in sql (the
 * tenant ids are plain). */
static char *expand(struct fixture *f, const char *sql)
{
    struct sl_ch_buf b;
    const char *p = sql;

    sl_ch_buf_init(&b, 1 << 20);
    while (*p != '\0') {
        if (strncmp(p, "{dbs}", 5) == 0) {
            ASSERT_OK(sl_ch_quote(&b, f->db, strlen(f->db)), NULL);
            p += 5;
        }
        else if (strncmp(p, "{db}", 4) == 0) {
            ASSERT_OK(sl_ch_quote_ident(&b, f->db, strlen(f->db)), NULL);
            p += 4;
        }
        else if (strncmp(p, "{free}", 6) == 0 || strncmp(p, "{paid}", 6) == 0) {
            const char *id = p[1] == 'f' ? f->free_t.id : f->paid_t.id;

            ASSERT_OK(sl_ch_quote(&b, id, strlen(id)), NULL);
            p += 6;
        }
        else {
            ASSERT_OK(sl_ch_buf_append(&b, p, 1), NULL);
            p++;
        }
    }
    return b.data;
}

static char *query(struct fixture *f, const char *sql)
{
    struct sl_ch_result res = {0};
    char *text = expand(f, sql);
    struct sl_err err;

    if (sl_ch_query(f->ch, text, &res, &err) != 0) {
        TEST_FAIL("%s: %s", text, err.msg);
    }
    sl_free(text);
    return res.body;
}

static int64_t query_int(struct fixture *f, const char *sql)
{
    char *body = query(f, sql);
    int64_t v = (int64_t)strtoll(body, NULL, 10);

    sl_free(body);
    return v;
}

static void exec_sql(struct fixture *f, const char *sql)
{
    char *text = expand(f, sql);
    struct sl_err err;

    if (sl_ch_exec(f->ch, text, &err) != 0) {
        TEST_FAIL("%s: %s", text, err.msg);
    }
    sl_free(text);
}

static int64_t store_int(struct fixture *f, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    int64_t v = -1;

    ASSERT_EQ_INT(sqlite3_open(f->db_path, &db), SQLITE_OK);
    ASSERT_EQ_INT(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        v = sqlite3_column_int64(stmt, 0);
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return v;
}

static void fixture_open(struct fixture *f, const char *tag)
{
    const char *url = test_env_require("SLUICE_TEST_CLICKHOUSE_URL");
    char *env[3] = {f->env_url, f->env_db, NULL};
    char *wenv[2] = {f->env_cold, NULL};
    struct sl_ch_settings nodb;
    struct sl_ch *ch = NULL;
    struct sl_err err;

    memset(f, 0, sizeof(*f));
    snprintf(f->db, sizeof(f->db), "sluice_test_compression_%s_%d", tag, (int)getpid());
    snprintf(f->env_url, sizeof(f->env_url), "SLUICE_CLICKHOUSE_URL=%s", url);
    snprintf(f->env_db, sizeof(f->env_db), "SLUICE_CLICKHOUSE_DATABASE=%s", f->db);
    f->chsec = SL_CFG_SECTION("clickhouse", sl_ch_cfg_opts, sl_ch_cfg_n_opts, &f->chs);
    ASSERT_OK(sl_cfg_load(&f->chsec, 1, NULL, env, &err), &err);
    nodb = f->chs;
    nodb.database = NULL;
    ASSERT_OK(sl_ch_create(&ch, &nodb, &err), &err);
    ASSERT_OK(ingest_schema_apply(ch, f->db, &err), &err);
    sl_ch_destroy(ch);
    ASSERT_OK(sl_ch_create(&f->ch, &f->chs, &err), &err);
    ASSERT_OK(compress_sql_columns(f->ch, f->db, f->cols, sizeof(f->cols), &err), &err);

    f->dir = test_tmpdir();
    f->db_path = test_path(f->dir, "sluice.db");
    f->cold = test_path(f->dir, "cold");
    ASSERT_OK(sl_store_open(&f->st, f->db_path, 5000, &err), &err);
    ASSERT_OK(sl_store_tenant_create(f->st, "free-co", "free", NOW - 86400 * 30, &f->free_t,
                                     &err), &err);
    ASSERT_OK(sl_store_tenant_create(f->st, "paid-co", "paid", NOW - 86400 * 30, &f->paid_t,
                                     &err), &err);
    snprintf(f->env_cold, sizeof(f->env_cold), "SLUICE_COLD_DIR=%s", f->cold);
    f->wsec = SL_CFG_SECTION("compression", compress_worker.opts, compress_worker.n_opts,
                             &f->ws);
    ASSERT_OK(sl_cfg_load(&f->wsec, 1, NULL, wenv, &err), &err);
    ASSERT_OK(sl_metrics_create(&f->metrics), NULL);
    f->day0 = DAY0;
}

static void fixture_close(struct fixture *f)
{
    exec_sql(f, "DROP DATABASE IF EXISTS {db}");
    sl_ch_destroy(f->ch);
    sl_cfg_fini(&f->chsec, 1);
    sl_cfg_fini(&f->wsec, 1);
    sl_store_close(f->st);
    sl_metrics_destroy(f->metrics);
    test_rmtree(f->dir);
    free(f->dir);
    free(f->db_path);
    free(f->cold);
}

static struct compress_ctx *worker_create(struct fixture *f)
{
    struct sched_worker_env env = {.store = NULL, .ch = &f->chs, .metrics = f->metrics};
    void *ctx = NULL;
    struct sl_err err;

    ASSERT_OK(compress_worker.create(&f->ws, &env, &ctx, &err), &err);
    return ctx;
}

/* One run of the job at NOW (plus offset_s); returns the outcome, run filled. */
static enum sched_outcome run_once(struct fixture *f, struct compress_ctx *c,
                                   struct sched_run *run)
{
    memset(run, 0, sizeof(*run));
    run->job = "compression";
    run->run_id = ++f->run_id;
    run->slot_s = NOW + f->run_id;
    run->kind = "manual";
    run->now_s = NOW;
    run->store = f->st;
    run->checkpoint = "";
    run->_stop = &f->stop;
    sl_err_clear(&run->err);
    return compress_worker.run(c, run);
}

/*
 * Inserts n events a day of tenant (a {free}/{paid} marker) on n_days days from `day`
 * (0 = f->day0), spread over the hours, with types, paths, countries, users and sessions
 * varying; name tags them. A quarter of them is delivered again with a higher version.
 */
static void insert_days(struct fixture *f, const char *tenant, int day, int n_days, int n,
                        const char *name)
{
    char sql[4096];
    struct sl_ch_buf sel;
    const char *p = f->cols;
    long long start = (long long)(f->day0 + day * 86400);

    snprintf(sql, sizeof(sql),
             "INSERT INTO {db}.events (id, tenant_id, type, name, ts, ts_ms, received_at, "
             "session_id, anonymous_id, user_id, properties, user_agent, ip, url, path, "
             "severity, flags, country_code, country, city, latitude, longitude, asn, "
             "browser, os, device, is_bot, enrichment_version, version) "
             "SELECT generateUUIDv4(), %s, ['pageview', 'click', 'custom', 'log'][number %% 4 "
             "+ 1], '%s', toDateTime(%lld + (number %% %d) * 86400 + (intDiv(number, %d) * "
             "7919) %% 86400) AS t, number %% 1000, t + 2, concat('s', toString(number "
             "%% 13)), concat('a', toString(number %% 31)), if(number %% 3 = 0, concat('u', "
             "toString(number %% 7)), ''), concat('{\"n\":', toString(number), ',\"q\":\"a\\\\"
             "nb\"}'), 'Mozilla/5.0', concat('198.51.100.', toString(number %% 250)), "
             "concat('https://x.test/p', toString(number %% 5)), concat('/p', toString(number "
             "%% 5)), if(number %% 4 = 3, 'error', ''), ['x', 'y'], ['FR', 'DE', ''][number "
             "%% 3 + 1], 'France', 'Paris', 48.8566 + number / 1000, 2.3522, 3215, 'Firefox', "
             "'Linux', 'Other', 0, 2, 1000 + number FROM system.numbers LIMIT %d",
             tenant, name, start, n_days, n_days, n * n_days);
    exec_sql(f, sql);
    /* A redelivery of a quarter of them, with a higher version. */
    sl_ch_buf_init(&sel, 1 << 16);
    while (*p != '\0') {
        size_t len = strcspn(p, ",");

        if (p != f->cols) {
            ASSERT_OK(sl_ch_buf_append_str(&sel, ", "), NULL);
        }
        if (len == 7 && strncmp(p, "version", 7) == 0) {
            ASSERT_OK(sl_ch_buf_append_str(&sel, "version + 1"), NULL);
        }
        else {
            ASSERT_OK(sl_ch_buf_append(&sel, p, len), NULL);
        }
        p += len;
        p += *p == ',';
    }
    snprintf(sql, sizeof(sql), "INSERT INTO {db}.events SELECT %s FROM {db}.events WHERE "
             "tenant_id = %s AND name = '%s' AND ts >= toDateTime(%lld) AND ts < "
             "toDateTime(%lld) AND cityHash64(toString(id)) %% 4 = 0", sel.data, tenant, name,
             start, start + n_days * 86400LL);
    exec_sql(f, sql);
    sl_ch_buf_fini(&sel);
}

/* Rollup totals per tenant and hour (and day), as text. */
static char *rollups(struct fixture *f)
{
    char *h = query(f, "SELECT tenant_id, hour, uniqExactMerge(events), uniqIfMerge(users), "
                       "uniqIfMerge(sessions) FROM {db}.events_hourly GROUP BY tenant_id, hour "
                       "ORDER BY tenant_id, hour FORMAT TabSeparated");
    char *d = query(f, "SELECT tenant_id, day, uniqExactMerge(events), uniqIfMerge(users), "
                       "uniqIfMerge(sessions) FROM {db}.events_daily GROUP BY tenant_id, day "
                       "ORDER BY tenant_id, day FORMAT TabSeparated");
    char *both = NULL;

    ASSERT_TRUE(asprintf(&both, "%s--\n%s", h, d) > 0);
    sl_free(h);
    sl_free(d);
    return both;
}

static void expect_rollups(struct fixture *f, const char *want)
{
    char *got = rollups(f);

    if (strcmp(got, want) != 0) {
        TEST_FAIL("rollups changed\n--- got:\n%s--- want:\n%s", got, want);
    }
    free(got);
}

/* Rows of the free tenant in events (FINAL) that differ from the snapshot `orig`, in
 * either direction, compared on every column. */
static int64_t differing_rows(struct fixture *f)
{
    char sql[16384];
    struct sl_ch_buf cols;

    sl_ch_buf_init(&cols, 1 << 16);
    ASSERT_OK(compress_sql_column_list(&cols, f->cols), NULL);
    snprintf(sql, sizeof(sql),
             "SELECT count() FROM (SELECT %s, count() AS c FROM (SELECT %s FROM {db}.orig "
             "UNION ALL SELECT %s FROM {db}.events FINAL WHERE tenant_id = {free}) GROUP BY %s "
             "HAVING c != 2) FORMAT TabSeparated",
             cols.data, cols.data, cols.data, cols.data);
    sl_ch_buf_fini(&cols);
    return query_int(f, sql);
}

/* Runs the built sluice with f's settings; returns its stdout then stderr (caller frees). */
static char *run_sluice(struct fixture *f, const char *const *args, int want_status)
{
    char *bin = test_bin("sluice");
    char env_db[1100];
    char *env[] = {f->env_url, f->env_db, f->env_cold, env_db, NULL};
    char *argv[16];
    struct test_proc p;
    char *out;
    size_t n = 0;

    snprintf(env_db, sizeof(env_db), "SLUICE_DB=%s", f->db_path);
    argv[n++] = bin;
    for (; *args != NULL; args++) {
        argv[n++] = (char *)*args;
    }
    argv[n] = NULL;
    test_proc_run(&p, argv, env, NULL);
    if (p.status != want_status) {
        TEST_FAIL("sluice exited %d, want %d\nstdout: %s\nstderr: %s", p.status, want_status,
                  p.out, p.err);
    }
    ASSERT_TRUE(asprintf(&out, "%s%s", p.out, p.err) > 0);
    test_proc_fini(&p);
    free(bin);
    return out;
}

static void test_compression_round_trip(void)
{
    struct fixture f;
    struct compress_ctx *c;
    struct sched_run run;
    struct compress_cold_part *parts = NULL;
    size_t n = 0;
    char *before, *before_late, *out;
    struct sl_cold_day day;
    struct sl_err err;
    const char *restore[] = {"--json", "restore", "--tenant", "free-co", "--from",
                             "2026-11-20", "--to", "2026-11-22", NULL};

    fixture_open(&f, "roundtrip");
    insert_days(&f, "{free}", 0, 5, PER_DAY, "e");
    insert_days(&f, "{paid}", 0, 5, PER_DAY, "e");
    exec_sql(&f, "CREATE TABLE {db}.orig ENGINE = Memory AS SELECT * FROM {db}.events FINAL "
                 "WHERE tenant_id = {free}");
    ASSERT_EQ_INT(query_int(&f, "SELECT count() FROM {db}.orig"), 5 * PER_DAY);
    before = rollups(&f);

    c = worker_create(&f);
    ASSERT_EQ_INT(run_once(&f, c, &run), SCHED_DONE);
    ASSERT_EQ_INT(run.rows, 3 * PER_DAY);
    {
        char want[128];

        snprintf(want, sizeof(want), "last=%s/2026-11-22", f.free_t.id);
        ASSERT_EQ_STR(run._checkpoint, want);
    }
    /* Only the free tenant's days that ended 24 h before NOW are gone from the raw table. */
    ASSERT_EQ_INT(query_int(&f, "SELECT count() FROM {db}.events WHERE tenant_id = {free} AND "
                                "ts < toDateTime(1795392000)"), 0);
    ASSERT_EQ_INT(query_int(&f, "SELECT uniqExact(id) FROM {db}.events WHERE tenant_id = "
                                "{free}"), 2 * PER_DAY);
    ASSERT_EQ_INT(query_int(&f, "SELECT uniqExact(id) FROM {db}.events WHERE tenant_id = "
                                "{paid}"), 5 * PER_DAY);
    expect_rollups(&f, before);
    /* The cold parts hold the raw rows. */
    ASSERT_OK(compress_cold_list(f.cold, f.free_t.id, "2026-11-01", "2026-11-30", &parts, &n,
                                 &err), &err);
    ASSERT_EQ_INT(n, 3);
    for (size_t i = 0; i < n; i++) {
        ASSERT_EQ_INT(parts[i].m.rows, PER_DAY);
        ASSERT_EQ_INT(parts[i].m.part, 1);
        ASSERT_OK(compress_cold_verify(parts[i].dir, &parts[i].m, &err), &err);
        ASSERT_OK(sl_store_cold_get(f.st, f.free_t.id, parts[i].m.day, &day, &err), &err);
        ASSERT_EQ_STR(day.state, "deleted");
        ASSERT_EQ_STR(day.path, parts[i].dir);
        ASSERT_EQ_STR(day.sha256, parts[i].m.sha256);
    }
    ASSERT_EQ_STR(parts[0].m.day, "2026-11-20");
    ASSERT_EQ_STR(parts[2].m.day, "2026-11-22");
    sl_free(parts);
    ASSERT_EQ_INT(store_int(&f, "SELECT count(*) FROM deletion_audit WHERE job = "
                                "'compression' AND tbl = 'events' AND method = 'mutation'"), 3);
    ASSERT_EQ_INT(store_int(&f, "SELECT sum(rows) FROM deletion_audit"), 3 * PER_DAY);

    /* Again: nothing to do, nothing changes. */
    ASSERT_EQ_INT(run_once(&f, c, &run), SCHED_DONE);
    ASSERT_EQ_INT(run.rows, 0);
    ASSERT_EQ_INT(store_int(&f, "SELECT count(*) FROM deletion_audit"), 3);
    ASSERT_EQ_INT(store_int(&f, "SELECT sum(parts) FROM cold_exports"), 3);
    expect_rollups(&f, before);

    /* Late events for a compressed day make a second part of it. */
    insert_days(&f, "{free}", 1, 1, 10, "late");
    exec_sql(&f, "INSERT INTO {db}.orig SELECT * FROM {db}.events FINAL WHERE tenant_id = "
                 "{free} AND name = 'late'");
    before_late = rollups(&f);
    ASSERT_EQ_INT(run_once(&f, c, &run), SCHED_DONE);
    ASSERT_EQ_INT(run.rows, 10);
    ASSERT_OK(sl_store_cold_get(f.st, f.free_t.id, "2026-11-21", &day, &err), &err);
    ASSERT_EQ_INT(day.parts, 2);
    ASSERT_EQ_INT(day.rows, PER_DAY + 10);
    ASSERT_EQ_STR(day.state, "deleted");
    ASSERT_OK(compress_cold_list(f.cold, f.free_t.id, "2026-11-21", "2026-11-21", &parts, &n,
                                 &err), &err);
    ASSERT_EQ_INT(n, 2);
    ASSERT_EQ_INT(parts[1].m.rows, 10);
    sl_free(parts);
    expect_rollups(&f, before_late);
    ASSERT_EQ_INT(query_int(&f, "SELECT count() FROM {db}.events WHERE tenant_id = {free} AND "
                                "ts < toDateTime(1795392000)"), 0);

    /* Restore brings back exactly the original rows, every column, and counts once. */
    out = run_sluice(&f, restore, 0);
    ASSERT_CONTAINS(out, "\"rows\":610");
    ASSERT_CONTAINS(out, "{\"day\":\"2026-11-21\",\"parts\":2,\"rows\":210}");
    free(out);
    ASSERT_EQ_INT(query_int(&f, "SELECT uniqExact(id) FROM {db}.events WHERE tenant_id = "
                                "{free}"), 5 * PER_DAY + 10);
    ASSERT_EQ_INT(differing_rows(&f), 0);
    expect_rollups(&f, before_late);
    ASSERT_OK(sl_store_cold_get(f.st, f.free_t.id, "2026-11-20", &day, &err), &err);
    ASSERT_EQ_STR(day.state, "restored");
    /* Twice: the same rows, nothing counted twice. */
    out = run_sluice(&f, restore, 0);
    free(out);
    ASSERT_EQ_INT(query_int(&f, "SELECT uniqExact(id) FROM {db}.events WHERE tenant_id = "
                                "{free}"), 5 * PER_DAY + 10);
    ASSERT_EQ_INT(differing_rows(&f), 0);
    expect_rollups(&f, before_late);
    /* Restored days stay raw for the hold period. */
    ASSERT_EQ_INT(run_once(&f, c, &run), SCHED_DONE);
    ASSERT_EQ_INT(run.rows, 0);
    ASSERT_EQ_INT(query_int(&f, "SELECT uniqExact(id) FROM {db}.events WHERE tenant_id = "
                                "{free} AND ts < toDateTime(1795392000)"), 3 * PER_DAY + 10);

    compress_worker.destroy(c);
    free(before);
    free(before_late);
    fixture_close(&f);
}

/* Hook: flips one byte in the middle of the part just written (only of the tenant
 * `user` names, when not NULL). */
static void corrupt_part(void *user, const char *dir, const char *file)
{
    char path[2 * COMPRESS_COLD_PATH_MAX];
    struct stat sb;
    unsigned char b;
    int fd;

    if (user != NULL && strstr(dir, (const char *)user) == NULL) {
        return;
    }
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    fd = open(path, O_RDWR);
    ASSERT_TRUE(fd >= 0);
    ASSERT_TRUE(fstat(fd, &sb) == 0);
    ASSERT_EQ_INT(pread(fd, &b, 1, sb.st_size / 2), 1);
    b ^= 0xff;
    ASSERT_EQ_INT(pwrite(fd, &b, 1, sb.st_size / 2), 1);
    close(fd);
}

static void test_compression_failed_verification_deletes_nothing(void)
{
    struct fixture f;
    struct compress_ctx *c;
    struct sched_run run;
    struct sl_cold_day day;
    struct compress_cold_part *parts = NULL;
    size_t n = 0;
    struct sl_tenant other;
    char *before, *out;
    char sql[1024];
    struct sl_err err;
    const char *restore[] = {"restore", "--tenant", "free-co", "--from", "2026-11-20", "--to",
                             "2026-11-20", NULL};

    fixture_open(&f, "verifyfail");
    insert_days(&f, "{free}", 0, 2, PER_DAY, "e");
    /* Another free tenant, whose compression is not disturbed by the first one's failure. */
    ASSERT_OK(sl_store_tenant_create(f.st, "free-other", "free", NOW - 86400, &other, &err),
              &err);
    snprintf(sql, sizeof(sql), "INSERT INTO {db}.events (id, tenant_id, type, ts, version) "
             "SELECT generateUUIDv4(), '%s', 'pageview', toDateTime(%lld + number * 60), 1 "
             "FROM system.numbers LIMIT %d", other.id, (long long)DAY0, PER_DAY);
    exec_sql(&f, sql);
    before = rollups(&f);
    c = worker_create(&f);
    c->hooks.after_export = corrupt_part;
    c->hooks.user = f.free_t.id;
    ASSERT_EQ_INT(run_once(&f, c, &run), SCHED_FAILED);
    ASSERT_CONTAINS(run.err.msg, "checksum mismatch");
    ASSERT_CONTAINS(run.err.msg, "nothing deleted");
    ASSERT_CONTAINS(run.err.msg, "2026-11-20");
    ASSERT_CONTAINS(run.err.msg, f.free_t.id);
    /* The failed tenant keeps every raw event, of the failed day and of its next one. */
    ASSERT_EQ_INT(query_int(&f, "SELECT uniqExact(id) FROM {db}.events WHERE tenant_id = "
                                "{free}"), 2 * PER_DAY);
    ASSERT_EQ_INT(sl_store_cold_get(f.st, f.free_t.id, "2026-11-21", &day, &err),
                  SL_ENOTFOUND);
    /* The other tenant was compressed all the same. */
    ASSERT_EQ_INT(run.rows, PER_DAY);
    snprintf(sql, sizeof(sql), "SELECT count() FROM {db}.events WHERE tenant_id = '%s'",
             other.id);
    ASSERT_EQ_INT(query_int(&f, sql), 0);
    ASSERT_EQ_INT(store_int(&f, "SELECT count(*) FROM deletion_audit WHERE tenant_id IN "
                                "(SELECT id FROM tenants WHERE name = 'free-other')"), 1);
    ASSERT_EQ_INT(query_int(&f, "SELECT count() FROM system.mutations WHERE database = "
                                "{dbs} AND position(command, {free}) > 0"), 0);
    ASSERT_OK(sl_store_cold_get(f.st, f.free_t.id, "2026-11-20", &day, &err), &err);
    ASSERT_EQ_STR(day.state, "exported");
    ASSERT_EQ_INT(store_int(&f, "SELECT count(*) FROM deletion_audit"), 1);
    expect_rollups(&f, before);

    /* With the cause gone the next run writes the part again and finishes. */
    c->hooks.after_export = NULL;
    ASSERT_EQ_INT(run_once(&f, c, &run), SCHED_DONE);
    ASSERT_EQ_INT(run.rows, 2 * PER_DAY);
    ASSERT_EQ_INT(query_int(&f, "SELECT count() FROM {db}.events WHERE tenant_id = {free}"), 0);
    ASSERT_OK(sl_store_cold_get(f.st, f.free_t.id, "2026-11-20", &day, &err), &err);
    ASSERT_EQ_STR(day.state, "deleted");
    ASSERT_EQ_INT(day.parts, 1);
    ASSERT_EQ_INT(day.rows, PER_DAY);
    ASSERT_EQ_INT(store_int(&f, "SELECT count(*) FROM deletion_audit"), 3);
    expect_rollups(&f, before);

    /* A part damaged in cold storage is refused by restore, which then loads nothing. */
    ASSERT_OK(compress_cold_list(f.cold, f.free_t.id, "2026-11-20", "2026-11-20", &parts, &n,
                                 &err), &err);
    ASSERT_EQ_INT(n, 1);
    corrupt_part(NULL, parts[0].dir, parts[0].m.file);
    sl_free(parts);
    out = run_sluice(&f, restore, 1);
    ASSERT_CONTAINS(out, "checksum mismatch");
    ASSERT_CONTAINS(out, "nothing loaded");
    free(out);
    ASSERT_EQ_INT(query_int(&f, "SELECT count() FROM {db}.events WHERE tenant_id = {free}"), 0);
    compress_worker.destroy(c);
    free(before);
    fixture_close(&f);
}

/* Hook: asks the run to stop, as a shutdown or a lost lease would. */
static void stop_run(void *user, const char *tenant_id, const char *day)
{
    struct fixture *f = user;

    (void)tenant_id;
    (void)day;
    atomic_store(&f->stop, 1);
}

static void test_compression_resumes_after_stop_before_delete(void)
{
    struct fixture f;
    struct compress_ctx *c;
    struct sched_run run;
    struct sl_cold_day day;
    char *before;
    struct sl_err err;

    fixture_open(&f, "resume");
    insert_days(&f, "{free}", 0, 2, PER_DAY, "e");
    before = rollups(&f);
    c = worker_create(&f);
    c->hooks.before_delete = stop_run;
    c->hooks.user = &f;
    ASSERT_EQ_INT(run_once(&f, c, &run), SCHED_RETRY);
    ASSERT_CONTAINS(run.err.msg, "verified");
    ASSERT_OK(sl_store_cold_get(f.st, f.free_t.id, "2026-11-20", &day, &err), &err);
    ASSERT_EQ_STR(day.state, "verified");
    ASSERT_EQ_INT(query_int(&f, "SELECT uniqExact(id) FROM {db}.events WHERE tenant_id = "
                                "{free}"), 2 * PER_DAY);
    /* A new worker (a restarted scheduler) finishes the verified part, then the rest. */
    compress_worker.destroy(c);
    atomic_store(&f.stop, 0);
    c = worker_create(&f);
    ASSERT_EQ_INT(run_once(&f, c, &run), SCHED_DONE);
    ASSERT_EQ_INT(run.rows, 2 * PER_DAY);
    ASSERT_EQ_INT(query_int(&f, "SELECT count() FROM {db}.events WHERE tenant_id = {free}"), 0);
    ASSERT_EQ_INT(store_int(&f, "SELECT count(*) FROM deletion_audit"), 2);
    ASSERT_EQ_INT(store_int(&f, "SELECT sum(rows) FROM deletion_audit"), 2 * PER_DAY);
    ASSERT_EQ_INT(store_int(&f, "SELECT sum(parts) FROM cold_exports WHERE state = 'deleted'"),
                  2);
    expect_rollups(&f, before);
    compress_worker.destroy(c);
    free(before);
    fixture_close(&f);
}

/* Polls sql until it answers want, for at most 60 s (a mutation finishing). */
static void wait_int(struct fixture *f, const char *sql, int64_t want)
{
    long deadline = test_now_ms() + 60000;

    while (query_int(f, sql) != want) {
        if (test_now_ms() > deadline) {
            TEST_FAIL("%s did not reach %lld", sql, (long long)want);
        }
        poll(NULL, 0, 50);
    }
}

static void test_compression_refills_a_short_rollup(void)
{
    struct fixture f;
    struct compress_ctx *c;
    struct sched_run run;
    char *before, *out;
    const char *restore[] = {"restore", "--tenant", "free-co", "--from", "2026-11-20", "--to",
                             "2026-11-20", NULL};

    fixture_open(&f, "refill");
    insert_days(&f, "{free}", 0, 1, PER_DAY, "e");
    /* Merged: no copies left, so the export takes its plain path (no IN set). */
    exec_sql(&f, "OPTIMIZE TABLE {db}.events FINAL");
    ASSERT_EQ_INT(query_int(&f, "SELECT count() FROM {db}.events"), PER_DAY);
    exec_sql(&f, "CREATE TABLE {db}.orig ENGINE = Memory AS SELECT * FROM {db}.events");
    before = rollups(&f);
    /* The hourly rollup loses the events of some hours (as when an insert's view failed). */
    exec_sql(&f, "ALTER TABLE {db}.events_hourly DELETE WHERE tenant_id = {free} AND "
                 "toHour(hour) < 6");
    wait_int(&f, "SELECT count() FROM {db}.events_hourly WHERE tenant_id = {free} AND "
                 "toHour(hour) < 6", 0);
    c = worker_create(&f);
    ASSERT_EQ_INT(run_once(&f, c, &run), SCHED_DONE);
    ASSERT_EQ_INT(run.rows, PER_DAY);
    ASSERT_TRUE(sl_metrics_counter_value(c->m_refilled) > 0);
    ASSERT_EQ_INT(query_int(&f, "SELECT count() FROM {db}.events WHERE tenant_id = {free}"), 0);
    expect_rollups(&f, before);
    out = run_sluice(&f, restore, 0);
    free(out);
    ASSERT_EQ_INT(differing_rows(&f), 0);
    expect_rollups(&f, before);
    compress_worker.destroy(c);
    free(before);
    fixture_close(&f);
}

#define KILL_DAYS 6
#define KILL_PER_DAY 300

/* Starts sluice-scheduler on f's store, ClickHouse database and cold folder, running
 * compression every second and nothing else. */
static void start_scheduler(struct fixture *f, struct test_daemon *d, char **env, char *port_env,
                            char *db_env)
{
    char *bin = test_bin("sluice-scheduler");

    snprintf(port_env, 64, "SLUICE_SCHEDULER_HTTP_ADDR=127.0.0.1:%d", test_free_port());
    snprintf(db_env, 1100, "SLUICE_DB=%s", f->db_path);
    env[0] = f->env_url;
    env[1] = f->env_db;
    env[2] = f->env_cold;
    env[3] = db_env;
    env[4] = port_env;
    env[5] = "SLUICE_SCHEDULER_LEASE_TTL_S=3";
    env[6] = "SLUICE_JOB_COMPRESSION_SCHEDULE=@every 1s";
    env[7] = "SLUICE_JOB_RETENTION_ENABLED=false";
    env[8] = "SLUICE_JOB_NOTIFY_ENABLED=false";
    env[9] = "SLUICE_JOB_BACKFILL_ENABLED=false";
    env[10] = "SLUICE_JOB_ENRICHMENT_ENABLED=false";
    env[11] = "SLUICE_JOB_STORE_MAINTENANCE_ENABLED=false";
    env[12] = NULL;
    test_daemon_start(d, bin, NULL, f->dir, env);
    test_daemon_wait_started(d, "scheduler", 20000);
    free(bin);
}

static void test_compression_kill9_scheduler_mid_job(void)
{
    struct fixture f;
    struct test_daemon d1, d2;
    char *env[13];
    char port_env[64], db_env[1100];
    char from[COMPRESS_COLD_DAY_MAX], to[COMPRESS_COLD_DAY_MAX];
    const char *restore[] = {"restore", "--tenant", "free-co", "--from", from, "--to", to,
                             NULL};
    char *before, *out;
    int64_t at_kill;
    long deadline;

    fixture_open(&f, "kill9");
    /* The scheduler runs on the wall clock: days from 7 to 2 days before today, all due. */
    f.day0 = (int64_t)time(NULL) / 86400 * 86400 - 7 * 86400;
    insert_days(&f, "{free}", 0, KILL_DAYS, KILL_PER_DAY, "e");
    exec_sql(&f, "CREATE TABLE {db}.orig ENGINE = Memory AS SELECT * FROM {db}.events FINAL "
                 "WHERE tenant_id = {free}");
    before = rollups(&f);
    compress_cold_day_of(f.day0, from);
    compress_cold_day_of(f.day0 + (KILL_DAYS - 1) * 86400, to);

    start_scheduler(&f, &d1, env, port_env, db_env);
    /* Kill it as soon as the first day is done, while it works on the next ones. */
    deadline = test_now_ms() + 60000;
    while ((at_kill = store_int(&f, "SELECT count(*) FROM deletion_audit")) < 1) {
        if (test_now_ms() > deadline) {
            test_daemon_read_log(&d1);
            TEST_FAIL("compression did not finish a day within 60 s:\n%s", d1.log);
        }
        poll(NULL, 0, 5);
    }
    ASSERT_EQ_INT(kill(d1.pid, SIGKILL), 0);
    test_daemon_wait_exit(&d1, 10000);
    at_kill = store_int(&f, "SELECT count(*) FROM deletion_audit");
    ASSERT_TRUE(at_kill < KILL_DAYS);

    /* A new scheduler takes the lease once it lapses and finishes the work. */
    start_scheduler(&f, &d2, env, port_env, db_env);
    deadline = test_now_ms() + 120000;
    while (store_int(&f, "SELECT count(*) FROM cold_exports WHERE state = 'deleted'") <
           KILL_DAYS) {
        if (test_now_ms() > deadline) {
            test_daemon_read_log(&d2);
            TEST_FAIL("compression did not finish after the restart:\n%s", d2.log);
        }
        poll(NULL, 0, 50);
    }
    test_daemon_stop(&d2, 30000);
    /* Every day deleted once, audited once, in one part; nothing counted twice or lost. */
    ASSERT_EQ_INT(query_int(&f, "SELECT count() FROM {db}.events WHERE tenant_id = {free}"), 0);
    ASSERT_EQ_INT(store_int(&f, "SELECT count(*) FROM deletion_audit"), KILL_DAYS);
    ASSERT_EQ_INT(store_int(&f, "SELECT count(DISTINCT cutoff_s) FROM deletion_audit"),
                  KILL_DAYS);
    ASSERT_EQ_INT(store_int(&f, "SELECT sum(rows) FROM deletion_audit"),
                  KILL_DAYS * KILL_PER_DAY);
    ASSERT_EQ_INT(store_int(&f, "SELECT sum(parts) FROM cold_exports"), KILL_DAYS);
    ASSERT_EQ_INT(store_int(&f, "SELECT sum(rows) FROM cold_exports"), KILL_DAYS * KILL_PER_DAY);
    expect_rollups(&f, before);
    out = run_sluice(&f, restore, 0);
    free(out);
    ASSERT_EQ_INT(differing_rows(&f), 0);
    expect_rollups(&f, before);
    test_daemon_fini(&d1);
    test_daemon_fini(&d2);
    free(before);
    fixture_close(&f);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_compression_round_trip),
        TEST_CASE(test_compression_failed_verification_deletes_nothing),
        TEST_CASE(test_compression_resumes_after_stop_before_delete),
        TEST_CASE(test_compression_refills_a_short_rollup),
        TEST_CASE(test_compression_kill9_scheduler_mid_job),
        {NULL, NULL},
    };

    return test_main(argc, argv, cases);
}

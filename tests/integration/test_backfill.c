/*
 * Tests workers/backfill/ chunks against the real ClickHouse server
 * (SLUICE_TEST_CLICKHOUSE_URL), in a database of each case's own with sluice's schema
 * (ingest/schema.c) and synthetic events inserted through the views. For each kind, a
 * tenant's rows are corrupted (bogus states added, real ones deleted), the range is
 * backfilled chunk by chunk, and the table then reads exactly as a from-scratch
 * aggregation of the raw events computed by query with plain aggregates (not the states);
 * other tenants' rows are untouched. Also: daily from the hourly rollup once a tenant's raw
 * events are gone (and the hourly kind keeps what it cannot recompute); re-running a
 * finished range changes nothing; a dry run writes nothing; readers running during chunks
 * never see a slice empty or doubled, while a writer keeps loading the same day for
 * another tenant, whose rows the catch-up keeps exact.
 *
 * The enrichment kind: never-enriched events of two tenants with public addresses of
 * MaxMind's test city database (../shared/testdata/geoip) and a browser's user agent
 * (uap-core's regexes.yaml from SLUICE_TEST_UAP_CORE_DIR) are re-enriched chunk by chunk:
 * country, city, browser and the current enrichment_version where they land, event counts
 * unchanged, the other tenant untouched, a re-run and a dry run writing nothing, and no data
 * (or data that does not load) refused with a clear error, also through the scheduler's
 * runner, which fails the job and completes it after `resume`.
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "backfill.h"
#include "ch.h"
#include "daemon.h"
#include "enrich.h"
#include "schema.h"
#include "store.h"
#include "test.h"
#include "worker.h"

#define DAY1 INT64_C(1795478400) /* 2026-11-24T00:00:00Z */
#define DAY2 (DAY1 + 86400)
#define SQL_MAX (1 << 20)

struct fixture {
    struct sl_ch_settings settings;
    struct sl_cfg_section sec;
    struct sl_ch *ch;
    char db[96];
    char url_env[1024];
};

static int64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct sl_ch *client(const struct fixture *f)
{
    struct sl_ch_settings settings = f->settings;
    struct sl_ch *ch = NULL;
    struct sl_err err;

    settings.database = NULL;
    ASSERT_OK(sl_ch_create(&ch, &settings, &err), &err);
    return ch;
}

static void fixture_open(struct fixture *f, const char *name)
{
    const char *url = test_env_require("SLUICE_TEST_CLICKHOUSE_URL");
    char *env[2] = {f->url_env, NULL};
    struct sl_err err;

    memset(f, 0, sizeof(*f));
    snprintf(f->db, sizeof(f->db), "sluice_test_backfill_%s_%d", name, (int)getpid());
    snprintf(f->url_env, sizeof(f->url_env), "SLUICE_CLICKHOUSE_URL=%s", url);
    f->sec = SL_CFG_SECTION("clickhouse", sl_ch_cfg_opts, sl_ch_cfg_n_opts, &f->settings);
    ASSERT_OK(sl_cfg_load(&f->sec, 1, NULL, env, &err), &err);
    f->ch = client(f);
    ASSERT_OK(ingest_schema_apply_mode(f->ch, f->db, INGEST_SCHEMA_PORTABLE, &err), &err);
}

static void fixture_close(struct fixture *f)
{
    char sql[256];
    struct sl_err err;

    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", f->db);
    ASSERT_OK(sl_ch_exec(f->ch, sql, &err), &err);
    sl_ch_destroy(f->ch);
    sl_cfg_fini(&f->sec, 1);
}

/* sql with every "{db}" replaced by the case's database, in a new buffer. */
static void expand(const struct fixture *f, const char *sql, struct sl_ch_buf *out)
{
    const char *p = sql;
    const char *mark;

    sl_ch_buf_init(out, SQL_MAX);
    while ((mark = strstr(p, "{db}")) != NULL) {
        ASSERT_OK(sl_ch_buf_append(out, p, (size_t)(mark - p)), NULL);
        ASSERT_OK(sl_ch_buf_append_str(out, f->db), NULL);
        p = mark + 4;
    }
    ASSERT_OK(sl_ch_buf_append_str(out, p), NULL);
}

static void exec_on(const struct fixture *f, struct sl_ch *ch, const char *sql)
{
    struct sl_ch_buf text;
    struct sl_err err;

    expand(f, sql, &text);
    if (sl_ch_exec(ch, text.data, &err) != 0) {
        TEST_FAIL("%s: %s", text.data, err.msg);
    }
    sl_ch_buf_fini(&text);
}

static void exec_db(struct fixture *f, const char *sql)
{
    exec_on(f, f->ch, sql);
}

/* The TabSeparated answer of sql (caller frees with sl_free). */
static char *query_on(const struct fixture *f, struct sl_ch *ch, const char *sql)
{
    struct sl_ch_buf text;
    struct sl_ch_result res = {0};
    struct sl_err err;

    expand(f, sql, &text);
    if (sl_ch_query(ch, text.data, &res, &err) != 0) {
        TEST_FAIL("%s: %s", text.data, err.msg);
    }
    sl_ch_buf_fini(&text);
    return res.body;
}

static char *query_db(struct fixture *f, const char *sql)
{
    return query_on(f, f->ch, sql);
}

/*
 * Inserts n synthetic events for tenant over [start_s, start_s + span_s) with ids
 * first_id.. (so a second call with the same ids is a redelivery) and the loader's version
 * (insert time, ms) `version`. Sessions, users, types, paths and dimensions vary with the
 * number.
 */
static void insert_events_on(const struct fixture *f, struct sl_ch *ch, const char *tenant,
                             int64_t first_id, int64_t n, int64_t start_s, int64_t span_s,
                             int64_t version)
{
    char sql[4096];

    snprintf(sql, sizeof(sql),
             "INSERT INTO {db}.events (id, tenant_id, type, name, ts, ts_ms, session_id, "
             "anonymous_id, user_id, path, severity, country_code, browser, os, device, "
             "version) SELECT toUUID(concat('00000000-0000-4000-8000-', "
             "substring(toString(1000000000000 + n), 2, 12))), '%s', "
             "arrayElement(['pageview', 'click', 'scroll', 'custom', 'log'], n %% 5 + 1), "
             "if(n %% 5 = 3, 'signup', ''), toDateTime(%lld + (n * 7919) %% %lld), "
             "toUInt16(n %% 1000), if(n %% 11 = 0, '', concat('s', toString(intDiv(n, 7) %% "
             "40))), concat('a', toString(n %% 97)), if(n %% 3 = 0, concat('u', toString(n %% "
             "17)), ''), concat('/p', toString(n %% 6)), if(n %% 5 = 4, "
             "arrayElement(['info', 'error'], n %% 2 + 1), ''), arrayElement(['FR', 'DE', "
             "'US'], n %% 3 + 1), arrayElement(['Chrome', 'Firefox'], n %% 2 + 1), 'Linux', "
             "'Desktop', %lld FROM (SELECT number + %lld AS n FROM system.numbers LIMIT %lld)",
             tenant, (long long)start_s, (long long)span_s, (long long)version,
             (long long)first_id, (long long)n);
    exec_on(f, ch, sql);
}

/* As insert_events_on, loaded "two days ago" by the loader's clock (events.version): a
 * settled day, which chunks verify against their staging table. */
static void insert_events(struct fixture *f, const char *tenant, int64_t first_id, int64_t n,
                          int64_t start_s, int64_t span_s)
{
    insert_events_on(f, f->ch, tenant, first_id, n, start_s, span_s,
                     wall_ms() - INT64_C(2) * 86400 * 1000);
}

/* Runs an ALTER ... DELETE (on the case's own tables) and waits for its mutation. */
static void mutate_and_wait(struct fixture *f, const char *sql)
{
    long deadline = test_now_ms() + 30000;
    char *left;

    exec_db(f, sql);
    for (;;) {
        left = query_db(f, "SELECT count() FROM system.mutations WHERE database = '{db}' "
                           "AND is_done = 0 FORMAT TabSeparated");
        if (strcmp(left, "0\n") == 0) {
            sl_free(left);
            return;
        }
        sl_free(left);
        if (test_now_ms() > deadline) {
            TEST_FAIL("mutation not done within 30 s: %s", sql);
        }
        poll(NULL, 0, 20);
    }
}

/* ---- from-scratch computations (plain aggregates over raw rows) and the tables ------- */

#define DIMS "type, name, path, severity, country_code, browser, os, device"

static char *scratch_rollup(struct fixture *f, const char *tenant, bool is_daily)
{
    char sql[2048];

    snprintf(sql, sizeof(sql),
             "SELECT %s AS t, " DIMS ", uniqExact(id), uniqIf(if(user_id != '', user_id, "
             "anonymous_id), user_id != '' OR anonymous_id != ''), uniqIf(session_id, "
             "session_id != '') FROM {db}.events WHERE tenant_id = '%s' GROUP BY t, " DIMS
             " ORDER BY t, " DIMS " FORMAT TabSeparated",
             is_daily ? "toDate(ts)" : "toStartOfHour(ts)", tenant);
    return query_db(f, sql);
}

static char *table_rollup(struct fixture *f, const char *tenant, bool is_daily)
{
    char sql[2048];

    snprintf(sql, sizeof(sql),
             "SELECT %s AS t, " DIMS ", uniqExactMerge(events), uniqIfMerge(users), "
             "uniqIfMerge(sessions) FROM {db}.%s WHERE tenant_id = '%s' GROUP BY t, " DIMS
             " ORDER BY t, " DIMS " FORMAT TabSeparated",
             is_daily ? "day" : "hour", is_daily ? "events_daily" : "events_hourly", tenant);
    return query_db(f, sql);
}

#define TS_MS "toUInt64(ts) * 1000 + ts_ms"

static char *scratch_sessions(struct fixture *f, const char *tenant)
{
    char sql[2048];

    snprintf(sql, sizeof(sql),
             "SELECT toDate(ts) AS d, session_id, min(" TS_MS "), max(" TS_MS "), "
             "uniqExact(id), uniqExactIf(id, type = 'pageview'), uniqExactIf(id, type IN "
             "('click', 'custom', 'identify')), argMin(path, (type != 'pageview', " TS_MS
             ", id)), argMax(path, (type = 'pageview', " TS_MS ", id)), max(user_id), "
             "argMin(anonymous_id, (" TS_MS ", id)) FROM {db}.events WHERE tenant_id = '%s' "
             "AND session_id != '' GROUP BY d, session_id ORDER BY d, session_id "
             "FORMAT TabSeparated",
             tenant);
    return query_db(f, sql);
}

static char *table_sessions(struct fixture *f, const char *tenant)
{
    char sql[2048];

    snprintf(sql, sizeof(sql),
             "SELECT day AS d, session_id, minMerge(start_ms), maxMerge(end_ms), "
             "uniqExactMerge(events), uniqExactIfMerge(pageviews), "
             "uniqExactIfMerge(interactions), argMinMerge(entry_path), argMaxMerge(exit_path), "
             "maxMerge(user_id), tupleElement(argMinMerge(first_context), 1) "
             "FROM {db}.sessions WHERE tenant_id = '%s' GROUP BY d, session_id "
             "ORDER BY d, session_id FORMAT TabSeparated",
             tenant);
    return query_db(f, sql);
}

/* Every row of a table as text, states included (hex), in key order. */
static char *dump(struct fixture *f, const char *table, const char *keys)
{
    char sql[1024];

    snprintf(sql, sizeof(sql), "SELECT count(), sum(cityHash64(*)) FROM (SELECT %s, "
             "finalizeAggregation(events) AS e FROM {db}.%s) FORMAT TabSeparated", keys, table);
    return query_db(f, sql);
}

static void expect_same(const char *what, char *got, char *want)
{
    if (strcmp(got, want) != 0) {
        TEST_FAIL("%s differs\n--- got:\n%.3000s\n--- want:\n%.3000s", what, got, want);
    }
    ASSERT_TRUE(strlen(want) > 0);
    sl_free(got);
    sl_free(want);
}

static void expect_differ(const char *what, char *got, char *other)
{
    if (strcmp(got, other) == 0) {
        TEST_FAIL("%s: reads the same as the right answer; the case checks nothing", what);
    }
    sl_free(got);
    sl_free(other);
}

/* As backfill below, with the enrichment data e (borrowed; may be NULL). */
static void backfill_with(struct fixture *f, const char *kind, const char *tenant,
                          int64_t from_s, int64_t to_s, int64_t chunk_s, bool is_dry_run,
                          struct enrich *e, struct backfill_chunk_result *total)
{
    const struct backfill_kind *k = backfill_kind_find(kind);
    struct backfill_chunk_opts opts = {.tag = "t", .catchup_margin_s = 600,
                                       .is_dry_run = is_dry_run, .enrich = e};
    struct sl_err err;

    ASSERT_TRUE(k != NULL);
    memset(total, 0, sizeof(*total));
    for (int64_t a = from_s; a < to_s; a += chunk_s) {
        struct backfill_chunk_result res;

        opts.now_s = wall_ms() / 1000;
        ASSERT_OK(backfill_chunk_run(f->ch, f->db, k, tenant, a, a + chunk_s, &opts, &res,
                                     &err), &err);
        total->rows_read += res.rows_read;
        total->rows_written += res.rows_written;
        total->rows_before += res.rows_before;
        snprintf(total->source, sizeof(total->source), "%s", res.source);
        total->is_kept = total->is_kept || res.is_kept;
    }
}

/* Backfills kind for tenant ("" = all) over [from_s, to_s) chunk by chunk; sums results. */
static void backfill(struct fixture *f, const char *kind, const char *tenant, int64_t from_s,
                     int64_t to_s, int64_t chunk_s, bool is_dry_run,
                     struct backfill_chunk_result *total)
{
    backfill_with(f, kind, tenant, from_s, to_s, chunk_s, is_dry_run, NULL, total);
}

/* Two tenants over two days, a third of the events delivered twice. */
static void load_two_tenants(struct fixture *f)
{
    insert_events(f, "tn_a", 0, 6000, DAY1, 2 * 86400);
    insert_events(f, "tn_a", 0, 2000, DAY1, 2 * 86400);
    insert_events(f, "tn_b", 100000, 4000, DAY1, 2 * 86400);
}

/* Adds bogus states to a rollup for tn_a on DAY1 and deletes its click rows there. */
static void corrupt_rollup(struct fixture *f, const char *table, const char *time_col,
                           const char *time_expr)
{
    char sql[2048];

    snprintf(sql, sizeof(sql),
             "INSERT INTO {db}.%s (tenant_id, %s, " DIMS ", events, users, sessions) "
             "SELECT 'tn_a', %s, 'pageview', '', '/bogus', '', 'ZZ', '', '', '', "
             "uniqExactState(generateUUIDv4()), uniqIfState(toString(number), toUInt8(1)), "
             "uniqIfState(toString(number), toUInt8(1)) FROM (SELECT number, number %% 24 AS "
             "h FROM system.numbers LIMIT 500) GROUP BY h",
             table, time_col, time_expr);
    exec_db(f, sql);
    snprintf(sql, sizeof(sql), "ALTER TABLE {db}.%s DELETE WHERE tenant_id = 'tn_a' AND "
             "type = 'click' AND toDate(%s) = toDate('2026-11-24')", table, time_col);
    mutate_and_wait(f, sql);
}

/* ---- cases --------------------------------------------------------------------------- */

static void test_backfill_hourly_equals_scratch(void)
{
    struct fixture f;
    struct backfill_chunk_result total;
    char *b_before;

    fixture_open(&f, "hourly");
    load_two_tenants(&f);
    expect_same("hourly as loaded", table_rollup(&f, "tn_a", false),
                scratch_rollup(&f, "tn_a", false));
    corrupt_rollup(&f, "events_hourly", "hour", "toDateTime(1795478400 + 3600 * h)");
    expect_differ("hourly corrupted", table_rollup(&f, "tn_a", false),
                  scratch_rollup(&f, "tn_a", false));
    b_before = table_rollup(&f, "tn_b", false);
    backfill(&f, "hourly", "tn_a", DAY1, DAY1 + 86400, 3600, false, &total);
    ASSERT_EQ_STR(total.source, "events");
    ASSERT_TRUE(total.rows_read >= 6000 / 2);
    ASSERT_TRUE(total.rows_written > 0);
    /* DAY2 was not corrupted; DAY1 is rebuilt: the whole tenant reads as from scratch. */
    expect_same("hourly after backfill", table_rollup(&f, "tn_a", false),
                scratch_rollup(&f, "tn_a", false));
    expect_same("the other tenant", table_rollup(&f, "tn_b", false), b_before);
    fixture_close(&f);
}

static void test_backfill_daily_equals_scratch(void)
{
    struct fixture f;
    struct backfill_chunk_result total;
    char *b_before;

    fixture_open(&f, "daily");
    load_two_tenants(&f);
    corrupt_rollup(&f, "events_daily", "day", "toDate('2026-11-24')");
    b_before = table_rollup(&f, "tn_b", true);
    backfill(&f, "daily", "tn_a", DAY1, DAY2 + 86400, 86400, false, &total);
    ASSERT_EQ_STR(total.source, "events");
    expect_same("daily after backfill", table_rollup(&f, "tn_a", true),
                scratch_rollup(&f, "tn_a", true));
    expect_same("the other tenant", table_rollup(&f, "tn_b", true), b_before);
    fixture_close(&f);
}

static void test_backfill_sessions_equal_scratch(void)
{
    struct fixture f;
    struct backfill_chunk_result total;
    char *b_before;

    fixture_open(&f, "sessions");
    load_two_tenants(&f);
    exec_db(&f, "INSERT INTO {db}.sessions (tenant_id, day, session_id, start_ms, end_ms, "
                "events, pageviews, interactions, entry_path, exit_path, user_id, "
                "first_context) SELECT 'tn_a', toDate('2026-11-24'), 's1', minState(toUInt64(1)), "
                "maxState(toUInt64(99999999999999)), uniqExactState(generateUUIDv4()), "
                "uniqExactIfState(generateUUIDv4(), toUInt8(1)), uniqExactIfState("
                "generateUUIDv4(), toUInt8(1)), argMinState('/bogus', (toUInt8(0), toUInt64(0), "
                "generateUUIDv4())), argMaxState('/bogus', (toUInt8(1), toUInt64(1) * "
                "99999999999999, generateUUIDv4())), maxState('zzz'), argMinState(('x', '', '', "
                "'', '', '', '', '', '', '', ''), (toUInt64(0), generateUUIDv4())) "
                "FROM (SELECT number FROM system.numbers LIMIT 10)");
    mutate_and_wait(&f, "ALTER TABLE {db}.sessions DELETE WHERE tenant_id = 'tn_a' AND "
                        "session_id = 's2'");
    b_before = table_sessions(&f, "tn_b");
    backfill(&f, "sessions", "tn_a", DAY1, DAY2 + 86400, 86400, false, &total);
    expect_same("sessions after backfill", table_sessions(&f, "tn_a"),
                scratch_sessions(&f, "tn_a"));
    expect_same("the other tenant", table_sessions(&f, "tn_b"), b_before);
    fixture_close(&f);
}

/* Raw events gone (compressed away): daily comes from hourly; hourly keeps its rows. */
static void test_backfill_daily_from_hourly(void)
{
    struct fixture f;
    struct backfill_chunk_result total;
    char *want, *hourly_before, *hourly_c_before;

    fixture_open(&f, "fromhourly");
    insert_events(&f, "tn_c", 200000, 5000, DAY1, 86400);
    insert_events(&f, "tn_a", 0, 3000, DAY1, 86400);
    want = scratch_rollup(&f, "tn_c", true);
    mutate_and_wait(&f, "ALTER TABLE {db}.events DELETE WHERE tenant_id = 'tn_c'");
    corrupt_rollup(&f, "events_daily", "day", "toDate('2026-11-24')");
    exec_db(&f, "INSERT INTO {db}.events_daily (tenant_id, day, " DIMS ", events, users, "
                "sessions) SELECT 'tn_c', toDate('2026-11-24'), 'pageview', '', '/bogus', '', "
                "'', '', '', '', uniqExactState(generateUUIDv4()), uniqIfState('x', toUInt8(1)), "
                "uniqIfState('y', toUInt8(1)) FROM (SELECT number FROM system.numbers LIMIT 50)");
    expect_differ("daily corrupted", table_rollup(&f, "tn_c", true), sl_strdup(want));
    backfill(&f, "daily", "tn_c", DAY1, DAY1 + 86400, 86400, false, &total);
    ASSERT_EQ_STR(total.source, "hourly");
    expect_same("daily rebuilt from hourly", table_rollup(&f, "tn_c", true), sl_strdup(want));
    /* hourly has nothing to recompute from now: it keeps its rows. */
    hourly_before = dump(&f, "events_hourly", "tenant_id, hour, " DIMS);
    hourly_c_before = query_db(&f, "SELECT count(), sum(cityHash64(*)) FROM (SELECT tenant_id, "
                                   "hour, " DIMS ", finalizeAggregation(events) FROM "
                                   "{db}.events_hourly WHERE tenant_id = 'tn_c') "
                                   "FORMAT TabSeparated");
    backfill(&f, "hourly", "tn_c", DAY1, DAY1 + 7200, 3600, false, &total);
    ASSERT_TRUE(total.is_kept);
    ASSERT_EQ_STR(total.source, "none");
    expect_same("hourly kept", dump(&f, "events_hourly", "tenant_id, hour, " DIMS),
                sl_strdup(hourly_before));
    /* Every tenant at once: tn_a has raw rows, tn_c none. tn_a is rebuilt from them; tn_c,
     * outside the source, keeps its rows instead of losing them to the swap. */
    corrupt_rollup(&f, "events_daily", "day", "toDate('2026-11-24')");
    backfill(&f, "daily", "", DAY1, DAY1 + 86400, 86400, false, &total);
    ASSERT_EQ_STR(total.source, "events");
    expect_same("daily of tn_a, every tenant", table_rollup(&f, "tn_a", true),
                scratch_rollup(&f, "tn_a", true));
    expect_same("daily of tn_c kept, every tenant", table_rollup(&f, "tn_c", true),
                sl_strdup(want));
    backfill(&f, "hourly", "", DAY1, DAY1 + 86400, 86400, false, &total);
    expect_same("hourly of tn_a, every tenant", table_rollup(&f, "tn_a", false),
                scratch_rollup(&f, "tn_a", false));
    expect_same("hourly of tn_c kept, every tenant",
                query_db(&f, "SELECT count(), sum(cityHash64(*)) FROM (SELECT tenant_id, hour, "
                             DIMS ", finalizeAggregation(events) FROM {db}.events_hourly WHERE "
                             "tenant_id = 'tn_c') FORMAT TabSeparated"),
                sl_strdup(hourly_c_before));
    sl_free(hourly_before);
    sl_free(hourly_c_before);
    sl_free(want);
    fixture_close(&f);
}

/* A finished range backfilled again reads the same; a dry run changes nothing at all. */
static void test_backfill_rerun_and_dry_run(void)
{
    struct fixture f;
    struct backfill_chunk_result first, again, dry;
    char *after_first, *parts_before, *parts_after;

    fixture_open(&f, "rerun");
    load_two_tenants(&f);
    corrupt_rollup(&f, "events_hourly", "hour", "toDateTime(1795478400 + 3600 * h)");
    /* Dry run on the corrupted table: numbers, and not a byte written. */
    parts_before = query_db(&f, "SELECT name, rows FROM system.parts WHERE database = '{db}' "
                                "AND active ORDER BY table, name FORMAT TabSeparated");
    backfill(&f, "hourly", "tn_a", DAY1, DAY1 + 86400, 86400, true, &dry);
    parts_after = query_db(&f, "SELECT name, rows FROM system.parts WHERE database = '{db}' "
                               "AND active ORDER BY table, name FORMAT TabSeparated");
    ASSERT_EQ_STR(parts_after, parts_before);
    sl_free(parts_before);
    sl_free(parts_after);
    ASSERT_TRUE(dry.rows_written > 0);
    expect_same("no staging tables", query_db(&f, "SELECT count() FROM system.tables WHERE "
                                                 "database = '{db}' AND name LIKE '%backfill%' "
                                                 "FORMAT TabSeparated"),
                sl_strdup("0\n"));

    backfill(&f, "hourly", "tn_a", DAY1, DAY1 + 86400, 86400, false, &first);
    ASSERT_EQ_INT(first.rows_written, dry.rows_written);
    ASSERT_EQ_INT(first.rows_read, dry.rows_read);
    expect_same("hourly after backfill", table_rollup(&f, "tn_a", false),
                scratch_rollup(&f, "tn_a", false));
    after_first = table_rollup(&f, "tn_a", false);
    backfill(&f, "hourly", "tn_a", DAY1, DAY1 + 86400, 86400, false, &again);
    ASSERT_EQ_INT(again.rows_written, first.rows_written);
    ASSERT_EQ_INT(again.rows_read, first.rows_read);
    expect_same("after a second run", table_rollup(&f, "tn_a", false), after_first);
    expect_same("no staging tables left", query_db(&f, "SELECT count() FROM system.tables "
                                                      "WHERE database = '{db}' AND name LIKE "
                                                      "'%backfill%' FORMAT TabSeparated"),
                sl_strdup("0\n"));
    fixture_close(&f);
}

/* ---- concurrent readers and a live writer ---------------------------------------------- */

struct reader {
    struct fixture *f;
    atomic_int *stop;
    const char *want_a; /* either of two answers is fine (before / after) */
    const char *want_b;
    long reads;
    char bad[256];
};

static void *read_loop(void *arg)
{
    struct reader *r = arg;
    struct sl_ch *ch = client(r->f);

    while (atomic_load(r->stop) == 0 && r->bad[0] == '\0') {
        char *got = query_on(r->f, ch, "SELECT uniqExactMerge(events) FROM {db}.events_hourly "
                                       "WHERE tenant_id = 'tn_a' AND hour >= "
                                       "toDateTime(1795478400) AND hour < "
                                       "toDateTime(1795564800) FORMAT TabSeparated");

        if (strcmp(got, r->want_a) != 0 && strcmp(got, r->want_b) != 0) {
            snprintf(r->bad, sizeof(r->bad), "read %.40s, want %.40s or %.40s", got, r->want_a,
                     r->want_b);
        }
        r->reads++;
        sl_free(got);
    }
    sl_ch_destroy(ch);
    return NULL;
}

struct writer {
    struct fixture *f;
    atomic_int *stop;
    long batches;
};

/* Loads tn_b's events into the same day, batch after batch (the live loader). */
static void *write_loop(void *arg)
{
    struct writer *w = arg;
    struct sl_ch *ch = client(w->f);

    while (atomic_load(w->stop) == 0) {
        insert_events_on(w->f, ch, "tn_b", 500000 + w->batches * 100, 100, DAY1, 86400,
                         wall_ms());
        w->batches++;
    }
    sl_ch_destroy(ch);
    return NULL;
}

static void test_backfill_concurrent_reads_and_live_writes(void)
{
    struct fixture f;
    struct backfill_chunk_result total;
    struct reader r;
    struct writer w;
    pthread_t rt, wt;
    atomic_int stop;
    char *corrupt, *right;

    fixture_open(&f, "concurrent");
    load_two_tenants(&f);
    right = query_db(&f, "SELECT uniqExact(id) FROM {db}.events WHERE tenant_id = 'tn_a' AND "
                         "ts >= toDateTime(1795478400) AND ts < toDateTime(1795564800) "
                         "FORMAT TabSeparated");
    exec_db(&f, "INSERT INTO {db}.events_hourly (tenant_id, hour, " DIMS ", events, users, "
                "sessions) SELECT 'tn_a', toDateTime(1795478400 + 3600 * h), 'pageview', '', "
                "'/bogus', '', 'ZZ', '', '', '', uniqExactState(generateUUIDv4()), "
                "uniqIfState('x', toUInt8(1)), uniqIfState('y', toUInt8(1)) FROM (SELECT "
                "number, number % 24 AS h FROM system.numbers LIMIT 480) GROUP BY h");
    corrupt = query_db(&f, "SELECT uniqExactMerge(events) FROM {db}.events_hourly WHERE "
                           "tenant_id = 'tn_a' AND hour >= toDateTime(1795478400) AND hour < "
                           "toDateTime(1795564800) FORMAT TabSeparated");
    ASSERT_TRUE(strcmp(corrupt, right) != 0);

    /* Readers see the corrupted number or, chunk by chunk, more of the right one: every
     * read is the whole day, so allow the totals in between by checking per chunk below.
     * Here: a rebuild of already-right data, where every read must be the right number. */
    backfill(&f, "hourly", "tn_a", DAY1, DAY1 + 86400, 86400, false, &total);
    atomic_init(&stop, 0);
    memset(&r, 0, sizeof(r));
    r.f = &f;
    r.stop = &stop;
    r.want_a = right;
    r.want_b = right;
    memset(&w, 0, sizeof(w));
    w.f = &f;
    w.stop = &stop;
    ASSERT_EQ_INT(pthread_create(&rt, NULL, read_loop, &r), 0);
    ASSERT_EQ_INT(pthread_create(&wt, NULL, write_loop, &w), 0);
    for (int round = 0; round < 2; round++) {
        backfill(&f, "hourly", "tn_a", DAY1, DAY1 + 86400, 86400, false, &total);
        backfill(&f, "hourly", "tn_a", DAY1, DAY1 + 4 * 3600, 3600, false, &total);
    }
    atomic_store(&stop, 1);
    pthread_join(rt, NULL);
    pthread_join(wt, NULL);
    if (r.bad[0] != '\0') {
        TEST_FAIL("a reader saw the slice wrong during a chunk: %s", r.bad);
    }
    ASSERT_TRUE(r.reads > 0);
    ASSERT_TRUE(w.batches > 0);
    /* The live tenant lost nothing to the swaps: the catch-up put its new rows back. */
    expect_same("live tenant hourly", table_rollup(&f, "tn_b", false),
                scratch_rollup(&f, "tn_b", false));
    expect_same("backfilled tenant hourly", table_rollup(&f, "tn_a", false),
                scratch_rollup(&f, "tn_a", false));
    sl_free(corrupt);
    sl_free(right);
    fixture_close(&f);
}

/* ---- the enrichment kind ------------------------------------------------------------- */

#define CHROME_UA "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like " \
                  "Gecko) Chrome/120.0.0.0 Safari/537.36"

/*
 * Inserts n never-enriched events (enrichment_version 0, empty enrichment columns) for
 * tenant over [start_s, start_s + span_s) with ids first_id.., loaded two days ago. Their
 * addresses are in MaxMind's test city database: 81.2.69.142 is London, 89.160.20.112
 * Linkoping, 2001:218::1 Japan, 216.160.83.56 Milton (WA).
 */
static void insert_unenriched(struct fixture *f, const char *tenant, int64_t first_id, int64_t n,
                              int64_t start_s, int64_t span_s)
{
    char sql[4096];

    snprintf(sql, sizeof(sql),
             "INSERT INTO {db}.events (id, tenant_id, type, ts, ts_ms, session_id, "
             "anonymous_id, path, ip, user_agent, version) SELECT toUUID(concat("
             "'00000000-0000-4000-8000-', substring(toString(1000000000000 + n), 2, 12))), "
             "'%s', 'pageview', toDateTime(%lld + (n * 7919) %% %lld), toUInt16(n %% 1000), "
             "concat('s', toString(n %% 13)), concat('a', toString(n %% 29)), '/p', "
             "arrayElement(['81.2.69.142', '89.160.20.112', '2001:218::1', '216.160.83.56'], "
             "n %% 4 + 1), '" CHROME_UA "', %lld FROM (SELECT number + %lld AS n FROM "
             "system.numbers LIMIT %lld)",
             tenant, (long long)start_s, (long long)span_s,
             (long long)(wall_ms() - INT64_C(2) * 86400 * 1000), (long long)first_id,
             (long long)n);
    exec_db(f, sql);
}

/* The test data's paths: MaxMind's city test database and uap-core's rules (new strings). */
static char *city_db_path(const char *name)
{
    return test_path(getenv("SLUICE_SOURCE_DIR"), name);
}

/* Enrichment with the city test database `db_name` and uap-core's regexes.yaml. */
static struct enrich *enrich_open(const char *db_name)
{
    struct enrich_settings es = {.asn_db = "", .crawler_patterns = "", .ua_cache_entries = 1000};
    char *geo = city_db_path(db_name);
    char *ua = test_path(test_env_require("SLUICE_TEST_UAP_CORE_DIR"), "regexes.yaml");
    struct enrich *e = NULL;
    struct sl_err err;

    ASSERT_OK(enrich_create(&es, geo, ua, wall_ms() / 1000, &e, &err), &err);
    free(geo);
    free(ua);
    return e;
}

/* Events (newest copy per id) of tenant on DAY1 whose enrichment_version is v, as text. */
static char *count_at_version(struct fixture *f, const char *tenant, uint32_t v)
{
    char sql[1024];

    snprintf(sql, sizeof(sql), "SELECT count() FROM (SELECT argMax(enrichment_version, "
             "version) AS ev FROM {db}.events WHERE tenant_id = '%s' AND ts >= "
             "toDateTime(1795478400) AND ts < toDateTime(1795564800) GROUP BY id) WHERE ev = %u "
             "FORMAT TabSeparated", tenant, (unsigned)v);
    return query_db(f, sql);
}

static char *text_of(long long v)
{
    char buf[32];

    snprintf(buf, sizeof(buf), "%lld\n", v);
    return sl_strdup(buf);
}

static void test_backfill_enrichment_rewrites_stale_rows(void)
{
    struct fixture f;
    struct backfill_chunk_result dry, hours, day, again, all, empty;
    struct enrich *e;
    uint32_t v;
    char *parts_before, *b_before, *raw_before;
    char want[128];

    fixture_open(&f, "enrich");
    e = enrich_open("../shared/testdata/geoip/GeoIP2-City-Test.mmdb");
    v = enrich_version_id(e);
    insert_unenriched(&f, "tn_a", 0, 400, DAY1, 86400);
    insert_unenriched(&f, "tn_a", 0, 100, DAY1, 86400); /* a quarter delivered twice */
    insert_unenriched(&f, "tn_b", 100000, 200, DAY1, 86400);
    expect_same("tn_a not enriched", count_at_version(&f, "tn_a", 0), text_of(400));
    b_before = query_db(&f, "SELECT count(), sum(cityHash64(toString(id), ts, ts_ms, version, "
                            "enrichment_version, country_code, city, browser, os)) FROM "
                            "{db}.events WHERE tenant_id = 'tn_b' FORMAT TabSeparated");

    /* Dry run: the numbers, and not a byte written. */
    parts_before = query_db(&f, "SELECT table, name, rows FROM system.parts WHERE database = "
                                "'{db}' AND active ORDER BY table, name FORMAT TabSeparated");
    backfill_with(&f, "enrichment", "tn_a", DAY1, DAY1 + 86400, 86400, true, e, &dry);
    expect_same("parts after a dry run", query_db(&f, "SELECT table, name, rows FROM "
                                                     "system.parts WHERE database = '{db}' AND "
                                                     "active ORDER BY table, name FORMAT "
                                                     "TabSeparated"),
                parts_before);
    ASSERT_EQ_INT(dry.rows_read, 400);
    ASSERT_EQ_INT(dry.rows_before, 400);
    ASSERT_EQ_INT(dry.rows_written, 400);
    ASSERT_EQ_STR(dry.source, "events");

    /* Three 1h chunks, then the whole day: every event once, in whichever chunk it is. */
    backfill_with(&f, "enrichment", "tn_a", DAY1, DAY1 + 3 * 3600, 3600, false, e, &hours);
    ASSERT_TRUE(hours.rows_written > 0 && hours.rows_written < 400);
    ASSERT_EQ_INT(hours.rows_written, hours.rows_read);
    backfill_with(&f, "enrichment", "tn_a", DAY1, DAY1 + 86400, 86400, false, e, &day);
    ASSERT_EQ_INT(day.rows_read, 400);
    ASSERT_EQ_INT(hours.rows_written + day.rows_written, 400);
    expect_same("tn_a at the current version", count_at_version(&f, "tn_a", v), text_of(400));
    snprintf(want, sizeof(want), "GB\tUnited Kingdom\tLondon\tChrome\tWindows\t%u\n", v);
    expect_same("a London event", query_db(&f, "SELECT DISTINCT country_code, country, city, "
                                                "browser, os, enrichment_version FROM "
                                                "{db}.events FINAL WHERE tenant_id = 'tn_a' AND "
                                                "ip = '81.2.69.142' FORMAT TabSeparated"),
                sl_strdup(want));
    expect_same("a Japanese event", query_db(&f, "SELECT DISTINCT country_code FROM "
                                                  "{db}.events FINAL WHERE tenant_id = 'tn_a' "
                                                  "AND ip = '2001:218::1' FORMAT TabSeparated"),
                sl_strdup("JP\n"));
    /* The same events under the same keys, counted once; the other tenant untouched. */
    expect_same("tn_a events", query_db(&f, "SELECT uniqExact(id) FROM {db}.events WHERE "
                                             "tenant_id = 'tn_a' FORMAT TabSeparated"),
                text_of(400));
    expect_same("one key per event", query_db(&f, "SELECT count() FROM (SELECT id, "
                                                   "uniqExact(tenant_id, ts, ts_ms) AS k FROM "
                                                   "{db}.events GROUP BY id HAVING k != 1) "
                                                   "FORMAT TabSeparated"),
                sl_strdup("0\n"));
    expect_same("tn_a daily rollup", query_db(&f, "SELECT uniqExactMerge(events) FROM "
                                                   "{db}.events_daily WHERE tenant_id = 'tn_a' "
                                                   "FORMAT TabSeparated"),
                text_of(400));
    expect_same("tn_b untouched", query_db(&f, "SELECT count(), sum(cityHash64(toString(id), "
                                                "ts, ts_ms, version, enrichment_version, "
                                                "country_code, city, browser, os)) FROM "
                                                "{db}.events WHERE tenant_id = 'tn_b' FORMAT "
                                                "TabSeparated"),
                b_before);

    /* Again: nothing below the current version, nothing written. */
    raw_before = query_db(&f, "SELECT count() FROM {db}.events FORMAT TabSeparated");
    backfill_with(&f, "enrichment", "tn_a", DAY1, DAY1 + 86400, 86400, false, e, &again);
    ASSERT_EQ_INT(again.rows_read, 400);
    ASSERT_EQ_INT(again.rows_written, 0);
    expect_same("rows after a re-run", query_db(&f, "SELECT count() FROM {db}.events FORMAT "
                                                     "TabSeparated"),
                raw_before);

    /* Every tenant: only tn_b has work left. */
    backfill_with(&f, "enrichment", "", DAY1, DAY1 + 86400, 86400, false, e, &all);
    ASSERT_EQ_INT(all.rows_read, 600);
    ASSERT_EQ_INT(all.rows_written, 200);
    expect_same("tn_b at the current version", count_at_version(&f, "tn_b", v), text_of(200));
    expect_same("no answers tables left", query_db(&f, "SELECT count() FROM system.tables "
                                                        "WHERE database = '{db}' AND name LIKE "
                                                        "'%reenrich%' FORMAT TabSeparated"),
                sl_strdup("0\n"));

    /* A day without events is kept as it is. */
    backfill_with(&f, "enrichment", "", DAY2, DAY2 + 86400, 86400, false, e, &empty);
    ASSERT_TRUE(empty.is_kept);
    ASSERT_EQ_STR(empty.source, "none");
    ASSERT_EQ_INT(empty.rows_written, 0);
    enrich_destroy(e);
    fixture_close(&f);
}

/* No enrichment data, or data that does not load: refused, nothing written. */
static void test_backfill_enrichment_refuses_without_data(void)
{
    const struct backfill_kind *k = backfill_kind_find("enrichment");
    struct backfill_chunk_opts opts = {.tag = "t", .now_s = wall_ms() / 1000};
    struct backfill_chunk_result res;
    struct fixture f;
    struct sl_err err;
    char *parts_before;

    fixture_open(&f, "enrichnodata");
    insert_unenriched(&f, "tn_a", 0, 50, DAY1, 3600);
    parts_before = query_db(&f, "SELECT table, name, rows FROM system.parts WHERE database = "
                                "'{db}' AND active ORDER BY table, name FORMAT TabSeparated");
    ASSERT_EQ_INT(backfill_chunk_run(f.ch, f.db, k, "tn_a", DAY1, DAY1 + 3600, &opts, &res,
                                     &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "SLUICE_GEOIP_DB");
    ASSERT_CONTAINS(err.msg, "SLUICE_UA_REGEXES");
    opts.enrich = enrich_open("../shared/testdata/geoip/GeoIP2-City-Test-Invalid-Node-Count.mmdb");
    ASSERT_EQ_INT(backfill_chunk_run(f.ch, f.db, k, "tn_a", DAY1, DAY1 + 3600, &opts, &res,
                                     &err), SL_ESTATE);
    ASSERT_CONTAINS(err.msg, "does not load");
    enrich_destroy(opts.enrich);
    expect_same("parts after refusals", query_db(&f, "SELECT table, name, rows FROM "
                                                      "system.parts WHERE database = '{db}' "
                                                      "AND active ORDER BY table, name FORMAT "
                                                      "TabSeparated"),
                parts_before);
    fixture_close(&f);
}

/* The runner: one job with its settings from the environment, run once as the scheduler does. */
static void run_runner(const struct sl_ch_settings *chs, const char *store_path, char **env)
{
    struct sl_store_settings store_settings = {.path = (char *)store_path};
    struct sched_worker_env wenv = {.store = &store_settings, .ch = chs};
    void *settings = calloc(1, backfill_worker.settings_size);
    struct sl_cfg_section sec;
    struct sl_store *st = NULL;
    struct sched_run run;
    atomic_int stop;
    struct sl_err err;
    void *ctx = NULL;

    ASSERT_TRUE(settings != NULL);
    sec = SL_CFG_SECTION("backfill", backfill_worker.opts, backfill_worker.n_opts, settings);
    ASSERT_OK(sl_cfg_load(&sec, 1, NULL, env, &err), &err);
    ASSERT_OK(backfill_worker.create(settings, &wenv, &ctx, &err), &err);
    ASSERT_OK(sl_store_open(&st, store_path, 1000, &err), &err);
    atomic_init(&stop, 0);
    memset(&run, 0, sizeof(run));
    run.job = "backfill";
    run.run_id = 1;
    run.kind = "manual";
    run.now_s = wall_ms() / 1000;
    run.slot_s = run.now_s;
    run.store = st;
    run.checkpoint = "";
    run._stop = &stop;
    sl_err_clear(&run.err);
    if (backfill_worker.run(ctx, &run) != SCHED_DONE) {
        TEST_FAIL("the backfill runner did not finish: %s", run.err.msg);
    }
    sl_store_close(st);
    backfill_worker.destroy(ctx);
    sl_cfg_fini(&sec, 1);
    free(settings);
}

static void test_backfill_enrichment_runner_fails_then_resumes(void)
{
    struct fixture f;
    struct sl_ch_settings chs;
    struct sl_store *st = NULL;
    struct sl_backfill_job job;
    struct sl_tenant t;
    struct sl_err err;
    char *dir = test_tmpdir();
    char *store_path = test_path(dir, "tenants.db");
    char *geo = city_db_path("../shared/testdata/geoip/GeoIP2-City-Test.mmdb");
    char env_geo[1100], env_ua[1100], sql[256];
    char *no_data[] = {NULL};
    /* One (ip, user agent) pair per step: the rewrite takes four steps per chunk. */
    char *with_data[] = {env_geo, env_ua, "SLUICE_JOB_BACKFILL_ENRICH_BATCH_PAIRS=1", NULL};
    struct enrich *e;

    fixture_open(&f, "enrichrunner");
    chs = f.settings;
    chs.database = f.db;
    snprintf(env_geo, sizeof(env_geo), "SLUICE_GEOIP_DB=%s", geo);
    snprintf(env_ua, sizeof(env_ua), "SLUICE_UA_REGEXES=%s/regexes.yaml",
             test_env_require("SLUICE_TEST_UAP_CORE_DIR"));
    ASSERT_OK(sl_store_open(&st, store_path, 1000, &err), &err);
    ASSERT_OK(sl_store_tenant_create(st, "acme", "free", wall_ms() / 1000, &t, &err), &err);
    insert_unenriched(&f, t.id, 0, 120, DAY1, 86400);
    insert_unenriched(&f, "tn_other", 1000, 30, DAY1, 86400);
    ASSERT_OK(sl_store_backfill_create(st, "enrichment", t.id, DAY1, DAY1 + 86400, 86400,
                                       wall_ms() / 1000, &job, &err), &err);

    /* No data configured: the job fails, naming the settings; nothing is written. */
    run_runner(&chs, store_path, no_data);
    ASSERT_OK(sl_store_backfill_get(st, job.id, &job, &err), &err);
    ASSERT_EQ_STR(sl_store_backfill_state_name(job.state), "failed");
    ASSERT_CONTAINS(job.error, "SLUICE_GEOIP_DB");
    ASSERT_EQ_INT(job.error_chunk_s, DAY1);
    expect_same("nothing enriched", count_at_version(&f, t.id, 0), text_of(120));

    /* Configured and resumed: the job completes, its events at the data's version. */
    ASSERT_OK(sl_store_backfill_resume(st, job.id, wall_ms() / 1000, &job, &err), &err);
    run_runner(&chs, store_path, with_data);
    ASSERT_OK(sl_store_backfill_get(st, job.id, &job, &err), &err);
    ASSERT_EQ_STR(sl_store_backfill_state_name(job.state), "done");
    ASSERT_EQ_INT(job.rows_read, 120);
    ASSERT_EQ_INT(job.rows_written, 120);
    e = enrich_open("../shared/testdata/geoip/GeoIP2-City-Test.mmdb");
    expect_same("enriched by the runner", count_at_version(&f, t.id, enrich_version_id(e)),
                text_of(120));
    enrich_destroy(e);
    expect_same("the other tenant untouched", count_at_version(&f, "tn_other", 0),
                text_of(30));
    snprintf(sql, sizeof(sql), "SELECT DISTINCT city FROM {db}.events FINAL WHERE tenant_id = "
             "'%s' AND ip = '81.2.69.142' FORMAT TabSeparated", t.id);
    expect_same("a London event", query_db(&f, sql), sl_strdup("London\n"));
    sl_store_close(st);
    test_rmtree(dir);
    free(dir);
    free(store_path);
    free(geo);
    fixture_close(&f);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_backfill_hourly_equals_scratch),
        TEST_CASE(test_backfill_daily_equals_scratch),
        TEST_CASE(test_backfill_sessions_equal_scratch),
        TEST_CASE(test_backfill_daily_from_hourly),
        TEST_CASE(test_backfill_rerun_and_dry_run),
        TEST_CASE(test_backfill_concurrent_reads_and_live_writes),
        TEST_CASE(test_backfill_enrichment_rewrites_stale_rows),
        TEST_CASE(test_backfill_enrichment_refuses_without_data),
        TEST_CASE(test_backfill_enrichment_runner_fails_then_resumes),
        {NULL, NULL},
    };

    return test_main(argc, argv, cases);
}

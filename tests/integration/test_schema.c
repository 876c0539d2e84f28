/*
 * Tests ingest/schema.c and ingest/rows.c against the real ClickHouse server
 * (SLUICE_TEST_CLICKHOUSE_URL): the schema applied twice and from two threads at once,
 * missing columns added back, a table with the wrong engine refused, events inserted with
 * ingest_rows_append read back field by field, and redelivery: the same events inserted
 * again, shuffled and out of order, leave event counts, sessions (start, end, duration,
 * counts, entry and exit path, bounce, first context) and hourly/daily rollups exactly as
 * one insert left them. The modern DDL (LowCardinality) is applied too, on 18.16 with its
 * experimental setting. Each case works in a database of its own and drops it.
 */
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "ch.h"
#include "chquery.h"
#include "rows.h"
#include "schema.h"
#include "test.h"

/* 2026-11-24T00:00:00Z, the day most events fall on. */
#define DAY_MS (INT64_C(1795478400) * 1000)
#define HOUR_MS INT64_C(3600000)

struct fixture {
    struct sl_ch_settings settings;
    struct sl_cfg_section sec;
    struct sl_ch *ch; /* names no database: the schema creates it */
    char db[64];
    char url_env[1024];
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Loads the client settings for url (the table's defaults otherwise), with no database. */
static void load_settings(struct fixture *f, const char *url)
{
    char *env[2] = {f->url_env, NULL};
    struct sl_err err;

    snprintf(f->url_env, sizeof(f->url_env), "SLUICE_CLICKHOUSE_URL=%s", url);
    memset(&f->settings, 0, sizeof(f->settings));
    f->sec = SL_CFG_SECTION("clickhouse", sl_ch_cfg_opts, sl_ch_cfg_n_opts, &f->settings);
    ASSERT_OK(sl_cfg_load(&f->sec, 1, NULL, env, &err), &err);
}

/* A new client that names no database. Threads may call it at once. */
static struct sl_ch *client(const struct fixture *f)
{
    struct sl_ch_settings settings = f->settings;
    struct sl_ch *ch = NULL;
    struct sl_err err;

    settings.database = NULL;
    ASSERT_OK(sl_ch_create(&ch, &settings, &err), &err);
    return ch;
}

/* Opens a fixture for a database that does not exist yet. url_suffix (may be NULL) is
 * appended to the server's URL as query parameters. */
static void fixture_open_with(struct fixture *f, const char *params)
{
    const char *url = test_env_require("SLUICE_TEST_CLICKHOUSE_URL");
    char full[900];
    uint64_t r = (uint64_t)now_ms() * 2654435761u ^ (uint64_t)getpid();

    memset(f, 0, sizeof(*f));
    snprintf(f->db, sizeof(f->db), "sluice_schema_%d_%08x", (int)getpid(), (unsigned)r);
    if (params != NULL) {
        snprintf(full, sizeof(full), "%s%s%s", url, strchr(url, '?') != NULL ? "&" : "/?",
                 params);
        url = full;
    }
    load_settings(f, url);
    f->ch = client(f);
}

static void fixture_open(struct fixture *f)
{
    fixture_open_with(f, NULL);
}

static void exec_ok(struct sl_ch *ch, const char *sql)
{
    struct sl_err err;

    ASSERT_OK(sl_ch_exec(ch, sql, &err), &err);
}

static void fixture_close(struct fixture *f)
{
    char sql[256];

    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", f->db);
    exec_ok(f->ch, sql);
    sl_ch_destroy(f->ch);
    sl_cfg_fini(&f->sec, 1);
}

/* Runs sql, with every "{db}" replaced by the test database, and returns its body (caller
 * frees with sl_free). */
static char *query_db(struct fixture *f, const char *sql)
{
    return test_ch_query_db(f->ch, f->db, sql);
}

/* Asserts that sql's TabSeparated answer is want. */
static void expect_query(struct fixture *f, const char *sql, const char *want)
{
    char *got = query_db(f, sql);

    if (strcmp(got, want) != 0) {
        TEST_FAIL("%s\n--- got:\n%s--- want:\n%s", sql, got, want);
    }
    sl_free(got);
}

static void apply_ok(struct fixture *f, enum ingest_schema_mode mode)
{
    struct sl_err err;

    ASSERT_OK(ingest_schema_apply_mode(f->ch, f->db, mode, &err), &err);
}

/* ---- events -------------------------------------------------------------------------- */

struct ev {
    unsigned n; /* the id's last digits */
    const char *tenant;
    const char *type;
    const char *session;
    const char *path;
    int64_t ts_ms;
    const char *user_id;
};

static void iso_ms(int64_t ms, char out[64])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;

    gmtime_r(&s, &tm);
    snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000));
}

/* Writes the normalized event the edge would produce for e (every context field set and
 * told apart by the event number). */
static void event_json(const struct ev *e, char *out, size_t cap)
{
    char ts[64];
    char recv[64];

    iso_ms(e->ts_ms, ts);
    iso_ms(e->ts_ms + 1500, recv);
    snprintf(out, cap,
             "{\"schema_version\":1,\"id\":\"00000000-0000-4000-8000-%012u\","
             "\"tenant_id\":\"%s\",\"type\":\"%s\",\"name\":%s,\"ts\":\"%s\","
             "\"received_at\":\"%s\",\"session_id\":%s%s%s,\"anonymous_id\":\"anon-%s\","
             "\"user_id\":%s%s%s,\"properties\":{\"n\":%u,\"r\":0.1},"
             "\"context\":{\"user_agent\":\"UA-%u\",\"ip\":\"198.51.100.%u\","
             "\"url\":\"https://example.com%s?n=%u\",\"path\":\"%s\","
             "\"referrer\":\"https://ref/%u\",\"title\":\"T%u\",\"screen\":\"1920x1080\","
             "\"viewport\":\"1200x%u\",\"timezone\":\"Europe/Paris\",\"language\":\"fr-FR\"},"
             "\"flags\":[]}",
             e->n, e->tenant, e->type, strcmp(e->type, "custom") == 0 ? "\"signup\"" : "null",
             ts, recv, e->session != NULL ? "\"" : "", e->session != NULL ? e->session : "null",
             e->session != NULL ? "\"" : "", e->session != NULL ? e->session : "none",
             e->user_id != NULL ? "\"" : "", e->user_id != NULL ? e->user_id : "null",
             e->user_id != NULL ? "\"" : "", e->n, e->n, e->n % 250, e->path, e->n, e->path,
             e->n, e->n, e->n);
}

/* Inserts events[idx[0..n)] (idx NULL: all n in order) in one RowBinary insert. */
static void insert_events(struct fixture *f, struct sl_ch *ch, const struct ev *events,
                          const size_t *idx, size_t n, int64_t version)
{
    struct sl_ch_buf rows;
    struct sl_err err;
    char sql[INGEST_ROWS_INSERT_SQL_MAX];
    char json[2048];

    ASSERT_OK(ingest_rows_insert_sql(f->db, sql, sizeof(sql)), NULL);
    sl_ch_buf_init(&rows, 64 << 20);
    for (size_t i = 0; i < n; i++) {
        event_json(&events[idx != NULL ? idx[i] : i], json, sizeof(json));
        ASSERT_OK(ingest_rows_append(&rows, json, strlen(json), version, &err), &err);
    }
    ASSERT_OK(sl_ch_insert(ch, sql, rows.data, rows.len, &err), &err);
    sl_ch_buf_fini(&rows);
}

/* ---- the schema ---------------------------------------------------------------------- */

#define OBJECTS_QUERY                                                                      \
    "SELECT name, engine FROM system.tables WHERE database = '{db}' ORDER BY name "          \
    "FORMAT TabSeparated"
#define OBJECTS                                                                            \
    "events\tReplacingMergeTree\n"                                                          \
    "events_daily\tAggregatingMergeTree\n"                                                  \
    "events_daily_mv\tMaterializedView\n"                                                   \
    "events_hourly\tAggregatingMergeTree\n"                                                 \
    "events_hourly_mv\tMaterializedView\n"                                                  \
    "internal_metrics\tMergeTree\n"                                                         \
    "sessions\tAggregatingMergeTree\n"                                                      \
    "sessions_mv\tMaterializedView\n"

/* The events table's columns, comma separated in table order. */
static char *events_columns(struct fixture *f)
{
    return query_db(f, "SELECT arrayStringConcat(groupArray(name), ', ') FROM (SELECT name "
                       "FROM system.columns WHERE database = '{db}' AND table = 'events') "
                       "FORMAT TabSeparated");
}

static void test_schema_apply_is_idempotent(void)
{
    struct fixture f;
    char *cols;
    char want[2048];
    char *before;
    char *after;

    fixture_open(&f);
    apply_ok(&f, INGEST_SCHEMA_DETECT);
    expect_query(&f, OBJECTS_QUERY, OBJECTS);
    /* The INSERT's columns are the table's, in the same order. */
    cols = events_columns(&f);
    snprintf(want, sizeof(want), "%s\n", ingest_rows_columns());
    ASSERT_EQ_STR(cols, want);
    sl_free(cols);
    /* DETECT on 18.x is the portable DDL: plain String; the time is UTC. */
    expect_query(&f, "SELECT name, type FROM system.columns WHERE database = '{db}' AND "
                     "table = 'events' AND name IN ('tenant_id', 'ts', 'id', 'version') "
                     "FORMAT TabSeparated",
                 "id\tUUID\ntenant_id\tString\nts\tDateTime(\\'UTC\\')\nversion\tUInt64\n");
    before = query_db(&f, "SELECT name, create_table_query FROM system.tables WHERE "
                          "database = '{db}' ORDER BY name FORMAT TabSeparated");
    /* Again: nothing changes, nothing fails. */
    apply_ok(&f, INGEST_SCHEMA_DETECT);
    apply_ok(&f, INGEST_SCHEMA_PORTABLE);
    after = query_db(&f, "SELECT name, create_table_query FROM system.tables WHERE "
                         "database = '{db}' ORDER BY name FORMAT TabSeparated");
    ASSERT_EQ_STR(after, before);
    sl_free(before);
    sl_free(after);
    fixture_close(&f);
}

struct racer {
    struct fixture *f;
    pthread_barrier_t *start;
    int rc;
    struct sl_err err;
};

static void *race_apply(void *arg)
{
    struct racer *r = arg;
    struct sl_ch *ch = client(r->f);

    pthread_barrier_wait(r->start);
    r->rc = ingest_schema_apply(ch, r->f->db, &r->err);
    sl_ch_destroy(ch);
    return NULL;
}

/* Drops columns the way an older sluice would not have had them. */
static void drop_some_columns(struct fixture *f)
{
    static const char *const drops[] = {
        "events DROP COLUMN bot_reason",
        "events DROP COLUMN enrichment_version",
        "internal_metrics DROP COLUMN label_values",
    };
    char sql[512];

    for (size_t i = 0; i < sizeof(drops) / sizeof(drops[0]); i++) {
        snprintf(sql, sizeof(sql), "ALTER TABLE %s.%s", f->db, drops[i]);
        exec_ok(f->ch, sql);
    }
}

/*
 * Processes starting together apply the schema at once: on a fresh database (18.16
 * serializes CREATE ... IF NOT EXISTS itself) and on one lacking columns, where all of them
 * try ADD COLUMN and all but one get Code 44; each must still succeed.
 */
static void test_schema_apply_concurrently(void)
{
    enum { N_THREADS = 3, N_ROUNDS = 8 };

    for (int round = 0; round < N_ROUNDS; round++) {
        struct fixture f;
        struct racer racers[N_THREADS];
        pthread_t threads[N_THREADS];
        pthread_barrier_t start;
        char want[2048];
        char *cols;

        fixture_open(&f);
        if (round % 2 == 1) {
            apply_ok(&f, INGEST_SCHEMA_DETECT);
            drop_some_columns(&f);
        }
        pthread_barrier_init(&start, NULL, N_THREADS);
        for (int i = 0; i < N_THREADS; i++) {
            racers[i] = (struct racer){.f = &f, .start = &start};
            ASSERT_EQ_INT(pthread_create(&threads[i], NULL, race_apply, &racers[i]), 0);
        }
        for (int i = 0; i < N_THREADS; i++) {
            pthread_join(threads[i], NULL);
            ASSERT_OK(racers[i].rc, &racers[i].err);
        }
        pthread_barrier_destroy(&start);
        expect_query(&f, OBJECTS_QUERY, OBJECTS);
        cols = events_columns(&f);
        snprintf(want, sizeof(want), "%s\n", ingest_rows_columns());
        ASSERT_EQ_STR(cols, want);
        sl_free(cols);
        fixture_close(&f);
    }
}

/* An events table an older sluice made, without some columns, gets them back in place;
 * the rows it held keep their values and the new columns their defaults. */
static void test_schema_adds_missing_columns(void)
{
    static const struct ev e = {1, "t1", "pageview", "s1", "/a", DAY_MS, NULL};
    struct fixture f;
    char *cols;
    char want[2048];

    fixture_open(&f);
    apply_ok(&f, INGEST_SCHEMA_DETECT);
    insert_events(&f, f.ch, &e, NULL, 1, 1);
    drop_some_columns(&f);
    cols = events_columns(&f);
    ASSERT_NOT_CONTAINS(cols, "bot_reason");
    sl_free(cols);
    apply_ok(&f, INGEST_SCHEMA_DETECT);
    cols = events_columns(&f);
    snprintf(want, sizeof(want), "%s\n", ingest_rows_columns());
    ASSERT_EQ_STR(cols, want);
    sl_free(cols);
    expect_query(&f, "SELECT name FROM system.columns WHERE database = '{db}' AND "
                     "table = 'internal_metrics' FORMAT TabSeparated",
                 "ts\nhost\nprocess\nname\nlabel_keys\nlabel_values\nvalue\n");
    expect_query(&f, "SELECT tenant_id, path, enrichment_version, bot_reason FROM {db}.events "
                     "FORMAT TabSeparated", "t1\t/a\t0\t\n");
    /* And inserting with the full column list works again. */
    insert_events(&f, f.ch, &e, NULL, 1, 2);
    expect_query(&f, "SELECT uniqExact(id) FROM {db}.events FORMAT TabSeparated", "1\n");
    fixture_close(&f);
}

static void test_schema_refuses_wrong_engine(void)
{
    struct fixture f;
    struct sl_err err;
    char sql[512];

    fixture_open(&f);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", f.db);
    exec_ok(f.ch, sql);
    snprintf(sql, sizeof(sql), "CREATE TABLE %s.events (id UUID, ts DateTime) "
             "ENGINE = MergeTree ORDER BY id", f.db);
    exec_ok(f.ch, sql);
    ASSERT_EQ_INT(ingest_schema_apply(f.ch, f.db, &err), SL_ESCHEMA);
    ASSERT_CONTAINS(err.msg, ".events exists with engine MergeTree, not ReplacingMergeTree");
    /* No view was made to feed from it. */
    expect_query(&f, "SELECT count() FROM system.tables WHERE database = '{db}' AND "
                     "engine = 'MaterializedView' FORMAT TabSeparated", "0\n");
    ASSERT_EQ_INT(ingest_schema_apply(f.ch, "", &err), SL_EINVAL);
    fixture_close(&f);
}

/* A client that names the missing database cannot create it: the error says so. */
static void test_schema_client_naming_missing_database(void)
{
    struct fixture f;
    struct sl_ch_settings settings;
    struct sl_ch *named = NULL;
    struct sl_err err;

    fixture_open(&f);
    settings = f.settings;
    settings.database = f.db;
    ASSERT_OK(sl_ch_create(&named, &settings, &err), &err);
    ASSERT_EQ_INT(ingest_schema_apply_mode(named, f.db, INGEST_SCHEMA_PORTABLE, &err),
                  SL_ESERVER);
    ASSERT_EQ_INT(err.remote_code, 81);
    ASSERT_CONTAINS(err.msg, "creating database");
    /* Once it exists, the same client completes the schema. */
    apply_ok(&f, INGEST_SCHEMA_PORTABLE);
    ASSERT_OK(ingest_schema_apply(named, f.db, &err), &err);
    sl_ch_destroy(named);
    fixture_close(&f);
}

/* ---- rows read back ------------------------------------------------------------------ */

static void test_schema_rows_read_back(void)
{
    static const char event[] =
        "{\"schema_version\":1,\"id\":\"6F9619FF-8B86-4D01-B42D-00C04FC964FF\","
        "\"tenant_id\":\"tn_1\",\"type\":\"log\",\"name\":\"n'1\","
        "\"ts\":\"2026-11-24T10:00:00.123Z\",\"received_at\":\"2026-11-24T10:00:01.999Z\","
        "\"session_id\":\"s-1\",\"anonymous_id\":\"a-1\",\"user_id\":\"u-1\","
        "\"severity\":\"error\",\"source\":\"api\",\"message\":\"boom\\ttab\","
        "\"properties\":{\"price\":0.1,\"q\":\"\\\"x\\\"\"},"
        "\"context\":{\"user_agent\":\"Mozilla/5.0 (X11)\",\"ip\":\"2001:db8::1\","
        "\"url\":\"https://example.com/a?b=1\",\"path\":\"/a\",\"referrer\":\"https://r/\","
        "\"title\":\"Caf\\u00e9 \\u2713\",\"screen\":\"1920x1080\",\"viewport\":\"1200x800\","
        "\"timezone\":\"Europe/Paris\",\"language\":\"fr-FR\"},"
        "\"flags\":[\"clock_skew_corrected\",\"future_clamped\"]}";
    struct fixture f;
    struct sl_ch_buf rows;
    struct sl_err err;
    char sql[INGEST_ROWS_INSERT_SQL_MAX];

    fixture_open(&f);
    apply_ok(&f, INGEST_SCHEMA_DETECT);
    ASSERT_OK(ingest_rows_insert_sql(f.db, sql, sizeof(sql)), NULL);
    sl_ch_buf_init(&rows, 1 << 20);
    ASSERT_OK(ingest_rows_append(&rows, event, strlen(event), INT64_C(1795514401999), &err),
              &err);
    ASSERT_OK(sl_ch_insert(f.ch, sql, rows.data, rows.len, &err), &err);
    sl_ch_buf_fini(&rows);
    expect_query(&f,
                 "SELECT toString(id), tenant_id, type, name, toUnixTimestamp(ts), "
                 "toString(ts), ts_ms, toUnixTimestamp(received_at), session_id, anonymous_id, "
                 "user_id, properties, visitParamExtractFloat(properties, 'price') "
                 "FROM {db}.events FORMAT TabSeparated",
                 "6f9619ff-8b86-4d01-b42d-00c04fc964ff\ttn_1\tlog\tn\\'1\t1795514400\t"
                 "2026-11-24 10:00:00\t123\t1795514401\ts-1\ta-1\tu-1\t"
                 "{\"price\":0.1,\"q\":\"\\\\\"x\\\\\"\"}\t0.1\n");
    expect_query(&f,
                 "SELECT user_agent, ip, url, path, referrer, title, screen, viewport, timezone, "
                 "language, severity, source, message, flags FROM {db}.events "
                 "FORMAT TabSeparated",
                 "Mozilla/5.0 (X11)\t2001:db8::1\thttps://example.com/a?b=1\t/a\thttps://r/\t"
                 "Caf\xc3\xa9 \xe2\x9c\x93\t1920x1080\t1200x800\tEurope/Paris\tfr-FR\terror\tapi\t"
                 "boom\\ttab\t['clock_skew_corrected','future_clamped']\n");
    expect_query(&f,
                 "SELECT country_code, country, region, city, postal, latitude, longitude, "
                 "accuracy_radius, geo_timezone, asn, as_org, browser, browser_version, os, "
                 "os_version, device, device_brand, device_model, is_bot, bot_reason, "
                 "enrichment_version, version, toYYYYMMDD(ts), _partition_id FROM {db}.events "
                 "FORMAT TabSeparated",
                 "\t\t\t\t\t0\t0\t0\t\t0\t\t\t\t\t\t\t\t\t0\t\t0\t1795514401999\t20261124\t"
                 "20261124\n");
    fixture_close(&f);
}

/* ---- redelivery ---------------------------------------------------------------------- */

/*
 * Sessions of tenant tA on DAY (times in ms from midnight):
 *   s1  6 events over 121 s: pageviews /home, /pricing, /signup, a click, a performance
 *       event and a scroll on /other after the last pageview; user-1 identified on the last
 *       pageview. Entry /home, exit /signup (the last pageview, not the last event).
 *   s2  a pageview and a performance event: a bounce.
 *   s3  a pageview at 23:59:50 and one at 00:00:10 the next day: one session over two days.
 *   s4  two pageviews in the same millisecond: the lower id is the entry, the higher the
 *       exit, whatever the arrival order.
 * Tenant tB has one session s1 of its own (same session id, another tenant), and an event
 * without a session.
 */
static const struct ev session_events[] = {
    {101, "tA", "pageview", "s1", "/home", DAY_MS + 10 * HOUR_MS, NULL},
    {102, "tA", "click", "s1", "/home", DAY_MS + 10 * HOUR_MS + 5000, NULL},
    {103, "tA", "pageview", "s1", "/pricing", DAY_MS + 10 * HOUR_MS + 60000, NULL},
    {104, "tA", "performance", "s1", "/pricing", DAY_MS + 10 * HOUR_MS + 61000, NULL},
    {105, "tA", "pageview", "s1", "/signup", DAY_MS + 10 * HOUR_MS + 120500, "user-1"},
    {106, "tA", "scroll", "s1", "/other", DAY_MS + 10 * HOUR_MS + 121000, NULL},
    {201, "tA", "pageview", "s2", "/landing", DAY_MS + 11 * HOUR_MS + 1, NULL},
    {202, "tA", "performance", "s2", "/landing", DAY_MS + 11 * HOUR_MS + 2501, NULL},
    {301, "tA", "pageview", "s3", "/late", DAY_MS + 24 * HOUR_MS - 10000, NULL},
    {302, "tA", "pageview", "s3", "/after", DAY_MS + 24 * HOUR_MS + 10000, NULL},
    {402, "tA", "pageview", "s4", "/second", DAY_MS + 12 * HOUR_MS + 777, NULL},
    {401, "tA", "pageview", "s4", "/first", DAY_MS + 12 * HOUR_MS + 777, NULL},
    {501, "tB", "pageview", "s1", "/b", DAY_MS + 10 * HOUR_MS + 30000, "user-b"},
    {502, "tB", "custom", NULL, "/b", DAY_MS + 10 * HOUR_MS + 31000, NULL},
};
#define N_SESSION_EVENTS (sizeof(session_events) / sizeof(session_events[0]))

#define SESSIONS_QUERY                                                                     \
    "SELECT tenant_id, session_id, minMerge(start_ms) AS started_ms, "                     \
    "maxMerge(end_ms) AS ended_ms, ended_ms - started_ms AS duration_ms, "                 \
    "toString(toDateTime(intDiv(started_ms, 1000), 'UTC')) AS start, "                     \
    "uniqExactMerge(events) AS n_events, uniqExactIfMerge(pageviews) AS n_pageviews, "     \
    "uniqExactIfMerge(interactions) AS n_interactions, "                                   \
    "n_pageviews = 1 AND n_interactions = 0 AS is_bounce, "                                \
    "argMinMerge(entry_path) AS entry, argMaxMerge(exit_path) AS exit, "                   \
    "maxMerge(user_id) AS user, argMinMerge(first_context) AS first, "                     \
    "first.1 AS anonymous_id, first.2 AS user_agent, first.3 AS ip, first.6 AS referrer "   \
    "FROM {db}.sessions GROUP BY tenant_id, session_id ORDER BY tenant_id, session_id "    \
    "FORMAT TabSeparated"

static const char sessions_want[] =
    "tA\ts1\t1795514400000\t1795514521000\t121000\t2026-11-24 10:00:00\t6\t3\t1\t0\t/home\t"
    "/signup\tuser-1\t('anon-s1','UA-101','198.51.100.101','https://example.com/home?n=101',"
    "'/home','https://ref/101','T101','1920x1080','1200x101','Europe/Paris','fr-FR')\tanon-s1\t"
    "UA-101\t198.51.100.101\thttps://ref/101\n"
    "tA\ts2\t1795518000001\t1795518002501\t2500\t2026-11-24 11:00:00\t2\t1\t0\t1\t/landing\t"
    "/landing\t\t('anon-s2','UA-201','198.51.100.201','https://example.com/landing?n=201',"
    "'/landing','https://ref/201','T201','1920x1080','1200x201','Europe/Paris','fr-FR')\t"
    "anon-s2\tUA-201\t198.51.100.201\thttps://ref/201\n"
    "tA\ts3\t1795564790000\t1795564810000\t20000\t2026-11-24 23:59:50\t2\t2\t0\t0\t/late\t"
    "/after\t\t('anon-s3','UA-301','198.51.100.51','https://example.com/late?n=301','/late',"
    "'https://ref/301','T301','1920x1080','1200x301','Europe/Paris','fr-FR')\tanon-s3\tUA-301\t"
    "198.51.100.51\thttps://ref/301\n"
    "tA\ts4\t1795521600777\t1795521600777\t0\t2026-11-24 12:00:00\t2\t2\t0\t0\t/first\t"
    "/second\t\t('anon-s4','UA-401','198.51.100.151','https://example.com/first?n=401',"
    "'/first','https://ref/401','T401','1920x1080','1200x401','Europe/Paris','fr-FR')\t"
    "anon-s4\tUA-401\t198.51.100.151\thttps://ref/401\n"
    "tB\ts1\t1795514430000\t1795514430000\t0\t2026-11-24 10:00:30\t1\t1\t0\t1\t/b\t/b\tuser-b\t"
    "('anon-s1','UA-501','198.51.100.1','https://example.com/b?n=501','/b','https://ref/501',"
    "'T501','1920x1080','1200x501','Europe/Paris','fr-FR')\tanon-s1\tUA-501\t198.51.100.1\t"
    "https://ref/501\n";

#define EVENTS_PER_DAY_QUERY                                                               \
    "SELECT tenant_id, toDate(ts) AS day, uniqExact(id) AS events FROM {db}.events "        \
    "GROUP BY tenant_id, day ORDER BY tenant_id, day FORMAT TabSeparated"

#define HOURLY_QUERY                                                                       \
    "SELECT tenant_id, toString(hour), type, path, uniqExactMerge(events), "               \
    "uniqIfMerge(users), uniqIfMerge(sessions) FROM {db}.events_hourly "                   \
    "GROUP BY tenant_id, hour, type, path ORDER BY tenant_id, hour, type, path "           \
    "FORMAT TabSeparated"

/* The same from the raw rows, deduplicated with FINAL. */
#define HOURLY_FROM_RAW_QUERY                                                              \
    "SELECT tenant_id, toString(toStartOfHour(ts)) AS hour, type, path, count(), "          \
    "uniqIf(if(user_id != '', user_id, anonymous_id), user_id != '' OR anonymous_id != ''), " \
    "uniqIf(session_id, session_id != '') FROM {db}.events FINAL "                         \
    "GROUP BY tenant_id, hour, type, path ORDER BY tenant_id, hour, type, path "           \
    "FORMAT TabSeparated"

#define DAILY_PAGEVIEWS_QUERY                                                              \
    "SELECT tenant_id, day, uniqExactMerge(events) AS pageviews, uniqIfMerge(users), "     \
    "uniqIfMerge(sessions) FROM {db}.events_daily WHERE type = 'pageview' "                \
    "GROUP BY tenant_id, day ORDER BY tenant_id, day FORMAT TabSeparated"

static const char events_per_day_want[] =
    "tA\t2026-11-24\t11\ntA\t2026-11-25\t1\ntB\t2026-11-24\t2\n";
static const char daily_pageviews_want[] =
    "tA\t2026-11-24\t7\t5\t4\ntA\t2026-11-25\t1\t1\t1\ntB\t2026-11-24\t1\t1\t1\n";

/* Every aggregate the project reads, as one text. */
static char *aggregates(struct fixture *f)
{
    const char *queries[] = {SESSIONS_QUERY, EVENTS_PER_DAY_QUERY, HOURLY_QUERY,
                             DAILY_PAGEVIEWS_QUERY};
    struct sl_ch_buf all;

    sl_ch_buf_init(&all, 1 << 20);
    for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++) {
        char *part = query_db(f, queries[i]);

        ASSERT_OK(sl_ch_buf_append_str(&all, part), NULL);
        ASSERT_OK(sl_ch_buf_append_str(&all, "--\n"), NULL);
        sl_free(part);
    }
    return all.data;
}

/* Checks every aggregate against the expected numbers of the events inserted once. */
static void expect_exact_aggregates(struct fixture *f)
{
    char *raw;

    expect_query(f, SESSIONS_QUERY, sessions_want);
    expect_query(f, EVENTS_PER_DAY_QUERY, events_per_day_want);
    expect_query(f, DAILY_PAGEVIEWS_QUERY, daily_pageviews_want);
    expect_query(f, "SELECT tenant_id, uniqExactMerge(events) FROM {db}.events_hourly "
                    "GROUP BY tenant_id ORDER BY tenant_id FORMAT TabSeparated",
                 "tA\t12\ntB\t2\n");
    raw = query_db(f, HOURLY_FROM_RAW_QUERY);
    expect_query(f, HOURLY_QUERY, raw);
    sl_free(raw);
    expect_query(f, "SELECT count() FROM {db}.events FINAL FORMAT TabSeparated", "14\n");
}

/*
 * Inserts the events as the loader would after crashes: out of order (later events first),
 * then everything again in another order with a higher version, then a few once more. Every
 * aggregate must read as after the first complete delivery.
 */
static void check_redelivery(struct fixture *f)
{
    static const size_t later_first[] = {4, 5, 2, 9, 11, 12};
    static const size_t rest[] = {0, 1, 3, 6, 7, 8, 10, 13};
    static const size_t reversed[] = {13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0};
    static const size_t some[] = {0, 4, 8, 12};
    char *once;
    char *twice;
    char *n_rows;

    insert_events(f, f->ch, session_events, later_first, 6, 1000);
    insert_events(f, f->ch, session_events, rest, 8, 1001);
    expect_exact_aggregates(f);
    once = aggregates(f);
    insert_events(f, f->ch, session_events, reversed, N_SESSION_EVENTS, 2000);
    insert_events(f, f->ch, session_events, some, 4, 3000);
    insert_events(f, f->ch, session_events, some, 4, 3000);
    /* The duplicates are really there (unmerged) ... */
    n_rows = query_db(f, "SELECT count() FROM {db}.events FORMAT TabSeparated");
    ASSERT_TRUE(atoi(n_rows) > (int)N_SESSION_EVENTS);
    sl_free(n_rows);
    /* ... and change nothing that is read. */
    twice = aggregates(f);
    ASSERT_EQ_STR(twice, once);
    sl_free(twice);
    expect_exact_aggregates(f);
    /* Merges collapse the raw rows to one per event, the latest version kept, and leave
     * the aggregates as they were. */
    {
        char sql[256];

        snprintf(sql, sizeof(sql), "OPTIMIZE TABLE %s.events FINAL", f->db);
        exec_ok(f->ch, sql);
        snprintf(sql, sizeof(sql), "OPTIMIZE TABLE %s.sessions FINAL", f->db);
        exec_ok(f->ch, sql);
    }
    expect_query(f, "SELECT count(), min(version), max(version) FROM {db}.events "
                    "FORMAT TabSeparated", "14\t2000\t3000\n");
    twice = aggregates(f);
    ASSERT_EQ_STR(twice, once);
    sl_free(twice);
    sl_free(once);
}

static void test_schema_redelivery_counts_once(void)
{
    struct fixture f;

    fixture_open(&f);
    apply_ok(&f, INGEST_SCHEMA_DETECT);
    check_redelivery(&f);
    fixture_close(&f);
}

/*
 * The modern DDL: LowCardinality(String) where it pays. On 18.16 LowCardinality needs its
 * experimental setting, which the client sends in every request's URL here; a modern server
 * needs none. The same events must give the same numbers.
 */
static void test_schema_modern_ddl(void)
{
    struct fixture f;
    struct sl_ch *probe;
    struct sl_err err;
    int major = 0, minor = 0, patch = 0;

    fixture_open(&f);
    probe = f.ch;
    ASSERT_OK(sl_ch_server_version(probe, &major, &minor, &patch, &err), &err);
    fixture_close(&f);
    fixture_open_with(&f, major < INGEST_SCHEMA_MODERN_MIN_MAJOR ?
                      "allow_experimental_low_cardinality_type=1" : NULL);
    apply_ok(&f, INGEST_SCHEMA_MODERN);
    expect_query(&f, "SELECT table, name, type FROM system.columns WHERE database = '{db}' "
                     "AND name IN ('tenant_id', 'type', 'country_code') AND table NOT LIKE '%_mv' "
                     "ORDER BY table, name FORMAT TabSeparated",
                 "events\tcountry_code\tLowCardinality(String)\n"
                 "events\ttenant_id\tLowCardinality(String)\n"
                 "events\ttype\tString\n"
                 "events_daily\tcountry_code\tLowCardinality(String)\n"
                 "events_daily\ttenant_id\tLowCardinality(String)\n"
                 "events_daily\ttype\tString\n"
                 "events_hourly\tcountry_code\tLowCardinality(String)\n"
                 "events_hourly\ttenant_id\tLowCardinality(String)\n"
                 "events_hourly\ttype\tString\n"
                 "sessions\ttenant_id\tLowCardinality(String)\n");
    /* Applying again, in either mode, keeps what exists. */
    apply_ok(&f, INGEST_SCHEMA_MODERN);
    apply_ok(&f, INGEST_SCHEMA_PORTABLE);
    check_redelivery(&f);
    fixture_close(&f);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_schema_apply_is_idempotent),
        TEST_CASE(test_schema_apply_concurrently),
        TEST_CASE(test_schema_adds_missing_columns),
        TEST_CASE(test_schema_refuses_wrong_engine),
        TEST_CASE(test_schema_client_naming_missing_database),
        TEST_CASE(test_schema_rows_read_back),
        TEST_CASE(test_schema_redelivery_counts_once),
        TEST_CASE(test_schema_modern_ddl),
        {NULL, NULL},
    };

    sl_alloc_init_jansson();
    return test_main(argc, argv, cases);
}

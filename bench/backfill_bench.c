/*
 * sluice-backfill-bench: rows/s the backfill recomputes for the hourly rollup and for
 * sessions over a 10M-row events table, against a ceiling measured in the same run (the
 * same recomputing SELECT, aggregated and thrown away: no staging, swap, catch-up or
 * verification), and the live load's insert rate while a backfill runs against without.
 *
 * It makes its own database (sluice_bench_backfill_<pid>) on SLUICE_TEST_CLICKHOUSE_URL (or
 * SLUICE_CLICKHOUSE_URL), applies sluice's schema, loads SLUICE_BENCH_ROWS events (default
 * 10,000,000) of one tenant over SLUICE_BENCH_DAYS days (default 4) with INSERT ... SELECT
 * FROM system.numbers (through the views, as the loader would), measures, and drops the
 * database. The "live load" is a second tenant's events inserted the same way in 100,000-row
 * batches for SLUICE_BENCH_LIVE_S seconds (default 20), once alone and once while the hourly
 * backfill of the big tenant runs in a loop, unthrottled and then with the runner's rows/s cap
 * at SLUICE_BENCH_THROTTLE (default 100,000). Prints figures; never run by ctest.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "backfill.h"
#include "ch.h"
#include "schema.h"

#define DAY1 INT64_C(1795478400)
#define LIVE_BATCH 100000

extern char **environ;

struct bench {
    struct sl_ch_settings settings;
    struct sl_cfg_section sec;
    struct sl_ch *ch;
    char db[96];
    int64_t rows;
    int64_t days;
    int64_t live_s;
    int64_t throttle;
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void die(const char *what, const struct sl_err *err)
{
    fprintf(stderr, "sluice-backfill-bench: %s: %s\n", what, err != NULL ? err->msg : "");
    exit(1);
}

static int64_t env_int(const char *name, int64_t def)
{
    const char *v = getenv(name);

    return v != NULL && v[0] != '\0' ? strtoll(v, NULL, 10) : def;
}

static struct sl_ch *client(struct bench *b)
{
    struct sl_ch *ch = NULL;
    struct sl_err err;

    if (sl_ch_create(&ch, &b->settings, &err) != 0) {
        die("client", &err);
    }
    return ch;
}

static void exec_on(struct sl_ch *ch, const char *sql)
{
    struct sl_err err;

    if (sl_ch_exec(ch, sql, &err) != 0) {
        die(sql, &err);
    }
}

/* Inserts n events of tenant, ids from first, spread over days days from DAY1, with the
 * loader's version (its insert time in ms) set to version. */
static void insert_events(struct bench *b, struct sl_ch *ch, const char *tenant, int64_t first,
                          int64_t n, int64_t days, int64_t version)
{
    char sql[4096];

    snprintf(sql, sizeof(sql),
             "INSERT INTO %s.events (id, tenant_id, type, name, ts, ts_ms, session_id, "
             "anonymous_id, user_id, path, severity, country_code, browser, os, device, "
             "version) SELECT toUUID(concat('00000000-0000-4000-8000-', "
             "substring(toString(1000000000000 + n), 2, 12))), '%s', "
             "arrayElement(['pageview', 'click', 'scroll', 'custom', 'log'], n %% 5 + 1), "
             "if(n %% 5 = 3, 'signup', ''), toDateTime(%lld + (n * 7919) %% %lld), "
             "toUInt16(n %% 1000), concat('s', toString(intDiv(n, 20) %% 500000)), "
             "concat('a', toString(n %% 100000)), if(n %% 3 = 0, concat('u', toString(n %% "
             "50000)), ''), concat('/p', toString(n %% 40)), if(n %% 5 = 4, "
             "arrayElement(['info', 'error'], n %% 2 + 1), ''), arrayElement(['FR', 'DE', "
             "'US', 'GB'], n %% 4 + 1), arrayElement(['Chrome', 'Firefox', 'Safari'], n %% 3 + "
             "1), 'Linux', 'Desktop', %lld FROM (SELECT number + %lld AS n FROM "
             "system.numbers LIMIT %lld)",
             b->db, tenant, (long long)DAY1, (long long)(days * 86400), (long long)version,
             (long long)first, (long long)n);
    exec_on(ch, sql);
}

/* Runs the kind's backfill over every day (1d chunks) of the big tenant; with max_rows_per_s
 * it sleeps after each chunk as the runner does (SLUICE_JOB_BACKFILL_MAX_ROWS_PER_S). */
static double run_backfill(struct bench *b, struct sl_ch *ch, const char *kind,
                           int64_t max_rows_per_s, int64_t *rows)
{
    const struct backfill_kind *k = backfill_kind_find(kind);
    struct backfill_chunk_opts opts = {.tag = "bench", .catchup_margin_s = 600};
    struct backfill_chunk_result res;
    struct sl_err err;
    double t0 = now_s();

    *rows = 0;
    for (int64_t d = 0; d < b->days; d++) {
        opts.now_s = wall_ms() / 1000;
        double c0 = now_s();

        if (backfill_chunk_run(ch, b->db, k, "tn_big", DAY1 + d * 86400, DAY1 + (d + 1) * 86400,
                               &opts, &res, &err) != 0) {
            die("backfill chunk", &err);
        }
        *rows += res.rows_read;
        if (max_rows_per_s > 0) {
            double want = (double)res.rows_read / (double)max_rows_per_s - (now_s() - c0);

            if (want > 0) {
                struct timespec ts = {.tv_sec = (time_t)want,
                                      .tv_nsec = (long)((want - (double)(time_t)want) * 1e9)};

                nanosleep(&ts, NULL);
            }
        }
    }
    return now_s() - t0;
}

#define CEIL_SESSIONS \
    "tenant_id, toDate(ts) AS day, session_id, minState(toUInt64(ts) " \
    "* 1000 + ts_ms), maxState(toUInt64(ts) * 1000 + ts_ms), " \
    "uniqExactState(id), uniqExactIfState(id, type = 'pageview'), " \
    "uniqExactIfState(id, type IN ('click', 'custom', 'identify')), " \
    "argMinState(path, (type != 'pageview', toUInt64(ts) * 1000 + " \
    "ts_ms, id)), argMaxState(path, (type = 'pageview', " \
    "toUInt64(ts) * 1000 + ts_ms, id)), maxState(user_id), " \
    "argMinState((anonymous_id, user_agent, ip, url, path, referrer, " \
    "title, screen, viewport, timezone, language), (toUInt64(ts) * " \
    "1000 + ts_ms, id)) FROM %s.events WHERE session_id != '' AND " \
    "tenant_id = 'tn_big' AND ts >= toDateTime(%lld) AND ts < " \
    "toDateTime(%lld) GROUP BY tenant_id, day, session_id"
#define CEIL_HOURLY \
    "tenant_id, toStartOfHour(ts) AS hour, type, name, path, " \
    "severity, country_code, browser, os, device, " \
    "uniqExactState(id), uniqIfState(if(user_id != '', user_id, " \
    "anonymous_id), user_id != '' OR anonymous_id != ''), " \
    "uniqIfState(session_id, session_id != '') FROM %s.events WHERE " \
    "tenant_id = 'tn_big' AND ts >= toDateTime(%lld) AND ts < " \
    "toDateTime(%lld) GROUP BY tenant_id, hour, type, name, path, " \
    "severity, country_code, browser, os, device"

/* The ceiling: the same recomputing aggregation per day, its result discarded (FORMAT
 * Null), as if a backfill were only its aggregation. */
static double run_ceiling(struct bench *b, const char *kind)
{
    char inner[4096], sql[4608];
    double t0 = now_s();

    for (int64_t d = 0; d < b->days; d++) {
        long long from = (long long)(DAY1 + d * 86400), to = from + 86400;

        if (strcmp(kind, "sessions") == 0) {
            snprintf(inner, sizeof(inner), CEIL_SESSIONS, b->db, from, to);
        }
        else {
            snprintf(inner, sizeof(inner), CEIL_HOURLY, b->db, from, to);
        }
        /* Every state computed and serialized, then discarded by the server. */
        snprintf(sql, sizeof(sql), "SELECT %s FORMAT Null", inner);
        exec_on(b->ch, sql);
    }
    return now_s() - t0;
}

struct live {
    struct bench *b;
    atomic_int *stop;
    int64_t rows;
    double seconds;
};

static void *live_loop(void *arg)
{
    struct live *l = arg;
    struct sl_ch *ch = client(l->b);
    double t0 = now_s();
    int64_t next = 100000000;

    while (atomic_load(l->stop) == 0 && now_s() - t0 < (double)l->b->live_s) {
        insert_events(l->b, ch, "tn_live", next, LIVE_BATCH, l->b->days, wall_ms());
        next += LIVE_BATCH;
        l->rows += LIVE_BATCH;
    }
    l->seconds = now_s() - t0;
    sl_ch_destroy(ch);
    return NULL;
}

/* The live load's rows/s for live_s seconds: alone (with_backfill false), or while the hourly
 * backfill loops with the given rows/s cap (0: none). */
static double live_rate(struct bench *b, bool with_backfill, int64_t cap, int64_t *bf_rows,
                        double *bf_s)
{
    atomic_int stop;
    struct live l = {.b = b, .stop = &stop};
    pthread_t t;

    atomic_init(&stop, 0);
    *bf_rows = 0;
    *bf_s = 0;
    pthread_create(&t, NULL, live_loop, &l);
    if (with_backfill) {
        double t0 = now_s();

        while (now_s() - t0 < (double)b->live_s) {
            int64_t rows = 0;

            *bf_s += run_backfill(b, b->ch, "hourly", cap, &rows);
            *bf_rows += rows;
        }
        atomic_store(&stop, 1);
    }
    pthread_join(t, NULL);
    return (double)l.rows / l.seconds;
}

int main(void)
{
    struct bench b;
    struct sl_err err;
    const char *url = getenv("SLUICE_TEST_CLICKHOUSE_URL");
    char url_env[1024];
    char *env[2] = {url_env, NULL};
    char sql[256];
    double t, ceil_h, ceil_s, bf_h, bf_s, live_alone, live_with, bf_live_s;
    int64_t rows_h, rows_s, bf_live_rows, left;

    memset(&b, 0, sizeof(b));
    setvbuf(stdout, NULL, _IOLBF, 0);
    sl_alloc_init_jansson();
    if (url == NULL || url[0] == '\0') {
        url = getenv("SLUICE_CLICKHOUSE_URL");
    }
    snprintf(url_env, sizeof(url_env), "SLUICE_CLICKHOUSE_URL=%s",
             url != NULL && url[0] != '\0' ? url : "http://127.0.0.1:8123");
    b.sec = SL_CFG_SECTION("clickhouse", sl_ch_cfg_opts, sl_ch_cfg_n_opts, &b.settings);
    if (sl_cfg_load(&b.sec, 1, NULL, env, &err) != 0) {
        die("settings", &err);
    }
    sl_free(b.settings.database);
    b.settings.database = NULL;
    b.settings.timeout_ms = 1800000;
    b.rows = env_int("SLUICE_BENCH_ROWS", 10000000);
    b.days = env_int("SLUICE_BENCH_DAYS", 4);
    b.live_s = env_int("SLUICE_BENCH_LIVE_S", 20);
    b.throttle = env_int("SLUICE_BENCH_THROTTLE", 100000);
    snprintf(b.db, sizeof(b.db), "sluice_bench_backfill_%d", (int)getpid());
    b.ch = client(&b);
    if (ingest_schema_apply_mode(b.ch, b.db, INGEST_SCHEMA_PORTABLE, &err) != 0) {
        die("schema", &err);
    }

    t = now_s();
    for (int64_t first = 0; first < b.rows; first += 1000000) {
        left = b.rows - first < 1000000 ? b.rows - first : 1000000;
        /* Loaded two days ago as far as the rows say: a settled range, as backfills
         * usually are (rows loaded within the catch-up margin would be read twice). */
        insert_events(&b, b.ch, "tn_big", first, left, b.days, wall_ms() - 2 * 86400 * 1000);
    }
    printf("loaded %lld events of one tenant over %lld days through the views in %.1f s "
           "(%.0f rows/s)\n", (long long)b.rows, (long long)b.days, now_s() - t,
           (double)b.rows / (now_s() - t));

    ceil_h = run_ceiling(&b, "hourly");
    bf_h = run_backfill(&b, b.ch, "hourly", 0, &rows_h);
    ceil_s = run_ceiling(&b, "sessions");
    bf_s = run_backfill(&b, b.ch, "sessions", 0, &rows_s);
    printf("%-10s %12s %10s %14s %14s %7s\n", "kind", "rows", "backfill", "backfill rows/s",
           "ceiling rows/s", "ratio");
    printf("%-10s %12lld %9.1fs %14.0f %14.0f %7.2f\n", "hourly", (long long)rows_h, bf_h,
           (double)rows_h / bf_h, (double)rows_h / ceil_h, ceil_h / bf_h);
    printf("%-10s %12lld %9.1fs %14.0f %14.0f %7.2f\n", "sessions", (long long)rows_s, bf_s,
           (double)rows_s / bf_s, (double)rows_s / ceil_s, ceil_s / bf_s);

    live_alone = live_rate(&b, false, 0, &bf_live_rows, &bf_live_s);
    printf("live load (INSERT ... SELECT of %d-event batches through the views): %.0f rows/s "
           "alone\n", LIVE_BATCH, live_alone);
    live_with = live_rate(&b, true, 0, &bf_live_rows, &bf_live_s);
    printf("  while the hourly backfill runs unthrottled: %.0f rows/s (ratio %.2f); the "
           "backfill read %.0f rows/s wall-clock\n", live_with, live_with / live_alone,
           (double)bf_live_rows / bf_live_s);
    live_with = live_rate(&b, true, b.throttle, &bf_live_rows, &bf_live_s);
    printf("  while it runs with MAX_ROWS_PER_S=%lld: %.0f rows/s (ratio %.2f); the backfill "
           "read %.0f rows/s wall-clock\n", (long long)b.throttle, live_with,
           live_with / live_alone, (double)bf_live_rows / bf_live_s);

    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", b.db);
    exec_on(b.ch, sql);
    sl_ch_destroy(b.ch);
    sl_cfg_fini(&b.sec, 1);
    return 0;
}

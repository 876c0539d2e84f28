/*
 * sluice-retention-bench: rows/s the retention job deletes from a 10M-row events table,
 * against a ceiling measured in the same run: the same deletes issued by hand on an
 * identical copy of the table (DROP PARTITION per old day, then one ALTER TABLE DELETE,
 * waited for in system.mutations with a tight poll), and the count() scan rate over the
 * rows that go. It prints partition drop and mutation rates separately.
 *
 * Data: ROWS events over DAYS days before 2026-11-24 (ROWS / DAYS per day), spread evenly
 * over 20 tenants; 10 on a 30-day tier, 10 on a 60-day tier. Retention drops the days past
 * 60 as whole partitions and deletes the 30-day tenants' days 31..60 with one mutation.
 * The loader's views are dropped in the bench database so only `events` is loaded.
 *
 *   SLUICE_CLICKHOUSE_URL=http://127.0.0.1:8123 build/bench/sluice-retention-bench [ROWS]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "ch.h"
#include "log.h"
#include "metrics.h"
#include "retention.h"
#include "schema.h"
#include "store.h"

extern char **environ;

#define NOW_S INT64_C(1795521600)   /* 2026-11-24T12:00:00Z */
#define TODAY_S INT64_C(1795478400) /* 2026-11-24 */
#define DAY_S INT64_C(86400)
#define DAYS 100
#define N_TENANTS 20
#define SHORT_DAYS 30
#define LONG_DAYS 60

struct bench {
    struct sl_ch_settings settings;
    struct sl_cfg_section sec;
    struct sl_ch *ch;
    char db_job[64];
    char db_direct[64];
    char ids[N_TENANTS][SL_STORE_ID_MAX];
    struct sl_store *st;
    char store_path[256];
    int64_t rows;
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const struct sl_err *err)
{
    fprintf(stderr, "sluice-retention-bench: %s: %s\n", what, err != NULL ? err->msg : "");
    exit(1);
}

static void exec_sql(struct bench *b, const char *sql)
{
    struct sl_err err;

    if (sl_ch_exec(b->ch, sql, &err) != 0) {
        fprintf(stderr, "%s\n", sql);
        die("ClickHouse", &err);
    }
}

static int64_t query_int(struct bench *b, const char *sql)
{
    struct sl_ch_result res = {0};
    struct sl_err err;
    int64_t v;

    if (sl_ch_query(b->ch, sql, &res, &err) != 0) {
        fprintf(stderr, "%s\n", sql);
        die("ClickHouse", &err);
    }
    v = strtoll(res.body, NULL, 10);
    sl_ch_result_fini(&res);
    return v;
}

static void setup_store(struct bench *b)
{
    struct sl_tier short_tier = {.name = "short", .retention_days = SHORT_DAYS,
                                 .rate_limit_eps = 100, .burst = 100};
    struct sl_tier long_tier = {.name = "long", .retention_days = LONG_DAYS,
                                .rate_limit_eps = 100, .burst = 100};
    struct sl_err err;
    char sql[128];

    snprintf(b->store_path, sizeof(b->store_path), "/tmp/sluice-retention-bench-%d.db",
             (int)getpid());
    unlink(b->store_path);
    if (sl_store_open(&b->st, b->store_path, 5000, &err) != 0 ||
        sl_store_tier_put(b->st, &short_tier, NOW_S, &err) != 0 ||
        sl_store_tier_put(b->st, &long_tier, NOW_S, &err) != 0) {
        die("tenant store", &err);
    }
    /* Only the bench's tiers count for the partition boundary: move the seeded ones to the
     * long retention as well. */
    for (int i = 0; i < 3; i++) {
        static const char *const seeded[] = {"free", "paid", "enterprise"};
        struct sl_tier t;

        if (sl_store_tier_get(b->st, seeded[i], &t, &err) == 0) {
            t.retention_days = LONG_DAYS;
            t.compress_after_hours = 0;
            if (sl_store_tier_put(b->st, &t, NOW_S, &err) != 0) {
                die("tenant store", &err);
            }
        }
    }
    for (int i = 0; i < N_TENANTS; i++) {
        struct sl_tenant t;

        snprintf(sql, sizeof(sql), "bench-%02d", i);
        if (sl_store_tenant_create(b->st, sql, i % 2 == 0 ? "short" : "long", NOW_S, &t,
                                   &err) != 0) {
            die("tenant store", &err);
        }
        snprintf(b->ids[i], sizeof(b->ids[i]), "%s", t.id);
    }
}

/* Creates db with the loader's schema, drops its views, loads the rows. Returns seconds. */
static double load(struct bench *b, const char *db)
{
    struct sl_ch_buf sql;
    struct sl_err err;
    static const char *const views[] = {"sessions_mv", "events_hourly_mv", "events_daily_mv"};
    char text[256];
    double t0;

    snprintf(text, sizeof(text), "DROP DATABASE IF EXISTS %s", db);
    exec_sql(b, text);
    if (ingest_schema_apply(b->ch, db, &err) != 0) {
        die("schema", &err);
    }
    for (size_t i = 0; i < 3; i++) {
        snprintf(text, sizeof(text), "DROP TABLE IF EXISTS %s.%s", db, views[i]);
        exec_sql(b, text);
    }
    sl_ch_buf_init(&sql, 1 << 16);
    if (sl_ch_buf_appendf(&sql, "INSERT INTO %s.events (id, tenant_id, type, ts, session_id, "
                          "path, version) SELECT generateUUIDv4(), arrayElement([", db) != 0) {
        die("out of memory", NULL);
    }
    for (int i = 0; i < N_TENANTS; i++) {
        if ((i > 0 && sl_ch_buf_append_str(&sql, ", ") != 0) ||
            sl_ch_quote(&sql, b->ids[i], strlen(b->ids[i])) != 0) {
            die("out of memory", NULL);
        }
    }
    if (sl_ch_buf_appendf(&sql, "], number %% %d + 1), 'pageview', toDateTime(%" PRId64
                          " - intDiv(number, %" PRId64 ") * 86400 + number %% 86400), '', '/p', "
                          "1 FROM system.numbers LIMIT %" PRId64, N_TENANTS, TODAY_S,
                          b->rows / DAYS, b->rows) != 0) {
        die("out of memory", NULL);
    }
    t0 = now_s();
    exec_sql(b, sql.data);
    sl_ch_buf_fini(&sql);
    return now_s() - t0;
}

static void wait_mutations(struct bench *b, const char *db)
{
    char sql[256];

    snprintf(sql, sizeof(sql), "SELECT count() FROM system.mutations WHERE database = '%s' "
             "AND is_done = 0 FORMAT TabSeparated", db);
    while (query_int(b, sql) > 0) {
        struct timespec ts = {.tv_nsec = 5 * 1000000};

        nanosleep(&ts, NULL);
    }
}

/* The same deletes by hand: partitions, then one mutation. Times each. */
static void direct(struct bench *b, double *drop_s, double *mutation_s)
{
    struct sl_ch_buf sql;
    char text[256];
    double t0;

    t0 = now_s();
    for (int d = LONG_DAYS + 1; d < DAYS; d++) {
        time_t t = (time_t)(TODAY_S - d * DAY_S);
        struct tm tm;
        char part[16];

        gmtime_r(&t, &tm);
        strftime(part, sizeof(part), "%Y%m%d", &tm);
        snprintf(text, sizeof(text), "ALTER TABLE %s.events DROP PARTITION %s", b->db_direct,
                 part);
        exec_sql(b, text);
    }
    *drop_s = now_s() - t0;
    sl_ch_buf_init(&sql, 1 << 16);
    if (sl_ch_buf_appendf(&sql, "ALTER TABLE %s.events DELETE WHERE tenant_id IN (",
                          b->db_direct) != 0) {
        die("out of memory", NULL);
    }
    for (int i = 0; i < N_TENANTS; i += 2) {
        if ((i > 0 && sl_ch_buf_append_str(&sql, ", ") != 0) ||
            sl_ch_quote(&sql, b->ids[i], strlen(b->ids[i])) != 0) {
            die("out of memory", NULL);
        }
    }
    if (sl_ch_buf_appendf(&sql, ") AND ts < toDateTime(%" PRId64 ")",
                          TODAY_S - SHORT_DAYS * DAY_S) != 0) {
        die("out of memory", NULL);
    }
    t0 = now_s();
    exec_sql(b, sql.data);
    wait_mutations(b, b->db_direct);
    *mutation_s = now_s() - t0;
    sl_ch_buf_fini(&sql);
}

int main(int argc, char **argv)
{
    struct bench b = {0};
    struct retention_settings rs = {0};
    struct sl_cfg_section rsec =
        SL_CFG_SECTION("retention", retention_cfg_opts, retention_cfg_n_opts, &rs);
    struct sl_metrics *metrics = NULL;
    struct sched_worker_env env;
    struct sl_ch_settings plain;
    struct sched_run run = {0};
    void *ctx = NULL;
    char *orig_db = NULL;
    struct sl_err err;
    char sql[2048];
    double load_s, copy_s, scan_s, job_s, drop_s, mutation_s;
    int64_t before, after, dropped_rows, mutated_rows, scanned;
    enum sched_outcome out;

    b.rows = argc > 1 ? strtoll(argv[1], NULL, 10) : 10000000;
    if (b.rows < DAYS * N_TENANTS) {
        fprintf(stderr, "usage: sluice-retention-bench [ROWS >= %d]\n", DAYS * N_TENANTS);
        return 2;
    }
    sl_log_configure("warn", NULL);
    b.sec = SL_CFG_SECTION("clickhouse", sl_ch_cfg_opts, sl_ch_cfg_n_opts, &b.settings);
    if (sl_cfg_load(&b.sec, 1, NULL, environ, &err) != 0 ||
        sl_cfg_load(&rsec, 1, NULL, environ, &err) != 0) {
        die("settings", &err);
    }
    b.settings.timeout_ms = 600000;
    plain = b.settings;
    plain.database = NULL;
    if (sl_ch_create(&b.ch, &plain, &err) != 0) {
        die("ClickHouse client", &err);
    }
    snprintf(b.db_job, sizeof(b.db_job), "sluice_bench_retention_job_%d", (int)getpid());
    snprintf(b.db_direct, sizeof(b.db_direct), "sluice_bench_retention_direct_%d",
             (int)getpid());
    setup_store(&b);

    load_s = load(&b, b.db_job);
    snprintf(sql, sizeof(sql), "SELECT count() FROM %s.events FORMAT TabSeparated", b.db_job);
    before = query_int(&b, sql);
    copy_s = load(&b, b.db_direct);
    printf("loaded %" PRId64 " rows in %.1f s (%.0f rows/s); copy in %.1f s\n", before, load_s,
           (double)before / load_s, copy_s);

    /* What goes: days past LONG_DAYS whole, and the short tenants' days SHORT..LONG. */
    snprintf(sql, sizeof(sql), "SELECT count() FROM %s.events WHERE ts < toDateTime(%" PRId64
             ") FORMAT TabSeparated", b.db_job, TODAY_S - LONG_DAYS * DAY_S);
    dropped_rows = query_int(&b, sql);
    snprintf(sql, sizeof(sql), "SELECT count() FROM %s.events WHERE ts >= toDateTime(%" PRId64
             ") AND ts < toDateTime(%" PRId64 ") AND tenant_id IN (SELECT arrayJoin(["
             "'%s','%s','%s','%s','%s','%s','%s','%s','%s','%s'])) FORMAT TabSeparated",
             b.db_job, TODAY_S - LONG_DAYS * DAY_S, TODAY_S - SHORT_DAYS * DAY_S, b.ids[0],
             b.ids[2], b.ids[4], b.ids[6], b.ids[8], b.ids[10], b.ids[12], b.ids[14], b.ids[16],
             b.ids[18]);
    mutated_rows = query_int(&b, sql);

    /* Ceiling 1: a count() scan of the whole table. */
    snprintf(sql, sizeof(sql), "SELECT count() FROM %s.events WHERE tenant_id != '' AND "
             "ts > toDateTime(0) FORMAT TabSeparated", b.db_job);
    scan_s = now_s();
    scanned = query_int(&b, sql);
    scan_s = now_s() - scan_s;

    /* The job. */
    orig_db = b.settings.database;
    b.settings.database = b.db_job;
    if (sl_metrics_create(&metrics) != 0) {
        die("out of memory", NULL);
    }
    env = (struct sched_worker_env){.ch = &b.settings, .metrics = metrics};
    if (retention_worker.create(&rs, &env, &ctx, &err) != 0) {
        die("retention create", &err);
    }
    run = (struct sched_run){.job = "retention", .run_id = 1, .slot_s = NOW_S, .kind = "manual",
                             .now_s = NOW_S, .store = b.st, .checkpoint = ""};
    job_s = now_s();
    out = retention_worker.run(ctx, &run);
    job_s = now_s() - job_s;
    if (out != SCHED_DONE) {
        die("retention run", &run.err);
    }
    snprintf(sql, sizeof(sql), "SELECT count() FROM %s.events FORMAT TabSeparated", b.db_job);
    after = query_int(&b, sql);

    /* Ceiling 2: the same deletes by hand on the copy. */
    direct(&b, &drop_s, &mutation_s);
    snprintf(sql, sizeof(sql), "SELECT count() FROM %s.events FORMAT TabSeparated",
             b.db_direct);

    printf("rows to delete: %" PRId64 " (%" PRId64 " in %d whole partitions, %" PRId64
           " by one mutation)\n", dropped_rows + mutated_rows, dropped_rows,
           DAYS - LONG_DAYS - 1, mutated_rows);
    printf("retention job:   %" PRId64 " rows deleted in %.2f s = %.0f rows/s (left %" PRId64
           ", job says %" PRId64 ")\n", before - after, job_s, (double)(before - after) / job_s,
           after, run.rows);
    printf("by hand:         partitions %.3f s = %.0f rows/s; mutation %.2f s = %.0f rows/s; "
           "together %.0f rows/s (left %" PRId64 ")\n", drop_s, (double)dropped_rows / drop_s,
           mutation_s, (double)mutated_rows / mutation_s,
           (double)(dropped_rows + mutated_rows) / (drop_s + mutation_s), query_int(&b, sql));
    printf("count() scan:    %" PRId64 " rows in %.3f s = %.0f rows/s\n", scanned, scan_s,
           (double)scanned / scan_s);
    printf("job / by hand:   %.2f (time by hand / job time)\n", (drop_s + mutation_s) / job_s);

    retention_worker.destroy(ctx);
    sl_metrics_destroy(metrics);
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", b.db_job);
    exec_sql(&b, sql);
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", b.db_direct);
    exec_sql(&b, sql);
    sl_store_close(b.st);
    unlink(b.store_path);
    b.settings.database = orig_db;
    sl_ch_destroy(b.ch);
    sl_cfg_fini(&rsec, 1);
    sl_cfg_fini(&b.sec, 1);
    return 0;
}

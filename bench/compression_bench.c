/*
 * sluice-compression-bench: rows/s the compression job moves to cold storage (rollup proof,
 * export, zstd part, verification, raw delete) on a generated events table, against a
 * ceiling taken in the same run on the same rows: a plain
 * `SELECT <columns> FROM events WHERE tenant_id = .. FORMAT JSONEachRow` streamed to nowhere.
 *
 *   sluice-compression-bench [--clickhouse URL] [--rows N] [--days D] [--keep]
 *
 * URL defaults to SLUICE_TEST_CLICKHOUSE_URL. N rows (default 10,000,000) of one free-tier
 * tenant are spread over D whole days (default 10), generated with INSERT .. SELECT from
 * system.numbers one day at a time (through the views, as the loader's inserts go), in a
 * database of its own that is dropped at the end (--keep leaves it). Figures go to stdout.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "ch.h"
#include "compress.h"
#include "compress_int.h"
#include "log.h"
#include "metrics.h"
#include "schema.h"
#include "store.h"

#define DAY0 INT64_C(1792800000) /* 2026-10-24T00:00:00Z */

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const struct sl_err *err)
{
    fprintf(stderr, "compression-bench: %s: %s\n", what, err != NULL ? err->msg : "");
    exit(1);
}

static void exec_or_die(struct sl_ch *ch, const char *sql)
{
    struct sl_err err;

    if (sl_ch_exec(ch, sql, &err) != 0) {
        fprintf(stderr, "compression-bench: %s\n", sql);
        die("ClickHouse", &err);
    }
}

struct sink {
    uint64_t bytes;
    uint64_t rows;
};

static int count_sink(const void *data, size_t len, void *user)
{
    struct sink *s = user;
    const char *p = data;

    s->bytes += len;
    for (const char *q = p; (q = memchr(q, '\n', len - (size_t)(q - p))) != NULL; q++) {
        s->rows++;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *url = getenv("SLUICE_TEST_CLICKHOUSE_URL");
    int64_t rows = 10000000, days = 10;
    bool keep = false;
    char db[96], env_url[1024], env_db[256], env_cold[1200], sql[8192];
    char *env[3] = {env_url, env_db, NULL};
    char *wenv[2] = {env_cold, NULL};
    char dir[] = "/tmp/sluice-compression-bench-XXXXXX";
    char store_path[1200], cold[1100], cols[COMPRESS_COLD_COLUMNS_MAX];
    struct sl_ch_settings chs = {0}, nodb;
    struct compress_settings ws = {0};
    struct sl_cfg_section chsec = SL_CFG_SECTION("clickhouse", sl_ch_cfg_opts, sl_ch_cfg_n_opts,
                                                 &chs);
    struct sl_cfg_section wsec = SL_CFG_SECTION("compression", compress_worker.opts,
                                                compress_worker.n_opts, &ws);
    struct sl_ch *ch = NULL;
    struct sl_store *st = NULL;
    struct sl_metrics *metrics = NULL;
    struct sl_tenant t;
    struct sl_ch_buf q;
    struct sink sink = {0};
    struct sched_run run;
    void *ctx = NULL;
    struct sl_err err;
    double t0, gen_s, ceil_s, comp_s;
    enum sched_outcome outcome;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--clickhouse") == 0 && i + 1 < argc) {
            url = argv[++i];
        }
        else if (strcmp(argv[i], "--rows") == 0 && i + 1 < argc) {
            rows = strtoll(argv[++i], NULL, 10);
        }
        else if (strcmp(argv[i], "--days") == 0 && i + 1 < argc) {
            days = strtoll(argv[++i], NULL, 10);
        }
        else if (strcmp(argv[i], "--keep") == 0) {
            keep = true;
        }
        else {
            fprintf(stderr, "usage: sluice-compression-bench [--clickhouse URL] [--rows N] "
                            "[--days D] [--keep]\n");
            return 2;
        }
    }
    if (url == NULL || rows < days || days < 1 || days > 60) {
        fprintf(stderr, "compression-bench: need --clickhouse URL (or "
                        "SLUICE_TEST_CLICKHOUSE_URL), rows >= days, 1 <= days <= 60\n");
        return 2;
    }
    sl_log_configure("warn", NULL);
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(db, sizeof(db), "sluice_bench_compression_%d", (int)getpid());
    snprintf(env_url, sizeof(env_url), "SLUICE_CLICKHOUSE_URL=%s", url);
    snprintf(env_db, sizeof(env_db), "SLUICE_CLICKHOUSE_DATABASE=%s", db);
    snprintf(cold, sizeof(cold), "%s/cold", dir);
    snprintf(env_cold, sizeof(env_cold), "SLUICE_COLD_DIR=%s", cold);
    snprintf(store_path, sizeof(store_path), "%s/sluice.db", dir);
    if (sl_cfg_load(&chsec, 1, NULL, env, &err) != 0 || sl_cfg_load(&wsec, 1, NULL, wenv, &err)) {
        die("settings", &err);
    }
    chs.timeout_ms = 3600 * 1000;
    nodb = chs;
    nodb.database = NULL;
    if (sl_ch_create(&ch, &nodb, &err) != 0 || ingest_schema_apply(ch, db, &err) != 0) {
        die("schema", &err);
    }
    sl_ch_destroy(ch);
    if (sl_ch_create(&ch, &chs, &err) != 0 ||
        compress_sql_columns(ch, db, cols, sizeof(cols), &err) != 0) {
        die("client", &err);
    }
    if (sl_store_open(&st, store_path, 5000, &err) != 0 ||
        sl_store_tenant_create(st, "bench", "free", DAY0, &t, &err) != 0) {
        die("store", &err);
    }

    /* Rows: one INSERT .. SELECT per day, through the views like the loader's inserts. */
    printf("compression-bench: %" PRId64 " rows over %" PRId64 " days, tenant %s, database %s\n",
           rows, days, t.id, db);
    t0 = now_s();
    for (int64_t d = 0; d < days; d++) {
        int64_t n = rows / days + (d < rows % days ? 1 : 0);

        snprintf(sql, sizeof(sql),
                 "INSERT INTO `%s`.events (id, tenant_id, type, name, ts, ts_ms, received_at, "
                 "session_id, anonymous_id, user_id, properties, user_agent, ip, url, path, "
                 "referrer, title, language, country_code, country, city, browser, "
                 "browser_version, os, device, enrichment_version, version) "
                 "SELECT generateUUIDv4(), '%s', ['pageview', 'click', 'custom', "
                 "'scroll'][number %% 4 + 1], if(number %% 4 = 2, 'signup', ''), "
                 "toDateTime(%" PRId64 " + intDiv(number * 86400, %" PRId64 ")) AS t, "
                 "number %% 1000, t + 1, concat('s', toString(intDiv(number, 20))), "
                 "concat('a', toString(intDiv(number, 20))), if(number %% 5 = 0, concat('u', "
                 "toString(number %% 5000)), ''), concat('{\"n\":', toString(number), '}'), "
                 "'Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0', "
                 "concat('198.51.', toString(number %% 250), '.', toString(number %% 200)), "
                 "concat('https://shop.example.com/p/', toString(number %% 500)), "
                 "concat('/p/', toString(number %% 500)), 'https://www.google.com/', "
                 "concat('Product ', toString(number %% 500)), 'en-US', ['US', 'DE', 'FR', "
                 "'GB'][number %% 4 + 1], 'Somewhere', 'Town', 'Firefox', '120.0', 'Linux', "
                 "'Other', 2, 1795000000000 + number FROM system.numbers LIMIT %" PRId64,
                 db, t.id, DAY0 + d * 86400, n, n);
        exec_or_die(ch, sql);
    }
    gen_s = now_s() - t0;
    printf("  generated in %.1f s (%.0f rows/s through the views)\n", gen_s,
           (double)rows / gen_s);

    /* Ceiling: the same rows, read out as JSONEachRow and dropped. */
    sl_ch_buf_init(&q, 1 << 16);
    if (sl_ch_buf_append_str(&q, "SELECT ") != 0 || compress_sql_column_list(&q, cols) != 0 ||
        sl_ch_buf_appendf(&q, " FROM `%s`.events WHERE tenant_id = '%s' FORMAT JSONEachRow", db,
                          t.id) != 0) {
        die("out of memory", NULL);
    }
    t0 = now_s();
    if (sl_ch_query_stream(ch, q.data, count_sink, &sink, &err) != 0) {
        die("ceiling query", &err);
    }
    ceil_s = now_s() - t0;
    sl_ch_buf_fini(&q);
    printf("  ceiling (SELECT .. FORMAT JSONEachRow to nowhere): %" PRIu64 " rows, %.0f MB in "
           "%.1f s = %.0f rows/s\n", sink.rows, (double)sink.bytes / 1e6, ceil_s,
           (double)sink.rows / ceil_s);

    /* The job: every day is due at DAY0 + days + 2. */
    {
        struct sched_worker_env wenv_s = {.ch = &chs, .metrics = NULL};

        ws.max_chunks = days;
        ws.query_timeout_s = 3600;
        ws.mutation_timeout_s = 3600;
        if (sl_metrics_create(&metrics) != 0) {
            die("metrics", NULL);
        }
        wenv_s.metrics = metrics;
        if (compress_worker.create(&ws, &wenv_s, &ctx, &err) != 0) {
            die("worker", &err);
        }
    }
    memset(&run, 0, sizeof(run));
    run.job = "compression";
    run.run_id = 1;
    run.slot_s = DAY0 + (days + 2) * 86400;
    run.kind = "manual";
    run.now_s = run.slot_s;
    run.store = st;
    run.checkpoint = "";
    t0 = now_s();
    outcome = compress_worker.run(ctx, &run);
    comp_s = now_s() - t0;
    if (outcome != SCHED_DONE) {
        die("compression run", &run.err);
    }
    printf("  compression (prove rollups, export, zstd, verify, delete): %" PRId64 " rows in "
           "%.1f s = %.0f rows/s, %.0f MB cold (%.1f bytes/row)\n", run.rows, comp_s,
           (double)run.rows / comp_s,
           sl_metrics_counter_value(((struct compress_ctx *)ctx)->m_bytes) / 1e6,
           (double)sl_metrics_counter_value(((struct compress_ctx *)ctx)->m_bytes) /
               (double)(run.rows > 0 ? run.rows : 1));
    printf("  ratio: %.2f of the ceiling\n", ((double)run.rows / comp_s) /
                                                 ((double)sink.rows / ceil_s));

    compress_worker.destroy(ctx);
    if (!keep) {
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS `%s`", db);
        exec_or_die(ch, sql);
        snprintf(sql, sizeof(sql), "rm -rf '%s'", dir);
        if (system(sql) != 0) {
            fprintf(stderr, "compression-bench: could not remove %s\n", dir);
        }
    }
    sl_ch_destroy(ch);
    sl_store_close(st);
    sl_metrics_destroy(metrics);
    sl_cfg_fini(&chsec, 1);
    sl_cfg_fini(&wsec, 1);
    return 0;
}

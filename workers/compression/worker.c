/*
 * The compression job's descriptor and its run: which tenant-days are due (tiers with
 * compress_after_hours > 0, whole UTC days that ended that long ago and still have raw
 * events, plus days a previous run left half done), then one chunk each (chunk.c) until
 * the per-run limit, a stop request or a failure. Progress lives in cold_exports (the state
 * of each day's last part), so a killed run resumes where it stopped; the scheduler
 * checkpoint records the last finished chunk for people.
 */
#include "compress.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "compress_int.h"
#include "log.h"
#include "store_cold.h"

#define COMPONENT "compression"

static const struct sl_cfg_opt compress_opts[] = {
    {.key = "SLUICE_COLD_DIR", .type = SL_CFG_STRING, .def = "/var/lib/sluice/cold",
     .offset = offsetof(struct compress_settings, cold_dir), .check = compress_cold_check_dir,
     .desc = "Cold storage root (absolute; local or mounted): compressed raw events as "
             "<dir>/<tenant>/<YYYY-MM-DD>/part-NNNN.jsonl.zst with a manifest each."},
    {.key = "SLUICE_JOB_COMPRESSION_MAX_CHUNKS", .type = SL_CFG_INT, .def = "200", .min = 1,
     .max = 100000, .offset = offsetof(struct compress_settings, max_chunks),
     .desc = "Tenant-days compression handles per run; the rest wait for the next run."},
    {.key = "SLUICE_JOB_COMPRESSION_MUTATION_TIMEOUT_S", .type = SL_CFG_INT, .def = "900",
     .min = 1, .max = 86400, .offset = offsetof(struct compress_settings, mutation_timeout_s),
     .desc = "How long compression waits for a raw delete (ALTER TABLE DELETE) to finish "
             "before the run fails (the verified part is kept; the next run waits again)."},
    {.key = "SLUICE_JOB_COMPRESSION_QUERY_TIMEOUT_S", .type = SL_CFG_INT, .def = "1800",
     .min = 1, .max = 86400, .offset = offsetof(struct compress_settings, query_timeout_s),
     .desc = "Longest single ClickHouse request of compression (a day's export streams in "
             "one)."},
    {.key = "SLUICE_JOB_COMPRESSION_ZSTD_LEVEL", .type = SL_CFG_INT, .def = "3", .min = 1,
     .max = 19, .offset = offsetof(struct compress_settings, zstd_level),
     .desc = "zstd level of cold parts (1 fastest .. 19 smallest)."},
    {.key = "SLUICE_JOB_COMPRESSION_RESTORE_HOLD_HOURS", .type = SL_CFG_INT, .def = "168",
     .min = 0, .max = 87600, .offset = offsetof(struct compress_settings, restore_hold_hours),
     .desc = "Hours a day brought back by `sluice restore` stays raw before compression "
             "takes it again."},
};

static void compress_destroy(void *ctx)
{
    struct compress_ctx *c = ctx;

    if (c == NULL) {
        return;
    }
    sl_ch_destroy(c->ch);
    sl_free(c->database);
    sl_free(c->cold_dir);
    sl_free(c);
}

static int compress_create(const void *settings, const struct sched_worker_env *env,
                           void **ctx_out, struct sl_err *err)
{
    const struct compress_settings *s = settings;
    static const char *const outcome[] = {"outcome"};
    struct sl_ch_settings chs = *env->ch;
    struct sl_metrics_family *f;
    struct compress_ctx *c = NULL;
    int rc;

    *ctx_out = NULL;
    if (s->cold_dir == NULL || s->cold_dir[0] != '/') {
        return sl_err_set(err, SL_EINVAL, "SLUICE_COLD_DIR must be an absolute path, got '%s'",
                          s->cold_dir != NULL ? s->cold_dir : "");
    }
    if (env->ch->database == NULL || env->ch->database[0] == '\0') {
        return sl_err_set(err, SL_EINVAL, "compression needs SLUICE_CLICKHOUSE_DATABASE");
    }
    c = sl_calloc(1, sizeof(*c));
    if (c == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    c->database = sl_strdup(env->ch->database);
    c->cold_dir = sl_strdup(s->cold_dir);
    if (c->database == NULL || c->cold_dir == NULL) {
        compress_destroy(c);
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    c->max_chunks = s->max_chunks;
    c->mutation_timeout_ms = s->mutation_timeout_s * 1000;
    c->zstd_level = (int)s->zstd_level;
    c->restore_hold_s = s->restore_hold_hours * 3600;
    chs.timeout_ms = s->query_timeout_s * 1000;
    rc = sl_ch_create(&c->ch, &chs, err);
    if (rc != 0) {
        compress_destroy(c);
        return rc;
    }
    if (env->metrics != NULL) {
        f = sl_metrics_counter(env->metrics, "sluice_compression_chunks_total",
                               "Tenant-days the compression job finished or failed",
                               outcome, 1);
        c->m_chunks_done = sl_metrics_series_get(f, (const char *const[]){"done"});
        c->m_chunks_failed = sl_metrics_series_get(f, (const char *const[]){"failed"});
        c->m_rows = sl_metrics_series_get(
            sl_metrics_counter(env->metrics, "sluice_compression_rows_total",
                               "Raw events moved to cold storage and deleted", NULL, 0),
            NULL);
        c->m_bytes = sl_metrics_series_get(
            sl_metrics_counter(env->metrics, "sluice_compression_cold_bytes_total",
                               "Bytes of cold parts written", NULL, 0),
            NULL);
        c->m_refilled = sl_metrics_series_get(
            sl_metrics_counter(env->metrics, "sluice_compression_rollup_refilled_total",
                               "Raw events found missing from a rollup and put back", NULL, 0),
            NULL);
    }
    *ctx_out = c;
    return 0;
}

/* One due tenant-day. */
struct due {
    char tenant[SL_STORE_ID_MAX];
    char day[COMPRESS_COLD_DAY_MAX];
};

struct due_list {
    struct due *items;
    size_t n;
    size_t cap;
};

static int due_add(struct due_list *l, const char *tenant, const char *day)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->items[i].tenant, tenant) == 0 && strcmp(l->items[i].day, day) == 0) {
            return 0;
        }
    }
    if (l->n == l->cap) {
        size_t ncap = l->cap == 0 ? 32 : l->cap * 2;
        struct due *grown = sl_realloc(l->items, ncap * sizeof(*grown));

        if (grown == NULL) {
            return SL_ENOMEM;
        }
        l->items = grown;
        l->cap = ncap;
    }
    snprintf(l->items[l->n].tenant, sizeof(l->items[l->n].tenant), "%s", tenant);
    snprintf(l->items[l->n].day, sizeof(l->items[l->n].day), "%s", day);
    l->n++;
    return 0;
}

static int cmp_due(const void *a, const void *b)
{
    const struct due *x = a, *y = b;
    int c = strcmp(x->tenant, y->tenant);

    return c != 0 ? c : strcmp(x->day, y->day);
}

/* Whether the day was restored less than the hold ago (then it stays raw). */
static bool is_held(const struct compress_ctx *c, const struct sl_cold_day *rows, size_t n,
                    const char *day, int64_t now_s)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rows[i].day, day) == 0) {
            return strcmp(rows[i].state, "restored") == 0 &&
                   rows[i].updated_s + c->restore_hold_s > now_s;
        }
    }
    return false;
}

/* Adds the due days of one tenant: raw days before cutoff_s, and unfinished parts. */
static int tenant_due(struct compress_ctx *c, struct sched_run *run, const char *tenant,
                      int64_t cutoff_s, struct due_list *l, struct sl_err *err)
{
    struct sl_cold_day *rows = NULL;
    struct sl_ch_buf sql;
    struct sl_ch_result res = {0};
    char cutoff_day[COMPRESS_COLD_DAY_MAX];
    size_t n = 0;
    char *line, *save = NULL;
    int rc;

    compress_cold_day_of(cutoff_s, cutoff_day);
    rc = sl_store_cold_list(run->store, tenant, NULL, NULL, &rows, &n, err);
    if (rc != 0) {
        return rc;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if ((strcmp(rows[i].state, "exported") == 0 || strcmp(rows[i].state, "verified") == 0)
            && strcmp(rows[i].day, cutoff_day) < 0) {
            rc = due_add(l, tenant, rows[i].day) == 0 ? 0 : sl_err_set(err, SL_ENOMEM, "oom");
        }
    }
    sl_ch_buf_init(&sql, 4096);
    rc = rc != 0 ? rc : sl_ch_buf_append_str(&sql, "SELECT intDiv(toUInt32(ts), 86400) AS d "
                                                   "FROM ");
    rc = rc != 0 ? rc : sl_ch_quote_table(&sql, c->database, "events");
    rc = rc != 0 ? rc : sl_ch_buf_append_str(&sql, " WHERE tenant_id = ");
    rc = rc != 0 ? rc : sl_ch_quote(&sql, tenant, strlen(tenant));
    rc = rc != 0 ? rc : sl_ch_buf_appendf(&sql, " AND ts < toDateTime(%" PRId64 ") GROUP BY d "
                                                "ORDER BY d FORMAT TabSeparated", cutoff_s);
    if (rc == 0) {
        rc = sl_ch_query(c->ch, sql.data, &res, err);
    }
    for (line = rc == 0 ? strtok_r(res.body, "\n", &save) : NULL; rc == 0 && line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char day[COMPRESS_COLD_DAY_MAX];

        compress_cold_day_of((int64_t)strtoll(line, NULL, 10) * 86400, day);
        if (is_held(c, rows, n, day, run->now_s)) {
            continue;
        }
        rc = due_add(l, tenant, day) == 0 ? 0 : sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    sl_ch_result_fini(&res);
    sl_ch_buf_fini(&sql);
    sl_free(rows);
    return rc;
}

/* Lists every due tenant-day, ordered by tenant then day. */
static int find_due(struct compress_ctx *c, struct sched_run *run, struct due_list *l,
                    struct sl_err *err)
{
    struct sl_tenant *tenants = NULL;
    struct sl_tier *tiers = NULL;
    size_t n_tenants = 0, n_tiers = 0;
    int rc = sl_store_tier_list(run->store, &tiers, &n_tiers, err);

    rc = rc != 0 ? rc : sl_store_tenant_list(run->store, &tenants, &n_tenants, err);
    for (size_t i = 0; rc == 0 && i < n_tenants; i++) {
        int64_t hours = 0;

        for (size_t t = 0; t < n_tiers; t++) {
            if (strcmp(tiers[t].name, tenants[i].tier) == 0) {
                hours = tiers[t].compress_after_hours;
            }
        }
        if (hours <= 0) {
            continue;
        }
        /* Whole days that ended at least `hours` ago: before the midnight at or before
         * now - hours. */
        rc = tenant_due(c, run, tenants[i].id, (run->now_s - hours * 3600) / 86400 * 86400, l,
                        err);
    }
    sl_free(tenants);
    sl_free(tiers);
    if (rc == 0 && l->n > 1) {
        qsort(l->items, l->n, sizeof(*l->items), cmp_due);
    }
    return rc;
}

static enum sched_outcome compress_run(void *ctx, struct sched_run *run)
{
    struct compress_ctx *c = ctx;
    const struct sl_log_ctx log_ctx = {.job_id = run->job};
    struct due_list due = {0};
    struct sl_err chunk_err;
    const char *failed_tenant = NULL;
    int64_t done = 0, failed = 0, rows = 0, bytes = 0;
    char checkpoint[160];
    enum sched_outcome outcome = SCHED_DONE;
    int rc = find_due(c, run, &due, &run->err);

    if (rc != 0) {
        sl_free(due.items);
        /* ClickHouse or the store unreachable passes; the next slot tries again. */
        return SCHED_RETRY;
    }
    for (size_t i = 0; i < due.n; i++) {
        struct compress_chunk_result res;
        const struct sl_log_ctx tctx = {.job_id = run->job, .tenant_id = due.items[i].tenant};

        if (failed_tenant != NULL && strcmp(failed_tenant, due.items[i].tenant) == 0) {
            continue; /* its later days wait until its failure was looked at */
        }
        if (done >= c->max_chunks) {
            sl_log_info_ctx(COMPONENT, &log_ctx, "%zu tenant-days left for the next run "
                            "(SLUICE_JOB_COMPRESSION_MAX_CHUNKS=%" PRId64 ")", due.n - i,
                            c->max_chunks);
            break;
        }
        if (sched_run_should_stop(run)) {
            if (outcome == SCHED_DONE) {
                sl_err_set(&run->err, SL_ECANCELED, "stopped after %" PRId64 " tenant-days",
                           done);
                outcome = SCHED_RETRY;
            }
            break;
        }
        sl_err_clear(&chunk_err);
        rc = compress_chunk_run(c, run, due.items[i].tenant, due.items[i].day, &res,
                                &chunk_err);
        rows += res.rows_deleted;
        bytes += res.bytes;
        if (rc == 0) {
            sl_metrics_counter_add(c->m_chunks_done, 1);
            done++;
            snprintf(checkpoint, sizeof(checkpoint), "last=%s/%s", due.items[i].tenant,
                     due.items[i].day);
            sched_run_set_checkpoint(run, checkpoint);
            continue;
        }
        sl_metrics_counter_add(c->m_chunks_failed, 1);
        if (rc == SL_ECANCELED) {
            if (outcome == SCHED_DONE) {
                run->err = chunk_err;
                outcome = SCHED_RETRY;
            }
            break;
        }
        sl_log_error_ctx(COMPONENT, &tctx, "compression of %s failed: %s", due.items[i].day,
                         chunk_err.msg);
        failed++;
        if (outcome != SCHED_FAILED) {
            run->err = chunk_err; /* the first failure is the run's error */
        }
        outcome = SCHED_FAILED;
        if (rc != SL_ESTATE) {
            /* ClickHouse, the store or the file system failing would fail every chunk
             * alike: stop; the next slot retries from the recorded states. */
            break;
        }
        /* A failed proof (nothing deleted) concerns this tenant's data: its other days
         * wait for a person, other tenants go on, and the run ends failed. */
        failed_tenant = due.items[i].tenant;
    }
    run->rows = rows;
    if (outcome == SCHED_DONE) {
        sl_log_info_ctx(COMPONENT, &log_ctx, "compressed %" PRId64 " tenant-days: %" PRId64
                        " raw events to cold storage (%" PRId64 " bytes)", done, rows, bytes);
    }
    else if (outcome == SCHED_FAILED && (failed > 1 || done > 0)) {
        sl_log_error_ctx(COMPONENT, &log_ctx, "%" PRId64 " tenant-days failed, %" PRId64
                         " compressed (%" PRId64 " raw events); the first failure is the "
                         "run's error", failed, done, rows);
    }
    sl_free(due.items);
    return outcome;
}

const struct sched_worker compress_worker = {
    .name = "compression",
    .summary = "rolls up, exports to cold storage, verifies and deletes old raw events of "
               "tiers that compress",
    .default_schedule = "20 * * * *",
    .default_missed = SCHED_MISSED_RUN,
    .default_timeout_s = 3600,
    .opts = compress_opts,
    .n_opts = sizeof(compress_opts) / sizeof(compress_opts[0]),
    .settings_size = sizeof(struct compress_settings),
    .create = compress_create,
    .run = compress_run,
    .destroy = compress_destroy,
};

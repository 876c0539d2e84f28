/*
 * The re-enrichment job: which tenants and hours need new enrichment, in a fixed order, with
 * a checkpoint after each hour; the rewrite itself is reenrich.c's.
 */
#include "enrich_job.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "enrich.h"
#include "log.h"
#include "reenrich.h"

#define COMPONENT "enrichment"

#define HOUR_S 3600
#define DAY_S 86400

struct job_settings {
    struct enrich_config enrich;
    int64_t batch_pairs; /* SLUICE_JOB_ENRICHMENT_BATCH_PAIRS */
};

static const struct sl_cfg_opt job_opts[] = {
    {.key = "SLUICE_JOB_ENRICHMENT_BATCH_PAIRS", .type = SL_CFG_INT, .def = "5000", .min = 1,
     .max = ENRICH_REWRITE_MAX_BATCH_PAIRS, .offset = offsetof(struct job_settings, batch_pairs),
     .desc = "Distinct (IP, user agent) pairs the enrichment job looks up and rewrites per "
             "step within one tenant and hour."},
    ENRICH_CONFIG_OPTS(offsetof(struct job_settings, enrich)),
};

struct job {
    struct enrich *enrich;
    struct sl_ch *ch;
    char *database;
    int64_t batch_pairs;
};

/* One tenant's look-back: 0 when its tier has enrichment off or no look-back. */
struct tenant_window {
    char id[SL_STORE_ID_MAX];
    int64_t days;
};

static void job_destroy(void *ctx)
{
    struct job *j = ctx;

    if (j == NULL) {
        return;
    }
    enrich_destroy(j->enrich);
    sl_ch_destroy(j->ch);
    sl_free(j->database);
    sl_free(j);
}

static int job_create(const void *settings, const struct sched_worker_env *env, void **ctx_out,
                      struct sl_err *err)
{
    const struct job_settings *s = settings;
    struct sl_ch_settings chs = *env->ch;
    struct job *j = sl_calloc(1, sizeof(*j));
    int rc;

    *ctx_out = NULL;
    if (j == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    j->batch_pairs = s->batch_pairs;
    if (env->ch->database == NULL || env->ch->database[0] == '\0') {
        job_destroy(j);
        return sl_err_set(err, SL_EINVAL, "the enrichment job needs SLUICE_CLICKHOUSE_DATABASE");
    }
    j->database = sl_strdup(env->ch->database);
    if (j->database == NULL) {
        job_destroy(j);
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    /* Statements name the database themselves. */
    chs.database = NULL;
    rc = sl_ch_create(&j->ch, &chs, err);
    if (rc == 0) {
        /* Missing or broken files are not fatal: the job then redoes rows with what works,
         * and the loaders' /health says what does not. */
        rc = enrich_create(&s->enrich.settings, s->enrich.paths.geoip_db,
                           s->enrich.paths.ua_regexes, (int64_t)time(NULL), &j->enrich, err);
    }
    if (rc != 0) {
        job_destroy(j);
        return rc;
    }
    *ctx_out = j;
    return 0;
}

static int by_id(const void *a, const void *b)
{
    return strcmp(((const struct tenant_window *)a)->id, ((const struct tenant_window *)b)->id);
}

/* Every tenant's look-back, sorted by id (the order chunks are worked in). */
static int load_windows(struct sl_store *st, struct tenant_window **out, size_t *n_out,
                        struct sl_err *err)
{
    struct sl_tenant *tenants = NULL;
    struct sl_tier *tiers = NULL;
    size_t n_tenants = 0, n_tiers = 0;
    int rc = sl_store_tenant_list(st, &tenants, &n_tenants, err);

    *out = NULL;
    *n_out = 0;
    if (rc == 0) {
        rc = sl_store_tier_list(st, &tiers, &n_tiers, err);
    }
    if (rc == 0 && n_tenants > 0) {
        *out = sl_calloc(n_tenants, sizeof(**out));
        rc = *out == NULL ? sl_err_set(err, SL_ENOMEM, "out of memory") : 0;
    }
    for (size_t i = 0; rc == 0 && i < n_tenants; i++) {
        struct tenant_window *w = &(*out)[i];

        memcpy(w->id, tenants[i].id, sizeof(w->id));
        for (size_t k = 0; k < n_tiers; k++) {
            if (strcmp(tiers[k].name, tenants[i].tier) == 0 && tiers[k].has_enrichment) {
                w->days = tiers[k].reenrich_days;
            }
        }
    }
    if (rc == 0) {
        *n_out = n_tenants;
        if (n_tenants > 1) {
            qsort(*out, n_tenants, sizeof(**out), by_id);
        }
    }
    sl_free(tenants);
    sl_free(tiers);
    return rc;
}

/*
 * The hours (unix seconds, ascending, one per line) in which tenant_id has rows below the
 * current version since from_s. Superseded copies of rewritten events still count until
 * merges drop them; their hours are cheap no-ops. The sorting key starts with (tenant_id,
 * ts), so this reads only the tenant's range.
 */
static int find_hours(struct job *j, const char *tenant_id, uint32_t current, int64_t from_s,
                      struct sl_ch_result *res, struct sl_err *err)
{
    struct sl_ch_buf sql;
    int rc;

    sl_ch_buf_init(&sql, 4096);
    rc = sl_ch_buf_append_str(&sql, "SELECT toUInt32(toStartOfHour(ts)) AS h FROM ");
    rc = rc != 0 ? rc : sl_ch_quote_ident(&sql, j->database, strlen(j->database));
    rc = rc != 0 ? rc : sl_ch_buf_append_str(&sql, ".events WHERE tenant_id = ");
    rc = rc != 0 ? rc : sl_ch_quote(&sql, tenant_id, strlen(tenant_id));
    rc = rc != 0 ? rc
                 : sl_ch_buf_appendf(&sql, " AND ts >= toDateTime(%lld) AND enrichment_version "
                                     "< %u GROUP BY h ORDER BY h FORMAT TabSeparated",
                                     (long long)from_s, (unsigned)current);
    if (rc != 0) {
        sl_ch_buf_fini(&sql);
        return sl_err_set(err, SL_EINVAL, "cannot build the query of hours to redo");
    }
    rc = sl_ch_query(j->ch, sql.data, res, err);
    sl_ch_buf_fini(&sql);
    return rc;
}

/* Parses "v=<version> t=<tenant> h=<hour>"; false when cp is empty or another version's. */
static bool parse_checkpoint(const char *cp, uint32_t current, char tenant[SL_STORE_ID_MAX],
                             int64_t *hour_s)
{
    unsigned v = 0;
    long long h = 0;
    char t[SL_STORE_ID_MAX];

    if (cp == NULL || sscanf(cp, "v=%u t=%39s h=%lld", &v, t, &h) != 3 || v != current) {
        return false;
    }
    memcpy(tenant, t, SL_STORE_ID_MAX);
    *hour_s = (int64_t)h;
    return true;
}

/*
 * Rewrites tenant w's hours that need it, after the checkpoint when it names this tenant.
 * Returns 0, SL_ECANCELED when asked to stop (between hours), or the failure.
 */
static int run_tenant(struct job *j, struct sched_run *run, const struct tenant_window *w,
                      uint32_t current, const char *cp_tenant, int64_t cp_hour,
                      int64_t *rows_read, int64_t *rows_written, int64_t *n_hours)
{
    struct sl_ch_result hours = {0};
    int64_t from_s = run->now_s - w->days * DAY_S;
    int rc = find_hours(j, w->id, current, from_s / HOUR_S * HOUR_S, &hours, &run->err);

    for (const char *p = hours.body; rc == 0 && p != NULL && p < hours.body + hours.len;) {
        const char *eol = memchr(p, '\n', (size_t)(hours.body + hours.len - p));
        long long h = strtoll(p, NULL, 10);
        char cp[SL_STORE_CHECKPOINT_MAX];

        p = eol != NULL ? eol + 1 : hours.body + hours.len;
        if (h <= 0 || (cp_tenant[0] != '\0' && strcmp(cp_tenant, w->id) == 0 && h <= cp_hour)) {
            continue;
        }
        if (sched_run_should_stop(run)) {
            sl_err_set(&run->err, SL_ECANCELED, "stopped after %lld hours (%lld rows "
                       "rewritten); the next run goes on after the last one",
                       (long long)*n_hours, (long long)*rows_written);
            rc = SL_ECANCELED;
            break;
        }
        rc = enrich_rewrite_range(j->ch, j->enrich, j->database, w->id, (int64_t)h,
                                  (int64_t)h + HOUR_S, j->batch_pairs, run->now_s * 1000,
                                  rows_read, rows_written, &run->err);
        if (rc == 0) {
            (*n_hours)++;
            snprintf(cp, sizeof(cp), "v=%u t=%s h=%lld", (unsigned)current, w->id, h);
            sched_run_set_checkpoint(run, cp);
        }
    }
    sl_ch_result_fini(&hours);
    return rc;
}

static enum sched_outcome job_run(void *ctx, struct sched_run *run)
{
    struct job *j = ctx;
    const struct sl_log_ctx log_ctx = {.job_id = run->job};
    struct tenant_window *windows = NULL;
    char cp_tenant[SL_STORE_ID_MAX] = "";
    int64_t cp_hour = 0, rows_read = 0, rows_written = 0, n_hours = 0;
    size_t n_windows = 0;
    uint32_t current;
    struct sl_err why;
    int rc;

    /* The job's own look at the files, so a database replaced since the last run counts. */
    sl_err_clear(&why);
    if (enrich_reload(j->enrich, run->now_s, true, &why) != 0) {
        sl_log_warn_ctx(COMPONENT, &log_ctx, "enrichment data not reloaded, the previous "
                        "version serves: %s", why.msg);
    }
    if (enrich_rewrite_check_data(j->enrich, &run->err) != 0) {
        /* The files must be fixed first (see enrich_rewrite_check_data). */
        return SCHED_FAILED;
    }
    current = enrich_version_id(j->enrich);
    if (!parse_checkpoint(run->checkpoint, current, cp_tenant, &cp_hour)) {
        cp_tenant[0] = '\0'; /* none, or one of another version: start over */
    }
    rc = load_windows(run->store, &windows, &n_windows, &run->err);
    if (rc != 0) {
        /* A busy store passes; anything else will not get better by waiting. */
        return rc == SL_EBUSY ? SCHED_RETRY : SCHED_FAILED;
    }
    for (size_t i = 0; rc == 0 && i < n_windows; i++) {
        /* Tenants before the checkpoint's are done; tiers off or without look-back wait. */
        if (windows[i].days <= 0 ||
            (cp_tenant[0] != '\0' && strcmp(windows[i].id, cp_tenant) < 0)) {
            continue;
        }
        rc = run_tenant(j, run, &windows[i], current, cp_tenant, cp_hour, &rows_read,
                        &rows_written, &n_hours);
    }
    sl_free(windows);
    run->rows = rows_written;
    if (rc == SL_ECANCELED) {
        return SCHED_RETRY;
    }
    if (rc != 0) {
        /* ClickHouse down or busy passes: the next slot resumes from the checkpoint. Bad
         * settings or a table that is not ours will not get better. */
        return rc == SL_EINVAL || rc == SL_ENOMEM ? SCHED_FAILED : SCHED_RETRY;
    }
    /* Every hour is done: the next run starts from the beginning. */
    sched_run_set_checkpoint(run, "");
    sl_log_info_ctx(COMPONENT, &log_ctx, "enrichment version %u: %lld rows in %lld tenant-hours "
                    "rewritten (%lld found)", (unsigned)current, (long long)rows_written,
                    (long long)n_hours, (long long)rows_read);
    return SCHED_DONE;
}

const struct sched_worker enrich_worker = {
    .name = "enrichment",
    .summary = "rewrites recent events enriched with older GeoIP/user-agent data",
    .default_schedule = "40 * * * *",
    .default_missed = SCHED_MISSED_RUN,
    .default_timeout_s = 3600,
    .opts = job_opts,
    .n_opts = sizeof(job_opts) / sizeof(job_opts[0]),
    .settings_size = sizeof(struct job_settings),
    .create = job_create,
    .run = job_run,
    .destroy = job_destroy,
};

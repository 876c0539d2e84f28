/*
 * The retention worker: its settings table, its descriptor, and one run. A run settles what
 * an earlier run left pending, surveys (plan + counts), then deletes item by item: whole
 * partitions past every retention, one mutation per group of tenants sharing a cutoff, cold
 * exports. Every step is idempotent: what is gone is not counted again, so a run killed at
 * any point is finished by the next one, and a run with nothing left to delete issues no
 * statement at all. No checkpoint is needed: the survey is the checkpoint.
 */
#include "retention.h"

#include <inttypes.h>
#include <string.h>

#include "alloc.h"
#include "log.h"
#include "retention_int.h"
#include "survey.h"

#define COMPONENT "retention"

const struct sl_cfg_opt retention_cfg_opts[] = {
    {.key = "SLUICE_JOB_RETENTION_DRY_RUN", .type = SL_CFG_BOOL, .def = "false",
     .offset = offsetof(struct retention_settings, is_dry_run),
     .desc = "Retention only counts what it would delete and logs the plan; nothing is "
             "deleted or audited (see also `sluice retention plan`)."},
    {.key = "SLUICE_JOB_RETENTION_DOWNGRADE_GRACE_DAYS", .type = SL_CFG_INT, .def = "30",
     .min = 0, .max = 3650,
     .offset = offsetof(struct retention_settings, downgrade_grace_days),
     .desc = "After a tier downgrade the previous tier's longer retention holds this many "
             "days before the extra data becomes deletable (an upgrade applies at once)."},
    {.key = "SLUICE_JOB_RETENTION_DISABLED_POLICY", .type = SL_CFG_ENUM, .def = "keep",
     .choices = "keep|purge", .offset = offsetof(struct retention_settings, disabled_policy),
     .desc = "Data of disabled tenants: keep (normal retention applies) or purge (all of it, "
             "once disabled for _DISABLED_PURGE_AFTER_DAYS)."},
    {.key = "SLUICE_JOB_RETENTION_DISABLED_PURGE_AFTER_DAYS", .type = SL_CFG_INT, .def = "30",
     .min = 0, .max = 3650,
     .offset = offsetof(struct retention_settings, disabled_purge_after_days),
     .desc = "Days a tenant stays disabled before the purge policy deletes all its data."},
    {.key = "SLUICE_JOB_RETENTION_MUTATION_TIMEOUT_S", .type = SL_CFG_INT, .def = "1800",
     .min = 1, .max = 86400, .offset = offsetof(struct retention_settings, mutation_timeout_s),
     .desc = "Seconds retention waits for a ClickHouse delete mutation to finish; past it "
             "the run fails (a stuck mutation) and the next run settles the audit."},
    {.key = "SLUICE_JOB_RETENTION_MAX_TENANTS_PER_MUTATION", .type = SL_CFG_INT, .def = "1000",
     .min = 1, .max = 100000,
     .offset = offsetof(struct retention_settings, max_tenants_per_mutation),
     .desc = "Most tenants one delete mutation names; tenants sharing a cutoff beyond it "
             "take more mutations."},
};
const size_t retention_cfg_n_opts = sizeof(retention_cfg_opts) / sizeof(retention_cfg_opts[0]);

struct retention {
    struct retention_policy policy;
    bool is_dry_run;
    int64_t mutation_timeout_ms;
    const struct sl_ch_settings *ch_settings; /* borrowed from the env */
    struct sl_metrics_series *rows_deleted[RETENTION_N_TABLES + 1];
    struct sl_metrics_series *partitions_dropped[RETENTION_N_TABLES];
    struct sl_metrics_series *mutations_done[RETENTION_N_TABLES];
    struct sl_metrics_series *mutations_failed[RETENTION_N_TABLES];
    struct sl_metrics_series *cold_dirs_removed;
};

void retention_policy_from_settings(const struct retention_settings *s,
                                    struct retention_policy *out)
{
    memset(out, 0, sizeof(*out));
    out->downgrade_grace_days = s->downgrade_grace_days;
    out->is_purge_disabled = s->disabled_policy != NULL &&
                             strcmp(s->disabled_policy, "purge") == 0;
    out->disabled_purge_after_days = s->disabled_purge_after_days;
    out->max_tenants_per_group = s->max_tenants_per_mutation > 0
                                     ? (size_t)s->max_tenants_per_mutation
                                     : 1;
}

static void register_metrics(struct retention *r, struct sl_metrics *m)
{
    static const char *const table_label[] = {"table"};
    static const char *const mutation_labels[] = {"table", "result"};
    struct sl_metrics_family *rows, *parts, *muts, *cold;

    if (m == NULL) {
        return;
    }
    rows = sl_metrics_counter(m, "sluice_retention_rows_deleted_total",
                              "Rows retention deleted, per table (cold: rows in removed cold "
                              "exports)", table_label, 1);
    parts = sl_metrics_counter(m, "sluice_retention_partitions_dropped_total",
                               "Whole day partitions retention dropped", table_label, 1);
    muts = sl_metrics_counter(m, "sluice_retention_mutations_total",
                              "Delete mutations retention issued, by how they ended",
                              mutation_labels, 2);
    cold = sl_metrics_counter(m, "sluice_retention_cold_exports_removed_total",
                              "Tenant-day cold export folders retention removed", NULL, 0);
    for (size_t i = 0; i <= RETENTION_N_TABLES; i++) {
        const char *name = i < RETENTION_N_TABLES ? retention_tables[i].name : "cold";
        const char *done[] = {name, "done"};
        const char *failed[] = {name, "failed"};

        r->rows_deleted[i] = sl_metrics_series_get(rows, &name);
        if (i < RETENTION_N_TABLES) {
            r->partitions_dropped[i] = sl_metrics_series_get(parts, &name);
            r->mutations_done[i] = sl_metrics_series_get(muts, done);
            r->mutations_failed[i] = sl_metrics_series_get(muts, failed);
        }
    }
    r->cold_dirs_removed = sl_metrics_series_get(cold, NULL);
}

static int retention_create(const void *settings, const struct sched_worker_env *env,
                            void **ctx_out, struct sl_err *err)
{
    const struct retention_settings *s = settings;
    struct retention *r = sl_calloc(1, sizeof(*r));

    *ctx_out = NULL;
    if (r == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    retention_policy_from_settings(s, &r->policy);
    r->is_dry_run = s->is_dry_run;
    r->mutation_timeout_ms = s->mutation_timeout_s * 1000;
    r->ch_settings = env->ch;
    register_metrics(r, env->metrics);
    *ctx_out = r;
    return 0;
}

static void retention_destroy(void *ctx)
{
    sl_free(ctx);
}

/* Logs one item of the plan (the dry run's output, and what a real run is about to do). */
static void log_item(const struct sl_log_ctx *lc, const struct retention_item *it,
                     bool is_dry_run)
{
    const char *verb = is_dry_run ? "would delete" : "deleting";
    char day[11];

    switch (it->kind) {
    case RETENTION_ITEM_PARTITION:
        sl_log_info_ctx(COMPONENT, lc, "%s partition %s of %s: %" PRId64 " rows of %zu tenants",
                        verb, it->partition, it->table, it->rows, it->n_counts);
        break;
    case RETENTION_ITEM_GROUP:
        if (it->cutoff_s == RETENTION_ALL) {
            sl_log_info_ctx(COMPONENT, lc, "%s all %" PRId64 " rows of %zu purged tenants "
                            "from %s", verb, it->rows, it->n_counts, it->table);
        }
        else {
            sl_log_info_ctx(COMPONENT, lc, "%s %" PRId64 " rows before %s of %zu tenants "
                            "from %s (one mutation)", verb, it->rows,
                            retention_day_text(it->cutoff_s, day), it->n_counts, it->table);
        }
        break;
    case RETENTION_ITEM_COLD:
        sl_log_info_ctx(COMPONENT, lc, "%s %" PRId64 " cold export days (%" PRId64 " rows) of "
                        "tenant %s", verb, it->days, it->rows,
                        it->n_counts > 0 ? it->counts[0].tenant_id : "?");
        break;
    }
}

/* How a failed step ends the run. */
static enum sched_outcome outcome_of(int rc)
{
    switch (rc) {
    case SL_ECANCELED:
        return SCHED_RETRY; /* asked to stop: the next slot carries on */
    case SL_ENET:
    case SL_EBUSY:
        return SCHED_RETRY; /* ClickHouse or the store unreachable or busy: passes */
    default:
        /* A stuck mutation (SL_ETIMEDOUT), a refused statement or a broken cold folder does
         * not get better by itself; failing raises it to whoever watches the job. */
        return SCHED_FAILED;
    }
}

static enum sched_outcome retention_run(void *ctx, struct sched_run *run)
{
    struct retention *r = ctx;
    const struct sl_log_ctx lc = {.job_id = run->job};
    struct retention_survey *survey = NULL;
    struct retention_exec x = {0};
    struct sl_ch *ch = NULL;
    const char *database = r->ch_settings->database != NULL &&
                                   r->ch_settings->database[0] != '\0'
                               ? r->ch_settings->database
                               : "sluice";
    int64_t settled = 0, deleted = 0;
    enum sched_outcome out = SCHED_DONE;
    int rc;

    run->rows = 0;
    rc = sl_ch_create(&ch, r->ch_settings, &run->err);
    if (rc != 0) {
        return SCHED_FAILED; /* bad ClickHouse settings */
    }
    x = (struct retention_exec){.ch = ch, .database = database, .st = run->store, .run = run,
                                .run_id = run->run_id, .now_s = run->now_s,
                                .mutation_timeout_ms = r->mutation_timeout_ms};
    memcpy(x.rows_deleted, r->rows_deleted, sizeof(x.rows_deleted));
    memcpy(x.partitions_dropped, r->partitions_dropped, sizeof(x.partitions_dropped));
    memcpy(x.mutations_done, r->mutations_done, sizeof(x.mutations_done));
    memcpy(x.mutations_failed, r->mutations_failed, sizeof(x.mutations_failed));
    x.cold_dirs_removed = r->cold_dirs_removed;

    rc = retention_wait_detect(&x, &run->err);
    if (rc == 0 && !r->is_dry_run) {
        rc = retention_apply_resume(&x, &settled, &run->err);
    }
    if (rc == 0) {
        rc = retention_survey_create(run->store, ch, database, run->now_s, &r->policy, &survey,
                                     &run->err);
    }
    if (rc == 0) {
        char day[11];

        sl_log_info_ctx(COMPONENT, &lc, "%s: longest retention %" PRId64 " days, partitions "
                        "before %s dropped whole; %zu tenants in %zu cutoff groups; %zu items, "
                        "%" PRId64 " rows%s", r->is_dry_run ? "dry run" : "plan",
                        survey->plan->longest_days,
                        survey->plan->drop_before_s > 0
                            ? retention_day_text(survey->plan->drop_before_s, day)
                            : "(none)",
                        survey->plan->n_tenants, survey->plan->n_groups, survey->n_items,
                        survey->rows, settled > 0 ? " (settled earlier pending audit)" : "");
    }
    for (size_t i = 0; rc == 0 && survey != NULL && i < survey->n_items; i++) {
        const struct retention_item *it = &survey->items[i];
        int64_t rows = 0;

        log_item(&lc, it, r->is_dry_run);
        if (r->is_dry_run) {
            continue;
        }
        if (sched_run_should_stop(run)) {
            rc = sl_err_set(&run->err, SL_ECANCELED, "stopped after deleting %" PRId64 " rows",
                            deleted);
            break;
        }
        rc = it->kind == RETENTION_ITEM_COLD
                 ? retention_cold_apply(&x, survey->plan, it, &rows, &run->err)
                 : retention_apply_item(&x, it, &rows, &run->err);
        deleted += rows;
    }
    run->rows = deleted;
    if (rc != 0) {
        out = outcome_of(rc);
    }
    else {
        sl_log_info_ctx(COMPONENT, &lc, "%s %" PRId64 " rows%s",
                        r->is_dry_run ? "dry run: would delete" : "deleted",
                        r->is_dry_run ? survey->rows : deleted,
                        r->is_dry_run ? "; deleted nothing" : "");
    }
    retention_survey_destroy(survey);
    sl_ch_destroy(ch);
    return out;
}

const struct sched_worker retention_worker = {
    .name = RETENTION_JOB,
    .summary = "deletes tenant data past its tier's retention, with a deletion audit",
    .default_schedule = "30 2 * * *",
    .default_missed = SCHED_MISSED_RUN,
    .default_timeout_s = 4 * 3600,
    .opts = retention_cfg_opts,
    .n_opts = sizeof(retention_cfg_opts) / sizeof(retention_cfg_opts[0]),
    .settings_size = sizeof(struct retention_settings),
    .create = retention_create,
    .run = retention_run,
    .destroy = retention_destroy,
};

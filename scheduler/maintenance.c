/*
 * store_maintenance, the scheduler's built-in job: keeps the SQLite tenant store in shape.
 * It prunes run history older than a retention setting (each job's last run stays), then
 * runs PRAGMA optimize and truncates the write-ahead log. Harmless to run at any time and
 * idempotent, so it needs no checkpoint.
 */
#include "builtin.h"

#include <stddef.h>

#include "alloc.h"
#include "log.h"

#define COMPONENT "maintenance"

struct maintenance_settings {
    int64_t runs_keep_days; /* SLUICE_JOB_STORE_MAINTENANCE_RUNS_KEEP_DAYS */
};

struct maintenance {
    int64_t runs_keep_days;
};

static const struct sl_cfg_opt maintenance_opts[] = {
    {.key = "SLUICE_JOB_STORE_MAINTENANCE_RUNS_KEEP_DAYS", .type = SL_CFG_INT, .def = "30",
     .min = 1, .max = 3650, .offset = offsetof(struct maintenance_settings, runs_keep_days),
     .desc = "Days of job run history store_maintenance keeps (each job's last run always "
             "stays)."},
};

static int maintenance_create(const void *settings, const struct sched_worker_env *env,
                              void **ctx_out, struct sl_err *err)
{
    const struct maintenance_settings *s = settings;
    struct maintenance *m = sl_calloc(1, sizeof(*m));

    if (m == NULL) {
        *ctx_out = NULL;
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    m->runs_keep_days = s->runs_keep_days;
    *ctx_out = m;
    return 0;
}

static enum sched_outcome maintenance_run(void *ctx, struct sched_run *run)
{
    const struct maintenance *m = ctx;
    const struct sl_log_ctx log_ctx = {.job_id = run->job};
    int64_t pruned = 0;
    bool is_truncated = false;
    int rc;

    rc = sl_store_run_prune(run->store, run->now_s - m->runs_keep_days * 86400, &pruned,
                            &run->err);
    if (rc == 0 && !sched_run_should_stop(run)) {
        rc = sl_store_optimize(run->store, &is_truncated, &run->err);
    }
    run->rows = pruned;
    if (rc != 0) {
        /* A busy store (another process writing past the busy timeout) passes; anything
         * else (I/O, corruption) will not get better by waiting for the next slot. */
        return rc == SL_EBUSY ? SCHED_RETRY : SCHED_FAILED;
    }
    if (sched_run_should_stop(run)) {
        sl_err_set(&run->err, SL_ECANCELED, "stopped after pruning %lld runs",
                   (long long)pruned);
        return SCHED_RETRY;
    }
    sl_log_info_ctx(COMPONENT, &log_ctx, "pruned %lld runs older than %lld days; optimized; "
                    "write-ahead log %s", (long long)pruned, (long long)m->runs_keep_days,
                    is_truncated ? "truncated" : "busy (readers), left as is");
    return SCHED_DONE;
}

static void maintenance_destroy(void *ctx)
{
    sl_free(ctx);
}

const struct sched_worker sched_maintenance_worker = {
    .name = "store_maintenance",
    .summary = "prunes run history, optimizes and checkpoints the SQLite tenant store",
    .default_schedule = "17 3 * * *",
    .default_missed = SCHED_MISSED_RUN,
    .default_timeout_s = 600,
    .opts = maintenance_opts,
    .n_opts = sizeof(maintenance_opts) / sizeof(maintenance_opts[0]),
    .settings_size = sizeof(struct maintenance_settings),
    .create = maintenance_create,
    .run = maintenance_run,
    .destroy = maintenance_destroy,
};

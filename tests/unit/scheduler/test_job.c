/*
 * Tests scheduler/job.c with a fake worker: the generated SLUICE_JOB_<NAME>_* settings
 * (defaults, a bad schedule refused at load naming job, expression and field, a bad zone
 * refused at create), and sched_job_execute on a real store: fenced by the lease, one run
 * per slot, the status each outcome and stop request adds up to, checkpoints handed from
 * one run to the next.
 */
#include <stdlib.h>
#include <time.h>

#include "alloc.h"
#include "job.h"
#include "sched_int.h"
#include "test.h"

struct fake_settings {
    int64_t batch;
};

struct fake {
    int64_t batch;
    enum sched_outcome outcome;
    char seen_checkpoint[64];
    int n_runs;
};

static const struct sl_cfg_opt fake_opts[] = {
    {.key = "SLUICE_JOB_FAKE_JOB_BATCH", .type = SL_CFG_INT, .def = "500", .min = 1,
     .max = 100000, .offset = offsetof(struct fake_settings, batch), .desc = "Rows per batch."},
};

static int fake_create(const void *settings, const struct sched_worker_env *env, void **ctx_out,
                       struct sl_err *err)
{
    const struct fake_settings *s = settings;
    struct fake *f = calloc(1, sizeof(*f));

    ASSERT_TRUE(f != NULL);
    f->batch = s->batch;
    *ctx_out = f;
    return 0;
}

static enum sched_outcome fake_run(void *ctx, struct sched_run *run)
{
    struct fake *f = ctx;
    char next[64];

    f->n_runs++;
    snprintf(f->seen_checkpoint, sizeof(f->seen_checkpoint), "%s", run->checkpoint);
    snprintf(next, sizeof(next), "slot=%lld", (long long)run->slot_s);
    ASSERT_OK(sched_run_set_checkpoint(run, next), NULL);
    run->rows = f->batch;
    if (f->outcome != SCHED_DONE) {
        sl_err_set(&run->err, SL_EIO, "fake reason");
    }
    return f->outcome;
}

static void fake_destroy(void *ctx)
{
    free(ctx);
}

static const struct sched_worker fake_worker = {
    .name = "fake_job",
    .summary = "a fake",
    .default_schedule = "*/5 * * * *",
    .default_missed = SCHED_MISSED_SKIP,
    .default_timeout_s = 90,
    .opts = fake_opts,
    .n_opts = 1,
    .settings_size = sizeof(struct fake_settings),
    .create = fake_create,
    .run = fake_run,
    .destroy = fake_destroy,
};

static const struct sched_worker *const workers[] = {&fake_worker};

static int load(struct sched_jobs_cfg *cfg, char *const *envp, struct sl_err *err)
{
    size_t n = 0;
    const struct sl_cfg_section *secs = sched_jobs_cfg_sections(cfg, &n);

    ASSERT_EQ_INT(n, 2);
    return sl_cfg_load(secs, n, NULL, envp, err);
}

static void test_job_settings(void)
{
    struct sched_jobs_cfg *cfg = NULL;
    const struct sl_cfg_section *secs;
    struct sl_err err;
    size_t n = 0;
    char *bad_env[] = {"SLUICE_JOB_FAKE_JOB_SCHEDULE=61 * * * *", NULL};
    char *good_env[] = {"SLUICE_JOB_FAKE_JOB_SCHEDULE=@hourly", "SLUICE_JOB_FAKE_JOB_BATCH=7",
                        "SLUICE_JOB_FAKE_JOB_ENABLED=no", NULL};
    const struct sched_job_settings *js;

    ASSERT_OK(sched_jobs_cfg_create(workers, 1, &cfg, &err), &err);
    secs = sched_jobs_cfg_sections(cfg, &n);
    ASSERT_EQ_STR(secs[0].opts[0].key, "SLUICE_JOB_FAKE_JOB_SCHEDULE");
    ASSERT_EQ_STR(secs[0].opts[1].key, "SLUICE_JOB_FAKE_JOB_ENABLED");
    ASSERT_EQ_STR(secs[0].opts[2].key, "SLUICE_JOB_FAKE_JOB_TIMEOUT_S");
    ASSERT_EQ_STR(secs[0].opts[3].key, "SLUICE_JOB_FAKE_JOB_MISSED");
    ASSERT_EQ_STR(secs[0].opts[4].key, "SLUICE_JOB_FAKE_JOB_TZ");
    ASSERT_CONTAINS(secs[0].opts[0].desc, "fake_job");
    ASSERT_EQ_STR(secs[1].opts[0].key, "SLUICE_JOB_FAKE_JOB_BATCH");

    ASSERT_OK(load(cfg, NULL, &err), &err);
    js = secs[0].base;
    ASSERT_EQ_STR(js->schedule, "*/5 * * * *");
    ASSERT_TRUE(js->is_enabled);
    ASSERT_EQ_INT(js->timeout_s, 90);
    ASSERT_EQ_STR(js->missed, "skip");
    ASSERT_EQ_STR(js->zone, "UTC");
    ASSERT_EQ_INT(((struct fake_settings *)secs[1].base)->batch, 500);

    ASSERT_EQ_INT(load(cfg, bad_env, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "environment: SLUICE_JOB_FAKE_JOB_SCHEDULE: job fake_job: bad "
                             "schedule '61 * * * *': field 1 (minute): 61 is out of range 0-59");
    /* The refused value did not replace the good one. */
    ASSERT_EQ_STR(js->schedule, "*/5 * * * *");

    ASSERT_OK(load(cfg, good_env, &err), &err);
    ASSERT_EQ_STR(js->schedule, "@hourly");
    ASSERT_TRUE(!js->is_enabled);
    ASSERT_TRUE(!sched_jobs_cfg_is_enabled(cfg, 0));
    ASSERT_EQ_INT(((struct fake_settings *)secs[1].base)->batch, 7);
    sched_jobs_cfg_destroy(cfg);
}

static void test_job_worker_names(void)
{
    static const struct sched_worker bad = {.name = "Bad-Name"};
    static const struct sched_worker *const bad_list[] = {&bad};
    static const struct sched_worker *const twice[] = {&fake_worker, &fake_worker};
    struct sched_jobs_cfg *cfg = NULL;
    struct sl_err err;

    ASSERT_EQ_INT(sched_jobs_cfg_create(bad_list, 1, &cfg, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "'Bad-Name' is not lower_snake");
    ASSERT_TRUE(cfg == NULL);
    ASSERT_EQ_INT(sched_jobs_cfg_create(twice, 2, &cfg, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "two workers are named 'fake_job'");
    sched_jobs_cfg_destroy(NULL);
}

struct fixture {
    char *dir;
    char *db;
    struct sl_store_settings store_settings;
    struct sched_jobs_cfg *cfg;
    struct sched_job_env env;
    struct sl_store *st;
};

static void fixture_init(struct fixture *f, char *const *envp)
{
    struct sl_err err;

    memset(f, 0, sizeof(*f));
    f->dir = test_tmpdir();
    f->db = test_path(f->dir, "jobs.db");
    f->store_settings.path = f->db;
    f->store_settings.busy_timeout_ms = 5000;
    ASSERT_OK(sched_jobs_cfg_create(workers, 1, &f->cfg, &err), &err);
    ASSERT_OK(load(f->cfg, envp, &err), &err);
    f->env.zoneinfo_dir = "/usr/share/zoneinfo";
    f->env.lease = "scheduler";
    f->env.owner = "me";
    f->env.worker.store = &f->store_settings;
    ASSERT_OK(sl_store_open(&f->st, f->db, 5000, &err), &err);
}

static void fixture_fini(struct fixture *f)
{
    sl_store_close(f->st);
    sched_jobs_cfg_destroy(f->cfg);
    test_rmtree(f->dir);
    free(f->db);
    free(f->dir);
}

static void test_job_bad_zone(void)
{
    char *env[] = {"SLUICE_JOB_FAKE_JOB_TZ=Nowhere/Land", NULL};
    struct sched_job *job = NULL;
    struct fixture f;
    struct sl_err err;

    fixture_init(&f, env);
    ASSERT_EQ_INT(sched_job_create(f.cfg, 0, &f.env, &job, &err), SL_EINVAL);
    ASSERT_TRUE(job == NULL);
    ASSERT_CONTAINS(err.msg, "SLUICE_JOB_FAKE_JOB_TZ: job fake_job: unknown or unreadable "
                             "time zone 'Nowhere/Land'");
    fixture_fini(&f);
}

/* Runs one slot of job and returns its run (the newest). */
static enum sched_exec_result execute(struct sched_job *job, int64_t slot_s, int reason)
{
    job->run_slot_s = slot_s;
    job->run_kind = "schedule";
    atomic_store(&job->stop_reason, reason);
    sched_job_execute(job);
    return job->exec_result;
}

static void expect_last_run(struct fixture *f, enum sl_run_status status, const char *error)
{
    struct sl_run *runs = NULL;
    struct sl_err err;
    size_t n = 0;

    ASSERT_OK(sl_store_run_list(f->st, "fake_job", 1, &runs, &n, &err), &err);
    ASSERT_EQ_INT(n, 1);
    ASSERT_EQ_STR(sl_store_run_status_name(runs[0].status), sl_store_run_status_name(status));
    ASSERT_CONTAINS(runs[0].error, error);
    free(runs);
}

static void test_job_execute(void)
{
    struct sched_job *job = NULL;
    struct fixture f;
    struct sl_err err;
    struct fake *fake;
    struct sl_job state;
    bool is_leader = false;

    fixture_init(&f, NULL);
    ASSERT_OK(sched_job_create(f.cfg, 0, &f.env, &job, &err), &err);
    ASSERT_EQ_STR(sched_job_name(job), "fake_job");
    ASSERT_EQ_STR(sched_job_zone(job), "UTC");
    ASSERT_EQ_INT(sched_job_next(job, 0), 300);
    fake = job->worker_ctx;
    memset(&state, 0, sizeof(state));
    snprintf(state.name, sizeof(state.name), "fake_job");
    state.is_enabled = true;
    ASSERT_OK(sl_store_job_register(f.st, &state, 1, &err), &err);

    /* Without the lease nothing runs. */
    ASSERT_EQ_INT(execute(job, 300, SCHED_STOP_NONE), SCHED_EXEC_NOT_LEADER);
    ASSERT_EQ_INT(fake->n_runs, 0);
    ASSERT_OK(sl_store_lease_acquire(f.st, "scheduler", "me", 3600, (int64_t)time(NULL),
                                     &is_leader, &err), &err);
    ASSERT_TRUE(is_leader);

    ASSERT_EQ_INT(execute(job, 300, SCHED_STOP_NONE), SCHED_EXEC_RAN);
    ASSERT_EQ_INT(job->run_status, SL_RUN_DONE);
    ASSERT_EQ_INT(job->exec_err.code, 0);
    ASSERT_EQ_STR(fake->seen_checkpoint, "");
    expect_last_run(&f, SL_RUN_DONE, "");
    /* One run per slot. */
    ASSERT_EQ_INT(execute(job, 300, SCHED_STOP_NONE), SCHED_EXEC_SLOT_TAKEN);
    ASSERT_EQ_INT(fake->n_runs, 1);

    /* The checkpoint the last run saved reaches the next one. */
    fake->outcome = SCHED_RETRY;
    ASSERT_EQ_INT(execute(job, 600, SCHED_STOP_TIMEOUT), SCHED_EXEC_RAN);
    ASSERT_EQ_STR(fake->seen_checkpoint, "slot=300");
    expect_last_run(&f, SL_RUN_TIMEOUT, "stopped at a checkpoint after the timeout of 90s: "
                                        "fake reason");
    ASSERT_EQ_INT(execute(job, 900, SCHED_STOP_SHUTDOWN), SCHED_EXEC_RAN);
    expect_last_run(&f, SL_RUN_CANCELLED, "the scheduler is shutting down");
    ASSERT_EQ_INT(execute(job, 1200, SCHED_STOP_LEASE_LOST), SCHED_EXEC_RAN);
    expect_last_run(&f, SL_RUN_CANCELLED, "the scheduler lost its lease");
    ASSERT_EQ_INT(execute(job, 1500, SCHED_STOP_NONE), SCHED_EXEC_RAN);
    expect_last_run(&f, SL_RUN_RETRY, "fake reason");
    /* A failure is a failure even when a stop was requested. */
    fake->outcome = SCHED_FAILED;
    ASSERT_EQ_INT(execute(job, 1800, SCHED_STOP_TIMEOUT), SCHED_EXEC_RAN);
    expect_last_run(&f, SL_RUN_FAILED, "fake reason");
    /* And done is done. */
    fake->outcome = SCHED_DONE;
    ASSERT_EQ_INT(execute(job, 2100, SCHED_STOP_SHUTDOWN), SCHED_EXEC_RAN);
    expect_last_run(&f, SL_RUN_DONE, "");
    ASSERT_OK(sl_store_job_get(f.st, "fake_job", &state, &err), &err);
    ASSERT_EQ_STR(state.checkpoint, "slot=2100");
    ASSERT_EQ_INT(state.last_slot_s, 2100);
    ASSERT_EQ_INT(fake->n_runs, 7);
    sched_job_destroy(job);
    fixture_fini(&f);
}

static void test_job_disabled_has_no_worker(void)
{
    char *env[] = {"SLUICE_JOB_FAKE_JOB_ENABLED=false", NULL};
    struct sched_job *job = NULL;
    struct fixture f;
    struct sl_err err;

    fixture_init(&f, env);
    ASSERT_OK(sched_job_create(f.cfg, 0, &f.env, &job, &err), &err);
    ASSERT_TRUE(!sched_job_is_enabled(job));
    ASSERT_TRUE(job->worker_ctx == NULL);
    ASSERT_TRUE(job->store == NULL);
    sched_job_destroy(job);
    fixture_fini(&f);
}

/* Every allocation of building the settings and a job can fail without a leak or crash. */
static void test_job_allocation_failures(void)
{
    struct fixture f;
    bool did_succeed = false;

    fixture_init(&f, NULL);
    for (long n = 0; n < 200 && !did_succeed; n++) {
        struct sched_jobs_cfg *cfg = NULL;
        struct sched_job *job = NULL;
        struct sl_err err;
        int rc;

        sl_alloc_fail_after(n);
        rc = sched_jobs_cfg_create(workers, 1, &cfg, &err);
        if (rc == 0) {
            rc = load(cfg, NULL, &err);
        }
        if (rc == 0) {
            rc = sched_job_create(cfg, 0, &f.env, &job, &err);
        }
        sl_alloc_fail_after(-1);
        if (rc != 0) {
            ASSERT_TRUE(job == NULL);
        }
        did_succeed = rc == 0;
        sched_job_destroy(job);
        sched_jobs_cfg_destroy(cfg);
    }
    ASSERT_TRUE(did_succeed);
    fixture_fini(&f);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_job_settings),
        TEST_CASE(test_job_worker_names),
        TEST_CASE(test_job_bad_zone),
        TEST_CASE(test_job_execute),
        TEST_CASE(test_job_disabled_has_no_worker),
        TEST_CASE(test_job_allocation_failures),
        {NULL, NULL},
    };
    return test_main(argc, argv, cases);
}

/*
 * test_sleep, a job for tests of the scheduler itself (never registered unless
 * SLUICE_SCHEDULER_TEST_JOBS=1): it sleeps a settable time in 10 ms steps, stops at the
 * first step after sched_run_should_stop says so, and appends "start", "checkpoint" and
 * "end" lines to a trace file so a test can see every execution, across processes, with
 * its slot and times. It also notices if a second run of its context starts while one is
 * going (which the scheduler must never do) and fails that run.
 */
#include "builtin.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"

#define STEP_MS 10

struct testjob_settings {
    int64_t duration_ms; /* SLUICE_JOB_TEST_SLEEP_DURATION_MS */
    char *trace_file;    /* SLUICE_JOB_TEST_SLEEP_TRACE_FILE */
    char *outcome;       /* SLUICE_JOB_TEST_SLEEP_OUTCOME */
};

struct testjob {
    int64_t duration_ms;
    char *trace_file; /* owned; NULL for none */
    enum sched_outcome outcome;
    atomic_int n_running;
};

static const struct sl_cfg_opt testjob_opts[] = {
    {.key = "SLUICE_JOB_TEST_SLEEP_DURATION_MS", .type = SL_CFG_INT, .def = "100", .min = 0,
     .max = 3600000, .offset = offsetof(struct testjob_settings, duration_ms),
     .desc = "Test only: how long a run of test_sleep sleeps (it stops early when asked)."},
    {.key = "SLUICE_JOB_TEST_SLEEP_TRACE_FILE", .type = SL_CFG_STRING, .def = "",
     .offset = offsetof(struct testjob_settings, trace_file),
     .desc = "Test only: file test_sleep appends a line to at each start, checkpoint and end "
             "(empty: none)."},
    {.key = "SLUICE_JOB_TEST_SLEEP_OUTCOME", .type = SL_CFG_ENUM, .def = "done",
     .choices = "done|retry|failed", .offset = offsetof(struct testjob_settings, outcome),
     .desc = "Test only: what a test_sleep run that was not stopped returns."},
};

static int64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Appends one line with a single write(2), so lines from several processes never mix. */
static void trace(const struct testjob *t, const struct sched_run *run, const char *event)
{
    char line[256];
    int len, fd;

    if (t->trace_file == NULL) {
        return;
    }
    len = snprintf(line, sizeof(line), "%s job=%s slot=%lld kind=%s pid=%d ms=%lld\n", event,
                   run->job, (long long)run->slot_s, run->kind, (int)getpid(),
                   (long long)wall_ms());
    fd = open(t->trace_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        return;
    }
    if (write(fd, line, (size_t)len) != len) {
        /* A test reading the trace will notice the missing line. */
    }
    close(fd);
}

static int testjob_create(const void *settings, const struct sched_worker_env *env,
                          void **ctx_out, struct sl_err *err)
{
    const struct testjob_settings *s = settings;
    struct testjob *t = sl_calloc(1, sizeof(*t));

    *ctx_out = NULL;
    if (t == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    t->duration_ms = s->duration_ms;
    t->outcome = strcmp(s->outcome, "retry") == 0    ? SCHED_RETRY
                 : strcmp(s->outcome, "failed") == 0 ? SCHED_FAILED
                                                     : SCHED_DONE;
    atomic_init(&t->n_running, 0);
    if (s->trace_file[0] != '\0') {
        t->trace_file = sl_strdup(s->trace_file);
        if (t->trace_file == NULL) {
            sl_free(t);
            return sl_err_set(err, SL_ENOMEM, "out of memory");
        }
    }
    *ctx_out = t;
    return 0;
}

static enum sched_outcome testjob_run(void *ctx, struct sched_run *run)
{
    struct testjob *t = ctx;
    int64_t slept_ms = 0;
    bool is_stopped = false;

    if (atomic_fetch_add(&t->n_running, 1) != 0) {
        atomic_fetch_sub(&t->n_running, 1);
        trace(t, run, "overlap");
        sl_err_set(&run->err, SL_ESTATE, "overlap: another run of %s is in progress", run->job);
        return SCHED_FAILED;
    }
    trace(t, run, "start");
    while (slept_ms < t->duration_ms) {
        struct timespec step = {.tv_sec = 0, .tv_nsec = STEP_MS * 1000000L};

        if (sched_run_should_stop(run)) {
            is_stopped = true;
            trace(t, run, "checkpoint");
            break;
        }
        nanosleep(&step, NULL);
        slept_ms += STEP_MS;
    }
    run->rows = slept_ms / STEP_MS;
    trace(t, run, "end");
    atomic_fetch_sub(&t->n_running, 1);
    if (is_stopped) {
        /* Stopped at a checkpoint with work left: the next slot would carry on. */
        sl_err_set(&run->err, SL_ECANCELED, "slept %lld of %lld ms", (long long)slept_ms,
                   (long long)t->duration_ms);
        return SCHED_RETRY;
    }
    if (t->outcome != SCHED_DONE) {
        sl_err_set(&run->err, SL_EIO, "test_sleep was set to end as %s",
                   t->outcome == SCHED_RETRY ? "retry" : "failed");
    }
    return t->outcome;
}

static void testjob_destroy(void *ctx)
{
    struct testjob *t = ctx;

    if (t == NULL) {
        return;
    }
    sl_free(t->trace_file);
    sl_free(t);
}

const struct sched_worker sched_testjob_worker = {
    .name = "test_sleep",
    .summary = "sleeps, for tests of the scheduler",
    .default_schedule = "@every 10s",
    .default_missed = SCHED_MISSED_RUN,
    .default_timeout_s = 60,
    .is_test_only = true,
    .opts = testjob_opts,
    .n_opts = sizeof(testjob_opts) / sizeof(testjob_opts[0]),
    .settings_size = sizeof(struct testjob_settings),
    .create = testjob_create,
    .run = testjob_run,
    .destroy = testjob_destroy,
};

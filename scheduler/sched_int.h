/*
 * Internals shared by the scheduler's files: proleptic Gregorian calendar arithmetic (used
 * by cron.c and tz.c, so neither needs libc's time zone state) and the layout of a job
 * (job.c builds and runs it, loop.c times it). Nothing outside scheduler/ includes this.
 */
#ifndef SLUICE_SCHEDULER_SCHED_INT_H
#define SLUICE_SCHEDULER_SCHED_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cron.h"
#include "store.h"
#include "tz.h"
#include "worker.h"

/* ---- calendar (pure, any thread) ---- */

/* Days since 1970-01-01 of year-month-day (month 1-12; day may run past the month). */
int64_t sched_civil_days(int64_t year, int month, int day);

/* The date of a day number from sched_civil_days. */
void sched_civil_date(int64_t days, int64_t *year, int *month, int *day);

/* 0 Sunday .. 6 Saturday. */
int sched_civil_weekday(int64_t days);

bool sched_civil_is_leap(int64_t year);
int sched_civil_month_days(int64_t year, int month);

/* Floor division and modulo for possibly negative times. */
int64_t sched_floor_div(int64_t a, int64_t b);

/* ---- jobs ---- */

/* The settings every job has, filled from SLUICE_JOB_<NAME>_* (see job.c). */
struct sched_job_settings {
    char *schedule; /* _SCHEDULE: cron expression, @macro or "@every 30s" */
    bool is_enabled; /* _ENABLED */
    int64_t timeout_s; /* _TIMEOUT_S */
    char *missed;   /* _MISSED: "run" or "skip" */
    char *zone;     /* _TZ: IANA zone name, "UTC" by default */
};

/* Why a job stopped before finishing; set by the loop thread, read by the job. */
enum sched_stop_reason {
    SCHED_STOP_NONE = 0,
    SCHED_STOP_TIMEOUT,
    SCHED_STOP_SHUTDOWN,
    SCHED_STOP_LEASE_LOST,
};

/* What one execution of a job reported back to the loop. */
enum sched_exec_result {
    SCHED_EXEC_RAN = 0,     /* the run happened; see run.status */
    SCHED_EXEC_SLOT_TAKEN,  /* the slot already had a run (another scheduler, or earlier) */
    SCHED_EXEC_NOT_LEADER,  /* the lease was not ours at begin: nothing ran */
    SCHED_EXEC_STORE_ERROR, /* the run could not be recorded: nothing ran */
};

/*
 * One job: its worker, settings, parsed schedule and zone, its own store handle, and the
 * inputs and results of its current run. The loop thread sets the run inputs before it
 * queues a run and reads the results in the after-work callback; in between they belong to
 * the threadpool thread running it. stop_reason is the one field both touch during a run.
 */
struct sched_job {
    const struct sched_worker *worker;         /* keeps */
    const struct sched_job_settings *settings;  /* keeps */
    const void *worker_settings;               /* keeps */
    struct sched_cron cron;
    struct sched_tz *tz;                       /* owned; NULL for UTC */
    enum sched_missed missed;
    void *worker_ctx;                          /* from worker->create; NULL when disabled */
    struct sl_store *store;                    /* owned; NULL when disabled */
    const char *lease;                         /* keeps */
    const char *owner;                         /* keeps */

    /* run inputs */
    int64_t run_slot_s;
    const char *run_kind;                      /* "schedule", "missed", "manual" */
    atomic_int stop_reason;                    /* enum sched_stop_reason */

    /* run results */
    struct sched_run run;
    enum sched_exec_result exec_result;
    enum sl_run_status run_status;
    int64_t run_duration_ms;
    struct sl_err exec_err;                    /* store problems (begin or end) */
    char checkpoint[SL_STORE_CHECKPOINT_MAX];  /* read at the start of each run */
};

/* Builds the run context and runs one slot of job on the calling (threadpool) thread:
 * records the start (fenced by the lease), runs the worker, records the end. Fills
 * job->exec_result, run_status, run_duration_ms, exec_err. */
void sched_job_execute(struct sched_job *job);

/* The next slot of job strictly after after_s, in its zone. -1 if it never fires again. */
int64_t sched_job_next(const struct sched_job *job, int64_t after_s);

#endif

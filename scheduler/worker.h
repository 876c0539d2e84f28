/*
 * The worker interface: what a job is to the scheduler. A worker (workers/<name>/, or a
 * built-in in scheduler/) exports one const struct sched_worker: its name, default
 * schedule, missed-run policy and timeout, its own settings table, and create / run /
 * destroy callbacks. The scheduler lists descriptors in one static array (registry.c),
 * reads SLUICE_JOB_<NAME>_* settings for each, and calls run on a threadpool thread for
 * each slot of the schedule, never two at once for one job.
 *
 * This header is the only part of the scheduler a worker sees. Timing, leases, run
 * history and the loop are the scheduler's business.
 */
#ifndef SLUICE_SCHEDULER_WORKER_H
#define SLUICE_SCHEDULER_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "ch.h"
#include "err.h"
#include "metrics.h"
#include "store.h"

/* How a run ended, as the worker sees it. */
enum sched_outcome {
    SCHED_DONE = 0, /* finished the work of this slot */
    SCHED_RETRY,    /* stopped early (asked to stop, or a passing failure); the next slot
                       continues from the saved checkpoint */
    SCHED_FAILED,   /* cannot succeed as things are (bad data, bad settings) */
};

/* What happens to slots that passed while no scheduler was leading. */
enum sched_missed {
    SCHED_MISSED_RUN = 0, /* run once, at start, for the latest missed slot */
    SCHED_MISSED_SKIP,    /* wait for the next slot */
};

/* Shared settings and services a worker may use; borrowed, they outlive the worker. */
struct sched_worker_env {
    const struct sl_store_settings *store;
    const struct sl_ch_settings *ch;
    struct sl_metrics *metrics;
};

/*
 * One run, handed to the worker's run callback on the thread that runs it. The worker
 * reads the inputs, polls sched_run_should_stop between units of work (a batch, a chunk)
 * and returns at the first checkpoint after it says true, and fills the outputs.
 */
struct sched_run {
    /* inputs (read-only for the worker) */
    const char *job;         /* the job's name */
    int64_t run_id;          /* its row in sched_runs */
    int64_t slot_s;          /* the schedule slot (unix seconds) this run is for */
    const char *kind;        /* "schedule", "missed" or "manual" */
    int64_t now_s;           /* wall clock when the run started */
    struct sl_store *store;  /* borrowed: the job's own store handle, for this thread and
                                this run only */
    const char *checkpoint;  /* what the last run saved with sched_run_set_checkpoint; "" */

    /* outputs */
    int64_t rows;            /* rows touched (deleted, written, rolled up) */
    struct sl_err err;       /* why the run ended SCHED_RETRY or SCHED_FAILED */

    /* private: set by the scheduler */
    const atomic_int *_stop;
    int64_t _deadline_ms;    /* sched_run_clock_ms() when the job's timeout passes */
    bool _has_checkpoint;
    char _checkpoint[SL_STORE_CHECKPOINT_MAX];
};

/*
 * Whether the run should stop at its next checkpoint: the scheduler is shutting down, lost
 * its lease, or the job's timeout passed. Cheap; call it between units of work.
 */
bool sched_run_should_stop(const struct sched_run *run);

/* Milliseconds left before the job's timeout; 0 once it passed. */
int64_t sched_run_remaining_ms(const struct sched_run *run);

/*
 * Saves text (copied) as the checkpoint the next run gets, written with the end of this
 * run. SL_EINVAL when it is longer than SL_STORE_CHECKPOINT_MAX - 1 bytes (nothing saved).
 */
int sched_run_set_checkpoint(struct sched_run *run, const char *text);

/* A monotonic clock in milliseconds (the timeouts' clock). Any thread. */
int64_t sched_run_clock_ms(void);

/* Creates a worker's context from its settings struct (borrowed, valid until destroy). */
typedef int (*sched_worker_create_cb)(const void *settings, const struct sched_worker_env *env,
                                      void **ctx_out, struct sl_err *err);
/* Runs one slot on a threadpool thread; never called twice at once for one context. */
typedef enum sched_outcome (*sched_worker_run_cb)(void *ctx, struct sched_run *run);
/* Frees the context. Accepts NULL. */
typedef void (*sched_worker_destroy_cb)(void *ctx);

struct sched_worker {
    const char *name;             /* job name: lower_snake, at most 40 bytes */
    const char *summary;          /* what it does, one line (for --help-config) */
    const char *default_schedule; /* cron expression, @macro or "@every 30s" */
    enum sched_missed default_missed;
    int64_t default_timeout_s;
    bool is_test_only;            /* registered only with SLUICE_SCHEDULER_TEST_JOBS=1 */
    const struct sl_cfg_opt *opts; /* the worker's own settings (keys SLUICE_JOB_<NAME>_*),
                                      offsets into a struct of settings_size bytes */
    size_t n_opts;
    size_t settings_size;
    sched_worker_create_cb create;
    sched_worker_run_cb run;
    sched_worker_destroy_cb destroy;
};

#endif

/*
 * Jobs: the settings each worker gets as a job (SLUICE_JOB_<NAME>_SCHEDULE, _ENABLED,
 * _TIMEOUT_S, _MISSED, _TZ, plus the worker's own table), built as settings sections before
 * the configuration is read, and the job made from a worker and its settings: schedule
 * parsed, zone loaded, store opened, worker context created. Running a slot is in
 * sched_int.h (sched_job_execute); when to run one is loop.c's.
 */
#ifndef SLUICE_SCHEDULER_JOB_H
#define SLUICE_SCHEDULER_JOB_H

#include <stddef.h>

#include "cfg.h"
#include "err.h"
#include "worker.h"

struct sched_job;
struct sched_job_settings;
struct sched_jobs_cfg;

/*
 * Builds the settings of every worker in workers (borrowed; must outlive cfg): one section
 * of common job settings per worker and one of the worker's own. The schedule setting
 * checks its expression while the settings load, so a bad one is refused with the job's
 * name, the expression and the field at fault.
 * Returns 0 and *out (free with sched_jobs_cfg_destroy), SL_EINVAL when a worker's name is
 * not lower_snake of at most 40 bytes or names repeat, SL_ENOMEM.
 */
int sched_jobs_cfg_create(const struct sched_worker *const *workers, size_t n_workers,
                          struct sched_jobs_cfg **out, struct sl_err *err);

/* Frees cfg and the setting values loaded into it. Accepts NULL. */
void sched_jobs_cfg_destroy(struct sched_jobs_cfg *cfg);

/* The sections to load (borrowed from cfg): *n_out of them. */
const struct sl_cfg_section *sched_jobs_cfg_sections(const struct sched_jobs_cfg *cfg,
                                                     size_t *n_out);

/* How many workers cfg has, and the i-th (borrowed). */
size_t sched_jobs_cfg_n_workers(const struct sched_jobs_cfg *cfg);
const struct sched_worker *sched_jobs_cfg_worker(const struct sched_jobs_cfg *cfg, size_t i);

/* Whether the i-th worker's job is enabled (after the settings were loaded). */
bool sched_jobs_cfg_is_enabled(const struct sched_jobs_cfg *cfg, size_t i);

/* What a job needs beyond its settings; borrowed, must outlive the job. */
struct sched_job_env {
    const char *zoneinfo_dir; /* SLUICE_SCHEDULER_ZONEINFO_DIR */
    const char *lease;        /* the lease that fences run starts */
    const char *owner;        /* this scheduler's id */
    struct sched_worker_env worker;
};

/*
 * Creates the job of cfg's i-th worker from its loaded settings: parses the schedule,
 * loads the zone and, when the job is enabled, opens its own store handle and calls the
 * worker's create. Returns 0 and *out (free with sched_job_destroy), or fails with err
 * naming the setting and the job (SL_EINVAL for a bad schedule or zone, which the caller
 * treats as bad settings), or what the store or worker reported. Main thread, at start.
 */
int sched_job_create(const struct sched_jobs_cfg *cfg, size_t i,
                     const struct sched_job_env *env, struct sched_job **out,
                     struct sl_err *err);

/* Destroys the worker context, closes the store, frees the job. Accepts NULL and
 * half-built jobs. No run may be in flight. */
void sched_job_destroy(struct sched_job *job);

/* The job's name, schedule text and zone name (borrowed from the job). */
const char *sched_job_name(const struct sched_job *job);
const char *sched_job_schedule(const struct sched_job *job);
const char *sched_job_zone(const struct sched_job *job);
bool sched_job_is_enabled(const struct sched_job *job);
int64_t sched_job_timeout_s(const struct sched_job *job);

#endif

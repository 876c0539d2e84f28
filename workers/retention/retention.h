/*
 * The retention job: deletes tenant data past retention from every table that holds it
 * (events, sessions, events_hourly, events_daily) and cold exports, with a deletion audit.
 * This header is what the scheduler's registry and the CLI see: the job's settings
 * (SLUICE_JOB_RETENTION_*), the worker descriptor, and the policy the settings make.
 * plan.h holds the pure plan, survey.h the counted plan (the dry run).
 */
#ifndef SLUICE_WORKERS_RETENTION_RETENTION_H
#define SLUICE_WORKERS_RETENTION_RETENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "err.h"
#include "plan.h"
#include "worker.h"

/* SLUICE_JOB_RETENTION_* (strings owned by the cfg module). */
struct retention_settings {
    bool is_dry_run;                   /* _DRY_RUN: count and log, delete nothing */
    int64_t downgrade_grace_days;      /* _DOWNGRADE_GRACE_DAYS */
    char *disabled_policy;             /* _DISABLED_POLICY: keep | purge */
    int64_t disabled_purge_after_days; /* _DISABLED_PURGE_AFTER_DAYS */
    int64_t mutation_timeout_s;        /* _MUTATION_TIMEOUT_S */
    int64_t max_tenants_per_mutation;  /* _MAX_TENANTS_PER_MUTATION */
};

extern const struct sl_cfg_opt retention_cfg_opts[];
extern const size_t retention_cfg_n_opts;

/* The job "retention" (default schedule 30 2 * * *, missed slots run). */
extern const struct sched_worker retention_worker;

/* The plan's policy from the settings (borrowed). Cannot fail. */
void retention_policy_from_settings(const struct retention_settings *s,
                                    struct retention_policy *out);

#endif

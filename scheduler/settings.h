/* Settings of sluice-scheduler's own. Shared settings live in the shared library; each
 * job's settings (SLUICE_JOB_<NAME>_*) are built by job.c from the worker registry. */
#ifndef SLUICE_SCHEDULER_SETTINGS_H
#define SLUICE_SCHEDULER_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cfg.h"

struct sched_settings {
    char *http_addr;            /* SLUICE_SCHEDULER_HTTP_ADDR */
    int64_t lease_ttl_s;        /* SLUICE_SCHEDULER_LEASE_TTL_S */
    int64_t shutdown_timeout_s; /* SLUICE_SCHEDULER_SHUTDOWN_TIMEOUT_S */
    char *id;                   /* SLUICE_SCHEDULER_ID; "" means host:pid:random */
    char *zoneinfo_dir;         /* SLUICE_SCHEDULER_ZONEINFO_DIR */
    bool has_test_jobs;         /* SLUICE_SCHEDULER_TEST_JOBS */
};

extern const struct sl_cfg_opt sched_settings_opts[];
extern const size_t sched_settings_n_opts;

#endif

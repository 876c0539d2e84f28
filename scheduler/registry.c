/* The worker registry (see registry.h). Order is the order of --help-config. */
#include "registry.h"

#include "backfill.h"
#include "builtin.h"
#include "compress.h"
#include "enrich_job.h"
#include "notify.h"
#include "retention.h"

const struct sched_worker *const sched_registry[] = {
    &sched_maintenance_worker,
    &retention_worker,
    &compress_worker,
    &enrich_worker,
    &notify_worker,
    &backfill_worker,
    /* Test only: registered as a job only with SLUICE_SCHEDULER_TEST_JOBS=1. */
    &sched_testjob_worker,
};
const size_t sched_registry_n = sizeof(sched_registry) / sizeof(sched_registry[0]);

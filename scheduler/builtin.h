/*
 * The scheduler's built-in workers: store_maintenance (always there) and test_sleep
 * (registered only with SLUICE_SCHEDULER_TEST_JOBS=1, for tests of the machinery).
 */
#ifndef SLUICE_SCHEDULER_BUILTIN_H
#define SLUICE_SCHEDULER_BUILTIN_H

#include "worker.h"

/* store_maintenance: prune run history, PRAGMA optimize, WAL checkpoint (maintenance.c). */
extern const struct sched_worker sched_maintenance_worker;

/* test_sleep: sleeps a settable time in 10 ms steps, honouring stop requests (testjob.c).
 * Test only. */
extern const struct sched_worker sched_testjob_worker;

#endif

/*
 * The worker registry: every job sluice-scheduler can run, in one static array. A new
 * worker is one line in registry.c plus one add_subdirectory (STYLE §10).
 */
#ifndef SLUICE_SCHEDULER_REGISTRY_H
#define SLUICE_SCHEDULER_REGISTRY_H

#include <stddef.h>

#include "worker.h"

extern const struct sched_worker *const sched_registry[];
extern const size_t sched_registry_n;

#endif

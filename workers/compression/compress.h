/*
 * The compression job ("compression"): for tenants whose tier sets compress_after_hours,
 * whole UTC days of raw events older than that are proven to be in the hourly and daily
 * rollups, exported to cold storage (cold.h) and verified, and only then deleted from the
 * raw table. README.md in this folder walks through the steps and the proof.
 */
#ifndef SLUICE_WORKERS_COMPRESSION_COMPRESS_H
#define SLUICE_WORKERS_COMPRESSION_COMPRESS_H

#include "worker.h"

/* The job's descriptor, listed in scheduler/registry.c. */
extern const struct sched_worker compress_worker;

#endif

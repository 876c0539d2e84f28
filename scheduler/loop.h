/*
 * The scheduler's loop: on a libuv loop it keeps (or waits for) the lease that makes one
 * scheduler the leader, times each job's next slot, runs jobs on the threadpool
 * (uv_queue_work) so the loop keeps timing and answering while a long job runs, never
 * starts a job that is still running, asks jobs past their timeout to stop, polls for
 * `sluice jobs run` requests, and stops gracefully. All SQLite work happens on the
 * threadpool too: a control round trip each second (lease, requests, next-run times) on
 * the loop's own store handle, and each job's runs on the job's handle.
 *
 * Leadership: every second a standby reads the lease and takes it once it has expired; the
 * leader renews it every ttl/3. Run starts are fenced by the lease in SQLite and unique per
 * (job, slot), so even two processes that both believe they lead cannot run a slot twice.
 *
 * Everything here runs on the loop thread except sched_loop_health (any thread).
 */
#ifndef SLUICE_SCHEDULER_LOOP_H
#define SLUICE_SCHEDULER_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "err.h"
#include "metrics.h"
#include "store.h"

struct sched_job;
struct sched_loop;

/* Name of the lease row the schedulers compete for. */
#define SCHED_LOOP_LEASE "scheduler"

struct sched_loop_settings {
    const char *owner;           /* this scheduler's id (keeps) */
    int64_t lease_ttl_s;         /* SLUICE_SCHEDULER_LEASE_TTL_S, at least 3 */
    int64_t shutdown_timeout_s;  /* SLUICE_SCHEDULER_SHUTDOWN_TIMEOUT_S */
    const struct sl_store_settings *store; /* keeps */
};

/*
 * Creates the loop's state on uv (keeps; the caller runs it): opens the control store
 * handle, registers the metrics (m keeps), inits the timers. jobs (n_jobs of them) are
 * kept, not owned: the caller destroys them after sched_loop_destroy.
 * Returns 0 and *out (free with sched_loop_destroy after uv_run returned), or fails with
 * err (store, memory); *out is NULL then. Loop thread.
 */
int sched_loop_create(uv_loop_t *uv, const struct sched_loop_settings *s,
                      struct sched_job *const *jobs, size_t n_jobs, struct sl_metrics *m,
                      struct sched_loop **out, struct sl_err *err);

/* Starts the timers: the first control round trip goes out at once. Never fails. */
void sched_loop_start(struct sched_loop *l);

/*
 * Begins a graceful stop (SIGTERM): no new runs, running jobs asked to stop at their next
 * checkpoint, then the lease is released and every handle of the loop closed, so uv_run
 * returns. If jobs are still running after the shutdown timeout, the loop gives up on them
 * (sched_loop_is_forced) and stops uv. Safe to call twice.
 */
void sched_loop_stop(struct sched_loop *l);

/* Whether the stop gave up on jobs that did not reach a checkpoint in time. The process
 * must then exit without freeing what those jobs use. */
bool sched_loop_is_forced(const struct sched_loop *l);

/* Frees the loop's state. Accepts NULL. Only after uv_run returned after a stop that was
 * not forced. */
void sched_loop_destroy(struct sched_loop *l);

/*
 * The /health answer as JSON text (returns new; free with sl_free): role (leader or
 * standby), this scheduler's id, the lease's owner and expiry, running jobs, each job's
 * next slot, and loop lag. *http_status gets 200, or 503 when the loop has not ticked for
 * 5 seconds or is stopping. NULL when memory ran out. Any thread.
 */
char *sched_loop_health(struct sched_loop *l, unsigned *http_status);

#endif

/*
 * Internals of the scheduler loop shared by loop.c (timers, runs, stopping, /health) and
 * lease.c (the lease and the store round trip each second): the layout of the loop and
 * the calls between the two files. Loop thread only unless a field says otherwise.
 */
#ifndef SLUICE_SCHEDULER_LOOP_INT_H
#define SLUICE_SCHEDULER_LOOP_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "loop.h"
#include "metrics.h"
#include "store.h"

/* The loop's view of one job. Loop thread only, except `snap`, under the loop's mutex. */
struct sched_slot {
    struct sched_loop *loop;
    struct sched_job *job;
    bool is_running;
    int64_t next_slot_s;       /* 0: not scheduled (standby, disabled, stopping) */
    int64_t written_next_s;    /* next_slot_s as last written to sched_jobs; -1: never */
    int64_t pending_request_s; /* a `sluice jobs run` to start when free; 0: none */
    int64_t last_request_s;    /* the last request started, so a re-read one is ignored */
    int64_t run_slot_s;
    int64_t run_started_s;
    uv_work_t work;
    uv_timer_t timeout_timer;
    struct sl_metrics_series *m_runs[SL_RUN_TIMEOUT + 1];
    struct sl_metrics_series *m_seconds;
    struct sl_metrics_series *m_rows;
    struct sl_metrics_series *m_skipped_overlap;
    struct sl_metrics_series *m_skipped_missed;
    struct sl_metrics_series *m_skipped_taken;
};

/* One control round trip. Inputs set on the loop thread, outputs read back there. */
struct sched_ctl {
    uv_work_t work;
    bool is_in_flight;
    /* inputs */
    int64_t now_s;
    bool was_leader;
    bool do_renew;
    bool do_release;
    int64_t *next_write; /* per job: a next-run time to save, or -1 */
    /* outputs */
    int rc;
    struct sl_err err;
    bool is_leader;
    bool has_lease;
    struct sl_lease lease;
    int64_t n_abandoned;
    bool *has_state;     /* per job: state read */
    struct sl_job *states;
};

struct sched_snapshot {
    bool is_leader;
    bool is_stopping;
    char lease_owner[SL_STORE_OWNER_MAX];
    int64_t lease_expires_s;
    int64_t last_tick_ms;
    double last_lag_s;
    double max_lag_s;
    struct {
        bool is_running;
        int64_t run_slot_s;
        int64_t run_started_s;
        int64_t next_slot_s;
    } *jobs;
};

struct sched_loop {
    uv_loop_t *uv;
    struct sched_loop_settings settings;
    struct sl_store *store; /* the control work's; one round trip at a time */
    struct sched_slot *slots;
    size_t n_slots;

    uv_timer_t tick_timer;
    uv_timer_t due_timer;
    uv_timer_t lag_timer;
    uv_timer_t stop_timer;
    bool are_handles_closed;

    bool is_leader;
    int64_t lease_until_s;  /* our lease's expiry as of the last successful take/renew */
    int64_t last_renew_s;
    bool is_ctl_failing;
    bool is_stopping;
    bool is_released;
    bool is_forced;
    struct sched_ctl ctl;
    uint64_t lag_last_ns;

    struct sl_metrics_series *m_lag;
    struct sl_metrics_series *m_is_leader;
    struct sl_metrics_series *m_running;
    struct sl_metrics_series *m_lease_taken;

    uv_mutex_t snap_lock;
    bool is_lock_init;
    struct sched_snapshot snap;
};

/* Copies the loop's state into the /health snapshot (takes the snapshot's mutex). */
void sched_loop_publish(struct sched_loop *l);
void sched_loop_publish_lease(struct sched_loop *l, const char *owner, int64_t expires_s);

/* Queues a run of s's job for slot_s ("schedule", "missed", "manual") unless it is running,
 * the loop does not lead or is stopping, or the job is disabled. */
void sched_loop_start_run(struct sched_slot *s, int64_t slot_s, const char *kind);

/* Arms the due timer for the earliest next slot (stops it when there is none). */
void sched_loop_arm_due(struct sched_loop *l);

/* While stopping: once no run and no round trip is in flight, releases the lease (if held)
 * and then closes the loop's handles. */
void sched_loop_maybe_finish_stop(struct sched_loop *l);
void sched_loop_finish_stop(struct sched_loop *l);

/* The tick timer's callback (lease.c): one store round trip at a time. */
void sched_lease_on_tick(uv_timer_t *t);

/* Queues the round trip that releases the lease; its end finishes the stop. 0 or a libuv
 * error (then nothing was queued). */
int sched_lease_release(struct sched_loop *l);

#endif

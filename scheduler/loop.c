/*
 * The loop's timers and their callbacks: a due timer armed for the earliest next slot,
 * one timeout timer per job, a 100 ms timer that measures loop lag, and the shutdown
 * deadline (the tick timer's callback, the lease, is lease.c's). Job runs go through
 * uv_queue_work (sched_job_execute); their results come back in run_after on this thread.
 * Also the /health snapshot, and creating and destroying the loop.
 */
#include "loop.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "job.h"
#include "log.h"
#include "loop_int.h"
#include "sched_int.h"
#include "timefmt.h"

#define COMPONENT "scheduler"
#define TICK_MS 1000
#define LAG_INTERVAL_MS 100
#define DUE_MAX_DELAY_MS 60000
#define STALE_LOOP_MS 5000

static const double run_bounds[] = {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
                                    60, 120, 300, 600, 1800, 3600};

static int64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_s(void)
{
    return sched_floor_div(wall_ms(), 1000);
}

static const char *iso(int64_t s, char buf[SL_TIMEFMT_ISO_MAX])
{
    return s > 0 ? sl_timefmt_iso(s, buf) : "-";
}

/* ---- health snapshot ---- */

void sched_loop_publish(struct sched_loop *l)
{
    uv_mutex_lock(&l->snap_lock);
    l->snap.is_leader = l->is_leader;
    l->snap.is_stopping = l->is_stopping;
    for (size_t i = 0; i < l->n_slots; i++) {
        const struct sched_slot *s = &l->slots[i];

        l->snap.jobs[i].is_running = s->is_running;
        l->snap.jobs[i].run_slot_s = s->run_slot_s;
        l->snap.jobs[i].run_started_s = s->run_started_s;
        l->snap.jobs[i].next_slot_s = s->next_slot_s;
    }
    uv_mutex_unlock(&l->snap_lock);
}

void sched_loop_publish_lease(struct sched_loop *l, const char *owner, int64_t expires_s)
{
    uv_mutex_lock(&l->snap_lock);
    snprintf(l->snap.lease_owner, sizeof(l->snap.lease_owner), "%s", owner);
    l->snap.lease_expires_s = expires_s;
    uv_mutex_unlock(&l->snap_lock);
}

char *sched_loop_health(struct sched_loop *l, unsigned *http_status)
{
    char buf[SL_TIMEFMT_ISO_MAX];
    json_t *root = NULL, *running = NULL, *jobs = NULL, *lease = NULL;
    int64_t now_ms = sched_run_clock_ms();
    int64_t now_s = wall_s();
    bool is_stale;
    char *text;

    running = json_array();
    jobs = json_array();
    uv_mutex_lock(&l->snap_lock);
    is_stale = now_ms - l->snap.last_tick_ms > STALE_LOOP_MS;
    lease = l->snap.lease_owner[0] != '\0'
                ? json_pack("{s:s, s:s, s:I}", "owner", l->snap.lease_owner, "expires_at",
                            iso(l->snap.lease_expires_s, buf), "expires_in_s",
                            (json_int_t)(l->snap.lease_expires_s - now_s))
                : json_null();
    for (size_t i = 0; i < l->n_slots; i++) {
        const struct sched_job *job = l->slots[i].job;
        char next[SL_TIMEFMT_ISO_MAX];

        if (l->snap.jobs[i].is_running) {
            json_array_append_new(running,
                                  json_pack("{s:s, s:s, s:s}", "job", sched_job_name(job),
                                            "slot", iso(l->snap.jobs[i].run_slot_s, buf),
                                            "started_at",
                                            iso(l->snap.jobs[i].run_started_s, next)));
        }
        json_array_append_new(
            jobs, json_pack("{s:s, s:s, s:s, s:b, s:o}", "name", sched_job_name(job),
                            "schedule", sched_job_schedule(job), "zone", sched_job_zone(job),
                            "enabled", sched_job_is_enabled(job), "next_run",
                            l->snap.jobs[i].next_slot_s > 0
                                ? json_string(iso(l->snap.jobs[i].next_slot_s, next))
                                : json_null()));
    }
    root = json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:f, s:f}", "status",
                     l->snap.is_stopping ? "stopping" : is_stale ? "stalled" : "ok", "role",
                     l->snap.is_leader ? "leader" : "standby", "id", l->settings.owner,
                     "lease", lease, "running", running, "jobs", jobs, "loop_lag_ms",
                     l->snap.last_lag_s * 1000.0, "loop_lag_max_ms", l->snap.max_lag_s * 1000.0);
    *http_status = l->snap.is_stopping || is_stale ? 503 : 200;
    uv_mutex_unlock(&l->snap_lock);
    if (root == NULL) {
        return NULL;
    }
    text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}

/* ---- runs ---- */


static void run_work(uv_work_t *w)
{
    struct sched_slot *s = w->data;

    sched_job_execute(s->job);
}

static void log_run_end(struct sched_slot *s)
{
    const struct sched_job *job = s->job;
    const struct sl_log_ctx ctx = {.job_id = sched_job_name(job)};
    const char *status = sl_store_run_status_name(job->run_status);
    char slot_buf[SL_TIMEFMT_ISO_MAX];
    enum sl_log_level level = SL_LOG_LEVEL_INFO;

    if (job->run_status == SL_RUN_FAILED) {
        level = SL_LOG_LEVEL_ERROR;
    }
    else if (job->run_status != SL_RUN_DONE) {
        level = SL_LOG_LEVEL_WARN;
    }
    SL_LOG_AT(level, COMPONENT, &ctx, "job %s run %lld (%s slot %s) ended %s in %lld ms, %lld "
              "rows%s%s", sched_job_name(job), (long long)job->run.run_id, job->run_kind,
              iso(s->run_slot_s, slot_buf), status, (long long)job->run_duration_ms,
              (long long)job->run.rows, job->run.err.msg[0] != '\0' ? ": " : "",
              job->run.err.msg);
}

static void run_after(uv_work_t *w, int status)
{
    struct sched_slot *s = w->data;
    struct sched_loop *l = s->loop;
    struct sched_job *job = s->job;
    const struct sl_log_ctx ctx = {.job_id = sched_job_name(job)};
    char slot_buf[SL_TIMEFMT_ISO_MAX];

    s->is_running = false;
    uv_timer_stop(&s->timeout_timer);
    sl_metrics_gauge_add(l->m_running, -1);
    if (status == UV_ECANCELED) {
        sl_log_info_ctx(COMPONENT, &ctx, "job %s: queued run cancelled before it started",
                        sched_job_name(job));
    }
    else {
        switch (job->exec_result) {
        case SCHED_EXEC_SLOT_TAKEN:
            sl_log_info_ctx(COMPONENT, &ctx, "job %s: slot %s already ran; not running it again",
                            sched_job_name(job), iso(s->run_slot_s, slot_buf));
            sl_metrics_counter_add(s->m_skipped_taken, 1);
            break;
        case SCHED_EXEC_NOT_LEADER:
            sl_log_warn_ctx(COMPONENT, &ctx, "job %s: not started: %s", sched_job_name(job),
                            job->exec_err.msg);
            break;
        case SCHED_EXEC_STORE_ERROR:
            sl_log_error_ctx(COMPONENT, &ctx, "job %s: not started, the run could not be "
                             "recorded: %s", sched_job_name(job), job->exec_err.msg);
            break;
        case SCHED_EXEC_RAN:
            log_run_end(s);
            sl_metrics_counter_add(s->m_runs[job->run_status], 1);
            sl_metrics_histogram_observe(s->m_seconds, (double)job->run_duration_ms / 1000.0);
            sl_metrics_counter_add(s->m_rows, job->run.rows > 0 ? (uint64_t)job->run.rows : 0);
            if (job->exec_err.code != 0) {
                sl_log_error_ctx(COMPONENT, &ctx, "job %s: could not record the end of run "
                                 "%lld: %s", sched_job_name(job), (long long)job->run.run_id,
                                 job->exec_err.msg);
            }
            break;
        }
    }
    sched_loop_publish(l);
    if (l->is_stopping) {
        sched_loop_maybe_finish_stop(l);
        return;
    }
    if (s->pending_request_s > 0 && l->is_leader) {
        int64_t slot_s = s->pending_request_s;

        /* A manual request waited for this run to end. */
        s->pending_request_s = 0;
        s->last_request_s = slot_s;
        sched_loop_start_run(s, slot_s, "manual");
    }
}

static void on_timeout(uv_timer_t *t)
{
    struct sched_slot *s = t->data;
    const struct sl_log_ctx ctx = {.job_id = sched_job_name(s->job)};
    int expected = SCHED_STOP_NONE;

    if (atomic_compare_exchange_strong(&s->job->stop_reason, &expected, SCHED_STOP_TIMEOUT)) {
        sl_log_warn_ctx(COMPONENT, &ctx, "job %s passed its timeout of %llds; asked it to stop "
                        "at its next checkpoint", sched_job_name(s->job),
                        (long long)sched_job_timeout_s(s->job));
    }
}

void sched_loop_start_run(struct sched_slot *s, int64_t slot_s, const char *kind)
{
    struct sched_loop *l = s->loop;
    struct sched_job *job = s->job;
    const struct sl_log_ctx ctx = {.job_id = sched_job_name(job)};
    char slot_buf[SL_TIMEFMT_ISO_MAX];
    int rc;

    if (s->is_running || !l->is_leader || l->is_stopping || !sched_job_is_enabled(job)) {
        return;
    }
    job->run_slot_s = slot_s;
    job->run_kind = kind;
    atomic_store(&job->stop_reason, SCHED_STOP_NONE);
    s->work.data = s;
    rc = uv_queue_work(l->uv, &s->work, run_work, run_after);
    if (rc != 0) {
        sl_log_error_ctx(COMPONENT, &ctx, "job %s: cannot queue its run: %s",
                         sched_job_name(job), uv_strerror(rc));
        return;
    }
    s->is_running = true;
    s->run_slot_s = slot_s;
    s->run_started_s = wall_s();
    sl_metrics_gauge_add(l->m_running, 1);
    uv_timer_start(&s->timeout_timer, on_timeout, (uint64_t)sched_job_timeout_s(job) * 1000, 0);
    sl_log_debug(COMPONENT, "job %s: starting %s slot %s", sched_job_name(job), kind,
                 iso(slot_s, slot_buf));
    sched_loop_publish(l);
}

/* ---- timing slots ---- */

static void on_due(uv_timer_t *t)
{
    struct sched_loop *l = t->data;
    int64_t now_ms = wall_ms();
    int64_t now_s = sched_floor_div(now_ms, 1000);

    for (size_t i = 0; i < l->n_slots && l->is_leader && !l->is_stopping; i++) {
        struct sched_slot *s = &l->slots[i];
        const struct sl_log_ctx ctx = {.job_id = sched_job_name(s->job)};
        char running_buf[SL_TIMEFMT_ISO_MAX], slot_buf[SL_TIMEFMT_ISO_MAX];
        int64_t slot_s = s->next_slot_s;

        if (slot_s <= 0 || slot_s * 1000 > now_ms) {
            continue;
        }
        if (s->is_running) {
            /* A job never overlaps itself: this slot is given up, not queued. */
            sl_log_info_ctx(COMPONENT, &ctx, "job %s is still running (slot %s); slot %s "
                            "skipped", sched_job_name(s->job), iso(s->run_slot_s, running_buf),
                            iso(slot_s, slot_buf));
            sl_metrics_counter_add(s->m_skipped_overlap, 1);
        }
        else {
            sched_loop_start_run(s, slot_s, "schedule");
        }
        s->next_slot_s = sched_job_next(s->job, now_s > slot_s ? now_s : slot_s);
        if (s->next_slot_s < 0) {
            s->next_slot_s = 0;
        }
    }
    sched_loop_publish(l);
    sched_loop_arm_due(l);
}

void sched_loop_arm_due(struct sched_loop *l)
{
    int64_t first = 0;
    int64_t delay_ms;

    uv_timer_stop(&l->due_timer);
    if (!l->is_leader || l->is_stopping) {
        return;
    }
    for (size_t i = 0; i < l->n_slots; i++) {
        int64_t next = l->slots[i].next_slot_s;

        if (next > 0 && (first == 0 || next < first)) {
            first = next;
        }
    }
    if (first == 0) {
        return;
    }
    /* Slots are wall-clock times; the timer runs on the monotonic clock. Waking up at
     * most each minute keeps a wall-clock step from delaying a slot for long. */
    delay_ms = first * 1000 - wall_ms();
    if (delay_ms < 0) {
        delay_ms = 0;
    }
    if (delay_ms > DUE_MAX_DELAY_MS) {
        delay_ms = DUE_MAX_DELAY_MS;
    }
    uv_timer_start(&l->due_timer, on_due, (uint64_t)delay_ms, 0);
}

/* ---- loop lag ---- */

static void on_lag(uv_timer_t *t)
{
    struct sched_loop *l = t->data;
    uint64_t now_ns = uv_hrtime();

    if (l->lag_last_ns != 0) {
        int64_t late_ns = (int64_t)(now_ns - l->lag_last_ns) - LAG_INTERVAL_MS * 1000000LL;
        double lag_s = late_ns > 0 ? (double)late_ns / 1e9 : 0.0;

        sl_metrics_histogram_observe(l->m_lag, lag_s);
        uv_mutex_lock(&l->snap_lock);
        l->snap.last_lag_s = lag_s;
        if (lag_s > l->snap.max_lag_s) {
            l->snap.max_lag_s = lag_s;
        }
        uv_mutex_unlock(&l->snap_lock);
    }
    l->lag_last_ns = now_ns;
    uv_mutex_lock(&l->snap_lock);
    l->snap.last_tick_ms = sched_run_clock_ms();
    uv_mutex_unlock(&l->snap_lock);
}

/* ---- stopping ---- */

void sched_loop_finish_stop(struct sched_loop *l)
{
    if (l->are_handles_closed) {
        return;
    }
    l->are_handles_closed = true;
    uv_close((uv_handle_t *)&l->tick_timer, NULL);
    uv_close((uv_handle_t *)&l->due_timer, NULL);
    uv_close((uv_handle_t *)&l->lag_timer, NULL);
    uv_close((uv_handle_t *)&l->stop_timer, NULL);
    for (size_t i = 0; i < l->n_slots; i++) {
        uv_close((uv_handle_t *)&l->slots[i].timeout_timer, NULL);
    }
    sched_loop_publish(l);
}

void sched_loop_maybe_finish_stop(struct sched_loop *l)
{
    struct sched_ctl *c = &l->ctl;

    if (!l->is_stopping || c->is_in_flight || l->are_handles_closed) {
        return;
    }
    for (size_t i = 0; i < l->n_slots; i++) {
        if (l->slots[i].is_running) {
            return;
        }
    }
    if (l->is_leader && !l->is_released && sched_lease_release(l) == 0) {
        return; /* the round trip's end finishes the stop */
    }
    sched_loop_finish_stop(l);
}

static void on_stop_deadline(uv_timer_t *t)
{
    struct sched_loop *l = t->data;

    for (size_t i = 0; i < l->n_slots; i++) {
        if (l->slots[i].is_running) {
            sl_log_error(COMPONENT, "job %s did not reach a checkpoint within %llds of the "
                         "stop; exiting without it (the next leader marks its run abandoned)",
                         sched_job_name(l->slots[i].job),
                         (long long)l->settings.shutdown_timeout_s);
        }
    }
    if (l->is_leader && !l->ctl.is_in_flight) {
        /* Blocking on the loop thread is fine now: the process is about to exit. */
        sl_store_lease_release(l->store, SCHED_LOOP_LEASE, l->settings.owner, NULL);
    }
    l->is_forced = true;
    uv_stop(l->uv);
}

void sched_loop_stop(struct sched_loop *l)
{
    size_t n_running = 0;

    if (l->is_stopping) {
        return;
    }
    l->is_stopping = true;
    uv_timer_stop(&l->tick_timer);
    uv_timer_stop(&l->due_timer);
    uv_timer_stop(&l->lag_timer);
    for (size_t i = 0; i < l->n_slots; i++) {
        struct sched_slot *s = &l->slots[i];
        int expected = SCHED_STOP_NONE;

        s->next_slot_s = 0;
        s->pending_request_s = 0;
        if (s->is_running) {
            atomic_compare_exchange_strong(&s->job->stop_reason, &expected,
                                           SCHED_STOP_SHUTDOWN);
            n_running++;
        }
    }
    sl_log_info(COMPONENT, "stopping: %zu job(s) running, waiting up to %llds for them to "
                "reach a checkpoint", n_running, (long long)l->settings.shutdown_timeout_s);
    uv_timer_start(&l->stop_timer, on_stop_deadline,
                   (uint64_t)l->settings.shutdown_timeout_s * 1000, 0);
    sched_loop_publish(l);
    sched_loop_maybe_finish_stop(l);
}

bool sched_loop_is_forced(const struct sched_loop *l)
{
    return l->is_forced;
}

/* ---- create / start / destroy ---- */

static int register_metrics(struct sched_loop *l, struct sl_metrics *m, struct sl_err *err)
{
    static const char *const job_status[] = {"job", "status"};
    static const char *const job_only[] = {"job"};
    static const char *const job_reason[] = {"job", "reason"};
    struct sl_metrics_family *runs =
        sl_metrics_counter(m, "sluice_scheduler_runs_total", "Job runs by how they ended.",
                           job_status, 2);
    struct sl_metrics_family *seconds =
        sl_metrics_histogram(m, "sluice_scheduler_run_seconds", "How long job runs took.",
                             job_only, 1, run_bounds, sizeof(run_bounds) / sizeof(run_bounds[0]));
    struct sl_metrics_family *rows =
        sl_metrics_counter(m, "sluice_scheduler_run_rows_total", "Rows job runs touched.",
                           job_only, 1);
    struct sl_metrics_family *skipped = sl_metrics_counter(
        m, "sluice_scheduler_slots_skipped_total",
        "Slots not run: overlap (still running), missed (policy skip), taken (already ran).",
        job_reason, 2);
    struct sl_metrics_family *lag = sl_metrics_histogram(
        m, "sluice_scheduler_loop_lag_seconds",
        "How late the loop's 100 ms timer fired: time the loop was blocked.", NULL, 0,
        sl_metrics_latency_bounds, sl_metrics_latency_n_bounds);
    struct sl_metrics_family *leader = sl_metrics_gauge(
        m, "sluice_scheduler_is_leader", "1 while this scheduler holds the lease.", NULL, 0);
    struct sl_metrics_family *running =
        sl_metrics_gauge(m, "sluice_scheduler_jobs_running", "Job runs in progress.", NULL, 0);
    struct sl_metrics_family *taken = sl_metrics_counter(
        m, "sluice_scheduler_lease_taken_total", "Times this scheduler became leader.", NULL, 0);

    if (runs == NULL || seconds == NULL || rows == NULL || skipped == NULL || lag == NULL ||
        leader == NULL || running == NULL || taken == NULL) {
        return sl_err_set(err, SL_ENOMEM, "cannot register the scheduler's metrics");
    }
    l->m_lag = sl_metrics_series_get(lag, NULL);
    l->m_is_leader = sl_metrics_series_get(leader, NULL);
    l->m_running = sl_metrics_series_get(running, NULL);
    l->m_lease_taken = sl_metrics_series_get(taken, NULL);
    for (size_t i = 0; i < l->n_slots; i++) {
        struct sched_slot *s = &l->slots[i];
        const char *name = sched_job_name(s->job);
        const char *one[] = {name};
        const char *overlap[] = {name, "overlap"};
        const char *missed[] = {name, "missed"};
        const char *taken_l[] = {name, "taken"};

        for (int st = SL_RUN_DONE; st <= SL_RUN_TIMEOUT; st++) {
            const char *labels[] = {name, sl_store_run_status_name((enum sl_run_status)st)};

            s->m_runs[st] = sl_metrics_series_get(runs, labels);
        }
        s->m_seconds = sl_metrics_series_get(seconds, one);
        s->m_rows = sl_metrics_series_get(rows, one);
        s->m_skipped_overlap = sl_metrics_series_get(skipped, overlap);
        s->m_skipped_missed = sl_metrics_series_get(skipped, missed);
        s->m_skipped_taken = sl_metrics_series_get(skipped, taken_l);
    }
    return 0;
}

int sched_loop_create(uv_loop_t *uv, const struct sched_loop_settings *s,
                      struct sched_job *const *jobs, size_t n_jobs, struct sl_metrics *m,
                      struct sched_loop **out, struct sl_err *err)
{
    struct sched_loop *l = NULL;
    size_t n = n_jobs > 0 ? n_jobs : 1;
    int rc;

    *out = NULL;
    l = sl_calloc(1, sizeof(*l));
    if (l == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory creating the scheduler loop");
    }
    l->uv = uv;
    l->settings = *s;
    l->n_slots = n_jobs;
    l->slots = sl_calloc(n, sizeof(l->slots[0]));
    l->snap.jobs = sl_calloc(n, sizeof(l->snap.jobs[0]));
    l->ctl.next_write = sl_calloc(n, sizeof(l->ctl.next_write[0]));
    l->ctl.has_state = sl_calloc(n, sizeof(l->ctl.has_state[0]));
    l->ctl.states = sl_calloc(n, sizeof(l->ctl.states[0]));
    if (l->slots == NULL || l->snap.jobs == NULL || l->ctl.next_write == NULL ||
        l->ctl.has_state == NULL || l->ctl.states == NULL) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory creating the scheduler loop");
        goto fail;
    }
    if (uv_mutex_init(&l->snap_lock) != 0) {
        rc = sl_err_set(err, SL_ENOMEM, "cannot create a mutex");
        goto fail;
    }
    l->is_lock_init = true;
    for (size_t i = 0; i < n_jobs; i++) {
        l->slots[i].loop = l;
        l->slots[i].job = jobs[i];
        l->slots[i].written_next_s = -1;
    }
    rc = register_metrics(l, m, err);
    if (rc != 0) {
        goto fail;
    }
    rc = sl_store_open(&l->store, s->store->path, s->store->busy_timeout_ms, err);
    if (rc != 0) {
        goto fail;
    }
    uv_timer_init(uv, &l->tick_timer);
    uv_timer_init(uv, &l->due_timer);
    uv_timer_init(uv, &l->lag_timer);
    uv_timer_init(uv, &l->stop_timer);
    l->tick_timer.data = l;
    l->due_timer.data = l;
    l->lag_timer.data = l;
    l->stop_timer.data = l;
    for (size_t i = 0; i < n_jobs; i++) {
        uv_timer_init(uv, &l->slots[i].timeout_timer);
        l->slots[i].timeout_timer.data = &l->slots[i];
    }
    l->snap.last_tick_ms = sched_run_clock_ms();
    *out = l;
    return 0;

fail:
    sched_loop_destroy(l);
    return rc;
}

void sched_loop_start(struct sched_loop *l)
{
    uv_timer_start(&l->tick_timer, sched_lease_on_tick, 0, TICK_MS);
    uv_timer_start(&l->lag_timer, on_lag, LAG_INTERVAL_MS, LAG_INTERVAL_MS);
    sched_loop_publish(l);
}

void sched_loop_destroy(struct sched_loop *l)
{
    if (l == NULL) {
        return;
    }
    sl_store_close(l->store);
    if (l->is_lock_init) {
        uv_mutex_destroy(&l->snap_lock);
    }
    sl_free(l->ctl.states);
    sl_free(l->ctl.has_state);
    sl_free(l->ctl.next_write);
    sl_free(l->snap.jobs);
    sl_free(l->slots);
    sl_free(l);
}

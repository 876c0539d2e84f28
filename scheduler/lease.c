/*
 * The lease and the store round trip: every second one uv_work on the loop's own store
 * handle reads (standby) or takes/renews (leader, every ttl/3) the lease, and as leader
 * saves next-run times and reads run requests. Its result decides on this thread whether
 * we lead: taking the lease marks the previous leader's runs abandoned and plans each job
 * (missed-run policy, next slot); losing it asks running jobs to stop.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "job.h"
#include "log.h"
#include "loop_int.h"
#include "sched_int.h"
#include "timefmt.h"

#define COMPONENT "scheduler"
#define MAX_MISSED_COUNT 1000000

static int64_t wall_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

static const char *iso(int64_t s, char buf[SL_TIMEFMT_ISO_MAX])
{
    return s > 0 ? sl_timefmt_iso(s, buf) : "-";
}

/* Counts the slots of job after last_s up to now_s and finds the latest of them. */
static int64_t missed_slots(const struct sched_job *job, int64_t last_s, int64_t now_s,
                            int64_t *latest_s)
{
    int64_t first = sched_job_next(job, last_s);
    int64_t count = 0;
    int64_t t = first;

    *latest_s = 0;
    if (first <= 0 || first > now_s) {
        return 0;
    }
    if (job->cron.every_s > 0) {
        *latest_s = sched_floor_div(now_s, job->cron.every_s) * job->cron.every_s;
        return (*latest_s - first) / job->cron.every_s + 1;
    }
    while (t > 0 && t <= now_s && count < MAX_MISSED_COUNT) {
        *latest_s = t;
        count++;
        t = sched_job_next(job, t);
    }
    return count;
}

/* Plans a job's slots on becoming leader: the missed-run policy, then the next slot. */
static void plan_job(struct sched_loop *l, struct sched_slot *s, const struct sl_job *state,
                     int64_t now_s)
{
    const struct sl_log_ctx ctx = {.job_id = sched_job_name(s->job)};
    char a[SL_TIMEFMT_ISO_MAX], b[SL_TIMEFMT_ISO_MAX];
    int64_t latest = 0;
    int64_t n_missed = 0;

    if (!sched_job_is_enabled(s->job)) {
        s->next_slot_s = 0;
        return;
    }
    /* A job that never ran has missed nothing: it starts with its next slot. */
    if (state != NULL && state->last_slot_s > 0) {
        n_missed = missed_slots(s->job, state->last_slot_s, now_s, &latest);
    }
    if (n_missed > 0 && s->job->missed == SCHED_MISSED_RUN) {
        sl_log_info_ctx(COMPONENT, &ctx, "job %s missed %lld slot(s) since %s while no "
                        "scheduler ran it; running once for the latest, %s",
                        sched_job_name(s->job), (long long)n_missed,
                        iso(state->last_slot_s, a), iso(latest, b));
        sched_loop_start_run(s, latest, "missed");
    }
    else if (n_missed > 0) {
        sl_log_info_ctx(COMPONENT, &ctx, "job %s missed %lld slot(s) since %s; skipping them "
                        "(missed-run policy skip)", sched_job_name(s->job),
                        (long long)n_missed, iso(state->last_slot_s, a));
        sl_metrics_counter_add(s->m_skipped_missed, (uint64_t)n_missed);
    }
    s->next_slot_s = sched_job_next(s->job, now_s);
    if (s->next_slot_s < 0) {
        s->next_slot_s = 0;
    }
}

/* ---- leadership ---- */

static void become_leader(struct sched_loop *l)
{
    struct sched_ctl *c = &l->ctl;
    char buf[SL_TIMEFMT_ISO_MAX];
    int64_t now_s = wall_s();

    l->is_leader = true;
    l->lease_until_s = c->now_s + l->settings.lease_ttl_s;
    l->last_renew_s = c->now_s;
    sl_metrics_gauge_set(l->m_is_leader, 1);
    sl_metrics_counter_add(l->m_lease_taken, 1);
    sl_log_info(COMPONENT, "%s became leader (lease until %s)", l->settings.owner,
                iso(l->lease_until_s, buf));
    if (c->n_abandoned > 0) {
        sl_log_warn(COMPONENT, "marked %lld run(s) of the previous leader as failed "
                    "(abandoned)", (long long)c->n_abandoned);
    }
    for (size_t i = 0; i < l->n_slots; i++) {
        plan_job(l, &l->slots[i], c->has_state[i] ? &c->states[i] : NULL, now_s);
    }
    sched_loop_arm_due(l);
}

/* Stops acting as leader: another scheduler holds the lease, or ours ran out. */
static void step_down(struct sched_loop *l, const char *why)
{
    size_t n_running = 0;

    l->is_leader = false;
    sl_metrics_gauge_set(l->m_is_leader, 0);
    for (size_t i = 0; i < l->n_slots; i++) {
        struct sched_slot *s = &l->slots[i];
        int expected = SCHED_STOP_NONE;

        s->next_slot_s = 0;
        s->pending_request_s = 0;
        if (s->is_running) {
            atomic_compare_exchange_strong(&s->job->stop_reason, &expected,
                                           SCHED_STOP_LEASE_LOST);
            n_running++;
        }
    }
    uv_timer_stop(&l->due_timer);
    sl_log_warn(COMPONENT, "%s is standby again: %s; %zu running job(s) asked to stop at "
                "their next checkpoint", l->settings.owner, why, n_running);
}

/* ---- the control round trip ---- */

static void ctl_work(uv_work_t *w)
{
    struct sched_loop *l = w->data;
    struct sched_ctl *c = &l->ctl;
    bool is_free = true;
    int rc = 0;

    sl_err_clear(&c->err);
    c->is_leader = false;
    c->has_lease = false;
    c->n_abandoned = 0;
    if (c->do_release) {
        c->rc = sl_store_lease_release(l->store, SCHED_LOOP_LEASE, l->settings.owner, &c->err);
        return;
    }
    if (c->was_leader && !c->do_renew) {
        c->is_leader = true;
    }
    else {
        if (!c->was_leader) {
            /* A standby reads first and writes only when the lease looks free, so it does
             * not take the write lock every second. */
            rc = sl_store_lease_get(l->store, SCHED_LOOP_LEASE, &c->lease, &c->err);
            if (rc == 0) {
                c->has_lease = true;
                is_free = c->lease.expires_s <= c->now_s ||
                          strcmp(c->lease.owner, l->settings.owner) == 0;
            }
            else if (rc == SL_ENOTFOUND) {
                rc = 0;
            }
        }
        if (rc == 0 && is_free) {
            rc = sl_store_lease_acquire(l->store, SCHED_LOOP_LEASE, l->settings.owner,
                                        l->settings.lease_ttl_s, c->now_s, &c->is_leader,
                                        &c->err);
            if (rc == 0 && !c->is_leader) {
                rc = sl_store_lease_get(l->store, SCHED_LOOP_LEASE, &c->lease, &c->err);
                c->has_lease = rc == 0;
                rc = rc == SL_ENOTFOUND ? 0 : rc;
            }
        }
    }
    if (rc == 0 && c->is_leader && !c->was_leader) {
        rc = sl_store_run_abandon(l->store, l->settings.owner, c->now_s, &c->n_abandoned,
                                  &c->err);
        for (size_t i = 0; rc == 0 && i < l->n_slots; i++) {
            const struct sched_job *job = l->slots[i].job;
            struct sl_job j;

            memset(&j, 0, sizeof(j));
            snprintf(j.name, sizeof(j.name), "%s", sched_job_name(job));
            snprintf(j.schedule, sizeof(j.schedule), "%s", sched_job_schedule(job));
            snprintf(j.zone, sizeof(j.zone), "%s", sched_job_zone(job));
            j.is_enabled = sched_job_is_enabled(job);
            rc = sl_store_job_register(l->store, &j, c->now_s, &c->err);
        }
    }
    for (size_t i = 0; rc == 0 && c->is_leader && i < l->n_slots; i++) {
        const char *name = sched_job_name(l->slots[i].job);

        if (c->next_write[i] >= 0) {
            rc = sl_store_job_set_next(l->store, name, c->next_write[i], c->now_s, &c->err);
        }
        if (rc == 0) {
            rc = sl_store_job_get(l->store, name, &c->states[i], &c->err);
            c->has_state[i] = rc == 0;
        }
    }
    c->rc = rc;
}

static void ctl_after(uv_work_t *w, int status)
{
    struct sched_loop *l = w->data;
    struct sched_ctl *c = &l->ctl;
    char buf[SL_TIMEFMT_ISO_MAX];

    c->is_in_flight = false;
    if (c->do_release) {
        if (status == 0 && c->rc == 0) {
            sl_log_info(COMPONENT, "released the lease");
        }
        else {
            sl_log_warn(COMPONENT, "could not release the lease (a standby takes over when "
                        "it expires): %s", c->err.msg);
        }
        l->is_leader = false;
        l->is_released = true;
        sched_loop_finish_stop(l);
        return;
    }
    if (status != 0 || c->rc != 0) {
        if (!l->is_ctl_failing) {
            sl_log_warn(COMPONENT, "tenant store round trip failed (retrying each second): %s",
                        status != 0 ? uv_strerror(status) : c->err.msg);
        }
        l->is_ctl_failing = true;
        sched_loop_maybe_finish_stop(l);
        return;
    }
    if (l->is_ctl_failing) {
        sl_log_info(COMPONENT, "tenant store round trips work again");
        l->is_ctl_failing = false;
    }
    if (l->is_stopping) {
        /* Taking the lease now would only mean releasing it again. */
        if (c->is_leader && !c->was_leader) {
            l->is_leader = true;
        }
        sched_loop_maybe_finish_stop(l);
        return;
    }
    if (c->is_leader && !l->is_leader) {
        become_leader(l);
    }
    else if (!c->is_leader && l->is_leader) {
        char why[SL_STORE_OWNER_MAX + 64];

        snprintf(why, sizeof(why), "the lease is held by %s",
                 c->has_lease ? c->lease.owner : "nobody");
        step_down(l, why);
    }
    else if (c->is_leader && c->do_renew) {
        l->lease_until_s = c->now_s + l->settings.lease_ttl_s;
        l->last_renew_s = c->now_s;
    }
    if (l->is_leader) {
        sched_loop_publish_lease(l, l->settings.owner, l->lease_until_s);
        for (size_t i = 0; i < l->n_slots; i++) {
            struct sched_slot *s = &l->slots[i];
            int64_t requested;

            if (c->next_write[i] >= 0) {
                s->written_next_s = c->next_write[i];
            }
            if (!c->has_state[i]) {
                continue;
            }
            requested = c->states[i].run_requested_s;
            if (requested > 0 && requested != s->last_request_s &&
                requested != s->pending_request_s) {
                const struct sl_log_ctx ctx = {.job_id = sched_job_name(s->job)};

                sl_log_info_ctx(COMPONENT, &ctx, "job %s: run requested at %s%s",
                                sched_job_name(s->job), iso(requested, buf),
                                s->is_running ? "; starts when the current run ends" : "");
                s->pending_request_s = requested;
                if (!s->is_running) {
                    s->pending_request_s = 0;
                    s->last_request_s = requested;
                    sched_loop_start_run(s, requested, "manual");
                }
            }
        }
    }
    else {
        sched_loop_publish_lease(l, c->has_lease ? c->lease.owner : "",
                      c->has_lease ? c->lease.expires_s : 0);
    }
    sched_loop_publish(l);
}

void sched_lease_on_tick(uv_timer_t *t)
{
    struct sched_loop *l = t->data;
    struct sched_ctl *c = &l->ctl;
    int64_t now_s = wall_s();
    int rc;

    if (l->is_leader && now_s >= l->lease_until_s) {
        /* Renewals kept failing until the lease ran out: another scheduler may take it
         * now, so stop starting runs (run starts are fenced by the lease anyway). */
        step_down(l, "the lease expired before it could be renewed");
        sched_loop_publish(l);
    }
    if (c->is_in_flight || l->is_stopping) {
        return;
    }
    c->now_s = now_s;
    c->was_leader = l->is_leader;
    c->do_renew = !l->is_leader || now_s - l->last_renew_s >= l->settings.lease_ttl_s / 3;
    c->do_release = false;
    for (size_t i = 0; i < l->n_slots; i++) {
        const struct sched_slot *s = &l->slots[i];

        c->next_write[i] = l->is_leader && s->next_slot_s != s->written_next_s
                               ? s->next_slot_s
                               : -1;
        c->has_state[i] = false;
    }
    c->work.data = l;
    rc = uv_queue_work(l->uv, &c->work, ctl_work, ctl_after);
    if (rc == 0) {
        c->is_in_flight = true;
    }
}

int sched_lease_release(struct sched_loop *l)
{
    struct sched_ctl *c = &l->ctl;
    int rc;

    c->do_release = true;
    c->work.data = l;
    rc = uv_queue_work(l->uv, &c->work, ctl_work, ctl_after);
    if (rc == 0) {
        c->is_in_flight = true;
    }
    return rc;
}

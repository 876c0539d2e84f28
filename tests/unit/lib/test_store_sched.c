/*
 * Tests lib/store_sched.c: the scheduler lease (acquire, renew, expiry, takeover, release,
 * and one winner when many processes' connections race), run slots that can start only
 * once and only under the lease, run end and history, job state and run requests,
 * abandoned runs, pruning and store maintenance.
 */
#include <pthread.h>
#include <stdlib.h>

#include "store.h"
#include "test.h"

#define LEASE "scheduler"

struct fixture {
    char *dir;
    char *path;
    struct sl_store *st;
};

static void fixture_init(struct fixture *f)
{
    struct sl_err err;

    f->dir = test_tmpdir();
    f->path = test_path(f->dir, "sched.db");
    ASSERT_OK(sl_store_open(&f->st, f->path, 5000, &err), &err);
}

static void fixture_fini(struct fixture *f)
{
    sl_store_close(f->st);
    test_rmtree(f->dir);
    free(f->path);
    free(f->dir);
}

static bool acquire(struct sl_store *st, const char *owner, int64_t ttl_s, int64_t now_s)
{
    struct sl_err err;
    bool is_leader = true;

    ASSERT_OK(sl_store_lease_acquire(st, LEASE, owner, ttl_s, now_s, &is_leader, &err), &err);
    return is_leader;
}

static void register_job(struct sl_store *st, const char *name, bool enabled)
{
    struct sl_job j;
    struct sl_err err;

    memset(&j, 0, sizeof(j));
    snprintf(j.name, sizeof(j.name), "%s", name);
    snprintf(j.schedule, sizeof(j.schedule), "@every 1s");
    j.is_enabled = enabled;
    j.next_run_s = 1001;
    ASSERT_OK(sl_store_job_register(st, &j, 1000, &err), &err);
}

static int64_t begin(struct sl_store *st, const char *owner, const char *job, int64_t slot_s,
                     const char *kind, int64_t now_s)
{
    struct sl_err err;
    int64_t id = 0;

    ASSERT_OK(sl_store_run_begin(st, LEASE, owner, job, slot_s, kind, now_s, &id, &err), &err);
    ASSERT_TRUE(id > 0);
    return id;
}

static void test_lease_acquire_renew_expire_takeover(void)
{
    struct fixture f;
    struct sl_lease lease;
    struct sl_err err;

    fixture_init(&f);
    ASSERT_EQ_INT(sl_store_lease_get(f.st, LEASE, &lease, &err), SL_ENOTFOUND);
    ASSERT_TRUE(acquire(f.st, "a", 10, 100));
    ASSERT_OK(sl_store_lease_get(f.st, LEASE, &lease, &err), &err);
    ASSERT_EQ_STR(lease.owner, "a");
    ASSERT_EQ_INT(lease.expires_s, 110);
    ASSERT_EQ_INT(lease.renewed_s, 100);
    /* Held: another owner cannot take it, the holder can take it again (renewal). */
    ASSERT_TRUE(!acquire(f.st, "b", 10, 105));
    ASSERT_TRUE(acquire(f.st, "a", 10, 105));
    ASSERT_OK(sl_store_lease_renew(f.st, LEASE, "a", 10, 106, &err), &err);
    ASSERT_OK(sl_store_lease_get(f.st, LEASE, &lease, &err), &err);
    ASSERT_EQ_INT(lease.expires_s, 116);
    ASSERT_TRUE(!acquire(f.st, "b", 10, 115));
    /* Expired (expires_s <= now): the next one to ask takes it over. */
    ASSERT_TRUE(acquire(f.st, "b", 10, 116));
    ASSERT_OK(sl_store_lease_get(f.st, LEASE, &lease, &err), &err);
    ASSERT_EQ_STR(lease.owner, "b");
    ASSERT_EQ_INT(lease.expires_s, 126);
    /* The old holder learns it lost the lease. */
    ASSERT_EQ_INT(sl_store_lease_renew(f.st, LEASE, "a", 10, 117, &err), SL_ESTATE);
    ASSERT_CONTAINS(err.msg, "no longer held by a");
    ASSERT_TRUE(!acquire(f.st, "a", 10, 117));
    fixture_fini(&f);
}

static void test_lease_release(void)
{
    struct fixture f;
    struct sl_lease lease;
    struct sl_err err;

    fixture_init(&f);
    ASSERT_TRUE(acquire(f.st, "a", 60, 100));
    /* Only the holder can release it. */
    ASSERT_OK(sl_store_lease_release(f.st, LEASE, "b", &err), &err);
    ASSERT_OK(sl_store_lease_get(f.st, LEASE, &lease, &err), &err);
    ASSERT_EQ_STR(lease.owner, "a");
    ASSERT_OK(sl_store_lease_release(f.st, LEASE, "a", &err), &err);
    ASSERT_EQ_INT(sl_store_lease_get(f.st, LEASE, &lease, &err), SL_ENOTFOUND);
    /* Free at once, long before the old expiry. */
    ASSERT_TRUE(acquire(f.st, "b", 60, 101));
    ASSERT_EQ_INT(sl_store_lease_renew(f.st, LEASE, "a", 60, 102, &err), SL_ESTATE);
    fixture_fini(&f);
}

/* Many connections (as many processes would have) race for a free lease. */
struct racer {
    const char *path;
    char owner[16];
    const char *job;   /* NULL: race for the lease; else race to begin (job, slot 600) */
    int64_t now_s;
    bool is_winner;
    int rc;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    struct sl_store *st = NULL;
    struct sl_err err;
    int64_t id = 0;

    r->rc = sl_store_open(&st, r->path, 10000, &err);
    if (r->rc != 0) {
        return NULL;
    }
    if (r->job == NULL) {
        r->rc = sl_store_lease_acquire(st, LEASE, r->owner, 30, r->now_s, &r->is_winner, &err);
    }
    else {
        r->rc = sl_store_run_begin(st, NULL, r->owner, r->job, 600, "schedule", r->now_s, &id,
                                   &err);
        r->is_winner = r->rc == 0;
        if (r->rc == SL_EEXIST) {
            r->rc = 0;
        }
    }
    sl_store_close(st);
    return NULL;
}

static void run_race(const char *path, const char *job, int64_t now_s)
{
    struct racer racers[8];
    pthread_t threads[8];
    int winners = 0;

    for (int i = 0; i < 8; i++) {
        memset(&racers[i], 0, sizeof(racers[i]));
        racers[i].path = path;
        racers[i].job = job;
        racers[i].now_s = now_s;
        snprintf(racers[i].owner, sizeof(racers[i].owner), "racer%d", i);
        ASSERT_EQ_INT(pthread_create(&threads[i], NULL, race, &racers[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        ASSERT_EQ_INT(pthread_join(threads[i], NULL), 0);
        ASSERT_EQ_INT(racers[i].rc, 0);
        winners += racers[i].is_winner ? 1 : 0;
    }
    ASSERT_EQ_INT(winners, 1);
}

static void test_lease_race_has_one_winner(void)
{
    struct fixture f;

    fixture_init(&f);
    run_race(f.path, NULL, 100);
    /* Again once it expired: one new holder. */
    run_race(f.path, NULL, 130);
    fixture_fini(&f);
}

static void test_run_slot_runs_once(void)
{
    struct fixture f;
    struct sl_err err;
    int64_t id = 0;

    fixture_init(&f);
    ASSERT_TRUE(acquire(f.st, "a", 600, 100));
    begin(f.st, "a", "cleanup", 120, "schedule", 120);
    ASSERT_EQ_INT(sl_store_run_begin(f.st, LEASE, "a", "cleanup", 120, "schedule", 121, &id,
                                     &err), SL_EEXIST);
    ASSERT_EQ_INT(id, 0);
    ASSERT_CONTAINS(err.msg, "already ran for slot 120");
    /* Another slot, or another job in the same slot, is fine. */
    begin(f.st, "a", "cleanup", 180, "schedule", 180);
    begin(f.st, "a", "rollup", 120, "schedule", 121);
    /* Many connections racing for one slot: one run. */
    run_race(f.path, "contested", 600);
    fixture_fini(&f);
}

static void test_run_begin_is_fenced_by_the_lease(void)
{
    struct fixture f;
    struct sl_err err;
    int64_t id = 0;

    fixture_init(&f);
    /* Nobody holds the lease. */
    ASSERT_EQ_INT(sl_store_run_begin(f.st, LEASE, "a", "cleanup", 60, "schedule", 60, &id,
                                     &err), SL_EDENIED);
    ASSERT_CONTAINS(err.msg, "a does not hold lease 'scheduler'");
    ASSERT_TRUE(acquire(f.st, "a", 10, 100));
    ASSERT_EQ_INT(sl_store_run_begin(f.st, LEASE, "b", "cleanup", 60, "schedule", 101, &id,
                                     &err), SL_EDENIED);
    /* The holder's lease lapsed: it may not start runs either. */
    ASSERT_EQ_INT(sl_store_run_begin(f.st, LEASE, "a", "cleanup", 60, "schedule", 110, &id,
                                     &err), SL_EDENIED);
    begin(f.st, "a", "cleanup", 60, "schedule", 109);
    /* A refused start changed nothing: the slot is still free for the next holder. */
    ASSERT_TRUE(acquire(f.st, "b", 10, 110));
    begin(f.st, "b", "cleanup", 120, "schedule", 110);
    /* Without a lease name there is no fence (single-process tools, tests). */
    ASSERT_OK(sl_store_run_begin(f.st, NULL, "cli", "cleanup", 180, "manual", 110, &id, &err),
              &err);
    fixture_fini(&f);
}

static void test_run_end_and_history(void)
{
    struct fixture f;
    struct sl_run *runs = NULL;
    struct sl_run r;
    struct sl_job j;
    struct sl_err err;
    size_t n = 0;
    int64_t id1, id2, id3;

    fixture_init(&f);
    register_job(f.st, "cleanup", true);
    ASSERT_TRUE(acquire(f.st, "a", 600, 100));
    id1 = begin(f.st, "a", "cleanup", 120, "schedule", 120);
    ASSERT_OK(sl_store_run_get(f.st, id1, &r, &err), &err);
    ASSERT_EQ_INT(r.status, SL_RUN_RUNNING);
    ASSERT_EQ_STR(r.owner, "a");
    ASSERT_EQ_STR(r.kind, "schedule");
    ASSERT_EQ_INT(r.started_s, 120);
    ASSERT_EQ_INT(r.ended_s, 0);
    ASSERT_OK(sl_store_run_end(f.st, id1, SL_RUN_DONE, 42, NULL, "offset=42", 125, 5123, &err),
              &err);
    ASSERT_OK(sl_store_run_get(f.st, id1, &r, &err), &err);
    ASSERT_EQ_INT(r.status, SL_RUN_DONE);
    ASSERT_EQ_INT(r.rows, 42);
    ASSERT_EQ_INT(r.ended_s, 125);
    ASSERT_EQ_INT(r.duration_ms, 5123);
    ASSERT_EQ_STR(r.error, "");
    ASSERT_OK(sl_store_job_get(f.st, "cleanup", &j, &err), &err);
    ASSERT_EQ_STR(j.checkpoint, "offset=42");
    ASSERT_EQ_INT(j.last_status, SL_RUN_DONE);
    ASSERT_EQ_INT(j.last_run_id, id1);
    ASSERT_EQ_INT(j.last_slot_s, 120);
    ASSERT_EQ_INT(j.last_started_s, 120);
    ASSERT_EQ_INT(j.last_ended_s, 125);
    /* Ending twice is refused and changes nothing. */
    ASSERT_EQ_INT(sl_store_run_end(f.st, id1, SL_RUN_FAILED, 0, "late", NULL, 130, 1, &err),
                  SL_ESTATE);
    ASSERT_CONTAINS(err.msg, "already done");
    ASSERT_EQ_INT(sl_store_run_end(f.st, id1, SL_RUN_RUNNING, 0, NULL, NULL, 130, 1, &err),
                  SL_EINVAL);
    ASSERT_EQ_INT(sl_store_run_end(f.st, 9999, SL_RUN_DONE, 0, NULL, NULL, 130, 1, &err),
                  SL_ENOTFOUND);

    id2 = begin(f.st, "a", "cleanup", 180, "schedule", 180);
    /* NULL keeps the checkpoint. */
    ASSERT_OK(sl_store_run_end(f.st, id2, SL_RUN_TIMEOUT, 7, "stopped after 60s", NULL, 240,
                               60000, &err), &err);
    id3 = begin(f.st, "a", "other", 180, "schedule", 181);
    ASSERT_OK(sl_store_job_get(f.st, "cleanup", &j, &err), &err);
    ASSERT_EQ_STR(j.checkpoint, "offset=42");
    ASSERT_EQ_INT(j.last_status, SL_RUN_TIMEOUT);

    ASSERT_OK(sl_store_run_list(f.st, "cleanup", 10, &runs, &n, &err), &err);
    ASSERT_EQ_INT(n, 2);
    ASSERT_EQ_INT(runs[0].id, id2); /* newest first */
    ASSERT_EQ_INT(runs[0].status, SL_RUN_TIMEOUT);
    ASSERT_EQ_STR(runs[0].error, "stopped after 60s");
    ASSERT_EQ_INT(runs[1].id, id1);
    free(runs);
    ASSERT_OK(sl_store_run_list(f.st, NULL, 2, &runs, &n, &err), &err);
    ASSERT_EQ_INT(n, 2);
    ASSERT_EQ_INT(runs[0].id, id3);
    free(runs);
    ASSERT_OK(sl_store_run_list(f.st, "nothing", 10, &runs, &n, &err), &err);
    ASSERT_EQ_INT(n, 0);
    ASSERT_OK(sl_store_run_find(f.st, "cleanup", 180, &r, &err), &err);
    ASSERT_EQ_INT(r.id, id2);
    ASSERT_EQ_INT(sl_store_run_find(f.st, "cleanup", 181, &r, &err), SL_ENOTFOUND);
    ASSERT_EQ_STR(sl_store_run_status_name(SL_RUN_CANCELLED), "cancelled");
    ASSERT_EQ_INT(sl_store_run_status_parse("retry"), SL_RUN_RETRY);
    ASSERT_EQ_INT(sl_store_run_status_parse("bogus"), -1);
    fixture_fini(&f);
}

static void test_job_state_and_requests(void)
{
    struct fixture f;
    struct sl_job *jobs = NULL;
    struct sl_job j;
    struct sl_err err;
    size_t n = 0;
    int64_t requested = 0, id = 0;

    fixture_init(&f);
    ASSERT_EQ_INT(sl_store_job_get(f.st, "cleanup", &j, &err), SL_ENOTFOUND);
    ASSERT_EQ_INT(sl_store_job_request_run(f.st, "cleanup", 100, &requested, &err),
                  SL_ENOTFOUND);
    ASSERT_CONTAINS(err.msg, "no job named 'cleanup'");
    register_job(f.st, "cleanup", true);
    register_job(f.st, "archive", false);
    ASSERT_OK(sl_store_job_list(f.st, &jobs, &n, &err), &err);
    ASSERT_EQ_INT(n, 2);
    ASSERT_EQ_STR(jobs[0].name, "archive");
    ASSERT_TRUE(!jobs[0].is_enabled);
    ASSERT_EQ_STR(jobs[1].name, "cleanup");
    ASSERT_EQ_STR(jobs[1].schedule, "@every 1s");
    ASSERT_EQ_STR(jobs[1].zone, "UTC");
    ASSERT_EQ_INT(jobs[1].next_run_s, 1001);
    ASSERT_EQ_INT(jobs[1].last_run_id, 0);
    free(jobs);
    ASSERT_EQ_INT(sl_store_job_request_run(f.st, "archive", 100, &requested, &err), SL_ESTATE);
    ASSERT_CONTAINS(err.msg, "disabled");
    ASSERT_OK(sl_store_job_set_next(f.st, "cleanup", 2000, 1500, &err), &err);
    ASSERT_EQ_INT(sl_store_job_set_next(f.st, "ghost", 2000, 1500, &err), SL_ENOTFOUND);

    /* Requests: a pending one is kept, so two callers wait for the same run. */
    ASSERT_OK(sl_store_job_request_run(f.st, "cleanup", 1600, &requested, &err), &err);
    ASSERT_EQ_INT(requested, 1600);
    ASSERT_OK(sl_store_job_request_run(f.st, "cleanup", 1602, &requested, &err), &err);
    ASSERT_EQ_INT(requested, 1600);
    ASSERT_OK(sl_store_job_get(f.st, "cleanup", &j, &err), &err);
    ASSERT_EQ_INT(j.run_requested_s, 1600);
    ASSERT_EQ_INT(j.next_run_s, 2000);
    /* Registering again (a new leader) keeps the state. */
    register_job(f.st, "cleanup", true);
    ASSERT_OK(sl_store_job_get(f.st, "cleanup", &j, &err), &err);
    ASSERT_EQ_INT(j.run_requested_s, 1600);

    ASSERT_TRUE(acquire(f.st, "a", 600, 1500));
    begin(f.st, "a", "cleanup", 1590, "schedule", 1590);
    /* The manual run for the request clears it and leaves the schedule's last slot. */
    begin(f.st, "a", "cleanup", 1600, "manual", 1601);
    ASSERT_OK(sl_store_job_get(f.st, "cleanup", &j, &err), &err);
    ASSERT_EQ_INT(j.run_requested_s, 0);
    ASSERT_EQ_INT(j.last_slot_s, 1590);
    /* A request for a second that already ran is answered by that run. */
    ASSERT_OK(sl_store_job_request_run(f.st, "cleanup", 1590, &requested, &err), &err);
    ASSERT_EQ_INT(sl_store_run_begin(f.st, LEASE, "a", "cleanup", 1590, "manual", 1603, &id,
                                     &err), SL_EEXIST);
    ASSERT_OK(sl_store_job_get(f.st, "cleanup", &j, &err), &err);
    ASSERT_EQ_INT(j.run_requested_s, 0);
    /* Scheduled slots only move the last slot forward. */
    begin(f.st, "a", "cleanup", 1500, "missed", 1604);
    ASSERT_OK(sl_store_job_get(f.st, "cleanup", &j, &err), &err);
    ASSERT_EQ_INT(j.last_slot_s, 1590);
    fixture_fini(&f);
}

static void test_abandoned_runs_and_prune(void)
{
    struct fixture f;
    struct sl_run *runs = NULL;
    struct sl_run r;
    struct sl_err err;
    size_t n = 0;
    int64_t n_done = -1;
    int64_t old1, old2, mine, theirs;
    bool is_truncated = false;

    fixture_init(&f);
    register_job(f.st, "cleanup", true);
    ASSERT_TRUE(acquire(f.st, "a", 10, 100));
    old1 = begin(f.st, "a", "cleanup", 100, "schedule", 100);
    ASSERT_OK(sl_store_run_end(f.st, old1, SL_RUN_DONE, 1, NULL, NULL, 101, 1000, &err), &err);
    old2 = begin(f.st, "a", "rollup", 100, "schedule", 100);
    ASSERT_OK(sl_store_run_end(f.st, old2, SL_RUN_FAILED, 0, "x", NULL, 101, 1000, &err),
              &err);
    theirs = begin(f.st, "a", "cleanup", 105, "schedule", 105);
    /* a dies; b takes over and marks a's running run as failed (abandoned). */
    ASSERT_TRUE(acquire(f.st, "b", 10, 200));
    mine = begin(f.st, "b", "other", 200, "schedule", 200);
    ASSERT_OK(sl_store_run_abandon(f.st, "b", 201, &n_done, &err), &err);
    ASSERT_EQ_INT(n_done, 1);
    ASSERT_OK(sl_store_run_get(f.st, theirs, &r, &err), &err);
    ASSERT_EQ_INT(r.status, SL_RUN_FAILED);
    ASSERT_EQ_INT(r.ended_s, 201);
    ASSERT_CONTAINS(r.error, "abandoned: scheduler a stopped or lost its lease");
    ASSERT_OK(sl_store_run_get(f.st, mine, &r, &err), &err);
    ASSERT_EQ_INT(r.status, SL_RUN_RUNNING);
    /* If a was only slow, its late end is refused: the run stays as b recorded it. */
    ASSERT_EQ_INT(sl_store_run_end(f.st, theirs, SL_RUN_DONE, 5, NULL, "late", 202, 1, &err),
                  SL_ESTATE);

    /* Prune: finished runs before the cut go, except each job's last run. "cleanup"'s last
     * run is `theirs` (ended 201), "rollup" has no job row so old2 goes, old1 goes. */
    ASSERT_OK(sl_store_run_prune(f.st, 150, &n_done, &err), &err);
    ASSERT_EQ_INT(n_done, 2);
    ASSERT_OK(sl_store_run_list(f.st, NULL, 100, &runs, &n, &err), &err);
    ASSERT_EQ_INT(n, 2);
    ASSERT_EQ_INT(runs[0].id, mine);
    ASSERT_EQ_INT(runs[1].id, theirs);
    free(runs);
    ASSERT_OK(sl_store_run_prune(f.st, 1000, &n_done, &err), &err);
    ASSERT_EQ_INT(n_done, 0); /* `theirs` is cleanup's last run; `mine` is running */
    ASSERT_OK(sl_store_optimize(f.st, &is_truncated, &err), &err);
    ASSERT_TRUE(is_truncated);
    fixture_fini(&f);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_lease_acquire_renew_expire_takeover),
        TEST_CASE(test_lease_release),
        TEST_CASE(test_lease_race_has_one_winner),
        TEST_CASE(test_run_slot_runs_once),
        TEST_CASE(test_run_begin_is_fenced_by_the_lease),
        TEST_CASE(test_run_end_and_history),
        TEST_CASE(test_job_state_and_requests),
        TEST_CASE(test_abandoned_runs_and_prune),
        {NULL, NULL},
    };
    return test_main(argc, argv, cases);
}

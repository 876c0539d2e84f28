/*
 * Tests lib/store_backfill.c: creating jobs (chunk count, alignment, tenant resolution),
 * overlap refusal (same kind, overlapping range and tenant, job not finished; atomic when
 * two connections race), the runner's claim (and takeover of a dead runner's jobs), the
 * checkpoint that moves the cursor once per chunk, and the state machine of pause, resume,
 * cancel and failure.
 */
#include <pthread.h>
#include <stdlib.h>

#include "alloc.h"
#include "store_backfill.h"
#include "test.h"

#define DAY1 INT64_C(1795478400)
#define NOW 2000000000

struct fixture {
    char *dir;
    char *path;
    struct sl_store *st;
    char tenant[SL_STORE_ID_MAX];
};

static void fixture_init(struct fixture *f)
{
    struct sl_tenant t;
    struct sl_err err;

    f->dir = test_tmpdir();
    f->path = test_path(f->dir, "backfill.db");
    ASSERT_OK(sl_store_open(&f->st, f->path, 5000, &err), &err);
    ASSERT_OK(sl_store_tenant_create(f->st, "acme", "free", NOW, &t, &err), &err);
    snprintf(f->tenant, sizeof(f->tenant), "%s", t.id);
}

static void fixture_fini(struct fixture *f)
{
    sl_store_close(f->st);
    test_rmtree(f->dir);
    free(f->path);
    free(f->dir);
}

static int64_t create(struct fixture *f, const char *kind, const char *tenant, int64_t from_s,
                      int64_t to_s, int64_t chunk_s)
{
    struct sl_backfill_job j;
    struct sl_err err;

    ASSERT_OK(sl_store_backfill_create(f->st, kind, tenant, from_s, to_s, chunk_s, NOW, &j,
                                       &err), &err);
    return j.id;
}

static struct sl_backfill_job get(struct fixture *f, int64_t id)
{
    struct sl_backfill_job j;
    struct sl_err err;

    ASSERT_OK(sl_store_backfill_get(f->st, id, &j, &err), &err);
    return j;
}

static void checkpoint(struct fixture *f, int64_t id, int64_t from_s, int64_t to_s, int rc_want)
{
    struct sl_backfill_chunk c;
    struct sl_err err;

    memset(&c, 0, sizeof(c));
    c.from_s = from_s;
    c.to_s = to_s;
    snprintf(c.source, sizeof(c.source), "events");
    c.rows_read = 100;
    c.rows_written = 10;
    c.duration_ms = 50;
    ASSERT_EQ_INT(sl_store_backfill_checkpoint(f->st, id, &c, NOW, &err), rc_want);
}

static size_t claim(struct fixture *f, const char *owner, size_t max, int64_t *ids)
{
    struct sl_backfill_job *jobs = NULL;
    struct sl_err err;
    size_t n = 0;

    ASSERT_OK(sl_store_backfill_claim(f->st, owner, max, NOW, &jobs, &n, &err), &err);
    for (size_t i = 0; i < n; i++) {
        ASSERT_EQ_INT(jobs[i].state, SL_BACKFILL_RUNNING);
        ASSERT_EQ_STR(jobs[i].owner, owner);
        if (ids != NULL) {
            ids[i] = jobs[i].id;
        }
    }
    sl_free(jobs);
    return n;
}

static void test_store_backfill_create_and_read(void)
{
    struct fixture f;
    struct sl_backfill_job j, *list = NULL;
    struct sl_err err;
    size_t n = 0;
    int64_t id;

    fixture_init(&f);
    id = create(&f, "hourly", "acme", DAY1, DAY1 + 2 * 86400, 3600);
    j = get(&f, id);
    ASSERT_EQ_STR(j.kind, "hourly");
    ASSERT_EQ_STR(j.tenant_id, f.tenant); /* the name resolved to the id */
    ASSERT_EQ_INT(j.chunks_total, 48);
    ASSERT_EQ_INT(j.cursor_s, DAY1);
    ASSERT_EQ_INT(j.state, SL_BACKFILL_QUEUED);
    ASSERT_EQ_INT(j.created_s, NOW);
    id = create(&f, "daily", NULL, DAY1, DAY1 + 86400, 86400);
    ASSERT_EQ_STR(get(&f, id).tenant_id, "");
    ASSERT_OK(sl_store_backfill_list(f.st, &list, &n, &err), &err);
    ASSERT_EQ_INT(n, 2);
    ASSERT_EQ_INT(list[0].id, id); /* newest first */
    sl_free(list);
    ASSERT_EQ_INT(sl_store_backfill_create(f.st, "hourly", "nobody", DAY1, DAY1 + 3600, 3600,
                                           NOW, &j, &err), SL_ENOTFOUND);
    ASSERT_EQ_INT(sl_store_backfill_create(f.st, "hourly", NULL, DAY1 + 60, DAY1 + 3600, 3600,
                                           NOW, &j, &err), SL_EINVAL);
    ASSERT_EQ_INT(sl_store_backfill_create(f.st, "hourly", NULL, DAY1, DAY1, 3600, NOW, &j,
                                           &err), SL_EINVAL);
    ASSERT_EQ_INT(sl_store_backfill_get(f.st, 999, &j, &err), SL_ENOTFOUND);
    fixture_fini(&f);
}

static void test_store_backfill_overlap_refused(void)
{
    struct fixture f;
    struct sl_backfill_job j;
    struct sl_tenant other;
    struct sl_err err;
    int64_t id;

    fixture_init(&f);
    ASSERT_OK(sl_store_tenant_create(f.st, "other", "free", NOW, &other, &err), &err);
    id = create(&f, "hourly", "acme", DAY1, DAY1 + 86400, 3600);
    /* Same kind and tenant, overlapping: refused, naming the job. */
    ASSERT_EQ_INT(sl_store_backfill_create(f.st, "hourly", "acme", DAY1 + 3600, DAY1 + 7200,
                                           3600, NOW, &j, &err), SL_EEXIST);
    ASSERT_CONTAINS(err.msg, "backfill job 1");
    /* Every tenant overlaps acme. */
    ASSERT_EQ_INT(sl_store_backfill_create(f.st, "hourly", NULL, DAY1, DAY1 + 86400, 86400,
                                           NOW, &j, &err), SL_EEXIST);
    /* Adjacent range, another kind, another tenant: fine. */
    create(&f, "hourly", "acme", DAY1 + 86400, DAY1 + 2 * 86400, 3600);
    create(&f, "daily", "acme", DAY1, DAY1 + 86400, 86400);
    create(&f, "hourly", "other", DAY1, DAY1 + 86400, 3600);
    /* A failed job still owns its range; a cancelled one does not. */
    claim(&f, "r1", 10, NULL);
    ASSERT_OK(sl_store_backfill_fail(f.st, id, DAY1, "boom", NOW, &err), &err);
    ASSERT_EQ_INT(sl_store_backfill_create(f.st, "hourly", "acme", DAY1, DAY1 + 3600, 3600, NOW,
                                           &j, &err), SL_EEXIST);
    ASSERT_OK(sl_store_backfill_cancel(f.st, id, NOW, &j, &err), &err);
    ASSERT_EQ_INT(j.state, SL_BACKFILL_CANCELLED);
    create(&f, "hourly", "acme", DAY1, DAY1 + 3600, 3600);
    fixture_fini(&f);
}

struct racer {
    const char *path;
    pthread_barrier_t *start;
    int rc;
};

static void *race_create(void *arg)
{
    struct racer *r = arg;
    struct sl_store *st = NULL;
    struct sl_backfill_job j;
    struct sl_err err;

    ASSERT_OK(sl_store_open(&st, r->path, 10000, &err), &err);
    pthread_barrier_wait(r->start);
    r->rc = sl_store_backfill_create(st, "sessions", "acme", DAY1, DAY1 + 86400, 86400, NOW, &j,
                                     &err);
    sl_store_close(st);
    return NULL;
}

/* Two connections start the same backfill at once: exactly one gets it. */
static void test_store_backfill_overlap_race(void)
{
    enum { N = 4 };
    struct fixture f;
    struct racer racers[N];
    pthread_t threads[N];
    pthread_barrier_t start;
    int n_ok = 0;

    fixture_init(&f);
    pthread_barrier_init(&start, NULL, N);
    for (int i = 0; i < N; i++) {
        racers[i] = (struct racer){.path = f.path, .start = &start};
        ASSERT_EQ_INT(pthread_create(&threads[i], NULL, race_create, &racers[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(threads[i], NULL);
        if (racers[i].rc == 0) {
            n_ok++;
        }
        else {
            ASSERT_EQ_INT(racers[i].rc, SL_EEXIST);
        }
    }
    pthread_barrier_destroy(&start);
    ASSERT_EQ_INT(n_ok, 1);
    fixture_fini(&f);
}

static void test_store_backfill_claim_and_checkpoint(void)
{
    struct fixture f;
    struct sl_backfill_chunk *chunks = NULL;
    struct sl_backfill_job j;
    struct sl_err err;
    int64_t ids[4] = {0};
    size_t n = 0;
    int64_t a, b, c;

    fixture_init(&f);
    a = create(&f, "hourly", "acme", DAY1, DAY1 + 3 * 3600, 3600);
    b = create(&f, "daily", "acme", DAY1, DAY1 + 86400, 86400);
    c = create(&f, "sessions", "acme", DAY1, DAY1 + 86400, 86400);
    /* Concurrency 2: the two oldest. */
    ASSERT_EQ_INT(claim(&f, "r1", 2, ids), 2);
    ASSERT_EQ_INT(ids[0], a);
    ASSERT_EQ_INT(ids[1], b);
    ASSERT_EQ_INT(get(&f, c).state, SL_BACKFILL_QUEUED);
    checkpoint(&f, a, DAY1, DAY1 + 3600, 0);
    /* The same chunk again (a runner that died after its checkpoint ran it twice): refused,
     * totals unchanged. A chunk from the wrong place too. */
    checkpoint(&f, a, DAY1, DAY1 + 3600, SL_ESTATE);
    checkpoint(&f, a, DAY1 + 7200, DAY1 + 3 * 3600, SL_ESTATE);
    j = get(&f, a);
    ASSERT_EQ_INT(j.cursor_s, DAY1 + 3600);
    ASSERT_EQ_INT(j.chunks_done, 1);
    ASSERT_EQ_INT(j.rows_read, 100);
    ASSERT_EQ_INT(j.rows_written, 10);
    ASSERT_EQ_INT(j.busy_ms, 50);
    /* The runner dies; another one takes its running jobs over, before queued ones. */
    ASSERT_EQ_INT(claim(&f, "r2", 2, ids), 2);
    ASSERT_EQ_INT(ids[0], a);
    ASSERT_EQ_INT(ids[1], b);
    ASSERT_EQ_STR(get(&f, a).owner, "r2");
    ASSERT_EQ_INT(get(&f, a).started_s, NOW);
    checkpoint(&f, a, DAY1 + 3600, DAY1 + 7200, 0);
    checkpoint(&f, a, DAY1 + 7200, DAY1 + 3 * 3600, 0);
    j = get(&f, a);
    ASSERT_EQ_INT(j.state, SL_BACKFILL_DONE);
    ASSERT_EQ_INT(j.chunks_done, 3);
    ASSERT_EQ_INT(j.rows_read, 300);
    ASSERT_EQ_INT(j.ended_s, NOW);
    ASSERT_OK(sl_store_backfill_chunks(f.st, a, &chunks, &n, &err), &err);
    ASSERT_EQ_INT(n, 3);
    ASSERT_EQ_INT(chunks[0].from_s, DAY1);
    ASSERT_EQ_INT(chunks[2].to_s, DAY1 + 3 * 3600);
    ASSERT_EQ_STR(chunks[1].source, "events");
    sl_free(chunks);
    /* Done jobs are not claimed again. */
    ASSERT_EQ_INT(claim(&f, "r2", 5, ids), 2);
    ASSERT_EQ_INT(ids[0], b);
    ASSERT_EQ_INT(ids[1], c);
    fixture_fini(&f);
}

static void test_store_backfill_state_machine(void)
{
    struct fixture f;
    struct sl_backfill_job j;
    enum sl_backfill_state state;
    struct sl_err err;
    int64_t id, q;

    fixture_init(&f);
    id = create(&f, "hourly", "acme", DAY1, DAY1 + 3 * 3600, 3600);
    /* Queued: pause takes effect at once; resume queues it again. */
    ASSERT_OK(sl_store_backfill_pause(f.st, id, NOW, &j, &err), &err);
    ASSERT_EQ_INT(j.state, SL_BACKFILL_PAUSED);
    ASSERT_EQ_INT(claim(&f, "r1", 4, NULL), 0);
    ASSERT_EQ_INT(sl_store_backfill_pause(f.st, id, NOW, &j, &err), SL_ESTATE);
    ASSERT_CONTAINS(err.msg, "paused");
    ASSERT_OK(sl_store_backfill_resume(f.st, id, NOW, &j, &err), &err);
    ASSERT_EQ_INT(j.state, SL_BACKFILL_QUEUED);
    /* Running: pause is a request the runner settles at a chunk boundary. */
    ASSERT_EQ_INT(claim(&f, "r1", 4, NULL), 1);
    ASSERT_OK(sl_store_backfill_pause(f.st, id, NOW, &j, &err), &err);
    ASSERT_EQ_INT(j.state, SL_BACKFILL_RUNNING);
    ASSERT_EQ_INT(j.requested, SL_BACKFILL_REQ_PAUSE);
    checkpoint(&f, id, DAY1, DAY1 + 3600, 0);
    ASSERT_OK(sl_store_backfill_settle(f.st, id, NOW, &state, &err), &err);
    ASSERT_EQ_INT(state, SL_BACKFILL_PAUSED);
    ASSERT_EQ_INT(get(&f, id).requested, SL_BACKFILL_REQ_NONE);
    ASSERT_EQ_INT(get(&f, id).cursor_s, DAY1 + 3600);
    /* Resume, fail a chunk, resume retries from the cursor. */
    ASSERT_OK(sl_store_backfill_resume(f.st, id, NOW, NULL, &err), &err);
    ASSERT_EQ_INT(claim(&f, "r1", 4, NULL), 1);
    ASSERT_OK(sl_store_backfill_settle(f.st, id, NOW, &state, &err), &err);
    ASSERT_EQ_INT(state, SL_BACKFILL_RUNNING);
    ASSERT_OK(sl_store_backfill_fail(f.st, id, DAY1 + 3600, "Code: 210, connection refused",
                                     NOW, &err), &err);
    j = get(&f, id);
    ASSERT_EQ_INT(j.state, SL_BACKFILL_FAILED);
    ASSERT_EQ_INT(j.error_chunk_s, DAY1 + 3600);
    ASSERT_CONTAINS(j.error, "Code: 210");
    ASSERT_EQ_INT(claim(&f, "r1", 4, NULL), 0);
    ASSERT_OK(sl_store_backfill_resume(f.st, id, NOW, &j, &err), &err);
    ASSERT_EQ_INT(j.state, SL_BACKFILL_QUEUED);
    ASSERT_EQ_INT(j.cursor_s, DAY1 + 3600);
    ASSERT_EQ_INT(claim(&f, "r1", 4, NULL), 1);
    checkpoint(&f, id, DAY1 + 3600, DAY1 + 7200, 0);
    ASSERT_EQ_STR(get(&f, id).error, ""); /* the chunk went through */
    /* Cancel while running: a request, then cancelled at the boundary. */
    ASSERT_OK(sl_store_backfill_cancel(f.st, id, NOW, &j, &err), &err);
    ASSERT_EQ_INT(j.requested, SL_BACKFILL_REQ_CANCEL);
    ASSERT_EQ_INT(sl_store_backfill_pause(f.st, id, NOW, &j, &err), SL_ESTATE);
    ASSERT_OK(sl_store_backfill_settle(f.st, id, NOW, &state, &err), &err);
    ASSERT_EQ_INT(state, SL_BACKFILL_CANCELLED);
    ASSERT_EQ_INT(get(&f, id).ended_s, NOW);
    ASSERT_EQ_INT(sl_store_backfill_resume(f.st, id, NOW, &j, &err), SL_ESTATE);
    ASSERT_EQ_INT(sl_store_backfill_cancel(f.st, id, NOW, &j, &err), SL_ESTATE);
    /* A queued job with a request left over is settled by the next claim. */
    q = create(&f, "hourly", "acme", DAY1, DAY1 + 3600, 3600);
    ASSERT_OK(sl_store_backfill_cancel(f.st, q, NOW, &j, &err), &err);
    ASSERT_EQ_INT(j.state, SL_BACKFILL_CANCELLED);
    ASSERT_EQ_INT(sl_store_backfill_pause(f.st, 12345, NOW, &j, &err), SL_ENOTFOUND);
    ASSERT_TRUE(sl_store_backfill_is_active(SL_BACKFILL_FAILED));
    ASSERT_TRUE(!sl_store_backfill_is_active(SL_BACKFILL_DONE));
    ASSERT_EQ_STR(sl_store_backfill_state_name(SL_BACKFILL_PAUSED), "paused");
    ASSERT_EQ_INT(sl_store_backfill_state_parse("cancelled"), SL_BACKFILL_CANCELLED);
    ASSERT_EQ_INT(sl_store_backfill_state_parse("nope"), -1);
    fixture_fini(&f);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_store_backfill_create_and_read),
        TEST_CASE(test_store_backfill_overlap_refused),
        TEST_CASE(test_store_backfill_overlap_race),
        TEST_CASE(test_store_backfill_claim_and_checkpoint),
        TEST_CASE(test_store_backfill_state_machine),
        {NULL, NULL},
    };

    return test_main(argc, argv, cases);
}

/*
 * sluice-sched-stall: how long the scheduler's libuv loop stalls while jobs run (it should
 * not). A probe timer fires every 10 ms on the loop and records how late each firing is.
 * Three phases of the same length, in one run:
 *
 *   idle       the probe alone on a bare uv loop: the ceiling (OS timer noise on this box)
 *   scheduler  the real scheduler loop leading a fresh tenant store, with test_sleep on
 *              "@every 1s" sleeping 900 ms (a run in flight ~90% of the time) and
 *              store_maintenance on "@every 1s" (PRAGMA optimize + WAL checkpoint)
 *   inline     the same 900 ms of work done on the loop thread each second, as a job that
 *              bypassed the threadpool would: what a stall looks like
 *
 * and prints p50 / p99 / max lateness for each, with the scheduler's ratio to the ceiling.
 *
 *   sluice-sched-stall [SECONDS_PER_PHASE]     (default 5)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "alloc.h"
#include "builtin.h"
#include "job.h"
#include "log.h"
#include "loop.h"
#include "store.h"

#define PROBE_MS 10
#define MAX_SAMPLES 100000

struct probe {
    uv_timer_t timer;
    uint64_t last_ns;
    double *lag_ms;
    size_t n;
};

struct phase {
    uv_loop_t uv;
    struct probe probe;
    uv_timer_t end_timer;
    uv_timer_t work_timer; /* inline phase only */
    struct sched_loop *loop; /* scheduler phase only */
};

static void on_probe(uv_timer_t *t)
{
    struct probe *p = t->data;
    uint64_t now = uv_hrtime();

    if (p->last_ns != 0 && p->n < MAX_SAMPLES) {
        double late = (double)(int64_t)(now - p->last_ns - PROBE_MS * 1000000ULL) / 1e6;

        p->lag_ms[p->n++] = late > 0 ? late : 0;
    }
    p->last_ns = now;
}

static void on_inline_work(uv_timer_t *t)
{
    struct timespec step = {.tv_sec = 0, .tv_nsec = 900 * 1000000L};

    nanosleep(&step, NULL); /* the work a job would do, on the loop thread */
}

static void on_end(uv_timer_t *t)
{
    struct phase *ph = t->data;

    uv_close((uv_handle_t *)&ph->probe.timer, NULL);
    uv_close((uv_handle_t *)&ph->end_timer, NULL);
    if (ph->work_timer.data != NULL) {
        uv_close((uv_handle_t *)&ph->work_timer, NULL);
    }
    if (ph->loop != NULL) {
        sched_loop_stop(ph->loop);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static void report(const char *name, struct probe *p, double ceiling_p99, double *p99_out)
{
    double p50, p99, max;

    if (p->n == 0) {
        printf("%-10s no samples\n", name);
        return;
    }
    qsort(p->lag_ms, p->n, sizeof(double), cmp_double);
    p50 = p->lag_ms[p->n / 2];
    p99 = p->lag_ms[(p->n * 99) / 100];
    max = p->lag_ms[p->n - 1];
    printf("%-10s samples %6zu   p50 %8.3f ms   p99 %8.3f ms   max %8.3f ms", name, p->n, p50,
           p99, max);
    if (ceiling_p99 > 0) {
        printf("   p99 / idle p99 %.2f", p99 / ceiling_p99);
    }
    printf("\n");
    if (p99_out != NULL) {
        *p99_out = p99;
    }
}

static void phase_init(struct phase *ph, uint64_t seconds)
{
    memset(ph, 0, sizeof(*ph));
    uv_loop_init(&ph->uv);
    ph->probe.lag_ms = calloc(MAX_SAMPLES, sizeof(double));
    if (ph->probe.lag_ms == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    uv_timer_init(&ph->uv, &ph->probe.timer);
    ph->probe.timer.data = &ph->probe;
    uv_timer_start(&ph->probe.timer, on_probe, PROBE_MS, PROBE_MS);
    uv_timer_init(&ph->uv, &ph->end_timer);
    ph->end_timer.data = ph;
    uv_timer_start(&ph->end_timer, on_end, seconds * 1000, 0);
}

static void phase_fini(struct phase *ph)
{
    uv_loop_close(&ph->uv);
    free(ph->probe.lag_ms);
}

/* Runs the scheduler phase on a fresh store in dir. Returns 0 or 1. */
static int run_scheduler(struct phase *ph, const char *dir)
{
    static const struct sched_worker *const workers[] = {&sched_testjob_worker,
                                                         &sched_maintenance_worker};
    char db[1024];
    char *envp[] = {"SLUICE_JOB_TEST_SLEEP_SCHEDULE=@every 1s",
                    "SLUICE_JOB_TEST_SLEEP_DURATION_MS=900",
                    "SLUICE_JOB_STORE_MAINTENANCE_SCHEDULE=@every 1s", NULL};
    struct sl_store_settings store = {.path = db, .busy_timeout_ms = 5000};
    struct sched_jobs_cfg *cfg = NULL;
    struct sched_job *jobs[2] = {NULL, NULL};
    struct sched_job_env env = {.zoneinfo_dir = "/usr/share/zoneinfo",
                                .lease = SCHED_LOOP_LEASE, .owner = "bench",
                                .worker = {.store = &store}};
    struct sched_loop_settings ls = {.owner = "bench", .lease_ttl_s = 15,
                                     .shutdown_timeout_s = 30, .store = &store};
    const struct sl_cfg_section *secs;
    struct sl_metrics *m = NULL;
    struct sl_err err;
    size_t n_secs = 0;
    int status = 1;

    snprintf(db, sizeof(db), "%s/stall.db", dir);
    sl_err_clear(&err);
    if (sl_metrics_create(&m) != 0 || sched_jobs_cfg_create(workers, 2, &cfg, &err) != 0) {
        goto done;
    }
    secs = sched_jobs_cfg_sections(cfg, &n_secs);
    if (sl_cfg_load(secs, n_secs, NULL, envp, &err) != 0 ||
        sched_job_create(cfg, 0, &env, &jobs[0], &err) != 0 ||
        sched_job_create(cfg, 1, &env, &jobs[1], &err) != 0 ||
        sched_loop_create(&ph->uv, &ls, jobs, 2, m, &ph->loop, &err) != 0) {
        goto done;
    }
    sched_loop_start(ph->loop);
    uv_run(&ph->uv, UV_RUN_DEFAULT);
    status = sched_loop_is_forced(ph->loop) ? 1 : 0;

done:
    if (err.msg[0] != '\0') {
        fprintf(stderr, "sluice-sched-stall: %s\n", err.msg);
    }
    sched_loop_destroy(ph->loop);
    sched_job_destroy(jobs[1]);
    sched_job_destroy(jobs[0]);
    sched_jobs_cfg_destroy(cfg);
    sl_metrics_destroy(m);
    return status;
}

int main(int argc, char **argv)
{
    uint64_t seconds = argc > 1 ? strtoull(argv[1], NULL, 10) : 5;
    char dir[] = "/tmp/sluice-stall-XXXXXX";
    struct phase idle, sched, inl;
    double ceiling = 0;
    char path[128];
    int status;

    if (seconds == 0 || mkdtemp(dir) == NULL) {
        fprintf(stderr, "usage: sluice-sched-stall [SECONDS_PER_PHASE]\n");
        return 2;
    }
    /* Two jobs plus the loop's store round trip (see scheduler/main.c). */
    setenv("UV_THREADPOOL_SIZE", "4", 0);
    sl_alloc_init_jansson();
    sl_log_configure("error", NULL); /* the runs' own lines would drown the figures */
    printf("loop lateness of a %d ms probe timer, %llu s per phase\n", PROBE_MS,
           (unsigned long long)seconds);

    phase_init(&idle, seconds);
    uv_run(&idle.uv, UV_RUN_DEFAULT);
    report("idle", &idle.probe, 0, &ceiling);
    phase_fini(&idle);

    phase_init(&sched, seconds);
    status = run_scheduler(&sched, dir);
    report("scheduler", &sched.probe, ceiling, NULL);
    phase_fini(&sched);

    phase_init(&inl, seconds);
    uv_timer_init(&inl.uv, &inl.work_timer);
    inl.work_timer.data = &inl;
    uv_timer_start(&inl.work_timer, on_inline_work, 1000, 1000);
    uv_run(&inl.uv, UV_RUN_DEFAULT);
    report("inline", &inl.probe, ceiling, NULL);
    phase_fini(&inl);

    for (size_t i = 0; i < 3; i++) {
        static const char *const suffixes[] = {"", "-wal", "-shm"};

        snprintf(path, sizeof(path), "%s/stall.db%s", dir, suffixes[i]);
        unlink(path);
    }
    rmdir(dir);
    return status;
}

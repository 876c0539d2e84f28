/*
 * sluice-scheduler: reads its settings and every job's (a bad schedule or zone stops
 * start-up with exit status 2), creates the jobs of the worker registry, and runs the
 * scheduler loop and its /health and /metrics server until SIGTERM or SIGINT, when running
 * jobs get to reach a checkpoint and the lease is released before it exits 0.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "alloc.h"
#include "cfg.h"
#include "ch.h"
#include "http.h"
#include "job.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "registry.h"
#include "settings.h"
#include "store.h"

#define COMPONENT "scheduler"
#define N_BASE_SECTIONS 4
#define MIN_THREADPOOL 4

static const char usage[] =
    "usage: sluice-scheduler [--config FILE] [--print-config] [--help-config] [--version]\n"
    "\n"
    "Runs the scheduled jobs (one leader at a time, others wait as hot standby). Settings\n"
    "come from SLUICE_* environment variables or KEY=VALUE lines in --config FILE (the\n"
    "environment wins); --help-config lists them, SLUICE_JOB_<NAME>_* for each job.\n";

struct app {
    uv_loop_t uv;
    uv_signal_t sigterm;
    uv_signal_t sigint;
    struct sched_loop *loop;
};

static void on_signal(uv_signal_t *handle, int signum)
{
    struct app *app = handle->data;

    sl_log_info(COMPONENT, "received %s, stopping", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    uv_signal_stop(&app->sigterm);
    uv_signal_stop(&app->sigint);
    uv_close((uv_handle_t *)&app->sigterm, NULL);
    uv_close((uv_handle_t *)&app->sigint, NULL);
    sched_loop_stop(app->loop);
}

/* "host:pid:random", unique per process, readable in the lease and run history. */
static void make_owner(const char *configured, char *out, size_t cap)
{
    char host[64] = "localhost";
    unsigned char rnd[3] = {0, 0, 0};

    if (configured != NULL && configured[0] != '\0') {
        snprintf(out, cap, "%s", configured);
        return;
    }
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    uv_random(NULL, NULL, rnd, sizeof(rnd), 0, NULL);
    snprintf(out, cap, "%s:%d:%02x%02x%02x", host, (int)getpid(), rnd[0], rnd[1], rnd[2]);
}

/*
 * Each running job holds a threadpool thread for its whole run, and the loop's store round
 * trips need one more, so the pool must be larger than the number of jobs or a few long
 * runs would starve lease renewal. libuv reads UV_THREADPOOL_SIZE once, at the first
 * uv_queue_work; this runs before any thread starts.
 */
static void size_threadpool(size_t n_jobs)
{
    const char *current = getenv("UV_THREADPOOL_SIZE");
    size_t want = n_jobs + 2 > MIN_THREADPOOL ? n_jobs + 2 : MIN_THREADPOOL;
    char text[24];

    if (current != NULL && strtoul(current, NULL, 10) >= want) {
        return;
    }
    snprintf(text, sizeof(text), "%zu", want);
    setenv("UV_THREADPOOL_SIZE", text, 1);
}

int main(int argc, char **argv)
{
    struct sl_log_settings log_settings = {0};
    struct sl_store_settings store_settings = {0};
    struct sl_ch_settings ch_settings = {0};
    struct sched_settings settings = {0};
    struct sched_jobs_cfg *jobs_cfg = NULL;
    struct sl_cfg_section *secs = NULL;
    const struct sl_cfg_section *job_secs;
    struct sched_job **jobs = NULL;
    struct sl_metrics *metrics = NULL;
    struct sched_http *http = NULL;
    struct sched_loop_settings loop_settings;
    struct sched_job_env env;
    char owner[SL_STORE_OWNER_MAX];
    char names[512] = "";
    size_t n_job_secs = 0, n_secs = 0, n_jobs = 0;
    struct app app;
    struct sl_err err;
    int status = 1;

    sl_err_clear(&err);
    memset(&app, 0, sizeof(app));
    sl_alloc_init_jansson();
    if (sched_jobs_cfg_create(sched_registry, sched_registry_n, &jobs_cfg, &err) != 0) {
        fprintf(stderr, "sluice-scheduler: error: %s\n", err.msg);
        return 1;
    }
    job_secs = sched_jobs_cfg_sections(jobs_cfg, &n_job_secs);
    secs = sl_calloc(N_BASE_SECTIONS + n_job_secs, sizeof(secs[0]));
    if (secs == NULL) {
        sched_jobs_cfg_destroy(jobs_cfg);
        return 1;
    }
    secs[n_secs++] = SL_CFG_SECTION("log", sl_log_cfg_opts, sl_log_cfg_n_opts, &log_settings);
    secs[n_secs++] = SL_CFG_SECTION("store", sl_store_cfg_opts, sl_store_cfg_n_opts,
                                    &store_settings);
    secs[n_secs++] = SL_CFG_SECTION("clickhouse", sl_ch_cfg_opts, sl_ch_cfg_n_opts,
                                    &ch_settings);
    secs[n_secs++] = SL_CFG_SECTION("scheduler", sched_settings_opts, sched_settings_n_opts,
                                    &settings);
    for (size_t i = 0; i < n_job_secs; i++) {
        secs[n_secs++] = job_secs[i];
    }
    /* Job sections are freed by sched_jobs_cfg_destroy; sl_cfg_fini below takes the
     * first N_BASE_SECTIONS only. */
    status = sl_cfg_boot("sluice-scheduler", usage, argc, argv, secs, n_secs, stdout, stderr);
    if (status >= 0) {
        goto done;
    }
    status = 1;
    sl_log_configure(log_settings.level, NULL);
    signal(SIGPIPE, SIG_IGN);
    make_owner(settings.id, owner, sizeof(owner));

    if (sl_metrics_create(&metrics) != 0) {
        sl_log_error(COMPONENT, "out of memory creating the metrics registry");
        goto done;
    }
    env.zoneinfo_dir = settings.zoneinfo_dir;
    env.lease = SCHED_LOOP_LEASE;
    env.owner = owner;
    env.worker.store = &store_settings;
    env.worker.ch = &ch_settings;
    env.worker.metrics = metrics;
    jobs = sl_calloc(sched_jobs_cfg_n_workers(jobs_cfg) + 1, sizeof(jobs[0]));
    if (jobs == NULL) {
        goto done;
    }
    for (size_t i = 0; i < sched_jobs_cfg_n_workers(jobs_cfg); i++) {
        const struct sched_worker *w = sched_jobs_cfg_worker(jobs_cfg, i);
        int rc;

        if (w->is_test_only && !settings.has_test_jobs) {
            continue;
        }
        rc = sched_job_create(jobs_cfg, i, &env, &jobs[n_jobs], &err);
        if (rc == SL_EINVAL) {
            fprintf(stderr, "sluice-scheduler: error: bad setting: %s\n", err.msg);
            status = SL_EXIT_USAGE;
            goto done;
        }
        if (rc != 0) {
            sl_log_error(COMPONENT, "cannot create job %s: %s", w->name, err.msg);
            goto done;
        }
        snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s%s",
                 n_jobs > 0 ? ", " : "", w->name,
                 sched_jobs_cfg_is_enabled(jobs_cfg, i) ? "" : " (disabled)");
        n_jobs++;
    }
    size_threadpool(n_jobs);

    uv_loop_init(&app.uv);
    loop_settings.owner = owner;
    loop_settings.lease_ttl_s = settings.lease_ttl_s;
    loop_settings.shutdown_timeout_s = settings.shutdown_timeout_s;
    loop_settings.store = &store_settings;
    if (sched_loop_create(&app.uv, &loop_settings, jobs, n_jobs, metrics, &app.loop, &err) != 0 ||
        sched_http_start(settings.http_addr, app.loop, metrics, &http, &err) != 0) {
        sl_log_error(COMPONENT, "cannot start: %s", err.msg);
        if (app.loop != NULL) {
            sched_loop_stop(app.loop);
            uv_run(&app.uv, UV_RUN_DEFAULT);
        }
        uv_loop_close(&app.uv);
        goto done;
    }
    uv_signal_init(&app.uv, &app.sigterm);
    uv_signal_init(&app.uv, &app.sigint);
    app.sigterm.data = &app;
    app.sigint.data = &app;
    uv_signal_start(&app.sigterm, on_signal, SIGTERM);
    uv_signal_start(&app.sigint, on_signal, SIGINT);
    sched_loop_start(app.loop);

    sl_log_info(COMPONENT, "sluice-scheduler %s started (http %s; id %s; lease ttl %llds; "
                "jobs: %s)", SLUICE_VERSION, settings.http_addr, owner,
                (long long)settings.lease_ttl_s, n_jobs > 0 ? names : "none");
    uv_run(&app.uv, UV_RUN_DEFAULT);
    sched_http_stop(http);
    http = NULL;
    if (sched_loop_is_forced(app.loop)) {
        /* Jobs are still running on threadpool threads and use what we would free. */
        sl_log_error(COMPONENT, "sluice-scheduler stopped without waiting for every job");
        _exit(1);
    }
    status = uv_loop_close(&app.uv) == 0 ? 0 : 1;
    sl_log_info(COMPONENT, "sluice-scheduler stopped");

done:
    sched_http_stop(http);
    sched_loop_destroy(app.loop);
    for (size_t i = 0; jobs != NULL && i < n_jobs; i++) {
        sched_job_destroy(jobs[i]);
    }
    sl_free(jobs);
    sl_metrics_destroy(metrics);
    sl_cfg_fini(secs, N_BASE_SECTIONS);
    sl_free(secs);
    sched_jobs_cfg_destroy(jobs_cfg);
    return status;
}

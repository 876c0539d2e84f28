/*
 * Job settings tables (generated per worker from its name), job creation, and running one
 * slot of a job on a threadpool thread: the run is recorded before the worker starts
 * (fenced by the lease and unique per slot) and after it returns, with the status the
 * outcome and any stop request add up to.
 */
#include "job.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "sched_int.h"

#define JOB_NAME_MAX 40
#define N_COMMON 5
#define KEY_PREFIX "SLUICE_JOB_"
#define SCHEDULE_SUFFIX "_SCHEDULE"
#define MAX_TIMEOUT_S (7 * 86400)

enum { OPT_SCHEDULE, OPT_ENABLED, OPT_TIMEOUT, OPT_MISSED, OPT_TZ };

/* One worker's settings: the common table (keys built from its name) and its own. */
struct job_cfg {
    const struct sched_worker *worker;
    struct sched_job_settings settings;
    void *own; /* worker->settings_size bytes, filled by worker->opts */
    struct sl_cfg_opt opts[N_COMMON];
    char keys[N_COMMON][64];
    char descs[N_COMMON][320];
    char def_timeout[24];
    char section[64];
};

struct sched_jobs_cfg {
    struct job_cfg *jobs;
    size_t n_jobs;
    struct sl_cfg_section *secs;
    size_t n_secs;
};

static bool is_job_name(const char *name)
{
    size_t len = strlen(name);

    if (len == 0 || len > JOB_NAME_MAX || !islower((unsigned char)name[0])) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!islower((unsigned char)name[i]) && !isdigit((unsigned char)name[i]) &&
            name[i] != '_') {
            return false;
        }
    }
    return true;
}

/*
 * The cfg check of every SLUICE_JOB_<NAME>_SCHEDULE: the job's name comes back from the
 * key (names are lower_snake, keys their upper case), so the message can say which job.
 */
static int check_schedule(const char *key, const char *text, struct sl_err *err)
{
    size_t prefix = strlen(KEY_PREFIX), suffix = strlen(SCHEDULE_SUFFIX);
    size_t len = strlen(key);
    char name[JOB_NAME_MAX + 1];
    struct sched_cron c;
    struct sl_err cron_err;
    size_t n = 0;

    for (size_t i = prefix; len > prefix + suffix && i < len - suffix && n < JOB_NAME_MAX;
         i++) {
        name[n++] = (char)tolower((unsigned char)key[i]);
    }
    name[n] = '\0';
    sl_err_clear(&cron_err);
    if (sched_cron_parse(text, &c, &cron_err) != 0) {
        return sl_err_set(err, SL_EINVAL, "%s: job %s: bad schedule '%s': %s", key, name, text,
                          cron_err.msg);
    }
    return 0;
}

static void build_common(struct job_cfg *jc)
{
    const struct sched_worker *w = jc->worker;
    const char *test = w->is_test_only ? "Test only (SLUICE_SCHEDULER_TEST_JOBS). " : "";
    char upper[JOB_NAME_MAX + 1];
    size_t n = strlen(w->name);
    static const char *const suffixes[N_COMMON] = {"SCHEDULE", "ENABLED", "TIMEOUT_S",
                                                   "MISSED", "TZ"};

    for (size_t i = 0; i <= n; i++) {
        upper[i] = (char)toupper((unsigned char)w->name[i]);
    }
    for (size_t i = 0; i < N_COMMON; i++) {
        snprintf(jc->keys[i], sizeof(jc->keys[i]), KEY_PREFIX "%s_%s", upper, suffixes[i]);
        jc->opts[i].key = jc->keys[i];
        jc->opts[i].desc = jc->descs[i];
    }
    snprintf(jc->descs[OPT_SCHEDULE], sizeof(jc->descs[0]),
             "%sWhen job %s runs (%s): 5-field cron (UTC unless its _TZ says otherwise), "
             "@hourly, @daily, ... or @every 30s.", test, w->name, w->summary);
    snprintf(jc->descs[OPT_ENABLED], sizeof(jc->descs[0]), "%sWhether job %s runs at all.", test,
             w->name);
    snprintf(jc->descs[OPT_TIMEOUT], sizeof(jc->descs[0]),
             "%sSeconds a run of %s may take; then it is asked to stop at its next checkpoint "
             "and ends as 'timeout'.", test, w->name);
    snprintf(jc->descs[OPT_MISSED], sizeof(jc->descs[0]),
             "%sSlots of %s missed while no scheduler led: run (once, at start) or skip.", test,
             w->name);
    snprintf(jc->descs[OPT_TZ], sizeof(jc->descs[0]),
             "%sTime zone of %s's cron schedule (IANA name such as Europe/Berlin); DST gaps "
             "run at the change, repeated times once.", test, w->name);
    snprintf(jc->def_timeout, sizeof(jc->def_timeout), "%lld", (long long)w->default_timeout_s);

    jc->opts[OPT_SCHEDULE].type = SL_CFG_STRING;
    jc->opts[OPT_SCHEDULE].def = w->default_schedule;
    jc->opts[OPT_SCHEDULE].offset = offsetof(struct sched_job_settings, schedule);
    jc->opts[OPT_SCHEDULE].check = check_schedule;
    jc->opts[OPT_ENABLED].type = SL_CFG_BOOL;
    jc->opts[OPT_ENABLED].def = "true";
    jc->opts[OPT_ENABLED].offset = offsetof(struct sched_job_settings, is_enabled);
    jc->opts[OPT_TIMEOUT].type = SL_CFG_INT;
    jc->opts[OPT_TIMEOUT].def = jc->def_timeout;
    jc->opts[OPT_TIMEOUT].min = 1;
    jc->opts[OPT_TIMEOUT].max = MAX_TIMEOUT_S;
    jc->opts[OPT_TIMEOUT].offset = offsetof(struct sched_job_settings, timeout_s);
    jc->opts[OPT_MISSED].type = SL_CFG_ENUM;
    jc->opts[OPT_MISSED].def = w->default_missed == SCHED_MISSED_SKIP ? "skip" : "run";
    jc->opts[OPT_MISSED].choices = "run|skip";
    jc->opts[OPT_MISSED].offset = offsetof(struct sched_job_settings, missed);
    jc->opts[OPT_TZ].type = SL_CFG_STRING;
    jc->opts[OPT_TZ].def = "UTC";
    jc->opts[OPT_TZ].offset = offsetof(struct sched_job_settings, zone);
    snprintf(jc->section, sizeof(jc->section), "job %s", w->name);
}

int sched_jobs_cfg_create(const struct sched_worker *const *workers, size_t n_workers,
                          struct sched_jobs_cfg **out, struct sl_err *err)
{
    struct sched_jobs_cfg *cfg = NULL;
    int rc = 0;

    *out = NULL;
    cfg = sl_calloc(1, sizeof(*cfg));
    if (cfg == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory building job settings");
    }
    cfg->jobs = sl_calloc(n_workers > 0 ? n_workers : 1, sizeof(cfg->jobs[0]));
    cfg->secs = sl_calloc(n_workers > 0 ? 2 * n_workers : 1, sizeof(cfg->secs[0]));
    if (cfg->jobs == NULL || cfg->secs == NULL) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory building job settings");
        goto fail;
    }
    for (size_t i = 0; i < n_workers; i++) {
        const struct sched_worker *w = workers[i];
        struct job_cfg *jc = &cfg->jobs[i];

        if (!is_job_name(w->name)) {
            rc = sl_err_set(err, SL_EINVAL, "worker name '%s' is not lower_snake of at most %d "
                            "bytes", w->name, JOB_NAME_MAX);
            goto fail;
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(workers[k]->name, w->name) == 0) {
                rc = sl_err_set(err, SL_EINVAL, "two workers are named '%s'", w->name);
                goto fail;
            }
        }
        jc->worker = w;
        cfg->n_jobs = i + 1;
        if (w->settings_size > 0) {
            jc->own = sl_calloc(1, w->settings_size);
            if (jc->own == NULL) {
                rc = sl_err_set(err, SL_ENOMEM, "out of memory building job settings");
                goto fail;
            }
        }
        build_common(jc);
        cfg->secs[cfg->n_secs++] = SL_CFG_SECTION(jc->section, jc->opts, N_COMMON,
                                                  &jc->settings);
        if (w->n_opts > 0) {
            cfg->secs[cfg->n_secs++] = SL_CFG_SECTION(jc->section, w->opts, w->n_opts, jc->own);
        }
    }
    *out = cfg;
    return 0;

fail:
    sched_jobs_cfg_destroy(cfg);
    return rc;
}

void sched_jobs_cfg_destroy(struct sched_jobs_cfg *cfg)
{
    if (cfg == NULL) {
        return;
    }
    if (cfg->secs != NULL) {
        sl_cfg_fini(cfg->secs, cfg->n_secs);
    }
    for (size_t i = 0; cfg->jobs != NULL && i < cfg->n_jobs; i++) {
        sl_free(cfg->jobs[i].own);
    }
    sl_free(cfg->jobs);
    sl_free(cfg->secs);
    sl_free(cfg);
}

const struct sl_cfg_section *sched_jobs_cfg_sections(const struct sched_jobs_cfg *cfg,
                                                     size_t *n_out)
{
    *n_out = cfg->n_secs;
    return cfg->secs;
}

size_t sched_jobs_cfg_n_workers(const struct sched_jobs_cfg *cfg)
{
    return cfg->n_jobs;
}

const struct sched_worker *sched_jobs_cfg_worker(const struct sched_jobs_cfg *cfg, size_t i)
{
    return cfg->jobs[i].worker;
}

bool sched_jobs_cfg_is_enabled(const struct sched_jobs_cfg *cfg, size_t i)
{
    return cfg->jobs[i].settings.is_enabled;
}

int sched_job_create(const struct sched_jobs_cfg *cfg, size_t i,
                     const struct sched_job_env *env, struct sched_job **out,
                     struct sl_err *err)
{
    const struct job_cfg *jc = &cfg->jobs[i];
    const struct sched_worker *w = jc->worker;
    struct sched_job *job = NULL;
    struct sl_err sub;
    int rc;

    *out = NULL;
    sl_err_clear(&sub);
    job = sl_calloc(1, sizeof(*job));
    if (job == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory creating job %s", w->name);
    }
    job->worker = w;
    job->settings = &jc->settings;
    job->worker_settings = jc->own;
    job->lease = env->lease;
    job->owner = env->owner;
    job->missed = strcmp(jc->settings.missed, "skip") == 0 ? SCHED_MISSED_SKIP
                                                           : SCHED_MISSED_RUN;
    atomic_init(&job->stop_reason, SCHED_STOP_NONE);
    rc = sched_cron_parse(jc->settings.schedule, &job->cron, &sub);
    if (rc != 0) {
        rc = sl_err_set(err, SL_EINVAL, "%s: job %s: bad schedule '%s': %s",
                        jc->keys[OPT_SCHEDULE], w->name, jc->settings.schedule, sub.msg);
        goto fail;
    }
    if (strcmp(jc->settings.zone, "UTC") != 0) {
        rc = sched_tz_create(env->zoneinfo_dir, jc->settings.zone, &job->tz, &sub);
        if (rc != 0) {
            rc = sl_err_set(err, rc, "%s: job %s: %s", jc->keys[OPT_TZ], w->name, sub.msg);
            goto fail;
        }
    }
    if (jc->settings.is_enabled) {
        rc = sl_store_open(&job->store, env->worker.store->path,
                           env->worker.store->busy_timeout_ms, err);
        if (rc != 0) {
            goto fail;
        }
        rc = w->create(jc->own, &env->worker, &job->worker_ctx, err);
        if (rc != 0) {
            sl_err_wrap(err, "job %s", w->name);
            goto fail;
        }
    }
    *out = job;
    return 0;

fail:
    sched_job_destroy(job);
    return rc;
}

void sched_job_destroy(struct sched_job *job)
{
    if (job == NULL) {
        return;
    }
    if (job->worker_ctx != NULL) {
        job->worker->destroy(job->worker_ctx);
    }
    sl_store_close(job->store);
    sched_tz_destroy(job->tz);
    sl_free(job);
}

const char *sched_job_name(const struct sched_job *job)
{
    return job->worker->name;
}

const char *sched_job_schedule(const struct sched_job *job)
{
    return job->settings->schedule;
}

const char *sched_job_zone(const struct sched_job *job)
{
    return sched_tz_name(job->tz);
}

bool sched_job_is_enabled(const struct sched_job *job)
{
    return job->settings->is_enabled;
}

int64_t sched_job_timeout_s(const struct sched_job *job)
{
    return job->settings->timeout_s;
}

int64_t sched_job_next(const struct sched_job *job, int64_t after_s)
{
    return sched_cron_next_tz(&job->cron, job->tz, after_s);
}

/* ---- one run, on a threadpool thread ---- */

/* Wall-clock seconds from the same clock the loop times slots with (time(2) may use a
 * coarser one and read a second earlier than the slot just due). */
static int64_t wall_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

/*
 * How a run ends: the worker's outcome, unless it stopped early because it was asked to.
 * A DONE run finished its work however late; a FAILED one failed for its own reason. A
 * RETRY while a stop was requested is the stop: timeout, or cancelled by shutdown or by
 * losing the lease. Without a request, a run past its deadline also counts as a timeout.
 */
static enum sl_run_status status_of(enum sched_outcome outcome, int reason, bool is_late)
{
    if (outcome == SCHED_DONE) {
        return SL_RUN_DONE;
    }
    if (outcome == SCHED_FAILED) {
        return SL_RUN_FAILED;
    }
    if (reason == SCHED_STOP_TIMEOUT || (reason == SCHED_STOP_NONE && is_late)) {
        return SL_RUN_TIMEOUT;
    }
    if (reason == SCHED_STOP_SHUTDOWN || reason == SCHED_STOP_LEASE_LOST) {
        return SL_RUN_CANCELLED;
    }
    return SL_RUN_RETRY;
}

static void describe_end(const struct sched_job *job, enum sl_run_status status, int reason,
                         char *buf, size_t cap)
{
    const char *why = job->run.err.msg;
    const char *sep = why[0] != '\0' ? ": " : "";
    int n = 0;

    /* A message cut at cap is still useful: it starts with what happened. */
    switch (status) {
    case SL_RUN_TIMEOUT:
        n = snprintf(buf, cap, "stopped at a checkpoint after the timeout of %llds%s%s",
                     (long long)job->settings->timeout_s, sep, why);
        break;
    case SL_RUN_CANCELLED:
        n = snprintf(buf, cap, "stopped at a checkpoint: %s%s%s",
                     reason == SCHED_STOP_LEASE_LOST ? "the scheduler lost its lease"
                                                     : "the scheduler is shutting down",
                     sep, why);
        break;
    case SL_RUN_RETRY:
    case SL_RUN_FAILED:
        snprintf(buf, cap, "%s", why[0] != '\0' ? why : "the job gave no reason");
        break;
    default:
        buf[0] = '\0';
        break;
    }
    if (n >= (int)cap) {
        buf[cap - 1] = '\0';
    }
}

void sched_job_execute(struct sched_job *job)
{
    struct sched_run *run = &job->run;
    char error[SL_STORE_RUN_ERROR_MAX];
    struct sl_job state;
    enum sched_outcome outcome;
    int64_t started_ms = sched_run_clock_ms();
    int64_t run_id = 0;
    int reason;
    int rc;

    memset(run, 0, sizeof(*run));
    sl_err_clear(&job->exec_err);
    job->run_duration_ms = 0;
    job->run_status = SL_RUN_FAILED;
    rc = sl_store_run_begin(job->store, job->lease, job->owner, job->worker->name,
                            job->run_slot_s, job->run_kind, wall_s(), &run_id,
                            &job->exec_err);
    if (rc != 0) {
        job->exec_result = rc == SL_EEXIST    ? SCHED_EXEC_SLOT_TAKEN
                           : rc == SL_EDENIED ? SCHED_EXEC_NOT_LEADER
                                              : SCHED_EXEC_STORE_ERROR;
        return;
    }
    job->checkpoint[0] = '\0';
    if (sl_store_job_get(job->store, job->worker->name, &state, NULL) == 0) {
        memcpy(job->checkpoint, state.checkpoint, sizeof(job->checkpoint));
    }
    run->job = job->worker->name;
    run->run_id = run_id;
    run->slot_s = job->run_slot_s;
    run->kind = job->run_kind;
    run->now_s = wall_s();
    run->store = job->store;
    run->checkpoint = job->checkpoint;
    run->_stop = &job->stop_reason;
    run->_deadline_ms = started_ms + job->settings->timeout_s * 1000;
    sl_err_clear(&run->err);

    outcome = job->worker->run(job->worker_ctx, run);

    job->run_duration_ms = sched_run_clock_ms() - started_ms;
    reason = atomic_load(&job->stop_reason);
    job->run_status = status_of(outcome, reason, sched_run_clock_ms() >= run->_deadline_ms);
    describe_end(job, job->run_status, reason, error, sizeof(error));
    job->exec_result = SCHED_EXEC_RAN;
    /* A failure leaves job->exec_err set; the loop logs it (the run stays 'running' until
     * the next leader marks it abandoned). */
    sl_store_run_end(job->store, run_id, job->run_status, run->rows, error,
                     run->_has_checkpoint ? run->_checkpoint : NULL, wall_s(),
                     job->run_duration_ms, &job->exec_err);
}

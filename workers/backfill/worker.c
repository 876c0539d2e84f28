/*
 * backfill, the scheduler's backfill runner (job name "backfill", every 5 s by default). A
 * run claims up to SLUICE_JOB_BACKFILL_CONCURRENCY queued or running jobs and works
 * through them one chunk at a time in turn, so a long job does not hold back a short one
 * and ClickHouse sees one backfill query at a time next to the live load. Each chunk is
 * recomputed, swapped in and verified (replace.c), then checkpointed in one SQLite
 * transaction (lib/store_backfill.c). Between chunks the runner applies pause and cancel
 * requests, polls sched_run_should_stop, and sleeps as long as the rows/s cap asks, in
 * short slices that still notice a stop.
 *
 * A run that is stopped (shutdown, lost lease, timeout) leaves its jobs 'running' at their
 * last checkpoint; whichever scheduler leads next claims them and carries on from there.
 * A chunk that fails marks its job failed with the chunk and ClickHouse's error; the job
 * waits for `sluice backfill resume`, which retries that chunk.
 *
 * The enrichment kind applies the enrichment data the runner's settings name (the same
 * SLUICE_GEOIP_DB, SLUICE_UA_REGEXES, ... as the scheduled enrichment job, declared by both
 * tables and set once). The runner creates that struct enrich the first time it runs such a
 * chunk, since creating it compiles uap-core's rules, and keeps it until destroy; with none
 * of those settings set it creates none, and the chunks fail naming them.
 */
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "backfill_int.h"
#include "enrich.h"
#include "log.h"
#include "reenrich.h"
#include "worker.h"

#define COMPONENT "backfill"
#define SLEEP_SLICE_MS 50

struct backfill_settings {
    int64_t concurrency;         /* SLUICE_JOB_BACKFILL_CONCURRENCY */
    int64_t max_rows_per_s;      /* SLUICE_JOB_BACKFILL_MAX_ROWS_PER_S */
    int64_t catchup_margin_s;    /* SLUICE_JOB_BACKFILL_CATCHUP_MARGIN_S */
    int64_t enrich_batch_pairs;  /* SLUICE_JOB_BACKFILL_ENRICH_BATCH_PAIRS */
    struct enrich_config enrich; /* SLUICE_GEOIP_DB, SLUICE_UA_REGEXES, ... (keys shared with
                                    the enrichment job) */
};

struct runner {
    struct backfill_settings settings; /* its strings borrowed from the scheduler's copy */
    const struct sl_ch_settings *ch;   /* borrowed from the scheduler */
    struct enrich *enrich;             /* owned; created by the first enrichment chunk */
    char owner[SL_STORE_OWNER_MAX];
};

static const struct sl_cfg_opt backfill_opts[] = {
    {.key = "SLUICE_JOB_BACKFILL_CONCURRENCY", .type = SL_CFG_INT, .def = "2", .min = 1,
     .max = 64, .offset = offsetof(struct backfill_settings, concurrency),
     .desc = "Backfill jobs the runner works on at once (chunk by chunk in turn); more "
             "wait queued."},
    {.key = "SLUICE_JOB_BACKFILL_MAX_ROWS_PER_S", .type = SL_CFG_INT, .def = "2000000",
     .min = 0, .max = INT64_C(1000000000000),
     .offset = offsetof(struct backfill_settings, max_rows_per_s),
     .desc = "Source rows per second backfills may read, averaged over each chunk (the "
             "runner sleeps between chunks to stay under it); 0: no limit."},
    {.key = "SLUICE_JOB_BACKFILL_CATCHUP_MARGIN_S", .type = SL_CFG_INT, .def = "600", .min = 0,
     .max = 86400, .offset = offsetof(struct backfill_settings, catchup_margin_s),
     .desc = "How far before a chunk's snapshot it re-reads rows the loader wrote meanwhile "
             "(covers clock differences between loader and scheduler hosts)."},
    {.key = "SLUICE_JOB_BACKFILL_ENRICH_BATCH_PAIRS", .type = SL_CFG_INT, .def = "50000",
     .min = 1, .max = ENRICH_REWRITE_MAX_BATCH_PAIRS,
     .offset = offsetof(struct backfill_settings, enrich_batch_pairs),
     .desc = "Distinct (IP, user agent) pairs an enrichment backfill looks up and rewrites per "
             "step; each step reads the chunk's events once, so raise it for chunks with many "
             "pairs."},
    /* The enrichment kind's data: the same keys as the enrichment job's, set once. */
    ENRICH_CONFIG_OPTS(offsetof(struct backfill_settings, enrich)),
};

static int runner_create(const void *settings, const struct sched_worker_env *env,
                         void **ctx_out, struct sl_err *err)
{
    struct runner *r = sl_calloc(1, sizeof(*r));
    char host[64] = "localhost";

    *ctx_out = NULL;
    if (r == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    memcpy(&r->settings, settings, sizeof(r->settings));
    r->ch = env->ch;
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    snprintf(r->owner, sizeof(r->owner), "%s:%d", host, (int)getpid());
    *ctx_out = r;
    return 0;
}

static void runner_destroy(void *ctx)
{
    struct runner *r = ctx;

    if (r == NULL) {
        return;
    }
    enrich_destroy(r->enrich);
    sl_free(r);
}

static bool is_set(const char *path)
{
    return path != NULL && path[0] != '\0';
}

/*
 * The enrichment data for an enrichment chunk in *out (borrowed from the runner, or NULL
 * when no data setting is set: the chunk then fails naming them). Created on first use and
 * reloaded when SLUICE_GEOIP_RELOAD_S has passed, as the loader does. Fails only when out
 * of memory.
 */
static int runner_enrich(struct runner *r, int64_t now_s, struct enrich **out,
                         const struct sl_log_ctx *log_ctx, struct sl_err *err)
{
    const struct enrich_config *c = &r->settings.enrich;
    struct sl_err why;

    *out = NULL;
    if (!is_set(c->paths.geoip_db) && !is_set(c->paths.ua_regexes) &&
        !is_set(c->settings.asn_db) && !is_set(c->settings.crawler_patterns)) {
        return 0;
    }
    if (r->enrich == NULL) {
        /* Broken files do not fail this; the chunk refuses to rewrite with them. */
        int rc = enrich_create(&c->settings, c->paths.geoip_db, c->paths.ua_regexes, now_s,
                               &r->enrich, err);

        if (rc != 0) {
            return rc;
        }
    }
    else {
        sl_err_clear(&why);
        if (enrich_reload(r->enrich, now_s, false, &why) != 0) {
            sl_log_warn_ctx(COMPONENT, log_ctx, "enrichment data not reloaded, the previous "
                            "version serves: %s", why.msg);
        }
    }
    *out = r->enrich;
    return 0;
}

static int64_t wall_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

/* Sleeps ms in slices, returning early when the run should stop. */
static void throttle(const struct sched_run *run, int64_t ms)
{
    int64_t until = sched_run_clock_ms() + ms;

    while (!sched_run_should_stop(run)) {
        int64_t left = until - sched_run_clock_ms();

        if (left <= 0) {
            break;
        }
        poll(NULL, 0, (int)(left < SLEEP_SLICE_MS ? left : SLEEP_SLICE_MS));
    }
}

/* How one job fared in a pass. */
enum step {
    STEP_MORE,  /* a chunk was checkpointed and more are left */
    STEP_ENDED, /* done, paused, cancelled, failed, or taken by someone else */
    STEP_STORE, /* the store failed; try again next run */
};

/* Runs the job's next chunk and checkpoints it. */
static enum step run_chunk(struct runner *r, struct sched_run *run, struct sl_ch *ch,
                           const struct sl_backfill_job *job, int64_t *rows_read)
{
    const struct sl_log_ctx log_ctx = {.job_id = run->job,
                                       .tenant_id = job->tenant_id[0] != '\0' ? job->tenant_id
                                                                              : NULL};
    const struct backfill_kind *k = backfill_kind_find(job->kind);
    struct backfill_chunk_opts opts = {.catchup_margin_s = r->settings.catchup_margin_s,
                                       .enrich_batch_pairs = r->settings.enrich_batch_pairs};
    struct backfill_chunk_result res;
    struct sl_backfill_chunk cp;
    struct sl_err err;
    char tag[32];
    int64_t from_s, to_s, start_ms;
    int rc;

    sl_err_clear(&err);
    if (!backfill_plan_next(job, &from_s, &to_s)) {
        return STEP_ENDED;
    }
    if (k == NULL) {
        /* A job written by a newer sluice, or a kind removed: nothing here can run it. */
        sl_store_backfill_fail(run->store, job->id, from_s, "unknown backfill kind", wall_s(),
                               NULL);
        return STEP_ENDED;
    }
    snprintf(tag, sizeof(tag), "%lld", (long long)job->id);
    opts.tag = tag;
    opts.now_s = wall_s();
    start_ms = sched_run_clock_ms();
    rc = backfill_kind_needs_enrich(k) ? runner_enrich(r, opts.now_s, &opts.enrich, &log_ctx,
                                                       &err)
                                       : 0;
    rc = rc != 0 ? rc
                 : backfill_chunk_run(ch, r->ch->database, k, job->tenant_id, from_s, to_s,
                                      &opts, &res, &err);
    if (rc != 0) {
        /* Failed, not retry: the client already retried what is transient, and an operator
         * should see a chunk that fails (ClickHouse down, a bad slice) before it runs
         * again. `resume` retries this chunk. */
        sl_log_error_ctx(COMPONENT, &log_ctx, "backfill %lld (%s) failed at chunk %lld: %s",
                         (long long)job->id, job->kind, (long long)from_s, err.msg);
        if (sl_store_backfill_fail(run->store, job->id, from_s, err.msg, wall_s(), &run->err) !=
            0) {
            return STEP_STORE;
        }
        return STEP_ENDED;
    }
    memset(&cp, 0, sizeof(cp));
    cp.job_id = job->id;
    cp.from_s = from_s;
    cp.to_s = to_s;
    snprintf(cp.source, sizeof(cp.source), "%s", res.source);
    cp.rows_read = res.rows_read;
    cp.rows_written = res.rows_written;
    cp.duration_ms = sched_run_clock_ms() - start_ms;
    rc = sl_store_backfill_checkpoint(run->store, job->id, &cp, wall_s(), &err);
    if (rc == SL_ESTATE) {
        sl_log_warn_ctx(COMPONENT, &log_ctx, "backfill %lld: %s", (long long)job->id, err.msg);
        return STEP_ENDED;
    }
    if (rc != 0) {
        run->err = err;
        return STEP_STORE;
    }
    run->rows += res.rows_written;
    *rows_read += res.rows_read;
    sl_log_info_ctx(COMPONENT, &log_ctx, "backfill %lld (%s) chunk %lld..%lld from %s: read "
                    "%lld, wrote %lld (was %lld)%s in %lld ms", (long long)job->id, job->kind,
                    (long long)from_s, (long long)to_s, res.source, (long long)res.rows_read,
                    (long long)res.rows_written, (long long)res.rows_before,
                    res.is_kept ? ", kept: nothing to recompute from" : "",
                    (long long)cp.duration_ms);
    return to_s >= job->to_s ? STEP_ENDED : STEP_MORE;
}

/* One pass: claim, then one chunk of each claimed job. *any_work says a chunk ran. */
static enum sched_outcome pass(struct runner *r, struct sched_run *run, struct sl_ch *ch,
                               bool *any_work)
{
    struct sl_backfill_job *jobs = NULL;
    size_t n = 0;
    int rc;

    *any_work = false;
    rc = sl_store_backfill_claim(run->store, r->owner, (size_t)r->settings.concurrency,
                                 wall_s(), &jobs, &n, &run->err);
    if (rc != 0) {
        return rc == SL_EBUSY ? SCHED_RETRY : SCHED_FAILED;
    }
    for (size_t i = 0; i < n && !sched_run_should_stop(run); i++) {
        enum sl_backfill_state state = SL_BACKFILL_RUNNING;
        struct sl_backfill_job job;
        int64_t rows_read = 0, start_ms;
        enum step step;

        /* The claim returned the row as it was; a request may have come since. */
        rc = sl_store_backfill_settle(run->store, jobs[i].id, wall_s(), &state, &run->err);
        rc = rc != 0 ? rc : sl_store_backfill_get(run->store, jobs[i].id, &job, &run->err);
        if (rc != 0) {
            sl_free(jobs);
            return SCHED_RETRY;
        }
        if (state != SL_BACKFILL_RUNNING || job.state != SL_BACKFILL_RUNNING) {
            continue;
        }
        start_ms = sched_run_clock_ms();
        step = run_chunk(r, run, ch, &job, &rows_read);
        if (step == STEP_STORE) {
            sl_free(jobs);
            return SCHED_RETRY;
        }
        *any_work = true;
        if (r->settings.max_rows_per_s > 0 && rows_read > 0) {
            int64_t want_ms = rows_read * 1000 / r->settings.max_rows_per_s;

            throttle(run, want_ms - (sched_run_clock_ms() - start_ms));
        }
    }
    sl_free(jobs);
    return SCHED_DONE;
}

static enum sched_outcome runner_run(void *ctx, struct sched_run *run)
{
    struct runner *r = ctx;
    struct sl_ch *ch = NULL;
    enum sched_outcome outcome = SCHED_DONE;
    bool any_work = true;

    if (sl_ch_create(&ch, r->ch, &run->err) != 0) {
        return SCHED_FAILED;
    }
    while (any_work && outcome == SCHED_DONE && !sched_run_should_stop(run)) {
        outcome = pass(r, run, ch, &any_work);
    }
    sl_ch_destroy(ch);
    if (outcome == SCHED_DONE && sched_run_should_stop(run)) {
        /* Jobs stay 'running' at their last checkpoint; the next leader carries on. */
        sl_err_set(&run->err, SL_ECANCELED, "stopped between chunks");
        return SCHED_RETRY;
    }
    return outcome;
}

const struct sched_worker backfill_worker = {
    .name = "backfill",
    .summary = "runs queued backfills (sluice backfill) chunk by chunk with checkpoints",
    .default_schedule = "@every 5s",
    .default_missed = SCHED_MISSED_RUN,
    .default_timeout_s = 3600,
    .opts = backfill_opts,
    .n_opts = sizeof(backfill_opts) / sizeof(backfill_opts[0]),
    .settings_size = sizeof(struct backfill_settings),
    .create = runner_create,
    .run = runner_run,
    .destroy = runner_destroy,
};

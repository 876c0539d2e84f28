/*
 * sluice backfill: start a backfill (recorded in the tenant store for the scheduler's
 * backfill runner; --dry-run instead computes each chunk's numbers in ClickHouse and writes
 * nothing), watch jobs with a progress bar, rows/s and ETA, and pause, resume or cancel
 * them. The CLI never runs chunks itself; pause and cancel of a running job take effect at
 * its next chunk boundary. Kinds, planning and chunks are workers/backfill/'s. A dry run of
 * the enrichment kind counts against the enrichment data of the CLI's own settings
 * (SLUICE_GEOIP_DB, SLUICE_UA_REGEXES, ..., as `sluice enrich`), loaded for that kind only.
 */
#include <poll.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "backfill.h"
#include "cli.h"
#include "enrich.h"
#include "store_backfill.h"
#include "timefmt.h"

#define BAR_WIDTH 24
#define DEFAULT_INTERVAL_S 2

static const char usage[] =
    "usage: sluice backfill start --kind KIND (--tenant T | --all-tenants) --from DATE\n"
    "                             --to DATE [--chunk 1h|1d] [--dry-run]\n"
    "       sluice backfill status [ID] [--watch [--interval S]]\n"
    "       sluice backfill pause|resume|cancel ID\n"
    "Kinds: sessions, hourly, daily (daily uses the hourly rollup on days whose raw events\n"
    "are gone), enrichment (rewrites raw events enriched with data older than the current\n"
    "SLUICE_GEOIP_DB, SLUICE_UA_REGEXES, ...). DATE is YYYY-MM-DD or an RFC 3339 time; a\n"
    "date in --to includes that day. Chunks default to 1d (sessions and daily work in\n"
    "whole days; hourly and enrichment also take 1h). start prints the new\n"
    "job's id; the scheduler's backfill job runs it. --dry-run prints what each chunk would\n"
    "write and records nothing (for enrichment: the events it would rewrite, by this\n"
    "command's enrichment settings). status shows every job (or ID) with progress, chunks,\n"
    "rows/s and ETA; --watch refreshes until they end. pause and cancel act on a running job\n"
    "at its next chunk; resume continues a paused job or retries a failed one from its\n"
    "failed chunk. All commands take --json.\n";

static const char *range_text(const struct sl_backfill_job *j, char *buf, size_t cap)
{
    char a[SL_TIMEFMT_ISO_MAX], b[SL_TIMEFMT_ISO_MAX];

    sl_timefmt_iso(j->from_s, a);
    sl_timefmt_iso(j->to_s, b);
    if (j->from_s % 86400 == 0 && j->to_s % 86400 == 0) {
        /* Whole days: show them as the operator typed them (--to inclusive). */
        sl_timefmt_iso(j->to_s - 86400, b);
        snprintf(buf, cap, "%.10s..%.10s", a, b);
    }
    else {
        snprintf(buf, cap, "%s..%s", a, b);
    }
    return buf;
}

static const char *state_text(const struct sl_backfill_job *j, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s%s", sl_store_backfill_state_name(j->state),
             j->requested == SL_BACKFILL_REQ_PAUSE    ? " (pausing)"
             : j->requested == SL_BACKFILL_REQ_CANCEL ? " (cancelling)"
                                                      : "");
    return buf;
}

static const char *rate_text(double rows_per_s, char *buf, size_t cap)
{
    if (rows_per_s <= 0) {
        snprintf(buf, cap, "-");
    }
    else if (rows_per_s >= 1e6) {
        snprintf(buf, cap, "%.1fM/s", rows_per_s / 1e6);
    }
    else if (rows_per_s >= 1e3) {
        snprintf(buf, cap, "%.1fk/s", rows_per_s / 1e3);
    }
    else {
        snprintf(buf, cap, "%.0f/s", rows_per_s);
    }
    return buf;
}

static const char *eta_text(const struct sl_backfill_job *j, int64_t eta_s, char *buf,
                            size_t cap)
{
    if (!sl_store_backfill_is_active(j->state) || j->state == SL_BACKFILL_FAILED ||
        eta_s < 0) {
        snprintf(buf, cap, "-");
    }
    else {
        snprintf(buf, cap, "%02lld:%02lld:%02lld", (long long)(eta_s / 3600),
                 (long long)(eta_s / 60 % 60), (long long)(eta_s % 60));
    }
    return buf;
}

static json_t *job_json(const struct sl_backfill_job *j)
{
    struct backfill_progress p;

    backfill_progress_of(j, &p);
    return json_pack("{s:I, s:s, s:s?, s:o, s:o, s:I, s:s, s:s?, s:I, s:I, s:f, s:I, s:I, "
                     "s:I, s:f, s:o, s:s?, s:o, s:s?, s:o, s:o, s:o}",
                     "id", (json_int_t)j->id, "kind", j->kind, "tenant",
                     j->tenant_id[0] != '\0' ? j->tenant_id : NULL, "from",
                     cli_json_time(j->from_s), "to", cli_json_time(j->to_s), "chunk_s",
                     (json_int_t)j->chunk_s, "state", sl_store_backfill_state_name(j->state),
                     "requested",
                     j->requested == SL_BACKFILL_REQ_PAUSE    ? "pause"
                     : j->requested == SL_BACKFILL_REQ_CANCEL ? "cancel"
                                                              : NULL,
                     "chunks_done", (json_int_t)j->chunks_done, "chunks_total",
                     (json_int_t)j->chunks_total, "progress", p.fraction, "rows_read",
                     (json_int_t)j->rows_read, "rows_written", (json_int_t)j->rows_written,
                     "busy_ms", (json_int_t)j->busy_ms, "rows_per_s", p.rows_per_s, "eta_s",
                     p.eta_s >= 0 ? json_integer(p.eta_s) : json_null(), "error",
                     j->error[0] != '\0' ? j->error : NULL, "error_chunk",
                     cli_json_time(j->error_chunk_s), "owner",
                     j->owner[0] != '\0' ? j->owner : NULL, "created_at",
                     cli_json_time(j->created_s), "started_at", cli_json_time(j->started_s),
                     "ended_at", cli_json_time(j->ended_s));
}

static void print_job(struct cli_ctx *ctx, const struct sl_backfill_job *j)
{
    struct backfill_progress p;
    char bar[BAR_WIDTH + 1], range[96], state[32], rate[24], eta[24], chunks[48], t[32];
    int filled;

    backfill_progress_of(j, &p);
    filled = (int)(p.fraction * BAR_WIDTH + 0.5);
    for (int i = 0; i < BAR_WIDTH; i++) {
        bar[i] = i < filled ? '#' : '-';
    }
    bar[BAR_WIDTH] = '\0';
    snprintf(chunks, sizeof(chunks), "%lld/%lld", (long long)j->chunks_done,
             (long long)j->chunks_total);
    fprintf(ctx->out, "%-4lld %-10s %-20s %-23s %-18s [%s] %5.1f%% %-11s %-9s %s\n",
            (long long)j->id, j->kind, j->tenant_id[0] != '\0' ? j->tenant_id : "(all)",
            range_text(j, range, sizeof(range)), state_text(j, state, sizeof(state)), bar,
            p.fraction * 100.0, chunks, rate_text(p.rows_per_s, rate, sizeof(rate)),
            eta_text(j, p.eta_s, eta, sizeof(eta)));
    if (j->state == SL_BACKFILL_FAILED) {
        fprintf(ctx->out, "     failed at chunk %s: %s\n", cli_time(j->error_chunk_s, t),
                j->error);
    }
}

static void print_header(struct cli_ctx *ctx)
{
    fprintf(ctx->out, "%-4s %-10s %-20s %-23s %-18s %-*s %6s %-11s %-9s %s\n", "ID", "KIND",
            "TENANT", "RANGE", "STATE", BAR_WIDTH + 2, "PROGRESS", "", "CHUNKS", "ROWS/S",
            "ETA");
}

static int parse_id(struct cli_ctx *ctx, const char *text, int64_t *id)
{
    return cli_parse_int(ctx, "backfill", "ID", text, 1, INT64_MAX, id);
}

static bool is_set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/*
 * The enrichment data of the CLI's settings in *out (returns new; NULL when none of the
 * data settings is set, so the chunk names them). Only for kinds that need it: creating
 * one compiles uap-core's rules.
 */
static int dry_run_enrich(struct cli_ctx *ctx, const struct backfill_kind *k,
                          struct enrich **out, struct sl_err *err)
{
    const struct enrich_settings *s = ctx->enrich_settings;
    const struct enrich_paths *p = ctx->enrich_paths;

    *out = NULL;
    if (!backfill_kind_needs_enrich(k) || s == NULL || p == NULL ||
        (!is_set(p->geoip_db) && !is_set(p->ua_regexes) && !is_set(s->asn_db) &&
         !is_set(s->crawler_patterns))) {
        return 0;
    }
    return enrich_create(s, p->geoip_db, p->ua_regexes, ctx->now_s, out, err);
}

/* Prints the dry run of every chunk: what it would read and write. */
static int dry_run(struct cli_ctx *ctx, const struct backfill_kind *k, const char *tenant_id,
                   int64_t from_s, int64_t to_s, int64_t chunk_s)
{
    struct backfill_chunk_opts opts = {.tag = "dry", .now_s = ctx->now_s, .is_dry_run = true};
    const char *database = ctx->ch_settings->database;
    json_t *arr = ctx->is_json ? json_array() : NULL;
    struct sl_ch *ch = NULL;
    struct enrich *e = NULL;
    struct sl_err err;
    int64_t total_read = 0, total_written = 0;
    int rc;

    sl_err_clear(&err);
    if (sl_ch_create(&ch, ctx->ch_settings, &err) != 0 ||
        dry_run_enrich(ctx, k, &e, &err) != 0) {
        sl_ch_destroy(ch);
        json_decref(arr);
        return cli_fail(ctx, &err);
    }
    opts.enrich = e;
    for (int64_t a = from_s; a < to_s; a += chunk_s) {
        struct backfill_chunk_result res;
        char t[32];

        rc = backfill_chunk_run(ch, database != NULL ? database : "", k, tenant_id, a,
                                a + chunk_s, &opts, &res, &err);
        if (rc != 0) {
            enrich_destroy(e);
            sl_ch_destroy(ch);
            json_decref(arr);
            return cli_fail(ctx, &err);
        }
        if (a == from_s && !ctx->is_json) {
            /* After the first chunk, so a chunk that cannot run prints only its error. */
            fprintf(ctx->out, "%-22s %-8s %12s %12s %12s\n", "CHUNK", "SOURCE", "READ",
                    "WRITE", "NOW");
        }
        total_read += res.rows_read;
        total_written += res.is_kept ? res.rows_before : res.rows_written;
        if (arr != NULL) {
            json_array_append_new(arr, json_pack("{s:o, s:o, s:s, s:I, s:I, s:I, s:b}",
                                                 "from", cli_json_time(a), "to",
                                                 cli_json_time(a + chunk_s), "source",
                                                 res.source, "rows_read",
                                                 (json_int_t)res.rows_read, "rows_written",
                                                 (json_int_t)res.rows_written, "rows_now",
                                                 (json_int_t)res.rows_before, "kept",
                                                 res.is_kept));
        }
        else {
            fprintf(ctx->out, "%-22s %-8s %12lld %12lld %12lld%s\n", cli_time(a, t), res.source,
                    (long long)res.rows_read, (long long)res.rows_written,
                    (long long)res.rows_before, res.is_kept ? "  (kept: nothing to recompute "
                                                              "from)" : "");
        }
    }
    enrich_destroy(e);
    sl_ch_destroy(ch);
    if (arr != NULL) {
        cli_print_json(ctx, arr);
    }
    else {
        fprintf(ctx->out, "dry run: %lld chunks, %lld source rows, %lld rows would be written; "
                "nothing was written\n", (long long)((to_s - from_s) / chunk_s),
                (long long)total_read, (long long)total_written);
    }
    return CLI_OK;
}

static int backfill_start(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cli_flag flags[] = {
        {.name = "--kind", .takes_value = true},    {.name = "--tenant", .takes_value = true},
        {.name = "--all-tenants"},                  {.name = "--from", .takes_value = true},
        {.name = "--to", .takes_value = true},      {.name = "--chunk", .takes_value = true},
        {.name = "--dry-run"},
    };
    const struct backfill_kind *k;
    struct sl_backfill_job job;
    struct sl_store *st = NULL;
    char tenant_id[SL_STORE_ID_MAX] = "";
    const char *pos[1];
    struct sl_err err;
    size_t n_pos = 0;
    int64_t chunk_s = BACKFILL_DAY_S, from_s = 0, to_s = 0;
    bool help = false;
    char range[96];
    int rc = cli_args_parse(ctx, argc, argv, flags, sizeof(flags) / sizeof(flags[0]), pos, 0,
                            &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    sl_err_clear(&err);
    if (!flags[0].is_set || !flags[3].is_set || !flags[4].is_set) {
        return cli_usage_error(ctx, "backfill", "backfill start needs --kind, --from and --to");
    }
    k = backfill_kind_find(flags[0].value);
    if (k == NULL) {
        return cli_usage_error(ctx, "backfill", "unknown kind '%s' (sessions, hourly, daily, "
                               "enrichment)", flags[0].value);
    }
    if (flags[1].is_set == flags[2].is_set) {
        return cli_usage_error(ctx, "backfill", "give either --tenant T or --all-tenants");
    }
    if ((flags[5].is_set && backfill_plan_chunk_parse(flags[5].value, &chunk_s, &err) != 0) ||
        backfill_kind_check_chunk(k, chunk_s, &err) != 0 ||
        backfill_plan_range(flags[3].value, flags[4].value, chunk_s, &from_s, &to_s, &err) !=
            0) {
        return cli_usage_error(ctx, "backfill", "%s", err.msg);
    }
    if (cli_store(ctx, &st, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    if (flags[1].is_set) {
        struct sl_tenant t;

        if (sl_store_tenant_get(st, flags[1].value, &t, &err) != 0) {
            return cli_fail(ctx, &err);
        }
        snprintf(tenant_id, sizeof(tenant_id), "%s", t.id);
    }
    if (flags[6].is_set) {
        return dry_run(ctx, k, tenant_id, from_s, to_s, chunk_s);
    }
    if (sl_store_backfill_create(st, backfill_kind_name(k), tenant_id, from_s, to_s, chunk_s,
                                 ctx->now_s, &job, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    if (ctx->is_json) {
        cli_print_json(ctx, job_json(&job));
        return CLI_OK;
    }
    fprintf(ctx->out, "%lld\n", (long long)job.id);
    fprintf(ctx->err, "backfill %lld queued: %s for %s, %s in %lld chunks of %s; follow it "
            "with `sluice backfill status %lld --watch`\n", (long long)job.id, job.kind,
            tenant_id[0] != '\0' ? tenant_id : "every tenant",
            range_text(&job, range, sizeof(range)), (long long)job.chunks_total,
            chunk_s == BACKFILL_DAY_S ? "1d" : "1h", (long long)job.id);
    return CLI_OK;
}

/* Reads the jobs to show: one (id > 0) or all. *n_active counts queued and running. */
static int load_jobs(struct cli_ctx *ctx, struct sl_store *st, int64_t id,
                     struct sl_backfill_job **out, size_t *n_out, size_t *n_active,
                     struct sl_err *err)
{
    int rc;

    *n_active = 0;
    if (id > 0) {
        *out = sl_calloc(1, sizeof(**out));
        if (*out == NULL) {
            return sl_err_set(err, SL_ENOMEM, "out of memory");
        }
        rc = sl_store_backfill_get(st, id, *out, err);
        if (rc != 0) {
            sl_free(*out);
            *out = NULL;
            return rc;
        }
        *n_out = 1;
    }
    else {
        rc = sl_store_backfill_list(st, out, n_out, err);
        if (rc != 0) {
            return rc;
        }
    }
    for (size_t i = 0; i < *n_out; i++) {
        if ((*out)[i].state == SL_BACKFILL_QUEUED || (*out)[i].state == SL_BACKFILL_RUNNING) {
            (*n_active)++;
        }
    }
    return 0;
}

static void print_status(struct cli_ctx *ctx, int64_t id, const struct sl_backfill_job *jobs,
                         size_t n)
{
    if (ctx->is_json) {
        json_t *v;

        if (id > 0) {
            v = job_json(&jobs[0]);
        }
        else {
            v = json_array();
            for (size_t i = 0; i < n; i++) {
                json_array_append_new(v, job_json(&jobs[i]));
            }
        }
        cli_print_json(ctx, v);
        return;
    }
    print_header(ctx);
    for (size_t i = 0; i < n; i++) {
        print_job(ctx, &jobs[i]);
    }
    if (n == 0) {
        fprintf(ctx->out, "(no backfills: start one with `sluice backfill start`)\n");
    }
}

static int backfill_status(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cli_flag flags[] = {{.name = "--watch"}, {.name = "--interval", .takes_value = true}};
    struct sl_backfill_job *jobs = NULL;
    struct sl_store *st = NULL;
    const char *pos[1];
    struct sl_err err;
    size_t n = 0, n_pos = 0, n_active = 0;
    int64_t id = 0, interval_s = DEFAULT_INTERVAL_S;
    bool help = false;
    int rc = cli_args_parse(ctx, argc, argv, flags, 2, pos, 1, &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    if (n_pos == 1 && parse_id(ctx, pos[0], &id) != CLI_OK) {
        return CLI_USAGE;
    }
    if (flags[1].is_set && cli_parse_int(ctx, "backfill", "--interval", flags[1].value, 1,
                                         3600, &interval_s) != CLI_OK) {
        return CLI_USAGE;
    }
    sl_err_clear(&err);
    if (cli_store(ctx, &st, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    for (;;) {
        rc = load_jobs(ctx, st, id, &jobs, &n, &n_active, &err);
        if (rc != 0) {
            return cli_fail(ctx, &err);
        }
        if (flags[0].is_set && !ctx->is_json) {
            /* Home and clear, so the screen is redrawn in place. */
            fputs("\033[H\033[2J", ctx->out);
        }
        print_status(ctx, id, jobs, n);
        sl_free(jobs);
        jobs = NULL;
        fflush(ctx->out);
        if (!flags[0].is_set || n_active == 0) {
            break;
        }
        poll(NULL, 0, (int)(interval_s * 1000));
    }
    return CLI_OK;
}

/* pause, resume and cancel: one ID each, one store call. */
static int backfill_verb(struct cli_ctx *ctx, int argc, char **argv,
                         int (*apply)(struct sl_store *, int64_t, int64_t,
                                      struct sl_backfill_job *, struct sl_err *))
{
    struct sl_backfill_job job;
    struct sl_store *st = NULL;
    const char *pos[1];
    struct sl_err err;
    size_t n_pos = 0;
    int64_t id = 0;
    bool help = false;
    char state[32];
    int rc = cli_args_parse(ctx, argc, argv, NULL, 0, pos, 1, &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    if (n_pos != 1) {
        return cli_usage_error(ctx, "backfill", "backfill %s needs a job ID", argv[0]);
    }
    if (parse_id(ctx, pos[0], &id) != CLI_OK) {
        return CLI_USAGE;
    }
    sl_err_clear(&err);
    if (cli_store(ctx, &st, &err) != 0 || apply(st, id, ctx->now_s, &job, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    if (ctx->is_json) {
        cli_print_json(ctx, job_json(&job));
    }
    else {
        fprintf(ctx->out, "backfill %lld: %s\n", (long long)job.id,
                state_text(&job, state, sizeof(state)));
    }
    return CLI_OK;
}

static int backfill_pause(struct cli_ctx *ctx, int argc, char **argv)
{
    return backfill_verb(ctx, argc, argv, sl_store_backfill_pause);
}

static int backfill_resume(struct cli_ctx *ctx, int argc, char **argv)
{
    return backfill_verb(ctx, argc, argv, sl_store_backfill_resume);
}

static int backfill_cancel(struct cli_ctx *ctx, int argc, char **argv)
{
    return backfill_verb(ctx, argc, argv, sl_store_backfill_cancel);
}

int cli_backfill_main(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {
        {"start", backfill_start},   {"status", backfill_status}, {"pause", backfill_pause},
        {"resume", backfill_resume}, {"cancel", backfill_cancel},
    };

    return cli_dispatch(ctx, "backfill", usage, verbs, sizeof(verbs) / sizeof(verbs[0]), argc,
                        argv);
}

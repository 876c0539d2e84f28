/*
 * sluice jobs: the scheduler's jobs as the leading sluice-scheduler registered them in the
 * tenant store, their run history, and "run now" requests. The CLI never runs a job
 * itself: `jobs run` records a request the leader picks up within a second, so the run
 * still goes through the lease and the one-run-per-slot rule.
 */
#include <poll.h>
#include <string.h>

#include "alloc.h"
#include "cli.h"

#define LEASE "scheduler"
#define WAIT_POLL_MS 200
#define DEFAULT_WAIT_S 300
#define DEFAULT_HISTORY 20

static const char usage[] =
    "usage: sluice jobs list\n"
    "       sluice jobs run NAME [--wait] [--timeout SECONDS]\n"
    "       sluice jobs history NAME [--limit N]\n"
    "list shows each job's schedule, last run and next run as the leading sluice-scheduler\n"
    "registered them. run asks the leader to run NAME now (it looks each second); with\n"
    "--wait it waits for that run to end (default up to 300 s) and exits 1 unless it ended\n"
    "done. history shows the newest runs first (default 20). All commands take --json.\n";

static json_t *run_json(const struct sl_run *r)
{
    return json_pack("{s:I, s:s, s:o, s:s, s:s, s:s, s:o, s:o, s:I, s:I, s:s?}", "id",
                     (json_int_t)r->id, "job", r->job, "slot", cli_json_time(r->slot_s), "kind",
                     r->kind, "owner", r->owner, "status", sl_store_run_status_name(r->status),
                     "started_at", cli_json_time(r->started_s), "ended_at",
                     cli_json_time(r->ended_s), "duration_ms", (json_int_t)r->duration_ms,
                     "rows", (json_int_t)r->rows, "error",
                     r->error[0] != '\0' ? r->error : NULL);
}

static json_t *job_json(const struct sl_job *j)
{
    json_t *last = json_null();

    if (j->last_run_id > 0) {
        last = json_pack("{s:I, s:s, s:o, s:o}", "id", (json_int_t)j->last_run_id, "status",
                         sl_store_run_status_name(j->last_status), "started_at",
                         cli_json_time(j->last_started_s), "ended_at",
                         cli_json_time(j->last_ended_s));
    }
    return json_pack("{s:s, s:s, s:s, s:b, s:o, s:o, s:o}", "name", j->name, "schedule",
                     j->schedule, "zone", j->zone, "enabled", j->is_enabled, "last_run", last,
                     "next_run", cli_json_time(j->next_run_s), "run_requested_at",
                     cli_json_time(j->run_requested_s));
}

static const char *duration(int64_t ms, char *buf, size_t cap)
{
    if (ms <= 0) {
        return "-";
    }
    snprintf(buf, cap, "%lld.%03llds", (long long)(ms / 1000), (long long)(ms % 1000));
    return buf;
}

/* Prints who leads (text mode) from the lease row. */
static void print_leader(struct cli_ctx *ctx, struct sl_store *st)
{
    char t[32];
    struct sl_lease lease;

    if (sl_store_lease_get(st, LEASE, &lease, NULL) == 0 && lease.expires_s > ctx->now_s) {
        fprintf(ctx->out, "leader: %s (lease until %s)\n", lease.owner,
                cli_time(lease.expires_s, t));
    }
    else {
        fprintf(ctx->out, "leader: none (no sluice-scheduler holds the lease)\n");
    }
}

static int jobs_list(struct cli_ctx *ctx, int argc, char **argv)
{
    struct sl_job *items = NULL;
    struct sl_store *st = NULL;
    const char *pos[1];
    struct sl_err err;
    size_t n = 0, n_pos = 0;
    bool help = false;
    int rc = cli_args_parse(ctx, argc, argv, NULL, 0, pos, 0, &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    sl_err_clear(&err);
    if (cli_store(ctx, &st, &err) != 0 || sl_store_job_list(st, &items, &n, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    if (ctx->is_json) {
        json_t *arr = json_array();

        for (size_t i = 0; i < n; i++) {
            json_array_append_new(arr, job_json(&items[i]));
        }
        cli_print_json(ctx, arr);
    }
    else {
        fprintf(ctx->out, "%-20s %-16s %-14s %-8s %-20s %-9s %s\n", "NAME", "SCHEDULE", "ZONE",
                "ENABLED", "LAST_RUN", "STATUS", "NEXT_RUN");
        for (size_t i = 0; i < n; i++) {
            const struct sl_job *j = &items[i];
            char last[32], next[32];

            fprintf(ctx->out, "%-20s %-16s %-14s %-8s %-20s %-9s %s%s\n", j->name, j->schedule,
                    j->zone, j->is_enabled ? "yes" : "no", cli_time(j->last_started_s, last),
                    j->last_run_id > 0 ? sl_store_run_status_name(j->last_status) : "-",
                    cli_time(j->next_run_s, next), j->run_requested_s > 0 ? " (run requested)"
                                                                          : "");
        }
        if (n == 0) {
            fprintf(ctx->out, "(no jobs yet: a sluice-scheduler registers them when it "
                              "becomes leader)\n");
        }
        print_leader(ctx, st);
    }
    sl_free(items);
    return CLI_OK;
}

static void print_run_row(struct cli_ctx *ctx, const struct sl_run *r)
{
    char slot[32], started[32], took[32];

    fprintf(ctx->out, "%-6lld %-20s %-8s %-20s %-10s %-9s %-8lld %s%s%s\n", (long long)r->id,
            cli_time(r->slot_s, slot), r->kind, cli_time(r->started_s, started),
            duration(r->duration_ms, took, sizeof(took)), sl_store_run_status_name(r->status),
            (long long)r->rows, r->owner, r->error[0] != '\0' ? "  " : "", r->error);
}

static void print_run_header(struct cli_ctx *ctx)
{
    fprintf(ctx->out, "%-6s %-20s %-8s %-20s %-10s %-9s %-8s %s\n", "ID", "SLOT", "KIND",
            "STARTED", "DURATION", "STATUS", "ROWS", "OWNER  ERROR");
}

/* Polls until the run for (job, slot_s) ended or timeout_s passed. */
static int wait_for_run(struct cli_ctx *ctx, struct sl_store *st, const char *job,
                        int64_t slot_s, int64_t timeout_s, struct sl_run *out,
                        struct sl_err *err)
{
    int64_t waited_ms = 0;

    for (;;) {
        int rc = sl_store_run_find(st, job, slot_s, out, err);

        if (rc == 0 && out->status != SL_RUN_RUNNING) {
            return 0;
        }
        if (rc != 0 && rc != SL_ENOTFOUND) {
            return rc;
        }
        if (waited_ms >= timeout_s * 1000) {
            return sl_err_set(err, SL_ETIMEDOUT, "the run of %s %s within %llds", job,
                              rc == 0 ? "did not end" : "did not start",
                              (long long)timeout_s);
        }
        poll(NULL, 0, WAIT_POLL_MS);
        waited_ms += WAIT_POLL_MS;
    }
}

static int jobs_run(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cli_flag flags[] = {
        {.name = "--wait", .takes_value = false},
        {.name = "--timeout", .takes_value = true},
    };
    struct sl_store *st = NULL;
    struct sl_lease lease;
    struct sl_run run;
    const char *pos[1];
    struct sl_err err;
    size_t n_pos = 0;
    int64_t requested_s = 0;
    int64_t timeout_s = DEFAULT_WAIT_S;
    bool has_leader;
    bool help = false;
    char t[32];
    int rc = cli_args_parse(ctx, argc, argv, flags, 2, pos, 1, &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    if (n_pos != 1) {
        return cli_usage_error(ctx, "jobs", "jobs run needs a job NAME");
    }
    if (flags[1].is_set && cli_parse_int(ctx, "jobs", "--timeout", flags[1].value, 1,
                                         86400, &timeout_s) != CLI_OK) {
        return CLI_USAGE;
    }
    sl_err_clear(&err);
    if (cli_store(ctx, &st, &err) != 0 ||
        sl_store_job_request_run(st, pos[0], ctx->now_s, &requested_s, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    has_leader = sl_store_lease_get(st, LEASE, &lease, NULL) == 0 &&
                 lease.expires_s > ctx->now_s;
    if (!has_leader) {
        fprintf(ctx->err, "sluice: note: no sluice-scheduler holds the lease now; the run "
                          "starts when one leads\n");
    }
    if (!flags[0].is_set) {
        if (ctx->is_json) {
            cli_print_json(ctx, json_pack("{s:s, s:o, s:s?}", "job", pos[0], "requested_at",
                                          cli_json_time(requested_s), "leader",
                                          has_leader ? lease.owner : NULL));
        }
        else {
            fprintf(ctx->out, "requested a run of %s (slot %s)%s%s\n", pos[0],
                    cli_time(requested_s, t), has_leader ? "; leader " : "",
                    has_leader ? lease.owner : "");
        }
        return CLI_OK;
    }
    if (!ctx->is_json) {
        fprintf(ctx->err, "waiting for the run of %s (slot %s)...\n", pos[0],
                cli_time(requested_s, t));
    }
    rc = wait_for_run(ctx, st, pos[0], requested_s, timeout_s, &run, &err);
    if (rc != 0) {
        return cli_fail(ctx, &err);
    }
    if (ctx->is_json) {
        cli_print_json(ctx, run_json(&run));
    }
    else {
        print_run_header(ctx);
        print_run_row(ctx, &run);
    }
    return run.status == SL_RUN_DONE ? CLI_OK : CLI_FAILED;
}

static int jobs_history(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cli_flag flags[] = {{.name = "--limit", .takes_value = true}};
    struct sl_run *runs = NULL;
    struct sl_store *st = NULL;
    struct sl_job job;
    const char *pos[1];
    struct sl_err err;
    size_t n = 0, n_pos = 0;
    int64_t limit = DEFAULT_HISTORY;
    bool help = false;
    int rc = cli_args_parse(ctx, argc, argv, flags, 1, pos, 1, &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    if (n_pos != 1) {
        return cli_usage_error(ctx, "jobs", "jobs history needs a job NAME");
    }
    if (flags[0].is_set && cli_parse_int(ctx, "jobs", "--limit", flags[0].value, 1, 100000,
                                         &limit) != CLI_OK) {
        return CLI_USAGE;
    }
    sl_err_clear(&err);
    if (cli_store(ctx, &st, &err) != 0 ||
        sl_store_run_list(st, pos[0], (size_t)limit, &runs, &n, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    if (n == 0 && sl_store_job_get(st, pos[0], &job, &err) != 0) {
        sl_free(runs);
        return cli_fail(ctx, &err);
    }
    if (ctx->is_json) {
        json_t *arr = json_array();

        for (size_t i = 0; i < n; i++) {
            json_array_append_new(arr, run_json(&runs[i]));
        }
        cli_print_json(ctx, arr);
    }
    else {
        print_run_header(ctx);
        for (size_t i = 0; i < n; i++) {
            print_run_row(ctx, &runs[i]);
        }
    }
    sl_free(runs);
    return CLI_OK;
}

int cli_jobs_main(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {
        {"list", jobs_list}, {"run", jobs_run}, {"history", jobs_history}};

    return cli_dispatch(ctx, "jobs", usage, verbs, sizeof(verbs) / sizeof(verbs[0]), argc, argv);
}

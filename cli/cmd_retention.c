/*
 * sluice retention: what the retention job would delete now (the plan with its counts; a
 * dry run that deletes nothing) and what it deleted (the deletion audit). The plan and the
 * counting are workers/retention/'s; this file parses the command line and prints.
 */
#include <inttypes.h>
#include <string.h>

#include "alloc.h"
#include "cli.h"
#include "retention.h"
#include "store_retention.h"
#include "survey.h"


#define DEFAULT_AUDIT_LIMIT 50

static const char usage[] =
    "usage: sluice retention plan\n"
    "       sluice retention audit [--tenant TENANT] [--state pending|done|failed] "
    "[--limit N]\n"
    "plan shows each tenant's retention (tier, override, downgrade grace, disabled purge)\n"
    "and what the retention job would delete now, counted in ClickHouse and in the cold\n"
    "exports: whole day partitions past the longest retention, then one delete mutation per\n"
    "distinct cutoff. It deletes nothing. audit shows what retention deleted, newest first\n"
    "(default 50 rows). plan reads ClickHouse through SLUICE_CLICKHOUSE_* and the job's\n"
    "SLUICE_JOB_RETENTION_* settings (environment or --config, as sluice-scheduler would\n"
    "see them). All commands take --json.\n";

static const char *cutoff_text(int64_t s, char day[11])
{
    if (s == RETENTION_ALL) {
        return "all";
    }
    return s > 0 ? retention_day_text(s, day) : "-";
}

static json_t *cutoff_json(int64_t s)
{
    char day[11];

    if (s == RETENTION_ALL) {
        return json_string("all");
    }
    return s > 0 ? json_string(retention_day_text(s, day)) : json_null();
}

static const char *item_kind(const struct retention_item *it)
{
    switch (it->kind) {
    case RETENTION_ITEM_PARTITION:
        return "drop_partition";
    case RETENTION_ITEM_GROUP:
        return it->cutoff_s == RETENTION_ALL ? "purge" : "mutation";
    case RETENTION_ITEM_COLD:
        return "cold";
    }
    return "?";
}

static json_t *plan_json(const struct retention_survey *s)
{
    const struct retention_plan *plan = s->plan;
    json_t *tenants = json_array();
    json_t *items = json_array();
    char day[11];

    for (size_t i = 0; i < plan->n_tenants; i++) {
        const struct retention_tenant *t = &plan->tenants[i];

        json_array_append_new(
            tenants,
            json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:s?}", "id", t->id, "name", t->name,
                      "tier", t->tier, "reason", retention_reason_name(t->reason),
                      "retention_days",
                      t->retention_days >= 0 ? json_integer(t->retention_days) : json_null(),
                      "keeps_from", cutoff_json(t->cutoff_s), "grace_until",
                      cli_json_time(t->grace_until_s),
                      "grace_tier", t->grace_tier[0] != '\0' ? t->grace_tier : NULL));
    }
    for (size_t i = 0; i < s->n_items; i++) {
        const struct retention_item *it = &s->items[i];
        json_t *counts = json_array();

        for (size_t k = 0; k < it->n_counts; k++) {
            json_array_append_new(counts, json_pack("{s:s, s:I}", "tenant_id",
                                                    it->counts[k].tenant_id, "rows",
                                                    (json_int_t)it->counts[k].rows));
        }
        json_array_append_new(
            items, json_pack("{s:s, s:s, s:s?, s:o, s:o, s:I, s:I, s:o}", "kind", item_kind(it),
                             "table", it->table, "partition",
                             it->kind == RETENTION_ITEM_PARTITION ? it->partition : NULL,
                             "from", it->from_s > 0 ? cutoff_json(it->from_s) : json_null(),
                             "before", cutoff_json(it->cutoff_s), "rows", (json_int_t)it->rows,
                             "days", (json_int_t)it->days, "tenants", counts));
    }
    return json_pack("{s:o, s:I, s:o, s:I, s:o, s:o}", "now", cli_json_time(plan->now_s),
                     "longest_days", (json_int_t)plan->longest_days, "drop_before",
                     plan->drop_before_s > 0
                         ? json_string(retention_day_text(plan->drop_before_s, day))
                         : json_null(),
                     "rows", (json_int_t)s->rows, "tenants", tenants, "items", items);
}

static void plan_print(struct cli_ctx *ctx, const struct retention_survey *s)
{
    const struct retention_plan *plan = s->plan;
    char day[11], when[32];

    fprintf(ctx->out, "retention plan at %s (a dry run: nothing is deleted)\n",
            cli_time(plan->now_s, when));
    if (plan->drop_before_s > 0) {
        fprintf(ctx->out, "longest retention %" PRId64 " days: whole day partitions before %s "
                "are dropped\n", plan->longest_days,
                retention_day_text(plan->drop_before_s, day));
    }
    else {
        fprintf(ctx->out, "no retention is known (no tier): no partition is dropped\n");
    }
    fprintf(ctx->out, "\n%-20s %-24s %-12s %-10s %-12s %s\n", "TENANT", "NAME", "TIER",
            "RETENTION", "KEEPS_FROM", "WHY");
    for (size_t i = 0; i < plan->n_tenants; i++) {
        const struct retention_tenant *t = &plan->tenants[i];
        char days[24], until[32];

        if (t->retention_days >= 0) {
            snprintf(days, sizeof(days), "%" PRId64 " d", t->retention_days);
        }
        else {
            snprintf(days, sizeof(days), "all");
        }
        fprintf(ctx->out, "%-20s %-24s %-12s %-10s %-12s %s", t->id, t->name, t->tier, days,
                cutoff_text(t->cutoff_s, day), retention_reason_name(t->reason));
        if (t->reason == RETENTION_GRACE) {
            fprintf(ctx->out, " (downgraded from %s; until %s)", t->grace_tier,
                    cli_time(t->grace_until_s, until));
        }
        fputc('\n', ctx->out);
    }
    if (plan->n_tenants == 0) {
        fprintf(ctx->out, "(no tenants)\n");
    }
    fprintf(ctx->out, "\n%-15s %-14s %-10s %-12s %-8s %s\n", "WHAT", "TABLE", "PARTITION",
            "BEFORE", "TENANTS", "ROWS");
    for (size_t i = 0; i < s->n_items; i++) {
        const struct retention_item *it = &s->items[i];
        size_t last = i;
        int64_t rows = it->rows;
        size_t tenants = it->n_counts;

        /* A table's whole partitions on one line ("first..last"); --json lists each. */
        while (it->kind == RETENTION_ITEM_PARTITION && last + 1 < s->n_items &&
               s->items[last + 1].kind == RETENTION_ITEM_PARTITION &&
               strcmp(s->items[last + 1].table, it->table) == 0) {
            last++;
            rows += s->items[last].rows;
            tenants = s->items[last].n_counts > tenants ? s->items[last].n_counts : tenants;
        }
        fprintf(ctx->out, "%-15s %-14s %-10s %-12s %-8zu %" PRId64, item_kind(it), it->table,
                it->kind == RETENTION_ITEM_PARTITION ? it->partition : "-",
                it->kind == RETENTION_ITEM_PARTITION ? "-" : cutoff_text(it->cutoff_s, day),
                tenants, rows);
        if (last > i) {
            fprintf(ctx->out, " (%zu partitions, %s..%s)", last - i + 1, it->partition,
                    s->items[last].partition);
        }
        if (it->kind == RETENTION_ITEM_COLD) {
            fprintf(ctx->out, " (%" PRId64 " days of %s)", it->days, it->counts[0].tenant_id);
        }
        fputc('\n', ctx->out);
        i = last;
    }
    if (s->n_items == 0) {
        fprintf(ctx->out, "(nothing is past retention)\n");
    }
    fprintf(ctx->out, "\ntotal: %" PRId64 " rows would be deleted\n", s->rows);
}


static int retention_plan(struct cli_ctx *ctx, int argc, char **argv)
{
    struct retention_survey *survey = NULL;
    struct retention_policy policy;
    struct sl_store *st = NULL;
    struct sl_ch *ch = NULL;
    const char *pos[1];
    const char *database;
    struct sl_err err;
    size_t n_pos = 0;
    bool help = false;
    int rc = cli_args_parse(ctx, argc, argv, NULL, 0, pos, 0, &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    sl_err_clear(&err);
    retention_policy_from_settings(ctx->retention_settings, &policy);
    database = ctx->ch_settings->database != NULL && ctx->ch_settings->database[0] != '\0'
                   ? ctx->ch_settings->database
                   : "sluice";
    if (cli_store(ctx, &st, &err) != 0 || sl_ch_create(&ch, ctx->ch_settings, &err) != 0 ||
        retention_survey_create(st, ch, database, ctx->now_s, &policy, &survey, &err) != 0) {
        sl_ch_destroy(ch);
        return cli_fail(ctx, &err);
    }
    if (ctx->is_json) {
        cli_print_json(ctx, plan_json(survey));
    }
    else {
        plan_print(ctx, survey);
    }
    retention_survey_destroy(survey);
    sl_ch_destroy(ch);
    return CLI_OK;
}

static json_t *audit_json(const void *record, int64_t now_s)
{
    const struct sl_audit *a = record;

    (void)now_s;
    return json_pack("{s:I, s:o, s:s, s:s?, s:s, s:s, s:o, s:o, s:I, s:s, s:s, s:o}", "id",
                     (json_int_t)a->id, "run_id",
                     a->run_id > 0 ? json_integer(a->run_id) : json_null(), "job", a->job,
                     "tenant_id", a->tenant_id[0] != '\0' ? a->tenant_id : NULL, "table",
                     a->tbl, "method", a->method, "from",
                     a->from_s > 0 ? cutoff_json(a->from_s) : json_null(), "before",
                     cutoff_json(a->cutoff_s), "rows", (json_int_t)a->rows, "state", a->state,
                     "detail", a->detail, "created_at", cli_json_time(a->created_s));
}

static void audit_row(struct cli_ctx *ctx, const void *record)
{
    const struct sl_audit *a = record;
    char when[32], day[11];

    fprintf(ctx->out, "%-6" PRId64 " %-20s %-20s %-14s %-15s %-10s %-10" PRId64 " %-8s %s\n",
            a->id, cli_time(a->created_s, when), a->tenant_id[0] != '\0' ? a->tenant_id : "-",
            a->tbl, a->method, cutoff_text(a->cutoff_s, day), a->rows, a->state, a->detail);
}

static int retention_audit(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cli_flag flags[] = {{.name = "--tenant", .takes_value = true},
                               {.name = "--state", .takes_value = true},
                               {.name = "--limit", .takes_value = true}};
    struct sl_audit *items = NULL;
    struct sl_store *st = NULL;
    struct sl_tenant t;
    const char *tenant = NULL;
    const char *state = NULL;
    int64_t limit = DEFAULT_AUDIT_LIMIT;
    const char *pos[1];
    struct sl_err err;
    size_t n = 0, n_pos = 0;
    bool help = false;
    int rc = cli_args_parse(ctx, argc, argv, flags, 3, pos, 0, &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    if (flags[1].is_set) {
        state = flags[1].value;
        if (strcmp(state, "pending") != 0 && strcmp(state, "done") != 0 &&
            strcmp(state, "failed") != 0) {
            return cli_usage_error(ctx, "retention", "--state must be pending, done or failed");
        }
    }
    if (flags[2].is_set) {
        rc = cli_parse_int(ctx, "retention", "--limit", flags[2].value, 1, 1000000, &limit);
        if (rc != CLI_OK) {
            return rc;
        }
    }
    sl_err_clear(&err);
    if (cli_store(ctx, &st, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    if (flags[0].is_set) {
        /* A tenant's name when the store knows it; its id as given when the tenant is
         * gone (its audit stays). */
        tenant = sl_store_tenant_get(st, flags[0].value, &t, NULL) == 0 ? t.id
                                                                        : flags[0].value;
    }
    if (sl_store_retention_audit_list(st, NULL, state, tenant, (size_t)limit, &items, &n,
                                      &err) != 0) {
        return cli_fail(ctx, &err);
    }
    cli_print_records(ctx, items, n, sizeof(items[0]), audit_json,
                      "ID     CREATED              TENANT               TABLE          "
                      "METHOD          BEFORE     ROWS       STATE    DETAIL",
                      audit_row);
    sl_free(items);
    return CLI_OK;
}

int cli_retention_main(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {
        {"plan", retention_plan},
        {"audit", retention_audit},
    };

    return cli_dispatch(ctx, "retention", usage, verbs, sizeof(verbs) / sizeof(verbs[0]), argc,
                        argv);
}

/* sluice rule: add, list and remove alert rules. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "cli.h"
#include "timefmt.h"

static const char usage[] =
    "usage: sluice rule add --kind KIND --name NAME (--tenant TENANT | --global)\n"
    "                       --channel CHANNEL_ID [--threshold X] [--window 5m]\n"
    "                       [--cooldown 1h] [--disabled]\n"
    "           KIND and its threshold:\n"
    "             error_rate         share of error events in the window, 0..1 (default 0.05)\n"
    "             quota              percent of the monthly quota used (default 80); below\n"
    "                                100 the rule also fires when the quota is used up\n"
    "             ingestion_stopped  no events for the window from a tenant that sent\n"
    "                                some in the look-back (threshold 0)\n"
    "             dlq_growth         dead letters added in the window (default 1; --global)\n"
    "             loader_lag         events the loader stayed behind through the window\n"
    "                                (default 10000; --global)\n"
    "           A global error_rate, quota or ingestion_stopped rule watches every tenant.\n"
    "           --cooldown: no new firing notice sooner than this after the last notice.\n"
    "       sluice rule list [--tenant TENANT]\n"
    "       sluice rule remove RULE_ID\n"
    "A tenant's rule may use that tenant's channels or global ones. All commands take "
    "--json.\n";

static json_t *rule_json(const struct sl_rule *r)
{
    return json_pack("{s:s, s:o, s:s, s:s, s:f, s:I, s:I, s:s, s:b, s:o}", "id", r->id,
                     "tenant_id", r->tenant_id[0] != '\0' ? json_string(r->tenant_id)
                                                          : json_null(),
                     "name", r->name, "kind", r->kind, "threshold", r->threshold, "window_s",
                     (json_int_t)r->window_s, "cooldown_s", (json_int_t)r->cooldown_s,
                     "channel_id", r->channel_id, "enabled", r->is_enabled, "created_at",
                     cli_json_time(r->created_s));
}

static json_t *rule_record_json(const void *record, int64_t now_s)
{
    (void)now_s;
    return rule_json(record);
}

static void rule_row(struct cli_ctx *ctx, const void *record)
{
    const struct sl_rule *r = record;

    fprintf(ctx->out, "%-20s %-20s %-18s %-18s %10g %7llds %8llds %-20s %s\n", r->id,
            r->tenant_id[0] != '\0' ? r->tenant_id : "(global)", r->name, r->kind, r->threshold,
            (long long)r->window_s, (long long)r->cooldown_s, r->channel_id,
            r->is_enabled ? "yes" : "no");
}

static int copy_arg(char *dst, size_t cap, const char *src)
{
    size_t len = strlen(src);

    if (len >= cap) {
        return -1;
    }
    memcpy(dst, src, len + 1);
    return 0;
}

static double default_threshold(const char *kind)
{
    if (strcmp(kind, "error_rate") == 0) {
        return 0.05;
    }
    if (strcmp(kind, "quota") == 0) {
        return 80;
    }
    if (strcmp(kind, "dlq_growth") == 0) {
        return 1;
    }
    if (strcmp(kind, "loader_lag") == 0) {
        return 10000;
    }
    return 0;
}

static int rule_add(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cli_flag flags[] = {
        {.name = "--kind", .takes_value = true},      {.name = "--name", .takes_value = true},
        {.name = "--tenant", .takes_value = true},    {.name = "--global"},
        {.name = "--channel", .takes_value = true},   {.name = "--threshold", .takes_value = true},
        {.name = "--window", .takes_value = true},    {.name = "--cooldown", .takes_value = true},
        {.name = "--disabled"},
    };
    struct sl_rule r = {.window_s = 300, .cooldown_s = 3600, .is_enabled = true};
    struct sl_store *st = NULL;
    struct sl_rule out;
    const char *pos[1];
    struct sl_err err;
    size_t n_pos = 0;
    bool help = false;
    int rc = cli_args_parse(ctx, argc, argv, flags, 9, pos, 0, &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    if (!flags[0].is_set || !flags[1].is_set || !flags[4].is_set) {
        return cli_usage_error(ctx, "rule", "rule add needs --kind, --name and --channel");
    }
    if (flags[2].is_set == flags[3].is_set) {
        return cli_usage_error(ctx, "rule", "give exactly one of --tenant TENANT or --global");
    }
    sl_err_clear(&err);
    if (copy_arg(r.kind, sizeof(r.kind), flags[0].value) != 0 ||
        copy_arg(r.name, sizeof(r.name), flags[1].value) != 0 ||
        copy_arg(r.channel_id, sizeof(r.channel_id), flags[4].value) != 0 ||
        (flags[2].is_set &&
         copy_arg(r.tenant_id, sizeof(r.tenant_id), flags[2].value) != 0)) {
        return cli_usage_error(ctx, "rule", "an argument is too long");
    }
    r.threshold = default_threshold(r.kind);
    if (flags[5].is_set) {
        char *end = NULL;

        errno = 0;
        r.threshold = strtod(flags[5].value, &end);
        if (end == flags[5].value || *end != '\0' || errno != 0 || !isfinite(r.threshold)) {
            return cli_usage_error(ctx, "rule", "--threshold: '%s' is not a number",
                                   flags[5].value);
        }
    }
    if (flags[6].is_set && sl_timefmt_parse_duration(flags[6].value, &r.window_s, &err) != 0) {
        return cli_usage_error(ctx, "rule", "--window: %s", err.msg);
    }
    if (flags[7].is_set && sl_timefmt_parse_duration(flags[7].value, &r.cooldown_s, &err) != 0) {
        return cli_usage_error(ctx, "rule", "--cooldown: %s", err.msg);
    }
    r.is_enabled = !flags[8].is_set;
    if (cli_store(ctx, &st, &err) != 0 || sl_store_rule_add(st, &r, ctx->now_s, &out, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    if (ctx->is_json) {
        cli_print_json(ctx, rule_json(&out));
    }
    else {
        fprintf(ctx->out, "%s\n", out.id);
    }
    return CLI_OK;
}

static int rule_list(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cli_flag flags[] = {{.name = "--tenant", .takes_value = true}};
    struct sl_rule *items = NULL;
    struct sl_store *st = NULL;
    const char *pos[1];
    struct sl_err err;
    size_t n = 0, n_pos = 0;
    bool help = false;
    int rc = cli_args_parse(ctx, argc, argv, flags, 1, pos, 0, &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    sl_err_clear(&err);
    if (cli_store(ctx, &st, &err) != 0 ||
        sl_store_rule_list(st, flags[0].value, &items, &n, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    cli_print_records(ctx, items, n, sizeof(items[0]), rule_record_json,
                      "ID                   TENANT               NAME               KIND          "
                      "      THRESHOLD   WINDOW  COOLDOWN CHANNEL              ENABLED",
                      rule_row);
    sl_free(items);
    return CLI_OK;
}

static int rule_remove(struct cli_ctx *ctx, int argc, char **argv)
{
    struct sl_store *st = NULL;
    const char *pos[1];
    struct sl_err err;
    size_t n_pos = 0;
    bool help = false;
    int rc = cli_args_parse(ctx, argc, argv, NULL, 0, pos, 1, &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    if (n_pos != 1) {
        return cli_usage_error(ctx, "rule", "rule remove needs a RULE_ID");
    }
    sl_err_clear(&err);
    if (cli_store(ctx, &st, &err) != 0 || sl_store_rule_remove(st, pos[0], &err) != 0) {
        return cli_fail(ctx, &err);
    }
    if (ctx->is_json) {
        cli_print_json(ctx, json_pack("{s:s, s:b}", "id", pos[0], "removed", 1));
    }
    else {
        fprintf(ctx->out, "rule %s removed\n", pos[0]);
    }
    return CLI_OK;
}

int cli_rule_main(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {
        {"add", rule_add},
        {"list", rule_list},
        {"remove", rule_remove},
    };

    return cli_dispatch(ctx, "rule", usage, verbs, sizeof(verbs) / sizeof(verbs[0]), argc, argv);
}

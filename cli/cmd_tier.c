/* sluice tier: list and set the tiers tenants are on. */
#include <string.h>

#include "alloc.h"
#include "cli.h"

static const char usage[] =
    "usage: sluice tier list\n"
    "       sluice tier set NAME [--retention-days N] [--compress-after-hours N]\n"
    "                            [--rate-limit N] [--burst N] [--monthly-quota N]\n"
    "                            [--enrichment on|off] [--reenrich-days N]\n"
    "A new tier starts as a copy of 'free'. --compress-after-hours 0 means never compress;\n"
    "--monthly-quota 0 means unlimited; --reenrich-days is how far back the enrichment job\n"
    "redoes rows after the GeoIP/user-agent data changed (0: never). All commands take --json.\n";

static json_t *tier_json(const struct sl_tier *t)
{
    return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:b, s:I, s:o, s:o}", "name", t->name,
                     "retention_days", (json_int_t)t->retention_days, "compress_after_hours",
                     (json_int_t)t->compress_after_hours, "rate_limit_eps",
                     (json_int_t)t->rate_limit_eps, "burst", (json_int_t)t->burst,
                     "monthly_quota", (json_int_t)t->monthly_quota, "enrichment",
                     t->has_enrichment, "reenrich_days", (json_int_t)t->reenrich_days,
                     "created_at", cli_json_time(t->created_s),
                     "updated_at", cli_json_time(t->updated_s));
}

static const char header[] =
    "NAME         RETENTION COMPRESS_AFTER RATE_LIMIT    BURST MONTHLY_QUOTA ENRICHMENT "
    "REENRICH";

static json_t *tier_record_json(const void *record, int64_t now_s)
{
    (void)now_s;
    return tier_json(record);
}

static void print_row(struct cli_ctx *ctx, const void *record)
{
    const struct sl_tier *t = record;
    char compress[24];

    if (t->compress_after_hours == 0) {
        snprintf(compress, sizeof(compress), "never");
    }
    else {
        snprintf(compress, sizeof(compress), "%lldh", (long long)t->compress_after_hours);
    }
    fprintf(ctx->out, "%-12s %8lldd %14s %8lld/s %8lld %13lld %-10s %lldd\n", t->name,
            (long long)t->retention_days, compress, (long long)t->rate_limit_eps,
            (long long)t->burst, (long long)t->monthly_quota, t->has_enrichment ? "on" : "off",
            (long long)t->reenrich_days);
}

static int tier_list(struct cli_ctx *ctx, int argc, char **argv)
{
    struct sl_tier *items = NULL;
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
    if (cli_store(ctx, &st, &err) != 0 || sl_store_tier_list(st, &items, &n, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    cli_print_records(ctx, items, n, sizeof(items[0]), tier_record_json, header, print_row);
    sl_free(items);
    return CLI_OK;
}

static int tier_set(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cli_flag flags[] = {
        {.name = "--retention-days", .takes_value = true},
        {.name = "--compress-after-hours", .takes_value = true},
        {.name = "--rate-limit", .takes_value = true},
        {.name = "--burst", .takes_value = true},
        {.name = "--monthly-quota", .takes_value = true},
        {.name = "--enrichment", .takes_value = true},
        {.name = "--reenrich-days", .takes_value = true},
    };
    int64_t *fields[5];
    struct sl_store *st = NULL;
    struct sl_tier t;
    const char *pos[1];
    struct sl_err err;
    size_t n_pos = 0;
    bool help = false;
    int rc = cli_args_parse(ctx, argc, argv, flags, sizeof(flags) / sizeof(flags[0]), pos, 1,
                            &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    if (n_pos != 1) {
        return cli_usage_error(ctx, "tier", "tier set needs a NAME");
    }
    sl_err_clear(&err);
    if (cli_store(ctx, &st, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    rc = sl_store_tier_get(st, pos[0], &t, &err);
    if (rc == SL_ENOTFOUND) {
        rc = sl_store_tier_get(st, "free", &t, &err);
        if (rc == 0 && strlen(pos[0]) >= sizeof(t.name)) {
            return cli_usage_error(ctx, "tier", "tier name is longer than %zu characters",
                                   sizeof(t.name) - 1);
        }
        snprintf(t.name, sizeof(t.name), "%s", pos[0]);
    }
    if (rc != 0) {
        return cli_fail(ctx, &err);
    }
    fields[0] = &t.retention_days;
    fields[1] = &t.compress_after_hours;
    fields[2] = &t.rate_limit_eps;
    fields[3] = &t.burst;
    fields[4] = &t.monthly_quota;
    for (size_t i = 0; i < 5; i++) {
        if (flags[i].is_set &&
            cli_parse_int(ctx, "tier", flags[i].name, flags[i].value, 0, INT64_MAX / 2,
                          fields[i]) != CLI_OK) {
            return CLI_USAGE;
        }
    }
    if (flags[5].is_set) {
        if (strcmp(flags[5].value, "on") == 0) {
            t.has_enrichment = true;
        }
        else if (strcmp(flags[5].value, "off") == 0) {
            t.has_enrichment = false;
        }
        else {
            return cli_usage_error(ctx, "tier", "--enrichment takes on or off, not '%s'",
                                   flags[5].value);
        }
    }
    if (flags[6].is_set && cli_parse_int(ctx, "tier", flags[6].name, flags[6].value, 0, 36500,
                                         &t.reenrich_days) != CLI_OK) {
        return CLI_USAGE;
    }
    if (sl_store_tier_put(st, &t, ctx->now_s, &err) != 0 ||
        sl_store_tier_get(st, t.name, &t, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    if (ctx->is_json) {
        cli_print_json(ctx, tier_json(&t));
    }
    else {
        fprintf(ctx->out, "%s\n", header);
        print_row(ctx, &t);
    }
    return CLI_OK;
}

int cli_tier_main(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {{"list", tier_list}, {"set", tier_set}};

    return cli_dispatch(ctx, "tier", usage, verbs, sizeof(verbs) / sizeof(verbs[0]), argc, argv);
}

/* sluice tenant: create, list, show, set-tier, set-limits, disable, enable. */
#include <string.h>

#include "alloc.h"
#include "cli.h"

static const char usage[] =
    "usage: sluice tenant create NAME [--tier TIER]     create a tenant; prints its id\n"
    "       sluice tenant list                          every tenant\n"
    "       sluice tenant show TENANT                   one tenant with its effective limits\n"
    "       sluice tenant set-tier TENANT TIER          move a tenant to another tier\n"
    "       sluice tenant set-limits TENANT [--rate-limit N|tier] [--burst N|tier]\n"
    "                                [--retention-days N|tier]   per-tenant overrides\n"
    "       sluice tenant disable TENANT                its keys stop working at once\n"
    "       sluice tenant enable TENANT\n"
    "       sluice tenant set-bots TENANT drop|flag     drop bot events at the edge, or only\n"
    "                                                   flag them (is_bot; the default)\n"
    "TENANT is a tenant's id (tn_...) or name. New tenants default to tier 'free'.\n"
    "All commands take --json.\n";

static json_t *tenant_json(const struct sl_tenant *t)
{
    json_t *obj = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o}", "id", t->id, "name", t->name,
                            "tier", t->tier, "status", t->is_disabled ? "disabled" : "active",
                            "disabled_at", cli_json_time(t->disabled_s), "created_at",
                            cli_json_time(t->created_s), "updated_at",
                            cli_json_time(t->updated_s));

    if (obj == NULL) {
        return NULL;
    }
    json_object_set_new(obj, "previous_tier",
                        t->previous_tier[0] != '\0' ? json_string(t->previous_tier) : json_null());
    json_object_set_new(obj, "tier_changed_at", cli_json_time(t->tier_changed_s));
    json_object_set_new(obj, "bots", json_string(t->drop_bots ? "drop" : "flag"));
    json_object_set_new(obj, "rate_limit_override",
                        t->rate_limit_override >= 0 ? json_integer(t->rate_limit_override)
                                                    : json_null());
    json_object_set_new(obj, "burst_override",
                        t->burst_override >= 0 ? json_integer(t->burst_override) : json_null());
    json_object_set_new(obj, "retention_days_override",
                        t->retention_days_override >= 0
                            ? json_integer(t->retention_days_override)
                            : json_null());
    return obj;
}

static json_t *tenant_record_json(const void *record, int64_t now_s)
{
    (void)now_s;
    return tenant_json(record);
}

static void tenant_row(struct cli_ctx *ctx, const void *record)
{
    const struct sl_tenant *t = record;
    char buf[32];

    fprintf(ctx->out, "%-20s %-24s %-12s %-9s %s\n", t->id, t->name, t->tier,
            t->is_disabled ? "disabled" : "active", cli_time(t->created_s, buf));
}

static int tenant_create(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cli_flag flags[] = {{.name = "--tier", .takes_value = true}};
    struct sl_store *st = NULL;
    struct sl_tenant t;
    const char *pos[1];
    struct sl_err err;
    size_t n_pos = 0;
    bool help = false;
    int rc = cli_args_parse(ctx, argc, argv, flags, 1, pos, 1, &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    if (n_pos != 1) {
        return cli_usage_error(ctx, "tenant", "tenant create needs a NAME");
    }
    sl_err_clear(&err);
    if (cli_store(ctx, &st, &err) != 0 ||
        sl_store_tenant_create(st, pos[0], flags[0].is_set ? flags[0].value : "free",
                               ctx->now_s, &t, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    if (ctx->is_json) {
        cli_print_json(ctx, tenant_json(&t));
    }
    else {
        fprintf(ctx->out, "%s\n", t.id);
    }
    return CLI_OK;
}

static int tenant_list(struct cli_ctx *ctx, int argc, char **argv)
{
    struct sl_tenant *items = NULL;
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
    if (cli_store(ctx, &st, &err) != 0 || sl_store_tenant_list(st, &items, &n, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    cli_print_records(ctx, items, n, sizeof(items[0]), tenant_record_json,
                      "ID                   NAME                     TIER         STATUS    CREATED",
                      tenant_row);
    sl_free(items);
    return CLI_OK;
}

static int tenant_show(struct cli_ctx *ctx, int argc, char **argv)
{
    struct sl_key *keys = NULL;
    struct sl_store *st = NULL;
    struct sl_tenant t;
    struct sl_tier tier;
    const char *pos[1];
    struct sl_err err;
    size_t n_keys = 0, n_pos = 0, n_active = 0;
    bool help = false;
    int64_t rate, burst, retention;
    int rc = cli_args_parse(ctx, argc, argv, NULL, 0, pos, 1, &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    if (n_pos != 1) {
        return cli_usage_error(ctx, "tenant", "tenant show needs a TENANT");
    }
    sl_err_clear(&err);
    if (cli_store(ctx, &st, &err) != 0 || sl_store_tenant_get(st, pos[0], &t, &err) != 0 ||
        sl_store_tier_get(st, t.tier, &tier, &err) != 0 ||
        sl_store_key_list(st, t.id, &keys, &n_keys, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    for (size_t i = 0; i < n_keys; i++) {
        if (keys[i].revoked_s == 0 && (keys[i].expires_s == 0 || keys[i].expires_s > ctx->now_s)) {
            n_active++;
        }
    }
    sl_free(keys);
    rate = t.rate_limit_override >= 0 ? t.rate_limit_override : tier.rate_limit_eps;
    burst = t.burst_override >= 0 ? t.burst_override : tier.burst;
    retention = t.retention_days_override >= 0 ? t.retention_days_override : tier.retention_days;
    if (ctx->is_json) {
        json_t *obj = tenant_json(&t);

        json_object_set_new(obj, "effective",
                            json_pack("{s:I, s:I, s:I, s:I, s:I, s:b}", "rate_limit_eps",
                                      (json_int_t)rate, "burst", (json_int_t)burst,
                                      "retention_days", (json_int_t)retention,
                                      "compress_after_hours",
                                      (json_int_t)tier.compress_after_hours, "monthly_quota",
                                      (json_int_t)tier.monthly_quota, "enrichment",
                                      tier.has_enrichment));
        json_object_set_new(obj, "active_keys", json_integer((json_int_t)n_active));
        cli_print_json(ctx, obj);
    }
    else {
        char buf[32];

        fprintf(ctx->out, "id:             %s\n", t.id);
        fprintf(ctx->out, "name:           %s\n", t.name);
        if (t.previous_tier[0] != '\0') {
            fprintf(ctx->out, "tier:           %s (was %s until %s)\n", t.tier,
                    t.previous_tier, cli_time(t.tier_changed_s, buf));
        }
        else {
            fprintf(ctx->out, "tier:           %s\n", t.tier);
        }
        fprintf(ctx->out, "status:         %s\n", t.is_disabled ? "disabled" : "active");
        fprintf(ctx->out, "created:        %s\n", cli_time(t.created_s, buf));
        fprintf(ctx->out, "rate limit:     %lld events/s%s\n", (long long)rate,
                t.rate_limit_override >= 0 ? " (override)" : "");
        fprintf(ctx->out, "burst:          %lld events%s\n", (long long)burst,
                t.burst_override >= 0 ? " (override)" : "");
        fprintf(ctx->out, "retention:      %lld days%s\n", (long long)retention,
                t.retention_days_override >= 0 ? " (override)" : "");
        if (tier.compress_after_hours == 0) {
            fprintf(ctx->out, "compress after: never\n");
        }
        else {
            fprintf(ctx->out, "compress after: %lld hours\n",
                    (long long)tier.compress_after_hours);
        }
        fprintf(ctx->out, "monthly quota:  %lld events%s\n", (long long)tier.monthly_quota,
                tier.monthly_quota == 0 ? " (unlimited)" : "");
        fprintf(ctx->out, "active keys:    %zu\n", n_active);
    }
    return CLI_OK;
}

static int tenant_set_tier(struct cli_ctx *ctx, int argc, char **argv)
{
    struct sl_store *st = NULL;
    struct sl_tenant before;
    const char *pos[2];
    struct sl_err err;
    size_t n_pos = 0;
    bool help = false;
    int rc = cli_args_parse(ctx, argc, argv, NULL, 0, pos, 2, &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    if (n_pos != 2) {
        return cli_usage_error(ctx, "tenant", "tenant set-tier needs TENANT and TIER");
    }
    sl_err_clear(&err);
    if (cli_store(ctx, &st, &err) != 0 || sl_store_tenant_get(st, pos[0], &before, &err) != 0 ||
        sl_store_tenant_set_tier(st, pos[0], pos[1], ctx->now_s, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    if (ctx->is_json) {
        struct sl_tenant after;

        if (sl_store_tenant_get(st, pos[0], &after, &err) != 0) {
            return cli_fail(ctx, &err);
        }
        cli_print_json(ctx, tenant_json(&after));
    }
    else {
        fprintf(ctx->out, "tenant %s: tier %s -> %s\n", before.name, before.tier, pos[1]);
    }
    return CLI_OK;
}

/* Parses "N" or "tier" (clear the override) for set-limits. */
static int parse_limit(struct cli_ctx *ctx, const struct cli_flag *f, int64_t max, int64_t *out)
{
    if (!f->is_set) {
        return CLI_OK;
    }
    if (strcmp(f->value, "tier") == 0) {
        *out = -1;
        return CLI_OK;
    }
    return cli_parse_int(ctx, "tenant", f->name, f->value, 1, max, out);
}

static int tenant_set_limits(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cli_flag flags[] = {
        {.name = "--rate-limit", .takes_value = true},
        {.name = "--burst", .takes_value = true},
        {.name = "--retention-days", .takes_value = true},
    };
    struct sl_store *st = NULL;
    struct sl_tenant t;
    const char *pos[1];
    struct sl_err err;
    size_t n_pos = 0;
    bool help = false;
    int64_t rate, burst, retention;
    int rc = cli_args_parse(ctx, argc, argv, flags, 3, pos, 1, &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    if (n_pos != 1) {
        return cli_usage_error(ctx, "tenant", "tenant set-limits needs a TENANT");
    }
    sl_err_clear(&err);
    if (cli_store(ctx, &st, &err) != 0 || sl_store_tenant_get(st, pos[0], &t, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    rate = t.rate_limit_override;
    burst = t.burst_override;
    retention = t.retention_days_override;
    if (parse_limit(ctx, &flags[0], 100000000, &rate) != CLI_OK ||
        parse_limit(ctx, &flags[1], 1000000000, &burst) != CLI_OK ||
        parse_limit(ctx, &flags[2], 36500, &retention) != CLI_OK) {
        return CLI_USAGE;
    }
    if (sl_store_tenant_set_limits(st, t.id, rate, burst, retention, ctx->now_s, &err) != 0 ||
        sl_store_tenant_get(st, t.id, &t, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    if (ctx->is_json) {
        cli_print_json(ctx, tenant_json(&t));
    }
    else {
        fprintf(ctx->out, "tenant %s: limits updated (see `sluice tenant show %s`)\n", t.name,
                t.name);
    }
    return CLI_OK;
}

static int set_disabled(struct cli_ctx *ctx, int argc, char **argv, bool disabled)
{
    struct sl_store *st = NULL;
    struct sl_tenant t;
    const char *pos[1];
    struct sl_err err;
    size_t n_pos = 0;
    bool help = false;
    int rc = cli_args_parse(ctx, argc, argv, NULL, 0, pos, 1, &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    if (n_pos != 1) {
        return cli_usage_error(ctx, "tenant", "tenant %s needs a TENANT", argv[0]);
    }
    sl_err_clear(&err);
    if (cli_store(ctx, &st, &err) != 0 ||
        sl_store_tenant_set_disabled(st, pos[0], disabled, ctx->now_s, &err) != 0 ||
        sl_store_tenant_get(st, pos[0], &t, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    if (ctx->is_json) {
        cli_print_json(ctx, tenant_json(&t));
    }
    else {
        fprintf(ctx->out, "tenant %s: %s\n", t.name, disabled ? "disabled" : "enabled");
    }
    return CLI_OK;
}

static int tenant_disable(struct cli_ctx *ctx, int argc, char **argv)
{
    return set_disabled(ctx, argc, argv, true);
}

static int tenant_enable(struct cli_ctx *ctx, int argc, char **argv)
{
    return set_disabled(ctx, argc, argv, false);
}

static int tenant_set_bots(struct cli_ctx *ctx, int argc, char **argv)
{
    struct sl_store *st = NULL;
    struct sl_tenant t;
    const char *pos[2];
    struct sl_err err;
    size_t n_pos = 0;
    bool help = false, drop;
    int rc = cli_args_parse(ctx, argc, argv, NULL, 0, pos, 2, &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    if (n_pos != 2 || (strcmp(pos[1], "drop") != 0 && strcmp(pos[1], "flag") != 0)) {
        return cli_usage_error(ctx, "tenant", "tenant set-bots needs TENANT and drop or flag");
    }
    drop = strcmp(pos[1], "drop") == 0;
    sl_err_clear(&err);
    if (cli_store(ctx, &st, &err) != 0 ||
        sl_store_tenant_set_drop_bots(st, pos[0], drop, ctx->now_s, &err) != 0 ||
        sl_store_tenant_get(st, pos[0], &t, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    if (ctx->is_json) {
        cli_print_json(ctx, tenant_json(&t));
    }
    else {
        fprintf(ctx->out, "tenant %s: bots are %s\n", t.name,
                drop ? "dropped at the edge" : "flagged (is_bot), not dropped");
    }
    return CLI_OK;
}

int cli_tenant_main(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {
        {"create", tenant_create},         {"list", tenant_list},
        {"show", tenant_show},             {"set-tier", tenant_set_tier},
        {"set-limits", tenant_set_limits}, {"disable", tenant_disable},
        {"enable", tenant_enable},         {"set-bots", tenant_set_bots},
    };

    return cli_dispatch(ctx, "tenant", usage, verbs, sizeof(verbs) / sizeof(verbs[0]), argc,
                        argv);
}

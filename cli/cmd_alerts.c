/*
 * sluice alerts: what the notify job raised and delivered, read from the tenant store.
 * list shows open alerts and those resolved recently, history every alert newest first,
 * deliveries the notification queue with each delivery's last attempt (and with --attempts
 * every attempt of the log).
 */
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "cli.h"
#include "store_notify.h"
#include "timefmt.h"

int cli_alerts_main(struct cli_ctx *ctx, int argc, char **argv);

static const char usage[] =
    "usage: sluice alerts list [--tenant TENANT] [--rule RULE_ID] [--since 24h]\n"
    "       sluice alerts history [--tenant TENANT] [--rule RULE_ID] [--limit N]\n"
    "       sluice alerts deliveries [--alert ALERT_ID] [--channel CHANNEL_ID] [--limit N]\n"
    "                                [--attempts]\n"
    "list shows firing alerts and those resolved within --since (default 24h); history\n"
    "every alert, newest first (default 50); deliveries the notifications queued for\n"
    "channels with their status and last attempt (--attempts: every attempt). All commands\n"
    "take --json.\n";

static json_t *alert_json(const void *record, int64_t now_s)
{
    const struct sl_alert *a = record;

    (void)now_s;
    return json_pack("{s:I, s:s, s:s, s:s, s:o, s:s, s:s, s:f, s:f, s:I, s:s, s:b, s:o, s:o, "
                     "s:o}",
                     "id", (json_int_t)a->id, "rule_id", a->rule_id, "rule_name", a->rule_name,
                     "kind", a->kind, "tenant_id",
                     a->tenant_id[0] != '\0' ? json_string(a->tenant_id) : json_null(),
                     "subject", a->subject, "state", a->is_firing ? "firing" : "resolved",
                     "value", a->value, "threshold", a->threshold, "window_s",
                     (json_int_t)a->window_s, "message", a->message, "notified",
                     a->is_notified, "fired_at", cli_json_time(a->fired_s), "resolved_at",
                     cli_json_time(a->resolved_s), "resolved_value",
                     a->resolved_s > 0 ? json_real(a->resolved_value) : json_null());
}

static void alert_row(struct cli_ctx *ctx, const void *record)
{
    const struct sl_alert *a = record;
    char fired[32], resolved[32];

    fprintf(ctx->out, "%-6lld %-9s %-18s %-20s %-26s %10g %10g %-20s %-20s %s\n",
            (long long)a->id, a->is_firing ? "firing" : "resolved", a->kind, a->rule_id,
            a->subject[0] != '\0' ? a->subject : "-", a->value, a->threshold,
            cli_time(a->fired_s, fired), cli_time(a->resolved_s, resolved),
            a->is_notified ? "yes" : "held");
}

#define ALERT_HEADER                                                                      \
    "ID     STATE     KIND               RULE                 SUBJECT                    " \
    "     VALUE  THRESHOLD FIRED                RESOLVED             NOTIFIED"

static int resolve_tenant(struct cli_ctx *ctx, struct sl_store *st, const char *name,
                          char id[SL_STORE_ID_MAX], struct sl_err *err)
{
    struct sl_tenant t;
    int rc;

    (void)ctx;
    id[0] = '\0';
    if (name == NULL) {
        return 0;
    }
    rc = sl_store_tenant_get(st, name, &t, err);
    if (rc == 0) {
        memcpy(id, t.id, sizeof(t.id));
    }
    return rc;
}

static int list_alerts(struct cli_ctx *ctx, int argc, char **argv, bool is_history)
{
    struct cli_flag flags[] = {
        {.name = "--tenant", .takes_value = true},
        {.name = "--rule", .takes_value = true},
        {.name = "--since", .takes_value = true},
        {.name = "--limit", .takes_value = true},
    };
    struct sl_alert_filter f = {.is_open_only = !is_history, .limit = is_history ? 50 : 1000};
    char tenant_id[SL_STORE_ID_MAX];
    struct sl_alert *items = NULL;
    struct sl_store *st = NULL;
    int64_t since_s = 86400, limit = 0;
    const char *pos[1];
    struct sl_err err;
    size_t n = 0, n_pos = 0;
    bool help = false;
    int rc = cli_args_parse(ctx, argc, argv, flags, 4, pos, 0, &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    sl_err_clear(&err);
    if (flags[2].is_set) {
        if (is_history) {
            return cli_usage_error(ctx, "alerts", "--since is for alerts list");
        }
        if (sl_timefmt_parse_duration(flags[2].value, &since_s, &err) != 0) {
            return cli_usage_error(ctx, "alerts", "--since: %s", err.msg);
        }
    }
    if (flags[3].is_set) {
        if (!is_history) {
            return cli_usage_error(ctx, "alerts", "--limit is for alerts history");
        }
        rc = cli_parse_int(ctx, "alerts", "--limit", flags[3].value, 1, 100000, &limit);
        if (rc != CLI_OK) {
            return rc;
        }
        f.limit = (size_t)limit;
    }
    f.since_s = ctx->now_s - since_s;
    f.rule_id = flags[1].value;
    if (cli_store(ctx, &st, &err) != 0 ||
        resolve_tenant(ctx, st, flags[0].value, tenant_id, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    f.tenant_id = tenant_id;
    if (sl_store_alert_list(st, &f, &items, &n, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    cli_print_records(ctx, items, n, sizeof(items[0]), alert_json, ALERT_HEADER, alert_row);
    if (!ctx->is_json && n == 0) {
        fprintf(ctx->out, is_history ? "(no alerts yet)\n" : "(no open or recent alerts)\n");
    }
    sl_free(items);
    return CLI_OK;
}

static int alerts_list(struct cli_ctx *ctx, int argc, char **argv)
{
    return list_alerts(ctx, argc, argv, false);
}

static int alerts_history(struct cli_ctx *ctx, int argc, char **argv)
{
    return list_alerts(ctx, argc, argv, true);
}

static json_t *attempt_json(const struct sl_delivery_attempt *a)
{
    return json_pack("{s:I, s:o, s:I, s:s, s:o, s:s?}", "attempt", (json_int_t)a->attempt,
                     "started_at", cli_json_time(a->started_s), "duration_ms",
                     (json_int_t)a->duration_ms, "status", a->status, "http_status",
                     a->http_status > 0 ? json_integer(a->http_status) : json_null(), "error",
                     a->error[0] != '\0' ? a->error : NULL);
}

static json_t *delivery_json(const struct sl_delivery *d)
{
    return json_pack("{s:I, s:o, s:s, s:s, s:s, s:I, s:o, s:o, s:o, s:s?, s:o, s:o}", "id",
                     (json_int_t)d->id, "alert_id",
                     d->alert_id > 0 ? json_integer(d->alert_id) : json_null(), "channel_id",
                     d->channel_id, "event", d->event, "status", d->status, "attempts",
                     (json_int_t)d->attempts, "next_attempt_at",
                     strcmp(d->status, "pending") == 0 ? cli_json_time(d->next_attempt_s)
                                                       : json_null(),
                     "deadline_at", cli_json_time(d->deadline_s), "http_status",
                     d->http_status > 0 ? json_integer(d->http_status) : json_null(), "error",
                     d->error[0] != '\0' ? d->error : NULL, "created_at",
                     cli_json_time(d->created_s), "updated_at", cli_json_time(d->updated_s));
}

static int alerts_deliveries(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cli_flag flags[] = {
        {.name = "--alert", .takes_value = true},
        {.name = "--channel", .takes_value = true},
        {.name = "--limit", .takes_value = true},
        {.name = "--attempts"},
    };
    struct sl_delivery *items = NULL;
    struct sl_store *st = NULL;
    int64_t alert_id = 0, limit = 50;
    json_t *arr = NULL;
    const char *pos[1];
    struct sl_err err;
    size_t n = 0, n_pos = 0;
    bool help = false;
    int rc = cli_args_parse(ctx, argc, argv, flags, 4, pos, 0, &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    if (flags[0].is_set) {
        rc = cli_parse_int(ctx, "alerts", "--alert", flags[0].value, 1, INT64_MAX, &alert_id);
    }
    if (rc == CLI_OK && flags[2].is_set) {
        rc = cli_parse_int(ctx, "alerts", "--limit", flags[2].value, 1, 100000, &limit);
    }
    if (rc != CLI_OK) {
        return rc;
    }
    sl_err_clear(&err);
    if (cli_store(ctx, &st, &err) != 0 ||
        sl_store_delivery_list(st, alert_id, flags[1].value, (size_t)limit, &items, &n,
                               &err) != 0) {
        return cli_fail(ctx, &err);
    }
    if (ctx->is_json) {
        arr = json_array();
    }
    else {
        fprintf(ctx->out, "%-6s %-6s %-20s %-9s %-8s %8s %6s %-20s %s\n", "ID", "ALERT",
                "CHANNEL", "EVENT", "STATUS", "ATTEMPTS", "HTTP", "UPDATED", "ERROR");
    }
    for (size_t i = 0; rc == CLI_OK && i < n; i++) {
        const struct sl_delivery *d = &items[i];
        struct sl_delivery_attempt *att = NULL;
        size_t n_att = 0;
        char t[32], alert[24];

        snprintf(alert, sizeof(alert), "%lld", (long long)d->alert_id);
        if (flags[3].is_set && sl_store_delivery_attempts(st, d->id, &att, &n_att, &err) != 0) {
            rc = cli_fail(ctx, &err);
            break;
        }
        if (arr != NULL) {
            json_t *obj = delivery_json(d);

            if (flags[3].is_set) {
                json_t *list = json_array();

                for (size_t k = 0; k < n_att; k++) {
                    json_array_append_new(list, attempt_json(&att[k]));
                }
                json_object_set_new(obj, "attempt_log", list);
            }
            json_array_append_new(arr, obj);
        }
        else {
            fprintf(ctx->out, "%-6lld %-6s %-20s %-9s %-8s %8lld %6lld %-20s %s\n",
                    (long long)d->id, d->alert_id > 0 ? alert : "test", d->channel_id, d->event,
                    d->status, (long long)d->attempts, (long long)d->http_status,
                    cli_time(d->updated_s, t), d->error[0] != '\0' ? d->error : "-");
            for (size_t k = 0; k < n_att; k++) {
                fprintf(ctx->out, "         attempt %lld at %s: %s in %lld ms%s%s\n",
                        (long long)att[k].attempt, cli_time(att[k].started_s, t),
                        att[k].status, (long long)att[k].duration_ms,
                        att[k].error[0] != '\0' ? ": " : "", att[k].error);
            }
        }
        sl_free(att);
    }
    if (arr != NULL) {
        if (rc == CLI_OK) {
            cli_print_json(ctx, arr);
        }
        else {
            json_decref(arr);
        }
    }
    sl_free(items);
    return rc;
}

int cli_alerts_main(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {
        {"list", alerts_list},
        {"history", alerts_history},
        {"deliveries", alerts_deliveries},
    };

    return cli_dispatch(ctx, "alerts", usage, verbs, sizeof(verbs) / sizeof(verbs[0]), argc,
                        argv);
}

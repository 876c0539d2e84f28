/* sluice channel: add, list, remove and test alert channels. */
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <string.h>

#include "alloc.h"
#include "cli.h"
#include "notify.h"


static const char usage[] =
    "usage: sluice channel add --kind KIND --name NAME (--tenant TENANT | --global)\n"
    "                          [--url URL] [--to ADDRESSES] [--secret SECRET]\n"
    "           KIND is log, webhook, slack, discord or email. webhook/slack/discord need\n"
    "           --url; email needs --to a@x.org,b@y.org; a webhook gets a generated\n"
    "           signing secret (printed once) unless --secret is given. Prints the id.\n"
    "       sluice channel list [--tenant TENANT]\n"
    "       sluice channel remove CHANNEL_ID\n"
    "       sluice channel test CHANNEL_ID [--retries N]\n"
    "           sends a test notification now and prints the outcome (exit 1 unless it\n"
    "           was delivered); --retries repeats a failed attempt after the backoff of\n"
    "           SLUICE_JOB_NOTIFY_RETRY_BASE_S. Uses SLUICE_SMTP_* and\n"
    "           SLUICE_JOB_NOTIFY_* (environment or --config).\n"
    "All commands take --json.\n";

static json_t *channel_json(const struct sl_channel *c)
{
    return json_pack("{s:s, s:o, s:s, s:s, s:s, s:b, s:o}", "id", c->id, "tenant_id",
                     c->tenant_id[0] != '\0' ? json_string(c->tenant_id) : json_null(), "name",
                     c->name, "kind", c->kind, "target", c->target, "has_secret",
                     c->has_secret, "created_at", cli_json_time(c->created_s));
}

static json_t *channel_record_json(const void *record, int64_t now_s)
{
    (void)now_s;
    return channel_json(record);
}

static void channel_row(struct cli_ctx *ctx, const void *record)
{
    const struct sl_channel *c = record;

    fprintf(ctx->out, "%-20s %-20s %-20s %-8s %s\n", c->id,
            c->tenant_id[0] != '\0' ? c->tenant_id : "(global)", c->name, c->kind,
            c->target[0] != '\0' ? c->target : "-");
}

static int make_secret(char out[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[32];

    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        return -1;
    }
    for (size_t i = 0; i < sizeof(raw); i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[64] = '\0';
    OPENSSL_cleanse(raw, sizeof(raw));
    return 0;
}

static int channel_add(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cli_flag flags[] = {
        {.name = "--kind", .takes_value = true},   {.name = "--name", .takes_value = true},
        {.name = "--tenant", .takes_value = true}, {.name = "--global"},
        {.name = "--url", .takes_value = true},    {.name = "--to", .takes_value = true},
        {.name = "--secret", .takes_value = true},
    };
    char generated[65] = "";
    const char *secret = NULL;
    const char *target = "";
    struct sl_store *st = NULL;
    struct sl_channel c;
    const char *pos[1];
    struct sl_err err;
    size_t n_pos = 0;
    bool help = false;
    int rc = cli_args_parse(ctx, argc, argv, flags, 7, pos, 0, &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    if (!flags[0].is_set || !flags[1].is_set) {
        return cli_usage_error(ctx, "channel", "channel add needs --kind and --name");
    }
    if (flags[2].is_set == flags[3].is_set) {
        return cli_usage_error(ctx, "channel", "give exactly one of --tenant TENANT or --global");
    }
    if (flags[4].is_set && flags[5].is_set) {
        return cli_usage_error(ctx, "channel", "give --url or --to, not both");
    }
    if (flags[4].is_set) {
        target = flags[4].value;
    }
    else if (flags[5].is_set) {
        target = flags[5].value;
    }
    if (strcmp(flags[0].value, "email") == 0 && flags[4].is_set) {
        return cli_usage_error(ctx, "channel", "an email channel takes --to, not --url");
    }
    if (strcmp(flags[0].value, "email") != 0 && flags[5].is_set) {
        return cli_usage_error(ctx, "channel", "--to is for email channels; use --url");
    }
    secret = flags[6].value;
    if (secret == NULL && strcmp(flags[0].value, "webhook") == 0) {
        if (make_secret(generated) != 0) {
            sl_err_set(&err, SL_EIO, "the system random generator failed");
            return cli_fail(ctx, &err);
        }
        secret = generated;
    }
    sl_err_clear(&err);
    if (cli_store(ctx, &st, &err) != 0 ||
        sl_store_channel_add(st, flags[2].value, flags[1].value, flags[0].value, target, secret,
                             ctx->now_s, &c, &err) != 0) {
        OPENSSL_cleanse(generated, sizeof(generated));
        return cli_fail(ctx, &err);
    }
    if (ctx->is_json) {
        json_t *obj = channel_json(&c);

        if (generated[0] != '\0') {
            json_object_set_new(obj, "secret", json_string(generated));
        }
        cli_print_json(ctx, obj);
    }
    else {
        fprintf(ctx->out, "%s\n", c.id);
        if (generated[0] != '\0') {
            fprintf(ctx->out, "signing secret (shown once): %s\n", generated);
        }
    }
    OPENSSL_cleanse(generated, sizeof(generated));
    return CLI_OK;
}

static int channel_list(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cli_flag flags[] = {{.name = "--tenant", .takes_value = true}};
    struct sl_channel *items = NULL;
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
        sl_store_channel_list(st, flags[0].value, &items, &n, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    cli_print_records(ctx, items, n, sizeof(items[0]), channel_record_json,
                      "ID                   TENANT               NAME                 KIND     "
                      "TARGET",
                      channel_row);
    sl_free(items);
    return CLI_OK;
}

static int channel_remove(struct cli_ctx *ctx, int argc, char **argv)
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
        return cli_usage_error(ctx, "channel", "channel remove needs a CHANNEL_ID");
    }
    sl_err_clear(&err);
    if (cli_store(ctx, &st, &err) != 0 || sl_store_channel_remove(st, pos[0], &err) != 0) {
        return cli_fail(ctx, &err);
    }
    if (ctx->is_json) {
        cli_print_json(ctx, json_pack("{s:s, s:b}", "id", pos[0], "removed", 1));
    }
    else {
        fprintf(ctx->out, "channel %s removed\n", pos[0]);
    }
    return CLI_OK;
}

static int channel_test(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cli_flag flags[] = {{.name = "--retries", .takes_value = true}};
    struct notify_outcome out;
    struct sl_store *st = NULL;
    int64_t retries = 0;
    const char *pos[1];
    struct sl_err err;
    size_t n_pos = 0;
    bool help = false;
    int rc = cli_args_parse(ctx, argc, argv, flags, 1, pos, 1, &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    if (n_pos != 1) {
        return cli_usage_error(ctx, "channel", "channel test needs a CHANNEL_ID");
    }
    if (flags[0].is_set) {
        rc = cli_parse_int(ctx, "channel", "--retries", flags[0].value, 0, 10, &retries);
        if (rc != CLI_OK) {
            return rc;
        }
    }
    sl_err_clear(&err);
    rc = cli_store(ctx, &st, &err);
    if (rc == 0) {
        rc = notify_channel_test(st, ctx->notify_settings, pos[0], (int)retries, ctx->now_s,
                                 &out, &err);
    }
    if (rc != 0) {
        return cli_fail(ctx, &err);
    }
    if (ctx->is_json) {
        cli_print_json(ctx, json_pack("{s:s, s:I, s:s, s:I, s:o, s:I, s:s?}", "channel_id",
                                      pos[0], "delivery_id", (json_int_t)out.delivery_id,
                                      "status", out.status, "attempts",
                                      (json_int_t)out.attempt, "http_status",
                                      out.http_status > 0 ? json_integer(out.http_status)
                                                          : json_null(),
                                      "duration_ms", (json_int_t)out.duration_ms, "error",
                                      out.error[0] != '\0' ? out.error : NULL));
    }
    else if (strcmp(out.status, "sent") == 0) {
        fprintf(ctx->out, "test notification delivered to %s (delivery %lld, attempt %lld, ",
                pos[0], (long long)out.delivery_id, (long long)out.attempt);
        if (out.http_status > 0) {
            fprintf(ctx->out, "HTTP %lld, ", (long long)out.http_status);
        }
        fprintf(ctx->out, "%lld ms)\n", (long long)out.duration_ms);
    }
    else {
        fprintf(ctx->out, "test notification to %s not delivered (delivery %lld, attempt "
                "%lld): %s%s\n", pos[0], (long long)out.delivery_id, (long long)out.attempt,
                out.error, strcmp(out.status, "retry") == 0
                               ? "; the notify job keeps retrying it until its deadline"
                               : "");
    }
    return strcmp(out.status, "sent") == 0 ? CLI_OK : CLI_FAILED;
}

int cli_channel_main(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {
        {"add", channel_add},
        {"list", channel_list},
        {"remove", channel_remove},
        {"test", channel_test},
    };

    return cli_dispatch(ctx, "channel", usage, verbs, sizeof(verbs) / sizeof(verbs[0]), argc,
                        argv);
}

/* sluice key: create, list, revoke and rotate API keys. */
#include <openssl/crypto.h>
#include <string.h>

#include "alloc.h"
#include "cli.h"
#include "timefmt.h"

static const char usage[] =
    "usage: sluice key create TENANT [--name NAME] [--scopes ingest,otlp,admin]\n"
    "                                [--expires 90d|YYYY-MM-DD]\n"
    "           prints the secret once; only its hash is stored\n"
    "       sluice key list [--tenant TENANT]\n"
    "       sluice key revoke KEY_ID              stops working at once\n"
    "       sluice key rotate KEY_ID [--grace 24h]\n"
    "           prints a new secret; the old key keeps working for the grace period\n"
    "           (default SLUICE_KEY_ROTATION_GRACE_HOURS, 24h)\n"
    "KEY_ID is the key's visible prefix (sl_ + 12 characters). All commands take --json.\n";

static const char *key_status(const struct sl_key *k, int64_t now_s)
{
    if (k->revoked_s != 0) {
        return "revoked";
    }
    if (k->expires_s != 0 && k->expires_s <= now_s) {
        return "expired";
    }
    if (k->rotated_to[0] != '\0') {
        return "rotating";
    }
    return "active";
}

static json_t *key_json(const struct sl_key *k, int64_t now_s)
{
    json_t *obj = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o}", "id", k->id,
                            "tenant_id", k->tenant_id, "name", k->name, "scopes", k->scopes,
                            "status", key_status(k, now_s), "created_at",
                            cli_json_time(k->created_s), "expires_at",
                            cli_json_time(k->expires_s), "revoked_at",
                            cli_json_time(k->revoked_s), "last_used_at",
                            cli_json_time(k->last_used_s));

    if (obj != NULL) {
        json_object_set_new(obj, "rotated_to",
                            k->rotated_to[0] != '\0' ? json_string(k->rotated_to) : json_null());
    }
    return obj;
}

static json_t *key_record_json(const void *record, int64_t now_s)
{
    return key_json(record, now_s);
}

static void key_row(struct cli_ctx *ctx, const void *record)
{
    const struct sl_key *k = record;
    char b1[32], b2[32];

    fprintf(ctx->out, "%-16s %-20s %-16s %-14s %-9s %-21s %s\n", k->id, k->tenant_id,
            k->name[0] != '\0' ? k->name : "-", k->scopes, key_status(k, ctx->now_s),
            cli_time(k->expires_s, b1), cli_time(k->last_used_s, b2));
}

/* Prints a new secret: alone on stdout (so `$(sluice key create t)` captures it), with the
 * warning on stderr; or inside the JSON object. */
static void print_secret(struct cli_ctx *ctx, const struct sl_key *k, const char *secret)
{
    if (ctx->is_json) {
        json_t *obj = key_json(k, ctx->now_s);

        json_object_set_new(obj, "secret", json_string(secret));
        cli_print_json(ctx, obj);
    }
    else {
        fprintf(ctx->out, "%s\n", secret);
        fprintf(ctx->err, "key %s for tenant %s: store the secret now, it is not shown again\n",
                k->id, k->tenant_id);
    }
}

static int key_create(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cli_flag flags[] = {
        {.name = "--name", .takes_value = true},
        {.name = "--scopes", .takes_value = true},
        {.name = "--expires", .takes_value = true},
    };
    char secret[SL_KEY_SECRET_MAX];
    struct sl_store *st = NULL;
    struct sl_key k;
    const char *pos[1];
    struct sl_err err;
    size_t n_pos = 0;
    bool help = false;
    int64_t expires_s = 0;
    int rc = cli_args_parse(ctx, argc, argv, flags, 3, pos, 1, &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    if (n_pos != 1) {
        return cli_usage_error(ctx, "key", "key create needs a TENANT");
    }
    sl_err_clear(&err);
    if (flags[2].is_set) {
        int64_t v = 0;

        if (sl_timefmt_parse_duration(flags[2].value, &v, NULL) == 0) {
            expires_s = ctx->now_s + v;
        }
        else if (sl_timefmt_parse_date(flags[2].value, &v, &err) == 0) {
            expires_s = v;
        }
        else {
            return cli_usage_error(ctx, "key", "--expires: '%s' is neither a duration (90d) "
                                   "nor a date (YYYY-MM-DD)", flags[2].value);
        }
        if (expires_s <= ctx->now_s) {
            return cli_usage_error(ctx, "key", "--expires: %s is in the past", flags[2].value);
        }
    }
    if (cli_store(ctx, &st, &err) != 0 ||
        sl_store_key_create(st, pos[0], flags[0].value, flags[1].value, expires_s, ctx->now_s,
                            &k, secret, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    print_secret(ctx, &k, secret);
    OPENSSL_cleanse(secret, sizeof(secret));
    return CLI_OK;
}

static int key_list(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cli_flag flags[] = {{.name = "--tenant", .takes_value = true}};
    struct sl_key *items = NULL;
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
        sl_store_key_list(st, flags[0].value, &items, &n, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    cli_print_records(ctx, items, n, sizeof(items[0]), key_record_json,
                      "ID               TENANT               NAME             SCOPES         "
                      "STATUS    EXPIRES               LAST_USED",
                      key_row);
    sl_free(items);
    return CLI_OK;
}

static int key_revoke(struct cli_ctx *ctx, int argc, char **argv)
{
    struct sl_store *st = NULL;
    struct sl_key k;
    const char *pos[1];
    struct sl_err err;
    size_t n_pos = 0;
    bool help = false;
    int rc = cli_args_parse(ctx, argc, argv, NULL, 0, pos, 1, &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    if (n_pos != 1) {
        return cli_usage_error(ctx, "key", "key revoke needs a KEY_ID");
    }
    sl_err_clear(&err);
    if (cli_store(ctx, &st, &err) != 0 || sl_store_key_revoke(st, pos[0], ctx->now_s, &err) != 0 ||
        sl_store_key_get(st, pos[0], &k, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    if (ctx->is_json) {
        cli_print_json(ctx, key_json(&k, ctx->now_s));
    }
    else {
        fprintf(ctx->out, "key %s revoked\n", k.id);
    }
    return CLI_OK;
}

static int key_rotate(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cli_flag flags[] = {{.name = "--grace", .takes_value = true}};
    char secret[SL_KEY_SECRET_MAX];
    struct sl_store *st = NULL;
    struct sl_key fresh, old;
    const char *pos[1];
    struct sl_err err;
    size_t n_pos = 0;
    bool help = false;
    int64_t grace_s = ctx->store_settings->key_rotation_grace_hours * 3600;
    int rc = cli_args_parse(ctx, argc, argv, flags, 1, pos, 1, &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    if (n_pos != 1) {
        return cli_usage_error(ctx, "key", "key rotate needs a KEY_ID");
    }
    sl_err_clear(&err);
    if (flags[0].is_set && sl_timefmt_parse_duration(flags[0].value, &grace_s, &err) != 0) {
        return cli_usage_error(ctx, "key", "--grace: %s", err.msg);
    }
    if (cli_store(ctx, &st, &err) != 0 ||
        sl_store_key_rotate(st, pos[0], grace_s, ctx->now_s, &fresh, secret, &err) != 0 ||
        sl_store_key_get(st, pos[0], &old, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    if (ctx->is_json) {
        json_t *obj = key_json(&fresh, ctx->now_s);

        json_object_set_new(obj, "secret", json_string(secret));
        json_object_set_new(obj, "replaces", key_json(&old, ctx->now_s));
        cli_print_json(ctx, obj);
    }
    else {
        char buf[32];

        print_secret(ctx, &fresh, secret);
        fprintf(ctx->err, "old key %s keeps working until %s\n", old.id,
                cli_time(old.expires_s, buf));
    }
    OPENSSL_cleanse(secret, sizeof(secret));
    return CLI_OK;
}

int cli_key_main(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {
        {"create", key_create},
        {"list", key_list},
        {"revoke", key_revoke},
        {"rotate", key_rotate},
    };

    return cli_dispatch(ctx, "key", usage, verbs, sizeof(verbs) / sizeof(verbs[0]), argc, argv);
}

/* sluice db migrate: upgrade the tenant store's schema in place. */
#include "cli.h"

static const char usage[] =
    "usage: sluice db migrate     create the tenant store or upgrade its schema in place\n"
    "Every command migrates on open; this one only reports. Takes --json.\n";

static int db_migrate(struct cli_ctx *ctx, int argc, char **argv)
{
    struct sl_store *st = NULL;
    const char *pos[1];
    struct sl_err err;
    size_t n_pos = 0;
    bool help = false;
    int rc = cli_args_parse(ctx, argc, argv, NULL, 0, pos, 0, &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    sl_err_clear(&err);
    if (cli_store(ctx, &st, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    if (ctx->is_json) {
        cli_print_json(ctx, json_pack("{s:s, s:i}", "path", ctx->store_settings->path,
                                      "schema_version", sl_store_schema_version(st)));
    }
    else {
        fprintf(ctx->out, "tenant store %s is at schema version %d\n", ctx->store_settings->path,
                sl_store_schema_version(st));
    }
    return CLI_OK;
}

int cli_db_main(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {{"migrate", db_migrate}};

    return cli_dispatch(ctx, "db", usage, verbs, 1, argc, argv);
}

/*
 * sluice: the operator's CLI. Reads the shared settings (SLUICE_DB and friends), then
 * hands the command line to the command group named first. It works on the SQLite tenant
 * store directly and never needs the daemons to be running.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "cfg.h"
#include "ch.h"
#include "cli.h"
#include "cold.h"
#include "enrich.h"
#include "log.h"
#include "notify.h"
#include "retention.h"
#include "store.h"

extern char **environ;

/* cmd_alerts.c */
int cli_alerts_main(struct cli_ctx *ctx, int argc, char **argv);
/* cmd_retention.c */
int cli_retention_main(struct cli_ctx *ctx, int argc, char **argv);
/* cmd_backfill.c */
int cli_backfill_main(struct cli_ctx *ctx, int argc, char **argv);

struct command {
    const char *name;
    int (*main)(struct cli_ctx *ctx, int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"tenant", cli_tenant_main, "create, list, show, set-tier, set-limits, disable, enable"},
    {"tier", cli_tier_main, "list, set: retention, compression, rate limits, quota"},
    {"key", cli_key_main, "create, list, revoke, rotate API keys"},
    {"channel", cli_channel_main, "add, list, remove, test alert channels"},
    {"rule", cli_rule_main, "add, list, remove alert rules"},
    {"alerts", cli_alerts_main, "list, history, deliveries of alert notifications"},
    {"db", cli_db_main, "migrate: upgrade the tenant store's schema"},
    {"backfill", cli_backfill_main, "start, status, pause, resume, cancel backfills"},
    {"jobs", cli_jobs_main, "list, run, history of the scheduler's jobs"},
    {"dlq", cli_dlq_main, "list, replay the loader's dead letters"},
    {"enrich", cli_enrich_main, "what GeoIP/user-agent enrichment stores for an IP and UA"},
    {"restore", cli_restore_main, "load cold-storage days back into the raw events"},
    {"retention", cli_retention_main, "plan (dry run), audit: what retention deletes"},
};

static void print_usage(FILE *out)
{
    fputs("usage: sluice [--config FILE] [--db PATH] [--json] COMMAND ...\n"
          "\n"
          "Configures sluice's tenant store (SLUICE_DB). Every command takes --json for\n"
          "scripts and --help. Exit status: 0 success, 1 failed operation, 2 bad usage.\n"
          "\n"
          "commands:\n",
          out);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
    }
    fputs("\nsettings: SLUICE_DB (default sluice.db), SLUICE_DB_BUSY_TIMEOUT_MS,\n"
          "SLUICE_KEY_ROTATION_GRACE_HOURS, SLUICE_LOG_LEVEL; for dlq SLUICE_KAFKA_BROKERS,\n"
          "SLUICE_KAFKA_DLQ_TOPIC, SLUICE_SPOOL_DIR and SLUICE_CLICKHOUSE_*. `--config FILE`\n"
          "reads the same keys as KEY=VALUE lines and the environment wins.\n",
          out);
}

int main(int argc, char **argv)
{
    struct sl_log_settings log_settings = {0};
    struct sl_store_settings store_settings = {0};
    struct sl_ch_settings ch_settings = {0};
    struct cli_dlq_settings dlq_settings = {0};
    struct enrich_settings enrich_settings = {0};
    struct enrich_paths enrich_paths = {0};
    struct compress_cold_settings cold_settings = {0};
    struct notify_settings notify_settings = {0};
    struct retention_settings retention_settings = {0};
    struct sl_cfg_section secs[] = {
        SL_CFG_SECTION("log", sl_log_cfg_opts, sl_log_cfg_n_opts, &log_settings),
        SL_CFG_SECTION("store", sl_store_cfg_opts, sl_store_cfg_n_opts, &store_settings),
        SL_CFG_SECTION("clickhouse", sl_ch_cfg_opts, sl_ch_cfg_n_opts, &ch_settings),
        SL_CFG_SECTION("dlq", cli_dlq_cfg_opts, cli_dlq_cfg_n_opts, &dlq_settings),
        SL_CFG_SECTION("enrich", enrich_cfg_opts, enrich_cfg_n_opts, &enrich_settings),
        SL_CFG_SECTION("enrich_paths", enrich_paths_cfg_opts, enrich_paths_cfg_n_opts,
                       &enrich_paths),
        SL_CFG_SECTION("cold", compress_cold_cfg_opts, compress_cold_cfg_n_opts,
                       &cold_settings),
        SL_CFG_SECTION("notify", notify_cfg_opts, notify_cfg_n_opts, &notify_settings),
        SL_CFG_SECTION("retention", retention_cfg_opts, retention_cfg_n_opts,
                       &retention_settings),
    };
    const size_t n_secs = sizeof(secs) / sizeof(secs[0]);
    struct cli_ctx ctx = {.out = stdout, .err = stderr, .now_s = (int64_t)time(NULL)};
    const char *config_file = NULL;
    const char *db_path = NULL;
    struct sl_err err;
    int status = CLI_USAGE;
    int i = 1;

    sl_err_clear(&err);
    sl_alloc_init_jansson();
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            ctx.is_json = true;
        }
        else if (strcmp(argv[i], "--help") == 0) {
            print_usage(stdout);
            return CLI_OK;
        }
        else if (strcmp(argv[i], "--version") == 0) {
            printf("sluice %s\n", SLUICE_VERSION);
            return CLI_OK;
        }
        else if ((strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "--db") == 0) &&
                 i + 1 < argc) {
            if (argv[i][2] == 'c') {
                config_file = argv[++i];
            }
            else {
                db_path = argv[++i];
            }
        }
        else {
            fprintf(stderr, "sluice: error: unknown or incomplete option '%s' (see `sluice "
                    "--help`)\n", argv[i]);
            return CLI_USAGE;
        }
    }
    if (i >= argc) {
        print_usage(stderr);
        return CLI_USAGE;
    }
    if (sl_cfg_load(secs, n_secs, config_file, environ, &err) != 0) {
        fprintf(stderr, "sluice: error: bad setting: %s\n", err.msg);
        sl_cfg_fini(secs, n_secs);
        return CLI_USAGE;
    }
    sl_log_configure(log_settings.level, NULL);
    if (db_path != NULL) {
        char *copy = sl_strdup(db_path);

        if (copy == NULL) {
            sl_cfg_fini(secs, n_secs);
            return CLI_FAILED;
        }
        sl_free(store_settings.path);
        store_settings.path = copy;
    }
    ctx.store_settings = &store_settings;
    ctx.dlq_settings = &dlq_settings;
    ctx.ch_settings = &ch_settings;
    ctx.enrich_settings = &enrich_settings;
    ctx.enrich_paths = &enrich_paths;
    ctx.cold_settings = &cold_settings;
    ctx.notify_settings = &notify_settings;
    ctx.retention_settings = &retention_settings;
    for (size_t c = 0; c < sizeof(commands) / sizeof(commands[0]); c++) {
        if (strcmp(argv[i], commands[c].name) == 0) {
            status = commands[c].main(&ctx, argc - i - 1, argv + i + 1);
            goto done;
        }
    }
    fprintf(stderr, "sluice: error: unknown command '%s' (see `sluice --help`)\n", argv[i]);

done:
    sl_store_close(ctx.store);
    sl_cfg_fini(secs, n_secs);
    return status;
}

/*
 * sluice-ingest: reads its settings, logs, and runs its libuv loop until SIGTERM or
 * SIGINT. The HTTP edge and the loader attach to this loop.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "cfg.h"
#include "ch.h"
#include "log.h"
#include "settings.h"
#include "store.h"

#define COMPONENT "ingest"

static const char usage[] =
    "usage: sluice-ingest [--config FILE] [--print-config] [--help-config] [--version]\n"
    "\n"
    "Runs the HTTP edge and the loader. Settings come from SLUICE_* environment variables\n"
    "or KEY=VALUE lines in --config FILE (the environment wins); --help-config lists them.\n";

struct app {
    uv_loop_t loop;
    uv_signal_t sigterm;
    uv_signal_t sigint;
};

static void on_signal(uv_signal_t *handle, int signum)
{
    struct app *app = handle->data;

    sl_log_info(COMPONENT, "received %s, stopping", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    uv_signal_stop(&app->sigterm);
    uv_signal_stop(&app->sigint);
    uv_close((uv_handle_t *)&app->sigterm, NULL);
    uv_close((uv_handle_t *)&app->sigint, NULL);
}

int main(int argc, char **argv)
{
    struct sl_log_settings log_settings = {0};
    struct sl_store_settings store_settings = {0};
    struct sl_ch_settings ch_settings = {0};
    struct ingest_settings settings = {0};
    struct sl_cfg_section secs[] = {
        SL_CFG_SECTION("log", sl_log_cfg_opts, sl_log_cfg_n_opts, &log_settings),
        SL_CFG_SECTION("store", sl_store_cfg_opts, sl_store_cfg_n_opts, &store_settings),
        SL_CFG_SECTION("clickhouse", sl_ch_cfg_opts, sl_ch_cfg_n_opts, &ch_settings),
        SL_CFG_SECTION("ingest", ingest_settings_opts, ingest_settings_n_opts, &settings),
    };
    const size_t n_secs = sizeof(secs) / sizeof(secs[0]);
    struct app app;
    int status;

    status = sl_cfg_boot("sluice-ingest", usage, argc, argv, secs, n_secs, stdout, stderr);
    if (status >= 0) {
        sl_cfg_fini(secs, n_secs);
        return status;
    }
    sl_log_configure(log_settings.level, NULL);
    signal(SIGPIPE, SIG_IGN);

    uv_loop_init(&app.loop);
    uv_signal_init(&app.loop, &app.sigterm);
    uv_signal_init(&app.loop, &app.sigint);
    app.sigterm.data = &app;
    app.sigint.data = &app;
    uv_signal_start(&app.sigterm, on_signal, SIGTERM);
    uv_signal_start(&app.sigint, on_signal, SIGINT);

    sl_log_info(COMPONENT, "sluice-ingest %s started (http %s, queue %s)", SLUICE_VERSION,
                settings.http_addr,
                settings.kafka_brokers[0] != '\0' ? settings.kafka_brokers : "embedded spool");
    uv_run(&app.loop, UV_RUN_DEFAULT);
    status = uv_loop_close(&app.loop) == 0 ? 0 : 1;
    sl_log_info(COMPONENT, "sluice-ingest stopped");
    sl_cfg_fini(secs, n_secs);
    return status;
}

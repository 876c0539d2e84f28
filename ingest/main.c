/*
 * sluice-ingest: reads its settings, opens the tenant store, the queue (spool, and Kafka
 * when brokers are set), the enrichment data (with the loader), the loader
 * (SLUICE_INGEST_ROLES) and the HTTP edge, then runs a libuv loop for signals and the
 * metrics snapshot timer. A loader-only process opens no queue and reads the tenant store
 * only for tenants' enrichment policy; its HTTP listener serves /health, /stats and
 * /metrics and answers POST /ingest with 404. SIGTERM or SIGINT stops it gracefully: no new
 * connections, requests in progress finish, Kafka gets up to SLUICE_SHUTDOWN_TIMEOUT_MS to
 * acknowledge, what it did not goes to the spool; the loader inserts its pending batch if
 * there is time left and releases only what was inserted.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <uv.h>

#include "alloc.h"
#include "auth.h"
#include "cfg.h"
#include "ch.h"
#include "dlq.h"
#include "edge.h"
#include "enrich.h"
#include "event.h"
#include "http.h"
#include "loader.h"
#include "log.h"
#include "metrics.h"
#include "policy.h"
#include "producer.h"
#include "queue.h"
#include "session.h"
#include "settings.h"
#include "snapshot.h"
#include "store.h"

#define COMPONENT "ingest"

static const char usage[] =
    "usage: sluice-ingest [--config FILE] [--print-config] [--help-config] [--version]\n"
    "\n"
    "Runs the HTTP edge (POST /ingest, /health, /stats, /metrics) and queues events in\n"
    "Kafka (SLUICE_KAFKA_BROKERS) or, without brokers, in the local disk spool. Settings\n"
    "come from SLUICE_* environment variables or KEY=VALUE lines in --config FILE (the\n"
    "environment wins); --help-config lists them. The loader (SLUICE_INGEST_ROLES, default\n"
    "\"edge,loader\") loads the queue into ClickHouse: from Kafka as a consumer group, or\n"
    "without brokers from the spool in this process.\n";

struct app {
    uv_loop_t loop;
    uv_signal_t sigterm;
    uv_signal_t sigint;
    struct ingest_snapshot *snapshot;
};

static void on_signal(uv_signal_t *handle, int signum)
{
    struct app *app = handle->data;

    sl_log_info(COMPONENT, "received %s, stopping", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    uv_signal_stop(&app->sigterm);
    uv_signal_stop(&app->sigint);
    uv_close((uv_handle_t *)&app->sigterm, NULL);
    uv_close((uv_handle_t *)&app->sigint, NULL);
    ingest_snapshot_stop(app->snapshot);
}

/*
 * Loads the enrichment data for the loader. Missing or broken files do not stop start-up:
 * rows load without what they would give, each problem is logged here and /health says why.
 * Fails only when memory runs out (logged).
 */
static int start_enrichment(const struct enrich_config *cfg, struct enrich **out)
{
    struct enrich_health h;
    struct sl_err err;

    sl_err_clear(&err);
    if (enrich_create(&cfg->settings, cfg->paths.geoip_db, cfg->paths.ua_regexes,
                      (int64_t)time(NULL), out, &err) != 0) {
        sl_log_error(COMPONENT, "cannot set up enrichment: %s", err.msg);
        return err.code != 0 ? err.code : SL_ENOMEM;
    }
    enrich_health(*out, &h);
    for (int i = 0; i < ENRICH_N_PARTS; i++) {
        const struct enrich_part_status *p = &h.parts[i];

        if (p->state == ENRICH_PART_ERROR || p->state == ENRICH_PART_DEGRADED) {
            sl_log_warn(COMPONENT, "enrichment %s is %s, rows load without it: %s", p->name,
                        enrich_part_state_name(p->state), p->error);
        }
    }
    sl_log_info(COMPONENT, "enrichment version %u (geoip %s, asn %s, ua %s, crawlers %s)",
                (unsigned)enrich_version_id(*out),
                enrich_part_state_name(h.parts[ENRICH_PART_GEOIP].state),
                enrich_part_state_name(h.parts[ENRICH_PART_ASN].state),
                enrich_part_state_name(h.parts[ENRICH_PART_UA].state),
                enrich_part_state_name(h.parts[ENRICH_PART_CRAWLERS].state));
    return 0;
}

int main(int argc, char **argv)
{
    struct sl_log_settings log_settings = {0};
    struct sl_store_settings store_settings = {0};
    struct sl_ch_settings ch_settings = {0};
    struct ingest_settings settings = {0};
    struct ingest_http_settings http_settings = {0};
    struct ingest_auth_settings auth_settings = {0};
    struct ingest_event_limits limits = ingest_event_limits_default();
    struct ingest_producer_settings producer_settings = {0};
    struct ingest_queue_settings queue_settings = {0};
    struct ingest_loader_settings loader_settings = {0};
    struct ingest_session_settings session_settings = {0};
    struct ingest_snapshot_settings snapshot_settings = {0};
    struct enrich_config enrich_cfg = {0};
    struct sl_cfg_section secs[] = {
        SL_CFG_SECTION("log", sl_log_cfg_opts, sl_log_cfg_n_opts, &log_settings),
        SL_CFG_SECTION("store", sl_store_cfg_opts, sl_store_cfg_n_opts, &store_settings),
        SL_CFG_SECTION("clickhouse", sl_ch_cfg_opts, sl_ch_cfg_n_opts, &ch_settings),
        SL_CFG_SECTION("ingest", ingest_settings_opts, ingest_settings_n_opts, &settings),
        SL_CFG_SECTION("http", ingest_http_cfg_opts, ingest_http_cfg_n_opts, &http_settings),
        SL_CFG_SECTION("auth", ingest_auth_cfg_opts, ingest_auth_cfg_n_opts, &auth_settings),
        SL_CFG_SECTION("events", ingest_event_cfg_opts, ingest_event_cfg_n_opts, &limits),
        SL_CFG_SECTION("kafka", ingest_producer_cfg_opts, ingest_producer_cfg_n_opts,
                       &producer_settings),
        SL_CFG_SECTION("queue", ingest_queue_cfg_opts, ingest_queue_cfg_n_opts, &queue_settings),
        SL_CFG_SECTION("sessions", ingest_session_cfg_opts, ingest_session_cfg_n_opts,
                       &session_settings),
        SL_CFG_SECTION("loader", ingest_loader_cfg_opts, ingest_loader_cfg_n_opts,
                       &loader_settings),
        SL_CFG_SECTION("snapshot", ingest_snapshot_cfg_opts, ingest_snapshot_cfg_n_opts,
                       &snapshot_settings),
        SL_CFG_SECTION("enrichment", enrich_config_cfg_opts, enrich_config_cfg_n_opts,
                       &enrich_cfg),
    };
    const size_t n_secs = sizeof(secs) / sizeof(secs[0]);
    struct sl_metrics *metrics = NULL;
    struct ingest_auth *auth = NULL;
    struct ingest_queue *queue = NULL;
    struct ingest_session *sessions = NULL;
    struct ingest_edge *edge = NULL;
    struct ingest_loader *loader = NULL;
    struct ingest_snapshot *snapshot = NULL;
    struct ingest_policy *policy = NULL;
    struct enrich *enrich = NULL;
    char *dead_letter_dir = NULL;
    bool has_edge, has_loader, is_kafka;
    struct ingest_edge_parts parts;
    struct sl_err err;
    struct app app;
    uint64_t stopping_ns;
    int64_t flush_ms;
    int status;

    status = sl_cfg_boot("sluice-ingest", usage, argc, argv, secs, n_secs, stdout, stderr);
    if (status >= 0) {
        sl_cfg_fini(secs, n_secs);
        return status;
    }
    has_edge = ingest_loader_roles_has(loader_settings.roles, "edge");
    has_loader = ingest_loader_roles_has(loader_settings.roles, "loader");
    is_kafka = settings.kafka_brokers[0] != '\0';
    if (!has_edge && !is_kafka) {
        /* The spool belongs to the edge's process: a loader alone has nothing to read. */
        fprintf(stderr, "sluice-ingest: error: SLUICE_INGEST_ROLES=%s needs SLUICE_KAFKA_BROKERS: "
                "without a broker the loader drains the edge's spool in the edge's process "
                "(use \"edge,loader\")\n", loader_settings.roles);
        sl_cfg_fini(secs, n_secs);
        return SL_EXIT_USAGE;
    }
    sl_log_configure(log_settings.level, NULL);
    sl_alloc_init_jansson();
    signal(SIGPIPE, SIG_IGN);
    sl_err_clear(&err);
    status = 1;

    if (sl_metrics_create(&metrics) != 0) {
        sl_log_error(COMPONENT, "out of memory creating metrics");
        goto done;
    }
    if (has_edge && ingest_auth_create(&auth, store_settings.path, store_settings.busy_timeout_ms,
                                       &auth_settings, &err) != 0) {
        sl_log_error(COMPONENT, "cannot open the tenant store: %s", err.msg);
        goto done;
    }
    if (has_edge && ingest_queue_create(&queue, settings.kafka_brokers, &producer_settings,
                                        settings.spool_dir, &queue_settings, metrics,
                                        &err) != 0) {
        sl_log_error(COMPONENT, "cannot open the queue: %s", err.msg);
        goto done;
    }
    if (has_edge && ingest_session_create(&sessions, &session_settings) != 0) {
        sl_log_error(COMPONENT, "out of memory creating the session table");
        goto done;
    }
    if (ingest_policy_create(&policy, store_settings.path, store_settings.busy_timeout_ms,
                             settings.tenant_cache_ttl_ms, &err) != 0) {
        sl_log_error(COMPONENT, "cannot open the tenant store: %s", err.msg);
        goto done;
    }
    if (has_loader && start_enrichment(&enrich_cfg, &enrich) != 0) {
        goto done;
    }
    if (has_loader) {
        if (ingest_dlq_folder(settings.spool_dir, &dead_letter_dir) != 0 ||
            ingest_loader_start(&loader, &loader_settings, &ch_settings, settings.kafka_brokers,
                                producer_settings.topic,
                                queue != NULL ? ingest_queue_spool(queue) : NULL,
                                dead_letter_dir, metrics, enrich, policy, &err) != 0) {
            sl_log_error(COMPONENT, "cannot start the loader: %s",
                         dead_letter_dir == NULL ? "out of memory" : err.msg);
            goto done;
        }
    }
    if (ingest_snapshot_create(&snapshot, &snapshot_settings, &ch_settings, metrics,
                               "sluice-ingest", &err) != 0) {
        sl_log_error(COMPONENT, "cannot set up the metrics snapshot: %s", err.msg);
        goto done;
    }
    parts = (struct ingest_edge_parts){.http = &http_settings, .limits = &limits,
                                       .producer = &producer_settings, .auth = auth,
                                       .queue = queue, .metrics = metrics, .loader = loader,
                                       .sessions = sessions, .enrich = enrich,
                                       .policy = has_edge ? policy : NULL,
                                       .enrich_cfg = &enrich_cfg};
    if (ingest_edge_start(&edge, &parts, &err) != 0) {
        sl_log_error(COMPONENT, "cannot start the HTTP edge: %s", err.msg);
        goto done;
    }

    uv_loop_init(&app.loop);
    uv_signal_init(&app.loop, &app.sigterm);
    uv_signal_init(&app.loop, &app.sigint);
    app.sigterm.data = &app;
    app.sigint.data = &app;
    uv_signal_start(&app.sigterm, on_signal, SIGTERM);
    uv_signal_start(&app.sigint, on_signal, SIGINT);
    app.snapshot = snapshot;
    ingest_snapshot_start(snapshot, &app.loop);
    sl_log_info(COMPONENT, "sluice-ingest %s started (http %s, port %d, queue %s, roles %s)",
                SLUICE_VERSION, http_settings.addr, ingest_edge_port(edge),
                is_kafka ? settings.kafka_brokers : "embedded spool", loader_settings.roles);
    uv_run(&app.loop, UV_RUN_DEFAULT);
    uv_loop_close(&app.loop);

    /* One budget for both halves: requests waiting for Kafka hold up the drain exactly as
     * long as Kafka holds up the flush, so the flush only gets what the drain left. */
    stopping_ns = uv_hrtime();
    ingest_edge_drain(edge, (int)settings.shutdown_ms);
    flush_ms = settings.shutdown_ms - (int64_t)((uv_hrtime() - stopping_ns) / 1000000);
    if (!is_kafka) {
        /* The spool-mode loader reads the queue's spool, so it stops before the spool
         * closes; what it does not load in time stays spooled for the next start. */
        ingest_loader_stop(loader, flush_ms > 0 ? (int)flush_ms : 0);
        flush_ms = settings.shutdown_ms - (int64_t)((uv_hrtime() - stopping_ns) / 1000000);
    }
    ingest_queue_destroy(queue, flush_ms > 0 ? (int)flush_ms : 0);
    queue = NULL;
    /* A Kafka loader stops after the queue, so what the edge flushed may still load; what
     * does not stays uncommitted in Kafka. */
    flush_ms = settings.shutdown_ms - (int64_t)((uv_hrtime() - stopping_ns) / 1000000);
    ingest_loader_stop(loader, flush_ms > 0 ? (int)flush_ms : 0);
    ingest_edge_stop(edge, 2000);
    edge = NULL;
    status = 0;
    sl_log_info(COMPONENT, "sluice-ingest stopped");

done:
    ingest_edge_stop(edge, 0);
    ingest_loader_destroy(loader); /* before the queue: a spool-mode loader reads its spool */
    enrich_destroy(enrich);        /* after the loader and the edge, which use it */
    ingest_policy_destroy(policy);
    ingest_snapshot_destroy(snapshot);
    sl_free(dead_letter_dir);
    ingest_queue_destroy(queue, 0);
    ingest_auth_destroy(auth);
    ingest_session_destroy(sessions);
    sl_metrics_destroy(metrics);
    sl_cfg_fini(secs, n_secs);
    return status;
}

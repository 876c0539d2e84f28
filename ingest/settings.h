/*
 * Settings of sluice-ingest's own process (queue location, data paths, shutdown); each
 * module of the edge has its own table (http.c, auth.c, event.c, producer.c, queue.c). Shared
 * settings (log, tenant store, ClickHouse) live with their modules in the shared library.
 */
#ifndef SLUICE_INGEST_SETTINGS_H
#define SLUICE_INGEST_SETTINGS_H

#include <stddef.h>
#include <stdint.h>

#include "cfg.h"

struct ingest_settings {
    char *kafka_brokers; /* SLUICE_KAFKA_BROKERS; empty: embedded spool */
    char *spool_dir;     /* SLUICE_SPOOL_DIR */
    char *geoip_db;      /* SLUICE_GEOIP_DB */
    char *ua_regexes;    /* SLUICE_UA_REGEXES */
    int64_t shutdown_ms; /* SLUICE_SHUTDOWN_TIMEOUT_MS */
};

extern const struct sl_cfg_opt ingest_settings_opts[];
extern const size_t ingest_settings_n_opts;

#endif

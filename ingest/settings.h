/*
 * Settings of sluice-ingest's own (HTTP edge, queue, enrichment data paths). Shared
 * settings (log, tenant store, ClickHouse) live with their modules in the shared library.
 */
#ifndef SLUICE_INGEST_SETTINGS_H
#define SLUICE_INGEST_SETTINGS_H

#include <stddef.h>

#include "cfg.h"

struct ingest_settings {
    char *http_addr;     /* SLUICE_HTTP_ADDR */
    char *kafka_brokers; /* SLUICE_KAFKA_BROKERS; empty: embedded spool */
    char *spool_dir;     /* SLUICE_SPOOL_DIR */
    char *geoip_db;      /* SLUICE_GEOIP_DB */
    char *ua_regexes;    /* SLUICE_UA_REGEXES */
};

extern const struct sl_cfg_opt ingest_settings_opts[];
extern const size_t ingest_settings_n_opts;

#endif

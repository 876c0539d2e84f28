/*
 * Settings of sluice-ingest's own process (queue location, shutdown); each module of the edge
 * has its own table (http.c, auth.c, event.c, producer.c, queue.c). Shared settings (log,
 * tenant store, ClickHouse) live with their modules in the shared library, and enrichment's
 * (SLUICE_GEOIP_*, SLUICE_UA_*, SLUICE_CRAWLER_PATTERNS) in workers/enrichment/enrich.h.
 */
#ifndef SLUICE_INGEST_SETTINGS_H
#define SLUICE_INGEST_SETTINGS_H

#include <stddef.h>
#include <stdint.h>

#include "cfg.h"

struct ingest_settings {
    char *kafka_brokers; /* SLUICE_KAFKA_BROKERS; empty: embedded spool */
    char *spool_dir;     /* SLUICE_SPOOL_DIR */
    int64_t shutdown_ms; /* SLUICE_SHUTDOWN_TIMEOUT_MS */
    int64_t tenant_cache_ttl_ms; /* SLUICE_TENANT_CACHE_TTL_MS: enrichment and bot policy */
};

extern const struct sl_cfg_opt ingest_settings_opts[];
extern const size_t ingest_settings_n_opts;

#endif

/* The settings table of sluice-ingest (enrichment's are the library's: enrich.h). */
#include "settings.h"

const struct sl_cfg_opt ingest_settings_opts[] = {
    {.key = "SLUICE_KAFKA_BROKERS", .type = SL_CFG_STRING, .def = "",
     .offset = offsetof(struct ingest_settings, kafka_brokers),
     .desc = "Kafka/Redpanda bootstrap brokers (host:port,...). Empty: the disk spool is "
             "the queue and the loader drains it in-process (embedded default)."},
    {.key = "SLUICE_SPOOL_DIR", .type = SL_CFG_STRING, .def = "spool",
     .offset = offsetof(struct ingest_settings, spool_dir),
     .desc = "Folder of the durable disk spool."},
    {.key = "SLUICE_SHUTDOWN_TIMEOUT_MS", .type = SL_CFG_INT, .def = "10000", .min = 0,
     .max = 600000, .offset = offsetof(struct ingest_settings, shutdown_ms),
     .desc = "On SIGTERM: how long to let requests finish and Kafka acknowledge before what "
             "is left goes to the spool."},
    {.key = "SLUICE_TENANT_CACHE_TTL_MS", .type = SL_CFG_INT, .def = "10000", .min = 0,
     .max = 600000, .offset = offsetof(struct ingest_settings, tenant_cache_ttl_ms),
     .desc = "How long the loader and the edge keep a tenant's enrichment and bot settings "
             "(tier enrichment, drop_bots) before asking the tenant store again."},
};
const size_t ingest_settings_n_opts = sizeof(ingest_settings_opts) / sizeof(ingest_settings_opts[0]);

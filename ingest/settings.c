/* The settings table of sluice-ingest. */
#include "settings.h"

const struct sl_cfg_opt ingest_settings_opts[] = {
    {.key = "SLUICE_KAFKA_BROKERS", .type = SL_CFG_STRING, .def = "",
     .offset = offsetof(struct ingest_settings, kafka_brokers),
     .desc = "Kafka/Redpanda bootstrap brokers (host:port,...). Empty: the disk spool is "
             "the queue and the loader drains it in-process (embedded default)."},
    {.key = "SLUICE_SPOOL_DIR", .type = SL_CFG_STRING, .def = "spool",
     .offset = offsetof(struct ingest_settings, spool_dir),
     .desc = "Folder of the durable disk spool."},
    {.key = "SLUICE_GEOIP_DB", .type = SL_CFG_STRING, .def = "",
     .offset = offsetof(struct ingest_settings, geoip_db),
     .desc = "MaxMind/DB-IP .mmdb city database for GeoIP enrichment; empty: off."},
    {.key = "SLUICE_UA_REGEXES", .type = SL_CFG_STRING, .def = "",
     .offset = offsetof(struct ingest_settings, ua_regexes),
     .desc = "uap-core regexes.yaml for user-agent parsing; empty: off."},
    {.key = "SLUICE_SHUTDOWN_TIMEOUT_MS", .type = SL_CFG_INT, .def = "10000", .min = 0,
     .max = 600000, .offset = offsetof(struct ingest_settings, shutdown_ms),
     .desc = "On SIGTERM: how long to let requests finish and Kafka acknowledge before what "
             "is left goes to the spool."},
};
const size_t ingest_settings_n_opts = sizeof(ingest_settings_opts) / sizeof(ingest_settings_opts[0]);

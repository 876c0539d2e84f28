/* The settings table of sluice-ingest. */
#include "settings.h"

const struct sl_cfg_opt ingest_settings_opts[] = {
    {.key = "SLUICE_HTTP_ADDR", .type = SL_CFG_HOSTPORT, .def = "0.0.0.0:8080",
     .offset = offsetof(struct ingest_settings, http_addr),
     .desc = "Address the HTTP edge listens on (host:port)."},
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
};
const size_t ingest_settings_n_opts = sizeof(ingest_settings_opts) / sizeof(ingest_settings_opts[0]);

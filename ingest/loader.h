/*
 * The loader role of sluice-ingest: moves events from the queue into ClickHouse.
 *
 * With brokers it is a member of a Kafka consumer group (SLUICE_LOADER_GROUP_ID) on the
 * events topic; run as many loaders as the topic has partitions. Without brokers (the
 * embedded default) it drains the edge's disk spool in the same process. Either way it
 * batches events by rows, bytes and age, encodes them as RowBinary (rows.c) and inserts each
 * batch over ClickHouse's HTTP interface, and only then releases them: Kafka offsets are
 * committed, spool records committed, once ClickHouse acknowledged the insert that holds
 * them. Redelivery after a crash is expected; the tables collapse duplicates by event id.
 *
 * ClickHouse down (network errors, transient codes): a circuit breaker opens, consumption
 * pauses (Kafka partitions paused; the spool simply not read), and the pending batch is
 * retried after an exponential backoff with full jitter, up to SLUICE_LOADER_BACKOFF_MAX_MS,
 * behind a /ping probe. The state change is logged once each way, not per retry.
 *
 * A message that can never load goes to the dead letters (dlq.h) and no longer holds up
 * its partition: one the encoder refuses at once, one ClickHouse rejects after the batch is
 * bisected down to it. With Kafka, dead letters go to SLUICE_KAFKA_DLQ_TOPIC with headers
 * naming the reason and the original topic, partition and offset; in spool mode, where no
 * topic exists, to JSON lines in <spool_dir>/dead-letters/ (see dlq.h). The rest of the
 * batch still loads. `sluice dlq list|replay` reads and re-injects them.
 *
 * This file leaves to others: the table layout and row encoding (schema.c, rows.c), the
 * dead-letter formats (dlq.c), the periodic internal_metrics snapshot (snapshot.c) and the
 * HTTP answers (edge.c, which reads ingest_loader_health and ingest_loader_stats_json).
 *
 * Threads: start runs one loader thread that owns the consumer, the batch and its own
 * ClickHouse client. health, stats and stats_json may be called from any thread while the
 * loader exists; stop and destroy from one thread, once.
 */
#ifndef SLUICE_INGEST_LOADER_H
#define SLUICE_INGEST_LOADER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "ch.h"
#include "enrich.h"
#include "err.h"
#include "metrics.h"
#include "policy.h"
#include "spool.h"

/* Settings of the loader. Strings are owned by the cfg module (sl_cfg_fini). */
struct ingest_loader_settings {
    char *roles;                /* SLUICE_INGEST_ROLES: "edge,loader", "edge" or "loader" */
    int64_t batch_rows;         /* SLUICE_LOADER_BATCH_ROWS: insert once this many rows wait */
    int64_t batch_bytes;        /* SLUICE_LOADER_BATCH_BYTES: ... or this many message bytes */
    int64_t batch_age_ms;       /* SLUICE_LOADER_BATCH_AGE_MS: ... or the oldest is this old */
    char *group_id;             /* SLUICE_LOADER_GROUP_ID: the Kafka consumer group */
    char *dlq_topic;            /* SLUICE_KAFKA_DLQ_TOPIC: dead letters (Kafka mode) */
    int64_t backoff_max_ms;     /* SLUICE_LOADER_BACKOFF_MAX_MS: longest wait between retries */
    int64_t session_timeout_ms; /* SLUICE_LOADER_SESSION_TIMEOUT_MS: Kafka session.timeout.ms */
};

/* The loader's settings table, bound to struct ingest_loader_settings. */
extern const struct sl_cfg_opt ingest_loader_cfg_opts[];
extern const size_t ingest_loader_cfg_n_opts;

/*
 * Whether the comma list roles (a checked SLUICE_INGEST_ROLES value, borrowed) names role
 * ("edge" or "loader"). Never fails.
 */
bool ingest_loader_roles_has(const char *roles, const char *role);

struct ingest_loader;

enum ingest_loader_state {
    INGEST_LOADER_STARTING,          /* applying the schema (retried while ClickHouse is down) */
    INGEST_LOADER_OK,                /* loading */
    INGEST_LOADER_CLICKHOUSE_DOWN,   /* breaker open: paused, retrying with backoff */
    INGEST_LOADER_DEAD_LETTERS_DOWN, /* dead letters cannot be written: paused, retrying */
    INGEST_LOADER_STOPPED,           /* stop was called */
};

/* "starting", "ok", "clickhouse_down", "dead_letters_down", "stopped". Never fails. */
const char *ingest_loader_state_name(enum ingest_loader_state state);

/* What GET /health reports. */
struct ingest_loader_health {
    enum ingest_loader_state state;
    int64_t since_s;                 /* unix seconds the state began */
    char last_error[SL_ERR_MSG_MAX]; /* why the breaker is open (or last opened); "" if never */
    int64_t lag;                     /* messages (Kafka) or records (spool) not yet loaded and
                                      * released; -1 while unknown */
    bool is_kafka;                   /* false: spool mode */
};

/* Partitions reported by ingest_loader_stats; more are summed into the total lag only. */
#define INGEST_LOADER_MAX_PARTITIONS 64

/* Counters since start, for GET /stats. */
struct ingest_loader_stats {
    uint64_t rows_loaded;   /* rows ClickHouse acknowledged */
    uint64_t batches;       /* batches inserted and released */
    uint64_t insert_errors; /* failed insert attempts (transient and rejected) */
    uint64_t dead_letters;  /* messages sent to the dead letters */
    double rows_per_s;      /* over the last few seconds */
    double last_batch_s;    /* duration of the last batch, from first insert to release */
    size_t n_partitions;    /* entries in partitions (Kafka mode) */
    struct {
        int32_t partition;
        int64_t lag; /* -1 while unknown */
    } partitions[INGEST_LOADER_MAX_PARTITIONS];
};

/*
 * Starts the loader thread. Does not wait for ClickHouse or Kafka: the schema
 * (ingest_schema_apply) is applied by the thread, retried with backoff while ClickHouse is
 * down, and consumption starts after it; health says "starting" until then.
 *
 *   out              returns new: the loader (stop with ingest_loader_stop, free with
 *                    ingest_loader_destroy); NULL on failure
 *   s                borrowed; copied
 *   ch               borrowed; copied (the loader makes its own client)
 *   brokers          "host:port,..." (borrowed, copied); "" or NULL: spool mode
 *   topic            the events topic to consume (Kafka mode; borrowed, copied)
 *   spool            spool mode: the edge's spool (kept: must outlive the loader; the
 *                    loader becomes its only reader); NULL in Kafka mode
 *   dead_letter_dir  spool mode: the dead-letter folder (ingest_dlq_folder; borrowed,
 *                    copied); ignored in Kafka mode
 *   m                may be NULL; kept. Registers the sluice_loader_* families
 *   enrich           may be NULL (rows are stored unenriched); kept. Each row of a tenant
 *                    whose tier has enrichment on is enriched before the insert, and the
 *                    GeoIP files are looked at for a new version between batches
 *   policy           may be NULL (every tenant is enriched); kept. Per-tenant tier policy
 *   err              may be NULL
 *
 * Fails with SL_EINVAL (bad settings: no topic, no spool, librdkafka refused a value),
 * SL_ENOMEM, or SL_ESTATE when the thread cannot start.
 */
int ingest_loader_start(struct ingest_loader **out, const struct ingest_loader_settings *s,
                        const struct sl_ch_settings *ch, const char *brokers, const char *topic,
                        struct ingest_spool *spool, const char *dead_letter_dir,
                        struct sl_metrics *m, struct enrich *enrich,
                        struct ingest_policy *policy, struct sl_err *err);

/*
 * Stops the loader thread: stops taking new messages, inserts the pending batch when
 * ClickHouse is up and there is time before deadline_ms, releases only what was inserted
 * (Kafka: commits those offsets and leaves the group; spool: commits the cursor), then
 * joins the thread. What is not inserted by then stays in Kafka or the spool and is read
 * again at the next start. An insert already in progress is waited for (bounded by
 * SLUICE_CLICKHOUSE_TIMEOUT_MS). In spool mode call it before the spool is closed.
 * The loader stays readable (health "stopped") until destroy. Accepts NULL; idempotent.
 */
void ingest_loader_stop(struct ingest_loader *l, int deadline_ms);

/* Stops the loader (at once, as ingest_loader_stop with no deadline) if running and frees
 * it. Accepts NULL. No other call may be in flight or follow. */
void ingest_loader_destroy(struct ingest_loader *l);

/* Fills *out (borrowed). Any thread; never fails. */
void ingest_loader_health(struct ingest_loader *l, struct ingest_loader_health *out);

/* Fills *out (borrowed). Any thread; never fails. */
void ingest_loader_stats(struct ingest_loader *l, struct ingest_loader_stats *out);

/*
 * The loader's part of GET /health (with_stats false) or /stats (true) as a JSON object:
 * {"mode","state","since","last_error","lag"} plus, for /stats, "rows_loaded", "batches",
 * "insert_errors", "dead_letters", "rows_per_s", "last_batch_s", "rows_enriched",
 * "rows_not_enriched" and "partitions" [{"partition","lag"}]. Returns a new reference, NULL
 * when memory ran out. Any thread.
 */
json_t *ingest_loader_json(struct ingest_loader *l, bool with_stats);

#endif

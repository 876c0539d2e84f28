/*
 * The edge's Kafka producer. One struct ingest_producer wraps one idempotent librdkafka
 * producer (enable.idempotence=true, acks=all) writing to one topic, and reports per call
 * of ingest_producer_send -- one HTTP request's accepted events -- when every message of the
 * call has its delivery report: how many were delivered and which failed and why. Every
 * message carries the headers `sluice-tenant: <tenant id>` and `sluice-schema: 1`.
 *
 * This file leaves to its callers: answering the request, spooling failed messages to disk
 * (the edge answers 2xx only when every event is in Kafka or fsync'ed to the spool),
 * answering 429/503 when even the spool cannot take them, and choosing each message's key
 * (ingest_producer_key_for implements SLUICE_KAFKA_PARTITION_KEY for them).
 *
 * Threads: create starts one poll thread that serves librdkafka's delivery reports and its
 * error and statistics callbacks until destroy; every ingest_producer_done_cb runs on that
 * thread, never on the caller's. send, is_healthy and stats may be called from any thread at
 * the same time, flush from any thread but the poll thread (so never from a done callback),
 * destroy once, when no other call is running or will follow. librdkafka's own log lines
 * go to sl_log, component "kafka", from librdkafka's internal threads.
 *
 * Memory is bounded by SLUICE_KAFKA_MAX_INFLIGHT_MESSAGES (librdkafka's
 * queue.buffering.max.messages): past it, send refuses messages with queue full.
 */
#ifndef SLUICE_INGEST_PRODUCER_H
#define SLUICE_INGEST_PRODUCER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "err.h"
#include "metrics.h"

/*
 * Settings of the producer (SLUICE_KAFKA_*). The brokers are not here: SLUICE_KAFKA_BROKERS
 * belongs to sluice-ingest's own settings and is passed to ingest_producer_create.
 * Strings are owned by the cfg module (sl_cfg_fini).
 */
struct ingest_producer_settings {
    char *topic;                   /* SLUICE_KAFKA_TOPIC, e.g. "sluice.events" */
    char *compression;             /* SLUICE_KAFKA_COMPRESSION: none|gzip|snappy|lz4|zstd */
    int64_t linger_ms;             /* SLUICE_KAFKA_LINGER_MS (linger.ms) */
    int64_t batch_messages;        /* SLUICE_KAFKA_BATCH_MESSAGES (batch.num.messages) */
    int64_t batch_bytes;           /* SLUICE_KAFKA_BATCH_BYTES (batch.size) */
    int64_t delivery_timeout_ms;   /* SLUICE_KAFKA_DELIVERY_TIMEOUT_MS (message.timeout.ms) */
    int64_t max_inflight_messages; /* SLUICE_KAFKA_MAX_INFLIGHT_MESSAGES
                                    * (queue.buffering.max.messages) */
    char *partition_key;           /* SLUICE_KAFKA_PARTITION_KEY: tenant|session|random */
    char *client_id;               /* SLUICE_KAFKA_CLIENT_ID (client.id) */
};

/* The producer's settings table (SLUICE_KAFKA_* but the brokers), bound to the struct above. */
extern const struct sl_cfg_opt ingest_producer_cfg_opts[];
extern const size_t ingest_producer_cfg_n_opts;

struct ingest_producer;

/* One message of a send. Every pointer is borrowed for the call only (librdkafka copies). */
struct ingest_producer_msg {
    const char *key;       /* partition key bytes; NULL (key_len 0): random partition */
    size_t key_len;
    const void *value;     /* the normalized event; NULL only when value_len is 0 */
    size_t value_len;
    const char *tenant_id; /* NUL-terminated, not NULL: the sluice-tenant header */
};

/* One failed message of a send. */
struct ingest_producer_failure {
    size_t index;       /* position of the message in the msgs array given to send */
    int kafka_err;      /* rd_kafka_resp_err_t, e.g. RD_KAFKA_RESP_ERR__MSG_TIMED_OUT */
    const char *reason; /* static class, the reason label of sluice_kafka_messages_failed_total:
                         * "timeout", "queue_full", "purged", "unknown_topic", "too_large",
                         * "fatal" or "other" */
    const char *error;  /* static text from rd_kafka_err2str */
};

/* Outcome of one send, given to its done callback. */
struct ingest_producer_result {
    size_t n;           /* messages in the send */
    size_t n_delivered; /* acknowledged by the broker with acks=all */
    size_t n_failed;    /* n - n_delivered: entries in failures */
    /* Ascending by index; NULL when n_failed is 0. Borrowed: valid during the callback only. */
    const struct ingest_producer_failure *failures;
};

/*
 * Runs once per successful send, on the producer's poll thread, after every message of the
 * send has its outcome. user is the pointer given to send; res is borrowed for the call.
 * It must not block for long (it holds up every other delivery report), and must not call
 * ingest_producer_flush or ingest_producer_destroy; calling ingest_producer_send is fine.
 */
typedef void (*ingest_producer_done_cb)(void *user, const struct ingest_producer_result *res);

/* Counters since create, for GET /stats. */
struct ingest_producer_stats {
    uint64_t inflight_messages; /* handed to librdkafka, no delivery report yet */
    uint64_t delivered;         /* delivered messages */
    uint64_t failed;            /* failed messages, refused ones included (also those of a
                                 * send that returned an error) */
    uint64_t queue_full;        /* of those, refused at once because the queue was full */
};

/*
 * Creates the producer and starts its poll thread. Does not wait for a broker: unreachable
 * brokers show as failed deliveries after the delivery timeout and in is_healthy.
 *
 *   out      returns new: the producer (free with ingest_producer_destroy); NULL on failure
 *   brokers  bootstrap "host:port,..." (SLUICE_KAFKA_BROKERS); borrowed, copied
 *   s        borrowed; copied what is needed, so it may be freed after
 *   metrics  may be NULL; kept: must outlive the producer. Registers
 *            sluice_kafka_messages_delivered_total, sluice_kafka_messages_failed_total{reason},
 *            sluice_kafka_inflight_messages and sluice_kafka_delivery_seconds (histogram,
 *            from send to delivery report)
 *   err      may be NULL
 *
 * Fails with SL_EINVAL (no brokers, bad settings such as a linger not below the delivery
 * timeout, or a value librdkafka refuses; err names the setting) or SL_ENOMEM.
 */
int ingest_producer_create(struct ingest_producer **out, const char *brokers,
                           const struct ingest_producer_settings *s, struct sl_metrics *metrics,
                           struct sl_err *err);

/*
 * Produces the n messages to the topic and calls cb once every one of them has an outcome.
 *
 * The contract, exactly:
 * - Returns 0: cb runs exactly once, on the poll thread, with res->n == n and each message
 *   counted once, delivered or failed. It may run before send has returned to its caller,
 *   so have user ready before calling send and do not touch it after. Messages librdkafka
 *   refused at once (queue full, message too large, unknown topic, fatal producer state)
 *   count as failed in that same callback; the others complete normally (delivery report,
 *   or failure after the delivery timeout, or purge at destroy). After a queue-full or fatal
 *   refusal the remaining messages of the call are not tried and fail with the same error.
 *   n == 0 succeeds too, and cb reports 0 of 0.
 * - Returns a negative SL_E code: cb never runs and no message of the call went to Kafka.
 *   SL_EBUSY: the queue was full at the first message (SLUICE_KAFKA_MAX_INFLIGHT_MESSAGES
 *   in flight): answer 429/503 or spool. SL_EINVAL: bad arguments (a NULL tenant_id, a
 *   NULL value or key with a length), or every message was too large. SL_ENOTFOUND: the
 *   topic does not exist. SL_ESTATE: the producer hit a fatal error. SL_ENOMEM. SL_ESERVER:
 *   another librdkafka refusal. err->remote_code is the rd_kafka_resp_err_t then.
 *
 *   p     borrowed
 *   msgs  n messages, borrowed for the call: keys, values and tenant ids are copied
 *   cb    not NULL
 *   user  kept: given to cb, which may free it
 *   err   may be NULL
 *
 * Any thread, done callbacks included.
 */
int ingest_producer_send(struct ingest_producer *p, const struct ingest_producer_msg *msgs,
                         size_t n, ingest_producer_done_cb cb, void *user, struct sl_err *err);

/*
 * Waits until every send's callback has run (for a graceful shutdown, before destroy).
 * Returns 0, or SL_ETIMEDOUT when some remain after timeout_ms (they stay pending), or
 * SL_ESTATE when called on the poll thread. Any thread but the poll thread.
 */
int ingest_producer_flush(struct ingest_producer *p, int timeout_ms);

/*
 * Stops the producer and frees it. Messages still queued or in flight are purged
 * (RD_KAFKA_PURGE_F_QUEUE|RD_KAFKA_PURGE_F_INFLIGHT): every pending callback still runs
 * exactly once, on the poll thread, reporting them failed with reason "purged", before
 * destroy returns. Purged in-flight messages may still have reached Kafka, so a caller that
 * spools them may duplicate them (the loader's tables are built for duplicates). Call
 * ingest_producer_flush first to deliver what can be. Accepts NULL.
 */
void ingest_producer_destroy(struct ingest_producer *p);

/*
 * Whether a broker is reachable: false after librdkafka reported all brokers down or a
 * fatal error, true again after a delivery succeeds or the statistics (every second) show a
 * broker up. True after create until the first connection attempts fail. Any thread.
 */
bool ingest_producer_is_healthy(struct ingest_producer *p);

/* True once librdkafka reported a fatal error (e.g. an idempotence failure): this producer
 * never delivers again and must be destroyed and created anew. Any thread. */
bool ingest_producer_is_fatal(struct ingest_producer *p);

/* Fills *out with the counters since create. Any thread, never fails. */
void ingest_producer_stats(struct ingest_producer *p, struct ingest_producer_stats *out);

/*
 * The key of a message under s->partition_key: "tenant" returns tenant_id; "session"
 * returns session_id, or tenant_id when session_id is NULL or empty; "random" returns NULL
 * (no key: librdkafka's consistent_random partitioner picks a partition at random). *len
 * gets the key's length (0 for NULL). The result borrows from the arguments. Never fails.
 */
const char *ingest_producer_key_for(const struct ingest_producer_settings *s,
                                    const char *tenant_id, const char *session_id,
                                    size_t *len);

#endif

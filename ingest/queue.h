/*
 * Where accepted events become durable. With brokers configured, a request's events go to
 * Kafka (idempotent, acks=all); those Kafka cannot take in time (broker down, delivery
 * timeout, full queue) are appended to the disk spool instead, and a replayer thread drains
 * the spool back to Kafka in order once the broker answers again. With no brokers, the
 * spool is the queue (the embedded default) and the loader drains it.
 *
 * Either way the done callback says "durable" only when every event is acknowledged by
 * Kafka or fsync'ed to the spool. Events waiting for that are bounded; past the bound,
 * submit refuses at once so the edge answers 429 instead of growing memory.
 */
#ifndef SLUICE_INGEST_QUEUE_H
#define SLUICE_INGEST_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "err.h"
#include "metrics.h"
#include "producer.h"
#include "spool.h"

struct ingest_queue;

struct ingest_queue_settings {
    int64_t spool_max_bytes;     /* SLUICE_SPOOL_MAX_BYTES */
    int64_t spool_segment_bytes; /* SLUICE_SPOOL_SEGMENT_BYTES */
    int64_t max_inflight_events; /* SLUICE_MAX_INFLIGHT_EVENTS */
    int64_t replay_batch;        /* SLUICE_SPOOL_REPLAY_BATCH */
};

extern const struct sl_cfg_opt ingest_queue_cfg_opts[];
extern const size_t ingest_queue_cfg_n_opts;

/* How a submit ended. */
struct ingest_queue_outcome {
    int status;       /* 0: every event durable; SL_EBUSY: the spool is full; SL_EIO: failed */
    size_t n_kafka;   /* acknowledged by Kafka */
    size_t n_spooled; /* fsync'ed to the spool */
};

/* Runs exactly once per successful submit, on the submitting thread (spool) or the
 * producer's poll thread (Kafka). Must not block for long. */
typedef void (*ingest_queue_done_cb)(void *user, const struct ingest_queue_outcome *o);

/*
 * Opens the spool in spool_dir and, when brokers is not empty, the Kafka producer and the
 * replayer thread (which also replaces a producer that hit a fatal error). ps is kept (it
 * must outlive the queue) and may be NULL without brokers; metrics may be NULL (kept
 * otherwise); brokers and spool_dir are copied.
 */
int ingest_queue_create(struct ingest_queue **out, const char *brokers,
                        const struct ingest_producer_settings *ps, const char *spool_dir,
                        const struct ingest_queue_settings *qs, struct sl_metrics *metrics,
                        struct sl_err *err);

/*
 * Makes n events durable. msgs and everything they point to are kept until cb has run.
 * Returns 0 and cb runs exactly once later (or before submit returns); or, without ever
 * running cb: SL_EBUSY when too many events are already waiting (answer 429), SL_ENOMEM.
 * Any thread.
 */
int ingest_queue_submit(struct ingest_queue *q, const struct ingest_producer_msg *msgs,
                        size_t n, ingest_queue_done_cb cb, void *user, struct sl_err *err);

/* Whether a submit could become durable now: Kafka healthy, or room in the spool. */
bool ingest_queue_is_ready(struct ingest_queue *q);

/* Whether Kafka is configured (false: the spool is the queue). */
bool ingest_queue_has_kafka(const struct ingest_queue *q);

/* The spool, for the in-process loader of the embedded default (borrowed). */
struct ingest_spool *ingest_queue_spool(struct ingest_queue *q);

struct ingest_queue_stats {
    uint64_t inflight_events;
    uint64_t kafka_events;
    uint64_t spooled_events;
    uint64_t replayed_events;
    bool is_kafka_healthy;
    struct ingest_spool_stats spool;
};

void ingest_queue_stats(struct ingest_queue *q, struct ingest_queue_stats *out);

/*
 * Shuts down: waits up to flush_ms for Kafka deliveries, spools whatever Kafka did not
 * take (every pending callback runs first), stops the replayer, closes the spool.
 * Accepts NULL.
 */
void ingest_queue_destroy(struct ingest_queue *q, int flush_ms);

/* Encodes one message as a spool record: new buffer (sl_free) of *len bytes. */
int ingest_queue_encode(const struct ingest_producer_msg *m, unsigned char **out, size_t *len);

/* Decodes a spool record; the message points into rec (borrowed). SL_EINVAL if corrupt.
 * tenant_buf receives the NUL-terminated tenant id. */
int ingest_queue_decode(const void *rec, size_t len, struct ingest_producer_msg *m,
                        char *tenant_buf, size_t tenant_cap);

#endif

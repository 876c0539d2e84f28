/*
 * Dead letters: messages the loader can never load (the encoder refuses them, or ClickHouse
 * rejects their row), kept with the reason so an operator can inspect them and re-inject
 * them after a fix. This file owns both places they go and both ways back:
 *
 * - Kafka mode: the dead-letter topic (SLUICE_KAFKA_DLQ_TOPIC). The message keeps the
 *   original key, value and headers (sluice-tenant, ...) and gets the headers below naming
 *   the reason and the original topic, partition and offset. Produced by an idempotent
 *   producer with acks=all; the loader commits the original offsets only after the dead
 *   letter is acknowledged.
 * - Spool mode (no broker, so no topic): JSON lines in the folder <spool_dir>/dead-letters/,
 *   file dead-letters.jsonl, one object per message:
 *     {"time_ms":N,"time":"...Z","reason":"...","tenant_id":"..."|null,"key":"..."|null,
 *      "value":"<the event JSON as text>"}   ("value_hex" instead when it is not UTF-8)
 *   appended and fsync'ed before the spool cursor moves past the message. A replay moves
 *   the lines that loaded to replayed.jsonl in the same folder (an audit trail) and leaves
 *   the ones that still fail, with their new reason, in dead-letters.jsonl.
 *
 * Reading them back (`sluice dlq list|replay`): list walks the topic (or the file);
 * replay re-produces each dead letter to its original topic and then commits the
 * dead-letter topic's offsets for consumer group "sluice-dlq-replay", so a dead letter is
 * replayed once (a crash between the two replays the uncommitted ones again; the loader's
 * tables collapse the duplicate by event id). A replayed message that still cannot load
 * comes back to the dead letters with its new reason. In spool mode replay inserts the
 * dead letters straight into ClickHouse with the loader's encoder, since the spool belongs
 * to the running sluice-ingest.
 *
 * Threads: a writer is used by one thread at a time; list and replay block the caller.
 */
#ifndef SLUICE_INGEST_DLQ_H
#define SLUICE_INGEST_DLQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "ch.h"
#include "err.h"

/* Headers a dead letter carries in Kafka mode (the original headers are kept too). */
#define INGEST_DLQ_HEADER_REASON "sluice-dlq-reason"
#define INGEST_DLQ_HEADER_TOPIC "sluice-original-topic"
#define INGEST_DLQ_HEADER_PARTITION "sluice-original-partition"
#define INGEST_DLQ_HEADER_OFFSET "sluice-original-offset"
#define INGEST_DLQ_HEADER_TIME "sluice-dlq-time-ms"
/* Added to a message re-produced by replay: "<dlq topic>/<partition>/<offset>". */
#define INGEST_DLQ_HEADER_REPLAYED_FROM "sluice-replayed-from"
/* The consumer group whose committed offsets mark what replay has done. */
#define INGEST_DLQ_REPLAY_GROUP "sluice-dlq-replay"
/* File names in the dead-letter folder. */
#define INGEST_DLQ_FILE "dead-letters.jsonl"
#define INGEST_DLQ_REPLAYED_FILE "replayed.jsonl"

/* One dead letter as written or read back. Pointers are borrowed. */
struct ingest_dlq_record {
    const char *reason;    /* why it cannot load; NUL-terminated */
    const char *tenant_id; /* the sluice-tenant header / tenant; NULL if unknown */
    const void *key;       /* NULL when key_len is 0 */
    size_t key_len;
    const void *value;     /* the message as it was consumed */
    size_t value_len;
    int64_t time_ms;       /* when it became a dead letter, unix ms; 0 if unknown */
    /* Kafka mode: where it came from (topic NULL in spool mode). */
    const char *topic;
    int32_t partition;
    int64_t offset;
    /* Read back only: where it sits in the dead letters, and whether replay passed it. */
    int32_t dlq_partition; /* -1 for the spool-mode file */
    int64_t dlq_offset;    /* Kafka offset, or the line number (from 1) in the file */
    bool is_replayed;
};

/*
 * Returns "<spool_dir>/dead-letters" in *out (returns new; free with sl_free). Fails with
 * SL_ENOMEM only.
 */
int ingest_dlq_folder(const char *spool_dir, char **out);

/*
 * Whether a failed ClickHouse insert (rc and err from sl_ch_insert, borrowed) means the
 * data itself is refused -- parse errors, type mismatches, a throwIf or constraint in the
 * table -- so the same rows will always fail and may be bisected and dead-lettered.
 * Everything else (network, timeouts, transient codes, and configuration or schema errors
 * such as an unknown table, column or user, or a code not known here) is "unavailable":
 * retried with backoff, never blamed on a row, so a broken setup cannot send good events
 * to the dead letters. Never fails.
 */
bool ingest_dlq_is_rejection(int rc, const struct sl_err *err);

/* ---- Kafka mode: writing ---- */

struct ingest_dlq_writer;

/*
 * Creates an idempotent producer (acks=all) for the dead-letter topic. brokers and topic
 * are borrowed and copied. Does not connect. Fails with SL_EINVAL (a value librdkafka
 * refuses) or SL_ENOMEM; *out is NULL then.
 */
int ingest_dlq_writer_create(struct ingest_dlq_writer **out, const char *brokers,
                             const char *topic, struct sl_err *err);

/* Stops the producer (what was not flushed is dropped) and frees it. Accepts NULL. */
void ingest_dlq_writer_destroy(struct ingest_dlq_writer *w);

/*
 * Queues one dead letter. rec (and what it points to) and orig_headers (the original
 * message's headers, may be NULL) are borrowed and copied. Delivery is only known at
 * flush. Fails with SL_EBUSY (local queue full: flush first), SL_ESTATE (the producer hit a
 * fatal error: destroy it and create a new one) or SL_ESERVER.
 */
int ingest_dlq_writer_add(struct ingest_dlq_writer *w, const struct ingest_dlq_record *rec,
                          const rd_kafka_headers_t *orig_headers, struct sl_err *err);

/*
 * Waits up to timeout_ms until every dead letter queued since the last flush is
 * acknowledged. Returns 0 when all were; SL_ETIMEDOUT or SL_ESERVER (err says how many
 * failed and the last error) otherwise, and the failed ones must be added again.
 */
int ingest_dlq_writer_flush(struct ingest_dlq_writer *w, int timeout_ms, struct sl_err *err);

/* ---- spool mode: writing ---- */

/*
 * Appends the n records (borrowed) as JSON lines to <folder>/dead-letters.jsonl, creating
 * the folder (0700) and file (0600) when missing, with one fsync, under an exclusive flock
 * so a concurrent replay never loses a line. Fails with SL_EIO (err names the file) or
 * SL_ENOMEM; a failed append may leave part of a line, which readers skip.
 */
int ingest_dlq_file_append(const char *folder, const struct ingest_dlq_record *recs,
                           size_t n, struct sl_err *err);

/* ---- reading back: sluice dlq list|replay ---- */

/* Where the dead letters are. */
struct ingest_dlq_source {
    const char *brokers; /* Kafka mode when not empty */
    const char *topic;   /* the dead-letter topic (Kafka mode) */
    const char *folder;  /* the dead-letter folder (spool mode) */
    int timeout_ms;      /* Kafka mode: longest wait for the broker per step */
};

/* Called per dead letter, in order (per partition in Kafka mode). rec is borrowed for the
 * call. Returning non-zero stops the walk. */
typedef int (*ingest_dlq_visit_cb)(void *user, const struct ingest_dlq_record *rec);

/*
 * Calls cb for up to limit dead letters (0: no limit): those replay has not passed yet, or
 * every one when include_replayed. Kafka mode reads each partition of the topic up to the
 * end it had when list started (a missing topic has none). Fails with SL_ENET or
 * SL_ETIMEDOUT (broker), SL_EIO (file), SL_ENOMEM; cb may have run for some then.
 */
int ingest_dlq_list(const struct ingest_dlq_source *src, size_t limit, bool include_replayed,
                    ingest_dlq_visit_cb cb, void *user, struct sl_err *err);

/* What a replay did. */
struct ingest_dlq_replay_result {
    size_t n_replayed;     /* re-produced and acknowledged (Kafka) or loaded (spool) */
    size_t n_failed;       /* could not be replayed now (stay pending, not passed) */
    size_t n_still_dead;   /* spool mode: rejected again; left in the file with the new reason */
};

/*
 * Replays up to limit (0: no limit) pending dead letters, calling cb (may be NULL) for each
 * before it is replayed; with dry_run only cb runs. Kafka mode: produces each to its
 * original topic (key, value and original headers, plus sluice-replayed-from) with an
 * idempotent producer, then commits group sluice-dlq-replay past every dead letter whose
 * delivery was acknowledged, stopping at a partition's first failure. Spool mode: encodes
 * and inserts them into ClickHouse (ch borrowed; database from ch->database) and rewrites
 * the file; ch may be NULL in Kafka mode. *out is filled either way. Fails as list, plus
 * SL_ESERVER/SL_ENET (ClickHouse down, spool mode: nothing is changed then).
 */
int ingest_dlq_replay(const struct ingest_dlq_source *src, size_t limit, bool dry_run,
                      const struct sl_ch_settings *ch, ingest_dlq_visit_cb cb, void *user,
                      struct ingest_dlq_replay_result *out, struct sl_err *err);

#endif

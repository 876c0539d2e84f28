/*
 * Internals shared by the dead-letter files: dlq.c (the Kafka writer and the producer and
 * clock helpers), dlq_file.c (the spool-mode file: lines, locking, appending, reading
 * whole), dlq_read.c (records read back from a line or a message, and list) and
 * dlq_replay.c (replay of the topic and of the file). The public interface is dlq.h.
 */
#ifndef SLUICE_INGEST_DLQ_INT_H
#define SLUICE_INGEST_DLQ_INT_H

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dlq.h"
#include "err.h"

#define INGEST_DLQ_FIELD_MAX 512

/* ---- dlq.c ---- */

int64_t ingest_dlq_mono_ms(void);
int64_t ingest_dlq_wall_ms(void);
/* librdkafka's log callback: syslog levels onto sl_log. */
void ingest_dlq_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf);
int ingest_dlq_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value,
                        struct sl_err *err);
/*
 * Waits up to timeout_ms for every queued message's report. Past it, purges what is left
 * (reported as failed) so nothing is delivered later behind the caller's back.
 */
void ingest_dlq_producer_drain(rd_kafka_t *rk, int timeout_ms);

/* ---- dlq_file.c ---- */

extern const char ingest_dlq_hexdig[];

/* One record as a JSON line (new, sl_free), "\n" included; NULL when memory ran out. */
char *ingest_dlq_record_line(const struct ingest_dlq_record *r, const char *extra_key,
                             int64_t extra_value, size_t *len);
int ingest_dlq_fsync_dir(const char *folder);
/*
 * Opens folder/name for appending under an exclusive flock, making sure the locked file is
 * still the one at that path (a replay may have replaced it). Returns the fd or -1.
 */
int ingest_dlq_open_locked(const char *folder, const char *name, bool *is_new,
                           struct sl_err *err);
/* Writes all of buf to fd and fsyncs it. */
int ingest_dlq_write_all(int fd, const char *buf, size_t len);
/* Appends lines (already built) to folder/name with one fsync. */
int ingest_dlq_append_lines(const char *folder, const char *name, const char *text,
                            size_t len, struct sl_err *err);

typedef int (*ingest_dlq_line_fn)(void *user, const char *line, size_t len, int64_t line_no);
/* Calls fn for each whole line of path (a torn last line is skipped). */
int ingest_dlq_each_line(const char *path, ingest_dlq_line_fn fn, void *user,
                         struct sl_err *err);

/* ---- dlq_read.c ---- */

/* A record read back, with the storage its pointers borrow. */
struct ingest_dlq_read_rec {
    struct ingest_dlq_record r;
    char reason[INGEST_DLQ_FIELD_MAX];
    char tenant[INGEST_DLQ_FIELD_MAX];
    char topic[INGEST_DLQ_FIELD_MAX];
    unsigned char *key_buf;   /* owned (file records with hex or text keys) */
    unsigned char *value_buf; /* owned */
    json_t *line;             /* owned: the parsed line (file records) */
};

void ingest_dlq_read_rec_fini(struct ingest_dlq_read_rec *rr);
/* Fills rr from a message of the dead-letter topic (borrows it). */
void ingest_dlq_rec_from_message(struct ingest_dlq_read_rec *rr, const rd_kafka_message_t *m);
/* Fills rr from a line of the dead-letter file; SL_EINVAL for a damaged line. */
int ingest_dlq_rec_from_line(struct ingest_dlq_read_rec *rr, const char *line, size_t len,
                             int64_t line_no, bool is_replayed);

/* A walk over the dead-letter topic's partitions, outside any consumer group rebalance. */
struct ingest_dlq_topic_reader {
    rd_kafka_t *rk;          /* consumer, group sluice-dlq-replay, never subscribes */
    int n_parts;
    int32_t *parts;
    int64_t *start;          /* first offset to read per partition */
    int64_t *end;            /* high watermark when the walk started */
    int64_t *committed;      /* the group's offset, -1 if none */
};

/* Connects, finds the partitions, their ends and the group's committed offsets. */
int ingest_dlq_topic_reader_init(struct ingest_dlq_topic_reader *t,
                                 const struct ingest_dlq_source *src, bool from_committed,
                                 struct sl_err *err);
void ingest_dlq_topic_reader_fini(struct ingest_dlq_topic_reader *t);

typedef int (*ingest_dlq_msg_fn)(void *user, const rd_kafka_message_t *m);
/*
 * Reads partition index i from its start to its end, calling fn per message; fn returns
 * non-zero to stop. Returns 0, 1 when fn stopped, or a negative code.
 */
int ingest_dlq_read_partition(struct ingest_dlq_topic_reader *t,
                              const struct ingest_dlq_source *src, int i, ingest_dlq_msg_fn fn,
                              void *user, struct sl_err *err);

#endif

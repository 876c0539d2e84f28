/*
 * Dead letters: which ClickHouse errors reject a row for good, the Kafka writer, and the
 * producer and clock helpers the other dlq files share. Formats and guarantees are
 * described in dlq.h; the spool-mode file is dlq_file.c, reading back dlq_read.c, replay
 * dlq_replay.c.
 */
#include "dlq_int.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "log.h"

#define COMPONENT "dlq"

#define KAFKA_LOG_COMPONENT "kafka"
int64_t ingest_dlq_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ingest_dlq_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool ingest_dlq_is_rejection(int rc, const struct sl_err *err)
{
    if (rc != SL_ESERVER || err == NULL) {
        return false;
    }
    switch (err->remote_code) {
    case 6:   /* CANNOT_PARSE_TEXT */
    case 26:  /* CANNOT_PARSE_QUOTED_STRING */
    case 27:  /* CANNOT_PARSE_INPUT_ASSERTION_FAILED */
    case 32:  /* ATTEMPT_TO_READ_AFTER_EOF */
    case 33:  /* CANNOT_READ_ALL_DATA */
    case 38:  /* CANNOT_PARSE_DATE */
    case 41:  /* CANNOT_PARSE_DATETIME */
    case 53:  /* TYPE_MISMATCH */
    case 69:  /* ARGUMENT_OUT_OF_BOUND */
    case 70:  /* CANNOT_CONVERT_TYPE */
    case 72:  /* CANNOT_PARSE_NUMBER */
    case 117: /* INCORRECT_DATA */
    case 131: /* TOO_LARGE_STRING_SIZE */
    case 190: /* SIZES_OF_ARRAYS_DOESNT_MATCH */
    case 246: /* CORRUPTED_DATA */
    case 395: /* FUNCTION_THROW_IF_VALUE_IS_NON_ZERO (a throwIf in a column expression) */
    case 469: /* VIOLATED_CONSTRAINT */
        return true;
    default:
        return false;
    }
}

int ingest_dlq_folder(const char *spool_dir, char **out)
{
    size_t len = strlen(spool_dir) + sizeof("/dead-letters");

    *out = sl_malloc(len);
    if (*out == NULL) {
        return SL_ENOMEM;
    }
    snprintf(*out, len, "%s/dead-letters", spool_dir);
    return 0;
}

/* librdkafka's log callback: syslog levels onto sl_log. */
void ingest_dlq_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    enum sl_log_level lvl = level <= 3 ? SL_LOG_LEVEL_ERROR
                          : level == 4 ? SL_LOG_LEVEL_WARN
                          : level <= 6 ? SL_LOG_LEVEL_INFO
                                       : SL_LOG_LEVEL_DEBUG;

    SL_LOG_AT(lvl, KAFKA_LOG_COMPONENT, NULL, "%s: %s: %s", rd_kafka_name(rk), fac, buf);
}

int ingest_dlq_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value,
                        struct sl_err *err)
{
    char errstr[256];

    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        return sl_err_set(err, SL_EINVAL, "Kafka setting %s=%s: %s", name, value, errstr);
    }
    return 0;
}

/* ---- an idempotent producer that counts its delivery reports ---- */

struct dr_count {
    size_t delivered;
    size_t failed;
    rd_kafka_resp_err_t last_err;
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct dr_count *c = opaque;
    bool *ok = m->_private;

    (void)rk;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        c->delivered++;
    }
    else {
        c->failed++;
        c->last_err = m->err;
    }
    if (ok != NULL) {
        *ok = m->err == RD_KAFKA_RESP_ERR_NO_ERROR;
    }
}

/* Creates a producer whose delivery reports go to *c (kept; served by flush/poll). */
static int producer_new(rd_kafka_t **out, const char *brokers, const char *client_id,
                        struct dr_count *c, struct sl_err *err)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[512];
    int rc;

    *out = NULL;
    rc = ingest_dlq_conf_set(conf, "bootstrap.servers", brokers, err);
    if (rc == 0) {
        rc = ingest_dlq_conf_set(conf, "client.id", client_id, err);
    }
    if (rc == 0) {
        rc = ingest_dlq_conf_set(conf, "enable.idempotence", "true", err);
    }
    if (rc == 0) {
        rc = ingest_dlq_conf_set(conf, "acks", "all", err);
    }
    if (rc == 0) {
        rc = ingest_dlq_conf_set(conf, "linger.ms", "5", err);
    }
    if (rc == 0) {
        rc = ingest_dlq_conf_set(conf, "message.timeout.ms", "60000", err);
    }
    if (rc != 0) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    rd_kafka_conf_set_log_cb(conf, ingest_dlq_on_log);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, c);
    *out = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (*out == NULL) {
        rd_kafka_conf_destroy(conf);
        return sl_err_set(err, SL_EINVAL, "cannot create a Kafka producer: %s", errstr);
    }
    return 0;
}

/*
 * Waits up to timeout_ms for every queued message's report. Past it, purges what is left
 * (reported as failed) so nothing is delivered later behind the caller's back.
 */
void ingest_dlq_producer_drain(rd_kafka_t *rk, int timeout_ms)
{
    int64_t deadline = ingest_dlq_mono_ms() + timeout_ms;

    while (rd_kafka_outq_len(rk) > 0 && ingest_dlq_mono_ms() < deadline) {
        rd_kafka_flush(rk, 100);
    }
    if (rd_kafka_outq_len(rk) > 0) {
        rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        for (int i = 0; i < 50 && rd_kafka_outq_len(rk) > 0; i++) {
            rd_kafka_flush(rk, 100);
        }
    }
    rd_kafka_poll(rk, 0);
}

/* ---- Kafka mode: writing ---- */

struct ingest_dlq_writer {
    rd_kafka_t *rk;
    char *topic;
    struct dr_count count;
    size_t queued;
};

int ingest_dlq_writer_create(struct ingest_dlq_writer **out, const char *brokers,
                             const char *topic, struct sl_err *err)
{
    struct ingest_dlq_writer *w = sl_calloc(1, sizeof(*w));
    int rc;

    *out = NULL;
    if (w == NULL || (w->topic = sl_strdup(topic)) == NULL) {
        sl_free(w);
        return sl_err_set(err, SL_ENOMEM, "out of memory creating the dead-letter writer");
    }
    rc = producer_new(&w->rk, brokers, "sluice-loader-dlq", &w->count, err);
    if (rc != 0) {
        ingest_dlq_writer_destroy(w);
        return rc;
    }
    *out = w;
    return 0;
}

void ingest_dlq_writer_destroy(struct ingest_dlq_writer *w)
{
    if (w == NULL) {
        return;
    }
    if (w->rk != NULL) {
        rd_kafka_purge(w->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(w->rk, 1000);
        rd_kafka_destroy(w->rk);
    }
    sl_free(w->topic);
    sl_free(w);
}

static void add_header_num(rd_kafka_headers_t *h, const char *name, int64_t v)
{
    char num[24];

    snprintf(num, sizeof(num), "%lld", (long long)v);
    rd_kafka_header_add(h, name, -1, num, -1);
}

int ingest_dlq_writer_add(struct ingest_dlq_writer *w, const struct ingest_dlq_record *rec,
                          const rd_kafka_headers_t *orig_headers, struct sl_err *err)
{
    rd_kafka_headers_t *h = orig_headers != NULL ? rd_kafka_headers_copy(orig_headers)
                                                 : rd_kafka_headers_new(8);
    rd_kafka_resp_err_t kerr;

    /* A dead letter of a replayed message carries only its newest verdict. */
    rd_kafka_header_remove(h, INGEST_DLQ_HEADER_REASON);
    rd_kafka_header_remove(h, INGEST_DLQ_HEADER_TOPIC);
    rd_kafka_header_remove(h, INGEST_DLQ_HEADER_PARTITION);
    rd_kafka_header_remove(h, INGEST_DLQ_HEADER_OFFSET);
    rd_kafka_header_remove(h, INGEST_DLQ_HEADER_TIME);
    rd_kafka_header_add(h, INGEST_DLQ_HEADER_REASON, -1, rec->reason, -1);
    if (rec->topic != NULL) {
        rd_kafka_header_add(h, INGEST_DLQ_HEADER_TOPIC, -1, rec->topic, -1);
        add_header_num(h, INGEST_DLQ_HEADER_PARTITION, rec->partition);
        add_header_num(h, INGEST_DLQ_HEADER_OFFSET, rec->offset);
    }
    add_header_num(h, INGEST_DLQ_HEADER_TIME, rec->time_ms);
    if (rec->tenant_id != NULL && orig_headers == NULL) {
        rd_kafka_header_add(h, "sluice-tenant", -1, rec->tenant_id, -1);
    }
    kerr = rd_kafka_producev(w->rk, RD_KAFKA_V_TOPIC(w->topic),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_KEY(rec->key, rec->key_len),
                             RD_KAFKA_V_VALUE((void *)rec->value, rec->value_len),
                             RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_headers_destroy(h); /* producev takes the headers only on success */
        if (kerr == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            return sl_err_set(err, SL_EBUSY, "dead-letter queue full");
        }
        if (kerr == RD_KAFKA_RESP_ERR__FATAL) {
            return sl_err_set(err, SL_ESTATE, "dead-letter producer failed: %s",
                              rd_kafka_err2str(kerr));
        }
        return sl_err_set(err, SL_ESERVER, "cannot produce a dead letter to %s: %s", w->topic,
                          rd_kafka_err2str(kerr));
    }
    w->queued++;
    rd_kafka_poll(w->rk, 0);
    return 0;
}

int ingest_dlq_writer_flush(struct ingest_dlq_writer *w, int timeout_ms, struct sl_err *err)
{
    size_t queued = w->queued;
    struct dr_count c;

    ingest_dlq_producer_drain(w->rk, timeout_ms);
    c = w->count;
    w->count = (struct dr_count){0};
    w->queued = 0;
    if (c.failed == 0 && c.delivered >= queued) {
        return 0;
    }
    if (rd_kafka_fatal_error(w->rk, NULL, 0) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return sl_err_set(err, SL_ESTATE, "dead-letter producer failed fatally");
    }
    return sl_err_set(err, c.last_err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT ||
                                   c.last_err == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
                                   c.last_err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT
                               ? SL_ETIMEDOUT
                               : SL_ESERVER,
                      "%zu of %zu dead letters not acknowledged by Kafka (topic %s): %s",
                      queued - c.delivered, queued, w->topic, rd_kafka_err2str(c.last_err));
}


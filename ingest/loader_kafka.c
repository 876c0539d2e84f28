/*
 * The loader in Kafka mode: one member of the consumer group on the events topic. Offsets
 * are never committed automatically (enable.auto.commit and enable.auto.offset.store are
 * off): a batch's offsets are committed, explicitly and synchronously, only after
 * ClickHouse acknowledged its rows and every dead letter of it is acknowledged by Kafka.
 *
 * When the breaker opens, every assigned partition is paused and the batch is kept; the
 * consumer is still polled so the group sees it alive. Pausing drops what was fetched but
 * not yet handed to us, and resuming fetches from the next offset after the last message we
 * got, so nothing is skipped. A revoke (rebalance, leaving the group) inserts and commits
 * the pending batch when ClickHouse is up; otherwise the batch is abandoned uncommitted and
 * whoever gets the partitions reads it again from the last commit.
 */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "dlq.h"
#include "loader_int.h"
#include "log.h"

#define COMPONENT "loader"
#define KAFKA_LOG_COMPONENT "kafka"
#define POLL_MAX_MS 100
#define DLQ_FLUSH_MS 10000
#define COMMITTED_TIMEOUT_MS 5000
#define TENANT_MAX 256

/* The next offset to read of one assigned partition, as far as commits go. */
struct committed {
    int32_t partition;
    int64_t next; /* -1 while unknown */
};

struct loader_kafka {
    struct ingest_loader *l;
    rd_kafka_t *rk;
    struct ingest_dlq_writer *dlq;
    bool is_closed;     /* rd_kafka_consumer_close ran */
    /* The batch: msgs[i] owns the message items[i] borrows its value from. */
    rd_kafka_message_t **msgs;
    struct loader_item *items;
    size_t n;
    size_t cap;
    size_t bytes;
    int64_t first_ms;   /* when the batch's first message came (monotonic) */
    int64_t started_ms; /* the batch's first insert attempt; 0 before */
    bool is_inserted;   /* ClickHouse has its rows: only dead letters and the commit remain */
    /* The assignment's committed positions, for the lag. */
    struct committed *done;
    size_t n_done;
    bool needs_committed;
    int64_t lag_at_ms;
    uint64_t n_consumer_errors;
};

/* librdkafka's log callback (its internal threads): syslog levels onto sl_log. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    enum sl_log_level lvl = SL_LOG_LEVEL_DEBUG;

    if (level <= 3) {
        lvl = SL_LOG_LEVEL_ERROR;
    }
    else if (level == 4) {
        lvl = SL_LOG_LEVEL_WARN;
    }
    else if (level <= 6) {
        lvl = SL_LOG_LEVEL_INFO;
    }
    SL_LOG_AT(lvl, KAFKA_LOG_COMPONENT, NULL, "%s: %s: %s", rd_kafka_name(rk), fac, buf);
}

/* ---- the batch ---- */

static int batch_push(struct loader_kafka *k, rd_kafka_message_t *msg)
{
    if (k->n == k->cap) {
        size_t cap = k->cap == 0 ? 1024 : k->cap * 2;
        rd_kafka_message_t **msgs = sl_realloc(k->msgs, cap * sizeof(*msgs));
        struct loader_item *items;

        if (msgs == NULL) {
            return SL_ENOMEM;
        }
        k->msgs = msgs;
        items = sl_realloc(k->items, cap * sizeof(*items));
        if (items == NULL) {
            return SL_ENOMEM;
        }
        k->items = items;
        k->cap = cap;
    }
    if (k->n == 0) {
        k->first_ms = ingest_loader_now_ms();
    }
    k->msgs[k->n] = msg;
    k->items[k->n] = (struct loader_item){
        .value = msg->payload != NULL ? msg->payload : "", .value_len = msg->len};
    k->bytes += msg->len + msg->key_len;
    k->n++;
    return 0;
}

/* Drops the batch without committing it: its messages are read again later. */
static void batch_clear(struct loader_kafka *k)
{
    ingest_loader_items_reset(k->items, k->n);
    for (size_t i = 0; i < k->n; i++) {
        rd_kafka_message_destroy(k->msgs[i]);
    }
    k->n = 0;
    k->bytes = 0;
    k->first_ms = 0;
    k->started_ms = 0;
    k->is_inserted = false;
}

static bool batch_is_due(struct loader_kafka *k)
{
    const struct ingest_loader_settings *s = &k->l->s;

    return k->n > 0 && ((int64_t)k->n >= s->batch_rows || (int64_t)k->bytes >= s->batch_bytes ||
                        ingest_loader_now_ms() - k->first_ms >= s->batch_age_ms);
}

/* ---- committed positions and lag ---- */

static struct committed *committed_of(struct loader_kafka *k, int32_t partition)
{
    for (size_t i = 0; i < k->n_done; i++) {
        if (k->done[i].partition == partition) {
            return &k->done[i];
        }
    }
    return NULL;
}

/* Rebuilds the table from an assignment (NULL: none); positions unknown until asked. */
static void committed_reset(struct loader_kafka *k, const rd_kafka_topic_partition_list_t *parts)
{
    struct committed *done = NULL;
    int n = parts != NULL ? parts->cnt : 0;

    sl_free(k->done);
    k->done = NULL;
    k->n_done = 0;
    ingest_loader_clear_lag(k->l);
    if (n > 0) {
        done = sl_calloc((size_t)n, sizeof(*done));
    }
    if (done == NULL) {
        return;
    }
    for (int i = 0; i < n; i++) {
        done[i] = (struct committed){.partition = parts->elems[i].partition, .next = -1};
    }
    k->done = done;
    k->n_done = (size_t)n;
    k->needs_committed = true;
}

/* Asks the group coordinator once per assignment where each partition stands. */
static void committed_fetch(struct loader_kafka *k)
{
    rd_kafka_topic_partition_list_t *list = NULL;

    k->needs_committed = false;
    if (k->n_done == 0) {
        return;
    }
    list = rd_kafka_topic_partition_list_new((int)k->n_done);
    for (size_t i = 0; i < k->n_done; i++) {
        rd_kafka_topic_partition_list_add(list, k->l->topic, k->done[i].partition);
    }
    if (rd_kafka_committed(k->rk, list, COMMITTED_TIMEOUT_MS) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < list->cnt; i++) {
            struct committed *c = committed_of(k, list->elems[i].partition);

            if (c != NULL && c->next < 0 && list->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                int64_t lo = 0, hi = 0;

                if (list->elems[i].offset >= 0) {
                    c->next = list->elems[i].offset;
                }
                else if (rd_kafka_query_watermark_offsets(k->rk, k->l->topic, c->partition,
                                                          &lo, &hi, COMMITTED_TIMEOUT_MS) ==
                         RD_KAFKA_RESP_ERR_NO_ERROR) {
                    c->next = lo; /* nothing committed: auto.offset.reset=earliest */
                }
            }
        }
    }
    rd_kafka_topic_partition_list_destroy(list);
}

/* Lag per partition: the end of the log (as last fetched) minus what is committed. */
static void update_lag(struct loader_kafka *k)
{
    int64_t now = ingest_loader_now_ms();

    if (now - k->lag_at_ms < 1000) {
        return;
    }
    k->lag_at_ms = now;
    if (k->needs_committed) {
        committed_fetch(k);
    }
    for (size_t i = 0; i < k->n_done; i++) {
        int64_t lo = 0, hi = -1;
        int64_t lag = -1;

        if (k->done[i].next >= 0 &&
            rd_kafka_get_watermark_offsets(k->rk, k->l->topic, k->done[i].partition, &lo,
                                           &hi) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            hi >= 0) {
            lag = hi > k->done[i].next ? hi - k->done[i].next : 0;
        }
        ingest_loader_set_lag(k->l, k->done[i].partition, lag);
    }
}

/* ---- releasing a batch ---- */

static void header_str(rd_kafka_headers_t *hdrs, const char *name, char *out, size_t cap)
{
    const void *val = NULL;
    size_t size = 0;

    out[0] = '\0';
    if (hdrs != NULL &&
        rd_kafka_header_get_last(hdrs, name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        val != NULL && size < cap) {
        memcpy(out, val, size);
        out[size] = '\0';
    }
}

/* Sends the batch's dead letters and waits for Kafka's acknowledgement. */
static int send_dead_letters(struct loader_kafka *k, struct sl_err *err)
{
    struct ingest_loader *l = k->l;
    struct timespec now;
    size_t n_dead = 0;
    int rc = 0;

    clock_gettime(CLOCK_REALTIME, &now);
    for (size_t i = 0; i < k->n && rc == 0; i++) {
        rd_kafka_message_t *m = k->msgs[i];
        rd_kafka_headers_t *hdrs = NULL;
        char tenant[TENANT_MAX];
        struct ingest_dlq_record rec;

        if (k->items[i].fate == LOADER_LIVE) {
            continue;
        }
        if (k->dlq == NULL) {
            rc = ingest_dlq_writer_create(&k->dlq, l->brokers, l->s.dlq_topic, err);
            if (rc != 0) {
                break;
            }
        }
        if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            hdrs = NULL;
        }
        header_str(hdrs, "sluice-tenant", tenant, sizeof(tenant));
        rec = (struct ingest_dlq_record){
            .reason = k->items[i].reason != NULL ? k->items[i].reason : "cannot load",
            .tenant_id = tenant[0] != '\0' ? tenant : NULL,
            .key = m->key, .key_len = m->key_len,
            .value = m->payload, .value_len = m->len,
            .time_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000,
            .topic = rd_kafka_topic_name(m->rkt), .partition = m->partition,
            .offset = m->offset};
        rc = ingest_dlq_writer_add(k->dlq, &rec, hdrs, err);
        if (rc == SL_EBUSY) {
            rc = ingest_dlq_writer_flush(k->dlq, DLQ_FLUSH_MS, err);
            if (rc == 0) {
                rc = ingest_dlq_writer_add(k->dlq, &rec, hdrs, err);
            }
        }
        n_dead++;
    }
    if (rc == 0 && n_dead > 0) {
        rc = ingest_dlq_writer_flush(k->dlq, DLQ_FLUSH_MS, err);
    }
    if (rc == SL_ESTATE) {
        /* A fatal producer error (idempotence broken): a new producer next time. */
        ingest_dlq_writer_destroy(k->dlq);
        k->dlq = NULL;
    }
    return rc;
}

/* Commits, per partition, the offset after the batch's last message. */
static void commit_batch(struct loader_kafka *k)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(8);
    rd_kafka_resp_err_t kerr;

    for (size_t i = 0; i < k->n; i++) {
        rd_kafka_message_t *m = k->msgs[i];
        rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_find(list, rd_kafka_topic_name(m->rkt), m->partition);

        if (tp == NULL) {
            tp = rd_kafka_topic_partition_list_add(list, rd_kafka_topic_name(m->rkt),
                                                   m->partition);
            tp->offset = m->offset + 1;
        }
        else if (m->offset + 1 > tp->offset) {
            tp->offset = m->offset + 1;
        }
    }
    kerr = rd_kafka_commit(k->rk, list, 0);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* Inserted but not committed: read and inserted again later; the table collapses
         * the duplicates by event id. Nothing is lost, so go on. */
        sl_log_warn(COMPONENT, "cannot commit the offsets of %zu loaded events (%s); they will "
                    "be loaded again", k->n, rd_kafka_err2str(kerr));
    }
    else {
        for (int i = 0; i < list->cnt; i++) {
            struct committed *c = committed_of(k, list->elems[i].partition);

            if (c != NULL) {
                c->next = list->elems[i].offset;
            }
        }
    }
    rd_kafka_topic_partition_list_destroy(list);
}

/*
 * Inserts the batch, sends its dead letters, commits it. Returns 0 when released, or the
 * failure with *why saying which breaker state it means; the batch is kept for a retry.
 */
static int flush(struct loader_kafka *k, enum ingest_loader_state *why, struct sl_err *err)
{
    struct ingest_loader *l = k->l;
    int rc;

    if (k->n == 0) {
        return 0;
    }
    if (k->started_ms == 0) {
        k->started_ms = ingest_loader_now_ms();
    }
    if (!k->is_inserted) {
        rc = ingest_loader_load(l, k->items, k->n, err);
        if (rc != 0) {
            *why = INGEST_LOADER_CLICKHOUSE_DOWN;
            return rc;
        }
        k->is_inserted = true;
    }
    rc = send_dead_letters(k, err);
    if (rc != 0) {
        *why = INGEST_LOADER_DEAD_LETTERS_DOWN;
        return rc;
    }
    commit_batch(k);
    ingest_loader_count_batch(l, k->items, k->n,
                              (double)(ingest_loader_now_ms() - k->started_ms) / 1000.0);
    batch_clear(k);
    return 0;
}

static void set_paused(struct loader_kafka *k, bool is_paused)
{
    rd_kafka_topic_partition_list_t *parts = NULL;

    if (rd_kafka_assignment(k->rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR || parts == NULL) {
        return;
    }
    if (parts->cnt > 0) {
        if (is_paused) {
            rd_kafka_pause_partitions(k->rk, parts);
        }
        else {
            rd_kafka_resume_partitions(k->rk, parts);
        }
    }
    rd_kafka_topic_partition_list_destroy(parts);
}

/* Flushes a due batch; on failure opens the breaker and pauses consumption. */
static void flush_or_pause(struct loader_kafka *k)
{
    enum ingest_loader_state why = INGEST_LOADER_CLICKHOUSE_DOWN;
    struct sl_err err;

    sl_err_clear(&err);
    if (flush(k, &why, &err) != 0) {
        ingest_loader_breaker_fail(k->l, why, &err);
        set_paused(k, true);
    }
}

/* The breaker's half-open step: probe, retry the batch, resume on success. */
static void half_open(struct loader_kafka *k)
{
    enum ingest_loader_state why = INGEST_LOADER_CLICKHOUSE_DOWN;
    struct sl_err err;

    sl_err_clear(&err);
    if (ingest_loader_breaker_probe(k->l) != 0) {
        return;
    }
    if (flush(k, &why, &err) != 0) {
        ingest_loader_breaker_fail(k->l, why, &err);
        return;
    }
    ingest_loader_breaker_ok(k->l);
    set_paused(k, false);
}

/* ---- the group ---- */

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t kerr,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct loader_kafka *k = opaque;

    if (kerr == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        rd_kafka_assign(rk, parts);
        committed_reset(k, parts);
        if (k->l->is_open) {
            rd_kafka_pause_partitions(rk, parts);
        }
        sl_log_info(COMPONENT, "assigned %d partitions of %s", parts->cnt, k->l->topic);
        return;
    }
    if (k->n > 0) {
        enum ingest_loader_state why = INGEST_LOADER_CLICKHOUSE_DOWN;
        struct sl_err err;
        bool is_lost = rd_kafka_assignment_lost(rk) != 0;
        size_t n = k->n;

        sl_err_clear(&err);
        if (is_lost || k->l->is_open) {
            /* Not committed, so whoever gets the partitions reads these again. */
            sl_log_info(COMPONENT, "partitions %s: leaving %zu unloaded events uncommitted",
                        is_lost ? "lost" : "revoked while ClickHouse is down", n);
            batch_clear(k);
        }
        else if (flush(k, &why, &err) != 0) {
            sl_log_info(COMPONENT, "partitions revoked: %zu events not loaded (%s) stay "
                        "uncommitted", n, err.msg);
            ingest_loader_breaker_fail(k->l, why, &err);
            batch_clear(k);
        }
    }
    rd_kafka_assign(rk, NULL);
    committed_reset(k, NULL);
}

static void conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, int *rc,
                     struct sl_err *err)
{
    char errstr[256];

    if (*rc == 0 && rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) !=
                        RD_KAFKA_CONF_OK) {
        *rc = sl_err_set(err, SL_EINVAL, "Kafka consumer setting %s=%s: %s", name, value,
                         errstr);
    }
}

int ingest_loader_kafka_create(struct ingest_loader *l, struct sl_err *err)
{
    struct loader_kafka *k = sl_calloc(1, sizeof(*k));
    rd_kafka_conf_t *conf = NULL;
    char num[32], errstr[512];
    int rc = 0;

    if (k == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory creating the Kafka consumer");
    }
    k->l = l;
    l->kafka = k;
    conf = rd_kafka_conf_new();
    conf_set(conf, "bootstrap.servers", l->brokers, &rc, err);
    conf_set(conf, "group.id", l->s.group_id, &rc, err);
    conf_set(conf, "client.id", "sluice-loader", &rc, err);
    conf_set(conf, "enable.auto.commit", "false", &rc, err);
    conf_set(conf, "enable.auto.offset.store", "false", &rc, err);
    conf_set(conf, "auto.offset.reset", "earliest", &rc, err);
    conf_set(conf, "enable.partition.eof", "false", &rc, err);
    snprintf(num, sizeof(num), "%lld", (long long)l->s.session_timeout_ms);
    conf_set(conf, "session.timeout.ms", num, &rc, err);
    snprintf(num, sizeof(num), "%lld",
             (long long)(l->s.session_timeout_ms / 3 < 3000 ? l->s.session_timeout_ms / 3
                                                             : 3000));
    conf_set(conf, "heartbeat.interval.ms", num, &rc, err);
    /* Prefetch about one batch: memory stays bounded by the batch settings. */
    snprintf(num, sizeof(num), "%lld",
             (long long)(l->s.batch_bytes / 1024 > 1024 ? l->s.batch_bytes / 1024 : 1024));
    conf_set(conf, "queued.max.messages.kbytes", num, &rc, err);
    if (rc != 0) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_opaque(conf, k);
    k->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (k->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        return sl_err_set(err, SL_EINVAL, "cannot create the Kafka consumer: %s", errstr);
    }
    rd_kafka_poll_set_consumer(k->rk);
    if (l->s.dlq_topic == NULL || l->s.dlq_topic[0] == '\0') {
        return sl_err_set(err, SL_EINVAL, "SLUICE_KAFKA_DLQ_TOPIC is empty: the loader needs a "
                          "dead-letter topic");
    }
    return ingest_dlq_writer_create(&k->dlq, l->brokers, l->s.dlq_topic, err);
}

void ingest_loader_kafka_destroy(struct ingest_loader *l)
{
    struct loader_kafka *k = l->kafka;

    if (k == NULL) {
        return;
    }
    batch_clear(k);
    if (k->rk != NULL) {
        /* A consumer that never subscribed (start failed) has no group to leave. */
        rd_kafka_destroy_flags(k->rk, k->is_closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    }
    ingest_dlq_writer_destroy(k->dlq);
    sl_free(k->msgs);
    sl_free(k->items);
    sl_free(k->done);
    sl_free(k);
    l->kafka = NULL;
}

/* Drops the batch and moves every assigned partition back to its committed offset (the
 * beginning when that is unknown: duplicates, never a gap). */
static void rewind_to_committed(struct loader_kafka *k)
{
    rd_kafka_topic_partition_list_t *list = NULL;
    rd_kafka_error_t *kerr = NULL;

    batch_clear(k);
    if (k->needs_committed) {
        committed_fetch(k);
    }
    list = rd_kafka_topic_partition_list_new(k->n_done > 0 ? (int)k->n_done : 1);
    for (size_t i = 0; i < k->n_done; i++) {
        rd_kafka_topic_partition_list_add(list, k->l->topic, k->done[i].partition)->offset =
            k->done[i].next >= 0 ? k->done[i].next : RD_KAFKA_OFFSET_BEGINNING;
    }
    if (list->cnt > 0) {
        kerr = rd_kafka_seek_partitions(k->rk, list, COMMITTED_TIMEOUT_MS);
    }
    if (kerr != NULL) {
        sl_log_error(COMPONENT, "cannot rewind to the committed offsets: %s",
                     rd_kafka_error_string(kerr));
        rd_kafka_error_destroy(kerr);
    }
    rd_kafka_topic_partition_list_destroy(list);
}

static void on_message(struct loader_kafka *k, rd_kafka_message_t *msg)
{
    if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        k->n_consumer_errors++;
        /* Sampled: a broker that is down reports the same error again and again. */
        if ((k->n_consumer_errors & (k->n_consumer_errors - 1)) == 0) {
            sl_log_warn(COMPONENT, "consumer error #%llu: %s",
                        (unsigned long long)k->n_consumer_errors,
                        rd_kafka_message_errstr(msg));
        }
        rd_kafka_message_destroy(msg);
        return;
    }
    if (batch_push(k, msg) != 0) {
        /* Never drop a message we were handed: the next fetch would start after it and a
         * later commit would pass it. Abandon the batch and read again from the commits. */
        sl_log_error(COMPONENT, "out of memory holding a batch; reading it again");
        rd_kafka_message_destroy(msg);
        rewind_to_committed(k);
    }
}

void ingest_loader_kafka_run(struct ingest_loader *l)
{
    struct loader_kafka *k = l->kafka;
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_resp_err_t kerr;

    rd_kafka_topic_partition_list_add(topics, l->topic, RD_KAFKA_PARTITION_UA);
    kerr = rd_kafka_subscribe(k->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        sl_log_error(COMPONENT, "cannot subscribe to %s: %s", l->topic, rd_kafka_err2str(kerr));
        return;
    }
    while (!ingest_loader_is_stopping(l)) {
        int64_t timeout = POLL_MAX_MS;
        rd_kafka_message_t *msg;

        if (l->is_open) {
            if (ingest_loader_breaker_is_due(l)) {
                half_open(k);
            }
            timeout = ingest_loader_breaker_wait_ms(l);
        }
        else if (k->n > 0) {
            timeout = k->first_ms + l->s.batch_age_ms - ingest_loader_now_ms();
        }
        timeout = timeout < 0 ? 0 : (timeout > POLL_MAX_MS ? POLL_MAX_MS : timeout);
        msg = rd_kafka_consumer_poll(k->rk, (int)timeout);
        if (msg != NULL) {
            on_message(k, msg);
        }
        if (!l->is_open && batch_is_due(k)) {
            flush_or_pause(k);
        }
        update_lag(k);
        ingest_loader_tick(l);
    }
    if (k->n > 0) {
        if (!l->is_open && ingest_loader_has_time_to_flush(l)) {
            flush_or_pause(k);
        }
        if (k->n > 0) {
            sl_log_info(COMPONENT, "stopping with %zu events not loaded; they stay uncommitted "
                        "and are read again", k->n);
            batch_clear(k);
        }
    }
    /* Leaves the group: the revoke callback runs with an empty batch. */
    kerr = rd_kafka_consumer_close(k->rk);
    k->is_closed = true;
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        sl_log_warn(COMPONENT, "leaving the consumer group: %s", rd_kafka_err2str(kerr));
    }
}

/*
 * The edge's Kafka producer (see producer.h): librdkafka configuration, the poll thread,
 * per-send trackers, broker reachability and the producer's metrics.
 *
 * Each send allocates one tracker with a slot per message; a slot is its message's
 * librdkafka opaque and records the outcome. The tracker counts outcomes still to come plus
 * one reference that send holds while it enqueues, so the count cannot reach zero before
 * send has decided every message. Whoever drops it to zero completes the tracker: the poll
 * thread (in the delivery report callback) runs the done callback at once; send, when
 * every report beat it, puts the tracker on the ready list, which the poll thread drains,
 * so done callbacks only ever run on the poll thread.
 */
#include "producer.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "log.h"

#define LOG_COMPONENT "producer"
#define KAFKA_LOG_COMPONENT "kafka"

/* Longest the poll thread sleeps in rd_kafka_poll: bounds how late it notices destroy and a
 * tracker that send completed itself. */
#define POLL_WAIT_MS 100
/* While destroy waits, purge again this often: a message librdkafka was moving between its
 * queues during a purge (a retry, say) escapes it and needs another. */
#define PURGE_RETRY_MS 500
/* Statistics interval; the statistics only tell the poll thread when a broker is up again. */
#define STATS_INTERVAL_MS "1000"
#define TOPIC_NAME_MAX 249
#define HEADER_TENANT "sluice-tenant"
#define HEADER_SCHEMA "sluice-schema"
#define SCHEMA_VERSION "1"

static int check_topic(const char *key, const char *text, struct sl_err *err);
static int check_not_empty(const char *key, const char *text, struct sl_err *err);

const struct sl_cfg_opt ingest_producer_cfg_opts[] = {
    {.key = "SLUICE_KAFKA_TOPIC", .type = SL_CFG_STRING, .def = "sluice.events",
     .offset = offsetof(struct ingest_producer_settings, topic), .check = check_topic,
     .desc = "Kafka topic the edge writes events to."},
    {.key = "SLUICE_KAFKA_COMPRESSION", .type = SL_CFG_ENUM, .def = "lz4",
     .choices = "none|gzip|snappy|lz4|zstd",
     .offset = offsetof(struct ingest_producer_settings, compression),
     .desc = "Compression of the batches the edge sends to Kafka."},
    {.key = "SLUICE_KAFKA_LINGER_MS", .type = SL_CFG_INT, .def = "5", .min = 0, .max = 900000,
     .offset = offsetof(struct ingest_producer_settings, linger_ms),
     .desc = "How long the producer waits to fill a batch, in ms (linger.ms)."},
    {.key = "SLUICE_KAFKA_BATCH_MESSAGES", .type = SL_CFG_INT, .def = "10000", .min = 1,
     .max = 1000000, .offset = offsetof(struct ingest_producer_settings, batch_messages),
     .desc = "Most messages in one batch to Kafka (batch.num.messages)."},
    {.key = "SLUICE_KAFKA_BATCH_BYTES", .type = SL_CFG_BYTES, .def = "1M", .min = 1,
     .max = INT32_MAX, .offset = offsetof(struct ingest_producer_settings, batch_bytes),
     .desc = "Most bytes in one batch to Kafka (batch.size)."},
    {.key = "SLUICE_KAFKA_DELIVERY_TIMEOUT_MS", .type = SL_CFG_INT, .def = "10000", .min = 1,
     .max = 3600000, .offset = offsetof(struct ingest_producer_settings, delivery_timeout_ms),
     .desc = "An event Kafka has not acknowledged after this many ms fails and the edge "
             "spools it (message.timeout.ms). Must exceed SLUICE_KAFKA_LINGER_MS."},
    {.key = "SLUICE_KAFKA_MAX_INFLIGHT_MESSAGES", .type = SL_CFG_INT, .def = "100000",
     .min = 1, .max = 10000000,
     .offset = offsetof(struct ingest_producer_settings, max_inflight_messages),
     .desc = "Most events waiting for Kafka's acknowledgement (queue.buffering.max.messages); "
             "past it the edge spools or answers 429/503."},
    {.key = "SLUICE_KAFKA_PARTITION_KEY", .type = SL_CFG_ENUM, .def = "tenant",
     .choices = "tenant|session|random",
     .offset = offsetof(struct ingest_producer_settings, partition_key),
     .desc = "Message key, and so partition, of an event: its tenant, its session (tenant "
             "when it has none), or none (random partition)."},
    {.key = "SLUICE_KAFKA_CLIENT_ID", .type = SL_CFG_STRING, .def = "sluice-ingest",
     .offset = offsetof(struct ingest_producer_settings, client_id), .check = check_not_empty,
     .desc = "Client id the producer shows the brokers (client.id)."},
};
const size_t ingest_producer_cfg_n_opts =
    sizeof(ingest_producer_cfg_opts) / sizeof(ingest_producer_cfg_opts[0]);

/* Classes of failure: the reason label of sluice_kafka_messages_failed_total. */
enum reason {
    REASON_TIMEOUT,
    REASON_QUEUE_FULL,
    REASON_PURGED,
    REASON_UNKNOWN_TOPIC,
    REASON_TOO_LARGE,
    REASON_FATAL,
    REASON_OTHER,
    N_REASONS,
};

static const char *const reason_names[N_REASONS] = {
    [REASON_TIMEOUT] = "timeout",
    [REASON_QUEUE_FULL] = "queue_full",
    [REASON_PURGED] = "purged",
    [REASON_UNKNOWN_TOPIC] = "unknown_topic",
    [REASON_TOO_LARGE] = "too_large",
    [REASON_FATAL] = "fatal",
    [REASON_OTHER] = "other",
};

struct tracker;

/* One message of a send: its librdkafka opaque. */
struct slot {
    struct tracker *t;
    int kafka_err; /* outcome: 0 delivered, else the rd_kafka_resp_err_t */
};

/* One send. Freed after its done callback returned. */
struct tracker {
    struct ingest_producer *p;
    ingest_producer_done_cb cb;
    void *user;
    size_t n;
    atomic_size_t pending;  /* outcomes still to come, plus send's own reference */
    int64_t start_ns;       /* when send began: the delivery histogram's start */
    struct tracker *next;   /* ready list link, under p->lock */
    struct ingest_producer_failure *failures; /* n entries after the slots, filled at the end */
    struct slot slots[];    /* n entries */
};

static_assert(alignof(struct ingest_producer_failure) <= alignof(struct slot),
              "failures follow the slots in one allocation");

struct ingest_producer {
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    rd_kafka_conf_t *conf; /* until rd_kafka_new takes it */
    int64_t max_inflight_messages;

    pthread_t poll_thread;
    bool has_poll_thread;
    bool has_lock;         /* lock is initialised */
    bool has_idle;         /* idle is initialised */
    pthread_mutex_t lock;  /* guards the ready list; idle waits on it */
    pthread_cond_t idle;   /* broadcast when n_calls drops to 0 */
    struct tracker *ready_head;
    struct tracker *ready_tail;

    atomic_size_t n_calls; /* sends whose done callback has not returned yet */
    atomic_bool is_closing;
    atomic_bool is_healthy;
    atomic_bool is_fatal;
    atomic_int_fast64_t inflight;
    atomic_uint_fast64_t delivered;
    atomic_uint_fast64_t failed;
    atomic_uint_fast64_t queue_full;

    /* Metric series; NULL without a registry (updates of NULL are ignored). */
    struct sl_metrics_series *m_delivered;
    struct sl_metrics_series *m_failed[N_REASONS];
    struct sl_metrics_series *m_inflight;
    struct sl_metrics_series *m_delivery_seconds;
};

static int check_topic(const char *key, const char *text, struct sl_err *err)
{
    size_t len = strlen(text);

    if (len == 0 || len > TOPIC_NAME_MAX || strcmp(text, ".") == 0 || strcmp(text, "..") == 0) {
        return sl_err_set(err, SL_EINVAL,
                          "%s: '%s' is not a Kafka topic name (1 to %d characters, not . or ..)",
                          key, text, TOPIC_NAME_MAX);
    }
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';

        if (!ok) {
            return sl_err_set(err, SL_EINVAL,
                              "%s: '%s' is not a Kafka topic name (letters, digits, '.', '_', "
                              "'-')",
                              key, text);
        }
    }
    return 0;
}

static int check_not_empty(const char *key, const char *text, struct sl_err *err)
{
    if (text[0] == '\0') {
        return sl_err_set(err, SL_EINVAL, "%s: must not be empty", key);
    }
    return 0;
}

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static enum reason reason_of(int kafka_err)
{
    switch (kafka_err) {
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
        return REASON_TIMEOUT;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        return REASON_QUEUE_FULL;
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
        return REASON_PURGED;
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
        return REASON_UNKNOWN_TOPIC;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        return REASON_TOO_LARGE;
    case RD_KAFKA_RESP_ERR__FATAL:
        return REASON_FATAL;
    default:
        return REASON_OTHER;
    }
}

static void inflight_add(struct ingest_producer *p, int64_t delta)
{
    atomic_fetch_add_explicit(&p->inflight, delta, memory_order_relaxed);
    sl_metrics_gauge_add(p->m_inflight, (double)delta);
}

/* Counts a failed message in the stats and metrics. */
static void count_failure(struct ingest_producer *p, int kafka_err)
{
    atomic_fetch_add_explicit(&p->failed, 1, memory_order_relaxed);
    if (kafka_err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        atomic_fetch_add_explicit(&p->queue_full, 1, memory_order_relaxed);
    }
    sl_metrics_counter_add(p->m_failed[reason_of(kafka_err)], 1);
}

/* Records a change of reachability, logging only the transitions. Never undoes is_fatal. */
static void set_healthy(struct ingest_producer *p, bool is_up, const char *why)
{
    if (is_up && atomic_load(&p->is_fatal)) {
        return;
    }
    if (atomic_exchange(&p->is_healthy, is_up) != is_up) {
        if (is_up) {
            sl_log_info(LOG_COMPONENT, "Kafka is reachable again (%s)", why);
        }
        else {
            sl_log_warn(LOG_COMPONENT,
                        "Kafka is unreachable (%s): messages wait until they are delivered or "
                        "their delivery timeout passes",
                        why);
        }
    }
}

/* Signals flush when the last outstanding send is done. */
static void call_done(struct ingest_producer *p)
{
    if (atomic_fetch_sub(&p->n_calls, 1) == 1) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->idle);
        pthread_mutex_unlock(&p->lock);
    }
}

/* Runs the done callback of a tracker whose every message has its outcome, and frees it.
 * Poll thread only. */
static void complete(struct tracker *t)
{
    struct ingest_producer *p = t->p;
    struct ingest_producer_result res = {.n = t->n};

    for (size_t i = 0; i < t->n; i++) {
        int kafka_err = t->slots[i].kafka_err;

        if (kafka_err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            t->failures[res.n_failed++] = (struct ingest_producer_failure){
                .index = i,
                .kafka_err = kafka_err,
                .reason = reason_names[reason_of(kafka_err)],
                .error = rd_kafka_err2str((rd_kafka_resp_err_t)kafka_err),
            };
        }
    }
    res.n_delivered = t->n - res.n_failed;
    res.failures = res.n_failed > 0 ? t->failures : NULL;
    t->cb(t->user, &res);
    sl_free(t);
    call_done(p);
}

/* Hands a tracker send completed itself to the poll thread. */
static void push_ready(struct ingest_producer *p, struct tracker *t)
{
    pthread_mutex_lock(&p->lock);
    t->next = NULL;
    if (p->ready_tail != NULL) {
        p->ready_tail->next = t;
    }
    else {
        p->ready_head = t;
    }
    p->ready_tail = t;
    pthread_mutex_unlock(&p->lock);
}

static void run_ready(struct ingest_producer *p)
{
    struct tracker *t;

    pthread_mutex_lock(&p->lock);
    t = p->ready_head;
    p->ready_head = NULL;
    p->ready_tail = NULL;
    pthread_mutex_unlock(&p->lock);
    while (t != NULL) {
        struct tracker *next = t->next;

        complete(t);
        t = next;
    }
}

/* librdkafka's delivery report callback (rd_kafka_poll, so the poll thread). */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct ingest_producer *p = opaque;
    struct slot *slot = m->_private;
    struct tracker *t = slot->t;

    (void)rk;
    inflight_add(p, -1);
    slot->kafka_err = m->err;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        atomic_fetch_add_explicit(&p->delivered, 1, memory_order_relaxed);
        sl_metrics_counter_add(p->m_delivered, 1);
        sl_metrics_histogram_observe(p->m_delivery_seconds,
                                     (double)(now_ns() - t->start_ns) / 1e9);
        if (!atomic_load_explicit(&p->is_healthy, memory_order_relaxed)) {
            set_healthy(p, true, "a message was delivered");
        }
    }
    else {
        count_failure(p, m->err);
    }
    /* acq_rel: the last one to count down sees every slot the others wrote. */
    if (atomic_fetch_sub_explicit(&t->pending, 1, memory_order_acq_rel) == 1) {
        complete(t);
    }
}

/* librdkafka's error callback (poll thread): broker reachability and fatal errors. */
static void on_error(rd_kafka_t *rk, int code, const char *reason, void *opaque)
{
    struct ingest_producer *p = opaque;
    char fatal[512];
    rd_kafka_resp_err_t fatal_code;

    switch (code) {
    case RD_KAFKA_RESP_ERR__FATAL:
        /* The idempotent producer cannot go on without breaking its guarantees: every
         * queued and later message fails with __FATAL; only a new producer recovers. */
        fatal_code = rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        atomic_store(&p->is_fatal, true);
        atomic_store(&p->is_healthy, false);
        sl_log_error(LOG_COMPONENT, "fatal Kafka producer error, every message fails now: %s: %s",
                     rd_kafka_err2name(fatal_code), fatal);
        break;
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
        set_healthy(p, false, reason);
        break;
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__RESOLVE:
        /* One broker's connection: librdkafka logs it already, and all of them being down
         * comes as __ALL_BROKERS_DOWN. */
        sl_log_debug(LOG_COMPONENT, "Kafka connection error: %s", reason);
        break;
    default:
        sl_log_warn(LOG_COMPONENT, "Kafka error %s: %s", rd_kafka_err2name(code), reason);
        break;
    }
}

/* librdkafka's statistics callback (poll thread): marks Kafka reachable when a broker is up.
 * It never marks it unreachable: an idle connection may be down while the broker is fine;
 * that is left to __ALL_BROKERS_DOWN. */
static int on_stats(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
    struct ingest_producer *p = opaque;
    json_t *root = NULL;
    json_t *brokers;
    json_t *broker;
    const char *name;
    bool is_up = false;

    (void)rk;
    if (atomic_load_explicit(&p->is_healthy, memory_order_relaxed)) {
        return 0;
    }
    root = json_loadb(json, json_len, 0, NULL);
    brokers = json_object_get(root, "brokers");
    json_object_foreach(brokers, name, broker) {
        const char *state = json_string_value(json_object_get(broker, "state"));

        if (state != NULL && strcmp(state, "UP") == 0) {
            is_up = true;
        }
    }
    json_decref(root);
    if (is_up) {
        set_healthy(p, true, "a broker connection is up");
    }
    return 0; /* librdkafka frees json */
}

/* librdkafka's log callback (its internal threads): syslog levels onto sl_log. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    enum sl_log_level lvl = SL_LOG_LEVEL_DEBUG;

    if (level <= 3) {
        lvl = SL_LOG_LEVEL_ERROR; /* emerg, alert, crit, err */
    }
    else if (level == 4) {
        lvl = SL_LOG_LEVEL_WARN;
    }
    else if (level <= 6) {
        lvl = SL_LOG_LEVEL_INFO; /* notice, info */
    }
    SL_LOG_AT(lvl, KAFKA_LOG_COMPONENT, NULL, "%s: %s: %s", rd_kafka_name(rk), fac, buf);
}

static void *poll_main(void *arg)
{
    struct ingest_producer *p = arg;
    int64_t last_purge_ns = 0;
    bool has_purged = false;

    for (;;) {
        rd_kafka_poll(p->rk, POLL_WAIT_MS);
        run_ready(p);
        if (!atomic_load(&p->is_closing)) {
            continue;
        }
        if (atomic_load(&p->n_calls) == 0) {
            break;
        }
        if (!has_purged || now_ns() - last_purge_ns >= (int64_t)PURGE_RETRY_MS * 1000000) {
            /* Purged messages fail with __PURGE_QUEUE/__PURGE_INFLIGHT delivery reports, so
             * every outstanding send completes through the usual path. */
            rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            has_purged = true;
            last_purge_ns = now_ns();
        }
    }
    return NULL;
}

/* Sets one librdkafka property; key names the sluice setting it comes from (NULL: fixed). */
static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, const char *key,
                    struct sl_err *err)
{
    char errstr[512];

    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) == RD_KAFKA_CONF_OK) {
        return 0;
    }
    if (key == NULL) {
        return sl_err_set(err, SL_EINVAL, "librdkafka refuses %s=%s: %s", name, value, errstr);
    }
    return sl_err_set(err, SL_EINVAL, "%s=%s: librdkafka refuses %s: %s", key, value, name,
                      errstr);
}

static int conf_set_int(rd_kafka_conf_t *conf, const char *name, int64_t value, const char *key,
                        struct sl_err *err)
{
    char text[32];

    snprintf(text, sizeof(text), "%" PRId64, value);
    return conf_set(conf, name, text, key, err);
}

static int build_conf(rd_kafka_conf_t *conf, const char *brokers,
                      const struct ingest_producer_settings *s, struct sl_err *err)
{
    int rc = 0;

    rc = conf_set(conf, "bootstrap.servers", brokers, "SLUICE_KAFKA_BROKERS", err);
    if (rc == 0) {
        rc = conf_set(conf, "client.id", s->client_id, "SLUICE_KAFKA_CLIENT_ID", err);
    }
    /* Durable means acknowledged by every in-sync replica, written once despite retries. */
    if (rc == 0) {
        rc = conf_set(conf, "enable.idempotence", "true", NULL, err);
    }
    if (rc == 0) {
        rc = conf_set(conf, "acks", "all", NULL, err);
    }
    if (rc == 0) {
        rc = conf_set(conf, "compression.codec", s->compression, "SLUICE_KAFKA_COMPRESSION", err);
    }
    if (rc == 0) {
        rc = conf_set_int(conf, "linger.ms", s->linger_ms, "SLUICE_KAFKA_LINGER_MS", err);
    }
    if (rc == 0) {
        rc = conf_set_int(conf, "batch.num.messages", s->batch_messages,
                          "SLUICE_KAFKA_BATCH_MESSAGES", err);
    }
    if (rc == 0) {
        rc = conf_set_int(conf, "batch.size", s->batch_bytes, "SLUICE_KAFKA_BATCH_BYTES", err);
    }
    if (rc == 0) {
        rc = conf_set_int(conf, "message.timeout.ms", s->delivery_timeout_ms,
                          "SLUICE_KAFKA_DELIVERY_TIMEOUT_MS", err);
    }
    if (rc == 0) {
        rc = conf_set_int(conf, "queue.buffering.max.messages", s->max_inflight_messages,
                          "SLUICE_KAFKA_MAX_INFLIGHT_MESSAGES", err);
    }
    /* Keyed messages go by a hash of the key; keyless ones (partition key "random") to a
     * random partition. */
    if (rc == 0) {
        rc = conf_set(conf, "partitioner", "consistent_random", NULL, err);
    }
    if (rc == 0) {
        rc = conf_set(conf, "statistics.interval.ms", STATS_INTERVAL_MS, NULL, err);
    }
    return rc;
}

static int check_settings(const char *brokers, const struct ingest_producer_settings *s,
                          struct sl_err *err)
{
    if (brokers == NULL || brokers[0] == '\0') {
        return sl_err_set(err, SL_EINVAL, "SLUICE_KAFKA_BROKERS is empty: no broker to produce to");
    }
    if (s == NULL || s->topic == NULL || s->compression == NULL || s->client_id == NULL) {
        return sl_err_set(err, SL_EINVAL, "Kafka producer settings are not loaded");
    }
    if (check_topic("SLUICE_KAFKA_TOPIC", s->topic, err) != 0) {
        return SL_EINVAL;
    }
    if (s->linger_ms >= s->delivery_timeout_ms) {
        return sl_err_set(err, SL_EINVAL,
                          "SLUICE_KAFKA_LINGER_MS (%" PRId64 ") must be below "
                          "SLUICE_KAFKA_DELIVERY_TIMEOUT_MS (%" PRId64 ")",
                          s->linger_ms, s->delivery_timeout_ms);
    }
    return 0;
}

static void register_metrics(struct ingest_producer *p, struct sl_metrics *m)
{
    static const char *const reason_label[] = {"reason"};
    struct sl_metrics_family *failed;

    if (m == NULL) {
        return;
    }
    p->m_delivered = sl_metrics_series_get(
        sl_metrics_counter(m, "sluice_kafka_messages_delivered_total",
                           "Events Kafka acknowledged with acks=all.", NULL, 0),
        NULL);
    failed = sl_metrics_counter(m, "sluice_kafka_messages_failed_total",
                                "Events that did not reach Kafka, by reason (the edge spools "
                                "them or refuses them).",
                                reason_label, 1);
    for (int r = 0; r < N_REASONS; r++) {
        const char *values[] = {reason_names[r]};

        p->m_failed[r] = sl_metrics_series_get(failed, values);
    }
    p->m_inflight = sl_metrics_series_get(
        sl_metrics_gauge(m, "sluice_kafka_inflight_messages",
                         "Events handed to the Kafka producer without a delivery report yet.",
                         NULL, 0),
        NULL);
    p->m_delivery_seconds = sl_metrics_series_get(
        sl_metrics_histogram(m, "sluice_kafka_delivery_seconds",
                             "Seconds from handing events to the Kafka producer to their "
                             "successful delivery report.",
                             NULL, 0, sl_metrics_latency_bounds, sl_metrics_latency_n_bounds),
        NULL);
    /* A series that failed to register stays NULL and is ignored: metrics never stop us. */
}

int ingest_producer_create(struct ingest_producer **out, const char *brokers,
                           const struct ingest_producer_settings *s, struct sl_metrics *metrics,
                           struct sl_err *err)
{
    struct ingest_producer *p = NULL;
    pthread_condattr_t cattr;
    char errstr[512];
    int rc = 0;

    *out = NULL;
    rc = check_settings(brokers, s, err);
    if (rc != 0) {
        return rc;
    }
    p = sl_calloc(1, sizeof(*p));
    if (p == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory creating the Kafka producer");
    }
    atomic_init(&p->n_calls, 0);
    atomic_init(&p->is_closing, false);
    atomic_init(&p->is_healthy, true);
    atomic_init(&p->is_fatal, false);
    atomic_init(&p->inflight, 0);
    atomic_init(&p->delivered, 0);
    atomic_init(&p->failed, 0);
    atomic_init(&p->queue_full, 0);
    p->max_inflight_messages = s->max_inflight_messages;

    p->has_lock = pthread_mutex_init(&p->lock, NULL) == 0;
    /* flush waits with a monotonic deadline. */
    if (p->has_lock && pthread_condattr_init(&cattr) == 0) {
        pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
        p->has_idle = pthread_cond_init(&p->idle, &cattr) == 0;
        pthread_condattr_destroy(&cattr);
    }
    if (!p->has_idle) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory creating the Kafka producer");
        goto fail;
    }

    p->conf = rd_kafka_conf_new();
    rc = build_conf(p->conf, brokers, s, err);
    if (rc != 0) {
        goto fail;
    }
    rd_kafka_conf_set_opaque(p->conf, p);
    rd_kafka_conf_set_dr_msg_cb(p->conf, on_delivery);
    rd_kafka_conf_set_error_cb(p->conf, on_error);
    rd_kafka_conf_set_stats_cb(p->conf, on_stats);
    rd_kafka_conf_set_log_cb(p->conf, on_log);

    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, p->conf, errstr, sizeof(errstr));
    if (p->rk == NULL) {
        rc = sl_err_set(err, SL_EINVAL, "creating the Kafka producer: %s", errstr);
        goto fail;
    }
    p->conf = NULL; /* rd_kafka_new took it */
    p->rkt = rd_kafka_topic_new(p->rk, s->topic, NULL);
    if (p->rkt == NULL) {
        rc = sl_err_set(err, SL_EINVAL, "SLUICE_KAFKA_TOPIC=%s: %s", s->topic,
                        rd_kafka_err2str(rd_kafka_last_error()));
        goto fail;
    }
    register_metrics(p, metrics);

    rc = pthread_create(&p->poll_thread, NULL, poll_main, p);
    if (rc != 0) {
        rc = sl_err_set(err, SL_ENOMEM, "starting the Kafka poll thread: %s", strerror(rc));
        goto fail;
    }
    p->has_poll_thread = true;
    *out = p;
    return 0;

fail:
    ingest_producer_destroy(p);
    return rc;
}

/* The error send returns when librdkafka refused every message; kafka_err is the first. */
static int refusal_error(const struct ingest_producer *p, int kafka_err, size_t n,
                         struct sl_err *err)
{
    int code;

    switch (kafka_err) {
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        code = sl_err_set(err, SL_EBUSY,
                          "Kafka producer queue full (%" PRId64 " messages in flight, "
                          "SLUICE_KAFKA_MAX_INFLIGHT_MESSAGES): none of %zu messages taken",
                          p->max_inflight_messages, n);
        break;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        code = sl_err_set(err, SL_EINVAL, "Kafka refused all %zu messages: %s", n,
                          rd_kafka_err2str(kafka_err));
        break;
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
        code = sl_err_set(err, SL_ENOTFOUND, "Kafka refused all %zu messages: %s", n,
                          rd_kafka_err2str(kafka_err));
        break;
    case RD_KAFKA_RESP_ERR__FATAL:
        code = sl_err_set(err, SL_ESTATE, "Kafka producer is in a fatal state: %s",
                          rd_kafka_err2str(kafka_err));
        break;
    default:
        code = sl_err_set(err, SL_ESERVER, "Kafka refused all %zu messages: %s", n,
                          rd_kafka_err2str(kafka_err));
        break;
    }
    if (err != NULL) {
        err->remote_code = kafka_err;
    }
    return code;
}

static int check_msgs(const struct ingest_producer_msg *msgs, size_t n, struct sl_err *err)
{
    for (size_t i = 0; i < n; i++) {
        if (msgs[i].tenant_id == NULL) {
            return sl_err_set(err, SL_EINVAL, "message %zu has no tenant id", i);
        }
        if ((msgs[i].value == NULL && msgs[i].value_len > 0) ||
            (msgs[i].key == NULL && msgs[i].key_len > 0)) {
            return sl_err_set(err, SL_EINVAL, "message %zu: NULL key or value with a length", i);
        }
    }
    return 0;
}

int ingest_producer_send(struct ingest_producer *p, const struct ingest_producer_msg *msgs,
                         size_t n, ingest_producer_done_cb cb, void *user, struct sl_err *err)
{
    const size_t per_msg = sizeof(struct slot) + sizeof(struct ingest_producer_failure);
    struct tracker *t = NULL;
    rd_kafka_resp_err_t stop_err = RD_KAFKA_RESP_ERR_NO_ERROR;
    int first_err = RD_KAFKA_RESP_ERR_NO_ERROR;
    size_t n_refused = 0;
    int rc;

    if (p == NULL || cb == NULL || (msgs == NULL && n > 0)) {
        return sl_err_set(err, SL_EINVAL, "ingest_producer_send: NULL producer, messages or "
                                          "callback");
    }
    rc = check_msgs(msgs, n, err);
    if (rc != 0) {
        return rc;
    }
    if (n > (SIZE_MAX - sizeof(*t)) / per_msg) {
        return sl_err_set(err, SL_EINVAL, "too many messages in one send (%zu)", n);
    }
    t = sl_malloc(sizeof(*t) + n * per_msg);
    if (t == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory tracking %zu Kafka messages", n);
    }
    t->p = p;
    t->cb = cb;
    t->user = user;
    t->n = n;
    atomic_init(&t->pending, n + 1);
    t->start_ns = now_ns();
    t->next = NULL;
    t->failures = (struct ingest_producer_failure *)(void *)(t->slots + n);
    for (size_t i = 0; i < n; i++) {
        t->slots[i] = (struct slot){.t = t, .kafka_err = RD_KAFKA_RESP_ERR_NO_ERROR};
    }
    atomic_fetch_add(&p->n_calls, 1);

    for (size_t i = 0; i < n; i++) {
        const struct ingest_producer_msg *m = &msgs[i];
        rd_kafka_resp_err_t e = stop_err;

        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            /* Counted before: the report may come before producev returns. */
            inflight_add(p, 1);
            e = rd_kafka_producev(p->rk, RD_KAFKA_V_RKT(p->rkt),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_KEY(m->key, m->key_len),
                                  RD_KAFKA_V_VALUE((void *)m->value, m->value_len),
                                  RD_KAFKA_V_HEADER(HEADER_TENANT, m->tenant_id, -1),
                                  RD_KAFKA_V_HEADER(HEADER_SCHEMA, SCHEMA_VERSION, -1),
                                  RD_KAFKA_V_OPAQUE(&t->slots[i]), RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
                continue;
            }
            inflight_add(p, -1);
            /* The queue stays full and a fatal producer stays fatal: trying the rest would
             * only interleave the request's events with other requests'. Other refusals
             * (a message too large) are the message's own. */
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL || e == RD_KAFKA_RESP_ERR__FATAL) {
                stop_err = e;
            }
        }
        /* Refused: no report will come for this one; librdkafka did not keep the opaque. */
        t->slots[i].kafka_err = e;
        count_failure(p, e);
        if (first_err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            first_err = e;
        }
        n_refused++;
    }

    if (n > 0 && n_refused == n) {
        /* Nothing reached librdkafka, so no report can touch t: it is still ours, and the
         * callback must not run since send fails. */
        sl_free(t);
        call_done(p);
        return refusal_error(p, first_err, n, err);
    }
    if (atomic_fetch_sub_explicit(&t->pending, n_refused + 1, memory_order_acq_rel) ==
        n_refused + 1) {
        /* Every report came before send finished (or n is 0): the poll thread runs cb. */
        push_ready(p, t);
    }
    return 0;
}

int ingest_producer_flush(struct ingest_producer *p, int timeout_ms)
{
    struct timespec deadline;
    int rc = 0;

    if (pthread_equal(pthread_self(), p->poll_thread)) {
        return SL_ESTATE;
    }
    if (timeout_ms < 0) {
        timeout_ms = 0;
    }
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&p->lock);
    while (atomic_load(&p->n_calls) > 0) {
        if (pthread_cond_timedwait(&p->idle, &p->lock, &deadline) == ETIMEDOUT &&
            atomic_load(&p->n_calls) > 0) {
            rc = SL_ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

void ingest_producer_destroy(struct ingest_producer *p)
{
    int64_t left;

    if (p == NULL) {
        return;
    }
    if (p->has_poll_thread) {
        left = atomic_load(&p->inflight);
        if (left > 0) {
            sl_log_warn(LOG_COMPONENT,
                        "stopping with %" PRId64 " messages not delivered to Kafka: purging "
                        "them; their senders are told they failed",
                        left);
        }
        /* The poll thread purges and keeps serving reports until every send is done. */
        atomic_store(&p->is_closing, true);
        pthread_join(p->poll_thread, NULL);
    }
    if (p->rkt != NULL) {
        rd_kafka_topic_destroy(p->rkt);
    }
    if (p->rk != NULL) {
        rd_kafka_destroy(p->rk);
    }
    if (p->conf != NULL) {
        rd_kafka_conf_destroy(p->conf);
    }
    if (p->has_idle) {
        pthread_cond_destroy(&p->idle);
    }
    if (p->has_lock) {
        pthread_mutex_destroy(&p->lock);
    }
    sl_free(p);
}

bool ingest_producer_is_fatal(struct ingest_producer *p)
{
    return atomic_load(&p->is_fatal);
}

bool ingest_producer_is_healthy(struct ingest_producer *p)
{
    return atomic_load(&p->is_healthy);
}

void ingest_producer_stats(struct ingest_producer *p, struct ingest_producer_stats *out)
{
    int64_t inflight = atomic_load_explicit(&p->inflight, memory_order_relaxed);

    out->inflight_messages = inflight > 0 ? (uint64_t)inflight : 0;
    out->delivered = atomic_load_explicit(&p->delivered, memory_order_relaxed);
    out->failed = atomic_load_explicit(&p->failed, memory_order_relaxed);
    out->queue_full = atomic_load_explicit(&p->queue_full, memory_order_relaxed);
}

const char *ingest_producer_key_for(const struct ingest_producer_settings *s,
                                    const char *tenant_id, const char *session_id,
                                    size_t *len)
{
    const char *mode = s->partition_key != NULL ? s->partition_key : "tenant";
    const char *key = tenant_id;

    if (strcmp(mode, "random") == 0) {
        key = NULL;
    }
    else if (strcmp(mode, "session") == 0 && session_id != NULL && session_id[0] != '\0') {
        key = session_id;
    }
    *len = key != NULL ? strlen(key) : 0;
    return key;
}

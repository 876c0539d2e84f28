/*
 * Durability: Kafka first, the spool when Kafka cannot take events in time, the spool
 * alone without brokers; a replayer thread moves spooled events back to Kafka in order.
 */
#include "queue.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include "alloc.h"
#include "log.h"
#include "store.h"

#define COMPONENT "queue"
#define RECORD_VERSION 1
#define REPLAY_MAX_BYTES (4u * 1024 * 1024)
#define REPLAY_BACKOFF_MS 1000

struct ingest_queue {
    /* NULL: the spool is the queue. Senders hold producer_lock for reading; the replayer
     * replaces a producer that hit a fatal error under it for writing. */
    struct ingest_producer *producer;
    pthread_rwlock_t producer_lock;
    char *brokers;
    const struct ingest_producer_settings *producer_settings; /* kept */
    struct sl_metrics *metrics;                              /* kept */
    struct ingest_spool *spool;
    struct ingest_queue_settings settings;
    atomic_uint_least64_t inflight;
    atomic_uint_least64_t kafka_events;
    atomic_uint_least64_t spooled_events;
    atomic_uint_least64_t replayed_events;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool is_stopping;
    bool has_replayer;
    pthread_t replayer;
    struct sl_metrics_series *m_spooled;
    struct sl_metrics_series *m_replayed;
};

/* One Kafka submit waiting for its delivery reports. */
struct pending {
    struct ingest_queue *q;
    const struct ingest_producer_msg *msgs;
    size_t n;
    ingest_queue_done_cb cb;
    void *user;
};

const struct sl_cfg_opt ingest_queue_cfg_opts[] = {
    {.key = "SLUICE_SPOOL_MAX_BYTES", .type = SL_CFG_BYTES, .def = "1G", .min = 1024 * 1024,
     .max = (int64_t)1 << 50, .offset = offsetof(struct ingest_queue_settings, spool_max_bytes),
     .desc = "Most disk the spool may use; when full the edge answers 503 with Retry-After."},
    {.key = "SLUICE_SPOOL_SEGMENT_BYTES", .type = SL_CFG_BYTES, .def = "64M",
     .min = 64 * 1024, .max = (int64_t)1 << 32,
     .offset = offsetof(struct ingest_queue_settings, spool_segment_bytes),
     .desc = "Size of one spool segment file; drained segments are deleted whole."},
    {.key = "SLUICE_MAX_INFLIGHT_EVENTS", .type = SL_CFG_INT, .def = "200000", .min = 1,
     .max = 100000000, .offset = offsetof(struct ingest_queue_settings, max_inflight_events),
     .desc = "Events accepted but not yet durable, across all requests; past it the edge "
             "answers 429 (backpressure) instead of using more memory."},
    {.key = "SLUICE_SPOOL_REPLAY_BATCH", .type = SL_CFG_INT, .def = "1000", .min = 1,
     .max = 100000, .offset = offsetof(struct ingest_queue_settings, replay_batch),
     .desc = "Spooled events sent to Kafka per replay round once the broker is back."},
};
const size_t ingest_queue_cfg_n_opts = sizeof(ingest_queue_cfg_opts) / sizeof(ingest_queue_cfg_opts[0]);

/* ---- spool records: [version u8][key_len u16][key][tenant_len u16][tenant][value] ---- */

int ingest_queue_encode(const struct ingest_producer_msg *m, unsigned char **out, size_t *len)
{
    size_t tlen = strlen(m->tenant_id);
    size_t n = 1 + 2 + m->key_len + 2 + tlen + m->value_len;
    unsigned char *p;

    *out = NULL;
    if (m->key_len > 0xffff || tlen > 0xffff) {
        return SL_EINVAL;
    }
    p = sl_malloc(n);
    if (p == NULL) {
        return SL_ENOMEM;
    }
    p[0] = RECORD_VERSION;
    p[1] = (unsigned char)(m->key_len & 0xff);
    p[2] = (unsigned char)(m->key_len >> 8);
    if (m->key_len > 0) {
        memcpy(p + 3, m->key, m->key_len);
    }
    p[3 + m->key_len] = (unsigned char)(tlen & 0xff);
    p[4 + m->key_len] = (unsigned char)(tlen >> 8);
    memcpy(p + 5 + m->key_len, m->tenant_id, tlen);
    memcpy(p + 5 + m->key_len + tlen, m->value, m->value_len);
    *out = p;
    *len = n;
    return 0;
}

int ingest_queue_decode(const void *rec, size_t len, struct ingest_producer_msg *m,
                        char *tenant_buf, size_t tenant_cap)
{
    const unsigned char *p = rec;
    size_t klen, tlen;

    if (len < 5 || p[0] != RECORD_VERSION) {
        return SL_EINVAL;
    }
    klen = (size_t)p[1] | ((size_t)p[2] << 8);
    if (3 + klen + 2 > len) {
        return SL_EINVAL;
    }
    tlen = (size_t)p[3 + klen] | ((size_t)p[4 + klen] << 8);
    if (5 + klen + tlen > len || tlen + 1 > tenant_cap) {
        return SL_EINVAL;
    }
    memcpy(tenant_buf, p + 5 + klen, tlen);
    tenant_buf[tlen] = '\0';
    m->key = klen > 0 ? (const char *)p + 3 : NULL;
    m->key_len = klen;
    m->tenant_id = tenant_buf;
    m->value = p + 5 + klen + tlen;
    m->value_len = len - 5 - klen - tlen;
    return 0;
}

/* Appends the listed messages (all when idx is NULL) to the spool as one fsync'ed batch. */
static int spool_msgs(struct ingest_queue *q, const struct ingest_producer_msg *msgs,
                      const size_t *idx, size_t n, struct sl_err *err)
{
    struct iovec *iov = sl_calloc(n > 0 ? n : 1, sizeof(*iov));
    size_t made = 0;
    int rc = 0;

    if (iov == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory spooling events");
    }
    for (; made < n && rc == 0; made++) {
        unsigned char *buf = NULL;
        size_t len = 0;

        rc = ingest_queue_encode(&msgs[idx != NULL ? idx[made] : made], &buf, &len);
        iov[made].iov_base = buf;
        iov[made].iov_len = len;
    }
    if (rc != 0) {
        sl_err_set(err, rc, "cannot encode an event for the spool");
    }
    else {
        rc = ingest_spool_append(q->spool, iov, n, err);
    }
    for (size_t i = 0; i < made; i++) {
        sl_free(iov[i].iov_base);
    }
    sl_free(iov);
    if (rc == 0) {
        atomic_fetch_add(&q->spooled_events, n);
        sl_metrics_counter_add(q->m_spooled, n);
    }
    return rc;
}

static void finish(struct ingest_queue *q, size_t n, ingest_queue_done_cb cb, void *user,
                   int status, size_t n_kafka, size_t n_spooled)
{
    struct ingest_queue_outcome o = {.status = status, .n_kafka = n_kafka,
                                     .n_spooled = n_spooled};

    atomic_fetch_sub(&q->inflight, n);
    cb(user, &o);
}

/* Spools a whole submit on the calling thread and reports it. */
static void spool_all(struct ingest_queue *q, const struct ingest_producer_msg *msgs, size_t n,
                      ingest_queue_done_cb cb, void *user)
{
    struct sl_err err;
    int rc = spool_msgs(q, msgs, NULL, n, &err);

    if (rc != 0) {
        sl_log_error(COMPONENT, "cannot spool %zu events: %s", n, err.msg);
    }
    finish(q, n, cb, user, rc == 0 ? 0 : (rc == SL_EBUSY ? SL_EBUSY : SL_EIO), 0,
           rc == 0 ? n : 0);
}

/* Kafka reported every message of a submit: spool the failed ones, then answer. */
static void on_sent(void *user, const struct ingest_producer_result *res)
{
    struct pending *p = user;
    struct ingest_queue *q = p->q;
    int status = 0;
    size_t n_spooled = 0;

    atomic_fetch_add(&q->kafka_events, res->n_delivered);
    if (res->n_failed > 0) {
        size_t *idx = sl_calloc(res->n_failed, sizeof(*idx));
        struct sl_err err;
        int rc;

        if (idx == NULL) {
            rc = sl_err_set(&err, SL_ENOMEM, "out of memory");
        }
        else {
            for (size_t i = 0; i < res->n_failed; i++) {
                idx[i] = res->failures[i].index;
            }
            rc = spool_msgs(q, p->msgs, idx, res->n_failed, &err);
        }
        sl_free(idx);
        if (rc == 0) {
            n_spooled = res->n_failed;
            sl_log_debug(COMPONENT, "spooled %zu events Kafka did not take (%s)", n_spooled,
                         res->failures[0].error);
        }
        else {
            status = rc == SL_EBUSY ? SL_EBUSY : SL_EIO;
            sl_log_error(COMPONENT, "%zu events neither in Kafka (%s) nor in the spool: %s",
                         res->n_failed, res->failures[0].error, err.msg);
        }
    }
    finish(q, p->n, p->cb, p->user, status, res->n_delivered, n_spooled);
    sl_free(p);
}

int ingest_queue_submit(struct ingest_queue *q, const struct ingest_producer_msg *msgs,
                        size_t n, ingest_queue_done_cb cb, void *user, struct sl_err *err)
{
    struct pending *p = NULL;
    uint64_t before = atomic_fetch_add(&q->inflight, n);
    int rc;

    if (before + n > (uint64_t)q->settings.max_inflight_events && before > 0) {
        atomic_fetch_sub(&q->inflight, n);
        return sl_err_set(err, SL_EBUSY, "%llu events are already waiting to become durable",
                          (unsigned long long)before);
    }
    if (q->producer == NULL) {
        spool_all(q, msgs, n, cb, user);
        return 0;
    }
    p = sl_malloc(sizeof(*p));
    if (p == NULL) {
        atomic_fetch_sub(&q->inflight, n);
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    *p = (struct pending){.q = q, .msgs = msgs, .n = n, .cb = cb, .user = user};
    pthread_rwlock_rdlock(&q->producer_lock);
    /* An unreachable broker would make the client wait the whole delivery timeout. */
    rc = ingest_producer_is_healthy(q->producer)
             ? ingest_producer_send(q->producer, msgs, n, on_sent, p, err)
             : SL_ENET;
    pthread_rwlock_unlock(&q->producer_lock);
    if (rc != 0) {
        /* Nothing went to Kafka (its queue is full, or the producer failed): spool it. */
        sl_free(p);
        spool_all(q, msgs, n, cb, user);
    }
    return 0;
}

/* ---- the replayer: spool -> Kafka, in order, committed only once delivered ---- */

/* One replay send; shared by the replayer and the delivery callback under q->lock. The
 * one that finishes last frees it (the replayer abandons it when the queue stops). */
struct replay_wait {
    struct ingest_queue *q;
    bool is_done;
    bool is_abandoned;
    size_t n_delivered;
};

static void on_replayed(void *user, const struct ingest_producer_result *res)
{
    struct replay_wait *w = user;
    struct ingest_queue *q = w->q;
    bool is_abandoned;

    pthread_mutex_lock(&q->lock);
    w->n_delivered = res->n_delivered;
    w->is_done = true;
    is_abandoned = w->is_abandoned;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
    if (is_abandoned) {
        sl_free(w);
    }
}

/* Waits on q->cond up to ms; returns whether the queue is stopping. */
static bool pause_ms(struct ingest_queue *q, int64_t ms)
{
    struct timespec ts;
    bool stopping;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&q->lock);
    if (!q->is_stopping) {
        pthread_cond_timedwait(&q->cond, &q->lock, &ts);
    }
    stopping = q->is_stopping;
    pthread_mutex_unlock(&q->lock);
    return stopping;
}

/* Sends one spool batch and waits for its outcome; returns whether all were delivered. */
static bool replay_batch(struct ingest_queue *q, struct ingest_spool_batch *batch)
{
    struct ingest_producer_msg *msgs = sl_calloc(batch->n, sizeof(*msgs));
    char (*tenants)[SL_STORE_ID_MAX] = sl_calloc(batch->n, SL_STORE_ID_MAX);
    struct replay_wait *w = sl_calloc(1, sizeof(*w));
    size_t n = 0;
    bool ok = false;
    int rc;

    if (msgs == NULL || tenants == NULL || w == NULL) {
        sl_free(w);
        goto done;
    }
    w->q = q;
    for (size_t i = 0; i < batch->n; i++) {
        if (ingest_queue_decode(batch->recs[i].data, batch->recs[i].len, &msgs[n], tenants[n],
                                SL_STORE_ID_MAX) == 0) {
            n++;
        }
        else {
            sl_log_error(COMPONENT, "skipping an undecodable spool record (%zu bytes)",
                         batch->recs[i].len);
        }
    }
    pthread_mutex_lock(&q->lock);
    /* Checked under the lock destroy takes, so no send starts once it is stopping. */
    rc = q->is_stopping ? SL_ECANCELED
                        : ingest_producer_send(q->producer, msgs, n, on_replayed, w, NULL);
    /* The producer is only replaced on this thread, so no read lock is needed here. */
    if (rc != 0) {
        pthread_mutex_unlock(&q->lock);
        sl_free(w);
        goto done;
    }
    while (!w->is_done && !q->is_stopping) {
        pthread_cond_wait(&q->cond, &q->lock);
    }
    if (!w->is_done) {
        /* Stopping: the callback comes when destroy purges the producer, and frees w. */
        w->is_abandoned = true;
        pthread_mutex_unlock(&q->lock);
        goto done;
    }
    pthread_mutex_unlock(&q->lock);
    ok = w->n_delivered == n;
    atomic_fetch_add(&q->replayed_events, w->n_delivered);
    sl_metrics_counter_add(q->m_replayed, w->n_delivered);
    sl_free(w);

done:
    sl_free(tenants);
    sl_free(msgs);
    return ok;
}

/*
 * Replaces a producer that hit a fatal error (librdkafka's idempotent producer can end
 * that way after a lost connection). Destroying it purges what it still held: those
 * callbacks spool their events, so nothing is lost. Replayer thread only.
 */
static void recreate_producer(struct ingest_queue *q)
{
    struct ingest_producer *fresh = NULL;
    struct sl_err err;

    if (ingest_producer_create(&fresh, q->brokers, q->producer_settings, q->metrics, &err) != 0) {
        sl_log_error(COMPONENT, "cannot recreate the Kafka producer after a fatal error: %s",
                     err.msg);
        pause_ms(q, REPLAY_BACKOFF_MS);
        return;
    }
    pthread_rwlock_wrlock(&q->producer_lock);
    ingest_producer_destroy(q->producer);
    q->producer = fresh;
    pthread_rwlock_unlock(&q->producer_lock);
    sl_log_warn(COMPONENT, "replaced the Kafka producer after a fatal error");
}

static void *replayer_main(void *arg)
{
    struct ingest_queue *q = arg;
    struct ingest_spool_batch batch;
    struct sl_err err;

    ingest_spool_batch_init(&batch);
    for (;;) {
        bool stopping;

        pthread_mutex_lock(&q->lock);
        stopping = q->is_stopping;
        pthread_mutex_unlock(&q->lock);
        if (stopping) {
            break;
        }
        if (ingest_producer_is_fatal(q->producer)) {
            recreate_producer(q);
        }
        if (ingest_spool_wait(q->spool, 500) != 0) {
            continue;
        }
        if (!ingest_producer_is_healthy(q->producer)) {
            pause_ms(q, REPLAY_BACKOFF_MS);
            continue;
        }
        if (ingest_spool_read(q->spool, &batch, (size_t)q->settings.replay_batch,
                              REPLAY_MAX_BYTES, &err) != 0) {
            sl_log_error(COMPONENT, "cannot read the spool: %s", err.msg);
            pause_ms(q, REPLAY_BACKOFF_MS);
            continue;
        }
        if (batch.n == 0) {
            continue;
        }
        if (replay_batch(q, &batch)) {
            if (ingest_spool_commit(q->spool, &batch, &err) != 0) {
                /* Delivered but not committed: it will be sent again (duplicates are
                 * collapsed downstream by event id), never lost. */
                sl_log_error(COMPONENT, "cannot commit the spool cursor: %s", err.msg);
                ingest_spool_rewind(q->spool);
                pause_ms(q, REPLAY_BACKOFF_MS);
            }
        }
        else {
            ingest_spool_rewind(q->spool);
            pause_ms(q, REPLAY_BACKOFF_MS);
        }
    }
    ingest_spool_batch_fini(&batch);
    return NULL;
}

int ingest_queue_create(struct ingest_queue **out, const char *brokers,
                        const struct ingest_producer_settings *ps, const char *spool_dir,
                        const struct ingest_queue_settings *qs, struct sl_metrics *metrics,
                        struct sl_err *err)
{
    struct ingest_queue *q = NULL;
    int rc;

    *out = NULL;
    q = sl_calloc(1, sizeof(*q));
    if (q == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory creating the queue");
    }
    q->settings = *qs;
    q->producer_settings = ps;
    q->metrics = metrics;
    pthread_rwlock_init(&q->producer_lock, NULL);
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
    if (metrics != NULL) {
        q->m_spooled = sl_metrics_series_get(
            sl_metrics_counter(metrics, "sluice_spool_events_written_total",
                               "Events written to the disk spool.", NULL, 0),
            NULL);
        q->m_replayed = sl_metrics_series_get(
            sl_metrics_counter(metrics, "sluice_spool_events_replayed_total",
                               "Spooled events delivered to Kafka by the replayer.", NULL, 0),
            NULL);
    }
    rc = ingest_spool_open(&q->spool, spool_dir, (uint64_t)qs->spool_max_bytes,
                           (uint64_t)qs->spool_segment_bytes, err);
    if (rc == 0 && brokers != NULL && brokers[0] != '\0') {
        q->brokers = sl_strdup(brokers);
        rc = q->brokers == NULL ? sl_err_set(err, SL_ENOMEM, "out of memory")
                                : ingest_producer_create(&q->producer, brokers, ps, metrics, err);
        if (rc == 0 && pthread_create(&q->replayer, NULL, replayer_main, q) != 0) {
            rc = sl_err_set(err, SL_ENOMEM, "cannot start the spool replayer thread");
        }
        q->has_replayer = rc == 0;
    }
    if (rc != 0) {
        ingest_queue_destroy(q, 0);
        return rc;
    }
    *out = q;
    return 0;
}

bool ingest_queue_is_ready(struct ingest_queue *q)
{
    struct ingest_spool_stats st;
    bool is_healthy = false;

    if (q->producer != NULL) {
        pthread_rwlock_rdlock(&q->producer_lock);
        is_healthy = ingest_producer_is_healthy(q->producer);
        pthread_rwlock_unlock(&q->producer_lock);
    }
    if (is_healthy) {
        return true;
    }
    ingest_spool_stats(q->spool, &st);
    /* Ready while at least a full request (1 MiB raw by default) still fits. */
    return st.bytes_on_disk + 2 * 1024 * 1024 < (uint64_t)q->settings.spool_max_bytes;
}

bool ingest_queue_has_kafka(const struct ingest_queue *q)
{
    return q->producer != NULL;
}

struct ingest_spool *ingest_queue_spool(struct ingest_queue *q)
{
    return q->spool;
}

void ingest_queue_stats(struct ingest_queue *q, struct ingest_queue_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->inflight_events = atomic_load(&q->inflight);
    out->kafka_events = atomic_load(&q->kafka_events);
    out->spooled_events = atomic_load(&q->spooled_events);
    out->replayed_events = atomic_load(&q->replayed_events);
    if (q->producer != NULL) {
        pthread_rwlock_rdlock(&q->producer_lock);
        out->is_kafka_healthy = ingest_producer_is_healthy(q->producer);
        pthread_rwlock_unlock(&q->producer_lock);
    }
    ingest_spool_stats(q->spool, &out->spool);
}

void ingest_queue_destroy(struct ingest_queue *q, int flush_ms)
{
    if (q == NULL) {
        return;
    }
    pthread_mutex_lock(&q->lock);
    q->is_stopping = true;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
    /* The replayer's waits are short or end on is_stopping, so it exits promptly; it
     * never touches the producer after that. */
    if (q->has_replayer) {
        pthread_join(q->replayer, NULL);
    }
    if (q->producer != NULL) {
        if (ingest_producer_flush(q->producer, flush_ms) != 0) {
            sl_log_warn(COMPONENT, "Kafka did not acknowledge everything within %d ms; the "
                        "rest goes to the spool", flush_ms);
        }
        /* Purges what is left: every pending callback runs now and spools its events. */
        ingest_producer_destroy(q->producer);
    }
    ingest_spool_close(q->spool);
    sl_free(q->brokers);
    pthread_rwlock_destroy(&q->producer_lock);
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->lock);
    sl_free(q);
}

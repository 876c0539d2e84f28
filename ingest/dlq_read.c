/*
 * Dead letters read back: records from a line of the file or a message of the topic, the
 * topic walk that list and replay share, and `sluice dlq list`.
 */
#include "dlq_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "log.h"

#define COMPONENT "dlq"

/* ---- reading back: records ---- */

void ingest_dlq_read_rec_fini(struct ingest_dlq_read_rec *rr)
{
    sl_free(rr->key_buf);
    sl_free(rr->value_buf);
    json_decref(rr->line);
    memset(rr, 0, sizeof(*rr));
}

static void header_str(rd_kafka_headers_t *h, const char *name, char *out, size_t cap)
{
    const void *val = NULL;
    size_t size = 0;

    out[0] = '\0';
    if (h != NULL && rd_kafka_header_get_last(h, name, &val, &size) ==
                         RD_KAFKA_RESP_ERR_NO_ERROR && val != NULL) {
        size = size < cap - 1 ? size : cap - 1;
        memcpy(out, val, size);
        out[size] = '\0';
    }
}

/* Fills rr from a message of the dead-letter topic (borrows it). */
void ingest_dlq_rec_from_message(struct ingest_dlq_read_rec *rr, const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *h = NULL;
    char num[32];

    memset(rr, 0, sizeof(*rr));
    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        h = NULL;
    }
    header_str(h, INGEST_DLQ_HEADER_REASON, rr->reason, sizeof(rr->reason));
    header_str(h, "sluice-tenant", rr->tenant, sizeof(rr->tenant));
    header_str(h, INGEST_DLQ_HEADER_TOPIC, rr->topic, sizeof(rr->topic));
    rr->r.reason = rr->reason;
    rr->r.tenant_id = rr->tenant[0] != '\0' ? rr->tenant : NULL;
    rr->r.topic = rr->topic[0] != '\0' ? rr->topic : NULL;
    header_str(h, INGEST_DLQ_HEADER_PARTITION, num, sizeof(num));
    rr->r.partition = num[0] != '\0' ? (int32_t)strtol(num, NULL, 10) : -1;
    header_str(h, INGEST_DLQ_HEADER_OFFSET, num, sizeof(num));
    rr->r.offset = num[0] != '\0' ? strtoll(num, NULL, 10) : -1;
    header_str(h, INGEST_DLQ_HEADER_TIME, num, sizeof(num));
    rr->r.time_ms = strtoll(num, NULL, 10);
    rr->r.key = m->key;
    rr->r.key_len = m->key_len;
    rr->r.value = m->payload;
    rr->r.value_len = m->len;
    rr->r.dlq_partition = m->partition;
    rr->r.dlq_offset = m->offset;
}

static int unhex(const char *hex, unsigned char **out, size_t *len)
{
    size_t n = strlen(hex) / 2;

    *out = sl_malloc(n + 1);
    if (*out == NULL) {
        return SL_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const char *hi = strchr(ingest_dlq_hexdig, hex[2 * i]);
        const char *lo = strchr(ingest_dlq_hexdig, hex[2 * i + 1]);

        if (hi == NULL || lo == NULL) {
            sl_free(*out);
            *out = NULL;
            return SL_EINVAL;
        }
        (*out)[i] = (unsigned char)(((hi - ingest_dlq_hexdig) << 4) | (lo - ingest_dlq_hexdig));
    }
    *len = n;
    return 0;
}

/* Reads obj[name] (text) or obj[name_hex] into *data and *len; absent or null leaves NULL. */
static int get_text(json_t *obj, const char *name, const void **data, size_t *len,
                    unsigned char **owned)
{
    json_t *v = json_object_get(obj, name);
    char hex_name[64];

    *data = NULL;
    *len = 0;
    if (json_is_string(v)) {
        *data = json_string_value(v);
        *len = json_string_length(v);
        return 0;
    }
    snprintf(hex_name, sizeof(hex_name), "%s_hex", name);
    v = json_object_get(obj, hex_name);
    if (json_is_string(v)) {
        int rc = unhex(json_string_value(v), owned, len);

        *data = *owned;
        return rc;
    }
    return 0;
}

/* Fills rr from a line of the dead-letter file; SL_EINVAL for a damaged line. */
int ingest_dlq_rec_from_line(struct ingest_dlq_read_rec *rr, const char *line, size_t len,
                             int64_t line_no, bool is_replayed)
{
    json_t *obj;

    memset(rr, 0, sizeof(*rr));
    obj = json_loadb(line, len, 0, NULL);
    if (!json_is_object(obj) || !json_is_string(json_object_get(obj, "reason"))) {
        json_decref(obj);
        return SL_EINVAL;
    }
    rr->line = obj;
    snprintf(rr->reason, sizeof(rr->reason), "%s",
             json_string_value(json_object_get(obj, "reason")));
    if (json_is_string(json_object_get(obj, "tenant_id"))) {
        snprintf(rr->tenant, sizeof(rr->tenant), "%s",
                 json_string_value(json_object_get(obj, "tenant_id")));
        rr->r.tenant_id = rr->tenant;
    }
    rr->r.reason = rr->reason;
    rr->r.time_ms = (int64_t)json_integer_value(json_object_get(obj, "time_ms"));
    rr->r.partition = -1;
    rr->r.offset = -1;
    rr->r.dlq_partition = -1;
    rr->r.dlq_offset = line_no;
    rr->r.is_replayed = is_replayed;
    if (get_text(obj, "key", &rr->r.key, &rr->r.key_len, &rr->key_buf) != 0 ||
        get_text(obj, "value", &rr->r.value, &rr->r.value_len, &rr->value_buf) != 0) {
        ingest_dlq_read_rec_fini(rr);
        return SL_EINVAL;
    }
    return 0;
}

/* ---- list: the file ---- */

struct list_walk {
    size_t limit;
    size_t seen;
    bool is_replayed;
    ingest_dlq_visit_cb cb;
    void *user;
};

/* Returns 1 to stop (limit or cb), 0 to go on. */
static int list_line(void *user, const char *line, size_t len, int64_t line_no)
{
    struct list_walk *w = user;
    struct ingest_dlq_read_rec rr;
    int stop;

    if (w->limit > 0 && w->seen >= w->limit) {
        return 1;
    }
    if (ingest_dlq_rec_from_line(&rr, line, len, line_no, w->is_replayed) != 0) {
        sl_log_warn(COMPONENT, "skipping damaged dead-letter line %lld", (long long)line_no);
        return 0;
    }
    w->seen++;
    stop = w->cb(w->user, &rr.r) != 0;
    ingest_dlq_read_rec_fini(&rr);
    return stop;
}

static int list_folder(const struct ingest_dlq_source *src, size_t limit, bool include_replayed,
                       ingest_dlq_visit_cb cb, void *user, struct sl_err *err)
{
    struct list_walk w = {.limit = limit, .cb = cb, .user = user};
    char path[4096];
    int rc = 0;

    if (include_replayed) {
        w.is_replayed = true;
        snprintf(path, sizeof(path), "%s/%s", src->folder, INGEST_DLQ_REPLAYED_FILE);
        rc = ingest_dlq_each_line(path, list_line, &w, err);
        w.is_replayed = false;
    }
    snprintf(path, sizeof(path), "%s/%s", src->folder, INGEST_DLQ_FILE);
    return rc == 0 ? ingest_dlq_each_line(path, list_line, &w, err) : rc;
}

/* ---- list and replay: the topic ---- */

void ingest_dlq_topic_reader_fini(struct ingest_dlq_topic_reader *t)
{
    if (t->rk != NULL) {
        rd_kafka_destroy_flags(t->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    }
    sl_free(t->parts);
    sl_free(t->start);
    sl_free(t->end);
    sl_free(t->committed);
    memset(t, 0, sizeof(*t));
}

/* Connects, finds the partitions, their ends and the group's committed offsets. */
int ingest_dlq_topic_reader_init(struct ingest_dlq_topic_reader *t,
                                 const struct ingest_dlq_source *src, bool from_committed,
                                 struct sl_err *err)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = NULL;
    rd_kafka_topic_partition_list_t *list = NULL;
    rd_kafka_resp_err_t kerr;
    char errstr[512];
    int rc = 0;

    memset(t, 0, sizeof(*t));
    rc = ingest_dlq_conf_set(conf, "bootstrap.servers", src->brokers, err);
    if (rc == 0) {
        rc = ingest_dlq_conf_set(conf, "group.id", INGEST_DLQ_REPLAY_GROUP, err);
    }
    if (rc == 0) {
        rc = ingest_dlq_conf_set(conf, "enable.auto.commit", "false", err);
    }
    if (rc == 0) {
        rc = ingest_dlq_conf_set(conf, "enable.auto.offset.store", "false", err);
    }
    if (rc == 0) {
        rc = ingest_dlq_conf_set(conf, "client.id", "sluice-dlq", err);
    }
    if (rc != 0) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    rd_kafka_conf_set_log_cb(conf, ingest_dlq_on_log);
    t->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (t->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        return sl_err_set(err, SL_EINVAL, "cannot create a Kafka consumer: %s", errstr);
    }
    rd_kafka_poll_set_consumer(t->rk);
    rkt = rd_kafka_topic_new(t->rk, src->topic, NULL);
    kerr = rd_kafka_metadata(t->rk, 0, rkt, &md, src->timeout_ms);
    rd_kafka_topic_destroy(rkt);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return sl_err_set(err, kerr == RD_KAFKA_RESP_ERR__TIMED_OUT ? SL_ETIMEDOUT : SL_ENET,
                          "cannot reach Kafka (%s): %s", src->brokers, rd_kafka_err2str(kerr));
    }
    if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        t->n_parts = md->topics[0].partition_cnt;
    }
    if (t->n_parts > 0) {
        t->parts = sl_calloc((size_t)t->n_parts, sizeof(*t->parts));
        t->start = sl_calloc((size_t)t->n_parts, sizeof(*t->start));
        t->end = sl_calloc((size_t)t->n_parts, sizeof(*t->end));
        t->committed = sl_calloc((size_t)t->n_parts, sizeof(*t->committed));
        if (t->parts == NULL || t->start == NULL || t->end == NULL || t->committed == NULL) {
            rd_kafka_metadata_destroy(md);
            return sl_err_set(err, SL_ENOMEM, "out of memory");
        }
        for (int i = 0; i < t->n_parts; i++) {
            t->parts[i] = md->topics[0].partitions[i].id;
        }
    }
    rd_kafka_metadata_destroy(md);
    if (t->n_parts == 0) {
        return 0; /* no such topic yet: no dead letters */
    }
    list = rd_kafka_topic_partition_list_new(t->n_parts);
    for (int i = 0; i < t->n_parts; i++) {
        rd_kafka_topic_partition_list_add(list, src->topic, t->parts[i]);
    }
    kerr = rd_kafka_committed(t->rk, list, src->timeout_ms);
    for (int i = 0; i < t->n_parts && rc == 0; i++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t werr = rd_kafka_query_watermark_offsets(
            t->rk, src->topic, t->parts[i], &lo, &hi, src->timeout_ms);

        if (werr != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rc = sl_err_set(err, SL_ENET, "cannot read the offsets of %s [%d]: %s", src->topic,
                            (int)t->parts[i], rd_kafka_err2str(werr));
            break;
        }
        t->committed[i] = kerr == RD_KAFKA_RESP_ERR_NO_ERROR && list->elems[i].offset >= 0
                              ? list->elems[i].offset
                              : -1;
        t->start[i] = from_committed && t->committed[i] > lo ? t->committed[i] : lo;
        t->end[i] = hi;
    }
    rd_kafka_topic_partition_list_destroy(list);
    if (rc == 0 && kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rc = sl_err_set(err, SL_ENET, "cannot read the offsets of group %s: %s",
                        INGEST_DLQ_REPLAY_GROUP, rd_kafka_err2str(kerr));
    }
    return rc;
}

/*
 * Reads partition index i from its start to its end, calling fn per message; fn returns
 * non-zero to stop. Returns 0, 1 when fn stopped, or a negative code.
 */
int ingest_dlq_read_partition(struct ingest_dlq_topic_reader *t,
                              const struct ingest_dlq_source *src, int i, ingest_dlq_msg_fn fn,
                              void *user, struct sl_err *err)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    int64_t next = t->start[i];
    int rc = 0;

    if (next >= t->end[i]) {
        rd_kafka_topic_partition_list_destroy(list);
        return 0;
    }
    rd_kafka_topic_partition_list_add(list, src->topic, t->parts[i])->offset = next;
    rd_kafka_assign(t->rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    while (rc == 0 && next < t->end[i]) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(t->rk, src->timeout_ms);

        if (m == NULL) {
            rc = sl_err_set(err, SL_ETIMEDOUT, "no message from %s [%d] at offset %lld within "
                            "%d ms", src->topic, (int)t->parts[i], (long long)next,
                            src->timeout_ms);
            break;
        }
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                rc = sl_err_set(err, SL_ENET, "reading %s [%d]: %s", src->topic,
                                (int)t->parts[i], rd_kafka_message_errstr(m));
            }
        }
        else if (m->partition == t->parts[i]) {
            next = m->offset + 1;
            rc = fn(user, m);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_assign(t->rk, NULL);
    return rc;
}

struct topic_list {
    struct list_walk w;
    const struct ingest_dlq_topic_reader *t;
    int i;
};

static int list_message(void *user, const rd_kafka_message_t *m)
{
    struct topic_list *tl = user;
    struct ingest_dlq_read_rec rr;
    int stop;

    if (tl->w.limit > 0 && tl->w.seen >= tl->w.limit) {
        return 1;
    }
    ingest_dlq_rec_from_message(&rr, m);
    rr.r.is_replayed = tl->t->committed[tl->i] > m->offset;
    tl->w.seen++;
    stop = tl->w.cb(tl->w.user, &rr.r) != 0;
    ingest_dlq_read_rec_fini(&rr);
    return stop;
}

int ingest_dlq_list(const struct ingest_dlq_source *src, size_t limit, bool include_replayed,
                    ingest_dlq_visit_cb cb, void *user, struct sl_err *err)
{
    struct ingest_dlq_topic_reader t;
    struct topic_list tl = {.w = {.limit = limit, .cb = cb, .user = user}, .t = &t};
    int rc;

    if (src->brokers == NULL || src->brokers[0] == '\0') {
        return list_folder(src, limit, include_replayed, cb, user, err);
    }
    rc = ingest_dlq_topic_reader_init(&t, src, !include_replayed, err);
    for (int i = 0; rc == 0 && i < t.n_parts; i++) {
        tl.i = i;
        rc = ingest_dlq_read_partition(&t, src, i, list_message, &tl, err);
    }
    ingest_dlq_topic_reader_fini(&t);
    return rc < 0 ? rc : 0;
}


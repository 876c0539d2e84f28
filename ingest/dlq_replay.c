/*
 * `sluice dlq replay`: dead letters back into the loader's input, from the topic (re-produced
 * to their original topic, the replay group's offsets committed after their delivery
 * reports) or from the file (back into the spool, the lines moved to the replayed file).
 */
#include "dlq_int.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "log.h"
#include "rows.h"

#define COMPONENT "dlq"

#define REPLAY_FLUSH_MS 30000

/* ---- replay: the topic ---- */

/* One re-produced dead letter waiting for its delivery report. */
struct sent {
    int32_t dlq_partition;
    int64_t dlq_offset;
    bool ok;
};

struct topic_replay {
    const struct ingest_dlq_source *src;
    size_t limit;
    bool dry_run;
    ingest_dlq_visit_cb cb;
    void *user;
    rd_kafka_t *producer;
    struct sent *sent;
    size_t n_sent;
    size_t cap;
    bool is_partition_blocked; /* a dead letter of this partition could not be sent */
    size_t seen;
    struct ingest_dlq_replay_result *out;
    struct sl_err *err;
};

/* Headers of the replayed message: the original ones, none of the dead-letter ones. */
static rd_kafka_headers_t *replay_headers(const rd_kafka_message_t *m, const char *dlq_topic)
{
    rd_kafka_headers_t *orig = NULL, *h = NULL;
    const char *name;
    const void *val;
    size_t size;
    char from[600];

    if (rd_kafka_message_headers(m, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR && orig != NULL) {
        h = rd_kafka_headers_copy(orig);
    }
    else {
        h = rd_kafka_headers_new(4);
    }
    for (size_t i = 0; orig != NULL &&
                       rd_kafka_header_get_all(orig, i, &name, &val, &size) ==
                           RD_KAFKA_RESP_ERR_NO_ERROR;
         i++) {
        if (strncmp(name, "sluice-dlq-", 11) == 0 || strncmp(name, "sluice-original-", 16) == 0 ||
            strcmp(name, INGEST_DLQ_HEADER_REPLAYED_FROM) == 0) {
            rd_kafka_header_remove(h, name);
        }
    }
    snprintf(from, sizeof(from), "%s/%d/%lld", dlq_topic, (int)m->partition,
             (long long)m->offset);
    rd_kafka_header_add(h, INGEST_DLQ_HEADER_REPLAYED_FROM, -1, from, -1);
    return h;
}

static int replay_message(void *user, const rd_kafka_message_t *m)
{
    struct topic_replay *r = user;
    struct ingest_dlq_read_rec rr;
    rd_kafka_headers_t *h = NULL;
    rd_kafka_resp_err_t kerr;
    int stop = 0;

    if (r->is_partition_blocked || (r->limit > 0 && r->seen >= r->limit)) {
        return 1;
    }
    ingest_dlq_rec_from_message(&rr, m);
    r->seen++;
    if (r->cb != NULL) {
        stop = r->cb(r->user, &rr.r) != 0;
    }
    if (r->dry_run) {
        ingest_dlq_read_rec_fini(&rr);
        return stop;
    }
    if (rr.r.topic == NULL) {
        sl_log_warn(COMPONENT, "dead letter %s [%d] @%lld names no original topic; not replayed",
                    r->src->topic, (int)m->partition, (long long)m->offset);
        r->out->n_failed++;
        r->is_partition_blocked = true;
        ingest_dlq_read_rec_fini(&rr);
        return 1;
    }
    if (r->n_sent == r->cap) {
        size_t cap = r->cap == 0 ? 256 : r->cap * 2;
        struct sent *s = sl_realloc(r->sent, cap * sizeof(*s));

        if (s == NULL) {
            ingest_dlq_read_rec_fini(&rr);
            return sl_err_set(r->err, SL_ENOMEM, "out of memory replaying");
        }
        r->sent = s;
        r->cap = cap;
    }
    r->sent[r->n_sent] = (struct sent){.dlq_partition = m->partition, .dlq_offset = m->offset};
    h = replay_headers(m, r->src->topic);
    /* The report writes through a pointer into sent: no realloc until the flush. */
    kerr = rd_kafka_producev(r->producer, RD_KAFKA_V_TOPIC(rr.r.topic),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_KEY(m->key, m->key_len),
                             RD_KAFKA_V_VALUE(m->payload, m->len), RD_KAFKA_V_HEADERS(h),
                             RD_KAFKA_V_OPAQUE((void *)(intptr_t)r->n_sent), RD_KAFKA_V_END);
    ingest_dlq_read_rec_fini(&rr);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_headers_destroy(h);
        r->out->n_failed++;
        r->is_partition_blocked = true;
        sl_log_warn(COMPONENT, "cannot re-produce dead letter @%lld: %s", (long long)m->offset,
                    rd_kafka_err2str(kerr));
        return 1;
    }
    r->n_sent++;
    rd_kafka_poll(r->producer, 0);
    return stop;
}

/* The delivery reports of replay carry their index in sent (not a pointer: it grows). */
static void on_replay_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct topic_replay *r = opaque;
    size_t i = (size_t)(intptr_t)m->_private;

    (void)rk;
    if (i < r->n_sent) {
        r->sent[i].ok = m->err == RD_KAFKA_RESP_ERR_NO_ERROR;
    }
}

/* Commits, per partition, the offset after the last dead letter of an unbroken run of
 * acknowledged ones from the start. */
static int replay_commit(struct topic_replay *r, struct ingest_dlq_topic_reader *t,
                         struct sl_err *err)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(t->n_parts);
    rd_kafka_resp_err_t kerr = RD_KAFKA_RESP_ERR_NO_ERROR;

    for (int p = 0; p < t->n_parts; p++) {
        int64_t next = -1;

        for (size_t i = 0; i < r->n_sent; i++) {
            if (r->sent[i].dlq_partition != t->parts[p]) {
                continue;
            }
            if (!r->sent[i].ok) {
                break;
            }
            next = r->sent[i].dlq_offset + 1;
        }
        for (size_t i = 0; i < r->n_sent; i++) {
            if (r->sent[i].dlq_partition == t->parts[p] && r->sent[i].dlq_offset < next) {
                r->out->n_replayed++;
            }
            else if (r->sent[i].dlq_partition == t->parts[p]) {
                r->out->n_failed++;
            }
        }
        if (next >= 0) {
            rd_kafka_topic_partition_list_add(list, r->src->topic, t->parts[p])->offset = next;
        }
    }
    if (list->cnt > 0) {
        kerr = rd_kafka_commit(t->rk, list, 0);
    }
    rd_kafka_topic_partition_list_destroy(list);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return sl_err_set(err, SL_ESERVER, "replayed, but cannot commit group %s (%s): the "
                          "next replay sends them again", INGEST_DLQ_REPLAY_GROUP,
                          rd_kafka_err2str(kerr));
    }
    return 0;
}

static int replay_topic(const struct ingest_dlq_source *src, size_t limit, bool dry_run,
                        ingest_dlq_visit_cb cb, void *user, struct ingest_dlq_replay_result *out,
                        struct sl_err *err)
{
    struct ingest_dlq_topic_reader t;
    struct topic_replay r = {.src = src, .limit = limit, .dry_run = dry_run, .cb = cb,
                             .user = user, .out = out, .err = err};
    rd_kafka_conf_t *conf = NULL;
    char errstr[512];
    int rc = ingest_dlq_topic_reader_init(&t, src, true, err);

    if (rc == 0 && !dry_run) {
        conf = rd_kafka_conf_new();
        rc = ingest_dlq_conf_set(conf, "bootstrap.servers", src->brokers, err);
        if (rc == 0) {
            rc = ingest_dlq_conf_set(conf, "enable.idempotence", "true", err);
        }
        if (rc == 0) {
            rc = ingest_dlq_conf_set(conf, "acks", "all", err);
        }
        if (rc == 0) {
            rc = ingest_dlq_conf_set(conf, "client.id", "sluice-dlq-replay", err);
        }
        if (rc == 0) {
            rd_kafka_conf_set_log_cb(conf, ingest_dlq_on_log);
            rd_kafka_conf_set_dr_msg_cb(conf, on_replay_delivery);
            rd_kafka_conf_set_opaque(conf, &r);
            r.producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
            if (r.producer == NULL) {
                rc = sl_err_set(err, SL_EINVAL, "cannot create a Kafka producer: %s", errstr);
            }
            conf = r.producer == NULL ? conf : NULL;
        }
        if (conf != NULL) {
            rd_kafka_conf_destroy(conf);
        }
    }
    for (int i = 0; rc == 0 && i < t.n_parts; i++) {
        r.is_partition_blocked = false;
        rc = ingest_dlq_read_partition(&t, src, i, replay_message, &r, err);
        rc = rc > 0 ? 0 : rc;
        if (r.limit > 0 && r.seen >= r.limit) {
            break;
        }
    }
    if (r.producer != NULL) {
        ingest_dlq_producer_drain(r.producer, REPLAY_FLUSH_MS);
        if (rc == 0) {
            rc = replay_commit(&r, &t, err);
        }
        rd_kafka_destroy(r.producer);
    }
    ingest_dlq_topic_reader_fini(&t);
    sl_free(r.sent);
    return rc;
}

/* ---- replay: the file ---- */

struct file_replay {
    size_t limit;
    bool dry_run;
    ingest_dlq_visit_cb cb;
    void *user;
    struct sl_ch *ch;
    char insert_sql[INGEST_ROWS_INSERT_SQL_MAX];
    struct sl_ch_buf row;
    struct sl_ch_buf keep;     /* lines staying in dead-letters.jsonl */
    struct sl_ch_buf replayed; /* lines moving to replayed.jsonl */
    size_t seen;
    struct ingest_dlq_replay_result *out;
    struct sl_err *err;
};

/* Keeps a line as it was (past the limit, damaged, or a dry run). */
static int keep_line(struct file_replay *r, const char *line, size_t len)
{
    if (sl_ch_buf_append(&r->keep, line, len) != 0 || sl_ch_buf_append(&r->keep, "\n", 1) != 0) {
        return sl_err_set(r->err, SL_ENOMEM, "out of memory replaying");
    }
    return 0;
}

static int replay_line(void *user, const char *line, size_t len, int64_t line_no)
{
    struct file_replay *r = user;
    struct ingest_dlq_read_rec rr;
    struct sl_err e;
    size_t out_len = 0;
    char *out_line = NULL;
    int rc;

    if ((r->limit > 0 && r->seen >= r->limit) ||
        ingest_dlq_rec_from_line(&rr, line, len, line_no, false) != 0) {
        return keep_line(r, line, len);
    }
    r->seen++;
    if (r->cb != NULL) {
        r->cb(r->user, &rr.r);
    }
    if (r->dry_run) {
        ingest_dlq_read_rec_fini(&rr);
        return keep_line(r, line, len);
    }
    sl_err_clear(&e);
    sl_ch_buf_reset(&r->row);
    rc = ingest_rows_append(&r->row, rr.r.value != NULL ? rr.r.value : "", rr.r.value_len,
                            ingest_dlq_wall_ms(), &e);
    if (rc == 0) {
        rc = sl_ch_insert(r->ch, r->insert_sql, r->row.data, r->row.len, &e);
        if (rc != 0 && !ingest_dlq_is_rejection(rc, &e)) {
            /* ClickHouse unavailable: stop; nothing is rewritten. */
            ingest_dlq_read_rec_fini(&rr);
            if (r->err != NULL) {
                *r->err = e;
            }
            return rc;
        }
    }
    else if (rc != SL_EINVAL) {
        ingest_dlq_read_rec_fini(&rr);
        return sl_err_set(r->err, rc, "cannot encode a dead letter: %s", e.msg);
    }
    if (rc == 0) {
        r->out->n_replayed++;
        out_line = ingest_dlq_record_line(&rr.r, "replayed_ms", ingest_dlq_wall_ms(), &out_len);
        rc = out_line == NULL ? SL_ENOMEM : sl_ch_buf_append(&r->replayed, out_line, out_len);
    }
    else {
        char reason[SL_ERR_MSG_MAX + 32];

        r->out->n_still_dead++;
        snprintf(reason, sizeof(reason), "%s: %s",
                 rc == SL_EINVAL ? "cannot encode" : "rejected by ClickHouse", e.msg);
        rr.r.reason = reason;
        rr.r.time_ms = ingest_dlq_wall_ms();
        out_line = ingest_dlq_record_line(&rr.r, NULL, 0, &out_len);
        rc = out_line == NULL ? SL_ENOMEM : sl_ch_buf_append(&r->keep, out_line, out_len);
    }
    sl_free(out_line);
    ingest_dlq_read_rec_fini(&rr);
    return rc != 0 ? sl_err_set(r->err, SL_ENOMEM, "out of memory replaying") : 0;
}

/* Replaces folder/name with text (tmp, fsync, rename, fsync the folder). */
static int replace_file(const char *folder, const char *name, const char *text, size_t len,
                        struct sl_err *err)
{
    char path[4096], tmp[4200];
    int fd;
    int rc = 0;

    snprintf(path, sizeof(path), "%s/%s", folder, name);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return sl_err_set(err, SL_EIO, "cannot create %s: %s", tmp, strerror(errno));
    }
    if (ingest_dlq_write_all(fd, text != NULL ? text : "", len) != 0 || fsync(fd) != 0) {
        rc = sl_err_set(err, SL_EIO, "cannot write %s: %s", tmp, strerror(errno));
    }
    close(fd);
    if (rc == 0 && rename(tmp, path) != 0) {
        rc = sl_err_set(err, SL_EIO, "cannot replace %s: %s", path, strerror(errno));
    }
    if (rc == 0 && ingest_dlq_fsync_dir(folder) != 0) {
        rc = sl_err_set(err, SL_EIO, "cannot sync %s: %s", folder, strerror(errno));
    }
    if (rc != 0) {
        unlink(tmp);
    }
    return rc;
}

static int replay_folder(const struct ingest_dlq_source *src, size_t limit, bool dry_run,
                         const struct sl_ch_settings *chs, ingest_dlq_visit_cb cb, void *user,
                         struct ingest_dlq_replay_result *out, struct sl_err *err)
{
    struct file_replay r = {.limit = limit, .dry_run = dry_run, .cb = cb, .user = user,
                            .out = out, .err = err};
    struct sl_ch_settings client = chs != NULL ? *chs : (struct sl_ch_settings){0};
    char path[4096];
    bool is_new = false;
    int fd = -1;
    int rc = 0;

    sl_ch_buf_init(&r.row, (size_t)64 << 20);
    sl_ch_buf_init(&r.keep, (size_t)1 << 32);
    sl_ch_buf_init(&r.replayed, (size_t)1 << 32);
    if (!dry_run) {
        if (chs == NULL || chs->database == NULL ||
            ingest_rows_insert_sql(chs->database, r.insert_sql, sizeof(r.insert_sql)) != 0) {
            rc = sl_err_set(err, SL_EINVAL, "replay needs SLUICE_CLICKHOUSE_DATABASE");
            goto done;
        }
        client.database = NULL;
        rc = sl_ch_create(&r.ch, &client, err);
        if (rc != 0) {
            goto done;
        }
    }
    snprintf(path, sizeof(path), "%s/%s", src->folder, INGEST_DLQ_FILE);
    if (access(path, F_OK) != 0) {
        goto done; /* no dead letters */
    }
    /* Held across read and rewrite: the loader's appends wait, none is lost. */
    fd = ingest_dlq_open_locked(src->folder, INGEST_DLQ_FILE, &is_new, err);
    if (fd < 0) {
        rc = SL_EIO;
        goto done;
    }
    rc = ingest_dlq_each_line(path, replay_line, &r, err);
    if (rc == 0 && !dry_run && r.seen > 0) {
        /* Audit trail first: a crash between the two leaves a line in both, which a later
         * replay loads again (collapsed by event id) rather than losing it. */
        if (r.replayed.len > 0) {
            rc = ingest_dlq_append_lines(src->folder, INGEST_DLQ_REPLAYED_FILE, r.replayed.data,
                              r.replayed.len, err);
        }
        if (rc == 0) {
            rc = replace_file(src->folder, INGEST_DLQ_FILE, r.keep.data, r.keep.len, err);
        }
    }

done:
    if (fd >= 0) {
        close(fd);
    }
    sl_ch_destroy(r.ch);
    sl_ch_buf_fini(&r.row);
    sl_ch_buf_fini(&r.keep);
    sl_ch_buf_fini(&r.replayed);
    return rc;
}

int ingest_dlq_replay(const struct ingest_dlq_source *src, size_t limit, bool dry_run,
                      const struct sl_ch_settings *ch, ingest_dlq_visit_cb cb, void *user,
                      struct ingest_dlq_replay_result *out, struct sl_err *err)
{
    memset(out, 0, sizeof(*out));
    if (src->brokers != NULL && src->brokers[0] != '\0') {
        return replay_topic(src, limit, dry_run, cb, user, out, err);
    }
    return replay_folder(src, limit, dry_run, ch, cb, user, out, err);
}


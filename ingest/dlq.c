/*
 * Dead letters: the Kafka writer, the spool-mode file, and list/replay of both for
 * `sluice dlq`. Formats and guarantees are described in dlq.h.
 */
#include "dlq.h"

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
#include "timefmt.h"

#define COMPONENT "dlq"
#define KAFKA_LOG_COMPONENT "kafka"
#define FIELD_MAX 512
#define REPLAY_FLUSH_MS 30000
/* Longest line of the dead-letter file read back (a Kafka message is at most 1 MB by
 * default; hex doubles it). */
#define LINE_MAX_BYTES (8u * 1024 * 1024)

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void)
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
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    enum sl_log_level lvl = level <= 3 ? SL_LOG_LEVEL_ERROR
                          : level == 4 ? SL_LOG_LEVEL_WARN
                          : level <= 6 ? SL_LOG_LEVEL_INFO
                                       : SL_LOG_LEVEL_DEBUG;

    SL_LOG_AT(lvl, KAFKA_LOG_COMPONENT, NULL, "%s: %s: %s", rd_kafka_name(rk), fac, buf);
}

static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value,
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
    rc = conf_set(conf, "bootstrap.servers", brokers, err);
    if (rc == 0) {
        rc = conf_set(conf, "client.id", client_id, err);
    }
    if (rc == 0) {
        rc = conf_set(conf, "enable.idempotence", "true", err);
    }
    if (rc == 0) {
        rc = conf_set(conf, "acks", "all", err);
    }
    if (rc == 0) {
        rc = conf_set(conf, "linger.ms", "5", err);
    }
    if (rc == 0) {
        rc = conf_set(conf, "message.timeout.ms", "60000", err);
    }
    if (rc != 0) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    rd_kafka_conf_set_log_cb(conf, on_log);
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
static void producer_drain(rd_kafka_t *rk, int timeout_ms)
{
    int64_t deadline = mono_ms() + timeout_ms;

    while (rd_kafka_outq_len(rk) > 0 && mono_ms() < deadline) {
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

    producer_drain(w->rk, timeout_ms);
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

/* ---- spool mode: the file ---- */

static const char hexdig[] = "0123456789abcdef";

/* Sets obj[name] to the text, or obj[name_hex] to its hex when it is not UTF-8. */
static int set_text(json_t *obj, const char *name, const void *data, size_t len)
{
    json_t *s = data != NULL ? json_stringn(data, len) : json_null();
    char hex_name[64];
    char *hex;

    if (s != NULL) {
        return json_object_set_new(obj, name, s);
    }
    hex = sl_malloc(len * 2 + 1);
    if (hex == NULL) {
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        hex[2 * i] = hexdig[((const unsigned char *)data)[i] >> 4];
        hex[2 * i + 1] = hexdig[((const unsigned char *)data)[i] & 15];
    }
    hex[len * 2] = '\0';
    snprintf(hex_name, sizeof(hex_name), "%s_hex", name);
    s = json_string(hex);
    sl_free(hex);
    return json_object_set_new(obj, hex_name, s);
}

/* One record as a JSON line (new, sl_free), "\n" included; NULL when memory ran out. */
static char *record_line(const struct ingest_dlq_record *r, const char *extra_key,
                         int64_t extra_value, size_t *len)
{
    char when[SL_TIMEFMT_ISO_MAX];
    json_t *obj = json_pack("{s:I, s:s, s:s}", "time_ms", (json_int_t)r->time_ms, "time",
                            sl_timefmt_iso(r->time_ms / 1000, when), "reason", r->reason);
    char *text = NULL, *line = NULL;

    if (obj == NULL) {
        return NULL;
    }
    if (json_object_set_new(obj, "tenant_id", r->tenant_id != NULL ? json_string(r->tenant_id)
                                                                     : json_null()) != 0 ||
        set_text(obj, "key", r->key_len > 0 ? r->key : NULL, r->key_len) != 0 ||
        set_text(obj, "value", r->value != NULL ? r->value : "", r->value_len) != 0 ||
        (extra_key != NULL &&
         json_object_set_new(obj, extra_key, json_integer((json_int_t)extra_value)) != 0)) {
        json_decref(obj);
        return NULL;
    }
    text = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (text == NULL) {
        return NULL;
    }
    *len = strlen(text) + 1;
    line = sl_malloc(*len + 1);
    if (line != NULL) {
        memcpy(line, text, *len - 1);
        line[*len - 1] = '\n';
        line[*len] = '\0';
    }
    sl_free(text);
    return line;
}

static int fsync_dir(const char *folder)
{
    int fd = open(folder, O_RDONLY | O_DIRECTORY);
    int rc = 0;

    if (fd < 0 || fsync(fd) != 0) {
        rc = -1;
    }
    if (fd >= 0) {
        close(fd);
    }
    return rc;
}

/*
 * Opens folder/name for appending under an exclusive flock, making sure the locked file is
 * still the one at that path (a replay may have replaced it). Returns the fd or -1.
 */
static int open_locked(const char *folder, const char *name, bool *is_new, struct sl_err *err)
{
    char path[4096];

    snprintf(path, sizeof(path), "%s/%s", folder, name);
    if (mkdir(folder, 0700) != 0 && errno != EEXIST) {
        sl_err_set(err, SL_EIO, "cannot create %s: %s", folder, strerror(errno));
        return -1;
    }
    for (int attempt = 0; attempt < 10; attempt++) {
        struct stat at_fd, at_path;
        int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);

        if (fd < 0) {
            sl_err_set(err, SL_EIO, "cannot open %s: %s", path, strerror(errno));
            return -1;
        }
        if (flock(fd, LOCK_EX) != 0) {
            sl_err_set(err, SL_EIO, "cannot lock %s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        if (fstat(fd, &at_fd) == 0 && stat(path, &at_path) == 0 &&
            at_fd.st_ino == at_path.st_ino && at_fd.st_dev == at_path.st_dev) {
            *is_new = at_fd.st_size == 0;
            return fd;
        }
        close(fd);
    }
    sl_err_set(err, SL_EIO, "%s keeps being replaced", path);
    return -1;
}

/* Writes all of buf to fd and fsyncs it. */
static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);

        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        buf += w;
        len -= (size_t)w;
    }
    return fdatasync(fd);
}

/* Appends lines (already built) to folder/name with one fsync. */
static int append_lines(const char *folder, const char *name, const char *text, size_t len,
                        struct sl_err *err)
{
    bool is_new = false;
    int fd = open_locked(folder, name, &is_new, err);
    int rc = 0;

    if (fd < 0) {
        return SL_EIO;
    }
    if (write_all(fd, text, len) != 0) {
        rc = sl_err_set(err, SL_EIO, "cannot write %s/%s: %s", folder, name, strerror(errno));
    }
    else if (is_new && fsync_dir(folder) != 0) {
        rc = sl_err_set(err, SL_EIO, "cannot sync %s: %s", folder, strerror(errno));
    }
    close(fd);
    return rc;
}

int ingest_dlq_file_append(const char *folder, const struct ingest_dlq_record *recs,
                           size_t n, struct sl_err *err)
{
    struct sl_ch_buf text;
    int rc = 0;

    if (n == 0) {
        return 0;
    }
    sl_ch_buf_init(&text, (size_t)1 << 30);
    for (size_t i = 0; i < n && rc == 0; i++) {
        size_t len = 0;
        char *line = record_line(&recs[i], NULL, 0, &len);

        rc = line == NULL ? SL_ENOMEM : sl_ch_buf_append(&text, line, len);
        sl_free(line);
    }
    if (rc != 0) {
        sl_err_set(err, SL_ENOMEM, "out of memory writing dead letters");
    }
    else {
        rc = append_lines(folder, INGEST_DLQ_FILE, text.data, text.len, err);
    }
    sl_ch_buf_fini(&text);
    return rc;
}

/* ---- reading back: records ---- */

/* A record read back, with the storage its pointers borrow. */
struct read_rec {
    struct ingest_dlq_record r;
    char reason[FIELD_MAX];
    char tenant[FIELD_MAX];
    char topic[FIELD_MAX];
    unsigned char *key_buf;   /* owned (file records with hex or text keys) */
    unsigned char *value_buf; /* owned */
    json_t *line;             /* owned: the parsed line (file records) */
};

static void read_rec_fini(struct read_rec *rr)
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
static void rec_from_message(struct read_rec *rr, const rd_kafka_message_t *m)
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
        const char *hi = strchr(hexdig, hex[2 * i]), *lo = strchr(hexdig, hex[2 * i + 1]);

        if (hi == NULL || lo == NULL) {
            sl_free(*out);
            *out = NULL;
            return SL_EINVAL;
        }
        (*out)[i] = (unsigned char)(((hi - hexdig) << 4) | (lo - hexdig));
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
static int rec_from_line(struct read_rec *rr, const char *line, size_t len, int64_t line_no,
                         bool is_replayed)
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
        read_rec_fini(rr);
        return SL_EINVAL;
    }
    return 0;
}

/* ---- the file, read whole ---- */

struct lines {
    char *text; /* the file, NUL-terminated */
    size_t len;
};

static int read_file(const char *path, struct lines *out, struct sl_err *err)
{
    FILE *f = fopen(path, "re");
    struct sl_ch_buf b;
    char chunk[65536];
    size_t n;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (f == NULL) {
        return errno == ENOENT ? 0 : sl_err_set(err, SL_EIO, "cannot open %s: %s", path,
                                                 strerror(errno));
    }
    sl_ch_buf_init(&b, (size_t)1 << 32);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && rc == 0) {
        rc = sl_ch_buf_append(&b, chunk, n);
    }
    if (rc == 0 && ferror(f)) {
        rc = sl_err_set(err, SL_EIO, "cannot read %s: %s", path, strerror(errno));
    }
    else if (rc != 0) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory reading %s", path);
    }
    fclose(f);
    if (rc != 0) {
        sl_ch_buf_fini(&b);
        return rc;
    }
    out->text = b.data;
    out->len = b.len;
    return 0;
}

/* Calls fn for each whole line of path (a torn last line is skipped). */
typedef int (*line_fn)(void *user, const char *line, size_t len, int64_t line_no);

static int each_line(const char *path, line_fn fn, void *user, struct sl_err *err)
{
    struct lines f;
    int64_t line_no = 0;
    int rc = read_file(path, &f, err);

    for (size_t at = 0; rc == 0 && at < f.len;) {
        const char *nl = memchr(f.text + at, '\n', f.len - at);

        if (nl == NULL) {
            break;
        }
        line_no++;
        rc = fn(user, f.text + at, (size_t)(nl - (f.text + at)), line_no);
        at = (size_t)(nl - f.text) + 1;
    }
    sl_free(f.text);
    return rc > 0 ? 0 : rc;
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
    struct read_rec rr;
    int stop;

    if (w->limit > 0 && w->seen >= w->limit) {
        return 1;
    }
    if (rec_from_line(&rr, line, len, line_no, w->is_replayed) != 0) {
        sl_log_warn(COMPONENT, "skipping damaged dead-letter line %lld", (long long)line_no);
        return 0;
    }
    w->seen++;
    stop = w->cb(w->user, &rr.r) != 0;
    read_rec_fini(&rr);
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
        rc = each_line(path, list_line, &w, err);
        w.is_replayed = false;
    }
    snprintf(path, sizeof(path), "%s/%s", src->folder, INGEST_DLQ_FILE);
    return rc == 0 ? each_line(path, list_line, &w, err) : rc;
}

/* ---- list and replay: the topic ---- */

struct topic_reader {
    rd_kafka_t *rk;          /* consumer, group sluice-dlq-replay, never subscribes */
    int n_parts;
    int32_t *parts;
    int64_t *start;          /* first offset to read per partition */
    int64_t *end;            /* high watermark when the walk started */
    int64_t *committed;      /* the group's offset, -1 if none */
};

static void topic_reader_fini(struct topic_reader *t)
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
static int topic_reader_init(struct topic_reader *t, const struct ingest_dlq_source *src,
                             bool from_committed, struct sl_err *err)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = NULL;
    rd_kafka_topic_partition_list_t *list = NULL;
    rd_kafka_resp_err_t kerr;
    char errstr[512];
    int rc = 0;

    memset(t, 0, sizeof(*t));
    rc = conf_set(conf, "bootstrap.servers", src->brokers, err);
    if (rc == 0) {
        rc = conf_set(conf, "group.id", INGEST_DLQ_REPLAY_GROUP, err);
    }
    if (rc == 0) {
        rc = conf_set(conf, "enable.auto.commit", "false", err);
    }
    if (rc == 0) {
        rc = conf_set(conf, "enable.auto.offset.store", "false", err);
    }
    if (rc == 0) {
        rc = conf_set(conf, "client.id", "sluice-dlq", err);
    }
    if (rc != 0) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    rd_kafka_conf_set_log_cb(conf, on_log);
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
typedef int (*msg_fn)(void *user, const rd_kafka_message_t *m);

static int read_partition(struct topic_reader *t, const struct ingest_dlq_source *src, int i,
                          msg_fn fn, void *user, struct sl_err *err)
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
    const struct topic_reader *t;
    int i;
};

static int list_message(void *user, const rd_kafka_message_t *m)
{
    struct topic_list *tl = user;
    struct read_rec rr;
    int stop;

    if (tl->w.limit > 0 && tl->w.seen >= tl->w.limit) {
        return 1;
    }
    rec_from_message(&rr, m);
    rr.r.is_replayed = tl->t->committed[tl->i] > m->offset;
    tl->w.seen++;
    stop = tl->w.cb(tl->w.user, &rr.r) != 0;
    read_rec_fini(&rr);
    return stop;
}

int ingest_dlq_list(const struct ingest_dlq_source *src, size_t limit, bool include_replayed,
                    ingest_dlq_visit_cb cb, void *user, struct sl_err *err)
{
    struct topic_reader t;
    struct topic_list tl = {.w = {.limit = limit, .cb = cb, .user = user}, .t = &t};
    int rc;

    if (src->brokers == NULL || src->brokers[0] == '\0') {
        return list_folder(src, limit, include_replayed, cb, user, err);
    }
    rc = topic_reader_init(&t, src, !include_replayed, err);
    for (int i = 0; rc == 0 && i < t.n_parts; i++) {
        tl.i = i;
        rc = read_partition(&t, src, i, list_message, &tl, err);
    }
    topic_reader_fini(&t);
    return rc < 0 ? rc : 0;
}

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
    struct read_rec rr;
    rd_kafka_headers_t *h = NULL;
    rd_kafka_resp_err_t kerr;
    int stop = 0;

    if (r->is_partition_blocked || (r->limit > 0 && r->seen >= r->limit)) {
        return 1;
    }
    rec_from_message(&rr, m);
    r->seen++;
    if (r->cb != NULL) {
        stop = r->cb(r->user, &rr.r) != 0;
    }
    if (r->dry_run) {
        read_rec_fini(&rr);
        return stop;
    }
    if (rr.r.topic == NULL) {
        sl_log_warn(COMPONENT, "dead letter %s [%d] @%lld names no original topic; not replayed",
                    r->src->topic, (int)m->partition, (long long)m->offset);
        r->out->n_failed++;
        r->is_partition_blocked = true;
        read_rec_fini(&rr);
        return 1;
    }
    if (r->n_sent == r->cap) {
        size_t cap = r->cap == 0 ? 256 : r->cap * 2;
        struct sent *s = sl_realloc(r->sent, cap * sizeof(*s));

        if (s == NULL) {
            read_rec_fini(&rr);
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
    read_rec_fini(&rr);
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
static int replay_commit(struct topic_replay *r, struct topic_reader *t, struct sl_err *err)
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
    struct topic_reader t;
    struct topic_replay r = {.src = src, .limit = limit, .dry_run = dry_run, .cb = cb,
                             .user = user, .out = out, .err = err};
    rd_kafka_conf_t *conf = NULL;
    char errstr[512];
    int rc = topic_reader_init(&t, src, true, err);

    if (rc == 0 && !dry_run) {
        conf = rd_kafka_conf_new();
        rc = conf_set(conf, "bootstrap.servers", src->brokers, err);
        if (rc == 0) {
            rc = conf_set(conf, "enable.idempotence", "true", err);
        }
        if (rc == 0) {
            rc = conf_set(conf, "acks", "all", err);
        }
        if (rc == 0) {
            rc = conf_set(conf, "client.id", "sluice-dlq-replay", err);
        }
        if (rc == 0) {
            rd_kafka_conf_set_log_cb(conf, on_log);
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
        rc = read_partition(&t, src, i, replay_message, &r, err);
        rc = rc > 0 ? 0 : rc;
        if (r.limit > 0 && r.seen >= r.limit) {
            break;
        }
    }
    if (r.producer != NULL) {
        producer_drain(r.producer, REPLAY_FLUSH_MS);
        if (rc == 0) {
            rc = replay_commit(&r, &t, err);
        }
        rd_kafka_destroy(r.producer);
    }
    topic_reader_fini(&t);
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
    struct read_rec rr;
    struct sl_err e;
    size_t out_len = 0;
    char *out_line = NULL;
    int rc;

    if ((r->limit > 0 && r->seen >= r->limit) ||
        rec_from_line(&rr, line, len, line_no, false) != 0) {
        return keep_line(r, line, len);
    }
    r->seen++;
    if (r->cb != NULL) {
        r->cb(r->user, &rr.r);
    }
    if (r->dry_run) {
        read_rec_fini(&rr);
        return keep_line(r, line, len);
    }
    sl_err_clear(&e);
    sl_ch_buf_reset(&r->row);
    rc = ingest_rows_append(&r->row, rr.r.value != NULL ? rr.r.value : "", rr.r.value_len,
                            wall_ms(), &e);
    if (rc == 0) {
        rc = sl_ch_insert(r->ch, r->insert_sql, r->row.data, r->row.len, &e);
        if (rc != 0 && !ingest_dlq_is_rejection(rc, &e)) {
            /* ClickHouse unavailable: stop; nothing is rewritten. */
            read_rec_fini(&rr);
            if (r->err != NULL) {
                *r->err = e;
            }
            return rc;
        }
    }
    else if (rc != SL_EINVAL) {
        read_rec_fini(&rr);
        return sl_err_set(r->err, rc, "cannot encode a dead letter: %s", e.msg);
    }
    if (rc == 0) {
        r->out->n_replayed++;
        out_line = record_line(&rr.r, "replayed_ms", wall_ms(), &out_len);
        rc = out_line == NULL ? SL_ENOMEM : sl_ch_buf_append(&r->replayed, out_line, out_len);
    }
    else {
        char reason[SL_ERR_MSG_MAX + 32];

        r->out->n_still_dead++;
        snprintf(reason, sizeof(reason), "%s: %s",
                 rc == SL_EINVAL ? "cannot encode" : "rejected by ClickHouse", e.msg);
        rr.r.reason = reason;
        rr.r.time_ms = wall_ms();
        out_line = record_line(&rr.r, NULL, 0, &out_len);
        rc = out_line == NULL ? SL_ENOMEM : sl_ch_buf_append(&r->keep, out_line, out_len);
    }
    sl_free(out_line);
    read_rec_fini(&rr);
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
    if (write_all(fd, text != NULL ? text : "", len) != 0 || fsync(fd) != 0) {
        rc = sl_err_set(err, SL_EIO, "cannot write %s: %s", tmp, strerror(errno));
    }
    close(fd);
    if (rc == 0 && rename(tmp, path) != 0) {
        rc = sl_err_set(err, SL_EIO, "cannot replace %s: %s", path, strerror(errno));
    }
    if (rc == 0 && fsync_dir(folder) != 0) {
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
    fd = open_locked(src->folder, INGEST_DLQ_FILE, &is_new, err);
    if (fd < 0) {
        rc = SL_EIO;
        goto done;
    }
    rc = each_line(path, replay_line, &r, err);
    if (rc == 0 && !dry_run && r.seen > 0) {
        /* Audit trail first: a crash between the two leaves a line in both, which a later
         * replay loads again (collapsed by event id) rather than losing it. */
        if (r.replayed.len > 0) {
            rc = append_lines(src->folder, INGEST_DLQ_REPLAYED_FILE, r.replayed.data,
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

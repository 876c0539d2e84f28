/*
 * Metrics into internal_metrics: flattening the registry's JSON rendering into rows, and a
 * libuv timer that inserts one snapshot per interval on the thread pool.
 */
#include "snapshot.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "log.h"

#define COMPONENT "snapshot"
#define INSERT_SQL_MAX 512
#define ROWS_MAX_BYTES (64u * 1024 * 1024)

const struct sl_cfg_opt ingest_snapshot_cfg_opts[] = {
    {.key = "SLUICE_METRICS_SNAPSHOT_S", .type = SL_CFG_INT, .def = "60", .min = 0,
     .max = 86400, .offset = offsetof(struct ingest_snapshot_settings, interval_s),
     .desc = "Every this many seconds sluice-ingest writes its metrics into ClickHouse's "
             "internal_metrics table; 0: never."},
};
const size_t ingest_snapshot_cfg_n_opts =
    sizeof(ingest_snapshot_cfg_opts) / sizeof(ingest_snapshot_cfg_opts[0]);

int ingest_snapshot_insert_sql(const char *database, char *out, size_t cap)
{
    struct sl_ch_buf b;
    int rc;

    sl_ch_buf_init(&b, cap > 0 ? cap - 1 : 0);
    rc = sl_ch_buf_append_str(&b, "INSERT INTO ");
    if (rc == 0) {
        rc = sl_ch_quote_ident(&b, database, strlen(database));
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(&b, ".internal_metrics (ts, host, process, name, label_keys, "
                                      "label_values, value) FORMAT RowBinary");
    }
    if (rc == 0) {
        memcpy(out, b.data, b.len + 1);
    }
    else if (cap > 0) {
        out[0] = '\0';
    }
    sl_ch_buf_fini(&b);
    return rc == 0 ? 0 : SL_EINVAL;
}

/* Appends one row. */
static int put_row(struct sl_ch_buf *buf, int64_t ts_s, const char *host, const char *process,
                   const char *name, json_t *labels, double value)
{
    const char *key;
    json_t *v;
    int rc;

    rc = sl_ch_rb_datetime(buf, (uint32_t)ts_s);
    if (rc == 0) {
        rc = sl_ch_rb_string(buf, host, strlen(host));
    }
    if (rc == 0) {
        rc = sl_ch_rb_string(buf, process, strlen(process));
    }
    if (rc == 0) {
        rc = sl_ch_rb_string(buf, name, strlen(name));
    }
    if (rc == 0) {
        rc = sl_ch_rb_array_len(buf, json_object_size(labels));
    }
    json_object_foreach(labels, key, v) {
        if (rc == 0) {
            rc = sl_ch_rb_string(buf, key, strlen(key));
        }
    }
    if (rc == 0) {
        rc = sl_ch_rb_array_len(buf, json_object_size(labels));
    }
    json_object_foreach(labels, key, v) {
        const char *text = json_string_value(v);

        if (rc == 0) {
            rc = sl_ch_rb_string(buf, text != NULL ? text : "", text != NULL ? strlen(text) : 0);
        }
    }
    if (rc == 0) {
        rc = sl_ch_rb_f64(buf, value);
    }
    return rc;
}

int ingest_snapshot_rows(struct sl_metrics *m, const char *host, const char *process,
                         int64_t ts_s, struct sl_ch_buf *buf, size_t *n_rows,
                         struct sl_err *err)
{
    static const char *const hist_parts[] = {"count", "sum", "p50", "p90", "p99"};
    char *text = NULL;
    json_t *root = NULL;
    const char *fname;
    json_t *fam;
    int rc;

    *n_rows = 0;
    rc = sl_metrics_render_json(m, &text);
    if (rc != 0) {
        return sl_err_set(err, rc, "cannot render the metrics");
    }
    root = json_loads(text, 0, NULL);
    sl_free(text);
    if (root == NULL) {
        return sl_err_set(err, SL_ENOMEM, "cannot parse the rendered metrics");
    }
    json_object_foreach(root, fname, fam) {
        const char *type = json_string_value(json_object_get(fam, "type"));
        bool is_hist = type != NULL && strcmp(type, "histogram") == 0;
        size_t i;
        json_t *s;

        json_array_foreach(json_object_get(fam, "series"), i, s) {
            json_t *labels = json_object_get(s, "labels");

            if (!is_hist) {
                json_t *v = json_object_get(s, "value");

                if (json_is_number(v)) {
                    rc = put_row(buf, ts_s, host, process, fname, labels, json_number_value(v));
                    *n_rows += rc == 0;
                }
            }
            for (size_t k = 0; is_hist && rc == 0 && k < 5; k++) {
                json_t *v = json_object_get(s, hist_parts[k]);
                char name[256];

                if (!json_is_number(v)) {
                    continue; /* the quantiles of an empty histogram are null */
                }
                snprintf(name, sizeof(name), "%s_%s", fname, hist_parts[k]);
                rc = put_row(buf, ts_s, host, process, name, labels, json_number_value(v));
                *n_rows += rc == 0;
            }
            if (rc != 0) {
                json_decref(root);
                return sl_err_set(err, rc, "cannot encode the metrics snapshot");
            }
        }
    }
    json_decref(root);
    return 0;
}

int ingest_snapshot_write(struct sl_ch *ch, const char *database, struct sl_metrics *m,
                          const char *process, int64_t ts_s, struct sl_err *err)
{
    char sql[INSERT_SQL_MAX];
    char host[256];
    struct sl_ch_buf buf;
    size_t n = 0;
    int rc;

    if (gethostname(host, sizeof(host)) != 0) {
        snprintf(host, sizeof(host), "unknown");
    }
    host[sizeof(host) - 1] = '\0';
    rc = ingest_snapshot_insert_sql(database, sql, sizeof(sql));
    if (rc != 0) {
        return sl_err_set(err, rc, "bad database name '%s'", database);
    }
    sl_ch_buf_init(&buf, ROWS_MAX_BYTES);
    rc = ingest_snapshot_rows(m, host, process, ts_s, &buf, &n, err);
    if (rc == 0 && n > 0) {
        rc = sl_ch_insert(ch, sql, buf.data, buf.len, err);
    }
    sl_ch_buf_fini(&buf);
    return rc;
}

/* ---- the timer ---- */

struct ingest_snapshot {
    struct ingest_snapshot_settings s;
    struct sl_ch *ch;
    struct sl_metrics *metrics;
    char *database;
    char *process;
    uv_timer_t timer;
    uv_work_t work;
    bool is_started;
    bool is_closed;
    bool is_writing;
    int rc;            /* last write's result, read in the after-work callback */
    struct sl_err err;
    uint64_t n_failed;
};

static void do_write(uv_work_t *req)
{
    struct ingest_snapshot *s = req->data;

    sl_err_clear(&s->err);
    s->rc = ingest_snapshot_write(s->ch, s->database, s->metrics, s->process,
                                  (int64_t)time(NULL), &s->err);
}

static void after_write(uv_work_t *req, int status)
{
    struct ingest_snapshot *s = req->data;

    s->is_writing = false;
    if (status == 0 && s->rc != 0) {
        s->n_failed++;
        if ((s->n_failed & (s->n_failed - 1)) == 0) {
            sl_log_warn(COMPONENT, "cannot write the metrics snapshot (#%llu failed): %s",
                        (unsigned long long)s->n_failed, s->err.msg);
        }
    }
}

static void on_tick(uv_timer_t *t)
{
    struct ingest_snapshot *s = t->data;

    if (s->is_writing || s->is_closed) {
        return; /* the last one is still on its way: skip this one */
    }
    s->work.data = s;
    if (uv_queue_work(t->loop, &s->work, do_write, after_write) == 0) {
        s->is_writing = true;
    }
}

int ingest_snapshot_create(struct ingest_snapshot **out, const struct ingest_snapshot_settings *st,
                           const struct sl_ch_settings *ch, struct sl_metrics *m,
                           const char *process, struct sl_err *err)
{
    struct ingest_snapshot *s = sl_calloc(1, sizeof(*s));
    struct sl_ch_settings chs = *ch;
    int rc;

    *out = NULL;
    if (s == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory creating the metrics snapshot");
    }
    s->s = *st;
    s->metrics = m;
    s->database = sl_strdup(ch->database != NULL ? ch->database : "");
    s->process = sl_strdup(process);
    if (s->database == NULL || s->process == NULL) {
        ingest_snapshot_destroy(s);
        return sl_err_set(err, SL_ENOMEM, "out of memory creating the metrics snapshot");
    }
    /* The database may not exist yet; every statement names it. */
    chs.database = NULL;
    rc = sl_ch_create(&s->ch, &chs, err);
    if (rc != 0) {
        ingest_snapshot_destroy(s);
        return rc;
    }
    *out = s;
    return 0;
}

void ingest_snapshot_start(struct ingest_snapshot *s, uv_loop_t *loop)
{
    if (s == NULL || s->s.interval_s <= 0 || s->is_started) {
        return;
    }
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, on_tick, (uint64_t)s->s.interval_s * 1000,
                   (uint64_t)s->s.interval_s * 1000);
    s->is_started = true;
}

void ingest_snapshot_stop(struct ingest_snapshot *s)
{
    if (s == NULL || !s->is_started || s->is_closed) {
        return;
    }
    s->is_closed = true;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, NULL);
}

void ingest_snapshot_destroy(struct ingest_snapshot *s)
{
    if (s == NULL) {
        return;
    }
    sl_ch_destroy(s->ch);
    sl_free(s->database);
    sl_free(s->process);
    sl_free(s);
}

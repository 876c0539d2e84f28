/*
 * Rendering the metrics registry (formats in metrics.h): Prometheus text exposition format
 * 0.0.4 into a reusable struct sl_metrics_text, with label values and help escaped and
 * doubles printed so they read back exactly, and JSON through jansson, with histogram
 * buckets and p50/p90/p99. Each render holds the registry's mutex while it walks the
 * families, so it sees every family and series whole; the values themselves are read
 * lock-free. Registering, updating and the quantile estimate are metrics.c's; serving the
 * text is the processes'.
 */
#include "metrics.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "metrics_int.h"

#define NUM_MAX_BYTES 32

static const char *const kind_names[] = {"counter", "gauge", "histogram"};

void sl_metrics_text_init(struct sl_metrics_text *text, size_t max_bytes)
{
    text->data = NULL;
    text->len = 0;
    text->_cap = 0;
    text->_max = max_bytes;
}

void sl_metrics_text_fini(struct sl_metrics_text *text)
{
    if (text != NULL) {
        sl_free(text->data);
        text->data = NULL;
        text->len = 0;
        text->_cap = 0;
    }
}

/* ---- Prometheus text ---- */

/* Formats v so Prometheus (and strtod) read it back exactly: shortest of %.15g..%.17g. */
static void format_double(double v, char *buf, size_t cap)
{
    if (isnan(v)) {
        snprintf(buf, cap, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, cap, "%s", v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) {
            return;
        }
    }
}

static int text_reserve(struct sl_metrics_text *t, size_t more)
{
    size_t need;
    size_t cap;
    char *data;

    if (more > t->_max - t->len) {
        return SL_ENOMEM;
    }
    need = t->len + more + 1;
    if (need <= t->_cap) {
        return 0;
    }
    cap = t->_cap > 0 ? t->_cap : 1024;
    while (cap < need) {
        cap *= 2;
    }
    if (cap > t->_max + 1) {
        cap = t->_max + 1;
    }
    data = sl_realloc(t->data, cap);
    if (data == NULL) {
        return SL_ENOMEM;
    }
    t->data = data;
    t->_cap = cap;
    return 0;
}

static int text_append(struct sl_metrics_text *t, const char *s, size_t n)
{
    if (text_reserve(t, n) != 0) {
        return SL_ENOMEM;
    }
    memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = '\0';
    return 0;
}

static int text_puts(struct sl_metrics_text *t, const char *s)
{
    return text_append(t, s, strlen(s));
}

/* Appends s escaped: backslash and newline always, double quote when in a label value. */
static int text_escaped(struct sl_metrics_text *t, const char *s, bool is_label_value)
{
    for (const char *p = s; *p != '\0'; p++) {
        const char *esc = NULL;
        int rc;

        if (*p == '\\') {
            esc = "\\\\";
        }
        else if (*p == '\n') {
            esc = "\\n";
        }
        else if (*p == '"' && is_label_value) {
            esc = "\\\"";
        }
        rc = esc != NULL ? text_puts(t, esc) : text_append(t, p, 1);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* Appends `{a="x",b="y"[,le="..."]}`; nothing when there are no labels and no le. */
static int text_labels(struct sl_metrics_text *t, const struct sl_metrics_family *f,
                       const struct sl_metrics_series *s, const char *le)
{
    int rc = 0;

    if (f->n_labels == 0 && le == NULL) {
        return 0;
    }
    rc = text_puts(t, "{");
    for (size_t i = 0; rc == 0 && i < f->n_labels; i++) {
        rc = text_puts(t, i > 0 ? "," : "");
        rc = rc != 0 ? rc : text_puts(t, f->label_names[i]);
        rc = rc != 0 ? rc : text_puts(t, "=\"");
        rc = rc != 0 ? rc : text_escaped(t, s->label_values[i], true);
        rc = rc != 0 ? rc : text_puts(t, "\"");
    }
    if (rc == 0 && le != NULL) {
        rc = text_puts(t, f->n_labels > 0 ? ",le=\"" : "le=\"");
        rc = rc != 0 ? rc : text_puts(t, le);
        rc = rc != 0 ? rc : text_puts(t, "\"");
    }
    return rc != 0 ? rc : text_puts(t, "}");
}

/* Appends one sample line: name+suffix, labels, a space, the value and a newline. */
static int text_sample(struct sl_metrics_text *t, const struct sl_metrics_family *f,
                       const struct sl_metrics_series *s, const char *suffix, const char *le,
                       const char *value)
{
    int rc = text_puts(t, f->name);

    rc = rc != 0 ? rc : text_puts(t, suffix);
    rc = rc != 0 ? rc : text_labels(t, f, s, le);
    rc = rc != 0 ? rc : text_puts(t, " ");
    rc = rc != 0 ? rc : text_puts(t, value);
    return rc != 0 ? rc : text_puts(t, "\n");
}

static int text_series(struct sl_metrics_text *t, const struct sl_metrics_family *f,
                       const struct sl_metrics_series *s)
{
    uint64_t cum[SL_METRICS_MAX_BOUNDS + 1];
    char num[NUM_MAX_BYTES];
    char le[NUM_MAX_BYTES];
    uint64_t total;
    int rc = 0;

    switch (f->kind) {
    case SL_METRICS_KIND_COUNTER:
        snprintf(num, sizeof(num), "%" PRIu64, sl_metrics_counter_value(s));
        return text_sample(t, f, s, "", NULL, num);
    case SL_METRICS_KIND_GAUGE:
        format_double(sl_metrics_gauge_value(s), num, sizeof(num));
        return text_sample(t, f, s, "", NULL, num);
    case SL_METRICS_KIND_HISTOGRAM:
        total = sl_metrics_series_cumulative(s, cum);
        for (size_t i = 0; rc == 0 && i <= f->n_bounds; i++) {
            format_double(i < f->n_bounds ? f->bounds[i] : INFINITY, le, sizeof(le));
            snprintf(num, sizeof(num), "%" PRIu64, cum[i]);
            rc = text_sample(t, f, s, "_bucket", le, num);
        }
        format_double(sl_metrics_histogram_sum(s), num, sizeof(num));
        rc = rc != 0 ? rc : text_sample(t, f, s, "_sum", NULL, num);
        snprintf(num, sizeof(num), "%" PRIu64, total);
        return rc != 0 ? rc : text_sample(t, f, s, "_count", NULL, num);
    }
    return 0;
}

static int text_family(struct sl_metrics_text *t, const struct sl_metrics_family *f)
{
    int rc = text_puts(t, "# HELP ");

    rc = rc != 0 ? rc : text_puts(t, f->name);
    rc = rc != 0 ? rc : text_puts(t, " ");
    rc = rc != 0 ? rc : text_escaped(t, f->help, false);
    rc = rc != 0 ? rc : text_puts(t, "\n# TYPE ");
    rc = rc != 0 ? rc : text_puts(t, f->name);
    rc = rc != 0 ? rc : text_puts(t, " ");
    rc = rc != 0 ? rc : text_puts(t, kind_names[f->kind]);
    rc = rc != 0 ? rc : text_puts(t, "\n");
    for (const struct sl_metrics_series *s = f->first; rc == 0 && s != NULL; s = s->next) {
        rc = text_series(t, f, s);
    }
    if (rc == 0 && f->overflow != NULL) {
        rc = text_series(t, f, f->overflow);
    }
    return rc;
}

int sl_metrics_render_prometheus(struct sl_metrics *m, struct sl_metrics_text *out)
{
    int rc;

    out->len = 0;
    /* An empty registry still yields a valid, empty string. */
    rc = text_append(out, "", 0);
    pthread_mutex_lock(&m->lock);
    for (const struct sl_metrics_family *f = m->first; rc == 0 && f != NULL; f = f->next) {
        rc = text_family(out, f);
    }
    pthread_mutex_unlock(&m->lock);
    if (rc != 0) {
        out->len = 0;
        if (out->data != NULL) {
            out->data[0] = '\0';
        }
    }
    return rc;
}

/* ---- JSON ---- */

/* A JSON number, or null when v is not finite (JSON has no NaN or infinities). */
static json_t *json_number(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *json_count(uint64_t v)
{
    return v <= (uint64_t)INT64_MAX ? json_integer((json_int_t)v) : json_real((double)v);
}

static json_t *json_labels(const struct sl_metrics_family *f,
                           const struct sl_metrics_series *s)
{
    json_t *labels = json_object();

    for (size_t i = 0; labels != NULL && i < f->n_labels; i++) {
        if (json_object_set_new(labels, f->label_names[i],
                                json_string(s->label_values[i])) != 0) {
            json_decref(labels);
            labels = NULL;
        }
    }
    return labels;
}

/* Adds the histogram fields of s to obj; returns 0 or -1 (obj is freed by the caller). */
static int json_histogram(json_t *obj, const struct sl_metrics_family *f,
                          const struct sl_metrics_series *s)
{
    static const struct {
        const char *key;
        double q;
    } quantiles[] = {{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}};
    uint64_t cum[SL_METRICS_MAX_BOUNDS + 1];
    uint64_t total = sl_metrics_series_cumulative(s, cum);
    json_t *buckets = NULL;

    if (json_object_set_new(obj, "count", json_count(total)) != 0 ||
        json_object_set_new(obj, "sum", json_number(sl_metrics_histogram_sum(s))) != 0) {
        return -1;
    }
    /* Made only now: json_object_set_new takes it even when it fails. */
    buckets = json_array();
    if (json_object_set_new(obj, "buckets", buckets) != 0) {
        return -1;
    }
    for (size_t i = 0; i <= f->n_bounds; i++) {
        json_t *b = json_object();

        if (json_array_append_new(buckets, b) != 0 ||
            json_object_set_new(b, "le", i < f->n_bounds ? json_real(f->bounds[i])
                                                          : json_string("+Inf")) != 0 ||
            json_object_set_new(b, "count", json_count(cum[i])) != 0) {
            return -1;
        }
    }
    for (size_t i = 0; i < sizeof(quantiles) / sizeof(quantiles[0]); i++) {
        double v = sl_metrics_series_quantile(s, cum, total, quantiles[i].q);

        if (json_object_set_new(obj, quantiles[i].key, json_number(v)) != 0) {
            return -1;
        }
    }
    return 0;
}

static json_t *json_series(const struct sl_metrics_family *f,
                           const struct sl_metrics_series *s)
{
    json_t *obj = json_object();
    int rc = 0;

    if (json_object_set_new(obj, "labels", json_labels(f, s)) != 0) {
        json_decref(obj);
        return NULL;
    }
    switch (f->kind) {
    case SL_METRICS_KIND_COUNTER:
        rc = json_object_set_new(obj, "value", json_count(sl_metrics_counter_value(s)));
        break;
    case SL_METRICS_KIND_GAUGE:
        rc = json_object_set_new(obj, "value", json_number(sl_metrics_gauge_value(s)));
        break;
    case SL_METRICS_KIND_HISTOGRAM:
        rc = json_histogram(obj, f, s);
        break;
    }
    if (rc != 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

static json_t *json_family(const struct sl_metrics_family *f)
{
    json_t *obj = json_object();
    json_t *series = NULL;

    if (json_object_set_new(obj, "type", json_string(kind_names[f->kind])) != 0 ||
        json_object_set_new(obj, "help", json_string(f->help)) != 0) {
        json_decref(obj);
        return NULL;
    }
    /* Made only now: json_object_set_new takes it even when it fails. */
    series = json_array();
    if (json_object_set_new(obj, "series", series) != 0) {
        json_decref(obj);
        return NULL;
    }
    for (const struct sl_metrics_series *s = f->first; s != NULL; s = s->next) {
        if (json_array_append_new(series, json_series(f, s)) != 0) {
            json_decref(obj);
            return NULL;
        }
    }
    if (f->overflow != NULL && json_array_append_new(series, json_series(f, f->overflow)) != 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

int sl_metrics_render_json(struct sl_metrics *m, char **out_json)
{
    json_t *root = json_object();
    int rc = 0;

    *out_json = NULL;
    if (root == NULL) {
        return SL_ENOMEM;
    }
    pthread_mutex_lock(&m->lock);
    for (const struct sl_metrics_family *f = m->first; rc == 0 && f != NULL; f = f->next) {
        if (json_object_set_new(root, f->name, json_family(f)) != 0) {
            rc = SL_ENOMEM;
        }
    }
    pthread_mutex_unlock(&m->lock);
    if (rc == 0) {
        /* json_dumps allocates with jansson's allocator: malloc, or sl_malloc once
         * sl_alloc_init_jansson ran; sl_free releases either. */
        *out_json = json_dumps(root, JSON_COMPACT);
        if (*out_json == NULL) {
            rc = SL_ENOMEM;
        }
    }
    json_decref(root);
    return rc;
}

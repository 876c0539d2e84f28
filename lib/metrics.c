/*
 * Metrics registry. Families sit in a list in registration order; each family keeps its
 * series in a list in creation order (for rendering) and in a chained hash table keyed by
 * label values (for lookup). One mutex per registry guards both lists and the tables;
 * series values are C11 atomics updated without it. Doubles are stored as their bits in
 * atomic 64-bit words and updated with compare-and-swap. Reads of a series, histogram
 * quantiles included, are here too; turning the registry into Prometheus text or JSON is
 * metrics_render.c's.
 */
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "alloc.h"
#include "metrics_int.h"

#define INITIAL_TABLE_SIZE 8

const double sl_metrics_latency_bounds[] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
};
const size_t sl_metrics_latency_n_bounds =
    sizeof(sl_metrics_latency_bounds) / sizeof(sl_metrics_latency_bounds[0]);

/* ---- doubles in atomic words ---- */

static uint64_t double_bits(double v)
{
    uint64_t bits;

    memcpy(&bits, &v, sizeof(bits));
    return bits;
}

static double bits_double(uint64_t bits)
{
    double v;

    memcpy(&v, &bits, sizeof(v));
    return v;
}

static void atomic_add_double(_Atomic uint64_t *word, double delta)
{
    uint64_t old = atomic_load_explicit(word, memory_order_relaxed);

    while (!atomic_compare_exchange_weak_explicit(word, &old,
                                                  double_bits(bits_double(old) + delta),
                                                  memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

/* ---- names ---- */

static bool is_valid_name(const char *name, bool allow_colon)
{
    if (name == NULL || name[0] == '\0') {
        return false;
    }
    for (const char *p = name; *p != '\0'; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (allow_colon && c == ':') || (p != name && c >= '0' && c <= '9');

        if (!ok) {
            return false;
        }
    }
    return true;
}

static bool are_valid_labels(enum sl_metrics_kind kind, const char *const *names, size_t n)
{
    if (n > 0 && names == NULL) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!is_valid_name(names[i], false) || strncmp(names[i], "__", 2) == 0) {
            return false;
        }
        if (kind == SL_METRICS_KIND_HISTOGRAM && strcmp(names[i], "le") == 0) {
            return false;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(names[i], names[j]) == 0) {
                return false;
            }
        }
    }
    return true;
}

static bool are_valid_bounds(const double *bounds, size_t n)
{
    if (n == 0 || n > SL_METRICS_MAX_BOUNDS || bounds == NULL) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1])) {
            return false;
        }
    }
    return true;
}

/* ---- registry ---- */

int sl_metrics_create_limited(size_t max_series_per_family, struct sl_metrics **out)
{
    struct sl_metrics *m = sl_calloc(1, sizeof(*m));

    *out = NULL;
    if (m == NULL) {
        return SL_ENOMEM;
    }
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        sl_free(m);
        return SL_ENOMEM;
    }
    m->max_series = max_series_per_family > 0 ? max_series_per_family : 1;
    *out = m;
    return 0;
}

int sl_metrics_create(struct sl_metrics **out)
{
    return sl_metrics_create_limited(SL_METRICS_MAX_SERIES, out);
}

static void free_strings(char **strings, size_t n)
{
    if (strings != NULL) {
        for (size_t i = 0; i < n; i++) {
            sl_free(strings[i]);
        }
        sl_free(strings);
    }
}

/* Frees a series, also one half built by new_series. */
static void series_free(struct sl_metrics_series *s, size_t n_labels)
{
    if (s != NULL) {
        free_strings(s->label_values, n_labels);
        sl_free(s);
    }
}

/* Frees a family with its series, also one half built by register_family. */
static void family_free(struct sl_metrics_family *f)
{
    struct sl_metrics_series *s;
    struct sl_metrics_series *next;

    if (f == NULL) {
        return;
    }
    for (s = f->first; s != NULL; s = next) {
        next = s->next;
        series_free(s, f->n_labels);
    }
    series_free(f->overflow, f->n_labels);
    sl_free(f->table);
    sl_free(f->bounds);
    free_strings(f->label_names, f->n_labels);
    sl_free(f->help);
    sl_free(f->name);
    sl_free(f);
}

void sl_metrics_destroy(struct sl_metrics *m)
{
    struct sl_metrics_family *f;
    struct sl_metrics_family *next;

    if (m == NULL) {
        return;
    }
    for (f = m->first; f != NULL; f = next) {
        next = f->next;
        family_free(f);
    }
    pthread_mutex_destroy(&m->lock);
    sl_free(m);
}

/* ---- series ---- */

static uint64_t hash_values(const char *const *values, size_t n)
{
    uint64_t h = 14695981039346656037u; /* FNV-1a */

    for (size_t i = 0; i < n; i++) {
        const char *v = values != NULL && values[i] != NULL ? values[i] : "";

        for (const unsigned char *p = (const unsigned char *)v; *p != '\0'; p++) {
            h = (h ^ *p) * 1099511628211u;
        }
        h = (h ^ 0xffu) * 1099511628211u; /* separator: ("ab","") differs from ("a","b") */
    }
    return h;
}

static bool values_equal(const struct sl_metrics_series *s, const char *const *values,
                         size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *v = values[i] != NULL ? values[i] : "";

        if (strcmp(s->label_values[i], v) != 0) {
            return false;
        }
    }
    return true;
}

/* Builds a series of f with the given label values (NULL: every value is "_other"). */
static struct sl_metrics_series *new_series(const struct sl_metrics_family *f,
                                            const char *const *values, uint64_t hash)
{
    size_t n_buckets = f->kind == SL_METRICS_KIND_HISTOGRAM ? f->n_bounds + 1 : 0;
    struct sl_metrics_series *s =
        sl_calloc(1, sizeof(*s) + n_buckets * sizeof(s->buckets[0]));

    if (s == NULL) {
        return NULL;
    }
    s->kind = f->kind;
    atomic_init(&s->value, 0);
    atomic_init(&s->sum_bits, double_bits(0.0));
    for (size_t i = 0; i < n_buckets; i++) {
        atomic_init(&s->buckets[i], 0);
    }
    s->bounds = f->bounds;
    s->n_bounds = f->n_bounds;
    s->hash = hash;
    if (f->n_labels > 0) {
        s->label_values = sl_calloc(f->n_labels, sizeof(s->label_values[0]));
        if (s->label_values == NULL) {
            series_free(s, f->n_labels);
            return NULL;
        }
        for (size_t i = 0; i < f->n_labels; i++) {
            const char *v = SL_METRICS_OVERFLOW_LABEL;

            if (values != NULL) {
                v = values[i] != NULL ? values[i] : "";
            }
            s->label_values[i] = sl_strdup(v);
            if (s->label_values[i] == NULL) {
                series_free(s, f->n_labels);
                return NULL;
            }
        }
    }
    return s;
}

/* Doubles f's hash table. On failure the old table stays; lookups only get slower. */
static void grow_table(struct sl_metrics_family *f)
{
    size_t size = f->table_size * 2;
    struct sl_metrics_series **table = sl_calloc(size, sizeof(table[0]));

    if (table == NULL) {
        return;
    }
    for (struct sl_metrics_series *s = f->first; s != NULL; s = s->next) {
        size_t b = (size_t)(s->hash & (size - 1));

        s->hash_next = table[b];
        table[b] = s;
    }
    sl_free(f->table);
    f->table = table;
    f->table_size = size;
}

/* Looks up or creates a series; the registry's lock is held. */
static struct sl_metrics_series *series_get_locked(struct sl_metrics_family *f,
                                                   const char *const *values)
{
    uint64_t hash = hash_values(values, f->n_labels);
    size_t b = (size_t)(hash & (f->table_size - 1));
    struct sl_metrics_series *s;

    for (s = f->table[b]; s != NULL; s = s->hash_next) {
        if (s->hash == hash && values_equal(s, values, f->n_labels)) {
            return s;
        }
    }
    if (f->n_series >= f->registry->max_series) {
        if (f->overflow == NULL) {
            f->overflow = new_series(f, NULL, 0);
        }
        return f->overflow;
    }
    s = new_series(f, values, hash);
    if (s == NULL) {
        return NULL;
    }
    s->hash_next = f->table[b];
    f->table[b] = s;
    if (f->last != NULL) {
        f->last->next = s;
    }
    else {
        f->first = s;
    }
    f->last = s;
    f->n_series++;
    if (f->n_series > f->table_size && f->table_size < f->registry->max_series) {
        grow_table(f);
    }
    return s;
}

struct sl_metrics_series *sl_metrics_series_get(struct sl_metrics_family *f,
                                                const char *const *label_values)
{
    struct sl_metrics_series *s;

    if (f == NULL || (f->n_labels > 0 && label_values == NULL)) {
        return NULL;
    }
    pthread_mutex_lock(&f->registry->lock);
    s = series_get_locked(f, label_values);
    pthread_mutex_unlock(&f->registry->lock);
    return s;
}

/* ---- families ---- */

static bool same_shape(const struct sl_metrics_family *f, enum sl_metrics_kind kind,
                       const char *const *label_names, size_t n_labels, const double *bounds,
                       size_t n_bounds)
{
    if (f->kind != kind || f->n_labels != n_labels) {
        return false;
    }
    for (size_t i = 0; i < n_labels; i++) {
        if (strcmp(f->label_names[i], label_names[i]) != 0) {
            return false;
        }
    }
    if (kind == SL_METRICS_KIND_HISTOGRAM) {
        if (f->n_bounds != n_bounds) {
            return false;
        }
        for (size_t i = 0; i < n_bounds; i++) {
            if (f->bounds[i] != bounds[i]) {
                return false;
            }
        }
    }
    return true;
}

/* Builds an unregistered family; NULL when memory ran out. */
static struct sl_metrics_family *new_family(struct sl_metrics *m, enum sl_metrics_kind kind,
                                            const char *name, const char *help,
                                            const char *const *label_names, size_t n_labels,
                                            const double *bounds, size_t n_bounds)
{
    struct sl_metrics_family *f = sl_calloc(1, sizeof(*f));

    if (f == NULL) {
        return NULL;
    }
    f->registry = m;
    f->kind = kind;
    f->name = sl_strdup(name);
    f->help = sl_strdup(help != NULL ? help : "");
    f->table_size = INITIAL_TABLE_SIZE;
    f->table = sl_calloc(f->table_size, sizeof(f->table[0]));
    if (f->name == NULL || f->help == NULL || f->table == NULL) {
        goto fail;
    }
    if (n_labels > 0) {
        f->label_names = sl_calloc(n_labels, sizeof(f->label_names[0]));
        if (f->label_names == NULL) {
            goto fail;
        }
        f->n_labels = n_labels;
        for (size_t i = 0; i < n_labels; i++) {
            f->label_names[i] = sl_strdup(label_names[i]);
            if (f->label_names[i] == NULL) {
                goto fail;
            }
        }
    }
    if (kind == SL_METRICS_KIND_HISTOGRAM) {
        f->bounds = sl_malloc(n_bounds * sizeof(f->bounds[0]));
        if (f->bounds == NULL) {
            goto fail;
        }
        memcpy(f->bounds, bounds, n_bounds * sizeof(f->bounds[0]));
        f->n_bounds = n_bounds;
    }
    /* The one series of an unlabelled family exists from the start so it renders 0. */
    if (n_labels == 0 && series_get_locked(f, NULL) == NULL) {
        goto fail;
    }
    return f;

fail:
    family_free(f);
    return NULL;
}

static struct sl_metrics_family *register_family(struct sl_metrics *m, enum sl_metrics_kind kind,
                                                 const char *name, const char *help,
                                                 const char *const *label_names,
                                                 size_t n_labels, const double *bounds,
                                                 size_t n_bounds)
{
    struct sl_metrics_family *f;

    if (m == NULL || !is_valid_name(name, true) ||
        !are_valid_labels(kind, label_names, n_labels) ||
        (kind == SL_METRICS_KIND_HISTOGRAM && !are_valid_bounds(bounds, n_bounds))) {
        return NULL;
    }
    pthread_mutex_lock(&m->lock);
    for (f = m->first; f != NULL; f = f->next) {
        if (strcmp(f->name, name) == 0) {
            break;
        }
    }
    if (f != NULL) {
        if (!same_shape(f, kind, label_names, n_labels, bounds, n_bounds)) {
            f = NULL;
        }
    }
    else {
        f = new_family(m, kind, name, help, label_names, n_labels, bounds, n_bounds);
        if (f != NULL) {
            if (m->last != NULL) {
                m->last->next = f;
            }
            else {
                m->first = f;
            }
            m->last = f;
        }
    }
    pthread_mutex_unlock(&m->lock);
    return f;
}

struct sl_metrics_family *sl_metrics_counter(struct sl_metrics *m, const char *name,
                                             const char *help, const char *const *label_names,
                                             size_t n_labels)
{
    return register_family(m, SL_METRICS_KIND_COUNTER, name, help, label_names, n_labels, NULL, 0);
}

struct sl_metrics_family *sl_metrics_gauge(struct sl_metrics *m, const char *name,
                                           const char *help, const char *const *label_names,
                                           size_t n_labels)
{
    return register_family(m, SL_METRICS_KIND_GAUGE, name, help, label_names, n_labels, NULL, 0);
}

struct sl_metrics_family *sl_metrics_histogram(struct sl_metrics *m, const char *name,
                                               const char *help,
                                               const char *const *label_names, size_t n_labels,
                                               const double *bounds, size_t n_bounds)
{
    return register_family(m, SL_METRICS_KIND_HISTOGRAM, name, help, label_names, n_labels, bounds,
                           n_bounds);
}

/* ---- hot path ---- */

void sl_metrics_counter_add(struct sl_metrics_series *s, uint64_t n)
{
    if (s != NULL && s->kind == SL_METRICS_KIND_COUNTER) {
        atomic_fetch_add_explicit(&s->value, n, memory_order_relaxed);
    }
}

void sl_metrics_gauge_set(struct sl_metrics_series *s, double value)
{
    if (s != NULL && s->kind == SL_METRICS_KIND_GAUGE) {
        atomic_store_explicit(&s->value, double_bits(value), memory_order_relaxed);
    }
}

void sl_metrics_gauge_add(struct sl_metrics_series *s, double delta)
{
    if (s != NULL && s->kind == SL_METRICS_KIND_GAUGE) {
        atomic_add_double(&s->value, delta);
    }
}

void sl_metrics_histogram_observe(struct sl_metrics_series *s, double value)
{
    size_t lo = 0;
    size_t hi;

    if (s == NULL || s->kind != SL_METRICS_KIND_HISTOGRAM || isnan(value)) {
        return;
    }
    /* First bound >= value; n_bounds (the +Inf bucket) when there is none. */
    hi = s->n_bounds;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (s->bounds[mid] < value) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    atomic_fetch_add_explicit(&s->buckets[lo], 1, memory_order_relaxed);
    atomic_add_double(&s->sum_bits, value);
}

uint64_t sl_metrics_counter_value(const struct sl_metrics_series *s)
{
    if (s == NULL || s->kind != SL_METRICS_KIND_COUNTER) {
        return 0;
    }
    return atomic_load_explicit(&s->value, memory_order_relaxed);
}

double sl_metrics_gauge_value(const struct sl_metrics_series *s)
{
    if (s == NULL || s->kind != SL_METRICS_KIND_GAUGE) {
        return 0.0;
    }
    return bits_double(atomic_load_explicit(&s->value, memory_order_relaxed));
}

uint64_t sl_metrics_series_cumulative(const struct sl_metrics_series *s, uint64_t *cum)
{
    uint64_t total = 0;

    for (size_t i = 0; i <= s->n_bounds; i++) {
        total += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
        cum[i] = total;
    }
    return total;
}

uint64_t sl_metrics_histogram_count(const struct sl_metrics_series *s)
{
    uint64_t cum[SL_METRICS_MAX_BOUNDS + 1];

    if (s == NULL || s->kind != SL_METRICS_KIND_HISTOGRAM) {
        return 0;
    }
    return sl_metrics_series_cumulative(s, cum);
}

double sl_metrics_histogram_sum(const struct sl_metrics_series *s)
{
    if (s == NULL || s->kind != SL_METRICS_KIND_HISTOGRAM) {
        return 0.0;
    }
    return bits_double(atomic_load_explicit(&s->sum_bits, memory_order_relaxed));
}

double sl_metrics_series_quantile(const struct sl_metrics_series *s, const uint64_t *cum,
                                  uint64_t total, double q)
{
    double rank;
    double lower;
    double upper;
    uint64_t below;
    size_t b = 0;

    if (total == 0 || !(q >= 0.0 && q <= 1.0)) {
        return NAN;
    }
    rank = q * (double)total;
    /* The first non-empty bucket reaching the rank; it exists since cum[n_bounds] > 0. */
    while (b < s->n_bounds && ((double)cum[b] < rank || cum[b] == 0)) {
        b++;
    }
    if (b == s->n_bounds) {
        return s->bounds[s->n_bounds - 1];
    }
    upper = s->bounds[b];
    if (b == 0) {
        if (upper <= 0.0) {
            return upper;
        }
        lower = 0.0;
        below = 0;
    }
    else {
        lower = s->bounds[b - 1];
        below = cum[b - 1];
    }
    return lower + (upper - lower) * ((rank - (double)below) / (double)(cum[b] - below));
}

double sl_metrics_histogram_quantile(const struct sl_metrics_series *s, double q)
{
    uint64_t cum[SL_METRICS_MAX_BOUNDS + 1];

    if (s == NULL || s->kind != SL_METRICS_KIND_HISTOGRAM) {
        return NAN;
    }
    return sl_metrics_series_quantile(s, cum, sl_metrics_series_cumulative(s, cum), q);
}


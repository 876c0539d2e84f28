/*
 * Internals shared by metrics.c (the registry: families, series, updates and reads) and
 * metrics_render.c (Prometheus text and JSON): the layouts of the registry, its families
 * and series, and the consistent reads of a histogram both need. Nothing outside
 * lib/metrics*.c includes this.
 */
#ifndef SLUICE_LIB_METRICS_INT_H
#define SLUICE_LIB_METRICS_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"

enum sl_metrics_kind {
    SL_METRICS_KIND_COUNTER,
    SL_METRICS_KIND_GAUGE,
    SL_METRICS_KIND_HISTOGRAM,
};

struct sl_metrics_series {
    enum sl_metrics_kind kind;                      /* copy of the family's, read on the hot path */
    _Atomic uint64_t value;              /* counter: count; gauge: bits of the double */
    _Atomic uint64_t sum_bits;           /* histogram: bits of the double sum */
    const double *bounds;                /* histogram: the family's bounds */
    size_t n_bounds;
    char **label_values;                 /* family->n_labels strings */
    uint64_t hash;                       /* of the label values */
    struct sl_metrics_series *hash_next; /* chain in the family's table */
    struct sl_metrics_series *next;      /* creation order */
    _Atomic uint64_t buckets[];          /* histogram: n_bounds + 1 counts, not cumulative */
};

struct sl_metrics_family {
    struct sl_metrics *registry;
    enum sl_metrics_kind kind;
    char *name;
    char *help;
    char **label_names;
    size_t n_labels;
    double *bounds;
    size_t n_bounds;
    struct sl_metrics_series **table; /* table_size chains, a power of two */
    size_t table_size;
    struct sl_metrics_series *first;  /* creation order, overflow series not included */
    struct sl_metrics_series *last;
    size_t n_series;
    struct sl_metrics_series *overflow; /* created when the limit is first reached */
    struct sl_metrics_family *next;
};

struct sl_metrics {
    pthread_mutex_t lock; /* guards the family list and every family's series lists */
    size_t max_series;
    struct sl_metrics_family *first;
    struct sl_metrics_family *last;
};

/*
 * Reads the cumulative bucket counts of histogram series s into cum (n_bounds + 1 entries)
 * and returns the total. Deriving the count from the buckets keeps +Inf and _count equal
 * while others observe. Lock-free, never fails.
 */
uint64_t sl_metrics_series_cumulative(const struct sl_metrics_series *s, uint64_t *cum);

/*
 * The q-quantile of histogram series s from counts already read by
 * sl_metrics_series_cumulative (cum, total), as sl_metrics_histogram_quantile describes:
 * NaN when total is 0 or q is outside [0, 1]. Never fails.
 */
double sl_metrics_series_quantile(const struct sl_metrics_series *s, const uint64_t *cum,
                                  uint64_t total, double q);

#endif

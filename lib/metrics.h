/*
 * Metrics registry: counters, gauges and latency histograms, grouped in families with fixed
 * label names, rendered as Prometheus text exposition format 0.0.4 (for GET /metrics) and as
 * JSON (for GET /stats and the internal_metrics table).
 *
 * A process creates one registry, registers its families at start-up and looks each series
 * up once, keeping the pointer: series live as long as the registry. Updating a series is
 * lock-free (C11 atomics) and may be done from any thread; registering, looking up and
 * rendering take the registry's mutex. The number of series per family is bounded: past the
 * limit, lookups of new label values share one overflow series whose labels are all
 * "_other", so a label explosion cannot grow memory without limit.
 *
 * This module keeps numbers only; serving them over HTTP and writing them to ClickHouse
 * belong to the processes.
 */
#ifndef SLUICE_LIB_METRICS_H
#define SLUICE_LIB_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Series per family when the registry is made by sl_metrics_create. */
#define SL_METRICS_MAX_SERIES 1000

/* Most bucket bounds a histogram may have (the +Inf bucket not counted). */
#define SL_METRICS_MAX_BOUNDS 64

/* Label value of the overflow series. */
#define SL_METRICS_OVERFLOW_LABEL "_other"

struct sl_metrics;
struct sl_metrics_family;
struct sl_metrics_series;

/*
 * Default bounds for latency histograms, in seconds: 0.5 ms .. 10 s
 * (sl_metrics_latency_n_bounds entries, ascending).
 */
extern const double sl_metrics_latency_bounds[];
extern const size_t sl_metrics_latency_n_bounds;

/*
 * Text buffer for sl_metrics_render_prometheus, embedded or on the stack of the caller so a
 * /metrics handler can reuse it across scrapes. Use init/fini; read data and len only.
 */
struct sl_metrics_text {
    char *data;  /* read-only: NUL-terminated text after a successful render; may be NULL */
    size_t len;  /* read-only: bytes in data, NUL not counted */
    size_t _cap; /* private: bytes allocated for data */
    size_t _max; /* private: most bytes the text may hold, NUL not counted */
};

/* Prepares an empty text of at most max_bytes. Never fails (allocates on first render). */
void sl_metrics_text_init(struct sl_metrics_text *text, size_t max_bytes);

/* Frees the text's buffer and leaves it empty. Accepts NULL. */
void sl_metrics_text_fini(struct sl_metrics_text *text);

/*
 * Creates an empty registry allowing SL_METRICS_MAX_SERIES series per family.
 * Returns 0 and the registry in *out (returns new; free with sl_metrics_destroy), or
 * SL_ENOMEM with *out set to NULL.
 */
int sl_metrics_create(struct sl_metrics **out);

/* As sl_metrics_create with another bound on series per family (at least 1). */
int sl_metrics_create_limited(size_t max_series_per_family, struct sl_metrics **out);

/*
 * Frees the registry with all its families and series; every family and series pointer
 * becomes invalid. Accepts NULL. No other thread may use the registry any more.
 */
void sl_metrics_destroy(struct sl_metrics *m);

/*
 * Registers a family, or returns the one already registered under name when its type,
 * label names (and for histograms its bounds) are the same; the first help text stays.
 *
 *   m            the registry (borrowed)
 *   name         Prometheus metric name, [a-zA-Z_:][a-zA-Z0-9_:]* (copied)
 *   help         one line for # HELP (copied; NULL means empty)
 *   label_names  n_labels names, [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__", no
 *                duplicates, and no "le" for histograms (copied; may be NULL when n_labels
 *                is 0)
 *   bounds       histogram only: n_bounds finite upper bounds, strictly ascending; the +Inf
 *                bucket is implicit (copied; 1 .. SL_METRICS_MAX_BOUNDS entries)
 *
 * Returns the family, owned by the registry and valid until sl_metrics_destroy, or NULL when
 * a name, label or bound is bad, the name is registered with another type, labels or bounds,
 * or memory ran out; the registry is unchanged then. A family without labels has its one
 * series from the start, so it renders 0 before its first update. Any thread.
 */
struct sl_metrics_family *sl_metrics_counter(struct sl_metrics *m, const char *name,
                                             const char *help, const char *const *label_names,
                                             size_t n_labels);
struct sl_metrics_family *sl_metrics_gauge(struct sl_metrics *m, const char *name,
                                           const char *help, const char *const *label_names,
                                           size_t n_labels);
struct sl_metrics_family *sl_metrics_histogram(struct sl_metrics *m, const char *name,
                                               const char *help,
                                               const char *const *label_names, size_t n_labels,
                                               const double *bounds, size_t n_bounds);

/*
 * Returns the series of family f for the given label values (n_labels strings, borrowed and
 * copied on first use; NULL entries mean ""; label_values may be NULL when n_labels is 0),
 * creating it on first use. When f already holds its limit of series, a new combination of
 * values gets the family's overflow series (every label "_other") instead.
 * Returns NULL when f is NULL or memory ran out; nothing is registered then. The series is
 * owned by the registry and valid until sl_metrics_destroy. Any thread; takes the registry's
 * mutex, so look a series up once and keep the pointer.
 */
struct sl_metrics_series *sl_metrics_series_get(struct sl_metrics_family *f,
                                                const char *const *label_values);

/*
 * Updates a series. Lock-free, any thread, never fails. A NULL series (a failed lookup) or a
 * series of another type is ignored, so a metrics failure never stops the caller.
 * counter_add adds n (wrapping past 2^64); gauge_set/gauge_add set or add to the value;
 * histogram_observe counts value in the first bucket whose bound is >= value and adds it to
 * the sum (NaN is ignored).
 */
void sl_metrics_counter_add(struct sl_metrics_series *s, uint64_t n);
void sl_metrics_gauge_set(struct sl_metrics_series *s, double value);
void sl_metrics_gauge_add(struct sl_metrics_series *s, double delta);
void sl_metrics_histogram_observe(struct sl_metrics_series *s, double value);

/*
 * Reads a series (any thread, lock-free). Of another type or NULL, they return 0 (0.0 for
 * the gauge and the sum).
 */
uint64_t sl_metrics_counter_value(const struct sl_metrics_series *s);
double sl_metrics_gauge_value(const struct sl_metrics_series *s);
uint64_t sl_metrics_histogram_count(const struct sl_metrics_series *s);
double sl_metrics_histogram_sum(const struct sl_metrics_series *s);

/*
 * Estimates the q-quantile (0 <= q <= 1) of a histogram series from its buckets, as
 * Prometheus's histogram_quantile does: finds the bucket holding rank q * count and
 * interpolates linearly inside it (the first bucket starts at 0 unless its bound is <= 0).
 * Ranks in the +Inf bucket give the largest finite bound. Returns NaN when the series is
 * empty, not a histogram, NULL, or q is outside [0, 1]. Any thread, lock-free.
 */
double sl_metrics_histogram_quantile(const struct sl_metrics_series *s, double q);

/*
 * Renders every family in registration order, series in creation order (the overflow
 * series last), as Prometheus text exposition format 0.0.4: # HELP and # TYPE per family,
 * label values escaped, histograms as cumulative _bucket{le="..."} lines ending with
 * le="+Inf", then _sum and _count. Replaces what out held.
 * Returns 0, or SL_ENOMEM when memory ran out or the text would pass out's max_bytes; out
 * is then empty (len 0). m and out are borrowed. Any thread; takes the registry's mutex.
 */
int sl_metrics_render_prometheus(struct sl_metrics *m, struct sl_metrics_text *out);

/*
 * Renders every family as one JSON object keyed by family name:
 *   {"name":{"type":"counter","help":"...","series":[{"labels":{...},"value":N}]}}
 * Gauges carry "value" as a number; histograms carry "count", "sum", "buckets" (cumulative,
 * [{"le":0.005,"count":N},...,{"le":"+Inf","count":N}]) and "p50", "p90", "p99" from
 * sl_metrics_histogram_quantile. Values that are not finite (NaN, infinities, the
 * quantiles of an empty histogram) are null.
 * Returns 0 and the text in *out_json (returns new; free with sl_free), or SL_ENOMEM with
 * *out_json set to NULL. Any thread; takes the registry's mutex.
 */
int sl_metrics_render_json(struct sl_metrics *m, char **out_json);

#endif

/*
 * Tests lib/metrics.c: registration rules, counter/gauge/histogram values, the exact
 * Prometheus text, label escaping, quantile estimates, the JSON form, the series limit,
 * concurrent updates and failed allocations.
 */
#include <jansson.h>
#include <math.h>
#include <pthread.h>

#include "alloc.h"
#include "metrics.h"
#include "test.h"

#define TEXT_MAX_BYTES (1024 * 1024)

#define ASSERT_NEAR(a, b, eps)                                                            \
    do {                                                                                  \
        double a_ = (a), b_ = (b);                                                        \
        if (!(fabs(a_ - b_) <= (eps))) {                                                  \
            TEST_FAIL("%s == %s failed: %.17g != %.17g", #a, #b, a_, b_);                 \
        }                                                                                 \
    } while (0)

/* Renders m as Prometheus text; returns a new string (free). */
static char *render_text(struct sl_metrics *m)
{
    struct sl_metrics_text text;
    char *copy;

    sl_metrics_text_init(&text, TEXT_MAX_BYTES);
    ASSERT_OK(sl_metrics_render_prometheus(m, &text), NULL);
    ASSERT_EQ_INT(strlen(text.data), text.len);
    copy = strdup(text.data);
    sl_metrics_text_fini(&text);
    return copy;
}

/* Renders m as JSON and parses it; returns a new reference (json_decref). */
static json_t *render_json(struct sl_metrics *m)
{
    char *text = NULL;
    json_t *root;
    json_error_t jerr;

    ASSERT_OK(sl_metrics_render_json(m, &text), NULL);
    root = json_loads(text, 0, &jerr);
    if (root == NULL) {
        TEST_FAIL("metrics JSON does not parse (%s): %s", jerr.text, text);
    }
    sl_free(text);
    return root;
}

static void test_metrics_registration_rules(void)
{
    static const char *const labels[] = {"method", "code"};
    static const char *const other_labels[] = {"method"};
    static const char *const reserved[] = {"__name"};
    static const char *const le[] = {"le"};
    static const char *const dup[] = {"a", "a"};
    static const char *const colon[] = {"a:b"};
    static const double bounds[] = {0.1, 1};
    static const double unsorted[] = {1, 0.1};
    static const double equal[] = {1, 1};
    const double not_finite[] = {0.1, INFINITY};
    const double nan_bound[] = {NAN};
    struct sl_metrics *m = NULL;
    struct sl_metrics_family *f;

    ASSERT_OK(sl_metrics_create(&m), NULL);
    f = sl_metrics_counter(m, "requests_total", "Requests.", labels, 2);
    ASSERT_TRUE(f != NULL);
    /* Same name and shape: the same family. */
    ASSERT_TRUE(sl_metrics_counter(m, "requests_total", "Other help.", labels, 2) == f);
    /* Same name, other type or labels: refused. */
    ASSERT_TRUE(sl_metrics_gauge(m, "requests_total", "", labels, 2) == NULL);
    ASSERT_TRUE(sl_metrics_counter(m, "requests_total", "", other_labels, 1) == NULL);
    ASSERT_TRUE(sl_metrics_counter(m, "requests_total", "", NULL, 0) == NULL);
    /* Names. */
    ASSERT_TRUE(sl_metrics_counter(m, "", "", NULL, 0) == NULL);
    ASSERT_TRUE(sl_metrics_counter(m, NULL, "", NULL, 0) == NULL);
    ASSERT_TRUE(sl_metrics_counter(m, "1abc", "", NULL, 0) == NULL);
    ASSERT_TRUE(sl_metrics_counter(m, "a-b", "", NULL, 0) == NULL);
    ASSERT_TRUE(sl_metrics_counter(m, "a b", "", NULL, 0) == NULL);
    ASSERT_TRUE(sl_metrics_counter(m, "sluice:ingest_events_total", "", NULL, 0) != NULL);
    ASSERT_TRUE(sl_metrics_gauge(m, "_x9", NULL, NULL, 0) != NULL);
    /* Label names. */
    ASSERT_TRUE(sl_metrics_counter(m, "c1", "", reserved, 1) == NULL);
    ASSERT_TRUE(sl_metrics_counter(m, "c2", "", dup, 2) == NULL);
    ASSERT_TRUE(sl_metrics_counter(m, "c3", "", colon, 1) == NULL);
    ASSERT_TRUE(sl_metrics_counter(m, "c4", "", NULL, 1) == NULL);
    ASSERT_TRUE(sl_metrics_counter(m, "c5", "", le, 1) != NULL);
    ASSERT_TRUE(sl_metrics_histogram(m, "h1", "", le, 1, bounds, 2) == NULL);
    /* Bounds. */
    ASSERT_TRUE(sl_metrics_histogram(m, "h2", "", NULL, 0, NULL, 0) == NULL);
    ASSERT_TRUE(sl_metrics_histogram(m, "h3", "", NULL, 0, unsorted, 2) == NULL);
    ASSERT_TRUE(sl_metrics_histogram(m, "h4", "", NULL, 0, equal, 2) == NULL);
    ASSERT_TRUE(sl_metrics_histogram(m, "h5", "", NULL, 0, not_finite, 2) == NULL);
    ASSERT_TRUE(sl_metrics_histogram(m, "h6", "", NULL, 0, nan_bound, 1) == NULL);
    f = sl_metrics_histogram(m, "h7", "", NULL, 0, bounds, 2);
    ASSERT_TRUE(f != NULL);
    ASSERT_TRUE(sl_metrics_histogram(m, "h7", "", NULL, 0, bounds, 2) == f);
    ASSERT_TRUE(sl_metrics_histogram(m, "h7", "", NULL, 0, bounds, 1) == NULL);
    ASSERT_TRUE(sl_metrics_histogram(m, "h8", "", NULL, 0, sl_metrics_latency_bounds,
                                     sl_metrics_latency_n_bounds) != NULL);
    /* A failed lookup chain stays harmless. */
    ASSERT_TRUE(sl_metrics_series_get(NULL, NULL) == NULL);
    sl_metrics_counter_add(NULL, 1);
    sl_metrics_gauge_set(NULL, 1);
    sl_metrics_histogram_observe(NULL, 1);
    sl_metrics_destroy(m);
    sl_metrics_destroy(NULL);
}

static void test_metrics_counter_and_gauge_values(void)
{
    static const char *const labels[] = {"tenant"};
    static const char *const t1[] = {"t1"};
    static const char *const t2[] = {"t2"};
    struct sl_metrics *m = NULL;
    struct sl_metrics_family *cf;
    struct sl_metrics_family *gf;
    struct sl_metrics_series *a;
    struct sl_metrics_series *b;
    struct sl_metrics_series *g;

    ASSERT_OK(sl_metrics_create(&m), NULL);
    cf = sl_metrics_counter(m, "events_total", "Events.", labels, 1);
    gf = sl_metrics_gauge(m, "spool_bytes", "Spool size.", NULL, 0);
    a = sl_metrics_series_get(cf, t1);
    b = sl_metrics_series_get(cf, t2);
    g = sl_metrics_series_get(gf, NULL);
    ASSERT_TRUE(a != NULL && b != NULL && g != NULL && a != b);
    ASSERT_TRUE(sl_metrics_series_get(cf, t1) == a);
    ASSERT_TRUE(sl_metrics_series_get(gf, NULL) == g);

    sl_metrics_counter_add(a, 5);
    sl_metrics_counter_add(a, 2);
    sl_metrics_counter_add(b, 1);
    ASSERT_EQ_INT(sl_metrics_counter_value(a), 7);
    ASSERT_EQ_INT(sl_metrics_counter_value(b), 1);

    ASSERT_TRUE(sl_metrics_gauge_value(g) == 0.0);
    sl_metrics_gauge_set(g, 10.5);
    sl_metrics_gauge_add(g, -0.25);
    ASSERT_TRUE(sl_metrics_gauge_value(g) == 10.25);
    sl_metrics_gauge_add(g, -20);
    ASSERT_TRUE(sl_metrics_gauge_value(g) == -9.75);

    /* Updates of another type are ignored. */
    sl_metrics_gauge_set(a, 99);
    sl_metrics_histogram_observe(a, 1);
    sl_metrics_counter_add(g, 3);
    ASSERT_EQ_INT(sl_metrics_counter_value(a), 7);
    ASSERT_TRUE(sl_metrics_gauge_value(g) == -9.75);
    ASSERT_EQ_INT(sl_metrics_counter_value(g), 0);
    ASSERT_TRUE(isnan(sl_metrics_histogram_quantile(a, 0.5)));
    sl_metrics_destroy(m);
}

static void test_metrics_prometheus_text_exact(void)
{
    static const char *const req_labels[] = {"method", "code"};
    static const char *const get200[] = {"GET", "200"};
    static const char *const post500[] = {"POST", "500"};
    static const char *const route[] = {"route"};
    static const char *const ingest[] = {"/ingest"};
    static const double bounds[] = {0.1, 0.5, 1};
    static const char expected[] =
        "# HELP http_requests_total Requests by method and status.\n"
        "# TYPE http_requests_total counter\n"
        "http_requests_total{method=\"GET\",code=\"200\"} 3\n"
        "http_requests_total{method=\"POST\",code=\"500\"} 1\n"
        "# HELP queue_depth Events waiting.\n"
        "# TYPE queue_depth gauge\n"
        "queue_depth 2.5\n"
        "# HELP uptime_seconds \n"
        "# TYPE uptime_seconds counter\n"
        "uptime_seconds 0\n"
        "# HELP request_seconds Request latency.\n"
        "# TYPE request_seconds histogram\n"
        "request_seconds_bucket{route=\"/ingest\",le=\"0.1\"} 1\n"
        "request_seconds_bucket{route=\"/ingest\",le=\"0.5\"} 3\n"
        "request_seconds_bucket{route=\"/ingest\",le=\"1\"} 4\n"
        "request_seconds_bucket{route=\"/ingest\",le=\"+Inf\"} 5\n"
        "request_seconds_sum{route=\"/ingest\"} 4.5625\n"
        "request_seconds_count{route=\"/ingest\"} 5\n"
        "# HELP batch_seconds Batch latency.\n"
        "# TYPE batch_seconds histogram\n"
        "batch_seconds_bucket{le=\"0.1\"} 0\n"
        "batch_seconds_bucket{le=\"0.5\"} 0\n"
        "batch_seconds_bucket{le=\"1\"} 0\n"
        "batch_seconds_bucket{le=\"+Inf\"} 0\n"
        "batch_seconds_sum 0\n"
        "batch_seconds_count 0\n"
        "# HELP tenants_total Tenants.\n"
        "# TYPE tenants_total gauge\n";
    struct sl_metrics *m = NULL;
    struct sl_metrics_family *f;
    struct sl_metrics_series *h;
    char *text;

    ASSERT_OK(sl_metrics_create(&m), NULL);
    f = sl_metrics_counter(m, "http_requests_total", "Requests by method and status.",
                           req_labels, 2);
    sl_metrics_counter_add(sl_metrics_series_get(f, get200), 3);
    sl_metrics_counter_add(sl_metrics_series_get(f, post500), 1);
    f = sl_metrics_gauge(m, "queue_depth", "Events waiting.", NULL, 0);
    sl_metrics_gauge_set(sl_metrics_series_get(f, NULL), 2.5);
    ASSERT_TRUE(sl_metrics_counter(m, "uptime_seconds", NULL, NULL, 0) != NULL);
    f = sl_metrics_histogram(m, "request_seconds", "Request latency.", route, 1, bounds, 3);
    h = sl_metrics_series_get(f, ingest);
    sl_metrics_histogram_observe(h, 0.0625);
    sl_metrics_histogram_observe(h, 0.25);
    sl_metrics_histogram_observe(h, 0.5); /* a value on a bound counts in that bucket */
    sl_metrics_histogram_observe(h, 0.75);
    sl_metrics_histogram_observe(h, 3);
    sl_metrics_histogram_observe(h, NAN); /* ignored */
    ASSERT_TRUE(sl_metrics_histogram(m, "batch_seconds", "Batch latency.", NULL, 0, bounds,
                                     3) != NULL);
    ASSERT_TRUE(sl_metrics_gauge(m, "tenants_total", "Tenants.", route, 1) != NULL);

    text = render_text(m);
    ASSERT_EQ_STR(text, expected);
    free(text);
    sl_metrics_destroy(m);
}

static void test_metrics_prometheus_escaping_and_floats(void)
{
    static const char *const labels[] = {"path", "ua"};
    static const char *const values[] = {"C:\\dir\\\"x\"", "line1\nline2"};
    static const char *const empty[] = {NULL, ""};
    struct sl_metrics *m = NULL;
    struct sl_metrics_family *f;
    char *text;

    ASSERT_OK(sl_metrics_create(&m), NULL);
    f = sl_metrics_counter(m, "odd_total", "Help with \\ and \"quotes\"\nand a newline.",
                           labels, 2);
    sl_metrics_counter_add(sl_metrics_series_get(f, values), 1);
    /* NULL label values mean "" and find the same series. */
    sl_metrics_counter_add(sl_metrics_series_get(f, empty), 1);
    ASSERT_TRUE(sl_metrics_series_get(f, empty) == sl_metrics_series_get(f, empty));
    f = sl_metrics_gauge(m, "g_tenth", "", NULL, 0);
    sl_metrics_gauge_set(sl_metrics_series_get(f, NULL), 0.1);
    f = sl_metrics_gauge(m, "g_third", "", NULL, 0);
    sl_metrics_gauge_set(sl_metrics_series_get(f, NULL), 1.0 / 3.0);
    f = sl_metrics_gauge(m, "g_inf", "", NULL, 0);
    sl_metrics_gauge_set(sl_metrics_series_get(f, NULL), -INFINITY);
    f = sl_metrics_gauge(m, "g_nan", "", NULL, 0);
    sl_metrics_gauge_set(sl_metrics_series_get(f, NULL), NAN);
    f = sl_metrics_gauge(m, "g_big", "", NULL, 0);
    sl_metrics_gauge_set(sl_metrics_series_get(f, NULL), 1e300);
    f = sl_metrics_gauge(m, "g_precise", "", NULL, 0);
    sl_metrics_gauge_set(sl_metrics_series_get(f, NULL), nextafter(0.1, 1.0));

    text = render_text(m);
    /* HELP escapes backslash and newline only; label values also escape double quotes. */
    ASSERT_CONTAINS(text, "# HELP odd_total Help with \\\\ and \"quotes\"\\nand a newline.\n");
    ASSERT_CONTAINS(text,
                    "odd_total{path=\"C:\\\\dir\\\\\\\"x\\\"\",ua=\"line1\\nline2\"} 1\n");
    ASSERT_CONTAINS(text, "odd_total{path=\"\",ua=\"\"} 1\n");
    ASSERT_CONTAINS(text, "g_tenth 0.1\n");
    ASSERT_CONTAINS(text, "g_third 0.3333333333333333\n");
    ASSERT_CONTAINS(text, "g_inf -Inf\n");
    ASSERT_CONTAINS(text, "g_nan NaN\n");
    ASSERT_CONTAINS(text, "g_big 1e+300\n");
    ASSERT_CONTAINS(text, "g_precise 0.10000000000000002\n");
    /* Shortest forms still read back exactly. */
    ASSERT_TRUE(strtod("0.3333333333333333", NULL) == 1.0 / 3.0);
    ASSERT_TRUE(strtod("0.10000000000000002", NULL) == nextafter(0.1, 1.0));
    free(text);
    sl_metrics_destroy(m);
}

static void test_metrics_histogram_buckets_cumulative(void)
{
    static const double bounds[] = {1, 2, 4};
    struct sl_metrics *m = NULL;
    struct sl_metrics_series *h;
    char *text;

    ASSERT_OK(sl_metrics_create(&m), NULL);
    h = sl_metrics_series_get(sl_metrics_histogram(m, "size_kb", "", NULL, 0, bounds, 3),
                              NULL);
    sl_metrics_histogram_observe(h, -3);   /* below every bound: first bucket */
    sl_metrics_histogram_observe(h, 1);    /* on a bound: that bucket */
    sl_metrics_histogram_observe(h, 1.5);
    sl_metrics_histogram_observe(h, 100);  /* past every bound: +Inf only */
    sl_metrics_histogram_observe(h, INFINITY);
    ASSERT_EQ_INT(sl_metrics_histogram_count(h), 5);
    ASSERT_TRUE(isinf(sl_metrics_histogram_sum(h)));
    text = render_text(m);
    ASSERT_CONTAINS(text, "size_kb_bucket{le=\"1\"} 2\n"
                          "size_kb_bucket{le=\"2\"} 3\n"
                          "size_kb_bucket{le=\"4\"} 3\n"
                          "size_kb_bucket{le=\"+Inf\"} 5\n"
                          "size_kb_sum +Inf\n"
                          "size_kb_count 5\n");
    free(text);
    sl_metrics_destroy(m);
}

static void test_metrics_histogram_quantile_estimates(void)
{
    static const double bounds[] = {1, 2, 4, 8};
    static const double zero_bounds[] = {0, 1};
    struct sl_metrics *m = NULL;
    struct sl_metrics_series *h;
    struct sl_metrics_series *z;

    ASSERT_OK(sl_metrics_create(&m), NULL);
    h = sl_metrics_series_get(sl_metrics_histogram(m, "lat", "", NULL, 0, bounds, 4), NULL);
    ASSERT_TRUE(isnan(sl_metrics_histogram_quantile(h, 0.5)));
    /* 10 in (0,1], 10 in (1,2], 20 in (2,4], 60 in (4,8]. */
    for (int i = 0; i < 10; i++) {
        sl_metrics_histogram_observe(h, 0.5);
        sl_metrics_histogram_observe(h, 1.5);
    }
    for (int i = 0; i < 20; i++) {
        sl_metrics_histogram_observe(h, 3);
    }
    for (int i = 0; i < 60; i++) {
        sl_metrics_histogram_observe(h, 5);
    }
    ASSERT_NEAR(sl_metrics_histogram_quantile(h, 0.05), 0.5, 1e-12);
    ASSERT_NEAR(sl_metrics_histogram_quantile(h, 0.1), 1.0, 1e-12);
    ASSERT_NEAR(sl_metrics_histogram_quantile(h, 0.15), 1.5, 1e-12);
    ASSERT_NEAR(sl_metrics_histogram_quantile(h, 0.3), 3.0, 1e-12);
    ASSERT_NEAR(sl_metrics_histogram_quantile(h, 0.5), 4.0 + 4.0 * 10.0 / 60.0, 1e-12);
    ASSERT_NEAR(sl_metrics_histogram_quantile(h, 0.99), 4.0 + 4.0 * 59.0 / 60.0, 1e-12);
    ASSERT_NEAR(sl_metrics_histogram_quantile(h, 1.0), 8.0, 1e-12);
    ASSERT_NEAR(sl_metrics_histogram_quantile(h, 0.0), 0.0, 1e-12);
    ASSERT_TRUE(isnan(sl_metrics_histogram_quantile(h, -0.1)));
    ASSERT_TRUE(isnan(sl_metrics_histogram_quantile(h, 1.5)));
    ASSERT_TRUE(isnan(sl_metrics_histogram_quantile(h, NAN)));
    /* Ranks in the +Inf bucket give the largest finite bound. */
    for (int i = 0; i < 100; i++) {
        sl_metrics_histogram_observe(h, 1000);
    }
    ASSERT_NEAR(sl_metrics_histogram_quantile(h, 0.99), 8.0, 1e-12);
    ASSERT_NEAR(sl_metrics_histogram_quantile(h, 0.25), 4.0 + 4.0 * 10.0 / 60.0, 1e-12);

    /* A first bound <= 0 is returned as is. */
    z = sl_metrics_series_get(sl_metrics_histogram(m, "z", "", NULL, 0, zero_bounds, 2),
                              NULL);
    sl_metrics_histogram_observe(z, -5);
    sl_metrics_histogram_observe(z, 0.5);
    ASSERT_NEAR(sl_metrics_histogram_quantile(z, 0.25), 0.0, 1e-12);
    ASSERT_NEAR(sl_metrics_histogram_quantile(z, 1.0), 1.0, 1e-12);
    sl_metrics_destroy(m);
}

static void test_metrics_json_holds_values(void)
{
    static const char *const labels[] = {"tenant"};
    static const char *const t1[] = {"t\"1"};
    static const double bounds[] = {1, 2};
    struct sl_metrics *m = NULL;
    struct sl_metrics_series *h;
    json_t *root;
    json_t *fam;
    json_t *series;
    json_t *buckets;

    ASSERT_OK(sl_metrics_create(&m), NULL);
    sl_metrics_counter_add(
        sl_metrics_series_get(sl_metrics_counter(m, "events_total", "Events \"in\".", labels,
                                                 1),
                              t1),
        42);
    sl_metrics_gauge_set(
        sl_metrics_series_get(sl_metrics_gauge(m, "lag_seconds", "Lag.", NULL, 0), NULL),
        1.25);
    sl_metrics_gauge_set(
        sl_metrics_series_get(sl_metrics_gauge(m, "nan_gauge", "", NULL, 0), NULL), NAN);
    h = sl_metrics_series_get(sl_metrics_histogram(m, "lat", "Latency.", labels, 1, bounds, 2),
                              t1);
    sl_metrics_histogram_observe(h, 0.5);
    sl_metrics_histogram_observe(h, 1.5);
    sl_metrics_histogram_observe(h, 1.5);
    sl_metrics_histogram_observe(h, 3);
    ASSERT_TRUE(sl_metrics_histogram(m, "empty", "", NULL, 0, bounds, 2) != NULL);

    root = render_json(m);
    ASSERT_EQ_INT(json_object_size(root), 5);

    fam = json_object_get(root, "events_total");
    ASSERT_EQ_STR(json_string_value(json_object_get(fam, "type")), "counter");
    ASSERT_EQ_STR(json_string_value(json_object_get(fam, "help")), "Events \"in\".");
    series = json_object_get(fam, "series");
    ASSERT_EQ_INT(json_array_size(series), 1);
    ASSERT_EQ_STR(json_string_value(
                      json_object_get(json_object_get(json_array_get(series, 0), "labels"),
                                      "tenant")),
                  "t\"1");
    ASSERT_EQ_INT(json_integer_value(json_object_get(json_array_get(series, 0), "value")), 42);

    fam = json_object_get(root, "lag_seconds");
    ASSERT_EQ_STR(json_string_value(json_object_get(fam, "type")), "gauge");
    series = json_object_get(fam, "series");
    ASSERT_EQ_INT(json_object_size(json_object_get(json_array_get(series, 0), "labels")), 0);
    ASSERT_TRUE(json_real_value(json_object_get(json_array_get(series, 0), "value")) == 1.25);
    series = json_object_get(json_object_get(root, "nan_gauge"), "series");
    ASSERT_TRUE(json_is_null(json_object_get(json_array_get(series, 0), "value")));

    fam = json_object_get(root, "lat");
    ASSERT_EQ_STR(json_string_value(json_object_get(fam, "type")), "histogram");
    series = json_array_get(json_object_get(fam, "series"), 0);
    ASSERT_EQ_INT(json_integer_value(json_object_get(series, "count")), 4);
    ASSERT_TRUE(json_real_value(json_object_get(series, "sum")) == 6.5);
    buckets = json_object_get(series, "buckets");
    ASSERT_EQ_INT(json_array_size(buckets), 3);
    ASSERT_TRUE(json_real_value(json_object_get(json_array_get(buckets, 0), "le")) == 1.0);
    ASSERT_EQ_INT(json_integer_value(json_object_get(json_array_get(buckets, 0), "count")), 1);
    ASSERT_EQ_INT(json_integer_value(json_object_get(json_array_get(buckets, 1), "count")), 3);
    ASSERT_EQ_STR(json_string_value(json_object_get(json_array_get(buckets, 2), "le")), "+Inf");
    ASSERT_EQ_INT(json_integer_value(json_object_get(json_array_get(buckets, 2), "count")), 4);
    /* rank 2 of 4 falls in (1,2] holding ranks 2..3: 1 + 1 * (2 - 1) / 2. */
    ASSERT_NEAR(json_real_value(json_object_get(series, "p50")), 1.5, 1e-12);
    ASSERT_NEAR(json_real_value(json_object_get(series, "p90")), 2.0, 1e-12);
    ASSERT_NEAR(json_real_value(json_object_get(series, "p99")), 2.0, 1e-12);

    series = json_array_get(json_object_get(json_object_get(root, "empty"), "series"), 0);
    ASSERT_EQ_INT(json_integer_value(json_object_get(series, "count")), 0);
    ASSERT_TRUE(json_is_null(json_object_get(series, "p50")));
    json_decref(root);
    sl_metrics_destroy(m);
}

static void test_metrics_series_limit_gives_overflow(void)
{
    static const char *const labels[] = {"tenant", "route"};
    struct sl_metrics *m = NULL;
    struct sl_metrics_family *f;
    struct sl_metrics_series *first = NULL;
    struct sl_metrics_series *overflow;
    char name[32];
    const char *values[2] = {name, "/ingest"};
    char *text;
    json_t *root;
    json_t *last;

    ASSERT_OK(sl_metrics_create_limited(20, &m), NULL);
    f = sl_metrics_counter(m, "per_tenant_total", "", labels, 2);
    for (int i = 0; i < 20; i++) {
        struct sl_metrics_series *s;

        snprintf(name, sizeof(name), "t%d", i);
        s = sl_metrics_series_get(f, values);
        ASSERT_TRUE(s != NULL);
        if (i == 0) {
            first = s;
        }
        sl_metrics_counter_add(s, 1);
    }
    snprintf(name, sizeof(name), "t20");
    overflow = sl_metrics_series_get(f, values);
    ASSERT_TRUE(overflow != NULL && overflow != first);
    for (int i = 21; i < 5000; i++) {
        snprintf(name, sizeof(name), "t%d", i);
        ASSERT_TRUE(sl_metrics_series_get(f, values) == overflow);
        sl_metrics_counter_add(overflow, 1);
    }
    /* Known values still find their own series. */
    snprintf(name, sizeof(name), "t0");
    ASSERT_TRUE(sl_metrics_series_get(f, values) == first);
    snprintf(name, sizeof(name), "t19");
    ASSERT_TRUE(sl_metrics_series_get(f, values) != overflow);

    text = render_text(m);
    ASSERT_CONTAINS(text, "per_tenant_total{tenant=\"t0\",route=\"/ingest\"} 1\n");
    ASSERT_CONTAINS(text, "per_tenant_total{tenant=\"t19\",route=\"/ingest\"} 1\n");
    ASSERT_NOT_CONTAINS(text, "t20");
    /* The overflow series renders last. */
    ASSERT_CONTAINS(text, "route=\"/ingest\"} 1\n"
                          "per_tenant_total{tenant=\"_other\",route=\"_other\"} 4979\n");
    free(text);

    root = render_json(m);
    last = json_array_get(json_object_get(json_object_get(root, "per_tenant_total"), "series"),
                          20);
    ASSERT_EQ_STR(json_string_value(json_object_get(json_object_get(last, "labels"), "tenant")),
                  "_other");
    ASSERT_EQ_INT(json_integer_value(json_object_get(last, "value")), 4979);
    json_decref(root);
    sl_metrics_destroy(m);
}

#define N_THREADS 4
#define N_INCREMENTS 100000

struct worker_arg {
    struct sl_metrics_family *counter;
    struct sl_metrics_family *gauge;
    struct sl_metrics_family *histogram;
};

static void *increment_worker(void *p)
{
    static const char *const shared[] = {"shared"};
    const struct worker_arg *arg = p;
    /* Every thread looks the series up itself: lookups race with each other too. */
    struct sl_metrics_series *c = sl_metrics_series_get(arg->counter, shared);
    struct sl_metrics_series *g = sl_metrics_series_get(arg->gauge, NULL);
    struct sl_metrics_series *h = sl_metrics_series_get(arg->histogram, NULL);

    for (int i = 0; i < N_INCREMENTS; i++) {
        sl_metrics_counter_add(c, 1);
        sl_metrics_gauge_add(g, 1.0);
        sl_metrics_histogram_observe(h, (i % 4) * 0.5);
    }
    return NULL;
}

static void test_metrics_concurrent_updates(void)
{
    static const char *const labels[] = {"kind"};
    static const char *const shared[] = {"shared"};
    static const double bounds[] = {0.25, 0.75, 1.25};
    struct sl_metrics *m = NULL;
    struct worker_arg arg;
    pthread_t threads[N_THREADS];
    struct sl_metrics_series *h;
    struct sl_metrics_text text;

    ASSERT_OK(sl_metrics_create(&m), NULL);
    arg.counter = sl_metrics_counter(m, "ops_total", "", labels, 1);
    arg.gauge = sl_metrics_gauge(m, "ops_gauge", "", NULL, 0);
    arg.histogram = sl_metrics_histogram(m, "ops_hist", "", NULL, 0, bounds, 3);
    sl_metrics_text_init(&text, TEXT_MAX_BYTES);
    for (int i = 0; i < N_THREADS; i++) {
        ASSERT_EQ_INT(pthread_create(&threads[i], NULL, increment_worker, &arg), 0);
    }
    /* Rendering while others update and look up is safe; the counts are checked after. */
    ASSERT_OK(sl_metrics_render_prometheus(m, &text), NULL);
    for (int i = 0; i < N_THREADS; i++) {
        ASSERT_EQ_INT(pthread_join(threads[i], NULL), 0);
    }
    ASSERT_EQ_INT(sl_metrics_counter_value(sl_metrics_series_get(arg.counter, shared)),
                  N_THREADS * N_INCREMENTS);
    ASSERT_TRUE(sl_metrics_gauge_value(sl_metrics_series_get(arg.gauge, NULL)) ==
                (double)N_THREADS * N_INCREMENTS);
    h = sl_metrics_series_get(arg.histogram, NULL);
    ASSERT_EQ_INT(sl_metrics_histogram_count(h), N_THREADS * N_INCREMENTS);
    /* Each thread adds 0 + 0.5 + 1 + 1.5 per 4 observations: exact in binary. */
    ASSERT_TRUE(sl_metrics_histogram_sum(h) == N_THREADS * (N_INCREMENTS / 4) * 3.0);
    ASSERT_OK(sl_metrics_render_prometheus(m, &text), NULL);
    ASSERT_CONTAINS(text.data, "ops_total{kind=\"shared\"} 400000\n");
    ASSERT_CONTAINS(text.data, "ops_gauge 400000\n");
    ASSERT_CONTAINS(text.data, "ops_hist_bucket{le=\"0.25\"} 100000\n");
    ASSERT_CONTAINS(text.data, "ops_hist_bucket{le=\"0.75\"} 200000\n");
    ASSERT_CONTAINS(text.data, "ops_hist_count 400000\n");
    sl_metrics_text_fini(&text);
    sl_metrics_destroy(m);
}

static void test_metrics_text_bound(void)
{
    struct sl_metrics *m = NULL;
    struct sl_metrics_text text;

    ASSERT_OK(sl_metrics_create(&m), NULL);
    ASSERT_TRUE(sl_metrics_counter(m, "a_rather_long_counter_name_total", "Help.", NULL, 0) !=
                NULL);
    sl_metrics_text_init(&text, 40);
    ASSERT_EQ_INT(sl_metrics_render_prometheus(m, &text), SL_ENOMEM);
    ASSERT_EQ_INT(text.len, 0);
    ASSERT_TRUE(text.data == NULL || text.data[0] == '\0');
    sl_metrics_text_fini(&text);
    /* The same buffer is reused across renders. */
    sl_metrics_text_init(&text, 4096);
    ASSERT_OK(sl_metrics_render_prometheus(m, &text), NULL);
    ASSERT_OK(sl_metrics_render_prometheus(m, &text), NULL);
    ASSERT_EQ_STR(text.data, "# HELP a_rather_long_counter_name_total Help.\n"
                             "# TYPE a_rather_long_counter_name_total counter\n"
                             "a_rather_long_counter_name_total 0\n");
    sl_metrics_text_fini(&text);
    sl_metrics_text_fini(NULL);
    sl_metrics_destroy(m);
}

/*
 * Builds a small registry, updates it and renders both forms. Returns 0, or SL_ENOMEM when
 * an allocation failed at any step; frees everything either way. On success *out_text and
 * *out_json are new strings (free / sl_free).
 */
static int build_and_render(char **out_text, char **out_json)
{
    static const char *const labels[] = {"tenant", "code"};
    static const char *const values[] = {"t1", "200"};
    static const char *const values2[] = {"t2", "500"};
    static const double bounds[] = {0.01, 0.1, 1};
    struct sl_metrics *m = NULL;
    struct sl_metrics_family *f;
    struct sl_metrics_series *s;
    struct sl_metrics_text text;
    int rc;

    *out_text = NULL;
    *out_json = NULL;
    sl_metrics_text_init(&text, TEXT_MAX_BYTES);
    rc = sl_metrics_create_limited(1, &m);
    if (rc != 0) {
        ASSERT_TRUE(m == NULL);
        goto done;
    }
    rc = SL_ENOMEM;
    f = sl_metrics_counter(m, "requests_total", "Requests.", labels, 2);
    if (f == NULL) {
        goto done;
    }
    s = sl_metrics_series_get(f, values);
    if (s == NULL) {
        goto done;
    }
    sl_metrics_counter_add(s, 7);
    /* Past the limit of 1: the overflow series, also built on demand. */
    s = sl_metrics_series_get(f, values2);
    if (s == NULL) {
        goto done;
    }
    sl_metrics_counter_add(s, 1);
    f = sl_metrics_histogram(m, "latency_seconds", "Latency.", NULL, 0, bounds, 3);
    if (f == NULL) {
        goto done;
    }
    s = sl_metrics_series_get(f, NULL);
    ASSERT_TRUE(s != NULL);
    sl_metrics_histogram_observe(s, 0.05);
    f = sl_metrics_gauge(m, "depth", "Depth.", NULL, 0);
    if (f == NULL) {
        goto done;
    }
    sl_metrics_gauge_set(sl_metrics_series_get(f, NULL), 3);
    rc = sl_metrics_render_prometheus(m, &text);
    if (rc != 0) {
        ASSERT_EQ_INT(text.len, 0);
        goto done;
    }
    rc = sl_metrics_render_json(m, out_json);
    if (rc != 0) {
        ASSERT_TRUE(*out_json == NULL);
        goto done;
    }
    *out_text = strdup(text.data);

done:
    sl_metrics_text_fini(&text);
    sl_metrics_destroy(m);
    return rc;
}

static void test_metrics_allocation_failures(void)
{
    char *want_text = NULL;
    char *want_json = NULL;
    long n;

    ASSERT_OK(build_and_render(&want_text, &want_json), NULL);
    for (n = 0; n < 10000; n++) {
        char *text = NULL;
        char *json = NULL;
        int rc;

        sl_alloc_fail_after(n);
        rc = build_and_render(&text, &json);
        sl_alloc_fail_after(-1);
        if (rc == 0) {
            /* Every allocation succeeded: the same output as without injection. */
            ASSERT_EQ_STR(text, want_text);
            ASSERT_EQ_STR(json, want_json);
            free(text);
            sl_free(json);
            break;
        }
        ASSERT_EQ_INT(rc, SL_ENOMEM);
    }
    ASSERT_TRUE(n > 10);
    ASSERT_TRUE(n < 10000);
    free(want_text);
    sl_free(want_json);
}

static void test_metrics_failed_registration_leaves_registry_unchanged(void)
{
    static const char *const labels[] = {"a", "b"};
    struct sl_metrics *m = NULL;
    char *text;

    ASSERT_OK(sl_metrics_create(&m), NULL);
    for (long n = 0; n < 7; n++) {
        sl_alloc_fail_after(n);
        ASSERT_TRUE(sl_metrics_counter(m, "later_total", "Later.", labels, 2) == NULL);
        sl_alloc_fail_after(-1);
    }
    text = render_text(m);
    ASSERT_EQ_STR(text, "");
    free(text);
    ASSERT_TRUE(sl_metrics_counter(m, "later_total", "Later.", labels, 2) != NULL);
    text = render_text(m);
    ASSERT_EQ_STR(text, "# HELP later_total Later.\n# TYPE later_total counter\n");
    free(text);
    sl_metrics_destroy(m);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_metrics_registration_rules),
        TEST_CASE(test_metrics_counter_and_gauge_values),
        TEST_CASE(test_metrics_prometheus_text_exact),
        TEST_CASE(test_metrics_prometheus_escaping_and_floats),
        TEST_CASE(test_metrics_histogram_buckets_cumulative),
        TEST_CASE(test_metrics_histogram_quantile_estimates),
        TEST_CASE(test_metrics_json_holds_values),
        TEST_CASE(test_metrics_series_limit_gives_overflow),
        TEST_CASE(test_metrics_concurrent_updates),
        TEST_CASE(test_metrics_text_bound),
        TEST_CASE(test_metrics_allocation_failures),
        TEST_CASE(test_metrics_failed_registration_leaves_registry_unchanged),
        {NULL, NULL},
    };

    /* jansson allocates through the wrappers too, so its failures are injected as well. */
    sl_alloc_init_jansson();
    return test_main(argc, argv, cases);
}

/*
 * The loader's frame: settings, the thread, its state, health, stats and metrics. The
 * circuit breaker is in loader_breaker.c, the insert of a batch in loader_insert.c, the
 * consumption loops in loader_kafka.c and loader_spool.c.
 */
#include "loader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "loader_int.h"
#include "log.h"
#include "schema.h"
#include "timefmt.h"

#define COMPONENT "loader"

/* The row buffer holds at least this much, so a chunk rarely splits a batch. */
#define ROWS_MIN_BYTES (32u * 1024 * 1024)

static int check_roles(const char *key, const char *text, struct sl_err *err)
{
    bool has_edge = false, has_loader = false;
    const char *p = text;

    for (;;) {
        size_t n = strcspn(p, ",");

        if (n == 4 && strncmp(p, "edge", 4) == 0 && !has_edge) {
            has_edge = true;
        }
        else if (n == 6 && strncmp(p, "loader", 6) == 0 && !has_loader) {
            has_loader = true;
        }
        else {
            return sl_err_set(err, SL_EINVAL, "%s: '%s' is not a list of roles: use "
                              "\"edge,loader\" (the default), \"edge\" or \"loader\", each "
                              "once, comma separated without spaces", key, text);
        }
        if (p[n] == '\0') {
            return 0;
        }
        p += n + 1;
    }
}

const struct sl_cfg_opt ingest_loader_cfg_opts[] = {
    {.key = "SLUICE_INGEST_ROLES", .type = SL_CFG_STRING, .def = "edge,loader",
     .offset = offsetof(struct ingest_loader_settings, roles), .check = check_roles,
     .desc = "Roles of this sluice-ingest: \"edge,loader\", \"edge\" (HTTP to the queue) or "
             "\"loader\" (Kafka to ClickHouse; needs SLUICE_KAFKA_BROKERS; /ingest answers "
             "404, /health, /stats and /metrics still work)."},
    {.key = "SLUICE_LOADER_BATCH_ROWS", .type = SL_CFG_INT, .def = "50000", .min = 1,
     .max = 1000000, .offset = offsetof(struct ingest_loader_settings, batch_rows),
     .desc = "The loader inserts a batch once it holds this many events."},
    {.key = "SLUICE_LOADER_BATCH_BYTES", .type = SL_CFG_BYTES, .def = "16M", .min = 1024,
     .max = (int64_t)1 << 30, .offset = offsetof(struct ingest_loader_settings, batch_bytes),
     .desc = "... or this many bytes of events."},
    {.key = "SLUICE_LOADER_BATCH_AGE_MS", .type = SL_CFG_INT, .def = "1000", .min = 1,
     .max = 600000, .offset = offsetof(struct ingest_loader_settings, batch_age_ms),
     .desc = "... or once its oldest event waited this long, in ms."},
    {.key = "SLUICE_LOADER_GROUP_ID", .type = SL_CFG_STRING, .def = "sluice-loader",
     .offset = offsetof(struct ingest_loader_settings, group_id),
     .desc = "Kafka consumer group of the loaders; offsets are committed only after "
             "ClickHouse acknowledged the insert."},
    {.key = "SLUICE_KAFKA_DLQ_TOPIC", .type = SL_CFG_STRING, .def = "sluice.dlq",
     .offset = offsetof(struct ingest_loader_settings, dlq_topic),
     .desc = "Dead-letter topic for events that can never load (reason and origin in "
             "headers). Without brokers: <SLUICE_SPOOL_DIR>/dead-letters/."},
    {.key = "SLUICE_LOADER_BACKOFF_MAX_MS", .type = SL_CFG_INT, .def = "30000", .min = 100,
     .max = 3600000, .offset = offsetof(struct ingest_loader_settings, backoff_max_ms),
     .desc = "Longest wait between retries while ClickHouse is down (exponential backoff "
             "with jitter from 250 ms)."},
    {.key = "SLUICE_LOADER_SESSION_TIMEOUT_MS", .type = SL_CFG_INT, .def = "45000",
     .min = 6000, .max = 300000,
     .offset = offsetof(struct ingest_loader_settings, session_timeout_ms),
     .desc = "Kafka session timeout of a loader: how soon the group gives the partitions of "
             "a crashed loader to the others."},
};
const size_t ingest_loader_cfg_n_opts =
    sizeof(ingest_loader_cfg_opts) / sizeof(ingest_loader_cfg_opts[0]);

bool ingest_loader_roles_has(const char *roles, const char *role)
{
    size_t len = strlen(role);

    for (const char *p = roles; p != NULL && *p != '\0';) {
        size_t n = strcspn(p, ",");

        if (n == len && strncmp(p, role, n) == 0) {
            return true;
        }
        p += n;
        if (*p == ',') {
            p++;
        }
    }
    return false;
}

const char *ingest_loader_state_name(enum ingest_loader_state state)
{
    switch (state) {
    case INGEST_LOADER_STARTING:
        return "starting";
    case INGEST_LOADER_OK:
        return "ok";
    case INGEST_LOADER_CLICKHOUSE_DOWN:
        return "clickhouse_down";
    case INGEST_LOADER_DEAD_LETTERS_DOWN:
        return "dead_letters_down";
    case INGEST_LOADER_STOPPED:
        return "stopped";
    }
    return "unknown";
}

/* ---- time, stop ---- */

int64_t ingest_loader_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ingest_loader_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool ingest_loader_is_stopping(struct ingest_loader *l)
{
    bool is_stopping;

    pthread_mutex_lock(&l->lock);
    is_stopping = l->is_stopping;
    pthread_mutex_unlock(&l->lock);
    return is_stopping;
}

bool ingest_loader_has_time_to_flush(struct ingest_loader *l)
{
    int64_t deadline;

    pthread_mutex_lock(&l->lock);
    deadline = l->stop_deadline_ms;
    pthread_mutex_unlock(&l->lock);
    return ingest_loader_now_ms() < deadline;
}

bool ingest_loader_sleep(struct ingest_loader *l, int64_t ms)
{
    struct timespec ts;
    bool is_stopping;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&l->lock);
    while (!l->is_stopping && ms > 0) {
        if (pthread_cond_timedwait(&l->cond, &l->lock, &ts) != 0) {
            break;
        }
    }
    is_stopping = l->is_stopping;
    pthread_mutex_unlock(&l->lock);
    return is_stopping;
}

/* ---- state and rows/s ---- */

void ingest_loader_set_state(struct ingest_loader *l, enum ingest_loader_state state,
                             const char *error)
{
    pthread_mutex_lock(&l->lock);
    if (l->state != state) {
        l->state = state;
        l->since_s = ingest_loader_wall_ms() / 1000;
    }
    if (error != NULL) {
        snprintf(l->last_error, sizeof(l->last_error), "%s", error);
    }
    pthread_mutex_unlock(&l->lock);
}

enum ingest_loader_state ingest_loader_get_state(struct ingest_loader *l)
{
    enum ingest_loader_state state;

    pthread_mutex_lock(&l->lock);
    state = l->state;
    pthread_mutex_unlock(&l->lock);
    return state;
}

void ingest_loader_tick(struct ingest_loader *l)
{
    int64_t now = ingest_loader_now_ms();
    uint64_t rows;
    double rate;

    if (now - l->rate_t0_ms < 1000) {
        return;
    }
    rows = atomic_load(&l->n_rows);
    rate = l->rate_t0_ms == 0 ? 0.0
                              : (double)(rows - l->rate_rows0) * 1000.0 /
                                    (double)(now - l->rate_t0_ms);
    l->rate_t0_ms = now;
    l->rate_rows0 = rows;
    atomic_store(&l->rows_per_s, rate);
    sl_metrics_gauge_set(l->m_rows_per_s, rate);
}

/* ---- lag ---- */

void ingest_loader_set_lag(struct ingest_loader *l, int32_t partition, int64_t lag)
{
    char label[16];
    const char *labels[1] = {label};
    int64_t total = 0;
    bool is_known = false;
    size_t i;

    if (partition < 0) {
        snprintf(label, sizeof(label), "spool");
    }
    else {
        snprintf(label, sizeof(label), "%d", (int)partition);
    }
    sl_metrics_gauge_set(sl_metrics_series_get(l->f_lag, labels), lag < 0 ? 0.0 : (double)lag);
    pthread_mutex_lock(&l->lock);
    for (i = 0; i < l->n_parts; i++) {
        if (l->parts[i].partition == partition) {
            break;
        }
    }
    if (i == l->n_parts && i < INGEST_LOADER_MAX_PARTITIONS) {
        l->parts[i].partition = partition;
        l->n_parts++;
    }
    if (i < l->n_parts) {
        l->parts[i].lag = lag;
    }
    for (i = 0; i < l->n_parts; i++) {
        if (l->parts[i].lag >= 0) {
            total += l->parts[i].lag;
            is_known = true;
        }
    }
    l->lag = is_known ? total : -1;
    pthread_mutex_unlock(&l->lock);
}

void ingest_loader_clear_lag(struct ingest_loader *l)
{
    pthread_mutex_lock(&l->lock);
    /* Partitions that moved to another loader are that loader's to report. */
    for (size_t i = 0; i < l->n_parts; i++) {
        char label[16];
        const char *labels[1] = {label};

        snprintf(label, sizeof(label), "%d", (int)l->parts[i].partition);
        sl_metrics_gauge_set(sl_metrics_series_get(l->f_lag, labels), 0.0);
    }
    l->n_parts = 0;
    l->lag = -1;
    pthread_mutex_unlock(&l->lock);
}

/* ---- the thread ---- */

/* Applies the schema, retrying with backoff while ClickHouse is down; false if stopped. */
static bool apply_schema(struct ingest_loader *l)
{
    while (!ingest_loader_is_stopping(l)) {
        struct sl_err err;

        sl_err_clear(&err);
        if (ingest_schema_apply(l->ch, l->database, &err) == 0) {
            ingest_loader_breaker_ok(l);
            return true;
        }
        ingest_loader_breaker_fail(l, INGEST_LOADER_CLICKHOUSE_DOWN, &err);
        ingest_loader_sleep(l, ingest_loader_breaker_wait_ms(l));
    }
    return false;
}

static void *loader_main(void *arg)
{
    struct ingest_loader *l = arg;

    if (apply_schema(l)) {
        sl_log_info(COMPONENT, "loading %s into ClickHouse database %s (batches of %lld rows, "
                    "%lld bytes, %lld ms)",
                    l->brokers != NULL ? l->topic : "the embedded spool", l->database,
                    (long long)l->s.batch_rows, (long long)l->s.batch_bytes,
                    (long long)l->s.batch_age_ms);
        if (l->brokers != NULL) {
            ingest_loader_kafka_run(l);
        }
        else {
            ingest_loader_spool_run(l);
        }
    }
    ingest_loader_set_state(l, INGEST_LOADER_STOPPED, NULL);
    return NULL;
}

static void register_metrics(struct ingest_loader *l, struct sl_metrics *m)
{
    static const char *const kind[] = {"kind"};
    static const char *const reason[] = {"reason"};
    static const char *const part[] = {"partition"};
    static const char *const enriched[] = {"enriched"};
    struct sl_metrics_family *f;

    l->m_rows = sl_metrics_series_get(
        sl_metrics_counter(m, "sluice_loader_rows_total",
                           "Rows the loader inserted into ClickHouse and released.", NULL, 0),
        NULL);
    l->m_batches = sl_metrics_series_get(
        sl_metrics_counter(m, "sluice_loader_batches_total", "Batches inserted and released.",
                           NULL, 0),
        NULL);
    l->m_batch_s = sl_metrics_series_get(
        sl_metrics_histogram(m, "sluice_loader_batch_seconds",
                             "Time from a batch's first insert attempt to its release.", NULL,
                             0, sl_metrics_latency_bounds, sl_metrics_latency_n_bounds),
        NULL);
    f = sl_metrics_counter(m, "sluice_loader_insert_errors_total",
                           "Failed ClickHouse inserts: transient (retried whole) or rejected "
                           "(bisected).", kind, 1);
    l->m_err_transient = sl_metrics_series_get(f, (const char *const[]){"transient"});
    l->m_err_rejected = sl_metrics_series_get(f, (const char *const[]){"rejected"});
    f = sl_metrics_counter(m, "sluice_loader_dead_letters_total",
                           "Events sent to the dead letters, by why they cannot load.",
                           reason, 1);
    l->m_dead_encode = sl_metrics_series_get(f, (const char *const[]){"encode"});
    l->m_dead_rejected = sl_metrics_series_get(f, (const char *const[]){"rejected"});
    l->m_rows_per_s = sl_metrics_series_get(
        sl_metrics_gauge(m, "sluice_loader_rows_per_second",
                         "Rows loaded per second over the last second or so.", NULL, 0),
        NULL);
    l->m_ch_up = sl_metrics_series_get(
        sl_metrics_gauge(m, "sluice_loader_clickhouse_up",
                         "1 while the loader's circuit breaker is closed.", NULL, 0),
        NULL);
    l->m_probes = sl_metrics_series_get(
        sl_metrics_counter(m, "sluice_loader_retries_total",
                           "Half-open attempts while the breaker was open.", NULL, 0),
        NULL);
    f = sl_metrics_counter(m, "sluice_loader_enrichment_rows_total",
                           "Rows encoded by the loader, by whether they were enriched "
                           "(\"off\": the tenant's tier has enrichment off).", enriched, 1);
    l->m_enriched = sl_metrics_series_get(f, (const char *const[]){"on"});
    l->m_not_enriched = sl_metrics_series_get(f, (const char *const[]){"off"});
    l->f_lag = sl_metrics_gauge(m, "sluice_loader_consumer_lag",
                                "Events not yet loaded and released, per Kafka partition "
                                "(\"spool\" in spool mode).",
                                part, 1);
}

static char *copy_or_null(const char *s, bool *failed)
{
    char *c;

    if (s == NULL) {
        return NULL;
    }
    c = sl_strdup(s);
    if (c == NULL) {
        *failed = true;
    }
    return c;
}

int ingest_loader_start(struct ingest_loader **out, const struct ingest_loader_settings *s,
                        const struct sl_ch_settings *ch, const char *brokers, const char *topic,
                        struct ingest_spool *spool, const char *dead_letter_dir,
                        struct sl_metrics *m, struct enrich *enrich,
                        struct ingest_policy *policy, struct sl_err *err)
{
    struct ingest_loader *l = NULL;
    struct sl_ch_settings chs = *ch;
    bool is_kafka = brokers != NULL && brokers[0] != '\0';
    bool failed = false;
    int rc;

    *out = NULL;
    if (is_kafka && (topic == NULL || topic[0] == '\0')) {
        return sl_err_set(err, SL_EINVAL, "the loader needs a topic (SLUICE_KAFKA_TOPIC)");
    }
    if (!is_kafka && (spool == NULL || dead_letter_dir == NULL)) {
        return sl_err_set(err, SL_EINVAL, "without brokers the loader needs the edge's spool");
    }
    if (ch->database == NULL || ch->database[0] == '\0') {
        return sl_err_set(err, SL_EINVAL, "the loader needs SLUICE_CLICKHOUSE_DATABASE");
    }
    l = sl_calloc(1, sizeof(*l));
    if (l == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory starting the loader");
    }
    pthread_mutex_init(&l->lock, NULL);
    {
        pthread_condattr_t attr;

        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&l->cond, &attr);
        pthread_condattr_destroy(&attr);
    }
    l->s = *s;
    l->roles_copy = copy_or_null(s->roles, &failed);
    l->group_copy = copy_or_null(s->group_id, &failed);
    l->dlq_topic_copy = copy_or_null(s->dlq_topic, &failed);
    l->s.roles = l->roles_copy;
    l->s.group_id = l->group_copy;
    l->s.dlq_topic = l->dlq_topic_copy;
    l->brokers = is_kafka ? copy_or_null(brokers, &failed) : NULL;
    l->topic = copy_or_null(is_kafka ? topic : "", &failed);
    l->database = copy_or_null(ch->database, &failed);
    l->dead_letter_dir = is_kafka ? NULL : copy_or_null(dead_letter_dir, &failed);
    l->spool = is_kafka ? NULL : spool;
    l->metrics = m;
    l->enrich = enrich;
    l->policy = policy;
    l->state = INGEST_LOADER_STARTING;
    l->since_s = ingest_loader_wall_ms() / 1000;
    l->lag = -1;
    l->rand_state = (unsigned int)ingest_loader_wall_ms() ^ (unsigned int)(uintptr_t)l;
    atomic_init(&l->n_rows, 0);
    atomic_init(&l->n_batches, 0);
    atomic_init(&l->n_insert_errors, 0);
    atomic_init(&l->n_dead, 0);
    atomic_init(&l->n_enriched, 0);
    atomic_init(&l->n_not_enriched, 0);
    atomic_init(&l->rows_per_s, 0.0);
    sl_ch_buf_init(&l->rows, (size_t)s->batch_bytes * 2 > ROWS_MIN_BYTES
                                 ? (size_t)s->batch_bytes * 2
                                 : ROWS_MIN_BYTES);
    if (failed) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory starting the loader");
        goto fail;
    }
    rc = ingest_rows_insert_sql(l->database, l->insert_sql, sizeof(l->insert_sql));
    if (rc != 0) {
        sl_err_set(err, rc, "bad ClickHouse database name '%s'", l->database);
        goto fail;
    }
    /* The loader names its database in every statement, and the database may not exist
     * before the schema is applied, so its client sends no default database. Its breaker
     * does the retrying (with backoff, logging once), so the client tries each request
     * once instead of retrying and logging every attempt. */
    chs.database = NULL;
    chs.max_retries = 0;
    rc = sl_ch_create(&l->ch, &chs, err);
    if (rc != 0) {
        goto fail;
    }
    if (m != NULL) {
        register_metrics(l, m);
    }
    sl_metrics_gauge_set(l->m_ch_up, 0);
    if (is_kafka) {
        rc = ingest_loader_kafka_create(l, err);
        if (rc != 0) {
            goto fail;
        }
    }
    if (pthread_create(&l->thread, NULL, loader_main, l) != 0) {
        rc = sl_err_set(err, SL_ESTATE, "cannot start the loader thread");
        goto fail;
    }
    l->has_thread = true;
    *out = l;
    return 0;

fail:
    ingest_loader_destroy(l);
    return rc;
}

void ingest_loader_stop(struct ingest_loader *l, int deadline_ms)
{
    if (l == NULL) {
        return;
    }
    pthread_mutex_lock(&l->lock);
    if (l->is_stopped) {
        pthread_mutex_unlock(&l->lock);
        return;
    }
    l->is_stopping = true;
    l->is_stopped = true;
    l->stop_deadline_ms = ingest_loader_now_ms() + (deadline_ms > 0 ? deadline_ms : 0);
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
    if (l->has_thread) {
        pthread_join(l->thread, NULL);
        l->has_thread = false;
    }
    ingest_loader_set_state(l, INGEST_LOADER_STOPPED, NULL);
    sl_log_info(COMPONENT, "loader stopped");
}

void ingest_loader_destroy(struct ingest_loader *l)
{
    if (l == NULL) {
        return;
    }
    if (l->has_thread) {
        ingest_loader_stop(l, 0);
    }
    ingest_loader_kafka_destroy(l);
    sl_ch_destroy(l->ch);
    sl_ch_buf_fini(&l->rows);
    sl_free(l->row_item);
    sl_free(l->row_off);
    sl_free(l->roles_copy);
    sl_free(l->group_copy);
    sl_free(l->dlq_topic_copy);
    sl_free(l->brokers);
    sl_free(l->topic);
    sl_free(l->database);
    sl_free(l->dead_letter_dir);
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->lock);
    sl_free(l);
}

/* ---- health and stats ---- */

void ingest_loader_health(struct ingest_loader *l, struct ingest_loader_health *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&l->lock);
    out->state = l->state;
    out->since_s = l->since_s;
    snprintf(out->last_error, sizeof(out->last_error), "%s", l->last_error);
    out->lag = l->lag;
    pthread_mutex_unlock(&l->lock);
    out->is_kafka = l->brokers != NULL;
}

void ingest_loader_stats(struct ingest_loader *l, struct ingest_loader_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->rows_loaded = atomic_load(&l->n_rows);
    out->batches = atomic_load(&l->n_batches);
    out->insert_errors = atomic_load(&l->n_insert_errors);
    out->dead_letters = atomic_load(&l->n_dead);
    out->rows_per_s = atomic_load(&l->rows_per_s);
    pthread_mutex_lock(&l->lock);
    out->last_batch_s = l->last_batch_s;
    for (size_t i = 0; i < l->n_parts; i++) {
        if (l->parts[i].partition < 0) {
            continue;
        }
        out->partitions[out->n_partitions].partition = l->parts[i].partition;
        out->partitions[out->n_partitions].lag = l->parts[i].lag;
        out->n_partitions++;
    }
    pthread_mutex_unlock(&l->lock);
}

json_t *ingest_loader_json(struct ingest_loader *l, bool with_stats)
{
    struct ingest_loader_health h;
    char since[SL_TIMEFMT_ISO_MAX];
    json_t *obj;

    ingest_loader_health(l, &h);
    obj = json_pack("{s:s, s:s, s:s, s:o, s:I}", "mode", h.is_kafka ? "kafka" : "spool",
                    "state", ingest_loader_state_name(h.state), "since",
                    sl_timefmt_iso(h.since_s, since), "last_error",
                    h.last_error[0] != '\0' ? json_string(h.last_error) : json_null(), "lag",
                    (json_int_t)h.lag);
    if (obj != NULL && with_stats) {
        struct ingest_loader_stats st;
        json_t *parts = json_array();

        ingest_loader_stats(l, &st);
        for (size_t i = 0; i < st.n_partitions && parts != NULL; i++) {
            json_array_append_new(parts, json_pack("{s:i, s:I}", "partition",
                                                   (int)st.partitions[i].partition, "lag",
                                                   (json_int_t)st.partitions[i].lag));
        }
        json_object_set_new(obj, "rows_loaded", json_integer((json_int_t)st.rows_loaded));
        json_object_set_new(obj, "batches", json_integer((json_int_t)st.batches));
        json_object_set_new(obj, "insert_errors", json_integer((json_int_t)st.insert_errors));
        json_object_set_new(obj, "dead_letters", json_integer((json_int_t)st.dead_letters));
        json_object_set_new(obj, "rows_per_s", json_real(st.rows_per_s));
        json_object_set_new(obj, "last_batch_s", json_real(st.last_batch_s));
        json_object_set_new(obj, "rows_enriched",
                            json_integer((json_int_t)atomic_load(&l->n_enriched)));
        json_object_set_new(obj, "rows_not_enriched",
                            json_integer((json_int_t)atomic_load(&l->n_not_enriched)));
        json_object_set_new(obj, "partitions", parts != NULL ? parts : json_null());
    }
    return obj;
}

/* The HTTP edge: routes, POST /ingest from key to durable answer, health and stats. */
#include "edge.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "decode.h"
#include "json.h"
#include "log.h"
#include "ratelimit.h"

#define COMPONENT "edge"
#define TOP_TALKERS_MAX 256
#define REASONS_MAX 64

struct talker {
    char tenant_id[SL_STORE_ID_MAX];
    uint64_t events;
};

struct reason_count {
    char field[INGEST_EVENT_FIELD_MAX];
    uint64_t n;
};

struct ingest_edge {
    struct ingest_edge_parts parts;
    struct ingest_http *http;
    struct ingest_ratelimit *ratelimit;
    /* The agent-only bot checker of an edge without the loader's enrichment: made the first
     * time a tenant drops bots (so an edge whose tenants never do loads nothing). */
    pthread_mutex_t bots_lock;
    struct enrich *own_bots;
    bool has_own_bots_failed;
    atomic_uint_least64_t bots_dropped;
    struct sl_metrics_family *m_bots_dropped;
    atomic_uint_least64_t requests;
    atomic_uint_least64_t events_accepted;
    atomic_uint_least64_t events_rejected;
    atomic_uint_least64_t by_status[600];
    /* Set by ingest_edge_drain: from then on every request is refused (the queue is about to
     * be destroyed), including new requests on kept-alive connections, which quiescing the
     * listener does not stop. n_handling counts handlers inside on_request, so drain can
     * wait until none can still reach the queue. */
    atomic_bool is_draining;
    atomic_int n_handling;
    pthread_mutex_t stats_lock; /* talkers and reasons */
    struct talker talkers[TOP_TALKERS_MAX];
    size_t n_talkers;
    struct reason_count reasons[REASONS_MAX];
    size_t n_reasons;
    struct sl_metrics_family *m_requests;
    struct sl_metrics_family *m_latency;
    struct sl_metrics_family *m_rejected;
    struct sl_metrics_series *m_accepted;
};

/* A POST /ingest waiting for its events to become durable. */
struct pending {
    struct ingest_edge *e;
    struct ingest_http_req *req;
    struct ingest_event_batch batch;
    struct ingest_producer_msg *msgs;
    char tenant_id[SL_STORE_ID_MAX];
    struct timespec t0;
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The policy cache's clock (the loader's too): monotonic milliseconds. */
static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static const char *route_of(const char *path)
{
    static const char *const routes[] = {"/ingest", "/health", "/health/live",
                                         "/health/ready", "/stats", "/metrics"};

    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(path, routes[i]) == 0) {
            return routes[i];
        }
    }
    return "other";
}

/* Counts and answers; body is copied. */
static void answer(struct ingest_edge *e, struct ingest_http_req *req, const struct timespec *t0,
                   unsigned int status, const char *content_type, const char *body, size_t len,
                   const char *const *headers)
{
    const char *route = route_of(ingest_http_req_path(req));
    char code[12];
    const char *labels[2] = {route, code};

    snprintf(code, sizeof(code), "%u", status);
    atomic_fetch_add(&e->requests, 1);
    if (status < 600) {
        atomic_fetch_add(&e->by_status[status], 1);
    }
    sl_metrics_counter_add(sl_metrics_series_get(e->m_requests, labels), 1);
    sl_metrics_histogram_observe(sl_metrics_series_get(e->m_latency, labels),
                                 seconds_since(t0));
    ingest_http_respond(req, status, content_type, body, len, headers);
}

static void answer_json(struct ingest_edge *e, struct ingest_http_req *req,
                        const struct timespec *t0, unsigned int status, json_t *obj,
                        const char *const *headers)
{
    char *text = obj != NULL ? json_dumps(obj, JSON_COMPACT) : NULL;

    if (text == NULL) {
        answer(e, req, t0, 503, "application/json", "{\"error\":\"out of memory\"}", 25, NULL);
    }
    else {
        answer(e, req, t0, status, "application/json", text, strlen(text), headers);
    }
    sl_free(text);
    json_decref(obj);
}

/* {"error": message, "code": code}, with optional headers. */
static void answer_error(struct ingest_edge *e, struct ingest_http_req *req,
                         const struct timespec *t0, unsigned int status, const char *code,
                         const char *message, const char *const *headers)
{
    answer_json(e, req, t0, status, json_pack("{s:s, s:s}", "error", message, "code", code),
                headers);
}

/*
 * The batch's own answer ({"accepted":N,"rejected":M,...}) with status, or 503 when
 * rendering it runs out of memory (with oom_headers, which may be NULL).
 */
static void answer_batch(struct ingest_edge *e, struct ingest_http_req *req,
                         const struct timespec *t0, unsigned int status,
                         const struct ingest_event_batch *batch, const char *const *oom_headers)
{
    char *body = NULL;
    size_t len = 0;

    if (ingest_event_batch_response(batch, &body, &len) == 0) {
        answer(e, req, t0, status, "application/json", body, len, NULL);
    }
    else {
        answer_error(e, req, t0, 503, "unavailable", "out of memory", oom_headers);
    }
    sl_free(body);
}

/* ---- stats ---- */

static void count_talker(struct ingest_edge *e, const char *tenant_id, size_t n)
{
    size_t i;

    pthread_mutex_lock(&e->stats_lock);
    for (i = 0; i < e->n_talkers; i++) {
        if (strcmp(e->talkers[i].tenant_id, tenant_id) == 0) {
            break;
        }
    }
    if (i == e->n_talkers && e->n_talkers < TOP_TALKERS_MAX) {
        snprintf(e->talkers[i].tenant_id, sizeof(e->talkers[i].tenant_id), "%s", tenant_id);
        e->n_talkers++;
    }
    if (i < e->n_talkers) {
        e->talkers[i].events += n;
    }
    pthread_mutex_unlock(&e->stats_lock);
}

static void count_rejections(struct ingest_edge *e, const struct ingest_event_batch *b)
{
    pthread_mutex_lock(&e->stats_lock);
    for (size_t k = 0; k < b->n_errors; k++) {
        const char *field = b->errors[k].field[0] != '\0' ? b->errors[k].field : "event";
        const char *labels[1] = {field};
        size_t i;

        for (i = 0; i < e->n_reasons; i++) {
            if (strcmp(e->reasons[i].field, field) == 0) {
                break;
            }
        }
        if (i == e->n_reasons && e->n_reasons < REASONS_MAX) {
            snprintf(e->reasons[i].field, sizeof(e->reasons[i].field), "%s", field);
            e->n_reasons++;
        }
        if (i < e->n_reasons) {
            e->reasons[i].n++;
        }
        sl_metrics_counter_add(sl_metrics_series_get(e->m_rejected, labels), 1);
    }
    pthread_mutex_unlock(&e->stats_lock);
    atomic_fetch_add(&e->events_rejected, b->n_rejected);
}

static int by_events_desc(const void *a, const void *b)
{
    const struct talker *x = a, *y = b;

    return x->events < y->events ? 1 : (x->events > y->events ? -1 : 0);
}

/* "kafka" or "spool", or "none" in a loader-only process. */
static const char *queue_mode(struct ingest_edge *e)
{
    if (e->parts.queue == NULL) {
        return "none";
    }
    return ingest_queue_has_kafka(e->parts.queue) ? "kafka" : "spool";
}

static json_t *stats_json(struct ingest_edge *e)
{
    struct ingest_queue_stats qs;
    json_t *obj;
    struct talker top[TOP_TALKERS_MAX];
    json_t *codes = json_object();
    json_t *reasons = json_object();
    json_t *talkers = json_array();
    size_t n_top;

    for (unsigned int s = 100; s < 600; s++) {
        uint64_t n = atomic_load(&e->by_status[s]);

        if (n > 0) {
            char key[12];

            snprintf(key, sizeof(key), "%u", s);
            json_object_set_new(codes, key, json_integer((json_int_t)n));
        }
    }
    pthread_mutex_lock(&e->stats_lock);
    for (size_t i = 0; i < e->n_reasons; i++) {
        json_object_set_new(reasons, e->reasons[i].field,
                            json_integer((json_int_t)e->reasons[i].n));
    }
    n_top = e->n_talkers;
    memcpy(top, e->talkers, n_top * sizeof(top[0]));
    pthread_mutex_unlock(&e->stats_lock);
    qsort(top, n_top, sizeof(top[0]), by_events_desc);
    for (size_t i = 0; i < n_top && i < 10; i++) {
        json_array_append_new(talkers, json_pack("{s:s, s:I}", "tenant_id", top[i].tenant_id,
                                                 "events", (json_int_t)top[i].events));
    }
    memset(&qs, 0, sizeof(qs));
    if (e->parts.queue != NULL) {
        ingest_queue_stats(e->parts.queue, &qs);
    }
    obj = json_pack(
        "{s:{s:I, s:o, s:I}, s:{s:I, s:I, s:I, s:o}, s:{s:s, s:b, s:I, s:I, s:I, s:I}, "
        "s:{s:I, s:I, s:I, s:I, s:I}, s:o}",
        "requests", "total", (json_int_t)atomic_load(&e->requests), "by_status", codes,
        "in_flight", (json_int_t)ingest_http_active(e->http),
        "events", "accepted", (json_int_t)atomic_load(&e->events_accepted), "rejected",
        (json_int_t)atomic_load(&e->events_rejected), "bots_dropped",
        (json_int_t)atomic_load(&e->bots_dropped), "rejected_by_field", reasons,
        "queue", "mode", queue_mode(e),
        "kafka_healthy", qs.is_kafka_healthy, "inflight_events", (json_int_t)qs.inflight_events,
        "kafka_events", (json_int_t)qs.kafka_events, "spooled_events",
        (json_int_t)qs.spooled_events, "replayed_events", (json_int_t)qs.replayed_events,
        "spool", "bytes_on_disk", (json_int_t)qs.spool.bytes_on_disk, "records_pending",
        (json_int_t)qs.spool.records_pending, "segments", (json_int_t)qs.spool.segments,
        "corrupt_records", (json_int_t)qs.spool.corrupt_records, "full_rejections",
        (json_int_t)qs.spool.full_rejections,
        "top_talkers", talkers);
    if (obj != NULL && e->parts.loader != NULL) {
        json_object_set_new(obj, "loader", ingest_loader_json(e->parts.loader, true));
    }
    return obj;
}

/* ---- bots ---- */

/* The checker for bot verdicts: the loader's enrichment, else our own (made once). */
static struct enrich *bot_checker(struct ingest_edge *e)
{
    struct enrich *checker;

    if (e->parts.enrich != NULL) {
        return e->parts.enrich;
    }
    pthread_mutex_lock(&e->bots_lock);
    if (e->own_bots == NULL && !e->has_own_bots_failed) {
        struct enrich_settings s = {.asn_db = "", .crawler_patterns = "",
                                    .ua_cache_entries = 100000};
        struct sl_err err;

        if (e->parts.enrich_cfg != NULL) {
            s = e->parts.enrich_cfg->settings;
        }
        s.asn_db = ""; /* agent rules only: no address is looked up here */
        sl_err_clear(&err);
        if (enrich_create(&s, NULL, NULL, now_ms() / 1000, &e->own_bots, &err) != 0) {
            e->has_own_bots_failed = true;
            sl_log_error(COMPONENT, "cannot create the bot checker, bots are not dropped: %s",
                         err.msg);
        }
        else {
            sl_log_info(COMPONENT, "a tenant drops bots: loaded the agent bot rules (crawler "
                        "list %s)", s.crawler_patterns[0] != '\0' ? s.crawler_patterns
                                                                  : "off");
        }
    }
    checker = e->own_bots;
    pthread_mutex_unlock(&e->bots_lock);
    return checker;
}

/*
 * The request's User-Agent Client Hints headers as an object (new; NULL when it sent none,
 * or when they would not parse or fit: they are a refinement, never a reason to refuse).
 */
static json_t *request_hints(const struct ingest_http_req *req, size_t max_bytes)
{
    static const char *const names[] = {"Sec-CH-UA", "Sec-CH-UA-Mobile", "Sec-CH-UA-Platform",
                                        "Sec-CH-UA-Platform-Version",
                                        "Sec-CH-UA-Full-Version-List", "Sec-CH-UA-Model"};
    json_t *obj = NULL;
    struct enrich_hints hints;

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = ingest_http_req_header(req, names[i]);

        if (v == NULL || v[0] == '\0') {
            continue;
        }
        if (obj == NULL && (obj = json_object()) == NULL) {
            return NULL;
        }
        if (json_object_set_new(obj, names[i], json_string(v)) != 0) {
            json_decref(obj); /* not UTF-8, or out of memory */
            return NULL;
        }
    }
    enrich_hints_init(&hints);
    if (obj != NULL && (json_dumpb(obj, NULL, 0, JSON_COMPACT) > max_bytes ||
                        enrich_hints_from_json(&hints, obj, NULL) != 0)) {
        json_decref(obj);
        obj = NULL;
    }
    return obj;
}

/* The user agent of one normalized event (context.user_agent), or NULL. agent_buf holds
 * the text. */
static const char *event_agent(const struct ingest_event *ev, char *agent_buf, size_t cap)
{
    json_error_t jerr;
    json_t *root = NULL;
    const char *ua;
    const char *out = NULL;

    sl_json_load(ev->json, ev->json_len, &root, &jerr); /* ours: it parses, or memory ran out */
    ua = json_string_value(json_object_get(json_object_get(root, "context"), "user_agent"));
    if (ua != NULL) {
        snprintf(agent_buf, cap, "%s", ua);
        out = agent_buf;
    }
    json_decref(root);
    return out;
}

/*
 * For a tenant that drops bots: checks every accepted event's agent and drops the bots from
 * the batch, counted by reason. Returns SL_ENOMEM (nothing dropped) when memory ran out.
 */
static int drop_bots(struct ingest_edge *e, struct ingest_event_batch *b)
{
    struct enrich *checker = bot_checker(e);
    bool *drop;
    size_t n_drop = 0;

    if (checker == NULL || b->n_events == 0) {
        return 0;
    }
    drop = sl_calloc(b->n_events, sizeof(*drop));
    if (drop == NULL) {
        return SL_ENOMEM;
    }
    for (size_t i = 0; i < b->n_events; i++) {
        /* Only the first ENRICH_UA_MAX_BYTES of an agent are ever read. */
        char agent[1024];
        struct enrich_bot_verdict v;

        enrich_check_agent(checker, event_agent(&b->events[i], agent, sizeof(agent)), &v);
        if (v.kind != ENRICH_BOT_NONE) {
            const char *labels[1] = {enrich_bot_kind_name(v.kind)};

            drop[i] = true;
            n_drop++;
            sl_metrics_counter_add(sl_metrics_series_get(e->m_bots_dropped, labels), 1);
        }
    }
    if (n_drop > 0) {
        ingest_event_batch_drop(b, drop);
        atomic_fetch_add(&e->bots_dropped, n_drop);
    }
    sl_free(drop);
    return 0;
}

/* ---- POST /ingest ---- */

static void free_pending(struct pending *p)
{
    ingest_event_batch_fini(&p->batch);
    sl_free(p->msgs);
    sl_free(p);
}

/* Events are durable (or could not be made so): answer the client. */
static void on_durable(void *user, const struct ingest_queue_outcome *o)
{
    struct pending *p = user;
    struct ingest_edge *e = p->e;

    if (o->status == 0) {
        atomic_fetch_add(&e->events_accepted, p->batch.n_events);
        sl_metrics_counter_add(e->m_accepted, p->batch.n_events);
        count_talker(e, p->tenant_id, p->batch.n_events);
        answer_batch(e, p->req, &p->t0, 200, &p->batch,
                     (const char *const[]){"Retry-After: 1", NULL});
    }
    else {
        static const char *const retry[] = {"Retry-After: 5", NULL};

        sl_log_error(COMPONENT, "%zu events could not be made durable (%s)",
                     p->batch.n_events, sl_strerror(o->status));
        answer_error(e, p->req, &p->t0, 503, "unavailable",
                     o->status == SL_EBUSY ? "the queue and the disk spool are full; retry later"
                                           : "events could not be stored; retry later",
                     retry);
    }
    free_pending(p);
}

_Static_assert(INGEST_SESSION_ID_LEN == INGEST_EVENT_ID_LEN, "session ids fit event id buffers");

/* Event parsing's session hook, over the edge's session table. */
static int assign_session(void *user, const char *tenant_id, const char *anonymous_id,
                          size_t anonymous_len, int64_t ts_ms, char out[INGEST_EVENT_ID_LEN + 1])
{
    return ingest_session_assign(user, tenant_id, anonymous_id, anonymous_len, ts_ms, out);
}

/* The presented key from Authorization: Bearer or X-API-Key, or NULL. */
static const char *presented_key(struct ingest_http_req *req)
{
    const char *auth = ingest_http_req_header(req, "Authorization");

    if (auth != NULL) {
        if (strncasecmp(auth, "Bearer ", 7) == 0) {
            auth += 7;
            while (*auth == ' ') {
                auth++;
            }
            return auth;
        }
        return NULL;
    }
    return ingest_http_req_header(req, "X-API-Key");
}

static bool is_json_type(const char *ct)
{
    size_t n;

    if (ct == NULL) {
        return false;
    }
    n = strcspn(ct, "; ");
    /* text/plain is what navigator.sendBeacon sends; the body must still be JSON. */
    return (n == 16 && strncasecmp(ct, "application/json", 16) == 0) ||
           (n == 10 && strncasecmp(ct, "text/plain", 10) == 0);
}

static void handle_ingest(struct ingest_edge *e, struct ingest_http_req *req,
                          const struct timespec *t0)
{
    static const char *const www_auth[] = {"WWW-Authenticate: Bearer", NULL};
    struct ingest_auth_result who;
    struct ingest_event_ctx ctx;
    json_t *hints;
    enum ingest_decode_encoding enc;
    struct pending *p = NULL;
    const char *key = presented_key(req);
    const char *raw;
    char *body = NULL;
    size_t raw_len, body_len = 0;
    int64_t retry_ms = 0;
    struct sl_err err;
    int rc;

    sl_err_clear(&err);
    if (ingest_http_req_body_too_large(req)) {
        answer_error(e, req, t0, 413, "too_large", "request body is larger than "
                     "SLUICE_MAX_BODY_BYTES", NULL);
        return;
    }
    if (key == NULL || key[0] == '\0') {
        answer_error(e, req, t0, 401, "unauthorized", "missing API key: send Authorization: "
                     "Bearer <key> or X-API-Key: <key>", www_auth);
        return;
    }
    rc = ingest_auth_check(e->parts.auth, key, strlen(key), now_ms(), &who, &err);
    if (rc != 0) {
        sl_log_error(COMPONENT, "tenant store unavailable: %s", err.msg);
        answer_error(e, req, t0, 503, "unavailable", "cannot check the API key now; retry",
                     (const char *const[]){"Retry-After: 2", NULL});
        return;
    }
    switch (who.status) {
    case SL_KEY_OK:
        break;
    case SL_KEY_UNKNOWN:
        answer_error(e, req, t0, 401, "unauthorized", "unknown API key", www_auth);
        return;
    case SL_KEY_REVOKED:
        answer_error(e, req, t0, 403, "forbidden", "API key is revoked", NULL);
        return;
    case SL_KEY_EXPIRED:
        answer_error(e, req, t0, 403, "forbidden", "API key has expired", NULL);
        return;
    case SL_KEY_TENANT_DISABLED:
        answer_error(e, req, t0, 403, "forbidden", "tenant is disabled", NULL);
        return;
    }
    if (!ingest_auth_has_scope(who.scopes, "ingest")) {
        answer_error(e, req, t0, 403, "forbidden", "API key lacks the ingest scope", NULL);
        return;
    }
    if (!is_json_type(ingest_http_req_header(req, "Content-Type"))) {
        answer_error(e, req, t0, 415, "unsupported_media_type",
                     "Content-Type must be application/json (or text/plain from "
                     "sendBeacon)", NULL);
        return;
    }
    if (ingest_decode_parse_encoding(ingest_http_req_header(req, "Content-Encoding"), &enc,
                                     &err) != 0) {
        answer_error(e, req, t0, 415, "unsupported_media_type", err.msg, NULL);
        return;
    }
    raw = ingest_http_req_body(req, &raw_len);
    rc = ingest_decode_body(enc, raw, raw_len, (size_t)e->parts.http->max_body_bytes, &body,
                            &body_len, &err);
    if (rc != 0) {
        answer_error(e, req, t0, rc == SL_EBUSY ? 413 : (rc == SL_ENOMEM ? 503 : 400),
                     rc == SL_EBUSY ? "too_large" : "bad_request", err.msg, NULL);
        return;
    }
    p = sl_calloc(1, sizeof(*p));
    if (p == NULL) {
        sl_free(body);
        answer_error(e, req, t0, 503, "unavailable", "out of memory", NULL);
        return;
    }
    p->e = e;
    p->req = req;
    p->t0 = *t0;
    memcpy(p->tenant_id, who.tenant_id, sizeof(p->tenant_id));
    hints = request_hints(req, (size_t)(e->parts.limits != NULL
                                            ? e->parts.limits->max_context_bytes
                                            : ingest_event_limits_default().max_context_bytes));
    ctx = (struct ingest_event_ctx){.tenant_id = who.tenant_id,
                                    .received_us = now_ms() * 1000,
                                    .client_ip = ingest_http_req_client_ip(req),
                                    .user_agent = ingest_http_req_header(req, "User-Agent"),
                                    .client_hints = hints,
                                    .assign_session =
                                        e->parts.sessions != NULL ? assign_session : NULL,
                                    .assign_session_user = e->parts.sessions};
    rc = ingest_event_parse_batch(body, body_len, e->parts.limits, &ctx, &p->batch, &err);
    json_decref(hints);
    sl_free(body);
    if (rc != 0) {
        answer_error(e, req, t0, p->batch.http_status != 0 ? (unsigned)p->batch.http_status : 400,
                     rc == SL_EDENIED ? "forbidden" : "bad_request", err.msg, NULL);
        free_pending(p);
        return;
    }
    count_rejections(e, &p->batch);
    if (p->batch.n_events == 0) {
        answer_batch(e, req, t0, 422, &p->batch, NULL);
        free_pending(p);
        return;
    }
    if (e->parts.policy != NULL) {
        struct ingest_policy_tenant policy;

        /* A store failure with nothing cached keeps the events: flagging is the default. */
        if (ingest_policy_get(e->parts.policy, who.tenant_id, mono_ms(), &policy, NULL) == 0 &&
            policy.drop_bots && drop_bots(e, &p->batch) != 0) {
            answer_error(e, req, t0, 503, "unavailable", "out of memory",
                         (const char *const[]){"Retry-After: 1", NULL});
            free_pending(p);
            return;
        }
    }
    if (p->batch.n_events == 0) {
        /* Every accepted event was a bot: nothing to store. */
        answer_batch(e, req, t0, 200, &p->batch, NULL);
        free_pending(p);
        return;
    }
    if (ingest_ratelimit_take(e->ratelimit, who.tenant_id, who.rate_limit_eps, who.burst,
                              (int64_t)p->batch.n_events, now_ms(), &retry_ms) != 0) {
        char header[48];
        const char *headers[2] = {header, NULL};
        char msg[160];

        snprintf(header, sizeof(header), "Retry-After: %lld",
                 (long long)(retry_ms + 999) / 1000 > 0 ? (long long)(retry_ms + 999) / 1000
                                                         : 1LL);
        snprintf(msg, sizeof(msg), "rate limit: %lld events/s with a burst of %lld; this "
                 "request has %zu events", (long long)who.rate_limit_eps, (long long)who.burst,
                 p->batch.n_events);
        answer_error(e, req, t0, 429, "rate_limited", msg, headers);
        free_pending(p);
        return;
    }
    p->msgs = sl_calloc(p->batch.n_events, sizeof(*p->msgs));
    if (p->msgs == NULL) {
        answer_error(e, req, t0, 503, "unavailable", "out of memory", NULL);
        free_pending(p);
        return;
    }
    for (size_t i = 0; i < p->batch.n_events; i++) {
        const struct ingest_event *ev = &p->batch.events[i];
        size_t klen = 0;
        const char *k = ingest_producer_key_for(e->parts.producer, p->tenant_id, ev->session_id,
                                                &klen);

        p->msgs[i] = (struct ingest_producer_msg){.key = k, .key_len = klen, .value = ev->json,
                                                  .value_len = ev->json_len,
                                                  .tenant_id = p->tenant_id};
    }
    rc = ingest_queue_submit(e->parts.queue, p->msgs, p->batch.n_events, on_durable, p, &err);
    if (rc != 0) {
        answer_error(e, req, t0, rc == SL_EBUSY ? 429 : 503,
                     rc == SL_EBUSY ? "backpressure" : "unavailable",
                     rc == SL_EBUSY ? "too many events are waiting to be stored; retry shortly"
                                    : "events could not be queued; retry",
                     (const char *const[]){"Retry-After: 1", NULL});
        free_pending(p);
    }
}

/* ---- routing ---- */

static bool loader_is_ok(struct ingest_edge *e)
{
    struct ingest_loader_health h;

    if (e->parts.loader == NULL) {
        return true;
    }
    ingest_loader_health(e->parts.loader, &h);
    return h.state == INGEST_LOADER_OK;
}

static void handle_health(struct ingest_edge *e, struct ingest_http_req *req,
                          const struct timespec *t0, const char *path)
{
    /* A loader-only process has neither: it is ready while it runs. The loader's own state
     * is reported but never turns /health into 503: restarting sluice-ingest does not bring
     * ClickHouse back, and the edge keeps accepting events meanwhile. */
    bool is_store_ready = e->parts.auth == NULL || ingest_auth_is_ready(e->parts.auth);
    bool is_queue_ready = e->parts.queue == NULL || ingest_queue_is_ready(e->parts.queue);
    bool is_ready = is_store_ready && is_queue_ready;
    bool is_enrichment_ok = true;
    struct ingest_queue_stats qs;
    struct enrich_health eh;
    json_t *obj;

    if (strcmp(path, "/health/live") == 0) {
        answer_json(e, req, t0, 200, json_pack("{s:s}", "status", "ok"), NULL);
        return;
    }
    if (strcmp(path, "/health/ready") == 0) {
        answer_json(e, req, t0, is_ready ? 200 : 503,
                    json_pack("{s:s, s:b, s:b}", "status", is_ready ? "ready" : "not_ready",
                              "queue_writable", is_queue_ready, "tenant_store_readable",
                              is_store_ready),
                    NULL);
        return;
    }
    memset(&qs, 0, sizeof(qs));
    if (e->parts.queue != NULL) {
        ingest_queue_stats(e->parts.queue, &qs);
    }
    if (e->parts.enrich != NULL) {
        enrich_health(e->parts.enrich, &eh);
        is_enrichment_ok = eh.is_ok;
    }
    /* Broken enrichment data never fails readiness either: rows load unenriched (or with
     * the previous data) and "enrichment" says why. */
    obj = json_pack("{s:s, s:s, s:b, s:b, s:b, s:I}", "status",
                    is_ready && loader_is_ok(e) && is_enrichment_ok ? "ok" : "degraded",
                    "queue", queue_mode(e),
                    "kafka_healthy", qs.is_kafka_healthy, "queue_writable", is_queue_ready,
                    "tenant_store_readable", is_store_ready, "spool_records_pending",
                    (json_int_t)qs.spool.records_pending);
    if (obj != NULL && e->parts.loader != NULL) {
        json_object_set_new(obj, "loader", ingest_loader_json(e->parts.loader, false));
    }
    if (obj != NULL && e->parts.enrich != NULL) {
        json_t *ej = enrich_health_to_json(&eh);

        if (ej != NULL) {
            json_object_set_new(ej, "version", json_integer(enrich_version_id(e->parts.enrich)));
        }
        json_object_set_new(obj, "enrichment", ej != NULL ? ej : json_null());
    }
    answer_json(e, req, t0, is_ready ? 200 : 503, obj, NULL);
}

static void route_request(struct ingest_edge *e, struct ingest_http_req *req)
{
    const char *method = ingest_http_req_method(req);
    const char *path = ingest_http_req_path(req);
    struct timespec t0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (strcmp(method, "OPTIONS") == 0) {
        static const char *const preflight[] = {
            "Access-Control-Allow-Methods: POST, GET, OPTIONS",
            "Access-Control-Allow-Headers: Authorization, X-API-Key, Content-Type, "
            "Content-Encoding",
            "Access-Control-Max-Age: 86400", NULL};

        answer(e, req, &t0, 204, NULL, "", 0, preflight);
        return;
    }
    if (strcmp(path, "/ingest") == 0) {
        if (e->parts.queue == NULL) {
            answer_error(e, req, &t0, 404, "not_found", "this sluice-ingest runs only the "
                         "loader role (SLUICE_INGEST_ROLES=loader); send events to an edge",
                         NULL);
            return;
        }
        if (strcmp(method, "POST") != 0) {
            answer_error(e, req, &t0, 405, "method_not_allowed", "use POST /ingest",
                         (const char *const[]){"Allow: POST, OPTIONS", NULL});
            return;
        }
        handle_ingest(e, req, &t0);
        return;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        answer_error(e, req, &t0, 405, "method_not_allowed", "use GET",
                     (const char *const[]){"Allow: GET", NULL});
        return;
    }
    if (strncmp(path, "/health", 7) == 0 &&
        (path[7] == '\0' || strcmp(path + 7, "/live") == 0 || strcmp(path + 7, "/ready") == 0)) {
        handle_health(e, req, &t0, path);
    }
    else if (strcmp(path, "/stats") == 0) {
        answer_json(e, req, &t0, 200, stats_json(e), NULL);
    }
    else if (strcmp(path, "/metrics") == 0) {
        struct sl_metrics_text text;

        sl_metrics_text_init(&text, 8 * 1024 * 1024);
        if (sl_metrics_render_prometheus(e->parts.metrics, &text) == 0) {
            answer(e, req, &t0, 200, "text/plain; version=0.0.4", text.data, text.len, NULL);
        }
        else {
            answer_error(e, req, &t0, 503, "unavailable", "cannot render metrics", NULL);
        }
        sl_metrics_text_fini(&text);
    }
    else {
        answer_error(e, req, &t0, 404, "not_found", "no such endpoint (POST /ingest, GET "
                     "/health, /health/live, /health/ready, /stats, /metrics)", NULL);
    }
}

static void on_request(void *user, struct ingest_http_req *req)
{
    struct ingest_edge *e = user;

    /* Counted before is_draining is read, and drain sets is_draining before it reads the
     * count (both sequentially consistent): either this request sees the drain, or the
     * drain waits for it. */
    atomic_fetch_add(&e->n_handling, 1);
    if (atomic_load(&e->is_draining)) {
        struct timespec t0;

        clock_gettime(CLOCK_MONOTONIC, &t0);
        answer_error(e, req, &t0, 503, "unavailable", "shutting down; retry on another "
                     "instance", (const char *const[]){"Retry-After: 1", "Connection: close",
                                                       NULL});
    }
    else {
        route_request(e, req);
    }
    atomic_fetch_sub(&e->n_handling, 1);
}

int ingest_edge_start(struct ingest_edge **out, const struct ingest_edge_parts *parts,
                      struct sl_err *err)
{
    static const char *const request_labels[] = {"route", "code"};
    static const char *const reason_labels[] = {"field"};
    static const char *const bot_labels[] = {"reason"};
    struct ingest_edge *e = NULL;
    int rc;

    *out = NULL;
    e = sl_calloc(1, sizeof(*e));
    if (e == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory starting the edge");
    }
    e->parts = *parts;
    pthread_mutex_init(&e->stats_lock, NULL);
    pthread_mutex_init(&e->bots_lock, NULL);
    e->m_bots_dropped = sl_metrics_counter(parts->metrics, "sluice_edge_bots_dropped_total",
                                           "Bot events dropped at the edge for tenants that "
                                           "drop bots, by reason (empty, headless, scripted, "
                                           "crawler, spider).",
                                           bot_labels, 1);
    e->m_requests = sl_metrics_counter(parts->metrics, "sluice_http_requests_total",
                                       "HTTP requests answered, by route and status code.",
                                       request_labels, 2);
    e->m_latency = sl_metrics_histogram(parts->metrics, "sluice_http_request_seconds",
                                        "Time from a complete request to its answer.",
                                        request_labels, 2, sl_metrics_latency_bounds,
                                        sl_metrics_latency_n_bounds);
    e->m_rejected = sl_metrics_counter(parts->metrics, "sluice_events_rejected_total",
                                       "Events refused by validation, by field.", reason_labels,
                                       1);
    e->m_accepted = sl_metrics_series_get(
        sl_metrics_counter(parts->metrics, "sluice_events_accepted_total",
                           "Events accepted and durable.", NULL, 0),
        NULL);
    rc = ingest_ratelimit_create(&e->ratelimit, 100000);
    if (rc != 0) {
        sl_err_set(err, rc, "out of memory creating rate limits");
    }
    else {
        rc = ingest_http_start(&e->http, parts->http, on_request, e, err);
    }
    if (rc != 0) {
        ingest_ratelimit_destroy(e->ratelimit);
        pthread_mutex_destroy(&e->bots_lock);
        pthread_mutex_destroy(&e->stats_lock);
        sl_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

int ingest_edge_port(struct ingest_edge *e)
{
    return ingest_http_port(e->http);
}

/* Polls until no request is in progress or ms passed. */
static void wait_idle(struct ingest_edge *e, int ms)
{
    for (int waited = 0; ingest_http_active(e->http) > 0 && waited < ms; waited += 10) {
        usleep(10000);
    }
}

void ingest_edge_drain(struct ingest_edge *e, int drain_ms)
{
    atomic_store(&e->is_draining, true);
    ingest_http_quiesce(e->http);
    wait_idle(e, drain_ms);
    /* A handler that started before the flag may still be submitting; it does not wait for
     * Kafka (only for the tenant store or a spool append), so this ends soon. */
    while (atomic_load(&e->n_handling) > 0) {
        usleep(1000);
    }
}

void ingest_edge_stop(struct ingest_edge *e, int wait_ms)
{
    if (e == NULL) {
        return;
    }
    wait_idle(e, wait_ms);
    ingest_http_stop(e->http);
    ingest_ratelimit_destroy(e->ratelimit);
    enrich_destroy(e->own_bots);
    pthread_mutex_destroy(&e->bots_lock);
    pthread_mutex_destroy(&e->stats_lock);
    sl_free(e);
}

/*
 * Parsing of POST /ingest bodies (see event.h, and README.md, "Sending events", for the
 * rules as users read them): the settings table, the request as a whole and the response.
 *
 * The body is parsed once with jansson. This file checks its shape (one event, or a batch
 * object with events and sent_at), prepares what all its events share (receive time,
 * User-Agent, peer address), then runs each event through event_fields.c, which collects
 * and checks its fields and lists every problem, and through event_norm.c, which writes an
 * accepted event as normalized JSON into the batch. It also holds the small helpers those
 * files share (quoting user text into reasons, naming JSON kinds, IP addresses). JSON
 * writing, RFC 3339 times and UTF-8 checks come from the shared library (json.h,
 * timefmt.h, utf8.h).
 */
#include "event.h"

#include <arpa/inet.h>
#include <assert.h>
#include <jansson.h>
#include <string.h>

#include "alloc.h"
#include "arena.h"
#include "event_int.h"
#include "json.h"
#include "timefmt.h"
#include "utf8.h"

#define DEF_MAX_BATCH_EVENTS 1000
#define DEF_MAX_NAME_BYTES 256
#define DEF_MAX_IDENT_BYTES 256
#define DEF_MAX_CONTEXT_BYTES 1024
#define DEF_MAX_URL_BYTES 4096
#define DEF_MAX_PROPERTIES_BYTES 16384
#define DEF_MAX_PROPERTIES_DEPTH 8
#define DEF_MAX_MESSAGE_BYTES 32768
#define DEF_MAX_SOURCE_BYTES 256
#define DEF_MAX_PAST_DAYS 30
#define DEF_MAX_FUTURE_S 86400

/* Largest first chunk of a request's arena; bigger bodies take more chunks. */
#define ARENA_FIRST_MAX ((size_t)8 << 20)

#define STR_(x) #x
#define STR(x) STR_(x)

const struct sl_cfg_opt ingest_event_cfg_opts[] = {
    {.key = "SLUICE_EVENT_MAX_BATCH", .type = SL_CFG_INT, .def = STR(DEF_MAX_BATCH_EVENTS),
     .min = 1, .max = 100000, .offset = offsetof(struct ingest_event_limits, max_batch_events),
     .desc = "Most events in one POST /ingest request; more is refused with 413."},
    {.key = "SLUICE_EVENT_MAX_NAME_BYTES", .type = SL_CFG_BYTES, .def = STR(DEF_MAX_NAME_BYTES),
     .min = 1, .max = 65536, .offset = offsetof(struct ingest_event_limits, max_name_bytes),
     .desc = "Longest event name."},
    {.key = "SLUICE_EVENT_MAX_IDENT_BYTES", .type = SL_CFG_BYTES,
     .def = STR(DEF_MAX_IDENT_BYTES), .min = 1, .max = 65536,
     .offset = offsetof(struct ingest_event_limits, max_ident_bytes),
     .desc = "Longest session_id, anonymous_id or user_id."},
    {.key = "SLUICE_EVENT_MAX_CONTEXT_BYTES", .type = SL_CFG_BYTES,
     .def = STR(DEF_MAX_CONTEXT_BYTES), .min = 1, .max = 65536,
     .offset = offsetof(struct ingest_event_limits, max_context_bytes),
     .desc = "Longest context text field other than url, path and referrer."},
    {.key = "SLUICE_EVENT_MAX_URL_BYTES", .type = SL_CFG_BYTES, .def = STR(DEF_MAX_URL_BYTES),
     .min = 1, .max = 1048576, .offset = offsetof(struct ingest_event_limits, max_url_bytes),
     .desc = "Longest context.url, context.path or context.referrer."},
    {.key = "SLUICE_EVENT_MAX_PROPERTIES_BYTES", .type = SL_CFG_BYTES,
     .def = STR(DEF_MAX_PROPERTIES_BYTES), .min = 2, .max = 16777216,
     .offset = offsetof(struct ingest_event_limits, max_properties_bytes),
     .desc = "Largest properties object, measured as compact JSON."},
    {.key = "SLUICE_EVENT_MAX_PROPERTIES_DEPTH", .type = SL_CFG_INT,
     .def = STR(DEF_MAX_PROPERTIES_DEPTH), .min = 1, .max = 64,
     .offset = offsetof(struct ingest_event_limits, max_properties_depth),
     .desc = "Deepest nesting of objects and arrays in properties (properties is level 1)."},
    {.key = "SLUICE_EVENT_MAX_MESSAGE_BYTES", .type = SL_CFG_BYTES,
     .def = STR(DEF_MAX_MESSAGE_BYTES), .min = 1, .max = 16777216,
     .offset = offsetof(struct ingest_event_limits, max_message_bytes),
     .desc = "Longest log message."},
    {.key = "SLUICE_EVENT_MAX_SOURCE_BYTES", .type = SL_CFG_BYTES,
     .def = STR(DEF_MAX_SOURCE_BYTES), .min = 1, .max = 65536,
     .offset = offsetof(struct ingest_event_limits, max_source_bytes),
     .desc = "Longest log source."},
    {.key = "SLUICE_EVENT_MAX_PAST_DAYS", .type = SL_CFG_INT, .def = STR(DEF_MAX_PAST_DAYS),
     .min = 1, .max = 36500, .offset = offsetof(struct ingest_event_limits, max_past_days),
     .desc = "Events whose time is more than this many days before they arrive are rejected."},
    {.key = "SLUICE_EVENT_MAX_FUTURE_S", .type = SL_CFG_INT, .def = STR(DEF_MAX_FUTURE_S),
     .min = 0, .max = 31536000, .offset = offsetof(struct ingest_event_limits, max_future_s),
     .desc = "Events whose time is more than this many seconds after they arrive get the "
             "receive time instead (flagged future_clamped)."},
};
const size_t ingest_event_cfg_n_opts = sizeof(ingest_event_cfg_opts) /
                                       sizeof(ingest_event_cfg_opts[0]);

struct ingest_event_limits ingest_event_limits_default(void)
{
    return (struct ingest_event_limits){
        .max_batch_events = DEF_MAX_BATCH_EVENTS,
        .max_name_bytes = DEF_MAX_NAME_BYTES,
        .max_ident_bytes = DEF_MAX_IDENT_BYTES,
        .max_context_bytes = DEF_MAX_CONTEXT_BYTES,
        .max_url_bytes = DEF_MAX_URL_BYTES,
        .max_properties_bytes = DEF_MAX_PROPERTIES_BYTES,
        .max_properties_depth = DEF_MAX_PROPERTIES_DEPTH,
        .max_message_bytes = DEF_MAX_MESSAGE_BYTES,
        .max_source_bytes = DEF_MAX_SOURCE_BYTES,
        .max_past_days = DEF_MAX_PAST_DAYS,
        .max_future_s = DEF_MAX_FUTURE_S,
    };
}

/* ---- names ------------------------------------------------------------------------ */

static const char *const type_names[] = {
    [INGEST_EVENT_PAGEVIEW] = "pageview",
    [INGEST_EVENT_CLICK] = "click",
    [INGEST_EVENT_SCROLL] = "scroll",
    [INGEST_EVENT_PERFORMANCE] = "performance",
    [INGEST_EVENT_CUSTOM] = "custom",
    [INGEST_EVENT_IDENTIFY] = "identify",
    [INGEST_EVENT_LOG] = "log",
};
#define N_TYPES (sizeof(type_names) / sizeof(type_names[0]))
static_assert(N_TYPES == INGEST_EVENT_N_TYPES, "one name per event type");

const char *ingest_event_type_name(enum ingest_event_type type)
{
    return (size_t)type < N_TYPES ? type_names[type] : "unknown";
}

/* ---- helpers of event*.c ---------------------------------------------------------- */

void ingest_event_quote(char out[INGEST_EVENT_QUOTE_BUF], const char *s, size_t len)
{
    size_t n = sl_utf8_cut(s, len, INGEST_EVENT_QUOTE_MAX);

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        out[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    if (n < len) {
        memcpy(out + n, "...", 4);
    }
    else {
        out[n] = '\0';
    }
}

const char *ingest_event_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

int ingest_event_parse_ip(const char *s, size_t len, char out[INET6_ADDRSTRLEN])
{
    char tmp[INET6_ADDRSTRLEN];
    unsigned char addr[16];

    if (len == 0 || len >= sizeof(tmp)) {
        return SL_EINVAL;
    }
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    if (inet_pton(AF_INET, tmp, addr) == 1) {
        return inet_ntop(AF_INET, addr, out, INET6_ADDRSTRLEN) != NULL ? 0 : SL_EINVAL;
    }
    if (inet_pton(AF_INET6, tmp, addr) == 1) {
        return inet_ntop(AF_INET6, addr, out, INET6_ADDRSTRLEN) != NULL ? 0 : SL_EINVAL;
    }
    return SL_EINVAL;
}

/* ---- one request ------------------------------------------------------------------ */

/* Checks the event at r->index and accepts or rejects it. Fails only for the whole request
 * (SL_EDENIED, SL_ENOMEM, SL_EIO). */
static int process_event(struct ingest_event_run *r, json_t *ev, struct sl_err *err)
{
    struct ingest_event_in in;
    int rc;

    memset(&in, 0, sizeof(in));
    r->n_event_errors = 0;
    rc = ingest_event_fields_check(r, ev, &in, err);
    if (rc != 0) {
        return rc;
    }
    if (r->rc != 0) {
        return sl_err_set(err, r->rc, "out of memory checking event %zu", r->index);
    }
    if (r->n_event_errors > 0) {
        r->out->n_rejected++;
        return 0;
    }
    return ingest_event_norm_accept(r, &in, err);
}

/* Checks the request's shape. On success *events is the array of events, or NULL when the
 * body is a single event. Fails with SL_EINVAL, setting out->http_status. */
static int check_shape(struct ingest_event_run *r, json_t *root, json_t **events,
                       struct sl_err *err)
{
    const char *key;
    json_t *v;
    json_t *sent_at;
    size_t n;

    *events = NULL;
    if (!json_is_object(root)) {
        r->out->http_status = 400;
        return sl_err_set(err, SL_EINVAL, "the body must be a JSON object (one event, or "
                          "{\"events\":[...]}), got %s", ingest_event_kind(root));
    }
    v = json_object_get(root, "events");
    if (v == NULL) {
        return 0;
    }
    json_object_foreach(root, key, v) {
        if (strcmp(key, "events") != 0 && strcmp(key, "sent_at") != 0) {
            char q[INGEST_EVENT_QUOTE_BUF];

            ingest_event_quote(q, key, strlen(key));
            r->out->http_status = 400;
            return sl_err_set(err, SL_EINVAL, "unknown field '%s' in the batch object (it "
                              "holds only events and sent_at)", q);
        }
    }
    sent_at = json_object_get(root, "sent_at");
    if (sent_at != NULL && !json_is_null(sent_at)) {
        if (!json_is_string(sent_at) ||
            sl_timefmt_parse_rfc3339_us(json_string_value(sent_at), json_string_length(sent_at),
                                        &r->sent_at_us, NULL) != 0) {
            char q[INGEST_EVENT_QUOTE_BUF];

            ingest_event_quote(q, json_is_string(sent_at) ? json_string_value(sent_at) : "",
                               json_is_string(sent_at) ? json_string_length(sent_at) : 0);
            r->out->http_status = 400;
            return sl_err_set(err, SL_EINVAL, "sent_at: not an RFC 3339 time: '%s'", q);
        }
        r->has_sent_at = true;
    }
    v = json_object_get(root, "events");
    if (!json_is_array(v)) {
        r->out->http_status = 400;
        return sl_err_set(err, SL_EINVAL, "events must be an array, got %s",
                          ingest_event_kind(v));
    }
    n = json_array_size(v);
    if (n == 0) {
        r->out->http_status = 400;
        return sl_err_set(err, SL_EINVAL, "events is empty (send 1 to %lld events)",
                          (long long)r->lim->max_batch_events);
    }
    if (n > (uint64_t)r->lim->max_batch_events) {
        r->out->http_status = 413;
        return sl_err_set(err, SL_EINVAL, "%zu events in one request; the limit is %lld",
                          n, (long long)r->lim->max_batch_events);
    }
    *events = v;
    return 0;
}

/* Prepares what every event of the request shares: the receive time as text, a usable
 * User-Agent header and the peer address. */
static void take_request(struct ingest_event_run *r)
{
    const char *ua = r->ctx->user_agent;

    sl_timefmt_iso_ms(r->ctx->received_us, r->received_at);
    if (ua != NULL && ua[0] != '\0' && sl_utf8_is_valid(ua, strlen(ua))) {
        r->header_ua = ua;
        r->header_ua_len = sl_utf8_cut(ua, strlen(ua), (size_t)r->lim->max_context_bytes);
    }
    if (r->ctx->client_ip != NULL) {
        r->has_client_ip = ingest_event_parse_ip(r->ctx->client_ip, strlen(r->ctx->client_ip),
                                                 r->client_ip) == 0;
    }
    r->header_hints = r->ctx->client_hints;
}

/*
 * Parses the body (as jansson would, faster: see lib/json.h). Duplicate keys are refused:
 * which of two "timestamp"s was meant is anyone's guess.
 */
static int load_body(const char *body, size_t len, json_t **out, struct sl_err *err)
{
    json_error_t jerr;
    int rc = sl_json_load(body, len, out, &jerr);

    if (rc == SL_EINVAL) {
        return sl_err_set(err, SL_EINVAL, "the body is not valid JSON: %s at line %d, "
                          "column %d", jerr.text, jerr.line, jerr.column);
    }
    if (rc != 0) {
        return sl_err_set(err, SL_ENOMEM, "out of memory parsing the body");
    }
    return 0;
}

int ingest_event_parse_batch(const char *body, size_t len, const struct ingest_event_limits *lim,
                             const struct ingest_event_ctx *ctx, struct ingest_event_batch *out,
                             struct sl_err *err)
{
    struct ingest_event_limits defaults;
    struct ingest_event_run r;
    struct sl_arena arena;
    json_t *root = NULL;
    json_t *events = NULL;
    int rc = 0;

    assert(ctx != NULL && ctx->tenant_id != NULL);
    memset(out, 0, sizeof(*out));
    sl_err_clear(err);
    if (lim == NULL) {
        defaults = ingest_event_limits_default();
        lim = &defaults;
    }
    memset(&r, 0, sizeof(r));
    r.lim = lim;
    r.ctx = ctx;
    r.out = out;
    sl_json_buf_init(&r.scratch, ingest_event_norm_max_bytes(lim, ctx->tenant_id));
    sl_json_buf_init(&r.props, (size_t)lim->max_properties_bytes);
    take_request(&r);

    /* The tree lives in a per-request arena: usually one allocation for its thousands of
     * nodes (jansson takes about 6.5 times the body), freed at once after json_decref,
     * whose frees do nothing then. This also keeps the HTTP threads off malloc's locks.
     * Nothing jansson allocates outlives it: events are written into sl_json_bufs. */
    sl_arena_init(&arena, len < ARENA_FIRST_MAX / 8 ? 8 * len : ARENA_FIRST_MAX);
    sl_arena_use(&arena);
    rc = load_body(body, len, &root, err);
    if (rc != 0) {
        out->http_status = 400;
        goto done;
    }
    rc = check_shape(&r, root, &events, err);
    if (rc != 0) {
        goto done;
    }
    out->n_input = events != NULL ? json_array_size(events) : 1;
    r.max_errors = out->n_input * INGEST_EVENT_MAX_ERRORS_PER_EVENT;
    out->events = sl_calloc(out->n_input, sizeof(*out->events));
    if (out->events == NULL) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory for %zu events", out->n_input);
        goto done;
    }
    for (r.index = 0; r.index < out->n_input; r.index++) {
        rc = process_event(&r, events != NULL ? json_array_get(events, r.index) : root, err);
        if (rc != 0) {
            goto done;
        }
    }
    /* A request that stored something answers 2xx, so no client resends (and duplicates)
     * the accepted events; the body lists the rejected ones. */
    out->http_status = out->n_events > 0 ? 200 : 422;

done:
    if (rc != 0) {
        /* SL_EINVAL keeps the 400 or 413 its check chose. */
        int status = rc == SL_EDENIED ? 403 : rc == SL_ENOMEM ? 503 : rc == SL_EIO ? 500 :
                     out->http_status;

        ingest_event_batch_fini(out);
        out->http_status = status;
    }
    sl_json_buf_fini(&r.props);
    sl_json_buf_fini(&r.scratch);
    json_decref(root);
    sl_arena_use(NULL);
    sl_arena_fini(&arena);
    return rc;
}

void ingest_event_batch_drop(struct ingest_event_batch *batch, const bool *drop)
{
    size_t kept = 0;

    for (size_t i = 0; i < batch->n_events; i++) {
        if (drop[i]) {
            sl_free(batch->events[i].json);
            batch->n_dropped++;
            continue;
        }
        batch->events[kept++] = batch->events[i];
    }
    batch->n_events = kept;
}

void ingest_event_batch_fini(struct ingest_event_batch *batch)
{
    if (batch == NULL) {
        return;
    }
    for (size_t i = 0; i < batch->n_events; i++) {
        sl_free(batch->events[i].json);
    }
    sl_free(batch->events);
    sl_free(batch->errors);
    memset(batch, 0, sizeof(*batch));
}

int ingest_event_batch_response(const struct ingest_event_batch *batch, char **out,
                                size_t *out_len)
{
    struct sl_json_buf b;
    size_t max = 128 + batch->n_errors * (64 + 6 * (INGEST_EVENT_FIELD_MAX +
                                                    INGEST_EVENT_REASON_MAX));

    *out = NULL;
    *out_len = 0;
    sl_json_buf_init(&b, max);
    sl_json_buf_appendf(&b, "{\"accepted\":%zu,\"rejected\":%zu,", batch->n_events,
                        batch->n_rejected);
    if (batch->n_dropped > 0) {
        sl_json_buf_appendf(&b, "\"dropped\":%zu,", batch->n_dropped);
    }
    sl_json_buf_appendf(&b, "\"errors\":[");
    for (size_t i = 0; i < batch->n_errors; i++) {
        const struct ingest_event_error *e = &batch->errors[i];

        sl_json_buf_appendf(&b, "%s{\"index\":%zu,\"field\":", i > 0 ? "," : "", e->index);
        if (e->field[0] == '\0') {
            SL_JSON_BUF_LIT(&b, "null");
        }
        else {
            sl_json_append_str(&b, e->field, strlen(e->field));
        }
        SL_JSON_BUF_LIT(&b, ",\"reason\":");
        sl_json_append_str(&b, e->reason, strlen(e->reason));
        SL_JSON_BUF_LIT(&b, "}");
    }
    SL_JSON_BUF_LIT(&b, "]}");
    return sl_json_buf_take(&b, out, out_len);
}

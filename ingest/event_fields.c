/*
 * Checking the fields of one event (rules in README.md, "Sending events"): its keys are
 * sorted into a struct ingest_event_in that borrows from the parsed body, unknown ones
 * reported with a "did you mean" hint, then each field is checked in a fixed order so one
 * answer lists every problem of the event (up to INGEST_EVENT_MAX_ERRORS_PER_EVENT),
 * deriving what the normalized form needs on the way: type, lowercase id, corrected time,
 * properties as compact JSON, canonical IP address, severity. The request as a whole is
 * event.c's; writing an accepted event is event_norm.c's.
 */
#include "event_int.h"

#include <assert.h>
#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "alloc.h"
#include "hex.h"
#include "hints.h"
#include "json.h"
#include "timefmt.h"
#include "utf8.h"

#define US_PER_S INT64_C(1000000)
#define US_PER_DAY (INT64_C(86400) * US_PER_S)
/* 2000-01-01T00:00:00Z: nothing older is an event time, only a broken clock. */
#define EPOCH_FLOOR_US (INT64_C(946684800) * US_PER_S)

#define TYPE_LIST "pageview, click, scroll, performance, custom, identify, log"

/* ---- names ------------------------------------------------------------------------ */

static const char *const severity_names[] = {"trace", "debug", "info", "warn", "error", "fatal"};
#define N_SEVERITIES (sizeof(severity_names) / sizeof(severity_names[0]))
#define SEVERITY_INFO 2
#define SEVERITY_LIST "trace, debug, info, warn, error, fatal"

static const char *const field_names[INGEST_EVENT_N_FIELDS] = {
    [INGEST_EVENT_F_ID] = "id",
    [INGEST_EVENT_F_TYPE] = "type",
    [INGEST_EVENT_F_TENANT_ID] = "tenant_id",
    [INGEST_EVENT_F_NAME] = "name",
    [INGEST_EVENT_F_SESSION_ID] = "session_id",
    [INGEST_EVENT_F_ANONYMOUS_ID] = "anonymous_id",
    [INGEST_EVENT_F_USER_ID] = "user_id",
    [INGEST_EVENT_F_TIMESTAMP] = "timestamp",
    [INGEST_EVENT_F_SENT_AT] = "sent_at",
    [INGEST_EVENT_F_PROPERTIES] = "properties",
    [INGEST_EVENT_F_CONTEXT] = "context",
    [INGEST_EVENT_F_SEVERITY] = "severity",
    [INGEST_EVENT_F_SOURCE] = "source",
    [INGEST_EVENT_F_MESSAGE] = "message",
};

/* is_url picks the longer limit. */
const struct ingest_event_ctx_def ingest_event_fields_ctx[INGEST_EVENT_N_CTX_FIELDS] = {
    [INGEST_EVENT_C_USER_AGENT] = {"user_agent", false},
    [INGEST_EVENT_C_IP] = {"ip", false},
    [INGEST_EVENT_C_URL] = {"url", true},
    [INGEST_EVENT_C_PATH] = {"path", true},
    [INGEST_EVENT_C_REFERRER] = {"referrer", true},
    [INGEST_EVENT_C_TITLE] = {"title", false},
    [INGEST_EVENT_C_SCREEN] = {"screen", false},
    [INGEST_EVENT_C_VIEWPORT] = {"viewport", false},
    [INGEST_EVENT_C_TIMEZONE] = {"timezone", false},
    [INGEST_EVENT_C_LANGUAGE] = {"language", false},
};

/* Names other SDKs use for our fields, offered as "did you mean" hints. */
struct alias {
    const char *from;
    const char *to;
};

static const struct alias field_aliases[] = {
    {"messageid", "id"}, {"event", "name"}, {"traits", "properties"}, {"ts", "timestamp"},
    {"time", "timestamp"}, {"level", "severity"}, {"msg", "message"}, {"tenant", "tenant_id"},
    {"userid", "user_id"}, {"anonymousid", "anonymous_id"}, {"sessionid", "session_id"},
    {"sentat", "sent_at"},
};

static const struct alias ctx_aliases[] = {
    {"ua", "user_agent"},   {"useragent", "user_agent"}, {"ip_address", "ip"},
    {"locale", "language"}, {"lang", "language"},        {"tz", "timezone"},
};

/* ---- UUIDs ------------------------------------------------------------------------ */

/* Parses the 8-4-4-4-12 form in either case into lowercase out. */
static bool parse_uuid(const char *s, size_t len, char out[INGEST_EVENT_ID_LEN + 1])
{
    if (len != INGEST_EVENT_ID_LEN) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') {
                return false;
            }
            out[i] = '-';
        }
        else if (sl_hex_value(s[i]) < 0) {
            return false;
        }
        else {
            out[i] = (char)tolower((unsigned char)s[i]);
        }
    }
    out[len] = '\0';
    return true;
}

/* ---- did-you-mean ----------------------------------------------------------------- */

#define SUGGEST_KEY_MAX 32

/* Edit distance of a and b, ignoring case; both at most SUGGEST_KEY_MAX bytes. */
static size_t edit_distance(const char *a, size_t la, const char *b, size_t lb)
{
    size_t row[SUGGEST_KEY_MAX + 1];

    for (size_t j = 0; j <= lb; j++) {
        row[j] = j;
    }
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];

        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            size_t best = diag + cost;

            if (up + 1 < best) {
                best = up + 1;
            }
            if (row[j - 1] + 1 < best) {
                best = row[j - 1] + 1;
            }
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The known name an unknown key most likely meant, or NULL: a known alias (case and
 * underscores ignored), else the nearest name within two edits and under half the key. */
static const char *suggest(const char *key, const char *const *names, size_t n_names,
                           const struct alias *aliases, size_t n_aliases)
{
    char folded[SUGGEST_KEY_MAX + 1];
    size_t len = strlen(key);
    size_t n_folded = 0;
    const char *best = NULL;
    size_t best_d = 3;

    if (len > SUGGEST_KEY_MAX) {
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        if (key[i] != '_' && key[i] != '-') {
            folded[n_folded++] = (char)tolower((unsigned char)key[i]);
        }
    }
    folded[n_folded] = '\0';
    for (size_t i = 0; i < n_aliases; i++) {
        if (strcmp(folded, aliases[i].from) == 0) {
            return aliases[i].to;
        }
    }
    for (size_t i = 0; i < n_names; i++) {
        size_t ln = strlen(names[i]);
        size_t d;

        if (ln > SUGGEST_KEY_MAX) {
            continue;
        }
        d = edit_distance(key, len, names[i], ln);
        if (d < best_d && 2 * d < len) {
            best = names[i];
            best_d = d;
        }
    }
    return best;
}

/* ---- checks ----------------------------------------------------------------------- */

static void add_error(struct ingest_event_run *r, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Records an error of the current event. Past the per-event cap it is only counted. An
 * allocation failure is kept in r->rc for the caller to check once per event.
 */
static void add_error(struct ingest_event_run *r, const char *field, const char *fmt, ...)
{
    struct ingest_event_batch *out = r->out;
    struct ingest_event_error *e;
    va_list ap;

    r->n_event_errors++;
    if (r->n_event_errors > INGEST_EVENT_MAX_ERRORS_PER_EVENT || r->rc != 0) {
        return;
    }
    if (out->n_errors == out->_errors_cap) {
        size_t cap = out->_errors_cap == 0 ? 16 : out->_errors_cap * 2;
        struct ingest_event_error *p;

        if (cap > r->max_errors) {
            cap = r->max_errors;
        }
        assert(cap > out->n_errors);
        p = sl_realloc(out->errors, cap * sizeof(*p));
        if (p == NULL) {
            r->rc = SL_ENOMEM;
            return;
        }
        out->errors = p;
        out->_errors_cap = cap;
    }
    e = &out->errors[out->n_errors++];
    e->index = r->index;
    snprintf(e->field, sizeof(e->field), "%s", field);
    sl_utf8_trim(e->field);
    va_start(ap, fmt);
    vsnprintf(e->reason, sizeof(e->reason), fmt, ap);
    va_end(ap);
    sl_utf8_trim(e->reason);
}

/*
 * Checks a given text value: a non-empty string of at most max bytes without control
 * characters. Reports what is wrong under field; returns whether it is good.
 */
static bool check_text(struct ingest_event_run *r, const char *field, const json_t *v,
                       int64_t max)
{
    const char *s;
    size_t len;
    unsigned cp = 0;
    long at;

    if (!json_is_string(v)) {
        add_error(r, field, "must be a string, got %s", ingest_event_kind(v));
        return false;
    }
    s = json_string_value(v);
    len = json_string_length(v);
    if (len == 0) {
        add_error(r, field, "must not be empty (leave it out or send null)");
        return false;
    }
    if (len > (uint64_t)max) {
        add_error(r, field, "longer than %lld bytes", (long long)max);
        return false;
    }
    at = sl_utf8_find_control(s, len, &cp);
    if (at >= 0) {
        add_error(r, field, "contains a control character (U+%04X) at byte %ld", cp, at);
        return false;
    }
    return true;
}

/* Sorts the event's keys into in->v; reports unknown ones. */
static void collect_fields(struct ingest_event_run *r, json_t *ev, struct ingest_event_in *in)
{
    const char *key;
    json_t *v;

    json_object_foreach(ev, key, v) {
        size_t f;

        for (f = 0; f < INGEST_EVENT_N_FIELDS; f++) {
            if (key[0] == field_names[f][0] && strcmp(key, field_names[f]) == 0) {
                break;
            }
        }
        if (f < INGEST_EVENT_N_FIELDS) {
            in->v[f] = json_is_null(v) ? NULL : v;
            continue;
        }
        {
            char q[INGEST_EVENT_QUOTE_BUF];
            const char *hint = suggest(key, field_names, INGEST_EVENT_N_FIELDS, field_aliases,
                                       sizeof(field_aliases) / sizeof(field_aliases[0]));

            ingest_event_quote(q, key, strlen(key));
            if (hint != NULL) {
                add_error(r, q, "unknown field; did you mean '%s'?", hint);
            }
            else {
                add_error(r, q, "unknown field (custom data goes in properties)");
            }
        }
    }
}

static void check_id(struct ingest_event_run *r, struct ingest_event_in *in)
{
    const json_t *v = in->v[INGEST_EVENT_F_ID];
    char q[INGEST_EVENT_QUOTE_BUF];

    if (v == NULL) {
        return;
    }
    if (!json_is_string(v)) {
        add_error(r, "id", "must be a UUID string, got %s", ingest_event_kind(v));
        return;
    }
    if (!parse_uuid(json_string_value(v), json_string_length(v), in->id)) {
        ingest_event_quote(q, json_string_value(v), json_string_length(v));
        add_error(r, "id", "not a UUID: '%s' (use the 8-4-4-4-12 hex form)", q);
        return;
    }
    /* The nil and max UUIDs are placeholders; as ids every such event would collapse into
     * one row of the deduplicating tables. */
    if (strcmp(in->id, "00000000-0000-0000-0000-000000000000") == 0 ||
        strcmp(in->id, "ffffffff-ffff-ffff-ffff-ffffffffffff") == 0) {
        add_error(r, "id", "'%s' is a placeholder, not an event id", in->id);
        return;
    }
    in->has_id = true;
}

static void check_type(struct ingest_event_run *r, struct ingest_event_in *in)
{
    const json_t *v = in->v[INGEST_EVENT_F_TYPE];
    char q[INGEST_EVENT_QUOTE_BUF];

    if (v == NULL) {
        add_error(r, "type", "is required (one of " TYPE_LIST ")");
        return;
    }
    if (!json_is_string(v)) {
        add_error(r, "type", "must be a string, got %s", ingest_event_kind(v));
        return;
    }
    for (size_t t = 0; t < INGEST_EVENT_N_TYPES; t++) {
        const char *name = ingest_event_type_name((enum ingest_event_type)t);

        if (json_string_value(v)[0] == name[0] && strcmp(json_string_value(v), name) == 0) {
            in->type = (enum ingest_event_type)t;
            in->has_type = true;
            return;
        }
    }
    ingest_event_quote(q, json_string_value(v), json_string_length(v));
    add_error(r, "type", "unknown type '%s' (use " TYPE_LIST ")", q);
}

/* Returns SL_EDENIED when the event names another tenant. */
static int check_tenant(struct ingest_event_run *r, const struct ingest_event_in *in,
                        struct sl_err *err)
{
    const json_t *v = in->v[INGEST_EVENT_F_TENANT_ID];
    char q[INGEST_EVENT_QUOTE_BUF];

    if (v == NULL) {
        return 0;
    }
    if (!json_is_string(v)) {
        add_error(r, "tenant_id", "must be a string, got %s", ingest_event_kind(v));
        return 0;
    }
    if (strcmp(json_string_value(v), r->ctx->tenant_id) != 0) {
        ingest_event_quote(q, json_string_value(v), json_string_length(v));
        return sl_err_set(err, SL_EDENIED, "event %zu: tenant_id '%s' is not the API key's "
                          "tenant", r->index, q);
    }
    return 0;
}

static void check_names(struct ingest_event_run *r, const struct ingest_event_in *in)
{
    const struct ingest_event_limits *lim = r->lim;

    if (in->v[INGEST_EVENT_F_NAME] != NULL) {
        check_text(r, "name", in->v[INGEST_EVENT_F_NAME], lim->max_name_bytes);
    }
    else if (in->has_type && in->type == INGEST_EVENT_CUSTOM) {
        add_error(r, "name", "is required for custom events");
    }
    for (enum ingest_event_field f = INGEST_EVENT_F_SESSION_ID; f <= INGEST_EVENT_F_USER_ID;
         f++) {
        if (in->v[f] != NULL) {
            check_text(r, field_names[f], in->v[f], lim->max_ident_bytes);
        }
    }
    if (in->v[INGEST_EVENT_F_USER_ID] == NULL && in->has_type &&
        in->type == INGEST_EVENT_IDENTIFY) {
        add_error(r, "user_id", "is required for identify events");
    }
}

/* Parses an optional time field; reports a bad one. Returns whether *us was set. */
static bool get_time(struct ingest_event_run *r, const char *field, const json_t *v,
                     int64_t *us)
{
    char q[INGEST_EVENT_QUOTE_BUF];
    bool no_zone;

    if (v == NULL) {
        return false;
    }
    if (!json_is_string(v)) {
        add_error(r, field, "not an RFC 3339 time: got %s (send a string like "
                  "2026-11-24T10:00:00.123Z)", ingest_event_kind(v));
        return false;
    }
    if (sl_timefmt_parse_rfc3339_us(json_string_value(v), json_string_length(v), us,
                                    &no_zone) != 0) {
        ingest_event_quote(q, json_string_value(v), json_string_length(v));
        add_error(r, field, "not an RFC 3339 time: '%s'%s", q,
                  no_zone ? " (add Z or an offset like +02:00)" : "");
        return false;
    }
    return true;
}

/*
 * The event time: the timestamp given, moved by the client's clock error (received_at -
 * sent_at) when a sent_at came with it, or the receive time. Too far ahead is clamped to
 * the receive time; too far back is an error.
 */
static void check_time(struct ingest_event_run *r, struct ingest_event_in *in)
{
    const struct ingest_event_limits *lim = r->lim;
    int64_t received_us = r->ctx->received_us;
    int64_t ts_us = received_us;
    int64_t sent_us = r->sent_at_us;
    bool has_sent = r->has_sent_at;
    bool has_ts;

    if (in->v[INGEST_EVENT_F_SENT_AT] != NULL) {
        has_sent = get_time(r, "sent_at", in->v[INGEST_EVENT_F_SENT_AT], &sent_us);
    }
    has_ts = get_time(r, "timestamp", in->v[INGEST_EVENT_F_TIMESTAMP], &ts_us);
    if (!has_ts) {
        in->ts_us = received_us;
        return;
    }
    if (has_sent && sent_us != received_us) {
        ts_us += received_us - sent_us;
        in->flags |= INGEST_EVENT_FLAG_SKEW_CORRECTED;
    }
    if (ts_us > received_us + lim->max_future_s * US_PER_S) {
        ts_us = received_us;
        in->flags |= INGEST_EVENT_FLAG_FUTURE_CLAMPED;
    }
    else if (ts_us < EPOCH_FLOOR_US || ts_us < received_us - lim->max_past_days * US_PER_DAY) {
        const json_t *v = in->v[INGEST_EVENT_F_TIMESTAMP];
        const char *after = in->flags & INGEST_EVENT_FLAG_SKEW_CORRECTED ?
                            " after the sent_at correction" : "";
        char q[INGEST_EVENT_QUOTE_BUF];

        ingest_event_quote(q, json_string_value(v), json_string_length(v));
        if (ts_us < EPOCH_FLOOR_US) {
            add_error(r, "timestamp", "'%s' is before 2000-01-01%s", q, after);
        }
        else {
            add_error(r, "timestamp", "'%s' is more than %lld days before it was received%s",
                      q, (long long)lim->max_past_days, after);
        }
    }
    in->ts_us = ts_us;
}

/* Checks properties by writing them, compact, into r->props: one pass finds too deep
 * nesting and too many bytes, and leaves the text event_norm.c copies. */
static void check_properties(struct ingest_event_run *r, const struct ingest_event_in *in)
{
    const json_t *v = in->v[INGEST_EVENT_F_PROPERTIES];
    struct sl_json_buf *b = &r->props;

    sl_json_buf_reset(b);
    if (v == NULL) {
        SL_JSON_BUF_LIT(b, "{}");
        return;
    }
    if (!json_is_object(v)) {
        add_error(r, "properties", "must be an object, got %s", ingest_event_kind(v));
        return;
    }
    if (sl_json_append_value(b, v, 1, r->lim->max_properties_depth) != 0) {
        add_error(r, "properties", "nested deeper than %lld levels",
                  (long long)r->lim->max_properties_depth);
    }
    else if (b->is_too_big) {
        add_error(r, "properties", "larger than %lld bytes after encoding",
                  (long long)r->lim->max_properties_bytes);
    }
    else if (b->is_failed) {
        r->rc = SL_ENOMEM;
    }
}

/*
 * context.client_hints: User-Agent Client Hints as an object of header names (Sec-CH-UA,
 * Sec-CH-UA-Platform, ...) or of navigator.userAgentData's names (brands, platform,
 * platformVersion, mobile, model, fullVersionList). Checked with the enrichment library's
 * parser, so what the loader later reads is known to parse; at most max_context_bytes
 * written. null or {} is absent.
 */
static void check_client_hints(struct ingest_event_run *r, struct ingest_event_in *in,
                               json_t *v)
{
    struct enrich_hints hints;
    struct sl_err err;
    size_t size;

    if (json_is_null(v) || (json_is_object(v) && json_object_size(v) == 0)) {
        return;
    }
    if (!json_is_object(v)) {
        add_error(r, "context.client_hints", "must be an object, got %s", ingest_event_kind(v));
        return;
    }
    size = json_dumpb(v, NULL, 0, JSON_COMPACT);
    if (size > (size_t)r->lim->max_context_bytes) {
        add_error(r, "context.client_hints", "larger than %lld bytes",
                  (long long)r->lim->max_context_bytes);
        return;
    }
    /* Strings and booleans, or lists of {brand, version} objects of strings: nothing
     * deeper reaches the normalized event. */
    {
        const char *key;
        json_t *m;

        json_object_foreach(v, key, m) {
            bool is_ok = json_is_string(m) || json_is_boolean(m);

            if (json_is_array(m)) {
                size_t i;
                json_t *item;

                is_ok = true;
                json_array_foreach(m, i, item) {
                    const char *k2;
                    json_t *s2;

                    if (!json_is_object(item)) {
                        is_ok = false;
                        break;
                    }
                    json_object_foreach(item, k2, s2) {
                        is_ok = is_ok && json_is_string(s2);
                    }
                }
            }
            if (!is_ok) {
                char q[INGEST_EVENT_QUOTE_BUF];

                ingest_event_quote(q, key, strlen(key));
                add_error(r, "context.client_hints", "'%s' must be a string, a boolean or a "
                          "list of {\"brand\", \"version\"} objects", q);
                return;
            }
        }
    }
    enrich_hints_init(&hints);
    sl_err_clear(&err);
    if (enrich_hints_from_json(&hints, v, &err) != 0) {
        add_error(r, "context.client_hints", "%s", err.msg);
        return;
    }
    in->ctx_hints = v;
}

static void check_context(struct ingest_event_run *r, struct ingest_event_in *in)
{
    const json_t *ctx = in->v[INGEST_EVENT_F_CONTEXT];
    const char *key;
    json_t *v;

    if (ctx == NULL) {
        return;
    }
    if (!json_is_object(ctx)) {
        add_error(r, "context", "must be an object, got %s", ingest_event_kind(ctx));
        return;
    }
    json_object_foreach((json_t *)ctx, key, v) {
        char field[INGEST_EVENT_FIELD_MAX];
        char q[INGEST_EVENT_QUOTE_BUF];
        size_t c;

        if (strcmp(key, "client_hints") == 0) {
            check_client_hints(r, in, v);
            continue;
        }
        for (c = 0; c < INGEST_EVENT_N_CTX_FIELDS; c++) {
            if (key[0] == ingest_event_fields_ctx[c].name[0] &&
                strcmp(key, ingest_event_fields_ctx[c].name) == 0) {
                break;
            }
        }
        if (c == INGEST_EVENT_N_CTX_FIELDS) {
            const char *names[INGEST_EVENT_N_CTX_FIELDS];
            const char *hint;

            for (size_t i = 0; i < INGEST_EVENT_N_CTX_FIELDS; i++) {
                names[i] = ingest_event_fields_ctx[i].name;
            }
            hint = suggest(key, names, INGEST_EVENT_N_CTX_FIELDS, ctx_aliases,
                           sizeof(ctx_aliases) / sizeof(ctx_aliases[0]));
            ingest_event_quote(q, key, strlen(key));
            snprintf(field, sizeof(field), "context.%s", q);
            if (hint != NULL) {
                add_error(r, field, "unknown field; did you mean '%s'?", hint);
            }
            else {
                add_error(r, field, "unknown field (context has user_agent, ip, url, path, "
                          "referrer, title, screen, viewport, timezone, language, "
                          "client_hints)");
            }
            continue;
        }
        snprintf(field, sizeof(field), "context.%s", ingest_event_fields_ctx[c].name);
        /* Browsers report "none" as "" (document.referrer, document.title): empty is
         * absent, and ip and user_agent then come from the request. */
        if (json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0)) {
            continue;
        }
        if (!check_text(r, field, v,
                        ingest_event_fields_ctx[c].is_url ? r->lim->max_url_bytes
                                                          : r->lim->max_context_bytes)) {
            continue;
        }
        if (c == INGEST_EVENT_C_IP) {
            if (ingest_event_parse_ip(json_string_value(v), json_string_length(v), in->ip) != 0) {
                ingest_event_quote(q, json_string_value(v), json_string_length(v));
                add_error(r, field, "not an IPv4 or IPv6 address: '%s'", q);
                continue;
            }
            in->has_ip = true;
        }
        in->ctx_v[c] = v;
    }
}

static void check_log(struct ingest_event_run *r, struct ingest_event_in *in)
{
    const struct ingest_event_limits *lim = r->lim;
    const json_t *sev = in->v[INGEST_EVENT_F_SEVERITY];
    const json_t *msg = in->v[INGEST_EVENT_F_MESSAGE];
    char q[INGEST_EVENT_QUOTE_BUF];

    in->severity = severity_names[SEVERITY_INFO];
    if (!in->has_type) {
        return;
    }
    if (in->type != INGEST_EVENT_LOG) {
        for (enum ingest_event_field f = INGEST_EVENT_F_SEVERITY; f <= INGEST_EVENT_F_MESSAGE;
             f++) {
            if (in->v[f] != NULL) {
                add_error(r, field_names[f], "only allowed on log events");
            }
        }
        return;
    }
    if (sev != NULL) {
        size_t s = N_SEVERITIES;

        if (!json_is_string(sev)) {
            add_error(r, "severity", "must be a string, got %s", ingest_event_kind(sev));
        }
        else {
            /* Logging libraries print levels in capitals; accept any case. */
            for (s = 0; s < N_SEVERITIES; s++) {
                if (strcasecmp(json_string_value(sev), severity_names[s]) == 0) {
                    in->severity = severity_names[s];
                    break;
                }
            }
            if (s == N_SEVERITIES) {
                ingest_event_quote(q, json_string_value(sev), json_string_length(sev));
                add_error(r, "severity", "unknown severity '%s' (use " SEVERITY_LIST ")", q);
            }
        }
    }
    if (in->v[INGEST_EVENT_F_SOURCE] != NULL) {
        check_text(r, "source", in->v[INGEST_EVENT_F_SOURCE], lim->max_source_bytes);
    }
    if (msg == NULL) {
        add_error(r, "message", "is required for log events");
    }
    else if (!json_is_string(msg)) {
        add_error(r, "message", "must be a string, got %s", ingest_event_kind(msg));
    }
    else if (json_string_length(msg) > (uint64_t)lim->max_message_bytes) {
        add_error(r, "message", "longer than %lld bytes", (long long)lim->max_message_bytes);
    }
}

int ingest_event_fields_check(struct ingest_event_run *r, json_t *ev, struct ingest_event_in *in,
                              struct sl_err *err)
{
    int rc;

    if (!json_is_object(ev)) {
        add_error(r, "", "an event must be a JSON object, got %s", ingest_event_kind(ev));
        return 0;
    }
    collect_fields(r, ev, in);
    rc = check_tenant(r, in, err);
    if (rc != 0) {
        return rc;
    }
    check_id(r, in);
    check_type(r, in);
    check_names(r, in);
    check_time(r, in);
    check_properties(r, in);
    check_context(r, in);
    check_log(r, in);
    return 0;
}

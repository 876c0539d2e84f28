/*
 * One normalized event to one RowBinary row of the events table. The message is parsed once
 * with jansson and checked field by field, so a message that can never load is refused with
 * the field and the reason before a byte is written; the row is then encoded into a scratch
 * buffer and appended to the batch in one piece, so the batch is never left half-written.
 *
 * properties are stored as the message's own text for that member, found by a small scanner
 * over the (already validated) input: re-printing them with jansson would turn 0.1 into
 * 0.10000000000000001, which the edge took care to avoid.
 */
#include "rows.h"

#include <assert.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "hex.h"
#include "json.h"
#include "timefmt.h"

/* The INSERT's columns, in the order encode_row writes them. */
#define COLUMNS                                                                            \
    "id, tenant_id, type, name, ts, ts_ms, received_at, session_id, anonymous_id, user_id, " \
    "properties, user_agent, ip, url, path, referrer, title, screen, viewport, timezone, "   \
    "language, client_hints, severity, source, message, flags, country_code, country, "      \
    "region, city, postal, latitude, longitude, accuracy_radius, geo_timezone, asn, as_org, " \
    "browser, browser_version, os, os_version, device, device_brand, device_model, is_bot, " \
    "bot_reason, enrichment_version, version"

/* The only schema_version of the normalized event this file reads. */
#define SCHEMA_VERSION 1

/* 2105-12-31T23:59:59Z: the last second 18.16's DateTime functions handle (its date tables
 * end in 2105; later values come back as garbage). */
#define TS_MAX_S INT64_C(4291747199)

/* How much of a bad value an error message quotes. */
#define QUOTE_MAX 48

/* A row is the message's strings plus fixed overhead; this bounds the scratch buffer. */
#define ROW_OVERHEAD_BYTES 4096

#define MS_PER_S 1000
#define S_PER_DAY INT64_C(86400)

/* A borrowed piece of the parsed message. */
struct text {
    const char *s;
    size_t len;
};

/* Context fields, in column order. */
enum ctx_field {
    C_USER_AGENT,
    C_IP,
    C_URL,
    C_PATH,
    C_REFERRER,
    C_TITLE,
    C_SCREEN,
    C_VIEWPORT,
    C_TIMEZONE,
    C_LANGUAGE,
    N_CTX_FIELDS,
};

/* Each field's key and its path in error messages. */
static const struct {
    const char *key;
    const char *path;
} ctx_fields[N_CTX_FIELDS] = {
    [C_USER_AGENT] = {"user_agent", "context.user_agent"},
    [C_IP] = {"ip", "context.ip"},
    [C_URL] = {"url", "context.url"},
    [C_PATH] = {"path", "context.path"},
    [C_REFERRER] = {"referrer", "context.referrer"},
    [C_TITLE] = {"title", "context.title"},
    [C_SCREEN] = {"screen", "context.screen"},
    [C_VIEWPORT] = {"viewport", "context.viewport"},
    [C_TIMEZONE] = {"timezone", "context.timezone"},
    [C_LANGUAGE] = {"language", "context.language"},
};

/* Everything a row needs, borrowed from the parsed message (or from props_dump). */
struct event_row {
    uint8_t id[16];
    struct text tenant_id;
    struct text type;
    struct text name;
    int64_t ts_ms;
    int64_t received_ms;
    struct text session_id;
    struct text anonymous_id;
    struct text user_id;
    struct text properties;
    struct text ctx[N_CTX_FIELDS];
    const json_t *client_hints; /* context.client_hints (an object), or NULL */
    char *hints_text;           /* its compact JSON (owned), or NULL */
    struct text severity;
    struct text source;
    struct text message;
    const json_t *flags; /* an array of strings, or NULL */
};

const char *ingest_rows_columns(void)
{
    return COLUMNS;
}

int ingest_rows_insert_sql(const char *database, char *out, size_t cap)
{
    struct sl_ch_buf b;
    int rc;

    if (cap > 0) {
        out[0] = '\0';
    }
    if (database == NULL || database[0] == '\0') {
        return SL_EINVAL;
    }
    sl_ch_buf_init(&b, cap);
    rc = sl_ch_buf_append_str(&b, "INSERT INTO ");
    if (rc == 0) {
        rc = sl_ch_quote_ident(&b, database, strlen(database));
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(&b, ".events (" COLUMNS ") FORMAT RowBinary");
    }
    if (rc == 0 && b.len < cap) {
        memcpy(out, b.data, b.len + 1);
    }
    else {
        rc = SL_EINVAL;
    }
    sl_ch_buf_fini(&b);
    return rc;
}

/* ---- checking the message ------------------------------------------------------------ */

static const char *kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "a value";
}

/* Writes s as printable ASCII for an error message, cut to QUOTE_MAX bytes. */
static void quote(char out[QUOTE_MAX * 4 + 4], const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;

    for (size_t i = 0; i < len && i < QUOTE_MAX; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
            out[n++] = (char)c;
        }
        else {
            out[n++] = '\\';
            out[n++] = 'x';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    if (len > QUOTE_MAX) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

/*
 * Reads obj[key] as text. A missing or null member is "" unless is_required; then it, and an
 * empty string, is refused. path names the field in errors ("context.url").
 */
static int get_text(const json_t *obj, const char *key, const char *path, bool is_required,
                    struct text *out, struct sl_err *err)
{
    const json_t *v = json_object_get(obj, key);

    out->s = "";
    out->len = 0;
    if (v == NULL || json_is_null(v)) {
        if (is_required) {
            return sl_err_set(err, SL_EINVAL, "%s: missing", path);
        }
        return 0;
    }
    if (!json_is_string(v)) {
        return sl_err_set(err, SL_EINVAL, "%s: must be a string%s, got %s", path,
                          is_required ? "" : " or null", kind(v));
    }
    out->s = json_string_value(v);
    out->len = json_string_length(v);
    if (is_required && out->len == 0) {
        return sl_err_set(err, SL_EINVAL, "%s: empty", path);
    }
    return 0;
}

/* Parses a UUID in the 8-4-4-4-12 form (either case) into its 16 bytes in text order. */
static bool parse_uuid(const char *s, size_t len, uint8_t out[16])
{
    size_t n = 0;

    if (len != 36) {
        return false;
    }
    for (size_t i = 0; i < 36;) {
        int hi;
        int lo;

        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') {
                return false;
            }
            i++;
            continue;
        }
        hi = sl_hex_value(s[i]);
        lo = sl_hex_value(s[i + 1]);
        if (hi < 0 || lo < 0) {
            return false;
        }
        out[n++] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    return n == 16;
}

/* RFC 3339 into microseconds; as RFC 3339 allows, a space may stand for the T. */
static int parse_time(const char *s, size_t len, int64_t *out_us)
{
    char buf[64];

    if (len > 10 && len < sizeof(buf) && s[10] == ' ') {
        memcpy(buf, s, len);
        buf[10] = 'T';
        return sl_timefmt_parse_rfc3339_us(buf, len, out_us, NULL);
    }
    return sl_timefmt_parse_rfc3339_us(s, len, out_us, NULL);
}

/* Reads a required (ts) or optional (received_at) time within the DateTime range. */
static int get_time(const json_t *obj, const char *key, bool is_required, int64_t *out_ms,
                    struct sl_err *err)
{
    struct text t;
    char q[QUOTE_MAX * 4 + 4];
    int64_t us = 0;
    int rc = get_text(obj, key, key, is_required, &t, err);

    *out_ms = 0;
    if (rc != 0 || t.len == 0) {
        return rc;
    }
    if (parse_time(t.s, t.len, &us) != 0) {
        quote(q, t.s, t.len);
        return sl_err_set(err, SL_EINVAL, "%s: not an RFC 3339 time: '%s'", key, q);
    }
    /* Floor to milliseconds (times before 1970 are refused just below). */
    *out_ms = us >= 0 ? us / 1000 : -((-us + 999) / 1000);
    if (*out_ms < 0 || *out_ms > TS_MAX_S * MS_PER_S + 999) {
        quote(q, t.s, t.len);
        return sl_err_set(err, SL_EINVAL, "%s: '%s' is outside 1970-01-01..2105-12-31, the "
                          "range of a ClickHouse DateTime", key, q);
    }
    return 0;
}

/* ---- finding properties' text in the message ---------------------------------------- */

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
        p++;
    }
    return p;
}

/* p is at a '"'; returns the byte after the closing quote, or end. */
static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\') {
            p++;
        }
        else if (*p == '"') {
            return p + 1;
        }
    }
    return end;
}

/* Skips one JSON value starting at p (valid JSON assumed); returns the byte after it. */
static const char *skip_value(const char *p, const char *end)
{
    size_t depth = 0;

    if (p < end && *p == '"') {
        return skip_string(p, end);
    }
    if (p < end && (*p == '{' || *p == '[')) {
        while (p < end) {
            if (*p == '"') {
                p = skip_string(p, end);
                continue;
            }
            if (*p == '{' || *p == '[') {
                depth++;
            }
            else if (*p == '}' || *p == ']') {
                if (--depth == 0) {
                    return p + 1;
                }
            }
            p++;
        }
        return end;
    }
    while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' &&
           *p != '\n' && *p != '\r') {
        p++;
    }
    return p;
}

/*
 * Finds the text of the top-level member named key (spelled without escapes) in a message
 * jansson already accepted as an object without duplicate keys. Returns false when it is
 * not there as plain text.
 */
static bool find_member(const char *json, size_t len, const char *key, struct text *out)
{
    const char *p = json;
    const char *end = json + len;
    size_t key_len = strlen(key);

    p = skip_ws(p, end);
    if (p == end || *p != '{') {
        return false;
    }
    p++;
    for (;;) {
        const char *name;
        const char *name_end;
        const char *value;

        p = skip_ws(p, end);
        if (p == end || *p != '"') {
            return false;
        }
        name = p + 1;
        p = skip_string(p, end);
        name_end = p - 1;
        p = skip_ws(p, end);
        if (p == end || *p != ':') {
            return false;
        }
        value = skip_ws(p + 1, end);
        p = skip_value(value, end);
        if ((size_t)(name_end - name) == key_len && memcmp(name, key, key_len) == 0) {
            out->s = value;
            out->len = (size_t)(p - value);
            return true;
        }
        p = skip_ws(p, end);
        if (p == end || *p != ',') {
            return false;
        }
        p++;
    }
}

/* ---- reading the message into a row -------------------------------------------------- */

/* Parses the message (as jansson would, faster: see lib/json.h); duplicate keys are refused. */
static int load(const char *json, size_t len, json_t **out, struct sl_err *err)
{
    json_error_t jerr;
    int rc = sl_json_load(json, len, out, &jerr);

    if (rc == SL_EINVAL) {
        return sl_err_set(err, SL_EINVAL, "not JSON: %s at line %d, column %d", jerr.text,
                          jerr.line, jerr.column);
    }
    if (rc != 0) {
        return sl_err_set(err, SL_ENOMEM, "out of memory parsing the event");
    }
    return 0;
}

static int read_ids(const json_t *root, struct event_row *row, struct sl_err *err)
{
    const json_t *sv = json_object_get(root, "schema_version");
    struct text id;
    char q[QUOTE_MAX * 4 + 4];
    int rc;

    if (sv != NULL && !json_is_null(sv)) {
        if (!json_is_integer(sv)) {
            return sl_err_set(err, SL_EINVAL, "schema_version: must be an integer, got %s",
                              kind(sv));
        }
        if (json_integer_value(sv) != SCHEMA_VERSION) {
            return sl_err_set(err, SL_EINVAL, "schema_version: %lld is not supported (this "
                              "loader reads %d)", (long long)json_integer_value(sv),
                              SCHEMA_VERSION);
        }
    }
    rc = get_text(root, "id", "id", true, &id, err);
    if (rc != 0) {
        return rc;
    }
    if (!parse_uuid(id.s, id.len, row->id)) {
        quote(q, id.s, id.len);
        return sl_err_set(err, SL_EINVAL, "id: not a UUID (8-4-4-4-12 hex digits): '%s'", q);
    }
    rc = get_text(root, "tenant_id", "tenant_id", true, &row->tenant_id, err);
    if (rc == 0) {
        rc = get_text(root, "type", "type", true, &row->type, err);
    }
    if (rc == 0) {
        rc = get_time(root, "ts", true, &row->ts_ms, err);
    }
    if (rc == 0) {
        rc = get_time(root, "received_at", false, &row->received_ms, err);
    }
    return rc;
}

static int read_texts(const json_t *root, struct event_row *row, struct sl_err *err)
{
    const struct {
        const char *key;
        struct text *out;
    } fields[] = {
        {"name", &row->name},
        {"session_id", &row->session_id},
        {"anonymous_id", &row->anonymous_id},
        {"user_id", &row->user_id},
        {"severity", &row->severity},
        {"source", &row->source},
        {"message", &row->message},
    };
    const json_t *ctx = json_object_get(root, "context");
    const json_t *flags = json_object_get(root, "flags");
    int rc;

    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        rc = get_text(root, fields[i].key, fields[i].key, false, fields[i].out, err);
        if (rc != 0) {
            return rc;
        }
    }
    if (ctx != NULL && !json_is_null(ctx) && !json_is_object(ctx)) {
        return sl_err_set(err, SL_EINVAL, "context: must be an object or null, got %s",
                          kind(ctx));
    }
    for (size_t c = 0; c < N_CTX_FIELDS; c++) {
        rc = get_text(json_is_object(ctx) ? ctx : NULL, ctx_fields[c].key, ctx_fields[c].path,
                      false, &row->ctx[c], err);
        if (rc != 0) {
            return rc;
        }
    }
    row->client_hints = json_is_object(ctx) ? json_object_get(ctx, "client_hints") : NULL;
    if (row->client_hints != NULL && json_is_null(row->client_hints)) {
        row->client_hints = NULL;
    }
    if (row->client_hints != NULL && !json_is_object(row->client_hints)) {
        return sl_err_set(err, SL_EINVAL, "context.client_hints: must be an object or null, "
                          "got %s", kind(row->client_hints));
    }
    if (row->client_hints != NULL) {
        row->hints_text = json_dumps(row->client_hints, JSON_COMPACT);
        if (row->hints_text == NULL) {
            return sl_err_set(err, SL_ENOMEM, "out of memory reading context.client_hints");
        }
    }
    row->flags = NULL;
    if (flags != NULL && !json_is_null(flags)) {
        size_t i;
        const json_t *f;

        if (!json_is_array(flags)) {
            return sl_err_set(err, SL_EINVAL, "flags: must be an array of strings, got %s",
                              kind(flags));
        }
        json_array_foreach(flags, i, f) {
            if (!json_is_string(f)) {
                return sl_err_set(err, SL_EINVAL, "flags[%zu]: must be a string, got %s", i,
                                  kind(f));
            }
        }
        row->flags = flags;
    }
    return 0;
}

/*
 * Finds properties: "{}" when absent or null, else the member's own text. Only when that
 * text cannot be found as written (a key spelled with escapes, which the edge never writes)
 * is the object printed by jansson into *dump (free with free_dump).
 */
static int read_properties(const json_t *root, const char *json, size_t len,
                           struct event_row *row, char **dump, struct sl_err *err)
{
    const json_t *props = json_object_get(root, "properties");

    *dump = NULL;
    if (props == NULL || json_is_null(props)) {
        row->properties.s = "{}";
        row->properties.len = 2;
        return 0;
    }
    if (!json_is_object(props)) {
        return sl_err_set(err, SL_EINVAL, "properties: must be an object or null, got %s",
                          kind(props));
    }
    if (find_member(json, len, "properties", &row->properties) &&
        row->properties.len >= 2 && row->properties.s[0] == '{') {
        return 0;
    }
    *dump = json_dumps(props, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (*dump == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory printing properties");
    }
    row->properties.s = *dump;
    row->properties.len = strlen(*dump);
    return 0;
}

/* Frees what json_dumps returned, with jansson's own free (it may be sl_free). */
static void free_dump(char *dump)
{
    json_malloc_t malloc_fn;
    json_free_t free_fn;

    if (dump != NULL) {
        json_get_alloc_funcs(&malloc_fn, &free_fn);
        free_fn(dump);
    }
}

/* ---- writing the row ----------------------------------------------------------------- */

static int put_text(struct sl_ch_buf *b, const struct text *t)
{
    return sl_ch_rb_string(b, t->s, t->len);
}

/* Writes the row in COLUMNS order. */
static int encode_row(struct sl_ch_buf *b, const struct event_row *row,
                      const struct enrich_result *er, uint64_t version)
{
    int rc = sl_ch_rb_uuid(b, row->id);

    rc = rc != 0 ? rc : put_text(b, &row->tenant_id);
    rc = rc != 0 ? rc : put_text(b, &row->type);
    rc = rc != 0 ? rc : put_text(b, &row->name);
    rc = rc != 0 ? rc : sl_ch_rb_datetime(b, (uint32_t)(row->ts_ms / MS_PER_S));
    rc = rc != 0 ? rc : sl_ch_rb_u16(b, (uint16_t)(row->ts_ms % MS_PER_S));
    rc = rc != 0 ? rc : sl_ch_rb_datetime(b, (uint32_t)(row->received_ms / MS_PER_S));
    rc = rc != 0 ? rc : put_text(b, &row->session_id);
    rc = rc != 0 ? rc : put_text(b, &row->anonymous_id);
    rc = rc != 0 ? rc : put_text(b, &row->user_id);
    rc = rc != 0 ? rc : put_text(b, &row->properties);
    for (size_t c = 0; c < N_CTX_FIELDS; c++) {
        rc = rc != 0 ? rc : put_text(b, &row->ctx[c]);
    }
    rc = rc != 0 ? rc
                 : sl_ch_rb_string(b, row->hints_text != NULL ? row->hints_text : "",
                                   row->hints_text != NULL ? strlen(row->hints_text) : 0);
    rc = rc != 0 ? rc : put_text(b, &row->severity);
    rc = rc != 0 ? rc : put_text(b, &row->source);
    rc = rc != 0 ? rc : put_text(b, &row->message);
    rc = rc != 0 ? rc : sl_ch_rb_array_len(b, row->flags != NULL ? json_array_size(row->flags) : 0);
    if (row->flags != NULL) {
        for (size_t i = 0; i < json_array_size(row->flags); i++) {
            const json_t *f = json_array_get(row->flags, i);

            rc = rc != 0 ? rc : sl_ch_rb_string(b, json_string_value(f), json_string_length(f));
        }
    }
    rc = rc != 0 ? rc : enrich_result_put_rowbinary(b, er);
    rc = rc != 0 ? rc : sl_ch_rb_u64(b, version);
    return rc;
}

int ingest_rows_append(struct sl_ch_buf *buf, const char *json, size_t len, int64_t version,
                       struct sl_err *err)
{
    return ingest_rows_append_enriched(buf, json, len, version, NULL, NULL, err);
}

int ingest_rows_append_enriched(struct sl_ch_buf *buf, const char *json, size_t len,
                                int64_t version, ingest_rows_enrich_cb enrich, void *user,
                                struct sl_err *err)
{
    struct enrich_result er;
    bool has_er = false;
    struct event_row row;
    struct sl_ch_buf scratch;
    json_t *root = NULL;
    char *dump = NULL;
    int rc;

    assert(version >= 0);
    sl_err_clear(err);
    memset(&row, 0, sizeof(row));
    sl_ch_buf_init(&scratch, 0); /* sized once the row's strings are known */
    rc = load(json, len, &root, err);
    if (rc == 0 && !json_is_object(root)) {
        rc = sl_err_set(err, SL_EINVAL, "not a JSON object (got %s)", kind(root));
    }
    if (rc == 0) {
        rc = read_ids(root, &row, err);
    }
    if (rc == 0) {
        rc = read_texts(root, &row, err);
    }
    if (rc == 0) {
        rc = read_properties(root, json, len, &row, &dump, err);
    }
    if (rc == 0 && enrich != NULL) {
        /* The strings came from jansson (or are ""), so they are NUL-terminated. */
        has_er = enrich(user, row.tenant_id.s, row.ctx[C_IP].s, row.ctx[C_USER_AGENT].s,
                        row.client_hints, &er);
    }
    if (rc == 0) {
        /* Every string of the row is in the message, most of them shorter than written;
         * enrichment adds at most sizeof(er) bytes of text. */
        sl_ch_buf_init(&scratch, len + row.properties.len + ROW_OVERHEAD_BYTES +
                                     (has_er ? sizeof(er) : 0));
        rc = encode_row(&scratch, &row, has_er ? &er : NULL, (uint64_t)version);
        if (rc != 0) {
            /* The scratch buffer is sized from the message; only memory can run out. */
            rc = sl_err_set(err, SL_ENOMEM, "out of memory encoding the row");
        }
    }
    if (rc == 0) {
        rc = sl_ch_buf_append(buf, scratch.data, scratch.len);
        if (rc == SL_EINVAL && buf->len == 0) {
            rc = sl_err_set(err, SL_EINVAL, "the row (%zu bytes) is larger than the batch "
                            "buffer may hold", scratch.len);
        }
        else if (rc == SL_EINVAL) {
            rc = sl_err_set(err, SL_EBUSY, "the batch buffer is full (%zu bytes); insert it "
                            "and append this event again", buf->len);
        }
        else if (rc != 0) {
            rc = sl_err_set(err, SL_ENOMEM, "out of memory appending the row");
        }
    }
    free_dump(dump);
    sl_free(row.hints_text);
    json_decref(root);
    sl_ch_buf_fini(&scratch);
    return rc;
}

/*
 * Parsing, validation and normalization of POST /ingest bodies (see event.h, and
 * README.md, "Sending events", for the rules as users read them).
 *
 * The body is parsed once with jansson. Each event's fields are collected into a struct
 * event_in that borrows from the parsed tree, then checked field by field so that one
 * answer lists every problem of an event (up to INGEST_EVENT_MAX_ERRORS_PER_EVENT). An
 * accepted event is written as compact JSON by a small writer into a scratch buffer (its
 * properties were written while checking their size and depth) and copied into one
 * allocation that also holds its session_id. The helpers for RFC 3339 times, UUIDs, IP
 * addresses and UTF-8 live here because nothing else needs them yet.
 */
#include "event.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "alloc.h"

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

#define STR_(x) #x
#define STR(x) STR_(x)

#define US_PER_S INT64_C(1000000)
#define US_PER_DAY (INT64_C(86400) * US_PER_S)
/* 2000-01-01T00:00:00Z: nothing older is an event time, only a broken clock. */
#define EPOCH_FLOOR_US (INT64_C(946684800) * US_PER_S)

/* Longest user text quoted inside a reason, in bytes (then "..."). */
#define QUOTE_MAX 48
/* Room for a quoted value: QUOTE_MAX, "...", NUL. */
#define QUOTE_BUF (QUOTE_MAX + 4)
/* "YYYY-MM-DDTHH:MM:SS.mmmZ" and its NUL. */
#define TIME_BUF 25
/* 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z, the range format_time prints. */
#define TIME_MIN_MS INT64_C(-62167219200000)
#define TIME_MAX_MS INT64_C(253402300799999)
/* Fixed bytes of an event's envelope (keys, punctuation, times, id, flags). */
#define ENVELOPE_BYTES 1024

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
static_assert(N_TYPES == INGEST_EVENT_LOG + 1, "one name per event type");
#define TYPE_LIST "pageview, click, scroll, performance, custom, identify, log"

const char *ingest_event_type_name(enum ingest_event_type type)
{
    return (size_t)type < N_TYPES ? type_names[type] : "unknown";
}

static const char *const severity_names[] = {"trace", "debug", "info", "warn", "error", "fatal"};
#define N_SEVERITIES (sizeof(severity_names) / sizeof(severity_names[0]))
#define SEVERITY_INFO 2
#define SEVERITY_LIST "trace, debug, info, warn, error, fatal"

/* Top-level fields of an event, in the order they are checked and errors are listed. */
enum field {
    F_ID,
    F_TYPE,
    F_TENANT_ID,
    F_NAME,
    F_SESSION_ID,
    F_ANONYMOUS_ID,
    F_USER_ID,
    F_TIMESTAMP,
    F_SENT_AT,
    F_PROPERTIES,
    F_CONTEXT,
    F_SEVERITY,
    F_SOURCE,
    F_MESSAGE,
    N_FIELDS,
};

static const char *const field_names[N_FIELDS] = {
    [F_ID] = "id",
    [F_TYPE] = "type",
    [F_TENANT_ID] = "tenant_id",
    [F_NAME] = "name",
    [F_SESSION_ID] = "session_id",
    [F_ANONYMOUS_ID] = "anonymous_id",
    [F_USER_ID] = "user_id",
    [F_TIMESTAMP] = "timestamp",
    [F_SENT_AT] = "sent_at",
    [F_PROPERTIES] = "properties",
    [F_CONTEXT] = "context",
    [F_SEVERITY] = "severity",
    [F_SOURCE] = "source",
    [F_MESSAGE] = "message",
};

/* Context fields, in output order. is_url picks the longer limit. */
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

static const struct {
    const char *name;
    bool is_url;
} ctx_fields[N_CTX_FIELDS] = {
    [C_USER_AGENT] = {"user_agent", false},
    [C_IP] = {"ip", false},
    [C_URL] = {"url", true},
    [C_PATH] = {"path", true},
    [C_REFERRER] = {"referrer", true},
    [C_TITLE] = {"title", false},
    [C_SCREEN] = {"screen", false},
    [C_VIEWPORT] = {"viewport", false},
    [C_TIMEZONE] = {"timezone", false},
    [C_LANGUAGE] = {"language", false},
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

/* ---- a bounded byte buffer with a sticky failure ---------------------------------- */

/* Appends never report failure one by one: the first failed growth marks the buffer and
 * every later append does nothing, so a writer checks once at the end. */
struct buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;
    bool is_failed;
    bool is_too_big;             /* is_failed because max would be passed */
};

static void buf_init(struct buf *b, size_t max_bytes)
{
    memset(b, 0, sizeof(*b));
    b->max = max_bytes;
}

static void buf_fini(struct buf *b)
{
    sl_free(b->data);
    memset(b, 0, sizeof(*b));
}

static bool buf_reserve(struct buf *b, size_t extra)
{
    size_t cap;
    char *p;

    if (b->is_failed) {
        return false;
    }
    if (extra > b->max || b->len > b->max - extra) {
        b->is_failed = true;
        b->is_too_big = true;
        return false;
    }
    if (b->len + extra <= b->cap) {
        return true;
    }
    cap = b->cap < 256 ? 256 : b->cap;
    while (cap < b->len + extra) {
        cap *= 2;
    }
    p = sl_realloc(b->data, cap);
    if (p == NULL) {
        b->is_failed = true;
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

static void buf_add(struct buf *b, const char *s, size_t len)
{
    if (buf_reserve(b, len)) {
        memcpy(b->data + b->len, s, len);
        b->len += len;
    }
}

#define buf_lit(b, s) buf_add((b), (s), sizeof(s) - 1)

static void buf_addf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void buf_addf(struct buf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    assert(n >= 0 && (size_t)n < sizeof(tmp));
    buf_add(b, tmp, (size_t)n);
}

/* Appends s (valid UTF-8, len bytes) as a JSON string. */
static void buf_str(struct buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;

    buf_lit(b, "\"");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        size_t n = 2;

        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f) {
            continue;
        }
        buf_add(b, s + run, i - run);
        run = i + 1;
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xf];
            n = 6;
            break;
        }
        buf_add(b, esc, n);
    }
    buf_add(b, s + run, len - run);
    buf_lit(b, "\"");
}

static void buf_str_or_null(struct buf *b, const char *s, size_t len)
{
    if (s == NULL) {
        buf_lit(b, "null");
    }
    else {
        buf_str(b, s, len);
    }
}

/* Appends a real as the shortest "%.*g" text that reads back as the same double (jansson
 * prints 17 digits, 0.1 as 0.10000000000000001), with ".0" so it stays a real. Assumes
 * the C locale's decimal point, which our processes never change. */
static void buf_real(struct buf *b, double v)
{
    char tmp[40];
    int n = 0;

    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) {
            break;
        }
    }
    buf_add(b, tmp, (size_t)n);
    if (strpbrk(tmp, ".e") == NULL) {
        buf_lit(b, ".0");
    }
}

static void buf_int(struct buf *b, json_int_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0) {
        tmp[--i] = '-';
    }
    buf_add(b, tmp + i, sizeof(tmp) - i);
}

/*
 * Writes v as compact JSON into b, v being at nesting level depth. Returns false when an
 * object or array lies deeper than max_depth; stops early once b failed (too big or out of
 * memory), which the caller tells apart.
 */
static bool write_value(struct buf *b, const json_t *v, int64_t depth, int64_t max_depth)
{
    const char *key;
    json_t *child;
    size_t i;
    bool is_first = true;

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        if (depth > max_depth) {
            return false;
        }
        buf_lit(b, "{");
        json_object_foreach((json_t *)v, key, child) {
            if (b->is_failed) {
                return true;
            }
            if (!is_first) {
                buf_lit(b, ",");
            }
            is_first = false;
            buf_str(b, key, strlen(key));
            buf_lit(b, ":");
            if (!write_value(b, child, depth + 1, max_depth)) {
                return false;
            }
        }
        buf_lit(b, "}");
        return true;
    case JSON_ARRAY:
        if (depth > max_depth) {
            return false;
        }
        buf_lit(b, "[");
        json_array_foreach(v, i, child) {
            if (b->is_failed) {
                return true;
            }
            if (i > 0) {
                buf_lit(b, ",");
            }
            if (!write_value(b, child, depth + 1, max_depth)) {
                return false;
            }
        }
        buf_lit(b, "]");
        return true;
    case JSON_STRING:
        buf_str(b, json_string_value(v), json_string_length(v));
        return true;
    case JSON_INTEGER:
        buf_int(b, json_integer_value(v));
        return true;
    case JSON_REAL:
        buf_real(b, json_real_value(v));
        return true;
    case JSON_TRUE:
        buf_lit(b, "true");
        return true;
    case JSON_FALSE:
        buf_lit(b, "false");
        return true;
    case JSON_NULL:
        buf_lit(b, "null");
        return true;
    }
    return true;
}

/* ---- UTF-8 and quoting ------------------------------------------------------------ */

static bool is_utf8(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        unsigned char c = p[i];
        size_t n;
        uint32_t cp;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        }
        else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        }
        else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        }
        else {
            return false;
        }
        if (len - i - 1 < n) {
            return false;
        }
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        /* Overlong forms, surrogates and values past U+10FFFF. */
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff)) {
            return false;
        }
        i += n + 1;
    }
    return true;
}

/* Largest length <= max that does not split a character of valid UTF-8 s. */
static size_t utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max) {
        return len;
    }
    while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80) {
        max--;
    }
    return max;
}

/* Drops an incomplete character at the end of NUL-terminated s (left by snprintf). */
static void utf8_trim(char *s)
{
    size_t len = strlen(s);
    size_t i = len;
    size_t need;
    unsigned char c;

    while (i > 0 && ((unsigned char)s[i - 1] & 0xc0) == 0x80 && len - i < 3) {
        i--;
    }
    if (i == 0) {
        return;
    }
    c = (unsigned char)s[i - 1];
    if (c < 0x80) {
        return;
    }
    need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
    if (len - (i - 1) < need) {
        s[i - 1] = '\0';
    }
}

/*
 * Finds the first control character of valid UTF-8 s: C0 (below U+0020), DEL or C1
 * (U+0080..U+009F). Returns its byte offset, or -1; *cp gets the code point.
 */
static long find_control(const char *s, size_t len, unsigned *cp)
{
    const unsigned char *p = (const unsigned char *)s;

    for (size_t i = 0; i < len; i++) {
        if (p[i] < 0x20 || p[i] == 0x7f) {
            *cp = p[i];
            return (long)i;
        }
        if (p[i] == 0xc2 && i + 1 < len && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f) {
            *cp = p[i + 1];
            return (long)i;
        }
    }
    return -1;
}

/* Writes user text s into out for quoting in a reason: at most QUOTE_MAX bytes, cut on a
 * character boundary with "..." appended, control characters shown as '?'. */
static void quote(char out[QUOTE_BUF], const char *s, size_t len)
{
    size_t n = utf8_cut(s, len, QUOTE_MAX);

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

static const char *json_kind(const json_t *v)
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

/* ---- times ------------------------------------------------------------------------ */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era;
    int64_t yoe;
    int64_t doy;
    int64_t doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    int64_t era;
    int64_t doe;
    int64_t yoe;
    int64_t doy;
    int64_t mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

static void put_digits(char *p, int64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* Writes unix microseconds as "YYYY-MM-DDTHH:MM:SS.mmmZ" (milliseconds, rounded down).
 * Times outside years 0000..9999 are clamped to them; event times never get there. */
static void format_time(int64_t us, char out[TIME_BUF])
{
    int64_t ms = floor_div(us, 1000);
    int64_t days;
    int64_t rem;
    int64_t y;
    int m;
    int d;

    if (ms < TIME_MIN_MS) {
        ms = TIME_MIN_MS;
    }
    if (ms > TIME_MAX_MS) {
        ms = TIME_MAX_MS;
    }
    days = floor_div(ms, 86400000);
    rem = ms - days * 86400000;
    civil_from_days(days, &y, &m, &d);
    memcpy(out, "0000-00-00T00:00:00.000Z", 25);
    put_digits(out, y, 4);
    put_digits(out + 5, m, 2);
    put_digits(out + 8, d, 2);
    put_digits(out + 11, rem / 3600000, 2);
    put_digits(out + 14, rem / 60000 % 60, 2);
    put_digits(out + 17, rem / 1000 % 60, 2);
    put_digits(out + 20, rem % 1000, 3);
}

static bool digits(const char *s, size_t n, int *out)
{
    int v = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/*
 * Parses an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM), T and Z
 * in either case) into unix microseconds; digits past the sixth of the fraction are
 * dropped. *no_zone tells a caller that the text failed only for lack of the offset.
 */
static bool parse_time(const char *s, size_t len, int64_t *out_us, bool *no_zone)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int year, month, day, hour, min, sec;
    int off_h = 0, off_m = 0, sign = 0;
    int64_t frac_us = 0;
    size_t p = 19;

    *no_zone = false;
    if (len < 19 || !digits(s, 4, &year) || s[4] != '-' || !digits(s + 5, 2, &month) ||
        s[7] != '-' || !digits(s + 8, 2, &day) || (s[10] != 'T' && s[10] != 't') ||
        !digits(s + 11, 2, &hour) || s[13] != ':' || !digits(s + 14, 2, &min) ||
        s[16] != ':' || !digits(s + 17, 2, &sec)) {
        return false;
    }
    if (p < len && s[p] == '.') {
        int64_t scale = 100000;
        size_t start = ++p;

        while (p < len && s[p] >= '0' && s[p] <= '9') {
            frac_us += (s[p] - '0') * scale;
            scale /= 10;
            p++;
        }
        if (p == start) {
            return false;
        }
    }
    if (p == len) {
        *no_zone = true;
        return false;
    }
    if (s[p] == 'Z' || s[p] == 'z') {
        p++;
    }
    else if (s[p] == '+' || s[p] == '-') {
        sign = s[p] == '-' ? -1 : 1;
        if (len - p < 6 || !digits(s + p + 1, 2, &off_h) || s[p + 3] != ':' ||
            !digits(s + p + 4, 2, &off_m) || off_h > 23 || off_m > 59) {
            return false;
        }
        p += 6;
    }
    else {
        return false;
    }
    if (p != len || month < 1 || month > 12 || day < 1 ||
        day > (month == 2 && is_leap(year) ? 29 : mdays[month - 1]) || hour > 23 || min > 59 ||
        sec > 60) {
        return false;
    }
    *out_us = ((days_from_civil(year, month, day) * 86400 + hour * 3600 + min * 60 + sec) -
               sign * (off_h * 3600 + off_m * 60)) * US_PER_S + frac_us;
    return true;
}

/* ---- UUIDs and addresses ---------------------------------------------------------- */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

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
        else if (hex_value(s[i]) < 0) {
            return false;
        }
        else {
            out[i] = (char)tolower((unsigned char)s[i]);
        }
    }
    out[len] = '\0';
    return true;
}

/* A random (version 4) UUID from OpenSSL's CSPRNG. Fails with SL_EIO. */
static int make_uuid(char out[INGEST_EVENT_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    size_t o = 0;

    if (RAND_bytes(b, sizeof(b)) != 1) {
        return SL_EIO;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    for (size_t i = 0; i < sizeof(b); i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            out[o++] = '-';
        }
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 0xf];
    }
    out[o] = '\0';
    return 0;
}

/* Parses an IPv4 or IPv6 address (no zone, no port) into its canonical text. */
static bool normalize_ip(const char *s, size_t len, char out[INET6_ADDRSTRLEN])
{
    char tmp[INET6_ADDRSTRLEN];
    unsigned char addr[16];

    if (len == 0 || len >= sizeof(tmp)) {
        return false;
    }
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    if (inet_pton(AF_INET, tmp, addr) == 1) {
        return inet_ntop(AF_INET, addr, out, INET6_ADDRSTRLEN) != NULL;
    }
    if (inet_pton(AF_INET6, tmp, addr) == 1) {
        return inet_ntop(AF_INET6, addr, out, INET6_ADDRSTRLEN) != NULL;
    }
    return false;
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

/* ---- one request ------------------------------------------------------------------ */

struct run {
    const struct ingest_event_limits *lim;
    const struct ingest_event_ctx *ctx;
    struct ingest_event_batch *out;
    struct buf scratch;          /* the event being written */
    struct buf props;            /* its properties as compact JSON */
    size_t index;                /* input index of the event being checked */
    size_t n_event_errors;       /* its errors so far, listed or not */
    size_t max_errors;           /* size bound of out->errors */
    int rc;                      /* sticky SL_ENOMEM of add_error */
    bool has_sent_at;            /* the batch object's sent_at */
    int64_t sent_at_us;
    const char *header_ua;       /* ctx->user_agent when usable, cut to the limit */
    size_t header_ua_len;
    bool has_client_ip;
    char client_ip[INET6_ADDRSTRLEN];
    char received_at[TIME_BUF];  /* ctx->received_us as written */
};

/* What one event holds, borrowed from the parsed body, plus what checking derived. */
struct event_in {
    json_t *v[N_FIELDS];                /* NULL when absent or null */
    bool has_type;
    enum ingest_event_type type;
    bool has_id;
    char id[INGEST_EVENT_ID_LEN + 1];
    int64_t ts_us;
    unsigned flags;
    int severity;
    json_t *ctx_v[N_CTX_FIELDS];        /* non-empty strings only */
    bool has_ip;
    char ip[INET6_ADDRSTRLEN];
};

static void add_error(struct run *r, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Records an error of the current event. Past the per-event cap it is only counted. An
 * allocation failure is kept in r->rc for the caller to check once per event.
 */
static void add_error(struct run *r, const char *field, const char *fmt, ...)
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
    utf8_trim(e->field);
    va_start(ap, fmt);
    vsnprintf(e->reason, sizeof(e->reason), fmt, ap);
    va_end(ap);
    utf8_trim(e->reason);
}

/*
 * Checks a given text value: a non-empty string of at most max bytes without control
 * characters. Reports what is wrong under field; returns whether it is good.
 */
static bool check_text(struct run *r, const char *field, const json_t *v, int64_t max)
{
    const char *s;
    size_t len;
    unsigned cp = 0;
    long at;

    if (!json_is_string(v)) {
        add_error(r, field, "must be a string, got %s", json_kind(v));
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
    at = find_control(s, len, &cp);
    if (at >= 0) {
        add_error(r, field, "contains a control character (U+%04X) at byte %ld", cp, at);
        return false;
    }
    return true;
}

/* Sorts the event's keys into in->v; reports unknown ones. */
static void collect_fields(struct run *r, json_t *ev, struct event_in *in)
{
    const char *key;
    json_t *v;

    json_object_foreach(ev, key, v) {
        size_t f;

        for (f = 0; f < N_FIELDS; f++) {
            if (strcmp(key, field_names[f]) == 0) {
                break;
            }
        }
        if (f < N_FIELDS) {
            in->v[f] = json_is_null(v) ? NULL : v;
            continue;
        }
        {
            char q[QUOTE_BUF];
            const char *hint = suggest(key, field_names, N_FIELDS, field_aliases,
                                       sizeof(field_aliases) / sizeof(field_aliases[0]));

            quote(q, key, strlen(key));
            if (hint != NULL) {
                add_error(r, q, "unknown field; did you mean '%s'?", hint);
            }
            else {
                add_error(r, q, "unknown field (custom data goes in properties)");
            }
        }
    }
}

static void check_id(struct run *r, struct event_in *in)
{
    const json_t *v = in->v[F_ID];
    char q[QUOTE_BUF];

    if (v == NULL) {
        return;
    }
    if (!json_is_string(v)) {
        add_error(r, "id", "must be a UUID string, got %s", json_kind(v));
        return;
    }
    if (!parse_uuid(json_string_value(v), json_string_length(v), in->id)) {
        quote(q, json_string_value(v), json_string_length(v));
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

static void check_type(struct run *r, struct event_in *in)
{
    const json_t *v = in->v[F_TYPE];
    char q[QUOTE_BUF];

    if (v == NULL) {
        add_error(r, "type", "is required (one of " TYPE_LIST ")");
        return;
    }
    if (!json_is_string(v)) {
        add_error(r, "type", "must be a string, got %s", json_kind(v));
        return;
    }
    for (size_t t = 0; t < N_TYPES; t++) {
        if (strcmp(json_string_value(v), type_names[t]) == 0) {
            in->type = (enum ingest_event_type)t;
            in->has_type = true;
            return;
        }
    }
    quote(q, json_string_value(v), json_string_length(v));
    add_error(r, "type", "unknown type '%s' (use " TYPE_LIST ")", q);
}

/* Returns SL_EDENIED when the event names another tenant. */
static int check_tenant(struct run *r, const struct event_in *in, struct sl_err *err)
{
    const json_t *v = in->v[F_TENANT_ID];
    char q[QUOTE_BUF];

    if (v == NULL) {
        return 0;
    }
    if (!json_is_string(v)) {
        add_error(r, "tenant_id", "must be a string, got %s", json_kind(v));
        return 0;
    }
    if (strcmp(json_string_value(v), r->ctx->tenant_id) != 0) {
        quote(q, json_string_value(v), json_string_length(v));
        return sl_err_set(err, SL_EDENIED, "event %zu: tenant_id '%s' is not the API key's "
                          "tenant", r->index, q);
    }
    return 0;
}

static void check_names(struct run *r, const struct event_in *in)
{
    const struct ingest_event_limits *lim = r->lim;

    if (in->v[F_NAME] != NULL) {
        check_text(r, "name", in->v[F_NAME], lim->max_name_bytes);
    }
    else if (in->has_type && in->type == INGEST_EVENT_CUSTOM) {
        add_error(r, "name", "is required for custom events");
    }
    for (enum field f = F_SESSION_ID; f <= F_USER_ID; f++) {
        if (in->v[f] != NULL) {
            check_text(r, field_names[f], in->v[f], lim->max_ident_bytes);
        }
    }
    if (in->v[F_USER_ID] == NULL && in->has_type && in->type == INGEST_EVENT_IDENTIFY) {
        add_error(r, "user_id", "is required for identify events");
    }
}

/* Parses an optional time field; reports a bad one. Returns whether *us was set. */
static bool get_time(struct run *r, const char *field, const json_t *v, int64_t *us)
{
    char q[QUOTE_BUF];
    bool no_zone;

    if (v == NULL) {
        return false;
    }
    if (!json_is_string(v)) {
        add_error(r, field, "not an RFC 3339 time: got %s (send a string like "
                  "2026-11-24T10:00:00.123Z)", json_kind(v));
        return false;
    }
    if (!parse_time(json_string_value(v), json_string_length(v), us, &no_zone)) {
        quote(q, json_string_value(v), json_string_length(v));
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
static void check_time(struct run *r, struct event_in *in)
{
    const struct ingest_event_limits *lim = r->lim;
    int64_t received_us = r->ctx->received_us;
    int64_t ts_us = received_us;
    int64_t sent_us = r->sent_at_us;
    bool has_sent = r->has_sent_at;
    bool has_ts;

    if (in->v[F_SENT_AT] != NULL) {
        has_sent = get_time(r, "sent_at", in->v[F_SENT_AT], &sent_us);
    }
    has_ts = get_time(r, "timestamp", in->v[F_TIMESTAMP], &ts_us);
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
        const json_t *v = in->v[F_TIMESTAMP];
        const char *after = in->flags & INGEST_EVENT_FLAG_SKEW_CORRECTED ?
                            " after the sent_at correction" : "";
        char q[QUOTE_BUF];

        quote(q, json_string_value(v), json_string_length(v));
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
 * nesting and too many bytes, and leaves the text write_event copies. */
static void check_properties(struct run *r, const struct event_in *in)
{
    const json_t *v = in->v[F_PROPERTIES];
    struct buf *b = &r->props;

    b->len = 0;
    b->is_failed = false;
    b->is_too_big = false;
    if (v == NULL) {
        buf_lit(b, "{}");
        return;
    }
    if (!json_is_object(v)) {
        add_error(r, "properties", "must be an object, got %s", json_kind(v));
        return;
    }
    if (!write_value(b, v, 1, r->lim->max_properties_depth)) {
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

static void check_context(struct run *r, struct event_in *in)
{
    const json_t *ctx = in->v[F_CONTEXT];
    const char *key;
    json_t *v;

    if (ctx == NULL) {
        return;
    }
    if (!json_is_object(ctx)) {
        add_error(r, "context", "must be an object, got %s", json_kind(ctx));
        return;
    }
    json_object_foreach((json_t *)ctx, key, v) {
        char field[INGEST_EVENT_FIELD_MAX];
        char q[QUOTE_BUF];
        size_t c;

        for (c = 0; c < N_CTX_FIELDS; c++) {
            if (strcmp(key, ctx_fields[c].name) == 0) {
                break;
            }
        }
        if (c == N_CTX_FIELDS) {
            const char *names[N_CTX_FIELDS];
            const char *hint;

            for (size_t i = 0; i < N_CTX_FIELDS; i++) {
                names[i] = ctx_fields[i].name;
            }
            hint = suggest(key, names, N_CTX_FIELDS, ctx_aliases,
                           sizeof(ctx_aliases) / sizeof(ctx_aliases[0]));
            quote(q, key, strlen(key));
            snprintf(field, sizeof(field), "context.%s", q);
            if (hint != NULL) {
                add_error(r, field, "unknown field; did you mean '%s'?", hint);
            }
            else {
                add_error(r, field, "unknown field (context has user_agent, ip, url, path, "
                          "referrer, title, screen, viewport, timezone, language)");
            }
            continue;
        }
        snprintf(field, sizeof(field), "context.%s", ctx_fields[c].name);
        /* Browsers report "none" as "" (document.referrer, document.title): empty is
         * absent, and ip and user_agent then come from the request. */
        if (json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0)) {
            continue;
        }
        if (!check_text(r, field, v,
                        ctx_fields[c].is_url ? r->lim->max_url_bytes : r->lim->max_context_bytes)) {
            continue;
        }
        if (c == C_IP) {
            if (!normalize_ip(json_string_value(v), json_string_length(v), in->ip)) {
                quote(q, json_string_value(v), json_string_length(v));
                add_error(r, field, "not an IPv4 or IPv6 address: '%s'", q);
                continue;
            }
            in->has_ip = true;
        }
        in->ctx_v[c] = v;
    }
}

static void check_log(struct run *r, struct event_in *in)
{
    const struct ingest_event_limits *lim = r->lim;
    const json_t *sev = in->v[F_SEVERITY];
    const json_t *msg = in->v[F_MESSAGE];
    char q[QUOTE_BUF];

    in->severity = SEVERITY_INFO;
    if (!in->has_type) {
        return;
    }
    if (in->type != INGEST_EVENT_LOG) {
        for (enum field f = F_SEVERITY; f <= F_MESSAGE; f++) {
            if (in->v[f] != NULL) {
                add_error(r, field_names[f], "only allowed on log events");
            }
        }
        return;
    }
    if (sev != NULL) {
        size_t s = N_SEVERITIES;

        if (!json_is_string(sev)) {
            add_error(r, "severity", "must be a string, got %s", json_kind(sev));
        }
        else {
            /* Logging libraries print levels in capitals; accept any case. */
            for (s = 0; s < N_SEVERITIES; s++) {
                if (strcasecmp(json_string_value(sev), severity_names[s]) == 0) {
                    in->severity = (int)s;
                    break;
                }
            }
            if (s == N_SEVERITIES) {
                quote(q, json_string_value(sev), json_string_length(sev));
                add_error(r, "severity", "unknown severity '%s' (use " SEVERITY_LIST ")", q);
            }
        }
    }
    if (in->v[F_SOURCE] != NULL) {
        check_text(r, "source", in->v[F_SOURCE], lim->max_source_bytes);
    }
    if (msg == NULL) {
        add_error(r, "message", "is required for log events");
    }
    else if (!json_is_string(msg)) {
        add_error(r, "message", "must be a string, got %s", json_kind(msg));
    }
    else if (json_string_length(msg) > (uint64_t)lim->max_message_bytes) {
        add_error(r, "message", "longer than %lld bytes", (long long)lim->max_message_bytes);
    }
}

/* ---- writing the normalized event ------------------------------------------------- */

static void put_key(struct buf *b, const char *key)
{
    buf_lit(b, ",\"");
    buf_add(b, key, strlen(key));
    buf_lit(b, "\":");
}

static void put_opt(struct buf *b, const char *key, const json_t *v)
{
    put_key(b, key);
    buf_str_or_null(b, v != NULL ? json_string_value(v) : NULL,
                    v != NULL ? json_string_length(v) : 0);
}

/* Writes the event as compact JSON into r->scratch; keys in a fixed order. */
static void write_event(struct run *r, const struct event_in *in)
{
    static const struct {
        unsigned bit;
        const char *name;
    } flags[] = {
        {INGEST_EVENT_FLAG_ID_GENERATED, "id_generated"},
        {INGEST_EVENT_FLAG_SKEW_CORRECTED, "clock_skew_corrected"},
        {INGEST_EVENT_FLAG_FUTURE_CLAMPED, "future_clamped"},
    };
    struct buf *b = &r->scratch;
    char ts[TIME_BUF];
    bool is_first = true;

    b->len = 0;
    buf_lit(b, "{\"schema_version\":1");
    put_key(b, "id");
    buf_str(b, in->id, INGEST_EVENT_ID_LEN);
    put_key(b, "tenant_id");
    buf_str(b, r->ctx->tenant_id, strlen(r->ctx->tenant_id));
    put_key(b, "type");
    buf_str(b, type_names[in->type], strlen(type_names[in->type]));
    put_opt(b, "name", in->v[F_NAME]);
    put_key(b, "ts");
    format_time(in->ts_us, ts);
    buf_str(b, ts, strlen(ts));
    put_key(b, "received_at");
    buf_str(b, r->received_at, TIME_BUF - 1);
    put_opt(b, "session_id", in->v[F_SESSION_ID]);
    put_opt(b, "anonymous_id", in->v[F_ANONYMOUS_ID]);
    put_opt(b, "user_id", in->v[F_USER_ID]);
    if (in->type == INGEST_EVENT_LOG) {
        put_key(b, "severity");
        buf_str(b, severity_names[in->severity], strlen(severity_names[in->severity]));
        put_opt(b, "source", in->v[F_SOURCE]);
        put_opt(b, "message", in->v[F_MESSAGE]);
    }
    put_key(b, "properties");
    buf_add(b, r->props.data, r->props.len);
    put_key(b, "context");
    buf_lit(b, "{\"user_agent\":");
    if (in->ctx_v[C_USER_AGENT] != NULL) {
        buf_str(b, json_string_value(in->ctx_v[C_USER_AGENT]),
                json_string_length(in->ctx_v[C_USER_AGENT]));
    }
    else {
        buf_str_or_null(b, r->header_ua, r->header_ua_len);
    }
    put_key(b, "ip");
    if (in->has_ip) {
        buf_str(b, in->ip, strlen(in->ip));
    }
    else {
        buf_str_or_null(b, r->has_client_ip ? r->client_ip : NULL, strlen(r->client_ip));
    }
    for (size_t c = C_IP + 1; c < N_CTX_FIELDS; c++) {
        if (in->ctx_v[c] != NULL) {
            put_opt(b, ctx_fields[c].name, in->ctx_v[c]);
        }
    }
    buf_lit(b, "}");
    put_key(b, "flags");
    buf_lit(b, "[");
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        if (in->flags & flags[i].bit) {
            if (!is_first) {
                buf_lit(b, ",");
            }
            buf_str(b, flags[i].name, strlen(flags[i].name));
            is_first = false;
        }
    }
    buf_lit(b, "]}");
}

/* Writes an accepted event and appends it to out->events. */
static int accept_event(struct run *r, struct event_in *in, struct sl_err *err)
{
    struct ingest_event *ev = &r->out->events[r->out->n_events];
    const json_t *sid = in->v[F_SESSION_ID];
    size_t sid_len = sid != NULL ? json_string_length(sid) : 0;
    char *mem;

    if (!in->has_id) {
        if (make_uuid(in->id) != 0) {
            return sl_err_set(err, SL_EIO, "the random generator failed to make an event id");
        }
        in->flags |= INGEST_EVENT_FLAG_ID_GENERATED;
    }
    write_event(r, in);
    if (r->scratch.is_failed) {
        return sl_err_set(err, SL_ENOMEM, "out of memory writing event %zu", r->index);
    }
    /* One allocation: the JSON, its NUL, then the session_id and its NUL. */
    mem = sl_malloc(r->scratch.len + 1 + (sid != NULL ? sid_len + 1 : 0));
    if (mem == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory writing event %zu", r->index);
    }
    memcpy(mem, r->scratch.data, r->scratch.len);
    mem[r->scratch.len] = '\0';
    ev->session_id = NULL;
    if (sid != NULL) {
        memcpy(mem + r->scratch.len + 1, json_string_value(sid), sid_len + 1);
        ev->session_id = mem + r->scratch.len + 1;
    }
    ev->index = r->index;
    ev->type = in->type;
    memcpy(ev->id, in->id, sizeof(ev->id));
    ev->ts_ms = floor_div(in->ts_us, 1000);
    ev->flags = in->flags;
    ev->json = mem;
    ev->json_len = r->scratch.len;
    r->out->n_events++;
    return 0;
}

/* Checks the event at r->index and accepts or rejects it. Fails only for the whole request
 * (SL_EDENIED, SL_ENOMEM, SL_EIO). */
static int process_event(struct run *r, json_t *ev, struct sl_err *err)
{
    struct event_in in;
    int rc;

    memset(&in, 0, sizeof(in));
    r->n_event_errors = 0;
    if (!json_is_object(ev)) {
        add_error(r, "", "an event must be a JSON object, got %s", json_kind(ev));
    }
    else {
        collect_fields(r, ev, &in);
        rc = check_tenant(r, &in, err);
        if (rc != 0) {
            return rc;
        }
        check_id(r, &in);
        check_type(r, &in);
        check_names(r, &in);
        check_time(r, &in);
        check_properties(r, &in);
        check_context(r, &in);
        check_log(r, &in);
    }
    if (r->rc != 0) {
        return sl_err_set(err, r->rc, "out of memory checking event %zu", r->index);
    }
    if (r->n_event_errors > 0) {
        r->out->n_rejected++;
        return 0;
    }
    return accept_event(r, &in, err);
}

/* Checks the request's shape. On success *events is the array of events, or NULL when the
 * body is a single event. Fails with SL_EINVAL, setting out->http_status. */
static int check_shape(struct run *r, json_t *root, json_t **events, struct sl_err *err)
{
    const char *key;
    json_t *v;
    json_t *sent_at;
    size_t n;
    bool no_zone;

    *events = NULL;
    if (!json_is_object(root)) {
        r->out->http_status = 400;
        return sl_err_set(err, SL_EINVAL, "the body must be a JSON object (one event, or "
                          "{\"events\":[...]}), got %s", json_kind(root));
    }
    v = json_object_get(root, "events");
    if (v == NULL) {
        return 0;
    }
    json_object_foreach(root, key, v) {
        if (strcmp(key, "events") != 0 && strcmp(key, "sent_at") != 0) {
            char q[QUOTE_BUF];

            quote(q, key, strlen(key));
            r->out->http_status = 400;
            return sl_err_set(err, SL_EINVAL, "unknown field '%s' in the batch object (it "
                              "holds only events and sent_at)", q);
        }
    }
    sent_at = json_object_get(root, "sent_at");
    if (sent_at != NULL && !json_is_null(sent_at)) {
        if (!json_is_string(sent_at) ||
            !parse_time(json_string_value(sent_at), json_string_length(sent_at),
                        &r->sent_at_us, &no_zone)) {
            char q[QUOTE_BUF];

            quote(q, json_is_string(sent_at) ? json_string_value(sent_at) : "",
                  json_is_string(sent_at) ? json_string_length(sent_at) : 0);
            r->out->http_status = 400;
            return sl_err_set(err, SL_EINVAL, "sent_at: not an RFC 3339 time: '%s'", q);
        }
        r->has_sent_at = true;
    }
    v = json_object_get(root, "events");
    if (!json_is_array(v)) {
        r->out->http_status = 400;
        return sl_err_set(err, SL_EINVAL, "events must be an array, got %s", json_kind(v));
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

/* Largest normalized event the limits allow: strings may grow six-fold when escaped. */
static size_t event_max_bytes(const struct ingest_event_limits *lim, const char *tenant_id)
{
    int64_t text = lim->max_name_bytes + 3 * lim->max_ident_bytes + lim->max_source_bytes +
                   lim->max_message_bytes + 3 * lim->max_url_bytes +
                   (N_CTX_FIELDS - 3) * lim->max_context_bytes;

    return ENVELOPE_BYTES + 6 * (size_t)text + 6 * strlen(tenant_id) +
           (size_t)lim->max_properties_bytes;
}

/* Prepares what every event of the request shares: the receive time as text, a usable
 * User-Agent header and the peer address. */
static void take_request(struct run *r)
{
    const char *ua = r->ctx->user_agent;

    format_time(r->ctx->received_us, r->received_at);
    if (ua != NULL && ua[0] != '\0' && is_utf8(ua, strlen(ua))) {
        r->header_ua = ua;
        r->header_ua_len = utf8_cut(ua, strlen(ua), (size_t)r->lim->max_context_bytes);
    }
    if (r->ctx->client_ip != NULL) {
        r->has_client_ip = normalize_ip(r->ctx->client_ip, strlen(r->ctx->client_ip),
                                        r->client_ip);
    }
}

/*
 * Parses the body. Duplicate keys are refused: which of two "timestamp"s was meant is
 * anyone's guess. jansson reports an allocation failure inside its lexer as a syntax error
 * ("invalid token") and one at the very start with no text at all; a syntax error, unlike
 * an allocation failure, repeats exactly. So a failure is taken for bad JSON (SL_EINVAL)
 * only when a second parse fails the same way; else it is SL_ENOMEM, unless the second
 * parse succeeds.
 */
static int load_body(const char *body, size_t len, json_t **out, struct sl_err *err)
{
    const size_t flags = JSON_DECODE_ANY | JSON_REJECT_DUPLICATES;
    json_error_t first;
    json_error_t again;

    *out = json_loadb(body, len, flags, &first);
    if (*out != NULL) {
        return 0;
    }
    if (json_error_code(&first) != json_error_out_of_memory && first.text[0] != '\0') {
        *out = json_loadb(body, len, flags, &again);
        if (*out != NULL) {
            return 0;
        }
        if (first.position == again.position && strcmp(first.text, again.text) == 0) {
            return sl_err_set(err, SL_EINVAL, "the body is not valid JSON: %s at line %d, "
                              "column %d", first.text, first.line, first.column);
        }
    }
    return sl_err_set(err, SL_ENOMEM, "out of memory parsing the body");
}

int ingest_event_parse_batch(const char *body, size_t len, const struct ingest_event_limits *lim,
                             const struct ingest_event_ctx *ctx, struct ingest_event_batch *out,
                             struct sl_err *err)
{
    struct ingest_event_limits defaults;
    struct run r;
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
    buf_init(&r.scratch, event_max_bytes(lim, ctx->tenant_id));
    buf_init(&r.props, (size_t)lim->max_properties_bytes);
    take_request(&r);

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
    buf_fini(&r.props);
    buf_fini(&r.scratch);
    json_decref(root);
    return rc;
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
    struct buf b;
    size_t max = 128 + batch->n_errors * (64 + 6 * (INGEST_EVENT_FIELD_MAX +
                                                    INGEST_EVENT_REASON_MAX));

    *out = NULL;
    *out_len = 0;
    buf_init(&b, max);
    buf_addf(&b, "{\"accepted\":%zu,\"rejected\":%zu,\"errors\":[", batch->n_events,
             batch->n_rejected);
    for (size_t i = 0; i < batch->n_errors; i++) {
        const struct ingest_event_error *e = &batch->errors[i];

        buf_addf(&b, "%s{\"index\":%zu,\"field\":", i > 0 ? "," : "", e->index);
        if (e->field[0] == '\0') {
            buf_lit(&b, "null");
        }
        else {
            buf_str(&b, e->field, strlen(e->field));
        }
        buf_lit(&b, ",\"reason\":");
        buf_str(&b, e->reason, strlen(e->reason));
        buf_lit(&b, "}");
    }
    buf_lit(&b, "]}");
    buf_add(&b, "", 1);
    if (b.is_failed) {
        buf_fini(&b);
        return SL_ENOMEM;
    }
    *out = b.data;
    *out_len = b.len - 1;
    return 0;
}

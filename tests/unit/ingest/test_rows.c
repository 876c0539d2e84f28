/* Tests ingest/rows.c: the INSERT's SQL and column list, a full event decoded column by
 * column (and its first bytes compared by hand), defaults for absent fields, properties kept
 * as written, times (offsets, fractions, calendar, DateTime range), every rejection reason
 * with the batch buffer unchanged, a full batch buffer, the edge's own output, and
 * allocation failures. */
#include <jansson.h>

#include "alloc.h"
#include "event.h"
#include "rows.h"
#include "test.h"

#define EVENT_ID "6f9619ff-8b86-4d01-b42d-00c04fc964ff"
#define TENANT "tn_0123456789abcdef"
#define VERSION INT64_C(1795514400123)
/* 2026-11-24T10:00:00Z */
#define TS_S INT64_C(1795514400)

/* A full normalized event, as the edge writes it (a log event, to have every field). */
static const char full_event[] =
    "{\"schema_version\":1,\"id\":\"" EVENT_ID "\",\"tenant_id\":\"" TENANT "\","
    "\"type\":\"log\",\"name\":\"checkout\",\"ts\":\"2026-11-24T10:00:00.123Z\","
    "\"received_at\":\"2026-11-24T10:00:01.999Z\",\"session_id\":\"s-1\","
    "\"anonymous_id\":\"a-1\",\"user_id\":\"u-1\",\"severity\":\"error\","
    "\"source\":\"api\",\"message\":\"boom\\nline 2\","
    "\"properties\":{\"price\":0.1,\"tags\":[\"x\",{\"y\":null}],\"s\":\"}\\\"{\"},"
    "\"context\":{\"user_agent\":\"Mozilla/5.0 (X11)\",\"ip\":\"203.0.113.7\","
    "\"url\":\"https://example.com/a?b=1\",\"path\":\"/a\",\"referrer\":\"https://r/\","
    "\"title\":\"Caf\\u00e9\",\"screen\":\"1920x1080\",\"viewport\":\"1200x800\","
    "\"timezone\":\"Europe/Paris\",\"language\":\"fr-FR\","
    "\"client_hints\":{\"platform\":\"Windows\",\"platformVersion\":\"15.0.0\"}},"
    "\"flags\":[\"clock_skew_corrected\",\"future_clamped\"]}";

/* ---- a small RowBinary reader -------------------------------------------------------- */

struct reader {
    const unsigned char *p;
    const unsigned char *end;
};

static uint64_t read_le(struct reader *r, size_t n)
{
    uint64_t v = 0;

    ASSERT_TRUE(n <= 8 && (size_t)(r->end - r->p) >= n);
    for (size_t i = 0; i < n; i++) {
        v |= (uint64_t)r->p[i] << (8 * i);
    }
    r->p += n;
    return v;
}

static void skip(struct reader *r, size_t n)
{
    ASSERT_TRUE((size_t)(r->end - r->p) >= n);
    r->p += n;
}

static uint64_t read_leb(struct reader *r)
{
    uint64_t v = 0;
    int shift = 0;

    for (;;) {
        unsigned char c;

        ASSERT_TRUE(r->p < r->end && shift < 64);
        c = *r->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if ((c & 0x80) == 0) {
            return v;
        }
        shift += 7;
    }
}

/* Reads a String and compares it with want. */
static void expect_str(struct reader *r, const char *column, const char *want)
{
    uint64_t n = read_leb(r);

    ASSERT_TRUE((uint64_t)(r->end - r->p) >= n);
    if (n != strlen(want) || memcmp(r->p, want, n) != 0) {
        TEST_FAIL("column %s: got \"%.*s\", want \"%s\"", column, (int)n, (const char *)r->p,
                  want);
    }
    r->p += n;
}

/* Reads a UUID and prints it in text form. */
static void read_uuid(struct reader *r, char out[37])
{
    unsigned char text[16];
    size_t n = 0;

    ASSERT_TRUE(r->end - r->p >= 16);
    for (size_t i = 0; i < 8; i++) {
        text[i] = r->p[7 - i];
        text[8 + i] = r->p[15 - i];
    }
    r->p += 16;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            out[n++] = '-';
        }
        n += (size_t)snprintf(out + n, 3, "%02x", text[i]);
    }
    out[n] = '\0';
}

static double read_f64(struct reader *r)
{
    uint64_t bits = read_le(r, 8);
    double v;

    memcpy(&v, &bits, sizeof(v));
    return v;
}

/* Appends json to a fresh buffer; the call must succeed. The caller finis buf. */
static void append_ok(struct sl_ch_buf *buf, const char *json)
{
    struct sl_err err;

    sl_ch_buf_init(buf, 1 << 20);
    ASSERT_OK(ingest_rows_append(buf, json, strlen(json), VERSION, &err), &err);
}

/* Skips the columns after flags (enrichment, version), checking they are empty/zero. */
static void expect_tail(struct reader *r, int64_t version)
{
    for (int i = 0; i < 5; i++) {
        expect_str(r, "geo text", "");
    }
    ASSERT_TRUE(read_f64(r) == 0.0);
    ASSERT_TRUE(read_f64(r) == 0.0);
    ASSERT_EQ_INT(read_le(r, 2), 0); /* accuracy_radius */
    expect_str(r, "geo_timezone", "");
    ASSERT_EQ_INT(read_le(r, 4), 0); /* asn */
    expect_str(r, "as_org", "");
    for (int i = 0; i < 7; i++) {
        expect_str(r, "ua text", "");
    }
    ASSERT_EQ_INT(read_le(r, 1), 0); /* is_bot */
    expect_str(r, "bot_reason", "");
    ASSERT_EQ_INT(read_le(r, 4), 0); /* enrichment_version */
    ASSERT_EQ_INT(read_le(r, 8), version);
    ASSERT_TRUE(r->p == r->end);
}

/* ---- cases --------------------------------------------------------------------------- */

static void test_rows_insert_sql(void)
{
    char sql[INGEST_ROWS_INSERT_SQL_MAX];
    char small[32];
    char want[2048];

    ASSERT_OK(ingest_rows_insert_sql("sluice", sql, sizeof(sql)), NULL);
    snprintf(want, sizeof(want), "INSERT INTO `sluice`.events (%s) FORMAT RowBinary",
             ingest_rows_columns());
    ASSERT_EQ_STR(sql, want);
    ASSERT_TRUE(strncmp(ingest_rows_columns(), "id, tenant_id, type, name, ts, ts_ms, ", 38)
                == 0);
    ASSERT_CONTAINS(ingest_rows_columns(), ", enrichment_version, version");
    /* A name that needs escaping is quoted, never spliced. */
    ASSERT_OK(ingest_rows_insert_sql("a`b", sql, sizeof(sql)), NULL);
    ASSERT_TRUE(strncmp(sql, "INSERT INTO `a\\`b`.events (", 27) == 0);
    ASSERT_EQ_INT(ingest_rows_insert_sql("sluice", small, sizeof(small)), SL_EINVAL);
    ASSERT_EQ_STR(small, "");
    ASSERT_EQ_INT(ingest_rows_insert_sql("", sql, sizeof(sql)), SL_EINVAL);
    ASSERT_EQ_INT(ingest_rows_insert_sql(NULL, sql, sizeof(sql)), SL_EINVAL);
}

static void test_rows_full_event_bytes(void)
{
    /* The first columns by hand: UUID halves reversed, String = LEB128 length + bytes,
     * DateTime = UInt32 LE, ts_ms = UInt16 LE. */
    static const unsigned char want[] = {
        0x01, 0x4d, 0x86, 0x8b, 0xff, 0x19, 0x96, 0x6f,  /* 6f9619ff-8b86-4d01 reversed */
        0xff, 0x64, 0xc9, 0x4f, 0xc0, 0x00, 0x2d, 0xb4,  /* b42d-00c04fc964ff reversed */
        19, 't', 'n', '_', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd',
        'e', 'f',
        3, 'l', 'o', 'g',
        8, 'c', 'h', 'e', 'c', 'k', 'o', 'u', 't',
        0x20, 0x60, 0x05, 0x6b, /* 1795514400 = 0x6b056020 */
        123, 0,                 /* ts_ms */
        0x21, 0x60, 0x05, 0x6b, /* received_at 1795514401 (ms dropped) */
    };
    struct sl_ch_buf buf;

    append_ok(&buf, full_event);
    ASSERT_TRUE(buf.len > sizeof(want));
    for (size_t i = 0; i < sizeof(want); i++) {
        if ((unsigned char)buf.data[i] != want[i]) {
            TEST_FAIL("byte %zu: 0x%02x, want 0x%02x", i, (unsigned char)buf.data[i], want[i]);
        }
    }
    sl_ch_buf_fini(&buf);
}

static void test_rows_full_event_columns(void)
{
    struct sl_ch_buf buf;
    struct reader r;
    char id[37];

    append_ok(&buf, full_event);
    r.p = (const unsigned char *)buf.data;
    r.end = r.p + buf.len;
    read_uuid(&r, id);
    ASSERT_EQ_STR(id, EVENT_ID);
    expect_str(&r, "tenant_id", TENANT);
    expect_str(&r, "type", "log");
    expect_str(&r, "name", "checkout");
    ASSERT_EQ_INT(read_le(&r, 4), TS_S);
    ASSERT_EQ_INT(read_le(&r, 2), 123);
    ASSERT_EQ_INT(read_le(&r, 4), TS_S + 1);
    expect_str(&r, "session_id", "s-1");
    expect_str(&r, "anonymous_id", "a-1");
    expect_str(&r, "user_id", "u-1");
    /* properties: the message's own text, 0.1 not reprinted, tricky string intact. */
    expect_str(&r, "properties", "{\"price\":0.1,\"tags\":[\"x\",{\"y\":null}],\"s\":\"}\\\"{\"}");
    expect_str(&r, "user_agent", "Mozilla/5.0 (X11)");
    expect_str(&r, "ip", "203.0.113.7");
    expect_str(&r, "url", "https://example.com/a?b=1");
    expect_str(&r, "path", "/a");
    expect_str(&r, "referrer", "https://r/");
    expect_str(&r, "title", "Caf\xc3\xa9");
    expect_str(&r, "screen", "1920x1080");
    expect_str(&r, "viewport", "1200x800");
    expect_str(&r, "timezone", "Europe/Paris");
    expect_str(&r, "language", "fr-FR");
    expect_str(&r, "client_hints", "{\"platform\":\"Windows\",\"platformVersion\":\"15.0.0\"}");
    expect_str(&r, "severity", "error");
    expect_str(&r, "source", "api");
    expect_str(&r, "message", "boom\nline 2");
    ASSERT_EQ_INT(read_leb(&r), 2);
    expect_str(&r, "flags[0]", "clock_skew_corrected");
    expect_str(&r, "flags[1]", "future_clamped");
    expect_tail(&r, VERSION);
    sl_ch_buf_fini(&buf);
}

static void test_rows_minimal_event_defaults(void)
{
    static const char *const variants[] = {
        /* Absent optional fields. */
        "{\"id\":\"" EVENT_ID "\",\"tenant_id\":\"t\",\"type\":\"pageview\","
        "\"ts\":\"2026-11-24T10:00:00Z\"}",
        /* The same as nulls, with whitespace around and an unknown field. */
        " {\"id\" : \"" EVENT_ID "\", \"tenant_id\":\"t\",\"type\":\"pageview\","
        "\"ts\":\"2026-11-24T10:00:00Z\",\"received_at\":null,\"name\":null,"
        "\"session_id\":null,\"anonymous_id\":null,\"user_id\":null,\"properties\":null,"
        "\"context\":{\"user_agent\":null,\"ip\":null},\"flags\":null,\"severity\":null,"
        "\"source\":null,\"message\":null,\"later_field\":{\"x\":[1]}} ",
        "{\"schema_version\":null,\"id\":\"" EVENT_ID "\",\"tenant_id\":\"t\","
        "\"type\":\"pageview\",\"ts\":\"2026-11-24T10:00:00Z\",\"context\":null,\"flags\":[]}",
    };

    for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
        struct sl_ch_buf buf;
        struct reader r;
        char id[37];

        append_ok(&buf, variants[v]);
        r.p = (const unsigned char *)buf.data;
        r.end = r.p + buf.len;
        read_uuid(&r, id);
        ASSERT_EQ_STR(id, EVENT_ID);
        expect_str(&r, "tenant_id", "t");
        expect_str(&r, "type", "pageview");
        expect_str(&r, "name", "");
        ASSERT_EQ_INT(read_le(&r, 4), TS_S);
        ASSERT_EQ_INT(read_le(&r, 2), 0);
        ASSERT_EQ_INT(read_le(&r, 4), 0); /* received_at unknown */
        for (int i = 0; i < 3; i++) {
            expect_str(&r, "ids", "");
        }
        expect_str(&r, "properties", "{}");
        for (int i = 0; i < 11; i++) { /* ten context fields, then client_hints */
            expect_str(&r, "context", "");
        }
        for (int i = 0; i < 3; i++) {
            expect_str(&r, "log", "");
        }
        ASSERT_EQ_INT(read_leb(&r), 0);
        expect_tail(&r, VERSION);
        sl_ch_buf_fini(&buf);
    }
}

/* properties whose key is written with an escape cannot be found as text; they are then
 * printed by jansson, still compact JSON. Pretty-printed properties are kept as written. */
static void test_rows_properties_text(void)
{
    struct sl_ch_buf buf;
    struct reader r;
    char id[37];

    append_ok(&buf, "{\"id\":\"" EVENT_ID "\",\"tenant_id\":\"t\",\"type\":\"custom\","
              "\"ts\":\"2026-11-24T10:00:00Z\",\"prop\\u0065rties\":{\"a\":1,\"b\":\"x\"}}");
    r.p = (const unsigned char *)buf.data;
    r.end = r.p + buf.len;
    read_uuid(&r, id);
    expect_str(&r, "tenant_id", "t");
    expect_str(&r, "type", "custom");
    expect_str(&r, "name", "");
    skip(&r, 10); /* ts, ts_ms, received_at */
    for (int i = 0; i < 3; i++) {
        expect_str(&r, "ids", "");
    }
    expect_str(&r, "properties", "{\"a\":1,\"b\":\"x\"}");
    sl_ch_buf_fini(&buf);

    append_ok(&buf, "{\"properties\": { \"a\" : [ 1, 2 ] , \"n\":{\"properties\":{}}},"
              "\"id\":\"" EVENT_ID "\",\"tenant_id\":\"t\",\"type\":\"custom\","
              "\"ts\":\"2026-11-24T10:00:00Z\"}");
    r.p = (const unsigned char *)buf.data;
    r.end = r.p + buf.len;
    read_uuid(&r, id);
    expect_str(&r, "tenant_id", "t");
    expect_str(&r, "type", "custom");
    expect_str(&r, "name", "");
    skip(&r, 10); /* ts, ts_ms, received_at */
    for (int i = 0; i < 3; i++) {
        expect_str(&r, "ids", "");
    }
    expect_str(&r, "properties", "{ \"a\" : [ 1, 2 ] , \"n\":{\"properties\":{}}}");
    sl_ch_buf_fini(&buf);
}

/* The ts of a minimal event with the given text, in ms; or the error. */
static int ts_of(const char *ts, int64_t *ms, struct sl_err *err)
{
    char json[512];
    struct sl_ch_buf buf;
    struct reader r;
    int rc;

    snprintf(json, sizeof(json), "{\"id\":\"" EVENT_ID "\",\"tenant_id\":\"t\","
             "\"type\":\"click\",\"ts\":\"%s\"}", ts);
    sl_ch_buf_init(&buf, 1 << 20);
    rc = ingest_rows_append(&buf, json, strlen(json), 0, err);
    if (rc == 0) {
        r.p = (const unsigned char *)buf.data + 16 + 2 + 6 + 1; /* id, "t", "click", "" */
        r.end = (const unsigned char *)buf.data + buf.len;
        *ms = (int64_t)read_le(&r, 4) * 1000;
        *ms += (int64_t)read_le(&r, 2);
    }
    sl_ch_buf_fini(&buf);
    return rc;
}

static void expect_ts(const char *ts, int64_t want_ms)
{
    struct sl_err err;
    int64_t ms = -1;

    ASSERT_OK(ts_of(ts, &ms, &err), &err);
    if (ms != want_ms) {
        TEST_FAIL("%s: %lld ms, want %lld", ts, (long long)ms, (long long)want_ms);
    }
}

static void expect_bad_ts(const char *ts, const char *reason)
{
    struct sl_err err;
    int64_t ms;

    ASSERT_EQ_INT(ts_of(ts, &ms, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, reason);
    ASSERT_TRUE(strncmp(err.msg, "ts: ", 4) == 0);
}

static void test_rows_times(void)
{
    const int64_t base = TS_S * 1000;

    expect_ts("2026-11-24T10:00:00Z", base);
    expect_ts("2026-11-24T10:00:00.5Z", base + 500);
    expect_ts("2026-11-24T10:00:00.123456789Z", base + 123);
    expect_ts("2026-11-24t10:00:00.01z", base + 10);
    expect_ts("2026-11-24 10:00:00Z", base);
    expect_ts("2026-11-24T12:30:00+02:30", base);
    expect_ts("2026-11-24T00:00:00-10:00", base);
    expect_ts("2024-02-29T00:00:00Z", INT64_C(1709164800) * 1000);
    expect_ts("2000-03-01T00:00:00Z", INT64_C(951868800) * 1000);
    expect_ts("1970-01-01T00:00:00Z", 0);
    expect_ts("2105-12-31T23:59:59.999Z", INT64_C(4291747199) * 1000 + 999);
    expect_ts("1970-01-01T01:00:00+01:00", 0);
    /* A leap second, as RFC 3339 allows and the edge accepts, is the next second. */
    expect_ts("2026-11-24T09:59:60Z", base);

    expect_bad_ts("1969-12-31T23:59:59.999Z", "outside 1970-01-01..2105-12-31");
    expect_bad_ts("2106-01-01T00:00:00Z", "outside");
    expect_bad_ts("1970-01-01T00:00:00+00:01", "outside");
    expect_bad_ts("2023-02-29T00:00:00Z", "not an RFC 3339 time: '2023-02-29T00:00:00Z'");
    expect_bad_ts("2026-13-01T00:00:00Z", "not an RFC 3339");
    expect_bad_ts("2026-04-31T00:00:00Z", "not an RFC 3339");
    expect_bad_ts("2026-11-24T24:00:00Z", "not an RFC 3339");
    expect_bad_ts("2026-11-24T10:60:00Z", "not an RFC 3339");
    expect_bad_ts("2026-11-24T10:00:00", "not an RFC 3339");
    expect_bad_ts("2026-11-24T10:00:00.Z", "not an RFC 3339");
    expect_bad_ts("2026-11-24T10:00:00+0200", "not an RFC 3339");
    expect_bad_ts("2026-11-24T10:00:00+24:00", "not an RFC 3339");
    expect_bad_ts("2026-11-24T10:00:00ZZ", "not an RFC 3339");
    expect_bad_ts("2026-11-24", "not an RFC 3339");
    expect_bad_ts("1795514400", "not an RFC 3339");
    expect_bad_ts("", "empty");
}

/* Appends json to a buffer already holding bytes; it must fail with rc and a message
 * containing reason, leaving the buffer as it was. */
static void reject(const char *json, size_t len, int want_rc, const char *reason)
{
    struct sl_ch_buf buf;
    struct sl_err err;

    sl_ch_buf_init(&buf, 1 << 20);
    ASSERT_OK(sl_ch_buf_append_str(&buf, "previous rows"), NULL);
    ASSERT_EQ_INT(ingest_rows_append(&buf, json, len, VERSION, &err), want_rc);
    ASSERT_EQ_INT(err.code, want_rc);
    if (strstr(err.msg, reason) == NULL) {
        TEST_FAIL("%.*s: error \"%s\" lacks \"%s\"", (int)len, json, err.msg, reason);
    }
    ASSERT_EQ_INT(buf.len, 13);
    ASSERT_EQ_STR(buf.data, "previous rows");
    sl_ch_buf_fini(&buf);
}

static void reject_str(const char *json, const char *reason)
{
    reject(json, strlen(json), SL_EINVAL, reason);
}

#define ID_TS "\"id\":\"" EVENT_ID "\",\"ts\":\"2026-11-24T10:00:00Z\""
#define GOOD ID_TS ",\"tenant_id\":\"t\",\"type\":\"click\""

static void test_rows_rejections(void)
{
    /* Not an event at all. */
    reject_str("", "not JSON:");
    reject_str("{\"id\":", "not JSON:");
    reject_str("{\"id\":1,\"id\":2}", "not JSON: duplicate object key");
    reject_str("[1,2]", "not a JSON object (got an array)");
    reject_str("\"x\"", "not a JSON object (got a string)");
    reject("{\"a\":\"\0\"}", 9, SL_EINVAL, "not JSON");
    /* Length is respected: the valid prefix alone is not an event. */
    reject("{\"tenant_id\":\"t\"} trailing", 17, SL_EINVAL, "id: missing");
    /* schema_version. */
    reject_str("{\"schema_version\":2," GOOD "}",
               "schema_version: 2 is not supported (this loader reads 1)");
    reject_str("{\"schema_version\":\"1\"," GOOD "}",
               "schema_version: must be an integer, got a string");
    /* Required fields. */
    reject_str("{\"ts\":\"2026-11-24T10:00:00Z\",\"tenant_id\":\"t\",\"type\":\"click\"}",
               "id: missing");
    reject_str("{\"id\":null,\"ts\":\"2026-11-24T10:00:00Z\",\"tenant_id\":\"t\","
               "\"type\":\"click\"}", "id: missing");
    reject_str("{\"id\":7,\"ts\":\"2026-11-24T10:00:00Z\",\"tenant_id\":\"t\","
               "\"type\":\"click\"}", "id: must be a string, got an integer");
    reject_str("{\"id\":\"6f9619ff-8b86-4d01-b42d-00c04fc964f\",\"ts\":\"2026-11-24T10:00:00Z\","
               "\"tenant_id\":\"t\",\"type\":\"click\"}",
               "id: not a UUID (8-4-4-4-12 hex digits): '6f9619ff-8b86-4d01-b42d-00c04fc964f'");
    reject_str("{\"id\":\"6f9619ff+8b86-4d01-b42d-00c04fc964ff\",\"ts\":\"2026-11-24T10:00:00Z\","
               "\"tenant_id\":\"t\",\"type\":\"click\"}", "id: not a UUID");
    reject_str("{\"id\":\"6f9619fg-8b86-4d01-b42d-00c04fc964ff\",\"ts\":\"2026-11-24T10:00:00Z\","
               "\"tenant_id\":\"t\",\"type\":\"click\"}", "id: not a UUID");
    reject_str("{\"id\":\"6f9619ff8b864d01b42d00c04fc964ff\",\"ts\":\"2026-11-24T10:00:00Z\","
               "\"tenant_id\":\"t\",\"type\":\"click\"}", "id: not a UUID");
    /* A quoted bad value is cut and made printable. */
    reject_str("{\"id\":\"\\n'\\u00e9aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
               "\"ts\":\"2026-11-24T10:00:00Z\",\"tenant_id\":\"t\",\"type\":\"click\"}",
               "id: not a UUID (8-4-4-4-12 hex digits): '\\x0a\\x27\\xc3\\xa9aaaaaaaaaaaaaaaaaaaa"
               "aaaaaaaaaaaaaaaaaaaaaaaa...'");
    reject_str("{" ID_TS ",\"type\":\"click\"}", "tenant_id: missing");
    reject_str("{" ID_TS ",\"tenant_id\":\"\",\"type\":\"click\"}", "tenant_id: empty");
    reject_str("{" ID_TS ",\"tenant_id\":[\"t\"],\"type\":\"click\"}",
               "tenant_id: must be a string, got an array");
    reject_str("{" ID_TS ",\"tenant_id\":\"t\"}", "type: missing");
    reject_str("{" ID_TS ",\"tenant_id\":\"t\",\"type\":\"\"}", "type: empty");
    reject_str("{" ID_TS ",\"tenant_id\":\"t\",\"type\":true}",
               "type: must be a string, got a boolean");
    reject_str("{\"id\":\"" EVENT_ID "\",\"tenant_id\":\"t\",\"type\":\"click\"}", "ts: missing");
    reject_str("{\"id\":\"" EVENT_ID "\",\"tenant_id\":\"t\",\"type\":\"click\","
               "\"ts\":1795514400}", "ts: must be a string, got an integer");
    reject_str("{\"id\":\"" EVENT_ID "\",\"tenant_id\":\"t\",\"type\":\"click\","
               "\"ts\":\"yesterday\"}", "ts: not an RFC 3339 time: 'yesterday'");
    /* Optional fields of the wrong type. */
    reject_str("{" GOOD ",\"received_at\":\"soon\"}",
               "received_at: not an RFC 3339 time: 'soon'");
    reject_str("{" GOOD ",\"received_at\":1.5}",
               "received_at: must be a string or null, got a number");
    reject_str("{" GOOD ",\"name\":{}}", "name: must be a string or null, got an object");
    reject_str("{" GOOD ",\"session_id\":1}", "session_id: must be a string or null");
    reject_str("{" GOOD ",\"anonymous_id\":false}", "anonymous_id: must be a string or null");
    reject_str("{" GOOD ",\"user_id\":[]}", "user_id: must be a string or null");
    reject_str("{" GOOD ",\"severity\":3}", "severity: must be a string or null");
    reject_str("{" GOOD ",\"source\":3}", "source: must be a string or null");
    reject_str("{" GOOD ",\"message\":{\"a\":1}}", "message: must be a string or null");
    reject_str("{" GOOD ",\"properties\":[1]}",
               "properties: must be an object or null, got an array");
    reject_str("{" GOOD ",\"properties\":\"{}\"}", "properties: must be an object or null");
    reject_str("{" GOOD ",\"context\":\"x\"}", "context: must be an object or null, got a string");
    reject_str("{" GOOD ",\"context\":{\"ip\":7}}",
               "context.ip: must be a string or null, got an integer");
    reject_str("{" GOOD ",\"context\":{\"language\":[\"fr\"]}}",
               "context.language: must be a string or null");
    reject_str("{" GOOD ",\"context\":{\"client_hints\":\"Windows\"}}",
               "context.client_hints: must be an object or null");
    reject_str("{" GOOD ",\"flags\":\"x\"}", "flags: must be an array of strings, got a string");
    reject_str("{" GOOD ",\"flags\":[\"a\",null]}", "flags[1]: must be a string, got null");
}

static void test_rows_buffer_full(void)
{
    static const char json[] = "{" GOOD "}";
    struct sl_ch_buf buf;
    struct sl_err err;
    size_t row_len;

    /* The row's size. */
    append_ok(&buf, json);
    row_len = buf.len;
    sl_ch_buf_fini(&buf);

    /* Exactly enough room: fits. */
    sl_ch_buf_init(&buf, 10 + row_len);
    ASSERT_OK(sl_ch_buf_append_str(&buf, "0123456789"), NULL);
    ASSERT_OK(ingest_rows_append(&buf, json, strlen(json), 1, &err), &err);
    ASSERT_EQ_INT(buf.len, 10 + row_len);
    sl_ch_buf_fini(&buf);

    /* One byte short: SL_EBUSY, buffer unchanged. */
    sl_ch_buf_init(&buf, 10 + row_len - 1);
    ASSERT_OK(sl_ch_buf_append_str(&buf, "0123456789"), NULL);
    ASSERT_EQ_INT(ingest_rows_append(&buf, json, strlen(json), 1, &err), SL_EBUSY);
    ASSERT_CONTAINS(err.msg, "the batch buffer is full");
    ASSERT_EQ_INT(buf.len, 10);
    ASSERT_EQ_STR(buf.data, "0123456789");
    /* After the batch went out, the row fits in the emptied buffer. */
    sl_ch_buf_reset(&buf);
    ASSERT_OK(ingest_rows_append(&buf, json, strlen(json), 1, &err), &err);
    ASSERT_EQ_INT(buf.len, row_len);
    sl_ch_buf_fini(&buf);

    /* A row larger than an empty buffer may hold can never load. */
    sl_ch_buf_init(&buf, row_len - 1);
    ASSERT_EQ_INT(ingest_rows_append(&buf, json, strlen(json), 1, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "is larger than the batch buffer may hold");
    ASSERT_EQ_INT(buf.len, 0);
    sl_ch_buf_fini(&buf);
}

/* Rows appended one after another are concatenated: a batch is many rows. */
static void test_rows_batch_concatenates(void)
{
    struct sl_ch_buf one;
    struct sl_ch_buf batch;
    struct sl_err err;

    append_ok(&one, full_event);
    sl_ch_buf_init(&batch, 1 << 20);
    for (int i = 0; i < 3; i++) {
        ASSERT_OK(ingest_rows_append(&batch, full_event, strlen(full_event), VERSION, &err),
                  &err);
    }
    ASSERT_EQ_INT(batch.len, 3 * one.len);
    for (int i = 0; i < 3; i++) {
        ASSERT_TRUE(memcmp(batch.data + (size_t)i * one.len, one.data, one.len) == 0);
    }
    sl_ch_buf_fini(&one);
    sl_ch_buf_fini(&batch);
}

/* What the edge writes loads: its normalized events, a log event and a pageview with
 * context from the request, go through unchanged. */
static void test_rows_edge_output_loads(void)
{
    static const char body[] =
        "{\"events\":["
        "{\"type\":\"pageview\",\"session_id\":\"s\",\"timestamp\":\"2026-11-24T09:59:58.25Z\","
        "\"properties\":{\"r\":0.1,\"n\":[1,2]},\"context\":{\"url\":\"https://e/x\","
        "\"path\":\"/x\",\"client_hints\":{\"Sec-CH-UA-Platform\":\"\\\"Windows\\\"\","
        "\"Sec-CH-UA-Platform-Version\":\"\\\"15.0.0\\\"\"}}},"
        "{\"type\":\"log\",\"severity\":\"warn\",\"message\":\"m\",\"source\":\"s\"}]}";
    struct ingest_event_ctx ctx = {
        .tenant_id = TENANT,
        .received_us = TS_S * 1000000 + 5000,
        .client_ip = "203.0.113.7",
        .user_agent = "TestAgent/1.0",
    };
    struct ingest_event_batch b;
    struct sl_err err;

    ASSERT_OK(ingest_event_parse_batch(body, strlen(body), NULL, &ctx, &b, &err), &err);
    ASSERT_EQ_INT(b.n_events, 2);
    for (size_t i = 0; i < b.n_events; i++) {
        struct sl_ch_buf buf;
        struct reader r;
        char id[37];

        append_ok(&buf, b.events[i].json);
        r.p = (const unsigned char *)buf.data;
        r.end = r.p + buf.len;
        read_uuid(&r, id);
        ASSERT_EQ_STR(id, b.events[i].id);
        expect_str(&r, "tenant_id", TENANT);
        expect_str(&r, "type", i == 0 ? "pageview" : "log");
        expect_str(&r, "name", "");
        ASSERT_EQ_INT(read_le(&r, 4) * 1000 + read_le(&r, 2), b.events[i].ts_ms);
        ASSERT_EQ_INT(read_le(&r, 4), TS_S);
        expect_str(&r, "session_id", i == 0 ? "s" : "");
        expect_str(&r, "anonymous_id", "");
        expect_str(&r, "user_id", "");
        expect_str(&r, "properties", i == 0 ? "{\"r\":0.1,\"n\":[1,2]}" : "{}");
        expect_str(&r, "user_agent", "TestAgent/1.0");
        expect_str(&r, "ip", "203.0.113.7");
        expect_str(&r, "url", i == 0 ? "https://e/x" : "");
        expect_str(&r, "path", i == 0 ? "/x" : "");
        for (int c = 0; c < 6; c++) {
            expect_str(&r, "context", "");
        }
        /* The hints the edge checked, as compact JSON. */
        expect_str(&r, "client_hints",
                   i == 0 ? "{\"Sec-CH-UA-Platform\":\"\\\"Windows\\\"\","
                            "\"Sec-CH-UA-Platform-Version\":\"\\\"15.0.0\\\"\"}"
                          : "");
        expect_str(&r, "severity", i == 0 ? "" : "warn");
        expect_str(&r, "source", i == 0 ? "" : "s");
        expect_str(&r, "message", i == 0 ? "" : "m");
        /* Both ids were made by the edge. */
        ASSERT_EQ_INT(read_leb(&r), 1);
        expect_str(&r, "flags[0]", "id_generated");
        expect_tail(&r, VERSION);
        sl_ch_buf_fini(&buf);
    }
    ingest_event_batch_fini(&b);
}

/* Every allocation failure gives SL_ENOMEM (never SL_EINVAL: the message is good) and
 * leaves the buffer unchanged; once allocations succeed the row is the reference one. */
static void test_rows_alloc_failures(void)
{
    struct sl_ch_buf ref;
    struct sl_ch_buf buf;
    struct sl_err err;
    int rc = SL_ENOMEM;
    long n;

    append_ok(&ref, full_event);
    for (n = 0; n < 10000 && rc != 0; n++) {
        sl_ch_buf_init(&buf, 1 << 20);
        ASSERT_OK(sl_ch_buf_append_str(&buf, "x"), NULL);
        sl_alloc_fail_after(n);
        rc = ingest_rows_append(&buf, full_event, strlen(full_event), VERSION, &err);
        sl_alloc_fail_after(-1);
        if (rc != 0) {
            ASSERT_EQ_INT(rc, SL_ENOMEM);
            ASSERT_EQ_INT(buf.len, 1);
            ASSERT_EQ_STR(buf.data, "x");
        }
        else {
            ASSERT_EQ_INT(buf.len, ref.len + 1);
            ASSERT_TRUE(memcmp(buf.data + 1, ref.data, ref.len) == 0);
        }
        sl_ch_buf_fini(&buf);
    }
    ASSERT_EQ_INT(rc, 0);
    ASSERT_TRUE(n > 3);
    /* A bad message stays SL_EINVAL whatever fails after the parse. */
    rc = SL_ENOMEM;
    for (n = 0; n < 10000 && rc == SL_ENOMEM; n++) {
        sl_ch_buf_init(&buf, 1 << 20);
        sl_alloc_fail_after(n);
        rc = ingest_rows_append(&buf, "{\"id\":", 6, VERSION, &err);
        sl_alloc_fail_after(-1);
        sl_ch_buf_fini(&buf);
    }
    ASSERT_EQ_INT(rc, SL_EINVAL);
    sl_ch_buf_fini(&ref);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_rows_insert_sql),
        TEST_CASE(test_rows_full_event_bytes),
        TEST_CASE(test_rows_full_event_columns),
        TEST_CASE(test_rows_minimal_event_defaults),
        TEST_CASE(test_rows_properties_text),
        TEST_CASE(test_rows_times),
        TEST_CASE(test_rows_rejections),
        TEST_CASE(test_rows_buffer_full),
        TEST_CASE(test_rows_batch_concatenates),
        TEST_CASE(test_rows_edge_output_loads),
        TEST_CASE(test_rows_alloc_failures),
        {NULL, NULL},
    };

    sl_alloc_init_jansson();
    return test_main(argc, argv, cases);
}

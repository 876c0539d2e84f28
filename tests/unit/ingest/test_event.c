/* Tests ingest/event.c: request shapes, every validation rule (failing and passing), id
 * generation and normalization, times with offsets and fractions, clock-skew correction
 * and clamping, tenant mismatch, context from the request, the normalized JSON field by
 * field, the response body, and allocation failures. */
#include <jansson.h>

#include "alloc.h"
#include "event.h"
#include "test.h"

/* 2026-11-24T10:00:00.123456Z */
#define RECV_S INT64_C(1795514400)
#define RECV_US (RECV_S * 1000000 + 123456)
#define RECV_MS (RECV_S * 1000 + 123)
#define TENANT "tn_0123456789abcdef"
#define DAY_MS INT64_C(86400000)

static struct ingest_event_ctx default_ctx(void)
{
    return (struct ingest_event_ctx){
        .tenant_id = TENANT,
        .received_us = RECV_US,
        .client_ip = "203.0.113.7",
        .user_agent = "TestAgent/1.0",
    };
}

static int parse_with(const char *body, const struct ingest_event_limits *lim,
                      const struct ingest_event_ctx *ctx, struct ingest_event_batch *b,
                      struct sl_err *err)
{
    return ingest_event_parse_batch(body, strlen(body), lim, ctx, b, err);
}

static int parse(const char *body, struct ingest_event_batch *b, struct sl_err *err)
{
    struct ingest_event_ctx ctx = default_ctx();

    return parse_with(body, NULL, &ctx, b, err);
}

/* Parses an accepted event's JSON back (caller decrefs). */
static json_t *load(const struct ingest_event *ev)
{
    json_error_t jerr;
    json_t *j = json_loads(ev->json, 0, &jerr);

    if (j == NULL) {
        TEST_FAIL("normalized event is not JSON: %s: %s", jerr.text, ev->json);
    }
    ASSERT_EQ_INT(strlen(ev->json), ev->json_len);
    return j;
}

static const char *str_of(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);

    if (!json_is_string(v)) {
        TEST_FAIL("%s is not a string", key);
    }
    return json_string_value(v);
}

static bool is_null_field(const json_t *obj, const char *key)
{
    return json_is_null(json_object_get(obj, key));
}

/* Accepts exactly one event from body; returns its JSON (caller decrefs and finis b). */
static json_t *accept_one(const char *body, struct ingest_event_batch *b)
{
    struct sl_err err;

    ASSERT_OK(parse(body, b, &err), &err);
    if (b->n_events != 1) {
        TEST_FAIL("not accepted: %s: %s", body,
                  b->n_errors > 0 ? b->errors[0].reason : "(no error)");
    }
    ASSERT_EQ_INT(b->http_status, 200);
    return load(&b->events[0]);
}

static void accept_ok(const char *body)
{
    struct ingest_event_batch b;
    json_t *j = accept_one(body, &b);

    json_decref(j);
    ingest_event_batch_fini(&b);
}

static int64_t accept_ts_ms(const char *body)
{
    struct ingest_event_batch b;
    json_t *j = accept_one(body, &b);
    int64_t ts = b.events[0].ts_ms;

    json_decref(j);
    ingest_event_batch_fini(&b);
    return ts;
}

static const struct ingest_event_error *find_error(const struct ingest_event_batch *b,
                                                   size_t index, const char *field)
{
    for (size_t i = 0; i < b->n_errors; i++) {
        if (b->errors[i].index == index && strcmp(b->errors[i].field, field) == 0) {
            return &b->errors[i];
        }
    }
    return NULL;
}

/* body (one event) must be rejected with an error on field whose reason contains part. */
static void reject_with(const char *body, const struct ingest_event_limits *lim,
                        const char *field, const char *part)
{
    struct ingest_event_ctx ctx = default_ctx();
    struct ingest_event_batch b;
    const struct ingest_event_error *e;
    struct sl_err err;

    ASSERT_OK(parse_with(body, lim, &ctx, &b, &err), &err);
    ASSERT_EQ_INT(b.n_input, 1);
    ASSERT_EQ_INT(b.n_events, 0);
    ASSERT_EQ_INT(b.n_rejected, 1);
    ASSERT_EQ_INT(b.http_status, 422);
    e = find_error(&b, 0, field);
    if (e == NULL) {
        TEST_FAIL("no error on '%s' for %s (first: %s: %s)", field, body,
                  b.n_errors > 0 ? b.errors[0].field : "-",
                  b.n_errors > 0 ? b.errors[0].reason : "-");
    }
    ASSERT_CONTAINS(e->reason, part);
    ingest_event_batch_fini(&b);
}

static void reject(const char *body, const char *field, const char *part)
{
    reject_with(body, NULL, field, part);
}

/* As reject, with the reason compared whole. */
static void reject_exact(const char *body, const char *field, const char *reason)
{
    struct ingest_event_batch b;
    const struct ingest_event_error *e;
    struct sl_err err;

    ASSERT_OK(parse(body, &b, &err), &err);
    e = find_error(&b, 0, field);
    if (e == NULL) {
        TEST_FAIL("no error on '%s' for %s", field, body);
    }
    ASSERT_EQ_STR(e->reason, reason);
    ingest_event_batch_fini(&b);
}

/* A body of one event of type with key set to c repeated n times (caller frees). */
static char *event_with(const char *type, const char *key, char c, size_t n)
{
    size_t cap = n + 128;
    char *s = malloc(cap);
    int head;

    ASSERT_TRUE(s != NULL);
    head = snprintf(s, cap, "{\"type\":\"%s\",\"%s\":\"", type, key);
    memset(s + head, c, n);
    strcpy(s + head + n, "\"}");
    return s;
}

/* As event_with for a context field. */
static char *context_with(const char *key, char c, size_t n)
{
    size_t cap = n + 128;
    char *s = malloc(cap);
    int head;

    ASSERT_TRUE(s != NULL);
    head = snprintf(s, cap, "{\"type\":\"click\",\"context\":{\"%s\":\"", key);
    memset(s + head, c, n);
    strcpy(s + head + n, "\"}}");
    return s;
}

/* ---- shapes --------------------------------------------------------------------- */

static void test_event_single_object_normalized(void)
{
    struct ingest_event_batch b;
    json_t *j;
    json_t *ctx;
    json_t *props;

    j = accept_one("{\"id\":\"6F9619FF-8B86-4D01-B42D-00C04FC964FF\",\"type\":\"click\","
                   "\"tenant_id\":\"" TENANT "\",\"name\":\"signup button\","
                   "\"session_id\":\"s-1\",\"anonymous_id\":\"a-1\",\"user_id\":\"u-1\","
                   "\"timestamp\":\"2026-11-24T09:59:58.5+00:00\","
                   "\"properties\":{\"plan\":\"pro\",\"n\":3,\"ok\":true,\"x\":[1,{\"y\":null}]},"
                   "\"context\":{\"user_agent\":\"Mozilla/5.0\",\"ip\":\"198.51.100.9\","
                   "\"url\":\"https://example.com/a?b=1\",\"path\":\"/a\",\"referrer\":\"\","
                   "\"title\":\"Home\",\"screen\":\"1920x1080\",\"viewport\":\"1280x720\","
                   "\"timezone\":\"Europe/Berlin\",\"language\":\"de-DE\"}}",
                   &b);
    /* The C fields. */
    ASSERT_EQ_INT(b.n_input, 1);
    ASSERT_EQ_INT(b.events[0].index, 0);
    ASSERT_EQ_INT(b.events[0].type, INGEST_EVENT_CLICK);
    ASSERT_EQ_STR(b.events[0].id, "6f9619ff-8b86-4d01-b42d-00c04fc964ff");
    ASSERT_EQ_STR(b.events[0].session_id, "s-1");
    ASSERT_EQ_INT(b.events[0].ts_ms, RECV_S * 1000 - 1500);
    ASSERT_EQ_INT(b.events[0].flags, 0);
    /* The JSON, field by field. */
    ASSERT_EQ_INT(json_integer_value(json_object_get(j, "schema_version")), 1);
    ASSERT_EQ_STR(str_of(j, "id"), "6f9619ff-8b86-4d01-b42d-00c04fc964ff");
    ASSERT_EQ_STR(str_of(j, "tenant_id"), TENANT);
    ASSERT_EQ_STR(str_of(j, "type"), "click");
    ASSERT_EQ_STR(str_of(j, "name"), "signup button");
    ASSERT_EQ_STR(str_of(j, "ts"), "2026-11-24T09:59:58.500Z");
    ASSERT_EQ_STR(str_of(j, "received_at"), "2026-11-24T10:00:00.123Z");
    ASSERT_EQ_STR(str_of(j, "session_id"), "s-1");
    ASSERT_EQ_STR(str_of(j, "anonymous_id"), "a-1");
    ASSERT_EQ_STR(str_of(j, "user_id"), "u-1");
    ASSERT_TRUE(json_object_get(j, "severity") == NULL);
    ASSERT_TRUE(json_object_get(j, "message") == NULL);
    ASSERT_TRUE(json_object_get(j, "timestamp") == NULL);
    props = json_object_get(j, "properties");
    ASSERT_EQ_STR(str_of(props, "plan"), "pro");
    ASSERT_EQ_INT(json_integer_value(json_object_get(props, "n")), 3);
    ASSERT_TRUE(json_is_true(json_object_get(props, "ok")));
    ASSERT_EQ_INT(json_array_size(json_object_get(props, "x")), 2);
    ctx = json_object_get(j, "context");
    ASSERT_EQ_STR(str_of(ctx, "user_agent"), "Mozilla/5.0");
    ASSERT_EQ_STR(str_of(ctx, "ip"), "198.51.100.9");
    ASSERT_EQ_STR(str_of(ctx, "url"), "https://example.com/a?b=1");
    ASSERT_EQ_STR(str_of(ctx, "path"), "/a");
    ASSERT_TRUE(json_object_get(ctx, "referrer") == NULL); /* "" is absent */
    ASSERT_EQ_STR(str_of(ctx, "title"), "Home");
    ASSERT_EQ_STR(str_of(ctx, "screen"), "1920x1080");
    ASSERT_EQ_STR(str_of(ctx, "viewport"), "1280x720");
    ASSERT_EQ_STR(str_of(ctx, "timezone"), "Europe/Berlin");
    ASSERT_EQ_STR(str_of(ctx, "language"), "de-DE");
    ASSERT_EQ_INT(json_object_size(ctx), 9);
    ASSERT_EQ_INT(json_array_size(json_object_get(j, "flags")), 0);
    ASSERT_EQ_INT(json_object_size(j), 13);
    /* Compact: no spaces outside strings. */
    ASSERT_NOT_CONTAINS(b.events[0].json, "\": ");
    ASSERT_NOT_CONTAINS(b.events[0].json, ", \"");
    json_decref(j);
    ingest_event_batch_fini(&b);
}

static void test_event_minimal_gets_defaults(void)
{
    struct ingest_event_batch b;
    json_t *j = accept_one("{\"type\":\"pageview\",\"user_id\":null}", &b);
    json_t *ctx = json_object_get(j, "context");
    json_t *flags = json_object_get(j, "flags");

    ASSERT_TRUE(b.events[0].session_id == NULL);
    ASSERT_EQ_INT(b.events[0].ts_ms, RECV_MS);
    ASSERT_EQ_INT(b.events[0].flags, INGEST_EVENT_FLAG_ID_GENERATED);
    ASSERT_EQ_STR(str_of(j, "ts"), "2026-11-24T10:00:00.123Z");
    ASSERT_EQ_STR(str_of(j, "id"), b.events[0].id);
    ASSERT_TRUE(is_null_field(j, "name"));
    ASSERT_TRUE(is_null_field(j, "session_id"));
    ASSERT_TRUE(is_null_field(j, "anonymous_id"));
    ASSERT_TRUE(is_null_field(j, "user_id"));
    ASSERT_EQ_INT(json_object_size(json_object_get(j, "properties")), 0);
    ASSERT_TRUE(json_is_object(json_object_get(j, "properties")));
    ASSERT_EQ_STR(str_of(ctx, "user_agent"), "TestAgent/1.0");
    ASSERT_EQ_STR(str_of(ctx, "ip"), "203.0.113.7");
    ASSERT_EQ_INT(json_object_size(ctx), 2);
    ASSERT_EQ_INT(json_array_size(flags), 1);
    ASSERT_EQ_STR(json_string_value(json_array_get(flags, 0)), "id_generated");
    json_decref(j);
    ingest_event_batch_fini(&b);
}

static void test_event_batch_keeps_order_and_indexes(void)
{
    const char *body =
        "{\"events\":["
        "{\"type\":\"pageview\",\"name\":\"e0\"},"
        "{\"type\":\"pageveiw\"},"
        "{\"type\":\"custom\",\"name\":\"e2\"},"
        "{\"type\":\"custom\"},"
        "{\"type\":\"scroll\",\"name\":\"e4\"}]}";
    struct ingest_event_batch b;
    struct sl_err err;

    ASSERT_OK(parse(body, &b, &err), &err);
    ASSERT_EQ_INT(b.n_input, 5);
    ASSERT_EQ_INT(b.n_events, 3);
    ASSERT_EQ_INT(b.n_rejected, 2);
    ASSERT_EQ_INT(b.http_status, 200); /* something was stored */
    ASSERT_EQ_INT(b.events[0].index, 0);
    ASSERT_EQ_INT(b.events[1].index, 2);
    ASSERT_EQ_INT(b.events[2].index, 4);
    for (size_t i = 0; i < 3; i++) {
        json_t *j = load(&b.events[i]);
        char name[8];

        snprintf(name, sizeof(name), "e%zu", b.events[i].index);
        ASSERT_EQ_STR(str_of(j, "name"), name);
        json_decref(j);
    }
    ASSERT_EQ_INT(b.n_errors, 2);
    ASSERT_EQ_INT(b.errors[0].index, 1);
    ASSERT_EQ_STR(b.errors[0].field, "type");
    ASSERT_EQ_INT(b.errors[1].index, 3);
    ASSERT_EQ_STR(b.errors[1].field, "name");
    ASSERT_EQ_STR(b.errors[1].reason, "is required for custom events");
    ingest_event_batch_fini(&b);

    /* A full batch of good events answers 200; one with nothing good 422. */
    ASSERT_OK(parse("{\"events\":[{\"type\":\"scroll\"},{\"type\":\"performance\"}]}", &b, &err),
              &err);
    ASSERT_EQ_INT(b.n_events, 2);
    ASSERT_EQ_INT(b.http_status, 200);
    ingest_event_batch_fini(&b);
    ASSERT_OK(parse("{\"events\":[{\"type\":\"x\"},{\"type\":\"y\"}]}", &b, &err), &err);
    ASSERT_EQ_INT(b.n_events, 0);
    ASSERT_EQ_INT(b.n_rejected, 2);
    ASSERT_EQ_INT(b.http_status, 422);
    ingest_event_batch_fini(&b);
}

static void test_event_response_body(void)
{
    const char *body = "{\"events\":[{\"type\":\"pageview\"},{\"type\":\"pageveiw\"},7]}";
    struct ingest_event_batch b;
    struct sl_err err;
    char *resp = NULL;
    size_t len = 0;
    json_t *j;
    json_t *errors;
    json_error_t jerr;

    ASSERT_OK(parse(body, &b, &err), &err);
    ASSERT_OK(ingest_event_batch_response(&b, &resp, &len), NULL);
    ASSERT_EQ_INT(strlen(resp), len);
    j = json_loads(resp, 0, &jerr);
    ASSERT_TRUE(j != NULL);
    ASSERT_EQ_INT(json_integer_value(json_object_get(j, "accepted")), 1);
    ASSERT_EQ_INT(json_integer_value(json_object_get(j, "rejected")), 2);
    errors = json_object_get(j, "errors");
    ASSERT_EQ_INT(json_array_size(errors), 2);
    ASSERT_EQ_INT(json_integer_value(json_object_get(json_array_get(errors, 0), "index")), 1);
    ASSERT_EQ_STR(str_of(json_array_get(errors, 0), "field"), "type");
    ASSERT_EQ_STR(str_of(json_array_get(errors, 0), "reason"),
                  "unknown type 'pageveiw' (use pageview, click, scroll, performance, custom, "
                  "identify, log)");
    ASSERT_EQ_INT(json_integer_value(json_object_get(json_array_get(errors, 1), "index")), 2);
    ASSERT_TRUE(is_null_field(json_array_get(errors, 1), "field"));
    ASSERT_EQ_STR(str_of(json_array_get(errors, 1), "reason"),
                  "an event must be a JSON object, got a number");
    json_decref(j);
    sl_free(resp);
    ingest_event_batch_fini(&b);

    /* All accepted: an empty error list. */
    ASSERT_OK(parse("{\"type\":\"pageview\"}", &b, &err), &err);
    ASSERT_OK(ingest_event_batch_response(&b, &resp, &len), NULL);
    ASSERT_EQ_STR(resp, "{\"accepted\":1,\"rejected\":0,\"errors\":[]}");
    sl_free(resp);
    ingest_event_batch_fini(&b);
}

static void test_event_unparseable_body(void)
{
    struct ingest_event_batch b;
    struct sl_err err;

    ASSERT_EQ_INT(parse("{\"type\":", &b, &err), SL_EINVAL);
    ASSERT_EQ_INT(b.http_status, 400);
    ASSERT_EQ_INT(b.n_events, 0);
    ASSERT_CONTAINS(err.msg, "not valid JSON");
    ASSERT_CONTAINS(err.msg, "line 1, column");
    ingest_event_batch_fini(&b);

    ASSERT_EQ_INT(parse("{\n  \"type\": \"pageview\",\n  \"name\": tru\n}", &b, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "line 3, column");
    ingest_event_batch_fini(&b);

    ASSERT_EQ_INT(parse("", &b, &err), SL_EINVAL);
    ASSERT_EQ_INT(b.http_status, 400);
    ingest_event_batch_fini(&b);

    /* Duplicate keys are ambiguous: refused as a whole. */
    ASSERT_EQ_INT(parse("{\"type\":\"click\",\"type\":\"pageview\"}", &b, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "duplicate");
    ingest_event_batch_fini(&b);

    /* A body that is not NUL-terminated: only len bytes count. */
    ASSERT_OK(ingest_event_parse_batch("{\"type\":\"click\"}garbage", 16, NULL,
                                       &(struct ingest_event_ctx){.tenant_id = TENANT,
                                                                  .received_us = RECV_US},
                                       &b, &err), &err);
    ASSERT_EQ_INT(b.n_events, 1);
    ingest_event_batch_fini(&b);
}

static void test_event_request_shapes(void)
{
    struct ingest_event_limits lim = ingest_event_limits_default();
    struct ingest_event_ctx ctx = default_ctx();
    struct ingest_event_batch b;
    struct sl_err err;
    char *big;
    size_t off = 0;

    ASSERT_EQ_INT(parse("[{\"type\":\"click\"}]", &b, &err), SL_EINVAL);
    ASSERT_EQ_INT(b.http_status, 400);
    ASSERT_CONTAINS(err.msg, "must be a JSON object");
    ASSERT_CONTAINS(err.msg, "got an array");
    ingest_event_batch_fini(&b);

    ASSERT_EQ_INT(parse("42", &b, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "got a number");
    ingest_event_batch_fini(&b);

    ASSERT_EQ_INT(parse("{\"events\":{}}", &b, &err), SL_EINVAL);
    ASSERT_EQ_INT(b.http_status, 400);
    ASSERT_EQ_STR(err.msg, "events must be an array, got an object");
    ingest_event_batch_fini(&b);

    ASSERT_EQ_INT(parse("{\"events\":[]}", &b, &err), SL_EINVAL);
    ASSERT_EQ_INT(b.http_status, 400);
    ASSERT_EQ_STR(err.msg, "events is empty (send 1 to 1000 events)");
    ingest_event_batch_fini(&b);

    ASSERT_EQ_INT(parse("{\"events\":[{\"type\":\"click\"}],\"batch_id\":1}", &b, &err),
                  SL_EINVAL);
    ASSERT_EQ_INT(b.http_status, 400);
    ASSERT_CONTAINS(err.msg, "unknown field 'batch_id' in the batch object");
    ingest_event_batch_fini(&b);

    /* Too many events: 413, at the default limit and at a configured one. */
    big = malloc(1001 * 20 + 64);
    ASSERT_TRUE(big != NULL);
    off += (size_t)sprintf(big, "{\"events\":[");
    for (int i = 0; i < 1001; i++) {
        off += (size_t)sprintf(big + off, "%s{\"type\":\"click\"}", i > 0 ? "," : "");
    }
    strcpy(big + off, "]}");
    ASSERT_EQ_INT(parse(big, &b, &err), SL_EINVAL);
    ASSERT_EQ_INT(b.http_status, 413);
    ASSERT_EQ_STR(err.msg, "1001 events in one request; the limit is 1000");
    ASSERT_EQ_INT(b.n_events, 0);
    ingest_event_batch_fini(&b);
    /* 1000 is fine. */
    strcpy(big + off - strlen(",{\"type\":\"click\"}"), "]}");
    ASSERT_OK(parse(big, &b, &err), &err);
    ASSERT_EQ_INT(b.n_events, 1000);
    ingest_event_batch_fini(&b);
    free(big);
    lim.max_batch_events = 2;
    ASSERT_EQ_INT(parse_with("{\"events\":[{\"type\":\"click\"},{\"type\":\"click\"},"
                             "{\"type\":\"click\"}]}", &lim, &ctx, &b, &err), SL_EINVAL);
    ASSERT_EQ_INT(b.http_status, 413);
    ingest_event_batch_fini(&b);

    /* An element that is not an object is a per-event error on the event as a whole. */
    ASSERT_OK(parse("{\"events\":[\"click\",{\"type\":\"click\"}]}", &b, &err), &err);
    ASSERT_EQ_INT(b.n_events, 1);
    ASSERT_EQ_INT(b.events[0].index, 1);
    ASSERT_EQ_STR(b.errors[0].field, "");
    ASSERT_EQ_STR(b.errors[0].reason, "an event must be a JSON object, got a string");
    ingest_event_batch_fini(&b);
}

/* ---- fields ----------------------------------------------------------------------- */

static void test_event_id_generated_v4_unique(void)
{
    struct ingest_event_batch b;
    struct sl_err err;
    char *body = malloc(1000 * 20 + 64);
    size_t off = 0;

    ASSERT_TRUE(body != NULL);
    off += (size_t)sprintf(body, "{\"events\":[");
    for (int i = 0; i < 1000; i++) {
        off += (size_t)sprintf(body + off, "%s{\"type\":\"click\"}", i > 0 ? "," : "");
    }
    strcpy(body + off, "]}");
    ASSERT_OK(parse(body, &b, &err), &err);
    ASSERT_EQ_INT(b.n_events, 1000);
    for (size_t i = 0; i < b.n_events; i++) {
        const char *id = b.events[i].id;

        ASSERT_EQ_INT(strlen(id), 36);
        for (size_t k = 0; k < 36; k++) {
            if (k == 8 || k == 13 || k == 18 || k == 23) {
                ASSERT_EQ_INT(id[k], '-');
            }
            else {
                ASSERT_TRUE(strchr("0123456789abcdef", id[k]) != NULL);
            }
        }
        ASSERT_EQ_INT(id[14], '4');                          /* version 4 */
        ASSERT_TRUE(strchr("89ab", id[19]) != NULL);         /* RFC 4122 variant */
        ASSERT_TRUE(b.events[i].flags & INGEST_EVENT_FLAG_ID_GENERATED);
        for (size_t k = 0; k < i; k++) {
            ASSERT_TRUE(strcmp(id, b.events[k].id) != 0);
        }
    }
    ingest_event_batch_fini(&b);
    free(body);
}

static void test_event_id_rules(void)
{
    struct ingest_event_batch b;
    json_t *j;

    j = accept_one("{\"type\":\"click\",\"id\":\"ABCDEF01-2345-6789-ABCD-EF0123456789\"}", &b);
    ASSERT_EQ_STR(b.events[0].id, "abcdef01-2345-6789-abcd-ef0123456789");
    ASSERT_EQ_STR(str_of(j, "id"), "abcdef01-2345-6789-abcd-ef0123456789");
    ASSERT_EQ_INT(b.events[0].flags, 0);
    ASSERT_EQ_INT(json_array_size(json_object_get(j, "flags")), 0);
    json_decref(j);
    ingest_event_batch_fini(&b);

    reject_exact("{\"type\":\"click\",\"id\":\"abc\"}", "id",
                 "not a UUID: 'abc' (use the 8-4-4-4-12 hex form)");
    reject("{\"type\":\"click\",\"id\":\"abcdef0123456789abcdef0123456789\"}", "id", "not a UUID");
    reject("{\"type\":\"click\",\"id\":\"abcdef01-2345-6789-abcd-ef012345678g\"}", "id",
           "not a UUID");
    reject("{\"type\":\"click\",\"id\":\"abcdef01-2345-6789-abcd-ef01234567899\"}", "id",
           "not a UUID");
    reject("{\"type\":\"click\",\"id\":\"abcdef01+2345-6789-abcd-ef0123456789\"}", "id",
           "not a UUID");
    reject_exact("{\"type\":\"click\",\"id\":42}", "id", "must be a UUID string, got a number");
    reject("{\"type\":\"click\",\"id\":\"00000000-0000-0000-0000-000000000000\"}", "id",
           "placeholder");
    reject("{\"type\":\"click\",\"id\":\"FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF\"}", "id",
           "placeholder");
}

static void test_event_type_rules(void)
{
    static const char *const types[] = {"pageview", "click", "scroll", "performance",
                                        "custom", "identify", "log"};

    reject_exact("{\"type\":\"pageveiw\"}", "type",
                 "unknown type 'pageveiw' (use pageview, click, scroll, performance, custom, "
                 "identify, log)");
    reject_exact("{\"name\":\"x\"}", "type",
                 "is required (one of pageview, click, scroll, performance, custom, identify, "
                 "log)");
    reject("{\"type\":null}", "type", "is required");
    reject_exact("{\"type\":7}", "type", "must be a string, got a number");
    reject("{\"type\":\"PageView\"}", "type", "unknown type 'PageView'");
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        char body[160];
        struct ingest_event_batch b;
        json_t *j;

        snprintf(body, sizeof(body),
                 "{\"type\":\"%s\",\"name\":\"n\",\"user_id\":\"u\",\"message\":\"m\"}",
                 types[i]);
        if (strcmp(types[i], "log") != 0) {
            snprintf(body, sizeof(body), "{\"type\":\"%s\",\"name\":\"n\",\"user_id\":\"u\"}",
                     types[i]);
        }
        j = accept_one(body, &b);
        ASSERT_EQ_STR(str_of(j, "type"), types[i]);
        ASSERT_EQ_STR(ingest_event_type_name(b.events[0].type), types[i]);
        ASSERT_EQ_INT(b.events[0].type, i);
        json_decref(j);
        ingest_event_batch_fini(&b);
    }
}

static void test_event_name_rules(void)
{
    char *s;

    /* Required for custom only; optional for the rest (autocapture clicks have none). */
    reject_exact("{\"type\":\"custom\"}", "name", "is required for custom events");
    reject("{\"type\":\"custom\",\"name\":null}", "name", "is required for custom events");
    accept_ok("{\"type\":\"custom\",\"name\":\"checkout\"}");
    accept_ok("{\"type\":\"click\"}");
    reject_exact("{\"type\":\"click\",\"name\":\"\"}", "name",
                 "must not be empty (leave it out or send null)");
    reject_exact("{\"type\":\"click\",\"name\":[\"a\"]}", "name",
                 "must be a string, got an array");
    reject_exact("{\"type\":\"click\",\"name\":\"a\\tb\"}", "name",
                 "contains a control character (U+0009) at byte 1");
    s = event_with("click", "name", 'n', 256);
    accept_ok(s);
    free(s);
    s = event_with("click", "name", 'n', 257);
    reject(s, "name", "longer than 256 bytes");
    free(s);
    /* Multibyte text counts bytes: 128 "é" are 256 bytes. */
    {
        char body[600] = "{\"type\":\"click\",\"name\":\"";

        for (int i = 0; i < 128; i++) {
            strcat(body, "\xc3\xa9");
        }
        strcat(body, "\"}");
        accept_ok(body);
        body[strlen(body) - 2] = '\0';
        strcat(body, "x\"}");
        reject(body, "name", "longer than 256 bytes");
    }
}

static void test_event_ident_rules(void)
{
    static const char *const keys[] = {"session_id", "anonymous_id", "user_id"};

    for (size_t i = 0; i < 3; i++) {
        char body[200];
        char *s;

        snprintf(body, sizeof(body), "{\"type\":\"click\",\"%s\":12345}", keys[i]);
        reject(body, keys[i], "must be a string, got a number");
        snprintf(body, sizeof(body), "{\"type\":\"click\",\"%s\":\"\"}", keys[i]);
        reject(body, keys[i], "must not be empty");
        snprintf(body, sizeof(body), "{\"type\":\"click\",\"%s\":\"a\\nb\"}", keys[i]);
        reject(body, keys[i], "control character (U+000A) at byte 1");
        snprintf(body, sizeof(body), "{\"type\":\"click\",\"%s\":\"ab\\u0085\"}", keys[i]);
        reject(body, keys[i], "control character (U+0085) at byte 2");
        snprintf(body, sizeof(body), "{\"type\":\"click\",\"%s\":\"ab\\u007f\"}", keys[i]);
        reject(body, keys[i], "control character (U+007F)");
        snprintf(body, sizeof(body), "{\"type\":\"click\",\"%s\":null}", keys[i]);
        accept_ok(body);
        s = event_with("click", keys[i], 'x', 256);
        accept_ok(s);
        free(s);
        s = event_with("click", keys[i], 'x', 257);
        reject(s, keys[i], "longer than 256 bytes");
        free(s);
    }
    /* Non-ASCII text without controls is fine. */
    accept_ok("{\"type\":\"click\",\"user_id\":\"J\\u00fcrgen \\ud83d\\ude00\"}");
    /* identify names the user. */
    reject_exact("{\"type\":\"identify\",\"anonymous_id\":\"a\"}", "user_id",
                 "is required for identify events");
    accept_ok("{\"type\":\"identify\",\"anonymous_id\":\"a\",\"user_id\":\"u\"}");
}

static void test_event_unknown_fields(void)
{
    struct ingest_event_batch b;
    struct sl_err err;

    reject_exact("{\"type\":\"click\",\"timestmap\":\"x\"}", "timestmap",
                 "unknown field; did you mean 'timestamp'?");
    reject_exact("{\"type\":\"click\",\"userId\":\"u\"}", "userId",
                 "unknown field; did you mean 'user_id'?");
    reject_exact("{\"type\":\"click\",\"anonymousId\":\"u\"}", "anonymousId",
                 "unknown field; did you mean 'anonymous_id'?");
    reject_exact("{\"type\":\"click\",\"event\":\"Signed Up\"}", "event",
                 "unknown field; did you mean 'name'?");
    reject_exact("{\"type\":\"click\",\"messageId\":\"m\"}", "messageId",
                 "unknown field; did you mean 'id'?");
    reject_exact("{\"type\":\"click\",\"plan\":\"pro\"}", "plan",
                 "unknown field (custom data goes in properties)");
    reject_exact("{\"type\":\"click\",\"received_at\":\"x\"}", "received_at",
                 "unknown field (custom data goes in properties)");
    /* A short key is not matched to anything two edits away. */
    reject_exact("{\"type\":\"click\",\"xy\":1}", "xy",
                 "unknown field (custom data goes in properties)");

    /* Every problem of an event is listed, unknown fields first, then in field order. */
    ASSERT_OK(parse("{\"foo\":1,\"type\":\"nope\",\"name\":\"\",\"user_id\":5}", &b, &err), &err);
    ASSERT_EQ_INT(b.n_events, 0);
    ASSERT_EQ_INT(b.n_rejected, 1);
    ASSERT_EQ_INT(b.n_errors, 4);
    ASSERT_EQ_STR(b.errors[0].field, "foo");
    ASSERT_EQ_STR(b.errors[1].field, "type");
    ASSERT_EQ_STR(b.errors[2].field, "name");
    ASSERT_EQ_STR(b.errors[3].field, "user_id");
    ingest_event_batch_fini(&b);

    /* At most INGEST_EVENT_MAX_ERRORS_PER_EVENT are listed; the event counts once. */
    ASSERT_OK(parse("{\"events\":[{\"type\":\"click\",\"a1\":1,\"a2\":1,\"a3\":1,\"a4\":1,"
                    "\"a5\":1,\"a6\":1,\"a7\":1,\"a8\":1,\"a9\":1,\"a10\":1},"
                    "{\"type\":\"click\"},{\"b\":1}]}", &b, &err), &err);
    ASSERT_EQ_INT(b.n_rejected, 2);
    ASSERT_EQ_INT(b.n_events, 1);
    ASSERT_EQ_INT(b.n_errors, INGEST_EVENT_MAX_ERRORS_PER_EVENT + 2);
    ASSERT_EQ_INT(b.errors[INGEST_EVENT_MAX_ERRORS_PER_EVENT].index, 2);
    ingest_event_batch_fini(&b);

    /* A long, odd key is quoted safely in field: cut on a character, controls hidden. */
    ASSERT_OK(parse("{\"type\":\"click\",\"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"
                    "\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"
                    "\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\n\":1}",
                    &b, &err), &err);
    ASSERT_EQ_INT(b.n_errors, 1);
    ASSERT_TRUE(strlen(b.errors[0].field) <= 48 + 3);
    ASSERT_CONTAINS(b.errors[0].field, "...");
    {
        json_t *s = json_string(b.errors[0].field);

        ASSERT_TRUE(s != NULL); /* valid UTF-8 */
        json_decref(s);
    }
    ingest_event_batch_fini(&b);
}

/* ---- times ------------------------------------------------------------------------ */

static void test_event_timestamp_formats(void)
{
    int64_t base = RECV_S * 1000 - 3600 * 1000; /* 2026-11-24T09:00:00Z */

    ASSERT_EQ_INT(accept_ts_ms("{\"type\":\"click\",\"timestamp\":\"2026-11-24T09:00:00Z\"}"),
                  base);
    ASSERT_EQ_INT(accept_ts_ms("{\"type\":\"click\",\"timestamp\":\"2026-11-24t09:00:00z\"}"),
                  base);
    ASSERT_EQ_INT(
        accept_ts_ms("{\"type\":\"click\",\"timestamp\":\"2026-11-24T11:00:00.250+02:00\"}"),
        base + 250);
    ASSERT_EQ_INT(
        accept_ts_ms("{\"type\":\"click\",\"timestamp\":\"2026-11-24T03:30:00.1-05:30\"}"),
        base + 100);
    ASSERT_EQ_INT(
        accept_ts_ms("{\"type\":\"click\",\"timestamp\":\"2026-11-24T09:00:00.123456789Z\"}"),
        base + 123);
    ASSERT_EQ_INT(
        accept_ts_ms("{\"type\":\"click\",\"timestamp\":\"2026-11-24T09:00:00.999999-00:00\"}"),
        base + 999);
    /* Offsets that move the date either way. */
    ASSERT_EQ_INT(
        accept_ts_ms("{\"type\":\"click\",\"timestamp\":\"2026-11-25T01:00:00+14:00\"}"),
        base + 2 * 3600 * 1000);
    ASSERT_EQ_INT(
        accept_ts_ms("{\"type\":\"click\",\"timestamp\":\"2026-11-23T23:00:00-10:00\"}"),
        base);
    /* The normalized text is UTC with milliseconds. */
    {
        struct ingest_event_batch b;
        json_t *j = accept_one("{\"type\":\"click\",\"timestamp\":\"2026-11-24T11:00:00.2+02:00\"}",
                               &b);

        ASSERT_EQ_STR(str_of(j, "ts"), "2026-11-24T09:00:00.200Z");
        json_decref(j);
        ingest_event_batch_fini(&b);
    }
    reject_exact("{\"type\":\"click\",\"timestamp\":\"2026-13-01\"}", "timestamp",
                 "not an RFC 3339 time: '2026-13-01'");
    reject_exact("{\"type\":\"click\",\"timestamp\":\"2026-11-24T09:00:00\"}", "timestamp",
                 "not an RFC 3339 time: '2026-11-24T09:00:00' (add Z or an offset like +02:00)");
    reject_exact("{\"type\":\"click\",\"timestamp\":1795514400000}", "timestamp",
                 "not an RFC 3339 time: got a number (send a string like "
                 "2026-11-24T10:00:00.123Z)");
    reject("{\"type\":\"click\",\"timestamp\":\"2026-13-01T00:00:00Z\"}", "timestamp", "RFC 3339");
    reject("{\"type\":\"click\",\"timestamp\":\"2026-02-29T00:00:00Z\"}", "timestamp", "RFC 3339");
    reject("{\"type\":\"click\",\"timestamp\":\"2026-11-24T24:00:00Z\"}", "timestamp", "RFC 3339");
    reject("{\"type\":\"click\",\"timestamp\":\"2026-11-24T09:60:00Z\"}", "timestamp", "RFC 3339");
    reject("{\"type\":\"click\",\"timestamp\":\"2026-11-24 09:00:00Z\"}", "timestamp", "RFC 3339");
    reject("{\"type\":\"click\",\"timestamp\":\"2026-11-24T09:00:00.Z\"}", "timestamp", "RFC 3339");
    reject("{\"type\":\"click\",\"timestamp\":\"2026-11-24T09:00:00+0200\"}", "timestamp",
           "RFC 3339");
    reject("{\"type\":\"click\",\"timestamp\":\"2026-11-24T09:00:00+24:00\"}", "timestamp",
           "RFC 3339");
    reject("{\"type\":\"click\",\"timestamp\":\"2026-11-24T09:00:00Zjunk\"}", "timestamp",
           "RFC 3339");
    reject("{\"type\":\"click\",\"timestamp\":\"\"}", "timestamp", "RFC 3339");
    /* 2024 is a leap year. */
    reject("{\"type\":\"click\",\"timestamp\":\"2024-02-29T00:00:00Z\"}", "timestamp",
           "more than 30 days");
}

static void test_event_sent_at_corrects_skew(void)
{
    struct ingest_event_batch b;
    struct sl_err err;
    json_t *j;
    /* The client's clock is 5.25 s ahead: it says it sent at 10:00:05.373Z when we got
     * it at 10:00:00.123456Z. Its event at 09:59:00.000 really happened 5.25 s earlier
     * (and the 456 us of the receive time are kept until the ms are cut). */
    int64_t delta_us = RECV_US - ((RECV_S + 5) * 1000000 + 373000);
    int64_t expected_ms = ((RECV_S - 60) * 1000000 + delta_us) / 1000;

    j = accept_one("{\"type\":\"click\",\"timestamp\":\"2026-11-24T09:59:00Z\","
                   "\"sent_at\":\"2026-11-24T10:00:05.373Z\"}", &b);
    ASSERT_EQ_INT(delta_us, -5249544);
    ASSERT_EQ_INT(b.events[0].ts_ms, expected_ms);
    ASSERT_EQ_INT(b.events[0].ts_ms, (RECV_S - 60) * 1000 - 5250);
    ASSERT_EQ_STR(str_of(j, "ts"), "2026-11-24T09:58:54.750Z");
    ASSERT_EQ_INT(b.events[0].flags, INGEST_EVENT_FLAG_ID_GENERATED |
                                     INGEST_EVENT_FLAG_SKEW_CORRECTED);
    ASSERT_EQ_STR(json_string_value(json_array_get(json_object_get(j, "flags"), 1)),
                  "clock_skew_corrected");
    json_decref(j);
    ingest_event_batch_fini(&b);

    /* The batch's sent_at applies to every event; an event's own sent_at wins. A clock
     * behind by an hour moves the events forward. */
    ASSERT_OK(parse("{\"sent_at\":\"2026-11-24T09:00:00.123456Z\",\"events\":["
                    "{\"type\":\"click\",\"timestamp\":\"2026-11-24T08:59:00Z\"},"
                    "{\"type\":\"click\",\"timestamp\":\"2026-11-24T08:59:00Z\","
                    "\"sent_at\":\"2026-11-24T08:59:30+00:00\"},"
                    "{\"type\":\"click\"}]}", &b, &err), &err);
    ASSERT_EQ_INT(b.n_events, 3);
    ASSERT_EQ_INT(b.events[0].ts_ms, (RECV_S - 60) * 1000);
    ASSERT_EQ_INT(b.events[1].ts_ms, (RECV_S - 30) * 1000 + 123);
    /* No timestamp: the receive time, nothing to correct. */
    ASSERT_EQ_INT(b.events[2].ts_ms, RECV_MS);
    ASSERT_EQ_INT(b.events[2].flags, INGEST_EVENT_FLAG_ID_GENERATED);
    ingest_event_batch_fini(&b);

    /* sent_at equal to the receive time changes nothing and is not flagged. */
    ASSERT_OK(parse("{\"type\":\"click\",\"id\":\"6f9619ff-8b86-4d01-b42d-00c04fc964ff\","
                    "\"timestamp\":\"2026-11-24T09:00:00Z\","
                    "\"sent_at\":\"2026-11-24T10:00:00.123456Z\"}", &b, &err), &err);
    ASSERT_EQ_INT(b.events[0].flags, 0);
    ASSERT_EQ_INT(b.events[0].ts_ms, (RECV_S - 3600) * 1000);
    ingest_event_batch_fini(&b);

    reject_exact("{\"type\":\"click\",\"sent_at\":\"yesterday\"}", "sent_at",
                 "not an RFC 3339 time: 'yesterday'");
    ASSERT_EQ_INT(parse("{\"sent_at\":\"soon\",\"events\":[{\"type\":\"click\"}]}", &b, &err),
                  SL_EINVAL);
    ASSERT_EQ_INT(b.http_status, 400);
    ASSERT_EQ_STR(err.msg, "sent_at: not an RFC 3339 time: 'soon'");
    ingest_event_batch_fini(&b);
    ASSERT_EQ_INT(parse("{\"sent_at\":5,\"events\":[{\"type\":\"click\"}]}", &b, &err),
                  SL_EINVAL);
    ingest_event_batch_fini(&b);
}

static void test_event_future_clamped_past_rejected(void)
{
    struct ingest_event_limits lim = ingest_event_limits_default();
    struct ingest_event_batch b;
    struct sl_err err;
    json_t *j;

    /* Exactly a day ahead (to the microsecond) is kept. */
    ASSERT_EQ_INT(
        accept_ts_ms("{\"type\":\"click\",\"timestamp\":\"2026-11-25T10:00:00.123456Z\"}"),
        RECV_MS + DAY_MS);
    /* One microsecond more is clamped to the receive time and flagged. */
    j = accept_one("{\"type\":\"click\",\"timestamp\":\"2026-11-25T10:00:00.123457Z\"}", &b);
    ASSERT_EQ_INT(b.events[0].ts_ms, RECV_MS);
    ASSERT_TRUE(b.events[0].flags & INGEST_EVENT_FLAG_FUTURE_CLAMPED);
    ASSERT_EQ_STR(str_of(j, "ts"), "2026-11-24T10:00:00.123Z");
    ASSERT_EQ_STR(json_string_value(json_array_get(json_object_get(j, "flags"), 1)),
                  "future_clamped");
    json_decref(j);
    ingest_event_batch_fini(&b);
    /* The check runs after the correction: a client an hour behind with an event 23.5 h
     * ahead lands 24.5 h ahead and is clamped... */
    ASSERT_OK(parse("{\"type\":\"click\",\"timestamp\":\"2026-11-25T09:30:00Z\","
                    "\"sent_at\":\"2026-11-24T09:00:00.123456Z\"}", &b, &err), &err);
    ASSERT_EQ_INT(b.events[0].ts_ms, RECV_MS);
    ASSERT_EQ_INT(b.events[0].flags, INGEST_EVENT_FLAG_ID_GENERATED |
                  INGEST_EVENT_FLAG_SKEW_CORRECTED | INGEST_EVENT_FLAG_FUTURE_CLAMPED);
    ingest_event_batch_fini(&b);
    /* ...and a client two days ahead has its event brought back into range. */
    ASSERT_OK(parse("{\"type\":\"click\",\"timestamp\":\"2026-11-26T09:00:00Z\","
                    "\"sent_at\":\"2026-11-26T10:00:00.123456Z\"}", &b, &err), &err);
    ASSERT_EQ_INT(b.events[0].ts_ms, (RECV_S - 3600) * 1000);
    ASSERT_EQ_INT(b.events[0].flags, INGEST_EVENT_FLAG_ID_GENERATED |
                  INGEST_EVENT_FLAG_SKEW_CORRECTED);
    ingest_event_batch_fini(&b);

    /* Far past. */
    reject_exact("{\"type\":\"click\",\"timestamp\":\"1999-12-31T23:59:59.999Z\"}", "timestamp",
                 "'1999-12-31T23:59:59.999Z' is before 2000-01-01");
    reject_exact("{\"type\":\"click\",\"timestamp\":\"2026-10-25T10:00:00Z\"}", "timestamp",
                 "'2026-10-25T10:00:00Z' is more than 30 days before it was received");
    reject("{\"type\":\"click\",\"timestamp\":\"2026-10-24T10:00:00Z\","
           "\"sent_at\":\"2026-11-24T10:00:00Z\"}", "timestamp", "after the sent_at correction");
    ASSERT_EQ_INT(accept_ts_ms("{\"type\":\"click\",\"timestamp\":\"2026-10-25T10:00:00.124Z\"}"),
                  RECV_MS - 30 * DAY_MS + 1);
    /* Limits are the caller's. */
    lim.max_past_days = 365 * 30;
    lim.max_future_s = 0;
    {
        struct ingest_event_ctx ctx = default_ctx();

        ASSERT_OK(parse_with("{\"type\":\"click\",\"timestamp\":\"2000-01-01T00:00:00Z\"}", &lim,
                             &ctx, &b, &err), &err);
        ASSERT_EQ_INT(b.n_events, 1);
        ASSERT_EQ_INT(b.events[0].ts_ms, INT64_C(946684800000));
        ingest_event_batch_fini(&b);
        ASSERT_OK(parse_with("{\"type\":\"click\",\"timestamp\":\"2026-11-24T10:00:00.124Z\"}",
                             &lim, &ctx, &b, &err), &err);
        ASSERT_TRUE(b.events[0].flags & INGEST_EVENT_FLAG_FUTURE_CLAMPED);
        ingest_event_batch_fini(&b);
    }
}

/* ---- tenant, context, properties, logs -------------------------------------------- */

static void test_event_tenant_mismatch(void)
{
    struct ingest_event_batch b;
    struct sl_err err;
    json_t *j;

    j = accept_one("{\"type\":\"click\",\"tenant_id\":\"" TENANT "\"}", &b);
    ASSERT_EQ_STR(str_of(j, "tenant_id"), TENANT);
    json_decref(j);
    ingest_event_batch_fini(&b);

    /* One event naming another tenant refuses the whole request, bad neighbours or not. */
    ASSERT_EQ_INT(parse("{\"events\":[{\"type\":\"click\"},{\"type\":\"bogus\"},"
                        "{\"type\":\"click\",\"tenant_id\":\"tn_other\"}]}", &b, &err),
                  SL_EDENIED);
    ASSERT_EQ_INT(b.http_status, 403);
    ASSERT_EQ_INT(b.n_events, 0);
    ASSERT_EQ_INT(b.n_errors, 0);
    ASSERT_TRUE(b.events == NULL);
    ASSERT_EQ_STR(err.msg, "event 2: tenant_id 'tn_other' is not the API key's tenant");
    ingest_event_batch_fini(&b);

    ASSERT_EQ_INT(parse("{\"type\":\"click\",\"tenant_id\":\"\"}", &b, &err), SL_EDENIED);
    ingest_event_batch_fini(&b);
    reject_exact("{\"type\":\"click\",\"tenant_id\":17}", "tenant_id",
                 "must be a string, got a number");
    accept_ok("{\"type\":\"click\",\"tenant_id\":null}");
}

static void test_event_context_from_request(void)
{
    struct ingest_event_ctx ctx = default_ctx();
    struct ingest_event_batch b;
    struct sl_err err;
    json_t *j;
    json_t *c;
    char ua[1200];

    /* The request fills what the body leaves out, empty strings included. */
    j = accept_one("{\"type\":\"click\",\"context\":{\"ip\":\"\",\"user_agent\":\"\","
                   "\"url\":null}}", &b);
    c = json_object_get(j, "context");
    ASSERT_EQ_STR(str_of(c, "ip"), "203.0.113.7");
    ASSERT_EQ_STR(str_of(c, "user_agent"), "TestAgent/1.0");
    ASSERT_EQ_INT(json_object_size(c), 2);
    json_decref(j);
    ingest_event_batch_fini(&b);

    /* The body wins; addresses come back in canonical form. */
    j = accept_one("{\"type\":\"click\",\"context\":{\"ip\":\"2001:DB8:0:0::1\","
                   "\"user_agent\":\"curl/8\"}}", &b);
    c = json_object_get(j, "context");
    ASSERT_EQ_STR(str_of(c, "ip"), "2001:db8::1");
    ASSERT_EQ_STR(str_of(c, "user_agent"), "curl/8");
    json_decref(j);
    ingest_event_batch_fini(&b);
    j = accept_one("{\"type\":\"click\",\"context\":{\"ip\":\"::ffff:192.0.2.1\"}}", &b);
    ASSERT_EQ_STR(str_of(json_object_get(j, "context"), "ip"), "::ffff:192.0.2.1");
    json_decref(j);
    ingest_event_batch_fini(&b);

    /* Nothing known about the client: null. */
    ctx.client_ip = NULL;
    ctx.user_agent = NULL;
    ASSERT_OK(parse_with("{\"type\":\"click\"}", NULL, &ctx, &b, &err), &err);
    j = load(&b.events[0]);
    c = json_object_get(j, "context");
    ASSERT_TRUE(is_null_field(c, "ip"));
    ASSERT_TRUE(is_null_field(c, "user_agent"));
    json_decref(j);
    ingest_event_batch_fini(&b);

    /* A header that is not UTF-8 is dropped; a long one is cut on a character boundary. */
    ctx.user_agent = "Bad\xff\xfe";
    ASSERT_OK(parse_with("{\"type\":\"click\"}", NULL, &ctx, &b, &err), &err);
    j = load(&b.events[0]);
    ASSERT_TRUE(is_null_field(json_object_get(j, "context"), "user_agent"));
    json_decref(j);
    ingest_event_batch_fini(&b);
    memset(ua, 'a', 1023);
    memcpy(ua + 1023, "\xc3\xa9zzz", 6); /* "é" straddles byte 1024 */
    ctx.user_agent = ua;
    ASSERT_OK(parse_with("{\"type\":\"click\"}", NULL, &ctx, &b, &err), &err);
    j = load(&b.events[0]);
    ASSERT_EQ_INT(strlen(str_of(json_object_get(j, "context"), "user_agent")), 1023);
    json_decref(j);
    ingest_event_batch_fini(&b);
}

static void test_event_context_rules(void)
{
    char *s;

    reject_exact("{\"type\":\"click\",\"context\":{\"ip\":\"1.2.3\"}}", "context.ip",
                 "not an IPv4 or IPv6 address: '1.2.3'");
    reject("{\"type\":\"click\",\"context\":{\"ip\":\"fe80::1%eth0\"}}", "context.ip",
           "not an IPv4 or IPv6 address");
    reject("{\"type\":\"click\",\"context\":{\"ip\":\"192.0.2.1:443\"}}", "context.ip",
           "not an IPv4 or IPv6 address");
    reject("{\"type\":\"click\",\"context\":{\"ip\":\"0x7f.1\"}}", "context.ip",
           "not an IPv4 or IPv6 address");
    reject_exact("{\"type\":\"click\",\"context\":{\"userAgent\":\"x\"}}", "context.userAgent",
                 "unknown field; did you mean 'user_agent'?");
    reject_exact("{\"type\":\"click\",\"context\":{\"locale\":\"de\"}}", "context.locale",
                 "unknown field; did you mean 'language'?");
    reject("{\"type\":\"click\",\"context\":{\"library\":{\"name\":\"x\"}}}", "context.library",
           "unknown field (context has user_agent, ip, url");
    reject_exact("{\"type\":\"click\",\"context\":[]}", "context",
                 "must be an object, got an array");
    reject_exact("{\"type\":\"click\",\"context\":{\"screen\":1920}}", "context.screen",
                 "must be a string, got a number");
    reject("{\"type\":\"click\",\"context\":{\"title\":\"a\\u001bb\"}}", "context.title",
           "control character (U+001B) at byte 1");
    /* URLs get the longer limit; other fields the shorter. */
    s = context_with("url", 'u', 4096);
    accept_ok(s);
    free(s);
    s = context_with("referrer", 'u', 4097);
    reject(s, "context.referrer", "longer than 4096 bytes");
    free(s);
    s = context_with("title", 't', 1024);
    accept_ok(s);
    free(s);
    s = context_with("title", 't', 1025);
    reject(s, "context.title", "longer than 1024 bytes");
    free(s);
}

/* context.client_hints: checked by the enrichment library's parser, kept in the normalized
 * event for the loader; anything it cannot use is refused with the reason. */
static void test_event_client_hints(void)
{
    struct ingest_event_batch b;
    json_t *j;
    char *s;

    j = accept_one("{\"type\":\"click\",\"context\":{\"client_hints\":{"
                   "\"Sec-CH-UA-Platform\":\"\\\"Windows\\\"\",\"mobile\":false,"
                   "\"brands\":[{\"brand\":\"Chromium\",\"version\":\"120\"}]}}}",
                   &b);
    s = json_dumps(json_object_get(json_object_get(j, "context"), "client_hints"),
                   JSON_COMPACT);
    ASSERT_EQ_STR(s, "{\"Sec-CH-UA-Platform\":\"\\\"Windows\\\"\",\"mobile\":false,"
                     "\"brands\":[{\"brand\":\"Chromium\",\"version\":\"120\"}]}");
    free(s);
    json_decref(j);
    ingest_event_batch_fini(&b);
    /* null and {} are absent. */
    j = accept_one("{\"type\":\"click\",\"context\":{\"client_hints\":{}}}", &b);
    ASSERT_TRUE(json_object_get(json_object_get(j, "context"), "client_hints") == NULL);
    json_decref(j);
    ingest_event_batch_fini(&b);
    reject_exact("{\"type\":\"click\",\"context\":{\"client_hints\":\"Windows\"}}",
                 "context.client_hints", "must be an object, got a string");
    reject("{\"type\":\"click\",\"context\":{\"client_hints\":{\"mobile\":\"yes\"}}}",
           "context.client_hints", "mobile");
    reject("{\"type\":\"click\",\"context\":{\"client_hints\":{\"x\":{\"y\":{}}}}}",
           "context.client_hints", "'x' must be a string, a boolean or a list");
    /* The request's Sec-CH-UA headers (as the edge passes them) fill in for events without
     * hints of their own; an event's own win. */
    {
        struct ingest_event_ctx ctx = default_ctx();
        json_t *headers = json_pack("{s:s}", "Sec-CH-UA-Platform", "\"macOS\"");
        struct sl_err err;

        ctx.client_hints = headers;
        ASSERT_OK(parse_with("{\"events\":[{\"type\":\"click\"},{\"type\":\"click\","
                             "\"context\":{\"client_hints\":{\"platform\":\"Linux\"}}}]}",
                             NULL, &ctx, &b, &err),
                  &err);
        ASSERT_EQ_INT(b.n_events, 2);
        j = load(&b.events[0]);
        s = json_dumps(json_object_get(json_object_get(j, "context"), "client_hints"),
                       JSON_COMPACT);
        ASSERT_EQ_STR(s, "{\"Sec-CH-UA-Platform\":\"\\\"macOS\\\"\"}");
        free(s);
        json_decref(j);
        j = load(&b.events[1]);
        s = json_dumps(json_object_get(json_object_get(j, "context"), "client_hints"),
                       JSON_COMPACT);
        ASSERT_EQ_STR(s, "{\"platform\":\"Linux\"}");
        free(s);
        json_decref(j);
        ingest_event_batch_fini(&b);
        json_decref(headers);
    }
}

static void test_event_properties_rules(void)
{
    struct ingest_event_batch b;
    json_t *j;
    char body[17000];
    size_t prefix;

    reject_exact("{\"type\":\"click\",\"properties\":[1,2]}", "properties",
                 "must be an object, got an array");
    reject_exact("{\"type\":\"click\",\"properties\":\"a=b\"}", "properties",
                 "must be an object, got a string");
    j = accept_one("{\"type\":\"click\",\"properties\":null}", &b);
    ASSERT_EQ_INT(json_object_size(json_object_get(j, "properties")), 0);
    json_decref(j);
    ingest_event_batch_fini(&b);

    /* Depth: properties is level 1; 8 levels pass, 9 do not (arrays count too). */
    accept_ok("{\"type\":\"click\",\"properties\":"
              "{\"a\":{\"b\":{\"c\":[{\"d\":{\"e\":[[1]]}}]}}}}");
    reject_exact("{\"type\":\"click\",\"properties\":"
                 "{\"a\":{\"b\":{\"c\":[{\"d\":{\"e\":[[[]]]}}]}}}}",
                 "properties", "nested deeper than 8 levels");

    /* Size: measured as compact JSON, whatever the body's spacing. {"k":"xxx..."} is 8 bytes
     * of frame plus the text. */
    strcpy(body, "{\"type\":\"click\",\"properties\":  {  \"k\" :  \"");
    prefix = strlen(body);
    memset(body + prefix, 'x', 16384 - 8);
    strcpy(body + prefix + 16384 - 8, "\"  }  }");
    j = accept_one(body, &b);
    ASSERT_EQ_INT(strlen(str_of(json_object_get(j, "properties"), "k")), 16384 - 8);
    json_decref(j);
    ingest_event_batch_fini(&b);
    strcpy(body + prefix + 16384 - 8, "x\"}}");
    reject_exact(body, "properties", "larger than 16384 bytes after encoding");
    /* Escapes count as encoded: a newline is two bytes. */
    memset(body + prefix, 'x', 16384 - 9);
    strcpy(body + prefix + 16384 - 9, "\\n\"}}");
    reject(body, "properties", "larger than 16384 bytes");

    /* Values keep their types; control characters are fine inside properties. */
    j = accept_one("{\"type\":\"click\",\"properties\":{\"f\":1.5,\"i\":-3,\"s\":\"a\\nb\","
                   "\"n\":null,\"big\":9007199254740993}}", &b);
    {
        json_t *p = json_object_get(j, "properties");

        ASSERT_TRUE(json_real_value(json_object_get(p, "f")) == 1.5);
        ASSERT_EQ_INT(json_integer_value(json_object_get(p, "i")), -3);
        ASSERT_EQ_STR(str_of(p, "s"), "a\nb");
        ASSERT_TRUE(json_is_null(json_object_get(p, "n")));
        ASSERT_EQ_INT(json_integer_value(json_object_get(p, "big")), INT64_C(9007199254740993));
    }
    json_decref(j);
    ingest_event_batch_fini(&b);

    /* Reals print in their shortest form that reads back the same, and stay reals. */
    j = accept_one("{\"type\":\"click\",\"properties\":{\"a\":0.1,\"b\":2.0,\"c\":1e300,"
                   "\"d\":-0.0,\"e\":0.30000000000000004,\"f\":-9223372036854775808}}", &b);
    ASSERT_CONTAINS(b.events[0].json, "\"properties\":{\"a\":0.1,\"b\":2.0,\"c\":1e+300,"
                    "\"d\":-0.0,\"e\":0.30000000000000004,\"f\":-9223372036854775808}");
    json_decref(j);
    ingest_event_batch_fini(&b);
    /* Keys are escaped like values; order and nesting are kept. */
    j = accept_one("{\"type\":\"click\",\"properties\": { \"k\\\"q\\n\" : [ \"a\" ,"
                   " { \"n\" : null } , [ ] ] , \"t\":true,\"f\":false, \"o\": {}}}", &b);
    ASSERT_CONTAINS(b.events[0].json, "\"properties\":{\"k\\\"q\\n\":[\"a\",{\"n\":null},[]],"
                    "\"t\":true,\"f\":false,\"o\":{}},");
    json_decref(j);
    ingest_event_batch_fini(&b);
}

static void test_event_log_rules(void)
{
    struct ingest_event_batch b;
    json_t *j;
    char *s;

    j = accept_one("{\"type\":\"log\",\"message\":\"disk \\\"full\\\"\\n\\tat x\"}", &b);
    ASSERT_EQ_STR(str_of(j, "severity"), "info");
    ASSERT_TRUE(is_null_field(j, "source"));
    ASSERT_EQ_STR(str_of(j, "message"), "disk \"full\"\n\tat x");
    ASSERT_EQ_INT(b.events[0].type, INGEST_EVENT_LOG);
    json_decref(j);
    ingest_event_batch_fini(&b);

    j = accept_one("{\"type\":\"log\",\"severity\":\"WARN\",\"source\":\"billing.worker\","
                   "\"message\":\"\\u001b[31mred\\u001b[0m\",\"properties\":{\"attempt\":2}}",
                   &b);
    ASSERT_EQ_STR(str_of(j, "severity"), "warn");
    ASSERT_EQ_STR(str_of(j, "source"), "billing.worker");
    ASSERT_EQ_STR(str_of(j, "message"), "\x1b[31mred\x1b[0m");
    json_decref(j);
    ingest_event_batch_fini(&b);
    accept_ok("{\"type\":\"log\",\"message\":\"\"}");
    for (int i = 0; i < 6; i++) {
        static const char *const sev[] = {"trace", "debug", "info", "warn", "error", "fatal"};
        char body[120];

        snprintf(body, sizeof(body), "{\"type\":\"log\",\"severity\":\"%s\",\"message\":\"m\"}",
                 sev[i]);
        j = accept_one(body, &b);
        ASSERT_EQ_STR(str_of(j, "severity"), sev[i]);
        json_decref(j);
        ingest_event_batch_fini(&b);
    }

    reject_exact("{\"type\":\"log\"}", "message", "is required for log events");
    reject_exact("{\"type\":\"log\",\"message\":{\"a\":1}}", "message",
                 "must be a string, got an object");
    reject_exact("{\"type\":\"log\",\"message\":\"m\",\"severity\":\"warning\"}", "severity",
                 "unknown severity 'warning' (use trace, debug, info, warn, error, fatal)");
    reject_exact("{\"type\":\"log\",\"message\":\"m\",\"severity\":3}", "severity",
                 "must be a string, got a number");
    reject("{\"type\":\"log\",\"message\":\"m\",\"source\":\"\"}", "source", "must not be empty");
    reject("{\"type\":\"log\",\"message\":\"m\",\"source\":\"a\\nb\"}", "source",
           "control character");
    s = event_with("log", "source", 's', 257);
    s[strlen(s) - 1] = '\0';
    strcat(s, ",\"message\":\"m\"}");
    reject(s, "source", "longer than 256 bytes");
    free(s);
    s = event_with("log", "message", 'm', 32768);
    accept_ok(s);
    free(s);
    s = event_with("log", "message", 'm', 32769);
    reject(s, "message", "longer than 32768 bytes");
    free(s);
    reject_exact("{\"type\":\"click\",\"severity\":\"info\"}", "severity",
                 "only allowed on log events");
    reject_exact("{\"type\":\"pageview\",\"message\":\"m\"}", "message",
                 "only allowed on log events");
    reject_exact("{\"type\":\"custom\",\"name\":\"n\",\"source\":\"s\"}", "source",
                 "only allowed on log events");
}

/* ---- settings and failures -------------------------------------------------------- */

static void test_event_settings_table_matches_defaults(void)
{
    struct ingest_event_limits lim;
    struct ingest_event_limits def = ingest_event_limits_default();
    struct sl_cfg_section sec = SL_CFG_SECTION("event", ingest_event_cfg_opts,
                                               ingest_event_cfg_n_opts, &lim);
    char *env[] = {"SLUICE_EVENT_MAX_PROPERTIES_BYTES=32K", NULL};
    char *no_env[] = {NULL};
    struct sl_err err;

    memset(&lim, 0, sizeof(lim));
    ASSERT_OK(sl_cfg_load(&sec, 1, NULL, no_env, &err), &err);
    ASSERT_TRUE(memcmp(&lim, &def, sizeof(lim)) == 0);
    ASSERT_OK(sl_cfg_load(&sec, 1, NULL, env, &err), &err);
    ASSERT_EQ_INT(lim.max_properties_bytes, 32768);
    sl_cfg_fini(&sec, 1);
}

/* Runs body with the n-th allocation failing, for n = 0, 1, ... until the call succeeds;
 * every failure must be clean and the success identical to an unhindered run. */
static void check_alloc_failures(const char *body, int want_rc)
{
    struct ingest_event_batch ref;
    struct ingest_event_batch b;
    struct sl_err err;
    long n;
    int rc = SL_ENOMEM;
    char *resp = NULL;
    size_t len;

    ASSERT_EQ_INT(parse(body, &ref, &err), want_rc);
    for (n = 0; n < 100000 && rc == SL_ENOMEM; n++) {
        sl_alloc_fail_after(n);
        rc = parse(body, &b, &err);
        sl_alloc_fail_after(-1);
        if (rc == SL_ENOMEM) {
            ASSERT_EQ_INT(rc, SL_ENOMEM);
            ASSERT_EQ_INT(b.http_status, 503);
            ASSERT_EQ_INT(b.n_events, 0);
            ASSERT_EQ_INT(b.n_errors, 0);
            ASSERT_TRUE(b.events == NULL && b.errors == NULL);
            ASSERT_TRUE(err.msg[0] != '\0');
        }
        else {
            ASSERT_EQ_INT(rc, want_rc);
            ASSERT_EQ_INT(b.n_events, ref.n_events);
            ASSERT_EQ_INT(b.n_errors, ref.n_errors);
            ASSERT_EQ_INT(b.http_status, ref.http_status);
            for (size_t i = 0; i < b.n_events; i++) {
                ASSERT_EQ_INT(b.events[i].index, ref.events[i].index);
                ASSERT_EQ_INT(b.events[i].json_len, ref.events[i].json_len);
            }
            for (size_t i = 0; i < b.n_errors; i++) {
                ASSERT_EQ_STR(b.errors[i].reason, ref.errors[i].reason);
            }
        }
        ingest_event_batch_fini(&b);
    }
    ASSERT_EQ_INT(rc, want_rc);
    ASSERT_TRUE(n > 1);
    /* The response body too. */
    rc = SL_ENOMEM;
    for (n = 0; n < 100 && rc != 0; n++) {
        sl_alloc_fail_after(n);
        rc = ingest_event_batch_response(&ref, &resp, &len);
        sl_alloc_fail_after(-1);
        if (rc != 0) {
            ASSERT_EQ_INT(rc, SL_ENOMEM);
            ASSERT_TRUE(resp == NULL);
        }
    }
    ASSERT_EQ_INT(rc, 0);
    sl_free(resp);
    ingest_event_batch_fini(&ref);
}

static void test_event_alloc_failures(void)
{
    /* Ids are given where the output length must match the reference (generated ones have
     * the same length anyway). */
    check_alloc_failures(
        "{\"sent_at\":\"2026-11-24T10:00:01Z\",\"events\":["
        "{\"type\":\"click\",\"name\":\"a\",\"session_id\":\"s\",\"timestamp\":"
        "\"2026-11-24T09:00:00Z\",\"properties\":{\"a\":[1,2,{\"b\":\"c\"}],\"d\":{}},"
        "\"context\":{\"ip\":\"::1\",\"url\":\"https://x/\"}},"
        "{\"type\":\"nope\",\"foo\":1,\"name\":\"\"},"
        "{\"type\":\"log\",\"message\":\"m\",\"severity\":\"error\"},"
        "3,"
        "{\"type\":\"custom\",\"id\":\"6F9619FF-8B86-4D01-B42D-00C04FC964FF\",\"name\":\"x\"}"
        "]}", 0);
    check_alloc_failures("{\"type\":\"pageview\"}", 0);
    check_alloc_failures("{\"type\":", SL_EINVAL);
    check_alloc_failures("{\"events\":[{\"type\":\"click\",\"tenant_id\":\"x\"}]}", SL_EDENIED);
}

/* A session hook that records its calls and hands out "s-<anonymous_id>-<ts_ms>". */
struct hook_calls {
    int n;
    char tenant[64];
};

static int fake_assign(void *user, const char *tenant_id, const char *anonymous_id,
                       size_t anonymous_len, int64_t ts_ms, char out[INGEST_EVENT_ID_LEN + 1])
{
    struct hook_calls *calls = user;

    calls->n++;
    snprintf(calls->tenant, sizeof(calls->tenant), "%s", tenant_id);
    snprintf(out, INGEST_EVENT_ID_LEN + 1, "s-%.*s-%lld", (int)anonymous_len, anonymous_id,
             (long long)ts_ms);
    return 0;
}

static void test_event_session_assignment_hook(void)
{
    struct ingest_event_ctx ctx = default_ctx();
    struct hook_calls calls = {0};
    struct ingest_event_batch b;
    struct sl_err err;
    json_t *j;

    ctx.assign_session = fake_assign;
    ctx.assign_session_user = &calls;
    ASSERT_OK(parse_with("{\"events\":["
                         "{\"type\":\"pageview\",\"anonymous_id\":\"a1\","
                         "\"timestamp\":\"2026-11-24T09:00:00Z\"},"
                         "{\"type\":\"pageview\",\"anonymous_id\":\"a1\",\"session_id\":\"mine\"},"
                         "{\"type\":\"pageview\"}]}",
                         NULL, &ctx, &b, &err), &err);
    ASSERT_EQ_INT(b.n_events, 3);
    /* Only the event with an anonymous_id and no session_id asks the hook. */
    ASSERT_EQ_INT(calls.n, 1);
    ASSERT_EQ_STR(calls.tenant, TENANT);
    ASSERT_EQ_STR(b.events[0].session_id, "s-a1-1795510800000");
    ASSERT_TRUE(b.events[0].flags & INGEST_EVENT_FLAG_SESSION_ASSIGNED);
    j = load(&b.events[0]);
    ASSERT_EQ_STR(str_of(j, "session_id"), "s-a1-1795510800000");
    {
        json_t *flags = json_object_get(j, "flags");
        bool is_flagged = false;

        for (size_t i = 0; i < json_array_size(flags); i++) {
            is_flagged = is_flagged ||
                         strcmp(json_string_value(json_array_get(flags, i)), "session_assigned") == 0;
        }
        ASSERT_TRUE(is_flagged);
    }
    json_decref(j);
    ASSERT_EQ_STR(b.events[1].session_id, "mine");
    ASSERT_TRUE(!(b.events[1].flags & INGEST_EVENT_FLAG_SESSION_ASSIGNED));
    ASSERT_TRUE(b.events[2].session_id == NULL);
    ingest_event_batch_fini(&b);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_event_single_object_normalized),
        TEST_CASE(test_event_minimal_gets_defaults),
        TEST_CASE(test_event_batch_keeps_order_and_indexes),
        TEST_CASE(test_event_response_body),
        TEST_CASE(test_event_unparseable_body),
        TEST_CASE(test_event_request_shapes),
        TEST_CASE(test_event_id_generated_v4_unique),
        TEST_CASE(test_event_id_rules),
        TEST_CASE(test_event_type_rules),
        TEST_CASE(test_event_name_rules),
        TEST_CASE(test_event_ident_rules),
        TEST_CASE(test_event_unknown_fields),
        TEST_CASE(test_event_timestamp_formats),
        TEST_CASE(test_event_sent_at_corrects_skew),
        TEST_CASE(test_event_future_clamped_past_rejected),
        TEST_CASE(test_event_tenant_mismatch),
        TEST_CASE(test_event_context_from_request),
        TEST_CASE(test_event_context_rules),
        TEST_CASE(test_event_client_hints),
        TEST_CASE(test_event_properties_rules),
        TEST_CASE(test_event_log_rules),
        TEST_CASE(test_event_settings_table_matches_defaults),
        TEST_CASE(test_event_alloc_failures),
        TEST_CASE(test_event_session_assignment_hook),
        {NULL, NULL},
    };

    sl_alloc_init_jansson();
    return test_main(argc, argv, cases);
}

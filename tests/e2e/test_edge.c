/*
 * Runs sluice-ingest on the embedded default (disk spool, no broker) and talks to it over
 * real HTTP: every status code, partial batches, gzip/zstd bodies, a decompression bomb,
 * each auth path, rate limits, trusted proxies, CORS, health endpoints; then reads the spool
 * and checks the events are there exactly as normalized.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdarg.h>
#include <time.h>
#include <zlib.h>
#include <zstd.h>

#include "alloc.h"
#include "daemon.h"
#include "queue.h"
#include "spool.h"
#include "store.h"
#include "test.h"
#include "timefmt.h"

#define START_MS 10000
#define STOP_MS 15000

struct edge {
    char *dir;
    char *db;
    char *spool;
    char base[64];
    struct test_daemon d;
    char key[SL_KEY_SECRET_MAX];
    char key_id[SL_STORE_ID_MAX];
    char tenant_id[SL_STORE_ID_MAX];
    char *env[16];
    size_t n_env;
};

struct resp {
    long status;
    char *body;
    size_t len;
    char headers[4096];
    size_t headers_len;
};

static void add_env(struct edge *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add_env(struct edge *e, const char *fmt, ...)
{
    va_list ap;

    ASSERT_TRUE(e->n_env < 15);
    va_start(ap, fmt);
    if (vasprintf(&e->env[e->n_env], fmt, ap) < 0) {
        TEST_FAIL("vasprintf");
    }
    va_end(ap);
    e->n_env++;
}

/* Prepares a tenant store with tenant "acme" and a key; extra "K=V" settings follow. */
static void edge_init(struct edge *e, ...)
{
    struct sl_store *st = NULL;
    struct sl_tenant t;
    struct sl_key k;
    struct sl_err err;
    int port = test_free_port();
    va_list ap;

    memset(e, 0, sizeof(*e));
    e->dir = test_tmpdir();
    e->db = test_path(e->dir, "tenants.db");
    e->spool = test_path(e->dir, "spool");
    ASSERT_OK(sl_store_open(&st, e->db, 1000, &err), &err);
    ASSERT_OK(sl_store_tenant_create(st, "acme", "paid", (int64_t)time(NULL), &t, &err), &err);
    ASSERT_OK(sl_store_key_create(st, "acme", "test", NULL, 0, (int64_t)time(NULL), &k, e->key,
                                  &err), &err);
    sl_store_close(st);
    memcpy(e->key_id, k.id, sizeof(e->key_id));
    memcpy(e->tenant_id, t.id, sizeof(e->tenant_id));
    snprintf(e->base, sizeof(e->base), "http://127.0.0.1:%d", port);
    add_env(e, "SLUICE_DB=%s", e->db);
    add_env(e, "SLUICE_SPOOL_DIR=%s", e->spool);
    add_env(e, "SLUICE_HTTP_ADDR=127.0.0.1:%d", port);
    add_env(e, "SLUICE_LOG_LEVEL=info");
    va_start(ap, e);
    for (const char *kv = va_arg(ap, const char *); kv != NULL; kv = va_arg(ap, const char *)) {
        add_env(e, "%s", kv);
    }
    va_end(ap);
}

static void edge_start(struct edge *e)
{
    char *bin = test_bin("sluice-ingest");

    e->env[e->n_env] = NULL;
    test_daemon_start(&e->d, bin, NULL, e->dir, e->env);
    test_daemon_wait_started(&e->d, "ingest", START_MS);
    free(bin);
}

static void edge_fini(struct edge *e)
{
    test_daemon_fini(&e->d);
    for (size_t i = 0; i < e->n_env; i++) {
        free(e->env[i]);
    }
    test_rmtree(e->dir);
    free(e->db);
    free(e->spool);
    free(e->dir);
}

static size_t on_body(char *data, size_t size, size_t n, void *user)
{
    struct resp *r = user;
    size_t len = size * n;
    char *p = realloc(r->body, r->len + len + 1);

    ASSERT_TRUE(p != NULL);
    r->body = p;
    memcpy(r->body + r->len, data, len);
    r->len += len;
    r->body[r->len] = '\0';
    return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *user)
{
    struct resp *r = user;
    size_t len = size * n;

    if (r->headers_len + len < sizeof(r->headers)) {
        memcpy(r->headers + r->headers_len, data, len);
        r->headers_len += len;
        r->headers[r->headers_len] = '\0';
    }
    return len;
}

/* Sends method path with headers (NULL-terminated, may be NULL) and body (may be NULL). */
static void request(struct edge *e, const char *method, const char *path,
                    const char *const *headers, const void *body, size_t len, struct resp *r)
{
    CURL *c = curl_easy_init();
    struct curl_slist *hl = NULL;
    char url[256];

    memset(r, 0, sizeof(*r));
    r->body = calloc(1, 1);
    snprintf(url, sizeof(url), "%s%s", e->base, path);
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
        hl = curl_slist_append(hl, headers[i]);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    if (curl_easy_perform(c) != CURLE_OK) {
        TEST_FAIL("%s %s failed", method, url);
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
}

static void resp_fini(struct resp *r)
{
    free(r->body);
    r->body = NULL;
}

/* POSTs a JSON body to /ingest with the edge's key. */
static void post(struct edge *e, const char *body, struct resp *r)
{
    char auth[128];
    const char *headers[] = {auth, "Content-Type: application/json", NULL};

    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", e->key);
    request(e, "POST", "/ingest", headers, body, strlen(body), r);
}

static json_t *body_json(const struct resp *r)
{
    json_error_t jerr;
    json_t *v = json_loads(r->body, 0, &jerr);

    if (v == NULL) {
        TEST_FAIL("response is not JSON (%s): %s", jerr.text, r->body);
    }
    return v;
}

static void expect(const struct resp *r, long status, const char *needle)
{
    if (r->status != status || (needle != NULL && strstr(r->body, needle) == NULL)) {
        TEST_FAIL("expected %ld with \"%s\", got %ld: %s", status, needle ? needle : "",
                  r->status, r->body);
    }
}

/* Reads every event JSON in the spool (daemon stopped) into a JSON array. */
static json_t *spool_events(struct edge *e)
{
    struct ingest_spool *sp = NULL;
    struct ingest_spool_batch b;
    json_t *all = json_array();
    struct sl_err err;

    ASSERT_OK(ingest_spool_open(&sp, e->spool, 1 << 30, 64 << 20, &err), &err);
    ingest_spool_batch_init(&b);
    for (;;) {
        ASSERT_OK(ingest_spool_read(sp, &b, 1000, 1 << 24, &err), &err);
        if (b.n == 0) {
            break;
        }
        for (size_t i = 0; i < b.n; i++) {
            struct ingest_producer_msg m;
            char tenant[SL_STORE_ID_MAX];
            json_error_t jerr;
            json_t *v;

            ASSERT_OK(ingest_queue_decode(b.recs[i].data, b.recs[i].len, &m, tenant,
                                          sizeof(tenant)), NULL);
            ASSERT_EQ_STR(tenant, e->tenant_id);
            v = json_loadb(m.value, m.value_len, 0, &jerr);
            ASSERT_TRUE(v != NULL);
            json_array_append_new(all, v);
        }
    }
    ingest_spool_batch_fini(&b);
    ingest_spool_close(sp);
    return all;
}

static void test_edge_accepts_and_spools_normalized_events(void)
{
    struct edge e;
    struct resp r;
    json_t *v, *events, *ev;

    edge_init(&e, "SLUICE_TRUSTED_PROXIES=127.0.0.1/32", NULL);
    edge_start(&e);
    post(&e, "{\"id\":\"7D444840-9DC0-11D1-B245-5FFDCE74FAD2\",\"type\":\"pageview\","
             "\"name\":\"home\",\"timestamp\":\"2026-11-24T01:00:00Z\","
             "\"context\":{\"path\":\"/home\",\"url\":\"https://x.example/home\"},"
             "\"properties\":{\"plan\":\"pro\",\"n\":3}}", &r);
    expect(&r, 200, "\"accepted\":1");
    resp_fini(&r);
    /* A partial batch: the good events are accepted, the bad one explained. */
    post(&e, "{\"events\":[{\"type\":\"click\",\"name\":\"buy\"},{\"type\":\"pageveiw\"},"
             "{\"type\":\"log\",\"message\":\"disk full\",\"severity\":\"error\"}]}", &r);
    expect(&r, 200, "\"accepted\":2");
    v = body_json(&r);
    ASSERT_EQ_INT(json_integer_value(json_object_get(v, "rejected")), 1);
    ev = json_array_get(json_object_get(v, "errors"), 0);
    ASSERT_EQ_INT(json_integer_value(json_object_get(ev, "index")), 1);
    ASSERT_EQ_STR(json_string_value(json_object_get(ev, "field")), "type");
    ASSERT_CONTAINS(json_string_value(json_object_get(ev, "reason")), "pageveiw");
    json_decref(v);
    resp_fini(&r);
    /* Behind a trusted proxy, the client is the first untrusted X-Forwarded-For hop. */
    {
        char auth[128];
        const char *headers[] = {auth, "Content-Type: application/json",
                                 "X-Forwarded-For: 203.0.113.7, 127.0.0.1",
                                 "User-Agent: test-agent/1.0",
                                 "Sec-CH-UA-Platform: \"Windows\"",
                                 "Sec-CH-UA-Platform-Version: \"15.0.0\"", NULL};
        const char *body = "{\"type\":\"custom\",\"name\":\"via-proxy\"}";

        snprintf(auth, sizeof(auth), "X-API-Key: %s", e.key);
        request(&e, "POST", "/ingest", headers, body, strlen(body), &r);
        expect(&r, 200, NULL);
        resp_fini(&r);
    }
    test_daemon_stop(&e.d, STOP_MS);

    events = spool_events(&e);
    ASSERT_EQ_INT(json_array_size(events), 4);
    ev = json_array_get(events, 0);
    ASSERT_EQ_STR(json_string_value(json_object_get(ev, "id")),
                  "7d444840-9dc0-11d1-b245-5ffdce74fad2");
    ASSERT_EQ_STR(json_string_value(json_object_get(ev, "tenant_id")), e.tenant_id);
    ASSERT_EQ_STR(json_string_value(json_object_get(ev, "type")), "pageview");
    ASSERT_EQ_STR(json_string_value(json_object_get(ev, "ts")), "2026-11-24T01:00:00.000Z");
    ASSERT_EQ_STR(json_string_value(json_object_get(json_object_get(ev, "context"), "path")),
                  "/home");
    ASSERT_EQ_INT(json_integer_value(json_object_get(json_object_get(ev, "properties"), "n")), 3);
    ASSERT_EQ_STR(json_string_value(json_object_get(json_array_get(events, 1), "name")), "buy");
    ASSERT_EQ_STR(json_string_value(json_object_get(json_array_get(events, 2), "message")),
                  "disk full");
    ev = json_object_get(json_array_get(events, 3), "context");
    ASSERT_EQ_STR(json_string_value(json_object_get(ev, "ip")), "203.0.113.7");
    ASSERT_EQ_STR(json_string_value(json_object_get(ev, "user_agent")), "test-agent/1.0");
    /* The request's client hints headers stand in for the event's own. */
    ASSERT_EQ_STR(json_string_value(json_object_get(json_object_get(ev, "client_hints"),
                                                    "Sec-CH-UA-Platform-Version")),
                  "\"15.0.0\"");
    /* Events that sent neither have none. */
    ASSERT_TRUE(json_object_get(json_object_get(json_array_get(events, 1), "context"),
                                "client_hints") == NULL);
    json_decref(events);
    edge_fini(&e);
}

/* Events with an anonymous_id but no session_id get one: the same within 30 minutes of
 * the visitor's last event, a new one after a longer pause. */
static void test_edge_assigns_sessions(void)
{
    struct edge e;
    struct resp r;
    char t1[SL_TIMEFMT_ISO_MAX], t2[SL_TIMEFMT_ISO_MAX], t3[SL_TIMEFMT_ISO_MAX];
    char body[1024];
    int64_t now = (int64_t)time(NULL);
    json_t *events;
    const char *s1, *s2, *s3, *s_other;

    edge_init(&e, NULL);
    edge_start(&e);
    snprintf(body, sizeof(body),
             "{\"events\":["
             "{\"type\":\"pageview\",\"anonymous_id\":\"v1\",\"timestamp\":\"%s\"},"
             "{\"type\":\"click\",\"anonymous_id\":\"v1\",\"timestamp\":\"%s\"},"
             "{\"type\":\"pageview\",\"anonymous_id\":\"v1\",\"timestamp\":\"%s\"},"
             "{\"type\":\"pageview\",\"anonymous_id\":\"v2\",\"timestamp\":\"%s\"}]}",
             sl_timefmt_iso(now - 7200, t1), sl_timefmt_iso(now - 7200 + 20 * 60, t2),
             sl_timefmt_iso(now - 7200 + 20 * 60 + 31 * 60, t3), t1);
    post(&e, body, &r);
    expect(&r, 200, "\"accepted\":4");
    resp_fini(&r);
    test_daemon_stop(&e.d, STOP_MS);
    events = spool_events(&e);
    ASSERT_EQ_INT(json_array_size(events), 4);
    s1 = json_string_value(json_object_get(json_array_get(events, 0), "session_id"));
    s2 = json_string_value(json_object_get(json_array_get(events, 1), "session_id"));
    s3 = json_string_value(json_object_get(json_array_get(events, 2), "session_id"));
    s_other = json_string_value(json_object_get(json_array_get(events, 3), "session_id"));
    ASSERT_TRUE(s1 != NULL && strlen(s1) == 36);
    ASSERT_EQ_STR(s2, s1);
    ASSERT_TRUE(s3 != NULL && strcmp(s3, s1) != 0);
    ASSERT_TRUE(s_other != NULL && strcmp(s_other, s1) != 0 && strcmp(s_other, s3) != 0);
    json_decref(events);
    edge_fini(&e);
}

static void test_edge_untrusted_peer_cannot_spoof_ip(void)
{
    struct edge e;
    struct resp r;
    char auth[128];
    const char *headers[] = {auth, "Content-Type: application/json",
                             "X-Forwarded-For: 203.0.113.7", "X-Real-IP: 198.51.100.1", NULL};
    const char *body = "{\"type\":\"custom\",\"name\":\"x\"}";
    json_t *events;

    edge_init(&e, NULL);
    edge_start(&e);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", e.key);
    request(&e, "POST", "/ingest", headers, body, strlen(body), &r);
    expect(&r, 200, NULL);
    resp_fini(&r);
    test_daemon_stop(&e.d, STOP_MS);
    events = spool_events(&e);
    ASSERT_EQ_STR(json_string_value(json_object_get(
                      json_object_get(json_array_get(events, 0), "context"), "ip")),
                  "127.0.0.1");
    json_decref(events);
    edge_fini(&e);
}

static void test_edge_bad_requests(void)
{
    struct edge e;
    struct resp r;
    char auth[128];
    const char *xml[] = {auth, "Content-Type: text/xml", NULL};
    const char *br[] = {auth, "Content-Type: application/json", "Content-Encoding: br", NULL};
    char big[20000];

    edge_init(&e, "SLUICE_MAX_BODY_BYTES=16K", "SLUICE_EVENT_MAX_BATCH=3", NULL);
    edge_start(&e);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", e.key);
    post(&e, "{\"events\":[", &r);
    expect(&r, 400, "line 1");
    resp_fini(&r);
    post(&e, "[1,2]", &r);
    expect(&r, 400, NULL);
    resp_fini(&r);
    post(&e, "{\"events\":[{\"type\":\"nope\"},{\"name\":\"no type\"}]}", &r);
    expect(&r, 422, "\"accepted\":0");
    resp_fini(&r);
    post(&e, "{\"events\":[{\"type\":\"click\"},{\"type\":\"click\"},{\"type\":\"click\"},"
             "{\"type\":\"click\"}]}", &r);
    expect(&r, 413, NULL);
    resp_fini(&r);
    memset(big, ' ', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    big[0] = '{';
    big[sizeof(big) - 2] = '}';
    post(&e, big, &r);
    expect(&r, 413, "SLUICE_MAX_BODY_BYTES");
    resp_fini(&r);
    request(&e, "POST", "/ingest", xml, "{}", 2, &r);
    expect(&r, 415, "Content-Type");
    resp_fini(&r);
    request(&e, "POST", "/ingest", br, "{}", 2, &r);
    expect(&r, 415, "'br'");
    resp_fini(&r);
    request(&e, "GET", "/ingest", NULL, NULL, 0, &r);
    expect(&r, 405, NULL);
    ASSERT_CONTAINS(r.headers, "Allow: POST");
    resp_fini(&r);
    request(&e, "GET", "/nowhere", NULL, NULL, 0, &r);
    expect(&r, 404, NULL);
    resp_fini(&r);
    test_daemon_stop(&e.d, STOP_MS);
    edge_fini(&e);
}

static unsigned char *gzip_body(const char *in, size_t len, size_t *out_len)
{
    z_stream zs;
    size_t cap = len / 100 + 1024;
    unsigned char *out = malloc(cap + len / 1000);

    memset(&zs, 0, sizeof(zs));
    ASSERT_EQ_INT(deflateInit2(&zs, 9, Z_DEFLATED, 31, 9, Z_DEFAULT_STRATEGY), Z_OK);
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)(cap + len / 1000);
    ASSERT_EQ_INT(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_len = zs.total_out;
    deflateEnd(&zs);
    return out;
}

static void test_edge_compressed_bodies_and_bombs(void)
{
    static const char body[] = "{\"events\":[{\"type\":\"click\",\"name\":\"a\"},"
                               "{\"type\":\"click\",\"name\":\"b\"}]}";
    struct edge e;
    struct resp r;
    char auth[128];
    const char *gz[] = {auth, "Content-Type: application/json", "Content-Encoding: gzip", NULL};
    const char *zs[] = {auth, "Content-Type: application/json", "Content-Encoding: zstd", NULL};
    size_t len, big = 50u * 1024 * 1024;
    unsigned char *c;
    char *zeros;

    edge_init(&e, NULL);
    edge_start(&e);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", e.key);
    c = gzip_body(body, strlen(body), &len);
    request(&e, "POST", "/ingest", gz, c, len, &r);
    expect(&r, 200, "\"accepted\":2");
    resp_fini(&r);
    free(c);
    c = malloc(ZSTD_compressBound(strlen(body)));
    len = ZSTD_compress(c, ZSTD_compressBound(strlen(body)), body, strlen(body), 3);
    request(&e, "POST", "/ingest", zs, c, len, &r);
    expect(&r, 200, "\"accepted\":2");
    resp_fini(&r);
    free(c);
    /* 50 MB of zeros in ~50 KB of gzip: refused after decoding 1 MB, not inflated whole. */
    zeros = malloc(big);
    memset(zeros, ' ', big);
    zeros[0] = '{';
    c = gzip_body(zeros, big, &len);
    free(zeros);
    ASSERT_TRUE(len < 200 * 1024);
    request(&e, "POST", "/ingest", gz, c, len, &r);
    expect(&r, 413, "after gzip decoding");
    resp_fini(&r);
    free(c);
    /* Corrupt gzip is a 400. */
    request(&e, "POST", "/ingest", gz, "not gzip at all", 15, &r);
    expect(&r, 400, "gzip");
    resp_fini(&r);
    test_daemon_stop(&e.d, STOP_MS);
    edge_fini(&e);
}

static void test_edge_auth_paths(void)
{
    struct edge e;
    struct resp r;
    struct sl_store *st = NULL;
    char other_key[SL_KEY_SECRET_MAX];
    char expiring_key[SL_KEY_SECRET_MAX];
    struct sl_tenant other;
    struct sl_err err;
    const char *json_only[] = {"Content-Type: application/json", NULL};
    char mismatch[256];

    edge_init(&e, "SLUICE_AUTH_CACHE_TTL_MS=0", "SLUICE_AUTH_NEGATIVE_CACHE_TTL_MS=0", NULL);
    ASSERT_OK(sl_store_open(&st, e.db, 1000, &err), &err);
    ASSERT_OK(sl_store_tenant_create(st, "other", "free", (int64_t)time(NULL), &other, &err),
              &err);
    ASSERT_OK(sl_store_key_create(st, "other", NULL, NULL, 0, (int64_t)time(NULL), NULL,
                                  other_key, &err), &err);
    ASSERT_OK(sl_store_key_create(st, "acme", NULL, NULL, (int64_t)time(NULL) + 2,
                                  (int64_t)time(NULL), NULL, expiring_key, &err), &err);
    edge_start(&e);

    request(&e, "POST", "/ingest", json_only, "{}", 2, &r);
    expect(&r, 401, "missing API key");
    ASSERT_CONTAINS(r.headers, "WWW-Authenticate: Bearer");
    resp_fini(&r);
    memcpy(e.key + 20, "XXXX", 4);
    post(&e, "{\"type\":\"click\"}", &r);
    expect(&r, 401, "unknown API key");
    resp_fini(&r);
    /* A tenant_id naming another tenant refuses the whole request. */
    memcpy(e.key, other_key, sizeof(other_key));
    snprintf(mismatch, sizeof(mismatch), "{\"events\":[{\"type\":\"click\"},{\"type\":\"click\","
             "\"tenant_id\":\"%s\"}]}", e.tenant_id);
    post(&e, mismatch, &r);
    expect(&r, 403, NULL);
    resp_fini(&r);
    /* Disabled tenant, then revoked key (no cache: both take effect at once). */
    post(&e, "{\"type\":\"click\"}", &r);
    expect(&r, 200, NULL);
    resp_fini(&r);
    ASSERT_OK(sl_store_tenant_set_disabled(st, "other", true, (int64_t)time(NULL), &err), &err);
    post(&e, "{\"type\":\"click\"}", &r);
    expect(&r, 403, "tenant is disabled");
    resp_fini(&r);
    ASSERT_OK(sl_store_tenant_set_disabled(st, "other", false, (int64_t)time(NULL), &err), &err);
    {
        char other_id[16];

        snprintf(other_id, sizeof(other_id), "%.15s", other_key);
        ASSERT_OK(sl_store_key_revoke(st, other_id, (int64_t)time(NULL), &err), &err);
    }
    post(&e, "{\"type\":\"click\"}", &r);
    expect(&r, 403, "revoked");
    resp_fini(&r);
    /* A key past its expiry. */
    memcpy(e.key, expiring_key, sizeof(expiring_key));
    {
        long deadline = test_now_ms() + 6000;

        for (;;) {
            post(&e, "{\"type\":\"click\"}", &r);
            if (r.status == 403 || test_now_ms() > deadline) {
                break;
            }
            expect(&r, 200, NULL);
            resp_fini(&r);
            poll(NULL, 0, 200);
        }
        expect(&r, 403, "expired");
        resp_fini(&r);
    }
    sl_store_close(st);
    test_daemon_stop(&e.d, STOP_MS);
    edge_fini(&e);
}

static void test_edge_rate_limit_and_spool_full(void)
{
    struct edge e;
    struct resp r;
    struct sl_store *st = NULL;
    struct sl_err err;
    char *body;
    size_t n = 0;
    bool saw_503 = false;

    edge_init(&e, "SLUICE_SPOOL_MAX_BYTES=1M", "SLUICE_SPOOL_SEGMENT_BYTES=256K", NULL);
    ASSERT_OK(sl_store_open(&st, e.db, 1000, &err), &err);
    ASSERT_OK(sl_store_tenant_set_limits(st, "acme", 1, 3, -1, (int64_t)time(NULL), &err), &err);
    sl_store_close(st);
    edge_start(&e);
    post(&e, "{\"events\":[{\"type\":\"click\"},{\"type\":\"click\"}]}", &r);
    expect(&r, 200, NULL);
    resp_fini(&r);
    post(&e, "{\"events\":[{\"type\":\"click\"},{\"type\":\"click\"}]}", &r);
    expect(&r, 429, "rate limit");
    ASSERT_CONTAINS(r.headers, "Retry-After: ");
    resp_fini(&r);
    test_daemon_stop(&e.d, STOP_MS);

    /* Lift the limit, then fill the 1 MiB spool: it answers 503 with Retry-After. */
    ASSERT_OK(sl_store_open(&st, e.db, 1000, &err), &err);
    ASSERT_OK(sl_store_tenant_set_limits(st, "acme", 1000000, 1000000, -1, (int64_t)time(NULL),
                                         &err), &err);
    sl_store_close(st);
    test_daemon_fini(&e.d);
    edge_start(&e);
    {
        size_t cap = 200 * 1024, len = 0;

        body = malloc(cap);
        len += (size_t)snprintf(body, cap, "{\"events\":[");
        for (int i = 0; i < 100; i++) {
            len += (size_t)snprintf(body + len, cap - len,
                                    "%s{\"type\":\"custom\",\"name\":\"fill\",\"properties\":"
                                    "{\"pad\":\"%0900d\"}}", i > 0 ? "," : "", i);
        }
        snprintf(body + len, cap - len, "]}");
    }
    for (n = 0; n < 40 && !saw_503; n++) {
        post(&e, body, &r);
        if (r.status == 503) {
            saw_503 = true;
            ASSERT_CONTAINS(r.headers, "Retry-After: ");
            ASSERT_CONTAINS(r.body, "full");
        }
        else {
            expect(&r, 200, "\"accepted\":100");
        }
        resp_fini(&r);
    }
    ASSERT_TRUE(saw_503);
    request(&e, "GET", "/health/ready", NULL, NULL, 0, &r);
    expect(&r, 503, "not_ready");
    resp_fini(&r);
    free(body);
    test_daemon_stop(&e.d, STOP_MS);
    edge_fini(&e);
}

static void test_edge_cors_health_stats_metrics(void)
{
    struct edge e;
    struct resp r;
    const char *preflight[] = {"Origin: https://app.example",
                               "Access-Control-Request-Method: POST", NULL};
    json_t *v;

    edge_init(&e, "SLUICE_CORS_ORIGINS=https://app.example,https://b.example", NULL);
    edge_start(&e);
    request(&e, "OPTIONS", "/ingest", preflight, NULL, 0, &r);
    ASSERT_EQ_INT(r.status, 204);
    ASSERT_CONTAINS(r.headers, "Access-Control-Allow-Origin: https://app.example");
    ASSERT_CONTAINS(r.headers, "Access-Control-Allow-Headers: Authorization, X-API-Key");
    resp_fini(&r);
    {
        const char *evil[] = {"Origin: https://evil.example", NULL};

        request(&e, "OPTIONS", "/ingest", evil, NULL, 0, &r);
        ASSERT_NOT_CONTAINS(r.headers, "Access-Control-Allow-Origin");
        resp_fini(&r);
    }
    post(&e, "{\"type\":\"click\"}", &r);
    expect(&r, 200, NULL);
    resp_fini(&r);
    request(&e, "GET", "/health/live", NULL, NULL, 0, &r);
    expect(&r, 200, "ok");
    resp_fini(&r);
    request(&e, "GET", "/health/ready", NULL, NULL, 0, &r);
    expect(&r, 200, "\"queue_writable\":true");
    resp_fini(&r);
    request(&e, "GET", "/health", NULL, NULL, 0, &r);
    expect(&r, 200, "\"queue\":\"spool\"");
    resp_fini(&r);
    request(&e, "GET", "/stats", NULL, NULL, 0, &r);
    expect(&r, 200, NULL);
    v = body_json(&r);
    ASSERT_EQ_INT(json_integer_value(json_object_get(json_object_get(v, "events"), "accepted")),
                  1);
    ASSERT_EQ_INT(json_integer_value(json_object_get(json_object_get(v, "spool"),
                                                     "records_pending")), 1);
    ASSERT_EQ_STR(json_string_value(json_object_get(
                      json_array_get(json_object_get(v, "top_talkers"), 0), "tenant_id")),
                  e.tenant_id);
    json_decref(v);
    resp_fini(&r);
    request(&e, "GET", "/metrics", NULL, NULL, 0, &r);
    expect(&r, 200, "sluice_http_requests_total{route=\"/ingest\",code=\"200\"} 1");
    ASSERT_CONTAINS(r.body, "sluice_http_request_seconds_bucket{");
    ASSERT_CONTAINS(r.body, "sluice_events_accepted_total 1");
    ASSERT_CONTAINS(r.headers, "text/plain");
    resp_fini(&r);
    test_daemon_stop(&e.d, STOP_MS);
    edge_fini(&e);
}

/* Counts the spooled events (daemon stopped) of tenant_id; *n_bots gets those whose agent
 * starts with "curl" or contains "Headless". */
static int spooled_for(struct edge *e, const char *tenant_id, int *n_bots)
{
    struct ingest_spool *sp = NULL;
    struct ingest_spool_batch b;
    struct sl_err err;
    int n = 0;

    *n_bots = 0;
    ASSERT_OK(ingest_spool_open(&sp, e->spool, 1 << 30, 64 << 20, &err), &err);
    ingest_spool_batch_init(&b);
    for (;;) {
        ASSERT_OK(ingest_spool_read(sp, &b, 1000, 1 << 24, &err), &err);
        if (b.n == 0) {
            break;
        }
        for (size_t i = 0; i < b.n; i++) {
            struct ingest_producer_msg m;
            char tenant[SL_STORE_ID_MAX];
            json_t *v;
            const char *ua;

            ASSERT_OK(ingest_queue_decode(b.recs[i].data, b.recs[i].len, &m, tenant,
                                          sizeof(tenant)), NULL);
            if (strcmp(tenant, tenant_id) != 0) {
                continue;
            }
            v = json_loadb(m.value, m.value_len, 0, NULL);
            ASSERT_TRUE(v != NULL);
            ua = json_string_value(json_object_get(json_object_get(v, "context"), "user_agent"));
            if (ua != NULL && (strncmp(ua, "curl", 4) == 0 || strstr(ua, "Headless") != NULL)) {
                (*n_bots)++;
            }
            json_decref(v);
            n++;
        }
    }
    ingest_spool_batch_fini(&b);
    ingest_spool_close(sp);
    return n;
}

/*
 * A tenant with drop_bots gets bot events dropped at the edge (counted in the answer, by
 * reason in /metrics and in /stats); a tenant without keeps them (the loader flags them).
 * The edge runs alone (no loader), so it makes its own agent-only checker.
 */
static void test_edge_drops_bots_for_tenants_that_ask(void)
{
    static const char batch[] =
        "{\"events\":[{\"type\":\"pageview\",\"context\":{\"user_agent\":\"Mozilla/5.0 "
        "(Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36\"}},"
        "{\"type\":\"pageview\",\"context\":{\"user_agent\":\"curl/8.5.0\"}},"
        "{\"type\":\"pageview\",\"context\":{\"user_agent\":\"Mozilla/5.0 (X11; Linux x86_64) "
        "AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36\"}},"
        "{\"type\":\"click\",\"context\":{\"user_agent\":\"curl/7.88.1\"}}]}";
    struct edge e;
    struct resp r;
    struct sl_store *st = NULL;
    struct sl_tenant other;
    struct sl_key k;
    struct sl_err err;
    char other_key[SL_KEY_SECRET_MAX];
    char auth[128];
    const char *headers[] = {auth, "Content-Type: application/json", NULL};
    json_t *v;
    int n_bots = 0;

    edge_init(&e, "SLUICE_INGEST_ROLES=edge", NULL);
    ASSERT_OK(sl_store_open(&st, e.db, 1000, &err), &err);
    ASSERT_OK(sl_store_tenant_set_drop_bots(st, "acme", true, (int64_t)time(NULL), &err), &err);
    ASSERT_OK(sl_store_tenant_create(st, "keeper", "paid", (int64_t)time(NULL), &other, &err),
              &err);
    ASSERT_OK(sl_store_key_create(st, "keeper", "k", NULL, 0, (int64_t)time(NULL), &k,
                                  other_key, &err), &err);
    sl_store_close(st);
    edge_start(&e);

    post(&e, batch, &r);
    expect(&r, 200, "\"accepted\":1,\"rejected\":0,\"dropped\":3,");
    resp_fini(&r);
    /* Every event a bot: nothing to store, still a 200 that says so. */
    post(&e, "{\"type\":\"click\",\"context\":{\"user_agent\":\"curl/8.0\"}}", &r);
    expect(&r, 200, "\"accepted\":0,\"rejected\":0,\"dropped\":1,");
    resp_fini(&r);
    /* The other tenant keeps its bots. */
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", other_key);
    request(&e, "POST", "/ingest", headers, batch, strlen(batch), &r);
    expect(&r, 200, "\"accepted\":4,\"rejected\":0,\"errors\"");
    resp_fini(&r);

    request(&e, "GET", "/metrics", NULL, NULL, 0, &r);
    expect(&r, 200, "sluice_edge_bots_dropped_total{reason=\"scripted\"} 3");
    ASSERT_CONTAINS(r.body, "sluice_edge_bots_dropped_total{reason=\"headless\"} 1");
    ASSERT_CONTAINS(r.body, "sluice_events_accepted_total 5");
    resp_fini(&r);
    request(&e, "GET", "/stats", NULL, NULL, 0, &r);
    v = body_json(&r);
    ASSERT_EQ_INT(json_integer_value(json_object_get(json_object_get(v, "events"),
                                                     "bots_dropped")), 4);
    json_decref(v);
    resp_fini(&r);
    test_daemon_stop(&e.d, STOP_MS);

    ASSERT_EQ_INT(spooled_for(&e, e.tenant_id, &n_bots), 1);
    ASSERT_EQ_INT(n_bots, 0);
    ASSERT_EQ_INT(spooled_for(&e, other.id, &n_bots), 4);
    ASSERT_EQ_INT(n_bots, 3);
    edge_fini(&e);
}

/*
 * 256 keep-alive connections each send 20 single-event POSTs one after another, all at
 * once; every request must be answered 200, long before the idle timeout. Guards against
 * requests left suspended forever, as libmicrohttpd's epoll mode did under this load.
 */
static void test_edge_many_connections_all_answered(void)
{
    enum { N = 256, PER_CONN = 20 };
    static char bufs[N][1024];
    struct edge e;
    int fds[N], left[N];
    size_t got[N];
    char req[1024];
    size_t req_len;
    int port, n_ok = 0, n_open = N;
    long deadline;
    const char *body = "{\"type\":\"click\",\"name\":\"burst\"}";

    edge_init(&e, "SLUICE_HTTP_IDLE_TIMEOUT_S=120", NULL);
    /* Far above this test's 5120 events, so the rate limit stays out of the way. */
    {
        struct sl_store *st = NULL;
        struct sl_err err;

        ASSERT_OK(sl_store_open(&st, e.db, 1000, &err), &err);
        ASSERT_OK(sl_store_tenant_set_limits(st, "acme", 1000000, 1000000, -1,
                                             (int64_t)time(NULL), &err), &err);
        sl_store_close(st);
    }
    edge_start(&e);
    port = atoi(strrchr(e.base, ':') + 1);
    req_len = (size_t)snprintf(req, sizeof(req),
                               "POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                               "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                               "Content-Length: %zu\r\n\r\n%s",
                               e.key, strlen(body), body);
    for (int i = 0; i < N; i++) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        ASSERT_TRUE(fds[i] >= 0);
        ASSERT_EQ_INT(connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
        got[i] = 0;
        left[i] = PER_CONN;
    }
    for (int i = 0; i < N; i++) {
        ASSERT_EQ_INT(write(fds[i], req, req_len), (long long)req_len);
    }
    /* A correctness deadline far above any answer time: a request left suspended would
     * only be closed by the 120 s idle timeout. */
    deadline = test_now_ms() + 60000;
    while (n_open > 0 && test_now_ms() < deadline) {
        struct pollfd pfds[N];
        int idx[N];
        int n = 0;

        for (int i = 0; i < N; i++) {
            if (fds[i] >= 0) {
                pfds[n].fd = fds[i];
                pfds[n].events = POLLIN;
                idx[n++] = i;
            }
        }
        if (poll(pfds, (nfds_t)n, 100) <= 0) {
            continue;
        }
        for (int k = 0; k < n; k++) {
            int i = idx[k];
            char *end;
            ssize_t r;

            if (!(pfds[k].revents & (POLLIN | POLLHUP | POLLERR))) {
                continue;
            }
            r = read(fds[i], bufs[i] + got[i], sizeof(bufs[i]) - 1 - got[i]);
            if (r <= 0) {
                close(fds[i]);
                fds[i] = -1;
                n_open--;
                continue;
            }
            got[i] += (size_t)r;
            bufs[i][got[i]] = '\0';
            end = strstr(bufs[i], "\"errors\":[]}");
            if (end == NULL) {
                continue;
            }
            /* One whole answer: count it, then send the next request on this connection. */
            n_ok += strncmp(bufs[i], "HTTP/1.1 200", 12) == 0 ? 1 : 0;
            got[i] = 0;
            if (--left[i] == 0) {
                close(fds[i]);
                fds[i] = -1;
                n_open--;
            }
            else {
                ASSERT_EQ_INT(write(fds[i], req, req_len), (long long)req_len);
            }
        }
    }
    for (int i = 0; i < N; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
    if (n_ok != N * PER_CONN) {
        TEST_FAIL("%d of %d keep-alive requests answered 200", n_ok, N * PER_CONN);
    }
    test_daemon_stop(&e.d, STOP_MS);
    edge_fini(&e);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_edge_accepts_and_spools_normalized_events),
        TEST_CASE(test_edge_assigns_sessions),
        TEST_CASE(test_edge_untrusted_peer_cannot_spoof_ip),
        TEST_CASE(test_edge_bad_requests),
        TEST_CASE(test_edge_compressed_bodies_and_bombs),
        TEST_CASE(test_edge_auth_paths),
        TEST_CASE(test_edge_rate_limit_and_spool_full),
        TEST_CASE(test_edge_cors_health_stats_metrics),
        TEST_CASE(test_edge_many_connections_all_answered),
        TEST_CASE(test_edge_drops_bots_for_tenants_that_ask),
        {NULL, NULL},
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = test_main(argc, argv, cases);
    curl_global_cleanup();
    return rc;
}

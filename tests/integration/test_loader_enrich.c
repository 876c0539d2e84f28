/*
 * Inline enrichment in the loader, end to end: a built sluice-ingest on the embedded
 * default (spool, no broker) with MaxMind's test city database and uap-core's regexes.yaml,
 * events POSTed over HTTP, rows read back from the real ClickHouse.
 *
 * - A tenant on an enrichment tier: country, city, browser, OS, device and is_bot land with
 *   the enrichment_version /health reports; a tenant whose tier has enrichment off gets
 *   none of it (enrichment_version 0).
 * - A corrupt city database: events still load (without GeoIP, with the user-agent
 *   columns) and /health says "degraded" with the database's error.
 *
 * Needs SLUICE_TEST_CLICKHOUSE_URL and SLUICE_TEST_UAP_CORE_DIR (skips without them unless
 * SLUICE_TEST_REQUIRE_STACK=1). Every case uses its own database and drops it.
 */
#include <jansson.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "ch.h"
#include "daemon.h"
#include "store.h"
#include "chquery.h"
#include "httpclient.h"
#include "test.h"

#define START_MS 30000
#define STOP_MS 30000
#define LOAD_MS 60000

#define CHROME_WIN                                                                         \
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "     \
    "Chrome/120.0.0.0 Safari/537.36"
#define GOOGLEBOT                                                                          \
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"

struct fixture {
    char *dir;
    char *store;
    char *geo_dir;
    char database[96];
    char key_on[SL_KEY_SECRET_MAX];
    char key_off[SL_KEY_SECRET_MAX];
    char tenant_on[SL_STORE_ID_MAX];
    char tenant_off[SL_STORE_ID_MAX];
    const char *ch_url;
    const char *uap_dir;
    struct sl_ch *ch;
    struct test_daemon d;
    bool has_daemon;
    int port;
    char *env[16];
    size_t n_env;
};

static void add_env(struct fixture *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add_env(struct fixture *f, const char *fmt, ...)
{
    va_list ap;

    ASSERT_TRUE(f->n_env < 15);
    va_start(ap, fmt);
    if (vasprintf(&f->env[f->n_env], fmt, ap) < 0) {
        TEST_FAIL("vasprintf");
    }
    va_end(ap);
    f->n_env++;
}

static void fixture_init(struct fixture *f, const char *name)
{
    struct sl_store *st = NULL;
    struct sl_tenant t;
    struct sl_tier tier;
    struct sl_key k;
    struct sl_err err;
    struct sl_ch_settings chs = {0};
    int64_t now = (int64_t)time(NULL);

    memset(f, 0, sizeof(*f));
    f->ch_url = test_env_require("SLUICE_TEST_CLICKHOUSE_URL");
    f->uap_dir = test_env_require("SLUICE_TEST_UAP_CORE_DIR");
    f->dir = test_tmpdir();
    f->store = test_path(f->dir, "tenants.db");
    f->geo_dir = test_path(getenv("SLUICE_SOURCE_DIR"), "../shared/testdata/geoip");
    snprintf(f->database, sizeof(f->database), "sluice_test_loader_enrich_%s_%ld", name,
             (long)getpid());
    ASSERT_OK(sl_store_open(&st, f->store, 1000, &err), &err);
    ASSERT_OK(sl_store_tier_get(st, "paid", &tier, &err), &err);
    snprintf(tier.name, sizeof(tier.name), "plain");
    tier.has_enrichment = false;
    ASSERT_OK(sl_store_tier_put(st, &tier, now, &err), &err);
    ASSERT_OK(sl_store_tenant_create(st, "rich", "paid", now, &t, &err), &err);
    memcpy(f->tenant_on, t.id, sizeof(f->tenant_on));
    ASSERT_OK(sl_store_key_create(st, "rich", "k", NULL, 0, now, &k, f->key_on, &err), &err);
    ASSERT_OK(sl_store_tenant_create(st, "plain", "plain", now, &t, &err), &err);
    memcpy(f->tenant_off, t.id, sizeof(f->tenant_off));
    ASSERT_OK(sl_store_key_create(st, "plain", "k", NULL, 0, now, &k, f->key_off, &err), &err);
    sl_store_close(st);
    chs.url = (char *)f->ch_url;
    chs.timeout_ms = 30000;
    chs.connect_timeout_ms = 5000;
    chs.max_retries = 2;
    chs.retry_base_ms = 100;
    chs.retry_max_ms = 1000;
    chs.max_result_bytes = 16 << 20;
    ASSERT_OK(sl_ch_create(&f->ch, &chs, &err), &err);
}

static void fixture_fini(struct fixture *f)
{
    struct sl_err err;
    char sql[256];

    if (f->has_daemon) {
        test_daemon_fini(&f->d);
    }
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", f->database);
    ASSERT_OK(sl_ch_exec(f->ch, sql, &err), &err);
    sl_ch_destroy(f->ch);
    for (size_t i = 0; i < f->n_env; i++) {
        free(f->env[i]);
    }
    test_rmtree(f->dir);
    free(f->dir);
    free(f->store);
    free(f->geo_dir);
}

/* Starts sluice-ingest (edge and loader, spool mode) with city database geo_name. */
static void start(struct fixture *f, const char *geo_name)
{
    char *bin = test_bin("sluice-ingest");
    char *spool = test_path(f->dir, "spool");

    f->port = test_free_port();
    add_env(f, "SLUICE_DB=%s", f->store);
    add_env(f, "SLUICE_SPOOL_DIR=%s", spool);
    add_env(f, "SLUICE_HTTP_ADDR=127.0.0.1:%d", f->port);
    add_env(f, "SLUICE_LOG_LEVEL=info");
    add_env(f, "SLUICE_CLICKHOUSE_URL=%s", f->ch_url);
    add_env(f, "SLUICE_CLICKHOUSE_DATABASE=%s", f->database);
    add_env(f, "SLUICE_LOADER_BATCH_AGE_MS=200");
    add_env(f, "SLUICE_METRICS_SNAPSHOT_S=0");
    add_env(f, "SLUICE_GEOIP_DB=%s/%s", f->geo_dir, geo_name);
    add_env(f, "SLUICE_UA_REGEXES=%s/regexes.yaml", f->uap_dir);
    f->env[f->n_env] = NULL;
    test_daemon_start(&f->d, bin, NULL, f->dir, f->env);
    f->has_daemon = true;
    test_daemon_wait_started(&f->d, "ingest", START_MS);
    free(spool);
    free(bin);
}

/* ---- HTTP ---- */

/* GET path (body NULL) or POST body to it with key; returns the status, body in *out. */
static long http(struct fixture *f, const char *path, const char *key, const char *body,
                 char **out)
{
    return test_http(f->port, path, key, body, out);
}

static json_t *get_json(struct fixture *f, const char *path)
{
    char *body = NULL;
    long status = http(f, path, NULL, NULL, &body);
    json_t *v = json_loads(body, 0, NULL);

    if (status != 200 || v == NULL) {
        TEST_FAIL("GET %s: %ld %s", path, status, body);
    }
    free(body);
    return v;
}

/* Polls /health until the loader is loading (the schema applied); returns the answer. */
static json_t *wait_loading(struct fixture *f)
{
    long deadline = test_now_ms() + START_MS;

    for (;;) {
        json_t *v = get_json(f, "/health");
        const char *state =
            json_string_value(json_object_get(json_object_get(v, "loader"), "state"));

        if (state != NULL && strcmp(state, "ok") == 0) {
            return v;
        }
        json_decref(v);
        if (test_now_ms() > deadline) {
            TEST_FAIL("the loader is not loading after %d ms", START_MS);
        }
        usleep(100 * 1000); /* poll interval */
    }
}

/* POSTs two events (a person in London on Chrome whose client hints say Windows 11,
 * Googlebot from Japan) with key. */
static void post_two(struct fixture *f, const char *key)
{
    char *resp = NULL;
    long status = http(f, "/ingest", key,
                       "{\"events\":[{\"type\":\"pageview\",\"context\":{\"ip\":\"81.2.69.142\","
                       "\"user_agent\":\"" CHROME_WIN "\",\"path\":\"/a\",\"client_hints\":{"
                       "\"Sec-CH-UA-Platform\":\"\\\"Windows\\\"\","
                       "\"Sec-CH-UA-Platform-Version\":\"\\\"15.0.0\\\"\"}}},"
                       "{\"type\":\"pageview\",\"context\":{\"ip\":\"2001:218::1\","
                       "\"user_agent\":\"" GOOGLEBOT "\",\"path\":\"/b\"}}]}",
                       &resp);

    if (status != 200 || strstr(resp, "\"accepted\":2") == NULL) {
        TEST_FAIL("POST /ingest: %ld %s", status, resp);
    }
    free(resp);
}

/* ---- ClickHouse ---- */

/* Polls until the table holds want events (uniqExact(id)), or fails. */
static void wait_events(struct fixture *f, long long want)
{
    long deadline = test_now_ms() + LOAD_MS;
    long long n = -1;

    while ((n = test_ch_int(f->ch, "SELECT uniqExact(id) FROM %s.events", f->database)) != want) {
        if (test_now_ms() > deadline) {
            TEST_FAIL("%lld events in ClickHouse after %d ms, want %lld", n, LOAD_MS, want);
        }
        usleep(100 * 1000); /* poll interval */
    }
}

/* ---- cases ---- */

static void test_loader_enrich_inline_per_tier(void)
{
    struct fixture f;
    json_t *health, *enr;
    long long version;
    char line[1024], want[1024];

    fixture_init(&f, "tier");
    start(&f, "GeoIP2-City-Test.mmdb");
    health = wait_loading(&f);
    ASSERT_EQ_STR(json_string_value(json_object_get(health, "status")), "ok");
    enr = json_object_get(health, "enrichment");
    ASSERT_TRUE(json_is_true(json_object_get(enr, "ok")));
    ASSERT_EQ_STR(json_string_value(json_object_get(json_object_get(enr, "geoip"), "state")),
                  "ok");
    ASSERT_EQ_STR(json_string_value(json_object_get(json_object_get(enr, "ua"), "state")), "ok");
    version = json_integer_value(json_object_get(enr, "version"));
    ASSERT_TRUE(version > 0);
    json_decref(health);

    post_two(&f, f.key_on);
    post_two(&f, f.key_off);
    wait_events(&f, 4);

    test_ch_line(f.ch, line, sizeof(line),
                 "SELECT country_code, city, browser, os, os_version, device, is_bot, "
                 "enrichment_version FROM %s.events WHERE tenant_id = '%s' AND path = '/a' "
                 "FORMAT TabSeparated", f.database, f.tenant_on);
    /* The agent says Windows NT 10.0; the client hints (platform version 15) refine it. */
    snprintf(want, sizeof(want), "GB\tLondon\tChrome\tWindows\t11\tOther\t0\t%lld", version);
    ASSERT_EQ_STR(line, want);
    test_ch_line(f.ch, line, sizeof(line),
                 "SELECT country_code, browser, is_bot, bot_reason != '', "
                 "enrichment_version FROM %s.events WHERE tenant_id = '%s' AND path = '/b' "
                 "FORMAT TabSeparated", f.database, f.tenant_on);
    snprintf(want, sizeof(want), "JP\tGooglebot\t1\t1\t%lld", version);
    ASSERT_EQ_STR(line, want);
    /* The other tier: nothing enriched. */
    test_ch_line(f.ch, line, sizeof(line), "SELECT count(), max(country_code), max(browser), "
                 "max(is_bot), max(enrichment_version) FROM %s.events WHERE tenant_id = '%s' "
                 "FORMAT TabSeparated", f.database, f.tenant_off);
    ASSERT_EQ_STR(line, "2\t\t\t0\t0");
    /* The rollups carry the enrichment dimensions (views are written after the table, so
     * poll). */
    {
        long deadline = test_now_ms() + LOAD_MS;
        long long n;

        while ((n = test_ch_int(f.ch, "SELECT uniqExactMerge(events) FROM %s.events_daily WHERE "
                                "tenant_id = '%s' AND country_code = 'GB' AND browser = 'Chrome'",
                                f.database, f.tenant_on)) != 1) {
            if (test_now_ms() > deadline) {
                TEST_FAIL("the daily rollup has %lld GB/Chrome events, want 1", n);
            }
            usleep(100 * 1000); /* poll interval */
        }
    }
    test_daemon_stop(&f.d, STOP_MS);
    fixture_fini(&f);
}

static void test_loader_enrich_corrupt_database_keeps_loading(void)
{
    struct fixture f;
    json_t *health, *geo;
    char line[1024];

    fixture_init(&f, "corrupt");
    start(&f, "GeoIP2-City-Test-Invalid-Node-Count.mmdb");
    health = wait_loading(&f);
    ASSERT_EQ_STR(json_string_value(json_object_get(health, "status")), "degraded");
    geo = json_object_get(json_object_get(health, "enrichment"), "geoip");
    ASSERT_EQ_STR(json_string_value(json_object_get(geo, "state")), "error");
    ASSERT_CONTAINS(json_string_value(json_object_get(geo, "error")), "Invalid-Node-Count");
    ASSERT_TRUE(json_is_false(json_object_get(json_object_get(health, "enrichment"), "ok")));
    json_decref(health);

    post_two(&f, f.key_on);
    wait_events(&f, 2);
    test_ch_line(f.ch, line, sizeof(line),
                 "SELECT country_code, city, browser, enrichment_version > 0 "
                 "FROM %s.events WHERE path = '/a' FORMAT TabSeparated", f.database);
    ASSERT_EQ_STR(line, "\t\tChrome\t1");
    test_daemon_stop(&f.d, STOP_MS);
    fixture_fini(&f);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_loader_enrich_inline_per_tier),
        TEST_CASE(test_loader_enrich_corrupt_database_keeps_loading),
        {NULL, NULL},
    };

    return test_main(argc, argv, cases);
}

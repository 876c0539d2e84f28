/*
 * Tests workers/enrichment/enrich.c, the facade: the settings tables, every column of a
 * result and its JSON form, working without data and with broken data (health says why),
 * enrichment_version and reloads, the numeric version (enrich_version_id) and the agent-only
 * bot check, client-hint refinements, every bot_reason end to end, the agent cache, the
 * combined settings table, and failed allocations.
 *
 * Needs SLUICE_TEST_UAP_CORE_DIR and SLUICE_TEST_CRAWLERS_JSON (scripts/enrich-data.sh);
 * MaxMind's test databases from ../shared/testdata/geoip.
 */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include "alloc.h"
#include "cfg.h"
#include "enrich.h"
#include "mmdb_write.h"
#include "test.h"

#define CHROME_WIN "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like " \
    "Gecko) Chrome/124.0.0.0 Safari/537.36"
#define CHROME_ANDROID "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like " \
    "Gecko) Chrome/124.0.0.0 Mobile Safari/537.36"

static char *geoip_file(const char *name)
{
    const char *dir = getenv("SLUICE_TEST_GEOIP_DIR");
    char *shared, *path;

    if (dir != NULL && dir[0] != '\0') {
        return test_path(dir, name);
    }
    shared = test_path(getenv("SLUICE_SOURCE_DIR"), "../shared/testdata/geoip");
    path = test_path(shared, name);
    free(shared);
    return path;
}

/* A test environment: the data files and a temp folder with an ASN database. */
struct fixture {
    char *dir;
    char *city;
    char *asn;
    char *regexes;
    const char *crawlers;
    struct enrich_settings s;
};

static void fixture_init(struct fixture *fx)
{
    static const struct test_mmdb_net nets[] = {
        {"81.2.69.0/24", 20712, "Andrews & Arnold Ltd", NULL, NULL},
        {"52.94.0.0/16", 16509, "AMAZON-02", NULL, NULL},
    };

    memset(fx, 0, sizeof(*fx));
    fx->regexes = test_path(test_env_require("SLUICE_TEST_UAP_CORE_DIR"), "regexes.yaml");
    fx->crawlers = test_env_require("SLUICE_TEST_CRAWLERS_JSON");
    fx->dir = test_tmpdir();
    fx->city = geoip_file("GeoIP2-City-Test.mmdb");
    fx->asn = test_path(fx->dir, "asn.mmdb");
    test_mmdb_write(fx->asn, "GeoLite2-ASN", 6, 1700000000, nets, 2);
    fx->s = (struct enrich_settings){.asn_db = fx->asn, .crawler_patterns = (char *)fx->crawlers,
                                     .ua_cache_entries = 1000, .geoip_reload_s = 60};
}

static void fixture_fini(struct fixture *fx)
{
    test_rmtree(fx->dir);
    free(fx->dir);
    free(fx->city);
    free(fx->asn);
    free(fx->regexes);
}

static struct enrich *create(const struct enrich_settings *s, const char *city,
                             const char *regexes)
{
    struct enrich *e = NULL;
    struct sl_err err;

    sl_err_clear(&err);
    ASSERT_OK(enrich_create(s, city, regexes, 1000, &e, &err), &err);
    return e;
}

static void lookup(struct enrich *e, const char *ip, const char *ua,
                   const struct enrich_hints *hints, struct enrich_result *r)
{
    ASSERT_OK(enrich_lookup(e, ip, ua, hints, r), NULL);
}

static void test_enrich_settings_tables(void)
{
    struct enrich_settings s = {0};
    struct enrich_paths paths = {0};
    struct sl_cfg_section secs[] = {
        SL_CFG_SECTION("enrich", enrich_cfg_opts, enrich_cfg_n_opts, &s),
        SL_CFG_SECTION("enrich_paths", enrich_paths_cfg_opts, enrich_paths_cfg_n_opts, &paths),
    };
    char *env[] = {"SLUICE_UA_CACHE_ENTRIES=5", "SLUICE_GEOIP_DB=/x/city.mmdb", NULL};
    char *bad_env[] = {"SLUICE_GEOIP_RELOAD_S=-1", NULL};
    struct sl_err err;

    sl_err_clear(&err);
    ASSERT_OK(sl_cfg_load(secs, 2, NULL, NULL, &err), &err);
    ASSERT_EQ_INT(s.ua_cache_entries, 100000);
    ASSERT_EQ_INT(s.geoip_reload_s, 60);
    ASSERT_EQ_STR(s.asn_db, "");
    ASSERT_EQ_STR(s.crawler_patterns, "");
    ASSERT_EQ_STR(paths.geoip_db, "");
    ASSERT_EQ_STR(paths.ua_regexes, "");
    ASSERT_OK(sl_cfg_load(secs, 2, NULL, env, &err), &err);
    ASSERT_EQ_INT(s.ua_cache_entries, 5);
    ASSERT_EQ_STR(paths.geoip_db, "/x/city.mmdb");
    ASSERT_EQ_INT(sl_cfg_load(secs, 2, NULL, bad_env, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "SLUICE_GEOIP_RELOAD_S");
    sl_cfg_fini(secs, 2);
}

static void test_enrich_every_column(void)
{
    struct fixture fx;
    struct enrich *e;
    struct enrich_result r;
    json_t *row;
    char *text;

    fixture_init(&fx);
    e = create(&fx.s, fx.city, fx.regexes);
    lookup(e, "81.2.69.142", CHROME_WIN, NULL, &r);
    ASSERT_EQ_STR(r.country_code, "GB");
    ASSERT_EQ_STR(r.country, "United Kingdom");
    ASSERT_EQ_STR(r.region, "England");
    ASSERT_EQ_STR(r.city, "London");
    ASSERT_EQ_STR(r.postal, "");
    ASSERT_TRUE(r.has_location && fabs(r.latitude - 51.5142) < 1e-9);
    ASSERT_EQ_INT(r.accuracy_radius, 10);
    ASSERT_EQ_STR(r.geo_timezone, "Europe/London");
    ASSERT_EQ_INT(r.asn, 20712);
    ASSERT_EQ_STR(r.as_org, "Andrews & Arnold Ltd");
    ASSERT_EQ_STR(r.geo_status, "ok");
    ASSERT_EQ_STR(r.browser, "Chrome");
    ASSERT_EQ_STR(r.browser_version, "124.0.0.0");
    ASSERT_EQ_STR(r.os, "Windows");
    ASSERT_EQ_STR(r.os_version, "10");
    ASSERT_EQ_STR(r.device, "Other");
    ASSERT_EQ_STR(r.device_brand, "");
    ASSERT_EQ_STR(r.device_model, "");
    ASSERT_TRUE(!r.is_bot);
    ASSERT_EQ_STR(r.bot_reason, "");
    ASSERT_CONTAINS(r.enrichment_version, "geo=");
    ASSERT_CONTAINS(r.enrichment_version, ",asn=1700000000,ua=");
    ASSERT_CONTAINS(r.enrichment_version, ",crawlers=");
    ASSERT_CONTAINS(r.enrichment_version, ",rules=1");
    ASSERT_NOT_CONTAINS(r.enrichment_version, "=-");

    row = enrich_result_to_json(&r);
    text = json_dumps(row, JSON_COMPACT);
    ASSERT_CONTAINS(text, "{\"country_code\":\"GB\",\"country\":\"United Kingdom\",\"region\":"
                    "\"England\",\"city\":\"London\",\"postal\":\"\",\"latitude\":51.514");
    ASSERT_CONTAINS(text, "\"accuracy_radius\":10,\"geo_timezone\":\"Europe/London\",\"asn\":"
                    "20712,\"as_org\":\"Andrews & Arnold Ltd\",\"geo_status\":\"ok\",\"browser\":"
                    "\"Chrome\",\"browser_version\":\"124.0.0.0\",\"os\":\"Windows\",\"os_version\""
                    ":\"10\",\"device\":\"Other\",\"device_brand\":\"\",\"device_model\":\"\","
                    "\"is_bot\":false,\"bot_reason\":\"\",\"enrichment_version\":\"geo=");
    free(text);
    json_decref(row);

    /* Unknown numbers are null in JSON; a private address says so. */
    lookup(e, "192.168.0.10", "", NULL, &r);
    row = enrich_result_to_json(&r);
    ASSERT_TRUE(json_is_null(json_object_get(row, "latitude")));
    ASSERT_TRUE(json_is_null(json_object_get(row, "asn")));
    ASSERT_TRUE(json_is_null(json_object_get(row, "accuracy_radius")));
    ASSERT_EQ_STR(json_string_value(json_object_get(row, "geo_status")), "private");
    ASSERT_EQ_INT(json_object_size(row), 23);
    json_decref(row);
    lookup(e, NULL, NULL, NULL, &r);
    ASSERT_EQ_STR(r.geo_status, "no_ip");
    ASSERT_EQ_STR(r.bot_reason, "empty");
    enrich_destroy(e);
    fixture_fini(&fx);
}

static void test_enrich_without_data(void)
{
    struct enrich_settings s = {.ua_cache_entries = 10};
    struct enrich *e = create(&s, NULL, NULL);
    struct enrich_result r;
    struct enrich_health h;

    lookup(e, "81.2.69.142", CHROME_WIN, NULL, &r);
    ASSERT_EQ_STR(r.geo_status, "no_database");
    ASSERT_EQ_STR(r.country_code, "");
    ASSERT_EQ_STR(r.browser, "");
    ASSERT_EQ_STR(r.device, "");
    ASSERT_TRUE(!r.is_bot);
    ASSERT_EQ_STR(r.enrichment_version, "geo=-,asn=-,ua=-,crawlers=-,rules=1");
    /* The built-in bot rules work without any file. */
    lookup(e, NULL, "curl/8.0", NULL, &r);
    ASSERT_EQ_STR(r.bot_reason, "scripted:curl");
    enrich_health(e, &h);
    ASSERT_TRUE(h.is_ok);
    for (int i = 0; i < ENRICH_N_PARTS; i++) {
        ASSERT_EQ_STR(enrich_part_state_name(h.parts[i].state), "off");
    }
    enrich_destroy(e);
    enrich_destroy(NULL);
}

static void test_enrich_broken_data_is_reported_and_lookups_go_on(void)
{
    struct fixture fx;
    struct enrich_settings s;
    struct enrich *e;
    struct enrich_result r;
    struct enrich_health h;
    char *bad_city, *bad_crawlers, *text;
    json_t *hj;
    FILE *f;

    fixture_init(&fx);
    bad_city = geoip_file("GeoIP2-City-Test-Invalid-Node-Count.mmdb");
    bad_crawlers = test_path(fx.dir, "crawlers.json");
    f = fopen(bad_crawlers, "w");
    fputs("{not json", f);
    fclose(f);
    s = fx.s;
    s.crawler_patterns = bad_crawlers;
    e = create(&s, bad_city, "/no/such/regexes.yaml");
    enrich_health(e, &h);
    ASSERT_TRUE(!h.is_ok);
    ASSERT_EQ_STR(h.parts[ENRICH_PART_GEOIP].name, "geoip");
    ASSERT_EQ_INT(h.parts[ENRICH_PART_GEOIP].state, ENRICH_PART_ERROR);
    ASSERT_CONTAINS(h.parts[ENRICH_PART_GEOIP].error, "invalid metadata");
    ASSERT_EQ_INT(h.parts[ENRICH_PART_ASN].state, ENRICH_PART_OK);
    ASSERT_EQ_STR(h.parts[ENRICH_PART_ASN].version, "1700000000");
    ASSERT_EQ_INT(h.parts[ENRICH_PART_UA].state, ENRICH_PART_ERROR);
    ASSERT_CONTAINS(h.parts[ENRICH_PART_UA].error, "/no/such/regexes.yaml: cannot open");
    ASSERT_EQ_INT(h.parts[ENRICH_PART_CRAWLERS].state, ENRICH_PART_ERROR);
    ASSERT_CONTAINS(h.parts[ENRICH_PART_CRAWLERS].error, "not JSON");
    hj = enrich_health_to_json(&h);
    text = json_dumps(hj, JSON_COMPACT);
    ASSERT_CONTAINS(text, "\"ok\":false");
    ASSERT_CONTAINS(text, "\"geoip\":{\"state\":\"error\"");
    ASSERT_CONTAINS(text, "\"asn\":{\"state\":\"ok\"");
    free(text);
    json_decref(hj);

    lookup(e, "81.2.69.142", CHROME_WIN, NULL, &r);
    ASSERT_EQ_STR(r.geo_status, "no_database");
    ASSERT_EQ_INT(r.asn, 20712);
    ASSERT_EQ_STR(r.browser, "");
    ASSERT_CONTAINS(r.enrichment_version, "geo=-,asn=1700000000,ua=-,crawlers=-");
    enrich_destroy(e);
    free(bad_crawlers);
    free(bad_city);
    fixture_fini(&fx);
}

static void test_enrich_version_follows_reloads(void)
{
    static const struct test_mmdb_net v2[] = {{"81.2.69.0/24", 0, NULL, "GB", "Londres"}};
    struct fixture fx;
    struct enrich *e;
    struct enrich_result r;
    struct enrich_health h;
    char *live, *next;
    char before[96];
    struct sl_err err;

    fixture_init(&fx);
    live = test_path(fx.dir, "city.mmdb");
    next = test_path(fx.dir, "next.mmdb");
    test_mmdb_write(live, "Test-City", 6, 1600000000, v2, 0);
    e = create(&fx.s, live, fx.regexes);
    lookup(e, "81.2.69.142", NULL, NULL, &r);
    ASSERT_EQ_STR(r.geo_status, "not_found");
    ASSERT_CONTAINS(r.enrichment_version, "geo=1600000000,");
    snprintf(before, sizeof(before), "%s", r.enrichment_version);

    test_mmdb_write(next, "Test-City", 6, 1600000500, v2, 1);
    ASSERT_EQ_INT(rename(next, live), 0);
    sl_err_clear(&err);
    ASSERT_OK(enrich_reload(e, 1010, false, &err), &err);
    lookup(e, "81.2.69.142", NULL, NULL, &r);
    ASSERT_EQ_STR(r.geo_status, "not_found");
    ASSERT_OK(enrich_reload(e, 1060, false, &err), &err);
    lookup(e, "81.2.69.142", NULL, NULL, &r);
    ASSERT_EQ_STR(r.city, "Londres");
    ASSERT_CONTAINS(r.enrichment_version, "geo=1600000500,");
    ASSERT_TRUE(strcmp(before + strlen("geo=1600000000"),
                       r.enrichment_version + strlen("geo=1600000500")) == 0);

    /* A broken replacement: the old database serves, health says degraded. */
    {
        char *broken = geoip_file("GeoIP2-City-Test-Broken-Double-Format.mmdb");
        FILE *in = fopen(broken, "rb"), *out = fopen(next, "wb");
        char buf[4096];
        size_t n;

        while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
            fwrite(buf, 1, n, out);
        }
        fclose(in);
        fclose(out);
        ASSERT_EQ_INT(rename(next, live), 0);
        free(broken);
    }
    ASSERT_EQ_INT(enrich_reload(e, 1100, true, &err), SL_EINVAL);
    enrich_health(e, &h);
    ASSERT_EQ_STR(enrich_part_state_name(h.parts[ENRICH_PART_GEOIP].state), "degraded");
    ASSERT_CONTAINS(h.parts[ENRICH_PART_GEOIP].error, "keeps serving");
    lookup(e, "81.2.69.142", NULL, NULL, &r);
    ASSERT_EQ_STR(r.city, "Londres");
    enrich_destroy(e);
    free(next);
    free(live);
    fixture_fini(&fx);
}

/* Sets path's modification time to mtime_s. */
static void set_mtime(const char *path, int64_t mtime_s)
{
    struct timespec times[2] = {{.tv_sec = (time_t)mtime_s}, {.tv_sec = (time_t)mtime_s}};

    ASSERT_EQ_INT(utimensat(AT_FDCWD, path, times, 0), 0);
}

/*
 * The number the events table stores: the newest mtime of the data in use (and never below
 * the built-in rules' epoch); it follows a reloaded database and lands in every result.
 */
static void test_enrich_version_id_grows_with_the_data(void)
{
    static const struct test_mmdb_net nets[] = {{"81.2.69.0/24", 0, NULL, "GB", "London"}};
    struct enrich_settings none = {.asn_db = "", .crawler_patterns = "", .ua_cache_entries = 10};
    struct fixture fx;
    struct enrich *e;
    struct enrich_result r;
    char *live, *next;
    struct sl_err err;
    int64_t t0 = ENRICH_BOTS_RULES_EPOCH + 1000;

    fixture_init(&fx);
    e = create(&none, NULL, NULL);
    ASSERT_EQ_INT(enrich_version_id(e), ENRICH_BOTS_RULES_EPOCH);
    enrich_destroy(e);

    live = test_path(fx.dir, "city.mmdb");
    next = test_path(fx.dir, "next.mmdb");
    test_mmdb_write(live, "Test-City", 6, 1600000000, nets, 0);
    set_mtime(live, t0);
    e = create(&none, live, NULL);
    ASSERT_EQ_INT(enrich_version_id(e), t0);
    lookup(e, "81.2.69.142", NULL, NULL, &r);
    ASSERT_EQ_INT(r.enrichment_version_id, t0);
    /* A private address looks nothing up, yet carries the same number. */
    lookup(e, "10.0.0.1", NULL, NULL, &r);
    ASSERT_EQ_INT(r.enrichment_version_id, t0);

    /* A database written later (even an older build) makes a bigger number once it serves. */
    test_mmdb_write(next, "Test-City", 6, 1500000000, nets, 1);
    set_mtime(next, t0 + 50);
    ASSERT_EQ_INT(rename(next, live), 0);
    ASSERT_EQ_INT(enrich_version_id(e), t0);
    sl_err_clear(&err);
    ASSERT_OK(enrich_reload(e, 2000, true, &err), &err);
    ASSERT_EQ_INT(enrich_version_id(e), t0 + 50);
    lookup(e, "81.2.69.142", NULL, NULL, &r);
    ASSERT_EQ_INT(r.enrichment_version_id, t0 + 50);
    enrich_destroy(e);

    /* regexes.yaml counts too, with the mtime it had when loaded. */
    {
        struct stat st;

        ASSERT_EQ_INT(stat(fx.regexes, &st), 0);
        e = create(&none, live, fx.regexes);
        ASSERT_EQ_INT(enrich_version_id(e), (int64_t)st.st_mtime > t0 + 50
                                                ? (int64_t)st.st_mtime
                                                : t0 + 50);
        enrich_destroy(e);
    }
    free(next);
    free(live);
    fixture_fini(&fx);
}

/* The edge's agent-only check: the same verdicts as a lookup, without an address. */
static void test_enrich_check_agent(void)
{
    struct fixture fx;
    struct enrich *e;
    struct enrich_bot_verdict v;
    struct enrich_stats st;

    fixture_init(&fx);
    fx.s.asn_db = "";
    e = create(&fx.s, NULL, NULL);
    ASSERT_OK(enrich_check_agent(e, "curl/8.5.0", &v), NULL);
    ASSERT_EQ_INT(v.kind, ENRICH_BOT_SCRIPTED);
    ASSERT_EQ_STR(v.reason, "scripted:curl");
    ASSERT_OK(enrich_check_agent(e, NULL, &v), NULL);
    ASSERT_EQ_STR(v.reason, "empty");
    ASSERT_OK(enrich_check_agent(e, CHROME_WIN, &v), NULL);
    ASSERT_EQ_INT(v.kind, ENRICH_BOT_NONE);
    ASSERT_OK(enrich_check_agent(e, "Mozilla/5.0 (compatible; Googlebot/2.1; "
                                 "+http://www.google.com/bot.html)", &v), NULL);
    ASSERT_EQ_INT(v.kind, ENRICH_BOT_CRAWLER);
    /* Answers are cached: the same agent again is a hit. */
    ASSERT_OK(enrich_check_agent(e, "curl/8.5.0", &v), NULL);
    enrich_stats(e, &st);
    ASSERT_TRUE(st.cache_hits >= 1);
    enrich_destroy(e);
    fixture_fini(&fx);
}

/* sluice-ingest's single table of every enrichment setting. */
static void test_enrich_config_table(void)
{
    struct enrich_config c = {0};
    struct sl_cfg_section sec = SL_CFG_SECTION("enrichment", enrich_config_cfg_opts,
                                               enrich_config_cfg_n_opts, &c);
    char *env[] = {"SLUICE_GEOIP_DB=/x/city.mmdb", "SLUICE_UA_CACHE_ENTRIES=7",
                   "SLUICE_CRAWLER_PATTERNS=/x/c.json", NULL};
    struct sl_err err;

    ASSERT_EQ_INT(enrich_config_cfg_n_opts, 6);
    sl_err_clear(&err);
    ASSERT_OK(sl_cfg_load(&sec, 1, NULL, env, &err), &err);
    ASSERT_EQ_STR(c.paths.geoip_db, "/x/city.mmdb");
    ASSERT_EQ_STR(c.paths.ua_regexes, "");
    ASSERT_EQ_STR(c.settings.crawler_patterns, "/x/c.json");
    ASSERT_EQ_STR(c.settings.asn_db, "");
    ASSERT_EQ_INT(c.settings.ua_cache_entries, 7);
    ASSERT_EQ_INT(c.settings.geoip_reload_s, 60);
    sl_cfg_fini(&sec, 1);
}

static struct enrich_hints hints_of(const char *json)
{
    struct enrich_hints h;
    json_error_t jerr;
    json_t *obj = json_loads(json, 0, &jerr);
    struct sl_err err;

    if (obj == NULL) {
        TEST_FAIL("bad test JSON: %s", jerr.text);
    }
    enrich_hints_init(&h);
    sl_err_clear(&err);
    ASSERT_OK(enrich_hints_from_json(&h, obj, &err), &err);
    json_decref(obj);
    return h;
}

static void test_enrich_client_hints_refine(void)
{
    struct fixture fx;
    struct enrich *e;
    struct enrich_result r;
    struct enrich_hints h;

    fixture_init(&fx);
    e = create(&fx.s, fx.city, fx.regexes);

    /* Windows 11 hides behind "Windows NT 10.0". */
    h = hints_of("{\"Sec-CH-UA\": \"\\\"Chromium\\\";v=\\\"124\\\", \\\"Google Chrome\\\";"
                 "v=\\\"124\\\", \\\"Not-A.Brand\\\";v=\\\"99\\\"\", \"Sec-CH-UA-Platform\": "
                 "\"\\\"Windows\\\"\", \"Sec-CH-UA-Platform-Version\": \"\\\"15.0.0\\\"\"}");
    lookup(e, NULL, CHROME_WIN, &h, &r);
    ASSERT_EQ_STR(r.os, "Windows");
    ASSERT_EQ_STR(r.os_version, "11");
    ASSERT_EQ_STR(r.browser, "Chrome");
    ASSERT_EQ_STR(r.browser_version, "124.0.0.0");
    /* Only the low-entropy platform: Windows 10 stays what the agent says. */
    h = hints_of("{\"Sec-CH-UA-Platform\": \"\\\"Windows\\\"\"}");
    lookup(e, NULL, CHROME_WIN, &h, &r);
    ASSERT_EQ_STR(r.os_version, "10");

    /* The full version list replaces the reduced 124.0.0.0. */
    h = hints_of("{\"fullVersionList\": [{\"brand\": \"Google Chrome\", \"version\": "
                 "\"124.0.6367.91\"}, {\"brand\": \"Chromium\", \"version\": \"124.0.6367.91\"}]}");
    lookup(e, NULL, CHROME_WIN, &h, &r);
    ASSERT_EQ_STR(r.browser, "Chrome");
    ASSERT_EQ_STR(r.browser_version, "124.0.6367.91");

    /* Brave and Opera look like Chrome in the agent; the brand tells. */
    h = hints_of("{\"brands\": [{\"brand\": \"Brave\", \"version\": \"124\"}, {\"brand\": "
                 "\"Chromium\", \"version\": \"124\"}], \"platform\": \"macOS\", "
                 "\"platformVersion\": \"14.4.1\"}");
    lookup(e, NULL, CHROME_WIN, &h, &r);
    ASSERT_EQ_STR(r.browser, "Brave");
    ASSERT_EQ_STR(r.browser_version, "124");
    ASSERT_EQ_STR(r.os, "Mac OS X");
    ASSERT_EQ_STR(r.os_version, "14.4.1");

    /* Android's reduced agent ("Android 10; K") with the model and version hints. */
    h = hints_of("{\"mobile\": true, \"model\": \"SM-S918B\", \"platform\": \"Android\", "
                 "\"platformVersion\": \"14.0.0\", \"brands\": [{\"brand\": \"Google Chrome\", "
                 "\"version\": \"124\"}]}");
    lookup(e, NULL, CHROME_ANDROID, &h, &r);
    ASSERT_EQ_STR(r.browser, "Chrome Mobile");
    ASSERT_EQ_STR(r.os, "Android");
    ASSERT_EQ_STR(r.os_version, "14.0.0");
    ASSERT_EQ_STR(r.device, "Samsung SM-S918B");
    ASSERT_EQ_STR(r.device_brand, "Samsung");
    ASSERT_EQ_STR(r.device_model, "SM-S918B");
    h = hints_of("{\"mobile\": true, \"model\": \"Zorgphone 9\"}");
    lookup(e, NULL, CHROME_ANDROID, &h, &r);
    ASSERT_EQ_STR(r.device, "Zorgphone 9");
    ASSERT_EQ_STR(r.device_model, "Zorgphone 9");
    /* Mobile without a model turns an unknown device into a generic phone. */
    h = hints_of("{\"mobile\": true}");
    lookup(e, NULL, "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/124.0.0.0 Safari/537.36", &h, &r);
    ASSERT_EQ_STR(r.device, "Generic Smartphone");

    /* An app the agent names is more than the brand: kept. */
    h = hints_of("{\"brands\": [{\"brand\": \"Android WebView\", \"version\": \"124\"}]}");
    lookup(e, NULL, "Mozilla/5.0 (Linux; Android 12; SM-A525F Build/SP1A.210812.016; wv) "
           "AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/105.0.5195.136 Mobile "
           "Safari/537.36 Instagram 253.0.0.23.114 Android (31/12; 450dpi; 1080x2177; samsung; "
           "SM-A525F; a52q; qcom; en_US; 399993162)", &h, &r);
    ASSERT_EQ_STR(r.browser, "Instagram");

    /* A headless brand is a bot even when the agent hides it. */
    h = hints_of("{\"Sec-CH-UA\": \"\\\"HeadlessChrome\\\";v=\\\"124\\\"\"}");
    lookup(e, NULL, CHROME_WIN, &h, &r);
    ASSERT_TRUE(r.is_bot);
    ASSERT_EQ_STR(r.bot_reason, "headless:HeadlessChrome");
    ASSERT_EQ_STR(r.browser, "HeadlessChrome");

    /* Empty hints change nothing. */
    enrich_hints_init(&h);
    lookup(e, NULL, CHROME_WIN, &h, &r);
    ASSERT_EQ_STR(r.os_version, "10");
    enrich_destroy(e);
    fixture_fini(&fx);
}

static void test_enrich_every_bot_reason(void)
{
    static const struct {
        const char *ip, *agent, *reason;
    } cases[] = {
        {"81.2.69.142", "", "empty"},
        {"81.2.69.142", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                        "HeadlessChrome/124.0.0.0 Safari/537.36", "headless:HeadlessChrome"},
        {"81.2.69.142", "python-requests/2.31.0", "scripted:python-requests"},
        {"81.2.69.142", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
         "crawler:Googlebot\\/"},
        {"81.2.69.142", "Mozilla/5.0 (compatible; Zorgspider/1.0)", "spider:Zorgspider"},
        {"52.94.1.2", CHROME_WIN, "datacenter:AS16509 Amazon AWS"},
        {"81.2.69.142", CHROME_WIN, ""},
        /* An agent-based reason wins over the network. */
        {"52.94.1.2", "curl/8.0", "scripted:curl"},
    };
    struct fixture fx;
    struct enrich *e;
    struct enrich_result r;

    fixture_init(&fx);
    e = create(&fx.s, fx.city, fx.regexes);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        lookup(e, cases[i].ip, cases[i].agent, NULL, &r);
        if (strcmp(r.bot_reason, cases[i].reason) != 0) {
            TEST_FAIL("%s %s: bot_reason \"%s\", want \"%s\"", cases[i].ip, cases[i].agent,
                      r.bot_reason, cases[i].reason);
        }
        ASSERT_EQ_INT(r.is_bot, cases[i].reason[0] != '\0');
    }
    enrich_destroy(e);
    fixture_fini(&fx);
}

static void test_enrich_cache_answers_repeats(void)
{
    struct fixture fx;
    struct enrich_settings s;
    struct enrich *e;
    struct enrich_result a, b;
    struct enrich_stats st;
    char *longer;

    fixture_init(&fx);
    s = fx.s;
    s.ua_cache_entries = 2;
    e = create(&s, fx.city, fx.regexes);
    lookup(e, "81.2.69.142", CHROME_ANDROID, NULL, &a);
    lookup(e, "81.2.69.142", CHROME_ANDROID, NULL, &b);
    ASSERT_TRUE(memcmp(&a, &b, sizeof(a)) == 0);
    enrich_stats(e, &st);
    ASSERT_EQ_INT(st.lookups, 2);
    ASSERT_EQ_INT(st.cache_hits, 1);
    ASSERT_EQ_INT(st.cache_misses, 1);
    ASSERT_EQ_INT(st.cache_entries, 1);
    lookup(e, NULL, CHROME_WIN, NULL, &b);
    lookup(e, NULL, "curl/8.0", NULL, &b);
    enrich_stats(e, &st);
    ASSERT_EQ_INT(st.cache_entries, 2);
    ASSERT_EQ_INT(st.cache_evictions, 1);
    /* Evicted, so parsed again: the same answer. */
    lookup(e, "81.2.69.142", CHROME_ANDROID, NULL, &b);
    ASSERT_TRUE(memcmp(&a, &b, sizeof(a)) == 0);

    /* An agent past the limit is read (and cached) by its first bytes, and counted. */
    longer = malloc(100000);
    memset(longer, 'z', 99999);
    longer[99999] = '\0';
    memcpy(longer, "curl/8.0 ", 9);
    lookup(e, NULL, longer, NULL, &b);
    ASSERT_EQ_STR(b.bot_reason, "scripted:curl");
    lookup(e, NULL, longer, NULL, &b);
    enrich_stats(e, &st);
    ASSERT_EQ_INT(st.ua_truncated, 1);
    ASSERT_TRUE(st.cache_bytes < 2 * 5000);
    free(longer);
    enrich_destroy(e);
    fixture_fini(&fx);
}

static void test_enrich_failed_allocations(void)
{
    struct fixture fx;
    struct enrich_settings s;
    struct enrich *e = NULL;
    struct enrich_result r;
    struct enrich_stats st;
    struct sl_err err;

    fixture_init(&fx);
    s = fx.s;
    s.crawler_patterns = "";
    for (long n = 0;; n++) {
        int rc;

        sl_err_clear(&err);
        sl_alloc_fail_after(n);
        rc = enrich_create(&s, fx.city, NULL, 1000, &e, &err);
        sl_alloc_fail_after(-1);
        if (rc == 0) {
            break;
        }
        ASSERT_EQ_INT(rc, SL_ENOMEM);
        ASSERT_TRUE(e == NULL);
    }
    sl_alloc_fail_after(0);
    ASSERT_EQ_INT(enrich_lookup(e, "81.2.69.142", "curl/8.0", NULL, &r), SL_ENOMEM);
    sl_alloc_fail_after(-1);
    /* Still a complete answer. */
    ASSERT_EQ_STR(r.city, "London");
    ASSERT_EQ_STR(r.geo_status, "ok");
    enrich_stats(e, &st);
    ASSERT_EQ_INT(st.failed_allocations, 1);
    enrich_destroy(e);
    fixture_fini(&fx);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_enrich_settings_tables),
        TEST_CASE(test_enrich_without_data),
        TEST_CASE(test_enrich_failed_allocations),
        TEST_CASE(test_enrich_every_column),
        TEST_CASE(test_enrich_broken_data_is_reported_and_lookups_go_on),
        TEST_CASE(test_enrich_version_follows_reloads),
        TEST_CASE(test_enrich_version_id_grows_with_the_data),
        TEST_CASE(test_enrich_check_agent),
        TEST_CASE(test_enrich_config_table),
        TEST_CASE(test_enrich_client_hints_refine),
        TEST_CASE(test_enrich_every_bot_reason),
        TEST_CASE(test_enrich_cache_answers_repeats),
        {NULL, NULL},
    };

    sl_alloc_init_jansson();
    return test_main(argc, argv, cases);
}

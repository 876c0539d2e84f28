/*
 * Tests workers/enrichment/bots.c: every bot_reason (empty, headless, scripted, crawler,
 * spider, datacenter) and their order, the crawler-user-agents list (each of its published
 * instances is flagged, mainstream browsers are not), broken list files and failed
 * allocations.
 *
 * The crawler cases need SLUICE_TEST_CRAWLERS_JSON (scripts/enrich-data.sh prints it).
 */
#include <jansson.h>

#include "alloc.h"
#include "bots.h"
#include "test.h"

static struct enrich_bots *create(void)
{
    struct enrich_bots *b = NULL;
    struct sl_err err;

    sl_err_clear(&err);
    ASSERT_OK(enrich_bots_create(&b, &err), &err);
    return b;
}

static void check(const struct enrich_bots *b, const char *agent, const char *device,
                  const char *family, const char *want)
{
    struct enrich_bot_verdict v;

    enrich_bots_check_agent(b, agent, strlen(agent), device, family, &v);
    if (strcmp(v.reason, want) != 0) {
        TEST_FAIL("\"%s\": reason \"%s\", want \"%s\"", agent, v.reason, want);
    }
    ASSERT_EQ_INT(v.kind != ENRICH_BOT_NONE, want[0] != '\0');
}

static const char *const browsers[] = {
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
    "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 11_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Mobile/15G77 [FBAN/FBIOS;FBAV/194.0.0.38.99;FBBV/127868476;FBDV/iPhone7,2]",
    "Dalvik/2.1.0 (Linux; U; Android 11; Redmi Note 8 Pro MIUI/V12.5.4.0.RGGMIXM)",
    "Spotify/8.8.96 iOS/17.4.1 (iPhone15,3)",
    "JavaFX/21 (Windows 10)",
};

static void test_bots_built_in_reasons(void)
{
    struct enrich_bots *b = create();

    check(b, "", NULL, NULL, "empty");
    check(b, "   ", NULL, NULL, "empty");
    check(b, "-", NULL, NULL, "empty");
    check(b, "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "HeadlessChrome/124.0.0.0 Safari/537.36", NULL, NULL, "headless:HeadlessChrome");
    check(b, "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) "
          "PhantomJS/2.1.1 Safari/538.1", NULL, NULL, "headless:PhantomJS");
    check(b, "Mozilla/5.0 (linux) AppleWebKit/537.36 (KHTML, like Gecko) jsdom/22.1.0", NULL,
          NULL, "headless:jsdom");
    check(b, "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0 Headless",
          NULL, NULL, "headless:Headless");
    check(b, "curl/8.5.0", NULL, NULL, "scripted:curl");
    check(b, "Wget/1.21.4", NULL, NULL, "scripted:Wget");
    check(b, "python-requests/2.31.0", NULL, NULL, "scripted:python-requests");
    check(b, "Python-urllib/3.11", NULL, NULL, "scripted:Python-urllib");
    check(b, "Go-http-client/2.0", NULL, NULL, "scripted:Go-http-client");
    check(b, "okhttp/4.12.0", NULL, NULL, "scripted:okhttp");
    check(b, "Java/17.0.2", NULL, NULL, "scripted:Java");
    check(b, "Apache-HttpClient/4.5.14 (Java/17.0.2)", NULL, NULL,
          "scripted:Apache-HttpClient");
    check(b, "libwww-perl/6.72", NULL, NULL, "scripted:libwww-perl");
    check(b, "axios/1.6.2", NULL, NULL, "scripted:axios");
    check(b, "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", NULL, NULL,
          "scripted:node-fetch");
    check(b, "PostmanRuntime/7.36.0", NULL, NULL, "scripted:PostmanRuntime");
    check(b, "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
          "Spider", "Googlebot", "spider:Googlebot");
    check(b, "SomeSpider", "Spider", "Other", "spider");
    /* Headless comes before scripted, scripted before uap's verdict. */
    check(b, "curl/8.0 HeadlessChrome", "Spider", "curl", "headless:HeadlessChrome");
    check(b, "curl/8.0", "Spider", "curl", "scripted:curl");
    for (size_t i = 0; i < sizeof(browsers) / sizeof(browsers[0]); i++) {
        check(b, browsers[i], "Other", "Chrome", "");
    }
    enrich_bots_destroy(b);
}

static void test_bots_brand_and_datacenter(void)
{
    struct enrich_bot_verdict v = {.kind = ENRICH_BOT_NONE};

    enrich_bots_check_brand("Google Chrome", &v);
    ASSERT_EQ_INT(v.kind, ENRICH_BOT_NONE);
    enrich_bots_check_brand("HeadlessChrome", &v);
    ASSERT_EQ_STR(v.reason, "headless:HeadlessChrome");

    v = (struct enrich_bot_verdict){.kind = ENRICH_BOT_NONE};
    enrich_bots_check_asn(3320, &v);
    ASSERT_EQ_INT(v.kind, ENRICH_BOT_NONE);
    enrich_bots_check_asn(0, &v);
    ASSERT_EQ_INT(v.kind, ENRICH_BOT_NONE);
    enrich_bots_check_asn(16509, &v);
    ASSERT_EQ_STR(v.reason, "datacenter:AS16509 Amazon AWS");
    ASSERT_EQ_STR(enrich_bot_kind_name(v.kind), "datacenter");
    v = (struct enrich_bot_verdict){.kind = ENRICH_BOT_NONE};
    enrich_bots_check_asn(396982, &v);
    ASSERT_EQ_STR(v.reason, "datacenter:AS396982 Google Cloud");
    enrich_bots_check_asn(14061, &v);
    ASSERT_EQ_STR(v.reason, "datacenter:AS396982 Google Cloud");
    /* Networks people browse from through a relay are not on the list. */
    v = (struct enrich_bot_verdict){.kind = ENRICH_BOT_NONE};
    enrich_bots_check_asn(13335, &v);
    enrich_bots_check_asn(36183, &v);
    ASSERT_EQ_INT(v.kind, ENRICH_BOT_NONE);
}

static void test_bots_crawler_list(void)
{
    const char *path = test_env_require("SLUICE_TEST_CRAWLERS_JSON");
    struct enrich_bots *b = create();
    struct enrich_bots_info info;
    json_error_t jerr;
    json_t *list;
    size_t n_instances = 0, n_missed = 0;
    struct sl_err err;

    sl_err_clear(&err);
    ASSERT_OK(enrich_bots_load_crawlers(b, path, &err), &err);
    enrich_bots_info(b, &info);
    fprintf(stderr, "%zu crawler patterns (%zu with a required trigram), %zu left out\n",
            info.n_patterns, info.n_prefiltered, info.n_skipped);
    ASSERT_TRUE(info.n_patterns > 1000);
    ASSERT_EQ_INT(strlen(info.hash_hex), 16);
    check(b, "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
          "Spider", "Googlebot", "crawler:Googlebot\\/");
    check(b, "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", "Spider",
          "AhrefsBot", "crawler:Ahrefs(Bot|SiteAudit)");
    /* Scripted clients the list also has keep their more telling reason. */
    check(b, "curl/7.88.1", NULL, NULL, "scripted:curl");
    for (size_t i = 0; i < sizeof(browsers) / sizeof(browsers[0]); i++) {
        check(b, browsers[i], "Other", "Chrome", "");
    }

    /* Every published instance of every pattern is a bot. */
    list = json_load_file(path, 0, &jerr);
    ASSERT_TRUE(list != NULL);
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *instances = json_object_get(json_array_get(list, i), "instances");

        for (size_t k = 0; k < json_array_size(instances); k++) {
            const char *agent = json_string_value(json_array_get(instances, k));
            struct enrich_bot_verdict v;

            if (agent == NULL) {
                continue;
            }
            n_instances++;
            enrich_bots_check_agent(b, agent, strlen(agent), NULL, NULL, &v);
            if (v.kind == ENRICH_BOT_NONE) {
                n_missed++;
                fprintf(stderr, "not flagged: %s (pattern %s)\n", agent,
                        json_string_value(json_object_get(json_array_get(list, i), "pattern")));
            }
        }
    }
    fprintf(stderr, "%zu of %zu published instances flagged\n", n_instances - n_missed,
            n_instances);
    ASSERT_TRUE(n_instances > 1000);
    ASSERT_EQ_INT(n_missed, 0);
    json_decref(list);
    enrich_bots_destroy(b);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    ASSERT_TRUE(f != NULL);
    fputs(text, f);
    ASSERT_EQ_INT(fclose(f), 0);
}

static void test_bots_broken_crawler_files(void)
{
    char *dir = test_tmpdir();
    char *path = test_path(dir, "crawlers.json");
    struct enrich_bots *b = create();
    struct enrich_bots_info info;
    struct sl_err err;

    sl_err_clear(&err);
    ASSERT_EQ_INT(enrich_bots_load_crawlers(b, path, &err), SL_ENOTFOUND);
    ASSERT_CONTAINS(err.msg, "cannot open");
    write_file(path, "[{\"pattern\": \"Zorgbot\"}, {\"pattern\": \"(unclosed\"}]");
    ASSERT_OK(enrich_bots_load_crawlers(b, path, &err), &err);
    enrich_bots_info(b, &info);
    ASSERT_EQ_INT(info.n_patterns, 1);
    ASSERT_EQ_INT(info.n_skipped, 1);
    check(b, "Zorgbot/1.0", NULL, NULL, "crawler:Zorgbot");

    write_file(path, "[{\"pattern\": ");
    ASSERT_EQ_INT(enrich_bots_load_crawlers(b, path, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "not JSON");
    write_file(path, "{\"pattern\": \"x\"}");
    ASSERT_EQ_INT(enrich_bots_load_crawlers(b, path, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "expected an array");
    write_file(path, "[{\"url\": \"x\"}]");
    ASSERT_EQ_INT(enrich_bots_load_crawlers(b, path, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "entry 0 has no \"pattern\"");
    /* A failed load keeps what was loaded before. */
    check(b, "Zorgbot/1.0", NULL, NULL, "crawler:Zorgbot");

    write_file(path, "[{\"pattern\": \"Zorgbot\"}, {\"pattern\": \"Blipcrawler|Blopcrawler\"}]");
    for (long n = 0;; n++) {
        int rc;

        sl_err_clear(&err);
        sl_alloc_fail_after(n);
        rc = enrich_bots_load_crawlers(b, path, &err);
        sl_alloc_fail_after(-1);
        if (rc == 0) {
            break;
        }
        if (rc != SL_ENOMEM) {
            TEST_FAIL("allocation %ld failing: %d %s", n, rc, err.msg);
        }
        check(b, "Zorgbot/1.0", NULL, NULL, "crawler:Zorgbot");
    }
    check(b, "x Blopcrawler", NULL, NULL, "crawler:Blipcrawler|Blopcrawler");
    enrich_bots_destroy(b);
    test_rmtree(dir);
    free(path);
    free(dir);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_bots_built_in_reasons),
        TEST_CASE(test_bots_brand_and_datacenter),
        TEST_CASE(test_bots_broken_crawler_files),
        TEST_CASE(test_bots_crawler_list),
        {NULL, NULL},
    };

    /* jansson keeps the C allocator here: it reports a failed allocation as a syntax error,
     * so failing its allocations would test jansson, not this module. */
    return test_main(argc, argv, cases);
}

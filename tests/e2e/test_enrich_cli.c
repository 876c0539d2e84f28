/*
 * Runs `sluice enrich` end to end: the columns for one IP and agent (text and --json),
 * client hints, --stdin answering line by line in order with bad lines answered by an error
 * while the rest go on, warnings for missing data, and usage errors (exit 2).
 *
 * Needs SLUICE_TEST_UAP_CORE_DIR and SLUICE_TEST_CRAWLERS_JSON (scripts/enrich-data.sh);
 * MaxMind's test databases from ../shared/testdata/geoip.
 */
#include <jansson.h>
#include <stdarg.h>

#include "test.h"

#define CHROME_WIN "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like " \
    "Gecko) Chrome/124.0.0.0 Safari/537.36"

struct env {
    char *bin;
    char *vars[6];
};

static char *var(const char *key, const char *value)
{
    char *s = NULL;

    if (asprintf(&s, "%s=%s", key, value) < 0) {
        TEST_FAIL("asprintf");
    }
    return s;
}

static void env_init(struct env *e, const char *city)
{
    char *geo_dir = test_path(getenv("SLUICE_SOURCE_DIR"), "../shared/testdata/geoip");
    char *city_path = test_path(geo_dir, city);
    char *regexes = test_path(test_env_require("SLUICE_TEST_UAP_CORE_DIR"), "regexes.yaml");

    e->bin = test_bin("sluice");
    e->vars[0] = var("SLUICE_GEOIP_DB", city_path);
    e->vars[1] = var("SLUICE_UA_REGEXES", regexes);
    e->vars[2] = var("SLUICE_CRAWLER_PATTERNS", test_env_require("SLUICE_TEST_CRAWLERS_JSON"));
    e->vars[3] = var("SLUICE_GEOIP_ASN_DB", "");
    e->vars[4] = var("SLUICE_LOG_LEVEL", "warn");
    e->vars[5] = NULL;
    free(regexes);
    free(city_path);
    free(geo_dir);
}

static void env_fini(struct env *e)
{
    for (int i = 0; e->vars[i] != NULL; i++) {
        free(e->vars[i]);
    }
    free(e->bin);
}

/* Runs `sluice enrich ARGS...` (NULL-terminated) with input on stdin (may be NULL). */
static void run(struct env *e, struct test_proc *p, const char *input, ...)
{
    char *argv[16];
    size_t n = 0;
    va_list ap;

    argv[n++] = e->bin;
    argv[n++] = "enrich";
    va_start(ap, input);
    for (char *a = va_arg(ap, char *); a != NULL; a = va_arg(ap, char *)) {
        ASSERT_TRUE(n < 15);
        argv[n++] = a;
    }
    va_end(ap);
    argv[n] = NULL;
    test_proc_run(p, argv, e->vars, input);
}

static json_t *parse_line(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DISABLE_EOF_CHECK, &jerr);

    if (v == NULL) {
        TEST_FAIL("not JSON: %s (%s)", text, jerr.text);
    }
    return v;
}

static const char *str(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static void test_enrich_cli_one_event(void)
{
    struct env e;
    struct test_proc p;
    json_t *row;

    env_init(&e, "GeoIP2-City-Test.mmdb");
    run(&e, &p, NULL, "--ip", "81.2.69.142", "--ua", CHROME_WIN, NULL);
    ASSERT_EQ_INT(p.status, 0);
    ASSERT_EQ_STR(p.err, "");
    ASSERT_CONTAINS(p.out, "country_code        GB\n");
    ASSERT_CONTAINS(p.out, "city                London\n");
    ASSERT_CONTAINS(p.out, "latitude            51.5142\n");
    ASSERT_CONTAINS(p.out, "asn                 -\n");
    ASSERT_CONTAINS(p.out, "geo_status          ok\n");
    ASSERT_CONTAINS(p.out, "browser             Chrome\n");
    ASSERT_CONTAINS(p.out, "os_version          10\n");
    ASSERT_CONTAINS(p.out, "is_bot              false\n");
    ASSERT_CONTAINS(p.out, "enrichment_version  geo=");
    test_proc_fini(&p);

    run(&e, &p, NULL, "--json", "--ip", "2001:218::1", "--ua", CHROME_WIN, "--hints",
        "{\"Sec-CH-UA-Platform\": \"\\\"Windows\\\"\", \"Sec-CH-UA-Platform-Version\": "
        "\"\\\"15.0.0\\\"\"}", NULL);
    ASSERT_EQ_INT(p.status, 0);
    row = parse_line(p.out);
    ASSERT_EQ_STR(str(row, "country_code"), "JP");
    ASSERT_EQ_STR(str(row, "os"), "Windows");
    ASSERT_EQ_STR(str(row, "os_version"), "11");
    ASSERT_TRUE(json_is_null(json_object_get(row, "asn")));
    /* The number the events table stores: the newest data file's time, so past 2026. */
    ASSERT_TRUE(json_integer_value(json_object_get(row, "enrichment_version_id")) >=
                1795478400);
    ASSERT_EQ_INT(json_object_size(row), 23);
    json_decref(row);
    test_proc_fini(&p);

    run(&e, &p, NULL, "--json", "--ua", "curl/8.5.0", NULL);
    ASSERT_EQ_INT(p.status, 0);
    row = parse_line(p.out);
    ASSERT_EQ_STR(str(row, "geo_status"), "no_ip");
    ASSERT_EQ_STR(str(row, "bot_reason"), "scripted:curl");
    ASSERT_TRUE(json_is_true(json_object_get(row, "is_bot")));
    json_decref(row);
    test_proc_fini(&p);
    env_fini(&e);
}

static void test_enrich_cli_stdin_keeps_order_and_goes_on_after_bad_lines(void)
{
    struct env e;
    struct test_proc p;
    char *input = NULL, *long_agent;
    const char *want_errors[] = {NULL, "line 3: not JSON", NULL, "line 5: unknown key \"agent\"",
                                 "line 6: hints.mobile: expected true or false", NULL, NULL,
                                 "line 9: expected an object"};
    char *save = NULL, *line;
    size_t n = 0;

    env_init(&e, "GeoIP2-City-Test.mmdb");
    long_agent = malloc(300001);
    memset(long_agent, 'a', 300000);
    long_agent[300000] = '\0';
    memcpy(long_agent, "Wget/1.21 ", 10);
    if (asprintf(&input,
                 "{\"ip\": \"81.2.69.142\", \"ua\": \"%s\"}\n"
                 "\n"
                 "{\"ip\": \n"
                 "{\"ip\": \"10.0.0.1\", \"ua\": \"Mozilla/5.0 (compatible; Googlebot/2.1; "
                 "+http://www.google.com/bot.html)\", \"hints\": {\"mobile\": false}}\n"
                 "{\"agent\": \"x\"}\n"
                 "{\"ua\": \"x\", \"hints\": {\"mobile\": 1}}\n"
                 "{}\n"
                 "{\"ip\": \"216.160.83.56\", \"ua\": \"%s\"}\n"
                 "[1, 2]\n",
                 CHROME_WIN, long_agent) < 0) {
        TEST_FAIL("asprintf");
    }
    run(&e, &p, input, "--stdin", NULL);
    ASSERT_EQ_INT(p.status, 1);
    for (line = strtok_r(p.out, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        json_t *row = parse_line(line);

        ASSERT_TRUE(n < 8);
        if (want_errors[n] != NULL) {
            char got[512];

            snprintf(got, sizeof(got), "line %lld: %s",
                     (long long)json_integer_value(json_object_get(row, "line")),
                     str(row, "error"));
            ASSERT_CONTAINS(got, want_errors[n]);
            ASSERT_CONTAINS(p.err, want_errors[n]);
        }
        else {
            ASSERT_TRUE(json_object_get(row, "error") == NULL);
        }
        switch (n) {
        case 0:
            ASSERT_EQ_STR(str(row, "city"), "London");
            ASSERT_EQ_STR(str(row, "browser"), "Chrome");
            break;
        case 2:
            ASSERT_EQ_STR(str(row, "geo_status"), "private");
            ASSERT_EQ_STR(str(row, "bot_reason"), "crawler:Googlebot\\/");
            break;
        case 5:
            ASSERT_EQ_STR(str(row, "geo_status"), "no_ip");
            ASSERT_EQ_STR(str(row, "bot_reason"), "empty");
            break;
        case 6:
            ASSERT_EQ_STR(str(row, "city"), "Milton");
            ASSERT_EQ_STR(str(row, "bot_reason"), "scripted:Wget");
            break;
        default:
            break;
        }
        json_decref(row);
        n++;
    }
    /* Nine lines in, one blank: eight answers. */
    ASSERT_EQ_INT(n, 8);
    test_proc_fini(&p);
    free(input);
    free(long_agent);

    /* A clean stream exits 0. */
    run(&e, &p, "{\"ip\": \"1.2.3.4\"}\n{\"ua\": \"curl/8\"}\n", "--stdin", NULL);
    ASSERT_EQ_INT(p.status, 0);
    ASSERT_CONTAINS(p.out, "\"geo_status\":\"not_found\"");
    ASSERT_EQ_STR(p.err, "");
    test_proc_fini(&p);
    env_fini(&e);
}

static void test_enrich_cli_warns_about_missing_data(void)
{
    struct env e;
    struct test_proc p;

    env_init(&e, "GeoIP2-City-Test-Broken-Double-Format.mmdb");
    run(&e, &p, NULL, "--ip", "81.2.69.142", NULL);
    ASSERT_EQ_INT(p.status, 0);
    ASSERT_CONTAINS(p.err, "sluice: warning: geoip: GeoIP database ");
    ASSERT_CONTAINS(p.err, "corrupt data record");
    ASSERT_CONTAINS(p.out, "geo_status          no_database\n");
    test_proc_fini(&p);
    run(&e, &p, NULL, "--json", "--ip", "81.2.69.142", NULL);
    ASSERT_CONTAINS(p.err, "{\"warning\":");
    ASSERT_CONTAINS(p.err, "\"part\":\"geoip\",\"state\":\"error\"");
    test_proc_fini(&p);
    env_fini(&e);
}

static void test_enrich_cli_usage_errors(void)
{
    struct env e;
    struct test_proc p;

    env_init(&e, "GeoIP2-City-Test.mmdb");
    run(&e, &p, NULL, NULL);
    ASSERT_EQ_INT(p.status, 2);
    ASSERT_CONTAINS(p.err, "give --ip, --ua (or both), or --stdin");
    test_proc_fini(&p);
    run(&e, &p, NULL, "--stdin", "--ip", "1.2.3.4", NULL);
    ASSERT_EQ_INT(p.status, 2);
    test_proc_fini(&p);
    run(&e, &p, NULL, "--ua", "x", "--hints", "{", NULL);
    ASSERT_EQ_INT(p.status, 2);
    ASSERT_CONTAINS(p.err, "--hints is not JSON");
    test_proc_fini(&p);
    run(&e, &p, NULL, "--ua", "x", "--hints", "{\"mobile\": \"yes\"}", NULL);
    ASSERT_EQ_INT(p.status, 2);
    ASSERT_CONTAINS(p.err, "hints.mobile");
    test_proc_fini(&p);
    run(&e, &p, NULL, "--ip", NULL);
    ASSERT_EQ_INT(p.status, 2);
    test_proc_fini(&p);
    run(&e, &p, NULL, "--help", NULL);
    ASSERT_EQ_INT(p.status, 0);
    ASSERT_CONTAINS(p.out, "usage: sluice enrich");
    test_proc_fini(&p);
    env_fini(&e);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_enrich_cli_one_event),
        TEST_CASE(test_enrich_cli_stdin_keeps_order_and_goes_on_after_bad_lines),
        TEST_CASE(test_enrich_cli_warns_about_missing_data),
        TEST_CASE(test_enrich_cli_usage_errors),
        {NULL, NULL},
    };

    return test_main(argc, argv, cases);
}

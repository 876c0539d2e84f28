/*
 * Tests workers/enrichment/hints.c: Sec-CH-UA structured headers (quoting, escapes,
 * parameters, GREASE brands, the full version list), the JSON shapes SDKs send, malformed
 * values, and the mapping to ua-parser's names (Windows 11 from the platform version, macOS,
 * the significant brand). How hints refine a parsed agent is in test_enrich.c.
 */
#include <jansson.h>

#include "hints.h"
#include "test.h"

static void set(struct enrich_hints *h, const char *name, const char *value)
{
    struct sl_err err;

    sl_err_clear(&err);
    ASSERT_OK(enrich_hints_set_header(h, name, value, &err), &err);
}

static void test_hints_brand_lists(void)
{
    struct enrich_hints h;

    enrich_hints_init(&h);
    ASSERT_TRUE(enrich_hints_is_empty(&h));
    set(&h, "Sec-CH-UA", "\"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", "
        "\"Not-A.Brand\";v=\"99\"");
    ASSERT_TRUE(!enrich_hints_is_empty(&h));
    ASSERT_EQ_INT(h.n_brands, 2);
    ASSERT_EQ_STR(h.brands[0].name, "Chromium");
    ASSERT_EQ_STR(h.brands[1].name, "Google Chrome");
    ASSERT_EQ_STR(h.brands[1].version, "124");
    ASSERT_TRUE(!h.has_full_versions);

    /* The full list replaces the short one, and a short one never replaces a full one. */
    set(&h, "sec-ch-ua-full-version-list", " \"Not/A)Brand\";v=\"8.0.0.0\",\"Chromium\";"
        "v=\"126.0.6478.127\" , \"Google Chrome\" ; v=\"126.0.6478.127\"");
    ASSERT_TRUE(h.has_full_versions);
    ASSERT_EQ_INT(h.n_brands, 2);
    ASSERT_EQ_STR(h.brands[1].version, "126.0.6478.127");
    set(&h, "Sec-CH-UA", "\"Chromium\";v=\"126\"");
    ASSERT_EQ_STR(h.brands[1].version, "126.0.6478.127");

    /* Escapes, other parameters and a bare token are taken. */
    enrich_hints_init(&h);
    set(&h, "SEC-CH-UA", "\"Quote \\\"q\\\" \\\\ brand\";x=1;v=\"3\", Bare;v=7");
    ASSERT_EQ_INT(h.n_brands, 2);
    ASSERT_EQ_STR(h.brands[0].name, "Quote \"q\" \\ brand");
    ASSERT_EQ_STR(h.brands[0].version, "3");
    ASSERT_EQ_STR(h.brands[1].name, "Bare");
    ASSERT_EQ_STR(h.brands[1].version, "7");

    /* GREASE brands in their many spellings. */
    ASSERT_TRUE(enrich_hints_is_grease("Not A;Brand"));
    ASSERT_TRUE(enrich_hints_is_grease("Not;A=Brand"));
    ASSERT_TRUE(enrich_hints_is_grease("Not)A;Brand"));
    ASSERT_TRUE(enrich_hints_is_grease("Not_A Brand"));
    ASSERT_TRUE(enrich_hints_is_grease("Not-A.Brand"));
    ASSERT_TRUE(!enrich_hints_is_grease("Notable Brand X"));
    ASSERT_TRUE(!enrich_hints_is_grease("Brave"));
}

static void test_hints_other_headers(void)
{
    struct enrich_hints h;

    enrich_hints_init(&h);
    set(&h, "Sec-CH-UA-Platform", "\"Windows\"");
    set(&h, "Sec-CH-UA-Platform-Version", "\"15.0.0\"");
    set(&h, "Sec-CH-UA-Mobile", "?0");
    set(&h, "Sec-CH-UA-Model", "\"\"");
    set(&h, "Sec-CH-UA-Arch", "\"x86\"");
    ASSERT_EQ_STR(h.platform, "Windows");
    ASSERT_EQ_STR(h.platform_version, "15.0.0");
    ASSERT_EQ_INT(h.mobile, 0);
    ASSERT_EQ_STR(h.model, "");
    set(&h, "Sec-CH-UA-Mobile", "?1");
    ASSERT_EQ_INT(h.mobile, 1);
    set(&h, "Sec-CH-UA-Model", "\"Pixel 7\"");
    ASSERT_EQ_STR(h.model, "Pixel 7");
    /* Lenient about missing quotes. */
    set(&h, "Sec-CH-UA-Platform", "macOS");
    ASSERT_EQ_STR(h.platform, "macOS");
}

static void expect_bad(const char *name, const char *value, const char *want)
{
    struct enrich_hints h;
    struct sl_err err;

    enrich_hints_init(&h);
    sl_err_clear(&err);
    ASSERT_EQ_INT(enrich_hints_set_header(&h, name, value, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, want);
}

static void test_hints_malformed_values(void)
{
    expect_bad("Sec-CH-UA", "\"Chromium;v=\"124\"", "brand list");
    expect_bad("Sec-CH-UA", "\"Chromium\" junk", "expected ','");
    expect_bad("Sec-CH-UA", "\"A\";v=\"1", "version does not close");
    expect_bad("Sec-CH-UA-Mobile", "yes please", "expected ?1 or ?0");
    expect_bad("Sec-CH-UA-Platform", "\"Windows\" extra", "expected a quoted string");
}

static void from_json(struct enrich_hints *h, const char *text)
{
    json_error_t jerr;
    json_t *obj = json_loads(text, 0, &jerr);
    struct sl_err err;

    ASSERT_TRUE(obj != NULL);
    enrich_hints_init(h);
    sl_err_clear(&err);
    ASSERT_OK(enrich_hints_from_json(h, obj, &err), &err);
    json_decref(obj);
}

static void test_hints_from_json(void)
{
    struct enrich_hints h;
    json_t *bad;
    struct sl_err err;

    /* Header names as keys. */
    from_json(&h, "{\"Sec-CH-UA\": \"\\\"Brave\\\";v=\\\"124\\\", \\\"Chromium\\\";v=\\\"124\\\"\","
              " \"sec-ch-ua-platform\": \"\\\"Linux\\\"\", \"Sec-CH-UA-Mobile\": \"?0\"}");
    ASSERT_EQ_INT(h.n_brands, 2);
    ASSERT_EQ_STR(h.brands[0].name, "Brave");
    ASSERT_EQ_STR(h.platform, "Linux");
    ASSERT_EQ_INT(h.mobile, 0);

    /* navigator.userAgentData.getHighEntropyValues(). */
    from_json(&h, "{\"brands\": [{\"brand\": \"Not A(Brand\", \"version\": \"99\"}, "
              "{\"brand\": \"Microsoft Edge\", \"version\": \"121\"}], \"mobile\": false, "
              "\"platform\": \"Windows\", \"platformVersion\": \"13.0.0\", \"model\": \"\", "
              "\"fullVersionList\": [{\"brand\": \"Microsoft Edge\", \"version\": "
              "\"121.0.2277.128\"}], \"architecture\": \"x86\"}");
    ASSERT_EQ_INT(h.n_brands, 1);
    ASSERT_EQ_STR(h.brands[0].name, "Microsoft Edge");
    ASSERT_EQ_STR(h.brands[0].version, "121.0.2277.128");
    ASSERT_TRUE(h.has_full_versions);
    ASSERT_EQ_STR(h.platform_version, "13.0.0");
    ASSERT_EQ_INT(h.mobile, 0);

    bad = json_pack("{s:i}", "mobile", 1);
    enrich_hints_init(&h);
    sl_err_clear(&err);
    ASSERT_EQ_INT(enrich_hints_from_json(&h, bad, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "hints.mobile");
    json_decref(bad);
    bad = json_pack("{s:[s]}", "brands", "Chrome");
    ASSERT_EQ_INT(enrich_hints_from_json(&h, bad, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "hints.brands[0]");
    json_decref(bad);
    bad = json_pack("[]");
    ASSERT_EQ_INT(enrich_hints_from_json(&h, bad, &err), SL_EINVAL);
    json_decref(bad);
}

static void view(const char *platform, const char *version, struct enrich_hints_view *v)
{
    struct enrich_hints h;

    enrich_hints_init(&h);
    snprintf(h.platform, sizeof(h.platform), "%s", platform);
    snprintf(h.platform_version, sizeof(h.platform_version), "%s", version);
    enrich_hints_view(&h, v);
}

static void test_hints_view_maps_to_uap_names(void)
{
    static const struct {
        const char *platform, *version, *os, *os_version;
    } cases[] = {
        {"Windows", "15.0.0", "Windows", "11"}, {"Windows", "13.0.0", "Windows", "11"},
        {"Windows", "10.0.0", "Windows", "10"}, {"Windows", "1.0.0", "Windows", "10"},
        {"Windows", "0.3.0", "Windows", "8.1"}, {"Windows", "0.2.0", "Windows", "8"},
        {"Windows", "0.1.0", "Windows", "7"},   {"Windows", "", "Windows", ""},
        {"macOS", "14.4.1", "Mac OS X", "14.4.1"}, {"Android", "14.0.0", "Android", "14.0.0"},
        {"Chrome OS", "15633.69.0", "Chrome OS", "15633.69.0"},
        {"Chromium OS", "1.0", "Chrome OS", "1.0"}, {"Linux", "6.5.0", "Linux", ""},
        {"Unknown", "1", "", ""},
    };
    struct enrich_hints_view v;
    struct enrich_hints h;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        view(cases[i].platform, cases[i].version, &v);
        if (strcmp(v.os, cases[i].os) != 0 || strcmp(v.os_version, cases[i].os_version) != 0) {
            TEST_FAIL("%s %s: got \"%s\" \"%s\", want \"%s\" \"%s\"", cases[i].platform,
                      cases[i].version, v.os, v.os_version, cases[i].os, cases[i].os_version);
        }
    }

    /* The significant brand: not Chromium when there is another; names as uap spells them. */
    enrich_hints_init(&h);
    set(&h, "Sec-CH-UA", "\"Chromium\";v=\"124\", \"Microsoft Edge\";v=\"124\"");
    enrich_hints_view(&h, &v);
    ASSERT_EQ_STR(v.browser, "Edge");
    ASSERT_EQ_STR(v.browser_version, "124");
    set(&h, "Sec-CH-UA", "\"Not_A Brand\";v=\"8\", \"Chromium\";v=\"120\"");
    enrich_hints_view(&h, &v);
    ASSERT_EQ_STR(v.browser, "Chromium");
    set(&h, "Sec-CH-UA", "\"Google Chrome\";v=\"124\"");
    enrich_hints_view(&h, &v);
    ASSERT_EQ_STR(v.browser, "Chrome");
    set(&h, "Sec-CH-UA", "\"Some New Browser\";v=\"3\"");
    enrich_hints_view(&h, &v);
    ASSERT_EQ_STR(v.browser, "Some New Browser");
    set(&h, "Sec-CH-UA-Mobile", "?1");
    set(&h, "Sec-CH-UA-Model", "\"SM-S918B\"");
    enrich_hints_view(&h, &v);
    ASSERT_TRUE(v.is_mobile);
    ASSERT_EQ_STR(v.model, "SM-S918B");
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_hints_brand_lists),
        TEST_CASE(test_hints_other_headers),
        TEST_CASE(test_hints_malformed_values),
        TEST_CASE(test_hints_from_json),
        TEST_CASE(test_hints_view_maps_to_uap_names),
        {NULL, NULL},
    };

    return test_main(argc, argv, cases);
}

/*
 * Tests workers/enrichment/ua.c beyond the uap-core suites (test_enrich_uap_core.c): a table
 * of real agents across desktop and mobile browsers, operating systems, devices, apps and
 * robots with ua-parser's answers; the replacement rules of the specification on rules made
 * for the purpose; broken rule files; pathological agents (1 MB, regex-hostile) in bounded
 * time; invalid UTF-8; the prefilter never changing an answer; failed allocations.
 *
 * Needs SLUICE_TEST_UAP_CORE_DIR (regexes.yaml and tests/ of one uap-core release); the
 * cases on hand-made rules run without it.
 */
#include <time.h>
#include <yaml.h>

#include "alloc.h"
#include "test.h"
#include "ua.h"

/* GLOBAL: the parser of $SLUICE_TEST_UAP_CORE_DIR/regexes.yaml, loaded by the first case that
 * needs it (main thread) and freed at exit. */
static struct enrich_ua *g_ua;

static void free_parser(void)
{
    enrich_ua_destroy(g_ua);
    g_ua = NULL;
}

static const struct enrich_ua *uap(void)
{
    if (g_ua == NULL) {
        char *path = test_path(test_env_require("SLUICE_TEST_UAP_CORE_DIR"), "regexes.yaml");
        struct sl_err err;

        sl_err_clear(&err);
        ASSERT_OK(enrich_ua_create(path, &g_ua, &err), &err);
        free(path);
        atexit(free_parser);
    }
    return g_ua;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* "a.b.c" from the defined fields first..first+n-1, up to the first undefined one. */
static void joined(const struct enrich_ua_result *r, enum enrich_ua_field first, int n,
                   char *out, size_t cap)
{
    size_t len = 0;

    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        const char *v = enrich_ua_get(r, (enum enrich_ua_field)(first + i));

        if (v == NULL) {
            break;
        }
        len += (size_t)snprintf(out + len, cap - len, "%s%s", i > 0 ? "." : "", v);
    }
}

static const char *or_empty(const char *s)
{
    return s != NULL ? s : "";
}

static void test_ua_real_agents(void)
{
    static const struct {
        const char *agent;
        const char *browser, *version, *os, *os_version, *device, *brand, *model;
    } cases[] = {
        /* Desktop browsers. */
        {"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/124.0.0.0 Safari/537.36",
         "Chrome", "124.0.0.0", "Windows", "10", "Other", "", ""},
        {"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
         "Edge", "124.0.2478.80", "Windows", "10", "Other", "", ""},
        {"Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
         "Firefox", "125.0", "Ubuntu", "", "Other", "", ""},
        {"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
         "Gecko) Version/17.4.1 Safari/605.1.15",
         "Safari", "17.4.1", "Mac OS X", "10.15.7", "Mac", "Apple", "Mac"},
        {"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/124.0.0.0 Safari/537.36 OPR/110.0.0.0",
         "Opera", "110.0.0", "Windows", "10", "Other", "", ""},
        {"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/124.0.0.0 YaBrowser/24.4.0.0 Safari/537.36",
         "Yandex Browser", "24.4.0", "Windows", "10", "Other", "", ""},
        {"Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/124.0.0.0 Safari/537.36",
         "Chrome", "124.0.0.0", "Chrome OS", "14541.0.0", "Other", "", ""},
        {"Mozilla/5.0 (compatible; MSIE 9.0; Windows NT 6.1; Trident/5.0)", "IE", "9.0",
         "Windows", "7", "Other", "", ""},
        {"Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko", "IE", "11.0",
         "Windows", "7", "Other", "", ""},
        /* Phones and tablets. */
        {"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
         "like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
         "Mobile Safari", "17.4.1", "iOS", "17.4.1", "iPhone", "Apple", "iPhone"},
        {"Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
         "CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
         "Chrome Mobile iOS", "124.0.6367.88", "iOS", "16.6", "iPad", "Apple", "iPad"},
        {"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
         "like Gecko) FxiOS/125.0 Mobile/15E148 Safari/605.1.15",
         "Firefox iOS", "125.0", "iOS", "17.4", "iPhone", "Apple", "iPhone"},
        {"Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
         "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
         "Samsung Internet", "24.0", "Android", "13", "Samsung SM-S918B", "Samsung", "SM-S918B"},
        {"Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/124.0.0.0 Mobile Safari/537.36",
         "Chrome Mobile", "124.0.0.0", "Android", "10", "K", "Generic_Android", "K"},
        {"Mozilla/5.0 (Linux; Android 8.0.0; Pixel 2 XL Build/OPD1.170816.004) AppleWebKit/"
         "537.36 (KHTML, like Gecko) Chrome/67.0.3396.87 Mobile Safari/537.36",
         "Chrome Mobile", "67.0.3396.87", "Android", "8.0.0", "Pixel 2 XL", "Google",
         "Pixel 2 XL"},
        {"Mozilla/5.0 (Linux; Android 11; Redmi Note 8 Pro) AppleWebKit/537.36 (KHTML, like "
         "Gecko) Chrome/112.0.0.0 Mobile Safari/537.36",
         "Chrome Mobile", "112.0.0.0", "Android", "11", "XiaoMi Redmi Note 8 Pro", "XiaoMi",
         "Redmi Note 8 Pro"},
        {"Mozilla/5.0 (Linux; U; Android 10; zh-cn; MI 9 Build/QKQ1.190825.002) AppleWebKit/"
         "537.36 (KHTML, like Gecko) Version/4.0 Chrome/79.0.3945.147 Mobile Safari/537.36 "
         "XiaoMi/MiuiBrowser/13.5.40",
         "MiuiBrowser", "13.5.40", "Android", "10", "XiaoMi MI 9", "XiaoMi", "MI 9"},
        {"Mozilla/5.0 (Linux; U; Android 8.1.0; en-US; Nexus 6P Build/OPM7.181205.001) "
         "AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/57.0.2987.108 "
         "UCBrowser/12.11.1.1197 Mobile Safari/537.36",
         "UC Browser", "12.11.1", "Android", "8.1.0", "Huawei Nexus 6P", "Huawei", "Nexus 6P"},
        {"Mozilla/5.0 (Linux; U; Android 4.0.3; ko-kr; LG-L160L Build/IML74K) AppleWebkit/"
         "534.30 (KHTML, like Gecko) Version/4.0 Mobile Safari/534.30",
         "Android", "4.0.3", "Android", "4.0.3", "LG-L160L", "LG", "L160L"},
        {"Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Silk/114.5.1 like Chrome/114.0.5735.196 Safari/537.36",
         "Amazon Silk", "114.5.1", "Android", "9", "Kindle", "Amazon", "Kindle"},
        {"Opera/9.80 (J2ME/MIDP; Opera Mini/9.80 (S60; SymbOS; Opera Mobi/23.348; U; en) "
         "Presto/2.5.25 Version/10.54",
         "Opera Mini", "9.80", "Symbian OS", "", "Generic Smartphone", "Generic", "Smartphone"},
        /* Apps and web views. */
        {"Mozilla/5.0 (Linux; Android 7.1.2; Nexus 5X Build/N2G47W; wv) AppleWebKit/537.36 "
         "(KHTML, like Gecko) Version/4.0 Chrome/58.0.3029.83 Mobile Safari/537.36",
         "Chrome Mobile WebView", "58.0.3029.83", "Android", "7.1.2", "Nexus 5X", "LG",
         "Nexus 5X"},
        {"Mozilla/5.0 (iPhone; CPU iPhone OS 11_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
         "like Gecko) Mobile/15G77 [FBAN/FBIOS;FBAV/194.0.0.38.99;FBBV/127868476;FBDV/"
         "iPhone7,2;FBMD/iPhone;FBSN/iOS;FBSV/11.4.1;FBSS/2;FBCR/OrangeBotswana;FBID/phone;"
         "FBLC/en_GB;FBOP/5;FBRV/128807018]",
         "Facebook", "194.0.0", "iOS", "11.4.1", "iPhone", "Apple", "iPhone7,2"},
        {"Mozilla/5.0 (Linux; Android 12; SM-A525F Build/SP1A.210812.016; wv) AppleWebKit/"
         "537.36 (KHTML, like Gecko) Version/4.0 Chrome/105.0.5195.136 Mobile Safari/537.36 "
         "Instagram 253.0.0.23.114 Android (31/12; 450dpi; 1080x2177; samsung; SM-A525F; a52q; "
         "qcom; en_US; 399993162)",
         "Instagram", "253.0.0", "Android", "12", "Samsung SM-A525F", "Samsung", "SM-A525F"},
        {"Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)", "Outlook",
         "2016", "Windows", "10", "Other", "", ""},
        {"Spotify/8.8.96 iOS/17.4.1 (iPhone15,3)", "Spotify", "8.8.96", "iOS", "17.4.1",
         "iPhone", "Apple", "iPhone15,3"},
        {"atc/1.0 watchOS/5.1.3 model/Watch3,4 hwp/t8004 build/16S535 (6; dt:156)",
         "Apple Watch App", "3.4", "WatchOS", "5.1.3", "Apple Watch", "Apple", "Watch3,4"},
        /* Consoles and televisions. */
        {"Mozilla/5.0 (PlayStation; PlayStation 5/2.26) AppleWebKit/605.1.15 (KHTML, like Gecko)",
         "Apple Mail", "605.1.15", "Other", "", "PlayStation 5", "Sony", "PlayStation 5"},
        {"Mozilla/5.0 (Windows NT 10.0; Win64; x64; Xbox; Xbox One) AppleWebKit/537.36 (KHTML, "
         "like Gecko) Chrome/70.0.3538.102 Safari/537.36 Edge/18.19041",
         "Edge", "18.19041", "Windows", "10", "Other", "", ""},
        {"Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/538.1 (KHTML, like Gecko) "
         "Version/6.0 TV Safari/538.1",
         "Safari", "6.0", "Tizen", "6.0", "Samsung SMART-TV", "Samsung", "SMART-TV"},
        /* Robots and scripts. */
        {"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Googlebot",
         "2.1", "Other", "", "Spider", "Spider", "Desktop"},
        {"Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; "
         "+http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
         "bingbot", "2.0", "Other", "", "Spider", "Spider", "Desktop"},
        {"curl/8.5.0", "curl", "8.5.0", "Other", "", "Other", "", ""},
        {"python-requests/2.31.0", "Python Requests", "2.31", "Other", "", "Other", "", ""},
        {"", "Other", "", "Other", "", "Other", "", ""},
    };
    const struct enrich_ua *ua = uap();

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct enrich_ua_result r;
        char version[128], os_version[128];

        ASSERT_OK(enrich_ua_parse(ua, cases[i].agent, strlen(cases[i].agent),
                                  ENRICH_UA_SECTION_ALL, &r), NULL);
        joined(&r, ENRICH_UA_MAJOR, 4, version, sizeof(version));
        joined(&r, ENRICH_OS_MAJOR, 4, os_version, sizeof(os_version));
        if (strcmp(or_empty(enrich_ua_get(&r, ENRICH_UA_FAMILY)), cases[i].browser) != 0 ||
            strcmp(version, cases[i].version) != 0 ||
            strcmp(or_empty(enrich_ua_get(&r, ENRICH_OS_FAMILY)), cases[i].os) != 0 ||
            strcmp(os_version, cases[i].os_version) != 0 ||
            strcmp(or_empty(enrich_ua_get(&r, ENRICH_DEVICE_FAMILY)), cases[i].device) != 0 ||
            strcmp(or_empty(enrich_ua_get(&r, ENRICH_DEVICE_BRAND)), cases[i].brand) != 0 ||
            strcmp(or_empty(enrich_ua_get(&r, ENRICH_DEVICE_MODEL)), cases[i].model) != 0) {
            TEST_FAIL("%s\n  got  %s %s | %s %s | %s | %s | %s\n  want %s %s | %s %s | %s | %s "
                      "| %s", cases[i].agent, or_empty(enrich_ua_get(&r, ENRICH_UA_FAMILY)),
                      version, or_empty(enrich_ua_get(&r, ENRICH_OS_FAMILY)), os_version,
                      or_empty(enrich_ua_get(&r, ENRICH_DEVICE_FAMILY)),
                      or_empty(enrich_ua_get(&r, ENRICH_DEVICE_BRAND)),
                      or_empty(enrich_ua_get(&r, ENRICH_DEVICE_MODEL)), cases[i].browser,
                      cases[i].version, cases[i].os, cases[i].os_version, cases[i].device,
                      cases[i].brand, cases[i].model);
        }
        ASSERT_TRUE(!r.is_truncated);
        ASSERT_EQ_INT(r.n_gave_up, 0);
    }
}

/* ---- the specification's rules, on rules made for the purpose --------------------- */

static const char rules_yaml[] =
    "user_agent_parsers:\n"
    "  - regex: '(Namoroka|Shiretoko|Minefield)/(\\d+)\\.(\\d+)\\.(\\d+(?:pre)?)'\n"
    "    family_replacement: 'Firefox ($1)'\n"
    "  - regex: 'Fixed/(\\d+)'\n"
    "    family_replacement: 'Fixed Name'\n"
    "    v1_replacement: '7'\n"
    "    v2_replacement: '$2'\n"
    "  - regex: '(Empty)/(\\d*)\\.?(\\d*)'\n"
    "  - regex: '(Five)/(\\d+)\\.(\\d+)\\.(\\d+)\\.(\\d+)'\n"
    "  - regex: '(Anything)'\n"
    "    family_replacement: '  spaced $1  '\n"
    "os_parsers:\n"
    "  - regex: 'Win(95|98|3.1|NT|ME|2000)'\n"
    "    os_replacement: 'Windows $1'\n"
    "  - regex: 'Plain (\\w+) (\\d+)\\.(\\d+)\\.(\\d+)\\.(\\d+)'\n"
    "  - regex: 'Swap (\\w+) (\\d+)'\n"
    "    os_replacement: '  $2 of $1  '\n"
    "    os_v1_replacement: '$1'\n"
    "    os_v2_replacement: '$9'\n"
    "    os_v3_replacement: ' '\n"
    "os_parsers_unknown_section_is_ignored: []\n"
    "device_parsers:\n"
    "  - regex: '; *(PEDI)_(PLUS)_(W) Build'\n"
    "    device_replacement: 'Odys $1 $2 $3'\n"
    "    brand_replacement: 'Odys'\n"
    "    model_replacement: '$1 $2 $3'\n"
    "  - regex: 'feature ?phone'\n"
    "    regex_flag: 'i'\n"
    "    device_replacement: 'Generic Feature Phone'\n"
    "    brand_replacement: 'Generic'\n"
    "    model_replacement: 'Feature Phone'\n"
    "  - regex: 'Whole=(\\w+)'\n"
    "    device_replacement: '$0'\n"
    "  - regex: 'Bare (\\w+)'\n"
    "  - regex: 'Empty brand (\\w+)'\n"
    "    brand_replacement: '$2'\n";

static struct enrich_ua *rules(void)
{
    struct enrich_ua *ua = NULL;
    struct sl_err err;

    sl_err_clear(&err);
    ASSERT_OK(enrich_ua_create_from_text(rules_yaml, strlen(rules_yaml), "rules.yaml", &ua,
                                         &err), &err);
    return ua;
}

static void expect(const struct enrich_ua_result *r, enum enrich_ua_field f, const char *want)
{
    const char *got = enrich_ua_get(r, f);

    if ((want == NULL) != (got == NULL) || (want != NULL && strcmp(want, got) != 0)) {
        TEST_FAIL("field %d: got %s%s%s, want %s%s%s", (int)f, got ? "\"" : "",
                  got ? got : "undefined", got ? "\"" : "", want ? "\"" : "",
                  want ? want : "undefined", want ? "\"" : "");
    }
}

static void parse(const struct enrich_ua *ua, const char *agent, struct enrich_ua_result *r)
{
    ASSERT_OK(enrich_ua_parse(ua, agent, strlen(agent), ENRICH_UA_SECTION_ALL, r), NULL);
}

static void test_ua_replacement_rules_follow_the_specification(void)
{
    struct enrich_ua *ua = rules();
    struct enrich_ua_result r;

    /* The specification's own user-agent example. */
    parse(ua, "Mozilla/5.0 (Windows; Windows NT 5.1; rv:2.0b3pre) Gecko/20100727 "
          "Minefield/4.0.1pre", &r);
    expect(&r, ENRICH_UA_FAMILY, "Firefox (Minefield)");
    expect(&r, ENRICH_UA_MAJOR, "4");
    expect(&r, ENRICH_UA_MINOR, "0");
    expect(&r, ENRICH_UA_PATCH, "1pre");
    expect(&r, ENRICH_UA_PATCH_MINOR, NULL);
    /* Version replacements are literal, never templates; unmatched groups are undefined. */
    parse(ua, "Fixed/3", &r);
    expect(&r, ENRICH_UA_FAMILY, "Fixed Name");
    expect(&r, ENRICH_UA_MAJOR, "7");
    expect(&r, ENRICH_UA_MINOR, "$2");
    expect(&r, ENRICH_UA_PATCH, NULL);
    /* Empty groups are undefined. */
    parse(ua, "Empty/", &r);
    expect(&r, ENRICH_UA_FAMILY, "Empty");
    expect(&r, ENRICH_UA_MAJOR, NULL);
    expect(&r, ENRICH_UA_MINOR, NULL);
    /* Group 5 is patch_minor. */
    parse(ua, "Five/1.2.3.4", &r);
    expect(&r, ENRICH_UA_PATCH_MINOR, "4");
    /* The family replacement is not trimmed (the reference implementation does not). */
    parse(ua, "Anything", &r);
    expect(&r, ENRICH_UA_FAMILY, "  spaced Anything  ");
    /* No match: Other, the rest undefined. */
    parse(ua, "nothing matches", &r);
    expect(&r, ENRICH_UA_FAMILY, "Other");
    expect(&r, ENRICH_UA_MAJOR, NULL);
    expect(&r, ENRICH_OS_FAMILY, "Other");
    expect(&r, ENRICH_OS_MAJOR, NULL);
    expect(&r, ENRICH_DEVICE_FAMILY, "Other");
    expect(&r, ENRICH_DEVICE_BRAND, NULL);
    expect(&r, ENRICH_DEVICE_MODEL, NULL);

    /* The specification's OS example; its regex is case-sensitive. */
    parse(ua, "Mozilla/5.0 (Windows; U; Win95; en-US; rv:1.1) Gecko/20020826", &r);
    expect(&r, ENRICH_OS_FAMILY, "Windows 95");
    expect(&r, ENRICH_OS_MAJOR, NULL);
    parse(ua, "win95", &r);
    expect(&r, ENRICH_OS_FAMILY, "Other");
    /* Without replacements: groups in order, five of them. */
    parse(ua, "Plain Foo 1.2.3.4", &r);
    expect(&r, ENRICH_OS_FAMILY, "Foo");
    expect(&r, ENRICH_OS_MAJOR, "1");
    expect(&r, ENRICH_OS_PATCH_MINOR, "4");
    /* OS replacements are templates ($N anywhere, unset groups empty), trimmed; an empty
     * result is undefined. */
    parse(ua, "Swap Bar 42", &r);
    expect(&r, ENRICH_OS_FAMILY, "42 of Bar");
    expect(&r, ENRICH_OS_MAJOR, "Bar");
    expect(&r, ENRICH_OS_MINOR, NULL);
    expect(&r, ENRICH_OS_PATCH, NULL);

    /* The specification's device example. */
    parse(ua, "Mozilla/5.0 (Linux; U; Android 4.2.2; de-de; PEDI_PLUS_W Build/JDQ39) "
          "AppleWebKit/534.30 (KHTML, like Gecko) Version/4.0 Safari/534.30", &r);
    expect(&r, ENRICH_DEVICE_FAMILY, "Odys PEDI PLUS W");
    expect(&r, ENRICH_DEVICE_BRAND, "Odys");
    expect(&r, ENRICH_DEVICE_MODEL, "PEDI PLUS W");
    /* regex_flag 'i'. */
    parse(ua, "Some FEATUREPHONE thing", &r);
    expect(&r, ENRICH_DEVICE_FAMILY, "Generic Feature Phone");
    /* $0 is the whole match. */
    parse(ua, "x Whole=abc y", &r);
    expect(&r, ENRICH_DEVICE_FAMILY, "Whole=abc");
    expect(&r, ENRICH_DEVICE_MODEL, "abc");
    /* Without replacements family and model are group 1, brand undefined. */
    parse(ua, "Bare Thing", &r);
    expect(&r, ENRICH_DEVICE_FAMILY, "Thing");
    expect(&r, ENRICH_DEVICE_BRAND, NULL);
    expect(&r, ENRICH_DEVICE_MODEL, "Thing");
    /* A brand template that comes out empty is undefined. */
    parse(ua, "Empty brand Zed", &r);
    expect(&r, ENRICH_DEVICE_BRAND, NULL);

    /* Sections not asked for stay undefined. */
    ASSERT_OK(enrich_ua_parse(ua, "Win98", 5, ENRICH_UA_SECTION_OS, &r), NULL);
    expect(&r, ENRICH_OS_FAMILY, "Windows 98");
    expect(&r, ENRICH_UA_FAMILY, NULL);
    expect(&r, ENRICH_DEVICE_FAMILY, NULL);
    enrich_ua_destroy(ua);
}

static void expect_load_error(const char *yaml, const char *want)
{
    struct enrich_ua *ua = NULL;
    struct sl_err err;

    sl_err_clear(&err);
    ASSERT_EQ_INT(enrich_ua_create_from_text(yaml, strlen(yaml), "bad.yaml", &ua, &err),
                  SL_EINVAL);
    ASSERT_TRUE(ua == NULL);
    ASSERT_CONTAINS(err.msg, want);
}

static void test_ua_broken_rule_files_are_clear_errors(void)
{
    struct enrich_ua *ua = NULL;
    struct sl_err err;

    expect_load_error("user_agent_parsers:\n  - regex: 'a\n", "bad.yaml line");
    expect_load_error("[1, 2]\n", "not a uap-core regexes file");
    expect_load_error("user_agent_parsers: []\nos_parsers: []\n", "no device_parsers section");
    expect_load_error("user_agent_parsers: []\nos_parsers: []\ndevice_parsers: {}\n",
                      "device_parsers is not a list");
    expect_load_error("user_agent_parsers:\n  - family_replacement: 'x'\nos_parsers: []\n"
                      "device_parsers: []\n",
                      "bad.yaml line 2: user_agent_parsers[0] has no regex");
    expect_load_error("user_agent_parsers: []\nos_parsers:\n  - regex: 'ok'\n  - regex: '(a'\n"
                      "device_parsers: []\n", "bad.yaml line 4: os_parsers[1] /(a/: regex does "
                      "not compile at offset 2: missing closing parenthesis");
    expect_load_error("user_agent_parsers: []\nos_parsers: []\ndevice_parsers:\n  - regex: 'a'\n"
                      "    regex_flag: 'x'\n", "regex_flag 'x'");
    sl_err_clear(&err);
    ASSERT_EQ_INT(enrich_ua_create("/no/such/regexes.yaml", &ua, &err), SL_ENOTFOUND);
    ASSERT_CONTAINS(err.msg, "/no/such/regexes.yaml: cannot open");
    ASSERT_TRUE(ua == NULL);
}

/* ---- bounded cost ------------------------------------------------------------------ */

static void time_one(const struct enrich_ua *ua, const char *name, const char *agent, size_t len,
                     double *worst_s)
{
    struct enrich_ua_result r;
    double t0 = now_s(), dt;

    ASSERT_OK(enrich_ua_parse(ua, agent, len, ENRICH_UA_SECTION_ALL, &r), NULL);
    dt = now_s() - t0;
    fprintf(stderr, "  %-22s %8zu bytes %8.2f ms  truncated=%d gave_up=%u browser=%s\n", name,
            len, dt * 1e3, r.is_truncated, r.n_gave_up, enrich_ua_get(&r, ENRICH_UA_FAMILY));
    ASSERT_TRUE(enrich_ua_get(&r, ENRICH_UA_FAMILY) != NULL);
    if (dt > *worst_s) {
        *worst_s = dt;
    }
}

static char *repeat(const char *prefix, const char *unit, size_t n, const char *suffix)
{
    size_t plen = strlen(prefix), ulen = strlen(unit), slen = strlen(suffix);
    char *s = malloc(plen + ulen * n + slen + 1);
    char *p = s;

    memcpy(p, prefix, plen);
    p += plen;
    for (size_t i = 0; i < n; i++) {
        memcpy(p, unit, ulen);
        p += ulen;
    }
    memcpy(p, suffix, slen + 1);
    return s;
}

static void test_ua_pathological_agents_take_bounded_time(void)
{
    static const struct {
        const char *name, *prefix, *unit, *suffix;
        size_t n;
    } hostile[] = {
        {"1 MB", "Mozilla/5.0 (Windows NT 10.0) ", "x", " Chrome/1.0", 1 << 20},
        {"1 MB of semicolons", "Mozilla/5.0 (Linux; Android 9; ", "; ", "", 1 << 19},
        {"spaces", "", " ", "x", 600},
        {"parentheses", "", "(", "", 600},
        {"dotted digits", "", "1.", "", 300},
        {"Build/ repeated", "", "Build/", "", 100},
        {"Android model run", "Mozilla/5.0 (Linux; Android 4.4; ", "a", "", 600},
        {"bot-matcher bait", "", "Ab1 ", "Crawl", 150},
        {"Facebook bait", "[FB", ";", "FBAV/", 600},
        {"slashes", "", "/a", "", 300},
        {"Chrome/ repeated", "", "Chrome/", "", 80},
    };
    const struct enrich_ua *ua = uap();
    double worst = 0;

    for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
        char *agent = repeat(hostile[i].prefix, hostile[i].unit, hostile[i].n, hostile[i].suffix);

        time_one(ua, hostile[i].name, agent, strlen(agent), &worst);
        free(agent);
    }
    fprintf(stderr, "worst: %.2f ms\n", worst * 1e3);
    /* Generous for sanitizer builds; an unbounded regex would take seconds to minutes. */
    ASSERT_TRUE(worst < 2.0);
}

static void test_ua_long_agents_are_cut_at_a_utf8_boundary(void)
{
    const struct enrich_ua *ua = uap();
    char agent[ENRICH_UA_MAX_BYTES + 16];
    struct enrich_ua_result r;

    /* "é" (two bytes) straddles the limit: the whole character is left out. */
    memset(agent, 'a', sizeof(agent));
    memcpy(agent, "curl/8.1 ", 9);
    agent[ENRICH_UA_MAX_BYTES - 1] = '\xc3';
    agent[ENRICH_UA_MAX_BYTES] = '\xa9';
    ASSERT_OK(enrich_ua_parse(ua, agent, sizeof(agent), ENRICH_UA_SECTION_ALL, &r), NULL);
    ASSERT_TRUE(r.is_truncated);
    expect(&r, ENRICH_UA_FAMILY, "curl");
    ASSERT_OK(enrich_ua_parse(ua, agent, ENRICH_UA_MAX_BYTES + 1, ENRICH_UA_SECTION_ALL, &r),
              NULL);
    ASSERT_TRUE(r.is_truncated);
    /* Exactly the limit is read whole (its last byte is then a lone lead byte: invalid
     * UTF-8, which never matches a character). */
    ASSERT_OK(enrich_ua_parse(ua, agent, ENRICH_UA_MAX_BYTES, ENRICH_UA_SECTION_ALL, &r), NULL);
    ASSERT_TRUE(!r.is_truncated);
    expect(&r, ENRICH_UA_FAMILY, "curl");
}

static void test_ua_invalid_utf8_is_harmless(void)
{
    static const char *const agents[] = {
        "Mozilla/5.0 (Linux; Android 9; \xff\xfe Build/X) Chrome/70.0 Mobile Safari/537.36",
        "\xc3",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 12_0 like Mac OS X \xe2\x82) Version/12.0 "
        "Mobile/15E148 Safari/604.1",
        "\xed\xa0\x80 surrogate",
    };
    const struct enrich_ua *ua = uap();
    struct enrich_ua_result r;

    for (size_t i = 0; i < sizeof(agents) / sizeof(agents[0]); i++) {
        ASSERT_OK(enrich_ua_parse(ua, agents[i], strlen(agents[i]), ENRICH_UA_SECTION_ALL, &r),
                  NULL);
        ASSERT_TRUE(enrich_ua_get(&r, ENRICH_UA_FAMILY) != NULL);
    }
    parse(ua, agents[2], &r);
    expect(&r, ENRICH_OS_FAMILY, "iOS");
    ASSERT_OK(enrich_ua_parse(ua, NULL, 0, ENRICH_UA_SECTION_ALL, &r), NULL);
    expect(&r, ENRICH_UA_FAMILY, "Other");
}

/* ---- the prefilter ----------------------------------------------------------------- */

/* Every user_agent_string of a uap-core test file (caller frees the array and strings). */
static char **read_agents(const char *rel, size_t *n_out)
{
    char *path = test_path(test_env_require("SLUICE_TEST_UAP_CORE_DIR"), rel);
    FILE *f = fopen(path, "rb");
    yaml_parser_t yp;
    yaml_event_t ev;
    char **agents = NULL;
    size_t n = 0, cap = 0;
    bool is_next = false, is_done = false;

    ASSERT_TRUE(f != NULL);
    ASSERT_TRUE(yaml_parser_initialize(&yp));
    yaml_parser_set_input_file(&yp, f);
    while (!is_done) {
        ASSERT_TRUE(yaml_parser_parse(&yp, &ev));
        if (ev.type == YAML_SCALAR_EVENT) {
            const char *v = (const char *)ev.data.scalar.value;

            if (is_next) {
                if (n == cap) {
                    cap = cap == 0 ? 1024 : cap * 2;
                    agents = realloc(agents, cap * sizeof(*agents));
                }
                agents[n++] = strdup(v);
            }
            is_next = strcmp(v, "user_agent_string") == 0;
        }
        is_done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&yp);
    fclose(f);
    free(path);
    *n_out = n;
    return agents;
}

static bool same_result(const struct enrich_ua_result *a, const struct enrich_ua_result *b)
{
    for (int f = 0; f < ENRICH_UA_N_FIELDS; f++) {
        const char *x = enrich_ua_get(a, (enum enrich_ua_field)f);
        const char *y = enrich_ua_get(b, (enum enrich_ua_field)f);

        if ((x == NULL) != (y == NULL) || (x != NULL && strcmp(x, y) != 0)) {
            return false;
        }
    }
    return true;
}

static void test_ua_prefilter_changes_no_answer(void)
{
    static const char *const files[] = {"tests/test_ua.yaml", "tests/test_os.yaml",
                                        "tests/test_device.yaml"};
    const struct enrich_ua *ua = uap();
    struct enrich_ua_info info;
    double with = 0, without = 0;
    size_t n_checked = 0;

    enrich_ua_info(ua, &info);
    fprintf(stderr, "rules: %zu user agent, %zu os, %zu device; %zu with a required trigram; "
            "%zu KiB compiled\n", info.n_rules[0], info.n_rules[1], info.n_rules[2],
            info.n_prefiltered, info.code_bytes / 1024);
    ASSERT_TRUE(info.n_prefiltered > (info.n_rules[0] + info.n_rules[1] + info.n_rules[2]) / 2);
    for (size_t fi = 0; fi < sizeof(files) / sizeof(files[0]); fi++) {
        size_t n = 0;
        char **agents = read_agents(files[fi], &n);

        /* Every third agent keeps the unfiltered runs (the slow side) within seconds. */
        for (size_t i = 0; i < n; i += 3) {
            struct enrich_ua_result a, b;
            size_t len = strlen(agents[i]);
            double t0 = now_s();

            ASSERT_OK(enrich_ua_parse(ua, agents[i], len, ENRICH_UA_SECTION_ALL, &a), NULL);
            with += now_s() - t0;
            t0 = now_s();
            ASSERT_OK(enrich_ua_parse(ua, agents[i], len,
                                      ENRICH_UA_SECTION_ALL | ENRICH_UA_NO_PREFILTER, &b), NULL);
            without += now_s() - t0;
            if (!same_result(&a, &b)) {
                TEST_FAIL("the prefilter changed the answer for %s", agents[i]);
            }
            n_checked++;
        }
        for (size_t i = 0; i < n; i++) {
            free(agents[i]);
        }
        free(agents);
    }
    fprintf(stderr, "%zu agents: %.1f us a parse with the prefilter, %.1f us without\n",
            n_checked, with * 1e6 / (double)n_checked, without * 1e6 / (double)n_checked);
}

static void test_ua_failed_allocations(void)
{
    struct enrich_ua *ua = NULL;
    struct enrich_ua_result r;
    struct sl_err err;

    for (long n = 0;; n++) {
        int rc;

        sl_err_clear(&err);
        sl_alloc_fail_after(n);
        rc = enrich_ua_create_from_text(rules_yaml, strlen(rules_yaml), "rules.yaml", &ua, &err);
        sl_alloc_fail_after(-1);
        if (rc == 0) {
            break;
        }
        ASSERT_EQ_INT(rc, SL_ENOMEM);
        ASSERT_TRUE(ua == NULL);
    }
    sl_alloc_fail_after(0);
    ASSERT_EQ_INT(enrich_ua_parse(ua, "Win95", 5, ENRICH_UA_SECTION_ALL, &r), SL_ENOMEM);
    sl_alloc_fail_after(-1);
    expect(&r, ENRICH_OS_FAMILY, "Other");
    expect(&r, ENRICH_UA_FAMILY, "Other");
    parse(ua, "Win95", &r);
    expect(&r, ENRICH_OS_FAMILY, "Windows 95");
    enrich_ua_destroy(ua);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_ua_replacement_rules_follow_the_specification),
        TEST_CASE(test_ua_broken_rule_files_are_clear_errors),
        TEST_CASE(test_ua_failed_allocations),
        TEST_CASE(test_ua_real_agents),
        TEST_CASE(test_ua_pathological_agents_take_bounded_time),
        TEST_CASE(test_ua_long_agents_are_cut_at_a_utf8_boundary),
        TEST_CASE(test_ua_invalid_utf8_is_harmless),
        TEST_CASE(test_ua_prefilter_changes_no_answer),
        {NULL, NULL},
    };

    return test_main(argc, argv, cases);
}

/*
 * Bot verdicts: built-in markers for headless browsers and scripted clients, the
 * crawler-user-agents patterns behind the trigram prefilter, uap's "Spider" device, and a
 * short list of hosting ASNs.
 */
#include "bots.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "enrich_int.h"
#include "ua.h"

/* Headless and automated browsers; "headless" alone catches e.g. "Firefox Headless". */
static const char headless_regex[] =
    "(HeadlessChrome|PhantomJS|SlimerJS|Puppeteer|Playwright|Selenium|Nightmare|jsdom|"
    "Cypress|HtmlUnit|Zombie\\.js|[Hh]eadless)";

/* HTTP libraries and command-line clients, when they name themselves first. */
static const char scripted_regex[] =
    "^(curl|Wget|python-requests|python-urllib|python-httpx|Python|aiohttp|httpx|urllib3|"
    "PycURL|Go-http-client|okhttp|Java|Apache-HttpClient|Apache-HttpAsyncClient|"
    "Jakarta Commons-HttpClient|unirest-java|libwww-perl|LWP::Simple|axios|node-fetch|"
    "undici|got|PostmanRuntime|insomnia|HTTPie|Scrapy|GuzzleHttp|Guzzle|Faraday|Ruby|PHP|"
    "Dart|Deno|Bun|reqwest|RestSharp|Typhoeus|Mechanize|WinHttp|lua-resty-http|fasthttp|"
    "colly|libcurl)(?=[/ ;(]|$)";

/* Cloud and hosting networks. Consumer VPN and privacy-relay networks (Cloudflare 13335,
 * Akamai 36183 behind iCloud Private Relay) are left out on purpose: people browse from
 * them. Sorted by number. */
static const struct hosting_asn {
    uint32_t asn;
    const char *name;
} hosting_asns[] = {
    {8075, "Microsoft Azure"},   {8560, "IONOS"},          {8987, "Amazon AWS"},
    {12876, "Scaleway"},         {14061, "DigitalOcean"},  {14618, "Amazon AWS"},
    {15169, "Google"},           {16265, "Leaseweb"},      {16276, "OVH"},
    {16509, "Amazon AWS"},       {20473, "Vultr"},         {20940, "Akamai"},
    {24940, "Hetzner"},          {26496, "GoDaddy"},       {28753, "Leaseweb"},
    {31898, "Oracle Cloud"},     {32244, "Liquid Web"},    {36351, "IBM Cloud"},
    {37963, "Alibaba Cloud"},    {40676, "Psychz"},        {45090, "Tencent Cloud"},
    {45102, "Alibaba Cloud"},    {46606, "Unified Layer"}, {47583, "Hostinger"},
    {51167, "Contabo"},          {53667, "FranTech"},      {54113, "Fastly"},
    {55990, "Huawei Cloud"},     {60781, "Leaseweb"},      {62567, "DigitalOcean"},
    {63949, "Akamai Linode"},    {132203, "Tencent Cloud"}, {135377, "UCloud"},
    {136907, "Huawei Cloud"},    {197540, "netcup"},       {393406, "DigitalOcean"},
    {396982, "Google Cloud"},
};

struct pattern {
    pcre2_code *code;
    char *text;
    uint16_t *trigrams;  /* one of these is in every agent it matches */
    size_t n_trigrams;
};

struct enrich_bots {
    struct enrich_regex_env env;
    pcre2_code *headless;
    pcre2_code *scripted;
    struct pattern *patterns;
    size_t n_patterns;
    uint32_t max_pairs;
    struct enrich_bots_info info;
};

const char *enrich_bot_kind_name(enum enrich_bot_kind kind)
{
    switch (kind) {
    case ENRICH_BOT_NONE: return "";
    case ENRICH_BOT_EMPTY: return "empty";
    case ENRICH_BOT_HEADLESS: return "headless";
    case ENRICH_BOT_SCRIPTED: return "scripted";
    case ENRICH_BOT_CRAWLER: return "crawler";
    case ENRICH_BOT_SPIDER: return "spider";
    case ENRICH_BOT_DATACENTER: return "datacenter";
    }
    return "";
}

int enrich_bots_create(struct enrich_bots **out, struct sl_err *err)
{
    struct enrich_bots *b = sl_calloc(1, sizeof(*b));
    int rc;

    *out = NULL;
    if (b == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory creating bot detection");
    }
    b->max_pairs = 2;
    rc = enrich_regex_env_init(&b->env, err);
    if (rc == 0) {
        rc = enrich_regex_compile(&b->env, headless_regex, false, &b->headless, err);
    }
    if (rc == 0) {
        rc = enrich_regex_compile(&b->env, scripted_regex, true, &b->scripted, err);
    }
    if (rc != 0) {
        enrich_bots_destroy(b);
        return rc;
    }
    *out = b;
    return 0;
}

static void free_patterns(struct pattern *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        pcre2_code_free(p[i].code);
        sl_free(p[i].text);
        sl_free(p[i].trigrams);
    }
    sl_free(p);
}

void enrich_bots_destroy(struct enrich_bots *b)
{
    if (b == NULL) {
        return;
    }
    free_patterns(b->patterns, b->n_patterns);
    pcre2_code_free(b->headless);
    pcre2_code_free(b->scripted);
    enrich_regex_env_fini(&b->env);
    sl_free(b);
}

int enrich_bots_load_crawlers(struct enrich_bots *b, const char *path, struct sl_err *err)
{
    struct pattern *patterns = NULL;
    size_t n = 0, n_skipped = 0, n_prefiltered = 0, len = 0;
    uint32_t max_pairs = b->max_pairs;
    struct enrich_trigram_common *common = NULL;
    json_error_t jerr;
    json_t *root = NULL;
    char *text = NULL;
    int rc;

    rc = enrich_file_read(path, ENRICH_BOTS_FILE_MAX_BYTES, &text, &len, err);
    if (rc != 0) {
        return rc;
    }
    root = json_loadb(text, len, 0, &jerr);
    if (root == NULL) {
        rc = json_error_code(&jerr) == json_error_out_of_memory
                 ? sl_err_set(err, SL_ENOMEM, "%s: out of memory", path)
                 : sl_err_set(err, SL_EINVAL, "%s line %d: not JSON: %s", path, jerr.line,
                              jerr.text);
        goto done;
    }
    if (!json_is_array(root)) {
        rc = sl_err_set(err, SL_EINVAL, "%s: expected an array of {\"pattern\": ...} objects "
                        "(crawler-user-agents.json)", path);
        goto done;
    }
    patterns = sl_calloc(json_array_size(root) + 1, sizeof(*patterns));
    common = sl_malloc(sizeof(*common));
    if (patterns == NULL || common == NULL) {
        rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    enrich_trigram_common_init(common);
    for (size_t i = 0; i < json_array_size(root); i++) {
        const char *pat = json_string_value(json_object_get(json_array_get(root, i), "pattern"));
        struct pattern *p = &patterns[n];
        struct sl_err why;
        uint32_t n_groups = 0;

        if (pat == NULL) {
            rc = sl_err_set(err, SL_EINVAL, "%s: entry %zu has no \"pattern\" string", path, i);
            goto done;
        }
        sl_err_clear(&why);
        rc = enrich_regex_compile(&b->env, pat, false, &p->code, &why);
        if (rc == SL_ENOMEM) {
            rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", path);
            goto done;
        }
        if (rc != 0) {
            /* The list is written for many regex dialects; one PCRE2 rejects is left out
             * rather than costing the other patterns. */
            n_skipped++;
            rc = 0;
            continue;
        }
        p->text = sl_strdup(pat);
        if (p->text == NULL) {
            pcre2_code_free(p->code);
            p->code = NULL;
            rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", path);
            goto done;
        }
        if (enrich_trigram_pick(pat, false, common, &p->trigrams, &p->n_trigrams) != 0) {
            pcre2_code_free(p->code);
            sl_free(p->text);
            memset(p, 0, sizeof(*p));
            rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory", path);
            goto done;
        }
        n_prefiltered += p->n_trigrams > 0 ? 1 : 0;
        pcre2_pattern_info(p->code, PCRE2_INFO_CAPTURECOUNT, &n_groups);
        if (n_groups + 1 > max_pairs) {
            max_pairs = n_groups + 1;
        }
        n++;
    }
    free_patterns(b->patterns, b->n_patterns);
    b->patterns = patterns;
    b->n_patterns = n;
    b->max_pairs = max_pairs;
    b->info.n_patterns = n;
    b->info.n_skipped = n_skipped;
    b->info.n_prefiltered = n_prefiltered;
    snprintf(b->info.hash_hex, sizeof(b->info.hash_hex), "%016llx",
             (unsigned long long)enrich_hash64(text, len));
    patterns = NULL;
    n = 0;

done:
    sl_free(common);
    free_patterns(patterns, n);
    json_decref(root);
    sl_free(text);
    return rc;
}

void enrich_bots_info(const struct enrich_bots *b, struct enrich_bots_info *info)
{
    *info = b->info;
}

static void set_verdict(struct enrich_bot_verdict *out, enum enrich_bot_kind kind,
                        const char *detail, size_t detail_len)
{
    const char *name = enrich_bot_kind_name(kind);
    size_t n = strlen(name);

    out->kind = kind;
    memcpy(out->reason, name, n);
    if (detail_len > 0) {
        out->reason[n++] = ':';
        enrich_copy(out->reason + n, sizeof(out->reason) - n, detail, detail_len);
    }
    else {
        out->reason[n] = '\0';
    }
}

/* Runs code and, on a match, reports group 1 (or the whole match) as the detail. */
static bool match_marker(const struct enrich_bots *b, const pcre2_code *code, const char *agent,
                         size_t len, pcre2_match_data *md, enum enrich_bot_kind kind,
                         struct enrich_bot_verdict *out)
{
    const PCRE2_SIZE *ov;
    int rc = enrich_regex_match(&b->env, code, agent, len, md);

    if (rc <= 0) {
        return false;
    }
    ov = pcre2_get_ovector_pointer(md);
    if (rc > 1 && ov[2] != PCRE2_UNSET) {
        set_verdict(out, kind, agent + ov[2], ov[3] - ov[2]);
    }
    else {
        set_verdict(out, kind, agent + ov[0], ov[1] - ov[0]);
    }
    return true;
}

static bool is_empty_agent(const char *agent, size_t len)
{
    size_t i = 0, end = len;

    while (i < end && (agent[i] == ' ' || agent[i] == '\t')) {
        i++;
    }
    while (end > i && (agent[end - 1] == ' ' || agent[end - 1] == '\t')) {
        end--;
    }
    return end == i || (end - i == 1 && agent[i] == '-');
}

void enrich_bots_check_agent(const struct enrich_bots *b, const char *agent, size_t len,
                             const char *device_family, const char *ua_family,
                             struct enrich_bot_verdict *out)
{
    pcre2_match_data *md = NULL;
    struct enrich_trigram_set set;

    out->kind = ENRICH_BOT_NONE;
    out->reason[0] = '\0';
    if (agent == NULL) {
        agent = "";
        len = 0;
    }
    len = enrich_utf8_cut(agent, len, ENRICH_UA_MAX_BYTES);
    if (is_empty_agent(agent, len)) {
        set_verdict(out, ENRICH_BOT_EMPTY, NULL, 0);
        return;
    }
    md = pcre2_match_data_create(b->max_pairs, b->env.gctx);
    if (md != NULL) {
        if (match_marker(b, b->headless, agent, len, md, ENRICH_BOT_HEADLESS, out) ||
            match_marker(b, b->scripted, agent, len, md, ENRICH_BOT_SCRIPTED, out)) {
            pcre2_match_data_free(md);
            return;
        }
        enrich_trigram_scan(agent, len, &set);
        for (size_t i = 0; i < b->n_patterns; i++) {
            const struct pattern *p = &b->patterns[i];

            if (enrich_trigram_any(&set, p->trigrams, p->n_trigrams) &&
                enrich_regex_match(&b->env, p->code, agent, len, md) > 0) {
                set_verdict(out, ENRICH_BOT_CRAWLER, p->text, strlen(p->text));
                pcre2_match_data_free(md);
                return;
            }
        }
        pcre2_match_data_free(md);
    }
    /* Without match data (no memory) the regex checks are skipped; uap's verdict stays. */
    if (device_family != NULL && strcmp(device_family, "Spider") == 0) {
        bool has_family = ua_family != NULL && strcmp(ua_family, "Other") != 0;

        set_verdict(out, ENRICH_BOT_SPIDER, ua_family, has_family ? strlen(ua_family) : 0);
    }
}

void enrich_bots_check_brand(const char *brand, struct enrich_bot_verdict *out)
{
    if (out->kind == ENRICH_BOT_NONE && brand != NULL && strstr(brand, "Headless") != NULL) {
        set_verdict(out, ENRICH_BOT_HEADLESS, brand, strlen(brand));
    }
}

static int cmp_asn(const void *key, const void *item)
{
    uint32_t a = *(const uint32_t *)key;
    uint32_t b = ((const struct hosting_asn *)item)->asn;

    return a < b ? -1 : a > b ? 1 : 0;
}

void enrich_bots_check_asn(uint32_t asn, struct enrich_bot_verdict *out)
{
    const struct hosting_asn *h;
    char detail[64];

    if (out->kind != ENRICH_BOT_NONE || asn == 0) {
        return;
    }
    h = bsearch(&asn, hosting_asns, sizeof(hosting_asns) / sizeof(hosting_asns[0]),
                sizeof(hosting_asns[0]), cmp_asn);
    if (h != NULL) {
        int n = snprintf(detail, sizeof(detail), "AS%u %s", (unsigned)asn, h->name);

        set_verdict(out, ENRICH_BOT_DATACENTER, detail, (size_t)n);
    }
}

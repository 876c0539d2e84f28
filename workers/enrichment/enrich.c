/*
 * The facade: settings tables, the per-agent cache in front of ua-parser and the agent-based
 * bot checks, the client-hint refinements, and the result's JSON form.
 */
#include "enrich.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc.h"
#include "bots.h"
#include "cache.h"
#include "enrich_int.h"
#include "geo.h"
#include "ua.h"

/* Shards of the agent cache (each has its own lock). */
#define CACHE_SHARDS 8

const struct sl_cfg_opt enrich_cfg_opts[] = {
    {.key = "SLUICE_GEOIP_ASN_DB", .type = SL_CFG_STRING, .def = "",
     .offset = offsetof(struct enrich_settings, asn_db),
     .desc = "MaxMind/DB-IP ASN .mmdb (GeoLite2-ASN) for the asn and as_org columns and "
             "datacenter bot flags; empty: off."},
    {.key = "SLUICE_CRAWLER_PATTERNS", .type = SL_CFG_STRING, .def = "",
     .offset = offsetof(struct enrich_settings, crawler_patterns),
     .desc = "crawler-user-agents.json (npm crawler-user-agents) for bot detection; empty: "
             "only the built-in markers and ua-parser's Spider device."},
    {.key = "SLUICE_UA_CACHE_ENTRIES", .type = SL_CFG_INT, .def = "100000", .min = 0,
     .max = 10000000, .offset = offsetof(struct enrich_settings, ua_cache_entries),
     .desc = "User agents whose answer the LRU cache keeps (a few hundred bytes each); 0: no "
             "cache."},
    {.key = "SLUICE_GEOIP_RELOAD_S", .type = SL_CFG_INT, .def = "60", .min = 0, .max = 86400,
     .offset = offsetof(struct enrich_settings, geoip_reload_s),
     .desc = "How often the GeoIP database files are checked for a new version, which is "
             "swapped in without a restart; 0: never."},
};
const size_t enrich_cfg_n_opts = sizeof(enrich_cfg_opts) / sizeof(enrich_cfg_opts[0]);

const struct sl_cfg_opt enrich_paths_cfg_opts[] = {
    {.key = "SLUICE_GEOIP_DB", .type = SL_CFG_STRING, .def = "",
     .offset = offsetof(struct enrich_paths, geoip_db),
     .desc = "MaxMind/DB-IP .mmdb city database for GeoIP enrichment; empty: off."},
    {.key = "SLUICE_UA_REGEXES", .type = SL_CFG_STRING, .def = "",
     .offset = offsetof(struct enrich_paths, ua_regexes),
     .desc = "uap-core regexes.yaml for user-agent parsing; empty: off."},
};
const size_t enrich_paths_cfg_n_opts =
    sizeof(enrich_paths_cfg_opts) / sizeof(enrich_paths_cfg_opts[0]);

const struct sl_cfg_opt enrich_config_cfg_opts[] = {ENRICH_CONFIG_OPTS(0)};
const size_t enrich_config_cfg_n_opts =
    sizeof(enrich_config_cfg_opts) / sizeof(enrich_config_cfg_opts[0]);
_Static_assert(sizeof(enrich_config_cfg_opts) / sizeof(enrich_config_cfg_opts[0]) ==
                   ENRICH_CONFIG_N_OPTS,
               "ENRICH_CONFIG_N_OPTS counts ENRICH_CONFIG_OPTS");

/* What the cache keeps per agent. The parse goes last: only its used text is stored. */
struct agent_answer {
    struct enrich_bot_verdict bot;
    struct enrich_ua_result ua;
};

struct enrich {
    struct enrich_geo *geo;
    struct enrich_ua *ua;          /* NULL when off or broken */
    struct enrich_bots *bots;
    struct enrich_cache *cache;
    char ua_path[512];
    char ua_error[SL_ERR_MSG_MAX];
    char crawlers_path[512];
    char crawlers_error[SL_ERR_MSG_MAX];
    char version_tail[80];         /* ",ua=...,crawlers=...,rules=N" */
    int64_t files_mtime_s;         /* newest mtime of regexes.yaml and the crawler list as
                                    * loaded; 0 when neither is */
    atomic_uint_fast64_t n_lookups;
    atomic_uint_fast64_t n_truncated;
    atomic_uint_fast64_t n_gave_up;
    atomic_uint_fast64_t n_failed_allocations;
};

const char *enrich_part_state_name(enum enrich_part_state state)
{
    switch (state) {
    case ENRICH_PART_OFF: return "off";
    case ENRICH_PART_OK: return "ok";
    case ENRICH_PART_DEGRADED: return "degraded";
    case ENRICH_PART_ERROR: return "error";
    }
    return "error";
}

/* ---- create / destroy -------------------------------------------------------------- */

static bool is_set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* Folds the modification time of a file that loaded into e->files_mtime_s. */
static void note_mtime(struct enrich *e, const char *path)
{
    struct stat st;

    if (stat(path, &st) == 0 && (int64_t)st.st_mtime > e->files_mtime_s) {
        e->files_mtime_s = (int64_t)st.st_mtime;
    }
}

int enrich_create(const struct enrich_settings *s, const char *geoip_db, const char *ua_regexes,
                  int64_t now_s, struct enrich **out, struct sl_err *err)
{
    struct enrich *e = sl_calloc(1, sizeof(*e));
    struct enrich_ua_info ua_info;
    struct enrich_bots_info bots_info;
    struct sl_err why;
    int rc;

    *out = NULL;
    if (e == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory creating enrichment");
    }
    rc = enrich_geo_open(geoip_db, s->asn_db, s->geoip_reload_s, now_s, &e->geo);
    if (rc == 0) {
        rc = enrich_bots_create(&e->bots, err);
    }
    if (rc == 0) {
        rc = enrich_cache_create((size_t)s->ua_cache_entries, CACHE_SHARDS, &e->cache);
    }
    if (rc != 0) {
        enrich_destroy(e);
        return sl_err_set(err, SL_ENOMEM, "out of memory creating enrichment");
    }
    if (is_set(ua_regexes)) {
        enrich_copy(e->ua_path, sizeof(e->ua_path), ua_regexes, strlen(ua_regexes));
        sl_err_clear(&why);
        rc = enrich_ua_create(ua_regexes, &e->ua, &why);
        if (rc == SL_ENOMEM) {
            enrich_destroy(e);
            return sl_err_set(err, SL_ENOMEM, "out of memory loading %s", ua_regexes);
        }
        if (rc != 0) {
            snprintf(e->ua_error, sizeof(e->ua_error), "%s", why.msg);
        }
        else {
            note_mtime(e, ua_regexes);
        }
    }
    if (is_set(s->crawler_patterns)) {
        enrich_copy(e->crawlers_path, sizeof(e->crawlers_path), s->crawler_patterns,
                    strlen(s->crawler_patterns));
        sl_err_clear(&why);
        rc = enrich_bots_load_crawlers(e->bots, s->crawler_patterns, &why);
        if (rc == SL_ENOMEM) {
            enrich_destroy(e);
            return sl_err_set(err, SL_ENOMEM, "out of memory loading %s", s->crawler_patterns);
        }
        if (rc != 0) {
            snprintf(e->crawlers_error, sizeof(e->crawlers_error), "%s", why.msg);
        }
        else {
            note_mtime(e, s->crawler_patterns);
        }
    }
    if (e->ua != NULL) {
        enrich_ua_info(e->ua, &ua_info);
    }
    enrich_bots_info(e->bots, &bots_info);
    snprintf(e->version_tail, sizeof(e->version_tail), ",ua=%.12s,crawlers=%.12s,rules=%d",
             e->ua != NULL ? ua_info.hash_hex : "-",
             bots_info.hash_hex[0] != '\0' ? bots_info.hash_hex : "-",
             ENRICH_BOTS_RULES_VERSION);
    *out = e;
    return 0;
}

void enrich_destroy(struct enrich *e)
{
    if (e == NULL) {
        return;
    }
    enrich_cache_destroy(e->cache);
    enrich_bots_destroy(e->bots);
    enrich_ua_destroy(e->ua);
    enrich_geo_close(e->geo);
    sl_free(e);
}

int enrich_reload(struct enrich *e, int64_t now_s, bool force, struct sl_err *err)
{
    return enrich_geo_reload(e->geo, now_s, force, err);
}

/* ---- per-agent answers ------------------------------------------------------------- */

static size_t answer_size(const struct agent_answer *a)
{
    return offsetof(struct agent_answer, ua) + enrich_ua_result_size(&a->ua);
}

/* The parse and agent-based bot verdict of agent[0..len), from the cache or computed (and
 * then cached). Returns 0 or SL_ENOMEM (out is complete either way). */
static int agent_answer(struct enrich *e, const char *agent, size_t len, struct agent_answer *out)
{
    char key_buf[ENRICH_UA_MAX_BYTES + 2];
    const char *key = agent;
    size_t key_len = enrich_utf8_cut(agent, len, ENRICH_UA_MAX_BYTES);
    size_t got = 0;
    int rc = 0;

    /* Only the first MAX_BYTES are read, so they (and a mark that there was more) are the
     * key: a flood of long agents cannot make the cache hold more than that per entry. */
    if (key_len < len) {
        memcpy(key_buf, agent, key_len);
        key_buf[key_len++] = '\0';
        key_buf[key_len++] = 'T';
        key = key_buf;
    }
    if (enrich_cache_get(e->cache, key, key_len, out, sizeof(*out), &got)) {
        return 0;
    }
    if (e->ua != NULL) {
        rc = enrich_ua_parse(e->ua, agent, len, ENRICH_UA_SECTION_ALL, &out->ua);
    }
    else {
        memset(&out->ua, 0, offsetof(struct enrich_ua_result, text));
        for (int f = 0; f < ENRICH_UA_N_FIELDS; f++) {
            out->ua.off[f] = ENRICH_UA_NONE;
        }
        out->ua.is_truncated = len > ENRICH_UA_MAX_BYTES;
    }
    enrich_bots_check_agent(e->bots, agent, len, enrich_ua_get(&out->ua, ENRICH_DEVICE_FAMILY),
                            enrich_ua_get(&out->ua, ENRICH_UA_FAMILY), &out->bot);
    if (out->ua.is_truncated) {
        atomic_fetch_add(&e->n_truncated, 1);
    }
    if (out->ua.n_gave_up > 0) {
        atomic_fetch_add(&e->n_gave_up, out->ua.n_gave_up);
    }
    /* A parse that lacked memory is not remembered: the next lookup tries again. */
    if (rc == 0 && enrich_cache_put(e->cache, key, key_len, out, answer_size(out)) != 0) {
        rc = SL_ENOMEM;
    }
    return rc;
}

/* ---- result assembly --------------------------------------------------------------- */

static void set_str(char *dst, size_t cap, const char *src)
{
    enrich_copy(dst, cap, src, src != NULL ? strlen(src) : 0);
}

/* "a.b.c.d" from the defined fields first..first+n-1, up to the first undefined one. */
static void join_version(char *dst, size_t cap, const struct enrich_ua_result *r,
                         enum enrich_ua_field first, int n)
{
    size_t len = 0;

    dst[0] = '\0';
    for (int i = 0; i < n; i++) {
        const char *v = enrich_ua_get(r, (enum enrich_ua_field)(first + i));
        size_t vlen;

        if (v == NULL) {
            break;
        }
        vlen = strlen(v);
        if (len + (i > 0 ? 1 : 0) + vlen >= cap) {
            break;
        }
        if (i > 0) {
            dst[len++] = '.';
        }
        memcpy(dst + len, v, vlen);
        len += vlen;
        dst[len] = '\0';
    }
}

static void fill_agent(struct enrich_result *out, const struct enrich_ua_result *r, bool has_ua)
{
    if (!has_ua) {
        return;
    }
    set_str(out->browser, sizeof(out->browser), enrich_ua_get(r, ENRICH_UA_FAMILY));
    join_version(out->browser_version, sizeof(out->browser_version), r, ENRICH_UA_MAJOR, 4);
    set_str(out->os, sizeof(out->os), enrich_ua_get(r, ENRICH_OS_FAMILY));
    join_version(out->os_version, sizeof(out->os_version), r, ENRICH_OS_MAJOR, 4);
    set_str(out->device, sizeof(out->device), enrich_ua_get(r, ENRICH_DEVICE_FAMILY));
    set_str(out->device_brand, sizeof(out->device_brand), enrich_ua_get(r, ENRICH_DEVICE_BRAND));
    set_str(out->device_model, sizeof(out->device_model), enrich_ua_get(r, ENRICH_DEVICE_MODEL));
}

/* Whether family is family_hint or a more specific kind of it ("Chrome Mobile" for
 * "Chrome"). */
static bool is_kind_of(const char *family, const char *family_hint)
{
    size_t n = strlen(family_hint);

    return strncmp(family, family_hint, n) == 0 && (family[n] == '\0' || family[n] == ' ');
}

/* Families the User-Agent string gives to any Chromium that does not name itself there. */
static bool is_generic_chromium(const char *family)
{
    static const char *const generic[] = {"", "Other", "Chrome", "Chromium", "Chrome Mobile",
                                          "Chrome Mobile WebView", "HeadlessChrome"};

    for (size_t i = 0; i < sizeof(generic) / sizeof(generic[0]); i++) {
        if (strcmp(family, generic[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* The leading number of a version ("124" of "124.0.6367.91"). */
static long version_major(const char *v)
{
    return strtol(v, NULL, 10);
}

static void refine_browser(struct enrich_result *out, const struct enrich_hints *h,
                           const struct enrich_hints_view *v)
{
    bool is_same = is_kind_of(out->browser, v->browser);

    if (v->browser[0] == '\0' || (!is_same && !is_generic_chromium(out->browser))) {
        /* An app the agent names (a WebView in Facebook, say) says more than the brand. */
        return;
    }
    if (!is_same) {
        set_str(out->browser, sizeof(out->browser), v->browser);
        set_str(out->browser_version, sizeof(out->browser_version), v->browser_version);
        return;
    }
    /* The agent's version is reduced to "124.0.0.0"; the full list knows better, and a
     * short list at least knows the major version. */
    if (v->browser_version[0] != '\0' &&
        (h->has_full_versions ||
         version_major(v->browser_version) != version_major(out->browser_version))) {
        set_str(out->browser_version, sizeof(out->browser_version), v->browser_version);
    }
}

static void refine_os(struct enrich_result *out, const struct enrich_hints_view *v)
{
    bool is_same;

    if (v->os[0] == '\0') {
        return;
    }
    is_same = strcmp(out->os, v->os) == 0;
    set_str(out->os, sizeof(out->os), v->os);
    if (v->os_version[0] != '\0') {
        set_str(out->os_version, sizeof(out->os_version), v->os_version);
    }
    else if (!is_same) {
        out->os_version[0] = '\0';
    }
}

/* Agents for ua-parser's device rules built from the model hint, shaped like the Android
 * agents those rules are written for: first as Chrome's reduced agents look, then with the
 * " Build/" that older agents carried, which some rules need. */
static size_t model_agent(const struct enrich_hints_view *v, bool with_build, char *buf,
                          size_t cap)
{
    int n = snprintf(buf, cap, "Mozilla/5.0 (Linux; Android %s; %s%s) AppleWebKit/537.36 "
                     "(KHTML, like Gecko) Chrome/120.0.0.0 %sSafari/537.36",
                     v->os_version[0] != '\0' ? v->os_version : "10", v->model,
                     with_build ? " Build/" : "", v->is_mobile ? "Mobile " : "");

    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

/* Whether ua-parser made a known device of a model agent. */
static bool is_known_device(const struct enrich_ua_result *r)
{
    const char *family = enrich_ua_get(r, ENRICH_DEVICE_FAMILY);
    const char *brand = enrich_ua_get(r, ENRICH_DEVICE_BRAND);

    return family != NULL && strcmp(family, "Other") != 0 && strncmp(family, "Generic", 7) != 0 &&
           brand != NULL && strncmp(brand, "Generic", 7) != 0;
}

static int refine_device(struct enrich *e, struct enrich_result *out,
                         const struct enrich_hints_view *v)
{
    struct agent_answer a;
    char agent[256];
    int rc = 0;

    if (v->model[0] != '\0') {
        for (int pass = 0; pass < 2 && e->ua != NULL; pass++) {
            int one = agent_answer(e, agent, model_agent(v, pass == 1, agent, sizeof(agent)), &a);

            rc = rc != 0 ? rc : one;
            if (is_known_device(&a.ua)) {
                set_str(out->device, sizeof(out->device),
                        enrich_ua_get(&a.ua, ENRICH_DEVICE_FAMILY));
                set_str(out->device_brand, sizeof(out->device_brand),
                        enrich_ua_get(&a.ua, ENRICH_DEVICE_BRAND));
                set_str(out->device_model, sizeof(out->device_model),
                        enrich_ua_get(&a.ua, ENRICH_DEVICE_MODEL));
                return rc;
            }
        }
        /* A model the rules do not know is still the best name there is. */
        set_str(out->device, sizeof(out->device), v->model);
        out->device_brand[0] = '\0';
        set_str(out->device_model, sizeof(out->device_model), v->model);
        return rc;
    }
    if (v->is_mobile && (out->device[0] == '\0' || strcmp(out->device, "Other") == 0)) {
        set_str(out->device, sizeof(out->device), "Generic Smartphone");
        set_str(out->device_brand, sizeof(out->device_brand), "Generic");
        set_str(out->device_model, sizeof(out->device_model), "Smartphone");
    }
    return rc;
}

/* Appends the decimal digits of v at p; returns the new end. */
static char *put_u64(char *p, uint64_t v)
{
    char tmp[24];
    int n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    while (n > 0) {
        *p++ = tmp[--n];
    }
    return p;
}

static void set_version(struct enrich *e, struct enrich_result *out, uint64_t city_epoch,
                        uint64_t asn_epoch)
{
    char *p = out->enrichment_version;
    size_t tail = strlen(e->version_tail);

    memcpy(p, "geo=", 4);
    p += 4;
    if (city_epoch > 0) {
        p = put_u64(p, city_epoch);
    }
    else {
        *p++ = '-';
    }
    memcpy(p, ",asn=", 5);
    p += 5;
    if (asn_epoch > 0) {
        p = put_u64(p, asn_epoch);
    }
    else {
        *p++ = '-';
    }
    /* 4 + 20 + 5 + 20 digits leave room for the tail (under 80 bytes) in 96. */
    if ((size_t)(p - out->enrichment_version) + tail < sizeof(out->enrichment_version)) {
        memcpy(p, e->version_tail, tail + 1);
    }
    else {
        *p = '\0';
    }
}

uint32_t enrich_version_id(struct enrich *e)
{
    int64_t v = enrich_geo_data_mtime_s(e->geo);

    v = v > e->files_mtime_s ? v : e->files_mtime_s;
    v = v > ENRICH_BOTS_RULES_EPOCH ? v : ENRICH_BOTS_RULES_EPOCH;
    return v > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

int enrich_check_agent(struct enrich *e, const char *agent, struct enrich_bot_verdict *out)
{
    struct agent_answer a;
    int rc = agent_answer(e, agent != NULL ? agent : "", agent != NULL ? strlen(agent) : 0, &a);

    *out = a.bot;
    return rc;
}

int enrich_lookup(struct enrich *e, const char *ip, const char *agent,
                  const struct enrich_hints *hints, struct enrich_result *out)
{
    struct enrich_geo_info gi;
    struct agent_answer a;
    struct enrich_bot_verdict bot;
    size_t len = agent != NULL ? strlen(agent) : 0;
    int rc, rc2 = 0;

    memset(out, 0, sizeof(*out));
    atomic_fetch_add(&e->n_lookups, 1);

    /* Read before the lookup: a database swapped in between gives newer data under the
     * older number (the row is redone later), never older data under the newer one. */
    out->enrichment_version_id = enrich_version_id(e);
    enrich_geo_lookup(e->geo, ip, &gi);
    out->geo_status = enrich_geo_status_name(gi.status);
    memcpy(out->country_code, gi.country_code, sizeof(out->country_code));
    memcpy(out->country, gi.country, sizeof(out->country));
    memcpy(out->region, gi.region, sizeof(out->region));
    memcpy(out->city, gi.city, sizeof(out->city));
    memcpy(out->postal, gi.postal, sizeof(out->postal));
    memcpy(out->geo_timezone, gi.timezone, sizeof(out->geo_timezone));
    out->has_location = gi.has_location;
    out->latitude = gi.latitude;
    out->longitude = gi.longitude;
    out->accuracy_radius = gi.accuracy_radius_km;
    out->asn = gi.asn;
    memcpy(out->as_org, gi.as_org, sizeof(out->as_org));

    rc = agent_answer(e, agent != NULL ? agent : "", len, &a);
    fill_agent(out, &a.ua, e->ua != NULL);
    bot = a.bot;
    if (hints != NULL && !enrich_hints_is_empty(hints)) {
        struct enrich_hints_view v;

        enrich_hints_view(hints, &v);
        if (e->ua != NULL) {
            refine_browser(out, hints, &v);
            refine_os(out, &v);
            rc2 = refine_device(e, out, &v);
        }
        for (size_t i = 0; i < hints->n_brands; i++) {
            enrich_bots_check_brand(hints->brands[i].name, &bot);
        }
    }
    enrich_bots_check_asn(gi.asn, &bot);
    out->is_bot = bot.kind != ENRICH_BOT_NONE;
    set_str(out->bot_reason, sizeof(out->bot_reason), bot.reason);
    set_version(e, out, gi.city_build_epoch, gi.asn_build_epoch);
    if (rc == 0) {
        rc = rc2;
    }
    if (rc != 0) {
        atomic_fetch_add(&e->n_failed_allocations, 1);
    }
    return rc;
}

/* ---- health, stats, JSON ----------------------------------------------------------- */

static void geo_part(struct enrich *e, enum enrich_geo_db which, const char *name,
                     struct enrich_part_status *p)
{
    struct enrich_geo_db_status st;

    enrich_geo_db_status(e->geo, which, &st);
    p->name = name;
    memcpy(p->path, st.path, sizeof(p->path));
    memcpy(p->error, st.error, sizeof(p->error));
    if (st.is_loaded) {
        snprintf(p->version, sizeof(p->version), "%llu", (unsigned long long)st.build_epoch);
    }
    p->state = !st.is_configured ? ENRICH_PART_OFF
               : !st.is_loaded   ? ENRICH_PART_ERROR
               : st.error[0] != '\0' ? ENRICH_PART_DEGRADED
                                     : ENRICH_PART_OK;
}

void enrich_health(struct enrich *e, struct enrich_health *out)
{
    struct enrich_part_status *ua = &out->parts[ENRICH_PART_UA];
    struct enrich_part_status *cr = &out->parts[ENRICH_PART_CRAWLERS];
    struct enrich_bots_info bi;

    memset(out, 0, sizeof(*out));
    geo_part(e, ENRICH_GEO_DB_CITY, "geoip", &out->parts[ENRICH_PART_GEOIP]);
    geo_part(e, ENRICH_GEO_DB_ASN, "asn", &out->parts[ENRICH_PART_ASN]);

    ua->name = "ua";
    memcpy(ua->path, e->ua_path, sizeof(ua->path));
    memcpy(ua->error, e->ua_error, sizeof(ua->error));
    ua->state = e->ua_path[0] == '\0' ? ENRICH_PART_OFF
                : e->ua != NULL      ? ENRICH_PART_OK
                                     : ENRICH_PART_ERROR;
    if (e->ua != NULL) {
        struct enrich_ua_info ui;

        enrich_ua_info(e->ua, &ui);
        snprintf(ua->version, sizeof(ua->version), "%s", ui.hash_hex);
    }

    enrich_bots_info(e->bots, &bi);
    cr->name = "crawlers";
    memcpy(cr->path, e->crawlers_path, sizeof(cr->path));
    memcpy(cr->error, e->crawlers_error, sizeof(cr->error));
    cr->state = e->crawlers_path[0] == '\0'   ? ENRICH_PART_OFF
                : e->crawlers_error[0] == '\0' ? ENRICH_PART_OK
                                               : ENRICH_PART_ERROR;
    snprintf(cr->version, sizeof(cr->version), "%s", bi.hash_hex);

    out->is_ok = true;
    for (int i = 0; i < ENRICH_N_PARTS; i++) {
        if (out->parts[i].state == ENRICH_PART_ERROR ||
            out->parts[i].state == ENRICH_PART_DEGRADED) {
            out->is_ok = false;
        }
    }
}

void enrich_stats(struct enrich *e, struct enrich_stats *out)
{
    struct enrich_cache_stats cs;

    enrich_cache_stats(e->cache, &cs);
    memset(out, 0, sizeof(*out));
    out->lookups = atomic_load(&e->n_lookups);
    out->cache_hits = cs.hits;
    out->cache_misses = cs.misses;
    out->cache_evictions = cs.evictions;
    out->cache_entries = cs.entries;
    out->cache_bytes = cs.bytes;
    out->ua_truncated = atomic_load(&e->n_truncated);
    out->ua_gave_up = atomic_load(&e->n_gave_up);
    out->geo_errors = enrich_geo_n_errors(e->geo);
    out->failed_allocations = atomic_load(&e->n_failed_allocations);
}

json_t *enrich_result_to_json(const struct enrich_result *r)
{
    json_t *o = json_object();
    int bad = 0;

    if (o == NULL) {
        return NULL;
    }
#define PUT(key, value) bad |= json_object_set_new(o, key, value)
    PUT("country_code", json_string(r->country_code));
    PUT("country", json_string(r->country));
    PUT("region", json_string(r->region));
    PUT("city", json_string(r->city));
    PUT("postal", json_string(r->postal));
    PUT("latitude", r->has_location ? json_real(r->latitude) : json_null());
    PUT("longitude", r->has_location ? json_real(r->longitude) : json_null());
    PUT("accuracy_radius", r->accuracy_radius > 0 ? json_integer(r->accuracy_radius)
                                                  : json_null());
    PUT("geo_timezone", json_string(r->geo_timezone));
    PUT("asn", r->asn > 0 ? json_integer((json_int_t)r->asn) : json_null());
    PUT("as_org", json_string(r->as_org));
    PUT("geo_status", json_string(r->geo_status != NULL ? r->geo_status : ""));
    PUT("browser", json_string(r->browser));
    PUT("browser_version", json_string(r->browser_version));
    PUT("os", json_string(r->os));
    PUT("os_version", json_string(r->os_version));
    PUT("device", json_string(r->device));
    PUT("device_brand", json_string(r->device_brand));
    PUT("device_model", json_string(r->device_model));
    PUT("is_bot", json_boolean(r->is_bot));
    PUT("bot_reason", json_string(r->bot_reason));
    PUT("enrichment_version", json_string(r->enrichment_version));
    PUT("enrichment_version_id", json_integer((json_int_t)r->enrichment_version_id));
#undef PUT
    if (bad != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *enrich_health_to_json(const struct enrich_health *h)
{
    json_t *o = json_object();
    int bad = 0;

    if (o == NULL) {
        return NULL;
    }
    bad |= json_object_set_new(o, "ok", json_boolean(h->is_ok));
    for (int i = 0; i < ENRICH_N_PARTS; i++) {
        const struct enrich_part_status *p = &h->parts[i];

        bad |= json_object_set_new(
            o, p->name,
            json_pack("{s:s, s:s, s:s, s:s}", "state", enrich_part_state_name(p->state), "path",
                      p->path, "version", p->version, "error", p->error));
    }
    if (bad != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

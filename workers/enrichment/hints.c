/*
 * Client hints: a small structured-header reader (lists of strings with parameters, strings,
 * booleans), the JSON shapes SDKs send, and the mapping to ua-parser's names.
 */
#include "hints.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "enrich_int.h"

/* Brand names to ua-parser's browser families; other brands are used as they are. */
static const struct {
    const char *brand;
    const char *family;
} brand_families[] = {
    {"Google Chrome", "Chrome"},
    {"Chromium", "Chromium"},
    {"Microsoft Edge", "Edge"},
    {"Opera", "Opera"},
    {"Opera GX", "Opera"},
    {"Brave", "Brave"},
    {"Vivaldi", "Vivaldi"},
    {"YaBrowser", "Yandex Browser"},
    {"Yandex", "Yandex Browser"},
    {"Samsung Internet", "Samsung Internet"},
    {"HeadlessChrome", "HeadlessChrome"},
    {"Android WebView", "Chrome Mobile WebView"},
};

/* Platforms to ua-parser's OS families. */
static const struct {
    const char *platform;
    const char *family;
} platform_families[] = {
    {"Windows", "Windows"},     {"macOS", "Mac OS X"},        {"Linux", "Linux"},
    {"Android", "Android"},     {"Chrome OS", "Chrome OS"},   {"Chromium OS", "Chrome OS"},
    {"iOS", "iOS"},             {"Fuchsia", "Fuchsia"},
};

void enrich_hints_init(struct enrich_hints *h)
{
    memset(h, 0, sizeof(*h));
    h->mobile = -1;
}

bool enrich_hints_is_empty(const struct enrich_hints *h)
{
    return h->n_brands == 0 && h->platform[0] == '\0' && h->platform_version[0] == '\0' &&
           h->mobile < 0 && h->model[0] == '\0';
}

bool enrich_hints_is_grease(const char *brand)
{
    size_t n = strlen(brand);

    /* Chromium's GREASE brands are "Not" + filler + "A" + filler + "Brand", the filler
     * drawn from " ()-./:;=?_". */
    return n >= 9 && strncmp(brand, "Not", 3) == 0 && strcmp(brand + n - 5, "Brand") == 0;
}

/* ---- structured-header reading ----------------------------------------------------- */

static const char *skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    return p;
}

/* Drops an incomplete UTF-8 sequence at the end of s[0..n) (left by a cut). */
static size_t drop_partial_utf8(const char *s, size_t n)
{
    size_t start = n;
    size_t want;
    unsigned char lead;

    while (start > 0 && ((unsigned char)s[start - 1] & 0xC0) == 0x80) {
        start--;
    }
    if (start == 0) {
        return n;
    }
    lead = (unsigned char)s[start - 1];
    want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return n - (start - 1) < want ? start - 1 : n;
}

/*
 * Reads a string at p: a quoted sf-string (with \" and \\ escapes) or, leniently, bare text up
 * to one of stop. Copies it into dst. Returns the position after it, or NULL when a quote
 * does not close.
 */
static const char *read_string(const char *p, char *dst, size_t cap, const char *stop)
{
    bool is_cut = false;
    size_t n = 0;

    if (*p == '"') {
        p++;
        while (*p != '"') {
            if (*p == '\0') {
                return NULL;
            }
            if (*p == '\\' && p[1] != '\0') {
                p++;
            }
            if (n + 1 < cap) {
                dst[n++] = *p;
            }
            else {
                is_cut = true;
            }
            p++;
        }
        p++;
    }
    else {
        while (*p != '\0' && strchr(stop, *p) == NULL) {
            if (n + 1 < cap) {
                dst[n++] = *p;
            }
            else {
                is_cut = true;
            }
            p++;
        }
        while (n > 0 && (dst[n - 1] == ' ' || dst[n - 1] == '\t')) {
            n--;
        }
    }
    if (is_cut) {
        n = drop_partial_utf8(dst, n);
    }
    dst[n] = '\0';
    return p;
}

/* Parses a brand list (Sec-CH-UA or its full version list) into h. */
static int parse_brand_list(struct enrich_hints *h, const char *value, bool is_full,
                            struct sl_err *err)
{
    struct enrich_hints_brand brands[ENRICH_HINTS_MAX_BRANDS];
    size_t n = 0;
    const char *p = skip_ows(value);

    while (*p != '\0') {
        struct enrich_hints_brand b;

        memset(&b, 0, sizeof(b));
        p = read_string(p, b.name, sizeof(b.name), ";,");
        if (p == NULL) {
            return sl_err_set(err, SL_EINVAL, "brand list '%s': a quoted brand does not close",
                              value);
        }
        p = skip_ows(p);
        while (*p == ';') {
            char key[16];
            size_t k = 0;

            p = skip_ows(p + 1);
            while (*p != '\0' && *p != '=' && *p != ';' && *p != ',' && k + 1 < sizeof(key)) {
                key[k++] = *p++;
            }
            key[k] = '\0';
            if (*p == '=') {
                char val[32];

                p = read_string(p + 1, val, sizeof(val), ";,");
                if (p == NULL) {
                    return sl_err_set(err, SL_EINVAL, "brand list '%s': a quoted version does "
                                      "not close", value);
                }
                if (strcmp(key, "v") == 0) {
                    snprintf(b.version, sizeof(b.version), "%s", val);
                }
            }
            p = skip_ows(p);
        }
        if (*p != '\0' && *p != ',') {
            return sl_err_set(err, SL_EINVAL, "brand list '%s': expected ',' after a brand",
                              value);
        }
        if (*p == ',') {
            p = skip_ows(p + 1);
        }
        if (b.name[0] != '\0' && !enrich_hints_is_grease(b.name) &&
            n < ENRICH_HINTS_MAX_BRANDS) {
            brands[n++] = b;
        }
    }
    /* The full list is the better one: it replaces a short list, never the other way. */
    if (is_full || !h->has_full_versions) {
        memcpy(h->brands, brands, n * sizeof(brands[0]));
        h->n_brands = n;
        h->has_full_versions = is_full;
    }
    return 0;
}

static int parse_string_into(char *dst, size_t cap, const char *name, const char *value,
                             struct sl_err *err)
{
    const char *end = read_string(skip_ows(value), dst, cap, "");

    if (end == NULL || *skip_ows(end) != '\0') {
        dst[0] = '\0';
        return sl_err_set(err, SL_EINVAL, "%s '%s': expected a quoted string", name, value);
    }
    return 0;
}

static int parse_mobile(struct enrich_hints *h, const char *value, struct sl_err *err)
{
    const char *v = skip_ows(value);

    if (strncmp(v, "?1", 2) == 0 || strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0) {
        h->mobile = 1;
    }
    else if (strncmp(v, "?0", 2) == 0 || strcmp(v, "0") == 0 || strcasecmp(v, "false") == 0) {
        h->mobile = 0;
    }
    else {
        return sl_err_set(err, SL_EINVAL, "Sec-CH-UA-Mobile '%s': expected ?1 or ?0", value);
    }
    return 0;
}

int enrich_hints_set_header(struct enrich_hints *h, const char *name, const char *value,
                            struct sl_err *err)
{
    if (strcasecmp(name, "Sec-CH-UA") == 0) {
        return parse_brand_list(h, value, false, err);
    }
    if (strcasecmp(name, "Sec-CH-UA-Full-Version-List") == 0) {
        return parse_brand_list(h, value, true, err);
    }
    if (strcasecmp(name, "Sec-CH-UA-Platform") == 0) {
        return parse_string_into(h->platform, sizeof(h->platform), name, value, err);
    }
    if (strcasecmp(name, "Sec-CH-UA-Platform-Version") == 0) {
        return parse_string_into(h->platform_version, sizeof(h->platform_version), name, value,
                                 err);
    }
    if (strcasecmp(name, "Sec-CH-UA-Mobile") == 0) {
        return parse_mobile(h, value, err);
    }
    if (strcasecmp(name, "Sec-CH-UA-Model") == 0) {
        return parse_string_into(h->model, sizeof(h->model), name, value, err);
    }
    return 0;
}

/* ---- JSON -------------------------------------------------------------------------- */

/* userAgentData's [{brand, version}, ...]. */
static int json_brands(struct enrich_hints *h, const char *key, const json_t *arr, bool is_full,
                       struct sl_err *err)
{
    size_t n = 0;

    if (!json_is_array(arr)) {
        return sl_err_set(err, SL_EINVAL, "hints.%s: expected an array of {\"brand\", "
                          "\"version\"} objects", key);
    }
    if (!is_full && h->has_full_versions) {
        return 0;
    }
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *item = json_array_get(arr, i);
        const char *brand = json_string_value(json_object_get(item, "brand"));
        const char *version = json_string_value(json_object_get(item, "version"));

        if (brand == NULL) {
            return sl_err_set(err, SL_EINVAL, "hints.%s[%zu]: expected {\"brand\": string, "
                              "\"version\": string}", key, i);
        }
        if (enrich_hints_is_grease(brand) || n >= ENRICH_HINTS_MAX_BRANDS) {
            continue;
        }
        enrich_copy(h->brands[n].name, sizeof(h->brands[n].name), brand, strlen(brand));
        enrich_copy(h->brands[n].version, sizeof(h->brands[n].version), version,
                    version != NULL ? strlen(version) : 0);
        n++;
    }
    h->n_brands = n;
    h->has_full_versions = is_full;
    return 0;
}

/* A plain string value (userAgentData) copied into dst. */
static int json_plain(char *dst, size_t cap, const char *key, const json_t *v,
                      struct sl_err *err)
{
    if (!json_is_string(v)) {
        return sl_err_set(err, SL_EINVAL, "hints.%s: expected a string", key);
    }
    enrich_copy(dst, cap, json_string_value(v), json_string_length(v));
    return 0;
}

int enrich_hints_from_json(struct enrich_hints *h, const json_t *obj, struct sl_err *err)
{
    const char *key;
    json_t *v;

    if (!json_is_object(obj)) {
        return sl_err_set(err, SL_EINVAL, "hints: expected an object");
    }
    json_object_foreach((json_t *)obj, key, v) {
        int rc = 0;

        if (strncasecmp(key, "Sec-CH-UA", 9) == 0) {
            if (!json_is_string(v)) {
                return sl_err_set(err, SL_EINVAL, "hints.%s: expected the header's text", key);
            }
            rc = enrich_hints_set_header(h, key, json_string_value(v), err);
        }
        else if (strcmp(key, "brands") == 0) {
            rc = json_brands(h, key, v, false, err);
        }
        else if (strcmp(key, "fullVersionList") == 0) {
            rc = json_brands(h, key, v, true, err);
        }
        else if (strcmp(key, "mobile") == 0) {
            if (!json_is_boolean(v)) {
                return sl_err_set(err, SL_EINVAL, "hints.mobile: expected true or false");
            }
            h->mobile = json_is_true(v) ? 1 : 0;
        }
        else if (strcmp(key, "platform") == 0) {
            rc = json_plain(h->platform, sizeof(h->platform), key, v, err);
        }
        else if (strcmp(key, "platformVersion") == 0) {
            rc = json_plain(h->platform_version, sizeof(h->platform_version), key, v, err);
        }
        else if (strcmp(key, "model") == 0) {
            rc = json_plain(h->model, sizeof(h->model), key, v, err);
        }
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* ---- the view ---------------------------------------------------------------------- */

/* Microsoft's platform version to the Windows release ("" when it says nothing). */
static const char *windows_release(const char *platform_version)
{
    char *end = NULL;
    long major = strtol(platform_version, &end, 10);
    long minor = 0;

    if (end == platform_version || major < 0) {
        return "";
    }
    if (*end == '.') {
        minor = strtol(end + 1, NULL, 10);
    }
    if (major >= 13) {
        return "11";
    }
    if (major >= 1) {
        return "10";
    }
    switch (minor) {
    case 1: return "7";
    case 2: return "8";
    case 3: return "8.1";
    default: return "";
    }
}

void enrich_hints_view(const struct enrich_hints *h, struct enrich_hints_view *out)
{
    const struct enrich_hints_brand *pick = NULL;

    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < h->n_brands; i++) {
        if (strcmp(h->brands[i].name, "Chromium") != 0) {
            pick = &h->brands[i];
            break;
        }
        if (pick == NULL) {
            pick = &h->brands[i];
        }
    }
    if (pick != NULL) {
        const char *family = pick->name;

        for (size_t i = 0; i < sizeof(brand_families) / sizeof(brand_families[0]); i++) {
            if (strcmp(pick->name, brand_families[i].brand) == 0) {
                family = brand_families[i].family;
                break;
            }
        }
        snprintf(out->browser, sizeof(out->browser), "%s", family);
        snprintf(out->browser_version, sizeof(out->browser_version), "%s", pick->version);
    }
    for (size_t i = 0; i < sizeof(platform_families) / sizeof(platform_families[0]); i++) {
        if (strcasecmp(h->platform, platform_families[i].platform) == 0) {
            snprintf(out->os, sizeof(out->os), "%s", platform_families[i].family);
            break;
        }
    }
    if (strcmp(out->os, "Windows") == 0) {
        snprintf(out->os_version, sizeof(out->os_version), "%s",
                 windows_release(h->platform_version));
    }
    else if (out->os[0] != '\0' && strcmp(out->os, "Linux") != 0) {
        snprintf(out->os_version, sizeof(out->os_version), "%s", h->platform_version);
    }
    snprintf(out->model, sizeof(out->model), "%s", h->model);
    out->is_mobile = h->mobile == 1;
}

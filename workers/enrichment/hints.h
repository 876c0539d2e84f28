/*
 * User-Agent Client Hints: what Chromium-based browsers say about themselves beside (and
 * more precisely than) their reduced User-Agent string. Parsed here from the request headers
 * (Sec-CH-UA, Sec-CH-UA-Full-Version-List, Sec-CH-UA-Platform, Sec-CH-UA-Platform-Version,
 * Sec-CH-UA-Mobile, Sec-CH-UA-Model; structured-header syntax) or from the JSON an SDK sends
 * (the same header names as keys, or navigator.userAgentData.getHighEntropyValues()'s
 * brands, fullVersionList, platform, platformVersion, mobile, model), and mapped to
 * ua-parser's names:
 *
 *  - browser: the significant brand (GREASE brands such as "Not A;Brand" ignored, "Chromium"
 *    only when nothing else is listed), "Google Chrome" -> "Chrome", "Microsoft Edge" ->
 *    "Edge", ...; with its full version when the full version list is there.
 *  - OS: the platform ("macOS" -> "Mac OS X", "Chrome OS"/"Chromium OS" -> "Chrome OS", ...)
 *    and its version; on Windows the platform version is Microsoft's: 13 and above is
 *    Windows 11, 1 to 10 is Windows 10, 0.1/0.2/0.3 are Windows 7/8/8.1.
 *  - device: the model; mobile ("?1") for a phone without a model.
 *
 * struct enrich_hints is caller-allocated (fixed buffers, no heap); values are copied in.
 */
#ifndef SLUICE_WORKERS_ENRICHMENT_HINTS_H
#define SLUICE_WORKERS_ENRICHMENT_HINTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "err.h"

#define ENRICH_HINTS_MAX_BRANDS 8

struct enrich_hints_brand {
    char name[48];
    char version[32];      /* "124" from Sec-CH-UA, "124.0.6367.91" from the full list */
};

/* Parsed hints; all fields read-only for callers. Empty strings mean "not sent". */
struct enrich_hints {
    struct enrich_hints_brand brands[ENRICH_HINTS_MAX_BRANDS]; /* GREASE brands left out */
    size_t n_brands;
    bool has_full_versions; /* brands came from the full version list */
    char platform[32];
    char platform_version[32];
    int mobile;             /* -1 not sent, 0 "?0", 1 "?1" */
    char model[64];
};

/* The browser, OS and device the hints stand for, in ua-parser's names. Empty: unknown. */
struct enrich_hints_view {
    char browser[48];
    char browser_version[32];
    char os[32];
    char os_version[32];
    char model[64];
    bool is_mobile;
};

/* Empties h (nothing sent). Never fails. */
void enrich_hints_init(struct enrich_hints *h);

/* Whether h holds anything. */
bool enrich_hints_is_empty(const struct enrich_hints *h);

/*
 * Takes one header: name (case-insensitive; unknown Sec-CH-UA-* names are ignored and return
 * 0) and its value (both borrowed). Returns SL_EINVAL with err saying what is wrong when the
 * value does not parse (h keeps what it had for that header).
 */
int enrich_hints_set_header(struct enrich_hints *h, const char *name, const char *value,
                            struct sl_err *err);

/*
 * Takes a JSON object (borrowed): keys are header names (string values), or the
 * userAgentData names (brands/fullVersionList as arrays of {brand, version}, mobile as a
 * boolean, platform, platformVersion, model as strings). Unknown keys are ignored. Returns
 * SL_EINVAL with err naming the key when a value has the wrong type or does not parse.
 */
int enrich_hints_from_json(struct enrich_hints *h, const json_t *obj, struct sl_err *err);

/* What h says, in ua-parser's names. Never fails. */
void enrich_hints_view(const struct enrich_hints *h, struct enrich_hints_view *out);

/* Whether brand is a GREASE brand ("Not A;Brand", "Not/A)Brand", ...). */
bool enrich_hints_is_grease(const char *brand);

#endif

/*
 * The enrichment facade: one call turns an event's IP address, User-Agent string and client
 * hints into the columns the loader stores (struct enrich_result), using GeoIP (geo.h),
 * ua-parser's rules (ua.h), client hints (hints.h), bot detection (bots.h) and an LRU cache
 * of per-agent answers (cache.h), because real traffic repeats a few thousand agents.
 *
 * Anything missing or broken (a database, regexes.yaml, the crawler list) is not fatal: the
 * facade works without it, the affected columns stay empty, and enrich_health says why (the
 * loader logs it at start and /health shows it). GeoIP databases are reloaded by
 * enrich_reload when their files change; regexes.yaml and the crawler list are read at
 * create only.
 *
 * Settings: SLUICE_GEOIP_ASN_DB, SLUICE_CRAWLER_PATTERNS, SLUICE_UA_CACHE_ENTRIES and
 * SLUICE_GEOIP_RELOAD_S are this module's (enrich_cfg_opts). The paths of the city database
 * and regexes.yaml are arguments: sluice-ingest reads SLUICE_GEOIP_DB and SLUICE_UA_REGEXES
 * with its own table, a process without that table uses enrich_paths_cfg_opts (same keys,
 * same meaning; never list both tables in one process).
 *
 * Thread: create, reload and destroy from one thread; lookups from any number of threads,
 * also while a reload runs.
 */
#ifndef SLUICE_WORKERS_ENRICHMENT_ENRICH_H
#define SLUICE_WORKERS_ENRICHMENT_ENRICH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bots.h"
#include "cfg.h"
#include "ch.h"
#include "err.h"
#include "hints.h"

struct enrich;

/* This module's settings. */
struct enrich_settings {
    char *asn_db;             /* SLUICE_GEOIP_ASN_DB: ASN .mmdb; empty: no ASN columns */
    char *crawler_patterns;   /* SLUICE_CRAWLER_PATTERNS: crawler-user-agents.json; empty: off */
    int64_t ua_cache_entries; /* SLUICE_UA_CACHE_ENTRIES: cached agents; 0: no cache */
    int64_t geoip_reload_s;   /* SLUICE_GEOIP_RELOAD_S: look at the database files this often */
};

extern const struct sl_cfg_opt enrich_cfg_opts[];
extern const size_t enrich_cfg_n_opts;

/* SLUICE_GEOIP_DB and SLUICE_UA_REGEXES for processes without ingest's table (the CLI). */
struct enrich_paths {
    char *geoip_db;   /* SLUICE_GEOIP_DB */
    char *ua_regexes; /* SLUICE_UA_REGEXES */
};

extern const struct sl_cfg_opt enrich_paths_cfg_opts[];
extern const size_t enrich_paths_cfg_n_opts;

/* Every enrichment setting in one struct, for a process that lists them as one table. */
struct enrich_config {
    struct enrich_paths paths;
    struct enrich_settings settings;
};

/*
 * All six enrichment settings (SLUICE_GEOIP_DB, SLUICE_GEOIP_ASN_DB, SLUICE_GEOIP_RELOAD_S,
 * SLUICE_UA_REGEXES, SLUICE_CRAWLER_PATTERNS, SLUICE_UA_CACHE_ENTRIES) as one table bound to
 * struct enrich_config: sluice-ingest lists it as its "enrichment" section.
 */
extern const struct sl_cfg_opt enrich_config_cfg_opts[];
extern const size_t enrich_config_cfg_n_opts;

/* The same entries for a table of one's own: base is the offset of a struct enrich_config
 * inside the settings struct the table binds (the re-enrichment job's). */
#define ENRICH_CONFIG_N_OPTS 6
#define ENRICH_CONFIG_OPTS(base)                                                            \
    {.key = "SLUICE_GEOIP_DB", .type = SL_CFG_STRING, .def = "",                              \
     .offset = (base) + offsetof(struct enrich_config, paths.geoip_db),                       \
     .desc = "MaxMind/DB-IP .mmdb city database for GeoIP enrichment; empty: off."},          \
    {.key = "SLUICE_GEOIP_ASN_DB", .type = SL_CFG_STRING, .def = "",                          \
     .offset = (base) + offsetof(struct enrich_config, settings.asn_db),                      \
     .desc = "MaxMind/DB-IP ASN .mmdb (GeoLite2-ASN) for the asn and as_org columns and "     \
             "datacenter bot flags; empty: off."},                                            \
    {.key = "SLUICE_GEOIP_RELOAD_S", .type = SL_CFG_INT, .def = "60", .min = 0,               \
     .max = 86400, .offset = (base) + offsetof(struct enrich_config, settings.geoip_reload_s), \
     .desc = "How often the GeoIP database files are checked for a new version, which is "    \
             "swapped in without a restart; 0: never."},                                      \
    {.key = "SLUICE_UA_REGEXES", .type = SL_CFG_STRING, .def = "",                            \
     .offset = (base) + offsetof(struct enrich_config, paths.ua_regexes),                     \
     .desc = "uap-core regexes.yaml for user-agent parsing; empty: off."},                    \
    {.key = "SLUICE_CRAWLER_PATTERNS", .type = SL_CFG_STRING, .def = "",                      \
     .offset = (base) + offsetof(struct enrich_config, settings.crawler_patterns),            \
     .desc = "crawler-user-agents.json (npm crawler-user-agents) for bot detection; empty: "  \
             "only the built-in markers and ua-parser's Spider device."},                     \
    {.key = "SLUICE_UA_CACHE_ENTRIES", .type = SL_CFG_INT, .def = "100000", .min = 0,         \
     .max = 10000000,                                                                         \
     .offset = (base) + offsetof(struct enrich_config, settings.ua_cache_entries),            \
     .desc = "User agents whose answer the LRU cache keeps (a few hundred bytes each); 0: "   \
             "no cache."}

/*
 * Every column enrichment stores for one event. Caller-allocated (about 1.4 KiB); all fields
 * read-only for callers. Strings are empty when unknown (cut at a UTF-8 boundary when longer
 * than their buffer); has_location and asn != 0 say whether those numbers are known.
 */
struct enrich_result {
    char country_code[4];
    char country[80];
    char region[80];
    char city[96];
    char postal[24];
    bool has_location;
    double latitude;
    double longitude;
    int32_t accuracy_radius;     /* km; 0 when unknown */
    char geo_timezone[48];
    uint32_t asn;                /* 0 when unknown */
    char as_org[128];
    const char *geo_status;      /* static: enrich_geo_status_name's words */
    char browser[64];            /* ua-parser family ("Other" when no rule matched) */
    char browser_version[64];    /* "major.minor.patch.patch_minor", as far as known */
    char os[64];
    char os_version[64];
    char device[128];
    char device_brand[64];
    char device_model[128];
    bool is_bot;
    char bot_reason[96];         /* see bots.h: "crawler:...", "datacenter:AS..." */
    char enrichment_version[96]; /* which data answered; see enrich_lookup */
    uint32_t enrichment_version_id; /* the number the events table stores: enrich_version_id */
};

/* The state of one part of enrichment, for /health. */
enum enrich_part_state {
    ENRICH_PART_OFF,       /* not configured */
    ENRICH_PART_OK,
    ENRICH_PART_DEGRADED,  /* serving, but a reload of a changed file failed */
    ENRICH_PART_ERROR,     /* configured but not working */
};

enum enrich_part {
    ENRICH_PART_GEOIP,
    ENRICH_PART_ASN,
    ENRICH_PART_UA,
    ENRICH_PART_CRAWLERS,
    ENRICH_N_PARTS,
};

struct enrich_part_status {
    const char *name;            /* static: "geoip", "asn", "ua", "crawlers" */
    enum enrich_part_state state;
    char path[512];
    char version[40];            /* build epoch or file hash of what serves; "" when none */
    char error[SL_ERR_MSG_MAX];  /* why it is not OK; "" when OK or off */
};

struct enrich_health {
    struct enrich_part_status parts[ENRICH_N_PARTS];
    bool is_ok;                  /* no part in ERROR or DEGRADED */
};

/* Counters since create (any thread may read them while lookups run). */
struct enrich_stats {
    uint64_t lookups;
    uint64_t cache_hits;
    uint64_t cache_misses;
    uint64_t cache_evictions;
    size_t cache_entries;
    size_t cache_bytes;
    uint64_t ua_truncated;       /* agents longer than ENRICH_UA_MAX_BYTES (parsed cut) */
    uint64_t ua_gave_up;         /* regex matches that hit PCRE2's limit (counted as no match) */
    uint64_t geo_errors;         /* records a database could not decode */
    uint64_t failed_allocations; /* lookups answered without the cache or a regex pass */
};

/*
 * Creates the facade: loads the city database at geoip_db and regexes.yaml at ua_regexes
 * (borrowed; NULL or "" for none), and what s names (borrowed; copied). now_s is the current
 * time. Problems with the files do not fail it (see enrich_health). Returns 0 and the facade
 * in *out (returns new; free with enrich_destroy), or SL_ENOMEM with *out NULL and err set.
 * Slow (regex compilation, database checks): at start-up, off any event loop.
 */
int enrich_create(const struct enrich_settings *s, const char *geoip_db, const char *ua_regexes,
                  int64_t now_s, struct enrich **out, struct sl_err *err);

/* Frees everything. Accepts NULL. No lookup may be running. */
void enrich_destroy(struct enrich *e);

/*
 * Enriches one event: ip (text), agent (the User-Agent string) and hints (parsed client
 * hints), all borrowed and each may be NULL. Fills every field of *out.
 * enrichment_version names the data that answered, as
 * "geo=<city db build epoch>,asn=<asn db build epoch>,ua=<regexes.yaml hash>,
 * crawlers=<crawler list hash>,rules=<built-in rules version>", "-" for what is off, and
 * enrichment_version_id is the number the events table stores (enrich_version_id, read
 * before the lookup); rows stored with a smaller number are what the re-enrichment job
 * redoes.
 * Returns 0, or SL_ENOMEM when an allocation failed, in which case *out is still complete
 * but the agent columns may be "Other" (counted in failed_allocations). Any thread.
 */
int enrich_lookup(struct enrich *e, const char *ip, const char *agent,
                  const struct enrich_hints *hints, struct enrich_result *out);

/*
 * The numeric enrichment version: the newest of the modification times (unix seconds) of
 * the data files in use (the serving GeoIP databases, regexes.yaml and the crawler list as
 * loaded) and ENRICH_BOTS_RULES_EPOCH. It grows whenever a file is replaced by a newer one
 * (a reload swaps in a GeoIP database written later), so rows stored with a smaller number
 * were enriched with older data. This is what the events table's enrichment_version column
 * holds (0 there: never enriched), what enrich_lookup puts in enrichment_version_id, and what
 * the re-enrichment job compares with. Never fails; never 0. Any thread.
 */
uint32_t enrich_version_id(struct enrich *e);

/*
 * The agent-only bot verdict for agent (borrowed; NULL or "" is the "empty" reason): the
 * built-in markers, the crawler list and, when regexes.yaml is loaded, ua-parser's Spider
 * device; no address, so no datacenter check. Answers come from and go to the agent cache.
 * Returns 0, or SL_ENOMEM (out is still filled; the answer was not cached). Any thread.
 */
int enrich_check_agent(struct enrich *e, const char *agent, struct enrich_bot_verdict *out);

/*
 * Reloads GeoIP databases whose files changed (see enrich_geo_reload): when the reload
 * interval has passed since the last look, or always when force. Returns 0, or the first
 * failure with err naming the file (the previous database keeps serving). Blocking: off any
 * event loop; one thread.
 */
int enrich_reload(struct enrich *e, int64_t now_s, bool force, struct sl_err *err);

/* Fills *out. Never fails. Any thread. */
void enrich_health(struct enrich *e, struct enrich_health *out);

/* Fills *out. Never fails. Any thread. */
void enrich_stats(struct enrich *e, struct enrich_stats *out);

/*
 * The result as one JSON object whose keys are the column names (exactly what the loader
 * stores: strings "" when unknown; latitude, longitude, accuracy_radius and asn null when
 * unknown). Returns a new reference, or NULL when out of memory.
 */
json_t *enrich_result_to_json(const struct enrich_result *r);

/*
 * Appends the events table's enrichment columns (country_code .. bot_reason, then
 * enrichment_version) to a RowBinary row in table order (rowbinary.c); r NULL writes them
 * empty and zero (enrichment_version 0: never enriched). 0, or the buffer's failure.
 */
int enrich_result_put_rowbinary(struct sl_ch_buf *b, const struct enrich_result *r);

/* The health as JSON: {"ok": bool, "<part>": {"state", "path", "version", "error"}, ...}.
 * Returns a new reference, or NULL when out of memory. */
json_t *enrich_health_to_json(const struct enrich_health *h);

/* "off", "ok", "degraded", "error". */
const char *enrich_part_state_name(enum enrich_part_state state);

#endif

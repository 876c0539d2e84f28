/*
 * GeoIP with libmaxminddb: an IP address to country (ISO code and English name), first
 * region, city, postal code, location (latitude, longitude, accuracy radius in km) and time
 * zone from a city (or country) database, and to the autonomous system (number and
 * organisation) from an optional ASN database (GeoLite2-ASN or the like). IPv4 and IPv6.
 * Private, loopback, link-local and reserved addresses are not looked up; the answer says
 * which they are.
 *
 * Databases are reloaded without a restart: enrich_geo_reload notices a changed file (inode,
 * size, modification time), opens and checks the new one completely, then swaps it in. A
 * lookup holds a reference to the database it started with (taken under a short lock), so
 * the old one is closed only when its last lookup is done and no lookup ever fails during a
 * swap. A missing or corrupt file is never swapped in: the previous database keeps serving
 * (or there is none) and enrich_geo_db_status says why, for /health. Replace a database by
 * renaming a complete file over it (as geoipupdate does), never by writing into it: it is
 * mapped into memory while in use.
 *
 * Any thread may look up while another reloads.
 */
#ifndef SLUICE_WORKERS_ENRICHMENT_GEO_H
#define SLUICE_WORKERS_ENRICHMENT_GEO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct enrich_geo;

enum enrich_geo_status {
    ENRICH_GEO_OK,          /* found in the city database */
    ENRICH_GEO_NOT_FOUND,   /* a public address the database has nothing for */
    ENRICH_GEO_NO_IP,       /* no address given */
    ENRICH_GEO_INVALID_IP,  /* not an IPv4 or IPv6 address */
    ENRICH_GEO_PRIVATE,     /* 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7 */
    ENRICH_GEO_LOOPBACK,    /* 127/8, ::1 */
    ENRICH_GEO_LINK_LOCAL,  /* 169.254/16, fe80::/10 */
    ENRICH_GEO_RESERVED,    /* unspecified, documentation, benchmarking, multicast, ... */
    ENRICH_GEO_NO_DATABASE, /* no city database configured or loaded */
    ENRICH_GEO_ERROR,       /* the database could not decode its record (counted) */
};

/* "ok", "not_found", "no_ip", "invalid_ip", "private", "loopback", "link_local",
 * "reserved", "no_database", "error". */
const char *enrich_geo_status_name(enum enrich_geo_status status);

/* One answer; strings are empty and numbers zero when unknown. Caller-allocated. */
struct enrich_geo_info {
    enum enrich_geo_status status;
    char country_code[4];     /* ISO 3166-1 alpha-2 */
    char country[80];         /* English names; cut at a UTF-8 boundary when longer */
    char region[80];          /* the first (largest) subdivision */
    char city[96];
    char postal[24];
    char timezone[48];        /* IANA name, e.g. "Europe/London" */
    bool has_location;        /* latitude and longitude are known */
    double latitude;
    double longitude;
    int32_t accuracy_radius_km; /* 0 when unknown */
    uint32_t asn;             /* 0 when unknown (no ASN database or no entry) */
    char as_org[128];
    uint64_t city_build_epoch; /* of the databases that answered; 0 for none */
    uint64_t asn_build_epoch;
};

/* The two databases. */
enum enrich_geo_db {
    ENRICH_GEO_DB_CITY,
    ENRICH_GEO_DB_ASN,
};

/* What /health shows about one database. */
struct enrich_geo_db_status {
    bool is_configured;        /* a path was given */
    bool is_loaded;            /* a database is serving */
    char path[512];
    char type[64];             /* database_type from the metadata, e.g. "GeoIP2-City" */
    uint64_t build_epoch;
    int64_t loaded_at_s;       /* when the serving database was swapped in */
    int64_t checked_at_s;      /* last look at the file */
    uint64_t n_reloads;        /* swaps after the first load */
    uint64_t n_failed;         /* opens that failed (start and reloads) */
    char error[SL_ERR_MSG_MAX]; /* the last problem, "" when the file in place is serving */
};

/*
 * Creates the GeoIP module and loads the databases: city_path and asn_path (borrowed; NULL
 * or "" for none). reload_interval_s is how often enrich_geo_reload looks at the files
 * (0: only when forced). now_s is the current time.
 * A database that is missing or corrupt does not fail this call: the module works without
 * it and enrich_geo_db_status tells why (callers log that at start). Returns 0 and the
 * module in *out (returns new; free with enrich_geo_close), or SL_ENOMEM with *out NULL.
 * Opening maps and checks the files: call it off any event loop.
 */
int enrich_geo_open(const char *city_path, const char *asn_path, int64_t reload_interval_s,
                    int64_t now_s, struct enrich_geo **out);

/* Closes the databases (each when its last lookup is done) and frees the module. Accepts
 * NULL. No lookup or reload may start any more. */
void enrich_geo_close(struct enrich_geo *geo);

/*
 * Looks ip (borrowed, text; NULL or "" for none; "[v6]" brackets and a "%zone" are accepted)
 * up in the serving databases and fills *out. Never fails: problems are statuses. Any thread.
 */
void enrich_geo_lookup(struct enrich_geo *geo, const char *ip, struct enrich_geo_info *out);

/*
 * Reloads databases whose file changed, when the reload interval has passed since the last
 * look at now_s, or always when force. A new file is opened and checked before it replaces
 * the serving one. Returns 0 when nothing failed; otherwise the code of the first failure
 * with err saying which file and why (the previous database keeps serving; the same broken
 * file is not retried until it changes again). Only one reload runs at a time: a call made
 * while another is running returns 0 at once. Blocking (file I/O): off any event loop.
 */
int enrich_geo_reload(struct enrich_geo *geo, int64_t now_s, bool force, struct sl_err *err);

/* Fills *out for one database. Never fails. Any thread. */
void enrich_geo_db_status(struct enrich_geo *geo, enum enrich_geo_db which,
                          struct enrich_geo_db_status *out);

/*
 * The newest modification time (unix seconds) of the database files now serving; 0 when
 * none serves. A file swapped in by enrich_geo_reload counts from the moment it serves.
 * Never fails. Any thread.
 */
int64_t enrich_geo_data_mtime_s(struct enrich_geo *geo);

/* Lookups that ended in ENRICH_GEO_ERROR since open. */
uint64_t enrich_geo_n_errors(struct enrich_geo *geo);

#endif

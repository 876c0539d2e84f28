/*
 * Bot detection: whether an event came from a robot and why. Bots are flagged, never
 * dropped. The reasons, checked in this order (the first that applies is reported):
 *
 *   empty              no user agent at all ("", spaces, or "-")
 *   headless:MARKER    a headless or automated browser (HeadlessChrome, PhantomJS, ...), from
 *                      the user agent or a Sec-CH-UA brand
 *   scripted:CLIENT    an HTTP library or command-line client naming itself first in the
 *                      agent (curl, Wget, python-requests, Go-http-client, okhttp, Java, ...)
 *   crawler:PATTERN    a pattern of the crawler-user-agents list (its JSON file is optional)
 *   spider:FAMILY      ua-parser's device parsers call the device "Spider"; FAMILY is the
 *                      parsed browser family, e.g. "spider:Googlebot"
 *   datacenter:ASN     the address belongs to a hosting provider on our short built-in list
 *                      of cloud and hosting ASNs (needs an ASN database). VPN exits in those
 *                      networks are flagged too; that is the price of this signal.
 *
 * The built-in lists are in bots.c; ENRICH_BOTS_RULES_VERSION changes when they do. A
 * loaded module is read-only: any thread may check.
 */
#ifndef SLUICE_WORKERS_ENRICHMENT_BOTS_H
#define SLUICE_WORKERS_ENRICHMENT_BOTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Version of the built-in lists (headless markers, scripted clients, hosting ASNs). */
#define ENRICH_BOTS_RULES_VERSION 1

/* When the built-in lists last changed (unix seconds; 2026-11-24T00:00:00Z). It takes part in
 * the numeric enrichment version (enrich_version_id), so a release that changes the lists
 * must move it forward to the release time, with ENRICH_BOTS_RULES_VERSION. */
#define ENRICH_BOTS_RULES_EPOCH 1795478400

/* Largest crawler-user-agents.json accepted. */
#define ENRICH_BOTS_FILE_MAX_BYTES (16 * 1024 * 1024)

struct enrich_bots;

enum enrich_bot_kind {
    ENRICH_BOT_NONE,
    ENRICH_BOT_EMPTY,
    ENRICH_BOT_HEADLESS,
    ENRICH_BOT_SCRIPTED,
    ENRICH_BOT_CRAWLER,
    ENRICH_BOT_SPIDER,
    ENRICH_BOT_DATACENTER,
};

struct enrich_bot_verdict {
    enum enrich_bot_kind kind;
    char reason[96];  /* "kind" or "kind:detail" as listed above; "" for NONE */
};

/* What was loaded. */
struct enrich_bots_info {
    size_t n_patterns;     /* crawler patterns in use */
    size_t n_skipped;      /* crawler patterns PCRE2 would not compile (left out) */
    size_t n_prefiltered;  /* patterns with a required trigram */
    char hash_hex[17];     /* FNV-1a 64 of the JSON file; "" without one */
};

/*
 * Creates the module with the built-in lists and no crawler patterns. Returns 0 and the
 * module in *out (returns new; free with enrich_bots_destroy), or SL_ENOMEM with *out NULL.
 */
int enrich_bots_create(struct enrich_bots **out, struct sl_err *err);

/*
 * Loads the crawler-user-agents JSON file at path (borrowed): an array of objects with a
 * "pattern" regex each. Patterns PCRE2 rejects are left out and counted. Call before the
 * module is shared. On failure (SL_ENOTFOUND, SL_EIO, SL_EINVAL not that layout, SL_ENOMEM;
 * err names the file) the module keeps the patterns it had.
 */
int enrich_bots_load_crawlers(struct enrich_bots *b, const char *path, struct sl_err *err);

/* Frees the module. Accepts NULL. */
void enrich_bots_destroy(struct enrich_bots *b);

/*
 * Checks a user agent (agent[0..len), borrowed; only its first ENRICH_UA_MAX_BYTES bytes are
 * read) with what ua-parser made of it: the device family and browser family (borrowed; NULL
 * when unknown). Fills *out with the first reason that applies, or ENRICH_BOT_NONE. Any
 * thread. Never fails: a pattern that hits PCRE2's match limit counts as not matching.
 */
void enrich_bots_check_agent(const struct enrich_bots *b, const char *agent, size_t len,
                             const char *device_family, const char *ua_family,
                             struct enrich_bot_verdict *out);

/* When *out is not a bot yet and brand (a Sec-CH-UA brand, borrowed) names a headless
 * browser, makes it one ("headless:BRAND"). */
void enrich_bots_check_brand(const char *brand, struct enrich_bot_verdict *out);

/* When *out is not a bot yet and asn is on the hosting list, makes it one
 * ("datacenter:AS<n> <provider>"). */
void enrich_bots_check_asn(uint32_t asn, struct enrich_bot_verdict *out);

/* Fills info. Never fails. */
void enrich_bots_info(const struct enrich_bots *b, struct enrich_bots_info *info);

/* Short name of a kind: "", "empty", "headless", "scripted", "crawler", "spider",
 * "datacenter". */
const char *enrich_bot_kind_name(enum enrich_bot_kind kind);

#endif

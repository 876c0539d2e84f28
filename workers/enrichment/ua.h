/*
 * User agents parsed with ua-parser's rules: the uap-core regexes.yaml (user_agent_parsers,
 * os_parsers, device_parsers), applied exactly as uap-core's specification and its reference
 * implementation describe. In each section the regexes are tried in file order and the first
 * match wins; values come from the match groups or from the rule's replacements, where $1..$9
 * stand for groups ("$0" for the whole match, an unset group for nothing). When nothing
 * matches, the family is "Other" and the rest is undefined.
 *
 * Exactness notes, following the reference implementation (uap-ref-impl) that produces the
 * published test expectations:
 *  - user agent: family_replacement has its $N filled in and is not trimmed; v1..v3
 *    replacements are literal; a group that is empty or unset leaves a version undefined;
 *    patch_minor is group 5 (or v4_replacement).
 *  - os: every replacement has its $N filled in and is trimmed; empty results are undefined.
 *  - device: device/brand/model replacements are filled in and trimmed; without a
 *    replacement family and model are group 1 and brand is undefined; regex_flag 'i' makes
 *    a rule case-insensitive.
 *  - regexes are case-sensitive, unanchored, UTF-8 (invalid bytes in an agent never match a
 *    character), and `$` means the very end, as in JavaScript.
 *
 * Bounded cost: only the first ENRICH_UA_MAX_BYTES bytes of an agent are matched (cut at a
 * UTF-8 boundary; the result says so), each match is bounded by PCRE2's match limit (a rule
 * that gives up counts as not matching), and a prefilter skips rules whose required literal
 * text is absent. A loaded parser is read-only: any number of threads may parse at once.
 */
#ifndef SLUICE_WORKERS_ENRICHMENT_UA_H
#define SLUICE_WORKERS_ENRICHMENT_UA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct enrich_ua;

/* Longest prefix of an agent that is matched; longer agents are cut (see is_truncated). */
#define ENRICH_UA_MAX_BYTES 512

/* Longest value kept, in bytes (cut at a UTF-8 boundary). */
#define ENRICH_UA_VALUE_MAX 256

/* Largest regexes.yaml accepted. */
#define ENRICH_UA_FILE_MAX_BYTES (16 * 1024 * 1024)

enum enrich_ua_field {
    ENRICH_UA_FAMILY,
    ENRICH_UA_MAJOR,
    ENRICH_UA_MINOR,
    ENRICH_UA_PATCH,
    ENRICH_UA_PATCH_MINOR,
    ENRICH_OS_FAMILY,
    ENRICH_OS_MAJOR,
    ENRICH_OS_MINOR,
    ENRICH_OS_PATCH,
    ENRICH_OS_PATCH_MINOR,
    ENRICH_DEVICE_FAMILY,
    ENRICH_DEVICE_BRAND,
    ENRICH_DEVICE_MODEL,
    ENRICH_UA_N_FIELDS,
};

/* Which sections enrich_ua_parse runs (a bit mask). */
enum {
    ENRICH_UA_SECTION_UA = 1,
    ENRICH_UA_SECTION_OS = 2,
    ENRICH_UA_SECTION_DEVICE = 4,
    ENRICH_UA_SECTION_ALL = 7,
    /* For tests and benchmarks: try every rule, without the prefilter (same answers). */
    ENRICH_UA_NO_PREFILTER = 8,
};

/* off[] value of an undefined field. */
#define ENRICH_UA_NONE UINT16_MAX

/*
 * One parse. Callers allocate it (about 3.4 KiB, fine on a stack) and read it with
 * enrich_ua_get; the fields are read-only. Values are NUL-terminated strings packed into
 * text, so a copy of the first offsetof(text) + len bytes is a complete result (the
 * facade's cache stores just that).
 */
struct enrich_ua_result {
    uint16_t off[ENRICH_UA_N_FIELDS]; /* read-only: start of each value in text, or NONE */
    uint16_t len;                     /* read-only: bytes of text in use */
    uint8_t n_gave_up;                /* read-only: matches that hit a PCRE2 limit (saturates) */
    bool is_truncated;                /* read-only: only the agent's first MAX_BYTES were read */
    char text[ENRICH_UA_N_FIELDS * (ENRICH_UA_VALUE_MAX + 1)];
};

/* What was loaded, for health and benchmarks. */
struct enrich_ua_info {
    size_t n_rules[3];         /* user_agent, os, device parsers */
    size_t n_prefiltered;      /* rules with a required trigram */
    size_t code_bytes;         /* compiled regexes, JIT code included */
    char hash_hex[17];         /* FNV-1a 64 of the file, 16 hex digits */
};

/*
 * Reads regexes.yaml at path (borrowed) and compiles every rule. Returns 0 and the parser in
 * *out (returns new; free with enrich_ua_destroy), or fails with *out NULL: SL_ENOTFOUND /
 * SL_EIO (the file), SL_EINVAL (not YAML, not uap-core's layout, or a regex that does not
 * compile; err gives the line), SL_ENOMEM. Takes a while (about a thousand regexes): call
 * it at start-up, off any event loop.
 */
int enrich_ua_create(const char *path, struct enrich_ua **out, struct sl_err *err);

/* As enrich_ua_create from YAML text (borrowed) already in memory; name is for messages. */
int enrich_ua_create_from_text(const char *text, size_t len, const char *name,
                               struct enrich_ua **out, struct sl_err *err);

/* Frees the parser. Accepts NULL. No parse may be running. */
void enrich_ua_destroy(struct enrich_ua *ua);

/*
 * Parses agent[0..len) (borrowed; need not be NUL-terminated; NULL with len 0 is the empty
 * agent) with the sections in mask and fills *out; sections not asked for are undefined.
 * Returns 0, or SL_ENOMEM when no match data could be allocated, in which case *out holds
 * the "no match" answer. Any thread.
 */
int enrich_ua_parse(const struct enrich_ua *ua, const char *agent, size_t len, unsigned mask,
                    struct enrich_ua_result *out);

/* The value of field f, or NULL when undefined. The pointer borrows from r. */
const char *enrich_ua_get(const struct enrich_ua_result *r, enum enrich_ua_field f);

/* Bytes of r worth copying (header plus used text). */
size_t enrich_ua_result_size(const struct enrich_ua_result *r);

/* Fills info. Never fails. */
void enrich_ua_info(const struct enrich_ua *ua, struct enrich_ua_info *info);

#endif

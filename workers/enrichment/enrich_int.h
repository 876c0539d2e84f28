/*
 * Internal to workers/enrichment/: helpers the folder's files share and no other folder
 * includes. The regex environment (PCRE2 contexts with our allocator and limits), the
 * required-trigram prefilter that lets a parser skip regexes which cannot match, and small
 * text helpers (UTF-8-safe copies, a 64-bit hash, whole-file reads).
 *
 * Needs PCRE2_CODE_UNIT_WIDTH=8, which the folder's CMakeLists.txt defines.
 */
#ifndef SLUICE_WORKERS_ENRICHMENT_ENRICH_INT_H
#define SLUICE_WORKERS_ENRICHMENT_ENRICH_INT_H

#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "err.h"

/* ---- regex.c: PCRE2 with JIT, bounded ---------------------------------------------- */

/*
 * PCRE2 contexts shared by every regex of one owner. They are read-only once built, so
 * matches on several threads may share them. Each match is bounded by a match limit (and a
 * depth limit for the interpreter), so a hostile subject costs bounded time.
 */
struct enrich_regex_env {
    pcre2_general_context *gctx; /* allocations through sl_malloc */
    pcre2_compile_context *cctx;
    pcre2_match_context *mctx;   /* limits */
};

/* Work limits of one match (PCRE2 counts; see pcre2_set_match_limit). */
#define ENRICH_REGEX_MATCH_LIMIT 20000
#define ENRICH_REGEX_DEPTH_LIMIT 2000

/* Builds the contexts. Returns 0 or SL_ENOMEM (env left safe for fini). */
int enrich_regex_env_init(struct enrich_regex_env *env, struct sl_err *err);

/* Frees the contexts. Accepts a zeroed or half-built env. */
void enrich_regex_env_fini(struct enrich_regex_env *env);

/*
 * Compiles pattern (borrowed; NUL-terminated) as UTF-8, case-sensitive unless is_caseless,
 * unanchored, `$` at the very end only (as JavaScript and Python read these rule files),
 * and JIT-compiles it when the JIT is available. Returns 0 and the code in *out (returns
 * new; free with pcre2_code_free), or SL_EINVAL with why (at offset ...) in err, or
 * SL_ENOMEM.
 */
int enrich_regex_compile(const struct enrich_regex_env *env, const char *pattern,
                         bool is_caseless, pcre2_code **out, struct sl_err *err);

/*
 * Runs code on subject[0..len) with md (the caller's, one per thread). Returns the number of
 * the highest pair set plus one (> 0) on a match, 0 on no match, and a negative PCRE2 code
 * when the match gave up (match or depth limit, JIT stack): the caller treats that as no
 * match and counts it.
 */
int enrich_regex_match(const struct enrich_regex_env *env, const pcre2_code *code,
                       const char *subject, size_t len, pcre2_match_data *md);

/* Bytes of compiled code plus JIT code of one regex. */
size_t enrich_regex_size(const pcre2_code *code);

/* ---- trigram.c: required-trigram prefilter ----------------------------------------- */

/*
 * A set of three-byte sequences (ASCII-lowercased, hashed into a bitmap) present in one
 * subject. A rule whose regex cannot match without one of a few trigrams (a literal run of
 * three bytes or more, or one per branch of an alternation) is skipped when none of them is
 * in the subject: the regex cannot match, so first-match order is kept. Hash collisions only
 * let extra rules through to PCRE2.
 */
#define ENRICH_TRIGRAM_BITS 65536

struct enrich_trigram_set {
    uint64_t bits[ENRICH_TRIGRAM_BITS / 64];
};

/* How many of a built-in sample of typical agents carry each trigram (for ranking). */
struct enrich_trigram_common {
    uint8_t seen[ENRICH_TRIGRAM_BITS];
};

/* Fills common from the built-in sample. Never fails. */
void enrich_trigram_common_init(struct enrich_trigram_common *common);

/*
 * Finds trigrams of which every match of pattern contains one, preferring a single trigram
 * that few of the agents in common (borrowed) carry, so the filter bites. Reads literal runs,
 * required groups and alternations; gives up (no requirement) on anything it does not fully
 * understand, on inline options, and when all it finds is what most typical agents carry.
 * Returns 0 with *hashes (returns new, sl_free; NULL when none) and *n (0: no requirement,
 * always try the rule), or SL_ENOMEM.
 */
int enrich_trigram_pick(const char *pattern, bool is_caseless,
                        const struct enrich_trigram_common *common, uint16_t **hashes, size_t *n);

/* Fills set with the trigrams of text[0..len) (ASCII-lowercased). */
void enrich_trigram_scan(const char *text, size_t len, struct enrich_trigram_set *set);

/* Whether one of hashes[0..n) is in set; true when n is 0 (no requirement). */
bool enrich_trigram_any(const struct enrich_trigram_set *set, const uint16_t *hashes, size_t n);

/* ---- ip.c: addresses ---------------------------------------------------------------- */

/* What an address is before any database is asked. */
enum enrich_ip_class {
    ENRICH_IP_PUBLIC,
    ENRICH_IP_PRIVATE,
    ENRICH_IP_LOOPBACK,
    ENRICH_IP_LINK_LOCAL,
    ENRICH_IP_RESERVED,
};

/*
 * Parses an IPv4 or IPv6 address (borrowed; "[v6]" brackets and a "%zone" suffix accepted,
 * surrounding spaces ignored) into *sa (an IPv4-mapped IPv6 address becomes IPv4) and
 * classifies it. Returns 0, or SL_EINVAL when text is no address.
 */
int enrich_ip_parse(const char *text, struct sockaddr_storage *sa, enum enrich_ip_class *cls);

/* ---- text.c: small text helpers ---------------------------------------------------- */

/* Longest prefix of s[0..len) of at most max bytes that does not split a UTF-8 sequence. */
size_t enrich_utf8_cut(const char *s, size_t len, size_t max);

/*
 * Copies src[0..len) into dst (cap bytes, cap > 0) as a NUL-terminated string, cut at a
 * UTF-8 boundary when it does not fit. src may be NULL (copies nothing). Never fails.
 */
void enrich_copy(char *dst, size_t cap, const char *src, size_t len);

/* 64-bit FNV-1a of p[0..n). */
uint64_t enrich_hash64(const void *p, size_t n);

/*
 * Reads a whole file of at most max_bytes into a new NUL-terminated buffer (returns new;
 * free with sl_free) and its length. Fails with SL_ENOTFOUND, SL_EIO, SL_EINVAL (too big)
 * or SL_ENOMEM; err names the path.
 */
int enrich_file_read(const char *path, size_t max_bytes, char **out, size_t *len,
                     struct sl_err *err);

#endif

/*
 * The required-trigram prefilter: what three-byte sequences a regex cannot match without,
 * and which ones a subject holds. Both sides are ASCII-lowercased, which keeps the test sound
 * for case-sensitive and caseless rules alike. A rule's requirement is one trigram, or for
 * an alternation a set of which one must be present ("Googlebot|bingbot|..."); reading a
 * regex here is deliberately conservative: anything it does not fully understand yields no
 * requirement, which only costs speed.
 */
#include "enrich_int.h"

#include <ctype.h>
#include <limits.h>
#include <string.h>

#include "alloc.h"

#define RUN_MAX 256

/* Most trigrams in one requirement; a larger alternation is simply not filtered. */
#define SET_MAX 512

/* Cost of a trigram most typical agents carry: it filters almost nothing. */
#define COMMON_COST 1000

/* Typical agents (browsers and apps): the fewer of them carry a trigram, the better it
 * filters; one most of them carry filters nothing. */
static const char *const common_uas[] = {
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Linux; U; Android 4.4.2; en-us; SAMSUNG SM-G900F Build/KOT49H) AppleWebKit/"
    "534.30 (KHTML, like Gecko) Version/4.0 Mobile Safari/534.30",
    "Mozilla/5.0 (Linux; Android 12; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 "
    "Chrome/120.0.6099.43 Mobile Safari/537.36 SamsungBrowser/23.0",
    "Dalvik/2.1.0 (Linux; U; Android 11; Redmi Note 8 Pro MIUI/V12.5.4.0.RGGMIXM)",
    "Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.2; WOW64; Trident/6.0; Touch)",
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1 [FBAN/FBIOS;FBAV/450.0.0.38.108;FBBV/"
    "564431005;FBDV/iPad13,18;FBMD/iPad;FBSN/iPadOS;FBSV/17.4.1;FBSS/2;FBID/tablet;FBLC/en_US]",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36 OPR/110.0.0.0 YaBrowser/24.4.0.0",
    "Mozilla/5.0 (Linux; Android 13; SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.6367.82 Mobile Safari/537.36 Instagram 329.0.0.41.93 Android (33/13; 450dpi;"
    " 1080x2176; samsung; SM-A536B; a53x; s5e8825; de_DE; 590079064)",
};

#define N_COMMON (sizeof(common_uas) / sizeof(common_uas[0]))

static uint16_t hash3(unsigned char a, unsigned char b, unsigned char c)
{
    uint32_t v = (uint32_t)tolower(a) | (uint32_t)tolower(b) << 8 | (uint32_t)tolower(c) << 16;

    return (uint16_t)((v * 2654435761u) >> (32 - 16));
}

_Static_assert(ENRICH_TRIGRAM_BITS == 1 << 16, "hash3 yields 16 bits");

void enrich_trigram_scan(const char *text, size_t len, struct enrich_trigram_set *set)
{
    const unsigned char *t = (const unsigned char *)text;

    memset(set->bits, 0, sizeof(set->bits));
    for (size_t i = 0; i + 3 <= len; i++) {
        uint16_t h = hash3(t[i], t[i + 1], t[i + 2]);

        set->bits[h / 64] |= (uint64_t)1 << (h % 64);
    }
}

bool enrich_trigram_any(const struct enrich_trigram_set *set, const uint16_t *hashes, size_t n)
{
    if (n == 0) {
        return true;
    }
    for (size_t i = 0; i < n; i++) {
        if ((set->bits[hashes[i] / 64] >> (hashes[i] % 64)) & 1u) {
            return true;
        }
    }
    return false;
}

/* ---- reading a regex --------------------------------------------------------------- */

/* A requirement: one of h[0..n) must be in the subject. cost ranks them (lower filters
 * better); n == 0 is "none known". */
struct req {
    uint16_t h[SET_MAX];
    size_t n;
    unsigned cost;
};

struct reader {
    const char *p;
    bool is_caseless;
    const struct enrich_trigram_common *common;
};

/* Keeps the cheaper of *best and *cand. */
static void consider(struct req *best, const struct req *cand)
{
    if (cand->n > 0 && (best->n == 0 || cand->cost < best->cost)) {
        *best = *cand;
    }
}

/* Offers every trigram of a literal run as a requirement of its own. */
static void offer_run(const struct reader *rd, const unsigned char *run, size_t len,
                      struct req *best)
{
    for (size_t i = 0; i + 3 <= len; i++) {
        struct req one = {.n = 1};

        one.h[0] = hash3(run[i], run[i + 1], run[i + 2]);
        /* The rarer in typical traffic, the better it filters. */
        one.cost = rd->common->seen[one.h[0]] == 0 ? 1
                   : rd->common->seen[one.h[0]] >= N_COMMON / 2
                       ? COMMON_COST
                       : 1 + 20u * rd->common->seen[one.h[0]];
        consider(best, &one);
    }
}

/* Skips a character class starting at p[i] == '['; returns the index after its ']', or 0
 * when it does not close. */
static size_t skip_class(const char *p, size_t i)
{
    i++;
    if (p[i] == '^') {
        i++;
    }
    if (p[i] == ']') {
        i++;
    }
    while (p[i] != '\0' && p[i] != ']') {
        if (p[i] == '\\' && p[i + 1] != '\0') {
            i += 2;
        }
        else if (p[i] == '[' && p[i + 1] == ':') {
            const char *end = strstr(p + i + 2, ":]");

            if (end == NULL) {
                return 0;
            }
            i = (size_t)(end - p) + 2;
        }
        else {
            i++;
        }
    }
    return p[i] == ']' ? i + 1 : 0;
}

/* Skips a group starting at p[i] == '('; returns the index after its ')', or 0. */
static size_t skip_group(const char *p, size_t i)
{
    int depth = 0;

    while (p[i] != '\0') {
        if (p[i] == '\\' && p[i + 1] != '\0') {
            i += 2;
            continue;
        }
        if (p[i] == '[') {
            i = skip_class(p, i);
            if (i == 0) {
                return 0;
            }
            continue;
        }
        if (p[i] == '(') {
            depth++;
        }
        else if (p[i] == ')' && --depth == 0) {
            return i + 1;
        }
        i++;
    }
    return 0;
}

/* Whether "{...}" at p[i] is a quantifier; sets *end after it and *min_zero. */
static bool read_braces(const char *p, size_t i, size_t *end, bool *min_zero)
{
    size_t j = i + 1;
    size_t digits = 0;
    bool zero = true;

    while (isdigit((unsigned char)p[j])) {
        if (p[j] != '0') {
            zero = false;
        }
        j++;
        digits++;
    }
    if (digits == 0) {
        return false;
    }
    if (p[j] == ',') {
        j++;
        while (isdigit((unsigned char)p[j])) {
            j++;
        }
    }
    if (p[j] != '}') {
        return false;
    }
    *end = j + 1;
    *min_zero = zero;
    return true;
}

/* Where the body of the group opening at p[i] starts, or 0 for a group whose content need
 * not appear in the match (lookarounds). */
static size_t group_body(const char *p, size_t i)
{
    if (p[i + 1] != '?') {
        return i + 1;
    }
    if (p[i + 2] == ':') {
        return i + 3;
    }
    if ((p[i + 2] == '<' || (p[i + 2] == 'P' && p[i + 3] == '<')) && p[i + 3] != '=' &&
        p[i + 3] != '!') {
        const char *close = strchr(p + i, '>');

        return close != NULL ? (size_t)(close - p) + 1 : 0;
    }
    return 0;
}

/* A class of exactly one letter in both cases ("[Bb]"): the letter, else 0. */
static unsigned char case_class(const char *p, size_t i, size_t next)
{
    unsigned char a = (unsigned char)p[i + 1], b = (unsigned char)p[i + 2];

    if (next == i + 4 && isalpha(a) && isalpha(b) && a != b && tolower(a) == tolower(b)) {
        return (unsigned char)tolower(a);
    }
    return 0;
}

static int read_alternatives(const struct reader *rd, size_t from, size_t to, struct req *out);

/*
 * Reads p[from..to) (no '|' at its top level) as a sequence and puts its best requirement in
 * *out. A group that must match (no ?, * or {0,} after it) is read inside. Returns 0, or -1
 * when the regex holds something this reader does not understand.
 */
static int read_sequence(const struct reader *rd, size_t from, size_t to, struct req *out)
{
    const char *p = rd->p;
    unsigned char run[RUN_MAX];
    size_t run_len = 0;
    size_t i = from;

    out->n = 0;
    while (i < to) {
        unsigned char c = (unsigned char)p[i];
        bool is_literal = false;
        unsigned char lit = 0;
        size_t next = i + 1;

        if (c == '\\') {
            unsigned char d = (unsigned char)p[i + 1];

            if (d == '\0') {
                return -1;
            }
            /* Class escapes and assertions are not literals; anything else with a letter or
             * digit (hex, octal, back references, properties) is beyond this reader. */
            if (isalnum(d) && strchr("dDwWsSbBhHvVRXAzZG", d) == NULL) {
                return -1;
            }
            if (!isalnum(d) && d < 0x80) {
                is_literal = true;
                lit = d;
            }
            next = i + 2;
        }
        else if (c == '[') {
            next = skip_class(p, i);
            if (next == 0) {
                return -1;
            }
            lit = case_class(p, i, next);
            is_literal = lit != 0;
        }
        else if (c == '(') {
            size_t body = group_body(p, i);
            size_t after = 0;
            bool min_zero = false;

            /* Inline options such as (?i) change how the rest reads. */
            if (p[i + 1] == '?' && strchr(":=!<>|#P", p[i + 2]) == NULL) {
                return -1;
            }
            next = skip_group(p, i);
            if (next == 0 || next > to) {
                return -1;
            }
            min_zero = p[next] == '?' || p[next] == '*' ||
                       (p[next] == '{' && read_braces(p, next, &after, &min_zero) && min_zero);
            offer_run(rd, run, run_len, out);
            run_len = 0;
            if (body != 0 && !min_zero) {
                struct req inner;

                if (read_alternatives(rd, body, next - 1, &inner) != 0) {
                    return -1;
                }
                consider(out, &inner);
            }
            i = next;
            continue;
        }
        else if (c == '|' || c == ')') {
            return -1;
        }
        else if (c == '*' || c == '+' || c == '?' || c == '{') {
            /* A quantifier on the atom before; only a literal atom is still in the run. */
            bool min_zero = c != '+';

            if (c == '{' && !read_braces(p, i, &next, &min_zero)) {
                /* A brace that is no quantifier is a literal in PCRE2; treated as an
                 * unknown atom to stay safe. */
                next = i + 1;
            }
            if (min_zero && run_len > 0) {
                run_len--;
            }
            offer_run(rd, run, run_len, out);
            run_len = 0;
            while (p[next] == '?' || p[next] == '+') {
                next++;
            }
            i = next;
            continue;
        }
        else if (c != '.' && c != '^' && c != '$' && c < 0x80) {
            is_literal = true;
            lit = c;
        }
        /* Caseless UTF-8 matching lets k and s match the Kelvin sign and the long s, which
         * a folded scan of the subject does not see as k and s. */
        if (is_literal && rd->is_caseless && (tolower(lit) == 'k' || tolower(lit) == 's')) {
            is_literal = false;
        }
        if (is_literal) {
            /* A quantifier after this literal decides whether it stays; see above. */
            if (run_len == RUN_MAX) {
                offer_run(rd, run, run_len, out);
                run_len = 0;
            }
            run[run_len++] = lit;
        }
        else {
            offer_run(rd, run, run_len, out);
            run_len = 0;
        }
        i = next;
    }
    offer_run(rd, run, run_len, out);
    return 0;
}

/* Reads p[from..to) that may hold top-level '|': the union of each alternative's best
 * requirement, or none when one alternative has none. */
static int read_alternatives(const struct reader *rd, size_t from, size_t to, struct req *out)
{
    struct req one;
    size_t start = from, i = from;

    out->n = 0;
    out->cost = 0;
    while (i <= to) {
        if (i == to || rd->p[i] == '|') {
            if (read_sequence(rd, start, i, &one) != 0) {
                return -1;
            }
            if (one.n == 0 || out->n + one.n > SET_MAX) {
                out->n = 0;
                return 0;
            }
            memcpy(out->h + out->n, one.h, one.n * sizeof(one.h[0]));
            out->n += one.n;
            out->cost += one.cost;
            start = i + 1;
            i++;
        }
        else if (rd->p[i] == '\\' && i + 1 < to) {
            i += 2;
        }
        else if (rd->p[i] == '[') {
            i = skip_class(rd->p, i);
            if (i == 0 || i > to) {
                return -1;
            }
        }
        else if (rd->p[i] == '(') {
            i = skip_group(rd->p, i);
            if (i == 0 || i > to) {
                return -1;
            }
        }
        else {
            i++;
        }
    }
    return 0;
}

void enrich_trigram_common_init(struct enrich_trigram_common *common)
{
    memset(common->seen, 0, sizeof(common->seen));
    for (size_t u = 0; u < N_COMMON; u++) {
        const unsigned char *t = (const unsigned char *)common_uas[u];
        size_t len = strlen(common_uas[u]);
        struct enrich_trigram_set once;

        /* Counted once per agent, however often it repeats a trigram. */
        memset(once.bits, 0, sizeof(once.bits));
        for (size_t i = 0; i + 3 <= len; i++) {
            uint16_t h = hash3(t[i], t[i + 1], t[i + 2]);

            if (!((once.bits[h / 64] >> (h % 64)) & 1u)) {
                once.bits[h / 64] |= (uint64_t)1 << (h % 64);
                common->seen[h]++;
            }
        }
    }
}

int enrich_trigram_pick(const char *pattern, bool is_caseless,
                        const struct enrich_trigram_common *common, uint16_t **hashes, size_t *n)
{
    struct reader rd = {.p = pattern, .is_caseless = is_caseless, .common = common};
    struct req *best = sl_calloc(1, sizeof(*best));
    int rc = 0;

    *hashes = NULL;
    *n = 0;
    if (best == NULL) {
        return SL_ENOMEM;
    }
    if (read_alternatives(&rd, 0, strlen(pattern), best) != 0 || best->n == 0 ||
        best->cost >= COMMON_COST) {
        /* Not understood, nothing required, or only what every browser sends: always run. */
        goto done;
    }
    *hashes = sl_malloc(best->n * sizeof(**hashes));
    if (*hashes == NULL) {
        rc = SL_ENOMEM;
        goto done;
    }
    memcpy(*hashes, best->h, best->n * sizeof(**hashes));
    *n = best->n;

done:
    sl_free(best);
    return rc;
}

/*
 * JSON helpers: writing compact JSON text straight into a bounded buffer, for hot paths
 * where building a jansson tree first would cost an allocation per value. A struct
 * sl_json_buf grows up to a maximum chosen at init and fails stickily: the first append
 * that cannot grow marks it, every later append does nothing, and the writer checks once
 * at the end. On top: strings escaped as JSON (UTF-8 passes through), integers, reals in
 * their shortest round-trip form, and any parsed jansson value with a nesting limit.
 *
 * Reading: sl_json_load gives exactly what jansson's json_loadb gives, faster (json_load.c).
 * Checking that text is UTF-8 is utf8.h's. Callers own their buffers; any thread, one
 * buffer per thread.
 */
#ifndef SLUICE_LIB_JSON_H
#define SLUICE_LIB_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/*
 * A growable byte buffer with a maximum. Caller-provided storage (embed it or put it on the
 * stack): sl_json_buf_init, appends, then sl_json_buf_fini or sl_json_buf_take.
 */
struct sl_json_buf {
    char *data;      /* read-only: the text, len bytes, not NUL-terminated; NULL until the
                      * first append */
    size_t len;      /* read-only: bytes in data */
    bool is_failed;  /* read-only: an append failed; the text is incomplete */
    bool is_too_big; /* read-only: it failed because it would have passed its maximum (else
                      * memory ran out) */
    size_t _cap;     /* private: bytes allocated */
    size_t _max;     /* private: most bytes it may hold */
};

/* Prepares an empty buffer that fails once it would pass max_bytes. Does not allocate. */
void sl_json_buf_init(struct sl_json_buf *b, size_t max_bytes);

/* Frees the text; the buffer is empty after (its maximum stays) and may be used again. */
void sl_json_buf_fini(struct sl_json_buf *b);

/* Empties the buffer and clears a failure, keeping its memory. Never fails. */
void sl_json_buf_reset(struct sl_json_buf *b);

/*
 * Hands the text over: appends a NUL (which counts against the maximum) and puts the text
 * in *out (returns new; free with sl_free), its length without the NUL in *out_len; the
 * buffer is empty after. Fails with SL_ENOMEM when the buffer failed, too big or out of
 * memory (then *out is NULL, *out_len 0 and the buffer freed).
 */
int sl_json_buf_take(struct sl_json_buf *b, char **out, size_t *out_len);

/*
 * Appenders. None reports failure; a failed buffer ignores them (see is_failed). Inputs
 * are borrowed.
 */

/* Private: sl_json_buf_append when the bytes do not fit the memory already allocated. */
void sl_json_buf_append_grow(struct sl_json_buf *b, const char *s, size_t len);

/*
 * Appends len raw bytes of s, which the caller knows to be JSON text. Inline: the normalized
 * event is written in a few hundred small appends, and a call each cost more than the copy.
 * The allocated size never passes the maximum, so fitting in it is within the maximum.
 */
static inline void sl_json_buf_append(struct sl_json_buf *b, const char *s, size_t len)
{
    if (b->data != NULL && !b->is_failed && len <= b->_cap - b->len) {
        memcpy(b->data + b->len, s, len);
        b->len += len;
        return;
    }
    sl_json_buf_append_grow(b, s, len);
}

/* Appends a string literal as raw bytes. */
#define SL_JSON_BUF_LIT(b, lit) sl_json_buf_append((b), (lit), sizeof(lit) - 1)

/* Appends printf output as raw bytes; the output must stay under 128 bytes (asserted). */
void sl_json_buf_appendf(struct sl_json_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Appends s (len bytes, valid UTF-8, may hold NUL) as a JSON string: quote and backslash
 * escaped, \n \r \t \b \f by name, other bytes below 0x20 and DEL as \u00XX; every other
 * byte, UTF-8 included, passes through unchanged.
 */
void sl_json_append_str(struct sl_json_buf *b, const char *s, size_t len);

/* As sl_json_append_str, or null when s is NULL. */
void sl_json_append_str_or_null(struct sl_json_buf *b, const char *s, size_t len);

/* Appends an integer in decimal. */
void sl_json_append_int(struct sl_json_buf *b, int64_t v);

/*
 * Appends a finite real as the shortest "%.15g".."%.17g" text that reads back as the same
 * double (jansson prints 0.1 as 0.10000000000000001), with ".0" added when that text
 * looks like an integer, so it stays a real. Assumes the C locale's decimal point.
 */
void sl_json_append_real(struct sl_json_buf *b, double v);

/*
 * Appends v (borrowed) as compact JSON: object keys in jansson's order, strings and reals
 * as above. v sits at nesting level depth and the members of an object or array at level
 * d sit at d + 1 (so depth 1 and max_depth 8 allow eight levels of objects and arrays).
 * Returns SL_EINVAL when an object or array lies at a level past max_depth (b then holds
 * part of v). Stops early, returning 0, once b failed: check b->is_failed after.
 */
int sl_json_append_value(struct sl_json_buf *b, const json_t *v, int64_t depth,
                         int64_t max_depth);

/*
 * Deepest nesting of objects and arrays the fast reader builds; deeper text is left to
 * jansson (whose own limit is JSON_PARSER_MAX_DEPTH).
 */
#define SL_JSON_LOAD_FAST_DEPTH 64

/*
 * Parses text (len bytes, borrowed) exactly as json_loadb(text, len, JSON_DECODE_ANY |
 * JSON_REJECT_DUPLICATES, jerr) does: the same tree (members in text order), or for bad
 * JSON the same error text, line, column and position. Most text is read by
 * sl_json_load_fast; what it declines is read by jansson. Returns 0 with a new tree in *out
 * (json_decref it); SL_EINVAL for text that is not JSON, with *jerr filled; SL_ENOMEM
 * (*out is NULL on failure). Any thread.
 */
int sl_json_load(const char *text, size_t len, json_t **out, json_error_t *jerr);

/*
 * The fast half of sl_json_load, exposed for tests and benchmarks: libyajl's lexer building
 * a jansson tree. Takes only text on which the two libraries cannot disagree: an object or
 * array followed by nothing but whitespace, valid UTF-8, no \v or \f, escapes that are
 * plain characters or surrogate pairs (no \u0000, no lone surrogate), no duplicate key,
 * integers within 64 bits, keys up to 256 bytes, nesting up to SL_JSON_LOAD_FAST_DEPTH.
 * Returns 0 with a new tree in *out; SL_EINVAL when it
 * declines (bad JSON included: it writes no error text) or SL_ENOMEM, *out NULL.
 */
int sl_json_load_fast(const char *text, size_t len, json_t **out);

#endif

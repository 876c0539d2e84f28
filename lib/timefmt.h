/*
 * Parsing and printing times: durations ("90s", "15m", "24h", "30d", "2w") and UTC dates
 * ("2026-11-24", "2026-11-24T10:00:00Z", "...+02:00") as people type them, and the strict
 * RFC 3339 times with fractions that clients send in events, to and from microseconds.
 * Pure functions, any thread. Clocks are the callers'.
 */
#ifndef SLUICE_LIB_TIMEFMT_H
#define SLUICE_LIB_TIMEFMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define SL_TIMEFMT_ISO_MAX 32

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" (always 24 characters) and its NUL. */
#define SL_TIMEFMT_ISO_MS_MAX 25

/* Parses a duration into seconds. A bare number is seconds. SL_EINVAL names the text. */
int sl_timefmt_parse_duration(const char *text, int64_t *out_s, struct sl_err *err);

/* Parses a date or RFC 3339 time into unix seconds (UTC). SL_EINVAL names the text. */
int sl_timefmt_parse_date(const char *text, int64_t *out_s, struct sl_err *err);

/* Writes "YYYY-MM-DDTHH:MM:SSZ" for unix seconds s into buf. Returns buf. */
char *sl_timefmt_iso(int64_t s, char buf[SL_TIMEFMT_ISO_MAX]);

/*
 * Parses an RFC 3339 date-time, YYYY-MM-DDTHH:MM:SS[.fraction] then Z or an offset
 * (+HH:MM, -HH:MM), T and Z in either case, into unix microseconds. Digits of the fraction
 * past the sixth are dropped (not rounded). Stricter than sl_timefmt_parse_date: a bare
 * date, a space for the T and a missing offset are refused.
 *
 *   text             len bytes (borrowed; need not be NUL-terminated)
 *   out_us           output: the time on success; unchanged on failure
 *   is_zone_missing  output, may be NULL: set on failure when the text ended where Z or the
 *                    offset should come, so a message can suggest adding one; else false
 *
 * Returns 0, or SL_EINVAL when the text is not such a time.
 */
int sl_timefmt_parse_rfc3339_us(const char *text, size_t len, int64_t *out_us,
                                bool *is_zone_missing);

/*
 * Writes unix microseconds ts_us as "YYYY-MM-DDTHH:MM:SS.mmmZ" into buf: milliseconds,
 * rounded down (towards the past, also before 1970). Times outside the years 0000..9999
 * are clamped to them. Returns buf. Never fails.
 */
char *sl_timefmt_iso_ms(int64_t ts_us, char buf[SL_TIMEFMT_ISO_MS_MAX]);

#endif

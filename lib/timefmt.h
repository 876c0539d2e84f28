/*
 * Parsing and printing the times people type: durations ("90s", "15m", "24h", "30d",
 * "2w") and UTC dates ("2026-11-24", "2026-11-24T10:00:00Z", "...+02:00"). Pure
 * functions, any thread.
 */
#ifndef SLUICE_LIB_TIMEFMT_H
#define SLUICE_LIB_TIMEFMT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define SL_TIMEFMT_ISO_MAX 32

/* Parses a duration into seconds. A bare number is seconds. SL_EINVAL names the text. */
int sl_timefmt_parse_duration(const char *text, int64_t *out_s, struct sl_err *err);

/* Parses a date or RFC 3339 time into unix seconds (UTC). SL_EINVAL names the text. */
int sl_timefmt_parse_date(const char *text, int64_t *out_s, struct sl_err *err);

/* Writes "YYYY-MM-DDTHH:MM:SSZ" for unix seconds s into buf. Returns buf. */
char *sl_timefmt_iso(int64_t s, char buf[SL_TIMEFMT_ISO_MAX]);

#endif

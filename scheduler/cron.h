/*
 * Schedules: standard 5-field cron expressions and "@every DURATION", parsed once and then
 * asked for their next firing time. Pure functions of the expression and the time given,
 * so tests never wait on a clock (STYLE §9); any thread.
 *
 * Accepted forms, per field (minute 0-59, hour 0-23, day of month 1-31, month 1-12 or
 * JAN-DEC, day of week 0-7 or SUN-SAT with 0 and 7 both Sunday): "*", "N", "N-M", "*\/S",
 * "N-M/S", "N/S" (N to the field's end by S), and comma lists of those. Names are
 * case-insensitive and may bound ranges ("MON-FRI"). Macros: @yearly (@annually),
 * @monthly, @weekly, @daily (@midnight), @hourly. "@every 30s" (units s, m, h, d, combined
 * as in "1h30m") fires at every multiple of the period since the Unix epoch, so every
 * scheduler computes the same slots.
 *
 * As in Vixie cron, when both day of month and day of week are restricted (neither starts
 * with '*'), a day matches when either does; otherwise both must.
 *
 * Local-time schedules (sched_cron_next_tz) are evaluated on the zone's wall clock:
 * - a local time that does not exist (spring-forward gap) fires at the first valid
 *   instant after it, the moment of the change; several such times fire once there;
 * - a local time that occurs twice (fall-back) fires once, at its first occurrence, so an
 *   hourly job skips the repeated hour.
 * "@every" ignores the zone.
 */
#ifndef SLUICE_SCHEDULER_CRON_H
#define SLUICE_SCHEDULER_CRON_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "tz.h"

/* Longest expression accepted, in bytes. */
#define SCHED_CRON_EXPR_MAX 128

/* A parsed schedule. Plain data: copy it freely. */
struct sched_cron {
    uint64_t minutes;   /* bit m set: minute m (0-59) matches */
    uint32_t hours;     /* bit h: hour 0-23 */
    uint32_t days;      /* bit d: day of month 1-31 */
    uint16_t months;    /* bit m: month 1-12 */
    uint8_t weekdays;   /* bit d: 0 Sunday .. 6 Saturday */
    bool is_dom_restricted; /* day-of-month field did not start with '*' */
    bool is_dow_restricted; /* day-of-week field did not start with '*' */
    int64_t every_s;    /* > 0 for "@every": the period; the fields above are unused */
};

/*
 * Parses expr into *out. On failure returns SL_EINVAL, leaves *out unchanged and fills
 * err with where and what, e.g. "field 2 (hour): 24 is out of range 0-23" or
 * "expected 5 fields (minute hour day-of-month month day-of-week), got 6".
 */
int sched_cron_parse(const char *expr, struct sched_cron *out, struct sl_err *err);

/*
 * The first firing strictly after after_s (unix seconds), in UTC. Firings fall on whole
 * minutes (cron) or multiples of the period (@every). Returns -1 only if the schedule
 * cannot fire within the next 30 years (sched_cron_parse refuses the impossible ones).
 */
int64_t sched_cron_next(const struct sched_cron *c, int64_t after_s);

/*
 * As sched_cron_next, on the wall clock of zone tz (NULL: UTC) with the gap and repeat
 * rules above. Returns a UTC instant strictly after after_s.
 */
int64_t sched_cron_next_tz(const struct sched_cron *c, const struct sched_tz *tz,
                           int64_t after_s);

#endif

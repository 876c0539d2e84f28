/*
 * Tests scheduler/cron.c: every field form, names, macros, @every, next-fire times across
 * month and year ends and Feb 29, the day-of-month/day-of-week OR rule, local schedules
 * through the DST changes of 2026 in Europe/Berlin and America/New_York (and past 2037,
 * where the zone's footer rule takes over), and every kind of bad expression with its
 * message. Times are written as ISO strings; no test waits on a clock.
 */
#include <stdlib.h>

#include "cron.h"
#include "test.h"
#include "timefmt.h"
#include "tz.h"

#define ZONEINFO "/usr/share/zoneinfo"

static int64_t at(const char *iso)
{
    struct sl_err err;
    int64_t s = 0;

    ASSERT_OK(sl_timefmt_parse_date(iso, &s, &err), &err);
    return s;
}

static struct sched_cron parse_ok(const char *expr)
{
    struct sched_cron c;
    struct sl_err err;

    sl_err_clear(&err);
    if (sched_cron_parse(expr, &c, &err) != 0) {
        TEST_FAIL("'%s' did not parse: %s", expr, err.msg);
    }
    return c;
}

static struct sched_tz *zone(const char *name)
{
    struct sched_tz *tz = NULL;
    struct sl_err err;

    ASSERT_OK(sched_tz_create(ZONEINFO, name, &tz, &err), &err);
    return tz;
}

/* Checks the firings of expr in tz (NULL: UTC) after `after`, one after the other. */
static void expect_series(const char *expr, struct sched_tz *tz, const char *after,
                          const char *const *want)
{
    struct sched_cron c = parse_ok(expr);
    int64_t t = at(after);

    for (size_t i = 0; want[i] != NULL; i++) {
        char from[SL_TIMEFMT_ISO_MAX], got[SL_TIMEFMT_ISO_MAX];
        int64_t next = sched_cron_next_tz(&c, tz, t);

        if (next != at(want[i])) {
            TEST_FAIL("'%s' in %s after %s: got %s, want %s", expr, sched_tz_name(tz),
                      sl_timefmt_iso(t, from), next < 0 ? "never" : sl_timefmt_iso(next, got),
                      want[i]);
        }
        ASSERT_TRUE(next > t);
        t = next;
    }
}

#define SERIES(expr, tz, after, ...)                                                      \
    do {                                                                                  \
        const char *const want_[] = {__VA_ARGS__, NULL};                                  \
        expect_series((expr), (tz), (after), want_);                                      \
    } while (0)

static void expect_error(const char *expr, const char *message)
{
    struct sched_cron c;
    struct sched_cron before;
    struct sl_err err;

    memset(&c, 0x5a, sizeof(c));
    before = c;
    sl_err_clear(&err);
    if (sched_cron_parse(expr, &c, &err) != SL_EINVAL) {
        TEST_FAIL("'%s' parsed, want the error \"%s\"", expr, message);
    }
    if (strstr(err.msg, message) == NULL) {
        TEST_FAIL("'%s': error \"%s\" does not contain \"%s\"", expr, err.msg, message);
    }
    /* A failed parse leaves the output as it was. */
    ASSERT_TRUE(memcmp(&c, &before, sizeof(c)) == 0);
}

/* ---- fields ---- */

static void test_cron_every_minute_and_fixed_times(void)
{
    SERIES("* * * * *", NULL, "2026-05-05T10:00:30Z", "2026-05-05T10:01:00Z",
           "2026-05-05T10:02:00Z");
    /* Strictly after: a time on a firing gets the next one. */
    SERIES("* * * * *", NULL, "2026-05-05T10:01:00Z", "2026-05-05T10:02:00Z");
    SERIES("30 4 * * *", NULL, "2026-05-05T04:30:00Z", "2026-05-06T04:30:00Z",
           "2026-05-07T04:30:00Z");
    SERIES("0 0 1 1 *", NULL, "2026-05-05T00:00:00Z", "2027-01-01T00:00:00Z",
           "2028-01-01T00:00:00Z");
    /* Across the end of the year, on its last minute. */
    SERIES("59 23 31 12 *", NULL, "2026-12-31T23:59:00Z", "2027-12-31T23:59:00Z");
    /* Before the epoch too. */
    SERIES("0 12 * * *", NULL, "1969-12-31T13:00:00Z", "1970-01-01T12:00:00Z");
}

static void test_cron_lists_ranges_and_steps(void)
{
    SERIES("*/15 * * * *", NULL, "2026-05-05T10:01:00Z", "2026-05-05T10:15:00Z",
           "2026-05-05T10:30:00Z", "2026-05-05T10:45:00Z", "2026-05-05T11:00:00Z");
    SERIES("10-50/20 * * * *", NULL, "2026-05-05T10:00:00Z", "2026-05-05T10:10:00Z",
           "2026-05-05T10:30:00Z", "2026-05-05T10:50:00Z", "2026-05-05T11:10:00Z");
    /* "N/S" runs from N to the end of the field. */
    SERIES("5/20 * * * *", NULL, "2026-05-05T10:00:00Z", "2026-05-05T10:05:00Z",
           "2026-05-05T10:25:00Z", "2026-05-05T10:45:00Z", "2026-05-05T11:05:00Z");
    SERIES("0,30 8-9 * * *", NULL, "2026-05-05T07:00:00Z", "2026-05-05T08:00:00Z",
           "2026-05-05T08:30:00Z", "2026-05-05T09:00:00Z", "2026-05-05T09:30:00Z",
           "2026-05-06T08:00:00Z");
    SERIES("0 */6 * * *", NULL, "2026-05-05T07:00:00Z", "2026-05-05T12:00:00Z",
           "2026-05-05T18:00:00Z", "2026-05-06T00:00:00Z");
    SERIES("0 0 1-7/3,20 * *", NULL, "2026-05-01T00:00:00Z", "2026-05-04T00:00:00Z",
           "2026-05-07T00:00:00Z", "2026-05-20T00:00:00Z", "2026-06-01T00:00:00Z");
    /* A step larger than an explicit range just gives its start. */
    SERIES("0 1-3/5 * * *", NULL, "2026-05-05T00:00:00Z", "2026-05-05T01:00:00Z",
           "2026-05-06T01:00:00Z");
}

static void test_cron_month_and_weekday_names(void)
{
    /* 2026-05-08 is a Friday. */
    SERIES("0 9 * * MON-FRI", NULL, "2026-05-08T09:00:00Z", "2026-05-11T09:00:00Z",
           "2026-05-12T09:00:00Z");
    SERIES("0 0 1 jan,Jul *", NULL, "2026-02-01T00:00:00Z", "2026-07-01T00:00:00Z",
           "2027-01-01T00:00:00Z");
    SERIES("0 0 1 MAR-MAY/2 *", NULL, "2026-01-01T00:00:00Z", "2026-03-01T00:00:00Z",
           "2026-05-01T00:00:00Z", "2027-03-01T00:00:00Z");
    /* 0 and 7 are both Sunday; 2026-05-10 is a Sunday. */
    SERIES("0 0 * * 7", NULL, "2026-05-08T00:00:00Z", "2026-05-10T00:00:00Z",
           "2026-05-17T00:00:00Z");
    SERIES("0 0 * * 0", NULL, "2026-05-08T00:00:00Z", "2026-05-10T00:00:00Z");
    SERIES("0 0 * * SUN", NULL, "2026-05-08T00:00:00Z", "2026-05-10T00:00:00Z");
    SERIES("0 0 * * 5-7", NULL, "2026-05-07T00:00:00Z", "2026-05-08T00:00:00Z",
           "2026-05-09T00:00:00Z", "2026-05-10T00:00:00Z", "2026-05-15T00:00:00Z");
}

static void test_cron_dom_dow_or_rule(void)
{
    /* Both restricted: the 13th or any Friday (2026-01-02 and 01-09 are Fridays). */
    SERIES("0 0 13 * FRI", NULL, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z",
           "2026-01-09T00:00:00Z", "2026-01-13T00:00:00Z", "2026-01-16T00:00:00Z");
    /* Only one restricted: that one decides. */
    SERIES("0 0 13 * *", NULL, "2026-01-01T00:00:00Z", "2026-01-13T00:00:00Z",
           "2026-02-13T00:00:00Z");
    SERIES("0 0 * * FRI", NULL, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z",
           "2026-01-09T00:00:00Z");
    /* A field starting with '*' counts as unrestricted (Vixie): odd days AND Fridays. */
    SERIES("0 0 */2 * FRI", NULL, "2026-01-01T00:00:00Z", "2026-01-09T00:00:00Z",
           "2026-01-23T00:00:00Z");
}

static void test_cron_month_ends_and_feb_29(void)
{
    SERIES("0 0 29 2 *", NULL, "2026-01-01T00:00:00Z", "2028-02-29T00:00:00Z",
           "2032-02-29T00:00:00Z");
    /* 2100 is not a leap year: eight years to the next Feb 29. */
    SERIES("0 0 29 2 *", NULL, "2096-03-01T00:00:00Z", "2104-02-29T00:00:00Z");
    /* 2000 is one. */
    SERIES("0 0 29 2 *", NULL, "1999-01-01T00:00:00Z", "2000-02-29T00:00:00Z");
    /* The 31st skips 30-day months. */
    SERIES("0 12 31 * *", NULL, "2026-04-01T00:00:00Z", "2026-05-31T12:00:00Z",
           "2026-07-31T12:00:00Z", "2026-08-31T12:00:00Z", "2026-10-31T12:00:00Z");
    SERIES("0 0 30 * *", NULL, "2026-01-31T00:00:00Z", "2026-03-30T00:00:00Z");
    /* Feb 29 or a Monday in February: the OR rule does not wait for a leap year. */
    SERIES("0 0 29 2 MON", NULL, "2026-02-24T00:00:00Z", "2027-02-01T00:00:00Z",
           "2027-02-08T00:00:00Z");
}

static void test_cron_macros(void)
{
    SERIES("@hourly", NULL, "2026-05-05T10:20:00Z", "2026-05-05T11:00:00Z");
    SERIES("@daily", NULL, "2026-05-05T10:20:00Z", "2026-05-06T00:00:00Z");
    SERIES("@midnight", NULL, "2026-05-05T10:20:00Z", "2026-05-06T00:00:00Z");
    SERIES("@weekly", NULL, "2026-05-05T10:20:00Z", "2026-05-10T00:00:00Z");
    SERIES("@monthly", NULL, "2026-05-05T10:20:00Z", "2026-06-01T00:00:00Z");
    SERIES("@yearly", NULL, "2026-05-05T10:20:00Z", "2027-01-01T00:00:00Z");
    SERIES("@annually", NULL, "2026-05-05T10:20:00Z", "2027-01-01T00:00:00Z");
    SERIES("  @DAILY  ", NULL, "2026-05-05T10:20:00Z", "2026-05-06T00:00:00Z");
}

static void test_cron_every(void)
{
    struct sched_cron c = parse_ok("@every 30s");

    ASSERT_EQ_INT(c.every_s, 30);
    ASSERT_EQ_INT(sched_cron_next(&c, 100), 120);
    ASSERT_EQ_INT(sched_cron_next(&c, 120), 150);
    ASSERT_EQ_INT(sched_cron_next(&c, -1), 0);
    ASSERT_EQ_INT(parse_ok("@every 1h30m").every_s, 5400);
    ASSERT_EQ_INT(parse_ok("@every 2d").every_s, 172800);
    ASSERT_EQ_INT(parse_ok("@every 1s").every_s, 1);
    ASSERT_EQ_INT(parse_ok("@every 366d").every_s, 366 * 86400);
    /* Slots are multiples of the period since the epoch, the same for every scheduler. */
    SERIES("@every 5m", NULL, "2026-05-05T10:02:10Z", "2026-05-05T10:05:00Z",
           "2026-05-05T10:10:00Z");
    /* A zone does not move them. */
    {
        struct sched_tz *berlin = zone("Europe/Berlin");

        SERIES("@every 5m", berlin, "2026-03-29T00:58:00Z", "2026-03-29T01:00:00Z",
               "2026-03-29T01:05:00Z");
        sched_tz_destroy(berlin);
    }
}

/* ---- zones ---- */

static void test_cron_zone_fixed_times(void)
{
    struct sched_tz *berlin = zone("Europe/Berlin");
    struct sched_tz *ny = zone("America/New_York");

    /* 09:00 local is 07:00 UTC in summer (CEST) and 08:00 UTC in winter (CET). */
    SERIES("0 9 * * *", berlin, "2026-07-01T00:00:00Z", "2026-07-01T07:00:00Z");
    SERIES("0 9 * * *", berlin, "2026-12-01T00:00:00Z", "2026-12-01T08:00:00Z");
    SERIES("0 9 * * MON-FRI", ny, "2026-07-03T14:00:00Z", "2026-07-06T13:00:00Z");
    SERIES("0 9 * * MON-FRI", ny, "2026-12-04T15:00:00Z", "2026-12-07T14:00:00Z");
    /* Midnight local on New Year's Eve is still 2026 in UTC for New York. */
    SERIES("0 0 1 1 *", ny, "2026-06-01T00:00:00Z", "2027-01-01T05:00:00Z");
    /* UTC given as a zone behaves like no zone. */
    {
        struct sched_tz *utc = zone("UTC");

        SERIES("30 2 * * *", utc, "2026-03-28T12:00:00Z", "2026-03-29T02:30:00Z");
        sched_tz_destroy(utc);
    }
    sched_tz_destroy(ny);
    sched_tz_destroy(berlin);
}

static void test_cron_zone_spring_forward_gap(void)
{
    struct sched_tz *berlin = zone("Europe/Berlin");
    struct sched_tz *ny = zone("America/New_York");

    /* Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST at 01:00 UTC. 02:30 does not exist
     * and runs at the first valid instant after it, 03:00 CEST. */
    SERIES("30 2 * * *", berlin, "2026-03-28T12:00:00Z", "2026-03-29T01:00:00Z",
           "2026-03-30T00:30:00Z");
    /* Several times in the gap run once, at the change. */
    SERIES("*/15 2 * * *", berlin, "2026-03-28T12:00:00Z", "2026-03-29T01:00:00Z",
           "2026-03-30T00:00:00Z");
    /* Hourly: 01:00 CET, then 03:00 CEST; nothing is lost or doubled. */
    SERIES("0 * * * *", berlin, "2026-03-28T23:30:00Z", "2026-03-29T00:00:00Z",
           "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z");
    /* New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT at 07:00 UTC. */
    SERIES("30 2 * * *", ny, "2026-03-07T12:00:00Z", "2026-03-08T07:00:00Z",
           "2026-03-09T06:30:00Z");
    SERIES("0 3 * * *", ny, "2026-03-07T12:00:00Z", "2026-03-08T07:00:00Z",
           "2026-03-09T07:00:00Z");
    sched_tz_destroy(ny);
    sched_tz_destroy(berlin);
}

static void test_cron_zone_fall_back_repeat(void)
{
    struct sched_tz *berlin = zone("Europe/Berlin");
    struct sched_tz *ny = zone("America/New_York");

    /* Berlin, 2026-10-25: 03:00 CEST falls back to 02:00 CET at 01:00 UTC, so 02:30 occurs
     * at 00:30 and 01:30 UTC. It runs once, at the first. */
    SERIES("30 2 * * *", berlin, "2026-10-24T12:00:00Z", "2026-10-25T00:30:00Z",
           "2026-10-26T01:30:00Z");
    /* Asked between the two occurrences, it does not run the second one. */
    SERIES("30 2 * * *", berlin, "2026-10-25T01:00:00Z", "2026-10-26T01:30:00Z");
    /* Hourly skips the repeated hour: 02:00 CEST, then 03:00 CET. */
    SERIES("0 * * * *", berlin, "2026-10-24T23:30:00Z", "2026-10-25T00:00:00Z",
           "2026-10-25T02:00:00Z", "2026-10-25T03:00:00Z");
    /* New York, 2026-11-01: 02:00 EDT falls back to 01:00 EST at 06:00 UTC. */
    SERIES("30 1 * * *", ny, "2026-10-31T12:00:00Z", "2026-11-01T05:30:00Z",
           "2026-11-02T06:30:00Z");
    SERIES("*/20 1 * * *", ny, "2026-11-01T04:50:00Z", "2026-11-01T05:00:00Z",
           "2026-11-01T05:20:00Z", "2026-11-01T05:40:00Z", "2026-11-02T06:00:00Z");
    sched_tz_destroy(ny);
    sched_tz_destroy(berlin);
}

static void test_cron_zone_after_2037_uses_footer_rule(void)
{
    struct sched_tz *berlin = zone("Europe/Berlin");

    /* 2040-03-25 and 2040-10-28 are the last Sundays of March and October. */
    SERIES("30 2 * * *", berlin, "2040-03-24T12:00:00Z", "2040-03-25T01:00:00Z",
           "2040-03-26T00:30:00Z");
    SERIES("30 2 * * *", berlin, "2040-10-27T12:00:00Z", "2040-10-28T00:30:00Z",
           "2040-10-29T01:30:00Z");
    sched_tz_destroy(berlin);
}

/* ---- bad expressions ---- */

static void test_cron_bad_expressions(void)
{
    char longer[200];

    expect_error("", "the schedule is empty");
    expect_error("   ", "the schedule is empty");
    expect_error("* * * *", "expected 5 fields (minute hour day-of-month month day-of-week), "
                            "got 4");
    expect_error("0 0 * * * *", "got 6 (seconds and years are not supported)");
    expect_error("60 * * * *", "field 1 (minute): 60 is out of range 0-59");
    expect_error("0 24 * * *", "field 2 (hour): 24 is out of range 0-23");
    expect_error("0 0 0 * *", "field 3 (day of month): 0 is out of range 1-31");
    expect_error("0 0 32 * *", "field 3 (day of month): 32 is out of range 1-31");
    expect_error("0 0 * 13 *", "field 4 (month): 13 is out of range 1-12");
    expect_error("0 0 * 0 *", "field 4 (month): 0 is out of range 1-12");
    expect_error("0 0 * * 8", "field 5 (day of week): 8 is out of range 0-7");
    expect_error("0 0 * 99999999999 *", "field 4 (month): 999999 is out of range 1-12");
    expect_error("0 0 * FOO *", "field 4 (month): 'FOO' is not a month name (JAN-DEC) or a "
                                "number");
    expect_error("0 0 * JANUARY *", "field 4 (month): 'JANUARY' is not a month name");
    expect_error("0 0 * * FUN", "field 5 (day of week): 'FUN' is not a weekday name (SUN-SAT)");
    expect_error("MON * * * *", "field 1 (minute): 'MON' is not a number");
    expect_error("5x * * * *", "field 1 (minute): '5x' is not a number");
    expect_error("? * * * *", "field 1 (minute): unexpected '?' in '?'");
    expect_error("*/0 * * * *", "field 1 (minute): step 0 is out of range 1-59");
    expect_error("*/60 * * * *", "field 1 (minute): step 60 is out of range 1-59");
    expect_error("0 */x * * *", "field 2 (hour): step 'x' is not a number");
    expect_error("*/ * * * *", "field 1 (minute): '/' needs a step after it");
    expect_error("/5 * * * *", "field 1 (minute): a value is missing before '/'");
    expect_error("0 5-1 * * *", "field 2 (hour): range 5-1 is backwards");
    expect_error("0 0 * * FRI-MON", "field 5 (day of week): range 5-1 is backwards");
    expect_error("0 1- * * *", "field 2 (hour): a value is missing");
    expect_error("1-* * * * *", "field 1 (minute): '*' cannot be part of a range");
    expect_error("1,,2 * * * *", "field 1 (minute): empty item in list '1,,2'");
    expect_error("1, * * * *", "field 1 (minute): empty item in list '1,'");
    expect_error("0 0 30 2 *", "field 3 (day of month): day 30 never occurs in month 2");
    expect_error("0 0 31 4,6,9,11 *", "day 31 never occurs in month 4");
    expect_error("@fortnightly", "unknown macro '@fortnightly'");
    expect_error("@reboot", "@reboot is not supported");
    expect_error("@daily at noon", "unexpected 'at noon' after @daily");
    expect_error("@every", "@every needs a period such as 30s");
    expect_error("@every   ", "@every needs a period");
    expect_error("@every 0s", "@every: the period must be at least 1s");
    expect_error("@every 5", "@every: '5' needs a unit after 5 (s, m, h or d)");
    expect_error("@every 5 minutes", "@every: '5 minutes' needs a unit after 5");
    expect_error("@every 5x", "@every: unknown unit 'x' in '5x'");
    expect_error("@every -5s", "@every: unexpected '-' in '-5s'");
    expect_error("@every 367d", "@every: '367d' is longer than 366d");
    expect_error("@every 5m now", "@every: unexpected 'now' after the period");
    memset(longer, '1', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    expect_error(longer, "longer than 127 bytes");
}

/* Whatever the text, parsing never crashes, and what parses always fires again. */
static void test_cron_fuzz_parse_next(void)
{
    static const char alphabet[] = "0123456789*/-,@ MONFRIJANvery smhd";
    unsigned seed = 12345;

    for (int i = 0; i < 20000; i++) {
        char expr[24];
        size_t len = (size_t)(seed % 20);
        struct sched_cron c;

        for (size_t k = 0; k < len; k++) {
            seed = seed * 1103515245u + 12345u;
            expr[k] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
        }
        expr[len] = '\0';
        seed = seed * 1103515245u + 12345u;
        if (sched_cron_parse(expr, &c, NULL) == 0) {
            int64_t next = sched_cron_next(&c, 1780000000);

            ASSERT_TRUE(next > 1780000000);
        }
    }
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_cron_every_minute_and_fixed_times),
        TEST_CASE(test_cron_lists_ranges_and_steps),
        TEST_CASE(test_cron_month_and_weekday_names),
        TEST_CASE(test_cron_dom_dow_or_rule),
        TEST_CASE(test_cron_month_ends_and_feb_29),
        TEST_CASE(test_cron_macros),
        TEST_CASE(test_cron_every),
        TEST_CASE(test_cron_zone_fixed_times),
        TEST_CASE(test_cron_zone_spring_forward_gap),
        TEST_CASE(test_cron_zone_fall_back_repeat),
        TEST_CASE(test_cron_zone_after_2037_uses_footer_rule),
        TEST_CASE(test_cron_bad_expressions),
        TEST_CASE(test_cron_fuzz_parse_next),
        {NULL, NULL},
    };
    return test_main(argc, argv, cases);
}

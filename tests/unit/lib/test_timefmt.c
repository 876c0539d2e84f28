/*
 * Tests lib/timefmt.c: durations and dates as people type them, and the RFC 3339 times
 * with microseconds that events carry, parsed and printed with milliseconds, checked
 * against libc's calendar over two centuries.
 */
#include <stdint.h>

#include "err.h"
#include "test.h"
#include "timefmt.h"

#define US INT64_C(1000000)

/* Parses text (its whole length) and returns the time; fails the test if it is refused. */
static int64_t parse_us(const char *text)
{
    int64_t us = 0;
    bool is_zone_missing = true;
    int rc = sl_timefmt_parse_rfc3339_us(text, strlen(text), &us, &is_zone_missing);

    if (rc != 0) {
        TEST_FAIL("'%s' was refused (%d)", text, rc);
    }
    ASSERT_TRUE(!is_zone_missing);
    return us;
}

static void test_timefmt_rfc3339_accepts(void)
{
    ASSERT_EQ_INT(parse_us("1970-01-01T00:00:00Z"), 0);
    ASSERT_EQ_INT(parse_us("2026-11-24T10:00:00Z"), INT64_C(1795514400) * US);
    ASSERT_EQ_INT(parse_us("2026-11-24t10:00:00z"), INT64_C(1795514400) * US);
    /* Fractions: up to six digits count, later ones are dropped, not rounded. */
    ASSERT_EQ_INT(parse_us("2026-11-24T10:00:00.5Z"), INT64_C(1795514400) * US + 500000);
    ASSERT_EQ_INT(parse_us("2026-11-24T10:00:00.123456789Z"),
                  INT64_C(1795514400) * US + 123456);
    ASSERT_EQ_INT(parse_us("2026-11-24T10:00:00.9999999Z"), INT64_C(1795514400) * US + 999999);
    /* Offsets move the time to UTC. */
    ASSERT_EQ_INT(parse_us("2026-11-24T12:00:00+02:00"), INT64_C(1795514400) * US);
    ASSERT_EQ_INT(parse_us("2026-11-24T09:30:00.25-00:30"), INT64_C(1795514400) * US + 250000);
    ASSERT_EQ_INT(parse_us("2026-11-25T09:59:00+23:59"), INT64_C(1795514400) * US);
    /* Leap days, a leap second and times before 1970. */
    ASSERT_EQ_INT(parse_us("2024-02-29T00:00:00Z"), INT64_C(1709164800) * US);
    ASSERT_EQ_INT(parse_us("2000-02-29T12:00:00Z"), INT64_C(951825600) * US);
    ASSERT_EQ_INT(parse_us("2016-12-31T23:59:60Z"), INT64_C(1483228800) * US);
    ASSERT_EQ_INT(parse_us("1969-12-31T23:59:59.999999Z"), -1);
    ASSERT_EQ_INT(parse_us("0000-01-01T00:00:00Z"), INT64_C(-62167219200) * US);
    ASSERT_EQ_INT(parse_us("9999-12-31T23:59:59.999999Z"), INT64_C(253402300799) * US + 999999);
}

static void test_timefmt_rfc3339_refuses(void)
{
    static const struct {
        const char *text;
        bool is_zone_missing;
    } cases[] = {
        {"", false},
        {"2026-11-24", false},
        {"2026-11-24T10:00:00", true},
        {"2026-11-24T10:00:00.123", true},
        {"2026-13-01T10:00:00", true}, /* ends where the zone goes: that is said first */
        {"2026-11-24 10:00:00Z", false},
        {"2026-11-24T10:00Z", false},
        {"2026-11-24T10:00:00.Z", false},
        {"2026-11-24T10:00:00+2:00", false},
        {"2026-11-24T10:00:00+0200", false},
        {"2026-11-24T10:00:00+24:00", false},
        {"2026-11-24T10:00:00+02:60", false},
        {"2026-11-24T10:00:00ZZ", false},
        {"2026-11-24T10:00:00Z ", false},
        {"2026-11-24T10:00:00UTC", false},
        {"2026-02-29T10:00:00Z", false},
        {"1900-02-29T10:00:00Z", false},
        {"2026-04-31T10:00:00Z", false},
        {"2026-00-10T10:00:00Z", false},
        {"2026-11-00T10:00:00Z", false},
        {"2026-11-24T24:00:00Z", false},
        {"2026-11-24T10:60:00Z", false},
        {"2026-11-24T10:00:61Z", false},
        {"+2026-11-24T10:00:00Z", false},
        {"2026-1-24T10:00:00Z", false},
        {"２026-11-24T10:00:00Z", false},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t us = 42;
        bool is_zone_missing = !cases[i].is_zone_missing;
        int rc = sl_timefmt_parse_rfc3339_us(cases[i].text, strlen(cases[i].text), &us,
                                             &is_zone_missing);

        if (rc != SL_EINVAL) {
            TEST_FAIL("'%s' gave %d, want SL_EINVAL", cases[i].text, rc);
        }
        ASSERT_EQ_INT(us, 42);
        if (is_zone_missing != cases[i].is_zone_missing) {
            TEST_FAIL("'%s': is_zone_missing %d", cases[i].text, is_zone_missing);
        }
        /* The flag is optional. */
        ASSERT_EQ_INT(sl_timefmt_parse_rfc3339_us(cases[i].text, strlen(cases[i].text), &us,
                                                  NULL), SL_EINVAL);
    }
}

static void test_timefmt_rfc3339_reads_only_len_bytes(void)
{
    static const char text[] = "2026-11-24T10:00:00Zjunk";
    int64_t us = 0;

    ASSERT_OK(sl_timefmt_parse_rfc3339_us(text, 20, &us, NULL), NULL);
    ASSERT_EQ_INT(us, INT64_C(1795514400) * US);
    ASSERT_EQ_INT(sl_timefmt_parse_rfc3339_us(text, sizeof(text) - 1, &us, NULL), SL_EINVAL);
    /* Cut inside the text: a NUL-free prefix shorter than a time. */
    ASSERT_EQ_INT(sl_timefmt_parse_rfc3339_us(text, 18, &us, NULL), SL_EINVAL);
    /* A NUL inside the given length is just a bad byte. */
    ASSERT_EQ_INT(sl_timefmt_parse_rfc3339_us("2026-11-24T10:00:00\0Z", 21, &us, NULL),
                  SL_EINVAL);
}

static void test_timefmt_iso_ms(void)
{
    char buf[SL_TIMEFMT_ISO_MS_MAX];

    ASSERT_EQ_STR(sl_timefmt_iso_ms(0, buf), "1970-01-01T00:00:00.000Z");
    ASSERT_EQ_STR(sl_timefmt_iso_ms(INT64_C(1795514400) * US + 123999, buf),
                  "2026-11-24T10:00:00.123Z");
    /* Rounded down, also before 1970. */
    ASSERT_EQ_STR(sl_timefmt_iso_ms(-1, buf), "1969-12-31T23:59:59.999Z");
    ASSERT_EQ_STR(sl_timefmt_iso_ms(-1000, buf), "1969-12-31T23:59:59.999Z");
    ASSERT_EQ_STR(sl_timefmt_iso_ms(-1001, buf), "1969-12-31T23:59:59.998Z");
    ASSERT_EQ_STR(sl_timefmt_iso_ms(INT64_C(1709164800) * US, buf), "2024-02-29T00:00:00.000Z");
    /* Clamped to years 0000..9999. */
    ASSERT_EQ_STR(sl_timefmt_iso_ms(INT64_MIN, buf), "0000-01-01T00:00:00.000Z");
    ASSERT_EQ_STR(sl_timefmt_iso_ms(INT64_MAX, buf), "9999-12-31T23:59:59.999Z");
    ASSERT_EQ_STR(sl_timefmt_iso_ms(INT64_C(-62167219200) * US, buf),
                  "0000-01-01T00:00:00.000Z");
    ASSERT_EQ_INT(strlen(buf), SL_TIMEFMT_ISO_MS_MAX - 1);
}

/* Every 9 hours 17 minutes and some microseconds from 1901 to 2100: the calendar agrees
 * with libc's (sl_timefmt_iso), and parsing what was printed gives the millisecond back. */
static void test_timefmt_iso_ms_matches_libc_and_parses_back(void)
{
    const int64_t step_us = (INT64_C(9) * 3600 + 17 * 60) * US + 654321;

    for (int64_t us = INT64_C(-2177452800) * US; us < INT64_C(4102444800) * US; us += step_us) {
        char ms[SL_TIMEFMT_ISO_MS_MAX];
        char s[SL_TIMEFMT_ISO_MAX];
        int64_t floor_s = us / US - (us % US < 0);
        int64_t floor_ms = us / 1000 - (us % 1000 < 0);
        int64_t back = 0;

        sl_timefmt_iso_ms(us, ms);
        sl_timefmt_iso(floor_s, s);
        if (strncmp(ms, s, 19) != 0) {
            TEST_FAIL("%" PRId64 " us: %s but libc says %s", us, ms, s);
        }
        ASSERT_OK(sl_timefmt_parse_rfc3339_us(ms, strlen(ms), &back, NULL), NULL);
        ASSERT_EQ_INT(back, floor_ms * 1000);
    }
}

static void test_timefmt_duration(void)
{
    int64_t s = 0;
    struct sl_err err;

    ASSERT_OK(sl_timefmt_parse_duration("90", &s, &err), &err);
    ASSERT_EQ_INT(s, 90);
    ASSERT_OK(sl_timefmt_parse_duration("90s", &s, &err), &err);
    ASSERT_EQ_INT(s, 90);
    ASSERT_OK(sl_timefmt_parse_duration("15m", &s, &err), &err);
    ASSERT_EQ_INT(s, 900);
    ASSERT_OK(sl_timefmt_parse_duration("24h", &s, &err), &err);
    ASSERT_EQ_INT(s, 86400);
    ASSERT_OK(sl_timefmt_parse_duration("30d", &s, &err), &err);
    ASSERT_EQ_INT(s, 30 * 86400);
    ASSERT_OK(sl_timefmt_parse_duration("2w", &s, &err), &err);
    ASSERT_EQ_INT(s, 14 * 86400);
    ASSERT_EQ_INT(sl_timefmt_parse_duration("5y", &s, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "unknown unit");
    ASSERT_EQ_INT(sl_timefmt_parse_duration("5ms", &s, &err), SL_EINVAL);
    ASSERT_EQ_INT(sl_timefmt_parse_duration("-5s", &s, &err), SL_EINVAL);
    ASSERT_EQ_INT(sl_timefmt_parse_duration("s", &s, NULL), SL_EINVAL);
    ASSERT_EQ_INT(sl_timefmt_parse_duration("99999999999999999w", &s, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "too long");
}

static void test_timefmt_date(void)
{
    int64_t s = 0;
    struct sl_err err;
    char buf[SL_TIMEFMT_ISO_MAX];

    ASSERT_OK(sl_timefmt_parse_date("2026-11-24", &s, &err), &err);
    ASSERT_EQ_INT(s, INT64_C(1795478400));
    ASSERT_OK(sl_timefmt_parse_date("2026-11-24T10:00:00Z", &s, &err), &err);
    ASSERT_EQ_INT(s, INT64_C(1795514400));
    ASSERT_OK(sl_timefmt_parse_date("2026-11-24 12:00:00.75+02:00", &s, &err), &err);
    ASSERT_EQ_INT(s, INT64_C(1795514400));
    ASSERT_EQ_INT(sl_timefmt_parse_date("2026-11-24T10:00:00", &s, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "is not a date");
    ASSERT_EQ_INT(sl_timefmt_parse_date("2026-02-29", &s, &err), SL_EINVAL);
    ASSERT_EQ_INT(sl_timefmt_parse_date("24.11.2026", &s, NULL), SL_EINVAL);
    ASSERT_EQ_STR(sl_timefmt_iso(INT64_C(1795514400), buf), "2026-11-24T10:00:00Z");
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_timefmt_rfc3339_accepts),
        TEST_CASE(test_timefmt_rfc3339_refuses),
        TEST_CASE(test_timefmt_rfc3339_reads_only_len_bytes),
        TEST_CASE(test_timefmt_iso_ms),
        TEST_CASE(test_timefmt_iso_ms_matches_libc_and_parses_back),
        TEST_CASE(test_timefmt_duration),
        TEST_CASE(test_timefmt_date),
        {NULL, NULL},
    };
    return test_main(argc, argv, cases);
}

/*
 * Tests scheduler/tz.c: offsets read from the system's TZif files agree with glibc's
 * localtime for many zones from 1970 to 2100 (past 2037 the footer rule decides), POSIX
 * rules alone agree with their zones, a hand-made version 1 file, and refusals of bad
 * names, missing, foreign and truncated files, and bad rules.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "alloc.h"
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

/* Makes zone glibc's local zone. Test only: this process has one thread. */
static void glibc_zone(const char *zone)
{
    char tz[96];

    snprintf(tz, sizeof(tz), ":%s", zone);
    setenv("TZ", tz, 1);
    tzset();
}

/* glibc's offset at t in the zone glibc_zone set. */
static long glibc_offset(int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;

    ASSERT_TRUE(localtime_r(&tt, &tm) != NULL);
    return tm.tm_gmtoff;
}

static void test_tz_agrees_with_glibc(void)
{
    static const char *const zones[] = {
        "Europe/Berlin",  "America/New_York", "Australia/Sydney", "Asia/Kolkata",
        "Pacific/Chatham", "Europe/Dublin",   "America/Sao_Paulo", "Africa/Casablanca",
        "Asia/Tehran",    "America/St_Johns", "Pacific/Apia",     "Etc/GMT+5",
        "America/Santiago", "Europe/London",  "Asia/Tokyo",
    };
    int64_t from = at("1970-01-01T00:00:00Z");
    int64_t to = at("2100-12-31T00:00:00Z");

    for (size_t z = 0; z < sizeof(zones) / sizeof(zones[0]); z++) {
        struct sched_tz *tz = NULL;
        struct sl_err err;
        size_t n = 0;

        ASSERT_OK(sched_tz_create(ZONEINFO, zones[z], &tz, &err), &err);
        ASSERT_EQ_STR(sched_tz_name(tz), zones[z]);
        glibc_zone(zones[z]);
        /* Every 5 days and 7 hours: every hour of the day and every weekday come round. */
        for (int64_t t = from; t < to; t += 5 * 86400 + 7 * 3600 + 61) {
            long want = glibc_offset(t);
            long got = sched_tz_offset(tz, t);

            if (got != want) {
                char buf[SL_TIMEFMT_ISO_MAX];

                TEST_FAIL("%s at %s: offset %ld, glibc says %ld", zones[z],
                          sl_timefmt_iso(t, buf), got, want);
            }
            n++;
        }
        ASSERT_TRUE(n > 9000);
        sched_tz_destroy(tz);
    }
    unsetenv("TZ");
    tzset();
}

static void test_tz_dst_changes_2026(void)
{
    struct sched_tz *berlin = NULL, *ny = NULL;
    struct sl_err err;

    ASSERT_OK(sched_tz_create(ZONEINFO, "Europe/Berlin", &berlin, &err), &err);
    ASSERT_OK(sched_tz_create(ZONEINFO, "America/New_York", &ny, &err), &err);
    ASSERT_EQ_INT(sched_tz_offset(berlin, at("2026-03-29T00:59:59Z")), 3600);
    ASSERT_EQ_INT(sched_tz_offset(berlin, at("2026-03-29T01:00:00Z")), 7200);
    ASSERT_EQ_INT(sched_tz_offset(berlin, at("2026-10-25T00:59:59Z")), 7200);
    ASSERT_EQ_INT(sched_tz_offset(berlin, at("2026-10-25T01:00:00Z")), 3600);
    ASSERT_EQ_INT(sched_tz_offset(ny, at("2026-03-08T06:59:59Z")), -18000);
    ASSERT_EQ_INT(sched_tz_offset(ny, at("2026-03-08T07:00:00Z")), -14400);
    ASSERT_EQ_INT(sched_tz_offset(ny, at("2026-11-01T05:59:59Z")), -14400);
    ASSERT_EQ_INT(sched_tz_offset(ny, at("2026-11-01T06:00:00Z")), -18000);
    /* Past the file's explicit transitions, the footer rule. */
    ASSERT_EQ_INT(sched_tz_offset(berlin, at("2090-03-26T00:59:59Z")), 3600);
    ASSERT_EQ_INT(sched_tz_offset(berlin, at("2090-03-26T01:00:00Z")), 7200);
    ASSERT_EQ_INT(sched_tz_offset(NULL, at("2026-03-29T01:00:00Z")), 0);
    ASSERT_EQ_STR(sched_tz_name(NULL), "UTC");
    sched_tz_destroy(ny);
    sched_tz_destroy(berlin);
}

/* A rule alone gives what the zone's file gives, hour by hour over a decade of changes. */
static void check_rule_matches_zone(const char *rule, const char *zone)
{
    struct sched_tz *r = NULL, *z = NULL;
    struct sl_err err;

    ASSERT_OK(sched_tz_create_rule(rule, &r, &err), &err);
    ASSERT_OK(sched_tz_create(ZONEINFO, zone, &z, &err), &err);
    for (int64_t t = at("2010-01-01T00:00:00Z"); t < at("2037-01-01T00:00:00Z"); t += 1800) {
        if (sched_tz_offset(r, t) != sched_tz_offset(z, t)) {
            char buf[SL_TIMEFMT_ISO_MAX];

            TEST_FAIL("rule %s and zone %s differ at %s: %d vs %d", rule, zone,
                      sl_timefmt_iso(t, buf), (int)sched_tz_offset(r, t),
                      (int)sched_tz_offset(z, t));
        }
    }
    sched_tz_destroy(z);
    sched_tz_destroy(r);
}

static void test_tz_rules(void)
{
    struct sched_tz *tz = NULL;
    struct sl_err err;

    check_rule_matches_zone("CET-1CEST,M3.5.0,M10.5.0/3", "Europe/Berlin");
    check_rule_matches_zone("EST5EDT,M3.2.0,M11.1.0", "America/New_York");
    check_rule_matches_zone("AEST-10AEDT,M10.1.0,M4.1.0/3", "Australia/Sydney");
    /* Negative DST: winter is the "daylight" time. */
    check_rule_matches_zone("IST-1GMT0,M10.5.0,M3.5.0/1", "Europe/Dublin");
    check_rule_matches_zone("<+0530>-5:30", "Asia/Kolkata");
    /* Jn and n dates: Jn never counts Feb 29, n does. */
    ASSERT_OK(sched_tz_create_rule("AAA0BBB,J60/0,J300/0", &tz, &err), &err);
    ASSERT_EQ_INT(sched_tz_offset(tz, at("2028-02-29T23:59:59Z")), 0);
    ASSERT_EQ_INT(sched_tz_offset(tz, at("2028-03-01T00:00:00Z")), 3600);
    sched_tz_destroy(tz);
    ASSERT_OK(sched_tz_create_rule("AAA0BBB,59/0,300/0", &tz, &err), &err);
    ASSERT_EQ_INT(sched_tz_offset(tz, at("2028-02-28T23:59:59Z")), 0);
    ASSERT_EQ_INT(sched_tz_offset(tz, at("2028-02-29T00:00:00Z")), 3600);
    sched_tz_destroy(tz);
    /* No rule after the DST name: the US rule, as in glibc. */
    ASSERT_OK(sched_tz_create_rule("EST5EDT", &tz, &err), &err);
    ASSERT_EQ_INT(sched_tz_offset(tz, at("2026-07-01T00:00:00Z")), -14400);
    sched_tz_destroy(tz);
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    ASSERT_TRUE(f != NULL);
    ASSERT_EQ_INT(fwrite(data, 1, len, f), len);
    ASSERT_EQ_INT(fclose(f), 0);
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void test_tz_version_1_file(void)
{
    /* One transition at t=1000 from type 0 (UTC+0) to type 1 (UTC+1). */
    unsigned char buf[44 + 4 + 1 + 12 + 8];
    char *dir = test_tmpdir();
    char *path = test_path(dir, "Old");
    struct sched_tz *tz = NULL;
    struct sl_err err;
    unsigned char *p = buf + 44;

    memset(buf, 0, sizeof(buf));
    memcpy(buf, "TZif", 4);
    put32(buf + 32, 1); /* timecnt */
    put32(buf + 36, 2); /* typecnt */
    put32(buf + 40, 8); /* charcnt */
    put32(p, 1000);
    p[4] = 1;
    put32(p + 5, 0);
    put32(p + 11, 3600);
    p[15] = 1;
    p[16] = 4;
    memcpy(p + 17, "AAA\0BBB", 8);
    write_file(path, buf, sizeof(buf));
    ASSERT_OK(sched_tz_create(dir, "Old", &tz, &err), &err);
    ASSERT_EQ_INT(sched_tz_offset(tz, 999), 0);
    ASSERT_EQ_INT(sched_tz_offset(tz, 1000), 3600);
    ASSERT_EQ_INT(sched_tz_offset(tz, 5000000000LL), 3600);
    sched_tz_destroy(tz);
    test_rmtree(dir);
    free(path);
    free(dir);
}

static void expect_zone_error(const char *dir, const char *name, const char *message)
{
    struct sched_tz *tz = (struct sched_tz *)&tz;
    struct sl_err err;

    sl_err_clear(&err);
    ASSERT_EQ_INT(sched_tz_create(dir, name, &tz, &err), SL_EINVAL);
    ASSERT_TRUE(tz == NULL);
    if (strstr(err.msg, message) == NULL) {
        TEST_FAIL("zone '%s': error \"%s\" does not contain \"%s\"", name, err.msg, message);
    }
}

static void test_tz_refusals(void)
{
    char *dir = test_tmpdir();
    char *fake = test_path(dir, "Fake");
    char *cut = test_path(dir, "Cut");
    char buf[4096];
    struct sched_tz *tz = NULL;
    struct sl_err err;
    FILE *f;
    size_t n;

    expect_zone_error(ZONEINFO, "", "is not a time zone name");
    expect_zone_error(ZONEINFO, "/etc/passwd", "is not a time zone name");
    expect_zone_error(ZONEINFO, "../../etc/passwd", "is not a time zone name");
    expect_zone_error(ZONEINFO, "Europe/Berlin now", "is not a time zone name");
    expect_zone_error(ZONEINFO, "Mars/Olympus_Mons",
                      "unknown or unreadable time zone 'Mars/Olympus_Mons'");
    expect_zone_error(ZONEINFO, "Europe", "unknown or unreadable time zone 'Europe'");
    write_file(fake, "this is not a zone file, it is text long enough for a header\n", 62);
    expect_zone_error(dir, "Fake", "is not a TZif time zone file");
    f = fopen(ZONEINFO "/Europe/Berlin", "rb");
    ASSERT_TRUE(f != NULL);
    n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    ASSERT_TRUE(n > 1000);
    write_file(cut, buf, 700);
    expect_zone_error(dir, "Cut", "malformed TZif");
    /* "UTC" needs no file. */
    ASSERT_OK(sched_tz_create("/nonexistent", "UTC", &tz, &err), &err);
    ASSERT_EQ_INT(sched_tz_offset(tz, 1234567), 0);
    sched_tz_destroy(tz);
    sched_tz_destroy(NULL);

    ASSERT_EQ_INT(sched_tz_create_rule("", &tz, &err), SL_EINVAL);
    ASSERT_EQ_INT(sched_tz_create_rule("CET", &tz, &err), SL_EINVAL);
    ASSERT_EQ_INT(sched_tz_create_rule("AB-1", &tz, &err), SL_EINVAL);
    ASSERT_EQ_INT(sched_tz_create_rule("CET-1CEST,M13.1.0,M10.5.0", &tz, &err), SL_EINVAL);
    ASSERT_EQ_INT(sched_tz_create_rule("CET-1CEST,M3.5.0", &tz, &err), SL_EINVAL);
    ASSERT_EQ_INT(sched_tz_create_rule("CET-1CEST,M3.5.0,M10.5.0/3x", &tz, &err), SL_EINVAL);
    ASSERT_TRUE(tz == NULL);
    test_rmtree(dir);
    free(cut);
    free(fake);
    free(dir);
}

/* Every allocation of loading a zone can fail without a leak or crash. */
static void test_tz_allocation_failures(void)
{
    bool did_succeed = false;

    for (long n = 0; n < 20 && !did_succeed; n++) {
        struct sched_tz *tz = NULL;
        struct sl_err err;
        int rc;

        sl_alloc_fail_after(n);
        rc = sched_tz_create(ZONEINFO, "Europe/Berlin", &tz, &err);
        sl_alloc_fail_after(-1);
        ASSERT_TRUE(rc == 0 ? tz != NULL : tz == NULL);
        did_succeed = rc == 0;
        sched_tz_destroy(tz);
    }
    ASSERT_TRUE(did_succeed);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_tz_agrees_with_glibc),
        TEST_CASE(test_tz_dst_changes_2026),
        TEST_CASE(test_tz_rules),
        TEST_CASE(test_tz_version_1_file),
        TEST_CASE(test_tz_refusals),
        TEST_CASE(test_tz_allocation_failures),
        {NULL, NULL},
    };
    return test_main(argc, argv, cases);
}

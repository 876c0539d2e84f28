/*
 * Durations and dates as people type them (the CLI's flags), through libc's calendar; and
 * RFC 3339 times with fractions as clients send them in events, parsed to and printed from
 * unix microseconds with H. Hinnant's civil-date algorithms instead, so every year
 * 0000..9999 works without time_t. Reading clocks, and deciding which times are plausible,
 * are the callers' jobs.
 */
#include "timefmt.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Clamping range of sl_timefmt_iso_ms: 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z. */
#define ISO_MS_MIN INT64_C(-62167219200000)
#define ISO_MS_MAX INT64_C(253402300799999)
#define US_PER_S INT64_C(1000000)

int sl_timefmt_parse_duration(const char *text, int64_t *out_s, struct sl_err *err)
{
    char *end = NULL;
    long long v;
    int64_t mult = 1;

    errno = 0;
    v = strtoll(text, &end, 10);
    if (end == text || errno != 0 || v < 0) {
        return sl_err_set(err, SL_EINVAL, "'%s' is not a duration (like 90s, 15m, 24h, 30d)",
                          text);
    }
    if (*end != '\0') {
        switch (*end) {
        case 's': mult = 1; break;
        case 'm': mult = 60; break;
        case 'h': mult = 3600; break;
        case 'd': mult = 86400; break;
        case 'w': mult = 7 * 86400; break;
        default:
            return sl_err_set(err, SL_EINVAL, "'%s' has an unknown unit (use s, m, h, d or w)",
                              text);
        }
        if (end[1] != '\0') {
            return sl_err_set(err, SL_EINVAL, "'%s' is not a duration (like 90s, 15m, 24h, "
                              "30d)", text);
        }
    }
    if (v > INT64_MAX / mult / 1000) {
        return sl_err_set(err, SL_EINVAL, "duration '%s' is too long", text);
    }
    *out_s = (int64_t)v * mult;
    return 0;
}

/* Reads the n decimal digits at s into *out; false (and *out unchanged) when one is not. */
static bool digits(const char *s, size_t n, int *out)
{
    int v = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* As digits, moving *p past them. */
static int read_digits(const char **p, int n, int *out)
{
    if (!digits(*p, (size_t)n, out)) {
        return -1;
    }
    *p += n;
    return 0;
}

static int days_in_month(int year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int is_leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

    return month == 2 && is_leap ? 29 : days[month - 1];
}

int sl_timefmt_parse_date(const char *text, int64_t *out_s, struct sl_err *err)
{
    const char *p = text;
    int year, month, day, hour = 0, min = 0, sec = 0, off_h = 0, off_m = 0;
    int64_t offset_s = 0;
    struct tm tm;

    if (read_digits(&p, 4, &year) != 0 || *p++ != '-' || read_digits(&p, 2, &month) != 0 ||
        *p++ != '-' || read_digits(&p, 2, &day) != 0) {
        goto bad;
    }
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (read_digits(&p, 2, &hour) != 0 || *p++ != ':' || read_digits(&p, 2, &min) != 0 ||
            *p++ != ':' || read_digits(&p, 2, &sec) != 0) {
            goto bad;
        }
        if (*p == '.') {
            p++;
            while (isdigit((unsigned char)*p)) {
                p++;
            }
        }
        if (*p == 'Z' || *p == 'z') {
            p++;
        }
        else if (*p == '+' || *p == '-') {
            int sign = *p++ == '-' ? -1 : 1;

            if (read_digits(&p, 2, &off_h) != 0 || *p++ != ':' ||
                read_digits(&p, 2, &off_m) != 0 || off_h > 23 || off_m > 59) {
                goto bad;
            }
            offset_s = sign * (off_h * 3600 + off_m * 60);
        }
        else {
            goto bad;
        }
    }
    if (*p != '\0' || month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) ||
        hour > 23 || min > 59 || sec > 60) {
        goto bad;
    }
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    *out_s = (int64_t)timegm(&tm) - offset_s;
    return 0;

bad:
    return sl_err_set(err, SL_EINVAL, "'%s' is not a date (use YYYY-MM-DD or "
                      "YYYY-MM-DDTHH:MM:SSZ)", text);
}

char *sl_timefmt_iso(int64_t s, char buf[SL_TIMEFMT_ISO_MAX])
{
    time_t t = (time_t)s;
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, SL_TIMEFMT_ISO_MAX, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

/* ---- RFC 3339 with microseconds ---- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era;
    int64_t yoe;
    int64_t doy;
    int64_t doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    int64_t era;
    int64_t doe;
    int64_t yoe;
    int64_t doy;
    int64_t mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

static void put_digits(char *p, int64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

char *sl_timefmt_iso_ms(int64_t ts_us, char buf[SL_TIMEFMT_ISO_MS_MAX])
{
    int64_t ms = floor_div(ts_us, 1000);
    int64_t days;
    int64_t rem;
    int64_t y;
    int m;
    int d;

    if (ms < ISO_MS_MIN) {
        ms = ISO_MS_MIN;
    }
    if (ms > ISO_MS_MAX) {
        ms = ISO_MS_MAX;
    }
    days = floor_div(ms, 86400000);
    rem = ms - days * 86400000;
    civil_from_days(days, &y, &m, &d);
    memcpy(buf, "0000-00-00T00:00:00.000Z", SL_TIMEFMT_ISO_MS_MAX);
    put_digits(buf, y, 4);
    put_digits(buf + 5, m, 2);
    put_digits(buf + 8, d, 2);
    put_digits(buf + 11, rem / 3600000, 2);
    put_digits(buf + 14, rem / 60000 % 60, 2);
    put_digits(buf + 17, rem / 1000 % 60, 2);
    put_digits(buf + 20, rem % 1000, 3);
    return buf;
}

int sl_timefmt_parse_rfc3339_us(const char *text, size_t len, int64_t *out_us,
                                bool *is_zone_missing)
{
    const char *s = text;
    int year, month, day, hour, min, sec;
    int off_h = 0, off_m = 0, sign = 0;
    int64_t frac_us = 0;
    size_t p = 19;

    if (is_zone_missing != NULL) {
        *is_zone_missing = false;
    }
    if (len < 19 || !digits(s, 4, &year) || s[4] != '-' || !digits(s + 5, 2, &month) ||
        s[7] != '-' || !digits(s + 8, 2, &day) || (s[10] != 'T' && s[10] != 't') ||
        !digits(s + 11, 2, &hour) || s[13] != ':' || !digits(s + 14, 2, &min) ||
        s[16] != ':' || !digits(s + 17, 2, &sec)) {
        return SL_EINVAL;
    }
    if (p < len && s[p] == '.') {
        int64_t scale = 100000;
        size_t start = ++p;

        while (p < len && s[p] >= '0' && s[p] <= '9') {
            frac_us += (s[p] - '0') * scale;
            scale /= 10;
            p++;
        }
        if (p == start) {
            return SL_EINVAL;
        }
    }
    if (p == len) {
        if (is_zone_missing != NULL) {
            *is_zone_missing = true;
        }
        return SL_EINVAL;
    }
    if (s[p] == 'Z' || s[p] == 'z') {
        p++;
    }
    else if (s[p] == '+' || s[p] == '-') {
        sign = s[p] == '-' ? -1 : 1;
        if (len - p < 6 || !digits(s + p + 1, 2, &off_h) || s[p + 3] != ':' ||
            !digits(s + p + 4, 2, &off_m) || off_h > 23 || off_m > 59) {
            return SL_EINVAL;
        }
        p += 6;
    }
    else {
        return SL_EINVAL;
    }
    if (p != len || month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) ||
        hour > 23 || min > 59 || sec > 60) {
        return SL_EINVAL;
    }
    *out_us = ((days_from_civil(year, month, day) * 86400 + hour * 3600 + min * 60 + sec) -
               sign * (off_h * 3600 + off_m * 60)) * US_PER_S + frac_us;
    return 0;
}

/* Durations and dates as people type them. */
#include "timefmt.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static int read_digits(const char **p, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i])) {
            return -1;
        }
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
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

/*
 * TZif reader and POSIX TZ rules (RFC 8536). We read the 64-bit (version 2+) data when the
 * file has it, else the version 1 data, keep transitions and their UTC offsets, and the
 * footer rule for instants after the last transition. Designations, isstd/isut flags and
 * leap seconds are skipped: a schedule only needs offsets.
 */
#include "tz.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "sched_int.h"

#define TZIF_MAX_BYTES (1024 * 1024)
#define TZIF_HEADER_BYTES 44
#define MAX_OFFSET_S (26 * 3600)
#define MAX_RULE_HOURS 167 /* RFC 8536 lets rule times run from -167 to 167 hours */

/* One end of daylight time in a POSIX rule: "Mm.w.d", "Jn" or "n", and a local time. */
struct rule_date {
    char kind;     /* 'M', 'J' or 'n' */
    int month;     /* M: 1-12 */
    int week;      /* M: 1-5, 5 meaning the last */
    int day;       /* M: weekday 0-6; J: 1-365 (no Feb 29); n: 0-365 */
    int32_t time_s; /* local wall time of the change, default 02:00 */
};

struct rule {
    int32_t std_off_s; /* seconds east of UTC */
    int32_t dst_off_s;
    bool has_dst;
    struct rule_date start, end;
};

struct sched_tz {
    char name[SCHED_TZ_NAME_MAX];
    size_t n_trans;
    int64_t *trans_s;  /* ascending */
    int32_t *trans_off_s; /* offset from trans_s[i] on */
    int32_t first_off_s;  /* before the first transition (type 0) */
    bool has_rule;
    struct rule rule;
};

/* ---- calendar ---- */

int64_t sched_floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;

    if ((a % b != 0) && ((a < 0) != (b < 0))) {
        q--;
    }
    return q;
}

/* Howard Hinnant's days_from_civil / civil_from_days. */
int64_t sched_civil_days(int64_t year, int month, int day)
{
    int64_t y = year - (month <= 2);
    int64_t era = sched_floor_div(y, 400);
    int64_t yoe = y - era * 400;
    int64_t mp = (month + 9) % 12;
    int64_t doy = (153 * mp + 2) / 5 + day - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + doe - 719468;
}

void sched_civil_date(int64_t days, int64_t *year, int *month, int *day)
{
    int64_t z = days + 719468;
    int64_t era = sched_floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int d = (int)(doy - (153 * mp + 2) / 5 + 1);
    int m = (int)(mp < 10 ? mp + 3 : mp - 9);

    *year = yoe + era * 400 + (m <= 2);
    *month = m;
    *day = d;
}

int sched_civil_weekday(int64_t days)
{
    /* 1970-01-01 was a Thursday. */
    int64_t w = (days + 4) % 7;

    return (int)(w < 0 ? w + 7 : w);
}

bool sched_civil_is_leap(int64_t year)
{
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

int sched_civil_month_days(int64_t year, int month)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    return month == 2 && sched_civil_is_leap(year) ? 29 : days[month - 1];
}

/* ---- POSIX TZ rules ---- */

/* Parses a designation: <...> or at least three letters. */
static bool parse_rule_name(const char **p)
{
    const char *s = *p;

    if (*s == '<') {
        const char *end = strchr(s, '>');

        if (end == NULL || end == s + 1) {
            return false;
        }
        *p = end + 1;
        return true;
    }
    while (isalpha((unsigned char)*s)) {
        s++;
    }
    if (s - *p < 3) {
        return false;
    }
    *p = s;
    return true;
}

/* Parses [+-]hh[:mm[:ss]] with hours up to max_hours into seconds. */
static bool parse_rule_time(const char **p, int max_hours, int32_t *out)
{
    const char *s = *p;
    int sign = 1;
    long parts[3] = {0, 0, 0};

    if (*s == '+' || *s == '-') {
        sign = *s == '-' ? -1 : 1;
        s++;
    }
    for (int i = 0; i < 3; i++) {
        char *end = NULL;

        if (!isdigit((unsigned char)*s)) {
            return false;
        }
        parts[i] = strtol(s, &end, 10);
        if (end - s > 3) {
            return false;
        }
        s = end;
        if (*s != ':' || i == 2) {
            break;
        }
        s++;
    }
    if (parts[0] > max_hours || parts[1] > 59 || parts[2] > 59) {
        return false;
    }
    *out = (int32_t)(sign * (parts[0] * 3600 + parts[1] * 60 + parts[2]));
    *p = s;
    return true;
}

static bool parse_rule_int(const char **p, int lo, int hi, int *out)
{
    char *end = NULL;
    long v;

    if (!isdigit((unsigned char)**p)) {
        return false;
    }
    v = strtol(*p, &end, 10);
    if (end - *p > 3 || v < lo || v > hi) {
        return false;
    }
    *out = (int)v;
    *p = end;
    return true;
}

static bool parse_rule_date(const char **p, struct rule_date *d)
{
    const char *s = *p;

    memset(d, 0, sizeof(*d));
    d->time_s = 2 * 3600;
    if (*s == 'M') {
        s++;
        d->kind = 'M';
        if (!parse_rule_int(&s, 1, 12, &d->month) || *s++ != '.' ||
            !parse_rule_int(&s, 1, 5, &d->week) || *s++ != '.' ||
            !parse_rule_int(&s, 0, 6, &d->day)) {
            return false;
        }
    }
    else if (*s == 'J') {
        s++;
        d->kind = 'J';
        if (!parse_rule_int(&s, 1, 365, &d->day)) {
            return false;
        }
    }
    else {
        d->kind = 'n';
        if (!parse_rule_int(&s, 0, 365, &d->day)) {
            return false;
        }
    }
    if (*s == '/') {
        s++;
        if (!parse_rule_time(&s, MAX_RULE_HOURS, &d->time_s)) {
            return false;
        }
    }
    *p = s;
    return true;
}

static bool parse_rule(const char *text, struct rule *r)
{
    const char *p = text;
    int32_t off = 0;

    memset(r, 0, sizeof(*r));
    if (!parse_rule_name(&p) || !parse_rule_time(&p, 24, &off)) {
        return false;
    }
    /* POSIX offsets count west of Greenwich; ours count east. */
    r->std_off_s = -off;
    if (*p == '\0') {
        return true;
    }
    if (!parse_rule_name(&p)) {
        return false;
    }
    r->has_dst = true;
    r->dst_off_s = r->std_off_s + 3600;
    if (*p != ',' && *p != '\0') {
        if (!parse_rule_time(&p, 24, &off)) {
            return false;
        }
        r->dst_off_s = -off;
    }
    if (*p == '\0') {
        /* No rule given: POSIX leaves it to the implementation; glibc uses the US rule. */
        p = ",M3.2.0,M11.1.0";
    }
    if (*p++ != ',' || !parse_rule_date(&p, &r->start) || *p++ != ',' ||
        !parse_rule_date(&p, &r->end)) {
        return false;
    }
    return *p == '\0';
}

/* The UTC instant of a rule date in year, while off_s (seconds east) is in effect. */
static int64_t rule_instant(const struct rule_date *d, int64_t year, int32_t off_s)
{
    int64_t day;

    if (d->kind == 'J') {
        day = sched_civil_days(year, 1, 1) + d->day - 1;
        if (sched_civil_is_leap(year) && d->day >= 60) {
            day++; /* Jn never counts February 29 */
        }
    }
    else if (d->kind == 'n') {
        day = sched_civil_days(year, 1, 1) + d->day;
    }
    else {
        int64_t first = sched_civil_days(year, d->month, 1);
        int64_t last = first + sched_civil_month_days(year, d->month) - 1;

        day = first + (d->day - sched_civil_weekday(first) + 7) % 7 + (d->week - 1) * 7;
        while (day > last) {
            day -= 7; /* week 5 means the last such weekday */
        }
    }
    return day * 86400 + d->time_s - off_s;
}

static int32_t rule_offset(const struct rule *r, int64_t utc_s)
{
    int64_t year;
    int64_t start, end;
    int month, day;
    bool is_dst;

    if (!r->has_dst) {
        return r->std_off_s;
    }
    sched_civil_date(sched_floor_div(utc_s + r->std_off_s, 86400), &year, &month, &day);
    start = rule_instant(&r->start, year, r->std_off_s);
    end = rule_instant(&r->end, year, r->dst_off_s);
    if (start < end) {
        is_dst = utc_s >= start && utc_s < end;
    }
    else {
        /* Southern hemisphere: daylight time spans the new year. */
        is_dst = !(utc_s >= end && utc_s < start);
    }
    return is_dst ? r->dst_off_s : r->std_off_s;
}

/* ---- TZif ---- */

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

struct tzif_counts {
    uint32_t isut, isstd, leap, time, type, chars;
};

static void read_counts(const unsigned char *h, struct tzif_counts *c)
{
    c->isut = be32(h + 20);
    c->isstd = be32(h + 24);
    c->leap = be32(h + 28);
    c->time = be32(h + 32);
    c->type = be32(h + 36);
    c->chars = be32(h + 40);
}

/* Bytes of a data block after its header; 0 when the counts are unreasonable. */
static size_t block_bytes(const struct tzif_counts *c, size_t time_size)
{
    if (c->type == 0 || c->type > 256 || c->time > 100000 || c->leap > 100000 ||
        c->chars > 65536 || (c->isstd != 0 && c->isstd != c->type) ||
        (c->isut != 0 && c->isut != c->type)) {
        return 0;
    }
    return (size_t)c->time * time_size + c->time + (size_t)c->type * 6 + c->chars +
           (size_t)c->leap * (time_size + 4) + c->isstd + c->isut;
}

static int parse_tzif(struct sched_tz *tz, const unsigned char *buf, size_t len, const char *path,
                      struct sl_err *err)
{
    struct tzif_counts c;
    const unsigned char *data;
    const unsigned char *types;
    size_t time_size = 4;
    size_t bytes;
    size_t pos;

    if (len < TZIF_HEADER_BYTES || memcmp(buf, "TZif", 4) != 0) {
        return sl_err_set(err, SL_EINVAL, "%s is not a TZif time zone file", path);
    }
    read_counts(buf, &c);
    bytes = block_bytes(&c, 4);
    if (bytes == 0 || TZIF_HEADER_BYTES + bytes > len) {
        return sl_err_set(err, SL_EINVAL, "%s: malformed TZif header", path);
    }
    pos = TZIF_HEADER_BYTES;
    if (buf[4] >= '2') {
        /* Skip the version 1 block; the 64-bit one follows with its own header. */
        pos += bytes;
        if (pos + TZIF_HEADER_BYTES > len || memcmp(buf + pos, "TZif", 4) != 0) {
            return sl_err_set(err, SL_EINVAL, "%s: malformed TZif version 2 header", path);
        }
        read_counts(buf + pos, &c);
        time_size = 8;
        bytes = block_bytes(&c, 8);
        pos += TZIF_HEADER_BYTES;
        if (bytes == 0 || pos + bytes > len) {
            return sl_err_set(err, SL_EINVAL, "%s: malformed TZif data", path);
        }
    }
    data = buf + pos;
    types = data + (size_t)c.time * time_size + c.time;
    tz->n_trans = c.time;
    if (c.time > 0) {
        tz->trans_s = sl_calloc(c.time, sizeof(tz->trans_s[0]));
        tz->trans_off_s = sl_calloc(c.time, sizeof(tz->trans_off_s[0]));
        if (tz->trans_s == NULL || tz->trans_off_s == NULL) {
            return sl_err_set(err, SL_ENOMEM, "out of memory reading %s", path);
        }
    }
    for (uint32_t i = 0; i < c.type; i++) {
        int32_t off = (int32_t)be32(types + 6 * i);

        if (off < -MAX_OFFSET_S || off > MAX_OFFSET_S) {
            return sl_err_set(err, SL_EINVAL, "%s: UTC offset %d is out of range", path,
                              (int)off);
        }
    }
    tz->first_off_s = (int32_t)be32(types);
    for (uint32_t i = 0; i < c.time; i++) {
        const unsigned char *t = data + (size_t)i * time_size;
        unsigned idx = data[(size_t)c.time * time_size + i];

        tz->trans_s[i] = time_size == 8 ? be64(t) : (int64_t)(int32_t)be32(t);
        if (idx >= c.type || (i > 0 && tz->trans_s[i] <= tz->trans_s[i - 1])) {
            return sl_err_set(err, SL_EINVAL, "%s: malformed TZif transitions", path);
        }
        tz->trans_off_s[i] = (int32_t)be32(types + 6 * idx);
    }
    pos += bytes;
    if (time_size == 8 && pos < len) {
        /* Footer: "\n<POSIX TZ rule>\n", possibly empty. */
        const unsigned char *nl;
        char footer[128];
        size_t n;

        if (buf[pos] != '\n' || (nl = memchr(buf + pos + 1, '\n', len - pos - 1)) == NULL) {
            return sl_err_set(err, SL_EINVAL, "%s: malformed TZif footer", path);
        }
        n = (size_t)(nl - (buf + pos + 1));
        if (n >= sizeof(footer)) {
            return sl_err_set(err, SL_EINVAL, "%s: TZif footer is too long", path);
        }
        memcpy(footer, buf + pos + 1, n);
        footer[n] = '\0';
        if (n > 0) {
            if (!parse_rule(footer, &tz->rule)) {
                return sl_err_set(err, SL_EINVAL, "%s: cannot read the rule '%s' in its "
                                  "footer", path, footer);
            }
            tz->has_rule = true;
        }
    }
    return 0;
}

static bool is_valid_name(const char *name)
{
    size_t len = strlen(name);

    if (len == 0 || len >= SCHED_TZ_NAME_MAX || name[0] == '/') {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];

        if (!isalnum((unsigned char)ch) && strchr("_-+/", ch) == NULL) {
            return false;
        }
    }
    return true;
}

static int read_file(const char *path, unsigned char **out, size_t *len_out, struct sl_err *err)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    size_t len;

    *out = NULL;
    if (f == NULL) {
        return sl_err_set(err, SL_EINVAL, "cannot open %s: %s", path, strerror(errno));
    }
    buf = sl_malloc(TZIF_MAX_BYTES + 1);
    if (buf == NULL) {
        fclose(f);
        return sl_err_set(err, SL_ENOMEM, "out of memory reading %s", path);
    }
    len = fread(buf, 1, TZIF_MAX_BYTES + 1, f);
    if (ferror(f) || len > TZIF_MAX_BYTES) {
        fclose(f);
        sl_free(buf);
        return sl_err_set(err, SL_EINVAL, "cannot read %s (or it is larger than %d bytes)",
                          path, TZIF_MAX_BYTES);
    }
    fclose(f);
    *out = buf;
    *len_out = len;
    return 0;
}

int sched_tz_create(const char *zoneinfo_dir, const char *name, struct sched_tz **out,
                    struct sl_err *err)
{
    struct sched_tz *tz = NULL;
    unsigned char *buf = NULL;
    char path[1024];
    size_t len = 0;
    int rc;

    *out = NULL;
    if (!is_valid_name(name)) {
        return sl_err_set(err, SL_EINVAL, "'%s' is not a time zone name (like Europe/Berlin "
                          "or UTC)", name);
    }
    tz = sl_calloc(1, sizeof(*tz));
    if (tz == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory loading time zone %s", name);
    }
    snprintf(tz->name, sizeof(tz->name), "%s", name);
    if (strcmp(name, "UTC") == 0) {
        *out = tz;
        return 0;
    }
    snprintf(path, sizeof(path), "%s/%s", zoneinfo_dir, name);
    rc = read_file(path, &buf, &len, err);
    if (rc == 0) {
        rc = parse_tzif(tz, buf, len, path, err);
    }
    sl_free(buf);
    if (rc != 0) {
        sl_err_wrap(err, "unknown or unreadable time zone '%s'", name);
        sched_tz_destroy(tz);
        return rc;
    }
    *out = tz;
    return 0;
}

int sched_tz_create_rule(const char *rule, struct sched_tz **out, struct sl_err *err)
{
    struct sched_tz *tz = NULL;

    *out = NULL;
    tz = sl_calloc(1, sizeof(*tz));
    if (tz == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    if (!parse_rule(rule, &tz->rule)) {
        sl_free(tz);
        return sl_err_set(err, SL_EINVAL, "'%s' is not a POSIX TZ rule", rule);
    }
    tz->has_rule = true;
    snprintf(tz->name, sizeof(tz->name), "%s", rule);
    *out = tz;
    return 0;
}

void sched_tz_destroy(struct sched_tz *tz)
{
    if (tz == NULL) {
        return;
    }
    sl_free(tz->trans_s);
    sl_free(tz->trans_off_s);
    sl_free(tz);
}

const char *sched_tz_name(const struct sched_tz *tz)
{
    return tz != NULL ? tz->name : "UTC";
}

int32_t sched_tz_offset(const struct sched_tz *tz, int64_t utc_s)
{
    size_t lo = 0, hi;

    if (tz == NULL) {
        return 0;
    }
    if (tz->n_trans == 0) {
        return tz->has_rule ? rule_offset(&tz->rule, utc_s) : tz->first_off_s;
    }
    if (utc_s < tz->trans_s[0]) {
        return tz->first_off_s;
    }
    if (utc_s >= tz->trans_s[tz->n_trans - 1] && tz->has_rule) {
        return rule_offset(&tz->rule, utc_s);
    }
    /* The last transition at or before utc_s. */
    hi = tz->n_trans;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;

        if (tz->trans_s[mid] <= utc_s) {
            lo = mid;
        }
        else {
            hi = mid;
        }
    }
    return tz->trans_off_s[lo];
}

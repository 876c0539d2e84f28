/*
 * Cron parsing into bit sets, and next-firing search on civil (calendar) time. The search
 * walks forward a field at a time: a wrong month jumps to the next month, a wrong day to
 * the next day, a wrong hour to the next hour, so a year is a few hundred steps at most.
 * Zones map each candidate wall-clock time to its instant with sched_tz_offset.
 */
#include "cron.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "sched_int.h"

#define N_FIELDS 5
#define TOKEN_MAX 32
#define SEARCH_YEARS 30
#define MAX_EVERY_S (366LL * 86400)

struct field_def {
    const char *name;
    int lo;
    int hi;
    const char *const *names; /* names[i] means lo + i; NULL: numbers only */
    size_t n_names;
    const char *what;         /* "a month name", for messages */
};

static const char *const month_names[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                          "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
static const char *const day_names[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

static const struct field_def fields[N_FIELDS] = {
    {"minute", 0, 59, NULL, 0, NULL},
    {"hour", 0, 23, NULL, 0, NULL},
    {"day of month", 1, 31, NULL, 0, NULL},
    {"month", 1, 12, month_names, 12, "a month name (JAN-DEC)"},
    {"day of week", 0, 7, day_names, 7, "a weekday name (SUN-SAT)"},
};

struct macro {
    const char *name;
    const char *expr;
};

static const struct macro macros[] = {
    {"@yearly", "0 0 1 1 *"},  {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"},  {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

/* Parses one value (number or name) of field f from text[0..len). */
static int parse_value(size_t f, const char *text, size_t len, int *out, struct sl_err *err)
{
    const struct field_def *def = &fields[f];
    int tok_len = (int)(len < TOKEN_MAX ? len : TOKEN_MAX);
    long v = 0;

    if (len == 0) {
        return sl_err_set(err, SL_EINVAL, "field %zu (%s): a value is missing", f + 1,
                          def->name);
    }
    if (isdigit((unsigned char)text[0])) {
        for (size_t i = 0; i < len; i++) {
            if (!isdigit((unsigned char)text[i])) {
                return sl_err_set(err, SL_EINVAL, "field %zu (%s): '%.*s' is not a number",
                                  f + 1, def->name, tok_len, text);
            }
            if (v < 100000) {
                v = v * 10 + (text[i] - '0');
            }
        }
        if (v < def->lo || v > def->hi) {
            return sl_err_set(err, SL_EINVAL, "field %zu (%s): %ld is out of range %d-%d",
                              f + 1, def->name, v, def->lo, def->hi);
        }
        *out = (int)v;
        return 0;
    }
    if (!isalpha((unsigned char)text[0])) {
        return sl_err_set(err, SL_EINVAL, "field %zu (%s): unexpected '%c' in '%.*s'", f + 1,
                          def->name, text[0], tok_len, text);
    }
    if (def->names == NULL) {
        return sl_err_set(err, SL_EINVAL, "field %zu (%s): '%.*s' is not a number", f + 1,
                          def->name, tok_len, text);
    }
    for (size_t i = 0; len == 3 && i < def->n_names; i++) {
        if (strncasecmp(text, def->names[i], 3) == 0) {
            /* Month names start at 1 (JAN), weekday names at 0 (SUN). */
            *out = def->lo + (int)i;
            return 0;
        }
    }
    return sl_err_set(err, SL_EINVAL, "field %zu (%s): '%.*s' is not %s or a number", f + 1,
                      def->name, tok_len, text, def->what);
}

/* Parses one comma-separated item ("*", "5", "1-5", "*\/15", "10-50/20", "5/10"). */
static int parse_item(size_t f, const char *item, size_t len, uint64_t *bits,
                      struct sl_err *err)
{
    const struct field_def *def = &fields[f];
    const char *slash = memchr(item, '/', len);
    size_t base_len = slash != NULL ? (size_t)(slash - item) : len;
    const char *dash;
    int lo, hi, step = 1;
    int rc;

    if (slash != NULL) {
        const char *s = slash + 1;
        size_t slen = len - base_len - 1;
        long v = 0;

        if (slen == 0) {
            return sl_err_set(err, SL_EINVAL, "field %zu (%s): '/' needs a step after it",
                              f + 1, def->name);
        }
        for (size_t i = 0; i < slen; i++) {
            if (!isdigit((unsigned char)s[i])) {
                return sl_err_set(err, SL_EINVAL, "field %zu (%s): step '%.*s' is not a number",
                                  f + 1, def->name, (int)(slen > 16 ? 16 : slen), s);
            }
            if (v < 100000) {
                v = v * 10 + (s[i] - '0');
            }
        }
        if (v < 1 || v > def->hi - def->lo) {
            return sl_err_set(err, SL_EINVAL, "field %zu (%s): step %ld is out of range 1-%d",
                              f + 1, def->name, v, def->hi - def->lo);
        }
        step = (int)v;
    }
    if (base_len == 1 && item[0] == '*') {
        lo = def->lo;
        hi = def->hi;
        if (f == 4) {
            hi = 6; /* 7 is Sunday again */
        }
    }
    else {
        if (base_len == 0) {
            return sl_err_set(err, SL_EINVAL, "field %zu (%s): a value is missing before '/'",
                              f + 1, def->name);
        }
        if (memchr(item, '*', base_len) != NULL) {
            return sl_err_set(err, SL_EINVAL, "field %zu (%s): '*' cannot be part of a range",
                              f + 1, def->name);
        }
        dash = memchr(item, '-', base_len);
        rc = parse_value(f, item, dash != NULL ? (size_t)(dash - item) : base_len, &lo, err);
        if (rc != 0) {
            return rc;
        }
        if (dash != NULL) {
            rc = parse_value(f, dash + 1, base_len - (size_t)(dash - item) - 1, &hi, err);
            if (rc != 0) {
                return rc;
            }
            if (hi < lo) {
                return sl_err_set(err, SL_EINVAL, "field %zu (%s): range %d-%d is backwards "
                                  "(write it as two ranges)", f + 1, def->name, lo, hi);
            }
        }
        else {
            /* "N/S" runs from N to the field's end; a bare "N" is just N. */
            hi = slash != NULL ? def->hi : lo;
        }
    }
    for (int v = lo; v <= hi; v += step) {
        *bits |= (uint64_t)1 << v;
    }
    return 0;
}

static int parse_field(size_t f, const char *text, size_t len, uint64_t *bits,
                       struct sl_err *err)
{
    size_t start = 0;

    *bits = 0;
    while (start <= len) {
        const char *comma = memchr(text + start, ',', len - start);
        size_t end = comma != NULL ? (size_t)(comma - text) : len;
        int rc;

        if (end == start) {
            return sl_err_set(err, SL_EINVAL, "field %zu (%s): empty item in list '%.*s'",
                              f + 1, fields[f].name, (int)len, text);
        }
        rc = parse_item(f, text + start, end - start, bits, err);
        if (rc != 0) {
            return rc;
        }
        start = end + 1;
    }
    if (f == 4 && (*bits & (1u << 7)) != 0) {
        *bits = (*bits & ~((uint64_t)1 << 7)) | 1u; /* 7 is Sunday */
    }
    return 0;
}

/* Refuses day-of-month/month combinations that never occur ("0 0 30 2 *"). */
static int check_reachable(const struct sched_cron *c, struct sl_err *err)
{
    int first_day = 0, first_month = 0;

    if (c->is_dom_restricted && c->is_dow_restricted) {
        return 0; /* either field matching is enough, and every weekday occurs */
    }
    for (int m = 1; m <= 12; m++) {
        if ((c->months & (1u << m)) == 0) {
            continue;
        }
        if (first_month == 0) {
            first_month = m;
        }
        for (int d = 1; d <= sched_civil_month_days(2000, m); d++) {
            if ((c->days & (1u << d)) != 0) {
                return 0;
            }
        }
    }
    for (int d = 1; d <= 31 && first_day == 0; d++) {
        if ((c->days & (1u << d)) != 0) {
            first_day = d;
        }
    }
    return sl_err_set(err, SL_EINVAL, "field 3 (day of month): day %d never occurs in month %d "
                      "(nor any selected day in any selected month), so the schedule would "
                      "never fire", first_day, first_month);
}

static int parse_every(const char *text, struct sched_cron *out, struct sl_err *err)
{
    const char *p;
    int64_t total = 0;

    while (*text == ' ' || *text == '\t') {
        text++;
    }
    p = text;
    if (*p == '\0') {
        return sl_err_set(err, SL_EINVAL, "@every needs a period such as 30s, 5m or 1h30m");
    }
    while (*p != '\0' && *p != ' ' && *p != '\t') {
        int64_t n = 0, unit;

        if (!isdigit((unsigned char)*p)) {
            return sl_err_set(err, SL_EINVAL, "@every: unexpected '%c' in '%s' (write a period "
                              "such as 30s, 5m or 1h30m)", *p, text);
        }
        while (isdigit((unsigned char)*p)) {
            if (n < MAX_EVERY_S) {
                n = n * 10 + (*p - '0');
            }
            p++;
        }
        switch (*p) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        case '\0':
        case ' ':
        case '\t':
            return sl_err_set(err, SL_EINVAL, "@every: '%s' needs a unit after %lld (s, m, h "
                              "or d)", text, (long long)n);
        default:
            return sl_err_set(err, SL_EINVAL, "@every: unknown unit '%c' in '%s' (use s, m, h "
                              "or d)", *p, text);
        }
        p++;
        if (n > MAX_EVERY_S / unit || total + n * unit > MAX_EVERY_S) {
            return sl_err_set(err, SL_EINVAL, "@every: '%s' is longer than 366d", text);
        }
        total += n * unit;
    }
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    if (*p != '\0') {
        return sl_err_set(err, SL_EINVAL, "@every: unexpected '%s' after the period", p);
    }
    if (total < 1) {
        return sl_err_set(err, SL_EINVAL, "@every: the period must be at least 1s");
    }
    memset(out, 0, sizeof(*out));
    out->every_s = total;
    return 0;
}

static int parse_fields(const char *expr, struct sched_cron *out, struct sl_err *err)
{
    const char *starts[N_FIELDS + 1];
    size_t lens[N_FIELDS + 1];
    size_t n = 0;
    const char *p = expr;
    struct sched_cron c;
    uint64_t bits[N_FIELDS];

    while (*p != '\0') {
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (*p == '\0') {
            break;
        }
        if (n < N_FIELDS + 1) {
            starts[n] = p;
        }
        while (*p != '\0' && *p != ' ' && *p != '\t') {
            p++;
        }
        if (n < N_FIELDS + 1) {
            lens[n] = (size_t)(p - starts[n]);
        }
        n++;
    }
    if (n != N_FIELDS) {
        return sl_err_set(err, SL_EINVAL, "expected 5 fields (minute hour day-of-month month "
                          "day-of-week), got %zu%s", n,
                          n == 6 || n == 7 ? " (seconds and years are not supported)" : "");
    }
    memset(&c, 0, sizeof(c));
    for (size_t f = 0; f < N_FIELDS; f++) {
        int rc = parse_field(f, starts[f], lens[f], &bits[f], err);

        if (rc != 0) {
            return rc;
        }
    }
    c.minutes = bits[0];
    c.hours = (uint32_t)bits[1];
    c.days = (uint32_t)bits[2];
    c.months = (uint16_t)bits[3];
    c.weekdays = (uint8_t)bits[4];
    c.is_dom_restricted = starts[2][0] != '*';
    c.is_dow_restricted = starts[4][0] != '*';
    if (check_reachable(&c, err) != 0) {
        return SL_EINVAL;
    }
    *out = c;
    return 0;
}

int sched_cron_parse(const char *expr, struct sched_cron *out, struct sl_err *err)
{
    const char *p = expr;
    const char *rest;
    size_t name_len;
    size_t len;

    if (expr == NULL) {
        return sl_err_set(err, SL_EINVAL, "the schedule is empty");
    }
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    len = strlen(p);
    if (len == 0) {
        return sl_err_set(err, SL_EINVAL, "the schedule is empty");
    }
    if (len >= SCHED_CRON_EXPR_MAX) {
        return sl_err_set(err, SL_EINVAL, "the schedule is longer than %d bytes",
                          SCHED_CRON_EXPR_MAX - 1);
    }
    if (p[0] != '@') {
        return parse_fields(p, out, err);
    }
    if (strncasecmp(p, "@every", 6) == 0 && (p[6] == '\0' || p[6] == ' ' || p[6] == '\t')) {
        return parse_every(p + 6, out, err);
    }
    name_len = strcspn(p, " \t");
    rest = p + name_len + strspn(p + name_len, " \t");
    for (size_t i = 0; i < sizeof(macros) / sizeof(macros[0]); i++) {
        if (strlen(macros[i].name) == name_len && strncasecmp(p, macros[i].name, name_len) == 0) {
            if (*rest != '\0') {
                return sl_err_set(err, SL_EINVAL, "unexpected '%s' after %s", rest,
                                  macros[i].name);
            }
            return parse_fields(macros[i].expr, out, err);
        }
    }
    if (name_len == 7 && strncasecmp(p, "@reboot", 7) == 0) {
        return sl_err_set(err, SL_EINVAL, "@reboot is not supported (a job with missed-run "
                          "policy 'run' runs once at start after missed slots)");
    }
    return sl_err_set(err, SL_EINVAL, "unknown macro '%.*s' (use @yearly, @annually, @monthly, "
                      "@weekly, @daily, @midnight, @hourly or @every PERIOD)",
                      (int)name_len, p);
}

static bool day_matches(const struct sched_cron *c, int64_t days, int mday)
{
    bool dom = (c->days & (1u << mday)) != 0;
    bool dow = (c->weekdays & (1u << sched_civil_weekday(days))) != 0;

    if (c->is_dom_restricted && c->is_dow_restricted) {
        return dom || dow;
    }
    return dom && dow;
}

/* The first matching whole minute strictly after t, all on civil (zone-less) time. */
static int64_t next_civil(const struct sched_cron *c, int64_t t)
{
    int64_t year, limit_year;
    int month, mday;

    t = sched_floor_div(t, 60) * 60 + 60;
    sched_civil_date(sched_floor_div(t, 86400), &limit_year, &month, &mday);
    limit_year += SEARCH_YEARS;
    for (;;) {
        int64_t days = sched_floor_div(t, 86400);
        int64_t secs = t - days * 86400;
        int hour = (int)(secs / 3600);
        int minute = (int)(secs % 3600 / 60);

        sched_civil_date(days, &year, &month, &mday);
        if (year > limit_year) {
            return -1;
        }
        if ((c->months & (1u << month)) == 0) {
            t = (month == 12 ? sched_civil_days(year + 1, 1, 1)
                             : sched_civil_days(year, month + 1, 1)) * 86400;
            continue;
        }
        if (!day_matches(c, days, mday)) {
            t = (days + 1) * 86400;
            continue;
        }
        if ((c->hours & (1u << hour)) == 0) {
            t = days * 86400 + (int64_t)(hour + 1) * 3600;
            continue;
        }
        while (minute < 60 && (c->minutes & ((uint64_t)1 << minute)) == 0) {
            minute++;
        }
        if (minute == 60) {
            t = days * 86400 + (int64_t)(hour + 1) * 3600;
            continue;
        }
        return days * 86400 + (int64_t)hour * 3600 + (int64_t)minute * 60;
    }
}

int64_t sched_cron_next(const struct sched_cron *c, int64_t after_s)
{
    if (c->every_s > 0) {
        return sched_floor_div(after_s, c->every_s) * c->every_s + c->every_s;
    }
    return next_civil(c, after_s);
}

/*
 * The first instant whose wall-clock time in tz is local_s, or for a time skipped by a
 * forward change, the instant of the change.
 */
static int64_t local_to_utc(const struct sched_tz *tz, int64_t local_s)
{
    int32_t before = sched_tz_offset(tz, local_s - 86400);
    int32_t after = sched_tz_offset(tz, local_s + 86400);
    int64_t first = INT64_MAX;
    int64_t lo, hi;

    if (sched_tz_offset(tz, local_s - before) == before) {
        first = local_s - before;
    }
    if (sched_tz_offset(tz, local_s - after) == after && local_s - after < first) {
        first = local_s - after;
    }
    if (first != INT64_MAX) {
        return first;
    }
    if (before == after) {
        return local_s - before; /* two changes within two days; not in real zones */
    }
    /* A gap: the change lies in (lo, hi]; find its instant. */
    lo = local_s - (before > after ? before : after);
    hi = local_s - (before < after ? before : after);
    {
        int32_t lo_off = sched_tz_offset(tz, lo);

        while (hi - lo > 1) {
            int64_t mid = lo + (hi - lo) / 2;

            if (sched_tz_offset(tz, mid) == lo_off) {
                lo = mid;
            }
            else {
                hi = mid;
            }
        }
    }
    return hi;
}

int64_t sched_cron_next_tz(const struct sched_cron *c, const struct sched_tz *tz,
                           int64_t after_s)
{
    int64_t local_s;

    if (c->every_s > 0 || tz == NULL) {
        return sched_cron_next(c, after_s);
    }
    local_s = after_s + sched_tz_offset(tz, after_s);
    /* Wall-clock candidates only move forward; one whose first instant is not after
     * after_s is the second occurrence of a repeated time, or a gap time already served. */
    for (int i = 0; i < 100000; i++) {
        int64_t utc_s;

        local_s = next_civil(c, local_s);
        if (local_s < 0) {
            return -1;
        }
        utc_s = local_to_utc(tz, local_s);
        if (utc_s > after_s) {
            return utc_s;
        }
    }
    return -1;
}

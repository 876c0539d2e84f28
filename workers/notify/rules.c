/*
 * Evaluating a rule: one ClickHouse query per rule (values quoted with the sl_ch helpers)
 * turned into one observation per subject, the condition and its value. What the
 * observations lead to is lifecycle.c's; the kinds:
 *
 *   error_rate         per tenant: share of events in the window that are log events of
 *                      severity error or fatal (uniqExact ids, so redelivery counts once);
 *                      needs at least min_events events to fire
 *   quota              per tenant with a quota: percent of the tier's monthly_quota used
 *                      this calendar month (events_daily, exact per day then summed);
 *                      subject "<tenant>" at the threshold and "<tenant>@100%" at 100
 *   ingestion_stopped  per tenant that sent events in the look-back: seconds since its
 *                      last event; fires when that reaches the window
 *   dlq_growth         sluice_loader_dead_letters_total added in the window (per series
 *                      last minus first sample; a restarted counter counts from zero)
 *   loader_lag         sluice_loader_consumer_lag: per series the lowest sample in the
 *                      window, summed (so a short spike does not fire)
 */
#include "notify_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"

#define SQL_MAX 4096
#define OBS_MAX 100000

struct obs_list {
    struct notify_obs *items;
    size_t n;
    size_t cap;
};

static struct notify_obs *obs_add(struct obs_list *l, struct sl_err *err)
{
    if (l->n == l->cap) {
        size_t cap = l->cap == 0 ? 16 : l->cap * 2;
        struct notify_obs *grown = NULL;

        if (cap > OBS_MAX) {
            sl_err_set(err, SL_EINVAL, "more than %d subjects in one rule", OBS_MAX);
            return NULL;
        }
        grown = sl_realloc(l->items, cap * sizeof(*grown));
        if (grown == NULL) {
            sl_err_set(err, SL_ENOMEM, "out of memory evaluating a rule");
            return NULL;
        }
        l->items = grown;
        l->cap = cap;
    }
    memset(&l->items[l->n], 0, sizeof(l->items[0]));
    return &l->items[l->n++];
}

/* "FROM `db`.`table` WHERE " */
static int put_from(struct sl_ch_buf *b, const char *database, const char *table)
{
    int rc = sl_ch_buf_append_str(b, " FROM ");

    rc = rc != 0 ? rc : sl_ch_quote_table(b, database, table);
    return rc != 0 ? rc : sl_ch_buf_append_str(b, " WHERE ");
}

/* " AND tenant_id = '<id>'" for a tenant's rule; nothing for a global one. */
static int put_tenant(struct sl_ch_buf *b, const struct sl_rule *r)
{
    int rc = 0;

    if (r->tenant_id[0] != '\0') {
        rc = sl_ch_buf_append_str(b, " AND tenant_id = ");
        if (rc == 0) {
            rc = sl_ch_quote(b, r->tenant_id, strlen(r->tenant_id));
        }
    }
    return rc;
}

/* Runs sql and hands each TabSeparated line's fields (at most 4) to the caller. */
typedef int (*row_cb)(char **fields, size_t n, void *arg, struct sl_err *err);

static int query_rows(struct sl_ch *ch, struct sl_ch_buf *sql, row_cb cb, void *arg,
                      struct sl_err *err)
{
    struct sl_ch_result res = {0};
    char *save = NULL;
    int rc;

    if (sql->data == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory building a rule's query");
    }
    rc = sl_ch_buf_append_str(sql, " FORMAT TabSeparated");
    if (rc != 0) {
        return sl_err_set(err, rc, "a rule's query is too long");
    }
    rc = sl_ch_query(ch, sql->data, &res, err);
    for (char *line = rc == 0 ? strtok_r(res.body, "\n", &save) : NULL; rc == 0 && line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char *fields[4];
        char *fsave = NULL;
        size_t n = 0;

        for (char *f = strtok_r(line, "\t", &fsave); f != NULL && n < 4;
             f = strtok_r(NULL, "\t", &fsave)) {
            fields[n++] = f;
        }
        rc = cb(fields, n, arg, err);
    }
    sl_ch_result_fini(&res);
    return rc;
}

/* ---- error_rate ---- */

struct rate_arg {
    struct obs_list *l;
    const struct sl_rule *r;
    int64_t min_events;
};

static int rate_row(char **f, size_t n, void *arg, struct sl_err *err)
{
    struct rate_arg *a = arg;
    struct notify_obs *o;
    double total, errors;

    if (n < 3) {
        return sl_err_set(err, SL_ESERVER, "unexpected error_rate row from ClickHouse");
    }
    o = obs_add(a->l, err);
    if (o == NULL) {
        return err->code;
    }
    total = strtod(f[1], NULL);
    errors = strtod(f[2], NULL);
    snprintf(o->subject, sizeof(o->subject), "%s", f[0]);
    snprintf(o->tenant_id, sizeof(o->tenant_id), "%s", f[0]);
    o->value = total > 0 ? errors / total : 0.0;
    o->condition = total >= (double)a->min_events && o->value > a->r->threshold;
    snprintf(o->message, sizeof(o->message),
             "%.0f of %.0f events from tenant %s in the last %llds were errors (%.1f%%)",
             errors, total, f[0], (long long)a->r->window_s, o->value * 100.0);
    return 0;
}

static int eval_error_rate(struct sl_ch *ch, const char *db, const struct notify_settings *s,
                           const struct sl_rule *r, int64_t now_s, struct obs_list *l,
                           struct sl_err *err)
{
    struct rate_arg a = {.l = l, .r = r, .min_events = s->min_events};
    struct sl_ch_buf b;
    int rc;

    sl_ch_buf_init(&b, SQL_MAX);
    rc = sl_ch_buf_append_str(&b, "SELECT tenant_id, uniqExact(id), uniqExactIf(id, type = "
                                  "'log' AND severity IN ('error', 'fatal'))");
    if (rc == 0) {
        rc = put_from(&b, db, "events");
    }
    if (rc == 0) {
        rc = sl_ch_buf_appendf(&b, "ts >= toDateTime(%lld) AND ts < toDateTime(%lld)",
                               (long long)(now_s - r->window_s), (long long)now_s);
    }
    if (rc == 0) {
        rc = put_tenant(&b, r);
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(&b, " GROUP BY tenant_id");
    }
    rc = rc == 0 ? query_rows(ch, &b, rate_row, &a, err)
                 : sl_err_set(err, rc, "cannot build the error_rate query");
    sl_ch_buf_fini(&b);
    return rc;
}

/* ---- quota ---- */

struct usage {
    char tenant_id[SL_STORE_ID_MAX];
    double events;
};

struct usage_arg {
    struct usage *items;
    size_t n;
    size_t cap;
};

static int usage_row(char **f, size_t n, void *arg, struct sl_err *err)
{
    struct usage_arg *a = arg;

    if (n < 2) {
        return sl_err_set(err, SL_ESERVER, "unexpected quota row from ClickHouse");
    }
    if (a->n == a->cap) {
        size_t cap = a->cap == 0 ? 16 : a->cap * 2;
        struct usage *grown = cap <= OBS_MAX ? sl_realloc(a->items, cap * sizeof(*grown)) : NULL;

        if (grown == NULL) {
            return sl_err_set(err, SL_ENOMEM, "out of memory reading quota usage");
        }
        a->items = grown;
        a->cap = cap;
    }
    snprintf(a->items[a->n].tenant_id, sizeof(a->items[a->n].tenant_id), "%s", f[0]);
    a->items[a->n].events = strtod(f[1], NULL);
    a->n++;
    return 0;
}

/* The first days of this month and the next, "YYYY-MM-01", UTC. */
static int month_bounds(int64_t now_s, char from[16], char to[16])
{
    time_t t = (time_t)now_s;
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL || strftime(from, 16, "%Y-%m-01", &tm) == 0) {
        return SL_EINVAL;
    }
    tm.tm_mday = 1;
    tm.tm_mon += 1;
    t = timegm(&tm);
    if (gmtime_r(&t, &tm) == NULL || strftime(to, 16, "%Y-%m-01", &tm) == 0) {
        return SL_EINVAL;
    }
    return 0;
}

static int add_quota_obs(struct obs_list *l, const char *tenant_id,
                         double used, int64_t quota, double level, bool is_hard,
                         struct sl_err *err)
{
    struct notify_obs *o = obs_add(l, err);

    if (o == NULL) {
        return err->code;
    }
    if (is_hard) {
        snprintf(o->subject, sizeof(o->subject), "%s@100%%", tenant_id);
    }
    else {
        snprintf(o->subject, sizeof(o->subject), "%s", tenant_id);
    }
    snprintf(o->tenant_id, sizeof(o->tenant_id), "%s", tenant_id);
    o->value = used * 100.0 / (double)quota;
    o->threshold = level;
    o->condition = o->value >= level;
    snprintf(o->message, sizeof(o->message),
             "tenant %s used %.0f of its %lld monthly events (%.1f%%)%s", tenant_id, used,
             (long long)quota, o->value, is_hard ? ": the quota is exhausted" : "");
    return 0;
}

static int eval_quota(struct sl_ch *ch, const char *db, struct sl_store *st,
                      const struct sl_rule *r, int64_t now_s, struct obs_list *l,
                      struct sl_err *err)
{
    struct usage_arg u = {0};
    struct sl_tenant *tenants = NULL;
    struct sl_tier *tiers = NULL;
    size_t n_tenants = 0, n_tiers = 0;
    char from[16], to[16];
    struct sl_ch_buf b;
    int rc;

    if (month_bounds(now_s, from, to) != 0) {
        return sl_err_set(err, SL_EINVAL, "bad time %lld", (long long)now_s);
    }
    sl_ch_buf_init(&b, SQL_MAX);
    rc = sl_ch_buf_append_str(&b, "SELECT tenant_id, sum(n) FROM (SELECT tenant_id, day, "
                                  "uniqExactMerge(events) AS n");
    if (rc == 0) {
        rc = put_from(&b, db, "events_daily");
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(&b, "day >= ");
    }
    if (rc == 0) {
        rc = sl_ch_quote(&b, from, strlen(from));
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(&b, " AND day < ");
    }
    if (rc == 0) {
        rc = sl_ch_quote(&b, to, strlen(to));
    }
    if (rc == 0) {
        rc = put_tenant(&b, r);
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(&b, " GROUP BY tenant_id, day) GROUP BY tenant_id");
    }
    rc = rc == 0 ? query_rows(ch, &b, usage_row, &u, err)
                 : sl_err_set(err, rc, "cannot build the quota query");
    sl_ch_buf_fini(&b);
    if (rc == 0) {
        rc = sl_store_tenant_list(st, &tenants, &n_tenants, err);
    }
    if (rc == 0) {
        rc = sl_store_tier_list(st, &tiers, &n_tiers, err);
    }
    for (size_t i = 0; rc == 0 && i < n_tenants; i++) {
        const struct sl_tenant *t = &tenants[i];
        int64_t quota = 0;
        double used = 0;

        if (r->tenant_id[0] != '\0' && strcmp(r->tenant_id, t->id) != 0) {
            continue;
        }
        for (size_t k = 0; k < n_tiers; k++) {
            if (strcmp(tiers[k].name, t->tier) == 0) {
                quota = tiers[k].monthly_quota;
            }
        }
        if (quota <= 0) {
            continue; /* unlimited */
        }
        for (size_t k = 0; k < u.n; k++) {
            if (strcmp(u.items[k].tenant_id, t->id) == 0) {
                used = u.items[k].events;
            }
        }
        rc = add_quota_obs(l, t->id, used, quota, r->threshold, false, err);
        if (rc == 0 && r->threshold < 100.0) {
            rc = add_quota_obs(l, t->id, used, quota, 100.0, true, err);
        }
    }
    sl_free(u.items);
    sl_free(tenants);
    sl_free(tiers);
    return rc;
}

/* ---- ingestion_stopped ---- */

struct stopped_arg {
    struct obs_list *l;
    const struct sl_rule *r;
    int64_t now_s;
};

static int stopped_row(char **f, size_t n, void *arg, struct sl_err *err)
{
    struct stopped_arg *a = arg;
    struct notify_obs *o;
    int64_t last;

    if (n < 2) {
        return sl_err_set(err, SL_ESERVER, "unexpected ingestion_stopped row from ClickHouse");
    }
    o = obs_add(a->l, err);
    if (o == NULL) {
        return err->code;
    }
    last = strtoll(f[1], NULL, 10);
    snprintf(o->subject, sizeof(o->subject), "%s", f[0]);
    snprintf(o->tenant_id, sizeof(o->tenant_id), "%s", f[0]);
    o->value = (double)(a->now_s - last);
    o->condition = a->now_s - last >= a->r->window_s;
    snprintf(o->message, sizeof(o->message),
             "no events from tenant %s for %llds (it usually sends; window %llds)", f[0],
             (long long)(a->now_s - last), (long long)a->r->window_s);
    return 0;
}

static int eval_stopped(struct sl_ch *ch, const char *db, const struct notify_settings *s,
                        const struct sl_rule *r, int64_t now_s, struct obs_list *l,
                        struct sl_err *err)
{
    struct stopped_arg a = {.l = l, .r = r, .now_s = now_s};
    int64_t lookback = s->stopped_lookback_s > 2 * r->window_s ? s->stopped_lookback_s
                                                                : 2 * r->window_s;
    struct sl_ch_buf b;
    int rc;

    sl_ch_buf_init(&b, SQL_MAX);
    rc = sl_ch_buf_append_str(&b, "SELECT tenant_id, toUInt32(max(ts))");
    if (rc == 0) {
        rc = put_from(&b, db, "events");
    }
    if (rc == 0) {
        rc = sl_ch_buf_appendf(&b, "ts >= toDateTime(%lld) AND ts <= toDateTime(%lld)",
                               (long long)(now_s - lookback), (long long)now_s);
    }
    if (rc == 0) {
        rc = put_tenant(&b, r);
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(&b, " GROUP BY tenant_id");
    }
    rc = rc == 0 ? query_rows(ch, &b, stopped_row, &a, err)
                 : sl_err_set(err, rc, "cannot build the ingestion_stopped query");
    sl_ch_buf_fini(&b);
    return rc;
}

/* ---- dlq_growth and loader_lag: internal_metrics ---- */

static int one_number(char **f, size_t n, void *arg, struct sl_err *err)
{
    double *v = arg;

    if (n < 1) {
        return sl_err_set(err, SL_ESERVER, "unexpected metrics row from ClickHouse");
    }
    *v = strtod(f[0], NULL);
    return 0;
}

static int eval_metric(struct sl_ch *ch, const char *db, const struct sl_rule *r,
                       int64_t now_s, struct obs_list *l, struct sl_err *err)
{
    bool is_dlq = strcmp(r->kind, "dlq_growth") == 0;
    const char *metric = is_dlq ? "sluice_loader_dead_letters_total" : "sluice_loader_consumer_lag";
    struct notify_obs *o = NULL;
    struct sl_ch_buf b;
    double value = 0;
    int rc;

    sl_ch_buf_init(&b, SQL_MAX);
    rc = sl_ch_buf_append_str(&b, is_dlq ? "SELECT sum(g) FROM (SELECT if(argMax(value, ts) >= "
                                           "argMin(value, ts), argMax(value, ts) - argMin(value, "
                                           "ts), argMax(value, ts)) AS g"
                                         : "SELECT sum(g) FROM (SELECT min(value) AS g");
    if (rc == 0) {
        rc = put_from(&b, db, "internal_metrics");
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(&b, "name = ");
    }
    if (rc == 0) {
        rc = sl_ch_quote(&b, metric, strlen(metric));
    }
    if (rc == 0) {
        rc = sl_ch_buf_appendf(&b, " AND ts >= toDateTime(%lld) AND ts <= toDateTime(%lld)",
                               (long long)(now_s - r->window_s), (long long)now_s);
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(&b, " GROUP BY host, process, label_keys, label_values)");
    }
    rc = rc == 0 ? query_rows(ch, &b, one_number, &value, err)
                 : sl_err_set(err, rc, "cannot build the %s query", r->kind);
    sl_ch_buf_fini(&b);
    if (rc == 0) {
        o = obs_add(l, err);
        rc = o == NULL ? err->code : 0;
    }
    if (rc == 0) {
        o->value = value;
        o->condition = is_dlq ? value >= r->threshold : value > r->threshold;
        if (is_dlq) {
            snprintf(o->message, sizeof(o->message), "%.0f events went to the dead letters in "
                     "the last %llds", value, (long long)r->window_s);
        }
        else {
            snprintf(o->message, sizeof(o->message), "the loader stayed at least %.0f events "
                     "behind for the last %llds", value, (long long)r->window_s);
        }
    }
    return rc;
}

int notify_rule_eval(struct sl_ch *ch, const char *database, struct sl_store *st,
                     const struct notify_settings *s, const struct sl_rule *r, int64_t now_s,
                     struct notify_eval *ev, struct sl_err *err)
{
    struct obs_list l = {0};
    int rc;

    memset(ev, 0, sizeof(*ev));
    if (strcmp(r->kind, "error_rate") == 0) {
        rc = eval_error_rate(ch, database, s, r, now_s, &l, err);
    }
    else if (strcmp(r->kind, "quota") == 0) {
        rc = eval_quota(ch, database, st, r, now_s, &l, err);
    }
    else if (strcmp(r->kind, "ingestion_stopped") == 0) {
        rc = eval_stopped(ch, database, s, r, now_s, &l, err);
        ev->keeps_missing = true;
    }
    else if (strcmp(r->kind, "dlq_growth") == 0 || strcmp(r->kind, "loader_lag") == 0) {
        rc = eval_metric(ch, database, r, now_s, &l, err);
    }
    else {
        rc = sl_err_set(err, SL_EINVAL, "rule %s has unknown kind '%s'", r->id, r->kind);
    }
    if (rc != 0) {
        sl_free(l.items);
        return rc;
    }
    ev->obs = l.items;
    ev->n = l.n;
    return 0;
}

void notify_eval_fini(struct notify_eval *ev)
{
    sl_free(ev->obs);
    ev->obs = NULL;
    ev->n = 0;
}

/*
 * Counting what retention would delete (see survey.h): one GROUP BY query per table for the
 * partitions past every retention, one per table and group for the rows inside retention
 * windows, and the cold exports from the tenant store. Reads only.
 */
#include "survey.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "retention_int.h"
#include "store_retention.h"

#define SQL_MAX_BYTES (4u << 20)
/* Cold exports of tenants the store does not know, listed at most (the rest next run). */
#define COLD_LIST_MAX 10000

/* Growing list of items; counts appended to the last item. */
struct builder {
    struct retention_survey *s;
    size_t cap_items;
    size_t cap_counts; /* of the last item */
};

static int add_item(struct builder *b, const struct retention_item *proto, struct sl_err *err)
{
    struct retention_survey *s = b->s;

    if (s->n_items == b->cap_items) {
        size_t cap = b->cap_items == 0 ? 16 : b->cap_items * 2;
        struct retention_item *grown = sl_realloc(s->items, cap * sizeof(*grown));

        if (grown == NULL) {
            return sl_err_set(err, SL_ENOMEM, "out of memory surveying retention");
        }
        s->items = grown;
        b->cap_items = cap;
    }
    s->items[s->n_items] = *proto;
    s->items[s->n_items].counts = NULL;
    s->items[s->n_items].n_counts = 0;
    s->items[s->n_items].rows = 0;
    s->n_items++;
    b->cap_counts = 0;
    return 0;
}

static int add_count(struct builder *b, const char *tenant_id, int64_t rows, struct sl_err *err)
{
    struct retention_item *it = &b->s->items[b->s->n_items - 1];

    if (it->n_counts == b->cap_counts) {
        size_t cap = b->cap_counts == 0 ? 8 : b->cap_counts * 2;
        struct retention_count *grown = sl_realloc(it->counts, cap * sizeof(*grown));

        if (grown == NULL) {
            return sl_err_set(err, SL_ENOMEM, "out of memory surveying retention");
        }
        it->counts = grown;
        b->cap_counts = cap;
    }
    snprintf(it->counts[it->n_counts].tenant_id, sizeof(it->counts[0].tenant_id), "%s",
             tenant_id);
    it->counts[it->n_counts].rows = rows;
    it->n_counts++;
    it->rows += rows;
    b->s->rows += rows;
    return 0;
}

/* Drops the last item when it counted nothing. */
static void drop_empty_last(struct builder *b)
{
    struct retention_survey *s = b->s;

    if (s->n_items > 0 && s->items[s->n_items - 1].n_counts == 0) {
        sl_free(s->items[s->n_items - 1].counts);
        s->n_items--;
    }
}

/* Reads one TabSeparated field at *p into out (unescaped, cut to cap - 1) and moves *p past
 * it and its tab. */
static void tsv_field(const char **p, const char *end, char *out, size_t cap)
{
    const char *q = *p;
    size_t n = 0;

    while (q < end && *q != '\t' && *q != '\n') {
        char c = *q++;

        if (c == '\\' && q < end) {
            char e = *q++;

            c = e == 't' ? '\t' : e == 'n' ? '\n' : e == 'r' ? '\r' : e == '0' ? '\0' : e;
        }
        if (n + 1 < cap) {
            out[n++] = c;
        }
    }
    out[n] = '\0';
    if (q < end && *q == '\t') {
        q++;
    }
    *p = q;
}

/* Parses a body of lines "[partition\t]tenant\tcount"; with_partition starts a new item
 * (a copy of proto with its partition) whenever the partition changes. */
static int parse_counts(struct builder *b, const struct sl_ch_result *res, bool with_partition,
                        const struct retention_item *proto, struct sl_err *err)
{
    const char *p = res->body;
    const char *end = res->body + res->len;
    char last_partition[16] = "";
    int rc = 0;

    while (rc == 0 && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        char partition[16] = "";
        char tenant[SL_STORE_ID_MAX];
        char number[32];
        char *num_end = NULL;
        long long rows;

        if (eol == NULL) {
            eol = end;
        }
        if (with_partition) {
            tsv_field(&p, eol, partition, sizeof(partition));
        }
        tsv_field(&p, eol, tenant, sizeof(tenant));
        tsv_field(&p, eol, number, sizeof(number));
        errno = 0;
        rows = strtoll(number, &num_end, 10);
        if (errno != 0 || num_end == number || *num_end != '\0') {
            return sl_err_set(err, SL_ESERVER, "unexpected count '%s' from ClickHouse", number);
        }
        if (with_partition && strcmp(partition, last_partition) != 0) {
            struct retention_item it = *proto;
            int64_t day_s;
            unsigned y, m, d;

            if (strlen(partition) != 8 || sscanf(partition, "%4u%2u%2u", &y, &m, &d) != 3) {
                return sl_err_set(err, SL_ESERVER, "unexpected partition '%s' from ClickHouse",
                                  partition);
            }
            snprintf(it.partition, sizeof(it.partition), "%s", partition);
            /* days_from_civil (Howard Hinnant) for the partition's first second. */
            {
                int64_t yy = (int64_t)y - (m <= 2);
                int64_t era = (yy >= 0 ? yy : yy - 399) / 400;
                int64_t yoe = yy - era * 400;
                int64_t doy = (153 * (int64_t)(m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
                int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

                day_s = (era * 146097 + doe - 719468) * RETENTION_DAY_S;
            }
            it.from_s = day_s;
            it.cutoff_s = day_s + RETENTION_DAY_S;
            rc = add_item(b, &it, err);
            snprintf(last_partition, sizeof(last_partition), "%s", partition);
        }
        if (rc == 0) {
            rc = add_count(b, tenant, rows, err);
        }
        p = eol < end ? eol + 1 : end;
    }
    return rc;
}

static int run_query(struct sl_ch *ch, const struct sl_ch_buf *sql, struct sl_ch_result *res,
                     struct sl_err *err)
{
    int rc = sl_ch_query(ch, sql->data, res, err);

    if (rc != 0) {
        sl_err_wrap(err, "counting rows past retention");
    }
    return rc;
}

/* Whole partitions of t before the plan's drop boundary, counted per tenant. */
static int survey_partitions(struct builder *b, struct sl_ch *ch, const char *database,
                             const struct retention_table *t, struct sl_err *err)
{
    const struct retention_plan *plan = b->s->plan;
    struct retention_item proto = {.kind = RETENTION_ITEM_PARTITION, .table = t->name};
    struct sl_ch_result res = {0};
    struct sl_ch_buf sql;
    int rc;

    sl_ch_buf_init(&sql, SQL_MAX_BYTES);
    rc = sl_ch_buf_append_str(&sql, "SELECT toYYYYMMDD(");
    if (rc == 0) {
        rc = sl_ch_quote_ident(&sql, t->time_col, strlen(t->time_col));
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(&sql, ") AS p, tenant_id, count() FROM ");
    }
    if (rc == 0) {
        rc = sl_ch_quote_table(&sql, database, t->name);
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(&sql, " WHERE 1");
    }
    if (rc == 0) {
        rc = retention_sql_range(&sql, t, 0, plan->drop_before_s);
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(&sql, " GROUP BY p, tenant_id ORDER BY p, tenant_id "
                                        "FORMAT TabSeparated");
    }
    if (rc != 0) {
        rc = sl_err_set(err, rc, "building the partition count for %s", t->name);
    }
    if (rc == 0) {
        rc = run_query(ch, &sql, &res, err);
    }
    if (rc == 0) {
        rc = parse_counts(b, &res, true, &proto, err);
    }
    sl_ch_result_fini(&res);
    sl_ch_buf_fini(&sql);
    return rc;
}

/* Appends "tenant_id IN ('a', 'b', ...)" for a group of the plan. */
static int tenant_list(struct sl_ch_buf *sql, const struct retention_plan *plan,
                       const struct retention_group *g)
{
    int rc = sl_ch_buf_append_str(sql, "tenant_id IN (");

    for (size_t i = 0; rc == 0 && i < g->n; i++) {
        const char *id = plan->tenants[g->first + i].id;

        if (i > 0) {
            rc = sl_ch_buf_append_str(sql, ", ");
        }
        if (rc == 0) {
            rc = sl_ch_quote(sql, id, strlen(id));
        }
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(sql, ")");
    }
    return rc;
}

/* One group's rows in t inside its retention window. */
static int survey_group(struct builder *b, struct sl_ch *ch, const char *database,
                        const struct retention_table *t, size_t gi, struct sl_err *err)
{
    const struct retention_plan *plan = b->s->plan;
    const struct retention_group *g = &plan->groups[gi];
    struct retention_item proto = {.kind = RETENTION_ITEM_GROUP, .table = t->name, .group = gi,
                                   .from_s = plan->drop_before_s, .cutoff_s = g->cutoff_s};
    struct sl_ch_result res = {0};
    struct sl_ch_buf sql;
    int rc;

    sl_ch_buf_init(&sql, SQL_MAX_BYTES);
    rc = sl_ch_buf_append_str(&sql, "SELECT tenant_id, count() FROM ");
    if (rc == 0) {
        rc = sl_ch_quote_table(&sql, database, t->name);
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(&sql, " WHERE ");
    }
    if (rc == 0) {
        rc = tenant_list(&sql, plan, g);
    }
    if (rc == 0) {
        rc = retention_sql_range(&sql, t, proto.from_s, proto.cutoff_s);
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(&sql, " GROUP BY tenant_id ORDER BY tenant_id "
                                        "FORMAT TabSeparated");
    }
    if (rc != 0) {
        rc = sl_err_set(err, rc, "building the row count for %s", t->name);
    }
    if (rc == 0) {
        rc = add_item(b, &proto, err);
    }
    if (rc == 0) {
        rc = run_query(ch, &sql, &res, err);
    }
    if (rc == 0) {
        rc = parse_counts(b, &res, false, &proto, err);
    }
    if (rc == 0) {
        drop_empty_last(b);
    }
    sl_ch_result_fini(&res);
    sl_ch_buf_fini(&sql);
    return rc;
}

/* Cold exports past cutoffs: per tenant of the plan, then of tenants the store does not
 * know (past the partition boundary, as their ClickHouse rows). */
static int survey_cold(struct builder *b, struct sl_store *st, struct sl_err *err)
{
    const struct retention_plan *plan = b->s->plan;
    struct sl_cold_export *rows = NULL;
    size_t n = 0;
    char day[11];
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < plan->n_tenants; i++) {
        const struct retention_tenant *t = &plan->tenants[i];
        struct retention_item it = {.kind = RETENTION_ITEM_COLD, .table = "cold",
                                    .cutoff_s = t->cutoff_s};
        int64_t days = 0, cold_rows = 0;

        if (t->cutoff_s <= 0) {
            continue;
        }
        rc = sl_store_retention_cold_count(st, t->id,
                                           t->cutoff_s == RETENTION_ALL
                                               ? NULL
                                               : retention_day_text(t->cutoff_s, day),
                                           &days, &cold_rows, err);
        if (rc == 0 && days > 0) {
            rc = add_item(b, &it, err);
            if (rc == 0) {
                rc = add_count(b, t->id, cold_rows, err);
            }
            if (rc == 0) {
                b->s->items[b->s->n_items - 1].days = days;
            }
        }
    }
    if (rc == 0 && plan->drop_before_s > 0) {
        rc = sl_store_retention_cold_list(st, NULL, retention_day_text(plan->drop_before_s, day),
                                          COLD_LIST_MAX, &rows, &n, err);
        /* Rows come ordered by tenant: one item per unknown tenant. */
        for (size_t k = 0; rc == 0 && k < n; k++) {
            struct retention_item *last = NULL;

            if (k == 0 || strcmp(rows[k].tenant_id, rows[k - 1].tenant_id) != 0) {
                struct retention_item it = {.kind = RETENTION_ITEM_COLD, .table = "cold",
                                            .cutoff_s = plan->drop_before_s};

                rc = add_item(b, &it, err);
                if (rc == 0) {
                    rc = add_count(b, rows[k].tenant_id, 0, err);
                }
            }
            if (rc == 0) {
                last = &b->s->items[b->s->n_items - 1];
                last->counts[0].rows += rows[k].rows;
                last->rows += rows[k].rows;
                last->days++;
                b->s->rows += rows[k].rows;
            }
        }
        sl_free(rows);
    }
    return rc;
}

void retention_survey_destroy(struct retention_survey *s)
{
    if (s == NULL) {
        return;
    }
    for (size_t i = 0; i < s->n_items; i++) {
        sl_free(s->items[i].counts);
    }
    sl_free(s->items);
    retention_plan_destroy(s->plan);
    sl_free(s);
}

int retention_survey_create(struct sl_store *st, struct sl_ch *ch, const char *database,
                            int64_t now_s, const struct retention_policy *policy,
                            struct retention_survey **out, struct sl_err *err)
{
    struct sl_tier *tiers = NULL;
    struct sl_tenant *tenants = NULL;
    size_t n_tiers = 0, n_tenants = 0;
    struct builder b = {0};
    int rc;

    *out = NULL;
    b.s = sl_calloc(1, sizeof(*b.s));
    if (b.s == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory surveying retention");
    }
    rc = sl_store_tier_list(st, &tiers, &n_tiers, err);
    if (rc == 0) {
        rc = sl_store_tenant_list(st, &tenants, &n_tenants, err);
    }
    if (rc == 0) {
        rc = retention_plan_build(tiers, n_tiers, tenants, n_tenants, now_s, policy, &b.s->plan,
                                  err);
    }
    for (size_t t = 0; rc == 0 && t < RETENTION_N_TABLES; t++) {
        if (b.s->plan->drop_before_s > 0) {
            rc = survey_partitions(&b, ch, database, &retention_tables[t], err);
        }
        for (size_t g = 0; rc == 0 && g < b.s->plan->n_groups; g++) {
            rc = survey_group(&b, ch, database, &retention_tables[t], g, err);
        }
    }
    if (rc == 0) {
        rc = survey_cold(&b, st, err);
    }
    sl_free(tiers);
    sl_free(tenants);
    if (rc != 0) {
        retention_survey_destroy(b.s);
        return rc;
    }
    *out = b.s;
    return 0;
}

/*
 * Deleting what the survey counted, with the audit around each delete: the rows each
 * tenant is about to lose are written as 'pending' before the statement goes out and
 * settled as 'done' once ClickHouse finished it, so a run killed in between leaves a trail
 * that the next run settles by counting again (retention_apply_resume). The delete uses
 * exactly the WHERE the survey's SELECT just ran, so it cannot throw inside a mutation
 * (which would block the table on 18.16 for good).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "log.h"
#include "retention_int.h"
#include "store_retention.h"

#define COMPONENT "retention"
#define SQL_MAX_BYTES (4u << 20)
#define PENDING_MAX 100000

static size_t table_index(const struct retention_table *t)
{
    return (size_t)(t - retention_tables);
}

/* Writes the item's audit rows as pending; *out_ids (new, sl_free) gets their ids. */
static int audit_pending(struct retention_exec *x, const struct retention_item *item,
                         int64_t **out_ids, struct sl_err *err)
{
    struct sl_audit *a = sl_calloc(item->n_counts, sizeof(*a));
    int64_t *ids = sl_calloc(item->n_counts, sizeof(*ids));
    const char *method = item->kind == RETENTION_ITEM_PARTITION ? "drop_partition"
                         : item->cutoff_s == RETENTION_ALL     ? "purge"
                                                                : "mutation";
    int rc;

    *out_ids = NULL;
    if (a == NULL || ids == NULL) {
        sl_free(a);
        sl_free(ids);
        return sl_err_set(err, SL_ENOMEM, "out of memory writing the deletion audit");
    }
    for (size_t i = 0; i < item->n_counts; i++) {
        a[i].run_id = x->run_id;
        snprintf(a[i].job, sizeof(a[i].job), "%s", RETENTION_JOB);
        snprintf(a[i].tenant_id, sizeof(a[i].tenant_id), "%s", item->counts[i].tenant_id);
        snprintf(a[i].tbl, sizeof(a[i].tbl), "%s", item->table);
        snprintf(a[i].method, sizeof(a[i].method), "%s", method);
        a[i].from_s = item->from_s;
        a[i].cutoff_s = item->cutoff_s;
        a[i].rows = item->counts[i].rows;
        if (item->kind == RETENTION_ITEM_PARTITION) {
            snprintf(a[i].detail, sizeof(a[i].detail), "partition %s", item->partition);
        }
    }
    rc = sl_store_retention_audit_add(x->st, a, item->n_counts, "pending", x->now_s, err);
    for (size_t i = 0; rc == 0 && i < item->n_counts; i++) {
        ids[i] = a[i].id;
    }
    sl_free(a);
    if (rc != 0) {
        sl_free(ids);
        return rc;
    }
    *out_ids = ids;
    return 0;
}

/* The mutation ids of t, one per line, in res. */
static int mutation_ids(struct retention_exec *x, const struct retention_table *t,
                        struct sl_ch_result *res, struct sl_err *err)
{
    struct sl_ch_buf sql;
    int rc;

    sl_ch_buf_init(&sql, 4096);
    rc = sl_ch_buf_append_str(&sql, "SELECT mutation_id FROM system.mutations WHERE ");
    if (rc == 0) {
        rc = retention_sql_table_is(&sql, x->database, t);
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(&sql, " ORDER BY mutation_id FORMAT TabSeparated");
    }
    if (rc != 0) {
        rc = sl_err_set(err, rc, "building the mutation list query");
    }
    if (rc == 0) {
        rc = sl_ch_query(x->ch, sql.data, res, err);
    }
    sl_ch_buf_fini(&sql);
    return rc;
}

/* Writes the ids in after that are not in before into note, "mutation a, b". */
static void new_ids(const struct sl_ch_result *before, const struct sl_ch_result *after,
                    char *note, size_t cap)
{
    const char *p = after->body;
    const char *end = after->body + after->len;
    size_t used = 0;

    note[0] = '\0';
    while (p != NULL && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t len = eol != NULL ? (size_t)(eol - p) : (size_t)(end - p);
        bool seen = false;
        const char *q = before->body;
        const char *bend = before->body + before->len;

        while (q != NULL && q < bend) {
            const char *beol = memchr(q, '\n', (size_t)(bend - q));
            size_t blen = beol != NULL ? (size_t)(beol - q) : (size_t)(bend - q);

            if (blen == len && memcmp(q, p, len) == 0) {
                seen = true;
                break;
            }
            q = beol != NULL ? beol + 1 : NULL;
        }
        if (!seen && len > 0 && used + len + 12 < cap) {
            int n = snprintf(note + used, cap - used, "%s%.*s",
                             used == 0 ? "mutation " : ", ", (int)len, p);

            if (n > 0) {
                used += (size_t)n;
            }
        }
        p = eol != NULL ? eol + 1 : NULL;
    }
}

static int exec_sql(struct retention_exec *x, struct sl_ch_buf *sql, int build_rc,
                    const char *what, struct sl_err *err)
{
    int rc = build_rc;

    if (rc != 0) {
        return sl_err_set(err, rc, "building the statement to %s", what);
    }
    rc = sl_ch_exec(x->ch, sql->data, err);
    if (rc != 0) {
        sl_err_wrap(err, "%s", what);
    }
    return rc;
}

static int drop_partition(struct retention_exec *x, const struct retention_table *t,
                          const struct retention_item *item, struct sl_err *err)
{
    struct sl_ch_buf sql;
    int rc = 0;

    /* The partition comes from our own toYYYYMMDD() count, but it is spliced as a number,
     * so check it is one. */
    for (size_t i = 0; item->partition[i] != '\0'; i++) {
        if (item->partition[i] < '0' || item->partition[i] > '9') {
            return sl_err_set(err, SL_EINVAL, "partition '%s' is not a day number",
                              item->partition);
        }
    }
    sl_ch_buf_init(&sql, 4096);
    rc = sl_ch_buf_append_str(&sql, "ALTER TABLE ");
    if (rc == 0) {
        rc = sl_ch_quote_table(&sql, x->database, t->name);
    }
    if (rc == 0) {
        rc = sl_ch_buf_appendf(&sql, " DROP PARTITION %s", item->partition);
    }
    rc = exec_sql(x, &sql, rc, "dropping a partition", err);
    sl_ch_buf_fini(&sql);
    return rc;
}

/* Appends "tenant_id IN ('a', ...)" naming the item's tenants. */
static int append_tenants(struct sl_ch_buf *sql, const struct retention_item *item)
{
    int rc = sl_ch_buf_append_str(sql, "tenant_id IN (");

    for (size_t i = 0; rc == 0 && i < item->n_counts; i++) {
        const char *id = item->counts[i].tenant_id;

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

/* Rows of the item's tenants in t outside the item's range: what the delete must keep. */
static int count_kept(struct retention_exec *x, const struct retention_table *t,
                      const struct retention_item *item, int64_t *kept, struct sl_err *err)
{
    struct sl_ch_result res = {0};
    struct sl_ch_buf sql;
    int rc;

    sl_ch_buf_init(&sql, SQL_MAX_BYTES);
    rc = sl_ch_buf_append_str(&sql, "SELECT count() FROM ");
    if (rc == 0) {
        rc = sl_ch_quote_table(&sql, x->database, t->name);
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(&sql, " WHERE ");
    }
    if (rc == 0) {
        rc = append_tenants(&sql, item);
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(&sql, " AND NOT (1");
    }
    if (rc == 0) {
        rc = retention_sql_range(&sql, t, item->from_s, item->cutoff_s);
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(&sql, ") FORMAT TabSeparated");
    }
    if (rc != 0) {
        rc = sl_err_set(err, rc, "building the kept-rows count for %s", t->name);
    }
    if (rc == 0) {
        rc = sl_ch_query(x->ch, sql.data, &res, err);
        if (rc != 0) {
            sl_err_wrap(err, "counting the rows %s keeps", t->name);
        }
    }
    if (rc == 0) {
        *kept = strtoll(res.body, NULL, 10);
    }
    sl_ch_result_fini(&res);
    sl_ch_buf_fini(&sql);
    return rc;
}

/*
 * One mutation for the item, waited for. Proves what it keeps: the rows of its tenants
 * outside the range are counted before and after, and may only grow (new events arrive).
 * Fewer means the delete took more than it counted: it returns 0 (the delete finished)
 * with *took_kept set, err filled and the note saying how many.
 */
static int delete_rows(struct retention_exec *x, const struct retention_table *t,
                       const struct retention_item *item, char *note, size_t note_cap,
                       bool *took_kept, struct sl_err *err)
{
    struct sl_ch_result before = {0}, after = {0};
    struct sl_ch_buf sql;
    int64_t kept_before = 0, kept_after = 0;
    size_t used;
    int rc;

    note[0] = '\0';
    sl_ch_buf_init(&sql, SQL_MAX_BYTES);
    rc = sl_ch_buf_append_str(&sql, "ALTER TABLE ");
    if (rc == 0) {
        rc = sl_ch_quote_table(&sql, x->database, t->name);
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(&sql, " DELETE WHERE ");
    }
    if (rc == 0) {
        rc = append_tenants(&sql, item);
    }
    if (rc == 0) {
        rc = retention_sql_range(&sql, t, item->from_s, item->cutoff_s);
    }
    if (rc != 0) {
        rc = sl_err_set(err, rc, "building the delete mutation for %s", t->name);
    }
    if (rc == 0) {
        rc = count_kept(x, t, item, &kept_before, err);
    }
    if (rc == 0) {
        rc = mutation_ids(x, t, &before, err);
    }
    if (rc == 0) {
        rc = exec_sql(x, &sql, 0, "issuing a delete mutation", err);
    }
    if (rc == 0 && mutation_ids(x, t, &after, NULL) == 0) {
        new_ids(&before, &after, note, note_cap);
    }
    if (rc == 0) {
        rc = retention_wait_mutations(x, t, x->mutation_timeout_ms, err);
    }
    if (rc == 0) {
        rc = count_kept(x, t, item, &kept_after, err);
    }
    if (rc == 0) {
        used = strlen(note);
        if (kept_after < kept_before) {
            snprintf(note + used, note_cap - used, "%sKEPT ROWS FELL from %" PRId64 " to %"
                     PRId64, used > 0 ? "; " : "", kept_before, kept_after);
            *took_kept = true;
            sl_err_set(err, SL_ESTATE, "delete from %s.%s took kept rows: %" PRId64 " rows of "
                       "its tenants outside the range before, %" PRId64 " after", x->database,
                       t->name, kept_before, kept_after);
        }
        else {
            snprintf(note + used, note_cap - used, "%skept %" PRId64 " rows of these tenants",
                     used > 0 ? "; " : "", kept_after);
        }
    }
    sl_ch_result_fini(&before);
    sl_ch_result_fini(&after);
    sl_ch_buf_fini(&sql);
    return rc;
}

int retention_apply_item(struct retention_exec *x, const struct retention_item *item,
                         int64_t *rows_out, struct sl_err *err)
{
    const struct retention_table *t = retention_table_find(item->table);
    int64_t *ids = NULL;
    char note[256] = "";
    bool took_kept = false;
    int rc;

    *rows_out = 0;
    if (t == NULL || item->kind == RETENTION_ITEM_COLD) {
        return sl_err_set(err, SL_EINVAL, "retention_apply_item: not a table item (%s)",
                          item->table);
    }
    if (item->n_counts == 0) {
        return 0;
    }
    rc = audit_pending(x, item, &ids, err);
    if (rc != 0) {
        return rc;
    }
    if (item->kind == RETENTION_ITEM_PARTITION) {
        rc = drop_partition(x, t, item, err);
    }
    else {
        rc = delete_rows(x, t, item, note, sizeof(note), &took_kept, err);
    }
    if (rc == 0) {
        struct sl_err settle_err;

        rc = sl_store_retention_audit_settle(x->st, ids, item->n_counts, "done",
                                             note[0] != '\0' ? note : NULL, x->now_s,
                                             took_kept ? &settle_err : err);
        if (rc == 0 || took_kept) {
            *rows_out = item->rows;
            sl_metrics_counter_add(x->rows_deleted[table_index(t)], (uint64_t)item->rows);
            if (item->kind == RETENTION_ITEM_PARTITION) {
                sl_metrics_counter_add(x->partitions_dropped[table_index(t)], 1);
            }
            else {
                sl_metrics_counter_add(x->mutations_done[table_index(t)], 1);
            }
        }
        if (took_kept) {
            /* The rows went (the audit says done, and how many kept rows went too); the run
             * fails so someone looks. */
            rc = SL_ESTATE;
        }
    }
    else if (rc == SL_ETIMEDOUT || rc == SL_ECANCELED) {
        /* The mutation is on the server and may still finish: the rows stay pending and the
         * next run settles them by counting. */
        if (rc == SL_ETIMEDOUT) {
            sl_metrics_counter_add(x->mutations_failed[table_index(t)], 1);
        }
    }
    else {
        /* The statement was refused (or never sent): nothing was deleted by it. */
        struct sl_err ignored;

        sl_store_retention_audit_settle(x->st, ids, item->n_counts, "failed", err->msg,
                                        x->now_s, &ignored);
        if (item->kind == RETENTION_ITEM_GROUP) {
            sl_metrics_counter_add(x->mutations_failed[table_index(t)], 1);
        }
    }
    sl_free(ids);
    return rc;
}

/* Rows of tenant in t's range [from_s, cutoff_s). */
static int count_left(struct retention_exec *x, const struct retention_table *t,
                      const struct sl_audit *a, int64_t *rows, struct sl_err *err)
{
    struct sl_ch_result res = {0};
    struct sl_ch_buf sql;
    int rc;

    sl_ch_buf_init(&sql, 4096);
    rc = sl_ch_buf_append_str(&sql, "SELECT count() FROM ");
    if (rc == 0) {
        rc = sl_ch_quote_table(&sql, x->database, t->name);
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(&sql, " WHERE tenant_id = ");
    }
    if (rc == 0) {
        rc = sl_ch_quote(&sql, a->tenant_id, strlen(a->tenant_id));
    }
    if (rc == 0) {
        rc = retention_sql_range(&sql, t, a->from_s, a->cutoff_s);
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(&sql, " FORMAT TabSeparated");
    }
    if (rc != 0) {
        rc = sl_err_set(err, rc, "building the recount of audit row %" PRId64, a->id);
    }
    if (rc == 0) {
        rc = sl_ch_query(x->ch, sql.data, &res, err);
    }
    if (rc == 0) {
        *rows = strtoll(res.body, NULL, 10);
    }
    sl_ch_result_fini(&res);
    sl_ch_buf_fini(&sql);
    return rc;
}

int retention_apply_resume(struct retention_exec *x, int64_t *n_out, struct sl_err *err)
{
    struct sl_audit *pending = NULL;
    size_t n = 0;
    int rc = 0;

    *n_out = 0;
    rc = sl_store_retention_audit_list(x->st, RETENTION_JOB, "pending", NULL, PENDING_MAX,
                                       &pending, &n, err);
    if (rc != 0 || n == 0) {
        sl_free(pending);
        return rc;
    }
    for (size_t t = 0; rc == 0 && t < RETENTION_N_TABLES; t++) {
        rc = retention_wait_mutations(x, &retention_tables[t], x->mutation_timeout_ms, err);
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const struct retention_table *t = retention_table_find(pending[i].tbl);
        int64_t left = 0;
        char note[160];
        int nw;

        if (t == NULL) {
            nw = snprintf(note, sizeof(note), "settled by run %" PRId64 ": not a table",
                          x->run_id);
            rc = sl_store_retention_audit_settle(x->st, &pending[i].id, 1, "failed",
                                                 nw > 0 ? note : NULL, x->now_s, err);
            continue;
        }
        rc = count_left(x, t, &pending[i], &left, err);
        if (rc != 0) {
            break;
        }
        if (left == 0) {
            nw = snprintf(note, sizeof(note), "confirmed by run %" PRId64, x->run_id);
        }
        else {
            nw = snprintf(note, sizeof(note), "%" PRId64 " rows were still there at run %"
                          PRId64 "; that run deletes and audits them again", left, x->run_id);
        }
        rc = sl_store_retention_audit_settle(x->st, &pending[i].id, 1,
                                             left == 0 ? "done" : "failed",
                                             nw > 0 ? note : NULL, x->now_s, err);
        if (rc == 0) {
            (*n_out)++;
            if (left == 0) {
                sl_metrics_counter_add(x->rows_deleted[table_index(t)],
                                       (uint64_t)pending[i].rows);
            }
        }
    }
    sl_free(pending);
    return rc;
}

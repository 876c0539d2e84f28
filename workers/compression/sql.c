/*
 * The compression job's small SQL helpers: integer answers, the WHERE clause of one
 * tenant-day, quoted table names, the events table's columns, and running a chunk's
 * statement with its tenant, day and step in the error. Every value reaches SQL
 * through sl_ch_quote / sl_ch_quote_ident or as a number printed here.
 */
#include "compress_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

int compress_sql_ints(struct sl_ch *ch, const char *sql, int64_t *out, size_t n,
                      struct sl_err *err)
{
    struct sl_ch_result res = {0};
    const char *p;
    int rc = sl_ch_query(ch, sql, &res, err);

    if (rc != 0) {
        return rc;
    }
    p = res.body;
    for (size_t i = 0; i < n; i++) {
        char *end = NULL;

        out[i] = 0;
        if (*p == '\0' || *p == '\n') {
            continue;
        }
        out[i] = (int64_t)strtoll(p, &end, 10);
        if (end == p || (*end != '\t' && *end != '\n' && *end != '\0')) {
            rc = sl_err_set(err, SL_EINVAL, "ClickHouse answered '%.80s' where numbers were "
                            "expected", res.body);
            break;
        }
        p = *end == '\t' ? end + 1 : end;
    }
    sl_ch_result_fini(&res);
    return rc;
}

int compress_sql_where(struct sl_ch_buf *b, const char *tenant_id, int64_t from_s, int64_t to_s,
                       int64_t max_version)
{
    int rc = sl_ch_buf_append_str(b, "tenant_id = ");

    if (rc == 0) {
        rc = sl_ch_quote(b, tenant_id, strlen(tenant_id));
    }
    if (rc == 0) {
        rc = sl_ch_buf_appendf(b, " AND ts >= toDateTime(%" PRId64 ") AND ts < toDateTime(%"
                               PRId64 ")", from_s, to_s);
    }
    if (rc == 0 && max_version >= 0) {
        rc = sl_ch_buf_appendf(b, " AND version <= %" PRId64, max_version);
    }
    return rc;
}

int compress_sql_column_list(struct sl_ch_buf *b, const char *cols)
{
    const char *p = cols;
    int rc = 0;

    while (rc == 0 && *p != '\0') {
        size_t n = strcspn(p, ",");

        if (p != cols) {
            rc = sl_ch_buf_append_str(b, ", ");
        }
        if (rc == 0) {
            rc = sl_ch_quote_ident(b, p, n);
        }
        p += n;
        p += *p == ',';
    }
    return rc;
}

int compress_sql_columns(struct sl_ch *ch, const char *database, char *out, size_t cap,
                         struct sl_err *err)
{
    struct sl_ch_buf sql;
    struct sl_ch_result res = {0};
    size_t len = 0;
    char *line;
    char *save = NULL;
    int rc;

    sl_ch_buf_init(&sql, 4096);
    rc = sl_ch_buf_append_str(&sql, "DESCRIBE TABLE ");
    if (rc == 0) {
        rc = sl_ch_quote_table(&sql, database, "events");
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(&sql, " FORMAT TabSeparated");
    }
    if (rc != 0) {
        sl_ch_buf_fini(&sql);
        return sl_err_set(err, rc, "cannot build DESCRIBE TABLE");
    }
    rc = sl_ch_query(ch, sql.data, &res, err);
    sl_ch_buf_fini(&sql);
    if (rc != 0) {
        return rc;
    }
    out[0] = '\0';
    /* name \t type \t default_type \t default_expression ... : MATERIALIZED and ALIAS
     * columns are computed, so they are neither exported nor inserted. */
    for (line = strtok_r(res.body, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char *tab = strchr(line, '\t');
        char *kind = tab != NULL ? strchr(tab + 1, '\t') : NULL;
        size_t n = tab != NULL ? (size_t)(tab - line) : strlen(line);

        if (kind != NULL && (strncmp(kind + 1, "MATERIALIZED", 12) == 0 ||
                             strncmp(kind + 1, "ALIAS", 5) == 0)) {
            continue;
        }
        if (n == 0 || memchr(line, ',', n) != NULL || len + n + 2 > cap) {
            rc = sl_err_set(err, SL_EINVAL, "events has a column list that does not fit the "
                            "manifest");
            break;
        }
        if (len > 0) {
            out[len++] = ',';
        }
        memcpy(out + len, line, n);
        len += n;
        out[len] = '\0';
    }
    if (rc == 0 && len == 0) {
        rc = sl_err_set(err, SL_ESCHEMA, "%s.events has no columns", database);
    }
    sl_ch_result_fini(&res);
    return rc;
}

int compress_chunk_ints(struct compress_chunk *k, const char *step, int64_t *out, size_t n)
{
    int rc = compress_sql_ints(k->c->ch, k->sql.data, out, n, k->err);

    if (rc != 0) {
        sl_err_wrap(k->err, "tenant %s day %s, %s", k->tenant, k->day, step);
    }
    return rc;
}

int compress_chunk_exec(struct compress_chunk *k, const char *step)
{
    int rc = sl_ch_exec(k->c->ch, k->sql.data, k->err);

    if (rc != 0) {
        sl_err_wrap(k->err, "tenant %s day %s, %s", k->tenant, k->day, step);
    }
    return rc;
}

int compress_chunk_where(struct compress_chunk *k, int64_t v)
{
    return compress_sql_where(&k->sql, k->tenant, k->from_s, k->to_s, v);
}

int compress_chunk_table(struct compress_chunk *k, const char *table)
{
    return sl_ch_quote_table(&k->sql, k->c->database, table);
}

int compress_chunk_oom(struct compress_chunk *k)
{
    return sl_err_set(k->err, SL_ENOMEM, "out of memory building SQL for tenant %s day %s",
                      k->tenant, k->day);
}

/*
 * The tables retention deletes from and the pieces of SQL every statement about them
 * shares: the quoted table name and the time range, spelled so the server's time zone
 * cannot change it (ClickHouse notes: integer seconds for DateTime('UTC'), a quoted
 * YYYY-MM-DD for Date).
 */
#include <inttypes.h>
#include <string.h>

#include "retention_int.h"

const struct retention_table retention_tables[RETENTION_N_TABLES] = {
    {.name = "events", .time_col = "ts", .is_date = false},
    {.name = "sessions", .time_col = "day", .is_date = true},
    {.name = "events_hourly", .time_col = "hour", .is_date = false},
    {.name = "events_daily", .time_col = "day", .is_date = true},
};

const struct retention_table *retention_table_find(const char *name)
{
    for (size_t i = 0; i < RETENTION_N_TABLES; i++) {
        if (strcmp(retention_tables[i].name, name) == 0) {
            return &retention_tables[i];
        }
    }
    return NULL;
}

/* Appends the time s as a literal of t's time column. */
static int time_literal(struct sl_ch_buf *b, const struct retention_table *t, int64_t s)
{
    char day[11];
    int rc;

    if (!t->is_date) {
        return sl_ch_buf_appendf(b, "toDateTime(%" PRId64 ")", s);
    }
    retention_day_text(s, day);
    rc = sl_ch_buf_append_str(b, "toDate(");
    if (rc == 0) {
        rc = sl_ch_quote(b, day, strlen(day));
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(b, ")");
    }
    return rc;
}

/* Appends " AND `col` <op> <time>". */
static int compare(struct sl_ch_buf *b, const struct retention_table *t, const char *op,
                   int64_t s)
{
    int rc = sl_ch_buf_append_str(b, " AND ");

    if (rc == 0) {
        rc = sl_ch_quote_ident(b, t->time_col, strlen(t->time_col));
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(b, op);
    }
    if (rc == 0) {
        rc = time_literal(b, t, s);
    }
    return rc;
}

int retention_sql_range(struct sl_ch_buf *b, const struct retention_table *t, int64_t from_s,
                        int64_t cutoff_s)
{
    int rc = 0;

    if (from_s > 0) {
        rc = compare(b, t, " >= ", from_s);
    }
    if (rc == 0 && cutoff_s != RETENTION_ALL) {
        rc = compare(b, t, " < ", cutoff_s);
    }
    return rc;
}

int retention_sql_table_is(struct sl_ch_buf *b, const char *database,
                           const struct retention_table *t)
{
    int rc = sl_ch_buf_append_str(b, "database = ");

    if (rc == 0) {
        rc = sl_ch_quote(b, database, strlen(database));
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(b, " AND table = ");
    }
    if (rc == 0) {
        rc = sl_ch_quote(b, t->name, strlen(t->name));
    }
    return rc;
}

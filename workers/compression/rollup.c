/*
 * Step 3 of a chunk (see chunk.c): the proof that the rollups hold every raw event of the
 * tenant-day, and the refill that puts back what an insert's failed view left out.
 * events_hourly and events_daily are fed by views with uniqExact(id) states, so "rolling
 * up" a day means proving those states already contain each raw id: per hour (day), the
 * union of the rollup's states and the raw ids' states must count no more than the rollup
 * alone. A refill runs the views' own query over the raw rows again; uniqExact and uniq
 * states are idempotent, so nothing already there is counted twice.
 */
#include "compress_int.h"

#include <inttypes.h>
#include <string.h>

#define COMPONENT "compression"

#define ROLLUP_DIMS "type, name, path, severity, country_code, browser, os, device"
/* The states exactly as ingest/schema.c's views write them (a refill must produce the
 * target's types). */
#define ROLLUP_STATES                                                                      \
    "uniqExactState(id) AS events, "                                                       \
    "uniqIfState(if(user_id != '', user_id, anonymous_id), "                               \
    "user_id != '' OR anonymous_id != '') AS users, "                                      \
    "uniqIfState(session_id, session_id != '') AS sessions "

struct rollup {
    const char *table;     /* events_hourly, events_daily */
    const char *time_col;  /* its time column */
    const char *time_expr; /* the same from a raw row */
};

static const struct rollup rollups[] = {
    {"events_hourly", "hour", "toStartOfHour(ts)"},
    {"events_daily", "day", "toDate(ts)"},
};

/* Events in the rollup for the day (merged per hour/day) and raw events (version <= v)
 * missing from it. */
static int rollup_check(struct compress_chunk *k, const struct rollup *r, int64_t v, int64_t *total,
                        int64_t *missing)
{
    int64_t out[2] = {0, 0};
    int rc;

    sl_ch_buf_reset(&k->sql);
    rc = sl_ch_buf_appendf(&k->sql,
                           "SELECT sum(r), sum(u) FROM (SELECT t, uniqExactMergeIf(s, src = 0) "
                           "AS r, uniqExactMerge(s) AS u FROM (SELECT %s AS t, events AS s, "
                           "toUInt8(0) AS src FROM ",
                           r->time_col);
    rc = rc != 0 ? rc : compress_chunk_table(k, r->table);
    rc = rc != 0 ? rc : sl_ch_buf_append_str(&k->sql, " WHERE tenant_id = ");
    rc = rc != 0 ? rc : sl_ch_quote(&k->sql, k->tenant, strlen(k->tenant));
    if (rc == 0 && strcmp(r->time_col, "day") == 0) {
        rc = sl_ch_buf_append_str(&k->sql, " AND day = toDate(");
        rc = rc != 0 ? rc : sl_ch_quote(&k->sql, k->day, strlen(k->day));
        rc = rc != 0 ? rc : sl_ch_buf_append_str(&k->sql, ")");
    }
    else if (rc == 0) {
        rc = sl_ch_buf_appendf(&k->sql, " AND %s >= toDateTime(%" PRId64 ") AND %s < "
                               "toDateTime(%" PRId64 ")", r->time_col, k->from_s, r->time_col,
                               k->to_s);
    }
    rc = rc != 0 ? rc : sl_ch_buf_appendf(&k->sql, " UNION ALL SELECT %s AS t, "
                                                   "uniqExactState(id) AS s, toUInt8(1) AS src "
                                                   "FROM ", r->time_expr);
    rc = rc != 0 ? rc : compress_chunk_table(k, "events");
    rc = rc != 0 ? rc : sl_ch_buf_append_str(&k->sql, " WHERE ");
    rc = rc != 0 ? rc : compress_chunk_where(k, v);
    rc = rc != 0 ? rc : sl_ch_buf_append_str(&k->sql, " GROUP BY t) GROUP BY t) "
                                                    "FORMAT TabSeparated");
    if (rc != 0) {
        return compress_chunk_oom(k);
    }
    rc = compress_chunk_ints(k, "checking the rollup", out, 2);
    *total = out[0];
    *missing = out[1] - out[0];
    return rc;
}

/* Feeds the raw rows (version <= v) through the rollup's view query again. */
static int rollup_refill(struct compress_chunk *k, const struct rollup *r, int64_t v)
{
    int rc;

    sl_ch_buf_reset(&k->sql);
    rc = sl_ch_buf_append_str(&k->sql, "INSERT INTO ");
    rc = rc != 0 ? rc : compress_chunk_table(k, r->table);
    rc = rc != 0 ? rc : sl_ch_buf_appendf(&k->sql, " SELECT tenant_id, %s AS %s, " ROLLUP_DIMS
                                                   ", " ROLLUP_STATES "FROM ",
                                          r->time_expr, r->time_col);
    rc = rc != 0 ? rc : compress_chunk_table(k, "events");
    rc = rc != 0 ? rc : sl_ch_buf_append_str(&k->sql, " WHERE ");
    rc = rc != 0 ? rc : compress_chunk_where(k, v);
    rc = rc != 0 ? rc : sl_ch_buf_appendf(&k->sql, " GROUP BY tenant_id, %s, " ROLLUP_DIMS,
                                          r->time_col);
    if (rc != 0) {
        return compress_chunk_oom(k);
    }
    return compress_chunk_exec(k, "refilling a rollup");
}

/* Step 3: every raw event (version <= v) is in both rollups, refilled once if not. */
int compress_rollup_prove(struct compress_chunk *k, int64_t v, int64_t raw_rows)
{
    for (size_t i = 0; i < sizeof(rollups) / sizeof(rollups[0]); i++) {
        const struct rollup *r = &rollups[i];
        int64_t total = 0, missing = 0;
        int rc = rollup_check(k, r, v, &total, &missing);

        if (rc == 0 && missing > 0) {
            sl_log_warn_ctx(COMPONENT, &k->log, "%s lacks %" PRId64 " of %" PRId64 " raw events "
                            "of %s; refilling it from the raw rows", r->table, missing,
                            raw_rows, k->day);
            rc = rollup_refill(k, r, v);
            if (rc == 0) {
                k->res->rollup_refilled += missing;
                sl_metrics_counter_add(k->c->m_refilled, (uint64_t)missing);
                rc = rollup_check(k, r, v, &total, &missing);
            }
        }
        if (rc != 0) {
            return rc;
        }
        if (missing != 0 || total < raw_rows) {
            return sl_err_set(k->err, SL_ESTATE,
                              "tenant %s day %s: %s does not hold every raw event (%" PRId64
                              " of %" PRId64 " missing, rollup total %" PRId64
                              "); nothing deleted",
                              k->tenant, k->day, r->table, missing, raw_rows, total);
        }
    }
    return 0;
}

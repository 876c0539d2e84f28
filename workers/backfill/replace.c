/*
 * One chunk of the built-in kinds: recompute a tenant's slice of a rollup or of sessions,
 * replace the slice with it, and verify. How the slice is replaced:
 *
 *   1. snapshot: ALTER TABLE snap REPLACE PARTITION day FROM target   (hard links, atomic)
 *   2. build:    new = snap's rows outside the slice + the recomputed slice
 *   3. swap:     ALTER TABLE target REPLACE PARTITION day FROM new     (atomic)
 *   4. catch up: insert the states of raw rows the loader wrote since the snapshot (minus a
 *                margin for clocks), for every tenant of the day
 *   5. verify:   the slice read from the target equals the recomputation, by query (on a
 *                settled day, the rebuilt staging table is the recomputation)
 *
 * Readers see the old partition until the swap and the new one after it, never an empty or
 * doubled slice. Partitions are whole days across all tenants, so the live views may write
 * into the target between 1 and 3; those rows are not in `new`. Step 4 puts them back from
 * the raw table (the loader's `version` column is its insert time in ms), and since every
 * state is idempotent, states that were already there count nothing twice. Between 3 and 4
 * such late rows of a live day are briefly missing; on a settled day there are none.
 * No mutation is used: on 18.16 an ALTER DELETE rewrites every part of the table and one
 * whose WHERE throws blocks the table's later mutations for good.
 *
 * The staging tables (_backfill_<tag>_snap and _new, CREATE TABLE ... AS the target) are
 * dropped and recreated by every chunk, so a chunk killed half-way leaves nothing that the
 * next attempt does not clean up, and every step is safe to repeat.
 */
#include "backfill_int.h"

#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "timefmt.h"

#define SQL_MAX_BYTES (256 * 1024)
#define VERIFY_ATTEMPTS 3
#define VERIFY_PAUSE_MS 200
#define FINGERPRINT_MAX 96

/* What one chunk works with. */
struct chunk {
    const struct backfill_slice *s;
    const struct backfill_kind *k;
    struct sl_ch_buf qdb;        /* the database as an identifier */
    struct sl_ch_buf tenant;     /* "tenant_id = '...'" or "1" */
    struct sl_ch_buf src_where;  /* the source's filter */
    struct sl_ch_buf recompute;  /* SELECT of the recomputed slice */
    struct sl_ch_buf sql;        /* the statement being run */
    struct sl_ch_buf snap;       /* staging tables, quoted, with the database */
    struct sl_ch_buf next;
    char partition[16];          /* YYYYMMDD of the chunk's day */
    char from_date[16];          /* YYYY-MM-DD of from_s and to_s */
    char to_date[16];
    bool is_settled;             /* the catch-up found no rows loaded since the snapshot */
    struct sl_err *err;
};

static int oom(struct chunk *c)
{
    return sl_err_set(c->err, SL_ENOMEM, "out of memory building backfill SQL");
}

static int append_template(struct chunk *c, struct sl_ch_buf *b, const char *tmpl,
                           const char *where)
{
    const char *p = tmpl;
    int rc = 0;

    while (rc == 0 && *p != '\0') {
        if (strncmp(p, "{db}", 4) == 0) {
            rc = sl_ch_buf_append(b, c->qdb.data, c->qdb.len);
            p += 4;
        }
        else if (strncmp(p, "{where}", 7) == 0) {
            rc = sl_ch_buf_appendf(b, "(%s)", where);
            p += 7;
        }
        else {
            size_t n = strcspn(p + 1, "{") + 1;

            rc = sl_ch_buf_append(b, p, n);
            p += n;
        }
    }
    return rc != 0 ? oom(c) : 0;
}

/* Appends the target's slice filter: tenant and time range. */
static int append_slice(struct chunk *c, struct sl_ch_buf *b)
{
    int rc;

    if (c->k->is_date) {
        rc = sl_ch_buf_appendf(b, "%s AND %s >= ", c->tenant.data, c->k->time_col);
        rc = rc != 0 ? rc : sl_ch_quote(b, c->from_date, strlen(c->from_date));
        rc = rc != 0 ? rc : sl_ch_buf_appendf(b, " AND %s < ", c->k->time_col);
        rc = rc != 0 ? rc : sl_ch_quote(b, c->to_date, strlen(c->to_date));
    }
    else {
        rc = sl_ch_buf_appendf(b, "%s AND %s >= toDateTime(%lld) AND %s < toDateTime(%lld)",
                               c->tenant.data, c->k->time_col, (long long)c->s->from_s,
                               c->k->time_col, (long long)c->s->to_s);
    }
    return rc != 0 ? oom(c) : 0;
}

/* Runs a query whose answer is one TSV line; copies it (without the newline) to out. */
static int query_line(struct chunk *c, const char *what, char *out, size_t cap)
{
    struct sl_ch_result res = {0};
    int rc = sl_ch_query(c->s->ch, c->sql.data, &res, c->err);

    if (rc != 0) {
        return sl_err_wrap(c->err, "%s", what);
    }
    snprintf(out, cap, "%.*s", (int)strcspn(res.body, "\n"), res.body);
    sl_ch_result_fini(&res);
    return 0;
}

static int query_count(struct chunk *c, const char *what, int64_t *out)
{
    char line[32];
    char *end = NULL;
    int rc = query_line(c, what, line, sizeof(line));

    if (rc != 0) {
        return rc;
    }
    *out = strtoll(line, &end, 10);
    if (end == line) {
        return sl_err_set(c->err, SL_ESERVER, "%s: not a number: '%s'", what, line);
    }
    return 0;
}

static int exec(struct chunk *c, const char *what)
{
    int rc = sl_ch_exec(c->s->ch, c->sql.data, c->err);

    return rc != 0 ? sl_err_wrap(c->err, "%s", what) : 0;
}

/* Starts c->sql afresh with printf text. */
static int sql_set(struct chunk *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int sql_set(struct chunk *c, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(text)) {
        return sl_err_set(c->err, SL_EINVAL, "backfill SQL longer than %zu bytes",
                          sizeof(text) - 1);
    }
    sl_ch_buf_reset(&c->sql);
    return sl_ch_buf_append_str(&c->sql, text) != 0 ? oom(c) : 0;
}

/* Decides where the slice is recomputed from and counts the rows read. */
static int choose_source(struct chunk *c, struct backfill_chunk_result *out)
{
    const struct backfill_slice *s = c->s;
    const char *tmpl = NULL;
    int64_t n = 0;
    int rc;

    sl_ch_buf_reset(&c->src_where);
    if (sl_ch_buf_appendf(&c->src_where, "%s AND ts >= toDateTime(%lld) AND ts < "
                          "toDateTime(%lld)", c->tenant.data, (long long)s->from_s,
                          (long long)s->to_s) != 0) {
        return oom(c);
    }
    rc = sql_set(c, "SELECT count() FROM %s.events WHERE %s FORMAT TabSeparated", c->qdb.data,
                 c->src_where.data);
    rc = rc != 0 ? rc : query_count(c, "counting raw events", &n);
    if (rc != 0) {
        return rc;
    }
    if (n > 0) {
        tmpl = c->k->from_events;
        snprintf(out->source, sizeof(out->source), "events");
    }
    else if (c->k->from_hourly != NULL) {
        sl_ch_buf_reset(&c->src_where);
        if (sl_ch_buf_appendf(&c->src_where, "%s AND hour >= toDateTime(%lld) AND hour < "
                              "toDateTime(%lld)", c->tenant.data, (long long)s->from_s,
                              (long long)s->to_s) != 0) {
            return oom(c);
        }
        rc = sql_set(c, "SELECT count() FROM %s.events_hourly WHERE %s FORMAT TabSeparated",
                     c->qdb.data, c->src_where.data);
        rc = rc != 0 ? rc : query_count(c, "counting hourly rollup rows", &n);
        if (rc != 0) {
            return rc;
        }
        if (n > 0) {
            tmpl = c->k->from_hourly;
            snprintf(out->source, sizeof(out->source), "hourly");
        }
    }
    out->rows_read = n;
    if (tmpl == NULL) {
        snprintf(out->source, sizeof(out->source), "none");
        return 0;
    }
    sl_ch_buf_reset(&c->recompute);
    rc = append_template(c, &c->recompute, tmpl, c->src_where.data);
    if (rc == 0 && (s->tenant_id == NULL || s->tenant_id[0] == '\0')) {
        /* Every tenant: the slice is the tenants the source has rows of. A tenant with none
         * here (its raw events compressed away) keeps its rows, as a one-tenant chunk
         * would. */
        sl_ch_buf_reset(&c->tenant);
        if (sl_ch_buf_appendf(&c->tenant, "tenant_id IN (SELECT tenant_id FROM %s.%s WHERE %s "
                              "GROUP BY tenant_id)", c->qdb.data,
                              tmpl == c->k->from_events ? "events" : "events_hourly",
                              c->src_where.data) != 0) {
            rc = oom(c);
        }
    }
    return rc;
}

/* Appends the verification fingerprint of rows from `from` (a table with a WHERE, or a
 * parenthesized SELECT): "count\thash" of the finalized values per key. */
static int fingerprint(struct chunk *c, const char *from, char *out, size_t cap)
{
    sl_ch_buf_reset(&c->sql);
    if (sl_ch_buf_appendf(&c->sql, "SELECT count(), sum(h) FROM (SELECT cityHash64(%s, %s) "
                          "AS h FROM %s GROUP BY %s) FORMAT TabSeparated", c->k->keys,
                          c->k->finals, from, c->k->keys) != 0) {
        return oom(c);
    }
    return query_line(c, "verifying the slice", out, cap);
}

/*
 * Step 5. The slice's fingerprint in the target must equal the recomputation's. On a settled
 * day (nothing loaded since the snapshot) the rebuilt staging table holds exactly the
 * recomputation, so it is read instead of aggregating the source again; if that disagrees,
 * or the day is live, the recomputation runs again (a live day may take rows between two
 * reads, so up to VERIFY_ATTEMPTS times).
 */
static int verify(struct chunk *c)
{
    struct sl_ch_buf from;
    char target[FINGERPRINT_MAX] = "", source[FINGERPRINT_MAX] = "";
    int rc = 0;

    sl_ch_buf_init(&from, SQL_MAX_BYTES);
    for (int attempt = 0; rc == 0 && attempt < VERIFY_ATTEMPTS; attempt++) {
        bool is_from_stage = c->is_settled && attempt == 0;

        if (attempt > 1) {
            poll(NULL, 0, VERIFY_PAUSE_MS);
        }
        sl_ch_buf_reset(&from);
        rc = sl_ch_buf_appendf(&from, "%s.%s WHERE ", c->qdb.data, c->k->table) != 0 ? oom(c)
                                                                                      : 0;
        rc = rc != 0 ? rc : append_slice(c, &from);
        rc = rc != 0 ? rc : fingerprint(c, from.data, target, sizeof(target));
        sl_ch_buf_reset(&from);
        if (rc == 0 && is_from_stage) {
            rc = sl_ch_buf_appendf(&from, "%s WHERE ", c->next.data) != 0 ? oom(c) : 0;
            rc = rc != 0 ? rc : append_slice(c, &from);
        }
        else if (rc == 0 && sl_ch_buf_appendf(&from, "(%s)", c->recompute.data) != 0) {
            rc = oom(c);
        }
        rc = rc != 0 ? rc : fingerprint(c, from.data, source, sizeof(source));
        if (rc == 0 && strcmp(target, source) == 0) {
            sl_ch_buf_fini(&from);
            return 0;
        }
    }
    sl_ch_buf_fini(&from);
    if (rc != 0) {
        return rc;
    }
    return sl_err_set(c->err, SL_ESTATE, "verification failed: %s.%s holds %s (rows, hash) "
                      "for the slice but the recomputation gives %s", c->s->database,
                      c->k->table, target, source);
}

/* Drops and creates one staging table like the target. */
static int fresh_stage(struct chunk *c, const char *name)
{
    int rc = sql_set(c, "DROP TABLE IF EXISTS %s", name);

    rc = rc != 0 ? rc : exec(c, "dropping a staging table");
    rc = rc != 0 ? rc : sql_set(c, "CREATE TABLE %s AS %s.%s", name, c->qdb.data, c->k->table);
    return rc != 0 ? rc : exec(c, "creating a staging table");
}

static void drop_stages(struct chunk *c)
{
    if (sql_set(c, "DROP TABLE IF EXISTS %s", c->snap.data) == 0) {
        sl_ch_exec(c->s->ch, c->sql.data, NULL);
    }
    if (sql_set(c, "DROP TABLE IF EXISTS %s", c->next.data) == 0) {
        sl_ch_exec(c->s->ch, c->sql.data, NULL);
    }
}

/* Steps 1-4 of the file comment. */
static int replace_slice(struct chunk *c, struct backfill_chunk_result *out)
{
    const struct backfill_slice *s = c->s;
    int64_t day_s = s->from_s - s->from_s % BACKFILL_DAY_S;
    int64_t since_ms = (s->opts->now_s - s->opts->catchup_margin_s) * 1000;
    struct sl_ch_buf where;
    int64_t n_live = 0;
    int rc;

    rc = fresh_stage(c, c->snap.data);
    rc = rc != 0 ? rc : fresh_stage(c, c->next.data);
    rc = rc != 0 ? rc : sql_set(c, "ALTER TABLE %s REPLACE PARTITION %s FROM %s.%s",
                                c->snap.data, c->partition, c->qdb.data, c->k->table);
    rc = rc != 0 ? rc : exec(c, "snapshotting the day's partition");
    if (rc != 0) {
        return rc;
    }
    sl_ch_buf_reset(&c->sql);
    rc = sl_ch_buf_appendf(&c->sql, "INSERT INTO %s SELECT * FROM %s WHERE NOT (", c->next.data,
                           c->snap.data) != 0 ? oom(c) : 0;
    rc = rc != 0 ? rc : append_slice(c, &c->sql);
    rc = rc != 0 ? rc : (sl_ch_buf_append_str(&c->sql, ")") != 0 ? oom(c) : 0);
    rc = rc != 0 ? rc : exec(c, "copying the rows outside the slice");
    if (rc != 0) {
        return rc;
    }
    sl_ch_buf_reset(&c->sql);
    rc = sl_ch_buf_appendf(&c->sql, "INSERT INTO %s ", c->next.data) != 0 ? oom(c) : 0;
    rc = rc != 0 ? rc : (sl_ch_buf_append(&c->sql, c->recompute.data, c->recompute.len) != 0
                             ? oom(c) : 0);
    rc = rc != 0 ? rc : exec(c, "recomputing the slice");
    if (rc != 0) {
        return rc;
    }
    sl_ch_buf_reset(&c->sql);
    rc = sl_ch_buf_appendf(&c->sql, "SELECT count() FROM %s WHERE ", c->next.data) != 0 ? oom(c)
                                                                                       : 0;
    rc = rc != 0 ? rc : append_slice(c, &c->sql);
    rc = rc != 0 ? rc : (sl_ch_buf_append_str(&c->sql, " FORMAT TabSeparated") != 0 ? oom(c)
                                                                                     : 0);
    rc = rc != 0 ? rc : query_count(c, "counting recomputed rows", &out->rows_written);
    rc = rc != 0 ? rc : sql_set(c, "ALTER TABLE %s.%s REPLACE PARTITION %s FROM %s",
                                c->qdb.data, c->k->table, c->partition, c->next.data);
    rc = rc != 0 ? rc : exec(c, "swapping in the rebuilt partition");
    if (rc != 0) {
        return rc;
    }
    /* Catch-up: states of whatever the loader wrote for this day since the snapshot. */
    sl_ch_buf_init(&where, SQL_MAX_BYTES);
    rc = sl_ch_buf_appendf(&where, "ts >= toDateTime(%lld) AND ts < toDateTime(%lld) AND "
                           "version >= %lld", (long long)day_s,
                           (long long)(day_s + BACKFILL_DAY_S),
                           (long long)(since_ms > 0 ? since_ms : 0)) != 0 ? oom(c) : 0;
    sl_ch_buf_reset(&c->sql);
    rc = rc != 0 ? rc : (sl_ch_buf_appendf(&c->sql, "SELECT count() FROM %s.events WHERE %s "
                                           "FORMAT TabSeparated", c->qdb.data, where.data) != 0
                             ? oom(c) : 0);
    rc = rc != 0 ? rc : query_count(c, "counting rows loaded during the chunk", &n_live);
    c->is_settled = rc == 0 && n_live == 0;
    if (rc == 0 && n_live > 0) {
        sl_ch_buf_reset(&c->sql);
        rc = sl_ch_buf_appendf(&c->sql, "INSERT INTO %s.%s ", c->qdb.data, c->k->table) != 0
                 ? oom(c) : 0;
        rc = rc != 0 ? rc : append_template(c, &c->sql, c->k->from_events, where.data);
        rc = rc != 0 ? rc : exec(c, "catching up with rows loaded during the chunk");
    }
    sl_ch_buf_fini(&where);
    return rc;
}

static int chunk_prepare(struct chunk *c)
{
    const struct backfill_slice *s = c->s;
    char iso[SL_TIMEFMT_ISO_MAX];
    const char *tag = s->opts->tag != NULL ? s->opts->tag : "x";
    int rc;

    for (const char *p = tag; *p != '\0'; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_')) {
            return sl_err_set(c->err, SL_EINVAL, "backfill tag '%s' is not letters, digits "
                              "and _", tag);
        }
    }
    sl_timefmt_iso(s->from_s, iso);
    snprintf(c->from_date, sizeof(c->from_date), "%.10s", iso);
    snprintf(c->partition, sizeof(c->partition), "%.4s%.2s%.2s", iso, iso + 5, iso + 8);
    sl_timefmt_iso(s->to_s, iso);
    snprintf(c->to_date, sizeof(c->to_date), "%.10s", iso);
    rc = sl_ch_quote_ident(&c->qdb, s->database, strlen(s->database));
    if (rc != 0) {
        return sl_err_set(c->err, SL_EINVAL, "database name '%s' cannot be quoted",
                          s->database);
    }
    if (s->tenant_id != NULL && s->tenant_id[0] != '\0') {
        rc = sl_ch_buf_append_str(&c->tenant, "tenant_id = ");
        rc = rc != 0 ? rc : sl_ch_quote(&c->tenant, s->tenant_id, strlen(s->tenant_id));
    }
    else {
        rc = sl_ch_buf_append_str(&c->tenant, "1");
    }
    rc = rc != 0 ? rc : sl_ch_buf_appendf(&c->snap, "%s.", c->qdb.data);
    rc = rc != 0 ? rc : sl_ch_buf_appendf(&c->next, "%s.", c->qdb.data);
    if (rc == 0) {
        char name[128];

        snprintf(name, sizeof(name), "_backfill_%s_%s_snap", tag, c->k->name);
        rc = sl_ch_quote_ident(&c->snap, name, strlen(name));
        snprintf(name, sizeof(name), "_backfill_%s_%s_new", tag, c->k->name);
        rc = rc != 0 ? rc : sl_ch_quote_ident(&c->next, name, strlen(name));
    }
    return rc != 0 ? oom(c) : 0;
}

int backfill_replace_chunk(const struct backfill_slice *s, struct backfill_chunk_result *out,
                           struct sl_err *err)
{
    struct chunk c = {.s = s, .k = s->kind, .err = err};
    int rc;

    sl_ch_buf_init(&c.qdb, SQL_MAX_BYTES);
    sl_ch_buf_init(&c.tenant, SQL_MAX_BYTES);
    sl_ch_buf_init(&c.src_where, SQL_MAX_BYTES);
    sl_ch_buf_init(&c.recompute, SQL_MAX_BYTES);
    sl_ch_buf_init(&c.sql, SQL_MAX_BYTES);
    sl_ch_buf_init(&c.snap, SQL_MAX_BYTES);
    sl_ch_buf_init(&c.next, SQL_MAX_BYTES);
    rc = chunk_prepare(&c);
    rc = rc != 0 ? rc : choose_source(&c, out);
    if (rc == 0) {
        sl_ch_buf_reset(&c.sql);
        rc = sl_ch_buf_appendf(&c.sql, "SELECT count() FROM %s.%s WHERE ", c.qdb.data,
                               c.k->table) != 0 ? oom(&c) : 0;
        rc = rc != 0 ? rc : append_slice(&c, &c.sql);
        rc = rc != 0 ? rc : (sl_ch_buf_append_str(&c.sql, " FORMAT TabSeparated") != 0
                                 ? oom(&c) : 0);
        rc = rc != 0 ? rc : query_count(&c, "counting the slice's rows", &out->rows_before);
    }
    if (rc == 0 && c.recompute.len == 0) {
        /* Nothing to recompute from (no raw rows, no hourly rows): keep what the slice
         * holds rather than replace it with nothing. */
        out->is_kept = true;
    }
    else if (rc == 0 && s->opts->is_dry_run) {
        sl_ch_buf_reset(&c.sql);
        rc = sl_ch_buf_appendf(&c.sql, "SELECT count() FROM (%s) FORMAT TabSeparated",
                               c.recompute.data) != 0 ? oom(&c) : 0;
        rc = rc != 0 ? rc : query_count(&c, "counting what the slice would hold",
                                        &out->rows_written);
    }
    else if (rc == 0) {
        rc = replace_slice(&c, out);
        rc = rc != 0 ? rc : verify(&c);
        drop_stages(&c);
    }
    sl_ch_buf_fini(&c.next);
    sl_ch_buf_fini(&c.snap);
    sl_ch_buf_fini(&c.sql);
    sl_ch_buf_fini(&c.recompute);
    sl_ch_buf_fini(&c.src_where);
    sl_ch_buf_fini(&c.tenant);
    sl_ch_buf_fini(&c.qdb);
    return rc;
}

int backfill_chunk_run(struct sl_ch *ch, const char *database, const struct backfill_kind *k,
                       const char *tenant_id, int64_t from_s, int64_t to_s,
                       const struct backfill_chunk_opts *opts,
                       struct backfill_chunk_result *out, struct sl_err *err)
{
    struct backfill_slice s = {.kind = k, .ch = ch, .database = database,
                               .tenant_id = tenant_id != NULL ? tenant_id : "",
                               .from_s = from_s, .to_s = to_s, .opts = opts};

    memset(out, 0, sizeof(*out));
    sl_err_clear(err);
    if (database == NULL || database[0] == '\0') {
        return sl_err_set(err, SL_EINVAL, "the ClickHouse database name is empty");
    }
    /* Every kind works inside one UTC day (a partition) on its chunk grid. */
    if (to_s <= from_s || from_s % k->min_chunk_s != 0 || to_s - from_s > BACKFILL_DAY_S ||
        (to_s - 1) / BACKFILL_DAY_S != from_s / BACKFILL_DAY_S) {
        return sl_err_set(err, SL_EINVAL, "chunk %lld..%lld of kind %s is not aligned "
                          "inside one UTC day", (long long)from_s, (long long)to_s, k->name);
    }
    return k->chunk(&s, out, err);
}

/*
 * The ClickHouse schema as data: tables (columns, engine, partitioning, key) and the
 * materialized views between them, rendered to DDL for the database and server at hand and
 * applied idempotently. ingest/SCHEMA.md explains every table and column; keep the two in
 * step. The events table's column order must match ingest/rows.c (its INSERT names its
 * columns, so a column added here without a value there gets its default).
 *
 * Every MV writes aggregate states that a repeated row cannot change (min, max, argMin,
 * argMax, uniq, uniqExact): the loader redelivers after a crash, and 18.16 writes the source
 * rows even when an MV fails, so the same event may pass through an MV more than once.
 * 18.16 also insists that an MV produces exactly its target's column types (time zone and
 * tuple element types included) and never fires an MV on another MV's target, so every MV
 * reads the events table and the state types below are written out in full.
 */
#include "schema.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define SQL_MAX_BYTES (64 * 1024)

struct column {
    const char *name;
    const char *type;  /* the portable type */
    bool is_lc;        /* LowCardinality(type) in the modern DDL */
};

struct table {
    const char *name;
    const char *engine;     /* as system.tables shows it */
    const char *engine_sql; /* what follows "ENGINE = " */
    const struct column *columns;
    size_t n_columns;
};

struct view {
    const char *name;
    const char *target;
    const char *select_sql; /* "{db}" stands for the quoted database */
};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* The time of an event in unix ms, the ordering key of sessions' first/last states. */
#define TS_MS_EXPR "toUInt64(ts) * 1000 + ts_ms"

/* Columns are written in this order by ingest/rows.c (except that it may omit trailing
 * ones, which then take their defaults). */
static const struct column events_columns[] = {
    {"id", "UUID", false},
    {"tenant_id", "String", true},
    {"type", "String", false},
    {"name", "String", false},
    {"ts", "DateTime('UTC')", false},
    {"ts_ms", "UInt16", false},
    {"received_at", "DateTime('UTC')", false},
    {"session_id", "String", false},
    {"anonymous_id", "String", false},
    {"user_id", "String", false},
    {"properties", "String", false},
    {"user_agent", "String", false},
    {"ip", "String", false},
    {"url", "String", false},
    {"path", "String", false},
    {"referrer", "String", false},
    {"title", "String", false},
    {"screen", "String", false},
    {"viewport", "String", false},
    {"timezone", "String", false},
    {"language", "String", false},
    {"client_hints", "String", false},
    {"severity", "String", true},
    {"source", "String", false},
    {"message", "String", false},
    {"flags", "Array(String)", false},
    {"country_code", "String", true},
    {"country", "String", true},
    {"region", "String", true},
    {"city", "String", false},
    {"postal", "String", false},
    {"latitude", "Float64", false},
    {"longitude", "Float64", false},
    {"accuracy_radius", "UInt16", false},
    {"geo_timezone", "String", true},
    {"asn", "UInt32", false},
    {"as_org", "String", false},
    {"browser", "String", true},
    {"browser_version", "String", false},
    {"os", "String", true},
    {"os_version", "String", false},
    {"device", "String", true},
    {"device_brand", "String", true},
    {"device_model", "String", false},
    {"is_bot", "UInt8", false},
    {"bot_reason", "String", true},
    {"enrichment_version", "UInt32", false},
    {"version", "UInt64", false},
};

#define ORDER_KEY "Tuple(UInt8, UInt64, UUID)"
#define FIRST_CONTEXT                                                                      \
    "Tuple(String, String, String, String, String, String, String, String, String, String, " \
    "String)"

static const struct column sessions_columns[] = {
    {"tenant_id", "String", true},
    {"day", "Date", false},
    {"session_id", "String", false},
    {"start_ms", "AggregateFunction(min, UInt64)", false},
    {"end_ms", "AggregateFunction(max, UInt64)", false},
    {"events", "AggregateFunction(uniqExact, UUID)", false},
    {"pageviews", "AggregateFunction(uniqExactIf, UUID, UInt8)", false},
    {"interactions", "AggregateFunction(uniqExactIf, UUID, UInt8)", false},
    {"entry_path", "AggregateFunction(argMin, String, " ORDER_KEY ")", false},
    {"exit_path", "AggregateFunction(argMax, String, " ORDER_KEY ")", false},
    {"user_id", "AggregateFunction(max, String)", false},
    {"first_context", "AggregateFunction(argMin, " FIRST_CONTEXT ", Tuple(UInt64, UUID))",
     false},
};

/* The dimensions of both rollups, after the time column. */
#define ROLLUP_DIMS "type, name, path, severity, country_code, browser, os, device"
#define ROLLUP_DIM_COLUMNS                                                                 \
    {"type", "String", false}, {"name", "String", false}, {"path", "String", false},         \
        {"severity", "String", true}, {"country_code", "String", true},                    \
        {"browser", "String", true}, {"os", "String", true}, {"device", "String", true}
#define ROLLUP_STATE_COLUMNS                                                               \
    {"events", "AggregateFunction(uniqExact, UUID)", false},                               \
        {"users", "AggregateFunction(uniqIf, String, UInt8)", false},                      \
        {"sessions", "AggregateFunction(uniqIf, String, UInt8)", false}

static const struct column hourly_columns[] = {
    {"tenant_id", "String", true},
    {"hour", "DateTime('UTC')", false},
    ROLLUP_DIM_COLUMNS,
    ROLLUP_STATE_COLUMNS,
};

static const struct column daily_columns[] = {
    {"tenant_id", "String", true},
    {"day", "Date", false},
    ROLLUP_DIM_COLUMNS,
    ROLLUP_STATE_COLUMNS,
};

static const struct column metrics_columns[] = {
    {"ts", "DateTime('UTC')", false},
    {"host", "String", true},
    {"process", "String", true},
    {"name", "String", true},
    {"label_keys", "Array(String)", false},
    {"label_values", "Array(String)", false},
    {"value", "Float64", false},
};

/* Created in this order: a view's source and target come before it. */
static const struct table tables[] = {
    {"events", "ReplacingMergeTree",
     "ReplacingMergeTree(version) PARTITION BY toYYYYMMDD(ts) ORDER BY (tenant_id, ts, id)",
     events_columns, N_OF(events_columns)},
    {"sessions", "AggregatingMergeTree",
     "AggregatingMergeTree PARTITION BY toYYYYMMDD(day) ORDER BY (tenant_id, day, session_id)",
     sessions_columns, N_OF(sessions_columns)},
    {"events_hourly", "AggregatingMergeTree",
     "AggregatingMergeTree PARTITION BY toYYYYMMDD(hour) ORDER BY (tenant_id, hour, "
     ROLLUP_DIMS ")",
     hourly_columns, N_OF(hourly_columns)},
    {"events_daily", "AggregatingMergeTree",
     "AggregatingMergeTree PARTITION BY toYYYYMMDD(day) ORDER BY (tenant_id, day, "
     ROLLUP_DIMS ")",
     daily_columns, N_OF(daily_columns)},
    {"internal_metrics", "MergeTree",
     "MergeTree PARTITION BY toYYYYMMDD(ts) ORDER BY (name, host, process, ts)",
     metrics_columns, N_OF(metrics_columns)},
};

#define ROLLUP_STATES                                                                      \
    "uniqExactState(id) AS events, "                                                       \
    "uniqIfState(if(user_id != '', user_id, anonymous_id), "                               \
    "user_id != '' OR anonymous_id != '') AS users, "                                      \
    "uniqIfState(session_id, session_id != '') AS sessions "

static const struct view views[] = {
    {"sessions_mv", "sessions",
     "SELECT tenant_id, toDate(ts) AS day, session_id, "
     "minState(" TS_MS_EXPR ") AS start_ms, "
     "maxState(" TS_MS_EXPR ") AS end_ms, "
     "uniqExactState(id) AS events, "
     "uniqExactIfState(id, type = 'pageview') AS pageviews, "
     "uniqExactIfState(id, type IN ('click', 'custom', 'identify')) AS interactions, "
     "argMinState(path, (type != 'pageview', " TS_MS_EXPR ", id)) AS entry_path, "
     "argMaxState(path, (type = 'pageview', " TS_MS_EXPR ", id)) AS exit_path, "
     "maxState(user_id) AS user_id, "
     "argMinState((anonymous_id, user_agent, ip, url, path, referrer, title, screen, viewport, "
     "timezone, language), (" TS_MS_EXPR ", id)) AS first_context "
     "FROM {db}.events WHERE session_id != '' GROUP BY tenant_id, day, session_id"},
    {"events_hourly_mv", "events_hourly",
     "SELECT tenant_id, toStartOfHour(ts) AS hour, " ROLLUP_DIMS ", " ROLLUP_STATES
     "FROM {db}.events GROUP BY tenant_id, hour, " ROLLUP_DIMS},
    {"events_daily_mv", "events_daily",
     "SELECT tenant_id, toDate(ts) AS day, " ROLLUP_DIMS ", " ROLLUP_STATES
     "FROM {db}.events GROUP BY tenant_id, day, " ROLLUP_DIMS},
};

/* What one call works with. */
struct apply {
    struct sl_ch *ch;
    const char *database;
    bool is_modern;
    struct sl_ch_buf qdb;  /* the database as an identifier */
    struct sl_ch_buf ldb;  /* the database as a string literal */
    struct sl_ch_buf sql;  /* the statement being built */
    struct sl_err *err;
};

static int oom(struct apply *a)
{
    return sl_err_set(a->err, SL_ENOMEM, "out of memory building the schema's SQL");
}

/* Appends text with every "{db}" replaced by the quoted database. */
static int append_with_db(struct apply *a, const char *text)
{
    const char *p = text;
    const char *mark;
    int rc = 0;

    while (rc == 0 && (mark = strstr(p, "{db}")) != NULL) {
        rc = sl_ch_buf_append(&a->sql, p, (size_t)(mark - p));
        if (rc == 0) {
            rc = sl_ch_buf_append(&a->sql, a->qdb.data, a->qdb.len);
        }
        p = mark + 4;
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(&a->sql, p);
    }
    return rc;
}

static int append_type(struct apply *a, const struct column *c)
{
    if (a->is_modern && c->is_lc) {
        return sl_ch_buf_appendf(&a->sql, "LowCardinality(%s)", c->type);
    }
    return sl_ch_buf_append_str(&a->sql, c->type);
}

/* Runs a catalog query (TabSeparated rows) into res. */
static int query_rows(struct apply *a, const char *sql, struct sl_ch_result *res)
{
    int rc = sl_ch_query(a->ch, sql, res, a->err);

    if (rc != 0) {
        sl_err_wrap(a->err, "reading the catalog of %s", a->database);
    }
    return rc;
}

/* Finds a line "first\tsecond..." in a TSV body; second may be NULL (any). Returns the
 * second field's start, or NULL. */
static const char *tsv_find(const char *body, const char *first, const char *second)
{
    size_t first_len = strlen(first);
    const char *line = body;

    while (line != NULL && *line != '\0') {
        const char *eol = strchr(line, '\n');
        size_t n = eol != NULL ? (size_t)(eol - line) : strlen(line);

        if (n > first_len && memcmp(line, first, first_len) == 0 && line[first_len] == '\t') {
            const char *v = line + first_len + 1;
            size_t vn = n - first_len - 1;
            const char *tab = memchr(v, '\t', vn);

            if (tab != NULL) {
                vn = (size_t)(tab - v);
            }
            if (second == NULL || (vn == strlen(second) && memcmp(v, second, vn) == 0)) {
                return v;
            }
        }
        line = eol != NULL ? eol + 1 : NULL;
    }
    return NULL;
}

/* Reads "name\tengine" of every table of the database. */
static int load_tables(struct apply *a, struct sl_ch_result *res)
{
    sl_ch_buf_reset(&a->sql);
    if (sl_ch_buf_appendf(&a->sql, "SELECT name, engine FROM system.tables WHERE database = %s "
                          "FORMAT TabSeparated", a->ldb.data) != 0) {
        return oom(a);
    }
    return query_rows(a, a->sql.data, res);
}

/* Runs a CREATE ... IF NOT EXISTS. A failure counts as success when the object exists after
 * it: two processes creating one table can race past IF NOT EXISTS on 18.16. */
static int run_create(struct apply *a, const char *what, const char *name)
{
    struct sl_err first;
    struct sl_ch_result res = {0};
    int rc = sl_ch_exec(a->ch, a->sql.data, &first);

    if (rc == 0) {
        return 0;
    }
    if (rc == SL_ESERVER) {
        int check;

        sl_ch_buf_reset(&a->sql);
        if (name == NULL) {
            check = sl_ch_buf_appendf(&a->sql, "SELECT name, name FROM system.databases WHERE "
                                      "name = %s FORMAT TabSeparated", a->ldb.data);
        }
        else {
            check = sl_ch_buf_appendf(&a->sql, "SELECT name, name FROM system.tables WHERE "
                                      "database = %s FORMAT TabSeparated", a->ldb.data);
        }
        if (check != 0) {
            return oom(a);
        }
        if (sl_ch_query(a->ch, a->sql.data, &res, NULL) == 0 &&
            tsv_find(res.body, name != NULL ? name : a->database, NULL) != NULL) {
            sl_ch_result_fini(&res);
            return 0;
        }
        sl_ch_result_fini(&res);
    }
    if (a->err != NULL) {
        *a->err = first;
    }
    return sl_err_wrap(a->err, "creating %s %s%s%s", what, a->database, name != NULL ? "." : "",
                       name != NULL ? name : "");
}

static int create_database(struct apply *a)
{
    sl_ch_buf_reset(&a->sql);
    if (sl_ch_buf_appendf(&a->sql, "CREATE DATABASE IF NOT EXISTS %s", a->qdb.data) != 0) {
        return oom(a);
    }
    return run_create(a, "database", NULL);
}

static int create_table(struct apply *a, const struct table *t)
{
    int rc;

    sl_ch_buf_reset(&a->sql);
    rc = sl_ch_buf_appendf(&a->sql, "CREATE TABLE IF NOT EXISTS %s.%s (", a->qdb.data, t->name);
    for (size_t i = 0; rc == 0 && i < t->n_columns; i++) {
        rc = sl_ch_buf_appendf(&a->sql, "%s%s ", i > 0 ? ", " : "", t->columns[i].name);
        if (rc == 0) {
            rc = append_type(a, &t->columns[i]);
        }
    }
    if (rc == 0) {
        rc = sl_ch_buf_appendf(&a->sql, ") ENGINE = %s", t->engine_sql);
    }
    if (rc != 0) {
        return oom(a);
    }
    return run_create(a, "table", t->name);
}

static int create_view(struct apply *a, const struct view *v)
{
    int rc;

    sl_ch_buf_reset(&a->sql);
    rc = sl_ch_buf_appendf(&a->sql, "CREATE MATERIALIZED VIEW IF NOT EXISTS %s.%s TO %s.%s AS ",
                           a->qdb.data, v->name, a->qdb.data, v->target);
    if (rc == 0) {
        rc = append_with_db(a, v->select_sql);
    }
    if (rc != 0) {
        return oom(a);
    }
    return run_create(a, "materialized view", v->name);
}

/* Checks that name exists with the engine expected. */
static int check_engine(struct apply *a, const char *body, const char *name, const char *engine)
{
    const char *v = tsv_find(body, name, NULL);
    size_t n;

    if (v == NULL) {
        return sl_err_set(a->err, SL_ESCHEMA, "%s.%s is missing after it was created",
                          a->database, name);
    }
    n = strcspn(v, "\t\n");
    if (n != strlen(engine) || memcmp(v, engine, n) != 0) {
        return sl_err_set(a->err, SL_ESCHEMA, "%s.%s exists with engine %.*s, not %s; rename "
                          "or drop it (its rows could be counted twice)", a->database, name,
                          (int)n, v, engine);
    }
    return 0;
}

/* Reads "table\tcolumn" of every column of the database. */
static int load_columns(struct apply *a, struct sl_ch_result *res)
{
    sl_ch_buf_reset(&a->sql);
    if (sl_ch_buf_appendf(&a->sql, "SELECT table, name FROM system.columns WHERE database = %s "
                          "FORMAT TabSeparated", a->ldb.data) != 0) {
        return oom(a);
    }
    return query_rows(a, a->sql.data, res);
}

/*
 * Adds the columns of t that its existing table lacks, each after its predecessor. Another
 * process may add the same column first; then the ALTER fails and a second look at
 * system.columns finds it there.
 */
static int add_missing_columns(struct apply *a, const struct table *t, const char *columns)
{
    for (size_t i = 0; i < t->n_columns; i++) {
        const struct column *c = &t->columns[i];
        struct sl_ch_result again = {0};
        struct sl_err first;
        bool is_there = false;
        int rc;

        if (tsv_find(columns, t->name, c->name) != NULL) {
            continue;
        }
        sl_ch_buf_reset(&a->sql);
        rc = sl_ch_buf_appendf(&a->sql, "ALTER TABLE %s.%s ADD COLUMN %s ", a->qdb.data, t->name,
                               c->name);
        rc = rc != 0 ? rc : append_type(a, c);
        if (rc == 0 && i > 0) {
            rc = sl_ch_buf_appendf(&a->sql, " AFTER %s", t->columns[i - 1].name);
        }
        if (rc != 0) {
            return oom(a);
        }
        rc = sl_ch_exec(a->ch, a->sql.data, &first);
        if (rc == SL_ESERVER && load_columns(a, &again) == 0) {
            is_there = tsv_find(again.body, t->name, c->name) != NULL;
        }
        sl_ch_result_fini(&again);
        if (rc != 0 && !is_there) {
            if (a->err != NULL) {
                *a->err = first;
            }
            return sl_err_wrap(a->err, "adding column %s to %s.%s", c->name, a->database,
                               t->name);
        }
    }
    return 0;
}

static int detect(struct apply *a, enum ingest_schema_mode mode)
{
    int major = 0;
    int minor = 0;
    int patch = 0;
    int rc;

    if (mode != INGEST_SCHEMA_DETECT) {
        a->is_modern = mode == INGEST_SCHEMA_MODERN;
        return 0;
    }
    rc = sl_ch_server_version(a->ch, &major, &minor, &patch, a->err);
    if (rc != 0) {
        return sl_err_wrap(a->err, "detecting the ClickHouse version");
    }
    a->is_modern = major >= INGEST_SCHEMA_MODERN_MIN_MAJOR;
    return 0;
}

static int apply_all(struct apply *a, enum ingest_schema_mode mode)
{
    struct sl_ch_result catalog = {0};
    int rc = detect(a, mode);

    rc = rc != 0 ? rc : create_database(a);
    for (size_t i = 0; rc == 0 && i < N_OF(tables); i++) {
        rc = create_table(a, &tables[i]);
    }
    rc = rc != 0 ? rc : load_tables(a, &catalog);
    for (size_t i = 0; rc == 0 && i < N_OF(tables); i++) {
        rc = check_engine(a, catalog.body, tables[i].name, tables[i].engine);
    }
    sl_ch_result_fini(&catalog);
    /* Columns before views: a view may read a column an older events table lacks. */
    rc = rc != 0 ? rc : load_columns(a, &catalog);
    for (size_t i = 0; rc == 0 && i < N_OF(tables); i++) {
        rc = add_missing_columns(a, &tables[i], catalog.body);
    }
    sl_ch_result_fini(&catalog);
    for (size_t i = 0; rc == 0 && i < N_OF(views); i++) {
        rc = create_view(a, &views[i]);
    }
    rc = rc != 0 ? rc : load_tables(a, &catalog);
    for (size_t i = 0; rc == 0 && i < N_OF(views); i++) {
        rc = check_engine(a, catalog.body, views[i].name, "MaterializedView");
    }
    sl_ch_result_fini(&catalog);
    return rc;
}

int ingest_schema_apply_mode(struct sl_ch *ch, const char *database, enum ingest_schema_mode mode,
                             struct sl_err *err)
{
    struct apply a = {.ch = ch, .database = database, .err = err};
    int rc;

    sl_err_clear(err);
    if (database == NULL || database[0] == '\0') {
        return sl_err_set(err, SL_EINVAL, "the ClickHouse database name is empty");
    }
    sl_ch_buf_init(&a.qdb, SQL_MAX_BYTES);
    sl_ch_buf_init(&a.ldb, SQL_MAX_BYTES);
    sl_ch_buf_init(&a.sql, SQL_MAX_BYTES);
    rc = sl_ch_quote_ident(&a.qdb, database, strlen(database));
    if (rc == 0) {
        rc = sl_ch_quote(&a.ldb, database, strlen(database));
    }
    if (rc != 0) {
        rc = sl_err_set(err, rc, "the ClickHouse database name '%s' cannot be quoted", database);
    }
    else {
        rc = apply_all(&a, mode);
    }
    sl_ch_buf_fini(&a.sql);
    sl_ch_buf_fini(&a.ldb);
    sl_ch_buf_fini(&a.qdb);
    return rc;
}

int ingest_schema_apply(struct sl_ch *ch, const char *database, struct sl_err *err)
{
    return ingest_schema_apply_mode(ch, database, INGEST_SCHEMA_DETECT, err);
}

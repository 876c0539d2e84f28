/*
 * Rewriting a range of stored events with fresh enrichment (see reenrich.h): find the
 * (ip, user_agent, client_hints) keys of rows to redo, enrich them here, hand the answers
 * to ClickHouse in a Memory table, and let one INSERT ... SELECT write each event again.
 */
#include "reenrich.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"

/* Longest SQL text of one statement (the column list is the long part). */
#define SQL_MAX (64 * 1024)

/* Longest answer of the pairs query: batch_pairs pairs of at most a few KiB each. */
#define PAIRS_BODY_MAX ((size_t)256 * 1024 * 1024)

/* The enrichment columns of events, in table order, with their types. The rewrite sets
 * these (and version); every other column is copied as it is. */
static const struct {
    const char *name;
    const char *type;
} enriched_cols[] = {
    {"country_code", "String"},   {"country", "String"},       {"region", "String"},
    {"city", "String"},           {"postal", "String"},        {"latitude", "Float64"},
    {"longitude", "Float64"},     {"accuracy_radius", "UInt16"}, {"geo_timezone", "String"},
    {"asn", "UInt32"},            {"as_org", "String"},        {"browser", "String"},
    {"browser_version", "String"}, {"os", "String"},           {"os_version", "String"},
    {"device", "String"},         {"device_brand", "String"},  {"device_model", "String"},
    {"is_bot", "UInt8"},          {"bot_reason", "String"},    {"enrichment_version", "UInt32"},
};
#define N_ENRICHED (sizeof(enriched_cols) / sizeof(enriched_cols[0]))

/* One call's state. */
struct rewrite {
    struct sl_ch *ch;
    struct enrich *e;
    const char *database;
    const char *tenant_id;
    int64_t from_s;
    int64_t to_s;
    uint32_t current;
    char tmp_name[40];
    struct sl_ch_buf sql;
    struct sl_ch_buf rows;
    char *other_cols; /* "id, tenant_id, ..." without the enrichment columns and version */
};

static bool is_enriched_col(const char *name, size_t len)
{
    if (len == 7 && strncmp(name, "version", 7) == 0) {
        return true;
    }
    for (size_t i = 0; i < N_ENRICHED; i++) {
        if (strlen(enriched_cols[i].name) == len &&
            strncmp(enriched_cols[i].name, name, len) == 0) {
            return true;
        }
    }
    return false;
}

/* "tenant_id = '...' AND ts >= toDateTime(F) AND ts < toDateTime(T)" */
static int append_range(struct rewrite *w)
{
    int rc = sl_ch_buf_append_str(&w->sql, "tenant_id = ");

    rc = rc != 0 ? rc : sl_ch_quote(&w->sql, w->tenant_id, strlen(w->tenant_id));
    return rc != 0 ? rc
                   : sl_ch_buf_appendf(&w->sql, " AND ts >= toDateTime(%lld) AND ts < "
                                       "toDateTime(%lld)", (long long)w->from_s,
                                       (long long)w->to_s);
}

static int sql_failed(int rc, const char *what, struct sl_err *err)
{
    return sl_err_set(err, rc == SL_ENOMEM ? SL_ENOMEM : SL_EINVAL, "cannot build the %s "
                      "statement (%s)", what, rc == SL_ENOMEM ? "out of memory" : "too long");
}

/* Reads the events table's columns (DESCRIBE keeps table order) other than ours. */
static int load_columns(struct rewrite *w, struct sl_err *err)
{
    struct sl_ch_result res = {0};
    struct sl_ch_buf cols;
    int rc;

    sl_ch_buf_reset(&w->sql);
    rc = sl_ch_buf_append_str(&w->sql, "DESCRIBE TABLE ");
    rc = rc != 0 ? rc : sl_ch_quote_table(&w->sql, w->database, "events");
    rc = rc != 0 ? rc : sl_ch_buf_append_str(&w->sql, " FORMAT TabSeparated");
    if (rc != 0) {
        return sql_failed(rc, "DESCRIBE", err);
    }
    rc = sl_ch_query(w->ch, w->sql.data, &res, err);
    if (rc != 0) {
        return rc;
    }
    sl_ch_buf_init(&cols, SQL_MAX);
    for (const char *p = res.body; rc == 0 && p < res.body + res.len;) {
        const char *eol = memchr(p, '\n', (size_t)(res.body + res.len - p));
        size_t name_len = strcspn(p, "\t\n");

        if (eol == NULL) {
            eol = res.body + res.len;
        }
        if (name_len > 0 && !is_enriched_col(p, name_len)) {
            if (cols.len > 0) {
                rc = sl_ch_buf_append_str(&cols, ", ");
            }
            rc = rc != 0 ? rc : sl_ch_quote_ident(&cols, p, name_len);
        }
        p = eol + 1;
    }
    sl_ch_result_fini(&res);
    if (rc == 0 && cols.len == 0) {
        rc = sl_err_set(err, SL_ESTATE, "%s.events has no columns to copy", w->database);
    }
    else if (rc != 0) {
        rc = sql_failed(rc, "column list", err);
    }
    if (rc == 0) {
        w->other_cols = sl_strdup(cols.data);
        rc = w->other_cols == NULL ? sl_err_set(err, SL_ENOMEM, "out of memory") : 0;
    }
    sl_ch_buf_fini(&cols);
    return rc;
}

/*
 * Asks for up to batch_pairs (ip, user_agent, client_hints) keys of the newest copies still
 * below the current version, with how many events each has. *out is the JSONEachRow body.
 */
static int find_pairs(struct rewrite *w, int64_t batch_pairs, struct sl_ch_result *out,
                      struct sl_err *err)
{
    int rc;

    sl_ch_buf_reset(&w->sql);
    rc = sl_ch_buf_append_str(&w->sql, "SELECT a_ip AS ip, a_ua AS ua, a_ch AS ch, "
                              "toUInt32(count()) AS n FROM (SELECT argMax(ip, version) AS a_ip, "
                              "argMax(user_agent, version) AS a_ua, argMax(client_hints, "
                              "version) AS a_ch, argMax(enrichment_version, version) AS a_ev "
                              "FROM ");
    rc = rc != 0 ? rc : sl_ch_quote_table(&w->sql, w->database, "events");
    rc = rc != 0 ? rc : sl_ch_buf_append_str(&w->sql, " WHERE ");
    rc = rc != 0 ? rc : append_range(w);
    rc = rc != 0 ? rc
                 : sl_ch_buf_appendf(&w->sql, " GROUP BY id HAVING a_ev < %u) GROUP BY a_ip, a_ua, "
                                     "a_ch ORDER BY n DESC LIMIT %lld FORMAT JSONEachRow",
                                     (unsigned)w->current, (long long)batch_pairs);
    if (rc != 0) {
        return sql_failed(rc, "pairs", err);
    }
    return sl_ch_query(w->ch, w->sql.data, out, err);
}

/* One row of the answers table: k_ip, k_ua, k_ch, then the enrichment columns in order. */
static int encode_answer(struct sl_ch_buf *b, const json_t *ip, const json_t *ua,
                         const json_t *ch, const struct enrich_result *r)
{
    int rc = sl_ch_rb_string(b, json_string_value(ip), json_string_length(ip));

    rc = rc != 0 ? rc : sl_ch_rb_string(b, json_string_value(ua), json_string_length(ua));
    rc = rc != 0 ? rc : sl_ch_rb_string(b, json_string_value(ch), json_string_length(ch));
    return rc != 0 ? rc : enrich_result_put_rowbinary(b, r);
}

/* Enriches one (ip, agent, client hints) key; hints that do not parse are left out, as the
 * loader does. */
static void enrich_key(struct enrich *e, const json_t *ip, const json_t *ua, const json_t *ch,
                       struct enrich_result *r)
{
    struct enrich_hints hints;
    json_t *obj = NULL;

    enrich_hints_init(&hints);
    if (json_string_length(ch) > 0) {
        obj = json_loadb(json_string_value(ch), json_string_length(ch), 0, NULL);
        if (!json_is_object(obj) || enrich_hints_from_json(&hints, obj, NULL) != 0) {
            enrich_hints_init(&hints);
        }
        json_decref(obj);
    }
    enrich_lookup(e, json_string_value(ip), json_string_value(ua),
                  enrich_hints_is_empty(&hints) ? NULL : &hints, r);
}

/* FNV-1a over the key's three strings and their lengths. */
static uint64_t hash_pair(const json_t *ip, const json_t *ua, const json_t *ch)
{
    const json_t *parts[3] = {ip, ua, ch};
    uint64_t h = UINT64_C(14695981039346656037);

    for (int k = 0; k < 3; k++) {
        const unsigned char *c = (const unsigned char *)json_string_value(parts[k]);
        size_t len = json_string_length(parts[k]);

        for (size_t i = 0; i < len; i++) {
            h = (h ^ c[i]) * UINT64_C(1099511628211);
        }
        h = (h ^ (len & 0xff)) * UINT64_C(1099511628211);
    }
    return h;
}

/*
 * Enriches every key of body (JSONEachRow lines {"ip","ua","ch","n"}) into w->rows and counts
 * the events they stand for in *n_events. *n_pairs gets the number of pairs, *first_hash a
 * hash of the first pair (a pair that comes back after its step was not rewritten).
 */
static int enrich_pairs(struct rewrite *w, const struct sl_ch_result *body, size_t *n_pairs,
                        int64_t *n_events, uint64_t *first_hash, struct sl_err *err)
{
    const char *p = body->body;
    const char *end = body->body + body->len;
    int rc = 0;

    *n_pairs = 0;
    *n_events = 0;
    sl_ch_buf_reset(&w->rows);
    while (rc == 0 && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        json_error_t jerr;
        json_t *row;
        const json_t *ip, *ua, *ch, *n;
        struct enrich_result r;

        if (eol == NULL) {
            eol = end;
        }
        if (eol == p) {
            p = eol + 1;
            continue;
        }
        row = json_loadb(p, (size_t)(eol - p), 0, &jerr);
        ip = json_object_get(row, "ip");
        ua = json_object_get(row, "ua");
        ch = json_object_get(row, "ch");
        n = json_object_get(row, "n");
        if (!json_is_string(ip) || !json_is_string(ua) || !json_is_string(ch) ||
            !json_is_integer(n)) {
            json_decref(row);
            return sl_err_set(err, SL_ESERVER, "unexpected answer to the pairs query: %.*s",
                              (int)(eol - p > 200 ? 200 : eol - p), p);
        }
        if (*n_pairs == 0) {
            *first_hash = hash_pair(ip, ua, ch);
        }
        enrich_key(w->e, ip, ua, ch, &r);
        rc = encode_answer(&w->rows, ip, ua, ch, &r);
        *n_events += (int64_t)json_integer_value(n);
        (*n_pairs)++;
        json_decref(row);
        p = eol + 1;
    }
    if (rc != 0) {
        return sl_err_set(err, SL_ENOMEM, "out of memory encoding enrichment answers");
    }
    return 0;
}

static int create_tmp(struct rewrite *w, struct sl_err *err)
{
    int rc;

    sl_ch_buf_reset(&w->sql);
    rc = sl_ch_buf_append_str(&w->sql, "CREATE TABLE ");
    rc = rc != 0 ? rc : sl_ch_quote_table(&w->sql, w->database, w->tmp_name);
    rc = rc != 0 ? rc : sl_ch_buf_append_str(&w->sql, " (k_ip String, k_ua String, k_ch String");
    for (size_t i = 0; i < N_ENRICHED && rc == 0; i++) {
        rc = sl_ch_buf_appendf(&w->sql, ", n_%s %s", enriched_cols[i].name,
                               enriched_cols[i].type);
    }
    rc = rc != 0 ? rc : sl_ch_buf_append_str(&w->sql, ") ENGINE = Memory");
    if (rc != 0) {
        return sql_failed(rc, "CREATE TABLE", err);
    }
    return sl_ch_exec(w->ch, w->sql.data, err);
}

static void drop_tmp(struct rewrite *w)
{
    int rc;

    sl_ch_buf_reset(&w->sql);
    rc = sl_ch_buf_append_str(&w->sql, "DROP TABLE IF EXISTS ");
    rc = rc != 0 ? rc : sl_ch_quote_table(&w->sql, w->database, w->tmp_name);
    if (rc == 0) {
        /* Best effort: a leftover Memory table holds one step's answers and goes with a
         * server restart; its name says what it was. */
        sl_ch_exec(w->ch, w->sql.data, NULL);
    }
}

static int insert_answers(struct rewrite *w, struct sl_err *err)
{
    int rc;

    sl_ch_buf_reset(&w->sql);
    rc = sl_ch_buf_append_str(&w->sql, "INSERT INTO ");
    rc = rc != 0 ? rc : sl_ch_quote_table(&w->sql, w->database, w->tmp_name);
    rc = rc != 0 ? rc : sl_ch_buf_append_str(&w->sql, " FORMAT RowBinary");
    if (rc != 0) {
        return sql_failed(rc, "INSERT", err);
    }
    return sl_ch_insert(w->ch, w->sql.data, w->rows.data, w->rows.len, err);
}

/* The INSERT ... SELECT that writes the events of this step's pairs again. */
static int rewrite_events(struct rewrite *w, int64_t now_ms, struct sl_err *err)
{
    int rc;

    sl_ch_buf_reset(&w->sql);
    rc = sl_ch_buf_append_str(&w->sql, "INSERT INTO ");
    rc = rc != 0 ? rc : sl_ch_quote_table(&w->sql, w->database, "events");
    rc = rc != 0 ? rc : sl_ch_buf_appendf(&w->sql, " (%s", w->other_cols);
    for (size_t i = 0; i < N_ENRICHED && rc == 0; i++) {
        rc = sl_ch_buf_appendf(&w->sql, ", %s", enriched_cols[i].name);
    }
    rc = rc != 0 ? rc : sl_ch_buf_appendf(&w->sql, ", version) SELECT %s", w->other_cols);
    for (size_t i = 0; i < N_ENRICHED && rc == 0; i++) {
        rc = sl_ch_buf_appendf(&w->sql, ", n_%s", enriched_cols[i].name);
    }
    rc = rc != 0 ? rc
                 : sl_ch_buf_appendf(&w->sql, ", greatest(toUInt64(%lld), version + 1) FROM "
                                     "(SELECT * FROM (SELECT * FROM ", (long long)now_ms);
    rc = rc != 0 ? rc : sl_ch_quote_table(&w->sql, w->database, "events");
    rc = rc != 0 ? rc : sl_ch_buf_append_str(&w->sql, " WHERE ");
    rc = rc != 0 ? rc : append_range(w);
    rc = rc != 0 ? rc
                 : sl_ch_buf_appendf(&w->sql, " ORDER BY id, version DESC LIMIT 1 BY id) WHERE "
                                     "enrichment_version < %u) ANY INNER JOIN (SELECT k_ip AS "
                                     "ip, k_ua AS user_agent, k_ch AS client_hints",
                                     (unsigned)w->current);
    for (size_t i = 0; i < N_ENRICHED && rc == 0; i++) {
        rc = sl_ch_buf_appendf(&w->sql, ", n_%s", enriched_cols[i].name);
    }
    rc = rc != 0 ? rc : sl_ch_buf_append_str(&w->sql, " FROM ");
    rc = rc != 0 ? rc : sl_ch_quote_table(&w->sql, w->database, w->tmp_name);
    rc = rc != 0 ? rc : sl_ch_buf_append_str(&w->sql, ") USING (ip, user_agent, client_hints)");
    if (rc != 0) {
        return sql_failed(rc, "INSERT ... SELECT", err);
    }
    return sl_ch_exec(w->ch, w->sql.data, err);
}

/* A name for this call's answers table that no other call uses at the same time. */
static void make_tmp_name(struct rewrite *w)
{
    struct timespec ts;
    uint64_t x;

    clock_gettime(CLOCK_REALTIME, &ts);
    x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 48) ^
        (uint64_t)(uintptr_t)w;
    /* splitmix64: spreads the bits so the names look random. */
    x += UINT64_C(0x9e3779b97f4a7c15);
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    snprintf(w->tmp_name, sizeof(w->tmp_name), "_sluice_reenrich_%016llx", (unsigned long long)x);
}

int enrich_rewrite_range(struct sl_ch *ch, struct enrich *e, const char *database,
                         const char *tenant_id, int64_t from_s, int64_t to_s,
                         int64_t batch_pairs, int64_t now_ms, int64_t *rows_read,
                         int64_t *rows_written, struct sl_err *err)
{
    struct rewrite w = {.ch = ch, .e = e, .database = database, .tenant_id = tenant_id,
                        .from_s = from_s, .to_s = to_s};
    bool has_tmp = false;
    uint64_t prev_hash = 0;
    int rc;

    if (database == NULL || database[0] == '\0' || tenant_id == NULL || tenant_id[0] == '\0' ||
        batch_pairs < 1 || batch_pairs > ENRICH_REWRITE_MAX_BATCH_PAIRS || from_s >= to_s) {
        return sl_err_set(err, SL_EINVAL, "re-enrichment needs a database, a tenant, a range "
                          "and 1..%d pairs per step", ENRICH_REWRITE_MAX_BATCH_PAIRS);
    }
    w.current = enrich_version_id(e);
    sl_ch_buf_init(&w.sql, SQL_MAX);
    sl_ch_buf_init(&w.rows, PAIRS_BODY_MAX);
    make_tmp_name(&w);
    rc = load_columns(&w, err);
    while (rc == 0) {
        struct sl_ch_result pairs = {0};
        size_t n_pairs = 0;
        int64_t n_events = 0;
        uint64_t first_hash = 0;

        rc = find_pairs(&w, batch_pairs, &pairs, err);
        if (rc == 0) {
            rc = enrich_pairs(&w, &pairs, &n_pairs, &n_events, &first_hash, err);
        }
        sl_ch_result_fini(&pairs);
        if (rc != 0 || n_pairs == 0) {
            break;
        }
        if (has_tmp && first_hash == prev_hash) {
            /* The last step wrote its events, yet the same pair is still below the current
             * version: something rewrites nothing. Stop rather than loop. */
            rc = sl_err_set(err, SL_ESTATE, "re-enrichment of %s in %lld..%lld made no "
                            "progress (a pair came back after its rewrite)", tenant_id,
                            (long long)from_s, (long long)to_s);
            break;
        }
        prev_hash = first_hash;
        *rows_read += n_events;
        if (!has_tmp) {
            rc = create_tmp(&w, err);
            has_tmp = rc == 0;
        }
        else {
            /* Each step's answers alone: a Memory table empties by being made again. */
            drop_tmp(&w);
            rc = create_tmp(&w, err);
        }
        if (rc == 0) {
            rc = insert_answers(&w, err);
        }
        if (rc == 0) {
            rc = rewrite_events(&w, now_ms, err);
        }
        if (rc == 0) {
            *rows_written += n_events;
        }
        /* Rewritten events now carry the current version, so the next step finds the
         * remaining pairs, until none is left. */
    }
    if (has_tmp) {
        drop_tmp(&w);
    }
    sl_ch_buf_fini(&w.rows);
    sl_ch_buf_fini(&w.sql);
    sl_free(w.other_cols);
    return rc;
}

int enrich_rewrite_check_data(struct enrich *e, struct sl_err *err)
{
    struct enrich_health h;

    enrich_health(e, &h);
    for (int i = 0; i < ENRICH_N_PARTS; i++) {
        if (h.parts[i].state == ENRICH_PART_ERROR) {
            return sl_err_set(err, SL_ESTATE, "enrichment data %s (%s) does not load, so rows "
                              "are not rewritten: %s", h.parts[i].name, h.parts[i].path,
                              h.parts[i].error);
        }
    }
    return 0;
}

/*
 * One chunk of the enrichment kind: re-enrich the raw events of a slice (one tenant or all,
 * a range inside one UTC day) whose newest copy has an enrichment_version below the current
 * one, then check by query that none is left. The rewrite itself is the enrichment
 * library's (enrich_rewrite_range, workers/enrichment/reenrich.h: each such event is written
 * again with the same key and a higher version, so ReplacingMergeTree keeps the new copy and
 * uniqExact(id) counts it once); this file chooses the tenants, counts, and verifies.
 *
 *   1. refuse when opts->enrich is NULL (no data configured) or a configured data file does
 *      not load: rewriting with it would blank its columns in rows that have them;
 *   2. census: per tenant of the slice, its events and those below the current version
 *      (newest copy per id, by the ReplacingMergeTree version);
 *   3. dry run: report the census, write nothing;
 *   4. rewrite each tenant that has events below the current version;
 *   5. verify: no event of the slice that was loaded before the chunk started is below the
 *      current version any more. Events the loader writes during the chunk are the loader's
 *      (a live tenant whose tier has enrichment off stores version 0), so they do not fail
 *      it; they were either rewritten too or are left as the loader wrote them.
 *
 * A chunk run again finds nothing below the current version and writes nothing. A chunk
 * killed half-way leaves some events rewritten (each one whole) and the rest to the next
 * attempt. Rollups split by country_code, browser, os or device see a rewritten event under
 * both values until a backfill of the hourly and daily kinds rebuilds them (SCHEMA.md,
 * "Rollups and enrichment").
 */
#include "backfill_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "enrich.h"
#include "reenrich.h"

#define SQL_MAX_BYTES (64 * 1024)

/* The settings a process must set for this kind (enrich.h, ENRICH_CONFIG_OPTS). */
#define DATA_SETTINGS "SLUICE_GEOIP_DB, SLUICE_UA_REGEXES (and optionally SLUICE_GEOIP_ASN_DB, " \
                      "SLUICE_CRAWLER_PATTERNS)"

/* Appends "`db`.events WHERE [tenant_id = '...' AND ]ts >= ... AND ts < ...". */
static int append_slice(struct sl_ch_buf *b, const struct backfill_slice *s)
{
    int rc = sl_ch_quote_table(b, s->database, "events");

    rc = rc != 0 ? rc : sl_ch_buf_append_str(b, " WHERE ");
    if (rc == 0 && s->tenant_id[0] != '\0') {
        rc = sl_ch_buf_append_str(b, "tenant_id = ");
        rc = rc != 0 ? rc : sl_ch_quote(b, s->tenant_id, strlen(s->tenant_id));
        rc = rc != 0 ? rc : sl_ch_buf_append_str(b, " AND ");
    }
    return rc != 0 ? rc
                   : sl_ch_buf_appendf(b, "ts >= toDateTime(%lld) AND ts < toDateTime(%lld)",
                                       (long long)s->from_s, (long long)s->to_s);
}

static int sql_failed(int rc, struct sl_err *err)
{
    return sl_err_set(err, rc == SL_ENOMEM ? SL_ENOMEM : SL_EINVAL, "cannot build the "
                      "enrichment backfill's SQL (%s)", rc == SL_ENOMEM ? "out of memory"
                                                                        : "too long");
}

/* A count the census sends as a string (toString, so no server setting matters). */
static int64_t count_of(const json_t *v)
{
    return json_is_string(v) ? strtoll(json_string_value(v), NULL, 10) : -1;
}

/*
 * Step 2: one JSON object per tenant of the slice, {"tenant_id", "n", "stale"}, in tenant
 * order, into *out (a new array); totals into *n_events and *n_stale.
 */
static int census(const struct backfill_slice *s, uint32_t current, json_t **out,
                  int64_t *n_events, int64_t *n_stale, struct sl_err *err)
{
    struct sl_ch_result res = {0};
    struct sl_ch_buf sql;
    json_t *rows = NULL;
    int rc;

    *out = NULL;
    *n_events = 0;
    *n_stale = 0;
    sl_ch_buf_init(&sql, SQL_MAX_BYTES);
    rc = sl_ch_buf_appendf(&sql, "SELECT tenant_id, toString(count()) AS n, "
                           "toString(countIf(ev < %u)) AS stale FROM (SELECT tenant_id, "
                           "argMax(enrichment_version, version) AS ev FROM ", (unsigned)current);
    rc = rc != 0 ? rc : append_slice(&sql, s);
    rc = rc != 0 ? rc : sl_ch_buf_append_str(&sql, " GROUP BY tenant_id, id) GROUP BY tenant_id "
                                             "ORDER BY tenant_id FORMAT JSONEachRow");
    if (rc != 0) {
        sl_ch_buf_fini(&sql);
        return sql_failed(rc, err);
    }
    rc = sl_ch_query(s->ch, sql.data, &res, err);
    sl_ch_buf_fini(&sql);
    if (rc != 0) {
        return sl_err_wrap(err, "counting the slice's events");
    }
    rows = json_array();
    rc = rows == NULL ? sl_err_set(err, SL_ENOMEM, "out of memory") : 0;
    for (const char *p = res.body; rc == 0 && p < res.body + res.len;) {
        const char *eol = memchr(p, '\n', (size_t)(res.body + res.len - p));
        json_error_t jerr;
        json_t *row;
        int64_t n, stale;

        if (eol == NULL) {
            eol = res.body + res.len;
        }
        if (eol == p) {
            p = eol + 1;
            continue;
        }
        row = json_loadb(p, (size_t)(eol - p), 0, &jerr);
        n = count_of(json_object_get(row, "n"));
        stale = count_of(json_object_get(row, "stale"));
        if (!json_is_string(json_object_get(row, "tenant_id")) || n < 0 || stale < 0) {
            rc = sl_err_set(err, SL_ESERVER, "unexpected answer counting the slice's events: "
                            "%.*s", (int)(eol - p > 200 ? 200 : eol - p), p);
            json_decref(row);
            break;
        }
        *n_events += n;
        *n_stale += stale;
        if (json_array_append_new(rows, row) != 0) {
            rc = sl_err_set(err, SL_ENOMEM, "out of memory");
        }
        p = eol + 1;
    }
    sl_ch_result_fini(&res);
    if (rc != 0) {
        json_decref(rows);
        return rc;
    }
    *out = rows;
    return 0;
}

/*
 * Step 5: events of the slice, loaded before the chunk started (their first copy's version,
 * the loader's insert time in ms, is older than start_ms), whose newest copy is still below
 * the current version.
 */
static int count_left(const struct backfill_slice *s, uint32_t current, int64_t start_ms,
                      int64_t *left, struct sl_err *err)
{
    struct sl_ch_result res = {0};
    struct sl_ch_buf sql;
    char *end = NULL;
    int rc;

    sl_ch_buf_init(&sql, SQL_MAX_BYTES);
    rc = sl_ch_buf_append_str(&sql, "SELECT count() FROM (SELECT argMax(enrichment_version, "
                              "version) AS ev, min(version) AS first_ms FROM ");
    rc = rc != 0 ? rc : append_slice(&sql, s);
    rc = rc != 0 ? rc : sl_ch_buf_appendf(&sql, " GROUP BY tenant_id, id) WHERE ev < %u AND "
                                          "first_ms < %lld FORMAT TabSeparated",
                                          (unsigned)current, (long long)start_ms);
    if (rc != 0) {
        sl_ch_buf_fini(&sql);
        return sql_failed(rc, err);
    }
    rc = sl_ch_query(s->ch, sql.data, &res, err);
    sl_ch_buf_fini(&sql);
    if (rc != 0) {
        return sl_err_wrap(err, "verifying the slice");
    }
    *left = strtoll(res.body, &end, 10);
    if (end == res.body) {
        rc = sl_err_set(err, SL_ESERVER, "verifying the slice: not a number: '%.40s'", res.body);
    }
    sl_ch_result_fini(&res);
    return rc;
}

/* Step 4: every tenant of the census with events below the current version. */
static int rewrite(const struct backfill_slice *s, const json_t *tenants, int64_t now_ms,
                   int64_t *rows_written, struct sl_err *err)
{
    int64_t batch_pairs = s->opts->enrich_batch_pairs > 0 ? s->opts->enrich_batch_pairs
                                                          : ENRICH_REWRITE_BATCH_PAIRS;
    size_t i;
    const json_t *row;

    json_array_foreach(tenants, i, row) {
        const char *tenant_id = json_string_value(json_object_get(row, "tenant_id"));
        int64_t found = 0;
        int rc;

        if (count_of(json_object_get(row, "stale")) <= 0) {
            continue;
        }
        rc = enrich_rewrite_range(s->ch, s->opts->enrich, s->database, tenant_id, s->from_s,
                                  s->to_s, batch_pairs, now_ms, &found, rows_written, err);
        if (rc != 0) {
            return sl_err_wrap(err, "re-enriching tenant %s", tenant_id);
        }
    }
    return 0;
}

int backfill_enrich_chunk(const struct backfill_slice *s, struct backfill_chunk_result *out,
                          struct sl_err *err)
{
    struct enrich *e = s->opts->enrich;
    json_t *tenants = NULL;
    int64_t n_stale = 0, left = 0;
    int64_t start_ms = s->opts->now_s * 1000;
    uint32_t current;
    int rc;

    if (e == NULL) {
        return sl_err_set(err, SL_EINVAL, "the enrichment backfill has no enrichment data to "
                          "apply: set " DATA_SETTINGS " for the process that runs it "
                          "(sluice-scheduler for jobs, then `sluice backfill resume`; sluice "
                          "for --dry-run)");
    }
    if (enrich_rewrite_check_data(e, err) != 0) {
        return SL_ESTATE;
    }
    current = enrich_version_id(e);
    rc = census(s, current, &tenants, &out->rows_read, &n_stale, err);
    if (rc != 0) {
        return rc;
    }
    out->rows_before = out->rows_read;
    if (out->rows_read == 0) {
        /* No events in the slice: nothing to rewrite, nothing to check. */
        snprintf(out->source, sizeof(out->source), "none");
        out->is_kept = true;
        json_decref(tenants);
        return 0;
    }
    snprintf(out->source, sizeof(out->source), "events");
    if (s->opts->is_dry_run || n_stale == 0) {
        /* A dry run reports what it would rewrite; a finished slice needs nothing. */
        out->rows_written = s->opts->is_dry_run ? n_stale : 0;
        json_decref(tenants);
        return 0;
    }
    rc = rewrite(s, tenants, start_ms, &out->rows_written, err);
    json_decref(tenants);
    rc = rc != 0 ? rc : count_left(s, current, start_ms, &left, err);
    if (rc == 0 && left > 0) {
        rc = sl_err_set(err, SL_ESTATE, "verification failed: %lld events of the slice are "
                        "still enriched with data older than version %u after the rewrite",
                        (long long)left, (unsigned)current);
    }
    return rc;
}

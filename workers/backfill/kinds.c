/*
 * The kind registry: one const descriptor per kind, in one static array. A new kind is a
 * descriptor here (its SQL pieces, or its own chunk function) and one line in kinds[].
 *
 * The recomputing SELECTs are the materialized views' own (ingest/schema.c) with a filter
 * added, so a change to a view there must be copied here. A drift in a state's type fails
 * every backfill INSERT (18.16 accepts only the exact types), and
 * tests/integration/test_backfill.c compares each kind's result with a from-scratch
 * aggregation of the raw rows, so a drift in meaning fails it. Every state is idempotent (min,
 * max, argMin/argMax, uniq, uniqExact), so recomputing from raw rows that still hold
 * redelivered duplicates gives what the views gave.
 *
 * The enrichment kind (re-enrich raw rows in a range) has no SQL pieces: its own chunk
 * function (kind_enrichment.c) calls the enrichment library's range rewrite and verifies
 * its result, with the struct enrich the caller passes in backfill_chunk_opts.
 */
#include "backfill_int.h"

#include <string.h>

#define TS_MS "toUInt64(ts) * 1000 + ts_ms"
#define DIMS "type, name, path, severity, country_code, browser, os, device"
#define ROLLUP_STATES                                                                      \
    "uniqExactState(id) AS events, "                                                       \
    "uniqIfState(if(user_id != '', user_id, anonymous_id), "                               \
    "user_id != '' OR anonymous_id != '') AS users, "                                      \
    "uniqIfState(session_id, session_id != '') AS sessions "
#define ROLLUP_FINALS "uniqExactMerge(events), uniqIfMerge(users), uniqIfMerge(sessions)"

static const struct backfill_kind kind_sessions = {
    .name = "sessions",
    .summary = "session rows (start, end, counts, entry/exit, first context) from raw events",
    .min_chunk_s = BACKFILL_DAY_S,
    .chunk = backfill_replace_chunk,
    .table = "sessions",
    .time_col = "day",
    .is_date = true,
    .keys = "tenant_id, day, session_id",
    .finals = "minMerge(start_ms), maxMerge(end_ms), uniqExactMerge(events), "
              "uniqExactIfMerge(pageviews), uniqExactIfMerge(interactions), "
              "argMinMerge(entry_path), argMaxMerge(exit_path), maxMerge(user_id), "
              "argMinMerge(first_context)",
    .from_events =
        "SELECT tenant_id, toDate(ts) AS day, session_id, "
        "minState(" TS_MS ") AS start_ms, "
        "maxState(" TS_MS ") AS end_ms, "
        "uniqExactState(id) AS events, "
        "uniqExactIfState(id, type = 'pageview') AS pageviews, "
        "uniqExactIfState(id, type IN ('click', 'custom', 'identify')) AS interactions, "
        "argMinState(path, (type != 'pageview', " TS_MS ", id)) AS entry_path, "
        "argMaxState(path, (type = 'pageview', " TS_MS ", id)) AS exit_path, "
        "maxState(user_id) AS user_id, "
        "argMinState((anonymous_id, user_agent, ip, url, path, referrer, title, screen, "
        "viewport, timezone, language), (" TS_MS ", id)) AS first_context "
        "FROM {db}.events WHERE session_id != '' AND {where} "
        "GROUP BY tenant_id, day, session_id",
    .from_hourly = NULL,
};

static const struct backfill_kind kind_hourly = {
    .name = "hourly",
    .summary = "the hourly rollup (events_hourly) from raw events",
    .min_chunk_s = BACKFILL_HOUR_S,
    .chunk = backfill_replace_chunk,
    .table = "events_hourly",
    .time_col = "hour",
    .is_date = false,
    .keys = "tenant_id, hour, " DIMS,
    .finals = ROLLUP_FINALS,
    .from_events = "SELECT tenant_id, toStartOfHour(ts) AS hour, " DIMS ", " ROLLUP_STATES
                   "FROM {db}.events WHERE {where} GROUP BY tenant_id, hour, " DIMS,
    .from_hourly = NULL,
};

static const struct backfill_kind kind_daily = {
    .name = "daily",
    .summary = "the daily rollup (events_daily) from raw events, or from the hourly rollup "
               "on days whose raw events are gone",
    .min_chunk_s = BACKFILL_DAY_S,
    .chunk = backfill_replace_chunk,
    .table = "events_daily",
    .time_col = "day",
    .is_date = true,
    .keys = "tenant_id, day, " DIMS,
    .finals = ROLLUP_FINALS,
    .from_events = "SELECT tenant_id, toDate(ts) AS day, " DIMS ", " ROLLUP_STATES
                   "FROM {db}.events WHERE {where} GROUP BY tenant_id, day, " DIMS,
    /* -MergeState turns hourly states into daily ones of exactly the same type
     * (AggregateFunction(uniqExact, UUID), AggregateFunction(uniqIf, String, UInt8)) on
     * 18.16 as on newer servers; a merged uniqExact set is the union of the ids and a
     * merged uniq sketch equals the sketch of all its values, so the day reads as if it
     * were built from the raw rows. */
    .from_hourly = "SELECT tenant_id, toDate(hour) AS day, " DIMS ", "
                   "uniqExactMergeState(events) AS events, uniqIfMergeState(users) AS users, "
                   "uniqIfMergeState(sessions) AS sessions "
                   "FROM {db}.events_hourly WHERE {where} GROUP BY tenant_id, day, " DIMS,
};

static const struct backfill_kind kind_enrichment = {
    .name = "enrichment",
    .summary = "re-enriches raw events whose enrichment_version is older than the current "
               "GeoIP/user-agent data",
    .min_chunk_s = BACKFILL_HOUR_S,
    .chunk = backfill_enrich_chunk,
    .needs_enrich = true,
};

static const struct backfill_kind *const kinds[] = {
    &kind_sessions,
    &kind_hourly,
    &kind_daily,
    &kind_enrichment,
};

#define N_KINDS (sizeof(kinds) / sizeof(kinds[0]))

const struct backfill_kind *backfill_kind_find(const char *name)
{
    for (size_t i = 0; name != NULL && i < N_KINDS; i++) {
        if (strcmp(kinds[i]->name, name) == 0) {
            return kinds[i];
        }
    }
    return NULL;
}

size_t backfill_kind_count(void)
{
    return N_KINDS;
}

const struct backfill_kind *backfill_kind_at(size_t i)
{
    return i < N_KINDS ? kinds[i] : NULL;
}

const char *backfill_kind_name(const struct backfill_kind *k)
{
    return k->name;
}

const char *backfill_kind_summary(const struct backfill_kind *k)
{
    return k->summary;
}

bool backfill_kind_needs_enrich(const struct backfill_kind *k)
{
    return k->needs_enrich;
}

int backfill_kind_check_chunk(const struct backfill_kind *k, int64_t chunk_s,
                              struct sl_err *err)
{
    if (chunk_s != BACKFILL_HOUR_S && chunk_s != BACKFILL_DAY_S) {
        return sl_err_set(err, SL_EINVAL, "chunks are 1h or 1d, not %llds",
                          (long long)chunk_s);
    }
    if (chunk_s < k->min_chunk_s) {
        return sl_err_set(err, SL_EINVAL, "kind %s works in whole days (its rows are per "
                          "day): use --chunk 1d", k->name);
    }
    return 0;
}

/*
 * Tests workers/backfill/plan.c and the kind registry: chunk sizes, ranges as operators
 * type them (dates inclusive in --to, RFC 3339 times rounded out to chunks), the next chunk
 * after a cursor, progress, rows/s and ETA, and which kinds take which chunks (and which
 * need enrichment data).
 */
#include "backfill.h"
#include "test.h"

#define DAY1 INT64_C(1795478400) /* 2026-11-24T00:00:00Z */

static void test_backfill_plan_chunk_sizes(void)
{
    struct sl_err err;
    int64_t c = 0;

    ASSERT_OK(backfill_plan_chunk_parse("1h", &c, &err), &err);
    ASSERT_EQ_INT(c, 3600);
    ASSERT_OK(backfill_plan_chunk_parse("1d", &c, &err), &err);
    ASSERT_EQ_INT(c, 86400);
    ASSERT_OK(backfill_plan_chunk_parse("3600", &c, &err), &err);
    ASSERT_EQ_INT(c, 3600);
    ASSERT_EQ_INT(backfill_plan_chunk_parse("2h", &c, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "1h or 1d");
    ASSERT_EQ_INT(backfill_plan_chunk_parse("", &c, &err), SL_EINVAL);
}

static void test_backfill_plan_ranges(void)
{
    struct sl_err err;
    int64_t from = -1, to = -1;

    /* Dates: --to includes its day. */
    ASSERT_OK(backfill_plan_range("2026-11-24", "2026-11-25", 86400, &from, &to, &err), &err);
    ASSERT_EQ_INT(from, DAY1);
    ASSERT_EQ_INT(to, DAY1 + 2 * 86400);
    ASSERT_OK(backfill_plan_range("2026-11-24", "2026-11-24", 3600, &from, &to, &err), &err);
    ASSERT_EQ_INT(to - from, 86400);
    /* Times: exclusive end, rounded out to whole chunks. */
    ASSERT_OK(backfill_plan_range("2026-11-24T01:30:00Z", "2026-11-24T03:00:00Z", 3600, &from,
                                  &to, &err), &err);
    ASSERT_EQ_INT(from, DAY1 + 3600);
    ASSERT_EQ_INT(to, DAY1 + 3 * 3600);
    ASSERT_OK(backfill_plan_range("2026-11-24T01:30:00+01:00", "2026-11-24T02:00:01Z", 3600,
                                  &from, &to, &err), &err);
    ASSERT_EQ_INT(from, DAY1);
    ASSERT_EQ_INT(to, DAY1 + 3 * 3600);
    ASSERT_OK(backfill_plan_range("2026-11-24T05:00:00Z", "2026-11-24T06:00:00Z", 86400, &from,
                                  &to, &err), &err);
    ASSERT_EQ_INT(from, DAY1);
    ASSERT_EQ_INT(to, DAY1 + 86400);
    /* Refusals leave the outputs alone. */
    from = to = 7;
    ASSERT_EQ_INT(backfill_plan_range("2026-11-25", "2026-11-23", 86400, &from, &to, &err),
                  SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "not after");
    ASSERT_EQ_INT(backfill_plan_range("yesterday", "2026-11-23", 86400, &from, &to, &err),
                  SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "--from");
    ASSERT_EQ_INT(backfill_plan_range("2026-11-23", "2026-13-01", 86400, &from, &to, &err),
                  SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "--to");
    ASSERT_EQ_INT(from, 7);
    ASSERT_EQ_INT(to, 7);
}

static void test_backfill_plan_next_chunk(void)
{
    struct sl_backfill_job j;
    int64_t a = 0, b = 0;

    memset(&j, 0, sizeof(j));
    j.from_s = DAY1;
    j.to_s = DAY1 + 3 * 3600;
    j.chunk_s = 3600;
    j.cursor_s = DAY1;
    ASSERT_TRUE(backfill_plan_next(&j, &a, &b));
    ASSERT_EQ_INT(a, DAY1);
    ASSERT_EQ_INT(b, DAY1 + 3600);
    j.cursor_s = DAY1 + 2 * 3600;
    ASSERT_TRUE(backfill_plan_next(&j, &a, &b));
    ASSERT_EQ_INT(b, j.to_s);
    j.cursor_s = j.to_s;
    ASSERT_TRUE(!backfill_plan_next(&j, &a, &b));
}

static void test_backfill_plan_progress(void)
{
    struct sl_backfill_job j;
    struct backfill_progress p;

    memset(&j, 0, sizeof(j));
    j.chunks_total = 48;
    backfill_progress_of(&j, &p);
    ASSERT_EQ_INT(p.eta_s, -1);
    ASSERT_TRUE(p.fraction == 0.0 && p.rows_per_s == 0.0);
    j.chunks_done = 12;
    j.rows_read = 600000;
    j.busy_ms = 3000;
    backfill_progress_of(&j, &p);
    ASSERT_TRUE(p.fraction == 0.25);
    ASSERT_EQ_INT((long long)p.rows_per_s, 200000);
    ASSERT_EQ_INT(p.eta_s, 9); /* 36 chunks at 250 ms */
    j.chunks_done = 48;
    backfill_progress_of(&j, &p);
    ASSERT_EQ_INT(p.eta_s, 0);
    ASSERT_TRUE(p.fraction == 1.0);
}

static void test_backfill_kinds(void)
{
    struct sl_err err;

    ASSERT_EQ_INT(backfill_kind_count(), 4);
    ASSERT_EQ_STR(backfill_kind_name(backfill_kind_at(3)), "enrichment");
    ASSERT_TRUE(backfill_kind_at(4) == NULL);
    ASSERT_TRUE(backfill_kind_find("geoip") == NULL);
    ASSERT_TRUE(backfill_kind_find(NULL) == NULL);
    for (size_t i = 0; i < backfill_kind_count(); i++) {
        const struct backfill_kind *k = backfill_kind_at(i);

        ASSERT_TRUE(backfill_kind_find(backfill_kind_name(k)) == k);
        ASSERT_TRUE(strlen(backfill_kind_summary(k)) > 0);
        ASSERT_OK(backfill_kind_check_chunk(k, 86400, &err), &err);
        ASSERT_EQ_INT(backfill_kind_check_chunk(k, 7200, &err), SL_EINVAL);
    }
    ASSERT_OK(backfill_kind_check_chunk(backfill_kind_find("hourly"), 3600, &err), &err);
    ASSERT_EQ_INT(backfill_kind_check_chunk(backfill_kind_find("sessions"), 3600, &err),
                  SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "--chunk 1d");
    ASSERT_EQ_INT(backfill_kind_check_chunk(backfill_kind_find("daily"), 3600, &err),
                  SL_EINVAL);
    /* Only the enrichment kind needs enrichment data (callers load it for that kind only). */
    ASSERT_OK(backfill_kind_check_chunk(backfill_kind_find("enrichment"), 3600, &err), &err);
    ASSERT_TRUE(backfill_kind_needs_enrich(backfill_kind_find("enrichment")));
    ASSERT_TRUE(!backfill_kind_needs_enrich(backfill_kind_find("hourly")));
    ASSERT_TRUE(!backfill_kind_needs_enrich(backfill_kind_find("sessions")));
    ASSERT_TRUE(!backfill_kind_needs_enrich(backfill_kind_find("daily")));
}

/* A chunk that is not inside one day, or a bad staging tag, is refused before any I/O. */
static void test_backfill_chunk_refuses_bad_slices(void)
{
    struct backfill_chunk_opts opts = {.tag = "t"};
    struct backfill_chunk_result res;
    struct sl_err err;
    const struct backfill_kind *hourly = backfill_kind_find("hourly");

    ASSERT_EQ_INT(backfill_chunk_run(NULL, "db", hourly, "tn_a", DAY1 + 82800, DAY1 + 90000,
                                     &opts, &res, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "one UTC day");
    ASSERT_EQ_INT(backfill_chunk_run(NULL, "db", hourly, "tn_a", DAY1 + 60, DAY1 + 3660, &opts,
                                     &res, &err), SL_EINVAL);
    opts.tag = "x'; DROP";
    ASSERT_EQ_INT(backfill_chunk_run(NULL, "db", hourly, "tn_a", DAY1, DAY1 + 3600, &opts,
                                     &res, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "tag");
    opts.tag = "t";
    ASSERT_EQ_INT(backfill_chunk_run(NULL, "", hourly, "tn_a", DAY1, DAY1 + 3600, &opts, &res,
                                     &err), SL_EINVAL);
    /* The enrichment kind's chunks stay on the same grid, and without data refuse before
     * any I/O (the client here is NULL). */
    ASSERT_EQ_INT(backfill_chunk_run(NULL, "db", backfill_kind_find("enrichment"), "tn_a",
                                     DAY1 + 82800, DAY1 + 90000, &opts, &res, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "one UTC day");
    ASSERT_EQ_INT(backfill_chunk_run(NULL, "db", backfill_kind_find("enrichment"), "tn_a", DAY1,
                                     DAY1 + 3600, &opts, &res, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "SLUICE_GEOIP_DB");
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_backfill_plan_chunk_sizes),
        TEST_CASE(test_backfill_plan_ranges),
        TEST_CASE(test_backfill_plan_next_chunk),
        TEST_CASE(test_backfill_plan_progress),
        TEST_CASE(test_backfill_kinds),
        TEST_CASE(test_backfill_chunk_refuses_bad_slices),
        {NULL, NULL},
    };

    return test_main(argc, argv, cases);
}

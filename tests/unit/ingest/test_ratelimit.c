/* Tests ingest/ratelimit.c: burst, refill, refusal with retry-after, tenants kept apart,
 * the bounded table. */
#include "ratelimit.h"
#include "test.h"

static void test_ratelimit_burst_then_refill(void)
{
    struct ingest_ratelimit *rl = NULL;
    int64_t retry = 0;

    ASSERT_OK(ingest_ratelimit_create(&rl, 16), NULL);
    /* rate 10/s, burst 20: 20 at once, then nothing until tokens come back. */
    ASSERT_OK(ingest_ratelimit_take(rl, "a", 10, 20, 20, 1000, &retry), NULL);
    ASSERT_EQ_INT(ingest_ratelimit_take(rl, "a", 10, 20, 1, 1000, &retry), SL_EBUSY);
    ASSERT_EQ_INT(retry, 100);
    ASSERT_EQ_INT(ingest_ratelimit_take(rl, "a", 10, 20, 1, 1099, &retry), SL_EBUSY);
    ASSERT_EQ_INT(retry, 1);
    ASSERT_OK(ingest_ratelimit_take(rl, "a", 10, 20, 1, 1100, &retry), NULL);
    /* Five seconds later the bucket is full again, never fuller. */
    ASSERT_OK(ingest_ratelimit_take(rl, "a", 10, 20, 20, 7000, &retry), NULL);
    ASSERT_EQ_INT(ingest_ratelimit_take(rl, "a", 10, 20, 5, 7000, &retry), SL_EBUSY);
    ASSERT_EQ_INT(retry, 500);
    ingest_ratelimit_destroy(rl);
}

static void test_ratelimit_request_larger_than_burst(void)
{
    struct ingest_ratelimit *rl = NULL;
    int64_t retry = 0;

    ASSERT_OK(ingest_ratelimit_create(&rl, 4), NULL);
    ASSERT_EQ_INT(ingest_ratelimit_take(rl, "a", 100, 50, 51, 0, &retry), SL_EBUSY);
    ASSERT_TRUE(retry >= 1);
    /* The refused request took nothing. */
    ASSERT_OK(ingest_ratelimit_take(rl, "a", 100, 50, 50, 0, &retry), NULL);
    ingest_ratelimit_destroy(rl);
}

static void test_ratelimit_tenants_apart(void)
{
    struct ingest_ratelimit *rl = NULL;
    int64_t retry = 0;

    ASSERT_OK(ingest_ratelimit_create(&rl, 16), NULL);
    ASSERT_OK(ingest_ratelimit_take(rl, "noisy", 1, 5, 5, 0, &retry), NULL);
    ASSERT_EQ_INT(ingest_ratelimit_take(rl, "noisy", 1, 5, 1, 0, &retry), SL_EBUSY);
    ASSERT_OK(ingest_ratelimit_take(rl, "quiet", 1, 5, 5, 0, &retry), NULL);
    ingest_ratelimit_destroy(rl);
}

static void test_ratelimit_table_is_bounded(void)
{
    struct ingest_ratelimit *rl = NULL;
    int64_t retry = 0;
    char name[32];

    ASSERT_OK(ingest_ratelimit_create(&rl, 8), NULL);
    for (int i = 0; i < 8; i++) {
        snprintf(name, sizeof(name), "t%d", i);
        ASSERT_OK(ingest_ratelimit_take(rl, name, 1, 10, 10, 0, &retry), NULL);
    }
    /* Full of busy tenants: a ninth cannot get a bucket now... */
    ASSERT_EQ_INT(ingest_ratelimit_take(rl, "t8", 1, 10, 1, 10, &retry), SL_ENOMEM);
    /* ...but once the others went idle their (full) buckets are dropped. */
    ASSERT_OK(ingest_ratelimit_take(rl, "t8", 1, 10, 1, 120000, &retry), NULL);
    /* A dropped tenant comes back with a full bucket. */
    ASSERT_OK(ingest_ratelimit_take(rl, "t0", 1, 10, 10, 120001, &retry), NULL);
    ingest_ratelimit_destroy(rl);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_ratelimit_burst_then_refill),
        TEST_CASE(test_ratelimit_request_larger_than_burst),
        TEST_CASE(test_ratelimit_tenants_apart),
        TEST_CASE(test_ratelimit_table_is_bounded),
        {NULL, NULL},
    };
    return test_main(argc, argv, cases);
}

/* Tests ingest/session.c: the 30-minute inactivity rule per (tenant, anonymous_id), late
 * events, tenants kept apart, the bounded table. */
#include "session.h"
#include "test.h"

#define MIN_MS (60 * 1000LL)
#define T0 1795514400000LL

static struct ingest_session *make(int64_t entries)
{
    struct ingest_session_settings s = {.idle_min = 30, .table_entries = entries};
    struct ingest_session *t = NULL;

    ASSERT_OK(ingest_session_create(&t, &s), NULL);
    return t;
}

static void assign(struct ingest_session *t, const char *tenant, const char *anon, int64_t ts,
                   char out[INGEST_SESSION_ID_LEN + 1])
{
    ASSERT_OK(ingest_session_assign(t, tenant, anon, strlen(anon), ts, out), NULL);
    ASSERT_EQ_INT(strlen(out), INGEST_SESSION_ID_LEN);
    ASSERT_EQ_INT(out[14], '4');
}

static void test_session_inactivity_rule(void)
{
    struct ingest_session *t = make(1024);
    char a[40], b[40], c[40], d[40];

    assign(t, "tn_1", "visitor", T0, a);
    assign(t, "tn_1", "visitor", T0 + 29 * MIN_MS, b);
    ASSERT_EQ_STR(a, b);
    /* The window runs from the last activity, not the first. */
    assign(t, "tn_1", "visitor", T0 + 58 * MIN_MS, c);
    ASSERT_EQ_STR(a, c);
    assign(t, "tn_1", "visitor", T0 + 58 * MIN_MS + 30 * MIN_MS + 1, d);
    ASSERT_TRUE(strcmp(a, d) != 0);
    ingest_session_destroy(t);
}

static void test_session_late_events(void)
{
    struct ingest_session *t = make(1024);
    char a[40], b[40], c[40], d[40];

    assign(t, "tn_1", "v", T0 + 60 * MIN_MS, a);
    /* Within the window before the last activity: the same session. */
    assign(t, "tn_1", "v", T0 + 35 * MIN_MS, b);
    ASSERT_EQ_STR(a, b);
    /* Far older: a session of its own, and the current one stays. */
    assign(t, "tn_1", "v", T0, c);
    ASSERT_TRUE(strcmp(a, c) != 0);
    assign(t, "tn_1", "v", T0 + 61 * MIN_MS, d);
    ASSERT_EQ_STR(a, d);
    ingest_session_destroy(t);
}

static void test_session_tenants_and_visitors_apart(void)
{
    struct ingest_session *t = make(1024);
    char a[40], b[40], c[40];

    assign(t, "tn_1", "v", T0, a);
    assign(t, "tn_2", "v", T0, b);
    assign(t, "tn_1", "w", T0, c);
    ASSERT_TRUE(strcmp(a, b) != 0);
    ASSERT_TRUE(strcmp(a, c) != 0);
    /* "tn_1"+"v1" must not collide with "tn_1v"+"1". */
    assign(t, "tn_1", "v1", T0, a);
    assign(t, "tn_1v", "1", T0, b);
    ASSERT_TRUE(strcmp(a, b) != 0);
    ingest_session_destroy(t);
}

static void test_session_table_is_bounded(void)
{
    /* One set of four: the fifth visitor evicts the least recently active. */
    struct ingest_session *t = make(4);
    char first[40], again[40], tmp[40];

    assign(t, "tn", "v0", T0, first);
    assign(t, "tn", "v1", T0 + 1, tmp);
    assign(t, "tn", "v2", T0 + 2, tmp);
    assign(t, "tn", "v3", T0 + 3, tmp);
    assign(t, "tn", "v4", T0 + 4, tmp);
    assign(t, "tn", "v0", T0 + 5, again);
    ASSERT_TRUE(strcmp(first, again) != 0);
    /* v4 (recent) is still known. */
    assign(t, "tn", "v4", T0 + 6, first);
    ASSERT_EQ_STR(first, tmp);
    ingest_session_destroy(t);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_session_inactivity_rule),
        TEST_CASE(test_session_late_events),
        TEST_CASE(test_session_tenants_and_visitors_apart),
        TEST_CASE(test_session_table_is_bounded),
        {NULL, NULL},
    };
    return test_main(argc, argv, cases);
}

/*
 * Tests workers/enrichment/cache.c: exact LRU eviction order in one shard, replacement of a
 * key's value, the bound on entries across shards, values that do not fit, a cache of
 * capacity 0, failed allocations, and threads sharing the cache.
 */
#include <pthread.h>

#include "alloc.h"
#include "cache.h"
#include "err.h"
#include "test.h"

static bool has(struct enrich_cache *c, const char *key, char *val)
{
    size_t len = 0;
    char buf[64];
    bool hit = enrich_cache_get(c, key, strlen(key), buf, sizeof(buf) - 1, &len);

    if (hit && val != NULL) {
        buf[len] = '\0';
        strcpy(val, buf);
    }
    return hit;
}

static void put(struct enrich_cache *c, const char *key, const char *val)
{
    ASSERT_OK(enrich_cache_put(c, key, strlen(key), val, strlen(val)), NULL);
}

static void test_cache_evicts_least_recently_used(void)
{
    struct enrich_cache *c = NULL;
    struct enrich_cache_stats st;
    char val[64];

    ASSERT_OK(enrich_cache_create(3, 1, &c), NULL);
    put(c, "a", "1");
    put(c, "b", "2");
    put(c, "c", "3");
    /* Reading a makes b the least recently used. */
    ASSERT_TRUE(has(c, "a", val));
    ASSERT_EQ_STR(val, "1");
    put(c, "d", "4");
    ASSERT_TRUE(!has(c, "b", NULL));
    ASSERT_TRUE(has(c, "c", NULL) && has(c, "d", NULL) && has(c, "a", NULL));
    /* Now the order is (oldest first) c, d, a; two inserts push out c and d. */
    put(c, "e", "5");
    put(c, "f", "6");
    ASSERT_TRUE(!has(c, "c", NULL) && !has(c, "d", NULL));
    ASSERT_TRUE(has(c, "a", NULL) && has(c, "e", NULL) && has(c, "f", NULL));
    enrich_cache_stats(c, &st);
    ASSERT_EQ_INT(st.entries, 3);
    ASSERT_EQ_INT(st.evictions, 3);
    ASSERT_EQ_INT(st.misses, 3);
    ASSERT_EQ_INT(st.hits, 7);
    enrich_cache_destroy(c);
}

static void test_cache_put_replaces_and_refreshes(void)
{
    struct enrich_cache *c = NULL;
    struct enrich_cache_stats st;
    char val[64];

    ASSERT_OK(enrich_cache_create(2, 1, &c), NULL);
    put(c, "a", "1");
    put(c, "b", "2");
    put(c, "a", "one, longer");
    enrich_cache_stats(c, &st);
    ASSERT_EQ_INT(st.entries, 2);
    /* The replacement made a the most recent: c evicts b. */
    put(c, "c", "3");
    ASSERT_TRUE(has(c, "a", val));
    ASSERT_EQ_STR(val, "one, longer");
    ASSERT_TRUE(!has(c, "b", NULL));
    /* Keys are exact bytes: a prefix or a longer key is another key. */
    ASSERT_TRUE(!has(c, "", NULL));
    ASSERT_TRUE(!has(c, "aa", NULL));
    enrich_cache_destroy(c);
}

static void test_cache_value_larger_than_buffer_is_a_miss(void)
{
    struct enrich_cache *c = NULL;
    char small[4];
    size_t len = 0;

    ASSERT_OK(enrich_cache_create(4, 1, &c), NULL);
    put(c, "k", "a value of many bytes");
    ASSERT_TRUE(!enrich_cache_get(c, "k", 1, small, sizeof(small), &len));
    ASSERT_TRUE(has(c, "k", NULL));
    enrich_cache_destroy(c);
}

static void test_cache_shards_hold_capacity_in_total(void)
{
    struct enrich_cache *c = NULL;
    struct enrich_cache_stats st;
    char key[32];
    size_t n_hits = 0;

    ASSERT_OK(enrich_cache_create(100, 8, &c), NULL);
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "agent %d", i);
        put(c, key, "v");
    }
    enrich_cache_stats(c, &st);
    ASSERT_EQ_INT(st.entries, 100);
    ASSERT_EQ_INT(st.evictions, 4900);
    ASSERT_TRUE(st.bytes > 100 * strlen("agent 4999"));
    /* The newest keys are the ones kept (each shard keeps its own newest). */
    for (int i = 4900; i < 5000; i++) {
        snprintf(key, sizeof(key), "agent %d", i);
        n_hits += has(c, key, NULL) ? 1 : 0;
    }
    ASSERT_TRUE(n_hits >= 50);
    enrich_cache_destroy(c);

    /* More shards than entries: the shard count shrinks to fit. */
    ASSERT_OK(enrich_cache_create(3, 64, &c), NULL);
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        put(c, key, "v");
    }
    enrich_cache_stats(c, &st);
    ASSERT_TRUE(st.entries <= 3 && st.entries >= 1);
    enrich_cache_destroy(c);
}

static void test_cache_of_capacity_zero_holds_nothing(void)
{
    struct enrich_cache *c = NULL;
    struct enrich_cache_stats st;

    ASSERT_OK(enrich_cache_create(0, 8, &c), NULL);
    put(c, "a", "1");
    ASSERT_TRUE(!has(c, "a", NULL));
    enrich_cache_stats(c, &st);
    ASSERT_EQ_INT(st.entries, 0);
    enrich_cache_destroy(c);
    enrich_cache_destroy(NULL);
}

static void test_cache_failed_allocation_leaves_it_unchanged(void)
{
    struct enrich_cache *c = NULL;
    struct enrich_cache_stats st;

    for (long n = 0;; n++) {
        int rc;

        sl_alloc_fail_after(n);
        rc = enrich_cache_create(16, 4, &c);
        sl_alloc_fail_after(-1);
        if (rc == 0) {
            break;
        }
        ASSERT_EQ_INT(rc, SL_ENOMEM);
        ASSERT_TRUE(c == NULL);
    }
    put(c, "a", "1");
    sl_alloc_fail_after(0);
    ASSERT_EQ_INT(enrich_cache_put(c, "b", 1, "2", 1), SL_ENOMEM);
    ASSERT_EQ_INT(enrich_cache_put(c, "a", 1, "3", 1), SL_ENOMEM);
    sl_alloc_fail_after(-1);
    enrich_cache_stats(c, &st);
    ASSERT_EQ_INT(st.entries, 1);
    ASSERT_TRUE(!has(c, "b", NULL));
    {
        char val[64];

        ASSERT_TRUE(has(c, "a", val));
        ASSERT_EQ_STR(val, "1");
    }
    enrich_cache_destroy(c);
}

struct worker {
    struct enrich_cache *c;
    int id;
    long n_hits;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char key[32], val[32];
    size_t len;

    for (int i = 0; i < 20000; i++) {
        int k = (i * 7 + w->id * 13) % 300;

        snprintf(key, sizeof(key), "ua-%d", k);
        if (enrich_cache_get(w->c, key, strlen(key), val, sizeof(val), &len)) {
            /* A value always belongs to its key. */
            ASSERT_TRUE(len == strlen(key) && memcmp(val, key, len) == 0);
            w->n_hits++;
        }
        else {
            ASSERT_OK(enrich_cache_put(w->c, key, strlen(key), key, strlen(key)), NULL);
        }
    }
    return NULL;
}

static void test_cache_threads_share_it(void)
{
    enum { N = 4 };
    struct enrich_cache *c = NULL;
    struct enrich_cache_stats st;
    pthread_t t[N];
    struct worker w[N];
    long hits = 0;

    ASSERT_OK(enrich_cache_create(200, 8, &c), NULL);
    for (int i = 0; i < N; i++) {
        w[i] = (struct worker){.c = c, .id = i};
        ASSERT_EQ_INT(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        hits += w[i].n_hits;
    }
    enrich_cache_stats(c, &st);
    ASSERT_EQ_INT(st.hits, hits);
    ASSERT_EQ_INT(st.hits + st.misses, N * 20000);
    ASSERT_TRUE(st.entries <= 200);
    enrich_cache_destroy(c);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_cache_evicts_least_recently_used),
        TEST_CASE(test_cache_put_replaces_and_refreshes),
        TEST_CASE(test_cache_value_larger_than_buffer_is_a_miss),
        TEST_CASE(test_cache_shards_hold_capacity_in_total),
        TEST_CASE(test_cache_of_capacity_zero_holds_nothing),
        TEST_CASE(test_cache_failed_allocation_leaves_it_unchanged),
        TEST_CASE(test_cache_threads_share_it),
        {NULL, NULL},
    };

    return test_main(argc, argv, cases);
}

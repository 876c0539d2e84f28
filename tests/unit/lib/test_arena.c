/*
 * Tests lib/arena.c: aligned pieces that do not overlap, growth past the first chunk and
 * pieces bigger than a chunk, ownership by address, allocation failures, and jansson's
 * allocations routed into an arena only on the thread and in the window that asked.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "alloc.h"
#include "arena.h"
#include "test.h"

static void test_arena_pieces_are_aligned_and_distinct(void)
{
    struct sl_arena a;
    unsigned char *prev = NULL;

    sl_arena_init(&a, 64);
    for (size_t i = 0; i < 1000; i++) {
        unsigned char *p = sl_arena_alloc(&a, i % 37);

        ASSERT_TRUE(p != NULL);
        ASSERT_EQ_INT((uintptr_t)p % 16, 0);
        ASSERT_TRUE(sl_arena_owns(&a, p));
        memset(p, (int)(i & 0xff), i % 37);
        if (prev != NULL) {
            ASSERT_TRUE(p != prev);
        }
        prev = p;
    }
    sl_arena_fini(&a);
    ASSERT_TRUE(!sl_arena_owns(&a, prev));
}

static void test_arena_big_pieces_and_reuse(void)
{
    struct sl_arena a;
    unsigned char *big;
    unsigned char *small;
    int local = 0;

    sl_arena_init(&a, 0);
    small = sl_arena_alloc(&a, 10);
    big = sl_arena_alloc(&a, 1 << 20);
    ASSERT_TRUE(small != NULL && big != NULL);
    memset(big, 1, 1 << 20);
    ASSERT_TRUE(sl_arena_owns(&a, big + (1 << 20) - 1));
    ASSERT_TRUE(sl_arena_owns(&a, small));
    ASSERT_TRUE(!sl_arena_owns(&a, &local));
    ASSERT_TRUE(sl_arena_alloc(&a, SIZE_MAX - 3) == NULL);
    sl_arena_fini(&a);
    /* Empty again, usable again. */
    ASSERT_TRUE(sl_arena_alloc(&a, 100) != NULL);
    sl_arena_fini(&a);
    sl_arena_fini(&a);
}

static void test_arena_alloc_failure(void)
{
    struct sl_arena a;

    sl_arena_init(&a, 4096);
    sl_alloc_fail_after(0);
    ASSERT_TRUE(sl_arena_alloc(&a, 16) == NULL);
    sl_alloc_fail_after(-1);
    ASSERT_TRUE(sl_arena_alloc(&a, 16) != NULL);
    /* The chunk has room: no allocation needed. */
    sl_alloc_fail_after(0);
    ASSERT_TRUE(sl_arena_alloc(&a, 16) != NULL);
    ASSERT_TRUE(sl_arena_alloc(&a, 8192) == NULL);
    sl_alloc_fail_after(-1);
    sl_arena_fini(&a);
}

static void *parse_on_other_thread(void *arg)
{
    json_t **out = arg;

    *out = json_loads("{\"a\":[1,2,\"three\"]}", 0, NULL);
    return NULL;
}

static void test_arena_routes_jansson_in_window_only(void)
{
    struct sl_arena a;
    json_t *before = json_loads("{\"x\":\"before\"}", 0, NULL);
    json_t *in;
    json_t *other = NULL;
    json_t *after;
    pthread_t t;

    ASSERT_TRUE(before != NULL);
    sl_arena_init(&a, 0);
    sl_arena_use(&a);
    in = json_loads("{\"k\":{\"v\":[true,null,\"s\"]}}", 0, NULL);
    ASSERT_TRUE(in != NULL);
    ASSERT_TRUE(sl_arena_owns(&a, in));
    ASSERT_TRUE(sl_arena_owns(&a, json_object_get(in, "k")));
    ASSERT_TRUE(!sl_arena_owns(&a, before));
    /* Another thread allocates as before, arena or not. */
    ASSERT_EQ_INT(pthread_create(&t, NULL, parse_on_other_thread, &other), 0);
    ASSERT_EQ_INT(pthread_join(t, NULL), 0);
    ASSERT_TRUE(other != NULL && !sl_arena_owns(&a, other));
    /* Freeing memory from before the window inside it frees it for real (else a leak). */
    json_decref(before);
    json_decref(in);
    sl_arena_use(NULL);
    sl_arena_fini(&a);
    after = json_loads("[1]", 0, NULL);
    ASSERT_TRUE(after != NULL);
    json_decref(after);
    json_decref(other);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_arena_pieces_are_aligned_and_distinct),
        TEST_CASE(test_arena_big_pieces_and_reuse),
        TEST_CASE(test_arena_alloc_failure),
        TEST_CASE(test_arena_routes_jansson_in_window_only),
        {NULL, NULL},
    };

    sl_alloc_init_jansson();
    return test_main(argc, argv, cases);
}

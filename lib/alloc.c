/* Allocation wrappers with an injectable failure point for tests. */
#include "alloc.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

/* GLOBAL: allocations left before failures start; -1 means never fail. Written only by
 * tests through sl_alloc_fail_after, read by every allocation (atomic). */
static atomic_long fail_countdown = -1;

static int should_fail(void)
{
    long left = atomic_load_explicit(&fail_countdown, memory_order_relaxed);

    if (left < 0) {
        return 0;
    }
    if (left == 0) {
        return 1;
    }
    atomic_fetch_sub_explicit(&fail_countdown, 1, memory_order_relaxed);
    return 0;
}

void sl_alloc_fail_after(long n)
{
    atomic_store(&fail_countdown, n < 0 ? -1 : n);
}

void *sl_malloc(size_t size)
{
    return should_fail() ? NULL : malloc(size);
}

void *sl_calloc(size_t n, size_t size)
{
    return should_fail() ? NULL : calloc(n, size);
}

void *sl_realloc(void *p, size_t size)
{
    return should_fail() ? NULL : realloc(p, size);
}

char *sl_strdup(const char *s)
{
    return sl_strndup(s, strlen(s));
}

char *sl_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *out = sl_malloc(len + 1);

    if (out != NULL) {
        memcpy(out, s, len);
        out[len] = '\0';
    }
    return out;
}

void sl_free(void *p)
{
    free(p);
}

void sl_alloc_init_jansson(void)
{
    /* sl_malloc/sl_free unless the thread routes jansson into an arena (arena.h). */
    json_set_alloc_funcs(sl_arena_jansson_malloc, sl_arena_jansson_free);
}

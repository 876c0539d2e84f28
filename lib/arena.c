/*
 * The bump arena (see arena.h): chunks in a list, newest first, each at least twice the
 * one before, so a request that outgrows its first guess needs few of them and checking
 * whether a pointer is ours walks a short list. A piece too big for the next chunk gets a
 * chunk of its own.
 */
#include "arena.h"

#include <assert.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>

#include "alloc.h"

/* Under AddressSanitizer a chunk's room is poisoned until handed out, so that jansson
 * reading or writing past a piece is caught as it would be with malloc. */
#if defined(__SANITIZE_ADDRESS__)
#define HAS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAS_ASAN 1
#endif
#endif
#ifdef HAS_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define ALIGN 16
#define MIN_CHUNK 4096

struct sl_arena_chunk {
    struct sl_arena_chunk *next;
    size_t used; /* bytes of data handed out */
    size_t cap;  /* bytes of data */
    alignas(ALIGN) unsigned char data[];
};

/* GLOBAL: the arena jansson allocates from on this thread, or NULL. Written only by its own
 * thread through sl_arena_use; thread-local, so no lock. */
static _Thread_local struct sl_arena *current;

void sl_arena_init(struct sl_arena *a, size_t first_bytes)
{
    a->_head = NULL;
    a->_next_bytes = first_bytes < MIN_CHUNK ? MIN_CHUNK : first_bytes;
}

void sl_arena_fini(struct sl_arena *a)
{
    struct sl_arena_chunk *c = a->_head;

    while (c != NULL) {
        struct sl_arena_chunk *next = c->next;

        UNPOISON(c->data, c->cap);
        sl_free(c);
        c = next;
    }
    a->_head = NULL;
}

void *sl_arena_alloc(struct sl_arena *a, size_t size)
{
    struct sl_arena_chunk *c = a->_head;
    size_t need = (size + (ALIGN - 1)) & ~(size_t)(ALIGN - 1);
    size_t cap;
    void *p;

    /* Even an empty piece takes room, so that sl_arena_owns knows it. */
    if (size == 0) {
        need = ALIGN;
    }
    if (need < size) {
        return NULL;
    }
    if (c == NULL || c->cap - c->used < need) {
        cap = a->_next_bytes;
        if (cap < need) {
            cap = need;
        }
        if (cap > SIZE_MAX - sizeof(*c)) {
            return NULL;
        }
        c = sl_malloc(sizeof(*c) + cap);
        if (c == NULL) {
            return NULL;
        }
        c->used = 0;
        c->cap = cap;
        c->next = a->_head;
        a->_head = c;
        POISON(c->data, cap);
        if (a->_next_bytes <= SIZE_MAX / 4) {
            a->_next_bytes *= 2;
        }
    }
    p = c->data + c->used;
    c->used += need;
    UNPOISON(p, size);
    return p;
}

bool sl_arena_owns(const struct sl_arena *a, const void *p)
{
    uintptr_t u = (uintptr_t)p;

    for (const struct sl_arena_chunk *c = a->_head; c != NULL; c = c->next) {
        if (u >= (uintptr_t)c->data && u < (uintptr_t)(c->data + c->used)) {
            return true;
        }
    }
    return false;
}

void sl_arena_use(struct sl_arena *a)
{
    assert(a == NULL || current == NULL); /* one window at a time */
    current = a;
}

void *sl_arena_jansson_malloc(size_t size)
{
    struct sl_arena *a = current;

    return a != NULL ? sl_arena_alloc(a, size) : sl_malloc(size);
}

void sl_arena_jansson_free(void *p)
{
    struct sl_arena *a = current;

    if (p == NULL || (a != NULL && sl_arena_owns(a, p))) {
        return;
    }
    sl_free(p);
}

/*
 * A bump arena for short-lived allocations, and a per-thread switch that routes jansson's
 * allocations into one. Memory comes in chunks from sl_malloc (so sl_alloc_fail_after
 * reaches it); sl_arena_alloc hands out 16-byte-aligned pieces; nothing is freed alone,
 * everything at once by sl_arena_fini.
 *
 * jansson's allocation functions are process-wide (sl_alloc_init_jansson installs
 * sl_arena_jansson_malloc/free). While a thread has an arena in use (sl_arena_use), the
 * jansson allocations of that thread come from it and jansson's frees of its memory do
 * nothing; every other thread, and this one outside the window, allocates as before. So
 * between sl_arena_use(a) and sl_arena_use(NULL) a thread may build a jansson tree whose
 * memory dies with the arena: nothing jansson allocated in the window may outlive
 * sl_arena_fini. One arena, one thread.
 */
#ifndef SLUICE_LIB_ARENA_H
#define SLUICE_LIB_ARENA_H

#include <stdbool.h>
#include <stddef.h>

struct sl_arena_chunk;

/* Caller-provided storage (embed it or put it on the stack); fields private. */
struct sl_arena {
    struct sl_arena_chunk *_head; /* the chunk being filled; older ones follow */
    size_t _next_bytes;           /* size of the next chunk */
};

/* Prepares an empty arena whose first chunk will hold first_bytes. Does not allocate. */
void sl_arena_init(struct sl_arena *a, size_t first_bytes);

/* Frees every chunk; the arena is empty after and may be used again. Accepts an empty one. */
void sl_arena_fini(struct sl_arena *a);

/* size bytes aligned to 16, valid until sl_arena_fini; NULL when memory ran out. */
void *sl_arena_alloc(struct sl_arena *a, size_t size);

/* Whether p points into memory a handed out. Never fails. */
bool sl_arena_owns(const struct sl_arena *a, const void *p);

/*
 * Routes the calling thread's jansson allocations into a (borrowed) until called with
 * NULL. The caller keeps a alive and calls sl_arena_use(NULL) before sl_arena_fini.
 */
void sl_arena_use(struct sl_arena *a);

/* jansson's allocation functions (see above): sl_malloc/sl_free outside the window. */
void *sl_arena_jansson_malloc(size_t size);
void sl_arena_jansson_free(void *p);

#endif

/*
 * Thin allocation wrappers. Every module allocates through these so a test build can
 * fail the Nth allocation (sl_alloc_fail_after) and check the failure paths.
 */
#ifndef SLUICE_LIB_ALLOC_H
#define SLUICE_LIB_ALLOC_H

#include <stddef.h>

/* As malloc/calloc/realloc/strdup/strndup/free. Return NULL on failure; thread-safe. */
void *sl_malloc(size_t size);
void *sl_calloc(size_t n, size_t size);
void *sl_realloc(void *p, size_t size);
char *sl_strdup(const char *s);
char *sl_strndup(const char *s, size_t n);
void sl_free(void *p);

/*
 * Test hook: the next n allocations succeed, every one after fails, until called again
 * with n < 0 (the default: never fail). Meant for single-threaded tests.
 */
void sl_alloc_fail_after(long n);

/* Routes jansson's allocations through these wrappers. Call once before threads start.
 * (By way of arena.h's jansson functions, so a thread can send them into an arena.) */
void sl_alloc_init_jansson(void);

#endif

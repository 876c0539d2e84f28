/*
 * A bounded LRU cache of byte strings: values copied in and out, keyed by the exact bytes of
 * a key (the enrichment facade keys user-agent results by the user-agent string, because real
 * traffic repeats a few thousand strings millions of times).
 *
 * It holds at most `capacity` entries; inserting past that evicts the least recently used.
 * Keys and values are copied, so callers keep nothing alive. The cache is split into shards
 * (a power of two, each with its own mutex, hash table and LRU list, picked by the key's
 * hash) so threads rarely wait on each other; eviction is least-recently-used within a
 * shard. With one shard the order is exact LRU. Any thread may call every function except
 * destroy.
 */
#ifndef SLUICE_WORKERS_ENRICHMENT_CACHE_H
#define SLUICE_WORKERS_ENRICHMENT_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct enrich_cache;

struct enrich_cache_stats {
    uint64_t hits;
    uint64_t misses;
    uint64_t evictions;
    size_t entries;     /* now held */
    size_t bytes;       /* now held: keys, values and per-entry overhead */
};

/*
 * Creates an empty cache of at most capacity entries (0: a cache that holds nothing) in
 * n_shards shards (rounded down to a power of two, at least 1, at most capacity).
 * Returns 0 and the cache in *out (returns new; free with enrich_cache_destroy), or
 * SL_ENOMEM with *out NULL.
 */
int enrich_cache_create(size_t capacity, size_t n_shards, struct enrich_cache **out);

/* Frees every entry and the cache. Accepts NULL. No other thread may be using it. */
void enrich_cache_destroy(struct enrich_cache *c);

/*
 * Looks key[0..key_len) up (borrowed). On a hit whose value fits val_cap bytes, copies it to
 * val, sets *val_len, marks the entry most recently used and returns true; otherwise returns
 * false and leaves val alone. Never fails.
 */
bool enrich_cache_get(struct enrich_cache *c, const char *key, size_t key_len, void *val,
                      size_t val_cap, size_t *val_len);

/*
 * Stores a copy of val[0..val_len) under a copy of key[0..key_len) (both borrowed) as the
 * most recently used entry, replacing a value already there and evicting the least recently
 * used entry of the shard when it is full. Returns 0, or SL_ENOMEM when the entry could not
 * be allocated (the cache is unchanged). With capacity 0 it stores nothing and returns 0.
 */
int enrich_cache_put(struct enrich_cache *c, const char *key, size_t key_len, const void *val,
                     size_t val_len);

/* Adds up the shards' counters. Never fails. */
void enrich_cache_stats(struct enrich_cache *c, struct enrich_cache_stats *out);

#endif

/*
 * The LRU cache: per shard a chained hash table (buckets >= capacity, so chains stay short)
 * and a doubly linked list from most to least recently used. An entry is one allocation
 * holding its key and value. Allocation and freeing happen outside the shard's lock.
 */
#include "cache.h"

#include <pthread.h>
#include <string.h>

#include "alloc.h"
#include "enrich_int.h"
#include "err.h"

struct entry {
    struct entry *prev;  /* toward the most recently used */
    struct entry *next;  /* toward the least recently used */
    struct entry *chain; /* next entry of the same bucket */
    uint64_t hash;
    uint32_t key_len;
    uint32_t val_len;
    char data[];         /* key bytes, then value bytes */
};

struct shard {
    pthread_mutex_t lock;
    struct entry **buckets;
    size_t mask;         /* buckets - 1 */
    struct entry *head;  /* most recently used */
    struct entry *tail;  /* least recently used */
    size_t n;
    size_t cap;
    size_t bytes;
    uint64_t hits;
    uint64_t misses;
    uint64_t evictions;
    /* Keeps shards on their own cache lines so their locks do not share one. */
    char pad[64];
};

struct enrich_cache {
    struct shard *shards;
    size_t n_shards;     /* a power of two; 0 for a cache that holds nothing */
};

static size_t round_down_pow2(size_t n)
{
    size_t p = 1;

    while (p * 2 <= n) {
        p *= 2;
    }
    return p;
}

int enrich_cache_create(size_t capacity, size_t n_shards, struct enrich_cache **out)
{
    struct enrich_cache *c = sl_calloc(1, sizeof(*c));

    *out = NULL;
    if (c == NULL) {
        return SL_ENOMEM;
    }
    if (capacity == 0) {
        *out = c;
        return 0;
    }
    n_shards = round_down_pow2(n_shards == 0 ? 1 : n_shards);
    while (n_shards > capacity) {
        n_shards /= 2;
    }
    c->shards = sl_calloc(n_shards, sizeof(*c->shards));
    if (c->shards == NULL) {
        sl_free(c);
        return SL_ENOMEM;
    }
    c->n_shards = n_shards;
    for (size_t s = 0; s < n_shards; s++) {
        struct shard *sh = &c->shards[s];
        /* The remainder goes to the first shards so the total is exactly capacity. */
        size_t cap = capacity / n_shards + (s < capacity % n_shards ? 1 : 0);
        size_t n_buckets = round_down_pow2(cap) * 2;

        pthread_mutex_init(&sh->lock, NULL);
        sh->cap = cap;
        sh->mask = n_buckets - 1;
        sh->buckets = sl_calloc(n_buckets, sizeof(*sh->buckets));
        if (sh->buckets == NULL) {
            enrich_cache_destroy(c);
            return SL_ENOMEM;
        }
    }
    *out = c;
    return 0;
}

void enrich_cache_destroy(struct enrich_cache *c)
{
    if (c == NULL) {
        return;
    }
    for (size_t s = 0; s < c->n_shards; s++) {
        struct shard *sh = &c->shards[s];
        struct entry *e = sh->head;

        while (e != NULL) {
            struct entry *next = e->next;

            sl_free(e);
            e = next;
        }
        sl_free(sh->buckets);
        pthread_mutex_destroy(&sh->lock);
    }
    sl_free(c->shards);
    sl_free(c);
}

static struct shard *shard_of(struct enrich_cache *c, uint64_t hash)
{
    /* High bits pick the shard, low bits the bucket, so the two stay independent. */
    return &c->shards[(hash >> 48) & (c->n_shards - 1)];
}

static struct entry **find_slot(struct shard *sh, uint64_t hash, const char *key, size_t key_len)
{
    struct entry **slot = &sh->buckets[hash & sh->mask];

    while (*slot != NULL) {
        struct entry *e = *slot;

        if (e->hash == hash && e->key_len == key_len && memcmp(e->data, key, key_len) == 0) {
            break;
        }
        slot = &e->chain;
    }
    return slot;
}

static void list_unlink(struct shard *sh, struct entry *e)
{
    if (e->prev != NULL) {
        e->prev->next = e->next;
    }
    else {
        sh->head = e->next;
    }
    if (e->next != NULL) {
        e->next->prev = e->prev;
    }
    else {
        sh->tail = e->prev;
    }
    e->prev = NULL;
    e->next = NULL;
}

static void list_push_front(struct shard *sh, struct entry *e)
{
    e->prev = NULL;
    e->next = sh->head;
    if (sh->head != NULL) {
        sh->head->prev = e;
    }
    sh->head = e;
    if (sh->tail == NULL) {
        sh->tail = e;
    }
}

static size_t entry_bytes(const struct entry *e)
{
    return sizeof(*e) + e->key_len + e->val_len;
}

bool enrich_cache_get(struct enrich_cache *c, const char *key, size_t key_len, void *val,
                      size_t val_cap, size_t *val_len)
{
    uint64_t hash;
    struct shard *sh;
    struct entry *e;
    bool is_hit = false;

    if (c->n_shards == 0) {
        return false;
    }
    hash = enrich_hash64(key, key_len);
    sh = shard_of(c, hash);
    pthread_mutex_lock(&sh->lock);
    e = *find_slot(sh, hash, key, key_len);
    if (e != NULL && e->val_len <= val_cap) {
        if (sh->head != e) {
            list_unlink(sh, e);
            list_push_front(sh, e);
        }
        memcpy(val, e->data + e->key_len, e->val_len);
        *val_len = e->val_len;
        is_hit = true;
        sh->hits++;
    }
    else {
        sh->misses++;
    }
    pthread_mutex_unlock(&sh->lock);
    return is_hit;
}

int enrich_cache_put(struct enrich_cache *c, const char *key, size_t key_len, const void *val,
                     size_t val_len)
{
    struct entry *e = NULL, *old = NULL, *evicted = NULL;
    struct entry **slot;
    struct shard *sh;
    uint64_t hash;

    if (c->n_shards == 0) {
        return 0;
    }
    if (key_len > UINT32_MAX || val_len > UINT32_MAX) {
        return SL_EINVAL;
    }
    hash = enrich_hash64(key, key_len);
    e = sl_malloc(sizeof(*e) + key_len + val_len);
    if (e == NULL) {
        return SL_ENOMEM;
    }
    e->hash = hash;
    e->key_len = (uint32_t)key_len;
    e->val_len = (uint32_t)val_len;
    e->chain = NULL;
    memcpy(e->data, key, key_len);
    memcpy(e->data + key_len, val, val_len);

    sh = shard_of(c, hash);
    pthread_mutex_lock(&sh->lock);
    slot = find_slot(sh, hash, key, key_len);
    if (*slot != NULL) {
        old = *slot;
        e->chain = old->chain;
        *slot = e;
        list_unlink(sh, old);
        sh->bytes -= entry_bytes(old);
        sh->n--;
    }
    else {
        *slot = e;
    }
    list_push_front(sh, e);
    sh->bytes += entry_bytes(e);
    sh->n++;
    if (sh->n > sh->cap) {
        struct entry **victim_slot;

        evicted = sh->tail;
        victim_slot = find_slot(sh, evicted->hash, evicted->data, evicted->key_len);
        *victim_slot = evicted->chain;
        list_unlink(sh, evicted);
        sh->bytes -= entry_bytes(evicted);
        sh->n--;
        sh->evictions++;
    }
    pthread_mutex_unlock(&sh->lock);
    sl_free(old);
    sl_free(evicted);
    return 0;
}

void enrich_cache_stats(struct enrich_cache *c, struct enrich_cache_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t s = 0; s < c->n_shards; s++) {
        struct shard *sh = &c->shards[s];

        pthread_mutex_lock(&sh->lock);
        out->hits += sh->hits;
        out->misses += sh->misses;
        out->evictions += sh->evictions;
        out->entries += sh->n;
        out->bytes += sh->bytes;
        pthread_mutex_unlock(&sh->lock);
    }
}

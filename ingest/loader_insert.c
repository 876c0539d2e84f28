/*
 * One batch into ClickHouse: encoding the messages in chunks that fit the row buffer (each
 * row enriched inline when its tenant's tier has enrichment on), inserting each chunk, and
 * when ClickHouse rejects the data, bisecting the chunk down to the rows it refuses; then
 * counting what a released batch did.
 */
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "dlq.h"
#include "loader_int.h"
#include "log.h"

#define COMPONENT "loader"

void ingest_loader_items_reset(struct loader_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sl_free(items[i].reason);
        items[i].reason = NULL;
        items[i].fate = LOADER_LIVE;
    }
}

/* Marks items[i] dead with "what: msg"; a failed copy keeps a static reason. */
static void mark_dead(struct loader_item *it, enum loader_fate fate, const char *what,
                      const char *msg)
{
    size_t len = strlen(what) + strlen(msg) + 3;
    char *reason = sl_malloc(len);

    if (reason != NULL) {
        snprintf(reason, len, "%s: %s", what, msg);
    }
    sl_free(it->reason);
    it->reason = reason;
    it->fate = fate;
}

/* The rows module's enrichment callback: the tenant's policy (cached), then the lookup. */
static bool enrich_row(void *user, const char *tenant_id, const char *ip, const char *agent,
                       const json_t *client_hints, struct enrich_result *out)
{
    struct ingest_loader *l = user;
    struct ingest_policy_tenant policy = {.has_enrichment = true};
    struct enrich_hints hints;

    if (l->policy != NULL) {
        struct sl_err e;

        sl_err_clear(&e);
        if (ingest_policy_get(l->policy, tenant_id, ingest_loader_now_ms(), &policy, &e) != 0) {
            /* The tier cannot be read and was never cached: enrich, as every built-in tier
             * does, rather than hold the partition up on the tenant store. */
            uint64_t k = ++l->n_policy_errors;

            if ((k & (k - 1)) == 0) {
                sl_log_warn(COMPONENT, "tenant store failure #%llu reading %s's tier (enriching "
                            "anyway): %s", (unsigned long long)k, tenant_id, e.msg);
            }
        }
    }
    if (!policy.has_enrichment) {
        atomic_fetch_add(&l->n_not_enriched, 1);
        sl_metrics_counter_add(l->m_not_enriched, 1);
        return false;
    }
    /* The edge checked the hints parse; a message from elsewhere that does not is enriched
     * from its agent alone. */
    enrich_hints_init(&hints);
    if (client_hints != NULL && enrich_hints_from_json(&hints, client_hints, NULL) != 0) {
        enrich_hints_init(&hints);
    }
    /* Out of memory still fills every column (the agent's maybe "Other"); counted there. */
    enrich_lookup(l->enrich, ip, agent, enrich_hints_is_empty(&hints) ? NULL : &hints, out);
    atomic_fetch_add(&l->n_enriched, 1);
    sl_metrics_counter_add(l->m_enriched, 1);
    return true;
}

/* Looks at the GeoIP files between batches (the library's interval decides how often). */
static void reload_enrichment(struct ingest_loader *l)
{
    struct sl_err e;

    sl_err_clear(&e);
    if (enrich_reload(l->enrich, ingest_loader_wall_ms() / 1000, false, &e) != 0) {
        /* A broken file is reported once (until it changes); the old data keeps serving. */
        sl_log_warn(COMPONENT, "enrichment data not reloaded, the previous version serves: %s",
                    e.msg);
    }
}

static int grow_rows(struct ingest_loader *l, size_t n)
{
    size_t *item, *off;

    if (n <= l->row_cap) {
        return 0;
    }
    item = sl_realloc(l->row_item, n * sizeof(*item));
    if (item == NULL) {
        return SL_ENOMEM;
    }
    l->row_item = item;
    off = sl_realloc(l->row_off, n * sizeof(*off));
    if (off == NULL) {
        return SL_ENOMEM;
    }
    l->row_off = off;
    l->row_cap = n;
    return 0;
}

/* Inserts encoded rows [lo, hi) of the chunk, bisecting when ClickHouse rejects the data. */
static int insert_rows(struct ingest_loader *l, struct loader_item *items, size_t lo, size_t hi,
                       struct sl_err *err)
{
    size_t off = l->row_off[lo];
    size_t mid;
    struct sl_err e;
    int rc;

    sl_err_clear(&e);
    rc = sl_ch_insert(l->ch, l->insert_sql, l->rows.data + off, l->row_off[hi] - off, &e);
    if (rc == 0) {
        return 0;
    }
    atomic_fetch_add(&l->n_insert_errors, 1);
    if (!ingest_dlq_is_rejection(rc, &e)) {
        sl_metrics_counter_add(l->m_err_transient, 1);
        if (err != NULL) {
            *err = e;
        }
        return rc;
    }
    sl_metrics_counter_add(l->m_err_rejected, 1);
    if (hi - lo == 1) {
        mark_dead(&items[l->row_item[lo]], LOADER_DEAD_REJECTED, "rejected by ClickHouse",
                  e.msg);
        return 0;
    }
    sl_log_debug(COMPONENT, "ClickHouse rejected %zu rows (%s); bisecting", hi - lo, e.msg);
    mid = lo + (hi - lo) / 2;
    rc = insert_rows(l, items, lo, mid, err);
    if (rc == 0) {
        rc = insert_rows(l, items, mid, hi, err);
    }
    return rc;
}

int ingest_loader_load(struct ingest_loader *l, struct loader_item *items, size_t n,
                       struct sl_err *err)
{
    int64_t version = ingest_loader_wall_ms();
    size_t i = 0;
    int rc;

    if (grow_rows(l, n + 1) != 0) {
        return sl_err_set(err, SL_ENOMEM, "out of memory encoding %zu rows", n);
    }
    if (l->enrich != NULL) {
        reload_enrichment(l);
    }
    while (i < n) {
        size_t n_rows = 0;

        sl_ch_buf_reset(&l->rows);
        for (; i < n; i++) {
            struct sl_err e;
            size_t before = l->rows.len;

            if (items[i].fate != LOADER_LIVE) {
                continue;
            }
            sl_err_clear(&e);
            rc = ingest_rows_append_enriched(&l->rows, items[i].value, items[i].value_len,
                                             version, l->enrich != NULL ? enrich_row : NULL, l,
                                             &e);
            if (rc == 0) {
                l->row_off[n_rows] = before;
                l->row_item[n_rows] = i;
                n_rows++;
            }
            else if (rc == SL_EBUSY && n_rows > 0) {
                break; /* the chunk is full: insert it, then go on from this message */
            }
            else if (rc == SL_EINVAL) {
                mark_dead(&items[i], LOADER_DEAD_ENCODE, "cannot encode", e.msg);
            }
            else {
                /* Memory ran out: the message may be fine, so retry the batch later. */
                return sl_err_set(err, rc == SL_ENOMEM ? SL_ENOMEM : rc,
                                  "cannot encode a row: %s", e.msg);
            }
        }
        l->row_off[n_rows] = l->rows.len;
        sl_log_debug(COMPONENT, "encoded %zu rows (%zu bytes)", n_rows, l->rows.len);
        if (n_rows > 0) {
            rc = insert_rows(l, items, 0, n_rows, err);
            if (rc != 0) {
                return rc;
            }
        }
    }
    return 0;
}

void ingest_loader_count_batch(struct ingest_loader *l, const struct loader_item *items,
                               size_t n, double seconds)
{
    uint64_t live = 0, dead = 0;
    uint64_t before;

    for (size_t i = 0; i < n; i++) {
        if (items[i].fate == LOADER_LIVE) {
            live++;
            continue;
        }
        dead++;
        sl_metrics_counter_add(items[i].fate == LOADER_DEAD_ENCODE ? l->m_dead_encode
                                                                   : l->m_dead_rejected,
                               1);
    }
    atomic_fetch_add(&l->n_rows, live);
    atomic_fetch_add(&l->n_batches, 1);
    before = atomic_fetch_add(&l->n_dead, dead);
    sl_metrics_counter_add(l->m_rows, live);
    sl_metrics_counter_add(l->m_batches, 1);
    sl_metrics_histogram_observe(l->m_batch_s, seconds);
    pthread_mutex_lock(&l->lock);
    l->last_batch_s = seconds;
    pthread_mutex_unlock(&l->lock);
    sl_log_debug(COMPONENT, "batch of %zu events released: %llu rows loaded, %llu dead, %.3f s",
                 n, (unsigned long long)live, (unsigned long long)dead, seconds);
    /* A sampled line per dead letter (the 1st, 2nd, 4th, 8th, ...); counters have all. */
    for (size_t i = 0, k = (size_t)before; i < n; i++) {
        if (items[i].fate == LOADER_LIVE) {
            continue;
        }
        k++;
        if ((k & (k - 1)) == 0) {
            sl_log_warn(COMPONENT, "dead letter #%zu: %s", k,
                        items[i].reason != NULL ? items[i].reason : "(no reason)");
        }
    }
}

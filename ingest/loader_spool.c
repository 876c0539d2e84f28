/*
 * The loader in spool mode (no broker, the embedded default): the only reader of the edge's
 * spool, in the same process. It waits until SLUICE_LOADER_BATCH_ROWS records are pending
 * or the first one waited SLUICE_LOADER_BATCH_AGE_MS, reads a batch (at most that many
 * records and SLUICE_LOADER_BATCH_BYTES), inserts it, and commits the spool cursor past it
 * only after ClickHouse acknowledged the rows: a crash before that reads the batch again.
 *
 * Dead letters: there is no dead-letter topic without a broker, so a record that can never
 * load (the encoder refuses it, ClickHouse rejects its row, or it does not even decode as a
 * spool record) is appended with its reason to <spool_dir>/dead-letters/dead-letters.jsonl
 * (fsync'ed) before the cursor moves past it, counted in sluice_loader_dead_letters_total,
 * and the rest of the batch loads. `sluice dlq list|replay` read that file.
 *
 * While ClickHouse is down the batch is kept in memory and retried behind the breaker; the
 * spool keeps taking events (the edge answers 503 only when it is full).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "dlq.h"
#include "loader_int.h"
#include "log.h"
#include "queue.h"
#include "spool.h"

#define COMPONENT "loader"
#define TENANT_MAX 256
#define READ_RETRY_MS 1000
#define IDLE_WAIT_MS 100

struct spool_batch {
    struct ingest_spool_batch sb;
    struct loader_item *items;
    size_t cap;
    bool has_batch;
    bool is_inserted;
    int64_t started_ms;
    int64_t first_seen_ms; /* when records were first seen pending; 0 if none */
    uint64_t n_read_errors;
};

/* Fills items from the records just read; an undecodable record is dead at once. */
static int decode_batch(struct spool_batch *b)
{
    if (b->sb.n > b->cap) {
        struct loader_item *items = sl_realloc(b->items, b->sb.n * sizeof(*items));

        if (items == NULL) {
            return SL_ENOMEM;
        }
        b->items = items;
        b->cap = b->sb.n;
    }
    for (size_t i = 0; i < b->sb.n; i++) {
        struct ingest_producer_msg m;
        char tenant[TENANT_MAX];

        b->items[i] = (struct loader_item){.fate = LOADER_LIVE};
        if (ingest_queue_decode(b->sb.recs[i].data, b->sb.recs[i].len, &m, tenant,
                                sizeof(tenant)) != 0) {
            b->items[i].fate = LOADER_DEAD_ENCODE;
            b->items[i].reason = sl_strdup("cannot decode: not a spool record of this version");
            continue;
        }
        b->items[i].value = m.value;
        b->items[i].value_len = m.value_len;
    }
    return 0;
}

/* Appends the batch's dead letters to the dead-letter file. */
static int write_dead_letters(struct ingest_loader *l, struct spool_batch *b,
                              struct sl_err *err)
{
    struct ingest_dlq_record *recs = NULL;
    char (*tenants)[TENANT_MAX] = NULL;
    struct timespec now;
    size_t n_dead = 0, k = 0;
    int rc;

    for (size_t i = 0; i < b->sb.n; i++) {
        n_dead += b->items[i].fate != LOADER_LIVE;
    }
    if (n_dead == 0) {
        return 0;
    }
    recs = sl_calloc(n_dead, sizeof(*recs));
    tenants = sl_calloc(n_dead, sizeof(*tenants));
    if (recs == NULL || tenants == NULL) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory writing %zu dead letters", n_dead);
        goto done;
    }
    clock_gettime(CLOCK_REALTIME, &now);
    for (size_t i = 0; i < b->sb.n; i++) {
        struct ingest_producer_msg m;

        if (b->items[i].fate == LOADER_LIVE) {
            continue;
        }
        recs[k] = (struct ingest_dlq_record){
            .reason = b->items[i].reason != NULL ? b->items[i].reason : "cannot load",
            .value = b->sb.recs[i].data, .value_len = b->sb.recs[i].len,
            .time_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000,
            .dlq_partition = -1};
        if (ingest_queue_decode(b->sb.recs[i].data, b->sb.recs[i].len, &m, tenants[k],
                                sizeof(tenants[k])) == 0) {
            recs[k].tenant_id = tenants[k];
            recs[k].key = m.key;
            recs[k].key_len = m.key_len;
            recs[k].value = m.value;
            recs[k].value_len = m.value_len;
        }
        k++;
    }
    rc = ingest_dlq_file_append(l->dead_letter_dir, recs, k, err);

done:
    sl_free(tenants);
    sl_free(recs);
    return rc;
}

/* Inserts, writes dead letters, commits. 0: released; else *why names the breaker state. */
static int flush(struct ingest_loader *l, struct spool_batch *b, enum ingest_loader_state *why,
                 struct sl_err *err)
{
    int rc;

    if (!b->is_inserted) {
        rc = ingest_loader_load(l, b->items, b->sb.n, err);
        if (rc != 0) {
            *why = INGEST_LOADER_CLICKHOUSE_DOWN;
            return rc;
        }
        b->is_inserted = true;
    }
    rc = write_dead_letters(l, b, err);
    if (rc != 0) {
        *why = INGEST_LOADER_DEAD_LETTERS_DOWN;
        return rc;
    }
    rc = ingest_spool_commit(l->spool, &b->sb, err);
    if (rc != 0) {
        /* Loaded but the cursor did not move: read and loaded again (the table collapses
         * the duplicates), never lost. */
        sl_log_error(COMPONENT, "cannot commit the spool cursor (%s); the batch will be "
                     "loaded again", err->msg);
        ingest_spool_rewind(l->spool);
    }
    ingest_loader_count_batch(l, b->items, b->sb.n,
                              (double)(ingest_loader_now_ms() - b->started_ms) / 1000.0);
    ingest_loader_items_reset(b->items, b->sb.n);
    b->has_batch = false;
    return 0;
}

static void update_lag(struct ingest_loader *l)
{
    struct ingest_spool_stats st;

    ingest_spool_stats(l->spool, &st);
    ingest_loader_set_lag(l, -1, (int64_t)st.records_pending);
}

/* Reads the next batch once enough is pending or the oldest waited long enough. */
static void next_batch(struct ingest_loader *l, struct spool_batch *b)
{
    struct ingest_spool_stats st;
    struct sl_err err;
    int64_t now, left;

    if (ingest_spool_wait(l->spool, IDLE_WAIT_MS) != 0) {
        b->first_seen_ms = 0;
        return;
    }
    now = ingest_loader_now_ms();
    if (b->first_seen_ms == 0) {
        b->first_seen_ms = now;
    }
    ingest_spool_stats(l->spool, &st);
    left = b->first_seen_ms + l->s.batch_age_ms - now;
    if ((int64_t)st.records_pending < l->s.batch_rows && left > 0) {
        ingest_loader_sleep(l, left < IDLE_WAIT_MS ? left : IDLE_WAIT_MS);
        return;
    }
    sl_err_clear(&err);
    if (ingest_spool_read(l->spool, &b->sb, (size_t)l->s.batch_rows, (size_t)l->s.batch_bytes,
                          &err) != 0) {
        b->n_read_errors++;
        if ((b->n_read_errors & (b->n_read_errors - 1)) == 0) {
            sl_log_error(COMPONENT, "cannot read the spool (#%llu): %s",
                         (unsigned long long)b->n_read_errors, err.msg);
        }
        ingest_loader_sleep(l, READ_RETRY_MS);
        return;
    }
    b->first_seen_ms = 0;
    if (b->sb.n == 0) {
        return;
    }
    if (decode_batch(b) != 0) {
        sl_log_error(COMPONENT, "out of memory holding a spool batch; reading it again");
        ingest_spool_rewind(l->spool);
        ingest_loader_sleep(l, READ_RETRY_MS);
        return;
    }
    b->has_batch = true;
    b->is_inserted = false;
    b->started_ms = ingest_loader_now_ms();
}

void ingest_loader_spool_run(struct ingest_loader *l)
{
    struct spool_batch b;

    memset(&b, 0, sizeof(b));
    ingest_spool_batch_init(&b.sb);
    while (!ingest_loader_is_stopping(l)) {
        enum ingest_loader_state why = INGEST_LOADER_CLICKHOUSE_DOWN;
        struct sl_err err;

        update_lag(l);
        ingest_loader_tick(l);
        if (!b.has_batch) {
            next_batch(l, &b);
            continue;
        }
        if (l->is_open) {
            if (!ingest_loader_breaker_is_due(l)) {
                ingest_loader_sleep(l, ingest_loader_breaker_wait_ms(l));
                continue;
            }
            if (ingest_loader_breaker_probe(l) != 0) {
                continue;
            }
        }
        sl_err_clear(&err);
        if (flush(l, &b, &why, &err) != 0) {
            ingest_loader_breaker_fail(l, why, &err);
        }
        else if (l->is_open) {
            ingest_loader_breaker_ok(l);
        }
    }
    if (b.has_batch && !l->is_open && ingest_loader_has_time_to_flush(l)) {
        enum ingest_loader_state why = INGEST_LOADER_CLICKHOUSE_DOWN;
        struct sl_err err;

        sl_err_clear(&err);
        if (flush(l, &b, &why, &err) != 0) {
            sl_log_info(COMPONENT, "stopping: %zu spooled events not loaded (%s) stay in the "
                        "spool", b.sb.n, err.msg);
        }
    }
    if (b.has_batch) {
        ingest_loader_items_reset(b.items, b.sb.n);
    }
    update_lag(l);
    ingest_spool_batch_fini(&b.sb);
    sl_free(b.items);
}

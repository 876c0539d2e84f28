/*
 * The loader's circuit breaker: opened by a failed insert (or dead-letter write), it pauses
 * consumption and allows one half-open attempt per backoff period, the period doubling from
 * LOADER_BACKOFF_BASE_MS up to SLUICE_LOADER_BACKOFF_MAX_MS with equal jitter. Each change
 * of state is logged once; retries in between only at debug level.
 */
#include <stdlib.h>

#include "loader_int.h"
#include "log.h"

#define COMPONENT "loader"

void ingest_loader_breaker_fail(struct ingest_loader *l, enum ingest_loader_state state,
                                const struct sl_err *err)
{
    const char *msg = err != NULL && err->msg[0] != '\0' ? err->msg : "unknown error";
    enum ingest_loader_state before = ingest_loader_get_state(l);
    int64_t delay;

    if (!l->is_open) {
        l->is_open = true;
        l->backoff_ms = LOADER_BACKOFF_BASE_MS;
    }
    else if (l->backoff_ms < l->s.backoff_max_ms) {
        l->backoff_ms = l->backoff_ms * 2 < l->s.backoff_max_ms ? l->backoff_ms * 2
                                                                : l->s.backoff_max_ms;
    }
    /* Equal jitter: half the ceiling plus a random part, so loaders restarted together
     * spread out and no retry comes at once. */
    delay = l->backoff_ms / 2 + (int64_t)(rand_r(&l->rand_state) % (l->backoff_ms / 2 + 1));
    l->next_try_ms = ingest_loader_now_ms() + delay;
    sl_metrics_gauge_set(l->m_ch_up, state == INGEST_LOADER_CLICKHOUSE_DOWN ? 0 : 1);
    if (before != state) {
        /* Once per change of state, not per retry: the logs are not flooded. */
        sl_log_warn(COMPONENT, "%s: %s; consumption paused, retrying with backoff up to %lld ms",
                    state == INGEST_LOADER_DEAD_LETTERS_DOWN ? "dead letters cannot be written"
                                                             : "ClickHouse is unavailable",
                    msg, (long long)l->s.backoff_max_ms);
    }
    else {
        sl_log_debug(COMPONENT, "still failing (next try in %lld ms): %s", (long long)delay, msg);
    }
    ingest_loader_set_state(l, state, msg);
}

bool ingest_loader_breaker_is_due(struct ingest_loader *l)
{
    return !l->is_open || ingest_loader_now_ms() >= l->next_try_ms;
}

int64_t ingest_loader_breaker_wait_ms(struct ingest_loader *l)
{
    int64_t left = l->next_try_ms - ingest_loader_now_ms();

    return l->is_open && left > 0 ? left : 0;
}

int ingest_loader_breaker_probe(struct ingest_loader *l)
{
    struct sl_err err;
    int rc;

    sl_err_clear(&err);
    sl_metrics_counter_add(l->m_probes, 1);
    if (ingest_loader_get_state(l) != INGEST_LOADER_CLICKHOUSE_DOWN) {
        return 0;
    }
    rc = sl_ch_ping(l->ch, &err);
    if (rc != 0) {
        ingest_loader_breaker_fail(l, INGEST_LOADER_CLICKHOUSE_DOWN, &err);
    }
    return rc;
}

void ingest_loader_breaker_ok(struct ingest_loader *l)
{
    enum ingest_loader_state before = ingest_loader_get_state(l);
    int64_t since_s;

    if (l->is_open) {
        pthread_mutex_lock(&l->lock);
        since_s = l->since_s;
        pthread_mutex_unlock(&l->lock);
        sl_log_info(COMPONENT, "%s again after %lld s; resuming",
                    before == INGEST_LOADER_DEAD_LETTERS_DOWN ? "dead letters writable"
                                                              : "ClickHouse available",
                    (long long)(ingest_loader_wall_ms() / 1000 - since_s));
    }
    l->is_open = false;
    l->backoff_ms = 0;
    l->next_try_ms = 0;
    sl_metrics_gauge_set(l->m_ch_up, 1);
    if (before != INGEST_LOADER_STOPPED) {
        ingest_loader_set_state(l, INGEST_LOADER_OK, NULL);
    }
}

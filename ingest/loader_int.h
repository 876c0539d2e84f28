/*
 * Inside the loader: the layout of struct ingest_loader and what its files share.
 * loader.c holds the settings, the thread, the state, health and metrics; loader_breaker.c
 * the circuit breaker; loader_insert.c the insert of a batch (encoding in chunks, bisection
 * of a rejected insert); loader_kafka.c the consumer group and loader_spool.c the spool
 * reader, each of which builds batches, hands them to ingest_loader_load and then writes
 * dead letters and releases the batch.
 * Nothing outside ingest/loader*.c includes this header.
 */
#ifndef SLUICE_INGEST_LOADER_INT_H
#define SLUICE_INGEST_LOADER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ch.h"
#include "enrich.h"
#include "loader.h"
#include "metrics.h"
#include "policy.h"
#include "rows.h"

/* What became of one message of a batch. */
enum loader_fate {
    LOADER_LIVE = 0,     /* loads (or loaded) */
    LOADER_DEAD_ENCODE,  /* the encoder refused it: a dead letter */
    LOADER_DEAD_REJECTED /* ClickHouse rejected its row: a dead letter */
};

/* One message of a batch, as the shared insert code sees it. */
struct loader_item {
    const char *value;     /* the event JSON; borrowed from the mode's own batch */
    size_t value_len;
    enum loader_fate fate; /* set by ingest_loader_load */
    char *reason;          /* owned (sl_free) when fate is not LOADER_LIVE */
};

/* Longest wait of one breaker step; the first backoff after the breaker opens. */
#define LOADER_BACKOFF_BASE_MS 250

struct loader_kafka; /* loader_kafka.c */

struct ingest_loader {
    /* Set by start, read-only after. */
    struct ingest_loader_settings s; /* strings point at the copies below */
    char *roles_copy;
    char *group_copy;
    char *dlq_topic_copy;
    char *brokers;                   /* NULL in spool mode */
    char *topic;
    char *database;
    char *dead_letter_dir;           /* spool mode */
    char insert_sql[INGEST_ROWS_INSERT_SQL_MAX];
    struct ingest_spool *spool;      /* kept; spool mode */
    struct sl_metrics *metrics;      /* kept; may be NULL */
    struct enrich *enrich;           /* kept; NULL: rows are stored unenriched */
    struct ingest_policy *policy;    /* kept; NULL: every tenant is enriched */
    pthread_t thread;
    bool has_thread;

    /* The loader thread's own. */
    struct sl_ch *ch;
    struct sl_ch_buf rows;           /* RowBinary of the chunk being inserted */
    size_t *row_item;                /* item index of each encoded row */
    size_t *row_off;                 /* start of each row in rows, plus one end entry */
    size_t row_cap;
    unsigned int rand_state;
    bool is_open;                    /* circuit breaker open */
    int64_t backoff_ms;              /* current backoff ceiling */
    int64_t next_try_ms;             /* monotonic ms of the next half-open attempt */
    int64_t rate_t0_ms;              /* rows/s window start */
    uint64_t rate_rows0;
    uint64_t n_policy_errors;        /* tenant store failures while enriching (sampled log) */

    /* Shared with other threads, under lock. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool is_stopping;
    bool is_stopped;
    int64_t stop_deadline_ms;        /* monotonic */
    enum ingest_loader_state state;
    int64_t since_s;
    char last_error[SL_ERR_MSG_MAX];
    int64_t lag;
    size_t n_parts;
    struct {
        int32_t partition;
        int64_t lag;
    } parts[INGEST_LOADER_MAX_PARTITIONS];
    double last_batch_s;

    /* Counters, any thread. */
    atomic_uint_least64_t n_rows;
    atomic_uint_least64_t n_batches;
    atomic_uint_least64_t n_insert_errors;
    atomic_uint_least64_t n_dead;
    atomic_uint_least64_t n_enriched;    /* rows encoded with enrichment */
    atomic_uint_least64_t n_not_enriched; /* rows of tenants whose tier has it off */
    _Atomic double rows_per_s;

    /* Kafka mode: the consumer and the dead-letter producer (loader_kafka.c). */
    struct loader_kafka *kafka;

    /* Metrics; NULL series are ignored by the registry. */
    struct sl_metrics_series *m_rows;
    struct sl_metrics_series *m_batches;
    struct sl_metrics_series *m_batch_s;
    struct sl_metrics_series *m_err_transient;
    struct sl_metrics_series *m_err_rejected;
    struct sl_metrics_series *m_dead_encode;
    struct sl_metrics_series *m_dead_rejected;
    struct sl_metrics_series *m_rows_per_s;
    struct sl_metrics_series *m_ch_up;
    struct sl_metrics_series *m_probes;
    struct sl_metrics_series *m_enriched;
    struct sl_metrics_series *m_not_enriched;
    struct sl_metrics_family *f_lag;
};

/* Monotonic milliseconds, and unix milliseconds. */
int64_t ingest_loader_now_ms(void);
int64_t ingest_loader_wall_ms(void);

/* Sets the reported state (its since time when it changes) and, when error is not NULL,
 * the last error; get reads the state. Any thread (under l->lock). */
void ingest_loader_set_state(struct ingest_loader *l, enum ingest_loader_state state,
                             const char *error);
enum ingest_loader_state ingest_loader_get_state(struct ingest_loader *l);

/* Whether stop was called. Loader thread. */
bool ingest_loader_is_stopping(struct ingest_loader *l);

/* Whether a final flush may still start: stopping with time left before the deadline. */
bool ingest_loader_has_time_to_flush(struct ingest_loader *l);

/* Waits up to ms or until stop is called; returns whether the loader is stopping. */
bool ingest_loader_sleep(struct ingest_loader *l, int64_t ms);

/*
 * The circuit breaker. fail opens it (or, open, doubles the backoff up to the setting) with
 * the state to report and the error, and logs once when it opens. is_due says whether a
 * half-open attempt may run now. probe pings ClickHouse for a half-open attempt (counts it;
 * a failed ping is a fail). ok closes it, logging once, and sets the state to ok.
 * Loader thread only.
 */
void ingest_loader_breaker_fail(struct ingest_loader *l, enum ingest_loader_state state,
                                const struct sl_err *err);
bool ingest_loader_breaker_is_due(struct ingest_loader *l);
int ingest_loader_breaker_probe(struct ingest_loader *l);
void ingest_loader_breaker_ok(struct ingest_loader *l);
/* Milliseconds until the next half-open attempt (0 when due or closed). */
int64_t ingest_loader_breaker_wait_ms(struct ingest_loader *l);

/*
 * Inserts the live messages of items[0..n) (borrowed) into ClickHouse: encodes them in
 * chunks that fit the row buffer, inserts each chunk, and when ClickHouse rejects a chunk's
 * data, bisects it to find the rows it rejects. Messages the encoder refuses get
 * LOADER_DEAD_ENCODE, rejected rows LOADER_DEAD_REJECTED, each with a reason; items already
 * dead are skipped (a rejection is final), so a retried batch keeps its verdicts. The live
 * rows are in ClickHouse when it returns 0.
 * Returns a negative code when ClickHouse is unavailable (network, timeout, transient or
 * configuration errors) or memory ran out: err says why, and the batch must be retried
 * whole later (rows of earlier chunks may already be stored; the table collapses them).
 * Counts rows, errors and dead letters in the metrics. Loader thread only.
 */
int ingest_loader_load(struct ingest_loader *l, struct loader_item *items, size_t n,
                       struct sl_err *err);

/* Frees the reasons of items[0..n) and marks them live. */
void ingest_loader_items_reset(struct loader_item *items, size_t n);

/* Records a released batch: rows loaded, its duration, dead letters by fate. */
void ingest_loader_count_batch(struct ingest_loader *l, const struct loader_item *items,
                               size_t n, double seconds);

/* Updates rows/s about once a second; call from the consumption loops. */
void ingest_loader_tick(struct ingest_loader *l);

/* Sets the lag of one partition (-1: unknown); partition -1 is the spool. Any thread. */
void ingest_loader_set_lag(struct ingest_loader *l, int32_t partition, int64_t lag);

/* Forgets every partition's lag (after a rebalance). */
void ingest_loader_clear_lag(struct ingest_loader *l);

/*
 * Kafka mode. create makes the consumer and the dead-letter writer (l->kafka) without
 * connecting, so bad settings fail start; run subscribes and consumes until the loader
 * stops, then leaves the group; destroy frees them (accepts l->kafka NULL).
 * create and destroy on the starting thread, run on the loader thread.
 */
int ingest_loader_kafka_create(struct ingest_loader *l, struct sl_err *err);
void ingest_loader_kafka_run(struct ingest_loader *l);
void ingest_loader_kafka_destroy(struct ingest_loader *l);

/* Spool mode: drains the spool until the loader stops. Loader thread. */
void ingest_loader_spool_run(struct ingest_loader *l);

#endif

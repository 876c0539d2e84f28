/*
 * The periodic snapshot of sluice-ingest's own metrics into ClickHouse's internal_metrics
 * table, so sluice's numbers can be queried like the data. Every SLUICE_METRICS_SNAPSHOT_S
 * seconds the whole registry (edge and loader alike, whatever the roles) is rendered and
 * flattened into one row per number: counters and gauges as their value, histograms as
 * <name>_count, <name>_sum and <name>_p50/_p90/_p99 (buckets are left to /metrics). Each row
 * carries ts, host (gethostname), process ("sluice-ingest"), name, the labels as the
 * parallel arrays label_keys/label_values, and value (see ingest/schema.c).
 *
 * A failed snapshot (ClickHouse down, the schema not applied yet) is logged, sampled, and
 * simply skipped: the next one carries the counters forward.
 *
 * Threads: create, start, stop and destroy on the thread that runs the libuv loop given to
 * start; the insert itself runs on libuv's thread pool (uv_queue_work), one at a time.
 */
#ifndef SLUICE_INGEST_SNAPSHOT_H
#define SLUICE_INGEST_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cfg.h"
#include "ch.h"
#include "err.h"
#include "metrics.h"

struct ingest_snapshot_settings {
    int64_t interval_s; /* SLUICE_METRICS_SNAPSHOT_S; 0: off */
};

extern const struct sl_cfg_opt ingest_snapshot_cfg_opts[];
extern const size_t ingest_snapshot_cfg_n_opts;

/*
 * Appends one snapshot of m (borrowed) as RowBinary rows for
 * ingest_snapshot_insert_sql's statement to buf, and the number of rows to *n_rows.
 * host and process are borrowed. Fails with SL_ENOMEM or SL_EINVAL (buf full); buf may
 * then hold part of the snapshot: reset it.
 */
int ingest_snapshot_rows(struct sl_metrics *m, const char *host, const char *process,
                         int64_t ts_s, struct sl_ch_buf *buf, size_t *n_rows,
                         struct sl_err *err);

/* Writes "INSERT INTO `database`.internal_metrics (...) FORMAT RowBinary" into out. Fails
 * with SL_EINVAL when it does not fit in cap bytes. */
int ingest_snapshot_insert_sql(const char *database, char *out, size_t cap);

/*
 * Renders and inserts one snapshot through ch (borrowed; blocks). Fails as sl_ch_insert or
 * ingest_snapshot_rows.
 */
int ingest_snapshot_write(struct sl_ch *ch, const char *database, struct sl_metrics *m,
                          const char *process, int64_t ts_s, struct sl_err *err);

struct ingest_snapshot;

/*
 * Creates the periodic writer: its own ClickHouse client from ch (borrowed, copied),
 * metrics m (kept: must outlive it), process name (borrowed, copied). Fails with SL_EINVAL
 * (bad ClickHouse settings) or SL_ENOMEM; *out is NULL then.
 */
int ingest_snapshot_create(struct ingest_snapshot **out, const struct ingest_snapshot_settings *s,
                           const struct sl_ch_settings *ch, struct sl_metrics *m,
                           const char *process, struct sl_err *err);

/* Starts the timer on loop (kept). With interval 0 it does nothing. Never fails. */
void ingest_snapshot_start(struct ingest_snapshot *s, uv_loop_t *loop);

/*
 * Stops the timer and closes its handle. A write in progress finishes; run the loop until
 * it returns before destroy. Accepts NULL; idempotent.
 */
void ingest_snapshot_stop(struct ingest_snapshot *s);

/* Frees the writer. Call after stop, once the loop has run out. Accepts NULL. */
void ingest_snapshot_destroy(struct ingest_snapshot *s);

#endif

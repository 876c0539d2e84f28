/*
 * Backfill jobs in the tenant store: the rows `sluice backfill` writes and the scheduler's
 * backfill runner works through (tables backfill_jobs and backfill_chunks, schema version
 * 7). A job is a kind, a tenant (or every tenant), a time range cut into chunks, a state
 * and a cursor: every chunk before the cursor is done. The runner moves the cursor and the
 * totals together with the chunk's row in one transaction (the checkpoint), so a killed
 * runner resumes at the cursor and the totals count each chunk once.
 *
 * States: queued -> running -> done | failed | cancelled; running -> paused -> queued;
 * failed -> queued (resume). A pause or cancel of a running job is a request the runner
 * honours at the next chunk boundary; of a queued, paused or failed job it takes effect at
 * once. What a chunk computes is the backfill worker's business (workers/backfill/).
 *
 * Same rules as store.h: one thread per handle, 0 or a negative SL_E code, err filled.
 */
#ifndef SLUICE_LIB_STORE_BACKFILL_H
#define SLUICE_LIB_STORE_BACKFILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

#define SL_BACKFILL_KIND_MAX 32
#define SL_BACKFILL_ERROR_MAX 512

enum sl_backfill_state {
    SL_BACKFILL_QUEUED = 0,
    SL_BACKFILL_RUNNING,
    SL_BACKFILL_PAUSED,
    SL_BACKFILL_DONE,
    SL_BACKFILL_FAILED,
    SL_BACKFILL_CANCELLED,
};

/* What an operator asked of a running job; the runner acts at the next chunk boundary. */
enum sl_backfill_request {
    SL_BACKFILL_REQ_NONE = 0,
    SL_BACKFILL_REQ_PAUSE,
    SL_BACKFILL_REQ_CANCEL,
};

struct sl_backfill_job {
    int64_t id;
    char kind[SL_BACKFILL_KIND_MAX];
    char tenant_id[SL_STORE_ID_MAX]; /* "" for every tenant */
    int64_t from_s;                  /* range [from_s, to_s), unix seconds, chunk-aligned */
    int64_t to_s;
    int64_t chunk_s;
    enum sl_backfill_state state;
    enum sl_backfill_request requested;
    int64_t cursor_s;                /* every chunk before it is done */
    int64_t chunks_total;
    int64_t chunks_done;
    int64_t rows_read;               /* summed over checkpointed chunks */
    int64_t rows_written;
    int64_t busy_ms;                 /* time spent in checkpointed chunks */
    char owner[SL_STORE_OWNER_MAX];  /* the runner that last claimed it; "" if none */
    char error[SL_BACKFILL_ERROR_MAX]; /* why it failed; "" otherwise */
    int64_t error_chunk_s;           /* start of the chunk that failed; 0 if none */
    int64_t created_s;
    int64_t started_s;               /* 0 until first claimed */
    int64_t updated_s;
    int64_t ended_s;                 /* 0 until done, failed or cancelled */
};

/* One checkpointed chunk. */
struct sl_backfill_chunk {
    int64_t job_id;
    int64_t from_s;
    int64_t to_s;
    char source[16];                 /* where it was recomputed from: "events", "hourly" */
    int64_t rows_read;
    int64_t rows_written;
    int64_t duration_ms;
    int64_t done_s;
};

/* "queued", "running", ...; parse returns -1 for an unknown name. */
const char *sl_store_backfill_state_name(enum sl_backfill_state state);
int sl_store_backfill_state_parse(const char *name);

/* Whether a job in this state still owns its range (not done and not cancelled). */
bool sl_store_backfill_is_active(enum sl_backfill_state state);

/*
 * Records a new queued job for kind over [from_s, to_s) in chunks of chunk_s seconds
 * (the caller aligned the range; chunks_total is computed here). tenant NULL or "" means
 * every tenant; otherwise it is an id or name, resolved to the id (SL_ENOTFOUND). In one
 * transaction the call refuses (SL_EEXIST, err naming the job) when an active job of the
 * same kind overlaps the range and the tenant (every-tenant jobs overlap every tenant).
 * SL_EINVAL for an empty or unaligned range. *out gets the new row.
 */
int sl_store_backfill_create(struct sl_store *st, const char *kind, const char *tenant,
                             int64_t from_s, int64_t to_s, int64_t chunk_s, int64_t now_s,
                             struct sl_backfill_job *out, struct sl_err *err);

/* Reads job id. SL_ENOTFOUND when there is none. */
int sl_store_backfill_get(struct sl_store *st, int64_t id, struct sl_backfill_job *out,
                          struct sl_err *err);

/* Returns a new array (free with sl_free) of every job, newest first. */
int sl_store_backfill_list(struct sl_store *st, struct sl_backfill_job **out, size_t *n_out,
                           struct sl_err *err);

/* Returns a new array (free with sl_free) of a job's checkpointed chunks, in time order. */
int sl_store_backfill_chunks(struct sl_store *st, int64_t job_id,
                             struct sl_backfill_chunk **out, size_t *n_out,
                             struct sl_err *err);

/*
 * The runner's claim: marks up to max_jobs jobs that are queued or running (running ones
 * were left by a runner that died or lost its lease) as running by owner, oldest first,
 * and returns them in a new array (free with sl_free). A queued job with a pending request
 * is settled first (pause -> paused, cancel -> cancelled) and not returned. One
 * transaction.
 */
int sl_store_backfill_claim(struct sl_store *st, const char *owner, size_t max_jobs,
                            int64_t now_s, struct sl_backfill_job **out, size_t *n_out,
                            struct sl_err *err);

/*
 * The checkpoint: records chunk [from_s, to_s) of a running job and moves its cursor from
 * from_s to to_s, adding rows and duration to the totals, in one transaction. When this was
 * the last chunk the job becomes done. SL_ESTATE (nothing written) when the job's cursor is
 * not at from_s or the job is not running: another runner got there first.
 */
int sl_store_backfill_checkpoint(struct sl_store *st, int64_t id,
                                 const struct sl_backfill_chunk *chunk, int64_t now_s,
                                 struct sl_err *err);

/*
 * Between chunks: reads a running job's pending request and applies it (pause -> paused,
 * cancel -> cancelled, request cleared). *state_out gets the job's state after the call
 * (running when nothing was pending).
 */
int sl_store_backfill_settle(struct sl_store *st, int64_t id, int64_t now_s,
                             enum sl_backfill_state *state_out, struct sl_err *err);

/* Marks a running job failed at chunk chunk_s with error (copied, cut to fit). */
int sl_store_backfill_fail(struct sl_store *st, int64_t id, int64_t chunk_s, const char *error,
                           int64_t now_s, struct sl_err *err);

/*
 * The operator's verbs. pause: queued -> paused at once, running -> request. cancel:
 * queued, paused or failed -> cancelled at once, running -> request. resume: paused or
 * failed -> queued (a failed job retries its failed chunk; the error is kept until then),
 * and a pending pause of a running job is withdrawn. SL_ESTATE when the verb does not
 * apply to the job's state; SL_ENOTFOUND for an unknown id. *out (may be NULL) gets the
 * job after the call.
 */
int sl_store_backfill_pause(struct sl_store *st, int64_t id, int64_t now_s,
                            struct sl_backfill_job *out, struct sl_err *err);
int sl_store_backfill_cancel(struct sl_store *st, int64_t id, int64_t now_s,
                             struct sl_backfill_job *out, struct sl_err *err);
int sl_store_backfill_resume(struct sl_store *st, int64_t id, int64_t now_s,
                             struct sl_backfill_job *out, struct sl_err *err);

#endif

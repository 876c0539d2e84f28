/*
 * Backfill jobs and their checkpoints (see store_backfill.h). The rules that keep a
 * backfill exact across restarts live here as SQL: the overlap check and the insert share
 * one transaction; a checkpoint moves the cursor only from where the runner found it
 * (WHERE cursor_s = chunk start), in the same transaction as the chunk's row, so a chunk is
 * counted once however often it ran. What a chunk does is workers/backfill/'s business.
 */
#include "store_backfill.h"

#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "store_int.h"

#define JOB_COLUMNS                                                                       \
    "id, kind, coalesce(tenant_id, ''), from_s, to_s, chunk_s, state, "                   \
    "coalesce(requested, ''), cursor_s, chunks_total, chunks_done, rows_read, "           \
    "rows_written, busy_ms, coalesce(owner, ''), coalesce(error, ''), "                   \
    "coalesce(error_chunk_s, 0), created_at, coalesce(started_at, 0), updated_at, "       \
    "coalesce(ended_at, 0)"

static const char *const state_names[] = {
    [SL_BACKFILL_QUEUED] = "queued", [SL_BACKFILL_RUNNING] = "running",
    [SL_BACKFILL_PAUSED] = "paused", [SL_BACKFILL_DONE] = "done",
    [SL_BACKFILL_FAILED] = "failed", [SL_BACKFILL_CANCELLED] = "cancelled",
};

_Static_assert(sizeof(state_names) / sizeof(state_names[0]) == SL_BACKFILL_CANCELLED + 1,
               "a name per backfill state");

const char *sl_store_backfill_state_name(enum sl_backfill_state state)
{
    return sl_store_enum_name(state_names, SL_BACKFILL_CANCELLED + 1, (unsigned)state);
}

int sl_store_backfill_state_parse(const char *name)
{
    return sl_store_enum_parse(state_names, SL_BACKFILL_CANCELLED + 1, name);
}

bool sl_store_backfill_is_active(enum sl_backfill_state state)
{
    return state != SL_BACKFILL_DONE && state != SL_BACKFILL_CANCELLED;
}

static void read_job(sqlite3_stmt *stmt, void *dst)
{
    struct sl_backfill_job *j = dst;
    char text[16];
    int s;

    memset(j, 0, sizeof(*j));
    j->id = sqlite3_column_int64(stmt, 0);
    sl_store_col_text(stmt, 1, j->kind, sizeof(j->kind));
    sl_store_col_text(stmt, 2, j->tenant_id, sizeof(j->tenant_id));
    j->from_s = sqlite3_column_int64(stmt, 3);
    j->to_s = sqlite3_column_int64(stmt, 4);
    j->chunk_s = sqlite3_column_int64(stmt, 5);
    sl_store_col_text(stmt, 6, text, sizeof(text));
    s = sl_store_backfill_state_parse(text);
    j->state = s >= 0 ? (enum sl_backfill_state)s : SL_BACKFILL_FAILED;
    sl_store_col_text(stmt, 7, text, sizeof(text));
    j->requested = strcmp(text, "pause") == 0    ? SL_BACKFILL_REQ_PAUSE
                   : strcmp(text, "cancel") == 0 ? SL_BACKFILL_REQ_CANCEL
                                                 : SL_BACKFILL_REQ_NONE;
    j->cursor_s = sqlite3_column_int64(stmt, 8);
    j->chunks_total = sqlite3_column_int64(stmt, 9);
    j->chunks_done = sqlite3_column_int64(stmt, 10);
    j->rows_read = sqlite3_column_int64(stmt, 11);
    j->rows_written = sqlite3_column_int64(stmt, 12);
    j->busy_ms = sqlite3_column_int64(stmt, 13);
    sl_store_col_text(stmt, 14, j->owner, sizeof(j->owner));
    sl_store_col_text(stmt, 15, j->error, sizeof(j->error));
    j->error_chunk_s = sqlite3_column_int64(stmt, 16);
    j->created_s = sqlite3_column_int64(stmt, 17);
    j->started_s = sqlite3_column_int64(stmt, 18);
    j->updated_s = sqlite3_column_int64(stmt, 19);
    j->ended_s = sqlite3_column_int64(stmt, 20);
}

int sl_store_backfill_get(struct sl_store *st, int64_t id, struct sl_backfill_job *out,
                          struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st, "SELECT " JOB_COLUMNS " FROM backfill_jobs WHERE id = ?1",
                              &stmt, err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_int64(stmt, 1, id);
    rc = sl_store_row(st, stmt, read_job, out, "reading a backfill job", err);
    if (rc == SL_ENOTFOUND) {
        rc = sl_err_set(err, SL_ENOTFOUND, "no backfill job %lld (see `sluice backfill "
                        "status`)", (long long)id);
    }
    return rc;
}

int sl_store_backfill_list(struct sl_store *st, struct sl_backfill_job **out, size_t *n_out,
                           struct sl_err *err)
{
    return sl_store_list(st, "SELECT " JOB_COLUMNS " FROM backfill_jobs ORDER BY id DESC",
                         NULL, sizeof(**out), read_job, (void **)out, n_out,
                         "listing backfill jobs", err);
}

static void read_chunk(sqlite3_stmt *stmt, void *dst)
{
    struct sl_backfill_chunk *c = dst;

    memset(c, 0, sizeof(*c));
    c->job_id = sqlite3_column_int64(stmt, 0);
    c->from_s = sqlite3_column_int64(stmt, 1);
    c->to_s = sqlite3_column_int64(stmt, 2);
    sl_store_col_text(stmt, 3, c->source, sizeof(c->source));
    c->rows_read = sqlite3_column_int64(stmt, 4);
    c->rows_written = sqlite3_column_int64(stmt, 5);
    c->duration_ms = sqlite3_column_int64(stmt, 6);
    c->done_s = sqlite3_column_int64(stmt, 7);
}

int sl_store_backfill_chunks(struct sl_store *st, int64_t job_id,
                             struct sl_backfill_chunk **out, size_t *n_out,
                             struct sl_err *err)
{
    char id[24];

    /* The id goes in as text bound to ?1 (SQLite compares it as the integer it is). */
    snprintf(id, sizeof(id), "%lld", (long long)job_id);
    return sl_store_list(st,
                         "SELECT job_id, from_s, to_s, source, rows_read, rows_written, "
                         "duration_ms, done_at FROM backfill_chunks "
                         "WHERE job_id = CAST(?1 AS INTEGER) ORDER BY from_s",
                         id, sizeof(**out), read_chunk, (void **)out, n_out,
                         "listing backfill chunks", err);
}

/* Finds an active job of kind overlapping [from_s, to_s) for tenant ("" = every tenant)
 * inside the caller's transaction; *found_id 0 when none. */
static int find_overlap(struct sl_store *st, const char *kind, const char *tenant,
                        int64_t from_s, int64_t to_s, int64_t *found_id, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st,
                              "SELECT id FROM backfill_jobs WHERE kind = ?1 "
                              "AND state NOT IN ('done', 'cancelled') "
                              "AND from_s < ?4 AND to_s > ?3 "
                              "AND (tenant_id IS NULL OR ?2 = '' OR tenant_id = ?2) "
                              "ORDER BY id LIMIT 1",
                              &stmt, err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, tenant, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 3, from_s);
    sqlite3_bind_int64(stmt, 4, to_s);
    rc = sqlite3_step(stmt);
    *found_id = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : 0;
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE
             ? 0
             : sl_store_fail(st, rc, "checking backfills for overlap", err);
    sqlite3_finalize(stmt);
    return rc;
}

int sl_store_backfill_create(struct sl_store *st, const char *kind, const char *tenant,
                             int64_t from_s, int64_t to_s, int64_t chunk_s, int64_t now_s,
                             struct sl_backfill_job *out, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    char tenant_id[SL_STORE_ID_MAX] = "";
    int64_t other = 0;
    int64_t id;
    int rc;

    if (kind == NULL || kind[0] == '\0' || strlen(kind) >= SL_BACKFILL_KIND_MAX) {
        return sl_err_set(err, SL_EINVAL, "a backfill needs a kind");
    }
    if (chunk_s <= 0 || to_s <= from_s || from_s % chunk_s != 0 || to_s % chunk_s != 0) {
        return sl_err_set(err, SL_EINVAL, "backfill range %lld..%lld is empty or not aligned "
                          "to chunks of %llds", (long long)from_s, (long long)to_s,
                          (long long)chunk_s);
    }
    rc = sl_store_exec(st, "BEGIN IMMEDIATE", "locking the store to start a backfill", err);
    if (rc != 0) {
        return rc;
    }
    if (tenant != NULL && tenant[0] != '\0') {
        rc = sl_store_tenant_resolve(st, tenant, tenant_id, err);
        if (rc != 0) {
            goto fail;
        }
    }
    rc = find_overlap(st, kind, tenant_id, from_s, to_s, &other, err);
    if (rc == 0 && other != 0) {
        rc = sl_err_set(err, SL_EEXIST, "backfill job %lld (%s) already covers part of this "
                        "range for %s; wait for it, or cancel it first", (long long)other,
                        kind, tenant_id[0] != '\0' ? tenant_id : "every tenant");
    }
    if (rc != 0) {
        goto fail;
    }
    rc = sl_store_prepare(st,
                          "INSERT INTO backfill_jobs (kind, tenant_id, from_s, to_s, chunk_s, "
                          "state, cursor_s, chunks_total, created_at, updated_at) "
                          "VALUES (?1, nullif(?2, ''), ?3, ?4, ?5, 'queued', ?3, ?6, ?7, ?7)",
                          &stmt, err);
    if (rc != 0) {
        goto fail;
    }
    sqlite3_bind_text(stmt, 1, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, tenant_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 3, from_s);
    sqlite3_bind_int64(stmt, 4, to_s);
    sqlite3_bind_int64(stmt, 5, chunk_s);
    sqlite3_bind_int64(stmt, 6, (to_s - from_s) / chunk_s);
    sqlite3_bind_int64(stmt, 7, now_s);
    rc = sl_store_step_done(st, stmt, "recording a backfill job", err);
    if (rc != 0) {
        goto fail;
    }
    id = sqlite3_last_insert_rowid(st->db);
    rc = sl_store_exec(st, "COMMIT", "committing a backfill job", err);
    if (rc != 0) {
        goto fail;
    }
    return out != NULL ? sl_store_backfill_get(st, id, out, err) : 0;

fail:
    sl_store_rollback(st);
    return rc;
}

/* Runs an UPDATE of one job with ?1 = id and ?2 = now_s; *changed gets the row count. */
static int update_job(struct sl_store *st, const char *sql, int64_t id, int64_t now_s,
                      int *changed, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st, sql, &stmt, err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_int64(stmt, 1, id);
    sqlite3_bind_int64(stmt, 2, now_s);
    rc = sl_store_step_done(st, stmt, "updating a backfill job", err);
    if (changed != NULL) {
        *changed = rc == 0 ? sqlite3_changes(st->db) : 0;
    }
    return rc;
}

int sl_store_backfill_claim(struct sl_store *st, const char *owner, size_t max_jobs,
                            int64_t now_s, struct sl_backfill_job **out, size_t *n_out,
                            struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    struct sl_backfill_job *jobs = NULL;
    size_t n = 0;
    int rc;

    *out = NULL;
    *n_out = 0;
    rc = sl_store_exec(st, "BEGIN IMMEDIATE", "locking the store to claim backfills", err);
    if (rc != 0) {
        return rc;
    }
    /* Requests on jobs nobody runs take effect now. */
    rc = sl_store_prepare(st,
                          "UPDATE backfill_jobs SET state = CASE requested WHEN 'pause' THEN "
                          "'paused' ELSE 'cancelled' END, ended_at = CASE requested WHEN "
                          "'cancel' THEN ?1 ELSE ended_at END, requested = NULL, updated_at = ?1 "
                          "WHERE state = 'queued' AND requested IS NOT NULL",
                          &stmt, err);
    if (rc != 0) {
        goto fail;
    }
    sqlite3_bind_int64(stmt, 1, now_s);
    rc = sl_store_step_done(st, stmt, "settling requests of queued backfills", err);
    stmt = NULL;
    if (rc != 0) {
        goto fail;
    }
    jobs = sl_calloc(max_jobs > 0 ? max_jobs : 1, sizeof(*jobs));
    if (jobs == NULL) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory claiming backfills");
        goto fail;
    }
    rc = sl_store_prepare(st,
                          "UPDATE backfill_jobs SET state = 'running', owner = ?1, "
                          "started_at = coalesce(started_at, ?2), updated_at = ?2 "
                          "WHERE id IN (SELECT id FROM backfill_jobs WHERE state IN "
                          "('running', 'queued') ORDER BY state = 'queued', id LIMIT ?3) "
                          "RETURNING " JOB_COLUMNS,
                          &stmt, err);
    if (rc != 0) {
        goto fail;
    }
    sqlite3_bind_text(stmt, 1, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, now_s);
    sqlite3_bind_int64(stmt, 3, (int64_t)max_jobs);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (n < max_jobs) {
            read_job(stmt, &jobs[n++]);
        }
    }
    rc = rc == SQLITE_DONE ? 0 : sl_store_fail(st, rc, "claiming backfills", err);
    sqlite3_finalize(stmt);
    if (rc == 0) {
        rc = sl_store_exec(st, "COMMIT", "committing the claim of backfills", err);
    }
    if (rc != 0) {
        goto fail;
    }
    /* RETURNING gives rows in no promised order; run the oldest first. */
    for (size_t i = 1; i < n; i++) {
        for (size_t k = i; k > 0 && jobs[k - 1].id > jobs[k].id; k--) {
            struct sl_backfill_job t = jobs[k];

            jobs[k] = jobs[k - 1];
            jobs[k - 1] = t;
        }
    }
    if (n == 0) {
        sl_free(jobs);
        jobs = NULL;
    }
    *out = jobs;
    *n_out = n;
    return 0;

fail:
    sl_store_rollback(st);
    sl_free(jobs);
    return rc;
}

int sl_store_backfill_checkpoint(struct sl_store *st, int64_t id,
                                 const struct sl_backfill_chunk *chunk, int64_t now_s,
                                 struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc;

    rc = sl_store_exec(st, "BEGIN IMMEDIATE", "locking the store for a backfill checkpoint",
                       err);
    if (rc != 0) {
        return rc;
    }
    rc = sl_store_prepare(st,
                          "UPDATE backfill_jobs SET cursor_s = ?3, chunks_done = chunks_done + 1, "
                          "rows_read = rows_read + ?4, rows_written = rows_written + ?5, "
                          "busy_ms = busy_ms + ?6, updated_at = ?7, error = NULL, "
                          "error_chunk_s = NULL, "
                          "state = CASE WHEN ?3 >= to_s THEN 'done' ELSE state END, "
                          "ended_at = CASE WHEN ?3 >= to_s THEN ?7 ELSE ended_at END, "
                          "requested = CASE WHEN ?3 >= to_s THEN NULL ELSE requested END "
                          "WHERE id = ?1 AND cursor_s = ?2 AND state = 'running'",
                          &stmt, err);
    if (rc != 0) {
        goto fail;
    }
    sqlite3_bind_int64(stmt, 1, id);
    sqlite3_bind_int64(stmt, 2, chunk->from_s);
    sqlite3_bind_int64(stmt, 3, chunk->to_s);
    sqlite3_bind_int64(stmt, 4, chunk->rows_read);
    sqlite3_bind_int64(stmt, 5, chunk->rows_written);
    sqlite3_bind_int64(stmt, 6, chunk->duration_ms);
    sqlite3_bind_int64(stmt, 7, now_s);
    rc = sl_store_step_done(st, stmt, "moving a backfill's cursor", err);
    if (rc == 0 && sqlite3_changes(st->db) != 1) {
        rc = sl_err_set(err, SL_ESTATE, "backfill job %lld is not running at %lld (another "
                        "runner moved it, or it was cancelled)", (long long)id,
                        (long long)chunk->from_s);
    }
    if (rc != 0) {
        goto fail;
    }
    rc = sl_store_prepare(st,
                          "INSERT OR REPLACE INTO backfill_chunks (job_id, from_s, to_s, source, "
                          "rows_read, rows_written, duration_ms, done_at) "
                          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                          &stmt, err);
    if (rc != 0) {
        goto fail;
    }
    sqlite3_bind_int64(stmt, 1, id);
    sqlite3_bind_int64(stmt, 2, chunk->from_s);
    sqlite3_bind_int64(stmt, 3, chunk->to_s);
    sqlite3_bind_text(stmt, 4, chunk->source, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 5, chunk->rows_read);
    sqlite3_bind_int64(stmt, 6, chunk->rows_written);
    sqlite3_bind_int64(stmt, 7, chunk->duration_ms);
    sqlite3_bind_int64(stmt, 8, now_s);
    rc = sl_store_step_done(st, stmt, "recording a backfill chunk", err);
    if (rc == 0) {
        rc = sl_store_exec(st, "COMMIT", "committing a backfill checkpoint", err);
    }
    if (rc != 0) {
        goto fail;
    }
    return 0;

fail:
    sl_store_rollback(st);
    return rc;
}

int sl_store_backfill_settle(struct sl_store *st, int64_t id, int64_t now_s,
                             enum sl_backfill_state *state_out, struct sl_err *err)
{
    struct sl_backfill_job j;
    int rc;

    rc = update_job(st,
                    "UPDATE backfill_jobs SET state = CASE requested WHEN 'pause' THEN "
                    "'paused' ELSE 'cancelled' END, ended_at = CASE requested WHEN 'cancel' "
                    "THEN ?2 ELSE ended_at END, requested = NULL, updated_at = ?2 "
                    "WHERE id = ?1 AND state = 'running' AND requested IS NOT NULL",
                    id, now_s, NULL, err);
    if (rc == 0) {
        rc = sl_store_backfill_get(st, id, &j, err);
    }
    if (rc == 0) {
        *state_out = j.state;
    }
    return rc;
}

int sl_store_backfill_fail(struct sl_store *st, int64_t id, int64_t chunk_s, const char *error,
                           int64_t now_s, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    char text[SL_BACKFILL_ERROR_MAX];
    int rc = sl_store_prepare(st,
                              "UPDATE backfill_jobs SET state = 'failed', error = ?2, "
                              "error_chunk_s = ?3, updated_at = ?4, ended_at = ?4, "
                              "requested = NULL WHERE id = ?1 AND state = 'running'",
                              &stmt, err);

    if (rc != 0) {
        return rc;
    }
    snprintf(text, sizeof(text), "%s", error != NULL ? error : "");
    sqlite3_bind_int64(stmt, 1, id);
    sqlite3_bind_text(stmt, 2, text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(stmt, 3, chunk_s);
    sqlite3_bind_int64(stmt, 4, now_s);
    return sl_store_step_done(st, stmt, "recording a failed backfill", err);
}

/* Applies one operator verb: tries each UPDATE in order inside one transaction and fails
 * with SL_ESTATE naming the verb when none matched the job's state. */
static int operator_verb(struct sl_store *st, int64_t id, int64_t now_s, const char *verb,
                         const char *const *updates, size_t n_updates,
                         struct sl_backfill_job *out, struct sl_err *err)
{
    struct sl_backfill_job j;
    int changed = 0;
    int rc;

    rc = sl_store_exec(st, "BEGIN IMMEDIATE", "locking the store to change a backfill", err);
    if (rc != 0) {
        return rc;
    }
    rc = sl_store_backfill_get(st, id, &j, err);
    for (size_t i = 0; rc == 0 && changed == 0 && i < n_updates; i++) {
        rc = update_job(st, updates[i], id, now_s, &changed, err);
    }
    if (rc == 0 && changed == 0) {
        rc = sl_err_set(err, SL_ESTATE, "backfill job %lld is %s%s; it cannot be %s",
                        (long long)id, sl_store_backfill_state_name(j.state),
                        j.requested == SL_BACKFILL_REQ_CANCEL ? " (cancel requested)" : "",
                        verb);
    }
    if (rc == 0) {
        rc = sl_store_exec(st, "COMMIT", "committing a backfill change", err);
    }
    if (rc != 0) {
        sl_store_rollback(st);
        return rc;
    }
    return out != NULL ? sl_store_backfill_get(st, id, out, err) : 0;
}

int sl_store_backfill_pause(struct sl_store *st, int64_t id, int64_t now_s,
                            struct sl_backfill_job *out, struct sl_err *err)
{
    static const char *const updates[] = {
        "UPDATE backfill_jobs SET state = 'paused', updated_at = ?2 "
        "WHERE id = ?1 AND state = 'queued'",
        "UPDATE backfill_jobs SET requested = 'pause', updated_at = ?2 "
        "WHERE id = ?1 AND state = 'running' AND coalesce(requested, '') != 'cancel'",
    };

    return operator_verb(st, id, now_s, "paused", updates, 2, out, err);
}

int sl_store_backfill_cancel(struct sl_store *st, int64_t id, int64_t now_s,
                             struct sl_backfill_job *out, struct sl_err *err)
{
    static const char *const updates[] = {
        "UPDATE backfill_jobs SET state = 'cancelled', requested = NULL, ended_at = ?2, "
        "updated_at = ?2 WHERE id = ?1 AND state IN ('queued', 'paused', 'failed')",
        "UPDATE backfill_jobs SET requested = 'cancel', updated_at = ?2 "
        "WHERE id = ?1 AND state = 'running'",
    };

    return operator_verb(st, id, now_s, "cancelled", updates, 2, out, err);
}

int sl_store_backfill_resume(struct sl_store *st, int64_t id, int64_t now_s,
                             struct sl_backfill_job *out, struct sl_err *err)
{
    static const char *const updates[] = {
        "UPDATE backfill_jobs SET state = 'queued', ended_at = NULL, updated_at = ?2 "
        "WHERE id = ?1 AND state IN ('paused', 'failed')",
        "UPDATE backfill_jobs SET requested = NULL, updated_at = ?2 "
        "WHERE id = ?1 AND state = 'running' AND requested = 'pause'",
    };

    return operator_verb(st, id, now_s, "resumed", updates, 2, out, err);
}

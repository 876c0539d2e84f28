/*
 * The scheduler's rows: leases (which process may run jobs), each job's description and
 * state, and run history. The rules that keep one slot from running twice live here as
 * SQL: the lease is taken by one INSERT .. ON CONFLICT DO UPDATE .. WHERE statement, and a
 * run starts only while its owner holds the lease and only once per (job, slot_s), both
 * checked inside one transaction. Scheduling itself (cron, timers) is the scheduler's.
 */
#include "store_int.h"

#include <string.h>

#include "alloc.h"

#define RUN_COLUMNS                                                                       \
    "id, job, slot_s, kind, owner, status, started_at, coalesce(ended_at, 0), "           \
    "coalesce(duration_ms, 0), rows, coalesce(error, '')"

#define JOB_COLUMNS                                                                       \
    "j.name, j.schedule, j.zone, j.enabled, coalesce(j.last_slot_s, 0), "                 \
    "coalesce(j.last_run_id, 0), coalesce(j.next_run_s, 0), "                             \
    "coalesce(j.run_requested_at, 0), j.checkpoint, j.updated_at, r.status, "             \
    "coalesce(r.started_at, 0), coalesce(r.ended_at, 0)"

#define JOB_FROM " FROM sched_jobs j LEFT JOIN sched_runs r ON r.id = j.last_run_id"

static const char *const status_names[] = {
    [SL_RUN_RUNNING] = "running", [SL_RUN_DONE] = "done",
    [SL_RUN_RETRY] = "retry",     [SL_RUN_FAILED] = "failed",
    [SL_RUN_CANCELLED] = "cancelled", [SL_RUN_TIMEOUT] = "timeout",
};

_Static_assert(sizeof(status_names) / sizeof(status_names[0]) == SL_RUN_TIMEOUT + 1,
               "a name per run status");

const char *sl_store_run_status_name(enum sl_run_status status)
{
    return sl_store_enum_name(status_names, SL_RUN_TIMEOUT + 1, (unsigned)status);
}

int sl_store_run_status_parse(const char *name)
{
    return sl_store_enum_parse(status_names, SL_RUN_TIMEOUT + 1, name);
}

/* ---- leases ---- */

int sl_store_lease_acquire(struct sl_store *st, const char *name, const char *owner,
                           int64_t ttl_s, int64_t now_s, bool *is_leader, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc;

    *is_leader = false;
    /* One statement, so the check (free, expired or ours) and the take are atomic: SQLite
     * runs it under the database's write lock. When the WHERE is false nothing changes. */
    rc = sl_store_prepare(st,
                          "INSERT INTO sched_leases (name, owner, expires_at, renewed_at) "
                          "VALUES (?1, ?2, ?3 + ?4, ?3) "
                          "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
                          "expires_at = excluded.expires_at, renewed_at = excluded.renewed_at "
                          "WHERE sched_leases.owner = excluded.owner "
                          "OR sched_leases.expires_at <= excluded.renewed_at",
                          &stmt, err);
    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 3, now_s);
    sqlite3_bind_int64(stmt, 4, ttl_s);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE) {
        *is_leader = sqlite3_changes(st->db) == 1;
        rc = 0;
    }
    else {
        rc = sl_store_fail(st, rc, "taking the scheduler lease", err);
    }
    sqlite3_finalize(stmt);
    return rc;
}

int sl_store_lease_renew(struct sl_store *st, const char *name, const char *owner,
                         int64_t ttl_s, int64_t now_s, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st,
                              "UPDATE sched_leases SET expires_at = ?3 + ?4, renewed_at = ?3 "
                              "WHERE name = ?1 AND owner = ?2",
                              &stmt, err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 3, now_s);
    sqlite3_bind_int64(stmt, 4, ttl_s);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE) {
        rc = sqlite3_changes(st->db) == 1
                 ? 0
                 : sl_err_set(err, SL_ESTATE, "lease '%s' is no longer held by %s", name,
                              owner);
    }
    else {
        rc = sl_store_fail(st, rc, "renewing the scheduler lease", err);
    }
    sqlite3_finalize(stmt);
    return rc;
}

int sl_store_lease_release(struct sl_store *st, const char *name, const char *owner,
                           struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st, "DELETE FROM sched_leases WHERE name = ?1 AND owner = ?2",
                              &stmt, err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, owner, -1, SQLITE_STATIC);
    return sl_store_step_done(st, stmt, "releasing the scheduler lease", err);
}

int sl_store_lease_get(struct sl_store *st, const char *name, struct sl_lease *out,
                       struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st,
                              "SELECT name, owner, expires_at, renewed_at FROM sched_leases "
                              "WHERE name = ?1",
                              &stmt, err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof(*out));
        sl_store_col_text(stmt, 0, out->name, sizeof(out->name));
        sl_store_col_text(stmt, 1, out->owner, sizeof(out->owner));
        out->expires_s = sqlite3_column_int64(stmt, 2);
        out->renewed_s = sqlite3_column_int64(stmt, 3);
        rc = 0;
    }
    else if (rc == SQLITE_DONE) {
        rc = sl_err_set(err, SL_ENOTFOUND, "nobody holds lease '%s'", name);
    }
    else {
        rc = sl_store_fail(st, rc, "reading the scheduler lease", err);
    }
    sqlite3_finalize(stmt);
    return rc;
}

/* ---- runs ---- */

static void read_run(sqlite3_stmt *stmt, void *dst)
{
    struct sl_run *r = dst;
    char status[16];
    int s;

    memset(r, 0, sizeof(*r));
    r->id = sqlite3_column_int64(stmt, 0);
    sl_store_col_text(stmt, 1, r->job, sizeof(r->job));
    r->slot_s = sqlite3_column_int64(stmt, 2);
    sl_store_col_text(stmt, 3, r->kind, sizeof(r->kind));
    sl_store_col_text(stmt, 4, r->owner, sizeof(r->owner));
    sl_store_col_text(stmt, 5, status, sizeof(status));
    s = sl_store_run_status_parse(status);
    r->status = s >= 0 ? (enum sl_run_status)s : SL_RUN_FAILED;
    r->started_s = sqlite3_column_int64(stmt, 6);
    r->ended_s = sqlite3_column_int64(stmt, 7);
    r->duration_ms = sqlite3_column_int64(stmt, 8);
    r->rows = sqlite3_column_int64(stmt, 9);
    sl_store_col_text(stmt, 10, r->error, sizeof(r->error));
}

/* Whether owner holds lease at now_s (inside the caller's transaction). */
static int holds_lease(struct sl_store *st, const char *lease, const char *owner, int64_t now_s,
                       bool *holds, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st,
                              "SELECT 1 FROM sched_leases WHERE name = ?1 AND owner = ?2 "
                              "AND expires_at > ?3",
                              &stmt, err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, lease, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 3, now_s);
    rc = sqlite3_step(stmt);
    *holds = rc == SQLITE_ROW;
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0
                                               : sl_store_fail(st, rc, "checking the lease", err);
    sqlite3_finalize(stmt);
    return rc;
}

/* Clears job's pending manual request if it is the one for slot_s. */
static int clear_request(struct sl_store *st, const char *job, int64_t slot_s,
                         struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st,
                              "UPDATE sched_jobs SET run_requested_at = NULL "
                              "WHERE name = ?1 AND run_requested_at = ?2",
                              &stmt, err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, job, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, slot_s);
    return sl_store_step_done(st, stmt, "clearing a run request", err);
}

static int insert_run(struct sl_store *st, const char *owner, const char *job, int64_t slot_s,
                      const char *kind, int64_t now_s, int64_t *run_id, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st,
                              "INSERT INTO sched_runs (job, slot_s, kind, owner, started_at, "
                              "status) VALUES (?1, ?2, ?3, ?4, ?5, 'running')",
                              &stmt, err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, job, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, slot_s);
    sqlite3_bind_text(stmt, 3, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 5, now_s);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE) {
        *run_id = sqlite3_last_insert_rowid(st->db);
        rc = 0;
    }
    else if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
        rc = sl_err_set(err, SL_EEXIST, "job %s already ran for slot %lld", job,
                        (long long)slot_s);
    }
    else {
        rc = sl_store_fail(st, rc, "recording the start of a run", err);
    }
    sqlite3_finalize(stmt);
    return rc;
}

int sl_store_run_begin(struct sl_store *st, const char *lease, const char *owner,
                       const char *job, int64_t slot_s, const char *kind, int64_t now_s,
                       int64_t *run_id, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    bool is_manual = strcmp(kind, "manual") == 0;
    bool holds = true;
    int rc;

    *run_id = 0;
    rc = sl_store_exec(st, "BEGIN IMMEDIATE", "locking the store to start a run", err);
    if (rc != 0) {
        return rc;
    }
    if (lease != NULL) {
        rc = holds_lease(st, lease, owner, now_s, &holds, err);
        if (rc == 0 && !holds) {
            rc = sl_err_set(err, SL_EDENIED, "%s does not hold lease '%s'; not starting %s",
                            owner, lease, job);
        }
        if (rc != 0) {
            goto fail;
        }
    }
    rc = insert_run(st, owner, job, slot_s, kind, now_s, run_id, err);
    if (rc == SL_EEXIST) {
        /* The slot already ran: a manual request for it is answered all the same. */
        if (is_manual && clear_request(st, job, slot_s, NULL) != 0) {
            goto fail;
        }
        if (sl_store_exec(st, "COMMIT", "committing", NULL) != 0) {
            goto fail;
        }
        return rc;
    }
    if (rc != 0) {
        goto fail;
    }
    rc = sl_store_prepare(st,
                          "UPDATE sched_jobs SET last_run_id = ?2, "
                          "last_slot_s = CASE WHEN ?4 THEN last_slot_s "
                          "  ELSE max(coalesce(last_slot_s, 0), ?3) END, "
                          "run_requested_at = CASE WHEN ?4 AND run_requested_at = ?3 THEN NULL "
                          "  ELSE run_requested_at END "
                          "WHERE name = ?1",
                          &stmt, err);
    if (rc != 0) {
        goto fail;
    }
    sqlite3_bind_text(stmt, 1, job, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, *run_id);
    sqlite3_bind_int64(stmt, 3, slot_s);
    sqlite3_bind_int(stmt, 4, is_manual ? 1 : 0);
    rc = sl_store_step_done(st, stmt, "recording the job's last run", err);
    if (rc == 0) {
        rc = sl_store_exec(st, "COMMIT", "committing the start of a run", err);
    }
    if (rc != 0) {
        goto fail;
    }
    return 0;

fail:
    sl_store_rollback(st);
    *run_id = 0;
    return rc;
}

int sl_store_run_end(struct sl_store *st, int64_t run_id, enum sl_run_status status,
                     int64_t rows, const char *error, const char *checkpoint, int64_t now_s,
                     int64_t duration_ms, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    struct sl_run r;
    int rc;

    if (status == SL_RUN_RUNNING || (unsigned)status > SL_RUN_TIMEOUT) {
        return sl_err_set(err, SL_EINVAL, "a run cannot end as '%s'",
                          sl_store_run_status_name(status));
    }
    rc = sl_store_exec(st, "BEGIN IMMEDIATE", "locking the store to end a run", err);
    if (rc != 0) {
        return rc;
    }
    rc = sl_store_prepare(st,
                          "UPDATE sched_runs SET status = ?2, ended_at = ?3, duration_ms = ?4, "
                          "rows = ?5, error = ?6 WHERE id = ?1 AND status = 'running'",
                          &stmt, err);
    if (rc != 0) {
        goto fail;
    }
    sqlite3_bind_int64(stmt, 1, run_id);
    sqlite3_bind_text(stmt, 2, sl_store_run_status_name(status), -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 3, now_s);
    sqlite3_bind_int64(stmt, 4, duration_ms);
    sqlite3_bind_int64(stmt, 5, rows);
    if (error != NULL && error[0] != '\0') {
        sqlite3_bind_text(stmt, 6, error, -1, SQLITE_STATIC);
    }
    else {
        sqlite3_bind_null(stmt, 6);
    }
    rc = sl_store_step_done(st, stmt, "recording the end of a run", err);
    if (rc != 0) {
        goto fail;
    }
    if (sqlite3_changes(st->db) != 1) {
        rc = sl_store_run_get(st, run_id, &r, err);
        if (rc == 0) {
            rc = sl_err_set(err, SL_ESTATE, "run %lld of %s is already %s: %s",
                            (long long)run_id, r.job, sl_store_run_status_name(r.status),
                            r.error);
        }
        goto fail;
    }
    if (checkpoint != NULL) {
        rc = sl_store_prepare(st,
                              "UPDATE sched_jobs SET checkpoint = ?2 "
                              "WHERE name = (SELECT job FROM sched_runs WHERE id = ?1)",
                              &stmt, err);
        if (rc != 0) {
            goto fail;
        }
        sqlite3_bind_int64(stmt, 1, run_id);
        sqlite3_bind_text(stmt, 2, checkpoint, -1, SQLITE_STATIC);
        rc = sl_store_step_done(st, stmt, "saving the job's checkpoint", err);
        if (rc != 0) {
            goto fail;
        }
    }
    rc = sl_store_exec(st, "COMMIT", "committing the end of a run", err);
    if (rc != 0) {
        goto fail;
    }
    return 0;

fail:
    sl_store_rollback(st);
    return rc;
}

static int run_one(struct sl_store *st, sqlite3_stmt *stmt, struct sl_run *out,
                   const char *missing, struct sl_err *err)
{
    int rc = sl_store_row(st, stmt, read_run, out, "reading a run", err);

    return rc == SL_ENOTFOUND ? sl_err_set(err, SL_ENOTFOUND, "%s", missing) : rc;
}

int sl_store_run_get(struct sl_store *st, int64_t run_id, struct sl_run *out,
                     struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    char missing[64];
    int rc = sl_store_prepare(st, "SELECT " RUN_COLUMNS " FROM sched_runs WHERE id = ?1",
                              &stmt, err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_int64(stmt, 1, run_id);
    snprintf(missing, sizeof(missing), "no run %lld", (long long)run_id);
    return run_one(st, stmt, out, missing, err);
}

int sl_store_run_find(struct sl_store *st, const char *job, int64_t slot_s, struct sl_run *out,
                      struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    char missing[SL_STORE_JOB_MAX + 64];
    int rc = sl_store_prepare(st,
                              "SELECT " RUN_COLUMNS " FROM sched_runs "
                              "WHERE job = ?1 AND slot_s = ?2",
                              &stmt, err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, job, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, slot_s);
    snprintf(missing, sizeof(missing), "job %s has no run for slot %lld", job,
             (long long)slot_s);
    return run_one(st, stmt, out, missing, err);
}

int sl_store_run_list(struct sl_store *st, const char *job, size_t limit, struct sl_run **out,
                      size_t *n_out, struct sl_err *err)
{
    char sql[512];

    /* The limit is a number we format, never text from the caller. */
    snprintf(sql, sizeof(sql),
             "SELECT " RUN_COLUMNS " FROM sched_runs WHERE ?1 IS NULL OR job = ?1 "
             "ORDER BY id DESC LIMIT %lld",
             (long long)(limit > INT64_MAX ? INT64_MAX : (int64_t)limit));
    return sl_store_list(st, sql, job, sizeof(**out), read_run, (void **)out, n_out,
                         "listing runs", err);
}

int sl_store_run_abandon(struct sl_store *st, const char *owner, int64_t now_s, int64_t *n_out,
                         struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st,
                              "UPDATE sched_runs SET status = 'failed', ended_at = ?2, "
                              "duration_ms = max(0, (?2 - started_at) * 1000), "
                              "error = 'abandoned: scheduler ' || owner || "
                              "' stopped or lost its lease during the run' "
                              "WHERE status = 'running' AND owner != ?1",
                              &stmt, err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, now_s);
    rc = sl_store_step_done(st, stmt, "marking abandoned runs", err);
    if (rc == 0 && n_out != NULL) {
        *n_out = sqlite3_changes(st->db);
    }
    return rc;
}

int sl_store_run_prune(struct sl_store *st, int64_t before_s, int64_t *n_out,
                       struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st,
                              "DELETE FROM sched_runs WHERE status != 'running' "
                              "AND ended_at < ?1 AND id NOT IN "
                              "(SELECT last_run_id FROM sched_jobs WHERE last_run_id IS NOT NULL)",
                              &stmt, err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_int64(stmt, 1, before_s);
    rc = sl_store_step_done(st, stmt, "pruning run history", err);
    if (rc == 0 && n_out != NULL) {
        *n_out = sqlite3_changes(st->db);
    }
    return rc;
}

/* ---- jobs ---- */

static void read_job(sqlite3_stmt *stmt, void *dst)
{
    struct sl_job *j = dst;
    char status[16];
    int s;

    memset(j, 0, sizeof(*j));
    sl_store_col_text(stmt, 0, j->name, sizeof(j->name));
    sl_store_col_text(stmt, 1, j->schedule, sizeof(j->schedule));
    sl_store_col_text(stmt, 2, j->zone, sizeof(j->zone));
    j->is_enabled = sqlite3_column_int(stmt, 3) != 0;
    j->last_slot_s = sqlite3_column_int64(stmt, 4);
    j->last_run_id = sqlite3_column_int64(stmt, 5);
    j->next_run_s = sqlite3_column_int64(stmt, 6);
    j->run_requested_s = sqlite3_column_int64(stmt, 7);
    sl_store_col_text(stmt, 8, j->checkpoint, sizeof(j->checkpoint));
    j->updated_s = sqlite3_column_int64(stmt, 9);
    sl_store_col_text(stmt, 10, status, sizeof(status));
    s = sl_store_run_status_parse(status);
    j->last_status = s >= 0 ? (enum sl_run_status)s : SL_RUN_RUNNING;
    j->last_started_s = sqlite3_column_int64(stmt, 11);
    j->last_ended_s = sqlite3_column_int64(stmt, 12);
}

int sl_store_job_register(struct sl_store *st, const struct sl_job *j, int64_t now_s,
                          struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc;

    if (j->name[0] == '\0') {
        return sl_err_set(err, SL_EINVAL, "a job needs a name");
    }
    rc = sl_store_prepare(st,
                          "INSERT INTO sched_jobs (name, schedule, zone, enabled, next_run_s, "
                          "updated_at) VALUES (?1, ?2, ?3, ?4, nullif(?5, 0), ?6) "
                          "ON CONFLICT (name) DO UPDATE SET schedule = excluded.schedule, "
                          "zone = excluded.zone, enabled = excluded.enabled, "
                          "next_run_s = excluded.next_run_s, updated_at = excluded.updated_at",
                          &stmt, err);
    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, j->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, j->schedule, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, j->zone[0] != '\0' ? j->zone : "UTC", -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 4, j->is_enabled ? 1 : 0);
    sqlite3_bind_int64(stmt, 5, j->next_run_s);
    sqlite3_bind_int64(stmt, 6, now_s);
    return sl_store_step_done(st, stmt, "registering a job", err);
}

int sl_store_job_set_next(struct sl_store *st, const char *name, int64_t next_run_s,
                          int64_t now_s, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st,
                              "UPDATE sched_jobs SET next_run_s = nullif(?2, 0), updated_at = ?3 "
                              "WHERE name = ?1",
                              &stmt, err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, next_run_s);
    sqlite3_bind_int64(stmt, 3, now_s);
    rc = sl_store_step_done(st, stmt, "saving a job's next run", err);
    if (rc == 0 && sqlite3_changes(st->db) != 1) {
        rc = sl_err_set(err, SL_ENOTFOUND, "no job named '%s'", name);
    }
    return rc;
}

int sl_store_job_get(struct sl_store *st, const char *name, struct sl_job *out,
                     struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st, "SELECT " JOB_COLUMNS JOB_FROM " WHERE j.name = ?1", &stmt,
                              err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    rc = sl_store_row(st, stmt, read_job, out, "reading a job", err);
    if (rc == SL_ENOTFOUND) {
        rc = sl_err_set(err, SL_ENOTFOUND, "no job named '%s' (`sluice jobs list` shows the "
                        "jobs a scheduler registered)", name);
    }
    return rc;
}

int sl_store_job_list(struct sl_store *st, struct sl_job **out, size_t *n_out,
                      struct sl_err *err)
{
    return sl_store_list(st, "SELECT " JOB_COLUMNS JOB_FROM " ORDER BY j.name", NULL,
                         sizeof(**out), read_job, (void **)out, n_out, "listing jobs", err);
}

int sl_store_job_request_run(struct sl_store *st, const char *name, int64_t now_s,
                             int64_t *requested_s, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    struct sl_job j;
    int rc;

    *requested_s = 0;
    rc = sl_store_exec(st, "BEGIN IMMEDIATE", "locking the store to request a run", err);
    if (rc != 0) {
        return rc;
    }
    rc = sl_store_job_get(st, name, &j, err);
    if (rc == 0 && !j.is_enabled) {
        rc = sl_err_set(err, SL_ESTATE, "job %s is disabled (SLUICE_JOB_..._ENABLED); enable "
                        "it before running it", name);
    }
    if (rc != 0) {
        goto fail;
    }
    rc = sl_store_prepare(st,
                          "UPDATE sched_jobs SET run_requested_at = "
                          "coalesce(run_requested_at, ?2) WHERE name = ?1 "
                          "RETURNING run_requested_at",
                          &stmt, err);
    if (rc != 0) {
        goto fail;
    }
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, now_s);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        *requested_s = sqlite3_column_int64(stmt, 0);
        rc = sqlite3_step(stmt);
    }
    rc = rc == SQLITE_DONE ? 0 : sl_store_fail(st, rc, "requesting a run", err);
    sqlite3_finalize(stmt);
    if (rc == 0) {
        rc = sl_store_exec(st, "COMMIT", "committing the run request", err);
    }
    if (rc != 0) {
        goto fail;
    }
    return 0;

fail:
    sl_store_rollback(st);
    *requested_s = 0;
    return rc;
}

/* ---- maintenance ---- */

int sl_store_optimize(struct sl_store *st, bool *is_truncated, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc;

    if (is_truncated != NULL) {
        *is_truncated = false;
    }
    rc = sl_store_exec(st, "PRAGMA optimize", "optimizing the tenant store", err);
    if (rc != 0) {
        return rc;
    }
    rc = sl_store_prepare(st, "PRAGMA wal_checkpoint(TRUNCATE)", &stmt, err);
    if (rc != 0) {
        return rc;
    }
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        /* Columns: busy (1 when readers or writers kept it from finishing), log frames,
         * checkpointed frames. */
        if (is_truncated != NULL) {
            *is_truncated = sqlite3_column_int(stmt, 0) == 0;
        }
        rc = 0;
    }
    else {
        rc = sl_store_fail(st, rc, "checkpointing the write-ahead log", err);
    }
    sqlite3_finalize(stmt);
    return rc;
}

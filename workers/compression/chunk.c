/*
 * One chunk of the compression job: one tenant and one UTC day. The steps, and what each
 * proves before the next may run:
 *
 *   1. A part a previous run left 'verified' is finished first: its file is verified again
 *      and its delete (re)issued. One left 'exported' is written again from the raw rows,
 *      which are all still there.
 *   2. stats: the raw events of the day (uniqExact(id)) and the highest row version V. Every
 *      later step works on "this tenant-day AND version <= V", so rows that arrive while
 *      the chunk runs (late events, redeliveries) are left for the next part.
 *   3. rollup proof: every raw event id is in events_hourly and events_daily for its hour
 *      and day (the union of the rollup's states and the raw ids counts no more than the
 *      rollup alone). Missing ones (an insert whose view failed) are put back from the raw
 *      rows, which cannot double count (uniqExact/uniq states), and the proof runs again.
 *   4. export: the rows, highest version of each id once (a plain read when the day has
 *      no unmerged copies), as JSONEachRow into a zstd part with a manifest;
 *      cold_exports says 'exported'.
 *   5. verify: the file read back (zstd intact, sha256, rows) and the raw rows counted
 *      again: both must equal the manifest. cold_exports says 'verified'.
 *   6. delete: ALTER TABLE events DELETE for the same predicate, waited for until no such
 *      row is left; then, in one SQLite transaction, 'deleted' and the deletion audit row.
 *
 * Any failed proof stops the chunk with SL_ESTATE and nothing deleted.
 */
#include "compress_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "log.h"
#include "store_cold.h"

#define COMPONENT "compression"
#define SQL_MAX_BYTES (256 * 1024)
#define POLL_MIN_MS 50
#define POLL_MAX_MS 1000

/* Raw events of the day with version <= v (all when v < 0); with min_ts non-NULL also
 * their time range, the highest version and the number of stored rows (copies included). */
static int count_raw(struct compress_chunk *k, int64_t v, int64_t *rows, int64_t *min_ts,
                     int64_t *max_ts, int64_t *max_version, int64_t *copies)
{
    int64_t out[5] = {0, 0, 0, 0, 0};
    int rc;

    sl_ch_buf_reset(&k->sql);
    rc = sl_ch_buf_append_str(&k->sql, "SELECT uniqExact(id), toUInt32(min(ts)), "
                                       "toUInt32(max(ts)), max(version), count() FROM ");
    rc = rc != 0 ? rc : compress_chunk_table(k, "events");
    rc = rc != 0 ? rc : sl_ch_buf_append_str(&k->sql, " WHERE ");
    rc = rc != 0 ? rc : compress_chunk_where(k, v);
    rc = rc != 0 ? rc : sl_ch_buf_append_str(&k->sql, " FORMAT TabSeparated");
    if (rc != 0) {
        return compress_chunk_oom(k);
    }
    rc = compress_chunk_ints(k, "counting raw events", out, 5);
    *rows = out[0];
    if (min_ts != NULL) {
        *min_ts = out[1];
        *max_ts = out[2];
        *max_version = out[3];
        *copies = out[4];
    }
    return rc;
}

struct export_sink {
    struct compress_cold_writer *w;
    struct sl_err err;
    bool failed;
};

static int export_write(const void *data, size_t len, void *user)
{
    struct export_sink *s = user;

    if (compress_cold_writer_write(s->w, data, len, &s->err) != 0) {
        s->failed = true;
        return 1;
    }
    return 0;
}

/* Step 4: writes part `part` from the raw rows with version <= v. */
static int export_part(struct compress_chunk *k, int64_t part, int64_t v, int64_t min_ts,
                       int64_t max_ts, bool has_copies, struct compress_manifest *m)
{
    struct export_sink sink = {0};
    int rc;

    memset(m, 0, sizeof(*m));
    snprintf(m->tenant_id, sizeof(m->tenant_id), "%s", k->tenant);
    snprintf(m->day, sizeof(m->day), "%s", k->day);
    snprintf(m->table, sizeof(m->table), "events");
    m->min_ts = min_ts;
    m->max_ts = max_ts;
    m->max_version = v;
    m->created_s = k->run->now_s;
    m->schema_version = SL_STORE_SCHEMA_VERSION;
    rc = compress_sql_columns(k->c->ch, k->c->database, m->columns, sizeof(m->columns), k->err);
    if (rc != 0) {
        return rc;
    }
    /* With copies of some events still unmerged: the highest version of each id, once. The
     * IN set holds (id, version) pairs only, so memory follows the day's ids, not its rows'
     * width; LIMIT 1 BY drops repeats of the same delivery. Without copies (the usual case
     * once merges ran) a plain read is the same rows at half the cost; should a copy arrive
     * in between, the recount in verify_part finds more rows in the part than events. */
    sl_ch_buf_reset(&k->sql);
    rc = sl_ch_buf_append_str(&k->sql, "SELECT ");
    rc = rc != 0 ? rc : compress_sql_column_list(&k->sql, m->columns);
    rc = rc != 0 ? rc : sl_ch_buf_append_str(&k->sql, " FROM ");
    rc = rc != 0 ? rc : compress_chunk_table(k, "events");
    rc = rc != 0 ? rc : sl_ch_buf_append_str(&k->sql, " WHERE ");
    rc = rc != 0 ? rc : compress_chunk_where(k, v);
    if (has_copies) {
        rc = rc != 0 ? rc : sl_ch_buf_append_str(&k->sql, " AND (id, version) IN (SELECT id, "
                                                        "max(version) FROM ");
        rc = rc != 0 ? rc : compress_chunk_table(k, "events");
        rc = rc != 0 ? rc : sl_ch_buf_append_str(&k->sql, " WHERE ");
        rc = rc != 0 ? rc : compress_chunk_where(k, v);
        rc = rc != 0 ? rc : sl_ch_buf_append_str(&k->sql, " GROUP BY id) LIMIT 1 BY id");
    }
    rc = rc != 0 ? rc : sl_ch_buf_append_str(&k->sql, " FORMAT JSONEachRow");
    if (rc != 0) {
        return compress_chunk_oom(k);
    }
    rc = compress_cold_writer_open(&sink.w, k->dir, part, k->c->zstd_level, k->err);
    if (rc != 0) {
        return rc;
    }
    sl_err_clear(&sink.err);
    rc = sl_ch_query_stream(k->c->ch, k->sql.data, export_write, &sink, k->err);
    if (rc != 0 && sink.failed) {
        *k->err = sink.err;
        rc = sink.err.code;
    }
    if (rc == 0) {
        rc = compress_cold_writer_commit(sink.w, m, k->err);
    }
    compress_cold_writer_destroy(sink.w);
    if (rc != 0) {
        sl_err_wrap(k->err, "tenant %s day %s, exporting part %" PRId64, k->tenant, k->day,
                    part);
        return rc;
    }
    k->res->bytes += m->bytes;
    k->res->parts++;
    sl_metrics_counter_add(k->c->m_bytes, (uint64_t)m->bytes);
    return 0;
}

/* Reads part's manifest from the day folder. */
static int read_manifest(struct compress_chunk *k, int64_t part, struct compress_manifest *m)
{
    char file[COMPRESS_COLD_NAME_MAX], name[COMPRESS_COLD_NAME_MAX];
    char path[COMPRESS_COLD_PATH_MAX];
    int rc;

    compress_cold_part_names(part, file, name);
    rc = snprintf(path, sizeof(path), "%s/%s", k->dir, name);
    if (rc < 0 || (size_t)rc >= sizeof(path)) {
        return sl_err_set(k->err, SL_EINVAL, "path of %s in %s is too long", name, k->dir);
    }
    return compress_manifest_read(path, m, k->err);
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

/* Step 6: deletes the raw rows (version <= m->max_version) of the day and records it. */
static int delete_part(struct compress_chunk *k, const struct compress_manifest *m)
{
    struct sl_cold_deletion del = {0};
    char detail[1536];
    int64_t deadline = sched_run_clock_ms() + k->c->mutation_timeout_ms;
    int64_t wait_ms = POLL_MIN_MS;
    int64_t left = 0;
    int rc;

    sl_ch_buf_reset(&k->sql);
    rc = sl_ch_buf_append_str(&k->sql, "ALTER TABLE ");
    rc = rc != 0 ? rc : compress_chunk_table(k, "events");
    rc = rc != 0 ? rc : sl_ch_buf_append_str(&k->sql, " DELETE WHERE ");
    rc = rc != 0 ? rc : compress_chunk_where(k, m->max_version);
    if (rc != 0) {
        return compress_chunk_oom(k);
    }
    rc = compress_chunk_exec(k, "deleting raw events");
    if (rc != 0) {
        return rc;
    }
    /* 18.16 has no mutations_sync: the delete is done when no such row is left. */
    for (;;) {
        sl_ch_buf_reset(&k->sql);
        rc = sl_ch_buf_append_str(&k->sql, "SELECT count() FROM ");
        rc = rc != 0 ? rc : compress_chunk_table(k, "events");
        rc = rc != 0 ? rc : sl_ch_buf_append_str(&k->sql, " WHERE ");
        rc = rc != 0 ? rc : compress_chunk_where(k, m->max_version);
        rc = rc != 0 ? rc : sl_ch_buf_append_str(&k->sql, " FORMAT TabSeparated");
        if (rc != 0) {
            return compress_chunk_oom(k);
        }
        rc = compress_chunk_ints(k, "waiting for the delete", &left, 1);
        if (rc != 0 || left == 0) {
            break;
        }
        if (sched_run_should_stop(k->run)) {
            return sl_err_set(k->err, SL_ECANCELED, "tenant %s day %s: stopped while the "
                              "delete ran; the next run waits for it again", k->tenant,
                              k->day);
        }
        if (sched_run_clock_ms() >= deadline) {
            return sl_err_set(k->err, SL_ETIMEDOUT,
                              "tenant %s day %s: the raw delete (ALTER TABLE events DELETE) "
                              "still has %" PRId64 " rows to go after %" PRId64 " s; check "
                              "system.mutations for a stuck mutation. The cold part is kept "
                              "and verified; the next run waits again",
                              k->tenant, k->day, left, k->c->mutation_timeout_ms / 1000);
        }
        sleep_ms(wait_ms);
        wait_ms = wait_ms * 2 > POLL_MAX_MS ? POLL_MAX_MS : wait_ms * 2;
    }
    if (rc != 0) {
        return rc;
    }
    snprintf(detail, sizeof(detail), "day %s part %" PRId64 " version<=%" PRId64 " cold %s/%s",
             k->day, m->part, m->max_version, k->dir, m->file);
    del = (struct sl_cold_deletion){.run_id = k->run->run_id, .from_s = k->from_s,
                                    .cutoff_s = k->to_s, .rows = m->rows, .detail = detail};
    rc = sl_store_cold_deleted(k->run->store, k->tenant, k->day, &del, k->run->now_s, k->err);
    if (rc != 0) {
        return rc;
    }
    k->res->rows_deleted += m->rows;
    sl_metrics_counter_add(k->c->m_rows, (uint64_t)m->rows);
    sl_log_info_ctx(COMPONENT, &k->log, "compressed %s part %" PRId64 ": %" PRId64 " raw events "
                    "in cold storage (%" PRId64 " bytes) and deleted", k->day, m->part, m->rows,
                    m->bytes);
    return 0;
}

/* Step 5: the part on disk and the raw rows still agree with the manifest. */
static int verify_part(struct compress_chunk *k, const struct compress_manifest *m, bool recount)
{
    int64_t raw = 0;
    int rc = compress_cold_verify(k->dir, m, k->err);

    if (rc != 0) {
        sl_err_wrap(k->err, "tenant %s day %s, verifying cold part %" PRId64 " (nothing "
                    "deleted)", k->tenant, k->day, m->part);
        return rc == SL_ESTATE || rc == SL_EIO ? SL_ESTATE : rc;
    }
    if (!recount) {
        return 0;
    }
    rc = count_raw(k, m->max_version, &raw, NULL, NULL, NULL, NULL);
    if (rc == 0 && raw != m->rows) {
        rc = sl_err_set(k->err, SL_ESTATE,
                        "tenant %s day %s: cold part %" PRId64 " holds %" PRId64 " events but "
                        "the raw table has %" PRId64 " for it now; nothing deleted",
                        k->tenant, k->day, m->part, m->rows, raw);
    }
    return rc;
}

/* Finishes a part a previous run verified: verify the file again, then delete. */
static int finish_verified(struct compress_chunk *k, const struct sl_cold_day *row)
{
    struct compress_manifest m;
    int rc = read_manifest(k, row->parts, &m);

    if (rc == 0 && (strcmp(m.sha256, row->sha256) != 0 || m.max_version != row->max_version)) {
        rc = sl_err_set(k->err, SL_ESTATE, "tenant %s day %s: the manifest of part %" PRId64
                        " does not match cold_exports; nothing deleted", k->tenant, k->day,
                        row->parts);
    }
    rc = rc != 0 ? rc : verify_part(k, &m, false);
    return rc != 0 ? rc : delete_part(k, &m);
}

/* Steps 2-6 for the next part. *is_empty says there were no raw rows (nothing done). */
static int next_part(struct compress_chunk *k, int64_t part, bool *is_empty)
{
    struct sl_cold_day row;
    struct compress_manifest m;
    int64_t rows = 0, min_ts = 0, max_ts = 0, v = 0, copies = 0;
    int rc = count_raw(k, -1, &rows, &min_ts, &max_ts, &v, &copies);

    *is_empty = rc == 0 && rows == 0;
    if (rc != 0 || rows == 0) {
        return rc;
    }
    rc = compress_rollup_prove(k, v, rows);
    rc = rc != 0 ? rc : export_part(k, part, v, min_ts, max_ts, copies > rows, &m);
    if (rc != 0) {
        return rc;
    }
    memset(&row, 0, sizeof(row));
    snprintf(row.tenant_id, sizeof(row.tenant_id), "%s", k->tenant);
    snprintf(row.day, sizeof(row.day), "%s", k->day);
    snprintf(row.path, sizeof(row.path), "%s", k->dir);
    snprintf(row.sha256, sizeof(row.sha256), "%s", m.sha256);
    row.parts = part;
    row.part_rows = m.rows;
    row.min_ts = min_ts;
    row.max_ts = max_ts;
    row.max_version = v;
    rc = sl_store_cold_exported(k->run->store, &row, k->run->now_s, k->err);
    if (rc == 0 && k->c->hooks.after_export != NULL) {
        k->c->hooks.after_export(k->c->hooks.user, k->dir, m.file);
    }
    rc = rc != 0 ? rc : verify_part(k, &m, true);
    rc = rc != 0 ? rc : sl_store_cold_set_state(k->run->store, k->tenant, k->day, "exported",
                                                "verified", k->run->now_s, k->err);
    if (rc != 0) {
        return rc;
    }
    if (k->c->hooks.before_delete != NULL) {
        k->c->hooks.before_delete(k->c->hooks.user, k->tenant, k->day);
    }
    if (sched_run_should_stop(k->run)) {
        return sl_err_set(k->err, SL_ECANCELED, "tenant %s day %s: stopped before the delete; "
                          "part %" PRId64 " is verified and the next run deletes", k->tenant,
                          k->day, part);
    }
    return delete_part(k, &m);
}

int compress_chunk_run(struct compress_ctx *c, struct sched_run *run, const char *tenant_id,
                       const char *day, struct compress_chunk_result *res,
                       struct sl_err *err)
{
    struct compress_chunk k = {.c = c, .run = run, .tenant = tenant_id, .day = day, .res = res,
                      .err = err};
    struct sl_cold_day row;
    int64_t part = 1;
    bool is_empty = false;
    int rc;

    memset(res, 0, sizeof(*res));
    k.log = (struct sl_log_ctx){.job_id = run->job, .tenant_id = tenant_id};
    rc = compress_cold_day_start(day, &k.from_s, err);
    if (rc != 0) {
        return rc;
    }
    k.to_s = k.from_s + 86400;
    rc = compress_cold_day_dir(c->cold_dir, tenant_id, day, k.dir, sizeof(k.dir), err);
    if (rc != 0) {
        return rc;
    }
    sl_ch_buf_init(&k.sql, SQL_MAX_BYTES);
    rc = sl_store_cold_get(run->store, tenant_id, day, &row, err);
    if (rc == SL_ENOTFOUND) {
        rc = 0;
    }
    else if (rc == 0) {
        part = row.parts + 1;
        if (strcmp(row.state, "verified") == 0) {
            sl_log_info_ctx(COMPONENT, &k.log, "resuming %s part %" PRId64 ": verified, "
                            "delete pending", day, row.parts);
            rc = finish_verified(&k, &row);
        }
        else if (strcmp(row.state, "exported") == 0) {
            /* Not verified: the raw rows are all there, so the part is written again. */
            part = row.parts;
        }
    }
    /* Raw rows left after the last part (late events) make the next one. */
    for (int i = 0; rc == 0 && i < 2; i++) {
        if (i > 0 && sched_run_should_stop(run)) {
            rc = sl_err_set(err, SL_ECANCELED, "stopped between parts of tenant %s day %s",
                            tenant_id, day);
            break;
        }
        rc = next_part(&k, part, &is_empty);
        if (rc != 0 || is_empty) {
            break;
        }
        part++;
    }
    sl_ch_buf_fini(&k.sql);
    return rc;
}

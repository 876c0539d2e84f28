/*
 * Planning a backfill: chunk sizes, the aligned range from what an operator typed, the
 * next chunk after a job's cursor, and progress (fraction, rows/s, ETA) from its totals.
 * Pure functions of their arguments; any thread.
 */
#include "backfill_int.h"

#include <string.h>

#include "timefmt.h"

int backfill_plan_chunk_parse(const char *text, int64_t *chunk_s, struct sl_err *err)
{
    if (text != NULL && (strcmp(text, "1h") == 0 || strcmp(text, "3600") == 0)) {
        *chunk_s = BACKFILL_HOUR_S;
        return 0;
    }
    if (text != NULL && (strcmp(text, "1d") == 0 || strcmp(text, "86400") == 0)) {
        *chunk_s = BACKFILL_DAY_S;
        return 0;
    }
    return sl_err_set(err, SL_EINVAL, "--chunk '%s': use 1h or 1d", text != NULL ? text : "");
}

static bool is_bare_date(const char *text)
{
    return strlen(text) == 10 && text[4] == '-' && text[7] == '-';
}

static int64_t floor_to(int64_t t, int64_t step)
{
    int64_t r = t % step;

    return r < 0 ? t - r - step : t - r;
}

int backfill_plan_range(const char *from_text, const char *to_text, int64_t chunk_s,
                        int64_t *from_s, int64_t *to_s, struct sl_err *err)
{
    int64_t from = 0, to = 0;
    int rc;

    if (chunk_s <= 0) {
        return sl_err_set(err, SL_EINVAL, "chunk size must be positive");
    }
    rc = sl_timefmt_parse_date(from_text, &from, err);
    if (rc != 0) {
        return sl_err_wrap(err, "--from");
    }
    rc = sl_timefmt_parse_date(to_text, &to, err);
    if (rc != 0) {
        return sl_err_wrap(err, "--to");
    }
    if (is_bare_date(to_text)) {
        to += BACKFILL_DAY_S;
    }
    from = floor_to(from, chunk_s);
    if (to % chunk_s != 0) {
        to = floor_to(to, chunk_s) + chunk_s;
    }
    if (to <= from) {
        return sl_err_set(err, SL_EINVAL, "--to %s is not after --from %s", to_text, from_text);
    }
    *from_s = from;
    *to_s = to;
    return 0;
}

bool backfill_plan_next(const struct sl_backfill_job *job, int64_t *from_s, int64_t *to_s)
{
    int64_t end;

    if (job->chunk_s <= 0 || job->cursor_s >= job->to_s) {
        return false;
    }
    end = job->cursor_s + job->chunk_s;
    *from_s = job->cursor_s;
    *to_s = end < job->to_s ? end : job->to_s;
    return true;
}

void backfill_progress_of(const struct sl_backfill_job *job, struct backfill_progress *out)
{
    memset(out, 0, sizeof(*out));
    out->eta_s = -1;
    if (job->chunks_total > 0) {
        out->fraction = (double)job->chunks_done / (double)job->chunks_total;
        if (out->fraction > 1.0) {
            out->fraction = 1.0;
        }
    }
    if (job->busy_ms > 0) {
        out->rows_per_s = (double)job->rows_read * 1000.0 / (double)job->busy_ms;
    }
    if (job->chunks_done >= job->chunks_total) {
        out->eta_s = 0;
    }
    else if (job->chunks_done > 0 && job->busy_ms > 0) {
        int64_t left = job->chunks_total - job->chunks_done;

        out->eta_s = (job->busy_ms * left / job->chunks_done + 999) / 1000;
    }
}

/*
 * Waiting for ClickHouse mutations. `ALTER TABLE ... DELETE` returns at once; the delete is
 * finished when system.mutations says is_done = 1 for it (18.16 has no mutations_sync).
 * The wait polls with a growing pause and a deadline: a mutation that never finishes (its
 * WHERE throws, and 18.16 cannot kill it) must end the run with a failure someone sees,
 * not hang it. Newer servers say why in latest_fail_reason, which is detected, not assumed.
 */
#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "retention_int.h"

#define POLL_FIRST_MS 20
#define POLL_MAX_MS 500

bool retention_exec_should_stop(const struct retention_exec *x)
{
    return x->run != NULL && sched_run_should_stop(x->run);
}

int retention_wait_detect(struct retention_exec *x, struct sl_err *err)
{
    struct sl_ch_result res = {0};
    int rc = sl_ch_query(x->ch,
                         "SELECT count() FROM system.columns WHERE database = 'system' "
                         "AND table = 'mutations' AND name = 'latest_fail_reason' "
                         "FORMAT TabSeparated",
                         &res, err);

    if (rc != 0) {
        return sl_err_wrap(err, "checking what system.mutations reports");
    }
    x->has_fail_reason = res.len > 0 && res.body[0] == '1';
    sl_ch_result_fini(&res);
    return 0;
}

static void pause_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

/* The unfinished mutations of t as "id (N parts to do[: reason]); ..." in res. */
static int unfinished(struct retention_exec *x, const struct retention_table *t,
                      struct sl_ch_result *res, struct sl_err *err)
{
    struct sl_ch_buf sql;
    int rc;

    sl_ch_buf_init(&sql, 4096);
    rc = sl_ch_buf_appendf(&sql, "SELECT concat(mutation_id, ' (', toString(parts_to_do), "
                           "' parts to do%s)') FROM system.mutations WHERE ",
                           x->has_fail_reason ? "', if(latest_fail_reason = '', '', "
                                                "concat(': ', latest_fail_reason)), '"
                                              : "");
    if (rc == 0) {
        rc = retention_sql_table_is(&sql, x->database, t);
    }
    if (rc == 0) {
        rc = sl_ch_buf_append_str(&sql, " AND is_done = 0 ORDER BY mutation_id "
                                        "FORMAT TabSeparated");
    }
    if (rc != 0) {
        rc = sl_err_set(err, rc, "building the mutation query for %s", t->name);
    }
    if (rc == 0) {
        rc = sl_ch_query(x->ch, sql.data, res, err);
        if (rc != 0) {
            sl_err_wrap(err, "reading system.mutations");
        }
    }
    sl_ch_buf_fini(&sql);
    return rc;
}

int retention_wait_mutations(struct retention_exec *x, const struct retention_table *t,
                             int64_t timeout_ms, struct sl_err *err)
{
    int64_t deadline = sched_run_clock_ms() + timeout_ms;
    int64_t pause = POLL_FIRST_MS;

    for (;;) {
        struct sl_ch_result res = {0};
        int rc = unfinished(x, t, &res, err);

        if (rc != 0) {
            return rc;
        }
        if (res.len == 0) {
            sl_ch_result_fini(&res);
            return 0;
        }
        for (size_t i = 0; i < res.len; i++) {
            if (res.body[i] == '\n') {
                res.body[i] = i + 1 < res.len ? ';' : '\0';
            }
        }
        if (retention_exec_should_stop(x)) {
            rc = sl_err_set(err, SL_ECANCELED, "stopped while waiting for mutations on %s.%s: "
                            "%s", x->database, t->name, res.body);
        }
        else if (sched_run_clock_ms() >= deadline) {
            rc = sl_err_set(err, SL_ETIMEDOUT, "mutations on %s.%s unfinished after %" PRId64
                            " s: %s", x->database, t->name, timeout_ms / 1000, res.body);
        }
        sl_ch_result_fini(&res);
        if (rc != 0) {
            return rc;
        }
        pause_ms(pause);
        pause = pause * 2 > POLL_MAX_MS ? POLL_MAX_MS : pause * 2;
    }
}

/*
 * Notifications: the `notify` job (alert rules evaluated from ClickHouse on a schedule,
 * fire once / cooldown / cap / resolve, deliveries with retries and a log) and what the
 * CLI needs from it (`sluice channel test`). Everything else is notify_int.h's.
 */
#ifndef SLUICE_WORKERS_NOTIFY_NOTIFY_H
#define SLUICE_WORKERS_NOTIFY_NOTIFY_H

#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "err.h"
#include "store.h"
#include "worker.h"

/* Settings of notify (strings owned by the cfg module). Keys: SLUICE_SMTP_* for the mail
 * server every email channel uses, SLUICE_JOB_NOTIFY_* for the job. */
struct notify_settings {
    char *smtp_host;             /* SLUICE_SMTP_HOST; "" disables email delivery */
    int64_t smtp_port;           /* SLUICE_SMTP_PORT */
    char *smtp_user;             /* SLUICE_SMTP_USER; "" sends no AUTH */
    char *smtp_password;         /* SLUICE_SMTP_PASSWORD (secret) */
    char *smtp_from;             /* SLUICE_SMTP_FROM */
    char *smtp_starttls;         /* SLUICE_SMTP_STARTTLS: none, try, require */
    int64_t retry_base_s;        /* SLUICE_JOB_NOTIFY_RETRY_BASE_S */
    int64_t retry_max_s;         /* SLUICE_JOB_NOTIFY_RETRY_MAX_S */
    int64_t deadline_s;          /* SLUICE_JOB_NOTIFY_DEADLINE_S */
    int64_t attempt_timeout_ms;  /* SLUICE_JOB_NOTIFY_ATTEMPT_TIMEOUT_MS */
    int64_t connect_timeout_ms;  /* SLUICE_JOB_NOTIFY_CONNECT_TIMEOUT_MS */
    int64_t cap;                 /* SLUICE_JOB_NOTIFY_CAP */
    int64_t cap_interval_s;      /* SLUICE_JOB_NOTIFY_CAP_INTERVAL_S */
    int64_t min_events;          /* SLUICE_JOB_NOTIFY_MIN_EVENTS */
    int64_t stopped_lookback_s;  /* SLUICE_JOB_NOTIFY_STOPPED_LOOKBACK_S */
    int64_t batch;               /* SLUICE_JOB_NOTIFY_BATCH */
};

extern const struct sl_cfg_opt notify_cfg_opts[];
extern const size_t notify_cfg_n_opts;

/* The job's descriptor (name "notify", "@every 30s", missed runs skipped). */
extern const struct sched_worker notify_worker;

/* Outcome of one delivery attempt. */
struct notify_outcome {
    int64_t delivery_id;
    int64_t attempt;
    const char *status;  /* static: "sent", "retry" or "failed" */
    int64_t http_status; /* 0 when there was no HTTP answer (email, log, network error) */
    int64_t duration_ms;
    int64_t next_attempt_s;
    char error[256];
};

/*
 * Sends a test notification to channel_id now: queues a 'test' delivery, makes one
 * attempt, logs it, and fills *out. With retries > 0, failed attempts are repeated up to
 * that many times after the configured backoff (sleeping on the calling thread) until the
 * deadline. Returns 0 when an outcome was reached (out->status says which), else the store's
 * failure or SL_ENOTFOUND for an unknown channel. Any thread; blocks.
 */
int notify_channel_test(struct sl_store *st, const struct notify_settings *s,
                        const char *channel_id, int retries, int64_t now_s,
                        struct notify_outcome *out, struct sl_err *err);

#endif

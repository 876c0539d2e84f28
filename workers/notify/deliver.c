/*
 * Deliveries: the queue of notices in the tenant store, worked through one attempt at a
 * time. An attempt renders the notice for its channel, sends it with bounded timeouts, and
 * logs itself; a failure is retried after an exponential backoff until the delivery's
 * deadline, then the delivery is marked failed. Deliveries are independent: a channel that
 * never answers costs one attempt timeout per due delivery and its retries wait their
 * backoff, so every other channel's notices still go out in the same run.
 */
#include "notify_int.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "log.h"

#define COMPONENT "notify"

int64_t notify_backoff_s(int64_t attempt, int64_t base_s, int64_t max_s)
{
    int64_t wait = base_s > 0 ? base_s : 1;

    for (int64_t i = 1; i < attempt && wait < max_s; i++) {
        wait *= 2;
    }
    return wait < max_s ? wait : max_s;
}

static int64_t clock_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sends msg through channel c; fills r. */
static int send_to(struct sl_store *st, const struct notify_settings *s,
                   const struct sl_channel *c, const struct notify_msg *m, int64_t now_s,
                   struct notify_send_result *r, struct sl_err *err)
{
    char secret[SL_STORE_TARGET_MAX] = "";
    int rc;

    if (strcmp(c->kind, "webhook") == 0) {
        rc = sl_store_channel_secret(st, c->id, secret, sizeof(secret), err);
        if (rc != 0) {
            return rc;
        }
        rc = notify_webhook_send(m, c->target, secret, s, now_s, r);
        memset(secret, 0, sizeof(secret));
        return rc;
    }
    if (strcmp(c->kind, "slack") == 0) {
        return notify_slack_send(m, c->target, s, r);
    }
    if (strcmp(c->kind, "discord") == 0) {
        return notify_discord_send(m, c->target, s, r);
    }
    if (strcmp(c->kind, "email") == 0) {
        return notify_mail_send(m, c->target, s, now_s, r);
    }
    if (strcmp(c->kind, "log") == 0) {
        return notify_log_send(m, r);
    }
    snprintf(r->error, sizeof(r->error), "unknown channel kind '%s'", c->kind);
    r->is_permanent = true;
    return SL_EINVAL;
}

int notify_deliver_attempt(struct sl_store *st, const struct notify_settings *s,
                           const struct sl_delivery *d, int64_t now_s,
                           struct notify_outcome *out, struct sl_err *err)
{
    struct sl_delivery_attempt a = {.delivery_id = d->id, .attempt = d->attempts + 1,
                                    .started_s = now_s};
    struct notify_send_result r = {0};
    struct sl_channel c;
    struct sl_alert alert;
    struct notify_msg m;
    struct sl_err sub;
    int64_t started_ms = clock_ms();
    int64_t next_s = 0;
    int send_rc;
    int rc;

    memset(out, 0, sizeof(*out));
    sl_err_clear(&sub);
    rc = sl_store_channel_get(st, d->channel_id, &c, &sub);
    if (rc == 0 && d->alert_id > 0) {
        rc = sl_store_alert_get(st, d->alert_id, &alert, &sub);
    }
    if (rc == SL_ENOTFOUND) {
        /* The channel (or alert) was removed after the notice was queued: nothing to send
         * it to, ever. */
        snprintf(r.error, sizeof(r.error), "%.250s", sub.msg);
        r.is_permanent = true;
        send_rc = rc;
    }
    else if (rc != 0) {
        *err = sub;
        return rc;
    }
    else {
        if (d->alert_id > 0) {
            notify_msg_from_alert(&m, &alert, d->event, d->id, c.id);
        }
        else {
            notify_msg_test(&m, &c, d->id, now_s);
        }
        send_rc = send_to(st, s, &c, &m, now_s, &r, &sub);
        if (send_rc != 0 && r.error[0] == '\0') {
            snprintf(r.error, sizeof(r.error), "%.250s", sub.msg);
        }
    }
    a.duration_ms = clock_ms() - started_ms;
    a.http_status = r.http_status;
    snprintf(a.error, sizeof(a.error), "%s", send_rc == 0 ? "" : r.error);
    if (send_rc == 0) {
        snprintf(a.status, sizeof(a.status), "sent");
    }
    else {
        next_s = now_s + notify_backoff_s(a.attempt, s->retry_base_s, s->retry_max_s);
        /* Retry while the next attempt still falls within the deadline and the failure is
         * one that can pass (network, timeout, 5xx, 408/429); otherwise it failed for good. */
        snprintf(a.status, sizeof(a.status), "%s",
                 !r.is_permanent && next_s <= d->deadline_s ? "retry" : "failed");
    }
    rc = sl_store_delivery_record(st, &a, next_s, now_s, err);
    if (rc != 0) {
        return rc;
    }
    out->delivery_id = d->id;
    out->attempt = a.attempt;
    out->status = strcmp(a.status, "sent") == 0    ? "sent"
                  : strcmp(a.status, "retry") == 0 ? "retry"
                                                   : "failed";
    out->http_status = a.http_status;
    out->duration_ms = a.duration_ms;
    out->next_attempt_s = strcmp(a.status, "retry") == 0 ? next_s : 0;
    snprintf(out->error, sizeof(out->error), "%s", a.error);
    if (strcmp(a.status, "sent") != 0) {
        sl_log_warn(COMPONENT, "delivery %lld to channel %s (%s) attempt %lld: %s; %s",
                    (long long)d->id, d->channel_id, d->event, (long long)a.attempt, a.error,
                    strcmp(a.status, "retry") == 0 ? "will retry" : "gave up");
    }
    return 0;
}

/* Whether channel_id is among the n ids in dead. */
static bool is_dead(char (*dead)[SL_STORE_ID_MAX], size_t n, const char *channel_id)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(dead[i], channel_id) == 0) {
            return true;
        }
    }
    return false;
}

int notify_deliver_due(struct sl_store *st, const struct notify_settings *s, int64_t now_s,
                       bool (*should_stop)(void *), void *stop_arg,
                       struct notify_deliver_counts *counts, struct sl_err *err)
{
    char (*dead)[SL_STORE_ID_MAX] = NULL;
    struct sl_delivery *due = NULL;
    size_t n = 0, n_dead = 0;
    int rc = sl_store_delivery_due(st, now_s, (size_t)s->batch, &due, &n, err);

    memset(counts, 0, sizeof(*counts));
    if (rc == 0 && n > 0) {
        dead = sl_calloc(n, sizeof(*dead));
        rc = dead == NULL ? sl_err_set(err, SL_ENOMEM, "out of memory") : 0;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct notify_outcome out;

        if (should_stop != NULL && should_stop(stop_arg)) {
            break;
        }
        /* A channel that did not answer at all this run (timeout, refused) is not tried
         * again before the next run: one dead endpoint costs one attempt timeout per run,
         * however many notices wait for it, and cannot hold up the other channels. Its
         * skipped deliveries stay due. */
        if (is_dead(dead, n_dead, due[i].channel_id)) {
            continue;
        }
        rc = notify_deliver_attempt(st, s, &due[i], now_s, &out, err);
        if (rc == 0) {
            counts->sent += strcmp(out.status, "sent") == 0;
            counts->retry += strcmp(out.status, "retry") == 0;
            counts->failed += strcmp(out.status, "failed") == 0;
            if (strcmp(out.status, "sent") != 0 && out.http_status == 0) {
                memcpy(dead[n_dead++], due[i].channel_id, SL_STORE_ID_MAX);
            }
        }
    }
    sl_free(dead);
    sl_free(due);
    return rc;
}

int notify_channel_test(struct sl_store *st, const struct notify_settings *s,
                        const char *channel_id, int retries, int64_t now_s,
                        struct notify_outcome *out, struct sl_err *err)
{
    struct sl_channel c;
    struct sl_delivery d;
    int64_t id = 0;
    int rc = sl_store_channel_get(st, channel_id, &c, err);

    if (rc == 0) {
        rc = sl_store_delivery_add(st, 0, c.id, "test", now_s + s->deadline_s, now_s, &id, err);
    }
    for (int i = 0; rc == 0; i++) {
        struct timespec wait = {0};

        rc = sl_store_delivery_get(st, id, &d, err);
        if (rc == 0) {
            rc = notify_deliver_attempt(st, s, &d, now_s, out, err);
        }
        if (rc != 0 || strcmp(out->status, "retry") != 0 || i >= retries) {
            break;
        }
        /* The CLI waits out the backoff itself; the job never sleeps. */
        wait.tv_sec = (time_t)(out->next_attempt_s - now_s);
        nanosleep(&wait, NULL);
        now_s = out->next_attempt_s;
    }
    return rc;
}

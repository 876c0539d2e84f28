/*
 * The notify job: on each slot, evaluates every enabled rule (rules.c), runs each subject's
 * reading through the lifecycle (lifecycle.c), stores each decision with its queued
 * delivery in one transaction (store_notify.c), then makes the attempts that are due
 * (deliver.c). State lives only in SQLite, so a restarted or standby scheduler carries on
 * where the last run stopped. Its settings table (SLUICE_SMTP_*, SLUICE_JOB_NOTIFY_*) lives
 * here too.
 */
#include "notify.h"

#include <string.h>

#include "alloc.h"
#include "log.h"
#include "notify_int.h"

#define COMPONENT "notify"

const struct sl_cfg_opt notify_cfg_opts[] = {
    {.key = "SLUICE_SMTP_HOST", .type = SL_CFG_STRING, .def = "",
     .offset = offsetof(struct notify_settings, smtp_host),
     .desc = "SMTP server for email alert channels; empty: email channels fail to deliver."},
    {.key = "SLUICE_SMTP_PORT", .type = SL_CFG_INT, .def = "587", .min = 1, .max = 65535,
     .offset = offsetof(struct notify_settings, smtp_port),
     .desc = "Port of the SMTP server (587 submission, 25 relay, 465 is not supported)."},
    {.key = "SLUICE_SMTP_USER", .type = SL_CFG_STRING, .def = "",
     .offset = offsetof(struct notify_settings, smtp_user),
     .desc = "SMTP AUTH user name; empty: no AUTH."},
    {.key = "SLUICE_SMTP_PASSWORD", .type = SL_CFG_STRING, .def = "", .is_secret = true,
     .offset = offsetof(struct notify_settings, smtp_password),
     .desc = "SMTP AUTH password."},
    {.key = "SLUICE_SMTP_FROM", .type = SL_CFG_STRING, .def = "sluice@localhost",
     .offset = offsetof(struct notify_settings, smtp_from),
     .desc = "Sender address of alert mail (envelope and From header)."},
    {.key = "SLUICE_SMTP_STARTTLS", .type = SL_CFG_ENUM, .def = "try",
     .choices = "none|try|require", .offset = offsetof(struct notify_settings, smtp_starttls),
     .desc = "STARTTLS: none, try (when the server offers it) or require (fail without)."},
    {.key = "SLUICE_JOB_NOTIFY_RETRY_BASE_S", .type = SL_CFG_INT, .def = "30", .min = 1,
     .max = 86400, .offset = offsetof(struct notify_settings, retry_base_s),
     .desc = "Wait after a delivery's first failed attempt; doubles after each further one."},
    {.key = "SLUICE_JOB_NOTIFY_RETRY_MAX_S", .type = SL_CFG_INT, .def = "900", .min = 1,
     .max = 86400, .offset = offsetof(struct notify_settings, retry_max_s),
     .desc = "Longest wait between two attempts of a delivery."},
    {.key = "SLUICE_JOB_NOTIFY_DEADLINE_S", .type = SL_CFG_INT, .def = "3600", .min = 1,
     .max = 7 * 86400, .offset = offsetof(struct notify_settings, deadline_s),
     .desc = "A delivery not sent this long after it was queued is marked failed."},
    {.key = "SLUICE_JOB_NOTIFY_ATTEMPT_TIMEOUT_MS", .type = SL_CFG_INT, .def = "10000",
     .min = 100, .max = 300000, .offset = offsetof(struct notify_settings, attempt_timeout_ms),
     .desc = "Longest one delivery attempt may take (HTTP request, each SMTP step)."},
    {.key = "SLUICE_JOB_NOTIFY_CONNECT_TIMEOUT_MS", .type = SL_CFG_INT, .def = "3000",
     .min = 100, .max = 60000, .offset = offsetof(struct notify_settings, connect_timeout_ms),
     .desc = "Longest a webhook/Slack/Discord connection may take to open."},
    {.key = "SLUICE_JOB_NOTIFY_CAP", .type = SL_CFG_INT, .def = "10", .min = 1, .max = 100000,
     .offset = offsetof(struct notify_settings, cap),
     .desc = "Most notices per rule and subject per cap interval (flapping alerts)."},
    {.key = "SLUICE_JOB_NOTIFY_CAP_INTERVAL_S", .type = SL_CFG_INT, .def = "3600", .min = 1,
     .max = 30 * 86400, .offset = offsetof(struct notify_settings, cap_interval_s),
     .desc = "The interval SLUICE_JOB_NOTIFY_CAP counts in."},
    {.key = "SLUICE_JOB_NOTIFY_MIN_EVENTS", .type = SL_CFG_INT, .def = "10", .min = 1,
     .max = 1000000000, .offset = offsetof(struct notify_settings, min_events),
     .desc = "Events a tenant must send in the window before error_rate can fire."},
    {.key = "SLUICE_JOB_NOTIFY_STOPPED_LOOKBACK_S", .type = SL_CFG_INT, .def = "604800",
     .min = 60, .max = 90 * 86400, .offset = offsetof(struct notify_settings, stopped_lookback_s),
     .desc = "ingestion_stopped watches tenants that sent events within this look-back."},
    {.key = "SLUICE_JOB_NOTIFY_BATCH", .type = SL_CFG_INT, .def = "200", .min = 1,
     .max = 100000, .offset = offsetof(struct notify_settings, batch),
     .desc = "Most delivery attempts one run makes (the rest wait for the next run)."},
};
const size_t notify_cfg_n_opts = sizeof(notify_cfg_opts) / sizeof(notify_cfg_opts[0]);

struct notify {
    const struct notify_settings *s; /* borrowed from the scheduler */
    struct sl_ch *ch;
    char database[256];
    /* Series in the scheduler's registry (NULL without one: updates are then ignored). */
    struct sl_metrics_series *m_alerts_fired;
    struct sl_metrics_series *m_alerts_resolved;
    struct sl_metrics_series *m_sent;
    struct sl_metrics_series *m_retry;
    struct sl_metrics_series *m_failed;
    struct sl_metrics_series *m_rule_errors;
};

static void register_metrics(struct notify *n, struct sl_metrics *m)
{
    static const char *const event[] = {"event"};
    static const char *const status[] = {"status"};
    struct sl_metrics_family *f;

    if (m == NULL) {
        return;
    }
    f = sl_metrics_counter(m, "sluice_notify_alerts_total",
                           "Alerts the notify job opened (firing) and closed (resolved).", event,
                           1);
    n->m_alerts_fired = sl_metrics_series_get(f, (const char *const[]){"firing"});
    n->m_alerts_resolved = sl_metrics_series_get(f, (const char *const[]){"resolved"});
    f = sl_metrics_counter(m, "sluice_notify_delivery_attempts_total",
                           "Notification delivery attempts by outcome.", status, 1);
    n->m_sent = sl_metrics_series_get(f, (const char *const[]){"sent"});
    n->m_retry = sl_metrics_series_get(f, (const char *const[]){"retry"});
    n->m_failed = sl_metrics_series_get(f, (const char *const[]){"failed"});
    n->m_rule_errors = sl_metrics_series_get(
        sl_metrics_counter(m, "sluice_notify_rule_errors_total",
                           "Rule evaluations that failed (ClickHouse or store errors).", NULL, 0),
        NULL);
}

static int notify_create(const void *settings, const struct sched_worker_env *env,
                         void **ctx_out, struct sl_err *err)
{
    struct notify *n = sl_calloc(1, sizeof(*n));
    const char *db = env->ch->database != NULL && env->ch->database[0] != '\0'
                         ? env->ch->database
                         : "sluice";
    int rc;

    *ctx_out = NULL;
    if (n == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    n->s = settings;
    if (strlen(db) >= sizeof(n->database)) {
        sl_free(n);
        return sl_err_set(err, SL_EINVAL, "ClickHouse database name is too long");
    }
    memcpy(n->database, db, strlen(db) + 1);
    rc = sl_ch_create(&n->ch, env->ch, err);
    if (rc != 0) {
        sl_free(n);
        return rc;
    }
    register_metrics(n, env->metrics);
    *ctx_out = n;
    return 0;
}

static void notify_destroy(void *ctx)
{
    struct notify *n = ctx;

    if (n != NULL) {
        sl_ch_destroy(n->ch);
        sl_free(n);
    }
}

static bool stop_cb(void *arg)
{
    return sched_run_should_stop(arg);
}

/* Whether a state must be written: anything but the value changed. */
static bool state_changed(const struct sl_alert_state *a, const struct sl_alert_state *b)
{
    return a->is_firing != b->is_firing || a->is_notified != b->is_notified ||
           a->since_s != b->since_s || a->alert_id != b->alert_id ||
           a->last_notified_s != b->last_notified_s || a->sent_in_interval != b->sent_in_interval;
}

/* Runs one subject's reading through the lifecycle and stores the decision. *n_changes
 * counts stored decisions. */
static int apply_obs(struct notify *n, struct sl_store *st, const struct sl_rule *r,
                     const struct sl_alert_state *prev, const struct notify_obs *o,
                     int64_t now_s, int64_t *n_changes, struct sl_err *err)
{
    const struct notify_settings *s = n->s;
    const struct notify_policy policy = {.cooldown_s = r->cooldown_s, .cap = s->cap,
                                         .interval_s = s->cap_interval_s};
    const struct sl_log_ctx log_ctx = {.job_id = "notify",
                                       .tenant_id = o->tenant_id[0] ? o->tenant_id : NULL};
    struct sl_alert_change c = {.op = SL_ALERT_KEEP, .channel_id = r->channel_id,
                                .deadline_s = now_s + s->deadline_s, .now_s = now_s};
    enum notify_action act = notify_lifecycle_step(prev, o->condition, o->value, &policy,
                                                   now_s, &c.state);
    int rc;

    if (act == NOTIFY_NONE && (prev->since_s == 0 || !state_changed(prev, &c.state))) {
        return 0;
    }
    snprintf(c.state.rule_id, sizeof(c.state.rule_id), "%s", r->id);
    snprintf(c.state.subject, sizeof(c.state.subject), "%s", o->subject);
    switch (act) {
    case NOTIFY_FIRE:
    case NOTIFY_FIRE_SILENT:
        c.op = SL_ALERT_OPEN;
        c.alert = (struct sl_alert){.value = o->value,
                                    .threshold = o->threshold > 0 ? o->threshold : r->threshold,
                                    .window_s = r->window_s, .is_notified = act == NOTIFY_FIRE};
        snprintf(c.alert.rule_id, sizeof(c.alert.rule_id), "%s", r->id);
        snprintf(c.alert.rule_name, sizeof(c.alert.rule_name), "%s", r->name);
        snprintf(c.alert.tenant_id, sizeof(c.alert.tenant_id), "%s", o->tenant_id);
        snprintf(c.alert.subject, sizeof(c.alert.subject), "%s", o->subject);
        snprintf(c.alert.kind, sizeof(c.alert.kind), "%s", r->kind);
        snprintf(c.alert.message, sizeof(c.alert.message), "%s", o->message);
        c.deliver_event = act == NOTIFY_FIRE ? "firing" : NULL;
        break;
    case NOTIFY_LATE:
        c.op = SL_ALERT_NOTIFY;
        c.state.alert_id = prev->alert_id;
        c.deliver_event = "firing";
        break;
    case NOTIFY_RESOLVE:
    case NOTIFY_RESOLVE_SILENT:
        c.op = SL_ALERT_RESOLVE;
        c.state.alert_id = prev->alert_id;
        c.resolved_value = o->value;
        c.deliver_event = act == NOTIFY_RESOLVE ? "resolved" : NULL;
        break;
    case NOTIFY_NONE:
        break;
    }
    rc = sl_store_alert_apply(st, &c, err);
    if (rc != 0) {
        return rc;
    }
    (*n_changes)++;
    if (c.op == SL_ALERT_OPEN) {
        sl_metrics_counter_add(n->m_alerts_fired, 1);
    }
    else if (c.op == SL_ALERT_RESOLVE) {
        sl_metrics_counter_add(n->m_alerts_resolved, 1);
    }
    if (act != NOTIFY_NONE) {
        sl_log_info_ctx(COMPONENT, &log_ctx, "rule %s (%s) %s for '%s': value %g, alert %lld",
                        r->id, r->kind, notify_action_name(act), o->subject, o->value,
                        (long long)c.alert_id);
    }
    return 0;
}

/* Evaluates one rule and stores what changed. */
static int run_rule(struct notify *n, struct sl_store *st, const struct sl_rule *r,
                    int64_t now_s, int64_t *n_changes, struct sl_err *err)
{
    struct sl_alert_state *states = NULL;
    struct notify_eval ev = {0};
    size_t n_states = 0;
    bool *is_seen = NULL;
    int rc = notify_rule_eval(n->ch, n->database, st, n->s, r, now_s, &ev, err);

    if (rc == 0) {
        rc = sl_store_alert_state_list(st, r->id, &states, &n_states, err);
    }
    if (rc == 0 && n_states > 0) {
        is_seen = sl_calloc(n_states, sizeof(*is_seen));
        rc = is_seen == NULL ? sl_err_set(err, SL_ENOMEM, "out of memory") : 0;
    }
    for (size_t i = 0; rc == 0 && i < ev.n; i++) {
        struct sl_alert_state zero = {0};
        const struct sl_alert_state *prev = &zero;

        for (size_t k = 0; k < n_states; k++) {
            if (strcmp(states[k].subject, ev.obs[i].subject) == 0) {
                prev = &states[k];
                is_seen[k] = true;
            }
        }
        rc = apply_obs(n, st, r, prev, &ev.obs[i], now_s, n_changes, err);
    }
    /* A firing subject the query no longer returns: its condition is gone (no events, no
     * errors), except for ingestion_stopped, where silence past the look-back is still
     * silence. */
    for (size_t k = 0; rc == 0 && k < n_states; k++) {
        struct notify_obs gone = {0};

        if (is_seen[k] || !states[k].is_firing || ev.keeps_missing) {
            continue;
        }
        snprintf(gone.subject, sizeof(gone.subject), "%s", states[k].subject);
        snprintf(gone.message, sizeof(gone.message), "no data for %s any more",
                 states[k].subject);
        rc = apply_obs(n, st, r, &states[k], &gone, now_s, n_changes, err);
    }
    sl_free(is_seen);
    sl_free(states);
    notify_eval_fini(&ev);
    return rc;
}

static enum sched_outcome notify_run(void *ctx, struct sched_run *run)
{
    struct notify *n = ctx;
    const struct sl_log_ctx log_ctx = {.job_id = run->job};
    struct sl_rule *rules = NULL;
    size_t n_rules = 0;
    struct notify_deliver_counts counts;
    int64_t n_changes = 0, n_failed = 0;
    struct sl_err first;
    int rc;

    sl_err_clear(&first);
    rc = sl_store_rule_list(run->store, NULL, &rules, &n_rules, &run->err);
    if (rc != 0) {
        return rc == SL_EBUSY ? SCHED_RETRY : SCHED_FAILED;
    }
    for (size_t i = 0; i < n_rules && !sched_run_should_stop(run); i++) {
        struct sl_err err;

        if (!rules[i].is_enabled) {
            continue;
        }
        sl_err_clear(&err);
        rc = run_rule(n, run->store, &rules[i], run->now_s, &n_changes, &err);
        if (rc != 0) {
            /* One rule's failure (ClickHouse down, a busy store) must not keep the other
             * rules or the deliveries from running; the run reports it as a retry. */
            sl_metrics_counter_add(n->m_rule_errors, 1);
            if (n_failed++ == 0) {
                first = err;
            }
            sl_log_warn_ctx(COMPONENT, &log_ctx, "rule %s (%s): %s", rules[i].id,
                            rules[i].kind, err.msg);
        }
    }
    sl_free(rules);
    rc = notify_deliver_due(run->store, n->s, run->now_s, stop_cb, run, &counts, &run->err);
    sl_metrics_counter_add(n->m_sent, (uint64_t)counts.sent);
    sl_metrics_counter_add(n->m_retry, (uint64_t)counts.retry);
    sl_metrics_counter_add(n->m_failed, (uint64_t)counts.failed);
    run->rows = n_changes + counts.sent + counts.retry + counts.failed;
    if (rc != 0) {
        return rc == SL_EBUSY ? SCHED_RETRY : SCHED_FAILED;
    }
    if (n_failed > 0) {
        /* Retry: evaluation failures are ClickHouse or store trouble that passes; the next
         * slot evaluates every rule again from the stored state. */
        sl_err_set(&run->err, first.code, "%lld of %zu rules failed, first: %s",
                   (long long)n_failed, n_rules, first.msg);
        return SCHED_RETRY;
    }
    if (sched_run_should_stop(run)) {
        sl_err_set(&run->err, SL_ECANCELED, "stopped");
        return SCHED_RETRY;
    }
    return SCHED_DONE;
}

const struct sched_worker notify_worker = {
    .name = "notify",
    .summary = "evaluates alert rules and delivers notifications (webhook, Slack, Discord, "
               "email, log)",
    .default_schedule = "@every 30s",
    .default_missed = SCHED_MISSED_SKIP,
    .default_timeout_s = 300,
    .opts = notify_cfg_opts,
    .n_opts = sizeof(notify_cfg_opts) / sizeof(notify_cfg_opts[0]),
    .settings_size = sizeof(struct notify_settings),
    .create = notify_create,
    .run = notify_run,
    .destroy = notify_destroy,
};

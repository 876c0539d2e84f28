/*
 * Notification rows: alert state per rule and subject, alerts, the delivery queue and the
 * per-attempt delivery log (schema version 6). Deciding what to store is the notify
 * worker's; every change here is one transaction with bound parameters only.
 */
#include "store_notify.h"

#include <string.h>

#include "alloc.h"
#include "store_int.h"

#define STATE_COLUMNS                                                                     \
    "rule_id, subject, state = 'firing', notified, coalesce(value, 0), since, "          \
    "coalesce(alert_id, 0), coalesce(last_notified_at, 0), coalesce(interval_start, 0), "  \
    "sent_in_interval, updated_at"

#define ALERT_COLUMNS                                                                     \
    "id, rule_id, rule_name, coalesce(tenant_id, ''), subject, kind, state = 'firing', "  \
    "notified, coalesce(value, 0), coalesce(threshold, 0), window_s, message, fired_at, "  \
    "coalesce(resolved_at, 0), coalesce(resolved_value, 0)"

#define DELIVERY_COLUMNS                                                                  \
    "id, coalesce(alert_id, 0), channel_id, event, status, attempts, next_attempt_at, "   \
    "deadline_at, coalesce(http_status, 0), coalesce(error, ''), created_at, updated_at"

#define ATTEMPT_COLUMNS                                                                   \
    "id, delivery_id, attempt, started_at, duration_ms, status, coalesce(http_status, 0), " \
    "coalesce(error, '')"

#define LIST_DEFAULT 100

static void read_state(sqlite3_stmt *stmt, void *dst)
{
    struct sl_alert_state *s = dst;

    memset(s, 0, sizeof(*s));
    sl_store_col_text(stmt, 0, s->rule_id, sizeof(s->rule_id));
    sl_store_col_text(stmt, 1, s->subject, sizeof(s->subject));
    s->is_firing = sqlite3_column_int(stmt, 2) != 0;
    s->is_notified = sqlite3_column_int(stmt, 3) != 0;
    s->value = sqlite3_column_double(stmt, 4);
    s->since_s = sqlite3_column_int64(stmt, 5);
    s->alert_id = sqlite3_column_int64(stmt, 6);
    s->last_notified_s = sqlite3_column_int64(stmt, 7);
    s->interval_start_s = sqlite3_column_int64(stmt, 8);
    s->sent_in_interval = sqlite3_column_int64(stmt, 9);
    s->updated_s = sqlite3_column_int64(stmt, 10);
}

static void read_alert(sqlite3_stmt *stmt, void *dst)
{
    struct sl_alert *a = dst;

    memset(a, 0, sizeof(*a));
    a->id = sqlite3_column_int64(stmt, 0);
    sl_store_col_text(stmt, 1, a->rule_id, sizeof(a->rule_id));
    sl_store_col_text(stmt, 2, a->rule_name, sizeof(a->rule_name));
    sl_store_col_text(stmt, 3, a->tenant_id, sizeof(a->tenant_id));
    sl_store_col_text(stmt, 4, a->subject, sizeof(a->subject));
    sl_store_col_text(stmt, 5, a->kind, sizeof(a->kind));
    a->is_firing = sqlite3_column_int(stmt, 6) != 0;
    a->is_notified = sqlite3_column_int(stmt, 7) != 0;
    a->value = sqlite3_column_double(stmt, 8);
    a->threshold = sqlite3_column_double(stmt, 9);
    a->window_s = sqlite3_column_int64(stmt, 10);
    sl_store_col_text(stmt, 11, a->message, sizeof(a->message));
    a->fired_s = sqlite3_column_int64(stmt, 12);
    a->resolved_s = sqlite3_column_int64(stmt, 13);
    a->resolved_value = sqlite3_column_double(stmt, 14);
}

static void read_delivery(sqlite3_stmt *stmt, void *dst)
{
    struct sl_delivery *d = dst;

    memset(d, 0, sizeof(*d));
    d->id = sqlite3_column_int64(stmt, 0);
    d->alert_id = sqlite3_column_int64(stmt, 1);
    sl_store_col_text(stmt, 2, d->channel_id, sizeof(d->channel_id));
    sl_store_col_text(stmt, 3, d->event, sizeof(d->event));
    sl_store_col_text(stmt, 4, d->status, sizeof(d->status));
    d->attempts = sqlite3_column_int64(stmt, 5);
    d->next_attempt_s = sqlite3_column_int64(stmt, 6);
    d->deadline_s = sqlite3_column_int64(stmt, 7);
    d->http_status = sqlite3_column_int64(stmt, 8);
    sl_store_col_text(stmt, 9, d->error, sizeof(d->error));
    d->created_s = sqlite3_column_int64(stmt, 10);
    d->updated_s = sqlite3_column_int64(stmt, 11);
}

static void read_attempt(sqlite3_stmt *stmt, void *dst)
{
    struct sl_delivery_attempt *a = dst;

    memset(a, 0, sizeof(*a));
    a->id = sqlite3_column_int64(stmt, 0);
    a->delivery_id = sqlite3_column_int64(stmt, 1);
    a->attempt = sqlite3_column_int64(stmt, 2);
    a->started_s = sqlite3_column_int64(stmt, 3);
    a->duration_ms = sqlite3_column_int64(stmt, 4);
    sl_store_col_text(stmt, 5, a->status, sizeof(a->status));
    a->http_status = sqlite3_column_int64(stmt, 6);
    sl_store_col_text(stmt, 7, a->error, sizeof(a->error));
}

static int insert_alert(struct sl_store *st, const struct sl_alert *a, int64_t now_s,
                        int64_t *id_out, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st,
                              "INSERT INTO alerts (rule_id, rule_name, tenant_id, subject, kind, "
                              "state, value, threshold, window_s, message, notified, fired_at) "
                              "VALUES (?1, ?2, NULLIF(?3, ''), ?4, ?5, 'firing', ?6, ?7, ?8, ?9, "
                              "?10, ?11)",
                              &stmt, err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, a->rule_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, a->rule_name, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, a->tenant_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, a->subject, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 5, a->kind, -1, SQLITE_STATIC);
    sqlite3_bind_double(stmt, 6, a->value);
    sqlite3_bind_double(stmt, 7, a->threshold);
    sqlite3_bind_int64(stmt, 8, a->window_s);
    sqlite3_bind_text(stmt, 9, a->message, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 10, a->is_notified ? 1 : 0);
    sqlite3_bind_int64(stmt, 11, now_s);
    rc = sl_store_step_done(st, stmt, "recording an alert", err);
    if (rc == 0) {
        *id_out = sqlite3_last_insert_rowid(st->db);
    }
    return rc;
}

/* Runs sql (an UPDATE of alerts) with ?1 = alert id, ?2 = now, ?3 = a value (binding a
 * number the statement does not use is a no-op). */
static int update_alert(struct sl_store *st, const char *sql, int64_t id, int64_t now_s,
                        double value, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st, sql, &stmt, err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_int64(stmt, 1, id);
    sqlite3_bind_int64(stmt, 2, now_s);
    sqlite3_bind_double(stmt, 3, value);
    return sl_store_step_done(st, stmt, "updating an alert", err);
}

static int insert_delivery(struct sl_store *st, int64_t alert_id, const char *channel_id,
                           const char *event, int64_t deadline_s, int64_t now_s,
                           int64_t *id_out, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st,
                              "INSERT INTO deliveries (alert_id, channel_id, event, status, "
                              "next_attempt_at, deadline_at, created_at, updated_at) VALUES "
                              "(NULLIF(?1, 0), ?2, ?3, 'pending', ?4, ?5, ?4, ?4)",
                              &stmt, err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_int64(stmt, 1, alert_id);
    sqlite3_bind_text(stmt, 2, channel_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, event, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 4, now_s);
    sqlite3_bind_int64(stmt, 5, deadline_s);
    rc = sl_store_step_done(st, stmt, "queueing a delivery", err);
    if (rc == 0) {
        *id_out = sqlite3_last_insert_rowid(st->db);
    }
    return rc;
}

static int upsert_state(struct sl_store *st, const struct sl_alert_state *s, int64_t now_s,
                        struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st,
                              "INSERT INTO alert_state (rule_id, subject, state, value, since, "
                              "alert_id, notified, last_notified_at, interval_start, "
                              "sent_in_interval, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, "
                              "NULLIF(?6, 0), ?7, NULLIF(?8, 0), NULLIF(?9, 0), ?10, ?11) "
                              "ON CONFLICT (rule_id, subject) DO UPDATE SET state = "
                              "excluded.state, value = excluded.value, since = excluded.since, "
                              "alert_id = excluded.alert_id, notified = excluded.notified, "
                              "last_notified_at = excluded.last_notified_at, interval_start = "
                              "excluded.interval_start, sent_in_interval = "
                              "excluded.sent_in_interval, updated_at = excluded.updated_at",
                              &stmt, err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, s->rule_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, s->subject, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, s->is_firing ? "firing" : "ok", -1, SQLITE_STATIC);
    sqlite3_bind_double(stmt, 4, s->value);
    sqlite3_bind_int64(stmt, 5, s->since_s);
    sqlite3_bind_int64(stmt, 6, s->alert_id);
    sqlite3_bind_int(stmt, 7, s->is_notified ? 1 : 0);
    sqlite3_bind_int64(stmt, 8, s->last_notified_s);
    sqlite3_bind_int64(stmt, 9, s->interval_start_s);
    sqlite3_bind_int64(stmt, 10, s->sent_in_interval);
    sqlite3_bind_int64(stmt, 11, now_s);
    return sl_store_step_done(st, stmt, "storing an alert state", err);
}

int sl_store_alert_apply(struct sl_store *st, struct sl_alert_change *c, struct sl_err *err)
{
    struct sl_alert_state s = c->state;
    int64_t alert_id = s.alert_id;
    int64_t delivery_id = 0;
    int rc;

    rc = sl_store_exec(st, "BEGIN IMMEDIATE", "locking the store to record an alert", err);
    if (rc != 0) {
        return rc;
    }
    switch (c->op) {
    case SL_ALERT_OPEN:
        rc = insert_alert(st, &c->alert, c->now_s, &alert_id, err);
        s.alert_id = alert_id;
        break;
    case SL_ALERT_NOTIFY:
        rc = update_alert(st, "UPDATE alerts SET notified = 1 WHERE id = ?1",
                          alert_id, c->now_s, 0.0, err);
        break;
    case SL_ALERT_RESOLVE:
        rc = update_alert(st, "UPDATE alerts SET state = 'resolved', resolved_at = ?2, "
                              "resolved_value = ?3 WHERE id = ?1",
                          alert_id, c->now_s, c->resolved_value, err);
        s.alert_id = 0; /* an ok state holds no alert */
        break;
    case SL_ALERT_KEEP:
        break;
    }
    if (rc == 0 && c->deliver_event != NULL) {
        rc = insert_delivery(st, alert_id, c->channel_id, c->deliver_event, c->deadline_s,
                             c->now_s, &delivery_id, err);
    }
    if (rc == 0) {
        rc = upsert_state(st, &s, c->now_s, err);
    }
    if (rc == 0) {
        rc = sl_store_exec(st, "COMMIT", "committing an alert", err);
    }
    if (rc != 0) {
        sl_store_rollback(st);
        return rc;
    }
    c->state = s;
    c->alert_id = alert_id;
    c->delivery_id = delivery_id;
    return 0;
}

int sl_store_alert_state_list(struct sl_store *st, const char *rule_id,
                              struct sl_alert_state **out, size_t *n_out, struct sl_err *err)
{
    return sl_store_list(st, "SELECT " STATE_COLUMNS " FROM alert_state WHERE rule_id = ?1 "
                             "ORDER BY subject",
                         rule_id, sizeof(**out), read_state, (void **)out, n_out,
                         "listing alert states", err);
}

int sl_store_alert_get(struct sl_store *st, int64_t id, struct sl_alert *out,
                       struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st, "SELECT " ALERT_COLUMNS " FROM alerts WHERE id = ?1", &stmt,
                              err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_int64(stmt, 1, id);
    rc = sl_store_row(st, stmt, read_alert, out, "reading an alert", err);
    if (rc == SL_ENOTFOUND) {
        rc = sl_err_set(err, SL_ENOTFOUND, "alert %lld not found (see `sluice alerts history`)",
                        (long long)id);
    }
    return rc;
}

int sl_store_alert_list(struct sl_store *st, const struct sl_alert_filter *f,
                        struct sl_alert **out, size_t *n_out, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st,
                              "SELECT " ALERT_COLUMNS " FROM alerts WHERE "
                              "(?1 = 0 OR state = 'firing' OR resolved_at >= ?2) "
                              "AND (?3 = '' OR rule_id = ?3) AND (?4 = '' OR tenant_id = ?4) "
                              "ORDER BY fired_at DESC, id DESC LIMIT ?5",
                              &stmt, err);

    if (rc != 0) {
        *out = NULL;
        *n_out = 0;
        return rc;
    }
    sqlite3_bind_int(stmt, 1, f->is_open_only ? 1 : 0);
    sqlite3_bind_int64(stmt, 2, f->is_open_only && f->since_s > 0 ? f->since_s : INT64_MAX);
    sqlite3_bind_text(stmt, 3, f->rule_id != NULL ? f->rule_id : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, f->tenant_id != NULL ? f->tenant_id : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 5, f->limit > 0 ? (int64_t)f->limit : LIST_DEFAULT);
    return sl_store_collect(st, stmt, sizeof(**out), read_alert, (void **)out, n_out,
                            "listing alerts", err);
}

/* ---- deliveries ---- */

int sl_store_delivery_add(struct sl_store *st, int64_t alert_id, const char *channel_id,
                          const char *event, int64_t deadline_s, int64_t now_s,
                          int64_t *id_out, struct sl_err *err)
{
    return insert_delivery(st, alert_id, channel_id, event, deadline_s, now_s, id_out, err);
}

int sl_store_delivery_get(struct sl_store *st, int64_t id, struct sl_delivery *out,
                          struct sl_err *err)
{
    struct sl_delivery *items = NULL;
    sqlite3_stmt *stmt = NULL;
    size_t n = 0;
    int rc = sl_store_prepare(st, "SELECT " DELIVERY_COLUMNS " FROM deliveries WHERE id = ?1",
                              &stmt, err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_int64(stmt, 1, id);
    rc = sl_store_collect(st, stmt, sizeof(*items), read_delivery, (void **)&items, &n,
                          "reading a delivery", err);
    if (rc == 0 && n == 0) {
        rc = sl_err_set(err, SL_ENOTFOUND, "delivery %lld not found", (long long)id);
    }
    if (rc == 0) {
        *out = items[0];
    }
    sl_free(items);
    return rc;
}

int sl_store_delivery_due(struct sl_store *st, int64_t now_s, size_t limit,
                          struct sl_delivery **out, size_t *n_out, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st,
                              "SELECT " DELIVERY_COLUMNS " FROM deliveries WHERE status = "
                              "'pending' AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id "
                              "LIMIT ?2",
                              &stmt, err);

    if (rc != 0) {
        *out = NULL;
        *n_out = 0;
        return rc;
    }
    sqlite3_bind_int64(stmt, 1, now_s);
    sqlite3_bind_int64(stmt, 2, limit > 0 ? (int64_t)limit : LIST_DEFAULT);
    return sl_store_collect(st, stmt, sizeof(**out), read_delivery, (void **)out, n_out,
                            "listing due deliveries", err);
}

int sl_store_delivery_record(struct sl_store *st, const struct sl_delivery_attempt *a,
                             int64_t next_attempt_s, int64_t now_s, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    const char *status = strcmp(a->status, "retry") == 0 ? "pending" : a->status;
    int rc;

    if (strcmp(a->status, "sent") != 0 && strcmp(a->status, "retry") != 0 &&
        strcmp(a->status, "failed") != 0) {
        return sl_err_set(err, SL_EINVAL, "unknown attempt status '%s'", a->status);
    }
    rc = sl_store_exec(st, "BEGIN IMMEDIATE", "locking the store to log a delivery", err);
    if (rc != 0) {
        return rc;
    }
    rc = sl_store_prepare(st,
                          "UPDATE deliveries SET status = ?2, attempts = ?3, "
                          "next_attempt_at = ?4, http_status = NULLIF(?5, 0), "
                          "error = NULLIF(?6, ''), updated_at = ?7 WHERE id = ?1",
                          &stmt, err);
    if (rc == 0) {
        sqlite3_bind_int64(stmt, 1, a->delivery_id);
        sqlite3_bind_text(stmt, 2, status, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 3, a->attempt);
        sqlite3_bind_int64(stmt, 4, next_attempt_s);
        sqlite3_bind_int64(stmt, 5, a->http_status);
        sqlite3_bind_text(stmt, 6, a->error, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 7, now_s);
        rc = sl_store_step_done(st, stmt, "updating a delivery", err);
    }
    if (rc == 0 && sqlite3_changes(st->db) != 1) {
        rc = sl_err_set(err, SL_ENOTFOUND, "delivery %lld not found",
                        (long long)a->delivery_id);
    }
    if (rc == 0) {
        rc = sl_store_prepare(st,
                              "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, "
                              "duration_ms, status, http_status, error) VALUES (?1, ?2, ?3, ?4, "
                              "?5, NULLIF(?6, 0), NULLIF(?7, ''))",
                              &stmt, err);
    }
    if (rc == 0) {
        sqlite3_bind_int64(stmt, 1, a->delivery_id);
        sqlite3_bind_int64(stmt, 2, a->attempt);
        sqlite3_bind_int64(stmt, 3, a->started_s);
        sqlite3_bind_int64(stmt, 4, a->duration_ms);
        sqlite3_bind_text(stmt, 5, a->status, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 6, a->http_status);
        sqlite3_bind_text(stmt, 7, a->error, -1, SQLITE_STATIC);
        rc = sl_store_step_done(st, stmt, "logging a delivery attempt", err);
    }
    if (rc == 0) {
        rc = sl_store_exec(st, "COMMIT", "committing a delivery attempt", err);
    }
    if (rc != 0) {
        sl_store_rollback(st);
    }
    return rc;
}

int sl_store_delivery_list(struct sl_store *st, int64_t alert_id, const char *channel_id,
                           size_t limit, struct sl_delivery **out, size_t *n_out,
                           struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st,
                              "SELECT " DELIVERY_COLUMNS " FROM deliveries WHERE "
                              "(?1 = 0 OR alert_id = ?1) AND (?2 = '' OR channel_id = ?2) "
                              "ORDER BY id DESC LIMIT ?3",
                              &stmt, err);

    if (rc != 0) {
        *out = NULL;
        *n_out = 0;
        return rc;
    }
    sqlite3_bind_int64(stmt, 1, alert_id);
    sqlite3_bind_text(stmt, 2, channel_id != NULL ? channel_id : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 3, limit > 0 ? (int64_t)limit : LIST_DEFAULT);
    return sl_store_collect(st, stmt, sizeof(**out), read_delivery, (void **)out, n_out,
                            "listing deliveries", err);
}

int sl_store_delivery_attempts(struct sl_store *st, int64_t delivery_id,
                               struct sl_delivery_attempt **out, size_t *n_out,
                               struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st,
                              "SELECT " ATTEMPT_COLUMNS " FROM delivery_attempts WHERE "
                              "delivery_id = ?1 ORDER BY attempt, id",
                              &stmt, err);

    if (rc != 0) {
        *out = NULL;
        *n_out = 0;
        return rc;
    }
    sqlite3_bind_int64(stmt, 1, delivery_id);
    return sl_store_collect(st, stmt, sizeof(**out), read_attempt, (void **)out, n_out,
                            "listing delivery attempts", err);
}

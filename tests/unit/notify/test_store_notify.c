/*
 * lib/store_notify.c on a temporary SQLite file: a decision stored with its alert and its
 * queued delivery in one go, state read back after reopening the file, the alert filters,
 * and the delivery queue with its attempt log.
 */
#include <string.h>

#include "alloc.h"
#include "store.h"
#include "store_notify.h"
#include "test.h"

#define T0 1795478400

struct fx {
    char *dir;
    char *path;
    struct sl_store *st;
    struct sl_rule rule;
    struct sl_channel ch;
};

static void fx_open(struct fx *f)
{
    struct sl_tenant t;
    struct sl_rule r = {.threshold = 0.1, .window_s = 300, .cooldown_s = 60, .is_enabled = true};
    struct sl_err err;

    memset(f, 0, sizeof(*f));
    f->dir = test_tmpdir();
    f->path = test_path(f->dir, "s.db");
    ASSERT_OK(sl_store_open(&f->st, f->path, 1000, &err), &err);
    ASSERT_OK(sl_store_tenant_create(f->st, "acme", "paid", T0, &t, &err), &err);
    ASSERT_OK(sl_store_channel_add(f->st, "acme", "hook", "webhook", "http://h/x", "sec", T0,
                                   &f->ch, &err), &err);
    snprintf(r.name, sizeof(r.name), "errors");
    snprintf(r.kind, sizeof(r.kind), "error_rate");
    snprintf(r.tenant_id, sizeof(r.tenant_id), "acme");
    snprintf(r.channel_id, sizeof(r.channel_id), "%s", f->ch.id);
    ASSERT_OK(sl_store_rule_add(f->st, &r, T0, &f->rule, &err), &err);
}

static void fx_close(struct fx *f)
{
    sl_store_close(f->st);
    test_rmtree(f->dir);
    free(f->path);
    free(f->dir);
}

static void test_store_notify_open_notify_resolve_survive_reopen(void)
{
    struct fx f;
    struct sl_alert_change c = {0};
    struct sl_alert_state *states = NULL;
    struct sl_alert_filter flt = {.is_open_only = true};
    struct sl_alert *alerts = NULL;
    struct sl_alert a;
    struct sl_delivery d;
    struct sl_err err;
    size_t n = 0;
    char secret[64];

    fx_open(&f);
    snprintf(c.state.rule_id, sizeof(c.state.rule_id), "%s", f.rule.id);
    snprintf(c.state.subject, sizeof(c.state.subject), "tn_x");
    c.state.is_firing = true;
    c.state.is_notified = true;
    c.state.since_s = T0;
    c.state.last_notified_s = T0;
    c.state.sent_in_interval = 1;
    c.op = SL_ALERT_OPEN;
    snprintf(c.alert.rule_id, sizeof(c.alert.rule_id), "%s", f.rule.id);
    snprintf(c.alert.kind, sizeof(c.alert.kind), "error_rate");
    snprintf(c.alert.subject, sizeof(c.alert.subject), "tn_x");
    snprintf(c.alert.tenant_id, sizeof(c.alert.tenant_id), "tn_x");
    snprintf(c.alert.message, sizeof(c.alert.message), "bad");
    c.alert.value = 0.5;
    c.alert.is_notified = true;
    c.deliver_event = "firing";
    c.channel_id = f.ch.id;
    c.deadline_s = T0 + 3600;
    c.now_s = T0;
    ASSERT_OK(sl_store_alert_apply(f.st, &c, &err), &err);
    ASSERT_TRUE(c.alert_id > 0);
    ASSERT_TRUE(c.delivery_id > 0);
    ASSERT_EQ_INT(c.state.alert_id, c.alert_id);

    /* Reopened: the state and the queue are what was stored. */
    sl_store_close(f.st);
    ASSERT_OK(sl_store_open(&f.st, f.path, 1000, &err), &err);
    ASSERT_OK(sl_store_alert_state_list(f.st, f.rule.id, &states, &n, &err), &err);
    ASSERT_EQ_INT(n, 1);
    ASSERT_TRUE(states[0].is_firing);
    ASSERT_TRUE(states[0].is_notified);
    ASSERT_EQ_INT(states[0].alert_id, c.alert_id);
    ASSERT_EQ_INT(states[0].sent_in_interval, 1);
    sl_free(states);
    ASSERT_OK(sl_store_delivery_get(f.st, c.delivery_id, &d, &err), &err);
    ASSERT_EQ_STR(d.status, "pending");
    ASSERT_EQ_STR(d.event, "firing");
    ASSERT_EQ_INT(d.alert_id, c.alert_id);
    ASSERT_OK(sl_store_alert_list(f.st, &flt, &alerts, &n, &err), &err);
    ASSERT_EQ_INT(n, 1);
    sl_free(alerts);
    ASSERT_OK(sl_store_channel_secret(f.st, f.ch.id, secret, sizeof(secret), &err), &err);
    ASSERT_EQ_STR(secret, "sec");

    /* Resolved: the alert closes, the state keeps no alert, a resolved notice is queued. */
    c.op = SL_ALERT_RESOLVE;
    c.state.is_firing = false;
    c.resolved_value = 0.01;
    c.deliver_event = "resolved";
    c.now_s = T0 + 600;
    ASSERT_OK(sl_store_alert_apply(f.st, &c, &err), &err);
    ASSERT_EQ_INT(c.state.alert_id, 0);
    ASSERT_OK(sl_store_alert_get(f.st, c.alert_id, &a, &err), &err);
    ASSERT_TRUE(!a.is_firing);
    ASSERT_EQ_INT(a.resolved_s, T0 + 600);
    ASSERT_TRUE(a.resolved_value == 0.01);
    ASSERT_OK(sl_store_alert_list(f.st, &flt, &alerts, &n, &err), &err);
    ASSERT_EQ_INT(n, 0);
    sl_free(alerts);
    flt.since_s = T0 + 600;
    ASSERT_OK(sl_store_alert_list(f.st, &flt, &alerts, &n, &err), &err);
    ASSERT_EQ_INT(n, 1);
    sl_free(alerts);
    flt = (struct sl_alert_filter){.tenant_id = "tn_other"};
    ASSERT_OK(sl_store_alert_list(f.st, &flt, &alerts, &n, &err), &err);
    ASSERT_EQ_INT(n, 0);
    sl_free(alerts);
    ASSERT_EQ_INT(sl_store_alert_get(f.st, 999, &a, &err), SL_ENOTFOUND);

    /* A failing statement stores nothing: an unknown rule breaks the state's foreign key. */
    snprintf(c.state.rule_id, sizeof(c.state.rule_id), "ru_missing");
    c.op = SL_ALERT_OPEN;
    ASSERT_NE_INT(sl_store_alert_apply(f.st, &c, &err), 0);
    flt = (struct sl_alert_filter){0};
    ASSERT_OK(sl_store_alert_list(f.st, &flt, &alerts, &n, &err), &err);
    ASSERT_EQ_INT(n, 1);
    sl_free(alerts);
    fx_close(&f);
}

static void test_store_notify_delivery_queue_and_log(void)
{
    struct fx f;
    struct sl_delivery *due = NULL, d;
    struct sl_delivery_attempt a = {0}, *log = NULL;
    struct sl_err err;
    size_t n = 0;
    int64_t id1, id2;

    fx_open(&f);
    ASSERT_OK(sl_store_delivery_add(f.st, 0, f.ch.id, "test", T0 + 60, T0, &id1, &err), &err);
    ASSERT_OK(sl_store_delivery_add(f.st, 0, f.ch.id, "test", T0 + 60, T0 + 5, &id2, &err),
              &err);
    ASSERT_OK(sl_store_delivery_due(f.st, T0, 10, &due, &n, &err), &err);
    ASSERT_EQ_INT(n, 1);
    ASSERT_EQ_INT(due[0].id, id1);
    sl_free(due);

    a.delivery_id = id1;
    a.attempt = 1;
    a.started_s = T0;
    a.duration_ms = 12;
    a.http_status = 503;
    snprintf(a.status, sizeof(a.status), "retry");
    snprintf(a.error, sizeof(a.error), "HTTP 503");
    ASSERT_OK(sl_store_delivery_record(f.st, &a, T0 + 30, T0, &err), &err);
    ASSERT_OK(sl_store_delivery_due(f.st, T0 + 10, 10, &due, &n, &err), &err);
    ASSERT_EQ_INT(n, 1);
    ASSERT_EQ_INT(due[0].id, id2);
    sl_free(due);
    a.attempt = 2;
    a.started_s = T0 + 30;
    a.http_status = 200;
    a.error[0] = '\0';
    snprintf(a.status, sizeof(a.status), "sent");
    ASSERT_OK(sl_store_delivery_record(f.st, &a, 0, T0 + 30, &err), &err);
    ASSERT_OK(sl_store_delivery_get(f.st, id1, &d, &err), &err);
    ASSERT_EQ_STR(d.status, "sent");
    ASSERT_EQ_INT(d.attempts, 2);
    ASSERT_EQ_INT(d.http_status, 200);
    ASSERT_EQ_STR(d.error, "");
    ASSERT_OK(sl_store_delivery_attempts(f.st, id1, &log, &n, &err), &err);
    ASSERT_EQ_INT(n, 2);
    ASSERT_EQ_STR(log[0].status, "retry");
    ASSERT_EQ_STR(log[0].error, "HTTP 503");
    ASSERT_EQ_INT(log[0].duration_ms, 12);
    ASSERT_EQ_STR(log[1].status, "sent");
    sl_free(log);
    ASSERT_OK(sl_store_delivery_due(f.st, T0 + 100, 10, &due, &n, &err), &err);
    ASSERT_EQ_INT(n, 1);
    sl_free(due);
    snprintf(a.status, sizeof(a.status), "bogus");
    ASSERT_EQ_INT(sl_store_delivery_record(f.st, &a, 0, T0, &err), SL_EINVAL);
    a.delivery_id = 999;
    snprintf(a.status, sizeof(a.status), "sent");
    ASSERT_EQ_INT(sl_store_delivery_record(f.st, &a, 0, T0, &err), SL_ENOTFOUND);
    ASSERT_OK(sl_store_delivery_list(f.st, 0, f.ch.id, 0, &due, &n, &err), &err);
    ASSERT_EQ_INT(n, 2);
    ASSERT_EQ_INT(due[0].id, id2);
    sl_free(due);
    fx_close(&f);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_store_notify_open_notify_resolve_survive_reopen),
        TEST_CASE(test_store_notify_delivery_queue_and_log),
        {NULL, NULL},
    };
    return test_main(argc, argv, cases);
}

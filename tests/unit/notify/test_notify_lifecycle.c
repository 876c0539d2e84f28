/*
 * workers/notify/lifecycle.c: the alert state machine alone, time as an argument. Fire
 * once, hold quietly, resolve; cooldown after a notice; the cap per interval; a held-back
 * firing announced late; the backoff of deliver.c.
 */
#include <string.h>

#include "notify_int.h"
#include "test.h"

#define T0 1795478400

static const struct notify_policy POLICY = {.cooldown_s = 600, .cap = 3, .interval_s = 3600};

/* One step from *s; the next state replaces it. */
static enum notify_action step(struct sl_alert_state *s, bool cond, double v,
                               const struct notify_policy *p, int64_t now)
{
    struct sl_alert_state next;
    enum notify_action a = notify_lifecycle_step(s, cond, v, p, now, &next);

    *s = next;
    return a;
}

static void test_notify_lifecycle_fires_once_and_resolves(void)
{
    struct sl_alert_state s = {0};

    ASSERT_EQ_INT(step(&s, false, 0.01, &POLICY, T0), NOTIFY_NONE);
    ASSERT_TRUE(!s.is_firing);
    ASSERT_EQ_INT(step(&s, true, 0.5, &POLICY, T0 + 30), NOTIFY_FIRE);
    ASSERT_TRUE(s.is_firing);
    ASSERT_TRUE(s.is_notified);
    ASSERT_EQ_INT(s.since_s, T0 + 30);
    ASSERT_EQ_INT(s.last_notified_s, T0 + 30);
    ASSERT_EQ_INT(s.sent_in_interval, 1);
    /* Held: never repeated, however long it lasts. */
    for (int i = 1; i <= 500; i++) {
        ASSERT_EQ_INT(step(&s, true, 0.5 + i, &POLICY, T0 + 30 + 30 * i), NOTIFY_NONE);
    }
    ASSERT_TRUE(s.is_firing);
    ASSERT_EQ_INT(s.since_s, T0 + 30);
    ASSERT_EQ_INT(step(&s, false, 0.0, &POLICY, T0 + 20000), NOTIFY_RESOLVE);
    ASSERT_TRUE(!s.is_firing);
    ASSERT_TRUE(!s.is_notified);
    ASSERT_EQ_INT(s.since_s, T0 + 20000);
    ASSERT_EQ_INT(step(&s, false, 0.0, &POLICY, T0 + 20030), NOTIFY_NONE);
}

static void test_notify_lifecycle_cooldown_holds_a_flap_back(void)
{
    struct sl_alert_state s = {0};

    ASSERT_EQ_INT(step(&s, true, 1, &POLICY, T0), NOTIFY_FIRE);
    ASSERT_EQ_INT(step(&s, false, 0, &POLICY, T0 + 60), NOTIFY_RESOLVE);
    /* Fires again 2 minutes after the resolved notice: within the 10-minute cooldown, so
     * the alert opens without a notice... */
    ASSERT_EQ_INT(step(&s, true, 1, &POLICY, T0 + 180), NOTIFY_FIRE_SILENT);
    ASSERT_TRUE(s.is_firing);
    ASSERT_TRUE(!s.is_notified);
    ASSERT_EQ_INT(step(&s, true, 1, &POLICY, T0 + 400), NOTIFY_NONE);
    /* ...and is announced once the cooldown passed, if it still holds. */
    ASSERT_EQ_INT(step(&s, true, 1, &POLICY, T0 + 660), NOTIFY_LATE);
    ASSERT_TRUE(s.is_notified);
    ASSERT_EQ_INT(step(&s, true, 1, &POLICY, T0 + 690), NOTIFY_NONE);
    ASSERT_EQ_INT(step(&s, false, 0, &POLICY, T0 + 720), NOTIFY_RESOLVE);
}

static void test_notify_lifecycle_silent_alert_resolves_silently(void)
{
    struct sl_alert_state s = {0};

    ASSERT_EQ_INT(step(&s, true, 1, &POLICY, T0), NOTIFY_FIRE);
    ASSERT_EQ_INT(step(&s, false, 0, &POLICY, T0 + 30), NOTIFY_RESOLVE);
    ASSERT_EQ_INT(step(&s, true, 1, &POLICY, T0 + 60), NOTIFY_FIRE_SILENT);
    /* Nobody heard of it, so nobody hears of its end. */
    ASSERT_EQ_INT(step(&s, false, 0, &POLICY, T0 + 90), NOTIFY_RESOLVE_SILENT);
    ASSERT_TRUE(!s.is_firing);
}

static void test_notify_lifecycle_cap_per_interval(void)
{
    const struct notify_policy p = {.cooldown_s = 0, .cap = 3, .interval_s = 3600};
    struct sl_alert_state s = {0};
    int fired = 0, resolved = 0, held = 0;

    /* A condition flapping every 30 s for 40 minutes: 3 notices in the hour (fire,
     * resolve, fire), then the resolve of the announced one (never capped), then
     * silence. */
    for (int i = 0; i < 80; i++) {
        enum notify_action a = step(&s, i % 2 == 0, 1, &p, T0 + 30 * i);

        fired += a == NOTIFY_FIRE || a == NOTIFY_LATE;
        resolved += a == NOTIFY_RESOLVE;
        held += a == NOTIFY_FIRE_SILENT;
    }
    ASSERT_EQ_INT(fired, 2);
    ASSERT_EQ_INT(resolved, 2);
    ASSERT_EQ_INT(held, 38);
    ASSERT_EQ_INT(s.sent_in_interval, 4);
    /* A new interval allows notices again. */
    ASSERT_EQ_INT(step(&s, true, 1, &p, T0 + 3600), NOTIFY_FIRE);
    ASSERT_EQ_INT(s.interval_start_s, T0 + 3600);
    ASSERT_EQ_INT(s.sent_in_interval, 1);
}

static void test_notify_lifecycle_state_is_all_it_needs(void)
{
    struct sl_alert_state s = {0};
    struct sl_alert_state copy;

    ASSERT_EQ_INT(step(&s, true, 1, &POLICY, T0), NOTIFY_FIRE);
    /* A "restart": the same stored fields give the same decisions. */
    copy = s;
    ASSERT_EQ_INT(step(&copy, true, 1, &POLICY, T0 + 30), NOTIFY_NONE);
    ASSERT_EQ_INT(step(&s, true, 1, &POLICY, T0 + 30), NOTIFY_NONE);
    ASSERT_EQ_INT(copy.is_firing, s.is_firing);
    ASSERT_EQ_INT(copy.is_notified, s.is_notified);
    ASSERT_EQ_INT(copy.since_s, s.since_s);
    ASSERT_EQ_INT(copy.last_notified_s, s.last_notified_s);
    ASSERT_EQ_INT(copy.sent_in_interval, s.sent_in_interval);
    ASSERT_EQ_STR(notify_action_name(NOTIFY_LATE), "late");
}

static void test_notify_backoff_doubles_to_a_ceiling(void)
{
    ASSERT_EQ_INT(notify_backoff_s(1, 30, 900), 30);
    ASSERT_EQ_INT(notify_backoff_s(2, 30, 900), 60);
    ASSERT_EQ_INT(notify_backoff_s(3, 30, 900), 120);
    ASSERT_EQ_INT(notify_backoff_s(6, 30, 900), 900);
    ASSERT_EQ_INT(notify_backoff_s(60, 30, 900), 900);
    ASSERT_EQ_INT(notify_backoff_s(1, 0, 10), 1);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_notify_lifecycle_fires_once_and_resolves),
        TEST_CASE(test_notify_lifecycle_cooldown_holds_a_flap_back),
        TEST_CASE(test_notify_lifecycle_silent_alert_resolves_silently),
        TEST_CASE(test_notify_lifecycle_cap_per_interval),
        TEST_CASE(test_notify_lifecycle_state_is_all_it_needs),
        TEST_CASE(test_notify_backoff_doubles_to_a_ceiling),
        {NULL, NULL},
    };
    return test_main(argc, argv, cases);
}

/*
 * Tests workers/retention/plan.c: each tenant's retention and cutoff from its tier, its
 * override, an upgrade, a downgrade inside and past the grace period, disabled tenants
 * under keep and purge; the partition boundary (the longest retention, overrides and grace
 * included); and the groups by cutoff, split at the most tenants per mutation.
 */
#include "alloc.h"
#include "plan.h"
#include "test.h"

/* 2026-11-24T13:45:00Z: mid-day, so cutoffs show they are whole UTC days. */
#define NOW_S INT64_C(1795527900)
#define TODAY_S INT64_C(1795478400)
#define DAY RETENTION_DAY_S

static const struct sl_tier tiers[] = {
    {.name = "free", .retention_days = 30},
    {.name = "paid", .retention_days = 365},
    {.name = "enterprise", .retention_days = 730},
};
#define N_TIERS (sizeof(tiers) / sizeof(tiers[0]))

static struct retention_policy policy(void)
{
    return (struct retention_policy){.downgrade_grace_days = 30, .is_purge_disabled = false,
                                     .disabled_purge_after_days = 10,
                                     .max_tenants_per_group = 100};
}

static struct sl_tenant tenant(const char *id, const char *tier)
{
    struct sl_tenant t = {.retention_days_override = -1, .rate_limit_override = -1,
                          .burst_override = -1};

    snprintf(t.id, sizeof(t.id), "%s", id);
    snprintf(t.name, sizeof(t.name), "name_%s", id);
    snprintf(t.tier, sizeof(t.tier), "%s", tier);
    return t;
}

static struct retention_plan *build(const struct sl_tenant *tenants, size_t n,
                                    const struct retention_policy *p)
{
    struct retention_plan *plan = NULL;
    struct sl_err err;

    ASSERT_OK(retention_plan_build(tiers, N_TIERS, tenants, n, NOW_S, p, &plan, &err), &err);
    ASSERT_TRUE(plan != NULL);
    return plan;
}

static const struct retention_tenant *find(const struct retention_plan *plan, const char *id)
{
    const struct retention_tenant *t = retention_plan_tenant(plan, id);

    if (t == NULL) {
        TEST_FAIL("tenant %s not in the plan", id);
    }
    return t;
}

static void test_retention_plan_tiers_and_whole_days(void)
{
    struct sl_tenant ts[] = {tenant("tn_free", "free"), tenant("tn_paid", "paid")};
    struct retention_policy p = policy();
    struct retention_plan *plan = build(ts, 2, &p);
    char day[11];

    ASSERT_EQ_INT(plan->today_s, TODAY_S);
    ASSERT_EQ_INT(find(plan, "tn_free")->reason, RETENTION_TIER);
    ASSERT_EQ_INT(find(plan, "tn_free")->retention_days, 30);
    ASSERT_EQ_INT(find(plan, "tn_free")->cutoff_s, TODAY_S - 30 * DAY);
    ASSERT_EQ_STR(retention_day_text(find(plan, "tn_free")->cutoff_s, day), "2026-10-25");
    ASSERT_EQ_INT(find(plan, "tn_paid")->cutoff_s, TODAY_S - 365 * DAY);
    /* The longest tier (enterprise, nobody on it) still sets the partition boundary. */
    ASSERT_EQ_INT(plan->longest_days, 730);
    ASSERT_EQ_INT(plan->drop_before_s, TODAY_S - 730 * DAY);
    ASSERT_EQ_INT(plan->n_groups, 2);
    ASSERT_EQ_INT(plan->groups[0].cutoff_s, TODAY_S - 365 * DAY);
    ASSERT_EQ_INT(plan->groups[1].cutoff_s, TODAY_S - 30 * DAY);
    retention_plan_destroy(plan);
}

static void test_retention_plan_override_longer_than_any_tier(void)
{
    struct sl_tenant ts[] = {tenant("tn_a", "free"), tenant("tn_b", "free")};
    struct retention_policy p = policy();
    struct retention_plan *plan;

    ts[0].retention_days_override = 1000;
    ts[1].retention_days_override = 7;
    plan = build(ts, 2, &p);
    ASSERT_EQ_INT(find(plan, "tn_a")->reason, RETENTION_OVERRIDE);
    ASSERT_EQ_INT(find(plan, "tn_a")->cutoff_s, TODAY_S - 1000 * DAY);
    ASSERT_EQ_INT(find(plan, "tn_b")->cutoff_s, TODAY_S - 7 * DAY);
    /* Whole partitions go only past the override, else tn_a's kept days would be dropped. */
    ASSERT_EQ_INT(plan->longest_days, 1000);
    ASSERT_EQ_INT(plan->drop_before_s, TODAY_S - 1000 * DAY);
    /* tn_a's cutoff is the boundary itself: nothing of it to mutate. */
    ASSERT_EQ_INT(plan->n_groups, 1);
    ASSERT_EQ_INT(plan->groups[0].cutoff_s, TODAY_S - 7 * DAY);
    ASSERT_EQ_STR(plan->tenants[plan->groups[0].first].id, "tn_b");
    retention_plan_destroy(plan);
}

static void test_retention_plan_upgrade_applies_at_once(void)
{
    struct sl_tenant ts[] = {tenant("tn_up", "paid")};
    struct retention_policy p = policy();
    struct retention_plan *plan;

    snprintf(ts[0].previous_tier, sizeof(ts[0].previous_tier), "free");
    ts[0].tier_changed_s = NOW_S - 3600;
    plan = build(ts, 1, &p);
    ASSERT_EQ_INT(find(plan, "tn_up")->reason, RETENTION_TIER);
    ASSERT_EQ_INT(find(plan, "tn_up")->retention_days, 365);
    ASSERT_EQ_INT(find(plan, "tn_up")->cutoff_s, TODAY_S - 365 * DAY);
    retention_plan_destroy(plan);
}

static void test_retention_plan_downgrade_inside_grace(void)
{
    struct sl_tenant ts[] = {tenant("tn_down", "free")};
    struct retention_policy p = policy();
    struct retention_plan *plan;

    snprintf(ts[0].previous_tier, sizeof(ts[0].previous_tier), "paid");
    ts[0].tier_changed_s = NOW_S - 29 * DAY;
    plan = build(ts, 1, &p);
    ASSERT_EQ_INT(find(plan, "tn_down")->reason, RETENTION_GRACE);
    ASSERT_EQ_INT(find(plan, "tn_down")->retention_days, 365);
    ASSERT_EQ_INT(find(plan, "tn_down")->cutoff_s, TODAY_S - 365 * DAY);
    ASSERT_EQ_INT(find(plan, "tn_down")->grace_until_s, NOW_S + DAY);
    ASSERT_EQ_STR(find(plan, "tn_down")->grace_tier, "paid");
    retention_plan_destroy(plan);
}

static void test_retention_plan_downgrade_past_grace(void)
{
    struct sl_tenant ts[] = {tenant("tn_down", "free")};
    struct retention_policy p = policy();
    struct retention_plan *plan;

    snprintf(ts[0].previous_tier, sizeof(ts[0].previous_tier), "paid");
    ts[0].tier_changed_s = NOW_S - 30 * DAY; /* the grace ends exactly now */
    plan = build(ts, 1, &p);
    ASSERT_EQ_INT(find(plan, "tn_down")->reason, RETENTION_TIER);
    ASSERT_EQ_INT(find(plan, "tn_down")->cutoff_s, TODAY_S - 30 * DAY);
    retention_plan_destroy(plan);

    /* No grace at all with 0 days. */
    p.downgrade_grace_days = 0;
    ts[0].tier_changed_s = NOW_S - 1;
    plan = build(ts, 1, &p);
    ASSERT_EQ_INT(find(plan, "tn_down")->cutoff_s, TODAY_S - 30 * DAY);
    retention_plan_destroy(plan);
}

static void test_retention_plan_override_beats_grace(void)
{
    struct sl_tenant ts[] = {tenant("tn_o", "free")};
    struct retention_policy p = policy();
    struct retention_plan *plan;

    snprintf(ts[0].previous_tier, sizeof(ts[0].previous_tier), "paid");
    ts[0].tier_changed_s = NOW_S - DAY;
    ts[0].retention_days_override = 14;
    plan = build(ts, 1, &p);
    ASSERT_EQ_INT(find(plan, "tn_o")->reason, RETENTION_OVERRIDE);
    ASSERT_EQ_INT(find(plan, "tn_o")->cutoff_s, TODAY_S - 14 * DAY);
    retention_plan_destroy(plan);
}

static void test_retention_plan_disabled_keep(void)
{
    struct sl_tenant ts[] = {tenant("tn_off", "paid")};
    struct retention_policy p = policy();
    struct retention_plan *plan;

    ts[0].is_disabled = true;
    ts[0].disabled_s = NOW_S - 400 * DAY;
    plan = build(ts, 1, &p);
    ASSERT_EQ_INT(find(plan, "tn_off")->reason, RETENTION_TIER);
    ASSERT_EQ_INT(find(plan, "tn_off")->cutoff_s, TODAY_S - 365 * DAY);
    retention_plan_destroy(plan);
}

static void test_retention_plan_disabled_purge(void)
{
    struct sl_tenant ts[] = {tenant("tn_gone", "enterprise"), tenant("tn_new_off", "paid"),
                             tenant("tn_on", "free")};
    struct retention_policy p = policy();
    struct retention_plan *plan;

    p.is_purge_disabled = true;
    ts[0].is_disabled = true;
    ts[0].disabled_s = NOW_S - 10 * DAY; /* exactly the purge age */
    ts[1].is_disabled = true;
    ts[1].disabled_s = NOW_S - 9 * DAY; /* not yet */
    plan = build(ts, 3, &p);
    ASSERT_EQ_INT(find(plan, "tn_gone")->reason, RETENTION_PURGE);
    ASSERT_EQ_INT(find(plan, "tn_gone")->cutoff_s, RETENTION_ALL);
    ASSERT_EQ_INT(find(plan, "tn_new_off")->reason, RETENTION_TIER);
    ASSERT_EQ_INT(find(plan, "tn_new_off")->cutoff_s, TODAY_S - 365 * DAY);
    /* A purged tenant does not hold whole partitions back. */
    ASSERT_EQ_INT(plan->drop_before_s, TODAY_S - 730 * DAY);
    ASSERT_EQ_INT(plan->n_groups, 3);
    ASSERT_EQ_INT(plan->groups[2].cutoff_s, RETENTION_ALL);
    ASSERT_EQ_STR(plan->tenants[plan->groups[2].first].id, "tn_gone");
    retention_plan_destroy(plan);
}

static void test_retention_plan_groups_by_cutoff(void)
{
    struct sl_tenant ts[] = {tenant("tn_5", "free"), tenant("tn_1", "paid"),
                             tenant("tn_3", "free"), tenant("tn_2", "free"),
                             tenant("tn_4", "paid")};
    struct retention_policy p = policy();
    struct retention_plan *plan;

    ts[3].retention_days_override = 30; /* the same cutoff as free, through an override */
    plan = build(ts, 5, &p);
    ASSERT_EQ_INT(plan->n_groups, 2);
    ASSERT_EQ_INT(plan->groups[0].cutoff_s, TODAY_S - 365 * DAY);
    ASSERT_EQ_INT(plan->groups[0].n, 2);
    ASSERT_EQ_STR(plan->tenants[plan->groups[0].first].id, "tn_1");
    ASSERT_EQ_STR(plan->tenants[plan->groups[0].first + 1].id, "tn_4");
    ASSERT_EQ_INT(plan->groups[1].cutoff_s, TODAY_S - 30 * DAY);
    ASSERT_EQ_INT(plan->groups[1].n, 3);
    ASSERT_EQ_STR(plan->tenants[plan->groups[1].first].id, "tn_2");
    retention_plan_destroy(plan);

    /* At most two tenants per mutation: the three free tenants take two. */
    p.max_tenants_per_group = 2;
    plan = build(ts, 5, &p);
    ASSERT_EQ_INT(plan->n_groups, 3);
    ASSERT_EQ_INT(plan->groups[1].n, 2);
    ASSERT_EQ_INT(plan->groups[2].n, 1);
    ASSERT_EQ_INT(plan->groups[2].cutoff_s, plan->groups[1].cutoff_s);
    ASSERT_EQ_STR(plan->tenants[plan->groups[2].first].id, "tn_5");
    retention_plan_destroy(plan);
}

static void test_retention_plan_unknown_tier_and_no_tiers(void)
{
    struct sl_tenant ts[] = {tenant("tn_x", "gone")};
    struct retention_policy p = policy();
    struct retention_plan *plan = build(ts, 1, &p);
    struct sl_err err;

    ASSERT_EQ_INT(find(plan, "tn_x")->reason, RETENTION_UNKNOWN_TIER);
    ASSERT_EQ_INT(find(plan, "tn_x")->retention_days, 730);
    retention_plan_destroy(plan);

    /* Without any tier nothing is known to be past retention: nothing is deleted. */
    plan = NULL;
    ASSERT_OK(retention_plan_build(NULL, 0, ts, 1, NOW_S, &p, &plan, &err), &err);
    ASSERT_EQ_INT(plan->tenants[0].reason, RETENTION_KEEP_ALL);
    ASSERT_EQ_INT(plan->drop_before_s, 0);
    ASSERT_EQ_INT(plan->n_groups, 0);
    retention_plan_destroy(plan);
}

static void test_retention_plan_empty_and_bad_policy(void)
{
    struct retention_policy p = policy();
    struct retention_plan *plan = build(NULL, 0, &p);
    struct sl_err err;

    ASSERT_EQ_INT(plan->n_tenants, 0);
    ASSERT_EQ_INT(plan->n_groups, 0);
    ASSERT_EQ_INT(plan->drop_before_s, TODAY_S - 730 * DAY);
    retention_plan_destroy(plan);

    p.max_tenants_per_group = 0;
    plan = (struct retention_plan *)&p; /* must be reset to NULL on failure */
    ASSERT_EQ_INT(retention_plan_build(tiers, N_TIERS, NULL, 0, NOW_S, &p, &plan, &err),
                  SL_EINVAL);
    ASSERT_TRUE(plan == NULL);
}

static void test_retention_plan_out_of_memory(void)
{
    struct sl_tenant ts[] = {tenant("tn_a", "free"), tenant("tn_b", "paid")};
    struct retention_policy p = policy();

    for (long n = 0; n < 3; n++) {
        struct retention_plan *plan = NULL;
        struct sl_err err;
        int rc;

        sl_alloc_fail_after(n);
        rc = retention_plan_build(tiers, N_TIERS, ts, 2, NOW_S, &p, &plan, &err);
        sl_alloc_fail_after(-1);
        ASSERT_EQ_INT(rc, SL_ENOMEM);
        ASSERT_TRUE(plan == NULL);
    }
}

static const struct test_case cases[] = {
    TEST_CASE(test_retention_plan_tiers_and_whole_days),
    TEST_CASE(test_retention_plan_override_longer_than_any_tier),
    TEST_CASE(test_retention_plan_upgrade_applies_at_once),
    TEST_CASE(test_retention_plan_downgrade_inside_grace),
    TEST_CASE(test_retention_plan_downgrade_past_grace),
    TEST_CASE(test_retention_plan_override_beats_grace),
    TEST_CASE(test_retention_plan_disabled_keep),
    TEST_CASE(test_retention_plan_disabled_purge),
    TEST_CASE(test_retention_plan_groups_by_cutoff),
    TEST_CASE(test_retention_plan_unknown_tier_and_no_tiers),
    TEST_CASE(test_retention_plan_empty_and_bad_policy),
    TEST_CASE(test_retention_plan_out_of_memory),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return test_main(argc, argv, cases);
}

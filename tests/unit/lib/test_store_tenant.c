/* Tests lib/store_tier.c, store_tenant.c and store_alert.c: validation, lookups by id or
 * name, tier changes, overrides, channels and rules kept within their tenant. */
#include "store.h"
#include "test.h"

#define NOW 1800000000

static struct sl_store *open_tmp(char **dir)
{
    struct sl_store *st = NULL;
    struct sl_err err;
    char *path;

    *dir = test_tmpdir();
    path = test_path(*dir, "s.db");
    ASSERT_OK(sl_store_open(&st, path, 1000, &err), &err);
    free(path);
    return st;
}

static void close_tmp(struct sl_store *st, char *dir)
{
    sl_store_close(st);
    test_rmtree(dir);
    free(dir);
}

static void test_tier_put_validates(void)
{
    char *dir;
    struct sl_store *st = open_tmp(&dir);
    struct sl_tier t;
    struct sl_err err;

    ASSERT_OK(sl_store_tier_get(st, "free", &t, &err), &err);
    snprintf(t.name, sizeof(t.name), "gold");
    t.retention_days = 90;
    ASSERT_OK(sl_store_tier_put(st, &t, NOW, &err), &err);
    ASSERT_OK(sl_store_tier_get(st, "gold", &t, &err), &err);
    ASSERT_EQ_INT(t.retention_days, 90);
    ASSERT_EQ_INT(t.created_s, NOW);

    t.burst = t.rate_limit_eps - 1;
    ASSERT_EQ_INT(sl_store_tier_put(st, &t, NOW, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "burst");
    t.burst = t.rate_limit_eps;
    t.retention_days = 0;
    ASSERT_EQ_INT(sl_store_tier_put(st, &t, NOW, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "retention");
    t.retention_days = 1;
    t.compress_after_hours = 48;
    ASSERT_EQ_INT(sl_store_tier_put(st, &t, NOW, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "compressed");
    t.compress_after_hours = 0;
    snprintf(t.name, sizeof(t.name), "Bad Name");
    ASSERT_EQ_INT(sl_store_tier_put(st, &t, NOW, &err), SL_EINVAL);
    ASSERT_EQ_INT(sl_store_tier_get(st, "nope", &t, &err), SL_ENOTFOUND);
    ASSERT_CONTAINS(err.msg, "'nope'");
    close_tmp(st, dir);
}

static void test_tenant_create_lookup_and_names(void)
{
    char *dir;
    struct sl_store *st = open_tmp(&dir);
    struct sl_tenant a, b, *list = NULL;
    size_t n = 0;
    struct sl_err err;

    ASSERT_OK(sl_store_tenant_create(st, "acme", "free", NOW, &a, &err), &err);
    ASSERT_TRUE(strncmp(a.id, "tn_", 3) == 0);
    ASSERT_EQ_INT(strlen(a.id), 19);
    ASSERT_OK(sl_store_tenant_get(st, a.id, &b, &err), &err);
    ASSERT_EQ_STR(b.name, "acme");
    ASSERT_OK(sl_store_tenant_get(st, "acme", &b, &err), &err);
    ASSERT_EQ_STR(b.id, a.id);
    ASSERT_EQ_INT(b.rate_limit_override, -1);
    ASSERT_TRUE(!b.is_disabled);

    ASSERT_EQ_INT(sl_store_tenant_create(st, "acme", "paid", NOW, NULL, &err), SL_EEXIST);
    ASSERT_CONTAINS(err.msg, a.id);
    ASSERT_EQ_INT(sl_store_tenant_create(st, "x", "gold", NOW, NULL, &err), SL_ENOTFOUND);
    ASSERT_EQ_INT(sl_store_tenant_create(st, "", "free", NOW, NULL, &err), SL_EINVAL);
    ASSERT_EQ_INT(sl_store_tenant_create(st, "a b", "free", NOW, NULL, &err), SL_EINVAL);
    ASSERT_EQ_INT(sl_store_tenant_create(st, "x'; DROP TABLE tenants; --", "free", NOW, NULL,
                                         &err), SL_EINVAL);
    ASSERT_EQ_INT(sl_store_tenant_create(st, "tn_fake", "free", NOW, NULL, &err), SL_EINVAL);
    /* Lookups treat input as data: a quote finds nothing and breaks nothing. */
    ASSERT_EQ_INT(sl_store_tenant_get(st, "' OR '1'='1", &b, &err), SL_ENOTFOUND);

    ASSERT_OK(sl_store_tenant_create(st, "beta", "paid", NOW, NULL, &err), &err);
    ASSERT_OK(sl_store_tenant_list(st, &list, &n, &err), &err);
    ASSERT_EQ_INT(n, 2);
    ASSERT_EQ_STR(list[0].name, "acme");
    ASSERT_EQ_STR(list[1].name, "beta");
    free(list);
    close_tmp(st, dir);
}

static void test_tenant_tier_change_and_limits(void)
{
    char *dir;
    struct sl_store *st = open_tmp(&dir);
    struct sl_tenant t;
    struct sl_err err;

    ASSERT_OK(sl_store_tenant_create(st, "acme", "paid", NOW, NULL, &err), &err);
    ASSERT_OK(sl_store_tenant_set_tier(st, "acme", "free", NOW + 60, &err), &err);
    ASSERT_OK(sl_store_tenant_get(st, "acme", &t, &err), &err);
    ASSERT_EQ_STR(t.tier, "free");
    ASSERT_EQ_STR(t.previous_tier, "paid");
    ASSERT_EQ_INT(t.tier_changed_s, NOW + 60);
    /* Setting the same tier records no change. */
    ASSERT_OK(sl_store_tenant_set_tier(st, "acme", "free", NOW + 120, &err), &err);
    ASSERT_OK(sl_store_tenant_get(st, "acme", &t, &err), &err);
    ASSERT_EQ_INT(t.tier_changed_s, NOW + 60);
    ASSERT_EQ_INT(sl_store_tenant_set_tier(st, "acme", "gold", NOW, &err), SL_ENOTFOUND);
    ASSERT_EQ_INT(sl_store_tenant_set_tier(st, "ghost", "free", NOW, &err), SL_ENOTFOUND);

    ASSERT_OK(sl_store_tenant_set_limits(st, "acme", 50, 200, -1, NOW, &err), &err);
    ASSERT_OK(sl_store_tenant_get(st, "acme", &t, &err), &err);
    ASSERT_EQ_INT(t.rate_limit_override, 50);
    ASSERT_EQ_INT(t.burst_override, 200);
    ASSERT_EQ_INT(t.retention_days_override, -1);
    ASSERT_OK(sl_store_tenant_set_limits(st, "acme", -1, -1, 7, NOW, &err), &err);
    ASSERT_OK(sl_store_tenant_get(st, "acme", &t, &err), &err);
    ASSERT_EQ_INT(t.rate_limit_override, -1);
    ASSERT_EQ_INT(t.retention_days_override, 7);

    ASSERT_OK(sl_store_tenant_set_disabled(st, "acme", true, NOW + 5, &err), &err);
    ASSERT_OK(sl_store_tenant_get(st, "acme", &t, &err), &err);
    ASSERT_TRUE(t.is_disabled);
    ASSERT_EQ_INT(t.disabled_s, NOW + 5);
    close_tmp(st, dir);
}

static void test_channels_and_rules_stay_in_their_tenant(void)
{
    char *dir;
    struct sl_store *st = open_tmp(&dir);
    struct sl_channel mine, theirs, global, *chans = NULL;
    struct sl_rule r = {.threshold = 0.2, .window_s = 300, .cooldown_s = 600, .is_enabled = true};
    struct sl_rule out, *rules = NULL;
    size_t n = 0;
    struct sl_err err;

    ASSERT_OK(sl_store_tenant_create(st, "acme", "free", NOW, NULL, &err), &err);
    ASSERT_OK(sl_store_tenant_create(st, "beta", "free", NOW, NULL, &err), &err);
    ASSERT_OK(sl_store_channel_add(st, "acme", "hook", "webhook", "https://hooks.example/a",
                                   "s3cret", NOW, &mine, &err), &err);
    ASSERT_TRUE(mine.has_secret);
    ASSERT_OK(sl_store_channel_add(st, "beta", "mail", "email", "a@b.example,c@d.example", NULL,
                                   NOW, &theirs, &err), &err);
    ASSERT_OK(sl_store_channel_add(st, NULL, "ops", "log", "", NULL, NOW, &global, &err), &err);
    ASSERT_EQ_STR(global.tenant_id, "");

    ASSERT_EQ_INT(sl_store_channel_add(st, "acme", "x", "pager", "", NULL, NOW, NULL, &err),
                  SL_EINVAL);
    ASSERT_EQ_INT(sl_store_channel_add(st, "acme", "x", "slack", "ftp://x", NULL, NOW, NULL,
                                       &err), SL_EINVAL);
    ASSERT_EQ_INT(sl_store_channel_add(st, "acme", "x", "email", "not-an-address", NULL, NOW,
                                       NULL, &err), SL_EINVAL);
    ASSERT_EQ_INT(sl_store_channel_add(st, "acme", "x", "slack", "https://h", "s", NOW, NULL,
                                       &err), SL_EINVAL);

    ASSERT_OK(sl_store_channel_list(st, "acme", &chans, &n, &err), &err);
    ASSERT_EQ_INT(n, 1);
    ASSERT_EQ_STR(chans[0].id, mine.id);
    free(chans);

    snprintf(r.name, sizeof(r.name), "errors");
    snprintf(r.kind, sizeof(r.kind), "error_rate");
    snprintf(r.tenant_id, sizeof(r.tenant_id), "acme");
    snprintf(r.channel_id, sizeof(r.channel_id), "%s", theirs.id);
    ASSERT_EQ_INT(sl_store_rule_add(st, &r, NOW, &out, &err), SL_EDENIED);
    ASSERT_CONTAINS(err.msg, "another tenant");
    snprintf(r.channel_id, sizeof(r.channel_id), "%s", global.id);
    ASSERT_OK(sl_store_rule_add(st, &r, NOW, &out, &err), &err);
    snprintf(r.channel_id, sizeof(r.channel_id), "%s", mine.id);
    ASSERT_OK(sl_store_rule_add(st, &r, NOW, &out, &err), &err);
    ASSERT_TRUE(strncmp(out.id, "ru_", 3) == 0);
    ASSERT_EQ_STR(out.channel_id, mine.id);
    r.threshold = 1.5;
    ASSERT_EQ_INT(sl_store_rule_add(st, &r, NOW, NULL, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "0..1");
    r.threshold = 0.5;
    snprintf(r.kind, sizeof(r.kind), "vibes");
    ASSERT_EQ_INT(sl_store_rule_add(st, &r, NOW, NULL, &err), SL_EINVAL);
    /* A global rule may not use a tenant's channel. */
    snprintf(r.kind, sizeof(r.kind), "loader_lag");
    r.threshold = 60;
    r.tenant_id[0] = '\0';
    ASSERT_EQ_INT(sl_store_rule_add(st, &r, NOW, NULL, &err), SL_EDENIED);

    ASSERT_OK(sl_store_rule_list(st, "acme", &rules, &n, &err), &err);
    ASSERT_EQ_INT(n, 2);
    free(rules);
    ASSERT_EQ_INT(sl_store_channel_remove(st, mine.id, &err), SL_ESTATE);
    ASSERT_OK(sl_store_rule_remove(st, out.id, &err), &err);
    ASSERT_OK(sl_store_channel_remove(st, mine.id, &err), &err);
    ASSERT_EQ_INT(sl_store_channel_remove(st, mine.id, &err), SL_ENOTFOUND);
    ASSERT_EQ_INT(sl_store_rule_remove(st, out.id, &err), SL_ENOTFOUND);
    close_tmp(st, dir);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_tier_put_validates),
        TEST_CASE(test_tenant_create_lookup_and_names),
        TEST_CASE(test_tenant_tier_change_and_limits),
        TEST_CASE(test_channels_and_rules_stay_in_their_tenant),
        {NULL, NULL},
    };
    return test_main(argc, argv, cases);
}

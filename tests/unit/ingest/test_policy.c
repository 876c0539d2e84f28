/* Tests ingest/policy.c: a tenant's tier enrichment and drop_bots from the store, cached for
 * one TTL (a change is seen once it passed), the defaults for an unknown tenant, and the
 * last answer kept when the store fails. */
#include <sqlite3.h>
#include <stdio.h>

#include "policy.h"
#include "test.h"

#define NOW_S 1800000000LL
#define TTL_MS 5000

struct fixture {
    char *dir;
    char *path;
    struct sl_store *st;
    struct ingest_policy *policy;
    char tenant_id[SL_STORE_ID_MAX];
};

static void setup(struct fixture *f)
{
    struct sl_tier tier;
    struct sl_tenant t;
    struct sl_err err;

    f->dir = test_tmpdir();
    f->path = test_path(f->dir, "t.db");
    ASSERT_OK(sl_store_open(&f->st, f->path, 1000, &err), &err);
    ASSERT_OK(sl_store_tier_get(f->st, "free", &tier, &err), &err);
    snprintf(tier.name, sizeof(tier.name), "bare");
    tier.has_enrichment = false;
    ASSERT_OK(sl_store_tier_put(f->st, &tier, NOW_S, &err), &err);
    ASSERT_OK(sl_store_tenant_create(f->st, "acme", "bare", NOW_S, &t, &err), &err);
    memcpy(f->tenant_id, t.id, sizeof(f->tenant_id));
    ASSERT_OK(ingest_policy_create(&f->policy, f->path, 1000, TTL_MS, &err), &err);
}

static void teardown(struct fixture *f)
{
    ingest_policy_destroy(f->policy);
    sl_store_close(f->st);
    test_rmtree(f->dir);
    free(f->path);
    free(f->dir);
}

static struct ingest_policy_tenant get(struct fixture *f, const char *tenant, int64_t now_ms)
{
    struct ingest_policy_tenant p;
    struct sl_err err;

    ASSERT_OK(ingest_policy_get(f->policy, tenant, now_ms, &p, &err), &err);
    return p;
}

static void test_policy_reads_and_caches(void)
{
    struct fixture f;
    struct ingest_policy_tenant p;
    struct sl_err err;

    setup(&f);
    p = get(&f, f.tenant_id, 1000);
    ASSERT_TRUE(p.is_known);
    ASSERT_TRUE(!p.has_enrichment);
    ASSERT_TRUE(!p.drop_bots);
    /* Changed in the store: the cached answer holds until the TTL passed. */
    ASSERT_OK(sl_store_tenant_set_drop_bots(f.st, "acme", true, NOW_S, &err), &err);
    ASSERT_OK(sl_store_tenant_set_tier(f.st, "acme", "paid", NOW_S, &err), &err);
    p = get(&f, f.tenant_id, 1000 + TTL_MS - 1);
    ASSERT_TRUE(!p.drop_bots);
    ASSERT_TRUE(!p.has_enrichment);
    p = get(&f, f.tenant_id, 1000 + TTL_MS);
    ASSERT_TRUE(p.drop_bots);
    ASSERT_TRUE(p.has_enrichment);
    teardown(&f);
}

static void test_policy_unknown_tenant_gets_the_defaults(void)
{
    struct fixture f;
    struct ingest_policy_tenant p;

    setup(&f);
    p = get(&f, "tn_0000000000000000", 1000);
    ASSERT_TRUE(!p.is_known);
    ASSERT_TRUE(p.has_enrichment);
    ASSERT_TRUE(!p.drop_bots);
    p = get(&f, "a tenant id far longer than any tenant id the store could ever hold", 1000);
    ASSERT_TRUE(!p.is_known);
    ASSERT_TRUE(p.has_enrichment);
    teardown(&f);
}

/* The tenants table gone (a broken store): the last answer serves; with none, an error and
 * the defaults. */
static void test_policy_keeps_the_last_answer_when_the_store_fails(void)
{
    struct fixture f;
    struct ingest_policy_tenant p;
    sqlite3 *db = NULL;
    struct sl_err err;

    setup(&f);
    ASSERT_OK(sl_store_tenant_set_drop_bots(f.st, "acme", true, NOW_S, &err), &err);
    p = get(&f, f.tenant_id, 1000);
    ASSERT_TRUE(p.drop_bots);
    /* Another process breaks the file under the cache: tenants becomes unreadable. */
    sl_store_close(f.st);
    f.st = NULL;
    ASSERT_EQ_INT(sqlite3_open(f.path, &db), SQLITE_OK);
    ASSERT_EQ_INT(sqlite3_exec(db, "ALTER TABLE tenants RENAME TO gone", NULL, NULL, NULL),
                  SQLITE_OK);
    sqlite3_close(db);
    p = get(&f, f.tenant_id, 1000 + TTL_MS);
    ASSERT_TRUE(p.drop_bots);
    sl_err_clear(&err);
    ASSERT_TRUE(ingest_policy_get(f.policy, "tn_ffffffffffffffff", 1000, &p, &err) != 0);
    ASSERT_CONTAINS(err.msg, "tenants");
    ASSERT_TRUE(p.has_enrichment);
    ASSERT_TRUE(!p.drop_bots);
    teardown(&f);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_policy_reads_and_caches),
        TEST_CASE(test_policy_unknown_tenant_gets_the_defaults),
        TEST_CASE(test_policy_keeps_the_last_answer_when_the_store_fails),
        {NULL, NULL},
    };

    return test_main(argc, argv, cases);
}

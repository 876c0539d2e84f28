/* Tests ingest/auth.c: verdicts from the store, the cache's TTLs (a revoked key stops
 * within one TTL), expiry on cached entries, effective limits, scopes. */
#include "auth.h"
#include "test.h"

#define NOW_S 1800000000LL
#define NOW_MS (NOW_S * 1000)

struct fixture {
    char *dir;
    char *path;
    struct sl_store *st;
    struct ingest_auth *auth;
    char secret[SL_KEY_SECRET_MAX];
    struct sl_key key;
};

static void setup(struct fixture *f, int64_t key_expires_s)
{
    struct ingest_auth_settings s = {.cache_ttl_ms = 5000, .negative_cache_ttl_ms = 2000,
                                     .cache_entries = 64};
    struct sl_err err;

    f->dir = test_tmpdir();
    f->path = test_path(f->dir, "t.db");
    ASSERT_OK(sl_store_open(&f->st, f->path, 1000, &err), &err);
    ASSERT_OK(sl_store_tenant_create(f->st, "acme", "free", NOW_S, NULL, &err), &err);
    ASSERT_OK(sl_store_key_create(f->st, "acme", NULL, "ingest,otlp", key_expires_s, NOW_S,
                                  &f->key, f->secret, &err), &err);
    ASSERT_OK(ingest_auth_create(&f->auth, f->path, 1000, &s, &err), &err);
}

static void teardown(struct fixture *f)
{
    ingest_auth_destroy(f->auth);
    sl_store_close(f->st);
    test_rmtree(f->dir);
    free(f->path);
    free(f->dir);
}

static struct ingest_auth_result check(struct fixture *f, const char *key, int64_t now_ms)
{
    struct ingest_auth_result r;
    struct sl_err err;

    ASSERT_OK(ingest_auth_check(f->auth, key, strlen(key), now_ms, &r, &err), &err);
    return r;
}

static void test_auth_accepts_and_caches(void)
{
    struct fixture f;
    struct ingest_auth_result r;

    setup(&f, 0);
    r = check(&f, f.secret, NOW_MS);
    ASSERT_EQ_INT(r.status, SL_KEY_OK);
    ASSERT_TRUE(!r.is_cached);
    ASSERT_EQ_STR(r.tenant_id, f.key.tenant_id);
    ASSERT_EQ_STR(r.key_id, f.key.id);
    ASSERT_EQ_INT(r.rate_limit_eps, 100);
    ASSERT_EQ_INT(r.burst, 500);
    ASSERT_TRUE(ingest_auth_has_scope(r.scopes, "otlp"));
    ASSERT_TRUE(!ingest_auth_has_scope(r.scopes, "admin"));
    ASSERT_TRUE(!ingest_auth_has_scope(r.scopes, "ing"));
    r = check(&f, f.secret, NOW_MS + 10);
    ASSERT_EQ_INT(r.status, SL_KEY_OK);
    ASSERT_TRUE(r.is_cached);
    ASSERT_EQ_STR(r.tenant_id, f.key.tenant_id);
    teardown(&f);
}

static void test_auth_revoked_key_stops_within_ttl(void)
{
    struct fixture f;
    struct sl_err err;

    setup(&f, 0);
    ASSERT_EQ_INT(check(&f, f.secret, NOW_MS).status, SL_KEY_OK);
    ASSERT_OK(sl_store_key_revoke(f.st, f.key.id, NOW_S, &err), &err);
    /* Inside the TTL the cache still answers; at its end the store's verdict wins. */
    ASSERT_EQ_INT(check(&f, f.secret, NOW_MS + 4999).status, SL_KEY_OK);
    ASSERT_EQ_INT(check(&f, f.secret, NOW_MS + 5000).status, SL_KEY_REVOKED);
    teardown(&f);
}

static void test_auth_negative_entries(void)
{
    struct fixture f;
    struct ingest_auth_result r;
    const char *bogus = "sl_AAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

    setup(&f, 0);
    r = check(&f, bogus, NOW_MS);
    ASSERT_EQ_INT(r.status, SL_KEY_UNKNOWN);
    ASSERT_TRUE(!r.is_cached);
    r = check(&f, bogus, NOW_MS + 1999);
    ASSERT_EQ_INT(r.status, SL_KEY_UNKNOWN);
    ASSERT_TRUE(r.is_cached);
    r = check(&f, bogus, NOW_MS + 2000);
    ASSERT_TRUE(!r.is_cached);
    ASSERT_EQ_INT(check(&f, "", NOW_MS).status, SL_KEY_UNKNOWN);
    teardown(&f);
}

static void test_auth_cached_key_still_expires(void)
{
    struct fixture f;

    setup(&f, NOW_S + 3);
    ASSERT_EQ_INT(check(&f, f.secret, NOW_MS).status, SL_KEY_OK);
    ASSERT_EQ_INT(check(&f, f.secret, NOW_MS + 2999).status, SL_KEY_OK);
    ASSERT_EQ_INT(check(&f, f.secret, NOW_MS + 3000).status, SL_KEY_EXPIRED);
    teardown(&f);
}

static void test_auth_disabled_tenant_and_overrides(void)
{
    struct fixture f;
    struct ingest_auth_result r;
    struct sl_err err;

    setup(&f, 0);
    ASSERT_OK(sl_store_tenant_set_limits(f.st, "acme", 7, 70, -1, NOW_S, &err), &err);
    r = check(&f, f.secret, NOW_MS);
    ASSERT_EQ_INT(r.rate_limit_eps, 7);
    ASSERT_EQ_INT(r.burst, 70);
    ASSERT_OK(sl_store_tenant_set_disabled(f.st, "acme", true, NOW_S, &err), &err);
    ASSERT_EQ_INT(check(&f, f.secret, NOW_MS + 5000).status, SL_KEY_TENANT_DISABLED);
    ASSERT_TRUE(ingest_auth_is_ready(f.auth));
    teardown(&f);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_auth_accepts_and_caches),
        TEST_CASE(test_auth_revoked_key_stops_within_ttl),
        TEST_CASE(test_auth_negative_entries),
        TEST_CASE(test_auth_cached_key_still_expires),
        TEST_CASE(test_auth_disabled_tenant_and_overrides),
        {NULL, NULL},
    };
    return test_main(argc, argv, cases);
}

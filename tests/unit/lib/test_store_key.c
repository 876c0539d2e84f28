/* Tests lib/store_key.c: key format, hashing at rest, verification, expiry, revocation,
 * disabled tenants, rotation grace. */
#include <sqlite3.h>

#include "store.h"
#include "test.h"

#define NOW 1800000000

struct fixture {
    char *dir;
    char *path;
    struct sl_store *st;
    struct sl_tenant tenant;
};

static void setup(struct fixture *f)
{
    struct sl_err err;

    f->dir = test_tmpdir();
    f->path = test_path(f->dir, "store.db");
    ASSERT_OK(sl_store_open(&f->st, f->path, 1000, &err), &err);
    ASSERT_OK(sl_store_tenant_create(f->st, "acme", "free", NOW, &f->tenant, &err), &err);
}

static void teardown(struct fixture *f)
{
    sl_store_close(f->st);
    test_rmtree(f->dir);
    free(f->path);
    free(f->dir);
}

static enum sl_key_status verify(struct fixture *f, const char *secret, int64_t now)
{
    struct sl_key_check check;
    struct sl_err err;

    ASSERT_OK(sl_store_key_verify(f->st, secret, strlen(secret), now, &check, &err), &err);
    return check.status;
}

static void test_key_secret_format_and_hash_at_rest(void)
{
    struct fixture f;
    struct sl_key k;
    char secret[SL_KEY_SECRET_MAX];
    struct sl_err err;
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;

    setup(&f);
    ASSERT_OK(sl_store_key_create(f.st, "acme", "web", NULL, 0, NOW, &k, secret, &err), &err);
    ASSERT_EQ_INT(strlen(secret), SL_KEY_SECRET_LEN);
    ASSERT_TRUE(strncmp(secret, "sl_", 3) == 0);
    ASSERT_EQ_INT(secret[15], '_');
    ASSERT_TRUE(strncmp(secret, k.id, 15) == 0);
    ASSERT_EQ_INT(strlen(k.id), 15);
    ASSERT_EQ_STR(k.scopes, "ingest");
    ASSERT_EQ_STR(k.tenant_id, f.tenant.id);

    /* The secret is nowhere in the file, only its SHA-256 (32 bytes). */
    ASSERT_EQ_INT(sqlite3_open(f.path, &db), SQLITE_OK);
    ASSERT_EQ_INT(sqlite3_prepare_v2(db, "SELECT hash FROM api_keys", -1, &stmt, NULL), SQLITE_OK);
    ASSERT_EQ_INT(sqlite3_step(stmt), SQLITE_ROW);
    ASSERT_EQ_INT(sqlite3_column_bytes(stmt, 0), 32);
    sqlite3_finalize(stmt);
    ASSERT_EQ_INT(sqlite3_prepare_v2(db,
                                     "SELECT count(*) FROM api_keys WHERE "
                                     "instr(CAST(hash AS TEXT), ?1) > 0 OR name = ?1 OR "
                                     "scopes = ?1 OR id = ?1",
                                     -1, &stmt, NULL),
                  SQLITE_OK);
    sqlite3_bind_text(stmt, 1, secret + 16, -1, SQLITE_STATIC);
    ASSERT_EQ_INT(sqlite3_step(stmt), SQLITE_ROW);
    ASSERT_EQ_INT(sqlite3_column_int(stmt, 0), 0);
    sqlite3_finalize(stmt);
    sqlite3_close(db);

    /* Two keys never share a secret. */
    {
        char other[SL_KEY_SECRET_MAX];

        ASSERT_OK(sl_store_key_create(f.st, f.tenant.id, NULL, "ingest,otlp", 0, NOW, NULL,
                                      other, &err), &err);
        ASSERT_TRUE(strcmp(other, secret) != 0);
    }
    teardown(&f);
}

static void test_key_verify_accepts_and_rejects(void)
{
    struct fixture f;
    struct sl_key_check check;
    char secret[SL_KEY_SECRET_MAX];
    char wrong[SL_KEY_SECRET_MAX];
    struct sl_err err;

    setup(&f);
    ASSERT_OK(sl_store_key_create(f.st, "acme", NULL, "ingest,otlp", 0, NOW, NULL, secret, &err),
              &err);
    ASSERT_OK(sl_store_key_verify(f.st, secret, strlen(secret), NOW, &check, &err), &err);
    ASSERT_EQ_INT(check.status, SL_KEY_OK);
    ASSERT_EQ_STR(check.tenant_id, f.tenant.id);
    ASSERT_EQ_STR(check.scopes, "ingest,otlp");

    /* Same id, one secret character changed: unknown, and no tenant is revealed. */
    memcpy(wrong, secret, sizeof(wrong));
    wrong[30] = wrong[30] == 'a' ? 'b' : 'a';
    ASSERT_OK(sl_store_key_verify(f.st, wrong, strlen(wrong), NOW, &check, &err), &err);
    ASSERT_EQ_INT(check.status, SL_KEY_UNKNOWN);
    ASSERT_EQ_STR(check.tenant_id, "");

    /* Malformed inputs. */
    ASSERT_EQ_INT(verify(&f, "", NOW), SL_KEY_UNKNOWN);
    ASSERT_EQ_INT(verify(&f, "Bearer", NOW), SL_KEY_UNKNOWN);
    ASSERT_EQ_INT(verify(&f, "sl_' OR 1=1 --_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", NOW),
                  SL_KEY_UNKNOWN);
    ASSERT_OK(sl_store_key_verify(f.st, secret, strlen(secret) - 1, NOW, &check, &err), &err);
    ASSERT_EQ_INT(check.status, SL_KEY_UNKNOWN);
    /* A well-formed key that was never issued. */
    ASSERT_EQ_INT(verify(&f, "sl_AAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB", NOW),
                  SL_KEY_UNKNOWN);
    teardown(&f);
}

static void test_key_expiry(void)
{
    struct fixture f;
    char secret[SL_KEY_SECRET_MAX];
    struct sl_err err;

    setup(&f);
    ASSERT_EQ_INT(sl_store_key_create(f.st, "acme", NULL, NULL, NOW - 1, NOW, NULL, secret, &err),
                  SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "past");
    ASSERT_OK(sl_store_key_create(f.st, "acme", NULL, NULL, NOW + 3600, NOW, NULL, secret, &err),
              &err);
    ASSERT_EQ_INT(verify(&f, secret, NOW), SL_KEY_OK);
    ASSERT_EQ_INT(verify(&f, secret, NOW + 3599), SL_KEY_OK);
    ASSERT_EQ_INT(verify(&f, secret, NOW + 3600), SL_KEY_EXPIRED);
    ASSERT_EQ_INT(verify(&f, secret, NOW + 86400), SL_KEY_EXPIRED);
    teardown(&f);
}

static void test_key_revocation(void)
{
    struct fixture f;
    char secret[SL_KEY_SECRET_MAX];
    struct sl_key k;
    struct sl_err err;

    setup(&f);
    ASSERT_OK(sl_store_key_create(f.st, "acme", NULL, NULL, 0, NOW, &k, secret, &err), &err);
    ASSERT_EQ_INT(verify(&f, secret, NOW), SL_KEY_OK);
    ASSERT_OK(sl_store_key_revoke(f.st, k.id, NOW + 10, &err), &err);
    ASSERT_EQ_INT(verify(&f, secret, NOW + 11), SL_KEY_REVOKED);
    ASSERT_EQ_INT(sl_store_key_revoke(f.st, k.id, NOW + 12, &err), SL_ESTATE);
    ASSERT_EQ_INT(sl_store_key_revoke(f.st, "sl_nope", NOW, &err), SL_ENOTFOUND);
    ASSERT_OK(sl_store_key_get(f.st, k.id, &k, &err), &err);
    ASSERT_EQ_INT(k.revoked_s, NOW + 10);
    teardown(&f);
}

static void test_key_disabled_tenant(void)
{
    struct fixture f;
    char secret[SL_KEY_SECRET_MAX];
    struct sl_err err;

    setup(&f);
    ASSERT_OK(sl_store_key_create(f.st, "acme", NULL, NULL, 0, NOW, NULL, secret, &err), &err);
    ASSERT_OK(sl_store_tenant_set_disabled(f.st, "acme", true, NOW, &err), &err);
    ASSERT_EQ_INT(verify(&f, secret, NOW), SL_KEY_TENANT_DISABLED);
    ASSERT_OK(sl_store_tenant_set_disabled(f.st, "acme", false, NOW, &err), &err);
    ASSERT_EQ_INT(verify(&f, secret, NOW), SL_KEY_OK);
    teardown(&f);
}

static void test_key_rotation_grace(void)
{
    struct fixture f;
    char old_secret[SL_KEY_SECRET_MAX];
    char new_secret[SL_KEY_SECRET_MAX];
    struct sl_key old_key, new_key;
    struct sl_err err;

    setup(&f);
    ASSERT_OK(sl_store_key_create(f.st, "acme", "web", "ingest,otlp", 0, NOW, &old_key,
                                  old_secret, &err), &err);
    ASSERT_OK(sl_store_key_rotate(f.st, old_key.id, 3600, NOW + 100, &new_key, new_secret, &err),
              &err);
    ASSERT_TRUE(strcmp(new_key.id, old_key.id) != 0);
    ASSERT_EQ_STR(new_key.name, "web");
    ASSERT_EQ_STR(new_key.scopes, "ingest,otlp");
    ASSERT_EQ_STR(new_key.tenant_id, old_key.tenant_id);
    /* Both work during the grace period; the old one stops at its end. */
    ASSERT_EQ_INT(verify(&f, old_secret, NOW + 100), SL_KEY_OK);
    ASSERT_EQ_INT(verify(&f, new_secret, NOW + 100), SL_KEY_OK);
    ASSERT_EQ_INT(verify(&f, old_secret, NOW + 100 + 3599), SL_KEY_OK);
    ASSERT_EQ_INT(verify(&f, old_secret, NOW + 100 + 3600), SL_KEY_EXPIRED);
    ASSERT_EQ_INT(verify(&f, new_secret, NOW + 100 + 86400 * 365), SL_KEY_OK);
    ASSERT_OK(sl_store_key_get(f.st, old_key.id, &old_key, &err), &err);
    ASSERT_EQ_STR(old_key.rotated_to, new_key.id);
    ASSERT_EQ_INT(old_key.expires_s, NOW + 100 + 3600);

    /* A grace longer than the old key's own expiry does not extend it. */
    {
        char s1[SL_KEY_SECRET_MAX], s2[SL_KEY_SECRET_MAX];
        struct sl_key k1;

        ASSERT_OK(sl_store_key_create(f.st, "acme", NULL, NULL, NOW + 600, NOW, &k1, s1, &err),
                  &err);
        ASSERT_OK(sl_store_key_rotate(f.st, k1.id, 86400, NOW, NULL, s2, &err), &err);
        ASSERT_EQ_INT(verify(&f, s1, NOW + 600), SL_KEY_EXPIRED);
        /* Revoked and expired keys cannot be rotated. */
        ASSERT_EQ_INT(sl_store_key_rotate(f.st, k1.id, 60, NOW + 601, NULL, s2, &err),
                      SL_ESTATE);
        ASSERT_CONTAINS(err.msg, "expired");
        ASSERT_OK(sl_store_key_revoke(f.st, new_key.id, NOW, &err), &err);
        ASSERT_EQ_INT(sl_store_key_rotate(f.st, new_key.id, 60, NOW, NULL, s2, &err), SL_ESTATE);
        ASSERT_CONTAINS(err.msg, "revoked");
    }
    teardown(&f);
}

static void test_key_scopes_and_tenants_checked(void)
{
    struct fixture f;
    char secret[SL_KEY_SECRET_MAX];
    struct sl_key *keys = NULL;
    struct sl_tenant other;
    size_t n = 0;
    struct sl_err err;

    setup(&f);
    ASSERT_EQ_INT(sl_store_key_create(f.st, "acme", NULL, "ingest,root", 0, NOW, NULL, secret,
                                      &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "'root'");
    ASSERT_EQ_INT(sl_store_key_create(f.st, "nobody", NULL, NULL, 0, NOW, NULL, secret, &err),
                  SL_ENOTFOUND);
    ASSERT_CONTAINS(err.msg, "'nobody'");
    ASSERT_OK(sl_store_tenant_create(f.st, "other", "paid", NOW, &other, &err), &err);
    ASSERT_OK(sl_store_key_create(f.st, "acme", NULL, NULL, 0, NOW, NULL, secret, &err), &err);
    ASSERT_OK(sl_store_key_create(f.st, "other", NULL, NULL, 0, NOW, NULL, secret, &err), &err);
    ASSERT_OK(sl_store_key_create(f.st, "other", NULL, NULL, 0, NOW, NULL, secret, &err), &err);
    ASSERT_OK(sl_store_key_list(f.st, "acme", &keys, &n, &err), &err);
    ASSERT_EQ_INT(n, 1);
    ASSERT_EQ_STR(keys[0].tenant_id, f.tenant.id);
    free(keys);
    ASSERT_OK(sl_store_key_list(f.st, other.id, &keys, &n, &err), &err);
    ASSERT_EQ_INT(n, 2);
    free(keys);
    ASSERT_OK(sl_store_key_list(f.st, NULL, &keys, &n, &err), &err);
    ASSERT_EQ_INT(n, 3);
    free(keys);
    /* The verdict names the key's own tenant. */
    {
        struct sl_key_check check;

        ASSERT_OK(sl_store_key_verify(f.st, secret, strlen(secret), NOW, &check, &err), &err);
        ASSERT_EQ_STR(check.tenant_id, other.id);
        ASSERT_OK(sl_store_key_touch(f.st, check.key_id, NOW + 5, &err), &err);
        {
            struct sl_key k;

            ASSERT_OK(sl_store_key_get(f.st, check.key_id, &k, &err), &err);
            ASSERT_EQ_INT(k.last_used_s, NOW + 5);
        }
    }
    teardown(&f);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_key_secret_format_and_hash_at_rest),
        TEST_CASE(test_key_verify_accepts_and_rejects),
        TEST_CASE(test_key_expiry),
        TEST_CASE(test_key_revocation),
        TEST_CASE(test_key_disabled_tenant),
        TEST_CASE(test_key_rotation_grace),
        TEST_CASE(test_key_scopes_and_tenants_checked),
        {NULL, NULL},
    };
    return test_main(argc, argv, cases);
}

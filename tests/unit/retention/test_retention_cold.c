/*
 * Tests workers/retention/cold.c's folder removal: a tenant-day folder's files and the
 * folder go (the tenant's folder too once empty); a folder already gone is success; a path
 * that does not end in the row's own tenant and day, is relative or climbs out with "..",
 * and a folder holding a sub-folder, are refused with nothing removed.
 */
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "retention_int.h"
#include "test.h"

static void touch(const char *dir, const char *name)
{
    char *path = test_path(dir, name);
    FILE *f = fopen(path, "w");

    ASSERT_TRUE(f != NULL);
    fputs("x", f);
    fclose(f);
    sl_free(path);
}

static bool exists(const char *path)
{
    struct stat sb;

    return stat(path, &sb) == 0;
}

/* Makes root/tenant/day with two files; returns the day folder (sl_free). */
static char *day_dir(const char *root, const char *tenant, const char *day)
{
    char *t = test_path(root, tenant);
    char *d = test_path(t, day);

    mkdir(t, 0755);
    ASSERT_EQ_INT(mkdir(d, 0755), 0);
    touch(d, "part-0001.jsonl.zst");
    touch(d, "part-0001.manifest.json");
    sl_free(t);
    return d;
}

static void test_retention_cold_removes_day_and_empty_tenant(void)
{
    char *root = test_tmpdir();
    char *a = day_dir(root, "tn_a", "2026-01-01");
    char *b = day_dir(root, "tn_a", "2026-01-02");
    char *tenant = test_path(root, "tn_a");
    struct sl_err err;

    ASSERT_OK(retention_cold_remove_dir(a, "tn_a", "2026-01-01", &err), &err);
    ASSERT_TRUE(!exists(a));
    ASSERT_TRUE(exists(b));
    ASSERT_TRUE(exists(tenant)); /* still holds a day */
    /* Gone already: success (a rerun after a crash). */
    ASSERT_OK(retention_cold_remove_dir(a, "tn_a", "2026-01-01", &err), &err);
    ASSERT_OK(retention_cold_remove_dir(b, "tn_a", "2026-01-02", &err), &err);
    ASSERT_TRUE(!exists(b));
    ASSERT_TRUE(!exists(tenant));
    ASSERT_TRUE(exists(root));
    test_rmtree(root);
    sl_free(a);
    sl_free(b);
    sl_free(tenant);
    sl_free(root);
}

static void test_retention_cold_refuses_foreign_paths(void)
{
    char *root = test_tmpdir();
    char *a = day_dir(root, "tn_a", "2026-01-01");
    char *sub = test_path(a, "nested");
    char rel[] = "tn_a/2026-01-01";
    char climb[2048];
    struct sl_err err;

    /* Not this tenant's, not this day, relative, climbing. */
    ASSERT_EQ_INT(retention_cold_remove_dir(a, "tn_b", "2026-01-01", &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "does not end in");
    ASSERT_EQ_INT(retention_cold_remove_dir(a, "tn_a", "2026-01-02", &err), SL_EINVAL);
    ASSERT_EQ_INT(retention_cold_remove_dir(a, "a", "2026-01-01", &err), SL_EINVAL);
    ASSERT_EQ_INT(retention_cold_remove_dir(rel, "tn_a", "2026-01-01", &err), SL_EINVAL);
    snprintf(climb, sizeof(climb), "%s/../x/tn_a/2026-01-01", root);
    ASSERT_EQ_INT(retention_cold_remove_dir(climb, "tn_a", "2026-01-01", &err), SL_EINVAL);
    ASSERT_TRUE(exists(a));

    /* A sub-folder is not ours to remove: refused, the folder stays. */
    ASSERT_EQ_INT(mkdir(sub, 0755), 0);
    ASSERT_NE_INT(retention_cold_remove_dir(a, "tn_a", "2026-01-01", &err), 0);
    ASSERT_CONTAINS(err.msg, "not a file");
    ASSERT_TRUE(exists(sub));
    test_rmtree(root);
    sl_free(a);
    sl_free(sub);
    sl_free(root);
}

static const struct test_case cases[] = {
    TEST_CASE(test_retention_cold_removes_day_and_empty_tenant),
    TEST_CASE(test_retention_cold_refuses_foreign_paths),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return test_main(argc, argv, cases);
}

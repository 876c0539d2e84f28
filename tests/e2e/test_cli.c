/* Runs the built `sluice` binary end to end: output, exit statuses (0 ok, 1 failed
 * operation, 2 bad usage) and what lands in the SQLite file. */
#include <jansson.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <time.h>

#include "store.h"
#include "test.h"

struct env {
    char *dir;
    char *db;
    char *db_env; /* "SLUICE_DB=..." */
    char *bin;
};

static void env_init(struct env *e)
{
    e->dir = test_tmpdir();
    e->db = test_path(e->dir, "tenants.db");
    if (asprintf(&e->db_env, "SLUICE_DB=%s", e->db) < 0) {
        TEST_FAIL("asprintf");
    }
    e->bin = test_bin("sluice");
}

static void env_fini(struct env *e)
{
    test_rmtree(e->dir);
    free(e->dir);
    free(e->db);
    free(e->db_env);
    free(e->bin);
}

/* Runs `sluice ARGS...` (NULL-terminated) against the env's database. */
static void run(struct env *e, struct test_proc *p, ...)
{
    char *argv[32];
    char *envp[] = {e->db_env, "SLUICE_LOG_LEVEL=warn", NULL};
    size_t n = 0;
    va_list ap;

    argv[n++] = e->bin;
    va_start(ap, p);
    for (char *a = va_arg(ap, char *); a != NULL; a = va_arg(ap, char *)) {
        ASSERT_TRUE(n < 31);
        argv[n++] = a;
    }
    va_end(ap);
    argv[n] = NULL;
    test_proc_run(p, argv, envp, NULL);
}

/* Strips the trailing newline of a one-line output in place. */
static char *line(char *s)
{
    size_t len = strlen(s);

    if (len > 0 && s[len - 1] == '\n') {
        s[len - 1] = '\0';
    }
    return s;
}

static long long db_int(struct env *e, const char *sql, const char *arg)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    long long v = -1;

    ASSERT_EQ_INT(sqlite3_open(e->db, &db), SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        TEST_FAIL("%s: %s", sql, sqlite3_errmsg(db));
    }
    if (arg != NULL) {
        sqlite3_bind_text(stmt, 1, arg, -1, SQLITE_TRANSIENT);
    }
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        v = sqlite3_column_int64(stmt, 0);
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return v;
}

static json_t *parse_json(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, 0, &jerr);

    if (v == NULL) {
        TEST_FAIL("not JSON (%s): %s", jerr.text, text);
    }
    return v;
}

static void test_cli_tenant_lifecycle(void)
{
    struct env e;
    struct test_proc p;
    char id[64];
    json_t *v;

    env_init(&e);
    run(&e, &p, "tenant", "create", "acme", "--tier", "paid", NULL);
    ASSERT_EQ_INT(p.status, 0);
    snprintf(id, sizeof(id), "%s", line(p.out));
    ASSERT_TRUE(strncmp(id, "tn_", 3) == 0 && strlen(id) == 19);
    test_proc_fini(&p);
    ASSERT_EQ_INT(db_int(&e, "SELECT count(*) FROM tenants WHERE id = ?1 AND name = 'acme' "
                             "AND tier = 'paid'", id), 1);

    run(&e, &p, "tenant", "create", "acme", NULL);
    ASSERT_EQ_INT(p.status, 1);
    ASSERT_CONTAINS(p.err, "already exists");
    test_proc_fini(&p);
    run(&e, &p, "tenant", "create", "other", "--tier", "gold", NULL);
    ASSERT_EQ_INT(p.status, 1);
    ASSERT_CONTAINS(p.err, "tier 'gold' not found (see `sluice tier list`)");
    test_proc_fini(&p);
    run(&e, &p, "tenant", "create", "bad name", NULL);
    ASSERT_EQ_INT(p.status, 2);
    ASSERT_CONTAINS(p.err, "may use only");
    test_proc_fini(&p);

    run(&e, &p, "tenant", "list", "--json", NULL);
    ASSERT_EQ_INT(p.status, 0);
    v = parse_json(p.out);
    ASSERT_EQ_INT(json_array_size(v), 1);
    ASSERT_EQ_STR(json_string_value(json_object_get(json_array_get(v, 0), "id")), id);
    json_decref(v);
    test_proc_fini(&p);

    run(&e, &p, "tenant", "set-tier", "acme", "free", NULL);
    ASSERT_EQ_INT(p.status, 0);
    ASSERT_CONTAINS(p.out, "paid -> free");
    test_proc_fini(&p);
    run(&e, &p, "tenant", "set-limits", id, "--rate-limit", "42", "--burst", "84", NULL);
    ASSERT_EQ_INT(p.status, 0);
    test_proc_fini(&p);
    run(&e, &p, "--json", "tenant", "show", "acme", NULL);
    ASSERT_EQ_INT(p.status, 0);
    v = parse_json(p.out);
    ASSERT_EQ_STR(json_string_value(json_object_get(v, "tier")), "free");
    ASSERT_EQ_STR(json_string_value(json_object_get(v, "previous_tier")), "paid");
    ASSERT_EQ_INT(json_integer_value(json_object_get(json_object_get(v, "effective"),
                                                     "rate_limit_eps")), 42);
    ASSERT_EQ_INT(json_integer_value(json_object_get(json_object_get(v, "effective"),
                                                     "retention_days")), 30);
    json_decref(v);
    test_proc_fini(&p);

    run(&e, &p, "tenant", "disable", "acme", NULL);
    ASSERT_EQ_INT(p.status, 0);
    test_proc_fini(&p);
    ASSERT_EQ_INT(db_int(&e, "SELECT disabled_at IS NOT NULL FROM tenants WHERE id = ?1", id), 1);
    run(&e, &p, "tenant", "show", "nobody", NULL);
    ASSERT_EQ_INT(p.status, 1);
    ASSERT_CONTAINS(p.err, "tenant 'nobody' not found");
    test_proc_fini(&p);
    env_fini(&e);
}

static void sha256_hex(const char *s, unsigned char out[32])
{
    unsigned int n = 0;

    ASSERT_EQ_INT(EVP_Digest(s, strlen(s), out, &n, EVP_sha256(), NULL), 1);
}

static void test_cli_keys(void)
{
    struct env e;
    struct test_proc p;
    char secret[128], new_secret[128], key_id[32];
    unsigned char hash[32];
    struct sl_store *st = NULL;
    struct sl_key_check check;
    struct sl_err err;
    json_t *v;

    env_init(&e);
    run(&e, &p, "tenant", "create", "acme", NULL);
    test_proc_fini(&p);
    run(&e, &p, "key", "create", "acme", "--name", "web", "--expires", "30d", NULL);
    ASSERT_EQ_INT(p.status, 0);
    snprintf(secret, sizeof(secret), "%s", line(p.out));
    ASSERT_CONTAINS(p.err, "not shown again");
    test_proc_fini(&p);
    ASSERT_EQ_INT(strlen(secret), SL_KEY_SECRET_LEN);
    snprintf(key_id, sizeof(key_id), "%.15s", secret);

    /* Stored as its SHA-256, never in clear. */
    sha256_hex(secret, hash);
    {
        sqlite3 *db = NULL;
        sqlite3_stmt *stmt = NULL;

        ASSERT_EQ_INT(sqlite3_open(e.db, &db), SQLITE_OK);
        ASSERT_EQ_INT(sqlite3_prepare_v2(db, "SELECT hash, expires_at - created_at FROM "
                                             "api_keys WHERE id = ?1", -1, &stmt, NULL),
                      SQLITE_OK);
        sqlite3_bind_text(stmt, 1, key_id, -1, SQLITE_STATIC);
        ASSERT_EQ_INT(sqlite3_step(stmt), SQLITE_ROW);
        ASSERT_EQ_INT(sqlite3_column_bytes(stmt, 0), 32);
        ASSERT_TRUE(memcmp(sqlite3_column_blob(stmt, 0), hash, 32) == 0);
        ASSERT_EQ_INT(sqlite3_column_int64(stmt, 1), 30 * 86400);
        sqlite3_finalize(stmt);
        sqlite3_close(db);
    }

    run(&e, &p, "key", "create", "acme", "--scopes", "ingest,everything", NULL);
    ASSERT_EQ_INT(p.status, 2);
    ASSERT_CONTAINS(p.err, "'everything'");
    test_proc_fini(&p);
    run(&e, &p, "key", "create", "acme", "--expires", "2001-01-01", NULL);
    ASSERT_EQ_INT(p.status, 2);
    ASSERT_CONTAINS(p.err, "in the past");
    test_proc_fini(&p);

    run(&e, &p, "key", "rotate", key_id, "--grace", "2h", "--json", NULL);
    ASSERT_EQ_INT(p.status, 0);
    v = parse_json(p.out);
    snprintf(new_secret, sizeof(new_secret), "%s", json_string_value(json_object_get(v, "secret")));
    ASSERT_EQ_STR(json_string_value(json_object_get(json_object_get(v, "replaces"), "status")),
                  "rotating");
    json_decref(v);
    test_proc_fini(&p);
    ASSERT_EQ_INT(db_int(&e, "SELECT expires_at - strftime('%s','now') BETWEEN 7100 AND 7200 "
                             "FROM api_keys WHERE id = ?1", key_id), 1);

    /* The CLI's writes are what the store verifies. */
    ASSERT_OK(sl_store_open(&st, e.db, 1000, &err), &err);
    ASSERT_OK(sl_store_key_verify(st, secret, strlen(secret), (int64_t)time(NULL), &check, &err),
              &err);
    ASSERT_EQ_INT(check.status, SL_KEY_OK);
    ASSERT_OK(sl_store_key_verify(st, new_secret, strlen(new_secret), (int64_t)time(NULL),
                                  &check, &err), &err);
    ASSERT_EQ_INT(check.status, SL_KEY_OK);
    ASSERT_OK(sl_store_key_verify(st, secret, strlen(secret), (int64_t)time(NULL) + 7300, &check,
                                  &err), &err);
    ASSERT_EQ_INT(check.status, SL_KEY_EXPIRED);

    run(&e, &p, "key", "revoke", key_id, NULL);
    ASSERT_EQ_INT(p.status, 0);
    test_proc_fini(&p);
    ASSERT_OK(sl_store_key_verify(st, secret, strlen(secret), (int64_t)time(NULL), &check, &err),
              &err);
    ASSERT_EQ_INT(check.status, SL_KEY_REVOKED);
    sl_store_close(st);
    run(&e, &p, "key", "revoke", key_id, NULL);
    ASSERT_EQ_INT(p.status, 1);
    ASSERT_CONTAINS(p.err, "already revoked");
    test_proc_fini(&p);

    run(&e, &p, "key", "list", "--tenant", "acme", "--json", NULL);
    ASSERT_EQ_INT(p.status, 0);
    v = parse_json(p.out);
    ASSERT_EQ_INT(json_array_size(v), 2);
    ASSERT_NOT_CONTAINS(p.out, secret + 16);
    ASSERT_NOT_CONTAINS(p.out, new_secret + 16);
    json_decref(v);
    test_proc_fini(&p);
    env_fini(&e);
}

static void test_cli_tiers_channels_rules(void)
{
    struct env e;
    struct test_proc p;
    char channel[64], rule[64];
    json_t *v;

    env_init(&e);
    run(&e, &p, "tier", "set", "gold", "--retention-days", "90", "--rate-limit", "500", "--burst",
        "1000", "--enrichment", "off", NULL);
    ASSERT_EQ_INT(p.status, 0);
    test_proc_fini(&p);
    ASSERT_EQ_INT(db_int(&e, "SELECT retention_days * 10 + enrichment FROM tiers WHERE name = ?1",
                         "gold"), 900);
    run(&e, &p, "tier", "set", "gold", "--burst", "10", NULL);
    ASSERT_EQ_INT(p.status, 2);
    ASSERT_CONTAINS(p.err, "burst");
    test_proc_fini(&p);
    run(&e, &p, "tier", "set", "gold", "--retention-days", "lots", NULL);
    ASSERT_EQ_INT(p.status, 2);
    ASSERT_CONTAINS(p.err, "'lots' is not a whole number");
    test_proc_fini(&p);
    run(&e, &p, "--json", "tier", "list", NULL);
    v = parse_json(p.out);
    ASSERT_EQ_INT(json_array_size(v), 4);
    json_decref(v);
    test_proc_fini(&p);

    run(&e, &p, "tenant", "create", "acme", "--tier", "gold", NULL);
    ASSERT_EQ_INT(p.status, 0);
    test_proc_fini(&p);
    run(&e, &p, "channel", "add", "--kind", "webhook", "--name", "hook", "--tenant", "acme",
        "--url", "http://127.0.0.1:9/hook", NULL);
    ASSERT_EQ_INT(p.status, 0);
    ASSERT_CONTAINS(p.out, "signing secret (shown once): ");
    snprintf(channel, sizeof(channel), "%.19s", p.out);
    test_proc_fini(&p);
    ASSERT_EQ_INT(db_int(&e, "SELECT length(secret) FROM alert_channels WHERE id = ?1", channel),
                  64);
    run(&e, &p, "channel", "add", "--kind", "slack", "--name", "s", "--tenant", "acme", NULL);
    ASSERT_EQ_INT(p.status, 2);
    ASSERT_CONTAINS(p.err, "URL");
    test_proc_fini(&p);
    run(&e, &p, "channel", "add", "--kind", "email", "--name", "m", "--global", "--tenant", "acme",
        "--to", "a@b.example", NULL);
    ASSERT_EQ_INT(p.status, 2);
    ASSERT_CONTAINS(p.err, "exactly one");
    test_proc_fini(&p);

    run(&e, &p, "rule", "add", "--kind", "error_rate", "--name", "errors", "--tenant", "acme",
        "--channel", channel, "--threshold", "0.25", "--window", "10m", "--cooldown", "2h", NULL);
    ASSERT_EQ_INT(p.status, 0);
    snprintf(rule, sizeof(rule), "%s", line(p.out));
    test_proc_fini(&p);
    ASSERT_EQ_INT(db_int(&e, "SELECT window_s + cooldown_s FROM alert_rules WHERE id = ?1 AND "
                             "threshold = 0.25", rule), 600 + 7200);
    run(&e, &p, "rule", "add", "--kind", "error_rate", "--name", "x", "--tenant", "acme",
        "--channel", channel, "--window", "soon", NULL);
    ASSERT_EQ_INT(p.status, 2);
    test_proc_fini(&p);
    run(&e, &p, "channel", "remove", channel, NULL);
    ASSERT_EQ_INT(p.status, 1);
    ASSERT_CONTAINS(p.err, "used by 1 rule");
    test_proc_fini(&p);
    run(&e, &p, "rule", "remove", rule, NULL);
    ASSERT_EQ_INT(p.status, 0);
    test_proc_fini(&p);
    run(&e, &p, "channel", "remove", channel, "--json", NULL);
    ASSERT_EQ_INT(p.status, 0);
    test_proc_fini(&p);
    ASSERT_EQ_INT(db_int(&e, "SELECT count(*) FROM alert_channels", NULL), 0);
    env_fini(&e);
}

static void test_cli_usage_and_help(void)
{
    static const char *const nouns[] = {"tenant", "tier", "key", "channel", "rule", "db"};
    struct env e;
    struct test_proc p;
    json_t *v;

    env_init(&e);
    for (size_t i = 0; i < sizeof(nouns) / sizeof(nouns[0]); i++) {
        run(&e, &p, nouns[i], "--help", NULL);
        ASSERT_EQ_INT(p.status, 0);
        ASSERT_CONTAINS(p.out, "usage: sluice");
        test_proc_fini(&p);
        run(&e, &p, nouns[i], NULL);
        ASSERT_EQ_INT(p.status, 2);
        test_proc_fini(&p);
        run(&e, &p, nouns[i], "frobnicate", NULL);
        ASSERT_EQ_INT(p.status, 2);
        ASSERT_CONTAINS(p.err, "frobnicate");
        test_proc_fini(&p);
    }
    run(&e, &p, "--help", NULL);
    ASSERT_EQ_INT(p.status, 0);
    test_proc_fini(&p);
    run(&e, &p, "launch", NULL);
    ASSERT_EQ_INT(p.status, 2);
    ASSERT_CONTAINS(p.err, "unknown command 'launch'");
    test_proc_fini(&p);
    run(&e, &p, "tenant", "list", "--colour", NULL);
    ASSERT_EQ_INT(p.status, 2);
    ASSERT_CONTAINS(p.err, "unknown option '--colour'");
    test_proc_fini(&p);
    run(&e, &p, "tenant", "create", "acme", "--tier", NULL);
    ASSERT_EQ_INT(p.status, 2);
    ASSERT_CONTAINS(p.err, "needs a value");
    test_proc_fini(&p);
    /* With --json, errors are JSON too. */
    run(&e, &p, "--json", "tenant", "show", "ghost", NULL);
    ASSERT_EQ_INT(p.status, 1);
    v = parse_json(p.err);
    ASSERT_CONTAINS(json_string_value(json_object_get(v, "error")), "ghost");
    json_decref(v);
    test_proc_fini(&p);
    run(&e, &p, "db", "migrate", NULL);
    ASSERT_EQ_INT(p.status, 0);
    ASSERT_CONTAINS(p.out, "schema version 8");
    test_proc_fini(&p);
    env_fini(&e);
}

static void test_cli_settings_and_bad_database(void)
{
    struct env e;
    struct test_proc p;
    char *cfg, *other_db;
    FILE *f;
    char *argv[6];

    env_init(&e);
    cfg = test_path(e.dir, "sluice.conf");
    other_db = test_path(e.dir, "from-config.db");
    f = fopen(cfg, "w");
    ASSERT_TRUE(f != NULL);
    fprintf(f, "# settings\nSLUICE_DB=\"%s\"\n", other_db);
    fclose(f);
    /* The environment wins over the file, so this case runs without SLUICE_DB. */
    argv[0] = e.bin;
    argv[1] = "--config";
    argv[2] = cfg;
    argv[3] = "db";
    argv[4] = "migrate";
    argv[5] = NULL;
    unsetenv("SLUICE_DB");
    test_proc_run(&p, argv, NULL, NULL);
    ASSERT_EQ_INT(p.status, 0);
    ASSERT_CONTAINS(p.out, other_db);
    test_proc_fini(&p);

    f = fopen(cfg, "w");
    ASSERT_TRUE(f != NULL);
    fputs("SLUICE_DB_BUSY_TIMEOUT_MS=forever\n", f);
    fclose(f);
    test_proc_run(&p, argv, NULL, NULL);
    ASSERT_EQ_INT(p.status, 2);
    ASSERT_CONTAINS(p.err, "SLUICE_DB_BUSY_TIMEOUT_MS");
    ASSERT_CONTAINS(p.err, "line 1");
    test_proc_fini(&p);

    /* A database from a newer sluice is refused with what to do. */
    run(&e, &p, "db", "migrate", NULL);
    test_proc_fini(&p);
    {
        sqlite3 *db = NULL;

        ASSERT_EQ_INT(sqlite3_open(e.db, &db), SQLITE_OK);
        ASSERT_EQ_INT(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
    }
    run(&e, &p, "tenant", "list", NULL);
    ASSERT_EQ_INT(p.status, 1);
    ASSERT_CONTAINS(p.err, "schema version 99");
    ASSERT_CONTAINS(p.err, "upgrade sluice");
    test_proc_fini(&p);
    free(cfg);
    free(other_db);
    env_fini(&e);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_cli_tenant_lifecycle),
        TEST_CASE(test_cli_keys),
        TEST_CASE(test_cli_tiers_channels_rules),
        TEST_CASE(test_cli_usage_and_help),
        TEST_CASE(test_cli_settings_and_bad_database),
        {NULL, NULL},
    };
    return test_main(argc, argv, cases);
}

/*
 * Tests lib/cfg.c: defaults, file and environment layering, every type's parsing and its
 * error message, the file syntax and its errors, printing with secrets masked, the docs
 * table, argument parsing, sl_cfg_boot and failed allocations.
 */
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include "alloc.h"
#include "cfg.h"
#include "test.h"

struct test_settings {
    char *name;
    int64_t workers;
    bool verbose;
    int64_t max_body_bytes;
    char *mode;
    char *ch_url;
    char *http_addr;
    char *password;
    char *token;
    char *tenant_prefix;
    bool strict;
};

struct other_settings {
    char *db;
};

static int check_tenant_prefix(const char *key, const char *text, struct sl_err *err)
{
    if (strncmp(text, "tn_", 3) != 0) {
        return sl_err_set(err, SL_EINVAL, "%s: '%s' must start with tn_", key, text);
    }
    return 0;
}

static int check_spelled_out(const char *key, const char *text, struct sl_err *err)
{
    if (strcmp(text, "1") == 0 || strcmp(text, "0") == 0) {
        return sl_err_set(err, SL_EINVAL, "%s: '%s' must be spelled true or false", key, text);
    }
    return 0;
}

static const struct sl_cfg_opt test_opts[] = {
    {.key = "SLUICE_T_NAME", .type = SL_CFG_STRING, .def = "sluice",
     .offset = offsetof(struct test_settings, name), .desc = "A name."},
    {.key = "SLUICE_T_WORKERS", .type = SL_CFG_INT, .def = "4", .min = 1, .max = 64,
     .offset = offsetof(struct test_settings, workers), .desc = "Worker threads."},
    {.key = "SLUICE_T_VERBOSE", .type = SL_CFG_BOOL, .def = "false",
     .offset = offsetof(struct test_settings, verbose), .desc = "Say more."},
    {.key = "SLUICE_T_MAX_BODY", .type = SL_CFG_BYTES, .def = "1M", .min = 1024,
     .max = 1024 * 1024 * 1024, .offset = offsetof(struct test_settings, max_body_bytes),
     .desc = "Largest request body."},
    {.key = "SLUICE_T_MODE", .type = SL_CFG_ENUM, .def = "both", .choices = "edge|loader|both",
     .offset = offsetof(struct test_settings, mode), .desc = "Role."},
    {.key = "SLUICE_T_CH_URL", .type = SL_CFG_URL, .def = "http://127.0.0.1:8123",
     .offset = offsetof(struct test_settings, ch_url), .desc = "ClickHouse URL."},
    {.key = "SLUICE_T_HTTP_ADDR", .type = SL_CFG_HOSTPORT, .def = "0.0.0.0:8080",
     .offset = offsetof(struct test_settings, http_addr), .desc = "Listen address."},
    {.key = "SLUICE_T_PASSWORD", .type = SL_CFG_STRING, .def = NULL, .is_secret = true,
     .offset = offsetof(struct test_settings, password), .desc = "Password."},
    {.key = "SLUICE_T_TOKEN", .type = SL_CFG_STRING, .def = "", .is_secret = true,
     .offset = offsetof(struct test_settings, token), .desc = "Token."},
    {.key = "SLUICE_T_TENANT_PREFIX", .type = SL_CFG_STRING, .def = "tn_default",
     .check = check_tenant_prefix, .offset = offsetof(struct test_settings, tenant_prefix),
     .desc = "Tenant id prefix."},
    {.key = "SLUICE_T_STRICT", .type = SL_CFG_BOOL, .def = "true", .check = check_spelled_out,
     .offset = offsetof(struct test_settings, strict), .desc = "Be strict."},
};

static const struct sl_cfg_opt other_opts[] = {
    {.key = "SLUICE_T_DB", .type = SL_CFG_STRING, .def = "sluice.db",
     .offset = offsetof(struct other_settings, db), .desc = "Database file."},
};

#define N_TEST_OPTS (sizeof(test_opts) / sizeof(test_opts[0]))

/* The sections under test, bound to zeroed structs. */
struct fixture {
    struct test_settings t;
    struct other_settings o;
    struct sl_cfg_section secs[2];
    char *dir;
};

static void fixture_init(struct fixture *fx)
{
    memset(fx, 0, sizeof(*fx));
    fx->secs[0] = SL_CFG_SECTION("test", test_opts, N_TEST_OPTS, &fx->t);
    fx->secs[1] = SL_CFG_SECTION("other", other_opts, 1, &fx->o);
    fx->dir = test_tmpdir();
}

static void fixture_fini(struct fixture *fx)
{
    sl_cfg_fini(fx->secs, 2);
    test_rmtree(fx->dir);
    free(fx->dir);
}

/* Writes text to a new file in the fixture's folder; returns its path (free). */
static char *write_file(struct fixture *fx, const char *name, const char *text)
{
    char *path = test_path(fx->dir, name);
    FILE *f = fopen(path, "w");

    ASSERT_TRUE(f != NULL);
    ASSERT_EQ_INT(fputs(text, f) >= 0, 1);
    ASSERT_EQ_INT(fclose(f), 0);
    return path;
}

static int load(struct fixture *fx, const char *file, char *const *envp, struct sl_err *err)
{
    sl_err_clear(err);
    return sl_cfg_load(fx->secs, 2, file, envp, err);
}

/* Prints with fn into memory; returns the text (free). */
static char *print_to_string(void (*fn)(const struct sl_cfg_section *, size_t, FILE *),
                             const struct sl_cfg_section *secs, size_t n_secs)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    ASSERT_TRUE(f != NULL);
    fn(secs, n_secs, f);
    ASSERT_EQ_INT(fclose(f), 0);
    return buf;
}

static void test_cfg_defaults_apply(void)
{
    struct fixture fx;
    struct sl_err err;

    fixture_init(&fx);
    ASSERT_OK(load(&fx, NULL, NULL, &err), &err);
    ASSERT_EQ_STR(fx.t.name, "sluice");
    ASSERT_EQ_INT(fx.t.workers, 4);
    ASSERT_TRUE(!fx.t.verbose);
    ASSERT_EQ_INT(fx.t.max_body_bytes, 1024 * 1024);
    ASSERT_EQ_STR(fx.t.mode, "both");
    ASSERT_EQ_STR(fx.t.ch_url, "http://127.0.0.1:8123");
    ASSERT_EQ_STR(fx.t.http_addr, "0.0.0.0:8080");
    ASSERT_EQ_STR(fx.t.password, "");
    ASSERT_EQ_STR(fx.t.token, "");
    ASSERT_EQ_STR(fx.t.tenant_prefix, "tn_default");
    ASSERT_TRUE(fx.t.strict);
    ASSERT_EQ_STR(fx.o.db, "sluice.db");
    sl_cfg_fini(fx.secs, 2);
    ASSERT_TRUE(fx.t.name == NULL && fx.t.mode == NULL && fx.o.db == NULL);
    fixture_fini(&fx);
}

static void test_cfg_file_overrides_defaults_env_overrides_file(void)
{
    char *env[] = {
        "SLUICE_T_WORKERS=16",
        "SLUICE_T_MODE=loader",
        "SLUICE_T_DB=/var/lib/sluice/env.db",
        NULL,
    };
    struct fixture fx;
    struct sl_err err;
    char *path;

    fixture_init(&fx);
    path = write_file(&fx, "sluice.conf",
                      "SLUICE_T_NAME=from-file\n"
                      "SLUICE_T_WORKERS=8\n"
                      "SLUICE_T_MODE=edge\n"
                      "SLUICE_T_VERBOSE=yes\n"
                      "SLUICE_T_DB=file.db\n");
    ASSERT_OK(load(&fx, path, env, &err), &err);
    ASSERT_EQ_STR(fx.t.name, "from-file");      /* file over default */
    ASSERT_TRUE(fx.t.verbose);                  /* file over default */
    ASSERT_EQ_INT(fx.t.workers, 16);            /* environment over file */
    ASSERT_EQ_STR(fx.t.mode, "loader");         /* environment over file */
    ASSERT_EQ_STR(fx.o.db, "/var/lib/sluice/env.db");
    ASSERT_EQ_STR(fx.t.http_addr, "0.0.0.0:8080"); /* default stays */
    free(path);
    fixture_fini(&fx);
}

struct bad_value {
    const char *key;
    const char *value;
    const char *why; /* the specific part of the message */
};

static void test_cfg_bad_values_name_key_and_value(void)
{
    static const struct bad_value cases[] = {
        {"SLUICE_T_WORKERS", "abc", "is not a whole number"},
        {"SLUICE_T_WORKERS", "", "is not a whole number"},
        {"SLUICE_T_WORKERS", "4x", "is not a whole number"},
        {"SLUICE_T_WORKERS", "4K", "is not a whole number"},
        {"SLUICE_T_WORKERS", "99999999999999999999", "is not a whole number"},
        {"SLUICE_T_WORKERS", "65", "is out of range (1..64)"},
        {"SLUICE_T_WORKERS", "0", "is out of range (1..64)"},
        {"SLUICE_T_WORKERS", "-3", "is out of range (1..64)"},
        {"SLUICE_T_MAX_BODY", "10X", "has an unknown size suffix (use K, M or G)"},
        {"SLUICE_T_MAX_BODY", "1.5M", "has an unknown size suffix"},
        {"SLUICE_T_MAX_BODY", "4KQ", "has an unknown size suffix"},
        {"SLUICE_T_MAX_BODY", "4KiBs", "has an unknown size suffix"},
        {"SLUICE_T_MAX_BODY", "2G", "is out of range (1024..1073741824)"},
        {"SLUICE_T_MAX_BODY", "512", "is out of range"},
        {"SLUICE_T_MAX_BODY", "9999999999999G", "is too large"},
        {"SLUICE_T_MAX_BODY", "big", "is not a whole number"},
        {"SLUICE_T_VERBOSE", "maybe", "is not a boolean (use true or false)"},
        {"SLUICE_T_VERBOSE", "", "is not a boolean"},
        {"SLUICE_T_MODE", "all", "is not one of edge|loader|both"},
        {"SLUICE_T_MODE", "Edge", "is not one of edge|loader|both"},
        {"SLUICE_T_MODE", "edg", "is not one of"},
        {"SLUICE_T_MODE", "", "is not one of"},
        {"SLUICE_T_CH_URL", "ftp://ch:8123", "is not an http:// or https:// URL"},
        {"SLUICE_T_CH_URL", "127.0.0.1:8123", "is not an http:// or https:// URL"},
        {"SLUICE_T_CH_URL", "http://", "has no host"},
        {"SLUICE_T_CH_URL", "http://:8123/", "has no host"},
        {"SLUICE_T_CH_URL", "https:///path", "has no host"},
        {"SLUICE_T_CH_URL", "http://[]:8123", "has no host"},
        {"SLUICE_T_CH_URL", "http://ch:0", "has no valid port (1..65535)"},
        {"SLUICE_T_CH_URL", "http://ch:65536/", "has no valid port"},
        {"SLUICE_T_CH_URL", "http://ch:/", "has no valid port"},
        {"SLUICE_T_CH_URL", "http://ch:81x", "has no valid port"},
        {"SLUICE_T_CH_URL", "http://ch:123456789", "has no valid port"},
        {"SLUICE_T_CH_URL", "http://[::1]:0/", "has no valid port"},
        {"SLUICE_T_HTTP_ADDR", "localhost", "is not host:port"},
        {"SLUICE_T_HTTP_ADDR", "", "is not host:port"},
        {"SLUICE_T_HTTP_ADDR", "::1", "is not host:port"},
        {"SLUICE_T_HTTP_ADDR", "[::1]", "is not [ipv6]:port"},
        {"SLUICE_T_HTTP_ADDR", "localhost:0", "has no valid port (1..65535)"},
        {"SLUICE_T_HTTP_ADDR", "localhost:65536", "has no valid port"},
        {"SLUICE_T_HTTP_ADDR", "localhost:", "has no valid port"},
        {"SLUICE_T_HTTP_ADDR", "localhost:http", "has no valid port"},
        {"SLUICE_T_HTTP_ADDR", "localhost:+80", "has no valid port"},
        {"SLUICE_T_HTTP_ADDR", "localhost: 80", "has no valid port"},
        {"SLUICE_T_TENANT_PREFIX", "acme_", "must start with tn_"},
        {"SLUICE_T_STRICT", "1", "must be spelled true or false"},
        {"SLUICE_T_STRICT", "sure", "is not a boolean"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char entry[256];
        char *env[] = {entry, NULL};
        char want[512];
        struct fixture fx;
        struct sl_err err;

        snprintf(entry, sizeof(entry), "%s=%s", cases[i].key, cases[i].value);
        fixture_init(&fx);
        if (load(&fx, NULL, env, &err) != SL_EINVAL) {
            TEST_FAIL("%s was accepted", entry);
        }
        ASSERT_EQ_INT(err.code, SL_EINVAL);
        /* "environment: KEY: 'value' why" (the range message shows the value unquoted). */
        ASSERT_CONTAINS(err.msg, "environment: ");
        ASSERT_CONTAINS(err.msg, cases[i].key);
        ASSERT_CONTAINS(err.msg, cases[i].why);
        snprintf(want, sizeof(want), "'%s'", cases[i].value);
        if (strstr(cases[i].why, "out of range") == NULL) {
            ASSERT_CONTAINS(err.msg, want);
        }
        else {
            ASSERT_CONTAINS(err.msg, cases[i].value);
        }
        fixture_fini(&fx);
    }
}

static void test_cfg_good_values_parse(void)
{
    static const struct {
        const char *key;
        const char *value;
    } strings[] = {
        {"SLUICE_T_CH_URL", "https://ch.example.com"},
        {"SLUICE_T_CH_URL", "http://ch:8123/?database=sluice#x"},
        {"SLUICE_T_CH_URL", "http://user@ch:65535/path"},
        {"SLUICE_T_CH_URL", "http://[::1]:8123/"},
        {"SLUICE_T_CH_URL", "http://[fe80::1]"},
        {"SLUICE_T_HTTP_ADDR", ":9000"},
        {"SLUICE_T_HTTP_ADDR", "127.0.0.1:1"},
        {"SLUICE_T_HTTP_ADDR", "[::1]:8080"},
        {"SLUICE_T_HTTP_ADDR", "ingest.internal:65535"},
        {"SLUICE_T_MODE", "edge"},
        {"SLUICE_T_NAME", ""},
        {"SLUICE_T_NAME", "with spaces and = signs"},
    };
    static const struct {
        const char *value;
        int64_t bytes;
    } sizes[] = {
        {"1024", 1024}, {"4K", 4096}, {"4k", 4096}, {"4KB", 4096}, {"4KiB", 4096},
        {"4kib", 4096}, {"2M", 2 * 1024 * 1024}, {"3mb", 3 * 1024 * 1024},
        {"1G", 1024 * 1024 * 1024}, {"1GiB", 1024 * 1024 * 1024},
    };
    static const struct {
        const char *value;
        bool is_true;
    } bools[] = {
        {"true", true}, {"TRUE", true}, {"yes", true}, {"On", true}, {"1", true},
        {"false", false}, {"False", false}, {"no", false}, {"OFF", false}, {"0", false},
    };
    const struct sl_cfg_opt *verbose = &test_opts[2];
    const struct sl_cfg_opt *max_body = &test_opts[3];
    struct sl_err err;

    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
        const struct sl_cfg_opt *opt = NULL;
        char *field = NULL;

        for (size_t j = 0; j < N_TEST_OPTS; j++) {
            if (strcmp(test_opts[j].key, strings[i].key) == 0) {
                opt = &test_opts[j];
            }
        }
        ASSERT_TRUE(opt != NULL);
        ASSERT_OK(sl_cfg_parse_value(opt, strings[i].value, &field, &err), &err);
        ASSERT_EQ_STR(field, strings[i].value);
        sl_free(field);
    }
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        int64_t v = 0;

        ASSERT_OK(sl_cfg_parse_value(max_body, sizes[i].value, &v, &err), &err);
        ASSERT_EQ_INT(v, sizes[i].bytes);
    }
    for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
        bool v = !bools[i].is_true;

        ASSERT_OK(sl_cfg_parse_value(verbose, bools[i].value, &v, &err), &err);
        ASSERT_EQ_INT(v, bools[i].is_true);
    }
}

static void test_cfg_failed_value_leaves_field_unchanged(void)
{
    const struct sl_cfg_opt *workers = &test_opts[1];
    const struct sl_cfg_opt *strict = &test_opts[10];
    const struct sl_cfg_opt *prefix = &test_opts[9];
    struct sl_cfg_opt checked_int = test_opts[1];
    int64_t n = 7;
    bool b = false;
    char *s = NULL;
    struct sl_err err;

    ASSERT_EQ_INT(sl_cfg_parse_value(workers, "100", &n, &err), SL_EINVAL);
    ASSERT_EQ_INT(n, 7);
    /* A .check refusing the text of a well-formed number or boolean keeps the field too. */
    checked_int.check = check_spelled_out;
    ASSERT_EQ_INT(sl_cfg_parse_value(&checked_int, "1", &n, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "must be spelled");
    ASSERT_EQ_INT(n, 7);
    ASSERT_EQ_INT(sl_cfg_parse_value(strict, "1", &b, &err), SL_EINVAL);
    ASSERT_TRUE(!b);
    ASSERT_OK(sl_cfg_parse_value(strict, "true", &b, &err), &err);
    ASSERT_TRUE(b);
    ASSERT_OK(sl_cfg_parse_value(prefix, "tn_a", &s, &err), &err);
    ASSERT_EQ_INT(sl_cfg_parse_value(prefix, "acme", &s, &err), SL_EINVAL);
    ASSERT_EQ_STR(s, "tn_a");
    sl_free(s);
}

static void test_cfg_file_errors_name_file_and_line(void)
{
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"# settings\n\nSLUICE_T_NAME=x\nSLUICE_T_NOPE=1\n",
         "line 4: unknown setting SLUICE_T_NOPE"},
        {"OTHER_TOOL=1\n", "line 1: unknown setting OTHER_TOOL"},
        {"SLUICE_T_NAME=x\nSLUICE_T_WORKERS 8\n",
         "line 2: expected KEY=VALUE, got 'SLUICE_T_WORKERS 8'"},
        {"\n\n\nSLUICE_T_WORKERS=lots\n",
         "line 4: SLUICE_T_WORKERS: 'lots' is not a whole number"},
        {"SLUICE_T_MODE=\"all\"\n", "line 1: SLUICE_T_MODE: 'all' is not one of"},
        {"export SLUICE_T_HTTP_ADDR=nowhere\n",
         "line 1: SLUICE_T_HTTP_ADDR: 'nowhere' is not host:port"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fixture fx;
        struct sl_err err;
        char *path;
        char want[1024];

        fixture_init(&fx);
        path = write_file(&fx, "bad.conf", cases[i].text);
        ASSERT_EQ_INT(load(&fx, path, NULL, &err), SL_EINVAL);
        snprintf(want, sizeof(want), "%s %s", path, cases[i].want);
        ASSERT_CONTAINS(err.msg, want);
        free(path);
        fixture_fini(&fx);
    }
}

static void test_cfg_file_missing_or_too_long(void)
{
    struct fixture fx;
    struct sl_err err;
    char *path;
    char *text;
    size_t n = 5000;

    fixture_init(&fx);
    path = test_path(fx.dir, "absent.conf");
    ASSERT_EQ_INT(load(&fx, path, NULL, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, path);
    ASSERT_CONTAINS(err.msg, "cannot open");
    free(path);

    text = malloc(n + 32);
    ASSERT_TRUE(text != NULL);
    strcpy(text, "SLUICE_T_NAME=x\nSLUICE_T_NAME=");
    memset(text + strlen(text), 'a', n);
    strcpy(text + strlen("SLUICE_T_NAME=x\nSLUICE_T_NAME=") + n, "\n");
    path = write_file(&fx, "long.conf", text);
    ASSERT_EQ_INT(load(&fx, path, NULL, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "line 2: line is longer than");
    free(path);
    free(text);
    fixture_fini(&fx);
}

static void test_cfg_file_syntax(void)
{
    struct fixture fx;
    struct sl_err err;
    char *path;

    fixture_init(&fx);
    path = write_file(&fx, "syntax.conf",
                      "# a comment\n"
                      "   # an indented comment\n"
                      "\n"
                      "   \t\n"
                      "SLUICE_T_NAME=\"quoted value\"\n"
                      "export SLUICE_T_MODE=edge\n"
                      "  SLUICE_T_WORKERS  =  12  \r\n"
                      "SLUICE_T_PASSWORD='single quoted'\n"
                      "SLUICE_T_DB=\"unbalanced\n"
                      "SLUICE_T_CH_URL=http://ch:8123/?database=x&a=b\n"
                      "SLUICE_T_TOKEN=\"\"\n"
                      "SLUICE_T_TENANT_PREFIX=tn_'x'\n"
                      "SLUICE_T_MAX_BODY=64K");
    ASSERT_OK(load(&fx, path, NULL, &err), &err);
    ASSERT_EQ_STR(fx.t.name, "quoted value");
    ASSERT_EQ_STR(fx.t.mode, "edge");
    ASSERT_EQ_INT(fx.t.workers, 12);
    ASSERT_EQ_STR(fx.t.password, "single quoted");
    ASSERT_EQ_STR(fx.o.db, "\"unbalanced"); /* quotes are stripped only in pairs */
    ASSERT_EQ_STR(fx.t.ch_url, "http://ch:8123/?database=x&a=b");
    ASSERT_EQ_STR(fx.t.token, "");
    ASSERT_EQ_STR(fx.t.tenant_prefix, "tn_'x'"); /* inner quotes stay */
    ASSERT_EQ_INT(fx.t.max_body_bytes, 64 * 1024); /* last line without a newline */
    free(path);
    fixture_fini(&fx);
}

static void test_cfg_environment_ignores_unknown_keys(void)
{
    char *env[] = {
        "SLUICE_SOMETHING_ELSE=whatever",
        "SLUICE_T_WORKERSX=not-a-number",
        "SLUICE_T=1",
        "HOME=/root",
        "T_WORKERS=99",
        "SLUICE_T_WORKERS_NO_EQUALS",
        "SLUICE_T_NAME=from env",
        NULL,
    };
    struct fixture fx;
    struct sl_err err;

    fixture_init(&fx);
    ASSERT_OK(load(&fx, NULL, env, &err), &err);
    ASSERT_EQ_STR(fx.t.name, "from env");
    ASSERT_EQ_INT(fx.t.workers, 4);
    fixture_fini(&fx);
}

static void test_cfg_error_after_file_leaves_fields_freeable(void)
{
    char *env[] = {"SLUICE_T_WORKERS=many", NULL};
    struct fixture fx;
    struct sl_err err;
    char *path;

    fixture_init(&fx);
    path = write_file(&fx, "ok.conf", "SLUICE_T_NAME=a\nSLUICE_T_PASSWORD=p\n");
    ASSERT_EQ_INT(load(&fx, path, env, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "environment: SLUICE_T_WORKERS: 'many'");
    /* What was filled stays valid; fixture_fini frees it (ASan checks for leaks). */
    ASSERT_EQ_STR(fx.t.name, "a");
    free(path);
    fixture_fini(&fx);
}

static void test_cfg_print_masks_secrets(void)
{
    char *env[] = {"SLUICE_T_PASSWORD=hunter2", "SLUICE_T_WORKERS=9", NULL};
    struct fixture fx;
    struct sl_err err;
    char *out;

    fixture_init(&fx);
    ASSERT_OK(load(&fx, NULL, env, &err), &err);
    out = print_to_string(sl_cfg_print, fx.secs, 2);
    ASSERT_EQ_STR(out, "# test\n"
                       "SLUICE_T_NAME=sluice\n"
                       "SLUICE_T_WORKERS=9\n"
                       "SLUICE_T_VERBOSE=false\n"
                       "SLUICE_T_MAX_BODY=1048576\n"
                       "SLUICE_T_MODE=both\n"
                       "SLUICE_T_CH_URL=http://127.0.0.1:8123\n"
                       "SLUICE_T_HTTP_ADDR=0.0.0.0:8080\n"
                       "SLUICE_T_PASSWORD=****\n"
                       "SLUICE_T_TOKEN=\n"
                       "SLUICE_T_TENANT_PREFIX=tn_default\n"
                       "SLUICE_T_STRICT=true\n"
                       "# other\n"
                       "SLUICE_T_DB=sluice.db\n");
    ASSERT_NOT_CONTAINS(out, "hunter2");
    free(out);
    fixture_fini(&fx);
}

static void test_cfg_print_docs_lists_every_key(void)
{
    struct fixture fx;
    char *out;

    fixture_init(&fx);
    out = print_to_string(sl_cfg_print_docs, fx.secs, 2);
    ASSERT_CONTAINS(out, "| setting | default | description |\n|---|---|---|\n");
    for (size_t i = 0; i < N_TEST_OPTS; i++) {
        char want[128];

        snprintf(want, sizeof(want), "| `%s` |", test_opts[i].key);
        ASSERT_CONTAINS(out, want);
        ASSERT_CONTAINS(out, test_opts[i].desc);
    }
    ASSERT_CONTAINS(out, "| `SLUICE_T_DB` | `sluice.db` | Database file. |\n");
    ASSERT_CONTAINS(out, "| `SLUICE_T_WORKERS` | `4` | Worker threads. |\n");
    ASSERT_CONTAINS(out, "| `SLUICE_T_PASSWORD` | `(empty)` | Password. (secret) |\n");
    free(out);
    fixture_fini(&fx);
}

/* Two sections that declare the same key (workers sharing a setting) both get its value,
 * from the file and from the environment, and print it once. */
static void test_cfg_shared_key_sets_every_section(void)
{
    static const struct sl_cfg_opt shared_opts[] = {
        {.key = "SLUICE_T_DB", .type = SL_CFG_STRING, .def = "other.db",
         .offset = offsetof(struct other_settings, db), .desc = "The same file."},
    };
    char *env[] = {"SLUICE_T_DB=from-env.db", NULL};
    struct other_settings a = {0}, b = {0};
    struct sl_cfg_section secs[] = {
        SL_CFG_SECTION("one", other_opts, 1, &a),
        SL_CFG_SECTION("two", shared_opts, 1, &b),
    };
    struct fixture fx;
    struct sl_err err;
    char *path;
    char *out;

    fixture_init(&fx);
    ASSERT_OK(sl_cfg_load(secs, 2, NULL, NULL, &err), &err);
    ASSERT_EQ_STR(a.db, "sluice.db");
    ASSERT_EQ_STR(b.db, "other.db");
    path = write_file(&fx, "shared.conf", "SLUICE_T_DB=from-file.db\n");
    ASSERT_OK(sl_cfg_load(secs, 2, path, NULL, &err), &err);
    ASSERT_EQ_STR(a.db, "from-file.db");
    ASSERT_EQ_STR(b.db, "from-file.db");
    ASSERT_OK(sl_cfg_load(secs, 2, path, env, &err), &err);
    ASSERT_EQ_STR(a.db, "from-env.db");
    ASSERT_EQ_STR(b.db, "from-env.db");
    out = print_to_string(sl_cfg_print, secs, 2);
    ASSERT_EQ_STR(out, "# one\nSLUICE_T_DB=from-env.db\n# two\n");
    free(out);
    out = print_to_string(sl_cfg_print_docs, secs, 2);
    ASSERT_CONTAINS(out, "| `SLUICE_T_DB` | `sluice.db` | Database file. |\n");
    ASSERT_NOT_CONTAINS(out, "The same file.");
    free(out);
    sl_cfg_fini(secs, 2);
    free(path);
    fixture_fini(&fx);
}

static void test_cfg_parse_args(void)
{
    char *a1[] = {"prog", "--config", "a.conf", "--print-config", NULL};
    char *a2[] = {"prog", "--config=b.conf", NULL};
    char *a3[] = {"prog", "--help", "--version", "--help-config", NULL};
    char *a4[] = {"prog", "-h", NULL};
    char *a5[] = {"prog", "--bogus", NULL};
    char *a6[] = {"prog", "--config", NULL};
    char *a7[] = {"prog", "extra.conf", NULL};
    char *a8[] = {"prog", NULL};
    struct sl_cfg_args args;
    struct sl_err err;

    ASSERT_OK(sl_cfg_parse_args(4, a1, &args, &err), &err);
    ASSERT_EQ_STR(args.config_file, "a.conf");
    ASSERT_TRUE(args.print_config && !args.help && !args.version && !args.help_config);
    ASSERT_OK(sl_cfg_parse_args(2, a2, &args, &err), &err);
    ASSERT_EQ_STR(args.config_file, "b.conf");
    ASSERT_TRUE(!args.print_config);
    ASSERT_OK(sl_cfg_parse_args(4, a3, &args, &err), &err);
    ASSERT_TRUE(args.help && args.version && args.help_config && args.config_file == NULL);
    ASSERT_OK(sl_cfg_parse_args(2, a4, &args, &err), &err);
    ASSERT_TRUE(args.help);
    ASSERT_EQ_INT(sl_cfg_parse_args(2, a5, &args, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "unknown argument '--bogus'");
    ASSERT_EQ_INT(sl_cfg_parse_args(2, a6, &args, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "--config needs a file name");
    ASSERT_EQ_INT(sl_cfg_parse_args(2, a7, &args, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "'extra.conf'");
    ASSERT_OK(sl_cfg_parse_args(1, a8, &args, &err), &err);
    ASSERT_TRUE(args.config_file == NULL && !args.print_config && !args.help);
}

/* Runs sl_cfg_boot with output captured; returns its status. */
static int boot(struct fixture *fx, int argc, char **argv, char **out, char **errout)
{
    size_t out_len = 0;
    size_t err_len = 0;
    FILE *o = open_memstream(out, &out_len);
    FILE *e = open_memstream(errout, &err_len);
    int status;

    ASSERT_TRUE(o != NULL && e != NULL);
    status = sl_cfg_boot("prog", "usage: prog\n", argc, argv, fx->secs, 2, o, e);
    ASSERT_EQ_INT(fclose(o), 0);
    ASSERT_EQ_INT(fclose(e), 0);
    return status;
}

static void test_cfg_boot(void)
{
    char *help[] = {"prog", "--help", NULL};
    char *bogus[] = {"prog", "--bogus", NULL};
    char *print[] = {"prog", "--config", NULL, "--print-config", NULL};
    char *run[] = {"prog", NULL};
    char *docs[] = {"prog", "--help-config", NULL};
    struct fixture fx;
    char *out = NULL;
    char *errout = NULL;
    char *path;

    fixture_init(&fx);
    ASSERT_EQ_INT(boot(&fx, 2, help, &out, &errout), 0);
    ASSERT_EQ_STR(out, "usage: prog\n");
    free(out);
    free(errout);

    ASSERT_EQ_INT(boot(&fx, 2, bogus, &out, &errout), SL_EXIT_USAGE);
    ASSERT_EQ_STR(errout, "prog: error: unknown argument '--bogus' (see --help)\n");
    free(out);
    free(errout);

    ASSERT_EQ_INT(boot(&fx, 2, docs, &out, &errout), 0);
    ASSERT_CONTAINS(out, "`SLUICE_T_DB`");
    free(out);
    free(errout);

    path = write_file(&fx, "boot.conf", "SLUICE_T_NAME=booted\nSLUICE_T_TOKEN=abc\n");
    print[2] = path;
    ASSERT_EQ_INT(setenv("SLUICE_T_WORKERS", "33", 1), 0);
    ASSERT_EQ_INT(boot(&fx, 4, print, &out, &errout), 0);
    ASSERT_CONTAINS(out, "SLUICE_T_NAME=booted\n");
    ASSERT_CONTAINS(out, "SLUICE_T_WORKERS=33\n");
    ASSERT_CONTAINS(out, "SLUICE_T_TOKEN=****\n");
    free(out);
    free(errout);
    sl_cfg_fini(fx.secs, 2);

    ASSERT_EQ_INT(setenv("SLUICE_T_WORKERS", "lots", 1), 0);
    ASSERT_EQ_INT(boot(&fx, 1, run, &out, &errout), SL_EXIT_USAGE);
    ASSERT_EQ_STR(errout, "prog: error: bad setting: environment: SLUICE_T_WORKERS: 'lots' is "
                          "not a whole number\n");
    free(out);
    free(errout);
    sl_cfg_fini(fx.secs, 2);

    ASSERT_EQ_INT(unsetenv("SLUICE_T_WORKERS"), 0);
    ASSERT_EQ_INT(boot(&fx, 1, run, &out, &errout), -1);
    ASSERT_EQ_STR(out, "");
    ASSERT_EQ_INT(fx.t.workers, 4);
    free(out);
    free(errout);
    free(path);
    fixture_fini(&fx);
}

static void test_cfg_allocation_failures(void)
{
    char *env[] = {"SLUICE_T_NAME=env-name", NULL};
    long n;

    for (n = 0; n < 1000; n++) {
        struct fixture fx;
        struct sl_err err;
        char *path;
        int rc;
        int rc_no_err;

        fixture_init(&fx);
        path = write_file(&fx, "oom.conf", "SLUICE_T_MODE=edge\nSLUICE_T_DB=file.db\n");
        sl_alloc_fail_after(n);
        rc = load(&fx, path, env, &err);
        sl_alloc_fail_after(-1);
        sl_cfg_fini(fx.secs, 2);
        /* The same failure without an sl_err still reports SL_ENOMEM. */
        sl_alloc_fail_after(n);
        rc_no_err = sl_cfg_load(fx.secs, 2, path, env, NULL);
        sl_alloc_fail_after(-1);
        ASSERT_EQ_INT(rc_no_err, rc);
        if (rc == 0) {
            ASSERT_EQ_STR(fx.t.name, "env-name");
            ASSERT_EQ_STR(fx.t.mode, "edge");
            ASSERT_EQ_STR(fx.o.db, "file.db");
            free(path);
            fixture_fini(&fx);
            break;
        }
        ASSERT_EQ_INT(rc, SL_ENOMEM);
        ASSERT_EQ_INT(err.code, SL_ENOMEM);
        ASSERT_CONTAINS(err.msg, "out of memory");
        ASSERT_CONTAINS(err.msg, "SLUICE_T_");
        free(path);
        fixture_fini(&fx);
    }
    ASSERT_TRUE(n > 8);
    ASSERT_TRUE(n < 1000);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_cfg_defaults_apply),
        TEST_CASE(test_cfg_file_overrides_defaults_env_overrides_file),
        TEST_CASE(test_cfg_bad_values_name_key_and_value),
        TEST_CASE(test_cfg_good_values_parse),
        TEST_CASE(test_cfg_failed_value_leaves_field_unchanged),
        TEST_CASE(test_cfg_file_errors_name_file_and_line),
        TEST_CASE(test_cfg_file_missing_or_too_long),
        TEST_CASE(test_cfg_file_syntax),
        TEST_CASE(test_cfg_environment_ignores_unknown_keys),
        TEST_CASE(test_cfg_error_after_file_leaves_fields_freeable),
        TEST_CASE(test_cfg_print_masks_secrets),
        TEST_CASE(test_cfg_print_docs_lists_every_key),
        TEST_CASE(test_cfg_shared_key_sets_every_section),
        TEST_CASE(test_cfg_parse_args),
        TEST_CASE(test_cfg_boot),
        TEST_CASE(test_cfg_allocation_failures),
        {NULL, NULL},
    };
    return test_main(argc, argv, cases);
}

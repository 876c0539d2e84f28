/*
 * Tests workers/enrichment/ua.c against ua-parser's own published expectations: uap-core's
 * tests/test_ua.yaml, test_os.yaml and test_device.yaml, plus the extra suites its test runner
 * reads from test_resources/ when they are there (Firefox, Opera Mini, podcasting apps, the
 * PGTS browser list, additional OS cases). Every case must give exactly the expected values;
 * each suite prints its pass rate and, on failure, the cases that differ.
 *
 * Needs SLUICE_TEST_UAP_CORE_DIR: a uap-core folder holding regexes.yaml and tests/ of the
 * same release (scripts/enrich-data.sh prints it); skipped without it.
 */
#include <stdlib.h>
#include <yaml.h>

#include "alloc.h"
#include "test.h"
#include "ua.h"

/* Most differing cases printed per suite. */
#define MAX_SHOWN 25

enum kind {
    KIND_UA,
    KIND_OS,
    KIND_DEVICE,
};

/*
 * Expected keys per kind and the result fields they are compared with. As in uap-core's own
 * runner (tests/test.js), a user agent's patch_minor is not compared: test_ua.yaml carries
 * it for some cases, but from regexes of earlier releases (e.g. "FBAV/194.0.0.38" expects 38
 * from a rule that now has four groups).
 */
static const char *const keys[3][5] = {
    [KIND_UA] = {"family", "major", "minor", "patch", NULL},
    [KIND_OS] = {"family", "major", "minor", "patch", "patch_minor"},
    [KIND_DEVICE] = {"family", "brand", "model", NULL, NULL},
};

static const enum enrich_ua_field fields[3][5] = {
    [KIND_UA] = {ENRICH_UA_FAMILY, ENRICH_UA_MAJOR, ENRICH_UA_MINOR, ENRICH_UA_PATCH,
                 ENRICH_UA_PATCH_MINOR},
    [KIND_OS] = {ENRICH_OS_FAMILY, ENRICH_OS_MAJOR, ENRICH_OS_MINOR, ENRICH_OS_PATCH,
                 ENRICH_OS_PATCH_MINOR},
    [KIND_DEVICE] = {ENRICH_DEVICE_FAMILY, ENRICH_DEVICE_BRAND, ENRICH_DEVICE_MODEL, 0, 0},
};

static const unsigned masks[3] = {ENRICH_UA_SECTION_UA, ENRICH_UA_SECTION_OS,
                                  ENRICH_UA_SECTION_DEVICE};

/* GLOBAL: the parser of SLUICE_TEST_UAP_CORE_DIR/regexes.yaml, loaded by the first case on
 * the main thread and freed at exit; cases run one after another. */
static struct enrich_ua *g_ua;

static void free_parser(void)
{
    enrich_ua_destroy(g_ua);
    g_ua = NULL;
}

static const struct enrich_ua *parser(void)
{
    if (g_ua == NULL) {
        char *path = test_path(test_env_require("SLUICE_TEST_UAP_CORE_DIR"), "regexes.yaml");
        struct sl_err err;

        sl_err_clear(&err);
        ASSERT_OK(enrich_ua_create(path, &g_ua, &err), &err);
        free(path);
        atexit(free_parser);
    }
    return g_ua;
}

static const char *scalar_of(yaml_document_t *doc, yaml_node_t *n)
{
    (void)doc;
    return n != NULL && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* The expected value: NULL for YAML null or an empty string (both mean "undefined"). */
static const char *expected_of(yaml_node_t *n)
{
    const char *v;

    if (n == NULL || n->type != YAML_SCALAR_NODE) {
        return NULL;
    }
    v = (const char *)n->data.scalar.value;
    if (v[0] == '\0' || (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                         (strcmp(v, "~") == 0 || strcmp(v, "null") == 0))) {
        return NULL;
    }
    return v;
}

static bool same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/*
 * Runs one suite file (relative to the uap-core folder). Returns false when the file is not
 * there and optional is set.
 */
static bool run_suite(const char *rel, enum kind kind, bool optional)
{
    const struct enrich_ua *ua = parser();
    char *path = test_path(test_env_require("SLUICE_TEST_UAP_CORE_DIR"), rel);
    yaml_parser_t yp;
    yaml_document_t doc;
    yaml_node_t *root, *cases = NULL;
    size_t n_cases = 0, n_failed = 0;
    FILE *f = fopen(path, "rb");

    if (f == NULL) {
        if (optional) {
            fprintf(stderr, "%s: not present, not run\n", rel);
            free(path);
            return false;
        }
        TEST_FAIL("cannot open %s", path);
    }
    ASSERT_TRUE(yaml_parser_initialize(&yp));
    yaml_parser_set_input_file(&yp, f);
    if (!yaml_parser_load(&yp, &doc)) {
        TEST_FAIL("%s: YAML error: %s", path, yp.problem);
    }
    root = yaml_document_get_root_node(&doc);
    ASSERT_TRUE(root != NULL && root->type == YAML_MAPPING_NODE);
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        const char *k = scalar_of(&doc, yaml_document_get_node(&doc, p->key));

        if (k != NULL && strcmp(k, "test_cases") == 0) {
            cases = yaml_document_get_node(&doc, p->value);
        }
    }
    ASSERT_TRUE(cases != NULL && cases->type == YAML_SEQUENCE_NODE);
    for (yaml_node_item_t *it = cases->data.sequence.items.start;
         it < cases->data.sequence.items.top; it++) {
        yaml_node_t *c = yaml_document_get_node(&doc, *it);
        yaml_node_t *vals[5] = {NULL};
        bool has[5] = {false};
        const char *agent = NULL;
        struct enrich_ua_result r;
        bool is_ok = true;

        ASSERT_TRUE(c->type == YAML_MAPPING_NODE);
        for (yaml_node_pair_t *p = c->data.mapping.pairs.start; p < c->data.mapping.pairs.top;
             p++) {
            const char *k = scalar_of(&doc, yaml_document_get_node(&doc, p->key));
            yaml_node_t *v = yaml_document_get_node(&doc, p->value);

            if (k == NULL) {
                continue;
            }
            if (strcmp(k, "user_agent_string") == 0) {
                agent = scalar_of(&doc, v);
            }
            for (int i = 0; i < 5; i++) {
                if (keys[kind][i] != NULL && strcmp(k, keys[kind][i]) == 0) {
                    vals[i] = v;
                    has[i] = true;
                }
            }
        }
        ASSERT_TRUE(agent != NULL);
        n_cases++;
        ASSERT_OK(enrich_ua_parse(ua, agent, strlen(agent), masks[kind], &r), NULL);
        for (int i = 0; i < 5; i++) {
            /* A key the case does not list is not checked (older suites lack patch_minor). */
            if (keys[kind][i] != NULL && has[i] &&
                !same(enrich_ua_get(&r, fields[kind][i]), expected_of(vals[i]))) {
                is_ok = false;
            }
        }
        if (!is_ok) {
            n_failed++;
            if (n_failed <= MAX_SHOWN) {
                fprintf(stderr, "%s: differs: %s\n", rel, agent);
                for (int i = 0; i < 5; i++) {
                    const char *want = expected_of(vals[i]);
                    const char *got;

                    if (keys[kind][i] == NULL || !has[i]) {
                        continue;
                    }
                    got = enrich_ua_get(&r, fields[kind][i]);
                    fprintf(stderr, "    %-11s want %-24s got %s%s\n", keys[kind][i],
                            want != NULL ? want : "null", got != NULL ? got : "null",
                            same(got, want) ? "" : "   <--");
                }
            }
        }
    }
    fprintf(stderr, "%s: %zu of %zu cases pass (%.2f%%)\n", rel, n_cases - n_failed, n_cases,
            n_cases > 0 ? 100.0 * (double)(n_cases - n_failed) / (double)n_cases : 0.0);
    yaml_document_delete(&doc);
    yaml_parser_delete(&yp);
    fclose(f);
    free(path);
    ASSERT_TRUE(n_cases > 0);
    ASSERT_EQ_INT(n_failed, 0);
    return true;
}

static void test_uap_core_test_ua(void)
{
    run_suite("tests/test_ua.yaml", KIND_UA, false);
}

static void test_uap_core_test_os(void)
{
    run_suite("tests/test_os.yaml", KIND_OS, false);
}

static void test_uap_core_test_device(void)
{
    run_suite("tests/test_device.yaml", KIND_DEVICE, false);
}

static void test_uap_core_test_resources(void)
{
    static const struct {
        const char *rel;
        enum kind kind;
    } extra[] = {
        {"test_resources/firefox_user_agent_strings.yaml", KIND_UA},
        {"test_resources/opera_mini_user_agent_strings.yaml", KIND_UA},
        {"test_resources/podcasting_user_agent_strings.yaml", KIND_UA},
        {"test_resources/pgts_browser_list.yaml", KIND_UA},
        {"test_resources/additional_os_tests.yaml", KIND_OS},
    };

    for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
        run_suite(extra[i].rel, extra[i].kind, true);
    }
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_uap_core_test_ua),
        TEST_CASE(test_uap_core_test_os),
        TEST_CASE(test_uap_core_test_device),
        TEST_CASE(test_uap_core_test_resources),
        {NULL, NULL},
    };

    sl_alloc_init_jansson();
    return test_main(argc, argv, cases);
}

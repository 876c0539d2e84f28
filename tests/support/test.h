/*
 * Test harness: a table of cases per file, assertions that are never compiled out and
 * print both sides with file and line, a runner that can run one case by name
 * (`test_x case_name`), and helpers for temp folders, child processes and the real
 * stack's environment.
 */
#ifndef SLUICE_TESTS_SUPPORT_TEST_H
#define SLUICE_TESTS_SUPPORT_TEST_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ctest's SKIP_RETURN_CODE. */
#define TEST_SKIP_CODE 77

struct test_case {
    const char *name;
    void (*fn)(void);
};

#define TEST_CASE(fn) {#fn, fn}

/* Runs every case of the NULL-terminated table, or only the ones named in argv. */
int test_main(int argc, char **argv, const struct test_case *cases);

#define TEST_FAIL(...)                                                                    \
    do {                                                                                  \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                    \
        fprintf(stderr, __VA_ARGS__);                                                     \
        fprintf(stderr, "\n");                                                            \
        abort();                                                                          \
    } while (0)

#define ASSERT_TRUE(cond)                                                                 \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            TEST_FAIL("assertion failed: %s", #cond);                                     \
        }                                                                                 \
    } while (0)

#define ASSERT_EQ_INT(a, b)                                                               \
    do {                                                                                  \
        long long a_ = (long long)(a), b_ = (long long)(b);                               \
        if (a_ != b_) {                                                                   \
            TEST_FAIL("%s == %s failed: %lld != %lld", #a, #b, a_, b_);                   \
        }                                                                                 \
    } while (0)

#define ASSERT_NE_INT(a, b)                                                               \
    do {                                                                                  \
        long long a_ = (long long)(a), b_ = (long long)(b);                               \
        if (a_ == b_) {                                                                   \
            TEST_FAIL("%s != %s failed: both %lld", #a, #b, a_);                          \
        }                                                                                 \
    } while (0)

#define ASSERT_EQ_STR(a, b)                                                               \
    do {                                                                                  \
        const char *a_ = (a), *b_ = (b);                                                  \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                            \
            TEST_FAIL("%s == %s failed: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)",     \
                      b_ ? b_ : "(null)");                                                \
        }                                                                                 \
    } while (0)

#define ASSERT_CONTAINS(haystack, needle)                                                 \
    do {                                                                                  \
        const char *h_ = (haystack), *n_ = (needle);                                      \
        if (h_ == NULL || strstr(h_, n_) == NULL) {                                       \
            TEST_FAIL("%s does not contain \"%s\": \"%s\"", #haystack, n_,                 \
                      h_ ? h_ : "(null)");                                                \
        }                                                                                 \
    } while (0)

#define ASSERT_NOT_CONTAINS(haystack, needle)                                             \
    do {                                                                                  \
        const char *h_ = (haystack), *n_ = (needle);                                      \
        if (h_ != NULL && strstr(h_, n_) != NULL) {                                       \
            TEST_FAIL("%s contains \"%s\": \"%s\"", #haystack, n_, h_);                     \
        }                                                                                 \
    } while (0)

/* rc must be 0; otherwise prints rc and the sl_err message (err may be NULL). */
#define ASSERT_OK(rc, err)                                                                \
    do {                                                                                  \
        int rc_ = (rc);                                                                   \
        if (rc_ != 0) {                                                                   \
            TEST_FAIL("%s returned %d: %s", #rc, rc_,                                     \
                      (err) != NULL ? ((const struct sl_err *)(err))->msg : "");          \
        }                                                                                 \
    } while (0)

/* Returns a new empty folder under $TMPDIR (caller frees; removed by test_rmtree). */
char *test_tmpdir(void);

/* Removes a folder tree (best effort). */
void test_rmtree(const char *path);

/* Returns "dir/name" (caller frees). */
char *test_path(const char *dir, const char *name);

/* Returns printf output as new text (caller frees); fails the test when memory runs out. */
char *test_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Returns getenv(name). When it is unset or empty the case cannot run: the test exits with
 * TEST_SKIP_CODE, unless SLUICE_TEST_REQUIRE_STACK=1 (the suite's script sets it), when a
 * missing stack is a failure.
 */
const char *test_env_require(const char *name);

/* Output of a finished child process. */
struct test_proc {
    int status;   /* exit status, or 128+signal */
    char *out;    /* stdout, NUL-terminated (caller frees with test_proc_fini) */
    char *err;    /* stderr */
};

/*
 * Runs argv[0] with argv, extra environment entries `env` (NULL-terminated "K=V",
 * added to the current environment; may be NULL) and `input` on stdin (may be NULL).
 * Waits for it to exit and captures its output.
 */
void test_proc_run(struct test_proc *p, char *const argv[], char *const env[],
                   const char *input);
void test_proc_fini(struct test_proc *p);

/* Path of a built binary: $SLUICE_BIN_DIR/name (ctest sets SLUICE_BIN_DIR). */
char *test_bin(const char *name);

#endif

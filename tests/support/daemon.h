/*
 * Running a built daemon in a test: start it with a clean SLUICE_* environment in a
 * folder of its own, its stderr going to a log file there (never a pipe, so a chatty
 * daemon cannot block), wait for a JSON log line, signal it, reap it within a deadline.
 */
#ifndef SLUICE_TESTS_SUPPORT_DAEMON_H
#define SLUICE_TESTS_SUPPORT_DAEMON_H

#include <stdbool.h>
#include <sys/types.h>

struct test_daemon {
    pid_t pid;
    char *log_path; /* dir/<name>.log */
    char *log;      /* the log file's text as last read (see test_daemon_read_log) */
    int status;     /* exit status once reaped, 128+signal when killed */
    bool is_reaped;
};

/*
 * Starts bin (argv: bin plus args, NULL-terminated, may be NULL) in dir with the current
 * environment minus every SLUICE_* entry except SLUICE_TEST_* and SLUICE_BIN_DIR, plus env
 * ("K=V", NULL-terminated). Fails the test if it cannot start.
 */
void test_daemon_start(struct test_daemon *d, const char *bin, const char *const *args,
                       const char *dir, char *const *env);

/* Rereads the log file into d->log. */
void test_daemon_read_log(struct test_daemon *d);

/*
 * Whether the log has an info-or-higher JSON line from component whose message contains
 * every word of words (NULL-terminated). A non-JSON line fails the test.
 */
bool test_daemon_log_has(struct test_daemon *d, const char *component,
                         const char *const *words);

/* Polls the log until test_daemon_log_has or timeout_ms; false on timeout or early exit. */
bool test_daemon_wait_log(struct test_daemon *d, const char *component,
                          const char *const *words, int timeout_ms);

/* Waits for the "<bin> ... started" line or fails the test with the log. */
void test_daemon_wait_started(struct test_daemon *d, const char *component, int timeout_ms);

/* Reaps the daemon within timeout_ms; kills it and fails the test otherwise. */
void test_daemon_wait_exit(struct test_daemon *d, int timeout_ms);

/* Sends SIGTERM and reaps; fails the test unless it exits 0 within timeout_ms. */
void test_daemon_stop(struct test_daemon *d, int timeout_ms);

/* Kills a daemon still running (SIGKILL) and frees what d holds. */
void test_daemon_fini(struct test_daemon *d);

/* A TCP port on 127.0.0.1 free right now. */
int test_free_port(void);

/* Milliseconds on a monotonic clock. */
long test_now_ms(void);

#endif

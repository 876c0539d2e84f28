/*
 * Runs the built daemons (sluice-ingest, sluice-scheduler) and checks how they handle their
 * settings and command line: bad values stop start-up with exit status 2 and a message
 * naming the setting (and the file and line), --print-config shows the effective values
 * with the environment winning over the file and secrets masked, --help and unknown
 * arguments. Then starts each daemon as a child, waits for its "started" log line and
 * stops it with SIGTERM.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "test.h"

extern char **environ;

/* Generous: sanitizer builds start slowly. */
#define START_TIMEOUT_MS 15000
#define STOP_TIMEOUT_MS 15000

struct daemon {
    const char *bin;       /* binary name under SLUICE_BIN_DIR */
    const char *addr_key;  /* its HTTP address setting */
    const char *component; /* the component of its log lines */
};

static const struct daemon ingest = {"sluice-ingest", "SLUICE_HTTP_ADDR", "ingest"};
static const struct daemon scheduler = {"sluice-scheduler", "SLUICE_SCHEDULER_HTTP_ADDR",
                                        "scheduler"};

/* ---- helpers ---- */

static char *write_file(const char *dir, const char *name, const char *text)
{
    char *path = test_path(dir, name);
    FILE *f = fopen(path, "w");

    ASSERT_TRUE(f != NULL);
    ASSERT_TRUE(fputs(text, f) >= 0);
    ASSERT_EQ_INT(fclose(f), 0);
    return path;
}

/* Returns "127.0.0.1:PORT" with a port that was free a moment ago (free). */
static char *free_addr(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    char *addr;

    ASSERT_TRUE(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    ASSERT_EQ_INT(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ASSERT_EQ_INT(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    addr = test_asprintf("127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    close(fd);
    return addr;
}

/* Runs the daemon with args (NULL-terminated, after argv[0]) and extra environment. */
static void run_daemon(struct test_proc *p, const struct daemon *d, const char *const *args,
                       char *const *env)
{
    char *argv[16];
    size_t n = 0;
    char *bin = test_bin(d->bin);

    argv[n++] = bin;
    for (size_t i = 0; args != NULL && args[i] != NULL; i++) {
        ASSERT_TRUE(n < sizeof(argv) / sizeof(argv[0]) - 1);
        argv[n++] = (char *)args[i];
    }
    argv[n] = NULL;
    test_proc_run(p, argv, env, NULL);
    free(bin);
}

static void assert_usage_error(const struct test_proc *p, const char *const *parts)
{
    if (p->status != 2) {
        TEST_FAIL("exit status %d, want 2; stderr: %s", p->status, p->err);
    }
    for (size_t i = 0; parts[i] != NULL; i++) {
        ASSERT_CONTAINS(p->err, parts[i]);
    }
}

/* ---- bad settings and arguments ---- */

/* why: the rest of the message, naming the bad value. */
static void check_bad_env(const struct daemon *d, const char *key, const char *value,
                          const char *why)
{
    char *entry = test_asprintf("%s=%s", key, value);
    char *want = test_asprintf("%s: error: bad setting: environment: %s: %s", d->bin, key, why);
    char *env[] = {entry, NULL};
    const char *parts[] = {want, NULL};
    struct test_proc p;

    run_daemon(&p, d, NULL, env);
    assert_usage_error(&p, parts);
    ASSERT_EQ_STR(p.out, "");
    test_proc_fini(&p);
    free(want);
    free(entry);
}

static void check_bad_settings(const struct daemon *d)
{
    check_bad_env(d, d->addr_key, "nowhere", "'nowhere' is not host:port");
    check_bad_env(d, d->addr_key, "127.0.0.1:70000", "'127.0.0.1:70000' has no valid port");
    check_bad_env(d, "SLUICE_LOG_LEVEL", "loud", "unknown log level 'loud'");
    check_bad_env(d, "SLUICE_LOG_LEVEL", "info,ch=chatty",
                  "unknown log level 'chatty' for component 'ch'");
}

static void test_ingest_bad_env_exits_2(void)
{
    check_bad_settings(&ingest);
}

static void test_scheduler_bad_env_exits_2(void)
{
    check_bad_settings(&scheduler);
}

static void check_bad_config_file(const struct daemon *d)
{
    char *dir = test_tmpdir();
    char *unknown = write_file(dir, "unknown.conf", "# settings\nSLUICE_NO_SUCH_SETTING=1\n");
    char *badval = test_asprintf("SLUICE_LOG_LEVEL=info\n\n%s=localhost:0\n", d->addr_key);
    char *bad = write_file(dir, "bad.conf", badval);
    char *noeq = write_file(dir, "noeq.conf", "SLUICE_LOG_LEVEL info\n");
    char *missing = test_path(dir, "missing.conf");
    char *want_unknown = test_asprintf("%s line 2: unknown setting SLUICE_NO_SUCH_SETTING",
                                       unknown);
    char *want_bad = test_asprintf("%s line 3: %s: 'localhost:0' has no valid port", bad,
                                   d->addr_key);
    char *want_noeq = test_asprintf("%s line 1: expected KEY=VALUE", noeq);
    char *want_missing = test_asprintf("%s: cannot open", missing);
    const char *args_unknown[] = {"--config", unknown, NULL};
    const char *args_bad[] = {"--config", bad, NULL};
    const char *args_noeq[] = {"--print-config", "--config", noeq, NULL};
    const char *args_missing[] = {"--config", missing, NULL};
    const char *parts_unknown[] = {"bad setting", want_unknown, NULL};
    const char *parts_bad[] = {want_bad, NULL};
    const char *parts_noeq[] = {want_noeq, NULL};
    const char *parts_missing[] = {want_missing, NULL};
    struct test_proc p;

    run_daemon(&p, d, args_unknown, NULL);
    assert_usage_error(&p, parts_unknown);
    test_proc_fini(&p);
    run_daemon(&p, d, args_bad, NULL);
    assert_usage_error(&p, parts_bad);
    test_proc_fini(&p);
    run_daemon(&p, d, args_noeq, NULL);
    assert_usage_error(&p, parts_noeq);
    ASSERT_EQ_STR(p.out, ""); /* nothing printed when the settings are bad */
    test_proc_fini(&p);
    run_daemon(&p, d, args_missing, NULL);
    assert_usage_error(&p, parts_missing);
    test_proc_fini(&p);

    free(want_missing);
    free(want_noeq);
    free(want_bad);
    free(want_unknown);
    free(missing);
    free(noeq);
    free(bad);
    free(badval);
    free(unknown);
    test_rmtree(dir);
    free(dir);
}

static void test_ingest_bad_config_file_exits_2(void)
{
    check_bad_config_file(&ingest);
}

static void test_scheduler_bad_config_file_exits_2(void)
{
    check_bad_config_file(&scheduler);
}

static void check_arguments(const struct daemon *d)
{
    const char *help[] = {"--help", NULL};
    const char *unknown[] = {"--bogus", NULL};
    const char *stray[] = {"run", NULL};
    const char *no_file[] = {"--config", NULL};
    const char *parts_unknown[] = {"unknown argument '--bogus'", NULL};
    const char *parts_stray[] = {"unknown argument 'run'", NULL};
    const char *parts_no_file[] = {"--config needs a file name", NULL};
    char *usage = test_asprintf("usage: %s", d->bin);
    struct test_proc p;

    run_daemon(&p, d, help, NULL);
    ASSERT_EQ_INT(p.status, 0);
    ASSERT_CONTAINS(p.out, usage);
    ASSERT_CONTAINS(p.out, "--config FILE");
    ASSERT_EQ_STR(p.err, "");
    test_proc_fini(&p);

    run_daemon(&p, d, unknown, NULL);
    assert_usage_error(&p, parts_unknown);
    test_proc_fini(&p);
    run_daemon(&p, d, stray, NULL);
    assert_usage_error(&p, parts_stray);
    test_proc_fini(&p);
    run_daemon(&p, d, no_file, NULL);
    assert_usage_error(&p, parts_no_file);
    test_proc_fini(&p);
    free(usage);
}

static void test_ingest_arguments(void)
{
    check_arguments(&ingest);
}

static void test_scheduler_arguments(void)
{
    check_arguments(&scheduler);
}

/* ---- --print-config ---- */

/* Whether the daemon's settings include key (asks --help-config). */
static bool daemon_knows(const struct daemon *d, const char *key)
{
    const char *args[] = {"--help-config", NULL};
    char *want = test_asprintf("`%s`", key);
    struct test_proc p;
    bool knows;

    run_daemon(&p, d, args, NULL);
    ASSERT_EQ_INT(p.status, 0);
    ASSERT_CONTAINS(p.out, "| setting | default | description |");
    knows = strstr(p.out, want) != NULL;
    test_proc_fini(&p);
    free(want);
    return knows;
}

static void check_print_config(const struct daemon *d)
{
    char *dir = test_tmpdir();
    char *file_text = test_asprintf("%s=127.0.0.1:1111\nSLUICE_LOG_LEVEL=warn\n", d->addr_key);
    char *conf = write_file(dir, "print.conf", file_text);
    char *env_addr = test_asprintf("%s=127.0.0.1:2222", d->addr_key);
    char *want_addr = test_asprintf("\n%s=127.0.0.1:2222\n", d->addr_key);
    char *env[] = {env_addr, "SLUICE_CLICKHOUSE_PASSWORD=s3cret-pw", NULL};
    const char *args[] = {"--config", conf, "--print-config", NULL};
    const char *args_env_only[] = {"--print-config", NULL};
    struct test_proc p;

    run_daemon(&p, d, args, env);
    if (p.status != 0) {
        TEST_FAIL("exit status %d; stderr: %s", p.status, p.err);
    }
    ASSERT_CONTAINS(p.out, want_addr);                /* environment over file */
    ASSERT_CONTAINS(p.out, "\nSLUICE_LOG_LEVEL=warn\n"); /* file over default */
    ASSERT_NOT_CONTAINS(p.out, "1111");
    ASSERT_NOT_CONTAINS(p.out, "s3cret-pw");
    if (daemon_knows(d, "SLUICE_CLICKHOUSE_PASSWORD")) {
        ASSERT_CONTAINS(p.out, "\nSLUICE_CLICKHOUSE_PASSWORD=****\n");
    }
    else {
        fprintf(stderr, "note: %s has no SLUICE_CLICKHOUSE_PASSWORD yet; masking is covered "
                        "by test_cfg\n", d->bin);
    }
    /* The daemon neither logs nor starts: stderr stays empty. */
    ASSERT_EQ_STR(p.err, "");
    test_proc_fini(&p);

    /* Without a file: defaults, with the environment on top. */
    run_daemon(&p, d, args_env_only, env);
    ASSERT_EQ_INT(p.status, 0);
    ASSERT_CONTAINS(p.out, want_addr);
    ASSERT_CONTAINS(p.out, "\nSLUICE_LOG_LEVEL=info\n");
    test_proc_fini(&p);

    free(want_addr);
    free(env_addr);
    free(conf);
    free(file_text);
    test_rmtree(dir);
    free(dir);
}

static void test_ingest_print_config(void)
{
    check_print_config(&ingest);
}

static void test_scheduler_print_config(void)
{
    check_print_config(&scheduler);
}

/* ---- a running daemon ---- */

static void check_start_and_sigterm(const struct daemon *d)
{
    char *dir = test_tmpdir();
    char *bin = test_bin(d->bin);
    char *addr = free_addr();
    char *env_addr = test_asprintf("%s=%s", d->addr_key, addr);
    char *env_db = test_asprintf("SLUICE_DB=%s/sluice.db", dir);
    char *env_spool = test_asprintf("SLUICE_SPOOL_DIR=%s/spool", dir);
    char *env[] = {env_addr, env_db, env_spool, "SLUICE_LOG_LEVEL=info", NULL};
    char *want_addr = test_asprintf("http %s", addr);
    const char *started[] = {d->bin, "started", want_addr, NULL};
    const char *received[] = {"SIGTERM", NULL};
    const char *stopped[] = {"stopped", NULL};
    struct test_daemon c;

    test_daemon_start(&c, bin, NULL, dir, env);
    if (!test_daemon_wait_log(&c, d->component, started, START_TIMEOUT_MS)) {
        TEST_FAIL("%s logged no \"started\" line within %d ms; log:\n%s", d->bin,
                  START_TIMEOUT_MS, c.log);
    }
    test_daemon_stop(&c, STOP_TIMEOUT_MS);
    if (!test_daemon_log_has(&c, d->component, received) ||
        !test_daemon_log_has(&c, d->component, stopped)) {
        TEST_FAIL("%s did not log the SIGTERM and \"stopped\"; log:\n%s", d->bin, c.log);
    }
    test_daemon_fini(&c);
    free(want_addr);
    free(env_spool);
    free(env_db);
    free(env_addr);
    free(addr);
    free(bin);
    test_rmtree(dir);
    free(dir);
}

static void test_ingest_starts_and_stops_on_sigterm(void)
{
    check_start_and_sigterm(&ingest);
}

static void test_scheduler_starts_and_stops_on_sigterm(void)
{
    check_start_and_sigterm(&scheduler);
}

/* Leaves only the runner's own SLUICE_* variables, so a developer's shell cannot leak
 * settings into the daemons run through test_proc_run. */
static void scrub_environment(void)
{
    for (size_t i = 0; environ[i] != NULL;) {
        const char *e = environ[i];
        const char *eq = strchr(e, '=');
        char name[256];

        if (strncmp(e, "SLUICE_", 7) != 0 || eq == NULL || (size_t)(eq - e) >= sizeof(name) ||
            strncmp(e, "SLUICE_BIN_DIR=", 15) == 0 || strncmp(e, "SLUICE_SOURCE_DIR=", 18) == 0 ||
            strncmp(e, "SLUICE_TEST_", 12) == 0) {
            i++;
            continue;
        }
        memcpy(name, e, (size_t)(eq - e));
        name[eq - e] = '\0';
        unsetenv(name); /* environ shifts down: look at index i again */
    }
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_ingest_bad_env_exits_2),
        TEST_CASE(test_scheduler_bad_env_exits_2),
        TEST_CASE(test_ingest_bad_config_file_exits_2),
        TEST_CASE(test_scheduler_bad_config_file_exits_2),
        TEST_CASE(test_ingest_arguments),
        TEST_CASE(test_scheduler_arguments),
        TEST_CASE(test_ingest_print_config),
        TEST_CASE(test_scheduler_print_config),
        TEST_CASE(test_ingest_starts_and_stops_on_sigterm),
        TEST_CASE(test_scheduler_starts_and_stops_on_sigterm),
        {NULL, NULL},
    };

    scrub_environment();
    return test_main(argc, argv, cases);
}

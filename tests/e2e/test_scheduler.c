/*
 * Runs real sluice-scheduler processes on one tenant store with the test-only test_sleep
 * job (SLUICE_SCHEDULER_TEST_JOBS=1), which appends a line per start, checkpoint and end
 * to a trace file. Checks: exactly one of two schedulers leads; after kill -9 of the
 * leader the standby takes over within the lease TTL plus a margin, marks the dead
 * leader's run abandoned and runs the missed slot once; no (job, slot) ever starts twice
 * and runs of a job never overlap; `sluice jobs run` runs a job through the leader; a run
 * longer than its timeout ends 'timeout'; SIGTERM lets a running job reach a checkpoint
 * and exits 0, releasing the lease; a bad schedule exits 2 naming job, expression and
 * field. Everything polls with deadlines; nothing sleeps to wait.
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "store.h"
#include "test.h"

extern char **environ;

#define TTL_S 3
#define START_TIMEOUT_MS 15000 /* sanitizer builds start slowly */
#define STOP_TIMEOUT_MS 15000
#define MAX_TRACE 4096

/* ---- helpers ---- */

/* A shared store and trace file for the schedulers of one case. */
struct fixture {
    char *dir;
    char *db;
    char *trace;
};

static void fixture_init(struct fixture *f)
{
    f->dir = test_tmpdir();
    f->db = test_path(f->dir, "sluice.db");
    f->trace = test_path(f->dir, "trace.txt");
}

static void fixture_fini(struct fixture *f)
{
    test_rmtree(f->dir);
    free(f->trace);
    free(f->db);
    free(f->dir);
}

/* One scheduler process: its own folder (for its log), id and HTTP port. */
struct sched {
    struct test_daemon d;
    char *dir;
    char *id;
    int port;
    char *env[24];
    size_t n_env;
};

/* Jobs of the workers (scheduler/registry.c), by their settings prefix. */
static const char *const product_jobs[] = {"RETENTION", "COMPRESSION", "ENRICHMENT", "NOTIFY",
                                           "BACKFILL"};

/* Starts a scheduler named id with the fixture's store and extra "K=V" settings. */
static void sched_start(struct sched *s, const struct fixture *f, const char *id,
                        const char *const *extra)
{
    char *bin = test_bin("sluice-scheduler");

    memset(s, 0, sizeof(*s));
    s->dir = test_path(f->dir, id);
    ASSERT_EQ_INT(mkdir(s->dir, 0755), 0);
    s->id = test_asprintf("%s", id);
    s->port = test_free_port();
    s->env[s->n_env++] = test_asprintf("SLUICE_DB=%s", f->db);
    s->env[s->n_env++] = test_asprintf("SLUICE_SCHEDULER_HTTP_ADDR=127.0.0.1:%d", s->port);
    s->env[s->n_env++] = test_asprintf("SLUICE_SCHEDULER_ID=%s", id);
    s->env[s->n_env++] = test_asprintf("SLUICE_SCHEDULER_LEASE_TTL_S=%d", TTL_S);
    s->env[s->n_env++] = test_asprintf("SLUICE_SCHEDULER_TEST_JOBS=1");
    s->env[s->n_env++] = test_asprintf("SLUICE_JOB_TEST_SLEEP_TRACE_FILE=%s", f->trace);
    s->env[s->n_env++] = test_asprintf("SLUICE_LOG_LEVEL=info");
    /* The product's jobs are off: these cases watch the scheduler run test_sleep and
     * store_maintenance, and count every run in the store. */
    for (size_t i = 0; i < sizeof(product_jobs) / sizeof(product_jobs[0]); i++) {
        s->env[s->n_env++] = test_asprintf("SLUICE_JOB_%s_ENABLED=false", product_jobs[i]);
    }
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        ASSERT_TRUE(s->n_env < sizeof(s->env) / sizeof(s->env[0]) - 1);
        s->env[s->n_env++] = test_asprintf("%s", extra[i]);
    }
    s->env[s->n_env] = NULL;
    test_daemon_start(&s->d, bin, NULL, s->dir, s->env);
    test_daemon_wait_started(&s->d, "scheduler", START_TIMEOUT_MS);
    free(bin);
}

static void sched_fini(struct sched *s)
{
    test_daemon_fini(&s->d);
    for (size_t i = 0; i < s->n_env; i++) {
        free(s->env[i]);
    }
    free(s->id);
    free(s->dir);
}

/* GET path from 127.0.0.1:port; returns the body (caller frees) and the status, or NULL
 * when nothing answers. */
static char *http_get(int port, const char *path, int *status)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char req[256];
    size_t cap = 1 << 16, len = 0;
    char *buf;
    char *body;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ssize_t n;

    ASSERT_TRUE(fd >= 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return NULL;
    }
    snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    ASSERT_EQ_INT(write(fd, req, strlen(req)), (long long)strlen(req));
    buf = malloc(cap);
    ASSERT_TRUE(buf != NULL);
    while ((n = read(fd, buf + len, cap - len - 1)) > 0) {
        len += (size_t)n;
        if (len + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            ASSERT_TRUE(buf != NULL);
        }
    }
    close(fd);
    buf[len] = '\0';
    body = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.", 7) != 0 || body == NULL) {
        free(buf);
        return NULL;
    }
    *status = atoi(buf + 9);
    body = strdup(body + 4);
    free(buf);
    return body;
}

/* The scheduler's /health as JSON (new reference), or NULL when it does not answer. */
static json_t *health(const struct sched *s)
{
    int status = 0;
    char *body = http_get(s->port, "/health", &status);
    json_t *v;

    if (body == NULL) {
        return NULL;
    }
    v = json_loads(body, 0, NULL);
    if (v == NULL) {
        TEST_FAIL("/health of %s is not JSON: %s", s->id, body);
    }
    free(body);
    return v;
}

static bool has_role(const struct sched *s, const char *role)
{
    json_t *v = health(s);
    bool yes = v != NULL && strcmp(json_string_value(json_object_get(v, "role")), role) == 0;

    json_decref(v);
    return yes;
}

/* Polls until s reports role, up to timeout_ms; returns the milliseconds it took. */
static long wait_role(struct sched *s, const char *role, int timeout_ms)
{
    long start = test_now_ms();

    while (!has_role(s, role)) {
        if (test_now_ms() - start > timeout_ms) {
            test_daemon_read_log(&s->d);
            TEST_FAIL("%s did not become %s within %d ms; log:\n%s", s->id, role, timeout_ms,
                      s->d.log);
        }
        poll(NULL, 0, 20);
    }
    return test_now_ms() - start;
}

/* Every run in the store, newest first (free with free()). */
static struct sl_run *all_runs(const struct fixture *f, size_t *n)
{
    struct sl_store *st = NULL;
    struct sl_run *runs = NULL;
    struct sl_err err;

    ASSERT_OK(sl_store_open(&st, f->db, 5000, &err), &err);
    ASSERT_OK(sl_store_run_list(st, NULL, 100000, &runs, n, &err), &err);
    sl_store_close(st);
    return runs;
}

/* Runs of job by owner (NULL: any) with status (-1: any) and kind (NULL: any). */
static size_t count_runs(const struct fixture *f, const char *job, const char *owner,
                         int status, const char *kind)
{
    size_t n = 0, count = 0;
    struct sl_run *runs = all_runs(f, &n);

    for (size_t i = 0; i < n; i++) {
        if (strcmp(runs[i].job, job) == 0 && (owner == NULL || strcmp(runs[i].owner, owner) == 0) &&
            (status < 0 || (int)runs[i].status == status) &&
            (kind == NULL || strcmp(runs[i].kind, kind) == 0)) {
            count++;
        }
    }
    free(runs);
    return count;
}

static void wait_runs(const struct fixture *f, const char *owner, int status, size_t want,
                      int timeout_ms)
{
    long deadline = test_now_ms() + timeout_ms;

    while (count_runs(f, "test_sleep", owner, status, NULL) < want) {
        if (test_now_ms() > deadline) {
            TEST_FAIL("fewer than %zu runs of test_sleep by %s within %d ms", want,
                      owner != NULL ? owner : "anyone", timeout_ms);
        }
        poll(NULL, 0, 20);
    }
}

/* One line of the trace file. */
struct trace_line {
    char event[16];
    long long slot;
    char kind[16];
    int pid;
    long long ms;
};

static size_t read_trace(const struct fixture *f, struct trace_line *out, size_t cap)
{
    FILE *fp = fopen(f->trace, "r");
    char line[256];
    size_t n = 0;

    if (fp == NULL) {
        return 0;
    }
    while (n < cap && fgets(line, sizeof(line), fp) != NULL) {
        struct trace_line *t = &out[n];

        if (sscanf(line, "%15s job=test_sleep slot=%lld kind=%15s pid=%d ms=%lld", t->event,
                   &t->slot, t->kind, &t->pid, &t->ms) != 5) {
            TEST_FAIL("bad trace line: %s", line);
        }
        n++;
    }
    fclose(fp);
    return n;
}

static size_t count_trace(const struct fixture *f, const char *event, int pid)
{
    static struct trace_line lines[MAX_TRACE];
    size_t n = read_trace(f, lines, MAX_TRACE), count = 0;

    for (size_t i = 0; i < n; i++) {
        if (strcmp(lines[i].event, event) == 0 && (pid == 0 || lines[i].pid == pid)) {
            count++;
        }
    }
    return count;
}

static void wait_trace(const struct fixture *f, const char *event, int pid, size_t want,
                       int timeout_ms)
{
    long deadline = test_now_ms() + timeout_ms;

    while (count_trace(f, event, pid) < want) {
        if (test_now_ms() > deadline) {
            TEST_FAIL("fewer than %zu '%s' lines from pid %d within %d ms", want, event, pid,
                      timeout_ms);
        }
        poll(NULL, 0, 5);
    }
}

/* No slot started twice, no "overlap", and each start is followed by its own end (or
 * the process died) before the next start: runs of the job never overlap. */
static void check_trace_once_and_serial(const struct fixture *f)
{
    static struct trace_line lines[MAX_TRACE];
    size_t n = read_trace(f, lines, MAX_TRACE);
    long long open_slot = -1;

    ASSERT_TRUE(n > 0);
    for (size_t i = 0; i < n; i++) {
        ASSERT_TRUE(strcmp(lines[i].event, "overlap") != 0);
        if (strcmp(lines[i].event, "start") == 0) {
            for (size_t k = 0; k < i; k++) {
                if (strcmp(lines[k].event, "start") == 0 && lines[k].slot == lines[i].slot) {
                    TEST_FAIL("slot %lld started twice (pids %d and %d)", lines[i].slot,
                              lines[k].pid, lines[i].pid);
                }
            }
            if (open_slot >= 0) {
                /* Only a killed leader leaves a run without an end. */
                bool was_killed = true;

                for (size_t k = i + 1; k < n; k++) {
                    if (lines[k].slot == open_slot && strcmp(lines[k].event, "end") == 0) {
                        was_killed = false;
                    }
                }
                if (!was_killed) {
                    TEST_FAIL("slot %lld started while slot %lld was running", lines[i].slot,
                              open_slot);
                }
            }
            open_slot = lines[i].slot;
        }
        else if (strcmp(lines[i].event, "end") == 0) {
            ASSERT_EQ_INT(lines[i].slot, open_slot);
            open_slot = -1;
        }
    }
}

static void check_store_once(const struct fixture *f)
{
    size_t n = 0;
    struct sl_run *runs = all_runs(f, &n);

    for (size_t i = 0; i < n; i++) {
        ASSERT_NE_INT(runs[i].status, SL_RUN_RUNNING);
        for (size_t k = i + 1; k < n; k++) {
            if (strcmp(runs[i].job, runs[k].job) == 0 && runs[i].slot_s == runs[k].slot_s) {
                TEST_FAIL("job %s ran twice for slot %lld", runs[i].job,
                          (long long)runs[i].slot_s);
            }
        }
    }
    free(runs);
}

static void cli(struct test_proc *p, const struct fixture *f, ...)
{
    char *argv[16];
    char *env_db = test_asprintf("SLUICE_DB=%s", f->db);
    char *env[] = {env_db, NULL};
    va_list ap;
    size_t n = 0;

    argv[n++] = test_bin("sluice");
    va_start(ap, f);
    for (const char *a = va_arg(ap, const char *); a != NULL; a = va_arg(ap, const char *)) {
        ASSERT_TRUE(n < sizeof(argv) / sizeof(argv[0]) - 1);
        argv[n++] = (char *)a;
    }
    va_end(ap);
    argv[n] = NULL;
    test_proc_run(p, argv, env, NULL);
    free(argv[0]);
    free(env_db);
}

static char *metrics(const struct sched *s)
{
    int status = 0;
    char *body = http_get(s->port, "/metrics", &status);

    ASSERT_TRUE(body != NULL);
    ASSERT_EQ_INT(status, 200);
    return body;
}

/* ---- cases ---- */

static void test_scheduler_bad_schedule_exits_2(void)
{
    static const struct {
        const char *setting;
        const char *const want[4];
    } cases[] = {
        {"SLUICE_JOB_STORE_MAINTENANCE_SCHEDULE=0 24 * * *",
         {"SLUICE_JOB_STORE_MAINTENANCE_SCHEDULE", "job store_maintenance",
          "'0 24 * * *'", "field 2 (hour): 24 is out of range 0-23"}},
        {"SLUICE_JOB_TEST_SLEEP_SCHEDULE=*/0 * * * MON",
         {"job test_sleep", "'*/0 * * * MON'", "field 1 (minute): step 0 is out of range",
          NULL}},
        {"SLUICE_JOB_STORE_MAINTENANCE_SCHEDULE=@every 5 minutes",
         {"job store_maintenance", "'@every 5 minutes'", "needs a unit", NULL}},
        {"SLUICE_JOB_STORE_MAINTENANCE_TZ=Mars/Olympus_Mons",
         {"SLUICE_JOB_STORE_MAINTENANCE_TZ", "job store_maintenance",
          "unknown or unreadable time zone 'Mars/Olympus_Mons'", NULL}},
        {"SLUICE_JOB_STORE_MAINTENANCE_MISSED=later",
         {"SLUICE_JOB_STORE_MAINTENANCE_MISSED", "'later' is not one of run|skip", NULL,
          NULL}},
    };
    struct fixture f;

    fixture_init(&f);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        char *bin = test_bin("sluice-scheduler");
        char *env_db = test_asprintf("SLUICE_DB=%s", f.db);
        char *argv[] = {bin, NULL};
        char *env[] = {env_db, (char *)cases[c].setting, "SLUICE_SCHEDULER_TEST_JOBS=1",
                       "SLUICE_SCHEDULER_HTTP_ADDR=127.0.0.1:1", NULL};
        struct test_proc p;

        test_proc_run(&p, argv, env, NULL);
        if (p.status != 2) {
            TEST_FAIL("%s: exit %d, want 2; stderr: %s", cases[c].setting, p.status, p.err);
        }
        ASSERT_CONTAINS(p.err, "sluice-scheduler: error: bad setting");
        for (size_t i = 0; i < 4 && cases[c].want[i] != NULL; i++) {
            ASSERT_CONTAINS(p.err, cases[c].want[i]);
        }
        test_proc_fini(&p);
        free(env_db);
        free(bin);
    }
    fixture_fini(&f);
}

static void test_scheduler_takeover_after_kill_9(void)
{
    /* Runs of 1.3 s every second: every other slot finds the job still running. */
    const char *const extra[] = {"SLUICE_JOB_TEST_SLEEP_SCHEDULE=@every 1s",
                                 "SLUICE_JOB_TEST_SLEEP_DURATION_MS=1300", NULL};
    struct fixture f;
    struct sched a, b;
    json_t *h;
    char *text;
    long took_ms;
    size_t a_starts;

    fixture_init(&f);
    sched_start(&a, &f, "alpha", extra);
    wait_role(&a, "leader", START_TIMEOUT_MS);
    sched_start(&b, &f, "beta", extra);
    /* Exactly one leads: beta is a hot standby that sees alpha's lease (once its first
     * look at the store came back). */
    {
        long deadline = test_now_ms() + 5000;
        const char *owner = NULL;

        for (;;) {
            h = health(&b);
            ASSERT_TRUE(h != NULL);
            ASSERT_EQ_STR(json_string_value(json_object_get(h, "role")), "standby");
            owner = json_string_value(json_object_get(json_object_get(h, "lease"), "owner"));
            if (owner != NULL || test_now_ms() > deadline) {
                break;
            }
            json_decref(h);
            poll(NULL, 0, 20);
        }
        ASSERT_EQ_STR(owner, "alpha");
        json_decref(h);
    }
    ASSERT_TRUE(has_role(&a, "leader"));

    wait_runs(&f, "alpha", SL_RUN_DONE, 2, 15000);
    ASSERT_TRUE(has_role(&b, "standby"));
    ASSERT_EQ_INT(count_runs(&f, "test_sleep", "beta", -1, NULL), 0);
    text = metrics(&a);
    ASSERT_CONTAINS(text, "sluice_scheduler_is_leader 1");
    ASSERT_CONTAINS(text, "sluice_scheduler_slots_skipped_total{job=\"test_sleep\","
                          "reason=\"overlap\"}");
    ASSERT_NOT_CONTAINS(text, "job=\"test_sleep\",reason=\"overlap\"} 0\n");
    ASSERT_CONTAINS(text, "sluice_scheduler_loop_lag_seconds_count");
    free(text);
    text = metrics(&b);
    ASSERT_CONTAINS(text, "sluice_scheduler_is_leader 0");
    free(text);

    /* Kill the leader in the middle of a run. */
    a_starts = count_trace(&f, "start", a.d.pid);
    wait_trace(&f, "start", a.d.pid, a_starts + 1, 10000);
    ASSERT_EQ_INT(kill(a.d.pid, SIGKILL), 0);
    test_daemon_wait_exit(&a.d, STOP_TIMEOUT_MS);
    ASSERT_EQ_INT(a.d.status, 128 + SIGKILL);
    took_ms = wait_role(&b, "leader", (TTL_S + 5) * 1000);
    /* The lease lapses at most TTL after alpha's last renewal; beta looks each second. */
    if (took_ms > TTL_S * 1000 + 3000) {
        TEST_FAIL("takeover took %ld ms, more than the %d s TTL plus 3 s", took_ms, TTL_S);
    }
    fprintf(stderr, "takeover after kill -9 took %ld ms (TTL %d s)\n", took_ms, TTL_S);
    wait_runs(&f, "beta", SL_RUN_DONE, 2, 15000);
    /* beta marked alpha's interrupted run abandoned and ran the missed slot once. */
    ASSERT_EQ_INT(count_runs(&f, "test_sleep", "alpha", SL_RUN_FAILED, NULL), 1);
    ASSERT_EQ_INT(count_runs(&f, "test_sleep", "beta", -1, "missed"), 1);
    test_daemon_stop(&b.d, STOP_TIMEOUT_MS);

    check_trace_once_and_serial(&f);
    check_store_once(&f);
    {
        size_t n = 0;
        struct sl_run *runs = all_runs(&f, &n);
        bool found = false;

        for (size_t i = 0; i < n; i++) {
            if (strcmp(runs[i].owner, "alpha") == 0 && runs[i].status == SL_RUN_FAILED) {
                ASSERT_CONTAINS(runs[i].error, "abandoned: scheduler alpha");
                found = true;
            }
        }
        ASSERT_TRUE(found);
        free(runs);
    }
    sched_fini(&b);
    sched_fini(&a);
    fixture_fini(&f);
}

static void test_scheduler_jobs_run_through_the_leader(void)
{
    /* A schedule that does not fire during the test: every run here is a manual one. */
    const char *const extra[] = {"SLUICE_JOB_TEST_SLEEP_SCHEDULE=0 0 1 1 *",
                                 "SLUICE_JOB_TEST_SLEEP_DURATION_MS=200", NULL};
    struct fixture f;
    struct test_proc p;
    struct sched s;
    json_t *v;

    fixture_init(&f);
    sched_start(&s, &f, "solo", extra);
    wait_role(&s, "leader", START_TIMEOUT_MS);

    cli(&p, &f, "jobs", "run", "test_sleep", "--wait", "--timeout", "30", NULL);
    if (p.status != 0) {
        TEST_FAIL("jobs run exited %d: %s%s", p.status, p.out, p.err);
    }
    ASSERT_CONTAINS(p.out, "manual");
    ASSERT_CONTAINS(p.out, "done");
    ASSERT_CONTAINS(p.out, "solo");
    test_proc_fini(&p);
    ASSERT_EQ_INT(count_trace(&f, "start", s.d.pid), 1);

    cli(&p, &f, "--json", "jobs", "history", "test_sleep", NULL);
    ASSERT_EQ_INT(p.status, 0);
    v = json_loads(p.out, 0, NULL);
    ASSERT_TRUE(json_is_array(v));
    ASSERT_EQ_INT(json_array_size(v), 1);
    ASSERT_EQ_STR(json_string_value(json_object_get(json_array_get(v, 0), "kind")), "manual");
    ASSERT_EQ_STR(json_string_value(json_object_get(json_array_get(v, 0), "status")), "done");
    ASSERT_EQ_STR(json_string_value(json_object_get(json_array_get(v, 0), "owner")), "solo");
    json_decref(v);
    test_proc_fini(&p);

    cli(&p, &f, "jobs", "list", NULL);
    ASSERT_EQ_INT(p.status, 0);
    ASSERT_CONTAINS(p.out, "test_sleep");
    ASSERT_CONTAINS(p.out, "0 0 1 1 *");
    ASSERT_CONTAINS(p.out, "store_maintenance");
    ASSERT_CONTAINS(p.out, "17 3 * * *");
    ASSERT_CONTAINS(p.out, "leader: solo");
    test_proc_fini(&p);
    cli(&p, &f, "--json", "jobs", "list", NULL);
    ASSERT_EQ_INT(p.status, 0);
    v = json_loads(p.out, 0, NULL);
    ASSERT_TRUE(json_is_array(v));
    {
        /* Every registered job is listed; this test looks at its own two. */
        json_t *sleep_job = NULL, *maint_job = NULL;
        size_t i;
        json_t *job;

        json_array_foreach(v, i, job) {
            const char *name = json_string_value(json_object_get(job, "name"));

            if (name != NULL && strcmp(name, "test_sleep") == 0) {
                sleep_job = job;
            }
            else if (name != NULL && strcmp(name, "store_maintenance") == 0) {
                maint_job = job;
            }
        }
        ASSERT_TRUE(sleep_job != NULL);
        ASSERT_TRUE(maint_job != NULL);
        ASSERT_TRUE(json_is_string(json_object_get(sleep_job, "next_run")));
        ASSERT_EQ_STR(json_string_value(json_object_get(json_object_get(sleep_job, "last_run"),
                                                        "status")),
                      "done");
    }
    json_decref(v);
    test_proc_fini(&p);

    /* The real built-in job, through the leader too. */
    cli(&p, &f, "jobs", "run", "store_maintenance", "--wait", NULL);
    if (p.status != 0) {
        TEST_FAIL("jobs run store_maintenance exited %d: %s%s", p.status, p.out, p.err);
    }
    test_proc_fini(&p);

    cli(&p, &f, "jobs", "run", "no_such_job", NULL);
    ASSERT_EQ_INT(p.status, 1);
    ASSERT_CONTAINS(p.err, "no job named 'no_such_job'");
    test_proc_fini(&p);
    cli(&p, &f, "jobs", "run", NULL);
    ASSERT_EQ_INT(p.status, 2);
    test_proc_fini(&p);

    test_daemon_stop(&s.d, STOP_TIMEOUT_MS);
    check_store_once(&f);
    sched_fini(&s);
    fixture_fini(&f);
}

static void test_scheduler_timeout_then_sigterm_at_checkpoint(void)
{
    const char *const extra[] = {"SLUICE_JOB_TEST_SLEEP_SCHEDULE=0 0 1 1 *",
                                 "SLUICE_JOB_TEST_SLEEP_DURATION_MS=60000",
                                 "SLUICE_JOB_TEST_SLEEP_TIMEOUT_S=1", NULL};
    struct sl_store *st = NULL;
    struct sl_lease lease;
    struct sl_err err;
    struct fixture f;
    struct test_proc p;
    struct sched s;
    long stop_ms;
    size_t n = 0;
    struct sl_run *runs;

    fixture_init(&f);
    sched_start(&s, &f, "solo", extra);
    wait_role(&s, "leader", START_TIMEOUT_MS);

    /* A run longer than its timeout is asked to stop and ends 'timeout'. */
    cli(&p, &f, "jobs", "run", "test_sleep", "--wait", "--timeout", "30", NULL);
    ASSERT_EQ_INT(p.status, 1);
    ASSERT_CONTAINS(p.out, "timeout");
    ASSERT_CONTAINS(p.out, "after the timeout of 1s");
    test_proc_fini(&p);
    ASSERT_EQ_INT(count_trace(&f, "checkpoint", s.d.pid), 1);

    /* SIGTERM during a run: the job reaches a checkpoint, the process exits 0. Each
     * manual request is for its own second, so wait for the next one. */
    {
        long t0 = test_now_ms();
        time_t sec = time(NULL);

        while (time(NULL) == sec && test_now_ms() - t0 < 2000) {
            poll(NULL, 0, 10);
        }
    }
    cli(&p, &f, "jobs", "run", "test_sleep", NULL);
    ASSERT_EQ_INT(p.status, 0);
    test_proc_fini(&p);
    wait_trace(&f, "start", s.d.pid, 2, 10000);
    stop_ms = test_now_ms();
    test_daemon_stop(&s.d, STOP_TIMEOUT_MS);
    ASSERT_TRUE(test_now_ms() - stop_ms < 5000);
    ASSERT_EQ_INT(count_trace(&f, "checkpoint", s.d.pid), 2);
    runs = all_runs(&f, &n);
    ASSERT_EQ_INT(n, 2);
    ASSERT_EQ_INT(runs[0].status, SL_RUN_CANCELLED);
    ASSERT_CONTAINS(runs[0].error, "shutting down");
    ASSERT_EQ_INT(runs[1].status, SL_RUN_TIMEOUT);
    free(runs);
    /* The lease was released on the way out. */
    ASSERT_OK(sl_store_open(&st, f.db, 5000, &err), &err);
    ASSERT_EQ_INT(sl_store_lease_get(st, "scheduler", &lease, &err), SL_ENOTFOUND);
    sl_store_close(st);
    sched_fini(&s);
    fixture_fini(&f);
}

/* Leaves only the runner's own SLUICE_* variables, so a developer's shell cannot leak
 * settings into the processes run through test_proc_run. */
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
        unsetenv(name);
    }
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_scheduler_bad_schedule_exits_2),
        TEST_CASE(test_scheduler_takeover_after_kill_9),
        TEST_CASE(test_scheduler_jobs_run_through_the_leader),
        TEST_CASE(test_scheduler_timeout_then_sigterm_at_checkpoint),
        {NULL, NULL},
    };

    scrub_environment();
    return test_main(argc, argv, cases);
}

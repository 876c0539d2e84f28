/*
 * `sluice backfill` with real sluice-scheduler processes and the real ClickHouse server:
 * a job over many small chunks runs through the scheduler's backfill runner; kill -9 of
 * the scheduler mid-run and a fresh one (or the hot standby) carries on from the last
 * checkpoint, and the final numbers are exact (rows read equal the raw rows of the range,
 * one checkpoint per chunk, the rollup equals a from-scratch aggregation); pause, resume
 * and cancel act at chunk boundaries; a chunk that fails because ClickHouse cannot be
 * reached marks the job failed with the chunk and the error, and resume finishes it;
 * status --json for scripts; a dry run records and writes nothing; an overlapping start is
 * refused. Everything polls with deadlines; the runner is slowed by its own rows/s cap so
 * there is a "mid-run" to hit.
 */
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "ch.h"
#include "daemon.h"
#include "schema.h"
#include "store.h"
#include "store_backfill.h"
#include "test.h"

#define DAY1 INT64_C(1795478400) /* 2026-11-24T00:00:00Z */
#define TTL_S 3
#define START_TIMEOUT_MS 15000
#define STOP_TIMEOUT_MS 15000
#define RUN_TIMEOUT_MS 45000
#define N_EVENTS 4800 /* 200 per hour of DAY1 */

struct fixture {
    char *dir;
    char *db_path;
    const char *url;
    char ch_db[96];
    struct sl_ch_settings settings;
    struct sl_cfg_section sec;
    struct sl_ch *ch;
    char url_env[1024];
    char tenant[SL_STORE_ID_MAX];
};

static int64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void exec_ok(struct fixture *f, const char *sql)
{
    struct sl_err err;

    if (sl_ch_exec(f->ch, sql, &err) != 0) {
        TEST_FAIL("%s: %s", sql, err.msg);
    }
}

static char *query(struct fixture *f, const char *sql)
{
    struct sl_ch_result res = {0};
    struct sl_err err;

    if (sl_ch_query(f->ch, sql, &res, &err) != 0) {
        TEST_FAIL("%s: %s", sql, err.msg);
    }
    return res.body;
}

/* A store with tenant acme (tier paid: never compressed), a ClickHouse database with the
 * schema, N_EVENTS events of acme on DAY1 (a quarter delivered twice), and bogus states
 * added to its hourly rollup. */
static void fixture_open(struct fixture *f, const char *name)
{
    struct sl_store *st = NULL;
    struct sl_tenant t;
    struct sl_err err;
    char *env[2] = {f->url_env, NULL};
    char sql[4096];

    memset(f, 0, sizeof(*f));
    f->url = test_env_require("SLUICE_TEST_CLICKHOUSE_URL");
    f->dir = test_tmpdir();
    f->db_path = test_path(f->dir, "sluice.db");
    ASSERT_OK(sl_store_open(&st, f->db_path, 5000, &err), &err);
    ASSERT_OK(sl_store_tenant_create(st, "acme", "paid", wall_ms() / 1000, &t, &err), &err);
    snprintf(f->tenant, sizeof(f->tenant), "%s", t.id);
    sl_store_close(st);

    snprintf(f->ch_db, sizeof(f->ch_db), "sluice_test_backfill_cli_%s_%d", name, (int)getpid());
    snprintf(f->url_env, sizeof(f->url_env), "SLUICE_CLICKHOUSE_URL=%s", f->url);
    f->sec = SL_CFG_SECTION("clickhouse", sl_ch_cfg_opts, sl_ch_cfg_n_opts, &f->settings);
    ASSERT_OK(sl_cfg_load(&f->sec, 1, NULL, env, &err), &err);
    sl_free(f->settings.database);
    f->settings.database = NULL;
    ASSERT_OK(sl_ch_create(&f->ch, &f->settings, &err), &err);
    ASSERT_OK(ingest_schema_apply_mode(f->ch, f->ch_db, INGEST_SCHEMA_PORTABLE, &err), &err);
    for (int pass = 0; pass < 2; pass++) {
        snprintf(sql, sizeof(sql),
                 "INSERT INTO %s.events (id, tenant_id, type, ts, ts_ms, session_id, "
                 "anonymous_id, user_id, path, country_code, version) SELECT "
                 "toUUID(concat('00000000-0000-4000-8000-', substring(toString(1000000000000 "
                 "+ n), 2, 12))), '%s', arrayElement(['pageview', 'click', 'scroll'], n %% 3 "
                 "+ 1), toDateTime(%lld + intDiv(n * 86400, %d)), toUInt16(n %% 1000), "
                 "concat('s', toString(n %% 50)), concat('a', toString(n %% 37)), "
                 "if(n %% 4 = 0, 'u1', ''), concat('/p', toString(n %% 5)), "
                 "arrayElement(['FR', 'DE'], n %% 2 + 1), %lld FROM (SELECT number AS n "
                 "FROM system.numbers LIMIT %d)",
                 f->ch_db, f->tenant, (long long)DAY1, N_EVENTS, (long long)wall_ms(),
                 pass == 0 ? N_EVENTS : N_EVENTS / 4);
        exec_ok(f, sql);
    }
    snprintf(sql, sizeof(sql),
             "INSERT INTO %s.events_hourly (tenant_id, hour, type, name, path, severity, "
             "country_code, browser, os, device, events, users, sessions) SELECT '%s', "
             "toDateTime(%lld + 3600 * h), 'pageview', '', '/bogus', '', 'ZZ', '', '', '', "
             "uniqExactState(generateUUIDv4()), uniqIfState('x', toUInt8(1)), "
             "uniqIfState('y', toUInt8(1)) FROM (SELECT number, number %% 24 AS h FROM "
             "system.numbers LIMIT 240) GROUP BY h",
             f->ch_db, f->tenant, (long long)DAY1);
    exec_ok(f, sql);
}

static void fixture_close(struct fixture *f)
{
    char sql[256];

    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", f->ch_db);
    exec_ok(f, sql);
    sl_ch_destroy(f->ch);
    sl_cfg_fini(&f->sec, 1);
    test_rmtree(f->dir);
    free(f->db_path);
    free(f->dir);
}

#define DIMS "type, name, path, severity, country_code, browser, os, device"

/* The tenant's hourly rollup as read, and as computed from scratch from the raw rows. */
static void expect_hourly_exact(struct fixture *f)
{
    char sql[2048];
    char *got, *want;

    snprintf(sql, sizeof(sql),
             "SELECT hour AS t, " DIMS ", uniqExactMerge(events), uniqIfMerge(users), "
             "uniqIfMerge(sessions) FROM %s.events_hourly WHERE tenant_id = '%s' GROUP BY t, "
             DIMS " ORDER BY t, " DIMS " FORMAT TabSeparated", f->ch_db, f->tenant);
    got = query(f, sql);
    snprintf(sql, sizeof(sql),
             "SELECT toStartOfHour(ts) AS t, " DIMS ", uniqExact(id), uniqIf(if(user_id != '', "
             "user_id, anonymous_id), user_id != '' OR anonymous_id != ''), "
             "uniqIf(session_id, session_id != '') FROM %s.events WHERE tenant_id = '%s' "
             "GROUP BY t, " DIMS " ORDER BY t, " DIMS " FORMAT TabSeparated",
             f->ch_db, f->tenant);
    want = query(f, sql);
    if (strcmp(got, want) != 0) {
        TEST_FAIL("hourly rollup differs from scratch\n--- got:\n%.2000s\n--- want:\n%.2000s",
                  got, want);
    }
    ASSERT_TRUE(strlen(want) > 100);
    sl_free(got);
    sl_free(want);
}

/* Raw rows of the tenant in [from_s, to_s), duplicates included (what chunks read). */
static int64_t raw_rows(struct fixture *f, int64_t from_s, int64_t to_s)
{
    char sql[512];
    char *n;
    int64_t v;

    snprintf(sql, sizeof(sql), "SELECT count() FROM %s.events WHERE tenant_id = '%s' AND ts >= "
             "toDateTime(%lld) AND ts < toDateTime(%lld) FORMAT TabSeparated", f->ch_db,
             f->tenant, (long long)from_s, (long long)to_s);
    n = query(f, sql);
    v = strtoll(n, NULL, 10);
    sl_free(n);
    return v;
}

/* ---- processes ----------------------------------------------------------------------- */

struct sched {
    struct test_daemon d;
    char *dir;
    char *env[24];
    size_t n_env;
};

/* Starts a scheduler named id on the fixture's store and database; url NULL: the real
 * server. The runner reads at most max_rows_per_s. */
static void sched_start(struct sched *s, const struct fixture *f, const char *id,
                        const char *url, int max_rows_per_s)
{
    char *bin = test_bin("sluice-scheduler");
    static const char *const off[] = {"STORE_MAINTENANCE", "NOTIFY", "RETENTION",
                                      "COMPRESSION", "REENRICH", "ENRICHMENT"};

    memset(s, 0, sizeof(*s));
    s->dir = test_path(f->dir, id);
    ASSERT_EQ_INT(mkdir(s->dir, 0755), 0);
    s->env[s->n_env++] = test_asprintf("SLUICE_DB=%s", f->db_path);
    s->env[s->n_env++] = test_asprintf("SLUICE_SCHEDULER_HTTP_ADDR=127.0.0.1:%d", test_free_port());
    s->env[s->n_env++] = test_asprintf("SLUICE_SCHEDULER_ID=%s", id);
    s->env[s->n_env++] = test_asprintf("SLUICE_SCHEDULER_LEASE_TTL_S=%d", TTL_S);
    s->env[s->n_env++] = test_asprintf("SLUICE_CLICKHOUSE_URL=%s", url != NULL ? url : f->url);
    s->env[s->n_env++] = test_asprintf("SLUICE_CLICKHOUSE_DATABASE=%s", f->ch_db);
    s->env[s->n_env++] = test_asprintf("SLUICE_CLICKHOUSE_MAX_RETRIES=0");
    s->env[s->n_env++] = test_asprintf("SLUICE_JOB_BACKFILL_SCHEDULE=@every 1s");
    s->env[s->n_env++] = test_asprintf("SLUICE_JOB_BACKFILL_MAX_ROWS_PER_S=%d", max_rows_per_s);
    s->env[s->n_env++] = test_asprintf("SLUICE_LOG_LEVEL=info");
    for (size_t i = 0; i < sizeof(off) / sizeof(off[0]); i++) {
        s->env[s->n_env++] = test_asprintf("SLUICE_JOB_%s_ENABLED=false", off[i]);
    }
    s->env[s->n_env] = NULL;
    test_daemon_start(&s->d, bin, NULL, s->dir, s->env);
    test_daemon_wait_started(&s->d, "scheduler", START_TIMEOUT_MS);
    free(bin);
}

static void sched_kill(struct sched *s)
{
    ASSERT_EQ_INT(kill(s->d.pid, SIGKILL), 0);
    test_daemon_wait_exit(&s->d, STOP_TIMEOUT_MS);
    ASSERT_EQ_INT(s->d.status, 128 + SIGKILL);
}

static void sched_fini(struct sched *s)
{
    test_daemon_fini(&s->d);
    for (size_t i = 0; i < s->n_env; i++) {
        free(s->env[i]);
    }
    free(s->dir);
}

/* Runs `sluice --db ... ARGS` with the fixture's ClickHouse settings. */
static void cli(struct test_proc *p, const struct fixture *f, ...)
{
    char *argv[24];
    char *env[4];
    va_list ap;
    size_t n = 0;

    env[0] = test_asprintf("SLUICE_CLICKHOUSE_URL=%s", f->url);
    env[1] = test_asprintf("SLUICE_CLICKHOUSE_DATABASE=%s", f->ch_db);
    env[2] = NULL;
    argv[n++] = test_bin("sluice");
    argv[n++] = "--db";
    argv[n++] = f->db_path;
    va_start(ap, f);
    for (const char *a = va_arg(ap, const char *); a != NULL; a = va_arg(ap, const char *)) {
        ASSERT_TRUE(n < sizeof(argv) / sizeof(argv[0]) - 1);
        argv[n++] = (char *)a;
    }
    va_end(ap);
    argv[n] = NULL;
    test_proc_run(p, argv, env, NULL);
    free(argv[0]);
    free(env[0]);
    free(env[1]);
}

/* `sluice backfill start` over DAY1 in 1h chunks; returns the printed id. */
static int64_t start_job(struct fixture *f)
{
    struct test_proc p;
    int64_t id;

    cli(&p, f, "backfill", "start", "--kind", "hourly", "--tenant", "acme", "--from",
        "2026-11-24", "--to", "2026-11-24", "--chunk", "1h", NULL);
    if (p.status != 0) {
        TEST_FAIL("backfill start exited %d: %s", p.status, p.err);
    }
    id = strtoll(p.out, NULL, 10);
    ASSERT_TRUE(id > 0);
    ASSERT_CONTAINS(p.err, "24 chunks of 1h");
    test_proc_fini(&p);
    return id;
}

static struct sl_backfill_job job_get(struct fixture *f, int64_t id)
{
    struct sl_store *st = NULL;
    struct sl_backfill_job j;
    struct sl_err err;

    ASSERT_OK(sl_store_open(&st, f->db_path, 5000, &err), &err);
    ASSERT_OK(sl_store_backfill_get(st, id, &j, &err), &err);
    sl_store_close(st);
    return j;
}

/* Polls until the job is in state (and, for running, has at least min_done chunks). */
static struct sl_backfill_job wait_job(struct fixture *f, int64_t id,
                                       enum sl_backfill_state state, int64_t min_done)
{
    long deadline = test_now_ms() + RUN_TIMEOUT_MS;
    struct sl_backfill_job j;

    for (;;) {
        j = job_get(f, id);
        if (j.state == state && j.chunks_done >= min_done) {
            return j;
        }
        if (test_now_ms() > deadline) {
            TEST_FAIL("backfill %lld is %s with %lld/%lld chunks, not %s with %lld, after %d ms "
                      "(error: %s)", (long long)id, sl_store_backfill_state_name(j.state),
                      (long long)j.chunks_done, (long long)j.chunks_total,
                      sl_store_backfill_state_name(state), (long long)min_done, RUN_TIMEOUT_MS,
                      j.error);
        }
        poll(NULL, 0, 20);
    }
}

/* A finished job counted each chunk once: totals equal the raw rows of the range and the
 * checkpoints tile it. */
static void expect_exact_totals(struct fixture *f, int64_t id)
{
    struct sl_backfill_job j = job_get(f, id);
    struct sl_backfill_chunk *chunks = NULL;
    struct sl_store *st = NULL;
    struct sl_err err;
    size_t n = 0;
    int64_t sum = 0;

    ASSERT_EQ_INT(j.state, SL_BACKFILL_DONE);
    ASSERT_EQ_INT(j.chunks_done, 24);
    ASSERT_EQ_INT(j.cursor_s, DAY1 + 86400);
    ASSERT_EQ_INT(j.rows_read, raw_rows(f, DAY1, DAY1 + 86400));
    ASSERT_EQ_INT(j.rows_read, N_EVENTS + N_EVENTS / 4);
    ASSERT_OK(sl_store_open(&st, f->db_path, 5000, &err), &err);
    ASSERT_OK(sl_store_backfill_chunks(st, id, &chunks, &n, &err), &err);
    sl_store_close(st);
    ASSERT_EQ_INT(n, 24);
    for (size_t i = 0; i < n; i++) {
        ASSERT_EQ_INT(chunks[i].from_s, DAY1 + (int64_t)i * 3600);
        ASSERT_EQ_INT(chunks[i].to_s, chunks[i].from_s + 3600);
        ASSERT_EQ_INT(chunks[i].rows_read, raw_rows(f, chunks[i].from_s, chunks[i].to_s));
        sum += chunks[i].rows_read;
    }
    ASSERT_EQ_INT(sum, j.rows_read);
    sl_free(chunks);
}

/* ---- cases --------------------------------------------------------------------------- */

static void test_backfill_cli_kill_and_restart(void)
{
    struct fixture f;
    struct sched a, b;
    struct sl_backfill_job j;
    struct test_proc p;
    json_t *v;
    int64_t id;

    fixture_open(&f, "kill");
    id = start_job(&f);
    /* About 150 ms of sleep per 250-row chunk: a run of several seconds. */
    sched_start(&a, &f, "alpha", NULL, 1500);
    j = wait_job(&f, id, SL_BACKFILL_RUNNING, 4);
    sched_kill(&a);
    j = job_get(&f, id);
    ASSERT_EQ_INT(j.state, SL_BACKFILL_RUNNING); /* left mid-run, at its last checkpoint */
    ASSERT_TRUE(j.chunks_done < 24);
    sched_start(&b, &f, "beta", NULL, 1500);
    wait_job(&f, id, SL_BACKFILL_DONE, 24);
    expect_exact_totals(&f, id);
    expect_hourly_exact(&f);

    cli(&p, &f, "backfill", "status", "--json", NULL);
    ASSERT_EQ_INT(p.status, 0);
    v = json_loads(p.out, 0, NULL);
    ASSERT_TRUE(json_is_array(v) && json_array_size(v) == 1);
    ASSERT_EQ_STR(json_string_value(json_object_get(json_array_get(v, 0), "state")), "done");
    ASSERT_EQ_INT(json_integer_value(json_object_get(json_array_get(v, 0), "chunks_done")), 24);
    ASSERT_TRUE(json_real_value(json_object_get(json_array_get(v, 0), "progress")) == 1.0);
    json_decref(v);
    test_proc_fini(&p);
    cli(&p, &f, "backfill", "status", NULL);
    ASSERT_EQ_INT(p.status, 0);
    ASSERT_CONTAINS(p.out, "[########################] 100.0% 24/24");
    ASSERT_CONTAINS(p.out, "done");
    test_proc_fini(&p);
    test_daemon_stop(&b.d, STOP_TIMEOUT_MS);
    sched_fini(&b);
    sched_fini(&a);
    fixture_close(&f);
}

static void test_backfill_cli_standby_takeover(void)
{
    struct fixture f;
    struct sched a, b;
    struct sl_backfill_job j;
    int64_t id;

    fixture_open(&f, "standby");
    sched_start(&a, &f, "alpha", NULL, 1500);
    sched_start(&b, &f, "beta", NULL, 1500);
    id = start_job(&f);
    j = wait_job(&f, id, SL_BACKFILL_RUNNING, 3);
    /* Whoever leads has the job (its owner names the pid); kill it, the standby carries
     * on. */
    {
        struct sched *leader = NULL, *standby = NULL;
        char pid_text[32];

        snprintf(pid_text, sizeof(pid_text), ":%d", (int)a.d.pid);
        leader = strstr(j.owner, pid_text) != NULL ? &a : &b;
        standby = leader == &a ? &b : &a;
        sched_kill(leader);
        ASSERT_TRUE(job_get(&f, id).chunks_done < 24);
        wait_job(&f, id, SL_BACKFILL_DONE, 24);
        snprintf(pid_text, sizeof(pid_text), ":%d", (int)standby->d.pid);
        ASSERT_CONTAINS(job_get(&f, id).owner, pid_text);
        test_daemon_stop(&standby->d, STOP_TIMEOUT_MS);
    }
    expect_exact_totals(&f, id);
    expect_hourly_exact(&f);
    sched_fini(&b);
    sched_fini(&a);
    fixture_close(&f);
}

static void test_backfill_cli_pause_resume_cancel(void)
{
    struct fixture f;
    struct sched a;
    struct sl_backfill_job j;
    struct test_proc p;
    char id_text[24];
    int64_t id, done_at_pause;

    fixture_open(&f, "pause");
    id = start_job(&f);
    snprintf(id_text, sizeof(id_text), "%lld", (long long)id);
    /* An overlapping job is refused while this one is active. */
    cli(&p, &f, "backfill", "start", "--kind", "hourly", "--tenant", "acme", "--from",
        "2026-11-24T05:00:00Z", "--to", "2026-11-24T06:00:00Z", "--chunk", "1h", NULL);
    ASSERT_EQ_INT(p.status, 1);
    ASSERT_CONTAINS(p.err, "already covers part of this range");
    test_proc_fini(&p);

    sched_start(&a, &f, "alpha", NULL, 1500);
    wait_job(&f, id, SL_BACKFILL_RUNNING, 2);
    cli(&p, &f, "backfill", "pause", id_text, NULL);
    ASSERT_EQ_INT(p.status, 0);
    ASSERT_CONTAINS(p.out, "pausing");
    test_proc_fini(&p);
    j = wait_job(&f, id, SL_BACKFILL_PAUSED, 2);
    done_at_pause = j.chunks_done;
    ASSERT_TRUE(done_at_pause < 24);
    /* Paused stays paused: give the runner runs, then look again. */
    {
        long deadline = test_now_ms() + RUN_TIMEOUT_MS;
        struct sl_store *st = NULL;
        struct sl_run *runs = NULL;
        struct sl_err err;
        size_t n0 = 0, n = 0;

        ASSERT_OK(sl_store_open(&st, f.db_path, 5000, &err), &err);
        ASSERT_OK(sl_store_run_list(st, "backfill", 1000, &runs, &n0, &err), &err);
        sl_free(runs);
        do {
            ASSERT_TRUE(test_now_ms() < deadline);
            poll(NULL, 0, 50);
            ASSERT_OK(sl_store_run_list(st, "backfill", 1000, &runs, &n, &err), &err);
            sl_free(runs);
        } while (n < n0 + 2);
        sl_store_close(st);
    }
    j = job_get(&f, id);
    ASSERT_EQ_INT(j.state, SL_BACKFILL_PAUSED);
    ASSERT_EQ_INT(j.chunks_done, done_at_pause);

    cli(&p, &f, "backfill", "resume", id_text, NULL);
    ASSERT_EQ_INT(p.status, 0);
    ASSERT_CONTAINS(p.out, "queued");
    test_proc_fini(&p);
    wait_job(&f, id, SL_BACKFILL_DONE, 24);
    expect_exact_totals(&f, id);
    expect_hourly_exact(&f);
    cli(&p, &f, "backfill", "pause", id_text, NULL);
    ASSERT_EQ_INT(p.status, 1);
    ASSERT_CONTAINS(p.err, "is done");
    test_proc_fini(&p);

    /* A second job over the same range (the first is done), cancelled mid-run. */
    id = start_job(&f);
    snprintf(id_text, sizeof(id_text), "%lld", (long long)id);
    wait_job(&f, id, SL_BACKFILL_RUNNING, 2);
    cli(&p, &f, "backfill", "cancel", id_text, NULL);
    ASSERT_EQ_INT(p.status, 0);
    test_proc_fini(&p);
    j = wait_job(&f, id, SL_BACKFILL_CANCELLED, 0);
    ASSERT_TRUE(j.chunks_done < 24);
    ASSERT_TRUE(j.ended_s > 0);
    cli(&p, &f, "backfill", "status", id_text, "--json", NULL);
    ASSERT_EQ_INT(p.status, 0);
    ASSERT_CONTAINS(p.out, "\"state\":\"cancelled\"");
    test_proc_fini(&p);
    test_daemon_stop(&a.d, STOP_TIMEOUT_MS);
    sched_fini(&a);
    fixture_close(&f);
}

/* ClickHouse out of reach (a port nobody listens on): the chunk fails, the job records it;
 * with ClickHouse back, resume finishes it exactly. */
static void test_backfill_cli_failed_chunk_then_resume(void)
{
    struct fixture f;
    struct sched a, b;
    struct sl_backfill_job j;
    struct test_proc p;
    char id_text[24];
    char *dead_url;
    int64_t id;

    fixture_open(&f, "fail");
    id = start_job(&f);
    snprintf(id_text, sizeof(id_text), "%lld", (long long)id);
    dead_url = test_asprintf("http://127.0.0.1:%d", test_free_port());
    sched_start(&a, &f, "alpha", dead_url, 0);
    j = wait_job(&f, id, SL_BACKFILL_FAILED, 0);
    ASSERT_EQ_INT(j.error_chunk_s, DAY1);
    ASSERT_EQ_INT(j.chunks_done, 0);
    ASSERT_TRUE(strlen(j.error) > 0);
    cli(&p, &f, "backfill", "status", NULL);
    ASSERT_CONTAINS(p.out, "failed at chunk 2026-11-24T00:00:00Z");
    test_proc_fini(&p);
    test_daemon_stop(&a.d, STOP_TIMEOUT_MS);

    sched_start(&b, &f, "beta", NULL, 0);
    cli(&p, &f, "backfill", "resume", id_text, NULL);
    ASSERT_EQ_INT(p.status, 0);
    test_proc_fini(&p);
    wait_job(&f, id, SL_BACKFILL_DONE, 24);
    expect_exact_totals(&f, id);
    expect_hourly_exact(&f);
    ASSERT_EQ_STR(job_get(&f, id).error, "");
    test_daemon_stop(&b.d, STOP_TIMEOUT_MS);
    sched_fini(&b);
    sched_fini(&a);
    free(dead_url);
    fixture_close(&f);
}

/* --dry-run prints every chunk's numbers, records no job and writes nothing. */
static void test_backfill_cli_dry_run(void)
{
    struct fixture f;
    struct test_proc p;
    char sql[512];
    char *before, *after;
    json_t *v;

    fixture_open(&f, "dry");
    snprintf(sql, sizeof(sql), "SELECT table, name, rows FROM system.parts WHERE database = "
             "'%s' AND active ORDER BY table, name FORMAT TabSeparated", f.ch_db);
    before = query(&f, sql);
    cli(&p, &f, "--json", "backfill", "start", "--kind", "hourly", "--tenant", "acme", "--from",
        "2026-11-24", "--to", "2026-11-24", "--chunk", "1h", "--dry-run", NULL);
    if (p.status != 0) {
        TEST_FAIL("dry run exited %d: %s", p.status, p.err);
    }
    v = json_loads(p.out, 0, NULL);
    ASSERT_TRUE(json_is_array(v) && json_array_size(v) == 24);
    ASSERT_EQ_INT(json_integer_value(json_object_get(json_array_get(v, 0), "rows_read")),
                  raw_rows(&f, DAY1, DAY1 + 3600));
    ASSERT_TRUE(json_integer_value(json_object_get(json_array_get(v, 0), "rows_written")) > 0);
    json_decref(v);
    test_proc_fini(&p);
    cli(&p, &f, "backfill", "start", "--kind", "hourly", "--tenant", "acme", "--from",
        "2026-11-24", "--to", "2026-11-24", "--dry-run", NULL);
    ASSERT_EQ_INT(p.status, 0);
    ASSERT_CONTAINS(p.out, "nothing was written");
    test_proc_fini(&p);
    after = query(&f, sql);
    ASSERT_EQ_STR(after, before);
    cli(&p, &f, "backfill", "status", "--json", NULL);
    ASSERT_EQ_STR(p.out, "[]\n");
    test_proc_fini(&p);
    /* Usage errors exit 2. */
    cli(&p, &f, "backfill", "start", "--kind", "sessions", "--all-tenants", "--from",
        "2026-11-24", "--to", "2026-11-24", "--chunk", "1h", NULL);
    ASSERT_EQ_INT(p.status, 2);
    ASSERT_CONTAINS(p.err, "--chunk 1d");
    test_proc_fini(&p);
    cli(&p, &f, "backfill", "start", "--kind", "nope", "--all-tenants", "--from",
        "2026-11-24", "--to", "2026-11-24", NULL);
    ASSERT_EQ_INT(p.status, 2);
    test_proc_fini(&p);
    sl_free(before);
    sl_free(after);
    fixture_close(&f);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_backfill_cli_kill_and_restart),
        TEST_CASE(test_backfill_cli_standby_takeover),
        TEST_CASE(test_backfill_cli_pause_resume_cancel),
        TEST_CASE(test_backfill_cli_failed_chunk_then_resume),
        TEST_CASE(test_backfill_cli_dry_run),
        {NULL, NULL},
    };

    return test_main(argc, argv, cases);
}

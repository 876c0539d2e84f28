/*
 * The loader end to end, against the real Kafka broker and ClickHouse of scripts/stack.sh
 * and built sluice-ingest / sluice binaries:
 *
 * - Kafka mode: events POSTed to a running sluice-ingest (edge+loader) land in ClickHouse
 *   with exact counts and field values; /health, /stats, /metrics and internal_metrics
 *   report the loader.
 * - kill -9 of a loader-only sluice-ingest in the middle of a stream, then a restart: every
 *   event in ClickHouse exactly once as seen through uniqExact(id) and FINAL.
 * - ClickHouse stopped mid-stream (a private server of this test, via scripts/clickhouse.sh)
 *   for about 10 s (the "30 s", shortened to keep CI bounded): the loader reports
 *   clickhouse_down, retries with backoff (few attempts, one log line), and loads everything
 *   once ClickHouse is back.
 * - Poison: an unparseable message and one ClickHouse rejects (a MATERIALIZED throwIf column
 *   added to events for the test), produced straight to the topic between good ones, go to
 *   the dead-letter topic with reason and origin headers while their neighbours load.
 *   Replay after a fix: the operator drops the column that rejected the row and runs
 *   `sluice dlq replay`; the ClickHouse-rejected event now loads, the unparseable one fails
 *   again and comes back as a new dead letter (counted twice), and neither is replayed twice.
 * - The embedded default with no broker at all: POST -> spool -> ClickHouse, a rejected row
 *   in <spool>/dead-letters/, replayed into ClickHouse after the fix by `sluice dlq replay`.
 *
 * Needs SLUICE_TEST_KAFKA_BROKERS and SLUICE_TEST_CLICKHOUSE_URL (skips without them unless
 * SLUICE_TEST_REQUIRE_STACK=1). Every case uses its own database, topics and group.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "cfg.h"
#include "ch.h"
#include "daemon.h"
#include "loader.h"
#include "store.h"
#include "chquery.h"
#include "httpclient.h"
#include "test.h"

#define START_MS 20000
#define STOP_MS 40000
#define LOAD_MS 90000
#define KAFKA_MS 30000
#define MAX_ENV 40
#define MAX_LIVE 8

/* GLOBAL: pids of daemons and the private ClickHouse this process started, killed by the
 * SIGABRT handler so a failed assertion leaves nothing running. Written by the test thread
 * only; read by the handler. */
static volatile pid_t g_live[MAX_LIVE];

static void on_abort(int sig)
{
    for (int i = 0; i < MAX_LIVE; i++) {
        if (g_live[i] > 0) {
            kill(g_live[i], SIGKILL);
        }
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void live_add(pid_t pid)
{
    for (int i = 0; i < MAX_LIVE; i++) {
        if (g_live[i] == 0) {
            g_live[i] = pid;
            return;
        }
    }
}

static void live_remove(pid_t pid)
{
    for (int i = 0; i < MAX_LIVE; i++) {
        if (g_live[i] == pid) {
            g_live[i] = 0;
        }
    }
}

/* ---- the fixture: tenant store, names, ClickHouse client ---- */

struct fixture {
    char *dir;
    char *store;
    char tenant_id[SL_STORE_ID_MAX];
    char key[SL_KEY_SECRET_MAX];
    char database[96];
    char topic[160];
    char dlq_topic[170];
    char group[160];
    const char *brokers; /* NULL: spool mode */
    char ch_url[128];
    struct sl_ch *ch;
    struct sl_ch_settings ch_settings;
    uint32_t id_prefix;
    int n_daemons;
};

static void conf_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char errstr[512];

    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        TEST_FAIL("rd_kafka_conf_set(%s=%s): %s", name, value, errstr);
    }
}

static rd_kafka_t *kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf)
{
    char errstr[512];
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));

    if (rk == NULL) {
        TEST_FAIL("rd_kafka_new: %s", errstr);
    }
    return rk;
}

/* Runs one Admin API call (create or delete topics) and checks its result. */
static void admin_topics(const char *brokers, const char *topic, int partitions, bool create)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    rd_kafka_event_t *ev = NULL;
    char errstr[256];
    long deadline = test_now_ms() + KAFKA_MS;

    conf_set(conf, "bootstrap.servers", brokers);
    rk = kafka_new(RD_KAFKA_PRODUCER, conf);
    q = rd_kafka_queue_new(rk);
    if (create) {
        rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, 1, errstr,
                                                        sizeof(errstr));

        ASSERT_TRUE(nt != NULL);
        rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
        rd_kafka_NewTopic_destroy(nt);
    }
    else {
        rd_kafka_DeleteTopic_t *dt = rd_kafka_DeleteTopic_new(topic);

        rd_kafka_DeleteTopics(rk, &dt, 1, NULL, q);
        rd_kafka_DeleteTopic_destroy(dt);
    }
    while (ev == NULL && test_now_ms() < deadline) {
        ev = rd_kafka_queue_poll(q, 200);
    }
    ASSERT_TRUE(ev != NULL);
    if (create) {
        size_t n = 0;
        const rd_kafka_topic_result_t **res = rd_kafka_CreateTopics_result_topics(
            rd_kafka_event_CreateTopics_result(ev), &n);

        ASSERT_EQ_INT(rd_kafka_event_error(ev), RD_KAFKA_RESP_ERR_NO_ERROR);
        ASSERT_EQ_INT(n, 1);
        if (rd_kafka_topic_result_error(res[0]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            TEST_FAIL("create %s: %s", topic, rd_kafka_topic_result_error_string(res[0]));
        }
    }
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

static void fixture_init(struct fixture *f, const char *name, bool with_kafka)
{
    struct sl_store *st = NULL;
    struct sl_tenant t;
    struct sl_key k;
    struct sl_err err;
    const char *ch_url = test_env_require("SLUICE_TEST_CLICKHOUSE_URL");
    char *env_url = NULL, *env_db = NULL;

    memset(f, 0, sizeof(*f));
    f->brokers = with_kafka ? test_env_require("SLUICE_TEST_KAFKA_BROKERS") : NULL;
    snprintf(f->ch_url, sizeof(f->ch_url), "%s", ch_url);
    f->dir = test_tmpdir();
    f->store = test_path(f->dir, "tenants.db");
    f->id_prefix = (uint32_t)(((unsigned)getpid() << 12) ^ (unsigned)time(NULL));
    snprintf(f->database, sizeof(f->database), "sluice_test_loader_%s_%ld", name,
             (long)getpid());
    snprintf(f->topic, sizeof(f->topic), "sluice.test.loader.%s.%ld.%lld", name,
             (long)getpid(), (long long)time(NULL));
    snprintf(f->dlq_topic, sizeof(f->dlq_topic), "%s.dlq", f->topic);
    snprintf(f->group, sizeof(f->group), "sluice-test-loader-%s-%ld", name, (long)getpid());
    ASSERT_OK(sl_store_open(&st, f->store, 1000, &err), &err);
    ASSERT_OK(sl_store_tenant_create(st, "loader-test", "enterprise", (int64_t)time(NULL), &t,
                                     &err), &err);
    ASSERT_OK(sl_store_key_create(st, "loader-test", "test", NULL, 0, (int64_t)time(NULL), &k,
                                  f->key, &err), &err);
    sl_store_close(st);
    memcpy(f->tenant_id, t.id, sizeof(f->tenant_id));
    /* The test's own ClickHouse client, from the same settings table the daemons use. */
    env_url = test_asprintf("SLUICE_CLICKHOUSE_URL=%s", ch_url);
    env_db = test_asprintf("SLUICE_CLICKHOUSE_DATABASE=%s", f->database);
    {
        char *env[] = {env_url, env_db, NULL};
        struct sl_cfg_section sec = SL_CFG_SECTION("clickhouse", sl_ch_cfg_opts,
                                                   sl_ch_cfg_n_opts, &f->ch_settings);
        struct sl_ch_settings client;

        ASSERT_OK(sl_cfg_load(&sec, 1, NULL, env, &err), &err);
        client = f->ch_settings;
        client.database = NULL;
        ASSERT_OK(sl_ch_create(&f->ch, &client, &err), &err);
    }
    free(env_url);
    free(env_db);
    if (with_kafka) {
        admin_topics(f->brokers, f->topic, 3, true);
        admin_topics(f->brokers, f->dlq_topic, 1, true);
    }
}

static void fixture_fini(struct fixture *f)
{
    struct sl_cfg_section sec = SL_CFG_SECTION("clickhouse", sl_ch_cfg_opts, sl_ch_cfg_n_opts,
                                               &f->ch_settings);
    char sql[256];
    struct sl_err err;

    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", f->database);
    ASSERT_OK(sl_ch_exec(f->ch, sql, &err), &err);
    if (f->brokers != NULL) {
        admin_topics(f->brokers, f->topic, 0, false);
        admin_topics(f->brokers, f->dlq_topic, 0, false);
    }
    sl_ch_destroy(f->ch);
    sl_cfg_fini(&sec, 1);
    test_rmtree(f->dir);
    free(f->dir);
    free(f->store);
}

/* ---- ClickHouse ---- */

/* Polls "SELECT uniqExact(id) FROM db.events [WHERE ...]" until it is want. */
static long long wait_events(struct fixture *f, const char *where, long long want,
                             int timeout_ms)
{
    long deadline = test_now_ms() + timeout_ms;
    long long n = -1;

    for (;;) {
        n = test_ch_int(f->ch, "SELECT uniqExact(id) FROM %s.events %s", f->database, where);
        if (n == want || test_now_ms() > deadline) {
            return n;
        }
        usleep(100 * 1000); /* poll interval, not a wait for a condition */
    }
}

/* Waits until the loader applied the schema (the events table exists). */
static void wait_schema(struct fixture *f)
{
    long deadline = test_now_ms() + START_MS;

    while (test_ch_int(f->ch, "SELECT count() FROM system.tables WHERE database = '%s' AND name = "
                       "'events'", f->database) != 1) {
        if (test_now_ms() > deadline) {
            TEST_FAIL("no %s.events after %d ms", f->database, START_MS);
        }
        usleep(100 * 1000);
    }
}

/* ---- sluice-ingest ---- */

struct ingestd {
    struct test_daemon d;
    char *dir;
    char *env[MAX_ENV];
    size_t n_env;
    int port;
    bool is_running;
};

static void ingestd_env(struct ingestd *x, char *kv)
{
    ASSERT_TRUE(x->n_env + 1 < MAX_ENV);
    x->env[x->n_env++] = kv;
}

/*
 * Starts sluice-ingest in a folder of its own with the fixture's settings, spool_dir as
 * its spool, and extra "K=V" settings (NULL-terminated, may be NULL) that override them.
 */
static void ingestd_start(struct ingestd *x, struct fixture *f, const char *spool_dir,
                          const char *const *extra)
{
    char *bin = test_bin("sluice-ingest");
    char name[32];

    memset(x, 0, sizeof(*x));
    snprintf(name, sizeof(name), "daemon%d", f->n_daemons++);
    x->dir = test_path(f->dir, name);
    ASSERT_EQ_INT(mkdir(x->dir, 0700), 0);
    x->port = test_free_port();
    ingestd_env(x, test_asprintf("SLUICE_DB=%s", f->store));
    ingestd_env(x, test_asprintf("SLUICE_SPOOL_DIR=%s", spool_dir));
    ingestd_env(x, test_asprintf("SLUICE_HTTP_ADDR=127.0.0.1:%d", x->port));
    ingestd_env(x, test_asprintf("SLUICE_LOG_LEVEL=info"));
    ingestd_env(x, test_asprintf("SLUICE_CLICKHOUSE_URL=%s", f->ch_url));
    ingestd_env(x, test_asprintf("SLUICE_CLICKHOUSE_DATABASE=%s", f->database));
    ingestd_env(x, test_asprintf("SLUICE_LOADER_BATCH_AGE_MS=200"));
    ingestd_env(x, test_asprintf("SLUICE_METRICS_SNAPSHOT_S=0"));
    if (f->brokers != NULL) {
        ingestd_env(x, test_asprintf("SLUICE_KAFKA_BROKERS=%s", f->brokers));
        ingestd_env(x, test_asprintf("SLUICE_KAFKA_TOPIC=%s", f->topic));
        ingestd_env(x, test_asprintf("SLUICE_KAFKA_DLQ_TOPIC=%s", f->dlq_topic));
        ingestd_env(x, test_asprintf("SLUICE_LOADER_GROUP_ID=%s", f->group));
        ingestd_env(x, test_asprintf("SLUICE_LOADER_SESSION_TIMEOUT_MS=6000"));
    }
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        ingestd_env(x, test_asprintf("%s", extra[i])); /* later entries win in setenv order */
    }
    x->env[x->n_env] = NULL;
    test_daemon_start(&x->d, bin, NULL, x->dir, x->env);
    live_add(x->d.pid);
    x->is_running = true;
    test_daemon_wait_started(&x->d, "ingest", START_MS);
    free(bin);
}

static void ingestd_stop(struct ingestd *x)
{
    test_daemon_stop(&x->d, STOP_MS);
    live_remove(x->d.pid);
    x->is_running = false;
}

static void ingestd_kill9(struct ingestd *x)
{
    ASSERT_EQ_INT(kill(x->d.pid, SIGKILL), 0);
    test_daemon_wait_exit(&x->d, STOP_MS);
    ASSERT_EQ_INT(x->d.status, 128 + SIGKILL);
    live_remove(x->d.pid);
    x->is_running = false;
}

static void ingestd_fini(struct ingestd *x)
{
    if (x->is_running) {
        live_remove(x->d.pid);
    }
    test_daemon_fini(&x->d);
    for (size_t i = 0; i < x->n_env; i++) {
        free(x->env[i]);
    }
    free(x->dir);
    memset(x, 0, sizeof(*x));
}

/* How many lines of the daemon's log hold text. */
static int log_count(struct ingestd *x, const char *text)
{
    int n = 0;

    test_daemon_read_log(&x->d);
    for (const char *p = x->d.log; p != NULL && (p = strstr(p, text)) != NULL; p++) {
        n++;
    }
    return n;
}

/* ---- HTTP ---- */

/* GET path (body NULL) or POST body to it with key; returns the status, body in *out. */
static long http(struct ingestd *x, const char *path, const char *key, const char *body,
                 char **out)
{
    return test_http(x->port, path, key, body, out);
}

static json_t *http_json(struct ingestd *x, const char *path, long want_status)
{
    char *body = NULL;
    long status = http(x, path, NULL, NULL, &body);
    json_t *v = json_loads(body, 0, NULL);

    if (status != want_status || v == NULL) {
        TEST_FAIL("GET %s: %ld %s", path, status, body);
    }
    free(body);
    return v;
}

/* The loader's state in /health. */
static const char *health_state(struct ingestd *x, char *buf, size_t cap)
{
    json_t *v = http_json(x, "/health", 200);

    snprintf(buf, cap, "%s",
             json_string_value(json_object_get(json_object_get(v, "loader"), "state")) != NULL
                 ? json_string_value(json_object_get(json_object_get(v, "loader"), "state"))
                 : "(none)");
    json_decref(v);
    return buf;
}

static bool wait_state(struct ingestd *x, const char *want, int timeout_ms)
{
    long deadline = test_now_ms() + timeout_ms;
    char state[64];

    while (strcmp(health_state(x, state, sizeof(state)), want) != 0) {
        if (test_now_ms() > deadline) {
            return false;
        }
        usleep(100 * 1000);
    }
    return true;
}

/* A metric's value from /metrics ("name{labels}" exactly as rendered), -1 if absent. */
static double metric(struct ingestd *x, const char *series)
{
    char *body = NULL;
    double v = -1;
    char *p;

    ASSERT_EQ_INT(http(x, "/metrics", NULL, NULL, &body), 200);
    for (p = body; (p = strstr(p, series)) != NULL; p++) {
        if ((p == body || p[-1] == '\n') && p[strlen(series)] == ' ') {
            v = strtod(p + strlen(series) + 1, NULL);
            break;
        }
    }
    free(body);
    return v;
}

/* Polls /stats until loader.<name> is want; returns the last value. */
static long long wait_loader_stat(struct ingestd *x, const char *name, long long want)
{
    long deadline = test_now_ms() + 10000;
    long long v = -1;

    for (;;) {
        json_t *stats = http_json(x, "/stats", 200);

        v = json_integer_value(json_object_get(json_object_get(stats, "loader"), name));
        json_decref(stats);
        if (v == want || test_now_ms() > deadline) {
            return v;
        }
        usleep(100 * 1000);
    }
}

/* Polls /metrics until series is want; returns the last value. */
static double wait_metric(struct ingestd *x, const char *series, double want)
{
    long deadline = test_now_ms() + 10000;
    double v;

    while ((v = metric(x, series)) != want && test_now_ms() < deadline) {
        usleep(100 * 1000);
    }
    return v;
}

static void event_id(struct fixture *f, long idx, char out[37])
{
    snprintf(out, 37, "%08x-0000-4000-8000-%012ld", f->id_prefix, idx);
}

/* POSTs events [first, first + n) as one request; name "poison-ch" for index poison. */
static void post_events(struct fixture *f, struct ingestd *x, long first, long n, long poison)
{
    json_t *events = json_array();
    json_t *req = json_pack("{s:o}", "events", events);
    char *body, *answer = NULL, want[32];
    long status;

    for (long i = first; i < first + n; i++) {
        char id[37], name[32], session[32];

        event_id(f, i, id);
        snprintf(name, sizeof(name), i == poison ? "poison-ch" : "e%ld", i);
        snprintf(session, sizeof(session), "s%ld", i % 7);
        json_array_append_new(events, json_pack("{s:s, s:s, s:s, s:s, s:{s:I, s:s}}", "id", id,
                                                "type", "custom", "name", name, "session_id",
                                                session, "properties", "n", (json_int_t)i,
                                                "kind", i % 2 == 0 ? "even" : "odd"));
    }
    body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    status = http(x, "/ingest", f->key, body, &answer);
    snprintf(want, sizeof(want), "\"accepted\":%ld", n);
    if (status != 200 || strstr(answer, want) == NULL) {
        TEST_FAIL("POST /ingest: %ld %s", status, answer);
    }
    free(answer);
    free(body);
}

/* ---- Kafka: raw produce and reading the dead letters ---- */

struct produced {
    int64_t offsets[16];
    int n_ok;
};

static void on_produced(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct produced *p = opaque;
    intptr_t idx = (intptr_t)m->_private;

    (void)rk;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && idx >= 0 && idx < 16) {
        p->offsets[idx] = m->offset;
        p->n_ok++;
    }
}

/* Produces the values, in order, to partition 0 of topic with the tenant header. */
static void produce(struct fixture *f, const char *const *values, int n, struct produced *out)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    long deadline = test_now_ms() + KAFKA_MS;

    memset(out, 0, sizeof(*out));
    conf_set(conf, "bootstrap.servers", f->brokers);
    conf_set(conf, "enable.idempotence", "true");
    conf_set(conf, "linger.ms", "50");
    rd_kafka_conf_set_dr_msg_cb(conf, on_produced);
    rd_kafka_conf_set_opaque(conf, out);
    rk = kafka_new(RD_KAFKA_PRODUCER, conf);
    for (int i = 0; i < n; i++) {
        ASSERT_EQ_INT(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(f->topic), RD_KAFKA_V_PARTITION(0),
                                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                        RD_KAFKA_V_KEY(f->tenant_id, strlen(f->tenant_id)),
                                        RD_KAFKA_V_VALUE((void *)values[i], strlen(values[i])),
                                        RD_KAFKA_V_HEADER("sluice-tenant", f->tenant_id, -1),
                                        RD_KAFKA_V_OPAQUE((void *)(intptr_t)i), RD_KAFKA_V_END),
                      RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    while (rd_kafka_outq_len(rk) > 0 && test_now_ms() < deadline) {
        rd_kafka_flush(rk, 200);
    }
    ASSERT_EQ_INT(out->n_ok, n);
    rd_kafka_destroy(rk);
}

/* One dead letter as read back from the topic. */
struct dead {
    int64_t offset;
    char value[256];
    char reason[512];
    char topic[200];
    char partition[16];
    char orig_offset[32];
    char tenant[64];
};

static void hdr(rd_kafka_headers_t *h, const char *name, char *out, size_t cap)
{
    const void *v = NULL;
    size_t n = 0;

    out[0] = '\0';
    if (h != NULL && rd_kafka_header_get_last(h, name, &v, &n) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        v != NULL && n < cap) {
        memcpy(out, v, n);
        out[n] = '\0';
    }
}

/* Reads partition 0 of the dead-letter topic from the start until it has want messages. */
static void read_dead(struct fixture *f, int want, struct dead *out)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_t *rk;
    long deadline = test_now_ms() + LOAD_MS;
    int n = 0;

    conf_set(conf, "bootstrap.servers", f->brokers);
    conf_set(conf, "group.id", "sluice-test-loader-reader");
    conf_set(conf, "enable.auto.commit", "false");
    rk = kafka_new(RD_KAFKA_CONSUMER, conf);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_add(list, f->dlq_topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    while (n < want && test_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        rd_kafka_headers_t *h = NULL;

        if (m == NULL) {
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            struct dead *d = &out[n++];

            memset(d, 0, sizeof(*d));
            d->offset = m->offset;
            snprintf(d->value, sizeof(d->value), "%.*s", (int)m->len, (const char *)m->payload);
            if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR) {
                h = NULL;
            }
            hdr(h, "sluice-dlq-reason", d->reason, sizeof(d->reason));
            hdr(h, "sluice-original-topic", d->topic, sizeof(d->topic));
            hdr(h, "sluice-original-partition", d->partition, sizeof(d->partition));
            hdr(h, "sluice-original-offset", d->orig_offset, sizeof(d->orig_offset));
            hdr(h, "sluice-tenant", d->tenant, sizeof(d->tenant));
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (n < want) {
        TEST_FAIL("%d dead letters in %s, want %d", n, f->dlq_topic, want);
    }
}

/* A normalized event as the edge would put it on the topic. */
static char *normalized(struct fixture *f, long idx, const char *name)
{
    char id[37], now[32];
    time_t t = time(NULL);
    struct tm tm;

    event_id(f, idx, id);
    gmtime_r(&t, &tm);
    strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%S.000Z", &tm);
    return test_asprintf("{\"schema_version\":1,\"id\":\"%s\",\"tenant_id\":\"%s\","
                         "\"type\":\"custom\","
                         "\"name\":\"%s\",\"ts\":\"%s\",\"received_at\":\"%s\",\"session_id\":null,"
                         "\"anonymous_id\":null,\"user_id\":null,\"properties\":{},"
                         "\"context\":{\"user_agent\":null,\"ip\":null},\"flags\":[]}",
                         id, f->tenant_id, name, now, now);
}

/* ---- sluice dlq ---- */

/* Runs `sluice dlq args... --json` with the fixture's settings; returns its JSON. */
static json_t *sluice_dlq(struct fixture *f, const char *spool_dir, const char *const *args,
                          int want_status)
{
    char *bin = test_bin("sluice");
    char *argv[12];
    char *env[8];
    size_t n = 0, ne = 0;
    struct test_proc p;
    json_t *v;

    argv[n++] = bin;
    argv[n++] = "--json";
    argv[n++] = "dlq";
    for (size_t i = 0; args[i] != NULL && n < 11; i++) {
        argv[n++] = (char *)args[i];
    }
    argv[n] = NULL;
    env[ne++] = test_asprintf("SLUICE_KAFKA_BROKERS=%s", f->brokers != NULL ? f->brokers : "");
    env[ne++] = test_asprintf("SLUICE_KAFKA_DLQ_TOPIC=%s", f->dlq_topic);
    env[ne++] = test_asprintf("SLUICE_SPOOL_DIR=%s", spool_dir != NULL ? spool_dir : f->dir);
    env[ne++] = test_asprintf("SLUICE_CLICKHOUSE_URL=%s", f->ch_url);
    env[ne++] = test_asprintf("SLUICE_CLICKHOUSE_DATABASE=%s", f->database);
    env[ne++] = test_asprintf("SLUICE_LOG_LEVEL=warn");
    env[ne] = NULL;
    test_proc_run(&p, argv, env, NULL);
    if (p.status != want_status) {
        TEST_FAIL("sluice dlq %s: exit %d, want %d: %s%s", args[0], p.status, want_status,
                  p.out, p.err);
    }
    v = json_loads(p.out, 0, NULL);
    if (v == NULL) {
        TEST_FAIL("sluice dlq %s: not JSON: %s", args[0], p.out);
    }
    test_proc_fini(&p);
    for (size_t i = 0; i < ne; i++) {
        free(env[i]);
    }
    free(bin);
    return v;
}

/* ---- cases ---- */

static void test_loader_roles_setting(void)
{
    struct ingest_loader_settings s = {0};
    struct sl_cfg_section sec = SL_CFG_SECTION("loader", ingest_loader_cfg_opts,
                                               ingest_loader_cfg_n_opts, &s);
    static const char *const bad[] = {"", "edge,", "edge,edge", "edge loader", "queue",
                                      "loader,,edge"};
    struct sl_err err;
    char *bin = test_bin("sluice-ingest");
    char *argv[] = {bin, "--print-config", NULL};
    struct test_proc p;

    ASSERT_OK(sl_cfg_load(&sec, 1, NULL, (char *[]){NULL}, &err), &err);
    ASSERT_EQ_STR(s.roles, "edge,loader");
    ASSERT_EQ_INT(s.batch_rows, 50000);
    ASSERT_EQ_INT(s.batch_bytes, 16 * 1024 * 1024);
    ASSERT_EQ_INT(s.batch_age_ms, 1000);
    ASSERT_EQ_STR(s.group_id, "sluice-loader");
    ASSERT_EQ_STR(s.dlq_topic, "sluice.dlq");
    ASSERT_EQ_INT(s.backoff_max_ms, 30000);
    ASSERT_TRUE(ingest_loader_roles_has(s.roles, "edge"));
    ASSERT_TRUE(ingest_loader_roles_has(s.roles, "loader"));
    sl_cfg_fini(&sec, 1);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *kv = test_asprintf("SLUICE_INGEST_ROLES=%s", bad[i]);

        memset(&s, 0, sizeof(s));
        ASSERT_EQ_INT(sl_cfg_load(&sec, 1, NULL, (char *[]){kv, NULL}, &err), SL_EINVAL);
        ASSERT_CONTAINS(err.msg, "SLUICE_INGEST_ROLES");
        sl_cfg_fini(&sec, 1);
        free(kv);
    }
    ASSERT_TRUE(ingest_loader_roles_has("loader,edge", "edge"));
    ASSERT_TRUE(!ingest_loader_roles_has("loader", "edge"));
    ASSERT_TRUE(!ingest_loader_roles_has("edge", "loader"));
    /* A loader alone without a broker has no queue to read: a usage error, exit 2. */
    test_proc_run(&p, (char *[]){bin, NULL}, (char *[]){"SLUICE_INGEST_ROLES=loader", NULL},
                  NULL);
    ASSERT_EQ_INT(p.status, 2);
    ASSERT_CONTAINS(p.err, "SLUICE_KAFKA_BROKERS");
    test_proc_fini(&p);
    test_proc_run(&p, argv, (char *[]){"SLUICE_INGEST_ROLES=edge,edge", NULL}, NULL);
    ASSERT_EQ_INT(p.status, 2);
    ASSERT_CONTAINS(p.err, "SLUICE_INGEST_ROLES");
    test_proc_fini(&p);
    test_proc_run(&p, argv, NULL, NULL);
    ASSERT_EQ_INT(p.status, 0);
    ASSERT_CONTAINS(p.out, "SLUICE_INGEST_ROLES=edge,loader");
    ASSERT_CONTAINS(p.out, "SLUICE_LOADER_BATCH_ROWS=50000");
    ASSERT_CONTAINS(p.out, "SLUICE_METRICS_SNAPSHOT_S=60");
    test_proc_fini(&p);
    free(bin);
}

static void test_loader_kafka_end_to_end(void)
{
    struct fixture f;
    struct ingestd x;
    char *spool;
    char sql[512], line[512], id[37];
    json_t *v, *loader;

    fixture_init(&f, "e2e", true);
    spool = test_path(f.dir, "spool");
    ingestd_start(&x, &f, spool,
                  (const char *const[]){"SLUICE_LOADER_BATCH_ROWS=100",
                                        "SLUICE_METRICS_SNAPSHOT_S=1", NULL});
    for (long r = 0; r < 3; r++) {
        post_events(&f, &x, r * 100, 100, -1);
    }
    ASSERT_EQ_INT(wait_events(&f, "", 300, LOAD_MS), 300);
    /* Exact: nothing twice, nothing else, and the fields as sent. */
    ASSERT_EQ_INT(test_ch_int(f.ch, "SELECT count() FROM %s.events", f.database), 300);
    ASSERT_EQ_INT(test_ch_int(f.ch, "SELECT countIf(tenant_id = '%s' AND type = 'custom') FROM "
                              "%s.events", f.tenant_id, f.database), 300);
    ASSERT_EQ_INT(test_ch_int(f.ch, "SELECT sum(toUInt64(visitParamExtractInt(properties, 'n'))) "
                              "FROM %s.events", f.database), 299 * 300 / 2);
    event_id(&f, 123, id);
    snprintf(sql, sizeof(sql), "SELECT name, session_id, visitParamExtractInt(properties, 'n'), "
             "visitParamExtractString(properties, 'kind'), tenant_id FROM %s.events WHERE id = "
             "toUUID('%s') FORMAT TabSeparated", f.database, id);
    test_ch_line(f.ch, line, sizeof(line), "%s", sql);
    {
        char want_line[256];

        snprintf(want_line, sizeof(want_line), "e123\ts4\t123\todd\t%s", f.tenant_id);
        ASSERT_EQ_STR(line, want_line);
    }
    /* Health and stats name the loader; metrics count its rows. */
    ASSERT_TRUE(wait_state(&x, "ok", 5000));
    v = http_json(&x, "/health", 200);
    loader = json_object_get(v, "loader");
    ASSERT_EQ_STR(json_string_value(json_object_get(loader, "mode")), "kafka");
    ASSERT_EQ_STR(json_string_value(json_object_get(v, "status")), "ok");
    json_decref(v);
    /* Rows are counted when their batch is released, just after ClickHouse has them. */
    ASSERT_EQ_INT(wait_loader_stat(&x, "rows_loaded", 300), 300);
    v = http_json(&x, "/stats", 200);
    loader = json_object_get(v, "loader");
    ASSERT_EQ_INT(json_integer_value(json_object_get(loader, "dead_letters")), 0);
    ASSERT_TRUE(json_integer_value(json_object_get(loader, "batches")) >= 3);
    json_decref(v);
    ASSERT_TRUE(metric(&x, "sluice_loader_rows_total") == 300);
    ASSERT_TRUE(metric(&x, "sluice_loader_batch_seconds_count") >= 3);
    {
        /* Lag per partition goes to 0 once everything is committed. */
        long deadline = test_now_ms() + 10000;
        double lag = -1;

        while (test_now_ms() < deadline) {
            lag = metric(&x, "sluice_loader_consumer_lag{partition=\"0\"}") +
                  metric(&x, "sluice_loader_consumer_lag{partition=\"1\"}") +
                  metric(&x, "sluice_loader_consumer_lag{partition=\"2\"}");
            if (lag == 0) {
                break;
            }
            usleep(200 * 1000);
        }
        ASSERT_TRUE(lag == 0);
    }
    /* The process's metrics land in internal_metrics (every second here). */
    {
        long deadline = test_now_ms() + 15000;

        while (test_ch_int(f.ch, "SELECT max(value) FROM %s.internal_metrics WHERE name = "
                           "'sluice_loader_rows_total' AND process = 'sluice-ingest'",
                           f.database) != 300) {
            ASSERT_TRUE(test_now_ms() < deadline);
            usleep(200 * 1000);
        }
        ASSERT_TRUE(test_ch_int(f.ch, "SELECT count() FROM %s.internal_metrics WHERE name = "
                                "'sluice_events_accepted_total'", f.database) > 0);
    }
    ingestd_stop(&x);
    ASSERT_EQ_INT(test_ch_int(f.ch, "SELECT count() FROM %s.events", f.database), 300);
    ingestd_fini(&x);
    free(spool);
    fixture_fini(&f);
}

static void test_loader_kill9_no_loss(void)
{
    const long n_total = 3000, per_request = 100;
    struct fixture f;
    struct ingestd edge, victim, again;
    char *spool_edge, *spool_victim;
    const char *const victim_opts[] = {"SLUICE_INGEST_ROLES=loader",
                                       "SLUICE_LOADER_BATCH_ROWS=50",
                                       "SLUICE_LOADER_BATCH_AGE_MS=50", NULL};
    long posted = 0;
    long long before_restart, total;

    fixture_init(&f, "kill9", true);
    spool_edge = test_path(f.dir, "spool-edge");
    spool_victim = test_path(f.dir, "spool-victim");
    ingestd_start(&edge, &f, spool_edge, (const char *const[]){"SLUICE_INGEST_ROLES=edge", NULL});
    ingestd_start(&victim, &f, spool_victim, victim_opts);
    {
        /* A loader-only process serves health but no ingest. */
        char *body = NULL;

        ASSERT_EQ_INT(http(&victim, "/ingest", f.key, "{\"type\":\"click\"}", &body), 404);
        ASSERT_CONTAINS(body, "loader role");
        free(body);
    }
    /* Stream until the victim has loaded part of it, then kill it mid-stream. */
    while (posted < n_total / 2) {
        post_events(&f, &edge, posted, per_request, -1);
        posted += per_request;
        if (test_ch_int(f.ch, "SELECT count() FROM %s.events", f.database) >= 300) {
            break;
        }
    }
    {
        long deadline = test_now_ms() + LOAD_MS;

        while (test_ch_int(f.ch, "SELECT count() FROM %s.events", f.database) < 100) {
            ASSERT_TRUE(test_now_ms() < deadline);
            usleep(50 * 1000);
        }
    }
    post_events(&f, &edge, posted, per_request, -1); /* in flight as it dies */
    posted += per_request;
    ingestd_kill9(&victim);
    while (posted < n_total) {
        post_events(&f, &edge, posted, per_request, -1);
        posted += per_request;
    }
    before_restart = test_ch_int(f.ch, "SELECT uniqExact(id) FROM %s.events", f.database);
    fprintf(stderr, "note: %lld of %ld events loaded when the loader was killed\n",
            before_restart, n_total);
    ASSERT_TRUE(before_restart < n_total);
    ingestd_start(&again, &f, spool_victim, victim_opts);
    ASSERT_EQ_INT(wait_events(&f, "", n_total, LOAD_MS), n_total);
    /* Redelivered rows may be stored twice until a merge; FINAL and uniqExact see each
     * event once. */
    total = test_ch_int(f.ch, "SELECT count() FROM %s.events", f.database);
    fprintf(stderr, "note: %lld rows stored for %ld events before merges\n", total, n_total);
    ASSERT_TRUE(total >= n_total);
    ASSERT_EQ_INT(test_ch_int(f.ch, "SELECT count() FROM %s.events FINAL", f.database), n_total);
    ASSERT_EQ_INT(test_ch_int(f.ch, "SELECT uniqExact(tenant_id, id) FROM %s.events", f.database),
                  n_total);
    ingestd_stop(&again);
    ingestd_stop(&edge);
    ingestd_fini(&again);
    ingestd_fini(&victim);
    ingestd_fini(&edge);
    free(spool_edge);
    free(spool_victim);
    fixture_fini(&f);
}

/*
 * A loopback TCP forwarder with a fixed port in front of the private ClickHouse:
 * clickhouse.sh keeps a restarted server's port only when it is still free, and the
 * connections of the loader being refused leave it in TIME_WAIT, so the server may come
 * back on another port. The forwarder connects each new client to the current port; while
 * the server is down it closes them at once (the client sees a network error, as with the
 * server gone).
 */
#define PROXY_MAX_CONNS 64

struct proxy {
    int listen_fd;
    int port;
    atomic_int backend_port;
    atomic_bool is_stopping;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_t conns[PROXY_MAX_CONNS];
    int n_conns;
};

struct proxy_pair {
    struct proxy *px;
    int a, b;
};

static void *proxy_conn_main(void *arg)
{
    struct proxy_pair *pp = arg;
    char buf[65536];

    while (!atomic_load(&pp->px->is_stopping)) {
        struct pollfd fds[2] = {{.fd = pp->a, .events = POLLIN}, {.fd = pp->b, .events = POLLIN}};
        int n = poll(fds, 2, 100);
        bool is_done = false;

        for (int i = 0; n > 0 && i < 2 && !is_done; i++) {
            ssize_t got;

            if (fds[i].revents == 0) {
                continue;
            }
            got = read(fds[i].fd, buf, sizeof(buf));
            for (ssize_t off = 0; got > 0 && off < got;) {
                ssize_t w = write(i == 0 ? pp->b : pp->a, buf + off, (size_t)(got - off));

                if (w <= 0) {
                    got = -1;
                    break;
                }
                off += w;
            }
            is_done = got <= 0;
        }
        if (n < 0 || is_done) {
            break;
        }
    }
    close(pp->a);
    close(pp->b);
    free(pp);
    return NULL;
}

static int connect_port(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void *proxy_main(void *arg)
{
    struct proxy *px = arg;

    while (!atomic_load(&px->is_stopping)) {
        struct pollfd pfd = {.fd = px->listen_fd, .events = POLLIN};
        struct proxy_pair *pp;
        int client, backend;

        if (poll(&pfd, 1, 100) <= 0) {
            continue;
        }
        client = accept4(px->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (client < 0) {
            continue;
        }
        backend = connect_port(atomic_load(&px->backend_port));
        pthread_mutex_lock(&px->lock);
        if (backend < 0 || px->n_conns == PROXY_MAX_CONNS) {
            pthread_mutex_unlock(&px->lock);
            close(client);
            if (backend >= 0) {
                close(backend);
            }
            continue;
        }
        pp = malloc(sizeof(*pp));
        ASSERT_TRUE(pp != NULL);
        *pp = (struct proxy_pair){.px = px, .a = client, .b = backend};
        ASSERT_EQ_INT(pthread_create(&px->conns[px->n_conns++], NULL, proxy_conn_main, pp), 0);
        pthread_mutex_unlock(&px->lock);
    }
    return NULL;
}

static void proxy_start(struct proxy *px, int backend_port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);

    memset(px, 0, sizeof(*px));
    atomic_init(&px->backend_port, backend_port);
    atomic_init(&px->is_stopping, false);
    pthread_mutex_init(&px->lock, NULL);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    px->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_TRUE(px->listen_fd >= 0);
    ASSERT_EQ_INT(bind(px->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ASSERT_EQ_INT(listen(px->listen_fd, 64), 0);
    ASSERT_EQ_INT(getsockname(px->listen_fd, (struct sockaddr *)&sa, &len), 0);
    px->port = ntohs(sa.sin_port);
    ASSERT_EQ_INT(pthread_create(&px->thread, NULL, proxy_main, px), 0);
}

static void proxy_stop(struct proxy *px)
{
    atomic_store(&px->is_stopping, true);
    pthread_join(px->thread, NULL);
    for (int i = 0; i < px->n_conns; i++) {
        pthread_join(px->conns[i], NULL);
    }
    close(px->listen_fd);
    pthread_mutex_destroy(&px->lock);
}

/* The HTTP port in a private server's env file. */
static int clickhouse_port(const char *dir)
{
    char *path = test_path(dir, "env");
    FILE *fp = fopen(path, "r");
    char line[256];
    int port = 0;

    ASSERT_TRUE(fp != NULL);
    while (fgets(line, sizeof(line), fp) != NULL) {
        if (strncmp(line, "CLICKHOUSE_HTTP_PORT=", 21) == 0) {
            port = atoi(line + 21);
        }
    }
    fclose(fp);
    free(path);
    ASSERT_TRUE(port > 0);
    return port;
}

/* Runs scripts/clickhouse.sh verb dir; fails the test unless it exits 0. */
static void clickhouse_script(const char *verb, const char *dir)
{
    const char *src = getenv("SLUICE_SOURCE_DIR");
    char *script = test_asprintf("%s/scripts/clickhouse.sh", src != NULL ? src : ".");
    char *argv[] = {"bash", script, (char *)verb, (char *)dir, NULL};
    char *bash = "/bin/bash";
    struct test_proc p;

    argv[0] = bash;
    test_proc_run(&p, argv, NULL, NULL);
    if (p.status != 0) {
        TEST_FAIL("clickhouse.sh %s %s: exit %d: %s", verb, dir, p.status, p.err);
    }
    test_proc_fini(&p);
    free(script);
}

/* The pid in dir/pid (the private server), for the abort handler. */
static pid_t clickhouse_pid(const char *dir)
{
    char *path = test_path(dir, "pid");
    FILE *fp = fopen(path, "r");
    long pid = 0;

    if (fp != NULL) {
        if (fscanf(fp, "%ld", &pid) != 1) {
            pid = 0;
        }
        fclose(fp);
    }
    free(path);
    return (pid_t)pid;
}

static void test_loader_clickhouse_down_resumes(void)
{
    const int down_ms = 10000; /* the 30 s, shortened to keep CI bounded */
    struct fixture f;
    struct ingestd x;
    struct proxy px;
    char *ch_dir, *spool;
    char state[64];
    double retries_before, retries_after;
    pid_t ch_pid;
    long t0;

    fixture_init(&f, "chdown", true);
    ch_dir = test_path(f.dir, "clickhouse");
    clickhouse_script("start", ch_dir);
    ch_pid = clickhouse_pid(ch_dir);
    live_add(ch_pid);
    proxy_start(&px, clickhouse_port(ch_dir));
    /* The test's client and the daemon both reach the private server through the proxy. */
    snprintf(f.ch_url, sizeof(f.ch_url), "http://127.0.0.1:%d", px.port);
    {
        struct sl_ch_settings client = f.ch_settings;
        struct sl_err err;

        sl_ch_destroy(f.ch);
        client.url = f.ch_url;
        client.database = NULL;
        ASSERT_OK(sl_ch_create(&f.ch, &client, &err), &err);
    }
    spool = test_path(f.dir, "spool");
    ingestd_start(&x, &f, spool,
                  (const char *const[]){"SLUICE_LOADER_BACKOFF_MAX_MS=2000",
                                        "SLUICE_CLICKHOUSE_CONNECT_TIMEOUT_MS=500",
                                        "SLUICE_CLICKHOUSE_TIMEOUT_MS=5000", NULL});
    post_events(&f, &x, 0, 500, -1);
    ASSERT_EQ_INT(wait_events(&f, "", 500, LOAD_MS), 500);
    ASSERT_TRUE(wait_state(&x, "ok", 5000));

    clickhouse_script("stop", ch_dir);
    live_remove(ch_pid);
    /* The edge keeps taking events into Kafka meanwhile. */
    post_events(&f, &x, 500, 250, -1);
    ASSERT_TRUE(wait_state(&x, "clickhouse_down", 30000));
    retries_before = metric(&x, "sluice_loader_retries_total");
    post_events(&f, &x, 750, 250, -1);
    t0 = test_now_ms();
    /* For the whole outage the loader stays down, backs off, and logs the change once. */
    while (test_now_ms() - t0 < down_ms) {
        json_t *v = http_json(&x, "/health", 200);
        json_t *loader = json_object_get(v, "loader");

        ASSERT_EQ_STR(json_string_value(json_object_get(loader, "state")), "clickhouse_down");
        ASSERT_TRUE(json_is_string(json_object_get(loader, "last_error")));
        ASSERT_EQ_STR(json_string_value(json_object_get(v, "status")), "degraded");
        json_decref(v);
        usleep(500 * 1000);
    }
    retries_after = metric(&x, "sluice_loader_retries_total");
    fprintf(stderr, "note: %.0f half-open retries in %d ms of outage\n",
            retries_after - retries_before, down_ms);
    /* Backoff 250 ms doubling to 2 s: about 8 in 10 s; a hammering loop would do hundreds. */
    ASSERT_TRUE(retries_after - retries_before <= 15);
    ASSERT_EQ_INT(log_count(&x, "ClickHouse is unavailable"), 1);

    clickhouse_script("start", ch_dir);
    ch_pid = clickhouse_pid(ch_dir);
    live_add(ch_pid);
    atomic_store(&px.backend_port, clickhouse_port(ch_dir));
    ASSERT_EQ_INT(wait_events(&f, "", 1000, LOAD_MS), 1000);
    ASSERT_EQ_INT(test_ch_int(f.ch, "SELECT count() FROM %s.events FINAL", f.database), 1000);
    ASSERT_TRUE(wait_state(&x, "ok", 10000));
    ASSERT_EQ_INT(log_count(&x, "ClickHouse available again"), 1);
    ASSERT_EQ_STR(health_state(&x, state, sizeof(state)), "ok");
    ingestd_stop(&x);
    ingestd_fini(&x);
    /* The private server goes with its data; fixture_fini then drops the (never created)
     * database on the shared server. */
    clickhouse_script("stop", ch_dir);
    live_remove(ch_pid);
    proxy_stop(&px);
    snprintf(f.ch_url, sizeof(f.ch_url), "%s", test_env_require("SLUICE_TEST_CLICKHOUSE_URL"));
    {
        struct sl_ch_settings client = f.ch_settings;
        struct sl_err err;

        sl_ch_destroy(f.ch);
        client.database = NULL;
        ASSERT_OK(sl_ch_create(&f.ch, &client, &err), &err);
    }
    free(spool);
    free(ch_dir);
    fixture_fini(&f);
}

static void test_loader_poison_dead_letters_and_replay(void)
{
    struct fixture f;
    struct ingestd x;
    struct produced prod;
    struct dead dead[3];
    char *spool;
    char *good[3];
    char *poison_ch;
    const char *values[5];
    char want[32];
    json_t *v;

    fixture_init(&f, "poison", true);
    spool = test_path(f.dir, "spool");
    ingestd_start(&x, &f, spool, (const char *const[]){"SLUICE_LOADER_BATCH_AGE_MS=500", NULL});
    wait_schema(&f);
    /* The rejection an operator can fix: a column whose expression refuses a value. */
    test_ch_exec(f.ch, "ALTER TABLE %s.events ADD COLUMN reject_poison UInt8 MATERIALIZED "
                 "throwIf(name = 'poison-ch')", f.database);
    for (int i = 0; i < 3; i++) {
        good[i] = normalized(&f, i, "good");
    }
    poison_ch = normalized(&f, 10, "poison-ch");
    values[0] = good[0];
    values[1] = "{not json";
    values[2] = good[1];
    values[3] = poison_ch;
    values[4] = good[2];
    produce(&f, values, 5, &prod);

    /* Both poisons are dead letters with their reasons and origin; the neighbours load. */
    read_dead(&f, 2, dead);
    ASSERT_EQ_INT(wait_events(&f, "", 3, LOAD_MS), 3);
    ASSERT_EQ_INT(test_ch_int(f.ch, "SELECT count() FROM %s.events WHERE name = 'poison-ch'",
                              f.database), 0);
    for (int i = 0; i < 2; i++) {
        bool is_json_poison = strcmp(dead[i].value, "{not json") == 0;
        int64_t want_offset = prod.offsets[is_json_poison ? 1 : 3];

        ASSERT_TRUE(is_json_poison || strstr(dead[i].value, "poison-ch") != NULL);
        ASSERT_CONTAINS(dead[i].reason, is_json_poison ? "cannot encode" : "395");
        ASSERT_EQ_STR(dead[i].topic, f.topic);
        ASSERT_EQ_STR(dead[i].partition, "0");
        snprintf(want, sizeof(want), "%lld", (long long)want_offset);
        ASSERT_EQ_STR(dead[i].orig_offset, want);
        ASSERT_EQ_STR(dead[i].tenant, f.tenant_id);
    }
    ASSERT_TRUE(wait_metric(&x, "sluice_loader_dead_letters_total{reason=\"encode\"}", 1) == 1);
    ASSERT_TRUE(wait_metric(&x, "sluice_loader_dead_letters_total{reason=\"rejected\"}", 1) ==
                1);
    v = sluice_dlq(&f, NULL, (const char *const[]){"list", NULL}, 0);
    ASSERT_EQ_INT(json_array_size(v), 2);
    ASSERT_TRUE(json_is_false(json_object_get(json_array_get(v, 0), "replayed")));
    ASSERT_EQ_STR(json_string_value(json_object_get(json_array_get(v, 0), "original_topic")),
                  f.topic);
    json_decref(v);

    /* The fix, then replay: the rejected event loads; the unparseable one cannot. */
    test_ch_exec(f.ch, "ALTER TABLE %s.events DROP COLUMN reject_poison", f.database);
    v = sluice_dlq(&f, NULL, (const char *const[]){"replay", NULL}, 0);
    ASSERT_EQ_INT(json_integer_value(json_object_get(v, "replayed")), 2);
    ASSERT_EQ_INT(json_integer_value(json_object_get(v, "failed")), 0);
    json_decref(v);
    ASSERT_EQ_INT(wait_events(&f, "WHERE name = 'poison-ch'", 1, LOAD_MS), 1);
    read_dead(&f, 3, dead);
    ASSERT_EQ_STR(dead[2].value, "{not json");
    ASSERT_CONTAINS(dead[2].reason, "cannot encode");
    ASSERT_EQ_STR(dead[2].topic, f.topic); /* its new place in the events topic */
    ASSERT_TRUE(strcmp(dead[2].partition, "0") != 0 ||
                strtoll(dead[2].orig_offset, NULL, 10) != prod.offsets[1]);
    ASSERT_TRUE(wait_metric(&x, "sluice_loader_dead_letters_total{reason=\"encode\"}", 2) == 2);
    ASSERT_EQ_INT(test_ch_int(f.ch, "SELECT uniqExact(id) FROM %s.events", f.database), 4);

    /* Nothing is replayed twice: only the new dead letter is pending. */
    v = sluice_dlq(&f, NULL, (const char *const[]){"list", NULL}, 0);
    ASSERT_EQ_INT(json_array_size(v), 1);
    ASSERT_EQ_STR(json_string_value(json_object_get(json_array_get(v, 0), "value")),
                  "{not json");
    json_decref(v);
    v = sluice_dlq(&f, NULL, (const char *const[]){"list", "--all", NULL}, 0);
    ASSERT_EQ_INT(json_array_size(v), 3);
    ASSERT_TRUE(json_is_true(json_object_get(json_array_get(v, 0), "replayed")));
    ASSERT_TRUE(json_is_false(json_object_get(json_array_get(v, 2), "replayed")));
    json_decref(v);
    v = sluice_dlq(&f, NULL, (const char *const[]){"replay", "--dry-run", NULL}, 0);
    ASSERT_EQ_INT(json_integer_value(json_object_get(v, "seen")), 1);
    ASSERT_EQ_INT(json_integer_value(json_object_get(v, "replayed")), 0);
    json_decref(v);
    v = sluice_dlq(&f, NULL, (const char *const[]){"list", NULL}, 0);
    ASSERT_EQ_INT(json_array_size(v), 1);
    json_decref(v);

    ingestd_stop(&x);
    ingestd_fini(&x);
    for (int i = 0; i < 3; i++) {
        free(good[i]);
    }
    free(poison_ch);
    free(spool);
    fixture_fini(&f);
}

/* Lines in a file (0 when it is missing). */
static int file_lines(const char *path)
{
    FILE *fp = fopen(path, "r");
    int n = 0, c;

    if (fp == NULL) {
        return 0;
    }
    while ((c = fgetc(fp)) != EOF) {
        n += c == '\n';
    }
    fclose(fp);
    return n;
}

static void test_loader_spool_embedded_end_to_end(void)
{
    struct fixture f;
    struct ingestd x;
    char *spool, *dead_file, *replayed_file;
    char sql[512], line[256], id[37];
    json_t *v;
    long deadline;

    fixture_init(&f, "spool", false);
    spool = test_path(f.dir, "spool");
    dead_file = test_asprintf("%s/dead-letters/dead-letters.jsonl", spool);
    replayed_file = test_asprintf("%s/dead-letters/replayed.jsonl", spool);
    ingestd_start(&x, &f, spool, NULL);
    wait_schema(&f);
    test_ch_exec(f.ch, "ALTER TABLE %s.events ADD COLUMN reject_poison UInt8 MATERIALIZED "
                 "throwIf(name = 'poison-ch')", f.database);
    post_events(&f, &x, 0, 100, -1);
    post_events(&f, &x, 100, 101, 150); /* index 150 is rejected by ClickHouse */
    ASSERT_EQ_INT(wait_events(&f, "", 200, LOAD_MS), 200);
    deadline = test_now_ms() + 10000;
    while (file_lines(dead_file) < 1) {
        ASSERT_TRUE(test_now_ms() < deadline);
        usleep(100 * 1000);
    }
    ASSERT_EQ_INT(file_lines(dead_file), 1);
    ASSERT_EQ_INT(test_ch_int(f.ch, "SELECT count() FROM %s.events", f.database), 200);
    event_id(&f, 151, id);
    snprintf(sql, sizeof(sql), "SELECT name, tenant_id FROM %s.events WHERE id = toUUID('%s') "
             "FORMAT TabSeparated", f.database, id);
    test_ch_line(f.ch, line, sizeof(line), "%s", sql);
    ASSERT_TRUE(strncmp(line, "e151\t", 5) == 0);
    {
        /* The spool is released once loaded. */
        json_t *loader;
        long long pending = -1;

        deadline = test_now_ms() + 10000;
        while (pending != 0 && test_now_ms() < deadline) {
            v = http_json(&x, "/stats", 200);
            pending = json_integer_value(json_object_get(json_object_get(v, "spool"),
                                                         "records_pending"));
            loader = json_object_get(v, "loader");
            ASSERT_EQ_STR(json_string_value(json_object_get(loader, "mode")), "spool");
            json_decref(v);
            usleep(100 * 1000);
        }
        ASSERT_EQ_INT(pending, 0);
        ASSERT_EQ_INT(wait_loader_stat(&x, "rows_loaded", 200), 200);
        ASSERT_EQ_INT(wait_loader_stat(&x, "dead_letters", 1), 1);
    }
    v = sluice_dlq(&f, spool, (const char *const[]){"list", NULL}, 0);
    ASSERT_EQ_INT(json_array_size(v), 1);
    ASSERT_CONTAINS(json_string_value(json_object_get(json_array_get(v, 0), "reason")), "395");
    ASSERT_EQ_STR(json_string_value(json_object_get(json_array_get(v, 0), "tenant_id")),
                  f.tenant_id);
    json_decref(v);
    /* Replay before the fix: still rejected, stays a dead letter. */
    v = sluice_dlq(&f, spool, (const char *const[]){"replay", NULL}, 0);
    ASSERT_EQ_INT(json_integer_value(json_object_get(v, "replayed")), 0);
    ASSERT_EQ_INT(json_integer_value(json_object_get(v, "still_dead")), 1);
    json_decref(v);
    ASSERT_EQ_INT(file_lines(dead_file), 1);
    /* The fix, then replay: loaded straight into ClickHouse, moved to replayed.jsonl. */
    test_ch_exec(f.ch, "ALTER TABLE %s.events DROP COLUMN reject_poison", f.database);
    v = sluice_dlq(&f, spool, (const char *const[]){"replay", NULL}, 0);
    ASSERT_EQ_INT(json_integer_value(json_object_get(v, "replayed")), 1);
    json_decref(v);
    ASSERT_EQ_INT(file_lines(dead_file), 0);
    ASSERT_EQ_INT(file_lines(replayed_file), 1);
    ASSERT_EQ_INT(test_ch_int(f.ch, "SELECT count() FROM %s.events WHERE name = 'poison-ch'",
                              f.database), 1);
    v = sluice_dlq(&f, spool, (const char *const[]){"list", NULL}, 0);
    ASSERT_EQ_INT(json_array_size(v), 0);
    json_decref(v);
    ingestd_stop(&x);
    ingestd_fini(&x);
    free(dead_file);
    free(replayed_file);
    free(spool);
    fixture_fini(&f);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_loader_roles_setting),
        TEST_CASE(test_loader_kafka_end_to_end),
        TEST_CASE(test_loader_kill9_no_loss),
        TEST_CASE(test_loader_clickhouse_down_resumes),
        TEST_CASE(test_loader_poison_dead_letters_and_replay),
        TEST_CASE(test_loader_spool_embedded_end_to_end),
        {NULL, NULL},
    };
    int rc;

    signal(SIGABRT, on_abort);
    sl_alloc_init_jansson();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = test_main(argc, argv, cases);
    curl_global_cleanup();
    return rc;
}

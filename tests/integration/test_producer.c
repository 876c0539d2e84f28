/*
 * The edge's Kafka producer (ingest/producer.c): its settings table and key helper; groups
 * of messages through the real broker (scripts/kafka.sh), each group's callback once with
 * every message delivered, and every message read back exactly once with its key and both
 * headers; partition key strategies; faults injected with librdkafka's mock cluster
 * (transient produce errors, a lost acknowledgement, a message too large, a broker down past
 * the delivery timeout, a full queue, destroy with messages pending); an unreachable broker
 * address; allocation failures.
 * The real-broker cases need SLUICE_TEST_KAFKA_BROKERS (they skip without it unless
 * SLUICE_TEST_REQUIRE_STACK=1); the others need nothing.
 */
#include <arpa/inet.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "err.h"
#include "metrics.h"
#include "producer.h"
#include "test.h"

#define DEADLINE_MS 60000
#define MAX_GROUPS 64
#define MAX_MSGS 100
#define VALUE_BYTES 300
#define VALUE_MAX 512
#define KEY_MAX 64
#define MAX_PARTITIONS 16
#define PRODUCE_API_KEY 0 /* RD_KAFKAP_Produce: not in the public headers */

/* ------------------------------------------------------------------------------------------
 * Callback records: one per group, all on a board the callbacks update under its lock.
 */

struct board;

struct group {
    struct board *b;
    int calls;            /* times the done callback ran */
    bool off_main_thread; /* it ran on another thread than the test's */
    size_t n;
    size_t n_delivered;
    size_t n_failed;
    size_t n_reason[8]; /* failures per reason, index of reason_index() */
    int kafka_err;      /* of the last failure */
    char error[128];    /* text of the last failure */
    size_t failed_index[MAX_MSGS];
};

struct board {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t main_thread;
    int done; /* callbacks run, all groups */
    struct group g[MAX_GROUPS];
};

static const char *const reasons[] = {"timeout",   "queue_full", "purged", "unknown_topic",
                                      "too_large", "fatal",      "other"};

static size_t reason_index(const char *reason)
{
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        if (strcmp(reason, reasons[i]) == 0) {
            return i;
        }
    }
    TEST_FAIL("unknown failure reason \"%s\"", reason);
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct board *board_new(void)
{
    struct board *b = calloc(1, sizeof(*b));
    pthread_condattr_t attr;

    ASSERT_TRUE(b != NULL);
    pthread_mutex_init(&b->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cond, &attr);
    pthread_condattr_destroy(&attr);
    b->main_thread = pthread_self();
    for (int i = 0; i < MAX_GROUPS; i++) {
        b->g[i].b = b;
    }
    return b;
}

static void board_free(struct board *b)
{
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

static void on_done(void *user, const struct ingest_producer_result *res)
{
    struct group *g = user;
    struct board *b = g->b;

    pthread_mutex_lock(&b->lock);
    g->calls++;
    g->off_main_thread = !pthread_equal(pthread_self(), b->main_thread);
    g->n = res->n;
    g->n_delivered = res->n_delivered;
    g->n_failed = res->n_failed;
    if (res->n_delivered + res->n_failed != res->n ||
        (res->n_failed > 0) != (res->failures != NULL)) {
        TEST_FAIL("inconsistent result: n %zu, delivered %zu, failed %zu", res->n,
                  res->n_delivered, res->n_failed);
    }
    for (size_t i = 0; i < res->n_failed; i++) {
        const struct ingest_producer_failure *f = &res->failures[i];

        ASSERT_TRUE(f->index < res->n);
        ASSERT_TRUE(i == 0 || f->index > res->failures[i - 1].index);
        ASSERT_TRUE(f->kafka_err != 0 && f->reason != NULL && f->error != NULL);
        g->n_reason[reason_index(f->reason)]++;
        g->kafka_err = f->kafka_err;
        snprintf(g->error, sizeof(g->error), "%s", f->error);
        if (i < MAX_MSGS) {
            g->failed_index[i] = f->index;
        }
    }
    b->done++;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

/* Waits until `want` callbacks ran in all (or the deadline passed); returns how many ran. */
static int board_wait(struct board *b, int want, int timeout_ms)
{
    struct timespec deadline;
    int done;

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&b->lock);
    while (b->done < want && pthread_cond_timedwait(&b->cond, &b->lock, &deadline) == 0) {
    }
    done = b->done;
    pthread_mutex_unlock(&b->lock);
    return done;
}

static int board_done(struct board *b)
{
    int done;

    pthread_mutex_lock(&b->lock);
    done = b->done;
    pthread_mutex_unlock(&b->lock);
    return done;
}

static int group_calls(struct board *b, int i)
{
    int calls;

    pthread_mutex_lock(&b->lock);
    calls = b->g[i].calls;
    pthread_mutex_unlock(&b->lock);
    return calls;
}

/* Polls is_healthy until it equals want or the deadline passes; returns the last answer. */
static bool wait_healthy(struct ingest_producer *p, bool want, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    struct timespec tick = {.tv_sec = 0, .tv_nsec = 10 * 1000000};

    while (ingest_producer_is_healthy(p) != want && now_ms() < deadline) {
        nanosleep(&tick, NULL);
    }
    return ingest_producer_is_healthy(p);
}

/* ------------------------------------------------------------------------------------------
 * Messages and settings.
 */

struct msgset {
    size_t n;
    struct ingest_producer_msg msgs[MAX_MSGS];
    char keys[MAX_MSGS][KEY_MAX];
    char tenants[MAX_MSGS][32];
    char values[MAX_MSGS][VALUE_MAX];
};

/* Message i of group g: tenant "tenant-<i % 3>", keyed by the tenant, value of VALUE_BYTES
 * starting "g<group>-m<i>|". */
static void msgset_fill(struct msgset *ms, int group, size_t n)
{
    ASSERT_TRUE(n <= MAX_MSGS);
    ms->n = n;
    for (size_t i = 0; i < n; i++) {
        int len;

        snprintf(ms->tenants[i], sizeof(ms->tenants[i]), "tenant-%zu", i % 3);
        snprintf(ms->keys[i], sizeof(ms->keys[i]), "%s", ms->tenants[i]);
        len = snprintf(ms->values[i], sizeof(ms->values[i]), "g%02d-m%03zu|", group, i);
        memset(ms->values[i] + len, 'a' + (int)(i % 26), VALUE_BYTES - (size_t)len);
        ms->values[i][VALUE_BYTES] = '\0';
        ms->msgs[i] = (struct ingest_producer_msg){
            .key = ms->keys[i],
            .key_len = strlen(ms->keys[i]),
            .value = ms->values[i],
            .value_len = VALUE_BYTES,
            .tenant_id = ms->tenants[i],
        };
    }
}

/* The caller's buffers may go after send: scribble over them. */
static void msgset_scribble(struct msgset *ms)
{
    memset(ms->keys, '#', sizeof(ms->keys));
    memset(ms->tenants, '#', sizeof(ms->tenants));
    memset(ms->values, '#', sizeof(ms->values));
}

/* Loads the producer's settings from its table: defaults, then env (NULL-terminated). */
static void settings_load(struct ingest_producer_settings *s, char *const *env)
{
    struct sl_cfg_section sec =
        SL_CFG_SECTION("kafka", ingest_producer_cfg_opts, ingest_producer_cfg_n_opts, s);
    struct sl_err err;
    char *const none[] = {NULL};

    memset(s, 0, sizeof(*s));
    ASSERT_OK(sl_cfg_load(&sec, 1, NULL, env != NULL ? env : none, &err), &err);
}

static void settings_fini(struct ingest_producer_settings *s)
{
    struct sl_cfg_section sec =
        SL_CFG_SECTION("kafka", ingest_producer_cfg_opts, ingest_producer_cfg_n_opts, s);

    sl_cfg_fini(&sec, 1);
}

static struct ingest_producer *producer_new(const char *brokers,
                                            const struct ingest_producer_settings *s,
                                            struct sl_metrics *metrics)
{
    struct ingest_producer *p = NULL;
    struct sl_err err;

    ASSERT_OK(ingest_producer_create(&p, brokers, s, metrics, &err), &err);
    ASSERT_TRUE(p != NULL);
    return p;
}

static void send_ok(struct ingest_producer *p, const struct msgset *ms, struct group *g)
{
    struct sl_err err;

    ASSERT_OK(ingest_producer_send(p, ms->msgs, ms->n, on_done, g, &err), &err);
}

/* "127.0.0.1:PORT" of a port nothing listens on (bound, then closed). */
static void closed_port(char *out, size_t len)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    socklen_t alen = sizeof(addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    ASSERT_TRUE(fd >= 0);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ_INT(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    ASSERT_EQ_INT(getsockname(fd, (struct sockaddr *)&addr, &alen), 0);
    snprintf(out, len, "127.0.0.1:%d", ntohs(addr.sin_port));
    close(fd);
}

static void unique_topic(char *out, size_t len, const char *what)
{
    static int seq;

    snprintf(out, len, "sluice.test.producer.%s.%ld.%lld.%d", what, (long)getpid(),
             (long long)time(NULL), seq++);
}

/* ------------------------------------------------------------------------------------------
 * Plain librdkafka clients for checking what landed in a topic.
 */

static void conf_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char errstr[512];

    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        TEST_FAIL("rd_kafka_conf_set(%s=%s): %s", name, value, errstr);
    }
}

static rd_kafka_t *client_new(rd_kafka_type_t type, rd_kafka_conf_t *conf)
{
    char errstr[512];
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));

    if (rk == NULL) {
        TEST_FAIL("rd_kafka_new: %s", errstr);
    }
    return rk;
}

/* Creates topic with `partitions` partitions through the Admin API. */
static void create_topic(const char *brokers, const char *topic, int partitions)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_NewTopic_t *nt = NULL;
    rd_kafka_event_t *ev = NULL;
    const rd_kafka_topic_result_t **res = NULL;
    size_t n = 0;
    char errstr[256];
    int64_t deadline = now_ms() + DEADLINE_MS;

    conf_set(conf, "bootstrap.servers", brokers);
    rk = client_new(RD_KAFKA_PRODUCER, conf);
    q = rd_kafka_queue_new(rk);
    nt = rd_kafka_NewTopic_new(topic, partitions, 1, errstr, sizeof(errstr));
    ASSERT_TRUE(nt != NULL);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_NewTopic_destroy(nt);
    while (ev == NULL && now_ms() < deadline) {
        ev = rd_kafka_queue_poll(q, 200);
    }
    ASSERT_TRUE(ev != NULL);
    if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        TEST_FAIL("CreateTopics: %s", rd_kafka_event_error_string(ev));
    }
    res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    ASSERT_EQ_INT(n, 1);
    if (rd_kafka_topic_result_error(res[0]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        TEST_FAIL("CreateTopics %s: %s", topic, rd_kafka_topic_result_error_string(res[0]));
    }
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

static void delete_topic(const char *brokers, const char *topic)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_DeleteTopic_t *del = rd_kafka_DeleteTopic_new(topic);
    rd_kafka_event_t *ev = NULL;
    int64_t deadline = now_ms() + DEADLINE_MS;

    conf_set(conf, "bootstrap.servers", brokers);
    rk = client_new(RD_KAFKA_PRODUCER, conf);
    q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteTopics(rk, &del, 1, NULL, q);
    rd_kafka_DeleteTopic_destroy(del);
    while (ev == NULL && now_ms() < deadline) {
        ev = rd_kafka_queue_poll(q, 200);
    }
    ASSERT_TRUE(ev != NULL);
    ASSERT_EQ_INT(rd_kafka_event_error(ev), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

/* One message as read back from the topic. */
struct consumed {
    int partition;
    bool has_key;
    char key[KEY_MAX];
    char value[VALUE_MAX];
    char tenant[KEY_MAX];
    char schema[8];
    int n_headers;
};

static void header_copy(rd_kafka_headers_t *hdrs, const char *name, char *out, size_t len)
{
    const void *val = NULL;
    size_t size = 0;

    out[0] = '\0';
    if (hdrs != NULL && rd_kafka_header_get_last(hdrs, name, &val, &size) ==
                            RD_KAFKA_RESP_ERR_NO_ERROR && size < len) {
        memcpy(out, val, size);
        out[size] = '\0';
    }
}

/*
 * Reads every partition of topic from the beginning (assign, no group rebalance) until
 * `want` messages came, and checks the log holds exactly `want` records, so nothing was
 * written twice. Fills out[0..want).
 */
static void consume_all(const char *brokers, const char *topic, size_t want,
                        struct consumed *out)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_t *rkt = NULL;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    char group[128];
    int64_t deadline = now_ms() + DEADLINE_MS;
    int64_t stored = 0;
    size_t got = 0;
    int n_parts;

    snprintf(group, sizeof(group), "sluice-test-producer-%ld-%lld", (long)getpid(),
             (long long)now_ms());
    conf_set(conf, "bootstrap.servers", brokers);
    conf_set(conf, "group.id", group);
    conf_set(conf, "enable.auto.commit", "false");
    rk = client_new(RD_KAFKA_CONSUMER, conf);
    rkt = rd_kafka_topic_new(rk, topic, NULL);
    ASSERT_EQ_INT(rd_kafka_metadata(rk, 0, rkt, &md, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_EQ_INT(md->topic_cnt, 1);
    ASSERT_EQ_INT(md->topics[0].err, RD_KAFKA_RESP_ERR_NO_ERROR);
    n_parts = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    ASSERT_TRUE(n_parts > 0 && n_parts <= MAX_PARTITIONS);

    parts = rd_kafka_topic_partition_list_new(n_parts);
    for (int i = 0; i < n_parts; i++) {
        int64_t low = -1, high = -1;

        ASSERT_EQ_INT(rd_kafka_query_watermark_offsets(rk, topic, i, &low, &high, 10000),
                      RD_KAFKA_RESP_ERR_NO_ERROR);
        stored += high - low;
        rd_kafka_topic_partition_list_add(parts, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    ASSERT_EQ_INT(stored, want);
    ASSERT_EQ_INT(rd_kafka_assign(rk, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(parts);

    while (got < want && now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        rd_kafka_headers_t *hdrs = NULL;
        struct consumed *c = &out[got];

        if (m == NULL) {
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            TEST_FAIL("consumer error: %s", rd_kafka_message_errstr(m));
        }
        memset(c, 0, sizeof(*c));
        c->partition = m->partition;
        c->has_key = m->key != NULL;
        ASSERT_TRUE(m->key_len < sizeof(c->key) && m->len < sizeof(c->value));
        if (m->key != NULL) {
            memcpy(c->key, m->key, m->key_len);
        }
        memcpy(c->value, m->payload, m->len);
        if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            c->n_headers = (int)rd_kafka_header_cnt(hdrs);
        }
        header_copy(hdrs, "sluice-tenant", c->tenant, sizeof(c->tenant));
        header_copy(hdrs, "sluice-schema", c->schema, sizeof(c->schema));
        got++;
        rd_kafka_message_destroy(m);
    }
    ASSERT_EQ_INT(got, want);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

/* Checks what consume_all read against groups sent with msgset_fill: each once, intact. */
static void check_groups_landed(const struct consumed *c, size_t total, int n_groups,
                                const size_t *group_sizes)
{
    static int seen[MAX_GROUPS][MAX_MSGS];

    memset(seen, 0, sizeof(seen));
    for (size_t k = 0; k < total; k++) {
        int g = -1;
        size_t i = 0;
        char want_tenant[32];

        if (sscanf(c[k].value, "g%d-m%zu|", &g, &i) != 2 || g < 0 || g >= n_groups ||
            i >= group_sizes[g]) {
            TEST_FAIL("unexpected message \"%.40s\"", c[k].value);
        }
        ASSERT_EQ_INT(strlen(c[k].value), VALUE_BYTES);
        ASSERT_EQ_INT(c[k].value[VALUE_BYTES - 1], 'a' + (int)(i % 26));
        snprintf(want_tenant, sizeof(want_tenant), "tenant-%zu", i % 3);
        ASSERT_TRUE(c[k].has_key);
        ASSERT_EQ_STR(c[k].key, want_tenant);
        ASSERT_EQ_INT(c[k].n_headers, 2);
        ASSERT_EQ_STR(c[k].tenant, want_tenant);
        ASSERT_EQ_STR(c[k].schema, "1");
        seen[g][i]++;
    }
    for (int g = 0; g < n_groups; g++) {
        for (size_t i = 0; i < group_sizes[g]; i++) {
            if (seen[g][i] != 1) {
                TEST_FAIL("group %d message %zu landed %d times, want 1", g, i, seen[g][i]);
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------
 * The mock cluster: one broker, its own client handle, the topic made with 3 partitions.
 */

struct mock {
    rd_kafka_t *rk;
    rd_kafka_mock_cluster_t *mc;
    char brokers[256];
};

static void mock_start(struct mock *m, const char *topic)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    /* The cluster's own handle has no brokers to talk to: keep its notice about it quiet. */
    conf_set(conf, "log_level", "4");
    m->rk = client_new(RD_KAFKA_PRODUCER, conf);
    m->mc = rd_kafka_mock_cluster_new(m->rk, 1);
    ASSERT_TRUE(m->mc != NULL);
    snprintf(m->brokers, sizeof(m->brokers), "%s", rd_kafka_mock_cluster_bootstraps(m->mc));
    ASSERT_EQ_INT(rd_kafka_mock_topic_create(m->mc, topic, 3, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
}

static void mock_stop(struct mock *m)
{
    rd_kafka_mock_cluster_destroy(m->mc);
    rd_kafka_destroy(m->rk);
}

/* Records in topic's log, summed over its partitions. */
static int64_t log_records(const char *brokers, const char *topic, int partitions)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    int64_t stored = 0;

    conf_set(conf, "bootstrap.servers", brokers);
    rk = client_new(RD_KAFKA_PRODUCER, conf);
    for (int i = 0; i < partitions; i++) {
        int64_t low = -1, high = -1;

        ASSERT_EQ_INT(rd_kafka_query_watermark_offsets(rk, topic, i, &low, &high, 10000),
                      RD_KAFKA_RESP_ERR_NO_ERROR);
        stored += high - low;
    }
    rd_kafka_destroy(rk);
    return stored;
}

/* Sends one group and waits for its callback with everything delivered. */
static void send_and_expect_delivered(struct ingest_producer *p, struct board *b, int gi,
                                      size_t n)
{
    struct msgset *ms = calloc(1, sizeof(*ms));
    int want = board_done(b) + 1;

    ASSERT_TRUE(ms != NULL);
    msgset_fill(ms, gi, n);
    send_ok(p, ms, &b->g[gi]);
    free(ms);
    ASSERT_EQ_INT(board_wait(b, want, DEADLINE_MS), want);
    ASSERT_EQ_INT(b->g[gi].calls, 1);
    if (b->g[gi].n_delivered != n) {
        TEST_FAIL("group %d: %zu of %zu delivered, last error: %s", gi, b->g[gi].n_delivered,
                  n, b->g[gi].error);
    }
}

/* ------------------------------------------------------------------------------------------
 * Cases without a broker.
 */

static void test_producer_settings_table(void)
{
    struct ingest_producer_settings s;
    struct sl_cfg_section sec =
        SL_CFG_SECTION("kafka", ingest_producer_cfg_opts, ingest_producer_cfg_n_opts, &s);
    char *const bad_codec[] = {"SLUICE_KAFKA_COMPRESSION=brotli", NULL};
    char *const bad_topic[] = {"SLUICE_KAFKA_TOPIC=no spaces", NULL};
    char *const bad_key[] = {"SLUICE_KAFKA_PARTITION_KEY=user", NULL};
    char *const set[] = {"SLUICE_KAFKA_LINGER_MS=7", "SLUICE_KAFKA_BATCH_BYTES=64K",
                         "SLUICE_KAFKA_PARTITION_KEY=session", NULL};
    struct sl_err err;

    settings_load(&s, NULL);
    ASSERT_EQ_STR(s.topic, "sluice.events");
    ASSERT_EQ_STR(s.compression, "lz4");
    ASSERT_EQ_INT(s.linger_ms, 5);
    ASSERT_EQ_INT(s.batch_messages, 10000);
    ASSERT_EQ_INT(s.batch_bytes, 1048576);
    ASSERT_EQ_INT(s.delivery_timeout_ms, 10000);
    ASSERT_EQ_INT(s.max_inflight_messages, 100000);
    ASSERT_EQ_STR(s.partition_key, "tenant");
    ASSERT_EQ_STR(s.client_id, "sluice-ingest");
    settings_fini(&s);

    settings_load(&s, set);
    ASSERT_EQ_INT(s.linger_ms, 7);
    ASSERT_EQ_INT(s.batch_bytes, 65536);
    ASSERT_EQ_STR(s.partition_key, "session");
    settings_fini(&s);

    memset(&s, 0, sizeof(s));
    ASSERT_EQ_INT(sl_cfg_load(&sec, 1, NULL, bad_codec, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "SLUICE_KAFKA_COMPRESSION");
    sl_cfg_fini(&sec, 1);
    memset(&s, 0, sizeof(s));
    ASSERT_EQ_INT(sl_cfg_load(&sec, 1, NULL, bad_topic, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "SLUICE_KAFKA_TOPIC");
    sl_cfg_fini(&sec, 1);
    memset(&s, 0, sizeof(s));
    ASSERT_EQ_INT(sl_cfg_load(&sec, 1, NULL, bad_key, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "SLUICE_KAFKA_PARTITION_KEY");
    sl_cfg_fini(&sec, 1);
}

static void test_producer_key_for(void)
{
    struct ingest_producer_settings s = {.partition_key = "tenant"};
    size_t len = 99;

    ASSERT_EQ_STR(ingest_producer_key_for(&s, "t1", "s1", &len), "t1");
    ASSERT_EQ_INT(len, 2);
    s.partition_key = "session";
    ASSERT_EQ_STR(ingest_producer_key_for(&s, "t1", "sess-9", &len), "sess-9");
    ASSERT_EQ_INT(len, 6);
    ASSERT_EQ_STR(ingest_producer_key_for(&s, "t1", "", &len), "t1");
    ASSERT_EQ_INT(len, 2);
    ASSERT_EQ_STR(ingest_producer_key_for(&s, "t1", NULL, &len), "t1");
    s.partition_key = "random";
    ASSERT_TRUE(ingest_producer_key_for(&s, "t1", "s1", &len) == NULL);
    ASSERT_EQ_INT(len, 0);
}

static void test_producer_create_refuses_bad_settings(void)
{
    struct ingest_producer_settings s;
    struct ingest_producer *p = (struct ingest_producer *)&s; /* must come back NULL */
    char *const slow[] = {"SLUICE_KAFKA_LINGER_MS=2000", "SLUICE_KAFKA_DELIVERY_TIMEOUT_MS=1000",
                          NULL};
    struct sl_err err;

    settings_load(&s, NULL);
    ASSERT_EQ_INT(ingest_producer_create(&p, "", &s, NULL, &err), SL_EINVAL);
    ASSERT_TRUE(p == NULL);
    ASSERT_CONTAINS(err.msg, "SLUICE_KAFKA_BROKERS");
    settings_fini(&s);

    settings_load(&s, slow);
    ASSERT_EQ_INT(ingest_producer_create(&p, "127.0.0.1:9", &s, NULL, &err), SL_EINVAL);
    ASSERT_TRUE(p == NULL);
    ASSERT_CONTAINS(err.msg, "SLUICE_KAFKA_LINGER_MS");
    ASSERT_CONTAINS(err.msg, "SLUICE_KAFKA_DELIVERY_TIMEOUT_MS");
    settings_fini(&s);

    ingest_producer_destroy(NULL);
    ASSERT_EQ_INT(rd_kafka_wait_destroyed(5000), 0);
}

/* Argument checks and n == 0, against a closed port (nothing is delivered). */
static void test_producer_send_checks_arguments(void)
{
    struct ingest_producer_settings s;
    struct ingest_producer *p = NULL;
    struct board *b = board_new();
    struct ingest_producer_msg bad = {.value = "x", .value_len = 1, .tenant_id = NULL};
    struct ingest_producer_msg bad_value = {.value = NULL, .value_len = 3, .tenant_id = "t"};
    struct ingest_producer_stats st;
    struct msgset *ms = NULL;
    char brokers[64];
    struct sl_err err;
    int rc;

    closed_port(brokers, sizeof(brokers));
    settings_load(&s, NULL);
    p = producer_new(brokers, &s, NULL);

    ASSERT_EQ_INT(ingest_producer_send(p, &bad, 1, on_done, &b->g[0], &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "tenant");
    ASSERT_EQ_INT(ingest_producer_send(p, &bad_value, 1, on_done, &b->g[0], &err), SL_EINVAL);
    ASSERT_EQ_INT(ingest_producer_send(p, &bad_value, 1, NULL, &b->g[0], &err), SL_EINVAL);

    /* Nothing to send still succeeds, and so runs its callback once, on the poll thread. */
    ASSERT_OK(ingest_producer_send(p, NULL, 0, on_done, &b->g[1], &err), &err);
    ASSERT_EQ_INT(board_wait(b, 1, DEADLINE_MS), 1);
    ASSERT_EQ_INT(b->g[1].calls, 1);
    ASSERT_EQ_INT(b->g[1].n, 0);
    ASSERT_TRUE(b->g[1].off_main_thread);
    ASSERT_EQ_INT(ingest_producer_flush(p, 1000), 0);

    /* No memory for the tracker: send fails and never calls back. */
    ms = calloc(1, sizeof(*ms));
    ASSERT_TRUE(ms != NULL);
    msgset_fill(ms, 2, 3);
    sl_alloc_fail_after(0);
    rc = ingest_producer_send(p, ms->msgs, ms->n, on_done, &b->g[2], &err);
    sl_alloc_fail_after(-1);
    ASSERT_EQ_INT(rc, SL_ENOMEM);
    free(ms);

    ingest_producer_stats(p, &st);
    ASSERT_EQ_INT(st.inflight_messages, 0);
    ASSERT_EQ_INT(st.delivered + st.failed + st.queue_full, 0);
    ingest_producer_destroy(p);
    ASSERT_EQ_INT(b->g[0].calls, 0);
    ASSERT_EQ_INT(b->g[1].calls, 1);
    ASSERT_EQ_INT(b->g[2].calls, 0);

    /* No memory for the producer itself. */
    p = (struct ingest_producer *)&s;
    sl_alloc_fail_after(0);
    rc = ingest_producer_create(&p, brokers, &s, NULL, &err);
    sl_alloc_fail_after(-1);
    ASSERT_EQ_INT(rc, SL_ENOMEM);
    ASSERT_TRUE(p == NULL);
    settings_fini(&s);
    board_free(b);
    ASSERT_EQ_INT(rd_kafka_wait_destroyed(5000), 0);
}

/* The real path to a port nothing listens on: failure after the delivery timeout. */
static void test_producer_unreachable_broker_fails_after_timeout(void)
{
    char *const env[] = {"SLUICE_KAFKA_DELIVERY_TIMEOUT_MS=1500", NULL};
    struct ingest_producer_settings s;
    struct ingest_producer *p = NULL;
    struct board *b = board_new();
    struct msgset *ms = calloc(1, sizeof(*ms));
    struct ingest_producer_stats st;
    char brokers[64];
    int64_t started;

    ASSERT_TRUE(ms != NULL);
    closed_port(brokers, sizeof(brokers));
    settings_load(&s, env);
    p = producer_new(brokers, &s, NULL);
    msgset_fill(ms, 0, 5);
    started = now_ms();
    send_ok(p, ms, &b->g[0]);
    msgset_scribble(ms);

    ASSERT_EQ_INT(board_wait(b, 1, DEADLINE_MS), 1);
    ASSERT_TRUE(now_ms() - started >= 1400);
    ASSERT_EQ_INT(b->g[0].calls, 1);
    ASSERT_EQ_INT(b->g[0].n, 5);
    ASSERT_EQ_INT(b->g[0].n_failed, 5);
    ASSERT_EQ_INT(b->g[0].n_reason[reason_index("timeout")], 5);
    ASSERT_EQ_INT(b->g[0].kafka_err, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT);
    ASSERT_TRUE(b->g[0].off_main_thread);
    ASSERT_TRUE(!wait_healthy(p, false, DEADLINE_MS));
    ingest_producer_stats(p, &st);
    ASSERT_EQ_INT(st.failed, 5);
    ASSERT_EQ_INT(st.inflight_messages, 0);

    started = now_ms();
    ingest_producer_destroy(p);
    ASSERT_TRUE(now_ms() - started < 10000);
    ASSERT_EQ_INT(b->g[0].calls, 1);
    settings_fini(&s);
    free(ms);
    board_free(b);
    ASSERT_EQ_INT(rd_kafka_wait_destroyed(5000), 0);
}

/* ------------------------------------------------------------------------------------------
 * Mock cluster cases.
 */

/* Produce errors the idempotent producer retries end delivered, each message once. */
static void test_producer_mock_transient_errors_retried(void)
{
    enum { N_GROUPS = 4 };
    size_t sizes[N_GROUPS] = {10, 20, 20, 20};
    struct consumed *c = calloc(70, sizeof(*c));
    struct ingest_producer_settings s;
    struct ingest_producer *p = NULL;
    struct board *b = board_new();
    struct msgset *ms = calloc(1, sizeof(*ms));
    struct mock m;
    char topic[128];
    char topic_env[200];
    char *env[] = {topic_env, NULL};
    size_t left = 99;

    ASSERT_TRUE(c != NULL && ms != NULL);
    unique_topic(topic, sizeof(topic), "mock.retry");
    snprintf(topic_env, sizeof(topic_env), "SLUICE_KAFKA_TOPIC=%s", topic);
    mock_start(&m, topic);
    settings_load(&s, env);
    p = producer_new(m.brokers, &s, NULL);
    send_and_expect_delivered(p, b, 0, sizes[0]);

    /* The next produce requests fail with retriable errors, then go through. */
    ASSERT_EQ_INT(rd_kafka_mock_broker_push_request_error_rtts(
                      m.mc, 1, PRODUCE_API_KEY, 4, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, 0,
                      RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 0,
                      RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, 0, RD_KAFKA_RESP_ERR__TRANSPORT, 0),
                  RD_KAFKA_RESP_ERR_NO_ERROR);
    for (int g = 1; g < N_GROUPS; g++) {
        msgset_fill(ms, g, sizes[g]);
        send_ok(p, ms, &b->g[g]);
        msgset_scribble(ms);
    }
    ASSERT_EQ_INT(board_wait(b, N_GROUPS, DEADLINE_MS), N_GROUPS);
    ASSERT_EQ_INT(rd_kafka_mock_broker_error_stack_cnt(m.mc, 1, PRODUCE_API_KEY, &left),
                  RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_EQ_INT(left, 0); /* every injected error was served */
    for (int g = 0; g < N_GROUPS; g++) {
        ASSERT_EQ_INT(b->g[g].calls, 1);
        if (b->g[g].n_delivered != sizes[g]) {
            TEST_FAIL("group %d: %zu of %zu delivered, last error: %s", g,
                      b->g[g].n_delivered, sizes[g], b->g[g].error);
        }
    }
    ASSERT_TRUE(ingest_producer_is_healthy(p));
    ingest_producer_destroy(p);

    consume_all(m.brokers, topic, 70, c);
    check_groups_landed(c, 70, N_GROUPS, sizes);
    for (int g = 0; g < N_GROUPS; g++) {
        ASSERT_EQ_INT(b->g[g].calls, 1);
    }
    mock_stop(&m);
    settings_fini(&s);
    free(ms);
    free(c);
    board_free(b);
    ASSERT_EQ_INT(rd_kafka_wait_destroyed(5000), 0);
}

/*
 * A lost acknowledgement: the broker appends a produce request but its answer never comes
 * (the connection drops first). The idempotent producer retries and the group's one callback
 * reports every message delivered, with no fatal error. Kafka would drop the retried batch
 * by its sequence number; librdkafka 2.0.2's mock broker does not, so its log may hold the
 * batch twice and only "at least once" is checked here.
 */
static void test_producer_mock_lost_ack_retried(void)
{
    struct ingest_producer_settings s;
    struct ingest_producer *p = NULL;
    struct board *b = board_new();
    struct msgset *ms = calloc(1, sizeof(*ms));
    struct timespec tick = {.tv_sec = 0, .tv_nsec = 5 * 1000000};
    struct mock m;
    char topic[128];
    char topic_env[200];
    char *env[] = {topic_env, "SLUICE_KAFKA_DELIVERY_TIMEOUT_MS=30000", NULL};
    size_t left = 1;
    int64_t deadline;

    ASSERT_TRUE(ms != NULL);
    unique_topic(topic, sizeof(topic), "mock.lostack");
    snprintf(topic_env, sizeof(topic_env), "SLUICE_KAFKA_TOPIC=%s", topic);
    mock_start(&m, topic);
    settings_load(&s, env);
    p = producer_new(m.brokers, &s, NULL);
    send_and_expect_delivered(p, b, 0, 5);

    /* The next produce request is appended at once and answered 30 s later. */
    ASSERT_EQ_INT(rd_kafka_mock_broker_push_request_error_rtts(
                      m.mc, 1, PRODUCE_API_KEY, 1, RD_KAFKA_RESP_ERR_NO_ERROR, 30000),
                  RD_KAFKA_RESP_ERR_NO_ERROR);
    msgset_fill(ms, 1, 10);
    send_ok(p, ms, &b->g[1]);
    deadline = now_ms() + DEADLINE_MS;
    while (left > 0 && now_ms() < deadline) {
        ASSERT_EQ_INT(rd_kafka_mock_broker_error_stack_cnt(m.mc, 1, PRODUCE_API_KEY, &left),
                      RD_KAFKA_RESP_ERR_NO_ERROR);
        nanosleep(&tick, NULL);
    }
    ASSERT_EQ_INT(left, 0); /* the broker took the request */
    ASSERT_EQ_INT(rd_kafka_mock_broker_set_down(m.mc, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_TRUE(!wait_healthy(p, false, DEADLINE_MS)); /* the producer saw the drop */
    ASSERT_EQ_INT(rd_kafka_mock_broker_set_up(m.mc, 1), RD_KAFKA_RESP_ERR_NO_ERROR);

    ASSERT_EQ_INT(board_wait(b, 2, DEADLINE_MS), 2);
    ASSERT_EQ_INT(b->g[1].calls, 1);
    if (b->g[1].n_delivered != 10) {
        TEST_FAIL("%zu of 10 delivered, last error: %s", b->g[1].n_delivered, b->g[1].error);
    }
    ASSERT_TRUE(wait_healthy(p, true, DEADLINE_MS));
    ingest_producer_destroy(p);
    ASSERT_TRUE(log_records(m.brokers, topic, 3) >= 15);
    ASSERT_EQ_INT(b->g[0].calls, 1);
    ASSERT_EQ_INT(b->g[1].calls, 1);
    mock_stop(&m);
    settings_fini(&s);
    free(ms);
    board_free(b);
    ASSERT_EQ_INT(rd_kafka_wait_destroyed(5000), 0);
}

/* A message librdkafka refuses at once fails inside the group's one callback; a group of
 * only refused messages makes send fail without a callback. */
static void test_producer_mock_too_large_counts_in_callback(void)
{
    struct ingest_producer_settings s;
    struct ingest_producer *p = NULL;
    struct board *b = board_new();
    struct msgset *ms = calloc(1, sizeof(*ms));
    size_t huge_len = 2 * 1000 * 1000; /* over message.max.bytes (1000000) */
    char *huge = malloc(huge_len);
    struct ingest_producer_stats st;
    struct mock m;
    char topic[128];
    char topic_env[200];
    char *env[] = {topic_env, NULL};
    struct sl_err err;

    ASSERT_TRUE(ms != NULL && huge != NULL);
    memset(huge, 'h', huge_len);
    unique_topic(topic, sizeof(topic), "mock.large");
    snprintf(topic_env, sizeof(topic_env), "SLUICE_KAFKA_TOPIC=%s", topic);
    mock_start(&m, topic);
    settings_load(&s, env);
    p = producer_new(m.brokers, &s, NULL);

    msgset_fill(ms, 0, 3);
    ms->msgs[1].value = huge;
    ms->msgs[1].value_len = huge_len;
    send_ok(p, ms, &b->g[0]);
    ASSERT_EQ_INT(board_wait(b, 1, DEADLINE_MS), 1);
    ASSERT_EQ_INT(b->g[0].calls, 1);
    ASSERT_EQ_INT(b->g[0].n_delivered, 2);
    ASSERT_EQ_INT(b->g[0].n_failed, 1);
    ASSERT_EQ_INT(b->g[0].failed_index[0], 1);
    ASSERT_EQ_INT(b->g[0].n_reason[reason_index("too_large")], 1);
    ASSERT_EQ_INT(b->g[0].kafka_err, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);

    msgset_fill(ms, 1, 1);
    ms->msgs[0].value = huge;
    ms->msgs[0].value_len = huge_len;
    ASSERT_EQ_INT(ingest_producer_send(p, ms->msgs, 1, on_done, &b->g[1], &err), SL_EINVAL);
    ASSERT_EQ_INT(err.remote_code, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
    ASSERT_EQ_INT(ingest_producer_flush(p, DEADLINE_MS), 0);
    ingest_producer_stats(p, &st);
    ASSERT_EQ_INT(st.delivered, 2);
    ASSERT_EQ_INT(st.failed, 2);
    ingest_producer_destroy(p);
    ASSERT_EQ_INT(b->g[0].calls, 1);
    ASSERT_EQ_INT(b->g[1].calls, 0);

    mock_stop(&m);
    settings_fini(&s);
    free(huge);
    free(ms);
    board_free(b);
    ASSERT_EQ_INT(rd_kafka_wait_destroyed(5000), 0);
}

/* A broker down past the delivery timeout: every message of the group fails with a timeout,
 * the producer reports itself unhealthy, and recovers when the broker is back. */
static void test_producer_mock_broker_down_times_out(void)
{
    struct ingest_producer_settings s;
    struct ingest_producer *p = NULL;
    struct board *b = board_new();
    struct msgset *ms = calloc(1, sizeof(*ms));
    struct sl_metrics *metrics = NULL;
    const char *const reason_label[] = {"reason"};
    const char *const timeout_value[] = {"timeout"};
    struct ingest_producer_stats st;
    struct mock m;
    char topic[128];
    char topic_env[200];
    char *env[] = {topic_env, "SLUICE_KAFKA_DELIVERY_TIMEOUT_MS=1500", NULL};
    int64_t started;

    ASSERT_TRUE(ms != NULL);
    ASSERT_OK(sl_metrics_create(&metrics), NULL);
    unique_topic(topic, sizeof(topic), "mock.down");
    snprintf(topic_env, sizeof(topic_env), "SLUICE_KAFKA_TOPIC=%s", topic);
    mock_start(&m, topic);
    settings_load(&s, env);
    p = producer_new(m.brokers, &s, metrics);
    send_and_expect_delivered(p, b, 0, 5);
    ASSERT_TRUE(ingest_producer_is_healthy(p));

    ASSERT_EQ_INT(rd_kafka_mock_broker_set_down(m.mc, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    msgset_fill(ms, 1, 10);
    started = now_ms();
    send_ok(p, ms, &b->g[1]);
    ASSERT_EQ_INT(board_wait(b, 2, DEADLINE_MS), 2);
    ASSERT_TRUE(now_ms() - started >= 1400);
    ASSERT_EQ_INT(b->g[1].calls, 1);
    ASSERT_EQ_INT(b->g[1].n_failed, 10);
    ASSERT_EQ_INT(b->g[1].n_reason[reason_index("timeout")], 10);
    ASSERT_EQ_INT(b->g[1].kafka_err, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT);
    ASSERT_TRUE(!wait_healthy(p, false, DEADLINE_MS));
    ingest_producer_stats(p, &st);
    ASSERT_EQ_INT(st.delivered, 5);
    ASSERT_EQ_INT(st.failed, 10);
    ASSERT_EQ_INT(st.inflight_messages, 0);
    ASSERT_EQ_INT(sl_metrics_counter_value(sl_metrics_series_get(
                      sl_metrics_counter(metrics, "sluice_kafka_messages_failed_total", NULL,
                                         reason_label, 1),
                      timeout_value)),
                  10);

    /* Back up: healthy again and delivering. */
    ASSERT_EQ_INT(rd_kafka_mock_broker_set_up(m.mc, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_TRUE(wait_healthy(p, true, DEADLINE_MS));
    send_and_expect_delivered(p, b, 2, 5);

    ingest_producer_destroy(p);
    for (int g = 0; g < 3; g++) {
        ASSERT_EQ_INT(b->g[g].calls, 1);
    }
    mock_stop(&m);
    settings_fini(&s);
    sl_metrics_destroy(metrics);
    free(ms);
    board_free(b);
    ASSERT_EQ_INT(rd_kafka_wait_destroyed(5000), 0);
}

/* A tiny queue with the broker down: a group that half fits gets one callback with the
 * overflow failed as queue_full; a group when the queue is full fails with SL_EBUSY and
 * never calls back. */
static void test_producer_mock_queue_full(void)
{
    struct ingest_producer_settings s;
    struct ingest_producer *p = NULL;
    struct board *b = board_new();
    struct msgset *ms = calloc(1, sizeof(*ms));
    struct ingest_producer_stats st;
    struct mock m;
    char topic[128];
    char topic_env[200];
    char *env[] = {topic_env, "SLUICE_KAFKA_MAX_INFLIGHT_MESSAGES=5",
                   "SLUICE_KAFKA_DELIVERY_TIMEOUT_MS=60000", NULL};
    struct sl_err err;

    ASSERT_TRUE(ms != NULL);
    unique_topic(topic, sizeof(topic), "mock.full");
    snprintf(topic_env, sizeof(topic_env), "SLUICE_KAFKA_TOPIC=%s", topic);
    mock_start(&m, topic);
    ASSERT_EQ_INT(rd_kafka_mock_broker_set_down(m.mc, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    settings_load(&s, env);
    p = producer_new(m.brokers, &s, NULL);

    msgset_fill(ms, 0, 10);
    send_ok(p, ms, &b->g[0]);
    msgset_fill(ms, 1, 3);
    ASSERT_EQ_INT(ingest_producer_send(p, ms->msgs, 3, on_done, &b->g[1], &err), SL_EBUSY);
    ASSERT_CONTAINS(err.msg, "queue full");
    ASSERT_EQ_INT(err.remote_code, RD_KAFKA_RESP_ERR__QUEUE_FULL);
    ingest_producer_stats(p, &st);
    ASSERT_EQ_INT(st.inflight_messages, 5);
    ASSERT_EQ_INT(st.queue_full, 8);
    ASSERT_EQ_INT(st.failed, 8);
    ASSERT_EQ_INT(group_calls(b, 0), 0); /* five messages still wait for the broker */
    ASSERT_EQ_INT(ingest_producer_flush(p, 200), SL_ETIMEDOUT);

    /* destroy purges the five: the group's one callback reports all ten failed. */
    ingest_producer_destroy(p);
    ASSERT_EQ_INT(b->g[0].calls, 1);
    ASSERT_EQ_INT(b->g[0].n, 10);
    ASSERT_EQ_INT(b->g[0].n_delivered, 0);
    ASSERT_EQ_INT(b->g[0].n_reason[reason_index("purged")], 5);
    ASSERT_EQ_INT(b->g[0].n_reason[reason_index("queue_full")], 5);
    for (size_t i = 0; i < 10; i++) {
        ASSERT_EQ_INT(b->g[0].failed_index[i], i);
    }
    ASSERT_EQ_INT(b->g[1].calls, 0);
    mock_stop(&m);
    settings_fini(&s);
    free(ms);
    board_free(b);
    ASSERT_EQ_INT(rd_kafka_wait_destroyed(5000), 0);
}

/* destroy with groups queued and in flight (a slow broker) runs each callback exactly once,
 * before it returns. */
static void test_producer_mock_destroy_runs_pending_callbacks(void)
{
    enum { N_GROUPS = 6 };
    struct ingest_producer_settings s;
    struct ingest_producer *p = NULL;
    struct board *b = board_new();
    struct msgset *ms = calloc(1, sizeof(*ms));
    struct mock m;
    char topic[128];
    char topic_env[200];
    char *env[] = {topic_env, "SLUICE_KAFKA_DELIVERY_TIMEOUT_MS=60000", NULL};
    int64_t started;

    ASSERT_TRUE(ms != NULL);
    unique_topic(topic, sizeof(topic), "mock.destroy");
    snprintf(topic_env, sizeof(topic_env), "SLUICE_KAFKA_TOPIC=%s", topic);
    mock_start(&m, topic);
    settings_load(&s, env);
    p = producer_new(m.brokers, &s, NULL);
    send_and_expect_delivered(p, b, 0, 5);

    /* Every answer now takes 30 s: the groups below stay in flight or queued. */
    ASSERT_EQ_INT(rd_kafka_mock_broker_set_rtt(m.mc, 1, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    for (int g = 1; g < N_GROUPS; g++) {
        msgset_fill(ms, g, 10);
        send_ok(p, ms, &b->g[g]);
    }
    started = now_ms();
    ingest_producer_destroy(p);
    ASSERT_TRUE(now_ms() - started < 20000);
    for (int g = 1; g < N_GROUPS; g++) {
        ASSERT_EQ_INT(b->g[g].calls, 1);
        ASSERT_EQ_INT(b->g[g].n, 10);
        ASSERT_EQ_INT(b->g[g].n_failed, 10);
        ASSERT_EQ_INT(b->g[g].n_reason[reason_index("purged")], 10);
    }
    ASSERT_EQ_INT(b->done, N_GROUPS);
    mock_stop(&m);
    settings_fini(&s);
    free(ms);
    board_free(b);
    ASSERT_EQ_INT(rd_kafka_wait_destroyed(5000), 0);
}

/* ------------------------------------------------------------------------------------------
 * Real broker cases.
 */

/* Groups through the real broker: one callback each with every message delivered; each
 * message lands exactly once with its key and both headers. */
static void test_producer_real_groups_delivered_once(void)
{
    enum { N_GROUPS = 8 };
    const char *brokers = test_env_require("SLUICE_TEST_KAFKA_BROKERS");
    size_t sizes[N_GROUPS];
    size_t total = 0;
    struct consumed *c = NULL;
    struct ingest_producer_settings s;
    struct ingest_producer *p = NULL;
    struct board *b = board_new();
    struct msgset *ms = calloc(1, sizeof(*ms));
    struct sl_metrics *metrics = NULL;
    struct ingest_producer_stats st;
    char topic[128];
    char topic_env[200];
    char *env[] = {topic_env, NULL};

    ASSERT_TRUE(ms != NULL);
    for (int g = 0; g < N_GROUPS; g++) {
        sizes[g] = 5 + 13 * (size_t)g;
        total += sizes[g];
    }
    c = calloc(total, sizeof(*c));
    ASSERT_TRUE(c != NULL);
    ASSERT_OK(sl_metrics_create(&metrics), NULL);
    unique_topic(topic, sizeof(topic), "groups");
    snprintf(topic_env, sizeof(topic_env), "SLUICE_KAFKA_TOPIC=%s", topic);
    create_topic(brokers, topic, 3);
    settings_load(&s, env);
    p = producer_new(brokers, &s, metrics);

    for (int g = 0; g < N_GROUPS; g++) {
        msgset_fill(ms, g, sizes[g]);
        send_ok(p, ms, &b->g[g]);
        msgset_scribble(ms);
    }
    ASSERT_EQ_INT(board_wait(b, N_GROUPS, DEADLINE_MS), N_GROUPS);
    ASSERT_EQ_INT(ingest_producer_flush(p, DEADLINE_MS), 0);
    for (int g = 0; g < N_GROUPS; g++) {
        ASSERT_EQ_INT(b->g[g].calls, 1);
        ASSERT_TRUE(b->g[g].off_main_thread);
        ASSERT_EQ_INT(b->g[g].n, sizes[g]);
        if (b->g[g].n_delivered != sizes[g]) {
            TEST_FAIL("group %d: %zu of %zu delivered, last error: %s", g,
                      b->g[g].n_delivered, sizes[g], b->g[g].error);
        }
    }
    ASSERT_TRUE(ingest_producer_is_healthy(p));
    ingest_producer_stats(p, &st);
    ASSERT_EQ_INT(st.delivered, total);
    ASSERT_EQ_INT(st.failed, 0);
    ASSERT_EQ_INT(st.queue_full, 0);
    ASSERT_EQ_INT(st.inflight_messages, 0);
    ASSERT_EQ_INT(sl_metrics_counter_value(sl_metrics_series_get(
                      sl_metrics_counter(metrics, "sluice_kafka_messages_delivered_total", NULL,
                                         NULL, 0),
                      NULL)),
                  total);
    ASSERT_EQ_INT(sl_metrics_histogram_count(sl_metrics_series_get(
                      sl_metrics_histogram(metrics, "sluice_kafka_delivery_seconds", NULL, NULL,
                                           0, sl_metrics_latency_bounds,
                                           sl_metrics_latency_n_bounds),
                      NULL)),
                  total);
    ASSERT_TRUE(sl_metrics_gauge_value(sl_metrics_series_get(
                    sl_metrics_gauge(metrics, "sluice_kafka_inflight_messages", NULL, NULL, 0),
                    NULL)) == 0.0);
    ingest_producer_destroy(p);
    for (int g = 0; g < N_GROUPS; g++) {
        ASSERT_EQ_INT(b->g[g].calls, 1);
    }

    consume_all(brokers, topic, total, c);
    check_groups_landed(c, total, N_GROUPS, sizes);
    delete_topic(brokers, topic);
    settings_fini(&s);
    sl_metrics_destroy(metrics);
    free(c);
    free(ms);
    board_free(b);
    ASSERT_EQ_INT(rd_kafka_wait_destroyed(5000), 0);
}

/* Sends n messages one group at a time under strategy mode (a SLUICE_KAFKA_PARTITION_KEY
 * value), keyed with ingest_producer_key_for; each value is "<mode>|<expected key>|<i>". */
static void send_keyed(const char *brokers, const char *topic, const char *mode, int n,
                       bool one_per_group)
{
    char topic_env[200];
    char mode_env[64];
    char *env[] = {topic_env, mode_env, NULL};
    struct ingest_producer_settings s;
    struct ingest_producer *p = NULL;
    struct board *b = board_new();
    struct ingest_producer_msg msgs[MAX_MSGS];
    char values[MAX_MSGS][96];
    char tenants[MAX_MSGS][32];
    char sessions[MAX_MSGS][32];
    int sent = 0;
    int groups = 0;

    ASSERT_TRUE(n <= MAX_MSGS);
    snprintf(topic_env, sizeof(topic_env), "SLUICE_KAFKA_TOPIC=%s", topic);
    snprintf(mode_env, sizeof(mode_env), "SLUICE_KAFKA_PARTITION_KEY=%s", mode);
    settings_load(&s, env);
    p = producer_new(brokers, &s, NULL);
    for (int i = 0; i < n; i++) {
        size_t key_len = 0;
        const char *key;

        snprintf(tenants[i], sizeof(tenants[i]), "tenant-%d", i % 4);
        /* Every third event has no session: its key falls back to the tenant. */
        sessions[i][0] = '\0';
        if (i % 3 != 0) {
            snprintf(sessions[i], sizeof(sessions[i]), "session-%d", i % 7);
        }
        key = ingest_producer_key_for(&s, tenants[i], sessions[i], &key_len);
        snprintf(values[i], sizeof(values[i]), "%s|%.*s|%d", mode, (int)key_len,
                 key != NULL ? key : "", i);
        msgs[i] = (struct ingest_producer_msg){.key = key, .key_len = key_len,
                                               .value = values[i],
                                               .value_len = strlen(values[i]),
                                               .tenant_id = tenants[i]};
    }
    while (sent < n) {
        int count = one_per_group ? 1 : n;
        struct sl_err err;

        ASSERT_TRUE(groups < MAX_GROUPS);
        ASSERT_OK(ingest_producer_send(p, msgs + sent, (size_t)count, on_done, &b->g[groups],
                                       &err),
                  &err);
        /* One at a time spreads keyless messages over time, and so over partitions. */
        ASSERT_EQ_INT(board_wait(b, groups + 1, DEADLINE_MS), groups + 1);
        ASSERT_EQ_INT(b->g[groups].n_delivered, count);
        sent += count;
        groups++;
    }
    ingest_producer_destroy(p);
    settings_fini(&s);
    board_free(b);
}

/* tenant: one key per tenant, a key always in one partition; session: the session's key or
 * the tenant's; random: no key, and more than one partition used. */
static void test_producer_real_partition_keys(void)
{
    enum { N_TENANT = 40, N_SESSION = 40, N_RANDOM = 60 };
    const char *brokers = test_env_require("SLUICE_TEST_KAFKA_BROKERS");
    const size_t total = N_TENANT + N_SESSION + N_RANDOM;
    struct consumed *c = calloc(total, sizeof(*c));
    char keys[32][KEY_MAX];
    int key_partition[32];
    int n_keys = 0;
    unsigned random_partitions = 0;
    int n_random = 0;
    char topic[128];

    ASSERT_TRUE(c != NULL);
    unique_topic(topic, sizeof(topic), "keys");
    create_topic(brokers, topic, 3);
    send_keyed(brokers, topic, "tenant", N_TENANT, false);
    send_keyed(brokers, topic, "session", N_SESSION, false);
    send_keyed(brokers, topic, "random", N_RANDOM, true);
    consume_all(brokers, topic, total, c);

    for (size_t k = 0; k < total; k++) {
        char mode[16] = "", key[KEY_MAX] = "";
        int i = -1;
        int slot = -1;

        if (sscanf(c[k].value, "%15[a-z]|%63[^|]|%d", mode, key, &i) != 3 &&
            sscanf(c[k].value, "%15[a-z]||%d", mode, &i) != 2) {
            TEST_FAIL("unexpected message \"%s\"", c[k].value);
        }
        ASSERT_EQ_INT(c[k].n_headers, 2);
        ASSERT_EQ_STR(c[k].schema, "1");
        if (strcmp(mode, "random") == 0) {
            ASSERT_TRUE(!c[k].has_key);
            random_partitions |= 1u << c[k].partition;
            n_random++;
            continue;
        }
        ASSERT_TRUE(c[k].has_key);
        ASSERT_EQ_STR(c[k].key, key);
        if (strcmp(mode, "tenant") == 0) {
            ASSERT_EQ_STR(c[k].key, c[k].tenant);
        }
        else if (strncmp(key, "tenant-", 7) == 0) {
            ASSERT_EQ_STR(c[k].key, c[k].tenant); /* no session: the tenant's key */
        }
        else {
            ASSERT_TRUE(strncmp(key, "session-", 8) == 0);
        }
        /* The same key always lands in the same partition. */
        for (int j = 0; j < n_keys; j++) {
            if (strcmp(keys[j], key) == 0) {
                slot = j;
            }
        }
        if (slot < 0) {
            ASSERT_TRUE(n_keys < 32);
            slot = n_keys++;
            snprintf(keys[slot], sizeof(keys[slot]), "%s", key);
            key_partition[slot] = c[k].partition;
        }
        if (key_partition[slot] != c[k].partition) {
            TEST_FAIL("key %s in partitions %d and %d", key, key_partition[slot],
                      c[k].partition);
        }
    }
    ASSERT_EQ_INT(n_random, N_RANDOM);
    ASSERT_EQ_INT(n_keys, 4 + 7); /* four tenants, seven sessions */
    if (__builtin_popcount(random_partitions) < 2) {
        TEST_FAIL("%d keyless messages all went to one partition (mask %#x)", N_RANDOM,
                  random_partitions);
    }
    delete_topic(brokers, topic);
    free(c);
    ASSERT_EQ_INT(rd_kafka_wait_destroyed(5000), 0);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_producer_settings_table),
        TEST_CASE(test_producer_key_for),
        TEST_CASE(test_producer_create_refuses_bad_settings),
        TEST_CASE(test_producer_send_checks_arguments),
        TEST_CASE(test_producer_unreachable_broker_fails_after_timeout),
        TEST_CASE(test_producer_mock_transient_errors_retried),
        TEST_CASE(test_producer_mock_lost_ack_retried),
        TEST_CASE(test_producer_mock_too_large_counts_in_callback),
        TEST_CASE(test_producer_mock_broker_down_times_out),
        TEST_CASE(test_producer_mock_queue_full),
        TEST_CASE(test_producer_mock_destroy_runs_pending_callbacks),
        TEST_CASE(test_producer_real_groups_delivered_once),
        TEST_CASE(test_producer_real_partition_keys),
        {NULL, NULL},
    };
    return test_main(argc, argv, cases);
}

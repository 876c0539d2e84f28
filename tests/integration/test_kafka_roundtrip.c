/*
 * Round trip through the real Kafka broker (scripts/kafka.sh): an idempotent producer with
 * acks=all writes keyed messages with headers to a new auto-created topic, every delivery
 * report must succeed, and a fresh consumer group reads each key, value and header back
 * exactly once, in order within each partition. Also checks the topics kafka.sh creates.
 * Needs SLUICE_TEST_KAFKA_BROKERS (skips without it unless SLUICE_TEST_REQUIRE_STACK=1).
 */
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

#define MSG_COUNT 100
#define MAX_PARTITIONS 64
#define DEADLINE_MS 60000

/* Delivery reports, filled by the producer's callback on the polling thread. */
struct delivery {
    int ok[MSG_COUNT];
    int failed;
    char last_error[256];
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining_ms(int64_t deadline)
{
    int64_t left = deadline - now_ms();

    return left < 0 ? 0 : (int)left;
}

/* Binary header value for message idx: bytes 0, 255, idx, and a NUL in the middle. */
static void bin_header(int idx, unsigned char out[4])
{
    out[0] = 0;
    out[1] = 0xff;
    out[2] = (unsigned char)idx;
    out[3] = 0;
}

static void conf_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char errstr[512];

    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        TEST_FAIL("rd_kafka_conf_set(%s=%s): %s", name, value, errstr);
    }
}

static rd_kafka_t *client_create(rd_kafka_type_t type, rd_kafka_conf_t *conf)
{
    char errstr[512];
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));

    if (rk == NULL) {
        TEST_FAIL("rd_kafka_new: %s", errstr);
    }
    return rk;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct delivery *d = opaque;
    intptr_t idx = (intptr_t)m->_private;

    (void)rk;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        d->failed++;
        snprintf(d->last_error, sizeof(d->last_error), "message %d: %s", (int)idx,
                 rd_kafka_err2str(m->err));
        return;
    }
    if (idx >= 0 && idx < MSG_COUNT) {
        d->ok[idx]++;
    }
}

/* Produces MSG_COUNT messages to topic and waits until every delivery report is in. */
static void produce_all(const char *brokers, const char *topic)
{
    struct delivery d;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    int64_t deadline = now_ms() + DEADLINE_MS;

    memset(&d, 0, sizeof(d));
    conf_set(conf, "bootstrap.servers", brokers);
    conf_set(conf, "enable.idempotence", "true");
    conf_set(conf, "acks", "all");
    conf_set(conf, "message.timeout.ms", "30000");
    conf_set(conf, "linger.ms", "5");
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, &d);
    rk = client_create(RD_KAFKA_PRODUCER, conf);

    for (int i = 0; i < MSG_COUNT; i++) {
        char key[32], value[64], idx[16];
        unsigned char bin[4];
        rd_kafka_resp_err_t err;

        snprintf(key, sizeof(key), "key-%03d", i);
        snprintf(value, sizeof(value), "value-%d-%.*s", i, i % 20, "xxxxxxxxxxxxxxxxxxxx");
        snprintf(idx, sizeof(idx), "%d", i);
        bin_header(i, bin);
        err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_KEY(key, strlen(key)),
                                RD_KAFKA_V_VALUE(value, strlen(value)),
                                RD_KAFKA_V_HEADER("idx", idx, -1),
                                RD_KAFKA_V_HEADER("source", "sluice-test", -1),
                                RD_KAFKA_V_HEADER("bin", bin, sizeof(bin)),
                                RD_KAFKA_V_OPAQUE((void *)(intptr_t)i), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            TEST_FAIL("producev message %d: %s", i, rd_kafka_err2str(err));
        }
        rd_kafka_poll(rk, 0);
    }

    /* flush() polls and so runs the delivery callback; loop until the deadline. */
    while (rd_kafka_outq_len(rk) > 0 && remaining_ms(deadline) > 0) {
        rd_kafka_flush(rk, remaining_ms(deadline) < 1000 ? remaining_ms(deadline) : 1000);
    }
    ASSERT_EQ_INT(rd_kafka_outq_len(rk), 0);
    if (d.failed != 0) {
        TEST_FAIL("%d delivery reports failed, last: %s", d.failed, d.last_error);
    }
    for (int i = 0; i < MSG_COUNT; i++) {
        if (d.ok[i] != 1) {
            TEST_FAIL("message %d: %d successful delivery reports, want 1", i, d.ok[i]);
        }
    }
    rd_kafka_destroy(rk);
}

/* Returns the value of header name as a NUL-terminated copy in buf. */
static const char *header_str(rd_kafka_headers_t *hdrs, const char *name, char *buf,
                              size_t len)
{
    const void *val = NULL;
    size_t size = 0;

    if (rd_kafka_header_get_last(hdrs, name, &val, &size) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        size >= len) {
        return NULL;
    }
    memcpy(buf, val, size);
    buf[size] = '\0';
    return buf;
}

/* Checks one consumed message against what produce_all sent; returns its index. */
static int check_message(const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *hdrs = NULL;
    char key[32], want[64], got[64], hbuf[32];
    const void *bin = NULL;
    size_t bin_len = 0;
    unsigned char want_bin[4];
    int idx = -1;

    ASSERT_TRUE(m->key != NULL && m->key_len < sizeof(key));
    memcpy(key, m->key, m->key_len);
    key[m->key_len] = '\0';
    ASSERT_EQ_INT(sscanf(key, "key-%d", &idx), 1);
    ASSERT_TRUE(idx >= 0 && idx < MSG_COUNT);

    snprintf(want, sizeof(want), "value-%d-%.*s", idx, idx % 20, "xxxxxxxxxxxxxxxxxxxx");
    ASSERT_TRUE(m->payload != NULL && m->len < sizeof(got));
    memcpy(got, m->payload, m->len);
    got[m->len] = '\0';
    ASSERT_EQ_STR(got, want);

    ASSERT_EQ_INT(rd_kafka_message_headers(m, &hdrs), RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_EQ_INT(rd_kafka_header_cnt(hdrs), 3);
    snprintf(want, sizeof(want), "%d", idx);
    ASSERT_EQ_STR(header_str(hdrs, "idx", hbuf, sizeof(hbuf)), want);
    ASSERT_EQ_STR(header_str(hdrs, "source", hbuf, sizeof(hbuf)), "sluice-test");
    ASSERT_EQ_INT(rd_kafka_header_get_last(hdrs, "bin", &bin, &bin_len),
                  RD_KAFKA_RESP_ERR_NO_ERROR);
    bin_header(idx, want_bin);
    ASSERT_EQ_INT(bin_len, sizeof(want_bin));
    ASSERT_TRUE(memcmp(bin, want_bin, sizeof(want_bin)) == 0);
    return idx;
}

/* Number of partitions of topic, from a metadata request. */
static int partition_count(rd_kafka_t *rk, const char *topic)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    int n = -1;

    ASSERT_TRUE(rkt != NULL);
    ASSERT_EQ_INT(rd_kafka_metadata(rk, 0, rkt, &md, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        n = md->topics[0].partition_cnt;
    }
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return n;
}

/* Reads the topic from the beginning with a new group; checks each message once, in order. */
static void consume_all(const char *brokers, const char *topic)
{
    static int seen[MSG_COUNT];
    int last_idx[MAX_PARTITIONS];
    char group[128];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *subs = NULL;
    int64_t deadline = now_ms() + DEADLINE_MS;
    int received = 0, partitions;
    int64_t stored = 0;

    memset(seen, 0, sizeof(seen));
    for (int p = 0; p < MAX_PARTITIONS; p++) {
        last_idx[p] = -1;
    }
    snprintf(group, sizeof(group), "sluice-test-roundtrip-%ld-%lld", (long)getpid(),
             (long long)time(NULL));
    conf_set(conf, "bootstrap.servers", brokers);
    conf_set(conf, "group.id", group);
    conf_set(conf, "auto.offset.reset", "earliest");
    conf_set(conf, "enable.auto.commit", "false");
    rk = client_create(RD_KAFKA_CONSUMER, conf);
    ASSERT_EQ_INT(rd_kafka_poll_set_consumer(rk), RD_KAFKA_RESP_ERR_NO_ERROR);

    subs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(subs, topic, RD_KAFKA_PARTITION_UA);
    ASSERT_EQ_INT(rd_kafka_subscribe(rk, subs), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(subs);

    while (received < MSG_COUNT && remaining_ms(deadline) > 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        int idx;

        if (m == NULL) {
            continue;
        }
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            TEST_FAIL("consumer error: %s", rd_kafka_message_errstr(m));
        }
        ASSERT_TRUE(m->partition >= 0 && m->partition < MAX_PARTITIONS);
        idx = check_message(m);
        /* One producer, so within a partition the indexes must grow. */
        if (idx <= last_idx[m->partition]) {
            TEST_FAIL("partition %d: message %d after %d", (int)m->partition, idx,
                      last_idx[m->partition]);
        }
        last_idx[m->partition] = idx;
        seen[idx]++;
        received++;
        rd_kafka_message_destroy(m);
    }
    ASSERT_EQ_INT(received, MSG_COUNT);
    for (int i = 0; i < MSG_COUNT; i++) {
        if (seen[i] != 1) {
            TEST_FAIL("message %d consumed %d times, want 1", i, seen[i]);
        }
    }

    /* The log itself holds exactly MSG_COUNT records: no duplicate writes to find later. */
    partitions = partition_count(rk, topic);
    ASSERT_TRUE(partitions > 0 && partitions <= MAX_PARTITIONS);
    for (int p = 0; p < partitions; p++) {
        int64_t low = -1, high = -1;

        ASSERT_EQ_INT(rd_kafka_query_watermark_offsets(rk, topic, p, &low, &high, 10000),
                      RD_KAFKA_RESP_ERR_NO_ERROR);
        stored += high - low;
    }
    ASSERT_EQ_INT(stored, MSG_COUNT);

    ASSERT_EQ_INT(rd_kafka_consumer_close(rk), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);
}

/* Deletes topic through the Admin API and waits for the result. */
static void delete_topic(const char *brokers, const char *topic)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_DeleteTopic_t *del = NULL;
    rd_kafka_event_t *ev = NULL;
    const rd_kafka_DeleteTopics_result_t *res = NULL;
    const rd_kafka_topic_result_t **results = NULL;
    size_t n = 0;
    int64_t deadline = now_ms() + DEADLINE_MS;

    conf_set(conf, "bootstrap.servers", brokers);
    rk = client_create(RD_KAFKA_PRODUCER, conf);
    q = rd_kafka_queue_new(rk);
    del = rd_kafka_DeleteTopic_new(topic);
    rd_kafka_DeleteTopics(rk, &del, 1, NULL, q);
    rd_kafka_DeleteTopic_destroy(del);
    while (ev == NULL && remaining_ms(deadline) > 0) {
        ev = rd_kafka_queue_poll(q, 200);
    }
    ASSERT_TRUE(ev != NULL);
    if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        TEST_FAIL("DeleteTopics: %s", rd_kafka_event_error_string(ev));
    }
    res = rd_kafka_event_DeleteTopics_result(ev);
    ASSERT_TRUE(res != NULL);
    results = rd_kafka_DeleteTopics_result_topics(res, &n);
    ASSERT_EQ_INT(n, 1);
    ASSERT_EQ_INT(rd_kafka_topic_result_error(results[0]), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

static void test_kafka_idempotent_roundtrip_exactly_once(void)
{
    const char *brokers = test_env_require("SLUICE_TEST_KAFKA_BROKERS");
    char topic[128];

    snprintf(topic, sizeof(topic), "sluice.test.roundtrip.%ld.%lld", (long)getpid(),
             (long long)time(NULL));
    produce_all(brokers, topic);
    consume_all(brokers, topic);
    delete_topic(brokers, topic);
    ASSERT_EQ_INT(rd_kafka_wait_destroyed(5000), 0);
}

static void test_kafka_project_topics_exist(void)
{
    static const struct {
        const char *name;
        int partitions;
    } topics[] = {
        {"sluice.events", 3},     {"sluice.dlq", 1},          {"sluice.otel.logs", 3},
        {"sluice.otel.traces", 3}, {"sluice.otel.metrics", 3},
    };
    const char *brokers = test_env_require("SLUICE_TEST_KAFKA_BROKERS");
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    const struct rd_kafka_metadata *md = NULL;

    conf_set(conf, "bootstrap.servers", brokers);
    rk = client_create(RD_KAFKA_PRODUCER, conf);
    /* All topics: asking for one by name could auto-create it and hide a missing topic. */
    ASSERT_EQ_INT(rd_kafka_metadata(rk, 1, NULL, &md, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
        int found = -1;

        for (int t = 0; t < md->topic_cnt; t++) {
            if (strcmp(md->topics[t].topic, topics[i].name) == 0) {
                found = md->topics[t].partition_cnt;
            }
        }
        if (found != topics[i].partitions) {
            TEST_FAIL("topic %s: %d partitions, want %d (-1: missing)", topics[i].name, found,
                      topics[i].partitions);
        }
    }
    rd_kafka_metadata_destroy(md);
    rd_kafka_destroy(rk);
    ASSERT_EQ_INT(rd_kafka_wait_destroyed(5000), 0);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_kafka_idempotent_roundtrip_exactly_once),
        TEST_CASE(test_kafka_project_topics_exist),
        {NULL, NULL},
    };
    return test_main(argc, argv, cases);
}

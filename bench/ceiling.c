/*
 * sluice-ceiling: the edge's ceiling. A bare librdkafka producer, configured as the edge's
 * (ingest/producer.c: idempotent, acks=all, the same SLUICE_KAFKA_* compression, linger,
 * batch, timeout, queue size, partitioner and key), produces the very messages the edge
 * would for a request body, with the same headers, to the same broker and topic, and waits
 * for every delivery report. What it prints is how fast Kafka on this box takes those
 * messages when nothing else (HTTP, parsing, validation) is in the way.
 *
 * The messages come from a real request body (sluice-loadgen --print-body) normalized by
 * ingest/event.c, so their size and shape are the edge's, not a guess. Settings come from
 * the environment through the same tables sluice-ingest uses (SLUICE_KAFKA_BROKERS,
 * SLUICE_KAFKA_*). A poll thread serves delivery reports, as the edge's does; the main
 * thread produces with RD_KAFKA_MSG_F_COPY like the edge, blocking when the queue is full.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "cfg.h"
#include "err.h"
#include "event.h"
#include "producer.h"
#include "settings.h"

#define NS_PER_S INT64_C(1000000000)
/* What sluice-loadgen sends as User-Agent; the edge copies it into context.user_agent. */
#define DEFAULT_USER_AGENT "Mozilla/5.0 (X11; Linux x86_64) sluice-loadgen/1"
#define BODY_MAX (64 * 1024 * 1024)

extern char **environ;

struct options {
    const char *body_path;
    const char *tenant_id;
    const char *client_ip;
    const char *user_agent;
    double duration_s;
    uint64_t max_messages; /* 0: run for duration_s */
    uint64_t warmup_messages;
};

struct counters {
    atomic_uint_fast64_t delivered;
    atomic_uint_fast64_t failed;
    atomic_int_fast64_t last_report_ns;
    atomic_int first_error;
};

struct poller {
    rd_kafka_t *rk;
    atomic_bool is_stopping;
};

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static double cpu_seconds(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static const char usage_text[] =
    "usage: sluice-ceiling --body FILE --tenant ID [options]\n"
    "\n"
    "Produces the normalized events of a POST /ingest body straight to Kafka with the\n"
    "edge's producer settings and prints messages/s once every delivery report is in.\n"
    "Brokers and producer settings: SLUICE_KAFKA_BROKERS and SLUICE_KAFKA_* from the\n"
    "environment, as sluice-ingest reads them.\n"
    "\n"
    "  --body FILE         request body as sluice-loadgen sends it (--print-body)\n"
    "  --tenant ID         tenant id written into the events and the sluice-tenant header\n"
    "  --duration S        seconds of producing (10); reports wait for every delivery\n"
    "  --messages N        produce N messages instead of running for a duration\n"
    "  --warmup N          messages produced and flushed before timing (1000)\n"
    "  --client-ip IP      address the events get as context.ip (127.0.0.1)\n"
    "  --user-agent UA     User-Agent the events get (sluice-loadgen's)\n";

static int parse_options(int argc, char **argv, struct options *o)
{
    enum { O_BODY = 1, O_TENANT, O_DURATION, O_MESSAGES, O_WARMUP, O_IP, O_UA, O_HELP };
    static const struct option longopts[] = {
        {"body", required_argument, NULL, O_BODY},
        {"tenant", required_argument, NULL, O_TENANT},
        {"duration", required_argument, NULL, O_DURATION},
        {"messages", required_argument, NULL, O_MESSAGES},
        {"warmup", required_argument, NULL, O_WARMUP},
        {"client-ip", required_argument, NULL, O_IP},
        {"user-agent", required_argument, NULL, O_UA},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    char *end = NULL;
    int c;

    *o = (struct options){.client_ip = "127.0.0.1", .user_agent = DEFAULT_USER_AGENT,
                          .duration_s = 10, .warmup_messages = 1000};
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        errno = 0;
        switch (c) {
        case O_BODY:
            o->body_path = optarg;
            break;
        case O_TENANT:
            o->tenant_id = optarg;
            break;
        case O_DURATION:
            o->duration_s = strtod(optarg, &end);
            if (errno != 0 || *end != '\0' || o->duration_s <= 0) {
                fprintf(stderr, "sluice-ceiling: --duration: '%s' is not a positive number\n",
                        optarg);
                return -1;
            }
            break;
        case O_MESSAGES:
        case O_WARMUP: {
            unsigned long long v = strtoull(optarg, &end, 10);

            if (errno != 0 || *end != '\0' || optarg[0] == '-' || (c == O_MESSAGES && v == 0)) {
                fprintf(stderr, "sluice-ceiling: '%s' is not a valid count\n", optarg);
                return -1;
            }
            if (c == O_MESSAGES) {
                o->max_messages = v;
            }
            else {
                o->warmup_messages = v;
            }
            break;
        }
        case O_IP:
            o->client_ip = optarg;
            break;
        case O_UA:
            o->user_agent = optarg;
            break;
        case O_HELP:
            fputs(usage_text, stdout);
            exit(0);
        default:
            fputs(usage_text, stderr);
            return -1;
        }
    }
    if (optind < argc || o->body_path == NULL || o->tenant_id == NULL) {
        fprintf(stderr, "sluice-ceiling: --body and --tenant are required\n");
        fputs(usage_text, stderr);
        return -1;
    }
    return 0;
}

/* Reads the whole file into *out (new, free with free()). */
static int read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0;
    size_t cap = 0;

    *out = NULL;
    if (f == NULL) {
        fprintf(stderr, "sluice-ceiling: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    for (;;) {
        size_t got;

        if (n == cap) {
            char *p;

            cap = cap == 0 ? 65536 : cap * 2;
            if (cap > BODY_MAX) {
                fprintf(stderr, "sluice-ceiling: %s is larger than %d bytes\n", path, BODY_MAX);
                break;
            }
            p = realloc(buf, cap);
            if (p == NULL) {
                fprintf(stderr, "sluice-ceiling: out of memory reading %s\n", path);
                break;
            }
            buf = p;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                fprintf(stderr, "sluice-ceiling: reading %s: %s\n", path, strerror(errno));
                break;
            }
            fclose(f);
            *out = buf;
            *len = n;
            return 0;
        }
    }
    fclose(f);
    free(buf);
    return -1;
}

/* ---- librdkafka ---- */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct counters *k = opaque;
    int expected = 0;

    (void)rk;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        atomic_fetch_add_explicit(&k->delivered, 1, memory_order_relaxed);
    }
    else {
        atomic_fetch_add_explicit(&k->failed, 1, memory_order_relaxed);
        atomic_compare_exchange_strong(&k->first_error, &expected, (int)m->err);
    }
    atomic_store_explicit(&k->last_report_ns, now_ns(), memory_order_release);
}

/* The edge keeps statistics on (it parses them only while Kafka looks down); so do we. */
static int on_stats(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
    (void)rk;
    (void)json;
    (void)json_len;
    (void)opaque;
    return 0;
}

static void on_error(rd_kafka_t *rk, int code, const char *reason, void *opaque)
{
    (void)rk;
    (void)opaque;
    fprintf(stderr, "sluice-ceiling: kafka: %s: %s\n", rd_kafka_err2name(code), reason);
}

static void *poll_main(void *arg)
{
    struct poller *p = arg;

    while (!atomic_load(&p->is_stopping)) {
        rd_kafka_poll(p->rk, 100);
    }
    return NULL;
}

static int set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char errstr[512];

    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "sluice-ceiling: librdkafka refuses %s=%s: %s\n", name, value, errstr);
        return -1;
    }
    return 0;
}

static int set_int(rd_kafka_conf_t *conf, const char *name, int64_t value)
{
    char text[32];

    snprintf(text, sizeof(text), "%" PRId64, value);
    return set(conf, name, text);
}

/* The edge's configuration (ingest/producer.c build_conf); keep the two in step. */
static rd_kafka_t *create_producer(const char *brokers, const struct ingest_producer_settings *s,
                                   struct counters *k)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    char errstr[512];

    if (set(conf, "bootstrap.servers", brokers) != 0 ||
        set(conf, "client.id", "sluice-ceiling") != 0 ||
        set(conf, "enable.idempotence", "true") != 0 || set(conf, "acks", "all") != 0 ||
        set(conf, "compression.codec", s->compression) != 0 ||
        set_int(conf, "linger.ms", s->linger_ms) != 0 ||
        set_int(conf, "batch.num.messages", s->batch_messages) != 0 ||
        set_int(conf, "batch.size", s->batch_bytes) != 0 ||
        set_int(conf, "message.timeout.ms", s->delivery_timeout_ms) != 0 ||
        set_int(conf, "queue.buffering.max.messages", s->max_inflight_messages) != 0 ||
        set(conf, "partitioner", "consistent_random") != 0 ||
        set(conf, "statistics.interval.ms", "1000") != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, k);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_stats_cb(conf, on_stats);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "sluice-ceiling: creating the producer: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

/* ---- producing ---- */

struct source {
    const struct ingest_event_batch *batch;
    const struct ingest_producer_settings *settings;
    const char *tenant_id;
    size_t next;
};

/* Produces the next message of the batch (round robin), blocking while the queue is full. */
static int produce_one(rd_kafka_t *rk, rd_kafka_topic_t *rkt, struct source *src)
{
    const struct ingest_event *ev = &src->batch->events[src->next];
    size_t key_len = 0;
    const char *key = ingest_producer_key_for(src->settings, src->tenant_id, ev->session_id,
                                              &key_len);
    rd_kafka_resp_err_t e;

    src->next = (src->next + 1) % src->batch->n_events;
    e = rd_kafka_producev(rk, RD_KAFKA_V_RKT(rkt),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY | RD_KAFKA_MSG_F_BLOCK),
                          RD_KAFKA_V_KEY(key, key_len),
                          RD_KAFKA_V_VALUE(ev->json, ev->json_len),
                          RD_KAFKA_V_HEADER("sluice-tenant", src->tenant_id, -1),
                          RD_KAFKA_V_HEADER("sluice-schema", "1", -1), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "sluice-ceiling: produce: %s\n", rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

/* Waits until every produced message has a report; false after timeout_s. */
static bool wait_reports(struct counters *k, uint64_t produced, double timeout_s)
{
    int64_t deadline = now_ns() + (int64_t)(timeout_s * 1e9);
    const struct timespec nap = {.tv_sec = 0, .tv_nsec = 200000};

    while (atomic_load(&k->delivered) + atomic_load(&k->failed) < produced) {
        if (now_ns() > deadline) {
            return false;
        }
        nanosleep(&nap, NULL);
    }
    return true;
}

static int run(const struct options *o, const char *brokers,
               const struct ingest_producer_settings *ps, const struct ingest_event_batch *b)
{
    static struct counters k;
    struct poller poller = {0};
    struct source src = {.batch = b, .settings = ps, .tenant_id = o->tenant_id};
    rd_kafka_topic_t *rkt = NULL;
    pthread_t thread;
    bool has_thread = false;
    uint64_t produced = 0;
    uint64_t base_delivered;
    uint64_t delivered;
    uint64_t failed;
    int64_t t0, t_produced, t_last;
    double cpu0, cpu_s, secs, mps;
    size_t value_bytes = 0;
    int rc = -1;

    atomic_init(&k.delivered, 0);
    atomic_init(&k.failed, 0);
    atomic_init(&k.last_report_ns, 0);
    atomic_init(&k.first_error, 0);
    atomic_init(&poller.is_stopping, false);
    poller.rk = create_producer(brokers, ps, &k);
    if (poller.rk == NULL) {
        return -1;
    }
    rkt = rd_kafka_topic_new(poller.rk, ps->topic, NULL);
    if (rkt == NULL) {
        fprintf(stderr, "sluice-ceiling: topic %s: %s\n", ps->topic,
                rd_kafka_err2str(rd_kafka_last_error()));
        goto done;
    }
    if (pthread_create(&thread, NULL, poll_main, &poller) != 0) {
        fprintf(stderr, "sluice-ceiling: cannot start the poll thread\n");
        goto done;
    }
    has_thread = true;

    /* Warm-up: metadata, the idempotent producer id, connections. */
    for (uint64_t i = 0; i < o->warmup_messages; i++) {
        if (produce_one(poller.rk, rkt, &src) != 0) {
            goto done;
        }
        produced++;
    }
    if (!wait_reports(&k, produced, 60)) {
        fprintf(stderr, "sluice-ceiling: the warm-up messages got no delivery report in 60 s\n");
        goto done;
    }
    if (atomic_load(&k.failed) > 0) {
        fprintf(stderr, "sluice-ceiling: warm-up deliveries failed: %s\n",
                rd_kafka_err2str((rd_kafka_resp_err_t)atomic_load(&k.first_error)));
        goto done;
    }
    base_delivered = atomic_load(&k.delivered);

    cpu0 = cpu_seconds();
    t0 = now_ns();
    for (uint64_t i = 0;; i++) {
        if (o->max_messages > 0 ? i >= o->max_messages
                                : ((i & 1023) == 0 &&
                                   now_ns() - t0 >= (int64_t)(o->duration_s * 1e9))) {
            break;
        }
        value_bytes += b->events[src.next].json_len;
        if (produce_one(poller.rk, rkt, &src) != 0) {
            goto done;
        }
        produced++;
    }
    t_produced = now_ns();
    if (!wait_reports(&k, produced, (double)ps->delivery_timeout_ms / 1000.0 + 30)) {
        fprintf(stderr, "sluice-ceiling: delivery reports missing after the delivery timeout\n");
        goto done;
    }
    cpu_s = cpu_seconds() - cpu0;
    t_last = atomic_load_explicit(&k.last_report_ns, memory_order_acquire);
    delivered = atomic_load(&k.delivered) - base_delivered;
    failed = atomic_load(&k.failed);
    secs = (double)(t_last - t0) / 1e9;
    mps = secs > 0 ? (double)delivered / secs : 0;

    printf("librdkafka straight to %s, topic %s: acks=all, idempotent, %s, linger %" PRId64
           " ms, key %s\n",
           brokers, ps->topic, ps->compression, ps->linger_ms, ps->partition_key);
    printf("  messages    %" PRIu64 " delivered, %" PRIu64 " failed, ~%zu bytes each "
           "(normalized events)\n",
           delivered, failed, produced > o->warmup_messages
                                  ? value_bytes / (size_t)(produced - o->warmup_messages)
                                  : 0);
    printf("  throughput  %.0f messages/s  %.1f MB/s of values  (%.2f s producing, %.2f s "
           "to the last report)\n",
           mps, secs > 0 ? (double)value_bytes / secs / 1e6 : 0, (double)(t_produced - t0) / 1e9,
           secs);
    printf("  cpu         %.2f s (%.0f%% of one core)\n", cpu_s,
           secs > 0 ? 100.0 * cpu_s / secs : 0);
    printf("RESULT messages_per_s=%.1f delivered=%" PRIu64 " failed=%" PRIu64
           " value_bytes=%zu seconds=%.3f cpu_s=%.3f\n",
           mps, delivered, failed,
           produced > o->warmup_messages ? value_bytes / (size_t)(produced - o->warmup_messages)
                                         : 0,
           secs, cpu_s);
    if (failed > 0) {
        fprintf(stderr, "sluice-ceiling: %" PRIu64 " deliveries failed, first: %s\n", failed,
                rd_kafka_err2str((rd_kafka_resp_err_t)atomic_load(&k.first_error)));
    }
    rc = failed > 0 ? -1 : 0;

done:
    if (has_thread) {
        atomic_store(&poller.is_stopping, true);
        pthread_join(thread, NULL);
    }
    rd_kafka_flush(poller.rk, 10000);
    if (rkt != NULL) {
        rd_kafka_topic_destroy(rkt);
    }
    rd_kafka_destroy(poller.rk);
    return rc;
}

int main(int argc, char **argv)
{
    struct ingest_settings settings = {0};
    struct ingest_producer_settings ps = {0};
    struct sl_cfg_section secs[] = {
        SL_CFG_SECTION("ingest", ingest_settings_opts, ingest_settings_n_opts, &settings),
        SL_CFG_SECTION("kafka", ingest_producer_cfg_opts, ingest_producer_cfg_n_opts, &ps),
    };
    const size_t n_secs = sizeof(secs) / sizeof(secs[0]);
    struct ingest_event_batch batch = {0};
    struct ingest_event_ctx ctx;
    struct options o;
    struct timespec ts;
    struct sl_err err;
    char *body = NULL;
    size_t body_len = 0;
    int rc = 1;

    if (parse_options(argc, argv, &o) != 0) {
        return 2;
    }
    sl_err_clear(&err);
    sl_alloc_init_jansson();
    if (sl_cfg_load(secs, n_secs, NULL, environ, &err) != 0) {
        fprintf(stderr, "sluice-ceiling: %s\n", err.msg);
        rc = 2;
        goto done;
    }
    if (settings.kafka_brokers == NULL || settings.kafka_brokers[0] == '\0') {
        fprintf(stderr, "sluice-ceiling: set SLUICE_KAFKA_BROKERS\n");
        rc = 2;
        goto done;
    }
    if (read_file(o.body_path, &body, &body_len) != 0) {
        goto done;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    ctx = (struct ingest_event_ctx){.tenant_id = o.tenant_id,
                                    .received_us = (int64_t)ts.tv_sec * 1000000 +
                                                   ts.tv_nsec / 1000,
                                    .client_ip = o.client_ip,
                                    .user_agent = o.user_agent};
    if (ingest_event_parse_batch(body, body_len, NULL, &ctx, &batch, &err) != 0) {
        fprintf(stderr, "sluice-ceiling: %s: %s\n", o.body_path, err.msg);
        goto done;
    }
    if (batch.n_events == 0 || batch.n_rejected > 0) {
        fprintf(stderr, "sluice-ceiling: %s: %zu of %zu events rejected (%s)\n", o.body_path,
                batch.n_rejected, batch.n_input,
                batch.n_errors > 0 ? batch.errors[0].reason : "no events");
        goto done;
    }
    if (run(&o, settings.kafka_brokers, &ps, &batch) == 0) {
        rc = 0;
    }

done:
    ingest_event_batch_fini(&batch);
    free(body);
    sl_cfg_fini(secs, n_secs);
    return rc;
}

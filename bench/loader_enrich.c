/*
 * sluice-loader-enrich-bench: the loader's throughput with inline enrichment against
 * without, on one box with ClickHouse. It does the loader's work on the same messages three
 * ways, in batches of the loader's default size (50,000 rows), and prints rows/s for each:
 *
 *   ceiling     the RowBinary of every batch encoded beforehand, only inserted (what
 *               inserting the same rows directly costs), for the rows as enrichment off
 *               writes them and as enrichment on writes them (more data, and more groups in
 *               the rollups, whose keys hold country, browser, OS and device);
 *   off         encode (ingest_rows_append) and insert: the loader with enrichment off;
 *   on (warm)   encode with inline enrichment (ingest_rows_append_enriched calling
 *               enrich_lookup, after one pass that warmed the agent cache) and insert.
 *
 * Each mode runs --rounds times in turn (the order alternating between rounds) and the best
 * round counts, so a noisy neighbour on the shared box hurts each mode alike. Every mode of
 * every round inserts into a database of its own, created just before and dropped just
 * after, so no mode pays for the merges of another's rows. Messages are the
 * edge's normalized events (~400 bytes): agents drawn from 1000 real ones (uap-core's test
 * corpus) in a Zipf mix, addresses from 5000 random public IPv4 addresses.
 *
 *   sluice-loader-enrich-bench --clickhouse URL --uap-core DIR --geoip FILE
 *                              [--crawlers FILE] [--rows N] [--rounds R]
 *
 * Its databases are named sluice_bench_loader_enrich_<pid>_<n>.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "ch.h"
#include "enrich.h"
#include "rows.h"
#include "schema.h"

#define BATCH_ROWS 50000
#define N_AGENTS 1000
#define N_IPS 5000

struct bench {
    struct sl_ch *ch;
    struct enrich *e;
    int n_databases;
    char database[80];
    char insert_sql[INGEST_ROWS_INSERT_SQL_MAX];
    char **msgs;
    size_t *lens;
    size_t n_msgs;
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const struct sl_err *err)
{
    fprintf(stderr, "loader-enrich-bench: %s: %s\n", what, err != NULL ? err->msg : "");
    exit(1);
}

/* The user_agent_string values of uap-core's tests/test_ua.yaml, up to max. */
static size_t read_agents(const char *dir, char **out, size_t max)
{
    static const char key[] = "- user_agent_string: '";
    char path[4096], line[8192];
    size_t n = 0;
    FILE *f;

    snprintf(path, sizeof(path), "%s/tests/test_ua.yaml", dir);
    f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "loader-enrich-bench: cannot open %s\n", path);
        exit(1);
    }
    while (n < max && fgets(line, sizeof(line), f) != NULL) {
        char *p = strstr(line, key), *o;

        if (p == NULL) {
            continue;
        }
        p += sizeof(key) - 1;
        o = p;
        for (char *q = p; *q != '\0'; q++) {
            if (q[0] == '\'' && q[1] == '\'') {
                *o++ = '\'';
                q++;
            }
            else if (q[0] == '\'') {
                break;
            }
            else if (*q == '"' || *q == '\\') {
                continue; /* kept out of the JSON text below */
            }
            else {
                *o++ = *q;
            }
        }
        *o = '\0';
        out[n++] = strdup(p);
    }
    fclose(f);
    return n;
}

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Picks 0..n-1 with probability ~ 1/(rank+1). */
static size_t zipf(uint64_t *x, const double *cdf, size_t n)
{
    double u = (double)(xorshift(x) >> 11) / 9007199254740992.0;
    size_t lo = 0, hi = n - 1;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;

        if (cdf[mid] < u) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    return lo;
}

static void make_messages(struct bench *b, const char *uap_dir, size_t n)
{
    char *agents[N_AGENTS];
    char ips[N_IPS][16];
    double cdf[N_AGENTS], total = 0, acc = 0;
    size_t n_agents = read_agents(uap_dir, agents, N_AGENTS);
    uint64_t x = 88172645463325252ULL;
    time_t base = time(NULL) - 3600;

    if (n_agents == 0) {
        fprintf(stderr, "loader-enrich-bench: no agents in %s\n", uap_dir);
        exit(1);
    }
    for (size_t i = 0; i < n_agents; i++) {
        total += 1.0 / (double)(i + 1);
    }
    for (size_t i = 0; i < n_agents; i++) {
        acc += 1.0 / (double)(i + 1) / total;
        cdf[i] = acc;
    }
    for (size_t i = 0; i < N_IPS; i++) {
        uint64_t r = xorshift(&x);

        /* 11.0.0.0 - 222.255.255.255, skipping the private 172/192 ranges' first octets */
        snprintf(ips[i], sizeof(ips[i]), "%u.%u.%u.%u", 11 + (unsigned)(r % 160),
                 (unsigned)(r >> 8) & 255, (unsigned)(r >> 16) & 255, (unsigned)(r >> 24) & 255);
    }
    b->msgs = calloc(n, sizeof(*b->msgs));
    b->lens = calloc(n, sizeof(*b->lens));
    for (size_t i = 0; i < n; i++) {
        char buf[2048];
        char ts[32];
        time_t t = base + (time_t)(i % 3600);
        struct tm tm;
        int len;

        gmtime_r(&t, &tm);
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S.250Z", &tm);
        len = snprintf(buf, sizeof(buf),
                       "{\"schema_version\":1,\"id\":\"%08x-%04x-4000-8000-%012llx\","
                       "\"tenant_id\":\"tn_bench\",\"type\":\"pageview\",\"name\":null,"
                       "\"ts\":\"%s\",\"received_at\":\"%s\",\"session_id\":\"s%zu\","
                       "\"anonymous_id\":\"a%zu\",\"user_id\":null,\"properties\":{\"plan\":"
                       "\"pro\",\"n\":%zu},\"context\":{\"user_agent\":\"%s\",\"ip\":\"%s\","
                       "\"url\":\"https://shop.example/p/%zu\",\"path\":\"/p/%zu\","
                       "\"referrer\":null,\"title\":\"Product\",\"screen\":\"1920x1080\","
                       "\"viewport\":null,\"timezone\":\"Europe/Berlin\",\"language\":\"de\"},"
                       "\"flags\":[]}",
                       (unsigned)getpid(), (unsigned)(i >> 32) & 0xffff,
                       (unsigned long long)(i & 0xffffffffffffULL), ts, ts, i % 5000, i % 20000,
                       i % 7, agents[zipf(&x, cdf, n_agents)],
                       ips[xorshift(&x) % N_IPS], i % 100, i % 100);
        if (len < 0 || (size_t)len >= sizeof(buf)) {
            fprintf(stderr, "loader-enrich-bench: message %zu too long\n", i);
            exit(1);
        }
        b->msgs[i] = strdup(buf);
        b->lens[i] = (size_t)len;
    }
    b->n_msgs = n;
    for (size_t i = 0; i < n_agents; i++) {
        free(agents[i]);
    }
}

static bool enrich_cb(void *user, const char *tenant_id, const char *ip, const char *agent,
                      const json_t *client_hints, struct enrich_result *out)
{
    (void)tenant_id;
    enrich_lookup(user, ip, agent, NULL, out);
    return true;
}

/* Encodes messages [first, first + n) into buf, enriched when e is not NULL. */
static void encode(struct bench *b, struct enrich *e, size_t first, size_t n,
                   struct sl_ch_buf *buf)
{
    struct sl_err err;

    sl_ch_buf_reset(buf);
    for (size_t i = first; i < first + n; i++) {
        if (ingest_rows_append_enriched(buf, b->msgs[i], b->lens[i], 1, e != NULL ? enrich_cb
                                                                                   : NULL,
                                        e, &err) != 0) {
            die("encode", &err);
        }
    }
}

/* A fresh database with the schema, for one mode of one round. */
static void fresh_database(struct bench *b)
{
    struct sl_err err;

    snprintf(b->database, sizeof(b->database), "sluice_bench_loader_enrich_%ld_%d",
             (long)getpid(), b->n_databases++);
    if (ingest_schema_apply(b->ch, b->database, &err) != 0) {
        die("schema", &err);
    }
    if (ingest_rows_insert_sql(b->database, b->insert_sql, sizeof(b->insert_sql)) != 0) {
        die("insert statement", NULL);
    }
}

static void drop_database(struct bench *b)
{
    char sql[160];
    struct sl_err err;

    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", b->database);
    if (sl_ch_exec(b->ch, sql, &err) != 0) {
        die("drop database", &err);
    }
}

static void insert(struct bench *b, const struct sl_ch_buf *buf)
{
    struct sl_err err;

    if (sl_ch_insert(b->ch, b->insert_sql, buf->data, buf->len, &err) != 0) {
        die("insert", &err);
    }
}

/* One round of the loader's work (encode + insert per batch); returns rows/s. */
static double round_loader(struct bench *b, struct enrich *e, double *encode_s)
{
    struct sl_ch_buf buf;
    double t0, enc = 0, rate;

    fresh_database(b);
    t0 = now_s();
    sl_ch_buf_init(&buf, (size_t)1 << 30);
    for (size_t first = 0; first < b->n_msgs; first += BATCH_ROWS) {
        size_t n = b->n_msgs - first < BATCH_ROWS ? b->n_msgs - first : BATCH_ROWS;
        double t1 = now_s();

        encode(b, e, first, n, &buf);
        enc += now_s() - t1;
        insert(b, &buf);
    }
    rate = (double)b->n_msgs / (now_s() - t0);
    sl_ch_buf_fini(&buf);
    drop_database(b);
    *encode_s = enc;
    return rate;
}

/* The ceiling: the same rows (unenriched) encoded beforehand, only inserted. */
static double round_ceiling(struct bench *b, struct sl_ch_buf *pre, size_t n_batches)
{
    double t0, rate;

    fresh_database(b);
    t0 = now_s();
    for (size_t k = 0; k < n_batches; k++) {
        insert(b, &pre[k]);
    }
    rate = (double)b->n_msgs / (now_s() - t0);
    drop_database(b);
    return rate;
}

int main(int argc, char **argv)
{
    const char *url = NULL, *uap = NULL, *geoip = NULL, *crawlers = "";
    size_t n_rows = 500000;
    int rounds = 3;
    struct bench b = {0};
    struct sl_ch_settings chs = {0};
    struct enrich_settings es = {.asn_db = "", .crawler_patterns = "",
                                 .ua_cache_entries = 100000, .geoip_reload_s = 0};
    struct sl_ch_buf *pre, *pre_on;
    size_t n_batches;
    double best_off = 0, best_on = 0, best_ceiling = 0, best_ceiling_on = 0;
    double enc_off = 1e9, enc_on = 1e9;
    struct enrich_stats st;
    struct sl_err err;
    char regexes[4096];

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--clickhouse") == 0) {
            url = argv[i + 1];
        }
        else if (strcmp(argv[i], "--uap-core") == 0) {
            uap = argv[i + 1];
        }
        else if (strcmp(argv[i], "--geoip") == 0) {
            geoip = argv[i + 1];
        }
        else if (strcmp(argv[i], "--crawlers") == 0) {
            crawlers = argv[i + 1];
        }
        else if (strcmp(argv[i], "--rows") == 0) {
            n_rows = (size_t)strtoull(argv[i + 1], NULL, 10);
        }
        else if (strcmp(argv[i], "--rounds") == 0) {
            rounds = atoi(argv[i + 1]);
        }
    }
    if (url == NULL || uap == NULL || geoip == NULL || n_rows == 0 || rounds < 1) {
        fprintf(stderr, "usage: sluice-loader-enrich-bench --clickhouse URL --uap-core DIR "
                "--geoip FILE [--crawlers FILE] [--rows N] [--rounds R]\n");
        return 2;
    }
    sl_alloc_init_jansson();
    chs.url = (char *)url;
    chs.timeout_ms = 300000;
    chs.connect_timeout_ms = 5000;
    chs.max_retries = 3;
    chs.retry_base_ms = 100;
    chs.retry_max_ms = 2000;
    chs.max_result_bytes = 16 << 20;
    if (sl_ch_create(&b.ch, &chs, &err) != 0) {
        die("ClickHouse client", &err);
    }
    es.crawler_patterns = (char *)crawlers;
    snprintf(regexes, sizeof(regexes), "%s/regexes.yaml", uap);
    if (enrich_create(&es, geoip, regexes, (int64_t)time(NULL), &b.e, &err) != 0) {
        die("enrichment", &err);
    }
    make_messages(&b, uap, n_rows);

    /* Warm the agent cache (the loader's steady state), and pre-encode the ceiling's rows. */
    n_batches = (n_rows + BATCH_ROWS - 1) / BATCH_ROWS;
    pre = calloc(n_batches, sizeof(*pre));
    pre_on = calloc(n_batches, sizeof(*pre_on));
    for (size_t k = 0; k < n_batches; k++) {
        size_t first = k * BATCH_ROWS;
        size_t n = n_rows - first < BATCH_ROWS ? n_rows - first : BATCH_ROWS;

        sl_ch_buf_init(&pre[k], (size_t)1 << 30);
        sl_ch_buf_init(&pre_on[k], (size_t)1 << 30);
        encode(&b, b.e, first, n, &pre_on[k]);
        encode(&b, NULL, first, n, &pre[k]);
    }
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < 4; k++) {
            /* Even rounds: off, on, ceiling, enriched ceiling; odd rounds the reverse. */
            int mode = r % 2 == 0 ? k : 3 - k;
            double enc, rate;

            if (mode == 0) {
                rate = round_loader(&b, NULL, &enc);
                enc_off = enc < enc_off ? enc : enc_off;
                best_off = rate > best_off ? rate : best_off;
            }
            else if (mode == 1) {
                rate = round_loader(&b, b.e, &enc);
                enc_on = enc < enc_on ? enc : enc_on;
                best_on = rate > best_on ? rate : best_on;
            }
            else if (mode == 2) {
                rate = round_ceiling(&b, pre, n_batches);
                best_ceiling = rate > best_ceiling ? rate : best_ceiling;
            }
            else {
                rate = round_ceiling(&b, pre_on, n_batches);
                best_ceiling_on = rate > best_ceiling_on ? rate : best_ceiling_on;
            }
        }
        printf("round %d (best so far): off %.0f, on %.0f, ceiling %.0f, ceiling of enriched "
               "rows %.0f rows/s\n", r + 1, best_off, best_on, best_ceiling, best_ceiling_on);
    }
    enrich_stats(b.e, &st);
    printf("\nloader rows/s, %zu rows of ~%zu bytes in batches of %d, best of %d rounds:\n",
           n_rows, b.lens[0], BATCH_ROWS, rounds);
    printf("  ceiling (insert pre-encoded rows)   %10.0f rows/s\n", best_ceiling);
    printf("  ceiling, enriched rows              %10.0f rows/s  (%.2f of the ceiling: "
           "ClickHouse's share of the cost)\n", best_ceiling_on, best_ceiling_on / best_ceiling);
    printf("  enrichment off (encode + insert)    %10.0f rows/s  (%.2f of the ceiling; encode "
           "%.2f us/row)\n", best_off, best_off / best_ceiling, enc_off * 1e6 / (double)n_rows);
    printf("  enrichment on, warm cache           %10.0f rows/s  (%.2f of the ceiling; encode "
           "%.2f us/row)\n", best_on, best_on / best_ceiling, enc_on * 1e6 / (double)n_rows);
    printf("  on / off                            %10.2f  (target: at least 0.80)\n",
           best_on / best_off);
    printf("  on / off, encoding only             %10.2f  (the loader's CPU per row)\n",
           enc_off / enc_on);
    printf("  agent cache: %llu hits, %llu misses (%.2f%% hits); GeoIP %s\n",
           (unsigned long long)st.cache_hits, (unsigned long long)st.cache_misses,
           100.0 * (double)st.cache_hits / (double)(st.cache_hits + st.cache_misses), geoip);

    for (size_t k = 0; k < n_batches; k++) {
        sl_ch_buf_fini(&pre[k]);
        sl_ch_buf_fini(&pre_on[k]);
    }
    free(pre);
    free(pre_on);
    for (size_t i = 0; i < b.n_msgs; i++) {
        free(b.msgs[i]);
    }
    free(b.msgs);
    free(b.lens);
    enrich_destroy(b.e);
    sl_ch_destroy(b.ch);
    return 0;
}

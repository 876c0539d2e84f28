/*
 * sluice-enrich-bench: enrichment throughput on one machine. Prints GeoIP lookups/s, user-agent
 * parses/s uncached (with and without the trigram prefilter), whole enrich_lookup calls/s
 * uncached, and with the agent cache on a realistic repeat rate (a Zipf mix over 1000
 * distinct agents, one thread and two, and with a long tail), plus the memory the compiled
 * regexes take.
 *
 *   sluice-enrich-bench --uap-core DIR [--geoip FILE] [--crawlers FILE] [--seconds S]
 *
 * DIR is a uap-core folder with regexes.yaml and tests/ (its test agents are the corpus);
 * scripts/enrich-data.sh prints one (SLUICE_TEST_UAP_CORE_DIR). Figures go to stdout.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "enrich.h"
#include "geo.h"
#include "ua.h"

#define MIX_DISTINCT 1000
#define MIX_LOOKUPS 2000000

struct corpus {
    char **agents;
    size_t n;
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kib(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* Adds the user_agent_string values of a uap-core test file (single-quoted YAML scalars). */
static void read_agents(struct corpus *c, const char *dir, const char *rel)
{
    static const char key[] = "- user_agent_string: '";
    char path[4096], line[8192];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "enrich-bench: cannot open %s\n", path);
        exit(1);
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        char *p = strstr(line, key), *out;

        if (p == NULL) {
            continue;
        }
        p += sizeof(key) - 1;
        out = p;
        for (char *q = p; *q != '\0'; q++) {
            if (q[0] == '\'' && q[1] == '\'') {
                *out++ = '\'';
                q++;
            }
            else if (q[0] == '\'') {
                break;
            }
            else {
                *out++ = *q;
            }
        }
        *out = '\0';
        c->agents = realloc(c->agents, (c->n + 1) * sizeof(*c->agents));
        c->agents[c->n++] = strdup(p);
    }
    fclose(f);
}

static void bench_geo(const char *geoip, double seconds)
{
    static const char *const ips[] = {"81.2.69.142", "216.160.83.56", "89.160.20.112",
                                      "2001:218::1", "175.16.199.0", "1.2.3.4", "8.8.8.8",
                                      "2a02:cf40::1", "67.43.156.0", "10.0.0.1"};
    struct enrich_geo *geo = NULL;
    struct enrich_geo_info gi;
    size_t n = 0;
    double t0, dt;

    if (enrich_geo_open(geoip, NULL, 0, 0, &geo) != 0) {
        exit(1);
    }
    t0 = now_s();
    do {
        for (int i = 0; i < 1000; i++) {
            enrich_geo_lookup(geo, ips[(n + (size_t)i) % 10], &gi);
        }
        n += 1000;
        dt = now_s() - t0;
    } while (dt < seconds);
    printf("geoip lookups:                   %10.0f /s  (%.2f us each; %s, 10 addresses)\n",
           (double)n / dt, dt * 1e6 / (double)n, geoip);
    enrich_geo_close(geo);
}

static void bench_parse(const struct enrich_ua *ua, const struct corpus *c, unsigned mask,
                        const char *what, double seconds)
{
    struct enrich_ua_result r;
    size_t n = 0;
    double t0 = now_s(), dt;

    do {
        for (size_t i = 0; i < 200; i++) {
            const char *a = c->agents[(n + i) % c->n];

            enrich_ua_parse(ua, a, strlen(a), mask, &r);
        }
        n += 200;
        dt = now_s() - t0;
    } while (dt < seconds);
    printf("%-32s %10.0f /s  (%.1f us each, %zu distinct agents)\n", what, (double)n / dt,
           dt * 1e6 / (double)n, c->n);
}

struct mix {
    struct enrich *e;
    const struct corpus *c;
    const uint32_t *order;  /* see zipf_order */
    size_t stride;          /* distinct agent i is corpus agent i * stride */
    size_t n;
    int with_ip;
    double seconds;
};

static void *run_mix(void *arg)
{
    struct mix *m = arg;
    struct enrich_result r;

    for (size_t i = 0; i < m->n; i++) {
        /* Beyond the distinct set: the corpus's other agents, each in turn. */
        const char *agent = m->order[i] < MIX_DISTINCT ? m->c->agents[m->order[i] * m->stride]
                            : m->c->agents[(m->order[i] - MIX_DISTINCT) % m->c->n];

        enrich_lookup(m->e, m->with_ip ? "81.2.69.142" : NULL, agent, NULL, &r);
    }
    return NULL;
}

/* Indexes 0..MIX_DISTINCT-1 drawn with probability ~ 1/(rank+1); with tail_permille, that
 * share of lookups instead takes the next of n_tail other agents in turn (MIX_DISTINCT + i). */
static uint32_t *zipf_order(size_t n, unsigned tail_permille, size_t n_tail)
{
    double weights[MIX_DISTINCT], total = 0, acc = 0;
    double cdf[MIX_DISTINCT];
    uint32_t *order = malloc(n * sizeof(*order));
    uint64_t x = 88172645463325252ULL;

    for (int i = 0; i < MIX_DISTINCT; i++) {
        weights[i] = 1.0 / (i + 1);
        total += weights[i];
    }
    for (int i = 0; i < MIX_DISTINCT; i++) {
        acc += weights[i] / total;
        cdf[i] = acc;
    }
    for (size_t k = 0; k < n; k++) {
        double u;
        int lo = 0, hi = MIX_DISTINCT - 1;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        u = (double)(x >> 11) / 9007199254740992.0;
        if (n_tail > 0 && (x % 1000) < tail_permille) {
            order[k] = (uint32_t)(MIX_DISTINCT + k % n_tail);
            continue;
        }
        while (lo < hi) {
            int mid = (lo + hi) / 2;

            if (cdf[mid] < u) {
                lo = mid + 1;
            }
            else {
                hi = mid;
            }
        }
        order[k] = (uint32_t)lo;
    }
    return order;
}

static void bench_mix(struct enrich *e, const struct corpus *c, int threads, int with_ip,
                      unsigned tail_permille)
{
    uint32_t *order = zipf_order(MIX_LOOKUPS, tail_permille, c->n - MIX_DISTINCT);
    pthread_t t[2];
    struct mix m[2];
    struct enrich_stats before, after;
    double t0, dt;

    enrich_stats(e, &before);
    t0 = now_s();
    for (int i = 0; i < threads; i++) {
        m[i] = (struct mix){.e = e, .c = c, .order = order, .n = MIX_LOOKUPS / threads,
                            .stride = c->n / MIX_DISTINCT, .with_ip = with_ip};
        if (i > 0) {
            m[i].order = order + MIX_LOOKUPS / threads;
        }
        pthread_create(&t[i], NULL, run_mix, &m[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
    }
    dt = now_s() - t0;
    enrich_stats(e, &after);
    printf("enrich_lookup, cached, %d thread%s%s %9.0f /s  (hit rate %.2f%%, Zipf over %d "
           "agents, %.1f%% from a tail of %zu)\n", threads, threads > 1 ? "s" : " ",
           with_ip ? " +ip" : "    ", MIX_LOOKUPS / dt,
           100.0 * (double)(after.cache_hits - before.cache_hits) /
               (double)(after.lookups - before.lookups), MIX_DISTINCT, tail_permille / 10.0,
           c->n - MIX_DISTINCT);
    free(order);
}

int main(int argc, char **argv)
{
    const char *uap_dir = NULL, *geoip = NULL, *crawlers = NULL;
    double seconds = 2;
    struct corpus c = {0};
    struct enrich_ua *ua = NULL;
    struct enrich_ua_info info;
    struct enrich *e = NULL;
    struct enrich_settings s = {.ua_cache_entries = 0, .geoip_reload_s = 0};
    struct enrich_result r;
    struct sl_err err;
    char regexes[4096];
    long rss0;
    double t0;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--uap-core") == 0) {
            uap_dir = argv[i + 1];
        }
        else if (strcmp(argv[i], "--geoip") == 0) {
            geoip = argv[i + 1];
        }
        else if (strcmp(argv[i], "--crawlers") == 0) {
            crawlers = argv[i + 1];
        }
        else if (strcmp(argv[i], "--seconds") == 0) {
            seconds = atof(argv[i + 1]);
        }
    }
    if (uap_dir == NULL) {
        fprintf(stderr, "usage: sluice-enrich-bench --uap-core DIR [--geoip FILE] "
                "[--crawlers FILE] [--seconds S]\n");
        return 2;
    }
    read_agents(&c, uap_dir, "tests/test_ua.yaml");
    read_agents(&c, uap_dir, "tests/test_device.yaml");
    snprintf(regexes, sizeof(regexes), "%s/regexes.yaml", uap_dir);

    rss0 = rss_kib();
    t0 = now_s();
    if (enrich_ua_create(regexes, &ua, &err) != 0) {
        fprintf(stderr, "enrich-bench: %s\n", err.msg);
        return 1;
    }
    enrich_ua_info(ua, &info);
    printf("regexes.yaml: %zu rules loaded in %.0f ms; compiled code %zu KiB; process grew "
           "%ld KiB\n", info.n_rules[0] + info.n_rules[1] + info.n_rules[2],
           (now_s() - t0) * 1e3, info.code_bytes / 1024, rss_kib() - rss0);
    if (geoip != NULL) {
        bench_geo(geoip, seconds);
    }
    bench_parse(ua, &c, ENRICH_UA_SECTION_ALL, "ua parses, uncached:", seconds);
    bench_parse(ua, &c, ENRICH_UA_SECTION_ALL | ENRICH_UA_NO_PREFILTER,
                "ua parses, uncached, no filter:", seconds);
    enrich_ua_destroy(ua);

    s.crawler_patterns = (char *)(crawlers != NULL ? crawlers : "");
    if (enrich_create(&s, geoip, regexes, 0, &e, &err) != 0) {
        return 1;
    }
    t0 = now_s();
    for (size_t i = 0; i < c.n; i++) {
        enrich_lookup(e, "81.2.69.142", c.agents[i], NULL, &r);
    }
    printf("enrich_lookup, uncached:         %10.0f /s  (ip + agent + bots, %zu agents)\n",
           (double)c.n / (now_s() - t0), c.n);
    enrich_destroy(e);

    /* The realistic mix: 1000 distinct agents from the corpus (spread over it) in a Zipf
     * mix, then the same with 5% of lookups going to the rest of the corpus in turn. */
    s.ua_cache_entries = 100000;
    if (enrich_create(&s, geoip, regexes, 0, &e, &err) != 0) {
        return 1;
    }
    bench_mix(e, &c, 1, 0, 0);
    bench_mix(e, &c, 2, 0, 0);
    bench_mix(e, &c, 1, 0, 50);
    if (geoip != NULL) {
        bench_mix(e, &c, 1, 1, 0);
        bench_mix(e, &c, 2, 1, 0);
    }
    enrich_destroy(e);
    for (size_t i = 0; i < c.n; i++) {
        free(c.agents[i]);
    }
    free(c.agents);
    return 0;
}

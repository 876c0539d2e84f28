/*
 * sluice-loadgen: an HTTP/1.1 load generator for POST /ingest. One thread drives N
 * keep-alive connections over plain non-blocking sockets and epoll (no HTTP library, so the
 * generator spends few cycles per request on a box it shares with the edge and the broker).
 *
 * Closed loop (no --rate): every connection sends its next request as soon as the previous
 * answer arrived; latency runs from the first byte written to the last byte read.
 * Open loop (--rate R events/s): requests are due on a fixed schedule, one every
 * batch/R seconds, and go out on the next free connection; latency runs from the scheduled
 * time, so a stalled server is charged for the requests it made wait (no coordinated
 * omission). Due requests that found no free connection by the end are reported as late.
 *
 * Bodies are {"events":[...]} of --batch synthetic custom events padded to --event-bytes;
 * every event carries a unique id, patched in place, so each request stays one buffer.
 * Latencies go into a log-linear histogram (64 sub-buckets per power of two: under 1.6 %
 * error, fixed memory). Figures go to stdout: a readable summary, then one `RESULT k=v ...`
 * line for scripts (bench/edge.sh).
 *
 * What this file leaves to others: starting the edge, the broker and the tenant (edge.sh).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_S INT64_C(1000000000)
#define NS_PER_MS INT64_C(1000000)
/* Sub-bucket bits of the histogram: 2^6 = 64 sub-buckets per power of two. */
#define HIST_SUB_BITS 6
#define HIST_SUB (1 << HIST_SUB_BITS)
/* Values up to 2^40 us (12 days) fit. */
#define HIST_BUCKETS (2 * HIST_SUB + (40 - HIST_SUB_BITS) * HIST_SUB)
#define RESP_MAX 16384
#define MAX_EVENTS 256
#define TICK_NS (100 * NS_PER_MS)
#define BACKOFF_NS (50 * NS_PER_MS)
#define ID_LEN 36
#define STATUS_MAX 600
#define TIMER_TAG UINT64_MAX

/* A latency histogram in microseconds. */
struct hist {
    uint64_t counts[HIST_BUCKETS];
    uint64_t total;
    uint64_t max_us;
};

enum conn_state {
    CONN_IDLE,       /* no request; fd may be open (keep-alive) or -1 */
    CONN_CONNECTING, /* a request waits for connect() */
    CONN_SENDING,
    CONN_READING,
    CONN_BACKOFF,    /* failed recently; idle again after ready_ns */
};

/* Why a request got no HTTP answer. */
enum fail {
    FAIL_NONE,
    FAIL_CONNECT,  /* connect() failed */
    FAIL_SEND,     /* send() failed (reset, broken pipe) */
    FAIL_RECV,     /* recv() failed (reset) */
    FAIL_EOF,      /* the server closed before the answer was complete */
    FAIL_PROTOCOL, /* not HTTP/1.x, or headers larger than the buffer */
    FAIL_TIMEOUT,  /* no complete answer within --timeout-ms */
    N_FAILS,
};

static const char *const fail_names[N_FAILS] = {
    [FAIL_NONE] = "none",       [FAIL_CONNECT] = "connect", [FAIL_SEND] = "send",
    [FAIL_RECV] = "recv",       [FAIL_EOF] = "eof",         [FAIL_PROTOCOL] = "protocol",
    [FAIL_TIMEOUT] = "timeout",
};

struct conn {
    int fd;
    uint64_t n_answered;    /* answers on the current TCP connection (0: fresh) */
    enum conn_state state;
    char *req;              /* headers and body; ids patched per request */
    size_t sent;
    int64_t start_ns;       /* latency start: scheduled time (open) or first write (closed) */
    int64_t ready_ns;       /* CONN_BACKOFF: when it may be used again */
    size_t index;           /* in run.conns, the epoll tag */
    char resp[RESP_MAX];
    size_t resp_len;
    size_t header_len;      /* 0 until the response headers are complete */
    int64_t content_length; /* -1: not given */
    bool is_chunked;
    bool must_close;        /* Connection: close, or HTTP/1.0 */
    int status;
    uint64_t discarded;     /* body bytes read past resp[] */
};

struct options {
    const char *url;
    const char *key;
    size_t connections;
    size_t batch;
    size_t event_bytes;
    double duration_s;
    double warmup_s;
    uint64_t max_requests; /* 0: run for duration_s */
    double rate_eps;       /* 0: closed loop */
    int64_t timeout_ms;
    bool print_body;
};

struct stats {
    struct hist latency;
    uint64_t by_status[STATUS_MAX];
    /* Requests without an HTTP answer by reason, on a fresh [0] or a reused [1] connection. */
    uint64_t fails[N_FAILS][2];
    uint64_t measured;         /* requests started in the window with an outcome */
    uint64_t window_ok_requests; /* 2xx answers that arrived inside the window */
    uint64_t all_ok_requests;    /* 2xx answers over the whole run, warm-up included */
};

struct run {
    struct options opt;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char host[256];
    char path[1024];
    size_t req_len;
    size_t body_len;
    size_t *id_offsets;     /* batch offsets of the ids inside each conn's req */
    uint32_t id_prefix;     /* random per run, the first id group */
    uint64_t next_event;    /* id sequence */
    struct conn *conns;
    size_t *idle;           /* stack of idle conn indices */
    size_t n_idle;
    size_t n_busy;
    int ep;
    int timer_fd;
    int64_t timer_at_ns;    /* when the armed timer fires; 0: not armed */
    int64_t begin_ns;
    int64_t warm_end_ns;
    int64_t end_ns;
    int64_t interval_ns;    /* open loop: between scheduled requests */
    int64_t next_due_ns;    /* open loop: next scheduled request */
    uint64_t issued;
    uint64_t late;          /* open loop: due within the window but never sent */
    struct stats st;
};

/* GLOBAL: set by the SIGINT handler, read by the main loop. */
static volatile sig_atomic_t g_is_interrupted;

static void on_sigint(int signum)
{
    (void)signum;
    g_is_interrupted = 1;
}

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* ---- histogram ---- */

static size_t hist_index(uint64_t v)
{
    int msb;
    int shift;

    if (v < 2 * HIST_SUB) {
        return (size_t)v;
    }
    msb = 63 - __builtin_clzll(v);
    shift = msb - HIST_SUB_BITS;
    if (shift > 40 - HIST_SUB_BITS) {
        return HIST_BUCKETS - 1;
    }
    return 2 * HIST_SUB + (size_t)(shift - 1) * HIST_SUB + (size_t)((v >> shift) - HIST_SUB);
}

/* Highest value that lands in bucket i. */
static uint64_t hist_upper(size_t i)
{
    size_t shift;
    uint64_t mantissa;

    if (i < 2 * HIST_SUB) {
        return i;
    }
    shift = (i - 2 * HIST_SUB) / HIST_SUB + 1;
    mantissa = HIST_SUB + (i - 2 * HIST_SUB) % HIST_SUB;
    return ((mantissa + 1) << shift) - 1;
}

static void hist_record(struct hist *h, uint64_t us)
{
    h->counts[hist_index(us)]++;
    h->total++;
    if (us > h->max_us) {
        h->max_us = us;
    }
}

/* The value at quantile q (0..1) in microseconds; 0 when empty. */
static uint64_t hist_quantile(const struct hist *h, double q)
{
    uint64_t rank;
    uint64_t seen = 0;

    if (h->total == 0) {
        return 0;
    }
    rank = (uint64_t)(q * (double)h->total + 0.999999);
    if (rank < 1) {
        rank = 1;
    }
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = hist_upper(i);

            return v < h->max_us ? v : h->max_us;
        }
    }
    return h->max_us;
}

/* ---- options ---- */

static const char usage_text[] =
    "usage: sluice-loadgen --url URL --key KEY [options]\n"
    "\n"
    "Sends POST requests of {\"events\":[...]} to URL over keep-alive connections and\n"
    "prints events/s, requests/s, answers by status and latency percentiles.\n"
    "\n"
    "  --url URL           http://host:port/ingest (plain HTTP)\n"
    "  --key KEY           API key, sent as Authorization: Bearer KEY\n"
    "  --connections N     keep-alive connections (16)\n"
    "  --batch N           events per request (100)\n"
    "  --event-bytes N     approximate bytes of one event's JSON, padded (300)\n"
    "  --duration S        measured seconds (10), after the warm-up\n"
    "  --warmup S          seconds sent but not measured first (1)\n"
    "  --requests N        send N requests instead of running for a duration\n"
    "  --rate R            offered events/s on a fixed schedule (open loop);\n"
    "                      without it every connection sends back to back (closed loop)\n"
    "  --timeout-ms N      a request without a full answer after N ms fails (30000)\n"
    "  --print-body        print one request body and exit (for sluice-ceiling)\n";

static int parse_double(const char *name, const char *text, double min, double *out)
{
    char *end = NULL;
    double v;

    errno = 0;
    v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || v < min) {
        fprintf(stderr, "sluice-loadgen: %s: '%s' is not a number >= %g\n", name, text, min);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_u64(const char *name, const char *text, uint64_t min, uint64_t *out)
{
    char *end = NULL;
    unsigned long long v;

    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v < min) {
        fprintf(stderr, "sluice-loadgen: %s: '%s' is not an integer >= %" PRIu64 "\n", name,
                text, min);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
    enum { O_URL = 1, O_KEY, O_CONNS, O_BATCH, O_BYTES, O_DURATION, O_WARMUP, O_REQUESTS,
           O_RATE, O_TIMEOUT, O_PRINT_BODY, O_HELP };
    static const struct option longopts[] = {
        {"url", required_argument, NULL, O_URL},
        {"key", required_argument, NULL, O_KEY},
        {"connections", required_argument, NULL, O_CONNS},
        {"batch", required_argument, NULL, O_BATCH},
        {"event-bytes", required_argument, NULL, O_BYTES},
        {"duration", required_argument, NULL, O_DURATION},
        {"warmup", required_argument, NULL, O_WARMUP},
        {"requests", required_argument, NULL, O_REQUESTS},
        {"rate", required_argument, NULL, O_RATE},
        {"timeout-ms", required_argument, NULL, O_TIMEOUT},
        {"print-body", no_argument, NULL, O_PRINT_BODY},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    uint64_t u = 0;
    int c;
    int rc = 0;

    *o = (struct options){.connections = 16, .batch = 100, .event_bytes = 300,
                          .duration_s = 10, .warmup_s = 1, .timeout_ms = 30000};
    while (rc == 0 && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case O_URL:
            o->url = optarg;
            break;
        case O_KEY:
            o->key = optarg;
            break;
        case O_CONNS:
            rc = parse_u64("--connections", optarg, 1, &u);
            o->connections = (size_t)u;
            break;
        case O_BATCH:
            rc = parse_u64("--batch", optarg, 1, &u);
            o->batch = (size_t)u;
            break;
        case O_BYTES:
            rc = parse_u64("--event-bytes", optarg, 1, &u);
            o->event_bytes = (size_t)u;
            break;
        case O_DURATION:
            rc = parse_double("--duration", optarg, 0.001, &o->duration_s);
            break;
        case O_WARMUP:
            rc = parse_double("--warmup", optarg, 0, &o->warmup_s);
            break;
        case O_REQUESTS:
            rc = parse_u64("--requests", optarg, 1, &o->max_requests);
            break;
        case O_RATE:
            rc = parse_double("--rate", optarg, 0.001, &o->rate_eps);
            break;
        case O_TIMEOUT:
            rc = parse_u64("--timeout-ms", optarg, 1, &u);
            o->timeout_ms = (int64_t)u;
            break;
        case O_PRINT_BODY:
            o->print_body = true;
            break;
        case O_HELP:
            fputs(usage_text, stdout);
            exit(0);
        default:
            rc = -1;
            break;
        }
    }
    if (rc == 0 && optind < argc) {
        fprintf(stderr, "sluice-loadgen: unexpected argument '%s'\n", argv[optind]);
        rc = -1;
    }
    if (rc == 0 && !o->print_body && (o->url == NULL || o->key == NULL)) {
        fprintf(stderr, "sluice-loadgen: --url and --key are required\n");
        rc = -1;
    }
    if (rc == 0 && o->connections > 65536) {
        fprintf(stderr, "sluice-loadgen: --connections: at most 65536\n");
        rc = -1;
    }
    if (rc == 0 && o->batch > 100000) {
        fprintf(stderr, "sluice-loadgen: --batch: at most 100000\n");
        rc = -1;
    }
    if (rc == 0 && o->event_bytes > 1000000) {
        fprintf(stderr, "sluice-loadgen: --event-bytes: at most 1000000\n");
        rc = -1;
    }
    if (rc != 0) {
        fputs(usage_text, stderr);
    }
    if (o->max_requests > 0) {
        o->warmup_s = 0; /* a fixed count is measured whole */
    }
    return rc;
}

/* Splits http://host:port/path and resolves host (numeric or by name). */
static int parse_url(struct run *r)
{
    const char *u = r->opt.url;
    const char *hp;
    const char *slash;
    char port[16] = "80";
    char hostonly[256];
    const char *colon;
    const char *bracket;
    struct addrinfo hints, *res = NULL;
    size_t n;
    int rc;

    if (strncmp(u, "http://", 7) != 0) {
        fprintf(stderr, "sluice-loadgen: --url must start with http:// (got '%s')\n", u);
        return -1;
    }
    hp = u + 7;
    slash = strchr(hp, '/');
    n = slash != NULL ? (size_t)(slash - hp) : strlen(hp);
    if (n == 0 || n >= sizeof(r->host)) {
        fprintf(stderr, "sluice-loadgen: --url: bad host in '%s'\n", u);
        return -1;
    }
    memcpy(r->host, hp, n);
    r->host[n] = '\0';
    snprintf(r->path, sizeof(r->path), "%s", slash != NULL ? slash : "/");
    snprintf(hostonly, sizeof(hostonly), "%s", r->host);
    colon = strrchr(hostonly, ':');
    bracket = strchr(hostonly, ']');
    if (colon != NULL && (bracket == NULL || bracket < colon)) {
        snprintf(port, sizeof(port), "%s", colon + 1);
        hostonly[colon - hostonly] = '\0';
    }
    if (hostonly[0] == '[') {
        size_t len = strlen(hostonly);

        memmove(hostonly, hostonly + 1, len);
        if (len >= 2 && hostonly[len - 2] == ']') {
            hostonly[len - 2] = '\0';
        }
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(hostonly, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "sluice-loadgen: cannot resolve '%s': %s\n", hostonly, gai_strerror(rc));
        return -1;
    }
    memcpy(&r->addr, res->ai_addr, res->ai_addrlen);
    r->addr_len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* ---- request bodies ---- */

/*
 * One event as a browser SDK would send it. The id placeholder is patched per request;
 * "pad" grows until the event is event_bytes long (events are never cut below the base).
 */
static size_t write_event(char *out, size_t cap, size_t i, const char *ts, size_t pad)
{
    int n = snprintf(out, cap,
                     "{\"id\":\"00000000-0000-4000-8000-000000000000\",\"type\":\"custom\","
                     "\"name\":\"checkout_step\",\"session_id\":\"s_%06zu\","
                     "\"timestamp\":\"%s\","
                     "\"properties\":{\"plan\":\"pro\",\"step\":%zu,\"pad\":\"%*s\"},"
                     "\"context\":{\"url\":\"https://shop.example.com/checkout?step=%zu\","
                     "\"language\":\"en-US\"}}",
                     i % 1000, ts, i % 5, (int)pad, "", i % 5);

    if (n < 0 || (size_t)n >= cap) {
        return 0;
    }
    /* %*s pads with spaces; make it letters so nothing treats it as whitespace. */
    for (char *p = strstr(out, "\"pad\":\"") + 7; *p == ' '; p++) {
        *p = 'x';
    }
    return (size_t)n;
}

/* Writes seq as the last id group (12 hex digits) and the run prefix as the first. */
static void patch_id(char *id, uint32_t prefix, uint64_t seq)
{
    static const char hex[] = "0123456789abcdef";

    for (int i = 7; i >= 0; i--) {
        id[i] = hex[prefix & 0xf];
        prefix >>= 4;
    }
    for (int i = ID_LEN - 1; i >= ID_LEN - 12; i--) {
        id[i] = hex[seq & 0xf];
        seq >>= 4;
    }
}

/*
 * Builds the body of one request into *out (new, free with free()) and, when id_offsets is
 * not NULL, the offsets of the event ids in it (left as placeholders to patch); without it
 * the ids are filled once. Returns -1 when out of memory.
 */
static int build_body(const struct options *o, char **out, size_t *out_len, size_t *id_offsets)
{
    char ts[40];
    char probe[1024];
    struct timespec now;
    struct tm tm;
    size_t base;
    size_t pad;
    size_t cap;
    size_t len = 0;
    char *body;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + strlen(ts), sizeof(ts) - strlen(ts), ".%03ldZ", now.tv_nsec / 1000000);

    base = write_event(probe, sizeof(probe), 0, ts, 0);
    pad = o->event_bytes > base ? o->event_bytes - base : 0;
    cap = 32 + o->batch * (base + pad + 16);
    body = malloc(cap);
    if (body == NULL) {
        return -1;
    }
    len += (size_t)snprintf(body, cap, "{\"events\":[");
    for (size_t i = 0; i < o->batch; i++) {
        size_t n;

        if (i > 0) {
            body[len++] = ',';
        }
        n = write_event(body + len, cap - len, i, ts, pad);
        if (n == 0) {
            free(body);
            return -1;
        }
        if (id_offsets != NULL) {
            id_offsets[i] = len + 7; /* {"id":" */
        }
        else {
            patch_id(body + len + 7, (uint32_t)now.tv_nsec, i + 1);
        }
        len += n;
    }
    len += (size_t)snprintf(body + len, cap - len, "]}");
    *out = body;
    *out_len = len;
    return 0;
}

static int build_requests(struct run *r)
{
    char *body = NULL;
    char header[2048];
    int hlen;

    r->id_offsets = calloc(r->opt.batch, sizeof(*r->id_offsets));
    if (r->id_offsets == NULL || build_body(&r->opt, &body, &r->body_len, r->id_offsets) != 0) {
        fprintf(stderr, "sluice-loadgen: out of memory building request bodies\n");
        free(body);
        return -1;
    }
    hlen = snprintf(header, sizeof(header),
                    "POST %s HTTP/1.1\r\n"
                    "Host: %s\r\n"
                    "Authorization: Bearer %s\r\n"
                    "Content-Type: application/json\r\n"
                    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) sluice-loadgen/1\r\n"
                    "Content-Length: %zu\r\n"
                    "\r\n",
                    r->path, r->host, r->opt.key, r->body_len);
    if (hlen < 0 || (size_t)hlen >= sizeof(header)) {
        fprintf(stderr, "sluice-loadgen: URL or key too long\n");
        free(body);
        return -1;
    }
    r->req_len = (size_t)hlen + r->body_len;
    for (size_t i = 0; i < r->opt.batch; i++) {
        r->id_offsets[i] += (size_t)hlen;
    }
    for (size_t c = 0; c < r->opt.connections; c++) {
        r->conns[c].req = malloc(r->req_len);
        if (r->conns[c].req == NULL) {
            fprintf(stderr, "sluice-loadgen: out of memory building request bodies\n");
            free(body);
            return -1;
        }
        memcpy(r->conns[c].req, header, (size_t)hlen);
        memcpy(r->conns[c].req + hlen, body, r->body_len);
    }
    free(body);
    return 0;
}

/* ---- connections ---- */

static void set_events(struct run *r, struct conn *c, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.u64 = c->index};

    if (epoll_ctl(r->ep, op, c->fd, &ev) != 0) {
        fprintf(stderr, "sluice-loadgen: epoll_ctl: %s\n", strerror(errno));
        exit(1);
    }
}

static void conn_close(struct run *r, struct conn *c)
{
    if (c->fd >= 0) {
        epoll_ctl(r->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
}

static bool is_measured(const struct run *r, const struct conn *c)
{
    return c->start_ns >= r->warm_end_ns && c->start_ns < r->end_ns;
}

static void make_idle(struct run *r, struct conn *c)
{
    c->state = CONN_IDLE;
    r->idle[r->n_idle++] = c->index;
}

/* Ends the request in progress on c with an HTTP status, or with status 0 and why it got
 * no answer. */
static void finish(struct run *r, struct conn *c, int status, enum fail why)
{
    int64_t t = now_ns();

    r->n_busy--;
    if (is_measured(r, c)) {
        r->st.measured++;
        hist_record(&r->st.latency, (uint64_t)((t - c->start_ns) / 1000));
        if (status > 0 && status < STATUS_MAX) {
            r->st.by_status[status]++;
        }
        else {
            r->st.fails[why][c->n_answered > 0 ? 1 : 0]++;
        }
    }
    if (status > 0) {
        c->n_answered++;
    }
    if (status >= 200 && status < 300) {
        r->st.all_ok_requests++;
        if (t >= r->warm_end_ns && t <= r->end_ns) {
            r->st.window_ok_requests++;
        }
    }
    if (status == 0 || c->must_close) {
        conn_close(r, c);
    }
    if (status == 0) {
        /* Do not hammer a server that refuses or resets: wait a little. */
        c->state = CONN_BACKOFF;
        c->ready_ns = t + BACKOFF_NS;
        return;
    }
    make_idle(r, c);
}

static void try_send(struct run *r, struct conn *c)
{
    while (c->sent < r->req_len) {
        ssize_t n = send(c->fd, c->req + c->sent, r->req_len - c->sent, MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                set_events(r, c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
                c->state = CONN_SENDING;
                return;
            }
            if (errno == EINTR) {
                continue;
            }
            finish(r, c, 0, FAIL_SEND);
            return;
        }
        c->sent += (size_t)n;
    }
    if (c->state == CONN_SENDING) {
        set_events(r, c, EPOLLIN, EPOLL_CTL_MOD);
    }
    c->state = CONN_READING;
}

static int conn_open(struct run *r, struct conn *c)
{
    int one = 1;

    c->n_answered = 0;
    c->fd = socket(r->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        return -1;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&r->addr, r->addr_len) != 0 && errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    c->state = CONN_CONNECTING;
    set_events(r, c, EPOLLOUT, EPOLL_CTL_ADD);
    return 0;
}

/* Starts the next request on idle connection c; start_ns is the latency start. */
static void start_request(struct run *r, struct conn *c, int64_t start_ns)
{
    for (size_t i = 0; i < r->opt.batch; i++) {
        patch_id(c->req + r->id_offsets[i], r->id_prefix, r->next_event++);
    }
    c->start_ns = start_ns;
    c->sent = 0;
    c->resp_len = 0;
    c->header_len = 0;
    c->content_length = -1;
    c->is_chunked = false;
    c->must_close = false;
    c->status = 0;
    c->discarded = 0;
    r->n_busy++;
    r->issued++;
    if (c->fd < 0) {
        if (conn_open(r, c) != 0) {
            finish(r, c, 0, FAIL_CONNECT);
        }
        return;
    }
    c->state = CONN_READING; /* try_send moves it to SENDING if the socket fills */
    try_send(r, c);
}

/* Case-insensitive: does the header block [p, end) have "name: ...value..."? Returns the
 * value start or NULL. */
static const char *find_header(const char *p, const char *end, const char *name)
{
    size_t nlen = strlen(name);

    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));

        if (eol == NULL) {
            eol = end;
        }
        if ((size_t)(eol - p) > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1;

            while (v < eol && (*v == ' ' || *v == '\t')) {
                v++;
            }
            return v;
        }
        p = eol + 1;
    }
    return NULL;
}

/* Parses the status line and headers once they are complete. Returns -1 on garbage. */
static int parse_head(struct conn *c)
{
    const char *end;
    const char *v;

    end = memmem(c->resp, c->resp_len, "\r\n\r\n", 4);
    if (end == NULL) {
        return c->resp_len >= RESP_MAX ? -1 : 0;
    }
    c->header_len = (size_t)(end - c->resp) + 4;
    if (c->resp_len < 12 || strncmp(c->resp, "HTTP/1.", 7) != 0) {
        return -1;
    }
    c->status = atoi(c->resp + 9);
    if (c->status < 100 || c->status >= STATUS_MAX) {
        return -1;
    }
    if (c->resp[7] == '0') {
        c->must_close = true;
    }
    v = find_header(c->resp, end, "Content-Length");
    if (v != NULL) {
        c->content_length = strtoll(v, NULL, 10);
    }
    v = find_header(c->resp, end, "Transfer-Encoding");
    if (v != NULL && strncasecmp(v, "chunked", 7) == 0) {
        c->is_chunked = true;
    }
    v = find_header(c->resp, end, "Connection");
    if (v != NULL && strncasecmp(v, "close", 5) == 0) {
        c->must_close = true;
    }
    if (c->content_length < 0 && !c->is_chunked) {
        c->must_close = true; /* body runs until EOF */
    }
    return 0;
}

/* True when the whole answer is in. */
static bool is_complete(const struct conn *c)
{
    size_t body = c->resp_len - c->header_len + (size_t)c->discarded;

    if (c->content_length >= 0) {
        return body >= (size_t)c->content_length;
    }
    if (c->is_chunked) {
        return c->resp_len - c->header_len >= 5 &&
               memcmp(c->resp + c->resp_len - 5, "0\r\n\r\n", 5) == 0;
    }
    return false;
}

static void on_readable(struct run *r, struct conn *c)
{
    for (;;) {
        char *dst = c->resp + c->resp_len;
        size_t room = RESP_MAX - c->resp_len;
        char sink[4096];
        ssize_t n;

        /* Past the buffer, a sized body is only counted; headers and chunked bodies must
         * fit. */
        if (room == 0) {
            if (c->header_len == 0 || c->content_length < 0) {
                finish(r, c, 0, FAIL_PROTOCOL);
                return;
            }
            dst = sink;
            room = sizeof(sink);
        }
        n = recv(c->fd, dst, room, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        if (n <= 0) {
            /* EOF ends a body without length; anything else is a broken answer. */
            if (n == 0 && c->header_len > 0 && c->content_length < 0 && !c->is_chunked) {
                c->must_close = true;
                finish(r, c, c->status, FAIL_NONE);
                return;
            }
            finish(r, c, 0, n == 0 ? FAIL_EOF : FAIL_RECV);
            return;
        }
        if (dst == sink) {
            c->discarded += (uint64_t)n;
        }
        else {
            c->resp_len += (size_t)n;
        }
        if (c->header_len == 0 && parse_head(c) != 0) {
            finish(r, c, 0, FAIL_PROTOCOL);
            return;
        }
        if (c->header_len > 0 && is_complete(c)) {
            finish(r, c, c->status, FAIL_NONE);
            return;
        }
    }
}

static void on_event(struct run *r, struct conn *c, uint32_t events)
{
    switch (c->state) {
    case CONN_CONNECTING: {
        int soerr = 0;
        socklen_t len = sizeof(soerr);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0) {
            finish(r, c, 0, FAIL_CONNECT);
            return;
        }
        c->state = CONN_SENDING;
        try_send(r, c);
        return;
    }
    case CONN_SENDING:
        if (events & (EPOLLERR | EPOLLHUP)) {
            finish(r, c, 0, FAIL_SEND);
            return;
        }
        try_send(r, c);
        return;
    case CONN_READING:
        on_readable(r, c);
        return;
    case CONN_IDLE:
    case CONN_BACKOFF:
        /* The server closed a kept-alive connection between requests. */
        conn_close(r, c);
        return;
    }
}

/* ---- the loop ---- */

static void arm_timer(struct run *r, int64_t at_ns)
{
    struct itimerspec its = {0};

    if (r->timer_at_ns == at_ns) {
        return;
    }
    its.it_value.tv_sec = at_ns / NS_PER_S;
    its.it_value.tv_nsec = at_ns % NS_PER_S;
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) {
        its.it_value.tv_nsec = 1;
    }
    timerfd_settime(r->timer_fd, TFD_TIMER_ABSTIME, &its, NULL);
    r->timer_at_ns = at_ns;
}

static bool may_issue(const struct run *r)
{
    if (r->opt.max_requests > 0) {
        return r->issued < r->opt.max_requests;
    }
    return now_ns() < r->end_ns;
}

/* Sends what is due on the idle connections. */
static void issue(struct run *r, int64_t now)
{
    if (r->opt.rate_eps > 0) {
        while (r->n_idle > 0 && r->next_due_ns <= now && r->next_due_ns < r->end_ns &&
               (r->opt.max_requests == 0 || r->issued < r->opt.max_requests)) {
            struct conn *c = &r->conns[r->idle[--r->n_idle]];

            start_request(r, c, r->next_due_ns);
            r->next_due_ns += r->interval_ns;
        }
        return;
    }
    while (r->n_idle > 0 && may_issue(r)) {
        struct conn *c = &r->conns[r->idle[--r->n_idle]];

        start_request(r, c, now);
    }
}

/* Every TICK_NS: expire requests past the timeout, release connections from backoff. */
static void housekeeping(struct run *r, int64_t now)
{
    int64_t timeout_ns = r->opt.timeout_ms * NS_PER_MS;

    for (size_t i = 0; i < r->opt.connections; i++) {
        struct conn *c = &r->conns[i];

        if ((c->state == CONN_CONNECTING || c->state == CONN_SENDING ||
             c->state == CONN_READING) &&
            now - c->start_ns > timeout_ns) {
            c->must_close = true;
            finish(r, c, 0, FAIL_TIMEOUT);
        }
        else if (c->state == CONN_BACKOFF && now >= c->ready_ns) {
            make_idle(r, c);
        }
    }
}

static int run_loop(struct run *r)
{
    struct epoll_event events[MAX_EVENTS];
    int64_t next_tick = now_ns() + TICK_NS;
    int64_t drain_deadline = 0;
    bool is_stopping = false;

    for (;;) {
        int64_t now = now_ns();
        int64_t wake = next_tick;
        int timeout_ms;
        int n;

        if (g_is_interrupted && !is_stopping) {
            fprintf(stderr, "sluice-loadgen: interrupted: waiting for the answers in flight\n");
            r->end_ns = now < r->end_ns ? now : r->end_ns;
            is_stopping = true;
        }
        if (now >= next_tick) {
            housekeeping(r, now);
            next_tick = now + TICK_NS;
        }
        if (!g_is_interrupted) {
            issue(r, now);
        }
        if (!may_issue(r) || g_is_interrupted) {
            if (r->opt.max_requests > 0 && r->n_busy == 0 && r->end_ns == INT64_MAX) {
                r->end_ns = now;
            }
            if (r->n_busy == 0) {
                break;
            }
            if (drain_deadline == 0) {
                drain_deadline = now + r->opt.timeout_ms * NS_PER_MS + TICK_NS;
            }
            if (now >= drain_deadline) {
                break;
            }
        }
        else if (r->opt.rate_eps > 0 && r->n_idle > 0 && r->next_due_ns < r->end_ns) {
            /* Open loop: wake exactly when the next request is due. */
            arm_timer(r, r->next_due_ns);
        }
        if (r->opt.rate_eps == 0 && r->end_ns > now && r->end_ns < wake) {
            wake = r->end_ns; /* closed loop: stop issuing on time */
        }
        timeout_ms = wake > now ? (int)((wake - now + NS_PER_MS - 1) / NS_PER_MS) : 0;
        n = epoll_wait(r->ep, events, MAX_EVENTS, timeout_ms);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "sluice-loadgen: epoll_wait: %s\n", strerror(errno));
            return -1;
        }
        for (int i = 0; i < n; i++) {
            if (events[i].data.u64 == TIMER_TAG) {
                uint64_t expirations;

                if (read(r->timer_fd, &expirations, sizeof(expirations)) < 0) {
                    /* EAGAIN: already consumed. */
                }
                r->timer_at_ns = 0;
                continue;
            }
            on_event(r, &r->conns[events[i].data.u64], events[i].events);
        }
    }
    /* Requests still open after the drain deadline count as timeouts. */
    for (size_t i = 0; i < r->opt.connections; i++) {
        struct conn *c = &r->conns[i];

        if (c->state == CONN_CONNECTING || c->state == CONN_SENDING ||
            c->state == CONN_READING) {
            c->must_close = true;
            finish(r, c, 0, FAIL_TIMEOUT);
        }
    }
    if (r->opt.rate_eps > 0 && r->next_due_ns < r->end_ns) {
        r->late = (uint64_t)((r->end_ns - r->next_due_ns + r->interval_ns - 1) / r->interval_ns);
    }
    return 0;
}

/* ---- report ---- */

static double cpu_seconds(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void report(const struct run *r, double cpu_s)
{
    const struct stats *st = &r->st;
    double window_s = (double)(r->end_ns - r->warm_end_ns) / 1e9;
    double req_s = window_s > 0 ? (double)st->window_ok_requests / window_s : 0;
    double ev_s = req_s * (double)r->opt.batch;
    double ms[4];
    uint64_t ok = 0;
    uint64_t failed = 0;
    char statuses[512] = "";
    size_t slen = 0;
    const double qs[4] = {0.50, 0.90, 0.99, 1.0};

    for (int s = 0; s < STATUS_MAX; s++) {
        if (st->by_status[s] == 0) {
            continue;
        }
        if (s >= 200 && s < 300) {
            ok += st->by_status[s];
        }
        else {
            failed += st->by_status[s];
        }
        if (slen < sizeof(statuses) - 32) {
            slen += (size_t)snprintf(statuses + slen, sizeof(statuses) - slen, "%s%d:%" PRIu64,
                                     slen > 0 ? "," : "", s, st->by_status[s]);
        }
    }
    /* No answer at all, by reason, on fresh (new) and kept-alive (reused) connections. */
    for (int f = FAIL_NONE + 1; f < N_FAILS; f++) {
        for (int reused = 0; reused < 2; reused++) {
            uint64_t n = st->fails[f][reused];

            if (n == 0) {
                continue;
            }
            failed += n;
            if (slen < sizeof(statuses) - 48) {
                slen += (size_t)snprintf(statuses + slen, sizeof(statuses) - slen,
                                         "%s%s-%s:%" PRIu64, slen > 0 ? "," : "",
                                         fail_names[f], reused ? "reused" : "new", n);
            }
        }
    }
    for (int i = 0; i < 4; i++) {
        ms[i] = (double)hist_quantile(&st->latency, qs[i]) / 1000.0;
    }

    if (r->opt.rate_eps > 0) {
        printf("open loop at %.0f events/s offered (%.1f requests/s), ", r->opt.rate_eps,
               r->opt.rate_eps / (double)r->opt.batch);
    }
    else {
        printf("closed loop, ");
    }
    printf("%zu connections, %zu events/request of ~%zu bytes (%zu-byte bodies), "
           "%.1f s measured\n",
           r->opt.connections, r->opt.batch, r->body_len / r->opt.batch, r->body_len,
           window_s);
    printf("  throughput  %.0f events/s  %.1f requests/s  (2xx answers in the window)\n", ev_s,
           req_s);
    printf("  answers     %" PRIu64 " ok, %" PRIu64 " failed  [%s]\n", ok, failed,
           slen > 0 || failed > 0 ? statuses : "none");
    printf("  latency ms  p50 %.2f  p90 %.2f  p99 %.2f  max %.2f  (%s)\n", ms[0], ms[1], ms[2],
           ms[3], r->opt.rate_eps > 0 ? "from the scheduled send time" : "from the first byte");
    if (r->opt.rate_eps > 0) {
        printf("  late        %" PRIu64 " requests due but never sent (no free connection)\n",
               r->late);
    }
    printf("  loadgen cpu %.2f s (%.0f%% of one core)\n", cpu_s,
           window_s > 0 ? 100.0 * cpu_s / ((double)(r->end_ns - r->begin_ns) / 1e9) : 0);
    printf("RESULT mode=%s connections=%zu batch=%zu event_bytes=%zu window_s=%.3f "
           "events_per_s=%.1f requests_per_s=%.1f ok=%" PRIu64 " failed=%" PRIu64
           " late=%" PRIu64 " all_ok_events=%" PRIu64
           " p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f cpu_s=%.3f statuses=%s\n",
           r->opt.rate_eps > 0 ? "open" : "closed", r->opt.connections, r->opt.batch,
           r->body_len / r->opt.batch, window_s, ev_s, req_s, ok, failed, r->late,
           st->all_ok_requests * r->opt.batch, ms[0], ms[1], ms[2], ms[3], cpu_s,
           slen > 0 ? statuses : "none");
}

/* ---- main ---- */

static int setup(struct run *r)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TIMER_TAG};
    struct timespec ts;

    if (parse_url(r) != 0) {
        return -1;
    }
    r->conns = calloc(r->opt.connections, sizeof(*r->conns));
    r->idle = calloc(r->opt.connections, sizeof(*r->idle));
    if (r->conns == NULL || r->idle == NULL) {
        fprintf(stderr, "sluice-loadgen: out of memory\n");
        return -1;
    }
    for (size_t i = 0; i < r->opt.connections; i++) {
        r->conns[i].fd = -1;
        r->conns[i].index = i;
        r->conns[i].state = CONN_IDLE;
    }
    if (build_requests(r) != 0) {
        return -1;
    }
    /* Idle stack in reverse so connection 0 goes first. */
    for (size_t i = r->opt.connections; i > 0; i--) {
        r->idle[r->n_idle++] = i - 1;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    r->id_prefix = (uint32_t)(ts.tv_nsec ^ (ts.tv_sec << 8) ^ ((int64_t)getpid() << 16));
    r->ep = epoll_create1(EPOLL_CLOEXEC);
    r->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (r->ep < 0 || r->timer_fd < 0 || epoll_ctl(r->ep, EPOLL_CTL_ADD, r->timer_fd, &ev) != 0) {
        fprintf(stderr, "sluice-loadgen: epoll/timerfd: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

static void teardown(struct run *r)
{
    if (r->conns != NULL) {
        for (size_t i = 0; i < r->opt.connections; i++) {
            if (r->conns[i].fd >= 0) {
                close(r->conns[i].fd);
            }
            free(r->conns[i].req);
        }
    }
    if (r->timer_fd > 0) {
        close(r->timer_fd);
    }
    if (r->ep > 0) {
        close(r->ep);
    }
    free(r->conns);
    free(r->idle);
    free(r->id_offsets);
}

int main(int argc, char **argv)
{
    static struct run r; /* large (the histogram); zeroed */
    double cpu0;
    int rc = 1;

    r.ep = -1;
    r.timer_fd = -1;
    if (parse_options(argc, argv, &r.opt) != 0) {
        return 2;
    }
    if (r.opt.print_body) {
        char *body = NULL;
        size_t len = 0;

        if (build_body(&r.opt, &body, &len, NULL) != 0) {
            fprintf(stderr, "sluice-loadgen: out of memory\n");
            return 1;
        }
        fwrite(body, 1, len, stdout);
        fputc('\n', stdout);
        free(body);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_sigint);
    if (setup(&r) == 0) {
        cpu0 = cpu_seconds();
        r.begin_ns = now_ns();
        r.warm_end_ns = r.begin_ns + (int64_t)(r.opt.warmup_s * 1e9);
        r.end_ns = r.opt.max_requests > 0 ? INT64_MAX
                                          : r.warm_end_ns + (int64_t)(r.opt.duration_s * 1e9);
        if (r.opt.rate_eps > 0) {
            r.interval_ns = (int64_t)((double)r.opt.batch * 1e9 / r.opt.rate_eps);
            if (r.interval_ns < 1) {
                r.interval_ns = 1;
            }
            r.next_due_ns = r.begin_ns;
        }
        if (run_loop(&r) == 0) {
            report(&r, cpu_seconds() - cpu0);
            rc = r.st.measured > 0 ? 0 : 1;
            if (r.st.measured == 0) {
                fprintf(stderr, "sluice-loadgen: no request was measured\n");
            }
        }
    }
    teardown(&r);
    return rc;
}

/*
 * libmicrohttpd glue: one daemon with an internal poll() thread pool, per-request state
 * hung on MHD's connection context, bodies collected up to the limit, and answers that
 * may arrive from another thread (the connection is suspended until they do).
 */
#include "http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

#include "alloc.h"
#include "log.h"

#define COMPONENT "http"
#define MAX_PROXIES 32
#define IP_TEXT_MAX 64

struct cidr {
    int family;             /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int prefix_bits;
};

struct ingest_http {
    struct MHD_Daemon *daemon;
    ingest_http_handler_cb handler;
    void *user;
    struct ingest_http_settings settings; /* strings borrowed from the caller */
    struct cidr proxies[MAX_PROXIES];
    size_t n_proxies;
    atomic_size_t active;
    int port;
};

enum req_state { REQ_RECEIVING, REQ_DISPATCHED, REQ_ANSWERED };

struct ingest_http_req {
    struct ingest_http *server;
    struct MHD_Connection *conn;
    pthread_mutex_t lock;
    enum req_state state;
    bool is_suspended;
    bool is_too_large;
    const char *method;
    const char *path;
    char *body;
    size_t body_len;
    size_t body_cap;
    char client_ip[IP_TEXT_MAX];
    struct MHD_Response *response; /* set by ingest_http_respond */
    unsigned int status;
};

const struct sl_cfg_opt ingest_http_cfg_opts[] = {
    {.key = "SLUICE_HTTP_ADDR", .type = SL_CFG_HOSTPORT, .def = "0.0.0.0:8080",
     .offset = offsetof(struct ingest_http_settings, addr),
     .desc = "Address the HTTP edge listens on (host:port)."},
    {.key = "SLUICE_HTTP_MAX_CONNECTIONS", .type = SL_CFG_INT, .def = "4096", .min = 1,
     .max = 1000000, .offset = offsetof(struct ingest_http_settings, max_connections),
     .desc = "Most client connections the edge holds open at once; more are refused."},
    {.key = "SLUICE_HTTP_IDLE_TIMEOUT_S", .type = SL_CFG_INT, .def = "30", .min = 1,
     .max = 3600, .offset = offsetof(struct ingest_http_settings, idle_timeout_s),
     .desc = "Seconds a connection may stay silent (headers, body or keep-alive) before "
             "it is closed, so slow clients cannot hold the edge."},
    {.key = "SLUICE_HTTP_THREADS", .type = SL_CFG_INT, .def = "2", .min = 1, .max = 256,
     .offset = offsetof(struct ingest_http_settings, threads),
     .desc = "HTTP server threads (each runs a poll loop)."},
    {.key = "SLUICE_MAX_BODY_BYTES", .type = SL_CFG_BYTES, .def = "1M", .min = 1024,
     .max = 64 * 1024 * 1024, .offset = offsetof(struct ingest_http_settings, max_body_bytes),
     .desc = "Largest request body, raw and after gzip/zstd decoding; larger gets 413."},
    {.key = "SLUICE_CORS_ORIGINS", .type = SL_CFG_STRING, .def = "*",
     .offset = offsetof(struct ingest_http_settings, cors_origins),
     .desc = "Origins browsers may send from: `*` or a comma-separated list of origins."},
    {.key = "SLUICE_TRUSTED_PROXIES", .type = SL_CFG_STRING, .def = "",
     .offset = offsetof(struct ingest_http_settings, trusted_proxies),
     .desc = "Comma-separated CIDRs of proxies whose X-Forwarded-For / X-Real-IP are "
             "believed; empty: the socket's address is the client."},
};
const size_t ingest_http_cfg_n_opts = sizeof(ingest_http_cfg_opts) / sizeof(ingest_http_cfg_opts[0]);

/* ---- trusted proxies ---- */

static int parse_cidr(const char *text, size_t len, struct cidr *out)
{
    char buf[IP_TEXT_MAX];
    char *slash;
    int max_bits;

    if (len == 0 || len >= sizeof(buf)) {
        return SL_EINVAL;
    }
    memcpy(buf, text, len);
    buf[len] = '\0';
    slash = strchr(buf, '/');
    if (slash != NULL) {
        *slash = '\0';
    }
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        max_bits = 32;
    }
    else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        max_bits = 128;
    }
    else {
        return SL_EINVAL;
    }
    out->prefix_bits = max_bits;
    if (slash != NULL) {
        char *end = NULL;
        long bits = strtol(slash + 1, &end, 10);

        if (end == slash + 1 || *end != '\0' || bits < 0 || bits > max_bits) {
            return SL_EINVAL;
        }
        out->prefix_bits = (int)bits;
    }
    return 0;
}

static bool cidr_contains(const struct cidr *c, int family, const unsigned char *addr)
{
    int full = c->prefix_bits / 8;
    int rest = c->prefix_bits % 8;

    if (c->family != family) {
        return false;
    }
    if (memcmp(c->addr, addr, (size_t)full) != 0) {
        return false;
    }
    if (rest == 0) {
        return true;
    }
    return ((c->addr[full] ^ addr[full]) & (0xff << (8 - rest))) == 0;
}

/* Parses an address text into family and bytes; IPv4-mapped IPv6 counts as IPv4. */
static bool parse_ip(const char *text, int *family, unsigned char addr[16])
{
    if (inet_pton(AF_INET, text, addr) == 1) {
        *family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, text, addr) == 1) {
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

        *family = AF_INET6;
        if (memcmp(addr, mapped, 12) == 0) {
            memmove(addr, addr + 12, 4);
            *family = AF_INET;
        }
        return true;
    }
    return false;
}

static bool is_trusted(const struct ingest_http *h, const char *ip_text)
{
    unsigned char addr[16];
    int family;

    if (h->n_proxies == 0 || !parse_ip(ip_text, &family, addr)) {
        return false;
    }
    for (size_t i = 0; i < h->n_proxies; i++) {
        if (cidr_contains(&h->proxies[i], family, addr)) {
            return true;
        }
    }
    return false;
}

/* The peer's address, canonical text; IPv4-mapped IPv6 shown as IPv4. */
static void peer_ip(struct MHD_Connection *conn, char out[IP_TEXT_MAX])
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = info != NULL ? info->client_addr : NULL;
    unsigned char addr[16];
    int family;

    out[0] = '\0';
    if (sa == NULL) {
        return;
    }
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                  IP_TEXT_MAX);
    }
    else if (sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
                  IP_TEXT_MAX);
    }
    if (parse_ip(out, &family, addr) && family == AF_INET) {
        inet_ntop(AF_INET, addr, out, IP_TEXT_MAX);
    }
}

/*
 * The client behind trusted proxies: walk X-Forwarded-For from the right, skipping
 * trusted hops, and take the first untrusted one; else X-Real-IP; else the peer.
 */
static void resolve_client_ip(struct ingest_http_req *req)
{
    struct ingest_http *h = req->server;
    const char *xff;
    const char *real;

    peer_ip(req->conn, req->client_ip);
    if (!is_trusted(h, req->client_ip)) {
        return;
    }
    xff = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "X-Forwarded-For");
    if (xff != NULL) {
        char buf[1024];
        char *hops[64];
        size_t n_hops = 0;
        char *save = NULL;

        snprintf(buf, sizeof(buf), "%s", xff);
        for (char *t = strtok_r(buf, ",", &save); t != NULL && n_hops < 64;
             t = strtok_r(NULL, ",", &save)) {
            hops[n_hops++] = t;
        }
        /* From the nearest hop outwards: the first one we do not trust is the client. */
        while (n_hops > 0) {
            char *hop = hops[--n_hops];
            unsigned char addr[16];
            size_t len;
            int family;

            while (*hop == ' ') {
                hop++;
            }
            len = strlen(hop);
            while (len > 0 && hop[len - 1] == ' ') {
                hop[--len] = '\0';
            }
            if (!parse_ip(hop, &family, addr)) {
                return; /* garbage: keep the last trusted address */
            }
            inet_ntop(family, addr, req->client_ip, IP_TEXT_MAX);
            if (!is_trusted(h, req->client_ip)) {
                return;
            }
        }
        return;
    }
    real = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "X-Real-IP");
    if (real != NULL) {
        unsigned char addr[16];
        int family;

        if (parse_ip(real, &family, addr)) {
            inet_ntop(family, addr, req->client_ip, IP_TEXT_MAX);
        }
    }
}

/* ---- requests ---- */

const char *ingest_http_req_method(const struct ingest_http_req *req)
{
    return req->method;
}

const char *ingest_http_req_path(const struct ingest_http_req *req)
{
    return req->path;
}

const char *ingest_http_req_header(const struct ingest_http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *ingest_http_req_body(const struct ingest_http_req *req, size_t *len)
{
    *len = req->body_len;
    return req->body != NULL ? req->body : "";
}

bool ingest_http_req_body_too_large(const struct ingest_http_req *req)
{
    return req->is_too_large;
}

const char *ingest_http_req_client_ip(const struct ingest_http_req *req)
{
    return req->client_ip;
}

static void add_cors(struct ingest_http_req *req, struct MHD_Response *resp)
{
    const char *allowed = req->server->settings.cors_origins;
    const char *origin;
    size_t len;

    if (allowed == NULL || allowed[0] == '\0') {
        return;
    }
    if (strcmp(allowed, "*") == 0) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
        return;
    }
    origin = ingest_http_req_header(req, "Origin");
    if (origin == NULL) {
        return;
    }
    len = strlen(origin);
    for (const char *p = allowed; *p != '\0';) {
        size_t n = strcspn(p, ",");

        if (n == len && strncasecmp(p, origin, n) == 0) {
            MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
            MHD_add_response_header(resp, "Vary", "Origin");
            return;
        }
        p += n;
        if (*p == ',') {
            p++;
        }
    }
}

void ingest_http_respond(struct ingest_http_req *req, unsigned int status,
                         const char *content_type, const char *body, size_t len,
                         const char *const *headers)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);

    if (resp != NULL) {
        if (content_type != NULL) {
            MHD_add_response_header(resp, "Content-Type", content_type);
        }
        add_cors(req, resp);
        for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
            const char *colon = strchr(headers[i], ':');
            char name[64];

            if (colon != NULL && (size_t)(colon - headers[i]) < sizeof(name)) {
                memcpy(name, headers[i], (size_t)(colon - headers[i]));
                name[colon - headers[i]] = '\0';
                MHD_add_response_header(resp, name, colon[1] == ' ' ? colon + 2 : colon + 1);
            }
        }
    }
    pthread_mutex_lock(&req->lock);
    req->response = resp;
    req->status = status;
    req->state = REQ_ANSWERED;
    if (req->is_suspended) {
        req->is_suspended = false;
        MHD_resume_connection(req->conn);
    }
    pthread_mutex_unlock(&req->lock);
}

/* Queues the stored answer; a failed response allocation closes the connection. */
static enum MHD_Result queue_answer(struct ingest_http_req *req)
{
    enum MHD_Result rc;

    if (req->response == NULL) {
        return MHD_NO;
    }
    rc = MHD_queue_response(req->conn, req->status, req->response);
    MHD_destroy_response(req->response);
    req->response = NULL;
    return rc;
}

static int append_body(struct ingest_http_req *req, const char *data, size_t len)
{
    size_t max = (size_t)req->server->settings.max_body_bytes;

    if (req->is_too_large) {
        return 0;
    }
    if (req->body_len + len > max) {
        req->is_too_large = true;
        sl_free(req->body);
        req->body = NULL;
        req->body_len = 0;
        req->body_cap = 0;
        return 0;
    }
    if (req->body_len + len + 1 > req->body_cap) {
        size_t cap = req->body_cap == 0 ? 4096 : req->body_cap;
        char *p;

        while (cap < req->body_len + len + 1) {
            cap *= 2;
        }
        p = sl_realloc(req->body, cap);
        if (p == NULL) {
            return SL_ENOMEM;
        }
        req->body = p;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, data, len);
    req->body_len += len;
    req->body[req->body_len] = '\0';
    return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    struct ingest_http *h = cls;
    struct ingest_http_req *req = *con_cls;

    (void)version;
    if (req == NULL) {
        const char *cl;

        req = sl_calloc(1, sizeof(*req));
        if (req == NULL) {
            return MHD_NO;
        }
        pthread_mutex_init(&req->lock, NULL);
        req->server = h;
        req->conn = conn;
        req->method = method;
        req->path = url;
        req->state = REQ_RECEIVING;
        cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl != NULL && strtoull(cl, NULL, 10) > (unsigned long long)h->settings.max_body_bytes) {
            req->is_too_large = true;
        }
        atomic_fetch_add(&h->active, 1);
        *con_cls = req;
        return MHD_YES;
    }
    if (req->state == REQ_RECEIVING && *upload_data_size > 0) {
        if (append_body(req, upload_data, *upload_data_size) != 0) {
            return MHD_NO;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->state == REQ_RECEIVING) {
        req->state = REQ_DISPATCHED;
        resolve_client_ip(req);
        h->handler(h->user, req);
    }
    pthread_mutex_lock(&req->lock);
    if (req->state == REQ_ANSWERED) {
        enum MHD_Result rc = queue_answer(req);

        pthread_mutex_unlock(&req->lock);
        return rc;
    }
    /* The answer comes later from another thread; hold no thread meanwhile. */
    req->is_suspended = true;
    MHD_suspend_connection(conn);
    pthread_mutex_unlock(&req->lock);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode code)
{
    struct ingest_http *h = cls;
    struct ingest_http_req *req = *con_cls;

    (void)conn;
    (void)code;
    if (req == NULL) {
        return;
    }
    if (req->response != NULL) {
        MHD_destroy_response(req->response);
    }
    pthread_mutex_destroy(&req->lock);
    sl_free(req->body);
    sl_free(req);
    *con_cls = NULL;
    atomic_fetch_sub(&h->active, 1);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];

    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    sl_log_warn(COMPONENT, "%s", msg);
}

static int parse_proxies(struct ingest_http *h, const char *list, struct sl_err *err)
{
    const char *p = list != NULL ? list : "";

    while (*p != '\0') {
        size_t n;

        while (*p == ' ' || *p == ',') {
            p++;
        }
        n = strcspn(p, ", ");
        if (n == 0) {
            break;
        }
        if (h->n_proxies == MAX_PROXIES) {
            return sl_err_set(err, SL_EINVAL, "SLUICE_TRUSTED_PROXIES: more than %d entries",
                              MAX_PROXIES);
        }
        if (parse_cidr(p, n, &h->proxies[h->n_proxies]) != 0) {
            return sl_err_set(err, SL_EINVAL, "SLUICE_TRUSTED_PROXIES: '%.*s' is not an IP "
                              "address or CIDR (like 10.0.0.0/8)", (int)n, p);
        }
        h->n_proxies++;
        p += n;
    }
    return 0;
}

static int resolve_addr(const char *addr, struct sockaddr_storage *ss, socklen_t *len,
                        struct sl_err *err)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    struct addrinfo hints, *res = NULL;
    size_t hlen;
    int rc;

    if (colon == NULL) {
        return sl_err_set(err, SL_EINVAL, "SLUICE_HTTP_ADDR: '%s' is not host:port", addr);
    }
    hlen = (size_t)(colon - addr);
    if (hlen >= sizeof(host)) {
        return sl_err_set(err, SL_EINVAL, "SLUICE_HTTP_ADDR: host too long");
    }
    memcpy(host, addr, hlen);
    host[hlen] = '\0';
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
        memmove(host, host + 1, hlen - 2);
        host[hlen - 2] = '\0';
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host[0] != '\0' ? host : NULL, colon + 1, &hints, &res);
    if (rc != 0) {
        return sl_err_set(err, SL_EINVAL, "SLUICE_HTTP_ADDR: cannot resolve '%s': %s", addr,
                          gai_strerror(rc));
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int ingest_http_start(struct ingest_http **out, const struct ingest_http_settings *s,
                      ingest_http_handler_cb handler, void *user, struct sl_err *err)
{
    struct ingest_http *h = NULL;
    struct sockaddr_storage ss;
    socklen_t ss_len = 0;
    /* poll(), not epoll: with suspend/resume under a few hundred connections,
     * libmicrohttpd 0.9.75's epoll mode left requests unanswered until the idle timeout
     * (bench/README.md; tests/e2e/test_edge.c test_edge_many_connections_all_answered). */
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                         MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC;
    const union MHD_DaemonInfo *info;
    int rc;

    *out = NULL;
    h = sl_calloc(1, sizeof(*h));
    if (h == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory starting the HTTP server");
    }
    h->handler = handler;
    h->user = user;
    h->settings = *s;
    rc = parse_proxies(h, s->trusted_proxies, err);
    if (rc == 0) {
        rc = resolve_addr(s->addr, &ss, &ss_len, err);
    }
    if (rc != 0) {
        sl_free(h);
        return rc;
    }
    if (ss.ss_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }
    h->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)s->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)s->idle_timeout_s,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)s->threads,
        /* Headers live in this per-connection pool (bodies are copied out as they arrive);
         * MHD clears it per request, so smaller is faster. */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(16 * 1024),
        MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int)1,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h, MHD_OPTION_END);
    if (h->daemon == NULL) {
        sl_free(h);
        return sl_err_set(err, SL_EIO, "cannot listen on %s (address in use or not "
                          "permitted?)", s->addr);
    }
    info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info != NULL ? info->port : 0;
    *out = h;
    return 0;
}

void ingest_http_quiesce(struct ingest_http *h)
{
    MHD_socket fd = MHD_quiesce_daemon(h->daemon);

    if (fd != MHD_INVALID_SOCKET) {
        close(fd);
    }
}

size_t ingest_http_active(struct ingest_http *h)
{
    return atomic_load(&h->active);
}

int ingest_http_port(struct ingest_http *h)
{
    return h->port;
}

void ingest_http_stop(struct ingest_http *h)
{
    if (h == NULL) {
        return;
    }
    MHD_stop_daemon(h->daemon);
    sl_free(h);
}

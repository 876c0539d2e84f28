/* /health and /metrics on libmicrohttpd's internal thread; every answer is built whole and
 * copied into MHD's response. */
#include "http.h"

#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "alloc.h"
#include "log.h"
#include "loop.h"

#define COMPONENT "http"
#define METRICS_MAX_BYTES (4 * 1024 * 1024)

struct sched_http {
    struct MHD_Daemon *daemon;
    struct sched_loop *loop;
    struct sl_metrics *metrics;
};

static enum MHD_Result answer(struct MHD_Connection *conn, unsigned status,
                              const char *content_type, const char *body, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result rc;

    if (resp == NULL) {
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", content_type);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED) {
        MHD_add_response_header(resp, "Allow", "GET, HEAD");
    }
    rc = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result answer_error(struct MHD_Connection *conn, unsigned status,
                                    const char *message)
{
    char body[256];
    int n = snprintf(body, sizeof(body), "{\"error\":\"%s\"}\n", message);

    return answer(conn, status, "application/json", body, (size_t)n);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    static int first_call;
    struct sched_http *h = cls;

    if (*con_cls == NULL) {
        /* MHD calls again once the headers are in; answer then. */
        *con_cls = &first_call;
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        *upload_data_size = 0; /* a body on GET is ignored */
        return MHD_YES;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        return answer_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "use GET");
    }
    if (strcmp(url, "/health") == 0) {
        unsigned status = 500;
        char *text = sched_loop_health(h->loop, &status);
        enum MHD_Result rc;

        if (text == NULL) {
            return answer_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
        }
        rc = answer(conn, status, "application/json", text, strlen(text));
        sl_free(text);
        return rc;
    }
    if (strcmp(url, "/metrics") == 0) {
        struct sl_metrics_text text;
        enum MHD_Result rc;

        sl_metrics_text_init(&text, METRICS_MAX_BYTES);
        if (sl_metrics_render_prometheus(h->metrics, &text) != 0) {
            sl_metrics_text_fini(&text);
            return answer_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "metrics too large");
        }
        rc = answer(conn, MHD_HTTP_OK, "text/plain; version=0.0.4", text.data, text.len);
        sl_metrics_text_fini(&text);
        return rc;
    }
    return answer_error(conn, MHD_HTTP_NOT_FOUND, "not found; try /health or /metrics");
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];

    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    sl_log_warn(COMPONENT, "%s", msg);
}

static int resolve(const char *addr, struct sockaddr_storage *ss, struct sl_err *err)
{
    const char *colon = strrchr(addr, ':');
    struct addrinfo hints, *res = NULL;
    char host[256];
    size_t hlen;
    int rc;

    if (colon == NULL || (size_t)(colon - addr) >= sizeof(host)) {
        return sl_err_set(err, SL_EINVAL, "SLUICE_SCHEDULER_HTTP_ADDR: '%s' is not host:port",
                          addr);
    }
    hlen = (size_t)(colon - addr);
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
        return sl_err_set(err, SL_EINVAL, "SLUICE_SCHEDULER_HTTP_ADDR: cannot resolve '%s': %s",
                          addr, gai_strerror(rc));
    }
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

int sched_http_start(const char *addr, struct sched_loop *loop, struct sl_metrics *m,
                     struct sched_http **out, struct sl_err *err)
{
    struct sched_http *h = NULL;
    struct sockaddr_storage ss;
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO;
    int rc;

    *out = NULL;
    rc = resolve(addr, &ss, err);
    if (rc != 0) {
        return rc;
    }
    h = sl_calloc(1, sizeof(*h));
    if (h == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory starting the HTTP server");
    }
    h->loop = loop;
    h->metrics = m;
    if (ss.ss_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }
    h->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR,
                                 (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT,
                                 (unsigned int)64, MHD_OPTION_CONNECTION_TIMEOUT,
                                 (unsigned int)10, MHD_OPTION_LISTENING_ADDRESS_REUSE,
                                 (unsigned int)1, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
                                 MHD_OPTION_END);
    if (h->daemon == NULL) {
        sl_free(h);
        return sl_err_set(err, SL_EIO, "cannot listen on %s (address in use or not "
                          "permitted?)", addr);
    }
    *out = h;
    return 0;
}

void sched_http_stop(struct sched_http *h)
{
    if (h == NULL) {
        return;
    }
    MHD_stop_daemon(h->daemon);
    sl_free(h);
}

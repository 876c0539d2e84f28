/*
 * The HTTP server under the edge, on libmicrohttpd: keep-alive, a connection limit, idle
 * and header timeouts, a cap on the raw body, CORS headers, and the client address (from
 * the socket, or from X-Forwarded-For / X-Real-IP when the peer is a trusted proxy).
 *
 * Each complete request goes to one handler callback. The handler answers with
 * ingest_http_respond exactly once, either before it returns or later from any thread
 * (the connection is suspended meanwhile, holding no thread), so a request can wait for
 * Kafka's delivery reports. Routing and the meaning of requests live in the handler.
 */
#ifndef SLUICE_INGEST_HTTP_H
#define SLUICE_INGEST_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "err.h"

struct ingest_http;
struct ingest_http_req;

struct ingest_http_settings {
    char *addr;                /* SLUICE_HTTP_ADDR (host:port) */
    int64_t max_connections;   /* SLUICE_HTTP_MAX_CONNECTIONS */
    int64_t idle_timeout_s;    /* SLUICE_HTTP_IDLE_TIMEOUT_S */
    int64_t threads;           /* SLUICE_HTTP_THREADS */
    int64_t max_body_bytes;    /* SLUICE_MAX_BODY_BYTES (raw and decoded) */
    char *cors_origins;        /* SLUICE_CORS_ORIGINS: "*" or comma-separated origins */
    char *trusted_proxies;     /* SLUICE_TRUSTED_PROXIES: comma-separated CIDRs */
};

extern const struct sl_cfg_opt ingest_http_cfg_opts[];
extern const size_t ingest_http_cfg_n_opts;

/* Called on a server thread for each complete request; req is valid until it is answered. */
typedef void (*ingest_http_handler_cb)(void *user, struct ingest_http_req *req);

/*
 * Listens on s->addr and serves requests with handler (user is kept and passed back).
 * Fails with SL_EINVAL for a bad address or proxy list and SL_EIO when it cannot listen.
 */
int ingest_http_start(struct ingest_http **out, const struct ingest_http_settings *s,
                      ingest_http_handler_cb handler, void *user, struct sl_err *err);

/* Stops accepting new connections; requests in progress go on. */
void ingest_http_quiesce(struct ingest_http *h);

/* Requests being processed or waiting for their answer. */
size_t ingest_http_active(struct ingest_http *h);

/* Closes every connection and frees the server. Every request must have been answered.
 * Accepts NULL. */
void ingest_http_stop(struct ingest_http *h);

/* Port actually bound (useful with port 0). */
int ingest_http_port(struct ingest_http *h);

/* ---- one request (borrowed pointers, valid until the request is answered) ---- */

const char *ingest_http_req_method(const struct ingest_http_req *req);
const char *ingest_http_req_path(const struct ingest_http_req *req);
/* A request header by case-insensitive name, or NULL. */
const char *ingest_http_req_header(const struct ingest_http_req *req, const char *name);
/* The raw body (NUL-terminated). */
const char *ingest_http_req_body(const struct ingest_http_req *req, size_t *len);
/* True when the raw body passed max_body_bytes (it was not kept). */
bool ingest_http_req_body_too_large(const struct ingest_http_req *req);
/* The client's address as text (see trusted proxies). */
const char *ingest_http_req_client_ip(const struct ingest_http_req *req);

/*
 * Answers the request: status, a body (copied) of content_type, and optional extra headers
 * as "Name: value" strings (NULL-terminated array, may be NULL). CORS headers are added.
 * Call exactly once per request, from any thread.
 */
void ingest_http_respond(struct ingest_http_req *req, unsigned int status,
                         const char *content_type, const char *body, size_t len,
                         const char *const *headers);

#endif

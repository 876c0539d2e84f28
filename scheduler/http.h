/*
 * The scheduler's small HTTP server (libmicrohttpd, its own thread): GET /health (the
 * loop's JSON: leader or standby, lease, running jobs) and GET /metrics (Prometheus text).
 * It only reads: the loop's health snapshot and the metrics registry, both thread-safe.
 * The ingest edge has a server of its own; the two folders never share code.
 */
#ifndef SLUICE_SCHEDULER_HTTP_H
#define SLUICE_SCHEDULER_HTTP_H

#include "err.h"
#include "metrics.h"

struct sched_http;
struct sched_loop;

/*
 * Listens on addr ("host:port", "[ipv6]:port" or ":port") and serves loop (keeps) and m
 * (keeps) until sched_http_stop. Returns 0 and *out, or SL_EINVAL (address does not
 * resolve) / SL_EIO (cannot listen) with err naming the address; *out is NULL then.
 */
int sched_http_start(const char *addr, struct sched_loop *loop, struct sl_metrics *m,
                     struct sched_http **out, struct sl_err *err);

/* Stops serving (waits for requests in progress) and frees the server. Accepts NULL. */
void sched_http_stop(struct sched_http *h);

#endif

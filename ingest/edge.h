/*
 * The HTTP edge: POST /ingest (auth, content checks, decoding, validation, rate limits,
 * durable submit, and an answer only once the events are durable), CORS preflight, and
 * GET /health, /health/live, /health/ready, /stats, /metrics. It wires the modules of this
 * folder together; each keeps its own job (http.c serves, auth.c checks keys, event.c
 * validates, ratelimit.c meters, queue.c makes events durable).
 *
 * Bots: for a tenant with drop_bots (policy.h) every accepted event's user agent is checked
 * with the enrichment library's agent rules (enrich_check_agent: built-in markers, the
 * crawler list, and ua-parser's Spider device when the process loaded regexes.yaml), and
 * bots are dropped before rate limiting: the answer counts them as "dropped", and
 * sluice_edge_bots_dropped_total{reason} counts them by kind. Other tenants' events are not
 * checked at the edge (the loader flags bots in is_bot).
 */
#ifndef SLUICE_INGEST_EDGE_H
#define SLUICE_INGEST_EDGE_H

#include <stdbool.h>
#include <stddef.h>

#include "auth.h"
#include "enrich.h"
#include "err.h"
#include "event.h"
#include "http.h"
#include "loader.h"
#include "metrics.h"
#include "policy.h"
#include "queue.h"
#include "session.h"

struct ingest_edge;

/* What the edge is built from; every pointer is kept and must outlive the edge. */
struct ingest_edge_parts {
    const struct ingest_http_settings *http;
    const struct ingest_event_limits *limits;
    const struct ingest_producer_settings *producer; /* for the partition key strategy */
    struct ingest_auth *auth;   /* NULL with queue NULL: a loader-only process */
    struct ingest_queue *queue; /* NULL: POST /ingest answers 404 (SLUICE_INGEST_ROLES=loader) */
    struct sl_metrics *metrics;
    struct ingest_loader *loader; /* optional: its state goes into /health and /stats */
    struct ingest_session *sessions; /* optional: assigns sessions to events without one */
    /* Optional: the loader's enrichment, whose state /health reports and whose agent cache
     * answers the edge's bot checks. */
    struct enrich *enrich;
    /* Optional: tenants' drop_bots. Without it no event is dropped. */
    struct ingest_policy *policy;
    /* The enrichment settings, for the agent-only bot checker the edge makes the first time
     * a tenant drops bots and enrich is NULL (an edge-only process). May be NULL: then the
     * built-in rules alone. */
    const struct enrich_config *enrich_cfg;
};

/* Starts serving on parts->http->addr. *out is NULL on failure. */
int ingest_edge_start(struct ingest_edge **out, const struct ingest_edge_parts *parts,
                      struct sl_err *err);

/* The port it listens on. */
int ingest_edge_port(struct ingest_edge *e);

/*
 * First half of a graceful stop: refuses new connections, answers 503 (with Connection:
 * close) to any new request on an open connection, and waits up to drain_ms for the
 * requests in progress to be answered. Once it returns no request reaches the queue.
 * Requests still waiting for Kafka are answered when the queue is destroyed (its
 * deliveries flushed or spooled), so destroy the queue next.
 */
void ingest_edge_drain(struct ingest_edge *e, int drain_ms);

/* Second half: waits up to wait_ms for the last answers to go out, then closes every
 * connection and frees the edge. Accepts NULL. */
void ingest_edge_stop(struct ingest_edge *e, int wait_ms);

#endif

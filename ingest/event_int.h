/*
 * Internals shared by the files of the event module: event.c (settings, the request's
 * shape, the loop over its events, the response, and the small helpers below),
 * event_fields.c (checking the fields of one event) and event_norm.c (writing an accepted
 * event in its normalized form). It holds the state of one request, what one input event
 * holds while it is checked, and the calls between the three files. Nothing outside
 * ingest/event*.c includes this.
 */
#ifndef SLUICE_INGEST_EVENT_INT_H
#define SLUICE_INGEST_EVENT_INT_H

#include <jansson.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "event.h"
#include "json.h"
#include "timefmt.h"

#define INGEST_EVENT_N_TYPES (INGEST_EVENT_LOG + 1)

/* Longest user text quoted inside a reason, in bytes (then "..."). */
#define INGEST_EVENT_QUOTE_MAX 48
/* Room for a quoted value: INGEST_EVENT_QUOTE_MAX, "...", NUL. */
#define INGEST_EVENT_QUOTE_BUF (INGEST_EVENT_QUOTE_MAX + 4)

/* Top-level fields of an event, in the order they are checked and errors are listed. */
enum ingest_event_field {
    INGEST_EVENT_F_ID,
    INGEST_EVENT_F_TYPE,
    INGEST_EVENT_F_TENANT_ID,
    INGEST_EVENT_F_NAME,
    INGEST_EVENT_F_SESSION_ID,
    INGEST_EVENT_F_ANONYMOUS_ID,
    INGEST_EVENT_F_USER_ID,
    INGEST_EVENT_F_TIMESTAMP,
    INGEST_EVENT_F_SENT_AT,
    INGEST_EVENT_F_PROPERTIES,
    INGEST_EVENT_F_CONTEXT,
    INGEST_EVENT_F_SEVERITY,
    INGEST_EVENT_F_SOURCE,
    INGEST_EVENT_F_MESSAGE,
    INGEST_EVENT_N_FIELDS,
};

/* Context fields, in output order. */
enum ingest_event_ctx_field {
    INGEST_EVENT_C_USER_AGENT,
    INGEST_EVENT_C_IP,
    INGEST_EVENT_C_URL,
    INGEST_EVENT_C_PATH,
    INGEST_EVENT_C_REFERRER,
    INGEST_EVENT_C_TITLE,
    INGEST_EVENT_C_SCREEN,
    INGEST_EVENT_C_VIEWPORT,
    INGEST_EVENT_C_TIMEZONE,
    INGEST_EVENT_C_LANGUAGE,
    INGEST_EVENT_N_CTX_FIELDS,
};

/* A context field: its JSON name, and whether it takes the longer URL limit. */
struct ingest_event_ctx_def {
    const char *name;
    bool is_url;
};

/* The context fields by enum ingest_event_ctx_field (in event_fields.c). */
extern const struct ingest_event_ctx_def ingest_event_fields_ctx[INGEST_EVENT_N_CTX_FIELDS];

/* The state of one request, shared by everything that checks and writes its events. */
struct ingest_event_run {
    const struct ingest_event_limits *lim;
    const struct ingest_event_ctx *ctx;
    struct ingest_event_batch *out;
    struct sl_json_buf scratch;  /* the event being written */
    struct sl_json_buf props;    /* its properties as compact JSON */
    size_t index;                /* input index of the event being checked */
    size_t n_event_errors;       /* its errors so far, listed or not */
    size_t max_errors;           /* size bound of out->errors */
    int rc;                      /* sticky SL_ENOMEM of add_error */
    bool has_sent_at;            /* the batch object's sent_at */
    int64_t sent_at_us;
    const char *header_ua;       /* ctx->user_agent when usable, cut to the limit */
    const json_t *header_hints;  /* ctx->client_hints (borrowed), or NULL */
    size_t header_ua_len;
    bool has_client_ip;
    char client_ip[INET6_ADDRSTRLEN];
    char received_at[SL_TIMEFMT_ISO_MS_MAX]; /* ctx->received_us as written */
};

/* What one event holds, borrowed from the parsed body, plus what checking derived. */
struct ingest_event_in {
    json_t *v[INGEST_EVENT_N_FIELDS];            /* NULL when absent or null */
    bool has_type;
    enum ingest_event_type type;
    bool has_id;
    char id[INGEST_EVENT_ID_LEN + 1];
    int64_t ts_us;
    unsigned flags;
    const char *severity;                        /* its canonical name (static); "info" unless
                                                  * a log event says otherwise */
    json_t *ctx_v[INGEST_EVENT_N_CTX_FIELDS];    /* non-empty strings only */
    json_t *ctx_hints;                           /* context.client_hints: a checked object */
    bool has_ip;
    char ip[INET6_ADDRSTRLEN];
    char assigned_session[INGEST_EVENT_ID_LEN + 1]; /* "" unless ctx->assign_session gave one */
};

/* ---- event.c ---- */

/*
 * Writes user text s (len bytes, borrowed) into out for quoting in a reason: at most
 * INGEST_EVENT_QUOTE_MAX bytes, cut on a character boundary with "..." appended, control
 * characters shown as '?'. Never fails.
 */
void ingest_event_quote(char out[INGEST_EVENT_QUOTE_BUF], const char *s, size_t len);

/* What v is, for a reason: "an object", "a string", "a number", ... Never fails. */
const char *ingest_event_kind(const json_t *v);

/*
 * Parses an IPv4 or IPv6 address (s, len bytes, borrowed; no zone, no port) and writes its
 * canonical text into out. Returns 0, or SL_EINVAL (out unspecified) when s is not one.
 */
int ingest_event_parse_ip(const char *s, size_t len, char out[INET6_ADDRSTRLEN]);

/* ---- event_fields.c ---- */

/*
 * Checks every field of the event ev (borrowed) at r->index against r->lim, filling in
 * (zeroed by the caller) and listing each problem in r->out->errors (r->n_event_errors
 * counts them; an allocation failure there is left in r->rc). Returns 0, or SL_EDENIED
 * (err says why) when the event names a tenant other than the request's.
 */
int ingest_event_fields_check(struct ingest_event_run *r, json_t *ev, struct ingest_event_in *in,
                              struct sl_err *err);

/* ---- event_norm.c ---- */

/*
 * Writes the checked, error-free event in (its id generated when it had none) as normalized
 * JSON and appends it to r->out->events, which has room for it. Fails with SL_EIO (the
 * random generator failed) or SL_ENOMEM; err says which event.
 */
int ingest_event_norm_accept(struct ingest_event_run *r, struct ingest_event_in *in,
                             struct sl_err *err);

/*
 * Largest normalized event the limits (borrowed) allow for tenant_id (borrowed), the
 * maximum of the scratch buffer the events are written into. Never fails.
 */
size_t ingest_event_norm_max_bytes(const struct ingest_event_limits *lim, const char *tenant_id);

#endif

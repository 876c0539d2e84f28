/*
 * Events of POST /ingest: parsing the request body, validating every event against the
 * limits, and normalizing the good ones into the compact JSON that goes onto Kafka (or the
 * spool) as the message value. The body is one event object or {"events":[...]}; the
 * result is, per input index, either a normalized event or the reasons it was rejected.
 * The schema, limits and response format are documented for users in README.md ("Sending events").
 *
 * Authentication, rate limits, producing and the HTTP answer itself are the edge's; this
 * module does no I/O, keeps no state between calls and logs nothing (per-event problems are
 * returned, counters belong to the caller). Any thread may call; calls share nothing.
 */
#ifndef SLUICE_INGEST_EVENT_H
#define SLUICE_INGEST_EVENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "err.h"

/* Length of an event id in the 8-4-4-4-12 form, without the NUL. */
#define INGEST_EVENT_ID_LEN 36

/* Sizes of the text fields of a per-event error (with the NUL). */
#define INGEST_EVENT_FIELD_MAX 64
#define INGEST_EVENT_REASON_MAX 256

/* At most this many errors are listed per event; further ones are not reported. */
#define INGEST_EVENT_MAX_ERRORS_PER_EVENT 8

/*
 * Limits on one request and its events. Lengths are in bytes of UTF-8. The fields are
 * int64_t so the settings table below can bind them; values must be positive.
 */
struct ingest_event_limits {
    int64_t max_batch_events;     /* SLUICE_EVENT_MAX_BATCH: events per request (1000) */
    int64_t max_name_bytes;       /* SLUICE_EVENT_MAX_NAME_BYTES: name (256) */
    int64_t max_ident_bytes;      /* SLUICE_EVENT_MAX_IDENT_BYTES: session_id, anonymous_id,
                                   * user_id (256) */
    int64_t max_context_bytes;    /* SLUICE_EVENT_MAX_CONTEXT_BYTES: each context text field
                                   * other than the URLs (1024) */
    int64_t max_url_bytes;        /* SLUICE_EVENT_MAX_URL_BYTES: context.url, .path,
                                   * .referrer (4096) */
    int64_t max_properties_bytes; /* SLUICE_EVENT_MAX_PROPERTIES_BYTES: properties as compact
                                   * JSON (16384) */
    int64_t max_properties_depth; /* SLUICE_EVENT_MAX_PROPERTIES_DEPTH: nesting levels,
                                   * properties itself being level 1 (8) */
    int64_t max_message_bytes;    /* SLUICE_EVENT_MAX_MESSAGE_BYTES: log message (32768) */
    int64_t max_source_bytes;     /* SLUICE_EVENT_MAX_SOURCE_BYTES: log source (256) */
    int64_t max_past_days;        /* SLUICE_EVENT_MAX_PAST_DAYS: older events are rejected (30) */
    int64_t max_future_s;         /* SLUICE_EVENT_MAX_FUTURE_S: later events are clamped to the
                                   * receive time (86400) */
};

/* The settings table (SLUICE_EVENT_*), bound to struct ingest_event_limits. */
extern const struct sl_cfg_opt ingest_event_cfg_opts[];
extern const size_t ingest_event_cfg_n_opts;

/* The default limits (the same values as the settings table's defaults). Never fails. */
struct ingest_event_limits ingest_event_limits_default(void);

/* What the edge knows about the request. Every pointer is borrowed for the call. */
struct ingest_event_ctx {
    const char *tenant_id;  /* the API key's tenant; required, written into every event */
    int64_t received_us;    /* when the request arrived, unix microseconds */
    const char *client_ip;  /* socket peer address as text; used when context.ip is absent;
                             * NULL if unknown */
    const char *user_agent; /* the User-Agent header; used when context.user_agent is absent;
                             * NULL if none. Cut to max_context_bytes; dropped if not UTF-8 */
    const json_t *client_hints; /* the request's Sec-CH-UA* headers as an object (name ->
                                 * value), already checked; used when context.client_hints
                                 * is absent; NULL if none */
    /*
     * Optional (NULL: off): gives a session to an accepted event that has an anonymous_id
     * but no session_id, by writing a NUL-terminated id of at most INGEST_EVENT_ID_LEN
     * bytes into out; the event is then flagged "session_assigned". A non-zero return
     * leaves the event without a session.
     */
    int (*assign_session)(void *user, const char *tenant_id, const char *anonymous_id,
                          size_t anonymous_len, int64_t ts_ms,
                          char out[INGEST_EVENT_ID_LEN + 1]);
    void *assign_session_user;
};

enum ingest_event_type {
    INGEST_EVENT_PAGEVIEW,
    INGEST_EVENT_CLICK,
    INGEST_EVENT_SCROLL,
    INGEST_EVENT_PERFORMANCE,
    INGEST_EVENT_CUSTOM,
    INGEST_EVENT_IDENTIFY,
    INGEST_EVENT_LOG,
};

/* Name of a type as it appears in JSON ("pageview", ...). Never fails. */
const char *ingest_event_type_name(enum ingest_event_type type);

/* Bits of struct ingest_event.flags; the JSON carries the same as strings in "flags". */
enum {
    INGEST_EVENT_FLAG_ID_GENERATED = 1 << 0,        /* "id_generated" */
    INGEST_EVENT_FLAG_SKEW_CORRECTED = 1 << 1,      /* "clock_skew_corrected" */
    INGEST_EVENT_FLAG_FUTURE_CLAMPED = 1 << 2,      /* "future_clamped" */
    INGEST_EVENT_FLAG_SESSION_ASSIGNED = 1 << 3,    /* "session_assigned" */
};

/* One accepted event. Read-only for callers; owned by its batch. */
struct ingest_event {
    size_t index;                       /* position in the request (0 for a single object) */
    enum ingest_event_type type;
    char id[INGEST_EVENT_ID_LEN + 1];   /* lowercase 8-4-4-4-12 */
    const char *session_id;             /* NUL-terminated; NULL when the event has none */
    int64_t ts_ms;                      /* event time after correction, unix milliseconds */
    unsigned flags;                     /* INGEST_EVENT_FLAG_* */
    char *json;                         /* the normalized event, compact, NUL-terminated */
    size_t json_len;                    /* bytes of json without the NUL */
};

/* Why one input event was rejected. field is a JSON path ("context.ip"), "" for the event
 * as a whole (it was not an object). Both texts are valid UTF-8. */
struct ingest_event_error {
    size_t index;
    char field[INGEST_EVENT_FIELD_MAX];
    char reason[INGEST_EVENT_REASON_MAX];
};

/*
 * The outcome of one request. Caller-provided storage filled by ingest_event_parse_batch;
 * the fields are read-only for callers and released with ingest_event_batch_fini.
 */
struct ingest_event_batch {
    struct ingest_event *events;        /* accepted events in input order */
    size_t n_events;
    struct ingest_event_error *errors;  /* by input index, then field order */
    size_t n_errors;
    size_t n_input;                     /* events in the request */
    size_t n_rejected;                  /* input events that have errors */
    size_t n_dropped;                   /* accepted events the edge dropped afterwards
                                         * (bots, ingest_event_batch_drop) */
    int http_status;                    /* what the edge should answer: see parse_batch */
    size_t _errors_cap;                 /* private */
};

/*
 * Parses the request body (borrowed, len bytes, need not be NUL-terminated), validates
 * each event against lim (borrowed; NULL means the defaults) and normalizes the good ones.
 * ctx (borrowed) must carry a tenant_id. *out need not be initialized; on every return it
 * is valid for ingest_event_batch_fini and out->http_status says how to answer:
 *
 *   0            every event checked; out->events are the accepted ones in input order,
 *                out->errors the reasons for the rest. http_status is 200 when at least
 *                one event was accepted (the response body lists the rejected ones), 422
 *                when none was.
 *   SL_EINVAL    the request as a whole is bad; nothing is accepted and err says why:
 *                http_status 400 for a body that is not JSON (err has jansson's line and
 *                column), a wrong shape (not an object, events not a non-empty array, an
 *                unknown batch field, a bad batch sent_at); 413 for more than
 *                max_batch_events events.
 *   SL_EDENIED   an event names a tenant_id other than ctx->tenant_id; the whole request
 *                is refused (http_status 403), err names the event index.
 *   SL_ENOMEM    an allocation failed (http_status 503).
 *   SL_EIO       the random generator failed to make an event id (http_status 500).
 *
 * On failure out holds no events and no errors. err may be NULL.
 */
int ingest_event_parse_batch(const char *body, size_t len, const struct ingest_event_limits *lim,
                             const struct ingest_event_ctx *ctx, struct ingest_event_batch *out,
                             struct sl_err *err);

/*
 * Removes the accepted events i for which drop[i] is true (drop has n_events entries,
 * borrowed), keeping the others in order, and counts them in n_dropped. Never fails.
 */
void ingest_event_batch_drop(struct ingest_event_batch *batch, const bool *drop);

/* Frees what the batch owns and zeroes it. Accepts NULL and a zeroed batch. */
void ingest_event_batch_fini(struct ingest_event_batch *batch);

/*
 * Renders the response body for a parsed batch:
 * {"accepted":N,"rejected":M,"errors":[{"index":i,"field":"...","reason":"..."},...]}
 * with field null for errors about the event as a whole, and "dropped":K after "rejected"
 * when the edge dropped K accepted events (bots of a tenant that drops them). "accepted" counts batch->events,
 * so answer with it only once they are durable. batch is borrowed. *out is new (free with
 * sl_free), NUL-terminated, *out_len bytes long. Fails only with SL_ENOMEM (*out is then
 * NULL).
 */
int ingest_event_batch_response(const struct ingest_event_batch *batch, char **out,
                                size_t *out_len);

#endif

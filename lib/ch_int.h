/*
 * Internals shared by ch.c (settings, the client's life, the public calls) and ch_http.c
 * (the curl transport: one request with its attempts, retries and KILL QUERY): the
 * client's layout, one request's layout, and the calls ch.c makes into the transport.
 * Buffers and parsing live in ch_escape.c behind ch.h. Nothing outside lib/ch*.c includes
 * this.
 */
#ifndef SLUICE_LIB_CH_INT_H
#define SLUICE_LIB_CH_INT_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ch.h"
#include "err.h"

#define SL_CH_STREAM_HOLD_BYTES (16 * 1024) /* tail of a stream checked for an appended error */
#define SL_CH_QUERY_ID_MAX 48

struct sl_ch {
    CURL *curl;
    CURLU *base;                        /* the settings URL */
    char *display_url;                  /* base as text for messages (never has credentials) */
    char *database;                     /* NULL: the server's default */
    struct curl_slist *headers;         /* auth, content type, no Expect */
    struct curl_slist *chunked_headers; /* the same plus Transfer-Encoding: chunked */
    int64_t timeout_ms;
    int64_t connect_timeout_ms;
    int64_t max_retries;
    int64_t retry_base_ms;
    int64_t retry_max_ms;
    size_t max_result_bytes;
    uint64_t rng;                       /* splitmix64 state for query ids and jitter */
    uint32_t n_requests;
    bool has_version;
    int version[3];
    char curl_err[CURL_ERROR_SIZE];
};

/* One request and the state of its current attempt. */
struct sl_ch_req {
    struct sl_ch *ch;
    const char *what;             /* "query", "insert", ... for messages */
    const char *query_param;      /* sent as ?query= (inserts); NULL for none */
    const char *body;             /* POST body (SQL or data); NULL with read_cb or ping */
    size_t body_len;
    sl_ch_read_cb read_cb;        /* chunked POST body */
    void *read_user;
    sl_ch_write_cb write_cb;      /* streamed output */
    void *write_user;
    struct sl_ch_buf *out;        /* buffered output; NULL discards it */
    int64_t timeout_ms;
    bool is_ping;
    bool wait_end;                /* wait_end_of_query=1 */
    bool can_retry;
    bool is_kill;                 /* the KILL QUERY itself: never killed in turn */
    /* Per attempt. */
    char query_id[SL_CH_QUERY_ID_MAX];
    long status;
    struct sl_ch_buf errbody;     /* body of a non-200 answer, its first 64 KiB */
    int out_rc;                   /* why buffering the output failed */
    bool cb_stopped;              /* a callback of the caller asked to stop */
    bool timed_out;               /* the request was sent and then timed out */
    size_t bytes_read;            /* from read_cb */
    size_t bytes_delivered;       /* to write_cb, over all attempts */
    char *hold;                   /* stream: the last bytes, not yet delivered */
    size_t hold_len;
};

/*
 * Initialises libcurl once per process (later calls only report the first outcome).
 * Fails with SL_ENOMEM when curl_global_init failed. Any thread.
 */
int sl_ch_http_global_init(struct sl_err *err);

/* Seeds ch's generator of query ids and jitter from getrandom, else from the clock, the
 * process id and ch's address. Never fails. */
void sl_ch_http_seed(struct sl_ch *ch);

/* Prepares r (caller's storage) for one request of ch, `what` ("query", "insert", ...) a
 * static name for messages, with the client's timeout and retries allowed. The caller then
 * sets the body, sinks and flags. Does not allocate. */
void sl_ch_http_req_init(struct sl_ch_req *r, struct sl_ch *ch, const char *what);

/* Frees what r holds. */
void sl_ch_http_req_fini(struct sl_ch_req *r);

/*
 * Runs r: fresh query_id per attempt, retries of network errors and transient server codes
 * (when r->can_retry and nothing reached r->write_cb) with full-jitter backoff sleeps, and
 * a best-effort KILL QUERY after a timeout. Fails as sl_ch_query documents; err (may be
 * NULL) gets the last failure. Blocks the calling thread.
 */
int sl_ch_http_perform(struct sl_ch *ch, struct sl_ch_req *r, struct sl_err *err);

#endif

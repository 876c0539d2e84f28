/*
 * ClickHouse HTTP client. One struct sl_ch wraps one libcurl easy handle whose connection is
 * kept alive between requests. It runs SQL (sl_ch_query, sl_ch_exec, sl_ch_query_stream),
 * inserts data sent as the request body (sl_ch_insert, sl_ch_insert_stream), pings the
 * server and detects its version. Every request carries a fresh query_id and
 * max_execution_time so a query the client gave up on can be killed; failures come back as
 * SL_ESERVER with the server's code and message, SL_ENET or SL_ETIMEDOUT. Network errors and
 * transient server codes are retried with exponential backoff and full jitter.
 *
 * Threads: a client is not thread-safe; use one per thread. Every call blocks the calling
 * thread, backoff sleeps included, so callers on an event loop run them through
 * uv_queue_work. sl_ch_create may be called from any thread.
 *
 * The second half of this header (buffers, quoting, RowBinary encoders, error body parsing)
 * does no I/O; it lives in ch_escape.c and is safe from any thread on separate buffers.
 * Values reach SQL only through sl_ch_quote or as RowBinary data, never spliced raw.
 */
#ifndef SLUICE_LIB_CH_H
#define SLUICE_LIB_CH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "err.h"

/* Settings of the ClickHouse client. Strings are owned by the cfg module (sl_cfg_fini). */
struct sl_ch_settings {
    char *url;                  /* SLUICE_CLICKHOUSE_URL, e.g. http://127.0.0.1:8123 */
    char *database;             /* SLUICE_CLICKHOUSE_DATABASE; NULL or "" sends none */
    char *user;                 /* SLUICE_CLICKHOUSE_USER; NULL or "" sends none */
    char *password;             /* SLUICE_CLICKHOUSE_PASSWORD (secret); NULL or "" sends none */
    int64_t timeout_ms;         /* whole request; also max_execution_time, rounded up to s */
    int64_t connect_timeout_ms; /* TCP connect */
    int64_t max_retries;        /* retries after the first attempt (0: try once) */
    int64_t retry_base_ms;      /* first backoff ceiling; doubles per retry */
    int64_t retry_max_ms;       /* largest backoff ceiling */
    int64_t max_result_bytes;   /* largest body sl_ch_query buffers */
};

/* The module's settings table (SLUICE_CLICKHOUSE_*), bound to struct sl_ch_settings. */
extern const struct sl_cfg_opt sl_ch_cfg_opts[];
extern const size_t sl_ch_cfg_n_opts;

struct sl_ch;

/* A buffered query result. */
struct sl_ch_result {
    char *body; /* response body, NUL-terminated after len bytes; owned, see _fini */
    size_t len;
};

/*
 * Body source of sl_ch_insert_stream. Fills up to cap bytes of buf and returns how many it
 * wrote; 0 ends the body; SL_CH_READ_ABORT stops the insert (it fails with SL_ECANCELED).
 */
typedef size_t (*sl_ch_read_cb)(void *buf, size_t cap, void *user);
#define SL_CH_READ_ABORT SIZE_MAX

/* Sink of sl_ch_query_stream: gets the next len bytes; returns 0 to go on, else stops. */
typedef int (*sl_ch_write_cb)(const void *data, size_t len, void *user);

/*
 * Creates a client. Borrows settings: copies what it needs, so they may be freed after.
 * Checks the settings (URL, database name, positive timeouts). Does not connect.
 * Fails with SL_EINVAL (bad settings) or SL_ENOMEM; then *out is NULL and err says why.
 */
int sl_ch_create(struct sl_ch **out, const struct sl_ch_settings *settings,
                 struct sl_err *err);

/* Closes the connection and frees the client. Accepts NULL. */
void sl_ch_destroy(struct sl_ch *ch);

/*
 * Runs one SQL statement (sql borrowed) and returns the whole response body in *out, in the
 * format the statement asks for (`... FORMAT TabSeparated`, `FORMAT JSONEachRow`). The
 * server holds the answer until the query ended (wait_end_of_query=1), so a 200 body is
 * complete. *out is filled on success (free with sl_ch_result_fini) and zeroed on failure.
 * Fails with SL_ESERVER (err->remote_code is the server's code), SL_ENET, SL_ETIMEDOUT
 * (after a best-effort KILL QUERY), SL_EINVAL (body larger than max_result_bytes) or
 * SL_ENOMEM. Retries network errors and transient server codes.
 */
int sl_ch_query(struct sl_ch *ch, const char *sql, struct sl_ch_result *out,
                struct sl_err *err);

/* Frees a result's body and zeroes it. Accepts a zeroed result. */
void sl_ch_result_fini(struct sl_ch_result *res);

/* As sl_ch_query for statements whose output is not wanted (DDL, ALTER, KILL). */
int sl_ch_exec(struct sl_ch *ch, const char *sql, struct sl_err *err);

/*
 * Runs sql (borrowed) and passes the body to cb as it arrives, for results too large to
 * buffer (exports). The server streams without wait_end_of_query, so it can fail after it
 * sent 200: the client holds back the last 16 KiB and checks it for an appended
 * "Code: N ... DB::Exception"; on failure the data cb received is incomplete and must be
 * dropped. A result whose own last line looks like a ClickHouse exception (e.g. the
 * exception column of system.query_log as TSV) is taken for such an error.
 * Retried only while cb has received nothing. cb runs on the calling thread; returning
 * non-zero fails the call with SL_ECANCELED. Other failures as sl_ch_query.
 */
int sl_ch_query_stream(struct sl_ch *ch, const char *sql, sl_ch_write_cb cb, void *user,
                       struct sl_err *err);

/*
 * Inserts data as the body of `insert_sql` (borrowed; e.g. "INSERT INTO db.t (a, b) FORMAT
 * RowBinary", sent as the query URL parameter). data (borrowed, len bytes) is not copied.
 * Retried as sl_ch_query; after an ambiguous failure (connection lost after the body went
 * out, timeout) the rows may already be stored, so tables must tolerate a repeated batch.
 * Fails as sl_ch_query; bad data comes back as SL_ESERVER with the server's code.
 */
int sl_ch_insert(struct sl_ch *ch, const char *insert_sql, const void *data, size_t len,
                 struct sl_err *err);

/*
 * As sl_ch_insert with the body read from cb in chunked transfer encoding. cb cannot be
 * rewound, so the insert is not retried (a stale keep-alive connection is still replaced
 * before the first byte is read). cb runs on the calling thread until it returns 0.
 */
int sl_ch_insert_stream(struct sl_ch *ch, const char *insert_sql, sl_ch_read_cb cb,
                        void *user, struct sl_err *err);

/*
 * Returns the server version (`SELECT version()`, e.g. 18.16.1) in *major, *minor, *patch,
 * asked once and cached in the client. Outputs are unchanged on failure; fails as
 * sl_ch_query, or SL_ESERVER if the answer is not a version.
 */
int sl_ch_server_version(struct sl_ch *ch, int *major, int *minor, int *patch,
                         struct sl_err *err);

/*
 * GET /ping, expecting "Ok.". One attempt, no retries, so a health check answers fast.
 * Fails with SL_ENET, SL_ETIMEDOUT or SL_ESERVER.
 */
int sl_ch_ping(struct sl_ch *ch, struct sl_err *err);

/* Whether a ClickHouse error code is transient, i.e. worth retrying the same request. */
bool sl_ch_is_transient(long remote_code);

/*
 * Growable byte buffer for SQL text and RowBinary rows. The layout is public so callers can
 * embed it; read data and len, leave the underscored fields alone.
 */
struct sl_ch_buf {
    char *data;  /* read-only: the bytes, NUL-terminated after len; NULL before the first */
    size_t len;  /* read-only: bytes held, terminator excluded */
    size_t _cap; /* private: bytes allocated */
    size_t _max; /* private: most bytes it may hold */
};

/* Prepares an empty buffer that will refuse to grow past max_bytes. Does not allocate. */
void sl_ch_buf_init(struct sl_ch_buf *b, size_t max_bytes);

/* Frees the bytes; the buffer is empty after and may be used again. */
void sl_ch_buf_fini(struct sl_ch_buf *b);

/* Empties the buffer, keeping its memory. */
void sl_ch_buf_reset(struct sl_ch_buf *b);

/*
 * Appenders. Each appends all of its bytes or none: on failure the buffer is unchanged.
 * All fail with SL_EINVAL when the buffer would pass its maximum, SL_ENOMEM when memory
 * runs out. Inputs are borrowed.
 */
int sl_ch_buf_append(struct sl_ch_buf *b, const void *data, size_t len);
int sl_ch_buf_append_str(struct sl_ch_buf *b, const char *s);
int sl_ch_buf_appendf(struct sl_ch_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Appends s (len bytes, may hold NUL) as a single-quoted ClickHouse string literal:
 * backslash and quote are escaped, \0 \n \r \t spelled out, other bytes below 0x20 as \xHH;
 * other bytes (UTF-8 included) are copied.
 */
int sl_ch_quote(struct sl_ch_buf *b, const char *s, size_t len);

/*
 * Appends s (len bytes) as a backquoted identifier, escaping backquote, backslash and
 * control bytes. Fails with SL_EINVAL (buffer unchanged) for an empty name or one with NUL.
 */
int sl_ch_quote_ident(struct sl_ch_buf *b, const char *s, size_t len);

/* Appends `database`.`table`, both quoted as identifiers; SL_EINVAL as sl_ch_quote_ident. */
int sl_ch_quote_table(struct sl_ch_buf *b, const char *database, const char *table);

/*
 * RowBinary encoders, appending one value each. Integers and floats little-endian; String
 * is a LEB128 length then the bytes; DateTime is UInt32 unix seconds; an Array is
 * sl_ch_rb_array_len(n) followed by its n elements; UUID (16 bytes in text order) is
 * written as two little-endian UInt64 halves, high half first.
 */
int sl_ch_rb_string(struct sl_ch_buf *b, const void *s, size_t len);
int sl_ch_rb_u8(struct sl_ch_buf *b, uint8_t v);
int sl_ch_rb_u16(struct sl_ch_buf *b, uint16_t v);
int sl_ch_rb_u32(struct sl_ch_buf *b, uint32_t v);
int sl_ch_rb_u64(struct sl_ch_buf *b, uint64_t v);
int sl_ch_rb_i64(struct sl_ch_buf *b, int64_t v);
int sl_ch_rb_f64(struct sl_ch_buf *b, double v);
int sl_ch_rb_datetime(struct sl_ch_buf *b, uint32_t unix_s);
int sl_ch_rb_array_len(struct sl_ch_buf *b, uint64_t n);
int sl_ch_rb_uuid(struct sl_ch_buf *b, const uint8_t uuid[16]);

/*
 * Parses an error body ("Code: 60, e.displayText() = DB::Exception: Table x doesn't exist.,
 * e.what() = DB::Exception" on 18.16, "Code: 60. DB::Exception: ... (version ...)" on newer
 * servers). Borrows body (len bytes, need not be NUL-terminated). Writes the code to *code
 * and the message's first line, trimmed and cut to msg_cap - 1 bytes, to msg. Returns 0, or
 * SL_ENOTFOUND when there is no "Code: N" (then *code is 0 and msg has the body's first
 * line, so a proxy's error page still says something).
 */
int sl_ch_parse_error(const char *body, size_t len, long *code, char *msg, size_t msg_cap);

/*
 * Looks for an exception the server appended to a 200 body: a line starting
 * "Code: N, e.displayText() = DB::Exception" or "Code: N. DB::Exception" at the end of body.
 * Returns 0 and fills *code and msg as sl_ch_parse_error, or SL_ENOTFOUND.
 */
int sl_ch_parse_tail_error(const char *body, size_t len, long *code, char *msg,
                           size_t msg_cap);

#endif

/*
 * The ClickHouse client's transport over libcurl: setting up the easy handle for one
 * attempt (URL with query_id, database, max_execution_time and wait_end_of_query; headers;
 * body from memory or a callback; output buffered, streamed with its tail held back, or
 * discarded), running it and mapping the answer to an SL_E code, retrying network errors
 * and transient server codes with full-jitter exponential backoff, and a best-effort KILL
 * QUERY after a timeout. The settings, the client's state and the public calls are ch.c's;
 * parsing error bodies is ch_escape.c's.
 */
#include "ch_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "log.h"

#define COMPONENT "ch"
#define ERR_BODY_MAX (64 * 1024)        /* bytes of an error body kept for parsing */
#define KILL_TIMEOUT_MS 5000
#define KILL_SQL_MAX 256
/* 18.16 closes idle keep-alive connections after 3 s; never reuse one idle longer than 2 s
 * so a request does not race the server's close. */
#define CONN_MAX_IDLE_S 2L

/* GLOBAL: libcurl's one-time initialisation; written once under curl_once, read after. */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void init_curl(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int sl_ch_http_global_init(struct sl_err *err)
{
    pthread_once(&curl_once, init_curl);
    if (curl_init_rc != CURLE_OK) {
        return sl_err_set(err, SL_ENOMEM, "curl_global_init failed: %s",
                          curl_easy_strerror(curl_init_rc));
    }
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    struct timespec left = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

    while (nanosleep(&left, &left) != 0 && errno == EINTR) {
    }
}

static uint64_t next_rand(struct sl_ch *ch)
{
    uint64_t z = (ch->rng += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Full jitter: random in [0, min(max, base * 2^retry)]. */
static int64_t backoff_ms(struct sl_ch *ch, int retry)
{
    int64_t ceiling = ch->retry_base_ms;

    for (int i = 0; i < retry && ceiling < ch->retry_max_ms; i++) {
        ceiling *= 2;
    }
    if (ceiling > ch->retry_max_ms) {
        ceiling = ch->retry_max_ms;
    }
    return (int64_t)(next_rand(ch) % (uint64_t)(ceiling + 1));
}

void sl_ch_http_seed(struct sl_ch *ch)
{
    uint64_t seed = 0;

    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
        seed = (uint64_t)now_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)ch;
    }
    ch->rng = seed;
}

void sl_ch_http_req_init(struct sl_ch_req *r, struct sl_ch *ch, const char *what)
{
    memset(r, 0, sizeof(*r));
    r->ch = ch;
    r->what = what;
    r->timeout_ms = ch->timeout_ms;
    r->can_retry = true;
    sl_ch_buf_init(&r->errbody, ERR_BODY_MAX);
}

void sl_ch_http_req_fini(struct sl_ch_req *r)
{
    sl_ch_buf_fini(&r->errbody);
}

/* Appends name=value to the URL's query string, URL-encoding the value. */
static CURLUcode add_param(CURLU *u, const char *name, const char *value)
{
    struct sl_ch_buf kv;
    CURLUcode uc = CURLUE_OUT_OF_MEMORY;

    sl_ch_buf_init(&kv, SIZE_MAX / 2);
    if (sl_ch_buf_appendf(&kv, "%s=%s", name, value) == 0) {
        uc = curl_url_set(u, CURLUPART_QUERY, kv.data, CURLU_APPENDQUERY | CURLU_URLENCODE);
    }
    sl_ch_buf_fini(&kv);
    return uc;
}

/* Returns the attempt's URL in *out (free with curl_free). */
static int build_url(struct sl_ch *ch, const struct sl_ch_req *r, char **out,
                     struct sl_err *err)
{
    CURLU *u = curl_url_dup(ch->base);
    CURLUcode uc = u != NULL ? CURLUE_OK : CURLUE_OUT_OF_MEMORY;
    char num[32];

    if (uc == CURLUE_OK && r->is_ping) {
        char *path = NULL;
        struct sl_ch_buf p;

        /* /ping next to the configured path, which may sit behind a proxy prefix. */
        sl_ch_buf_init(&p, 4096);
        uc = curl_url_get(u, CURLUPART_PATH, &path, 0);
        if (uc == CURLUE_OK) {
            size_t n = strlen(path);
            const char *sep = n > 0 && path[n - 1] == '/' ? "" : "/";

            uc = CURLUE_OUT_OF_MEMORY;
            if (sl_ch_buf_appendf(&p, "%s%sping", path, sep) == 0) {
                uc = curl_url_set(u, CURLUPART_PATH, p.data, 0);
            }
        }
        curl_free(path);
        sl_ch_buf_fini(&p);
    }
    else if (uc == CURLUE_OK) {
        snprintf(num, sizeof(num), "%" PRId64, (r->timeout_ms + 999) / 1000);
        uc = add_param(u, "query_id", r->query_id);
        if (uc == CURLUE_OK && ch->database != NULL) {
            uc = add_param(u, "database", ch->database);
        }
        if (uc == CURLUE_OK) {
            uc = add_param(u, "max_execution_time", num);
        }
        if (uc == CURLUE_OK && r->wait_end) {
            uc = add_param(u, "wait_end_of_query", "1");
        }
        if (uc == CURLUE_OK && r->query_param != NULL) {
            uc = add_param(u, "query", r->query_param);
        }
    }
    if (uc == CURLUE_OK) {
        uc = curl_url_get(u, CURLUPART_URL, out, 0);
    }
    curl_url_cleanup(u);
    if (uc != CURLUE_OK) {
        return sl_err_set(err, uc == CURLUE_OUT_OF_MEMORY ? SL_ENOMEM : SL_EINVAL,
                          "cannot build ClickHouse URL: %s", curl_url_strerror(uc));
    }
    return 0;
}

/* Passes n bytes to the caller's sink; false when it asked to stop. */
static bool deliver(struct sl_ch_req *r, const char *p, size_t n)
{
    if (n == 0) {
        return true;
    }
    r->bytes_delivered += n;
    if (r->write_cb(p, n, r->write_user) != 0) {
        r->cb_stopped = true;
        return false;
    }
    return true;
}

/* Streams p on to the caller, always keeping the last SL_CH_STREAM_HOLD_BYTES back. */
static bool stream_feed(struct sl_ch_req *r, const char *p, size_t n)
{
    size_t excess;

    if (r->hold_len + n <= SL_CH_STREAM_HOLD_BYTES) {
        memcpy(r->hold + r->hold_len, p, n);
        r->hold_len += n;
        return true;
    }
    excess = r->hold_len + n - SL_CH_STREAM_HOLD_BYTES;
    if (excess <= r->hold_len) {
        if (!deliver(r, r->hold, excess)) {
            return false;
        }
        memmove(r->hold, r->hold + excess, r->hold_len - excess);
        memcpy(r->hold + r->hold_len - excess, p, n);
    }
    else {
        if (!deliver(r, r->hold, r->hold_len) || !deliver(r, p, excess - r->hold_len)) {
            return false;
        }
        memcpy(r->hold, p + (excess - r->hold_len), SL_CH_STREAM_HOLD_BYTES);
    }
    r->hold_len = SL_CH_STREAM_HOLD_BYTES;
    return true;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *user)
{
    struct sl_ch_req *r = user;
    size_t n = size * nmemb;

    if (r->status == 0) {
        curl_easy_getinfo(r->ch->curl, CURLINFO_RESPONSE_CODE, &r->status);
    }
    if (r->status != 200) {
        size_t room = ERR_BODY_MAX - r->errbody.len;

        /* Only the start of an error body is kept; an append failure leaves it shorter. */
        sl_ch_buf_append(&r->errbody, ptr, n < room ? n : room);
        return n;
    }
    if (r->write_cb != NULL) {
        return stream_feed(r, ptr, n) ? n : 0;
    }
    if (r->out != NULL) {
        r->out_rc = sl_ch_buf_append(r->out, ptr, n);
        return r->out_rc == 0 ? n : 0;
    }
    return n;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *user)
{
    struct sl_ch_req *r = user;
    size_t cap = size * nitems;
    size_t n = r->read_cb(buf, cap, r->read_user);

    if (n == SL_CH_READ_ABORT || n > cap) {
        r->cb_stopped = true;
        return CURL_READFUNC_ABORT;
    }
    r->bytes_read += n;
    return n;
}

/* curl rewinds the body to resend it on a fresh connection when a reused one turned out
 * dead; that works only while the callback has produced nothing. */
static int on_seek(void *user, curl_off_t offset, int origin)
{
    struct sl_ch_req *r = user;

    return offset == 0 && origin == SEEK_SET && r->bytes_read == 0 ? CURL_SEEKFUNC_OK
                                                                    : CURL_SEEKFUNC_CANTSEEK;
}

/* Routes curl's own informational lines (never headers or data) to the debug log. */
static int on_debug(CURL *c, curl_infotype type, char *data, size_t size, void *user)
{
    (void)c;
    (void)user;
    if (type == CURLINFO_TEXT) {
        while (size > 0 && (data[size - 1] == '\n' || data[size - 1] == '\r')) {
            size--;
        }
        sl_log_debug(COMPONENT, "curl: %.*s", (int)size, data);
    }
    return 0;
}

#define SETOPT(opt, val)                                                                  \
    do {                                                                                  \
        if (cc == CURLE_OK) {                                                             \
            cc = curl_easy_setopt(c, (opt), (val));                                       \
        }                                                                                 \
    } while (0)

static CURLcode set_options(struct sl_ch *ch, struct sl_ch_req *r, const char *url)
{
    CURL *c = ch->curl;
    CURLcode cc = CURLE_OK;

    curl_easy_reset(c);
    ch->curl_err[0] = '\0';
    SETOPT(CURLOPT_URL, url);
    SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_ERRORBUFFER, ch->curl_err);
    SETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long)ch->connect_timeout_ms);
    SETOPT(CURLOPT_TIMEOUT_MS, (long)r->timeout_ms);
    SETOPT(CURLOPT_MAXAGE_CONN, CONN_MAX_IDLE_S);
    SETOPT(CURLOPT_HTTPHEADER, r->read_cb != NULL ? ch->chunked_headers : ch->headers);
    SETOPT(CURLOPT_WRITEFUNCTION, on_write);
    SETOPT(CURLOPT_WRITEDATA, r);
    if (r->is_ping) {
        SETOPT(CURLOPT_HTTPGET, 1L);
    }
    else if (r->read_cb != NULL) {
        SETOPT(CURLOPT_POST, 1L);
        SETOPT(CURLOPT_READFUNCTION, on_read);
        SETOPT(CURLOPT_READDATA, r);
        SETOPT(CURLOPT_SEEKFUNCTION, on_seek);
        SETOPT(CURLOPT_SEEKDATA, r);
    }
    else {
        SETOPT(CURLOPT_POST, 1L);
        SETOPT(CURLOPT_POSTFIELDS, r->body != NULL ? r->body : "");
        SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
    }
    if (sl_log_is_enabled(SL_LOG_LEVEL_DEBUG, COMPONENT)) {
        SETOPT(CURLOPT_DEBUGFUNCTION, on_debug);
        SETOPT(CURLOPT_VERBOSE, 1L);
    }
    return cc;
}

/* Fills err from a non-200 answer; sets *retryable for transient ones. */
static int server_error(struct sl_ch_req *r, long status, bool *retryable,
                        struct sl_err *err)
{
    char msg[SL_ERR_MSG_MAX - 64];
    long code = 0;
    int rc;

    if (sl_ch_parse_error(r->errbody.data != NULL ? r->errbody.data : "", r->errbody.len,
                          &code, msg, sizeof(msg)) == 0) {
        /* 159: the server's own max_execution_time ran out. */
        rc = sl_err_set(err, code == 159 ? SL_ETIMEDOUT : SL_ESERVER, "ClickHouse error %ld: %s",
                        code, msg);
        *retryable = sl_ch_is_transient(code);
    }
    else {
        rc = sl_err_set(err, SL_ESERVER, "ClickHouse answered HTTP %ld: %s", status,
                        msg[0] != '\0' ? msg : "(no body)");
        /* A proxy in front of the server may answer these while it restarts. */
        *retryable = status == 502 || status == 503 || status == 504;
    }
    if (err != NULL) {
        err->remote_code = code;
    }
    return rc;
}

/* Checks the held-back tail of a finished stream for an appended error, else delivers it. */
static int stream_finish(struct sl_ch_req *r, bool *retryable, struct sl_err *err)
{
    char msg[SL_ERR_MSG_MAX - 64];
    long code = 0;
    int rc;

    if (sl_ch_parse_tail_error(r->hold, r->hold_len, &code, msg, sizeof(msg)) == 0) {
        rc = sl_err_set(err, code == 159 ? SL_ETIMEDOUT : SL_ESERVER,
                        "ClickHouse error %ld (after the result started): %s", code, msg);
        if (err != NULL) {
            err->remote_code = code;
        }
        *retryable = sl_ch_is_transient(code);
        return rc;
    }
    if (!deliver(r, r->hold, r->hold_len)) {
        return sl_err_set(err, SL_ECANCELED, "ClickHouse %s %s stopped by the caller",
                          r->what, r->query_id);
    }
    return 0;
}

static const char *curl_message(struct sl_ch *ch, CURLcode cc)
{
    return ch->curl_err[0] != '\0' ? ch->curl_err : curl_easy_strerror(cc);
}

/* Runs one attempt of r; fills err and *retryable on failure. */
static int perform_once(struct sl_ch *ch, struct sl_ch_req *r, bool *retryable,
                        struct sl_err *err)
{
    char *url = NULL;
    CURLcode cc;
    long status = 0;
    long request_bytes = 0;
    int64_t started;
    int rc = 0;

    *retryable = false;
    r->status = 0;
    r->out_rc = 0;
    r->cb_stopped = false;
    r->timed_out = false;
    r->bytes_read = 0;
    r->hold_len = 0;
    sl_ch_buf_reset(&r->errbody);
    if (r->out != NULL) {
        sl_ch_buf_reset(r->out);
    }
    snprintf(r->query_id, sizeof(r->query_id), "sluice-%016" PRIx64 "%08" PRIx32,
             next_rand(ch), ++ch->n_requests);
    rc = build_url(ch, r, &url, err);
    if (rc != 0) {
        return rc;
    }
    cc = set_options(ch, r, url);
    if (cc != CURLE_OK) {
        curl_free(url);
        return sl_err_set(err, cc == CURLE_OUT_OF_MEMORY ? SL_ENOMEM : SL_EINVAL,
                          "cannot set up ClickHouse request: %s", curl_easy_strerror(cc));
    }
    started = now_ms();
    cc = curl_easy_perform(ch->curl);
    curl_easy_getinfo(ch->curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(ch->curl, CURLINFO_REQUEST_SIZE, &request_bytes);
    sl_log_debug(COMPONENT, "%s %s: curl %d, HTTP %ld in %" PRId64 " ms", r->what, r->query_id,
                 (int)cc, status, now_ms() - started);
    curl_free(url);

    if (cc == CURLE_OK && status == 200) {
        return r->write_cb != NULL ? stream_finish(r, retryable, err) : 0;
    }
    if (status != 0 && status != 200 && r->errbody.len > 0) {
        /* The server answered an error, possibly while the body was still going out. */
        return server_error(r, status, retryable, err);
    }
    if (cc == CURLE_OK) {
        return server_error(r, status, retryable, err);
    }
    if (r->out_rc == SL_EINVAL) {
        return sl_err_set(err, SL_EINVAL, "result of ClickHouse %s %s is larger than %zu bytes "
                          "(SLUICE_CLICKHOUSE_MAX_RESULT_BYTES); stream it instead", r->what,
                          r->query_id, ch->max_result_bytes);
    }
    if (r->out_rc == SL_ENOMEM) {
        return sl_err_set(err, SL_ENOMEM, "out of memory reading ClickHouse %s %s", r->what,
                          r->query_id);
    }
    if (r->cb_stopped) {
        return sl_err_set(err, SL_ECANCELED, "ClickHouse %s %s stopped by the caller", r->what,
                          r->query_id);
    }
    if (cc == CURLE_OPERATION_TIMEDOUT && request_bytes > 0) {
        /* The request went out: the server may still be running it. */
        r->timed_out = true;
        return sl_err_set(err, SL_ETIMEDOUT, "ClickHouse at %s: %s %s timed out after %" PRId64
                          " ms (%s)", ch->display_url, r->what, r->query_id, r->timeout_ms,
                          curl_message(ch, cc));
    }
    *retryable = true;
    return sl_err_set(err, SL_ENET, "ClickHouse at %s: %s", ch->display_url,
                      curl_message(ch, cc));
}

/* Best effort: 18.16 keeps running a query whose connection closed. */
static void kill_query(struct sl_ch *ch, const char *query_id)
{
    struct sl_ch_buf sql;
    struct sl_err kerr;
    struct sl_ch_req r;

    sl_err_clear(&kerr);
    sl_ch_buf_init(&sql, KILL_SQL_MAX);
    if (sl_ch_buf_append_str(&sql, "KILL QUERY WHERE query_id = ") != 0 ||
        sl_ch_quote(&sql, query_id, strlen(query_id)) != 0 ||
        sl_ch_buf_append_str(&sql, " SYNC") != 0) {
        sl_log_warn(COMPONENT, "cannot kill timed-out query %s: out of memory", query_id);
        sl_ch_buf_fini(&sql);
        return;
    }
    sl_ch_http_req_init(&r, ch, "kill");
    r.body = sql.data;
    r.body_len = sql.len;
    r.wait_end = true;
    r.can_retry = false;
    r.is_kill = true;
    r.timeout_ms = KILL_TIMEOUT_MS;
    if (sl_ch_http_perform(ch, &r, &kerr) != 0) {
        sl_log_warn(COMPONENT, "cannot kill timed-out query %s: %s", query_id, kerr.msg);
    }
    else {
        sl_log_info(COMPONENT, "killed timed-out query %s", query_id);
    }
    sl_ch_http_req_fini(&r);
    sl_ch_buf_fini(&sql);
}

int sl_ch_http_perform(struct sl_ch *ch, struct sl_ch_req *r, struct sl_err *err)
{
    struct sl_err last;
    int64_t max_attempts = r->can_retry ? ch->max_retries + 1 : 1;
    int attempts = 0;
    int rc;

    sl_err_clear(&last);
    for (;;) {
        bool retryable = false;
        int64_t delay;

        attempts++;
        rc = perform_once(ch, r, &retryable, &last);
        if (rc == 0) {
            return 0;
        }
        if (r->timed_out && !r->is_kill && !r->is_ping) {
            kill_query(ch, r->query_id);
        }
        /* A stream whose caller already got data cannot start over. */
        if (!retryable || attempts >= max_attempts || r->bytes_delivered > 0) {
            break;
        }
        delay = backoff_ms(ch, attempts - 1);
        sl_log_warn(COMPONENT, "%s attempt %d of %" PRId64 " failed, retrying in %" PRId64
                    " ms: %s", r->what, attempts, max_attempts, delay, last.msg);
        sleep_ms(delay);
    }
    if (attempts > 1) {
        size_t n = strlen(last.msg);

        snprintf(last.msg + n, sizeof(last.msg) - n, " (gave up after %d attempts)", attempts);
    }
    if (err != NULL) {
        *err = last;
    }
    return rc;
}

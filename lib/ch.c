/*
 * ClickHouse HTTP client: the settings table, one keep-alive curl easy handle per client,
 * requests that carry a query_id and max_execution_time, mapping of answers to SL_E codes,
 * retries with backoff, and KILL QUERY after a timeout. Buffers, quoting, RowBinary and the
 * parsing of error bodies live in ch_escape.c.
 */
#include "ch.h"

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
#define STREAM_HOLD_BYTES (16 * 1024)   /* tail of a stream checked for an appended error */
#define PING_BODY_MAX 64
#define KILL_TIMEOUT_MS 5000
#define KILL_SQL_MAX 256
#define QUERY_ID_MAX 48
/* 18.16 closes idle keep-alive connections after 3 s; never reuse one idle longer than 2 s
 * so a request does not race the server's close. */
#define CONN_MAX_IDLE_S 2L

static int check_identifier(const char *key, const char *text, struct sl_err *err);

const struct sl_cfg_opt sl_ch_cfg_opts[] = {
    {.key = "SLUICE_CLICKHOUSE_URL", .type = SL_CFG_URL, .def = "http://127.0.0.1:8123",
     .offset = offsetof(struct sl_ch_settings, url),
     .desc = "ClickHouse HTTP interface, without credentials."},
    {.key = "SLUICE_CLICKHOUSE_DATABASE", .type = SL_CFG_STRING, .def = "sluice",
     .offset = offsetof(struct sl_ch_settings, database), .check = check_identifier,
     .desc = "ClickHouse database holding sluice's tables."},
    {.key = "SLUICE_CLICKHOUSE_USER", .type = SL_CFG_STRING, .def = "default",
     .offset = offsetof(struct sl_ch_settings, user),
     .desc = "ClickHouse user (sent as X-ClickHouse-User)."},
    {.key = "SLUICE_CLICKHOUSE_PASSWORD", .type = SL_CFG_STRING, .def = "",
     .offset = offsetof(struct sl_ch_settings, password), .is_secret = true,
     .desc = "ClickHouse password (sent as X-ClickHouse-Key)."},
    {.key = "SLUICE_CLICKHOUSE_TIMEOUT_MS", .type = SL_CFG_INT, .def = "30000", .min = 100,
     .max = 86400000, .offset = offsetof(struct sl_ch_settings, timeout_ms),
     .desc = "Longest a ClickHouse request may take, in ms; also its max_execution_time."},
    {.key = "SLUICE_CLICKHOUSE_CONNECT_TIMEOUT_MS", .type = SL_CFG_INT, .def = "2000",
     .min = 10, .max = 600000, .offset = offsetof(struct sl_ch_settings, connect_timeout_ms),
     .desc = "Longest a connection to ClickHouse may take to open, in ms."},
    {.key = "SLUICE_CLICKHOUSE_MAX_RETRIES", .type = SL_CFG_INT, .def = "3", .min = 0,
     .max = 100, .offset = offsetof(struct sl_ch_settings, max_retries),
     .desc = "Retries of a ClickHouse request after network errors or transient codes."},
    {.key = "SLUICE_CLICKHOUSE_RETRY_BASE_MS", .type = SL_CFG_INT, .def = "100", .min = 1,
     .max = 600000, .offset = offsetof(struct sl_ch_settings, retry_base_ms),
     .desc = "Backoff before the first retry is random up to this many ms; doubles after."},
    {.key = "SLUICE_CLICKHOUSE_RETRY_MAX_MS", .type = SL_CFG_INT, .def = "5000", .min = 1,
     .max = 3600000, .offset = offsetof(struct sl_ch_settings, retry_max_ms),
     .desc = "Largest backoff between ClickHouse retries, in ms."},
    {.key = "SLUICE_CLICKHOUSE_MAX_RESULT_BYTES", .type = SL_CFG_BYTES, .def = "64M",
     .min = 65536, .max = INT64_C(16) << 30,
     .offset = offsetof(struct sl_ch_settings, max_result_bytes),
     .desc = "Largest query result held in memory; larger ones must be streamed."},
};
const size_t sl_ch_cfg_n_opts = sizeof(sl_ch_cfg_opts) / sizeof(sl_ch_cfg_opts[0]);

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
struct req {
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
    char query_id[QUERY_ID_MAX];
    long status;
    struct sl_ch_buf errbody;     /* body of a non-200 answer, first ERR_BODY_MAX bytes */
    int out_rc;                   /* why buffering the output failed */
    bool cb_stopped;              /* a callback of the caller asked to stop */
    bool timed_out;               /* the request was sent and then timed out */
    size_t bytes_read;            /* from read_cb */
    size_t bytes_delivered;       /* to write_cb, over all attempts */
    char *hold;                   /* stream: the last bytes, not yet delivered */
    size_t hold_len;
};

/* GLOBAL: libcurl's one-time initialisation; written once under curl_once, read after. */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void init_curl(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static bool is_identifier(const char *s)
{
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_')) {
        return false;
    }
    for (s++; *s != '\0'; s++) {
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_' ||
              (*s >= '0' && *s <= '9'))) {
            return false;
        }
    }
    return true;
}

static int check_identifier(const char *key, const char *text, struct sl_err *err)
{
    if (!is_identifier(text)) {
        return sl_err_set(err, SL_EINVAL, "%s: '%s' is not a plain name ([A-Za-z_][A-Za-z0-9_]*)",
                          key, text);
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

/* Frees a header list, wiping it first since it holds the password. */
static void free_headers(struct curl_slist *list)
{
    for (struct curl_slist *h = list; h != NULL; h = h->next) {
        explicit_bzero(h->data, strlen(h->data));
    }
    curl_slist_free_all(list);
}

static int add_header(struct curl_slist **list, const char *name, const char *value)
{
    struct sl_ch_buf line;
    struct curl_slist *grown = NULL;

    sl_ch_buf_init(&line, strlen(name) + strlen(value) + 2);
    if (sl_ch_buf_appendf(&line, "%s%s", name, value) == 0) {
        grown = curl_slist_append(*list, line.data);
        explicit_bzero(line.data, line.len);
    }
    sl_ch_buf_fini(&line);
    if (grown == NULL) {
        return SL_ENOMEM;
    }
    *list = grown;
    return 0;
}

static int build_headers(const struct sl_ch_settings *s, bool chunked, struct curl_slist **out)
{
    int rc = 0;

    /* The server may not parse the body as a form; no Expect: 100-continue round trip. */
    rc = add_header(out, "Content-Type: ", "application/octet-stream");
    if (rc == 0) {
        rc = add_header(out, "Expect:", "");
    }
    if (rc == 0 && s->user != NULL && s->user[0] != '\0') {
        rc = add_header(out, "X-ClickHouse-User: ", s->user);
    }
    if (rc == 0 && s->password != NULL && s->password[0] != '\0') {
        rc = add_header(out, "X-ClickHouse-Key: ", s->password);
    }
    if (rc == 0 && chunked) {
        rc = add_header(out, "Transfer-Encoding: ", "chunked");
    }
    return rc;
}

static bool has_line_break(const char *s)
{
    return s != NULL && strpbrk(s, "\r\n") != NULL;
}

static int check_settings(const struct sl_ch_settings *s, struct sl_err *err)
{
    if (s->url == NULL || s->url[0] == '\0') {
        return sl_err_set(err, SL_EINVAL, "SLUICE_CLICKHOUSE_URL is empty");
    }
    if (s->database != NULL && s->database[0] != '\0') {
        int rc = check_identifier("SLUICE_CLICKHOUSE_DATABASE", s->database, err);

        if (rc != 0) {
            return rc;
        }
    }
    if (has_line_break(s->user) || has_line_break(s->password)) {
        return sl_err_set(err, SL_EINVAL, "SLUICE_CLICKHOUSE_USER or _PASSWORD holds a line "
                          "break");
    }
    if (s->timeout_ms < 1 || s->connect_timeout_ms < 1 || s->max_retries < 0 ||
        s->retry_base_ms < 1 || s->retry_max_ms < s->retry_base_ms ||
        s->max_result_bytes < 1) {
        return sl_err_set(err, SL_EINVAL, "ClickHouse settings out of range: timeouts, retry "
                          "base and result size must be positive, retry max >= retry base");
    }
    return 0;
}

/* Parses the URL into ch->base and keeps a printable copy; refuses embedded credentials so
 * the URL can appear in messages. */
static int parse_url(struct sl_ch *ch, const char *url, struct sl_err *err)
{
    CURLUcode uc;
    char *part = NULL;
    int rc = 0;

    ch->base = curl_url();
    if (ch->base == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    uc = curl_url_set(ch->base, CURLUPART_URL, url, 0);
    if (uc != CURLUE_OK) {
        return sl_err_set(err, SL_EINVAL, "SLUICE_CLICKHOUSE_URL is not a valid URL (%s)",
                          curl_url_strerror(uc));
    }
    if (curl_url_get(ch->base, CURLUPART_USER, &part, 0) == CURLUE_OK ||
        curl_url_get(ch->base, CURLUPART_PASSWORD, &part, 0) == CURLUE_OK) {
        curl_free(part);
        return sl_err_set(err, SL_EINVAL, "SLUICE_CLICKHOUSE_URL must not hold credentials; "
                          "use SLUICE_CLICKHOUSE_USER and SLUICE_CLICKHOUSE_PASSWORD");
    }
    if (curl_url_get(ch->base, CURLUPART_SCHEME, &part, 0) != CURLUE_OK ||
        (strcmp(part, "http") != 0 && strcmp(part, "https") != 0)) {
        rc = sl_err_set(err, SL_EINVAL, "SLUICE_CLICKHOUSE_URL: '%s' is not http or https",
                        url);
    }
    curl_free(part);
    part = NULL;
    if (rc == 0 && curl_url_get(ch->base, CURLUPART_URL, &part, 0) != CURLUE_OK) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    if (rc == 0) {
        ch->display_url = sl_strdup(part);
        if (ch->display_url == NULL) {
            rc = sl_err_set(err, SL_ENOMEM, "out of memory");
        }
    }
    curl_free(part);
    return rc;
}

int sl_ch_create(struct sl_ch **out, const struct sl_ch_settings *settings,
                 struct sl_err *err)
{
    struct sl_ch *ch = NULL;
    uint64_t seed = 0;
    int rc;

    *out = NULL;
    rc = check_settings(settings, err);
    if (rc != 0) {
        return rc;
    }
    pthread_once(&curl_once, init_curl);
    if (curl_init_rc != CURLE_OK) {
        return sl_err_set(err, SL_ENOMEM, "curl_global_init failed: %s",
                          curl_easy_strerror(curl_init_rc));
    }
    ch = sl_calloc(1, sizeof(*ch));
    if (ch == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    ch->timeout_ms = settings->timeout_ms;
    ch->connect_timeout_ms = settings->connect_timeout_ms;
    ch->max_retries = settings->max_retries;
    ch->retry_base_ms = settings->retry_base_ms;
    ch->retry_max_ms = settings->retry_max_ms;
    ch->max_result_bytes = settings->max_result_bytes > (int64_t)(SIZE_MAX / 2)
                               ? SIZE_MAX / 2
                               : (size_t)settings->max_result_bytes;
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
        seed = (uint64_t)now_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)ch;
    }
    ch->rng = seed;
    rc = parse_url(ch, settings->url, err);
    if (rc != 0) {
        goto fail;
    }
    if (settings->database != NULL && settings->database[0] != '\0') {
        ch->database = sl_strdup(settings->database);
        if (ch->database == NULL) {
            rc = sl_err_set(err, SL_ENOMEM, "out of memory");
            goto fail;
        }
    }
    if (build_headers(settings, false, &ch->headers) != 0 ||
        build_headers(settings, true, &ch->chunked_headers) != 0) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory");
        goto fail;
    }
    ch->curl = curl_easy_init();
    if (ch->curl == NULL) {
        rc = sl_err_set(err, SL_ENOMEM, "curl_easy_init failed");
        goto fail;
    }
    *out = ch;
    return 0;

fail:
    sl_ch_destroy(ch);
    return rc;
}

void sl_ch_destroy(struct sl_ch *ch)
{
    if (ch == NULL) {
        return;
    }
    if (ch->curl != NULL) {
        curl_easy_cleanup(ch->curl);
    }
    curl_url_cleanup(ch->base);
    free_headers(ch->headers);
    free_headers(ch->chunked_headers);
    sl_free(ch->display_url);
    sl_free(ch->database);
    sl_free(ch);
}

void sl_ch_result_fini(struct sl_ch_result *res)
{
    if (res == NULL) {
        return;
    }
    sl_free(res->body);
    res->body = NULL;
    res->len = 0;
}

static void req_init(struct req *r, struct sl_ch *ch, const char *what)
{
    memset(r, 0, sizeof(*r));
    r->ch = ch;
    r->what = what;
    r->timeout_ms = ch->timeout_ms;
    r->can_retry = true;
    sl_ch_buf_init(&r->errbody, ERR_BODY_MAX);
}

static void req_fini(struct req *r)
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
static int build_url(struct sl_ch *ch, const struct req *r, char **out, struct sl_err *err)
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
static bool deliver(struct req *r, const char *p, size_t n)
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

/* Streams p on to the caller, always keeping the last STREAM_HOLD_BYTES back. */
static bool stream_feed(struct req *r, const char *p, size_t n)
{
    size_t excess;

    if (r->hold_len + n <= STREAM_HOLD_BYTES) {
        memcpy(r->hold + r->hold_len, p, n);
        r->hold_len += n;
        return true;
    }
    excess = r->hold_len + n - STREAM_HOLD_BYTES;
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
        memcpy(r->hold, p + (excess - r->hold_len), STREAM_HOLD_BYTES);
    }
    r->hold_len = STREAM_HOLD_BYTES;
    return true;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *user)
{
    struct req *r = user;
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
    struct req *r = user;
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
    struct req *r = user;

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

static CURLcode set_options(struct sl_ch *ch, struct req *r, const char *url)
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
static int server_error(struct req *r, long status, bool *retryable, struct sl_err *err)
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
static int stream_finish(struct req *r, bool *retryable, struct sl_err *err)
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
static int perform_once(struct sl_ch *ch, struct req *r, bool *retryable, struct sl_err *err)
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

static int perform(struct sl_ch *ch, struct req *r, struct sl_err *err);

/* Best effort: 18.16 keeps running a query whose connection closed. */
static void kill_query(struct sl_ch *ch, const char *query_id)
{
    struct sl_ch_buf sql;
    struct sl_err kerr;
    struct req r;

    sl_err_clear(&kerr);
    sl_ch_buf_init(&sql, KILL_SQL_MAX);
    if (sl_ch_buf_append_str(&sql, "KILL QUERY WHERE query_id = ") != 0 ||
        sl_ch_quote(&sql, query_id, strlen(query_id)) != 0 ||
        sl_ch_buf_append_str(&sql, " SYNC") != 0) {
        sl_log_warn(COMPONENT, "cannot kill timed-out query %s: out of memory", query_id);
        sl_ch_buf_fini(&sql);
        return;
    }
    req_init(&r, ch, "kill");
    r.body = sql.data;
    r.body_len = sql.len;
    r.wait_end = true;
    r.can_retry = false;
    r.is_kill = true;
    r.timeout_ms = KILL_TIMEOUT_MS;
    if (perform(ch, &r, &kerr) != 0) {
        sl_log_warn(COMPONENT, "cannot kill timed-out query %s: %s", query_id, kerr.msg);
    }
    else {
        sl_log_info(COMPONENT, "killed timed-out query %s", query_id);
    }
    req_fini(&r);
    sl_ch_buf_fini(&sql);
}

/* Runs r with retries; fills err (may be NULL) with the last failure. */
static int perform(struct sl_ch *ch, struct req *r, struct sl_err *err)
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

int sl_ch_query(struct sl_ch *ch, const char *sql, struct sl_ch_result *out,
                struct sl_err *err)
{
    struct sl_ch_buf body;
    struct req r;
    int rc;

    out->body = NULL;
    out->len = 0;
    sl_ch_buf_init(&body, ch->max_result_bytes);
    req_init(&r, ch, "query");
    r.body = sql;
    r.body_len = strlen(sql);
    r.out = &body;
    r.wait_end = true;
    rc = perform(ch, &r, err);
    if (rc == 0 && body.data == NULL && sl_ch_buf_append(&body, "", 0) != 0) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    if (rc == 0) {
        out->body = body.data;
        out->len = body.len;
        body.data = NULL;
    }
    sl_ch_buf_fini(&body);
    req_fini(&r);
    return rc;
}

int sl_ch_exec(struct sl_ch *ch, const char *sql, struct sl_err *err)
{
    struct req r;
    int rc;

    req_init(&r, ch, "statement");
    r.body = sql;
    r.body_len = strlen(sql);
    r.wait_end = true;
    rc = perform(ch, &r, err);
    req_fini(&r);
    return rc;
}

int sl_ch_query_stream(struct sl_ch *ch, const char *sql, sl_ch_write_cb cb, void *user,
                       struct sl_err *err)
{
    struct req r;
    int rc;

    req_init(&r, ch, "query");
    r.hold = sl_malloc(STREAM_HOLD_BYTES);
    if (r.hold == NULL) {
        req_fini(&r);
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    r.body = sql;
    r.body_len = strlen(sql);
    r.write_cb = cb;
    r.write_user = user;
    rc = perform(ch, &r, err);
    sl_free(r.hold);
    req_fini(&r);
    return rc;
}

int sl_ch_insert(struct sl_ch *ch, const char *insert_sql, const void *data, size_t len,
                 struct sl_err *err)
{
    struct req r;
    int rc;

    req_init(&r, ch, "insert");
    r.query_param = insert_sql;
    r.body = data;
    r.body_len = len;
    rc = perform(ch, &r, err);
    req_fini(&r);
    return rc;
}

int sl_ch_insert_stream(struct sl_ch *ch, const char *insert_sql, sl_ch_read_cb cb,
                        void *user, struct sl_err *err)
{
    struct req r;
    int rc;

    req_init(&r, ch, "insert");
    r.query_param = insert_sql;
    r.read_cb = cb;
    r.read_user = user;
    /* The callback cannot be rewound, so a failed attempt cannot be repeated. */
    r.can_retry = false;
    rc = perform(ch, &r, err);
    req_fini(&r);
    return rc;
}

int sl_ch_server_version(struct sl_ch *ch, int *major, int *minor, int *patch,
                         struct sl_err *err)
{
    struct sl_ch_result res = {0};
    int v[3];
    int rc;

    if (!ch->has_version) {
        rc = sl_ch_query(ch, "SELECT version()", &res, err);
        if (rc != 0) {
            return rc;
        }
        if (sscanf(res.body, "%d.%d.%d", &v[0], &v[1], &v[2]) != 3) {
            rc = sl_err_set(err, SL_ESERVER, "ClickHouse at %s: '%.40s' is not a version",
                            ch->display_url, res.body);
            sl_ch_result_fini(&res);
            return rc;
        }
        sl_ch_result_fini(&res);
        memcpy(ch->version, v, sizeof(v));
        ch->has_version = true;
    }
    *major = ch->version[0];
    *minor = ch->version[1];
    *patch = ch->version[2];
    return 0;
}

int sl_ch_ping(struct sl_ch *ch, struct sl_err *err)
{
    struct sl_ch_buf body;
    struct req r;
    int rc;

    sl_ch_buf_init(&body, PING_BODY_MAX);
    req_init(&r, ch, "ping");
    r.is_ping = true;
    r.can_retry = false;
    r.out = &body;
    rc = perform(ch, &r, err);
    if (rc == 0 && (body.data == NULL || strncmp(body.data, "Ok.", 3) != 0)) {
        rc = sl_err_set(err, SL_ESERVER, "ClickHouse at %s answered the ping with '%.20s'",
                        ch->display_url, body.data != NULL ? body.data : "");
    }
    req_fini(&r);
    sl_ch_buf_fini(&body);
    return rc;
}

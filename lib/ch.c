/*
 * ClickHouse HTTP client: the settings table and their checks, the client's life (URL,
 * auth headers, one keep-alive curl easy handle) and the public calls, each of which
 * describes one request (body, sinks, wait_end_of_query, whether it may be retried) and
 * hands it to the transport. Running requests over curl, retries with backoff and KILL
 * QUERY after a timeout live in ch_http.c; buffers, quoting, RowBinary and the parsing of
 * error bodies in ch_escape.c.
 */
#include "ch.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "ch_int.h"

#define PING_BODY_MAX 64

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
    int rc;

    *out = NULL;
    rc = check_settings(settings, err);
    if (rc != 0) {
        return rc;
    }
    rc = sl_ch_http_global_init(err);
    if (rc != 0) {
        return rc;
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
    sl_ch_http_seed(ch);
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

int sl_ch_query(struct sl_ch *ch, const char *sql, struct sl_ch_result *out,
                struct sl_err *err)
{
    struct sl_ch_buf body;
    struct sl_ch_req r;
    int rc;

    out->body = NULL;
    out->len = 0;
    sl_ch_buf_init(&body, ch->max_result_bytes);
    sl_ch_http_req_init(&r, ch, "query");
    r.body = sql;
    r.body_len = strlen(sql);
    r.out = &body;
    r.wait_end = true;
    rc = sl_ch_http_perform(ch, &r, err);
    if (rc == 0 && body.data == NULL && sl_ch_buf_append(&body, "", 0) != 0) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    if (rc == 0) {
        out->body = body.data;
        out->len = body.len;
        body.data = NULL;
    }
    sl_ch_buf_fini(&body);
    sl_ch_http_req_fini(&r);
    return rc;
}

int sl_ch_exec(struct sl_ch *ch, const char *sql, struct sl_err *err)
{
    struct sl_ch_req r;
    int rc;

    sl_ch_http_req_init(&r, ch, "statement");
    r.body = sql;
    r.body_len = strlen(sql);
    r.wait_end = true;
    rc = sl_ch_http_perform(ch, &r, err);
    sl_ch_http_req_fini(&r);
    return rc;
}

int sl_ch_query_stream(struct sl_ch *ch, const char *sql, sl_ch_write_cb cb, void *user,
                       struct sl_err *err)
{
    struct sl_ch_req r;
    int rc;

    sl_ch_http_req_init(&r, ch, "query");
    r.hold = sl_malloc(SL_CH_STREAM_HOLD_BYTES);
    if (r.hold == NULL) {
        sl_ch_http_req_fini(&r);
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    r.body = sql;
    r.body_len = strlen(sql);
    r.write_cb = cb;
    r.write_user = user;
    rc = sl_ch_http_perform(ch, &r, err);
    sl_free(r.hold);
    sl_ch_http_req_fini(&r);
    return rc;
}

int sl_ch_insert(struct sl_ch *ch, const char *insert_sql, const void *data, size_t len,
                 struct sl_err *err)
{
    struct sl_ch_req r;
    int rc;

    sl_ch_http_req_init(&r, ch, "insert");
    r.query_param = insert_sql;
    r.body = data;
    r.body_len = len;
    rc = sl_ch_http_perform(ch, &r, err);
    sl_ch_http_req_fini(&r);
    return rc;
}

int sl_ch_insert_stream(struct sl_ch *ch, const char *insert_sql, sl_ch_read_cb cb,
                        void *user, struct sl_err *err)
{
    struct sl_ch_req r;
    int rc;

    sl_ch_http_req_init(&r, ch, "insert");
    r.query_param = insert_sql;
    r.read_cb = cb;
    r.read_user = user;
    /* The callback cannot be rewound, so a failed attempt cannot be repeated. */
    r.can_retry = false;
    rc = sl_ch_http_perform(ch, &r, err);
    sl_ch_http_req_fini(&r);
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
    struct sl_ch_req r;
    int rc;

    sl_ch_buf_init(&body, PING_BODY_MAX);
    sl_ch_http_req_init(&r, ch, "ping");
    r.is_ping = true;
    r.can_retry = false;
    r.out = &body;
    rc = sl_ch_http_perform(ch, &r, err);
    if (rc == 0 && (body.data == NULL || strncmp(body.data, "Ok.", 3) != 0)) {
        rc = sl_err_set(err, SL_ESERVER, "ClickHouse at %s answered the ping with '%.20s'",
                        ch->display_url, body.data != NULL ? body.data : "");
    }
    sl_ch_http_req_fini(&r);
    sl_ch_buf_fini(&body);
    return rc;
}

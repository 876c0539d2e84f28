/*
 * Tests lib/ch.c against the real ClickHouse server (SLUICE_TEST_CLICKHOUSE_URL): RowBinary
 * inserts read back byte for byte, server errors with their codes, quoting that survives
 * hostile input, version detection, timeouts that kill the query, an unreachable server,
 * streamed queries and inserts, and keep-alive reconnects. Each case works in a database
 * of its own and drops it at the end.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "ch.h"
#include "log.h"
#include "test.h"

#define ROWS_COLUMNS "n, id, ts, s, i, f, b, w, u, tags"

struct fixture {
    struct sl_ch_settings settings;
    struct sl_cfg_section sec;
    struct sl_ch *admin; /* no database: creates and drops the test database */
    struct sl_ch *ch;    /* on the test database */
    char db[64];
    char url_env[512];
    char db_env[128];
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Loads settings the way a process does: the table's defaults plus an environment. */
static void load_settings(struct fixture *f, const char *url, const char *db)
{
    char *env[3] = {f->url_env, f->db_env, NULL};
    struct sl_err err;

    snprintf(f->url_env, sizeof(f->url_env), "SLUICE_CLICKHOUSE_URL=%s", url);
    snprintf(f->db_env, sizeof(f->db_env), "SLUICE_CLICKHOUSE_DATABASE=%s", db);
    memset(&f->settings, 0, sizeof(f->settings));
    f->sec = SL_CFG_SECTION("clickhouse", sl_ch_cfg_opts, sl_ch_cfg_n_opts, &f->settings);
    ASSERT_OK(sl_cfg_load(&f->sec, 1, NULL, env, &err), &err);
}

static void exec_ok(struct sl_ch *ch, const char *sql)
{
    struct sl_err err;

    ASSERT_OK(sl_ch_exec(ch, sql, &err), &err);
}

/* Runs sql and returns its body (caller frees with sl_free). */
static char *query_ok(struct sl_ch *ch, const char *sql)
{
    struct sl_ch_result res = {0};
    struct sl_err err;

    ASSERT_OK(sl_ch_query(ch, sql, &res, &err), &err);
    ASSERT_EQ_INT(strlen(res.body), res.len);
    return res.body;
}

static void fixture_open(struct fixture *f)
{
    const char *url = test_env_require("SLUICE_TEST_CLICKHOUSE_URL");
    char *saved_db;
    char sql[256];
    struct sl_err err;
    uint64_t r = (uint64_t)now_ms() * 2654435761u ^ (uint64_t)getpid();

    memset(f, 0, sizeof(*f));
    snprintf(f->db, sizeof(f->db), "sluice_test_%d_%08x", (int)getpid(), (unsigned)r);
    load_settings(f, url, f->db);
    /* The admin client sends no database: the test one does not exist yet. */
    saved_db = f->settings.database;
    f->settings.database = NULL;
    ASSERT_OK(sl_ch_create(&f->admin, &f->settings, &err), &err);
    f->settings.database = saved_db;
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", f->db);
    exec_ok(f->admin, sql);
    ASSERT_OK(sl_ch_create(&f->ch, &f->settings, &err), &err);
}

static void fixture_close(struct fixture *f)
{
    char sql[256];

    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", f->db);
    exec_ok(f->admin, sql);
    sl_ch_destroy(f->ch);
    sl_ch_destroy(f->admin);
    sl_cfg_fini(&f->sec, 1);
}

static void hex_upper(const void *data, size_t len, char *out)
{
    static const char digits[] = "0123456789ABCDEF";
    const unsigned char *p = data;

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * len] = '\0';
}

static void test_ch_ping_and_version(void)
{
    struct fixture f;
    struct sl_err err;
    int major = 0, minor = -1, patch = -1;
    int again[3] = {0};
    char want[64];
    char *text;

    fixture_open(&f);
    ASSERT_OK(sl_ch_ping(f.ch, &err), &err);
    ASSERT_OK(sl_ch_server_version(f.ch, &major, &minor, &patch, &err), &err);
    ASSERT_TRUE(major >= 18);
    ASSERT_TRUE(minor >= 0 && patch >= 0);
    text = query_ok(f.ch, "SELECT version()");
    snprintf(want, sizeof(want), "%d.%d.%d", major, minor, patch);
    ASSERT_TRUE(strncmp(text, want, strlen(want)) == 0);
    fprintf(stderr, "server version %s", text);
    sl_free(text);
    /* Cached: the same answer without asking again. */
    ASSERT_OK(sl_ch_server_version(f.ch, &again[0], &again[1], &again[2], &err), &err);
    ASSERT_EQ_INT(again[0], major);
    ASSERT_EQ_INT(again[1], minor);
    ASSERT_EQ_INT(again[2], patch);
    fixture_close(&f);
}

/* Appends one row of the `rows` table; strings may hold any byte. */
static void add_row(struct sl_ch_buf *b, uint64_t n, const uint8_t uuid[16], uint32_t ts,
                    const char *s, size_t s_len)
{
    ASSERT_OK(sl_ch_rb_u64(b, n), NULL);
    ASSERT_OK(sl_ch_rb_uuid(b, uuid), NULL);
    ASSERT_OK(sl_ch_rb_datetime(b, ts), NULL);
    ASSERT_OK(sl_ch_rb_string(b, s, s_len), NULL);
    ASSERT_OK(sl_ch_rb_i64(b, -(int64_t)n * 1000003), NULL);
    ASSERT_OK(sl_ch_rb_f64(b, (double)n / 3.0), NULL);
    ASSERT_OK(sl_ch_rb_u8(b, (uint8_t)(200 + n)), NULL);
    ASSERT_OK(sl_ch_rb_u16(b, (uint16_t)(60000 + n)), NULL);
    ASSERT_OK(sl_ch_rb_u32(b, 4000000000u + (uint32_t)n), NULL);
    ASSERT_OK(sl_ch_rb_array_len(b, 2), NULL);
    ASSERT_OK(sl_ch_rb_string(b, "k'1", 3), NULL);
    ASSERT_OK(sl_ch_rb_string(b, s, s_len), NULL);
}

static void create_rows_table(struct fixture *f)
{
    char sql[512];

    snprintf(sql, sizeof(sql),
             "CREATE TABLE %s.rows (n UInt64, id UUID, ts DateTime('UTC'), s String, i Int64, "
             "f Float64, b UInt8, w UInt16, u UInt32, tags Array(String)) "
             "ENGINE = MergeTree ORDER BY n",
             f->db);
    exec_ok(f->ch, sql);
}

static void test_ch_rowbinary_roundtrip(void)
{
#define STR_LEN(lit) {lit, sizeof(lit) - 1}
    static const struct {
        const char *s;
        size_t len;
    } strings[] = {
        STR_LEN("plain"),
        STR_LEN("quote ' double \" back \\ end\\"),
        STR_LEN("nl\nnul\0tab\tcr\r"),
        STR_LEN("h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x9a\x80"),
        STR_LEN(""),
    };
#undef STR_LEN
    const size_t n_rows = sizeof(strings) / sizeof(strings[0]);
    struct fixture f;
    struct sl_ch_buf rows;
    struct sl_ch_buf want;
    struct sl_ch_result res = {0};
    struct sl_err err;
    char sql[512];
    char *text;

    fixture_open(&f);
    create_rows_table(&f);
    sl_ch_buf_init(&rows, 1 << 20);
    sl_ch_buf_init(&want, 1 << 20);
    for (size_t k = 0; k < n_rows; k++) {
        uint8_t uuid[16];
        char hex[64];

        for (size_t i = 0; i < 16; i++) {
            uuid[i] = (uint8_t)(0x11 * i + k);
        }
        add_row(&rows, k, uuid, 1704067200u + (uint32_t)k * 3600, strings[k].s, strings[k].len);
        hex_upper(strings[k].s, strings[k].len, hex);
        ASSERT_OK(sl_ch_buf_appendf(&want,
                                    "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
                                    "%02x%02x%02x%02x%02x%02x\t%u\t%s\n",
                                    uuid[0], uuid[1], uuid[2], uuid[3], uuid[4], uuid[5],
                                    uuid[6], uuid[7], uuid[8], uuid[9], uuid[10], uuid[11],
                                    uuid[12], uuid[13], uuid[14], uuid[15],
                                    1704067200u + (unsigned)k * 3600, hex),
                  NULL);
    }
    snprintf(sql, sizeof(sql), "INSERT INTO %s.rows (" ROWS_COLUMNS ") FORMAT RowBinary", f.db);
    ASSERT_OK(sl_ch_insert(f.ch, sql, rows.data, rows.len, &err), &err);

    /* Read back in RowBinary: the very bytes that went in. */
    snprintf(sql, sizeof(sql), "SELECT " ROWS_COLUMNS " FROM rows ORDER BY n FORMAT RowBinary");
    ASSERT_OK(sl_ch_query(f.ch, sql, &res, &err), &err);
    ASSERT_EQ_INT(res.len, rows.len);
    ASSERT_TRUE(memcmp(res.body, rows.data, rows.len) == 0);
    sl_ch_result_fini(&res);
    sl_ch_result_fini(&res);

    /* And as text: UUIDs in text order, times in UTC seconds, strings byte for byte. */
    text = query_ok(f.ch, "SELECT toString(id), toUnixTimestamp(ts), hex(s) FROM rows "
                          "ORDER BY n FORMAT TabSeparated");
    ASSERT_EQ_STR(text, want.data);
    sl_free(text);
    text = query_ok(f.ch, "SELECT sum(i), sum(b), sum(w), sum(u), round(sum(f), 6), "
                          "sum(length(tags)) FROM rows FORMAT TabSeparated");
    ASSERT_EQ_STR(text, "-10000030\t1010\t300010\t20000000010\t3.333333\t10\n");
    sl_free(text);
    sl_ch_buf_fini(&rows);
    sl_ch_buf_fini(&want);
    fixture_close(&f);
}

static void test_ch_server_errors_keep_code(void)
{
    struct fixture f;
    struct sl_ch_result res = {0};
    struct sl_err err;
    char sql[256];

    fixture_open(&f);
    ASSERT_EQ_INT(sl_ch_query(f.ch, "SELECT * FROM nope", &res, &err), SL_ESERVER);
    ASSERT_TRUE(res.body == NULL);
    ASSERT_EQ_INT(err.code, SL_ESERVER);
    ASSERT_EQ_INT(err.remote_code, 60);
    ASSERT_CONTAINS(err.msg, "ClickHouse error 60: Table ");
    ASSERT_CONTAINS(err.msg, ".nope");
    ASSERT_NOT_CONTAINS(err.msg, "e.what()");
    /* Permanent errors are not retried. */
    ASSERT_NOT_CONTAINS(err.msg, "attempts");
    fprintf(stderr, "unknown table: %s\n", err.msg);

    ASSERT_EQ_INT(sl_ch_exec(f.ch, "SELEC 1", &err), SL_ESERVER);
    ASSERT_EQ_INT(err.remote_code, 62);
    ASSERT_CONTAINS(err.msg, "ClickHouse error 62: Syntax error");
    ASSERT_NOT_CONTAINS(err.msg, "\n");

    /* Bad RowBinary data: the server's code comes back from an insert too. */
    create_rows_table(&f);
    snprintf(sql, sizeof(sql), "INSERT INTO %s.rows (" ROWS_COLUMNS ") FORMAT RowBinary", f.db);
    ASSERT_EQ_INT(sl_ch_insert(f.ch, sql, "\x01\x02\x03", 3, &err), SL_ESERVER);
    ASSERT_TRUE(err.remote_code > 0);
    fprintf(stderr, "bad data: %s\n", err.msg);
    fixture_close(&f);
}

static void test_ch_credentials_sent_as_headers(void)
{
    struct fixture f;
    struct sl_ch *bad = NULL;
    struct sl_err err;
    char logs[32768];
    ssize_t n;
    int fds[2];
    char *saved;

    fixture_open(&f);
    saved = f.settings.password;
    f.settings.password = "hunter2-wrong";
    ASSERT_OK(sl_ch_create(&bad, &f.settings, &err), &err);
    f.settings.password = saved;
    /* Even debug logs, curl's included, never show the password. */
    ASSERT_EQ_INT(pipe(fds), 0);
    ASSERT_OK(sl_log_configure("warn,ch=debug", &err), &err);
    sl_log_set_fd(fds[1]);
    ASSERT_EQ_INT(sl_ch_exec(bad, "SELECT 1", &err), SL_ESERVER);
    sl_log_set_fd(2);
    ASSERT_OK(sl_log_configure("warn", NULL), NULL);
    close(fds[1]);
    n = read(fds[0], logs, sizeof(logs) - 1);
    close(fds[0]);
    logs[n < 0 ? 0 : n] = '\0';
    ASSERT_CONTAINS(logs, "\"component\":\"ch\"");
    ASSERT_CONTAINS(logs, "curl: ");
    ASSERT_NOT_CONTAINS(logs, "hunter2");
    ASSERT_EQ_INT(err.remote_code, 193);
    ASSERT_CONTAINS(err.msg, "password");
    ASSERT_NOT_CONTAINS(err.msg, "hunter2");
    sl_ch_destroy(bad);
    fixture_close(&f);
}

/* SELECTs the quoted s and checks the server saw exactly its bytes. */
static void check_literal(struct sl_ch *ch, const char *s, size_t len)
{
    struct sl_ch_buf sql;
    char hex[1024];
    char want[1100];
    char *got;

    ASSERT_TRUE(len < 500);
    sl_ch_buf_init(&sql, 1 << 16);
    ASSERT_OK(sl_ch_buf_append_str(&sql, "SELECT hex("), NULL);
    ASSERT_OK(sl_ch_quote(&sql, s, len), NULL);
    ASSERT_OK(sl_ch_buf_append_str(&sql, "), length("), NULL);
    ASSERT_OK(sl_ch_quote(&sql, s, len), NULL);
    ASSERT_OK(sl_ch_buf_append_str(&sql, ") FORMAT TabSeparated"), NULL);
    got = query_ok(ch, sql.data);
    hex_upper(s, len, hex);
    snprintf(want, sizeof(want), "%s\t%zu\n", hex, len);
    ASSERT_EQ_STR(got, want);
    sl_free(got);
    sl_ch_buf_fini(&sql);
}

static void test_ch_quote_roundtrip_hostile(void)
{
    static const char *const hostile[] = {
        "'); DROP DATABASE system; --",
        "\\",
        "\\'",
        "' OR '1'='1",
        "\\x27 \\0 \\n",
        "`backtick` \"double\"",
        "{p:String} ? $1 %s",
        "\n) FORMAT JSON --",
        "+&=%#",
    };
    struct fixture f;
    char all[256];

    fixture_open(&f);
    for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
        check_literal(f.ch, hostile[i], strlen(hostile[i]));
    }
    for (size_t i = 0; i < sizeof(all); i++) {
        all[i] = (char)i;
    }
    check_literal(f.ch, all, sizeof(all));
    check_literal(f.ch, "", 0);
    check_literal(f.ch, "a\0'b", 4);
    fixture_close(&f);
}

static void test_ch_ident_roundtrip_and_url_encoding(void)
{
    static const char table[] = "we`ird\\name it's";
    static const char column[] = "a+b&c=d% #x";
    struct fixture f;
    struct sl_ch_buf sql;
    struct sl_ch_buf data;
    struct sl_err err;
    char want[256];
    char hex[128];
    char *got;

    fixture_open(&f);
    sl_ch_buf_init(&sql, 4096);
    sl_ch_buf_init(&data, 4096);
    ASSERT_OK(sl_ch_buf_appendf(&sql, "CREATE TABLE %s.", f.db), NULL);
    ASSERT_OK(sl_ch_quote_ident(&sql, table, strlen(table)), NULL);
    ASSERT_OK(sl_ch_buf_append_str(&sql, " ("), NULL);
    ASSERT_OK(sl_ch_quote_ident(&sql, column, strlen(column)), NULL);
    ASSERT_OK(sl_ch_buf_append_str(&sql, " String) ENGINE = Memory"), NULL);
    exec_ok(f.ch, sql.data);

    /* The insert statement travels in the URL: every special character must survive. */
    sl_ch_buf_reset(&sql);
    ASSERT_OK(sl_ch_buf_appendf(&sql, "INSERT INTO %s.", f.db), NULL);
    ASSERT_OK(sl_ch_quote_ident(&sql, table, strlen(table)), NULL);
    ASSERT_OK(sl_ch_buf_append_str(&sql, " ("), NULL);
    ASSERT_OK(sl_ch_quote_ident(&sql, column, strlen(column)), NULL);
    ASSERT_OK(sl_ch_buf_append_str(&sql, ") FORMAT RowBinary"), NULL);
    ASSERT_OK(sl_ch_rb_string(&data, "v", 1), NULL);
    ASSERT_OK(sl_ch_insert(f.ch, sql.data, data.data, data.len, &err), &err);

    sl_ch_buf_reset(&sql);
    ASSERT_OK(sl_ch_buf_append_str(&sql, "SELECT hex(table), hex(name) FROM system.columns "
                                         "WHERE database = "), NULL);
    ASSERT_OK(sl_ch_quote(&sql, f.db, strlen(f.db)), NULL);
    ASSERT_OK(sl_ch_buf_append_str(&sql, " FORMAT TabSeparated"), NULL);
    got = query_ok(f.ch, sql.data);
    hex_upper(table, strlen(table), want);
    hex_upper(column, strlen(column), hex);
    strcat(want, "\t");
    strcat(want, hex);
    strcat(want, "\n");
    ASSERT_EQ_STR(got, want);
    sl_free(got);

    sl_ch_buf_reset(&sql);
    ASSERT_OK(sl_ch_buf_append_str(&sql, "SELECT * FROM "), NULL);
    ASSERT_OK(sl_ch_quote_ident(&sql, table, strlen(table)), NULL);
    got = query_ok(f.ch, sql.data);
    ASSERT_EQ_STR(got, "v\n");
    sl_free(got);
    sl_ch_buf_fini(&sql);
    sl_ch_buf_fini(&data);
    fixture_close(&f);
}

static void test_ch_timeout_kills_query(void)
{
    struct fixture f;
    struct sl_ch *slow = NULL;
    struct sl_ch_result res = {0};
    struct sl_err err;
    char sql[256];
    char marker[96];
    int64_t started;
    int64_t took;
    char *got;

    fixture_open(&f);
    f.settings.timeout_ms = 1000;
    ASSERT_OK(sl_ch_create(&slow, &f.settings, &err), &err);
    snprintf(marker, sizeof(marker), "timeout-marker-%s", f.db);
    snprintf(sql, sizeof(sql), "SELECT sleep(3), '%s'", marker);
    started = now_ms();
    ASSERT_EQ_INT(sl_ch_query(slow, sql, &res, &err), SL_ETIMEDOUT);
    took = now_ms() - started;
    fprintf(stderr, "timed out and killed in %lld ms: %s\n", (long long)took, err.msg);
    ASSERT_EQ_INT(err.remote_code, 0);
    ASSERT_CONTAINS(err.msg, "timed out after 1000 ms");
    ASSERT_NOT_CONTAINS(err.msg, "attempts");
    ASSERT_TRUE(took >= 900);
    /* 1 s timeout plus KILL ... SYNC waiting out the sleep; far below the 30 s default. */
    ASSERT_TRUE(took < 8000);
    ASSERT_TRUE(res.body == NULL);

    /* KILL ... SYNC returned, so the query is gone already. */
    snprintf(sql, sizeof(sql),
             "SELECT count() FROM system.processes WHERE query LIKE '%%%s%%' "
             "AND query NOT LIKE '%%system.processes%%'",
             marker);
    got = query_ok(f.ch, sql);
    ASSERT_EQ_STR(got, "0\n");
    sl_free(got);
    /* The client works after a timeout. */
    got = query_ok(slow, "SELECT 1");
    ASSERT_EQ_STR(got, "1\n");
    sl_free(got);
    sl_ch_destroy(slow);
    fixture_close(&f);
}

/* A loopback port nothing listens on: bound to port 0, then closed. */
static int unused_port(void)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    socklen_t len = sizeof(addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port;

    ASSERT_TRUE(fd >= 0);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ_INT(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    ASSERT_EQ_INT(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    port = ntohs(addr.sin_port);
    close(fd);
    return port;
}

static void test_ch_server_down_is_enet(void)
{
    struct fixture f = {0};
    struct sl_ch *ch = NULL;
    struct sl_err err;
    char url[64];
    char where[64];
    int64_t started;
    int64_t took;
    char *saved;
    int port = unused_port();

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
    load_settings(&f, url, "sluice");
    saved = f.settings.password;
    f.settings.password = "hunter2-secret";
    f.settings.connect_timeout_ms = 500;
    f.settings.max_retries = 2;
    f.settings.retry_base_ms = 20;
    f.settings.retry_max_ms = 40;
    ASSERT_OK(sl_ch_create(&ch, &f.settings, &err), &err);
    f.settings.password = saved;
    started = now_ms();
    ASSERT_EQ_INT(sl_ch_exec(ch, "SELECT 1", &err), SL_ENET);
    took = now_ms() - started;
    fprintf(stderr, "unreachable in %lld ms: %s\n", (long long)took, err.msg);
    snprintf(where, sizeof(where), "127.0.0.1:%d", port);
    ASSERT_CONTAINS(err.msg, where);
    ASSERT_CONTAINS(err.msg, "gave up after 3 attempts");
    ASSERT_NOT_CONTAINS(err.msg, "hunter2");
    /* Three connects of at most 500 ms and two backoffs of at most 40 ms. */
    ASSERT_TRUE(took < 3 * 500 + 2 * 40 + 500);

    ASSERT_EQ_INT(sl_ch_ping(ch, &err), SL_ENET);
    ASSERT_NOT_CONTAINS(err.msg, "attempts");
    ASSERT_EQ_INT(sl_ch_insert(ch, "INSERT INTO t FORMAT RowBinary", "x", 1, &err), SL_ENET);
    sl_ch_destroy(ch);
    sl_cfg_fini(&f.sec, 1);
}

struct sink {
    struct sl_ch_buf all;  /* everything received, when it fits */
    size_t total;
    size_t calls;
    char tail[64];         /* the last bytes received */
    size_t tail_len;
};

static int collect(const void *data, size_t len, void *user)
{
    struct sink *s = user;
    const char *p = data;

    s->total += len;
    s->calls++;
    if (sl_ch_buf_append(&s->all, data, len) != 0) {
        sl_ch_buf_reset(&s->all);
    }
    if (len >= sizeof(s->tail)) {
        memcpy(s->tail, p + len - sizeof(s->tail), sizeof(s->tail));
        s->tail_len = sizeof(s->tail);
    }
    else {
        size_t keep = s->tail_len + len > sizeof(s->tail) ? sizeof(s->tail) - len : s->tail_len;

        memmove(s->tail, s->tail + s->tail_len - keep, keep);
        memcpy(s->tail + keep, p, len);
        s->tail_len = keep + len;
    }
    return 0;
}

static int stop_early(const void *data, size_t len, void *user)
{
    (void)data;
    (void)len;
    (void)user;
    return 1;
}

static void test_ch_stream_query(void)
{
    struct fixture f;
    struct sink sink = {0};
    struct sl_ch_buf want;
    struct sl_err err;

    fixture_open(&f);
    sl_ch_buf_init(&sink.all, 8 << 20);
    sl_ch_buf_init(&want, 8 << 20);
    for (int i = 0; i < 300000; i++) {
        ASSERT_OK(sl_ch_buf_appendf(&want, "%d\n", i), NULL);
    }
    ASSERT_OK(sl_ch_query_stream(f.ch, "SELECT number FROM system.numbers LIMIT 300000",
                                 collect, &sink, &err),
              &err);
    ASSERT_EQ_INT(sink.total, want.len);
    ASSERT_TRUE(sink.calls > 1);
    ASSERT_TRUE(memcmp(sink.all.data, want.data, want.len) == 0);

    /* The server fails after it sent 200 and data: the error is found in the tail and never
     * reaches the sink. */
    memset(&sink.tail, 0, sizeof(sink.tail));
    sink.total = 0;
    sink.tail_len = 0;
    sl_ch_buf_reset(&sink.all);
    ASSERT_EQ_INT(sl_ch_query_stream(f.ch,
                                     "SELECT number, throwIf(number = 3000000) FROM "
                                     "system.numbers LIMIT 5000000 "
                                     "SETTINGS max_block_size = 10000",
                                     collect, &sink, &err),
                  SL_ESERVER);
    fprintf(stderr, "appended error after %zu bytes: %s\n", sink.total, err.msg);
    ASSERT_EQ_INT(err.remote_code, 395);
    ASSERT_CONTAINS(err.msg, "throwIf");
    ASSERT_TRUE(sink.total > 0);
    ASSERT_TRUE(memmem(sink.tail, sink.tail_len, "Code:", 5) == NULL);

    ASSERT_EQ_INT(sl_ch_query_stream(f.ch, "SELECT number FROM system.numbers LIMIT 300000",
                                     stop_early, NULL, &err),
                  SL_ECANCELED);
    /* Errors before any data come back as for sl_ch_query. */
    ASSERT_EQ_INT(sl_ch_query_stream(f.ch, "SELECT * FROM nope", collect, &sink, &err),
                  SL_ESERVER);
    ASSERT_EQ_INT(err.remote_code, 60);
    sl_ch_buf_fini(&sink.all);
    sl_ch_buf_fini(&want);
    fixture_close(&f);
}

struct source {
    const char *data;
    size_t len;
    size_t pos;
    size_t piece;     /* most bytes handed out per call */
    size_t abort_at;  /* 0: never */
};

static size_t feed(void *buf, size_t cap, void *user)
{
    struct source *src = user;
    size_t n = src->len - src->pos;

    if (src->abort_at != 0 && src->pos >= src->abort_at) {
        return SL_CH_READ_ABORT;
    }
    if (n > cap) {
        n = cap;
    }
    if (n > src->piece) {
        n = src->piece;
    }
    memcpy(buf, src->data + src->pos, n);
    src->pos += n;
    return n;
}

static void build_stream_rows(struct sl_ch_buf *rows, int n)
{
    for (int k = 0; k < n; k++) {
        uint8_t uuid[16] = {0};
        char s[32];
        int len = snprintf(s, sizeof(s), "row '%d'\n", k);

        uuid[15] = (uint8_t)k;
        add_row(rows, (uint64_t)k, uuid, 1704067200u, s, (size_t)len);
    }
}

static void test_ch_insert_stream_chunked(void)
{
    struct fixture f;
    struct sl_ch_buf rows;
    struct source src = {0};
    struct sl_err err;
    char sql[256];
    char *got;

    fixture_open(&f);
    create_rows_table(&f);
    sl_ch_buf_init(&rows, 16 << 20);
    build_stream_rows(&rows, 20000);
    snprintf(sql, sizeof(sql), "INSERT INTO %s.rows (" ROWS_COLUMNS ") FORMAT RowBinary", f.db);
    src.data = rows.data;
    src.len = rows.len;
    src.piece = 1000;
    ASSERT_OK(sl_ch_insert_stream(f.ch, sql, feed, &src, &err), &err);
    ASSERT_EQ_INT(src.pos, rows.len);
    got = query_ok(f.ch, "SELECT count(), sum(n), uniqExact(s) FROM rows");
    ASSERT_EQ_STR(got, "20000\t199990000\t20000\n");
    sl_free(got);

    /* A source that gives up stops the insert; nothing of it is stored. */
    src.pos = 0;
    src.abort_at = rows.len / 2;
    ASSERT_EQ_INT(sl_ch_insert_stream(f.ch, sql, feed, &src, &err), SL_ECANCELED);
    ASSERT_NOT_CONTAINS(err.msg, "attempts");
    got = query_ok(f.ch, "SELECT count() FROM rows");
    ASSERT_EQ_STR(got, "20000\n");
    sl_free(got);
    sl_ch_buf_fini(&rows);
    fixture_close(&f);
}

/* Waits past the server's 3 s keep-alive: the idle time is what this case is about. */
static void idle_past_keepalive(void)
{
    struct timespec ts = {.tv_sec = 3, .tv_nsec = 300 * 1000 * 1000};

    while (nanosleep(&ts, &ts) != 0) {
    }
}

static void test_ch_reconnects_after_idle(void)
{
    struct fixture f;
    struct sl_ch_buf rows;
    struct source src = {0};
    struct sl_err err;
    char sql[256];
    char *got;

    fixture_open(&f);
    create_rows_table(&f);
    sl_ch_buf_init(&rows, 1 << 20);
    build_stream_rows(&rows, 10);
    snprintf(sql, sizeof(sql), "INSERT INTO %s.rows (" ROWS_COLUMNS ") FORMAT RowBinary", f.db);
    got = query_ok(f.ch, "SELECT 1");
    sl_free(got);
    /* The insert that cannot be retried must not land on the connection the server closed. */
    idle_past_keepalive();
    src.data = rows.data;
    src.len = rows.len;
    src.piece = 64;
    ASSERT_OK(sl_ch_insert_stream(f.ch, sql, feed, &src, &err), &err);
    idle_past_keepalive();
    ASSERT_OK(sl_ch_insert(f.ch, sql, rows.data, rows.len, &err), &err);
    got = query_ok(f.ch, "SELECT count() FROM rows");
    ASSERT_EQ_STR(got, "20\n");
    sl_free(got);
    sl_ch_buf_fini(&rows);
    fixture_close(&f);
}

static void test_ch_result_limit(void)
{
    struct fixture f;
    struct sl_ch *small = NULL;
    struct sl_ch_result res = {0};
    struct sl_err err;

    fixture_open(&f);
    f.settings.max_result_bytes = 65536;
    ASSERT_OK(sl_ch_create(&small, &f.settings, &err), &err);
    ASSERT_EQ_INT(sl_ch_query(small, "SELECT number FROM system.numbers LIMIT 100000", &res,
                              &err),
                  SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "SLUICE_CLICKHOUSE_MAX_RESULT_BYTES");
    ASSERT_TRUE(res.body == NULL);
    ASSERT_OK(sl_ch_query(small, "SELECT number FROM system.numbers LIMIT 10", &res, &err),
              &err);
    ASSERT_EQ_INT(res.len, 20);
    sl_ch_result_fini(&res);
    sl_ch_destroy(small);
    fixture_close(&f);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_ch_ping_and_version),
        TEST_CASE(test_ch_rowbinary_roundtrip),
        TEST_CASE(test_ch_server_errors_keep_code),
        TEST_CASE(test_ch_credentials_sent_as_headers),
        TEST_CASE(test_ch_quote_roundtrip_hostile),
        TEST_CASE(test_ch_ident_roundtrip_and_url_encoding),
        TEST_CASE(test_ch_timeout_kills_query),
        TEST_CASE(test_ch_server_down_is_enet),
        TEST_CASE(test_ch_stream_query),
        TEST_CASE(test_ch_insert_stream_chunked),
        TEST_CASE(test_ch_reconnects_after_idle),
        TEST_CASE(test_ch_result_limit),
        {NULL, NULL},
    };

    sl_log_configure("warn", NULL);
    return test_main(argc, argv, cases);
}

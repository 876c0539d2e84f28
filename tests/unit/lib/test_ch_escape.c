/*
 * Tests lib/ch_escape.c: the bounded buffer, string and identifier quoting, RowBinary
 * encoders, parsing of ClickHouse error bodies (samples taken from 18.16 and newer servers),
 * and the client's settings checks that need no server.
 */
#include "alloc.h"
#include "ch.h"
#include "test.h"

/* Compares a buffer's bytes with len expected bytes, printing both as hex on mismatch. */
static void assert_bytes(const struct sl_ch_buf *b, const void *expected, size_t len)
{
    if (b->len != len || (len > 0 && memcmp(b->data, expected, len) != 0)) {
        char got[256] = "";
        char want[256] = "";

        for (size_t i = 0; i < b->len && i < 80; i++) {
            snprintf(got + 3 * i, 4, "%02x ", (unsigned char)b->data[i]);
        }
        for (size_t i = 0; i < len && i < 80; i++) {
            snprintf(want + 3 * i, 4, "%02x ", ((const unsigned char *)expected)[i]);
        }
        TEST_FAIL("bytes differ: got [%s] (%zu), want [%s] (%zu)", got, b->len, want, len);
    }
}

static void test_ch_quote_nasty_strings(void)
{
    static const struct {
        const char *in;
        size_t len;
        const char *out;
    } cases[] = {
        {"", 0, "''"},
        {"plain", 5, "'plain'"},
        {"it's", 4, "'it\\'s'"},
        {"a\\b", 3, "'a\\\\b'"},
        {"\\", 1, "'\\\\'"},
        {"\\'", 2, "'\\\\\\''"},
        {"a\0b", 3, "'a\\0b'"},
        {"l1\nl2\r\t", 7, "'l1\\nl2\\r\\t'"},
        {"\x01\x1f\x7f", 3, "'\\x01\\x1f\x7f'"},
        {"h\xc3\xa9llo \xe2\x9c\x93", 10, "'h\xc3\xa9llo \xe2\x9c\x93'"},
        {"'; DROP TABLE x; --", 19, "'\\'; DROP TABLE x; --'"},
        {"`back`", 6, "'`back`'"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sl_ch_buf b;

        sl_ch_buf_init(&b, 1024);
        ASSERT_OK(sl_ch_quote(&b, cases[i].in, cases[i].len), NULL);
        ASSERT_EQ_STR(b.data, cases[i].out);
        ASSERT_EQ_INT(b.len, strlen(cases[i].out));
        sl_ch_buf_fini(&b);
    }
}

static void test_ch_quote_appends_after_sql(void)
{
    struct sl_ch_buf b;

    sl_ch_buf_init(&b, 1024);
    ASSERT_OK(sl_ch_buf_append_str(&b, "SELECT "), NULL);
    ASSERT_OK(sl_ch_quote(&b, "x'y", 3), NULL);
    ASSERT_OK(sl_ch_buf_appendf(&b, " AS v%d", 7), NULL);
    ASSERT_EQ_STR(b.data, "SELECT 'x\\'y' AS v7");
    sl_ch_buf_reset(&b);
    ASSERT_EQ_INT(b.len, 0);
    ASSERT_EQ_STR(b.data, "");
    sl_ch_buf_fini(&b);
    sl_ch_buf_fini(&b);
}

static void test_ch_quote_ident(void)
{
    struct sl_ch_buf b;

    sl_ch_buf_init(&b, 1024);
    ASSERT_OK(sl_ch_quote_ident(&b, "events", 6), NULL);
    ASSERT_EQ_STR(b.data, "`events`");
    sl_ch_buf_reset(&b);
    ASSERT_OK(sl_ch_quote_ident(&b, "we`ird", 6), NULL);
    ASSERT_EQ_STR(b.data, "`we\\`ird`");
    sl_ch_buf_reset(&b);
    ASSERT_OK(sl_ch_quote_ident(&b, "a\\b it's", 8), NULL);
    ASSERT_EQ_STR(b.data, "`a\\\\b it's`");
    sl_ch_buf_reset(&b);
    ASSERT_OK(sl_ch_quote_ident(&b, "x\ny", 3), NULL);
    ASSERT_EQ_STR(b.data, "`x\\ny`");
    sl_ch_buf_reset(&b);
    ASSERT_EQ_INT(sl_ch_quote_ident(&b, "", 0), SL_EINVAL);
    ASSERT_EQ_INT(sl_ch_quote_ident(&b, "a\0b", 3), SL_EINVAL);
    ASSERT_EQ_INT(b.len, 0);
    /* database.table, both quoted */
    ASSERT_OK(sl_ch_quote_table(&b, "my db", "ev`ents"), NULL);
    ASSERT_EQ_STR(b.data, "`my db`.`ev\\`ents`");
    sl_ch_buf_reset(&b);
    ASSERT_EQ_INT(sl_ch_quote_table(&b, "", "events"), SL_EINVAL);
    sl_ch_buf_fini(&b);
}

static void test_ch_rb_leb128_boundaries(void)
{
    static const struct {
        uint64_t n;
        size_t len;
        const char *bytes;
    } cases[] = {
        {0, 1, "\x00"},
        {1, 1, "\x01"},
        {127, 1, "\x7f"},
        {128, 2, "\x80\x01"},
        {300, 2, "\xac\x02"},
        {16383, 2, "\xff\x7f"},
        {16384, 3, "\x80\x80\x01"},
        {UINT64_C(4294967296), 5, "\x80\x80\x80\x80\x10"},
        {UINT64_MAX, 10, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sl_ch_buf b;

        sl_ch_buf_init(&b, 64);
        ASSERT_OK(sl_ch_rb_array_len(&b, cases[i].n), NULL);
        assert_bytes(&b, cases[i].bytes, cases[i].len);
        sl_ch_buf_fini(&b);
    }
}

static void test_ch_rb_string(void)
{
    struct sl_ch_buf b;
    char big[200];

    sl_ch_buf_init(&b, 1024);
    ASSERT_OK(sl_ch_rb_string(&b, "abc", 3), NULL);
    assert_bytes(&b, "\x03" "abc", 4);
    sl_ch_buf_reset(&b);
    ASSERT_OK(sl_ch_rb_string(&b, "", 0), NULL);
    assert_bytes(&b, "\x00", 1);
    sl_ch_buf_reset(&b);
    ASSERT_OK(sl_ch_rb_string(&b, "a'\0\n", 4), NULL);
    assert_bytes(&b, "\x04" "a'\0\n", 5);
    sl_ch_buf_reset(&b);
    memset(big, 'z', sizeof(big));
    ASSERT_OK(sl_ch_rb_string(&b, big, 128), NULL);
    ASSERT_EQ_INT(b.len, 130);
    ASSERT_EQ_INT((unsigned char)b.data[0], 0x80);
    ASSERT_EQ_INT((unsigned char)b.data[1], 0x01);
    ASSERT_EQ_INT(b.data[129], 'z');
    sl_ch_buf_fini(&b);
}

static void test_ch_rb_fixed_width(void)
{
    static const uint8_t uuid[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                     0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
    struct sl_ch_buf b;

    sl_ch_buf_init(&b, 1024);
    ASSERT_OK(sl_ch_rb_u8(&b, 0xab), NULL);
    ASSERT_OK(sl_ch_rb_u16(&b, 0x1234), NULL);
    ASSERT_OK(sl_ch_rb_u32(&b, 0x12345678), NULL);
    ASSERT_OK(sl_ch_rb_u64(&b, UINT64_C(0x0102030405060708)), NULL);
    assert_bytes(&b, "\xab" "\x34\x12" "\x78\x56\x34\x12" "\x08\x07\x06\x05\x04\x03\x02\x01",
                 15);
    sl_ch_buf_reset(&b);
    ASSERT_OK(sl_ch_rb_i64(&b, -2), NULL);
    ASSERT_OK(sl_ch_rb_f64(&b, 1.5), NULL);
    assert_bytes(&b, "\xfe\xff\xff\xff\xff\xff\xff\xff" "\x00\x00\x00\x00\x00\x00\xf8\x3f", 16);
    sl_ch_buf_reset(&b);
    /* 2024-01-01T00:00:00Z = 0x65920080 */
    ASSERT_OK(sl_ch_rb_datetime(&b, 1704067200u), NULL);
    assert_bytes(&b, "\x80\x00\x92\x65", 4);
    sl_ch_buf_reset(&b);
    /* Bytes as 18.16 sends toUUID('00112233-4455-6677-8899-aabbccddeeff') in RowBinary. */
    ASSERT_OK(sl_ch_rb_uuid(&b, uuid), NULL);
    assert_bytes(&b, "\x77\x66\x55\x44\x33\x22\x11\x00\xff\xee\xdd\xcc\xbb\xaa\x99\x88", 16);
    sl_ch_buf_fini(&b);
}

static void test_ch_buf_max_enforced(void)
{
    struct sl_ch_buf b;

    sl_ch_buf_init(&b, 8);
    ASSERT_OK(sl_ch_buf_append(&b, "12345678", 8), NULL);
    ASSERT_EQ_INT(sl_ch_buf_append(&b, "9", 1), SL_EINVAL);
    ASSERT_EQ_INT(b.len, 8);
    ASSERT_EQ_STR(b.data, "12345678");
    ASSERT_OK(sl_ch_buf_append(&b, "", 0), NULL);
    sl_ch_buf_reset(&b);
    ASSERT_OK(sl_ch_buf_append(&b, "abcd", 4), NULL);
    /* Each appender is all or nothing. */
    ASSERT_EQ_INT(sl_ch_quote(&b, "xyz", 3), SL_EINVAL);
    ASSERT_EQ_INT(sl_ch_rb_string(&b, "wxyz", 4), SL_EINVAL);
    ASSERT_EQ_INT(sl_ch_rb_u64(&b, 1), SL_EINVAL);
    ASSERT_EQ_INT(sl_ch_buf_appendf(&b, "%s", "12345"), SL_EINVAL);
    ASSERT_EQ_INT(b.len, 4);
    ASSERT_EQ_STR(b.data, "abcd");
    ASSERT_OK(sl_ch_rb_string(&b, "xyz", 3), NULL);
    ASSERT_EQ_INT(b.len, 8);
    ASSERT_EQ_INT(sl_ch_buf_append(&b, "x", SIZE_MAX), SL_EINVAL);
    sl_ch_buf_fini(&b);
}

static void test_ch_buf_alloc_failure(void)
{
    struct sl_ch_buf b;
    char big[1000];

    memset(big, 'q', sizeof(big));
    sl_ch_buf_init(&b, 1 << 20);
    sl_alloc_fail_after(0);
    ASSERT_EQ_INT(sl_ch_buf_append(&b, "x", 1), SL_ENOMEM);
    ASSERT_EQ_INT(b.len, 0);
    ASSERT_TRUE(b.data == NULL);
    sl_alloc_fail_after(1);
    ASSERT_OK(sl_ch_buf_append(&b, "x", 1), NULL);
    ASSERT_EQ_INT(sl_ch_buf_append(&b, big, sizeof(big)), SL_ENOMEM);
    ASSERT_EQ_INT(sl_ch_quote(&b, big, sizeof(big)), SL_ENOMEM);
    sl_alloc_fail_after(-1);
    ASSERT_EQ_INT(b.len, 1);
    ASSERT_EQ_STR(b.data, "x");
    ASSERT_OK(sl_ch_buf_append(&b, big, sizeof(big)), NULL);
    ASSERT_EQ_INT(b.len, 1001);
    sl_ch_buf_fini(&b);
}

static void check_parse(const char *body, long want_code, const char *want_msg)
{
    char msg[256];
    long code = -1;
    int rc = sl_ch_parse_error(body, strlen(body), &code, msg, sizeof(msg));

    ASSERT_EQ_INT(rc, want_code != 0 ? 0 : SL_ENOTFOUND);
    ASSERT_EQ_INT(code, want_code);
    ASSERT_EQ_STR(msg, want_msg);
}

static void test_ch_parse_error_bodies(void)
{
    /* Bodies as ClickHouse 18.16.1 sends them. */
    check_parse("Code: 60, e.displayText() = DB::Exception: Table sluice.nope doesn't exist., "
                "e.what() = DB::Exception\n",
                60, "Table sluice.nope doesn't exist");
    check_parse("Code: 62, e.displayText() = DB::Exception: Syntax error: failed at position 1: "
                "SELEC 1\n. Expected one of: SYSTEM query, SELECT subquery, e.what() = "
                "DB::Exception\n",
                62, "Syntax error: failed at position 1: SELEC 1");
    check_parse("Code: 193, e.displayText() = DB::Exception: Wrong password for user default, "
                "e.what() = DB::Exception\n",
                193, "Wrong password for user default");
    check_parse("Code: 159, e.displayText() = DB::Exception: Timeout exceeded: elapsed "
                "3.003999905 seconds, maximum: 1, e.what() = DB::Exception\n",
                159, "Timeout exceeded: elapsed 3.003999905 seconds, maximum: 1");
    check_parse("Code: 115, e.displayText() = DB::Exception: Unknown setting foo, e.what() = "
                "DB::Exception\n",
                115, "Unknown setting foo");
    /* Newer servers. */
    check_parse("Code: 60. DB::Exception: Table default.nope does not exist. (UNKNOWN_TABLE) "
                "(version 23.8.2.7 (official build))\n",
                60, "Table default.nope does not exist. (UNKNOWN_TABLE)");
    /* Not ClickHouse: the first line still says something. */
    check_parse("  502 Bad Gateway\n<html>...</html>", 0, "502 Bad Gateway");
    check_parse("", 0, "");
    check_parse("Code: none", 0, "Code: none");
}

static void test_ch_parse_error_bounds(void)
{
    const char *body = "Code: 60, e.displayText() = DB::Exception: Table sluice.nope doesn't "
                       "exist., e.what() = DB::Exception";
    char msg[8];
    long code = 0;

    ASSERT_OK(sl_ch_parse_error(body, strlen(body), &code, msg, sizeof(msg)), NULL);
    ASSERT_EQ_INT(code, 60);
    ASSERT_EQ_STR(msg, "Table s");
    /* Only len bytes are read: the code is cut short. */
    ASSERT_OK(sl_ch_parse_error(body, 7, &code, msg, sizeof(msg)), NULL);
    ASSERT_EQ_INT(code, 6);
    ASSERT_EQ_INT(sl_ch_parse_error(body, 6, &code, msg, sizeof(msg)), SL_ENOTFOUND);
}

static void test_ch_parse_tail_error(void)
{
    const char *appended = "2999998\t0\n2999999\t0\nCode: 395, e.displayText() = DB::Exception: "
                           "Value passed to 'throwIf' function is non zero, e.what() = "
                           "DB::Exception\n";
    const char *modern = "1\n2\nCode: 395. DB::Exception: Value passed to 'throwIf' function is "
                         "non-zero. (FUNCTION_THROW_IF_VALUE_IS_NON_ZERO) (version 23.8.2.7)\n";
    const char *clean = "1\tCode: 5\n2\tno error here\n";
    const char *lookalike = "1\nCode: 12 apples\n";
    char msg[256];
    long code = 0;

    ASSERT_OK(sl_ch_parse_tail_error(appended, strlen(appended), &code, msg, sizeof(msg)),
              NULL);
    ASSERT_EQ_INT(code, 395);
    ASSERT_EQ_STR(msg, "Value passed to 'throwIf' function is non zero");
    ASSERT_OK(sl_ch_parse_tail_error(modern, strlen(modern), &code, msg, sizeof(msg)), NULL);
    ASSERT_EQ_INT(code, 395);
    ASSERT_CONTAINS(msg, "non-zero");
    ASSERT_EQ_INT(sl_ch_parse_tail_error(clean, strlen(clean), &code, msg, sizeof(msg)),
                  SL_ENOTFOUND);
    ASSERT_EQ_INT(code, 0);
    ASSERT_EQ_INT(sl_ch_parse_tail_error(lookalike, strlen(lookalike), &code, msg, sizeof(msg)),
                  SL_ENOTFOUND);
    ASSERT_EQ_INT(sl_ch_parse_tail_error("", 0, &code, msg, sizeof(msg)), SL_ENOTFOUND);
    /* An error at the very start of the window counts too. */
    ASSERT_OK(sl_ch_parse_tail_error(appended + 20, strlen(appended + 20), &code, msg,
                                     sizeof(msg)),
              NULL);
    ASSERT_EQ_INT(code, 395);
}

static void test_ch_is_transient(void)
{
    static const long transient[] = {202, 203, 209, 210, 241, 242, 252, 319, 425};
    static const long permanent[] = {0, 27, 60, 62, 81, 115, 159, 193, 395};

    for (size_t i = 0; i < sizeof(transient) / sizeof(transient[0]); i++) {
        ASSERT_TRUE(sl_ch_is_transient(transient[i]));
    }
    for (size_t i = 0; i < sizeof(permanent) / sizeof(permanent[0]); i++) {
        ASSERT_TRUE(!sl_ch_is_transient(permanent[i]));
    }
}

static const struct sl_cfg_opt *find_opt(const char *key)
{
    for (size_t i = 0; i < sl_ch_cfg_n_opts; i++) {
        if (strcmp(sl_ch_cfg_opts[i].key, key) == 0) {
            return &sl_ch_cfg_opts[i];
        }
    }
    TEST_FAIL("no setting %s", key);
}

static void test_ch_settings_defaults_and_checks(void)
{
    struct sl_ch_settings s = {0};
    struct sl_cfg_section sec = SL_CFG_SECTION("clickhouse", sl_ch_cfg_opts, sl_ch_cfg_n_opts,
                                               &s);
    char *env[] = {"SLUICE_CLICKHOUSE_DATABASE=bad-name", NULL};
    const struct sl_cfg_opt *db = find_opt("SLUICE_CLICKHOUSE_DATABASE");
    char *field = NULL;
    struct sl_err err;

    ASSERT_OK(sl_cfg_load(&sec, 1, NULL, NULL, &err), &err);
    ASSERT_EQ_STR(s.url, "http://127.0.0.1:8123");
    ASSERT_EQ_STR(s.database, "sluice");
    ASSERT_EQ_STR(s.user, "default");
    ASSERT_EQ_STR(s.password, "");
    ASSERT_EQ_INT(s.timeout_ms, 30000);
    ASSERT_EQ_INT(s.connect_timeout_ms, 2000);
    ASSERT_EQ_INT(s.max_retries, 3);
    ASSERT_EQ_INT(s.retry_base_ms, 100);
    ASSERT_EQ_INT(s.retry_max_ms, 5000);
    ASSERT_EQ_INT(s.max_result_bytes, 64 << 20);
    ASSERT_TRUE(find_opt("SLUICE_CLICKHOUSE_PASSWORD")->is_secret);
    ASSERT_EQ_INT(sl_cfg_load(&sec, 1, NULL, env, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "SLUICE_CLICKHOUSE_DATABASE");
    ASSERT_CONTAINS(err.msg, "bad-name");
    sl_cfg_fini(&sec, 1);

    ASSERT_OK(sl_cfg_parse_value(db, "sluice_2", &field, &err), &err);
    ASSERT_EQ_STR(field, "sluice_2");
    ASSERT_OK(sl_cfg_parse_value(db, "_x", &field, &err), &err);
    ASSERT_EQ_INT(sl_cfg_parse_value(db, "1abc", &field, &err), SL_EINVAL);
    ASSERT_EQ_INT(sl_cfg_parse_value(db, "", &field, &err), SL_EINVAL);
    ASSERT_EQ_INT(sl_cfg_parse_value(db, "a.b", &field, &err), SL_EINVAL);
    ASSERT_EQ_INT(sl_cfg_parse_value(db, "x`y", &field, &err), SL_EINVAL);
    ASSERT_EQ_STR(field, "_x");
    sl_free(field);
}

static void default_settings(struct sl_ch_settings *s)
{
    memset(s, 0, sizeof(*s));
    s->url = "http://127.0.0.1:8123";
    s->database = "sluice";
    s->user = "default";
    s->password = "";
    s->timeout_ms = 30000;
    s->connect_timeout_ms = 2000;
    s->max_retries = 3;
    s->retry_base_ms = 100;
    s->retry_max_ms = 5000;
    s->max_result_bytes = 1 << 20;
}

static void test_ch_create_checks_settings(void)
{
    struct sl_ch_settings s;
    struct sl_ch *ch = NULL;
    struct sl_err err;

    default_settings(&s);
    ASSERT_OK(sl_ch_create(&ch, &s, &err), &err);
    sl_ch_destroy(ch);
    sl_ch_destroy(NULL);

    s.url = "http://admin:hunter2@127.0.0.1:8123/";
    ASSERT_EQ_INT(sl_ch_create(&ch, &s, &err), SL_EINVAL);
    ASSERT_TRUE(ch == NULL);
    ASSERT_CONTAINS(err.msg, "credentials");
    ASSERT_NOT_CONTAINS(err.msg, "hunter2");

    default_settings(&s);
    s.url = "ftp://127.0.0.1/";
    ASSERT_EQ_INT(sl_ch_create(&ch, &s, &err), SL_EINVAL);
    default_settings(&s);
    s.database = "x;DROP";
    ASSERT_EQ_INT(sl_ch_create(&ch, &s, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "SLUICE_CLICKHOUSE_DATABASE");
    default_settings(&s);
    s.password = "a\r\nX-Evil: 1";
    ASSERT_EQ_INT(sl_ch_create(&ch, &s, &err), SL_EINVAL);
    default_settings(&s);
    s.retry_max_ms = 10;
    ASSERT_EQ_INT(sl_ch_create(&ch, &s, &err), SL_EINVAL);

    /* Every allocation failure during create is reported and leaks nothing. */
    default_settings(&s);
    s.password = "secret";
    for (long n = 0; n < 64; n++) {
        int rc;

        sl_alloc_fail_after(n);
        rc = sl_ch_create(&ch, &s, &err);
        sl_alloc_fail_after(-1);
        if (rc == 0) {
            sl_ch_destroy(ch);
            break;
        }
        ASSERT_EQ_INT(rc, SL_ENOMEM);
        ASSERT_TRUE(ch == NULL);
    }
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_ch_quote_nasty_strings),
        TEST_CASE(test_ch_quote_appends_after_sql),
        TEST_CASE(test_ch_quote_ident),
        TEST_CASE(test_ch_rb_leb128_boundaries),
        TEST_CASE(test_ch_rb_string),
        TEST_CASE(test_ch_rb_fixed_width),
        TEST_CASE(test_ch_buf_max_enforced),
        TEST_CASE(test_ch_buf_alloc_failure),
        TEST_CASE(test_ch_parse_error_bodies),
        TEST_CASE(test_ch_parse_error_bounds),
        TEST_CASE(test_ch_parse_tail_error),
        TEST_CASE(test_ch_is_transient),
        TEST_CASE(test_ch_settings_defaults_and_checks),
        TEST_CASE(test_ch_create_checks_settings),
        {NULL, NULL},
    };
    return test_main(argc, argv, cases);
}

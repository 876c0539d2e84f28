/*
 * Tests lib/json.c: the bounded buffer (maximum, sticky failure, reset, take), string
 * escaping of every control character, UTF-8 passing through, integers, shortest
 * round-trip reals, and writing parsed jansson values with a nesting limit.
 */
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>

#include "alloc.h"
#include "err.h"
#include "json.h"
#include "test.h"

/* Compares b's text (not NUL-terminated) with want. */
static void assert_text(const struct sl_json_buf *b, const char *want)
{
    char got[1024];

    ASSERT_TRUE(!b->is_failed);
    ASSERT_TRUE(b->len < sizeof(got));
    memcpy(got, b->data != NULL ? b->data : "", b->len);
    got[b->len] = '\0';
    ASSERT_EQ_STR(got, want);
    ASSERT_EQ_INT(b->len, strlen(want));
}

/* Parses text with jansson; fails the test if it is not JSON. */
static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);

    if (v == NULL) {
        TEST_FAIL("not JSON (%s): %s", jerr.text, text);
    }
    return v;
}

static void test_json_str_escapes_every_control_char(void)
{
    struct sl_json_buf b;

    sl_json_buf_init(&b, 4096);
    for (int c = 0; c < 0x80; c++) {
        char in = (char)c;
        char want[16];

        switch (c) {
        case '"': snprintf(want, sizeof(want), "\"\\\"\""); break;
        case '\\': snprintf(want, sizeof(want), "\"\\\\\""); break;
        case '\b': snprintf(want, sizeof(want), "\"\\b\""); break;
        case '\t': snprintf(want, sizeof(want), "\"\\t\""); break;
        case '\n': snprintf(want, sizeof(want), "\"\\n\""); break;
        case '\f': snprintf(want, sizeof(want), "\"\\f\""); break;
        case '\r': snprintf(want, sizeof(want), "\"\\r\""); break;
        default:
            if (c < 0x20 || c == 0x7f) {
                snprintf(want, sizeof(want), "\"\\u%04x\"", c);
            }
            else {
                snprintf(want, sizeof(want), "\"%c\"", c);
            }
            break;
        }
        sl_json_buf_reset(&b);
        sl_json_append_str(&b, &in, 1);
        assert_text(&b, want);
    }
    /* Escapes between plain runs keep the runs whole and in order. */
    sl_json_buf_reset(&b);
    sl_json_append_str(&b, "a\0b\x1f" "c\"d\\", 8);
    assert_text(&b, "\"a\\u0000b\\u001fc\\\"d\\\\\"");
    sl_json_buf_fini(&b);
}

static void test_json_str_passes_utf8_through(void)
{
    /* Two-, three- and four-byte characters, and U+0085 (a C1 control, valid in JSON). */
    static const char text[] = "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80 \xc2\x85";
    struct sl_json_buf b;
    json_error_t jerr;
    json_t *back;
    char *out = NULL;
    size_t len = 0;

    sl_json_buf_init(&b, 1024);
    sl_json_append_str(&b, text, sizeof(text) - 1);
    ASSERT_OK(sl_json_buf_take(&b, &out, &len), NULL);
    ASSERT_EQ_INT(len, sizeof(text) + 1);
    ASSERT_TRUE(memcmp(out + 1, text, sizeof(text) - 1) == 0);
    /* jansson reads back the same bytes. */
    back = json_loadb(out, len, JSON_DECODE_ANY, &jerr);
    ASSERT_TRUE(back != NULL);
    ASSERT_EQ_INT(json_string_length(back), sizeof(text) - 1);
    ASSERT_TRUE(memcmp(json_string_value(back), text, sizeof(text) - 1) == 0);
    json_decref(back);
    sl_free(out);
    sl_json_buf_fini(&b);
}

/* The escaping rule of sl_json_append_str, one byte at a time: the oracle for the fast scan. */
static size_t escape_slowly(char *out, const char *s, size_t len)
{
    size_t o = 0;

    out[o++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        switch (c) {
        case '"': o += (size_t)sprintf(out + o, "\\\""); break;
        case '\\': o += (size_t)sprintf(out + o, "\\\\"); break;
        case '\n': o += (size_t)sprintf(out + o, "\\n"); break;
        case '\r': o += (size_t)sprintf(out + o, "\\r"); break;
        case '\t': o += (size_t)sprintf(out + o, "\\t"); break;
        case '\b': o += (size_t)sprintf(out + o, "\\b"); break;
        case '\f': o += (size_t)sprintf(out + o, "\\f"); break;
        default:
            if (c < 0x20 || c == 0x7f) {
                o += (size_t)sprintf(out + o, "\\u%04x", c);
            }
            else {
                out[o++] = (char)c;
            }
        }
    }
    out[o++] = '"';
    out[o] = '\0';
    return o;
}

/* Strings of every length up to 40 with one byte to escape at every position (or none),
 * so the eight-at-a-time scan meets it in every lane and in the tail. */
static void test_json_str_escapes_at_every_position(void)
{
    static const char specials[] = {0x01, '"', '\\', 0x7f, '\n', 0x1f};
    struct sl_json_buf b;
    char in[48];
    char want[48 * 6 + 3];

    sl_json_buf_init(&b, 4096);
    for (size_t len = 0; len <= 40; len++) {
        for (size_t k = 0; k < sizeof(specials); k++) {
            for (long at = -1; at < (long)len; at++) {
                for (size_t i = 0; i < len; i++) {
                    in[i] = (char)(i % 3 == 2 ? 0xc3 : i % 3 == 0 && i > 0 ? 0xa9 : 'a' + i % 26);
                }
                if (at >= 0) {
                    in[at] = specials[k];
                }
                escape_slowly(want, in, len);
                sl_json_buf_reset(&b);
                sl_json_append_str(&b, in, len);
                assert_text(&b, want);
            }
        }
    }
    sl_json_buf_fini(&b);
}

/* The plain-string path counts against the maximum like the rest: exactly fitting is fine,
 * one byte short fails as too big. */
static void test_json_str_plain_respects_max(void)
{
    static const char text[] = "abcdefghijklmnopqrstuvwxyz";
    struct sl_json_buf b;

    sl_json_buf_init(&b, 28);
    sl_json_append_str(&b, text, 26);
    assert_text(&b, "\"abcdefghijklmnopqrstuvwxyz\"");
    sl_json_buf_fini(&b);
    sl_json_buf_init(&b, 27);
    sl_json_append_str(&b, text, 26);
    ASSERT_TRUE(b.is_failed && b.is_too_big);
    ASSERT_EQ_INT(b.len, 0);
    sl_json_buf_fini(&b);
}

static void test_json_str_or_null(void)
{
    struct sl_json_buf b;

    sl_json_buf_init(&b, 64);
    sl_json_append_str_or_null(&b, NULL, 0);
    SL_JSON_BUF_LIT(&b, ",");
    sl_json_append_str_or_null(&b, "", 0);
    SL_JSON_BUF_LIT(&b, ",");
    sl_json_append_str_or_null(&b, "x", 1);
    assert_text(&b, "null,\"\",\"x\"");
    sl_json_buf_fini(&b);
}

static void test_json_int_extremes(void)
{
    static const struct {
        int64_t v;
        const char *text;
    } cases[] = {
        {0, "0"},
        {-1, "-1"},
        {42, "42"},
        {INT64_MAX, "9223372036854775807"},
        {INT64_MIN, "-9223372036854775808"},
    };
    struct sl_json_buf b;

    sl_json_buf_init(&b, 64);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sl_json_buf_reset(&b);
        sl_json_append_int(&b, cases[i].v);
        assert_text(&b, cases[i].text);
    }
    sl_json_buf_fini(&b);
}

static void test_json_real_shortest_round_trip(void)
{
    static const struct {
        double v;
        const char *text;
    } cases[] = {
        {0.1, "0.1"},
        {1e300, "1e+300"},
        {1.0, "1.0"},
        {100.0, "100.0"},
        {-0.0, "-0.0"},
        {2.5, "2.5"},
        {-1.5e-7, "-1.5e-07"},
        {0.1 + 0.2, "0.30000000000000004"},
        {1.0 / 3.0, "0.3333333333333333"},
        {123456789.0, "123456789.0"},
        {1.2345678901234568e20, "1.2345678901234568e+20"},
        {DBL_MAX, "1.7976931348623157e+308"},
        {5e-324, "4.94065645841247e-324"},
    };
    struct sl_json_buf b;

    sl_json_buf_init(&b, 64);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[64];

        sl_json_buf_reset(&b);
        sl_json_append_real(&b, cases[i].v);
        assert_text(&b, cases[i].text);
        /* Whatever it printed reads back as the same double, and as a real. */
        memcpy(text, b.data, b.len);
        text[b.len] = '\0';
        ASSERT_TRUE(strtod(text, NULL) == cases[i].v);
        ASSERT_TRUE(signbit(strtod(text, NULL)) == signbit(cases[i].v));
        ASSERT_TRUE(strpbrk(text, ".e") != NULL);
    }
    sl_json_buf_fini(&b);
}

static void test_json_buf_max_is_enforced(void)
{
    struct sl_json_buf b;
    char *out = NULL;
    size_t len = 0;

    /* Exactly the maximum fits; one more byte fails and sticks. */
    sl_json_buf_init(&b, 10);
    sl_json_buf_append(&b, "0123456789", 10);
    ASSERT_TRUE(!b.is_failed);
    ASSERT_EQ_INT(b.len, 10);
    SL_JSON_BUF_LIT(&b, "x");
    ASSERT_TRUE(b.is_failed);
    ASSERT_TRUE(b.is_too_big);
    ASSERT_EQ_INT(b.len, 10);
    SL_JSON_BUF_LIT(&b, "");
    sl_json_append_int(&b, 1);
    ASSERT_EQ_INT(b.len, 10);
    /* The NUL of take counts too: a full buffer cannot be taken. */
    ASSERT_EQ_INT(sl_json_buf_take(&b, &out, &len), SL_ENOMEM);
    ASSERT_TRUE(out == NULL);
    ASSERT_EQ_INT(len, 0);
    ASSERT_TRUE(b.data == NULL && b.len == 0 && !b.is_failed);

    /* An escaped string counts its escapes: two raw bytes become 14 with the quotes. */
    sl_json_append_str(&b, "\x01\x02", 2);
    ASSERT_TRUE(b.is_failed && b.is_too_big);
    sl_json_buf_reset(&b);
    ASSERT_TRUE(!b.is_failed && !b.is_too_big && b.len == 0);
    sl_json_append_str(&b, "ab", 2);
    assert_text(&b, "\"ab\"");

    /* Nine bytes and the NUL fit; take hands them over and leaves the buffer empty. */
    sl_json_buf_reset(&b);
    sl_json_buf_append(&b, "012345678", 9);
    ASSERT_OK(sl_json_buf_take(&b, &out, &len), NULL);
    ASSERT_EQ_STR(out, "012345678");
    ASSERT_EQ_INT(len, 9);
    ASSERT_TRUE(b.data == NULL && b.len == 0);
    sl_free(out);

    /* A zero maximum takes nothing. */
    sl_json_buf_init(&b, 0);
    SL_JSON_BUF_LIT(&b, "{");
    ASSERT_TRUE(b.is_too_big);
    sl_json_buf_fini(&b);
}

static void test_json_buf_grows_past_first_block(void)
{
    struct sl_json_buf b;
    char chunk[100];

    memset(chunk, 'q', sizeof(chunk));
    sl_json_buf_init(&b, 1 << 20);
    for (int i = 0; i < 100; i++) {
        sl_json_buf_append(&b, chunk, sizeof(chunk));
    }
    ASSERT_TRUE(!b.is_failed);
    ASSERT_EQ_INT(b.len, 10000);
    ASSERT_TRUE(b.data[0] == 'q' && b.data[9999] == 'q');
    sl_json_buf_appendf(&b, "%d-%s", 7, "x");
    ASSERT_EQ_INT(b.len, 10003);
    ASSERT_TRUE(memcmp(b.data + 10000, "7-x", 3) == 0);
    sl_json_buf_fini(&b);
}

/* The inline append trusts memory already allocated to lie within the maximum. */
static void test_json_buf_never_allocates_past_max(void)
{
    struct sl_json_buf b;
    char chunk[100];

    memset(chunk, 'q', sizeof(chunk));
    sl_json_buf_init(&b, 300);
    sl_json_buf_append(&b, chunk, 100);
    ASSERT_TRUE(b._cap <= 300);
    sl_json_buf_append(&b, chunk, 100);
    sl_json_buf_append(&b, chunk, 100);
    ASSERT_TRUE(!b.is_failed);
    ASSERT_EQ_INT(b.len, 300);
    ASSERT_TRUE(b._cap <= 300);
    SL_JSON_BUF_LIT(&b, "q");
    ASSERT_TRUE(b.is_failed && b.is_too_big);
    ASSERT_EQ_INT(b.len, 300);
    /* Failed is failed even where memory is left: nothing more is written. */
    sl_json_buf_fini(&b);
    sl_json_buf_init(&b, 1000);
    SL_JSON_BUF_LIT(&b, "ab");
    sl_json_buf_append(&b, chunk, 99);
    sl_json_buf_append(&b, chunk, 100);
    sl_json_buf_append(&b, chunk, 100);
    sl_json_buf_append(&b, chunk, 100);
    ASSERT_TRUE(!b.is_failed);
    sl_json_buf_append(&b, chunk, 100);
    sl_json_buf_append(&b, chunk, 100);
    sl_json_buf_append(&b, chunk, 100);
    sl_json_buf_append(&b, chunk, 100);
    sl_json_buf_append(&b, chunk, 100);
    sl_json_buf_append(&b, chunk, 100);
    ASSERT_TRUE(b.is_failed && b.is_too_big);
    ASSERT_EQ_INT(b.len, 901);
    SL_JSON_BUF_LIT(&b, "z");
    ASSERT_EQ_INT(b.len, 901);
    sl_json_buf_fini(&b);
}

static void test_json_buf_alloc_failure(void)
{
    struct sl_json_buf b;

    sl_json_buf_init(&b, 1 << 20);
    sl_alloc_fail_after(0);
    SL_JSON_BUF_LIT(&b, "x");
    sl_alloc_fail_after(-1);
    ASSERT_TRUE(b.is_failed);
    ASSERT_TRUE(!b.is_too_big);
    ASSERT_TRUE(b.data == NULL && b.len == 0);
    /* Sticky: memory is back, yet appends do nothing until a reset. */
    SL_JSON_BUF_LIT(&b, "y");
    ASSERT_EQ_INT(b.len, 0);
    sl_json_buf_reset(&b);
    SL_JSON_BUF_LIT(&b, "z");
    assert_text(&b, "z");
    sl_json_buf_fini(&b);
}

static void test_json_value_compact(void)
{
    static const char in[] =
        "{ \"a\" : [1, -2, 2.5, 0.1, 1e300, \"x\\u0001\\u00e9\"],\n"
        "  \"b\" : {\"c\": null, \"d\": true, \"e\": false, \"f\": {}, \"g\": []}, "
        "\"k\\\"ey\": 9007199254740993 }";
    static const char want[] =
        "{\"a\":[1,-2,2.5,0.1,1e+300,\"x\\u0001\xc3\xa9\"],"
        "\"b\":{\"c\":null,\"d\":true,\"e\":false,\"f\":{},\"g\":[]},"
        "\"k\\\"ey\":9007199254740993}";
    struct sl_json_buf b;
    json_t *v = parse(in);

    sl_json_buf_init(&b, 4096);
    ASSERT_OK(sl_json_append_value(&b, v, 1, 8), NULL);
    assert_text(&b, want);
    json_decref(v);
    sl_json_buf_fini(&b);
}

static void test_json_value_depth_limit(void)
{
    struct sl_json_buf b;
    json_t *v = parse("{\"a\":[{\"b\":1}],\"s\":\"deep\"}");

    sl_json_buf_init(&b, 4096);
    /* Three levels of objects and arrays: allowed at max_depth 3, refused at 2. */
    ASSERT_OK(sl_json_append_value(&b, v, 1, 3), NULL);
    assert_text(&b, "{\"a\":[{\"b\":1}],\"s\":\"deep\"}");
    sl_json_buf_reset(&b);
    ASSERT_EQ_INT(sl_json_append_value(&b, v, 1, 2), SL_EINVAL);
    sl_json_buf_reset(&b);
    ASSERT_EQ_INT(sl_json_append_value(&b, v, 2, 3), SL_EINVAL);
    /* Scalars have no level of their own. */
    sl_json_buf_reset(&b);
    ASSERT_OK(sl_json_append_value(&b, json_object_get(v, "s"), 9, 1), NULL);
    assert_text(&b, "\"deep\"");
    json_decref(v);
    sl_json_buf_fini(&b);
}

static void test_json_value_stops_when_too_big(void)
{
    struct sl_json_buf b;
    json_t *v = parse("{\"a\":\"0123456789\",\"b\":[1,2,3,4,5,6,7,8,9]}");

    sl_json_buf_init(&b, 16);
    ASSERT_OK(sl_json_append_value(&b, v, 1, 8), NULL);
    ASSERT_TRUE(b.is_failed && b.is_too_big);
    ASSERT_TRUE(b.len <= 16);
    json_decref(v);
    sl_json_buf_fini(&b);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_json_str_escapes_every_control_char),
        TEST_CASE(test_json_str_passes_utf8_through),
        TEST_CASE(test_json_str_escapes_at_every_position),
        TEST_CASE(test_json_str_plain_respects_max),
        TEST_CASE(test_json_str_or_null),
        TEST_CASE(test_json_int_extremes),
        TEST_CASE(test_json_real_shortest_round_trip),
        TEST_CASE(test_json_buf_max_is_enforced),
        TEST_CASE(test_json_buf_grows_past_first_block),
        TEST_CASE(test_json_buf_never_allocates_past_max),
        TEST_CASE(test_json_buf_alloc_failure),
        TEST_CASE(test_json_value_compact),
        TEST_CASE(test_json_value_depth_limit),
        TEST_CASE(test_json_value_stops_when_too_big),
        {NULL, NULL},
    };
    return test_main(argc, argv, cases);
}

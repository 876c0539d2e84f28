/*
 * Tests lib/json_load.c against jansson itself: for every text, sl_json_load must give what
 * json_loadb(JSON_DECODE_ANY | JSON_REJECT_DUPLICATES) gives (the same tree printed the same
 * way, or the same error text and position). Hand-picked corners where yajl and jansson
 * differ, then tens of thousands of random mutations of real-looking bodies. A last case
 * checks the fast reader really takes ordinary bodies and declines each corner.
 */
#include <jansson.h>
#include <stdint.h>

#include "err.h"
#include "json.h"
#include "test.h"

#define FLAGS (JSON_DECODE_ANY | JSON_REJECT_DUPLICATES)
#define DUMP_FLAGS (JSON_COMPACT | JSON_ENCODE_ANY)

/* Printable form of text for failure messages (control and high bytes as \xNN). */
static const char *show(const char *text, size_t len)
{
    static char out[600];
    size_t o = 0;

    for (size_t i = 0; i < len && o + 5 < sizeof(out); i++) {
        unsigned char c = (unsigned char)text[i];

        if (c >= 0x20 && c < 0x7f) {
            out[o++] = (char)c;
        }
        else {
            o += (size_t)snprintf(out + o, sizeof(out) - o, "\\x%02x", c);
        }
    }
    out[o] = '\0';
    return out;
}

/* Fails unless sl_json_load and json_loadb agree on text. Returns whether it parsed. */
static bool agree(const char *text, size_t len)
{
    json_error_t want_err;
    json_error_t got_err;
    json_t *want = json_loadb(text, len, FLAGS, &want_err);
    json_t *got = NULL;
    int rc = sl_json_load(text, len, &got, &got_err);

    if (want == NULL) {
        if (rc != SL_EINVAL || got != NULL) {
            TEST_FAIL("jansson refuses (%s) but sl_json_load gave %d: %s", want_err.text, rc,
                      show(text, len));
        }
        if (strcmp(want_err.text, got_err.text) != 0 || want_err.line != got_err.line ||
            want_err.column != got_err.column || want_err.position != got_err.position) {
            TEST_FAIL("errors differ: \"%s\" %d:%d@%d vs \"%s\" %d:%d@%d for %s", want_err.text,
                      want_err.line, want_err.column, want_err.position, got_err.text,
                      got_err.line, got_err.column, got_err.position, show(text, len));
        }
        return false;
    }
    if (rc != 0 || got == NULL) {
        TEST_FAIL("jansson parses but sl_json_load gave %d: %s", rc, show(text, len));
    }
    {
        char *a = json_dumps(want, DUMP_FLAGS);
        char *b = json_dumps(got, DUMP_FLAGS);

        if (!json_equal(want, got) || a == NULL || b == NULL || strcmp(a, b) != 0) {
            TEST_FAIL("trees differ for %s:\n  jansson %s\n  got     %s", show(text, len),
                      a ? a : "(null)", b ? b : "(null)");
        }
        free(a);
        free(b);
    }
    json_decref(want);
    json_decref(got);
    return true;
}

static bool agree_str(const char *text)
{
    return agree(text, strlen(text));
}

/* Text of depth nested arrays around 1, in buf (at least 2 * depth + 2 bytes). */
static const char *nested(char *buf, int depth)
{
    int o = 0;

    for (int i = 0; i < depth; i++) {
        buf[o++] = '[';
    }
    buf[o++] = '1';
    for (int i = 0; i < depth; i++) {
        buf[o++] = ']';
    }
    buf[o] = '\0';
    return buf;
}

static void test_json_load_agrees_on_corner_cases(void)
{
    static const char *const parsing[] = {
        "{}", "[]", "1", "\"x\"", "null", "true", "false", " {\"a\":1} \r\n\t",
        "\"\\u00e9\"", "\"\\u0001\\u001f\\u007f\"", "\"\\ud83d\\ude00\"", "\"\\uD83D\\uDE00\"",
        "\"a\\/b\\\\c\\\"d\\b\\f\\n\\r\\t\"", "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"",
        "{\"k\\u00e9y\":\"v\\u00e9\",\"n\":1.5}", "{\"a\\\"b\":\"c\\\\d\",\"\":\"\"}",
        "9223372036854775807", "-9223372036854775808", "1e308", "1e-400", "0.1", "-0",
        "-0.0", "1E2", "1e+2", "[1,2.5,\"3\",null,true,{\"a\":[]}]", "\"\x7f\"",
        "{\"a\":{\"a\":{\"a\":1}},\"b\":[{\"a\":1},{\"a\":2}]}",
    };
    static const char *const refused[] = {
        "{\"a\":1,\"a\":2}", "{\"a\":{\"b\":1,\"b\":2}}", "\"\\u0000\"", "{\"\\u0000\":1}",
        "\"\\ud800\"", "\"\\ud800x\"", "\"\\ud800\\u0041\"", "\"\\udc00\"", "\"\\uDBFF\"",
        "\"\\x\"", "\"\\u12\"", "\"\\u12g4\"", "\"\xc0\x80\"", "\"\xed\xa0\x80\"",
        "\"\xf4\x90\x80\x80\"", "\"\xe2\x82\"", "\"\xff\"", "\xc3\xa9", "{\"a\":1}\v",
        "\f1", "[1,\v2]", "1 2", "[1,]", "{\"a\":1,}", "9223372036854775808",
        "-9223372036854775809", "1e309", "-1e309", "01", "1.", ".5", "+1", "1e", "0x10",
        "NaN", "Infinity", "//c\n1", "/*c*/1", "", "   ", "[", "{\"a\"", "{\"a\":}",
        "\"\t\"", "\"a\x01\"", "\xef\xbb\xbf{}", "nul", "True", "[1}", "{\"a\" 1}", "\\u0041",
        "{\"a\":1}}", "[\"\\ud83d\\ude00\" \"x\"]",
    };
    char buf[2 * 2100 + 4];
    char key[600];

    for (size_t i = 0; i < sizeof(parsing) / sizeof(parsing[0]); i++) {
        if (!agree_str(parsing[i])) {
            TEST_FAIL("expected to parse: %s", parsing[i]);
        }
    }
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        if (agree_str(refused[i])) {
            TEST_FAIL("expected to be refused: %s", refused[i]);
        }
    }
    /* NUL bytes inside the text, counted by length. */
    ASSERT_TRUE(!agree("[1]\0", 4));
    ASSERT_TRUE(!agree("\"a\0b\"", 5));
    ASSERT_TRUE(!agree("{\"a\0\":1}", 8));
    /* Nesting around the fast reader's limit and jansson's. */
    ASSERT_TRUE(agree_str(nested(buf, SL_JSON_LOAD_FAST_DEPTH - 1)));
    ASSERT_TRUE(agree_str(nested(buf, SL_JSON_LOAD_FAST_DEPTH)));
    ASSERT_TRUE(agree_str(nested(buf, SL_JSON_LOAD_FAST_DEPTH + 1)));
    ASSERT_TRUE(agree_str(nested(buf, JSON_PARSER_MAX_DEPTH - 2)));
    for (int d = JSON_PARSER_MAX_DEPTH - 1; d <= JSON_PARSER_MAX_DEPTH; d++) {
        agree_str(nested(buf, d)); /* jansson's own boundary; only agreement matters */
    }
    ASSERT_TRUE(!agree_str(nested(buf, JSON_PARSER_MAX_DEPTH + 1)));
    /* Keys around the fast reader's copy limit, and a duplicate long key. */
    for (size_t n = 255; n <= 258; n++) {
        int o = snprintf(key, sizeof(key), "{\"%0*d\":1,\"b\":2}", (int)n, 7);

        ASSERT_TRUE(agree(key, (size_t)o));
        o = snprintf(key, sizeof(key), "{\"%0*d\":1,\"%0*d\":2}", (int)n, 7, (int)n, 7);
        ASSERT_TRUE(!agree(key, (size_t)o));
    }
}

/* ---- random mutations ------------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

/* One random change to text (len bytes, room for cap), in place; returns the new length. */
static size_t mutate(char *text, size_t len, size_t cap)
{
    static const char bytes[] = "\"\\{}[],:0123456789eE.+-tfnulr \t\n\r\v\f/*xu";
    static const char *const snippets[] = {
        "\\u0000", "\\ud800", "\\udc00", "\\ud83d\\ude00", "\\u00e9", "\\uDBFF\\uDFFF",
        "\\\\", "\\\"", "\"a\":1,", "\"id\":2,", "[", "]", "{", "}", "\xc3\xa9", "\xc0\xaf",
        "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82", "99999999999999999999", "1e999",
        "-9223372036854775808", "1e-999", "\x01", "\0", "null", "true",
    };
    size_t at = len > 0 ? rnd((uint32_t)len) : 0;
    uint32_t op = rnd(5);

    switch (op) {
    case 0: /* replace one byte */
        if (len > 0) {
            text[at] = rnd(8) == 0 ? (char)rnd(256) : bytes[rnd(sizeof(bytes) - 1)];
        }
        return len;
    case 1: { /* delete a short run */
        size_t n = 1 + rnd(4);

        if (at + n > len) {
            n = len - at;
        }
        memmove(text + at, text + at + n, len - at - n);
        return len - n;
    }
    case 2: /* duplicate a short run */
    case 3: { /* insert a snippet */
        const char *s = snippets[rnd(sizeof(snippets) / sizeof(snippets[0]))];
        size_t n = s[0] == '\0' ? 1 : strlen(s);

        if (op == 2 && len > 0) {
            s = text + at;
            n = 1 + rnd(12);
            if (at + n > len) {
                n = len - at;
            }
        }
        if (len + n > cap) {
            return len;
        }
        {
            char tmp[64];

            memcpy(tmp, s, n);
            memmove(text + at + n, text + at, len - at);
            memcpy(text + at, tmp, n);
        }
        return len + n;
    }
    default: /* swap two bytes */
        if (len > 1) {
            size_t b = rnd((uint32_t)len);
            char c = text[at];

            text[at] = text[b];
            text[b] = c;
        }
        return len;
    }
}

static void test_json_load_agrees_on_mutated_bodies(void)
{
    static const char *const seeds[] = {
        "{\"events\":[{\"id\":\"12345678-0000-4000-8000-000000000001\",\"type\":\"custom\","
        "\"name\":\"checkout_step\",\"session_id\":\"s_000001\",\"timestamp\":"
        "\"2026-11-24T07:00:00.123Z\",\"properties\":{\"plan\":\"pro\",\"step\":3,"
        "\"price\":12.5,\"tags\":[\"a\",\"b\"],\"ok\":true,\"none\":null},\"context\":"
        "{\"url\":\"https://shop.example.com/checkout?step=3\",\"language\":\"en-US\"}}]}",
        "{\"type\":\"log\",\"severity\":\"error\",\"source\":\"api\",\"message\":"
        "\"caf\\u00e9 \\ud83d\\ude00 \\\"quoted\\\" \\\\ back\\/slash\\n\",\"properties\":"
        "{\"n\":-12,\"big\":9007199254740993,\"tiny\":1e-7,\"neg\":-0.0}}",
        "[{\"a\":{\"b\":{\"c\":[1,[2,[3,[4]]]]}}},\"\xc3\xa9t\xc3\xa9\",\"\xe2\x82\xac\"]",
        "{\"context\":{\"user_agent\":\"Mozilla/5.0 (Windows NT 10.0; Win64; x64)\","
        "\"client_hints\":{\"Sec-CH-UA-Platform\":\"\\\"Windows\\\"\"},\"ip\":\"203.0.113.9\"}}",
    };
    char text[4096];
    size_t parsed = 0;
    size_t refused = 0;

    for (int round = 0; round < 40000; round++) {
        const char *seed = seeds[rnd(sizeof(seeds) / sizeof(seeds[0]))];
        size_t len = strlen(seed);
        int changes = 1 + (int)rnd(3);

        memcpy(text, seed, len);
        for (int i = 0; i < changes; i++) {
            len = mutate(text, len, sizeof(text));
        }
        if (agree(text, len)) {
            parsed++;
        }
        else {
            refused++;
        }
    }
    /* Both sides of the comparison were exercised many times. */
    ASSERT_TRUE(parsed > 2000);
    ASSERT_TRUE(refused > 2000);
}

/* ---- the fast reader itself ------------------------------------------------------------ */

static void assert_fast_takes(const char *text)
{
    json_t *v = NULL;

    if (sl_json_load_fast(text, strlen(text), &v) != 0 || v == NULL) {
        TEST_FAIL("the fast reader declined %s", text);
    }
    json_decref(v);
}

static void assert_fast_declines(const char *text, size_t len)
{
    json_t *v = (json_t *)1;

    if (sl_json_load_fast(text, len, &v) != SL_EINVAL || v != NULL) {
        TEST_FAIL("the fast reader took %s", show(text, len));
    }
}

static void test_json_load_fast_takes_ordinary_text_and_declines_corners(void)
{
    char buf[2 * 70 + 4];
    char key[300];
    int n;

    assert_fast_takes("{\"events\":[{\"type\":\"pageview\",\"properties\":{\"a\":[1,2.5,null]}},"
                      "{\"type\":\"custom\",\"name\":\"caf\xc3\xa9 \\u00e9 \\ud83d\\ude00\"}]}");
    assert_fast_takes("[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0001\"] \r\n\t");
    assert_fast_takes(nested(buf, SL_JSON_LOAD_FAST_DEPTH));

    assert_fast_declines("\"\\u0000\"", 8);
    assert_fast_declines("\"\\ud800\"", 8);
    assert_fast_declines("\"\\udc00\"", 8);
    assert_fast_declines("\"\\ud800\\u0041\"", 14);
    assert_fast_declines("[1,\v2]", 6);
    assert_fast_declines("\f[]", 3);
    assert_fast_declines("\"\xc0\x80\"", 4);
    assert_fast_declines("{\"a\":1,\"a\":1}", 13);
    assert_fast_declines("99999999999999999999", 20);
    assert_fast_declines("[1,]", 4);
    assert_fast_declines("", 0);
    assert_fast_declines("42", 2); /* a bare value: where it ends is yajl's guess */
    assert_fast_declines("{} \"abc", 7);
    assert_fast_declines("[1] tru", 7);
    nested(buf, SL_JSON_LOAD_FAST_DEPTH + 1);
    assert_fast_declines(buf, strlen(buf));
    n = snprintf(key, sizeof(key), "{\"%0257d\":1}", 7);
    assert_fast_declines(key, (size_t)n);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_json_load_agrees_on_corner_cases),
        TEST_CASE(test_json_load_agrees_on_mutated_bodies),
        TEST_CASE(test_json_load_fast_takes_ordinary_text_and_declines_corners),
        {NULL, NULL},
    };

    return test_main(argc, argv, cases);
}

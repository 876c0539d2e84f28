/*
 * Tests lib/utf8.c's validity check against jansson's (an independent implementation of the
 * same RFC 3629 rules): fixed corner cases, then random mostly-ASCII strings with bad and
 * good sequences at every offset, so the eight-bytes-at-a-time skip meets them in every
 * lane, in the tail and across word boundaries.
 */
#include <jansson.h>
#include <stdint.h>

#include "test.h"
#include "utf8.h"

/* jansson's answer: json_stringn accepts exactly valid UTF-8 (NUL included). */
static bool jansson_valid(const char *s, size_t len)
{
    json_t *v = json_stringn(s, len);
    bool ok = v != NULL;

    json_decref(v);
    return ok;
}

static void assert_agrees(const char *s, size_t len)
{
    if (sl_utf8_is_valid(s, len) != jansson_valid(s, len)) {
        char hex[3 * 80 + 1] = "";

        for (size_t i = 0; i < len && i < 80; i++) {
            snprintf(hex + 3 * i, 4, "%02x ", (unsigned char)s[i]);
        }
        TEST_FAIL("sl_utf8_is_valid says %d, jansson %d: %s", sl_utf8_is_valid(s, len),
                  jansson_valid(s, len), hex);
    }
}

static void test_utf8_corner_cases(void)
{
    static const char *const valid[] = {
        "", "a", "0123456789abcdef", "\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf",
        "\xee\x80\x80", "\xef\xbf\xbf", "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf",
        "abcdefg\xc3\xa9", "abcdefgh\xf0\x9f\x98\x80zz",
    };
    static const char *const invalid[] = {
        "\x80", "\xbf", "\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xe0\x9f\xbf", "\xed\xa0\x80",
        "\xed\xbf\xbf", "\xf0\x80\x80\x80", "\xf0\x8f\xbf\xbf", "\xf4\x90\x80\x80", "\xf5\x80",
        "\xff", "\xc3", "abcdefg\xc3", "abcdefgh\xe2\x82", "\xe2\x28\xa1", "abcdefghijklmno\x80",
    };

    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        ASSERT_TRUE(sl_utf8_is_valid(valid[i], strlen(valid[i])));
        assert_agrees(valid[i], strlen(valid[i]));
    }
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        ASSERT_TRUE(!sl_utf8_is_valid(invalid[i], strlen(invalid[i])));
        assert_agrees(invalid[i], strlen(invalid[i]));
    }
    ASSERT_TRUE(sl_utf8_is_valid("a\0b", 3));
}

static void test_utf8_agrees_with_jansson_at_every_offset(void)
{
    static const char *const pieces[] = {
        "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\x80", "\xc0\xaf", "\xed\xa0\x80",
        "\xf4\x90\x80\x80", "\xe2\x82", "\xc3", "\xff", "\xf0\x9f\x98",
    };
    uint64_t state = 0x2545f4914f6cdd1du;
    char s[64];
    size_t n_valid = 0;
    size_t n_invalid = 0;

    for (size_t len = 0; len < 40; len++) {
        for (size_t at = 0; at <= len; at++) {
            for (size_t p = 0; p < sizeof(pieces) / sizeof(pieces[0]); p++) {
                size_t plen = strlen(pieces[p]);
                size_t total = len + plen;

                for (size_t i = 0; i < len; i++) {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    s[i < at ? i : i + plen] = (char)(' ' + state % 95);
                }
                memcpy(s + at, pieces[p], plen);
                assert_agrees(s, total);
                if (sl_utf8_is_valid(s, total)) {
                    n_valid++;
                }
                else {
                    n_invalid++;
                }
            }
        }
    }
    ASSERT_TRUE(n_valid > 1000 && n_invalid > 1000);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_utf8_corner_cases),
        TEST_CASE(test_utf8_agrees_with_jansson_at_every_offset),
        {NULL, NULL},
    };

    return test_main(argc, argv, cases);
}

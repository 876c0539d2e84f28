/*
 * UTF-8 checks over byte ranges (see utf8.h). Validation follows RFC 3629's table of
 * well-formed sequences; cutting and trimming rely on continuation bytes being 10xxxxxx.
 * JSON escaping lives in json.c, quoting for messages with the modules that write them.
 */
#include "utf8.h"

#include <stdint.h>
#include <string.h>

#include "swar.h"

bool sl_utf8_is_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        unsigned char c;
        size_t n;
        uint32_t cp;

        if (len - i >= 8 && !sl_swar_has_high(sl_swar_load(s + i))) {
            i += 8; /* eight ASCII bytes */
            continue;
        }
        c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        }
        else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        }
        else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        }
        else {
            return false;
        }
        if (len - i - 1 < n) {
            return false;
        }
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        /* Overlong forms, surrogates and values past U+10FFFF. */
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff)) {
            return false;
        }
        i += n + 1;
    }
    return true;
}

size_t sl_utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max) {
        return len;
    }
    while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80) {
        max--;
    }
    return max;
}

void sl_utf8_trim(char *s)
{
    size_t len = strlen(s);
    size_t i = len;
    size_t need;
    unsigned char c;

    while (i > 0 && ((unsigned char)s[i - 1] & 0xc0) == 0x80 && len - i < 3) {
        i--;
    }
    if (i == 0) {
        return;
    }
    c = (unsigned char)s[i - 1];
    if (c < 0x80) {
        return;
    }
    need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
    if (len - (i - 1) < need) {
        s[i - 1] = '\0';
    }
}

long sl_utf8_find_control(const char *s, size_t len, unsigned *cp)
{
    const unsigned char *p = (const unsigned char *)s;

    for (size_t i = 0; i < len; i++) {
        if (p[i] < 0x20 || p[i] == 0x7f) {
            *cp = p[i];
            return (long)i;
        }
        if (p[i] == 0xc2 && i + 1 < len && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f) {
            *cp = p[i + 1];
            return (long)i;
        }
    }
    return -1;
}

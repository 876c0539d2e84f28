/*
 * Writing JSON text (see json.h): the bounded buffer with its sticky failure, string
 * escaping, numbers, and a recursive writer for parsed jansson values. Growth doubles from
 * 256 bytes, so a buffer reused across calls settles at its working size. Reading JSON,
 * and deciding what may be written (limits on sizes and depth), are the callers' jobs.
 */
#include "json.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "err.h"
#include "swar.h"

#define MIN_CAP 256

void sl_json_buf_init(struct sl_json_buf *b, size_t max_bytes)
{
    memset(b, 0, sizeof(*b));
    b->_max = max_bytes;
}

void sl_json_buf_fini(struct sl_json_buf *b)
{
    sl_free(b->data);
    sl_json_buf_init(b, b->_max);
}

void sl_json_buf_reset(struct sl_json_buf *b)
{
    b->len = 0;
    b->is_failed = false;
    b->is_too_big = false;
}

int sl_json_buf_take(struct sl_json_buf *b, char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    sl_json_buf_append(b, "", 1);
    if (b->is_failed) {
        sl_json_buf_fini(b);
        return SL_ENOMEM;
    }
    *out = b->data;
    *out_len = b->len - 1;
    sl_json_buf_init(b, b->_max);
    return 0;
}

/* Makes room for extra more bytes; false (and the buffer failed) when it cannot. */
static bool reserve(struct sl_json_buf *b, size_t extra)
{
    size_t cap;
    char *p;

    if (b->is_failed) {
        return false;
    }
    if (extra > b->_max || b->len > b->_max - extra) {
        b->is_failed = true;
        b->is_too_big = true;
        return false;
    }
    if (b->len + extra <= b->_cap) {
        return true;
    }
    cap = b->_cap < MIN_CAP ? MIN_CAP : b->_cap;
    while (cap < b->len + extra) {
        cap *= 2;
    }
    if (cap > b->_max) {
        cap = b->_max; /* sl_json_buf_append's inline half relies on it */
    }
    p = sl_realloc(b->data, cap);
    if (p == NULL) {
        b->is_failed = true;
        return false;
    }
    b->data = p;
    b->_cap = cap;
    return true;
}

void sl_json_buf_append_grow(struct sl_json_buf *b, const char *s, size_t len)
{
    if (reserve(b, len)) {
        memcpy(b->data + b->len, s, len);
        b->len += len;
    }
}

void sl_json_buf_appendf(struct sl_json_buf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    assert(n >= 0 && (size_t)n < sizeof(tmp));
    sl_json_buf_append(b, tmp, (size_t)n);
}

/* Whether c must be escaped inside a JSON string (sl_json_append_str's rule). */
static bool needs_escape(unsigned char c)
{
    return c < 0x20 || c == '"' || c == '\\' || c == 0x7f;
}

void sl_json_append_str(struct sl_json_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;
    size_t i = 0;

    /* Most strings need no escape: find the first byte that does, eight at a time. */
    while (len - i >= 8) {
        uint64_t w = sl_swar_load(s + i);

        if (sl_swar_has_less(w, 0x20) || sl_swar_has_byte(w, '"') ||
            sl_swar_has_byte(w, '\\') || sl_swar_has_byte(w, 0x7f)) {
            break;
        }
        i += 8;
    }
    while (i < len && !needs_escape((unsigned char)s[i])) {
        i++;
    }
    if (i == len) {
        if (reserve(b, len + 2)) { /* else the buffer failed */
            b->data[b->len] = '"';
            memcpy(b->data + b->len + 1, s, len);
            b->data[b->len + 1 + len] = '"';
            b->len += len + 2;
        }
        return;
    }
    SL_JSON_BUF_LIT(b, "\"");
    for (; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        size_t n = 2;

        if (!needs_escape(c)) {
            continue;
        }
        sl_json_buf_append(b, s + run, i - run);
        run = i + 1;
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xf];
            n = 6;
            break;
        }
        sl_json_buf_append(b, esc, n);
    }
    sl_json_buf_append(b, s + run, len - run);
    SL_JSON_BUF_LIT(b, "\"");
}

void sl_json_append_str_or_null(struct sl_json_buf *b, const char *s, size_t len)
{
    if (s == NULL) {
        SL_JSON_BUF_LIT(b, "null");
    }
    else {
        sl_json_append_str(b, s, len);
    }
}

void sl_json_append_int(struct sl_json_buf *b, int64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0) {
        tmp[--i] = '-';
    }
    sl_json_buf_append(b, tmp + i, sizeof(tmp) - i);
}

void sl_json_append_real(struct sl_json_buf *b, double v)
{
    char tmp[40];
    int n = 0;

    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) {
            break;
        }
    }
    sl_json_buf_append(b, tmp, (size_t)n);
    if (strpbrk(tmp, ".e") == NULL) {
        SL_JSON_BUF_LIT(b, ".0");
    }
}

int sl_json_append_value(struct sl_json_buf *b, const json_t *v, int64_t depth,
                         int64_t max_depth)
{
    const char *key;
    json_t *child;
    size_t i;
    bool is_first = true;

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        if (depth > max_depth) {
            return SL_EINVAL;
        }
        SL_JSON_BUF_LIT(b, "{");
        json_object_foreach((json_t *)v, key, child) {
            if (b->is_failed) {
                return 0;
            }
            if (!is_first) {
                SL_JSON_BUF_LIT(b, ",");
            }
            is_first = false;
            sl_json_append_str(b, key, strlen(key));
            SL_JSON_BUF_LIT(b, ":");
            if (sl_json_append_value(b, child, depth + 1, max_depth) != 0) {
                return SL_EINVAL;
            }
        }
        SL_JSON_BUF_LIT(b, "}");
        return 0;
    case JSON_ARRAY:
        if (depth > max_depth) {
            return SL_EINVAL;
        }
        SL_JSON_BUF_LIT(b, "[");
        json_array_foreach(v, i, child) {
            if (b->is_failed) {
                return 0;
            }
            if (i > 0) {
                SL_JSON_BUF_LIT(b, ",");
            }
            if (sl_json_append_value(b, child, depth + 1, max_depth) != 0) {
                return SL_EINVAL;
            }
        }
        SL_JSON_BUF_LIT(b, "]");
        return 0;
    case JSON_STRING:
        sl_json_append_str(b, json_string_value(v), json_string_length(v));
        return 0;
    case JSON_INTEGER:
        sl_json_append_int(b, json_integer_value(v));
        return 0;
    case JSON_REAL:
        sl_json_append_real(b, json_real_value(v));
        return 0;
    case JSON_TRUE:
        SL_JSON_BUF_LIT(b, "true");
        return 0;
    case JSON_FALSE:
        SL_JSON_BUF_LIT(b, "false");
        return 0;
    case JSON_NULL:
        SL_JSON_BUF_LIT(b, "null");
        return 0;
    }
    return 0;
}

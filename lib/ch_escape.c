/*
 * The I/O-free half of the ClickHouse client: the bounded byte buffer, SQL string and
 * identifier quoting, RowBinary encoders, the parser of ClickHouse error bodies and the list
 * of transient error codes. Requests, retries and settings live in ch.c.
 */
#include "ch.h"

#include <assert.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"

#define BUF_MIN_CAP 256
#define LEB128_MAX_BYTES 10

static const char hex_digits[] = "0123456789abcdef";

void sl_ch_buf_init(struct sl_ch_buf *b, size_t max_bytes)
{
    b->data = NULL;
    b->len = 0;
    b->_cap = 0;
    b->_max = max_bytes;
}

void sl_ch_buf_fini(struct sl_ch_buf *b)
{
    if (b == NULL) {
        return;
    }
    sl_free(b->data);
    b->data = NULL;
    b->len = 0;
    b->_cap = 0;
}

void sl_ch_buf_reset(struct sl_ch_buf *b)
{
    b->len = 0;
    if (b->data != NULL) {
        b->data[0] = '\0';
    }
}

/* Makes room for extra more bytes plus the terminator; the buffer is unchanged on failure. */
static int reserve(struct sl_ch_buf *b, size_t extra)
{
    size_t need;
    size_t cap;
    char *p;

    if (extra > b->_max || b->len > b->_max - extra) {
        return SL_EINVAL;
    }
    need = b->len + extra + 1;
    if (need <= b->_cap) {
        return 0;
    }
    cap = b->_cap < BUF_MIN_CAP ? BUF_MIN_CAP : b->_cap;
    while (cap < need) {
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    }
    if (cap > b->_max + 1) {
        cap = b->_max + 1;
    }
    p = sl_realloc(b->data, cap);
    if (p == NULL) {
        return SL_ENOMEM;
    }
    b->data = p;
    b->_cap = cap;
    return 0;
}

int sl_ch_buf_append(struct sl_ch_buf *b, const void *data, size_t len)
{
    int rc = reserve(b, len);

    if (rc != 0) {
        return rc;
    }
    if (len > 0) {
        memcpy(b->data + b->len, data, len);
    }
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int sl_ch_buf_append_str(struct sl_ch_buf *b, const char *s)
{
    return sl_ch_buf_append(b, s, strlen(s));
}

int sl_ch_buf_appendf(struct sl_ch_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    int rc;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return SL_EINVAL;
    }
    rc = reserve(b, (size_t)n);
    if (rc != 0) {
        return rc;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

/* Bytes that escaping c takes inside a quoted literal. */
static size_t escaped_size(unsigned char c, char quote)
{
    if (c == '\\' || c == (unsigned char)quote || c == '\0' || c == '\n' || c == '\r' ||
        c == '\t') {
        return 2;
    }
    return c < 0x20 ? 4 : 1;
}

/* Appends s between quote characters, escaped; all or nothing. */
static int quote_with(struct sl_ch_buf *b, const char *s, size_t len, char quote)
{
    size_t total = 2;
    char *p;
    int rc;

    for (size_t i = 0; i < len; i++) {
        total += escaped_size((unsigned char)s[i], quote);
    }
    rc = reserve(b, total);
    if (rc != 0) {
        return rc;
    }
    p = b->data + b->len;
    *p++ = quote;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        switch (c) {
        case '\0': *p++ = '\\'; *p++ = '0'; break;
        case '\n': *p++ = '\\'; *p++ = 'n'; break;
        case '\r': *p++ = '\\'; *p++ = 'r'; break;
        case '\t': *p++ = '\\'; *p++ = 't'; break;
        case '\\': *p++ = '\\'; *p++ = '\\'; break;
        default:
            if (c == (unsigned char)quote) {
                *p++ = '\\';
                *p++ = (char)c;
            }
            else if (c < 0x20) {
                *p++ = '\\';
                *p++ = 'x';
                *p++ = hex_digits[c >> 4];
                *p++ = hex_digits[c & 15];
            }
            else {
                *p++ = (char)c;
            }
            break;
        }
    }
    *p++ = quote;
    *p = '\0';
    b->len += total;
    return 0;
}

int sl_ch_quote(struct sl_ch_buf *b, const char *s, size_t len)
{
    return quote_with(b, s, len, '\'');
}

int sl_ch_quote_ident(struct sl_ch_buf *b, const char *s, size_t len)
{
    if (len == 0 || memchr(s, '\0', len) != NULL) {
        return SL_EINVAL;
    }
    return quote_with(b, s, len, '`');
}

int sl_ch_quote_table(struct sl_ch_buf *b, const char *database, const char *table)
{
    int rc = sl_ch_quote_ident(b, database, strlen(database));

    rc = rc != 0 ? rc : sl_ch_buf_append_str(b, ".");
    return rc != 0 ? rc : sl_ch_quote_ident(b, table, strlen(table));
}

/* Encodes v as unsigned LEB128 into out; returns the bytes used (1..10). */
static size_t leb128(uint64_t v, unsigned char out[LEB128_MAX_BYTES])
{
    size_t n = 0;

    do {
        unsigned char byte = (unsigned char)(v & 0x7f);

        v >>= 7;
        out[n++] = v != 0 ? (unsigned char)(byte | 0x80) : byte;
    } while (v != 0);
    return n;
}

int sl_ch_rb_array_len(struct sl_ch_buf *b, uint64_t n)
{
    unsigned char tmp[LEB128_MAX_BYTES];

    return sl_ch_buf_append(b, tmp, leb128(n, tmp));
}

int sl_ch_rb_string(struct sl_ch_buf *b, const void *s, size_t len)
{
    unsigned char tmp[LEB128_MAX_BYTES];
    size_t n = leb128(len, tmp);
    int rc = reserve(b, n + len);

    if (rc != 0) {
        return rc;
    }
    memcpy(b->data + b->len, tmp, n);
    if (len > 0) {
        memcpy(b->data + b->len + n, s, len);
    }
    b->len += n + len;
    b->data[b->len] = '\0';
    return 0;
}

/* Appends the low `bytes` bytes of v, least significant first. */
static int put_le(struct sl_ch_buf *b, uint64_t v, size_t bytes)
{
    unsigned char tmp[8];

    for (size_t i = 0; i < bytes; i++) {
        tmp[i] = (unsigned char)(v >> (8 * i));
    }
    return sl_ch_buf_append(b, tmp, bytes);
}

int sl_ch_rb_u8(struct sl_ch_buf *b, uint8_t v)
{
    return put_le(b, v, 1);
}

int sl_ch_rb_u16(struct sl_ch_buf *b, uint16_t v)
{
    return put_le(b, v, 2);
}

int sl_ch_rb_u32(struct sl_ch_buf *b, uint32_t v)
{
    return put_le(b, v, 4);
}

int sl_ch_rb_u64(struct sl_ch_buf *b, uint64_t v)
{
    return put_le(b, v, 8);
}

int sl_ch_rb_i64(struct sl_ch_buf *b, int64_t v)
{
    return put_le(b, (uint64_t)v, 8);
}

int sl_ch_rb_f64(struct sl_ch_buf *b, double v)
{
    uint64_t bits;

    static_assert(sizeof(bits) == sizeof(v), "double is 64 bits");
    memcpy(&bits, &v, sizeof(bits));
    return put_le(b, bits, 8);
}

int sl_ch_rb_datetime(struct sl_ch_buf *b, uint32_t unix_s)
{
    return put_le(b, unix_s, 4);
}

int sl_ch_rb_uuid(struct sl_ch_buf *b, const uint8_t uuid[16])
{
    unsigned char tmp[16];

    /* ClickHouse keeps a UUID as UInt128 {high, low}; each half is a little-endian UInt64,
     * so the text order bytes 0..7 and 8..15 are each reversed. */
    for (size_t i = 0; i < 8; i++) {
        tmp[i] = uuid[7 - i];
        tmp[8 + i] = uuid[15 - i];
    }
    return sl_ch_buf_append(b, tmp, sizeof(tmp));
}

/* Finds needle in [hay, hay + len); NULL if absent. */
static const char *find(const char *hay, size_t len, const char *needle)
{
    return memmem(hay, len, needle, strlen(needle));
}

static bool starts_with(const char *p, const char *end, const char *prefix)
{
    size_t n = strlen(prefix);

    return (size_t)(end - p) >= n && memcmp(p, prefix, n) == 0;
}

/* Copies [p, end) to msg trimmed of spaces, cut to msg_cap - 1 bytes. */
static void copy_trimmed(const char *p, const char *end, char *msg, size_t msg_cap)
{
    size_t n;

    while (p < end && isspace((unsigned char)*p)) {
        p++;
    }
    while (end > p && isspace((unsigned char)end[-1])) {
        end--;
    }
    n = (size_t)(end - p);
    if (msg_cap == 0) {
        return;
    }
    if (n >= msg_cap) {
        n = msg_cap - 1;
    }
    memcpy(msg, p, n);
    msg[n] = '\0';
}

/* Where the message of an exception starting at p ends: its first line, without the
 * 18.16 ", e.what() = ..." and the newer " (version ...)" trailers. */
static const char *message_end(const char *p, const char *end)
{
    const char *cut = memchr(p, '\n', (size_t)(end - p));
    const char *what;
    const char *version;

    if (cut == NULL) {
        cut = end;
    }
    what = find(p, (size_t)(cut - p), ", e.what() = ");
    if (what != NULL) {
        cut = what;
    }
    version = find(p, (size_t)(cut - p), " (version ");
    if (version != NULL) {
        cut = version;
    }
    return cut;
}

int sl_ch_parse_error(const char *body, size_t len, long *code, char *msg, size_t msg_cap)
{
    const char *end = body + len;
    const char *p = find(body, len, "Code: ");
    long v = 0;

    *code = 0;
    if (p == NULL || end - p <= 6 || !isdigit((unsigned char)p[6])) {
        const char *nl = memchr(body, '\n', len);

        copy_trimmed(body, nl != NULL ? nl : end, msg, msg_cap);
        return SL_ENOTFOUND;
    }
    for (p += 6; p < end && isdigit((unsigned char)*p) && v < 100000000; p++) {
        v = v * 10 + (*p - '0');
    }
    while (p < end && (*p == ',' || *p == '.' || *p == ' ')) {
        p++;
    }
    if (starts_with(p, end, "e.displayText() = ")) {
        p += strlen("e.displayText() = ");
    }
    if (starts_with(p, end, "DB::Exception: ")) {
        p += strlen("DB::Exception: ");
    }
    end = message_end(p, end);
    /* 18.16 ends the text with "." before its trailer; drop it so messages read alike. */
    while (end > p && isspace((unsigned char)end[-1])) {
        end--;
    }
    if (end > p && end[-1] == '.') {
        end--;
    }
    copy_trimmed(p, end, msg, msg_cap);
    *code = v;
    return 0;
}

/* Whether an exception header ("Code: N, e.displayText() = DB::Exception" or
 * "Code: N. DB::Exception") starts at p. */
static bool is_exception_at(const char *p, const char *end)
{
    if (!starts_with(p, end, "Code: ")) {
        return false;
    }
    p += 6;
    if (p >= end || !isdigit((unsigned char)*p)) {
        return false;
    }
    while (p < end && isdigit((unsigned char)*p)) {
        p++;
    }
    return starts_with(p, end, ", e.displayText() = DB::Exception") ||
           starts_with(p, end, ". DB::Exception");
}

int sl_ch_parse_tail_error(const char *body, size_t len, long *code, char *msg,
                           size_t msg_cap)
{
    const char *end = body + len;

    *code = 0;
    /* The last line starting an exception; messages may span lines (syntax errors). */
    for (const char *p = end; p > body; p--) {
        const char *line = p - 1;

        if (line != body && line[-1] != '\n') {
            continue;
        }
        if (is_exception_at(line, end)) {
            return sl_ch_parse_error(line, (size_t)(end - line), code, msg, msg_cap);
        }
    }
    if (msg_cap > 0) {
        msg[0] = '\0';
    }
    return SL_ENOTFOUND;
}

bool sl_ch_is_transient(long remote_code)
{
    switch (remote_code) {
    case 202: /* too many simultaneous queries */
    case 203: /* no free connection */
    case 209: /* socket timeout */
    case 210: /* network error */
    case 241: /* memory limit exceeded */
    case 242: /* table is in read-only mode */
    case 252: /* too many parts */
    case 319: /* unknown status of insert */
    case 425: /* system error */
        return true;
    default:
        return false;
    }
}

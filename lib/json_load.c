/*
 * Reading JSON text into a jansson tree (see json.h). jansson's own reader spends most of a
 * request's CPU at the edge, so the common case goes through libyajl's lexer, whose
 * callbacks build the tree with jansson's constructors. The two libraries differ in corners:
 * yajl takes \v and \f as whitespace, turns a lone surrogate escape into '?' or a surrogate
 * character, lets \u0000 into a string, accepts overlong UTF-8 forms, has no depth limit,
 * and ignores an unfinished token after the root (it waits for more input that never
 * comes); jansson refuses all of these. So the fast path only takes text that stays clear of every
 * corner (checked before yajl sees it, and while it builds) and declines the rest; declined
 * text, and any text yajl finds wrong, is read by json_loadb, which then gives the answer:
 * the tree, or the error text and position users see. Either way the result is jansson's.
 */
#include "json.h"

#include <string.h>
#include <yajl/yajl_parse.h>

#include "err.h"
#include "hex.h"
#include "swar.h"
#include "utf8.h"

#define LOAD_FLAGS (JSON_DECODE_ANY | JSON_REJECT_DUPLICATES)

/* Longest object key the fast path copies; longer keys are left to jansson. */
#define KEY_MAX 256

/* The tree being built from yajl's callbacks. */
struct builder {
    yajl_handle yajl;
    json_t *root;                         /* owned; every container hangs from it */
    json_t *open[SL_JSON_LOAD_FAST_DEPTH]; /* borrowed: the containers not yet closed */
    size_t depth;                         /* entries of open in use */
    char key[KEY_MAX];                    /* the key of the next member of open[depth - 1] */
    size_t key_len;
    size_t root_end;                      /* offset just past the root's closing bracket;
                                           * 0 until it closed */
};

/* ---- checks before yajl reads the text ------------------------------------------------ */

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;

    for (int i = 0; i < 4; i++) {
        int d = sl_hex_value(s[i]);

        if (d < 0) {
            return -1;
        }
        v = v << 4 | (unsigned)d;
    }
    *out = v;
    return 0;
}

/*
 * Length of the escape at s (len bytes from a backslash) when both libraries decode it to the
 * same bytes: any two-character escape (a wrong one is refused by both), \u of a character
 * other than NUL, or a \u surrogate pair. 0 for anything else.
 */
static size_t plain_escape(const char *s, size_t len)
{
    unsigned cp;
    unsigned low;

    if (len < 2) {
        return 0;
    }
    if (s[1] != 'u') {
        return 2;
    }
    if (len < 6 || hex4(s + 2, &cp) != 0 || cp == 0 || (cp >= 0xdc00 && cp <= 0xdfff)) {
        return 0;
    }
    if (cp < 0xd800 || cp > 0xdbff) {
        return 6;
    }
    if (len < 12 || s[6] != '\\' || s[7] != 'u' || hex4(s + 8, &low) != 0 || low < 0xdc00 ||
        low > 0xdfff) {
        return 0;
    }
    return 12;
}

/*
 * Whether the fast path may read text: valid UTF-8, no \v or \f anywhere, and every escape
 * plain. Backslashes are only legal inside strings, where escapes follow each other from the
 * opening quote, so scanning escapes from the start of the text pairs them as a lexer does;
 * a backslash outside a string is an error for both libraries.
 */
static bool is_plain(const char *text, size_t len)
{
    size_t i = 0;

    if (!sl_utf8_is_valid(text, len)) {
        return false;
    }
    while (i < len) {
        char c;

        if (len - i >= 8) {
            uint64_t w = sl_swar_load(text + i);

            if (!sl_swar_has_byte(w, '\\') && !sl_swar_has_byte(w, '\v') &&
                !sl_swar_has_byte(w, '\f')) {
                i += 8;
                continue;
            }
        }
        c = text[i];
        if (c == '\\') {
            size_t n = plain_escape(text + i, len - i);

            if (n == 0) {
                return false;
            }
            i += n;
            continue;
        }
        if (c == '\v' || c == '\f') {
            return false;
        }
        i++;
    }
    return true;
}

/* ---- building the tree ------------------------------------------------------------------- */

/*
 * Puts v (a new reference, NULL when its constructor failed) in its place. 0 stops yajl.
 * The root must be an object or an array: for a bare value yajl cannot tell where it ends
 * from the text alone (see sl_json_load_fast).
 */
static int add(struct builder *b, json_t *v)
{
    json_t *parent;

    if (v == NULL) {
        return 0;
    }
    if (b->depth == 0) {
        if (b->root != NULL || (!json_is_object(v) && !json_is_array(v))) {
            json_decref(v);
            return 0;
        }
        b->root = v;
        return 1;
    }
    parent = b->open[b->depth - 1];
    if (json_is_object(parent)) {
        return json_object_setn_new_nocheck(parent, b->key, b->key_len, v) == 0;
    }
    return json_array_append_new(parent, v) == 0;
}

/* Adds a new container and makes it the innermost open one; 0 past the depth limit. */
static int open_container(struct builder *b, json_t *v)
{
    if (v == NULL || b->depth == SL_JSON_LOAD_FAST_DEPTH) {
        json_decref(v);
        return 0;
    }
    if (!add(b, v)) {
        return 0;
    }
    b->open[b->depth++] = v;
    return 1;
}

static int on_null(void *ctx)
{
    return add(ctx, json_null());
}

static int on_boolean(void *ctx, int value)
{
    return add(ctx, json_boolean(value));
}

static int on_integer(void *ctx, long long value)
{
    return add(ctx, json_integer(value));
}

static int on_double(void *ctx, double value)
{
    return add(ctx, json_real(value));
}

/* The text was checked as UTF-8 and has no escaped NUL, so strings need no second look. */
static int on_string(void *ctx, const unsigned char *s, size_t len)
{
    return add(ctx, json_stringn_nocheck((const char *)s, len));
}

/* Copies the key (yajl may reuse its memory before the value comes); a duplicate stops. */
static int on_map_key(void *ctx, const unsigned char *s, size_t len)
{
    struct builder *b = ctx;

    if (len > KEY_MAX || json_object_getn(b->open[b->depth - 1], (const char *)s, len) != NULL) {
        return 0;
    }
    memcpy(b->key, s, len);
    b->key_len = len;
    return 1;
}

static int on_start_map(void *ctx)
{
    return open_container(ctx, json_object());
}

static int on_start_array(void *ctx)
{
    return open_container(ctx, json_array());
}

static int on_end(void *ctx)
{
    struct builder *b = ctx;

    b->depth--;
    if (b->depth == 0) {
        b->root_end = yajl_get_bytes_consumed(b->yajl);
    }
    return 1;
}

/* Whether text[from..len) is only JSON whitespace. */
static bool is_blank_tail(const char *text, size_t from, size_t len)
{
    for (size_t i = from; i < len; i++) {
        if (text[i] != ' ' && text[i] != '\t' && text[i] != '\n' && text[i] != '\r') {
            return false;
        }
    }
    return true;
}

static const yajl_callbacks callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_boolean,
    .yajl_integer = on_integer,
    .yajl_double = on_double,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_map_key,
    .yajl_end_map = on_end,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_end,
};

int sl_json_load_fast(const char *text, size_t len, json_t **out)
{
    struct builder b;
    yajl_handle h;
    bool is_done;

    *out = NULL;
    if (!is_plain(text, len)) {
        return SL_EINVAL;
    }
    b.root = NULL;
    b.depth = 0;
    b.key_len = 0;
    b.root_end = 0;
    h = yajl_alloc(&callbacks, NULL, &b);
    if (h == NULL) {
        return SL_ENOMEM;
    }
    b.yajl = h;
    /* Checked above, as jansson checks; yajl's own check lets overlong forms through. */
    yajl_config(h, yajl_dont_validate_strings, 1);
    /*
     * yajl keeps an unfinished token at the end of its input for a next chunk, and
     * yajl_complete_parse then reports success once the root has closed: `{} "abc` reads
     * as {}. So the root must close inside the text and only whitespace may follow it.
     */
    is_done = yajl_parse(h, (const unsigned char *)text, len) == yajl_status_ok &&
              b.root_end > 0 && is_blank_tail(text, b.root_end, len) &&
              yajl_complete_parse(h) == yajl_status_ok && b.depth == 0;
    yajl_free(h);
    if (!is_done) {
        json_decref(b.root);
        return SL_EINVAL;
    }
    *out = b.root;
    return 0;
}

/* ---- the answer ------------------------------------------------------------------------ */

/*
 * jansson reports running out of memory inside its lexer as a syntax error ("invalid
 * token") and one at the very start with no text at all; a syntax error, unlike an
 * allocation failure, repeats exactly. So a failure is bad JSON only when a second parse
 * fails the same way.
 */
int sl_json_load(const char *text, size_t len, json_t **out, json_error_t *jerr)
{
    json_error_t again;

    if (sl_json_load_fast(text, len, out) == 0) {
        return 0;
    }
    *out = json_loadb(text, len, LOAD_FLAGS, jerr);
    if (*out != NULL) {
        return 0;
    }
    if (json_error_code(jerr) != json_error_out_of_memory && jerr->text[0] != '\0') {
        *out = json_loadb(text, len, LOAD_FLAGS, &again);
        if (*out != NULL) {
            return 0;
        }
        if (jerr->position == again.position && strcmp(jerr->text, again.text) == 0) {
            return SL_EINVAL;
        }
    }
    return SL_ENOMEM;
}

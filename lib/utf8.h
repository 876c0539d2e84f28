/*
 * Small checks on UTF-8 text held as (pointer, length): validity, cutting on a character
 * boundary, and finding control characters. Nothing here allocates, converts or
 * normalizes; what to do with bad text (reject it, quote it, drop it) is the callers'.
 * Pure functions, any thread.
 */
#ifndef SLUICE_LIB_UTF8_H
#define SLUICE_LIB_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Whether s (len bytes, borrowed) is valid UTF-8: no stray continuation bytes, no
 * truncated characters, no overlong forms, no surrogates, nothing past U+10FFFF.
 * NUL bytes are valid. Never fails.
 */
bool sl_utf8_is_valid(const char *s, size_t len);

/*
 * Largest length <= max that does not split a character of s (valid UTF-8, len bytes,
 * borrowed); len itself when len <= max. Never fails.
 */
size_t sl_utf8_cut(const char *s, size_t len, size_t max);

/*
 * Drops an incomplete character at the end of NUL-terminated s (changed in place), as
 * snprintf leaves when it cuts valid UTF-8 to fit a buffer. Never fails.
 */
void sl_utf8_trim(char *s);

/*
 * Finds the first control character of s (valid UTF-8, len bytes, borrowed): C0 (below
 * U+0020), DEL (U+007F) or C1 (U+0080..U+009F). Returns its byte offset and sets *cp to
 * its code point, or returns -1 (and leaves *cp alone) when there is none.
 */
long sl_utf8_find_control(const char *s, size_t len, unsigned *cp);

#endif

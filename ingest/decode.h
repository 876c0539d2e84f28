/*
 * Request-body decoding: Content-Encoding identity, gzip (also zlib/deflate streams) and
 * zstd, with the body limit applied to the decoded size, so a small compressed body that
 * expands past the limit (a decompression bomb) is refused after at most `max_bytes` of
 * output, never fully inflated. Pure functions; any thread.
 */
#ifndef SLUICE_INGEST_DECODE_H
#define SLUICE_INGEST_DECODE_H

#include <stddef.h>

#include "err.h"

enum ingest_decode_encoding {
    INGEST_DECODE_IDENTITY,
    INGEST_DECODE_GZIP,
    INGEST_DECODE_ZSTD,
};

/*
 * Maps a Content-Encoding header value (NULL or "" is identity; case-insensitive) to an
 * encoding. SL_EINVAL for anything else, with err naming it (the edge answers 415).
 */
int ingest_decode_parse_encoding(const char *header, enum ingest_decode_encoding *out,
                                 struct sl_err *err);

/*
 * Decodes in[0..in_len) into a new buffer *out (NUL-terminated, free with sl_free) of at
 * most max_bytes. Fails with SL_EBUSY when the decoded body would exceed max_bytes (the edge
 * answers 413), SL_EINVAL for a corrupt stream (400), SL_ENOMEM. *out is NULL on failure.
 * For identity the input is copied.
 */
int ingest_decode_body(enum ingest_decode_encoding enc, const void *in, size_t in_len,
                       size_t max_bytes, char **out, size_t *out_len, struct sl_err *err);

#endif

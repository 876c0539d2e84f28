/* gzip (zlib) and zstd body decoding into a bounded buffer. */
#include "decode.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>
#include <zstd.h>

#include "alloc.h"

int ingest_decode_parse_encoding(const char *header, enum ingest_decode_encoding *out,
                                 struct sl_err *err)
{
    if (header == NULL || header[0] == '\0' || strcasecmp(header, "identity") == 0) {
        *out = INGEST_DECODE_IDENTITY;
    }
    else if (strcasecmp(header, "gzip") == 0 || strcasecmp(header, "x-gzip") == 0 ||
             strcasecmp(header, "deflate") == 0) {
        *out = INGEST_DECODE_GZIP;
    }
    else if (strcasecmp(header, "zstd") == 0) {
        *out = INGEST_DECODE_ZSTD;
    }
    else {
        return sl_err_set(err, SL_EINVAL, "unsupported Content-Encoding '%.64s' (use gzip, "
                          "zstd or none)", header);
    }
    return 0;
}

/* Grows *buf to hold at least need bytes plus a NUL, never past max + 1. */
static int grow(char **buf, size_t *cap, size_t need, size_t max)
{
    size_t new_cap = *cap == 0 ? 16384 : *cap;
    char *p;

    while (new_cap < need + 1) {
        new_cap *= 2;
    }
    if (new_cap > max + 1) {
        new_cap = max + 1;
    }
    if (new_cap <= *cap) {
        return 0;
    }
    p = sl_realloc(*buf, new_cap);
    if (p == NULL) {
        return SL_ENOMEM;
    }
    *buf = p;
    *cap = new_cap;
    return 0;
}

static int decode_gzip(const void *in, size_t in_len, size_t max_bytes, char **buf, size_t *cap,
                       size_t *len, struct sl_err *err)
{
    z_stream zs;
    int zrc = Z_OK;
    int rc = 0;

    memset(&zs, 0, sizeof(zs));
    /* 15 + 32: accept gzip and zlib headers alike. */
    if (inflateInit2(&zs, 15 + 32) != Z_OK) {
        return sl_err_set(err, SL_ENOMEM, "cannot start gzip decoding");
    }
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)in_len;
    while (zrc != Z_STREAM_END) {
        if (*len == max_bytes) {
            /* Full: one more byte of output means the body is too large. */
            unsigned char probe;

            zs.next_out = &probe;
            zs.avail_out = 1;
            zrc = inflate(&zs, Z_NO_FLUSH);
            if (zs.avail_out == 0) {
                rc = sl_err_set(err, SL_EBUSY, "body is larger than %zu bytes after gzip "
                                "decoding", max_bytes);
                break;
            }
            if (zrc == Z_STREAM_END) {
                break;
            }
            rc = sl_err_set(err, SL_EINVAL, "gzip body is corrupt or truncated");
            break;
        }
        rc = grow(buf, cap, *len + 65536 < max_bytes ? *len + 65536 : max_bytes, max_bytes);
        if (rc != 0) {
            sl_err_set(err, rc, "out of memory decoding the body");
            break;
        }
        zs.next_out = (Bytef *)*buf + *len;
        zs.avail_out = (uInt)(*cap - 1 - *len);
        zrc = inflate(&zs, Z_NO_FLUSH);
        *len = (size_t)(zs.next_out - (Bytef *)*buf);
        if (zrc == Z_STREAM_END) {
            break;
        }
        if (zrc != Z_OK && !(zrc == Z_BUF_ERROR && zs.avail_out == 0)) {
            rc = sl_err_set(err, SL_EINVAL, "gzip body is corrupt or truncated (%s)",
                            zs.msg != NULL ? zs.msg : "unexpected end");
            break;
        }
        if (zs.avail_in == 0 && zs.avail_out > 0) {
            rc = sl_err_set(err, SL_EINVAL, "gzip body is truncated");
            break;
        }
    }
    inflateEnd(&zs);
    return rc;
}

static int decode_zstd(const void *in, size_t in_len, size_t max_bytes, char **buf, size_t *cap,
                       size_t *len, struct sl_err *err)
{
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    ZSTD_inBuffer zin = {in, in_len, 0};
    size_t last = 1;
    int rc = 0;

    if (dctx == NULL) {
        return sl_err_set(err, SL_ENOMEM, "cannot start zstd decoding");
    }
    /* Refuse frames that need a huge window before allocating it. */
    ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, 24);
    while (zin.pos < zin.size || last != 0) {
        ZSTD_outBuffer zout;

        if (*len == max_bytes) {
            unsigned char probe;
            ZSTD_outBuffer one = {&probe, 1, 0};

            last = ZSTD_decompressStream(dctx, &one, &zin);
            if (ZSTD_isError(last)) {
                rc = sl_err_set(err, SL_EINVAL, "zstd body is corrupt: %s",
                                ZSTD_getErrorName(last));
            }
            else if (one.pos > 0) {
                rc = sl_err_set(err, SL_EBUSY, "body is larger than %zu bytes after zstd "
                                "decoding", max_bytes);
            }
            else if (last != 0) {
                rc = sl_err_set(err, SL_EINVAL, "zstd body is truncated");
            }
            break;
        }
        rc = grow(buf, cap, *len + 65536 < max_bytes ? *len + 65536 : max_bytes, max_bytes);
        if (rc != 0) {
            sl_err_set(err, rc, "out of memory decoding the body");
            break;
        }
        zout.dst = *buf + *len;
        zout.size = *cap - 1 - *len;
        zout.pos = 0;
        last = ZSTD_decompressStream(dctx, &zout, &zin);
        if (ZSTD_isError(last)) {
            rc = sl_err_set(err, SL_EINVAL, "zstd body is corrupt: %s", ZSTD_getErrorName(last));
            break;
        }
        *len += zout.pos;
        if (zin.pos == zin.size && zout.pos < zout.size && last != 0) {
            rc = sl_err_set(err, SL_EINVAL, "zstd body is truncated");
            break;
        }
    }
    ZSTD_freeDCtx(dctx);
    return rc;
}

int ingest_decode_body(enum ingest_decode_encoding enc, const void *in, size_t in_len,
                       size_t max_bytes, char **out, size_t *out_len, struct sl_err *err)
{
    char *buf = NULL;
    size_t cap = 0, len = 0;
    int rc = 0;

    *out = NULL;
    *out_len = 0;
    switch (enc) {
    case INGEST_DECODE_IDENTITY:
        if (in_len > max_bytes) {
            return sl_err_set(err, SL_EBUSY, "body is larger than %zu bytes", max_bytes);
        }
        buf = sl_malloc(in_len + 1);
        if (buf == NULL) {
            return sl_err_set(err, SL_ENOMEM, "out of memory copying the body");
        }
        memcpy(buf, in, in_len);
        len = in_len;
        break;
    case INGEST_DECODE_GZIP:
        rc = decode_gzip(in, in_len, max_bytes, &buf, &cap, &len, err);
        break;
    case INGEST_DECODE_ZSTD:
        rc = decode_zstd(in, in_len, max_bytes, &buf, &cap, &len, err);
        break;
    }
    if (rc == 0 && buf == NULL) {
        buf = sl_malloc(1);
        if (buf == NULL) {
            rc = sl_err_set(err, SL_ENOMEM, "out of memory decoding the body");
        }
    }
    if (rc != 0) {
        sl_free(buf);
        return rc;
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return 0;
}

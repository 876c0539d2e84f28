/*
 * Reading one cold part back: streaming zstd decompression of the data file, hashing the
 * file's bytes and counting lines on the way, and the verification that compares all
 * three with the manifest before anything trusts the part (deleting raw rows, restoring).
 */
#include "cold_int.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "alloc.h"

struct compress_cold_reader {
    char path[COMPRESS_COLD_PATH_MAX];
    int fd;
    ZSTD_DCtx *zd;
    EVP_MD_CTX *md;
    char *in;          /* compressed bytes read from the file */
    size_t in_cap;
    ZSTD_inBuffer ib;
    bool is_eof;       /* the file has no more bytes */
    size_t frame_left; /* ZSTD_decompressStream's hint: 0 when a frame just ended */
    int64_t rows;
    int64_t bytes;
    char sha256[COMPRESS_COLD_SHA256_HEX];
};

void compress_cold_reader_close(struct compress_cold_reader *r)
{
    if (r == NULL) {
        return;
    }
    if (r->fd >= 0) {
        close(r->fd);
    }
    ZSTD_freeDCtx(r->zd);
    EVP_MD_CTX_free(r->md);
    sl_free(r->in);
    sl_free(r);
}

int compress_cold_reader_open(struct compress_cold_reader **out, const char *path,
                              struct sl_err *err)
{
    struct compress_cold_reader *r = NULL;
    int rc;

    *out = NULL;
    r = sl_calloc(1, sizeof(*r));
    if (r == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    r->fd = -1;
    snprintf(r->path, sizeof(r->path), "%s", path);
    r->in_cap = ZSTD_DStreamInSize();
    r->in = sl_malloc(r->in_cap);
    r->zd = ZSTD_createDCtx();
    r->md = EVP_MD_CTX_new();
    if (r->in == NULL || r->zd == NULL || r->md == NULL) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory");
        goto fail;
    }
    if (EVP_DigestInit_ex(r->md, EVP_sha256(), NULL) != 1) {
        rc = sl_err_set(err, SL_ENOMEM, "cannot start sha256");
        goto fail;
    }
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        rc = sl_err_set(err, errno == ENOENT ? SL_ENOTFOUND : SL_EIO, "cannot open %s: %s",
                        path, strerror(errno));
        goto fail;
    }
    r->ib = (ZSTD_inBuffer){r->in, 0, 0};
    r->frame_left = 1;
    *out = r;
    return 0;

fail:
    compress_cold_reader_close(r);
    return rc;
}

/* Refills the input buffer once it is used up. */
static int refill(struct compress_cold_reader *r, struct sl_err *err)
{
    ssize_t n;

    if (r->ib.pos < r->ib.size || r->is_eof) {
        return 0;
    }
    do {
        n = read(r->fd, r->in, r->in_cap);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return sl_err_set(err, SL_EIO, "cannot read %s: %s", r->path, strerror(errno));
    }
    if (n == 0) {
        r->is_eof = true;
    }
    else if (EVP_DigestUpdate(r->md, r->in, (size_t)n) != 1) {
        return sl_err_set(err, SL_ENOMEM, "sha256 update failed");
    }
    r->bytes += n;
    r->ib = (ZSTD_inBuffer){r->in, (size_t)n, 0};
    return 0;
}

static void finish_hash(struct compress_cold_reader *r)
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;

    if (r->sha256[0] != '\0') {
        return;
    }
    if (EVP_DigestFinal_ex(r->md, digest, &dlen) == 1 && dlen == 32) {
        for (unsigned i = 0; i < 32; i++) {
            snprintf(r->sha256 + 2 * i, 3, "%02x", digest[i]);
        }
    }
}

int compress_cold_reader_read(struct compress_cold_reader *r, void *buf, size_t cap,
                              size_t *n_out, struct sl_err *err)
{
    ZSTD_outBuffer ob = {buf, cap, 0};
    int rc;

    *n_out = 0;
    while (ob.pos == 0) {
        size_t hint;

        rc = refill(r, err);
        if (rc != 0) {
            return rc;
        }
        if (r->is_eof && r->ib.pos == r->ib.size) {
            if (r->frame_left != 0) {
                return sl_err_set(err, SL_EIO, "%s is truncated (zstd frame not complete)",
                                  r->path);
            }
            finish_hash(r);
            return 0;
        }
        hint = ZSTD_decompressStream(r->zd, &ob, &r->ib);
        if (ZSTD_isError(hint)) {
            return sl_err_set(err, SL_EIO, "%s is corrupted: zstd says %s", r->path,
                              ZSTD_getErrorName(hint));
        }
        r->frame_left = hint;
    }
    for (const char *p = buf, *q = p; (q = memchr(q, '\n', ob.pos - (size_t)(q - p))) != NULL;
         q++) {
        r->rows++;
    }
    *n_out = ob.pos;
    return 0;
}

void compress_cold_reader_totals(const struct compress_cold_reader *r,
                                 char sha256[COMPRESS_COLD_SHA256_HEX], int64_t *bytes,
                                 int64_t *rows)
{
    snprintf(sha256, COMPRESS_COLD_SHA256_HEX, "%s", r->sha256);
    *bytes = r->bytes;
    *rows = r->rows;
}

/* The sha256 of a whole file, for the message when its data cannot even be decompressed. */
static int hash_file(const char *path, char sha[COMPRESS_COLD_SHA256_HEX])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned char buf[65536];
    unsigned int dlen = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = 0;
    int rc = SL_EIO;

    if (md != NULL && fd >= 0 && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1) {
        while ((n = read(fd, buf, sizeof(buf))) > 0) {
            EVP_DigestUpdate(md, buf, (size_t)n);
        }
        if (n == 0 && EVP_DigestFinal_ex(md, digest, &dlen) == 1 && dlen == 32) {
            for (unsigned i = 0; i < 32; i++) {
                snprintf(sha + 2 * i, 3, "%02x", digest[i]);
            }
            rc = 0;
        }
    }
    if (fd >= 0) {
        close(fd);
    }
    EVP_MD_CTX_free(md);
    return rc;
}

int compress_cold_verify(const char *day_dir, const struct compress_manifest *m,
                         struct sl_err *err)
{
    struct compress_cold_reader *r = NULL;
    char path[COMPRESS_COLD_PATH_MAX];
    char sha[COMPRESS_COLD_SHA256_HEX];
    char *buf = NULL;
    size_t cap = ZSTD_DStreamOutSize();
    size_t n = 0;
    int64_t bytes = 0, rows = 0;
    int rc;

    rc = compress_cold_join(day_dir, m->file, path, sizeof(path), err);
    if (rc != 0) {
        return rc;
    }
    buf = sl_malloc(cap);
    if (buf == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    rc = compress_cold_reader_open(&r, path, err);
    while (rc == 0) {
        rc = compress_cold_reader_read(r, buf, cap, &n, err);
        if (rc == 0 && n == 0) {
            break;
        }
    }
    if (rc == SL_EIO && r != NULL && hash_file(path, sha) == 0 && strcmp(sha, m->sha256) != 0) {
        /* Say what a person can act on: the file is not the one that was written. */
        rc = sl_err_set(err, SL_ESTATE, "%s: checksum mismatch: manifest sha256 %s, file %s",
                        path, m->sha256, sha);
    }
    if (rc == 0) {
        compress_cold_reader_totals(r, sha, &bytes, &rows);
        if (strcmp(sha, m->sha256) != 0) {
            rc = sl_err_set(err, SL_ESTATE, "%s: checksum mismatch: manifest sha256 %s, file %s",
                            path, m->sha256, sha);
        }
        else if (bytes != m->bytes) {
            rc = sl_err_set(err, SL_ESTATE, "%s: size mismatch: manifest %lld bytes, file %lld",
                            path, (long long)m->bytes, (long long)bytes);
        }
        else if (rows != m->rows) {
            rc = sl_err_set(err, SL_ESTATE, "%s: row count mismatch: manifest %lld, file %lld",
                            path, (long long)m->rows, (long long)rows);
        }
    }
    compress_cold_reader_close(r);
    sl_free(buf);
    return rc;
}

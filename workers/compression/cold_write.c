/*
 * Writing one cold part: the data streams through a zstd compression context into a
 * temporary file while libcrypto hashes the compressed bytes and the lines are counted;
 * commit flushes, fsyncs and renames it into place, then writes the manifest
 * (cold_manifest.c). Until the manifest exists the part does not exist for readers.
 */
#include "cold_int.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "alloc.h"

struct compress_cold_writer {
    char dir[COMPRESS_COLD_PATH_MAX];
    char tmp[COMPRESS_COLD_PATH_MAX];
    char final[COMPRESS_COLD_PATH_MAX];
    char file[COMPRESS_COLD_NAME_MAX];
    char manifest[COMPRESS_COLD_NAME_MAX];
    int64_t part;
    int fd;
    ZSTD_CCtx *zc;
    EVP_MD_CTX *md;
    void *out;         /* compressed bytes waiting to be written */
    size_t out_cap;
    int64_t rows;
    int64_t bytes;
    char last;         /* the last input byte ('\n' when the data ends a line) */
    bool is_committed;
    bool is_broken;    /* a failure happened: only destroy is allowed */
};

void compress_cold_part_names(int64_t part, char file[COMPRESS_COLD_NAME_MAX],
                              char manifest[COMPRESS_COLD_NAME_MAX])
{
    snprintf(file, COMPRESS_COLD_NAME_MAX, "part-%04d.jsonl.zst", (int)part);
    snprintf(manifest, COMPRESS_COLD_NAME_MAX, "part-%04d.manifest.json", (int)part);
}

void compress_cold_writer_destroy(struct compress_cold_writer *w)
{
    if (w == NULL) {
        return;
    }
    if (w->fd >= 0) {
        close(w->fd);
    }
    if (!w->is_committed && w->tmp[0] != '\0') {
        unlink(w->tmp);
    }
    ZSTD_freeCCtx(w->zc);
    EVP_MD_CTX_free(w->md);
    sl_free(w->out);
    sl_free(w);
}

int compress_cold_writer_open(struct compress_cold_writer **out, const char *day_dir,
                              int64_t part, int level, struct sl_err *err)
{
    struct compress_cold_writer *w = NULL;
    char tmp_name[COMPRESS_COLD_NAME_MAX + 8];
    int rc;

    *out = NULL;
    if (part < 1 || part > COMPRESS_COLD_MAX_PART) {
        return sl_err_set(err, SL_EINVAL, "part number %lld is out of range 1..%d",
                          (long long)part, COMPRESS_COLD_MAX_PART);
    }
    if (strlen(day_dir) >= COMPRESS_COLD_PATH_MAX - COMPRESS_COLD_NAME_MAX - 16) {
        return sl_err_set(err, SL_EINVAL, "cold folder path '%s' is too long", day_dir);
    }
    w = sl_calloc(1, sizeof(*w));
    if (w == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    w->fd = -1;
    w->part = part;
    w->last = '\n';
    snprintf(w->dir, sizeof(w->dir), "%s", day_dir);
    compress_cold_part_names(part, w->file, w->manifest);
    snprintf(tmp_name, sizeof(tmp_name), ".%s.tmp", w->file);
    rc = compress_cold_join(day_dir, tmp_name, w->tmp, sizeof(w->tmp), err);
    if (rc == 0) {
        rc = compress_cold_join(day_dir, w->file, w->final, sizeof(w->final), err);
    }
    if (rc == 0) {
        rc = compress_cold_mkdirs(day_dir, err);
    }
    if (rc != 0) {
        w->tmp[0] = '\0';
        goto fail;
    }
    w->out_cap = ZSTD_CStreamOutSize();
    w->out = sl_malloc(w->out_cap);
    w->zc = ZSTD_createCCtx();
    w->md = EVP_MD_CTX_new();
    if (w->out == NULL || w->zc == NULL || w->md == NULL) {
        w->tmp[0] = '\0';
        rc = sl_err_set(err, SL_ENOMEM, "out of memory");
        goto fail;
    }
    if (ZSTD_isError(ZSTD_CCtx_setParameter(w->zc, ZSTD_c_compressionLevel, level)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(w->zc, ZSTD_c_checksumFlag, 1)) ||
        EVP_DigestInit_ex(w->md, EVP_sha256(), NULL) != 1) {
        w->tmp[0] = '\0';
        rc = sl_err_set(err, SL_EINVAL, "cannot set up zstd level %d or sha256", level);
        goto fail;
    }
    /* A part of this number on disk belongs to a run that never recorded it: its manifest
     * goes first, so the part stops existing before its data is replaced. */
    {
        char old[COMPRESS_COLD_PATH_MAX];

        if (compress_cold_join(day_dir, w->manifest, old, sizeof(old), NULL) == 0 &&
            unlink(old) == 0) {
            rc = compress_cold_fsync_dir(day_dir, err);
            if (rc != 0) {
                w->tmp[0] = '\0';
                goto fail;
            }
        }
    }
    /* O_TRUNC: a temporary file of an interrupted run is simply started over. */
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (w->fd < 0) {
        rc = sl_err_set(err, SL_EIO, "cannot create %s: %s", w->tmp, strerror(errno));
        w->tmp[0] = '\0';
        goto fail;
    }
    *out = w;
    return 0;

fail:
    compress_cold_writer_destroy(w);
    return rc;
}

/* Writes and hashes n compressed bytes. */
static int emit(struct compress_cold_writer *w, const char *p, size_t n, struct sl_err *err)
{
    if (EVP_DigestUpdate(w->md, p, n) != 1) {
        return sl_err_set(err, SL_ENOMEM, "sha256 update failed");
    }
    w->bytes += (int64_t)n;
    while (n > 0) {
        ssize_t k = write(w->fd, p, n);

        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            return sl_err_set(err, SL_EIO, "cannot write %s: %s", w->tmp, strerror(errno));
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Runs zstd over in with directive `end` until it consumed the input (and, for
 * ZSTD_e_end, flushed the frame). */
static int pump(struct compress_cold_writer *w, ZSTD_inBuffer *in, ZSTD_EndDirective end,
                struct sl_err *err)
{
    for (;;) {
        ZSTD_outBuffer ob = {w->out, w->out_cap, 0};
        size_t left = ZSTD_compressStream2(w->zc, &ob, in, end);
        int rc;

        if (ZSTD_isError(left)) {
            return sl_err_set(err, SL_EIO, "zstd failed on %s: %s", w->tmp,
                              ZSTD_getErrorName(left));
        }
        rc = emit(w, w->out, ob.pos, err);
        if (rc != 0) {
            return rc;
        }
        if (end == ZSTD_e_end ? left == 0 : in->pos == in->size) {
            return 0;
        }
    }
}

int compress_cold_writer_write(struct compress_cold_writer *w, const void *data, size_t len,
                               struct sl_err *err)
{
    ZSTD_inBuffer in = {data, len, 0};
    const char *p = data;
    int rc;

    if (w->is_broken || w->is_committed) {
        return sl_err_set(err, SL_ESTATE, "cold part %s is already closed", w->tmp);
    }
    if (len == 0) {
        return 0;
    }
    for (const char *q = p; (q = memchr(q, '\n', len - (size_t)(q - p))) != NULL; q++) {
        w->rows++;
    }
    w->last = p[len - 1];
    rc = pump(w, &in, ZSTD_e_continue, err);
    if (rc != 0) {
        w->is_broken = true;
    }
    return rc;
}

int compress_cold_writer_commit(struct compress_cold_writer *w, struct compress_manifest *m,
                                struct sl_err *err)
{
    ZSTD_inBuffer in = {NULL, 0, 0};
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    int rc;

    if (w->is_broken || w->is_committed) {
        return sl_err_set(err, SL_ESTATE, "cold part %s is already closed", w->tmp);
    }
    w->is_broken = true; /* until it succeeded */
    if (w->last != '\n') {
        return sl_err_set(err, SL_EINVAL, "data for %s does not end with a newline", w->tmp);
    }
    rc = pump(w, &in, ZSTD_e_end, err);
    if (rc != 0) {
        return rc;
    }
    if (EVP_DigestFinal_ex(w->md, digest, &dlen) != 1 || dlen != 32) {
        return sl_err_set(err, SL_ENOMEM, "sha256 final failed");
    }
    if (fsync(w->fd) != 0) {
        return sl_err_set(err, SL_EIO, "cannot fsync %s: %s", w->tmp, strerror(errno));
    }
    close(w->fd);
    w->fd = -1;
    if (rename(w->tmp, w->final) != 0) {
        return sl_err_set(err, SL_EIO, "cannot rename %s to %s: %s", w->tmp, w->final,
                          strerror(errno));
    }
    w->tmp[0] = '\0'; /* renamed: nothing temporary left to remove */
    rc = compress_cold_fsync_dir(w->dir, err);
    if (rc != 0) {
        return rc;
    }
    for (unsigned i = 0; i < 32; i++) {
        snprintf(m->sha256 + 2 * i, 3, "%02x", digest[i]);
    }
    m->part = w->part;
    snprintf(m->file, sizeof(m->file), "%s", w->file);
    snprintf(m->format, sizeof(m->format), "%s", COMPRESS_COLD_FORMAT);
    m->rows = w->rows;
    m->bytes = w->bytes;
    rc = compress_manifest_write(w->dir, m, err);
    if (rc != 0) {
        return rc;
    }
    w->is_committed = true;
    w->is_broken = false;
    return 0;
}

/* Small text helpers of the enrichment folder: UTF-8-safe cuts and copies, a hash, file
 * reads. */
#include "enrich_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc.h"

size_t enrich_utf8_cut(const char *s, size_t len, size_t max)
{
    size_t n;

    if (len <= max) {
        return len;
    }
    n = max;
    /* Step back over continuation bytes (10xxxxxx) to the start of the cut sequence, which
     * then is left out whole. */
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) {
        n--;
    }
    return n;
}

void enrich_copy(char *dst, size_t cap, const char *src, size_t len)
{
    size_t n = src != NULL ? enrich_utf8_cut(src, len, cap - 1) : 0;

    if (n > 0) {
        memcpy(dst, src, n);
    }
    dst[n] = '\0';
}

uint64_t enrich_hash64(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 14695981039346656037ULL;

    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ULL;
    }
    return h;
}

int enrich_file_read(const char *path, size_t max_bytes, char **out, size_t *len,
                     struct sl_err *err)
{
    struct stat st;
    char *buf = NULL;
    size_t n = 0;
    FILE *f;
    int rc = 0;

    *out = NULL;
    *len = 0;
    f = fopen(path, "rb");
    if (f == NULL) {
        return sl_err_set(err, errno == ENOENT ? SL_ENOTFOUND : SL_EIO, "%s: cannot open: %s",
                          path, strerror(errno));
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = sl_err_set(err, SL_EIO, "%s: not a regular file", path);
        goto done;
    }
    if ((uint64_t)st.st_size > max_bytes) {
        rc = sl_err_set(err, SL_EINVAL, "%s: %lld bytes is more than the %zu allowed", path,
                        (long long)st.st_size, max_bytes);
        goto done;
    }
    buf = sl_malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        rc = sl_err_set(err, SL_ENOMEM, "%s: out of memory reading it", path);
        goto done;
    }
    n = fread(buf, 1, (size_t)st.st_size, f);
    if (ferror(f) || n != (size_t)st.st_size) {
        rc = sl_err_set(err, SL_EIO, "%s: read error", path);
        goto done;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    buf = NULL;

done:
    sl_free(buf);
    fclose(f);
    return rc;
}

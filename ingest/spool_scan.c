/*
 * The spool's on-disk formats and the walk over a segment (formats in spool.h): record
 * headers and the cursor file encoded and checked (little-endian fields, zlib CRC32),
 * segment file names, and the read window, a read-ahead buffer over one segment that
 * yields it unit by unit (whole record, record with a bad payload, or garbage up to the
 * next record that checks out). The scan at open and the reader thread both walk with it,
 * so they count records the same way. Files, locking, appends and the cursor's place are
 * spool.c's.
 */
#include "spool_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "alloc.h"

#define HDR INGEST_SPOOL_RECORD_HEADER_BYTES
#define REC_MAGIC 0x50534c53u    /* "SLSP" in file order */
#define CURSOR_MAGIC 0x55434c53u /* "SLCU" in file order */
#define CURSOR_VERSION 1u
#define WINDOW_BYTES (1u << 20)  /* reader's read-ahead */

/* ---- formats ---- */

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const unsigned char *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

static uint32_t crc_of(const void *p, size_t n)
{
    return (uint32_t)crc32_z(0L, n > 0 ? p : Z_NULL, n);
}

void ingest_spool_scan_encode_header(unsigned char *h, const void *payload, uint32_t len)
{
    put_u32(h, REC_MAGIC);
    put_u32(h + 4, len);
    put_u32(h + 8, crc_of(payload, len));
    put_u32(h + 12, crc_of(h, 12));
}

/* Whether h is a valid header; fills the payload length and checksum when it is. */
static bool decode_header(const unsigned char *h, uint32_t *len, uint32_t *payload_crc)
{
    if (get_u32(h) != REC_MAGIC || get_u32(h + 12) != crc_of(h, 12)) {
        return false;
    }
    *len = get_u32(h + 4);
    *payload_crc = get_u32(h + 8);
    return *len <= INGEST_SPOOL_RECORD_MAX_BYTES;
}

void ingest_spool_scan_encode_cursor(unsigned char buf[INGEST_SPOOL_CURSOR_BYTES],
                                     struct ingest_spool_pos pos)
{
    put_u32(buf, CURSOR_MAGIC);
    put_u32(buf + 4, CURSOR_VERSION);
    put_u64(buf + 8, pos.seq);
    put_u64(buf + 16, pos.offset);
    put_u32(buf + 24, crc_of(buf, 24));
}

int ingest_spool_scan_decode_cursor(const unsigned char *buf, size_t n,
                                    struct ingest_spool_pos *out)
{
    if (n != INGEST_SPOOL_CURSOR_BYTES || get_u32(buf) != CURSOR_MAGIC ||
        get_u32(buf + 4) != CURSOR_VERSION || get_u32(buf + 24) != crc_of(buf, 24)) {
        return SL_EINVAL;
    }
    out->seq = get_u64(buf + 8);
    out->offset = get_u64(buf + 16);
    return 0;
}

void ingest_spool_scan_seg_name(char buf[INGEST_SPOOL_SEG_NAME_BYTES], uint64_t seq)
{
    snprintf(buf, INGEST_SPOOL_SEG_NAME_BYTES, "seg-%016" PRIu64 ".spool", seq);
}

bool ingest_spool_scan_is_seg_name(const char *name, uint64_t *seq)
{
    uint64_t v = 0;

    if (strlen(name) != 26 || strncmp(name, "seg-", 4) != 0 || strcmp(name + 20, ".spool") != 0) {
        return false;
    }
    for (int i = 4; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9') {
            return false;
        }
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    *seq = v;
    return true;
}

/* ---- the window ---- */

void ingest_spool_scan_window_close(struct ingest_spool_window *w)
{
    if (w->fd >= 0) {
        close(w->fd);
    }
    w->fd = -1;
    w->off = 0;
    w->len = 0;
}

int ingest_spool_scan_window_use(struct ingest_spool *sp, uint64_t seq, struct sl_err *err)
{
    struct ingest_spool_window *w = &sp->win;
    char name[INGEST_SPOOL_SEG_NAME_BYTES];

    if (w->fd >= 0 && w->seq == seq) {
        return 0;
    }
    ingest_spool_scan_window_close(w);
    ingest_spool_scan_seg_name(name, seq);
    w->fd = openat(sp->dir_fd, name, O_RDONLY | O_CLOEXEC);
    if (w->fd < 0) {
        return ingest_spool_io_fail(sp, "opening for reading", name, err);
    }
    w->seq = seq;
    return 0;
}

/* Makes [off, off + len) of the window's segment readable in w->buf. off + len <= end. */
static int window_load(struct ingest_spool *sp, uint64_t off, size_t len, uint64_t end,
                       struct sl_err *err)
{
    struct ingest_spool_window *w = &sp->win;
    char name[INGEST_SPOOL_SEG_NAME_BYTES];
    size_t want;
    size_t got = 0;
    int read_errno = 0;

    if (w->len > 0 && off >= w->off && off - w->off + len <= w->len) {
        return 0;
    }
    if (len > w->cap || w->buf == NULL) {
        size_t cap = len > WINDOW_BYTES ? len : WINDOW_BYTES;
        unsigned char *buf = sl_realloc(w->buf, cap);

        if (buf == NULL) {
            return sl_err_set(err, SL_ENOMEM, "no memory for a %zu-byte spool read buffer", cap);
        }
        w->buf = buf;
        w->cap = cap;
    }
    want = end - off < w->cap ? (size_t)(end - off) : w->cap;
    w->len = 0;
    while (got < want) {
        ssize_t n = pread(w->fd, w->buf + got, want - got, (off_t)(off + got));

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            read_errno = n < 0 ? errno : 0;
            break;
        }
        got += (size_t)n;
    }
    ingest_spool_scan_seg_name(name, w->seq);
    if (got < len) {
        if (read_errno != 0) {
            errno = read_errno;
            return ingest_spool_io_fail(sp, "reading", name, err);
        }
        return sl_err_set(err, SL_EIO, "reading %s/%s: the file ends before offset %" PRIu64
                          " which the spool wrote; was it truncated by hand?", sp->dir, name,
                          off + len);
    }
    w->off = off;
    w->len = got;
    return 0;
}

/* Finds the first offset in [from, end) where a valid record starts (header and payload
 * checksums both good); end when there is none. Slow, but only runs over damage. */
static int resync(struct ingest_spool *sp, uint64_t from, uint64_t end, uint64_t *next,
                  struct sl_err *err)
{
    struct ingest_spool_window *w = &sp->win;

    for (uint64_t p = from; p <= end && end - p >= HDR; p++) {
        const unsigned char *h;
        uint32_t len = 0, pcrc = 0;
        int rc = window_load(sp, p, HDR, end, err);

        if (rc != 0) {
            return rc;
        }
        h = w->buf + (p - w->off);
        if (h[0] != (REC_MAGIC & 0xff) || !decode_header(h, &len, &pcrc) ||
            len > end - p - HDR) {
            continue;
        }
        rc = window_load(sp, p, HDR + (size_t)len, end, err);
        if (rc != 0) {
            return rc;
        }
        if (crc_of(w->buf + (p - w->off) + HDR, len) == pcrc) {
            *next = p;
            return 0;
        }
    }
    *next = end;
    return 0;
}

int ingest_spool_scan_next_unit(struct ingest_spool *sp, uint64_t off, uint64_t end,
                                struct ingest_spool_unit *u, struct sl_err *err)
{
    struct ingest_spool_window *w = &sp->win;
    uint32_t len = 0, pcrc = 0;
    int rc;

    u->off = off;
    u->len = 0;
    u->payload = NULL;
    if (off >= end) {
        u->kind = INGEST_SPOOL_UNIT_END;
        u->next = off;
        return 0;
    }
    if (end - off >= HDR) {
        rc = window_load(sp, off, HDR, end, err);
        if (rc != 0) {
            return rc;
        }
        if (decode_header(w->buf + (off - w->off), &len, &pcrc) && len <= end - off - HDR) {
            rc = window_load(sp, off, HDR + (size_t)len, end, err);
            if (rc != 0) {
                return rc;
            }
            u->len = len;
            u->next = off + HDR + len;
            u->payload = w->buf + (off - w->off) + HDR;
            u->kind = crc_of(u->payload, len) == pcrc ? INGEST_SPOOL_UNIT_RECORD
                                                      : INGEST_SPOOL_UNIT_CORRUPT;
            return 0;
        }
    }
    u->kind = INGEST_SPOOL_UNIT_GARBAGE;
    return resync(sp, off + 1, end, &u->next, err);
}

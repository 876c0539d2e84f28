/*
 * The durable disk spool (formats and guarantees in spool.h). This file holds opening and
 * recovery (lock, cursor, segment list, the scan that counts records and drops a torn
 * tail), the append path (one pwritev per group of records, one fdatasync per batch,
 * truncation on failure), the reader, and committing the cursor file. The byte formats and
 * the read window that walks a segment live in spool_scan.c. Encoding of payloads and
 * delivery to Kafka or ClickHouse are the callers' jobs.
 *
 * Record counting: "units" are records whose header checks out, whether or not their
 * payload does. The scan at open and the reader count them with the same function
 * (ingest_spool_scan_next_unit), so records_pending = units found or appended - units
 * committed stays exact across reads, rewinds and reopens.
 */
#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "log.h"
#include "spool_int.h"

#define COMPONENT "spool"

#define HDR INGEST_SPOOL_RECORD_HEADER_BYTES
#define CURSOR_NAME "cursor"
#define CURSOR_TMP_NAME "cursor.tmp"
#define GROUP_RECORDS 64         /* records per pwritev: 2 iovecs each, far below IOV_MAX */

static int pos_cmp(struct ingest_spool_pos a, struct ingest_spool_pos b)
{
    if (a.seq != b.seq) {
        return a.seq < b.seq ? -1 : 1;
    }
    if (a.offset != b.offset) {
        return a.offset < b.offset ? -1 : 1;
    }
    return 0;
}

int ingest_spool_io_fail(struct ingest_spool *sp, const char *what, const char *name,
                         struct sl_err *err)
{
    int e = errno;

    return sl_err_set(err, SL_EIO, "%s %s/%s: %s", what, sp->dir, name, strerror(e));
}

static int sync_dir(struct ingest_spool *sp, struct sl_err *err)
{
    if (fsync(sp->dir_fd) != 0) {
        return ingest_spool_io_fail(sp, "syncing the folder", ".", err);
    }
    return 0;
}

/* ---- segments list (callers hold the lock, or run before the reader exists) ---- */

static int segs_reserve(struct ingest_spool *sp, size_t n, struct sl_err *err)
{
    struct ingest_spool_seg *segs;
    size_t cap;

    if (n <= sp->cap_segs) {
        return 0;
    }
    cap = sp->cap_segs > 0 ? sp->cap_segs * 2 : 16;
    cap = cap < n ? n : cap;
    segs = sl_realloc(sp->segs, cap * sizeof(*segs));
    if (segs == NULL) {
        return sl_err_set(err, SL_ENOMEM, "no memory for the list of spool segments");
    }
    sp->segs = segs;
    sp->cap_segs = cap;
    return 0;
}

/* Removes segs[0] from the list (its file is gone). */
static void segs_drop_first(struct ingest_spool *sp)
{
    sp->disk_bytes -= sp->segs[0].bytes;
    memmove(sp->segs, sp->segs + 1, (sp->n_segs - 1) * sizeof(*sp->segs));
    sp->n_segs--;
}

/* Index of the first segment with seq >= seq (n_segs when none). */
static size_t segs_find(const struct ingest_spool *sp, uint64_t seq)
{
    size_t lo = 0, hi = sp->n_segs;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (sp->segs[mid].seq < seq) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    return lo;
}

static int cmp_seg(const void *a, const void *b)
{
    const struct ingest_spool_seg *x = a, *y = b;

    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Creates the empty segment seq, syncs the folder and makes it the one being written. The
 * previous one (all of it durable) is closed. On failure nothing changes. */
static int segs_start(struct ingest_spool *sp, uint64_t seq, struct sl_err *err)
{
    char name[INGEST_SPOOL_SEG_NAME_BYTES];
    int fd;
    int rc = segs_reserve(sp, sp->n_segs + 1, err);

    if (rc != 0) {
        return rc;
    }
    ingest_spool_scan_seg_name(name, seq);
    fd = openat(sp->dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        return ingest_spool_io_fail(sp, "creating", name, err);
    }
    /* Without this, a crash could lose the new name and with it records acknowledged
     * after their own fdatasync. */
    sp->stats.fsyncs++;
    rc = sync_dir(sp, err);
    if (rc != 0) {
        close(fd);
        unlinkat(sp->dir_fd, name, 0);
        return rc;
    }
    if (sp->cur_fd >= 0) {
        close(sp->cur_fd);
    }
    sp->cur_fd = fd;
    sp->segs[sp->n_segs++] = (struct ingest_spool_seg){.seq = seq, .bytes = 0};
    return 0;
}

/* ---- open and recovery ---- */

/* Creates dir when missing and syncs its parent so the new name survives a crash. */
static int make_dir(struct ingest_spool *sp, struct sl_err *err)
{
    char parent[PATH_MAX];
    char *slash;
    int fd;

    if (mkdir(sp->dir, 0700) != 0) {
        if (errno == EEXIST) {
            return 0;
        }
        return sl_err_set(err, SL_EIO, "creating the spool folder %s: %s%s", sp->dir,
                          strerror(errno), errno == ENOENT ? " (create its parent first)" : "");
    }
    if (snprintf(parent, sizeof(parent), "%s", sp->dir) >= (int)sizeof(parent)) {
        return sl_err_set(err, SL_EINVAL, "spool folder path is too long: %s", sp->dir);
    }
    for (size_t n = strlen(parent); n > 1 && parent[n - 1] == '/'; n--) {
        parent[n - 1] = '\0';
    }
    slash = strrchr(parent, '/');
    if (slash == NULL) {
        snprintf(parent, sizeof(parent), ".");
    }
    else {
        slash[slash == parent ? 1 : 0] = '\0';
    }
    fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;

        if (fd >= 0) {
            close(fd);
        }
        return sl_err_set(err, SL_EIO, "syncing %s after creating the spool folder %s: %s",
                          parent, sp->dir, strerror(e));
    }
    close(fd);
    return 0;
}

static int open_dir(struct ingest_spool *sp, struct sl_err *err)
{
    int rc = make_dir(sp, err);

    if (rc != 0) {
        return rc;
    }
    sp->dir_fd = open(sp->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sp->dir_fd < 0) {
        return sl_err_set(err, SL_EIO, "opening the spool folder %s: %s", sp->dir,
                          strerror(errno));
    }
    /* Two processes appending to one spool would interleave records and fight over the
     * cursor; the lock goes away with the descriptor, also when the process dies. */
    if (flock(sp->dir_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            return sl_err_set(err, SL_EBUSY, "the spool folder %s is in use by another "
                              "process; give each sluice-ingest its own SLUICE_SPOOL_DIR",
                              sp->dir);
        }
        return sl_err_set(err, SL_EIO, "locking the spool folder %s: %s", sp->dir,
                          strerror(errno));
    }
    return 0;
}

/* Reads the cursor file. A missing one means a new spool; a damaged one is reported and
 * ignored, so the whole spool is replayed rather than anything lost. */
static int load_cursor(struct ingest_spool *sp, bool *has_cursor, struct sl_err *err)
{
    unsigned char buf[INGEST_SPOOL_CURSOR_BYTES + 1];
    ssize_t n;
    int fd;

    *has_cursor = false;
    fd = openat(sp->dir_fd, CURSOR_NAME, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? 0 : ingest_spool_io_fail(sp, "opening", CURSOR_NAME, err);
    }
    do {
        n = pread(fd, buf, sizeof(buf), 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        int rc = ingest_spool_io_fail(sp, "reading", CURSOR_NAME, err);

        close(fd);
        return rc;
    }
    close(fd);
    if (ingest_spool_scan_decode_cursor(buf, (size_t)n, &sp->committed) != 0) {
        sl_log_warn(COMPONENT, "the cursor file %s/%s is damaged (%zd bytes, bad magic, version "
                    "or checksum); replaying the spool from its oldest segment", sp->dir,
                    CURSOR_NAME, n);
        return 0;
    }
    *has_cursor = true;
    return 0;
}

static int list_segments(struct ingest_spool *sp, struct sl_err *err)
{
    DIR *d = opendir(sp->dir);
    struct dirent *e;
    int rc = 0;

    if (d == NULL) {
        return sl_err_set(err, SL_EIO, "listing the spool folder %s: %s", sp->dir,
                          strerror(errno));
    }
    for (;;) {
        uint64_t seq;

        errno = 0;
        e = readdir(d);
        if (e == NULL) {
            if (errno != 0) {
                rc = sl_err_set(err, SL_EIO, "listing the spool folder %s: %s", sp->dir,
                                strerror(errno));
            }
            break;
        }
        if (!ingest_spool_scan_is_seg_name(e->d_name, &seq)) {
            continue;
        }
        rc = segs_reserve(sp, sp->n_segs + 1, err);
        if (rc != 0) {
            break;
        }
        sp->segs[sp->n_segs++] = (struct ingest_spool_seg){.seq = seq, .bytes = 0};
    }
    closedir(d);
    if (rc != 0) {
        return rc;
    }
    if (sp->n_segs > 1) {
        qsort(sp->segs, sp->n_segs, sizeof(*sp->segs), cmp_seg);
    }
    for (size_t i = 0; i < sp->n_segs; i++) {
        char name[INGEST_SPOOL_SEG_NAME_BYTES];
        struct stat st;

        ingest_spool_scan_seg_name(name, sp->segs[i].seq);
        if (fstatat(sp->dir_fd, name, &st, 0) != 0) {
            return ingest_spool_io_fail(sp, "checking", name, err);
        }
        sp->segs[i].bytes = (uint64_t)st.st_size;
        sp->disk_bytes += (uint64_t)st.st_size;
    }
    return 0;
}

/* Puts the cursor on a segment that exists, removing segments wholly before it (a crash
 * between writing the cursor and deleting them leaves them behind). */
static int place_cursor(struct ingest_spool *sp, bool has_cursor, struct sl_err *err)
{
    char name[INGEST_SPOOL_SEG_NAME_BYTES];
    int rc;

    while (has_cursor && sp->n_segs > 0 && sp->segs[0].seq < sp->committed.seq) {
        ingest_spool_scan_seg_name(name, sp->segs[0].seq);
        if (unlinkat(sp->dir_fd, name, 0) != 0 && errno != ENOENT) {
            return ingest_spool_io_fail(sp, "deleting the committed segment", name, err);
        }
        segs_drop_first(sp);
    }
    if (sp->n_segs == 0) {
        rc = segs_start(sp, has_cursor ? sp->committed.seq + 1 : 1, err);
        if (rc != 0) {
            return rc;
        }
        sp->committed = (struct ingest_spool_pos){.seq = sp->segs[0].seq, .offset = 0};
        return 0;
    }
    if (!has_cursor) {
        sp->committed = (struct ingest_spool_pos){.seq = sp->segs[0].seq, .offset = 0};
    }
    else if (sp->segs[0].seq != sp->committed.seq) {
        sl_log_warn(COMPONENT, "the cursor of %s names segment %" PRIu64 ", which is missing; "
                    "reading from segment %" PRIu64, sp->dir, sp->committed.seq,
                    sp->segs[0].seq);
        sp->committed = (struct ingest_spool_pos){.seq = sp->segs[0].seq, .offset = 0};
    }
    else if (sp->committed.offset > sp->segs[0].bytes) {
        ingest_spool_scan_seg_name(name, sp->segs[0].seq);
        sl_log_warn(COMPONENT, "the cursor of %s points at offset %" PRIu64 " of %s, past its "
                    "end (%" PRIu64 "); reading from its end", sp->dir, sp->committed.offset,
                    name, sp->segs[0].bytes);
        sp->committed.offset = sp->segs[0].bytes;
    }
    return 0;
}

/* Drops what follows the last whole record of the newest segment: a write that was never
 * acknowledged, since append returns only after its fdatasync. */
static int drop_torn_tail(struct ingest_spool *sp, uint64_t good_end, struct sl_err *err)
{
    struct ingest_spool_seg *last = &sp->segs[sp->n_segs - 1];
    uint64_t dropped = last->bytes - good_end;
    char name[INGEST_SPOOL_SEG_NAME_BYTES];

    ingest_spool_scan_seg_name(name, last->seq);
    if (ftruncate(sp->cur_fd, (off_t)good_end) != 0) {
        return ingest_spool_io_fail(sp, "truncating the torn tail of", name, err);
    }
    sp->stats.fsyncs++;
    if (fdatasync(sp->cur_fd) != 0) {
        return ingest_spool_io_fail(sp, "syncing after truncating", name, err);
    }
    sl_log_warn(COMPONENT, "dropped a torn tail of %" PRIu64 " bytes at offset %" PRIu64
                " of %s/%s (a write cut short by a crash; it was never acknowledged)", dropped,
                good_end, sp->dir, name);
    sp->stats.torn_tail_bytes_dropped += dropped;
    sp->disk_bytes -= dropped;
    last->bytes = good_end;
    return 0;
}

/* Counts the units after the cursor and truncates a torn tail of the newest segment. */
static int scan(struct ingest_spool *sp, struct sl_err *err)
{
    uint64_t units = 0;
    int rc = 0;

    for (size_t i = 0; i < sp->n_segs && rc == 0; i++) {
        uint64_t off = i == 0 ? sp->committed.offset : 0;
        uint64_t good_end = off;
        uint64_t good_units = units;
        struct ingest_spool_unit u;

        rc = ingest_spool_scan_window_use(sp, sp->segs[i].seq, err);
        while (rc == 0) {
            rc = ingest_spool_scan_next_unit(sp, off, sp->segs[i].bytes, &u, err);
            if (rc != 0 || u.kind == INGEST_SPOOL_UNIT_END) {
                break;
            }
            if (u.kind != INGEST_SPOOL_UNIT_GARBAGE) {
                units++;
            }
            if (u.kind == INGEST_SPOOL_UNIT_RECORD) {
                good_end = u.next;
                good_units = units;
            }
            off = u.next;
        }
        if (rc == 0 && i == sp->n_segs - 1 && good_end < sp->segs[i].bytes) {
            rc = drop_torn_tail(sp, good_end, err);
            units = good_units;
        }
    }
    /* The window may hold the dropped tail, which appends will overwrite. */
    ingest_spool_scan_window_close(&sp->win);
    sp->total_units = units;
    return rc;
}

static int init_sync(struct ingest_spool *sp, struct sl_err *err)
{
    pthread_condattr_t attr;
    int rc;

    if (pthread_condattr_init(&attr) != 0) {
        return sl_err_set(err, SL_ENOMEM, "initialising the spool's condition variable");
    }
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0) {
        rc = pthread_cond_init(&sp->appended, &attr);
    }
    pthread_condattr_destroy(&attr);
    if (rc != 0) {
        return sl_err_set(err, SL_ENOMEM, "initialising the spool's condition variable: %s",
                          strerror(rc));
    }
    rc = pthread_mutex_init(&sp->lock, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&sp->appended);
        return sl_err_set(err, SL_ENOMEM, "initialising the spool's mutex: %s", strerror(rc));
    }
    sp->has_sync = true;
    return 0;
}

int ingest_spool_open(struct ingest_spool **out, const char *dir, uint64_t max_bytes,
                      uint64_t segment_bytes, struct sl_err *err)
{
    struct ingest_spool *sp = NULL;
    char name[INGEST_SPOOL_SEG_NAME_BYTES];
    bool has_cursor = false;
    int rc;

    *out = NULL;
    if (dir == NULL || dir[0] == '\0') {
        return sl_err_set(err, SL_EINVAL, "the spool folder is not set");
    }
    if (segment_bytes < INGEST_SPOOL_MIN_SEGMENT_BYTES || segment_bytes > max_bytes / 2) {
        return sl_err_set(err, SL_EINVAL, "spool %s: the segment size (%" PRIu64 " bytes) must "
                          "be at least %d bytes and at most half the spool size (%" PRIu64
                          " bytes)", dir, segment_bytes, INGEST_SPOOL_MIN_SEGMENT_BYTES,
                          max_bytes);
    }
    sp = sl_calloc(1, sizeof(*sp));
    if (sp == NULL) {
        return sl_err_set(err, SL_ENOMEM, "no memory for the spool %s", dir);
    }
    sp->dir_fd = -1;
    sp->cur_fd = -1;
    sp->win.fd = -1;
    sp->max_bytes = max_bytes;
    sp->segment_bytes = segment_bytes;
    rc = init_sync(sp, err);
    if (rc != 0) {
        goto fail;
    }
    sp->dir = sl_strdup(dir);
    if (sp->dir == NULL) {
        rc = sl_err_set(err, SL_ENOMEM, "no memory for the spool %s", dir);
        goto fail;
    }
    rc = open_dir(sp, err);
    if (rc != 0) {
        goto fail;
    }
    rc = load_cursor(sp, &has_cursor, err);
    if (rc != 0) {
        goto fail;
    }
    rc = list_segments(sp, err);
    if (rc != 0) {
        goto fail;
    }
    rc = place_cursor(sp, has_cursor, err);
    if (rc != 0) {
        goto fail;
    }
    if (sp->cur_fd < 0) {
        ingest_spool_scan_seg_name(name, sp->segs[sp->n_segs - 1].seq);
        sp->cur_fd = openat(sp->dir_fd, name, O_WRONLY | O_CLOEXEC);
        if (sp->cur_fd < 0) {
            rc = ingest_spool_io_fail(sp, "opening for writing", name, err);
            goto fail;
        }
    }
    rc = scan(sp, err);
    if (rc != 0) {
        goto fail;
    }
    sp->read_pos = sp->committed;
    sp->high_pos = sp->committed;
    sl_log_info(COMPONENT, "opened the spool %s: %zu segments, %" PRIu64 " bytes, %" PRIu64
                " records pending", sp->dir, sp->n_segs, sp->disk_bytes, sp->total_units);
    *out = sp;
    return 0;

fail:
    ingest_spool_close(sp);
    return rc;
}

void ingest_spool_close(struct ingest_spool *sp)
{
    if (sp == NULL) {
        return;
    }
    ingest_spool_scan_window_close(&sp->win);
    sl_free(sp->win.buf);
    if (sp->cur_fd >= 0) {
        close(sp->cur_fd);
    }
    if (sp->dir_fd >= 0) {
        close(sp->dir_fd);
    }
    if (sp->has_sync) {
        pthread_cond_destroy(&sp->appended);
        pthread_mutex_destroy(&sp->lock);
    }
    sl_free(sp->segs);
    sl_free(sp->dir);
    sl_free(sp);
}

/* ---- append ---- */

/* Writes every byte of iov at off, going on after short writes. 0, or -1 with errno. */
static int pwritev_all(int fd, struct iovec *iov, int cnt, uint64_t off)
{
    while (cnt > 0) {
        ssize_t done = pwritev(fd, iov, cnt, (off_t)off);

        if (done < 0 && errno == EINTR) {
            continue;
        }
        if (done <= 0) {
            if (done == 0) {
                errno = EIO;
            }
            return -1;
        }
        off += (uint64_t)done;
        while (cnt > 0 && (size_t)done >= iov->iov_len) {
            done -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + done;
            iov->iov_len -= (size_t)done;
        }
    }
    return 0;
}

/* Writes headers and payloads at off, GROUP_RECORDS records per pwritev. With a WRITE or
 * STUCK fault, writes half of the first group and fails. 0, or -1 with errno. */
static int write_records(int fd, const struct iovec *recs, const unsigned char *hdrs, size_t n,
                         uint64_t off, enum ingest_spool_fault fault)
{
    struct iovec iov[2 * GROUP_RECORDS];

    for (size_t i = 0; i < n; i += GROUP_RECORDS) {
        size_t end = n - i < GROUP_RECORDS ? n : i + GROUP_RECORDS;
        uint64_t bytes = 0;
        int cnt = 0;

        for (size_t j = i; j < end; j++) {
            iov[cnt++] = (struct iovec){.iov_base = (void *)(hdrs + j * HDR), .iov_len = HDR};
            if (recs[j].iov_len > 0) {
                iov[cnt++] = recs[j];
            }
            bytes += HDR + recs[j].iov_len;
        }
        if (fault == INGEST_SPOOL_FAULT_WRITE || fault == INGEST_SPOOL_FAULT_STUCK) {
            uint64_t keep = bytes / 2;
            int k = 0;

            while (keep > iov[k].iov_len) {
                keep -= iov[k].iov_len;
                k++;
            }
            iov[k].iov_len = (size_t)keep;
            if (pwritev_all(fd, iov, k + 1, off) == 0) {
                errno = EIO;
            }
            return -1;
        }
        if (pwritev_all(fd, iov, cnt, off) != 0) {
            return -1;
        }
        off += bytes;
    }
    return 0;
}

/* The part of an append that runs under the lock. */
static int append_locked(struct ingest_spool *sp, const struct iovec *recs,
                         const unsigned char *hdrs, size_t n, uint64_t need, struct sl_err *err)
{
    enum ingest_spool_fault fault = sp->fault;
    char name[INGEST_SPOOL_SEG_NAME_BYTES];
    const char *what = NULL;
    struct ingest_spool_seg *cur;
    uint64_t pre;
    int rc;

    sp->fault = INGEST_SPOOL_FAULT_NONE;
    if (sp->is_failed) {
        sp->stats.append_failures++;
        return sl_err_set(err, SL_EIO, "the spool %s stopped taking records after a failed "
                          "write could not be undone; restart sluice-ingest to recover it",
                          sp->dir);
    }
    if (sp->disk_bytes + need > sp->max_bytes) {
        sp->stats.full_rejections++;
        return sl_err_set(err, SL_EBUSY, "the spool %s is full: %" PRIu64 " of %" PRIu64
                          " bytes used and this batch needs %" PRIu64 "; retry once the "
                          "backlog drains", sp->dir, sp->disk_bytes, sp->max_bytes, need);
    }
    cur = &sp->segs[sp->n_segs - 1];
    if (cur->bytes > 0 && cur->bytes + need > sp->segment_bytes) {
        rc = segs_start(sp, cur->seq + 1, err);
        if (rc != 0) {
            sp->stats.append_failures++;
            return rc;
        }
        cur = &sp->segs[sp->n_segs - 1];
    }
    pre = cur->bytes;
    ingest_spool_scan_seg_name(name, cur->seq);
    if (write_records(sp->cur_fd, recs, hdrs, n, pre, fault) != 0) {
        what = "writing";
    }
    else {
        sp->stats.fsyncs++;
        if (fault == INGEST_SPOOL_FAULT_SYNC) {
            errno = EIO;
            what = "syncing";
        }
        else if (fdatasync(sp->cur_fd) != 0) {
            what = "syncing";
        }
    }
    if (what != NULL) {
        int e = errno;

        sp->stats.append_failures++;
        /* Take back whatever part of the batch reached the file, so nothing after pre was
         * ever there as far as later appends and the reader are concerned. */
        if (fault == INGEST_SPOOL_FAULT_STUCK || ftruncate(sp->cur_fd, (off_t)pre) != 0) {
            sp->is_failed = true;
            sl_log_error(COMPONENT, "could not truncate %s/%s back to %" PRIu64 " bytes after "
                         "a failed write; the spool takes no more records until restarted",
                         sp->dir, name, pre);
        }
        return sl_err_set(err, SL_EIO, "%s %zu records (%" PRIu64 " bytes) to %s/%s at offset %"
                          PRIu64 ": %s", what, n, need, sp->dir, name, pre, strerror(e));
    }
    cur->bytes += need;
    sp->disk_bytes += need;
    sp->total_units += n;
    sp->stats.appends++;
    sp->stats.records_appended += n;
    return 0;
}

int ingest_spool_append(struct ingest_spool *sp, const struct iovec *recs, size_t n,
                        struct sl_err *err)
{
    unsigned char stack_hdrs[GROUP_RECORDS * HDR];
    unsigned char *hdrs = stack_hdrs;
    uint64_t need = 0;
    int rc;

    if (n == 0) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (recs[i].iov_len > INGEST_SPOOL_RECORD_MAX_BYTES) {
            return sl_err_set(err, SL_EINVAL, "record %zu of the batch has %zu bytes, more than "
                              "the %u a spool record holds", i, recs[i].iov_len,
                              INGEST_SPOOL_RECORD_MAX_BYTES);
        }
        need += HDR + recs[i].iov_len;
        if (need > sp->max_bytes / 2) {
            return sl_err_set(err, SL_EINVAL, "a batch of %zu records needs more than %" PRIu64
                              " bytes, over half the size of the spool %s; send smaller batches",
                              n, sp->max_bytes / 2, sp->dir);
        }
    }
    if (n > GROUP_RECORDS) {
        hdrs = sl_malloc(n * HDR);
        if (hdrs == NULL) {
            return sl_err_set(err, SL_ENOMEM, "no memory for the headers of %zu spool records",
                              n);
        }
    }
    /* Checksums are computed before taking the lock so appends only queue for the I/O. */
    for (size_t i = 0; i < n; i++) {
        ingest_spool_scan_encode_header(hdrs + i * HDR, recs[i].iov_base,
                                        (uint32_t)recs[i].iov_len);
    }
    pthread_mutex_lock(&sp->lock);
    rc = append_locked(sp, recs, hdrs, n, need, err);
    if (rc == 0) {
        pthread_cond_broadcast(&sp->appended);
    }
    pthread_mutex_unlock(&sp->lock);
    if (hdrs != stack_hdrs) {
        sl_free(hdrs);
    }
    return rc;
}

void ingest_spool_inject_fault(struct ingest_spool *sp, enum ingest_spool_fault fault)
{
    pthread_mutex_lock(&sp->lock);
    sp->fault = fault;
    pthread_mutex_unlock(&sp->lock);
}

/* ---- reader ---- */

void ingest_spool_batch_init(struct ingest_spool_batch *batch)
{
    memset(batch, 0, sizeof(*batch));
}

void ingest_spool_batch_fini(struct ingest_spool_batch *batch)
{
    sl_free(batch->recs);
    sl_free(batch->_buf);
    memset(batch, 0, sizeof(*batch));
}

/* Copies one payload into the batch. Pointers are set once the batch is complete, since
 * the buffer may move while it grows. */
static int batch_add(struct ingest_spool_batch *b, const unsigned char *payload, uint32_t len,
                     size_t max_records, size_t max_bytes, struct sl_err *err)
{
    if (b->n == b->_recs_cap) {
        size_t cap = b->_recs_cap > 0 ? b->_recs_cap * 2 : 64;
        struct ingest_spool_rec *recs;

        cap = cap < max_records ? cap : max_records;
        recs = sl_realloc(b->recs, cap * sizeof(*recs));
        if (recs == NULL) {
            return sl_err_set(err, SL_ENOMEM, "no memory for a batch of %zu spool records",
                              cap);
        }
        b->recs = recs;
        b->_recs_cap = cap;
    }
    if (b->_buf_used + len > b->_buf_cap) {
        /* Grows up to max_bytes, or to a single larger first record. */
        size_t limit = b->_buf_used + len > max_bytes ? b->_buf_used + len : max_bytes;
        size_t cap = b->_buf_cap > 0 ? b->_buf_cap * 2 : 64 * 1024;
        unsigned char *buf;

        cap = cap < b->_buf_used + len ? b->_buf_used + len : cap;
        cap = cap < limit ? cap : limit;
        buf = sl_realloc(b->_buf, cap);
        if (buf == NULL) {
            return sl_err_set(err, SL_ENOMEM, "no memory for %zu bytes of spool records", cap);
        }
        b->_buf = buf;
        b->_buf_cap = cap;
    }
    if (len > 0) {
        memcpy(b->_buf + b->_buf_used, payload, len);
    }
    b->recs[b->n].len = len;
    b->n++;
    b->_buf_used += len;
    return 0;
}

/* Moves pos onto the segment that holds it (or the next one when it was deleted or ended)
 * and reports that segment's durable size and whether it is finished. */
static void locate(struct ingest_spool *sp, struct ingest_spool_pos *pos, uint64_t *end,
                   bool *is_sealed)
{
    size_t i;

    pthread_mutex_lock(&sp->lock);
    i = segs_find(sp, pos->seq);
    if (i == sp->n_segs) {
        /* Cannot happen: the newest segment is never deleted and pos never passes it. */
        i = sp->n_segs - 1;
    }
    if (sp->segs[i].seq != pos->seq) {
        *pos = (struct ingest_spool_pos){.seq = sp->segs[i].seq, .offset = 0};
    }
    while (pos->offset >= sp->segs[i].bytes && i + 1 < sp->n_segs) {
        i++;
        *pos = (struct ingest_spool_pos){.seq = sp->segs[i].seq, .offset = 0};
    }
    *end = sp->segs[i].bytes;
    *is_sealed = i + 1 < sp->n_segs;
    pthread_mutex_unlock(&sp->lock);
}

/* Counts a skipped corrupt unit the first time the reader passes it and logs a sample. */
static void note_corrupt(struct ingest_spool *sp, const struct ingest_spool_unit *u)
{
    struct ingest_spool_pos at = {.seq = sp->win.seq, .offset = u->off};
    char name[INGEST_SPOOL_SEG_NAME_BYTES];
    uint64_t n;

    if (pos_cmp(at, sp->high_pos) < 0) {
        return;
    }
    pthread_mutex_lock(&sp->lock);
    n = ++sp->stats.corrupt_records;
    pthread_mutex_unlock(&sp->lock);
    if ((n & (n - 1)) != 0) {
        return;
    }
    ingest_spool_scan_seg_name(name, at.seq);
    if (u->kind == INGEST_SPOOL_UNIT_CORRUPT) {
        sl_log_warn(COMPONENT, "skipped a %" PRIu32 "-byte record with a bad checksum at "
                    "offset %" PRIu64 " of %s/%s (%" PRIu64 " corrupt so far; logged at "
                    "powers of two)", u->len, u->off, sp->dir, name, n);
    }
    else {
        sl_log_warn(COMPONENT, "skipped %" PRIu64 " unreadable bytes at offset %" PRIu64
                    " of %s/%s (%" PRIu64 " corrupt so far; logged at powers of two)",
                    u->next - u->off, u->off, sp->dir, name, n);
    }
}

int ingest_spool_read(struct ingest_spool *sp, struct ingest_spool_batch *batch,
                      size_t max_records, size_t max_bytes, struct sl_err *err)
{
    struct ingest_spool_pos pos = sp->read_pos;
    uint64_t units = sp->read_units;
    uint64_t end = 0;
    bool is_sealed = false;
    size_t off = 0;
    struct ingest_spool_unit u;
    int rc = 0;

    batch->n = 0;
    batch->_buf_used = 0;
    if (max_records == 0 || max_bytes == 0) {
        return sl_err_set(err, SL_EINVAL, "a spool read needs room for at least one record");
    }
    while (batch->n < max_records) {
        if (pos.offset >= end) {
            locate(sp, &pos, &end, &is_sealed);
            if (pos.offset >= end) {
                break;
            }
        }
        rc = ingest_spool_scan_window_use(sp, pos.seq, err);
        if (rc == 0) {
            rc = ingest_spool_scan_next_unit(sp, pos.offset, end, &u, err);
        }
        if (rc != 0) {
            break;
        }
        if (u.kind == INGEST_SPOOL_UNIT_RECORD) {
            if (batch->n > 0 && batch->_buf_used + u.len > max_bytes) {
                break;
            }
            rc = batch_add(batch, u.payload, u.len, max_records, max_bytes, err);
            if (rc != 0) {
                break;
            }
            units++;
        }
        else {
            note_corrupt(sp, &u);
            units += u.kind == INGEST_SPOOL_UNIT_CORRUPT;
        }
        pos.offset = u.next;
    }
    if (rc != 0) {
        batch->n = 0;
        batch->_buf_used = 0;
        return rc;
    }
    /* A batch that ends a finished segment ends at the next one, so committing it lets
     * that segment go. */
    locate(sp, &pos, &end, &is_sealed);
    for (size_t i = 0; i < batch->n; i++) {
        batch->recs[i].data = batch->_buf != NULL ? batch->_buf + off : (const void *)"";
        off += batch->recs[i].len;
    }
    batch->end = pos;
    batch->_end_units = units;
    sp->read_pos = pos;
    sp->read_units = units;
    if (pos_cmp(pos, sp->high_pos) > 0) {
        sp->high_pos = pos;
    }
    return 0;
}

/* Replaces the cursor file: write a temporary, sync it, rename it over, sync the folder. */
static int write_cursor(struct ingest_spool *sp, struct ingest_spool_pos pos, struct sl_err *err)
{
    unsigned char buf[INGEST_SPOOL_CURSOR_BYTES];
    size_t done = 0;
    int fd;
    int rc = 0;

    ingest_spool_scan_encode_cursor(buf, pos);
    fd = openat(sp->dir_fd, CURSOR_TMP_NAME, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return ingest_spool_io_fail(sp, "creating", CURSOR_TMP_NAME, err);
    }
    while (done < sizeof(buf) && rc == 0) {
        ssize_t n = write(fd, buf + done, sizeof(buf) - done);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            rc = ingest_spool_io_fail(sp, "writing", CURSOR_TMP_NAME, err);
        }
        else {
            done += (size_t)n;
        }
    }
    if (rc == 0 && fdatasync(fd) != 0) {
        rc = ingest_spool_io_fail(sp, "syncing", CURSOR_TMP_NAME, err);
    }
    close(fd);
    if (rc == 0 && renameat(sp->dir_fd, CURSOR_TMP_NAME, sp->dir_fd, CURSOR_NAME) != 0) {
        rc = ingest_spool_io_fail(sp, "renaming " CURSOR_TMP_NAME " over", CURSOR_NAME, err);
    }
    if (rc == 0) {
        rc = sync_dir(sp, err);
    }
    return rc;
}

int ingest_spool_commit(struct ingest_spool *sp, const struct ingest_spool_batch *batch,
                        struct sl_err *err)
{
    struct ingest_spool_pos pos = batch->end;
    char name[INGEST_SPOOL_SEG_NAME_BYTES] = "";
    int unlink_errno = 0;
    int c = pos_cmp(pos, sp->committed);
    int rc;

    if (c < 0) {
        return sl_err_set(err, SL_ESTATE, "the batch ends at segment %" PRIu64 " offset %" PRIu64
                          ", before the committed cursor (segment %" PRIu64 " offset %" PRIu64
                          "); commit batches in the order they were read", pos.seq, pos.offset,
                          sp->committed.seq, sp->committed.offset);
    }
    if (c == 0) {
        return 0;
    }
    rc = write_cursor(sp, pos, err);
    if (rc != 0) {
        return rc;
    }
    if (sp->win.fd >= 0 && sp->win.seq < pos.seq) {
        /* Let go of a segment about to be deleted so its space is freed now. */
        ingest_spool_scan_window_close(&sp->win);
    }
    if (pos_cmp(sp->read_pos, pos) < 0) {
        /* Committed after a rewind: no need to read those records again. */
        sp->read_pos = pos;
        sp->read_units = batch->_end_units;
    }
    pthread_mutex_lock(&sp->lock);
    sp->stats.fsyncs += 2;
    sp->committed = pos;
    sp->committed_units = batch->_end_units;
    while (sp->n_segs > 1 && sp->segs[0].seq < pos.seq) {
        ingest_spool_scan_seg_name(name, sp->segs[0].seq);
        if (unlinkat(sp->dir_fd, name, 0) != 0 && errno != ENOENT) {
            unlink_errno = errno;
            break;
        }
        segs_drop_first(sp);
    }
    pthread_mutex_unlock(&sp->lock);
    if (unlink_errno != 0) {
        /* The cursor already moved past it: a leftover costs disk space, never records. */
        sl_log_warn(COMPONENT, "could not delete the committed segment %s/%s: %s; trying again "
                    "at the next commit", sp->dir, name, strerror(unlink_errno));
    }
    return 0;
}

void ingest_spool_rewind(struct ingest_spool *sp)
{
    sp->read_pos = sp->committed;
    pthread_mutex_lock(&sp->lock);
    sp->read_units = sp->committed_units;
    pthread_mutex_unlock(&sp->lock);
}

int ingest_spool_wait(struct ingest_spool *sp, int64_t timeout_ms)
{
    struct timespec deadline;
    bool is_ready;
    int rc = 0;

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    if (timeout_ms > 0) {
        deadline.tv_sec += (time_t)(timeout_ms / 1000);
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&sp->lock);
    while (sp->total_units == sp->read_units && rc == 0 && timeout_ms > 0) {
        rc = pthread_cond_timedwait(&sp->appended, &sp->lock, &deadline);
    }
    is_ready = sp->total_units != sp->read_units;
    pthread_mutex_unlock(&sp->lock);
    return is_ready ? 0 : SL_ETIMEDOUT;
}

void ingest_spool_stats(struct ingest_spool *sp, struct ingest_spool_stats *out)
{
    pthread_mutex_lock(&sp->lock);
    *out = sp->stats;
    out->bytes_on_disk = sp->disk_bytes;
    out->records_pending = sp->total_units - sp->committed_units;
    out->segments = sp->n_segs;
    pthread_mutex_unlock(&sp->lock);
}

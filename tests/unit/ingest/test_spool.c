/* Tests ingest/spool.c: order across segments, rewind, commit and deletion, reopening at the
 * cursor, torn tails, corrupt records in the middle, the size bound, failed writes, failed
 * allocations, a kill -9 during appends, and appends from several threads. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "log.h"
#include "spool.h"
#include "test.h"

#define HDR INGEST_SPOOL_RECORD_HEADER_BYTES
#define PAYLOAD_MAX 320
#define MiB (1024u * 1024u)

struct fixture {
    char *root;  /* temp folder */
    char *dir;   /* the spool folder inside it (created by the spool) */
    struct ingest_spool *sp;
};

static void setup(struct fixture *f, uint64_t max_bytes, uint64_t segment_bytes)
{
    struct sl_err err;

    f->root = test_tmpdir();
    f->dir = test_path(f->root, "spool");
    ASSERT_OK(ingest_spool_open(&f->sp, f->dir, max_bytes, segment_bytes, &err), &err);
}

static void reopen(struct fixture *f, uint64_t max_bytes, uint64_t segment_bytes)
{
    struct sl_err err;

    ingest_spool_close(f->sp);
    f->sp = NULL;
    ASSERT_OK(ingest_spool_open(&f->sp, f->dir, max_bytes, segment_bytes, &err), &err);
}

static void teardown(struct fixture *f)
{
    ingest_spool_close(f->sp);
    test_rmtree(f->root);
    free(f->dir);
    free(f->root);
}

/* Record i's payload: "rec-<i>:" then filler; 16..295 bytes, different for each i. */
static size_t make_payload(char *buf, uint32_t i)
{
    int n = snprintf(buf, PAYLOAD_MAX, "rec-%08u:", (unsigned)i);
    size_t len = 16 + (i * 37u) % 280;

    for (size_t k = (size_t)n; k < len; k++) {
        buf[k] = (char)('a' + (i + k) % 26);
    }
    return len;
}

static size_t disk_size(uint32_t i)
{
    char buf[PAYLOAD_MAX];

    return HDR + make_payload(buf, i);
}

static void check_record(const struct ingest_spool_rec *r, uint32_t i)
{
    char want[PAYLOAD_MAX];
    size_t len = make_payload(want, i);

    if (r->len != len || memcmp(r->data, want, len) != 0) {
        TEST_FAIL("record %u: got %zu bytes \"%.*s\", want %zu bytes \"%.*s\"", (unsigned)i,
                  r->len, (int)(r->len < 40 ? r->len : 40), (const char *)r->data, len,
                  (int)(len < 40 ? len : 40), want);
    }
}

/* Appends records first..first+count-1, per_batch at a time. */
static void append_range(struct ingest_spool *sp, uint32_t first, uint32_t count,
                         uint32_t per_batch)
{
    static char bufs[128][PAYLOAD_MAX];
    struct iovec iov[128];
    struct sl_err err;

    ASSERT_TRUE(per_batch >= 1 && per_batch <= 128);
    for (uint32_t i = 0; i < count; i += per_batch) {
        uint32_t n = count - i < per_batch ? count - i : per_batch;

        for (uint32_t k = 0; k < n; k++) {
            iov[k].iov_base = bufs[k];
            iov[k].iov_len = make_payload(bufs[k], first + i + k);
        }
        ASSERT_OK(ingest_spool_append(sp, iov, n, &err), &err);
    }
}

/* Reads exactly records first..first+count-1, at most max_records per batch, committing
 * each batch when asked. */
static void read_range(struct ingest_spool *sp, uint32_t first, uint32_t count,
                       size_t max_records, bool is_commit)
{
    struct ingest_spool_batch b;
    struct sl_err err;
    uint32_t got = 0;

    ingest_spool_batch_init(&b);
    while (got < count) {
        size_t want = count - got < max_records ? count - got : max_records;

        ASSERT_OK(ingest_spool_read(sp, &b, want, 1 * MiB, &err), &err);
        if (b.n == 0) {
            TEST_FAIL("spool ran dry after %u of %u records", (unsigned)got, (unsigned)count);
        }
        for (size_t i = 0; i < b.n; i++) {
            check_record(&b.recs[i], first + got + (uint32_t)i);
        }
        got += (uint32_t)b.n;
        if (is_commit) {
            ASSERT_OK(ingest_spool_commit(sp, &b, &err), &err);
        }
    }
    ingest_spool_batch_fini(&b);
}

static void expect_empty(struct ingest_spool *sp)
{
    struct ingest_spool_batch b;
    struct sl_err err;

    ingest_spool_batch_init(&b);
    ASSERT_OK(ingest_spool_read(sp, &b, 100, 1 * MiB, &err), &err);
    ASSERT_EQ_INT(b.n, 0);
    ingest_spool_batch_fini(&b);
}

static struct ingest_spool_stats stats_of(struct ingest_spool *sp)
{
    struct ingest_spool_stats st;

    ingest_spool_stats(sp, &st);
    return st;
}

static int count_segment_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    ASSERT_TRUE(d != NULL);
    for (e = readdir(d); e != NULL; e = readdir(d)) {
        n += strncmp(e->d_name, "seg-", 4) == 0;
    }
    closedir(d);
    return n;
}

static char *seg_path(const char *dir, uint64_t seq)
{
    char name[64];

    snprintf(name, sizeof(name), "seg-%016llu.spool", (unsigned long long)seq);
    return test_path(dir, name);
}

static off_t file_size(const char *path)
{
    struct stat st;

    ASSERT_EQ_INT(stat(path, &st), 0);
    return st.st_size;
}

static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    unsigned char c;

    ASSERT_TRUE(fd >= 0);
    ASSERT_EQ_INT(pread(fd, &c, 1, off), 1);
    c ^= 0x5a;
    ASSERT_EQ_INT(pwrite(fd, &c, 1, off), 1);
    close(fd);
}

/* Log lines go to a file while a capture runs. */
struct log_capture {
    char *path;
    int fd;
};

static void capture_start(struct log_capture *c, const char *root)
{
    c->path = test_path(root, "log.txt");
    c->fd = open(c->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    ASSERT_TRUE(c->fd >= 0);
    sl_log_set_fd(c->fd);
}

/* Returns what was logged (caller frees). */
static char *capture_stop(struct log_capture *c)
{
    off_t n;
    char *text;

    sl_log_set_fd(2);
    n = lseek(c->fd, 0, SEEK_END);
    text = calloc(1, (size_t)n + 1);
    ASSERT_TRUE(text != NULL);
    ASSERT_EQ_INT(pread(c->fd, text, (size_t)n, 0), n);
    close(c->fd);
    free(c->path);
    return text;
}

/* ---- cases ---- */

static void test_spool_round_trip_across_segments(void)
{
    struct fixture f;
    struct ingest_spool_stats st;

    setup(&f, 1 * MiB, 1024);
    append_range(f.sp, 0, 200, 3);
    st = stats_of(f.sp);
    ASSERT_EQ_INT(st.records_pending, 200);
    ASSERT_EQ_INT(st.appends, 67);
    ASSERT_EQ_INT(st.records_appended, 200);
    ASSERT_TRUE(st.segments > 10);
    ASSERT_EQ_INT(st.segments, count_segment_files(f.dir));
    ASSERT_TRUE(st.fsyncs >= st.appends);
    /* Every segment stays within segment_bytes (no batch here is larger). */
    for (uint64_t seq = 1; seq <= st.segments; seq++) {
        char *p = seg_path(f.dir, seq);

        ASSERT_TRUE(file_size(p) <= 1024);
        free(p);
    }
    read_range(f.sp, 0, 200, 13, true);
    expect_empty(f.sp);
    st = stats_of(f.sp);
    ASSERT_EQ_INT(st.records_pending, 0);
    ASSERT_EQ_INT(st.corrupt_records, 0);
    /* Appends after draining continue the order. */
    append_range(f.sp, 200, 5, 1);
    read_range(f.sp, 200, 5, 100, true);
    expect_empty(f.sp);
    teardown(&f);
}

static void test_spool_rewind_reads_again(void)
{
    struct fixture f;
    struct ingest_spool_batch b;
    struct sl_err err;

    setup(&f, 1 * MiB, 512);
    append_range(f.sp, 0, 30, 3);
    read_range(f.sp, 0, 10, 4, false);
    ingest_spool_rewind(f.sp);
    read_range(f.sp, 0, 10, 10, true);
    read_range(f.sp, 10, 12, 5, false);
    ingest_spool_rewind(f.sp);
    read_range(f.sp, 10, 20, 20, false);
    ASSERT_EQ_INT(stats_of(f.sp).records_pending, 20);
    ingest_spool_rewind(f.sp);
    /* A batch read before a rewind may still be committed; reading then goes on after it. */
    ingest_spool_batch_init(&b);
    ASSERT_OK(ingest_spool_read(f.sp, &b, 5, 1 * MiB, &err), &err);
    check_record(&b.recs[0], 10);
    ingest_spool_rewind(f.sp);
    ASSERT_OK(ingest_spool_commit(f.sp, &b, &err), &err);
    ASSERT_OK(ingest_spool_commit(f.sp, &b, &err), &err); /* again: nothing to do */
    read_range(f.sp, 15, 15, 100, true);
    /* The old batch now ends before the cursor. */
    ASSERT_EQ_INT(ingest_spool_commit(f.sp, &b, &err), SL_ESTATE);
    ASSERT_CONTAINS(err.msg, "before the committed cursor");
    ingest_spool_batch_fini(&b);
    expect_empty(f.sp);
    teardown(&f);
}

static void test_spool_commit_deletes_old_segments(void)
{
    struct fixture f;
    struct ingest_spool_stats st;
    uint64_t before;
    uint64_t before_segments;

    setup(&f, 1 * MiB, 1024);
    append_range(f.sp, 0, 100, 4);
    st = stats_of(f.sp);
    before = st.bytes_on_disk;
    before_segments = st.segments;
    ASSERT_TRUE(st.segments >= 5);
    /* Reading alone deletes nothing. */
    read_range(f.sp, 0, 60, 60, false);
    ASSERT_EQ_INT(count_segment_files(f.dir), st.segments);
    ingest_spool_rewind(f.sp);
    read_range(f.sp, 0, 60, 60, true);
    st = stats_of(f.sp);
    ASSERT_TRUE(st.segments < before_segments);
    ASSERT_EQ_INT(count_segment_files(f.dir), st.segments);
    ASSERT_TRUE(st.bytes_on_disk < before);
    {
        char *first = seg_path(f.dir, 1);

        ASSERT_TRUE(access(first, F_OK) != 0);
        free(first);
    }
    /* Draining everything leaves only the segment being written. */
    read_range(f.sp, 60, 40, 7, true);
    st = stats_of(f.sp);
    ASSERT_EQ_INT(st.segments, 1);
    ASSERT_EQ_INT(count_segment_files(f.dir), 1);
    ASSERT_EQ_INT(st.records_pending, 0);
    teardown(&f);
}

static void test_spool_reopen_resumes_after_cursor(void)
{
    struct fixture f;
    struct ingest_spool_stats st;

    setup(&f, 1 * MiB, 700);
    append_range(f.sp, 0, 50, 5);
    read_range(f.sp, 0, 17, 6, true);
    read_range(f.sp, 17, 10, 10, false); /* read, not committed: comes again */
    reopen(&f, 1 * MiB, 700);
    st = stats_of(f.sp);
    ASSERT_EQ_INT(st.records_pending, 33);
    ASSERT_EQ_INT(st.torn_tail_bytes_dropped, 0);
    read_range(f.sp, 17, 33, 8, false);
    expect_empty(f.sp);
    /* Nothing committed this time: reopening gives exactly the same records. */
    reopen(&f, 1 * MiB, 700);
    append_range(f.sp, 50, 3, 3);
    ASSERT_EQ_INT(stats_of(f.sp).records_pending, 36);
    read_range(f.sp, 17, 36, 100, true);
    expect_empty(f.sp);
    reopen(&f, 1 * MiB, 700);
    ASSERT_EQ_INT(stats_of(f.sp).records_pending, 0);
    expect_empty(f.sp);
    teardown(&f);
}

/* Writes records 0..4 in one segment, closes, damages the file with `damage` (offs[k] is
 * where record k starts, offs[5] the end), reopens and checks that `kept` records survive
 * and `dropped` bytes went with one warning. */
static void torn_case(void (*damage)(const char *path, const off_t *offs), int kept,
                      off_t dropped)
{
    struct fixture f;
    struct log_capture cap;
    struct ingest_spool_stats st;
    off_t offs[6] = {0};
    char *path;
    char *log;
    char where[64];

    setup(&f, 1 * MiB, 64 * 1024);
    append_range(f.sp, 0, 5, 1);
    for (int k = 1; k <= 5; k++) {
        offs[k] = offs[k - 1] + (off_t)disk_size((uint32_t)k - 1);
    }
    ingest_spool_close(f.sp);
    f.sp = NULL;
    path = seg_path(f.dir, 1);
    ASSERT_EQ_INT(file_size(path), offs[5]);
    damage(path, offs);
    capture_start(&cap, f.root);
    reopen(&f, 1 * MiB, 64 * 1024);
    log = capture_stop(&cap);
    st = stats_of(f.sp);
    ASSERT_EQ_INT(st.torn_tail_bytes_dropped, dropped);
    ASSERT_EQ_INT(st.records_pending, kept);
    ASSERT_EQ_INT(file_size(path), offs[kept]);
    ASSERT_CONTAINS(log, "torn tail");
    ASSERT_CONTAINS(log, "seg-0000000000000001.spool");
    snprintf(where, sizeof(where), "%lld bytes at offset %lld", (long long)dropped,
             (long long)offs[kept]);
    ASSERT_CONTAINS(log, where);
    free(log);
    /* Appends go on right after the last whole record. */
    append_range(f.sp, (uint32_t)kept, 3, 3);
    read_range(f.sp, 0, (uint32_t)kept + 3, 100, true);
    expect_empty(f.sp);
    reopen(&f, 1 * MiB, 64 * 1024);
    ASSERT_EQ_INT(stats_of(f.sp).torn_tail_bytes_dropped, 0);
    free(path);
    teardown(&f);
}

static void cut_mid_header(const char *path, const off_t *offs)
{
    ASSERT_EQ_INT(truncate(path, offs[4] + 7), 0);
}

static void cut_mid_payload(const char *path, const off_t *offs)
{
    ASSERT_EQ_INT(truncate(path, offs[4] + HDR + 3), 0);
}

static void add_garbage(const char *path, const off_t *offs)
{
    int fd = open(path, O_WRONLY | O_APPEND);
    unsigned char junk[100];

    for (size_t i = 0; i < sizeof(junk); i++) {
        junk[i] = (unsigned char)(i * 91 + 7);
    }
    junk[0] = 'S'; /* starts like a header */
    ASSERT_TRUE(fd >= 0);
    ASSERT_EQ_INT(write(fd, junk, sizeof(junk)), sizeof(junk));
    close(fd);
    (void)offs;
}

static void bad_checksum_at_end(const char *path, const off_t *offs)
{
    flip_byte(path, offs[4] + HDR + 5);
}

static void test_spool_torn_tail_mid_header(void)
{
    torn_case(cut_mid_header, 4, 7);
}

static void test_spool_torn_tail_mid_payload(void)
{
    torn_case(cut_mid_payload, 4, HDR + 3);
}

static void test_spool_torn_tail_garbage(void)
{
    torn_case(add_garbage, 5, 100);
}

static void test_spool_torn_tail_bad_checksum(void)
{
    torn_case(bad_checksum_at_end, 4, (off_t)disk_size(4));
}

static void test_spool_corrupt_record_in_middle_is_skipped(void)
{
    struct fixture f;
    struct log_capture cap;
    struct ingest_spool_batch b;
    struct sl_err err;
    char *path;
    char *log;
    off_t off = 0;

    setup(&f, 1 * MiB, 64 * 1024);
    append_range(f.sp, 0, 8, 2);
    for (uint32_t i = 0; i < 3; i++) {
        off += (off_t)disk_size(i);
    }
    /* Bit rot in record 3's payload, under a live spool. */
    path = seg_path(f.dir, 1);
    flip_byte(path, off + HDR + 2);
    capture_start(&cap, f.root);
    ingest_spool_batch_init(&b);
    ASSERT_OK(ingest_spool_read(f.sp, &b, 100, 1 * MiB, &err), &err);
    log = capture_stop(&cap);
    ASSERT_EQ_INT(b.n, 7);
    for (uint32_t i = 0; i < 7; i++) {
        check_record(&b.recs[i], i < 3 ? i : i + 1);
    }
    ASSERT_EQ_INT(stats_of(f.sp).corrupt_records, 1);
    ASSERT_CONTAINS(log, "bad checksum");
    ASSERT_CONTAINS(log, "seg-0000000000000001.spool");
    free(log);
    /* Read again after a rewind: skipped again but counted once. */
    ingest_spool_rewind(f.sp);
    ASSERT_OK(ingest_spool_read(f.sp, &b, 100, 1 * MiB, &err), &err);
    ASSERT_EQ_INT(b.n, 7);
    ASSERT_EQ_INT(stats_of(f.sp).corrupt_records, 1);
    ingest_spool_batch_fini(&b);
    /* At open a bad record followed by good ones is no torn tail: nothing is truncated. */
    reopen(&f, 1 * MiB, 64 * 1024);
    ASSERT_EQ_INT(stats_of(f.sp).torn_tail_bytes_dropped, 0);
    ASSERT_EQ_INT(stats_of(f.sp).records_pending, 8);
    read_range(f.sp, 0, 3, 3, true);
    read_range(f.sp, 4, 4, 100, true);
    ASSERT_EQ_INT(stats_of(f.sp).records_pending, 0);
    expect_empty(f.sp);
    free(path);
    teardown(&f);
}

static void test_spool_corrupt_header_in_middle_resyncs(void)
{
    struct fixture f;
    struct ingest_spool_stats st;
    char *path;
    off_t off = 0;

    setup(&f, 1 * MiB, 2048);
    append_range(f.sp, 0, 40, 2);
    ASSERT_TRUE(stats_of(f.sp).segments >= 3);
    /* Damage the length field of record 2 in the first (finished) segment: its length can
     * no longer be trusted, so the reader must find record 3 by searching. */
    for (uint32_t i = 0; i < 2; i++) {
        off += (off_t)disk_size(i);
    }
    path = seg_path(f.dir, 1);
    flip_byte(path, off + 5);
    reopen(&f, 1 * MiB, 2048);
    st = stats_of(f.sp);
    ASSERT_EQ_INT(st.records_pending, 39);
    ASSERT_EQ_INT(st.torn_tail_bytes_dropped, 0);
    read_range(f.sp, 0, 2, 100, true);
    read_range(f.sp, 3, 37, 100, true);
    expect_empty(f.sp);
    st = stats_of(f.sp);
    ASSERT_EQ_INT(st.corrupt_records, 1);
    ASSERT_EQ_INT(st.records_pending, 0);
    free(path);
    teardown(&f);
}

static void test_spool_full_returns_busy_and_loses_nothing(void)
{
    struct fixture f;
    struct sl_err err;
    char buf[100];
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
    struct ingest_spool_stats st;
    uint32_t accepted = 0;
    uint32_t n_read = 0;
    int rc;

    /* 116 bytes a record: 8 per 1 KiB segment, 35 fit 4 KiB. */
    setup(&f, 4096, 1024);
    for (;;) {
        snprintf(buf, sizeof(buf), "%099u", (unsigned)accepted);
        rc = ingest_spool_append(f.sp, &iov, 1, &err);
        if (rc != 0) {
            break;
        }
        accepted++;
    }
    ASSERT_EQ_INT(rc, SL_EBUSY);
    ASSERT_EQ_INT(accepted, 35);
    ASSERT_CONTAINS(err.msg, "is full");
    st = stats_of(f.sp);
    ASSERT_EQ_INT(st.full_rejections, 1);
    ASSERT_TRUE(st.bytes_on_disk <= 4096);
    /* Reading without committing frees nothing. */
    {
        struct ingest_spool_batch b;

        ingest_spool_batch_init(&b);
        ASSERT_OK(ingest_spool_read(f.sp, &b, 10, 1 * MiB, &err), &err);
        ASSERT_EQ_INT(ingest_spool_append(f.sp, &iov, 1, &err), SL_EBUSY);
        /* Committing 10 records frees the first segment (8 records). */
        ASSERT_OK(ingest_spool_commit(f.sp, &b, &err), &err);
        n_read = 10;
        ingest_spool_batch_fini(&b);
    }
    for (;;) {
        snprintf(buf, sizeof(buf), "%099u", (unsigned)accepted);
        rc = ingest_spool_append(f.sp, &iov, 1, &err);
        if (rc != 0) {
            break;
        }
        accepted++;
    }
    ASSERT_EQ_INT(rc, SL_EBUSY);
    ASSERT_EQ_INT(accepted, 35 + 8);
    /* Drain: every accepted record, in order, none lost; then the spool takes more. */
    {
        struct ingest_spool_batch b;

        ingest_spool_batch_init(&b);
        for (;;) {
            ASSERT_OK(ingest_spool_read(f.sp, &b, 6, 1 * MiB, &err), &err);
            if (b.n == 0) {
                break;
            }
            for (size_t i = 0; i < b.n; i++) {
                char want[100];

                snprintf(want, sizeof(want), "%099u", (unsigned)n_read);
                ASSERT_EQ_INT(b.recs[i].len, 100);
                ASSERT_TRUE(memcmp(b.recs[i].data, want, 100) == 0);
                n_read++;
            }
            ASSERT_OK(ingest_spool_commit(f.sp, &b, &err), &err);
        }
        ingest_spool_batch_fini(&b);
    }
    ASSERT_EQ_INT(n_read, accepted);
    st = stats_of(f.sp);
    ASSERT_EQ_INT(st.records_pending, 0);
    ASSERT_TRUE(st.bytes_on_disk <= 1024);
    /* A drained spool always has room for the largest batch allowed (half of it). */
    {
        static char big[2048 - 2 * HDR];
        struct iovec two[2] = {{.iov_base = big, .iov_len = sizeof(big) / 2},
                               {.iov_base = big, .iov_len = sizeof(big) / 2}};

        ASSERT_OK(ingest_spool_append(f.sp, two, 2, &err), &err);
        ASSERT_EQ_INT(ingest_spool_append(f.sp, two, 2, &err), SL_EBUSY);
    }
    teardown(&f);
}

static void test_spool_failed_write_leaves_no_partial_record(void)
{
    struct fixture f;
    struct ingest_spool_stats st;
    struct sl_err err;
    char bufs[5][PAYLOAD_MAX];
    struct iovec iov[5];
    char *path;
    off_t size;

    setup(&f, 1 * MiB, 64 * 1024);
    append_range(f.sp, 0, 3, 3);
    path = seg_path(f.dir, 1);
    size = file_size(path);
    for (int k = 0; k < 5; k++) {
        iov[k].iov_base = bufs[k];
        iov[k].iov_len = make_payload(bufs[k], 1000 + (uint32_t)k);
    }
    ingest_spool_inject_fault(f.sp, INGEST_SPOOL_FAULT_WRITE);
    ASSERT_EQ_INT(ingest_spool_append(f.sp, iov, 5, &err), SL_EIO);
    ASSERT_CONTAINS(err.msg, "writing 5 records");
    ASSERT_CONTAINS(err.msg, "seg-0000000000000001.spool");
    ASSERT_CONTAINS(err.msg, "Input/output error");
    ASSERT_EQ_INT(file_size(path), size);
    ingest_spool_inject_fault(f.sp, INGEST_SPOOL_FAULT_SYNC);
    ASSERT_EQ_INT(ingest_spool_append(f.sp, iov, 5, &err), SL_EIO);
    ASSERT_CONTAINS(err.msg, "syncing");
    ASSERT_EQ_INT(file_size(path), size);
    st = stats_of(f.sp);
    ASSERT_EQ_INT(st.append_failures, 2);
    ASSERT_EQ_INT(st.records_pending, 3);
    ASSERT_EQ_INT(st.bytes_on_disk, size);
    /* The spool goes on: the next append lands right after record 2. */
    append_range(f.sp, 3, 2, 2);
    read_range(f.sp, 0, 5, 100, false);
    expect_empty(f.sp);
    reopen(&f, 1 * MiB, 64 * 1024);
    ASSERT_EQ_INT(stats_of(f.sp).torn_tail_bytes_dropped, 0);
    read_range(f.sp, 0, 5, 100, true);
    expect_empty(f.sp);
    free(path);
    teardown(&f);
}

static void test_spool_failed_undo_stops_appends(void)
{
    struct fixture f;
    struct sl_err err;
    struct log_capture cap;
    char buf[PAYLOAD_MAX];
    struct iovec iov = {.iov_base = buf};
    char *log;

    setup(&f, 1 * MiB, 64 * 1024);
    append_range(f.sp, 0, 4, 2);
    iov.iov_len = make_payload(buf, 4);
    ingest_spool_inject_fault(f.sp, INGEST_SPOOL_FAULT_STUCK);
    capture_start(&cap, f.root);
    ASSERT_EQ_INT(ingest_spool_append(f.sp, &iov, 1, &err), SL_EIO);
    log = capture_stop(&cap);
    ASSERT_CONTAINS(log, "could not truncate");
    free(log);
    ASSERT_EQ_INT(ingest_spool_append(f.sp, &iov, 1, &err), SL_EIO);
    ASSERT_CONTAINS(err.msg, "restart");
    /* What was durable is still delivered; the half-written record is not. */
    read_range(f.sp, 0, 4, 100, true);
    expect_empty(f.sp);
    /* Reopening drops the partial record as a torn tail and takes records again. */
    reopen(&f, 1 * MiB, 64 * 1024);
    ASSERT_TRUE(stats_of(f.sp).torn_tail_bytes_dropped > 0);
    append_range(f.sp, 4, 2, 2);
    read_range(f.sp, 4, 2, 100, true);
    expect_empty(f.sp);
    teardown(&f);
}

static void test_spool_allocation_failures(void)
{
    struct fixture f;
    struct ingest_spool *sp = NULL;
    struct ingest_spool_batch b;
    struct sl_err err;
    static char bufs[100][PAYLOAD_MAX];
    struct iovec iov[100];
    int rc = -1;

    setup(&f, 1 * MiB, 1024);
    append_range(f.sp, 0, 30, 3);
    ingest_spool_close(f.sp);
    f.sp = NULL;
    /* Fail each allocation of open in turn: a clean SL_ENOMEM and no leak, every time. */
    for (long i = 0; rc != 0; i++) {
        sl_alloc_fail_after(i);
        rc = ingest_spool_open(&sp, f.dir, 1 * MiB, 1024, &err);
        sl_alloc_fail_after(-1);
        if (rc != 0) {
            ASSERT_EQ_INT(rc, SL_ENOMEM);
            ASSERT_TRUE(sp == NULL);
            ASSERT_TRUE(i < 100);
        }
    }
    f.sp = sp;
    ASSERT_EQ_INT(stats_of(f.sp).records_pending, 30);
    /* A failed read leaves the read position alone. */
    ingest_spool_batch_init(&b);
    sl_alloc_fail_after(0);
    rc = ingest_spool_read(f.sp, &b, 10, 1 * MiB, &err);
    sl_alloc_fail_after(-1);
    ASSERT_EQ_INT(rc, SL_ENOMEM);
    ASSERT_EQ_INT(b.n, 0);
    ingest_spool_batch_fini(&b);
    /* A batch of more than 64 records allocates its headers; failing that writes nothing. */
    for (uint32_t k = 0; k < 100; k++) {
        iov[k].iov_base = bufs[k];
        iov[k].iov_len = make_payload(bufs[k], 30 + k);
    }
    sl_alloc_fail_after(0);
    rc = ingest_spool_append(f.sp, iov, 100, &err);
    sl_alloc_fail_after(-1);
    ASSERT_EQ_INT(rc, SL_ENOMEM);
    ASSERT_EQ_INT(stats_of(f.sp).records_pending, 30);
    ASSERT_OK(ingest_spool_append(f.sp, iov, 100, &err), &err);
    read_range(f.sp, 0, 130, 17, true);
    expect_empty(f.sp);
    teardown(&f);
}

static void test_spool_rejects_bad_input(void)
{
    struct fixture f;
    struct ingest_spool *other = NULL;
    struct ingest_spool_batch b;
    struct sl_err err;
    struct iovec iov = {.iov_base = NULL, .iov_len = INGEST_SPOOL_RECORD_MAX_BYTES + 1};

    setup(&f, 64 * 1024, 4096);
    ASSERT_EQ_INT(ingest_spool_open(&other, f.dir, 1000, 600, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "half");
    ASSERT_EQ_INT(ingest_spool_open(&other, f.dir, 1000, 10, &err), SL_EINVAL);
    ASSERT_EQ_INT(ingest_spool_open(&other, "", 1000, 100, &err), SL_EINVAL);
    /* One process per folder. */
    ASSERT_EQ_INT(ingest_spool_open(&other, f.dir, 64 * 1024, 4096, &err), SL_EBUSY);
    ASSERT_CONTAINS(err.msg, "in use");
    ASSERT_TRUE(other == NULL);
    {
        char *missing = test_path(f.root, "no/such/parent");

        ASSERT_EQ_INT(ingest_spool_open(&other, missing, 64 * 1024, 4096, &err), SL_EIO);
        ASSERT_CONTAINS(err.msg, "no/such/parent");
        ASSERT_CONTAINS(err.msg, "No such file");
        free(missing);
    }
    ASSERT_EQ_INT(ingest_spool_append(f.sp, &iov, 1, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "more than");
    {
        static char half[32 * 1024];
        struct iovec big = {.iov_base = half, .iov_len = sizeof(half)};

        ASSERT_EQ_INT(ingest_spool_append(f.sp, &big, 1, &err), SL_EINVAL);
        ASSERT_CONTAINS(err.msg, "half");
    }
    ASSERT_OK(ingest_spool_append(f.sp, NULL, 0, &err), &err);
    ingest_spool_batch_init(&b);
    ASSERT_EQ_INT(ingest_spool_read(f.sp, &b, 0, 100, &err), SL_EINVAL);
    ASSERT_EQ_INT(ingest_spool_read(f.sp, &b, 10, 0, &err), SL_EINVAL);
    ingest_spool_batch_fini(&b);
    ASSERT_EQ_INT(stats_of(f.sp).records_pending, 0);
    ASSERT_EQ_INT(stats_of(f.sp).fsyncs, 1); /* the first segment's folder sync only */
    ingest_spool_close(NULL);
    teardown(&f);
}

static void test_spool_large_record_comes_alone(void)
{
    struct fixture f;
    struct ingest_spool_batch b;
    struct sl_err err;
    static char big[20000];
    char small[PAYLOAD_MAX];
    struct iovec iov[3];

    setup(&f, 1 * MiB, 4096);
    memset(big, 'x', sizeof(big));
    iov[0] = (struct iovec){.iov_base = small, .iov_len = make_payload(small, 0)};
    iov[1] = (struct iovec){.iov_base = big, .iov_len = sizeof(big)};
    iov[2] = (struct iovec){.iov_base = small, .iov_len = 0};
    ASSERT_OK(ingest_spool_append(f.sp, iov, 3, &err), &err);
    ingest_spool_batch_init(&b);
    ASSERT_OK(ingest_spool_read(f.sp, &b, 100, 1000, &err), &err);
    ASSERT_EQ_INT(b.n, 1);
    check_record(&b.recs[0], 0);
    ASSERT_OK(ingest_spool_read(f.sp, &b, 100, 1000, &err), &err);
    ASSERT_EQ_INT(b.n, 1);
    ASSERT_EQ_INT(b.recs[0].len, sizeof(big));
    ASSERT_TRUE(memcmp(b.recs[0].data, big, sizeof(big)) == 0);
    ASSERT_OK(ingest_spool_read(f.sp, &b, 100, 1000, &err), &err);
    ASSERT_EQ_INT(b.n, 1);
    ASSERT_EQ_INT(b.recs[0].len, 0); /* empty payloads are records too */
    ASSERT_OK(ingest_spool_commit(f.sp, &b, &err), &err);
    ASSERT_OK(ingest_spool_read(f.sp, &b, 100, 1000, &err), &err);
    ASSERT_EQ_INT(b.n, 0);
    ingest_spool_batch_fini(&b);
    teardown(&f);
}

static void test_spool_damaged_cursor_replays_everything(void)
{
    struct fixture f;
    struct log_capture cap;
    char *cursor;
    char *log;

    setup(&f, 1 * MiB, 64 * 1024);
    append_range(f.sp, 0, 20, 4);
    read_range(f.sp, 0, 5, 5, true);
    ingest_spool_close(f.sp);
    f.sp = NULL;
    cursor = test_path(f.dir, "cursor");
    ASSERT_EQ_INT(file_size(cursor), 28);
    flip_byte(cursor, 12);
    capture_start(&cap, f.root);
    reopen(&f, 1 * MiB, 64 * 1024);
    log = capture_stop(&cap);
    ASSERT_CONTAINS(log, "cursor");
    ASSERT_CONTAINS(log, "damaged");
    free(log);
    /* At least once: the committed records come again rather than anything being lost. */
    ASSERT_EQ_INT(stats_of(f.sp).records_pending, 20);
    read_range(f.sp, 0, 20, 100, true);
    expect_empty(f.sp);
    free(cursor);
    teardown(&f);
}

/* ---- crash and threads ---- */

#define CRASH_CYCLES 3
#define CRASH_MIN_ACKS 200u

/* The child: opens the spool (recovering it), appends records numbered from `first` in
 * batches of 1..7 and, after each append returned, writes the batch's last number to fd.
 * Runs until killed. */
static void crash_child(const char *dir, uint32_t first, int fd)
{
    static char bufs[7][PAYLOAD_MAX];
    struct ingest_spool *sp = NULL;
    struct iovec iov[7];
    struct sl_err err;
    uint32_t next = first;

    if (ingest_spool_open(&sp, dir, 256 * MiB, 32 * 1024, &err) != 0) {
        fprintf(stderr, "child: %s\n", err.msg);
        _exit(3);
    }
    for (uint32_t round = 0;; round++) {
        uint32_t n = 1 + round % 7;
        uint32_t last;

        for (uint32_t k = 0; k < n; k++) {
            iov[k].iov_base = bufs[k];
            iov[k].iov_len = make_payload(bufs[k], next + k);
        }
        if (ingest_spool_append(sp, iov, n, &err) != 0) {
            fprintf(stderr, "child: %s\n", err.msg);
            _exit(4);
        }
        next += n;
        last = next - 1;
        if (write(fd, &last, sizeof(last)) != (ssize_t)sizeof(last)) {
            _exit(5);
        }
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads whole acks from fd into *acked (the highest acknowledged number + 1). Returns false
 * at end of file. */
static bool drain_acks(int fd, uint32_t *acked)
{
    uint32_t v[256];
    ssize_t n = read(fd, v, sizeof(v));

    if (n <= 0) {
        return false;
    }
    ASSERT_EQ_INT(n % (ssize_t)sizeof(uint32_t), 0);
    *acked = v[n / (ssize_t)sizeof(uint32_t) - 1] + 1;
    return true;
}

/* Runs a child appending from `first` until at least CRASH_MIN_ACKS more acks came back,
 * kills it with SIGKILL and returns how many records were acknowledged in all. */
static uint32_t run_and_kill(const char *dir, uint32_t first)
{
    int64_t deadline = now_ms() + 60000;
    uint32_t acked = first;
    int status = 0;
    int fds[2];
    pid_t pid;

    ASSERT_EQ_INT(pipe(fds), 0);
    pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        crash_child(dir, first, fds[1]);
    }
    close(fds[1]);
    while (acked < first + CRASH_MIN_ACKS) {
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        int64_t left = deadline - now_ms();

        if (left <= 0) {
            kill(pid, SIGKILL);
            TEST_FAIL("only %u records acknowledged before the deadline", (unsigned)acked);
        }
        if (poll(&p, 1, (int)left) > 0 && !drain_acks(fds[0], &acked)) {
            TEST_FAIL("the child died early after %u acks", (unsigned)acked);
        }
    }
    ASSERT_EQ_INT(kill(pid, SIGKILL), 0);
    ASSERT_EQ_INT(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    while (drain_acks(fds[0], &acked)) {
    }
    close(fds[0]);
    return acked;
}

static void test_spool_replays_after_crash(void)
{
    struct fixture f;
    struct ingest_spool_batch b;
    struct ingest_spool_stats st;
    struct sl_err err;
    uint32_t committed = 0; /* records before the cursor */
    uint32_t found = 0;     /* records in the spool */

    f.root = test_tmpdir();
    f.dir = test_path(f.root, "spool");
    f.sp = NULL;
    ingest_spool_batch_init(&b);
    for (int cycle = 0; cycle < CRASH_CYCLES; cycle++) {
        uint32_t acked = run_and_kill(f.dir, found);
        uint32_t n = committed;

        /* Every acknowledged record is there once and in order after the cursor;
         * unacknowledged ones may follow, but only as the next numbers. */
        ASSERT_OK(ingest_spool_open(&f.sp, f.dir, 256 * MiB, 32 * 1024, &err), &err);
        st = stats_of(f.sp);
        for (;;) {
            ASSERT_OK(ingest_spool_read(f.sp, &b, 97, 1 * MiB, &err), &err);
            if (b.n == 0) {
                break;
            }
            for (size_t i = 0; i < b.n; i++) {
                check_record(&b.recs[i], n++);
            }
            /* Commit about half, so the next cycle re-reads the rest after its crash. */
            if (n - committed < (acked - committed) / 2) {
                ASSERT_OK(ingest_spool_commit(f.sp, &b, &err), &err);
                committed += (uint32_t)b.n;
            }
        }
        ASSERT_TRUE(n >= acked);
        ASSERT_EQ_INT(n - committed, stats_of(f.sp).records_pending);
        ASSERT_EQ_INT(stats_of(f.sp).corrupt_records, 0);
        fprintf(stderr, "   cycle %d: acknowledged %u, found %u, committed %u, torn tail "
                "bytes dropped %llu\n", cycle, (unsigned)acked, (unsigned)n,
                (unsigned)committed, (unsigned long long)st.torn_tail_bytes_dropped);
        found = n;
        ingest_spool_close(f.sp);
        f.sp = NULL;
    }
    ingest_spool_batch_fini(&b);
    /* And the recovered spool takes records again. */
    ASSERT_OK(ingest_spool_open(&f.sp, f.dir, 256 * MiB, 32 * 1024, &err), &err);
    append_range(f.sp, found, 10, 10);
    read_range(f.sp, committed, found + 10 - committed, 100, true);
    expect_empty(f.sp);
    teardown(&f);
}

#define MT_WRITERS 4
#define MT_APPENDS 150

struct mt_writer {
    struct ingest_spool *sp;
    uint32_t id;
    uint32_t sent;
};

static void *mt_write(void *arg)
{
    struct mt_writer *w = arg;
    char bufs[4][64];
    struct iovec iov[4];
    struct sl_err err;

    for (uint32_t j = 0; j < MT_APPENDS; j++) {
        uint32_t n = 1 + j % 4;

        for (uint32_t k = 0; k < n; k++) {
            int len = snprintf(bufs[k], sizeof(bufs[k]), "t%u-%06u-%.*s", (unsigned)w->id,
                               (unsigned)(w->sent + k), (int)((w->sent + k) % 30),
                               "..............................");

            iov[k] = (struct iovec){.iov_base = bufs[k], .iov_len = (size_t)len};
        }
        ASSERT_OK(ingest_spool_append(w->sp, iov, n, &err), &err);
        w->sent += n;
    }
    return NULL;
}

static void test_spool_concurrent_appends(void)
{
    struct fixture f;
    struct mt_writer writers[MT_WRITERS];
    pthread_t threads[MT_WRITERS];
    uint32_t next[MT_WRITERS] = {0};
    uint32_t total = 0, expected = 0;
    struct ingest_spool_batch b;
    struct ingest_spool_stats st;
    struct sl_err err;
    int64_t deadline = now_ms() + 120000;

    setup(&f, 64 * MiB, 4096);
    for (uint32_t t = 0; t < MT_WRITERS; t++) {
        writers[t] = (struct mt_writer){.sp = f.sp, .id = t};
        ASSERT_EQ_INT(pthread_create(&threads[t], NULL, mt_write, &writers[t]), 0);
    }
    for (uint32_t j = 0; j < MT_APPENDS; j++) {
        expected += MT_WRITERS * (1 + j % 4);
    }
    /* This thread is the reader: it drains while the writers write. */
    ingest_spool_batch_init(&b);
    while (total < expected) {
        int rc = ingest_spool_wait(f.sp, 200);

        ASSERT_TRUE(now_ms() < deadline);
        if (rc == SL_ETIMEDOUT) {
            continue;
        }
        ASSERT_OK(rc, NULL);
        ASSERT_OK(ingest_spool_read(f.sp, &b, 50, 64 * 1024, &err), &err);
        for (size_t i = 0; i < b.n; i++) {
            unsigned t = 0, seq = 0;
            char got[64];
            char want[64];

            /* Records are not NUL-terminated. */
            ASSERT_TRUE(b.recs[i].len < sizeof(got));
            memcpy(got, b.recs[i].data, b.recs[i].len);
            got[b.recs[i].len] = '\0';
            ASSERT_EQ_INT(sscanf(got, "t%u-%06u-", &t, &seq), 2);
            ASSERT_TRUE(t < MT_WRITERS);
            ASSERT_EQ_INT(seq, next[t]);
            snprintf(want, sizeof(want), "t%u-%06u-%.*s", t, seq, (int)(seq % 30),
                     "..............................");
            ASSERT_EQ_INT(b.recs[i].len, strlen(want));
            ASSERT_TRUE(memcmp(b.recs[i].data, want, b.recs[i].len) == 0);
            next[t]++;
            total++;
        }
        ASSERT_OK(ingest_spool_commit(f.sp, &b, &err), &err);
    }
    ingest_spool_batch_fini(&b);
    for (uint32_t t = 0; t < MT_WRITERS; t++) {
        ASSERT_EQ_INT(pthread_join(threads[t], NULL), 0);
        ASSERT_EQ_INT(next[t], writers[t].sent);
    }
    ASSERT_EQ_INT(total, expected);
    expect_empty(f.sp);
    ASSERT_EQ_INT(ingest_spool_wait(f.sp, 0), SL_ETIMEDOUT);
    st = stats_of(f.sp);
    ASSERT_EQ_INT(st.records_pending, 0);
    ASSERT_EQ_INT(st.appends, MT_WRITERS * MT_APPENDS);
    ASSERT_EQ_INT(st.segments, 1);
    ASSERT_EQ_INT(count_segment_files(f.dir), 1);
    teardown(&f);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_spool_round_trip_across_segments),
        TEST_CASE(test_spool_rewind_reads_again),
        TEST_CASE(test_spool_commit_deletes_old_segments),
        TEST_CASE(test_spool_reopen_resumes_after_cursor),
        TEST_CASE(test_spool_torn_tail_mid_header),
        TEST_CASE(test_spool_torn_tail_mid_payload),
        TEST_CASE(test_spool_torn_tail_garbage),
        TEST_CASE(test_spool_torn_tail_bad_checksum),
        TEST_CASE(test_spool_corrupt_record_in_middle_is_skipped),
        TEST_CASE(test_spool_corrupt_header_in_middle_resyncs),
        TEST_CASE(test_spool_full_returns_busy_and_loses_nothing),
        TEST_CASE(test_spool_failed_write_leaves_no_partial_record),
        TEST_CASE(test_spool_failed_undo_stops_appends),
        TEST_CASE(test_spool_allocation_failures),
        TEST_CASE(test_spool_rejects_bad_input),
        TEST_CASE(test_spool_large_record_comes_alone),
        TEST_CASE(test_spool_damaged_cursor_replays_everything),
        TEST_CASE(test_spool_replays_after_crash),
        TEST_CASE(test_spool_concurrent_appends),
        {NULL, NULL},
    };
    return test_main(argc, argv, cases);
}

/*
 * The edge's durable disk spool: an append-only, checksummed, fsync'ed queue of opaque
 * records in a folder of its own. The edge appends accepted events here when Kafka is
 * unreachable (and always when no broker is configured); one reader thread (the Kafka
 * replayer, or the in-process loader) drains it in order and commits a cursor once the
 * records are delivered. Delivery is at least once: after a crash, everything after the
 * committed cursor is read again. What a payload holds (key, headers, event) is the
 * caller's business; this module never looks inside.
 *
 * On disk:
 * - Segment files `seg-<16-digit sequence>.spool`, written in sequence order. An append
 *   goes to the newest segment; a new one starts when the batch would push the current one
 *   past segment_bytes (a batch never spans two segments, so one larger than segment_bytes
 *   gets a segment of its own). Creating a segment syncs the folder.
 * - A record is a 16-byte header and the payload. The header holds four little-endian
 *   u32: magic "SLSP", payload length, CRC32 (zlib) of the payload, CRC32 of the first 12
 *   header bytes. The header's own CRC makes the length trustworthy: a damaged payload is
 *   skipped by its length, and a damaged header makes the reader search forward for the
 *   next record whose header and payload both check out, instead of jumping to a bogus
 *   offset.
 * - `cursor`: the committed read position, 28 bytes: magic "SLCU", version 1, segment
 *   sequence (u64), offset (u64), CRC32 of the first 24 bytes; little-endian. Replaced
 *   atomically (write cursor.tmp, fsync, rename, fsync the folder). A damaged cursor
 *   replays from the oldest segment (at least once, never lost).
 *
 * Crash safety: append returns only after one fdatasync of the whole batch, so a record
 * that was acknowledged is whole on disk. Whatever follows the last whole record of the
 * newest segment at open (short header, short payload, bad magic, bad checksum) was never
 * acknowledged: it is truncated away with one warning. A bad record in the middle of a
 * segment (bit rot) does not block the ones after it: the reader skips it, counts it in
 * corrupt_records and logs a sampled warning (at the 1st, 2nd, 4th, 8th, ... one).
 *
 * Bounds: the bytes of every segment still on disk, including read-and-committed bytes of
 * the segment the cursor is in, never exceed max_bytes; an append that would pass it is
 * refused with SL_EBUSY (the edge answers 503 + Retry-After). segment_bytes is at most half
 * of max_bytes and a batch at most half of max_bytes, so a drained spool always has room.
 * A folder is used by one process at a time (flock on the folder).
 *
 * Threads: append, stats and inject_fault from any thread (one mutex; an append holds it
 * across its write and fdatasync, so appends are serialised). read, commit, rewind and
 * wait from one reader thread only. open and close with no other call in flight.
 */
#ifndef SLUICE_INGEST_SPOOL_H
#define SLUICE_INGEST_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "err.h"

/* Bytes of a record's header on disk (add to each payload when sizing a spool). */
#define INGEST_SPOOL_RECORD_HEADER_BYTES 16
/* Largest payload one record may carry. */
#define INGEST_SPOOL_RECORD_MAX_BYTES (16u * 1024 * 1024)
/* Smallest segment_bytes accepted (tests use tiny segments; production uses tens of MB). */
#define INGEST_SPOOL_MIN_SEGMENT_BYTES 64

struct ingest_spool;

/* A place in the spool: a byte offset in one segment. Ordered by (seq, offset). */
struct ingest_spool_pos {
    uint64_t seq;    /* segment sequence number */
    uint64_t offset; /* byte offset of a record boundary in that segment */
};

/* One record handed out by ingest_spool_read. */
struct ingest_spool_rec {
    const void *data; /* payload; points into the batch's buffer */
    size_t len;       /* payload bytes */
};

/*
 * A batch of records read from the spool. Caller-provided storage: set up with
 * ingest_spool_batch_init, reused across reads, released with ingest_spool_batch_fini.
 * Fields without an underscore are public and read-only; the rest are private.
 */
struct ingest_spool_batch {
    struct ingest_spool_rec *recs; /* n records in spool order, valid until the next read
                                      into this batch or its fini */
    size_t n;
    struct ingest_spool_pos end;   /* position after the last record read */
    uint64_t _end_units;           /* private: records passed since open, at end */
    unsigned char *_buf;           /* private: payload bytes, packed */
    size_t _buf_used;
    size_t _buf_cap;
    size_t _recs_cap;
};

/* Counters for metrics and tests. */
struct ingest_spool_stats {
    uint64_t bytes_on_disk;           /* sum of the segment files' sizes */
    uint64_t records_pending;         /* appended (or found at open) minus committed */
    uint64_t segments;                /* segment files on disk */
    uint64_t corrupt_records;         /* bad records and unreadable stretches skipped */
    uint64_t torn_tail_bytes_dropped; /* bytes truncated from the newest segment at open */
    uint64_t appends;                 /* successful append calls */
    uint64_t records_appended;        /* records in those calls */
    uint64_t append_failures;         /* appends that failed with SL_EIO */
    uint64_t full_rejections;         /* appends refused with SL_EBUSY */
    uint64_t fsyncs;                  /* fsync/fdatasync calls (data, folder, cursor) */
};

/*
 * Opens the spool in folder `dir` (borrowed; copied), creating the folder (mode 0700) when
 * it is missing but its parent exists. Deletes segments left wholly before the committed
 * cursor, truncates a torn tail of the newest segment (one warning naming file, offset and
 * bytes) and counts the records after the cursor. max_bytes bounds the bytes on disk;
 * segment_bytes is the size past which a new segment starts, at least
 * INGEST_SPOOL_MIN_SEGMENT_BYTES and at most max_bytes / 2.
 * Fails with SL_EINVAL for bad sizes, SL_EBUSY when another process holds the folder,
 * SL_EIO (err names the file and the system error) or SL_ENOMEM.
 * *out returns new (close with ingest_spool_close); NULL on failure.
 */
int ingest_spool_open(struct ingest_spool **out, const char *dir, uint64_t max_bytes,
                      uint64_t segment_bytes, struct sl_err *err);

/* Closes the files and frees the spool. Accepts NULL. Nothing else may be in flight. */
void ingest_spool_close(struct ingest_spool *sp);

/*
 * Appends the n records of recs (borrowed for the call; payloads are copied to disk) as
 * one write and one fdatasync, and returns 0 only once they are durable. n == 0 does
 * nothing. Fails with:
 * - SL_EBUSY when the spool would pass max_bytes (nothing written; retry after the reader
 *   drains it);
 * - SL_EINVAL when a record is larger than INGEST_SPOOL_RECORD_MAX_BYTES or the batch
 *   larger than half of max_bytes (it could never fit);
 * - SL_EIO when the write, the fdatasync or the creation of a new segment failed. The
 *   file is truncated back to where it was, so no part of the batch remains; if even
 *   that fails, every later append fails with SL_EIO until the spool is reopened.
 * - SL_ENOMEM.
 * On failure none of the records is in the spool. Any thread.
 */
int ingest_spool_append(struct ingest_spool *sp, const struct iovec *recs, size_t n,
                        struct sl_err *err);

/* Sets up an empty batch (caller-provided storage). Cannot fail. */
void ingest_spool_batch_init(struct ingest_spool_batch *batch);

/* Frees the batch's buffers. Accepts a batch that was only initialised. */
void ingest_spool_batch_fini(struct ingest_spool_batch *batch);

/*
 * Fills batch (borrowed) with the records after the read position, in order: at most
 * max_records records and at most max_bytes payload bytes, except that a first record
 * larger than max_bytes comes alone so the reader never stalls (the buffer then grows to
 * that record, at most INGEST_SPOOL_RECORD_MAX_BYTES). Moves the read position past them
 * and sets batch->end. Returns 0 with batch->n == 0 when nothing is pending. Corrupt
 * records on the way are skipped and counted. Fails with SL_EINVAL (a zero limit), SL_EIO
 * (err names the file) or SL_ENOMEM; the read position and batch->n == 0 then stay as
 * before the call. Reader thread only.
 */
int ingest_spool_read(struct ingest_spool *sp, struct ingest_spool_batch *batch,
                      size_t max_records, size_t max_bytes, struct sl_err *err);

/*
 * Durably moves the committed cursor to batch->end (batch borrowed): writes the cursor
 * file atomically, then deletes the segments wholly before it (never the one being
 * written; a failed deletion is logged and retried at the next commit). Call once the
 * batch's records are delivered. Committing a batch that ends at the cursor does nothing;
 * one that ends before it fails with SL_ESTATE. Fails with SL_EIO when the cursor cannot
 * be written (the cursor stays where it was). Reader thread only.
 */
int ingest_spool_commit(struct ingest_spool *sp, const struct ingest_spool_batch *batch,
                        struct sl_err *err);

/*
 * Moves the read position back to the committed cursor, so the records after it are read
 * again (after a failed delivery). Cannot fail. Reader thread only.
 */
void ingest_spool_rewind(struct ingest_spool *sp);

/*
 * Waits until a record is pending after the read position or timeout_ms passes.
 * Returns 0 when one is, SL_ETIMEDOUT otherwise. Reader thread only.
 */
int ingest_spool_wait(struct ingest_spool *sp, int64_t timeout_ms);

/* Copies the counters into out (borrowed). Cannot fail. Any thread. */
void ingest_spool_stats(struct ingest_spool *sp, struct ingest_spool_stats *out);

/* Test hook: how the next append fails (see ingest_spool_inject_fault). */
enum ingest_spool_fault {
    INGEST_SPOOL_FAULT_NONE = 0,
    INGEST_SPOOL_FAULT_WRITE, /* half the batch is written, then the write fails (EIO) */
    INGEST_SPOOL_FAULT_SYNC,  /* the whole batch is written, then fdatasync fails (EIO) */
    INGEST_SPOOL_FAULT_STUCK, /* as WRITE, and truncating the partial batch fails too */
};

/* Test hook: makes the next append fail as `fault` says. Any thread. */
void ingest_spool_inject_fault(struct ingest_spool *sp, enum ingest_spool_fault fault);

#endif

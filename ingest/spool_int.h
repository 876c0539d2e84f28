/*
 * Internals shared by spool.c (open and recovery, append, read, commit) and spool_scan.c
 * (the on-disk formats and the read window that walks a segment record by record): the
 * spool's layout, the window, what one step of a walk finds, and the calls between the two
 * files. The formats themselves are described in spool.h. Nothing outside ingest/spool*.c
 * includes this.
 */
#ifndef SLUICE_INGEST_SPOOL_INT_H
#define SLUICE_INGEST_SPOOL_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "spool.h"

/* Bytes of the cursor file. */
#define INGEST_SPOOL_CURSOR_BYTES 28
/* Room for a segment file name: "seg-" + 16 digits + ".spool" + NUL fits. */
#define INGEST_SPOOL_SEG_NAME_BYTES 32

struct ingest_spool_seg {
    uint64_t seq;
    uint64_t bytes; /* durable bytes: only grows after an append's fdatasync succeeded */
};

/* Read-ahead over one segment, used by the open scan and then by the reader thread. Bytes
 * in it lie below the segment's durable size when read, and those never change. */
struct ingest_spool_window {
    int fd;             /* read-only descriptor of segment seq; -1 when none */
    uint64_t seq;
    unsigned char *buf;
    size_t cap;
    uint64_t off;       /* file offset of buf[0] */
    size_t len;         /* valid bytes in buf */
};

struct ingest_spool {
    char *dir;
    int dir_fd;             /* holds the flock; base of every *at call */
    uint64_t max_bytes;
    uint64_t segment_bytes;
    bool has_sync;          /* lock and cond initialised */

    pthread_mutex_t lock;
    pthread_cond_t appended; /* signalled after each successful append */
    /* Guarded by lock. */
    struct ingest_spool_seg *segs; /* oldest first; the last one is being written */
    size_t n_segs;
    size_t cap_segs;
    int cur_fd;             /* write descriptor of segs[n_segs - 1] */
    uint64_t disk_bytes;
    uint64_t total_units;   /* units found at open plus units appended since */
    uint64_t committed_units;
    bool is_failed;         /* a failed append could not be undone */
    enum ingest_spool_fault fault;
    struct ingest_spool_stats stats; /* counters only; sizes are filled in by _stats */

    /* Reader thread only (and open, before the reader exists). committed is written under
     * lock too, so the two never disagree for stats. */
    struct ingest_spool_pos committed;
    struct ingest_spool_pos read_pos;
    struct ingest_spool_pos high_pos; /* furthest read end; corruption before it was counted */
    uint64_t read_units;
    struct ingest_spool_window win;
};

enum ingest_spool_unit_kind {
    INGEST_SPOOL_UNIT_END,     /* nothing left before the end */
    INGEST_SPOOL_UNIT_RECORD,  /* a whole, valid record */
    INGEST_SPOOL_UNIT_CORRUPT, /* header valid, payload checksum wrong: skipped by its length */
    INGEST_SPOOL_UNIT_GARBAGE, /* bytes that hold no valid header, up to the next valid record
                                * or end */
};

/* One step of a walk over a segment: a record, a corrupt record, garbage or the end. */
struct ingest_spool_unit {
    enum ingest_spool_unit_kind kind;
    uint64_t off;                 /* where the unit starts */
    uint64_t next;                /* where the next one starts */
    uint32_t len;                 /* payload bytes (RECORD, CORRUPT) */
    const unsigned char *payload; /* RECORD: into the window, valid until it moves */
};

/* ---- spool.c ---- */

/* Fills err with "what dir/name: strerror(errno)" and returns SL_EIO. */
int ingest_spool_io_fail(struct ingest_spool *sp, const char *what, const char *name,
                         struct sl_err *err);

/* ---- spool_scan.c: formats ---- */

/* Writes the INGEST_SPOOL_RECORD_HEADER_BYTES header of payload (len bytes, borrowed) into
 * h: magic, length, CRC32 of the payload, CRC32 of those 12 bytes. Never fails. */
void ingest_spool_scan_encode_header(unsigned char *h, const void *payload, uint32_t len);

/* Writes the cursor file's bytes for pos into buf (magic, version, pos, CRC32). Never fails. */
void ingest_spool_scan_encode_cursor(unsigned char buf[INGEST_SPOOL_CURSOR_BYTES],
                                     struct ingest_spool_pos pos);

/* Reads a cursor file's n bytes (borrowed) into *out. Returns 0, or SL_EINVAL (*out
 * unchanged) when the size, magic, version or checksum is wrong. */
int ingest_spool_scan_decode_cursor(const unsigned char *buf, size_t n,
                                    struct ingest_spool_pos *out);

/* Writes the file name of segment seq into buf. Never fails. */
void ingest_spool_scan_seg_name(char buf[INGEST_SPOOL_SEG_NAME_BYTES], uint64_t seq);

/* Whether name is a segment file name, "seg-<16 digits>.spool"; sets *seq when it is. */
bool ingest_spool_scan_is_seg_name(const char *name, uint64_t *seq);

/* ---- spool_scan.c: the window (open, then the reader thread) ---- */

/* Closes the window's segment and forgets what it held; keeps its buffer. Never fails. */
void ingest_spool_scan_window_close(struct ingest_spool_window *w);

/* Points sp's window at segment seq, opening it unless it is already the one. Fails with
 * SL_EIO (err names the file). */
int ingest_spool_scan_window_use(struct ingest_spool *sp, uint64_t seq, struct sl_err *err);

/*
 * Reads the unit at offset off of the window's segment, whose durable size is end, into
 * *u. Damage is searched past for the next offset where a record whose header and payload
 * both check out starts (or end). Fails with SL_EIO (err names the file) or SL_ENOMEM.
 */
int ingest_spool_scan_next_unit(struct ingest_spool *sp, uint64_t off, uint64_t end,
                                struct ingest_spool_unit *u, struct sl_err *err);

#endif

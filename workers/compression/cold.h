/*
 * Cold storage: the files compression writes before it deletes raw events, and that
 * `sluice restore` loads back. A root folder (SLUICE_COLD_DIR, local or mounted) holds one
 * folder per tenant and day, <root>/<tenant_id>/<YYYY-MM-DD>/, and in it one or more parts:
 *
 *   part-0001.jsonl.zst        the day's events as ClickHouse JSONEachRow, zstd-compressed
 *   part-0001.manifest.json    rows, time range, sha256 of the .zst, format, columns, ...
 *
 * A day gets a second part when late events arrive after it was compressed. Every file is
 * written under a temporary name (".part-...tmp"), fsync'ed, renamed, and the folder
 * fsync'ed; the manifest is written last, so a part without its manifest (a torn write) is
 * not a part and is ignored. This module knows files only: what goes in them (the
 * ClickHouse side) is the worker's and the CLI's business.
 *
 * Any thread; the objects here are used by one thread at a time. Nothing logs.
 */
#ifndef SLUICE_WORKERS_COMPRESSION_COLD_H
#define SLUICE_WORKERS_COMPRESSION_COLD_H

#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "err.h"

#define COMPRESS_COLD_DAY_MAX 11       /* "YYYY-MM-DD" + NUL */
#define COMPRESS_COLD_TENANT_MAX 65    /* tenant id: 64 bytes + NUL */
#define COMPRESS_COLD_NAME_MAX 64      /* a file name in a day folder */
#define COMPRESS_COLD_SHA256_HEX 65    /* 64 hex digits + NUL */
#define COMPRESS_COLD_PATH_MAX 1024
#define COMPRESS_COLD_COLUMNS_MAX 4096 /* comma-separated column names */
#define COMPRESS_COLD_FORMAT "JSONEachRow"
#define COMPRESS_COLD_MAX_PART 9999

/* SLUICE_COLD_DIR, shared by the compression job and `sluice restore`. */
struct compress_cold_settings {
    char *dir; /* absolute path of the cold storage root */
};

extern const struct sl_cfg_opt compress_cold_cfg_opts[];
extern const size_t compress_cold_cfg_n_opts;

/* The settings check of SLUICE_COLD_DIR (an sl_cfg_opt check): SL_EINVAL naming key unless
 * text is an absolute path. */
int compress_cold_check_dir(const char *key, const char *text, struct sl_err *err);

/* What a part's manifest says. */
struct compress_manifest {
    char tenant_id[COMPRESS_COLD_TENANT_MAX];
    char day[COMPRESS_COLD_DAY_MAX];
    int64_t part;                       /* 1, 2, ... within the day */
    char file[COMPRESS_COLD_NAME_MAX];  /* the data file's name in the day folder */
    char format[32];                    /* COMPRESS_COLD_FORMAT */
    char table[64];                     /* the ClickHouse table the rows came from */
    char columns[COMPRESS_COLD_COLUMNS_MAX]; /* "id,tenant_id,...", the rows' columns */
    int64_t rows;                       /* lines in the decompressed data */
    int64_t bytes;                      /* size of the .zst file */
    char sha256[COMPRESS_COLD_SHA256_HEX]; /* of the .zst file, lower-case hex */
    int64_t min_ts;                     /* unix seconds of the first and last event */
    int64_t max_ts;
    int64_t max_version;                /* highest ReplacingMergeTree version exported */
    int64_t created_s;
    int64_t schema_version;             /* the sluice store schema that wrote it */
};

/*
 * Writes "<root>/<tenant_id>/<day>" into out (cap bytes). Refuses (SL_EINVAL, out "")
 * a root that is not absolute, a tenant id that is not a safe path component (only
 * [A-Za-z0-9_-], 1..64 bytes), a day that is not a real YYYY-MM-DD date, or a path longer
 * than cap - 1. Inputs are borrowed.
 */
int compress_cold_day_dir(const char *root, const char *tenant_id, const char *day, char *out,
                          size_t cap, struct sl_err *err);

/* Whether text is a real calendar date written YYYY-MM-DD. */
int compress_cold_day_check(const char *day, struct sl_err *err);

/* Writes the day (YYYY-MM-DD, UTC) holding unix second s into out. */
void compress_cold_day_of(int64_t s, char out[COMPRESS_COLD_DAY_MAX]);

/* Unix second of a day's midnight (UTC); SL_EINVAL when day is not a YYYY-MM-DD date. */
int compress_cold_day_start(const char *day, int64_t *out_s, struct sl_err *err);

/* ---- writing a part (cold_write.c) ---- */

struct compress_cold_writer;

/*
 * Starts part `part` (1..COMPRESS_COLD_MAX_PART) in day_dir (borrowed; created with its
 * parents when missing) at zstd `level`: opens a temporary file next to where the part will
 * be. An existing part of that number (left by an interrupted run that never recorded it)
 * is replaced at commit. Returns new in *out (free with compress_cold_writer_destroy);
 * fails with SL_EIO naming the path, SL_EINVAL, SL_ENOMEM; *out is NULL then.
 */
int compress_cold_writer_open(struct compress_cold_writer **out, const char *day_dir,
                              int64_t part, int level, struct sl_err *err);

/* Compresses len bytes of data (borrowed) into the part; counts its lines. SL_EIO, SL_ENOMEM. */
int compress_cold_writer_write(struct compress_cold_writer *w, const void *data, size_t len,
                               struct sl_err *err);

/*
 * Ends the part: flushes zstd, fsyncs and renames the data file, then writes the manifest
 * the same way and fsyncs the folder. m (borrowed) gives tenant_id, day, table, columns,
 * min/max ts, max_version, created_s and schema_version; commit fills in part, file,
 * format, rows, bytes and sha256. Data that does not end in a newline is refused
 * (SL_EINVAL): a JSONEachRow body always does. After a failure no manifest of the part
 * exists (a data file without one is not a part) and the writer can only be destroyed.
 */
int compress_cold_writer_commit(struct compress_cold_writer *w, struct compress_manifest *m,
                                struct sl_err *err);

/* Frees the writer, removing its temporary file unless it was committed. Accepts NULL. */
void compress_cold_writer_destroy(struct compress_cold_writer *w);

/* ---- reading and verifying (cold_read.c) ---- */

struct compress_cold_reader;

/*
 * Opens a part's data file (path borrowed) for streaming decompression. Returns new in *out
 * (close with compress_cold_reader_close); SL_ENOTFOUND, SL_EIO, SL_ENOMEM.
 */
int compress_cold_reader_open(struct compress_cold_reader **out, const char *path,
                              struct sl_err *err);

/*
 * Reads up to cap decompressed bytes into buf; *n_out is 0 at the end of the data. Hashes
 * the file bytes and counts lines as it goes. SL_EIO for a read error or data zstd refuses
 * (a corrupted or truncated file), naming the file.
 */
int compress_cold_reader_read(struct compress_cold_reader *r, void *buf, size_t cap,
                              size_t *n_out, struct sl_err *err);

/* After the end: the file's sha256 (hex), size, and the lines read. */
void compress_cold_reader_totals(const struct compress_cold_reader *r,
                                 char sha256[COMPRESS_COLD_SHA256_HEX], int64_t *bytes,
                                 int64_t *rows);

/* Closes the file and frees the reader. Accepts NULL. */
void compress_cold_reader_close(struct compress_cold_reader *r);

/*
 * Reads the whole part m describes in day_dir (borrowed) and checks it: zstd data intact,
 * sha256 and size of the file and the number of rows as in m. SL_ESTATE with what differs
 * ("checksum mismatch: manifest ab12.., file 9f00..") when it does not match; SL_EIO,
 * SL_ENOTFOUND as compress_cold_reader_*.
 */
int compress_cold_verify(const char *day_dir, const struct compress_manifest *m,
                         struct sl_err *err);

/* ---- manifests and listing (cold_manifest.c) ---- */

/* Writes "part-NNNN.jsonl.zst" and "part-NNNN.manifest.json" for part. */
void compress_cold_part_names(int64_t part, char file[COMPRESS_COLD_NAME_MAX],
                              char manifest[COMPRESS_COLD_NAME_MAX]);

/* Writes m as the manifest of part m->part in day_dir: temp file, fsync, rename, fsync dir. */
int compress_manifest_write(const char *day_dir, const struct compress_manifest *m,
                            struct sl_err *err);

/*
 * Reads and checks the manifest at path into *m (zeroed first). SL_ENOTFOUND, SL_EIO, or
 * SL_EINVAL for a file that is not a complete manifest (naming the field).
 */
int compress_manifest_read(const char *path, struct compress_manifest *m, struct sl_err *err);

/* One part found on disk. */
struct compress_cold_part {
    char dir[COMPRESS_COLD_PATH_MAX]; /* its day folder */
    struct compress_manifest m;
};

/*
 * Lists the parts of tenant_id for days from_day..to_day (inclusive, YYYY-MM-DD) under root:
 * every part with a readable manifest, ordered by day then part. Temporary files and data
 * files without a manifest are ignored; a manifest that cannot be read fails the call
 * (SL_EINVAL naming it), since restoring around it would silently lose rows. A tenant
 * without a folder has no parts. Returns a new array in *out (free with sl_free; NULL when
 * empty) and its length in *n_out.
 */
int compress_cold_list(const char *root, const char *tenant_id, const char *from_day,
                       const char *to_day, struct compress_cold_part **out, size_t *n_out,
                       struct sl_err *err);

#endif

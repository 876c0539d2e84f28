/*
 * Internals shared by the cold_*.c files: file-system helpers (folders with parents,
 * fsync of a folder, writing a whole small file durably). Nothing outside
 * workers/compression/cold*.c includes this.
 */
#ifndef SLUICE_WORKERS_COMPRESSION_COLD_INT_H
#define SLUICE_WORKERS_COMPRESSION_COLD_INT_H

#include <stddef.h>

#include "cold.h"

/* Creates path and its missing parents (mode 0750). SL_EIO naming the folder. */
int compress_cold_mkdirs(const char *path, struct sl_err *err);

/* fsyncs the folder at path, so a rename in it is durable. SL_EIO. */
int compress_cold_fsync_dir(const char *path, struct sl_err *err);

/*
 * Writes len bytes of data to dir/name durably: a temporary ".name.tmp", fsync, rename over
 * name, fsync of dir. The temporary file is removed on failure. SL_EIO naming the file.
 */
int compress_cold_write_file(const char *dir, const char *name, const void *data, size_t len,
                             struct sl_err *err);

/* Joins dir and name into out; SL_EINVAL when it does not fit. */
int compress_cold_join(const char *dir, const char *name, char *out, size_t cap,
                       struct sl_err *err);

#endif

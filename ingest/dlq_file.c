/*
 * Dead letters in spool mode: the JSON-lines file (one record per line, appended under a
 * lock with one fsync per batch), and reading it back line by line.
 */
#include "dlq_int.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "log.h"
#include "rows.h"
#include "timefmt.h"

#define COMPONENT "dlq"

/* ---- spool mode: the file ---- */

const char ingest_dlq_hexdig[] = "0123456789abcdef";

/* Sets obj[name] to the text, or obj[name_hex] to its hex when it is not UTF-8. */
static int set_text(json_t *obj, const char *name, const void *data, size_t len)
{
    json_t *s = data != NULL ? json_stringn(data, len) : json_null();
    char hex_name[64];
    char *hex;

    if (s != NULL) {
        return json_object_set_new(obj, name, s);
    }
    hex = sl_malloc(len * 2 + 1);
    if (hex == NULL) {
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        hex[2 * i] = ingest_dlq_hexdig[((const unsigned char *)data)[i] >> 4];
        hex[2 * i + 1] = ingest_dlq_hexdig[((const unsigned char *)data)[i] & 15];
    }
    hex[len * 2] = '\0';
    snprintf(hex_name, sizeof(hex_name), "%s_hex", name);
    s = json_string(hex);
    sl_free(hex);
    return json_object_set_new(obj, hex_name, s);
}

/* One record as a JSON line (new, sl_free), "\n" included; NULL when memory ran out. */
char *ingest_dlq_record_line(const struct ingest_dlq_record *r, const char *extra_key,
                             int64_t extra_value, size_t *len)
{
    char when[SL_TIMEFMT_ISO_MAX];
    json_t *obj = json_pack("{s:I, s:s, s:s}", "time_ms", (json_int_t)r->time_ms, "time",
                            sl_timefmt_iso(r->time_ms / 1000, when), "reason", r->reason);
    char *text = NULL, *line = NULL;

    if (obj == NULL) {
        return NULL;
    }
    if (json_object_set_new(obj, "tenant_id", r->tenant_id != NULL ? json_string(r->tenant_id)
                                                                     : json_null()) != 0 ||
        set_text(obj, "key", r->key_len > 0 ? r->key : NULL, r->key_len) != 0 ||
        set_text(obj, "value", r->value != NULL ? r->value : "", r->value_len) != 0 ||
        (extra_key != NULL &&
         json_object_set_new(obj, extra_key, json_integer((json_int_t)extra_value)) != 0)) {
        json_decref(obj);
        return NULL;
    }
    text = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (text == NULL) {
        return NULL;
    }
    *len = strlen(text) + 1;
    line = sl_malloc(*len + 1);
    if (line != NULL) {
        memcpy(line, text, *len - 1);
        line[*len - 1] = '\n';
        line[*len] = '\0';
    }
    sl_free(text);
    return line;
}

int ingest_dlq_fsync_dir(const char *folder)
{
    int fd = open(folder, O_RDONLY | O_DIRECTORY);
    int rc = 0;

    if (fd < 0 || fsync(fd) != 0) {
        rc = -1;
    }
    if (fd >= 0) {
        close(fd);
    }
    return rc;
}

/*
 * Opens folder/name for appending under an exclusive flock, making sure the locked file is
 * still the one at that path (a replay may have replaced it). Returns the fd or -1.
 */
int ingest_dlq_open_locked(const char *folder, const char *name, bool *is_new, struct sl_err *err)
{
    char path[4096];

    snprintf(path, sizeof(path), "%s/%s", folder, name);
    if (mkdir(folder, 0700) != 0 && errno != EEXIST) {
        sl_err_set(err, SL_EIO, "cannot create %s: %s", folder, strerror(errno));
        return -1;
    }
    for (int attempt = 0; attempt < 10; attempt++) {
        struct stat at_fd, at_path;
        int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);

        if (fd < 0) {
            sl_err_set(err, SL_EIO, "cannot open %s: %s", path, strerror(errno));
            return -1;
        }
        if (flock(fd, LOCK_EX) != 0) {
            sl_err_set(err, SL_EIO, "cannot lock %s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        if (fstat(fd, &at_fd) == 0 && stat(path, &at_path) == 0 &&
            at_fd.st_ino == at_path.st_ino && at_fd.st_dev == at_path.st_dev) {
            *is_new = at_fd.st_size == 0;
            return fd;
        }
        close(fd);
    }
    sl_err_set(err, SL_EIO, "%s keeps being replaced", path);
    return -1;
}

/* Writes all of buf to fd and fsyncs it. */
int ingest_dlq_write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);

        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        buf += w;
        len -= (size_t)w;
    }
    return fdatasync(fd);
}

/* Appends lines (already built) to folder/name with one fsync. */
int ingest_dlq_append_lines(const char *folder, const char *name, const char *text, size_t len,
                            struct sl_err *err)
{
    bool is_new = false;
    int fd = ingest_dlq_open_locked(folder, name, &is_new, err);
    int rc = 0;

    if (fd < 0) {
        return SL_EIO;
    }
    if (ingest_dlq_write_all(fd, text, len) != 0) {
        rc = sl_err_set(err, SL_EIO, "cannot write %s/%s: %s", folder, name, strerror(errno));
    }
    else if (is_new && ingest_dlq_fsync_dir(folder) != 0) {
        rc = sl_err_set(err, SL_EIO, "cannot sync %s: %s", folder, strerror(errno));
    }
    close(fd);
    return rc;
}

int ingest_dlq_file_append(const char *folder, const struct ingest_dlq_record *recs,
                           size_t n, struct sl_err *err)
{
    struct sl_ch_buf text;
    int rc = 0;

    if (n == 0) {
        return 0;
    }
    sl_ch_buf_init(&text, (size_t)1 << 30);
    for (size_t i = 0; i < n && rc == 0; i++) {
        size_t len = 0;
        char *line = ingest_dlq_record_line(&recs[i], NULL, 0, &len);

        rc = line == NULL ? SL_ENOMEM : sl_ch_buf_append(&text, line, len);
        sl_free(line);
    }
    if (rc != 0) {
        sl_err_set(err, SL_ENOMEM, "out of memory writing dead letters");
    }
    else {
        rc = ingest_dlq_append_lines(folder, INGEST_DLQ_FILE, text.data, text.len, err);
    }
    sl_ch_buf_fini(&text);
    return rc;
}

/* ---- the file, read whole ---- */

struct lines {
    char *text; /* the file, NUL-terminated */
    size_t len;
};

static int read_file(const char *path, struct lines *out, struct sl_err *err)
{
    FILE *f = fopen(path, "re");
    struct sl_ch_buf b;
    char chunk[65536];
    size_t n;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (f == NULL) {
        return errno == ENOENT ? 0 : sl_err_set(err, SL_EIO, "cannot open %s: %s", path,
                                                 strerror(errno));
    }
    sl_ch_buf_init(&b, (size_t)1 << 32);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && rc == 0) {
        rc = sl_ch_buf_append(&b, chunk, n);
    }
    if (rc == 0 && ferror(f)) {
        rc = sl_err_set(err, SL_EIO, "cannot read %s: %s", path, strerror(errno));
    }
    else if (rc != 0) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory reading %s", path);
    }
    fclose(f);
    if (rc != 0) {
        sl_ch_buf_fini(&b);
        return rc;
    }
    out->text = b.data;
    out->len = b.len;
    return 0;
}

/* Calls fn for each whole line of path (a torn last line is skipped). */
int ingest_dlq_each_line(const char *path, ingest_dlq_line_fn fn, void *user, struct sl_err *err)
{
    struct lines f;
    int64_t line_no = 0;
    int rc = read_file(path, &f, err);

    for (size_t at = 0; rc == 0 && at < f.len;) {
        const char *nl = memchr(f.text + at, '\n', f.len - at);

        if (nl == NULL) {
            break;
        }
        line_no++;
        rc = fn(user, f.text + at, (size_t)(nl - (f.text + at)), line_no);
        at = (size_t)(nl - f.text) + 1;
    }
    sl_free(f.text);
    return rc > 0 ? 0 : rc;
}


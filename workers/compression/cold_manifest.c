/*
 * Part manifests (JSON through jansson) and listing a tenant's parts for a range of days.
 * A manifest is what makes a part exist: it is written last, durably, and listing trusts
 * only parts that have one.
 */
#include "cold_int.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

#define MANIFEST_MAX_BYTES (64 * 1024)

int compress_manifest_write(const char *day_dir, const struct compress_manifest *m,
                            struct sl_err *err)
{
    char file[COMPRESS_COLD_NAME_MAX], name[COMPRESS_COLD_NAME_MAX];
    json_t *cols = json_array();
    json_t *root = NULL;
    char *text = NULL;
    size_t len;
    const char *p = m->columns;
    int rc;

    compress_cold_part_names(m->part, file, name);
    while (cols != NULL && *p != '\0') {
        size_t n = strcspn(p, ",");

        if (n > 0 && json_array_append_new(cols, json_stringn(p, n)) != 0) {
            break;
        }
        p += n;
        p += *p == ',';
    }
    root = json_pack("{s:i, s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:o, s:I, s:I, s:s, s:I, s:I, "
                     "s:I, s:I, s:I}",
                     "manifest_version", 1, "tenant_id", m->tenant_id, "day", m->day, "part",
                     (json_int_t)m->part, "file", m->file, "format", m->format,
                     "compression", "zstd", "table", m->table, "columns", cols, "rows",
                     (json_int_t)m->rows, "bytes", (json_int_t)m->bytes, "sha256", m->sha256,
                     "min_ts", (json_int_t)m->min_ts, "max_ts", (json_int_t)m->max_ts,
                     "max_version", (json_int_t)m->max_version, "created_at",
                     (json_int_t)m->created_s, "sluice_schema_version",
                     (json_int_t)m->schema_version);
    text = sl_malloc(MANIFEST_MAX_BYTES);
    /* json_dumpb writes into our buffer, so no jansson-allocated text needs freeing. */
    len = root != NULL && text != NULL
              ? json_dumpb(root, text, MANIFEST_MAX_BYTES, JSON_INDENT(2) | JSON_PRESERVE_ORDER)
              : 0;
    json_decref(root);
    if (len == 0 || len >= MANIFEST_MAX_BYTES) {
        sl_free(text);
        return sl_err_set(err, SL_ENOMEM, "out of memory writing a manifest");
    }
    text[len++] = '\n';
    rc = compress_cold_write_file(day_dir, name, text, len, err);
    sl_free(text);
    return rc;
}

/* Copies a string member into dst; SL_EINVAL naming it when missing, mistyped or too long. */
static int get_str(json_t *root, const char *key, char *dst, size_t cap, const char *path,
                   struct sl_err *err)
{
    json_t *v = json_object_get(root, key);

    if (!json_is_string(v) || json_string_length(v) >= cap) {
        return sl_err_set(err, SL_EINVAL, "manifest %s: '%s' missing or not a short string",
                          path, key);
    }
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static int get_int(json_t *root, const char *key, int64_t *dst, const char *path,
                   struct sl_err *err)
{
    json_t *v = json_object_get(root, key);

    if (!json_is_integer(v)) {
        return sl_err_set(err, SL_EINVAL, "manifest %s: '%s' missing or not an integer", path,
                          key);
    }
    *dst = (int64_t)json_integer_value(v);
    return 0;
}

static int get_columns(json_t *root, char *dst, size_t cap, const char *path,
                       struct sl_err *err)
{
    json_t *cols = json_object_get(root, "columns");
    size_t len = 0, i;
    json_t *c;

    if (!json_is_array(cols) || json_array_size(cols) == 0) {
        return sl_err_set(err, SL_EINVAL, "manifest %s: 'columns' missing or empty", path);
    }
    dst[0] = '\0';
    json_array_foreach(cols, i, c) {
        size_t n = json_is_string(c) ? json_string_length(c) : 0;

        if (n == 0 || len + n + 2 > cap || strchr(json_string_value(c), ',') != NULL) {
            return sl_err_set(err, SL_EINVAL, "manifest %s: bad column %zu", path, i);
        }
        if (len > 0) {
            dst[len++] = ',';
        }
        memcpy(dst + len, json_string_value(c), n + 1);
        len += n;
    }
    return 0;
}

int compress_manifest_read(const char *path, struct compress_manifest *m, struct sl_err *err)
{
    json_error_t jerr;
    json_t *root;
    int rc = 0;

    memset(m, 0, sizeof(*m));
    errno = 0;
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        if (errno == ENOENT) {
            return sl_err_set(err, SL_ENOTFOUND, "manifest %s does not exist", path);
        }
        return sl_err_set(err, SL_EINVAL, "manifest %s is not JSON: %s (line %d)", path,
                          jerr.text, jerr.line);
    }
    if (!json_is_object(root)) {
        rc = sl_err_set(err, SL_EINVAL, "manifest %s is not a JSON object", path);
    }
    if (rc == 0) {
        rc = get_str(root, "tenant_id", m->tenant_id, sizeof(m->tenant_id), path, err);
    }
    if (rc == 0) {
        rc = get_str(root, "day", m->day, sizeof(m->day), path, err);
    }
    if (rc == 0) {
        rc = get_int(root, "part", &m->part, path, err);
    }
    if (rc == 0) {
        rc = get_str(root, "file", m->file, sizeof(m->file), path, err);
    }
    if (rc == 0) {
        rc = get_str(root, "format", m->format, sizeof(m->format), path, err);
    }
    if (rc == 0) {
        rc = get_str(root, "table", m->table, sizeof(m->table), path, err);
    }
    if (rc == 0) {
        rc = get_columns(root, m->columns, sizeof(m->columns), path, err);
    }
    if (rc == 0) {
        rc = get_int(root, "rows", &m->rows, path, err);
    }
    if (rc == 0) {
        rc = get_int(root, "bytes", &m->bytes, path, err);
    }
    if (rc == 0) {
        rc = get_str(root, "sha256", m->sha256, sizeof(m->sha256), path, err);
    }
    if (rc == 0) {
        rc = get_int(root, "min_ts", &m->min_ts, path, err);
    }
    if (rc == 0) {
        rc = get_int(root, "max_ts", &m->max_ts, path, err);
    }
    if (rc == 0) {
        rc = get_int(root, "max_version", &m->max_version, path, err);
    }
    if (rc == 0) {
        rc = get_int(root, "created_at", &m->created_s, path, err);
    }
    if (rc == 0) {
        rc = get_int(root, "sluice_schema_version", &m->schema_version, path, err);
    }
    json_decref(root);
    if (rc == 0 && (strlen(m->sha256) != 64 || strchr(m->file, '/') != NULL ||
                    strcmp(m->format, COMPRESS_COLD_FORMAT) != 0 || m->rows < 0)) {
        rc = sl_err_set(err, SL_EINVAL, "manifest %s: bad sha256, file name, format or rows",
                        path);
    }
    return rc;
}

static int cmp_parts(const void *a, const void *b)
{
    const struct compress_cold_part *x = a, *y = b;
    int c = strcmp(x->m.day, y->m.day);

    if (c != 0) {
        return c;
    }
    return x->m.part < y->m.part ? -1 : x->m.part > y->m.part;
}

/* Appends the parts of one day folder to the growing array. */
static int list_day(const char *dir, const char *tenant_id, const char *day,
                    struct compress_cold_part **arr, size_t *n, size_t *cap,
                    struct sl_err *err)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int rc = 0;

    if (d == NULL) {
        return errno == ENOENT ? 0 : sl_err_set(err, SL_EIO, "cannot list %s: %s", dir,
                                                strerror(errno));
    }
    while (rc == 0 && (de = readdir(d)) != NULL) {
        char path[COMPRESS_COLD_PATH_MAX];
        struct compress_cold_part *p;
        int part = 0, used = 0;

        /* Only "part-NNNN.manifest.json": temporary files start with a dot, data files
         * without a manifest are torn writes. */
        if (sscanf(de->d_name, "part-%4d.manifest.json%n", &part, &used) != 1 ||
            de->d_name[used] != '\0' || strlen(de->d_name) != 23) {
            continue;
        }
        if (*n == *cap) {
            size_t ncap = *cap == 0 ? 8 : *cap * 2;
            struct compress_cold_part *grown = sl_realloc(*arr, ncap * sizeof(**arr));

            if (grown == NULL) {
                rc = sl_err_set(err, SL_ENOMEM, "out of memory");
                break;
            }
            *arr = grown;
            *cap = ncap;
        }
        p = &(*arr)[*n];
        snprintf(p->dir, sizeof(p->dir), "%s", dir);
        rc = compress_cold_join(dir, de->d_name, path, sizeof(path), err);
        if (rc == 0) {
            rc = compress_manifest_read(path, &p->m, err);
        }
        if (rc == 0 && (strcmp(p->m.tenant_id, tenant_id) != 0 || strcmp(p->m.day, day) != 0 ||
                        p->m.part != part)) {
            rc = sl_err_set(err, SL_EINVAL,
                            "manifest %s names tenant %s day %s part %lld, not its folder's",
                            path, p->m.tenant_id, p->m.day, (long long)p->m.part);
        }
        if (rc == 0) {
            (*n)++;
        }
    }
    closedir(d);
    return rc;
}

int compress_cold_list(const char *root, const char *tenant_id, const char *from_day,
                       const char *to_day, struct compress_cold_part **out, size_t *n_out,
                       struct sl_err *err)
{
    struct compress_cold_part *arr = NULL;
    size_t n = 0, cap = 0;
    int64_t from_s = 0, to_s = 0;
    int rc;

    *out = NULL;
    *n_out = 0;
    rc = compress_cold_day_start(from_day, &from_s, err);
    if (rc == 0) {
        rc = compress_cold_day_start(to_day, &to_s, err);
    }
    if (rc == 0 && to_s < from_s) {
        rc = sl_err_set(err, SL_EINVAL, "day range %s..%s ends before it starts", from_day,
                        to_day);
    }
    if (rc == 0 && (to_s - from_s) / 86400 > 366 * 100) {
        rc = sl_err_set(err, SL_EINVAL, "day range %s..%s is too long", from_day, to_day);
    }
    for (int64_t s = from_s; rc == 0 && s <= to_s; s += 86400) {
        char day[COMPRESS_COLD_DAY_MAX];
        char dir[COMPRESS_COLD_PATH_MAX];

        compress_cold_day_of(s, day);
        rc = compress_cold_day_dir(root, tenant_id, day, dir, sizeof(dir), err);
        if (rc == 0) {
            rc = list_day(dir, tenant_id, day, &arr, &n, &cap, err);
        }
    }
    if (rc != 0) {
        sl_free(arr);
        return rc;
    }
    if (n > 1) {
        qsort(arr, n, sizeof(*arr), cmp_parts);
    }
    *out = arr;
    *n_out = n;
    return 0;
}

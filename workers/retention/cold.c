/*
 * Cold exports past retention. Compression writes a tenant-day's cold files into one folder,
 * <root>/<tenant_id>/<YYYY-MM-DD>/, and a cold_exports row naming it. Retention removes the
 * folder's files and the folder first, then forgets the row and audits it in one
 * transaction: a run killed in between finds the row again, removes nothing more (the
 * folder is gone) and audits it once. The folder is checked to end in the row's own tenant
 * and day before anything in it is removed, so a damaged row cannot point the delete at an
 * unrelated folder; only regular files are removed, never recursively.
 */
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "retention_int.h"
#include "store_retention.h"

#define BATCH 256

/* Whether path is absolute and ends in "/<tenant_id>/<day>" (a trailing '/' allowed). */
static bool is_day_dir(const char *path, const char *tenant_id, const char *day)
{
    size_t len = strlen(path);
    size_t tl = strlen(tenant_id), dl = strlen(day);

    if (path[0] != '/' || tl == 0 || dl == 0 || strstr(path, "/../") != NULL) {
        return false;
    }
    if (len > 1 && path[len - 1] == '/') {
        len--;
    }
    if (len < tl + dl + 2) {
        return false;
    }
    return memcmp(path + len - dl, day, dl) == 0 && path[len - dl - 1] == '/' &&
           memcmp(path + len - dl - 1 - tl, tenant_id, tl) == 0 &&
           path[len - dl - 2 - tl] == '/';
}

int retention_cold_remove_dir(const char *path, const char *tenant_id, const char *day,
                              struct sl_err *err)
{
    DIR *dir = NULL;
    struct dirent *de;
    char file[SL_STORE_TARGET_MAX + 256];
    char *parent = NULL;
    char *slash;
    int rc = 0;

    if (!is_day_dir(path, tenant_id, day)) {
        return sl_err_set(err, SL_EINVAL, "cold export folder '%s' does not end in /%s/%s: "
                          "not removing it", path, tenant_id, day);
    }
    dir = opendir(path);
    if (dir == NULL) {
        return errno == ENOENT ? 0 : sl_err_set(err, SL_EIO, "opening cold folder %s: %s", path,
                                                strerror(errno));
    }
    while (rc == 0 && (de = readdir(dir)) != NULL) {
        struct stat sb;
        int n;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }
        n = snprintf(file, sizeof(file), "%s/%s", path, de->d_name);
        if (n < 0 || (size_t)n >= sizeof(file)) {
            rc = sl_err_set(err, SL_EINVAL, "cold file name too long in %s", path);
            break;
        }
        if (lstat(file, &sb) != 0) {
            rc = errno == ENOENT ? 0 : sl_err_set(err, SL_EIO, "%s: %s", file, strerror(errno));
            continue;
        }
        if (!S_ISREG(sb.st_mode) && !S_ISLNK(sb.st_mode)) {
            rc = sl_err_set(err, SL_ESTATE, "cold folder %s holds %s, which is not a file: "
                            "not removing it", path, de->d_name);
            break;
        }
        if (unlink(file) != 0 && errno != ENOENT) {
            rc = sl_err_set(err, SL_EIO, "removing %s: %s", file, strerror(errno));
        }
    }
    closedir(dir);
    if (rc == 0 && rmdir(path) != 0 && errno != ENOENT) {
        rc = sl_err_set(err, SL_EIO, "removing cold folder %s: %s", path, strerror(errno));
    }
    if (rc == 0) {
        /* The tenant's folder goes too once its last day went; still in use is fine. */
        parent = sl_strdup(path);
        if (parent != NULL) {
            size_t len = strlen(parent);

            if (len > 1 && parent[len - 1] == '/') {
                parent[len - 1] = '\0';
            }
            slash = strrchr(parent, '/');
            if (slash != NULL && slash != parent) {
                *slash = '\0';
                (void)rmdir(parent);
            }
        }
        sl_free(parent);
    }
    return rc;
}

int retention_cold_apply(struct retention_exec *x, const struct retention_plan *plan,
                         const struct retention_item *item, int64_t *rows_out,
                         struct sl_err *err)
{
    const char *tenant_id = item->counts != NULL ? item->counts[0].tenant_id : "";
    bool is_known = retention_plan_tenant(plan, tenant_id) != NULL;
    char before[11];
    int rc = 0;

    *rows_out = 0;
    if (item->kind != RETENTION_ITEM_COLD || item->n_counts != 1) {
        return sl_err_set(err, SL_EINVAL, "retention_cold_apply: not a cold item");
    }
    retention_day_text(item->cutoff_s, before);
    for (;;) {
        struct sl_cold_export *rows = NULL;
        size_t n = 0;
        size_t done = 0;

        if (is_known) {
            rc = sl_store_retention_cold_list(x->st, tenant_id,
                                              item->cutoff_s == RETENTION_ALL ? NULL : before,
                                              BATCH, &rows, &n, err);
        }
        else {
            /* Tenants the store does not know: listed together, taken one tenant at a
             * time. */
            rc = sl_store_retention_cold_list(x->st, NULL, before, BATCH, &rows, &n, err);
        }
        for (size_t i = 0; rc == 0 && i < n; i++) {
            struct sl_audit a = {.run_id = x->run_id, .from_s = 0, .rows = rows[i].rows,
                                 .cutoff_s = item->cutoff_s};
            bool is_removed = false;

            if (strcmp(rows[i].tenant_id, tenant_id) != 0) {
                continue;
            }
            if (retention_exec_should_stop(x)) {
                rc = sl_err_set(err, SL_ECANCELED, "stopped removing cold exports of %s",
                                tenant_id);
                break;
            }
            rc = retention_cold_remove_dir(rows[i].path, rows[i].tenant_id, rows[i].day, err);
            if (rc != 0) {
                break;
            }
            snprintf(a.job, sizeof(a.job), "%s", RETENTION_JOB);
            snprintf(a.tenant_id, sizeof(a.tenant_id), "%s", rows[i].tenant_id);
            snprintf(a.tbl, sizeof(a.tbl), "cold");
            snprintf(a.method, sizeof(a.method), "cold");
            if (snprintf(a.detail, sizeof(a.detail), "%s %s (%s)", rows[i].day, rows[i].path,
                         rows[i].state) >= (int)sizeof(a.detail)) {
                a.detail[sizeof(a.detail) - 1] = '\0';
            }
            rc = sl_store_retention_cold_forget(x->st, rows[i].day, &a, x->now_s, &is_removed,
                                                err);
            if (rc == 0 && is_removed) {
                *rows_out += rows[i].rows;
                done++;
                sl_metrics_counter_add(x->rows_deleted[RETENTION_N_TABLES],
                                       (uint64_t)rows[i].rows);
                sl_metrics_counter_add(x->cold_dirs_removed, 1);
            }
        }
        sl_free(rows);
        /* A batch that removed nothing of this tenant is the last one. */
        if (rc != 0 || n < BATCH || done == 0) {
            break;
        }
    }
    return rc;
}

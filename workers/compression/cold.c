/*
 * Cold storage's paths and settings: SLUICE_COLD_DIR, the <root>/<tenant>/<day> layout with
 * its safety checks, UTC days, and the file-system helpers the writer and the manifest
 * share (cold_int.h). Writing, reading and listing parts live in cold_write.c,
 * cold_read.c and cold_manifest.c.
 */
#include "cold_int.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int compress_cold_check_dir(const char *key, const char *text, struct sl_err *err)
{
    if (text == NULL || text[0] != '/') {
        return sl_err_set(err, SL_EINVAL, "%s must be an absolute path, got '%s'", key,
                          text != NULL ? text : "");
    }
    return 0;
}

const struct sl_cfg_opt compress_cold_cfg_opts[] = {
    {.key = "SLUICE_COLD_DIR", .type = SL_CFG_STRING, .def = "/var/lib/sluice/cold",
     .offset = offsetof(struct compress_cold_settings, dir), .check = compress_cold_check_dir,
     .desc = "Cold storage root (absolute; local or mounted): compressed raw events as "
             "<dir>/<tenant>/<YYYY-MM-DD>/part-NNNN.jsonl.zst with a manifest each."},
};
const size_t compress_cold_cfg_n_opts =
    sizeof(compress_cold_cfg_opts) / sizeof(compress_cold_cfg_opts[0]);

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days since 1970-01-01 of a civil date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int parse_day(const char *day, int64_t *y, int64_t *m, int64_t *d)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    if (day == NULL || strlen(day) != 10 || day[4] != '-' || day[7] != '-') {
        return SL_EINVAL;
    }
    for (int i = 0; i < 10; i++) {
        if (i != 4 && i != 7 && (day[i] < '0' || day[i] > '9')) {
            return SL_EINVAL;
        }
    }
    *y = (day[0] - '0') * 1000 + (day[1] - '0') * 100 + (day[2] - '0') * 10 + (day[3] - '0');
    *m = (day[5] - '0') * 10 + (day[6] - '0');
    *d = (day[8] - '0') * 10 + (day[9] - '0');
    if (*y < 1970 || *m < 1 || *m > 12 || *d < 1 ||
        *d > mdays[*m - 1] + (*m == 2 && is_leap(*y))) {
        return SL_EINVAL;
    }
    return 0;
}

int compress_cold_day_check(const char *day, struct sl_err *err)
{
    int64_t y, m, d;

    if (parse_day(day, &y, &m, &d) != 0) {
        return sl_err_set(err, SL_EINVAL, "'%s' is not a date written YYYY-MM-DD",
                          day != NULL ? day : "");
    }
    return 0;
}

int compress_cold_day_start(const char *day, int64_t *out_s, struct sl_err *err)
{
    int64_t y, m, d;

    if (parse_day(day, &y, &m, &d) != 0) {
        return sl_err_set(err, SL_EINVAL, "'%s' is not a date written YYYY-MM-DD",
                          day != NULL ? day : "");
    }
    *out_s = days_from_civil(y, m, d) * 86400;
    return 0;
}

void compress_cold_day_of(int64_t s, char out[COMPRESS_COLD_DAY_MAX])
{
    /* civil_from_days (Howard Hinnant). */
    int64_t z = (s >= 0 ? s : s - 86399) / 86400 + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp + (mp < 10 ? 3 : -9);
    int64_t y = yoe + era * 400 + (m <= 2);

    if (y < 0 || y > 9999) {
        y = 0;
    }
    snprintf(out, COMPRESS_COLD_DAY_MAX, "%04d-%02d-%02d", (int)y, (int)m, (int)d);
}

static bool is_safe_component(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;

    if (n == 0 || n >= COMPRESS_COLD_TENANT_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-')) {
            return false;
        }
    }
    return true;
}

int compress_cold_day_dir(const char *root, const char *tenant_id, const char *day, char *out,
                          size_t cap, struct sl_err *err)
{
    int n;
    int rc;

    if (cap > 0) {
        out[0] = '\0';
    }
    rc = compress_cold_check_dir("SLUICE_COLD_DIR", root, err);
    if (rc != 0) {
        return rc;
    }
    if (!is_safe_component(tenant_id)) {
        return sl_err_set(err, SL_EINVAL,
                          "tenant id '%s' is not a safe folder name (only A-Z a-z 0-9 _ -, "
                          "1..64 bytes); refusing to use it in a cold storage path",
                          tenant_id != NULL ? tenant_id : "");
    }
    rc = compress_cold_day_check(day, err);
    if (rc != 0) {
        return rc;
    }
    n = snprintf(out, cap, "%s%s%s/%s", root, root[strlen(root) - 1] == '/' ? "" : "/",
                 tenant_id, day);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0) {
            out[0] = '\0';
        }
        return sl_err_set(err, SL_EINVAL, "cold storage path under '%s' is too long", root);
    }
    return 0;
}

int compress_cold_join(const char *dir, const char *name, char *out, size_t cap,
                       struct sl_err *err)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);

    if (n < 0 || (size_t)n >= cap) {
        return sl_err_set(err, SL_EINVAL, "path '%s/%s' is too long", dir, name);
    }
    return 0;
}

int compress_cold_mkdirs(const char *path, struct sl_err *err)
{
    char buf[COMPRESS_COLD_PATH_MAX];
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof(buf)) {
        return sl_err_set(err, SL_EINVAL, "bad folder path '%s'", path);
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char saved = buf[i];

            buf[i] = '\0';
            if (mkdir(buf, 0750) != 0 && errno != EEXIST) {
                return sl_err_set(err, SL_EIO, "cannot create folder %s: %s", buf,
                                  strerror(errno));
            }
            buf[i] = saved;
        }
    }
    return 0;
}

int compress_cold_fsync_dir(const char *path, struct sl_err *err)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;

    if (fd < 0) {
        return sl_err_set(err, SL_EIO, "cannot open folder %s: %s", path, strerror(errno));
    }
    if (fsync(fd) != 0) {
        rc = sl_err_set(err, SL_EIO, "cannot fsync folder %s: %s", path, strerror(errno));
    }
    close(fd);
    return rc;
}

int compress_cold_write_file(const char *dir, const char *name, const void *data, size_t len,
                             struct sl_err *err)
{
    char tmp_name[COMPRESS_COLD_NAME_MAX + 8];
    char tmp[COMPRESS_COLD_PATH_MAX];
    char final[COMPRESS_COLD_PATH_MAX];
    const char *p = data;
    int fd = -1;
    int rc;

    snprintf(tmp_name, sizeof(tmp_name), ".%s.tmp", name);
    rc = compress_cold_join(dir, tmp_name, tmp, sizeof(tmp), err);
    if (rc == 0) {
        rc = compress_cold_join(dir, name, final, sizeof(final), err);
    }
    if (rc != 0) {
        return rc;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        return sl_err_set(err, SL_EIO, "cannot create %s: %s", tmp, strerror(errno));
    }
    while (len > 0) {
        ssize_t w = write(fd, p, len);

        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            rc = sl_err_set(err, SL_EIO, "cannot write %s: %s", tmp, strerror(errno));
            goto fail;
        }
        p += w;
        len -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        rc = sl_err_set(err, SL_EIO, "cannot fsync %s: %s", tmp, strerror(errno));
        goto fail;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, final) != 0) {
        rc = sl_err_set(err, SL_EIO, "cannot rename %s to %s: %s", tmp, final,
                        strerror(errno));
        goto fail;
    }
    return compress_cold_fsync_dir(dir, err);

fail:
    if (fd >= 0) {
        close(fd);
    }
    unlink(tmp);
    return rc;
}

/*
 * Tests workers/compression/cold*.c: a part written, listed, verified and read back byte
 * for byte; a corrupted byte, a truncated file and a manifest that lies are caught; torn
 * temporary files and data without a manifest are ignored; a part written again replaces
 * the old one; unsafe tenant ids, relative roots and bad days are refused.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "cold.h"
#include "test.h"

#define TENANT "tn_0123456789abcdef"
#define DAY "2026-11-20"

static const char rows_text[] =
    "{\"id\":\"00000000-0000-4000-8000-000000000001\",\"ts\":\"2026-11-20 01:00:00\"}\n"
    "{\"id\":\"00000000-0000-4000-8000-000000000002\",\"ts\":\"2026-11-20 02:00:00\","
    "\"s\":\"a\\nb\"}\n"
    "{\"id\":\"00000000-0000-4000-8000-000000000003\",\"ts\":\"2026-11-20 03:00:00\"}\n";

static void day_dir(const char *root, char out[COMPRESS_COLD_PATH_MAX])
{
    struct sl_err err;

    ASSERT_OK(compress_cold_day_dir(root, TENANT, DAY, out, COMPRESS_COLD_PATH_MAX, &err),
              &err);
}

/* Writes text as part `part` of TENANT/DAY under root, in pieces of `step` bytes. */
static void write_part(const char *root, int64_t part, const char *text, size_t step,
                       struct compress_manifest *m)
{
    struct compress_cold_writer *w = NULL;
    char dir[COMPRESS_COLD_PATH_MAX];
    size_t len = strlen(text);
    struct sl_err err;

    day_dir(root, dir);
    memset(m, 0, sizeof(*m));
    snprintf(m->tenant_id, sizeof(m->tenant_id), "%s", TENANT);
    snprintf(m->day, sizeof(m->day), "%s", DAY);
    snprintf(m->table, sizeof(m->table), "events");
    snprintf(m->columns, sizeof(m->columns), "id,ts,s");
    m->min_ts = 1795654800;
    m->max_ts = 1795662000;
    m->max_version = 42;
    m->created_s = 1795900000;
    m->schema_version = 8;
    ASSERT_OK(compress_cold_writer_open(&w, dir, part, 3, &err), &err);
    for (size_t off = 0; off < len; off += step) {
        size_t n = len - off < step ? len - off : step;

        ASSERT_OK(compress_cold_writer_write(w, text + off, n, &err), &err);
    }
    ASSERT_OK(compress_cold_writer_commit(w, m, &err), &err);
    compress_cold_writer_destroy(w);
}

/* Reads a part's data back, decompressed (caller frees). */
static char *read_back(const char *dir, const struct compress_manifest *m)
{
    struct compress_cold_reader *r = NULL;
    char path[2 * COMPRESS_COLD_PATH_MAX];
    char *out = sl_calloc(1, 1 << 20);
    size_t len = 0, n = 0;
    char sha[COMPRESS_COLD_SHA256_HEX];
    int64_t bytes = 0, rows = 0;
    struct sl_err err;

    snprintf(path, sizeof(path), "%s/%s", dir, m->file);
    ASSERT_OK(compress_cold_reader_open(&r, path, &err), &err);
    do {
        ASSERT_OK(compress_cold_reader_read(r, out + len, 7, &n, &err), &err);
        len += n;
    } while (n > 0);
    compress_cold_reader_totals(r, sha, &bytes, &rows);
    ASSERT_EQ_STR(sha, m->sha256);
    ASSERT_EQ_INT(bytes, m->bytes);
    ASSERT_EQ_INT(rows, m->rows);
    compress_cold_reader_close(r);
    return out;
}

static void test_cold_part_round_trip(void)
{
    char *root = test_tmpdir();
    char dir[COMPRESS_COLD_PATH_MAX];
    struct compress_manifest m;
    struct compress_cold_part *parts = NULL;
    size_t n = 0;
    char *data;
    struct sl_err err;

    write_part(root, 1, rows_text, 5, &m);
    ASSERT_EQ_INT(m.rows, 3);
    ASSERT_EQ_INT(m.part, 1);
    ASSERT_EQ_STR(m.file, "part-0001.jsonl.zst");
    ASSERT_EQ_INT(strlen(m.sha256), 64);
    day_dir(root, dir);
    ASSERT_OK(compress_cold_verify(dir, &m, &err), &err);
    data = read_back(dir, &m);
    ASSERT_EQ_STR(data, rows_text);
    sl_free(data);

    ASSERT_OK(compress_cold_list(root, TENANT, "2026-11-19", "2026-11-21", &parts, &n, &err),
              &err);
    ASSERT_EQ_INT(n, 1);
    ASSERT_EQ_STR(parts[0].dir, dir);
    ASSERT_EQ_STR(parts[0].m.sha256, m.sha256);
    ASSERT_EQ_STR(parts[0].m.columns, "id,ts,s");
    ASSERT_EQ_STR(parts[0].m.tenant_id, TENANT);
    ASSERT_EQ_INT(parts[0].m.rows, 3);
    ASSERT_EQ_INT(parts[0].m.min_ts, 1795654800);
    ASSERT_EQ_INT(parts[0].m.max_ts, 1795662000);
    ASSERT_EQ_INT(parts[0].m.max_version, 42);
    ASSERT_EQ_INT(parts[0].m.schema_version, 8);
    sl_free(parts);

    /* Days outside the range, and other tenants, have nothing. */
    ASSERT_OK(compress_cold_list(root, TENANT, "2026-11-21", "2026-11-30", &parts, &n, &err),
              &err);
    ASSERT_EQ_INT(n, 0);
    ASSERT_OK(compress_cold_list(root, "tn_other", DAY, DAY, &parts, &n, &err), &err);
    ASSERT_EQ_INT(n, 0);
    test_rmtree(root);
    free(root);
}

/* Flips one byte of the data file at offset (from the end when negative). */
static void corrupt(const char *dir, const char *file, long offset)
{
    char path[2 * COMPRESS_COLD_PATH_MAX];
    struct stat sb;
    unsigned char b;
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, file);
    fd = open(path, O_RDWR);
    ASSERT_TRUE(fd >= 0);
    ASSERT_TRUE(fstat(fd, &sb) == 0);
    if (offset < 0) {
        offset += (long)sb.st_size;
    }
    ASSERT_EQ_INT(pread(fd, &b, 1, offset), 1);
    b ^= 0x5a;
    ASSERT_EQ_INT(pwrite(fd, &b, 1, offset), 1);
    close(fd);
}

static void test_cold_corrupted_byte_is_caught(void)
{
    char *root = test_tmpdir();
    char dir[COMPRESS_COLD_PATH_MAX];
    struct compress_manifest m;
    struct sl_err err;

    day_dir(root, dir);
    /* Any byte: in the frame header, in the compressed block, in the checksum. */
    for (int i = 0; i < 3; i++) {
        long offsets[] = {5, 20, -2};

        write_part(root, 1, rows_text, 1000, &m);
        corrupt(dir, m.file, offsets[i]);
        sl_err_clear(&err);
        ASSERT_NE_INT(compress_cold_verify(dir, &m, &err), 0);
        ASSERT_CONTAINS(err.msg, "checksum mismatch");
        ASSERT_CONTAINS(err.msg, m.sha256);
    }
    test_rmtree(root);
    free(root);
}

static void test_cold_truncated_file_is_caught(void)
{
    char *root = test_tmpdir();
    char dir[COMPRESS_COLD_PATH_MAX];
    char path[2 * COMPRESS_COLD_PATH_MAX];
    struct compress_manifest m;
    struct compress_manifest lying;
    struct stat sb;
    struct sl_err err;

    write_part(root, 1, rows_text, 1000, &m);
    day_dir(root, dir);
    snprintf(path, sizeof(path), "%s/%s", dir, m.file);
    ASSERT_TRUE(stat(path, &sb) == 0);
    ASSERT_TRUE(truncate(path, sb.st_size - 6) == 0);
    sl_err_clear(&err);
    ASSERT_EQ_INT(compress_cold_verify(dir, &m, &err), SL_ESTATE);
    ASSERT_CONTAINS(err.msg, "checksum mismatch");

    /* A manifest that claims another row count is caught even with an intact file. */
    write_part(root, 1, rows_text, 1000, &m);
    lying = m;
    lying.rows = 4;
    sl_err_clear(&err);
    ASSERT_EQ_INT(compress_cold_verify(dir, &lying, &err), SL_ESTATE);
    ASSERT_CONTAINS(err.msg, "row count mismatch");
    test_rmtree(root);
    free(root);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[2 * COMPRESS_COLD_PATH_MAX];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    ASSERT_TRUE(f != NULL);
    fputs(text, f);
    fclose(f);
}

static void test_cold_torn_temp_file_is_ignored(void)
{
    char *root = test_tmpdir();
    char dir[COMPRESS_COLD_PATH_MAX];
    struct compress_manifest m;
    struct compress_cold_part *parts = NULL;
    struct compress_cold_writer *w = NULL;
    size_t n = 0;
    struct sl_err err;

    write_part(root, 1, rows_text, 1000, &m);
    day_dir(root, dir);
    /* What a crash leaves: a torn temporary data file and manifest, a data file whose
     * manifest was never written. */
    write_file(dir, ".part-0002.jsonl.zst.tmp", "\x28\xb5\x2f\xfd torn");
    write_file(dir, ".part-0002.manifest.json.tmp", "{\"tenant_id\": \"tn_");
    write_file(dir, "part-0003.jsonl.zst", "\x28\xb5\x2f\xfd");
    ASSERT_OK(compress_cold_list(root, TENANT, DAY, DAY, &parts, &n, &err), &err);
    ASSERT_EQ_INT(n, 1);
    ASSERT_EQ_INT(parts[0].m.part, 1);
    sl_free(parts);

    /* A writer destroyed before commit leaves nothing behind. */
    ASSERT_OK(compress_cold_writer_open(&w, dir, 4, 3, &err), &err);
    ASSERT_OK(compress_cold_writer_write(w, rows_text, strlen(rows_text), &err), &err);
    compress_cold_writer_destroy(w);
    {
        char path[2 * COMPRESS_COLD_PATH_MAX];
        struct stat sb;

        snprintf(path, sizeof(path), "%s/.part-0004.jsonl.zst.tmp", dir);
        ASSERT_TRUE(stat(path, &sb) != 0);
        snprintf(path, sizeof(path), "%s/part-0004.jsonl.zst", dir);
        ASSERT_TRUE(stat(path, &sb) != 0);
    }
    /* A manifest that is not valid JSON is an error, not a silent skip. */
    write_file(dir, "part-0005.manifest.json", "{\"tenant_id\": ");
    sl_err_clear(&err);
    ASSERT_EQ_INT(compress_cold_list(root, TENANT, DAY, DAY, &parts, &n, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "part-0005.manifest.json");
    ASSERT_TRUE(parts == NULL);
    test_rmtree(root);
    free(root);
}

static void test_cold_part_rewritten_replaces_old(void)
{
    char *root = test_tmpdir();
    char dir[COMPRESS_COLD_PATH_MAX];
    struct compress_manifest m1, m2, m3;
    struct compress_cold_part *parts = NULL;
    size_t n = 0;
    char *data;
    struct sl_err err;

    write_part(root, 1, rows_text, 1000, &m1);
    write_part(root, 1, "{\"id\":\"x\"}\n", 1000, &m2);
    write_part(root, 2, "{\"id\":\"y\"}\n{\"id\":\"z\"}\n", 3, &m3);
    day_dir(root, dir);
    ASSERT_OK(compress_cold_list(root, TENANT, DAY, DAY, &parts, &n, &err), &err);
    ASSERT_EQ_INT(n, 2);
    ASSERT_EQ_INT(parts[0].m.part, 1);
    ASSERT_EQ_INT(parts[0].m.rows, 1);
    ASSERT_EQ_STR(parts[0].m.sha256, m2.sha256);
    ASSERT_EQ_INT(parts[1].m.part, 2);
    ASSERT_EQ_INT(parts[1].m.rows, 2);
    ASSERT_OK(compress_cold_verify(dir, &parts[0].m, &err), &err);
    ASSERT_OK(compress_cold_verify(dir, &parts[1].m, &err), &err);
    data = read_back(dir, &parts[0].m);
    ASSERT_EQ_STR(data, "{\"id\":\"x\"}\n");
    sl_free(data);
    sl_free(parts);
    test_rmtree(root);
    free(root);
}

static void test_cold_refuses_bad_paths_and_data(void)
{
    char out[COMPRESS_COLD_PATH_MAX];
    char *root = test_tmpdir();
    struct compress_cold_writer *w = NULL;
    struct compress_manifest m = {0};
    struct sl_err err;

    ASSERT_EQ_INT(compress_cold_check_dir("SLUICE_COLD_DIR", "cold", &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "SLUICE_COLD_DIR must be an absolute path");
    ASSERT_OK(compress_cold_check_dir("SLUICE_COLD_DIR", "/var/lib/sluice/cold", &err), &err);
    ASSERT_EQ_INT(compress_cold_day_dir("/cold", "../etc", DAY, out, sizeof(out), &err),
                  SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "not a safe folder name");
    ASSERT_EQ_STR(out, "");
    ASSERT_EQ_INT(compress_cold_day_dir("/cold", "tn/x", DAY, out, sizeof(out), &err),
                  SL_EINVAL);
    ASSERT_EQ_INT(compress_cold_day_dir("/cold", "", DAY, out, sizeof(out), &err), SL_EINVAL);
    ASSERT_EQ_INT(compress_cold_day_dir("cold", TENANT, DAY, out, sizeof(out), &err),
                  SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "absolute");
    ASSERT_EQ_INT(compress_cold_day_dir("/cold", TENANT, "2026-02-29", out, sizeof(out), &err),
                  SL_EINVAL);
    ASSERT_EQ_INT(compress_cold_day_dir("/cold", TENANT, "2026-1-01", out, sizeof(out), &err),
                  SL_EINVAL);
    ASSERT_OK(compress_cold_day_dir("/cold/", TENANT, "2028-02-29", out, sizeof(out), &err),
              &err);
    ASSERT_EQ_STR(out, "/cold/" TENANT "/2028-02-29");

    /* Data that does not end a line is not JSONEachRow. */
    ASSERT_OK(compress_cold_writer_open(&w, root, 1, 3, &err), &err);
    ASSERT_OK(compress_cold_writer_write(w, "{\"a\":1}", 7, &err), &err);
    ASSERT_EQ_INT(compress_cold_writer_commit(w, &m, &err), SL_EINVAL);
    compress_cold_writer_destroy(w);
    ASSERT_EQ_INT(compress_cold_writer_open(&w, root, 0, 3, &err), SL_EINVAL);
    ASSERT_TRUE(w == NULL);
    test_rmtree(root);
    free(root);
}

static void test_cold_days(void)
{
    char day[COMPRESS_COLD_DAY_MAX];
    int64_t s = 0;
    struct sl_err err;

    compress_cold_day_of(1795478400, day);
    ASSERT_EQ_STR(day, "2026-11-24");
    compress_cold_day_of(1795478400 + 86399, day);
    ASSERT_EQ_STR(day, "2026-11-24");
    compress_cold_day_of(0, day);
    ASSERT_EQ_STR(day, "1970-01-01");
    ASSERT_OK(compress_cold_day_start("2026-11-24", &s, &err), &err);
    ASSERT_EQ_INT(s, 1795478400);
    ASSERT_OK(compress_cold_day_start("2024-02-29", &s, &err), &err);
    compress_cold_day_of(s, day);
    ASSERT_EQ_STR(day, "2024-02-29");
    ASSERT_EQ_INT(compress_cold_day_start("2024-02-30", &s, &err), SL_EINVAL);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_cold_part_round_trip),
        TEST_CASE(test_cold_corrupted_byte_is_caught),
        TEST_CASE(test_cold_truncated_file_is_caught),
        TEST_CASE(test_cold_torn_temp_file_is_ignored),
        TEST_CASE(test_cold_part_rewritten_replaces_old),
        TEST_CASE(test_cold_refuses_bad_paths_and_data),
        TEST_CASE(test_cold_days),
        {NULL, NULL},
    };

    return test_main(argc, argv, cases);
}

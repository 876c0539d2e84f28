/*
 * sluice restore: loads a tenant's cold parts (written by the compression job) back into
 * the raw events table, so compression is reversible. Every part in the day range is
 * verified first (zstd intact, sha256, rows as its manifest says); only when all are good
 * is any of them loaded, with INSERT INTO events (the manifest's columns) FORMAT JSONEachRow
 * streamed from the decompressor. Restoring twice counts nothing twice: rows keep their id,
 * time and version, so the ReplacingMergeTree key collapses them and the views' uniqExact
 * states count each event once. Days compression had deleted are marked 'restored' in
 * cold_exports, and the compression job leaves them raw for
 * SLUICE_JOB_COMPRESSION_RESTORE_HOLD_HOURS. Files are cold.h's; this file talks to the
 * store and ClickHouse and prints.
 */
#include <string.h>

#include "alloc.h"
#include "cli.h"
#include "cold.h"
#include "store_cold.h"

#define MIN_TIMEOUT_MS (30 * 60 * 1000)
#define READ_BYTES (256 * 1024)

static const char usage[] =
    "usage: sluice restore --tenant TENANT --from YYYY-MM-DD --to YYYY-MM-DD [--json]\n"
    "Loads the tenant's cold parts for the days FROM..TO (UTC, inclusive) from\n"
    "SLUICE_COLD_DIR back into the raw events table in SLUICE_CLICKHOUSE_DATABASE. Every\n"
    "part's checksum and row count are verified before anything is loaded; a bad part\n"
    "fails the command and loads nothing. Restoring again is harmless (events keep their\n"
    "ids and versions, so nothing is counted twice). Restored days stay raw for\n"
    "SLUICE_JOB_COMPRESSION_RESTORE_HOLD_HOURS before compression takes them again.\n";

/* Body source of the insert: the part's decompressed data. */
struct body {
    struct compress_cold_reader *r;
    struct sl_err err;
    bool failed;
};

static size_t read_body(void *buf, size_t cap, void *user)
{
    struct body *b = user;
    size_t n = 0;

    if (compress_cold_reader_read(b->r, buf, cap, &n, &b->err) != 0) {
        b->failed = true;
        return SL_CH_READ_ABORT;
    }
    return n;
}

/* Loads one verified part. *rows gets the rows sent. */
static int load_part(struct sl_ch *ch, const char *database, const struct compress_cold_part *p,
                     int64_t *rows, struct sl_err *err)
{
    struct body b = {0};
    struct sl_ch_buf sql;
    char path[2 * COMPRESS_COLD_PATH_MAX];
    char sha[COMPRESS_COLD_SHA256_HEX];
    const char *c = p->m.columns;
    int64_t bytes = 0;
    int rc = 0;

    if (strcmp(p->m.table, "events") != 0) {
        return sl_err_set(err, SL_EINVAL, "part %s/%s is of table '%s', not events", p->dir,
                          p->m.file, p->m.table);
    }
    sl_ch_buf_init(&sql, 64 * 1024);
    rc = sl_ch_buf_append_str(&sql, "INSERT INTO ");
    rc = rc != 0 ? rc : sl_ch_quote_ident(&sql, database, strlen(database));
    rc = rc != 0 ? rc : sl_ch_buf_append_str(&sql, ".events (");
    while (rc == 0 && *c != '\0') {
        size_t n = strcspn(c, ",");

        rc = c != p->m.columns ? sl_ch_buf_append_str(&sql, ", ") : 0;
        rc = rc != 0 ? rc : sl_ch_quote_ident(&sql, c, n);
        c += n;
        c += *c == ',';
    }
    rc = rc != 0 ? rc : sl_ch_buf_append_str(&sql, ") FORMAT JSONEachRow");
    if (rc != 0) {
        sl_ch_buf_fini(&sql);
        return sl_err_set(err, SL_ENOMEM, "out of memory building the insert");
    }
    snprintf(path, sizeof(path), "%s/%s", p->dir, p->m.file);
    rc = compress_cold_reader_open(&b.r, path, err);
    if (rc == 0) {
        sl_err_clear(&b.err);
        rc = sl_ch_insert_stream(ch, sql.data, read_body, &b, err);
        if (rc != 0 && b.failed) {
            *err = b.err;
            rc = b.err.code;
        }
    }
    if (rc == 0) {
        compress_cold_reader_totals(b.r, sha, &bytes, rows);
        if (*rows != p->m.rows || strcmp(sha, p->m.sha256) != 0) {
            rc = sl_err_set(err, SL_ESTATE, "%s changed while it was loaded (%lld rows, sha256 "
                            "%s); restore again", path, (long long)*rows, sha);
        }
    }
    compress_cold_reader_close(b.r);
    sl_ch_buf_fini(&sql);
    if (rc != 0) {
        sl_err_wrap(err, "loading %s", path);
    }
    return rc;
}

/* One day's totals for the report. */
struct day_total {
    char day[COMPRESS_COLD_DAY_MAX];
    int64_t parts;
    int64_t rows;
};

static int restore_run(struct cli_ctx *ctx, const char *tenant, const char *from,
                       const char *to, struct sl_err *err)
{
    struct compress_cold_part *parts = NULL;
    struct day_total *days = NULL;
    struct sl_ch_settings chs = *ctx->ch_settings;
    struct sl_store *st = NULL;
    struct sl_ch *ch = NULL;
    struct sl_tenant t;
    size_t n = 0, n_days = 0;
    int64_t total = 0;
    int rc;

    rc = cli_store(ctx, &st, err);
    rc = rc != 0 ? rc : sl_store_tenant_get(st, tenant, &t, err);
    rc = rc != 0 ? rc : compress_cold_list(ctx->cold_settings->dir, t.id, from, to, &parts, &n,
                                           err);
    /* Verify every part before loading any: a restore is all or nothing per command. */
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = compress_cold_verify(parts[i].dir, &parts[i].m, err);
        if (rc != 0) {
            sl_err_wrap(err, "verifying before restore (nothing loaded)");
        }
    }
    if (rc == 0 && n > 0) {
        if (chs.timeout_ms < MIN_TIMEOUT_MS) {
            chs.timeout_ms = MIN_TIMEOUT_MS; /* one request streams a whole part */
        }
        rc = sl_ch_create(&ch, &chs, err);
        days = sl_calloc(n, sizeof(*days));
        if (rc == 0 && days == NULL) {
            rc = sl_err_set(err, SL_ENOMEM, "out of memory");
        }
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int64_t rows = 0;

        rc = load_part(ch, ctx->ch_settings->database, &parts[i], &rows, err);
        if (rc != 0) {
            break;
        }
        if (n_days == 0 || strcmp(days[n_days - 1].day, parts[i].m.day) != 0) {
            snprintf(days[n_days++].day, COMPRESS_COLD_DAY_MAX, "%s", parts[i].m.day);
        }
        days[n_days - 1].parts++;
        days[n_days - 1].rows += rows;
        total += rows;
    }
    /* A day whose raw rows compression had deleted is raw again. */
    for (size_t i = 0; rc == 0 && i < n_days; i++) {
        struct sl_cold_day d;

        if (sl_store_cold_get(st, t.id, days[i].day, &d, NULL) == 0 &&
            strcmp(d.state, "deleted") == 0) {
            rc = sl_store_cold_set_state(st, t.id, days[i].day, "deleted", "restored",
                                         ctx->now_s, err);
        }
    }
    if (rc == 0 && ctx->is_json) {
        json_t *arr = json_array();

        for (size_t i = 0; i < n_days; i++) {
            json_array_append_new(arr, json_pack("{s:s, s:I, s:I}", "day", days[i].day, "parts",
                                                 (json_int_t)days[i].parts, "rows",
                                                 (json_int_t)days[i].rows));
        }
        cli_print_json(ctx, json_pack("{s:s, s:s, s:s, s:o, s:I}", "tenant_id", t.id, "from",
                                      from, "to", to, "days", arr, "rows", (json_int_t)total));
    }
    else if (rc == 0) {
        fprintf(ctx->out, "%-12s %6s %12s\n", "DAY", "PARTS", "ROWS");
        for (size_t i = 0; i < n_days; i++) {
            fprintf(ctx->out, "%-12s %6lld %12lld\n", days[i].day, (long long)days[i].parts,
                    (long long)days[i].rows);
        }
        fprintf(ctx->out, "restored %lld events of tenant %s (%s) from %zu parts\n",
                (long long)total, t.name, t.id, n);
    }
    sl_ch_destroy(ch);
    sl_free(days);
    sl_free(parts);
    return rc;
}

int cli_restore_main(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cli_flag flags[] = {
        {.name = "--tenant", .takes_value = true},
        {.name = "--from", .takes_value = true},
        {.name = "--to", .takes_value = true},
    };
    const char *pos[1];
    size_t n_pos = 0;
    bool help = false;
    struct sl_err err;
    int rc = cli_args_parse(ctx, argc + 1, argv - 1, flags, 3, pos, 0, &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    for (size_t i = 0; i < 3; i++) {
        if (!flags[i].is_set) {
            return cli_usage_error(ctx, "restore", "%s is required", flags[i].name);
        }
    }
    sl_err_clear(&err);
    if (compress_cold_day_check(flags[1].value, &err) != 0 ||
        compress_cold_day_check(flags[2].value, &err) != 0) {
        return cli_usage_error(ctx, "restore", "%s", err.msg);
    }
    if (strcmp(flags[1].value, flags[2].value) > 0) {
        return cli_usage_error(ctx, "restore", "--from %s is after --to %s", flags[1].value,
                               flags[2].value);
    }
    if (restore_run(ctx, flags[0].value, flags[1].value, flags[2].value, &err) != 0) {
        /* The command line was checked above: what fails now (a bad manifest included)
         * is a failed operation, exit 1, never bad usage. */
        err.code = err.code == SL_EINVAL ? SL_ESTATE : err.code;
        return cli_fail(ctx, &err);
    }
    return CLI_OK;
}

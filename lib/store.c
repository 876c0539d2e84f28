/*
 * Opening the tenant store: pragmas (WAL, busy timeout, foreign keys), the application
 * id that marks a sluice file, and the migration runner. Record operations live in
 * store_tier.c, store_tenant.c, store_key.c and store_alert.c.
 */
#include "store_int.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"

/* 'SLCE': marks a SQLite file as a sluice tenant store. */
#define STORE_APPLICATION_ID 0x534C4345

const struct sl_cfg_opt sl_store_cfg_opts[] = {
    {.key = "SLUICE_DB", .type = SL_CFG_STRING, .def = "sluice.db",
     .offset = offsetof(struct sl_store_settings, path),
     .desc = "SQLite file holding tenants, tiers, keys, alert channels and job state."},
    {.key = "SLUICE_DB_BUSY_TIMEOUT_MS", .type = SL_CFG_INT, .def = "5000", .min = 0,
     .max = 600000, .offset = offsetof(struct sl_store_settings, busy_timeout_ms),
     .desc = "How long a write waits for another process's lock on the SQLite file."},
    {.key = "SLUICE_KEY_ROTATION_GRACE_HOURS", .type = SL_CFG_INT, .def = "24", .min = 0,
     .max = 24 * 365, .offset = offsetof(struct sl_store_settings, key_rotation_grace_hours),
     .desc = "Default time an API key stays valid after `sluice key rotate`."},
};
const size_t sl_store_cfg_n_opts = sizeof(sl_store_cfg_opts) / sizeof(sl_store_cfg_opts[0]);

int sl_store_fail(struct sl_store *st, int rc, const char *what, struct sl_err *err)
{
    const char *msg = st != NULL && st->db != NULL ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc);
    int code;

    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        code = SL_EBUSY;
        break;
    case SQLITE_NOMEM:
        code = SL_ENOMEM;
        break;
    case SQLITE_CONSTRAINT:
        code = SL_EINVAL;
        break;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
        code = SL_ESCHEMA;
        break;
    default:
        code = SL_EIO;
        break;
    }
    return sl_err_set(err, code, "%s: %s (tenant store %s)", what, msg,
                      st != NULL ? st->path : "?");
}

int sl_store_prepare(struct sl_store *st, const char *sql, sqlite3_stmt **out,
                     struct sl_err *err)
{
    int rc = sqlite3_prepare_v2(st->db, sql, -1, out, NULL);

    if (rc != SQLITE_OK) {
        *out = NULL;
        return sl_store_fail(st, rc, "preparing a statement", err);
    }
    return 0;
}

void sl_store_col_text(sqlite3_stmt *stmt, int col, char *dst, size_t cap)
{
    const unsigned char *s = sqlite3_column_text(stmt, col);

    snprintf(dst, cap, "%s", s != NULL ? (const char *)s : "");
}

int sl_store_copy_field(char *dst, size_t cap, const char *src, const char *what,
                        struct sl_err *err)
{
    size_t len = strlen(src);

    if (len >= cap) {
        return sl_err_set(err, SL_EINVAL, "%s is longer than %zu bytes", what, cap - 1);
    }
    memcpy(dst, src, len + 1);
    return 0;
}

int sl_store_random_id(const char *prefix, size_t n_bytes, char *dst, size_t cap,
                       struct sl_err *err)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[32];
    size_t plen = strlen(prefix);

    if (n_bytes > sizeof(raw) || plen + 2 * n_bytes + 1 > cap) {
        return sl_err_set(err, SL_EINVAL, "id buffer too small");
    }
    if (RAND_bytes(raw, (int)n_bytes) != 1) {
        return sl_err_set(err, SL_EIO, "the system random generator failed");
    }
    memcpy(dst, prefix, plen);
    for (size_t i = 0; i < n_bytes; i++) {
        dst[plen + 2 * i] = hex[raw[i] >> 4];
        dst[plen + 2 * i + 1] = hex[raw[i] & 15];
    }
    dst[plen + 2 * n_bytes] = '\0';
    return 0;
}

int sl_store_row(struct sl_store *st, sqlite3_stmt *stmt, sl_store_read_cb read, void *dst,
                 const char *what, struct sl_err *err)
{
    int rc = sqlite3_step(stmt);

    if (rc == SQLITE_ROW) {
        read(stmt, dst);
        rc = 0;
    }
    else if (rc == SQLITE_DONE) {
        rc = SL_ENOTFOUND;
    }
    else {
        rc = sl_store_fail(st, rc, what, err);
    }
    sqlite3_finalize(stmt);
    return rc;
}

int sl_store_get(struct sl_store *st, const char *sql, const char *arg, sl_store_read_cb read,
                 void *dst, const char *noun, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st, sql, &stmt, err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, arg, -1, SQLITE_STATIC);
    rc = sl_store_row(st, stmt, read, dst, noun, err);
    if (rc == SL_ENOTFOUND) {
        rc = sl_err_set(err, SL_ENOTFOUND, "%s '%s' not found (see `sluice %s list`)", noun,
                        arg, noun);
    }
    return rc;
}

int sl_store_collect(struct sl_store *st, sqlite3_stmt *stmt, size_t elem,
                     sl_store_read_cb read, void **out, size_t *n_out, const char *what,
                     struct sl_err *err)
{
    char *items = NULL;
    size_t n = 0, cap = 0;
    int rc;

    *out = NULL;
    *n_out = 0;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (n == cap) {
            size_t new_cap = cap == 0 ? 16 : cap * 2;
            char *grown = sl_realloc(items, new_cap * elem);

            if (grown == NULL) {
                rc = sl_err_set(err, SL_ENOMEM, "out of memory %s", what);
                goto done;
            }
            items = grown;
            cap = new_cap;
        }
        read(stmt, items + n * elem);
        n++;
    }
    rc = rc == SQLITE_DONE ? 0 : sl_store_fail(st, rc, what, err);

done:
    sqlite3_finalize(stmt);
    if (rc != 0) {
        sl_free(items);
        return rc;
    }
    *out = items;
    *n_out = n;
    return 0;
}

int sl_store_list(struct sl_store *st, const char *sql, const char *arg, size_t elem,
                  sl_store_read_cb read, void **out, size_t *n_out, const char *what,
                  struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc;

    *out = NULL;
    *n_out = 0;
    rc = sl_store_prepare(st, sql, &stmt, err);
    if (rc != 0) {
        return rc;
    }
    if (arg != NULL) {
        sqlite3_bind_text(stmt, 1, arg, -1, SQLITE_STATIC);
    }
    return sl_store_collect(st, stmt, elem, read, out, n_out, what, err);
}

void sl_store_rollback(struct sl_store *st)
{
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
}

const char *sl_store_enum_name(const char *const *names, size_t n, unsigned value)
{
    return value < n ? names[value] : "unknown";
}

int sl_store_enum_parse(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; name != NULL && i < n; i++) {
        if (strcmp(name, names[i]) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static int pragma_int(struct sl_store *st, const char *sql, int *out, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st, sql, &stmt, err);

    if (rc != 0) {
        return rc;
    }
    rc = sqlite3_step(stmt);
    if (rc != SQLITE_ROW) {
        rc = sl_store_fail(st, rc, sql, err);
        sqlite3_finalize(stmt);
        return rc;
    }
    *out = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    return 0;
}

int sl_store_exec(struct sl_store *st, const char *sql, const char *what, struct sl_err *err)
{
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);

    return rc == SQLITE_OK ? 0 : sl_store_fail(st, rc, what, err);
}

int sl_store_step_done(struct sl_store *st, sqlite3_stmt *stmt, const char *what,
                       struct sl_err *err)
{
    int rc = sqlite3_step(stmt);

    rc = rc == SQLITE_DONE ? 0 : sl_store_fail(st, rc, what, err);
    sqlite3_finalize(stmt);
    return rc;
}

/* Runs the migrations after the file's version up to target, all in one transaction. */
static int migrate(struct sl_store *st, int target, struct sl_err *err)
{
    char sql[64];
    int version = 0;
    int n_tables = 0;
    int app_id = 0;
    int rc;

    rc = sl_store_exec(st, "BEGIN IMMEDIATE", "locking the tenant store to upgrade it", err);
    if (rc != 0) {
        return rc;
    }
    rc = pragma_int(st, "PRAGMA user_version", &version, err);
    if (rc == 0) {
        rc = pragma_int(st, "PRAGMA application_id", &app_id, err);
    }
    if (rc == 0) {
        rc = pragma_int(st, "SELECT count(*) FROM sqlite_master", &n_tables, err);
    }
    if (rc != 0) {
        goto rollback;
    }
    if (app_id != STORE_APPLICATION_ID && (app_id != 0 || n_tables != 0)) {
        rc = sl_err_set(err, SL_ESCHEMA, "%s is not a sluice tenant store (application id "
                        "%d); point SLUICE_DB at a sluice database or a new file", st->path,
                        app_id);
        goto rollback;
    }
    if (version > SL_STORE_SCHEMA_VERSION) {
        rc = sl_err_set(err, SL_ESCHEMA, "%s has schema version %d, newer than this sluice "
                        "understands (%d); upgrade sluice before using this database",
                        st->path, version, SL_STORE_SCHEMA_VERSION);
        goto rollback;
    }
    for (size_t i = 0; i < sl_store_n_migrations; i++) {
        const struct sl_store_migration *m = &sl_store_migrations[i];

        if (m->version <= version || m->version > target) {
            continue;
        }
        rc = sqlite3_exec(st->db, m->sql, NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            snprintf(sql, sizeof(sql), "upgrading the schema to version %d", m->version);
            rc = sl_store_fail(st, rc, sql, err);
            goto rollback;
        }
        version = m->version;
    }
    snprintf(sql, sizeof(sql), "PRAGMA application_id = %d", STORE_APPLICATION_ID);
    rc = sl_store_exec(st, sql, "marking the tenant store", err);
    if (rc == 0) {
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", version);
        rc = sl_store_exec(st, sql, "recording the schema version", err);
    }
    if (rc == 0) {
        rc = sl_store_exec(st, "COMMIT", "committing the schema upgrade", err);
    }
    if (rc != 0) {
        goto rollback;
    }
    st->version = version;
    return 0;

rollback:
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int sl_store_open_version(struct sl_store **out, const char *path, int64_t busy_timeout_ms,
                          int version, struct sl_err *err)
{
    struct sl_store *st = NULL;
    int rc;

    *out = NULL;
    if (version < 0 || version > SL_STORE_SCHEMA_VERSION) {
        return sl_err_set(err, SL_EINVAL, "no schema version %d", version);
    }
    st = sl_calloc(1, sizeof(*st));
    if (st == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory opening %s", path);
    }
    snprintf(st->path, sizeof(st->path), "%s", path);
    rc = sqlite3_open_v2(path, &st->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                         NULL);
    if (rc != SQLITE_OK) {
        rc = sl_store_fail(st, rc, "opening the tenant store", err);
        goto fail;
    }
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, (int)busy_timeout_ms);
    rc = sl_store_exec(st, "PRAGMA foreign_keys = ON", "enabling foreign keys", err);
    if (rc == 0) {
        rc = sl_store_exec(st, "PRAGMA journal_mode = WAL", "switching to WAL mode", err);
    }
    if (rc == 0) {
        rc = sl_store_exec(st, "PRAGMA synchronous = NORMAL", "setting synchronous mode", err);
    }
    if (rc != 0) {
        goto fail;
    }
    rc = migrate(st, version, err);
    if (rc != 0) {
        goto fail;
    }
    *out = st;
    return 0;

fail:
    sl_store_close(st);
    return rc;
}

int sl_store_open(struct sl_store **out, const char *path, int64_t busy_timeout_ms,
                  struct sl_err *err)
{
    return sl_store_open_version(out, path, busy_timeout_ms, SL_STORE_SCHEMA_VERSION, err);
}

void sl_store_close(struct sl_store *st)
{
    if (st == NULL) {
        return;
    }
    sqlite3_close_v2(st->db);
    sl_free(st);
}

int sl_store_schema_version(const struct sl_store *st)
{
    return st->version;
}

int sl_store_ping(struct sl_store *st, struct sl_err *err)
{
    int n = 0;

    return pragma_int(st, "SELECT count(*) FROM tiers", &n, err);
}

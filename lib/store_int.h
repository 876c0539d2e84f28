/*
 * Internals shared by the store_*.c files: the handle's layout, the migration list and
 * small statement helpers. Nothing outside lib/store*.c includes this.
 */
#ifndef SLUICE_LIB_STORE_INT_H
#define SLUICE_LIB_STORE_INT_H

#include <sqlite3.h>

#include "store.h"

struct sl_store {
    sqlite3 *db;
    int version;
    char path[1024];
};

/* One schema step: the SQL that takes a file from version - 1 to version. */
struct sl_store_migration {
    int version;
    const char *sql;
};

extern const struct sl_store_migration sl_store_migrations[];
extern const size_t sl_store_n_migrations;

/* Prepares sql; on failure fills err with SQLite's message. */
int sl_store_prepare(struct sl_store *st, const char *sql, sqlite3_stmt **out,
                     struct sl_err *err);

/* Maps a failed sqlite3 call (rc) to an SL_E code and fills err with `what` and SQLite's
 * message. Returns the SL_E code. */
int sl_store_fail(struct sl_store *st, int rc, const char *what, struct sl_err *err);

/* Copies column col of the current row into dst (always NUL-terminated, "" for NULL). */
void sl_store_col_text(sqlite3_stmt *stmt, int col, char *dst, size_t cap);

/* Writes "<prefix><hex of n_bytes random bytes>" into dst. */
int sl_store_random_id(const char *prefix, size_t n_bytes, char *dst, size_t cap,
                       struct sl_err *err);

/* Runs SQL without results (several statements allowed); SQLite's error in err. */
int sl_store_exec(struct sl_store *st, const char *sql, const char *what, struct sl_err *err);

/* Steps a statement that returns no rows, then finalizes it (also on failure). */
int sl_store_step_done(struct sl_store *st, sqlite3_stmt *stmt, const char *what,
                       struct sl_err *err);

/* Reads the current row of stmt into dst (a record struct). */
typedef void (*sl_store_read_cb)(sqlite3_stmt *stmt, void *dst);

/*
 * Runs sql with ?1 bound to arg and reads the one row it returns into dst with read. When
 * there is none: SL_ENOTFOUND, "<noun> '<arg>' not found (see `sluice <noun> list`)".
 */
int sl_store_get(struct sl_store *st, const char *sql, const char *arg, sl_store_read_cb read,
                 void *dst, const char *noun, struct sl_err *err);

/*
 * Runs sql with ?1 bound to arg (NULL: nothing bound) and reads every row with read into a
 * new array of elem-sized records (*out, free with sl_free; NULL when empty).
 */
int sl_store_list(struct sl_store *st, const char *sql, const char *arg, size_t elem,
                  sl_store_read_cb read, void **out, size_t *n_out, const char *what,
                  struct sl_err *err);

/*
 * Steps a prepared, bound statement and reads every row with read into a new array of
 * elem-sized records (*out, free with sl_free; NULL when empty); finalizes stmt.
 */
int sl_store_collect(struct sl_store *st, sqlite3_stmt *stmt, size_t elem,
                     sl_store_read_cb read, void **out, size_t *n_out, const char *what,
                     struct sl_err *err);

/*
 * Steps a prepared, bound statement and reads its first row into dst with read; finalizes
 * stmt. SL_ENOTFOUND without a message when there is none (the caller says what is
 * missing), the store's failure (with `what`) otherwise.
 */
int sl_store_row(struct sl_store *st, sqlite3_stmt *stmt, sl_store_read_cb read, void *dst,
                 const char *what, struct sl_err *err);

/* Rolls back the open transaction (best effort: after a failure, nothing to report). */
void sl_store_rollback(struct sl_store *st);

/*
 * Names of an enum stored as text: names has n entries indexed by value. sl_store_enum_name
 * gives value's name, "unknown" out of range; sl_store_enum_parse gives the value of name,
 * -1 when name is NULL or none. Never fail otherwise.
 */
const char *sl_store_enum_name(const char *const *names, size_t n, unsigned value);
int sl_store_enum_parse(const char *const *names, size_t n, const char *name);

/* Resolves a tenant id or name to its id; SL_ENOTFOUND with a helpful message. */
int sl_store_tenant_resolve(struct sl_store *st, const char *id_or_name,
                            char id_out[SL_STORE_ID_MAX], struct sl_err *err);

/* Copies src into a fixed field; SL_EINVAL naming `what` when it does not fit. */
int sl_store_copy_field(char *dst, size_t cap, const char *src, const char *what,
                        struct sl_err *err);

#endif

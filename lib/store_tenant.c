/* Tenants: who sends events, on which tier, with which overrides, active or disabled. */
#include "store_int.h"

#include <ctype.h>
#include <string.h>

#include "alloc.h"

#define TENANT_COLUMNS                                                                    \
    "id, name, tier, disabled_at, retention_days_override, rate_limit_override, "         \
    "burst_override, created_at, updated_at, previous_tier, tier_changed_at, drop_bots"

static int64_t col_opt(sqlite3_stmt *stmt, int col, int64_t none)
{
    return sqlite3_column_type(stmt, col) == SQLITE_NULL ? none
                                                          : sqlite3_column_int64(stmt, col);
}

static void read_tenant(sqlite3_stmt *stmt, void *dst)
{
    struct sl_tenant *t = dst;

    memset(t, 0, sizeof(*t));
    sl_store_col_text(stmt, 0, t->id, sizeof(t->id));
    sl_store_col_text(stmt, 1, t->name, sizeof(t->name));
    sl_store_col_text(stmt, 2, t->tier, sizeof(t->tier));
    t->disabled_s = col_opt(stmt, 3, 0);
    t->is_disabled = t->disabled_s != 0;
    t->retention_days_override = col_opt(stmt, 4, -1);
    t->rate_limit_override = col_opt(stmt, 5, -1);
    t->burst_override = col_opt(stmt, 6, -1);
    t->created_s = sqlite3_column_int64(stmt, 7);
    t->updated_s = sqlite3_column_int64(stmt, 8);
    sl_store_col_text(stmt, 9, t->previous_tier, sizeof(t->previous_tier));
    t->tier_changed_s = col_opt(stmt, 10, 0);
    t->drop_bots = sqlite3_column_int(stmt, 11) != 0;
}

static int check_name(const char *name, struct sl_err *err)
{
    size_t len = strlen(name);

    if (len == 0 || len >= SL_STORE_NAME_MAX) {
        return sl_err_set(err, SL_EINVAL, "tenant name must be 1 to %d characters",
                          SL_STORE_NAME_MAX - 1);
    }
    if (strncmp(name, "tn_", 3) == 0) {
        return sl_err_set(err, SL_EINVAL, "tenant name '%s' may not start with tn_ (that is "
                          "how tenant ids start)", name);
    }
    for (size_t i = 0; i < len; i++) {
        char c = name[i];

        if (!(isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.')) {
            return sl_err_set(err, SL_EINVAL, "tenant name '%s' may use only letters, digits, "
                              "'.', '_' and '-'", name);
        }
    }
    return 0;
}

int sl_store_tenant_get(struct sl_store *st, const char *id_or_name, struct sl_tenant *out,
                        struct sl_err *err)
{
    return sl_store_get(st, "SELECT " TENANT_COLUMNS " FROM tenants WHERE id = ?1 OR name = ?1",
                        id_or_name, read_tenant, out, "tenant", err);
}

int sl_store_tenant_resolve(struct sl_store *st, const char *id_or_name,
                            char id_out[SL_STORE_ID_MAX], struct sl_err *err)
{
    struct sl_tenant t;
    int rc = sl_store_tenant_get(st, id_or_name, &t, err);

    if (rc == 0) {
        memcpy(id_out, t.id, SL_STORE_ID_MAX);
    }
    return rc;
}

int sl_store_tenant_create(struct sl_store *st, const char *name, const char *tier,
                           int64_t now_s, struct sl_tenant *out, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    struct sl_tier tier_row;
    struct sl_tenant existing;
    char id[SL_STORE_ID_MAX];
    int rc = check_name(name, err);

    if (rc != 0) {
        return rc;
    }
    rc = sl_store_tier_get(st, tier, &tier_row, err);
    if (rc != 0) {
        return rc;
    }
    if (sl_store_tenant_get(st, name, &existing, NULL) == 0) {
        return sl_err_set(err, SL_EEXIST, "tenant '%s' already exists (id %s)", name,
                          existing.id);
    }
    rc = sl_store_random_id("tn_", 8, id, sizeof(id), err);
    if (rc != 0) {
        return rc;
    }
    rc = sl_store_prepare(st,
                          "INSERT INTO tenants (id, name, tier, created_at, updated_at) "
                          "VALUES (?1, ?2, ?3, ?4, ?4)",
                          &stmt, err);
    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, tier, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 4, now_s);
    rc = sl_store_step_done(st, stmt, "creating a tenant", err);
    if (rc != 0) {
        return rc;
    }
    return out != NULL ? sl_store_tenant_get(st, id, out, err) : 0;
}

int sl_store_tenant_list(struct sl_store *st, struct sl_tenant **out, size_t *n_out,
                         struct sl_err *err)
{
    return sl_store_list(st, "SELECT " TENANT_COLUMNS " FROM tenants ORDER BY name", NULL,
                         sizeof(**out), read_tenant, (void **)out, n_out, "listing tenants",
                         err);
}

/* Runs an UPDATE bound to (?1 tenant id, ?2 now, then the given values). */
static int update_tenant(struct sl_store *st, const char *id, const char *sql, int64_t now_s,
                         const int64_t *vals, size_t n_vals, const char *text3,
                         const char *what, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st, sql, &stmt, err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, now_s);
    if (text3 != NULL) {
        sqlite3_bind_text(stmt, 3, text3, -1, SQLITE_STATIC);
    }
    for (size_t i = 0; i < n_vals; i++) {
        if (vals[i] < 0) {
            sqlite3_bind_null(stmt, (int)i + 3);
        }
        else {
            sqlite3_bind_int64(stmt, (int)i + 3, vals[i]);
        }
    }
    return sl_store_step_done(st, stmt, what, err);
}

int sl_store_tenant_set_tier(struct sl_store *st, const char *id_or_name, const char *tier,
                             int64_t now_s, struct sl_err *err)
{
    struct sl_tenant t;
    struct sl_tier tier_row;
    int rc = sl_store_tenant_get(st, id_or_name, &t, err);

    if (rc != 0) {
        return rc;
    }
    rc = sl_store_tier_get(st, tier, &tier_row, err);
    if (rc != 0 || strcmp(t.tier, tier) == 0) {
        return rc;
    }
    return update_tenant(st, t.id,
                         "UPDATE tenants SET previous_tier = tier, tier = ?3, "
                         "tier_changed_at = ?2, updated_at = ?2 WHERE id = ?1",
                         now_s, NULL, 0, tier, "changing a tenant's tier", err);
}

int sl_store_tenant_set_disabled(struct sl_store *st, const char *id_or_name, bool disabled,
                                 int64_t now_s, struct sl_err *err)
{
    struct sl_tenant t;
    int rc = sl_store_tenant_get(st, id_or_name, &t, err);

    if (rc != 0) {
        return rc;
    }
    if (t.is_disabled == disabled) {
        return 0;
    }
    return update_tenant(st, t.id,
                         disabled ? "UPDATE tenants SET disabled_at = ?2, updated_at = ?2 "
                                    "WHERE id = ?1"
                                  : "UPDATE tenants SET disabled_at = NULL, updated_at = ?2 "
                                    "WHERE id = ?1",
                         now_s, NULL, 0, NULL, "disabling a tenant", err);
}

int sl_store_tenant_set_drop_bots(struct sl_store *st, const char *id_or_name, bool drop_bots,
                                  int64_t now_s, struct sl_err *err)
{
    const int64_t vals[] = {drop_bots ? 1 : 0};
    struct sl_tenant t;
    int rc = sl_store_tenant_get(st, id_or_name, &t, err);

    if (rc != 0 || t.drop_bots == drop_bots) {
        return rc;
    }
    return update_tenant(st, t.id,
                         "UPDATE tenants SET drop_bots = ?3, updated_at = ?2 WHERE id = ?1",
                         now_s, vals, 1, NULL, "setting a tenant's bot handling", err);
}

int sl_store_tenant_set_limits(struct sl_store *st, const char *id_or_name,
                               int64_t rate_limit_eps, int64_t burst, int64_t retention_days,
                               int64_t now_s, struct sl_err *err)
{
    const int64_t vals[] = {rate_limit_eps, burst, retention_days};
    struct sl_tenant t;
    int rc;

    if (rate_limit_eps == 0 || burst == 0 || retention_days == 0) {
        return sl_err_set(err, SL_EINVAL, "overrides must be at least 1 (or cleared)");
    }
    rc = sl_store_tenant_get(st, id_or_name, &t, err);
    if (rc != 0) {
        return rc;
    }
    return update_tenant(st, t.id,
                         "UPDATE tenants SET rate_limit_override = ?3, burst_override = ?4, "
                         "retention_days_override = ?5, updated_at = ?2 WHERE id = ?1",
                         now_s, vals, 3, NULL, "setting a tenant's limits", err);
}

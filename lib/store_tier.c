/* Tiers: what a tenant's plan allows (retention, compression age, limits, quota). */
#include "store_int.h"

#include <ctype.h>
#include <string.h>

#include "alloc.h"

#define TIER_COLUMNS                                                                      \
    "name, retention_days, compress_after_hours, rate_limit_eps, burst, monthly_quota, "  \
    "enrichment, created_at, updated_at, reenrich_days"

static void read_tier(sqlite3_stmt *stmt, void *dst)
{
    struct sl_tier *t = dst;

    memset(t, 0, sizeof(*t));
    sl_store_col_text(stmt, 0, t->name, sizeof(t->name));
    t->retention_days = sqlite3_column_int64(stmt, 1);
    t->compress_after_hours = sqlite3_column_int64(stmt, 2);
    t->rate_limit_eps = sqlite3_column_int64(stmt, 3);
    t->burst = sqlite3_column_int64(stmt, 4);
    t->monthly_quota = sqlite3_column_int64(stmt, 5);
    t->has_enrichment = sqlite3_column_int(stmt, 6) != 0;
    t->created_s = sqlite3_column_int64(stmt, 7);
    t->updated_s = sqlite3_column_int64(stmt, 8);
    t->reenrich_days = sqlite3_column_int64(stmt, 9);
}

int sl_store_tier_get(struct sl_store *st, const char *name, struct sl_tier *out,
                      struct sl_err *err)
{
    return sl_store_get(st, "SELECT " TIER_COLUMNS " FROM tiers WHERE name = ?1", name,
                        read_tier, out, "tier", err);
}

int sl_store_tier_list(struct sl_store *st, struct sl_tier **out, size_t *n_out,
                       struct sl_err *err)
{
    return sl_store_list(st, "SELECT " TIER_COLUMNS " FROM tiers ORDER BY name", NULL,
                         sizeof(**out), read_tier, (void **)out, n_out, "listing tiers", err);
}

static int check_tier(const struct sl_tier *t, struct sl_err *err)
{
    size_t len = strlen(t->name);

    if (len == 0 || len >= SL_STORE_TIER_MAX) {
        return sl_err_set(err, SL_EINVAL, "tier name must be 1 to %d characters",
                          SL_STORE_TIER_MAX - 1);
    }
    for (size_t i = 0; i < len; i++) {
        char c = t->name[i];

        if (!(islower((unsigned char)c) || isdigit((unsigned char)c) || c == '_' || c == '-')) {
            return sl_err_set(err, SL_EINVAL, "tier name '%s' may use only a-z, 0-9, _ and -",
                              t->name);
        }
    }
    if (t->retention_days < 1 || t->retention_days > 36500) {
        return sl_err_set(err, SL_EINVAL, "retention days must be 1..36500, not %lld",
                          (long long)t->retention_days);
    }
    if (t->compress_after_hours < 0 || t->compress_after_hours > 24 * 36500) {
        return sl_err_set(err, SL_EINVAL, "compress-after hours must be 0 (never) or more");
    }
    if (t->compress_after_hours > 0 && t->compress_after_hours > t->retention_days * 24) {
        return sl_err_set(err, SL_EINVAL, "compress-after (%lld h) is past the retention "
                          "(%lld days): rows would be deleted before they are compressed",
                          (long long)t->compress_after_hours, (long long)t->retention_days);
    }
    if (t->rate_limit_eps < 1 || t->burst < 1) {
        return sl_err_set(err, SL_EINVAL, "rate limit and burst must be at least 1");
    }
    if (t->burst < t->rate_limit_eps) {
        return sl_err_set(err, SL_EINVAL, "burst (%lld) must be at least the rate limit "
                          "(%lld events/s)", (long long)t->burst, (long long)t->rate_limit_eps);
    }
    if (t->reenrich_days < 0 || t->reenrich_days > 36500) {
        return sl_err_set(err, SL_EINVAL, "re-enrichment days must be 0 (never) to 36500");
    }
    if (t->monthly_quota < 0) {
        return sl_err_set(err, SL_EINVAL, "monthly quota must be 0 (unlimited) or more");
    }
    return 0;
}

int sl_store_tier_put(struct sl_store *st, const struct sl_tier *t, int64_t now_s,
                      struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = check_tier(t, err);

    if (rc != 0) {
        return rc;
    }
    rc = sl_store_prepare(st,
                          "INSERT INTO tiers (" TIER_COLUMNS ") "
                          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9) "
                          "ON CONFLICT(name) DO UPDATE SET retention_days = ?2, "
                          "compress_after_hours = ?3, rate_limit_eps = ?4, burst = ?5, "
                          "monthly_quota = ?6, enrichment = ?7, updated_at = ?8, "
                          "reenrich_days = ?9",
                          &stmt, err);
    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, t->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, t->retention_days);
    sqlite3_bind_int64(stmt, 3, t->compress_after_hours);
    sqlite3_bind_int64(stmt, 4, t->rate_limit_eps);
    sqlite3_bind_int64(stmt, 5, t->burst);
    sqlite3_bind_int64(stmt, 6, t->monthly_quota);
    sqlite3_bind_int(stmt, 7, t->has_enrichment ? 1 : 0);
    sqlite3_bind_int64(stmt, 8, now_s);
    sqlite3_bind_int64(stmt, 9, t->reenrich_days);
    rc = sl_store_step_done(st, stmt, "saving a tier", err);
    return rc;
}

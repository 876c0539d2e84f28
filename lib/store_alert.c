/*
 * Alert channels (where notifications go) and alert rules (what fires them). The notify
 * worker reads these; alert state and deliveries are store_notify.c's.
 */
#include "store_int.h"
#include "store_notify.h"

#include <math.h>
#include <string.h>

#include "alloc.h"

static const char *const channel_kinds[] = {"log", "webhook", "slack", "discord", "email"};

struct rule_kind {
    const char *name;
    double min;
    double max;
    const char *unit;
    bool is_system; /* about sluice itself, not a tenant: global rules only */
};

static const struct rule_kind rule_kinds[] = {
    {"error_rate", 0.0, 1.0, "share of error events in the window (0..1)", false},
    {"quota", 1.0, 1000.0, "percent of the monthly quota used", false},
    {"ingestion_stopped", 0.0, 0.0, "0 (fires when no events arrive for the window)", false},
    {"dlq_growth", 1.0, 1e12, "dead letters added in the window", true},
    {"loader_lag", 1.0, 1e12, "events the loader is behind", true},
};

#define CHANNEL_COLUMNS "id, tenant_id, name, kind, target, secret IS NOT NULL, created_at"
#define RULE_COLUMNS                                                                      \
    "id, tenant_id, name, kind, threshold, window_s, cooldown_s, channel_id, enabled, "   \
    "created_at"

static void read_channel(sqlite3_stmt *stmt, void *dst)
{
    struct sl_channel *c = dst;

    memset(c, 0, sizeof(*c));
    sl_store_col_text(stmt, 0, c->id, sizeof(c->id));
    sl_store_col_text(stmt, 1, c->tenant_id, sizeof(c->tenant_id));
    sl_store_col_text(stmt, 2, c->name, sizeof(c->name));
    sl_store_col_text(stmt, 3, c->kind, sizeof(c->kind));
    sl_store_col_text(stmt, 4, c->target, sizeof(c->target));
    c->has_secret = sqlite3_column_int(stmt, 5) != 0;
    c->created_s = sqlite3_column_int64(stmt, 6);
}

static void read_rule(sqlite3_stmt *stmt, void *dst)
{
    struct sl_rule *r = dst;

    memset(r, 0, sizeof(*r));
    sl_store_col_text(stmt, 0, r->id, sizeof(r->id));
    sl_store_col_text(stmt, 1, r->tenant_id, sizeof(r->tenant_id));
    sl_store_col_text(stmt, 2, r->name, sizeof(r->name));
    sl_store_col_text(stmt, 3, r->kind, sizeof(r->kind));
    r->threshold = sqlite3_column_double(stmt, 4);
    r->window_s = sqlite3_column_int64(stmt, 5);
    r->cooldown_s = sqlite3_column_int64(stmt, 6);
    sl_store_col_text(stmt, 7, r->channel_id, sizeof(r->channel_id));
    r->is_enabled = sqlite3_column_int(stmt, 8) != 0;
    r->created_s = sqlite3_column_int64(stmt, 9);
}

static bool is_http_url(const char *s)
{
    const char *host = NULL;

    if (strncmp(s, "https://", 8) == 0) {
        host = s + 8;
    }
    else if (strncmp(s, "http://", 7) == 0) {
        host = s + 7;
    }
    return host != NULL && host[0] != '\0' && host[0] != '/' && strpbrk(s, " \t\r\n") == NULL;
}

/* Checks "a@b.c,d@e.f": each address has one '@' with text on both sides, no spaces. */
static bool is_address_list(const char *s)
{
    const char *p = s;

    if (s[0] == '\0' || strpbrk(s, " \t\r\n<>\"") != NULL) {
        return false;
    }
    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        const char *at = memchr(p, '@', n);

        if (at == NULL || at == p || at == p + n - 1 ||
            memchr(at + 1, '@', n - (size_t)(at - p) - 1) != NULL) {
            return false;
        }
        p += n;
        if (*p == ',') {
            p++;
        }
    }
    return true;
}

static int check_channel(const char *kind, const char *target, struct sl_err *err)
{
    bool is_known = false;

    for (size_t i = 0; i < sizeof(channel_kinds) / sizeof(channel_kinds[0]); i++) {
        is_known = is_known || strcmp(kind, channel_kinds[i]) == 0;
    }
    if (!is_known) {
        return sl_err_set(err, SL_EINVAL, "unknown channel kind '%s' (use log, webhook, slack, "
                          "discord or email)", kind);
    }
    if (strlen(target) >= SL_STORE_TARGET_MAX) {
        return sl_err_set(err, SL_EINVAL, "channel target is longer than %d bytes",
                          SL_STORE_TARGET_MAX - 1);
    }
    if (strcmp(kind, "log") == 0) {
        return target[0] == '\0' ? 0
                                 : sl_err_set(err, SL_EINVAL, "a log channel takes no target");
    }
    if (strcmp(kind, "email") == 0) {
        return is_address_list(target)
                   ? 0
                   : sl_err_set(err, SL_EINVAL, "email channel needs comma-separated addresses "
                                "like ops@example.com, got '%s'", target);
    }
    return is_http_url(target)
               ? 0
               : sl_err_set(err, SL_EINVAL, "%s channel needs an http:// or https:// URL, got "
                            "'%s'", kind, target);
}

int sl_store_channel_add(struct sl_store *st, const char *tenant, const char *name,
                         const char *kind, const char *target, const char *secret,
                         int64_t now_s, struct sl_channel *out, struct sl_err *err)
{
    char tenant_id[SL_STORE_ID_MAX] = "";
    char id[SL_STORE_ID_MAX];
    sqlite3_stmt *stmt = NULL;
    int rc;

    if (target == NULL) {
        target = "";
    }
    rc = check_channel(kind, target, err);
    if (rc != 0) {
        return rc;
    }
    if (name == NULL || name[0] == '\0' || strlen(name) >= SL_STORE_NAME_MAX) {
        return sl_err_set(err, SL_EINVAL, "channel name must be 1 to %d characters",
                          SL_STORE_NAME_MAX - 1);
    }
    if (secret != NULL && strcmp(kind, "webhook") != 0) {
        return sl_err_set(err, SL_EINVAL, "only webhook channels take a signing secret");
    }
    if (tenant != NULL) {
        rc = sl_store_tenant_resolve(st, tenant, tenant_id, err);
        if (rc != 0) {
            return rc;
        }
    }
    rc = sl_store_random_id("ch_", 8, id, sizeof(id), err);
    if (rc == 0) {
        rc = sl_store_prepare(st,
                              "INSERT INTO alert_channels (id, tenant_id, name, kind, target, "
                              "secret, created_at) VALUES (?1, NULLIF(?2, ''), ?3, ?4, ?5, ?6, "
                              "?7)",
                              &stmt, err);
    }
    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, tenant_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 5, target, -1, SQLITE_STATIC);
    if (secret != NULL) {
        sqlite3_bind_text(stmt, 6, secret, -1, SQLITE_STATIC);
    }
    sqlite3_bind_int64(stmt, 7, now_s);
    rc = sl_store_step_done(st, stmt, "adding a channel", err);
    if (rc == 0 && out != NULL) {
        rc = sl_store_channel_get(st, id, out, err);
    }
    return rc;
}

int sl_store_channel_get(struct sl_store *st, const char *id, struct sl_channel *out,
                         struct sl_err *err)
{
    return sl_store_get(st, "SELECT " CHANNEL_COLUMNS " FROM alert_channels WHERE id = ?1", id,
                        read_channel, out, "channel", err);
}

/* Lists rows of one tenant (resolved from id or name), or of all when tenant is NULL. */
static int list_by_tenant(struct sl_store *st, const char *tenant, const char *sql, size_t elem,
                          sl_store_read_cb read, void **out, size_t *n_out, struct sl_err *err)
{
    char tenant_id[SL_STORE_ID_MAX] = "";
    int rc;

    *out = NULL;
    *n_out = 0;
    if (tenant != NULL) {
        rc = sl_store_tenant_resolve(st, tenant, tenant_id, err);
        if (rc != 0) {
            return rc;
        }
    }
    return sl_store_list(st, sql, tenant_id, elem, read, out, n_out, "listing", err);
}

int sl_store_channel_list(struct sl_store *st, const char *tenant, struct sl_channel **out,
                          size_t *n_out, struct sl_err *err)
{
    return list_by_tenant(st, tenant,
                     "SELECT " CHANNEL_COLUMNS " FROM alert_channels "
                     "WHERE ?1 = '' OR tenant_id = ?1 ORDER BY tenant_id, name, id",
                     sizeof(**out), read_channel, (void **)out, n_out, err);
}

static int exec_delete(struct sl_store *st, const char *sql, const char *id, const char *what,
                       struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st, sql, &stmt, err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    rc = sl_store_step_done(st, stmt, what, err);
    if (rc == 0 && sqlite3_changes(st->db) == 0) {
        rc = sl_err_set(err, SL_ENOTFOUND, "%s: '%s' not found", what, id);
    }
    return rc;
}

int sl_store_channel_remove(struct sl_store *st, const char *id, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int n_rules = 0;
    int rc = sl_store_prepare(st, "SELECT count(*) FROM alert_rules WHERE channel_id = ?1",
                              &stmt, err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        n_rules = sqlite3_column_int(stmt, 0);
    }
    sqlite3_finalize(stmt);
    if (n_rules > 0) {
        return sl_err_set(err, SL_ESTATE, "channel %s is used by %d rule(s); remove them first "
                          "(see `sluice rule list`)", id, n_rules);
    }
    return exec_delete(st, "DELETE FROM alert_channels WHERE id = ?1", id, "removing a channel",
                       err);
}

static int check_rule(struct sl_store *st, const struct sl_rule *r, const char *tenant_id,
                      struct sl_err *err)
{
    const struct rule_kind *kind = NULL;
    struct sl_channel ch;
    int rc;

    for (size_t i = 0; i < sizeof(rule_kinds) / sizeof(rule_kinds[0]); i++) {
        if (strcmp(r->kind, rule_kinds[i].name) == 0) {
            kind = &rule_kinds[i];
        }
    }
    if (kind == NULL) {
        return sl_err_set(err, SL_EINVAL, "unknown rule kind '%s' (use error_rate, quota, "
                          "ingestion_stopped, dlq_growth or loader_lag)", r->kind);
    }
    if (!isfinite(r->threshold) || r->threshold < kind->min || r->threshold > kind->max) {
        return sl_err_set(err, SL_EINVAL, "%s threshold %g is out of range: %s", r->kind,
                          r->threshold, kind->unit);
    }
    if (r->name[0] == '\0') {
        return sl_err_set(err, SL_EINVAL, "a rule needs a name");
    }
    if (kind->is_system && tenant_id[0] != '\0') {
        return sl_err_set(err, SL_EINVAL, "%s watches sluice itself, not one tenant: add it "
                          "with --global", r->kind);
    }
    if (r->window_s < 1 || r->cooldown_s < 0) {
        return sl_err_set(err, SL_EINVAL, "the window must be at least 1 s and the cooldown "
                          "0 s or more");
    }
    rc = sl_store_channel_get(st, r->channel_id, &ch, err);
    if (rc != 0) {
        return rc;
    }
    /* A tenant's rule may use its own channels or global ones; a global rule only global
     * channels, so one tenant's alerts never reach another tenant's endpoint. */
    if (ch.tenant_id[0] != '\0' && strcmp(ch.tenant_id, tenant_id) != 0) {
        return sl_err_set(err, SL_EDENIED, "channel %s belongs to another tenant", ch.id);
    }
    return 0;
}

int sl_store_rule_add(struct sl_store *st, const struct sl_rule *r, int64_t now_s,
                      struct sl_rule *out, struct sl_err *err)
{
    char tenant_id[SL_STORE_ID_MAX] = "";
    char id[SL_STORE_ID_MAX];
    sqlite3_stmt *stmt = NULL;
    int rc = 0;

    if (r->tenant_id[0] != '\0') {
        rc = sl_store_tenant_resolve(st, r->tenant_id, tenant_id, err);
    }
    if (rc == 0) {
        rc = check_rule(st, r, tenant_id, err);
    }
    if (rc == 0) {
        rc = sl_store_random_id("ru_", 8, id, sizeof(id), err);
    }
    if (rc == 0) {
        rc = sl_store_prepare(st,
                              "INSERT INTO alert_rules (" RULE_COLUMNS ") VALUES (?1, "
                              "NULLIF(?2, ''), ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                              &stmt, err);
    }
    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, tenant_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, r->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, r->kind, -1, SQLITE_STATIC);
    sqlite3_bind_double(stmt, 5, r->threshold);
    sqlite3_bind_int64(stmt, 6, r->window_s);
    sqlite3_bind_int64(stmt, 7, r->cooldown_s);
    sqlite3_bind_text(stmt, 8, r->channel_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 9, r->is_enabled ? 1 : 0);
    sqlite3_bind_int64(stmt, 10, now_s);
    rc = sl_store_step_done(st, stmt, "adding a rule", err);
    if (rc == 0 && out != NULL) {
        rc = sl_store_get(st, "SELECT " RULE_COLUMNS " FROM alert_rules WHERE id = ?1", id,
                          read_rule, out, "rule", err);
    }
    return rc;
}

int sl_store_rule_list(struct sl_store *st, const char *tenant, struct sl_rule **out,
                       size_t *n_out, struct sl_err *err)
{
    return list_by_tenant(st, tenant,
                     "SELECT " RULE_COLUMNS " FROM alert_rules "
                     "WHERE ?1 = '' OR tenant_id = ?1 ORDER BY tenant_id, name, id",
                     sizeof(**out), read_rule, (void **)out, n_out, err);
}

int sl_store_rule_remove(struct sl_store *st, const char *id, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc;

    /* The rule's alert states go with it (ON DELETE CASCADE); its open alerts are closed
     * so `sluice alerts list` does not show them firing forever. History stays. */
    rc = sl_store_prepare(st,
                          "UPDATE alerts SET state = 'resolved', resolved_at = "
                          "CAST(strftime('%s', 'now') AS INTEGER), message = message || "
                          "' (rule removed)' WHERE rule_id = ?1 AND state = 'firing'",
                          &stmt, err);
    if (rc == 0) {
        sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
        rc = sl_store_step_done(st, stmt, "closing a removed rule's alerts", err);
    }
    if (rc != 0) {
        return rc;
    }
    return exec_delete(st, "DELETE FROM alert_rules WHERE id = ?1", id, "removing a rule", err);
}

int sl_store_rule_get(struct sl_store *st, const char *id, struct sl_rule *out,
                      struct sl_err *err)
{
    return sl_store_get(st, "SELECT " RULE_COLUMNS " FROM alert_rules WHERE id = ?1", id,
                        read_rule, out, "rule", err);
}

int sl_store_channel_secret(struct sl_store *st, const char *id, char *out, size_t cap,
                            struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st, "SELECT coalesce(secret, '') FROM alert_channels WHERE id = ?1",
                              &stmt, err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        const unsigned char *s = sqlite3_column_text(stmt, 0);

        rc = sl_store_copy_field(out, cap, s != NULL ? (const char *)s : "", "channel secret",
                                 err);
    }
    else if (rc == SQLITE_DONE) {
        rc = sl_err_set(err, SL_ENOTFOUND, "channel '%s' not found (see `sluice channel list`)",
                        id);
    }
    else {
        rc = sl_store_fail(st, rc, "reading a channel secret", err);
    }
    sqlite3_finalize(stmt);
    return rc;
}

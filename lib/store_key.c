/*
 * API keys. A secret reads "sl_<12 id chars>_<32 secret chars>" (base62, ~190 random bits
 * after the id). The first 15 characters are the key's id, visible in lists and logs; only
 * the SHA-256 of the whole secret is stored. Verification finds the row by id and compares
 * hashes with CRYPTO_memcmp, so timing says nothing about the secret part.
 */
#include "store_int.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>

#include "alloc.h"

#define KEY_ID_LEN 15 /* "sl_" + 12 */
#define HASH_LEN 32

static const char *const known_scopes[] = {"ingest", "otlp", "admin"};

#define KEY_COLUMNS                                                                       \
    "id, tenant_id, name, scopes, created_at, expires_at, revoked_at, last_used_at, "     \
    "rotated_to"

static void read_key(sqlite3_stmt *stmt, void *dst)
{
    struct sl_key *k = dst;

    memset(k, 0, sizeof(*k));
    sl_store_col_text(stmt, 0, k->id, sizeof(k->id));
    sl_store_col_text(stmt, 1, k->tenant_id, sizeof(k->tenant_id));
    sl_store_col_text(stmt, 2, k->name, sizeof(k->name));
    sl_store_col_text(stmt, 3, k->scopes, sizeof(k->scopes));
    k->created_s = sqlite3_column_int64(stmt, 4);
    k->expires_s = sqlite3_column_int64(stmt, 5);
    k->revoked_s = sqlite3_column_int64(stmt, 6);
    k->last_used_s = sqlite3_column_int64(stmt, 7);
    sl_store_col_text(stmt, 8, k->rotated_to, sizeof(k->rotated_to));
}

static int hash_secret(const char *secret, size_t len, unsigned char out[HASH_LEN],
                       struct sl_err *err)
{
    unsigned int out_len = 0;

    if (EVP_Digest(secret, len, out, &out_len, EVP_sha256(), NULL) != 1 ||
        out_len != HASH_LEN) {
        return sl_err_set(err, SL_EIO, "SHA-256 failed");
    }
    return 0;
}

/* Fills dst[0..n) with uniformly random base62 characters (rejection sampling). */
static int random_base62(char *dst, size_t n, struct sl_err *err)
{
    static const char alphabet[] =
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    unsigned char raw[64];
    size_t filled = 0;

    while (filled < n) {
        if (RAND_bytes(raw, sizeof(raw)) != 1) {
            return sl_err_set(err, SL_EIO, "the system random generator failed");
        }
        for (size_t i = 0; i < sizeof(raw) && filled < n; i++) {
            /* 248 = 4 * 62: values above it would bias the first characters. */
            if (raw[i] < 248) {
                dst[filled++] = alphabet[raw[i] % 62];
            }
        }
    }
    OPENSSL_cleanse(raw, sizeof(raw));
    return 0;
}

static int check_scopes(const char *scopes, struct sl_err *err)
{
    const char *p = scopes;

    if (scopes[0] == '\0' || strlen(scopes) >= SL_STORE_SCOPES_MAX) {
        return sl_err_set(err, SL_EINVAL, "scopes must be a comma-separated list of ingest, "
                          "otlp, admin");
    }
    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        bool is_known = false;

        for (size_t i = 0; i < sizeof(known_scopes) / sizeof(known_scopes[0]); i++) {
            if (strlen(known_scopes[i]) == n && strncmp(known_scopes[i], p, n) == 0) {
                is_known = true;
            }
        }
        if (!is_known) {
            return sl_err_set(err, SL_EINVAL, "unknown scope '%.*s' (use ingest, otlp, admin)",
                              (int)n, p);
        }
        p += n;
        if (*p == ',') {
            p++;
        }
    }
    return 0;
}

static int insert_key(struct sl_store *st, const char *tenant_id, const char *name,
                      const char *scopes, int64_t expires_s, int64_t now_s, struct sl_key *out,
                      char secret_out[SL_KEY_SECRET_MAX], struct sl_err *err)
{
    unsigned char hash[HASH_LEN];
    char secret[SL_KEY_SECRET_MAX];
    sqlite3_stmt *stmt = NULL;
    char id[KEY_ID_LEN + 1];
    int rc;

    memcpy(secret, "sl_", 3);
    rc = random_base62(secret + 3, 12, err);
    if (rc == 0) {
        secret[15] = '_';
        rc = random_base62(secret + 16, SL_KEY_SECRET_LEN - 16, err);
    }
    if (rc != 0) {
        return rc;
    }
    secret[SL_KEY_SECRET_LEN] = '\0';
    memcpy(id, secret, KEY_ID_LEN);
    id[KEY_ID_LEN] = '\0';
    rc = hash_secret(secret, SL_KEY_SECRET_LEN, hash, err);
    if (rc == 0) {
        rc = sl_store_prepare(st,
                              "INSERT INTO api_keys (id, tenant_id, name, hash, scopes, "
                              "created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                              &stmt, err);
    }
    if (rc != 0) {
        goto done;
    }
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, tenant_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, name != NULL ? name : "", -1, SQLITE_STATIC);
    sqlite3_bind_blob(stmt, 4, hash, HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 5, scopes, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 6, now_s);
    if (expires_s > 0) {
        sqlite3_bind_int64(stmt, 7, expires_s);
    }
    rc = sl_store_step_done(st, stmt, "creating an API key", err);
    if (rc == 0 && out != NULL) {
        rc = sl_store_key_get(st, id, out, err);
    }
    if (rc == 0) {
        memcpy(secret_out, secret, SL_KEY_SECRET_MAX);
    }

done:
    OPENSSL_cleanse(secret, sizeof(secret));
    return rc;
}

int sl_store_key_create(struct sl_store *st, const char *tenant, const char *name,
                        const char *scopes, int64_t expires_s, int64_t now_s,
                        struct sl_key *out, char secret_out[SL_KEY_SECRET_MAX],
                        struct sl_err *err)
{
    char tenant_id[SL_STORE_ID_MAX];
    int rc;

    if (scopes == NULL) {
        scopes = "ingest";
    }
    rc = check_scopes(scopes, err);
    if (rc != 0) {
        return rc;
    }
    if (name != NULL && strlen(name) >= SL_STORE_NAME_MAX) {
        return sl_err_set(err, SL_EINVAL, "key name is longer than %d bytes",
                          SL_STORE_NAME_MAX - 1);
    }
    if (expires_s != 0 && expires_s <= now_s) {
        return sl_err_set(err, SL_EINVAL, "the expiry is in the past");
    }
    rc = sl_store_tenant_resolve(st, tenant, tenant_id, err);
    if (rc != 0) {
        return rc;
    }
    return insert_key(st, tenant_id, name, scopes, expires_s, now_s, out, secret_out, err);
}

int sl_store_key_get(struct sl_store *st, const char *id, struct sl_key *out,
                     struct sl_err *err)
{
    return sl_store_get(st, "SELECT " KEY_COLUMNS " FROM api_keys WHERE id = ?1", id, read_key,
                        out, "key", err);
}

int sl_store_key_list(struct sl_store *st, const char *tenant, struct sl_key **out,
                      size_t *n_out, struct sl_err *err)
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
    return sl_store_list(st,
                         "SELECT " KEY_COLUMNS " FROM api_keys "
                         "WHERE ?1 = '' OR tenant_id = ?1 ORDER BY tenant_id, created_at, id",
                         tenant_id, sizeof(**out), read_key, (void **)out, n_out,
                         "listing keys", err);
}

int sl_store_key_revoke(struct sl_store *st, const char *id, int64_t now_s,
                        struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    struct sl_key k;
    int rc = sl_store_key_get(st, id, &k, err);

    if (rc != 0) {
        return rc;
    }
    if (k.revoked_s != 0) {
        return sl_err_set(err, SL_ESTATE, "API key %s is already revoked", id);
    }
    rc = sl_store_prepare(st, "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1", &stmt, err);
    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, now_s);
    rc = sl_store_step_done(st, stmt, "revoking an API key", err);
    return rc;
}

int sl_store_key_rotate(struct sl_store *st, const char *id, int64_t grace_s, int64_t now_s,
                        struct sl_key *new_out, char secret_out[SL_KEY_SECRET_MAX],
                        struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    struct sl_key old;
    struct sl_key fresh;
    int64_t old_expiry;
    int rc;

    if (grace_s < 0) {
        return sl_err_set(err, SL_EINVAL, "the grace period cannot be negative");
    }
    rc = sl_store_key_get(st, id, &old, err);
    if (rc != 0) {
        return rc;
    }
    if (old.revoked_s != 0) {
        return sl_err_set(err, SL_ESTATE, "API key %s is revoked; create a new key instead",
                          id);
    }
    if (old.expires_s != 0 && old.expires_s <= now_s) {
        return sl_err_set(err, SL_ESTATE, "API key %s has expired; create a new key instead",
                          id);
    }
    old_expiry = now_s + grace_s;
    if (old.expires_s != 0 && old.expires_s < old_expiry) {
        old_expiry = old.expires_s;
    }
    if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        return sl_store_fail(st, sqlite3_errcode(st->db), "locking to rotate a key", err);
    }
    /* The new key inherits the old one's expiry only if the old key had one. */
    rc = insert_key(st, old.tenant_id, old.name, old.scopes, old.expires_s, now_s, &fresh,
                    secret_out, err);
    if (rc == 0) {
        rc = sl_store_prepare(st,
                              "UPDATE api_keys SET expires_at = ?2, rotated_to = ?3 "
                              "WHERE id = ?1",
                              &stmt, err);
    }
    if (rc == 0) {
        sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 2, old_expiry);
        sqlite3_bind_text(stmt, 3, fresh.id, -1, SQLITE_STATIC);
        rc = sl_store_step_done(st, stmt, "rotating an API key", err);
    }
    if (rc == 0 && sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        rc = sl_store_fail(st, sqlite3_errcode(st->db), "committing a key rotation", err);
    }
    if (rc != 0) {
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        OPENSSL_cleanse(secret_out, SL_KEY_SECRET_MAX);
        return rc;
    }
    if (new_out != NULL) {
        *new_out = fresh;
    }
    return 0;
}

static bool is_well_formed(const char *s, size_t len)
{
    if (len != SL_KEY_SECRET_LEN || strncmp(s, "sl_", 3) != 0 || s[15] != '_') {
        return false;
    }
    for (size_t i = 3; i < len; i++) {
        char c = s[i];

        if (i != 15 && !((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
                         (c >= 'a' && c <= 'z'))) {
            return false;
        }
    }
    return true;
}

int sl_store_key_verify(struct sl_store *st, const char *presented, size_t len, int64_t now_s,
                        struct sl_key_check *out, struct sl_err *err)
{
    static const unsigned char zero_hash[HASH_LEN];
    unsigned char hash[HASH_LEN];
    const void *stored = NULL;
    sqlite3_stmt *stmt = NULL;
    char id[KEY_ID_LEN + 1];
    bool is_match;
    int rc;

    memset(out, 0, sizeof(*out));
    out->status = SL_KEY_UNKNOWN;
    if (!is_well_formed(presented, len)) {
        return 0;
    }
    memcpy(id, presented, KEY_ID_LEN);
    id[KEY_ID_LEN] = '\0';
    rc = hash_secret(presented, len, hash, err);
    if (rc != 0) {
        return rc;
    }
    rc = sl_store_prepare(st,
                          "SELECT k.hash, k.tenant_id, k.scopes, k.expires_at, k.revoked_at, "
                          "t.disabled_at FROM api_keys k JOIN tenants t ON t.id = k.tenant_id "
                          "WHERE k.id = ?1",
                          &stmt, err);
    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        rc = sl_store_fail(st, rc, "verifying an API key", err);
        sqlite3_finalize(stmt);
        return rc;
    }
    if (rc == SQLITE_ROW && sqlite3_column_bytes(stmt, 0) == HASH_LEN) {
        stored = sqlite3_column_blob(stmt, 0);
    }
    /* Compare even when no row matched, so both paths do the same work. */
    is_match = CRYPTO_memcmp(hash, stored != NULL ? stored : zero_hash, HASH_LEN) == 0 &&
               stored != NULL;
    if (is_match) {
        int64_t expires = sqlite3_column_int64(stmt, 3);

        memcpy(out->key_id, id, sizeof(id));
        sl_store_col_text(stmt, 1, out->tenant_id, sizeof(out->tenant_id));
        sl_store_col_text(stmt, 2, out->scopes, sizeof(out->scopes));
        out->expires_s = expires;
        if (sqlite3_column_type(stmt, 4) != SQLITE_NULL) {
            out->status = SL_KEY_REVOKED;
        }
        else if (expires != 0 && expires <= now_s) {
            out->status = SL_KEY_EXPIRED;
        }
        else if (sqlite3_column_type(stmt, 5) != SQLITE_NULL) {
            out->status = SL_KEY_TENANT_DISABLED;
        }
        else {
            out->status = SL_KEY_OK;
        }
    }
    sqlite3_finalize(stmt);
    OPENSSL_cleanse(hash, sizeof(hash));
    return 0;
}

int sl_store_key_touch(struct sl_store *st, const char *id, int64_t now_s, struct sl_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sl_store_prepare(st, "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1", &stmt,
                              err);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, now_s);
    rc = sl_store_step_done(st, stmt, "recording key use", err);
    return rc;
}

const char *sl_store_key_status_name(enum sl_key_status status)
{
    switch (status) {
    case SL_KEY_OK: return "ok";
    case SL_KEY_UNKNOWN: return "unknown";
    case SL_KEY_REVOKED: return "revoked";
    case SL_KEY_EXPIRED: return "expired";
    case SL_KEY_TENANT_DISABLED: return "tenant disabled";
    }
    return "?";
}

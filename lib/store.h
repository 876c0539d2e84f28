/*
 * The SQLite tenant store: tiers, tenants, API keys, alert channels and alert rules.
 * One file in WAL mode with a busy timeout, shared by sluice-ingest, sluice-scheduler and
 * the CLI. The schema is versioned (PRAGMA user_version) and upgraded in place by
 * sl_store_open; a file written by a newer sluice is refused.
 *
 * Record structs are caller-provided with fixed-size text fields, so reads allocate only
 * for lists. A struct sl_store is used by one thread at a time; open one per thread.
 * Every function returns 0 or a negative SL_E code and fills the optional err with what
 * went wrong and what to do about it.
 */
#ifndef SLUICE_LIB_STORE_H
#define SLUICE_LIB_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "err.h"

/* Schema version this build writes; sl_store_open upgrades older files to it. */
#define SL_STORE_SCHEMA_VERSION 8

#define SL_STORE_ID_MAX 40
#define SL_STORE_NAME_MAX 129    /* 128 bytes + NUL */
#define SL_STORE_TIER_MAX 33     /* 32 bytes + NUL */
#define SL_STORE_SCOPES_MAX 128
#define SL_STORE_TARGET_MAX 1024

struct sl_store;

struct sl_store_settings {
    char *path;                       /* SLUICE_DB */
    int64_t busy_timeout_ms;          /* SLUICE_DB_BUSY_TIMEOUT_MS */
    int64_t key_rotation_grace_hours; /* SLUICE_KEY_ROTATION_GRACE_HOURS */
};

extern const struct sl_cfg_opt sl_store_cfg_opts[];
extern const size_t sl_store_cfg_n_opts;

/*
 * Opens (creating if absent) the store at path and upgrades its schema to
 * SL_STORE_SCHEMA_VERSION in one transaction. Fails with SL_ESCHEMA when the file was
 * written by a newer sluice or is not a sluice database, SL_EIO when it cannot be opened.
 * *out is NULL on failure; close with sl_store_close.
 */
int sl_store_open(struct sl_store **out, const char *path, int64_t busy_timeout_ms,
                  struct sl_err *err);

/* As sl_store_open but upgrades only up to `version` (for tests of older files). */
int sl_store_open_version(struct sl_store **out, const char *path, int64_t busy_timeout_ms,
                          int version, struct sl_err *err);

/* Closes the store. Accepts NULL. */
void sl_store_close(struct sl_store *st);

/* Schema version of the open file. */
int sl_store_schema_version(const struct sl_store *st);

/* Checks the store answers a read (for readiness probes). */
int sl_store_ping(struct sl_store *st, struct sl_err *err);

/* ---- tiers ---- */

struct sl_tier {
    char name[SL_STORE_TIER_MAX];
    int64_t retention_days;       /* raw and derived data older than this is deleted */
    int64_t compress_after_hours; /* raw events older than this are rolled up; 0: never */
    int64_t rate_limit_eps;       /* sustained events/s per tenant */
    int64_t burst;                /* token bucket size, events */
    int64_t monthly_quota;        /* events per calendar month; 0: unlimited */
    bool has_enrichment;          /* GeoIP/user-agent enrichment on */
    int64_t reenrich_days;        /* how far back the re-enrichment job redoes rows (days);
                                     0: it does not */
    int64_t created_s;
    int64_t updated_s;
};

int sl_store_tier_get(struct sl_store *st, const char *name, struct sl_tier *out,
                      struct sl_err *err);
/* Returns a new array of every tier ordered by name (free with sl_free). */
int sl_store_tier_list(struct sl_store *st, struct sl_tier **out, size_t *n_out,
                       struct sl_err *err);
/* Inserts or updates the tier t->name with every field of t (validated first). */
int sl_store_tier_put(struct sl_store *st, const struct sl_tier *t, int64_t now_s,
                      struct sl_err *err);

/* ---- tenants ---- */

struct sl_tenant {
    char id[SL_STORE_ID_MAX];       /* "tn_" + 16 hex */
    char name[SL_STORE_NAME_MAX];
    char tier[SL_STORE_TIER_MAX];
    char previous_tier[SL_STORE_TIER_MAX]; /* tier before the last change; "" if none */
    bool is_disabled;
    int64_t disabled_s;              /* 0 when active */
    int64_t tier_changed_s;          /* 0 when never changed */
    int64_t retention_days_override; /* -1: the tier's */
    int64_t rate_limit_override;     /* -1: the tier's */
    int64_t burst_override;          /* -1: the tier's */
    bool drop_bots;                  /* bots are dropped at the edge (else only flagged) */
    int64_t created_s;
    int64_t updated_s;
};

/* Creates a tenant. SL_EEXIST for a taken name, SL_ENOTFOUND for an unknown tier. */
int sl_store_tenant_create(struct sl_store *st, const char *name, const char *tier,
                           int64_t now_s, struct sl_tenant *out, struct sl_err *err);
/* Finds a tenant by id or by name. */
int sl_store_tenant_get(struct sl_store *st, const char *id_or_name, struct sl_tenant *out,
                        struct sl_err *err);
/* Returns a new array of every tenant ordered by name (free with sl_free). */
int sl_store_tenant_list(struct sl_store *st, struct sl_tenant **out, size_t *n_out,
                         struct sl_err *err);
/* Moves a tenant to another tier, remembering the previous one and when. */
int sl_store_tenant_set_tier(struct sl_store *st, const char *id_or_name, const char *tier,
                             int64_t now_s, struct sl_err *err);
/* Disables (keys stop working) or re-enables a tenant. */
int sl_store_tenant_set_disabled(struct sl_store *st, const char *id_or_name, bool disabled,
                                 int64_t now_s, struct sl_err *err);
/* Drops bots at the edge (true) or only flags them (false, the default). */
int sl_store_tenant_set_drop_bots(struct sl_store *st, const char *id_or_name, bool drop_bots,
                                  int64_t now_s, struct sl_err *err);
/* Sets per-tenant overrides; -1 clears one back to the tier's value. */
int sl_store_tenant_set_limits(struct sl_store *st, const char *id_or_name,
                               int64_t rate_limit_eps, int64_t burst, int64_t retention_days,
                               int64_t now_s, struct sl_err *err);

/* ---- API keys ---- */

/* A key's secret: "sl_" + 12 base62 id characters + "_" + 32 base62 secret characters. */
#define SL_KEY_SECRET_LEN 48
#define SL_KEY_SECRET_MAX (SL_KEY_SECRET_LEN + 1)

struct sl_key {
    char id[SL_STORE_ID_MAX];        /* the visible prefix of the secret, "sl_XXXXXXXXXXXX" */
    char tenant_id[SL_STORE_ID_MAX];
    char name[SL_STORE_NAME_MAX];
    char scopes[SL_STORE_SCOPES_MAX]; /* comma-separated: ingest, otlp, admin */
    char rotated_to[SL_STORE_ID_MAX]; /* id of the key that replaced it; "" if none */
    int64_t created_s;
    int64_t expires_s;               /* 0: never */
    int64_t revoked_s;               /* 0: not revoked */
    int64_t last_used_s;             /* 0: never used */
};

/*
 * Creates a key for a tenant and writes its secret (shown once, never stored) into
 * secret_out. scopes NULL means "ingest"; expires_s 0 means never. Only the SHA-256 hash
 * of the secret is stored.
 */
int sl_store_key_create(struct sl_store *st, const char *tenant, const char *name,
                        const char *scopes, int64_t expires_s, int64_t now_s,
                        struct sl_key *out, char secret_out[SL_KEY_SECRET_MAX],
                        struct sl_err *err);
int sl_store_key_get(struct sl_store *st, const char *id, struct sl_key *out,
                     struct sl_err *err);
/* Returns a new array of the keys of one tenant, or of all when tenant is NULL. */
int sl_store_key_list(struct sl_store *st, const char *tenant, struct sl_key **out,
                      size_t *n_out, struct sl_err *err);
/* Revokes a key at once. SL_ESTATE when already revoked. */
int sl_store_key_revoke(struct sl_store *st, const char *id, int64_t now_s,
                        struct sl_err *err);
/*
 * Replaces a key: creates a new one with the same tenant, name and scopes, and lets the
 * old one expire after grace_s (or earlier, if it already expired sooner).
 */
int sl_store_key_rotate(struct sl_store *st, const char *id, int64_t grace_s, int64_t now_s,
                        struct sl_key *new_out, char secret_out[SL_KEY_SECRET_MAX],
                        struct sl_err *err);

enum sl_key_status {
    SL_KEY_OK = 0,
    SL_KEY_UNKNOWN,          /* malformed, no such key, or wrong secret */
    SL_KEY_REVOKED,
    SL_KEY_EXPIRED,
    SL_KEY_TENANT_DISABLED,
};

struct sl_key_check {
    enum sl_key_status status;
    char key_id[SL_STORE_ID_MAX];
    char tenant_id[SL_STORE_ID_MAX];
    char scopes[SL_STORE_SCOPES_MAX];
    int64_t expires_s;
};

/*
 * Checks a presented secret: looks the key up by its prefix and compares SHA-256 hashes in
 * constant time. Returns 0 when a verdict was reached (out->status says which) and a
 * negative code only when the store failed.
 */
int sl_store_key_verify(struct sl_store *st, const char *presented, size_t len, int64_t now_s,
                        struct sl_key_check *out, struct sl_err *err);
/* Records that a key was used at now_s (callers throttle this; it writes). */
int sl_store_key_touch(struct sl_store *st, const char *id, int64_t now_s, struct sl_err *err);
/* Human-readable name of a status ("revoked", ...). */
const char *sl_store_key_status_name(enum sl_key_status status);

/* ---- alert channels and rules ---- */

struct sl_channel {
    char id[SL_STORE_ID_MAX];        /* "ch_" + 16 hex */
    char tenant_id[SL_STORE_ID_MAX]; /* "" for a global (operator) channel */
    char name[SL_STORE_NAME_MAX];
    char kind[16];                   /* log, webhook, slack, discord, email */
    char target[SL_STORE_TARGET_MAX]; /* URL, or comma-separated addresses for email */
    bool has_secret;                 /* webhook signing secret set */
    int64_t created_s;
};

/*
 * Adds a channel. tenant NULL makes a global channel. secret (may be NULL) is the webhook
 * signing secret; it is stored as given because signing needs it.
 */
int sl_store_channel_add(struct sl_store *st, const char *tenant, const char *name,
                         const char *kind, const char *target, const char *secret,
                         int64_t now_s, struct sl_channel *out, struct sl_err *err);
int sl_store_channel_get(struct sl_store *st, const char *id, struct sl_channel *out,
                         struct sl_err *err);
/* Returns a new array of a tenant's channels, or of all when tenant is NULL. */
int sl_store_channel_list(struct sl_store *st, const char *tenant, struct sl_channel **out,
                          size_t *n_out, struct sl_err *err);
/* Removes a channel; SL_ESTATE while rules still use it. */
int sl_store_channel_remove(struct sl_store *st, const char *id, struct sl_err *err);

struct sl_rule {
    char id[SL_STORE_ID_MAX];        /* "ru_" + 16 hex */
    char tenant_id[SL_STORE_ID_MAX]; /* "" for a global rule */
    char name[SL_STORE_NAME_MAX];
    char kind[32];                   /* error_rate, quota, ingestion_stopped, dlq_growth,
                                        loader_lag */
    double threshold;
    int64_t window_s;
    int64_t cooldown_s;
    char channel_id[SL_STORE_ID_MAX];
    bool is_enabled;
    int64_t created_s;
};

/* Adds a rule after checking kind, threshold range and that the channel may serve it. */
int sl_store_rule_add(struct sl_store *st, const struct sl_rule *r, int64_t now_s,
                      struct sl_rule *out, struct sl_err *err);
/* Returns a new array of a tenant's rules, or of all when tenant is NULL. */
int sl_store_rule_list(struct sl_store *st, const char *tenant, struct sl_rule **out,
                       size_t *n_out, struct sl_err *err);
int sl_store_rule_remove(struct sl_store *st, const char *id, struct sl_err *err);

/* ---- scheduler: leases, job state, run history (store_sched.c) ---- */

#define SL_STORE_JOB_MAX 65        /* job name: 64 bytes + NUL */
#define SL_STORE_OWNER_MAX 129     /* scheduler id: 128 bytes + NUL */
#define SL_STORE_SCHEDULE_MAX 129  /* cron expression as configured */
#define SL_STORE_ZONE_MAX 65       /* IANA zone name, "UTC" by default */
#define SL_STORE_KIND_MAX 16       /* why a run started: schedule, missed, manual */
#define SL_STORE_RUN_ERROR_MAX 512
#define SL_STORE_CHECKPOINT_MAX 1024

/* A lease row: who may act alone (the leading scheduler) and until when. */
struct sl_lease {
    char name[SL_STORE_JOB_MAX];
    char owner[SL_STORE_OWNER_MAX];
    int64_t expires_s; /* the owner holds it while now < expires_s */
    int64_t renewed_s; /* last acquire or renew */
};

/*
 * Takes or renews the lease `name` for owner until now_s + ttl_s, in one atomic INSERT ..
 * ON CONFLICT DO UPDATE .. WHERE statement: it succeeds when the lease is absent, expired
 * (expires_s <= now_s) or already owner's, and changes nothing otherwise. *is_leader says
 * whether owner holds the lease after the call. Fails (with *is_leader false) only when the
 * store fails, SL_EBUSY when another process kept it locked past the busy timeout.
 */
int sl_store_lease_acquire(struct sl_store *st, const char *name, const char *owner,
                           int64_t ttl_s, int64_t now_s, bool *is_leader, struct sl_err *err);
/*
 * Extends owner's lease to now_s + ttl_s. SL_ESTATE when someone else holds it (or nobody:
 * it was released), so the caller lost the lease and must stop acting as its owner.
 */
int sl_store_lease_renew(struct sl_store *st, const char *name, const char *owner,
                         int64_t ttl_s, int64_t now_s, struct sl_err *err);
/* Gives the lease up if owner holds it (a standby can take it at once); else no change. */
int sl_store_lease_release(struct sl_store *st, const char *name, const char *owner,
                           struct sl_err *err);
/* Reads the lease row (expired or not). SL_ENOTFOUND when nobody ever took it or it was
 * released. */
int sl_store_lease_get(struct sl_store *st, const char *name, struct sl_lease *out,
                       struct sl_err *err);

enum sl_run_status {
    SL_RUN_RUNNING = 0,
    SL_RUN_DONE,
    SL_RUN_RETRY,     /* stopped early; the next slot continues from the checkpoint */
    SL_RUN_FAILED,
    SL_RUN_CANCELLED, /* stopped by shutdown or by losing the lease */
    SL_RUN_TIMEOUT,   /* stopped by the job's timeout */
};

/* "running", "done", ...; parse returns -1 for an unknown name. */
const char *sl_store_run_status_name(enum sl_run_status status);
int sl_store_run_status_parse(const char *name);

/* One row of run history. */
struct sl_run {
    int64_t id;
    char job[SL_STORE_JOB_MAX];
    int64_t slot_s;                  /* the schedule slot (or request time) it ran for */
    char kind[SL_STORE_KIND_MAX];    /* schedule, missed or manual */
    char owner[SL_STORE_OWNER_MAX];  /* the scheduler that ran it */
    enum sl_run_status status;
    int64_t started_s;
    int64_t ended_s;                 /* 0 while running */
    int64_t duration_ms;             /* 0 while running */
    int64_t rows;                    /* rows the job touched */
    char error[SL_STORE_RUN_ERROR_MAX]; /* "" unless it failed */
};

/*
 * Records that job starts its run for slot_s (kind "schedule", "missed" or "manual") and
 * returns its id in *run_id. With lease non-NULL the insert happens only while owner holds
 * that lease at now_s (SL_EDENIED otherwise), so a scheduler that lost its lease cannot
 * start anything. UNIQUE(job, slot_s) makes a second run of a slot impossible: SL_EEXIST.
 * The job's state row (if any) records the slot and run; a manual run clears the request
 * it answers (also on SL_EEXIST: that slot already ran). One transaction.
 */
int sl_store_run_begin(struct sl_store *st, const char *lease, const char *owner,
                       const char *job, int64_t slot_s, const char *kind, int64_t now_s,
                       int64_t *run_id, struct sl_err *err);
/*
 * Ends a running run with its status, rows, error ("" or NULL for none) and duration, and
 * stores checkpoint (NULL keeps the job's previous one) in the job's state, in one
 * transaction. SL_ESTATE when the run is no longer running (another scheduler marked it
 * abandoned): nothing is changed then. SL_ENOTFOUND for an unknown id.
 */
int sl_store_run_end(struct sl_store *st, int64_t run_id, enum sl_run_status status,
                     int64_t rows, const char *error, const char *checkpoint, int64_t now_s,
                     int64_t duration_ms, struct sl_err *err);
int sl_store_run_get(struct sl_store *st, int64_t run_id, struct sl_run *out,
                     struct sl_err *err);
/* The run of job for slot_s; SL_ENOTFOUND when that slot has not run (yet). */
int sl_store_run_find(struct sl_store *st, const char *job, int64_t slot_s, struct sl_run *out,
                      struct sl_err *err);
/*
 * Returns a new array (free with sl_free) of at most limit runs of job (every job when
 * NULL), newest first.
 */
int sl_store_run_list(struct sl_store *st, const char *job, size_t limit, struct sl_run **out,
                      size_t *n_out, struct sl_err *err);
/*
 * Marks every run still 'running' that belongs to another owner as failed ("abandoned"):
 * a scheduler that just took the lease calls this, since the previous holder stopped
 * without ending them. *n_out (may be NULL) gets how many.
 */
int sl_store_run_abandon(struct sl_store *st, const char *owner, int64_t now_s, int64_t *n_out,
                         struct sl_err *err);
/*
 * Deletes finished runs that ended before before_s, except each job's last run.
 * *n_out (may be NULL) gets how many.
 */
int sl_store_run_prune(struct sl_store *st, int64_t before_s, int64_t *n_out,
                       struct sl_err *err);

/* A scheduled job as the leading scheduler last described it, with its state. */
struct sl_job {
    char name[SL_STORE_JOB_MAX];
    char schedule[SL_STORE_SCHEDULE_MAX];
    char zone[SL_STORE_ZONE_MAX];
    bool is_enabled;
    int64_t last_slot_s;      /* last scheduled slot that started; 0: none */
    int64_t last_run_id;      /* 0: never ran */
    int64_t next_run_s;       /* next slot the leader will run; 0: none planned */
    int64_t run_requested_s;  /* pending `sluice jobs run`; 0: none */
    char checkpoint[SL_STORE_CHECKPOINT_MAX]; /* the job's resume point; "" if none */
    int64_t updated_s;
    /* From the last run (zero/empty when it never ran): */
    enum sl_run_status last_status;
    int64_t last_started_s;
    int64_t last_ended_s;
};

/*
 * Inserts or updates job j->name's description (schedule, zone, enabled, next_run_s),
 * keeping its state (last slot and run, pending request, checkpoint).
 */
int sl_store_job_register(struct sl_store *st, const struct sl_job *j, int64_t now_s,
                          struct sl_err *err);
/* Sets the next planned run (0: none). SL_ENOTFOUND for an unknown job. */
int sl_store_job_set_next(struct sl_store *st, const char *name, int64_t next_run_s,
                          int64_t now_s, struct sl_err *err);
int sl_store_job_get(struct sl_store *st, const char *name, struct sl_job *out,
                     struct sl_err *err);
/* Returns a new array of every job ordered by name (free with sl_free). */
int sl_store_job_list(struct sl_store *st, struct sl_job **out, size_t *n_out,
                      struct sl_err *err);
/*
 * Asks the leader to run job now (`sluice jobs run`). A request already pending is kept,
 * so two callers share one run; *requested_s gets the pending request's time, which is the
 * slot the manual run will have. SL_ENOTFOUND for an unknown job, SL_ESTATE for a disabled
 * one.
 */
int sl_store_job_request_run(struct sl_store *st, const char *name, int64_t now_s,
                             int64_t *requested_s, struct sl_err *err);

/*
 * Store maintenance: PRAGMA optimize, then a WAL checkpoint that truncates the log.
 * A checkpoint that cannot finish because readers are active is not an error;
 * *is_truncated (may be NULL) says whether it did.
 */
int sl_store_optimize(struct sl_store *st, bool *is_truncated, struct sl_err *err);

#endif

/*
 * The retention plan: a pure function of tiers, tenants, the time and the policy settings.
 * It says, per tenant, how long its data is kept and so from which UTC day on its rows
 * stay (the cutoff); which whole day partitions are older than every tenant's cutoff (and
 * so are dropped, whatever tenant they hold); and groups tenants by cutoff so the deletes
 * inside retention windows are one ClickHouse mutation per distinct cutoff, not one per
 * tenant. Counting and deleting are survey.c's and apply.c's.
 *
 * Retention is counted in whole UTC days: with R days on 2026-11-24 a tenant keeps today and
 * the R days before it (rows from 2026-10-25T00:00:00Z on), whatever hour the job runs.
 */
#ifndef SLUICE_WORKERS_RETENTION_PLAN_H
#define SLUICE_WORKERS_RETENTION_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

/* cutoff_s of a purged tenant: every row goes (the same value as SL_STORE_AUDIT_ALL). */
#define RETENTION_ALL INT64_MAX

#define RETENTION_DAY_S INT64_C(86400)

/* The settings the plan depends on. */
struct retention_policy {
    int64_t downgrade_grace_days;      /* a downgrade keeps the old retention this long */
    bool is_purge_disabled;            /* disabled tenants: purge (true) or keep (false) */
    int64_t disabled_purge_after_days; /* purge once disabled this long */
    size_t max_tenants_per_group;      /* most tenants one mutation names (>= 1) */
};

/* Why a tenant's retention is what it is. */
enum retention_reason {
    RETENTION_TIER = 0,     /* its tier's retention_days */
    RETENTION_OVERRIDE,     /* its retention_days_override */
    RETENTION_GRACE,        /* downgraded: the previous tier's longer retention, until
                               grace_until_s */
    RETENTION_PURGE,        /* disabled long enough under the purge policy: nothing kept */
    RETENTION_UNKNOWN_TIER, /* its tier is not in the store: the longest tier's retention */
    RETENTION_KEEP_ALL,     /* no tier at all is known: nothing is deleted */
};

/* One tenant in the plan (read-only for callers). */
struct retention_tenant {
    char id[SL_STORE_ID_MAX];
    char name[SL_STORE_NAME_MAX];
    char tier[SL_STORE_TIER_MAX];
    enum retention_reason reason;
    int64_t retention_days; /* effective; 0 for a purge, -1 when everything is kept */
    int64_t cutoff_s;       /* rows before this go; RETENTION_ALL for a purge; 0 none */
    int64_t grace_until_s;  /* RETENTION_GRACE: when the previous tier's retention ends */
    char grace_tier[SL_STORE_TIER_MAX]; /* RETENTION_GRACE: the previous tier */
};

/* Tenants tenants[first .. first + n) of a plan, all with the same cutoff. */
struct retention_group {
    int64_t cutoff_s; /* RETENTION_ALL for purged tenants */
    size_t first;
    size_t n;
};

struct retention_plan {
    int64_t now_s;
    int64_t today_s;         /* start of now_s's UTC day */
    int64_t longest_days;    /* longest retention of any tier, override or grace; 0: none */
    int64_t drop_before_s;   /* whole day partitions before this are dropped; 0: none */
    struct retention_tenant *tenants; /* sorted by cutoff, then id */
    size_t n_tenants;
    struct retention_group *groups; /* cutoffs after drop_before_s, ascending; a cutoff with
                                       more tenants than max_tenants_per_group is split */
    size_t n_groups;
};

/*
 * Builds the plan for now_s. tiers, tenants and policy are borrowed. Fails with SL_EINVAL
 * (a bad policy) or SL_ENOMEM; *out is NULL then. Free with retention_plan_destroy. Pure:
 * any thread.
 */
int retention_plan_build(const struct sl_tier *tiers, size_t n_tiers,
                         const struct sl_tenant *tenants, size_t n_tenants, int64_t now_s,
                         const struct retention_policy *policy, struct retention_plan **out,
                         struct sl_err *err);

/* Frees a plan. Accepts NULL. */
void retention_plan_destroy(struct retention_plan *plan);

/* The tenant with id in plan (NULL when the plan does not know it). */
const struct retention_tenant *retention_plan_tenant(const struct retention_plan *plan,
                                                     const char *id);

/* "tier", "override", "grace", "purge", "unknown_tier", "keep_all". */
const char *retention_reason_name(enum retention_reason reason);

/* Writes the UTC day of s as YYYY-MM-DD into buf (11 bytes). Returns buf. */
char *retention_day_text(int64_t s, char buf[11]);

#endif

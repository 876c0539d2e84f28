/*
 * Building the retention plan (see plan.h): each tenant's effective retention and cutoff,
 * the partition boundary, and the groups by cutoff. No I/O.
 */
#include "plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"

static const char *const reason_names[] = {
    [RETENTION_TIER] = "tier",       [RETENTION_OVERRIDE] = "override",
    [RETENTION_GRACE] = "grace",     [RETENTION_PURGE] = "purge",
    [RETENTION_UNKNOWN_TIER] = "unknown_tier", [RETENTION_KEEP_ALL] = "keep_all",
};

_Static_assert(sizeof(reason_names) / sizeof(reason_names[0]) == RETENTION_KEEP_ALL + 1,
               "a name per reason");

const char *retention_reason_name(enum retention_reason reason)
{
    return (unsigned)reason <= RETENTION_KEEP_ALL ? reason_names[reason] : "unknown";
}

char *retention_day_text(int64_t s, char buf[11])
{
    time_t t = (time_t)s;
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL || strftime(buf, 11, "%Y-%m-%d", &tm) != 10) {
        snprintf(buf, 11, "?");
    }
    return buf;
}

static const struct sl_tier *find_tier(const struct sl_tier *tiers, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(tiers[i].name, name) == 0) {
            return &tiers[i];
        }
    }
    return NULL;
}

/* Fills t's reason, retention and cutoff from its row, the tiers and the policy. */
static void decide(struct retention_tenant *t, const struct sl_tenant *row,
                   const struct sl_tier *tiers, size_t n_tiers, int64_t longest_tier_days,
                   int64_t now_s, int64_t today_s, const struct retention_policy *policy)
{
    const struct sl_tier *tier = find_tier(tiers, n_tiers, row->tier);
    const struct sl_tier *prev = NULL;

    snprintf(t->id, sizeof(t->id), "%s", row->id);
    snprintf(t->name, sizeof(t->name), "%s", row->name);
    snprintf(t->tier, sizeof(t->tier), "%s", row->tier);
    if (row->is_disabled && policy->is_purge_disabled &&
        now_s >= row->disabled_s + policy->disabled_purge_after_days * RETENTION_DAY_S) {
        t->reason = RETENTION_PURGE;
        t->retention_days = 0;
        t->cutoff_s = RETENTION_ALL;
        return;
    }
    if (row->retention_days_override > 0) {
        t->reason = RETENTION_OVERRIDE;
        t->retention_days = row->retention_days_override;
    }
    else if (tier != NULL) {
        t->reason = RETENTION_TIER;
        t->retention_days = tier->retention_days;
        if (row->previous_tier[0] != '\0' && row->tier_changed_s > 0) {
            prev = find_tier(tiers, n_tiers, row->previous_tier);
        }
        /* A downgrade keeps the previous tier's longer retention through the grace period;
         * an upgrade needs nothing: the new, longer retention holds at once. */
        if (prev != NULL && prev->retention_days > tier->retention_days &&
            now_s < row->tier_changed_s + policy->downgrade_grace_days * RETENTION_DAY_S) {
            t->reason = RETENTION_GRACE;
            t->retention_days = prev->retention_days;
            t->grace_until_s = row->tier_changed_s +
                               policy->downgrade_grace_days * RETENTION_DAY_S;
            snprintf(t->grace_tier, sizeof(t->grace_tier), "%s", prev->name);
        }
    }
    else if (longest_tier_days > 0) {
        t->reason = RETENTION_UNKNOWN_TIER;
        t->retention_days = longest_tier_days;
    }
    else {
        t->reason = RETENTION_KEEP_ALL;
        t->retention_days = -1;
        t->cutoff_s = 0;
        return;
    }
    t->cutoff_s = today_s - t->retention_days * RETENTION_DAY_S;
    if (t->cutoff_s < 0) {
        t->cutoff_s = 0;
    }
}

static int by_cutoff_then_id(const void *a, const void *b)
{
    const struct retention_tenant *x = a, *y = b;

    if (x->cutoff_s != y->cutoff_s) {
        return x->cutoff_s < y->cutoff_s ? -1 : 1;
    }
    return strcmp(x->id, y->id);
}

void retention_plan_destroy(struct retention_plan *plan)
{
    if (plan == NULL) {
        return;
    }
    sl_free(plan->tenants);
    sl_free(plan->groups);
    sl_free(plan);
}

int retention_plan_build(const struct sl_tier *tiers, size_t n_tiers,
                         const struct sl_tenant *tenants, size_t n_tenants, int64_t now_s,
                         const struct retention_policy *policy, struct retention_plan **out,
                         struct sl_err *err)
{
    struct retention_plan *plan = NULL;
    int64_t longest_tier_days = 0;
    int64_t longest = 0;
    int rc = 0;

    *out = NULL;
    if (policy->max_tenants_per_group < 1 || policy->downgrade_grace_days < 0 ||
        policy->disabled_purge_after_days < 0 || now_s < 0) {
        return sl_err_set(err, SL_EINVAL, "retention policy: grace and purge days must be >= 0 "
                          "and a mutation must name at least one tenant");
    }
    plan = sl_calloc(1, sizeof(*plan));
    if (plan == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory planning retention");
    }
    plan->now_s = now_s;
    plan->today_s = now_s - now_s % RETENTION_DAY_S;
    if (n_tenants > 0) {
        plan->tenants = sl_calloc(n_tenants, sizeof(plan->tenants[0]));
        /* At most one group per tenant (a split adds none beyond that). */
        plan->groups = sl_calloc(n_tenants, sizeof(plan->groups[0]));
        if (plan->tenants == NULL || plan->groups == NULL) {
            rc = sl_err_set(err, SL_ENOMEM, "out of memory planning retention");
            goto fail;
        }
    }
    for (size_t i = 0; i < n_tiers; i++) {
        if (tiers[i].retention_days > longest_tier_days) {
            longest_tier_days = tiers[i].retention_days;
        }
    }
    /* The longest retention of any tier, even one nobody is on: data of tenants the store
     * does not know (deleted from SQLite by hand, or a restored older file) is then only
     * ever removed with whole partitions, past every retention there is. */
    longest = longest_tier_days;
    plan->n_tenants = n_tenants;
    for (size_t i = 0; i < n_tenants; i++) {
        struct retention_tenant *t = &plan->tenants[i];

        decide(t, &tenants[i], tiers, n_tiers, longest_tier_days, now_s, plan->today_s,
               policy);
        if (t->reason == RETENTION_KEEP_ALL) {
            longest = -1; /* keeps everything, so no partition is old enough to drop */
        }
        else if (longest >= 0 && t->retention_days > longest) {
            longest = t->retention_days; /* an override longer than any tier */
        }
    }
    if (longest > 0) {
        plan->longest_days = longest;
        plan->drop_before_s = plan->today_s - longest * RETENTION_DAY_S;
        if (plan->drop_before_s < 0) {
            plan->drop_before_s = 0;
        }
    }
    if (n_tenants > 1) {
        qsort(plan->tenants, n_tenants, sizeof(plan->tenants[0]), by_cutoff_then_id);
    }
    for (size_t i = 0; i < n_tenants; i++) {
        const struct retention_tenant *t = &plan->tenants[i];
        struct retention_group *last = plan->n_groups > 0 ? &plan->groups[plan->n_groups - 1]
                                                          : NULL;

        /* Rows before drop_before_s go with their partitions; a cutoff at or before it
         * leaves the tenant nothing to delete inside the window. */
        if (t->cutoff_s <= plan->drop_before_s) {
            continue;
        }
        if (last != NULL && last->cutoff_s == t->cutoff_s &&
            last->n < policy->max_tenants_per_group) {
            last->n++;
            continue;
        }
        plan->groups[plan->n_groups++] = (struct retention_group){
            .cutoff_s = t->cutoff_s, .first = i, .n = 1};
    }
    *out = plan;
    return 0;

fail:
    retention_plan_destroy(plan);
    return rc;
}

const struct retention_tenant *retention_plan_tenant(const struct retention_plan *plan,
                                                     const char *id)
{
    for (size_t i = 0; i < plan->n_tenants; i++) {
        if (strcmp(plan->tenants[i].id, id) == 0) {
            return &plan->tenants[i];
        }
    }
    return NULL;
}

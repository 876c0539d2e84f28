/*
 * The survey: a retention plan with what it would delete counted, table by table. It is
 * the dry run (`sluice retention plan`, SLUICE_JOB_RETENTION_DRY_RUN) and the list of
 * things the job deletes, in order: whole partitions first, then one item per group of
 * tenants with one cutoff, then cold exports. Counting reads ClickHouse and the tenant
 * store and changes neither.
 */
#ifndef SLUICE_WORKERS_RETENTION_SURVEY_H
#define SLUICE_WORKERS_RETENTION_SURVEY_H

#include <stddef.h>
#include <stdint.h>

#include "ch.h"
#include "err.h"
#include "plan.h"
#include "store.h"

enum retention_item_kind {
    RETENTION_ITEM_PARTITION = 0, /* a whole day partition of one table */
    RETENTION_ITEM_GROUP,         /* a group's rows in one table: one mutation */
    RETENTION_ITEM_COLD,          /* one tenant's cold exports past its cutoff */
};

/* Rows of one tenant. */
struct retention_count {
    char tenant_id[SL_STORE_ID_MAX];
    int64_t rows;
};

/* One thing to delete (read-only for callers). */
struct retention_item {
    enum retention_item_kind kind;
    const char *table;       /* static: events, sessions, events_hourly, events_daily, cold */
    char partition[16];      /* PARTITION: "20261124" */
    size_t group;            /* GROUP: index into plan->groups */
    int64_t from_s;          /* rows at or after this time (0: from the start) */
    int64_t cutoff_s;        /* rows before this time (RETENTION_ALL: every row) */
    struct retention_count *counts; /* per tenant with rows, by tenant id */
    size_t n_counts;
    int64_t rows;            /* sum of counts */
    int64_t days;            /* COLD: tenant-day folders */
};

struct retention_survey {
    struct retention_plan *plan; /* owned */
    struct retention_item *items;
    size_t n_items;
    int64_t rows;                /* every item's rows */
};

/*
 * Builds the plan from the store's tiers and tenants for now_s (policy borrowed), then
 * counts each table's rows in database through ch, and the cold exports in st. Fails as
 * the store and the ClickHouse client do; *out is NULL then. Free with
 * retention_survey_destroy. Blocks; one thread.
 */
int retention_survey_create(struct sl_store *st, struct sl_ch *ch, const char *database,
                            int64_t now_s, const struct retention_policy *policy,
                            struct retention_survey **out, struct sl_err *err);

/* Frees a survey. Accepts NULL. */
void retention_survey_destroy(struct retention_survey *s);

#endif

/*
 * The scheduled `enrichment` job (descriptor enrich_worker, default schedule "40 * * * *"):
 * after the GeoIP databases, regexes.yaml or the crawler list changed, it rewrites the
 * stored events of the last tiers.reenrich_days days (per tenant's tier; tiers with
 * enrichment off or 0 days are left alone) whose enrichment_version is missing or older
 * than the current one, one tenant and hour at a time (enrich_rewrite_range), saving a
 * checkpoint after each hour and stopping between hours when the scheduler asks. A run whose
 * data files do not load (a part of enrich_health in "error") fails without rewriting
 * anything: rewriting would blank columns that rows had.
 *
 * Settings: SLUICE_JOB_ENRICHMENT_BATCH_PAIRS, and the enrichment data settings
 * (SLUICE_GEOIP_DB, SLUICE_GEOIP_ASN_DB, SLUICE_GEOIP_RELOAD_S, SLUICE_UA_REGEXES,
 * SLUICE_CRAWLER_PATTERNS, SLUICE_UA_CACHE_ENTRIES), which must name the same files as the
 * loaders'.
 */
#ifndef SLUICE_WORKERS_ENRICHMENT_ENRICH_JOB_H
#define SLUICE_WORKERS_ENRICHMENT_ENRICH_JOB_H

#include "worker.h"

extern const struct sched_worker enrich_worker;

#endif

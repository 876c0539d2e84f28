/*
 * The schema's history: each entry takes the file from version - 1 to version. Entries
 * are never edited once released; a change is a new entry. Fresh files run them all.
 */
#include "store_int.h"

const struct sl_store_migration sl_store_migrations[] = {
    {1,
     "CREATE TABLE tiers ("
     "  name TEXT PRIMARY KEY,"
     "  retention_days INTEGER NOT NULL CHECK (retention_days > 0),"
     "  compress_after_hours INTEGER NOT NULL CHECK (compress_after_hours >= 0),"
     "  rate_limit_eps INTEGER NOT NULL CHECK (rate_limit_eps > 0),"
     "  burst INTEGER NOT NULL CHECK (burst > 0),"
     "  monthly_quota INTEGER NOT NULL CHECK (monthly_quota >= 0),"
     "  enrichment INTEGER NOT NULL DEFAULT 1,"
     "  created_at INTEGER NOT NULL,"
     "  updated_at INTEGER NOT NULL"
     ");"
     "INSERT INTO tiers VALUES"
     "  ('free', 30, 24, 100, 500, 1000000, 1, strftime('%s','now'), strftime('%s','now')),"
     "  ('paid', 365, 0, 1000, 5000, 50000000, 1, strftime('%s','now'), strftime('%s','now')),"
     "  ('enterprise', 730, 0, 10000, 50000, 0, 1, strftime('%s','now'),"
     "   strftime('%s','now'));"
     "CREATE TABLE tenants ("
     "  id TEXT PRIMARY KEY,"
     "  name TEXT NOT NULL UNIQUE,"
     "  tier TEXT NOT NULL REFERENCES tiers(name) ON UPDATE CASCADE,"
     "  disabled_at INTEGER,"
     "  retention_days_override INTEGER,"
     "  rate_limit_override INTEGER,"
     "  burst_override INTEGER,"
     "  created_at INTEGER NOT NULL,"
     "  updated_at INTEGER NOT NULL"
     ");"
     "CREATE TABLE api_keys ("
     "  id TEXT PRIMARY KEY,"
     "  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,"
     "  name TEXT NOT NULL DEFAULT '',"
     "  hash BLOB NOT NULL,"
     "  scopes TEXT NOT NULL DEFAULT 'ingest',"
     "  created_at INTEGER NOT NULL,"
     "  expires_at INTEGER,"
     "  revoked_at INTEGER,"
     "  last_used_at INTEGER"
     ");"
     "CREATE INDEX api_keys_tenant ON api_keys(tenant_id);"},
    {2,
     "CREATE TABLE alert_channels ("
     "  id TEXT PRIMARY KEY,"
     "  tenant_id TEXT REFERENCES tenants(id) ON DELETE CASCADE,"
     "  name TEXT NOT NULL,"
     "  kind TEXT NOT NULL CHECK (kind IN ('log','webhook','slack','discord','email')),"
     "  target TEXT NOT NULL DEFAULT '',"
     "  secret TEXT,"
     "  created_at INTEGER NOT NULL"
     ");"
     "CREATE INDEX alert_channels_tenant ON alert_channels(tenant_id);"
     "CREATE TABLE alert_rules ("
     "  id TEXT PRIMARY KEY,"
     "  tenant_id TEXT REFERENCES tenants(id) ON DELETE CASCADE,"
     "  name TEXT NOT NULL,"
     "  kind TEXT NOT NULL,"
     "  threshold REAL NOT NULL,"
     "  window_s INTEGER NOT NULL CHECK (window_s > 0),"
     "  cooldown_s INTEGER NOT NULL CHECK (cooldown_s >= 0),"
     "  channel_id TEXT NOT NULL REFERENCES alert_channels(id),"
     "  enabled INTEGER NOT NULL DEFAULT 1,"
     "  created_at INTEGER NOT NULL"
     ");"
     "CREATE INDEX alert_rules_tenant ON alert_rules(tenant_id);"},
    {3,
     /* Key rotation and tier-change history (the retention grace period needs both the
      * previous tier and when it changed). */
     "ALTER TABLE api_keys ADD COLUMN rotated_to TEXT;"
     "ALTER TABLE tenants ADD COLUMN previous_tier TEXT;"
     "ALTER TABLE tenants ADD COLUMN tier_changed_at INTEGER;"},
    {4,
     /* The scheduler: one lease row per thing only one process may do (the leading
      * scheduler), each job's description and state, and run history. UNIQUE(job, slot_s)
      * is what makes "no job runs twice for one slot" hold across schedulers. */
     "CREATE TABLE sched_leases ("
     "  name TEXT PRIMARY KEY,"
     "  owner TEXT NOT NULL,"
     "  expires_at INTEGER NOT NULL,"
     "  renewed_at INTEGER NOT NULL"
     ");"
     "CREATE TABLE sched_jobs ("
     "  name TEXT PRIMARY KEY,"
     "  schedule TEXT NOT NULL DEFAULT '',"
     "  zone TEXT NOT NULL DEFAULT 'UTC',"
     "  enabled INTEGER NOT NULL DEFAULT 1,"
     "  last_slot_s INTEGER,"
     "  last_run_id INTEGER,"
     "  next_run_s INTEGER,"
     "  run_requested_at INTEGER,"
     "  checkpoint TEXT NOT NULL DEFAULT '',"
     "  updated_at INTEGER NOT NULL"
     ");"
     "CREATE TABLE sched_runs ("
     "  id INTEGER PRIMARY KEY,"
     "  job TEXT NOT NULL,"
     "  slot_s INTEGER NOT NULL,"
     "  kind TEXT NOT NULL CHECK (kind IN ('schedule','missed','manual')),"
     "  owner TEXT NOT NULL,"
     "  started_at INTEGER NOT NULL,"
     "  ended_at INTEGER,"
     "  duration_ms INTEGER,"
     "  status TEXT NOT NULL CHECK (status IN ('running','done','retry','failed','cancelled',"
     "    'timeout')),"
     "  rows INTEGER NOT NULL DEFAULT 0,"
     "  error TEXT,"
     "  UNIQUE (job, slot_s)"
     ");"
     "CREATE INDEX sched_runs_status ON sched_runs(status);"
     "CREATE INDEX sched_runs_ended ON sched_runs(ended_at);"},
};
const size_t sl_store_n_migrations = sizeof(sl_store_migrations) / sizeof(sl_store_migrations[0]);

_Static_assert(sizeof(sl_store_migrations) / sizeof(sl_store_migrations[0]) ==
                   SL_STORE_SCHEMA_VERSION,
               "one migration per schema version");

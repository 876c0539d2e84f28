/* The settings table of sluice-scheduler. */
#include "settings.h"

const struct sl_cfg_opt sched_settings_opts[] = {
    {.key = "SLUICE_SCHEDULER_HTTP_ADDR", .type = SL_CFG_HOSTPORT, .def = "0.0.0.0:8081",
     .offset = offsetof(struct sched_settings, http_addr),
     .desc = "Address the scheduler's /health and /metrics listen on (host:port)."},
    {.key = "SLUICE_SCHEDULER_LEASE_TTL_S", .type = SL_CFG_INT, .def = "15", .min = 3,
     .max = 3600, .offset = offsetof(struct sched_settings, lease_ttl_s),
     .desc = "Seconds the leader's lease lasts; it renews every third of it, and a standby "
             "takes over once it lapses."},
    {.key = "SLUICE_SCHEDULER_SHUTDOWN_TIMEOUT_S", .type = SL_CFG_INT, .def = "30", .min = 1,
     .max = 3600, .offset = offsetof(struct sched_settings, shutdown_timeout_s),
     .desc = "Seconds SIGTERM waits for running jobs to reach a checkpoint before exiting "
             "without them."},
    {.key = "SLUICE_SCHEDULER_ID", .type = SL_CFG_STRING, .def = "",
     .offset = offsetof(struct sched_settings, id),
     .desc = "This scheduler's name in the lease and run history (empty: host:pid:random)."},
    {.key = "SLUICE_SCHEDULER_ZONEINFO_DIR", .type = SL_CFG_STRING,
     .def = "/usr/share/zoneinfo", .offset = offsetof(struct sched_settings, zoneinfo_dir),
     .desc = "Folder of TZif time zone files for jobs with a _TZ setting."},
    {.key = "SLUICE_SCHEDULER_TEST_JOBS", .type = SL_CFG_BOOL, .def = "false",
     .offset = offsetof(struct sched_settings, has_test_jobs),
     .desc = "Test only: also register the test_sleep job, for tests of the scheduler."},
};
const size_t sched_settings_n_opts = sizeof(sched_settings_opts) / sizeof(sched_settings_opts[0]);

/* The settings table of sluice-scheduler. */
#include "settings.h"

const struct sl_cfg_opt sched_settings_opts[] = {
    {.key = "SLUICE_SCHEDULER_HTTP_ADDR", .type = SL_CFG_HOSTPORT, .def = "0.0.0.0:8081",
     .offset = offsetof(struct sched_settings, http_addr),
     .desc = "Address the scheduler's /health and /metrics listen on (host:port)."},
};
const size_t sched_settings_n_opts = sizeof(sched_settings_opts) / sizeof(sched_settings_opts[0]);

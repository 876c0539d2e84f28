/* Settings of sluice-scheduler's own. Shared settings live in the shared library. */
#ifndef SLUICE_SCHEDULER_SETTINGS_H
#define SLUICE_SCHEDULER_SETTINGS_H

#include <stddef.h>

#include "cfg.h"

struct sched_settings {
    char *http_addr; /* SLUICE_SCHEDULER_HTTP_ADDR */
};

extern const struct sl_cfg_opt sched_settings_opts[];
extern const size_t sched_settings_n_opts;

#endif

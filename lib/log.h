/*
 * Structured logging: one JSON object per line with time, level, component, message and,
 * where known, request/job/tenant ids. Levels are set per component
 * (SLUICE_LOG_LEVEL="info,ch=debug"). The macros check the level before formatting.
 *
 * Configure before threads start; writing is thread-safe (one write(2) per line).
 */
#ifndef SLUICE_LIB_LOG_H
#define SLUICE_LIB_LOG_H

#include <stdbool.h>
#include <stddef.h>

#include "cfg.h"
#include "err.h"

enum sl_log_level {
    SL_LOG_LEVEL_DEBUG = 0,
    SL_LOG_LEVEL_INFO = 1,
    SL_LOG_LEVEL_WARN = 2,
    SL_LOG_LEVEL_ERROR = 3,
    SL_LOG_LEVEL_OFF = 4,
};

/* Optional ids attached to a line; any field may be NULL. Borrowed for the call. */
struct sl_log_ctx {
    const char *request_id;
    const char *job_id;
    const char *tenant_id;
};

/* Settings of the log module (see sl_log_cfg_opts in cfg tables). */
struct sl_log_settings {
    char *level; /* "info" or "info,component=debug,..." */
};

/* The log module's settings table (SLUICE_LOG_LEVEL), bound to struct sl_log_settings. */
extern const struct sl_cfg_opt sl_log_cfg_opts[];
extern const size_t sl_log_cfg_n_opts;

/*
 * Parses a level spec ("warn", "info,ch=debug,store=error") and makes it current.
 * On failure the current levels stay as they were and err says which part is wrong.
 */
int sl_log_configure(const char *spec, struct sl_err *err);

/* Sends lines to fd (default 2). The fd is borrowed; the caller keeps it open. */
void sl_log_set_fd(int fd);

/* Whether a line at level for component would be written. */
bool sl_log_is_enabled(enum sl_log_level level, const char *component);

/* Writes one line (use the macros below). msg is truncated past 2 KiB. */
void sl_log_write(enum sl_log_level level, const char *component, const struct sl_log_ctx *ctx,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Name of a level ("debug", ...); parse returns -1 for an unknown name. */
const char *sl_log_level_name(enum sl_log_level level);
int sl_log_level_parse(const char *name);

#define SL_LOG_AT(lvl, comp, ctx, ...)                                                    \
    do {                                                                                  \
        if (sl_log_is_enabled((lvl), (comp))) {                                           \
            sl_log_write((lvl), (comp), (ctx), __VA_ARGS__);                              \
        }                                                                                 \
    } while (0)

#define sl_log_debug(comp, ...) SL_LOG_AT(SL_LOG_LEVEL_DEBUG, comp, NULL, __VA_ARGS__)
#define sl_log_info(comp, ...) SL_LOG_AT(SL_LOG_LEVEL_INFO, comp, NULL, __VA_ARGS__)
#define sl_log_warn(comp, ...) SL_LOG_AT(SL_LOG_LEVEL_WARN, comp, NULL, __VA_ARGS__)
#define sl_log_error(comp, ...) SL_LOG_AT(SL_LOG_LEVEL_ERROR, comp, NULL, __VA_ARGS__)

#define sl_log_debug_ctx(comp, ctx, ...) SL_LOG_AT(SL_LOG_LEVEL_DEBUG, comp, ctx, __VA_ARGS__)
#define sl_log_info_ctx(comp, ctx, ...) SL_LOG_AT(SL_LOG_LEVEL_INFO, comp, ctx, __VA_ARGS__)
#define sl_log_warn_ctx(comp, ctx, ...) SL_LOG_AT(SL_LOG_LEVEL_WARN, comp, ctx, __VA_ARGS__)
#define sl_log_error_ctx(comp, ctx, ...) SL_LOG_AT(SL_LOG_LEVEL_ERROR, comp, ctx, __VA_ARGS__)

#endif

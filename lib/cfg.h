/*
 * Settings. Each module describes its settings in one table of struct sl_cfg_opt (key,
 * type, default, bounds, offset into the module's settings struct, secret flag, one-line
 * description). A process lists the sections it uses; sl_cfg_load fills them from the
 * defaults, then a `--config FILE` of KEY=VALUE lines, then the environment (environment
 * wins). The same tables print the effective settings with secrets masked
 * (--print-config) and the reference table in the README (--help-config).
 *
 * Only this module reads the environment. Call from the main thread at start-up.
 */
#ifndef SLUICE_LIB_CFG_H
#define SLUICE_LIB_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"

/* Exit status for bad settings or bad usage. */
#define SL_EXIT_USAGE 2

enum sl_cfg_type {
    SL_CFG_STRING,   /* char *, any text (may be empty) */
    SL_CFG_INT,      /* int64_t within [min, max] */
    SL_CFG_BOOL,     /* bool: true/false, yes/no, on/off, 1/0 */
    SL_CFG_BYTES,    /* int64_t bytes within [min, max]; K, M, G suffixes (also KB, KiB): 1024 */
    SL_CFG_ENUM,     /* char *, one of `choices` ("a|b|c") */
    SL_CFG_URL,      /* char *, http:// or https:// URL with a host */
    SL_CFG_HOSTPORT, /* char *, "host:port", "[ipv6]:port" or ":port", port 1..65535 */
};

struct sl_cfg_opt {
    const char *key;     /* SLUICE_... */
    enum sl_cfg_type type;
    const char *def;     /* default as text; NULL means empty */
    int64_t min;         /* INT/BYTES lower bound */
    int64_t max;         /* INT/BYTES upper bound */
    const char *choices; /* ENUM: "a|b|c" */
    size_t offset;       /* offset of the field in the section's struct */
    bool is_secret;      /* masked by --print-config */
    const char *desc;    /* one line for --help-config and the README */
    /* Optional extra check of the text after the type's own (every type); fills err naming
     * the key. The field is left unchanged when it fails. */
    int (*check)(const char *key, const char *text, struct sl_err *err);
};

/* One module's table bound to its settings struct (borrowed; must outlive the calls). */
struct sl_cfg_section {
    const char *name;             /* module name, e.g. "clickhouse" */
    const struct sl_cfg_opt *opts;
    size_t n_opts;
    void *base;                   /* the module's settings struct */
};

/* Builds a section from a module's exported table and its settings struct. */
#define SL_CFG_SECTION(name_, opts_, n_opts_, base_)                                      \
    ((struct sl_cfg_section){.name = (name_), .opts = (opts_), .n_opts = (n_opts_),         \
                             .base = (base_)})

/*
 * Fills every section: defaults, then `file` (NULL for none), then environment entries
 * from envp (NULL-terminated KEY=VALUE strings, usually `environ`).
 * On failure err names the setting, the bad value, why it is wrong and where it came from
 * (file and line, or environment); fields already filled stay valid for sl_cfg_fini.
 * Unknown SLUICE_* keys in the file are refused (SL_EINVAL); unknown ones in the
 * environment are ignored, since one environment serves several processes. A key that
 * several sections declare (a setting two workers share) sets all of them, and
 * sl_cfg_print / sl_cfg_print_docs list it once.
 */
int sl_cfg_load(const struct sl_cfg_section *secs, size_t n_secs, const char *file,
                char *const *envp, struct sl_err *err);

/* Frees the strings sl_cfg_load stored in the sections' structs. Accepts partial loads. */
void sl_cfg_fini(const struct sl_cfg_section *secs, size_t n_secs);

/* Prints KEY=VALUE for every setting, secrets masked as "****" when set. */
void sl_cfg_print(const struct sl_cfg_section *secs, size_t n_secs, FILE *out);

/* Prints a Markdown table (setting, default, description) for the README. */
void sl_cfg_print_docs(const struct sl_cfg_section *secs, size_t n_secs, FILE *out);

/* Parses one value of opt into dst (the field). Exposed for tests and the CLI. */
int sl_cfg_parse_value(const struct sl_cfg_opt *opt, const char *text, void *dst,
                       struct sl_err *err);

/* What a daemon's command line asked for. */
struct sl_cfg_args {
    const char *config_file;  /* --config FILE, borrowed from argv; NULL if absent */
    bool print_config;        /* --print-config */
    bool help;                /* --help */
    bool help_config;         /* --help-config */
    bool version;             /* --version */
};

/* Parses a daemon's arguments (argv is borrowed). Unknown arguments fail with SL_EINVAL. */
int sl_cfg_parse_args(int argc, char **argv, struct sl_cfg_args *out, struct sl_err *err);

/*
 * Handles a daemon's command line and settings in one call: --help (prints `usage`),
 * --version, --help-config, --print-config, then loads the settings. Messages for the
 * person go to `out` (help, config) and `errout` (problems, as "PROG: error: ...").
 * Returns -1 when the process should go on running with the sections filled, or the exit
 * status to leave with (0 after help/print, SL_EXIT_USAGE for bad arguments or settings).
 */
int sl_cfg_boot(const char *prog, const char *usage, int argc, char **argv,
                const struct sl_cfg_section *secs, size_t n_secs, FILE *out, FILE *errout);

#endif

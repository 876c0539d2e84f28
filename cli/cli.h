/*
 * The sluice CLI's shared plumbing: the context every command gets, argument parsing
 * with per-command flag tables, output in text or JSON, and the mapping from failures to
 * exit statuses (0 ok, 1 the operation failed, 2 bad usage). Each command group lives in
 * its own cmd_<noun>.c and exports one cli_<noun>_main.
 */
#ifndef SLUICE_CLI_CLI_H
#define SLUICE_CLI_CLI_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cfg.h"
#include "ch.h"
#include "err.h"
#include "store.h"

struct enrich_paths;
struct enrich_settings;
struct compress_cold_settings;
struct notify_settings;
struct retention_settings;

#define CLI_OK 0
#define CLI_FAILED 1
#define CLI_USAGE 2

/* Settings of `sluice dlq` (cmd_dlq.c): where the dead letters are. Strings are owned by
 * the cfg module. */
struct cli_dlq_settings {
    char *kafka_brokers; /* SLUICE_KAFKA_BROKERS; empty: the spool's dead-letter folder */
    char *dlq_topic;     /* SLUICE_KAFKA_DLQ_TOPIC */
    char *spool_dir;     /* SLUICE_SPOOL_DIR */
};

/* The table of struct cli_dlq_settings (the same keys and defaults as sluice-ingest's). */
extern const struct sl_cfg_opt cli_dlq_cfg_opts[];
extern const size_t cli_dlq_cfg_n_opts;

struct cli_ctx {
    const struct sl_store_settings *store_settings; /* borrowed */
    const struct cli_dlq_settings *dlq_settings;    /* borrowed */
    const struct sl_ch_settings *ch_settings;       /* borrowed */
    const struct enrich_settings *enrich_settings;  /* borrowed (sluice enrich) */
    const struct enrich_paths *enrich_paths;        /* borrowed (sluice enrich) */
    const struct compress_cold_settings *cold_settings; /* borrowed (sluice restore) */
    const struct notify_settings *notify_settings;       /* borrowed (channel test) */
    const struct retention_settings *retention_settings; /* borrowed (retention plan) */
    struct sl_store *store;                         /* opened by cli_store on first use */
    bool is_json;                                   /* --json: machine-readable output */
    FILE *out;                                      /* results */
    FILE *err;                                      /* problems and notices */
    int64_t now_s;                                  /* the time the command started */
};

/* A flag a command accepts. Parsing fills value/is_set. */
struct cli_flag {
    const char *name;  /* "--tier" */
    bool takes_value;
    const char *value; /* borrowed from argv */
    bool is_set;
};

/*
 * Parses argv[1..] (argv[0] is the verb) into flags and positional arguments. --json and
 * --help are accepted everywhere. Returns CLI_OK, or CLI_USAGE after printing what was
 * wrong; *wants_help is set for --help.
 */
int cli_args_parse(struct cli_ctx *ctx, int argc, char **argv, struct cli_flag *flags,
                   size_t n_flags, const char **pos, size_t max_pos, size_t *n_pos,
                   bool *wants_help);

/* Returns the flag named name from a table (NULL if absent from the table). */
struct cli_flag *cli_flag_get(struct cli_flag *flags, size_t n_flags, const char *name);

/* Prints "sluice: error: ..." plus a hint to see `usage_cmd --help`; returns CLI_USAGE. */
int cli_usage_error(struct cli_ctx *ctx, const char *usage_cmd, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prints err's message (as JSON with --json) and returns CLI_USAGE for SL_EINVAL, else
 * CLI_FAILED. */
int cli_fail(struct cli_ctx *ctx, const struct sl_err *err);

/* Opens the tenant store on first use (migrating it). Returns 0 or fills err. */
int cli_store(struct cli_ctx *ctx, struct sl_store **out, struct sl_err *err);

/* Prints v as one line of JSON to ctx->out. Takes the reference. */
void cli_print_json(struct cli_ctx *ctx, json_t *v);

/* How cli_print_records shows one record: as JSON (new reference) or as a table row. */
typedef json_t *(*cli_record_json_cb)(const void *record, int64_t now_s);
typedef void (*cli_record_row_cb)(struct cli_ctx *ctx, const void *record);

/*
 * Prints n records of elem bytes: with --json one JSON array (to_json per record),
 * otherwise the header line and one row each (print_row). records is borrowed.
 */
void cli_print_records(struct cli_ctx *ctx, const void *records, size_t n, size_t elem,
                       cli_record_json_cb to_json, const char *header,
                       cli_record_row_cb print_row);

/* Formats unix seconds as an ISO time, or "-" for 0. buf needs 32 bytes. */
const char *cli_time(int64_t s, char *buf);

/* Parses a positive whole number into out; CLI_USAGE after printing on failure. */
int cli_parse_int(struct cli_ctx *ctx, const char *usage_cmd, const char *flag,
                  const char *text, int64_t min, int64_t max, int64_t *out);

/* JSON value for unix seconds: null for 0, else an ISO string. New reference. */
json_t *cli_json_time(int64_t s);

/* One verb of a command group; argv[0] is the verb. */
struct cli_verb {
    const char *name;
    int (*run)(struct cli_ctx *ctx, int argc, char **argv);
};

/*
 * Runs the verb named by argv[0] from the table; prints `usage` for --help (exit 0) or a
 * missing/unknown verb (exit 2).
 */
int cli_dispatch(struct cli_ctx *ctx, const char *noun, const char *usage,
                 const struct cli_verb *verbs, size_t n_verbs, int argc, char **argv);

/* Prints a group's usage to ctx->out and returns CLI_OK (for a verb's --help). */
int cli_help(struct cli_ctx *ctx, const char *usage);

int cli_tenant_main(struct cli_ctx *ctx, int argc, char **argv);
int cli_tier_main(struct cli_ctx *ctx, int argc, char **argv);
int cli_key_main(struct cli_ctx *ctx, int argc, char **argv);
int cli_channel_main(struct cli_ctx *ctx, int argc, char **argv);
int cli_rule_main(struct cli_ctx *ctx, int argc, char **argv);
int cli_db_main(struct cli_ctx *ctx, int argc, char **argv);
int cli_enrich_main(struct cli_ctx *ctx, int argc, char **argv);
int cli_jobs_main(struct cli_ctx *ctx, int argc, char **argv);
int cli_dlq_main(struct cli_ctx *ctx, int argc, char **argv);
int cli_restore_main(struct cli_ctx *ctx, int argc, char **argv);

#endif

/*
 * sluice dlq: list and replay the loader's dead letters. The work (reading the topic or the
 * spool-mode folder, re-producing, committing group sluice-dlq-replay) is ingest/dlq.c's;
 * this file parses the command line and prints.
 */
#include <ctype.h>
#include <string.h>

#include "alloc.h"
#include "cli.h"
#include "dlq.h"
#include "timefmt.h"

#define TIMEOUT_MS 10000
#define PREVIEW_BYTES 60
#define JSON_PREVIEW_BYTES 200

static const char usage[] =
    "usage: sluice dlq list [--limit N] [--all]\n"
    "       sluice dlq replay [--limit N] [--dry-run]\n"
    "Dead letters are events the loader can never load, kept with the reason. With\n"
    "SLUICE_KAFKA_BROKERS they are in the topic SLUICE_KAFKA_DLQ_TOPIC (headers name the\n"
    "reason and the original topic, partition and offset); without a broker, in\n"
    "SLUICE_SPOOL_DIR/dead-letters/dead-letters.jsonl.\n"
    "list shows the ones not replayed yet (--all: every one, replayed ones marked).\n"
    "replay, after you fixed the cause, sends each once more to its original topic (without\n"
    "a broker: loads it into ClickHouse directly) and marks it replayed (consumer group\n"
    "sluice-dlq-replay); one that still cannot load becomes a new dead letter with its new\n"
    "reason. --dry-run lists what would be replayed. All commands take --json.\n";

const struct sl_cfg_opt cli_dlq_cfg_opts[] = {
    {.key = "SLUICE_KAFKA_BROKERS", .type = SL_CFG_STRING, .def = "",
     .offset = offsetof(struct cli_dlq_settings, kafka_brokers),
     .desc = "Kafka/Redpanda bootstrap brokers (host:port,...). Empty: the disk spool is "
             "the queue and the loader drains it in-process (embedded default)."},
    {.key = "SLUICE_KAFKA_DLQ_TOPIC", .type = SL_CFG_STRING, .def = "sluice.dlq",
     .offset = offsetof(struct cli_dlq_settings, dlq_topic),
     .desc = "Dead-letter topic for events that can never load (reason and origin in "
             "headers). Without brokers: <SLUICE_SPOOL_DIR>/dead-letters/."},
    {.key = "SLUICE_SPOOL_DIR", .type = SL_CFG_STRING, .def = "spool",
     .offset = offsetof(struct cli_dlq_settings, spool_dir),
     .desc = "Folder of the durable disk spool."},
};
const size_t cli_dlq_cfg_n_opts = sizeof(cli_dlq_cfg_opts) / sizeof(cli_dlq_cfg_opts[0]);

/* What a command prints as it goes. */
struct printer {
    struct cli_ctx *ctx;
    bool is_kafka;
    json_t *items; /* --json: collected, printed at the end */
    size_t n;
};

/* The first bytes of data with anything but printable ASCII shown as '.'. */
static void preview(const void *data, size_t len, size_t max, char *out)
{
    const unsigned char *p = data;
    size_t n = len < max ? len : max;

    for (size_t i = 0; i < n; i++) {
        out[i] = isprint(p[i]) ? (char)p[i] : '.';
    }
    out[n] = '\0';
}

static json_t *record_json(const struct ingest_dlq_record *r)
{
    char when[SL_TIMEFMT_ISO_MAX];
    char value[JSON_PREVIEW_BYTES + 1];
    char key[JSON_PREVIEW_BYTES + 1];

    preview(r->value, r->value_len, JSON_PREVIEW_BYTES, value);
    preview(r->key, r->key_len, JSON_PREVIEW_BYTES, key);
    return json_pack("{s:i, s:I, s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:s, s:I, s:b}",
                     "dlq_partition", (int)r->dlq_partition, "dlq_offset",
                     (json_int_t)r->dlq_offset, "time",
                     r->time_ms > 0 ? json_string(sl_timefmt_iso(r->time_ms / 1000, when))
                                    : json_null(),
                     "reason", r->reason, "tenant_id",
                     r->tenant_id != NULL ? json_string(r->tenant_id) : json_null(),
                     "original_topic", r->topic != NULL ? json_string(r->topic) : json_null(),
                     "original_partition",
                     r->topic != NULL ? json_integer(r->partition) : json_null(),
                     "original_offset",
                     r->topic != NULL ? json_integer((json_int_t)r->offset) : json_null(),
                     "key", r->key_len > 0 ? json_string(key) : json_null(), "value", value,
                     "value_bytes", (json_int_t)r->value_len, "replayed", r->is_replayed);
}

static int print_record(void *user, const struct ingest_dlq_record *r)
{
    struct printer *pr = user;
    char where[64], origin[600], when[SL_TIMEFMT_ISO_MAX], value[PREVIEW_BYTES + 1];

    pr->n++;
    if (pr->ctx->is_json) {
        json_array_append_new(pr->items, record_json(r));
        return 0;
    }
    if (r->dlq_partition >= 0) {
        snprintf(where, sizeof(where), "%d/%lld", (int)r->dlq_partition,
                 (long long)r->dlq_offset);
    }
    else {
        snprintf(where, sizeof(where), "line %lld", (long long)r->dlq_offset);
    }
    if (r->topic != NULL) {
        snprintf(origin, sizeof(origin), "%s/%d/%lld", r->topic, (int)r->partition,
                 (long long)r->offset);
    }
    else {
        snprintf(origin, sizeof(origin), "spool");
    }
    preview(r->value, r->value_len, PREVIEW_BYTES, value);
    fprintf(pr->ctx->out, "%-12s %-20s %-24s %-30s %s\n  reason: %s\n  value:  %s%s\n", where,
            r->time_ms > 0 ? sl_timefmt_iso(r->time_ms / 1000, when) : "-",
            r->tenant_id != NULL ? r->tenant_id : "-", origin,
            r->is_replayed ? "replayed" : "pending", r->reason, value,
            r->value_len > PREVIEW_BYTES ? "..." : "");
    return 0;
}

/* Fills src from the settings; *folder is new (sl_free). */
static int source_of(struct cli_ctx *ctx, struct ingest_dlq_source *src, char **folder)
{
    const struct cli_dlq_settings *s = ctx->dlq_settings;

    *folder = NULL;
    if (ingest_dlq_folder(s->spool_dir, folder) != 0) {
        return SL_ENOMEM;
    }
    *src = (struct ingest_dlq_source){.brokers = s->kafka_brokers, .topic = s->dlq_topic,
                                      .folder = *folder, .timeout_ms = TIMEOUT_MS};
    return 0;
}

/* Parses --limit (0 when absent). */
static int limit_of(struct cli_ctx *ctx, struct cli_flag *flag, const char *cmd, size_t *out)
{
    int64_t v = 0;
    int rc = CLI_OK;

    if (flag->is_set) {
        rc = cli_parse_int(ctx, cmd, "--limit", flag->value, 1, INT64_C(1) << 40, &v);
    }
    *out = (size_t)v;
    return rc;
}

static int dlq_list(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cli_flag flags[] = {{"--limit", true, NULL, false}, {"--all", false, NULL, false}};
    struct ingest_dlq_source src;
    struct printer pr = {.ctx = ctx};
    char *folder = NULL;
    const char *pos[1];
    struct sl_err err;
    size_t n_pos = 0, limit = 0;
    bool help = false;
    int rc = cli_args_parse(ctx, argc, argv, flags, 2, pos, 0, &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    rc = limit_of(ctx, &flags[0], "dlq list", &limit);
    if (rc != CLI_OK) {
        return rc;
    }
    sl_err_clear(&err);
    if (source_of(ctx, &src, &folder) != 0) {
        sl_err_set(&err, SL_ENOMEM, "out of memory");
        return cli_fail(ctx, &err);
    }
    pr.is_kafka = src.brokers[0] != '\0';
    pr.items = json_array();
    if (!ctx->is_json) {
        fprintf(ctx->out, "%-12s %-20s %-24s %-30s %s\n", pr.is_kafka ? "PART/OFFSET" : "WHERE",
                "TIME", "TENANT", "ORIGIN (TOPIC/PART/OFFSET)", "STATE");
    }
    rc = ingest_dlq_list(&src, limit, flags[1].is_set, print_record, &pr, &err);
    sl_free(folder);
    if (rc != 0) {
        json_decref(pr.items);
        return cli_fail(ctx, &err);
    }
    if (ctx->is_json) {
        cli_print_json(ctx, pr.items);
    }
    else {
        json_decref(pr.items);
        fprintf(ctx->out, "%zu dead letters\n", pr.n);
    }
    return CLI_OK;
}

static int dlq_replay(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cli_flag flags[] = {{"--limit", true, NULL, false}, {"--dry-run", false, NULL, false}};
    struct ingest_dlq_replay_result res;
    struct ingest_dlq_source src;
    struct printer pr = {.ctx = ctx};
    char *folder = NULL;
    const char *pos[1];
    struct sl_err err;
    size_t n_pos = 0, limit = 0;
    bool help = false, dry_run;
    int rc = cli_args_parse(ctx, argc, argv, flags, 2, pos, 0, &n_pos, &help);

    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    rc = limit_of(ctx, &flags[0], "dlq replay", &limit);
    if (rc != CLI_OK) {
        return rc;
    }
    dry_run = flags[1].is_set;
    sl_err_clear(&err);
    if (source_of(ctx, &src, &folder) != 0) {
        sl_err_set(&err, SL_ENOMEM, "out of memory");
        return cli_fail(ctx, &err);
    }
    pr.is_kafka = src.brokers[0] != '\0';
    pr.items = json_array();
    rc = ingest_dlq_replay(&src, limit, dry_run, ctx->ch_settings, print_record, &pr, &res,
                           &err);
    sl_free(folder);
    if (rc != 0) {
        json_decref(pr.items);
        return cli_fail(ctx, &err);
    }
    if (ctx->is_json) {
        json_t *obj = json_pack("{s:b, s:I, s:I, s:I, s:I, s:o}", "dry_run", dry_run, "seen",
                                (json_int_t)pr.n, "replayed", (json_int_t)res.n_replayed,
                                "failed", (json_int_t)res.n_failed, "still_dead",
                                (json_int_t)res.n_still_dead, "items", pr.items);

        cli_print_json(ctx, obj);
    }
    else {
        json_decref(pr.items);
        if (dry_run) {
            fprintf(ctx->out, "%zu dead letters would be replayed\n", pr.n);
        }
        else {
            fprintf(ctx->out, "replayed %zu, failed %zu%s", res.n_replayed, res.n_failed,
                    pr.is_kafka ? "\n" : "");
            if (!pr.is_kafka) {
                fprintf(ctx->out, ", still rejected %zu\n", res.n_still_dead);
            }
        }
    }
    return res.n_failed > 0 ? CLI_FAILED : CLI_OK;
}

int cli_dlq_main(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {{"list", dlq_list}, {"replay", dlq_replay}};

    return cli_dispatch(ctx, "dlq", usage, verbs, sizeof(verbs) / sizeof(verbs[0]), argc, argv);
}

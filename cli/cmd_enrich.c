/*
 * sluice enrich: what enrichment would store for an event, for operators debugging a
 * dashboard. One event from the command line, or JSON lines on stdin for bulk checks; both
 * use the loader's settings (SLUICE_GEOIP_DB, SLUICE_GEOIP_ASN_DB, SLUICE_UA_REGEXES,
 * SLUICE_CRAWLER_PATTERNS, SLUICE_UA_CACHE_ENTRIES).
 */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "cli.h"
#include "enrich.h"

/* Longest stdin line taken (a line past it is answered with an error and skipped). */
#define LINE_MAX_BYTES (4 * 1024 * 1024)

static const char usage[] =
    "usage: sluice enrich [--ip IP] [--ua STRING] [--hints JSON]\n"
    "       sluice enrich --stdin\n"
    "Prints exactly what enrichment stores for an event (the loader's columns: GeoIP, ASN,\n"
    "browser, OS, device, bot flags, enrichment_version), with the loader's settings\n"
    "(SLUICE_GEOIP_DB, SLUICE_GEOIP_ASN_DB, SLUICE_UA_REGEXES, SLUICE_CRAWLER_PATTERNS).\n"
    "--hints takes User-Agent Client Hints as a JSON object: header names as keys\n"
    "  {\"Sec-CH-UA-Platform\": \"\\\"Windows\\\"\",\n"
    "   \"Sec-CH-UA-Platform-Version\": \"\\\"15.0.0\\\"\"}\n"
    "or navigator.userAgentData's fields\n"
    "  {\"platform\": \"Windows\", \"platformVersion\": \"15.0.0\"}.\n"
    "--stdin reads JSON lines {\"ip\": ..., \"ua\": ..., \"hints\": {...}} and writes one\n"
    "JSON line per input line, in order; a bad line gets {\"line\": N, \"error\": \"...\"}\n"
    "and the rest go on (exit status 1 at the end). Problems with the databases or rule\n"
    "files are warnings on stderr: the answer is what the loader would store without them.\n";

/* Prints what is not working, once, before any answer. */
static void warn_health(struct cli_ctx *ctx, struct enrich *e)
{
    struct enrich_health h;

    enrich_health(e, &h);
    for (int i = 0; i < ENRICH_N_PARTS; i++) {
        const struct enrich_part_status *p = &h.parts[i];

        if (p->state != ENRICH_PART_ERROR && p->state != ENRICH_PART_DEGRADED) {
            continue;
        }
        if (ctx->is_json) {
            json_t *o = json_pack("{s:s, s:s, s:s}", "warning", p->error, "part", p->name,
                                  "state", enrich_part_state_name(p->state));
            char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;

            fprintf(ctx->err, "%s\n", text != NULL ? text : "{}");
            free(text);
            json_decref(o);
        }
        else {
            fprintf(ctx->err, "sluice: warning: %s: %s\n", p->name, p->error);
        }
    }
}

static int create(struct cli_ctx *ctx, struct enrich **out)
{
    struct sl_err err;

    sl_err_clear(&err);
    if (enrich_create(ctx->enrich_settings, ctx->enrich_paths->geoip_db,
                      ctx->enrich_paths->ua_regexes, ctx->now_s, out, &err) != 0) {
        return cli_fail(ctx, &err);
    }
    warn_health(ctx, *out);
    return CLI_OK;
}

/* Text form: one "column  value" line per column, in storage order. */
static void print_text(struct cli_ctx *ctx, json_t *row)
{
    const char *key;
    json_t *v;

    json_object_foreach(row, key, v) {
        if (json_is_string(v)) {
            fprintf(ctx->out, "%-19s %s\n", key, json_string_value(v));
        }
        else if (json_is_null(v)) {
            fprintf(ctx->out, "%-19s -\n", key);
        }
        else {
            char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(10));

            fprintf(ctx->out, "%-19s %s\n", key, text != NULL ? text : "?");
            free(text);
        }
    }
}

static int enrich_one(struct cli_ctx *ctx, const char *ip, const char *ua, const char *hints_json)
{
    struct enrich *e = NULL;
    struct enrich_result r;
    struct enrich_hints hints;
    struct sl_err err;
    json_t *row;
    int status;

    enrich_hints_init(&hints);
    sl_err_clear(&err);
    if (hints_json != NULL) {
        json_error_t jerr;
        json_t *h = json_loads(hints_json, 0, &jerr);

        if (h == NULL) {
            return cli_usage_error(ctx, "enrich", "--hints is not JSON: %s", jerr.text);
        }
        if (enrich_hints_from_json(&hints, h, &err) != 0) {
            json_decref(h);
            return cli_usage_error(ctx, "enrich", "--hints: %s", err.msg);
        }
        json_decref(h);
    }
    status = create(ctx, &e);
    if (status != CLI_OK) {
        return status;
    }
    /* Out of memory still yields a complete answer; say so rather than hide it. */
    if (enrich_lookup(e, ip, ua, &hints, &r) != 0) {
        fprintf(ctx->err, "sluice: warning: out of memory during the lookup; the answer may "
                "lack the user-agent columns\n");
    }
    row = enrich_result_to_json(&r);
    if (row == NULL) {
        enrich_destroy(e);
        return cli_fail(ctx, &(struct sl_err){.code = SL_ENOMEM, .msg = "out of memory"});
    }
    if (ctx->is_json) {
        cli_print_json(ctx, row);
    }
    else {
        print_text(ctx, row);
        /* The number the events table stores in its enrichment_version column (the text
         * above says which data it stands for); see enrich_version_id. */
        fprintf(ctx->out, "%-19s %u\n", "enrichment_version_id", (unsigned)r.enrichment_version_id);
        json_decref(row);
    }
    enrich_destroy(e);
    return CLI_OK;
}

/*
 * Reads one line (without its newline) into *buf, growing it up to max bytes. Returns its
 * length, or -1 at the end of input. A longer line is consumed whole and *is_too_long set.
 */
static long read_line(FILE *in, char **buf, size_t *cap, size_t max, bool *is_too_long)
{
    size_t n = 0;
    int c;

    *is_too_long = false;
    c = getc(in);
    if (c == EOF) {
        return -1;
    }
    for (; c != EOF && c != '\n'; c = getc(in)) {
        if (*is_too_long) {
            continue;
        }
        if (n + 1 >= *cap) {
            size_t want = *cap == 0 ? 4096 : *cap * 2;
            char *grown;

            if (want > max + 1) {
                want = max + 1;
            }
            if (n + 1 >= want) {
                *is_too_long = true;
                continue;
            }
            grown = sl_realloc(*buf, want);
            if (grown == NULL) {
                *is_too_long = true;
                continue;
            }
            *buf = grown;
            *cap = want;
        }
        (*buf)[n++] = (char)c;
    }
    if (*cap == 0) {
        *buf = sl_malloc(1);
        *cap = *buf != NULL ? 1 : 0;
    }
    if (*buf != NULL) {
        (*buf)[n] = '\0';
    }
    return (long)n;
}

/* Prints {"line": N, "error": msg} on stdout (keeping one output line per input line) and
 * the same on stderr for a person watching. */
static void line_error(struct cli_ctx *ctx, long line, const char *msg)
{
    json_t *o = json_pack("{s:I, s:s}", "line", (json_int_t)line, "error", msg);

    cli_print_json(ctx, o);
    fprintf(ctx->err, "sluice: error: line %ld: %s\n", line, msg);
}

/* One input object to an answer; fills err (naming the problem) on bad input. */
static int enrich_line(struct enrich *e, json_t *in, json_t **row, struct sl_err *err)
{
    struct enrich_hints hints;
    struct enrich_result r;
    const char *ip = NULL, *ua = NULL;
    const char *key;
    json_t *v;

    enrich_hints_init(&hints);
    if (!json_is_object(in)) {
        return sl_err_set(err, SL_EINVAL, "expected an object {\"ip\", \"ua\", \"hints\"}");
    }
    json_object_foreach(in, key, v) {
        bool is_ip = strcmp(key, "ip") == 0;
        bool is_ua = strcmp(key, "ua") == 0 || strcmp(key, "user_agent") == 0;

        if (is_ip || is_ua) {
            if (!json_is_string(v) && !json_is_null(v)) {
                return sl_err_set(err, SL_EINVAL, "%s: expected a string", key);
            }
            *(is_ip ? &ip : &ua) = json_string_value(v);
        }
        else if (strcmp(key, "hints") == 0) {
            if (!json_is_null(v) && enrich_hints_from_json(&hints, v, err) != 0) {
                return SL_EINVAL;
            }
        }
        else {
            return sl_err_set(err, SL_EINVAL, "unknown key \"%s\" (expected ip, ua, hints)",
                              key);
        }
    }
    (void)enrich_lookup(e, ip, ua, &hints, &r);
    *row = enrich_result_to_json(&r);
    return *row != NULL ? 0 : sl_err_set(err, SL_ENOMEM, "out of memory");
}

static int enrich_stdin(struct cli_ctx *ctx, FILE *in)
{
    struct enrich *e = NULL;
    char *buf = NULL;
    size_t cap = 0;
    long line = 0, len;
    bool is_too_long = false;
    bool has_failed = false;
    int status = create(ctx, &e);

    if (status != CLI_OK) {
        return status;
    }
    while ((len = read_line(in, &buf, &cap, LINE_MAX_BYTES, &is_too_long)) >= 0) {
        json_error_t jerr;
        json_t *obj, *row = NULL;
        struct sl_err err;

        line++;
        if (is_too_long || buf == NULL) {
            line_error(ctx, line, "line is longer than 4 MiB");
            has_failed = true;
            continue;
        }
        if (strspn(buf, " \t\r") == (size_t)len) {
            continue;
        }
        obj = json_loadb(buf, (size_t)len, 0, &jerr);
        if (obj == NULL) {
            char msg[256];

            snprintf(msg, sizeof(msg), "not JSON: %s (column %d)", jerr.text, jerr.column);
            line_error(ctx, line, msg);
            has_failed = true;
            continue;
        }
        sl_err_clear(&err);
        if (enrich_line(e, obj, &row, &err) != 0) {
            line_error(ctx, line, err.msg);
            has_failed = true;
        }
        else {
            cli_print_json(ctx, row);
        }
        json_decref(obj);
        fflush(ctx->out);
    }
    sl_free(buf);
    enrich_destroy(e);
    return has_failed ? CLI_FAILED : CLI_OK;
}

int cli_enrich_main(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cli_flag flags[] = {
        {.name = "--ip", .takes_value = true},
        {.name = "--ua", .takes_value = true},
        {.name = "--hints", .takes_value = true},
        {.name = "--stdin", .takes_value = false},
    };
    const char *pos[1];
    size_t n_pos = 0;
    bool help = false;
    int rc;

    /* `sluice enrich` has no verb: argv[0] is already a flag, and the parser skips its
     * argv[0], so it gets the command's own name (argv[-1], "enrich") in that place. */
    rc = cli_args_parse(ctx, argc + 1, argv - 1, flags, 4, pos, 0, &n_pos, &help);
    if (rc != CLI_OK || help) {
        return help ? cli_help(ctx, usage) : rc;
    }
    if (flags[3].is_set) {
        if (flags[0].is_set || flags[1].is_set || flags[2].is_set) {
            return cli_usage_error(ctx, "enrich", "--stdin takes no --ip, --ua or --hints");
        }
        return enrich_stdin(ctx, stdin);
    }
    if (!flags[0].is_set && !flags[1].is_set) {
        return cli_usage_error(ctx, "enrich", "give --ip, --ua (or both), or --stdin");
    }
    return enrich_one(ctx, flags[0].value, flags[1].value,
                      flags[2].is_set ? flags[2].value : NULL);
}

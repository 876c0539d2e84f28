/* The CLI's shared plumbing: arguments, output, errors, the store. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "timefmt.h"

struct cli_flag *cli_flag_get(struct cli_flag *flags, size_t n_flags, const char *name)
{
    for (size_t i = 0; i < n_flags; i++) {
        if (strcmp(flags[i].name, name) == 0) {
            return &flags[i];
        }
    }
    return NULL;
}

int cli_usage_error(struct cli_ctx *ctx, const char *usage_cmd, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (ctx->is_json) {
        json_t *obj = json_pack("{s:s, s:s}", "error", msg, "kind", "usage");

        if (obj != NULL) {
            char *text = json_dumps(obj, JSON_COMPACT);

            fprintf(ctx->err, "%s\n", text != NULL ? text : "{}");
            free(text);
            json_decref(obj);
        }
    }
    else {
        fprintf(ctx->err, "sluice: error: %s\n(see `sluice %s --help`)\n", msg, usage_cmd);
    }
    return CLI_USAGE;
}

int cli_fail(struct cli_ctx *ctx, const struct sl_err *err)
{
    int status = err->code == SL_EINVAL ? CLI_USAGE : CLI_FAILED;

    if (ctx->is_json) {
        json_t *obj = json_pack("{s:s, s:s}", "error", err->msg, "kind", sl_strerror(err->code));

        if (obj != NULL) {
            char *text = json_dumps(obj, JSON_COMPACT);

            fprintf(ctx->err, "%s\n", text != NULL ? text : "{}");
            free(text);
            json_decref(obj);
        }
    }
    else {
        fprintf(ctx->err, "sluice: error: %s\n",
                err->msg[0] != '\0' ? err->msg : sl_strerror(err->code));
    }
    return status;
}

int cli_args_parse(struct cli_ctx *ctx, int argc, char **argv, struct cli_flag *flags,
                   size_t n_flags, const char **pos, size_t max_pos, size_t *n_pos,
                   bool *wants_help)
{
    *n_pos = 0;
    *wants_help = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        struct cli_flag *f;
        const char *eq;
        char name[64];

        if (strcmp(a, "--json") == 0) {
            ctx->is_json = true;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *wants_help = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (*n_pos == max_pos) {
                return cli_usage_error(ctx, argv[0], "unexpected argument '%s'", a);
            }
            pos[(*n_pos)++] = a;
            continue;
        }
        eq = strchr(a, '=');
        snprintf(name, sizeof(name), "%.*s", eq != NULL ? (int)(eq - a) : (int)strlen(a), a);
        f = cli_flag_get(flags, n_flags, name);
        if (f == NULL) {
            return cli_usage_error(ctx, argv[0], "unknown option '%s'", name);
        }
        f->is_set = true;
        if (!f->takes_value) {
            if (eq != NULL) {
                return cli_usage_error(ctx, argv[0], "option %s takes no value", name);
            }
            continue;
        }
        if (eq != NULL) {
            f->value = eq + 1;
        }
        else if (i + 1 < argc) {
            f->value = argv[++i];
        }
        else {
            return cli_usage_error(ctx, argv[0], "option %s needs a value", name);
        }
    }
    return CLI_OK;
}

int cli_store(struct cli_ctx *ctx, struct sl_store **out, struct sl_err *err)
{
    int rc;

    if (ctx->store == NULL) {
        rc = sl_store_open(&ctx->store, ctx->store_settings->path,
                           ctx->store_settings->busy_timeout_ms, err);
        if (rc != 0) {
            return rc;
        }
    }
    *out = ctx->store;
    return 0;
}

void cli_print_json(struct cli_ctx *ctx, json_t *v)
{
    char *text = v != NULL ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;

    fprintf(ctx->out, "%s\n", text != NULL ? text : "null");
    free(text);
    json_decref(v);
}

void cli_print_records(struct cli_ctx *ctx, const void *records, size_t n, size_t elem,
                       cli_record_json_cb to_json, const char *header,
                       cli_record_row_cb print_row)
{
    const char *p = records;

    if (ctx->is_json) {
        json_t *arr = json_array();

        for (size_t i = 0; i < n; i++) {
            json_array_append_new(arr, to_json(p + i * elem, ctx->now_s));
        }
        cli_print_json(ctx, arr);
        return;
    }
    fprintf(ctx->out, "%s\n", header);
    for (size_t i = 0; i < n; i++) {
        print_row(ctx, p + i * elem);
    }
}

const char *cli_time(int64_t s, char *buf)
{
    if (s == 0) {
        return "-";
    }
    return sl_timefmt_iso(s, buf);
}

json_t *cli_json_time(int64_t s)
{
    char buf[SL_TIMEFMT_ISO_MAX];

    return s == 0 ? json_null() : json_string(sl_timefmt_iso(s, buf));
}

int cli_parse_int(struct cli_ctx *ctx, const char *usage_cmd, const char *flag,
                  const char *text, int64_t min, int64_t max, int64_t *out)
{
    char *end = NULL;
    long long v;

    errno = 0;
    v = strtoll(text, &end, 10);
    if (end == text || *end != '\0' || errno != 0) {
        return cli_usage_error(ctx, usage_cmd, "%s: '%s' is not a whole number", flag, text);
    }
    if (v < min || v > max) {
        return cli_usage_error(ctx, usage_cmd, "%s: %lld is out of range (%lld..%lld)", flag, v,
                               (long long)min, (long long)max);
    }
    *out = v;
    return CLI_OK;
}

int cli_help(struct cli_ctx *ctx, const char *usage)
{
    fputs(usage, ctx->out);
    return CLI_OK;
}

int cli_dispatch(struct cli_ctx *ctx, const char *noun, const char *usage,
                 const struct cli_verb *verbs, size_t n_verbs, int argc, char **argv)
{
    if (argc < 1) {
        fputs(usage, ctx->err);
        return CLI_USAGE;
    }
    if (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0 ||
        strcmp(argv[0], "help") == 0) {
        return cli_help(ctx, usage);
    }
    for (size_t i = 0; i < n_verbs; i++) {
        if (strcmp(argv[0], verbs[i].name) == 0) {
            return verbs[i].run(ctx, argc, argv);
        }
    }
    return cli_usage_error(ctx, noun, "unknown %s command '%s'", noun, argv[0]);
}

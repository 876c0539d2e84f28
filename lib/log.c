/*
 * JSON-lines logger. Per-component levels live in a small static table set by
 * sl_log_configure before threads start; each line is built in a stack buffer and
 * written with one write(2) so lines from different threads never interleave.
 */
#include "log.h"

#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_COMPONENTS 32
#define COMPONENT_MAX 32
#define LINE_MAX_BYTES 4096
#define MSG_MAX_BYTES 2048

struct component_level {
    char name[COMPONENT_MAX];
    enum sl_log_level level;
};

/* GLOBAL: log levels and sink. Written by sl_log_configure/sl_log_set_fd at start-up,
 * before threads start; read by every thread afterwards without a lock. */
static enum sl_log_level default_level = SL_LOG_LEVEL_INFO;
static struct component_level levels[MAX_COMPONENTS];
static size_t n_levels;
static int sink_fd = 2;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

static int check_level_spec(const char *key, const char *text, struct sl_err *err);

const struct sl_cfg_opt sl_log_cfg_opts[] = {
    {.key = "SLUICE_LOG_LEVEL", .type = SL_CFG_STRING, .def = "info",
     .offset = offsetof(struct sl_log_settings, level), .check = check_level_spec,
     .desc = "Log level (debug, info, warn, error, off), optionally per component: "
             "`info,ch=debug,store=warn`. Logs are JSON lines on stderr."},
};
const size_t sl_log_cfg_n_opts = sizeof(sl_log_cfg_opts) / sizeof(sl_log_cfg_opts[0]);

const char *sl_log_level_name(enum sl_log_level level)
{
    if ((int)level < 0 || level > SL_LOG_LEVEL_OFF) {
        return "?";
    }
    return level_names[level];
}

int sl_log_level_parse(const char *name)
{
    for (int i = 0; i <= SL_LOG_LEVEL_OFF; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            return i;
        }
    }
    if (strcmp(name, "warning") == 0) {
        return SL_LOG_LEVEL_WARN;
    }
    return -1;
}

int sl_log_configure(const char *spec, struct sl_err *err)
{
    struct component_level parsed[MAX_COMPONENTS];
    size_t n_parsed = 0;
    int parsed_default = SL_LOG_LEVEL_INFO;
    char buf[512];
    char *save = NULL;
    char *item;

    if (spec == NULL || spec[0] == '\0') {
        spec = "info";
    }
    if (strlen(spec) >= sizeof(buf)) {
        return sl_err_set(err, SL_EINVAL, "log level spec is longer than %zu bytes",
                          sizeof(buf) - 1);
    }
    strcpy(buf, spec);
    for (item = strtok_r(buf, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        int lvl;

        while (*item == ' ') {
            item++;
        }
        if (eq == NULL) {
            lvl = sl_log_level_parse(item);
            if (lvl < 0) {
                return sl_err_set(err, SL_EINVAL,
                                  "unknown log level '%s' (use debug, info, warn, error, off)",
                                  item);
            }
            parsed_default = lvl;
            continue;
        }
        *eq = '\0';
        lvl = sl_log_level_parse(eq + 1);
        if (lvl < 0) {
            return sl_err_set(err, SL_EINVAL,
                              "unknown log level '%s' for component '%s' (use debug, info, "
                              "warn, error, off)",
                              eq + 1, item);
        }
        if (item[0] == '\0' || strlen(item) >= COMPONENT_MAX) {
            return sl_err_set(err, SL_EINVAL, "bad component name '%s' in log level spec",
                              item);
        }
        if (n_parsed == MAX_COMPONENTS) {
            return sl_err_set(err, SL_EINVAL, "more than %d components in log level spec",
                              MAX_COMPONENTS);
        }
        snprintf(parsed[n_parsed].name, COMPONENT_MAX, "%s", item);
        parsed[n_parsed].level = (enum sl_log_level)lvl;
        n_parsed++;
    }
    memcpy(levels, parsed, sizeof(parsed[0]) * n_parsed);
    n_levels = n_parsed;
    default_level = (enum sl_log_level)parsed_default;
    return 0;
}

/* Validates a spec without making it current (levels are applied after loading). */
static int check_level_spec(const char *key, const char *text, struct sl_err *err)
{
    enum sl_log_level saved_default = default_level;
    struct component_level saved[MAX_COMPONENTS];
    size_t saved_n = n_levels;
    int rc;

    memcpy(saved, levels, sizeof(saved));
    rc = sl_log_configure(text, err);
    memcpy(levels, saved, sizeof(saved));
    n_levels = saved_n;
    default_level = saved_default;
    if (rc != 0) {
        sl_err_wrap(err, "%s", key);
    }
    return rc;
}

void sl_log_set_fd(int fd)
{
    sink_fd = fd;
}

bool sl_log_is_enabled(enum sl_log_level level, const char *component)
{
    enum sl_log_level threshold = default_level;

    for (size_t i = 0; i < n_levels; i++) {
        if (strcmp(levels[i].name, component) == 0) {
            threshold = levels[i].level;
            break;
        }
    }
    return level >= threshold && level < SL_LOG_LEVEL_OFF;
}

/* Appends s as JSON string content (without quotes); returns the new length. */
static size_t append_escaped(char *out, size_t len, size_t cap, const char *s)
{
    static const char hex[] = "0123456789abcdef";

    for (; *s != '\0' && len + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\') {
            out[len++] = '\\';
            out[len++] = (char)c;
        }
        else if (c == '\n') {
            out[len++] = '\\';
            out[len++] = 'n';
        }
        else if (c == '\t') {
            out[len++] = '\\';
            out[len++] = 't';
        }
        else if (c == '\r') {
            out[len++] = '\\';
            out[len++] = 'r';
        }
        else if (c < 0x20) {
            out[len++] = '\\';
            out[len++] = 'u';
            out[len++] = '0';
            out[len++] = '0';
            out[len++] = hex[c >> 4];
            out[len++] = hex[c & 15];
        }
        else {
            out[len++] = (char)c;
        }
    }
    return len;
}

static size_t append_raw(char *out, size_t len, size_t cap, const char *s)
{
    size_t n = strlen(s);

    if (len + n >= cap) {
        n = cap - len - 1;
    }
    memcpy(out + len, s, n);
    return len + n;
}

static size_t append_field(char *out, size_t len, size_t cap, const char *name, const char *val)
{
    len = append_raw(out, len, cap, ",\"");
    len = append_raw(out, len, cap, name);
    len = append_raw(out, len, cap, "\":\"");
    len = append_escaped(out, len, cap, val);
    return append_raw(out, len, cap, "\"");
}

void sl_log_write(enum sl_log_level level, const char *component, const struct sl_log_ctx *ctx,
                  const char *fmt, ...)
{
    char line[LINE_MAX_BYTES];
    char msg[MSG_MAX_BYTES];
    char ts[40];
    struct timeval tv;
    struct tm tm;
    size_t len = 0;
    va_list ap;
    int saved_errno = errno;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    {
        size_t n = strftime(ts, sizeof(ts) - 6, "%Y-%m-%dT%H:%M:%S", &tm);
        int ms = (int)(tv.tv_usec / 1000) % 1000;

        ts[n++] = '.';
        ts[n++] = (char)('0' + ms / 100);
        ts[n++] = (char)('0' + ms / 10 % 10);
        ts[n++] = (char)('0' + ms % 10);
        ts[n++] = 'Z';
        ts[n] = '\0';
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    len = append_raw(line, len, sizeof(line), "{\"ts\":\"");
    len = append_raw(line, len, sizeof(line), ts);
    len = append_raw(line, len, sizeof(line), "\"");
    len = append_field(line, len, sizeof(line), "level", sl_log_level_name(level));
    len = append_field(line, len, sizeof(line), "component", component);
    len = append_field(line, len, sizeof(line), "msg", msg);
    if (ctx != NULL) {
        if (ctx->request_id != NULL) {
            len = append_field(line, len, sizeof(line), "request_id", ctx->request_id);
        }
        if (ctx->job_id != NULL) {
            len = append_field(line, len, sizeof(line), "job_id", ctx->job_id);
        }
        if (ctx->tenant_id != NULL) {
            len = append_field(line, len, sizeof(line), "tenant_id", ctx->tenant_id);
        }
    }
    if (len > sizeof(line) - 3) {
        len = sizeof(line) - 3;
    }
    line[len++] = '}';
    line[len++] = '\n';
    /* A failed log write has nowhere to be reported; the line is dropped. */
    if (write(sink_fd, line, len) < 0) {
        errno = saved_errno;
    }
    errno = saved_errno;
}

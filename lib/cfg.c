/*
 * Settings loader: defaults, then a KEY=VALUE file, then the environment, each value
 * parsed and checked by the type of its table entry.
 */
#include "cfg.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

#define LINE_MAX_BYTES 4096

static char **str_field(const struct sl_cfg_section *sec, const struct sl_cfg_opt *opt)
{
    return (char **)((char *)sec->base + opt->offset);
}

static bool is_string_type(enum sl_cfg_type t)
{
    return t == SL_CFG_STRING || t == SL_CFG_ENUM || t == SL_CFG_URL || t == SL_CFG_HOSTPORT;
}

static int parse_int(const struct sl_cfg_opt *opt, const char *text, int64_t *out,
                     struct sl_err *err)
{
    char *end = NULL;
    long long v;
    int64_t mult = 1;

    errno = 0;
    v = strtoll(text, &end, 10);
    if (end == text || errno == ERANGE) {
        return sl_err_set(err, SL_EINVAL, "%s: '%s' is not a whole number", opt->key, text);
    }
    if (opt->type == SL_CFG_BYTES && *end != '\0') {
        switch (toupper((unsigned char)*end)) {
        case 'K': mult = 1024; break;
        case 'M': mult = 1024 * 1024; break;
        case 'G': mult = 1024 * 1024 * 1024; break;
        default: mult = 0; break;
        }
        if (mult != 0) {
            end++;
            /* K, KB and KiB all mean 1024 bytes. */
            if (toupper((unsigned char)*end) == 'I' && toupper((unsigned char)end[1]) == 'B') {
                end += 2;
            }
            else if (toupper((unsigned char)*end) == 'B') {
                end++;
            }
        }
        if (mult == 0 || *end != '\0') {
            return sl_err_set(err, SL_EINVAL, "%s: '%s' has an unknown size suffix (use K, M "
                              "or G)", opt->key, text);
        }
        if (v > INT64_MAX / mult || v < INT64_MIN / mult) {
            return sl_err_set(err, SL_EINVAL, "%s: '%s' is too large", opt->key, text);
        }
    }
    if (*end != '\0') {
        return sl_err_set(err, SL_EINVAL, "%s: '%s' is not a whole number", opt->key, text);
    }
    v *= mult;
    if (v < opt->min || v > opt->max) {
        return sl_err_set(err, SL_EINVAL, "%s: %s is out of range (%" PRId64 "..%" PRId64 ")",
                          opt->key, text, opt->min, opt->max);
    }
    *out = v;
    return 0;
}

static int parse_bool(const struct sl_cfg_opt *opt, const char *text, bool *out,
                      struct sl_err *err)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};

    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return sl_err_set(err, SL_EINVAL, "%s: '%s' is not a boolean (use true or false)",
                      opt->key, text);
}

static int check_enum(const struct sl_cfg_opt *opt, const char *text, struct sl_err *err)
{
    const char *p = opt->choices;
    size_t len = strlen(text);

    while (p != NULL && *p != '\0') {
        const char *bar = strchr(p, '|');
        size_t n = bar != NULL ? (size_t)(bar - p) : strlen(p);

        if (n == len && strncmp(p, text, n) == 0) {
            return 0;
        }
        p = bar != NULL ? bar + 1 : NULL;
    }
    return sl_err_set(err, SL_EINVAL, "%s: '%s' is not one of %s", opt->key, text,
                      opt->choices != NULL ? opt->choices : "(none)");
}

static int check_port(const struct sl_cfg_opt *opt, const char *text, const char *port,
                      struct sl_err *err)
{
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(port, &end, 10);
    if (!isdigit((unsigned char)port[0]) || *end != '\0' || errno != 0 || v < 1 ||
        v > 65535) {
        return sl_err_set(err, SL_EINVAL, "%s: '%s' has no valid port (1..65535)", opt->key,
                          text);
    }
    return 0;
}

static int check_hostport(const struct sl_cfg_opt *opt, const char *text, struct sl_err *err)
{
    const char *colon = strrchr(text, ':');

    if (colon == NULL) {
        return sl_err_set(err, SL_EINVAL, "%s: '%s' is not host:port", opt->key, text);
    }
    if (text[0] == '[' && (colon == text || colon[-1] != ']')) {
        return sl_err_set(err, SL_EINVAL, "%s: '%s' is not [ipv6]:port", opt->key, text);
    }
    if (text[0] != '[' && memchr(text, ':', (size_t)(colon - text)) != NULL) {
        return sl_err_set(err, SL_EINVAL, "%s: '%s' is not host:port (write IPv6 addresses "
                          "as [addr]:port)", opt->key, text);
    }
    return check_port(opt, text, colon + 1, err);
}

static int check_url(const struct sl_cfg_opt *opt, const char *text, struct sl_err *err)
{
    const char *host;
    const char *end;

    if (strncmp(text, "http://", 7) == 0) {
        host = text + 7;
    }
    else if (strncmp(text, "https://", 8) == 0) {
        host = text + 8;
    }
    else {
        return sl_err_set(err, SL_EINVAL, "%s: '%s' is not an http:// or https:// URL",
                          opt->key, text);
    }
    if (host[0] == '[') {
        /* IPv6 literal: the host runs to the closing bracket. */
        end = strchr(host, ']');
        if (end == NULL || end == host + 1) {
            return sl_err_set(err, SL_EINVAL, "%s: '%s' has no host", opt->key, text);
        }
        end++;
        if (*end != '\0' && strchr(":/?#", *end) == NULL) {
            return sl_err_set(err, SL_EINVAL, "%s: '%s' has no valid host", opt->key, text);
        }
    }
    else {
        end = host + strcspn(host, ":/?#");
    }
    if (end == host) {
        return sl_err_set(err, SL_EINVAL, "%s: '%s' has no host", opt->key, text);
    }
    if (*end == ':') {
        char port[8];
        size_t n = strcspn(end + 1, "/?#");

        if (n >= sizeof(port)) {
            return sl_err_set(err, SL_EINVAL, "%s: '%s' has no valid port (1..65535)",
                              opt->key, text);
        }
        memcpy(port, end + 1, n);
        port[n] = '\0';
        return check_port(opt, text, port, err);
    }
    return 0;
}

int sl_cfg_parse_value(const struct sl_cfg_opt *opt, const char *text, void *dst,
                       struct sl_err *err)
{
    int rc = 0;
    char *copy;

    if (text == NULL) {
        text = "";
    }
    switch (opt->type) {
    case SL_CFG_INT:
    case SL_CFG_BYTES: {
        int64_t v = 0;

        /* Parsed into a local so a failed .check leaves the field as it was. */
        rc = parse_int(opt, text, &v, err);
        if (rc == 0 && opt->check != NULL) {
            rc = opt->check(opt->key, text, err);
        }
        if (rc == 0) {
            *(int64_t *)dst = v;
        }
        return rc;
    }
    case SL_CFG_BOOL: {
        bool v = false;

        rc = parse_bool(opt, text, &v, err);
        if (rc == 0 && opt->check != NULL) {
            rc = opt->check(opt->key, text, err);
        }
        if (rc == 0) {
            *(bool *)dst = v;
        }
        return rc;
    }
    case SL_CFG_ENUM:
        rc = check_enum(opt, text, err);
        break;
    case SL_CFG_URL:
        rc = check_url(opt, text, err);
        break;
    case SL_CFG_HOSTPORT:
        rc = check_hostport(opt, text, err);
        break;
    case SL_CFG_STRING:
        break;
    }
    if (rc == 0 && opt->check != NULL) {
        rc = opt->check(opt->key, text, err);
    }
    if (rc != 0) {
        return rc;
    }
    copy = sl_strdup(text);
    if (copy == NULL) {
        return sl_err_set(err, SL_ENOMEM, "%s: out of memory", opt->key);
    }
    sl_free(*(char **)dst);
    *(char **)dst = copy;
    return 0;
}

static bool is_key(const struct sl_cfg_opt *opt, const char *key, size_t key_len)
{
    return strlen(opt->key) == key_len && strncmp(opt->key, key, key_len) == 0;
}

/*
 * Parses val into every section that declares key (two workers may share a setting, such
 * as the enrichment data files). *n_found counts them; 0 means the key is unknown.
 */
static int assign(const struct sl_cfg_section *secs, size_t n_secs, const char *key,
                  size_t key_len, const char *val, size_t *n_found, struct sl_err *err)
{
    *n_found = 0;
    for (size_t s = 0; s < n_secs; s++) {
        for (size_t i = 0; i < secs[s].n_opts; i++) {
            const struct sl_cfg_opt *opt = &secs[s].opts[i];
            int rc;

            if (!is_key(opt, key, key_len)) {
                continue;
            }
            (*n_found)++;
            rc = sl_cfg_parse_value(opt, val, (char *)secs[s].base + opt->offset, err);
            if (rc != 0) {
                return rc;
            }
        }
    }
    return 0;
}

/* Whether an earlier entry (section s, option i) declared the same key: printed once. */
static bool is_repeat(const struct sl_cfg_section *secs, size_t s, size_t i)
{
    const char *key = secs[s].opts[i].key;

    for (size_t ps = 0; ps <= s; ps++) {
        size_t end = ps == s ? i : secs[ps].n_opts;

        for (size_t pi = 0; pi < end; pi++) {
            if (strcmp(secs[ps].opts[pi].key, key) == 0) {
                return true;
            }
        }
    }
    return false;
}

static char *trim(char *s)
{
    char *end;

    while (isspace((unsigned char)*s)) {
        s++;
    }
    end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1])) {
        *--end = '\0';
    }
    return s;
}

static int load_file(const struct sl_cfg_section *secs, size_t n_secs, const char *path,
                     struct sl_err *err)
{
    char line[LINE_MAX_BYTES];
    FILE *f = fopen(path, "r");
    int lineno = 0;
    int rc = 0;

    if (f == NULL) {
        return sl_err_set(err, SL_EINVAL, "--config %s: cannot open: %s", path,
                          strerror(errno));
    }
    while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
        size_t n_found = 0;
        char *key;
        char *val;
        char *eq;
        size_t vlen;

        lineno++;
        if (strchr(line, '\n') == NULL && !feof(f)) {
            rc = sl_err_set(err, SL_EINVAL, "%s line %d: line is longer than %d bytes", path,
                            lineno, LINE_MAX_BYTES - 2);
            break;
        }
        key = trim(line);
        if (key[0] == '\0' || key[0] == '#') {
            continue;
        }
        if (strncmp(key, "export ", 7) == 0) {
            key = trim(key + 7);
        }
        eq = strchr(key, '=');
        if (eq == NULL) {
            rc = sl_err_set(err, SL_EINVAL, "%s line %d: expected KEY=VALUE, got '%s'", path,
                            lineno, key);
            break;
        }
        *eq = '\0';
        key = trim(key);
        val = trim(eq + 1);
        vlen = strlen(val);
        if (vlen >= 2 && (val[0] == '"' || val[0] == '\'') && val[vlen - 1] == val[0]) {
            val[vlen - 1] = '\0';
            val++;
        }
        rc = assign(secs, n_secs, key, strlen(key), val, &n_found, err);
        if (rc != 0) {
            sl_err_wrap(err, "%s line %d", path, lineno);
        }
        else if (n_found == 0) {
            rc = sl_err_set(err, SL_EINVAL, "%s line %d: unknown setting %s", path, lineno,
                            key);
        }
    }
    if (rc == 0 && ferror(f)) {
        rc = sl_err_set(err, SL_EIO, "--config %s: read error", path);
    }
    fclose(f);
    return rc;
}

int sl_cfg_load(const struct sl_cfg_section *secs, size_t n_secs, const char *file,
                char *const *envp, struct sl_err *err)
{
    int rc;

    for (size_t s = 0; s < n_secs; s++) {
        for (size_t i = 0; i < secs[s].n_opts; i++) {
            const struct sl_cfg_opt *opt = &secs[s].opts[i];

            rc = sl_cfg_parse_value(opt, opt->def, (char *)secs[s].base + opt->offset, err);
            if (rc != 0) {
                sl_err_wrap(err, "built-in default");
                return rc;
            }
        }
    }
    if (file != NULL) {
        rc = load_file(secs, n_secs, file, err);
        if (rc != 0) {
            return rc;
        }
    }
    for (size_t e = 0; envp != NULL && envp[e] != NULL; e++) {
        const char *eq = strchr(envp[e], '=');
        size_t n_found = 0;

        if (eq == NULL || strncmp(envp[e], "SLUICE_", 7) != 0) {
            continue;
        }
        rc = assign(secs, n_secs, envp[e], (size_t)(eq - envp[e]), eq + 1, &n_found, err);
        if (rc != 0) {
            sl_err_wrap(err, "environment");
            return rc;
        }
    }
    return 0;
}

void sl_cfg_fini(const struct sl_cfg_section *secs, size_t n_secs)
{
    for (size_t s = 0; s < n_secs; s++) {
        for (size_t i = 0; i < secs[s].n_opts; i++) {
            if (is_string_type(secs[s].opts[i].type)) {
                char **field = str_field(&secs[s], &secs[s].opts[i]);

                sl_free(*field);
                *field = NULL;
            }
        }
    }
}

static void format_value(const struct sl_cfg_section *sec, const struct sl_cfg_opt *opt,
                         char *buf, size_t cap)
{
    const void *field = (const char *)sec->base + opt->offset;

    switch (opt->type) {
    case SL_CFG_INT:
    case SL_CFG_BYTES:
        snprintf(buf, cap, "%" PRId64, *(const int64_t *)field);
        break;
    case SL_CFG_BOOL:
        snprintf(buf, cap, "%s", *(const bool *)field ? "true" : "false");
        break;
    default: {
        const char *s = *(char *const *)field;

        if (opt->is_secret && s != NULL && s[0] != '\0') {
            s = "****";
        }
        snprintf(buf, cap, "%s", s != NULL ? s : "");
        break;
    }
    }
}

void sl_cfg_print(const struct sl_cfg_section *secs, size_t n_secs, FILE *out)
{
    char buf[1024];

    for (size_t s = 0; s < n_secs; s++) {
        fprintf(out, "# %s\n", secs[s].name);
        for (size_t i = 0; i < secs[s].n_opts; i++) {
            if (is_repeat(secs, s, i)) {
                continue;
            }
            format_value(&secs[s], &secs[s].opts[i], buf, sizeof(buf));
            fprintf(out, "%s=%s\n", secs[s].opts[i].key, buf);
        }
    }
}

void sl_cfg_print_docs(const struct sl_cfg_section *secs, size_t n_secs, FILE *out)
{
    fprintf(out, "| setting | default | description |\n|---|---|---|\n");
    for (size_t s = 0; s < n_secs; s++) {
        for (size_t i = 0; i < secs[s].n_opts; i++) {
            const struct sl_cfg_opt *opt = &secs[s].opts[i];
            const char *def = opt->def != NULL && opt->def[0] != '\0' ? opt->def : "(empty)";

            if (is_repeat(secs, s, i)) {
                continue;
            }
            fprintf(out, "| `%s` | `%s` | %s%s |\n", opt->key, def, opt->desc,
                    opt->is_secret ? " (secret)" : "");
        }
    }
}

int sl_cfg_parse_args(int argc, char **argv, struct sl_cfg_args *out, struct sl_err *err)
{
    memset(out, 0, sizeof(*out));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "--config") == 0) {
            if (i + 1 >= argc) {
                return sl_err_set(err, SL_EINVAL, "--config needs a file name");
            }
            out->config_file = argv[++i];
        }
        else if (strncmp(a, "--config=", 9) == 0) {
            out->config_file = a + 9;
        }
        else if (strcmp(a, "--print-config") == 0) {
            out->print_config = true;
        }
        else if (strcmp(a, "--help-config") == 0) {
            out->help_config = true;
        }
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            out->help = true;
        }
        else if (strcmp(a, "--version") == 0) {
            out->version = true;
        }
        else {
            return sl_err_set(err, SL_EINVAL, "unknown argument '%s' (see --help)", a);
        }
    }
    return 0;
}

int sl_cfg_boot(const char *prog, const char *usage, int argc, char **argv,
                const struct sl_cfg_section *secs, size_t n_secs, FILE *out, FILE *errout)
{
    extern char **environ;
    struct sl_cfg_args args;
    struct sl_err err;

    sl_err_clear(&err);
    if (sl_cfg_parse_args(argc, argv, &args, &err) != 0) {
        fprintf(errout, "%s: error: %s\n", prog, err.msg);
        return SL_EXIT_USAGE;
    }
    if (args.help) {
        fputs(usage, out);
        return 0;
    }
    if (args.version) {
        fprintf(out, "%s %s\n", prog, SLUICE_VERSION);
        return 0;
    }
    if (args.help_config) {
        sl_cfg_print_docs(secs, n_secs, out);
        return 0;
    }
    if (sl_cfg_load(secs, n_secs, args.config_file, environ, &err) != 0) {
        fprintf(errout, "%s: error: bad setting: %s\n", prog, err.msg);
        return SL_EXIT_USAGE;
    }
    if (args.print_config) {
        sl_cfg_print(secs, n_secs, out);
        return 0;
    }
    return -1;
}

/*
 * uap-core's regexes.yaml: loaded with libyaml's document API into three ordered rule lists,
 * each regex compiled with PCRE2 (JIT), and applied with the replacement rules of the
 * specification (see ua.h for the exact reading).
 */
#include "ua.h"

#include <string.h>
#include <yaml.h>

#include "alloc.h"
#include "enrich_int.h"

#define N_SECTIONS 3
#define N_REPS 5

/* Room for one value after $N substitution, before it is cut to ENRICH_UA_VALUE_MAX. */
#define SUBST_MAX (2 * ENRICH_UA_MAX_BYTES)

enum section {
    SEC_UA,
    SEC_OS,
    SEC_DEVICE,
};

static const char *const section_names[N_SECTIONS] = {
    [SEC_UA] = "user_agent_parsers",
    [SEC_OS] = "os_parsers",
    [SEC_DEVICE] = "device_parsers",
};

/* Replacement keys of each section, in field order. */
static const char *const rep_keys[N_SECTIONS][N_REPS] = {
    [SEC_UA] = {"family_replacement", "v1_replacement", "v2_replacement", "v3_replacement",
                "v4_replacement"},
    [SEC_OS] = {"os_replacement", "os_v1_replacement", "os_v2_replacement",
                "os_v3_replacement", "os_v4_replacement"},
    [SEC_DEVICE] = {"device_replacement", "brand_replacement", "model_replacement", NULL, NULL},
};

struct rule {
    pcre2_code *code;
    char *rep[N_REPS];  /* NULL when the rule has none (or an empty one) */
    uint16_t *trigrams; /* one of these is in every agent it matches (sl_malloc'ed) */
    size_t n_trigrams;  /* 0: no requirement, always tried */
    bool is_caseless;   /* regex_flag: 'i' */
};

struct rules {
    struct rule *items;
    size_t n;
};

struct enrich_ua {
    struct enrich_regex_env env;
    struct rules sec[N_SECTIONS];
    uint32_t max_pairs;  /* ovector pairs of the rule with the most groups */
    struct enrich_ua_info info;
};

/* ---- loading ----------------------------------------------------------------------- */

static const char *scalar_of(const yaml_node_t *n)
{
    return n != NULL && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* An unquoted empty, "~" or "null" value: YAML's null, which rules use for "none". */
static bool is_null(const yaml_node_t *n)
{
    const char *v = scalar_of(n);

    return v == NULL || (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                         (v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0));
}

static unsigned line_of(const yaml_node_t *n)
{
    return (unsigned)n->start_mark.line + 1;
}

static int load_rule(struct enrich_ua *ua, enum section s, size_t index, yaml_document_t *doc,
                     yaml_node_t *item, const char *name,
                     const struct enrich_trigram_common *common, struct rule *r,
                     struct sl_err *err)
{
    const char *regex = NULL;
    const char *flag = NULL;
    uint32_t n_groups = 0;
    int rc;

    if (item->type != YAML_MAPPING_NODE) {
        return sl_err_set(err, SL_EINVAL, "%s line %u: %s[%zu] is not a mapping", name,
                          line_of(item), section_names[s], index);
    }
    for (yaml_node_pair_t *p = item->data.mapping.pairs.start; p < item->data.mapping.pairs.top;
         p++) {
        const char *key = scalar_of(yaml_document_get_node(doc, p->key));
        yaml_node_t *val = yaml_document_get_node(doc, p->value);

        if (key == NULL) {
            continue;
        }
        if (strcmp(key, "regex") == 0) {
            regex = scalar_of(val);
            continue;
        }
        if (strcmp(key, "regex_flag") == 0) {
            flag = is_null(val) ? NULL : scalar_of(val);
            continue;
        }
        /* Other keys (a later uap-core may add some) are not ours to judge. */
        for (size_t k = 0; k < N_REPS; k++) {
            const char *v = scalar_of(val);

            if (rep_keys[s][k] == NULL || strcmp(key, rep_keys[s][k]) != 0) {
                continue;
            }
            /* An empty replacement is falsy in the reference implementation: no
             * replacement at all. */
            if (!is_null(val) && v[0] != '\0') {
                r->rep[k] = sl_strdup(v);
                if (r->rep[k] == NULL) {
                    return sl_err_set(err, SL_ENOMEM, "out of memory loading %s", name);
                }
            }
        }
    }
    if (regex == NULL) {
        return sl_err_set(err, SL_EINVAL, "%s line %u: %s[%zu] has no regex", name,
                          line_of(item), section_names[s], index);
    }
    if (flag != NULL && strcmp(flag, "i") != 0) {
        return sl_err_set(err, SL_EINVAL, "%s line %u: %s[%zu] has regex_flag '%s' (only 'i' "
                          "is known)", name, line_of(item), section_names[s], index, flag);
    }
    r->is_caseless = flag != NULL;
    rc = enrich_regex_compile(&ua->env, regex, r->is_caseless, &r->code, err);
    if (rc != 0) {
        return sl_err_wrap(err, "%s line %u: %s[%zu] /%s/", name, line_of(item),
                           section_names[s], index, regex);
    }
    if (enrich_trigram_pick(regex, r->is_caseless, common, &r->trigrams, &r->n_trigrams) != 0) {
        return sl_err_set(err, SL_ENOMEM, "out of memory loading %s", name);
    }
    pcre2_pattern_info(r->code, PCRE2_INFO_CAPTURECOUNT, &n_groups);
    if (n_groups + 1 > ua->max_pairs) {
        ua->max_pairs = n_groups + 1;
    }
    ua->info.code_bytes += enrich_regex_size(r->code);
    if (r->n_trigrams > 0) {
        ua->info.n_prefiltered++;
    }
    return 0;
}

static int load_section(struct enrich_ua *ua, enum section s, yaml_document_t *doc,
                        yaml_node_t *seq, const char *name,
                        const struct enrich_trigram_common *common, struct sl_err *err)
{
    size_t n;

    if (seq->type != YAML_SEQUENCE_NODE) {
        return sl_err_set(err, SL_EINVAL, "%s line %u: %s is not a list", name, line_of(seq),
                          section_names[s]);
    }
    if (ua->sec[s].items != NULL) {
        return sl_err_set(err, SL_EINVAL, "%s line %u: %s appears twice", name, line_of(seq),
                          section_names[s]);
    }
    n = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    ua->sec[s].items = sl_calloc(n > 0 ? n : 1, sizeof(struct rule));
    if (ua->sec[s].items == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory loading %s", name);
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(doc, seq->data.sequence.items.start[i]);
        int rc;

        /* Counted before loading so destroy frees a half-loaded rule too. */
        ua->sec[s].n = i + 1;
        rc = load_rule(ua, s, i, doc, item, name, common, &ua->sec[s].items[i], err);
        if (rc != 0) {
            return rc;
        }
    }
    ua->info.n_rules[s] = n;
    return 0;
}

static int load_document(struct enrich_ua *ua, yaml_document_t *doc, const char *name,
                         const struct enrich_trigram_common *common, struct sl_err *err)
{
    yaml_node_t *root = yaml_document_get_root_node(doc);

    if (root == NULL || root->type != YAML_MAPPING_NODE) {
        return sl_err_set(err, SL_EINVAL, "%s: not a uap-core regexes file (expected a mapping "
                          "with user_agent_parsers, os_parsers and device_parsers)", name);
    }
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        const char *key = scalar_of(yaml_document_get_node(doc, p->key));

        for (int s = 0; key != NULL && s < N_SECTIONS; s++) {
            if (strcmp(key, section_names[s]) == 0) {
                int rc = load_section(ua, (enum section)s, doc,
                                      yaml_document_get_node(doc, p->value), name, common, err);

                if (rc != 0) {
                    return rc;
                }
            }
        }
    }
    for (int s = 0; s < N_SECTIONS; s++) {
        if (ua->sec[s].items == NULL) {
            return sl_err_set(err, SL_EINVAL, "%s: no %s section (not a uap-core regexes file?)",
                              name, section_names[s]);
        }
    }
    return 0;
}

int enrich_ua_create_from_text(const char *text, size_t len, const char *name,
                               struct enrich_ua **out, struct sl_err *err)
{
    struct enrich_trigram_common *common = NULL;
    struct enrich_ua *ua = NULL;
    yaml_parser_t parser;
    yaml_document_t doc;
    bool has_parser = false, has_doc = false;
    uint64_t hash;
    int rc;

    *out = NULL;
    ua = sl_calloc(1, sizeof(*ua));
    if (ua == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory loading %s", name);
    }
    rc = enrich_regex_env_init(&ua->env, err);
    if (rc != 0) {
        goto done;
    }
    ua->max_pairs = 1;
    if (!yaml_parser_initialize(&parser)) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory loading %s", name);
        goto done;
    }
    has_parser = true;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = sl_err_set(err, parser.error == YAML_MEMORY_ERROR ? SL_ENOMEM : SL_EINVAL,
                        "%s line %zu column %zu: not valid YAML: %s%s%s", name,
                        parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                        parser.problem != NULL ? parser.problem : "unknown problem",
                        parser.context != NULL ? " " : "",
                        parser.context != NULL ? parser.context : "");
        goto done;
    }
    has_doc = true;
    common = sl_malloc(sizeof(*common));
    if (common == NULL) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory loading %s", name);
        goto done;
    }
    enrich_trigram_common_init(common);
    rc = load_document(ua, &doc, name, common, err);
    if (rc != 0) {
        goto done;
    }
    hash = enrich_hash64(text, len);
    snprintf(ua->info.hash_hex, sizeof(ua->info.hash_hex), "%016llx", (unsigned long long)hash);
    *out = ua;
    ua = NULL;

done:
    sl_free(common);
    if (has_doc) {
        yaml_document_delete(&doc);
    }
    if (has_parser) {
        yaml_parser_delete(&parser);
    }
    enrich_ua_destroy(ua);
    return rc;
}

int enrich_ua_create(const char *path, struct enrich_ua **out, struct sl_err *err)
{
    char *text = NULL;
    size_t len = 0;
    int rc;

    *out = NULL;
    rc = enrich_file_read(path, ENRICH_UA_FILE_MAX_BYTES, &text, &len, err);
    if (rc == 0) {
        rc = enrich_ua_create_from_text(text, len, path, out, err);
    }
    sl_free(text);
    return rc;
}

void enrich_ua_destroy(struct enrich_ua *ua)
{
    if (ua == NULL) {
        return;
    }
    for (int s = 0; s < N_SECTIONS; s++) {
        for (size_t i = 0; i < ua->sec[s].n; i++) {
            struct rule *r = &ua->sec[s].items[i];

            pcre2_code_free(r->code);
            sl_free(r->trigrams);
            for (size_t k = 0; k < N_REPS; k++) {
                sl_free(r->rep[k]);
            }
        }
        sl_free(ua->sec[s].items);
    }
    enrich_regex_env_fini(&ua->env);
    sl_free(ua);
}

void enrich_ua_info(const struct enrich_ua *ua, struct enrich_ua_info *info)
{
    *info = ua->info;
}

/* ---- parsing ----------------------------------------------------------------------- */

/* One match: the subject and its groups. */
struct groups {
    const char *subject;
    const PCRE2_SIZE *ov;
    int n_pairs;
};

/* Group k as a (pointer, length); false when the group is unset or empty. */
static bool group(const struct groups *g, int k, const char **p, size_t *len)
{
    if (k >= g->n_pairs || g->ov[2 * k] == PCRE2_UNSET || g->ov[2 * k + 1] <= g->ov[2 * k]) {
        return false;
    }
    *p = g->subject + g->ov[2 * k];
    *len = g->ov[2 * k + 1] - g->ov[2 * k];
    return true;
}

/* Fills $0..$9 of rep into dst (SUBST_MAX bytes); trims spaces when asked. Returns the length. */
static size_t subst(const char *rep, const struct groups *g, bool trim, char *dst)
{
    size_t n = 0;
    size_t start = 0;

    for (const char *c = rep; *c != '\0'; c++) {
        const char *p = NULL;
        size_t len = 1;

        if (c[0] == '$' && c[1] >= '0' && c[1] <= '9') {
            if (!group(g, c[1] - '0', &p, &len)) {
                len = 0;
            }
            c++;
        }
        else {
            p = c;
        }
        if (len > SUBST_MAX - n) {
            len = SUBST_MAX - n;
        }
        if (len > 0) {
            memcpy(dst + n, p, len);
            n += len;
        }
    }
    if (trim) {
        while (start < n && (dst[start] == ' ' || dst[start] == '\t')) {
            start++;
        }
        while (n > start && (dst[n - 1] == ' ' || dst[n - 1] == '\t')) {
            n--;
        }
        memmove(dst, dst + start, n - start);
        n -= start;
    }
    return n;
}

static void put(struct enrich_ua_result *r, enum enrich_ua_field f, const char *v, size_t len)
{
    size_t room = sizeof(r->text) - r->len;
    size_t n = enrich_utf8_cut(v, len, ENRICH_UA_VALUE_MAX);

    /* Each field is set once per parse and the text has room for all of them. */
    if (n + 1 > room) {
        return;
    }
    memcpy(r->text + r->len, v, n);
    r->text[r->len + n] = '\0';
    r->off[f] = r->len;
    r->len = (uint16_t)(r->len + n + 1);
}

static void put_str(struct enrich_ua_result *r, enum enrich_ua_field f, const char *v)
{
    put(r, f, v, strlen(v));
}

/* A value from a replacement (when the rule has one) or else from group k (when k > 0). An
 * empty result is left undefined, or set to dflt when given. */
static void put_value(struct enrich_ua_result *r, enum enrich_ua_field f, const char *rep,
                      bool is_template, bool trim, const struct groups *g, int k,
                      const char *dflt)
{
    char buf[SUBST_MAX];
    const char *p = NULL;
    size_t len = 0;

    if (rep != NULL && is_template) {
        len = subst(rep, g, trim, buf);
        p = buf;
    }
    else if (rep != NULL) {
        p = rep;
        len = strlen(rep);
    }
    else if (k > 0 && !group(g, k, &p, &len)) {
        len = 0;
    }
    if (len > 0) {
        put(r, f, p, len);
    }
    else if (dflt != NULL) {
        put_str(r, f, dflt);
    }
}

static void apply(enum section s, const struct rule *rule, const struct groups *g,
                  struct enrich_ua_result *r)
{
    switch (s) {
    case SEC_UA:
        put_value(r, ENRICH_UA_FAMILY, rule->rep[0], true, false, g, 1, "Other");
        for (int k = 1; k < N_REPS; k++) {
            put_value(r, (enum enrich_ua_field)(ENRICH_UA_FAMILY + k), rule->rep[k], false,
                      false, g, k + 1, NULL);
        }
        break;
    case SEC_OS:
        put_value(r, ENRICH_OS_FAMILY, rule->rep[0], true, true, g, 1, "Other");
        for (int k = 1; k < N_REPS; k++) {
            put_value(r, (enum enrich_ua_field)(ENRICH_OS_FAMILY + k), rule->rep[k], true,
                      true, g, k + 1, NULL);
        }
        break;
    case SEC_DEVICE:
        put_value(r, ENRICH_DEVICE_FAMILY, rule->rep[0], true, true, g, 1, "Other");
        put_value(r, ENRICH_DEVICE_BRAND, rule->rep[1], true, true, g, 0, NULL);
        put_value(r, ENRICH_DEVICE_MODEL, rule->rep[2], true, true, g, 1, NULL);
        break;
    }
}

static const enum enrich_ua_field family_field[N_SECTIONS] = {
    [SEC_UA] = ENRICH_UA_FAMILY,
    [SEC_OS] = ENRICH_OS_FAMILY,
    [SEC_DEVICE] = ENRICH_DEVICE_FAMILY,
};

int enrich_ua_parse(const struct enrich_ua *ua, const char *agent, size_t len, unsigned mask,
                    struct enrich_ua_result *out)
{
    struct enrich_trigram_set set;
    pcre2_match_data *md;
    bool use_prefilter = !(mask & ENRICH_UA_NO_PREFILTER);
    unsigned gave_up = 0;
    size_t n;

    for (int f = 0; f < ENRICH_UA_N_FIELDS; f++) {
        out->off[f] = ENRICH_UA_NONE;
    }
    out->len = 0;
    out->n_gave_up = 0;
    if (agent == NULL) {
        len = 0;
        agent = "";
    }
    n = enrich_utf8_cut(agent, len, ENRICH_UA_MAX_BYTES);
    out->is_truncated = n < len;
    md = pcre2_match_data_create(ua->max_pairs, ua->env.gctx);
    if (md == NULL) {
        for (int s = 0; s < N_SECTIONS; s++) {
            if (mask & (1u << s)) {
                put_str(out, family_field[s], "Other");
            }
        }
        return SL_ENOMEM;
    }
    enrich_trigram_scan(agent, n, &set);
    for (int s = 0; s < N_SECTIONS; s++) {
        bool is_matched = false;

        if (!(mask & (1u << s))) {
            continue;
        }
        for (size_t i = 0; i < ua->sec[s].n && !is_matched; i++) {
            const struct rule *rule = &ua->sec[s].items[i];
            int rc;

            if (use_prefilter && !enrich_trigram_any(&set, rule->trigrams, rule->n_trigrams)) {
                continue;
            }
            rc = enrich_regex_match(&ua->env, rule->code, agent, n, md);
            if (rc < 0) {
                gave_up++;
            }
            else if (rc > 0) {
                struct groups g = {agent, pcre2_get_ovector_pointer(md), rc};

                apply((enum section)s, rule, &g, out);
                is_matched = true;
            }
        }
        if (!is_matched) {
            put_str(out, family_field[s], "Other");
        }
    }
    pcre2_match_data_free(md);
    out->n_gave_up = (uint8_t)(gave_up > UINT8_MAX ? UINT8_MAX : gave_up);
    return 0;
}

const char *enrich_ua_get(const struct enrich_ua_result *r, enum enrich_ua_field f)
{
    return r->off[f] == ENRICH_UA_NONE ? NULL : r->text + r->off[f];
}

size_t enrich_ua_result_size(const struct enrich_ua_result *r)
{
    return offsetof(struct enrich_ua_result, text) + r->len;
}

/*
 * PCRE2 set up the one way every enrichment regex wants it: UTF-8 that tolerates invalid
 * input, our allocator, JIT when available, and match limits so hostile subjects cost
 * bounded time.
 */
#include "enrich_int.h"

#include <stdio.h>

#include "alloc.h"

static void *pcre_malloc(size_t size, void *data)
{
    (void)data;
    return sl_malloc(size);
}

static void pcre_free(void *p, void *data)
{
    (void)data;
    sl_free(p);
}

int enrich_regex_env_init(struct enrich_regex_env *env, struct sl_err *err)
{
    env->gctx = pcre2_general_context_create(pcre_malloc, pcre_free, NULL);
    env->cctx = env->gctx != NULL ? pcre2_compile_context_create(env->gctx) : NULL;
    env->mctx = env->gctx != NULL ? pcre2_match_context_create(env->gctx) : NULL;
    if (env->cctx == NULL || env->mctx == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory creating regex contexts");
    }
    pcre2_set_match_limit(env->mctx, ENRICH_REGEX_MATCH_LIMIT);
    pcre2_set_depth_limit(env->mctx, ENRICH_REGEX_DEPTH_LIMIT);
    return 0;
}

void enrich_regex_env_fini(struct enrich_regex_env *env)
{
    pcre2_match_context_free(env->mctx);
    pcre2_compile_context_free(env->cctx);
    pcre2_general_context_free(env->gctx);
    env->mctx = NULL;
    env->cctx = NULL;
    env->gctx = NULL;
}

int enrich_regex_compile(const struct enrich_regex_env *env, const char *pattern,
                         bool is_caseless, pcre2_code **out, struct sl_err *err)
{
    uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_DOLLAR_ENDONLY;
    PCRE2_UCHAR msg[160];
    PCRE2_SIZE offset = 0;
    int code = 0;
    pcre2_code *re;

    *out = NULL;
    if (is_caseless) {
        opts |= PCRE2_CASELESS;
    }
    re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, opts, &code, &offset,
                       env->cctx);
    if (re == NULL) {
        if (code == PCRE2_ERROR_HEAP_FAILED || code == PCRE2_ERROR_NOMEMORY) {
            return sl_err_set(err, SL_ENOMEM, "out of memory compiling a regex");
        }
        pcre2_get_error_message(code, msg, sizeof(msg));
        return sl_err_set(err, SL_EINVAL, "regex does not compile at offset %zu: %s",
                          (size_t)offset, (const char *)msg);
    }
    /* Without the JIT (an unsupported CPU, or no memory for executable pages) the
     * interpreter runs the same regex, only slower; nothing to report. */
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    *out = re;
    return 0;
}

int enrich_regex_match(const struct enrich_regex_env *env, const pcre2_code *code,
                       const char *subject, size_t len, pcre2_match_data *md)
{
    int rc = pcre2_match(code, (PCRE2_SPTR)subject, len, 0, 0, md, env->mctx);

    if (rc == PCRE2_ERROR_NOMATCH) {
        return 0;
    }
    if (rc == 0) {
        /* More groups than md holds: every pair md has is set. */
        return (int)pcre2_get_ovector_count(md);
    }
    return rc;
}

size_t enrich_regex_size(const pcre2_code *code)
{
    size_t size = 0, jit = 0;

    pcre2_pattern_info(code, PCRE2_INFO_SIZE, &size);
    if (pcre2_pattern_info(code, PCRE2_INFO_JITSIZE, &jit) != 0) {
        jit = 0;
    }
    return size + jit;
}

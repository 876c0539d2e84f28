/* Tests lib/log.c: level specs, per-component levels, JSON line shape and escaping. */
#include <jansson.h>
#include <unistd.h>

#include "log.h"
#include "test.h"

static char *capture_line(void (*emit)(void))
{
    int fds[2];
    char buf[8192];
    ssize_t n;

    ASSERT_EQ_INT(pipe(fds), 0);
    sl_log_set_fd(fds[1]);
    emit();
    sl_log_set_fd(2);
    close(fds[1]);
    n = read(fds[0], buf, sizeof(buf) - 1);
    close(fds[0]);
    buf[n < 0 ? 0 : n] = '\0';
    return strdup(buf);
}

static void emit_with_ctx(void)
{
    struct sl_log_ctx ctx = {.request_id = "req-1", .tenant_id = "tn_1"};

    sl_log_info_ctx("ingest", &ctx, "accepted %d events from \"%s\"\n", 3, "sdk");
}

static void emit_debug(void)
{
    sl_log_debug("ingest", "hidden");
    sl_log_debug("ch", "shown");
}

static void test_log_line_is_json_with_fields(void)
{
    char *line;
    json_t *obj;
    json_error_t jerr;

    ASSERT_OK(sl_log_configure("info", NULL), NULL);
    line = capture_line(emit_with_ctx);
    ASSERT_EQ_INT(line[strlen(line) - 1], '\n');
    obj = json_loads(line, 0, &jerr);
    ASSERT_TRUE(obj != NULL);
    ASSERT_EQ_STR(json_string_value(json_object_get(obj, "level")), "info");
    ASSERT_EQ_STR(json_string_value(json_object_get(obj, "component")), "ingest");
    ASSERT_EQ_STR(json_string_value(json_object_get(obj, "msg")),
                  "accepted 3 events from \"sdk\"\n");
    ASSERT_EQ_STR(json_string_value(json_object_get(obj, "request_id")), "req-1");
    ASSERT_EQ_STR(json_string_value(json_object_get(obj, "tenant_id")), "tn_1");
    ASSERT_TRUE(json_object_get(obj, "job_id") == NULL);
    ASSERT_TRUE(json_string_length(json_object_get(obj, "ts")) == 24);
    json_decref(obj);
    free(line);
}

static void test_log_component_levels(void)
{
    char *out;

    ASSERT_OK(sl_log_configure("warn,ch=debug", NULL), NULL);
    ASSERT_TRUE(!sl_log_is_enabled(SL_LOG_LEVEL_INFO, "ingest"));
    ASSERT_TRUE(sl_log_is_enabled(SL_LOG_LEVEL_ERROR, "ingest"));
    ASSERT_TRUE(sl_log_is_enabled(SL_LOG_LEVEL_DEBUG, "ch"));
    out = capture_line(emit_debug);
    ASSERT_NOT_CONTAINS(out, "hidden");
    ASSERT_CONTAINS(out, "\"msg\":\"shown\"");
    free(out);
    ASSERT_OK(sl_log_configure("off", NULL), NULL);
    ASSERT_TRUE(!sl_log_is_enabled(SL_LOG_LEVEL_ERROR, "ingest"));
    ASSERT_OK(sl_log_configure("info", NULL), NULL);
}

static void test_log_bad_spec_keeps_levels(void)
{
    struct sl_err err;

    ASSERT_OK(sl_log_configure("error", NULL), NULL);
    ASSERT_EQ_INT(sl_log_configure("info,ch=loud", &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "'loud'");
    ASSERT_CONTAINS(err.msg, "'ch'");
    ASSERT_EQ_INT(sl_log_configure("chatty", &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, "'chatty'");
    ASSERT_TRUE(!sl_log_is_enabled(SL_LOG_LEVEL_WARN, "x"));
    ASSERT_TRUE(sl_log_is_enabled(SL_LOG_LEVEL_ERROR, "x"));
    ASSERT_OK(sl_log_configure("info", NULL), NULL);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_log_line_is_json_with_fields),
        TEST_CASE(test_log_component_levels),
        TEST_CASE(test_log_bad_spec_keeps_levels),
        {NULL, NULL},
    };
    return test_main(argc, argv, cases);
}

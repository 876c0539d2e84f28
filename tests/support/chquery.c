/* ClickHouse helpers for tests (see chquery.h). */
#include "chquery.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

#define SQL_MAX 4096

static void format_sql(char sql[SQL_MAX], const char *fmt, va_list ap)
{
    int n = vsnprintf(sql, SQL_MAX, fmt, ap);

    if (n < 0 || n >= SQL_MAX) {
        TEST_FAIL("a test's SQL is longer than %d bytes: %.80s...", SQL_MAX - 1, sql);
    }
}

long long test_ch_int(struct sl_ch *ch, const char *fmt, ...)
{
    struct sl_ch_result res = {0};
    struct sl_err err;
    char sql[SQL_MAX];
    long long v = -1;
    va_list ap;

    va_start(ap, fmt);
    format_sql(sql, fmt, ap);
    va_end(ap);
    if (sl_ch_query(ch, sql, &res, &err) == 0) {
        v = strtoll(res.body, NULL, 10);
    }
    sl_ch_result_fini(&res);
    return v;
}

void test_ch_line(struct sl_ch *ch, char *out, size_t cap, const char *fmt, ...)
{
    struct sl_ch_result res = {0};
    struct sl_err err;
    char sql[SQL_MAX];
    va_list ap;

    va_start(ap, fmt);
    format_sql(sql, fmt, ap);
    va_end(ap);
    ASSERT_OK(sl_ch_query(ch, sql, &res, &err), &err);
    snprintf(out, cap, "%.*s", (int)strcspn(res.body, "\n"), res.body);
    sl_ch_result_fini(&res);
}

void test_ch_exec(struct sl_ch *ch, const char *fmt, ...)
{
    struct sl_err err;
    char sql[SQL_MAX];
    va_list ap;

    va_start(ap, fmt);
    format_sql(sql, fmt, ap);
    va_end(ap);
    ASSERT_OK(sl_ch_exec(ch, sql, &err), &err);
}

char *test_ch_query_db(struct sl_ch *ch, const char *db, const char *sql)
{
    struct sl_ch_buf text;
    struct sl_ch_result res = {0};
    struct sl_err err;
    const char *p = sql;
    const char *mark;

    sl_ch_buf_init(&text, 1 << 20);
    while ((mark = strstr(p, "{db}")) != NULL) {
        ASSERT_OK(sl_ch_buf_append(&text, p, (size_t)(mark - p)), NULL);
        ASSERT_OK(sl_ch_buf_append_str(&text, db), NULL);
        p = mark + 4;
    }
    ASSERT_OK(sl_ch_buf_append_str(&text, p), NULL);
    if (sl_ch_query(ch, text.data, &res, &err) != 0) {
        TEST_FAIL("%s: %s", text.data, err.msg);
    }
    sl_ch_buf_fini(&text);
    return res.body;
}

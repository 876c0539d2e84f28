/*
 * ClickHouse helpers for tests that check data where it lands: one number, one line, or a
 * statement, through the shared library's client. SQL is printf-formatted into a fixed
 * buffer (a longer statement fails the test).
 */
#ifndef SLUICE_TESTS_SUPPORT_CHQUERY_H
#define SLUICE_TESTS_SUPPORT_CHQUERY_H

#include <stddef.h>

#include "ch.h"

/* The single number a query answers, or -1 when the query fails (e.g. no table yet). */
long long test_ch_int(struct sl_ch *ch, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The first line of a TabSeparated answer into out; a failed query fails the test. */
void test_ch_line(struct sl_ch *ch, char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Runs sql with every "{db}" replaced by db and returns the answer's body (free with
 * sl_free); a failed query fails the test. For statements longer than the fixed buffer.
 */
char *test_ch_query_db(struct sl_ch *ch, const char *db, const char *sql);

/* Runs a statement; a failure fails the test. */
void test_ch_exec(struct sl_ch *ch, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif

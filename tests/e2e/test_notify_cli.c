/*
 * The built `sluice` wiring notifications end to end against a local HTTP receiver
 * (tests/fixtures/http_receiver.py): channel add, `channel test` delivered (signature
 * checked) and not delivered (retryable 500, permanent 404, exit 1), the delivery log in
 * `alerts deliveries --attempts`, `alerts list|history`, and rule kinds that must be global.
 */
#include <jansson.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "notify_int.h"
#include "test.h"

#define PYTHON "/usr/bin/python3"

struct env {
    char *dir;
    char *bin;
    char *http_dir;
    int port;
    struct test_daemon http;
    char *vars[3];
};

static void env_open(struct env *e)
{
    const char *src = getenv("SLUICE_SOURCE_DIR");
    char script[1024], port[16];
    const char *args[6];
    char *ready;
    long deadline;
    struct stat sb;
    char *db;

    ASSERT_TRUE(src != NULL);
    memset(e, 0, sizeof(*e));
    e->dir = test_tmpdir();
    e->bin = test_bin("sluice");
    e->http_dir = test_path(e->dir, "http");
    ASSERT_EQ_INT(mkdir(e->http_dir, 0700), 0);
    e->port = test_free_port();
    snprintf(script, sizeof(script), "%s/tests/fixtures/http_receiver.py", src);
    snprintf(port, sizeof(port), "%d", e->port);
    args[0] = script;
    args[1] = "--port";
    args[2] = port;
    args[3] = "--dir";
    args[4] = e->http_dir;
    args[5] = NULL;
    test_daemon_start(&e->http, PYTHON, args, e->dir, NULL);
    ready = test_path(e->http_dir, "ready");
    deadline = test_now_ms() + 15000;
    while (stat(ready, &sb) != 0) {
        ASSERT_TRUE(test_now_ms() < deadline);
        usleep(20000);
    }
    free(ready);
    db = test_path(e->dir, "sluice.db");
    if (asprintf(&e->vars[0], "SLUICE_DB=%s", db) < 0) {
        TEST_FAIL("asprintf");
    }
    e->vars[1] = strdup("SLUICE_JOB_NOTIFY_RETRY_BASE_S=1");
    e->vars[2] = NULL;
    free(db);
}

static void env_close(struct env *e)
{
    test_daemon_fini(&e->http);
    test_rmtree(e->dir);
    free(e->vars[0]);
    free(e->vars[1]);
    free(e->http_dir);
    free(e->bin);
    free(e->dir);
}

/* Runs `sluice ARGS...` (NULL-terminated). */
static void run(struct env *e, struct test_proc *p, ...)
{
    char *argv[24];
    size_t n = 0;
    va_list ap;

    argv[n++] = e->bin;
    va_start(ap, p);
    for (char *a = va_arg(ap, char *); a != NULL && n < 23; a = va_arg(ap, char *)) {
        argv[n++] = a;
    }
    va_end(ap);
    argv[n] = NULL;
    test_proc_run(p, argv, e->vars, NULL);
}

static json_t *parse(const char *text)
{
    json_t *v = json_loads(text, 0, NULL);

    if (v == NULL) {
        TEST_FAIL("not JSON: %s", text);
    }
    return v;
}

static json_t *request(struct env *e, int n)
{
    char name[32];
    char *path;
    json_t *v;

    snprintf(name, sizeof(name), "%d.json", n);
    path = test_path(e->http_dir, name);
    v = json_load_file(path, 0, NULL);
    free(path);
    return v;
}

static void test_notify_cli_channel_test_and_deliveries(void)
{
    struct env e;
    struct test_proc p;
    char url[256], sig[NOTIFY_SIGNATURE_MAX];
    char id_ok[64], id_500[64], id_404[64], secret[128];
    const char *raw;
    json_t *v, *req, *headers;

    env_open(&e);
    run(&e, &p, "tenant", "create", "acme", "--tier", "paid", NULL);
    ASSERT_EQ_INT(p.status, 0);
    test_proc_fini(&p);

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hooks/ok", e.port);
    run(&e, &p, "--json", "channel", "add", "--kind", "webhook", "--name", "ops", "--tenant",
        "acme", "--url", url, NULL);
    ASSERT_EQ_INT(p.status, 0);
    v = parse(p.out);
    snprintf(id_ok, sizeof(id_ok), "%s", json_string_value(json_object_get(v, "id")));
    snprintf(secret, sizeof(secret), "%s", json_string_value(json_object_get(v, "secret")));
    json_decref(v);
    test_proc_fini(&p);

    run(&e, &p, "channel", "test", id_ok, NULL);
    ASSERT_EQ_INT(p.status, 0);
    ASSERT_CONTAINS(p.out, "test notification delivered to");
    ASSERT_CONTAINS(p.out, "HTTP 200");
    test_proc_fini(&p);
    req = request(&e, 1);
    ASSERT_TRUE(req != NULL);
    ASSERT_EQ_STR(json_string_value(json_object_get(req, "path")), "/hooks/ok");
    raw = json_string_value(json_object_get(req, "body"));
    headers = json_object_get(req, "headers");
    ASSERT_OK(notify_webhook_sign(secret,
                                  strtoll(json_string_value(json_object_get(
                                              headers, "X-Sluice-Timestamp")), NULL, 10),
                                  raw, strlen(raw), sig),
              NULL);
    ASSERT_EQ_STR(json_string_value(json_object_get(headers, "X-Sluice-Signature")), sig);
    v = parse(raw);
    ASSERT_EQ_STR(json_string_value(json_object_get(v, "event")), "test");
    json_decref(v);
    json_decref(req);

    /* A receiver answering 500: retried (--retries 1 waits out the 1 s backoff), still
     * failing, exit 1. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/status/500/x", e.port);
    run(&e, &p, "channel", "add", "--kind", "slack", "--name", "s", "--tenant", "acme", "--url",
        url, NULL);
    ASSERT_EQ_INT(p.status, 0);
    snprintf(id_500, sizeof(id_500), "%.*s", (int)strcspn(p.out, "\n"), p.out);
    test_proc_fini(&p);
    run(&e, &p, "--json", "channel", "test", id_500, "--retries", "1", NULL);
    ASSERT_EQ_INT(p.status, 1);
    v = parse(p.out);
    ASSERT_EQ_STR(json_string_value(json_object_get(v, "status")), "retry");
    ASSERT_EQ_INT(json_integer_value(json_object_get(v, "attempts")), 2);
    ASSERT_EQ_INT(json_integer_value(json_object_get(v, "http_status")), 500);
    json_decref(v);
    test_proc_fini(&p);

    /* 404 is permanent: failed at once. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/status/404/x", e.port);
    run(&e, &p, "channel", "add", "--kind", "discord", "--name", "d", "--tenant", "acme",
        "--url", url, NULL);
    snprintf(id_404, sizeof(id_404), "%.*s", (int)strcspn(p.out, "\n"), p.out);
    test_proc_fini(&p);
    run(&e, &p, "channel", "test", id_404, "--retries", "3", NULL);
    ASSERT_EQ_INT(p.status, 1);
    ASSERT_CONTAINS(p.out, "not delivered");
    ASSERT_CONTAINS(p.out, "HTTP 404");
    ASSERT_NOT_CONTAINS(p.out, "keeps retrying");
    test_proc_fini(&p);

    /* The delivery log: three deliveries, the 500 one with two attempts. */
    run(&e, &p, "--json", "alerts", "deliveries", "--attempts", NULL);
    ASSERT_EQ_INT(p.status, 0);
    v = parse(p.out);
    ASSERT_EQ_INT(json_array_size(v), 3);
    ASSERT_EQ_STR(json_string_value(json_object_get(json_array_get(v, 0), "status")), "failed");
    ASSERT_EQ_STR(json_string_value(json_object_get(json_array_get(v, 1), "status")),
                  "pending");
    ASSERT_EQ_INT(json_array_size(json_object_get(json_array_get(v, 1), "attempt_log")), 2);
    ASSERT_EQ_STR(json_string_value(json_object_get(json_array_get(v, 2), "status")), "sent");
    json_decref(v);
    test_proc_fini(&p);
    run(&e, &p, "alerts", "deliveries", "--channel", id_ok, "--attempts", NULL);
    ASSERT_EQ_INT(p.status, 0);
    ASSERT_CONTAINS(p.out, "attempt 1 at");
    ASSERT_CONTAINS(p.out, ": sent in");
    test_proc_fini(&p);

    run(&e, &p, "alerts", "list", NULL);
    ASSERT_EQ_INT(p.status, 0);
    ASSERT_CONTAINS(p.out, "(no open or recent alerts)");
    test_proc_fini(&p);
    run(&e, &p, "--json", "alerts", "history", "--tenant", "acme", NULL);
    ASSERT_EQ_INT(p.status, 0);
    ASSERT_EQ_STR(p.out, "[]\n");
    test_proc_fini(&p);
    run(&e, &p, "channel", "test", "ch_missing", NULL);
    ASSERT_EQ_INT(p.status, 1);
    ASSERT_CONTAINS(p.err, "not found");
    test_proc_fini(&p);

    /* System rule kinds are global; a tenant's rule of such a kind is bad usage. */
    run(&e, &p, "rule", "add", "--kind", "loader_lag", "--name", "lag", "--tenant", "acme",
        "--channel", id_ok, NULL);
    ASSERT_EQ_INT(p.status, 2);
    ASSERT_CONTAINS(p.err, "--global");
    test_proc_fini(&p);
    env_close(&e);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_notify_cli_channel_test_and_deliveries),
        {NULL, NULL},
    };
    return test_main(argc, argv, cases);
}

/*
 * workers/notify/ against real servers: ClickHouse 18.16 (events, rollups and
 * internal_metrics generated per case), a local HTTP receiver (tests/fixtures/
 * http_receiver.py) and a real SMTP server (tests/fixtures/smtp_sink.py, aiosmtpd). Each
 * case builds the notify job from its descriptor, runs it with the time as an argument,
 * and checks what landed: the receiver's requests (signature, payload shapes), the mail
 * (headers, recipients, both parts), and the alert, delivery and attempt rows in SQLite.
 * A "restart" is a new job context on a reopened store.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "cfg.h"
#include "ch.h"
#include "daemon.h"
#include "metrics.h"
#include "notify.h"
#include "notify_int.h"
#include "schema.h"
#include "store.h"
#include "store_notify.h"
#include "test.h"

#define PYTHON "/usr/bin/python3"
#define READY_TIMEOUT_MS 15000

struct fixture {
    char *dir;
    char *db_path;
    char db[96];
    struct sl_ch_settings ch_settings;
    struct sl_cfg_section ch_sec;
    struct notify_settings ns;
    struct sl_cfg_section ns_sec;
    struct sl_ch *ch;
    struct sl_store *st;
    struct sl_metrics *metrics;
    void *job;
    struct test_daemon http;
    struct test_daemon smtp;
    bool has_http;
    bool has_smtp;
    char *http_dir;
    char *smtp_dir;
    int http_port;
    int smtp_port;
    int64_t now;
    int n_ids;
};

static void wait_ready(const char *dir)
{
    char *ready = test_path(dir, "ready");
    long deadline = test_now_ms() + READY_TIMEOUT_MS;
    struct stat sb;

    while (stat(ready, &sb) != 0) {
        if (test_now_ms() > deadline) {
            TEST_FAIL("fixture in %s did not become ready", dir);
        }
        usleep(20000);
    }
    free(ready);
}

static void start_fixture(struct test_daemon *d, const char *script, char **dir_out,
                          int *port_out, const char *parent, const char *name,
                          const char *extra)
{
    const char *src = getenv("SLUICE_SOURCE_DIR");
    char path[1024], port[16];
    const char *args[8];
    size_t n = 0;

    ASSERT_TRUE(src != NULL);
    snprintf(path, sizeof(path), "%s/tests/fixtures/%s", src, script);
    *dir_out = test_path(parent, name);
    ASSERT_EQ_INT(mkdir(*dir_out, 0700), 0);
    *port_out = test_free_port();
    snprintf(port, sizeof(port), "%d", *port_out);
    args[n++] = path;
    args[n++] = "--port";
    args[n++] = port;
    args[n++] = "--dir";
    args[n++] = *dir_out;
    if (extra != NULL) {
        args[n++] = "--auth";
        args[n++] = extra;
    }
    args[n] = NULL;
    test_daemon_start(d, PYTHON, args, parent, NULL);
    wait_ready(*dir_out);
}

/* Loads the notify settings from defaults plus env (NULL-terminated "K=V"). */
static void load_notify(struct fixture *f, char **env)
{
    struct sl_err err;

    sl_cfg_fini(&f->ns_sec, 1);
    memset(&f->ns, 0, sizeof(f->ns));
    f->ns_sec = SL_CFG_SECTION("notify", notify_cfg_opts, notify_cfg_n_opts, &f->ns);
    ASSERT_OK(sl_cfg_load(&f->ns_sec, 1, NULL, env, &err), &err);
}

static void job_create(struct fixture *f)
{
    const struct sched_worker_env env = {.ch = &f->ch_settings, .metrics = f->metrics};
    struct sl_err err;

    ASSERT_OK(notify_worker.create(&f->ns, &env, &f->job, &err), &err);
}

static void fixture_open(struct fixture *f, const char *name, bool http, bool smtp)
{
    const char *url = test_env_require("SLUICE_TEST_CLICKHOUSE_URL");
    char url_env[1100];
    char *ch_env[2] = {url_env, NULL};
    char smtp_host[] = "SLUICE_SMTP_HOST=127.0.0.1";
    char smtp_port[64], tls[] = "SLUICE_SMTP_STARTTLS=none", base[] =
        "SLUICE_JOB_NOTIFY_RETRY_BASE_S=1";
    char timeout[] = "SLUICE_JOB_NOTIFY_ATTEMPT_TIMEOUT_MS=1000";
    char from[] = "SLUICE_SMTP_FROM=alerts@sluice.test";
    char *ns_env[8] = {smtp_host, smtp_port, tls, base, timeout, from, NULL};
    struct sl_err err;
    char sql[256];

    memset(f, 0, sizeof(*f));
    ASSERT_OK(sl_metrics_create(&f->metrics), NULL);
    f->dir = test_tmpdir();
    f->db_path = test_path(f->dir, "sluice.db");
    f->now = (int64_t)time(NULL);
    snprintf(f->db, sizeof(f->db), "sluice_test_notify_%s_%d", name, (int)getpid());
    snprintf(url_env, sizeof(url_env), "SLUICE_CLICKHOUSE_URL=%s", url);
    f->ch_sec = SL_CFG_SECTION("clickhouse", sl_ch_cfg_opts, sl_ch_cfg_n_opts, &f->ch_settings);
    ASSERT_OK(sl_cfg_load(&f->ch_sec, 1, NULL, ch_env, &err), &err);
    /* The test's own client names no database: ClickHouse refuses every request that names
     * a missing one (Code 81), and a fresh server has no `sluice`. */
    sl_free(f->ch_settings.database);
    f->ch_settings.database = NULL;
    ASSERT_OK(sl_ch_create(&f->ch, &f->ch_settings, &err), &err);
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", f->db);
    ASSERT_OK(sl_ch_exec(f->ch, sql, &err), &err);
    ASSERT_OK(ingest_schema_apply(f->ch, f->db, &err), &err);
    /* The job names the database in every query; its client may name it too. */
    sl_free(f->ch_settings.database);
    f->ch_settings.database = sl_strdup(f->db);
    ASSERT_OK(sl_store_open(&f->st, f->db_path, 5000, &err), &err);
    if (http) {
        start_fixture(&f->http, "http_receiver.py", &f->http_dir, &f->http_port, f->dir, "http",
                      NULL);
        f->has_http = true;
    }
    if (smtp) {
        start_fixture(&f->smtp, "smtp_sink.py", &f->smtp_dir, &f->smtp_port, f->dir, "smtp",
                      NULL);
        f->has_smtp = true;
    }
    snprintf(smtp_port, sizeof(smtp_port), "SLUICE_SMTP_PORT=%d",
             f->smtp_port > 0 ? f->smtp_port : 25);
    f->ns_sec = SL_CFG_SECTION("notify", notify_cfg_opts, notify_cfg_n_opts, &f->ns);
    load_notify(f, ns_env);
    job_create(f);
}

static void fixture_close(struct fixture *f)
{
    struct sl_err err;
    char sql[256];

    notify_worker.destroy(f->job);
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", f->db);
    ASSERT_OK(sl_ch_exec(f->ch, sql, &err), &err);
    sl_ch_destroy(f->ch);
    sl_store_close(f->st);
    sl_metrics_destroy(f->metrics);
    if (f->has_http) {
        test_daemon_fini(&f->http);
    }
    if (f->has_smtp) {
        test_daemon_fini(&f->smtp);
    }
    sl_cfg_fini(&f->ns_sec, 1);
    sl_cfg_fini(&f->ch_sec, 1);
    test_rmtree(f->dir);
    free(f->http_dir);
    free(f->smtp_dir);
    free(f->db_path);
    free(f->dir);
}

/* Runs the job once at now_s; returns its outcome. */
static enum sched_outcome run_at(struct fixture *f, int64_t now_s)
{
    struct sched_run run = {.job = "notify", .kind = "manual", .slot_s = now_s,
                            .now_s = now_s, .store = f->st, .checkpoint = ""};
    enum sched_outcome out = notify_worker.run(f->job, &run);

    if (out != SCHED_DONE) {
        fprintf(stderr, "notify run at %lld: outcome %d: %s\n", (long long)now_s, (int)out,
                run.err.msg);
    }
    return out;
}

/* A restart: the job and the store are closed and opened again on the same file. */
static void restart(struct fixture *f)
{
    struct sl_err err;

    notify_worker.destroy(f->job);
    f->job = NULL;
    sl_store_close(f->st);
    ASSERT_OK(sl_store_open(&f->st, f->db_path, 5000, &err), &err);
    job_create(f);
}

/* Inserts n events of tenant at ts; the first n_errors are error logs. */
static void add_events(struct fixture *f, const char *tenant, int n, int n_errors, int64_t ts)
{
    struct sl_ch_buf b;
    struct sl_err err;

    sl_ch_buf_init(&b, 1 << 20);
    ASSERT_OK(sl_ch_buf_appendf(&b, "INSERT INTO %s.events (id, tenant_id, type, ts, severity) "
                                    "VALUES ", f->db), NULL);
    for (int i = 0; i < n; i++) {
        ASSERT_OK(sl_ch_buf_appendf(&b, "%s('00000000-0000-4000-8000-%012x', '%s', '%s', "
                                        "toDateTime(%lld), '%s')",
                                    i > 0 ? ", " : "", ++f->n_ids, tenant,
                                    i < n_errors ? "log" : "pageview", (long long)ts,
                                    i < n_errors ? "error" : ""), NULL);
    }
    ASSERT_OK(sl_ch_exec(f->ch, b.data, &err), &err);
    sl_ch_buf_fini(&b);
}

static void add_metric(struct fixture *f, const char *name, const char *label_key,
                       const char *label_value, int64_t ts, double value)
{
    struct sl_err err;
    char sql[512];

    snprintf(sql, sizeof(sql), "INSERT INTO %s.internal_metrics (ts, host, process, name, "
             "label_keys, label_values, value) VALUES (toDateTime(%lld), 'h1', 'sluice-ingest', "
             "'%s', ['%s'], ['%s'], %g)", f->db, (long long)ts, name, label_key, label_value,
             value);
    ASSERT_OK(sl_ch_exec(f->ch, sql, &err), &err);
}

static void make_tenant(struct fixture *f, const char *name, const char *tier,
                        struct sl_tenant *t)
{
    struct sl_err err;

    ASSERT_OK(sl_store_tenant_create(f->st, name, tier, f->now, t, &err), &err);
}

static void make_channel(struct fixture *f, const char *tenant, const char *kind,
                         const char *target, const char *secret, struct sl_channel *c)
{
    struct sl_err err;

    ASSERT_OK(sl_store_channel_add(f->st, tenant, kind, kind, target, secret, f->now, c, &err),
              &err);
}

static void make_rule(struct fixture *f, const char *tenant, const char *kind, double threshold,
                      int64_t window_s, const char *channel_id, struct sl_rule *out)
{
    struct sl_rule r = {.threshold = threshold, .window_s = window_s, .cooldown_s = 600,
                        .is_enabled = true};
    struct sl_err err;

    snprintf(r.name, sizeof(r.name), "%s rule", kind);
    snprintf(r.kind, sizeof(r.kind), "%s", kind);
    snprintf(r.tenant_id, sizeof(r.tenant_id), "%s", tenant != NULL ? tenant : "");
    snprintf(r.channel_id, sizeof(r.channel_id), "%s", channel_id);
    ASSERT_OK(sl_store_rule_add(f->st, &r, f->now, out, &err), &err);
}

static char *url_of(struct fixture *f, const char *path)
{
    char buf[256];

    snprintf(buf, sizeof(buf), "http://127.0.0.1:%d%s", f->http_port, path);
    return strdup(buf);
}

/* The receiver's requests to path (NULL: all), oldest first, as a JSON array (decref). */
static json_t *requests(struct fixture *f, const char *path)
{
    json_t *all = json_array();

    for (int i = 1;; i++) {
        char name[32];
        char *file;
        json_t *v;

        snprintf(name, sizeof(name), "%d.json", i);
        file = test_path(f->http_dir, name);
        v = json_load_file(file, 0, NULL);
        free(file);
        if (v == NULL) {
            break;
        }
        if (path == NULL || strcmp(json_string_value(json_object_get(v, "path")), path) == 0) {
            json_array_append(all, v);
        }
        json_decref(v);
    }
    return all;
}

static json_t *body_of(json_t *req)
{
    json_t *v = json_loads(json_string_value(json_object_get(req, "body")), 0, NULL);

    ASSERT_TRUE(v != NULL);
    return v;
}

static size_t n_alerts(struct fixture *f, const char *rule_id, bool open_only)
{
    struct sl_alert_filter flt = {.is_open_only = open_only, .rule_id = rule_id};
    struct sl_alert *items = NULL;
    struct sl_err err;
    size_t n = 0;

    ASSERT_OK(sl_store_alert_list(f->st, &flt, &items, &n, &err), &err);
    sl_free(items);
    return n;
}

/* The value of the series of counter family name whose one label is value. */
static int64_t counter(struct fixture *f, const char *name, const char *label, const char *value)
{
    char *text = NULL;
    json_t *all, *series;
    int64_t out = -1;
    size_t i;
    json_t *s;

    ASSERT_OK(sl_metrics_render_json(f->metrics, &text), NULL);
    all = json_loads(text, 0, NULL);
    sl_free(text);
    ASSERT_TRUE(all != NULL);
    series = json_object_get(json_object_get(all, name), "series");
    json_array_foreach(series, i, s) {
        const char *v = json_string_value(json_object_get(json_object_get(s, "labels"), label));

        if (v != NULL && strcmp(v, value) == 0) {
            out = (int64_t)json_number_value(json_object_get(s, "value"));
        }
    }
    json_decref(all);
    return out;
}

/* ---- cases ---- */

static void test_notify_error_rate_webhook_slack_discord_and_restart(void)
{
    struct fixture f;
    struct sl_tenant a, b;
    struct sl_channel hook, slack, discord;
    struct sl_rule r_hook, r_slack, r_discord;
    json_t *reqs, *body, *blocks, *embeds;
    char sig[NOTIFY_SIGNATURE_MAX];
    char *u_hook, *u_slack, *u_discord;
    const char *raw;
    int64_t ts;

    fixture_open(&f, "rate", true, false);
    u_hook = url_of(&f, "/hook");
    u_slack = url_of(&f, "/slack");
    u_discord = url_of(&f, "/discord");
    make_tenant(&f, "acme", "paid", &a);
    make_tenant(&f, "calm", "paid", &b);
    make_channel(&f, "acme", "webhook", u_hook, "whsec_it", &hook);
    make_channel(&f, NULL, "slack", u_slack, NULL, &slack);
    make_channel(&f, "acme", "discord", u_discord, NULL, &discord);
    make_rule(&f, "acme", "error_rate", 0.2, 300, hook.id, &r_hook);
    /* A global rule watches every tenant. */
    make_rule(&f, NULL, "error_rate", 0.2, 300, slack.id, &r_slack);
    make_rule(&f, "acme", "error_rate", 0.2, 300, discord.id, &r_discord);
    add_events(&f, a.id, 20, 10, f.now - 60);
    add_events(&f, b.id, 20, 1, f.now - 60);

    ASSERT_EQ_INT(run_at(&f, f.now), SCHED_DONE);
    reqs = requests(&f, "/hook");
    ASSERT_EQ_INT(json_array_size(reqs), 1);
    body = body_of(json_array_get(reqs, 0));
    ASSERT_EQ_STR(json_string_value(json_object_get(body, "event")), "firing");
    ASSERT_EQ_STR(json_string_value(json_object_get(body, "subject")), a.id);
    ASSERT_EQ_STR(json_string_value(json_object_get(body, "tenant_id")), a.id);
    ASSERT_TRUE(json_real_value(json_object_get(body, "value")) == 0.5);
    ASSERT_CONTAINS(json_string_value(json_object_get(body, "text")), "10 of 20 events");
    /* The signature covers "<timestamp>.<raw body>" with the channel's secret. */
    raw = json_string_value(json_object_get(json_array_get(reqs, 0), "body"));
    ts = strtoll(json_string_value(json_object_get(
                     json_object_get(json_array_get(reqs, 0), "headers"), "X-Sluice-Timestamp")),
                 NULL, 10);
    ASSERT_EQ_INT(ts, f.now);
    ASSERT_OK(notify_webhook_sign("whsec_it", ts, raw, strlen(raw), sig), NULL);
    ASSERT_EQ_STR(json_string_value(json_object_get(
                      json_object_get(json_array_get(reqs, 0), "headers"), "X-Sluice-Signature")),
                  sig);
    json_decref(body);
    json_decref(reqs);

    /* Slack: the global rule fired for acme only. */
    reqs = requests(&f, "/slack");
    ASSERT_EQ_INT(json_array_size(reqs), 1);
    body = body_of(json_array_get(reqs, 0));
    ASSERT_CONTAINS(json_string_value(json_object_get(body, "text")), a.id);
    blocks = json_object_get(body, "blocks");
    ASSERT_EQ_INT(json_array_size(blocks), 3);
    ASSERT_EQ_STR(json_string_value(json_object_get(json_array_get(blocks, 0), "type")),
                  "header");
    json_decref(body);
    json_decref(reqs);
    reqs = requests(&f, "/discord");
    ASSERT_EQ_INT(json_array_size(reqs), 1);
    body = body_of(json_array_get(reqs, 0));
    ASSERT_CONTAINS(json_string_value(json_object_get(body, "content")), "[FIRING]");
    embeds = json_object_get(body, "embeds");
    ASSERT_EQ_INT(json_array_size(embeds), 1);
    ASSERT_EQ_INT(json_integer_value(json_object_get(json_array_get(embeds, 0), "color")),
                  0xE01E5A);
    json_decref(body);
    json_decref(reqs);

    /* Held: no repeat, not after a restart either. */
    ASSERT_EQ_INT(run_at(&f, f.now + 30), SCHED_DONE);
    restart(&f);
    ASSERT_EQ_INT(run_at(&f, f.now + 60), SCHED_DONE);
    reqs = requests(&f, NULL);
    ASSERT_EQ_INT(json_array_size(reqs), 3);
    json_decref(reqs);
    ASSERT_EQ_INT(n_alerts(&f, r_hook.id, true), 1);
    ASSERT_EQ_INT(n_alerts(&f, r_slack.id, true), 1);

    /* The window moves past the errors: resolved, announced once, after another restart. */
    restart(&f);
    ASSERT_EQ_INT(run_at(&f, f.now + 400), SCHED_DONE);
    ASSERT_EQ_INT(run_at(&f, f.now + 430), SCHED_DONE);
    reqs = requests(&f, "/hook");
    ASSERT_EQ_INT(json_array_size(reqs), 2);
    body = body_of(json_array_get(reqs, 1));
    ASSERT_EQ_STR(json_string_value(json_object_get(body, "event")), "resolved");
    ASSERT_TRUE(!json_is_null(json_object_get(body, "resolved_at")));
    json_decref(body);
    json_decref(reqs);
    reqs = requests(&f, NULL);
    ASSERT_EQ_INT(json_array_size(reqs), 6);
    json_decref(reqs);
    ASSERT_EQ_INT(n_alerts(&f, r_hook.id, true), 0);
    ASSERT_EQ_INT(n_alerts(&f, r_hook.id, false), 1);
    free(u_hook);
    free(u_slack);
    free(u_discord);
    fixture_close(&f);
}

/* Reads the sink's message n: its text into *eml (free) and envelope (decref). */
static json_t *mail(struct fixture *f, int n, char **eml)
{
    char name[32];
    char *path;
    json_t *env;
    FILE *fp;
    long len;

    snprintf(name, sizeof(name), "%d.json", n);
    path = test_path(f->smtp_dir, name);
    env = json_load_file(path, 0, NULL);
    free(path);
    if (env == NULL) {
        *eml = NULL;
        return NULL;
    }
    snprintf(name, sizeof(name), "%d.eml", n);
    path = test_path(f->smtp_dir, name);
    fp = fopen(path, "rb");
    ASSERT_TRUE(fp != NULL);
    fseek(fp, 0, SEEK_END);
    len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    *eml = calloc(1, (size_t)len + 1);
    ASSERT_EQ_INT(fread(*eml, 1, (size_t)len, fp), len);
    fclose(fp);
    free(path);
    return env;
}

static void test_notify_quota_email(void)
{
    struct fixture f;
    struct sl_tier tier = {.retention_days = 30, .rate_limit_eps = 10, .burst = 10,
                           .monthly_quota = 100};
    struct sl_tenant t;
    struct sl_channel c;
    struct sl_rule r;
    struct sl_err err;
    char subject[128];
    char *eml = NULL;
    json_t *env;

    fixture_open(&f, "quota", false, true);
    snprintf(tier.name, sizeof(tier.name), "tiny");
    ASSERT_OK(sl_store_tier_put(f.st, &tier, f.now, &err), &err);
    make_tenant(&f, "small", "tiny", &t);
    make_channel(&f, "small", "email", "ops@small.test,cto@small.test", NULL, &c);
    make_rule(&f, "small", "quota", 80, 300, c.id, &r);
    add_events(&f, t.id, 79, 0, f.now - 30);
    ASSERT_EQ_INT(run_at(&f, f.now), SCHED_DONE);
    ASSERT_TRUE(mail(&f, 1, &eml) == NULL);
    ASSERT_EQ_INT(n_alerts(&f, r.id, true), 0);

    add_events(&f, t.id, 6, 0, f.now - 20);
    ASSERT_EQ_INT(run_at(&f, f.now + 30), SCHED_DONE);
    env = mail(&f, 1, &eml);
    ASSERT_TRUE(env != NULL);
    ASSERT_EQ_STR(json_string_value(json_object_get(env, "mail_from")), "alerts@sluice.test");
    ASSERT_EQ_INT(json_array_size(json_object_get(env, "rcpt_tos")), 2);
    ASSERT_EQ_STR(json_string_value(json_array_get(json_object_get(env, "rcpt_tos"), 0)),
                  "ops@small.test");
    ASSERT_EQ_STR(json_string_value(json_array_get(json_object_get(env, "rcpt_tos"), 1)),
                  "cto@small.test");
    ASSERT_CONTAINS(eml, "From: alerts@sluice.test\r\n");
    ASSERT_CONTAINS(eml, "To: ops@small.test,cto@small.test\r\n");
    snprintf(subject, sizeof(subject), "Subject: [FIRING] quota rule (quota) for %s: 85", t.id);
    ASSERT_CONTAINS(eml, subject);
    ASSERT_CONTAINS(eml, "Message-ID: <sluice.");
    ASSERT_CONTAINS(eml, "Date: ");
    ASSERT_CONTAINS(eml, "multipart/alternative");
    ASSERT_CONTAINS(eml, "Content-Type: text/plain; charset=utf-8");
    ASSERT_CONTAINS(eml, "Content-Type: text/html; charset=utf-8");
    ASSERT_CONTAINS(eml, "used 85 of its 100 monthly events");
    ASSERT_CONTAINS(eml, "<h2>[FIRING] quota rule");
    json_decref(env);
    free(eml);

    /* Past 100%: the same rule's second level fires; the first stays open, unrepeated. */
    add_events(&f, t.id, 20, 0, f.now - 10);
    ASSERT_EQ_INT(run_at(&f, f.now + 60), SCHED_DONE);
    env = mail(&f, 2, &eml);
    ASSERT_TRUE(env != NULL);
    snprintf(subject, sizeof(subject), "for %s@100%%: 105", t.id);
    ASSERT_CONTAINS(eml, subject);
    ASSERT_CONTAINS(eml, "the quota is exhausted");
    json_decref(env);
    free(eml);
    ASSERT_TRUE(mail(&f, 3, &eml) == NULL);
    ASSERT_EQ_INT(n_alerts(&f, r.id, true), 2);
    fixture_close(&f);
}

static void test_notify_ingestion_stopped(void)
{
    struct fixture f;
    struct sl_tenant quiet, busy;
    struct sl_channel c;
    struct sl_rule r;
    struct sl_alert_filter flt = {.is_open_only = true};
    struct sl_alert *items = NULL;
    struct sl_err err;
    size_t n = 0;

    fixture_open(&f, "stopped", false, false);
    make_tenant(&f, "quiet", "paid", &quiet);
    make_tenant(&f, "busy", "paid", &busy);
    make_channel(&f, NULL, "log", "", NULL, &c);
    make_rule(&f, NULL, "ingestion_stopped", 0, 1800, c.id, &r);
    add_events(&f, quiet.id, 5, 0, f.now - 7200);
    add_events(&f, busy.id, 5, 0, f.now - 7200);
    add_events(&f, busy.id, 5, 0, f.now - 60);
    ASSERT_EQ_INT(run_at(&f, f.now), SCHED_DONE);
    flt.rule_id = r.id;
    ASSERT_OK(sl_store_alert_list(f.st, &flt, &items, &n, &err), &err);
    ASSERT_EQ_INT(n, 1);
    ASSERT_EQ_STR(items[0].subject, quiet.id);
    ASSERT_EQ_STR(items[0].tenant_id, quiet.id);
    ASSERT_TRUE(items[0].value >= 7200);
    ASSERT_CONTAINS(items[0].message, "no events from tenant");
    sl_free(items);
    /* Events again: resolved. */
    add_events(&f, quiet.id, 1, 0, f.now + 100);
    ASSERT_EQ_INT(run_at(&f, f.now + 120), SCHED_DONE);
    ASSERT_EQ_INT(n_alerts(&f, r.id, true), 0);
    ASSERT_EQ_INT(n_alerts(&f, r.id, false), 1);
    fixture_close(&f);
}

static void test_notify_dlq_growth_and_loader_lag(void)
{
    struct fixture f;
    struct sl_channel c;
    struct sl_rule dlq, lag;
    struct sl_alert_filter flt = {.is_open_only = true};
    struct sl_alert *items = NULL;
    struct sl_err err;
    size_t n = 0;
    json_t *reqs;
    char *u;

    fixture_open(&f, "metrics", true, false);
    u = url_of(&f, "/ops");
    make_channel(&f, NULL, "webhook", u, NULL, &c);
    make_rule(&f, NULL, "dlq_growth", 5, 300, c.id, &dlq);
    make_rule(&f, NULL, "loader_lag", 10000, 300, c.id, &lag);
    /* Dead letters: 5 -> 12 in the window (7 added); a second series restarted in the
     * window, 30 -> 1 (1 added since; the sample before the window is not counted). */
    add_metric(&f, "sluice_loader_dead_letters_total", "reason", "rejected", f.now - 200, 5);
    add_metric(&f, "sluice_loader_dead_letters_total", "reason", "rejected", f.now - 50, 12);
    add_metric(&f, "sluice_loader_dead_letters_total", "reason", "encode", f.now - 900, 20);
    add_metric(&f, "sluice_loader_dead_letters_total", "reason", "encode", f.now - 250, 30);
    add_metric(&f, "sluice_loader_dead_letters_total", "reason", "encode", f.now - 100, 1);
    /* Lag: partition 0 stays above 40000; partition 1 drains to 0. */
    add_metric(&f, "sluice_loader_consumer_lag", "partition", "0", f.now - 200, 50000);
    add_metric(&f, "sluice_loader_consumer_lag", "partition", "0", f.now - 50, 40000);
    add_metric(&f, "sluice_loader_consumer_lag", "partition", "1", f.now - 200, 90000);
    add_metric(&f, "sluice_loader_consumer_lag", "partition", "1", f.now - 50, 0);
    ASSERT_EQ_INT(run_at(&f, f.now), SCHED_DONE);
    ASSERT_OK(sl_store_alert_list(f.st, &flt, &items, &n, &err), &err);
    ASSERT_EQ_INT(n, 2);
    for (size_t i = 0; i < n; i++) {
        ASSERT_EQ_STR(items[i].tenant_id, "");
        if (strcmp(items[i].kind, "dlq_growth") == 0) {
            ASSERT_TRUE(items[i].value == 8);
        }
        else {
            ASSERT_EQ_STR(items[i].kind, "loader_lag");
            ASSERT_TRUE(items[i].value == 40000);
        }
    }
    sl_free(items);
    reqs = requests(&f, "/ops");
    ASSERT_EQ_INT(json_array_size(reqs), 2);
    json_decref(reqs);
    /* The lag drains: loader_lag resolves; no new dead letters: dlq_growth resolves. */
    add_metric(&f, "sluice_loader_consumer_lag", "partition", "0", f.now + 400, 0);
    ASSERT_EQ_INT(run_at(&f, f.now + 450), SCHED_DONE);
    ASSERT_EQ_INT(n_alerts(&f, NULL, true), 0);
    reqs = requests(&f, "/ops");
    ASSERT_EQ_INT(json_array_size(reqs), 4);
    json_decref(reqs);
    free(u);
    fixture_close(&f);
}

/* The one delivery of rule r (fails the test unless there is exactly one). */
static struct sl_delivery only_delivery(struct fixture *f, const char *channel_id)
{
    struct sl_delivery *items = NULL, d;
    struct sl_err err;
    size_t n = 0;

    ASSERT_OK(sl_store_delivery_list(f->st, 0, channel_id, 0, &items, &n, &err), &err);
    ASSERT_EQ_INT(n, 1);
    d = items[0];
    sl_free(items);
    return d;
}

static void test_notify_retry_fails_twice_then_succeeds(void)
{
    struct fixture f;
    struct sl_tenant a;
    struct sl_channel c;
    struct sl_rule r;
    struct sl_delivery d;
    struct sl_delivery_attempt *att = NULL;
    struct sl_err err;
    size_t n = 0;
    json_t *reqs;
    char *u;

    fixture_open(&f, "retry", true, false);
    u = url_of(&f, "/fail/2/hook");
    make_tenant(&f, "acme", "paid", &a);
    make_channel(&f, "acme", "webhook", u, "k", &c);
    make_rule(&f, "acme", "error_rate", 0.2, 300, c.id, &r);
    add_events(&f, a.id, 20, 20, f.now - 60);
    ASSERT_EQ_INT(run_at(&f, f.now), SCHED_DONE);
    d = only_delivery(&f, c.id);
    ASSERT_EQ_STR(d.status, "pending");
    ASSERT_EQ_INT(d.http_status, 500);
    ASSERT_EQ_INT(d.next_attempt_s, f.now + 1);
    /* Not due yet: nothing sent. */
    ASSERT_EQ_INT(run_at(&f, f.now), SCHED_DONE);
    ASSERT_EQ_INT(only_delivery(&f, c.id).attempts, 1);
    ASSERT_EQ_INT(run_at(&f, f.now + 1), SCHED_DONE);
    d = only_delivery(&f, c.id);
    ASSERT_EQ_STR(d.status, "pending");
    ASSERT_EQ_INT(d.next_attempt_s, f.now + 3);
    restart(&f);
    ASSERT_EQ_INT(run_at(&f, f.now + 3), SCHED_DONE);
    d = only_delivery(&f, c.id);
    ASSERT_EQ_STR(d.status, "sent");
    ASSERT_EQ_INT(d.attempts, 3);
    ASSERT_EQ_INT(d.http_status, 200);
    ASSERT_OK(sl_store_delivery_attempts(f.st, d.id, &att, &n, &err), &err);
    ASSERT_EQ_INT(n, 3);
    ASSERT_EQ_STR(att[0].status, "retry");
    ASSERT_EQ_INT(att[0].http_status, 500);
    ASSERT_EQ_STR(att[1].status, "retry");
    ASSERT_EQ_STR(att[2].status, "sent");
    ASSERT_EQ_INT(att[2].started_s, f.now + 3);
    sl_free(att);
    reqs = requests(&f, "/fail/2/hook");
    ASSERT_EQ_INT(json_array_size(reqs), 3);
    json_decref(reqs);
    ASSERT_EQ_INT(counter(&f, "sluice_notify_delivery_attempts_total", "status", "retry"), 2);
    ASSERT_EQ_INT(counter(&f, "sluice_notify_delivery_attempts_total", "status", "sent"), 1);
    ASSERT_EQ_INT(counter(&f, "sluice_notify_alerts_total", "event", "firing"), 1);
    ASSERT_EQ_INT(run_at(&f, f.now + 100), SCHED_DONE);
    reqs = requests(&f, NULL);
    ASSERT_EQ_INT(json_array_size(reqs), 3);
    json_decref(reqs);
    free(u);
    fixture_close(&f);
}

static void test_notify_dead_channel_fails_at_deadline_others_delivered(void)
{
    char smtp_port[] = "SLUICE_SMTP_PORT=25";
    char base[] = "SLUICE_JOB_NOTIFY_RETRY_BASE_S=1";
    char timeout[] = "SLUICE_JOB_NOTIFY_ATTEMPT_TIMEOUT_MS=700";
    char deadline[] = "SLUICE_JOB_NOTIFY_DEADLINE_S=3";
    char *env[] = {smtp_port, base, timeout, deadline, NULL};
    struct fixture f;
    struct sl_tenant a;
    struct sl_channel dead, ok;
    struct sl_rule r1, r2;
    struct sl_delivery d;
    struct sl_delivery_attempt *att = NULL;
    struct sl_err err;
    size_t n = 0;
    json_t *reqs;
    char *u_dead, *u_ok;

    fixture_open(&f, "dead", true, false);
    notify_worker.destroy(f.job);
    load_notify(&f, env);
    job_create(&f);
    u_dead = url_of(&f, "/hang/hook");
    u_ok = url_of(&f, "/ok/hook");
    make_tenant(&f, "acme", "paid", &a);
    make_channel(&f, "acme", "webhook", u_dead, NULL, &dead);
    make_channel(&f, "acme", "webhook", u_ok, NULL, &ok);
    make_rule(&f, "acme", "error_rate", 0.2, 300, dead.id, &r1);
    make_rule(&f, "acme", "error_rate", 0.2, 300, ok.id, &r2);
    add_events(&f, a.id, 20, 20, f.now - 60);

    ASSERT_EQ_INT(run_at(&f, f.now), SCHED_DONE);
    ASSERT_EQ_STR(only_delivery(&f, ok.id).status, "sent");
    d = only_delivery(&f, dead.id);
    ASSERT_EQ_STR(d.status, "pending");
    ASSERT_CONTAINS(d.error, "imed out");
    ASSERT_EQ_INT(run_at(&f, f.now + 1), SCHED_DONE);
    ASSERT_EQ_STR(only_delivery(&f, dead.id).status, "pending");
    /* The third attempt's retry would fall after the deadline (now + 3): failed. */
    ASSERT_EQ_INT(run_at(&f, f.now + 3), SCHED_DONE);
    d = only_delivery(&f, dead.id);
    ASSERT_EQ_STR(d.status, "failed");
    ASSERT_EQ_INT(d.attempts, 3);
    ASSERT_OK(sl_store_delivery_attempts(f.st, d.id, &att, &n, &err), &err);
    ASSERT_EQ_INT(n, 3);
    ASSERT_EQ_STR(att[2].status, "failed");
    ASSERT_EQ_INT(att[2].http_status, 0);
    sl_free(att);
    /* Failed stays failed; the other channel got its one notice. */
    ASSERT_EQ_INT(run_at(&f, f.now + 60), SCHED_DONE);
    ASSERT_EQ_INT(only_delivery(&f, dead.id).attempts, 3);
    reqs = requests(&f, "/ok/hook");
    ASSERT_EQ_INT(json_array_size(reqs), 1);
    json_decref(reqs);
    reqs = requests(&f, "/hang/hook");
    ASSERT_EQ_INT(json_array_size(reqs), 3);
    json_decref(reqs);
    free(u_dead);
    free(u_ok);
    fixture_close(&f);
}

static void test_notify_dead_channel_costs_one_timeout_per_run(void)
{
    char smtp_port[] = "SLUICE_SMTP_PORT=25";
    char timeout[] = "SLUICE_JOB_NOTIFY_ATTEMPT_TIMEOUT_MS=500";
    char *env[] = {smtp_port, timeout, NULL};
    struct fixture f;
    struct sl_tenant a;
    struct sl_channel dead, ok;
    struct sl_rule r;
    struct sl_delivery *items = NULL;
    struct sl_err err;
    size_t n = 0;
    int pending = 0, untried = 0;
    json_t *reqs;
    char *u_dead, *u_ok;

    fixture_open(&f, "skip", true, false);
    notify_worker.destroy(f.job);
    load_notify(&f, env);
    job_create(&f);
    u_dead = url_of(&f, "/hang/x");
    u_ok = url_of(&f, "/ok/x");
    make_tenant(&f, "acme", "paid", &a);
    make_channel(&f, "acme", "webhook", u_dead, NULL, &dead);
    make_channel(&f, "acme", "webhook", u_ok, NULL, &ok);
    /* Three notices wait for the dead channel, one for the live one. */
    make_rule(&f, "acme", "error_rate", 0.2, 300, dead.id, &r);
    make_rule(&f, "acme", "error_rate", 0.3, 300, dead.id, &r);
    make_rule(&f, "acme", "ingestion_stopped", 0, 60, dead.id, &r);
    make_rule(&f, "acme", "error_rate", 0.2, 300, ok.id, &r);
    add_events(&f, a.id, 20, 20, f.now - 120);
    ASSERT_EQ_INT(run_at(&f, f.now), SCHED_DONE);
    reqs = requests(&f, "/hang/x");
    ASSERT_EQ_INT(json_array_size(reqs), 1);
    json_decref(reqs);
    reqs = requests(&f, "/ok/x");
    ASSERT_EQ_INT(json_array_size(reqs), 1);
    json_decref(reqs);
    ASSERT_OK(sl_store_delivery_list(f.st, 0, dead.id, 0, &items, &n, &err), &err);
    ASSERT_EQ_INT(n, 3);
    for (size_t i = 0; i < n; i++) {
        pending += strcmp(items[i].status, "pending") == 0;
        untried += items[i].attempts == 0;
    }
    ASSERT_EQ_INT(pending, 3);
    ASSERT_EQ_INT(untried, 2);
    sl_free(items);
    free(u_dead);
    free(u_ok);
    fixture_close(&f);
}

static void test_notify_removed_rule_closes_its_alerts(void)
{
    struct fixture f;
    struct sl_tenant a;
    struct sl_channel c;
    struct sl_rule r;
    struct sl_alert_filter flt = {0};
    struct sl_alert *items = NULL;
    struct sl_err err;
    size_t n = 0;

    fixture_open(&f, "remove", false, false);
    make_tenant(&f, "acme", "paid", &a);
    make_channel(&f, "acme", "log", "", NULL, &c);
    make_rule(&f, "acme", "ingestion_stopped", 0, 60, c.id, &r);
    add_events(&f, a.id, 3, 0, f.now - 600);
    ASSERT_EQ_INT(run_at(&f, f.now), SCHED_DONE);
    ASSERT_EQ_INT(n_alerts(&f, r.id, true), 1);
    ASSERT_OK(sl_store_rule_remove(f.st, r.id, &err), &err);
    ASSERT_EQ_INT(n_alerts(&f, r.id, true), 0);
    flt.rule_id = r.id;
    ASSERT_OK(sl_store_alert_list(f.st, &flt, &items, &n, &err), &err);
    ASSERT_EQ_INT(n, 1);
    ASSERT_TRUE(!items[0].is_firing);
    ASSERT_CONTAINS(items[0].message, "(rule removed)");
    sl_free(items);
    ASSERT_EQ_INT(run_at(&f, f.now + 30), SCHED_DONE);
    fixture_close(&f);
}

static void test_notify_email_auth_and_refusals(void)
{
    struct fixture f;
    struct test_daemon authd;
    char *auth_dir = NULL;
    int auth_port = 0;
    char host[] = "SLUICE_SMTP_HOST=127.0.0.1";
    char port[64], user[] = "SLUICE_SMTP_USER=ops", good[] = "SLUICE_SMTP_PASSWORD=pw",
         bad[] = "SLUICE_SMTP_PASSWORD=wrong", tls[] = "SLUICE_SMTP_STARTTLS=none",
         require[] = "SLUICE_SMTP_STARTTLS=require";
    char *env_good[] = {host, port, user, good, tls, NULL};
    char *env_bad[] = {host, port, user, bad, tls, NULL};
    char *env_tls[] = {host, port, require, NULL};
    struct notify_outcome out;
    struct sl_channel c;
    struct sl_tenant t;
    struct sl_err err;
    char name[32], *path;
    json_t *env;

    fixture_open(&f, "auth", false, false);
    start_fixture(&authd, "smtp_sink.py", &auth_dir, &auth_port, f.dir, "smtp-auth", "ops:pw");
    snprintf(port, sizeof(port), "SLUICE_SMTP_PORT=%d", auth_port);
    make_tenant(&f, "acme", "paid", &t);
    make_channel(&f, "acme", "email", "ops@acme.test", NULL, &c);

    load_notify(&f, env_good);
    ASSERT_OK(notify_channel_test(f.st, &f.ns, c.id, 0, f.now, &out, &err), &err);
    ASSERT_EQ_STR(out.status, "sent");
    snprintf(name, sizeof(name), "1.json");
    path = test_path(auth_dir, name);
    env = json_load_file(path, 0, NULL);
    free(path);
    ASSERT_TRUE(env != NULL);
    ASSERT_EQ_STR(json_string_value(json_object_get(env, "auth_user")), "ops");
    ASSERT_EQ_STR(json_string_value(json_array_get(json_object_get(env, "rcpt_tos"), 0)),
                  "ops@acme.test");
    json_decref(env);

    /* A wrong password: not delivered, retried later. */
    load_notify(&f, env_bad);
    ASSERT_OK(notify_channel_test(f.st, &f.ns, c.id, 0, f.now, &out, &err), &err);
    ASSERT_EQ_STR(out.status, "retry");
    ASSERT_TRUE(out.error[0] != '\0');
    /* STARTTLS required from a server that offers none: no mail transaction. */
    load_notify(&f, env_tls);
    ASSERT_OK(notify_channel_test(f.st, &f.ns, c.id, 0, f.now, &out, &err), &err);
    ASSERT_EQ_STR(out.status, "retry");
    ASSERT_CONTAINS(out.error, "STARTTLS require");
    path = test_path(auth_dir, "2.json");
    ASSERT_TRUE(access(path, F_OK) != 0);
    free(path);
    test_daemon_fini(&authd);
    free(auth_dir);
    fixture_close(&f);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_notify_error_rate_webhook_slack_discord_and_restart),
        TEST_CASE(test_notify_quota_email),
        TEST_CASE(test_notify_ingestion_stopped),
        TEST_CASE(test_notify_dlq_growth_and_loader_lag),
        TEST_CASE(test_notify_retry_fails_twice_then_succeeds),
        TEST_CASE(test_notify_dead_channel_fails_at_deadline_others_delivered),
        TEST_CASE(test_notify_dead_channel_costs_one_timeout_per_run),
        TEST_CASE(test_notify_removed_rule_closes_its_alerts),
        TEST_CASE(test_notify_email_auth_and_refusals),
        {NULL, NULL},
    };

    sl_alloc_init_jansson();
    return test_main(argc, argv, cases);
}

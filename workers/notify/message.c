/*
 * What a notification says, whatever the channel: a title line, a few lines of text and a
 * generic JSON form (the webhook body and the log line). Channels shape these into their
 * own payloads.
 */
#include "notify_int.h"

#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "json.h"
#include "timefmt.h"

#define JSON_MAX (64 * 1024)

static const char *what_of(const char *kind)
{
    if (strcmp(kind, "error_rate") == 0) {
        return "error rate";
    }
    if (strcmp(kind, "quota") == 0) {
        return "monthly quota used (%)";
    }
    if (strcmp(kind, "ingestion_stopped") == 0) {
        return "seconds since the last event";
    }
    if (strcmp(kind, "dlq_growth") == 0) {
        return "dead letters added";
    }
    if (strcmp(kind, "loader_lag") == 0) {
        return "events the loader is behind";
    }
    return kind;
}

static void render(struct notify_msg *m, const char *message)
{
    char fired[SL_TIMEFMT_ISO_MAX], resolved[SL_TIMEFMT_ISO_MAX];
    const char *about = m->subject[0] != '\0' ? m->subject : "sluice";
    int n;

    if (strcmp(m->event, "test") == 0) {
        snprintf(m->title, sizeof(m->title), "[TEST] sluice notification to channel %s",
                 m->channel_id);
        snprintf(m->text, sizeof(m->text),
                 "This is a test notification from sluice to channel %s.\n"
                 "If you can read it, the channel works.\n",
                 m->channel_id);
        return;
    }
    n = snprintf(m->title, sizeof(m->title), "[%s] %s (%s) for %s: %g (threshold %g)",
                 strcmp(m->event, "resolved") == 0 ? "RESOLVED" : "FIRING", m->rule_name,
                 m->kind, about, m->value, m->threshold);
    if (n < 0 || (size_t)n >= sizeof(m->title)) {
        /* A long rule name: the title is cut, the text below still has everything. */
        m->title[sizeof(m->title) - 1] = '\0';
    }
    n = snprintf(m->text, sizeof(m->text),
                 "%s%s\n"
                 "rule: %s (%s), kind %s, window %llds\n"
                 "subject: %s\n"
                 "%s: %g, threshold %g\n"
                 "fired at: %s\n"
                 "%s%s%s",
                 m->resolved_s > 0 ? "The condition cleared. When it fired: " : "", message,
                 m->rule_name, m->rule_id, m->kind, (long long)m->window_s, about,
                 what_of(m->kind), m->value, m->threshold, sl_timefmt_iso(m->fired_s, fired),
                 m->resolved_s > 0 ? "resolved at: " : "",
                 m->resolved_s > 0 ? sl_timefmt_iso(m->resolved_s, resolved) : "",
                 m->resolved_s > 0 ? "\n" : "");
    if (n < 0 || (size_t)n >= sizeof(m->text)) {
        m->text[sizeof(m->text) - 1] = '\0';
    }
}

void notify_msg_from_alert(struct notify_msg *m, const struct sl_alert *a, const char *event,
                           int64_t delivery_id, const char *channel_id)
{
    bool is_resolved = strcmp(event, "resolved") == 0;

    memset(m, 0, sizeof(*m));
    m->event = is_resolved ? "resolved" : "firing";
    m->alert_id = a->id;
    m->delivery_id = delivery_id;
    m->rule_id = a->rule_id;
    m->rule_name = a->rule_name;
    m->kind = a->kind;
    m->tenant_id = a->tenant_id;
    m->subject = a->subject;
    m->channel_id = channel_id;
    m->value = is_resolved ? a->resolved_value : a->value;
    m->threshold = a->threshold;
    m->window_s = a->window_s;
    m->fired_s = a->fired_s;
    m->resolved_s = is_resolved ? a->resolved_s : 0;
    render(m, a->message);
}

void notify_msg_test(struct notify_msg *m, const struct sl_channel *c, int64_t delivery_id,
                     int64_t now_s)
{
    memset(m, 0, sizeof(*m));
    m->event = "test";
    m->delivery_id = delivery_id;
    m->rule_id = "";
    m->rule_name = "test";
    m->kind = "test";
    m->tenant_id = c->tenant_id;
    m->subject = "";
    m->channel_id = c->id;
    m->fired_s = now_s;
    render(m, "");
}

json_t *notify_msg_json(const struct notify_msg *m)
{
    char fired[SL_TIMEFMT_ISO_MAX], resolved[SL_TIMEFMT_ISO_MAX];

    return json_pack("{s:s, s:I, s:I, s:{s:s, s:s, s:s}, s:o, s:s, s:f, s:f, s:I, s:s, s:o, "
                     "s:s, s:s}",
                     "event", m->event, "alert_id", (json_int_t)m->alert_id, "delivery_id",
                     (json_int_t)m->delivery_id, "rule", "id", m->rule_id, "name",
                     m->rule_name, "kind", m->kind, "tenant_id",
                     m->tenant_id[0] != '\0' ? json_string(m->tenant_id) : json_null(),
                     "subject", m->subject, "value", m->value, "threshold", m->threshold,
                     "window_s", (json_int_t)m->window_s, "fired_at",
                     sl_timefmt_iso(m->fired_s, fired), "resolved_at",
                     m->resolved_s > 0 ? json_string(sl_timefmt_iso(m->resolved_s, resolved))
                                       : json_null(),
                     "title", m->title, "text", m->text);
}

char *notify_json_text_take(json_t *v)
{
    struct sl_json_buf b;
    char *text = NULL;
    size_t len = 0;

    if (v == NULL) {
        return NULL;
    }
    /* sluice's writer rather than json_dumps: reals in their shortest form (0.2, not
     * jansson's 0.20000000000000001). */
    sl_json_buf_init(&b, JSON_MAX);
    if (sl_json_append_value(&b, v, 1, 8) != 0 || sl_json_buf_take(&b, &text, &len) != 0) {
        sl_json_buf_fini(&b);
        text = NULL;
    }
    json_decref(v);
    return text;
}

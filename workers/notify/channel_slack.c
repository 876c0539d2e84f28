/*
 * The Slack channel: an incoming-webhook message, {"text": title, "blocks": [a header, a
 * section with the details, a context line]}. "text" is what notifications and clients
 * without blocks show. Slack answers 200 "ok".
 */
#include "notify_int.h"

#include <stdio.h>
#include <string.h>

#include "alloc.h"

char *notify_slack_body(const struct notify_msg *m)
{
    char context[160];
    json_t *blocks;

    snprintf(context, sizeof(context), "sluice %s · rule %s · alert %lld", m->event,
             m->rule_id[0] != '\0' ? m->rule_id : "-", (long long)m->alert_id);
    blocks = json_pack("[{s:s, s:{s:s, s:s}}, {s:s, s:{s:s, s:s}}, {s:s, s:[{s:s, s:s}]}]",
                       "type", "header", "text", "type", "plain_text", "text", m->title,
                       "type", "section", "text", "type", "mrkdwn", "text", m->text,
                       "type", "context", "elements", "type", "mrkdwn", "text", context);
    if (blocks == NULL) {
        return NULL;
    }
    return notify_json_text_take(json_pack("{s:s, s:o}", "text", m->title, "blocks", blocks));
}

int notify_slack_send(const struct notify_msg *m, const char *url,
                      const struct notify_settings *s, struct notify_send_result *r)
{
    struct notify_http_req req = {.url = url,
                                  .timeout_ms = s->attempt_timeout_ms,
                                  .connect_timeout_ms = s->connect_timeout_ms};
    char *body = notify_slack_body(m);
    int rc;

    memset(r, 0, sizeof(*r));
    if (body == NULL) {
        snprintf(r->error, sizeof(r->error), "out of memory rendering the Slack message");
        return SL_ENOMEM;
    }
    req.body = body;
    req.body_len = strlen(body);
    rc = notify_http_post(&req, r);
    sl_free(body);
    return rc;
}

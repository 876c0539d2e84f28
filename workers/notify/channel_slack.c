/*
 * The Slack channel: an incoming-webhook message, {"text": title, "blocks": [a header, a
 * section with the details, a context line]}. "text" is what notifications and clients
 * without blocks show. Slack answers 200 "ok".
 */
#include "notify_int.h"

#include <stdio.h>

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
    return notify_http_post_taken(url, notify_slack_body(m), NULL, "Slack message", s, r);
}

/*
 * The Discord channel: an incoming-webhook message, {"content": title, "embeds": [{title,
 * description, color, fields, timestamp}]}. Red for firing, green for resolved, blue for a
 * test. Discord answers 204.
 */
#include "notify_int.h"

#include <stdio.h>
#include <string.h>

#include "timefmt.h"

#define COLOR_FIRING 0xE01E5A
#define COLOR_RESOLVED 0x2EB67D
#define COLOR_TEST 0x36C5F0

char *notify_discord_body(const struct notify_msg *m)
{
    char when[SL_TIMEFMT_ISO_MAX], value[64], threshold[64];
    int color = COLOR_TEST;
    json_t *embed;

    if (strcmp(m->event, "firing") == 0) {
        color = COLOR_FIRING;
    }
    else if (strcmp(m->event, "resolved") == 0) {
        color = COLOR_RESOLVED;
    }
    snprintf(value, sizeof(value), "%g", m->value);
    snprintf(threshold, sizeof(threshold), "%g", m->threshold);
    embed = json_pack("{s:s, s:s, s:i, s:s, s:[{s:s, s:s, s:b}, {s:s, s:s, s:b}, "
                      "{s:s, s:s, s:b}]}",
                      "title", m->title, "description", m->text, "color", color, "timestamp",
                      sl_timefmt_iso(m->resolved_s > 0 ? m->resolved_s : m->fired_s, when),
                      "fields", "name", "kind", "value", m->kind, "inline", 1, "name", "value",
                      "value", value, "inline", 1, "name", "threshold", "value", threshold,
                      "inline", 1);
    if (embed == NULL) {
        return NULL;
    }
    return notify_json_text_take(json_pack("{s:s, s:[o]}", "content", m->title, "embeds",
                                           embed));
}

int notify_discord_send(const struct notify_msg *m, const char *url,
                        const struct notify_settings *s, struct notify_send_result *r)
{
    return notify_http_post_taken(url, notify_discord_body(m), NULL, "Discord message", s, r);
}

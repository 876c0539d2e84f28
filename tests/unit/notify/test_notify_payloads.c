/*
 * workers/notify/: what each channel sends, without I/O. The webhook signature against a
 * vector computed independently (Python's hmac), the generic webhook body, Slack's
 * {"text", "blocks"} and Discord's {"content", "embeds"} shapes, and the mail's headers and
 * two parts.
 */
#include <jansson.h>
#include <string.h>

#include "alloc.h"
#include "notify_int.h"
#include "test.h"

#define T0 1795478400

static void make_alert(struct sl_alert *a)
{
    memset(a, 0, sizeof(*a));
    a->id = 42;
    snprintf(a->rule_id, sizeof(a->rule_id), "ru_0123456789abcdef");
    snprintf(a->rule_name, sizeof(a->rule_name), "errors <high> & \"loud\"");
    snprintf(a->tenant_id, sizeof(a->tenant_id), "tn_00000000000000aa");
    snprintf(a->subject, sizeof(a->subject), "tn_00000000000000aa");
    snprintf(a->kind, sizeof(a->kind), "error_rate");
    snprintf(a->message, sizeof(a->message), "30 of 100 events were errors");
    a->is_firing = true;
    a->value = 0.3;
    a->threshold = 0.05;
    a->window_s = 300;
    a->fired_s = T0;
}

static void test_notify_signature_known_vector(void)
{
    char sig[NOTIFY_SIGNATURE_MAX];
    const char *body = "{\"event\":\"firing\"}";

    ASSERT_OK(notify_webhook_sign("whsec_test", T0, body, strlen(body), sig), NULL);
    /* python3 -c "import hmac,hashlib; print(hmac.new(b'whsec_test',
     *   b'1795478400.{\"event\":\"firing\"}', hashlib.sha256).hexdigest())" */
    ASSERT_EQ_STR(sig, "v1=7ef62862d7a0059b7579c233b1b13f7eadc882889a467dcc585f9beedb0f68f8");
    /* Any change of timestamp, body or secret changes it. */
    ASSERT_OK(notify_webhook_sign("whsec_test", T0 + 1, body, strlen(body), sig), NULL);
    ASSERT_NOT_CONTAINS(sig, "7ef62862d7a0");
    ASSERT_OK(notify_webhook_sign("whsec_tesT", T0, body, strlen(body), sig), NULL);
    ASSERT_NOT_CONTAINS(sig, "7ef62862d7a0");
}

static json_t *parse(char *text)
{
    json_error_t jerr;
    json_t *v;

    ASSERT_TRUE(text != NULL);
    v = json_loads(text, 0, &jerr);
    if (v == NULL) {
        TEST_FAIL("not JSON (%s): %s", jerr.text, text);
    }
    sl_free(text);
    return v;
}

static void test_notify_webhook_body_fields(void)
{
    struct sl_alert a;
    struct notify_msg m;
    json_t *v;

    make_alert(&a);
    notify_msg_from_alert(&m, &a, "firing", 7, "ch_1");
    v = parse(notify_webhook_body(&m));
    ASSERT_EQ_STR(json_string_value(json_object_get(v, "event")), "firing");
    ASSERT_EQ_INT(json_integer_value(json_object_get(v, "alert_id")), 42);
    ASSERT_EQ_INT(json_integer_value(json_object_get(v, "delivery_id")), 7);
    ASSERT_EQ_STR(json_string_value(json_object_get(json_object_get(v, "rule"), "kind")),
                  "error_rate");
    ASSERT_EQ_STR(json_string_value(json_object_get(v, "tenant_id")), "tn_00000000000000aa");
    ASSERT_TRUE(json_real_value(json_object_get(v, "value")) == 0.3);
    ASSERT_TRUE(json_real_value(json_object_get(v, "threshold")) == 0.05);
    ASSERT_EQ_STR(json_string_value(json_object_get(v, "fired_at")), "2026-11-24T00:00:00Z");
    ASSERT_TRUE(json_is_null(json_object_get(v, "resolved_at")));
    ASSERT_CONTAINS(json_string_value(json_object_get(v, "title")), "[FIRING]");
    ASSERT_CONTAINS(json_string_value(json_object_get(v, "text")), "30 of 100 events");
    json_decref(v);

    a.is_firing = false;
    a.resolved_s = T0 + 600;
    a.resolved_value = 0.01;
    notify_msg_from_alert(&m, &a, "resolved", 8, "ch_1");
    v = parse(notify_webhook_body(&m));
    ASSERT_EQ_STR(json_string_value(json_object_get(v, "event")), "resolved");
    ASSERT_EQ_STR(json_string_value(json_object_get(v, "resolved_at")), "2026-11-24T00:10:00Z");
    ASSERT_TRUE(json_real_value(json_object_get(v, "value")) == 0.01);
    ASSERT_CONTAINS(json_string_value(json_object_get(v, "title")), "[RESOLVED]");
    json_decref(v);
}

static void test_notify_slack_shape(void)
{
    struct sl_alert a;
    struct notify_msg m;
    json_t *v, *blocks;

    make_alert(&a);
    notify_msg_from_alert(&m, &a, "firing", 7, "ch_1");
    v = parse(notify_slack_body(&m));
    ASSERT_EQ_STR(json_string_value(json_object_get(v, "text")), m.title);
    blocks = json_object_get(v, "blocks");
    ASSERT_EQ_INT(json_array_size(blocks), 3);
    ASSERT_EQ_STR(json_string_value(json_object_get(json_array_get(blocks, 0), "type")),
                  "header");
    ASSERT_EQ_STR(json_string_value(json_object_get(
                      json_object_get(json_array_get(blocks, 0), "text"), "type")),
                  "plain_text");
    ASSERT_EQ_STR(json_string_value(json_object_get(json_array_get(blocks, 1), "type")),
                  "section");
    ASSERT_CONTAINS(json_string_value(json_object_get(
                        json_object_get(json_array_get(blocks, 1), "text"), "text")),
                    "30 of 100 events");
    ASSERT_EQ_STR(json_string_value(json_object_get(json_array_get(blocks, 2), "type")),
                  "context");
    json_decref(v);
}

static void test_notify_discord_shape(void)
{
    struct sl_alert a;
    struct notify_msg m;
    json_t *v, *embed;

    make_alert(&a);
    notify_msg_from_alert(&m, &a, "firing", 7, "ch_1");
    v = parse(notify_discord_body(&m));
    ASSERT_EQ_STR(json_string_value(json_object_get(v, "content")), m.title);
    ASSERT_EQ_INT(json_array_size(json_object_get(v, "embeds")), 1);
    embed = json_array_get(json_object_get(v, "embeds"), 0);
    ASSERT_EQ_STR(json_string_value(json_object_get(embed, "title")), m.title);
    ASSERT_CONTAINS(json_string_value(json_object_get(embed, "description")), "30 of 100");
    ASSERT_EQ_INT(json_integer_value(json_object_get(embed, "color")), 0xE01E5A);
    ASSERT_EQ_STR(json_string_value(json_object_get(embed, "timestamp")),
                  "2026-11-24T00:00:00Z");
    ASSERT_EQ_INT(json_array_size(json_object_get(embed, "fields")), 3);
    json_decref(v);
}

static void test_notify_mail_text_headers_and_parts(void)
{
    struct sl_alert a;
    struct notify_msg m;
    char *mail;

    make_alert(&a);
    notify_msg_from_alert(&m, &a, "firing", 7, "ch_1");
    mail = notify_mail_text(&m, "alerts@example.org", "a@x.org,b@y.org", T0);
    ASSERT_TRUE(mail != NULL);
    ASSERT_TRUE(strncmp(mail, "Date: Tue, 24 Nov 2026 00:00:00 +0000\r\n", 39) == 0);
    ASSERT_CONTAINS(mail, "\r\nMessage-ID: <sluice.7.1795478400.");
    ASSERT_CONTAINS(mail, "@example.org>\r\n");
    ASSERT_CONTAINS(mail, "\r\nFrom: alerts@example.org\r\n");
    ASSERT_CONTAINS(mail, "\r\nTo: a@x.org,b@y.org\r\n");
    ASSERT_CONTAINS(mail, "\r\nSubject: [FIRING] errors <high> & \"loud\" (error_rate)");
    ASSERT_CONTAINS(mail, "Content-Type: multipart/alternative; boundary=\"sluice-");
    ASSERT_CONTAINS(mail, "Content-Type: text/plain; charset=utf-8\r\n");
    ASSERT_CONTAINS(mail, "Content-Type: text/html; charset=utf-8\r\n");
    /* The HTML part escapes what the plain part keeps. */
    ASSERT_CONTAINS(mail, "<h2>[FIRING] errors &lt;high&gt; &amp; &quot;loud&quot;");
    ASSERT_CONTAINS(mail, "30 of 100 events were errors<br>\r\n");
    ASSERT_NOT_CONTAINS(mail, "errors\n");
    sl_free(mail);

    /* A subject beyond ASCII is RFC 2047 encoded. */
    snprintf(a.rule_name, sizeof(a.rule_name), "Fehlerquote \xc3\xbc");
    notify_msg_from_alert(&m, &a, "firing", 7, "ch_1");
    mail = notify_mail_text(&m, "alerts@example.org", "a@x.org", T0);
    ASSERT_CONTAINS(mail, "\r\nSubject: =?UTF-8?B?");
    sl_free(mail);
}

static void test_notify_test_message(void)
{
    struct sl_channel c = {0};
    struct notify_msg m;
    json_t *v;

    snprintf(c.id, sizeof(c.id), "ch_abc");
    notify_msg_test(&m, &c, 3, T0);
    v = parse(notify_webhook_body(&m));
    ASSERT_EQ_STR(json_string_value(json_object_get(v, "event")), "test");
    ASSERT_TRUE(json_is_null(json_object_get(v, "tenant_id")));
    ASSERT_CONTAINS(json_string_value(json_object_get(v, "title")), "[TEST]");
    json_decref(v);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_notify_signature_known_vector),
        TEST_CASE(test_notify_webhook_body_fields),
        TEST_CASE(test_notify_slack_shape),
        TEST_CASE(test_notify_discord_shape),
        TEST_CASE(test_notify_mail_text_headers_and_parts),
        TEST_CASE(test_notify_test_message),
        {NULL, NULL},
    };
    return test_main(argc, argv, cases);
}

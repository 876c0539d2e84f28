/*
 * Internals of workers/notify/ shared by its files (and its unit tests): the lifecycle
 * state machine, the notification a channel renders, each channel's payload and sender,
 * delivery attempts and rule evaluation. Nothing outside this folder includes it.
 */
#ifndef SLUICE_WORKERS_NOTIFY_NOTIFY_INT_H
#define SLUICE_WORKERS_NOTIFY_NOTIFY_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ch.h"
#include "err.h"
#include "notify.h"
#include "store.h"
#include "store_notify.h"

/* ---- lifecycle.c: the pure state machine ---- */

struct notify_policy {
    int64_t cooldown_s;  /* the rule's: no new firing notice sooner after the last notice */
    int64_t cap;         /* notices per rule and subject per interval */
    int64_t interval_s;  /* the cap's interval */
};

enum notify_action {
    NOTIFY_NONE = 0,       /* nothing to record but (maybe) the state */
    NOTIFY_FIRE,           /* open an alert and announce it */
    NOTIFY_FIRE_SILENT,    /* open an alert; cooldown or cap holds the notice back */
    NOTIFY_LATE,           /* the open alert is announced now that cooldown/cap allow it */
    NOTIFY_RESOLVE,        /* resolve the alert and announce that */
    NOTIFY_RESOLVE_SILENT, /* resolve an alert nobody was told about */
};

/*
 * One evaluation of one rule for one subject: from the stored state prev (zeroed for a
 * subject never seen), whether the condition holds now and its value, returns what to do
 * and writes the state to store in *next. Pure; any thread.
 *
 * ok -> firing: announced unless a notice went out less than cooldown_s ago or cap notices
 * went out in the current interval (then the alert opens silently and is announced later,
 * once both allow, while it still holds). firing held: nothing. firing -> ok: a resolved
 * notice when the firing was announced (never capped, so nobody is left with an alert
 * that never ends).
 */
enum notify_action notify_lifecycle_step(const struct sl_alert_state *prev, bool condition,
                                         double value, const struct notify_policy *policy,
                                         int64_t now_s, struct sl_alert_state *next);

const char *notify_action_name(enum notify_action a);

/* ---- message.c: what a notification says ---- */

struct notify_msg {
    const char *event;      /* "firing", "resolved" or "test" (static) */
    int64_t alert_id;       /* 0 for a test */
    int64_t delivery_id;
    const char *rule_id;    /* borrowed, "" for a test */
    const char *rule_name;
    const char *kind;
    const char *tenant_id;  /* "" when the alert is about sluice itself */
    const char *subject;
    const char *channel_id;
    double value;           /* when it fired, or when it resolved */
    double threshold;
    int64_t window_s;
    int64_t fired_s;
    int64_t resolved_s;     /* 0 unless resolved */
    char title[256];        /* one line: "[FIRING] error_rate for tn_x: 0.31 > 0.05" */
    char text[1024];        /* a few plain-text lines */
};

/* Fills m for a delivery of alert a (borrowed; must outlive m). */
void notify_msg_from_alert(struct notify_msg *m, const struct sl_alert *a, const char *event,
                           int64_t delivery_id, const char *channel_id);

/* Fills m for a test delivery to channel c (borrowed). */
void notify_msg_test(struct notify_msg *m, const struct sl_channel *c, int64_t delivery_id,
                     int64_t now_s);

/* The generic JSON body (webhook and log): new reference, NULL when out of memory. */
json_t *notify_msg_json(const struct notify_msg *m);

/* Compact JSON text of v (taken, may be NULL) as new text (sl_free); NULL on failure. */
char *notify_json_text_take(json_t *v);

/* ---- channel_*.c: payloads and senders ---- */

/* What one send did. */
struct notify_send_result {
    long http_status;     /* 0: no HTTP answer */
    bool is_permanent;    /* retrying cannot help (4xx but 408/429, bad address) */
    char error[256];
};

/* The HTTP transport the webhook, Slack and Discord channels share (http.c). */
struct notify_http_req {
    const char *url;
    const char *body;         /* borrowed */
    size_t body_len;
    const char *const *headers; /* NULL-terminated "Name: value" lines; may be NULL */
    int64_t timeout_ms;
    int64_t connect_timeout_ms;
};

/* POSTs req; 2xx is success (0). Else SL_ESERVER (an HTTP error status), SL_ETIMEDOUT or
 * SL_ENET with r->error saying what. */
int notify_http_post(const struct notify_http_req *req, struct notify_send_result *r);

/*
 * What each HTTP channel's sender does: POSTs body (taken and freed; NULL when rendering it
 * ran out of memory, reported as "out of memory rendering the <what>" and SL_ENOMEM) to url
 * with headers (NULL-terminated "Name: value" lines; may be NULL) and the settings' timeouts.
 * Returns as notify_http_post.
 */
int notify_http_post_taken(const char *url, char *body, const char *const *headers,
                           const char *what, const struct notify_settings *s,
                           struct notify_send_result *r);

/* Signature header value "v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>" into out (at least
 * NOTIFY_SIGNATURE_MAX bytes). SL_EINVAL when libcrypto fails. */
#define NOTIFY_SIGNATURE_MAX 72
int notify_webhook_sign(const char *secret, int64_t ts_s, const char *body, size_t body_len,
                        char out[NOTIFY_SIGNATURE_MAX]);

/* Body of each HTTP channel: new text (sl_free), NULL when out of memory. */
char *notify_webhook_body(const struct notify_msg *m);
char *notify_slack_body(const struct notify_msg *m);
char *notify_discord_body(const struct notify_msg *m);

/* Senders. secret may be "" (unsigned webhook). */
int notify_webhook_send(const struct notify_msg *m, const char *url, const char *secret,
                        const struct notify_settings *s, int64_t now_s,
                        struct notify_send_result *r);
int notify_slack_send(const struct notify_msg *m, const char *url,
                      const struct notify_settings *s, struct notify_send_result *r);
int notify_discord_send(const struct notify_msg *m, const char *url,
                        const struct notify_settings *s, struct notify_send_result *r);
int notify_log_send(const struct notify_msg *m, struct notify_send_result *r);

/* The mail as sent (headers, multipart/alternative text + HTML): new text (sl_free). */
char *notify_mail_text(const struct notify_msg *m, const char *from, const char *to,
                       int64_t now_s);
int notify_mail_send(const struct notify_msg *m, const char *to,
                     const struct notify_settings *s, int64_t now_s,
                     struct notify_send_result *r);

/* ---- deliver.c ---- */

/* Seconds to wait after failed attempt number `attempt` (1, 2, ...): base * 2^(attempt-1),
 * at most max_s. */
int64_t notify_backoff_s(int64_t attempt, int64_t base_s, int64_t max_s);

/*
 * Makes the next attempt of delivery d: renders it, sends it through its channel, logs the
 * attempt and moves the delivery to sent, pending (retry at the backoff) or failed (the
 * next attempt would pass its deadline, the failure is permanent, or the channel is gone).
 * Fills out. Fails only when the store fails.
 */
int notify_deliver_attempt(struct sl_store *st, const struct notify_settings *s,
                           const struct sl_delivery *d, int64_t now_s,
                           struct notify_outcome *out, struct sl_err *err);

/* Attempts the deliveries due at now_s (at most s->batch), skipping for the rest of the
 * run a channel that did not answer at all; *counts gets the attempts' outcomes.
 * should_stop (may be NULL) is polled between attempts. Fails only when the store fails. */
struct notify_deliver_counts {
    int64_t sent;
    int64_t retry;
    int64_t failed;
};

int notify_deliver_due(struct sl_store *st, const struct notify_settings *s, int64_t now_s,
                       bool (*should_stop)(void *), void *stop_arg,
                       struct notify_deliver_counts *counts, struct sl_err *err);

/* ---- rules.c: evaluating a rule ---- */

/* One subject's reading. */
struct notify_obs {
    char subject[SL_STORE_SUBJECT_MAX];
    char tenant_id[SL_STORE_ID_MAX]; /* the tenant concerned; "" for system kinds */
    bool condition;
    double value;
    double threshold;                /* the level this subject fires at; 0: the rule's */
    char message[SL_STORE_MESSAGE_MAX];
};

struct notify_eval {
    struct notify_obs *obs; /* n observations (sl_free) */
    size_t n;
    bool keeps_missing;     /* a firing subject without an observation stays firing
                               (ingestion_stopped: silence past the look-back) */
};

/*
 * Evaluates rule r at now_s against ClickHouse database `database` through ch (and, for
 * quota, the tiers in st). Fills ev (free with notify_eval_fini). Fails with the ClickHouse
 * client's or the store's error.
 */
int notify_rule_eval(struct sl_ch *ch, const char *database, struct sl_store *st,
                     const struct notify_settings *s, const struct sl_rule *r, int64_t now_s,
                     struct notify_eval *ev, struct sl_err *err);
void notify_eval_fini(struct notify_eval *ev);

#endif

/*
 * Notification rows of the tenant store (schema version 6): each alert rule's state per
 * subject, the alerts raised, the delivery queue and its per-attempt log. The notify
 * worker decides (workers/notify/lifecycle.c); these functions only store what it
 * decided, each change in one transaction so a restart or a standby scheduler neither
 * sends a notice twice nor forgets one. Alert channels and rules themselves are in
 * store.h (store_alert.c).
 *
 * Same conventions as store.h: caller-provided records with fixed text fields, lists as
 * new arrays freed with sl_free, one struct sl_store per thread.
 */
#ifndef SLUICE_LIB_STORE_NOTIFY_H
#define SLUICE_LIB_STORE_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

#define SL_STORE_SUBJECT_MAX 129  /* what an alert is about: a tenant id, "tn_x@100%", "" */
#define SL_STORE_MESSAGE_MAX 512
#define SL_STORE_EVENT_MAX 16     /* firing, resolved, test */
#define SL_STORE_DELIVERY_ERROR_MAX 256

/* One rule's state for one subject. */
struct sl_alert_state {
    char rule_id[SL_STORE_ID_MAX];
    char subject[SL_STORE_SUBJECT_MAX];
    bool is_firing;
    bool is_notified;          /* the current firing was announced (so its end is too) */
    double value;              /* last value evaluated */
    int64_t since_s;           /* when the state (ok or firing) began */
    int64_t alert_id;          /* the open alert while firing; 0 otherwise */
    int64_t last_notified_s;   /* last notice sent for this rule and subject; 0: never */
    int64_t interval_start_s;  /* start of the cap's current interval; 0: none yet */
    int64_t sent_in_interval;  /* notices sent in that interval */
    int64_t updated_s;
};

/* An alert: one stretch of time during which a rule's condition held for a subject. */
struct sl_alert {
    int64_t id;
    char rule_id[SL_STORE_ID_MAX];
    char rule_name[SL_STORE_NAME_MAX];
    char tenant_id[SL_STORE_ID_MAX]; /* the tenant concerned; "" for system alerts */
    char subject[SL_STORE_SUBJECT_MAX];
    char kind[32];
    bool is_firing;                  /* false once resolved */
    bool is_notified;                /* a firing notice was queued (cooldown/cap may hold
                                        it back) */
    double value;                    /* when it fired */
    double threshold;
    int64_t window_s;
    char message[SL_STORE_MESSAGE_MAX];
    int64_t fired_s;
    int64_t resolved_s;              /* 0 while firing */
    double resolved_value;
};

/* What sl_store_alert_apply does besides storing the state. */
enum sl_alert_op {
    SL_ALERT_KEEP = 0, /* only the state row changes */
    SL_ALERT_OPEN,     /* insert `alert` as a new firing alert; state.alert_id gets its id */
    SL_ALERT_NOTIFY,   /* mark the open alert state.alert_id notified (a late notice) */
    SL_ALERT_RESOLVE,  /* resolve the alert state.alert_id at now_s with resolved_value; the
                          stored state keeps no alert id */
};

struct sl_alert_change {
    struct sl_alert_state state; /* the row to store (upserted) */
    enum sl_alert_op op;
    struct sl_alert alert;       /* OPEN: the row to insert (id, fired_s ignored) */
    double resolved_value;       /* RESOLVE */
    const char *deliver_event;   /* "firing" or "resolved" queues a delivery to channel_id;
                                    NULL queues none */
    const char *channel_id;
    int64_t deadline_s;          /* the delivery's deadline */
    int64_t now_s;
    /* outputs */
    int64_t alert_id;            /* the alert concerned (new for OPEN) */
    int64_t delivery_id;         /* the queued delivery; 0 for none */
};

/*
 * Stores one decision in one transaction: the alert insert or update op asks for, the
 * queued delivery, and the state row. On failure nothing is stored (change->state is
 * unchanged). SL_EBUSY when another process held the file locked past the busy timeout.
 */
int sl_store_alert_apply(struct sl_store *st, struct sl_alert_change *change,
                         struct sl_err *err);

/* Returns a new array (sl_free) of the states of one rule, ordered by subject. */
int sl_store_alert_state_list(struct sl_store *st, const char *rule_id,
                              struct sl_alert_state **out, size_t *n_out, struct sl_err *err);

/* Reads one alert. SL_ENOTFOUND when there is none with that id. */
int sl_store_alert_get(struct sl_store *st, int64_t id, struct sl_alert *out,
                       struct sl_err *err);

/* Which alerts sl_store_alert_list returns. NULL/"" fields do not filter. */
struct sl_alert_filter {
    bool is_open_only;     /* only firing alerts */
    int64_t since_s;       /* and alerts resolved at or after this (0: any) */
    const char *rule_id;
    const char *tenant_id; /* a tenant id (not a name) */
    size_t limit;          /* 0: 100 */
};

/* Returns a new array (sl_free) of alerts, newest first. */
int sl_store_alert_list(struct sl_store *st, const struct sl_alert_filter *f,
                        struct sl_alert **out, size_t *n_out, struct sl_err *err);

/* ---- deliveries ---- */

struct sl_delivery {
    int64_t id;
    int64_t alert_id;                     /* 0 for a test notification */
    char channel_id[SL_STORE_ID_MAX];
    char event[SL_STORE_EVENT_MAX];       /* firing, resolved, test */
    char status[SL_STORE_EVENT_MAX];      /* pending, sent, failed */
    int64_t attempts;
    int64_t next_attempt_s;
    int64_t deadline_s;
    int64_t http_status;                  /* of the last attempt; 0: none */
    char error[SL_STORE_DELIVERY_ERROR_MAX]; /* of the last attempt; "" if none */
    int64_t created_s;
    int64_t updated_s;
};

/* One attempt of a delivery, as the log keeps it. */
struct sl_delivery_attempt {
    int64_t id;
    int64_t delivery_id;
    int64_t attempt;                      /* 1, 2, ... */
    int64_t started_s;
    int64_t duration_ms;
    char status[SL_STORE_EVENT_MAX];      /* sent, retry, failed */
    int64_t http_status;                  /* 0 when there was no HTTP answer */
    char error[SL_STORE_DELIVERY_ERROR_MAX];
};

/* Queues a delivery outside an alert (alert_id 0: `sluice channel test`). *id_out gets
 * its id. */
int sl_store_delivery_add(struct sl_store *st, int64_t alert_id, const char *channel_id,
                          const char *event, int64_t deadline_s, int64_t now_s,
                          int64_t *id_out, struct sl_err *err);

int sl_store_delivery_get(struct sl_store *st, int64_t id, struct sl_delivery *out,
                          struct sl_err *err);

/* Returns a new array (sl_free) of at most limit pending deliveries due at now_s, the
 * longest waiting first. */
int sl_store_delivery_due(struct sl_store *st, int64_t now_s, size_t limit,
                          struct sl_delivery **out, size_t *n_out, struct sl_err *err);

/*
 * Logs attempt a of delivery a->delivery_id and updates the delivery in one transaction:
 * status "sent" or "failed" ends it, "retry" keeps it pending until next_attempt_s.
 */
int sl_store_delivery_record(struct sl_store *st, const struct sl_delivery_attempt *a,
                             int64_t next_attempt_s, int64_t now_s, struct sl_err *err);

/* Returns a new array (sl_free) of deliveries, newest first: of one alert when alert_id
 * > 0, of one channel when channel_id is non-NULL, else all; at most limit (0: 100). */
int sl_store_delivery_list(struct sl_store *st, int64_t alert_id, const char *channel_id,
                           size_t limit, struct sl_delivery **out, size_t *n_out,
                           struct sl_err *err);

/* Returns a new array (sl_free) of one delivery's attempts, oldest first. */
int sl_store_delivery_attempts(struct sl_store *st, int64_t delivery_id,
                               struct sl_delivery_attempt **out, size_t *n_out,
                               struct sl_err *err);

/* A channel's signing secret into out (cap bytes); "" when it has none. Secrets are not in
 * struct sl_channel so listings never carry them. */
int sl_store_channel_secret(struct sl_store *st, const char *id, char *out, size_t cap,
                            struct sl_err *err);

/* Reads one rule. SL_ENOTFOUND when there is none. */
int sl_store_rule_get(struct sl_store *st, const char *id, struct sl_rule *out,
                      struct sl_err *err);

#endif

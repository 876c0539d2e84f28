/*
 * The alert lifecycle as a pure function of the stored state, one evaluation and the
 * time: fire once when a condition starts, hold quietly while it lasts, announce its end.
 * Cooldown and the per-interval cap decide whether a firing is announced now or later.
 * Storing the result and sending are other files' jobs.
 */
#include "notify_int.h"

#include <string.h>

const char *notify_action_name(enum notify_action a)
{
    static const char *const names[] = {
        [NOTIFY_NONE] = "none",         [NOTIFY_FIRE] = "fire",
        [NOTIFY_FIRE_SILENT] = "fire_silent", [NOTIFY_LATE] = "late",
        [NOTIFY_RESOLVE] = "resolve",   [NOTIFY_RESOLVE_SILENT] = "resolve_silent",
    };

    return (unsigned)a < sizeof(names) / sizeof(names[0]) ? names[a] : "unknown";
}

/* Starts a new cap interval when the current one is over. */
static void roll_interval(struct sl_alert_state *s, const struct notify_policy *p,
                          int64_t now_s)
{
    if (s->interval_start_s == 0 || now_s - s->interval_start_s >= p->interval_s) {
        s->interval_start_s = now_s;
        s->sent_in_interval = 0;
    }
}

static bool may_announce(const struct sl_alert_state *s, const struct notify_policy *p,
                         int64_t now_s)
{
    bool is_cooled = s->last_notified_s == 0 || now_s - s->last_notified_s >= p->cooldown_s;

    return is_cooled && s->sent_in_interval < p->cap;
}

static void count_notice(struct sl_alert_state *s, int64_t now_s)
{
    s->last_notified_s = now_s;
    s->sent_in_interval++;
}

enum notify_action notify_lifecycle_step(const struct sl_alert_state *prev, bool condition,
                                         double value, const struct notify_policy *policy,
                                         int64_t now_s, struct sl_alert_state *next)
{
    *next = *prev;
    next->value = value;
    roll_interval(next, policy, now_s);
    if (!prev->is_firing && condition) {
        next->is_firing = true;
        next->since_s = now_s;
        next->alert_id = 0;
        next->is_notified = may_announce(next, policy, now_s);
        if (!next->is_notified) {
            return NOTIFY_FIRE_SILENT;
        }
        count_notice(next, now_s);
        return NOTIFY_FIRE;
    }
    if (prev->is_firing && condition) {
        if (prev->is_notified || !may_announce(next, policy, now_s)) {
            return NOTIFY_NONE;
        }
        next->is_notified = true;
        count_notice(next, now_s);
        return NOTIFY_LATE;
    }
    if (prev->is_firing && !condition) {
        next->is_firing = false;
        next->since_s = now_s;
        next->alert_id = 0;
        next->is_notified = false;
        if (!prev->is_notified) {
            return NOTIFY_RESOLVE_SILENT;
        }
        /* The end of an announced alert is always announced: it counts against the cap but
         * is never held back by it. */
        count_notice(next, now_s);
        return NOTIFY_RESOLVE;
    }
    if (prev->since_s == 0) {
        next->since_s = now_s;
    }
    return NOTIFY_NONE;
}

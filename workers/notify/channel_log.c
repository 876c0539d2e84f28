/*
 * The log channel: the notification as one warn line of sluice's own log (component
 * "notify"), for operators who collect logs anyway. It cannot fail.
 */
#include "notify_int.h"

#include <string.h>

#include "alloc.h"
#include "log.h"

int notify_log_send(const struct notify_msg *m, struct notify_send_result *r)
{
    const struct sl_log_ctx ctx = {.tenant_id = m->tenant_id[0] != '\0' ? m->tenant_id : NULL};
    char *body = notify_json_text_take(notify_msg_json(m));

    memset(r, 0, sizeof(*r));
    sl_log_warn_ctx("notify", &ctx, "alert %s: %s %s", m->event, m->title,
                    body != NULL ? body : "");
    sl_free(body);
    return 0;
}

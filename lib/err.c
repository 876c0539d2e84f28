/* Error records: fixed buffers, never allocate. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void sl_err_clear(struct sl_err *err)
{
    if (err != NULL) {
        err->code = 0;
        err->remote_code = 0;
        err->msg[0] = '\0';
    }
}

int sl_err_set(struct sl_err *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL) {
        return code;
    }
    err->code = code;
    err->remote_code = 0;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

int sl_err_wrap(struct sl_err *err, const char *fmt, ...)
{
    char prefix[SL_ERR_MSG_MAX];
    char old[SL_ERR_MSG_MAX];
    va_list ap;

    if (err == NULL) {
        return SL_EINVAL;
    }
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof(old));
    /* Truncation keeps the start of the message, which names what failed. */
    if (snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old) >= (int)sizeof(err->msg)) {
        err->msg[sizeof(err->msg) - 1] = '\0';
    }
    return err->code;
}

const char *sl_strerror(int code)
{
    switch (code) {
    case SL_OK: return "ok";
    case SL_ENOMEM: return "out of memory";
    case SL_EINVAL: return "invalid argument";
    case SL_EIO: return "I/O error";
    case SL_ENOTFOUND: return "not found";
    case SL_EEXIST: return "already exists";
    case SL_ETIMEDOUT: return "timed out";
    case SL_ESERVER: return "server error";
    case SL_ENET: return "network error";
    case SL_ESCHEMA: return "schema error";
    case SL_EDENIED: return "denied";
    case SL_EBUSY: return "busy";
    case SL_ESTATE: return "invalid state";
    case SL_ECANCELED: return "cancelled";
    default: return "unknown error";
    }
}

/*
 * Error codes and the human-readable error record shared by every module.
 *
 * A function that can fail returns int: 0 on success, a negative SL_E* code on failure.
 * When a person will read the failure, the function also fills an optional struct sl_err
 * whose message buffer is fixed so the error path never allocates.
 */
#ifndef SLUICE_LIB_ERR_H
#define SLUICE_LIB_ERR_H

#include <stddef.h>

enum {
    SL_OK = 0,
    SL_ENOMEM = -1,     /* an allocation failed */
    SL_EINVAL = -2,     /* bad input or bad value */
    SL_EIO = -3,        /* local file or database I/O */
    SL_ENOTFOUND = -4,  /* the named thing does not exist */
    SL_EEXIST = -5,     /* the thing already exists */
    SL_ETIMEDOUT = -6,  /* a deadline passed */
    SL_ESERVER = -7,    /* a remote server answered with an error (see remote_code) */
    SL_ENET = -8,       /* could not reach a remote server */
    SL_ESCHEMA = -9,    /* database schema is newer or broken */
    SL_EDENIED = -10,   /* authentication or authorization refused */
    SL_EBUSY = -11,     /* resource busy or locked; try again */
    SL_ESTATE = -12,    /* operation not valid in the current state */
    SL_ECANCELED = -13, /* cancelled before completion */
};

#define SL_ERR_MSG_MAX 512

struct sl_err {
    int code;           /* SL_E* code of the failure */
    long remote_code;   /* remote error code (e.g. ClickHouse "Code: N"), 0 if none */
    char msg[SL_ERR_MSG_MAX];
};

/* Clears err (may be NULL). */
void sl_err_clear(struct sl_err *err);

/*
 * Records code and a printf-style message in err (may be NULL) and returns code, so a
 * caller can write `return sl_err_set(err, SL_EINVAL, "...")`. Never allocates.
 */
int sl_err_set(struct sl_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Prefixes err->msg with a printf-style context ("while X: <old message>"); keeps code.
 * Returns err->code (or SL_EINVAL when err is NULL).
 */
int sl_err_wrap(struct sl_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Short static description of a code. Never fails. */
const char *sl_strerror(int code);

#endif

/*
 * Session assignment at the edge: an event that carries an anonymous_id but no session_id
 * joins the visitor's current session, or starts a new one when the visitor was idle longer
 * than the inactivity window (30 minutes by default), per (tenant, anonymous_id).
 *
 * The state is this process's memory only: with several edge hosts, or after a restart, a
 * visitor whose requests reach another edge gets another session id. SDKs that need exact
 * sessions across edges send their own session_id. The table is bounded (4-way set
 * associative; the least recently active visitor of a full set is forgotten, and starts a
 * new session when seen again). Any thread.
 */
#ifndef SLUICE_INGEST_SESSION_H
#define SLUICE_INGEST_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "err.h"

#define INGEST_SESSION_ID_LEN 36

struct ingest_session;

struct ingest_session_settings {
    int64_t idle_min;      /* SLUICE_SESSION_IDLE_MIN */
    int64_t table_entries; /* SLUICE_SESSION_TABLE_ENTRIES */
};

extern const struct sl_cfg_opt ingest_session_cfg_opts[];
extern const size_t ingest_session_cfg_n_opts;

/* Creates an empty table. *out is NULL on failure (SL_ENOMEM). */
int ingest_session_create(struct ingest_session **out, const struct ingest_session_settings *s);

/* Frees the table. Accepts NULL. */
void ingest_session_destroy(struct ingest_session *s);

/*
 * Writes the session id for an event of (tenant_id, anonymous_id) at ts_ms into out (a
 * version 4 UUID, NUL-terminated): the visitor's current session when ts_ms is within the
 * window of its last activity (either side, so late events join too), else a new one.
 * Fails only with SL_EIO when the random generator fails.
 */
int ingest_session_assign(struct ingest_session *s, const char *tenant_id,
                          const char *anonymous_id, size_t anonymous_len, int64_t ts_ms,
                          char out[INGEST_SESSION_ID_LEN + 1]);

#endif

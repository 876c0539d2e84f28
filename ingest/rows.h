/*
 * Rows of the events table: turns one normalized event (the JSON the edge puts on Kafka or
 * in the spool, see ingest/event.h) into one RowBinary row for
 * `INSERT INTO db.events (ingest_rows_columns()) FORMAT RowBinary`. The table itself, and
 * why its columns are what they are, is in ingest/schema.c and ingest/SCHEMA.md.
 *
 * Enrichment columns are filled by a callback the loader passes (ingest_rows_append_enriched),
 * which asks the enrichment library (workers/enrichment/enrich.h) when the tenant's tier has
 * enrichment on. The loader decides what to do with a message that cannot load (dead-letter
 * topic), batches rows and inserts them; this module does no I/O, keeps no state and logs
 * nothing.
 * Any thread may call; calls share nothing.
 */
#ifndef SLUICE_INGEST_ROWS_H
#define SLUICE_INGEST_ROWS_H

#include <stddef.h>
#include <stdint.h>

#include "ch.h"
#include "enrich.h"
#include "err.h"

/* Longest SQL ingest_rows_insert_sql writes for any database name the settings accept,
 * terminator included (names are plain identifiers well under 200 bytes). */
#define INGEST_ROWS_INSERT_SQL_MAX 1024

/*
 * The column list of the INSERT, in the order ingest_rows_append writes a row's values,
 * comma separated ("id, tenant_id, type, ..."). A static string; never fails.
 */
const char *ingest_rows_columns(void);

/*
 * Writes "INSERT INTO `database`.events (columns) FORMAT RowBinary" into out (cap bytes,
 * NUL-terminated), the database quoted as an identifier. database is borrowed. Fails with
 * SL_EINVAL when database is NULL or empty or the text does not fit in cap bytes
 * (INGEST_ROWS_INSERT_SQL_MAX always fits a plain name); out is then "" when cap > 0.
 */
int ingest_rows_insert_sql(const char *database, char *out, size_t cap);

/*
 * Parses one normalized event (json, len bytes, borrowed, need not be NUL-terminated) and
 * appends its row to buf. version is the row's ReplacingMergeTree version (the loader passes
 * its insert time in unix ms; must be >= 0): of two rows of one event the higher version is
 * the one kept. Enrichment columns are written empty or zero with enrichment_version 0.
 *
 * Required: id (a UUID in 8-4-4-4-12 form), tenant_id and type (non-empty strings) and ts
 * (an RFC 3339 time within 1970-01-01..2105-12-31, the range of a ClickHouse DateTime).
 * Other fields may be absent or null; when present they must have the edge's types.
 * Unknown fields are ignored; schema_version, when present, must be 1.
 *
 * Returns 0, or:
 *   SL_EINVAL  the message can never load (not JSON, not an object, a missing or mistyped
 *              field, a bad UUID or time, or a row larger than an empty buf may hold);
 *              err->msg names the field and why ("ts: not an RFC 3339 time: '...'").
 *              The loader sends such a message to the dead-letter topic.
 *   SL_EBUSY   buf (not empty) has no room left for this row: insert the batch, empty buf
 *              and append the same message again.
 *   SL_ENOMEM  memory ran out (also when jansson ran out while parsing); retry later.
 * On any failure buf is unchanged. err may be NULL.
 */
int ingest_rows_append(struct sl_ch_buf *buf, const char *json, size_t len, int64_t version,
                       struct sl_err *err);

/*
 * Fills the enrichment columns of one row from the event's tenant_id, context.ip and
 * context.user_agent (borrowed, NUL-terminated; "" when absent) and context.client_hints
 * (borrowed: an object, or NULL when absent): returns true with *out
 * filled (every column, and enrichment_version from out->enrichment_version_id), or false
 * to leave the columns empty with enrichment_version 0 (the tenant's tier has enrichment
 * off). Called once per message that passed every check.
 */
typedef bool (*ingest_rows_enrich_cb)(void *user, const char *tenant_id, const char *ip,
                                      const char *user_agent, const json_t *client_hints,
                                      struct enrich_result *out);

/*
 * As ingest_rows_append, with the enrichment columns from enrich (may be NULL: none) called
 * with user. Fails exactly as ingest_rows_append.
 */
int ingest_rows_append_enriched(struct sl_ch_buf *buf, const char *json, size_t len,
                                int64_t version, ingest_rows_enrich_cb enrich, void *user,
                                struct sl_err *err);

#endif

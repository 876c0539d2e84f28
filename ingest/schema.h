/*
 * sluice's ClickHouse schema: the database, the raw events table, the tables sessions and
 * rollups are aggregated into, the materialized views that feed them, and internal_metrics.
 * ingest_schema_apply creates what is missing and adds missing columns to tables an older
 * sluice created, so every process may run it at start. Tables, columns, and why they are
 * built the way they are (duplicates, 18.16, feature detection), are documented in
 * ingest/SCHEMA.md; the rows of the events table are written by ingest/rows.c.
 *
 * Runs SQL through the caller's client, so it blocks the calling thread (see lib/ch.h) and
 * logs nothing; the caller decides what a failure means (refuse to start).
 */
#ifndef SLUICE_INGEST_SCHEMA_H
#define SLUICE_INGEST_SCHEMA_H

#include "ch.h"
#include "err.h"

/* Servers from this major version on get the modern DDL (see ingest_schema_apply_mode). */
#define INGEST_SCHEMA_MODERN_MIN_MAJOR 20

/* Which DDL ingest_schema_apply_mode writes. */
enum ingest_schema_mode {
    INGEST_SCHEMA_DETECT,   /* modern when the server's major version is at least
                             * INGEST_SCHEMA_MODERN_MIN_MAJOR, else portable */
    INGEST_SCHEMA_PORTABLE, /* what ClickHouse 18.16 accepts, on any server (for a cluster of
                             * mixed versions, or one that may be downgraded) */
    INGEST_SCHEMA_MODERN,   /* the portable DDL with LowCardinality(String) for the
                             * low-cardinality columns; the server must support it */
};

/*
 * Creates the database and every table and materialized view that is missing, then adds
 * the columns an existing table lacks (checked in system.columns: 18.16 has no ADD COLUMN IF
 * NOT EXISTS). Idempotent, and safe to run from several processes at once: losing a race to
 * create an object or add a column counts as success once the object is there. Existing
 * tables keep their column types; one that exists with another engine fails the call.
 *
 * ch (borrowed) must not name a missing database in its settings: ClickHouse refuses every
 * request naming one, CREATE DATABASE included (Code 81). Give it a client created with no
 * database, or with this one once it exists. Every statement names `database` (borrowed,
 * quoted as an identifier) explicitly.
 *
 * Fails with SL_EINVAL (empty database name), SL_ESCHEMA (a table exists with the wrong
 * engine), or as sl_ch_exec/sl_ch_query (SL_ESERVER with the server's code, SL_ENET,
 * SL_ETIMEDOUT, SL_ENOMEM); err says which statement failed. What was created before a
 * failure stays; running the call again completes it.
 */
int ingest_schema_apply(struct sl_ch *ch, const char *database, struct sl_err *err);

/* As ingest_schema_apply (which is mode INGEST_SCHEMA_DETECT) with the DDL chosen by mode. */
int ingest_schema_apply_mode(struct sl_ch *ch, const char *database, enum ingest_schema_mode mode,
                             struct sl_err *err);

#endif

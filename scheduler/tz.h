/*
 * Time zones for local-time schedules: a zone's UTC offset at any instant, read from the
 * system's TZif files (RFC 8536, /usr/share/zoneinfo) by our own small parser, so there is
 * no process-wide TZ to set and any thread may ask. Transitions after the file's last
 * explicit one (2037 in "fat" files, sooner in "slim" ones) follow the POSIX TZ rule in
 * the file's footer ("CET-1CEST,M3.5.0,M10.5.0/3"). Leap-second ("right/") zones are
 * read as if they had none.
 *
 * Turning local times into instants (gaps and repeats at DST changes) is the cron
 * module's; this one only answers "what is the offset at this instant".
 */
#ifndef SLUICE_SCHEDULER_TZ_H
#define SLUICE_SCHEDULER_TZ_H

#include <stdint.h>

#include "err.h"

/* Longest zone name accepted ("America/Argentina/ComodRivadavia" is 32). */
#define SCHED_TZ_NAME_MAX 64

struct sched_tz;

/*
 * Loads zone `name` ("Europe/Berlin") from zoneinfo_dir/name; "UTC" needs no file.
 * Names are checked first (letters, digits, '_', '-', '+', '/'; no "..", no leading '/').
 * Returns 0 and a new zone in *out (free with sched_tz_destroy), or SL_EINVAL naming the
 * zone when the name is malformed, unknown or its file cannot be read as TZif; *out is
 * NULL then. Any thread; reads the file once.
 */
int sched_tz_create(const char *zoneinfo_dir, const char *name, struct sched_tz **out,
                    struct sl_err *err);

/*
 * Builds a zone from a POSIX TZ rule alone ("EST5EDT,M3.2.0,M11.1.0"), as a TZif footer
 * holds it. For tests of the rule code and for zones given as rules. Same results as
 * sched_tz_create.
 */
int sched_tz_create_rule(const char *rule, struct sched_tz **out, struct sl_err *err);

/* Frees a zone. Accepts NULL. */
void sched_tz_destroy(struct sched_tz *tz);

/* The zone's name as given. Borrowed from tz. */
const char *sched_tz_name(const struct sched_tz *tz);

/*
 * Seconds east of UTC in effect at utc_s (CET: 3600, EDT: -14400). A NULL tz is UTC.
 * Pure, never fails, any thread.
 */
int32_t sched_tz_offset(const struct sched_tz *tz, int64_t utc_s);

#endif

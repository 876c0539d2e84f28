/*
 * Test support: writes small MaxMind DB files (format 2.0, 24-bit records) so tests have an
 * ASN database and databases with chosen answers; MaxMind's public test files have no ASN
 * one. Only what the tests need: networks without overlaps, records of string and unsigned
 * fields.
 */
#ifndef SLUICE_TESTS_UNIT_ENRICHMENT_MMDB_WRITE_H
#define SLUICE_TESTS_UNIT_ENRICHMENT_MMDB_WRITE_H

#include <stddef.h>
#include <stdint.h>

/* One network and its record: {"autonomous_system_number": asn,
 * "autonomous_system_organization": org} when city is NULL, else
 * {"country": {"iso_code": country}, "city": {"names": {"en": city}}}. */
struct test_mmdb_net {
    const char *cidr;     /* "1.2.3.0/24" or "2001:db8::/32" */
    uint32_t asn;
    const char *org;
    const char *country;
    const char *city;
};

/*
 * Writes the database to path (ip_version 4 or 6; IPv4 networks in an IPv6 database sit
 * under ::/96 as libmaxminddb expects). Aborts the test on any problem.
 */
void test_mmdb_write(const char *path, const char *database_type, int ip_version,
                     uint64_t build_epoch, const struct test_mmdb_net *nets, size_t n);

#endif

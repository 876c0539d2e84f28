/*
 * Tests workers/enrichment/geo.c and ip.c: answers for MaxMind's test databases compared
 * with what mmdblookup says, IPv6 and IPv4-mapped addresses, the private, loopback,
 * link-local and reserved ranges, the two corrupt test files and a missing one, an ASN
 * database, reloads (changed, broken, unchanged files; the interval), and hot reload while
 * threads look up without pause: no lookup may fail during a swap and each answer must come
 * whole from one database.
 *
 * MaxMind's test databases are in ../shared/testdata/geoip next to the repository (or
 * $SLUICE_TEST_GEOIP_DIR).
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "geo.h"
#include "mmdb_write.h"
#include "test.h"

static char *geoip_file(const char *name)
{
    const char *dir = getenv("SLUICE_TEST_GEOIP_DIR");
    char *shared, *path;

    if (dir != NULL && dir[0] != '\0') {
        return test_path(dir, name);
    }
    dir = getenv("SLUICE_SOURCE_DIR");
    if (dir == NULL || dir[0] == '\0') {
        TEST_FAIL("SLUICE_SOURCE_DIR is not set (run the test through ctest)");
    }
    shared = test_path(dir, "../shared/testdata/geoip");
    path = test_path(shared, name);
    free(shared);
    return path;
}

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    char buf[8192];
    size_t n;

    ASSERT_TRUE(in != NULL && out != NULL);
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
        ASSERT_EQ_INT(fwrite(buf, 1, n, out), n);
    }
    fclose(in);
    ASSERT_EQ_INT(fclose(out), 0);
}

/* Puts a copy of from at to by rename, as geoipupdate does. */
static void replace_file(const char *from, const char *to)
{
    char *tmp = NULL;

    ASSERT_TRUE(asprintf(&tmp, "%s.new", to) > 0);
    copy_file(from, tmp);
    ASSERT_EQ_INT(rename(tmp, to), 0);
    free(tmp);
}

static struct enrich_geo *open_geo(const char *city, const char *asn)
{
    struct enrich_geo *geo = NULL;

    ASSERT_OK(enrich_geo_open(city, asn, 0, 1000, &geo), NULL);
    ASSERT_TRUE(geo != NULL);
    return geo;
}

/* ---- mmdblookup -------------------------------------------------------------------- */

/* Full path of mmdblookup in $PATH, or NULL (caller frees). */
static char *find_mmdblookup(void)
{
    const char *path = getenv("PATH");
    char *copy, *save = NULL, *found = NULL;

    if (path == NULL) {
        return NULL;
    }
    copy = strdup(path);
    for (char *dir = strtok_r(copy, ":", &save); dir != NULL && found == NULL;
         dir = strtok_r(NULL, ":", &save)) {
        char *p = test_path(dir, "mmdblookup");

        if (access(p, X_OK) == 0) {
            found = p;
        }
        else {
            free(p);
        }
    }
    free(copy);
    return found;
}

/* The value mmdblookup prints for one data path (strings without quotes, numbers as
 * printed), or NULL when it has none (caller frees). */
static char *mmdblookup(const char *bin, const char *db, const char *ip, const char *p1,
                        const char *p2, const char *p3, const char *p4)
{
    char *argv[] = {(char *)bin, "--file", (char *)db, "--ip", (char *)ip, (char *)p1,
                    (char *)p2, (char *)p3, (char *)p4, NULL};
    struct test_proc proc;
    char *v = NULL, *s, *e;

    test_proc_run(&proc, argv, NULL, NULL);
    s = proc.out;
    while (*s == ' ' || *s == '\n') {
        s++;
    }
    if (proc.status == 0 && strstr(s, " <") != NULL && strstr(proc.err, "error") == NULL) {
        if (*s == '"') {
            e = strrchr(s, '"');
            v = strndup(s + 1, (size_t)(e - s - 1));
        }
        else {
            v = strndup(s, strcspn(s, " "));
        }
    }
    test_proc_fini(&proc);
    return v;
}

static void expect_same_string(const char *what, const char *ip, const char *mine,
                               const char *theirs)
{
    if (strcmp(mine, theirs != NULL ? theirs : "") != 0) {
        TEST_FAIL("%s of %s: ours \"%s\", mmdblookup \"%s\"", what, ip, mine,
                  theirs != NULL ? theirs : "(none)");
    }
}

static void compare_with_mmdblookup(const char *bin, const char *db, const char *ip)
{
    struct enrich_geo *geo = open_geo(db, NULL);
    struct enrich_geo_info gi;
    char *v;

    enrich_geo_lookup(geo, ip, &gi);
    v = mmdblookup(bin, db, ip, "country", "iso_code", NULL, NULL);
    expect_same_string("country.iso_code", ip, gi.country_code, v);
    ASSERT_EQ_INT(gi.status, v != NULL ? ENRICH_GEO_OK : gi.status);
    free(v);
    v = mmdblookup(bin, db, ip, "country", "names", "en", NULL);
    expect_same_string("country.names.en", ip, gi.country, v);
    free(v);
    v = mmdblookup(bin, db, ip, "subdivisions", "0", "names", "en");
    expect_same_string("subdivisions.0.names.en", ip, gi.region, v);
    free(v);
    v = mmdblookup(bin, db, ip, "city", "names", "en", NULL);
    expect_same_string("city.names.en", ip, gi.city, v);
    free(v);
    v = mmdblookup(bin, db, ip, "postal", "code", NULL, NULL);
    expect_same_string("postal.code", ip, gi.postal, v);
    free(v);
    v = mmdblookup(bin, db, ip, "location", "time_zone", NULL, NULL);
    expect_same_string("location.time_zone", ip, gi.timezone, v);
    free(v);
    v = mmdblookup(bin, db, ip, "location", "latitude", NULL, NULL);
    ASSERT_EQ_INT(gi.has_location, v != NULL);
    if (v != NULL) {
        ASSERT_TRUE(fabs(gi.latitude - strtod(v, NULL)) < 1e-6);
    }
    free(v);
    v = mmdblookup(bin, db, ip, "location", "longitude", NULL, NULL);
    if (v != NULL) {
        ASSERT_TRUE(fabs(gi.longitude - strtod(v, NULL)) < 1e-6);
    }
    free(v);
    v = mmdblookup(bin, db, ip, "location", "accuracy_radius", NULL, NULL);
    ASSERT_EQ_INT(gi.accuracy_radius_km, v != NULL ? atoi(v) : 0);
    free(v);
    enrich_geo_close(geo);
}

static void test_geo_matches_mmdblookup(void)
{
    static const char *const dbs[] = {"GeoIP2-City-Test.mmdb", "GeoLite2-City-Test.mmdb",
                                      "GeoIP2-Country-Test.mmdb"};
    static const char *const ips[] = {
        "81.2.69.142", "81.2.69.160", "216.160.83.56", "89.160.20.112", "89.160.20.128",
        "175.16.199.0", "67.43.156.0", "2.125.160.216", "202.196.224.0", "2001:218::1",
        "2a02:cf40::", "2001:480::1", "2c0f:ff40::1", "1.2.3.4", "149.101.100.0",
    };
    char *bin = find_mmdblookup();
    size_t n = 0;

    if (bin == NULL) {
        fprintf(stderr, "mmdblookup is not installed (Debian mmdb-bin): only the fixed answers "
                "of the other cases check the databases\n");
        return;
    }
    for (size_t d = 0; d < sizeof(dbs) / sizeof(dbs[0]); d++) {
        char *db = geoip_file(dbs[d]);

        for (size_t i = 0; i < sizeof(ips) / sizeof(ips[0]); i++) {
            compare_with_mmdblookup(bin, db, ips[i]);
            n++;
        }
        free(db);
    }
    fprintf(stderr, "%zu lookups agree with mmdblookup\n", n);
    free(bin);
}

static void test_geo_london_and_ipv6(void)
{
    char *db = geoip_file("GeoIP2-City-Test.mmdb");
    struct enrich_geo *geo = open_geo(db, NULL);
    struct enrich_geo_info gi;

    enrich_geo_lookup(geo, "81.2.69.142", &gi);
    ASSERT_EQ_STR(enrich_geo_status_name(gi.status), "ok");
    ASSERT_EQ_STR(gi.country_code, "GB");
    ASSERT_EQ_STR(gi.country, "United Kingdom");
    ASSERT_EQ_STR(gi.region, "England");
    ASSERT_EQ_STR(gi.city, "London");
    ASSERT_EQ_STR(gi.timezone, "Europe/London");
    ASSERT_TRUE(gi.has_location && fabs(gi.latitude - 51.5142) < 1e-9 &&
                fabs(gi.longitude + 0.0931) < 1e-9);
    ASSERT_EQ_INT(gi.accuracy_radius_km, 10);
    ASSERT_TRUE(gi.city_build_epoch > 0);
    ASSERT_EQ_INT(gi.asn, 0);

    /* The same address IPv4-mapped, and with spaces around it. */
    enrich_geo_lookup(geo, " ::ffff:81.2.69.142 ", &gi);
    ASSERT_EQ_STR(gi.city, "London");

    enrich_geo_lookup(geo, "216.160.83.56", &gi);
    ASSERT_EQ_STR(gi.city, "Milton");
    ASSERT_EQ_STR(gi.postal, "98354");
    ASSERT_EQ_STR(gi.region, "Washington");

    /* UTF-8 names come through whole. */
    enrich_geo_lookup(geo, "89.160.20.112", &gi);
    ASSERT_EQ_STR(gi.city, "Link\xc3\xb6ping");

    enrich_geo_lookup(geo, "2001:218::1", &gi);
    ASSERT_EQ_INT(gi.status, ENRICH_GEO_OK);
    ASSERT_EQ_STR(gi.country_code, "JP");
    ASSERT_EQ_STR(gi.timezone, "Asia/Tokyo");
    ASSERT_TRUE(gi.has_location);
    enrich_geo_lookup(geo, "[2001:218::1]", &gi);
    ASSERT_EQ_STR(gi.country_code, "JP");

    enrich_geo_lookup(geo, "2001:480::1", &gi);
    ASSERT_EQ_STR(enrich_geo_status_name(gi.status), "not_found");
    ASSERT_EQ_STR(gi.country_code, "");
    enrich_geo_lookup(geo, "1.2.3.4", &gi);
    ASSERT_EQ_INT(gi.status, ENRICH_GEO_NOT_FOUND);
    enrich_geo_close(geo);
    free(db);
}

static void test_geo_special_ranges_are_not_looked_up(void)
{
    static const struct {
        const char *ip;
        const char *status;
    } cases[] = {
        {"10.1.2.3", "private"},         {"172.16.0.1", "private"},
        {"172.31.255.255", "private"},   {"192.168.1.1", "private"},
        {"100.64.0.1", "private"},       {"100.127.255.254", "private"},
        {"fc00::1", "private"},          {"fd12:3456::7", "private"},
        {"::ffff:10.0.0.1", "private"},  {"127.0.0.1", "loopback"},
        {"127.255.0.9", "loopback"},     {"::1", "loopback"},
        {"169.254.169.254", "link_local"}, {"fe80::1%eth0", "link_local"},
        {"0.0.0.0", "reserved"},         {"192.0.2.1", "reserved"},
        {"198.51.100.7", "reserved"},    {"203.0.113.9", "reserved"},
        {"198.18.0.1", "reserved"},      {"224.0.0.1", "reserved"},
        {"239.255.255.250", "reserved"}, {"240.0.0.1", "reserved"},
        {"255.255.255.255", "reserved"}, {"::", "reserved"},
        {"2001:db8::1", "reserved"},     {"ff02::1", "reserved"},
        {"100::1", "reserved"},          {"fec0::1", "reserved"},
        {"not-an-ip", "invalid_ip"},     {"1.2.3", "invalid_ip"},
        {"1.2.3.4.5", "invalid_ip"},     {"::g", "invalid_ip"},
        {"", "no_ip"},                   {"172.32.0.1", "not_found"},
        {"100.128.0.1", "not_found"},    {"11.0.0.1", "not_found"},
    };
    char *db = geoip_file("GeoIP2-City-Test.mmdb");
    struct enrich_geo *geo = open_geo(db, NULL);
    struct enrich_geo_info gi;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enrich_geo_lookup(geo, cases[i].ip, &gi);
        if (strcmp(enrich_geo_status_name(gi.status), cases[i].status) != 0) {
            TEST_FAIL("%s: status %s, want %s", cases[i].ip, enrich_geo_status_name(gi.status),
                      cases[i].status);
        }
        ASSERT_EQ_STR(gi.country_code, "");
    }
    enrich_geo_lookup(geo, NULL, &gi);
    ASSERT_EQ_STR(enrich_geo_status_name(gi.status), "no_ip");
    enrich_geo_close(geo);
    free(db);
}

static void test_geo_country_database(void)
{
    char *db = geoip_file("GeoIP2-Country-Test.mmdb");
    struct enrich_geo *geo = open_geo(db, NULL);
    struct enrich_geo_info gi;
    struct enrich_geo_db_status st;

    enrich_geo_lookup(geo, "81.2.69.142", &gi);
    ASSERT_EQ_INT(gi.status, ENRICH_GEO_OK);
    ASSERT_EQ_STR(gi.country_code, "GB");
    ASSERT_EQ_STR(gi.city, "");
    ASSERT_TRUE(!gi.has_location);
    enrich_geo_db_status(geo, ENRICH_GEO_DB_CITY, &st);
    ASSERT_EQ_STR(st.type, "GeoIP2-Country");
    ASSERT_TRUE(st.is_loaded && st.error[0] == '\0');
    enrich_geo_close(geo);
    free(db);
}

static void expect_broken(const char *file, const char *why)
{
    char *db = geoip_file(file);
    struct enrich_geo *geo = open_geo(db, NULL);
    struct enrich_geo_db_status st;
    struct enrich_geo_info gi;

    enrich_geo_db_status(geo, ENRICH_GEO_DB_CITY, &st);
    ASSERT_TRUE(st.is_configured);
    ASSERT_TRUE(!st.is_loaded);
    ASSERT_EQ_INT(st.n_failed, 1);
    ASSERT_CONTAINS(st.error, "GeoIP database ");
    ASSERT_CONTAINS(st.error, db);
    ASSERT_CONTAINS(st.error, why);
    fprintf(stderr, "%s: %s\n", file, st.error);
    /* Lookups go on, without the database. */
    enrich_geo_lookup(geo, "81.2.69.142", &gi);
    ASSERT_EQ_STR(enrich_geo_status_name(gi.status), "no_database");
    enrich_geo_lookup(geo, "10.0.0.1", &gi);
    ASSERT_EQ_STR(enrich_geo_status_name(gi.status), "private");
    enrich_geo_close(geo);
    free(db);
}

static void test_geo_corrupt_and_missing_files_are_clear_errors(void)
{
    expect_broken("GeoIP2-City-Test-Invalid-Node-Count.mmdb", "cannot open: The MaxMind DB "
                  "file contains invalid metadata");
    expect_broken("GeoIP2-City-Test-Broken-Double-Format.mmdb", "corrupt data record");
    expect_broken("no-such-database.mmdb", "cannot open: No such file or directory");
}

static void test_geo_asn_database(void)
{
    static const struct test_mmdb_net nets[] = {
        {"81.2.69.0/24", 20712, "Andrews & Arnold Ltd", NULL, NULL},
        {"52.94.0.0/16", 16509, "AMAZON-02", NULL, NULL},
        {"2001:218::/32", 2914, "NTT-COMMUNICATIONS-2914", NULL, NULL},
    };
    char *dir = test_tmpdir();
    char *asn_db = test_path(dir, "asn.mmdb");
    char *city_db = geoip_file("GeoIP2-City-Test.mmdb");
    struct enrich_geo *geo;
    struct enrich_geo_info gi;
    struct enrich_geo_db_status st;

    test_mmdb_write(asn_db, "GeoLite2-ASN", 6, 1700000000, nets, 3);
    geo = open_geo(city_db, asn_db);
    enrich_geo_db_status(geo, ENRICH_GEO_DB_ASN, &st);
    ASSERT_TRUE(st.is_loaded);
    ASSERT_EQ_STR(st.type, "GeoLite2-ASN");
    ASSERT_EQ_INT(st.build_epoch, 1700000000);

    enrich_geo_lookup(geo, "81.2.69.142", &gi);
    ASSERT_EQ_STR(gi.city, "London");
    ASSERT_EQ_INT(gi.asn, 20712);
    ASSERT_EQ_STR(gi.as_org, "Andrews & Arnold Ltd");
    ASSERT_EQ_INT(gi.asn_build_epoch, 1700000000);
    enrich_geo_lookup(geo, "2001:218:1::5", &gi);
    ASSERT_EQ_INT(gi.asn, 2914);
    ASSERT_EQ_STR(gi.country_code, "JP");
    /* Found in the ASN database only: the city answer says so, the ASN is there. */
    enrich_geo_lookup(geo, "52.94.1.2", &gi);
    ASSERT_EQ_STR(enrich_geo_status_name(gi.status), "not_found");
    ASSERT_EQ_INT(gi.asn, 16509);
    enrich_geo_lookup(geo, "8.8.8.8", &gi);
    ASSERT_EQ_INT(gi.asn, 0);
    ASSERT_EQ_STR(gi.as_org, "");
    enrich_geo_close(geo);

    /* An ASN database alone: GeoIP says no_database, the ASN still answers. */
    geo = open_geo(NULL, asn_db);
    enrich_geo_lookup(geo, "52.94.1.2", &gi);
    ASSERT_EQ_STR(enrich_geo_status_name(gi.status), "no_database");
    ASSERT_EQ_INT(gi.asn, 16509);
    enrich_geo_close(geo);

    /* IPv6 in an IPv4-only database is simply not found. */
    test_mmdb_write(asn_db, "Test-ASN-v4", 4, 1700000001, nets, 2);
    geo = open_geo(NULL, asn_db);
    enrich_geo_lookup(geo, "52.94.200.1", &gi);
    ASSERT_EQ_INT(gi.asn, 16509);
    enrich_geo_lookup(geo, "2001:218::1", &gi);
    ASSERT_EQ_INT(gi.asn, 0);
    ASSERT_EQ_INT(enrich_geo_n_errors(geo), 0);
    enrich_geo_close(geo);

    test_rmtree(dir);
    free(city_db);
    free(asn_db);
    free(dir);
}

static void test_geo_reload_swaps_changed_files_only(void)
{
    char *dir = test_tmpdir();
    char *live = test_path(dir, "city.mmdb");
    char *city = geoip_file("GeoIP2-City-Test.mmdb");
    char *country = geoip_file("GeoIP2-Country-Test.mmdb");
    char *broken = geoip_file("GeoIP2-City-Test-Broken-Double-Format.mmdb");
    struct enrich_geo *geo = NULL;
    struct enrich_geo_info gi;
    struct enrich_geo_db_status st;
    struct sl_err err;
    uint64_t city_epoch;

    copy_file(city, live);
    ASSERT_OK(enrich_geo_open(live, NULL, 60, 1000, &geo), NULL);
    enrich_geo_lookup(geo, "81.2.69.142", &gi);
    ASSERT_EQ_STR(gi.city, "London");
    city_epoch = gi.city_build_epoch;

    /* Before the interval has passed nothing is looked at; after it the new file serves. */
    replace_file(country, live);
    sl_err_clear(&err);
    ASSERT_OK(enrich_geo_reload(geo, 1030, false, &err), &err);
    enrich_geo_lookup(geo, "81.2.69.142", &gi);
    ASSERT_EQ_STR(gi.city, "London");
    ASSERT_OK(enrich_geo_reload(geo, 1060, false, &err), &err);
    enrich_geo_lookup(geo, "81.2.69.142", &gi);
    ASSERT_EQ_STR(gi.country_code, "GB");
    ASSERT_EQ_STR(gi.city, "");
    enrich_geo_db_status(geo, ENRICH_GEO_DB_CITY, &st);
    ASSERT_EQ_STR(st.type, "GeoIP2-Country");
    ASSERT_EQ_INT(st.n_reloads, 1);
    ASSERT_EQ_INT(st.loaded_at_s, 1060);

    /* Unchanged: nothing happens. */
    ASSERT_OK(enrich_geo_reload(geo, 2000, true, &err), &err);
    enrich_geo_db_status(geo, ENRICH_GEO_DB_CITY, &st);
    ASSERT_EQ_INT(st.n_reloads, 1);

    /* A corrupt file is refused; the country database keeps serving. */
    replace_file(broken, live);
    ASSERT_EQ_INT(enrich_geo_reload(geo, 2100, true, &err), SL_EINVAL);
    ASSERT_CONTAINS(err.msg, live);
    ASSERT_CONTAINS(err.msg, "corrupt data record");
    ASSERT_CONTAINS(err.msg, "the previous database keeps serving");
    enrich_geo_lookup(geo, "81.2.69.142", &gi);
    ASSERT_EQ_INT(gi.status, ENRICH_GEO_OK);
    ASSERT_EQ_STR(gi.country_code, "GB");
    enrich_geo_db_status(geo, ENRICH_GEO_DB_CITY, &st);
    ASSERT_TRUE(st.is_loaded);
    ASSERT_EQ_STR(st.type, "GeoIP2-Country");
    ASSERT_CONTAINS(st.error, "corrupt data record");
    ASSERT_EQ_INT(st.n_failed, 1);
    /* ... and not tried again until it changes. */
    ASSERT_OK(enrich_geo_reload(geo, 2200, true, &err), &err);
    enrich_geo_db_status(geo, ENRICH_GEO_DB_CITY, &st);
    ASSERT_EQ_INT(st.n_failed, 1);
    ASSERT_CONTAINS(st.error, "corrupt data record");

    /* Removed: still serving, and saying so. */
    ASSERT_EQ_INT(unlink(live), 0);
    ASSERT_EQ_INT(enrich_geo_reload(geo, 2300, true, &err), SL_ENOTFOUND);
    enrich_geo_lookup(geo, "81.2.69.142", &gi);
    ASSERT_EQ_STR(gi.country_code, "GB");

    /* A good file again: it serves and the error is gone. */
    replace_file(city, live);
    ASSERT_OK(enrich_geo_reload(geo, 2400, true, &err), &err);
    enrich_geo_lookup(geo, "81.2.69.142", &gi);
    ASSERT_EQ_STR(gi.city, "London");
    ASSERT_EQ_INT(gi.city_build_epoch, city_epoch);
    enrich_geo_db_status(geo, ENRICH_GEO_DB_CITY, &st);
    ASSERT_EQ_STR(st.error, "");
    ASSERT_EQ_INT(st.n_reloads, 2);
    enrich_geo_close(geo);

    /* A database missing at start shows up once it is there. */
    ASSERT_EQ_INT(unlink(live), 0);
    ASSERT_OK(enrich_geo_open(live, NULL, 10, 1000, &geo), NULL);
    enrich_geo_lookup(geo, "81.2.69.142", &gi);
    ASSERT_EQ_INT(gi.status, ENRICH_GEO_NO_DATABASE);
    replace_file(city, live);
    ASSERT_OK(enrich_geo_reload(geo, 1010, false, &err), &err);
    enrich_geo_lookup(geo, "81.2.69.142", &gi);
    ASSERT_EQ_STR(gi.city, "London");
    enrich_geo_close(geo);

    test_rmtree(dir);
    free(broken);
    free(country);
    free(city);
    free(live);
    free(dir);
}

/* ---- hot reload under load --------------------------------------------------------- */

struct hammer {
    struct enrich_geo *geo;
    uint64_t epochs[2];      /* build epochs of the two databases swapped in turn */
    const char *cities[2];   /* what each says for 81.2.69.142 */
    atomic_bool stop;
    atomic_long n_lookups;
    atomic_long n_failed;
    atomic_long n_answers[2];
};

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    struct enrich_geo_info gi;

    while (!atomic_load(&h->stop)) {
        bool is_whole = false;

        enrich_geo_lookup(h->geo, "81.2.69.142", &gi);
        atomic_fetch_add(&h->n_lookups, 1);
        /* Every answer is OK and whole from one of the two databases. */
        for (int d = 0; d < 2; d++) {
            if (gi.status == ENRICH_GEO_OK && strcmp(gi.country_code, "GB") == 0 &&
                gi.city_build_epoch == h->epochs[d] && strcmp(gi.city, h->cities[d]) == 0) {
                atomic_fetch_add(&h->n_answers[d], 1);
                is_whole = true;
            }
        }
        if (!is_whole) {
            atomic_fetch_add(&h->n_failed, 1);
        }
    }
    return NULL;
}

static void test_geo_hot_reload_under_concurrent_lookups(void)
{
    enum { N_THREADS = 3, N_SWAPS = 120 };
    static const struct test_mmdb_net london[] = {{"81.2.69.0/24", 0, NULL, "GB", "London"}};
    static const struct test_mmdb_net londres[] = {{"81.2.69.0/24", 0, NULL, "GB", "Londres"}};
    char *dir = test_tmpdir();
    char *live = test_path(dir, "city.mmdb");
    char *files[2] = {test_path(dir, "a.mmdb"), test_path(dir, "b.mmdb")};
    pthread_t threads[N_THREADS];
    struct hammer h = {.epochs = {1700000001, 1700000002}, .cities = {"London", "Londres"}};
    struct enrich_geo_info gi;
    struct enrich_geo_db_status st;
    struct sl_err err;

    test_mmdb_write(files[0], "Test-City", 6, h.epochs[0], london, 1);
    test_mmdb_write(files[1], "Test-City", 6, h.epochs[1], londres, 1);
    copy_file(files[1], live);
    ASSERT_OK(enrich_geo_open(live, NULL, 0, 1000, &h.geo), NULL);
    enrich_geo_lookup(h.geo, "81.2.69.142", &gi);
    ASSERT_EQ_STR(gi.city, "Londres");

    for (int i = 0; i < N_THREADS; i++) {
        ASSERT_EQ_INT(pthread_create(&threads[i], NULL, hammer_main, &h), 0);
    }
    for (int i = 0; i < N_SWAPS; i++) {
        long before = atomic_load(&h.n_lookups);

        replace_file(files[i % 2], live);
        sl_err_clear(&err);
        ASSERT_OK(enrich_geo_reload(h.geo, 1001 + i, true, &err), &err);
        /* Let lookups run on each database before the next swap. */
        while (atomic_load(&h.n_lookups) < before + 50) {
            sched_yield();
        }
    }
    atomic_store(&h.stop, true);
    for (int i = 0; i < N_THREADS; i++) {
        pthread_join(threads[i], NULL);
    }
    fprintf(stderr, "%ld lookups during %d swaps: %ld failed, %ld from one database, %ld "
            "from the other\n", atomic_load(&h.n_lookups), N_SWAPS, atomic_load(&h.n_failed),
            atomic_load(&h.n_answers[0]), atomic_load(&h.n_answers[1]));
    ASSERT_EQ_INT(atomic_load(&h.n_failed), 0);
    ASSERT_TRUE(atomic_load(&h.n_answers[0]) > 0 && atomic_load(&h.n_answers[1]) > 0);
    enrich_geo_db_status(h.geo, ENRICH_GEO_DB_CITY, &st);
    ASSERT_EQ_INT(st.n_reloads, N_SWAPS);
    /* The last swap put the second database in place: its answers from then on. */
    enrich_geo_lookup(h.geo, "81.2.69.142", &gi);
    ASSERT_EQ_STR(gi.city, "Londres");
    ASSERT_EQ_INT(gi.city_build_epoch, h.epochs[1]);
    enrich_geo_close(h.geo);

    test_rmtree(dir);
    free(files[0]);
    free(files[1]);
    free(live);
    free(dir);
}

static void test_geo_open_without_memory(void)
{
    char *db = geoip_file("GeoIP2-City-Test.mmdb");

    for (long n = 0;; n++) {
        struct enrich_geo *geo = NULL;
        int rc;

        sl_alloc_fail_after(n);
        rc = enrich_geo_open(db, NULL, 0, 1000, &geo);
        sl_alloc_fail_after(-1);
        if (rc == 0) {
            enrich_geo_close(geo);
            break;
        }
        ASSERT_EQ_INT(rc, SL_ENOMEM);
        ASSERT_TRUE(geo == NULL);
    }
    free(db);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_geo_matches_mmdblookup),
        TEST_CASE(test_geo_london_and_ipv6),
        TEST_CASE(test_geo_special_ranges_are_not_looked_up),
        TEST_CASE(test_geo_country_database),
        TEST_CASE(test_geo_corrupt_and_missing_files_are_clear_errors),
        TEST_CASE(test_geo_asn_database),
        TEST_CASE(test_geo_reload_swaps_changed_files_only),
        TEST_CASE(test_geo_hot_reload_under_concurrent_lookups),
        TEST_CASE(test_geo_open_without_memory),
        {NULL, NULL},
    };

    return test_main(argc, argv, cases);
}

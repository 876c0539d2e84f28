/*
 * GeoIP lookups over reference-counted database handles, and their hot reload: the file is
 * stat'ed, a changed one is opened and checked off to the side, and the swap is a pointer
 * change under a short lock. Lookups copy what they need out of the database before they
 * drop their reference.
 */
#include "geo.h"

#include <errno.h>
#include <maxminddb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc.h"
#include "enrich_int.h"

/* How much of a new database is decoded before it is trusted: search-tree nodes walked, and
 * data records decoded in full (every field, so a corrupt value shows). A real GeoLite2-City
 * passes in a few milliseconds. */
#define VERIFY_MAX_NODES 65536
#define VERIFY_MAX_RECORDS 4096

/* Deepest walk: 128 bits of IPv6, two records a level. */
#define VERIFY_STACK 512

/* One opened database file. */
struct db {
    MMDB_s mmdb;
    atomic_int refs;     /* the slot's reference plus one per running lookup */
};

/* What identifies a file's content without reading it. */
struct file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    int64_t mtime_ns;
};

struct slot {
    const char *label;   /* "GeoIP", "ASN" */
    char *path;          /* NULL when not configured */
    struct db *db;       /* serving; NULL when none (guarded by geo->lock) */
    struct file_id loaded_id;
    struct file_id failed_id;
    bool has_failed_id;  /* a file that failed and is not retried until it changes */
    int64_t loaded_at_s;
    int64_t checked_at_s;
    uint64_t n_reloads;
    uint64_t n_failed;
    char type[64];
    uint64_t build_epoch;
    char error[SL_ERR_MSG_MAX];
};

struct enrich_geo {
    pthread_mutex_t lock;        /* slots' db pointers and status; held briefly */
    pthread_mutex_t reload_lock; /* one reload at a time; held while files are opened */
    struct slot slots[2];
    int64_t reload_interval_s;
    int64_t next_check_s;        /* guarded by reload_lock */
    atomic_uint_fast64_t n_errors;
};

const char *enrich_geo_status_name(enum enrich_geo_status status)
{
    switch (status) {
    case ENRICH_GEO_OK: return "ok";
    case ENRICH_GEO_NOT_FOUND: return "not_found";
    case ENRICH_GEO_NO_IP: return "no_ip";
    case ENRICH_GEO_INVALID_IP: return "invalid_ip";
    case ENRICH_GEO_PRIVATE: return "private";
    case ENRICH_GEO_LOOPBACK: return "loopback";
    case ENRICH_GEO_LINK_LOCAL: return "link_local";
    case ENRICH_GEO_RESERVED: return "reserved";
    case ENRICH_GEO_NO_DATABASE: return "no_database";
    case ENRICH_GEO_ERROR: return "error";
    }
    return "error";
}

/* ---- handles ----------------------------------------------------------------------- */

static void db_release(struct db *d)
{
    if (d != NULL && atomic_fetch_sub(&d->refs, 1) == 1) {
        MMDB_close(&d->mmdb);
        sl_free(d);
    }
}

/* Takes a reference on the serving database of slot (NULL when none). Caller holds lock. */
static struct db *db_take_locked(struct slot *s)
{
    if (s->db != NULL) {
        atomic_fetch_add(&s->db->refs, 1);
    }
    return s->db;
}

/* Walks part of the search tree and decodes the data records it reaches. */
static int db_verify(MMDB_s *mmdb, struct sl_err *err)
{
    uint32_t stack[VERIFY_STACK];
    size_t top = 0, n_nodes = 0, n_records = 0;

    stack[top++] = 0;
    while (top > 0 && n_nodes < VERIFY_MAX_NODES) {
        MMDB_search_node_s node;
        uint32_t number = stack[--top];
        int rc = MMDB_read_node(mmdb, number, &node);

        n_nodes++;
        if (rc != MMDB_SUCCESS) {
            return sl_err_set(err, SL_EINVAL, "corrupt search tree at node %u: %s", number,
                              MMDB_strerror(rc));
        }
        for (int side = 1; side >= 0; side--) {
            uint8_t type = side ? node.right_record_type : node.left_record_type;
            uint64_t record = side ? node.right_record : node.left_record;
            MMDB_entry_s entry = side ? node.right_record_entry : node.left_record_entry;
            MMDB_entry_data_list_s *list = NULL;

            if (type == MMDB_RECORD_TYPE_INVALID) {
                return sl_err_set(err, SL_EINVAL, "corrupt search tree: node %u points "
                                  "outside the file", number);
            }
            if (type == MMDB_RECORD_TYPE_SEARCH_NODE && top < VERIFY_STACK) {
                stack[top++] = (uint32_t)record;
            }
            if (type != MMDB_RECORD_TYPE_DATA || n_records >= VERIFY_MAX_RECORDS) {
                continue;
            }
            n_records++;
            rc = MMDB_get_entry_data_list(&entry, &list);
            MMDB_free_entry_data_list(list);
            if (rc != MMDB_SUCCESS) {
                return sl_err_set(err, rc == MMDB_OUT_OF_MEMORY_ERROR ? SL_ENOMEM : SL_EINVAL,
                                  "corrupt data record (the one of node %u): %s", number,
                                  MMDB_strerror(rc));
            }
        }
    }
    return 0;
}

/* Opens and checks path; on success *out holds one reference (the slot's). */
static int db_open(const char *path, struct db **out, struct sl_err *err)
{
    struct db *d = sl_calloc(1, sizeof(*d));
    int rc;

    *out = NULL;
    if (d == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    }
    rc = MMDB_open(path, MMDB_MODE_MMAP, &d->mmdb);
    if (rc != MMDB_SUCCESS) {
        sl_free(d);
        return sl_err_set(err, rc == MMDB_FILE_OPEN_ERROR ? SL_ENOTFOUND : SL_EINVAL,
                          "cannot open: %s", MMDB_strerror(rc));
    }
    rc = db_verify(&d->mmdb, err);
    if (rc != 0) {
        MMDB_close(&d->mmdb);
        sl_free(d);
        return rc;
    }
    atomic_init(&d->refs, 1);
    *out = d;
    return 0;
}

/* ---- open, reload, status ---------------------------------------------------------- */

static bool same_id(const struct file_id *a, const struct file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_ns == b->mtime_ns;
}

/* Looks at one slot's file and swaps a changed one in. Caller holds reload_lock. */
static int reload_slot(struct enrich_geo *geo, struct slot *s, int64_t now_s, struct sl_err *err)
{
    struct db *fresh = NULL, *old = NULL;
    struct file_id id = {0};
    struct sl_err why, full;
    struct stat st;
    bool has_db;
    int rc;

    sl_err_clear(&why);
    pthread_mutex_lock(&geo->lock);
    s->checked_at_s = now_s;
    has_db = s->db != NULL;
    pthread_mutex_unlock(&geo->lock);
    if (stat(s->path, &st) != 0) {
        rc = sl_err_set(&why, SL_ENOTFOUND, "cannot open: %s", strerror(errno));
        goto failed;
    }
    id.dev = st.st_dev;
    id.ino = st.st_ino;
    id.size = st.st_size;
    id.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    if (has_db && same_id(&id, &s->loaded_id)) {
        pthread_mutex_lock(&geo->lock);
        s->error[0] = '\0';
        pthread_mutex_unlock(&geo->lock);
        return 0;
    }
    if (s->has_failed_id && same_id(&id, &s->failed_id)) {
        return 0;
    }
    rc = db_open(s->path, &fresh, &why);
    if (rc != 0) {
        s->failed_id = id;
        s->has_failed_id = true;
        goto failed;
    }
    pthread_mutex_lock(&geo->lock);
    old = s->db;
    s->db = fresh;
    s->loaded_id = id;
    s->has_failed_id = false;
    s->loaded_at_s = now_s;
    s->n_reloads += old != NULL ? 1 : 0;
    s->build_epoch = fresh->mmdb.metadata.build_epoch;
    enrich_copy(s->type, sizeof(s->type), fresh->mmdb.metadata.database_type,
                fresh->mmdb.metadata.database_type != NULL
                    ? strlen(fresh->mmdb.metadata.database_type) : 0);
    s->error[0] = '\0';
    pthread_mutex_unlock(&geo->lock);
    /* Lookups still using the old database hold their own references. */
    db_release(old);
    return 0;

failed:
    sl_err_set(&full, rc, "%s database %s: %s%s", s->label, s->path, why.msg,
               has_db ? " (the previous database keeps serving)" : "");
    pthread_mutex_lock(&geo->lock);
    s->n_failed++;
    memcpy(s->error, full.msg, sizeof(s->error));
    pthread_mutex_unlock(&geo->lock);
    if (err != NULL) {
        *err = full;
    }
    return rc;
}

int enrich_geo_reload(struct enrich_geo *geo, int64_t now_s, bool force, struct sl_err *err)
{
    int first = 0;

    if (pthread_mutex_trylock(&geo->reload_lock) != 0) {
        return 0;
    }
    if (!force && (geo->reload_interval_s == 0 || now_s < geo->next_check_s)) {
        pthread_mutex_unlock(&geo->reload_lock);
        return 0;
    }
    for (int i = 0; i < 2; i++) {
        struct sl_err one;
        int rc;

        if (geo->slots[i].path == NULL) {
            continue;
        }
        sl_err_clear(&one);
        rc = reload_slot(geo, &geo->slots[i], now_s, &one);
        if (rc != 0 && first == 0) {
            first = rc;
            if (err != NULL) {
                *err = one;
            }
        }
    }
    geo->next_check_s = now_s + geo->reload_interval_s;
    pthread_mutex_unlock(&geo->reload_lock);
    return first;
}

int enrich_geo_open(const char *city_path, const char *asn_path, int64_t reload_interval_s,
                    int64_t now_s, struct enrich_geo **out)
{
    const char *paths[2] = {city_path, asn_path};
    struct enrich_geo *geo = sl_calloc(1, sizeof(*geo));

    *out = NULL;
    if (geo == NULL) {
        return SL_ENOMEM;
    }
    pthread_mutex_init(&geo->lock, NULL);
    pthread_mutex_init(&geo->reload_lock, NULL);
    atomic_init(&geo->n_errors, 0);
    geo->reload_interval_s = reload_interval_s;
    geo->slots[ENRICH_GEO_DB_CITY].label = "GeoIP";
    geo->slots[ENRICH_GEO_DB_ASN].label = "ASN";
    for (int i = 0; i < 2; i++) {
        if (paths[i] != NULL && paths[i][0] != '\0') {
            geo->slots[i].path = sl_strdup(paths[i]);
            if (geo->slots[i].path == NULL) {
                enrich_geo_close(geo);
                return SL_ENOMEM;
            }
        }
    }
    /* Problems land in the slots' status, where callers read them. */
    (void)enrich_geo_reload(geo, now_s, true, NULL);
    *out = geo;
    return 0;
}

void enrich_geo_close(struct enrich_geo *geo)
{
    if (geo == NULL) {
        return;
    }
    for (int i = 0; i < 2; i++) {
        db_release(geo->slots[i].db);
        sl_free(geo->slots[i].path);
    }
    pthread_mutex_destroy(&geo->reload_lock);
    pthread_mutex_destroy(&geo->lock);
    sl_free(geo);
}

void enrich_geo_db_status(struct enrich_geo *geo, enum enrich_geo_db which,
                          struct enrich_geo_db_status *out)
{
    struct slot *s = &geo->slots[which];

    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&geo->lock);
    out->is_configured = s->path != NULL;
    out->is_loaded = s->db != NULL;
    if (s->path != NULL) {
        enrich_copy(out->path, sizeof(out->path), s->path, strlen(s->path));
    }
    if (s->db != NULL) {
        memcpy(out->type, s->type, sizeof(out->type));
        out->build_epoch = s->build_epoch;
        out->loaded_at_s = s->loaded_at_s;
    }
    out->checked_at_s = s->checked_at_s;
    out->n_reloads = s->n_reloads;
    out->n_failed = s->n_failed;
    memcpy(out->error, s->error, sizeof(out->error));
    pthread_mutex_unlock(&geo->lock);
}

int64_t enrich_geo_data_mtime_s(struct enrich_geo *geo)
{
    int64_t newest = 0;

    pthread_mutex_lock(&geo->lock);
    for (size_t i = 0; i < sizeof(geo->slots) / sizeof(geo->slots[0]); i++) {
        int64_t s = geo->slots[i].loaded_id.mtime_ns / 1000000000;

        if (geo->slots[i].db != NULL && s > newest) {
            newest = s;
        }
    }
    pthread_mutex_unlock(&geo->lock);
    return newest;
}

uint64_t enrich_geo_n_errors(struct enrich_geo *geo)
{
    return atomic_load(&geo->n_errors);
}

/* ---- lookups ----------------------------------------------------------------------- */

/* Reads a string at path into dst. Returns false when the record is corrupt (a missing
 * value is fine: dst stays empty). */
static bool get_string(MMDB_entry_s *entry, char *dst, size_t cap, const char *const *path)
{
    MMDB_entry_data_s data;
    int rc = MMDB_aget_value(entry, &data, path);

    if (rc == MMDB_SUCCESS && data.has_data && data.type == MMDB_DATA_TYPE_UTF8_STRING) {
        enrich_copy(dst, cap, data.utf8_string, data.data_size);
    }
    return rc == MMDB_SUCCESS || rc == MMDB_LOOKUP_PATH_DOES_NOT_MATCH_DATA_ERROR;
}

/* Reads a number (double, unsigned or signed of any width) at path. */
static bool get_number(MMDB_entry_s *entry, double *out, bool *has, const char *const *path)
{
    MMDB_entry_data_s data;
    int rc = MMDB_aget_value(entry, &data, path);

    *has = false;
    if (rc == MMDB_SUCCESS && data.has_data) {
        *has = true;
        switch (data.type) {
        case MMDB_DATA_TYPE_DOUBLE: *out = data.double_value; break;
        case MMDB_DATA_TYPE_FLOAT: *out = data.float_value; break;
        case MMDB_DATA_TYPE_UINT16: *out = data.uint16; break;
        case MMDB_DATA_TYPE_UINT32: *out = data.uint32; break;
        case MMDB_DATA_TYPE_INT32: *out = data.int32; break;
        case MMDB_DATA_TYPE_UINT64: *out = (double)data.uint64; break;
        default: *has = false; break;
        }
    }
    return rc == MMDB_SUCCESS || rc == MMDB_LOOKUP_PATH_DOES_NOT_MATCH_DATA_ERROR;
}

/* Looks sa up in d. Returns 1 found, 0 not found, -1 error. */
static int find(struct db *d, const struct sockaddr_storage *sa, MMDB_entry_s *entry)
{
    int mmdb_err = MMDB_SUCCESS;
    MMDB_lookup_result_s res;

    res = MMDB_lookup_sockaddr(&d->mmdb, (const struct sockaddr *)sa, &mmdb_err);
    if (mmdb_err == MMDB_IPV6_LOOKUP_IN_IPV4_DATABASE_ERROR) {
        return 0;
    }
    if (mmdb_err != MMDB_SUCCESS) {
        return -1;
    }
    if (!res.found_entry) {
        return 0;
    }
    *entry = res.entry;
    return 1;
}

/* The map under key as an entry of its own, so the lookups inside it do not walk the
 * record from its top again. *has is false when the key is absent or no map. Returns false
 * when the record is corrupt. */
static bool get_map(MMDB_entry_s *e, const char *key, MMDB_entry_s *sub, bool *has)
{
    const char *const path[] = {key, NULL};
    MMDB_entry_data_s data;
    int rc = MMDB_aget_value(e, &data, path);

    *has = rc == MMDB_SUCCESS && data.has_data && data.type == MMDB_DATA_TYPE_MAP;
    if (*has) {
        sub->mmdb = e->mmdb;
        sub->offset = data.offset;
    }
    return rc == MMDB_SUCCESS || rc == MMDB_LOOKUP_PATH_DOES_NOT_MATCH_DATA_ERROR;
}

static bool read_city(MMDB_entry_s *e, struct enrich_geo_info *out)
{
    static const char *const p_code[] = {"iso_code", NULL};
    static const char *const p_name[] = {"names", "en", NULL};
    static const char *const p_region[] = {"subdivisions", "0", "names", "en", NULL};
    static const char *const p_city[] = {"city", "names", "en", NULL};
    static const char *const p_postal[] = {"postal", "code", NULL};
    static const char *const p_tz[] = {"time_zone", NULL};
    static const char *const p_lat[] = {"latitude", NULL};
    static const char *const p_lon[] = {"longitude", NULL};
    static const char *const p_radius[] = {"accuracy_radius", NULL};
    MMDB_entry_s country, location;
    double lat = 0, lon = 0, radius = 0;
    bool has_country = false, has_location = false;
    bool has_lat = false, has_lon = false, has_radius = false;
    bool is_ok = get_map(e, "country", &country, &has_country) &&
                 get_map(e, "location", &location, &has_location) &&
                 get_string(e, out->region, sizeof(out->region), p_region) &&
                 get_string(e, out->city, sizeof(out->city), p_city) &&
                 get_string(e, out->postal, sizeof(out->postal), p_postal);

    if (is_ok && has_country) {
        is_ok = get_string(&country, out->country_code, sizeof(out->country_code), p_code) &&
                get_string(&country, out->country, sizeof(out->country), p_name);
    }
    if (is_ok && has_location) {
        is_ok = get_string(&location, out->timezone, sizeof(out->timezone), p_tz) &&
                get_number(&location, &lat, &has_lat, p_lat) &&
                get_number(&location, &lon, &has_lon, p_lon) &&
                get_number(&location, &radius, &has_radius, p_radius);
    }
    if (has_lat && has_lon) {
        out->has_location = true;
        out->latitude = lat;
        out->longitude = lon;
    }
    if (has_radius && radius > 0 && radius < 100000) {
        out->accuracy_radius_km = (int32_t)radius;
    }
    return is_ok;
}

static bool read_asn(MMDB_entry_s *e, struct enrich_geo_info *out)
{
    static const char *const p_asn[] = {"autonomous_system_number", NULL};
    static const char *const p_org[] = {"autonomous_system_organization", NULL};
    double asn = 0;
    bool has_asn = false;
    bool is_ok = get_number(e, &asn, &has_asn, p_asn) &&
                 get_string(e, out->as_org, sizeof(out->as_org), p_org);

    if (has_asn && asn > 0 && asn <= 4294967295.0) {
        out->asn = (uint32_t)asn;
    }
    return is_ok;
}

static enum enrich_geo_status status_of_class(enum enrich_ip_class cls)
{
    switch (cls) {
    case ENRICH_IP_PRIVATE: return ENRICH_GEO_PRIVATE;
    case ENRICH_IP_LOOPBACK: return ENRICH_GEO_LOOPBACK;
    case ENRICH_IP_LINK_LOCAL: return ENRICH_GEO_LINK_LOCAL;
    case ENRICH_IP_RESERVED: return ENRICH_GEO_RESERVED;
    case ENRICH_IP_PUBLIC: break;
    }
    return ENRICH_GEO_OK;
}

void enrich_geo_lookup(struct enrich_geo *geo, const char *ip, struct enrich_geo_info *out)
{
    struct sockaddr_storage sa;
    enum enrich_ip_class cls = ENRICH_IP_PUBLIC;
    struct db *city = NULL, *asn = NULL;
    MMDB_entry_s entry;
    int rc;

    memset(out, 0, sizeof(*out));
    if (ip == NULL || ip[0] == '\0') {
        out->status = ENRICH_GEO_NO_IP;
        return;
    }
    if (enrich_ip_parse(ip, &sa, &cls) != 0) {
        out->status = ENRICH_GEO_INVALID_IP;
        return;
    }
    if (cls != ENRICH_IP_PUBLIC) {
        out->status = status_of_class(cls);
        return;
    }
    pthread_mutex_lock(&geo->lock);
    city = db_take_locked(&geo->slots[ENRICH_GEO_DB_CITY]);
    asn = db_take_locked(&geo->slots[ENRICH_GEO_DB_ASN]);
    pthread_mutex_unlock(&geo->lock);

    out->status = ENRICH_GEO_NO_DATABASE;
    if (city != NULL) {
        out->city_build_epoch = city->mmdb.metadata.build_epoch;
        rc = find(city, &sa, &entry);
        out->status = rc > 0 ? ENRICH_GEO_OK : rc == 0 ? ENRICH_GEO_NOT_FOUND : ENRICH_GEO_ERROR;
        if (rc > 0 && !read_city(&entry, out)) {
            out->status = ENRICH_GEO_ERROR;
        }
    }
    if (asn != NULL) {
        out->asn_build_epoch = asn->mmdb.metadata.build_epoch;
        rc = find(asn, &sa, &entry);
        if (rc < 0 || (rc > 0 && !read_asn(&entry, out))) {
            /* A corrupt ASN record costs the ASN answer only. */
            out->asn = 0;
            out->as_org[0] = '\0';
            atomic_fetch_add(&geo->n_errors, 1);
        }
    }
    if (out->status == ENRICH_GEO_ERROR) {
        atomic_fetch_add(&geo->n_errors, 1);
    }
    db_release(city);
    db_release(asn);
}

/* The edge's visitor -> session table: 4-way sets of fixed entries keyed by a 128-bit hash. */
#include "session.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <string.h>

#include "alloc.h"

#define WAYS 4

struct entry {
    unsigned char key[16];   /* first half of SHA-256(tenant NUL anonymous_id) */
    unsigned char sid[16];   /* the session's UUID bytes */
    int64_t last_ms;         /* latest event time seen in the session; 0: free */
};

struct ingest_session {
    pthread_mutex_t lock;
    struct entry *entries;
    size_t n_sets;
    int64_t idle_ms;
};

const struct sl_cfg_opt ingest_session_cfg_opts[] = {
    {.key = "SLUICE_SESSION_IDLE_MIN", .type = SL_CFG_INT, .def = "30", .min = 1, .max = 1440,
     .offset = offsetof(struct ingest_session_settings, idle_min),
     .desc = "Events with an anonymous_id but no session_id join the visitor's session unless "
             "it was idle this many minutes (per edge process)."},
    {.key = "SLUICE_SESSION_TABLE_ENTRIES", .type = SL_CFG_INT, .def = "262144", .min = WAYS,
     .max = 1 << 26, .offset = offsetof(struct ingest_session_settings, table_entries),
     .desc = "Visitors the edge remembers for session assignment (40 bytes each)."},
};
const size_t ingest_session_cfg_n_opts =
    sizeof(ingest_session_cfg_opts) / sizeof(ingest_session_cfg_opts[0]);

int ingest_session_create(struct ingest_session **out, const struct ingest_session_settings *s)
{
    struct ingest_session *t = sl_calloc(1, sizeof(*t));

    *out = NULL;
    if (t == NULL) {
        return SL_ENOMEM;
    }
    t->n_sets = (size_t)s->table_entries / WAYS;
    t->idle_ms = s->idle_min * 60 * 1000;
    t->entries = sl_calloc(t->n_sets * WAYS, sizeof(*t->entries));
    if (t->entries == NULL) {
        sl_free(t);
        return SL_ENOMEM;
    }
    pthread_mutex_init(&t->lock, NULL);
    *out = t;
    return 0;
}

void ingest_session_destroy(struct ingest_session *s)
{
    if (s == NULL) {
        return;
    }
    pthread_mutex_destroy(&s->lock);
    sl_free(s->entries);
    sl_free(s);
}

static void format_uuid(const unsigned char b[16], char out[INGEST_SESSION_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            out[o++] = '-';
        }
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 0xf];
    }
    out[o] = '\0';
}

int ingest_session_assign(struct ingest_session *s, const char *tenant_id,
                          const char *anonymous_id, size_t anonymous_len, int64_t ts_ms,
                          char out[INGEST_SESSION_ID_LEN + 1])
{
    unsigned char digest[32];
    unsigned int digest_len = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    struct entry *set;
    struct entry *hit = NULL;
    struct entry *victim;
    size_t set_index;

    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(md, tenant_id, strlen(tenant_id) + 1) != 1 ||
        EVP_DigestUpdate(md, anonymous_id, anonymous_len) != 1 ||
        EVP_DigestFinal_ex(md, digest, &digest_len) != 1) {
        EVP_MD_CTX_free(md);
        return SL_EIO;
    }
    EVP_MD_CTX_free(md);
    memcpy(&set_index, digest + 16, sizeof(set_index));
    set_index %= s->n_sets;
    pthread_mutex_lock(&s->lock);
    set = &s->entries[set_index * WAYS];
    victim = &set[0];
    for (size_t i = 0; i < WAYS; i++) {
        if (set[i].last_ms != 0 && memcmp(set[i].key, digest, 16) == 0) {
            hit = &set[i];
            break;
        }
        if (set[i].last_ms < victim->last_ms) {
            victim = &set[i];
        }
    }
    if (hit != NULL && ts_ms - hit->last_ms <= s->idle_ms && hit->last_ms - ts_ms <= s->idle_ms) {
        if (ts_ms > hit->last_ms) {
            hit->last_ms = ts_ms;
        }
        format_uuid(hit->sid, out);
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    if (hit != NULL && ts_ms < hit->last_ms) {
        /* Far older than the visitor's current session: a session of its own, which must
         * not replace the current one. */
        unsigned char sid[16];

        pthread_mutex_unlock(&s->lock);
        if (RAND_bytes(sid, sizeof(sid)) != 1) {
            return SL_EIO;
        }
        sid[6] = (unsigned char)((sid[6] & 0x0f) | 0x40);
        sid[8] = (unsigned char)((sid[8] & 0x3f) | 0x80);
        format_uuid(sid, out);
        return 0;
    }
    if (hit != NULL) {
        victim = hit;
    }
    if (RAND_bytes(victim->sid, sizeof(victim->sid)) != 1) {
        pthread_mutex_unlock(&s->lock);
        return SL_EIO;
    }
    victim->sid[6] = (unsigned char)((victim->sid[6] & 0x0f) | 0x40);
    victim->sid[8] = (unsigned char)((victim->sid[8] & 0x3f) | 0x80);
    memcpy(victim->key, digest, 16);
    /* 0 marks a free entry; an event exactly at the epoch still counts as used. */
    victim->last_ms = ts_ms != 0 ? ts_ms : 1;
    format_uuid(victim->sid, out);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

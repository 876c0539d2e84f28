/*
 * An accepted event in its normalized form (the schema in README.md, "Sending events"): its
 * id, generated when the client sent none; its compact JSON with keys in a fixed order,
 * written into the request's scratch buffer from what event_fields.c checked and derived
 * (properties come already written); and its entry in the batch, one allocation holding
 * the JSON and the session_id. Checking is event_fields.c's; the request is event.c's.
 */
#include "event_int.h"

#include <jansson.h>
#include <openssl/rand.h>
#include <string.h>

#include "alloc.h"
#include "json.h"
#include "timefmt.h"

/* Fixed bytes of an event's envelope (keys, punctuation, times, id, flags). */
#define ENVELOPE_BYTES 1024

/* A random (version 4) UUID from OpenSSL's CSPRNG. Fails with SL_EIO. */
static int make_uuid(char out[INGEST_EVENT_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    size_t o = 0;

    if (RAND_bytes(b, sizeof(b)) != 1) {
        return SL_EIO;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    for (size_t i = 0; i < sizeof(b); i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            out[o++] = '-';
        }
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 0xf];
    }
    out[o] = '\0';
    return 0;
}

static void put_key(struct sl_json_buf *b, const char *key)
{
    SL_JSON_BUF_LIT(b, ",\"");
    sl_json_buf_append(b, key, strlen(key));
    SL_JSON_BUF_LIT(b, "\":");
}

static void put_opt(struct sl_json_buf *b, const char *key, const json_t *v)
{
    put_key(b, key);
    sl_json_append_str_or_null(b, v != NULL ? json_string_value(v) : NULL,
                               v != NULL ? json_string_length(v) : 0);
}

/* Writes the event as compact JSON into r->scratch; keys in a fixed order. */
static void write_event(struct ingest_event_run *r, const struct ingest_event_in *in)
{
    static const struct {
        unsigned bit;
        const char *name;
    } flags[] = {
        {INGEST_EVENT_FLAG_ID_GENERATED, "id_generated"},
        {INGEST_EVENT_FLAG_SKEW_CORRECTED, "clock_skew_corrected"},
        {INGEST_EVENT_FLAG_FUTURE_CLAMPED, "future_clamped"},
        {INGEST_EVENT_FLAG_SESSION_ASSIGNED, "session_assigned"},
    };
    struct sl_json_buf *b = &r->scratch;
    char ts[SL_TIMEFMT_ISO_MS_MAX];
    bool is_first = true;

    sl_json_buf_reset(b);
    SL_JSON_BUF_LIT(b, "{\"schema_version\":1");
    put_key(b, "id");
    sl_json_append_str(b, in->id, INGEST_EVENT_ID_LEN);
    put_key(b, "tenant_id");
    sl_json_append_str(b, r->ctx->tenant_id, strlen(r->ctx->tenant_id));
    put_key(b, "type");
    sl_json_append_str(b, ingest_event_type_name(in->type),
                       strlen(ingest_event_type_name(in->type)));
    put_opt(b, "name", in->v[INGEST_EVENT_F_NAME]);
    put_key(b, "ts");
    sl_timefmt_iso_ms(in->ts_us, ts);
    sl_json_append_str(b, ts, strlen(ts));
    put_key(b, "received_at");
    sl_json_append_str(b, r->received_at, SL_TIMEFMT_ISO_MS_MAX - 1);
    if (in->assigned_session[0] != '\0') {
        put_key(b, "session_id");
        sl_json_append_str(b, in->assigned_session, strlen(in->assigned_session));
    }
    else {
        put_opt(b, "session_id", in->v[INGEST_EVENT_F_SESSION_ID]);
    }
    put_opt(b, "anonymous_id", in->v[INGEST_EVENT_F_ANONYMOUS_ID]);
    put_opt(b, "user_id", in->v[INGEST_EVENT_F_USER_ID]);
    if (in->type == INGEST_EVENT_LOG) {
        put_key(b, "severity");
        sl_json_append_str(b, in->severity, strlen(in->severity));
        put_opt(b, "source", in->v[INGEST_EVENT_F_SOURCE]);
        put_opt(b, "message", in->v[INGEST_EVENT_F_MESSAGE]);
    }
    put_key(b, "properties");
    sl_json_buf_append(b, r->props.data, r->props.len);
    put_key(b, "context");
    SL_JSON_BUF_LIT(b, "{\"user_agent\":");
    if (in->ctx_v[INGEST_EVENT_C_USER_AGENT] != NULL) {
        sl_json_append_str(b, json_string_value(in->ctx_v[INGEST_EVENT_C_USER_AGENT]),
                           json_string_length(in->ctx_v[INGEST_EVENT_C_USER_AGENT]));
    }
    else {
        sl_json_append_str_or_null(b, r->header_ua, r->header_ua_len);
    }
    put_key(b, "ip");
    if (in->has_ip) {
        sl_json_append_str(b, in->ip, strlen(in->ip));
    }
    else {
        sl_json_append_str_or_null(b, r->has_client_ip ? r->client_ip : NULL,
                                   strlen(r->client_ip));
    }
    for (size_t c = INGEST_EVENT_C_IP + 1; c < INGEST_EVENT_N_CTX_FIELDS; c++) {
        if (in->ctx_v[c] != NULL) {
            put_opt(b, ingest_event_fields_ctx[c].name, in->ctx_v[c]);
        }
    }
    if (in->ctx_hints != NULL || r->header_hints != NULL) {
        /* Checked to parse and to fit; a few levels deep at most (brand lists). The event's
         * own hints win over the request's headers. */
        put_key(b, "client_hints");
        sl_json_append_value(b, in->ctx_hints != NULL ? in->ctx_hints : r->header_hints, 1, 8);
    }
    SL_JSON_BUF_LIT(b, "}");
    put_key(b, "flags");
    SL_JSON_BUF_LIT(b, "[");
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        if (in->flags & flags[i].bit) {
            if (!is_first) {
                SL_JSON_BUF_LIT(b, ",");
            }
            sl_json_append_str(b, flags[i].name, strlen(flags[i].name));
            is_first = false;
        }
    }
    SL_JSON_BUF_LIT(b, "]}");
}

int ingest_event_norm_accept(struct ingest_event_run *r, struct ingest_event_in *in,
                             struct sl_err *err)
{
    struct ingest_event *ev = &r->out->events[r->out->n_events];
    const json_t *sid = in->v[INGEST_EVENT_F_SESSION_ID];
    const json_t *anon = in->v[INGEST_EVENT_F_ANONYMOUS_ID];
    const char *sid_text = sid != NULL ? json_string_value(sid) : NULL;
    size_t sid_len = sid != NULL ? json_string_length(sid) : 0;
    char *mem;

    if (!in->has_id) {
        if (make_uuid(in->id) != 0) {
            return sl_err_set(err, SL_EIO, "the random generator failed to make an event id");
        }
        in->flags |= INGEST_EVENT_FLAG_ID_GENERATED;
    }
    in->assigned_session[0] = '\0';
    if (sid == NULL && anon != NULL && r->ctx->assign_session != NULL &&
        r->ctx->assign_session(r->ctx->assign_session_user, r->ctx->tenant_id,
                               json_string_value(anon), json_string_length(anon),
                               in->ts_us / 1000, in->assigned_session) == 0 &&
        in->assigned_session[0] != '\0') {
        in->flags |= INGEST_EVENT_FLAG_SESSION_ASSIGNED;
        sid_text = in->assigned_session;
        sid_len = strlen(in->assigned_session);
    }
    write_event(r, in);
    if (r->scratch.is_failed) {
        return sl_err_set(err, SL_ENOMEM, "out of memory writing event %zu", r->index);
    }
    /* One allocation: the JSON, its NUL, then the session_id and its NUL. */
    mem = sl_malloc(r->scratch.len + 1 + (sid_text != NULL ? sid_len + 1 : 0));
    if (mem == NULL) {
        return sl_err_set(err, SL_ENOMEM, "out of memory writing event %zu", r->index);
    }
    memcpy(mem, r->scratch.data, r->scratch.len);
    mem[r->scratch.len] = '\0';
    ev->session_id = NULL;
    if (sid_text != NULL) {
        memcpy(mem + r->scratch.len + 1, sid_text, sid_len);
        mem[r->scratch.len + 1 + sid_len] = '\0';
        ev->session_id = mem + r->scratch.len + 1;
    }
    ev->index = r->index;
    ev->type = in->type;
    memcpy(ev->id, in->id, sizeof(ev->id));
    /* Rounded down, also before 1970, as the ts text is. */
    ev->ts_ms = in->ts_us / 1000 - (in->ts_us % 1000 < 0);
    ev->flags = in->flags;
    ev->json = mem;
    ev->json_len = r->scratch.len;
    r->out->n_events++;
    return 0;
}

/* Strings may grow six-fold when escaped (\u00XX); properties were measured written. */
size_t ingest_event_norm_max_bytes(const struct ingest_event_limits *lim, const char *tenant_id)
{
    int64_t text = lim->max_name_bytes + 3 * lim->max_ident_bytes + lim->max_source_bytes +
                   lim->max_message_bytes + 3 * lim->max_url_bytes +
                   (INGEST_EVENT_N_CTX_FIELDS - 2) * lim->max_context_bytes;

    return ENVELOPE_BYTES + 6 * (size_t)text + 6 * strlen(tenant_id) +
           (size_t)lim->max_properties_bytes;
}


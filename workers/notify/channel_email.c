/*
 * The email channel: one message per notification to the channel's addresses through the
 * SMTP server of SLUICE_SMTP_* with libesmtp (STARTTLS none|try|require, AUTH with user
 * and password when a user is set). The message is multipart/alternative: the plain text
 * and a short HTML part, with Date, Message-ID, From, To and Subject. libESMTP does the
 * protocol (dot-stuffing, extensions, TLS); this file writes the message and reads the
 * status of each recipient.
 */
#include "notify_int.h"

#include <auth-client.h>
#include <libesmtp.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc.h"

#define MAIL_MAX (64 * 1024)

/* GLOBAL: libESMTP's SASL client table, initialised once under auth_once; never torn
 * down (it lives as long as the process may send mail). */
static pthread_once_t auth_once = PTHREAD_ONCE_INIT;

static void init_auth(void)
{
    auth_client_init();
}

/* Appends printf output; sets *failed when the buffer cannot take it. */
static void put(struct sl_ch_buf *b, bool *failed, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void put(struct sl_ch_buf *b, bool *failed, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line) || sl_ch_buf_append(b, line, (size_t)n) != 0) {
        *failed = true;
    }
}

/* Appends text with every LF as CRLF (SMTP's line end). */
static void put_lines(struct sl_ch_buf *b, bool *failed, const char *text, bool is_html)
{
    for (const char *p = text; *p != '\0' && !*failed; p++) {
        const char *esc = NULL;

        if (*p == '\n') {
            esc = is_html ? "<br>\r\n" : "\r\n";
        }
        else if (is_html && *p == '<') {
            esc = "&lt;";
        }
        else if (is_html && *p == '>') {
            esc = "&gt;";
        }
        else if (is_html && *p == '&') {
            esc = "&amp;";
        }
        else if (is_html && *p == '"') {
            esc = "&quot;";
        }
        if (esc != NULL) {
            *failed = *failed || sl_ch_buf_append_str(b, esc) != 0;
        }
        else if (*p != '\r') {
            *failed = *failed || sl_ch_buf_append(b, p, 1) != 0;
        }
    }
}

/* The subject as ASCII, or RFC 2047 base64 when it holds other bytes. */
static void put_subject(struct sl_ch_buf *b, bool *failed, const char *title)
{
    unsigned char enc[512];
    bool is_ascii = true;
    size_t len = strlen(title);

    for (size_t i = 0; i < len; i++) {
        is_ascii = is_ascii && (unsigned char)title[i] >= 0x20 && (unsigned char)title[i] < 0x7f;
    }
    if (is_ascii) {
        put(b, failed, "Subject: %s\r\n", title);
        return;
    }
    if (len > 300) {
        len = 300;
    }
    EVP_EncodeBlock(enc, (const unsigned char *)title, (int)len);
    put(b, failed, "Subject: =?UTF-8?B?%s?=\r\n", (const char *)enc);
}

static void random_hex(char *out, size_t n_bytes)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[16] = {0};

    if (n_bytes > sizeof(raw)) {
        n_bytes = sizeof(raw);
    }
    /* Only for uniqueness (boundary, Message-ID); a failed RAND_bytes leaves zeros and the
     * delivery id and time still make them unique. */
    (void)RAND_bytes(raw, (int)n_bytes);
    for (size_t i = 0; i < n_bytes; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * n_bytes] = '\0';
}

char *notify_mail_text(const struct notify_msg *m, const char *from, const char *to,
                       int64_t now_s)
{
    const char *at = strchr(from, '@');
    char date[64], boundary[40], rnd[33];
    time_t t = (time_t)now_s;
    struct tm tm;
    struct sl_ch_buf b;
    bool failed = false;
    char *out = NULL;

    gmtime_r(&t, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    random_hex(rnd, 8);
    snprintf(boundary, sizeof(boundary), "sluice-%s", rnd);
    random_hex(rnd, 8);
    sl_ch_buf_init(&b, MAIL_MAX);
    put(&b, &failed, "Date: %s\r\n", date);
    put(&b, &failed, "Message-ID: <sluice.%lld.%lld.%s@%s>\r\n", (long long)m->delivery_id,
        (long long)now_s, rnd, at != NULL && at[1] != '\0' ? at + 1 : "localhost");
    put(&b, &failed, "From: %s\r\n", from);
    put(&b, &failed, "To: %s\r\n", to);
    put_subject(&b, &failed, m->title);
    put(&b, &failed, "MIME-Version: 1.0\r\n");
    put(&b, &failed, "X-Sluice-Event: %s\r\n", m->event);
    if (m->alert_id > 0) {
        put(&b, &failed, "X-Sluice-Alert: %lld\r\n", (long long)m->alert_id);
    }
    put(&b, &failed, "Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n", boundary);
    put(&b, &failed, "--%s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Transfer-Encoding: 8bit\r\n\r\n", boundary);
    put_lines(&b, &failed, m->title, false);
    put(&b, &failed, "\r\n\r\n");
    put_lines(&b, &failed, m->text, false);
    put(&b, &failed, "\r\n--%s\r\nContent-Type: text/html; charset=utf-8\r\n"
                     "Content-Transfer-Encoding: 8bit\r\n\r\n", boundary);
    put(&b, &failed, "<html><body>\r\n<h2>");
    put_lines(&b, &failed, m->title, true);
    put(&b, &failed, "</h2>\r\n<p>");
    put_lines(&b, &failed, m->text, true);
    put(&b, &failed, "</p>\r\n</body></html>\r\n--%s--\r\n", boundary);
    if (!failed) {
        out = sl_strdup(b.data);
    }
    sl_ch_buf_fini(&b);
    return out;
}

struct auth_arg {
    const char *user;
    const char *password;
};

/* libESMTP asks for the SASL fields; we answer user and password from the settings. */
static int interact(auth_client_request_t req, char **result, int fields, void *arg)
{
    const struct auth_arg *a = arg;

    for (int i = 0; i < fields; i++) {
        if (req[i].flags & AUTH_PASS) {
            result[i] = (char *)a->password;
        }
        else if (req[i].flags & AUTH_USER) {
            result[i] = (char *)a->user;
        }
        else {
            result[i] = NULL;
        }
        if (result[i] == NULL) {
            return 0;
        }
    }
    return 1;
}

struct rcpt_check {
    int n_bad;
    char first_bad[200];
};

static void check_recipient(smtp_recipient_t rcpt, const char *mailbox, void *arg)
{
    struct rcpt_check *c = arg;
    const smtp_status_t *st = smtp_recipient_status(rcpt);

    if (st == NULL || st->code < 200 || st->code > 299) {
        if (c->n_bad++ == 0) {
            snprintf(c->first_bad, sizeof(c->first_bad), "%s: %d %s", mailbox,
                     st != NULL ? st->code : 0, st != NULL && st->text ? st->text : "");
        }
    }
}

static enum starttls_option starttls_of(const char *mode)
{
    if (strcmp(mode, "require") == 0) {
        return Starttls_REQUIRED;
    }
    if (strcmp(mode, "try") == 0) {
        return Starttls_ENABLED;
    }
    return Starttls_DISABLED;
}

int notify_mail_send(const struct notify_msg *m, const char *to,
                     const struct notify_settings *s, int64_t now_s,
                     struct notify_send_result *r)
{
    struct auth_arg auth = {.user = s->smtp_user, .password = s->smtp_password};
    struct rcpt_check rc_check = {0};
    smtp_session_t session = NULL;
    auth_context_t actx = NULL;
    smtp_message_t msg = NULL;
    const smtp_status_t *st;
    char server[300], errbuf[128];
    char *text = NULL;
    char *addrs = NULL;
    char *save = NULL;
    int rc = 0;

    memset(r, 0, sizeof(*r));
    if (s->smtp_host == NULL || s->smtp_host[0] == '\0') {
        snprintf(r->error, sizeof(r->error), "no SMTP server configured (SLUICE_SMTP_HOST)");
        r->is_permanent = true;
        return SL_EINVAL;
    }
    text = notify_mail_text(m, s->smtp_from, to, now_s);
    addrs = sl_strdup(to);
    session = smtp_create_session();
    msg = session != NULL ? smtp_add_message(session) : NULL;
    if (text == NULL || addrs == NULL || msg == NULL) {
        snprintf(r->error, sizeof(r->error), "out of memory preparing the mail");
        rc = SL_ENOMEM;
        goto done;
    }
    snprintf(server, sizeof(server), "%s:%lld", s->smtp_host, (long long)s->smtp_port);
    smtp_set_server(session, server);
    smtp_starttls_enable(session, starttls_of(s->smtp_starttls));
    /* Each protocol step waits at most the attempt timeout (libESMTP enforces RFC 5321's
     * minutes unless told to override them). */
    smtp_set_timeout(session, Timeout_GREETING | Timeout_OVERRIDE_RFC2822_MINIMUM,
                     (long)s->attempt_timeout_ms);
    smtp_set_timeout(session, Timeout_ENVELOPE | Timeout_OVERRIDE_RFC2822_MINIMUM,
                     (long)s->attempt_timeout_ms);
    smtp_set_timeout(session, Timeout_DATA | Timeout_OVERRIDE_RFC2822_MINIMUM,
                     (long)s->attempt_timeout_ms);
    smtp_set_timeout(session, Timeout_TRANSFER | Timeout_OVERRIDE_RFC2822_MINIMUM,
                     (long)s->attempt_timeout_ms);
    smtp_set_timeout(session, Timeout_DATA2 | Timeout_OVERRIDE_RFC2822_MINIMUM,
                     (long)s->attempt_timeout_ms);
    if (s->smtp_user != NULL && s->smtp_user[0] != '\0') {
        pthread_once(&auth_once, init_auth);
        actx = auth_create_context();
        if (actx == NULL) {
            snprintf(r->error, sizeof(r->error), "out of memory preparing SMTP AUTH");
            rc = SL_ENOMEM;
            goto done;
        }
        /* Plain-text mechanisms are allowed: with STARTTLS=require they only ever run inside
         * TLS; with none/try the operator chose a server they trust on that path. */
        auth_set_mechanism_flags(actx, AUTH_PLUGIN_PLAIN, 0);
        auth_set_interact_cb(actx, interact, &auth);
        smtp_auth_set_context(session, actx);
    }
    smtp_set_reverse_path(msg, s->smtp_from);
    smtp_set_message_str(msg, text);
    for (char *a = strtok_r(addrs, ",", &save); a != NULL; a = strtok_r(NULL, ",", &save)) {
        if (smtp_add_recipient(msg, a) == NULL) {
            snprintf(r->error, sizeof(r->error), "out of memory adding recipient %s", a);
            rc = SL_ENOMEM;
            goto done;
        }
    }
    if (!smtp_start_session(session)) {
        snprintf(r->error, sizeof(r->error), "SMTP session with %.100s failed: %.120s", server,
                 smtp_strerror(smtp_errno(), errbuf, sizeof(errbuf)));
        rc = SL_ENET;
        goto done;
    }
    st = smtp_message_transfer_status(msg);
    if (st != NULL && st->code == 0) {
        /* No answer to DATA: the session stopped earlier (MAIL FROM refused, AUTH or
         * STARTTLS failed); the sender's status says why when the server said anything. */
        st = smtp_reverse_path_status(msg);
    }
    if (st == NULL || st->code < 200 || st->code > 299) {
        if (st != NULL && st->code > 0) {
            snprintf(r->error, sizeof(r->error), "SMTP server %.100s refused the message: "
                     "%d %.100s", server, st->code, st->text != NULL ? st->text : "");
        }
        else {
            snprintf(r->error, sizeof(r->error), "SMTP server %.100s: no mail transaction "
                     "(%.100s; STARTTLS %s)", server,
                     smtp_strerror(smtp_errno(), errbuf, sizeof(errbuf)), s->smtp_starttls);
        }
        /* 5xx is a permanent refusal (RFC 5321), 4xx and no answer are worth a retry. */
        r->is_permanent = st != NULL && st->code >= 500;
        rc = SL_ESERVER;
        goto done;
    }
    smtp_enumerate_recipients(msg, check_recipient, &rc_check);
    if (rc_check.n_bad > 0) {
        snprintf(r->error, sizeof(r->error), "%d recipient(s) refused, first %s",
                 rc_check.n_bad, rc_check.first_bad);
        r->is_permanent = true;
        rc = SL_ESERVER;
    }

done:
    if (session != NULL) {
        smtp_destroy_session(session);
    }
    if (actx != NULL) {
        auth_destroy_context(actx);
    }
    sl_free(addrs);
    sl_free(text);
    return rc;
}

/*
 * The HTTP POST the webhook, Slack and Discord channels share: libcurl with a bounded
 * connect and whole-request timeout per attempt, so a receiver that never answers costs
 * one timeout and cannot hold up the channels after it. Retrying is deliver.c's.
 */
#include "notify_int.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"

/* GLOBAL: libcurl's one-time initialisation; written once under curl_once, read after. */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void init_curl(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* The response body is not needed; only its status. */
static size_t discard(char *ptr, size_t size, size_t n, void *user)
{
    (void)ptr;
    (void)user;
    return size * n;
}

int notify_http_post(const struct notify_http_req *req, struct notify_send_result *r)
{
    struct curl_slist *headers = NULL;
    struct curl_slist *grown = NULL;
    char curl_err[CURL_ERROR_SIZE] = "";
    CURL *curl = NULL;
    CURLcode cc;
    long status = 0;
    int rc = 0;

    memset(r, 0, sizeof(*r));
    pthread_once(&curl_once, init_curl);
    if (curl_init_rc != CURLE_OK || (curl = curl_easy_init()) == NULL) {
        snprintf(r->error, sizeof(r->error), "libcurl could not start a transfer");
        return SL_ENOMEM;
    }
    grown = curl_slist_append(headers, "Content-Type: application/json");
    for (size_t i = 0; grown != NULL && req->headers != NULL && req->headers[i] != NULL; i++) {
        headers = grown;
        grown = curl_slist_append(headers, req->headers[i]);
    }
    if (grown == NULL) {
        snprintf(r->error, sizeof(r->error), "out of memory building headers");
        rc = SL_ENOMEM;
        goto done;
    }
    headers = grown;
    curl_easy_setopt(curl, CURLOPT_URL, req->url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req->body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "sluice-notify/" SLUICE_VERSION);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)req->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)req->connect_timeout_ms);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_err);
    cc = curl_easy_perform(curl);
    if (cc != CURLE_OK) {
        snprintf(r->error, sizeof(r->error), "%s",
                 curl_err[0] != '\0' ? curl_err : curl_easy_strerror(cc));
        rc = cc == CURLE_OPERATION_TIMEDOUT ? SL_ETIMEDOUT : SL_ENET;
        r->is_permanent = cc == CURLE_UNSUPPORTED_PROTOCOL || cc == CURLE_URL_MALFORMAT;
        goto done;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    r->http_status = status;
    if (status < 200 || status > 299) {
        snprintf(r->error, sizeof(r->error), "HTTP %ld from the receiver", status);
        /* A 4xx other than timeout and rate limit says the request itself is refused (bad
         * URL, revoked webhook): the same request will be refused again. */
        r->is_permanent = status >= 400 && status < 500 && status != 408 && status != 429;
        rc = SL_ESERVER;
    }

done:
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return rc;
}

int notify_http_post_taken(const char *url, char *body, const char *const *headers,
                           const char *what, const struct notify_settings *s,
                           struct notify_send_result *r)
{
    struct notify_http_req req = {.url = url,
                                  .body = body,
                                  .body_len = body != NULL ? strlen(body) : 0,
                                  .headers = headers,
                                  .timeout_ms = s->attempt_timeout_ms,
                                  .connect_timeout_ms = s->connect_timeout_ms};
    int rc;

    if (body == NULL) {
        memset(r, 0, sizeof(*r));
        snprintf(r->error, sizeof(r->error), "out of memory rendering the %s", what);
        return SL_ENOMEM;
    }
    rc = notify_http_post(&req, r);
    sl_free(body);
    return rc;
}

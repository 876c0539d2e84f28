/*
 * A plain HTTP client for tests that talk to a daemon on loopback (libcurl): GET a path, or
 * POST a JSON body to it with an API key.
 */
#ifndef SLUICE_TESTS_SUPPORT_HTTPCLIENT_H
#define SLUICE_TESTS_SUPPORT_HTTPCLIENT_H

/*
 * GET http://127.0.0.1:port/path (body NULL), or POST body there as application/json with
 * "Authorization: Bearer key". Returns the status (0 when no answer came within 30 s) and
 * the answer's body in *out (NUL-terminated; free with free()).
 */
long test_http(int port, const char *path, const char *key, const char *body, char **out);

#endif

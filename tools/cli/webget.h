/*
 * tools/cli/webget.h — a small HTTP/1.1 GET client for reading a running
 * worker's web view (table lookups, /health). One request per connection,
 * sent with "Connection: close"; the reply is read until the server closes.
 * Only what the web view sends is understood: a status line, headers, and a
 * body delimited by Content-Length or by the end of the connection.
 */
#ifndef MPH_CLI_WEBGET_H
#define MPH_CLI_WEBGET_H

#include <stdbool.h>
#include <stddef.h>

#include "cli.h"

typedef struct mph_cli_http_reply {
    int status;      /* 200, 404, ... */
    char *body;      /* malloc'd, NUL-terminated (owned by the reply) */
    size_t body_len; /* without the NUL */
} mph_cli_http_reply_t;

/* Splits "http://host:port[/...]" or "host:port" into host and port (the
 * port defaults to 80 when absent). False when url is neither. A path in url
 * is ignored. */
bool mph__cli_http_parse_url(const char *url, char *host, size_t host_size,
                             char *port, size_t port_size);

/* GETs path (already percent-encoded, starting with '/') from host:port,
 * all of it within timeout_ms. MPH_OK: *reply is filled (release it with
 * mph__cli_http_reply_free). MPH_ERR_TRANSPORT: nobody answers (refused,
 * unreachable, unknown host); MPH_ERR_TIMEOUT: the deadline passed;
 * MPH_ERR_DECODE: the answer is not an HTTP/1.x reply; MPH_ERR_UNSUPPORTED:
 * a chunked reply; MPH_ERR_NOMEM. errstr says why. */
mph_err_t mph__cli_http_get(const char *host, const char *port,
                            const char *path, int timeout_ms,
                            mph_cli_http_reply_t *reply, char *errstr,
                            size_t errstr_size);

/* Frees the body. A zeroed reply is a no-op. */
void mph__cli_http_reply_free(mph_cli_http_reply_t *reply);

/* Writes bytes percent-encoded (RFC 3986: unreserved characters as they
 * are, every other byte as %XX) and NUL-terminated into out. Returns the
 * length it needs without the NUL; the output is complete only when that is
 * less than out_size. */
size_t mph__cli_url_encode(const void *bytes, size_t len, char *out,
                           size_t out_size);

#endif

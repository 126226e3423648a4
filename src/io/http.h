/*
 * The HTTP server (internal): libmicrohttpd 0.9.75 run by one "web" thread
 * of ours, calling a single handler for every accepted request. It knows no
 * routes; src/runtime/web.c does.
 *
 * What the server does before and around the handler:
 *   - Only GET and HEAD reach the handler. Any other method is answered
 *     405 with `Allow: GET, HEAD`, without calling it.
 *   - Request bodies are not read. A GET/HEAD whose Content-Length exceeds
 *     MPH__HTTP_MAX_REQUEST_BODY, or that uses Transfer-Encoding (length
 *     unknown before reading), is answered 413; a smaller body is read and
 *     dropped. An answer given before a body is read closes the connection.
 *   - Malformed requests (bad request line, bad headers, oversized URI or
 *     headers) are answered 4xx (505 for an unknown HTTP version) by
 *     libmicrohttpd, or the connection is closed; the handler never sees
 *     them. Bytes that look like empty lines before a request line (CR LF,
 *     or a line starting with NUL) are skipped while the request is awaited,
 *     so such a connection ends at the idle timeout.
 *   - HEAD: the handler answers as for GET; libmicrohttpd sends the headers
 *     (with the body's Content-Length) and drops the body.
 *   - A handler that sets no status gets 500 with a short text body; so does
 *     one whose response ran out of memory.
 *
 * Thread rules: new/port/connections/destroy on any one thread (the owner
 * of the server). The handler and the request/response accessors run on
 * the web thread only, inside the handler call. The handler runs
 * synchronously and every request of every connection waits for it, so it
 * must not block for long.
 */
#ifndef MPH_IO_HTTP_H
#define MPH_IO_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mephisto/common.h"

/* Largest request body tolerated (and discarded) on GET/HEAD. */
#define MPH__HTTP_MAX_REQUEST_BODY 1024

typedef struct mph__http_server mph__http_server_t;
typedef struct mph__http_request mph__http_request_t;
typedef struct mph__http_response mph__http_response_t;

/* Called once per accepted GET/HEAD request on the web thread. req and
 * resp are borrowed until it returns. */
typedef void (*mph__http_handler_fn)(void *opaque,
                                     const mph__http_request_t *req,
                                     mph__http_response_t *resp);

/* Zero-initialise, set handler, and change what differs from the defaults.
 * Everything is read (and bind_address copied) during new(). */
typedef struct mph__http_config {
    /* IPv4 address to bind, dotted quad ("0.0.0.0" = all interfaces).
     * NULL means "127.0.0.1". */
    const char *bind_address;
    /* TCP port; 0 picks a free one (read it with mph__http_server_port). */
    uint16_t port;
    /* Connections served at once; 0 means 2048. Beyond it a new connection
     * closes the oldest one waiting for a request (the new one itself when
     * none waits). */
    unsigned max_connections;
    /* Connections one client address (IPv4) may hold; 0 means 256, more
     * than max_connections means max_connections. Beyond it a new
     * connection closes that address's oldest one waiting for a request
     * (the new one itself when none waits). Keep it below max_connections
     * so that one address cannot take every slot. */
    unsigned max_connections_per_address;
    /* Milliseconds a connection may wait for a complete request (request
     * line, headers and the small body a GET may carry), from its start or
     * from the end of its previous request, before it is closed whatever it
     * sends; 0 means 10000. */
    unsigned header_timeout_ms;
    /* Seconds a connection may stay idle (no byte received or sent) before
     * it is closed, which drops stalled clients; 0 means 10. */
    unsigned timeout_s;
    mph__http_handler_fn handler; /* required */
    void *opaque;                 /* passed to handler; borrowed */
} mph__http_config_t;

/* Binds, listens and starts the web thread. NULL on failure with the
 * reason in errstr (bad address, port in use, no handler, ...).
 * @locality any */
mph__http_server_t *mph__http_server_new(const mph__http_config_t *cfg,
                                         char *errstr, size_t errstr_size);

/* The bound TCP port (the chosen one when cfg->port was 0).
 * @locality owner */
uint16_t mph__http_server_port(const mph__http_server_t *srv);

/* Connections open right now (accepted and not yet closed by
 * libmicrohttpd, including those closed by a deadline or a cap that it has
 * not cleaned up yet), for stats and tests. @locality any */
unsigned mph__http_server_connections(const mph__http_server_t *srv);

/* Stops accepting, closes every connection (requests in flight are
 * abandoned), joins the web thread and frees srv. The handler is not
 * called after this returns. NULL is a no-op. Must not be called from the
 * handler. @locality owner */
void mph__http_server_destroy(mph__http_server_t *srv);

/* ---- Request (borrowed, valid during the handler call) ----------------- */

/* "GET" or "HEAD". */
const char *mph__http_request_method(const mph__http_request_t *req);

/* The path without the query string, %HH-decoded with libmicrohttpd's rule
 * ('+' is kept as '+'; an invalid % sequence is kept as is). A decoded %00
 * ends the C string early (mph__http_request_path_len() counts it: compare
 * with it, never with strlen alone) and a decoded %2F is indistinguishable
 * from '/': routes that care split mph__http_request_raw_path() on '/' and
 * decode each segment with mph__http_unescape(). */
const char *mph__http_request_path(const mph__http_request_t *req);

/* The decoded path's length, NUL bytes decoded from %00 included. */
size_t mph__http_request_path_len(const mph__http_request_t *req);

/* The path exactly as the client sent it (no decoding), without the query
 * string, e.g. "/tables/x/a%2Fb"; for an absolute-form target without the
 * scheme and authority ("/" when it has no path). */
const char *mph__http_request_raw_path(const mph__http_request_t *req);

/* The first query parameter named name (exact, case-sensitive match of the
 * decoded name), decoded ('+' becomes space, %HH decoded). "" for "?name"
 * without '='; NULL if absent. *len (optional) gets the decoded length,
 * which counts NUL bytes decoded from %00. */
const char *mph__http_request_query(const mph__http_request_t *req,
                                    const char *name, size_t *len);

/* The first request header named name (case-insensitive), or NULL.
 * *len (optional) gets its length. */
const char *mph__http_request_header(const mph__http_request_t *req,
                                     const char *name, size_t *len);

/* Decodes %HH sequences of s in place with libmicrohttpd's rule (as for
 * paths: '+' stays, invalid sequences stay) and returns the new length;
 * the result may hold NUL bytes. @locality any */
size_t mph__http_unescape(char *s);

/* ---- Response (borrowed, valid during the handler call) ---------------- */
/* Out of memory is sticky: once a setter returns MPH_ERR_NOMEM the client
 * gets 500 whatever else the handler does. MPH_ERR_INVALID and
 * MPH_ERR_RANGE leave the response as it was. */

/* 200..599 (1xx are not final answers). Errors: MPH_ERR_RANGE. Must be
 * called: no status means 500. */
mph_err_t mph__http_response_set_status(mph__http_response_t *resp,
                                        unsigned status);

/* Content-Type (copied). Default when unset: "text/plain; charset=utf-8"
 * if the body is not empty, none otherwise. Errors: MPH_ERR_INVALID (empty,
 * CR or LF), MPH_ERR_NOMEM. */
mph_err_t mph__http_response_set_content_type(mph__http_response_t *resp,
                                              const char *type);

/* Replaces the body with a copy of data[0..len). Errors: MPH_ERR_NOMEM. */
mph_err_t mph__http_response_set_body(mph__http_response_t *resp,
                                      const void *data, size_t len);

/* Appends a copy of data[0..len) to the body, which grows as needed.
 * Errors: MPH_ERR_NOMEM. */
mph_err_t mph__http_response_append(mph__http_response_t *resp,
                                    const void *data, size_t len);

/* Appends printf-formatted text. Errors: MPH_ERR_NOMEM. */
mph_err_t mph__http_response_appendf(mph__http_response_t *resp,
                                     const char *fmt, ...) MPH_PRINTF(2, 3);

/* Replaces the body with data[0..len), which must come from malloc();
 * the response owns it from this call on (it is freed even if the send
 * fails) and nothing is copied. data may be NULL when len is 0. */
void mph__http_response_take_body(mph__http_response_t *resp, char *data,
                                  size_t len);

/* Adds a response header (both copied), e.g. Location for a redirect.
 * Content-Length, Transfer-Encoding and Date are the server's.
 * Errors: MPH_ERR_INVALID (empty name or value, a name with space, tab, ':'
 * CR or LF, a value with CR or LF, or one of the server's headers),
 * MPH_ERR_NOMEM. */
mph_err_t mph__http_response_add_header(mph__http_response_t *resp,
                                        const char *name, const char *value);

#endif /* MPH_IO_HTTP_H */

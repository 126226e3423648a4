/*
 * mephisto/web.h — the app's own web routes (Faust's @app.page).
 *
 * The web view (settings web_enabled, web_bind, web_port) serves the
 * built-in routes (/, /stats, /metrics, /health, /ready, /router,
 * /tables/...; see docs/operations.md) and, after them, the routes an app
 * declares here:
 *
 *     static mph_err_t hello(const mph_web_request_t *req,
 *                            mph_web_response_t *resp, void *opaque)
 *     {
 *         mph_web_response_set_status(resp, 200);
 *         return mph_web_response_appendf(resp, "hello %s\n",
 *                                         mph_web_request_path(req));
 *     }
 *     mph_web_route(app, "GET", "/hello", hello, NULL);
 *
 * Matching: a route with prefix "/p" answers the path "/p" and every path
 * below it ("/p/...", not "/px"); the longest matching prefix wins. The
 * path is the %HH-decoded request path without the query string.
 *
 * Reserved: the built-in prefixes "/", "/index.html", "/stats",
 * "/metrics", "/health", "/ready", "/router" and "/tables" (and what lies
 * below them) cannot be declared; neither can a prefix twice.
 *
 * Limits:
 *   - Method: "GET" only; HEAD requests are answered by the GET handler
 *     with the body dropped. Other methods are answered 405 by the server
 *     without calling any handler. Request bodies are never read.
 *   - Body: a response body may hold at most MPH_WEB_MAX_BODY bytes; a
 *     write beyond it fails with MPH_ERR_RANGE and the client gets 500.
 *   - Time: handlers run one at a time on the web thread, and every other
 *     request (/health and /ready too) waits while one runs. Return within
 *     a second; a handler that takes longer is logged (warning). Nothing
 *     interrupts a handler.
 *   - Status: a handler that returns an error code, or returns MPH_OK
 *     without setting a status, makes the client get 500 with the JSON
 *     body {"error": "<prefix>: <reason>"}; the body it wrote is dropped
 *     (headers it added stay).
 *
 * Table lookups: mph_table_lookup() works from a handler (the web thread is
 * not a worker): it asks the worker that owns the key's shard and waits
 * for its answer, at most timeout_ms, so keep timeout_ms at or below
 * 1000. Keys of partitions owned by another process give
 * MPH_ERR_PARTITION (their owner is in /router).
 *
 * Threads: mph_web_route() on the app's controlling thread before
 * mph_app_start(). The handler and every mph_web_request_* /
 * mph_web_response_* call run on the web thread, inside the handler call.
 * A handler must not call mph_app_stop() or mph_app_destroy() (they wait
 * for the web thread to finish its requests); mph_app_request_stop() is
 * fine. With web_enabled=false the routes are declared but not served.
 */
#ifndef MEPHISTO_WEB_H
#define MEPHISTO_WEB_H

#include <stddef.h>

#include "mephisto/app.h"
#include "mephisto/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest response body of a declared route, in bytes (16 MiB). */
#define MPH_WEB_MAX_BODY (16u * 1024u * 1024u)

typedef struct mph_web_request mph_web_request_t;
typedef struct mph_web_response mph_web_response_t;

/* Called on the web thread for each GET (or HEAD) of a path under the
 * route's prefix. req and resp are borrowed until it returns. Returns
 * MPH_OK after setting a status, or an error code (the client gets 500). */
typedef mph_err_t(mph_web_handler_fn)(const mph_web_request_t *req, mph_web_response_t *resp,
                                      void *opaque);

/* Declares a route: GET requests for prefix and the paths below it call
 * fn(req, resp, opaque). method must be "GET". prefix starts with '/', has
 * no trailing '/', no "//", no '?', '#' or control character, and at most
 * 256 bytes. prefix is copied; opaque is borrowed for the app's life.
 * Errors: MPH_ERR_INVALID (NULL app or fn, a method other than GET, a bad
 * prefix), MPH_ERR_EXISTS (the prefix is reserved by a built-in route or
 * already declared), MPH_ERR_STATE (the app was started), MPH_ERR_NOMEM.
 * @locality the app's controlling thread, before mph_app_start */
MPH_EXPORT mph_err_t mph_web_route(mph_app_t *app, const char *method, const char *prefix,
                                   mph_web_handler_fn *fn, void *opaque);

/* ---- the request (borrowed, valid during the handler call) ---- */

/* "GET" or "HEAD". */
MPH_EXPORT const char *mph_web_request_method(const mph_web_request_t *req);
/* The %HH-decoded path without the query string; '+' stays '+'. A decoded
 * %00 ends the C string early: *len (optional) gets the whole length. */
MPH_EXPORT const char *mph_web_request_path(const mph_web_request_t *req, size_t *len);
/* The part of the decoded path after the route's prefix: "" for the
 * prefix itself, "/a/b" for prefix + "/a/b". *len as above. */
MPH_EXPORT const char *mph_web_request_subpath(const mph_web_request_t *req, size_t *len);
/* The path as the client sent it (not decoded), without the query. */
MPH_EXPORT const char *mph_web_request_raw_path(const mph_web_request_t *req);
/* The first query parameter called name, decoded ('+' is a space); "" for
 * "?name" without '='; NULL when absent. *len (optional) gets its length,
 * NUL bytes decoded from %00 included. */
MPH_EXPORT const char *mph_web_request_query(const mph_web_request_t *req, const char *name,
                                             size_t *len);
/* The first request header called name (case-insensitive), or NULL. */
MPH_EXPORT const char *mph_web_request_header(const mph_web_request_t *req, const char *name,
                                              size_t *len);

/* ---- the response (borrowed, valid during the handler call) ---- */

/* 200..599. Errors: MPH_ERR_RANGE. */
MPH_EXPORT mph_err_t mph_web_response_set_status(mph_web_response_t *resp, unsigned status);
/* Content-Type (copied); default "text/plain; charset=utf-8" when the body
 * is not empty. Errors: MPH_ERR_INVALID (empty, CR or LF), MPH_ERR_NOMEM. */
MPH_EXPORT mph_err_t mph_web_response_set_content_type(mph_web_response_t *resp,
                                                       const char *type);
/* Replaces the body with a copy of data[0..len). Errors: MPH_ERR_RANGE
 * (over MPH_WEB_MAX_BODY), MPH_ERR_NOMEM. */
MPH_EXPORT mph_err_t mph_web_response_set_body(mph_web_response_t *resp, const void *data,
                                               size_t len);
/* Appends a copy of data[0..len) to the body. Errors as set_body. */
MPH_EXPORT mph_err_t mph_web_response_append(mph_web_response_t *resp, const void *data,
                                             size_t len);
/* Appends printf-formatted text. Errors as set_body. */
MPH_EXPORT mph_err_t mph_web_response_appendf(mph_web_response_t *resp, const char *fmt, ...)
    MPH_PRINTF(2, 3);
/* Adds a header (both copied). Content-Length, Transfer-Encoding and Date
 * are the server's. Errors: MPH_ERR_INVALID (empty name or value, a name
 * with space, tab, ':', CR or LF, a value with CR or LF, or a server
 * header), MPH_ERR_NOMEM. */
MPH_EXPORT mph_err_t mph_web_response_add_header(mph_web_response_t *resp, const char *name,
                                                 const char *value);

#ifdef __cplusplus
}
#endif
#endif

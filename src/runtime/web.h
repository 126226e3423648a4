/*
 * The web view (internal): the routes of the app's HTTP server (Faust's
 * web views). src/io/http.c is the server; this module decides what each
 * path answers. See web.c.
 *
 * Lifecycle (the engine's part): after mph_app_start() has the workers
 * running, app->web = mph__web_start(app, ...); before the workers are
 * torn down, mph__web_stop(app->web). Between the two, every request reads
 * the workers' monitors lock-free and never waits for a worker.
 */
#ifndef MPH_RUNTIME_WEB_H
#define MPH_RUNTIME_WEB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/app.h"
#include "runtime/monitor.h"

struct mph__web;

/* Starts the web view of a running app on web_bind:web_port (settings of
 * mph_app_conf(app); web_port 0 picks a free port) and logs
 * "web view at http://host:port/". Returns the owned view, or NULL:
 *   - web_enabled is false: NULL with errstr set to "" (not a failure);
 *   - the server cannot start (address, port in use, ...): NULL with the
 *     reason in errstr.
 * app is borrowed until mph__web_stop() returns.
 * @locality the app's controlling thread */
struct mph__web *mph__web_start(mph_app_t *app, char *errstr,
                                size_t errstr_size);

/* Stops the server (requests in flight are abandoned; no handler runs
 * after it returns) and frees web. NULL is a no-op. Must be called before
 * the app's workers are destroyed. @locality controlling */
void mph__web_stop(struct mph__web *web);

/* The bound TCP port, -1 for NULL. @locality controlling */
int mph__web_port(const struct mph__web *web);

/* HTTP connections open now (idle ones included), 0 for NULL.
 * @locality controlling */
unsigned mph__web_connections(const struct mph__web *web);

/* Answers GET / with the page (web_page.c), rendered from a stats snapshot
 * of app (or with "-" when the app does not run). @locality web */
struct mph__http_response;
void mph__web_page(mph_app_t *app, struct mph__http_response *resp);

/* ---- exposed for tests ------------------------------------------------- */

/* Renders st as Prometheus text (exposition format 0.0.4): a malloc'd
 * NUL-terminated string in *out (free() it). Errors: MPH_ERR_NOMEM,
 * MPH_ERR_INVALID (a name the format rejects). */
mph_err_t mph__web_metrics(const mph__stats_t *st, char **out, size_t *len);

/* Called once per (topic, partition) of an assignment; topic is not
 * NUL-terminated and is borrowed for the call. */
typedef void (*mph__web_assignment_fn)(void *opaque, const char *topic,
                                       size_t topic_len, int32_t partition);

/* Parses a group member's assignment in the Kafka consumer protocol format
 * (ConsumerProtocolAssignment: int16 version, array of (string topic,
 * array of int32 partitions), then user data that is ignored), big-endian
 * and bounds-checked: these are bytes from the outside. Empty input is an
 * empty assignment. Errors: MPH_ERR_DECODE (truncated or negative lengths,
 * negative version); fn may have been called for what preceded the error.
 * @locality any */
mph_err_t mph__web_parse_assignment(const void *buf, size_t len,
                                    mph__web_assignment_fn fn, void *opaque);

/* The web address a member publishes in its client.id,
 * "<app_id>@<host>:<port>", as "host:port" in out. A host of 0.0.0.0 is
 * replaced by client_host (the address the broker sees, e.g.
 * "/10.0.0.7"; its leading '/' dropped). False when client_id carries no
 * valid address. @locality any */
bool mph__web_member_address(const char *client_id, const char *client_host,
                             char *out, size_t out_size);

#endif

/*
 * mephisto/app.h — the app: configuration, lifecycle, and the registry of
 * topics and agents (Faust's faust.App).
 *
 * Lifecycle: mph_app_new() → declare topics (topic.h) and agents (agent.h)
 * → mph_app_start() → ... → mph_app_stop() → mph_app_destroy().
 * mph_app_run() is start + wait for a stop request.
 *
 * Declarations are only allowed before start (MPH_ERR_STATE after).
 *
 * Threads started by mph_app_start(): one coordinator (group membership,
 * partition hand-over, commits) and `workers` worker threads (everything
 * about the partitions they own, user callbacks included). No signal
 * handlers and no process-global state are installed: an embedding service
 * keeps control of its process.
 *
 * Thread safety: mph_app_new/start/stop/destroy are called from one
 * controlling thread (not from an agent callback). mph_app_request_stop()
 * may be called from any thread and from a signal handler (it only writes
 * to an eventfd).
 */
#ifndef MEPHISTO_APP_H
#define MEPHISTO_APP_H

#include "mephisto/common.h"
#include "mephisto/conf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mph_app mph_app_t;

/* A new app. Takes ownership of conf on success only (on failure the caller
 * still owns it). Fails when app_id is missing or a setting is inconsistent
 * (e.g. processing_guarantee=exactly_once with a mock:// broker, which
 * cannot run it); errstr names the setting. The broker is not contacted until start. */
MPH_EXPORT mph_app_t *mph_app_new(mph_conf_t *conf, char *errstr, size_t errstr_size);

/* Connects, creates the topics the app declared as its own (internal topics,
 * changelogs, dead-letter topic), checks that source topics exist, starts the
 * coordinator and workers, and joins the consumer group. Returns once the
 * threads run (partitions are assigned asynchronously). On failure nothing
 * is left running and errstr says why: MPH_ERR_TRANSPORT/TIMEOUT when the
 * broker does not answer within shutdown_timeout_ms, MPH_ERR_NOENT for a
 * missing source topic, MPH_ERR_STATE when already started. Under
 * processing_guarantee=exactly_once each worker's transactional producer is
 * initialised here (fencing an earlier process with the same identity) and
 * a broker that cannot run transactions fails the start (MPH_ERR_INVALID,
 * errstr names processing_guarantee); without group_instance_id the
 * process id is read from, or made in, <datadir>/<app_id>/process-id. */
MPH_EXPORT mph_err_t mph_app_start(mph_app_t *app, char *errstr, size_t errstr_size);

/* Graceful stop: finish the events already dequeued, flush produced records,
 * commit every partition's commit point (exactly_once: commit each worker's
 * open transaction, leaving none open), leave the group, join the threads.
 * Completes within shutdown_timeout_ms even if the broker is gone (what
 * could not be committed then is re-processed after restart). Returns the
 * error that stopped the app, if one did (e.g. an agent failure under
 * on_agent_error=stop), else MPH_OK. Idempotent. */
MPH_EXPORT mph_err_t mph_app_stop(mph_app_t *app);

/* Asks the app to stop; returns at once. Async-signal-safe. @locality any */
MPH_EXPORT void mph_app_request_stop(mph_app_t *app);

/* Blocks until a stop is requested (mph_app_request_stop, a fatal error, or
 * on_agent_error=stop), then stops gracefully like mph_app_stop(). */
MPH_EXPORT mph_err_t mph_app_wait(mph_app_t *app);

/* mph_app_start() then mph_app_wait(). */
MPH_EXPORT mph_err_t mph_app_run(mph_app_t *app, char *errstr, size_t errstr_size);

/* Stops the app if running, then frees it with its topics and agents. NULL
 * is a no-op. */
MPH_EXPORT void mph_app_destroy(mph_app_t *app);

/* Hands ptr to the app: free_fn(ptr) runs in mph_app_destroy(), after the
 * threads stopped. For state a plugin allocates per app (its agents'
 * opaque pointers). MPH_ERR_NOMEM leaves ptr with the caller. */
MPH_EXPORT mph_err_t mph_app_keep(mph_app_t *app, void *ptr, void (*free_fn)(void *));

/* The app's configuration (borrowed; read-only; lives with the app). */
MPH_EXPORT const mph_conf_t *mph_app_conf(const mph_app_t *app);
/* Shortcut for mph_conf_get(mph_app_conf(app), name). Borrowed. */
MPH_EXPORT const char *mph_app_get(const mph_app_t *app, const char *name);
MPH_EXPORT const char *mph_app_id(const mph_app_t *app);
/* Number of worker threads (resolved from `workers`, `cpus`, cores). */
MPH_EXPORT int mph_app_workers(const mph_app_t *app);
/* True between a successful start and the end of stop. @locality any */
MPH_EXPORT bool mph_app_running(const mph_app_t *app);

#ifdef __cplusplus
}
#endif
#endif

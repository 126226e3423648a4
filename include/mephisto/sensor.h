/*
 * mephisto/sensor.h — statistics and user sensors (Faust's Monitor and
 * Sensor).
 *
 * Every worker thread counts what it does (events, sends, latencies,
 * partition positions) in counters of its own; a reader merges them when it
 * asks. mph_app_stats_json() returns that merged picture as the same JSON
 * document the web view serves at /stats (docs/operations.md describes every
 * field).
 *
 * A user sensor is a set of callbacks the app calls as things happen, for
 * users who want to feed their own monitoring system. Build one with
 * mph_sensor_new(), set the callbacks it needs, and register it with
 * mph_app_add_sensor() before mph_app_start(). Callbacks that are not set
 * cost nothing; an app without sensors pays one predictable branch per
 * recorded event.
 *
 * Which thread runs which callback:
 *   on_event, on_agent, on_send, on_send_completed, on_send_error,
 *   on_partition   the worker thread that owns the event's partition (the
 *                  same thread that runs the agents), right after the
 *                  action they describe; never concurrently for one worker
 *                  (different workers call concurrently: a sensor shared
 *                  by several workers must synchronise its own state)
 *   on_commit, on_rebalance
 *                  the app's coordinator thread
 * A callback must be short and must not block: it runs on the event path.
 * It must not call back into the app (start/stop/destroy). Strings passed to
 * callbacks (topic and agent names) are borrowed until the callback returns.
 * No callback is ever called on a librdkafka, RocksDB or web server thread.
 */
#ifndef MEPHISTO_SENSOR_H
#define MEPHISTO_SENSOR_H

#include "mephisto/app.h"
#include "mephisto/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- statistics ------------------------------------------------------- */

/* The app's statistics as a JSON document (the one /stats serves): totals,
 * per worker, per topic and partition (events, read offset, commit point,
 * end offset, lag), per agent, latency percentiles, sends, commits and
 * rebalances. On success *json_out is a malloc'd, NUL-terminated string
 * (transferred: release it with free()) and *len its length without the
 * NUL. Reading never blocks a worker (counters are read lock-free); it may
 * wait briefly for another reader of the same app.
 * Errors: MPH_ERR_INVALID (a NULL argument), MPH_ERR_STATE (the app is not
 * running), MPH_ERR_NOMEM.
 * @locality any thread, while the app runs: the caller must not let the
 * call overlap mph_app_stop(), mph_app_wait() returning, or
 * mph_app_destroy(). */
MPH_EXPORT mph_err_t mph_app_stats_json(mph_app_t *app, char **json_out,
                                        size_t *len);

/* ---- user sensors ----------------------------------------------------- */

typedef struct mph_sensor mph_sensor_t;

/* An event of topic[partition] at offset was processed by every agent
 * subscribed to the topic; latency_ns is the time from the worker taking
 * it to the last agent returning. (Faust: on_stream_event_out.) */
typedef void(mph_sensor_event_fn)(void *opaque, int worker, const char *topic,
                                  int32_t partition, int64_t offset,
                                  uint64_t latency_ns);

/* Agent agent returned from its callback for one event; failed when it
 * returned an error. (Faust: on_stream_event_in/out, per stream.) */
typedef void(mph_sensor_agent_fn)(void *opaque, int worker, const char *agent,
                                  bool failed);

/* A record to topic was handed to the worker's producer.
 * (Faust: on_send_initiated.) */
typedef void(mph_sensor_send_fn)(void *opaque, int worker, const char *topic);

/* The broker acknowledged a record the worker sent; latency_ns is the time
 * from produce to the acknowledgement. (Faust: on_send_completed.) */
typedef void(mph_sensor_send_completed_fn)(void *opaque, int worker,
                                           uint64_t latency_ns);

/* A record to topic[partition] failed: retrying true when it is being
 * sent again, false when the failure is permanent (the app then stops
 * without committing past its source). (Faust: on_send_error.) */
typedef void(mph_sensor_send_error_fn)(void *opaque, int worker,
                                       const char *topic, int32_t partition,
                                       mph_err_t err, bool retrying);

/* The worker took over topic[partition] (assigned true) or handed it back
 * (false). (Faust: on_assignment_completed, per partition.) */
typedef void(mph_sensor_partition_fn)(void *opaque, int worker,
                                      const char *topic, int32_t partition,
                                      bool assigned);

/* A commit of offsets finished: err is MPH_OK or why it failed;
 * latency_us is how long the broker took. Runs on the coordinator thread.
 * Not called under exactly_once, where offsets commit inside each worker's
 * transaction (see /stats transactions_committed and
 * transaction_commit_latency_ns).
 * (Faust: on_commit_completed.) */
typedef void(mph_sensor_commit_fn)(void *opaque, mph_err_t err,
                                   uint64_t latency_us);

/* The group rebalanced: partitions were assigned to this process
 * (assigned true) or revoked from it (false). Runs on the coordinator
 * thread after the hand-over to or from the workers was started.
 * (Faust: on_rebalance_end.) */
typedef void(mph_sensor_rebalance_fn)(void *opaque, bool assigned,
                                      int partitions);

/* A new sensor with no callbacks. opaque is passed to every callback
 * (borrowed: the caller keeps it alive as long as the sensor is
 * registered). Owned by the caller: destroy it with mph_sensor_destroy()
 * after every app it was added to was destroyed. NULL with errstr when out
 * of memory. @locality any */
MPH_EXPORT mph_sensor_t *mph_sensor_new(void *opaque, char *errstr,
                                        size_t errstr_size);

/* Frees the sensor. NULL is a no-op. Only after every app it was added to
 * was destroyed. */
MPH_EXPORT void mph_sensor_destroy(mph_sensor_t *sensor);

/* Setters: fn replaces the previous callback of that kind; NULL removes it.
 * Only before the sensor is added to an app. Errors: MPH_ERR_INVALID (NULL
 * sensor), MPH_ERR_STATE (already added to an app).
 * @locality the thread that builds the sensor */
MPH_EXPORT mph_err_t mph_sensor_on_event(mph_sensor_t *sensor,
                                         mph_sensor_event_fn *fn);
MPH_EXPORT mph_err_t mph_sensor_on_agent(mph_sensor_t *sensor,
                                         mph_sensor_agent_fn *fn);
MPH_EXPORT mph_err_t mph_sensor_on_send(mph_sensor_t *sensor,
                                        mph_sensor_send_fn *fn);
MPH_EXPORT mph_err_t mph_sensor_on_send_completed(
    mph_sensor_t *sensor, mph_sensor_send_completed_fn *fn);
MPH_EXPORT mph_err_t mph_sensor_on_send_error(mph_sensor_t *sensor,
                                              mph_sensor_send_error_fn *fn);
MPH_EXPORT mph_err_t mph_sensor_on_partition(mph_sensor_t *sensor,
                                             mph_sensor_partition_fn *fn);
MPH_EXPORT mph_err_t mph_sensor_on_commit(mph_sensor_t *sensor,
                                          mph_sensor_commit_fn *fn);
MPH_EXPORT mph_err_t mph_sensor_on_rebalance(mph_sensor_t *sensor,
                                             mph_sensor_rebalance_fn *fn);

/* Registers sensor with app; from then on its callbacks are called as
 * described above, in registration order among sensors. The sensor is
 * borrowed until mph_app_destroy(app) returns; one sensor may be added to
 * several apps. Before mph_app_start() only.
 * Errors: MPH_ERR_INVALID (a NULL argument), MPH_ERR_STATE (the app was
 * started), MPH_ERR_EXISTS (already added to this app), MPH_ERR_NOMEM.
 * @locality the app's controlling thread */
MPH_EXPORT mph_err_t mph_app_add_sensor(mph_app_t *app, mph_sensor_t *sensor);

#ifdef __cplusplus
}
#endif
#endif /* MEPHISTO_SENSOR_H */

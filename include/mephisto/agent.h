/*
 * mephisto/agent.h — agents and events (Faust's @app.agent and the stream
 * it iterates).
 *
 * An agent is a callback subscribed to one or more topics. Each event of a
 * subscribed topic is delivered, in partition order, on the worker thread
 * that owns the event's partition; agents sharing a topic are called in
 * declaration order with the same event. A callback returns MPH_OK, or an
 * error: the event is then counted as failed, logged with topic, partition
 * and offset, and the app's on_agent_error policy decides (log: continue;
 * stop: stop the app without committing past this event).
 *
 * Event data (key, value, headers, topic name) is borrowed until the
 * callback returns. Records sent from a callback go through the worker's
 * own producer and hold back the source partition's commit point until the
 * broker acknowledged them (at-least-once).
 *
 * @locality callbacks run on worker threads; mph_event_* functions may only
 * be called on that thread during the callback.
 */
#ifndef MEPHISTO_AGENT_H
#define MEPHISTO_AGENT_H

#include "mephisto/app.h"
#include "mephisto/topic.h"
#include "mephisto/json.h"
#include "mephisto/record.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mph_agent mph_agent_t;
typedef struct mph_event mph_event_t;

/* A record header (name and value borrowed for the duration of the call). */
typedef struct mph_header {
    const char *name;
    const void *value;
    size_t len;
} mph_header_t;

#define MPH_PARTITION_ANY (-1)

typedef mph_err_t(mph_agent_fn)(mph_event_t *ev, void *opaque);

/* Declares an agent on app subscribed to topic. opaque is passed to fn
 * untouched (owned by the caller; must outlive the app). Before start only.
 * NULL with errstr on failure (duplicate name, NULL fn, app started). */
MPH_EXPORT mph_agent_t *mph_agent_new(mph_app_t *app, const char *name, mph_topic_t *topic,
                                      mph_agent_fn *fn, void *opaque, char *errstr,
                                      size_t errstr_size);
/* Subscribes agent to one more topic. Before start only. */
MPH_EXPORT mph_err_t mph_agent_subscribe(mph_agent_t *agent, mph_topic_t *topic);
/* Declares a sink: mph_event_emit() from this agent sends to every sink. */
MPH_EXPORT mph_err_t mph_agent_add_sink(mph_agent_t *agent, mph_topic_t *sink);
MPH_EXPORT const char *mph_agent_name(const mph_agent_t *agent);

/* Computes the new key of ev for mph_group_by: set *key (borrowed until the
 * callback returns, e.g. a pointer into the event's value) and *key_len and
 * return MPH_OK; MPH_ERR_NOENT drops the event; another error fails it. */
typedef mph_err_t(mph_key_fn)(mph_event_t *ev, const void **key, size_t *key_len, void *opaque);

/* Faust's stream.group_by(): declares the repartition topic
 * `<app_id>-<name>-repartition` and an agent `name` on source that sends
 * each event's value and headers there under the key fn returns. Returns the
 * repartition topic, to which agents that use tables subscribe. Before start
 * only; NULL with errstr on failure. */
MPH_EXPORT mph_topic_t *mph_group_by(mph_app_t *app, const char *name, mph_topic_t *source,
                                     mph_key_fn *fn, void *opaque, char *errstr,
                                     size_t errstr_size);

/* --- the event (borrowed until the callback returns) --- */
MPH_EXPORT const void *mph_event_key(const mph_event_t *ev, size_t *len);
MPH_EXPORT const void *mph_event_value(const mph_event_t *ev, size_t *len);
MPH_EXPORT mph_topic_t *mph_event_topic(const mph_event_t *ev);
MPH_EXPORT int32_t mph_event_partition(const mph_event_t *ev);
MPH_EXPORT int64_t mph_event_offset(const mph_event_t *ev);
/* Record timestamp in ms since the epoch (-1 when the record has none). */
MPH_EXPORT int64_t mph_event_timestamp(const mph_event_t *ev);

/* What a record timestamp means: set by the producer (CreateTime, the
 * default; mephisto's derived records carry their source's event time) or
 * by the broker when it appended the record (a topic with
 * message.timestamp.type=LogAppendTime). */
typedef enum mph_timestamp_type {
    MPH_TIMESTAMP_NONE = 0,           /* the record has no timestamp */
    MPH_TIMESTAMP_CREATE_TIME = 1,    /* the producer's */
    MPH_TIMESTAMP_LOG_APPEND_TIME = 2 /* the broker's */
} mph_timestamp_type_t;
/* The type of mph_event_timestamp(ev). */
MPH_EXPORT mph_timestamp_type_t mph_event_timestamp_type(const mph_event_t *ev);
/* The last header named name: MPH_OK, or MPH_ERR_NOENT. */
MPH_EXPORT mph_err_t mph_event_header(const mph_event_t *ev, const char *name,
                                      const void **value, size_t *len);
MPH_EXPORT size_t mph_event_header_count(const mph_event_t *ev);
MPH_EXPORT mph_err_t mph_event_header_at(const mph_event_t *ev, size_t idx, const char **name,
                                         const void **value, size_t *len);
/* The value parsed as JSON, for mph_json_* lookups from MPH_JSON_ROOT.
 * Parsed once per event and shared by the topic's agents: already parsed
 * and validated when the topic's value codec is json; parsed on first call
 * otherwise. NULL when the value is not JSON (*err says why when err is not
 * NULL). The parser and what it returns are borrowed until the callback
 * returns. */
MPH_EXPORT mph_json_parser_t *mph_event_json(mph_event_t *ev, mph_err_t *err);
/* The decoded record of a topic whose value codec is a record type (see
 * mph_topic_opts_set_record); NULL otherwise. Borrowed until return. */
MPH_EXPORT const mph_record_t *mph_event_record(mph_event_t *ev);
/* The value (or key) of an i64-codec topic: 8 bytes big-endian. */
MPH_EXPORT mph_err_t mph_event_value_i64(const mph_event_t *ev, int64_t *out);
MPH_EXPORT mph_err_t mph_event_key_i64(const mph_event_t *ev, int64_t *out);

/* Index of the worker thread running the callback (0-based). */
MPH_EXPORT int mph_event_worker(const mph_event_t *ev);
MPH_EXPORT mph_agent_t *mph_event_agent(const mph_event_t *ev);
MPH_EXPORT mph_app_t *mph_event_app(const mph_event_t *ev);

/* Sends a record from inside a callback through the worker's producer. Key,
 * value and headers are copied. The record carries the event's timestamp
 * (its event time; the wall clock when the event has none), as do
 * mph_event_emit, mph_event_forward, mph_group_by's repartition records
 * and sends from a window's on_close (the closing event's); see
 * mph_event_send_ts for another time. partition: MPH_PARTITION_ANY picks by key
 * (murmur2, as the Java client; round-robin for a NULL key). Blocks
 * (serving delivery reports) while the worker's producer holds
 * producer_buffer_max_bytes, which is how a slow broker back-pressures the
 * stream. A record too large for every topic of the app (the producer
 * follows the topics' max.message.bytes) goes through topic's
 * on_send_error: dead_letter and skip return MPH_OK (the source record was
 * dead-lettered, or the record counted and dropped), fail stops the app
 * without committing past the event and returns MPH_ERR_RANGE. Records the
 * broker refuses later (a topic with a smaller max.message.bytes) follow
 * the same policy from their delivery report. Errors: MPH_ERR_INVALID
 * (topic not declared on this app), MPH_ERR_STOPPED (the app stops; the
 * event is not committed), MPH_ERR_RANGE, MPH_ERR_KAFKA. */
MPH_EXPORT mph_err_t mph_event_send(mph_event_t *ev, mph_topic_t *topic, int32_t partition,
                                    const void *key, size_t key_len, const void *value,
                                    size_t value_len, const mph_header_t *headers,
                                    size_t header_count);
/* As mph_event_send, with the record's timestamp (ms since the epoch):
 * timestamp_ms < 0 means "derived", the event's own timestamp (the wall
 * clock when the event has none), which is what mph_event_send does.
 * (Kafka clients cannot produce a timestamp of 0: it means "now".) */
MPH_EXPORT mph_err_t mph_event_send_ts(mph_event_t *ev, mph_topic_t *topic, int32_t partition,
                                       const void *key, size_t key_len, const void *value,
                                       size_t value_len, const mph_header_t *headers,
                                       size_t header_count, int64_t timestamp_ms);
/* Sends to every sink of the running agent (with the event's timestamp). */
MPH_EXPORT mph_err_t mph_event_emit(mph_event_t *ev, const void *key, size_t key_len,
                                    const void *value, size_t value_len);
/* Forwards the event unchanged (key, value, headers, timestamp) to topic. */
MPH_EXPORT mph_err_t mph_event_forward(mph_event_t *ev, mph_topic_t *topic);

/* --- sending from outside a callback --- */

/* Called once per record sent with mph_send(), on the app's coordinator
 * thread, with MPH_OK or the delivery error. Never called if mph_send()
 * returned an error. */
typedef void(mph_delivery_fn)(mph_err_t err, void *opaque);

/* Sends a record from any thread (not from a callback: use mph_event_send
 * there). Returns after the record is enqueued; cb (may be NULL) reports the
 * outcome. Key, value and headers are copied. MPH_ERR_STATE before start,
 * MPH_ERR_FULL when the producer queue stays full for 1 s. @locality any */
MPH_EXPORT mph_err_t mph_send(mph_app_t *app, mph_topic_t *topic, int32_t partition,
                              const void *key, size_t key_len, const void *value,
                              size_t value_len, const mph_header_t *headers,
                              size_t header_count, mph_delivery_fn *cb, void *opaque);
/* As mph_send with the record's timestamp in ms since the epoch;
 * timestamp_ms < 0 (what mph_send does) means the wall clock now.
 * @locality any */
MPH_EXPORT mph_err_t mph_send_ts(mph_app_t *app, mph_topic_t *topic, int32_t partition,
                                 const void *key, size_t key_len, const void *value,
                                 size_t value_len, const mph_header_t *headers,
                                 size_t header_count, mph_delivery_fn *cb, void *opaque,
                                 int64_t timestamp_ms);


/* --- per-partition punctuators (Kafka Streams' punctuate) ---
 *
 * A punctuator calls fn once per interval_ms for every partition of the
 * agent's topics that this process owns, on the worker thread that owns
 * the partition, between events (never during one). flags is exactly one
 * of:
 *   MPH_PUNCTUATE_WALL    by the monotonic wall clock, on a grid of
 *                         interval_ms shared by the worker's partitions
 *                         (a partition's first run may come sooner than
 *                         one interval after it was assigned);
 *   MPH_PUNCTUATE_STREAM  by the partition's stream time, the highest
 *                         record timestamp processed on it: the first run
 *                         once it has moved interval_ms past the first
 *                         timestamp seen, then each time it moved
 *                         interval_ms past the last run's stream time.
 * A run that comes more than one interval late runs once, and the
 * intervals it missed are counted as overruns (/stats), never queued.
 *
 * fn gets an event-like handle: mph_event_partition, _topic, _agent,
 * _worker and _app work; mph_event_timestamp returns time_ms (the wall
 * clock in ms since the epoch, or the stream time); there is no record
 * (key and value are NULL, offset -1, no headers; mph_event_forward
 * returns MPH_ERR_INVALID). Sends (mph_event_send, _emit) and table and
 * window calls work as from an event on that partition, and the commit
 * point tracks them: under exactly_once they belong to the worker's open
 * transaction; under at_least_once a commit makes table changes durable
 * only after every punctuator send made before it was acknowledged, so a
 * crash never keeps a punctuator's table change while losing its output
 * (the punctuator runs again on the state as of the last commit). A
 * returned error is counted and logged and follows on_agent_error (stop:
 * the app stops); MPH_ERR_STORE and MPH_ERR_DISK_FULL always stop it.
 *
 * interval_ms: 1 .. 86400000. An agent may have several punctuators.
 * Before start only. Errors: MPH_ERR_INVALID (NULL agent or fn, bad flags
 * or interval: nothing declared), MPH_ERR_STATE (app started),
 * MPH_ERR_NOMEM. opaque is the caller's and must outlive the app.
 * @locality fn runs on worker threads */
#define MPH_PUNCTUATE_WALL   0x1
#define MPH_PUNCTUATE_STREAM 0x2
typedef mph_err_t(mph_punctuate_fn)(mph_event_t *ev, int64_t time_ms, void *opaque);
MPH_EXPORT mph_err_t mph_agent_punctuate(mph_agent_t *agent, int64_t interval_ms, int flags,
                                         mph_punctuate_fn *fn, void *opaque);

/* --- batching agents (Faust's stream.take(max_n, within)) ---
 *
 * Makes agent a batching agent: its callback then runs once per batch of
 * up to max_n events of one partition, on the worker that owns it, when
 * max_n events arrived, or within_ms after the batch's first event
 * arrived, or at the worker's next commit (commit_interval_ms; so a batch
 * never spans two commits or, under exactly_once, two transactions), or
 * before its partition is handed back or the app stops gracefully,
 * whichever comes first. Inside the callback, mph_event_batch_count()
 * says how many events the batch holds and mph_event_batch_select() makes
 * one of them the current event for every mph_event_* accessor (the first
 * is current when the callback starts; mph_event_json() and
 * mph_event_record() are of the current event, borrowed until the next
 * select or the callback's return).
 *
 * None of the batch's offsets is committed before the callback returned
 * MPH_OK and every record it sent was acknowledged. A batch whose
 * callback fails is handled as a whole by on_agent_error: `log` counts it
 * (batch_errors) and treats all its events as processed (nothing is
 * retried); `stop` stops the app without committing past the batch's
 * first event, so the whole batch is delivered again after a restart
 * (the engine itself never calls a failed batch again). Other agents of
 * the same topic still get each event at once.
 *
 * max_n: 1 .. 100000; within_ms: 1 .. 3600000. Before start only.
 * Errors: MPH_ERR_INVALID (out of range: nothing changes), MPH_ERR_STATE
 * (app started). @locality the callback runs on worker threads */
MPH_EXPORT mph_err_t mph_agent_batch(mph_agent_t *agent, size_t max_n, int64_t within_ms);
/* Events in the batch being delivered; 0 outside a batching agent's
 * callback. */
MPH_EXPORT size_t mph_event_batch_count(const mph_event_t *ev);
/* Makes the batch's event i (0-based) current: MPH_OK, or MPH_ERR_RANGE
 * (i >= count; nothing changes). */
MPH_EXPORT mph_err_t mph_event_batch_select(mph_event_t *ev, size_t i);

#ifdef __cplusplus
}
#endif
#endif

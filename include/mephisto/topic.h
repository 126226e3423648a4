/*
 * mephisto/topic.h — topics (Faust's app.topic()).
 *
 * A topic declared on an app is a source (agents subscribe to it) and/or a
 * sink (agents send to it). Options are set by name on an mph_topic_opts_t:
 *
 *   key_codec, value_codec   raw (default) | string | json | i64 | a codec
 *                            registered on the app with mph_codec_register
 *                            (mephisto/codec.h; register it before setting
 *                            the option). To send values in a codec's form:
 *                            mph_event_send_i64/_string/_json/_record and
 *                            mph_event_send_encoded (codec.h)
 *   partitions               for topics the app creates (default: the
 *                            topic_partitions setting); for existing topics
 *                            the broker's count is used
 *   replication              for topics the app creates (default:
 *                            topic_replication_factor)
 *   create                   true: create at start if missing (default false
 *                            for user topics: a missing source topic is an
 *                            error at start)
 *   on_decode_error          dead_letter | skip | fail (default: the app's
 *                            on_decode_error setting). A key or value that
 *                            fails its codec (string: invalid UTF-8; json:
 *                            not one well-formed document; i64: not 8 bytes;
 *                            record: schema violation; any codec but raw:
 *                            a null value) never reaches an agent:
 *                            dead_letter sends the original record to
 *                            `<app_id>-dead-letter` with headers mph.error,
 *                            mph.topic, mph.partition, mph.offset; skip
 *                            counts and logs it; fail stops the app without
 *                            committing past it. The offset moves past a
 *                            dead-lettered record only once the broker
 *                            acknowledged the dead-letter write.
 *   on_send_error            dead_letter | skip | fail (default: the app's
 *                            on_send_error setting). For records sent to
 *                            this topic that can never be written (larger
 *                            than it accepts, or refused by the broker as
 *                            invalid): dead_letter sends the source record
 *                            (refused by the producer at once) or the
 *                            refused record itself (refused by the broker
 *                            later) to `<app_id>-dead-letter` with headers
 *                            mph.error, mph.topic, mph.partition, mph.offset
 *                            (the source), mph.output_topic, and
 *                            mph.truncated when cut to fit; skip counts and
 *                            logs it; fail stops the app without committing
 *                            past the source record. The source's offset
 *                            moves on only once the dead-letter record is
 *                            acknowledged. Transient errors never get here:
 *                            they are retried, in order, until they succeed.
 *   config.<name>            a Kafka topic config for topics the app creates
 *                            (e.g. config.retention.ms=3600000)
 *
 * Ownership: opts are owned by the caller (copied by mph_topic_new). Topics
 * are owned by the app and live until mph_app_destroy().
 * Thread safety: declare topics on the controlling thread before start.
 * mph_topic_name() and mph_topic_partitions() may be called from any thread.
 */
#ifndef MEPHISTO_TOPIC_H
#define MEPHISTO_TOPIC_H

#include "mephisto/app.h"
#include "mephisto/record.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mph_topic mph_topic_t;
typedef struct mph_topic_opts mph_topic_opts_t;

MPH_EXPORT mph_topic_opts_t *mph_topic_opts_new(void);
/* Sets an option; MPH_ERR_INVALID/NOENT with "<name>: <reason>" in errstr. */
MPH_EXPORT mph_err_t mph_topic_opts_set(mph_topic_opts_t *opts, const char *name,
                                        const char *value, char *errstr, size_t errstr_size);
MPH_EXPORT void mph_topic_opts_destroy(mph_topic_opts_t *opts);
/* Makes type the topic's value codec: each value is decoded and validated
 * against it once, before any agent runs; records that fail go through the
 * topic's on_decode_error policy. type is borrowed: it must stay alive and
 * unchanged until the app is destroyed. */
MPH_EXPORT mph_err_t mph_topic_opts_set_record(mph_topic_opts_t *opts,
                                               const mph_record_type_t *type);

/* Declares topic name on app (opts may be NULL for defaults). Declaring the
 * same name twice returns the existing topic when the options agree, else
 * NULL with MPH_ERR_EXISTS's message. NULL with errstr on failure (also
 * "codec 'x' is not registered on this app" for a codec registered by
 * another app only). */
MPH_EXPORT mph_topic_t *mph_topic_new(mph_app_t *app, const char *name,
                                      const mph_topic_opts_t *opts, char *errstr,
                                      size_t errstr_size);

/* Declares the internal topic `<app_id>-<name>-repartition`, created at
 * start (partitions: the option, else topic_partitions, so that it matches
 * the app's tables). Agents send re-keyed records to it with
 * mph_event_send() and other agents subscribe to it: the Faust way to bring
 * every record of a key to the partition, and the table shard, of that key. */
MPH_EXPORT mph_topic_t *mph_topic_repartition(mph_app_t *app, const char *name,
                                              const mph_topic_opts_t *opts, char *errstr,
                                              size_t errstr_size);

/* Borrowed; lives with the app. */
MPH_EXPORT const char *mph_topic_name(const mph_topic_t *topic);
/* Partition count once the app started (0 before). */
MPH_EXPORT int mph_topic_partitions(const mph_topic_t *topic);
/* Finds a declared topic by name; NULL if none. */
MPH_EXPORT mph_topic_t *mph_app_topic(const mph_app_t *app, const char *name);

#ifdef __cplusplus
}
#endif
#endif

/*
 * mephisto/codec.h — encoding what agents send (codecs "both ways").
 *
 * Topics decode what they receive with their key_codec / value_codec (see
 * topic.h). These calls are the other way: they encode a value with one of
 * the same codecs and send it, so an agent does not build bytes by hand:
 *
 *   i64      8 bytes big-endian (Kafka's LongSerializer; read back with
 *            mph_event_value_i64 on an i64 topic)
 *   string   the UTF-8 bytes, checked
 *   json     a finished mph_jsonw_t document
 *   record   a record (mephisto/record.h) as one JSON object, fields in
 *            declaration order; a topic declared with that record type
 *            (mph_topic_opts_set_record) decodes it back to an equal record
 *
 * Each call is mph_event_send() (agent.h) after encoding: the same
 * partition rule (MPH_PARTITION_ANY picks by key), back-pressure, commit
 * tracking, on_send_error policy and errors, plus the encoding's own:
 * MPH_ERR_UTF8 (string that is not UTF-8), MPH_ERR_STATE (json writer
 * without one complete value), MPH_ERR_SCHEMA (record missing a required
 * field), MPH_ERR_INVALID (NULL arguments). On an encoding error nothing is
 * sent.
 *
 * Ownership: key, value, writer and record are borrowed for the call (what
 * is sent is copied). Thread: like mph_event_send, only on the event's
 * worker thread during its callback (@locality worker). Record encoding
 * uses a buffer kept per worker thread, so it allocates nothing once grown.
 */
#ifndef MEPHISTO_CODEC_H
#define MEPHISTO_CODEC_H

#include "mephisto/agent.h"
#include "mephisto/jsonw.h"
#include "mephisto/record.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Sends value as an i64 (8 bytes big-endian). */
MPH_EXPORT mph_err_t mph_event_send_i64(mph_event_t *ev, mph_topic_t *topic, int32_t partition,
                                        const void *key, size_t key_len, int64_t value);
/* Sends s[0..len) after checking it is UTF-8 (MPH_ERR_UTF8 otherwise). */
MPH_EXPORT mph_err_t mph_event_send_string(mph_event_t *ev, mph_topic_t *topic,
                                           int32_t partition, const void *key, size_t key_len,
                                           const char *s, size_t len);
/* Sends the JSON document w holds (MPH_ERR_STATE unless complete). */
MPH_EXPORT mph_err_t mph_event_send_json(mph_event_t *ev, mph_topic_t *topic, int32_t partition,
                                         const void *key, size_t key_len,
                                         const mph_jsonw_t *w);
/* Sends rec encoded as a JSON object (mph_record_encode). */
MPH_EXPORT mph_err_t mph_event_send_record(mph_event_t *ev, mph_topic_t *topic,
                                           int32_t partition, const void *key, size_t key_len,
                                           const mph_record_t *rec);

#ifdef __cplusplus
}
#endif
#endif

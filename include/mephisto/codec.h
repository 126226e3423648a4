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
MPH_EXPORT mph_err_t mph_event_send_i64(mph_event_t *ev, mph_topic_t *topic,
                                        int32_t partition, const void *key,
                                        size_t key_len, int64_t value);
/* Sends s[0..len) after checking it is UTF-8 (MPH_ERR_UTF8 otherwise). */
MPH_EXPORT mph_err_t mph_event_send_string(mph_event_t *ev, mph_topic_t *topic,
                                           int32_t partition, const void *key,
                                           size_t key_len, const char *s,
                                           size_t len);
/* Sends the JSON document w holds (MPH_ERR_STATE unless complete). */
MPH_EXPORT mph_err_t mph_event_send_json(mph_event_t *ev, mph_topic_t *topic,
                                         int32_t partition, const void *key,
                                         size_t key_len, const mph_jsonw_t *w);
/* Sends rec encoded as a JSON object (mph_record_encode). */
MPH_EXPORT mph_err_t mph_event_send_record(mph_event_t *ev, mph_topic_t *topic,
                                           int32_t partition, const void *key,
                                           size_t key_len,
                                           const mph_record_t *rec);

/* --- codecs of your own ---------------------------------------------------
 *
 * mph_codec_register(app, "name", decode, encode, opaque) makes "name"
 * usable wherever a codec is named, on this app only:
 *   - topic option key_codec / value_codec: every key/value received on the
 *     topic goes through decode before any agent sees it; an error (reason
 *     in errbuf) sends the record through the topic's on_decode_error
 *     policy, as a built-in codec's failure does. Agents see the bytes as
 *     received. mph_event_send_encoded() encodes what it sends to the topic
 *     with encode.
 *   - table option key_codec / value_codec: every value written with
 *     mph_table_set / mph_table_update_set goes through decode (an error is
 *     returned, the table is unchanged).
 * Register before naming the codec in options (options check names when
 * set) and before the app starts. Either function may be NULL (not both):
 * no decode accepts everything, no encode sends bytes as given.
 *
 * Both functions run on worker threads, possibly on several at once: they
 * must be thread-safe and must not block; opaque is passed untouched
 * (owned by the caller, must outlive the app). A decode error never stops
 * a worker by itself. The registration lives until mph_app_destroy().
 */

/* Accepts bytes[0..len) (MPH_OK) or refuses them with an error code (e.g.
 * MPH_ERR_DECODE, MPH_ERR_SCHEMA) and a short reason in errbuf. */
typedef mph_err_t(mph_codec_decode_fn)(const void *bytes, size_t len,
                                       void *opaque, char *errbuf,
                                       size_t errbuf_size);
/* The bytes an encode function produces (owned by mephisto). */
typedef struct mph_codec_out mph_codec_out_t;
/* Appends to out (MPH_ERR_NOMEM, MPH_ERR_INVALID). */
MPH_EXPORT mph_err_t mph_codec_out_append(mph_codec_out_t *out,
                                          const void *bytes, size_t len);
/* Encodes in[0..len) by appending the result to out (empty at the call). */
typedef mph_err_t(mph_codec_encode_fn)(const void *in, size_t len,
                                       mph_codec_out_t *out, void *opaque,
                                       char *errbuf, size_t errbuf_size);

/* Registers codec name on app. name: 1-100 of [A-Za-z0-9_.-]. Errors:
 * MPH_ERR_EXISTS (name is a built-in codec or already registered on app),
 * MPH_ERR_INVALID (bad name, both functions NULL, NULL app), MPH_ERR_STATE
 * (the app started), MPH_ERR_NOMEM. @locality the controlling thread */
MPH_EXPORT mph_err_t mph_codec_register(mph_app_t *app, const char *name,
                                        mph_codec_decode_fn *decode,
                                        mph_codec_encode_fn *encode,
                                        void *opaque);

/* Sends key and value encoded with the topic's key and value codecs when
 * those are registered codecs with an encode function (as given
 * otherwise), then as mph_event_send. An encode error is returned (nothing
 * is sent) and logged with its reason. */
MPH_EXPORT mph_err_t mph_event_send_encoded(mph_event_t *ev, mph_topic_t *topic,
                                            int32_t partition, const void *key,
                                            size_t key_len, const void *value,
                                            size_t value_len);

#ifdef __cplusplus
}
#endif
#endif

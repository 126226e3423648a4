/*
 * Sends that encode (mephisto/codec.h): i64, string, json and record values
 * encoded here, then sent with mph_event_send. Record encoding writes into
 * one JSON writer per worker thread (thread-local: the calls only run on
 * worker threads during callbacks), freed when the thread ends.
 */
#include <pthread.h>
#include <stdlib.h>

#include "io/codec.h"
#include "mephisto/codec.h"

static pthread_key_t writer_key;
static pthread_once_t writer_once = PTHREAD_ONCE_INIT;

static void writer_free(void *w)
{
    mph_jsonw_destroy(w);
}

static void writer_key_make(void)
{
    (void)pthread_key_create(&writer_key, writer_free);
}

/* This thread's writer, reset; NULL when out of memory. */
static mph_jsonw_t *thread_writer(void)
{
    pthread_once(&writer_once, writer_key_make);
    mph_jsonw_t *w = pthread_getspecific(writer_key);
    if (!w) {
        w = mph_jsonw_new(1024, NULL, 0);
        if (!w || pthread_setspecific(writer_key, w) != 0) {
            mph_jsonw_destroy(w);
            return NULL;
        }
    }
    mph_jsonw_reset(w);
    return w;
}

mph_err_t mph_event_send_i64(mph_event_t *ev, mph_topic_t *topic, int32_t partition,
                             const void *key, size_t key_len, int64_t value)
{
    unsigned char b[MPH_CODEC_I64_SIZE];
    mph__codec_i64_encode(value, b);
    return mph_event_send(ev, topic, partition, key, key_len, b, sizeof b, NULL, 0);
}

mph_err_t mph_event_send_string(mph_event_t *ev, mph_topic_t *topic, int32_t partition,
                                const void *key, size_t key_len, const char *s, size_t len)
{
    if (!s && len)
        return MPH_ERR_INVALID;
    if (!mph_json_utf8_valid(s, len))
        return MPH_ERR_UTF8;
    return mph_event_send(ev, topic, partition, key, key_len, s, len, NULL, 0);
}

mph_err_t mph_event_send_json(mph_event_t *ev, mph_topic_t *topic, int32_t partition,
                              const void *key, size_t key_len, const mph_jsonw_t *w)
{
    if (!w)
        return MPH_ERR_INVALID;
    const char *j;
    size_t n;
    mph_err_t err = mph_jsonw_finish(w, &j, &n);
    if (err)
        return err;
    return mph_event_send(ev, topic, partition, key, key_len, j, n, NULL, 0);
}

mph_err_t mph_event_send_record(mph_event_t *ev, mph_topic_t *topic, int32_t partition,
                                const void *key, size_t key_len, const mph_record_t *rec)
{
    if (!rec)
        return MPH_ERR_INVALID;
    mph_jsonw_t *w = thread_writer();
    if (!w)
        return MPH_ERR_NOMEM;
    mph_err_t err = mph_record_encode(rec, w, NULL, 0);
    if (err)
        return err;
    return mph_event_send_json(ev, topic, partition, key, key_len, w);
}

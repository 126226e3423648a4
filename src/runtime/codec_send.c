/*
 * Codecs both ways in the runtime (mephisto/codec.h): sends that encode
 * (i64, string, json, record, and a topic's registered codecs), and the
 * registration of codecs of one's own (kept in io/codec.c's list, tied to
 * the app's lifetime with mph_app_keep). Encoding writes into buffers kept
 * per worker thread (thread-local: the calls only run on worker threads
 * during callbacks), freed when the thread ends.
 */
#include <pthread.h>
#include <stdlib.h>

#include <ck_pr.h>

#include "io/codec.h"
#include "mephisto/codec.h"
#include "mephisto/log.h"
#include "runtime/app.h"

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

mph_err_t mph_event_send_i64(mph_event_t *ev, mph_topic_t *topic,
                             int32_t partition, const void *key, size_t key_len,
                             int64_t value)
{
    unsigned char b[MPH_CODEC_I64_SIZE];
    mph__codec_i64_encode(value, b);
    return mph_event_send(ev, topic, partition, key, key_len, b, sizeof b, NULL,
                          0);
}

mph_err_t mph_event_send_string(mph_event_t *ev, mph_topic_t *topic,
                                int32_t partition, const void *key,
                                size_t key_len, const char *s, size_t len)
{
    if (!s && len)
        return MPH_ERR_INVALID;
    if (!mph_json_utf8_valid(s, len))
        return MPH_ERR_UTF8;
    return mph_event_send(ev, topic, partition, key, key_len, s, len, NULL, 0);
}

mph_err_t mph_event_send_json(mph_event_t *ev, mph_topic_t *topic,
                              int32_t partition, const void *key,
                              size_t key_len, const mph_jsonw_t *w)
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

mph_err_t mph_event_send_record(mph_event_t *ev, mph_topic_t *topic,
                                int32_t partition, const void *key,
                                size_t key_len, const mph_record_t *rec)
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

/* --- registered codecs ------------------------------------------------- */

static void user_remove(void *e)
{
    mph__codec_user_remove(e);
}

mph_err_t mph_codec_register(mph_app_t *app, const char *name,
                             mph_codec_decode_fn *decode,
                             mph_codec_encode_fn *encode, void *opaque)
{
    if (!app)
        return MPH_ERR_INVALID;
    if (ck_pr_load_int(&app->state) != APP_NEW)
        return MPH_ERR_STATE;
    mph__codec_user_t *e = NULL;
    mph_err_t err = mph__codec_user_add(app, name, decode, encode, opaque, &e);
    if (err)
        return err;
    if (mph_app_keep(app, e, user_remove) != MPH_OK) {
        mph__codec_user_remove(e);
        return MPH_ERR_NOMEM;
    }
    return MPH_OK;
}

static pthread_key_t outs_key;
static pthread_once_t outs_once = PTHREAD_ONCE_INIT;

static void outs_free(void *p)
{
    mph_codec_out_t *o = p;
    free(o[0].p);
    free(o[1].p);
    free(o);
}

static void outs_key_make(void)
{
    (void)pthread_key_create(&outs_key, outs_free);
}

/* Encodes in with u into out (emptied first); logs the reason of a refusal. */
static mph_err_t encode_with(const mph__codec_user_t *u, mph_topic_t *topic,
                             const char *what, const void *in, size_t len,
                             mph_codec_out_t *out)
{
    char why[200] = "";
    out->len = 0;
    if (mph_codec_out_append(out, "", 0) != MPH_OK) /* never a NULL buffer */
        return MPH_ERR_NOMEM;
    mph_err_t err =
        u->encode(in ? in : "", len, out, u->opaque, why, sizeof why);
    if (err)
        mph_log(MPH_LOG_WARN, "topic %s: %s not sent: codec %s: %s",
                mph_topic_name(topic), what, u->name,
                why[0] ? why : mph_err_str(err));
    return err;
}

mph_err_t mph_event_send_encoded(mph_event_t *ev, mph_topic_t *topic,
                                 int32_t partition, const void *key,
                                 size_t key_len, const void *value,
                                 size_t value_len)
{
    if (!ev || !topic)
        return MPH_ERR_INVALID;
    const mph__codec_user_t *uk =
        topic->key_codec == MPH_CODEC_USER ? topic->ukey : NULL;
    const mph__codec_user_t *uv =
        topic->value_codec == MPH_CODEC_USER ? topic->uvalue : NULL;
    if ((uk && uk->encode) || (uv && uv->encode)) {
        pthread_once(&outs_once, outs_key_make);
        mph_codec_out_t *o = pthread_getspecific(outs_key);
        if (!o) {
            o = calloc(2, sizeof *o);
            if (!o || pthread_setspecific(outs_key, o) != 0) {
                free(o);
                return MPH_ERR_NOMEM;
            }
        }
        mph_err_t err;
        if (uk && uk->encode && key) {
            if ((err = encode_with(uk, topic, "key", key, key_len, &o[0])))
                return err;
            key = o[0].p;
            key_len = o[0].len;
        }
        if (uv && uv->encode && value) {
            if ((err =
                     encode_with(uv, topic, "value", value, value_len, &o[1])))
                return err;
            value = o[1].p;
            value_len = o[1].len;
        }
    }
    return mph_event_send(ev, topic, partition, key, key_len, value, value_len,
                          NULL, 0);
}

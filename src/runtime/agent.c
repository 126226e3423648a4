/*
 * Agents (declared before start) and the event API used inside callbacks.
 * The event is the worker's own struct, refilled per record: every accessor
 * is a load, and nothing is allocated unless headers are read or sent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ck_pr.h>

#include "io/codec.h"
#include "runtime/app.h"
#include "runtime/punctuate.h"
#include "runtime/worker.h"

mph_agent_t *mph_agent_new(mph_app_t *app, const char *name, mph_topic_t *topic,
                           mph_agent_fn *fn, void *opaque, char *errstr, size_t errstr_size)
{
    char tmp[256];
    if (!errstr || !errstr_size) {
        errstr = tmp;
        errstr_size = sizeof tmp;
    }
    if (!app || !name || !*name || !fn || !topic) {
        snprintf(errstr, errstr_size, "agent: app, name, topic and callback are required");
        return NULL;
    }
    if (topic->app != app) {
        snprintf(errstr, errstr_size, "agent %s: topic %s belongs to another app", name,
                 topic->name);
        return NULL;
    }
    if (ck_pr_load_int(&app->state) != APP_NEW) {
        snprintf(errstr, errstr_size, "agent %s: declare agents before the app starts", name);
        return NULL;
    }
    for (size_t i = 0; i < app->nagents; i++)
        if (!strcmp(app->agents[i]->name, name)) {
            snprintf(errstr, errstr_size, "agent %s: declared twice", name);
            return NULL;
        }
    mph_agent_t *a = calloc(1, sizeof *a);
    mph_agent_t **arr = realloc(app->agents, (app->nagents + 1) * sizeof *arr);
    if (!a || !arr || !(a->name = strdup(name))) {
        free(a);
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    app->agents = arr;
    a->app = app;
    a->fn = fn;
    a->opaque = opaque;
    a->index = (int)app->nagents;
    app->agents[app->nagents++] = a;
    if (mph_agent_subscribe(a, topic) != MPH_OK) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    return a;
}

mph_err_t mph_agent_subscribe(mph_agent_t *agent, mph_topic_t *topic)
{
    if (!agent || !topic || topic->app != agent->app)
        return MPH_ERR_INVALID;
    if (ck_pr_load_int(&agent->app->state) != APP_NEW)
        return MPH_ERR_STATE;
    for (size_t i = 0; i < topic->nagents; i++)
        if (topic->agents[i] == agent)
            return MPH_OK;
    mph_agent_t **arr = realloc(topic->agents, (topic->nagents + 1) * sizeof *arr);
    if (!arr)
        return MPH_ERR_NOMEM;
    topic->agents = arr;
    topic->agents[topic->nagents++] = agent;
    return MPH_OK;
}

mph_err_t mph_agent_add_sink(mph_agent_t *agent, mph_topic_t *sink)
{
    if (!agent || !sink || sink->app != agent->app)
        return MPH_ERR_INVALID;
    if (ck_pr_load_int(&agent->app->state) != APP_NEW)
        return MPH_ERR_STATE;
    mph_topic_t **arr = realloc(agent->sinks, (agent->nsinks + 1) * sizeof *arr);
    if (!arr)
        return MPH_ERR_NOMEM;
    agent->sinks = arr;
    agent->sinks[agent->nsinks++] = sink;
    return MPH_OK;
}

const char *mph_agent_name(const mph_agent_t *agent)
{
    return agent->name;
}

void mph__agent_free(mph_agent_t *a)
{
    if (!a)
        return;
    free(a->name);
    free(a->sinks);
    free(a->owned);
    mph__punct_agent_free(a);
    free(a);
}

/* ------------------------------------------------------------------ */
/* events                                                             */

const void *mph_event_key(const mph_event_t *ev, size_t *len)
{
    if (len)
        *len = ev->rkm->key_len;
    return ev->rkm->key;
}

const void *mph_event_value(const mph_event_t *ev, size_t *len)
{
    if (len)
        *len = ev->rkm->len;
    return ev->rkm->payload;
}

mph_topic_t *mph_event_topic(const mph_event_t *ev)
{
    return ev->topic;
}

int32_t mph_event_partition(const mph_event_t *ev)
{
    return ev->rkm->partition;
}

int64_t mph_event_offset(const mph_event_t *ev)
{
    return ev->rkm->offset;
}

int64_t mph_event_timestamp(const mph_event_t *ev)
{
    if (MPH__MON_UNLIKELY(ev->punct))
        return ev->punct_ts; /* a punctuator's handle has no record */
    return rd_kafka_message_timestamp(ev->rkm, NULL);
}

mph_timestamp_type_t mph_event_timestamp_type(const mph_event_t *ev)
{
    rd_kafka_timestamp_type_t tt = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
    if (!ev || rd_kafka_message_timestamp(ev->rkm, &tt) < 0)
        return MPH_TIMESTAMP_NONE;
    switch (tt) {
    case RD_KAFKA_TIMESTAMP_CREATE_TIME:
        return MPH_TIMESTAMP_CREATE_TIME;
    case RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME:
        return MPH_TIMESTAMP_LOG_APPEND_TIME;
    default:
        return MPH_TIMESTAMP_NONE;
    }
}

static rd_kafka_headers_t *headers_of(const mph_event_t *ev)
{
    mph_event_t *e = (mph_event_t *)ev;
    if (!e->hdrs_read) {
        e->hdrs = NULL;
        if (rd_kafka_message_headers(e->rkm, &e->hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
            e->hdrs = NULL;
        e->hdrs_read = true;
    }
    return e->hdrs;
}

mph_err_t mph_event_header(const mph_event_t *ev, const char *name, const void **value,
                           size_t *len)
{
    rd_kafka_headers_t *h = headers_of(ev);
    if (!h || rd_kafka_header_get_last(h, name, value, len) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return MPH_ERR_NOENT;
    return MPH_OK;
}

size_t mph_event_header_count(const mph_event_t *ev)
{
    rd_kafka_headers_t *h = headers_of(ev);
    return h ? rd_kafka_header_cnt(h) : 0;
}

mph_err_t mph_event_header_at(const mph_event_t *ev, size_t idx, const char **name,
                              const void **value, size_t *len)
{
    rd_kafka_headers_t *h = headers_of(ev);
    if (!h || rd_kafka_header_get_all(h, idx, name, value, len) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return MPH_ERR_NOENT;
    return MPH_OK;
}

int mph_event_worker(const mph_event_t *ev)
{
    return ev->worker->index;
}

mph_agent_t *mph_event_agent(const mph_event_t *ev)
{
    return ev->agent;
}

mph_app_t *mph_event_app(const mph_event_t *ev)
{
    return ev->worker->app;
}

mph_err_t mph_event_send(mph_event_t *ev, mph_topic_t *topic, int32_t partition,
                         const void *key, size_t key_len, const void *value, size_t value_len,
                         const mph_header_t *headers, size_t header_count)
{
    return mph_event_send_ts(ev, topic, partition, key, key_len, value, value_len, headers,
                             header_count, -1);
}

mph_err_t mph_event_send_ts(mph_event_t *ev, mph_topic_t *topic, int32_t partition,
                            const void *key, size_t key_len, const void *value, size_t value_len,
                            const mph_header_t *headers, size_t header_count,
                            int64_t timestamp_ms)
{
    if (!ev || !topic || topic->app != ev->worker->app)
        return MPH_ERR_INVALID;
    return mph__worker_send_ts(ev->worker, ev, topic, partition, key, key_len, value, value_len,
                               headers, header_count, NULL, timestamp_ms);
}

mph_err_t mph_event_emit(mph_event_t *ev, const void *key, size_t key_len, const void *value,
                         size_t value_len)
{
    if (!ev || !ev->agent)
        return MPH_ERR_INVALID;
    for (size_t i = 0; i < ev->agent->nsinks; i++) {
        mph_err_t err = mph__worker_send(ev->worker, ev, ev->agent->sinks[i], MPH_PARTITION_ANY,
                                         key, key_len, value, value_len, NULL, 0, NULL);
        if (err)
            return err;
    }
    return MPH_OK;
}

mph_err_t mph_event_forward(mph_event_t *ev, mph_topic_t *topic)
{
    if (!ev || !topic || topic->app != ev->worker->app || ev->punct)
        return MPH_ERR_INVALID;
    return mph__worker_send(ev->worker, ev, topic, MPH_PARTITION_ANY, ev->rkm->key,
                            ev->rkm->key_len, ev->rkm->payload, ev->rkm->len, NULL, 0,
                            headers_of(ev));
}

/* ------------------------------------------------------------------ */
/* batches (punctuate.c delivers them)                                */

size_t mph_event_batch_count(const mph_event_t *ev)
{
    return ev ? ev->nbatch : 0;
}

/* Makes rkm the batch's current event: headers and JSON are read again on
 * demand; a record topic's value is decoded again (it was valid when it
 * arrived, so this only fails on memory). */
void mph__event_batch_current(mph_event_t *ev, rd_kafka_message_t *rkm)
{
    ev->rkm = rkm;
    ev->hdrs_read = false;
    ev->hdrs = NULL;
    ev->json_state = 0;
    ev->record = NULL;
    mph_topic_t *t = ev->topic;
    if (t->value_codec == MPH_CODEC_RECORD && rkm->payload) {
        mph__worker_t *w = ev->worker;
        char why[200];
        if (mph_record_decode(t->opts.record, w->json, rkm->payload, rkm->len,
                              &w->records[t->index], why, sizeof why) == MPH_OK)
            ev->record = w->records[t->index];
    }
}

mph_err_t mph_event_batch_select(mph_event_t *ev, size_t i)
{
    if (!ev || i >= ev->nbatch)
        return MPH_ERR_RANGE;
    if (ev->rkm != ev->batch[i])
        mph__event_batch_current(ev, ev->batch[i]);
    return MPH_OK;
}

/* ------------------------------------------------------------------ */
/* group_by                                                           */

struct group_by {
    mph_key_fn *fn;
    void *opaque;
    mph_topic_t *target;
};

static mph_err_t group_by_cb(mph_event_t *ev, void *opaque)
{
    struct group_by *g = opaque;
    const void *key = NULL;
    size_t klen = 0;
    mph_err_t err = g->fn(ev, &key, &klen, g->opaque);
    if (err == MPH_ERR_NOENT)
        return MPH_OK;
    if (err)
        return err;
    size_t vlen;
    const void *val = mph_event_value(ev, &vlen);
    return mph__worker_send(ev->worker, ev, g->target, MPH_PARTITION_ANY, key, klen, val, vlen,
                            NULL, 0, headers_of(ev));
}

mph_topic_t *mph_group_by(mph_app_t *app, const char *name, mph_topic_t *source, mph_key_fn *fn,
                          void *opaque, char *errstr, size_t errstr_size)
{
    char tmp[256];
    if (!errstr || !errstr_size) {
        errstr = tmp;
        errstr_size = sizeof tmp;
    }
    if (!fn) {
        snprintf(errstr, errstr_size, "group_by %s: a key function is required", name ? name : "");
        return NULL;
    }
    mph_topic_t *target = mph_topic_repartition(app, name, NULL, errstr, errstr_size);
    if (!target)
        return NULL;
    struct group_by *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    g->fn = fn;
    g->opaque = opaque;
    g->target = target;
    mph_agent_t *a = mph_agent_new(app, name, source, group_by_cb, g, errstr, errstr_size);
    if (!a) {
        free(g);
        return NULL;
    }
    a->owned = g;
    return target;
}

/* ------------------------------------------------------------------ */
/* decoded values                                                     */

mph_json_parser_t *mph_event_json(mph_event_t *ev, mph_err_t *err)
{
    if (!ev)
        return NULL;
    if (ev->json_state == 0) {
        mph_err_t e = ev->rkm->payload ? mph_json_parse(ev->worker->json, ev->rkm->payload,
                                                         ev->rkm->len, ev->rkm->len)
                                       : MPH_ERR_DECODE;
        ev->json_state = e ? -1 : 1;
        ev->json_err = e;
    }
    if (err)
        *err = ev->json_state == 1 ? MPH_OK : ev->json_err;
    return ev->json_state == 1 ? ev->worker->json : NULL;
}

const mph_record_t *mph_event_record(mph_event_t *ev)
{
    return ev ? ev->record : NULL;
}

static mph_err_t be64(const void *p, size_t len, int64_t *out)
{
    if (!p || !out)
        return MPH_ERR_TYPE;
    return mph__codec_i64_decode(p, len, out) == MPH_OK ? MPH_OK : MPH_ERR_TYPE;
}

mph_err_t mph_event_value_i64(const mph_event_t *ev, int64_t *out)
{
    return be64(ev->rkm->payload, ev->rkm->len, out);
}

mph_err_t mph_event_key_i64(const mph_event_t *ev, int64_t *out)
{
    return be64(ev->rkm->key, ev->rkm->key_len, out);
}

/*
 * Agent RPC: asks, casts, replies, and the reply thread.
 *
 * DESIGN
 * An ask is a pending entry (correlation id → callback, deadline) in a
 * table guarded by one mutex, taken by askers (any thread), by the reply
 * thread and by the coordinator (delivery errors of requests). The entry
 * is inserted before the request is produced, so a fast reply always finds
 * it. Whoever removes the entry from the table completes the ask: the
 * reply thread with a reply or a timeout, the coordinator with a delivery
 * error, the stopping thread with MPH_ERR_STOPPED. Removal happens under
 * the lock and the callback runs after it is released, so a callback runs
 * exactly once and may ask again.
 *
 * Deadlines sit in a binary heap of (deadline, id); an id already completed
 * is skipped when it surfaces. Correlation ids are a random 32-bit nonce
 * per start and a 32-bit counter, so the reply thread tells a late reply
 * (ours, completed already) from an unknown one (another start's, or
 * garbage): both are counted, neither reaches a callback.
 *
 * The reply thread owns a consumer with no group, assigned to partition 0
 * of this process's reply topic from the end offset read at start. It reads
 * one record at a time (rd_kafka_consume_queue returns as soon as one is
 * there: no batching delay on the reply path) with a timeout no longer than
 * the next deadline.
 *
 * Must never: call a callback twice or under the lock, or let anything in
 * a reply (headers, sizes) crash the thread.
 */
#include <ck_pr.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "io/kafka.h"
#include "mephisto/log.h"
#include "mephisto/rpc.h"
#include "runtime/app.h"
#include "runtime/rpc.h"
#include "runtime/worker.h"

#define RPC_BUCKETS  65536
#define HDR_REPLY_TO "mph.reply_to"
#define HDR_CORR     "mph.correlation_id"

typedef struct pending {
    uint64_t id;
    mph_reply_fn *cb;
    void *opaque;
    struct pending *next;
} pending_t;

typedef struct deadline {
    int64_t at_ns;
    uint64_t id;
} deadline_t;

struct mph__rpc {
    mph_app_t *app;
    char topic[512];
    bool delete_on_stop;
    rd_kafka_t *consumer;
    pthread_t thread;
    bool thread_running;
    int stop; /* ck_pr */

    pthread_mutex_t lock; /* pending, heap, accepting */
    bool accepting;       /* asks are taken (between start and stop) */
    pending_t **buckets;
    deadline_t *heap;
    size_t nheap, capheap;
    uint64_t npending;

    uint32_t nonce;
    uint32_t next; /* ck_pr: counter of ids handed out */
    uint64_t asks, replies, timeouts, late, unknown, errors; /* ck_pr */
    mph_log_limit_t log_lim;
};

static void stat_add(uint64_t *c)
{
    ck_pr_inc_64(c);
}

/* ------------------------------------------------------------------ */
/* pending table and deadlines (under rpc->lock)                       */

static size_t bucket_of(uint64_t id)
{
    return (size_t)((id * UINT64_C(0x9E3779B97F4A7C15)) >> 48) &
           (RPC_BUCKETS - 1);
}

static pending_t *take(struct mph__rpc *r, uint64_t id)
{
    pending_t **pp = &r->buckets[bucket_of(id)];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->id == id) {
            pending_t *p = *pp;
            *pp = p->next;
            r->npending--;
            return p;
        }
    return NULL;
}

static bool heap_push(struct mph__rpc *r, int64_t at, uint64_t id)
{
    if (r->nheap == r->capheap) {
        size_t n = r->capheap ? r->capheap * 2 : 1024;
        deadline_t *h = realloc(r->heap, n * sizeof *h);
        if (!h)
            return false;
        r->heap = h;
        r->capheap = n;
    }
    size_t i = r->nheap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (r->heap[parent].at_ns <= at)
            break;
        r->heap[i] = r->heap[parent];
        i = parent;
    }
    r->heap[i] = (deadline_t){at, id};
    return true;
}

static void heap_pop(struct mph__rpc *r)
{
    deadline_t last = r->heap[--r->nheap];
    size_t i = 0, n = r->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && r->heap[c + 1].at_ns < r->heap[c].at_ns)
            c++;
        if (last.at_ns <= r->heap[c].at_ns)
            break;
        r->heap[i] = r->heap[c];
        i = c;
    }
    if (n)
        r->heap[i] = last;
}

/* Completes ask id with err (no value) if it is still pending. */
static void complete_err(struct mph__rpc *r, uint64_t id, mph_err_t err)
{
    pthread_mutex_lock(&r->lock);
    pending_t *p = take(r, id);
    pthread_mutex_unlock(&r->lock);
    if (!p)
        return;
    if (err == MPH_ERR_TIMEOUT)
        stat_add(&r->timeouts);
    else
        stat_add(&r->errors);
    p->cb(err, NULL, 0, p->opaque);
    free(p);
}

/* ------------------------------------------------------------------ */
/* asking                                                              */

/* The topic an agent reads first (declaration order), or NULL. */
static mph_topic_t *agent_topic(const mph_app_t *app, const mph_agent_t *agent)
{
    for (size_t i = 0; i < app->ntopics; i++)
        for (size_t j = 0; j < app->topics[i]->nagents; j++)
            if (app->topics[i]->agents[j] == agent)
                return app->topics[i];
    return NULL;
}

struct req_ctx {
    struct mph__rpc *rpc;
    uint64_t id;
};

static void request_delivered(mph_err_t err, void *opaque)
{
    struct req_ctx *c = opaque;
    if (err)
        complete_err(c->rpc, c->id, err);
    free(c);
}

static void hex_id(uint64_t id, char out[17])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, id >>= 4)
        out[i] = digits[id & 15];
    out[16] = 0;
}

static bool parse_id(const void *v, size_t len, uint64_t *out)
{
    if (!v || len != 16)
        return false;
    uint64_t id = 0;
    const unsigned char *s = v;
    for (size_t i = 0; i < 16; i++) {
        unsigned c = s[i];
        unsigned d = c >= '0' && c <= '9'   ? c - '0'
                     : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                            : 16;
        if (d > 15)
            return false;
        id = id << 4 | d;
    }
    *out = id;
    return true;
}

static int32_t partition_of(const mph_topic_t *t, const void *key,
                            size_t key_len)
{
    return key && t->partitions > 0
               ? mph__kafka_partition_for(key, key_len, t->partitions)
               : MPH_PARTITION_ANY;
}

mph_err_t mph_agent_ask(mph_app_t *app, mph_agent_t *agent, const void *key,
                        size_t key_len, const void *value, size_t value_len,
                        int timeout_ms, mph_reply_fn *reply_cb, void *opaque)
{
    if (!app || !agent || agent->app != app || !reply_cb || timeout_ms < 1 ||
        (!key && key_len) || (!value && value_len))
        return MPH_ERR_INVALID;
    struct mph__rpc *r = app->rpc;
    if (ck_pr_load_int(&app->state) != APP_RUNNING || !r)
        return MPH_ERR_STATE;
    mph_topic_t *t = agent_topic(app, agent);
    if (!t)
        return MPH_ERR_INVALID;
    uint32_t n = ck_pr_faa_32(&r->next, 1);
    uint64_t id = (uint64_t)r->nonce << 32 | n;
    pending_t *p = malloc(sizeof *p);
    struct req_ctx *c = malloc(sizeof *c);
    if (!p || !c) {
        free(p);
        free(c);
        return MPH_ERR_NOMEM;
    }
    p->id = id;
    p->cb = reply_cb;
    p->opaque = opaque;
    c->rpc = r;
    c->id = id;
    pthread_mutex_lock(&r->lock);
    if (!r->accepting ||
        !heap_push(r, mph_clock_mono_ns() + (int64_t)timeout_ms * 1000000,
                   id)) {
        bool stopped = !r->accepting;
        pthread_mutex_unlock(&r->lock);
        free(p);
        free(c);
        return stopped ? MPH_ERR_STATE : MPH_ERR_NOMEM;
    }
    size_t b = bucket_of(id);
    p->next = r->buckets[b];
    r->buckets[b] = p;
    r->npending++;
    pthread_mutex_unlock(&r->lock);

    char idtext[17];
    hex_id(id, idtext);
    mph_header_t h[2] = {{HDR_REPLY_TO, r->topic, strlen(r->topic)},
                         {HDR_CORR, idtext, 16}};
    mph_err_t err =
        mph_send(app, t, partition_of(t, key, key_len), key, key_len, value,
                 value_len, h, 2, request_delivered, c);
    if (err) {
        /* The callback must not fire: withdraw the entry (its heap slot
         * is skipped when it surfaces). */
        pthread_mutex_lock(&r->lock);
        pending_t *q = take(r, id);
        pthread_mutex_unlock(&r->lock);
        free(q);
        free(c);
        return err;
    }
    stat_add(&r->asks);
    return MPH_OK;
}

mph_err_t mph_agent_cast(mph_app_t *app, mph_agent_t *agent, const void *key,
                         size_t key_len, const void *value, size_t value_len)
{
    if (!app || !agent || agent->app != app || (!key && key_len) ||
        (!value && value_len))
        return MPH_ERR_INVALID;
    mph_topic_t *t = agent_topic(app, agent);
    if (!t)
        return MPH_ERR_INVALID;
    if (ck_pr_load_int(&app->state) != APP_RUNNING)
        return MPH_ERR_STATE;
    return mph_send(app, t, partition_of(t, key, key_len), key, key_len, value,
                    value_len, NULL, 0, NULL, NULL);
}

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    mph_err_t err;
    void *value;
    size_t len;
};

static void wait_cb(mph_err_t err, const void *value, size_t value_len,
                    void *opaque)
{
    struct waiter *w = opaque;
    void *copy = NULL;
    if (!err) {
        copy = malloc(value_len ? value_len : 1);
        if (copy)
            memcpy(copy, value, value_len);
        else
            err = MPH_ERR_NOMEM;
    }
    pthread_mutex_lock(&w->mu);
    w->err = err;
    w->value = copy;
    w->len = value_len;
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

mph_err_t mph_agent_ask_wait(mph_app_t *app, mph_agent_t *agent,
                             const void *key, size_t key_len, const void *value,
                             size_t value_len, int timeout_ms, void **reply,
                             size_t *reply_len)
{
    if (!reply || !reply_len)
        return MPH_ERR_INVALID;
    struct waiter w = {.done = false};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    mph_err_t err = mph_agent_ask(app, agent, key, key_len, value, value_len,
                                  timeout_ms, wait_cb, &w);
    if (!err) {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        err = w.err;
        *reply = w.value;
        *reply_len = w.len;
    }
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    return err;
}

/* ------------------------------------------------------------------ */
/* answering, on the worker                                            */

bool mph_event_wants_reply(const mph_event_t *ev)
{
    const void *v = NULL;
    size_t len = 0;
    uint64_t id;
    return ev && mph_event_header(ev, HDR_REPLY_TO, &v, &len) == MPH_OK &&
           len > 0 && len < 250 &&
           mph_event_header(ev, HDR_CORR, &v, &len) == MPH_OK &&
           parse_id(v, len, &id);
}

mph_err_t mph_event_reply(mph_event_t *ev, const void *value, size_t value_len)
{
    if (!ev || (!value && value_len))
        return MPH_ERR_INVALID;
    const void *to = NULL, *corr = NULL;
    size_t to_len = 0, corr_len = 0;
    uint64_t id;
    if (mph_event_header(ev, HDR_REPLY_TO, &to, &to_len) != MPH_OK ||
        to_len == 0 || to_len >= 250 ||
        mph_event_header(ev, HDR_CORR, &corr, &corr_len) != MPH_OK ||
        !parse_id(corr, corr_len, &id))
        return MPH_ERR_NOENT;
    char topic[256];
    memcpy(topic, to, to_len);
    topic[to_len] = 0;
    if (memchr(topic, 0, to_len))
        return MPH_ERR_NOENT;
    mph_header_t h[1] = {{HDR_CORR, corr, corr_len}};
    return mph__worker_send_reply(ev->worker, ev, topic, 0, value, value_len, h,
                                  1);
}

/* ------------------------------------------------------------------ */
/* the reply thread                                                    */

static void on_reply(struct mph__rpc *r, const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *v = NULL;
    size_t len = 0;
    uint64_t id = 0;
    if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(hdrs, HDR_CORR, &v, &len) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
        !parse_id(v, len, &id)) {
        stat_add(&r->unknown);
        return;
    }
    pthread_mutex_lock(&r->lock);
    pending_t *p = take(r, id);
    pthread_mutex_unlock(&r->lock);
    if (!p) {
        bool ours = (uint32_t)(id >> 32) == r->nonce &&
                    (uint32_t)id < ck_pr_load_32(&r->next);
        stat_add(ours ? &r->late : &r->unknown);
        return;
    }
    stat_add(&r->replies);
    p->cb(MPH_OK, m->payload, m->payload ? m->len : 0, p->opaque);
    free(p);
}

/* Completes every ask whose deadline passed; returns ms to the next one
 * (at most max_ms). */
static int expire(struct mph__rpc *r, int max_ms)
{
    int64_t now = mph_clock_mono_ns();
    for (;;) {
        pending_t *p = NULL;
        pthread_mutex_lock(&r->lock);
        while (r->nheap && r->heap[0].at_ns <= now && !p) {
            uint64_t id = r->heap[0].id;
            heap_pop(r);
            p = take(r, id);
        }
        int64_t next = r->nheap ? r->heap[0].at_ns : INT64_MAX;
        pthread_mutex_unlock(&r->lock);
        if (!p) {
            if (next == INT64_MAX)
                return max_ms;
            int64_t ms = (next - now) / 1000000 + 1;
            return ms < max_ms ? (int)ms : max_ms;
        }
        stat_add(&r->timeouts);
        p->cb(MPH_ERR_TIMEOUT, NULL, 0, p->opaque);
        free(p);
    }
}

static void *reply_main(void *arg)
{
    struct mph__rpc *r = arg;
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(r->consumer);
    int wait_ms = 100;
    while (!ck_pr_load_int(&r->stop)) {
        rd_kafka_message_t *m = rd_kafka_consume_queue(q, wait_ms);
        while (m) {
            if (!m->err)
                on_reply(r, m);
            else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                mph_log_limited(&r->log_lim, 5000, MPH_LOG_WARN,
                                "reply topic %s: %s", r->topic,
                                rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            m = rd_kafka_consume_queue(q, 0);
        }
        wait_ms = expire(r, 100);
    }
    rd_kafka_queue_destroy(q);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* service: start and stop                                             */

static int rpc_timeout_ms(const mph_app_t *app)
{
    int64_t t = app->shutdown_timeout_ms;
    return (int)(t < 5000 ? 5000 : t > 30000 ? 30000 : t);
}

mph_err_t mph__rpc_start(mph_app_t *app, char *errstr, size_t errstr_size)
{
    if (!mph_conf_get_bool(app->conf, "rpc_enabled", false))
        return MPH_OK;
    struct mph__rpc *r = app->rpc;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MPH_ERR_NOMEM;
        r->buckets = calloc(RPC_BUCKETS, sizeof *r->buckets);
        if (!r->buckets) {
            free(r);
            return MPH_ERR_NOMEM;
        }
        pthread_mutex_init(&r->lock, NULL);
        r->app = app;
        app->rpc = r;
    }
    uint64_t rnd = 0;
    if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        rnd = (uint64_t)mph_clock_mono_ns() ^ ((uint64_t)getpid() << 32);
    r->nonce = (uint32_t)(rnd >> 32) ? (uint32_t)(rnd >> 32) : 1;
    const char *instance = mph_conf_get(app->conf, "group_instance_id");
    if (instance && *instance) {
        snprintf(r->topic, sizeof r->topic, "%s-reply-%s", app->app_id,
                 instance);
        r->delete_on_stop = false;
    } else {
        snprintf(r->topic, sizeof r->topic, "%s-reply-%08x%08x", app->app_id,
                 (unsigned)rnd, (unsigned)(rnd >> 32));
        r->delete_on_stop = true;
    }
    int timeout = rpc_timeout_ms(app);
    const char *configs[] = {"retention.ms", "3600000", "cleanup.policy",
                             "delete", NULL};
    mph__topic_spec_t spec = {
        r->topic, 1,
        (int)mph_conf_get_int(app->conf, "topic_replication_factor", 1),
        configs};
    /* An existing reply topic is reused as it is: replies only ever go to
     * its partition 0. */
    int have = 0;
    mph_err_t err =
        mph__kafka_partition_count(app->producer, r->topic, timeout, &have);
    if (err)
        err = mph__kafka_create_topics(app->kenv, app->producer, &spec, 1,
                                       timeout, errstr, errstr_size);
    if (err)
        return err;
    int64_t lo = 0, hi = 0;
    int64_t until = mph_clock_mono_ns() + (int64_t)timeout * 1000000;
    for (;;) {
        err = mph__kafka_watermarks(app->producer, r->topic, 0, &lo, &hi,
                                    timeout);
        if (!err || mph_clock_mono_ns() >= until)
            break;
        usleep(100000); /* a just-created topic may take a moment */
    }
    if (err) {
        snprintf(errstr, errstr_size,
                 "rpc_enabled: reply topic %s: cannot read its end: %s",
                 r->topic, mph_err_str(err));
        return err;
    }
    rd_kafka_conf_t *kc = mph__kafka_conf_new(
        app->kenv, app->conf, MPH__KAFKA_CONSUMER, errstr, errstr_size);
    if (!kc)
        return MPH_ERR_INVALID;
    if (mph__kafka_conf_set(kc, "fetch.wait.max.ms", "10", errstr,
                            errstr_size)) {
        rd_kafka_conf_destroy(kc);
        return MPH_ERR_INVALID;
    }
    r->consumer = mph__kafka_new(kc, MPH__KAFKA_CONSUMER, errstr, errstr_size);
    if (!r->consumer)
        return MPH_ERR_INVALID;
    rd_kafka_topic_partition_list_t *parts =
        rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, r->topic, 0)->offset = hi;
    rd_kafka_resp_err_t e = rd_kafka_assign(r->consumer, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (e) {
        snprintf(errstr, errstr_size, "reply topic %s: assign: %s", r->topic,
                 rd_kafka_err2str(e));
        rd_kafka_destroy(r->consumer);
        r->consumer = NULL;
        return mph__kafka_err(e);
    }
    ck_pr_store_int(&r->stop, 0);
    if (pthread_create(&r->thread, NULL, reply_main, r) != 0) {
        rd_kafka_destroy(r->consumer);
        r->consumer = NULL;
        snprintf(errstr, errstr_size, "rpc: cannot start the reply thread");
        return MPH_ERR_NOMEM;
    }
    r->thread_running = true;
    pthread_mutex_lock(&r->lock);
    r->accepting = true;
    pthread_mutex_unlock(&r->lock);
    mph_log(MPH_LOG_INFO, "rpc: replies on %s from offset %lld", r->topic,
            (long long)hi);
    return MPH_OK;
}

void mph__rpc_stop(mph_app_t *app)
{
    struct mph__rpc *r = app->rpc;
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->accepting = false;
    pthread_mutex_unlock(&r->lock);
    if (r->thread_running) {
        ck_pr_store_int(&r->stop, 1);
        pthread_join(r->thread, NULL);
        r->thread_running = false;
    }
    if (r->consumer) {
        rd_kafka_destroy_flags(r->consumer,
                               RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        r->consumer = NULL;
    }
    /* Every ask still waiting ends now. */
    for (;;) {
        pending_t *p = NULL;
        pthread_mutex_lock(&r->lock);
        for (size_t b = 0; b < RPC_BUCKETS && !p; b++)
            if (r->buckets[b])
                p = take(r, r->buckets[b]->id);
        pthread_mutex_unlock(&r->lock);
        if (!p)
            break;
        stat_add(&r->errors);
        p->cb(MPH_ERR_STOPPED, NULL, 0, p->opaque);
        free(p);
    }
    if (r->delete_on_stop && r->topic[0] && app->producer) {
        char err[256] = "";
        const char *names[] = {r->topic};
        /* Bounded: a stop must not hang on a broker that cannot delete. */
        if (mph__kafka_delete_topics(app->kenv, app->producer, names, 1, 3000,
                                     err, sizeof err) != MPH_OK)
            mph_log(MPH_LOG_WARN, "rpc: reply topic %s not deleted: %s",
                    r->topic, err[0] ? err : "the broker did not confirm it");
        r->delete_on_stop = false;
    }
}

void mph__rpc_free(mph_app_t *app)
{
    struct mph__rpc *r = app->rpc;
    if (!r)
        return;
    mph__rpc_stop(app);
    pthread_mutex_destroy(&r->lock);
    free(r->buckets);
    free(r->heap);
    free(r);
    app->rpc = NULL;
}

const char *mph_rpc_reply_topic(const mph_app_t *app)
{
    return app && app->rpc && app->rpc->topic[0] ? app->rpc->topic : NULL;
}

uint64_t mph_rpc_stat(const mph_app_t *app, const char *name)
{
    struct mph__rpc *r = app ? app->rpc : NULL;
    if (!r || !name)
        return 0;
    if (!strcmp(name, "asks"))
        return ck_pr_load_64(&r->asks);
    if (!strcmp(name, "replies"))
        return ck_pr_load_64(&r->replies);
    if (!strcmp(name, "timeouts"))
        return ck_pr_load_64(&r->timeouts);
    if (!strcmp(name, "late"))
        return ck_pr_load_64(&r->late);
    if (!strcmp(name, "unknown"))
        return ck_pr_load_64(&r->unknown);
    if (!strcmp(name, "errors"))
        return ck_pr_load_64(&r->errors);
    if (!strcmp(name, "pending")) {
        pthread_mutex_lock(&r->lock);
        uint64_t n = r->npending;
        pthread_mutex_unlock(&r->lock);
        return n;
    }
    return 0;
}

/*
 * One passthrough run: consume every record of an input topic, read the
 * JSON field "user" of each, send its key and value to an output topic.
 * Either mephisto does it (an agent using the JSON shim and
 * mph_event_send_ts) or the baseline does: a plain librdkafka loop per
 * thread (consumer_poll → mph_json_parse/get_str → produce), with the
 * engine's own producer and consumer settings, as many threads as mephisto
 * has workers, each with its own consumer (one group) and producer.
 *
 * Both sides do the same work. By default they send key and value only,
 * stamped with the producer's clock (mephisto: mph_event_send_ts with
 * timestamp 0, which is rd_kafka_produce as in the loop). With --forward
 * both forward the record as mph_event_forward does, headers and event
 * time included: mephisto calls mph_event_forward, the loop reads the
 * headers (rd_kafka_message_headers: librdkafka allocates to find that a
 * record has none), copies them and produces with the source timestamp
 * (rd_kafka_producev).
 *
 * Timing is the same for both: from the first record consumed (the first
 * callback or poll that returns a record) until the broker acknowledged
 * the last output with acks=all. The main thread watches per-thread
 * counters (records processed, outputs acknowledged: each engine's own
 * delivery reports) and asks the broker for the output's end offsets only
 * once every output was acknowledged, to confirm it, so the watching costs
 * neither the engine nor the broker anything during the run. CPU time is
 * the process's (getrusage) between those two moments, less the watching
 * thread's own (bench_sys_add_watch_cpu).
 */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "mephisto/json.h"
#include "mephisto/sensor.h"

struct counter {
    uint64_t n;
    char pad[56];
};

typedef struct pt_ctx {
    int nthreads;
    mph_json_parser_t **parsers;
    struct counter *counts;
    struct counter *acked; /* outputs the broker acknowledged, per thread */
    bench_first_t first;
    mph_topic_t *out;
    bool forward; /* --forward: mph_event_forward (headers, event time) */
} pt_ctx_t;

static uint64_t processed(const pt_ctx_t *c)
{
    uint64_t s = 0;
    for (int i = 0; i < c->nthreads; i++)
        s += __atomic_load_n(&c->counts[i].n, __ATOMIC_RELAXED);
    return s;
}

static uint64_t acked(const pt_ctx_t *c)
{
    uint64_t s = 0;
    for (int i = 0; i < c->nthreads; i++)
        s += __atomic_load_n(&c->acked[i].n, __ATOMIC_RELAXED);
    return s;
}

static void count_ack(pt_ctx_t *c, int idx)
{
    if (idx >= 0 && idx < c->nthreads)
        __atomic_fetch_add(&c->acked[idx].n, 1, __ATOMIC_RELAXED);
}

static int ctx_init(pt_ctx_t *c, int nthreads)
{
    memset(c, 0, sizeof *c);
    c->nthreads = nthreads;
    c->parsers = calloc((size_t)nthreads, sizeof *c->parsers);
    c->counts = aligned_alloc(64, (size_t)nthreads * sizeof *c->counts);
    c->acked = aligned_alloc(64, (size_t)nthreads * sizeof *c->acked);
    if (!c->parsers || !c->counts || !c->acked)
        return -1;
    memset(c->counts, 0, (size_t)nthreads * sizeof *c->counts);
    memset(c->acked, 0, (size_t)nthreads * sizeof *c->acked);
    char err[256];
    for (int i = 0; i < nthreads; i++)
        if (!(c->parsers[i] = mph_json_parser_new(0, err, sizeof err)))
            return -1;
    return 0;
}

static void ctx_fini(pt_ctx_t *c)
{
    for (int i = 0; c->parsers && i < c->nthreads; i++)
        mph_json_parser_destroy(c->parsers[i]);
    free(c->parsers);
    free(c->counts);
    free(c->acked);
}

/* The work both engines do per record: read one JSON field. */
static mph_err_t decode_user(mph_json_parser_t *p, const void *v, size_t len)
{
    mph_err_t err = mph_json_parse(p, v, len, len);
    if (err)
        return err;
    const char *s;
    size_t n;
    return mph_json_get_str(p, MPH_JSON_ROOT, "user", &s, &n);
}

/* ---- mephisto ---- */

static mph_err_t pt_agent(mph_event_t *ev, void *opaque)
{
    pt_ctx_t *c = opaque;
    int w = mph_event_worker(ev);
    bench_first_mark(&c->first);
    size_t len;
    const void *v = mph_event_value(ev, &len);
    mph_err_t err = decode_user(c->parsers[w], v, len);
    if (err)
        return err;
    if (c->forward) {
        err = mph_event_forward(ev, c->out);
    } else {
        size_t klen;
        const void *key = mph_event_key(ev, &klen);
        err = mph_event_send_ts(ev, c->out, MPH_PARTITION_ANY, key, klen, v, len, NULL, 0, 0);
    }
    __atomic_store_n(&c->counts[w].n, c->counts[w].n + 1, __ATOMIC_RELAXED);
    return err;
}

/* The engine's acknowledgements, counted as the plain loop counts its own:
 * on the thread that serves the worker's producer. */
static void pt_send_completed(void *opaque, int worker, uint64_t latency_ns)
{
    (void)latency_ns;
    count_ack(opaque, worker);
}

mph_conf_t *bench_app_conf(bench_kafka_t *k, const bench_opts_t *o,
                           const char *app_id, char *errstr, size_t errstr_size)
{
    mph_conf_t *conf = mph_conf_new();
    if (!conf) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    char num[32], linger[32];
    snprintf(num, sizeof num, "%d", o->workers);
    snprintf(linger, sizeof linger, "%d", o->linger_ms);
    char tpc[16];
    snprintf(tpc, sizeof tpc, "%d", o->threads_per_core);
    const char *kv[][2] = {
        {"broker", k ? bench_kafka_app_broker(k) : "kafka://127.0.0.1:9092"},
        {"app_id", app_id},
        {"workers", num},
        {"threads_per_core", tpc},
        {"cpus", o->cpus ? o->cpus : ""},
        {"web_enabled", "false"},
        {"log_level", "warn"},
        {"producer_linger_ms", linger},
        {"shutdown_timeout_ms", "30000"},
    };
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (mph_conf_set(conf, kv[i][0], kv[i][1], errstr, errstr_size) !=
            MPH_OK) {
            mph_conf_destroy(conf);
            return NULL;
        }
    for (int i = 0; i < o->nsets; i++)
        if (mph_conf_set_pair(conf, o->sets[i], errstr, errstr_size) !=
            MPH_OK) {
            mph_conf_destroy(conf);
            return NULL;
        }
    return conf;
}

static bool user_datadir(const bench_opts_t *o)
{
    for (int i = 0; i < o->nsets; i++)
        if (strncmp(o->sets[i], "datadir=", 8) == 0)
            return true;
    return false;
}

mph_app_t *bench_app_new_tmp(bench_kafka_t *k, const bench_opts_t *o,
                             const char *app_id, bool keep_user_datadir,
                             char *datadir, size_t datadir_size, char *errstr,
                             size_t errstr_size)
{
    datadir[0] = 0;
    mph_conf_t *conf = bench_app_conf(k, o, app_id, errstr, errstr_size);
    if (!conf)
        return NULL;
    if (!(keep_user_datadir && user_datadir(o))) {
        if (!bench_tempdir(app_id, datadir, datadir_size)) {
            datadir[0] = 0;
            snprintf(errstr, errstr_size, "cannot make a datadir in $TMPDIR");
            mph_conf_destroy(conf);
            return NULL;
        }
        if (mph_conf_set(conf, "datadir", datadir, errstr, errstr_size)) {
            mph_conf_destroy(conf);
            return NULL;
        }
    }
    mph_app_t *app = mph_app_new(conf, errstr, errstr_size);
    if (!app)
        mph_conf_destroy(conf);
    return app;
}

int bench_workers(const bench_opts_t *o)
{
    char err[256];
    mph_conf_t *conf = bench_app_conf(NULL, o, "bench-probe", err, sizeof err);
    if (!conf)
        return 1;
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    if (!app) {
        mph_conf_destroy(conf);
        return 1;
    }
    int n = mph_app_workers(app);
    mph_app_destroy(app);
    return n > 0 ? n : 1;
}

/* ---- the baseline: plain librdkafka loops ---- */

typedef struct bl_thread {
    pt_ctx_t *ctx;
    int idx;
    int cpu; /* -1: not pinned */
    rd_kafka_t *consumer;
    rd_kafka_t *producer;
    rd_kafka_topic_t *rkt;
    bool forward; /* --forward: headers and event time, as mph_event_forward */
    int stop; /* __atomic */
    pthread_t th;
} bl_thread_t;

/* Produces m's key and value to t's output topic (with forward also its
 * headers and timestamp, by the calls mph_event_forward makes); waits while
 * the producer's queue is full. */
static void bl_forward(bl_thread_t *t, const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *h = NULL, *hc = NULL;
    if (t->forward && rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR)
        hc = rd_kafka_headers_copy(h);
    int64_t ts = t->forward ? rd_kafka_message_timestamp(m, NULL) : 0;
    rd_kafka_resp_err_t e;
    for (;;) {
        e =
            t->forward ? rd_kafka_producev(t->producer, RD_KAFKA_V_RKT(t->rkt),
                                   RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
                                   RD_KAFKA_V_KEY(m->key, m->key_len),
                                   RD_KAFKA_V_VALUE(m->payload, m->len),
                                   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                   RD_KAFKA_V_HEADERS(hc),
                                   RD_KAFKA_V_TIMESTAMP(ts > 0 ? ts : 0), RD_KAFKA_V_END)
               : rd_kafka_produce(t->rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY,
                                  m->payload, m->len, m->key, m->key_len, NULL) == -1
                   ? rd_kafka_last_error()
                   : RD_KAFKA_RESP_ERR_NO_ERROR;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            break;
        rd_kafka_poll(t->producer, 10);
    }
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR && hc)
        rd_kafka_headers_destroy(hc); /* a refused record's headers stay the caller's */
}

static void *bl_main(void *arg)
{
    bl_thread_t *t = arg;
    pt_ctx_t *c = t->ctx;
    if (t->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(t->cpu, &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    mph_json_parser_t *p = c->parsers[t->idx];
    while (!__atomic_load_n(&t->stop, __ATOMIC_RELAXED)) {
        /* While outputs are in flight the loop wakes every millisecond to
         * serve their delivery reports (as the engine's worker wakes on
         * its producer's), so the run's end is seen when it happens. */
        rd_kafka_message_t *m = rd_kafka_consumer_poll(
            t->consumer, rd_kafka_outq_len(t->producer) > 0 ? 1 : 100);
        if (!m) {
            rd_kafka_poll(t->producer, 0);
            continue;
        }
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        bench_first_mark(&c->first);
        if (decode_user(p, m->payload, m->len) == MPH_OK)
            bl_forward(t, m);
        rd_kafka_message_destroy(m);
        rd_kafka_poll(t->producer, 0);
        __atomic_store_n(&c->counts[t->idx].n, c->counts[t->idx].n + 1,
                         __ATOMIC_RELAXED);
    }
    rd_kafka_flush(t->producer, 30000);
    return NULL;
}

/* CPU i of a Linux cpu list ("0-3,6"), or -1. */
static int cpu_at(const char *list, int i)
{
    if (!list || !*list)
        return -1;
    const char *s = list;
    while (*s) {
        char *end;
        long a = strtol(s, &end, 10), b = a;
        if (end == s)
            return -1;
        if (*end == '-')
            b = strtol(end + 1, &end, 10);
        for (long cpu = a; cpu <= b; cpu++)
            if (i-- == 0)
                return (int)cpu;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return -1;
    }
    return -1;
}

static void bl_delivered(rd_kafka_t *rk, const rd_kafka_message_t *m,
                         void *opaque)
{
    (void)rk;
    bl_thread_t *t = opaque;
    if (!m->err)
        count_ack(t->ctx, t->idx);
}

static void bl_free(bl_thread_t *t)
{
    if (t->consumer) {
        rd_kafka_consumer_close(t->consumer);
        rd_kafka_destroy(t->consumer);
    }
    if (t->rkt)
        rd_kafka_topic_destroy(t->rkt);
    if (t->producer)
        rd_kafka_destroy(t->producer);
}

static int bl_new(bl_thread_t *t, bench_kafka_t *k, const bench_opts_t *o,
                  const char *group, const char *in, const char *out,
                  char *errstr, size_t errstr_size)
{
    char kerr[400], cid[64];
    rd_kafka_conf_t *kc = bench_kafka_conf(k);
    snprintf(cid, sizeof cid, "bench-baseline-c%d", t->idx);
    rd_kafka_conf_set(kc, "client.id", cid, NULL, 0);
    bench_kafka_engine_consumer(kc, group);
    /* The plain loop commits what it consumed, every commit_interval_ms of
     * the engine's default. */
    rd_kafka_conf_set(kc, "enable.auto.commit", "true", NULL, 0);
    rd_kafka_conf_set(kc, "auto.commit.interval.ms", "1000", NULL, 0);
    t->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, kc, kerr, sizeof kerr);
    if (!t->consumer) {
        rd_kafka_conf_destroy(kc);
        snprintf(errstr, errstr_size, "baseline consumer: %s", kerr);
        return -1;
    }
    rd_kafka_poll_set_consumer(t->consumer);
    kc = bench_kafka_conf(k);
    snprintf(cid, sizeof cid, "bench-baseline-p%d", t->idx);
    rd_kafka_conf_set(kc, "client.id", cid, NULL, 0);
    bench_kafka_engine_producer(kc, o->linger_ms);
    rd_kafka_conf_set_dr_msg_cb(kc, bl_delivered);
    rd_kafka_conf_set_opaque(kc, t);
    t->producer = rd_kafka_new(RD_KAFKA_PRODUCER, kc, kerr, sizeof kerr);
    if (!t->producer) {
        rd_kafka_conf_destroy(kc);
        snprintf(errstr, errstr_size, "baseline producer: %s", kerr);
        return -1;
    }
    t->rkt = rd_kafka_topic_new(t->producer, out, NULL);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, in, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(t->consumer, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (e) {
        snprintf(errstr, errstr_size, "baseline subscribe: %s",
                 rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

/* Creates and starts c->nthreads baseline threads into *blp (NULL when out
 * of memory); *started says how many run. 0, or -1 with errstr (stop and
 * free what started with bl_stop). */
static int bl_start(pt_ctx_t *c, bench_kafka_t *k, const bench_opts_t *o,
                    const char *group, const char *in, const char *out,
                    bl_thread_t **blp, int *started, char *errstr,
                    size_t errstr_size)
{
    int nthreads = c->nthreads;
    bl_thread_t *bl = *blp = calloc((size_t)nthreads, sizeof *bl);
    *started = 0;
    if (!bl) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    for (int i = 0; i < nthreads; i++) {
        bl[i].ctx = c;
        bl[i].idx = i;
        bl[i].forward = o->forward;
        bl[i].cpu = cpu_at(
            o->cpus, i / (o->threads_per_core > 0 ? o->threads_per_core : 1));
        if (bl_new(&bl[i], k, o, group, in, out, errstr, errstr_size))
            return -1;
    }
    for (; *started < nthreads; (*started)++)
        if (pthread_create(&bl[*started].th, NULL, bl_main, &bl[*started])) {
            snprintf(errstr, errstr_size, "cannot start a thread");
            return -1;
        }
    return 0;
}

/* Stops and joins the started threads, frees them all and bl. */
static void bl_stop(bl_thread_t *bl, int nthreads, int started)
{
    for (int i = 0; i < started; i++)
        __atomic_store_n(&bl[i].stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < started; i++)
        pthread_join(bl[i].th, NULL);
    for (int i = 0; bl && i < nthreads; i++)
        bl_free(&bl[i]);
    free(bl);
}

/* ---- the common run ---- */

/* CPU seconds the calling thread used so far. */
static double thread_cpu_s(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts))
        return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int bench_watch(const bench_opts_t *o, const bench_watch_t *w,
                const char *label, long n, int64_t *t_end, char *errstr,
                size_t errstr_size)
{
    int64_t start = bench_now_ns(), last = start;
    int64_t deadline = start + (int64_t)(o->timeout * 1e9);
    uint64_t prev = 0;
    /* This thread's CPU is tallied as it goes (before every check), so a
     * sample taken by a worker meanwhile leaves it out. */
    double cpu = thread_cpu_s();
    int rc;
    for (;;) {
        double now_cpu = thread_cpu_s();
        bench_sys_add_watch_cpu(now_cpu - cpu);
        cpu = now_cpu;
        int64_t now = bench_now_ns();
        uint64_t done = w->processed(w->ctx);
        if (done >= (uint64_t)n && w->finished(w->ctx)) {
            *t_end = bench_now_ns();
            rc = 0;
            break;
        }
        if (now - last >= 1000000000) {
            bench_progress(o, "%s: %llu/%ld records (%.0f/s)", label,
                           (unsigned long long)done, n,
                           (double)(done - prev) * 1e9 / (double)(now - last));
            prev = done;
            last = now;
        }
        if (now > deadline) {
            snprintf(errstr, errstr_size,
                     "timed out after %.0f s: %llu of %ld records processed",
                     o->timeout, (unsigned long long)done, n);
            rc = -1;
            break;
        }
        bench_sleep_ms(done >= (uint64_t)n ? w->finish_poll_ms : 5);
    }
    bench_sys_add_watch_cpu(thread_cpu_s() - cpu);
    return rc;
}

/* MPH_BENCH_PUNCTUATE_MS=N: the passthrough agent also gets a wall-clock
 * punctuator of N ms doing nothing, on every partition (issue #18: the
 * cost of punctuators per record). Unset: none. */
static mph_err_t pt_punct_fn(mph_event_t *ev, int64_t time_ms, void *opaque)
{
    (void)ev, (void)time_ms, (void)opaque;
    return MPH_OK;
}

static mph_err_t pt_punctuate(mph_agent_t *agent, char *err, size_t errlen)
{
    const char *v = getenv("MPH_BENCH_PUNCTUATE_MS");
    if (!v || !*v)
        return MPH_OK;
    mph_err_t e = mph_agent_punctuate(agent, atoll(v), MPH_PUNCTUATE_WALL, pt_punct_fn, NULL);
    if (e)
        snprintf(err, errlen, "MPH_BENCH_PUNCTUATE_MS=%s: %s", v, mph_err_str(e));
    return e;
}

/* The passthrough's end: every output acknowledged (the engines' own
 * delivery reports, counted in process: no broker request while records
 * are still in flight, which at thousands of partitions used to load the
 * very broker the run waits on), then, once, `out` grown by n and, in an
 * exactly_once invocation (reader set), the group's committed offsets at
 * the end of `in` (its n records): under exactly_once the transaction
 * holding the last outputs committed. Broker checks are at least
 * BROKER_CHECK_MS apart. */
#define BROKER_CHECK_MS 5
typedef struct pt_watch {
    bench_kafka_t *k;
    pt_ctx_t *c;
    const char *out;
    int partitions;
    int64_t base;
    long n;
    rd_kafka_t *reader; /* NULL: not waited for */
    const char *in;
    int64_t last_check_ns;
} pt_watch_t;

static uint64_t pt_processed(void *ctx)
{
    return processed(((pt_watch_t *)ctx)->c);
}

static bool pt_finished(void *ctx)
{
    pt_watch_t *w = ctx;
    if (acked(w->c) < (uint64_t)w->n)
        return false;
    int64_t now = bench_now_ns();
    if (now - w->last_check_ns < BROKER_CHECK_MS * 1000000LL)
        return false;
    w->last_check_ns = now;
    if (w->reader &&
        bench_committed(w->reader, w->in, w->partitions) < (int64_t)w->n)
        return false;
    int64_t end = bench_end_offsets(w->k, w->out, w->partitions);
    return end >= 0 && end - w->base >= w->n;
}

int bench_passthrough_run(bench_kafka_t *k, const bench_opts_t *o,
                          bench_engine_t engine, const char *label,
                          const char *in, const char *out, int partitions,
                          long n, bench_run_t *res)
{
    char err[500], id[64], group[128], datadir[256] = "";
    memset(res, 0, sizeof *res);
    int rc = -1;
    int nthreads = bench_workers(o);
    pt_ctx_t c;
    mph_app_t *app = NULL;
    bl_thread_t *bl = NULL;
    mph_sensor_t *sensor = NULL; /* counts the engine's acknowledgements */
    rd_kafka_t *reader = NULL;
    int64_t *from = NULL; /* exactly_once invocations: out's ends before */
    int started = 0;
    if (ctx_init(&c, nthreads)) {
        snprintf(res->error, sizeof res->error, "out of memory");
        goto out_ctx;
    }
    c.forward = o->forward;
    c.first.broker_pid = bench_kafka_broker_pid(k);
    snprintf(group, sizeof group, "bench-%s-%s",
             engine == BENCH_ENGINE_MEPHISTO ? "mph" : "base",
             bench_run_id(id, sizeof id));
    /* Fresh topics may refuse ListOffsets for a while (no leader yet). */
    int64_t base = bench_end_offsets(k, out, partitions);
    for (int i = 0; base < 0 && i < 60; i++) {
        bench_sleep_ms(500);
        base = bench_end_offsets(k, out, partitions);
    }
    if (base < 0) {
        snprintf(res->error, sizeof res->error,
                 "cannot read the end offsets of %s (a broker out of open "
                 "files? it holds one per partition)", out);
        goto out_ctx;
    }
    if (o->exactly_once) {
        from = calloc((size_t)partitions, sizeof *from);
        if (!from || bench_end_offsets_each(k, out, partitions, from)) {
            snprintf(res->error, sizeof res->error,
                     "cannot read the end offsets of %s", out);
            goto out_ctx;
        }
        if (!(reader = bench_offsets_reader(k, group, err, sizeof err))) {
            snprintf(res->error, sizeof res->error, "offsets reader: %s", err);
            goto out_ctx;
        }
    }
    bench_rss_reset();

    if (engine == BENCH_ENGINE_MEPHISTO) {
        /* A temp datadir: under exactly_once the engine writes one even
         * for a stateless app. */
        app = bench_app_new_tmp(k, o, group, false, datadir, sizeof datadir,
                                err, sizeof err);
        if (!app) {
            snprintf(res->error, sizeof res->error, "%s", err);
            goto out_ctx;
        }
        mph_topic_t *tin = mph_topic_new(app, in, NULL, err, sizeof err);
        c.out = tin ? mph_topic_new(app, out, NULL, err, sizeof err) : NULL;
        sensor = c.out ? mph_sensor_new(&c, err, sizeof err) : NULL;
        mph_agent_t *agent = NULL;
        if (!sensor ||
            mph_sensor_on_send_completed(sensor, pt_send_completed) ||
            mph_app_add_sensor(app, sensor) ||
            !(agent = mph_agent_new(app, "passthrough", tin, pt_agent, &c, err,
                                    sizeof err)) ||
            pt_punctuate(agent, err, sizeof err) != MPH_OK ||
            mph_app_start(app, err, sizeof err) != MPH_OK) {
            snprintf(res->error, sizeof res->error, "%s", err);
            goto out_app;
        }
    } else if (bl_start(&c, k, o, group, in, out, &bl, &started, res->error,
                        sizeof res->error)) {
        goto out_bl;
    }

    int64_t t_end = 0;
    pt_watch_t pw = {k, &c, out, partitions, base, n, reader, in, 0};
    bench_watch_t watch = {pt_processed, pt_finished, &pw, 1};
    if (bench_watch(o, &watch, label, n, &t_end, res->error,
                    sizeof res->error) == 0) {
        bench_run_finish(res, &c.first, t_end, n);
        bench_callgrind_dump(label);
        rc = 0;
    }

out_bl:
    bl_stop(bl, nthreads, started);
out_app:
    if (app) {
        mph_err_t e = mph_app_stop(app);
        if (e && rc == 0 && !res->error[0])
            snprintf(res->error, sizeof res->error, "app stopped with %s",
                     mph_err_str(e));
        mph_app_destroy(app);
    }
    mph_sensor_destroy(sensor);
    /* The check reads out after the app stopped: nothing is in flight. */
    if (rc == 0 && from) {
        if (bench_check_output(k, o, out, partitions, from, n,
                               o->run_exactly_once,
                               res->check, sizeof res->check) &&
            !res->error[0]) {
            snprintf(res->error, sizeof res->error, "output check: %s",
                     res->check);
            rc = -1;
        }
    }
    if (engine == BENCH_ENGINE_MEPHISTO)
        bench_app_forget(k, group); /* the app's id is the group */
    else
        bench_group_delete(k, group);
out_ctx:
    bench_rmtree(datadir);
    if (reader)
        rd_kafka_destroy(reader);
    free(from);
    ctx_fini(&c);
    return rc;
}

/* ---- interleaved comparison ---- */

int bench_passthrough_compare(bench_kafka_t *k, const bench_opts_t *o,
                              bool with_baseline, const char *base_prefix,
                              const char *in, const char *out, int partitions,
                              long n, bench_result_t *r)
{
    int reps = o->repeat < BENCH_MAX_ROUNDS ? o->repeat : BENCH_MAX_ROUNDS;
    bench_series_t mser = {0}, bser = {0};
    /* Each run writes to a topic of its own, created before it and
     * deleted after it. On a freshly started broker (Kafka 4.1, 512
     * partitions and up) a producer appending to partitions another
     * producer had filled seconds before ran at a fifth of its rate or
     * less, whichever engine came second and also when it was the same
     * engine's next round (the broker's request handlers in its index
     * appends): a shared output topic measured the broker, not the engine.
     * A broker deletes thousands of partitions slowly (minutes) and holds
     * a file per partition until then: --repeat 3 at 4,096 partitions
     * needs a broker allowed ~30,000 open files. */
    int rc = 0;
    for (int i = 0; i < reps && !rc; i++) {
        /* Alternate the order so that drift (broker compaction, page cache,
         * other load) does not always favour the same side. */
        for (int side = 0; side < 2; side++) {
            bool mph = (i % 2 == 0) ? side == 1 : side == 0;
            if (!mph && !with_baseline)
                continue;
            char label[96], run_out[200], err[256] = "";
            snprintf(label, sizeof label, "%s %s p=%d round %d/%d", r->scenario,
                     mph ? "mephisto" : "baseline", partitions, i + 1, reps);
            snprintf(run_out, sizeof run_out, "%s-%c%d", out, mph ? 'm' : 'b',
                     i + 1);
            if (bench_topic_create(k, run_out, partitions, err, sizeof err)) {
                snprintf(r->error, sizeof r->error, "%s", err);
                rc = -1;
                break;
            }
            bench_run_t run;
            bench_passthrough_run(
                k, o, mph ? BENCH_ENGINE_MEPHISTO : BENCH_ENGINE_BASELINE,
                label, in, run_out, partitions, n, &run);
            bench_topic_delete(k, run_out);
            if (run.error[0]) {
                snprintf(r->error, sizeof r->error, "%s: %s",
                         mph ? "mephisto" : "baseline", run.error);
                rc = -1;
                break;
            }
            double rate = bench_series_add(mph ? &mser : &bser, &run);
            bench_progress(o,
                           "%s: %.0f records/s, %.2f s CPU, peak RSS %ld KiB",
                           label, rate, run.cpu_s, run.peak_rss_kb);
        }
    }
    if (rc)
        return rc;
    bench_series_result(&mser, with_baseline ? &bser : NULL, base_prefix, n,
                        o->size, r);
    return 0;
}

int bench_baseline_serve(bench_kafka_t *k, const bench_opts_t *o,
                         const char *group, const char *in, const char *out,
                         const volatile int *stop, char *errstr,
                         size_t errstr_size)
{
    int nthreads = bench_workers(o), started = 0, rc = -1;
    pt_ctx_t c;
    bl_thread_t *bl = NULL;
    if (ctx_init(&c, nthreads)) {
        snprintf(errstr, errstr_size, "out of memory");
        goto out;
    }
    if (bl_start(&c, k, o, group, in, out, &bl, &started, errstr, errstr_size))
        goto out;
    while (!*stop)
        bench_sleep_ms(50);
    rc = 0;
out:
    bl_stop(bl, nthreads, started);
    ctx_fini(&c);
    return rc;
}

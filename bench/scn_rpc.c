/*
 * rpc: agent RPC round trips (mph_agent_ask → agent → mph_event_reply →
 * the asker's reply thread) at 1,000 and 10,000 asks/s, against a bare
 * librdkafka request/reply pair measured in the same run on the same
 * broker: a client produces a request, a server thread consumes it and
 * produces the reply to a one-partition reply topic, the client consumes
 * it (produce → consume → produce → consume).
 *
 * Both sides use producer linger 0 (mephisto: producer_linger_ms=0) and one
 * worker/server thread. Latency is from just before the request is handed
 * to the client library to the moment the reply is in the caller's hands
 * (mephisto: the reply callback; baseline: the reply consumer's poll).
 * Each rate runs the baseline, then mephisto, each --seconds after a 1 s
 * warm-up (on the mock cluster only the first rate, as a smoke test). Target
 * (reported, never asserted): mephisto's p99 <= 1.5 x the baseline's p99.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

typedef struct rpc_side {
    bench_hist_t *hist; /* written by one thread (reply thread / consumer) */
    int64_t window_start_ns, window_end_ns; /* __atomic */
    int64_t replies, timeouts, errors;      /* __atomic */
    int64_t seen;                           /* any reply at all; __atomic */
    int stop;                               /* __atomic */
} rpc_side_t;

/* ---- pacing ---- */

static void sleep_until(int64_t t_ns)
{
    int64_t now = bench_now_ns();
    if (t_ns <= now)
        return;
    struct timespec ts = {(t_ns - now) / 1000000000, (t_ns - now) % 1000000000};
    nanosleep(&ts, NULL);
}

static bool in_window(rpc_side_t *s, int64_t sent_ns)
{
    return sent_ns >= __atomic_load_n(&s->window_start_ns, __ATOMIC_ACQUIRE) &&
           sent_ns < __atomic_load_n(&s->window_end_ns, __ATOMIC_ACQUIRE);
}

/* ---- mephisto ---- */

static mph_err_t echo(mph_event_t *ev, void *opaque)
{
    (void)opaque;
    size_t len = 0;
    const void *v = mph_event_value(ev, &len);
    return mph_event_reply(ev, v, len);
}

static void on_reply(mph_err_t err, const void *value, size_t len, void *opaque)
{
    (void)value;
    (void)len;
    rpc_side_t *s = opaque;
    int64_t now = bench_now_ns(), sent = 0;
    if (err == MPH_OK && len == sizeof sent) {
        memcpy(&sent, value, sizeof sent);
        if (in_window(s, sent)) {
            bench_hist_add(s->hist, now - sent);
            __atomic_add_fetch(&s->replies, 1, __ATOMIC_RELAXED);
        }
    } else if (err == MPH_ERR_TIMEOUT) {
        __atomic_add_fetch(&s->timeouts, 1, __ATOMIC_RELAXED);
    } else {
        __atomic_add_fetch(&s->errors, 1, __ATOMIC_RELAXED);
    }
}

/* Asks at rate for warm-up + seconds; the window is the measured part. */
static int run_mephisto(bench_kafka_t *k, const bench_opts_t *o, double rate,
                        rpc_side_t *s, char *err, size_t err_size)
{
    char id[64], app_id[128], topic[160];
    bench_run_id(id, sizeof id);
    snprintf(app_id, sizeof app_id, "bench-rpc-%s", id);
    snprintf(topic, sizeof topic, "bench-rpc-%s-req", id);
    if (bench_topic_create(k, topic, o->partitions, err, err_size))
        return -1;
    int rc = -1;
    mph_conf_t *conf = bench_app_conf(k, o, app_id, err, err_size);
    mph_app_t *app = NULL;
    if (!conf || mph_conf_set(conf, "rpc_enabled", "true", err, err_size) ||
        mph_conf_set(conf, "producer_linger_ms", "0", err, err_size) ||
        mph_conf_set(conf, "workers", "1", err, err_size) ||
        !(app = mph_app_new(conf, err, err_size))) {
        mph_conf_destroy(conf);
        goto out;
    }
    mph_topic_t *t = mph_topic_new(app, topic, NULL, err, err_size);
    mph_agent_t *a =
        t ? mph_agent_new(app, "echo", t, echo, NULL, err, err_size) : NULL;
    if (!a || mph_app_start(app, err, err_size) != MPH_OK)
        goto out;
    /* Wait until an ask comes back (the group owns the partitions). */
    void *reply = NULL;
    size_t rlen = 0;
    int64_t ready_by = bench_now_ns() + (int64_t)(o->timeout * 1e9);
    mph_err_t e = MPH_ERR_TIMEOUT;
    while (e != MPH_OK && bench_now_ns() < ready_by) {
        e = mph_agent_ask_wait(app, a, "warm", 4, "12345678", 8, 2000, &reply,
                               &rlen);
        free(reply);
        reply = NULL;
    }
    if (e != MPH_OK) {
        snprintf(err, err_size, "mephisto: no reply within %.0f s: %s",
                 o->timeout, mph_err_str(e));
        goto out;
    }
    int64_t t0 = bench_now_ns(), warm = t0 + 1000000000LL;
    int64_t end = warm + (int64_t)(o->seconds * 1e9);
    __atomic_store_n(&s->window_start_ns, warm, __ATOMIC_RELEASE);
    __atomic_store_n(&s->window_end_ns, end, __ATOMIC_RELEASE);
    char key[16];
    for (int64_t i = 0;; i++) {
        int64_t due = t0 + (int64_t)((double)i * 1e9 / rate);
        if (due >= end)
            break;
        sleep_until(due);
        int64_t sent = bench_now_ns();
        int kl = snprintf(key, sizeof key, "u%lld", (long long)(i % o->keys));
        e = mph_agent_ask(app, a, key, (size_t)kl, &sent, sizeof sent, 10000,
                          on_reply, s);
        if (e)
            __atomic_add_fetch(&s->errors, 1, __ATOMIC_RELAXED);
    }
    /* Outstanding asks end within their timeout. */
    int64_t drain = bench_now_ns() + 11000000000LL;
    while (mph_rpc_stat(app, "pending") > 0 && bench_now_ns() < drain)
        bench_sleep_ms(10);
    rc = 0;
out:
    mph_app_destroy(app);
    bench_app_forget(k, app_id);
    bench_topic_delete(k, topic);
    return rc;
}

/* ---- the bare librdkafka pair ---- */

typedef struct bare {
    const bench_opts_t *o;
    rpc_side_t *s;
    rd_kafka_t *server_c, *server_p, *client_c;
    char req[160], rep[160];
} bare_t;

static void *server_main(void *arg)
{
    bare_t *b = arg;
    while (!__atomic_load_n(&b->s->stop, __ATOMIC_ACQUIRE)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(b->server_c, 50);
        if (!m)
            continue;
        if (!m->err)
            while (rd_kafka_producev(b->server_p, RD_KAFKA_V_TOPIC(b->rep),
                                     RD_KAFKA_V_PARTITION(0),
                                     RD_KAFKA_V_VALUE(m->payload, m->len),
                                     RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                     RD_KAFKA_V_END) ==
                   RD_KAFKA_RESP_ERR__QUEUE_FULL)
                rd_kafka_poll(b->server_p, 1);
        rd_kafka_message_destroy(m);
        rd_kafka_poll(b->server_p, 0);
    }
    return NULL;
}

static void *client_reader_main(void *arg)
{
    bare_t *b = arg;
    rpc_side_t *s = b->s;
    while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(b->client_c, 50);
        if (!m)
            continue;
        int64_t now = bench_now_ns(), sent = 0;
        if (!m->err && m->len == sizeof sent) {
            memcpy(&sent, m->payload, sizeof sent);
            __atomic_add_fetch(&s->seen, 1, __ATOMIC_RELAXED);
            if (in_window(s, sent)) {
                bench_hist_add(s->hist, now - sent);
                __atomic_add_fetch(&s->replies, 1, __ATOMIC_RELAXED);
            }
        }
        rd_kafka_message_destroy(m);
    }
    return NULL;
}

static rd_kafka_t *bare_producer(bench_kafka_t *k, char *err, size_t err_size)
{
    char kerr[400];
    rd_kafka_conf_t *kc = bench_kafka_conf(k);
    bench_kafka_engine_producer(kc, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, kerr, sizeof kerr);
    if (!rk) {
        rd_kafka_conf_destroy(kc);
        snprintf(err, err_size, "producer: %s", kerr);
    }
    return rk;
}

static rd_kafka_t *bare_consumer(bench_kafka_t *k, const char *group, char *err,
                                 size_t err_size)
{
    char kerr[400];
    rd_kafka_conf_t *kc = bench_kafka_conf(k);
    bench_kafka_engine_consumer(kc, group);
    rd_kafka_conf_set(kc, "fetch.wait.max.ms", "10", kerr, sizeof kerr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, kerr, sizeof kerr);
    if (!rk) {
        rd_kafka_conf_destroy(kc);
        snprintf(err, err_size, "consumer: %s", kerr);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

static int run_bare(bench_kafka_t *k, const bench_opts_t *o, double rate,
                    rpc_side_t *s, char *err, size_t err_size)
{
    char id[64], group[160];
    bare_t b = {.o = o, .s = s};
    bench_run_id(id, sizeof id);
    snprintf(b.req, sizeof b.req, "bench-rpcb-%s-req", id);
    snprintf(b.rep, sizeof b.rep, "bench-rpcb-%s-rep", id);
    snprintf(group, sizeof group, "bench-rpcb-%s", id);
    int rc = -1;
    rd_kafka_t *client_p = NULL;
    bool threads = false;
    pthread_t ts, tc;
    if (bench_topic_create(k, b.req, o->partitions, err, err_size) ||
        bench_topic_create(k, b.rep, 1, err, err_size))
        goto out;
    if (!(b.server_c = bare_consumer(k, group, err, err_size)) ||
        !(b.client_c = bare_consumer(k, group, err, err_size)) ||
        !(b.server_p = bare_producer(k, err, err_size)) ||
        !(client_p = bare_producer(k, err, err_size)))
        goto out;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, b.req, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(b.server_c, l);
    rd_kafka_topic_partition_list_destroy(l);
    l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, b.rep, 0)->offset =
        RD_KAFKA_OFFSET_END;
    rd_kafka_assign(b.client_c, l);
    rd_kafka_topic_partition_list_destroy(l);
    pthread_create(&ts, NULL, server_main, &b);
    pthread_create(&tc, NULL, client_reader_main, &b);
    threads = true;
    /* Warm until a request made the round trip (group joined). */
    int64_t ready_by = bench_now_ns() + (int64_t)(o->timeout * 1e9);
    __atomic_store_n(&s->window_start_ns, INT64_MAX, __ATOMIC_RELEASE);
    __atomic_store_n(&s->window_end_ns, INT64_MAX, __ATOMIC_RELEASE);
    while (__atomic_load_n(&s->seen, __ATOMIC_RELAXED) == 0 &&
           bench_now_ns() < ready_by) {
        int64_t sent = bench_now_ns();
        rd_kafka_producev(
            client_p, RD_KAFKA_V_TOPIC(b.req), RD_KAFKA_V_KEY("warm", 4),
            RD_KAFKA_V_VALUE(&sent, sizeof sent),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        rd_kafka_poll(client_p, 200);
    }
    if (__atomic_load_n(&s->seen, __ATOMIC_RELAXED) == 0) {
        snprintf(err, err_size, "baseline: no reply within %.0f s", o->timeout);
        goto out;
    }
    bench_sleep_ms(200);
    int64_t t0 = bench_now_ns(), warm = t0 + 1000000000LL;
    int64_t end = warm + (int64_t)(o->seconds * 1e9);
    __atomic_store_n(&s->window_end_ns, end, __ATOMIC_RELEASE);
    __atomic_store_n(&s->window_start_ns, warm, __ATOMIC_RELEASE);
    char key[16];
    for (int64_t i = 0;; i++) {
        int64_t due = t0 + (int64_t)((double)i * 1e9 / rate);
        if (due >= end)
            break;
        sleep_until(due);
        int64_t sent = bench_now_ns();
        int kl = snprintf(key, sizeof key, "u%lld", (long long)(i % o->keys));
        while (rd_kafka_producev(
                   client_p, RD_KAFKA_V_TOPIC(b.req), RD_KAFKA_V_KEY(key, kl),
                   RD_KAFKA_V_VALUE(&sent, sizeof sent),
                   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                   RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(client_p, 1);
        rd_kafka_poll(client_p, 0);
    }
    rd_kafka_flush(client_p, 10000);
    bench_sleep_ms(1000);
    rc = 0;
out:
    __atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
    if (threads) {
        pthread_join(ts, NULL);
        pthread_join(tc, NULL);
    }
    if (b.server_c) {
        rd_kafka_consumer_close(b.server_c);
        rd_kafka_destroy(b.server_c);
    }
    if (b.client_c)
        rd_kafka_destroy(b.client_c);
    if (b.server_p) {
        rd_kafka_flush(b.server_p, 5000);
        rd_kafka_destroy(b.server_p);
    }
    if (client_p)
        rd_kafka_destroy(client_p);
    bench_group_delete(k, group);
    bench_topic_delete(k, b.req);
    bench_topic_delete(k, b.rep);
    return rc;
}

static int run(const bench_opts_t *o)
{
    static const double rates[] = {1000, 10000};
    enum { NR = sizeof rates / sizeof rates[0] };
    bench_result_t r[NR];
    char err[640] = "", common[400];
    bench_params_common(o, common, sizeof common);
    bench_kafka_t *k = bench_kafka_new(o->broker, err, sizeof err);
    for (int i = 0; i < NR; i++) {
        bench_result_init(&r[i], "rpc");
        snprintf(r[i].label, sizeof r[i].label, "%.0f asks/s", rates[i]);
        snprintf(r[i].params, sizeof r[i].params,
                 "{%s,\"rate\":%.0f,\"seconds\":%.1f,\"producer_linger_ms\":0}",
                 common, rates[i], o->seconds);
    }
    if (!k)
        return bench_report_lines(o, r, NR, err);
    /* The mock cluster (the smoke run) proves the harness with one rate. */
    int nr = bench_kafka_is_mock(k) ? 1 : NR;
    for (int i = 0; i < nr; i++) {
        rpc_side_t base = {.hist = bench_hist_new()},
                   mph = {.hist = bench_hist_new()};
        bench_progress(o, "rpc: %.0f asks/s, bare librdkafka request/reply",
                       rates[i]);
        if (run_bare(k, o, rates[i], &base, r[i].error, sizeof r[i].error) ==
            0) {
            bench_progress(o, "rpc: %.0f asks/s, mephisto", rates[i]);
            bench_rss_reset();
            struct rusage ru0, ru1;
            bench_rusage(&ru0);
            if (run_mephisto(k, o, rates[i], &mph, r[i].error,
                             sizeof r[i].error) == 0) {
                bench_rusage(&ru1);
                r[i].cpu_s = bench_cpu_s(&ru1) - bench_cpu_s(&ru0);
                r[i].peak_rss_kb = bench_rss_peak_kb();
                r[i].messages = (uint64_t)mph.replies;
                r[i].seconds = o->seconds;
                r[i].msgs_per_s = (double)mph.replies / o->seconds;
                r[i].p50_us = bench_hist_quantile_us(mph.hist, 0.5);
                r[i].p99_us = bench_hist_quantile_us(mph.hist, 0.99);
                r[i].p999_us = bench_hist_quantile_us(mph.hist, 0.999);
                double bp99 = bench_hist_quantile_us(base.hist, 0.99);
                r[i].baseline_msgs_per_s = (double)base.replies / o->seconds;
                r[i].ratio = bp99 / r[i].p99_us;
                snprintf(r[i].target, sizeof r[i].target,
                         "p99 <= 1.5 x bare request/reply p99");
                r[i].target_met = r[i].p99_us <= 1.5 * bp99;
                bench_extra(
                    &r[i],
                    ",\"baseline_p50_us\":%.1f,\"baseline_p99_us\":%.1f,"
                    "\"baseline_p999_us\":%.1f,\"timeouts\":%lld,\"errors\":%"
                    "lld",
                    bench_hist_quantile_us(base.hist, 0.5), bp99,
                    bench_hist_quantile_us(base.hist, 0.999),
                    (long long)mph.timeouts, (long long)mph.errors);
                double expected = rates[i] * o->seconds;
                if ((double)mph.replies < 0.99 * expected)
                    snprintf(r[i].error, sizeof r[i].error,
                             "%lld of %.0f asks in the window answered (%lld "
                             "timeouts, %lld "
                             "errors)",
                             (long long)mph.replies, expected,
                             (long long)mph.timeouts, (long long)mph.errors);
            }
        }
        bench_hist_destroy(base.hist);
        bench_hist_destroy(mph.hist);
    }
    int failed = 0;
    for (int i = 0; i < nr; i++) {
        bench_report(o, &r[i]);
        failed |= r[i].error[0] != 0;
    }
    bench_kafka_destroy(k);
    return failed;
}

const bench_scenario_t bench_scn_rpc = {
    "rpc",
    "agent RPC round trip p50/p99/p99.9 at 1,000 and 10,000 asks/s vs a bare "
    "librdkafka request/reply pair",
    run};

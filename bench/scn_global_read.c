/*
 * global_read: lookups in a global table's in-memory copy from 2 threads
 * while updates apply (target: 100,000 updates/s), against the same
 * lookups on the same copy with no updates (the baseline, measured first).
 *
 * The table holds --keys keys (at most 100,000) of 64-byte values, loaded
 * through its changelog before the measurement. Updates are produced
 * straight to the changelog by a paced producer (what agents writing the
 * table do), and the copy applies them as its reader thread reads them
 * back. Readers look up uniformly random keys with
 * mph_global_table_get_into (a copy into their buffer, no allocation).
 * Reported: lookups/s per reader thread, and lookups per second of the
 * readers' own CPU time (what a thread with a core to itself would do, on
 * a machine shared with other load); updates/s sent, and that the copy
 * applied the last of them (checked at the end). Target (reported, never
 * asserted): >= 10M lookups/s per thread.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

#define VALUE_SIZE 64
#define READERS    2

typedef struct reader {
    mph_global_table_t *gt;
    int keys;
    uint64_t seed;
    int *stop;
    uint64_t lookups, found;
    double cpu_s; /* the thread's own CPU time while it read */
    pthread_t th;
} reader_t;

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t next_rand(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static void *reader_main(void *arg)
{
    reader_t *r = arg;
    char key[16], buf[VALUE_SIZE * 2];
    uint64_t n = 0, found = 0;
    double cpu0 = thread_cpu_s();
    while (!__atomic_load_n(r->stop, __ATOMIC_RELAXED)) {
        for (int i = 0; i < 1024; i++) {
            unsigned k = (unsigned)(next_rand(&r->seed) % (uint64_t)r->keys);
            /* "g" + 7 digits, written without printf */
            key[0] = 'g';
            for (int d = 7; d >= 1; d--, k /= 10)
                key[d] = (char)('0' + k % 10);
            size_t len = 0;
            found += mph_global_table_get_into(r->gt, key, 8, buf, sizeof buf,
                                               &len) == MPH_OK;
        }
        n += 1024;
    }
    r->cpu_s = thread_cpu_s() - cpu0;
    r->lookups = n;
    r->found = found;
    return NULL;
}

static void key_of(long i, char key[8])
{
    key[0] = 'g';
    for (int d = 7; d >= 1; d--, i /= 10)
        key[d] = (char)('0' + i % 10);
}

/* Produces n updates (value "<round>:<padding>") paced at rate (0: as fast
 * as possible), keys round-robin. Returns how many were delivered. */
static long produce_updates(rd_kafka_t *p, const char *topic, int keys,
                            long first, long n, double rate, int *stop)
{
    char key[8], val[VALUE_SIZE];
    memset(val, 'x', sizeof val);
    int64_t t0 = bench_now_ns();
    long i = 0;
    for (; i < n && !(stop && __atomic_load_n(stop, __ATOMIC_RELAXED)); i++) {
        long seq = first + i;
        key_of(seq % keys, key);
        int vl = snprintf(val, sizeof val, "%ld:", seq);
        val[vl] = 'x';
        if (rate > 0 && i % 100 == 0) {
            int64_t due = t0 + (int64_t)((double)i * 1e9 / rate),
                    now = bench_now_ns();
            if (due > now) {
                struct timespec ts = {0, due - now};
                if (ts.tv_nsec >= 1000000000) {
                    ts.tv_sec = ts.tv_nsec / 1000000000;
                    ts.tv_nsec %= 1000000000;
                }
                nanosleep(&ts, NULL);
            }
        }
        while (rd_kafka_producev(
                   p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, 8),
                   RD_KAFKA_V_VALUE(val, sizeof val),
                   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                   RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(p, 1);
        rd_kafka_poll(p, 0);
    }
    rd_kafka_flush(p, 30000);
    return i;
}

typedef struct updater {
    rd_kafka_t *p;
    const char *topic;
    int keys;
    long first;
    double rate, seconds;
    int *stop;
    long sent;
    pthread_t th;
} updater_t;

static void *updater_main(void *arg)
{
    updater_t *u = arg;
    u->sent = produce_updates(u->p, u->topic, u->keys, u->first,
                              (long)(u->rate * u->seconds), u->rate, u->stop);
    return NULL;
}

/* Runs READERS readers for seconds; returns lookups/s per thread. */
static double measure(mph_global_table_t *gt, int keys, double seconds,
                      uint64_t seed, uint64_t *found_out, uint64_t *lookups_out,
                      double *per_cpu_s)
{
    int stop = 0;
    reader_t r[READERS];
    for (int i = 0; i < READERS; i++) {
        r[i] = (reader_t){
            .gt = gt, .keys = keys, .seed = seed + (uint64_t)i, .stop = &stop};
        pthread_create(&r[i].th, NULL, reader_main, &r[i]);
    }
    int64_t t0 = bench_now_ns();
    bench_sleep_ms((int)(seconds * 1000));
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    uint64_t lookups = 0, found = 0;
    double cpu = 0;
    for (int i = 0; i < READERS; i++) {
        pthread_join(r[i].th, NULL);
        lookups += r[i].lookups;
        found += r[i].found;
        cpu += r[i].cpu_s;
    }
    *per_cpu_s = cpu > 0 ? (double)lookups / cpu : 0;
    double s = (double)(bench_now_ns() - t0) / 1e9;
    *found_out = found;
    *lookups_out = lookups;
    return (double)lookups / READERS / s;
}

static int run(const bench_opts_t *o)
{
    bench_result_t r;
    bench_result_init(&r, "global_read");
    char err[640] = "", common[400], id[64], app_id[128], topic[192], kerr[400];
    bench_params_common(o, common, sizeof common);
    int keys = o->keys > 100000 ? 100000 : o->keys < 1 ? 1 : o->keys;
    const double rate = 100000;
    snprintf(r.label, sizeof r.label, "%d keys, 2 readers", keys);
    snprintf(r.params, sizeof r.params,
             "{%s,\"table_keys\":%d,\"value_bytes\":%d,\"readers\":%d,\"update_"
             "rate\":%.0f,"
             "\"seconds\":%.1f}",
             common, keys, VALUE_SIZE, READERS, rate, o->seconds);
    bench_kafka_t *k = bench_kafka_new(o->broker, err, sizeof err);
    if (!k)
        return bench_report_lines(o, &r, 1, err);
    bench_run_id(id, sizeof id);
    snprintf(app_id, sizeof app_id, "bench-gt-%s", id);
    snprintf(topic, sizeof topic, "%s-ref-changelog", app_id);
    mph_app_t *app = NULL;
    rd_kafka_t *p = NULL;
    if (bench_topic_create(k, topic, o->partitions, err, sizeof err))
        goto out;
    rd_kafka_conf_t *kc = bench_kafka_conf(k);
    bench_kafka_engine_producer(kc, 5);
    if (!(p = rd_kafka_new(RD_KAFKA_PRODUCER, kc, kerr, sizeof kerr))) {
        rd_kafka_conf_destroy(kc);
        snprintf(err, sizeof err, "producer: %s", kerr);
        goto out;
    }
    bench_progress(o, "global_read: loading %d keys", keys);
    if (produce_updates(p, topic, keys, 0, keys, 0, NULL) != keys) {
        snprintf(err, sizeof err, "loading the table failed");
        goto out;
    }
    mph_conf_t *conf = bench_app_conf(k, o, app_id, err, sizeof err);
    char parts[16];
    snprintf(parts, sizeof parts, "%d", o->partitions);
    mph_global_table_opts_t *go = mph_global_table_opts_new();
    mph_global_table_opts_set(go, "partitions", parts, NULL, 0);
    if (!conf || !(app = mph_app_new(conf, err, sizeof err))) {
        mph_conf_destroy(conf);
        mph_global_table_opts_destroy(go);
        goto out;
    }
    mph_global_table_t *gt =
        mph_global_table_new(app, "ref", go, err, sizeof err);
    mph_global_table_opts_destroy(go);
    if (!gt || mph_app_start(app, err, sizeof err) != MPH_OK)
        goto out;
    int64_t t_boot = bench_now_ns();
    if (mph_global_table_wait_ready(gt, (int)(o->timeout * 1000)) != MPH_OK) {
        snprintf(err, sizeof err,
                 "the global table did not bootstrap within %.0f s",
                 o->timeout);
        goto out;
    }
    double boot_s = (double)(bench_now_ns() - t_boot) / 1e9;

    uint64_t found = 0, lookups = 0;
    bench_progress(o, "global_read: %d readers, no updates, %.1f s", READERS,
                   o->seconds);
    double idle_cpu = 0, busy_cpu = 0;
    double idle =
        measure(gt, keys, o->seconds, o->seed, &found, &lookups, &idle_cpu);

    bench_progress(o,
                   "global_read: %d readers while %.0f updates/s apply, %.1f s",
                   READERS, rate, o->seconds);
    int stop = 0;
    updater_t u = {p, topic, keys, keys, rate, o->seconds + 1.0, &stop, 0, 0};
    bench_sys_t s0, s1;
    pthread_create(&u.th, NULL, updater_main, &u);
    bench_sleep_ms(500); /* updates flowing */
    bench_sys_sample(&s0, bench_kafka_broker_pid(k));
    double busy = measure(gt, keys, o->seconds, o->seed + 100, &found, &lookups,
                          &busy_cpu);
    bench_sys_sample(&s1, bench_kafka_broker_pid(k));
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    pthread_join(u.th, NULL);

    /* The copy applied every update: the last one of each key is there. */
    long last = keys + u.sent - 1;
    char key[8], want[32], got[VALUE_SIZE * 2];
    bool converged = false;
    int64_t t_sent = bench_now_ns();
    for (int w = 0; w < 3000 && !converged; w++) {
        converged = true;
        for (long i = last; i > last - 50 && i >= 0; i--) {
            key_of(i % keys, key);
            int wl = snprintf(want, sizeof want, "%ld:", i);
            size_t len = 0;
            if (mph_global_table_get_into(gt, key, 8, got, sizeof got, &len) !=
                    MPH_OK ||
                len < (size_t)wl || memcmp(got, want, (size_t)wl) != 0) {
                converged = false;
                break;
            }
        }
        if (!converged)
            bench_sleep_ms(10);
    }
    double catchup_s = (double)(bench_now_ns() - t_sent) / 1e9;
    if (!converged)
        snprintf(err, sizeof err,
                 "the copy did not apply every update within 30 s");

    r.messages = lookups;
    r.seconds = o->seconds;
    r.msgs_per_s = busy;
    r.baseline_msgs_per_s = idle;
    r.ratio = busy / idle;
    snprintf(r.target, sizeof r.target,
             ">= 10M lookups/s per thread under updates");
    r.target_met = busy >= 10e6;
    bench_extra(
        &r,
        ",\"lookups_per_s_per_thread\":%.0f,\"idle_lookups_per_s_per_thread\":%"
        ".0f,"
        "\"updates_sent\":%ld,\"updates_per_s\":%.0f,\"found_fraction\":%.4f,"
        "\"bootstrap_s\":%.3f,\"catch_up_after_last_update_s\":%.3f,"
        "\"lookups_per_reader_cpu_s\":%.0f,\"idle_lookups_per_reader_cpu_s\":%."
        "0f",
        busy, idle, u.sent, (double)u.sent / (o->seconds + 1.0),
        lookups ? (double)found / (double)lookups : 0.0, boot_s, catchup_s,
        busy_cpu, idle_cpu);
    bench_sys_delta_t d = {0};
    bench_sys_add(&d, &s0, &s1);
    bench_sys_describe(&d, "", &r);
out:
    if (err[0])
        snprintf(r.error, sizeof r.error, "%s", err);
    mph_app_destroy(app);
    if (p)
        rd_kafka_destroy(p);
    bench_topic_delete(k, topic);
    bench_report(o, &r);
    bench_kafka_destroy(k);
    return r.error[0] ? 1 : 0;
}

const bench_scenario_t bench_scn_global_read = {
    "global_read",
    "global table lookups/s from 2 threads while 100k updates/s apply (vs no "
    "updates)",
    run};

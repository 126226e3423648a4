/*
 * latency: end-to-end latency at a fixed rate, through mephisto against a
 * plain one-hop produce → consume, measured at the same time on the same
 * records.
 *
 * A producer thread sends records at --rate (default: half the records/s a
 * short mephisto passthrough run reaches first) and writes each record's
 * intended send time into it (so a stalled sender does not hide latency).
 * --rate takes a list (1000,10000,100000) and --profile the mephisto
 * profiles (throughput,latency by default): one result line per profile and
 * rate, each on fresh topics, app and groups. Under profile=latency the
 * load producer lingers 0 ms as the app's producers do (unless --linger-ms
 * is given), so the one-hop baseline of that line has no linger either.
 * Two consumers read concurrently: one on the input topic (the one-hop
 * baseline) and one on mephisto's output topic (input → mephisto agent,
 * which reads a JSON field and forwards → output). Each computes now − ts
 * into a log-linear histogram.
 *
 * Samples count only inside the measured window: it opens once both
 * consumers have seen a record and one more second passed (group joins and
 * the first fetches are not latency), and closes after --seconds. Target
 * (reported, never asserted): mephisto's p99 ≤ 2 × one-hop p99 + 1 ms, since
 * mephisto's path is two hops.
 *
 * CPU per record: cpu_us_per_record is the whole process's CPU over the
 * window (load producer, both readers and mephisto, each with librdkafka's
 * threads) per record sent; worker_cpu_us_per_record counts only mephisto's
 * worker threads (mph-w<N>, read from /proc/self/task), which is where
 * profile and busy_poll_us make a difference.
 */
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "mephisto/json.h"

#define NO_SEQ INT64_MAX

typedef struct lat_shared {
    int64_t
        win_start;   /* first seq of the window, NO_SEQ until open; __atomic */
    int64_t win_end; /* first seq after it, NO_SEQ until closed; __atomic */
    int stop;        /* __atomic */
} lat_shared_t;

typedef struct lat_consumer {
    lat_shared_t *sh;
    rd_kafka_t *rk;
    bench_hist_t *hist;
    int64_t seen; /* records seen at all; __atomic */
    int64_t in_window;
    pthread_t th;
} lat_consumer_t;

typedef struct lat_producer {
    lat_shared_t *sh;
    const bench_opts_t *o;
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    double rate;
    int64_t sent; /* __atomic */
    int64_t failed;
    pthread_t th;
} lat_producer_t;

typedef struct lat_app {
    mph_json_parser_t **parsers; /* one per worker */
    int nparsers;
    mph_topic_t *out;
} lat_app_t;

static mph_err_t lat_agent(mph_event_t *ev, void *opaque)
{
    lat_app_t *a = opaque;
    size_t len;
    const void *v = mph_event_value(ev, &len);
    mph_json_parser_t *p = a->parsers[mph_event_worker(ev)];
    mph_err_t err = mph_json_parse(p, v, len, len);
    const char *s;
    size_t n;
    if (!err)
        err = mph_json_get_str(p, MPH_JSON_ROOT, "user", &s, &n);
    return err ? err : mph_event_forward(ev, a->out);
}

static void *consumer_main(void *arg)
{
    lat_consumer_t *c = arg;
    while (!__atomic_load_n(&c->sh->stop, __ATOMIC_RELAXED)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 50);
        if (!m)
            continue;
        int64_t now = bench_now_ns();
        int64_t ts;
        uint64_t seq;
        if (!m->err && bench_record_parse(m->payload, m->len, &ts, &seq)) {
            __atomic_store_n(&c->seen, c->seen + 1, __ATOMIC_RELAXED);
            if ((int64_t)seq >=
                    __atomic_load_n(&c->sh->win_start, __ATOMIC_ACQUIRE) &&
                (int64_t)seq <
                    __atomic_load_n(&c->sh->win_end, __ATOMIC_ACQUIRE)) {
                bench_hist_add(c->hist, now - ts);
                __atomic_store_n(&c->in_window, c->in_window + 1,
                                 __ATOMIC_RELAXED);
            }
        }
        rd_kafka_message_destroy(m);
    }
    return NULL;
}

static void producer_dr(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque)
{
    (void)rk;
    lat_producer_t *p = opaque;
    if (m->err)
        p->failed++;
}

static void *producer_main(void *arg)
{
    lat_producer_t *p = arg;
    const bench_opts_t *o = p->o;
    char *buf = malloc((size_t)o->size);
    char key[16];
    int64_t t0 = bench_now_ns();
    double interval = 1e9 / p->rate;
    int64_t seq = 0;
    while (buf && !__atomic_load_n(&p->sh->stop, __ATOMIC_RELAXED)) {
        int64_t now = bench_now_ns();
        int64_t end = __atomic_load_n(&p->sh->win_end, __ATOMIC_ACQUIRE);
        int64_t due = t0 + (int64_t)((double)seq * interval);
        while (due <= now && seq < end) {
            size_t klen = bench_record(buf, (size_t)o->size, key, o->seed,
                                       (uint64_t)seq, o->keys, due);
            if (rd_kafka_produce(p->rkt, RD_KAFKA_PARTITION_UA,
                                 RD_KAFKA_MSG_F_COPY, buf, (size_t)o->size, key,
                                 klen, NULL) == -1) {
                rd_kafka_poll(p->rk, 1);
                break; /* queue full: retry this record at the next turn */
            }
            seq++;
            __atomic_store_n(&p->sent, seq, __ATOMIC_RELEASE);
            due = t0 + (int64_t)((double)seq * interval);
        }
        rd_kafka_poll(p->rk, 0);
        if (seq >= end)
            break;
        int64_t wake = due < now + 1000000 ? due : now + 1000000;
        struct timespec ts = {wake / 1000000000, wake % 1000000000};
        clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &ts, NULL);
    }
    rd_kafka_flush(p->rk, 10000);
    free(buf);
    return NULL;
}

static rd_kafka_t *consumer_new(bench_kafka_t *k, const char *group,
                                const char *topic, char *errstr,
                                size_t errstr_size)
{
    char kerr[400];
    rd_kafka_conf_t *kc = bench_kafka_conf(k);
    bench_kafka_engine_consumer(kc, group);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, kerr, sizeof kerr);
    if (!rk) {
        rd_kafka_conf_destroy(kc);
        snprintf(errstr, errstr_size, "consumer: %s", kerr);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    return rk;
}

static void consumer_free(lat_consumer_t *c)
{
    if (c->rk) {
        rd_kafka_consumer_close(c->rk);
        rd_kafka_destroy(c->rk);
    }
    bench_hist_destroy(c->hist);
}

/* CPU seconds (user + system) of this process's mephisto worker threads
 * (kernel names mph-w<N>). */
static double workers_cpu_s(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return NAN;
    double ticks = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[300], line[1024];
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        FILE *f = e->d_name[0] != '.' ? fopen(path, "r") : NULL;
        if (!f)
            continue;
        bool got = fgets(line, sizeof line, f) != NULL;
        fclose(f);
        char *close = got ? strrchr(line, ')') : NULL;
        char *open = got ? strchr(line, '(') : NULL;
        unsigned long ut, st;
        if (close && open && strncmp(open + 1, "mph-w", 5) == 0 &&
            sscanf(close + 2,
                   "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
                   &st) == 2)
            ticks += (double)(ut + st);
    }
    closedir(d);
    return ticks / (double)sysconf(_SC_CLK_TCK);
}

/* Half of what mephisto passes through on its own pair of topics. */
static double calibrate(bench_kafka_t *k, const bench_opts_t *o, char *errstr,
                        size_t size)
{
    char id[64], in[128], out[128];
    bench_run_id(id, sizeof id);
    snprintf(in, sizeof in, "bench-lat-%s-cal-in", id);
    snprintf(out, sizeof out, "bench-lat-%s-cal-out", id);
    double rate = 0;
    long n = o->messages < 100000 ? o->messages : 100000;
    if (bench_topic_create(k, in, o->partitions, errstr, size) ||
        bench_topic_create(k, out, o->partitions, errstr, size))
        goto out;
    if (bench_load(k, o, in, n, errstr, size) != n)
        goto out;
    bench_run_t run;
    if (bench_passthrough_run(k, o, BENCH_ENGINE_MEPHISTO,
                              "latency calibration", in, out, o->partitions, n,
                              &run) == 0)
        rate = 0.5 * (double)run.messages / run.seconds;
    else
        snprintf(errstr, size, "calibration: %.400s", run.error);
out:
    bench_topic_delete(k, in);
    bench_topic_delete(k, out);
    return rate;
}

/* One result line: mephisto under profile at rate records/s. */
static int run_one(bench_kafka_t *k, const bench_opts_t *o,
                   const char *profile, double rate, double calibrated)
{
    char err[500], id[64], in[128], out[128], g1[128], g2[128], app_id[128];
    bench_result_t r;
    bench_result_init(&r, "latency");
    char common[400];
    bench_params_common(o, common, sizeof common);
    lat_shared_t sh = {NO_SEQ, NO_SEQ, 0};
    lat_consumer_t base = {0}, mph = {0};
    lat_producer_t prod = {0};
    lat_app_t la = {0};
    mph_app_t *app = NULL;
    bool threads = false;
    base.sh = mph.sh = prod.sh = &sh;
    err[0] = 0;
    bool lat = strcmp(profile, "latency") == 0;
    /* The load producer lingers as the app's producers do. */
    int load_linger = lat && !o->linger_set ? 0 : o->linger_ms;

    snprintf(r.label, sizeof r.label, "%.0f/s %s p=%d", rate, profile,
             o->partitions);
    snprintf(r.params, sizeof r.params,
             "{%s,\"rate\":%.1f,\"calibrated_max_msgs_per_s\":%.1f,\"seconds\":"
             "%.1f,\"profile\":\"%s\",\"load_linger_ms\":%d}",
             common, rate, isnan(calibrated) ? -1.0 : calibrated, o->seconds,
             profile, load_linger);

    bench_run_id(id, sizeof id);
    snprintf(in, sizeof in, "bench-lat-%s-in", id);
    snprintf(out, sizeof out, "bench-lat-%s-out", id);
    snprintf(g1, sizeof g1, "bench-lat-%s-onehop", id);
    snprintf(g2, sizeof g2, "bench-lat-%s-reader", id);
    snprintf(app_id, sizeof app_id, "bench-lat-%s-mph", id);
    if (bench_topic_create(k, in, o->partitions, err, sizeof err) ||
        bench_topic_create(k, out, o->partitions, err, sizeof err)) {
        snprintf(r.error, sizeof r.error, "%s", err);
        goto out_topics;
    }

    /* mephisto */
    mph_conf_t *conf = bench_app_conf(k, o, app_id, err, sizeof err);
    /* bench_app_conf sets producer_linger_ms (--linger-ms), which wins over
     * the profile: under latency it is the profile's 0 unless given. */
    if (conf &&
        (mph_conf_set(conf, "profile", profile, err, sizeof err) ||
         (lat && !o->linger_set &&
          mph_conf_set(conf, "producer_linger_ms", "0", err, sizeof err)))) {
        mph_conf_destroy(conf);
        conf = NULL;
    }
    if (!conf || !(app = mph_app_new(conf, err, sizeof err))) {
        mph_conf_destroy(conf);
        snprintf(r.error, sizeof r.error, "%s", err);
        goto out_topics;
    }
    mph_topic_t *tin = mph_topic_new(app, in, NULL, err, sizeof err);
    la.out = tin ? mph_topic_new(app, out, NULL, err, sizeof err) : NULL;
    la.nparsers = mph_app_workers(app);
    la.parsers = calloc((size_t)la.nparsers, sizeof *la.parsers);
    bool parsers_ok = la.parsers != NULL;
    for (int i = 0; la.parsers && i < la.nparsers; i++)
        if (!(la.parsers[i] = mph_json_parser_new(0, err, sizeof err)))
            parsers_ok = false;
    if (!la.out || !parsers_ok ||
        !mph_agent_new(app, "latency", tin, lat_agent, &la, err, sizeof err) ||
        mph_app_start(app, err, sizeof err) != MPH_OK) {
        snprintf(r.error, sizeof r.error, "%s", err);
        goto out_app;
    }

    /* consumers and the producer */
    base.hist = bench_hist_new();
    mph.hist = bench_hist_new();
    if (!(base.rk = consumer_new(k, g1, in, err, sizeof err)) ||
        !(mph.rk = consumer_new(k, g2, out, err, sizeof err))) {
        snprintf(r.error, sizeof r.error, "%s", err);
        goto out_app;
    }
    char kerr[400];
    rd_kafka_conf_t *kc = bench_kafka_conf(k);
    bench_kafka_engine_producer(kc, load_linger);
    rd_kafka_conf_set_dr_msg_cb(kc, producer_dr);
    rd_kafka_conf_set_opaque(kc, &prod);
    prod.o = o;
    prod.rate = rate;
    prod.rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, kerr, sizeof kerr);
    if (!prod.rk) {
        rd_kafka_conf_destroy(kc);
        snprintf(r.error, sizeof r.error, "producer: %s", kerr);
        goto out_app;
    }
    prod.rkt = rd_kafka_topic_new(prod.rk, in, NULL);
    pthread_create(&base.th, NULL, consumer_main, &base);
    pthread_create(&mph.th, NULL, consumer_main, &mph);
    pthread_create(&prod.th, NULL, producer_main, &prod);
    threads = true;

    /* warm-up: both paths deliver, then one more second */
    int64_t t = bench_now_ns(), deadline = t + (int64_t)(o->timeout * 1e9);
    while ((!__atomic_load_n(&base.seen, __ATOMIC_RELAXED) ||
            !__atomic_load_n(&mph.seen, __ATOMIC_RELAXED)) &&
           bench_now_ns() < deadline)
        bench_sleep_ms(20);
    if (!__atomic_load_n(&mph.seen, __ATOMIC_RELAXED) ||
        !__atomic_load_n(&base.seen, __ATOMIC_RELAXED)) {
        snprintf(r.error, sizeof r.error,
                 "no record came through within %.0f s", o->timeout);
        goto out_threads;
    }
    bench_sleep_ms(1000);
    bench_sys_t s0, s1;
    bench_sys_sample(&s0, bench_kafka_broker_pid(k));
    double wcpu0 = workers_cpu_s();
    int64_t start = __atomic_load_n(&prod.sent, __ATOMIC_ACQUIRE);
    __atomic_store_n(&sh.win_start, start, __ATOMIC_RELEASE);
    bench_progress(o, "latency: measuring %.1f s at %.0f records/s", o->seconds,
                   rate);
    int64_t t_start = bench_now_ns(), last = t_start;
    while (bench_now_ns() - t_start < (int64_t)(o->seconds * 1e9)) {
        bench_sleep_ms(50);
        int64_t now = bench_now_ns();
        if (now - last >= 1000000000) {
            last = now;
            bench_progress(
                o,
                "latency: %lld sent, one-hop p99 %.0f us, mephisto p99 %.0f us",
                (long long)(__atomic_load_n(&prod.sent, __ATOMIC_RELAXED) -
                            start),
                bench_hist_quantile_us(base.hist, 0.99),
                bench_hist_quantile_us(mph.hist, 0.99));
        }
    }
    int64_t end = __atomic_load_n(&prod.sent, __ATOMIC_ACQUIRE);
    __atomic_store_n(&sh.win_end, end, __ATOMIC_RELEASE);
    double window_s = (double)(bench_now_ns() - t_start) / 1e9;
    bench_sys_sample(&s1, bench_kafka_broker_pid(k));
    double wcpu = workers_cpu_s() - wcpu0;
    /* drain: every window record through both paths, or 10 s */
    int64_t want = end - start, drain_end = bench_now_ns() + 10000000000LL;
    while ((__atomic_load_n(&base.in_window, __ATOMIC_RELAXED) < want ||
            __atomic_load_n(&mph.in_window, __ATOMIC_RELAXED) < want) &&
           bench_now_ns() < drain_end)
        bench_sleep_ms(10);

    __atomic_store_n(&sh.stop, 1, __ATOMIC_RELEASE);
    pthread_join(prod.th, NULL);
    pthread_join(base.th, NULL);
    pthread_join(mph.th, NULL);
    threads = false;

    r.messages = (uint64_t)mph.in_window;
    r.seconds = window_s;
    r.msgs_per_s = (double)want / window_s;
    r.mb_per_s = r.msgs_per_s * o->size / 1e6;
    r.p50_us = bench_hist_quantile_us(mph.hist, 0.5);
    r.p99_us = bench_hist_quantile_us(mph.hist, 0.99);
    r.p999_us = bench_hist_quantile_us(mph.hist, 0.999);
    r.cpu_s = s1.self_cpu_s - s0.self_cpu_s;
    r.peak_rss_kb = bench_rss_peak_kb();
    double bp99 = bench_hist_quantile_us(base.hist, 0.99);
    r.baseline_msgs_per_s = (double)base.in_window / window_s;
    r.ratio = bp99 / r.p99_us;
    snprintf(r.target, sizeof r.target, "p99 <= 2 x one-hop p99 + 1 ms");
    r.target_met = r.p99_us <= 2 * bp99 + 1000;
    bench_extra(&r,
                ",\"baseline_p50_us\":%.1f,\"baseline_p99_us\":%.1f,\"baseline_"
                "p999_us\":%.1f,"
                "\"sent\":%lld,\"missing\":%lld,\"baseline_missing\":%lld,"
                "\"send_errors\":%lld,\"profile\":\"%s\","
                "\"cpu_us_per_record\":%.3f,\"worker_cpu_s\":%.3f,"
                "\"worker_cpu_us_per_record\":%.3f",
                bench_hist_quantile_us(base.hist, 0.5), bp99,
                bench_hist_quantile_us(base.hist, 0.999), (long long)want,
                (long long)(want - mph.in_window),
                (long long)(want - base.in_window), (long long)prod.failed,
                profile, want > 0 ? r.cpu_s * 1e6 / (double)want : -1.0, wcpu,
                want > 0 ? wcpu * 1e6 / (double)want : -1.0);
    bench_sys_delta_t d = {0};
    bench_sys_add(&d, &s0, &s1);
    bench_sys_describe(&d, "", &r);
    if (mph.in_window < want)
        snprintf(r.error, sizeof r.error,
                 "%lld of %lld records did not come through mephisto",
                 (long long)(want - mph.in_window), (long long)want);

    /* CDF plot */
    char path[1100];
    char dat1[128], dat2[128], png[128];
    snprintf(dat1, sizeof dat1, "latency-mephisto-%s-%.0f.dat", profile, rate);
    snprintf(dat2, sizeof dat2, "latency-onehop-%s-%.0f.dat", profile, rate);
    snprintf(png, sizeof png, "latency-cdf-%s-%.0f", profile, rate);
    FILE *f1 = bench_plot_data(o, dat1, path, sizeof path);
    if (f1) {
        bench_hist_write_cdf(mph.hist, f1);
        fclose(f1);
    }
    FILE *f2 = bench_plot_data(o, dat2, path, sizeof path);
    if (f2) {
        bench_hist_write_cdf(base.hist, f2);
        fclose(f2);
    }
    if (f1 && f2) {
        char script[1400];
        snprintf(script, sizeof script,
                 "set title 'end-to-end latency CDF at %.0f records/s, "
                 "profile=%s'\n"
                 "set xlabel 'latency (us)'\nset ylabel 'fraction of records'\n"
                 "set logscale x\nset key bottom right\nset grid\n"
                 "plot '%s/%s' with lines lw 2 title "
                 "'mephisto (2 hops)', "
                 "'%s/%s' with lines lw 2 title 'librdkafka "
                 "one hop'\n",
                 rate, profile, o->plot_dir, dat1, o->plot_dir, dat2);
        bench_plot(o, png, script);
    }

out_threads:
    if (threads) {
        __atomic_store_n(&sh.win_end, 0, __ATOMIC_RELEASE);
        __atomic_store_n(&sh.stop, 1, __ATOMIC_RELEASE);
        pthread_join(prod.th, NULL);
        pthread_join(base.th, NULL);
        pthread_join(mph.th, NULL);
    }
out_app:
    if (prod.rk) {
        rd_kafka_topic_destroy(prod.rkt);
        rd_kafka_destroy(prod.rk);
    }
    consumer_free(&base);
    consumer_free(&mph);
    if (app) {
        mph_app_stop(app);
        mph_app_destroy(app);
    }
    for (int i = 0; la.parsers && i < la.nparsers; i++)
        mph_json_parser_destroy(la.parsers[i]);
    free(la.parsers);
    bench_group_delete(k, g1);
    bench_group_delete(k, g2);
    bench_app_forget(k, app_id);
out_topics:
    bench_topic_delete(k, in);
    bench_topic_delete(k, out);
    bench_report(o, &r);
    return r.error[0] ? 1 : 0;
}

static int run(const bench_opts_t *o)
{
    char err[500];
    err[0] = 0;
    bench_kafka_t *k = bench_kafka_new(o->broker, err, sizeof err);
    double calibrated = NAN, one = 0;
    const double *rates = o->rates;
    int nrates = o->nrates;
    if (k && nrates == 0) {
        bench_progress(
            o, "latency: measuring mephisto's passthrough rate for --rate");
        calibrated = calibrate(k, o, err, sizeof err) * 2;
        one = calibrated / 2;
        rates = &one;
        nrates = one > 0 ? 1 : 0;
    }
    if (!k || nrates == 0) {
        bench_result_t r;
        bench_result_init(&r, "latency");
        snprintf(r.error, sizeof r.error, "%s",
                 err[0] ? err : "calibration failed");
        bench_report(o, &r);
        bench_kafka_destroy(k);
        return 1;
    }
    int rc = 0;
    for (int p = 0; p < o->nprofiles; p++)
        for (int i = 0; i < nrates; i++)
            rc |= run_one(k, o, o->profiles[p], rates[i], calibrated);
    bench_kafka_destroy(k);
    return rc;
}

const bench_scenario_t bench_scn_latency = {
    "latency",
    "end-to-end p50/p99/p99.9 at a fixed rate: mephisto vs a one-hop "
    "librdkafka path",
    run};

/*
 * The engine end to end against a broker (real or mock): forwarding with
 * order and no loss, graceful stop and restart, two members sharing
 * partitions, back-pressure, and start-up errors.
 */
// ctest-timeout: 600
// ctest-labels: engine
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ck_pr.h>

#include "mephisto.h"
#include "mph_test.h"
#include "runtime/app.h"
#include "runtime/worker.h"

/* ---- checking forwarded output ---- */

typedef struct seen {
    int nkeys, per_key;
    unsigned char *count; /* [key][seq] */
    int *last_seq;        /* per key, to check order */
    int dup, out_of_order, bad, total;
} seen_t;

static seen_t *seen_new(int nkeys, int per_key)
{
    seen_t *s = calloc(1, sizeof *s);
    s->nkeys = nkeys;
    s->per_key = per_key;
    s->count = calloc((size_t)nkeys * (size_t)per_key, 1);
    s->last_seq = malloc((size_t)nkeys * sizeof *s->last_seq);
    for (int k = 0; k < nkeys; k++)
        s->last_seq[k] = -1;
    return s;
}

static void seen_free(seen_t *s)
{
    free(s->count);
    free(s->last_seq);
    free(s);
}

static void seen_record(const rd_kafka_message_t *m, void *opaque)
{
    seen_t *s = opaque;
    char v[64] = {0};
    memcpy(v, m->payload, m->len < 63 ? m->len : 63);
    int k, seq;
    s->total++;
    if (sscanf(v, "k%d:%d", &k, &seq) != 2 || k < 0 || k >= s->nkeys || seq < 0 ||
        seq >= s->per_key) {
        s->bad++;
        return;
    }
    if (s->count[(size_t)k * s->per_key + seq]++)
        s->dup++;
    else if (seq < s->last_seq[k])
        s->out_of_order++;
    if (seq > s->last_seq[k])
        s->last_seq[k] = seq;
}

static int seen_missing(const seen_t *s, int per_key_limit)
{
    int missing = 0;
    for (int k = 0; k < s->nkeys; k++)
        for (int q = 0; q < per_key_limit; q++)
            missing += s->count[(size_t)k * s->per_key + q] == 0;
    return missing;
}

/* ---- apps ---- */

static mph_err_t forward_cb(mph_event_t *ev, void *opaque)
{
    return mph_event_forward(ev, opaque);
}

static int slow_us;
static mph_err_t slow_forward_cb(mph_event_t *ev, void *opaque)
{
    if (slow_us)
        usleep((useconds_t)slow_us);
    return mph_event_forward(ev, opaque);
}

/* slow_forward_cb that also counts its calls. */
static int64_t counted_calls;
static mph_err_t counted_forward_cb(mph_event_t *ev, void *opaque)
{
    __atomic_add_fetch(&counted_calls, 1, __ATOMIC_RELAXED);
    return slow_forward_cb(ev, opaque);
}

static mph_app_t *forward_app(const char *broker, const char *app_id, const char *in,
                              const char *out, int workers, mph_agent_fn *fn,
                              const char *const *extra)
{
    char err[512], n[16];
    mph_conf_t *conf = mph_conf_new();
    snprintf(n, sizeof n, "%d", workers);
    cr_assert_eq(mph_conf_set(conf, "broker", broker, err, sizeof err), MPH_OK, "%s", err);
    cr_assert_eq(mph_conf_set(conf, "app_id", app_id, err, sizeof err), MPH_OK, "%s", err);
    cr_assert_eq(mph_conf_set(conf, "workers", n, err, sizeof err), MPH_OK, "%s", err);
    cr_assert_eq(mph_conf_set(conf, "commit_interval_ms", "200", err, sizeof err), MPH_OK);
    cr_assert_eq(mph_conf_set(conf, "web_enabled", "false", err, sizeof err), MPH_OK);
    cr_assert_eq(mph_conf_set(conf, "log_level", "warn", err, sizeof err), MPH_OK);
    for (const char *const *e = extra; e && e[0]; e += 2)
        cr_assert_eq(mph_conf_set(conf, e[0], e[1], err, sizeof err), MPH_OK, "%s", err);
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(app, "%s", err);
    mph_topic_t *tin = mph_topic_new(app, in, NULL, err, sizeof err);
    mph_topic_t *tout = mph_topic_new(app, out, NULL, err, sizeof err);
    cr_assert_not_null(tin, "%s", err);
    cr_assert_not_null(tout, "%s", err);
    cr_assert_not_null(mph_agent_new(app, "forward", tin, fn, tout, err, sizeof err), "%s", err);
    return app;
}

static int64_t wait_committed(mph_test_cluster_t *c, const char *group, const char *topic,
                              int parts, int64_t want, int timeout_s)
{
    int64_t sum = -1;
    for (int i = 0; i < timeout_s * 5; i++) {
        sum = mph_test_committed_sum(c, group, topic, parts);
        if (sum >= want)
            break;
        usleep(200000);
    }
    return sum;
}

static mph_test_cluster_t *cluster;
static void setup(void)
{
    cluster = mph_test_cluster_new();
}
static void teardown(void)
{
    mph_test_cluster_destroy(cluster);
}

TestSuite(engine, .init = setup, .fini = teardown, .timeout = 300);

/* Forwards n records of k keys through 2 workers (extra: more settings),
 * then checks the output: every record once, per-key order kept, all input
 * committed. */
static void forward_all(const char *prefix, int n, int k, const char *const *extra)
{
    char in[128], out[128], group[128], err[512], name[64];
    snprintf(name, sizeof name, "%s-in", prefix);
    mph_test_unique(name, in, sizeof in);
    snprintf(name, sizeof name, "%s-out", prefix);
    mph_test_unique(name, out, sizeof out);
    snprintf(name, sizeof name, "%s-app", prefix);
    mph_test_unique(name, group, sizeof group);
    mph_test_create_topic(cluster, in, 4);
    mph_test_create_topic(cluster, out, 4);
    cr_assert_eq(mph_test_produce_seq(cluster, in, n, k, 0), n);

    mph_app_t *app = forward_app(cluster->broker, group, in, out, 2, forward_cb, extra);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    int64_t committed = wait_committed(cluster, group, in, 4, n, 120);
    cr_expect_eq(committed, n, "all input committed");
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);

    seen_t *s = seen_new(k, n / k);
    int got = mph_test_consume_all(cluster, out, -1, 4000, 120000, seen_record, s);
    cr_expect_eq(got, n);
    cr_expect_eq(s->bad, 0);
    cr_expect_eq(s->dup, 0);
    cr_expect_eq(s->out_of_order, 0, "per-key order kept");
    cr_expect_eq(seen_missing(s, n / k), 0, "output = input");
    seen_free(s);
}

Test(engine, forward_200k_keeps_every_record_and_key_order)
{
    forward_all("eng", 200000, 1000, NULL);
}

/* The same with the workers waiting in ppoll instead of io_uring. */
Test(engine, forward_under_io_wait_poll)
{
    const char *extra[] = {"io_wait", "poll", NULL};
    forward_all("eng-poll", 50000, 500, extra);
}

Test(engine, graceful_stop_and_restart_loses_and_repeats_nothing)
{
    char in[128], out[128], group[128], err[512];
    const int N = 60000, K = 100;
    mph_test_unique("eng-in", in, sizeof in);
    mph_test_unique("eng-out", out, sizeof out);
    mph_test_unique("eng-app", group, sizeof group);
    mph_test_create_topic(cluster, in, 4);
    mph_test_create_topic(cluster, out, 4);
    cr_assert_eq(mph_test_produce_seq(cluster, in, N, K, 0), N);

    slow_us = 20; /* slow enough to stop mid-stream */
    mph_app_t *app = forward_app(cluster->broker, group, in, out, 2, slow_forward_cb, NULL);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    int64_t mid = wait_committed(cluster, group, in, 4, N / 10, 60);
    cr_assert_geq(mid, N / 10);
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);
    int64_t after_stop = mph_test_committed_sum(cluster, group, in, 4);
    cr_expect_lt(after_stop, N, "stopped mid-stream (committed %lld)", (long long)after_stop);

    slow_us = 0;
    app = forward_app(cluster->broker, group, in, out, 2, slow_forward_cb, NULL);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    cr_expect_eq(wait_committed(cluster, group, in, 4, N, 120), N);
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);

    seen_t *s = seen_new(K, N / K);
    mph_test_consume_all(cluster, out, -1, 4000, 120000, seen_record, s);
    cr_expect_eq(seen_missing(s, N / K), 0, "nothing lost across the restart");
    cr_expect_eq(s->dup, 0, "a graceful stop commits everything it processed");
    cr_expect_eq(s->out_of_order, 0);
    seen_free(s);
}

Test(engine, two_members_share_partitions_and_take_over)
{
    char in[128], out[128], group[128], err[512];
    const int N = 80000, K = 100;
    mph_test_unique("eng-in", in, sizeof in);
    mph_test_unique("eng-out", out, sizeof out);
    mph_test_unique("eng-app", group, sizeof group);
    mph_test_create_topic(cluster, in, 4);
    mph_test_create_topic(cluster, out, 4);

    slow_us = 50;
    counted_calls = 0;
    mph_app_t *a = forward_app(cluster->broker, group, in, out, 1, counted_forward_cb, NULL);
    mph_app_t *b = forward_app(cluster->broker, group, in, out, 1, counted_forward_cb, NULL);
    cr_assert_eq(mph_app_start(a, err, sizeof err), MPH_OK, "%s", err);
    cr_assert_eq(mph_app_start(b, err, sizeof err), MPH_OK, "%s", err);
    /* Let the group settle with both members before data flows (the mock
     * cluster's coordinator can take several seconds per rebalance). */
    for (int i = 0; i < 300; i++) {
        uint64_t pa = ck_pr_load_64(&a->workers[0]->mon->partitions);
        uint64_t pb = ck_pr_load_64(&b->workers[0]->mon->partitions);
        if (pa > 0 && pb > 0 && pa + pb == 4)
            break;
        usleep(100000);
    }
    uint64_t pa = ck_pr_load_64(&a->workers[0]->mon->partitions);
    uint64_t pb = ck_pr_load_64(&b->workers[0]->mon->partitions);
    cr_expect(pa > 0 && pb > 0, "both members own partitions (a %llu, b %llu)",
              (unsigned long long)pa, (unsigned long long)pb);
    cr_assert_eq(mph_test_produce_seq(cluster, in, N, K, 0), N);
    wait_committed(cluster, group, in, 4, N / 5, 60);
    cr_assert_eq(mph_app_stop(a), MPH_OK);
    slow_us = 0;
    cr_expect_eq(wait_committed(cluster, group, in, 4, N, 120), N, "b finished a's partitions");
    cr_assert_eq(mph_app_stop(b), MPH_OK);
    mph_app_destroy(a);
    mph_app_destroy(b);

    seen_t *s = seen_new(K, N / K);
    mph_test_consume_all(cluster, out, -1, 4000, 120000, seen_record, s);
    int missing = seen_missing(s, N / K);
    cr_expect_eq(missing, 0, "nothing lost in the take-over (missing %d, dup %d, total %d)",
                 missing, s->dup, s->total);
    /* At-least-once: a commit refused during the rebalance (the mock cluster
     * refuses them while the group is preparing) means the new owner
     * repeats what came after the last accepted commit: bounded, reported. */
    cr_log_info("take-over repeated %d records", s->dup);
    /* A real broker accepts the leaving member's final commit (0 repeats
     * measured). The mock cluster refuses commits while the group
     * rebalances (seconds, and the remaining member's own partitions are
     * revoked and assigned again too), so processing restarts from the last
     * commit it accepted, and what both members processed in those seconds
     * is repeated: as many repeats as the agents were called more than
     * once for a record, and none from anything else. */
    int64_t calls = __atomic_load_n(&counted_calls, __ATOMIC_RELAXED);
    cr_log_info("agent calls %lld for %d records", (long long)calls, N);
    cr_expect_leq(s->dup, calls - N, "every repeat comes from a repeated call (dup %d)", s->dup);
    if (mph_test_real_broker())
        cr_expect_lt(s->dup, N / 10, "repeats bounded by the in-flight window (dup %d)", s->dup);
    seen_free(s);
}

Test(engine, back_pressure_bounds_memory)
{
    if (!mph_test_real_broker()) {
        /* 1,000,000 records exceed the mock cluster's per-partition log. */
        cr_skip_test("needs a real broker (MEPHISTO_TEST_BROKERS)");
    }
    char in[128], out[128], group[128], err[512];
    const int N = 1000000;
    mph_test_unique("eng-bp-in", in, sizeof in);
    mph_test_unique("eng-bp-out", out, sizeof out);
    mph_test_unique("eng-bp", group, sizeof group);
    mph_test_create_topic(cluster, in, 4);
    mph_test_create_topic(cluster, out, 4);
    char val[200];
    memset(val, 'x', sizeof val);
    for (int i = 0; i < N; i++)
        mph_test_produce(cluster, in, i % 4, NULL, 0, val, sizeof val);
    mph_test_flush(cluster);

    long rss0 = mph_test_rss_kb();
    slow_us = 100;
    const char *extra[] = {"stream_buffer_max", "500", NULL};
    mph_app_t *app = forward_app(cluster->broker, group, in, out, 1, slow_forward_cb, extra);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    long peak = 0;
    size_t qmax = 0;
    for (int i = 0; i < 40; i++) {
        usleep(100000);
        long r = mph_test_rss_kb();
        if (r > peak)
            peak = r;
        size_t q = rd_kafka_queue_length(app->workers[0]->q);
        if (q > qmax)
            qmax = q;
    }
    uint64_t pauses = ck_pr_load_64(&app->workers[0]->mon->pauses);
    uint64_t done = ck_pr_load_64(&app->workers[0]->mon->events_in);
    slow_us = 0;
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);
    cr_log_info("back-pressure: rss %ld KiB → peak %ld KiB, queue at most %zu, %llu pauses, "
                "%llu of %d processed",
                rss0, peak, qmax, (unsigned long long)pauses, (unsigned long long)done, N);
    /* librdkafka stops fetching at stream_buffer_max queued records; one
     * fetch response per partition (up to 1 MiB, ~4,700 of these records)
     * may land on top. Unbounded, it would prefetch 64 MiB (~300,000). */
    cr_expect_lt(qmax, (size_t)(500 + 4 * 6000), "the worker's queue stays bounded (%zu)", qmax);
    cr_expect_lt(done, (uint64_t)N, "the slow agent was still behind");
    cr_expect_lt(peak - rss0, 150 * 1024, "RSS stays bounded while 1M records wait (%ld KiB)",
                 peak - rss0);
}

Test(engine, start_errors_are_clear_and_bounded)
{
    char err[512];
    mph_conf_t *conf = mph_conf_new();
    cr_assert_null(mph_app_new(conf, err, sizeof err));
    cr_expect(strstr(err, "app_id") != NULL, "%s", err);

    mph_conf_set(conf, "app_id", "mph-err-test", err, sizeof err);
    mph_conf_set(conf, "broker", "kafka://127.0.0.1:1", err, sizeof err);
    mph_conf_set(conf, "shutdown_timeout_ms", "2000", err, sizeof err);
    mph_conf_set(conf, "log_level", "error", err, sizeof err);
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(app, "%s", err);
    mph_topic_t *t = mph_topic_new(app, "whatever", NULL, err, sizeof err);
    cr_assert_not_null(mph_agent_new(app, "a", t, forward_cb, t, err, sizeof err));
    int64_t t0 = mph_clock_mono_ns();
    mph_err_t rc = mph_app_start(app, err, sizeof err);
    int64_t ms = (mph_clock_mono_ns() - t0) / 1000000;
    cr_expect(rc == MPH_ERR_TRANSPORT || rc == MPH_ERR_TIMEOUT, "rc %d: %s", rc, err);
    cr_expect(strstr(err, "127.0.0.1:1") != NULL, "error names the broker: %s", err);
    cr_expect_lt(ms, 10000, "gave up within the timeout (%lld ms)", (long long)ms);
    cr_expect_not(mph_app_running(app));
    mph_app_destroy(app);

    if (mph_test_real_broker()) {
        /* The mock cluster creates any topic it is asked about. */
        conf = mph_conf_new();
        mph_conf_set(conf, "app_id", "mph-err-test2", err, sizeof err);
        mph_conf_set(conf, "broker", cluster->broker, err, sizeof err);
        app = mph_app_new(conf, err, sizeof err);
        t = mph_topic_new(app, "mph-no-such-topic-abc", NULL, err, sizeof err);
        mph_agent_new(app, "a", t, forward_cb, t, err, sizeof err);
        cr_expect_eq(mph_app_start(app, err, sizeof err), MPH_ERR_NOENT);
        cr_expect(strstr(err, "mph-no-such-topic-abc") != NULL, "%s", err);
        mph_app_destroy(app);
    }

    /* Declarations are checked. */
    conf = mph_conf_new();
    mph_conf_set(conf, "app_id", "decl", err, sizeof err);
    app = mph_app_new(conf, err, sizeof err);
    mph_topic_opts_t *o = mph_topic_opts_new();
    cr_expect_eq(mph_topic_opts_set(o, "value_codec", "yaml", err, sizeof err), MPH_ERR_INVALID);
    cr_expect(strstr(err, "value_codec") != NULL, "%s", err);
    cr_expect_eq(mph_topic_opts_set(o, "colour", "red", err, sizeof err), MPH_ERR_NOENT);
    mph_topic_opts_destroy(o);
    t = mph_topic_new(app, "t", NULL, err, sizeof err);
    cr_expect_null(mph_agent_new(app, "a", t, NULL, NULL, err, sizeof err));
    cr_expect_not_null(mph_agent_new(app, "a", t, forward_cb, NULL, err, sizeof err));
    cr_expect_null(mph_agent_new(app, "a", t, forward_cb, NULL, err, sizeof err));
    cr_expect(strstr(err, "twice") != NULL, "%s", err);
    mph_app_destroy(app);
}

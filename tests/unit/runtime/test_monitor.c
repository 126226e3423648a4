/*
 * Unit tests of src/runtime/monitor.c (the stats snapshot merged from
 * per-worker monitors, rates, the /stats JSON, user sensor dispatch) and of
 * the pure parts of src/runtime/web.c (Prometheus rendering, the consumer
 * protocol assignment parser, member addresses). Monitors are built by hand
 * on an app that is never started and recorded into by the test.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mephisto.h"
#include "mephisto/json.h"
#include "mephisto/sensor.h"
#include "runtime/app.h"
#include "runtime/monitor.h"
#include "runtime/web.h"
#include "runtime/worker.h"

#define S 1000000000LL

static mph_err_t noop_agent(mph_event_t *ev, void *opaque)
{
    (void)ev;
    (void)opaque;
    return MPH_OK;
}

/* An app "mon-test" (never started) with topics in (4 partitions, two
 * agents) and out (2 partitions, a sink), and a table "counts". */
static mph_app_t *test_app(void)
{
    char err[256];
    mph_conf_t *conf = mph_conf_new();
    cr_assert_not_null(conf);
    cr_assert_eq(mph_conf_set(conf, "app_id", "mon-test", err, sizeof err),
                 MPH_OK, "%s", err);
    cr_assert_eq(mph_conf_set(conf, "workers", "2", err, sizeof err), MPH_OK);
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(app, "%s", err);
    mph_topic_t *in = mph_topic_new(app, "in", NULL, err, sizeof err);
    mph_topic_t *out = mph_topic_new(app, "out", NULL, err, sizeof err);
    cr_assert_not_null(in, "%s", err);
    cr_assert_not_null(out, "%s", err);
    cr_assert_not_null(
        mph_agent_new(app, "fwd", in, noop_agent, NULL, err, sizeof err));
    cr_assert_not_null(
        mph_agent_new(app, "count", in, noop_agent, NULL, err, sizeof err));
    cr_assert_not_null(mph_table_new(app, "counts", NULL, err, sizeof err),
                       "%s", err);
    in->partitions = 4;
    out->partitions = 2;
    return app;
}

/* Worker w owns partitions p with p % 2 == w of "in" and processes n events
 * on each, offsets 0..n-1, latency 100 ns (worker 0) or 1000 ns (worker 1);
 * each event is sent on to "out" and acknowledged after 50 us. */
static void play(mph__monitor_t *m, int w, int n)
{
    for (int32_t p = w; p < 4; p += 2) {
        mph__monitor_partition(m, 0, p, true);
        mph__mon_add(&m->partitions, 1);
        for (int i = 0; i < n; i++) {
            mph__monitor_agent(m, 0, false);
            mph__monitor_agent(m, 1, i % 10 == 9); /* every 10th fails */
            mph__monitor_send(m, 1);
            mph__monitor_ack(m, 50000);
            mph__monitor_event(m, 0, p, i, w == 0 ? 100 : 1000);
        }
        mph__monitor_commit_point(m, 0, p, n - 5);
    }
}

static const mph__stats_part_t *part(const mph__stats_t *st, int32_t p)
{
    cr_assert(st->topics[0].nparts > (size_t)p);
    return &st->topics[0].parts[p];
}

Test(monitor, merge_totals_workers_topics_partitions_agents, .timeout = 10)
{
    mph_app_t *app = test_app();
    mph__monitor_t *mons[2] = {mph__monitor_new(app, 0, 1),
                               mph__monitor_new(app, 1, 1)};
    cr_assert_not_null(mons[0]);
    cr_assert_not_null(mons[1]);
    cr_expect_null(mons[0]->sensors, "no sensor registered");
    cr_expect_eq(mons[0]->sensor_hooks, 0u, "no hook to dispatch");
    play(mons[0], 0, 100);
    play(mons[1], 1, 30);
    mph__monitor_table(mons[1], 0, MPH__TABLE_SET);
    mph__monitor_table(mons[1], 0, MPH__TABLE_GET);
    mph__monitor_table(mons[0], 0, MPH__TABLE_GET);
    mph__monitor_send_retry(mons[0], "out", 1, MPH_ERR_TRANSPORT);
    mph__monitor_send_error(mons[1], "out", 0, MPH_ERR_KAFKA);
    mph__monitor_dead_lettered(mons[0]);
    mph__monitor_skipped(mons[1]);

    mph__stats_t st;
    int64_t now = mons[0]->started_ns + 2 * S;
    cr_assert_eq(mph__stats_collect(&st, app, mons, 2, NULL, NULL, now),
                 MPH_OK);
    cr_expect_str_eq(st.app_id, "mon-test");
    cr_expect_not(st.running);
    cr_expect_not(st.ready);
    cr_expect_not(st.have_coord);
    cr_assert_eq(st.nworkers, 2);
    cr_assert_eq(st.ntopics, 2);
    cr_assert_eq(st.nagents, 2);
    cr_assert_eq(st.ntables, 1);

    /* totals */
    cr_expect_eq(st.totals.worker, -1);
    cr_expect_eq(st.totals.events_in, 260);
    cr_expect_eq(st.totals.events_failed, 26);
    cr_expect_eq(st.totals.sends, 260);
    cr_expect_eq(st.totals.sends_acked, 260);
    cr_expect_eq(st.totals.send_retries, 1);
    cr_expect_eq(st.totals.send_errors, 1);
    cr_expect_eq(st.totals.dead_lettered, 1);
    cr_expect_eq(st.totals.skipped, 1);
    cr_expect_eq(st.totals.partitions, 4);
    cr_expect_eq(st.totals.processing.count, 260);
    cr_expect_eq(st.totals.processing.p50_ns, 100, "200 of 260 at 100 ns");
    cr_expect_geq(st.totals.processing.p99_ns, 1000);
    cr_expect_leq(st.totals.processing.p99_ns, 1000 + 1000 / 64);
    cr_expect_eq(st.totals.processing.max_ns, 1000);
    cr_expect_eq(st.totals.processing.sum_ns, 200 * 100 + 60 * 1000);
    cr_expect_eq(st.totals.send_latency.count, 260);
    cr_expect_geq(st.totals.send_latency.p50_ns, 50000);
    cr_expect_leq(st.totals.send_latency.p50_ns, 50000 + 50000 / 64);

    /* per worker */
    cr_expect_eq(st.workers[0].worker, 0);
    cr_expect_eq(st.workers[0].events_in, 200);
    cr_expect_eq(st.workers[1].events_in, 60);
    cr_expect_eq(st.workers[0].partitions, 2);
    cr_expect_eq(st.workers[1].processing.p50_ns, 1000);
    cr_expect_eq(st.workers[0].topic_in[0], 200);
    cr_expect_eq(st.workers[1].topic_out[1], 60);
    cr_expect_eq(st.workers[0].agent_errors[1], 20);
    cr_expect_eq(st.workers[1].agent_events[0], 60);
    cr_expect_eq(st.workers[1].table_ops[0][MPH__TABLE_SET], 1);
    cr_expect_eq(st.workers[0].send_retries, 1);

    /* topics and partitions */
    cr_expect_str_eq(st.topics[0].name, "in");
    cr_expect(st.topics[0].source);
    cr_expect_eq(st.topics[0].partitions, 4);
    cr_expect_eq(st.topics[0].events_in, 260);
    cr_expect_eq(st.topics[0].nparts, 4);
    cr_expect_str_eq(st.topics[1].name, "out");
    cr_expect_not(st.topics[1].source);
    cr_expect_eq(st.topics[1].nparts, 0, "no partition list for sinks");
    cr_expect_eq(st.topics[1].events_out, 260);
    for (int32_t p = 0; p < 4; p++) {
        const mph__stats_part_t *sp = part(&st, p);
        int n = p % 2 == 0 ? 100 : 30;
        cr_expect_eq(sp->partition, p);
        cr_expect_eq(sp->worker, p % 2);
        cr_expect_eq(sp->events, (uint64_t)n);
        cr_expect_eq(sp->read_offset, n - 1);
        cr_expect_eq(sp->commit_point, n - 5);
        cr_expect_eq(sp->end_offset, -1, "no consumer: unknown");
        cr_expect_eq(sp->lag, -1);
    }

    /* agents and tables */
    cr_expect_str_eq(st.agents[0].name, "fwd");
    cr_expect_eq(st.agents[0].events, 260);
    cr_expect_eq(st.agents[0].errors, 0);
    cr_expect_str_eq(st.agents[1].name, "count");
    cr_expect_eq(st.agents[1].errors, 26);
    cr_expect_str_eq(st.tables[0].name, "counts");
    cr_expect_eq(st.recovery.recoveries, 0);
    cr_expect_eq(st.tables[0].ops[MPH__TABLE_GET], 2);
    cr_expect_eq(st.tables[0].ops[MPH__TABLE_SET], 1);
    cr_expect_eq(st.tables[0].ops[MPH__TABLE_DELETE], 0);

    /* a partition handed back keeps its counts, loses its owner */
    mph__monitor_partition(mons[1], 0, 3, false);
    mph__stats_t st2;
    cr_assert_eq(mph__stats_collect(&st2, app, mons, 2, NULL, NULL, now),
                 MPH_OK);
    cr_expect_eq(part(&st2, 3)->worker, -1);
    cr_expect_eq(part(&st2, 3)->events, 30);
    cr_expect_eq(part(&st2, 3)->read_offset, 29);
    mph__stats_fini(&st2);

    mph__stats_fini(&st);
    cr_expect_null(st.workers);
    mph__stats_fini(&st); /* twice is fine */
    mph__monitor_destroy(mons[0]);
    mph__monitor_destroy(mons[1]);
    mph_app_destroy(app);
}

Test(monitor, latency_buckets_use_fixed_bounds, .timeout = 10)
{
    mph_app_t *app = test_app();
    mph__monitor_t *m = mph__monitor_new(app, 0, 0);
    cr_assert_not_null(m);
    mph__monitor_partition(m, 0, 0, true);
    /* 999 ns tops its histogram bucket [992, 999], so it counts under 1 us;
     * 1000 and 1001 share the bucket [1000, 1007], whose top is above 1 us,
     * so both count under 2.5 us (never under a bound they may exceed). */
    uint64_t values[] = {10, 999, 1000, 1001, 3000000, 60 * (uint64_t)S};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        mph__monitor_event(m, 0, 0, (int64_t)i, values[i]);
    mph__stats_t st;
    cr_assert_eq(
        mph__stats_collect(&st, app, &m, 1, NULL, NULL, m->started_ns + S),
        MPH_OK);
    const mph__stats_latency_t *l = &st.totals.processing;
    uint64_t sum = 0;
    for (size_t i = 0; i <= MPH__STATS_LE_COUNT; i++)
        sum += l->le_counts[i];
    cr_expect_eq(sum, 6);
    cr_expect_eq(l->le_counts[0], 2, "10, 999 <= 1 us");
    cr_expect_eq(l->le_counts[1], 2, "1000, 1001 <= 2.5 us");
    cr_expect_eq(l->le_counts[11], 1, "3 ms <= 5 ms");
    cr_expect_eq(mph__stats_le_ns[11], 5000000);
    cr_expect_eq(l->le_counts[MPH__STATS_LE_COUNT], 1, "60 s above 10 s");
    for (size_t i = 1; i < MPH__STATS_LE_COUNT; i++)
        cr_expect_gt(mph__stats_le_ns[i], mph__stats_le_ns[i - 1]);
    mph__stats_fini(&st);
    mph__monitor_destroy(m);
    mph_app_destroy(app);
}

Test(monitor, rates_from_two_samples_at_least_a_second_apart, .timeout = 10)
{
    mph_app_t *app = test_app();
    mph__monitor_t *m = mph__monitor_new(app, 0, 0);
    cr_assert_not_null(m);
    m->started_ns = 1000 * S; /* a fixed clock for the test */
    mph__monitor_partition(m, 0, 0, true);
    int64_t off = 0;
    for (int i = 0; i < 100; i++)
        mph__monitor_event(m, 0, 0, off++, 10);

    mph__stats_t st;
    /* first read: the average since start (100 events in 10 s) */
    cr_assert_eq(mph__stats_collect(&st, app, &m, 1, NULL, NULL, 1010 * S),
                 MPH_OK);
    cr_expect_float_eq(st.totals.events_per_s, 10.0, 1e-9);
    cr_expect_float_eq(st.totals.events_per_s_avg, 10.0, 1e-9);
    cr_expect_float_eq(st.uptime_s, 10.0, 1e-9);
    mph__stats_fini(&st);

    /* 2 s later, 50 more: 25/s over the last 2 s */
    for (int i = 0; i < 50; i++)
        mph__monitor_event(m, 0, 0, off++, 10);
    cr_assert_eq(mph__stats_collect(&st, app, &m, 1, NULL, NULL, 1012 * S),
                 MPH_OK);
    cr_expect_float_eq(st.workers[0].events_per_s, 25.0, 1e-9);
    cr_expect_float_eq(st.totals.events_per_s, 25.0, 1e-9);
    cr_expect_float_eq(st.totals.events_per_s_avg, 150.0 / 12, 1e-9);
    mph__stats_fini(&st);

    /* half a second later, 10 more: no new sample yet, so the rate is over
     * the 2.5 s since the older sample: 60 / 2.5 */
    for (int i = 0; i < 10; i++)
        mph__monitor_event(m, 0, 0, off++, 10);
    cr_assert_eq(
        mph__stats_collect(&st, app, &m, 1, NULL, NULL, 1012 * S + S / 2),
        MPH_OK);
    cr_expect_float_eq(st.totals.events_per_s, 24.0, 1e-9);
    mph__stats_fini(&st);

    /* a long pause: the rate covers it */
    cr_assert_eq(mph__stats_collect(&st, app, &m, 1, NULL, NULL, 1112 * S),
                 MPH_OK);
    cr_expect_float_eq(st.totals.events_per_s, 10.0 / 100, 1e-9);
    mph__stats_fini(&st);

    mph__monitor_destroy(m);
    mph_app_destroy(app);
}

/* ---- JSON ---- */

static mph_json_parser_t *parse(const char *json, size_t len)
{
    char err[128];
    mph_json_parser_t *p = mph_json_parser_new(0, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    cr_assert_eq(mph_json_parse(p, json, len, len), MPH_OK);
    cr_assert_eq(mph_json_validate(p), MPH_OK, "%s", mph_json_last_error(p));
    return p;
}

static uint64_t json_u64(mph_json_parser_t *p, const char *path)
{
    uint64_t v = 0;
    cr_assert_eq(mph_json_get_u64(p, MPH_JSON_ROOT, path, &v), MPH_OK, "%s",
                 path);
    return v;
}

static void json_str_eq(mph_json_parser_t *p, const char *path,
                        const char *want)
{
    const char *s = NULL;
    size_t n = 0;
    cr_assert_eq(mph_json_get_str(p, MPH_JSON_ROOT, path, &s, &n), MPH_OK, "%s",
                 path);
    cr_expect_eq(n, strlen(want), "%s", path);
    cr_expect_eq(memcmp(s, want, n), 0, "%s", path);
}

static bool json_null(mph_json_parser_t *p, const char *path)
{
    bool is_null = false;
    cr_assert_eq(mph_json_get_is_null(p, MPH_JSON_ROOT, path, &is_null), MPH_OK,
                 "%s", path);
    return is_null;
}

Test(monitor, stats_json_document, .timeout = 10)
{
    mph_app_t *app = test_app();
    mph__monitor_t *mons[2] = {mph__monitor_new(app, 0, 1),
                               mph__monitor_new(app, 1, 1)};
    mons[1]->started_ns = mons[0]->started_ns;
    play(mons[0], 0, 100);
    play(mons[1], 1, 30);
    /* what table.c records while recovering */
    app->recoveries = 2;
    app->recovery_done = 40;
    app->recovery_total = 100;
    mph__stats_t st;
    cr_assert_eq(mph__stats_collect(&st, app, mons, 2, NULL, NULL,
                                    mons[0]->started_ns + S),
                 MPH_OK);
    /* what the coordinator would have reported */
    st.have_coord = true;
    st.coord.commits = 7;
    st.coord.rebalances = 1;
    st.coord.last_commit_us = 1234;
    st.topics[0].parts[2].end_offset = 150;
    st.topics[0].parts[2].lag = 50;
    char *json = NULL;
    size_t len = 0;
    cr_assert_eq(mph__stats_json(&st, &json, &len), MPH_OK);
    cr_assert_not_null(json);
    cr_expect_eq(strlen(json), len);
    mph_json_parser_t *p = parse(json, len);

    json_str_eq(p, "app_id", "mon-test");
    json_str_eq(p, "version", mph_version());
    bool b = true;
    cr_expect_eq(mph_json_get_bool(p, MPH_JSON_ROOT, "ready", &b), MPH_OK);
    cr_expect_not(b);
    cr_expect_eq(json_u64(p, "totals.events_in"), 260);
    cr_expect_eq(json_u64(p, "totals.events_failed"), 26);
    cr_expect_eq(json_u64(p, "totals.sends_acked"), 260);
    cr_expect_eq(json_u64(p, "totals.processing_latency_ns.count"), 260);
    cr_expect_eq(json_u64(p, "totals.processing_latency_ns.p50"), 100);
    double rate = -1;
    cr_expect_eq(
        mph_json_get_f64(p, MPH_JSON_ROOT, "totals.events_per_s", &rate),
        MPH_OK);
    cr_expect_float_eq(rate, 260.0, 1e-6);
    cr_expect_eq(json_u64(p, "commits.commits"), 7);
    cr_expect_eq(json_u64(p, "commits.last_commit_latency_us"), 1234);
    cr_expect_eq(json_u64(p, "commits.rebalances"), 1);
    json_str_eq(p, "topics.0.name", "in");
    cr_expect_eq(json_u64(p, "topics.0.partition_count"), 4);
    cr_expect_eq(json_u64(p, "topics.0.events_in"), 260);
    cr_expect_eq(json_u64(p, "topics.0.partitions.1.partition"), 1);
    cr_expect_eq(json_u64(p, "topics.0.partitions.1.worker"), 1);
    cr_expect_eq(json_u64(p, "topics.0.partitions.1.events"), 30);
    cr_expect_eq(json_u64(p, "topics.0.partitions.1.read_offset"), 29);
    cr_expect_eq(json_u64(p, "topics.0.partitions.1.commit_point"), 25);
    cr_expect(json_null(p, "topics.0.partitions.1.end_offset"));
    cr_expect(json_null(p, "topics.0.partitions.1.lag"));
    cr_expect_eq(json_u64(p, "topics.0.partitions.2.end_offset"), 150);
    cr_expect_eq(json_u64(p, "topics.0.partitions.2.lag"), 50);
    json_str_eq(p, "topics.1.name", "out");
    cr_expect_eq(json_u64(p, "topics.1.events_out"), 260);
    size_t n = 99;
    mph_json_val_t v;
    cr_assert_eq(
        mph_json_get_array(p, MPH_JSON_ROOT, "topics.1.partitions", &v),
        MPH_OK);
    cr_expect_eq(mph_json_count(p, v, &n), MPH_OK);
    cr_expect_eq(n, 0);
    json_str_eq(p, "agents.1.name", "count");
    cr_expect_eq(json_u64(p, "agents.1.errors"), 26);
    cr_expect_eq(json_u64(p, "workers.1.worker"), 1);
    cr_expect_eq(json_u64(p, "workers.1.events_in"), 60);
    cr_expect_eq(json_u64(p, "workers.1.topics.1.events_out"), 60);
    cr_expect_eq(json_u64(p, "workers.0.agents.1.errors"), 20);
    cr_expect_eq(json_u64(p, "workers.0.processing_latency_ns.max"), 100);
    json_str_eq(p, "tables.0.name", "counts");
    cr_expect_eq(json_u64(p, "tables.0.index"), 0);
    cr_expect_eq(json_u64(p, "tables.0.gets"), 0);
    cr_expect_eq(json_u64(p, "recovery.recoveries"), 2);
    cr_expect_eq(json_u64(p, "recovery.records_restored"), 40);
    cr_expect_eq(json_u64(p, "recovery.records_total"), 100);

    mph_json_parser_destroy(p);
    free(json);
    mph__stats_fini(&st);
    mph__monitor_destroy(mons[0]);
    mph__monitor_destroy(mons[1]);
    mph_app_destroy(app);
}

Test(monitor, stats_json_needs_a_running_app, .timeout = 10)
{
    mph_app_t *app = test_app();
    char *json = (char *)"unchanged";
    size_t len = 0;
    cr_expect_eq(mph_app_stats_json(app, &json, &len), MPH_ERR_STATE);
    cr_expect_eq(mph_app_stats_json(NULL, &json, &len), MPH_ERR_INVALID);
    cr_expect_eq(mph_app_stats_json(app, NULL, &len), MPH_ERR_INVALID);
    mph_app_destroy(app);
}

/* A writer thread records while the test reads: every read is complete and
 * counts never go backwards (run under TSan to check the ck_pr rule). */
typedef struct writer_arg {
    mph__monitor_t *m;
    int n;
} writer_arg_t;

static void *writer(void *arg)
{
    writer_arg_t *w = arg;
    for (int i = 0; i < w->n; i++) {
        mph__monitor_agent(w->m, 0, false);
        mph__monitor_event(w->m, 0, i % 4, i / 4, (uint64_t)(i % 5000));
    }
    return NULL;
}

Test(monitor, reading_while_a_worker_records, .timeout = 30)
{
    mph_app_t *app = test_app();
    mph__monitor_t *m = mph__monitor_new(app, 0, 0);
    for (int32_t p = 0; p < 4; p++)
        mph__monitor_partition(m, 0, p, true);
    writer_arg_t arg = {m, 400000};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, writer, &arg), 0);
    uint64_t last = 0;
    int reads = 0;
    for (;;) {
        mph__stats_t st;
        cr_assert_eq(mph__stats_collect(&st, app, &m, 1, NULL, NULL,
                                        mph_clock_mono_ns()),
                     MPH_OK);
        reads++;
        uint64_t now = st.totals.events_in;
        cr_assert_geq(now, last);
        uint64_t parts = 0;
        for (int32_t p = 0; p < 4; p++)
            parts += st.topics[0].parts[p].events;
        cr_assert_leq(parts, arg.n);
        last = now;
        mph__stats_fini(&st);
        if (now == (uint64_t)arg.n)
            break;
    }
    pthread_join(t, NULL);
    mph__stats_t st;
    cr_assert_eq(
        mph__stats_collect(&st, app, &m, 1, NULL, NULL, mph_clock_mono_ns()),
        MPH_OK);
    cr_expect_eq(st.totals.processing.count, (uint64_t)arg.n);
    cr_expect_eq(st.agents[0].events, (uint64_t)arg.n);
    cr_expect_eq(st.topics[0].parts[3].read_offset, arg.n / 4 - 1);
    cr_expect_gt(reads, 0);
    mph__stats_fini(&st);
    mph__monitor_destroy(m);
    mph_app_destroy(app);
}

/* ---- user sensors ---- */

typedef struct seen {
    int events, agents, agent_failed, sends, completed, errors, retries;
    int assigned, revoked, commits, rebalances;
    int64_t last_offset;
    int32_t last_partition;
    int last_worker;
    uint64_t last_latency;
    char last_topic[32], last_agent[32], error_topic[32];
    mph_err_t last_err;
    uint64_t commit_us;
    int rebalance_parts;
} seen_t;

static void on_event(void *o, int worker, const char *topic, int32_t p,
                     int64_t offset, uint64_t latency_ns)
{
    seen_t *s = o;
    s->events++;
    s->last_worker = worker;
    s->last_partition = p;
    s->last_offset = offset;
    s->last_latency = latency_ns;
    snprintf(s->last_topic, sizeof s->last_topic, "%s", topic);
}

static void on_agent(void *o, int worker, const char *agent, bool failed)
{
    seen_t *s = o;
    (void)worker;
    s->agents++;
    s->agent_failed += failed;
    snprintf(s->last_agent, sizeof s->last_agent, "%s", agent);
}

static void on_send(void *o, int worker, const char *topic)
{
    seen_t *s = o;
    (void)worker;
    s->sends++;
    cr_expect_str_eq(topic, "out");
}

static void on_completed(void *o, int worker, uint64_t latency_ns)
{
    seen_t *s = o;
    (void)worker;
    s->completed++;
    cr_expect_eq(latency_ns, 50000);
}

static void on_error(void *o, int worker, const char *topic, int32_t p,
                     mph_err_t err, bool retrying)
{
    seen_t *s = o;
    (void)worker;
    (void)p;
    if (retrying)
        s->retries++;
    else
        s->errors++;
    s->last_err = err;
    snprintf(s->error_topic, sizeof s->error_topic, "%s", topic);
}

static void on_partition(void *o, int worker, const char *topic, int32_t p,
                         bool assigned)
{
    seen_t *s = o;
    (void)worker;
    (void)p;
    cr_expect_str_eq(topic, "in");
    if (assigned)
        s->assigned++;
    else
        s->revoked++;
}

static void on_commit(void *o, mph_err_t err, uint64_t latency_us)
{
    seen_t *s = o;
    s->commits++;
    s->last_err = err;
    s->commit_us = latency_us;
}

static void on_rebalance(void *o, bool assigned, int partitions)
{
    seen_t *s = o;
    s->rebalances++;
    s->rebalance_parts = assigned ? partitions : -partitions;
}

Test(monitor, user_sensors_are_called_from_the_recorders, .timeout = 10)
{
    mph_app_t *app = test_app();
    seen_t a = {0}, b = {0};
    char err[128];
    mph_sensor_t *sa = mph_sensor_new(&a, err, sizeof err);
    mph_sensor_t *sb = mph_sensor_new(&b, err, sizeof err);
    cr_assert_not_null(sa);
    cr_assert_not_null(sb);
    cr_assert_eq(mph_sensor_on_event(sa, on_event), MPH_OK);
    cr_assert_eq(mph_sensor_on_agent(sa, on_agent), MPH_OK);
    cr_assert_eq(mph_sensor_on_send(sa, on_send), MPH_OK);
    cr_assert_eq(mph_sensor_on_send_completed(sa, on_completed), MPH_OK);
    cr_assert_eq(mph_sensor_on_send_error(sa, on_error), MPH_OK);
    cr_assert_eq(mph_sensor_on_partition(sa, on_partition), MPH_OK);
    cr_assert_eq(mph_sensor_on_commit(sa, on_commit), MPH_OK);
    cr_assert_eq(mph_sensor_on_rebalance(sa, on_rebalance), MPH_OK);
    cr_assert_eq(mph_sensor_on_event(sb, on_event), MPH_OK); /* only events */
    cr_assert_eq(mph_sensor_on_event(NULL, on_event), MPH_ERR_INVALID);

    cr_assert_eq(mph_app_add_sensor(app, sa), MPH_OK);
    cr_assert_eq(mph_app_add_sensor(app, sb), MPH_OK);
    cr_expect_eq(mph_app_add_sensor(app, sa), MPH_ERR_EXISTS);
    cr_expect_eq(mph_app_add_sensor(app, NULL), MPH_ERR_INVALID);
    cr_expect_eq(mph_sensor_on_agent(sb, on_agent), MPH_ERR_STATE,
                 "frozen once added");

    mph__monitor_t *m0 = mph__monitor_new(app, 0, 0); /* freezes */
    mph__monitor_t *m1 = mph__monitor_new(app, 1, 0);
    cr_assert_not_null(m0);
    cr_assert_not_null(m0->sensors);
    cr_expect_eq(m0->sensors, m1->sensors, "one frozen set");
    cr_expect_eq(m0->sensor_hooks,
                 (unsigned)(MPH__HOOK_EVENT | MPH__HOOK_AGENT | MPH__HOOK_SEND |
                            MPH__HOOK_SEND_COMPLETED | MPH__HOOK_SEND_ERROR |
                            MPH__HOOK_PARTITION));
    seen_t c = {0};
    mph_sensor_t *sc = mph_sensor_new(&c, NULL, 0);
    cr_expect_eq(mph_app_add_sensor(app, sc), MPH_ERR_STATE,
                 "registration closed at start");

    play(m1, 1, 20); /* partitions 1 and 3, 20 events each */
    cr_expect_eq(a.events, 40);
    cr_expect_eq(b.events, 40, "second sensor called too");
    cr_expect_eq(a.last_worker, 1);
    cr_expect_eq(a.last_partition, 3);
    cr_expect_eq(a.last_offset, 19);
    cr_expect_eq(a.last_latency, 1000);
    cr_expect_str_eq(a.last_topic, "in");
    cr_expect_eq(a.agents, 80);
    cr_expect_eq(a.agent_failed, 4);
    cr_expect_str_eq(a.last_agent, "count");
    cr_expect_eq(a.sends, 40);
    cr_expect_eq(a.completed, 40);
    cr_expect_eq(a.assigned, 2);
    cr_expect_eq(b.agents, 0, "unset callbacks are not called");
    mph__monitor_partition(m1, 0, 3, false);
    cr_expect_eq(a.revoked, 1);
    mph__monitor_send_retry(m1, "out", 1, MPH_ERR_TRANSPORT);
    mph__monitor_send_error(m1, "out", 1, MPH_ERR_KAFKA);
    cr_expect_eq(a.retries, 1);
    cr_expect_eq(a.errors, 1);
    cr_expect_eq(a.last_err, MPH_ERR_KAFKA);
    cr_expect_str_eq(a.error_topic, "out");

    /* Coordinator hooks reach the set through worker 0's monitor. */
    mph__sensors_commit(app, MPH_OK, 10); /* no workers yet: nothing */
    cr_expect_eq(a.commits, 0);
    mph__worker_t w0 = {0};
    w0.mon = m0;
    mph__worker_t *ws[1] = {&w0};
    app->workers = ws;
    mph__sensors_commit(app, MPH_ERR_TIMEOUT, 1500);
    mph__sensors_rebalance(app, true, 4);
    mph__sensors_rebalance(app, false, 2);
    app->workers = NULL;
    cr_expect_eq(a.commits, 1);
    cr_expect_eq(a.last_err, MPH_ERR_TIMEOUT);
    cr_expect_eq(a.commit_us, 1500);
    cr_expect_eq(a.rebalances, 2);
    cr_expect_eq(a.rebalance_parts, -2);
    cr_expect_eq(b.commits, 0);

    mph__monitor_destroy(m0);
    mph__monitor_destroy(m1);
    mph_app_destroy(app); /* frees the registrations */
    mph_sensor_destroy(sa);
    mph_sensor_destroy(sb);
    mph_sensor_destroy(sc);
    mph_sensor_destroy(NULL);
}

/* A sensor with one hook: only that recorder dispatches (the others take
 * their never-taken branch), and it still gets every call. */
Test(monitor, only_the_hooks_a_sensor_has_dispatch, .timeout = 10)
{
    mph_app_t *app = test_app();
    seen_t a = {0};
    mph_sensor_t *sa = mph_sensor_new(&a, NULL, 0);
    cr_assert_not_null(sa);
    cr_assert_eq(mph_sensor_on_send_completed(sa, on_completed), MPH_OK);
    cr_assert_eq(mph_app_add_sensor(app, sa), MPH_OK);
    mph__monitor_t *m = mph__monitor_new(app, 1, 0);
    cr_assert_not_null(m);
    cr_expect_not_null(m->sensors);
    cr_expect_eq(m->sensor_hooks, (unsigned)MPH__HOOK_SEND_COMPLETED);
    play(m, 1, 20);
    cr_expect_eq(a.completed, 40);
    cr_expect_eq(a.events + a.agents + a.sends + a.assigned, 0);
    mph__monitor_destroy(m);
    mph_app_destroy(app);
    mph_sensor_destroy(sa);
}

/* ---- /metrics rendering ---- */

static int count_lines(const char *text, const char *prefix)
{
    int n = 0;
    size_t len = strlen(prefix);
    for (const char *l = text; l && *l;) {
        if (strncmp(l, prefix, len) == 0)
            n++;
        l = strchr(l, '\n');
        if (l)
            l++;
    }
    return n;
}

Test(monitor, prometheus_text, .timeout = 10)
{
    mph_app_t *app = test_app();
    mph__monitor_t *mons[2] = {mph__monitor_new(app, 0, 1),
                               mph__monitor_new(app, 1, 1)};
    play(mons[0], 0, 100);
    play(mons[1], 1, 30);
    mph__stats_t st;
    cr_assert_eq(mph__stats_collect(&st, app, mons, 2, NULL, NULL,
                                    mons[0]->started_ns + S),
                 MPH_OK);
    st.have_coord = true;
    st.coord.commits = 3;
    st.coord.last_commit_us = 2500;
    st.topics[0].parts[0].end_offset = 100;
    st.topics[0].parts[0].lag = 0;
    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(mph__web_metrics(&st, &text, &len), MPH_OK);
    cr_assert_not_null(text);
    cr_expect_eq(strlen(text), len);

    const char *types[] = {
        "# TYPE mephisto_events_total counter\n",
        "# TYPE mephisto_events_failed_total counter\n",
        "# TYPE mephisto_sends_acked_total counter\n",
        "# TYPE mephisto_partitions_owned gauge\n",
        "# TYPE mephisto_topic_events_in_total counter\n",
        "# TYPE mephisto_partition_lag gauge\n",
        "# TYPE mephisto_partition_end_offset gauge\n",
        "# TYPE mephisto_agent_errors_total counter\n",
        "# TYPE mephisto_processing_latency_seconds histogram\n",
        "# TYPE mephisto_send_latency_seconds histogram\n",
        "# TYPE mephisto_commits_total counter\n",
        "# TYPE mephisto_last_commit_latency_seconds gauge\n",
        "# TYPE mephisto_table_ops_total counter\n",
        "# TYPE mephisto_ready gauge\n",
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        cr_expect_not_null(strstr(text, types[i]), "%s", types[i]);
    cr_expect_not_null(strstr(text, "mephisto_events_total{worker=\"0\"} "
                                    "200\n"));
    cr_expect_not_null(strstr(text, "mephisto_events_total{worker=\"1\"} "
                                    "60\n"));
    cr_expect_not_null(strstr(
        text, "mephisto_partition_events_total{topic=\"in\",partition=\"1\"}"
              " 30\n"));
    cr_expect_not_null(strstr(
        text, "mephisto_partition_lag{topic=\"in\",partition=\"0\"} 0\n"));
    cr_expect_eq(count_lines(text, "mephisto_partition_lag{"), 1,
                 "unknown lags have no sample");
    cr_expect_not_null(
        strstr(text, "mephisto_partition_owner{topic=\"in\",partition=\"3\","
                     "worker=\"1\"} 1\n"));
    cr_expect_not_null(strstr(
        text,
        "mephisto_agent_errors_total{agent=\"count\",worker=\"0\"} 20\n"));
    cr_expect_not_null(
        strstr(text, "mephisto_last_commit_latency_seconds 0.0025\n"));
    cr_expect_not_null(strstr(text, "mephisto_table_ops_total{table=\"counts\","
                                    "op=\"set\",worker=\"1\"} 0\n"));
    cr_expect_not_null(strstr(text, "mephisto_processing_latency_seconds_"
                                    "bucket{worker=\"0\",le=\"1e-06\"} 200\n"));
    cr_expect_not_null(strstr(text, "mephisto_processing_latency_seconds_"
                                    "bucket{worker=\"1\",le=\"+Inf\"} 60\n"));
    cr_expect_not_null(strstr(text, "mephisto_processing_latency_seconds_"
                                    "count{worker=\"1\"} 60\n"));
    /* every worker's histogram has the same, fixed set of buckets */
    cr_expect_eq(count_lines(text, "mephisto_send_latency_seconds_bucket{"),
                 2 * (MPH__STATS_LE_COUNT + 1));
    /* each family is declared once */
    cr_expect_eq(count_lines(text, "# TYPE mephisto_events_total "), 1);
    cr_expect_eq(count_lines(text, "# TYPE "), count_lines(text, "# HELP "));

    free(text);
    mph__stats_fini(&st);
    mph__monitor_destroy(mons[0]);
    mph__monitor_destroy(mons[1]);
    mph_app_destroy(app);
}

/* ---- /router helpers ---- */

typedef struct assigned {
    char topics[8][32];
    int32_t partitions[8];
    int n;
} assigned_t;

static void collect(void *o, const char *topic, size_t len, int32_t p)
{
    assigned_t *a = o;
    if (a->n < 8) {
        snprintf(a->topics[a->n], sizeof a->topics[0], "%.*s", (int)len, topic);
        a->partitions[a->n] = p;
    }
    a->n++;
}

/* What a real broker returned for a member holding in[0..3] (version 0,
 * one topic "in", four partitions, empty user data). */
static const unsigned char broker_bytes[] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x02, 0x69, 0x6e, 0x00, 0x00,
    0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
    0x00, 0x02, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00};

Test(monitor, assignment_parser, .timeout = 10)
{
    assigned_t a = {0};
    cr_assert_eq(mph__web_parse_assignment(broker_bytes, sizeof broker_bytes,
                                           collect, &a),
                 MPH_OK);
    cr_assert_eq(a.n, 4);
    for (int i = 0; i < 4; i++) {
        cr_expect_str_eq(a.topics[i], "in");
        cr_expect_eq(a.partitions[i], i);
    }
    /* two topics, version 3, null user data */
    const unsigned char two[] = {0x00, 0x03, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01,
                                 'a',  0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
                                 0x07, 0x00, 0x02, 'b',  'c',  0x00, 0x00, 0x00,
                                 0x00, 0xff, 0xff, 0xff, 0xff};
    memset(&a, 0, sizeof a);
    cr_expect_eq(mph__web_parse_assignment(two, sizeof two, collect, &a),
                 MPH_OK);
    cr_expect_eq(a.n, 1);
    cr_expect_str_eq(a.topics[0], "a");
    cr_expect_eq(a.partitions[0], 7);
    /* empty: a member without an assignment yet */
    memset(&a, 0, sizeof a);
    cr_expect_eq(mph__web_parse_assignment(NULL, 0, collect, &a), MPH_OK);
    cr_expect_eq(a.n, 0);
    /* every truncation of the broker's bytes before the user data fails
     * cleanly and never reads past the end (ASan checks the reads: each
     * prefix is copied to a buffer of exactly its size) */
    for (size_t len = 1; len < sizeof broker_bytes - 4; len++) {
        unsigned char *buf = malloc(len);
        memcpy(buf, broker_bytes, len);
        memset(&a, 0, sizeof a);
        cr_expect_eq(mph__web_parse_assignment(buf, len, collect, &a),
                     MPH_ERR_DECODE, "len %zu", len);
        free(buf);
    }
    /* negative lengths and a partition count larger than the input */
    unsigned char bad[sizeof broker_bytes];
    memcpy(bad, broker_bytes, sizeof bad);
    bad[0] = 0xff; /* version -1 */
    cr_expect_eq(mph__web_parse_assignment(bad, sizeof bad, collect, &a),
                 MPH_ERR_DECODE);
    memcpy(bad, broker_bytes, sizeof bad);
    bad[6] = 0xff; /* topic name length negative */
    cr_expect_eq(mph__web_parse_assignment(bad, sizeof bad, collect, &a),
                 MPH_ERR_DECODE);
    memcpy(bad, broker_bytes, sizeof bad);
    bad[10] = 0x7f; /* 2^31 - ... partitions */
    memset(&a, 0, sizeof a);
    cr_expect_eq(mph__web_parse_assignment(bad, sizeof bad, collect, &a),
                 MPH_ERR_DECODE);
    cr_expect_eq(a.n, 0, "nothing reported from an impossible count");
}

Test(monitor, member_address_from_client_id, .timeout = 10)
{
    char out[64];
    cr_expect(mph__web_member_address("app@127.0.0.1:6066", "/10.0.0.1", out,
                                      sizeof out));
    cr_expect_str_eq(out, "127.0.0.1:6066");
    cr_expect(mph__web_member_address("app@0.0.0.0:80", "/10.1.2.3", out,
                                      sizeof out));
    cr_expect_str_eq(out, "10.1.2.3:80");
    cr_expect(mph__web_member_address("my@app@host.example:8080", NULL, out,
                                      sizeof out));
    cr_expect_str_eq(out, "host.example:8080");
    cr_expect_not(mph__web_member_address("app", "/h", out, sizeof out));
    cr_expect_not(mph__web_member_address(NULL, "/h", out, sizeof out));
    cr_expect_not(mph__web_member_address("app@host:", "/h", out, sizeof out));
    cr_expect_not(mph__web_member_address("app@:80", "/h", out, sizeof out));
    cr_expect_not(mph__web_member_address("app@h:0", "/h", out, sizeof out));
    cr_expect_not(
        mph__web_member_address("app@h:99999", "/h", out, sizeof out));
    cr_expect_not(mph__web_member_address("app@h:8x", "/h", out, sizeof out));
    cr_expect_not(
        mph__web_member_address("app@0.0.0.0:80", "", out, sizeof out));
    char tiny[8];
    cr_expect_not(mph__web_member_address("app@longhostname:80", NULL, tiny,
                                          sizeof tiny));
}

/*
 * Per-partition punctuators (mph_agent_punctuate) and window_idle_close_ms
 * (issue #18), end to end through an app: wall-clock punctuators run per
 * owned partition on the owning worker; stream-time ones follow record
 * timestamps; an idle partition's windows close by wall clock; sends and
 * table writes of a punctuator survive a restart without loss
 * (at_least_once) and without duplicates (exactly_once, real broker only:
 * the mock cluster has no read_committed).
 *
 * The delivery tests buffer each input id in a table (key = the record's
 * key, so it is in the event's partition) and let a 30 ms punctuator move
 * the buffer to the output topic: send each id, delete its key. Every id
 * then reaches the output only through a punctuator.
 */
// ctest-timeout: 300
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ck_pr.h>

#include "io/kafka.h"
#include "mephisto.h"
#include "mph_cli.h"
#include "mph_test.h"

#define PARTS 4

static mph_test_cluster_t *cluster;

static void setup(void)
{
    cluster = mph_test_cluster_new();
}

static void teardown(void)
{
    mph_test_cluster_destroy(cluster);
}

TestSuite(punctuate, .init = setup, .fini = teardown, .timeout = 240);

static mph_app_t *app_new(const char *app_id, const char *const *extra)
{
    char err[512];
    mph_conf_t *conf = mph_conf_new();
    const char *kv[][2] = {{"broker", cluster->broker}, {"app_id", app_id},
                           {"workers", "2"},            {"web_enabled", "false"},
                           {"log_level", "warn"},       {"commit_interval_ms", "200"},
                           {"shutdown_timeout_ms", "10000"}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        cr_assert_eq(mph_conf_set(conf, kv[i][0], kv[i][1], err, sizeof err), MPH_OK, "%s",
                     err);
    for (const char *const *p = extra; p && *p; p += 2)
        cr_assert_eq(mph_conf_set(conf, p[0], p[1], err, sizeof err), MPH_OK, "%s", err);
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(app, "%s", err);
    return app;
}

static void app_start(mph_app_t *app)
{
    char err[512];
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
}

static void wait_ms(int ms)
{
    usleep((useconds_t)ms * 1000);
}

static uint64_t stat_u64(mph_app_t *app, const char *path)
{
    char *json = NULL;
    size_t len = 0;
    uint64_t v = 0;
    if (mph_app_stats_json(app, &json, &len) != MPH_OK)
        return 0;
    mph_json_parser_t *p = mph_json_parser_new(0, NULL, 0);
    if (p && mph_json_parse(p, json, len, len) == MPH_OK)
        mph_json_get_u64(p, MPH_JSON_ROOT, path, &v);
    mph_json_parser_destroy(p);
    free(json);
    return v;
}

static mph_err_t noop_fn(mph_event_t *ev, int64_t t, void *opaque)
{
    (void)ev, (void)t, (void)opaque;
    return MPH_OK;
}

static mph_err_t noop_agent(mph_event_t *ev, void *opaque)
{
    (void)ev, (void)opaque;
    return MPH_OK;
}

/* ---- declaration errors ---- */

Test(punctuate, bad_arguments_are_refused)
{
    char err[512];
    mph_app_t *app = app_new("mph-punct-args", NULL);
    mph_topic_t *t = mph_topic_new(app, "mph-punct-args-in", NULL, err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    mph_agent_t *a = mph_agent_new(app, "a", t, noop_agent, NULL, err, sizeof err);
    cr_assert_not_null(a, "%s", err);
    cr_expect_eq(mph_agent_punctuate(a, 10, 0, noop_fn, NULL), MPH_ERR_INVALID);
    cr_expect_eq(mph_agent_punctuate(a, 10, MPH_PUNCTUATE_WALL | MPH_PUNCTUATE_STREAM, noop_fn,
                                     NULL),
                 MPH_ERR_INVALID);
    cr_expect_eq(mph_agent_punctuate(a, 0, MPH_PUNCTUATE_WALL, noop_fn, NULL), MPH_ERR_INVALID);
    cr_expect_eq(mph_agent_punctuate(a, 86400001, MPH_PUNCTUATE_WALL, noop_fn, NULL),
                 MPH_ERR_INVALID);
    cr_expect_eq(mph_agent_punctuate(a, 10, MPH_PUNCTUATE_WALL, NULL, NULL), MPH_ERR_INVALID);
    cr_expect_eq(mph_agent_punctuate(NULL, 10, MPH_PUNCTUATE_WALL, noop_fn, NULL),
                 MPH_ERR_INVALID);
    cr_expect_eq(mph_agent_punctuate(a, 10, MPH_PUNCTUATE_STREAM, noop_fn, NULL), MPH_OK);
    cr_expect_eq(mph_agent_batch(a, 0, 10), MPH_ERR_INVALID);
    cr_expect_eq(mph_agent_batch(a, 100001, 10), MPH_ERR_INVALID);
    cr_expect_eq(mph_agent_batch(a, 10, 0), MPH_ERR_INVALID);
    cr_expect_eq(mph_agent_batch(NULL, 10, 10), MPH_ERR_INVALID);
    mph_conf_t *conf = mph_conf_new();
    cr_expect_neq(mph_conf_set(conf, "window_idle_close_ms", "-1", err, sizeof err), MPH_OK);
    cr_expect(strstr(err, "window_idle_close_ms") != NULL, "error names the setting: %s", err);
    mph_conf_destroy(conf);
    mph_app_destroy(app);
}

/* ---- wall clock: per partition, on the owning worker ---- */

typedef struct wall {
    int ev_worker[PARTS];   /* worker that processed the partition's events */
    int runs[PARTS];
    int wrong_worker, bad_handle;
    int64_t min_ts;
} wall_t;

static mph_err_t wall_agent(mph_event_t *ev, void *opaque)
{
    wall_t *w = opaque;
    ck_pr_store_int(&w->ev_worker[mph_event_partition(ev)], mph_event_worker(ev) + 1);
    return MPH_OK;
}

static mph_err_t wall_fn(mph_event_t *ev, int64_t t, void *opaque)
{
    wall_t *w = opaque;
    int32_t p = mph_event_partition(ev);
    size_t kl = 1, vl = 1;
    if (p < 0 || p >= PARTS || mph_event_key(ev, &kl) || mph_event_value(ev, &vl) || kl || vl ||
        mph_event_offset(ev) != -1 || mph_event_timestamp(ev) != t || t < w->min_ts ||
        mph_event_header_count(ev) != 0 || mph_event_forward(ev, mph_event_topic(ev)) == MPH_OK) {
        ck_pr_inc_int(&w->bad_handle);
        return MPH_OK;
    }
    int ew = ck_pr_load_int(&w->ev_worker[p]);
    if (ew && ew != mph_event_worker(ev) + 1)
        ck_pr_inc_int(&w->wrong_worker);
    ck_pr_inc_int(&w->runs[p]);
    return MPH_OK;
}

Test(punctuate, wall_runs_per_partition_on_its_worker)
{
    char id[128], in[160], err[512];
    mph_test_unique("punct-wall", id, sizeof id);
    snprintf(in, sizeof in, "%s-in", id);
    mph_test_create_topic(cluster, in, PARTS);
    wall_t w = {.min_ts = mph_clock_wall_ms()};
    mph_app_t *app = app_new(id, NULL);
    mph_topic_t *t = mph_topic_new(app, in, NULL, err, sizeof err);
    mph_agent_t *a = mph_agent_new(app, "a", t, wall_agent, &w, err, sizeof err);
    cr_assert_not_null(a, "%s", err);
    cr_assert_eq(mph_agent_punctuate(a, 20, MPH_PUNCTUATE_WALL, wall_fn, &w), MPH_OK);
    for (int p = 0; p < PARTS; p++)
        mph_test_produce(cluster, in, p, "k", 1, "v", 1);
    mph_test_flush(cluster);
    app_start(app);
    cr_expect_eq(mph_app_start(app, err, sizeof err), MPH_ERR_STATE);
    cr_expect_eq(mph_agent_punctuate(a, 20, MPH_PUNCTUATE_WALL, wall_fn, &w), MPH_ERR_STATE);
    /* Every partition processed its event, then 1.5 s more of runs. */
    for (int i = 0; i < 300; i++) {
        int seen = 0;
        for (int p = 0; p < PARTS; p++)
            seen += ck_pr_load_int(&w.ev_worker[p]) != 0;
        if (seen == PARTS)
            break;
        wait_ms(100);
    }
    int before[PARTS];
    for (int p = 0; p < PARTS; p++)
        before[p] = ck_pr_load_int(&w.runs[p]);
    wait_ms(1500);
    uint64_t total = 0;
    for (int p = 0; p < PARTS; p++) {
        int n = ck_pr_load_int(&w.runs[p]) - before[p];
        /* 75 ticks of 20 ms; generous for a loaded machine, and never
         * more than one per tick. */
        cr_expect(n >= 15 && n <= 80, "partition %d: %d runs in 1.5 s of a 20 ms punctuator", p,
                  n);
        total += (uint64_t)ck_pr_load_int(&w.runs[p]);
    }
    cr_expect_eq(ck_pr_load_int(&w.wrong_worker), 0, "runs on a worker not owning the partition");
    cr_expect_eq(ck_pr_load_int(&w.bad_handle), 0, "the punctuator handle is not as documented");
    uint64_t stat_runs = stat_u64(app, "agents.0.punctuators.0.runs");
    cr_expect_geq(stat_runs, total - 8, "/stats runs %llu, counted %llu",
                  (unsigned long long)stat_runs, (unsigned long long)total);
    char *json = NULL;
    size_t len = 0;
    cr_assert_eq(mph_app_stats_json(app, &json, &len), MPH_OK);
    cr_expect(strstr(json, "\"clock\":\"wall\",\"interval_ms\":20") != NULL, "%s", json);
    cr_expect(strstr(json, "\"overruns\":") && strstr(json, "\"last_run_ms\":"));
    uint64_t last = stat_u64(app, "agents.0.punctuators.0.last_run_ms");
    uint64_t next = stat_u64(app, "agents.0.punctuators.0.next_run_ms");
    cr_expect(last > 0 && next + 20 >= last && next <= last + 1000, "last %llu next %llu",
              (unsigned long long)last, (unsigned long long)next);
    free(json);
    mph_app_request_stop(app);
    cr_expect_eq(mph_app_wait(app), MPH_OK);
    mph_app_destroy(app);
}

/* ---- stream time ---- */

typedef struct stream {
    int64_t times[64];
    int n;
    int bad;
} stream_t;

static mph_err_t stream_fn(mph_event_t *ev, int64_t t, void *opaque)
{
    stream_t *s = opaque;
    if (mph_event_partition(ev) != 0 || mph_event_timestamp(ev) != t || s->n >= 64) {
        s->bad++;
        return MPH_OK;
    }
    s->times[s->n] = t;
    ck_pr_store_int(&s->n, s->n + 1); /* written by the one worker owning partition 0 */
    return MPH_OK;
}

static void produce_at(const char *topic, int32_t p, int64_t ts)
{
    rd_kafka_resp_err_t e = rd_kafka_producev(
        cluster->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(p),
        RD_KAFKA_V_KEY("k", 1), RD_KAFKA_V_VALUE("v", 1), RD_KAFKA_V_TIMESTAMP(ts),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    cr_assert_eq(e, 0, "%s", rd_kafka_err2str(e));
}

Test(punctuate, stream_time_follows_record_timestamps)
{
    char id[128], in[160], err[512];
    mph_test_unique("punct-stream", id, sizeof id);
    snprintf(in, sizeof in, "%s-in", id);
    mph_test_create_topic(cluster, in, 1);
    stream_t s = {0};
    mph_app_t *app = app_new(id, (const char *[]){"workers", "1", NULL});
    mph_topic_t *t = mph_topic_new(app, in, NULL, err, sizeof err);
    mph_agent_t *a = mph_agent_new(app, "a", t, noop_agent, NULL, err, sizeof err);
    cr_assert_not_null(a, "%s", err);
    cr_assert_eq(mph_agent_punctuate(a, 500, MPH_PUNCTUATE_STREAM, stream_fn, &s), MPH_OK);
    /* Stream time 1,000,000 .. 1,002,000 in steps of 100: due first at
     * 1,000,500, and at least 500 after each run; never by wall clock. */
    int64_t base = 1000000000;
    for (int i = 0; i <= 20; i++)
        produce_at(in, 0, base + i * 100);
    mph_test_flush(cluster);
    app_start(app);
    for (int i = 0; i < 200 && !(ck_pr_load_int(&s.n) > 0 && s.times[s.n - 1] == base + 2000);
         i++)
        wait_ms(50);
    wait_ms(500); /* nothing more comes without records */
    int n = ck_pr_load_int(&s.n);
    cr_assert_gt(n, 0, "no stream-time run");
    cr_expect_eq(s.bad, 0);
    cr_expect_eq(s.times[n - 1], base + 2000, "the last run at the last stream time");
    cr_expect_geq(s.times[0], base + 500, "first run before stream time moved 500 ms");
    for (int i = 1; i < n; i++)
        cr_expect_geq(s.times[i] - s.times[i - 1], 500, "runs %d and %d closer than 500 ms",
                      i - 1, i);
    uint64_t runs = stat_u64(app, "agents.0.punctuators.0.runs");
    uint64_t over = stat_u64(app, "agents.0.punctuators.0.overruns");
    cr_expect_eq(runs, (uint64_t)n);
    /* The 4 intervals of stream time ran or were counted as missed. */
    cr_expect_geq(runs + over, 4, "runs %llu + overruns %llu", (unsigned long long)runs,
                  (unsigned long long)over);
    /* Later records move it on; the wall clock never does. */
    int before = n;
    wait_ms(300);
    cr_expect_eq(ck_pr_load_int(&s.n), before);
    produce_at(in, 0, base + 2600);
    mph_test_flush(cluster);
    for (int i = 0; i < 200 && ck_pr_load_int(&s.n) == before; i++)
        wait_ms(50);
    cr_expect_eq(ck_pr_load_int(&s.n), before + 1);
    cr_expect_eq(s.times[before], base + 2600);
    mph_app_request_stop(app);
    cr_expect_eq(mph_app_wait(app), MPH_OK);
    mph_app_destroy(app);
}

/* ---- window_idle_close_ms ---- */

typedef struct idle {
    mph_window_t *w;
    mph_topic_t *out;
    int closes;
    int punct_handle; /* closes whose handle was a punctuator's */
} idle_t;

static mph_err_t idle_agent(mph_event_t *ev, void *opaque)
{
    idle_t *c = opaque;
    size_t kl;
    const void *k = mph_event_key(ev, &kl);
    return mph_window_incr(ev, c->w, k, kl, 1);
}

static mph_err_t idle_close(mph_event_t *ev, const void *key, size_t klen, int64_t start,
                            int64_t end, const void *value, size_t vlen, void *opaque)
{
    (void)start, (void)end;
    idle_t *c = opaque;
    if (mph_event_offset(ev) == -1)
        ck_pr_inc_int(&c->punct_handle);
    ck_pr_inc_int(&c->closes);
    return mph_event_send(ev, c->out, MPH_PARTITION_ANY, key, klen, value, vlen, NULL, 0);
}

/* Runs the idle-close app (tumbling windows of size_ms) as id: with
 * first, makes its topics and produces three keys' records; then waits up
 * to wait_total_ms for three closes, stops gracefully and returns the
 * closes seen. */
static int idle_run_as(const char *id, bool first, int64_t size_ms, const char *idle_ms,
                       int wait_total_ms, int *punct_handle)
{
    char in[160], out[160], err[512];
    snprintf(in, sizeof in, "%s-in", id);
    snprintf(out, sizeof out, "%s-out", id);
    char changelog[200];
    snprintf(changelog, sizeof changelog, "%s-counts-changelog", id);
    /* Made here with their partition counts (the mock cluster would
     * auto-create them with its own when the app first looks). */
    if (first) {
        mph_test_create_topic(cluster, in, 2);
        mph_test_create_topic(cluster, out, 2);
        mph_test_create_topic(cluster, changelog, 2);
    }
    idle_t c = {0};
    mph_app_t *app = app_new(id, (const char *[]){"window_idle_close_ms", idle_ms,
                                                  "topic_partitions", "2", NULL});
    mph_topic_t *t = mph_topic_new(app, in, NULL, err, sizeof err);
    c.out = mph_topic_new(app, out, NULL, err, sizeof err);
    mph_table_opts_t *o = mph_table_opts_new();
    mph_table_opts_set(o, "value_codec", "i64", NULL, 0);
    mph_table_opts_set(o, "default", "0", NULL, 0);
    mph_table_t *tb = mph_table_new(app, "counts", o, err, sizeof err);
    mph_table_opts_destroy(o);
    cr_assert_not_null(tb, "%s", err);
    c.w = mph_table_tumbling(tb, size_ms, 60000, err, sizeof err);
    cr_assert_not_null(c.w, "%s", err);
    cr_assert_eq(mph_window_on_close(c.w, idle_close, &c), MPH_OK);
    cr_assert_not_null(mph_agent_new(app, "count", t, idle_agent, &c, err, sizeof err), "%s",
                       err);
    app_start(app);
    /* Records with the current time on both partitions (the default
     * timestamp), then nothing more. */
    for (int p = 0; first && p < 2; p++)
        for (int k = 0; k < 3; k++) {
            char key[8];
            snprintf(key, sizeof key, "k%d", k);
            int32_t part = mph__kafka_partition_for(key, strlen(key), 2);
            if (part == p)
                mph_test_produce(cluster, in, part, key, strlen(key), "v", 1);
        }
    mph_test_flush(cluster);
    int waited = 0;
    while (waited < wait_total_ms && ck_pr_load_int(&c.closes) < 3) {
        wait_ms(50);
        waited += 50;
    }
    int closes = ck_pr_load_int(&c.closes);
    if (punct_handle)
        *punct_handle = ck_pr_load_int(&c.punct_handle);
    mph_app_request_stop(app);
    cr_expect_eq(mph_app_wait(app), MPH_OK);
    mph_app_destroy(app);
    if (closes > 0) {
        int got = mph_test_consume_all(cluster, out, closes, 3000, 30000, NULL, NULL);
        cr_expect_eq(got, closes, "on_close sends reached %s", out);
    }
    return closes;
}

static int idle_run(const char *idle_ms, int wait_total_ms, int *punct_handle)
{
    char id[128];
    mph_test_unique("punct-idle", id, sizeof id);
    return idle_run_as(id, true, 500, idle_ms, wait_total_ms, punct_handle);
}

Test(punctuate, idle_partition_closes_its_windows)
{
    /* Off (the default): the windows wait for a record that never comes. */
    cr_expect_eq(idle_run("0", 2500, NULL), 0, "a window closed without the setting");
    int by_punct = 0;
    int closes = idle_run("300", 20000, &by_punct);
    cr_expect_eq(closes, 3, "three keys' windows close on idle partitions");
    cr_expect_eq(by_punct, 3, "closed from the idle punctuator's handle");
}

/* The closes an idle punctuator made are as durable as any: the stream
 * time and watermark they moved are committed although no record wrote
 * anything since (the windows close 1.5 s or more after the records, i.e.
 * several commits after the records' writes were flushed), so the app
 * started again closes nothing twice. */
Test(punctuate, idle_closes_survive_a_restart)
{
    char id[128];
    mph_test_unique("punct-idle-rs", id, sizeof id);
    cr_assert_eq(idle_run_as(id, true, 2000, "1500", 20000, NULL), 3);
    cr_expect_eq(idle_run_as(id, false, 2000, "1500", 4000, NULL), 0,
                 "windows closed before the restart closed again");
}

/* ---- sends and table writes survive restarts ---- */

typedef struct buf {
    mph_table_t *pending;
    mph_topic_t *out;
    int fail_sends;
} buf_t;

static mph_err_t buf_agent(mph_event_t *ev, void *opaque)
{
    buf_t *b = opaque;
    size_t kl, vl;
    const void *k = mph_event_key(ev, &kl);
    const void *v = mph_event_value(ev, &vl);
    return mph_table_set(ev, b->pending, k, kl, v, vl);
}

typedef struct keys {
    char (*k)[32];
    size_t n, cap;
} keys_t;

static mph_err_t collect(const void *key, size_t klen, const void *val, size_t vlen,
                         void *opaque)
{
    (void)val, (void)vlen;
    keys_t *ks = opaque;
    if (klen >= 32)
        return MPH_ERR_RANGE;
    if (ks->n == ks->cap) {
        ks->cap = ks->cap ? ks->cap * 2 : 64;
        ks->k = realloc(ks->k, ks->cap * sizeof *ks->k);
    }
    memcpy(ks->k[ks->n], key, klen);
    ks->k[ks->n][klen] = 0;
    ks->n++;
    return MPH_OK;
}

/* Moves the partition's buffered ids to the output. */
static mph_err_t buf_punct(mph_event_t *ev, int64_t t, void *opaque)
{
    (void)t;
    buf_t *b = opaque;
    keys_t ks = {0};
    mph_err_t err = mph_table_foreach(ev, b->pending, collect, &ks);
    for (size_t i = 0; !err && i < ks.n; i++) {
        size_t kl = strlen(ks.k[i]);
        err = mph_event_send(ev, b->out, MPH_PARTITION_ANY, ks.k[i], kl, ks.k[i], kl, NULL, 0);
        if (!err)
            err = mph_table_delete(ev, b->pending, ks.k[i], kl);
    }
    free(ks.k);
    return err;
}

typedef struct seen {
    int n;
    int *times;
    int bad;
} seen_t;

static void on_out(const rd_kafka_message_t *m, void *opaque)
{
    seen_t *s = opaque;
    int id = -1;
    if (m->len > 2 && !memcmp(m->payload, "id", 2))
        id = atoi((const char *)m->payload + 2);
    if (id < 0 || id >= s->n)
        s->bad++;
    else
        s->times[id]++;
}

static int count_missing(const seen_t *s)
{
    int missing = 0;
    for (int i = 0; i < s->n; i++)
        missing += s->times[i] == 0;
    return missing;
}

static void produce_ids(const char *topic, int first, int n)
{
    for (int i = first; i < first + n; i++) {
        char key[32];
        int kl = snprintf(key, sizeof key, "id%d", i);
        mph_test_produce(cluster, topic, mph__kafka_partition_for(key, (size_t)kl, PARTS), key,
                         (size_t)kl, key, (size_t)kl);
    }
    mph_test_flush(cluster);
}

static mph_app_t *buf_app(const char *id, const char *in, const char *out, const char *guarantee,
                          const char *datadir, buf_t *b)
{
    char err[512];
    mph_app_t *app = app_new(id, (const char *[]){"processing_guarantee", guarantee, "store",
                                                  "rocksdb", "datadir", datadir,
                                                  "topic_partitions", "4", NULL});
    mph_topic_t *t = mph_topic_new(app, in, NULL, err, sizeof err);
    b->out = mph_topic_new(app, out, NULL, err, sizeof err);
    b->pending = mph_table_new(app, "pending", NULL, err, sizeof err);
    cr_assert(t && b->out && b->pending, "%s", err);
    mph_agent_t *a = mph_agent_new(app, "buffer", t, buf_agent, b, err, sizeof err);
    cr_assert_not_null(a, "%s", err);
    cr_assert_eq(mph_agent_punctuate(a, 30, MPH_PUNCTUATE_WALL, buf_punct, b), MPH_OK);
    return app;
}

static void survives_restarts(const char *guarantee, bool exact)
{
    char id[128], in[160], out[160], dir[256];
    mph_test_unique(exact ? "punct-eos" : "punct-alo", id, sizeof id);
    snprintf(in, sizeof in, "%s-in", id);
    snprintf(out, sizeof out, "%s-out", id);
    mph_test_tmpdir("punct", dir, sizeof dir);
    mph_test_create_topic(cluster, in, PARTS);
    mph_test_create_topic(cluster, out, PARTS);
    const int total = 3000;
    seen_t s = {.n = total, .times = calloc(total, sizeof(int))};
    s.times[0] = 0;
    /* Three runs; the first two stop while ids are still buffered in the
     * table or in flight; the last one runs until the output is read. */
    for (int run = 0; run < 3; run++) {
        buf_t b = {0};
        mph_app_t *app = buf_app(id, in, out, guarantee, dir, &b);
        app_start(app);
        produce_ids(in, run * 1000, 1000);
        if (run < 2) {
            wait_ms(300);
        } else {
            /* Read until every id is there (the group may take a while
             * to hand the partitions over), then once more for copies. */
            for (int tries = 0; tries < 30 && count_missing(&s) > 0; tries++) {
                memset(s.times, 0, total * sizeof(int));
                s.bad = 0;
                mph_test_consume_all(cluster, out, -1, 2000, 60000, on_out, &s);
            }
            memset(s.times, 0, total * sizeof(int));
            s.bad = 0;
            mph_test_consume_all(cluster, out, -1, 2000, 60000, on_out, &s);
        }
        mph_app_request_stop(app);
        cr_expect_eq(mph_app_wait(app), MPH_OK, "run %d", run);
        mph_app_destroy(app);
    }
    int missing = 0, twice = 0;
    for (int i = 0; i < total; i++) {
        missing += s.times[i] == 0;
        twice += s.times[i] > 1;
    }
    cr_expect_eq(s.bad, 0);
    cr_expect_eq(missing, 0, "%s: %d ids never reached the output", guarantee, missing);
    if (exact)
        cr_expect_eq(twice, 0, "%s: %d ids reached the output twice", guarantee, twice);
    fprintf(stderr, "punctuate/%s: %d ids, %d missing, %d more than once\n", guarantee, total,
            missing, twice);
    for (int i = 0, shown = 0; i < total && shown < 10; i++)
        if (!s.times[i]) {
            char key[32];
            int kl = snprintf(key, sizeof key, "id%d", i);
            fprintf(stderr, "  missing id%d (partition %d)\n", i,
                    (int)mph__kafka_partition_for(key, (size_t)kl, PARTS));
            shown++;
        }
    free(s.times);
    mph_test_rmrf(dir);
}

Test(punctuate, sends_survive_restarts_at_least_once)
{
    survives_restarts("at_least_once", false);
}

Test(punctuate, sends_survive_restarts_exactly_once)
{
    if (!mph_test_real_broker()) {
        fprintf(stderr, "punctuate/sends_survive_restarts_exactly_once: skipped: needs a real "
                        "broker (MEPHISTO_TEST_BROKERS); the mock has no read_committed\n");
        return;
    }
    survives_restarts("exactly_once", true);
}

/* ---- kill -9 of a worker process (examples/buffered) ---- */

static void k9_spawn(mph_cli_proc_t *p, const char *id, const char *in, const char *out,
                     const char *dir, const char *guarantee)
{
    char s[4][300];
    snprintf(s[0], sizeof s[0], "app_id=%s", id);
    snprintf(s[1], sizeof s[1], "buffered.input_topic=%s", in);
    snprintf(s[2], sizeof s[2], "buffered.output_topic=%s", out);
    snprintf(s[3], sizeof s[3], "processing_guarantee=%s", guarantee);
    const char *args[] = {"worker", "--app", mph_cli_plugin("buffered"), "--broker",
                          cluster->broker, "--without-web", "--workers", "2", "--datadir", dir,
                          "--set", s[0], "--set", s[1], "--set", s[2], "--set", s[3],
                          "--set", "buffered.partitions=4", "--set", "topic_partitions=4",
                          "--set", "buffered.interval_ms=20", "--set", "store=rocksdb",
                          "--set", "commit_interval_ms=150", "--set", "session_timeout_ms=6000",
                          NULL};
    mph_cli_spawn(p, "punctk9", args, NULL, NULL, -1);
    free(mph_cli_wait_for(p, p->err_path, "worker running", 60000));
}

static void kill_9(const char *guarantee, bool exact)
{
    char id[128], in[160], out[160], dir[256];
    mph_test_unique(exact ? "punct-k9-eos" : "punct-k9-alo", id, sizeof id);
    snprintf(in, sizeof in, "%s-in", id);
    snprintf(out, sizeof out, "%s-out", id);
    mph_test_tmpdir("punctk9", dir, sizeof dir);
    mph_test_create_topic(cluster, in, PARTS);
    const int total = 3000;
    seen_t s = {.n = total, .times = calloc(total, sizeof(int))};
    mph_cli_proc_t p;
    /* Killed twice while ids stream through the table and the 20 ms
     * punctuator, then a last run reads everything out. */
    for (int run = 0; run < 3; run++) {
        k9_spawn(&p, id, in, out, dir, guarantee);
        if (run < 2) {
            for (int part = 0; part < 10; part++) {
                produce_ids(in, run * 1000 + part * 100, 100);
                wait_ms(40);
            }
            kill(p.pid, SIGKILL);
            mph_cli_result_t r = mph_cli_finish(&p, 30000);
            cr_expect_eq(r.status, 128 + SIGKILL);
            mph_cli_result_free(&r);
            continue;
        }
        produce_ids(in, 2000, 1000);
        for (int tries = 0; tries < 30 && count_missing(&s) > 0; tries++) {
            memset(s.times, 0, total * sizeof(int));
            s.bad = 0;
            mph_test_consume_all(cluster, out, -1, 2000, 60000, on_out, &s);
        }
        memset(s.times, 0, total * sizeof(int));
        s.bad = 0;
        mph_test_consume_all(cluster, out, -1, 2000, 60000, on_out, &s);
        kill(p.pid, SIGTERM);
        mph_cli_result_t r = mph_cli_finish(&p, 60000);
        cr_expect_eq(r.status, 0, "%s", r.err ? r.err : "");
        mph_cli_result_free(&r);
    }
    int missing = count_missing(&s), twice = 0;
    for (int i = 0; i < total; i++)
        twice += s.times[i] > 1;
    fprintf(stderr, "punctuate/kill_9 %s: %d ids, %d missing, %d more than once\n", guarantee,
            total, missing, twice);
    cr_expect_eq(s.bad, 0);
    cr_expect_eq(missing, 0, "%s: %d ids lost across kill -9", guarantee, missing);
    if (exact)
        cr_expect_eq(twice, 0, "%s: %d ids twice across kill -9", guarantee, twice);
    free(s.times);
    mph_test_rmrf(dir);
}

Test(punctuate, kill_9_loses_no_punctuator_send_at_least_once)
{
    if (!mph_test_real_broker()) {
        fprintf(stderr, "punctuate/kill_9_loses_no_punctuator_send_at_least_once: skipped: "
                        "needs a real broker (MEPHISTO_TEST_BROKERS): worker processes cannot "
                        "share this process's mock cluster\n");
        return;
    }
    kill_9("at_least_once", false);
}

Test(punctuate, kill_9_duplicates_no_punctuator_send_exactly_once)
{
    if (!mph_test_real_broker()) {
        fprintf(stderr, "punctuate/kill_9_duplicates_no_punctuator_send_exactly_once: skipped: "
                        "needs a real broker (MEPHISTO_TEST_BROKERS)\n");
        return;
    }
    kill_9("exactly_once", true);
}

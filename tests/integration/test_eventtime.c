/*
 * Event time end to end: records derived from an event (group_by's
 * repartition records, forward, emit, send) carry the event's timestamp, so
 * a tumbling window after a group_by counts by when things happened, not
 * when they were processed. The per-window counts are checked against a
 * reference computed here from the timestamps the input was produced with.
 * Also: explicit timestamps (mph_event_send_ts, mph_send_ts) and
 * mph_event_timestamp_type. Under exactly_once only with a real broker.
 */
// ctest-labels: engine;tables
// ctest-timeout: 300
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ck_pr.h>

#include "mephisto.h"
#include "mph_test.h"

#define NPART   4
#define NKEYS   7
#define NWIN    6
#define WSIZE   10000
#define NEVENTS 600

static mph_test_cluster_t *cluster;

static void setup(void)
{
    cluster = mph_test_cluster_new();
}

static void teardown(void)
{
    mph_test_cluster_destroy(cluster);
}

TestSuite(eventtime, .init = setup, .fini = teardown, .timeout = 180);

static void produce_ts(const char *topic, int32_t part, const void *k, size_t kl,
                       const void *v, size_t vl, int64_t ts)
{
    rd_kafka_resp_err_t e;
    while ((e = rd_kafka_producev(cluster->producer, RD_KAFKA_V_TOPIC(topic),
                                  RD_KAFKA_V_PARTITION(part), RD_KAFKA_V_KEY(k, kl),
                                  RD_KAFKA_V_VALUE((void *)v, vl), RD_KAFKA_V_TIMESTAMP(ts),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(cluster->producer, 10);
    cr_assert_eq(e, 0, "produce: %s", rd_kafka_err2str(e));
    rd_kafka_poll(cluster->producer, 0);
}

static mph_app_t *new_app(const char *app_id, const char *dir, const char *guarantee)
{
    const char *kv[] = {"broker", cluster->broker, "app_id", app_id, "workers", "2",
                        "store", "memory", "datadir", dir, "commit_interval_ms", "200",
                        "log_level", "warn", "topic_partitions", "4",
                        "processing_guarantee", guarantee, NULL};
    return mph_test_app_kv(kv);
}

static void wait_committed(const char *group, const char *topic, int64_t want)
{
    int64_t got = -1;
    for (int i = 0; i < 600 && got < want; i++) {
        got = mph_test_committed_sum(cluster, group, topic, NPART);
        if (got < want)
            usleep(100000);
    }
    cr_assert_eq(got, want, "%s committed through the input", topic);
}

/* ------------------------------------------------------------------ */
/* group_by then a tumbling window over event time                    */

struct gb {
    mph_window_t *w;
    int bad_type; /* events whose timestamp type was not CreateTime */
};

/* The new key is the value ("user-<k>"). */
static mph_err_t by_value(mph_event_t *ev, const void **key, size_t *klen, void *opaque)
{
    (void)opaque;
    *key = mph_event_value(ev, klen);
    return MPH_OK;
}

static mph_err_t count_cb(mph_event_t *ev, void *opaque)
{
    struct gb *g = opaque;
    if (mph_event_timestamp_type(ev) != MPH_TIMESTAMP_CREATE_TIME)
        ck_pr_inc_int(&g->bad_type);
    size_t kl;
    const void *k = mph_event_key(ev, &kl);
    return mph_window_incr(ev, g->w, k, kl, 1);
}

static void group_by_window(const char *guarantee)
{
    char app_id[128], input[160], repart[200], dir[256];
    mph_test_unique("evt", app_id, sizeof app_id);
    snprintf(input, sizeof input, "%s-in", app_id);
    snprintf(repart, sizeof repart, "%s-byuser-repartition", app_id);
    cr_assert_not_null(mph_test_tmpdir("evt", dir, sizeof dir));
    mph_test_create_topic(cluster, input, NPART);

    /* Hours ago, aligned on a window: far from now (the window of every
     * derived record on a processing-time clock) and from max_future. */
    int64_t base = (mph_clock_wall_ms() / 3600000 - 2) * 3600000;
    static int64_t ref[NKEYS][NWIN];
    memset(ref, 0, sizeof ref);
    uint64_t rs = 42;
    for (int i = 0; i < NEVENTS; i++) {
        int k = (int)(mph_test_rand(&rs) % NKEYS);
        int64_t t = base + (int64_t)(mph_test_rand(&rs) % (NWIN * WSIZE));
        ref[k][(t - base) / WSIZE]++;
        char kb[32], vb[32];
        snprintf(kb, sizeof kb, "src-%d", i);
        snprintf(vb, sizeof vb, "user-%d", k);
        produce_ts(input, i % NPART, kb, strlen(kb), vb, strlen(vb), t);
    }
    mph_test_flush(cluster);

    mph_app_t *app = new_app(app_id, dir, guarantee);
    char err[512];
    mph_topic_t *in = mph_topic_new(app, input, NULL, err, sizeof err);
    cr_assert_not_null(in, "%s", err);
    mph_topic_t *by_user = mph_group_by(app, "byuser", in, by_value, NULL, err, sizeof err);
    cr_assert_not_null(by_user, "%s", err);
    mph_table_opts_t *o = mph_table_opts_new();
    mph_table_opts_set(o, "value_codec", "i64", NULL, 0);
    mph_table_opts_set(o, "default", "0", NULL, 0);
    mph_table_t *t = mph_table_new(app, "counts", o, err, sizeof err);
    mph_table_opts_destroy(o);
    cr_assert_not_null(t, "%s", err);
    struct gb g = {0};
    g.w = mph_table_tumbling(t, WSIZE, 86400000, err, sizeof err);
    cr_assert_not_null(g.w, "%s", err);
    /* Across the repartition the input partitions interleave: the grace
     * keeps every window open, so the counts are complete. */
    cr_assert_eq(mph_window_grace(g.w, 86400000), MPH_OK);
    cr_assert_not_null(mph_agent_new(app, "count", by_user, count_cb, &g, err, sizeof err), "%s",
                       err);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    wait_committed(app_id, input, NEVENTS);
    wait_committed(app_id, repart, NEVENTS);

    int64_t total = 0;
    for (int k = 0; k < NKEYS; k++) {
        char kb[32];
        snprintf(kb, sizeof kb, "user-%d", k);
        for (int wi = 0; wi < NWIN; wi++) {
            void *v = NULL;
            size_t vl = 0;
            int64_t start = -1, end = -1;
            mph_err_t e = mph_window_lookup(app, g.w, kb, strlen(kb), MPH_WINDOW_AT,
                                            base + (int64_t)wi * WSIZE, &v, &vl, &start, &end,
                                            5000);
            cr_assert_eq(e, MPH_OK, "lookup %s window %d: %s", kb, wi, mph_err_str(e));
            cr_assert_eq(vl, 8);
            int64_t n = 0;
            for (int i = 0; i < 8; i++)
                n = (n << 8) | ((unsigned char *)v)[i];
            free(v);
            cr_expect_eq(start, base + (int64_t)wi * WSIZE);
            cr_expect_eq(end, start + WSIZE);
            cr_expect_eq(n, ref[k][wi], "%s window %d (event time): %lld counted, %lld produced",
                         kb, wi, (long long)n, (long long)ref[k][wi]);
            total += n;
        }
    }
    cr_expect_eq(total, NEVENTS, "every event counted in its event-time window");
    cr_expect_eq(ck_pr_load_int(&g.bad_type), 0, "repartition records are CreateTime");
    cr_expect_eq(mph_window_stat(g.w, MPH_WINDOW_STAT_LATE_EVENTS), 0);
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);
    mph_test_rmrf(dir);
}

Test(eventtime, group_by_tumbling_counts_by_event_time)
{
    group_by_window("at_least_once");
}

Test(eventtime, group_by_tumbling_exactly_once)
{
    if (!mph_test_real_broker())
        cr_skip_test("exactly_once needs a real broker (MEPHISTO_TEST_BROKERS)");
    group_by_window("exactly_once");
}

/* ------------------------------------------------------------------ */
/* which timestamp each send carries                                  */

struct sends {
    mph_topic_t *fwd, *sent, *explicit_, *emitted;
};

/* Explicit timestamps are a day before the time the value names. */
#define SHIFT INT64_C(86400000)

static int64_t value_time(const void *v, size_t vl)
{
    char buf[32] = "";
    memcpy(buf, v, vl < 31 ? vl : 31);
    return strtoll(buf, NULL, 10);
}

static mph_err_t sends_cb(mph_event_t *ev, void *opaque)
{
    struct sends *s = opaque;
    size_t kl, vl;
    const void *k = mph_event_key(ev, &kl);
    const void *v = mph_event_value(ev, &vl);
    mph_err_t e = mph_event_forward(ev, s->fwd);
    if (!e)
        e = mph_event_send(ev, s->sent, MPH_PARTITION_ANY, k, kl, v, vl, NULL, 0);
    if (!e)
        e = mph_event_send_ts(ev, s->explicit_, MPH_PARTITION_ANY, k, kl, v, vl, NULL, 0,
                              value_time(v, vl) - SHIFT);
    if (!e)
        e = mph_event_emit(ev, k, kl, v, vl);
    return e;
}

struct tscheck {
    int n, wrong;
    bool explicit_;
    int64_t first_wrong, want;
};

/* Values are the decimal timestamps their source was produced with. */
static void ts_visit(const rd_kafka_message_t *m, void *opaque)
{
    struct tscheck *c = opaque;
    rd_kafka_timestamp_type_t tt;
    int64_t ts = rd_kafka_message_timestamp(m, &tt);
    int64_t want = value_time(m->payload, m->len) - (c->explicit_ ? SHIFT : 0);
    if (ts != want || tt != RD_KAFKA_TIMESTAMP_CREATE_TIME) {
        if (!c->wrong) {
            c->first_wrong = ts;
            c->want = want;
        }
        c->wrong++;
    }
    c->n++;
}

static void check_topic(const char *topic, int n, bool explicit_)
{
    struct tscheck c = {0};
    c.explicit_ = explicit_;
    int got = mph_test_consume_all(cluster, topic, n, 3000, 30000, ts_visit, &c);
    cr_expect_eq(got, n, "%s: %d records", topic, got);
    cr_expect_eq(c.wrong, 0, "%s: %d records with the wrong timestamp (first %lld, wanted %lld)",
                 topic, c.wrong, (long long)c.first_wrong, (long long)c.want);
}

static void app_send_done(mph_err_t err, void *opaque)
{
    if (!err)
        ck_pr_inc_int(opaque);
}

Test(eventtime, sends_carry_the_event_timestamp)
{
    char app_id[128], input[160], names[4][200], dir[256];
    mph_test_unique("evts", app_id, sizeof app_id);
    snprintf(input, sizeof input, "%s-in", app_id);
    const char *suffix[4] = {"fwd", "sent", "explicit", "emitted"};
    for (int i = 0; i < 4; i++) {
        snprintf(names[i], sizeof names[i], "%s-%s", app_id, suffix[i]);
        mph_test_create_topic(cluster, names[i], NPART);
    }
    cr_assert_not_null(mph_test_tmpdir("evts", dir, sizeof dir));
    mph_test_create_topic(cluster, input, NPART);
    int64_t base = mph_clock_wall_ms() - 7 * 86400000LL; /* a week ago */
    int n = 60;
    for (int i = 0; i < n; i++) {
        char kb[32], vb[32];
        int64_t t = base + (int64_t)i * 1000 + (i % 7) * 13;
        snprintf(kb, sizeof kb, "k%d", i);
        snprintf(vb, sizeof vb, "%lld", (long long)t);
        produce_ts(input, i % NPART, kb, strlen(kb), vb, strlen(vb), t);
    }
    mph_test_flush(cluster);

    mph_app_t *app = new_app(app_id, dir, "at_least_once");
    char err[512];
    mph_topic_t *in = mph_topic_new(app, input, NULL, err, sizeof err);
    cr_assert_not_null(in, "%s", err);
    struct sends s;
    mph_topic_t **tp[4] = {&s.fwd, &s.sent, &s.explicit_, &s.emitted};
    for (int i = 0; i < 4; i++) {
        *tp[i] = mph_topic_new(app, names[i], NULL, err, sizeof err);
        cr_assert_not_null(*tp[i], "%s", err);
    }
    mph_agent_t *a = mph_agent_new(app, "sends", in, sends_cb, &s, err, sizeof err);
    cr_assert_not_null(a, "%s", err);
    cr_assert_eq(mph_agent_add_sink(a, s.emitted), MPH_OK);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    wait_committed(app_id, input, n);

    /* mph_send_ts from outside a callback: the explicit time */
    int done = 0;
    char vb[32];
    int64_t t = base - 3 * SHIFT;
    snprintf(vb, sizeof vb, "%lld", (long long)t);
    cr_assert_eq(mph_send_ts(app, s.explicit_, 0, "x", 1, vb, strlen(vb), NULL, 0, app_send_done,
                             &done, t - SHIFT),
                 MPH_OK);
    for (int i = 0; i < 300 && ck_pr_load_int(&done) < 1; i++)
        usleep(20000);
    cr_assert_eq(ck_pr_load_int(&done), 1);
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);

    check_topic(names[0], n, false);
    check_topic(names[1], n, false);
    check_topic(names[3], n, false);
    check_topic(names[2], n + 1, true);
    mph_test_rmrf(dir);
}

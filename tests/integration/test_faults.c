/*
 * Protocol faults: reliability scenario 11 (docs/reliability.md), run by
 * tests/reliability/run and by ctest.
 *
 * librdkafka's mock cluster answers requests with the errors a test pushes
 * on its per-broker error stack. While an app forwards every record of its
 * input and counts each key in a table (so produce errors hit both the
 * output and the changelog), each test injects one family of errors:
 * produce, offset commit, fetch, group membership, a broker that goes away
 * (briefly, and for longer than the session timeout), and a permanent
 * produce error. Every injected error must be consumed (the
 * stack drains), then either retried to success (every input committed,
 * every committed input in the output, the table equal to the fold of the
 * input, over-counted at most by re-processed records) or surfaced (the app
 * stops with the error, as mph_app_wait() reports it, and commits nothing
 * past a record whose output was not written).
 *
 * Always on the mock cluster, whatever MEPHISTO_TEST_BROKERS says: error
 * injection exists only there. Each test prints one "faults:" line with
 * what it injected and what happened; the reliability suite shows them.
 *
 * Known engine bugs are marked with KNOWN_BUG_* below: the test still runs
 * and checks the right behaviour; while the engine shows the known wrong
 * behaviour it prints "XFAIL" and passes, and once the engine behaves it
 * fails with "XPASS" so that the marker is removed with the fix.
 */
// ctest-timeout: 300
// ctest-labels: engine;reliability
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ck_pr.h>

#include "mephisto.h"
#include "mephisto/sensor.h"
#include "mph_test.h"

/* Engine bugs this test found, all fixed now (kept as markers so that a
 * regression names what came back; set one to 1 to expect the old
 * behaviour):
 * NETWORK_EXCEPTION: that answer to a produce request (retriable in Kafka)
 * failed the send permanently and stopped the app. Fixed: only errors no
 * retry can fix stop the app.
 * COMMIT_RETRY: a failed offset commit was not retried while no new record
 * moved the commit point. Fixed: every commit point is sent again each
 * commit interval.
 * SEND_REFUSED: a record the producer refused at once failed the agent and,
 * under on_agent_error=log, its source offset was committed (lost output).
 * Fixed: a refused send stops the app without committing past its source. */
#define KNOWN_BUG_NETWORK_EXCEPTION 0
#define KNOWN_BUG_COMMIT_RETRY      0
#define KNOWN_BUG_SEND_REFUSED      0

/* Kafka protocol API keys (the mock's error stacks are per API). */
enum {
    API_PRODUCE = 0,
    API_FETCH = 1,
    API_OFFSET_COMMIT = 8,
    API_JOIN_GROUP = 11,
    API_HEARTBEAT = 12,
    API_SYNC_GROUP = 14
};

#define BROKER_ID 1
#define N         20000
#define K         100
#define PARTS     4
#define SEQ_MAX   (N / K + 256) /* sequence numbers per key, extra input too */

static mph_test_cluster_t *cluster;
static rd_kafka_mock_cluster_t *mock;

static void setup(void)
{
    unsetenv("MEPHISTO_TEST_BROKERS"); /* injection needs the mock cluster */
    cluster = mph_test_cluster_new();
    mock = mph__kafka_env_mock(cluster->env);
    cr_assert_not_null(mock, "no mock cluster");
}

static void teardown(void)
{
    mph_test_cluster_destroy(cluster);
}

TestSuite(faults, .init = setup, .fini = teardown, .timeout = 240);

/* ---- the app: forward and count, run like `mephisto worker` does ---- */

typedef struct fapp {
    mph_topic_t *out;
    mph_table_t *counts;
} fapp_t;

static int slow_us;       /* per event, to keep the app busy while injecting */
static const char *shutdown_ms = "3000"; /* the app's shutdown_timeout_ms */
static bool count_only;   /* no output: every produce request is changelog */

static mph_err_t forward_count(mph_event_t *ev, void *opaque)
{
    fapp_t *f = opaque;
    if (slow_us)
        usleep((useconds_t)slow_us);
    mph_err_t err = count_only ? MPH_OK : mph_event_forward(ev, f->out);
    if (err)
        return err;
    size_t klen;
    const void *key = mph_event_key(ev, &klen);
    return mph_table_incr(ev, f->counts, key, klen, 1, NULL);
}

typedef struct run {
    char in[128], out[128], app_id[128], changelog[300];
    mph_app_t *app;
    fapp_t f;
    pthread_t waiter;
    int stopped;           /* ck_pr: mph_app_wait() returned */
    mph_err_t wait_err;    /* what it returned */
    int64_t max_committed; /* the largest committed sum seen while waiting */
    int backwards;         /* samples below that maximum */
} run_t;

/* mph_app_wait() on a thread of its own, as the CLI's main thread does: it
 * returns when the app stops on an error, or after mph_app_request_stop. */
static void *waiter(void *arg)
{
    run_t *r = arg;
    r->wait_err = mph_app_wait(r->app);
    ck_pr_store_int(&r->stopped, 1);
    return NULL;
}

static bool running(run_t *r)
{
    return !ck_pr_load_int(&r->stopped);
}

static void run_start(run_t *r)
{
    char err[512];
    mph_test_unique("flt-in", r->in, sizeof r->in);
    mph_test_unique("flt-out", r->out, sizeof r->out);
    mph_test_unique("flt-app", r->app_id, sizeof r->app_id);
    mph_test_create_topic(cluster, r->in, PARTS);
    mph_test_create_topic(cluster, r->out, PARTS);
    cr_assert_eq(mph_test_produce_seq(cluster, r->in, N, K, 0), N);

    mph_conf_t *conf = mph_conf_new();
    const char *settings[][2] = {{"broker", cluster->broker},
                                 {"app_id", r->app_id},
                                 {"workers", "2"},
                                 {"commit_interval_ms", "200"},
                                 {"web_enabled", "false"},
                                 {"log_level", "warn"},
                                 {"session_timeout_ms", "6000"},
                                 {"shutdown_timeout_ms", shutdown_ms},
                                 {"topic_partitions", "4"}};
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++)
        cr_assert_eq(
            mph_conf_set(conf, settings[i][0], settings[i][1], err, sizeof err),
            MPH_OK, "%s", err);
    r->app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(r->app, "%s", err);
    mph_topic_t *tin = mph_topic_new(r->app, r->in, NULL, err, sizeof err);
    r->f.out = mph_topic_new(r->app, r->out, NULL, err, sizeof err);
    cr_assert(tin && r->f.out, "%s", err);
    mph_table_opts_t *o = mph_table_opts_new();
    cr_assert_eq(mph_table_opts_set(o, "value_codec", "i64", err, sizeof err),
                 MPH_OK, "%s", err);
    r->f.counts = mph_table_new(r->app, "counts", o, err, sizeof err);
    mph_table_opts_destroy(o);
    cr_assert_not_null(r->f.counts, "%s", err);
    cr_assert_not_null(mph_agent_new(r->app, "fwd", tin, forward_count, &r->f,
                                     err, sizeof err),
                       "%s", err);
    snprintf(r->changelog, sizeof r->changelog, "%s",
             mph_table_changelog(r->f.counts));
    cr_assert_eq(mph_app_start(r->app, err, sizeof err), MPH_OK, "%s", err);
    cr_assert_eq(pthread_create(&r->waiter, NULL, waiter, r), 0);
}

/* Stops the app (if it still runs) and returns what mph_app_wait said. */
static mph_err_t run_stop(run_t *r)
{
    mph_app_request_stop(r->app);
    pthread_join(r->waiter, NULL);
    return r->wait_err;
}

static int64_t committed(const run_t *r)
{
    int64_t s = mph_test_committed_sum(cluster, r->app_id, r->in, PARTS);
    return s < 0 ? 0 : s;
}

/* Polls every step_us (at most 300 times) until something is committed;
 * returns the committed sum (0: nothing). */
static int64_t first_commit(const run_t *r, useconds_t step_us)
{
    int64_t mid = 0;
    for (int i = 0; i < 300 && mid == 0; i++) {
        mid = committed(r);
        if (!mid)
            usleep(step_us);
    }
    return mid;
}

static size_t stack_left(int16_t api)
{
    size_t cnt = 0;
    cr_assert_eq(
        rd_kafka_mock_broker_error_stack_cnt(mock, BROKER_ID, api, &cnt), 0);
    return cnt;
}

/* Waits until want inputs are committed and the stacks of apis[0..napis)
 * are empty, or the app stopped, or timeout_s passed. */
static int64_t wait_done(run_t *r, int64_t want, const int16_t *apis,
                         size_t napis, int timeout_s)
{
    int64_t s = 0;
    for (int i = 0; i < timeout_s * 5 && running(r); i++) {
        s = committed(r);
        if (s < r->max_committed)
            r->backwards++;
        if (s > r->max_committed)
            r->max_committed = s;
        size_t left = 0;
        for (size_t a = 0; a < napis; a++)
            left += stack_left(apis[a]);
        if (s >= want && left == 0)
            break;
        usleep(200000);
    }
    return committed(r);
}

/* Pushes errs[0..n) on the broker's stack for api, each once. */
static void inject(int16_t api, const rd_kafka_resp_err_t *errs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(rd_kafka_mock_broker_push_request_error_rtts(
                         mock, BROKER_ID, api, 1, errs[i], 0),
                     0);
}

/* A counter of the app's stats document ("totals.send_errors", ...). */
static uint64_t stat(mph_app_t *app, const char *path)
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

/* ---- checking the outcome ---- */

typedef struct seen {
    int64_t offs[PARTS];             /* committed offsets of the input */
    unsigned char below[K][SEQ_MAX]; /* input (key, seq) below them */
    int in_all[K];                   /* every input per key */
    unsigned char out[K][SEQ_MAX];   /* times each (key, seq) was forwarded */
    int last[K][SEQ_MAX];            /* 1 + position of its last copy there */
    int pos;                         /* output records read so far */
    int64_t table[K];                /* the changelog's latest value per key */
    int committed, bad;
} seen_t;

static bool parse_kq(const rd_kafka_message_t *m, int *k, int *q)
{
    char v[64] = {0};
    memcpy(v, m->payload, m->len < 63 ? m->len : 63);
    return sscanf(v, "k%d:%d", k, q) == 2 && *k >= 0 && *k < K && *q >= 0 &&
           *q < SEQ_MAX;
}

static void on_input(const rd_kafka_message_t *m, void *opaque)
{
    seen_t *s = opaque;
    int k, q;
    if (!parse_kq(m, &k, &q)) {
        s->bad++;
        return;
    }
    s->in_all[k]++;
    if (m->partition >= 0 && m->partition < PARTS &&
        m->offset < s->offs[m->partition]) {
        s->below[k][q] = 1;
        s->committed++;
    }
}

static void on_output(const rd_kafka_message_t *m, void *opaque)
{
    seen_t *s = opaque;
    int k, q;
    s->pos++;
    if (!parse_kq(m, &k, &q)) {
        s->bad++;
        return;
    }
    if (s->out[k][q] < 255)
        s->out[k][q]++;
    /* A key's records share a partition, read in offset order. */
    s->last[k][q] = s->pos;
}

static void on_changelog(const rd_kafka_message_t *m, void *opaque)
{
    seen_t *s = opaque;
    char key[32] = {0};
    int k;
    memcpy(key, m->key, m->key_len < 31 ? m->key_len : 31);
    if (sscanf(key, "k%d", &k) != 1 || k < 0 || k >= K || m->len != 8) {
        s->bad++;
        return;
    }
    const unsigned char *b = m->payload;
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u = u << 8 | b[i];
    s->table[k] = (int64_t)u;
}

static void committed_parts(const run_t *r, int64_t *offs)
{
    char err[512];
    mph_conf_t *conf = mph_conf_new();
    mph_conf_set(conf, "broker", cluster->broker, err, sizeof err);
    mph_conf_set(conf, "app_id", r->app_id, err, sizeof err);
    rd_kafka_conf_t *kc = mph__kafka_conf_new(
        cluster->env, conf, MPH__KAFKA_CONSUMER, err, sizeof err);
    rd_kafka_t *rk = mph__kafka_new(kc, MPH__KAFKA_CONSUMER, err, sizeof err);
    cr_assert_not_null(rk, "%s", err);
    rd_kafka_topic_partition_list_t *tp =
        rd_kafka_topic_partition_list_new(PARTS);
    for (int p = 0; p < PARTS; p++)
        rd_kafka_topic_partition_list_add(tp, r->in, p);
    cr_assert_eq(rd_kafka_committed(rk, tp, 10000), 0);
    for (int p = 0; p < PARTS; p++)
        offs[p] = tp->elems[p].offset < 0 ? 0 : tp->elems[p].offset;
    rd_kafka_topic_partition_list_destroy(tp);
    rd_kafka_destroy(rk);
    mph_conf_destroy(conf);
}

typedef struct outcome {
    int committed_inputs; /* input records below the committed offsets */
    int missing;          /* of those, not in the output */
    int dups;             /* output records beyond the first of each */
    int table_under;      /* keys counted below their committed inputs */
    int table_over;       /* counts above the number of inputs, summed */
    int disordered;       /* (key, seq) whose last copy lands after a later seq's */
    int bad;
} outcome_t;

/* Reads the input (split at the committed offsets), the output and the
 * changelog of a stopped app and compares them. */
static outcome_t check(const run_t *r)
{
    outcome_t o = {0};
    seen_t *s = calloc(1, sizeof *s);
    committed_parts(r, s->offs);
    mph_test_consume_all(cluster, r->in, -1, 1000, 60000, on_input, s);
    mph_test_consume_all(cluster, r->out, -1, 1000, 60000, on_output, s);
    mph_test_consume_all(cluster, r->changelog, -1, 1000, 60000, on_changelog,
                         s);
    o.committed_inputs = s->committed;
    for (int k = 0; k < K; k++) {
        int below_k = 0, newest = 0;
        for (int q = 0; q < SEQ_MAX; q++) {
            /* Per-key order: on a compacted output the last copy of each
             * key wins, so seq q's last copy must land before q+1's. */
            if (s->last[k][q] && s->last[k][q] < newest)
                o.disordered++;
            if (s->last[k][q] > newest)
                newest = s->last[k][q];
            below_k += s->below[k][q];
            if (s->below[k][q] && !s->out[k][q])
                o.missing++;
            if (s->out[k][q] > 1)
                o.dups += s->out[k][q] - 1;
        }
        if (s->table[k] < below_k)
            o.table_under++;
        if (s->table[k] > s->in_all[k])
            o.table_over += (int)(s->table[k] - s->in_all[k]);
    }
    o.bad = s->bad;
    free(s);
    return o;
}

static void say(const char *name, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "faults: %s: %s\n", name, buf);
}

typedef struct result {
    size_t injected, left;
    int64_t committed, max_committed;
    int backwards;
    bool running;
    mph_err_t stop;
    uint64_t send_errors, send_retries, commit_errors, commit_repairs, rebalances;
    outcome_t o;
} result_t;

/* Runs the app with errs injected on api (before start when early, else
 * once it runs) until every input is committed and every error consumed,
 * then stops it and reads what it left. */
static result_t run_with(const char *name, int16_t api,
                         const rd_kafka_resp_err_t *errs, size_t n, bool early,
                         int timeout_s)
{
    run_t r = {0};
    result_t res = {.injected = n};
    if (early)
        inject(api, errs, n);
    run_start(&r);
    if (!early)
        inject(api, errs, n);
    res.committed = wait_done(&r, N, &api, 1, timeout_s);
    res.max_committed = r.max_committed;
    res.backwards = r.backwards;
    res.left = stack_left(api);
    res.running = running(&r);
    res.send_errors = stat(r.app, "totals.send_errors");
    res.send_retries = stat(r.app, "totals.send_retries");
    res.commit_errors = stat(r.app, "commits.commit_errors");
    res.commit_repairs = stat(r.app, "commits.commit_repairs");
    res.rebalances = stat(r.app, "commits.rebalances");
    res.stop = run_stop(&r);
    res.o = check(&r);
    mph_app_destroy(r.app);
    say(name,
        "%zu injected, %zu not consumed; committed %lld/%d (most seen %lld, "
        "%d samples below it); app %s (%s); "
        "send errors %llu, engine re-sends %llu, commit errors %llu, "
        "commits repaired %llu, rebalances %llu; %d committed inputs missing from the output, %d "
        "duplicates, %d out of key order; table: %d keys under, +%d over",
        n, res.left, (long long)res.committed, N, (long long)res.max_committed,
        res.backwards, res.running ? "ran throughout" : "stopped itself",
        mph_err_str(res.stop), (unsigned long long)res.send_errors,
        (unsigned long long)res.send_retries,
        (unsigned long long)res.commit_errors,
        (unsigned long long)res.commit_repairs, (unsigned long long)res.rebalances, res.o.missing, res.o.dups,
        res.o.disordered, res.o.table_under, res.o.table_over);
    return res;
}

static bool retried_ok(const result_t *r)
{
    return r->left == 0 && r->running && r->stop == MPH_OK &&
           r->committed == N && r->o.committed_inputs == N &&
           r->o.missing == 0 && r->o.disordered == 0 && r->o.table_under == 0 &&
           r->o.table_over <= r->o.dups && r->o.bad == 0;
}

static void expect_retried(const char *name, const result_t *r)
{
    cr_expect_eq(r->left, 0, "%s: %zu injected errors never reached", name,
                 r->left);
    cr_expect(r->running, "%s: the app stopped on a retriable error (%s)", name,
              mph_err_str(r->stop));
    cr_expect_eq(r->stop, MPH_OK, "%s", name);
    cr_expect_eq(r->committed, N, "%s: committed %lld of %d", name,
                 (long long)r->committed, N);
    cr_expect_eq(r->o.missing, 0, "%s: committed inputs missing", name);
    cr_expect_eq(r->o.disordered, 0,
                 "%s: %d records of a key landed after a later one of that key",
                 name, r->o.disordered);
    cr_expect_eq(r->o.table_under, 0, "%s: table below the input", name);
    cr_expect_leq(r->o.table_over, r->o.dups,
                  "%s: table over-counts beyond the re-processed records",
                  name);
    cr_expect_eq(r->o.bad, 0, "%s", name);
}

/* For a test of a known bug: true (after printing XFAIL) when the run shows
 * exactly the known wrong behaviour. A run without the bug fails the test
 * (XPASS: remove the marker with the fix), except for an intermittent bug,
 * whose absence from one run proves nothing: that is printed and passes. */
static bool xfail(const char *name, int known, bool ok, bool intermittent,
                  bool known_wrong, const char *what)
{
    if (known && !ok && known_wrong) {
        fprintf(stderr, "faults: %s: XFAIL known engine bug: %s\n", name, what);
        return true;
    }
    if (known && ok && intermittent) {
        fprintf(stderr,
                "faults: %s: the known intermittent bug did not show "
                "this time\n",
                name);
        return true;
    }
    cr_expect(
        !known || !ok,
        "%s: XPASS: the known bug is fixed; set its KNOWN_BUG_ marker to 0",
        name);
    return false;
}

Test(faults, produce_errors_are_retried)
{
    const rd_kafka_resp_err_t errs[] = {
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR};
    result_t r = run_with("produce", API_PRODUCE, errs,
                          sizeof errs / sizeof errs[0], false, 15);
    expect_retried("produce", &r);
}

Test(faults, produce_network_exception_is_retried)
{
    /* NETWORK_EXCEPTION: "the server disconnected before a response was
     * received", retriable in Kafka's protocol. */
    /* librdkafka 2.0.2 gives such a batch up (it knows no retry for it)
     * and sends the later records of its partition on: the engine's
     * re-send must not land after them (per-key order, checked by
     * expect_retried). */
    const rd_kafka_resp_err_t errs[] = {RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION,
                                        RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION,
                                        RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION,
                                        RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION};
    result_t r = run_with("produce NETWORK_EXCEPTION", API_PRODUCE, errs,
                          sizeof errs / sizeof errs[0], false, 15);
    if (xfail("produce NETWORK_EXCEPTION", KNOWN_BUG_NETWORK_EXCEPTION,
              retried_ok(&r), false,
              r.left == 0 && !r.running && r.o.missing == 0,
              "the send failed permanently and the app stopped (no loss)"))
        return;
    expect_retried("produce NETWORK_EXCEPTION", &r);
}

Test(faults, commit_errors_are_retried)
{
    /* Injected as the app starts: the commits of the first interval, which
     * cover most of the input, fail; they must be retried although no new
     * record comes to move the commit points again. librdkafka defers a
     * commit refused with NOT_COORDINATOR and sends it once the coordinator
     * is back, after newer ones: the broker then holds older offsets, and
     * nothing moves them unless the engine commits those partitions again
     * (coordinator.c, commit_repairs; about one run in four stalled at
     * 13–18k of 20,000 without it). */
    const rd_kafka_resp_err_t errs[] = {
        RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
        RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
        RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
        RD_KAFKA_RESP_ERR_NOT_COORDINATOR};
    result_t r = run_with("offset commit", API_OFFSET_COMMIT, errs,
                          sizeof errs / sizeof errs[0], false, 10);
    /* The known bug shows in most runs, not all (it needs a commit to fail
     * with "Waiting for coordinator" when no later commit follows). */
    if (xfail("offset commit", KNOWN_BUG_COMMIT_RETRY, retried_ok(&r), true,
              r.left == 0 && r.running && r.stop == MPH_OK && r.committed < N &&
                  r.o.committed_inputs == N && r.o.missing == 0,
              "failed commits stayed uncommitted for 10 s while the app "
              "idled; the graceful stop committed them"))
        return;
    expect_retried("offset commit", &r);
}

Test(faults, fetch_errors_are_retried)
{
    const rd_kafka_resp_err_t errs[] = {
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
        RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
        RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR,
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION};
    result_t r = run_with("fetch", API_FETCH, errs,
                          sizeof errs / sizeof errs[0], false, 15);
    expect_retried("fetch", &r);
}

Test(faults, heartbeat_errors_rebalance_without_loss)
{
    const rd_kafka_resp_err_t errs[] = {
        RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
        RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
        RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS};
    result_t r = run_with("heartbeat", API_HEARTBEAT, errs,
                          sizeof errs / sizeof errs[0], false, 15);
    expect_retried("heartbeat", &r);
}

Test(faults, join_and_sync_errors_are_retried)
{
    /* Pushed before start: they hit the first join and sync. */
    const rd_kafka_resp_err_t sync[] = {
        RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
        RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE};
    inject(API_SYNC_GROUP, sync, 2);
    const rd_kafka_resp_err_t join[] = {
        RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
        RD_KAFKA_RESP_ERR_NOT_COORDINATOR};
    result_t r = run_with("join/sync", API_JOIN_GROUP, join, 2, true, 60);
    cr_expect_eq(stack_left(API_SYNC_GROUP), 0, "sync errors never reached");
    expect_retried("join/sync", &r);
}

Test(faults, broker_down_and_back)
{
    run_t r = {0};
    run_start(&r);
    int64_t mid = first_commit(&r, 100000);
    cr_assert_gt(mid, 0, "nothing committed before the outage");
    cr_assert_eq(rd_kafka_mock_broker_set_down(mock, BROKER_ID), 0);
    usleep(3 * 1000 * 1000);
    bool running_down = running(&r);
    cr_assert_eq(rd_kafka_mock_broker_set_up(mock, BROKER_ID), 0);
    int64_t got = wait_done(&r, N, NULL, 0, 30);
    bool run_after = running(&r);
    mph_err_t stop = run_stop(&r);
    outcome_t o = check(&r);
    mph_app_destroy(r.app);
    say("broker down 3 s",
        "committed %lld before, %lld/%d after; app %s during the outage, %s "
        "after (%s); %d committed inputs missing, %d duplicates; table: %d "
        "keys under, +%d over",
        (long long)mid, (long long)got, N, running_down ? "running" : "stopped",
        run_after ? "running" : "stopped", mph_err_str(stop), o.missing, o.dups,
        o.table_under, o.table_over);
    cr_expect(running_down && run_after);
    cr_expect_eq(stop, MPH_OK);
    cr_expect_eq(got, N);
    cr_expect_eq(o.missing, 0);
    cr_expect_eq(o.table_under, 0);
    cr_expect_leq(o.table_over, o.dups);
}

/* What a run with one permanent produce error left. */
typedef struct permanent {
    size_t left;         /* injected errors not consumed */
    bool stopped_itself; /* the app stopped before run_stop */
    double stop_s;       /* from the injection until mph_app_wait returned */
    uint64_t send_errors;
    mph_err_t stop; /* what mph_app_wait said */
    outcome_t o;
} permanent_t;

/* Runs the app (only counting when only_count), injects one
 * TOPIC_AUTHORIZATION_FAILED answer to a produce request once something
 * was committed, waits up to 30 s for the app to stop, and reads what it
 * left. */
static permanent_t run_permanent(bool only_count)
{
    run_t r = {0};
    permanent_t p;
    slow_us = 300; /* about 3 s for the input: injected mid-stream */
    count_only = only_count;
    /* Long enough that a stop waiting for the failed record's
     * acknowledgement (which never comes) shows. */
    shutdown_ms = "20000";
    run_start(&r);
    shutdown_ms = "3000";
    int64_t mid = first_commit(&r, 20000);
    cr_assert_gt(mid, 0);
    const rd_kafka_resp_err_t errs[] = {
        RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED};
    int64_t t0 = mph_clock_mono_ns();
    inject(API_PRODUCE, errs, 1);
    for (int i = 0; i < 600 && running(&r); i++)
        usleep(50000);
    p.stop_s = (double)(mph_clock_mono_ns() - t0) / 1e9;
    p.left = stack_left(API_PRODUCE);
    p.stopped_itself = !running(&r);
    p.send_errors = stat(r.app, "totals.send_errors");
    p.stop = run_stop(&r);
    slow_us = 0;
    count_only = false;
    p.o = check(&r);
    mph_app_destroy(r.app);
    return p;
}

Test(faults, permanent_produce_error_is_surfaced_without_loss)
{
    /* A non-retriable answer to a produce request: its records cannot be
     * written. The engine must stop the app with the error and never
     * commit past a source record whose output failed. */
    permanent_t p = run_permanent(false);
    say("permanent produce error",
        "TOPIC_AUTHORIZATION_FAILED injected once, %zu not consumed; app %s "
        "after %.1f s with '%s', send errors %llu; %d inputs committed, %d of "
        "them missing from the output",
        p.left, p.stopped_itself ? "stopped itself" : "did NOT stop", p.stop_s,
        mph_err_str(p.stop), (unsigned long long)p.send_errors,
        p.o.committed_inputs, p.o.missing);
    cr_expect_eq(p.left, 0);
    cr_expect(p.stopped_itself, "a permanent send error must stop the app");
    cr_expect_neq(p.stop, MPH_OK, "mph_app_wait reports the error");
    /* The failed record is never acknowledged: the stop must not wait for
     * it until shutdown_timeout_ms (20 s here) runs out. */
    cr_expect_lt(p.stop_s, 10.0, "the stop took %.1f s: it waited for a record that failed",
                 p.stop_s);
    if (xfail("permanent produce error", KNOWN_BUG_SEND_REFUSED,
              p.o.missing == 0, true, p.o.missing > 0 && p.stopped_itself,
              "inputs committed without their output (records the producer "
              "refused, counted as processed under on_agent_error=log)"))
        return;
    cr_expect_eq(p.o.missing, 0, "committed past an output that failed");
}

Test(faults, permanent_changelog_error_is_surfaced_without_loss)
{
    /* The same on the changelog alone (the app only counts): a changelog
     * record the broker refuses for good used to fail just its flush, so
     * the app ran on, writing the values again at every commit (seen when
     * the error of the test above hit a request of changelog records only).
     * It must stop with the error, and what it committed must be in the
     * table's changelog. */
    permanent_t p = run_permanent(true);
    say("permanent changelog error",
        "TOPIC_AUTHORIZATION_FAILED injected once, %zu not consumed; app %s "
        "with '%s', send errors %llu; %d inputs committed, table: %d keys "
        "under, +%d over",
        p.left, p.stopped_itself ? "stopped itself" : "did NOT stop",
        mph_err_str(p.stop), (unsigned long long)p.send_errors,
        p.o.committed_inputs, p.o.table_under, p.o.table_over);
    cr_expect_eq(p.left, 0);
    cr_expect(p.stopped_itself, "a permanent changelog error must stop the app");
    cr_expect_neq(p.stop, MPH_OK, "mph_app_wait reports the error");
    cr_expect_eq(p.o.table_under, 0, "committed inputs missing from the table");
}

/* Changelog records written (CreateTime, ms) inside [from, to). */
typedef struct window_count {
    int64_t from, to;
    int inside, total;
} window_count_t;

static void on_changelog_time(const rd_kafka_message_t *m, void *opaque)
{
    window_count_t *w = opaque;
    int64_t ts = rd_kafka_message_timestamp(m, NULL);
    w->total++;
    if (ts >= w->from && ts < w->to)
        w->inside++;
}

static int64_t wall_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

Test(faults, lost_assignment_never_writes_its_unsent_changelog, .timeout = 240)
{
    /* Reliability scenario 5's bug, on one member: the broker goes away
     * while the workers still process what they fetched, so their commit
     * flushes queue changelog records that cannot be sent; the session
     * times out and the assignment is lost. Those records must never land:
     * another member (or this one, after rejoining) rebuilds the shards
     * from the changelog, and a record arriving after that rebuild would
     * put an older count on top of the new owner's. Every changelog record
     * created while the broker was down must therefore be missing from
     * the changelog, and the table must still equal the input's fold. */
    run_t r = {0};
    slow_us = 1000; /* about 10 s of processing: it runs through the outage */
    run_start(&r);
    int64_t mid = first_commit(&r, 50000);
    cr_assert_gt(mid, 0, "nothing committed before the outage");
    window_count_t wc = {.from = wall_ms() + 200};
    cr_assert_eq(rd_kafka_mock_broker_set_down(mock, BROKER_ID), 0);
    uint64_t in_down = stat(r.app, "totals.events_in");
    usleep(10 * 1000 * 1000); /* session timeout 6 s: the assignment is lost */
    wc.to = wall_ms();
    /* Events processed while the broker was down dirtied the table, so the
     * commits of that time produced changelog records that could not be
     * sent: the records the check below must not find. */
    uint64_t in_outage = stat(r.app, "totals.events_in") - in_down;
    bool running_down = running(&r);
    cr_assert_eq(rd_kafka_mock_broker_set_up(mock, BROKER_ID), 0);
    slow_us = 0;
    int64_t got = wait_done(&r, N, NULL, 0, 90);
    mph_err_t stop = run_stop(&r);
    outcome_t o = check(&r);
    mph_test_consume_all(cluster, r.changelog, -1, 1000, 60000,
                         on_changelog_time, &wc);
    mph_app_destroy(r.app);
    say("assignment lost in an outage",
        "committed %lld before, %lld/%d after; app %s during the outage, "
        "%llu events processed then; %d of %d changelog records created "
        "during the outage landed; %d committed inputs missing, %d "
        "duplicates; table: %d keys under, +%d over",
        (long long)mid, (long long)got, N, running_down ? "running" : "stopped",
        (unsigned long long)in_outage, wc.inside, wc.total, o.missing,
        o.dups, o.table_under, o.table_over);
    cr_expect(running_down);
    cr_expect_gt(in_outage, 0, "nothing processed during the outage: the "
                               "test would prove nothing");
    cr_expect_eq(stop, MPH_OK);
    cr_expect_eq(got, N);
    cr_expect_gt(wc.total, 0);
    cr_expect_eq(wc.inside, 0,
                 "%d changelog records of a lost assignment landed after it "
                 "was lost",
                 wc.inside);
    cr_expect_eq(o.missing, 0);
    cr_expect_eq(o.table_under, 0);
    cr_expect_leq(o.table_over, o.dups);
}

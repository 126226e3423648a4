/*
 * Records that can never be written (reliability scenario 13, the poison
 * pill): an agent's output just under and just over each size limit, and a
 * produce request the broker refuses as too large. Under every
 * on_send_error policy no single record may stop the app for good:
 * dead_letter sends the source record (or, refused later by the broker,
 * the refused record) to <app_id>-dead-letter with headers, skip counts it,
 * fail stops without committing past it.
 *
 * The limits: the producer's message.max.bytes follows the largest
 * max.message.bytes of the app's topics (the broker default 1,048,588 when
 * a topic has no override, and on the mock cluster, which has no topic
 * configs), minus the record batch framing (61 bytes); librdkafka refuses a
 * record whose key + value + its framing allowance (36 bytes) exceed it. So
 * with a 2-byte key and no headers the largest value that passes is
 * 1,048,588 - 61 - 36 - 2 = 1,048,489 bytes (the project's own broker sets
 * message.max.bytes=10485760: read from the output topic). On a real broker a topic with
 * max.message.bytes=200000 adds the broker's own limit (the record passes
 * the producer and the broker refuses it in the delivery report).
 */
// ctest-timeout: 400
// ctest-labels: engine;reliability
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ck_pr.h>

#include "mephisto.h"
#include "mph_test.h"

#define SMALL_MAX   200000
#define ISSUE_SIZE  1020001 /* the record of issue #15, item 9 */

static mph_test_cluster_t *cluster;
static rd_kafka_t *big; /* input producer for records above librdkafka's 1 MB default */
static char *filler;
static int VALUE_MAX; /* the largest value the producer takes (key "k1") */

/* The output topic's max.message.bytes as the broker reports it (the
 * broker default on the mock cluster). */
static void read_limit(const char *topic)
{
    int64_t max = 0;
    char err[256];
    mph__kafka_topic_max_bytes(cluster->env, cluster->producer, &topic, 1, 10000, &max, err,
                               sizeof err);
    VALUE_MAX = (int)(max - 61 - 36 - 2);
    free(filler);
    filler = malloc((size_t)VALUE_MAX + 1000);
    cr_assert_not_null(filler);
    memset(filler, 'x', (size_t)VALUE_MAX + 1000);
}

static void setup(void)
{
    cluster = mph_test_cluster_new();
    char err[512];
    mph_conf_t *conf = mph_conf_new();
    mph_conf_set(conf, "broker", cluster->broker, err, sizeof err);
    rd_kafka_conf_t *kc =
        mph__kafka_conf_new(cluster->env, conf, MPH__KAFKA_PRODUCER, err, sizeof err);
    cr_assert_not_null(kc, "%s", err);
    cr_assert_eq(mph__kafka_conf_set(kc, "message.max.bytes", "20000000", err, sizeof err),
                 MPH_OK, "%s", err);
    big = mph__kafka_new(kc, MPH__KAFKA_PRODUCER, err, sizeof err);
    cr_assert_not_null(big, "%s", err);
    mph_conf_destroy(conf);
}

static void teardown(void)
{
    rd_kafka_destroy(big);
    mph_test_cluster_destroy(cluster);
    free(filler);
}

TestSuite(send_errors, .init = setup, .fini = teardown, .timeout = 300);

/* ---- the app: "grow:<n>" sends n bytes to out, "small:<n>" to small,
 * anything else is forwarded to out ---- */

typedef struct run {
    char in[128], out[128], small[128], app_id[128], dl[300];
    mph_app_t *app;
    mph_topic_t *tout, *tsmall;
    pthread_t waiter;
    int stopped;
    mph_err_t wait_err;
} run_t;

static mph_err_t grow(mph_event_t *ev, void *opaque)
{
    run_t *r = opaque;
    size_t vl, kl;
    const char *v = mph_event_value(ev, &vl);
    const void *k = mph_event_key(ev, &kl);
    char head[32] = {0};
    memcpy(head, v, vl < 31 ? vl : 31);
    size_t n;
    if (sscanf(head, "grow:%zu", &n) == 1)
        return mph_event_send(ev, r->tout, MPH_PARTITION_ANY, k, kl, filler, n, NULL, 0);
    if (sscanf(head, "small:%zu", &n) == 1 && r->tsmall)
        return mph_event_send(ev, r->tsmall, MPH_PARTITION_ANY, k, kl, filler, n, NULL, 0);
    return mph_event_forward(ev, r->tout);
}

static void *waiter(void *arg)
{
    run_t *r = arg;
    r->wait_err = mph_app_wait(r->app);
    ck_pr_store_int(&r->stopped, 1);
    return NULL;
}

/* Starts the app on r->in (made here unless already named). */
static void start(run_t *r, const char *policy, bool small)
{
    char err[512];
    if (!r->in[0]) {
        mph_test_unique("se-in", r->in, sizeof r->in);
        mph_test_create_topic(cluster, r->in, 1);
    }
    mph_test_unique("se-out", r->out, sizeof r->out);
    mph_test_unique("se-small", r->small, sizeof r->small);
    mph_test_unique("se-app", r->app_id, sizeof r->app_id);
    snprintf(r->dl, sizeof r->dl, "%s-dead-letter", r->app_id);
    /* The app would create it; on the mock cluster (no admin API) a
     * metadata request would create it with 4 partitions first. */
    if (!strcmp(policy, "dead_letter"))
        mph_test_create_topic(cluster, r->dl, 1);
    mph_conf_t *conf = mph_conf_new();
    const char *kv[][2] = {{"broker", cluster->broker},   {"app_id", r->app_id},
                           {"workers", "1"},              {"commit_interval_ms", "200"},
                           {"web_enabled", "false"},      {"log_level", "warn"},
                           {"on_send_error", policy},     {"shutdown_timeout_ms", "3000"},
                           {"topic_partitions", "1"}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        cr_assert_eq(mph_conf_set(conf, kv[i][0], kv[i][1], err, sizeof err), MPH_OK, "%s",
                     err);
    r->app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(r->app, "%s", err);
    mph_topic_t *tin = mph_topic_new(r->app, r->in, NULL, err, sizeof err);
    mph_test_create_topic(cluster, r->out, 1);
    read_limit(r->out);
    mph_topic_opts_t *o = mph_topic_opts_new();
    mph_topic_opts_set(o, "create", "true", NULL, 0);
    r->tout = mph_topic_new(r->app, r->out, NULL, err, sizeof err);
    cr_assert(tin && r->tout, "%s", err);
    if (small) {
        char num[32];
        snprintf(num, sizeof num, "%d", SMALL_MAX);
        cr_assert_eq(mph_topic_opts_set(o, "config.max.message.bytes", num, err, sizeof err),
                     MPH_OK, "%s", err);
        r->tsmall = mph_topic_new(r->app, r->small, o, err, sizeof err);
        cr_assert_not_null(r->tsmall, "%s", err);
    }
    mph_topic_opts_destroy(o);
    cr_assert_not_null(mph_agent_new(r->app, "grow", tin, grow, r, err, sizeof err), "%s", err);
    cr_assert_eq(mph_app_start(r->app, err, sizeof err), MPH_OK, "%s", err);
    cr_assert_eq(pthread_create(&r->waiter, NULL, waiter, r), 0);
}

static bool running(run_t *r)
{
    return !ck_pr_load_int(&r->stopped);
}

static mph_err_t stop(run_t *r)
{
    mph_app_request_stop(r->app);
    pthread_join(r->waiter, NULL);
    return r->wait_err;
}

static void produce_big(const char *topic, const void *val, size_t len)
{
    rd_kafka_resp_err_t e = rd_kafka_producev(
        big, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_KEY("k1", 2),
        RD_KAFKA_V_VALUE((void *)val, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_END);
    cr_assert_eq(e, 0, "produce: %s", rd_kafka_err2str(e));
    cr_assert_eq(rd_kafka_flush(big, 30000), 0);
}

static void produce_str(const char *topic, const char *s)
{
    produce_big(topic, s, strlen(s));
}

/* Waits up to timeout_s for want committed inputs (or the app's stop). */
static int64_t wait_committed(run_t *r, int64_t want, int timeout_s)
{
    int64_t c = 0;
    for (int i = 0; i < timeout_s * 10 && running(r); i++) {
        c = mph_test_committed_sum(cluster, r->app_id, r->in, 1);
        if (c >= want)
            break;
        usleep(100000);
    }
    c = mph_test_committed_sum(cluster, r->app_id, r->in, 1);
    return c < 0 ? 0 : c;
}

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

/* ---- reading what landed ---- */

#define MAXREC 64
typedef struct got {
    int n;
    size_t len[MAXREC];
    char value[MAXREC][48];     /* the first bytes */
    char output[MAXREC][128];   /* mph.output_topic */
    char offset[MAXREC][24];    /* mph.offset */
    char truncated[MAXREC][24]; /* mph.truncated */
    char error[MAXREC][256];    /* mph.error */
} got_t;

static void header(const rd_kafka_message_t *m, const char *name, char *buf, size_t size)
{
    rd_kafka_headers_t *h = NULL;
    const void *v;
    size_t l;
    buf[0] = 0;
    if (rd_kafka_message_headers(m, &h) == 0 && rd_kafka_header_get_last(h, name, &v, &l) == 0) {
        if (l >= size)
            l = size - 1;
        memcpy(buf, v, l);
        buf[l] = 0;
    }
}

static void on_record(const rd_kafka_message_t *m, void *opaque)
{
    got_t *g = opaque;
    if (g->n >= MAXREC)
        return;
    int i = g->n++;
    g->len[i] = m->len;
    memcpy(g->value[i], m->payload, m->len < 47 ? m->len : 47);
    header(m, "mph.output_topic", g->output[i], sizeof g->output[i]);
    header(m, "mph.offset", g->offset[i], sizeof g->offset[i]);
    header(m, "mph.truncated", g->truncated[i], sizeof g->truncated[i]);
    header(m, "mph.error", g->error[i], sizeof g->error[i]);
}

static int find_len(const got_t *g, size_t len)
{
    for (int i = 0; i < g->n; i++)
        if (g->len[i] == len)
            return i;
    return -1;
}

static void read_topic(const char *topic, got_t *g)
{
    memset(g, 0, sizeof *g);
    mph_test_consume_all(cluster, topic, -1, 2000, 60000, on_record, g);
}

/* The inputs: the issue's record, outputs just under and just over the
 * producer's limit and, on a real broker, just under and over the small
 * topic's; then a last plain record. Returns how many. */
static int produce_inputs(run_t *r, bool small)
{
    char s[64];
    produce_big(r->in, filler, ISSUE_SIZE);                      /* offset 0 */
    snprintf(s, sizeof s, "grow:%d", VALUE_MAX);                 /* 1: just under */
    produce_str(r->in, s);
    snprintf(s, sizeof s, "grow:%d", VALUE_MAX + 1);             /* 2: just over */
    produce_str(r->in, s);
    int n = 3;
    if (small) {
        snprintf(s, sizeof s, "small:%d", SMALL_MAX - 61 - 20); /* 3: fits the batch */
        produce_str(r->in, s);
        snprintf(s, sizeof s, "small:%d", SMALL_MAX);            /* 4: the broker refuses */
        produce_str(r->in, s);
        n += 2;
    }
    produce_str(r->in, "end");
    return n + 1;
}

Test(send_errors, limits_just_under_and_over_are_dead_lettered)
{
    bool small = mph_test_real_broker();
    run_t r = {0};
    start(&r, "dead_letter", small);
    int n = produce_inputs(&r, small);
    int64_t c = wait_committed(&r, n, 60);
    bool ran = running(&r);
    uint64_t dl = stat(r.app, "totals.send_dead_lettered");
    uint64_t bound = stat(r.app, "totals.producer_buffer_max_bytes");
    mph_err_t err = stop(&r);
    got_t out, dead;
    read_topic(r.out, &out);
    read_topic(r.dl, &dead);
    fprintf(stderr,
            "send_errors: dead_letter: committed %lld/%d, app %s (%s); out %d records, "
            "dead-letter %d; send_dead_lettered %llu; producer_buffer_max_bytes %llu\n",
            (long long)c, n, ran ? "ran throughout" : "stopped", mph_err_str(err), out.n,
            dead.n, (unsigned long long)dl, (unsigned long long)bound);
    cr_expect(ran, "one unsendable record stopped the app");
    cr_expect_eq(err, MPH_OK);
    cr_expect_eq(c, n, "every input committed");
    cr_expect_geq(find_len(&out, ISSUE_SIZE), 0, "the 1,020,001-byte record was not forwarded");
    cr_expect_geq(find_len(&out, VALUE_MAX), 0, "the record just under the limit is missing");
    cr_expect_lt(find_len(&out, VALUE_MAX + 1), 0);
    cr_expect_geq(find_len(&out, 3), 0, "the last record is missing");
    cr_expect_eq(bound, (uint64_t)64 << 20, "one worker's producer bound in /stats");
    char over[64];
    snprintf(over, sizeof over, "grow:%d", VALUE_MAX + 1);
    int i = find_len(&dead, strlen(over));
    cr_assert_geq(i, 0, "the source of the record just over the limit is not dead-lettered");
    cr_expect_str_eq(dead.value[i], over, "the dead-letter record is its source");
    cr_expect_str_eq(dead.output[i], r.out);
    cr_expect_str_eq(dead.offset[i], "2");
    cr_expect_neq(strstr(dead.error[i], "message.max.bytes"), NULL, "%s", dead.error[i]);
    cr_expect_eq(dead.truncated[i][0], 0, "not truncated");
    if (small) {
        cr_expect_geq(find_len(&out, 0), -1);
        got_t sm;
        read_topic(r.small, &sm);
        cr_expect_eq(sm.n, 1, "the record that fits the small topic");
        cr_expect_eq(sm.n > 0 ? sm.len[0] : 0, (size_t)(SMALL_MAX - 61 - 20));
        int j = find_len(&dead, 65536);
        cr_assert_geq(j, 0, "the record the broker refused is not dead-lettered");
        cr_expect_str_eq(dead.output[j], r.small);
        cr_expect_str_eq(dead.offset[j], "4");
        char size[24];
        snprintf(size, sizeof size, "%d", SMALL_MAX);
        cr_expect_str_eq(dead.truncated[j], size);
        cr_expect_eq(dead.n, 2);
        cr_expect_eq(dl, 2);
    } else {
        cr_expect_eq(dead.n, 1);
        cr_expect_eq(dl, 1);
    }
    mph_app_destroy(r.app);
}

Test(send_errors, skip_counts_and_goes_on)
{
    bool small = mph_test_real_broker();
    run_t r = {0};
    start(&r, "skip", small);
    int n = produce_inputs(&r, small);
    int64_t c = wait_committed(&r, n, 60);
    bool ran = running(&r);
    uint64_t skipped = stat(r.app, "totals.send_skipped");
    mph_err_t err = stop(&r);
    got_t out;
    read_topic(r.out, &out);
    fprintf(stderr, "send_errors: skip: committed %lld/%d, app %s (%s); out %d; skipped %llu\n",
            (long long)c, n, ran ? "ran throughout" : "stopped", mph_err_str(err), out.n,
            (unsigned long long)skipped);
    cr_expect(ran);
    cr_expect_eq(err, MPH_OK);
    cr_expect_eq(c, n);
    cr_expect_geq(find_len(&out, ISSUE_SIZE), 0);
    cr_expect_geq(find_len(&out, VALUE_MAX), 0);
    cr_expect_eq(out.n, 3);
    cr_expect_eq(skipped, small ? 2 : 1);
    mph_app_destroy(r.app);
}

Test(send_errors, fail_stops_without_committing_past)
{
    run_t r = {0};
    start(&r, "fail", false);
    int n = produce_inputs(&r, false);
    int64_t c = wait_committed(&r, n, 30);
    for (int i = 0; i < 100 && running(&r); i++)
        usleep(100000);
    bool ran = running(&r);
    mph_err_t err = stop(&r);
    fprintf(stderr, "send_errors: fail: committed %lld/%d, app %s (%s)\n", (long long)c, n,
            ran ? "ran on" : "stopped itself", mph_err_str(err));
    cr_expect(!ran, "on_send_error=fail must stop the app");
    cr_expect_eq(err, MPH_ERR_RANGE);
    cr_expect_leq(c, 2, "committed past the record that could not be sent");
    mph_app_destroy(r.app);
}

/* The broker (mock: injected) refuses a produce request as too large: its
 * records come back in delivery reports and are dead-lettered, each input
 * exactly once in the output or the dead-letter topic. */
typedef struct seqs {
    unsigned char out[100][64], dead[100][64];
    int dead_headers_ok, bad;
    const char *want_output;
} seqs_t;

static void on_seq(const rd_kafka_message_t *m, void *opaque, bool dead)
{
    seqs_t *s = opaque;
    char v[64] = {0};
    int k, q;
    memcpy(v, m->payload, m->len < 63 ? m->len : 63);
    if (sscanf(v, "k%d:%d", &k, &q) != 2 || k < 0 || k >= 100 || q < 0 || q >= 64) {
        s->bad++;
        return;
    }
    if (dead) {
        char out[128];
        header(m, "mph.output_topic", out, sizeof out);
        s->dead_headers_ok += !strcmp(out, s->want_output);
        s->dead[k][q]++;
    } else {
        s->out[k][q]++;
    }
}
static void on_seq_out(const rd_kafka_message_t *m, void *o) { on_seq(m, o, false); }
static void on_seq_dead(const rd_kafka_message_t *m, void *o) { on_seq(m, o, true); }

Test(send_errors, broker_refusal_is_dead_lettered)
{
    rd_kafka_mock_cluster_t *mock = mph__kafka_env_mock(cluster->env);
    if (!mock) {
        fprintf(stderr, "send_errors: broker refusal: needs the mock cluster (injection)\n");
        return;
    }
    run_t r = {0};
    const int N = 2000;
    mph_test_unique("se-in", r.in, sizeof r.in);
    mph_test_create_topic(cluster, r.in, 1);
    cr_assert_eq(mph_test_produce_seq(cluster, r.in, N, 100, 0), N);
    cr_assert_eq(rd_kafka_mock_broker_push_request_error_rtts(
                     mock, 1, 0 /* Produce */, 1, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, 0),
                 0);
    start(&r, "dead_letter", false);
    int64_t c;
    mph_err_t err;
    bool ran;
    uint64_t dl;
    c = wait_committed(&r, N, 60);
    ran = running(&r);
    dl = stat(r.app, "totals.send_dead_lettered");
    err = stop(&r);
    size_t left = 1;
    rd_kafka_mock_broker_error_stack_cnt(mock, 1, 0, &left);
    seqs_t *s = calloc(1, sizeof *s);
    s->want_output = r.out;
    mph_test_consume_all(cluster, r.out, -1, 2000, 60000, on_seq_out, s);
    mph_test_consume_all(cluster, r.dl, -1, 2000, 60000, on_seq_dead, s);
    int missing = 0, twice = 0, dead = 0;
    for (int k = 0; k < 100; k++)
        for (int q = 0; q < N / 100; q++) {
            int seen = s->out[k][q] + s->dead[k][q];
            missing += seen == 0;
            twice += seen > 1;
            dead += s->dead[k][q];
        }
    fprintf(stderr,
            "send_errors: broker refusal: MSG_SIZE_TOO_LARGE injected once (%zu left); "
            "committed %lld/%d, app %s (%s); %d dead-lettered (%d with mph.output_topic), "
            "counter %llu; %d inputs missing, %d twice\n",
            left, (long long)c, N, ran ? "ran throughout" : "stopped", mph_err_str(err), dead,
            s->dead_headers_ok, (unsigned long long)dl, missing, twice);
    cr_expect_eq(left, 0, "the injected error was not consumed");
    cr_expect(ran, "a refused produce request stopped the app");
    cr_expect_eq(err, MPH_OK);
    cr_expect_eq(c, N);
    cr_expect_gt(dead, 0, "nothing dead-lettered");
    cr_expect_eq(s->dead_headers_ok, dead);
    cr_expect_eq((uint64_t)dead, dl);
    cr_expect_eq(missing, 0);
    cr_expect_eq(twice, 0);
    cr_expect_eq(s->bad, 0);
    free(s);
    mph_app_destroy(r.app);
}

/* producer_buffer_max_bytes bounds a worker's producer while the broker is
 * slow (mock: every response delayed): the worker waits for
 * acknowledgements instead of queueing the whole input, and /stats reports
 * the bound. With the smallest setting, 4 MiB, the message bound is its
 * floor, 10,000 records (one per 512 bytes would be 8,192). */
Test(send_errors, producer_buffer_bounds_the_queue)
{
    rd_kafka_mock_cluster_t *mock = mph__kafka_env_mock(cluster->env);
    if (!mock) {
        fprintf(stderr, "send_errors: producer bound: needs the mock cluster (slow broker)\n");
        return;
    }
    const int N = 40000;
    run_t r = {0};
    mph_test_unique("se-in", r.in, sizeof r.in);
    mph_test_create_topic(cluster, r.in, 1);
    cr_assert_eq(mph_test_produce_seq(cluster, r.in, N, 100, 0), N);
    char err[512];
    mph_test_unique("se-out", r.out, sizeof r.out);
    mph_test_unique("se-app", r.app_id, sizeof r.app_id);
    snprintf(r.dl, sizeof r.dl, "%s-dead-letter", r.app_id);
    mph_test_create_topic(cluster, r.out, 1);
    mph_test_create_topic(cluster, r.dl, 1);
    mph_conf_t *conf = mph_conf_new();
    const char *kv[][2] = {{"broker", cluster->broker},
                           {"app_id", r.app_id},
                           {"workers", "1"},
                           {"commit_interval_ms", "200"},
                           {"web_enabled", "false"},
                           {"log_level", "warn"},
                           {"producer_buffer_max_bytes", "4194304"},
                           {"topic_partitions", "1"}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        cr_assert_eq(mph_conf_set(conf, kv[i][0], kv[i][1], err, sizeof err), MPH_OK, "%s",
                     err);
    r.app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(r.app, "%s", err);
    mph_topic_t *tin = mph_topic_new(r.app, r.in, NULL, err, sizeof err);
    r.tout = mph_topic_new(r.app, r.out, NULL, err, sizeof err);
    cr_assert(tin && r.tout, "%s", err);
    cr_assert_not_null(mph_agent_new(r.app, "grow", tin, grow, &r, err, sizeof err));
    /* Each produce answer takes 100 ms: at most 5 requests in flight. */
    cr_assert_eq(rd_kafka_mock_broker_set_rtt(mock, 1, 100), 0);
    cr_assert_eq(mph_app_start(r.app, err, sizeof err), MPH_OK, "%s", err);
    cr_assert_eq(pthread_create(&r.waiter, NULL, waiter, &r), 0);
    uint64_t most = 0, bound = 0;
    for (int i = 0; i < 600 && running(&r); i++) {
        uint64_t q = stat(r.app, "totals.producer_queued");
        if (q > most)
            most = q;
        bound = stat(r.app, "totals.producer_buffer_max_bytes");
        if (mph_test_committed_sum(cluster, r.app_id, r.in, 1) >= N)
            break;
        usleep(50000);
    }
    rd_kafka_mock_broker_set_rtt(mock, 1, 0);
    int64_t c = mph_test_committed_sum(cluster, r.app_id, r.in, 1);
    bool ran = running(&r);
    mph_err_t e = stop(&r);
    fprintf(stderr,
            "send_errors: producer bound: committed %lld/%d, app %s (%s); most records "
            "queued in the producer %llu (bound 10000); producer_buffer_max_bytes %llu\n",
            (long long)c, N, ran ? "ran throughout" : "stopped", mph_err_str(e),
            (unsigned long long)most, (unsigned long long)bound);
    cr_expect(ran);
    cr_expect_eq(e, MPH_OK);
    cr_expect_eq(c, N);
    cr_expect_eq(bound, 4194304);
    cr_expect_gt(most, 1000, "the broker was not slow enough to fill the producer");
    /* Sampled once per worker loop, after the reports were served. */
    cr_expect_leq(most, 10000, "the producer held more than its bound");
    mph_app_destroy(r.app);
}

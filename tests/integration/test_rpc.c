/*
 * Agent RPC (issue 19): asks answered by the agent of the key's partition,
 * casts, the blocking wrapper, timeouts, late and unknown replies; and, on a
 * real broker, 10,000 asks from this program (linking the library) to three
 * worker processes, one of them killed with SIGKILL mid-run: every ask ends
 * in exactly one reply or timeout, and every reply is the right one.
 *
 * The worker processes are this test program again: a constructor runs
 * the answering app instead of Criterion when MPH_RPC_CHILD_APP is set.
 */
// ctest-timeout: 240
#include <criterion/criterion.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ck_pr.h>

#include "io/kafka.h"
#include "mephisto.h"
#include "mph_test.h"
#include "runtime/app.h"
#include "runtime/monitor.h"
#include "runtime/worker.h"

/* The answer to value v asked with key k on partition p: "k|v|p". */
static mph_err_t answer_cb(mph_event_t *ev, void *opaque)
{
    (void)opaque;
    size_t klen = 0, vlen = 0;
    const char *k = mph_event_key(ev, &klen);
    const char *v = mph_event_value(ev, &vlen);
    if (vlen >= 6 && !memcmp(v, "silent", 6))
        return MPH_OK; /* never answers: the ask times out */
    if (vlen >= 4 && !memcmp(v, "slow", 4))
        usleep(800000); /* answers after the ask timed out: a late reply */
    if (!mph_event_wants_reply(ev)) {
        cr_assert_eq(mph_event_reply(ev, "x", 1), MPH_ERR_NOENT);
        __atomic_add_fetch((int *)opaque, 1, __ATOMIC_SEQ_CST);
        return MPH_OK;
    }
    char out[512];
    int n = snprintf(out, sizeof out, "%.*s|%.*s|%d", (int)klen, k ? k : "",
                     (int)vlen, v ? v : "", (int)mph_event_partition(ev));
    return mph_event_reply(ev, out, (size_t)n);
}

static mph_app_t *answering_app(const char *broker, const char *app_id,
                                const char *topic, bool rpc,
                                mph_agent_t **agent_out, void *opaque)
{
    char err[512];
    mph_conf_t *conf = mph_conf_new();
    const char *set[][2] = {
        {"broker", broker},
        {"app_id", app_id},
        {"workers", "1"},
        {"web_enabled", "false"},
        {"log_level", "warn"},
        {"session_timeout_ms", "6000"},
        {"producer_linger_ms", "0"},
        {"commit_interval_ms", "200"},
        {"rpc_enabled", rpc ? "true" : "false"},
        /* a reply to a missing topic fails after 1 s,
         * not librdkafka's 30 s */
        {"kafka.topic.metadata.propagation.max.ms", "1000"}};
    for (size_t i = 0; i < sizeof set / sizeof set[0]; i++)
        if (mph_conf_set(conf, set[i][0], set[i][1], err, sizeof err) !=
            MPH_OK) {
            fprintf(stderr, "%s\n", err);
            abort();
        }
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    mph_topic_t *t =
        app ? mph_topic_new(app, topic, NULL, err, sizeof err) : NULL;
    mph_agent_t *a =
        t ? mph_agent_new(app, "answer", t, answer_cb, opaque, err, sizeof err)
          : NULL;
    if (!a) {
        fprintf(stderr, "answering app: %s\n", err);
        abort();
    }
    if (agent_out)
        *agent_out = a;
    return app;
}

/* The worker processes: run the answering app until SIGTERM (or SIGKILL). */
__attribute__((constructor)) static void child_main(void)
{
    const char *app_id = getenv("MPH_RPC_CHILD_APP");
    if (!app_id)
        return;
    static int casts;
    mph_app_t *app =
        answering_app(getenv("MPH_RPC_CHILD_BROKER"), app_id,
                      getenv("MPH_RPC_CHILD_TOPIC"), false, NULL, &casts);
    char err[512];
    if (mph_app_run(app, err, sizeof err) != MPH_OK)
        fprintf(stderr, "child: %s\n", err);
    mph_app_destroy(app);
    _exit(0);
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

TestSuite(rpc, .init = setup, .fini = teardown, .timeout = 240);

static void wait_ready(mph_app_t *app)
{
    for (int i = 0; i < 600 && !ck_pr_load_int(&app->ready); i++)
        usleep(50000);
    cr_assert(ck_pr_load_int(&app->ready), "the app never became ready");
}

/* ---- one ask's outcome ---- */
typedef struct outcome {
    int calls; /* __atomic */
    mph_err_t err;
    char reply[128];
    size_t len;
} outcome_t;

static void record_cb(mph_err_t err, const void *value, size_t value_len,
                      void *opaque)
{
    outcome_t *o = opaque;
    o->err = err;
    o->len = value_len < sizeof o->reply ? value_len : sizeof o->reply;
    if (value_len)
        memcpy(o->reply, value, o->len);
    __atomic_add_fetch(&o->calls, 1, __ATOMIC_SEQ_CST);
}

Test(rpc, ask_cast_wait_timeout_late_and_unknown)
{
    char app_id[128], topic[160];
    mph_test_unique("rpc1", app_id, sizeof app_id);
    snprintf(topic, sizeof topic, "%s-in", app_id);
    mph_test_create_topic(cluster, topic, 4);
    int casts = 0;
    mph_agent_t *agent = NULL;
    mph_app_t *app =
        answering_app(cluster->broker, app_id, topic, true, &agent, &casts);
    outcome_t early = {0};
    cr_assert_eq(
        mph_agent_ask(app, agent, "k", 1, "v", 1, 1000, record_cb, &early),
        MPH_ERR_STATE, "asking before start");
    char err[512];
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    wait_ready(app);
    const char *reply_topic = mph_rpc_reply_topic(app);
    cr_assert_not_null(reply_topic);
    cr_assert(!strncmp(reply_topic, app_id, strlen(app_id)) &&
                  strstr(reply_topic, "-reply-") != NULL,
              "%s", reply_topic);

    /* The blocking wrapper: the owner of the key's partition answers. */
    void *reply = NULL;
    size_t len = 0;
    cr_assert_eq(mph_agent_ask_wait(app, agent, "apple", 5, "hello", 5, 20000,
                                    &reply, &len),
                 MPH_OK);
    char want[128];
    snprintf(want, sizeof want, "apple|hello|%d",
             (int)mph__kafka_partition_for("apple", 5, 4));
    cr_assert_eq(len, strlen(want));
    cr_assert(!memcmp(reply, want, len), "%.*s", (int)len, (char *)reply);
    free(reply);

    /* An agent that does not answer: a timeout, counted. */
    outcome_t silent = {0};
    cr_assert_eq(
        mph_agent_ask(app, agent, "k", 1, "silent", 6, 300, record_cb, &silent),
        MPH_OK);
    for (int i = 0;
         i < 200 && !__atomic_load_n(&silent.calls, __ATOMIC_SEQ_CST); i++)
        usleep(50000);
    cr_assert_eq(silent.calls, 1);
    cr_assert_eq(silent.err, MPH_ERR_TIMEOUT);
    cr_assert_eq(mph_rpc_stat(app, "timeouts"), 1);

    /* A cast: processed, no reply wanted. */
    cr_assert_eq(mph_agent_cast(app, agent, "c", 1, "cast", 4), MPH_OK);
    for (int i = 0; i < 200 && !__atomic_load_n(&casts, __ATOMIC_SEQ_CST); i++)
        usleep(50000);
    cr_assert_eq(__atomic_load_n(&casts, __ATOMIC_SEQ_CST), 1);

    /* Replies naming no ask of ours, a malformed id, none at all, and a
     * late one (an id of ours already completed): counted, no callback. */
    rd_kafka_headers_t *h = rd_kafka_headers_new(1);
    rd_kafka_header_add(h, "mph.correlation_id", -1, "00000000deadbeef", 16);
    cr_assert_eq(
        rd_kafka_producev(cluster->producer, RD_KAFKA_V_TOPIC(reply_topic),
                          RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_VALUE("x", 1),
                          RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END),
        0);
    h = rd_kafka_headers_new(1);
    rd_kafka_header_add(h, "mph.correlation_id", -1, "zz", 2);
    cr_assert_eq(
        rd_kafka_producev(cluster->producer, RD_KAFKA_V_TOPIC(reply_topic),
                          RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_VALUE("x", 1),
                          RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END),
        0);
    mph_test_produce(cluster, reply_topic, 0, NULL, 0, "no headers", 10);
    mph_test_flush(cluster);
    for (int i = 0; i < 200 && mph_rpc_stat(app, "unknown") < 3; i++)
        usleep(50000);
    cr_assert_eq(mph_rpc_stat(app, "unknown"), 3);
    cr_assert_eq(mph_rpc_stat(app, "late"), 0);

    /* An answer after the timeout: the callback saw the timeout only. */
    outcome_t slow = {0};
    cr_assert_eq(
        mph_agent_ask(app, agent, "k", 1, "slow", 4, 200, record_cb, &slow),
        MPH_OK);
    for (int i = 0; i < 200 && mph_rpc_stat(app, "late") < 1; i++)
        usleep(50000);
    cr_assert_eq(mph_rpc_stat(app, "late"), 1);
    cr_assert_eq(slow.calls, 1);
    cr_assert_eq(slow.err, MPH_ERR_TIMEOUT);
    cr_assert_eq(mph_rpc_stat(app, "asks"), 3);
    cr_assert_eq(mph_rpc_stat(app, "replies"), 1);
    cr_assert_eq(mph_rpc_stat(app, "timeouts"), 2);
    cr_assert_eq(mph_rpc_stat(app, "pending"), 0);
    /* The same counters in /stats. */
    const char *paths[][2] = {{"rpc.asks", "asks"},       {"rpc.replies", "replies"},
                              {"rpc.timeouts", "timeouts"}, {"rpc.late", "late"},
                              {"rpc.unknown", "unknown"},   {"rpc.errors", "errors"},
                              {"rpc.pending", "pending"}};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        uint64_t v = 99;
        cr_assert(mph_test_stat(app, paths[i][0], &v), "no %s in /stats", paths[i][0]);
        cr_expect_eq(v, mph_rpc_stat(app, paths[i][1]), "%s", paths[i][0]);
    }

    /* Bad arguments fail without a callback. */
    cr_assert_eq(
        mph_agent_ask(app, agent, "k", 1, "v", 1, 0, record_cb, &early),
        MPH_ERR_INVALID);
    cr_assert_eq(mph_agent_ask(app, agent, "k", 1, "v", 1, 100, NULL, NULL),
                 MPH_ERR_INVALID);

    /* Pending asks end with MPH_ERR_STOPPED when the app stops. */
    outcome_t stopped = {0};
    cr_assert_eq(mph_agent_ask(app, agent, "k", 1, "silent", 6, 60000,
                               record_cb, &stopped),
                 MPH_OK);
    mph_app_stop(app);
    cr_assert_eq(stopped.calls, 1);
    cr_assert_eq(stopped.err, MPH_ERR_STOPPED);
    cr_assert_eq(early.calls, 0);
    cr_assert_eq(
        mph_agent_ask(app, agent, "k", 1, "v", 1, 100, record_cb, &early),
        MPH_ERR_STATE);
    mph_app_destroy(app);
}

Test(rpc, ask_needs_rpc_enabled)
{
    char app_id[128], topic[160], err[512];
    mph_test_unique("rpc2", app_id, sizeof app_id);
    snprintf(topic, sizeof topic, "%s-in", app_id);
    mph_test_create_topic(cluster, topic, 1);
    int casts = 0;
    mph_agent_t *agent = NULL;
    mph_app_t *app =
        answering_app(cluster->broker, app_id, topic, false, &agent, &casts);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    outcome_t o = {0};
    cr_assert_eq(mph_agent_ask(app, agent, "k", 1, "v", 1, 1000, record_cb, &o),
                 MPH_ERR_STATE);
    cr_assert_null(mph_rpc_reply_topic(app));
    mph_app_destroy(app);
    cr_assert_eq(o.calls, 0);
}

/* A request naming a reply topic that does not exist (its asker is gone):
 * the reply fails in the producer, is counted and dropped; the answering
 * app goes on answering and committing. */
Test(rpc, reply_to_a_missing_topic_is_dropped_not_fatal)
{
    char app_id[128], topic[160], err[512], gone[200];
    mph_test_unique("rpc4", app_id, sizeof app_id);
    snprintf(topic, sizeof topic, "%s-in", app_id);
    snprintf(gone, sizeof gone, "%s-reply-gone", app_id);
    mph_test_create_topic(cluster, topic, 2);
    int casts = 0;
    mph_agent_t *agent = NULL;
    mph_app_t *app =
        answering_app(cluster->broker, app_id, topic, true, &agent, &casts);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    wait_ready(app);
    rd_kafka_headers_t *h = rd_kafka_headers_new(2);
    rd_kafka_header_add(h, "mph.reply_to", -1, gone, -1);
    rd_kafka_header_add(h, "mph.correlation_id", -1, "0000000100000001", 16);
    cr_assert_eq(rd_kafka_producev(cluster->producer, RD_KAFKA_V_TOPIC(topic),
                                   RD_KAFKA_V_KEY("k", 1),
                                   RD_KAFKA_V_VALUE("q", 1),
                                   RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END),
                 0);
    mph_test_flush(cluster);
    sleep(4); /* the reply's delivery fails meanwhile */
    cr_assert(mph_app_running(app), "the app stopped: %s", app->fatal_msg);
    void *reply = NULL;
    size_t len = 0;
    cr_assert_eq(
        mph_agent_ask_wait(app, agent, "k", 1, "again", 5, 20000, &reply, &len),
        MPH_OK);
    free(reply);
    cr_assert_eq(mph_app_stop(app), MPH_OK, "%s", app->fatal_msg);
    mph_app_destroy(app);
}

/* ---- 10,000 asks, three worker processes, one killed ---- */

static pid_t spawn_child(const char *app_id, const char *topic)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        setenv("MPH_RPC_CHILD_APP", app_id, 1);
        setenv("MPH_RPC_CHILD_TOPIC", topic, 1);
        setenv("MPH_RPC_CHILD_BROKER", cluster->broker, 1);
        execl("/proc/self/exe", "test_rpc_child", (char *)NULL);
        _exit(127);
    }
    return pid;
}

Test(rpc, ten_thousand_asks_three_processes_one_killed)
{
    if (!mph_test_real_broker())
        cr_skip_test("needs MEPHISTO_TEST_BROKERS: the worker processes share "
                     "the broker");
    enum { N = 10000, P = 6, KIDS = 3 };
    char app_id[128], topic[160], err[512];
    mph_test_unique("rpc3", app_id, sizeof app_id);
    snprintf(topic, sizeof topic, "%s-in", app_id);
    mph_test_create_topic(cluster, topic, P);
    pid_t kids[KIDS];
    for (int i = 0; i < KIDS; i++)
        kids[i] = spawn_child(app_id, topic);

    /* This program is a member too (it declares the agent it asks). */
    int casts = 0;
    mph_agent_t *agent = NULL;
    mph_app_t *app =
        answering_app(cluster->broker, app_id, topic, true, &agent, &casts);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    wait_ready(app);
    /* All four members in the group: with 6 partitions the range assignor
     * gives this one at most 2, so each child owns some. */
    for (int i = 0;
         i < 300 && ck_pr_load_64(&app->workers[0]->mon->partitions) > 2; i++)
        usleep(100000);
    cr_assert_leq(ck_pr_load_64(&app->workers[0]->mon->partitions), 2,
                  "the worker processes did not join");
    sleep(1);

    outcome_t *out = calloc(N, sizeof *out);
    char key[32], value[32];
    int64_t t0 = mph_clock_mono_ns();
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "key-%d", i % 997);
        snprintf(value, sizeof value, "v%d", i);
        mph_err_t e;
        while ((e = mph_agent_ask(app, agent, key, strlen(key), value,
                                  strlen(value), 25000, record_cb, &out[i])) ==
               MPH_ERR_FULL)
            usleep(1000);
        cr_assert_eq(e, MPH_OK, "ask %d: %s", i, mph_err_str(e));
        if (i == N / 3) {
            cr_assert_eq(kill(kids[1], SIGKILL), 0);
            waitpid(kids[1], NULL, 0);
            kids[1] = 0;
        }
        /* about 2,000 asks per second */
        int64_t due = t0 + (int64_t)i * 500000;
        int64_t now = mph_clock_mono_ns();
        if (due > now)
            usleep((useconds_t)((due - now) / 1000));
    }
    /* Every ask ends: a reply or a timeout, within its 25 s. */
    int done = 0;
    for (int w = 0; w < 400; w++) {
        done = 0;
        for (int i = 0; i < N; i++)
            done += __atomic_load_n(&out[i].calls, __ATOMIC_SEQ_CST) > 0;
        if (done == N)
            break;
        usleep(100000);
    }
    cr_assert_eq(done, N, "%d asks never ended", N - done);
    sleep(1); /* duplicates of late answers would show now */
    int replies = 0, timeouts = 0;
    for (int i = 0; i < N; i++) {
        cr_assert_eq(out[i].calls, 1, "ask %d completed %d times", i,
                     out[i].calls);
        if (out[i].err == MPH_ERR_TIMEOUT) {
            timeouts++;
            continue;
        }
        cr_assert_eq(out[i].err, MPH_OK, "ask %d: %s", i,
                     mph_err_str(out[i].err));
        snprintf(key, sizeof key, "key-%d", i % 997);
        char want[128];
        int n = snprintf(want, sizeof want, "%s|v%d|%d", key, i,
                         (int)mph__kafka_partition_for(key, strlen(key), P));
        cr_assert(out[i].len == (size_t)n &&
                      !memcmp(out[i].reply, want, (size_t)n),
                  "ask %d: reply %.*s, expected %s", i, (int)out[i].len,
                  out[i].reply, want);
        replies++;
    }
    cr_log_info("rpc: %d replies, %d timeouts, %llu late, %llu unknown",
                replies, timeouts,
                (unsigned long long)mph_rpc_stat(app, "late"),
                (unsigned long long)mph_rpc_stat(app, "unknown"));
    cr_assert_eq((uint64_t)replies, mph_rpc_stat(app, "replies"));
    cr_assert_eq((uint64_t)timeouts, mph_rpc_stat(app, "timeouts"));
    /* The killed member's partitions move after session_timeout_ms (6 s),
     * well within the asks' 25 s: nearly all are answered. */
    cr_assert_geq(replies, N * 9 / 10, "only %d of %d answered", replies, N);
    mph_app_destroy(app);
    for (int i = 0; i < KIDS; i++)
        if (kids[i]) {
            kill(kids[i], SIGTERM);
            waitpid(kids[i], NULL, 0);
        }
    free(out);
}

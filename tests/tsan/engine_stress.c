/*
 * The engine under ThreadSanitizer. Criterion's sandbox cannot start under
 * TSan (Criterion issue #274: "Could not initialize inheritable arena"), so
 * this is a plain program: it drives every cross-thread path of the engine
 * — coordinator ↔ worker hand-over with table shards and recovery, commits,
 * delivery reports, mph_table_lookup and mph_app_stats_json from another
 * thread, a second member joining and leaving, a revocation answered after
 * its deadline while the partitions come straight back — and checks the
 * results.
 * It prints "N passed, N failed" and exits non-zero on a failure; TSan
 * itself aborts on the first race (halt_on_error=1 in tools/test).
 *
 * Broker: MEPHISTO_TEST_BROKERS when set, else an in-process mock cluster.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/kafka.h"
#include "mephisto.h"
#include "mephisto/sensor.h"
#include "runtime/app.h"
#include "runtime/coordinator.h"


#define N 20000
#define KEYS 200

static int passed, failed;
static char broker[512];
static mph__kafka_env_t *env;
static rd_kafka_t *producer;

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                          \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fprintf(stderr, "\n");                                                         \
            ok = false;                                                                    \
        }                                                                                  \
    } while (0)

static void unique(const char *prefix, char *buf, size_t size)
{
    static int n;
    snprintf(buf, size, "%s-%d-%lld-%d", prefix, (int)getpid(),
             (long long)mph_clock_wall_ms(), ++n);
}

static void create(const char *topic, int parts)
{
    char err[512];
    mph__topic_spec_t spec = {topic, parts, 1, NULL};
    if (mph__kafka_create_topics(env, producer, &spec, 1, 30000, err, sizeof err)) {
        fprintf(stderr, "create %s: %s\n", topic, err);
        exit(2);
    }
}

static void produce(const char *topic, int n)
{
    for (int i = 0; i < n; i++) {
        char k[16], v[32];
        int kl = snprintf(k, sizeof k, "k%d", i % KEYS);
        int vl = snprintf(v, sizeof v, "%d", i);
        while (rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(k, kl),
                                 RD_KAFKA_V_VALUE(v, vl), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(producer, 10);
    }
    rd_kafka_flush(producer, 60000);
}

struct state {
    mph_topic_t *out;
    mph_table_t *counts;
};

/* A record keyed "gate" holds its worker inside the callback until the
 * scenario opens the gate. */
static int gate_reached, gate_open;
static long table_errors;

static mph_err_t on_record(mph_event_t *ev, void *opaque)
{
    struct state *st = opaque;
    size_t kl;
    const void *k = mph_event_key(ev, &kl);
    if (kl == 4 && !memcmp(k, "gate", 4)) {
        __atomic_store_n(&gate_reached, 1, __ATOMIC_SEQ_CST);
        for (int i = 0; i < 2400 && !__atomic_load_n(&gate_open, __ATOMIC_SEQ_CST); i++)
            usleep(50000);
        return MPH_OK;
    }
    mph_err_t err = mph_table_incr(ev, st->counts, k, kl, 1, NULL);
    if (err)
        __atomic_add_fetch(&table_errors, 1, __ATOMIC_SEQ_CST);
    return err ? err : mph_event_forward(ev, st->out);
}

static mph_app_t *make_app(const char *app_id, const char *in, const char *out,
                           struct state *st, const char *shutdown_ms)
{
    char err[512];
    mph_conf_t *conf = mph_conf_new();
    const char *kv[] = {"broker", broker, "app_id", app_id, "workers", "2",
                        "commit_interval_ms", "100", "log_level", "warn",
                        "topic_partitions", "4", "web_enabled", "false",
                        "shutdown_timeout_ms", shutdown_ms, NULL};
    for (const char **p = kv; *p; p += 2)
        if (mph_conf_set(conf, p[0], p[1], err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            exit(2);
        }
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    mph_topic_t *tin = mph_topic_new(app, in, NULL, err, sizeof err);
    st->out = mph_topic_new(app, out, NULL, err, sizeof err);
    mph_table_opts_t *o = mph_table_opts_new();
    mph_table_opts_set(o, "value_codec", "i64", NULL, 0);
    st->counts = mph_table_new(app, "counts", o, err, sizeof err);
    mph_table_opts_destroy(o);
    if (!tin || !st->out || !st->counts || !mph_agent_new(app, "count", tin, on_record, st, err, sizeof err)) {
        fprintf(stderr, "declare: %s\n", err);
        exit(2);
    }
    return app;
}

struct reader {
    mph_app_t *app;
    mph_table_t *t;
    volatile int stop;
    long lookups;
};

/* Reads tables and stats from a foreign thread while the workers run. */
static void *reader_main(void *arg)
{
    struct reader *r = arg;
    while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
        char k[16];
        int kl = snprintf(k, sizeof k, "k%ld", r->lookups % KEYS);
        void *v = NULL;
        size_t vl;
        if (mph_table_lookup(r->app, r->t, k, (size_t)kl, &v, &vl, 1000) == MPH_OK)
            free(v);
        char *json = NULL;
        size_t jl;
        if (mph_app_stats_json(r->app, &json, &jl) == MPH_OK)
            free(json);
        r->lookups++;
        usleep(1000);
    }
    return NULL;
}

static int64_t table_total(mph_app_t *app, mph_table_t *t)
{
    int64_t total = 0;
    for (int k = 0; k < KEYS; k++) {
        char key[16];
        int kl = snprintf(key, sizeof key, "k%d", k);
        void *v = NULL;
        size_t vl = 0;
        if (mph_table_lookup(app, t, key, (size_t)kl, &v, &vl, 5000) == MPH_OK && vl == 8) {
            int64_t x = 0;
            for (int i = 0; i < 8; i++)
                x = (x << 8) | ((unsigned char *)v)[i];
            total += x;
        }
        free(v);
    }
    return total;
}

static int64_t committed(const char *group, const char *topic)
{
    char err[256];
    mph_conf_t *conf = mph_conf_new();
    mph_conf_set(conf, "broker", broker, err, sizeof err);
    mph_conf_set(conf, "app_id", group, err, sizeof err);
    rd_kafka_conf_t *kc = mph__kafka_conf_new(env, conf, MPH__KAFKA_CONSUMER, err, sizeof err);
    rd_kafka_t *rk = mph__kafka_new(kc, MPH__KAFKA_CONSUMER, err, sizeof err);
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(4);
    for (int p = 0; p < 4; p++)
        rd_kafka_topic_partition_list_add(tp, topic, p);
    int64_t sum = 0;
    if (rd_kafka_committed(rk, tp, 10000) == 0)
        for (int p = 0; p < 4; p++)
            sum += tp->elems[p].offset > 0 ? tp->elems[p].offset : 0;
    rd_kafka_topic_partition_list_destroy(tp);
    rd_kafka_destroy(rk);
    mph_conf_destroy(conf);
    return sum;
}

static bool wait_committed(const char *group, const char *topic, int64_t want)
{
    for (int i = 0; i < 600; i++) {
        if (committed(group, topic) >= want)
            return true;
        usleep(200000);
    }
    return false;
}

static void scenario_one_member(void)
{
    bool ok = true;
    char app_id[128], in[128], out[128], err[512];
    unique("tsan", app_id, sizeof app_id);
    unique("tsan-in", in, sizeof in);
    unique("tsan-out", out, sizeof out);
    create(in, 4);
    create(out, 4);
    char cl[300];
    snprintf(cl, sizeof cl, "%s-counts-changelog", app_id);
    create(cl, 4);
    produce(in, N);
    struct state st;
    mph_app_t *app = make_app(app_id, in, out, &st, "30000");
    CHECK(mph_app_start(app, err, sizeof err) == MPH_OK, "start: %s", err);
    struct reader r = {app, st.counts, 0, 0};
    pthread_t th;
    pthread_create(&th, NULL, reader_main, &r);
    CHECK(wait_committed(app_id, in, N), "all input committed");
    int64_t total = 0;
    for (int i = 0; i < 60 && (total = table_total(app, st.counts)) < N; i++)
        usleep(500000);
    CHECK(total == N, "table total %lld, want %d", (long long)total, N);
    __atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    CHECK(mph_app_stop(app) == MPH_OK, "stop");
    mph_app_destroy(app);
    ok ? passed++ : failed++;
    printf("%s one member: %ld foreign lookups\n", ok ? "PASS" : "FAIL", r.lookups);
}

static void scenario_two_members(void)
{
    bool ok = true;
    char app_id[128], in[128], out[128], err[512];
    unique("tsan2", app_id, sizeof app_id);
    unique("tsan2-in", in, sizeof in);
    unique("tsan2-out", out, sizeof out);
    create(in, 4);
    create(out, 4);
    char cl[300];
    snprintf(cl, sizeof cl, "%s-counts-changelog", app_id);
    create(cl, 4);
    struct state sa, sb;
    mph_app_t *a = make_app(app_id, in, out, &sa, "30000");
    mph_app_t *b = make_app(app_id, in, out, &sb, "30000");
    CHECK(mph_app_start(a, err, sizeof err) == MPH_OK, "start a: %s", err);
    produce(in, N / 2);
    CHECK(mph_app_start(b, err, sizeof err) == MPH_OK, "start b: %s", err);
    produce(in, N / 2);
    usleep(2000000);
    CHECK(mph_app_stop(a) == MPH_OK, "stop a");
    mph_app_destroy(a);
    CHECK(wait_committed(app_id, in, N), "b finished");
    /* b answers for every shard once the group gave it all partitions. */
    int64_t total = 0;
    for (int i = 0; i < 60 && (total = table_total(b, sb.counts)) < N; i++)
        usleep(500000);
    CHECK(total >= N, "table total %lld, want at least %d", (long long)total, N);
    CHECK(mph_app_stop(b) == MPH_OK, "stop b");
    mph_app_destroy(b);
    ok ? passed++ : failed++;
    printf("%s two members, hand-over with shards\n", ok ? "PASS" : "FAIL");
}

/* A revocation the worker answers after the coordinator's deadline (it is
 * held inside a callback), while the group gives the partitions straight
 * back: the shards come back with the late answer, which the assignment
 * waits for (coordinator.c); the coordinator never touches a worker's
 * shards. */
static void scenario_late_revocation(void)
{
    bool ok = true;
    char app_id[128], in[128], out[128], other[128], err[512];
    unique("tsan3", app_id, sizeof app_id);
    unique("tsan3-in", in, sizeof in);
    unique("tsan3-out", out, sizeof out);
    unique("tsan3-other", other, sizeof other);
    create(in, 4);
    create(out, 4);
    create(other, 1);
    char cl[300];
    snprintf(cl, sizeof cl, "%s-counts-changelog", app_id);
    create(cl, 4);
    struct state st;
    mph_app_t *app = make_app(app_id, in, out, &st, "500");
    CHECK(mph_app_start(app, err, sizeof err) == MPH_OK, "start: %s", err);
    produce(in, N / 2);
    CHECK(wait_committed(app_id, in, N / 2), "first half committed");
    __atomic_store_n(&table_errors, 0, __ATOMIC_SEQ_CST);
    while (rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(in), RD_KAFKA_V_PARTITION(0),
                             RD_KAFKA_V_KEY("gate", 4), RD_KAFKA_V_VALUE("g", 1),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(producer, 10);
    rd_kafka_flush(producer, 60000);
    for (int i = 0; i < 1200 && !__atomic_load_n(&gate_reached, __ATOMIC_SEQ_CST); i++)
        usleep(50000);
    CHECK(__atomic_load_n(&gate_reached, __ATOMIC_SEQ_CST), "a worker reached the gate");

    /* A second member on another topic: this app's partitions are revoked
     * and assigned back to it. */
    mph_conf_t *cconf = mph_conf_new();
    mph_conf_set(cconf, "broker", broker, err, sizeof err);
    mph_conf_set(cconf, "app_id", app_id, err, sizeof err);
    rd_kafka_conf_t *kc = mph__kafka_conf_new(env, cconf, MPH__KAFKA_CONSUMER, err, sizeof err);
    rd_kafka_t *c2 = mph__kafka_new(kc, MPH__KAFKA_CONSUMER, err, sizeof err);
    rd_kafka_poll_set_consumer(c2);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, other, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(c2, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    mph__coord_stats_t cs = {0};
    for (int i = 0; i < 1200 && cs.rebalances < 3; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c2, 100);
        if (m)
            rd_kafka_message_destroy(m);
        mph__coord_stats(app->coord, &cs);
    }
    CHECK(cs.rebalances >= 3, "the group rebalanced (%llu)", (unsigned long long)cs.rebalances);
    usleep(300000);
    __atomic_store_n(&gate_open, 1, __ATOMIC_SEQ_CST);

    produce(in, N / 2);
    CHECK(wait_committed(app_id, in, N + 1), "everything committed");
    int64_t total = 0;
    for (int i = 0; i < 60 && (total = table_total(app, st.counts)) < N; i++)
        usleep(500000);
    CHECK(total >= N, "table total %lld, want at least %d", (long long)total, N);
    CHECK(__atomic_load_n(&table_errors, __ATOMIC_SEQ_CST) == 0, "%ld table calls failed",
          table_errors);
    CHECK(mph_app_stop(app) == MPH_OK, "stop");
    mph_app_destroy(app);
    rd_kafka_destroy(c2);
    mph_conf_destroy(cconf);
    ok ? passed++ : failed++;
    printf("%s late revocation answer, partitions back to the same process\n",
           ok ? "PASS" : "FAIL");
}

int main(void)
{
    char err[512];
    const char *b = getenv("MEPHISTO_TEST_BROKERS");
    mph_conf_t *conf = mph_conf_new();
    if (b && *b)
        snprintf(broker, sizeof broker, "%s%s", strstr(b, "://") ? "" : "kafka://", b);
    else
        snprintf(broker, sizeof broker, "mock://1");
    mph_conf_set(conf, "broker", broker, err, sizeof err);
    env = mph__kafka_env_new(conf, err, sizeof err);
    if (!env) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    snprintf(broker, sizeof broker, "kafka://%s", mph__kafka_env_bootstrap(env));
    rd_kafka_conf_t *kc = mph__kafka_conf_new(env, conf, MPH__KAFKA_PRODUCER, err, sizeof err);
    producer = mph__kafka_new(kc, MPH__KAFKA_PRODUCER, err, sizeof err);
    mph_conf_destroy(conf);
    scenario_one_member();
    scenario_two_members();
    scenario_late_revocation();
    rd_kafka_destroy(producer);
    mph__kafka_env_destroy(env);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

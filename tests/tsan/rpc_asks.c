/*
 * Agent RPC under ThreadSanitizer (issue 19): two threads ask at once
 * (asynchronous asks and the blocking wrapper) while the agent answers on
 * its worker, replies complete on the reply thread, asks time out there,
 * and the app stops with asks pending (completed on the stopping thread).
 * Every ask must complete exactly once with the right answer or its error.
 * A plain program, as engine_stress.c (Criterion cannot start under TSan):
 * prints "N passed, N failed" and exits non-zero on a failure; TSan itself
 * aborts on the first race (halt_on_error=1 in tools/test).
 *
 * Broker: MEPHISTO_TEST_BROKERS when set, else an in-process mock cluster.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/kafka.h"
#include "mephisto.h"
#include "runtime/app.h"


#define UPDATES 50000

#define ASKS 400

static int passed, failed;
static char broker[512];
static mph__kafka_env_t *env;
static rd_kafka_t *producer;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);               \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, "\n");                                             \
            ok = false;                                                        \
        }                                                                      \
    } while (0)

static void create(const char *topic, int parts)
{
    char err[512];
    mph__topic_spec_t spec = {topic, parts, 1, NULL};
    if (mph__kafka_create_topics(env, producer, &spec, 1, 30000, err,
                                 sizeof err)) {
        fprintf(stderr, "create %s: %s\n", topic, err);
        exit(2);
    }
}

/* Answers "<value>!" unless the value is "silent". */
static mph_err_t answer(mph_event_t *ev, void *opaque)
{
    (void)opaque;
    size_t len = 0;
    const char *v = mph_event_value(ev, &len);
    if (len == 6 && !memcmp(v, "silent", 6))
        return MPH_OK;
    char out[64];
    int n = snprintf(out, sizeof out, "%.*s!", (int)len, v);
    return mph_event_reply(ev, out, (size_t)n);
}

typedef struct outcome {
    int calls; /* __atomic */
    mph_err_t err;
    char reply[64];
    size_t len;
} outcome_t;

static void on_reply(mph_err_t err, const void *value, size_t len,
                     void *opaque)
{
    outcome_t *o = opaque;
    o->err = err;
    o->len = len < sizeof o->reply ? len : sizeof o->reply;
    if (len)
        memcpy(o->reply, value, o->len);
    __atomic_add_fetch(&o->calls, 1, __ATOMIC_SEQ_CST);
}

struct asker {
    mph_app_t *app;
    mph_agent_t *agent;
    int index;
    outcome_t out[ASKS];
    int wait_ok;
    pthread_t th;
};

static void *asker_main(void *arg)
{
    struct asker *a = arg;
    char key[16], val[32];
    for (int i = 0; i < ASKS; i++) {
        snprintf(key, sizeof key, "k%d", i % 37);
        int vl = snprintf(val, sizeof val, "t%d-%d", a->index, i);
        if (i % 20 == 0) {
            void *reply = NULL;
            size_t len = 0;
            if (mph_agent_ask_wait(a->app, a->agent, key, strlen(key), val,
                                   (size_t)vl, 20000, &reply,
                                   &len) == MPH_OK)
                a->wait_ok++;
            free(reply);
        }
        bool silent = i % 50 == 7;
        if (mph_agent_ask(a->app, a->agent, key, strlen(key),
                          silent ? "silent" : val,
                          silent ? 6 : (size_t)vl, silent ? 200 : 20000,
                          on_reply, &a->out[i]) != MPH_OK)
            a->out[i].calls = -1000; /* never asked: counted as a failure */
    }
    return NULL;
}

static void scenario_concurrent_asks(void)
{
    bool ok = true;
    char err[512], app_id[128], in[160];
    snprintf(app_id, sizeof app_id, "tsrpc-%d-%lld", (int)getpid(),
             (long long)mph_clock_wall_ms());
    snprintf(in, sizeof in, "%s-in", app_id);
    create(in, 2);
    mph_conf_t *conf = mph_conf_new();
    mph_conf_set(conf, "broker", broker, err, sizeof err);
    mph_conf_set(conf, "app_id", app_id, err, sizeof err);
    mph_conf_set(conf, "workers", "2", err, sizeof err);
    mph_conf_set(conf, "web_enabled", "false", err, sizeof err);
    mph_conf_set(conf, "log_level", "warn", err, sizeof err);
    mph_conf_set(conf, "rpc_enabled", "true", err, sizeof err);
    mph_conf_set(conf, "producer_linger_ms", "0", err, sizeof err);
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    mph_topic_t *t = mph_topic_new(app, in, NULL, err, sizeof err);
    mph_agent_t *agent =
        t ? mph_agent_new(app, "answer", t, answer, NULL, err, sizeof err)
          : NULL;
    if (!agent || mph_app_start(app, err, sizeof err) != MPH_OK) {
        fprintf(stderr, "FAIL start: %s\n", err);
        failed++;
        mph_app_destroy(app);
        return;
    }
    static struct asker askers[2];
    for (int i = 0; i < 2; i++) {
        askers[i].app = app;
        askers[i].agent = agent;
        askers[i].index = i;
        pthread_create(&askers[i].th, NULL, asker_main, &askers[i]);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(askers[i].th, NULL);
    /* Everything but the silent ones answered, those timed out. */
    for (int w = 0; w < 600; w++) {
        int done = 0;
        for (int a = 0; a < 2; a++)
            for (int i = 0; i < ASKS; i++)
                done += __atomic_load_n(&askers[a].out[i].calls,
                                        __ATOMIC_SEQ_CST) != 0;
        if (done == 2 * ASKS)
            break;
        usleep(50000);
    }
    /* One more ask left pending: the stop completes it. */
    outcome_t last = {0};
    CHECK(mph_agent_ask(app, agent, "k", 1, "silent", 6, 600000, on_reply,
                        &last) == MPH_OK,
          "last ask");
    mph_app_stop(app);
    CHECK(last.calls == 1 && last.err == MPH_ERR_STOPPED,
          "the pending ask ended %d times (%s)", last.calls,
          mph_err_str(last.err));
    for (int a = 0; a < 2; a++) {
        CHECK(askers[a].wait_ok == ASKS / 20, "asker %d: %d blocking asks ok",
              a, askers[a].wait_ok);
        for (int i = 0; i < ASKS; i++) {
            outcome_t *o = &askers[a].out[i];
            char want[64];
            int n = snprintf(want, sizeof want, "t%d-%d!", a, i);
            if (i % 50 == 7)
                CHECK(o->calls == 1 && o->err == MPH_ERR_TIMEOUT,
                      "silent ask %d/%d: %d calls, %s", a, i, o->calls,
                      mph_err_str(o->err));
            else
                CHECK(o->calls == 1 && o->err == MPH_OK &&
                          o->len == (size_t)n && !memcmp(o->reply, want, o->len),
                      "ask %d/%d: %d calls, %s", a, i, o->calls,
                      mph_err_str(o->err));
        }
    }
    printf("rpc: %llu asks, %llu replies, %llu timeouts, %llu late\n",
           (unsigned long long)mph_rpc_stat(app, "asks"),
           (unsigned long long)mph_rpc_stat(app, "replies"),
           (unsigned long long)mph_rpc_stat(app, "timeouts"),
           (unsigned long long)mph_rpc_stat(app, "late"));
    mph_app_destroy(app);
    if (ok)
        passed++;
    else
        failed++;
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
    rd_kafka_conf_t *kc =
        mph__kafka_conf_new(env, conf, MPH__KAFKA_PRODUCER, err, sizeof err);
    producer = mph__kafka_new(kc, MPH__KAFKA_PRODUCER, err, sizeof err);
    mph_conf_destroy(conf);
    scenario_concurrent_asks();
    rd_kafka_destroy(producer);
    mph__kafka_env_destroy(env);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

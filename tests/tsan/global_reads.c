/*
 * Global tables under ThreadSanitizer (issue 19): two threads read the
 * local copy (get, get_into, contains, foreach) without pause while the
 * table's reader thread applies a stream of updates and deletes read from
 * the changelog, and while an agent on a worker joins its events with the
 * table and writes it. Every value read must be whole (the key's own
 * prefix and a number), and afterwards the copy must equal the changelog.
 * A plain program, as engine_stress.c (Criterion cannot start under TSan):
 * prints "N passed, N failed" and exits non-zero on a failure; TSan itself
 * aborts on the first race (halt_on_error=1 in tools/test).
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
#include "runtime/app.h"


#define UPDATES 50000
#define KEYS 500
#define EVENTS 2000

static int passed, failed;
static char broker[512];
static mph__kafka_env_t *env;
static rd_kafka_t *producer;
static int stop_readers;

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                          \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fprintf(stderr, "\n");                                                         \
            ok = false;                                                                    \
        }                                                                                  \
    } while (0)

static void create(const char *topic, int parts)
{
    char err[512];
    mph__topic_spec_t spec = {topic, parts, 1, NULL};
    if (mph__kafka_create_topics(env, producer, &spec, 1, 30000, err, sizeof err)) {
        fprintf(stderr, "create %s: %s\n", topic, err);
        exit(2);
    }
}

static void produce(const char *topic, const char *k, int kl, const char *v, int vl)
{
    while (rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(k, kl),
                             RD_KAFKA_V_VALUE((void *)v, v ? (size_t)vl : 0),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(producer, 10);
}

/* A value of key "k<j>" is "k<j>=<number>": whole or not at all. */
static bool well_formed(const char *key, size_t klen, const char *v, size_t vlen)
{
    if (vlen < klen + 2 || memcmp(v, key, klen) != 0 || v[klen] != '=')
        return false;
    for (size_t i = klen + 1; i < vlen; i++)
        if (v[i] < '0' || v[i] > '9')
            return false;
    return true;
}

static long bad_reads, worker_joins;

static mph_err_t visit(const void *key, size_t klen, const void *value, size_t vlen, void *opaque)
{
    (void)opaque;
    if (!well_formed(key, klen, value, vlen))
        __atomic_add_fetch(&bad_reads, 1, __ATOMIC_SEQ_CST);
    return MPH_OK;
}

struct reader {
    mph_global_table_t *gt;
    long reads;
    unsigned seed;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    char key[32], buf[64];
    while (!__atomic_load_n(&stop_readers, __ATOMIC_SEQ_CST)) {
        int kl = snprintf(key, sizeof key, "k%d", rand_r(&r->seed) % KEYS);
        size_t len = 0;
        void *owned = NULL;
        mph_err_t err = mph_global_table_get_into(r->gt, key, (size_t)kl, buf, sizeof buf, &len);
        if (err == MPH_OK && !well_formed(key, (size_t)kl, buf, len))
            __atomic_add_fetch(&bad_reads, 1, __ATOMIC_SEQ_CST);
        err = mph_global_table_get(r->gt, key, (size_t)kl, &owned, &len);
        if (err == MPH_OK && !well_formed(key, (size_t)kl, owned, len))
            __atomic_add_fetch(&bad_reads, 1, __ATOMIC_SEQ_CST);
        free(owned);
        (void)mph_global_table_contains(r->gt, key, (size_t)kl);
        if (r->reads % 5000 == 0)
            mph_global_table_foreach(r->gt, visit, NULL);
        r->reads++;
    }
    return NULL;
}

/* On the worker: the join idiom (the key is the event's key) and a write. */
static mph_err_t key_of(mph_event_t *ev, const void **key, size_t *key_len, void *opaque)
{
    (void)opaque;
    *key = mph_event_key(ev, key_len);
    return *key ? MPH_OK : MPH_ERR_NOENT;
}

static mph_err_t joined(mph_event_t *ev, const void *value, size_t value_len, void *opaque)
{
    (void)opaque;
    size_t klen = 0;
    const char *k = mph_event_key(ev, &klen);
    if (value && !well_formed(k, klen, value, value_len))
        __atomic_add_fetch(&bad_reads, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&worker_joins, 1, __ATOMIC_SEQ_CST);
    return MPH_OK;
}

static mph_err_t on_event(mph_event_t *ev, void *opaque)
{
    mph_global_table_t *gt = opaque;
    return mph_table_join_global(ev, gt, key_of, joined, NULL);
}

static void scenario_reads_under_updates(void)
{
    bool ok = true;
    char err[512], app_id[128], in[160], changelog[256];
    snprintf(app_id, sizeof app_id, "tsgt-%d-%lld", (int)getpid(),
             (long long)mph_clock_wall_ms());
    snprintf(in, sizeof in, "%s-in", app_id);
    snprintf(changelog, sizeof changelog, "%s-ref-changelog", app_id);
    create(in, 2);
    create(changelog, 3); /* the mock cluster cannot create it through the admin API */
    mph_conf_t *conf = mph_conf_new();
    mph_conf_set(conf, "broker", broker, err, sizeof err);
    mph_conf_set(conf, "app_id", app_id, err, sizeof err);
    mph_conf_set(conf, "workers", "1", err, sizeof err);
    mph_conf_set(conf, "web_enabled", "false", err, sizeof err);
    mph_conf_set(conf, "log_level", "warn", err, sizeof err);
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    mph_global_table_opts_t *o = mph_global_table_opts_new();
    mph_global_table_opts_set(o, "partitions", "3", err, sizeof err);
    mph_global_table_t *gt = mph_global_table_new(app, "ref", o, err, sizeof err);
    mph_global_table_opts_destroy(o);
    mph_topic_t *t = gt ? mph_topic_new(app, in, NULL, err, sizeof err) : NULL;
    if (!t || !mph_agent_new(app, "join", t, on_event, gt, err, sizeof err) ||
        mph_app_start(app, err, sizeof err) != MPH_OK) {
        fprintf(stderr, "FAIL start: %s\n", err);
        failed++;
        mph_app_destroy(app);
        return;
    }
    CHECK(mph_global_table_wait_ready(gt, 60000) == MPH_OK, "not ready");

    struct reader readers[2] = {{gt, 0, 1}, {gt, 0, 2}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, reader_main, &readers[i]);

    /* Updates and deletes (every 9th record of a key deletes it), then the
     * last word for each key; events for the agent in between. */
    static int last[KEYS]; /* -1 deleted */
    char k[32], v[64];
    for (int i = 0; i < UPDATES; i++) {
        int j = i % KEYS;
        int kl = snprintf(k, sizeof k, "k%d", j);
        if ((i / KEYS) % 9 == 8) {
            produce(changelog, k, kl, NULL, 0);
            last[j] = -1;
        } else {
            int vl = snprintf(v, sizeof v, "k%d=%d", j, i);
            produce(changelog, k, kl, v, vl);
            last[j] = i;
        }
        if (i % (UPDATES / EVENTS) == 0)
            produce(in, k, kl, "e", 1);
    }
    rd_kafka_flush(producer, 60000);

    /* The copy converges on the changelog. */
    bool equal = false;
    for (int w = 0; w < 600 && !equal; w++) {
        equal = true;
        for (int j = 0; j < KEYS && equal; j++) {
            int kl = snprintf(k, sizeof k, "k%d", j);
            size_t len = 0;
            mph_err_t e = mph_global_table_get_into(gt, k, (size_t)kl, v, sizeof v, &len);
            int vl = last[j] >= 0 ? snprintf(v + 32, 32, "k%d=%d", j, last[j]) : 0;
            equal = last[j] < 0 ? e == MPH_ERR_NOENT
                                : e == MPH_OK && len == (size_t)vl && !memcmp(v, v + 32, len);
        }
        if (!equal)
            usleep(100000);
    }
    for (int w = 0; w < 600 && __atomic_load_n(&worker_joins, __ATOMIC_SEQ_CST) < EVENTS; w++)
        usleep(100000);
    __atomic_store_n(&stop_readers, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    CHECK(equal, "the copy does not equal the changelog");
    CHECK(__atomic_load_n(&bad_reads, __ATOMIC_SEQ_CST) == 0, "%ld torn or foreign reads",
          bad_reads);
    CHECK(readers[0].reads > 0 && readers[1].reads > 0, "the readers did not read");
    CHECK(__atomic_load_n(&worker_joins, __ATOMIC_SEQ_CST) >= EVENTS, "%ld joins on the worker",
          worker_joins);
    printf("global reads: %ld + %ld lookups while %d updates applied\n", readers[0].reads,
           readers[1].reads, UPDATES);
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
    rd_kafka_conf_t *kc = mph__kafka_conf_new(env, conf, MPH__KAFKA_PRODUCER, err, sizeof err);
    producer = mph__kafka_new(kc, MPH__KAFKA_PRODUCER, err, sizeof err);
    mph_conf_destroy(conf);
    scenario_reads_under_updates();
    rd_kafka_destroy(producer);
    mph__kafka_env_destroy(env);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

/*
 * processing_guarantee=exactly_once end to end (issue #14), on the real
 * broker (MEPHISTO_TEST_BROKERS): the mock cluster does not emulate
 * read_committed, so those tests skip there, saying so.
 *
 * The app under test forwards every input record to an output topic and
 * counts its key in a table; an input whose value starts with "poison"
 * also sends a record too large for a small topic, which the broker
 * refuses in the delivery report, dooming the transaction. Verified from
 * outside: a read_committed read of the output holds each input exactly
 * once, every table value equals the truth (over mph_table_lookup), and
 * the changelog, read read_committed, folds to the same values. An input
 * "huge<id>" also sends an output larger than the producer's
 * message.max.bytes (dead-lettered under on_send_error=dead_letter). An
 * input "fatal<id>" fails the worker's producer fatally the first time it
 * is processed (rd_kafka_test_fatal_error): the producer is replaced.
 *
 * Through the CLI (worker processes): examples/wordcount and
 * examples/forward switched over by the setting alone, two processes with
 * and without group_instance_id; the reltest plugin under kill -9 and with
 * a process frozen past its session timeout (a zombie). The mock cluster
 * refusing exactly_once is checked on the mock too.
 */
// ctest-timeout: 900
// ctest-labels: engine;reliability
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ck_pr.h>

#include "io/codec.h"
#include "mephisto.h"
#include "mph_cli.h"
#include "mph_test.h"
#include "runtime/app.h"
#include "runtime/worker.h"

#define NKEYS 50
#define PARTS 4
#define SMALL_MAX 2000

static mph_test_cluster_t *cluster;
static struct k9 *k9_live; /* the processes of a running k9 test, if any */
static void k9_reap(struct k9 *k);

static void setup(void)
{
    cluster = mph_test_cluster_new();
}

static void teardown(void)
{
    /* A k9 test that failed an assertion half-way leaves its processes
     * running (one may be stopped): they go with the test. */
    if (k9_live)
        k9_reap(k9_live);
    mph_test_cluster_destroy(cluster);
}

TestSuite(eos, .init = setup, .fini = teardown, .timeout = 800);

static bool need_real_broker(const char *test)
{
    if (mph_test_real_broker())
        return true;
    fprintf(stderr, "eos/%s: skipped: needs a real broker (MEPHISTO_TEST_BROKERS); the mock "
                    "cluster does not emulate read_committed\n", test);
    return false;
}

/* ---- the app ---- */

typedef struct run {
    char app_id[128], in[160], out[160], small[160], datadir[256];
    mph_app_t *app;
    mph_topic_t *tin, *tout, *tsmall;
    mph_table_t *counts;
    pthread_t waiter;
    int stopped;
    mph_err_t wait_err;
} run_t;

/* An output too large for the producer (sent for inputs "huge<id>"). */
static char *huge_value;
static size_t huge_len;

/* Inputs "fatal<id>" raise a fatal error in the worker's producer the
 * first time they are processed (fatal_done[id] set then). */
#define FATAL_IDS 10000
static int fatal_done[FATAL_IDS];

/* The input keyed "gate" holds its worker (inside a batch, its
 * transaction open) until gate_open is set; nothing is output or counted
 * for it. */
static int gate_reached, gate_open;

static mph_err_t fc_agent(mph_event_t *ev, void *opaque)
{
    run_t *r = opaque;
    size_t klen, vlen;
    const void *key = mph_event_key(ev, &klen);
    const char *val = mph_event_value(ev, &vlen);
    if (klen == 4 && !memcmp(key, "gate", 4)) {
        ck_pr_store_int(&gate_reached, 1);
        for (int i = 0; i < 1200 && !ck_pr_load_int(&gate_open); i++)
            usleep(50000);
        return MPH_OK;
    }
    mph_err_t err = mph_table_incr(ev, r->counts, key, klen, 1, NULL);
    if (err)
        return err;
    err = mph_event_forward(ev, r->tout);
    if (err)
        return err;
    if (vlen >= 4 && !memcmp(val, "huge", 4) && huge_value) {
        /* Larger than the producer's message.max.bytes: refused at once. */
        err = mph_event_send(ev, r->tout, MPH_PARTITION_ANY, key, klen, huge_value, huge_len,
                             NULL, 0);
        if (err)
            return err;
    }
    if (vlen >= 5 && !memcmp(val, "fatal", 5)) {
        /* As librdkafka 2.0.2 raises OUT_OF_ORDER_SEQUENCE_NUMBER after a
         * broker restart (reliability scenario 5). Set once it took: a
         * producer failed already refuses another. */
        int id = atoi(val + 5);
        if (id >= 0 && id < FATAL_IDS && !ck_pr_load_int(&fatal_done[id]) &&
            rd_kafka_test_fatal_error(ev->worker->producer,
                                      RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                                      "raised by test_eos") == RD_KAFKA_RESP_ERR_NO_ERROR)
            ck_pr_store_int(&fatal_done[id], 1);
    }
    if (vlen >= 6 && !memcmp(val, "poison", 6)) {
        static char big[SMALL_MAX * 3];
        memset(big, 'p', sizeof big);
        err = mph_event_send(ev, r->tsmall, 0, key, klen, big, sizeof big, NULL, 0);
    }
    return err;
}

static void *waiter(void *arg)
{
    run_t *r = arg;
    r->wait_err = mph_app_wait(r->app);
    ck_pr_store_int(&r->stopped, 1);
    return NULL;
}

/* Builds (not starts) the app. extra: more settings, NULL-terminated pairs. */
static void build(run_t *r, const char *store, const char *const *extra)
{
    char err[512];
    mph_conf_t *conf = mph_conf_new();
    const char *kv[][2] = {{"broker", cluster->broker},
                           {"app_id", r->app_id},
                           {"workers", "2"},
                           {"processing_guarantee", "exactly_once"},
                           {"web_enabled", "false"},
                           {"log_level", "warn"},
                           {"on_send_error", "skip"},
                           {"store", store},
                           {"datadir", r->datadir},
                           {"shutdown_timeout_ms", "10000"},
                           {"topic_partitions", "4"}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        cr_assert_eq(mph_conf_set(conf, kv[i][0], kv[i][1], err, sizeof err), MPH_OK, "%s",
                     err);
    for (const char *const *p = extra; p && *p; p += 2)
        cr_assert_eq(mph_conf_set(conf, p[0], p[1], err, sizeof err), MPH_OK, "%s", err);
    r->app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(r->app, "%s", err);
    mph_topic_opts_t *o = mph_topic_opts_new();
    mph_topic_opts_set(o, "create", "true", NULL, 0);
    r->tin = mph_topic_new(r->app, r->in, NULL, err, sizeof err);
    r->tout = mph_topic_new(r->app, r->out, o, err, sizeof err);
    char num[32];
    snprintf(num, sizeof num, "%d", SMALL_MAX);
    cr_assert_eq(mph_topic_opts_set(o, "config.max.message.bytes", num, err, sizeof err), MPH_OK,
                 "%s", err);
    r->tsmall = mph_topic_new(r->app, r->small, o, err, sizeof err);
    mph_topic_opts_destroy(o);
    cr_assert(r->tin && r->tout && r->tsmall, "%s", err);
    r->counts = mph_table_new(r->app, "counts", NULL, err, sizeof err);
    cr_assert_not_null(r->counts, "%s", err);
    cr_assert_not_null(mph_agent_new(r->app, "fc", r->tin, fc_agent, r, err, sizeof err), "%s",
                       err);
}

static void start(run_t *r)
{
    char err[512];
    cr_assert_eq(mph_app_start(r->app, err, sizeof err), MPH_OK, "%s", err);
    ck_pr_store_int(&r->stopped, 0);
    cr_assert_eq(pthread_create(&r->waiter, NULL, waiter, r), 0);
}

static mph_err_t stop(run_t *r)
{
    mph_app_request_stop(r->app);
    pthread_join(r->waiter, NULL);
    return r->wait_err;
}

static void names(run_t *r, const char *tag)
{
    mph_test_unique(tag, r->app_id, sizeof r->app_id);
    snprintf(r->in, sizeof r->in, "%s-in", r->app_id);
    snprintf(r->out, sizeof r->out, "%s-out", r->app_id);
    snprintf(r->small, sizeof r->small, "%s-small", r->app_id);
    mph_test_tmpdir("eos", r->datadir, sizeof r->datadir);
    mph_test_create_topic(cluster, r->in, PARTS);
}

/* ---- input and truth ---- */

typedef struct truth {
    int n;
    int64_t count[NKEYS];
} truth_t;

/* Ids given a marked value: "<mark><id>". */
typedef struct marks {
    const char *mark;
    const int *ids;
    int n;
} marks_t;

/* Produces records id first .. first+n-1: key k<id % NKEYS> to the key's
 * table partition, value "<id>", or "<mark><id>" for ids in one of m[nm]. */
static void produce_marked(run_t *r, truth_t *t, int first, int n, const marks_t *m, int nm);

/* Value "poison<id>" for ids in poison. */
static void produce(run_t *r, truth_t *t, int first, int n, const int *poison, int npoison)
{
    marks_t m = {"poison", poison, npoison};
    produce_marked(r, t, first, n, &m, 1);
}

/* The same, and value "huge<id>" for ids in huge. */
static void produce_huge(run_t *r, truth_t *t, int first, int n, const int *poison,
                         int npoison, const int *huge, int nhuge)
{
    marks_t m[] = {{"poison", poison, npoison}, {"huge", huge, nhuge}};
    produce_marked(r, t, first, n, m, 2);
}

static void produce_marked(run_t *r, truth_t *t, int first, int n, const marks_t *m, int nm)
{
    for (int id = first; id < first + n; id++) {
        char key[16], val[32];
        int k = id % NKEYS;
        snprintf(key, sizeof key, "k%d", k);
        const char *mark = "";
        for (int j = 0; j < nm; j++)
            for (int i = 0; i < m[j].n; i++)
                if (m[j].ids[i] == id)
                    mark = m[j].mark;
        snprintf(val, sizeof val, "%s%d", mark, id);
        int32_t part = mph_table_partition_of(r->counts, key, strlen(key));
        mph_test_produce(cluster, r->in, part, key, strlen(key), val, strlen(val));
        t->count[k]++;
    }
    t->n = first + n > t->n ? first + n : t->n;
    mph_test_flush(cluster);
}

/* ---- reading read_committed ---- */

static int read_committed(const char *topic, int want, int idle_ms, mph_test_record_fn *fn,
                          void *opaque)
{
    /* The engine's own consumers read read_committed under exactly_once;
     * the reader below (tests/support) does too. */
    char err[512];
    mph_conf_t *conf = mph_conf_new();
    mph_conf_set(conf, "broker", cluster->broker, err, sizeof err);
    mph_conf_set(conf, "app_id", "mph-test-eos-reader", err, sizeof err);
    mph_conf_set(conf, "processing_guarantee", "exactly_once", err, sizeof err);
    rd_kafka_conf_t *kc =
        mph__kafka_conf_new(cluster->env, conf, MPH__KAFKA_CONSUMER, err, sizeof err);
    cr_assert_not_null(kc, "%s", err);
    char iso[64] = "";
    size_t isz = sizeof iso;
    rd_kafka_conf_get(kc, "isolation.level", iso, &isz);
    cr_assert_str_eq(iso, "read_committed");
    rd_kafka_conf_destroy(kc);
    mph_conf_destroy(conf);
    return mph_test_consume_all(cluster, topic, want, idle_ms, 120000, fn, opaque);
}

typedef struct seen {
    int max;
    int *times; /* [max] */
    int bad;
} seen_t;

static void on_out(const rd_kafka_message_t *m, void *opaque)
{
    seen_t *s = opaque;
    char buf[32];
    size_t l = m->len < sizeof buf - 1 ? m->len : sizeof buf - 1;
    memcpy(buf, m->payload, l);
    buf[l] = 0;
    const char *digits = strncmp(buf, "poison", 6) == 0  ? buf + 6
                         : strncmp(buf, "huge", 4) == 0 ? buf + 4
                         : strncmp(buf, "fatal", 5) == 0 ? buf + 5
                                                         : buf;
    int id = atoi(digits);
    if (id < 0 || id >= s->max)
        s->bad++;
    else
        s->times[id]++;
}

typedef struct fold {
    int64_t value[NKEYS];
    int bad;
} fold_t;

static void on_changelog(const rd_kafka_message_t *m, void *opaque)
{
    fold_t *f = opaque;
    char key[16];
    size_t l = m->key_len < sizeof key - 1 ? m->key_len : sizeof key - 1;
    memcpy(key, m->key, l);
    key[l] = 0;
    int k = key[0] == 'k' ? atoi(key + 1) : -1;
    int64_t v = 0;
    if (k < 0 || k >= NKEYS || !m->payload || mph__codec_i64_decode(m->payload, m->len, &v))
        f->bad++;
    else
        f->value[k] = v;
}

/* Waits until a read_committed read of the output holds want records. */
static int wait_output(run_t *r, int want, int timeout_s)
{
    int got = 0;
    for (int i = 0; i < timeout_s; i++) {
        got = read_committed(r->out, want, 1500, NULL, NULL);
        if (got >= want)
            break;
        sleep(1);
    }
    return got;
}

/* The whole check: output exactly once, table == truth, changelog == truth.
 * app may be NULL (not running: the table is not read over lookups). */
static void verify(run_t *r, const truth_t *t, mph_app_t *app)
{
    seen_t s = {.max = t->n, .times = calloc((size_t)t->n, sizeof(int))};
    int got = read_committed(r->out, -1, 3000, on_out, &s);
    int missing = 0, twice = 0;
    for (int id = 0; id < t->n; id++) {
        missing += s.times[id] == 0;
        twice += s.times[id] > 1;
    }
    fprintf(stderr, "eos: %s: output %d records for %d inputs: %d missing, %d more than once\n",
            r->app_id, got, t->n, missing, twice);
    cr_expect_eq(missing, 0, "inputs without output");
    cr_expect_eq(twice, 0, "inputs with more than one output (read_committed)");
    cr_expect_eq(s.bad, 0);
    free(s.times);

    int wrong = 0;
    if (app) {
        for (int k = 0; k < NKEYS; k++) {
            char key[16];
            snprintf(key, sizeof key, "k%d", k);
            void *v = NULL;
            size_t vl = 0;
            int64_t got_v = 0;
            mph_err_t e = mph_table_lookup(app, r->counts, key, strlen(key), &v, &vl, 10000);
            if (e == MPH_OK)
                mph__codec_i64_decode(v, vl, &got_v);
            free(v);
            if (got_v != t->count[k]) {
                if (wrong++ < 5)
                    fprintf(stderr, "eos: table counts[%s] = %lld (%s), truth %lld\n", key,
                            (long long)got_v, mph_err_str(e), (long long)t->count[k]);
            }
        }
        cr_expect_eq(wrong, 0, "table values differ from the truth");
    }
    fold_t f = {{0}, 0};
    char cl[256];
    snprintf(cl, sizeof cl, "%s-counts-changelog", r->app_id);
    read_committed(cl, -1, 3000, on_changelog, &f);
    wrong = 0;
    for (int k = 0; k < NKEYS; k++)
        if (f.value[k] != t->count[k] && wrong++ < 5)
            fprintf(stderr, "eos: changelog k%d = %lld, truth %lld\n", k, (long long)f.value[k],
                    (long long)t->count[k]);
    cr_expect_eq(wrong, 0, "changelog (read_committed) differs from the truth");
    cr_expect_eq(f.bad, 0);
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

/* ---- (1) forward + count ---- */

static void forward_count(const char *store)
{
    run_t r = {0};
    truth_t t = {0};
    names(&r, "eos-fc");
    build(&r, store, NULL);
    produce(&r, &t, 0, 3000, NULL, 0);
    start(&r);
    produce(&r, &t, 3000, 3000, NULL, 0); /* while it runs */
    int got = wait_output(&r, t.n, 120);
    cr_expect_eq(got, t.n);
    uint64_t committed = stat_u64(r.app, "totals.transactions_committed");
    uint64_t aborted = stat_u64(r.app, "totals.transactions_aborted");
    fprintf(stderr, "eos: forward_count %s: %llu transactions committed, %llu aborted\n", store,
            (unsigned long long)committed, (unsigned long long)aborted);
    cr_expect_gt(committed, 0);
    cr_expect_eq(aborted, 0);
    char *json = NULL;
    size_t jlen = 0;
    cr_assert_eq(mph_app_stats_json(r.app, &json, &jlen), MPH_OK);
    cr_expect(strstr(json, "\"producer_fenced\":0") != NULL, "producer_fenced in /stats");
    cr_expect(strstr(json, "\"transaction_commit_latency_ns\"") != NULL);
    free(json);
    verify(&r, &t, r.app);
    cr_expect_eq(stop(&r), MPH_OK);
    mph_app_destroy(r.app);

    /* A restart recovers the table from the changelog (memory) or the
     * checkpoint (rocksdb) and goes on from the committed offsets. */
    build(&r, store, NULL);
    start(&r);
    produce(&r, &t, 6000, 1000, NULL, 0);
    cr_expect_eq(wait_output(&r, t.n, 120), t.n);
    verify(&r, &t, r.app);
    cr_expect_eq(stop(&r), MPH_OK);
    mph_app_destroy(r.app);
    mph_test_rmrf(r.datadir);
}

Test(eos, forward_count_memory)
{
    if (need_real_broker("forward_count_memory"))
        forward_count("memory");
}

Test(eos, forward_count_rocksdb)
{
    if (need_real_broker("forward_count_rocksdb"))
        forward_count("rocksdb");
}

/* ---- (2) the abort path ---- */

/* Each poison record dooms its transaction (the broker refuses its large
 * output): the worker aborts, rolls its shards back, re-reads from the
 * transaction's first records, and the second time sends no large output
 * (on_send_error=skip). Outputs stay exactly once, the table exact. */
static void aborts(const char *store)
{
    run_t r = {0};
    truth_t t = {0};
    names(&r, "eos-ab");
    build(&r, store, NULL);
    start(&r);
    int poison[] = {700, 1900, 2950, 4111, 5555};
    for (int i = 0; i < 6; i++) {
        produce(&r, &t, i * 1000, 1000, poison, 5);
        usleep(200000);
    }
    int got = wait_output(&r, t.n, 180);
    cr_expect_eq(got, t.n);
    uint64_t aborted = stat_u64(r.app, "totals.transactions_aborted");
    uint64_t skipped = stat_u64(r.app, "totals.send_skipped");
    uint64_t committed = stat_u64(r.app, "totals.transactions_committed");
    fprintf(stderr, "eos: aborts %s: %llu committed, %llu aborted, %llu outputs skipped\n",
            store, (unsigned long long)committed, (unsigned long long)aborted,
            (unsigned long long)skipped);
    cr_expect_geq(aborted, 1, "no transaction was aborted");
    /* At least once each: a poison source processed again in a transaction
     * that another poison record dooms is skipped again. */
    cr_expect_geq(skipped, 5, "each poison output is skipped after its abort");
    cr_expect(!ck_pr_load_int(&r.stopped), "the app stopped");
    verify(&r, &t, r.app);
    cr_expect_eq(stop(&r), MPH_OK);
    mph_app_destroy(r.app);
    mph_test_rmrf(r.datadir);
}

Test(eos, abort_rolls_back_memory)
{
    if (need_real_broker("abort_rolls_back_memory"))
        aborts("memory");
}

Test(eos, abort_rolls_back_rocksdb)
{
    if (need_real_broker("abort_rolls_back_rocksdb"))
        aborts("rocksdb");
}

/* ---- (2a) a producer that fails fatally ---- */

/* Each "fatal" input fails its worker's producer fatally (not fenced) the
 * first time it is processed: the worker rolls back and seeks as for any
 * abort and replaces the producer, whose init_transactions makes the
 * broker abort the open transaction; the sources are processed again.
 * Outputs stay exactly once, the table exact, the app keeps running. */
static void fatal_errors(const char *store)
{
    run_t r = {0};
    truth_t t = {0};
    names(&r, "eos-fa");
    build(&r, store, NULL);
    start(&r);
    int fatal[] = {500, 1700, 2600};
    memset(fatal_done, 0, sizeof fatal_done);
    for (int i = 0; i < 3; i++) {
        marks_t m = {"fatal", fatal, 3};
        produce_marked(&r, &t, i * 1000, 1000, &m, 1);
        usleep(300000);
    }
    int got = wait_output(&r, t.n, 180);
    cr_expect_eq(got, t.n);
    int raised = 0;
    for (int i = 0; i < 3; i++)
        raised += ck_pr_load_int(&fatal_done[fatal[i]]);
    uint64_t replaced = stat_u64(r.app, "totals.producer_replaced");
    uint64_t aborted = stat_u64(r.app, "totals.transactions_aborted");
    fprintf(stderr, "eos: fatal %s: %d fatal errors raised, %llu producers replaced, %llu "
            "transactions aborted\n", store, raised, (unsigned long long)replaced,
            (unsigned long long)aborted);
    cr_expect_eq(raised, 3, "a fatal input was never processed");
    cr_expect_geq(replaced, 3, "a producer that failed fatally was not replaced");
    cr_expect_geq(aborted, 3);
    cr_expect_eq(stat_u64(r.app, "totals.producer_fenced"), 0);
    cr_expect(!ck_pr_load_int(&r.stopped), "the app stopped");
    verify(&r, &t, r.app);
    cr_expect_eq(stop(&r), MPH_OK);
    mph_app_destroy(r.app);
    mph_test_rmrf(r.datadir);
}

Test(eos, fatal_producer_error_replaces_the_producer_memory, .timeout = 600)
{
    if (need_real_broker("fatal_producer_error_replaces_the_producer_memory"))
        fatal_errors("memory");
}

Test(eos, fatal_producer_error_replaces_the_producer_rocksdb, .timeout = 600)
{
    if (need_real_broker("fatal_producer_error_replaces_the_producer_rocksdb"))
        fatal_errors("rocksdb");
}

/* ---- (2b) on_send_error=dead_letter ---- */

/* Under exactly_once with on_send_error=dead_letter: an output larger than
 * the producer's message.max.bytes ("huge" inputs) is dead-lettered at
 * once, inside the transaction; an output the broker refuses ("poison"
 * inputs: the small topic) dooms its transaction, and processed again it
 * is dead-lettered. A read_committed read of <app_id>-dead-letter holds
 * each of those source records exactly once and nothing else; the other
 * outputs are exactly once, the tables exact, and the app keeps running. */
Test(eos, dead_letter_exactly_once, .timeout = 600)
{
    if (!need_real_broker("dead_letter_exactly_once"))
        return;
    run_t r = {0};
    truth_t t = {0};
    names(&r, "eos-dl");
    const char *dl[] = {"on_send_error", "dead_letter", NULL};
    build(&r, "memory", dl);
    start(&r);
    huge_len = (size_t)r.app->produce_max_bytes + 1000;
    cr_assert_gt(huge_len, 1000);
    huge_value = malloc(huge_len);
    cr_assert_not_null(huge_value);
    memset(huge_value, 'h', huge_len);
    int poison[] = {700, 2950, 4111};
    int huge[] = {10, 1234, 2951, 3500, 5999};
    int npoison = 3, nhuge = 5;
    for (int i = 0; i < 6; i++) {
        produce_huge(&r, &t, i * 1000, 1000, poison, npoison, huge, nhuge);
        usleep(200000);
    }
    cr_expect_eq(wait_output(&r, t.n, 180), t.n);
    uint64_t dead = stat_u64(r.app, "totals.send_dead_lettered");
    uint64_t aborted = stat_u64(r.app, "totals.transactions_aborted");
    fprintf(stderr, "eos: dead_letter: %llu outputs dead-lettered, %llu transactions aborted "
                    "(huge outputs of %zu bytes)\n",
            (unsigned long long)dead, (unsigned long long)aborted, huge_len);
    cr_expect_geq(dead, (uint64_t)(npoison + nhuge));
    cr_expect_geq(aborted, 1, "no transaction was aborted (the poison outputs)");
    cr_expect(!ck_pr_load_int(&r.stopped), "the app stopped: %s", r.app->fatal_msg);
    verify(&r, &t, r.app);
    char dlt[300];
    snprintf(dlt, sizeof dlt, "%s-dead-letter", r.app_id);
    seen_t s = {.max = t.n, .times = calloc((size_t)t.n, sizeof(int))};
    int got = read_committed(dlt, -1, 3000, on_out, &s);
    int once = 0, wrong = 0;
    for (int id = 0; id < t.n; id++) {
        bool want = false;
        for (int i = 0; i < npoison; i++)
            want |= poison[i] == id;
        for (int i = 0; i < nhuge; i++)
            want |= huge[i] == id;
        if (want && s.times[id] == 1)
            once++;
        else if (s.times[id] != 0 || want) {
            if (wrong++ < 5)
                fprintf(stderr, "eos: dead_letter: input %d dead-lettered %d times\n", id,
                        s.times[id]);
        }
    }
    fprintf(stderr, "eos: dead_letter: %d records in %s (read_committed)\n", got, dlt);
    cr_expect_eq(once, npoison + nhuge, "dead-lettered exactly once");
    cr_expect_eq(wrong, 0);
    cr_expect_eq(s.bad, 0);
    cr_expect_eq(got, npoison + nhuge);
    free(s.times);
    cr_expect_eq(stop(&r), MPH_OK);
    mph_app_destroy(r.app);
    mph_test_rmrf(r.datadir);
    free(huge_value);
    huge_value = NULL;
}

/* ---- (4) fencing ---- */

/* A second process with the same transactional identity (the same datadir,
 * so the same process id) fences the first: the first stops with
 * "producer fenced" and writes nothing more; outputs stay exactly once. */
Test(eos, same_identity_fences_the_first)
{
    if (!need_real_broker("same_identity_fences_the_first"))
        return;
    run_t a = {0}, b = {0};
    truth_t t = {0};
    names(&a, "eos-fe");
    b = a;
    const char *one[] = {"workers", "1", NULL};
    build(&a, "memory", one);
    start(&a);
    produce(&a, &t, 0, 2000, NULL, 0);
    cr_expect_eq(wait_output(&a, 2000, 120), 2000);
    build(&b, "memory", one);
    start(&b);
    produce(&a, &t, 2000, 2000, NULL, 0);
    for (int i = 0; i < 600 && !ck_pr_load_int(&a.stopped); i++)
        usleep(100000);
    cr_expect(ck_pr_load_int(&a.stopped), "the fenced process did not stop");
    /* (Its producer_fenced counter goes with its workers when it stops.) */
    mph_err_t ea = stop(&a);
    fprintf(stderr, "eos: fenced: first app %s (%s)\n", mph_err_str(ea), a.app->fatal_msg);
    cr_expect_neq(ea, MPH_OK);
    cr_expect(strstr(a.app->fatal_msg, "producer fenced") != NULL, "%s", a.app->fatal_msg);
    mph_app_destroy(a.app);
    produce(&b, &t, 4000, 1000, NULL, 0);
    cr_expect_eq(wait_output(&b, t.n, 180), t.n);
    verify(&b, &t, b.app);
    cr_expect_eq(stop(&b), MPH_OK);
    mph_app_destroy(b.app);
    mph_test_rmrf(a.datadir);
}

/* ---- (5) the identity ---- */

Test(eos, process_id_is_made_once_and_kept)
{
    char dir[256], appdir[300], id1[128], id2[128], err[256];
    mph_test_tmpdir("eos-pid", dir, sizeof dir);
    snprintf(appdir, sizeof appdir, "%s/app", dir);
    cr_assert_eq(mph__app_process_id(appdir, "app", NULL, id1, sizeof id1, err, sizeof err),
                 MPH_OK, "%s", err);
    cr_expect_eq(strlen(id1), 16);
    cr_assert_eq(mph__app_process_id(appdir, "app", "", id2, sizeof id2, err, sizeof err), MPH_OK,
                 "%s", err);
    cr_expect_str_eq(id1, id2, "a second start must reuse the process id");
    char path[400];
    snprintf(path, sizeof path, "%s/process-id", appdir);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq(st.st_mode & 0777, 0600);
    snprintf(path, sizeof path, "%s/.mephisto-state", appdir);
    cr_expect_eq(access(path, F_OK), 0, "the state marker is made with the directory");
    /* Another datadir: another id (two processes on one host never collide). */
    char other[300];
    snprintf(other, sizeof other, "%s/app2", dir);
    cr_assert_eq(mph__app_process_id(other, "app", NULL, id2, sizeof id2, err, sizeof err),
                 MPH_OK, "%s", err);
    cr_expect_str_neq(id1, id2);
    /* group_instance_id wins and touches no file. */
    cr_assert_eq(mph__app_process_id(other, "app", "host-7", id2, sizeof id2, err, sizeof err),
                 MPH_OK);
    cr_expect_str_eq(id2, "host-7");
    /* A damaged file is refused with its path, never replaced silently. */
    snprintf(path, sizeof path, "%s/process-id", appdir);
    FILE *f = fopen(path, "w");
    fputs("not hex!\n", f);
    fclose(f);
    cr_expect_eq(mph__app_process_id(appdir, "app", NULL, id2, sizeof id2, err, sizeof err),
                 MPH_ERR_INVALID);
    cr_expect(strstr(err, "process-id") != NULL, "%s", err);
    mph_test_rmrf(dir);
}

Test(eos, transactional_id_and_defaults)
{
    char err[256], tid[256];
    mph_conf_t *conf = mph_conf_new();
    mph_conf_set(conf, "app_id", "shop", err, sizeof err);
    mph_conf_set(conf, "processing_guarantee", "exactly_once", err, sizeof err);
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(app, "exactly_once must be accepted: %s", err);
    cr_expect(app->eos);
    cr_expect_eq(app->commit_interval_ms, 100, "exactly_once commits every 100 ms by default");
    snprintf(app->process_id, sizeof app->process_id, "%s", "0123abcd0123abcd");
    mph__app_transactional_id(app, 3, tid, sizeof tid);
    cr_expect_str_eq(tid, "shop-0123abcd0123abcd-w3");
    mph_app_destroy(app);

    conf = mph_conf_new();
    mph_conf_set(conf, "app_id", "shop", err, sizeof err);
    mph_conf_set(conf, "processing_guarantee", "exactly_once", err, sizeof err);
    mph_conf_set(conf, "commit_interval_ms", "700", err, sizeof err);
    app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(app, "%s", err);
    cr_expect_eq(app->commit_interval_ms, 700, "a set commit_interval_ms wins");
    mph_app_destroy(app);

    conf = mph_conf_new();
    mph_conf_set(conf, "app_id", "shop", err, sizeof err);
    app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(app, "%s", err);
    cr_expect(!app->eos);
    cr_expect_eq(app->commit_interval_ms, 1000, "at_least_once keeps 1000 ms");
    mph_app_destroy(app);
}

/* ---- (3) kill -9 of worker processes during a steady load ---- */

#define K9_KEYS 40
#define K9_TOTAL 30000

typedef struct k9 {
    char app_id[128], in[160], out[160], datadir[2][256];
    mph_cli_proc_t proc[2];
    bool alive[2];
    int64_t count[K9_KEYS];
    int produced;
    int done;
    int total;         /* records the driver produces */
    int pause_us;      /* after every 500 */
    int port[2];       /* web ports */
    char *logs;        /* stderr of every process ended so far */
    size_t logs_len;
} k9_t;

/* Keeps what process i wrote (r.err) for the report of a failed run. */
static void k9_keep_log(k9_t *k, int i, const char *how, const char *err)
{
    char head[128];
    int hl = snprintf(head, sizeof head, "\n==== process %d (%s) ====\n", i, how);
    size_t el = err ? strlen(err) : 0;
    char *n = realloc(k->logs, k->logs_len + (size_t)hl + el + 1);
    if (!n)
        return;
    k->logs = n;
    memcpy(k->logs + k->logs_len, head, (size_t)hl);
    if (el)
        memcpy(k->logs + k->logs_len + hl, err, el);
    k->logs_len += (size_t)hl + el;
    k->logs[k->logs_len] = 0;
}

/* Kills whatever runs of k (SIGCONT first: a stopped process) and forgets
 * it; for a test that fails before k9_finish. */
static void k9_reap(struct k9 *k)
{
    for (int i = 0; i < 2; i++)
        if (k->alive[i]) {
            kill(k->proc[i].pid, SIGCONT);
            kill(k->proc[i].pid, SIGKILL);
            waitpid(k->proc[i].pid, NULL, 0);
            k->alive[i] = false;
        }
    k9_live = NULL;
}

static int free_port(void);
static int http_get(int port, const char *path, char *body, size_t size);

static void k9_spawn(k9_t *k, int i)
{
    char s[12][300], port[16];
    snprintf(port, sizeof port, "%d", k->port[i]);
    snprintf(s[0], sizeof s[0], "app_id=%s", k->app_id);
    snprintf(s[1], sizeof s[1], "reltest.input_topic=%s", k->in);
    snprintf(s[2], sizeof s[2], "reltest.output_topic=%s", k->out);
    const char *args[] = {"worker", "--app", mph_cli_plugin("reltest"), "--broker",
                          cluster->broker, "--web-port", port, "--workers", "2",
                          "--datadir", k->datadir[i], "--set", s[0], "--set", s[1], "--set",
                          s[2], "--set", "reltest.partitions=4", "--set", "topic_partitions=4",
                          "--set", "store=rocksdb",
                          "--set", "processing_guarantee=exactly_once", "--set",
                          "session_timeout_ms=6000", "--set", "log_level=info", NULL};
    mph_cli_spawn(&k->proc[i], "eosk9", args, NULL, NULL, -1);
    k->alive[i] = true;
}

/* Produces the reltest contract's records at a steady pace. */
static void *k9_driver(void *arg)
{
    k9_t *k = arg;
    int seq[K9_KEYS] = {0};
    for (int id = 0; id < k->total; id++) {
        char key[16], val[160];
        int kk = id % K9_KEYS;
        snprintf(key, sizeof key, "k%d", kk);
        int len = snprintf(val, sizeof val, "{\"id\":%d,\"key\":\"%s\",\"seq\":%d,\"ts\":%lld}",
                           id, key, seq[kk]++, (long long)mph_clock_wall_ms());
        int32_t part = mph__kafka_partition_for(key, strlen(key), 4);
        mph_test_produce(cluster, k->in, part, key, strlen(key), val, (size_t)len);
        k->count[kk]++;
        if (id % 500 == 499) {
            mph_test_flush(cluster);
            usleep((useconds_t)k->pause_us);
        }
    }
    mph_test_flush(cluster);
    ck_pr_store_int(&k->produced, k->total);
    ck_pr_store_int(&k->done, 1);
    return NULL;
}

static void on_k9_out(const rd_kafka_message_t *m, void *opaque)
{
    seen_t *s = opaque;
    const char *p = m->payload ? memmem(m->payload, m->len, "\"id\":", 5) : NULL;
    int id = p ? atoi(p + 5) : -1;
    if (id < 0 || id >= s->max)
        s->bad++;
    else
        s->times[id]++;
}

static void on_k9_changelog(const rd_kafka_message_t *m, void *opaque)
{
    int64_t *v = opaque;
    char key[16];
    size_t l = m->key_len < sizeof key - 1 ? m->key_len : sizeof key - 1;
    memcpy(key, m->key, l);
    key[l] = 0;
    int kk = key[0] == 'k' ? atoi(key + 1) : -1;
    int64_t x = 0;
    if (kk >= 0 && kk < K9_KEYS && m->payload && m->len == 8) {
        for (int i = 0; i < 8; i++)
            x = (int64_t)(((uint64_t)x << 8) | ((const unsigned char *)m->payload)[i]);
        v[kk] = x;
    }
}

/* RocksDB shards left on disk: the largest value of each key over both
 * hosts' shards (older copies of partitions that moved stay behind, at
 * their last checkpoint) and whether any exceeds the truth (a value of an
 * aborted transaction written to RocksDB). */
typedef struct k9_disk {
    int64_t max[K9_KEYS];
    const int64_t *truth;
    int over;
} k9_disk_t;

static mph_err_t on_k9_disk(const void *key, size_t klen, const void *val, size_t vlen,
                            void *opaque)
{
    k9_disk_t *d = opaque;
    char k[16];
    size_t l = klen < sizeof k - 1 ? klen : sizeof k - 1;
    memcpy(k, key, l);
    k[l] = 0;
    int kk = k[0] == 'k' ? atoi(k + 1) : -1;
    int64_t x = 0;
    if (kk < 0 || kk >= K9_KEYS || vlen != 8)
        return MPH_OK;
    for (int i = 0; i < 8; i++)
        x = (int64_t)(((uint64_t)x << 8) | ((const unsigned char *)val)[i]);
    if (x > d->truth[kk])
        d->over++;
    if (x > d->max[kk])
        d->max[kk] = x;
    return MPH_OK;
}

/* The two processes of a k9 run: each made after the other (the first
 * creates the app's topics). */
static k9_t *k9_new(const char *tag, int total, int pause_us)
{
    k9_t *k = calloc(1, sizeof *k);
    k->total = total;
    k->pause_us = pause_us;
    mph_test_unique(tag, k->app_id, sizeof k->app_id);
    snprintf(k->in, sizeof k->in, "%s-in", k->app_id);
    snprintf(k->out, sizeof k->out, "%s-out", k->app_id);
    mph_test_create_topic(cluster, k->in, 4);
    for (int i = 0; i < 2; i++) {
        mph_test_tmpdir("eosk9", k->datadir[i], sizeof k->datadir[i]);
        k->port[i] = free_port();
        k9_spawn(k, i);
        free(mph_cli_wait_for(&k->proc[i], k->proc[i].err_path, "worker running", 60000));
    }
    k9_live = k;
    return k;
}

/* How many keys of `counts` the HTTP view (both processes, each key
 * served by exactly one) does not show at the truth; shown: say which. */
static int k9_web_wrong(const k9_t *k, bool show)
{
    int wrong = 0;
    for (int kk = 0; kk < K9_KEYS; kk++) {
        char path[64], body[256];
        snprintf(path, sizeof path, "/tables/counts/k%d", kk);
        int served = 0, st[2];
        long long v = -1;
        for (int i = 0; i < 2; i++) {
            st[i] = http_get(k->port[i], path, body, sizeof body);
            if (st[i] == 200) {
                served++;
                v = atoll(body);
            }
        }
        if ((served != 1 || v != k->count[kk]) && wrong++ < 5 && show)
            fprintf(stderr, "eos: %s: web counts k%d = %lld (HTTP %d and %d: %s), truth %lld\n",
                    k->app_id, kk, v, st[0], st[1], body, (long long)k->count[kk]);
    }
    return wrong;
}

/* Waits for the whole output, compares the HTTP view of `counts` (both
 * processes, each key served by one) with the truth, stops both processes
 * gracefully (stderr of each in errs[i] when errs, to free), then checks
 * the output exactly once, the changelog and the RocksDB shards. */
static void k9_finish(k9_t *k, char **errs)
{
    int got = 0, bad = 0;
    int64_t t0 = mph_clock_mono_ns();
    for (int t = 0; t < 240 && got < k->total; t += 2) {
        got = read_committed(k->out, k->total, 1500, NULL, NULL);
        if (got < k->total)
            sleep(2);
    }
    fprintf(stderr, "eos: %s: %d of %d outputs read committed after %.1f s\n", k->app_id, got,
            k->total, (double)(mph_clock_mono_ns() - t0) / 1e9);
    /* The HTTP view, once the whole output is committed (nothing is in
     * flight then: every input's transaction has committed) and the group
     * has settled (a process killed with -9 stays a member until its
     * session times out; until the rebalance that follows, its partitions
     * are on neither process: 421). */
    int web_wrong = k9_web_wrong(k, false);
    int64_t w0 = mph_clock_mono_ns();
    for (int tries = 0; web_wrong && tries < 90; tries++) {
        sleep(1);
        /* Bounded in time too: a process that stopped answering makes
         * each request wait for its timeout. */
        bool last = tries == 89 || mph_clock_mono_ns() - w0 > 150000000000LL;
        web_wrong = k9_web_wrong(k, last);
        if (last)
            break;
    }
    cr_expect_eq(web_wrong, 0, "the HTTP view of counts differs from the truth");
    bad += web_wrong != 0;
    /* Stop both gracefully: nothing may change after this. */
    for (int i = 0; i < 2; i++) {
        kill(k->proc[i].pid, SIGTERM);
        mph_cli_result_t r = mph_cli_finish(&k->proc[i], 60000);
        k->alive[i] = false;
        k9_keep_log(k, i, "stopped at the end", r.err);
        cr_expect_eq(r.status, 0, "worker %d: %s", i, r.err);
        bad += r.status != 0;
        if (errs) {
            errs[i] = r.err;
            r.err = NULL;
        }
        mph_cli_result_free(&r);
    }
    seen_t s = {.max = k->total, .times = calloc((size_t)k->total, sizeof(int))};
    got = read_committed(k->out, -1, 3000, on_k9_out, &s);
    int missing = 0, twice = 0;
    for (int id = 0; id < k->total; id++) {
        missing += s.times[id] == 0;
        twice += s.times[id] > 1;
    }
    fprintf(stderr, "eos: %s: output %d records for %d inputs: %d missing, %d twice\n",
            k->app_id, got, k->total, missing, twice);
    cr_expect_eq(missing, 0);
    cr_expect_eq(twice, 0, "duplicates in the read_committed output");
    cr_expect_eq(s.bad, 0);
    bad += missing != 0 || twice != 0 || s.bad != 0;
    free(s.times);
    int64_t v[K9_KEYS] = {0};
    char cl[256];
    snprintf(cl, sizeof cl, "%s-counts-changelog", k->app_id);
    read_committed(cl, -1, 3000, on_k9_changelog, v);
    int wrong = 0;
    for (int kk = 0; kk < K9_KEYS; kk++)
        if (v[kk] != k->count[kk] && wrong++ < 5)
            fprintf(stderr, "eos: %s: counts k%d = %lld, truth %lld\n", k->app_id, kk,
                    (long long)v[kk], (long long)k->count[kk]);
    cr_expect_eq(wrong, 0, "the counts changelog differs from the truth");
    bad += wrong != 0;
    k9_disk_t d = {.truth = k->count};
    for (int i = 0; i < 2; i++) {
        char err[256];
        mph_conf_t *conf = mph_conf_new();
        mph_conf_set(conf, "app_id", k->app_id, err, sizeof err);
        mph_conf_set(conf, "datadir", k->datadir[i], err, sizeof err);
        mph_err_t e = mph_table_local_foreach(conf, "counts", on_k9_disk, &d, NULL, err,
                                              sizeof err);
        cr_expect(e == MPH_OK || e == MPH_ERR_NOENT, "%s", err);
        mph_conf_destroy(conf);
    }
    wrong = 0;
    for (int kk = 0; kk < K9_KEYS; kk++)
        if (d.max[kk] != k->count[kk] && wrong++ < 5)
            fprintf(stderr, "eos: %s: RocksDB counts k%d = %lld at most, truth %lld\n",
                    k->app_id, kk, (long long)d.max[kk], (long long)k->count[kk]);
    cr_expect_eq(wrong, 0, "the RocksDB shards (newest copy) differ from the truth");
    cr_expect_eq(d.over, 0, "a RocksDB value above the truth (an aborted transaction's)");
    bad += wrong != 0 || d.over != 0;
    /* A failure is to be explained from the processes' own words: all of
     * them, killed ones included, in order. */
    if (bad)
        fprintf(stderr, "eos: %s: the processes' logs:%s\n==== end of the logs ====\n",
                k->app_id, k->logs ? k->logs : " none");
    free(k->logs);
    k->logs = NULL;
    k9_live = NULL;
    for (int i = 0; i < 2; i++)
        mph_test_rmrf(k->datadir[i]);
}

Test(eos, kill_9_during_load_keeps_exactly_once, .timeout = 900)
{
    if (!need_real_broker("kill_9_during_load_keeps_exactly_once"))
        return;
    k9_t *k = k9_new("eos-k9", K9_TOTAL, 100000); /* about 5,000 records a second */
    pthread_t driver;
    cr_assert_eq(pthread_create(&driver, NULL, k9_driver, k), 0);
    uint64_t st = 14;
    int kills = 0;
    while (kills < 10) {
        usleep((useconds_t)(2000000 + mph_test_rand(&st) % 2000000));
        int i = (int)(mph_test_rand(&st) % 2);
        kill(k->proc[i].pid, SIGKILL);
        mph_cli_result_t r = mph_cli_finish(&k->proc[i], 30000);
        k9_keep_log(k, i, "killed with -9", r.err);
        mph_cli_result_free(&r);
        kills++;
        usleep((useconds_t)(mph_test_rand(&st) % 3000000));
        k9_spawn(k, i);
    }
    pthread_join(driver, NULL);
    fprintf(stderr, "eos: kill -9: %d kills during the load of %d records\n", kills, K9_TOTAL);
    /* The restarted process serves the web view once it runs again. */
    for (int i = 0; i < 2; i++)
        free(mph_cli_wait_for(&k->proc[i], k->proc[i].err_path, "worker running", 60000));
    k9_finish(k, NULL);
    free(k);
}

/* ---- (8) the lost assignment: a zombie ---- */

/* App app_id's committed offsets of topic in, per partition (-1: none),
 * read read_committed (stable offsets only). */
static void committed_offsets(const char *app_id, const char *in, int64_t off[4])
{
    char err[512];
    mph_conf_t *conf = mph_conf_new();
    mph_conf_set(conf, "broker", cluster->broker, err, sizeof err);
    mph_conf_set(conf, "app_id", app_id, err, sizeof err);
    mph_conf_set(conf, "processing_guarantee", "exactly_once", err, sizeof err);
    rd_kafka_conf_t *kc =
        mph__kafka_conf_new(cluster->env, conf, MPH__KAFKA_CONSUMER, err, sizeof err);
    cr_assert_not_null(kc, "%s", err);
    rd_kafka_t *rk = mph__kafka_new(kc, MPH__KAFKA_CONSUMER, err, sizeof err);
    cr_assert_not_null(rk, "%s", err);
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(4);
    for (int p = 0; p < 4; p++)
        rd_kafka_topic_partition_list_add(tp, in, p);
    /* A broker started a moment ago may still be loading the group
     * coordinator ("Coordinator load in progress"): ask again. */
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR__TIMED_OUT;
    for (int tries = 0; tries < 5 && e; tries++) {
        if (tries)
            sleep(2);
        e = rd_kafka_committed(rk, tp, 30000);
    }
    cr_assert_eq(e, RD_KAFKA_RESP_ERR_NO_ERROR, "%s", rd_kafka_err2str(e));
    for (int p = 0; p < 4; p++)
        off[p] = tp->elems[p].err ? -2 : tp->elems[p].offset;
    rd_kafka_topic_partition_list_destroy(tp);
    rd_kafka_destroy(rk); /* never subscribed: leaves no group member */
    mph_conf_destroy(conf);
}

/* Process A is frozen (SIGSTOP) past session_timeout_ms under load while B
 * takes over all partitions, then resumed (SIGCONT): A finds its
 * assignment lost, aborts its open transaction and never commits in the
 * old generation (the group's committed offsets never go back), then
 * rejoins. Outputs stay exactly once (read_committed), the tables exact
 * (changelog, HTTP view, RocksDB), and both processes keep running. */
Test(eos, zombie_aborts_and_never_commits_after_resume, .timeout = 900)
{
    if (!need_real_broker("zombie_aborts_and_never_commits_after_resume"))
        return;
    k9_t *k = k9_new("eos-zo", 50000, 200000); /* about 2,500 records a second */
    pthread_t driver;
    cr_assert_eq(pthread_create(&driver, NULL, k9_driver, k), 0);
    sleep(3);
    kill(k->proc[0].pid, SIGSTOP);
    sleep(6 + 8); /* session_timeout_ms=6000, and time for B to take over */
    int64_t before[4], after[4];
    committed_offsets(k->app_id, k->in, before);
    kill(k->proc[0].pid, SIGCONT);
    sleep(8);
    committed_offsets(k->app_id, k->in, after);
    int back = 0;
    for (int p = 0; p < 4; p++) {
        fprintf(stderr, "eos: zombie: partition %d committed %lld before the resume, %lld after\n",
                p, (long long)before[p], (long long)after[p]);
        back += after[p] < before[p];
    }
    cr_expect_eq(back, 0, "the zombie committed offsets of the old generation after its resume");
    pthread_join(driver, NULL);
    char *errs[2] = {NULL, NULL};
    k9_finish(k, errs);
    cr_assert_not_null(errs[0]);
    cr_expect(strstr(errs[0], "partitions lost to the group") != NULL ||
                  strstr(errs[0], "assignment lost") != NULL,
              "the resumed process never found its assignment lost:\n%s", errs[0]);
    cr_expect(strstr(errs[0], "aborting the open transaction") != NULL,
              "the resumed process did not abort its transaction:\n%s", errs[0]);
    cr_expect(strstr(errs[0], "producer fenced") == NULL, "%s", errs[0]);
    free(errs[0]);
    free(errs[1]);
    free(k);
}

/* ---- (9) the previous owner's transaction ends after the hand-over ---- */

/* A partition's previous owner sent its offsets in a transaction whose
 * commit is slow, and the group handed the partition over meanwhile (its
 * offsets were sent in the old generation, so the group took them). The
 * next owner must restore that transaction's changelog records too:
 * recovery reads a changelog up to its last stable offset, so it must not
 * begin before the transaction ended (coordinator.c, await_stable_offsets);
 * started at once, it stops before those records while the offsets they
 * go with count, and their updates are lost. The previous owner is played
 * by a plain transactional producer: one key's count raised by 1,000,000
 * in the changelog, the input's committed offset sent again, committed
 * only 5 s after the app was started. */
typedef struct prev_owner {
    rd_kafka_t *p;
    int delay_s;
    rd_kafka_error_t *err;
} prev_owner_t;

static void *commit_later(void *arg)
{
    prev_owner_t *po = arg;
    sleep((unsigned)po->delay_s);
    po->err = rd_kafka_commit_transaction(po->p, 30000);
    return NULL;
}

/* A previous owner of key k<kk>'s partition, played by a transactional
 * producer (transactional.id <app_id>-<tag>): its open transaction holds a
 * changelog record raising the count by 1,000,000 (t follows), and with
 * offsets the input partition's committed offset, sent again. */
static rd_kafka_t *prev_owner_open(run_t *r, truth_t *t, int kk, const char *tag,
                                   bool offsets)
{
    char err[512], txid[300], cl[256], key[16];
    snprintf(key, sizeof key, "k%d", kk);
    snprintf(txid, sizeof txid, "%s-%s", r->app_id, tag);
    snprintf(cl, sizeof cl, "%s-counts-changelog", r->app_id);
    int32_t part = mph__kafka_partition_for(key, strlen(key), PARTS);
    rd_kafka_conf_t *pc = rd_kafka_conf_new();
    const char *servers = strstr(cluster->broker, "://"); /* kafka://host:port */
    servers = servers ? servers + 3 : cluster->broker;
    cr_assert_eq(rd_kafka_conf_set(pc, "bootstrap.servers", servers, err, sizeof err),
                 RD_KAFKA_CONF_OK, "%s", err);
    cr_assert_eq(rd_kafka_conf_set(pc, "transactional.id", txid, err, sizeof err),
                 RD_KAFKA_CONF_OK, "%s", err);
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    rd_kafka_error_t *e = rd_kafka_init_transactions(p, 60000);
    cr_assert_null(e, "%s", e ? rd_kafka_error_string(e) : "");
    cr_assert_null(rd_kafka_begin_transaction(p));
    t->count[kk] += 1000000;
    unsigned char v[MPH_CODEC_I64_SIZE];
    mph__codec_i64_encode(t->count[kk], v);
    cr_assert_eq(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(cl), RD_KAFKA_V_PARTITION(part),
                                   RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE(v, sizeof v),
                                   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                 RD_KAFKA_RESP_ERR_NO_ERROR);
    if (offsets) {
        int64_t off[4];
        committed_offsets(r->app_id, r->in, off);
        cr_assert_geq(off[part], 0, "no committed offset of %s [%d]", r->in, (int)part);
        rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(offs, r->in, part)->offset = off[part];
        rd_kafka_consumer_group_metadata_t *g = rd_kafka_consumer_group_metadata_new(r->app_id);
        e = rd_kafka_send_offsets_to_transaction(p, offs, g, 30000);
        cr_assert_null(e, "%s", e ? rd_kafka_error_string(e) : "");
        rd_kafka_consumer_group_metadata_destroy(g);
        rd_kafka_topic_partition_list_destroy(offs);
    }
    cr_assert_eq(rd_kafka_flush(p, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    return p;
}

/* Two previous owners: one sent its offsets and commits 5 s after the app
 * started (the coordinator's stable-offset wait covers it); the other's
 * transaction has no offsets and commits 10 s after the start, so the
 * restore, which begins after the first committed, finds it still open —
 * as it finds a committed transaction whose markers the broker has not
 * written yet — and must wait for it (recovery.c reads up to the high
 * watermark): ended at the last stable offset it missed k8's record. */
Test(eos, restore_waits_for_the_previous_owners_transaction, .timeout = 400)
{
    if (!need_real_broker("restore_waits_for_the_previous_owners_transaction"))
        return;
    run_t r = {0};
    truth_t t = {0};
    names(&r, "eos-po");
    build(&r, "memory", NULL);
    produce(&r, &t, 0, 1000, NULL, 0);
    start(&r);
    cr_assert_eq(wait_output(&r, t.n, 120), t.n);
    cr_expect_eq(stop(&r), MPH_OK);
    mph_app_destroy(r.app);

    prev_owner_t po[2] = {{prev_owner_open(&r, &t, 7, "previous-owner", true), 5, NULL},
                          {prev_owner_open(&r, &t, 8, "unmarked", false), 10, NULL}};
    /* The next owner starts while both transactions are open. */
    pthread_t th[2];
    build(&r, "memory", NULL);
    int64_t t0 = mph_clock_mono_ns();
    start(&r);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, commit_later, &po[i]), 0);
    produce(&r, &t, 1000, 1000, NULL, 0);
    cr_expect_eq(wait_output(&r, t.n, 120), t.n);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        cr_assert_null(po[i].err, "%s", po[i].err ? rd_kafka_error_string(po[i].err) : "");
    }
    fprintf(stderr, "eos: %s: the previous owners committed 5 and 10 s after the start; all "
            "outputs after %.1f s\n", r.app_id, (double)(mph_clock_mono_ns() - t0) / 1e9);
    verify(&r, &t, r.app); /* k7 and k8 carry the previous owners' 1,000,000 */
    cr_expect_eq(stop(&r), MPH_OK);
    mph_app_destroy(r.app);
    for (int i = 0; i < 2; i++)
        rd_kafka_destroy(po[i].p);
    mph_test_rmrf(r.datadir);
}

/* ---- (10) a revocation handled after the coordinator gave up on it ---- */

/* The worker of process A is held inside a batch (its transaction open,
 * records of every partition in it) while B joins: A's coordinator stops
 * waiting for the revocation (shutdown_timeout_ms 500), unassigns and
 * rejoins, and the group gives two partitions to B, which restores them
 * and starts from the committed offsets. When A's worker goes on, it must
 * not commit: its consumer's group metadata names the new generation by
 * then, so the broker would take its offsets, and B would have processed
 * the same records (duplicates) or restored without their table updates
 * (lost). The late revocation counts as lost instead (worker.c,
 * eos_abandoned): A aborts and drops its shards. */
static bool wait_partitions_of(mph_app_t *app, uint64_t n, int timeout_s)
{
    for (int i = 0; i < timeout_s * 10; i++) {
        if (ck_pr_load_64(&app->workers[0]->mon->partitions) == n)
            return true;
        usleep(100000);
    }
    return false;
}

Test(eos, late_revocation_commits_nothing, .timeout = 400)
{
    if (!need_real_broker("late_revocation_commits_nothing"))
        return;
    const char *extra[] = {"workers", "1", "shutdown_timeout_ms", "500", NULL};
    run_t a = {0}, b;
    truth_t t = {0};
    names(&a, "eos-lr");
    build(&a, "memory", extra);
    produce(&a, &t, 0, 2000, NULL, 0);
    start(&a);
    cr_assert_eq(wait_output(&a, t.n, 120), t.n);
    cr_assert(wait_partitions_of(a.app, 4, 30));

    ck_pr_store_int(&gate_reached, 0);
    ck_pr_store_int(&gate_open, 0);
    produce(&a, &t, 2000, 200, NULL, 0); /* every partition: in A's open transaction */
    mph_test_produce(cluster, a.in, 0, "gate", 4, "gate", 4);
    mph_test_flush(cluster);
    for (int i = 0; i < 600 && !ck_pr_load_int(&gate_reached); i++)
        usleep(50000);
    cr_assert(ck_pr_load_int(&gate_reached), "the gate was never reached");

    b = a;
    mph_test_tmpdir("eos", b.datadir, sizeof b.datadir);
    build(&b, "memory", extra);
    start(&b);
    /* A's coordinator gives up on its worker after 1.5 s and rejoins; B
     * takes two partitions, restores them and fetches their offsets. A's
     * assignment waits for the late answer (up to 10 s). */
    bool moved = wait_partitions_of(b.app, 2, 60);
    sleep(2);
    ck_pr_store_int(&gate_open, 1);
    cr_assert(moved, "B never got two partitions");

    produce(&a, &t, 2200, 1000, NULL, 0);
    cr_expect_eq(wait_output(&a, t.n, 120), t.n);
    cr_expect_eq(stop(&b), MPH_OK);
    cr_expect_eq(stop(&a), MPH_OK);
    verify(&a, &t, NULL); /* outputs exactly once, changelog equal to the truth */
    mph_app_destroy(b.app);
    mph_app_destroy(a.app);
    mph_test_rmrf(a.datadir);
    mph_test_rmrf(b.datadir);
}

/* ---- (6) the mock cluster cannot run exactly_once ---- */

/* librdkafka's mock cluster emulates neither read_committed nor
 * transactional offset commits: the app refuses the pair when it is made,
 * naming both settings, instead of running without the guarantee. */
Test(eos, mock_broker_refuses_exactly_once)
{
    const char *mocks[] = {"mock://", "mock://3"};
    for (size_t i = 0; i < 2; i++) {
        char err[512] = "";
        mph_conf_t *conf = mph_conf_new();
        cr_assert_eq(mph_conf_set(conf, "app_id", "shop", err, sizeof err), MPH_OK, "%s", err);
        cr_assert_eq(mph_conf_set(conf, "broker", mocks[i], err, sizeof err), MPH_OK, "%s", err);
        cr_assert_eq(mph_conf_set(conf, "processing_guarantee", "exactly_once", err, sizeof err),
                     MPH_OK, "%s", err);
        mph_app_t *app = mph_app_new(conf, err, sizeof err);
        cr_expect_null(app, "exactly_once on %s must be refused", mocks[i]);
        if (app)
            mph_app_destroy(app);
        else
            mph_conf_destroy(conf); /* still the caller's on failure */
        cr_expect(strstr(err, "processing_guarantee=exactly_once") != NULL, "%s", err);
        char want[64];
        snprintf(want, sizeof want, "broker=%s ", mocks[i]);
        cr_expect(strstr(err, want) != NULL, "%s", err);
        cr_expect(strstr(err, "read_committed") != NULL, "%s", err);
    }
    /* at_least_once on the mock, and exactly_once on a kafka:// broker,
     * are accepted. */
    char err[512] = "";
    mph_conf_t *conf = mph_conf_new();
    mph_conf_set(conf, "app_id", "shop", err, sizeof err);
    mph_conf_set(conf, "broker", "mock://", err, sizeof err);
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    cr_expect_not_null(app, "%s", err);
    mph_app_destroy(app);
    conf = mph_conf_new();
    mph_conf_set(conf, "app_id", "shop", err, sizeof err);
    mph_conf_set(conf, "broker", "kafka://127.0.0.1:9", err, sizeof err);
    mph_conf_set(conf, "processing_guarantee", "exactly_once", err, sizeof err);
    app = mph_app_new(conf, err, sizeof err);
    cr_expect_not_null(app, "%s", err);
    mph_app_destroy(app);
}

/* The same through the CLI: the worker exits at once with the error. */
Test(eos, cli_mock_broker_refuses_exactly_once)
{
    char dir[256];
    mph_test_tmpdir("eos-mock", dir, sizeof dir);
    const char *args[] = {"worker", "--app", mph_cli_plugin("forward"), "--broker", "mock://",
                          "--without-web", "--datadir", dir, "--set", "app_id=eos-mock",
                          "--set", "processing_guarantee=exactly_once", NULL};
    mph_cli_result_t r = mph_cli_run("eosmock", args, NULL, NULL, 60000);
    cr_expect_neq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.err, "processing_guarantee=exactly_once") != NULL, "%s", r.err);
    cr_expect(strstr(r.err, "broker=mock://") != NULL, "%s", r.err);
    mph_cli_result_free(&r);
    mph_test_rmrf(dir);
}

/* ---- (7) the examples through the CLI, by the setting alone ---- */

/* A TCP port that was free a moment ago. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* GET http://127.0.0.1:port<path> (HTTP/1.0): the status (-1 when it cannot
 * connect or does not answer within 10 s) and the body in body[size]. */
static int http_get(int port, const char *path, char *body, size_t size)
{
    body[0] = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {10, 0};
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    static char buf[65536];
    size_t got = 0;
    ssize_t r;
    while (got < sizeof buf - 1 && (r = read(fd, buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t)r;
    close(fd);
    buf[got] = 0;
    int status = -1;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    const char *b = strstr(buf, "\r\n\r\n");
    snprintf(body, size, "%s", b ? b + 4 : "");
    return status;
}

#define WC_WORDS 60
#define WC_PROCS 2

typedef struct cliapp {
    const char *plugin; /* "wordcount" or "forward" */
    bool instance_id;
    char app_id[128], in[160], out[160], datadir[WC_PROCS][256];
    int port[WC_PROCS];
    mph_cli_proc_t proc[WC_PROCS];
} cliapp_t;

static void cli_spawn(cliapp_t *c, int i)
{
    char s[8][300], port[16];
    snprintf(port, sizeof port, "%d", c->port[i]);
    snprintf(s[0], sizeof s[0], "app_id=%s", c->app_id);
    snprintf(s[1], sizeof s[1], "%s.input_topic=%s", c->plugin, c->in);
    snprintf(s[2], sizeof s[2], "%s.output_topic=%s", c->plugin, c->out);
    snprintf(s[3], sizeof s[3], "group_instance_id=%s-p%d", c->app_id, i);
    const char *args[40] = {"worker", "--app", mph_cli_plugin(c->plugin), "--broker",
                            cluster->broker, "--web-port", port, "--workers", "2",
                            "--datadir", c->datadir[i], "--set", s[0], "--set", s[1],
                            "--set", "topic_partitions=4", "--set",
                            "processing_guarantee=exactly_once", "--set", "log_level=info"};
    int n = 21;
    if (!strcmp(c->plugin, "forward")) {
        args[n++] = "--set";
        args[n++] = s[2];
    }
    if (c->instance_id) {
        args[n++] = "--set";
        args[n++] = s[3];
    }
    args[n] = NULL;
    mph_cli_spawn(&c->proc[i], "eoscli", args, NULL, NULL, -1);
}

/* Starts the first process, produces the first half, starts the second
 * (a rebalance under load), produces the rest. */
static void cli_start(cliapp_t *c, const char *tag)
{
    mph_test_unique(tag, c->app_id, sizeof c->app_id);
    snprintf(c->in, sizeof c->in, "%s-in", c->app_id);
    snprintf(c->out, sizeof c->out, "%s-out", c->app_id);
    mph_test_create_topic(cluster, c->in, PARTS);
    for (int i = 0; i < WC_PROCS; i++) {
        mph_test_tmpdir("eoscli", c->datadir[i], sizeof c->datadir[i]);
        c->port[i] = free_port();
    }
}

static void cli_up(cliapp_t *c, int i)
{
    cli_spawn(c, i);
    free(mph_cli_wait_for(&c->proc[i], c->proc[i].err_path, "worker running", 60000));
}

static void cli_stop(cliapp_t *c)
{
    for (int i = 0; i < WC_PROCS; i++) {
        kill(c->proc[i].pid, SIGTERM);
        mph_cli_result_t r = mph_cli_finish(&c->proc[i], 60000);
        cr_expect_eq(r.status, 0, "%s worker %d: %s", c->plugin, i, r.err);
        cr_expect(strstr(r.err, "producer fenced") == NULL, "%s", r.err);
        mph_cli_result_free(&r);
    }
    for (int i = 0; i < WC_PROCS; i++)
        mph_test_rmrf(c->datadir[i]);
}

typedef struct wfold {
    int64_t value[WC_WORDS];
    int bad;
} wfold_t;

static void on_wc_changelog(const rd_kafka_message_t *m, void *opaque)
{
    wfold_t *f = opaque;
    char key[16];
    size_t l = m->key_len < sizeof key - 1 ? m->key_len : sizeof key - 1;
    memcpy(key, m->key, l);
    key[l] = 0;
    int k = key[0] == 'w' ? atoi(key + 1) : -1;
    int64_t v = 0;
    if (k < 0 || k >= WC_WORDS || !m->payload || mph__codec_i64_decode(m->payload, m->len, &v))
        f->bad++;
    else
        f->value[k] = v;
}

static void produce_lines(cliapp_t *c, int64_t *truth, int first, int n)
{
    for (int id = first; id < first + n; id++) {
        char line[128];
        int len = 0;
        /* Five words a line, spaces and tabs between them. */
        for (int j = 0; j < 5; j++) {
            int w = (id * 7 + j * 13) % WC_WORDS;
            const char *sep = j == 0 ? "" : j % 2 ? " " : "\t";
            len += snprintf(line + len, sizeof line - (size_t)len, "%sw%d", sep, w);
            truth[w]++;
        }
        char key[16];
        snprintf(key, sizeof key, "l%d", id);
        mph_test_produce(cluster, c->in, id % PARTS, key, strlen(key), line, (size_t)len);
    }
    mph_test_flush(cluster);
}

/* How many words the HTTP view of both processes does not show at the
 * truth (each served by exactly one); shown: say which. */
static int wc_web_wrong(const cliapp_t *c, const int64_t *truth, bool show)
{
    int wrong = 0;
    for (int w = 0; w < WC_WORDS; w++) {
        char path[128], body[256];
        snprintf(path, sizeof path, "/tables/word_counts/w%d", w);
        int served = 0, st[WC_PROCS];
        long long v = -1;
        for (int i = 0; i < WC_PROCS; i++) {
            st[i] = http_get(c->port[i], path, body, sizeof body);
            if (st[i] == 200) {
                served++;
                v = atoll(body);
            } else if (st[i] != 307 && st[i] != 421) {
                served = -1; /* an answer that is neither */
            }
        }
        if ((served != 1 || v != truth[w]) && wrong++ < 5 && show)
            fprintf(stderr, "eos: %s: web w%d = %lld (HTTP %d and %d: %s), truth %lld\n",
                    c->app_id, w, v, st[0], st[1], body, (long long)truth[w]);
    }
    return wrong;
}

static void cli_wordcount(bool instance_id)
{
    cliapp_t c = {.plugin = "wordcount", .instance_id = instance_id};
    int64_t truth[WC_WORDS] = {0};
    cli_start(&c, instance_id ? "eos-wc-iid" : "eos-wc");
    cli_up(&c, 0);
    produce_lines(&c, truth, 0, 2000);
    cli_up(&c, 1);
    produce_lines(&c, truth, 2000, 2000);
    char cl[256];
    snprintf(cl, sizeof cl, "%s-word_counts-changelog", c.app_id);
    wfold_t f;
    int wrong = WC_WORDS;
    for (int t = 0; t < 180 && wrong; t += 2) {
        memset(&f, 0, sizeof f);
        read_committed(cl, -1, 2000, on_wc_changelog, &f);
        wrong = 0;
        for (int w = 0; w < WC_WORDS; w++)
            wrong += f.value[w] != truth[w];
        if (wrong)
            sleep(2);
    }
    for (int w = 0, shown = 0; w < WC_WORDS; w++)
        if (f.value[w] != truth[w] && shown++ < 5)
            fprintf(stderr, "eos: %s: changelog w%d = %lld, truth %lld\n", c.app_id, w,
                    (long long)f.value[w], (long long)truth[w]);
    cr_expect_eq(wrong, 0, "the word_counts changelog (read_committed) differs from the truth");
    cr_expect_eq(f.bad, 0);
    /* Over HTTP: each word is served (200) by the process that holds it;
     * the other redirects (307) or says it is not there (421). Waits out a
     * rebalance still under way (then both answer 421). */
    int web_wrong = wc_web_wrong(&c, truth, false);
    for (int tries = 0; web_wrong && tries < 60; tries++) {
        sleep(1);
        web_wrong = wc_web_wrong(&c, truth, tries == 59);
    }
    cr_expect_eq(web_wrong, 0, "the HTTP table view differs from the truth");
    cli_stop(&c);
    fprintf(stderr, "eos: %s: %d words, changelog and web exact: %s\n", c.app_id, WC_WORDS,
            wrong || web_wrong ? "no" : "yes");
}

static void cli_forward(bool instance_id)
{
    cliapp_t c = {.plugin = "forward", .instance_id = instance_id};
    cli_start(&c, instance_id ? "eos-fw-iid" : "eos-fw");
    const int total = 6000;
    cli_up(&c, 0);
    for (int half = 0; half < 2; half++) {
        if (half == 1)
            cli_up(&c, 1);
        for (int id = half * total / 2; id < (half + 1) * total / 2; id++) {
            char key[16], val[16];
            snprintf(key, sizeof key, "k%d", id % NKEYS);
            snprintf(val, sizeof val, "%d", id);
            mph_test_produce(cluster, c.in, id % PARTS, key, strlen(key), val, strlen(val));
        }
        mph_test_flush(cluster);
    }
    int got = 0;
    for (int t = 0; t < 180 && got < total; t += 2) {
        got = read_committed(c.out, total, 1500, NULL, NULL);
        if (got < total)
            sleep(2);
    }
    cli_stop(&c);
    seen_t s = {.max = total, .times = calloc((size_t)total, sizeof(int))};
    got = read_committed(c.out, -1, 3000, on_out, &s);
    int missing = 0, twice = 0;
    for (int id = 0; id < total; id++) {
        missing += s.times[id] == 0;
        twice += s.times[id] > 1;
    }
    fprintf(stderr, "eos: %s: output %d records for %d inputs: %d missing, %d twice\n",
            c.app_id, got, total, missing, twice);
    cr_expect_eq(missing, 0);
    cr_expect_eq(twice, 0, "duplicates in the read_committed output");
    cr_expect_eq(s.bad, 0);
    free(s.times);
}

Test(eos, cli_wordcount_two_processes, .timeout = 600)
{
    if (need_real_broker("cli_wordcount_two_processes"))
        cli_wordcount(false);
}

Test(eos, cli_wordcount_two_processes_group_instance_id, .timeout = 600)
{
    if (need_real_broker("cli_wordcount_two_processes_group_instance_id"))
        cli_wordcount(true);
}

Test(eos, cli_forward_two_processes, .timeout = 600)
{
    if (need_real_broker("cli_forward_two_processes"))
        cli_forward(false);
}

Test(eos, cli_forward_two_processes_group_instance_id, .timeout = 600)
{
    if (need_real_broker("cli_forward_two_processes_group_instance_id"))
        cli_forward(true);
}

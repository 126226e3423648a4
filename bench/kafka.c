/*
 * The bench's own Kafka plumbing: the cluster (a real broker, or a mock
 * cluster the harness creates itself so that the load generator, the
 * baselines and every app share it), topic creation and deletion, consumer
 * group clean-up, end offsets, and the load generator.
 *
 * An app given mock:// would start a private mock cluster nobody else can
 * reach, so apps are always given kafka://<bootstrap> of this cluster.
 *
 * The engine's client settings are copied here (bench_kafka_engine_*) so
 * that the baselines use exactly what mephisto's clients use; they must
 * follow src/io/kafka.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "bench.h"

struct bench_kafka {
    char *bootstrap;
    char *app_broker;
    rd_kafka_t *mock_rk;
    rd_kafka_mock_cluster_t *mock;
    rd_kafka_t *admin; /* a producer handle for admin calls and offsets */
    int broker_pid;    /* a broker on this machine, or -1 */
};

static void conf_set(rd_kafka_conf_t *kc, const char *k, const char *v)
{
    char err[256];
    if (rd_kafka_conf_set(kc, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "mephisto-bench: librdkafka rejects %s=%s: %s\n", k, v,
                err);
        abort(); /* the harness's own fixed settings: a bug if rejected */
    }
}

bench_kafka_t *bench_kafka_new(const char *broker, char *errstr,
                               size_t errstr_size)
{
    char kerr[512];
    bench_kafka_t *k = calloc(1, sizeof *k);
    if (!k)
        goto fail_alloc;
    if (strncmp(broker, "mock://", 7) == 0) {
        rd_kafka_conf_t *kc = rd_kafka_conf_new();
        conf_set(kc, "log_level", "3");
        k->mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, kerr, sizeof kerr);
        if (!k->mock_rk) {
            rd_kafka_conf_destroy(kc);
            snprintf(errstr, errstr_size, "cannot start a mock cluster: %s",
                     kerr);
            goto fail_k;
        }
        k->mock = rd_kafka_mock_cluster_new(k->mock_rk, 1);
        if (!k->mock) {
            snprintf(errstr, errstr_size, "cannot start a mock cluster");
            goto fail_rk;
        }
        k->bootstrap = strdup(rd_kafka_mock_cluster_bootstraps(k->mock));
    } else if (strncmp(broker, "kafka://", 8) == 0 && broker[8]) {
        k->bootstrap = strdup(broker + 8);
    } else {
        snprintf(errstr, errstr_size,
                 "--broker: expected kafka://host:port or mock://, got '%s'",
                 broker);
        goto fail_k;
    }
    if (!k->bootstrap)
        goto fail_mock;
    size_t n = strlen(k->bootstrap) + 9;
    k->app_broker = malloc(n);
    if (!k->app_broker)
        goto fail_bootstrap;
    snprintf(k->app_broker, n, "kafka://%s", k->bootstrap);

    rd_kafka_conf_t *kc = bench_kafka_conf(k);
    conf_set(kc, "client.id", "mephisto-bench-admin");
    k->admin = rd_kafka_new(RD_KAFKA_PRODUCER, kc, kerr, sizeof kerr);
    if (!k->admin) {
        rd_kafka_conf_destroy(kc);
        snprintf(errstr, errstr_size, "cannot create a Kafka client: %s", kerr);
        goto fail_app_broker;
    }
    /* Fail early and clearly when nothing answers. */
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(k->admin, 0, NULL, &md, 10000);
    if (e) {
        snprintf(errstr, errstr_size, "broker %s does not answer: %s",
                 k->bootstrap, rd_kafka_err2str(e));
        goto fail_admin;
    }
    rd_kafka_metadata_destroy(md);
    k->broker_pid = -1;
    const char *colon = strrchr(k->bootstrap, ':');
    if (!k->mock && colon && !strchr(k->bootstrap, ',') &&
        (strncmp(k->bootstrap, "127.", 4) == 0 ||
         strncmp(k->bootstrap, "localhost:", 10) == 0))
        k->broker_pid = bench_find_listener(atoi(colon + 1));
    return k;

fail_admin:
    rd_kafka_destroy(k->admin);
fail_app_broker:
    free(k->app_broker);
fail_bootstrap:
    free(k->bootstrap);
fail_mock:
    if (k->mock)
        rd_kafka_mock_cluster_destroy(k->mock);
fail_rk:
    if (k->mock_rk)
        rd_kafka_destroy(k->mock_rk);
fail_k:
    free(k);
    return NULL;
fail_alloc:
    snprintf(errstr, errstr_size, "out of memory");
    return NULL;
}

void bench_kafka_destroy(bench_kafka_t *k)
{
    if (!k)
        return;
    rd_kafka_destroy(k->admin);
    if (k->mock)
        rd_kafka_mock_cluster_destroy(k->mock);
    if (k->mock_rk)
        rd_kafka_destroy(k->mock_rk);
    free(k->app_broker);
    free(k->bootstrap);
    free(k);
}

const char *bench_kafka_app_broker(const bench_kafka_t *k)
{
    return k->app_broker;
}

const char *bench_kafka_bootstrap(const bench_kafka_t *k)
{
    return k->bootstrap;
}

int bench_kafka_broker_pid(const bench_kafka_t *k)
{
    return k->broker_pid;
}

bool bench_kafka_is_mock(const bench_kafka_t *k)
{
    return k->mock != NULL;
}

rd_kafka_conf_t *bench_kafka_conf(const bench_kafka_t *k)
{
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    conf_set(kc, "bootstrap.servers", k->bootstrap);
    conf_set(kc, "log.connection.close", "false");
    conf_set(kc, "socket.keepalive.enable", "true");
    conf_set(kc, "allow.auto.create.topics", "false");
    conf_set(kc, "log_level", "3");
    return kc;
}

void bench_kafka_engine_producer(rd_kafka_conf_t *kc, int linger_ms)
{
    char num[16];
    snprintf(num, sizeof num, "%d", linger_ms);
    conf_set(kc, "enable.idempotence", "true");
    conf_set(kc, "acks", "all");
    conf_set(kc, "partitioner", "murmur2_random");
    conf_set(kc, "linger.ms", num);
    conf_set(kc, "batch.num.messages", "10000");
    conf_set(kc, "queue.buffering.max.messages", "1000000");
    conf_set(kc, "queue.buffering.max.kbytes", "1048576");
}

void bench_kafka_engine_consumer(rd_kafka_conf_t *kc, const char *group)
{
    conf_set(kc, "group.id", group);
    conf_set(kc, "auto.offset.reset", "earliest");
    conf_set(kc, "enable.partition.eof", "false");
    conf_set(kc, "partition.assignment.strategy", "range");
    conf_set(kc, "session.timeout.ms", "10000");
    conf_set(kc, "heartbeat.interval.ms", "1000");
    conf_set(kc, "fetch.wait.max.ms", "100");
    /* What the engine sets from its default stream_buffer_max: the
     * prefetch bound of the queue the partitions feed. */
    conf_set(kc, "queued.min.messages", "500000");
}

mph_err_t bench_topic_create(bench_kafka_t *k, const char *name, int partitions,
                             char *errstr, size_t errstr_size)
{
    /* A deleted topic's files go at once, not 60 s later in the middle of
     * the next runs (thousands of partitions keep a broker busy). */
    static const char *const nodelay[] = {"file.delete.delay.ms", "0", NULL};
    return bench_topic_create_conf(k, name, partitions, nodelay, errstr,
                                   errstr_size);
}

mph_err_t bench_topic_create_conf(bench_kafka_t *k, const char *name,
                                  int partitions, const char *const *configs,
                                  char *errstr, size_t errstr_size)
{
    if (k->mock) {
        rd_kafka_resp_err_t e =
            rd_kafka_mock_topic_create(k->mock, name, partitions, 1);
        if (e) {
            snprintf(errstr, errstr_size, "creating topic %s: %s", name,
                     rd_kafka_err2str(e));
            return MPH_ERR_KAFKA;
        }
        return MPH_OK;
    }
    char kerr[512];
    mph_err_t rc = MPH_OK;
    rd_kafka_NewTopic_t *nt =
        rd_kafka_NewTopic_new(name, partitions, 1, kerr, sizeof kerr);
    if (!nt) {
        snprintf(errstr, errstr_size, "topic %s: %s", name, kerr);
        return MPH_ERR_INVALID;
    }
    for (size_t i = 0; configs && configs[i] && configs[i + 1]; i += 2)
        if (rd_kafka_NewTopic_set_config(nt, configs[i], configs[i + 1])) {
            snprintf(errstr, errstr_size, "topic %s: bad config %s=%s", name,
                     configs[i], configs[i + 1]);
            rd_kafka_NewTopic_destroy(nt);
            return MPH_ERR_INVALID;
        }
    rd_kafka_queue_t *q = rd_kafka_queue_new(k->admin);
    rd_kafka_AdminOptions_t *ao =
        rd_kafka_AdminOptions_new(k->admin, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(ao, 60000, kerr, sizeof kerr);
    rd_kafka_AdminOptions_set_request_timeout(ao, 60000, kerr, sizeof kerr);
    rd_kafka_CreateTopics(k->admin, &nt, 1, ao, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 65000);
    if (!ev) {
        snprintf(errstr, errstr_size,
                 "creating topic %s: no answer within 65 s", name);
        rc = MPH_ERR_TIMEOUT;
    } else {
        size_t cnt = 0;
        const rd_kafka_CreateTopics_result_t *res =
            rd_kafka_event_CreateTopics_result(ev);
        const rd_kafka_topic_result_t **tr =
            res ? rd_kafka_CreateTopics_result_topics(res, &cnt) : NULL;
        if (rd_kafka_event_error(ev)) {
            snprintf(errstr, errstr_size, "creating topic %s: %s", name,
                     rd_kafka_event_error_string(ev));
            rc = MPH_ERR_KAFKA;
        } else if (cnt == 1 && rd_kafka_topic_result_error(tr[0])) {
            snprintf(
                errstr, errstr_size, "creating topic %s: %s", name,
                rd_kafka_topic_result_error_string(tr[0])
                    ? rd_kafka_topic_result_error_string(tr[0])
                    : rd_kafka_err2str(rd_kafka_topic_result_error(tr[0])));
            rc = MPH_ERR_KAFKA;
        }
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    if (rc)
        return rc;
    /* Wait until the metadata shows every partition with a leader. */
    for (int i = 0; i < 300; i++) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(k->admin, name, NULL);
        const struct rd_kafka_metadata *md = NULL;
        bool ready = false;
        if (rd_kafka_metadata(k->admin, 0, rkt, &md, 5000) == 0) {
            if (md->topic_cnt == 1 && !md->topics[0].err &&
                md->topics[0].partition_cnt == partitions) {
                ready = true;
                for (int p = 0; p < partitions; p++)
                    if (md->topics[0].partitions[p].leader < 0)
                        ready = false;
            }
            rd_kafka_metadata_destroy(md);
        }
        rd_kafka_topic_destroy(rkt);
        if (ready)
            return MPH_OK;
        bench_sleep_ms(100);
    }
    snprintf(errstr, errstr_size,
             "topic %s: partitions have no leader after 30 s", name);
    return MPH_ERR_TIMEOUT;
}

static void admin_call_wait(rd_kafka_queue_t *q)
{
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 60000);
    if (ev)
        rd_kafka_event_destroy(ev);
}

void bench_topic_delete(bench_kafka_t *k, const char *name)
{
    if (k->mock)
        return; /* the mock cluster goes away with the process */
    char kerr[256];
    rd_kafka_DeleteTopic_t *dt = rd_kafka_DeleteTopic_new(name);
    rd_kafka_queue_t *q = rd_kafka_queue_new(k->admin);
    rd_kafka_AdminOptions_t *ao =
        rd_kafka_AdminOptions_new(k->admin, RD_KAFKA_ADMIN_OP_DELETETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(ao, 60000, kerr, sizeof kerr);
    rd_kafka_DeleteTopics(k->admin, &dt, 1, ao, q);
    admin_call_wait(q);
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_queue_destroy(q);
    rd_kafka_DeleteTopic_destroy(dt);
}

void bench_app_forget(bench_kafka_t *k, const char *app_id)
{
    char dlq[300];
    snprintf(dlq, sizeof dlq, "%s-dead-letter", app_id);
    bench_topic_delete(k, dlq);
    bench_group_delete(k, app_id);
}

void bench_group_delete(bench_kafka_t *k, const char *group)
{
    if (k->mock)
        return;
    rd_kafka_DeleteGroup_t *dg = rd_kafka_DeleteGroup_new(group);
    rd_kafka_queue_t *q = rd_kafka_queue_new(k->admin);
    rd_kafka_DeleteGroups(k->admin, &dg, 1, NULL, q);
    admin_call_wait(q);
    rd_kafka_queue_destroy(q);
    rd_kafka_DeleteGroup_destroy(dg);
}

rd_kafka_t *bench_offsets_reader(bench_kafka_t *k, const char *group,
                                 char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *kc = bench_kafka_conf(k);
    conf_set(kc, "group.id", group);
    conf_set(kc, "client.id", "mephisto-bench-offsets");
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, errstr, errstr_size);
    if (!rk)
        rd_kafka_conf_destroy(kc);
    return rk;
}

int64_t bench_committed(rd_kafka_t *reader, const char *topic, int partitions)
{
    rd_kafka_topic_partition_list_t *tp =
        rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(tp, topic, p);
    int64_t sum = -1;
    if (rd_kafka_committed(reader, tp, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        sum = 0;
        for (int p = 0; p < partitions; p++)
            sum += tp->elems[p].offset > 0 ? tp->elems[p].offset : 0;
    }
    rd_kafka_topic_partition_list_destroy(tp);
    return sum;
}

int64_t bench_end_offsets(bench_kafka_t *k, const char *topic, int partitions)
{
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(l, topic, p)->offset =
            RD_KAFKA_OFFSET_END;
    int64_t sum = -1;
    /* offsets_for_times with OFFSET_END asks each leader for the end offsets
     * of all its partitions in one request. */
    if (rd_kafka_offsets_for_times(k->admin, l, 10000) ==
        RD_KAFKA_RESP_ERR_NO_ERROR) {
        sum = 0;
        for (int i = 0; i < l->cnt; i++) {
            if (l->elems[i].err || l->elems[i].offset < 0) {
                sum = -1;
                break;
            }
            sum += l->elems[i].offset;
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    return sum;
}

int bench_end_offsets_each(bench_kafka_t *k, const char *topic, int partitions,
                           int64_t *end)
{
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(l, topic, p)->offset =
            RD_KAFKA_OFFSET_END;
    int rc = -1;
    if (rd_kafka_offsets_for_times(k->admin, l, 10000) ==
        RD_KAFKA_RESP_ERR_NO_ERROR) {
        rc = 0;
        for (int i = 0; i < l->cnt; i++) {
            int p = l->elems[i].partition;
            if (l->elems[i].err || l->elems[i].offset < 0 || p < 0 ||
                p >= partitions) {
                rc = -1;
                break;
            }
            end[p] = l->elems[i].offset;
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

/* ---- the load generator ---- */

struct load_state {
    long acked;
    long failed;
    char err[256];
};

static void load_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    struct load_state *st = opaque;
    if (m->err) {
        if (!st->failed++)
            snprintf(st->err, sizeof st->err, "%s", rd_kafka_err2str(m->err));
    } else {
        st->acked++;
    }
}

/* Makes record i of a load: its key (klen bytes, at most 64) and value
 * (returned length, at most vsize bytes) into the buffers. */
typedef size_t(load_gen_fn)(const bench_opts_t *o, long i, char *val,
                            size_t vsize, char *key, size_t *klen);

static size_t gen_record(const bench_opts_t *o, long i, char *val, size_t vsize,
                         char *key, size_t *klen)
{
    (void)vsize;
    *klen = bench_record(val, (size_t)o->size, key, o->seed, (uint64_t)i,
                         o->keys, bench_now_ns());
    return (size_t)o->size;
}

static size_t gen_table(const bench_opts_t *o, long i, char *val, size_t vsize,
                        char *key, size_t *klen)
{
    (void)o;
    (void)vsize;
    *klen = bench_table_key(key, i);
    bench_table_value((unsigned char *)val, i);
    return 8;
}

static long load(bench_kafka_t *k, const bench_opts_t *o, const char *topic,
                 long n, load_gen_fn *gen, char *errstr, size_t errstr_size)
{
    char kerr[512];
    struct load_state st = {0};
    errstr[0] = 0;
    rd_kafka_conf_t *kc = bench_kafka_conf(k);
    conf_set(kc, "client.id", "mephisto-bench-load");
    bench_kafka_engine_producer(kc, 20);
    rd_kafka_conf_set_dr_msg_cb(kc, load_dr);
    rd_kafka_conf_set_opaque(kc, &st);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, kerr, sizeof kerr);
    if (!rk) {
        rd_kafka_conf_destroy(kc);
        snprintf(errstr, errstr_size, "load: %s", kerr);
        return 0;
    }
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    size_t vsize = (size_t)o->size + BENCH_MIN_RECORD;
    char *buf = malloc(vsize);
    char key[64];
    int64_t t0 = bench_now_ns(), last = t0;
    for (long i = 0; i < n && buf; i++) {
        size_t klen;
        size_t len = gen(o, i, buf, vsize, key, &klen);
        while (rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY,
                                buf, len, key, klen, NULL) == -1) {
            if (rd_kafka_last_error() != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                snprintf(errstr, errstr_size, "load: %s",
                         rd_kafka_err2str(rd_kafka_last_error()));
                goto out;
            }
            rd_kafka_poll(rk, 10);
        }
        rd_kafka_poll(rk, 0);
        int64_t now = bench_now_ns();
        if (now - last > 1000000000) {
            last = now;
            bench_progress(o, "load %s: %ld/%ld records", topic, i + 1, n);
        }
        if (now - t0 > (int64_t)(o->timeout * 1e9)) {
            snprintf(errstr, errstr_size, "load: timed out after %.0f s",
                     o->timeout);
            goto out;
        }
    }
out:
    rd_kafka_flush(rk, (int)(o->timeout * 1000));
    rd_kafka_poll(rk, 0);
    bench_progress(o, "load %s: %ld records acknowledged in %.2f s (%.0f/s)",
                   topic, st.acked, (double)(bench_now_ns() - t0) / 1e9,
                   (double)st.acked * 1e9 / (double)(bench_now_ns() - t0));
    if (st.failed && !errstr[0])
        snprintf(errstr, errstr_size, "load: %ld records failed: %s", st.failed,
                 st.err);
    free(buf);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return st.acked;
}

long bench_load(bench_kafka_t *k, const bench_opts_t *o, const char *topic,
                long n, char *errstr, size_t errstr_size)
{
    return load(k, o, topic, n, gen_record, errstr, errstr_size);
}

long bench_load_table(bench_kafka_t *k, const bench_opts_t *o,
                      const char *topic, long n, char *errstr,
                      size_t errstr_size)
{
    return load(k, o, topic, n, gen_table, errstr, errstr_size);
}

int bench_input(bench_kafka_t *k, const bench_opts_t *o, const char *name,
                const char *in, char *errstr, size_t errstr_size)
{
    if (bench_topic_create(k, in, o->partitions, errstr, errstr_size))
        return -1;
    bench_progress(o, "%s: loading %ld records of %d bytes into %s", name,
                   o->messages, o->size, in);
    long n = bench_load(k, o, in, o->messages, errstr, errstr_size);
    if (n == o->messages)
        return 0;
    if (!errstr[0])
        snprintf(errstr, errstr_size, "load incomplete: %ld of %ld records", n,
                 o->messages);
    return -1;
}

/*
 * The Kafka I/O layer against a broker (real when MEPHISTO_TEST_BROKERS is
 * set, else the in-process mock): create a topic with the admin API, produce
 * 100,000 keyed records, consume them all back, and check every key and
 * value, per-partition order, and that each key sits on the partition the
 * Java client would choose.
 */
// ctest-timeout: 240
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/kafka.h"
#include "mph_test.h"

#define N_RECORDS 100000
#define N_KEYS 1000
#define N_PARTS 8

static int delivered, failed;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err)
        failed++;
    else
        delivered++;
}

Test(kafka_io, produce_consume_100k_keyed, .timeout = 240)
{
    char err[512], topic[128];
    mph_conf_t *conf = mph_conf_new();
    cr_assert_eq(mph_conf_set(conf, "broker", mph_test_broker(), err, sizeof err), MPH_OK, "%s",
                 err);
    cr_assert_eq(mph_conf_set(conf, "app_id", "kafka-io-test", err, sizeof err), MPH_OK);
    mph__kafka_env_t *env = mph__kafka_env_new(conf, err, sizeof err);
    cr_assert_not_null(env, "%s", err);

    rd_kafka_conf_t *kc = mph__kafka_conf_new(env, conf, MPH__KAFKA_PRODUCER, err, sizeof err);
    cr_assert_not_null(kc, "%s", err);
    rd_kafka_conf_set_dr_msg_cb(kc, dr_cb);
    rd_kafka_t *prod = mph__kafka_new(kc, MPH__KAFKA_PRODUCER, err, sizeof err);
    cr_assert_not_null(prod, "%s", err);

    mph_test_unique("io", topic, sizeof topic);
    mph__topic_spec_t spec = {topic, N_PARTS, 1, NULL};
    cr_assert_eq(mph__kafka_create_topics(env, prod, &spec, 1, 30000, err, sizeof err), MPH_OK, "%s",
                 err);
    /* Creating it again with the same count is fine; another count is not. */
    cr_assert_eq(mph__kafka_create_topics(env, prod, &spec, 1, 30000, err, sizeof err), MPH_OK, "%s",
                 err);
    mph__topic_spec_t other = {topic, N_PARTS + 1, 1, NULL};
    cr_expect_eq(mph__kafka_create_topics(env, prod, &other, 1, 30000, err, sizeof err),
                 MPH_ERR_EXISTS);
    int parts = 0;
    cr_assert_eq(mph__kafka_partition_count(prod, topic, 10000, &parts), MPH_OK);
    cr_assert_eq(parts, N_PARTS);
    /* The mock cluster auto-creates any topic a metadata request names. */
    if (mph_test_real_broker())
        cr_expect_eq(mph__kafka_partition_count(prod, "mph-no-such-topic-xyz", 5000, &parts),
                     MPH_ERR_NOENT);

    for (int i = 0; i < N_RECORDS; i++) {
        char key[32], val[64];
        int kl = snprintf(key, sizeof key, "k%d", i % N_KEYS);
        int vl = snprintf(val, sizeof val, "%d:%d", i % N_KEYS, i / N_KEYS);
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_producev(prod, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, kl),
                                      RD_KAFKA_V_VALUE(val, vl),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
               RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(prod, 10);
        cr_assert_eq(e, 0, "produce: %s", rd_kafka_err2str(e));
        rd_kafka_poll(prod, 0);
    }
    cr_assert_eq(rd_kafka_flush(prod, 60000), 0, "flush");
    cr_assert_eq(delivered, N_RECORDS, "delivered %d failed %d", delivered, failed);

    /* Consume everything back through a plain assignment. */
    kc = mph__kafka_conf_new(env, conf, MPH__KAFKA_CONSUMER, err, sizeof err);
    cr_assert_not_null(kc);
    rd_kafka_t *cons = mph__kafka_new(kc, MPH__KAFKA_CONSUMER, err, sizeof err);
    cr_assert_not_null(cons, "%s", err);
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(N_PARTS);
    for (int p = 0; p < N_PARTS; p++)
        rd_kafka_topic_partition_list_add(tp, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    cr_assert_eq(rd_kafka_assign(cons, tp), 0);
    rd_kafka_topic_partition_list_destroy(tp);

    int *next_seq = calloc(N_KEYS, sizeof *next_seq);
    int64_t last_off[N_PARTS];
    for (int p = 0; p < N_PARTS; p++)
        last_off[p] = -1;
    int got = 0, misplaced = 0, out_of_order = 0, bad = 0;
    int64_t deadline = mph_clock_mono_ns() + 180LL * 1000000000;
    while (got < N_RECORDS && mph_clock_mono_ns() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(cons, 500);
        if (!m)
            continue;
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        char key[32] = {0}, val[64] = {0};
        memcpy(key, m->key, m->key_len < 31 ? m->key_len : 31);
        memcpy(val, m->payload, m->len < 63 ? m->len : 63);
        int k = atoi(key + 1), vk = -1, seq = -1;
        if (sscanf(val, "%d:%d", &vk, &seq) != 2 || vk != k)
            bad++;
        if (mph__kafka_partition_for(m->key, m->key_len, N_PARTS) != m->partition)
            misplaced++;
        if (k >= 0 && k < N_KEYS) {
            if (seq != next_seq[k])
                out_of_order++;
            next_seq[k] = seq + 1;
        }
        if (m->offset <= last_off[m->partition])
            out_of_order++;
        last_off[m->partition] = m->offset;
        got++;
        rd_kafka_message_destroy(m);
    }
    cr_expect_eq(got, N_RECORDS);
    cr_expect_eq(bad, 0);
    cr_expect_eq(misplaced, 0, "keys land where the Java client puts them");
    cr_expect_eq(out_of_order, 0, "per-key and per-partition order kept");
    for (int k = 0; k < N_KEYS; k++)
        cr_expect_eq(next_seq[k], N_RECORDS / N_KEYS, "key %d", k);
    free(next_seq);

    rd_kafka_consumer_close(cons);
    rd_kafka_destroy(cons);
    const char *names[] = {topic};
    mph__kafka_delete_topics(env, prod, names, 1, 10000, err, sizeof err);
    rd_kafka_destroy(prod);
    mph__kafka_env_destroy(env);
    mph_conf_destroy(conf);
}

/*
 * Helpers shared by mephisto's tests: which broker to use, unique names,
 * temporary directories.
 *
 * Integration tests take the broker from MEPHISTO_TEST_BROKERS
 * ("127.0.0.1:9092" or "kafka://127.0.0.1:9092"); unset, they use the
 * in-process mock cluster ("mock://1").
 */
#ifndef MPH_TEST_SUPPORT_H
#define MPH_TEST_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The `broker` setting for this run: "kafka://..." or "mock://1". Static. */
const char *mph_test_broker(void);
/* True when the run uses a real broker. */
bool mph_test_real_broker(void);
/* Writes "<prefix>-<pid>-<time>-<counter>" into buf: unique per call. */
const char *mph_test_unique(const char *prefix, char *buf, size_t size);
/* Creates a fresh temporary directory and returns its path (static per call
 * site is not required: buf is the caller's). */
const char *mph_test_tmpdir(const char *prefix, char *buf, size_t size);
/* rm -rf path (only below /tmp). */
void mph_test_rmrf(const char *path);
/* Deterministic PRNG (splitmix64). */
uint64_t mph_test_rand(uint64_t *state);

#endif

/* ---- a Kafka cluster for integration tests ---- */
#include "io/kafka.h"
#include "mephisto.h"

typedef struct mph_test_cluster {
    mph__kafka_env_t *env; /* mock cluster or real bootstrap */
    rd_kafka_t *producer;  /* plain librdkafka producer for test input */
    char broker[512];      /* "kafka://host:port,..." to give to apps */
    int delivered, failed;
} mph_test_cluster_t;

/* A cluster: the real broker (MEPHISTO_TEST_BROKERS) or a fresh mock
 * cluster that several apps in this process can share. */
mph_test_cluster_t *mph_test_cluster_new(void);
void mph_test_cluster_destroy(mph_test_cluster_t *c);
/* Creates a topic (admin API, or the mock's own creation). */
void mph_test_create_topic(mph_test_cluster_t *c, const char *name, int partitions);
/* Produces n records "k<i % nkeys>" → "k<i % nkeys>:<i / nkeys + seq0>" and
 * waits for every delivery. Returns the number delivered. */
int mph_test_produce_seq(mph_test_cluster_t *c, const char *topic, int n, int nkeys, int seq0);
/* Produces one record. */
void mph_test_produce(mph_test_cluster_t *c, const char *topic, int32_t partition,
                      const void *key, size_t klen, const void *val, size_t vlen);
void mph_test_flush(mph_test_cluster_t *c);

/* Reads every record of topic from the beginning until `want` records
 * arrived or nothing new came for idle_ms (or timeout_ms passed); calls fn
 * per record. Returns the number read. */
typedef void(mph_test_record_fn)(const rd_kafka_message_t *m, void *opaque);
int mph_test_consume_all(mph_test_cluster_t *c, const char *topic, int want, int idle_ms,
                         int timeout_ms, mph_test_record_fn *fn, void *opaque);
/* Committed offset sum of group over topic's partitions (-1 when none). */
int64_t mph_test_committed_sum(mph_test_cluster_t *c, const char *group, const char *topic,
                               int partitions);
/* An app of the settings in kv (name, value, ..., NULL); fails the test
 * when a setting or the app is refused. */
mph_app_t *mph_test_app_kv(const char *const *kv);
/* Polls mph_test_committed_sum every 100 ms until it reaches want or
 * timeout_ms passed; returns the last sum (-1 when none). */
int64_t mph_test_wait_committed(mph_test_cluster_t *c, const char *group, const char *topic,
                                int partitions, int64_t want, int timeout_ms);
/* The process's resident set size in KiB. */
long mph_test_rss_kb(void);

/* Makes io_uring_setup fail with EPERM in this process from now on, as a
 * container's seccomp profile does (Criterion runs each test in a process
 * of its own, so only the calling test is affected). Asserts it worked. */
void mph_test_refuse_io_uring(void);
/* A value of app's /stats document by path ("commits.commit_errors",
 * "global_tables.0.keys"): the number (bool: 0/1) in *out. False when the
 * document cannot be made or the path names no number or bool. */
bool mph_test_stat(mph_app_t *app, const char *path, uint64_t *out);
/* The string at path of app's /stats document, copied into buf. */
bool mph_test_stat_str(mph_app_t *app, const char *path, char *buf, size_t size);

/*
 * Kafka I/O: the only place that builds librdkafka handles and converts
 * librdkafka's errors into mph_err_t.
 *
 * An mph__kafka_env_t resolves the `broker` setting once per app: for
 * kafka://h:p,... it is the bootstrap list; for mock://N it owns an
 * in-process librdkafka mock cluster (and the dummy handle that keeps it
 * alive) that every client of the app then shares.
 *
 * The runtime reads messages through the inline accessors below rather than
 * touching rd_kafka_message_t fields itself, so the per-event path costs no
 * call and no copy, and librdkafka's error type never leaves src/io.
 */
#ifndef MPH_IO_KAFKA_H
#define MPH_IO_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "mephisto/common.h"
#include "mephisto/conf.h"

typedef struct mph__kafka_env mph__kafka_env_t;

typedef enum mph__kafka_role {
    MPH__KAFKA_PRODUCER,
    MPH__KAFKA_CONSUMER,
    MPH__KAFKA_ADMIN
} mph__kafka_role_t;

/* Resolves conf's `broker`. For mock:// creates the mock cluster.
 * @locality any (setup) */
mph__kafka_env_t *mph__kafka_env_new(const mph_conf_t *conf, char *errstr, size_t errstr_size);
void mph__kafka_env_destroy(mph__kafka_env_t *env);
/* Bootstrap servers ("127.0.0.1:9092,..."). Borrowed, lives with env. */
const char *mph__kafka_env_bootstrap(const mph__kafka_env_t *env);
bool mph__kafka_env_is_mock(const mph__kafka_env_t *env);
/* The mock cluster for error injection in tests; NULL for a real broker. */
rd_kafka_mock_cluster_t *mph__kafka_env_mock(const mph__kafka_env_t *env);

/* A librdkafka configuration for role: bootstrap servers, mephisto's
 * defaults for the role, then every kafka.<prop> of conf (which win).
 * Owned by the caller until passed to mph__kafka_new(). */
rd_kafka_conf_t *mph__kafka_conf_new(const mph__kafka_env_t *env, const mph_conf_t *conf,
                                     mph__kafka_role_t role, char *errstr, size_t errstr_size);
/* Sets one librdkafka property; errstr names it. */
mph_err_t mph__kafka_conf_set(rd_kafka_conf_t *kc, const char *name, const char *value,
                              char *errstr, size_t errstr_size);
/* Creates the client; takes kc on success, destroys it on failure. */
rd_kafka_t *mph__kafka_new(rd_kafka_conf_t *kc, mph__kafka_role_t role, char *errstr,
                           size_t errstr_size);

/* librdkafka error → mph_err_t. */
mph_err_t mph__kafka_err(rd_kafka_resp_err_t err);

/* Topic creation with the admin API. A topic that already exists is not an
 * error when its partition count matches (or when partitions is -1, meaning
 * "whatever it has"); a mismatch is MPH_ERR_EXISTS with both counts in
 * errstr. configs is a NULL-terminated name/value array or NULL. */
typedef struct mph__topic_spec {
    const char *name;
    int partitions;
    int replication;
    const char *const *configs;
} mph__topic_spec_t;
/* env decides how: the admin API on a real broker, the mock cluster's own
 * topic creation on mock:// (its admin API does not create topics). */
mph_err_t mph__kafka_create_topics(const mph__kafka_env_t *env, rd_kafka_t *rk,
                                   const mph__topic_spec_t *specs, size_t n, int timeout_ms,
                                   char *errstr, size_t errstr_size);
/* A no-op on the mock cluster. */
mph_err_t mph__kafka_delete_topics(const mph__kafka_env_t *env, rd_kafka_t *rk,
                                   const char *const *names, size_t n, int timeout_ms,
                                   char *errstr, size_t errstr_size);

/* The TCP_USER_TIMEOUT producer sockets get (ms; 0 before any producer
 * configuration was made): half the smallest session_timeout_ms of the
 * process's apps. See kafka.c. @locality any */
unsigned int mph__kafka_tcp_user_timeout_ms(void);

/* Partition count of topic from metadata: MPH_ERR_NOENT when the topic does
 * not exist, MPH_ERR_TRANSPORT/TIMEOUT when the broker did not answer. */
mph_err_t mph__kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms,
                                     int *out);

/* Kafka's default message.max.bytes (a broker setting): what a topic
 * without a max.message.bytes override accepts. */
#define MPH__KAFKA_DEFAULT_MAX_MESSAGE_BYTES 1048588
/* Record batch framing (librdkafka's MessageSet v2 header) and the most a
 * record's own framing can take beyond its key, value and headers: a record
 * of k+v+h bytes passes librdkafka's message.max.bytes L when
 * k+v+h + MPH__KAFKA_RECORD_OVERHEAD <= L, and fits a topic's
 * max.message.bytes M alone in a batch when that L is M - MPH__KAFKA_BATCH_OVERHEAD. */
#define MPH__KAFKA_BATCH_OVERHEAD  61
#define MPH__KAFKA_RECORD_OVERHEAD 36

/* Each topic's max.message.bytes (DescribeConfigs), into out[0..n). A
 * topic whose config cannot be read keeps MPH__KAFKA_DEFAULT_MAX_MESSAGE_BYTES
 * and the error (MPH_ERR_UNSUPPORTED on the mock cluster, which has no
 * topic configs) is returned with errstr; out is filled either way. */
mph_err_t mph__kafka_topic_max_bytes(const mph__kafka_env_t *env, rd_kafka_t *rk,
                                     const char *const *names, size_t n, int timeout_ms,
                                     int64_t *out, char *errstr, size_t errstr_size);

/* Java-compatible key → partition (librdkafka's murmur2_random partitioner,
 * i.e. Kafka's Utils.murmur2 & 0x7fffffff % n). key must not be NULL.
 * @locality any */
int32_t mph__kafka_partition_for(const void *key, size_t keylen, int32_t partition_cnt);

/* Low and high watermarks of one partition, from the broker. */
mph_err_t mph__kafka_watermarks(rd_kafka_t *rk, const char *topic, int32_t partition,
                                int64_t *low, int64_t *high, int timeout_ms);

/* --- message accessors (inline: the per-event path) --- */
typedef rd_kafka_message_t mph__kmsg_t;

static inline mph_err_t mph__kmsg_err(const mph__kmsg_t *m)
{
    return m->err ? mph__kafka_err(m->err) : MPH_OK;
}
static inline bool mph__kmsg_is_eof(const mph__kmsg_t *m)
{
    return m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF;
}

#endif /* MPH_IO_KAFKA_H */

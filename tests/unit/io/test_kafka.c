/* Unit tests of src/io/kafka.c that need no broker. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "io/kafka.h"

#include <librdkafka/rdkafka_mock.h>

/* Kafka's Utils.murmur2 test vectors (clients/src/test/.../UtilsTest.java),
 * and partitions computed with the Java client's
 * Utils.toPositive(Utils.murmur2(key)) % n. */
static const struct {
    const char *key;
    int32_t p8, p12, p4096;
} vectors[] = {
    {"21", 4, 0, 2284},
    {"foobar", 6, 6, 3006},
    {"a-little-bit-long-string", 0, 8, 3488},
    {"a-little-bit-longer-string", 3, 11, 2499},
    {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", 5, 5, 2509},
    {"abc", 3, 3, 539},
    {"hello", 5, 9, 3005},
    {"user-42", 4, 4, 2092},
    {"mephisto", 4, 4, 1868},
    {"k0", 1, 5, 2369},
    {"k1", 1, 5, 3369},
    {"k99999", 6, 6, 1766},
};

Test(kafka, partitioner_matches_java_client, .timeout = 10)
{
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        const char *k = vectors[i].key;
        cr_expect_eq(mph__kafka_partition_for(k, strlen(k), 8), vectors[i].p8, "%s", k);
        cr_expect_eq(mph__kafka_partition_for(k, strlen(k), 12), vectors[i].p12, "%s", k);
        cr_expect_eq(mph__kafka_partition_for(k, strlen(k), 4096), vectors[i].p4096, "%s", k);
    }
}

Test(kafka, error_conversion, .timeout = 10)
{
    cr_expect_eq(mph__kafka_err(RD_KAFKA_RESP_ERR_NO_ERROR), MPH_OK);
    cr_expect_eq(mph__kafka_err(RD_KAFKA_RESP_ERR__TIMED_OUT), MPH_ERR_TIMEOUT);
    cr_expect_eq(mph__kafka_err(RD_KAFKA_RESP_ERR__TRANSPORT), MPH_ERR_TRANSPORT);
    cr_expect_eq(mph__kafka_err(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART), MPH_ERR_NOENT);
    cr_expect_eq(mph__kafka_err(RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS), MPH_ERR_EXISTS);
    cr_expect_eq(mph__kafka_err(RD_KAFKA_RESP_ERR__QUEUE_FULL), MPH_ERR_FULL);
    cr_expect_eq(mph__kafka_err(RD_KAFKA_RESP_ERR_PRODUCER_FENCED), MPH_ERR_FENCED);
    cr_expect_eq(mph__kafka_err(RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION), MPH_ERR_KAFKA);
}

Test(kafka, env_parses_broker_setting, .timeout = 20)
{
    char err[256];
    mph_conf_t *conf = mph_conf_new();
    cr_assert_eq(mph_conf_set(conf, "broker", "kafka://127.0.0.1:1,127.0.0.1:2", err, sizeof err),
                 MPH_OK, "%s", err);
    mph__kafka_env_t *env = mph__kafka_env_new(conf, err, sizeof err);
    cr_assert_not_null(env, "%s", err);
    cr_expect_str_eq(mph__kafka_env_bootstrap(env), "127.0.0.1:1,127.0.0.1:2");
    cr_expect_not(mph__kafka_env_is_mock(env));
    mph__kafka_env_destroy(env);

    cr_assert_eq(mph_conf_set(conf, "broker", "mock://3", err, sizeof err), MPH_OK, "%s", err);
    env = mph__kafka_env_new(conf, err, sizeof err);
    cr_assert_not_null(env, "%s", err);
    cr_expect(mph__kafka_env_is_mock(env));
    cr_expect_not_null(mph__kafka_env_mock(env));
    const char *b = mph__kafka_env_bootstrap(env);
    int commas = 0;
    for (; *b; b++)
        commas += *b == ',';
    cr_expect_eq(commas, 2, "three mock brokers in the bootstrap list");
    mph__kafka_env_destroy(env);
    mph__kafka_env_destroy(NULL);
    mph_conf_destroy(conf);
}

Test(kafka, passthrough_applies_and_rejects, .timeout = 10)
{
    char err[256];
    mph_conf_t *conf = mph_conf_new();
    cr_assert_eq(mph_conf_set(conf, "broker", "kafka://127.0.0.1:9", err, sizeof err), MPH_OK);
    cr_assert_eq(mph_conf_set(conf, "kafka.linger.ms", "42", err, sizeof err), MPH_OK, "%s", err);
    mph__kafka_env_t *env = mph__kafka_env_new(conf, err, sizeof err);
    rd_kafka_conf_t *kc = mph__kafka_conf_new(env, conf, MPH__KAFKA_PRODUCER, err, sizeof err);
    cr_assert_not_null(kc, "%s", err);
    char val[64];
    size_t vs = sizeof val;
    cr_assert_eq(rd_kafka_conf_get(kc, "linger.ms", val, &vs), RD_KAFKA_CONF_OK);
    cr_expect_str_eq(val, "42", "kafka.<prop> overrides mephisto's default");
    vs = sizeof val;
    cr_assert_eq(rd_kafka_conf_get(kc, "enable.idempotence", val, &vs), RD_KAFKA_CONF_OK);
    cr_expect_str_eq(val, "true");
    rd_kafka_conf_destroy(kc);

    /* Properties mephisto owns are refused with the reason. */
    cr_assert_eq(mph_conf_set(conf, "kafka.enable.auto.commit", "true", err, sizeof err), MPH_OK);
    cr_expect_null(mph__kafka_conf_new(env, conf, MPH__KAFKA_CONSUMER, err, sizeof err));
    cr_expect(strstr(err, "kafka.enable.auto.commit") && strstr(err, "commit points"), "%s", err);

    kc = rd_kafka_conf_new();
    cr_expect_eq(mph__kafka_conf_set(kc, "acks", "banana", err, sizeof err), MPH_ERR_INVALID);
    cr_expect(strstr(err, "kafka.acks") != NULL, "error names the setting: %s", err);
    rd_kafka_conf_destroy(kc);
    mph__kafka_env_destroy(env);
    mph_conf_destroy(conf);
}

/* Builds a client conf of role from conf; returns it (destroyed here) as a
 * success flag, with the reason in err. */
static bool conf_accepted(const mph_conf_t *conf, mph__kafka_role_t role, char *err, size_t size)
{
    mph__kafka_env_t *env = mph__kafka_env_new(conf, err, size);
    cr_assert_not_null(env, "%s", err);
    rd_kafka_conf_t *kc = mph__kafka_conf_new(env, conf, role, err, size);
    mph__kafka_env_destroy(env);
    if (!kc)
        return false;
    rd_kafka_conf_destroy(kc);
    return true;
}

/* Settings that would silently drop the guarantee in force are refused,
 * naming the setting, its value and the guarantee, whatever the spelling
 * librdkafka accepts for them. */
Test(kafka, passthrough_refuses_what_breaks_the_guarantee, .timeout = 10)
{
    static const struct {
        const char *name, *value, *want;
    } bad[] = {
        {"kafka.acks", "0",
         "kafka.acks=0: breaks processing_guarantee=at_least_once (records could be lost "
         "unacknowledged); use all"},
        {"kafka.acks", "1", "kafka.acks=1: breaks processing_guarantee=at_least_once"},
        {"kafka.request.required.acks", "0",
         "kafka.request.required.acks=0: breaks processing_guarantee=at_least_once"},
        {"kafka.topic.acks", "1", "kafka.topic.acks=1: breaks processing_guarantee=at_least_once"},
        {"kafka.enable.idempotence", "false",
         "kafka.enable.idempotence=false: breaks processing_guarantee=at_least_once (a retried "
         "batch could be written twice or out of order); use true"},
        {"kafka.enable.idempotence", "0",
         "kafka.enable.idempotence=0: breaks processing_guarantee=at_least_once"},
    };
    char err[512];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (int role = 0; role < 2; role++) {
            mph_conf_t *conf = mph_conf_new();
            cr_assert_eq(mph_conf_set(conf, "broker", "kafka://127.0.0.1:9", err, sizeof err),
                         MPH_OK);
            cr_assert_eq(mph_conf_set(conf, bad[i].name, bad[i].value, err, sizeof err), MPH_OK,
                         "%s", err);
            err[0] = '\0';
            cr_expect_not(conf_accepted(conf,
                                        role ? MPH__KAFKA_CONSUMER : MPH__KAFKA_PRODUCER, err,
                                        sizeof err),
                          "%s=%s accepted", bad[i].name, bad[i].value);
            cr_expect(!strncmp(err, bad[i].want, strlen(bad[i].want)), "%s", err);
            mph_conf_destroy(conf);
        }
    }

    /* What keeps the guarantee is accepted, in any spelling. */
    static const char *const good[][2] = {
        {"kafka.acks", "all"},       {"kafka.acks", "-1"},
        {"kafka.acks", "ALL"},       {"kafka.request.required.acks", "all"},
        {"kafka.enable.idempotence", "true"},
        {"kafka.isolation.level", "read_uncommitted"}, /* fine for at_least_once */
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        mph_conf_t *conf = mph_conf_new();
        cr_assert_eq(mph_conf_set(conf, "broker", "kafka://127.0.0.1:9", err, sizeof err), MPH_OK);
        cr_assert_eq(mph_conf_set(conf, good[i][0], good[i][1], err, sizeof err), MPH_OK, "%s",
                     err);
        cr_expect(conf_accepted(conf, MPH__KAFKA_PRODUCER, err, sizeof err), "%s=%s: %s",
                  good[i][0], good[i][1], err);
        mph_conf_destroy(conf);
    }
}

/* exactly_once is refused when the app is created; the Kafka layer still
 * refuses read_uncommitted for it, whichever order the settings came in. */
Test(kafka, passthrough_refuses_read_uncommitted_under_exactly_once, .timeout = 10)
{
    char err[512];
    mph_conf_t *conf = mph_conf_new();
    cr_assert_eq(mph_conf_set(conf, "broker", "kafka://127.0.0.1:9", err, sizeof err), MPH_OK);
    cr_assert_eq(mph_conf_set(conf, "kafka.isolation.level", "read_uncommitted", err, sizeof err),
                 MPH_OK, "%s", err);
    cr_assert_eq(mph_conf_set(conf, "processing_guarantee", "exactly_once", err, sizeof err),
                 MPH_OK, "%s", err);
    cr_expect_not(conf_accepted(conf, MPH__KAFKA_CONSUMER, err, sizeof err));
    cr_expect_str_eq(err, "kafka.isolation.level=read_uncommitted: breaks "
                          "processing_guarantee=exactly_once (records of aborted transactions "
                          "would be read); use read_committed");
    cr_assert_eq(mph_conf_set(conf, "kafka.isolation.level", "read_committed", err, sizeof err),
                 MPH_OK, "%s", err);
    cr_expect(conf_accepted(conf, MPH__KAFKA_CONSUMER, err, sizeof err), "%s", err);
    mph_conf_destroy(conf);
}

/* A producer's sockets to the broker give up on data left unacknowledged
 * for half a session timeout and close with a reset: after a network
 * partition the kernel must not deliver an old produce request (a stale
 * changelog write) once the group has moved the partition on. Checked on
 * the sockets librdkafka opened to a mock broker. */
Test(kafka, producer_sockets_abort_unacknowledged_data, .timeout = 30)
{
    char err[512];
    mph_conf_t *conf = mph_conf_new();
    cr_assert_eq(mph_conf_set(conf, "broker", "mock://1", err, sizeof err), MPH_OK, "%s", err);
    cr_assert_eq(mph_conf_set(conf, "session_timeout_ms", "6000", err, sizeof err), MPH_OK,
                 "%s", err);
    mph__kafka_env_t *env = mph__kafka_env_new(conf, err, sizeof err);
    cr_assert_not_null(env, "%s", err);
    const char *boot = rd_kafka_mock_cluster_bootstraps(mph__kafka_env_mock(env));
    const char *colon = strrchr(boot, ':');
    cr_assert_not_null(colon, "%s", boot);
    int port = atoi(colon + 1);

    rd_kafka_conf_t *kc = mph__kafka_conf_new(env, conf, MPH__KAFKA_PRODUCER, err, sizeof err);
    cr_assert_not_null(kc, "%s", err);
    cr_expect_eq(mph__kafka_tcp_user_timeout_ms(), 3000u);
    rd_kafka_t *rk = mph__kafka_new(kc, MPH__KAFKA_PRODUCER, err, sizeof err);
    cr_assert_not_null(rk, "%s", err);
    const struct rd_kafka_metadata *md = NULL;
    cr_assert_eq(rd_kafka_metadata(rk, 1, NULL, &md, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_metadata_destroy(md);

    int seen = 0;
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        int fd = atoi(e->d_name);
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        int type = 0;
        socklen_t tlen = sizeof type;
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || type != SOCK_STREAM)
            continue;
        if (getpeername(fd, (struct sockaddr *)&peer, &len) != 0 ||
            peer.sin_family != AF_INET || ntohs(peer.sin_port) != port)
            continue; /* not a client socket to the broker */
        unsigned int ut = 0;
        socklen_t ulen = sizeof ut;
        struct linger lg = {0, 0};
        socklen_t llen = sizeof lg;
        cr_assert_eq(getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, &ulen), 0);
        cr_assert_eq(getsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, &llen), 0);
        cr_expect_eq(ut, 3000u, "TCP_USER_TIMEOUT of fd %d", fd);
        cr_expect(lg.l_onoff == 1 && lg.l_linger == 0, "SO_LINGER of fd %d", fd);
        seen++;
    }
    closedir(d);
    cr_expect_gt(seen, 0, "no producer socket to the broker found");
    rd_kafka_destroy(rk);
    mph__kafka_env_destroy(env);
    mph_conf_destroy(conf);
}

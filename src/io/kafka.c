/*
 * Kafka I/O: client construction, the mock cluster, admin calls and error
 * conversion. See kafka.h for the contract. Everything here is set-up or
 * control path; the per-event path only uses the inline accessors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <ck_pr.h>


#include "io/kafka.h"
#include "mephisto/log.h"

struct mph__kafka_env {
    char *bootstrap;
    rd_kafka_t *mock_rk; /* keeps the mock cluster's threads alive */
    rd_kafka_mock_cluster_t *mock;
};

static void set_err(char *errstr, size_t size, const char *fmt, const char *a, const char *b)
{
    if (errstr && size)
        snprintf(errstr, size, fmt, a, b);
}

mph__kafka_env_t *mph__kafka_env_new(const mph_conf_t *conf, char *errstr, size_t errstr_size)
{
    const char *broker = mph_conf_get(conf, "broker");
    if (!broker || !*broker) {
        set_err(errstr, errstr_size, "%s%s", "broker: not set", "");
        return NULL;
    }
    mph__kafka_env_t *env = calloc(1, sizeof *env);
    if (!env)
        goto fail_alloc;

    if (strncmp(broker, "mock://", 7) == 0) {
        int n = broker[7] ? atoi(broker + 7) : 1;
        if (n < 1 || n > 16) {
            set_err(errstr, errstr_size, "broker: mock broker count must be 1..16, got '%s'%s",
                    broker + 7, "");
            goto fail_env;
        }
        char kerr[256];
        rd_kafka_conf_t *kc = rd_kafka_conf_new();
        rd_kafka_conf_set(kc, "client.id", "mephisto-mock", kerr, sizeof kerr);
        rd_kafka_conf_set(kc, "log_level", "3", kerr, sizeof kerr);
        env->mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, kerr, sizeof kerr);
        if (!env->mock_rk) {
            rd_kafka_conf_destroy(kc);
            set_err(errstr, errstr_size, "broker: cannot start the mock cluster: %s%s", kerr, "");
            goto fail_env;
        }
        env->mock = rd_kafka_mock_cluster_new(env->mock_rk, n);
        if (!env->mock) {
            set_err(errstr, errstr_size, "broker: cannot start the mock cluster%s%s", "", "");
            goto fail_rk;
        }
        env->bootstrap = strdup(rd_kafka_mock_cluster_bootstraps(env->mock));
    } else {
        const char *list = strncmp(broker, "kafka://", 8) == 0 ? broker + 8 : broker;
        env->bootstrap = strdup(list);
    }
    if (!env->bootstrap)
        goto fail_mock;
    return env;

fail_mock:
    if (env->mock)
        rd_kafka_mock_cluster_destroy(env->mock);
fail_rk:
    if (env->mock_rk)
        rd_kafka_destroy(env->mock_rk);
fail_env:
    free(env);
    return NULL;
fail_alloc:
    set_err(errstr, errstr_size, "%s%s", "out of memory", "");
    return NULL;
}

void mph__kafka_env_destroy(mph__kafka_env_t *env)
{
    if (!env)
        return;
    if (env->mock)
        rd_kafka_mock_cluster_destroy(env->mock);
    if (env->mock_rk)
        rd_kafka_destroy(env->mock_rk);
    free(env->bootstrap);
    free(env);
}

const char *mph__kafka_env_bootstrap(const mph__kafka_env_t *env)
{
    return env->bootstrap;
}

bool mph__kafka_env_is_mock(const mph__kafka_env_t *env)
{
    return env->mock != NULL;
}

rd_kafka_mock_cluster_t *mph__kafka_env_mock(const mph__kafka_env_t *env)
{
    return env->mock;
}

mph_err_t mph__kafka_conf_set(rd_kafka_conf_t *kc, const char *name, const char *value,
                              char *errstr, size_t errstr_size)
{
    char kerr[512];
    if (rd_kafka_conf_set(kc, name, value, kerr, sizeof kerr) != RD_KAFKA_CONF_OK) {
        if (errstr && errstr_size)
            snprintf(errstr, errstr_size, "kafka.%s: %s", name, kerr);
        return MPH_ERR_INVALID;
    }
    return MPH_OK;
}

/* librdkafka logs from its own threads; route them to mephisto's log. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    mph_log_level_t l = level <= 3 ? MPH_LOG_ERROR : level <= 4 ? MPH_LOG_WARN
                      : level <= 6 ? MPH_LOG_INFO : MPH_LOG_DEBUG;
    if (!mph_log_enabled(l))
        return;
    /* Most lines come from librdkafka's own threads; some from the caller's. */
    char prev[32];
    snprintf(prev, sizeof prev, "%s", mph_log_thread_name());
    mph_log_set_thread_name("librdkafka");
    mph_log(l, "%s: %s", fac, buf);
    mph_log_set_thread_name(prev);
}

struct apply_ctx {
    rd_kafka_conf_t *kc;
    const mph_conf_t *conf;
    char *errstr;
    size_t errstr_size;
    mph_err_t err;
};

/* librdkafka properties that mephisto owns: changing them would break the
 * commit-point guarantee or the app's identity. */
static const struct {
    const char *name;
    const char *why;
} reserved[] = {
    {"enable.auto.commit", "mephisto commits only commit points itself"},
    {"enable.auto.offset.store", "mephisto commits only commit points itself"},
    {"group.id", "set app_id instead"},
    {"bootstrap.servers", "set broker instead"},
    {"metadata.broker.list", "set broker instead"},
};

/* librdkafka properties a processing guarantee depends on: under the
 * guarantee (NULL: under every guarantee) the property must keep the value
 * need (as rd_kafka_conf_get() spells it). Names are librdkafka's canonical
 * ones: "request.required.acks" and the "topic." prefix are read as the
 * property they name. */
static const struct {
    const char *name;
    const char *guarantee;
    const char *need;
    const char *use;
    const char *why;
} guarded[] = {
    {"acks", NULL, "-1", "all", "records could be lost unacknowledged"},
    {"enable.idempotence", NULL, "true", "true",
     "a retried batch could be written twice or out of order"},
    {"isolation.level", "exactly_once", "read_committed", "read_committed",
     "records of aborted transactions would be read"},
};

/* Refuses name=value (a kafka.<prop> setting) when mephisto owns the
 * property or when the value breaks conf's processing_guarantee. */
static mph_err_t check_passthrough(const mph_conf_t *conf, const char *name, const char *value,
                                   char *errstr, size_t errstr_size)
{
    const char *prop = name + 6; /* after "kafka." */
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++) {
        if (!strcmp(prop, reserved[i].name)) {
            if (errstr && errstr_size)
                snprintf(errstr, errstr_size, "%s: cannot be set: %s", name, reserved[i].why);
            return MPH_ERR_INVALID;
        }
    }
    const char *canon = strncmp(prop, "topic.", 6) == 0 ? prop + 6 : prop;
    if (!strcmp(canon, "request.required.acks"))
        canon = "acks";
    const char *pg = mph_conf_get(conf, "processing_guarantee");
    if (!pg || !*pg)
        pg = "at_least_once";
    for (size_t i = 0; i < sizeof guarded / sizeof guarded[0]; i++) {
        if (strcmp(canon, guarded[i].name) != 0 ||
            (guarded[i].guarantee && strcmp(pg, guarded[i].guarantee) != 0))
            continue;
        /* librdkafka's own reading of the value: "ALL", "t", "0" ... */
        char got[64] = "";
        size_t got_size = sizeof got;
        rd_kafka_conf_t *probe = rd_kafka_conf_new();
        char perr[256];
        bool ok = rd_kafka_conf_set(probe, prop, value, perr, sizeof perr) == RD_KAFKA_CONF_OK &&
                  rd_kafka_conf_get(probe, canon, got, &got_size) == RD_KAFKA_CONF_OK;
        rd_kafka_conf_destroy(probe);
        if (!ok || !strcmp(got, guarded[i].need))
            return MPH_OK; /* a bad value is librdkafka's to refuse, below */
        if (errstr && errstr_size) {
            char v[128];
            snprintf(errstr, errstr_size, "%s=%s: breaks processing_guarantee=%s (%s); use %s",
                     name, mph_conf_escape(v, sizeof v, value), pg, guarded[i].why,
                     guarded[i].use);
        }
        return MPH_ERR_INVALID;
    }
    return MPH_OK;
}

static void apply_passthrough(const char *name, const char *value, void *opaque)
{
    struct apply_ctx *ctx = opaque;
    if (ctx->err != MPH_OK)
        return;
    ctx->err = check_passthrough(ctx->conf, name, value, ctx->errstr, ctx->errstr_size);
    if (ctx->err == MPH_OK)
        ctx->err = mph__kafka_conf_set(ctx->kc, name + 6, value, ctx->errstr, ctx->errstr_size);
    if (ctx->err != MPH_OK && ctx->errstr && ctx->errstr_size) {
        /* librdkafka's messages echo the value: no raw control bytes. */
        char raw[512];
        snprintf(raw, sizeof raw, "%s", ctx->errstr);
        mph_conf_escape(ctx->errstr, ctx->errstr_size, raw);
    }
}

/* Producer sockets and a network partition.
 *
 * A produce request that is in the kernel's send buffer when the link to
 * the broker goes down is sent again by TCP when the link comes back, even
 * after librdkafka purged the records and closed the connection (close()
 * lets the kernel go on delivering what was written). For changelog records
 * that is a stale write: the partition was handed to another member
 * meanwhile, which rebuilt its shard from the changelog and wrote newer
 * values, and the late request puts an older value on top (seen in the
 * chaos run: counts permanently under the truth). So producer sockets
 *   - abort a connection whose data stays unacknowledged for half a session
 *     timeout (TCP_USER_TIMEOUT): by the time the group could give the
 *     partitions to someone else, the kernel has dropped the request, and
 *     librdkafka holds the records, which the hand-over purges;
 *   - close with a reset (SO_LINGER 0), dropping anything unsent, so a
 *     producer destroyed at a hand-over leaves nothing behind in the kernel.
 * librdkafka's socket callback gets only the client's opaque (the worker),
 * so the timeout is one per process: the smallest any app asked for. */
static unsigned int tcp_user_timeout_ms; /* ck_pr; 0: not set */

static void tcp_guard_request(unsigned int ms)
{
    for (;;) {
        unsigned int cur = ck_pr_load_uint(&tcp_user_timeout_ms);
        if (cur != 0 && cur <= ms)
            return;
        if (ck_pr_cas_uint(&tcp_user_timeout_ms, cur, ms))
            return;
    }
}

unsigned int mph__kafka_tcp_user_timeout_ms(void)
{
    return ck_pr_load_uint(&tcp_user_timeout_ms);
}

static int producer_socket_cb(int domain, int type, int protocol, void *opaque)
{
    (void)opaque;
    int fd = socket(domain, type | SOCK_CLOEXEC, protocol);
    if (fd < 0 || (domain != AF_INET && domain != AF_INET6))
        return fd;
    /* Best effort: a socket without them still works as before. */
    unsigned int ut = ck_pr_load_uint(&tcp_user_timeout_ms);
    if (ut)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof ut);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    return fd;
}

rd_kafka_conf_t *mph__kafka_conf_new(const mph__kafka_env_t *env, const mph_conf_t *conf,
                                     mph__kafka_role_t role, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    char num[32];
    const char *app_id = mph_conf_get(conf, "app_id");
    struct { const char *k; const char *v; } base[] = {
        {"bootstrap.servers", env->bootstrap},
        {"client.id", app_id && *app_id ? app_id : "mephisto"},
        {"log.connection.close", "false"},
        {"socket.keepalive.enable", "true"},
        {"allow.auto.create.topics", "false"},
    };
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++)
        if (mph__kafka_conf_set(kc, base[i].k, base[i].v, errstr, errstr_size))
            goto fail;
    rd_kafka_conf_set_log_cb(kc, log_cb);
    /* profile=latency (config.c documents it): no Nagle delay on any
     * connection; linger and fetch wait below. kafka.<prop> settings are
     * applied last, so explicit ones win. */
    const char *profile = mph_conf_get(conf, "profile");
    bool latency = profile && !strcmp(profile, "latency");
    if (latency && mph__kafka_conf_set(kc, "socket.nagle.disable", "true", errstr, errstr_size))
        goto fail;

    if (role == MPH__KAFKA_PRODUCER) {
        snprintf(num, sizeof num, "%lld",
                 (long long)(mph_conf_is_set(conf, "producer_linger_ms") || !latency
                                 ? mph_conf_get_int(conf, "producer_linger_ms", 5)
                                 : 0));
        /* The producer's memory bound (producer_buffer_max_bytes): librdkafka
         * counts value bytes only, so the message count is bounded too, one
         * record per 512 bytes, for records whose bookkeeping (~200 bytes
         * each) outweighs their values. */
        int64_t buf = mph_conf_get_int(conf, "producer_buffer_max_bytes", 64 << 20);
        int64_t msgs = buf / 512;
        char kbytes[32], nmsgs[32];
        snprintf(kbytes, sizeof kbytes, "%lld", (long long)(buf / 1024));
        snprintf(nmsgs, sizeof nmsgs, "%lld",
                 (long long)(msgs < 10000 ? 10000 : msgs > 10000000 ? 10000000 : msgs));
        struct { const char *k; const char *v; } p[] = {
            {"enable.idempotence", "true"},
            {"acks", "all"},
            {"partitioner", "murmur2_random"},
            {"linger.ms", num},
            {"batch.num.messages", "10000"},
            {"queue.buffering.max.messages", nmsgs},
            {"queue.buffering.max.kbytes", kbytes},
        };
        for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
            if (mph__kafka_conf_set(kc, p[i].k, p[i].v, errstr, errstr_size))
                goto fail;
        int64_t session = mph_conf_get_int(conf, "session_timeout_ms", 10000);
        tcp_guard_request((unsigned int)(session / 2 < 1000 ? 1000 : session / 2));
        rd_kafka_conf_set_socket_cb(kc, producer_socket_cb);
    } else if (role == MPH__KAFKA_CONSUMER) {
        const char *assignor = mph_conf_get(conf, "assignor");
        const char *instance = mph_conf_get(conf, "group_instance_id");
        snprintf(num, sizeof num, "%lld",
                 (long long)mph_conf_get_int(conf, "session_timeout_ms", 10000));
        struct { const char *k; const char *v; } c[] = {
            {"group.id", app_id && *app_id ? app_id : "mephisto"},
            {"enable.auto.commit", "false"},
            {"enable.auto.offset.store", "false"},
            {"auto.offset.reset", "earliest"},
            {"enable.partition.eof", "false"},
            {"partition.assignment.strategy", assignor && *assignor ? assignor : "range"},
            {"session.timeout.ms", num},
            {"heartbeat.interval.ms", "1000"},
            {"fetch.wait.max.ms", latency ? "10" : "100"},
            {"queued.min.messages", "20000"}, /* the app sizes it (app.c) */
        };
        for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
            if (mph__kafka_conf_set(kc, c[i].k, c[i].v, errstr, errstr_size))
                goto fail;
        if (instance && *instance &&
            mph__kafka_conf_set(kc, "group.instance.id", instance, errstr, errstr_size))
            goto fail;
        /* Every consumer role (group member, changelog recovery) reads only
         * committed transactions under exactly_once. librdkafka's default
         * already, made explicit; kafka.isolation.level=read_uncommitted is
         * refused below (guarded). Under read_committed librdkafka 2.0.2
         * also fetches committed offsets with require_stable (KIP-447). */
        const char *pg = mph_conf_get(conf, "processing_guarantee");
        if (pg && !strcmp(pg, "exactly_once") &&
            mph__kafka_conf_set(kc, "isolation.level", "read_committed", errstr, errstr_size))
            goto fail;
    }

    struct apply_ctx ctx = {kc, conf, errstr, errstr_size, MPH_OK};
    mph_conf_foreach(conf, "kafka.", apply_passthrough, &ctx);
    if (ctx.err)
        goto fail;
    return kc;
fail:
    rd_kafka_conf_destroy(kc);
    return NULL;
}

rd_kafka_t *mph__kafka_new(rd_kafka_conf_t *kc, mph__kafka_role_t role, char *errstr,
                           size_t errstr_size)
{
    char kerr[512];
    rd_kafka_type_t type = role == MPH__KAFKA_CONSUMER ? RD_KAFKA_CONSUMER : RD_KAFKA_PRODUCER;
    rd_kafka_t *rk = rd_kafka_new(type, kc, kerr, sizeof kerr);
    if (!rk) {
        rd_kafka_conf_destroy(kc);
        if (errstr && errstr_size)
            snprintf(errstr, errstr_size, "cannot create Kafka client: %s", kerr);
    }
    return rk;
}

mph_err_t mph__kafka_err(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return MPH_OK;
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
        return MPH_ERR_TIMEOUT;
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__RESOLVE:
        return MPH_ERR_TRANSPORT;
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
        return MPH_ERR_NOENT;
    case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS:
        return MPH_ERR_EXISTS;
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR_INVALID_CONFIG:
    case RD_KAFKA_RESP_ERR_INVALID_PARTITIONS:
    case RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR:
        return MPH_ERR_INVALID;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        return MPH_ERR_FULL;
    case RD_KAFKA_RESP_ERR__FENCED:
    case RD_KAFKA_RESP_ERR_PRODUCER_FENCED:
    case RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID:
    case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH:
        return MPH_ERR_FENCED;
    case RD_KAFKA_RESP_ERR__DESTROY:
        return MPH_ERR_STOPPED;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        return MPH_ERR_RANGE;
    default:
        return MPH_ERR_KAFKA;
    }
}

/* Waits for one admin result event on q. */
static rd_kafka_event_t *admin_wait(rd_kafka_queue_t *q, int timeout_ms)
{
    return rd_kafka_queue_poll(q, timeout_ms);
}

static mph_err_t check_existing(rd_kafka_t *rk, const char *name, int want, int timeout_ms,
                                char *errstr, size_t errstr_size)
{
    int have = 0;
    mph_err_t perr = mph__kafka_partition_count(rk, name, timeout_ms, &have);
    if (perr == MPH_OK && (want <= 0 || want == have))
        return MPH_OK;
    if (perr == MPH_OK) {
        if (errstr && errstr_size)
            snprintf(errstr, errstr_size, "topic %s exists with %d partitions, but %d are needed",
                     name, have, want);
        return MPH_ERR_EXISTS;
    }
    if (errstr && errstr_size)
        snprintf(errstr, errstr_size, "topic %s: cannot read its metadata: %s", name,
                 mph_err_str(perr));
    return perr;
}

static mph_err_t mock_create_topics(const mph__kafka_env_t *env, rd_kafka_t *rk,
                                    const mph__topic_spec_t *specs, size_t n, int timeout_ms,
                                    char *errstr, size_t errstr_size)
{
    for (size_t i = 0; i < n; i++) {
        rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(
            env->mock, specs[i].name, specs[i].partitions > 0 ? specs[i].partitions : 1, 1);
        if (e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            mph_err_t err = check_existing(rk, specs[i].name, specs[i].partitions, timeout_ms,
                                           errstr, errstr_size);
            if (err)
                return err;
            continue;
        }
        if (e) {
            if (errstr && errstr_size)
                snprintf(errstr, errstr_size, "creating topic %s: %s", specs[i].name,
                         rd_kafka_err2str(e));
            return mph__kafka_err(e);
        }
    }
    return MPH_OK;
}

/* Waits until the broker's metadata shows topic with want partitions (any
 * count when want <= 0), each with a leader. A topic the controller just
 * created can be missing from a broker's metadata for a moment, and a
 * client that asked right then would be told it does not exist. */
static mph_err_t wait_visible(rd_kafka_t *rk, const char *topic, int want, int timeout_ms,
                              char *errstr, size_t errstr_size)
{
    int64_t deadline = mph_clock_mono_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        if (!rkt)
            return MPH_ERR_INVALID;
        const struct rd_kafka_metadata *md = NULL;
        bool ready = false;
        if (rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            md->topic_cnt == 1 && !md->topics[0].err && md->topics[0].partition_cnt > 0 &&
            (want <= 0 || md->topics[0].partition_cnt == want)) {
            ready = true;
            for (int p = 0; p < md->topics[0].partition_cnt; p++)
                if (md->topics[0].partitions[p].leader < 0 || md->topics[0].partitions[p].err)
                    ready = false;
        }
        if (md)
            rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        if (ready)
            return MPH_OK;
        if (mph_clock_mono_ns() >= deadline) {
            if (errstr && errstr_size)
                snprintf(errstr, errstr_size,
                         "topic %s was created but the broker's metadata did not show it with "
                         "its leaders within %d ms",
                         topic, timeout_ms);
            return MPH_ERR_TIMEOUT;
        }
        usleep(50000);
    }
}

mph_err_t mph__kafka_create_topics(const mph__kafka_env_t *env, rd_kafka_t *rk,
                                   const mph__topic_spec_t *specs, size_t n, int timeout_ms,
                                   char *errstr, size_t errstr_size)
{
    if (env && env->mock)
        return mock_create_topics(env, rk, specs, n, timeout_ms, errstr, errstr_size);
    /* Topics that exist already need no admin request (restarts; clusters
     * where the app may not create topics but an operator did). */
    bool all_exist = true;
    for (size_t i = 0; i < n && all_exist; i++) {
        int have = 0;
        all_exist = mph__kafka_partition_count(rk, specs[i].name, timeout_ms, &have) == MPH_OK;
    }
    if (all_exist) {
        for (size_t i = 0; i < n; i++) {
            mph_err_t err = check_existing(rk, specs[i].name, specs[i].partitions, timeout_ms,
                                           errstr, errstr_size);
            if (err)
                return err;
        }
        return MPH_OK;
    }
    char kerr[512];
    mph_err_t rc = MPH_OK;
    rd_kafka_NewTopic_t **nt = calloc(n ? n : 1, sizeof *nt);
    if (!nt)
        return MPH_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        nt[i] = rd_kafka_NewTopic_new(specs[i].name,
                                      specs[i].partitions > 0 ? specs[i].partitions : 1,
                                      specs[i].replication > 0 ? specs[i].replication : 1,
                                      kerr, sizeof kerr);
        if (!nt[i]) {
            if (errstr && errstr_size)
                snprintf(errstr, errstr_size, "topic %s: %s", specs[i].name, kerr);
            rc = MPH_ERR_INVALID;
            goto out;
        }
        for (const char *const *c = specs[i].configs; c && c[0]; c += 2)
            rd_kafka_NewTopic_set_config(nt[i], c[0], c[1]);
    }

    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, kerr, sizeof kerr);
    rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, kerr, sizeof kerr);
    rd_kafka_CreateTopics(rk, nt, n, opts, q);
    rd_kafka_event_t *ev = admin_wait(q, timeout_ms + 1000);
    if (!ev) {
        rc = MPH_ERR_TIMEOUT;
        if (errstr && errstr_size)
            snprintf(errstr, errstr_size, "creating topics: no answer from the broker within %d ms",
                     timeout_ms);
        goto out_q;
    }
    if (rd_kafka_event_error(ev)) {
        rc = mph__kafka_err(rd_kafka_event_error(ev));
        if (errstr && errstr_size)
            snprintf(errstr, errstr_size, "creating topics: %s", rd_kafka_event_error_string(ev));
        goto out_ev;
    }
    const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
    size_t cnt = 0;
    const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &cnt);
    for (size_t i = 0; i < cnt && rc == MPH_OK; i++) {
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[i]);
        const char *name = rd_kafka_topic_result_name(tr[i]);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            int want = -1;
            for (size_t j = 0; j < n; j++)
                if (strcmp(specs[j].name, name) == 0)
                    want = specs[j].partitions;
            rc = wait_visible(rk, name, want, timeout_ms, errstr, errstr_size);
            continue;
        }
        if (e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            int want = -1;
            for (size_t j = 0; j < n; j++)
                if (strcmp(specs[j].name, name) == 0)
                    want = specs[j].partitions;
            /* Another process may have created it a moment ago (workers
             * of a new app started together): wait until it is visible
             * (any partition count; check_existing judges the count). */
            rc = wait_visible(rk, name, -1, timeout_ms, errstr, errstr_size);
            if (rc == MPH_OK)
                rc = check_existing(rk, name, want, timeout_ms, errstr, errstr_size);
            continue;
        }
        rc = mph__kafka_err(e);
        if (errstr && errstr_size)
            snprintf(errstr, errstr_size, "creating topic %s: %s", name,
                     rd_kafka_topic_result_error_string(tr[i]) ? rd_kafka_topic_result_error_string(tr[i])
                                                              : rd_kafka_err2str(e));
    }
out_ev:
    rd_kafka_event_destroy(ev);
out_q:
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_queue_destroy(q);
out:
    for (size_t i = 0; i < n; i++)
        if (nt[i])
            rd_kafka_NewTopic_destroy(nt[i]);
    free(nt);
    return rc;
}

mph_err_t mph__kafka_delete_topics(const mph__kafka_env_t *env, rd_kafka_t *rk,
                                   const char *const *names, size_t n, int timeout_ms,
                                   char *errstr, size_t errstr_size)
{
    if (env && env->mock)
        return MPH_OK;
    char kerr[256];
    mph_err_t rc = MPH_OK;
    rd_kafka_DeleteTopic_t **dt = calloc(n ? n : 1, sizeof *dt);
    if (!dt)
        return MPH_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        dt[i] = rd_kafka_DeleteTopic_new(names[i]);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DELETETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, kerr, sizeof kerr);
    rd_kafka_DeleteTopics(rk, dt, n, opts, q);
    rd_kafka_event_t *ev = admin_wait(q, timeout_ms + 1000);
    if (!ev) {
        rc = MPH_ERR_TIMEOUT;
    } else {
        if (rd_kafka_event_error(ev)) {
            rc = mph__kafka_err(rd_kafka_event_error(ev));
            if (errstr && errstr_size)
                snprintf(errstr, errstr_size, "deleting topics: %s",
                         rd_kafka_event_error_string(ev));
        }
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_queue_destroy(q);
    rd_kafka_DeleteTopic_destroy_array(dt, n);
    free(dt);
    return rc;
}

mph_err_t mph__kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms, int *out)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt)
        return MPH_ERR_INVALID;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
    mph_err_t rc;
    if (e) {
        rc = mph__kafka_err(e);
    } else if (md->topic_cnt < 1 || md->topics[0].err) {
        rc = md->topic_cnt < 1 ? MPH_ERR_NOENT : mph__kafka_err(md->topics[0].err);
    } else {
        *out = md->topics[0].partition_cnt;
        rc = *out > 0 ? MPH_OK : MPH_ERR_NOENT;
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return rc;
}

int32_t mph__kafka_partition_for(const void *key, size_t keylen, int32_t partition_cnt)
{
    /* With a non-NULL key the murmur2_random partitioner is a pure function
     * of the key and never looks at the topic handle. */
    return rd_kafka_msg_partitioner_murmur2_random(NULL, key, keylen, partition_cnt, NULL, NULL);
}

mph_err_t mph__kafka_watermarks(rd_kafka_t *rk, const char *topic, int32_t partition,
                                int64_t *low, int64_t *high, int timeout_ms)
{
    return mph__kafka_err(
        rd_kafka_query_watermark_offsets(rk, topic, partition, low, high, timeout_ms));
}

mph_err_t mph__kafka_topic_max_bytes(const mph__kafka_env_t *env, rd_kafka_t *rk,
                                     const char *const *names, size_t n, int timeout_ms,
                                     int64_t *out, char *errstr, size_t errstr_size)
{
    for (size_t i = 0; i < n; i++)
        out[i] = MPH__KAFKA_DEFAULT_MAX_MESSAGE_BYTES;
    if (n == 0)
        return MPH_OK;
    /* librdkafka's mock cluster answers no DescribeConfigs (2.0.2; the
     * request would wait for its timeout): assume the broker default, as a
     * topic without an override has. An app given the address of a mock
     * cluster another handle started (tests) knows it by its cluster id. */
    char *cid = env && env->mock ? NULL : rd_kafka_clusterid(rk, timeout_ms);
    bool mock = (env && env->mock) || (cid && !strncmp(cid, "mockCluster", 11));
    if (cid)
        rd_kafka_mem_free(rk, cid);
    if (mock) {
        if (errstr && errstr_size)
            snprintf(errstr, errstr_size, "the mock cluster has no topic configs");
        return MPH_ERR_UNSUPPORTED;
    }
    char kerr[256];
    mph_err_t rc = MPH_OK;
    rd_kafka_ConfigResource_t **res = calloc(n, sizeof *res);
    if (!res)
        return MPH_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        res[i] = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, names[i]);
        if (!res[i]) {
            rc = MPH_ERR_NOMEM;
            goto out;
        }
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opts =
        rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
    rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, kerr, sizeof kerr);
    rd_kafka_DescribeConfigs(rk, res, n, opts, q);
    rd_kafka_event_t *ev = admin_wait(q, timeout_ms + 1000);
    if (!ev) {
        rc = MPH_ERR_TIMEOUT;
        if (errstr && errstr_size)
            snprintf(errstr, errstr_size, "no answer to DescribeConfigs within %d ms",
                     timeout_ms);
        goto out_q;
    }
    if (rd_kafka_event_error(ev)) {
        rc = mph__kafka_err(rd_kafka_event_error(ev));
        if (errstr && errstr_size)
            snprintf(errstr, errstr_size, "DescribeConfigs: %s",
                     rd_kafka_event_error_string(ev));
        goto out_ev;
    }
    size_t cnt = 0;
    const rd_kafka_ConfigResource_t **rr =
        rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &cnt);
    for (size_t r = 0; r < cnt; r++) {
        const char *name = rd_kafka_ConfigResource_name(rr[r]);
        size_t i = 0;
        while (i < n && strcmp(names[i], name) != 0)
            i++;
        if (i == n)
            continue;
        if (rd_kafka_ConfigResource_error(rr[r])) {
            rc = mph__kafka_err(rd_kafka_ConfigResource_error(rr[r]));
            if (errstr && errstr_size)
                snprintf(errstr, errstr_size, "topic %s: DescribeConfigs: %s", name,
                         rd_kafka_ConfigResource_error_string(rr[r])
                             ? rd_kafka_ConfigResource_error_string(rr[r])
                             : rd_kafka_err2str(rd_kafka_ConfigResource_error(rr[r])));
            continue;
        }
        size_t ne = 0;
        const rd_kafka_ConfigEntry_t **ce = rd_kafka_ConfigResource_configs(rr[r], &ne);
        for (size_t e = 0; e < ne; e++) {
            const char *v = rd_kafka_ConfigEntry_value(ce[e]);
            if (v && !strcmp(rd_kafka_ConfigEntry_name(ce[e]), "max.message.bytes")) {
                char *end;
                long long x = strtoll(v, &end, 10);
                if (!*end && x > 0)
                    out[i] = x;
            }
        }
    }
out_ev:
    rd_kafka_event_destroy(ev);
out_q:
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_queue_destroy(q);
out:
    for (size_t i = 0; i < n; i++)
        if (res[i])
            rd_kafka_ConfigResource_destroy(res[i]);
    free(res);
    return rc;
}

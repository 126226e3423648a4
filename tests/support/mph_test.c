#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <ftw.h>

#include "mph_test.h"

const char *mph_test_broker(void)
{
    static char buf[512];
    const char *b = getenv("MEPHISTO_TEST_BROKERS");
    if (!b || !*b)
        return "mock://1";
    if (strstr(b, "://"))
        return b;
    snprintf(buf, sizeof buf, "kafka://%s", b);
    return buf;
}

bool mph_test_real_broker(void)
{
    const char *b = getenv("MEPHISTO_TEST_BROKERS");
    return b && *b;
}

const char *mph_test_unique(const char *prefix, char *buf, size_t size)
{
    static int counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(buf, size, "%s-%d-%lld%03ld-%d", prefix, (int)getpid(), (long long)ts.tv_sec,
             ts.tv_nsec / 1000000, __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED));
    return buf;
}

const char *mph_test_tmpdir(const char *prefix, char *buf, size_t size)
{
    char name[200];
    mph_test_unique(prefix, name, sizeof name);
    snprintf(buf, size, "/tmp/mph-test-%s-XXXXXX", name);
    if (!mkdtemp(buf))
        return NULL;
    return buf;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void mph_test_rmrf(const char *path)
{
    if (path && strncmp(path, "/tmp/", 5) == 0)
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

uint64_t mph_test_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* ---- cluster ---- */
#include <criterion/criterion.h>

static void test_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    mph_test_cluster_t *c = opaque;
    if (m->err)
        c->failed++;
    else
        c->delivered++;
}

mph_test_cluster_t *mph_test_cluster_new(void)
{
    char err[512];
    mph_test_cluster_t *c = calloc(1, sizeof *c);
    mph_conf_t *conf = mph_conf_new();
    cr_assert_eq(mph_conf_set(conf, "broker", mph_test_broker(), err, sizeof err), MPH_OK, "%s",
                 err);
    c->env = mph__kafka_env_new(conf, err, sizeof err);
    cr_assert_not_null(c->env, "%s", err);
    snprintf(c->broker, sizeof c->broker, "kafka://%s", mph__kafka_env_bootstrap(c->env));
    rd_kafka_conf_t *kc = mph__kafka_conf_new(c->env, conf, MPH__KAFKA_PRODUCER, err, sizeof err);
    cr_assert_not_null(kc, "%s", err);
    rd_kafka_conf_set_dr_msg_cb(kc, test_dr_cb);
    rd_kafka_conf_set_opaque(kc, c);
    c->producer = mph__kafka_new(kc, MPH__KAFKA_PRODUCER, err, sizeof err);
    cr_assert_not_null(c->producer, "%s", err);
    mph_conf_destroy(conf);
    return c;
}

void mph_test_cluster_destroy(mph_test_cluster_t *c)
{
    if (!c)
        return;
    rd_kafka_flush(c->producer, 10000);
    rd_kafka_destroy(c->producer);
    mph__kafka_env_destroy(c->env);
    free(c);
}

void mph_test_create_topic(mph_test_cluster_t *c, const char *name, int partitions)
{
    char err[512];
    mph__topic_spec_t spec = {name, partitions, 1, NULL};
    /* A broker takes a while to elect leaders for thousands of partitions. */
    int timeout_ms = partitions > 1000 ? 180000 : 30000;
    cr_assert_eq(mph__kafka_create_topics(c->env, c->producer, &spec, 1, timeout_ms, err,
                                          sizeof err),
                 MPH_OK, "%s", err);
}

void mph_test_produce(mph_test_cluster_t *c, const char *topic, int32_t partition,
                      const void *key, size_t klen, const void *val, size_t vlen)
{
    rd_kafka_resp_err_t e;
    while ((e = rd_kafka_producev(c->producer, RD_KAFKA_V_TOPIC(topic),
                                  RD_KAFKA_V_PARTITION(partition), RD_KAFKA_V_KEY(key, klen),
                                  RD_KAFKA_V_VALUE((void *)val, vlen),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(c->producer, 10);
    cr_assert_eq(e, 0, "produce: %s", rd_kafka_err2str(e));
    rd_kafka_poll(c->producer, 0);
}

void mph_test_flush(mph_test_cluster_t *c)
{
    cr_assert_eq(rd_kafka_flush(c->producer, 120000), 0, "flush");
    cr_assert_eq(c->failed, 0, "test input deliveries failed");
}

int mph_test_produce_seq(mph_test_cluster_t *c, const char *topic, int n, int nkeys, int seq0)
{
    int before = c->delivered;
    for (int i = 0; i < n; i++) {
        char key[32], val[64];
        int kl = snprintf(key, sizeof key, "k%d", i % nkeys);
        int vl = snprintf(val, sizeof val, "k%d:%d", i % nkeys, i / nkeys + seq0);
        mph_test_produce(c, topic, RD_KAFKA_PARTITION_UA, key, (size_t)kl, val, (size_t)vl);
    }
    mph_test_flush(c);
    return c->delivered - before;
}

int mph_test_consume_all(mph_test_cluster_t *c, const char *topic, int want, int idle_ms,
                         int timeout_ms, mph_test_record_fn *fn, void *opaque)
{
    char err[512];
    mph_conf_t *conf = mph_conf_new();
    mph_conf_set(conf, "broker", c->broker, err, sizeof err);
    mph_conf_set(conf, "app_id", "mph-test-reader", err, sizeof err);
    /* librdkafka's default, said here: exactly_once tests count on it. */
    mph_conf_set(conf, "kafka.isolation.level", "read_committed", err, sizeof err);
    rd_kafka_conf_t *kc = mph__kafka_conf_new(c->env, conf, MPH__KAFKA_CONSUMER, err, sizeof err);
    cr_assert_not_null(kc, "%s", err);
    rd_kafka_t *rk = mph__kafka_new(kc, MPH__KAFKA_CONSUMER, err, sizeof err);
    cr_assert_not_null(rk, "%s", err);
    int parts = 0;
    cr_assert_eq(mph__kafka_partition_count(rk, topic, 10000, &parts), MPH_OK);
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(parts);
    for (int p = 0; p < parts; p++)
        rd_kafka_topic_partition_list_add(tp, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, tp);
    rd_kafka_topic_partition_list_destroy(tp);
    int got = 0;
    int64_t start = mph_clock_mono_ns(), last = start;
    while ((want < 0 || got < want) &&
           (mph_clock_mono_ns() - start) / 1000000 < timeout_ms &&
           (mph_clock_mono_ns() - last) / 1000000 < idle_ms) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (!m->err) {
            got++;
            last = mph_clock_mono_ns();
            if (fn)
                fn(m, opaque);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    mph_conf_destroy(conf);
    return got;
}

int64_t mph_test_committed_sum(mph_test_cluster_t *c, const char *group, const char *topic,
                               int partitions)
{
    char err[512];
    mph_conf_t *conf = mph_conf_new();
    mph_conf_set(conf, "broker", c->broker, err, sizeof err);
    mph_conf_set(conf, "app_id", group, err, sizeof err);
    rd_kafka_conf_t *kc = mph__kafka_conf_new(c->env, conf, MPH__KAFKA_CONSUMER, err, sizeof err);
    rd_kafka_t *rk = mph__kafka_new(kc, MPH__KAFKA_CONSUMER, err, sizeof err);
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(tp, topic, p);
    int64_t sum = -1;
    if (rd_kafka_committed(rk, tp, 10000) == 0) {
        for (int p = 0; p < partitions; p++)
            if (tp->elems[p].offset >= 0)
                sum = (sum < 0 ? 0 : sum) + tp->elems[p].offset;
    }
    rd_kafka_topic_partition_list_destroy(tp);
    rd_kafka_destroy(rk);
    mph_conf_destroy(conf);
    return sum;
}

long mph_test_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

/* Parses app's /stats document; the caller destroys the parser and frees
 * *json. NULL when either fails. */
static mph_json_parser_t *stats_doc(mph_app_t *app, char **json)
{
    size_t len = 0;
    *json = NULL;
    if (mph_app_stats_json(app, json, &len) != MPH_OK)
        return NULL;
    mph_json_parser_t *p = mph_json_parser_new(0, NULL, 0);
    if (p && mph_json_parse(p, *json, len, len) == MPH_OK)
        return p;
    mph_json_parser_destroy(p);
    free(*json);
    *json = NULL;
    return NULL;
}

bool mph_test_stat(mph_app_t *app, const char *path, uint64_t *out)
{
    char *json;
    mph_json_parser_t *p = stats_doc(app, &json);
    if (!p)
        return false;
    bool b = false;
    bool ok = mph_json_get_u64(p, MPH_JSON_ROOT, path, out) == MPH_OK;
    if (!ok && mph_json_get_bool(p, MPH_JSON_ROOT, path, &b) == MPH_OK) {
        *out = b;
        ok = true;
    }
    mph_json_parser_destroy(p);
    free(json);
    return ok;
}

bool mph_test_stat_str(mph_app_t *app, const char *path, char *buf, size_t size)
{
    char *json;
    mph_json_parser_t *p = stats_doc(app, &json);
    if (!p)
        return false;
    const char *s = NULL;
    size_t n = 0;
    bool ok = mph_json_get_str(p, MPH_JSON_ROOT, path, &s, &n) == MPH_OK && n < size;
    if (ok) {
        memcpy(buf, s, n);
        buf[n] = '\0';
    }
    mph_json_parser_destroy(p);
    free(json);
    return ok;
}

int64_t mph_test_wait_committed(mph_test_cluster_t *c, const char *group, const char *topic,
                                int partitions, int64_t want, int timeout_ms)
{
    int64_t sum = mph_test_committed_sum(c, group, topic, partitions);
    for (int waited = 0; sum < want && waited < timeout_ms; waited += 100) {
        usleep(100000);
        sum = mph_test_committed_sum(c, group, topic, partitions);
    }
    return sum;
}

mph_app_t *mph_test_app_kv(const char *const *kv)
{
    char err[512];
    mph_conf_t *conf = mph_conf_new();
    for (const char *const *p = kv; *p; p += 2)
        cr_assert_eq(mph_conf_set(conf, p[0], p[1], err, sizeof err), MPH_OK, "%s", err);
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(app, "%s", err);
    return app;
}

void mph_test_refuse_io_uring(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    cr_assert_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
    cr_assert_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0, "seccomp: %s",
                 strerror(errno));
}

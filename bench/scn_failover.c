/*
 * failover: kill -9 of a table's owner → first record processed by the new
 * owner, with and without a standby replica (num_standby_replicas).
 *
 * Each run (keys N = 100,000 and 1,000,000, or --keys alone; standby 0 and
 * 1) starts two `mephisto worker` processes, A then B, with the reltest
 * plugin (build/examples/libreltest.so: tables `counts` and `maxseq`, one
 * row per key each; memory store; session_timeout_ms=6000), beside this
 * program. Setup (not timed): N records, one per key, go to the input topic
 * (--partitions partitions, murmur2 like the engine), and both processes
 * process them (committed offsets at the end) and, with a standby, hold
 * caught-up standbys (lag 0 in /stats). Then a probe record per partition
 * every 10 ms; A is killed with SIGKILL; the clock runs from the kill until
 * the first probe produced after it comes out of the output topic for every
 * partition (A's partitions are the last: B processes them only once it
 * took them over and restored their shards). So the session timeout (the
 * broker notices the death), the rebalance, the restore and the first
 * fetch are in.
 *
 * Also reported: the changelog records B replayed on take-over (its /stats
 * recovery.records_restored), B's CPU time and RSS growth for that restore
 * per replayed record (recovery cost), and, from the standby run, the
 * standby's cost per changelog record applied: B's CPU time and RSS at the
 * end of the setup minus the same in the run without standby (same N),
 * divided by the records B's standbys applied. Targets (reported, never
 * asserted): with a standby, failover <= session timeout + 1 s; the
 * standby's CPU per record <= the restore's.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "mephisto/json.h"

#define SESSION_MS 6000
#define PROBE_BASE 1000000000LL

typedef struct proc {
    pid_t pid;
    int port;
    char dir[PATH_MAX];
} proc_t;

typedef struct sample {
    double cpu_s;
    long rss_kb;
} sample_t;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* GET /stats of a worker, parsed into p (true when it answered). */
static bool get_stats(int port, mph_json_parser_t *p)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return false;
    }
    const char *req = "GET /stats HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
        close(fd);
        return false;
    }
    size_t cap = 1 << 16, got = 0;
    char *buf = malloc(cap + 1);
    ssize_t r;
    while (buf && (r = read(fd, buf + got, cap - got)) > 0) {
        got += (size_t)r;
        if (got == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb)
                break;
            buf = nb;
            cap *= 2;
        }
    }
    close(fd);
    if (!buf)
        return false;
    buf[got] = 0;
    char *body = strstr(buf, "\r\n\r\n");
    bool ok = body && strncmp(buf, "HTTP/1.1 200", 12) == 0 &&
              mph_json_parse(p, body + 4, strlen(body + 4), strlen(body + 4)) == MPH_OK &&
              mph_json_validate(p) == MPH_OK;
    free(buf);
    return ok;
}

static int64_t jint(mph_json_parser_t *p, const char *path)
{
    int64_t v = -1;
    if (mph_json_get_i64(p, MPH_JSON_ROOT, path, &v) != MPH_OK)
        return -1;
    return v;
}

/* Standby shards and how many records they applied; -1 when some lag. */
static int64_t standbys_applied(mph_json_parser_t *p, int64_t *shards)
{
    *shards = jint(p, "recovery.standby_shards");
    int64_t sum = 0;
    for (int64_t i = 0; i < *shards; i++) {
        char path[80];
        snprintf(path, sizeof path, "recovery.standbys.%lld.lag", (long long)i);
        if (jint(p, path) != 0)
            return -1;
        snprintf(path, sizeof path, "recovery.standbys.%lld.records_applied", (long long)i);
        sum += jint(p, path);
    }
    return sum;
}

static sample_t sample_proc(pid_t pid)
{
    sample_t s = {NAN, -1};
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f) {
        if (fgets(buf, sizeof buf, f)) {
            char *q = strrchr(buf, ')');
            unsigned long ut = 0, st = 0;
            if (q && sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
                            &st) == 2)
                s.cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
        }
        fclose(f);
    }
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (f) {
        while (fgets(buf, sizeof buf, f))
            if (sscanf(buf, "VmRSS: %ld", &s.rss_kb) == 1)
                break;
        fclose(f);
    }
    return s;
}

/* Starts `mephisto worker` (beside this program) with the reltest plugin;
 * its output goes to <dir>/log. */
static bool spawn(proc_t *pr, const bench_opts_t *o, bench_kafka_t *k, const char *app_id,
                  int standby, char *err, size_t err_size)
{
    char self[PATH_MAX], bin[PATH_MAX + 16], plugin[PATH_MAX + 40], log[PATH_MAX + 8];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        snprintf(err, err_size, "cannot find this program's directory");
        return false;
    }
    self[n] = 0;
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = 0;
    snprintf(bin, sizeof bin, "%s/mephisto", self);
    snprintf(plugin, sizeof plugin, "%s/examples/libreltest.so", self);
    if (access(bin, X_OK) != 0 || access(plugin, R_OK) != 0) {
        snprintf(err, err_size, "failover needs the mephisto program and "
                                "examples/libreltest.so beside mephisto-bench (build them)");
        return false;
    }
    if (!bench_tempdir("bench-fo", pr->dir, sizeof pr->dir)) {
        snprintf(err, err_size, "no temp dir");
        return false;
    }
    snprintf(log, sizeof log, "%s/log", pr->dir);
    pr->port = free_port();
    char port[16], parts[64], tparts[64], sets[4][300], sb[64], workers[16];
    snprintf(port, sizeof port, "%d", pr->port);
    snprintf(parts, sizeof parts, "reltest.partitions=%d", o->partitions);
    snprintf(tparts, sizeof tparts, "topic_partitions=%d", o->partitions);
    snprintf(sets[0], sizeof sets[0], "app_id=%s", app_id);
    snprintf(sets[1], sizeof sets[1], "reltest.input_topic=%s-in", app_id);
    snprintf(sets[2], sizeof sets[2], "reltest.output_topic=%s-out", app_id);
    snprintf(sets[3], sizeof sets[3], "session_timeout_ms=%d", SESSION_MS);
    snprintf(sb, sizeof sb, "num_standby_replicas=%d", standby);
    snprintf(workers, sizeof workers, "%d", o->workers > 0 ? o->workers : 1);
    const char *argv[] = {bin, "worker", "--app", plugin, "--broker",
                          bench_kafka_app_broker(k), "--web-port", port, "--workers", workers,
                          "--datadir", pr->dir, "--set", sets[0], "--set", sets[1], "--set",
                          sets[2], "--set", sets[3], "--set", sb, "--set", parts, "--set",
                          tparts, "--set", "store=memory", "--set", "commit_interval_ms=200",
                          "--set", "log_level=info", NULL};
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        snprintf(err, err_size, "cannot create the worker's log file: %s", strerror(errno));
        return false;
    }
    pr->pid = fork();
    if (pr->pid == 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(fd);
    if (pr->pid < 0) {
        snprintf(err, err_size, "fork: %s", strerror(errno));
        return false;
    }
    return true;
}

static void finish(proc_t *pr, int sig)
{
    if (pr->pid <= 0)
        return;
    kill(pr->pid, sig);
    for (int i = 0; i < 300; i++) {
        if (waitpid(pr->pid, NULL, WNOHANG) == pr->pid) {
            pr->pid = 0;
            break;
        }
        bench_sleep_ms(100);
    }
    if (pr->pid > 0) {
        kill(pr->pid, SIGKILL);
        waitpid(pr->pid, NULL, 0);
        pr->pid = 0;
    }
    bench_rmtree(pr->dir);
}

typedef struct outcome {
    double failover_s;
    int64_t replayed, standby_shards, standby_applied, changelog;
    sample_t setup_b, after_b;
} outcome_t;

static void produce_one(rd_kafka_t *p, const char *topic, int32_t part, const char *key,
                        long long id)
{
    char val[160];
    int vl = snprintf(val, sizeof val, "{\"id\":%lld,\"key\":\"%s\",\"seq\":0,\"ts\":%lld}", id,
                      key, (long long)(bench_now_ns() / 1000000));
    while (rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(part),
                             RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE(val, (size_t)vl),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(p, 10);
}

static int32_t part_of(const char *key, int parts)
{
    return rd_kafka_msg_partitioner_murmur2_random(NULL, key, strlen(key), parts, NULL, NULL);
}

static bool one_run(const bench_opts_t *o, bench_kafka_t *k, long n, int standby, outcome_t *res,
                    char *err, size_t err_size)
{
    char id[64], app_id[128], in[160], out[160];
    snprintf(app_id, sizeof app_id, "bench-fo-%s", bench_run_id(id, sizeof id));
    snprintf(in, sizeof in, "%s-in", app_id);
    snprintf(out, sizeof out, "%s-out", app_id);
    int P = o->partitions;
    bool ok = false;
    proc_t a = {0}, b = {0};
    rd_kafka_t *prod = NULL, *cons = NULL, *reader = NULL;
    mph_json_parser_t *jp = mph_json_parser_new(0, err, err_size);
    int64_t *seen = calloc((size_t)P, sizeof *seen);
    char (*probe_key)[32] = calloc((size_t)P, sizeof *probe_key);
    if (!jp || !seen || !probe_key ||
        bench_topic_create(k, in, P, err, err_size) || bench_topic_create(k, out, P, err, err_size))
        goto out;
    rd_kafka_conf_t *pc = bench_kafka_conf(k);
    bench_kafka_engine_producer(pc, 5);
    prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, err_size);
    if (!prod) {
        rd_kafka_conf_destroy(pc);
        goto out;
    }
    for (long i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%ld", i);
        produce_one(prod, in, part_of(key, P), key, i);
        if (i % 10000 == 0)
            rd_kafka_poll(prod, 0);
    }
    rd_kafka_flush(prod, 120000);
    /* A key per partition for the probes. */
    for (int found = 0, i = 0; found < P && i < 1000000; i++) {
        char key[32];
        snprintf(key, sizeof key, "probe%d", i);
        int32_t p = part_of(key, P);
        if (!probe_key[p][0]) {
            snprintf(probe_key[p], sizeof probe_key[p], "%s", key);
            found++;
        }
    }
    if (!spawn(&a, o, k, app_id, standby, err, err_size))
        goto out;
    bench_sleep_ms(1000);
    if (!spawn(&b, o, k, app_id, standby, err, err_size))
        goto out;
    reader = bench_offsets_reader(k, app_id, err, err_size);
    if (!reader)
        goto out;
    int64_t deadline = bench_now_ns() + (int64_t)(o->timeout * 1e9);
    while (bench_committed(reader, in, P) < n) {
        if (bench_now_ns() > deadline) {
            snprintf(err, err_size, "the workers did not process the %ld setup records", n);
            goto out;
        }
        bench_sleep_ms(200);
    }
    /* Both members in place (and their standbys caught up). */
    for (;;) {
        int64_t sa = 0, sbb = 0;
        bool ready = get_stats(a.port, jp) && jint(jp, "totals.partitions") > 0 &&
                     (!standby || standbys_applied(jp, &sa) >= 0);
        ready = ready && get_stats(b.port, jp) && jint(jp, "totals.partitions") > 0 &&
                jint(jp, "recovery.restoring_shards") == 0;
        int64_t applied = standby ? standbys_applied(jp, &sbb) : 0;
        if (ready && (!standby || (applied >= 0 && sa > 0 && sbb > 0))) {
            res->standby_applied = applied;
            res->standby_shards = sbb;
            break;
        }
        if (bench_now_ns() > deadline) {
            snprintf(err, err_size, "the workers did not settle (standbys caught up)");
            goto out;
        }
        bench_sleep_ms(200);
    }
    res->changelog = 2 * n; /* one row per key in counts and in maxseq */
    res->setup_b = sample_proc(b.pid);

    rd_kafka_conf_t *cc = bench_kafka_conf(k);
    bench_kafka_engine_consumer(cc, app_id);
    rd_kafka_conf_set(cc, "group.id", "bench-fo-probe", NULL, 0);
    cons = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, err_size);
    if (!cons) {
        rd_kafka_conf_destroy(cc);
        goto out;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(P);
    for (int p = 0; p < P; p++)
        rd_kafka_topic_partition_list_add(l, out, p)->offset = RD_KAFKA_OFFSET_END;
    rd_kafka_assign(cons, l);
    rd_kafka_topic_partition_list_destroy(l);
    long long seq = 0, seq_kill = -1;
    int64_t t_kill = 0, t_probe = bench_now_ns();
    int left = P;
    deadline = bench_now_ns() + (int64_t)(SESSION_MS + 120000) * 1000000;
    while (left > 0 && bench_now_ns() < deadline) {
        if (bench_now_ns() >= t_probe) {
            for (int p = 0; p < P; p++)
                produce_one(prod, in, p, probe_key[p], PROBE_BASE + seq * P + p);
            seq++;
            t_probe += 10000000;
            rd_kafka_poll(prod, 0);
        }
        if (seq_kill < 0 && seq == 150) {
            t_kill = bench_now_ns();
            seq_kill = seq;
            kill(a.pid, SIGKILL);
            waitpid(a.pid, NULL, 0);
            a.pid = 0;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(cons, 2);
        if (!m)
            continue;
        if (!m->err && m->payload && seq_kill >= 0) {
            const char *q = memmem(m->payload, m->len, "\"id\":", 5);
            long long pid = q ? atoll(q + 5) : -1;
            if (pid >= PROBE_BASE && (pid - PROBE_BASE) / P >= seq_kill) {
                int p = (int)((pid - PROBE_BASE) % P);
                if (!seen[p]) {
                    seen[p] = bench_now_ns();
                    left--;
                }
            }
        }
        rd_kafka_message_destroy(m);
    }
    if (left > 0) {
        snprintf(err, err_size, "%d partitions never processed a record after the kill", left);
        goto out;
    }
    int64_t last = 0;
    for (int p = 0; p < P; p++)
        if (seen[p] > last)
            last = seen[p];
    res->failover_s = (double)(last - t_kill) / 1e9;
    for (int i = 0; i < 100; i++) {
        if (get_stats(b.port, jp) && jint(jp, "recovery.restoring_shards") == 0 &&
            jint(jp, "ready") != 0)
            break;
        bench_sleep_ms(100);
    }
    res->replayed = get_stats(b.port, jp) ? jint(jp, "recovery.records_restored") : -1;
    res->after_b = sample_proc(b.pid);
    ok = true;
out:
    if (cons) {
        rd_kafka_consumer_close(cons);
        rd_kafka_destroy(cons);
    }
    if (reader)
        rd_kafka_destroy(reader);
    finish(&a, SIGKILL);
    finish(&b, SIGTERM);
    if (prod)
        rd_kafka_destroy(prod);
    mph_json_parser_destroy(jp);
    free(seen);
    free(probe_key);
    bench_topic_delete(k, in);
    bench_topic_delete(k, out);
    char cl[200];
    snprintf(cl, sizeof cl, "%s-counts-changelog", app_id);
    bench_topic_delete(k, cl);
    snprintf(cl, sizeof cl, "%s-maxseq-changelog", app_id);
    bench_topic_delete(k, cl);
    bench_app_forget(k, app_id);
    return ok;
}

static int run(const bench_opts_t *o)
{
    long sizes[2] = {100000, 1000000};
    int nsizes = 2;
    if (o->keys_set) {
        sizes[0] = o->keys;
        nsizes = 1;
    }
    bench_result_t r[4];
    int nr = 0;
    char err[512] = "", common[400];
    bench_params_common(o, common, sizeof common);
    bench_kafka_t *k = bench_kafka_new(o->broker, err, sizeof err);
    if (k && bench_kafka_is_mock(k)) {
        /* Worker processes cannot join an in-process mock cluster. */
        bench_progress(o, "failover: skipped (needs a real broker: --broker kafka://...)");
        bench_kafka_destroy(k);
        return 0;
    }
    for (int s = 0; s < nsizes; s++) {
        outcome_t oc[2];
        memset(oc, 0, sizeof oc);
        for (int sb = 0; sb < 2; sb++) {
            bench_result_t *x = &r[nr++];
            bench_result_init(x, "failover");
            snprintf(x->label, sizeof x->label, "%s keys=%ld p=%d",
                     sb ? "standby" : "no standby", sizes[s], o->partitions);
            snprintf(x->params, sizeof x->params, "{%s,\"table_keys\":%ld,\"standby\":%d}",
                     common, sizes[s], sb);
            if (!k) {
                snprintf(x->error, sizeof x->error, "%s", err);
                continue;
            }
            bench_progress(o, "failover: %ld keys, num_standby_replicas=%d", sizes[s], sb);
            char e[512] = "";
            if (!one_run(o, k, sizes[s], sb, &oc[sb], e, sizeof e)) {
                snprintf(x->error, sizeof x->error, "%s", e[0] ? e : "failed");
                continue;
            }
            x->messages = (uint64_t)sizes[s];
            x->seconds = oc[sb].failover_s;
            double rec_cpu = oc[sb].replayed > 0 ? (oc[sb].after_b.cpu_s - oc[sb].setup_b.cpu_s) /
                                                       (double)oc[sb].replayed
                                                 : NAN;
            bench_extra(x,
                        ",\"failover_s\":%.3f,\"session_timeout_ms\":%d,"
                        "\"replayed_records\":%lld,\"changelog_records\":%lld,"
                        "\"restore_cpu_us_per_record\":%.3f",
                        oc[sb].failover_s, SESSION_MS, (long long)oc[sb].replayed,
                        (long long)oc[sb].changelog, rec_cpu * 1e6);
            if (sb) {
                double dcpu = oc[1].setup_b.cpu_s - oc[0].setup_b.cpu_s;
                long drss = oc[1].setup_b.rss_kb - oc[0].setup_b.rss_kb;
                double per = oc[1].standby_applied > 0 ? (double)oc[1].standby_applied : NAN;
                double base_rec = oc[0].replayed > 0
                                      ? (oc[0].after_b.cpu_s - oc[0].setup_b.cpu_s) /
                                            (double)oc[0].replayed
                                      : NAN;
                bench_extra(x,
                            ",\"standby_shards\":%lld,\"standby_records_applied\":%lld,"
                            "\"standby_cpu_us_per_record\":%.3f,"
                            "\"standby_rss_bytes_per_record\":%.1f,"
                            "\"recovery_cpu_us_per_record\":%.3f",
                            (long long)oc[1].standby_shards, (long long)oc[1].standby_applied,
                            dcpu / per * 1e6, (double)drss * 1024.0 / per, base_rec * 1e6);
                snprintf(x->target, sizeof x->target, "failover <= %.1f s (session + 1 s)",
                         SESSION_MS / 1000.0 + 1.0);
                x->target_met = oc[1].failover_s <= SESSION_MS / 1000.0 + 1.0;
            } else {
                snprintf(x->target, sizeof x->target, "reported");
            }
        }
    }
    if (k)
        bench_kafka_destroy(k);
    int rc = 0;
    for (int i = 0; i < nr; i++)
        bench_report(o, &r[i]), rc |= r[i].error[0] != 0;
    return rc;
}

const bench_scenario_t bench_scn_failover = {
    "failover",
    "kill -9 of a table's owner -> first record on the new owner, with and without a "
    "standby replica; the standby's cost per changelog record",
    run};

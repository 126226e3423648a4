/*
 * scale: N worker processes (--processes, default 1,2,4) of the count
 * scenario's app (a memory table "counts" per key, with its changelog) in one
 * consumer group on one broker, over the same input of --messages records in
 * --partitions partitions. Each process is `mephisto-bench tool count`, a
 * child of this one (processes cannot share the harness's in-process mock
 * cluster, so the scenario needs kafka://).
 *
 * Timing: from the first record any process takes (each prints "first"
 * once) until the group's committed offsets reach the input's end, so the
 * group's joins and the rebalances of processes that join while others
 * already work are part of what is measured, as on a real deployment that
 * starts N processes at once. CPU: the processes' own (/proc/<pid>/stat)
 * between those two moments, summed; this process only watches. After a
 * graceful stop of every process the changelog's latest value of every key
 * is checked to equal its true count: the tables are exact.
 *
 * Reported per N: records/s, CPU per record, and the ratio of records/s to
 * N=1's; the target for 2 processes (>= 1.6x one's) needs two free
 * cores, which a 2-core machine with a broker on it does not have: the
 * result says which resource was saturated.
 */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

extern char **environ;

#define MAX_PROCS 16

typedef struct child {
    pid_t pid;
    int out; /* read end of its stdout */
    char dir[256];
    double cpu_first;
} child_t;

/* CPU seconds (user + system) of pid so far, or -1. */
static double pid_cpu(pid_t pid)
{
    bench_sys_t s;
    bench_sys_sample(&s, pid);
    return s.broker_cpu_s;
}

/* Starts `mephisto-bench tool count` for group on in; 0 or -1. */
static int spawn_child(const bench_opts_t *o, const char *group, const char *in,
                       int idx, child_t *c)
{
    char parts[16], workers[16], keys[32], seed[32], linger[16], datadir[300];
    if (!bench_tempdir("scale", c->dir, sizeof c->dir))
        return -1;
    snprintf(parts, sizeof parts, "%d", o->partitions);
    snprintf(workers, sizeof workers, "%d", o->workers);
    snprintf(keys, sizeof keys, "%ld", (long)o->keys);
    snprintf(seed, sizeof seed, "%ld", (long)o->seed);
    snprintf(linger, sizeof linger, "%d", o->linger_ms);
    snprintf(datadir, sizeof datadir, "datadir=%s", c->dir);
    const char *argv[96] = {"mephisto-bench", "tool", "count", "--broker",
                            o->broker, "--input", in, "--group", group,
                            "--partitions", parts, "--workers", workers,
                            "--keys", keys, "--seed", seed, "--linger-ms",
                            linger, "--set", datadir};
    int argc = 21;
    for (int i = 0; i < o->nsets && argc < 92; i++) {
        argv[argc++] = "--set";
        argv[argc++] = o->sets[i];
    }
    argv[argc] = NULL;
    int fds[2];
    if (pipe(fds))
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    int rc = posix_spawn(&c->pid, "/proc/self/exe", &fa, NULL,
                         (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc) {
        close(fds[0]);
        errno = rc;
        return -1;
    }
    c->out = fds[0];
    c->cpu_first = -1;
    (void)idx;
    return 0;
}

/* Reads what child c printed; true when it said "first". */
static bool said_first(child_t *c)
{
    struct pollfd p = {c->out, POLLIN, 0};
    if (poll(&p, 1, 0) <= 0)
        return false;
    char buf[256];
    ssize_t n = read(c->out, buf, sizeof buf - 1);
    if (n <= 0)
        return false;
    buf[n] = 0;
    return strstr(buf, "first") != NULL;
}

/* Stops every started child (TERM, then KILL after 30 s); true when all
 * exited 0. */
static bool stop_children(child_t *cs, int n)
{
    bool ok = true;
    for (int i = 0; i < n; i++)
        if (cs[i].pid > 0)
            kill(cs[i].pid, SIGTERM);
    for (int i = 0; i < n; i++) {
        if (cs[i].pid <= 0)
            continue;
        int st = 0;
        pid_t r = 0;
        for (int t = 0; t < 3000 && (r = waitpid(cs[i].pid, &st, WNOHANG)) == 0; t++)
            bench_sleep_ms(10);
        if (r == 0) {
            kill(cs[i].pid, SIGKILL);
            waitpid(cs[i].pid, &st, 0);
            ok = false;
        } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            ok = false;
        }
        close(cs[i].out);
        bench_rmtree(cs[i].dir);
    }
    return ok;
}

/* One round with nprocs processes: fills r (error set on failure). */
static void one_round(bench_kafka_t *k, const bench_opts_t *o, const char *in,
                      long n, int nprocs, bench_result_t *r)
{
    char err[500], id[64], group[128], changelog[200];
    child_t cs[MAX_PROCS];
    memset(cs, 0, sizeof cs);
    snprintf(group, sizeof group, "bench-scale-%s", bench_run_id(id, sizeof id));
    snprintf(changelog, sizeof changelog, "%s-counts-changelog", group);
    rd_kafka_t *reader = NULL;
    int started = 0;
    if (bench_topic_create(k, changelog, o->partitions, err, sizeof err)) {
        snprintf(r->error, sizeof r->error, "%s", err);
        return;
    }
    if (!(reader = bench_offsets_reader(k, group, err, sizeof err))) {
        snprintf(r->error, sizeof r->error, "offsets reader: %s", err);
        goto out;
    }
    for (; started < nprocs; started++)
        if (spawn_child(o, group, in, started, &cs[started])) {
            snprintf(r->error, sizeof r->error, "cannot start a worker process: %s",
                     strerror(errno));
            goto out;
        }
    int64_t t0 = bench_now_ns(), t_first = 0, t_end = 0;
    int64_t deadline = t0 + (int64_t)(o->timeout * 1e9);
    bench_sys_t sys_first = {0}, sys_end;
    int64_t last_progress = t0;
    for (;;) {
        int64_t now = bench_now_ns();
        if (now > deadline) {
            snprintf(r->error, sizeof r->error, "timed out after %.0f s", o->timeout);
            goto out;
        }
        for (int i = 0; i < nprocs; i++) {
            if (said_first(&cs[i]) && !t_first) {
                t_first = bench_now_ns();
                bench_sys_sample(&sys_first, bench_kafka_broker_pid(k));
                for (int j = 0; j < nprocs; j++)
                    cs[j].cpu_first = pid_cpu(cs[j].pid);
            }
            int st;
            if (waitpid(cs[i].pid, &st, WNOHANG) == cs[i].pid) {
                cs[i].pid = 0;
                snprintf(r->error, sizeof r->error, "worker process %d exited early", i);
                goto out;
            }
        }
        if (t_first) {
            int64_t done = bench_committed(reader, in, o->partitions);
            if (done >= n) {
                t_end = bench_now_ns();
                break;
            }
            if (now - last_progress >= 1000000000) {
                bench_progress(o, "scale: %d processes: %lld/%ld committed", nprocs,
                               (long long)done, n);
                last_progress = now;
            }
        }
        bench_sleep_ms(t_first ? 10 : 2);
    }
    double cpu = 0;
    for (int i = 0; i < nprocs; i++)
        cpu += pid_cpu(cs[i].pid) - cs[i].cpu_first;
    bench_sys_sample(&sys_end, bench_kafka_broker_pid(k));
    r->messages = (uint64_t)n;
    r->seconds = (double)(t_end - t_first) / 1e9;
    r->msgs_per_s = (double)n / r->seconds;
    r->mb_per_s = r->msgs_per_s * o->size / 1e6;
    r->cpu_s = cpu;
    bench_extra(r, ",\"processes\":%d,\"cpu_us_per_msg\":%.3f", nprocs,
                cpu * 1e6 / (double)n);
    bench_sys_delta_t d;
    memset(&d, 0, sizeof d);
    bench_sys_add(&d, &sys_first, &sys_end);
    bench_sys_describe(&d, "", r);
out:
    if (!stop_children(cs, started) && !r->error[0])
        snprintf(r->error, sizeof r->error, "a worker process did not stop cleanly");
    if (!r->error[0]) {
        char check[300];
        if (bench_check_counts(k, o, changelog, o->partitions, n, true, check,
                               sizeof check))
            snprintf(r->error, sizeof r->error, "tables not exact: %s", check);
        else
            bench_extra(r, ",\"check\":\"%s\"", check);
    }
    if (reader)
        rd_kafka_destroy(reader);
    bench_app_forget(k, group);
    bench_topic_delete(k, changelog);
}

static int run(const bench_opts_t *o)
{
    char err[500], id[64], in[128], common[400];
    bench_params_common(o, common, sizeof common);
    if (strncmp(o->broker, "mock:", 5) == 0) {
        bench_progress(o, "scale: skipped: worker processes need a real broker "
                          "(kafka://), not the harness's in-process mock cluster");
        return 0;
    }
    bench_kafka_t *k = bench_kafka_new(o->broker, err, sizeof err);
    bench_result_t r;
    if (!k) {
        bench_result_init(&r, "scale");
        snprintf(r.error, sizeof r.error, "%s", err);
        bench_report(o, &r);
        return 1;
    }
    snprintf(in, sizeof in, "bench-scale-%s-in", bench_run_id(id, sizeof id));
    long n = 0;
    bench_progress(o, "scale: loading %ld records into %d partitions", o->messages,
                   o->partitions);
    if (bench_topic_create(k, in, o->partitions, err, sizeof err) ||
        (n = bench_load(k, o, in, o->messages, err, sizeof err)) != o->messages) {
        bench_result_init(&r, "scale");
        snprintf(r.error, sizeof r.error, "%s", err[0] ? err : "load incomplete");
        bench_report(o, &r);
        bench_topic_delete(k, in);
        bench_kafka_destroy(k);
        return 1;
    }
    int failed = 0;
    double one = NAN;
    for (int i = 0; i < o->nprocess_list; i++) {
        int np = o->process_list[i] > MAX_PROCS ? MAX_PROCS : o->process_list[i];
        bench_result_init(&r, "scale");
        snprintf(r.label, sizeof r.label, "processes=%d w=%d", np, o->workers);
        snprintf(r.params, sizeof r.params, "{%s,\"messages\":%ld,\"processes\":%d}",
                 common, n, np);
        bench_progress(o, "scale: %d processes", np);
        one_round(k, o, in, n, np, &r);
        if (!r.error[0]) {
            if (np == 1)
                one = r.msgs_per_s;
            if (!isnan(one)) {
                r.baseline_msgs_per_s = one;
                r.ratio = r.msgs_per_s / one;
                if (np == 2) {
                    snprintf(r.target, sizeof r.target,
                             "records/s vs 1 process >= 1.6 (needs 2 free cores)");
                    r.target_met = r.ratio >= 1.6;
                }
            }
        } else {
            failed++;
        }
        bench_report(o, &r);
    }
    bench_topic_delete(k, in);
    bench_kafka_destroy(k);
    return failed ? 1 : 0;
}

const bench_scenario_t bench_scn_scale = {
    "scale",
    "N worker processes (--processes) of a table count in one group: records/s "
    "and CPU per record per N, tables exact",
    run};

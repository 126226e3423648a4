/*
 * Clocks, CPU time and peak memory of the bench process.
 *
 * Peak RSS is per run: before a run the harness writes "5" to
 * /proc/self/clear_refs, which resets VmHWM to the current RSS (Linux 4.0+),
 * so each run's peak_rss_kb is its own. Where that file is not writable the
 * value is the process's peak so far.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <dirent.h>
#include <ftw.h>
#include <unistd.h>

#include "bench.h"

/* Under valgrind --tool=callgrind, each passthrough, count or window run's
 * instructions (all threads, from its first record to its end) are dumped
 * as a part of their own: docs/benchmarks.md, Profiling. Without the
 * header (valgrind not installed) the requests compile to nothing; outside
 * valgrind they cost a few instructions. */
#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#endif
#endif
#ifndef CALLGRIND_DUMP_STATS_AT
#define CALLGRIND_DUMP_STATS_AT(label) ((void)(label))
#endif

int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void bench_rusage(struct rusage *ru)
{
    getrusage(RUSAGE_SELF, ru);
}

double bench_cpu_s(const struct rusage *ru)
{
    return (double)ru->ru_utime.tv_sec + ru->ru_utime.tv_usec / 1e6 +
           (double)ru->ru_stime.tv_sec + ru->ru_stime.tv_usec / 1e6;
}

void bench_rss_reset(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return;
    fputs("5", f);
    fclose(f);
}

long bench_rss_peak_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    if (f) {
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "VmHWM:", 6) == 0) {
                kb = strtol(line + 6, NULL, 10);
                break;
            }
        fclose(f);
    }
    if (kb < 0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        kb = ru.ru_maxrss;
    }
    return kb;
}

void bench_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

const char *bench_run_id(char *buf, size_t size)
{
    static unsigned n;
    snprintf(buf, size, "%ld-%ld-%u", (long)getpid(),
             (long)(bench_now_ns() / 1000000 % 100000), ++n);
    return buf;
}

const char *bench_tempdir(const char *tag, char *buf, size_t size)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(buf, size, "%s/mephisto-bench-%s-XXXXXX",
             tmp && *tmp ? tmp : "/tmp", tag);
    return mkdtemp(buf);
}

static int rm_entry(const char *path, const struct stat *st, int type,
                    struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

void bench_rmtree(const char *dir)
{
    if (dir && *dir)
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

double bench_median(double *v, int n)
{
    if (n <= 0)
        return 0;
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void bench_first_mark(bench_first_t *f)
{
    if (__atomic_load_n(&f->t_first, __ATOMIC_RELAXED))
        return;
    int64_t zero = 0, now = bench_now_ns();
    if (__atomic_compare_exchange_n(&f->t_first, &zero, now, false,
                                    __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
        /* What came before (setup, the previous run's teardown) goes to a
         * part of its own. A dump resets every thread's counters, a zero
         * request only the caller's. */
        CALLGRIND_DUMP_STATS_AT("before the first record");
        bench_sys_sample(&f->sys_first, f->broker_pid);
        __atomic_store_n(&f->sys_state, 2, __ATOMIC_RELEASE);
    }
}

void bench_callgrind_dump(const char *label)
{
    CALLGRIND_DUMP_STATS_AT(label);
}

void bench_run_finish(bench_run_t *res, const bench_first_t *f, int64_t t_end,
                      long n)
{
    bench_sys_sample(&res->sys_end, f->broker_pid);
    res->messages = (uint64_t)n;
    res->seconds =
        (double)(t_end - __atomic_load_n(&f->t_first, __ATOMIC_ACQUIRE)) / 1e9;
    if (__atomic_load_n(&f->sys_state, __ATOMIC_ACQUIRE) == 2) {
        res->sys_first = f->sys_first;
        res->cpu_s = res->sys_end.self_cpu_s - f->sys_first.self_cpu_s;
    }
    res->peak_rss_kb = bench_rss_peak_kb();
}

/* ---- what the machine did during a run ---- */

static void read_proc_stat(bench_sys_t *s)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return;
    unsigned long long v[10] = {0};
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
               &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8],
               &v[9]) >= 8) {
        /* user nice system idle iowait irq softirq steal (guest* are in user)
         */
        s->idle = v[3];
        s->iowait = v[4];
        s->busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    }
    fclose(f);
}

static uint64_t read_psi_some(const char *path)
{
    FILE *f = fopen(path, "r");
    uint64_t total = 0;
    char line[256];
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "some ", 5) == 0) {
            const char *t = strstr(line, "total=");
            if (t)
                total = strtoull(t + 6, NULL, 10);
        }
    fclose(f);
    return total;
}

static double proc_cpu_s(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    /* fields after ")": state(3) ... utime(14) stime(15) */
    unsigned long long ut = 0, st = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
               &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static uint64_t watch_cpu_ns; /* __atomic */

void bench_sys_add_watch_cpu(double seconds)
{
    __atomic_fetch_add(&watch_cpu_ns, (uint64_t)(seconds * 1e9),
                       __ATOMIC_RELAXED);
}

static double watch_cpu_s(void)
{
    return (double)__atomic_load_n(&watch_cpu_ns, __ATOMIC_RELAXED) / 1e9;
}

void bench_sys_sample(bench_sys_t *s, int broker_pid)
{
    memset(s, 0, sizeof *s);
    s->t_ns = bench_now_ns();
    read_proc_stat(s);
    s->io_some_us = read_psi_some("/proc/pressure/io");
    s->cpu_some_us = read_psi_some("/proc/pressure/cpu");
    struct rusage ru;
    bench_rusage(&ru);
    s->self_cpu_s = bench_cpu_s(&ru) - watch_cpu_s();
    s->broker_cpu_s = broker_pid > 0 ? proc_cpu_s(broker_pid) : -1;
}

void bench_sys_add(bench_sys_delta_t *d, const bench_sys_t *a,
                   const bench_sys_t *b)
{
    d->seconds += (double)(b->t_ns - a->t_ns) / 1e9;
    d->busy += (double)(b->busy - a->busy);
    d->idle += (double)(b->idle - a->idle);
    d->iowait += (double)(b->iowait - a->iowait);
    d->io_some_s += (double)(b->io_some_us - a->io_some_us) / 1e6;
    d->cpu_some_s += (double)(b->cpu_some_us - a->cpu_some_us) / 1e6;
    d->self_cpu_s += b->self_cpu_s - a->self_cpu_s;
    if (a->broker_cpu_s >= 0 && b->broker_cpu_s >= 0)
        d->broker_cpu_s += b->broker_cpu_s - a->broker_cpu_s;
    else
        d->broker_cpu_s = -1e9;
}

void bench_sys_describe(const bench_sys_delta_t *d, const char *prefix,
                        bench_result_t *r)
{
    if (d->seconds <= 0)
        return;
    double ticks = d->busy + d->idle + d->iowait;
    double ncpu = (double)sysconf(_SC_NPROCESSORS_ONLN);
    double busy = ticks > 0 ? d->busy / ticks : 0;
    double iowait = ticks > 0 ? d->iowait / ticks : 0;
    double self = d->self_cpu_s / d->seconds;
    double broker = d->broker_cpu_s >= 0 ? d->broker_cpu_s / d->seconds : -1;
    double other = busy * ncpu - self - (broker > 0 ? broker : 0);
    double io = d->io_some_s / d->seconds;
    const char *sat;
    if (busy >= 0.9)
        sat = self >= broker && self >= other ? "cpu: bench process"
              : broker >= other               ? "cpu: broker"
                                              : "cpu: other processes";
    else if (io >= 0.3)
        sat = "disk i/o (pressure)";
    else if (self >= 0.9)
        sat = "one core: bench process";
    else if (broker >= 0.9)
        sat = "one core: broker";
    else
        sat = "none (latency-bound)";
    bench_extra(
        r,
        ",\"%smachine\":{\"cores\":%.0f,\"cpu_busy\":%.3f,\"iowait\":%.3f,"
        "\"bench_cores\":%.3f,\"broker_cores\":%.3f,\"other_cores\":%.3f,"
        "\"io_pressure\":%.3f,\"cpu_pressure\":%.3f,\"saturated\":\"%s\"}",
        prefix, ncpu, busy, iowait, self, broker, other < 0 ? 0 : other, io,
        d->cpu_some_s / d->seconds, sat);
}

/* The pid of the process listening on 127.0.0.1:port (a local broker), or
 * -1: the socket's inode from /proc/net/tcp, then the process holding it. */
int bench_find_listener(int port)
{
    /* Java listens on IPv6 sockets even for 127.0.0.1: look in both. */
    static const char *const tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    unsigned long inode = 0;
    for (size_t t = 0; t < 2 && !inode; t++) {
        FILE *f = fopen(tables[t], "r");
        if (!f)
            continue;
        char line[512];
        while (fgets(line, sizeof line, f)) {
            unsigned lport, st;
            unsigned long ino;
            const char *colon = strchr(line, ':');
            /* "  0: LOCALADDR:PORT REMADDR:PORT ST ... INODE" */
            if (!colon || !(colon = strchr(colon + 1, ':')))
                continue;
            if (sscanf(
                    colon + 1,
                    "%x %*[0-9A-Fa-f]:%*x %x %*x:%*x %*x:%*x %*x %*u %*u %lu",
                    &lport, &st, &ino) == 3 &&
                (int)lport == port && st == 0x0A) {
                inode = ino;
                break;
            }
        }
        fclose(f);
    }
    if (!inode)
        return -1;
    char want[64];
    snprintf(want, sizeof want, "socket:[%lu]", inode);
    DIR *proc = opendir("/proc");
    if (!proc)
        return -1;
    int found = -1;
    struct dirent *de;
    while (found < 0 && (de = readdir(proc))) {
        int pid = atoi(de->d_name);
        if (pid <= 0)
            continue;
        char fdpath[64];
        snprintf(fdpath, sizeof fdpath, "/proc/%d/fd", pid);
        DIR *fds = opendir(fdpath);
        if (!fds)
            continue;
        struct dirent *fe;
        while ((fe = readdir(fds))) {
            char lpath[400], target[64];
            snprintf(lpath, sizeof lpath, "%s/%s", fdpath, fe->d_name);
            ssize_t n = readlink(lpath, target, sizeof target - 1);
            if (n > 0) {
                target[n] = 0;
                if (strcmp(target, want) == 0) {
                    found = pid;
                    break;
                }
            }
        }
        closedir(fds);
    }
    closedir(proc);
    return found;
}

/*
 * The latency profile: `profile=latency` sets the client settings it
 * documents (read back from the running app's librdkafka clients), explicit
 * settings win over it, and a worker with nothing to do sleeps under it
 * (its thread's CPU time, read from /proc, over 2 idle seconds).
 */
// ctest-timeout: 300
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mephisto.h"
#include "mph_test.h"
#include "runtime/app.h"
#include "runtime/worker.h"

static mph_err_t count_cb(mph_event_t *ev, void *opaque)
{
    (void)ev;
    __atomic_add_fetch((int *)opaque, 1, __ATOMIC_RELAXED);
    return MPH_OK;
}

typedef struct running {
    mph_test_cluster_t *c;
    mph_app_t *app;
    char in[80];
    int calls;
} running_t;

/* Starts an app of one worker with one counting agent on a fresh topic;
 * sets[] are name, value pairs ending with NULL. */
static void start(running_t *r, const char *const *sets)
{
    char err[512], id[64];
    r->c = mph_test_cluster_new();
    mph_test_unique("latency-in", r->in, sizeof r->in);
    mph_test_create_topic(r->c, r->in, 2);
    mph_conf_t *conf = mph_conf_new();
    const char *base[] = {"broker", r->c->broker,
                          "app_id", mph_test_unique("latency", id, sizeof id),
                          "workers", "1",
                          "web_enabled", "false",
                          "log_level", "warn",
                          NULL};
    for (const char *const *kv = base; kv[0]; kv += 2)
        cr_assert_eq(mph_conf_set(conf, kv[0], kv[1], err, sizeof err), MPH_OK, "%s", err);
    for (const char *const *kv = sets; kv && kv[0]; kv += 2)
        cr_assert_eq(mph_conf_set(conf, kv[0], kv[1], err, sizeof err), MPH_OK, "%s", err);
    r->app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(r->app, "%s", err);
    mph_topic_t *t = mph_topic_new(r->app, r->in, NULL, err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    cr_assert_not_null(mph_agent_new(r->app, "count", t, count_cb, &r->calls, err, sizeof err));
    cr_assert_eq(mph_app_start(r->app, err, sizeof err), MPH_OK, "%s", err);
}

static void finish(running_t *r)
{
    mph_app_stop(r->app);
    mph_app_destroy(r->app);
    mph_test_cluster_destroy(r->c);
}

/* rk's effective value of librdkafka property name. */
static const char *effective(rd_kafka_t *rk, const char *name, char *buf, size_t size)
{
    cr_assert_eq(rd_kafka_conf_get(rd_kafka_conf(rk), name, buf, &size), RD_KAFKA_CONF_OK,
                 "librdkafka has no property %s", name);
    return buf;
}

/* What the app's group consumer and worker 0's producer were built with. */
static void expect_clients(mph_app_t *app, const char *linger, const char *nagle_off,
                           const char *fetch_wait)
{
    char b[64];
    rd_kafka_t *producer = app->workers[0]->producer;
    cr_expect_str_eq(effective(producer, "linger.ms", b, sizeof b), linger);
    cr_expect_str_eq(effective(producer, "socket.nagle.disable", b, sizeof b), nagle_off);
    cr_expect_str_eq(effective(app->consumer, "socket.nagle.disable", b, sizeof b), nagle_off);
    cr_expect_str_eq(effective(app->consumer, "fetch.wait.max.ms", b, sizeof b), fetch_wait);
}

Test(latency, throughput_profile_is_the_default, .timeout = 120)
{
    running_t r = {0};
    start(&r, NULL);
    expect_clients(r.app, "5", "false", "100");
    finish(&r);
}

Test(latency, latency_profile_sets_what_it_documents, .timeout = 120)
{
    running_t r = {0};
    const char *sets[] = {"profile", "latency", NULL};
    start(&r, sets);
    expect_clients(r.app, "0", "true", "10");
    finish(&r);
}

Test(latency, explicit_settings_win_over_the_profile, .timeout = 120)
{
    running_t r = {0};
    const char *sets[] = {"profile", "latency",
                          "producer_linger_ms", "3",
                          "kafka.socket.nagle.disable", "false",
                          "kafka.fetch.wait.max.ms", "50",
                          NULL};
    start(&r, sets);
    expect_clients(r.app, "3", "false", "50");
    finish(&r);
}

Test(latency, profile_names_are_checked, .timeout = 30)
{
    char err[512];
    mph_conf_t *conf = mph_conf_new();
    cr_assert_neq(mph_conf_set(conf, "profile", "fast", err, sizeof err), MPH_OK);
    cr_expect(strstr(err, "profile") != NULL, "error names the setting: %s", err);
    cr_expect_neq(mph_conf_set(conf, "busy_poll_us", "-1", err, sizeof err), MPH_OK);
    cr_expect(strstr(err, "busy_poll_us") != NULL, "error names the setting: %s", err);
    cr_expect_neq(mph_conf_set(conf, "io_wait", "epoll", err, sizeof err), MPH_OK);
    cr_expect(strstr(err, "io_wait") != NULL, "error names the setting: %s", err);
    mph_conf_destroy(conf);
}

/* CPU time (user + system, clock ticks) of this process's thread named
 * comm (e.g. "mph-w0"); -1 when there is none. */
static long thread_ticks(const char *comm)
{
    DIR *d = opendir("/proc/self/task");
    cr_assert_not_null(d);
    long ticks = -1;
    struct dirent *e;
    while (ticks < 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], line[1024];
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        bool got = fgets(line, sizeof line, f) != NULL;
        fclose(f);
        /* "tid (comm) state ppid ... utime(14) stime(15)": comm may hold
         * spaces, so fields count from the last ')'. */
        char *open = strchr(line, '('), *close = strrchr(line, ')');
        if (!got || !open || !close ||
            (size_t)(close - open - 1) != strlen(comm) ||
            strncmp(open + 1, comm, strlen(comm)) != 0)
            continue;
        unsigned long utime = 0, stime = 0;
        /* after ") ": state(3) ppid pgrp session tty tpgid flags minflt
         * cminflt majflt cmajflt utime(14) stime(15) */
        if (sscanf(close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
                   &stime) == 2)
            ticks = (long)(utime + stime);
    }
    closedir(d);
    return ticks;
}

/* Records go through, then nothing: over 2 idle seconds the worker thread
 * must be asleep, not polling. Loose bound (5 % of a core) so a loaded
 * machine cannot fail it; a spinning worker uses ~100 %. */
static void expect_idle_worker_sleeps(const char *const *sets, bool polls)
{
    running_t r = {0};
    start(&r, sets);
    cr_assert_eq(mph__uring_polls(r.app->workers[0]->ring), polls, "io_wait mode");
    for (int i = 0; i < 20; i++)
        mph_test_produce(r.c, r.in, i % 2, "k", 1, "v", 1);
    mph_test_flush(r.c);
    for (int i = 0; i < 3000 && __atomic_load_n(&r.calls, __ATOMIC_RELAXED) < 20; i++)
        usleep(10000);
    cr_assert_eq(__atomic_load_n(&r.calls, __ATOMIC_RELAXED), 20);
    usleep(300000); /* the last acknowledgements and commit */
    long hz = sysconf(_SC_CLK_TCK);
    long t0 = thread_ticks("mph-w0");
    usleep(2000000);
    long t1 = thread_ticks("mph-w0");
    finish(&r);
    cr_assert_geq(t0, 0, "no thread mph-w0");
    double share = (double)(t1 - t0) / (double)hz / 2.0;
    cr_expect_lt(share, 0.05, "idle worker used %.1f %% of a core", share * 100);
}

Test(latency, idle_worker_sleeps_under_the_latency_profile, .timeout = 120)
{
    const char *sets[] = {"profile", "latency", NULL};
    expect_idle_worker_sleeps(sets, false);
}

/* busy_poll_us spins only after records: once its window has passed the
 * worker sleeps again. */
Test(latency, idle_worker_sleeps_after_its_busy_poll_window, .timeout = 120)
{
    const char *sets[] = {"profile", "latency", "busy_poll_us", "50000", NULL};
    expect_idle_worker_sleeps(sets, false);
}

/* io_wait=poll: the worker waits in ppoll; records still wake it and an
 * idle worker still sleeps. (engine::forward_under_io_wait_poll checks
 * the output and commits of a larger run.) */
Test(latency, idle_worker_sleeps_in_ppoll, .timeout = 120)
{
    const char *sets[] = {"profile", "latency", "io_wait", "poll", NULL};
    expect_idle_worker_sleeps(sets, true);
}

/* A sandbox that refuses io_uring (a container's seccomp profile): under
 * the default io_wait=auto the worker waits in ppoll, records flow and an
 * idle worker sleeps. */
Test(latency, refused_io_uring_falls_back_to_ppoll, .timeout = 120)
{
    mph_test_refuse_io_uring();
    expect_idle_worker_sleeps(NULL, true);
}

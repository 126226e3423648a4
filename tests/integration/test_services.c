/*
 * App services end to end (src/runtime/services.c, issue #18).
 *
 * lifecycle (mock cluster or real broker): start hooks run before timers
 * and tasks, on the services threads (never the caller's, never a
 * worker's); a task polls its stop flag and has returned before the stop
 * hooks run, in reverse order; a timer's sends (mph_send) reach their
 * topic; /stats shows every entry with runs, overruns, errors, last and
 * next run.
 *
 * leader (real broker only): two worker processes of one app, each with an
 * MPH_ON_LEADER timer that reports every run over a pipe and sends a
 * numbered record. Exactly one of them runs it; after the leader is
 * killed with SIGKILL the other runs it within session_timeout_ms + 1 s.
 * The survivor is then stopped gracefully (SIGTERM) and a third process
 * of the app restarts it; every record either process reported sent
 * (mph_send accepted it) is in the topic afterwards (at_least_once: no
 * loss across a graceful stop and restart).
 *
 * cli: `mephisto timers` lists examples/heartbeat's timer, crontab entry
 * and task without starting the app, and refuses a bad cron expression
 * with the field and the reason.
 */
// ctest-timeout: 180
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mephisto.h"
#include "mph_cli.h"
#include "mph_test.h"

TestSuite(services, .timeout = 150);

static int64_t now_ms(void)
{
    return mph_clock_mono_ns() / 1000000;
}

static mph_conf_t *base_conf(const char *app_id)
{
    char err[512];
    mph_conf_t *conf = mph_conf_new();
    const char *set[][2] = {
        {"app_id", app_id},        {"broker", mph_test_broker()},
        {"workers", "1"},          {"web_enabled", "false"},
        {"log_level", "warn"},     {"shutdown_timeout_ms", "5000"},
        {"topic_partitions", "1"},
    };
    for (size_t i = 0; i < sizeof set / sizeof set[0]; i++)
        cr_assert_eq(mph_conf_set(conf, set[i][0], set[i][1], err, sizeof err),
                     MPH_OK, "%s", err);
    return conf;
}

/* An app of base_conf on cluster (its mock broker unless the run uses a
 * real one). */
static mph_app_t *cluster_app(const char *app_id, const mph_test_cluster_t *cluster)
{
    char err[512];
    mph_conf_t *conf = base_conf(app_id);
    if (!mph_test_real_broker())
        mph_conf_set(conf, "broker", cluster->broker, NULL, 0);
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(app, "%s", err);
    return app;
}

static mph_topic_t *own_topic(mph_app_t *app, const char *name)
{
    char err[512];
    mph_topic_opts_t *o = mph_topic_opts_new();
    mph_topic_opts_set(o, "create", "true", NULL, 0);
    mph_topic_opts_set(o, "partitions", "1", NULL, 0);
    mph_topic_t *t = mph_topic_new(app, name, o, err, sizeof err);
    mph_topic_opts_destroy(o);
    cr_assert_not_null(t, "%s", err);
    return t;
}

/* ------------------------------------------------------------------ */
/* lifecycle                                                           */

typedef struct life {
    pthread_t main;
    mph_topic_t *out;
    pthread_mutex_t lock;
    char order[64][32];
    int norder;
    int timer_runs, timer_sent, task_loops;
    bool timer_on_main, task_on_main;
    pthread_t timer_thread, task_thread;
} life_t;

static void note(life_t *l, const char *what)
{
    pthread_mutex_lock(&l->lock);
    if (l->norder < 64)
        snprintf(l->order[l->norder++], sizeof l->order[0], "%s", what);
    pthread_mutex_unlock(&l->lock);
}

static int first(life_t *l, const char *what)
{
    for (int i = 0; i < l->norder; i++)
        if (!strcmp(l->order[i], what))
            return i;
    return -1;
}

static mph_err_t start1(mph_app_t *app, void *o)
{
    (void)app;
    note(o, "start1");
    return MPH_OK;
}

static mph_err_t start2(mph_app_t *app, void *o)
{
    (void)app;
    note(o, "start2");
    return MPH_OK;
}

static mph_err_t stop1(mph_app_t *app, void *o)
{
    (void)app;
    note(o, "stop1");
    return MPH_OK;
}

static mph_err_t stop2(mph_app_t *app, void *o)
{
    life_t *l = o;
    note(l, "stop2");
    /* Stop hooks may still send; the stop flushes it. */
    return mph_send(app, l->out, 0, "k", 1, "from-stop-hook", 14, NULL, 0, NULL,
                    NULL);
}

static mph_err_t tick(mph_app_t *app, void *o)
{
    life_t *l = o;
    if (l->timer_runs++ == 0)
        note(l, "timer");
    l->timer_thread = pthread_self();
    l->timer_on_main = pthread_equal(pthread_self(), l->main);
    char v[32];
    int n = snprintf(v, sizeof v, "tick-%d", l->timer_runs);
    if (mph_send(app, l->out, 0, "k", 1, v, (size_t)n, NULL, 0, NULL, NULL) ==
        MPH_OK)
        l->timer_sent++;
    return l->timer_runs == 3 ? MPH_ERR_AGENT : MPH_OK; /* one error, counted */
}

static mph_err_t task(mph_app_t *app, mph_task_t *t, void *o)
{
    (void)app;
    life_t *l = o;
    note(l, "task");
    l->task_thread = pthread_self();
    l->task_on_main = pthread_equal(pthread_self(), l->main);
    while (!mph_task_sleep(t, 10))
        l->task_loops++;
    cr_expect(mph_task_stopping(t));
    note(l, "task-end");
    return MPH_OK;
}

struct seen {
    int ticks, hook;
};

static void count_out(const rd_kafka_message_t *m, void *opaque)
{
    struct seen *s = opaque;
    if (m->len >= 5 && !memcmp(m->payload, "tick-", 5))
        s->ticks++;
    if (m->len == 14 && !memcmp(m->payload, "from-stop-hook", 14))
        s->hook++;
}

Test(services, lifecycle_hooks_tasks_timers_and_stats)
{
    char app_id[128], out[160], err[512];
    mph_test_unique("svc-life", app_id, sizeof app_id);
    snprintf(out, sizeof out, "%s-out", app_id);
    mph_test_cluster_t *cluster = mph_test_cluster_new();
    mph_test_create_topic(cluster, out, 1);
    mph_app_t *app = cluster_app(app_id, cluster);
    life_t l = {.main = pthread_self()};
    pthread_mutex_init(&l.lock, NULL);
    l.out = own_topic(app, out);
    cr_assert_eq(mph_app_on_start(app, start1, &l), MPH_OK);
    cr_assert_eq(mph_app_on_start(app, start2, &l), MPH_OK);
    cr_assert_eq(mph_app_on_stop(app, stop1, &l), MPH_OK);
    cr_assert_eq(mph_app_on_stop(app, stop2, &l), MPH_OK);
    cr_assert_eq(mph_app_timer(app, "tick", 20, tick, &l, 0), MPH_OK);
    cr_assert_eq(mph_app_task(app, "loop", task, &l), MPH_OK);
    cr_assert_eq(mph_app_crontab(app, "nightly", "0 3 * * *", "Europe/Berlin",
                                 tick, &l, 0),
                 MPH_OK);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    cr_expect_eq(mph_app_timer(app, "late", 20, tick, &l, 0), MPH_ERR_STATE);
    cr_expect(!mph_app_is_leader(app), "no leader election declared");
    int64_t deadline = now_ms() + 20000;
    while (now_ms() < deadline && (l.timer_runs < 10 || l.task_loops < 5))
        usleep(20000);
    cr_expect_geq(l.timer_runs, 10);

    char *json = NULL;
    size_t len = 0;
    cr_assert_eq(mph_app_stats_json(app, &json, &len), MPH_OK);
    mph_json_parser_t *p = mph_json_parser_new(0, NULL, 0);
    cr_assert_eq(mph_json_parse(p, json, len, len), MPH_OK, "%s", json);
    mph_json_val_t arr, v;
    bool leader = true;
    cr_expect_eq(
        mph_json_get_bool(p, MPH_JSON_ROOT, "services.leader", &leader),
        MPH_OK);
    cr_expect(!leader);
    cr_assert_eq(mph_json_get_array(p, MPH_JSON_ROOT, "services.timers", &arr),
                 MPH_OK, "%s", json);
    int entries = 0;
    while (mph_json_array_next(p, arr, &v) == MPH_OK) {
        const char *name, *kind;
        size_t nl, kl;
        int64_t runs = -1, overruns = -1, errors = -1, last = -1, next = -1;
        cr_assert_eq(mph_json_get_str(p, v, "name", &name, &nl), MPH_OK);
        cr_assert_eq(mph_json_get_str(p, v, "kind", &kind, &kl), MPH_OK);
        mph_json_get_i64(p, v, "runs", &runs);
        mph_json_get_i64(p, v, "overruns", &overruns);
        mph_json_get_i64(p, v, "errors", &errors);
        mph_json_get_i64(p, v, "last_run_ms", &last);
        mph_json_get_i64(p, v, "next_run_ms", &next);
        entries++;
        if (nl == 4 && !memcmp(name, "tick", 4)) {
            cr_expect(kl == 5 && !memcmp(kind, "timer", 5));
            cr_expect_geq(runs, 10);
            cr_expect_eq(errors, 1);
            cr_expect_geq(overruns, 0);
            cr_expect_gt(last, 1600000000000LL);
            cr_expect_geq(next, last);
        } else if (nl == 7 && !memcmp(name, "nightly", 7)) {
            cr_expect(kl == 7 && !memcmp(kind, "crontab", 7));
            cr_expect_eq(runs, 0);
            cr_expect_eq(last, -1, "never ran: null");
            /* 03:00 in Berlin is 01:00 or 02:00 UTC. */
            int64_t sod = next % 86400000;
            cr_expect(sod == 3600000 || sod == 7200000, "next run %lld",
                      (long long)next);
        } else {
            cr_expect(nl == 4 && !memcmp(name, "loop", 4) && kl == 4);
        }
    }
    cr_expect_eq(entries, 3, "%s", json);
    mph_json_parser_destroy(p);
    free(json);

    cr_assert_eq(mph_app_stop(app), MPH_OK);
    int sent = l.timer_sent;
    mph_app_destroy(app);

    /* Start hooks in order, before the timer and the task; the task ended
     * before the stop hooks, which ran in reverse order. */
    int s1 = first(&l, "start1"), s2 = first(&l, "start2"),
        tm = first(&l, "timer"), tk = first(&l, "task"),
        te = first(&l, "task-end"), p1 = first(&l, "stop1"),
        p2 = first(&l, "stop2");
    cr_expect(s1 == 0 && s2 == 1, "start hooks first, in order (%d %d)", s1,
              s2);
    cr_expect(tm > s2 && tk > s2);
    cr_expect(te > tk && p2 > te && p1 > p2, "task-end %d, stop2 %d, stop1 %d",
              te, p2, p1);
    cr_expect(!l.timer_on_main && !l.task_on_main);
    cr_expect(!pthread_equal(l.timer_thread, l.task_thread), "a thread each");

    struct seen s = {0};
    mph_test_consume_all(cluster, out, sent + 1, 2000, 30000, count_out, &s);
    cr_expect_eq(s.ticks, sent, "every timer send reached %s", out);
    cr_expect_eq(s.hook, 1, "the stop hook's send was flushed");
    mph_test_cluster_destroy(cluster);
}

static mph_err_t failing_start(mph_app_t *app, void *o)
{
    (void)app;
    (void)o;
    return MPH_ERR_IO;
}

Test(services, failing_start_hook_stops_the_app)
{
    char app_id[128], err[512];
    mph_test_unique("svc-fail", app_id, sizeof app_id);
    mph_test_cluster_t *cluster = mph_test_cluster_new();
    mph_app_t *app = cluster_app(app_id, cluster);
    life_t l = {.main = pthread_self()};
    pthread_mutex_init(&l.lock, NULL);
    char out[160];
    snprintf(out, sizeof out, "%s-out", app_id);
    mph_test_create_topic(cluster, out, 1);
    l.out = own_topic(app, out);
    cr_assert_eq(mph_app_on_start(app, failing_start, NULL), MPH_OK);
    cr_assert_eq(mph_app_timer(app, "never", 10, tick, &l, 0), MPH_OK);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    int64_t t0 = now_ms();
    cr_expect_eq(mph_app_wait(app), MPH_ERR_IO,
                 "the hook's error stops the app");
    cr_expect_lt(now_ms() - t0, 20000);
    cr_expect_eq(l.timer_runs, 0, "no timer after a failed start hook");
    mph_app_destroy(app);
    mph_test_cluster_destroy(cluster);
}

/* ------------------------------------------------------------------ */
/* a task sleeping "until the stop"                                    */

static int forever_calls, forever_early;

static mph_err_t forever_task(mph_app_t *app, mph_task_t *t, void *o)
{
    (void)app;
    (void)o;
    /* Before: INT64_MAX ms overflowed to a time in the past, so the sleep
     * returned false at once (a busy loop for "while (!sleep(MAX))"). */
    while (__atomic_add_fetch(&forever_calls, 1, __ATOMIC_SEQ_CST) < 1000 &&
           !mph_task_sleep(t, INT64_MAX))
        __atomic_add_fetch(&forever_early, 1, __ATOMIC_SEQ_CST);
    return MPH_OK;
}

Test(services, task_sleep_of_int64_max_lasts_until_the_stop)
{
    char app_id[128], err[512], out[160];
    mph_test_unique("svc-forever", app_id, sizeof app_id);
    mph_test_cluster_t *cluster = mph_test_cluster_new();
    mph_app_t *app = cluster_app(app_id, cluster);
    snprintf(out, sizeof out, "%s-out", app_id);
    mph_test_create_topic(cluster, out, 1);
    own_topic(app, out);
    cr_assert_eq(mph_app_task(app, "forever", forever_task, NULL), MPH_OK);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    usleep(300000);
    cr_expect_eq(__atomic_load_n(&forever_early, __ATOMIC_SEQ_CST), 0,
                 "the sleep returned before the stop");
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    cr_expect_eq(__atomic_load_n(&forever_calls, __ATOMIC_SEQ_CST), 1,
                 "one sleep, ended by the stop");
    mph_app_destroy(app);
    mph_test_cluster_destroy(cluster);
}

/* ------------------------------------------------------------------ */
/* a slow timer delays only itself                                     */

static int fast_runs, slow_runs;

static mph_err_t fast_fn(mph_app_t *app, void *o)
{
    (void)app;
    (void)o;
    __atomic_add_fetch(&fast_runs, 1, __ATOMIC_SEQ_CST);
    return MPH_OK;
}

static mph_err_t slow_fn(mph_app_t *app, void *o)
{
    (void)app;
    (void)o;
    __atomic_add_fetch(&slow_runs, 1, __ATOMIC_SEQ_CST);
    usleep(400000);
    return MPH_OK;
}

Test(services, slow_timer_delays_only_itself)
{
    char app_id[128], err[512];
    mph_test_unique("svc-slow", app_id, sizeof app_id);
    mph_test_cluster_t *cluster = mph_test_cluster_new();
    mph_app_t *app = cluster_app(app_id, cluster);
    cr_assert_eq(mph_app_timer(app, "slow", 50, slow_fn, NULL, 0), MPH_OK);
    cr_assert_eq(mph_app_timer(app, "fast", 20, fast_fn, NULL, 0), MPH_OK);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    /* Wait for 3 slow runs (about 1.2 s), then count. */
    int64_t deadline = now_ms() + 30000;
    while (now_ms() < deadline &&
           __atomic_load_n(&slow_runs, __ATOMIC_SEQ_CST) < 4)
        usleep(20000);
    int fast = __atomic_load_n(&fast_runs, __ATOMIC_SEQ_CST);
    char *json = NULL;
    size_t len = 0;
    cr_assert_eq(mph_app_stats_json(app, &json, &len), MPH_OK);
    mph_json_parser_t *p = mph_json_parser_new(0, NULL, 0);
    cr_assert_eq(mph_json_parse(p, json, len, len), MPH_OK);
    int64_t overruns = -1, runs = -1;
    cr_assert_eq(mph_json_get_i64(p, MPH_JSON_ROOT,
                                  "services.timers.0.overruns", &overruns),
                 MPH_OK, "%s", json);
    cr_assert_eq(
        mph_json_get_i64(p, MPH_JSON_ROOT, "services.timers.0.runs", &runs),
        MPH_OK);
    mph_json_parser_destroy(p);
    free(json);
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    mph_app_destroy(app);
    mph_test_cluster_destroy(cluster);
    /* Three slow runs of 400 ms took at least 1.2 s: a fast timer that
     * waited for them would have run about 4 times, not 40. */
    cr_expect_geq(fast, 25, "the fast timer ran %d times beside 3 slow runs",
                  fast);
    /* Each 400 ms run passes 7 or 8 ticks of 50 ms: counted, not queued. */
    cr_expect_geq(runs, 3);
    cr_expect_geq(overruns, 7 * (runs - 1), "%lld overruns in %lld runs",
                  (long long)overruns, (long long)runs);
    cr_expect_lt(runs, 8, "ticks were queued: %lld runs", (long long)runs);
}

/* ------------------------------------------------------------------ */
/* leader election in one process                                     */

typedef struct solo {
    int runs, told_true, told_false;
    bool leader_in_run;
} solo_t;

static mph_err_t solo_beat(mph_app_t *app, void *o)
{
    solo_t *s = o;
    s->leader_in_run = mph_app_is_leader(app);
    __atomic_add_fetch(&s->runs, 1, __ATOMIC_SEQ_CST);
    return MPH_OK;
}

static void solo_changed(mph_app_t *app, bool leader, void *o)
{
    (void)app;
    solo_t *s = o;
    if (leader)
        s->told_true++;
    else
        s->told_false++;
}

Test(services, single_member_is_the_leader)
{
    char app_id[128], err[512];
    mph_test_unique("svc-solo", app_id, sizeof app_id);
    mph_test_cluster_t *cluster = mph_test_cluster_new();
    char leader_topic[160];
    snprintf(leader_topic, sizeof leader_topic, "%s-__leader", app_id);
    /* The shared mock cluster makes a topic a metadata request names with
     * its default partition count before the app could create it; a real
     * broker gets the app's own creation. */
    if (!mph_test_real_broker())
        mph_test_create_topic(cluster, leader_topic, 1);
    mph_app_t *app = cluster_app(app_id, cluster);
    solo_t s = {0};
    cr_assert_eq(mph_app_timer(app, "solo", 20, solo_beat, &s, MPH_ON_LEADER),
                 MPH_OK);
    cr_assert_eq(mph_app_on_leader_change(app, solo_changed, &s), MPH_OK);
    cr_assert_eq(mph_app_start(app, err, sizeof err), MPH_OK, "%s", err);
    int64_t deadline = now_ms() + 30000;
    while (now_ms() < deadline &&
           __atomic_load_n(&s.runs, __ATOMIC_SEQ_CST) < 5)
        usleep(20000);
    cr_expect_geq(s.runs, 5,
                  "the only member leads and runs its on_leader timer");
    cr_expect(mph_app_is_leader(app));
    cr_expect(s.leader_in_run);
    cr_assert_eq(mph_app_stop(app), MPH_OK);
    cr_expect_eq(s.told_true, 1);
    cr_expect_eq(s.told_false, 1, "told it no longer leads at stop");
    cr_expect(!mph_app_is_leader(app));
    mph_app_destroy(app);
    mph_test_cluster_destroy(cluster);
}

/* ------------------------------------------------------------------ */
/* leader election across processes                                   */

#define SESSION_MS 3000

typedef struct member {
    int id, fd;
    mph_topic_t *out;
    int sent;
} member_t;

static mph_app_t *member_app;

static void on_term(int sig)
{
    (void)sig;
    mph_app_request_stop(member_app);
}

static void say(int fd, const char *fmt, ...) MPH_PRINTF(2, 3);
static void say(int fd, const char *fmt, ...)
{
    char line[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (write(fd, line, (size_t)n) != n)
        _exit(9);
}

static mph_err_t beat(mph_app_t *app, void *o)
{
    member_t *m = o;
    char v[32];
    int n = snprintf(v, sizeof v, "%d:%d", m->id, m->sent);
    if (mph_send(app, m->out, 0, "k", 1, v, (size_t)n, NULL, 0, NULL, NULL) ==
        MPH_OK)
        m->sent++;
    say(m->fd, "T %d %lld\n", m->id, (long long)now_ms());
    return MPH_OK;
}

static void leader_changed(mph_app_t *app, bool leader, void *o)
{
    (void)app;
    member_t *m = o;
    say(m->fd, "L %d %d %lld\n", m->id, leader, (long long)now_ms());
}

/* A worker process: runs until SIGTERM (graceful) or SIGKILL. */
static void member_main(int id, int fd, int go, const char *app_id,
                        const char *out)
{
    /* A failed test must not leave members behind. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    char c, err[512];
    if (go >= 0 && read(go, &c, 1) != 1)
        _exit(2);
    mph_conf_t *conf = base_conf(app_id);
    mph_conf_set(conf, "session_timeout_ms", "3000", NULL, 0);
    mph_conf_set(conf, "kafka.heartbeat.interval.ms", "250", NULL, 0);
    member_app = mph_app_new(conf, err, sizeof err);
    if (!member_app) {
        fprintf(stderr, "member %d: %s\n", id, err);
        _exit(3);
    }
    member_t m = {id, fd, NULL, 0};
    m.out = own_topic(member_app, out);
    if (mph_app_timer(member_app, "beat", 100, beat, &m, MPH_ON_LEADER) !=
            MPH_OK ||
        mph_app_on_leader_change(member_app, leader_changed, &m) != MPH_OK)
        _exit(4);
    signal(SIGTERM, on_term);
    if (mph_app_start(member_app, err, sizeof err) != MPH_OK) {
        fprintf(stderr, "member %d: %s\n", id, err);
        _exit(5);
    }
    say(fd, "S %d %lld\n", id, (long long)now_ms());
    mph_err_t e = mph_app_wait(member_app);
    say(fd, "E %d %d\n", id, m.sent);
    mph_app_destroy(member_app);
    _exit(e == MPH_OK ? 0 : 6);
}

typedef struct log {
    int fd;
    char buf[1 << 16];
    size_t have;
    int64_t last_beat[3], first_beat_after[3];
    int beats[3], sent[3];
    bool started[3], ended[3];
    int64_t since; /* first_beat_after counts beats after this time */
} log_t;

/* Reads what the members wrote for up to ms milliseconds. */
static void pump(log_t *lg, int ms)
{
    int64_t end = now_ms() + ms;
    for (;;) {
        int64_t left = end - now_ms();
        if (left < 0)
            left = 0;
        struct pollfd p = {lg->fd, POLLIN, 0};
        if (poll(&p, 1, (int)left) > 0) {
            ssize_t n =
                read(lg->fd, lg->buf + lg->have, sizeof lg->buf - 1 - lg->have);
            if (n > 0)
                lg->have += (size_t)n;
        }
        char *nl;
        while ((nl = memchr(lg->buf, '\n', lg->have))) {
            *nl = 0;
            char kind;
            int id, a = 0;
            long long t = 0;
            if (sscanf(lg->buf, "%c %d", &kind, &id) == 2 && id >= 0 &&
                id < 3) {
                if (kind == 'T' && sscanf(lg->buf, "T %d %lld", &id, &t) == 2) {
                    lg->beats[id]++;
                    lg->last_beat[id] = t;
                    if (lg->since && t >= lg->since &&
                        !lg->first_beat_after[id])
                        lg->first_beat_after[id] = t;
                } else if (kind == 'S') {
                    lg->started[id] = true;
                } else if (kind == 'E' &&
                           sscanf(lg->buf, "E %d %d", &id, &a) == 2) {
                    lg->ended[id] = true;
                    lg->sent[id] = a;
                }
            }
            size_t used = (size_t)(nl - lg->buf) + 1;
            memmove(lg->buf, nl + 1, lg->have - used);
            lg->have -= used;
        }
        if (left == 0)
            return;
    }
}

struct seqs {
    char have[3][4096];
};

static void collect(const rd_kafka_message_t *m, void *opaque)
{
    struct seqs *s = opaque;
    int id, seq;
    char v[32];
    size_t n = m->len < sizeof v - 1 ? m->len : sizeof v - 1;
    memcpy(v, m->payload, n);
    v[n] = 0;
    if (sscanf(v, "%d:%d", &id, &seq) == 2 && id >= 0 && id < 3 && seq >= 0 &&
        seq < 4096)
        s->have[id][seq] = 1;
}

Test(services, on_leader_timer_fails_over_after_kill9_and_sends_survive_restart)
{
    if (!mph_test_real_broker()) {
        fprintf(stderr,
                "services/leader: skipped: needs a real broker "
                "(MEPHISTO_TEST_BROKERS) for a group across processes\n");
        return;
    }
    char app_id[128], out[160];
    mph_test_unique("svc-leader", app_id, sizeof app_id);
    snprintf(out, sizeof out, "%s-beats", app_id);
    int pfd[2], go[2];
    cr_assert_eq(pipe(pfd), 0);
    cr_assert_eq(pipe(go), 0);
    pid_t pid[3];
    /* Fork every member before this process starts a librdkafka thread;
     * member 2 (the restart) waits for its go. */
    for (int i = 0; i < 3; i++) {
        pid[i] = fork();
        cr_assert_geq(pid[i], 0);
        if (pid[i] == 0) {
            close(pfd[0]);
            close(go[1]);
            member_main(i, pfd[1], i == 2 ? go[0] : -1, app_id, out);
        }
    }
    close(pfd[1]);
    close(go[0]);
    log_t *lg = calloc(1, sizeof *lg);
    lg->fd = pfd[0];

    /* Both members up, and the group settled: only one beats. */
    int64_t deadline = now_ms() + 60000;
    while (now_ms() < deadline && !(lg->started[0] && lg->started[1]))
        pump(lg, 200);
    cr_assert(lg->started[0] && lg->started[1], "members did not start");
    int leader = -1;
    while (now_ms() < deadline) {
        pump(lg, 2000);
        int b0 = lg->beats[0], b1 = lg->beats[1];
        pump(lg, 2000);
        int d0 = lg->beats[0] - b0, d1 = lg->beats[1] - b1;
        if ((d0 > 0) != (d1 > 0)) {
            leader = d0 > 0 ? 0 : 1;
            /* And it stays that way. */
            b0 = lg->beats[0];
            b1 = lg->beats[1];
            pump(lg, 1500);
            cr_assert_eq(leader == 0 ? lg->beats[1] - b1 : lg->beats[0] - b0, 0,
                         "both members ran the on_leader timer");
            cr_assert_gt(leader == 0 ? lg->beats[0] - b0 : lg->beats[1] - b1,
                         5);
            break;
        }
        cr_assert(d0 == 0 || d1 == 0 || now_ms() < deadline - 50000,
                  "both members keep running the on_leader timer (%d, %d)", d0,
                  d1);
    }
    cr_assert_geq(leader, 0, "no single leader emerged");
    int other = 1 - leader;

    /* kill -9 the leader: the other takes over within the session timeout
     * and a second. */
    int64_t killed = now_ms();
    lg->since = killed;
    kill(pid[leader], SIGKILL);
    waitpid(pid[leader], NULL, 0);
    while (now_ms() < killed + SESSION_MS + 10000 &&
           !lg->first_beat_after[other])
        pump(lg, 100);
    cr_assert(lg->first_beat_after[other], "member %d never took over", other);
    int64_t took = lg->first_beat_after[other] - killed;
    fprintf(stderr,
            "services/leader: member %d took over %lld ms after the kill\n",
            other, (long long)took);
    cr_expect_leq(took, SESSION_MS + 1000, "took over after %lld ms",
                  (long long)took);

    /* Graceful stop of the survivor, then the restart takes over. */
    pump(lg, 500);
    kill(pid[other], SIGTERM);
    int status = 0;
    waitpid(pid[other], &status, 0);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "survivor status %d", status);
    pump(lg, 200);
    cr_assert(lg->ended[other]);
    cr_assert_eq(write(go[1], "g", 1), 1);
    deadline = now_ms() + 60000;
    while (now_ms() < deadline && lg->beats[2] < 10)
        pump(lg, 200);
    cr_assert_geq(lg->beats[2], 10, "the restarted member never ran the timer");
    kill(pid[2], SIGTERM);
    waitpid(pid[2], &status, 0);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "restart status %d", status);
    pump(lg, 200);
    cr_assert(lg->ended[2]);

    /* Every record the survivor and the restart sent is in the topic. */
    mph_test_cluster_t *cluster = mph_test_cluster_new();
    struct seqs *s = calloc(1, sizeof *s);
    mph_test_consume_all(cluster, out, -1, 3000, 60000, collect, s);
    for (int id = 0; id < 3; id++) {
        if (id == leader)
            continue; /* killed: what it had in flight may be lost */
        cr_expect_gt(lg->sent[id], 0);
        int missing = 0;
        for (int q = 0; q < lg->sent[id] && q < 4096; q++)
            missing += !s->have[id][q];
        cr_expect_eq(missing, 0, "member %d: %d of %d sent records missing", id,
                     missing, lg->sent[id]);
    }
    free(s);
    mph_test_cluster_destroy(cluster);
    close(pfd[0]);
    close(go[1]);
    free(lg);
}

/* ------------------------------------------------------------------ */
/* mephisto timers                                                     */

Test(services, cli_timers_lists_declared_services)
{
    const char *plugin = mph_cli_plugin("heartbeat");
    const char *args[] = {"timers",
                          "--app",
                          plugin,
                          "--set",
                          "heartbeat.timezone=America/New_York",
                          NULL};
    mph_cli_result_t r = mph_cli_run("timers", args, NULL, NULL, 30000);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "app heartbeat (plugin "), "%s", r.out);
    cr_expect(strstr(r.out, "NAME "), "%s", r.out);
    const char *hb = strstr(r.out, "\nheartbeat ");
    cr_expect(hb && strstr(hb, "timer") && strstr(hb, "every 1000 ms") &&
                  strstr(hb, "yes"),
              "%s", r.out);
    const char *rep = strstr(r.out, "\nreport ");
    cr_assert(rep, "%s", r.out);
    cr_expect(strstr(rep, "crontab") && strstr(rep, "0 3 * * *") &&
                  strstr(rep, "America/New_York"),
              "%s", r.out);
    /* 03:00 in New York is 07:00 or 08:00 UTC. */
    cr_expect(strstr(rep, "T07:00Z") || strstr(rep, "T08:00Z"), "%s", r.out);
    cr_expect(strstr(r.out, "\nwatch ") &&
                  strstr(strstr(r.out, "\nwatch "), "task"),
              "%s", r.out);
    cr_expect(
        strstr(
            r.out,
            "leader election: on (the member assigned heartbeat-__leader [0]"),
        "%s", r.out);
    /* Nothing ran: the start hook's log line is absent. */
    cr_expect(!strstr(r.err, "started"), "%s", r.err);
    mph_cli_result_free(&r);

    const char *bad[] = {
        "timers", "--app", plugin, "--set", "heartbeat.report_cron=0 0 31 2 *",
        NULL};
    r = mph_cli_run("timers-bad", bad, NULL, NULL, 30000);
    cr_expect_eq(r.status, 3, "%s", r.err);
    cr_expect(
        strstr(r.err,
               "crontab 'report': day of month: no day 31 exists in month 2"),
        "%s", r.err);
    mph_cli_result_free(&r);

    /* `mephisto agents` starts the app on a mock cluster for a moment: its
     * services must not run there. */
    const char *agents[] = {"agents",      "--app", plugin,
                            "--log-level", "info",  NULL};
    r = mph_cli_run("agents-hb", agents, NULL, NULL, 30000);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.err, "heartbeat: app heartbeat started") == NULL &&
                  strstr(r.err, "the leader") == NULL,
              "services ran during the listing: %s", r.err);
    mph_cli_result_free(&r);

    const char *none[] = {"timers", "--app", mph_cli_plugin("forward"), NULL};
    r = mph_cli_run("timers-none", none, NULL, NULL, 30000);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "(none)") && strstr(r.out, "leader election: off"),
              "%s", r.out);
    mph_cli_result_free(&r);
}

/*
 * Unit tests of the services' schedule (src/runtime/services.c) on a fake
 * clock: timers keep to their grid over 1,000 runs whatever the wake-up
 * latency and callback time, overruns are counted and not queued, leader-
 * only entries skip their ticks off the leader, crontab entries follow the
 * wall clock; and declarations refuse what they must. The app is never
 * started: entries are driven with mph__svc_tick(), the entry thread's
 * loop body.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "mephisto.h"
#include "runtime/app.h"
#include "runtime/monitor.h"
#include "runtime/services.h"
#include "runtime/web.h"

TestSuite(services, .timeout = 30);

#define MS 1000000LL

typedef struct fake {
    int64_t now;       /* mono ns */
    int64_t real_base; /* real = base + mono */
    int64_t work_ns;   /* what the next callback "takes" */
    int64_t starts[1100];
    int n;
    uint64_t seed;
} fake_t;

static int64_t fake_mono(void *o)
{
    return ((fake_t *)o)->now;
}

static int64_t fake_real(void *o)
{
    return ((fake_t *)o)->real_base + ((fake_t *)o)->now;
}

static uint64_t rnd(fake_t *f)
{
    f->seed = f->seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return f->seed >> 33;
}

static mph_err_t work(mph_app_t *app, void *opaque)
{
    (void)app;
    fake_t *f = opaque;
    if (f->n < 1100)
        f->starts[f->n] = f->now;
    f->n++;
    f->now += f->work_ns;
    return MPH_OK;
}

static mph_app_t *test_app(void)
{
    char err[256];
    mph_conf_t *conf = mph_conf_new();
    cr_assert_not_null(conf);
    cr_assert_eq(mph_conf_set(conf, "app_id", "svc-unit", err, sizeof err),
                 MPH_OK, "%s", err);
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    cr_assert_not_null(app, "%s", err);
    return app;
}

static mph__svc_entry_t *timer(mph_app_t *app, fake_t *f, const char *name,
                               int64_t ms, mph_timer_fn *fn, int flags)
{
    mph__svc_clock_t clock = {fake_mono, fake_real, f};
    mph__services_set_clock(app, &clock);
    cr_assert_eq(mph_app_timer(app, name, ms, fn, f, flags), MPH_OK);
    mph__svc_entry_t *e = mph__services_find(app, name);
    cr_assert_not_null(e);
    return e;
}

Test(services, timer_does_not_drift_over_1000_runs)
{
    mph_app_t *app = test_app();
    fake_t f = {.now = 5 * MS, .real_base = 1700000000000LL * MS, .seed = 42};
    mph__svc_entry_t *e = timer(app, &f, "drift", 10, work, 0);
    int64_t t0 = f.now;
    mph__svc_arm(e, f.now);
    while (f.n < 1000) {
        /* Callbacks take 0-6 ms; the thread wakes 0-3 ms late. */
        f.work_ns = (int64_t)(rnd(&f) % 7) * MS;
        int64_t next = mph__svc_tick(e, f.now);
        f.now = next + (int64_t)(rnd(&f) % 4) * MS;
    }
    for (int k = 0; k < 1000; k++) {
        int64_t grid = t0 + (int64_t)(k + 1) * 10 * MS;
        cr_assert(f.starts[k] >= grid && f.starts[k] <= grid + 3 * MS,
                  "run %d started at %lld, its tick is %lld", k,
                  (long long)f.starts[k], (long long)grid);
    }
    mph__svc_stats_t st;
    mph__svc_stats(e, &st);
    cr_expect_eq(st.runs, 1000);
    cr_expect_eq(st.overruns, 0);
    cr_expect_eq(st.errors, 0);
    /* The next run is on the grid too: tick 1001. */
    cr_expect_eq(mph__svc_tick(e, f.starts[999]), t0 + 1001 * 10 * MS);
    cr_expect_eq(st.next_run_ms, (f.real_base + t0 + 1001 * 10 * MS) / MS);
    cr_expect_eq(st.last_run_ms, (f.real_base + f.starts[999]) / MS);
    mph_app_destroy(app);
}

Test(services, slow_runs_count_overruns_and_are_not_queued)
{
    mph_app_t *app = test_app();
    fake_t f = {.now = 0, .real_base = 0};
    mph__svc_entry_t *e = timer(app, &f, "slow", 10, work, 0);
    mph__svc_arm(e, 0);
    /* Run 100 lasts 35 ms: the ticks at +10, +20 and +30 pass meanwhile;
     * one late run follows at once, then the grid goes on. */
    int64_t late_at = -1;
    while (f.n < 300) {
        f.work_ns = f.n == 99 ? 35 * MS : 1 * MS;
        int64_t next = mph__svc_tick(e, f.now);
        if (f.n == 100 && late_at < 0)
            late_at = next;
        f.now = next > f.now ? next : f.now;
    }
    int64_t slow_start = f.starts[99];
    cr_expect_eq(slow_start, 100 * 10 * MS);
    cr_expect_eq(late_at, slow_start + 30 * MS,
                 "the last passed tick runs late");
    cr_expect_eq(f.starts[100], slow_start + 35 * MS,
                 "late run right after the slow one");
    cr_expect_eq(f.starts[101], slow_start + 40 * MS, "then back on the grid");
    mph__svc_stats_t st;
    mph__svc_stats(e, &st);
    cr_expect_eq(st.overruns, 3);
    cr_expect_eq(st.runs, 300);

    /* A callback that takes 10 intervals, 5 times, and never more than one
     * run per callback return: the first run (10-110 ms) passes the ticks
     * 20..100 (9; the tick at 110 is on time), and each late run after it
     * passes 10. */
    fake_t g = {.now = 10 * MS};
    mph__svc_entry_t *h = timer(app, &g, "slower", 10, work, 0);
    mph__svc_arm(h, 0);
    g.work_ns = 100 * MS;
    int64_t next = mph__svc_tick(h, g.now);
    cr_expect_eq(next, 100 * MS);
    for (int i = 0; i < 4; i++) {
        next = mph__svc_tick(h, g.now);
        cr_expect_leq(next, g.now);
    }
    mph__svc_stats(h, &st);
    cr_expect_eq(st.runs, 5);
    cr_expect_eq(st.overruns, 9 + 4 * 10);
    mph_app_destroy(app);
}

Test(services, wake_up_after_a_long_pause_skips_missed_ticks)
{
    mph_app_t *app = test_app();
    fake_t f = {0};
    mph__svc_entry_t *e = timer(app, &f, "paused", 10, work, 0);
    mph__svc_arm(e, 0);
    /* The process was stopped for a second: one run, 99 missed ticks. */
    int64_t next = mph__svc_tick(e, 1005 * MS);
    cr_expect_eq(f.n, 1);
    cr_expect_eq(next, 1010 * MS);
    mph__svc_stats_t st;
    mph__svc_stats(e, &st);
    cr_expect_eq(st.runs, 1);
    cr_expect_eq(st.overruns, 99);
    mph_app_destroy(app);
}

Test(services, on_leader_ticks_are_skipped_off_the_leader)
{
    mph_app_t *app = test_app();
    fake_t f = {0};
    mph__svc_entry_t *e =
        timer(app, &f, "leader-only", 10, work, MPH_ON_LEADER);
    cr_expect(mph__services_leader_enabled(app));
    cr_expect(!mph_app_is_leader(app));
    mph__svc_arm(e, 0);
    for (int i = 0; i < 10; i++)
        f.now = mph__svc_tick(e, f.now);
    cr_expect_eq(f.n, 0, "ran %d times without being the leader", f.n);
    mph__svc_stats_t st;
    mph__svc_stats(e, &st);
    cr_expect_eq(st.runs + st.overruns, 0);

    /* A rebalance hands this member the leader partition: it is taken out
     * of what workers and the fetch assignment get. */
    cr_assert_str_eq(mph__services_leader_topic(app), "svc-unit-__leader");
    rd_kafka_topic_partition_list_t *parts =
        rd_kafka_topic_partition_list_new(3);
    rd_kafka_topic_partition_list_add(parts, "src", 0);
    rd_kafka_topic_partition_list_add(parts, "svc-unit-__leader", 0);
    rd_kafka_topic_partition_list_add(parts, "src", 1);
    rd_kafka_topic_partition_list_t *rest =
        mph__services_rebalance(app, parts, true);
    cr_assert_not_null(rest);
    cr_expect_eq(rest->cnt, 2);
    cr_expect_null(
        rd_kafka_topic_partition_list_find(rest, "svc-unit-__leader", 0));
    cr_expect_not_null(rd_kafka_topic_partition_list_find(rest, "src", 1));
    rd_kafka_topic_partition_list_destroy(rest);
    cr_expect(mph_app_is_leader(app));
    int64_t t = f.now;
    for (int i = 0; i < 5; i++)
        f.now = mph__svc_tick(e, f.now);
    cr_expect_eq(f.n, 5, "the leader runs its ticks (%d)", f.n);
    cr_expect_eq(f.starts[0], t);
    cr_expect_eq(f.starts[4], t + 40 * MS);
    /* Without the leader partition in the list, nothing changes. */
    rd_kafka_topic_partition_list_t *other =
        rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(other, "src", 0);
    cr_expect_null(mph__services_rebalance(app, other, false));
    cr_expect(mph_app_is_leader(app));
    rd_kafka_topic_partition_list_destroy(other);
    /* Revoked: no longer the leader, ticks skipped again. */
    rest = mph__services_rebalance(app, parts, false);
    cr_assert_not_null(rest);
    rd_kafka_topic_partition_list_destroy(rest);
    cr_expect(!mph_app_is_leader(app));
    for (int i = 0; i < 5; i++)
        f.now = mph__svc_tick(e, f.now);
    cr_expect_eq(f.n, 5);
    rd_kafka_topic_partition_list_destroy(parts);
    mph_app_destroy(app);
}

static int64_t runs_at[16];
static int nruns;
static mph_err_t cron_fn(mph_app_t *app, void *opaque)
{
    (void)app;
    fake_t *f = opaque;
    runs_at[nruns++ % 16] = f->real_base + f->now;
    f->now += f->work_ns;
    return nruns == 2 ? MPH_ERR_AGENT : MPH_OK;
}

Test(services, crontab_follows_the_wall_clock)
{
    mph_app_t *app = test_app();
    /* 2026-03-29 00:50Z = 01:50 CET; Berlin skips 02:00-02:59 that day. */
    fake_t f = {.now = 0, .real_base = 1774745400LL * 1000000000LL};
    mph__svc_clock_t clock = {fake_mono, fake_real, &f};
    mph__services_set_clock(app, &clock);
    cr_assert_eq(mph_app_crontab(app, "c", "*/30 * * * *", "Europe/Berlin",
                                 cron_fn, &f, 0),
                 MPH_OK);
    mph__svc_entry_t *e = mph__services_find(app, "c");
    cr_assert_not_null(e);
    mph__svc_arm(e, fake_real(&f));
    int64_t base = f.real_base;
    for (int i = 0; i < 10 && nruns < 3; i++) {
        int64_t next = mph__svc_tick(e, fake_real(&f));
        f.now = next - base;
    }
    /* 01:00Z (03:00 CEST), 01:30Z, 02:00Z: 02:00 and 02:30 local never
     * happened. The first due time, 00:30Z+30 min = 01:00Z. */
    int64_t s = 1000000000LL;
    cr_expect_eq(runs_at[0], (1774745400LL + 600) * s, "first run at %lld",
                 (long long)runs_at[0]);
    cr_expect_eq(runs_at[1], (1774745400LL + 2400) * s);
    cr_expect_eq(runs_at[2], (1774745400LL + 4200) * s);
    mph__svc_stats_t st;
    mph__svc_stats(e, &st);
    cr_expect_eq(st.runs, 3);
    cr_expect_eq(st.errors, 1, "the second run's error is counted");
    mph_app_destroy(app);
}

static mph_err_t nop(mph_app_t *app, void *opaque)
{
    (void)app;
    (void)opaque;
    return MPH_OK;
}

static mph_err_t task_nop(mph_app_t *app, mph_task_t *t, void *opaque)
{
    (void)app;
    (void)t;
    (void)opaque;
    return MPH_OK;
}

Test(services, declarations_refuse_bad_input)
{
    mph_app_t *app = test_app();
    cr_expect_eq(mph_app_timer(app, "t", 0, nop, NULL, 0), MPH_ERR_INVALID);
    cr_expect_eq(mph_app_timer(app, "t", 10, NULL, NULL, 0), MPH_ERR_INVALID);
    cr_expect_eq(mph_app_timer(app, NULL, 10, nop, NULL, 0), MPH_ERR_INVALID);
    cr_expect_eq(mph_app_timer(app, "", 10, nop, NULL, 0), MPH_ERR_INVALID);
    cr_expect_eq(mph_app_timer(app, "t", 10, nop, NULL, 0x10), MPH_ERR_INVALID);
    cr_expect_eq(mph_app_timer(NULL, "t", 10, nop, NULL, 0), MPH_ERR_INVALID);
    cr_expect_eq(mph_app_timer(app, "t", 10, nop, NULL, 0), MPH_OK);
    cr_expect_eq(mph_app_timer(app, "t", 10, nop, NULL, 0), MPH_ERR_EXISTS);
    cr_expect_eq(mph_app_crontab(app, "t", "* * * * *", NULL, nop, NULL, 0),
                 MPH_ERR_EXISTS);
    cr_expect_eq(mph_app_task(app, "t", task_nop, NULL), MPH_ERR_EXISTS);
    cr_expect_eq(mph_app_crontab(app, "bad", "61 * * * *", NULL, nop, NULL, 0),
                 MPH_ERR_INVALID);
    cr_expect_eq(
        mph_app_crontab(app, "bad", "* * * * *", "Nowhere/Land", nop, NULL, 0),
        MPH_ERR_INVALID);
    cr_expect_null(mph__services_find(app, "bad"));
    cr_expect_eq(mph_app_crontab(app, "ok", "@daily", "America/New_York", nop,
                                 NULL, MPH_ON_LEADER),
                 MPH_OK);
    cr_expect_eq(mph_app_task(app, "task", NULL, NULL), MPH_ERR_INVALID);
    cr_expect_eq(mph_app_task(app, "task", task_nop, NULL), MPH_OK);
    cr_expect_eq(mph_app_on_start(app, NULL, NULL), MPH_ERR_INVALID);
    cr_expect_eq(mph_app_on_stop(app, nop, NULL), MPH_OK);
    cr_expect_eq(mph_app_on_leader_change(app, NULL, NULL), MPH_OK);
    cr_expect_eq(mph_app_on_leader_change(app, NULL, NULL), MPH_ERR_EXISTS);

    char err[256] = "";
    cr_expect_eq(mph_crontab_check("0 25 * * *", "UTC", err, sizeof err),
                 MPH_ERR_INVALID);
    cr_expect_str_eq(err, "hour: 25 is out of range 0-23");
    cr_expect_eq(
        mph_crontab_check("0 0 * * *", "Europe/Nowhere", err, sizeof err),
        MPH_ERR_INVALID);
    cr_expect(strstr(err, "timezone 'Europe/Nowhere'"), "%s", err);
    cr_expect_eq(
        mph_crontab_check("0 0 * * mon-fri", "Europe/Berlin", err, sizeof err),
        MPH_OK);
    mph_app_destroy(app);
}

Test(services, metrics_from_the_stats_block)
{
    mph_app_t *app = test_app();
    fake_t f = {.now = 0, .real_base = 1700000000000LL * MS};
    mph__svc_entry_t *e = timer(app, &f, "beat", 10, work, MPH_ON_LEADER);
    cr_assert_eq(
        mph_app_crontab(app, "nightly", "0 3 * * *", "UTC", work, &f, 0),
        MPH_OK);
    mph__svc_arm(e, 0);
    char *json = NULL;
    size_t len = 0;
    cr_assert_eq(mph_app_services_json(app, &json, &len), MPH_OK);
    mph__stats_t st;
    memset(&st, 0, sizeof st);
    st.app_id = "svc-unit";
    st.services_json = json;
    st.services_len = len;
    char *text = NULL;
    size_t tlen = 0;
    cr_assert_eq(mph__web_metrics(&st, &text, &tlen), MPH_OK);
    cr_expect(strstr(text, "# TYPE mephisto_leader gauge\nmephisto_leader 0\n"),
              "%s", text);
    cr_expect(
        strstr(
            text,
            "mephisto_service_runs_total{service=\"beat\",kind=\"timer\"} 0\n"),
        "%s", text);
    cr_expect(strstr(text, "mephisto_service_overruns_total{service="
                           "\"nightly\",kind=\"crontab\"} 0"),
              "%s", text);
    cr_expect(
        strstr(text,
               "mephisto_service_next_run_timestamp_seconds{service=\"beat\","
               "kind=\"timer\"} 1700000000.01"),
        "%s", text);
    cr_expect(
        !strstr(text,
                "mephisto_service_last_run_timestamp_seconds{service=\"beat\""),
        "never ran: no sample\n%s", text);
    free(text);
    free(json);

    /* No services: no families. */
    memset(&st, 0, sizeof st);
    st.app_id = "x";
    cr_assert_eq(mph__web_metrics(&st, &text, &tlen), MPH_OK);
    cr_expect(!strstr(text, "mephisto_service") &&
              !strstr(text, "mephisto_leader"));
    free(text);
    mph_app_destroy(app);
}

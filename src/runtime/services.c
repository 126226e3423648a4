/*
 * DESIGN — app services: timers, crontab entries, tasks, hooks, leader.
 *
 * Threads. Nothing here runs on a worker or on the coordinator: user code
 * of services must not add latency to the event path or to the group's
 * heartbeats. The services thread ("services") runs the start hooks, then
 * starts one thread per timer, crontab entry and task, then serves
 * leader-change notifications until the stop; it then stops and joins the
 * entry threads and runs the stop hooks. One thread per entry is what
 * makes "a slow callback delays only its own next run" true: entries
 * never wait for each other. Apps declare a handful of entries; a thread
 * each is cheap at that scale.
 *
 * Schedule. A timer keeps to the grid t0 + k * interval on the monotonic
 * clock: the next due time is the previous due time plus the interval,
 * never "now plus the interval", so wake-up latency and callback time do
 * not accumulate (no drift). When a run ends after the next due time,
 * every tick that passed during the run counts as an overrun, and only
 * the last of them runs, at once (late): overruns are counted, not
 * queued. A crontab entry does the same on the wall clock with the cron
 * times (cron.c) in place of the grid. Its waits are capped at a second,
 * so a wall-clock step (NTP) is noticed soon.
 *
 * Stop. One eventfd, written once and never read, is the stop signal every
 * services thread polls (level-triggered: all of them see it). The
 * coordinator calls mph__services_stop() before it sets the app to
 * stopping, so timers, tasks and stop hooks can still mph_send(), and the
 * coordinator's graceful stop then flushes the app producer.
 *
 * Leader. The rebalance callback (coordinator) sees partition 0 of
 * `<app_id>-__leader` come or go, flips `leader` and wakes the services
 * thread, which calls the leader-change callback. The partition is taken
 * out of the list before workers or the consumer's fetch assignment see
 * it: no worker maps it as a source, nothing is fetched or committed for
 * it; the group assignment alone is the token. With the range assignor
 * (the default) topics are assigned independently, so subscribing to one
 * more topic changes no source partition's owner; its single partition
 * goes to the first member in the group's member order. Under
 * cooperative-sticky or roundrobin the assignor balances partitions over
 * all topics together, so the extra partition may move one source
 * partition; such apps do not rely on co-partitioning anyway. (Under
 * cooperative-sticky the token is never incrementally assigned to the
 * consumer, so it is never incrementally unassigned either.)
 *
 * Never: run user code while holding a lock the coordinator takes; let a
 * callback's error stop a timer (it is counted; start hooks are the
 * exception: they stop the app).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ck_pr.h>

#include "io/kafka.h"
#include "io/uring.h"
#include "mephisto/jsonw.h"
#include "mephisto/log.h"
#include "runtime/app.h"
#include "mephisto/json.h"
#include "runtime/cron.h"
#include "runtime/promtext.h"
#include "runtime/services.h"

enum svc_kind { SVC_TIMER, SVC_CRON, SVC_TASK };

static const char *const kind_names[] = {"timer", "crontab", "task"};

struct mph_task {
    mph__svc_entry_t *entry;
};

struct mph__svc_entry {
    mph__services_t *svc;
    enum svc_kind kind;
    char *name;
    int flags;
    mph_timer_fn *fn;
    mph_task_fn *task_fn;
    void *opaque;
    int64_t interval_ns;
    mph__cron_t cron;
    char *expr, *tz;
    struct mph_task task;
    pthread_t thread;
    bool started;
    mph_log_limit_t log_lim;
    /* Schedule: mono ns (timer) or real ns (crontab). Entry thread only. */
    int64_t due;
    /* Stats: written by the entry's thread, read by any (__atomic). */
    uint64_t runs, overruns, errors;
    int64_t last_run_ms, next_run_ms;
    int running; /* 1 while the callback or task runs */
};

typedef struct hook {
    mph_hook_fn *fn;
    void *opaque;
} hook_t;

struct mph__services {
    mph_app_t *app;
    mph__svc_clock_t clock;
    mph__svc_entry_t **entries;
    size_t nentries;
    hook_t *on_start, *on_stop;
    size_t nstart, nstop;
    mph_leader_fn *leader_fn;
    void *leader_opaque;
    bool leader_fn_set;
    bool disabled; /* mph_app_services_enable(app, false) */
    bool leader_enabled;
    char *leader_topic;
    int leader;  /* 1 while this member holds the token (ck_pr) */
    int stop_fd; /* written once at stop, never read: level */
    int wake_fd; /* leader changes for the services thread */
    pthread_t thread;
    bool started;
    int stopped;               /* 1 once stop ran (ck_pr) */
    pthread_mutex_t stop_lock; /* serialises mph__services_stop's callers */
};

/* ------------------------------------------------------------------ */
/* clocks                                                              */

static int64_t sys_mono_ns(void *opaque)
{
    (void)opaque;
    return mph_clock_mono_ns();
}

static int64_t sys_real_ns(void *opaque)
{
    (void)opaque;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t mono(const mph__services_t *s)
{
    return s->clock.mono_ns(s->clock.opaque);
}

static int64_t real(const mph__services_t *s)
{
    return s->clock.real_ns(s->clock.opaque);
}

/* ------------------------------------------------------------------ */
/* declarations                                                        */

static mph__services_t *services_of(mph_app_t *app)
{
    if (app->services)
        return app->services;
    mph__services_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->app = app;
    s->clock = (mph__svc_clock_t){sys_mono_ns, sys_real_ns, NULL};
    s->stop_fd = s->wake_fd = -1;
    pthread_mutex_init(&s->stop_lock, NULL);
    app->services = s;
    return s;
}

/* Declarations are for the controlling thread before start. */
static mph_err_t check_declare(mph_app_t *app, const char *what,
                               const char *name)
{
    if (!app) {
        mph_log(MPH_LOG_ERROR, "%s '%s': app is NULL", what, name ? name : "");
        return MPH_ERR_INVALID;
    }
    if (ck_pr_load_int(&app->state) != APP_NEW) {
        mph_log(MPH_LOG_ERROR, "%s '%s': declared after the app started", what,
                name ? name : "");
        return MPH_ERR_STATE;
    }
    return MPH_OK;
}

static mph_err_t new_entry(mph_app_t *app, enum svc_kind kind, const char *name,
                           int flags, mph__svc_entry_t **out)
{
    const char *what = kind_names[kind];
    mph_err_t err = check_declare(app, what, name);
    if (err)
        return err;
    if (!name || !*name) {
        mph_log(MPH_LOG_ERROR, "%s: name is NULL or empty", what);
        return MPH_ERR_INVALID;
    }
    if (flags & ~MPH_ON_LEADER || (kind == SVC_TASK && flags)) {
        mph_log(MPH_LOG_ERROR, "%s '%s': unknown flags 0x%x", what, name,
                (unsigned)flags);
        return MPH_ERR_INVALID;
    }
    mph__services_t *s = services_of(app);
    if (!s)
        return MPH_ERR_NOMEM;
    for (size_t i = 0; i < s->nentries; i++) {
        if (!strcmp(s->entries[i]->name, name)) {
            mph_log(MPH_LOG_ERROR, "%s '%s': the name is taken by a %s", what,
                    name, kind_names[s->entries[i]->kind]);
            return MPH_ERR_EXISTS;
        }
    }
    mph__svc_entry_t *e = calloc(1, sizeof *e);
    mph__svc_entry_t **grown =
        realloc(s->entries, (s->nentries + 1) * sizeof *grown);
    if (grown)
        s->entries = grown;
    if (!e || !grown || !(e->name = strdup(name))) {
        free(e);
        return MPH_ERR_NOMEM;
    }
    e->svc = s;
    e->kind = kind;
    e->flags = flags;
    e->task.entry = e;
    *out = e;
    return MPH_OK;
}

static void entry_free(mph__svc_entry_t *e)
{
    if (!e)
        return;
    free(e->name);
    free(e->expr);
    free(e->tz);
    free(e);
}

/* Leader election on: the topic's name is fixed from here on. */
static mph_err_t enable_leader(mph__services_t *s)
{
    if (!s->leader_topic) {
        size_t n = strlen(s->app->app_id) + sizeof "-__leader";
        s->leader_topic = malloc(n);
        if (!s->leader_topic)
            return MPH_ERR_NOMEM;
        snprintf(s->leader_topic, n, "%s-__leader", s->app->app_id);
    }
    s->leader_enabled = true;
    return MPH_OK;
}

static mph_err_t add_entry(mph__services_t *s, mph__svc_entry_t *e)
{
    if ((e->flags & MPH_ON_LEADER) && enable_leader(s) != MPH_OK) {
        entry_free(e);
        return MPH_ERR_NOMEM;
    }
    s->entries[s->nentries++] = e;
    return MPH_OK;
}

mph_err_t mph_app_timer(mph_app_t *app, const char *name, int64_t interval_ms,
                        mph_timer_fn *fn, void *opaque, int flags)
{
    if (app && name && (!fn || interval_ms < 1)) {
        mph_log(MPH_LOG_ERROR, "timer '%s': %s", name,
                !fn ? "fn is NULL" : "interval_ms must be at least 1");
        return MPH_ERR_INVALID;
    }
    mph__svc_entry_t *e;
    mph_err_t err = new_entry(app, SVC_TIMER, name, flags, &e);
    if (err)
        return err;
    if (interval_ms > INT64_MAX / 1000000) {
        mph_log(MPH_LOG_ERROR, "timer '%s': interval_ms %lld is too large",
                name, (long long)interval_ms);
        entry_free(e);
        return MPH_ERR_INVALID;
    }
    e->fn = fn;
    e->opaque = opaque;
    e->interval_ns = interval_ms * 1000000;
    return add_entry(app->services, e);
}

mph_err_t mph_crontab_check(const char *expr, const char *timezone,
                            char *errstr, size_t errstr_size)
{
    mph__cron_t c;
    mph_err_t err = mph__cron_parse(&c, expr, errstr, errstr_size);
    if (!err)
        err = mph__tz_check(timezone, errstr, errstr_size);
    return err;
}

mph_err_t mph_app_crontab(mph_app_t *app, const char *name, const char *expr,
                          const char *timezone, mph_timer_fn *fn, void *opaque,
                          int flags)
{
    if (app && name && !fn) {
        mph_log(MPH_LOG_ERROR, "crontab '%s': fn is NULL", name);
        return MPH_ERR_INVALID;
    }
    mph__svc_entry_t *e;
    mph_err_t err = new_entry(app, SVC_CRON, name, flags, &e);
    if (err)
        return err;
    char why[256] = "";
    err = mph__cron_parse(&e->cron, expr, why, sizeof why);
    if (!err)
        err = mph__tz_check(timezone, why, sizeof why);
    if (err) {
        mph_log(MPH_LOG_ERROR, "crontab '%s': %s", name, why);
        entry_free(e);
        return err;
    }
    e->expr = strdup(expr);
    e->tz = strdup(timezone && *timezone ? timezone : "UTC");
    if (!e->expr || !e->tz) {
        entry_free(e);
        return MPH_ERR_NOMEM;
    }
    e->fn = fn;
    e->opaque = opaque;
    return add_entry(app->services, e);
}

mph_err_t mph_app_task(mph_app_t *app, const char *name, mph_task_fn *fn,
                       void *opaque)
{
    if (app && name && !fn) {
        mph_log(MPH_LOG_ERROR, "task '%s': fn is NULL", name);
        return MPH_ERR_INVALID;
    }
    mph__svc_entry_t *e;
    mph_err_t err = new_entry(app, SVC_TASK, name, 0, &e);
    if (err)
        return err;
    e->task_fn = fn;
    e->opaque = opaque;
    return add_entry(app->services, e);
}

static mph_err_t add_hook(mph_app_t *app, bool start, mph_hook_fn *fn,
                          void *opaque)
{
    const char *what = start ? "on_start hook" : "on_stop hook";
    mph_err_t err = check_declare(app, what, "");
    if (err)
        return err;
    if (!fn) {
        mph_log(MPH_LOG_ERROR, "%s: fn is NULL", what);
        return MPH_ERR_INVALID;
    }
    mph__services_t *s = services_of(app);
    if (!s)
        return MPH_ERR_NOMEM;
    hook_t **list = start ? &s->on_start : &s->on_stop;
    size_t *n = start ? &s->nstart : &s->nstop;
    hook_t *grown = realloc(*list, (*n + 1) * sizeof *grown);
    if (!grown)
        return MPH_ERR_NOMEM;
    *list = grown;
    grown[*n] = (hook_t){fn, opaque};
    (*n)++;
    return MPH_OK;
}

mph_err_t mph_app_on_start(mph_app_t *app, mph_hook_fn *fn, void *opaque)
{
    return add_hook(app, true, fn, opaque);
}

mph_err_t mph_app_on_stop(mph_app_t *app, mph_hook_fn *fn, void *opaque)
{
    return add_hook(app, false, fn, opaque);
}

mph_err_t mph_app_on_leader_change(mph_app_t *app, mph_leader_fn *fn,
                                   void *opaque)
{
    mph_err_t err = check_declare(app, "leader-change callback", "");
    if (err)
        return err;
    mph__services_t *s = services_of(app);
    if (!s)
        return MPH_ERR_NOMEM;
    if (s->leader_fn_set) {
        mph_log(MPH_LOG_ERROR, "leader-change callback: already set");
        return MPH_ERR_EXISTS;
    }
    if (enable_leader(s) != MPH_OK)
        return MPH_ERR_NOMEM;
    s->leader_fn = fn;
    s->leader_opaque = opaque;
    s->leader_fn_set = true;
    return MPH_OK;
}

bool mph_app_is_leader(const mph_app_t *app)
{
    mph__services_t *s = app ? app->services : NULL;
    return s && ck_pr_load_int(&s->leader) == 1;
}

bool mph_task_stopping(const mph_task_t *task)
{
    struct pollfd p = {task->entry->svc->stop_fd, POLLIN, 0};
    return ck_pr_load_int(&task->entry->svc->stopped) || poll(&p, 1, 0) > 0;
}

bool mph_task_sleep(mph_task_t *task, int64_t ms)
{
    mph__services_t *s = task->entry->svc;
    /* Capped at about 100 years, so that a "sleep until the stop"
     * (INT64_MAX) neither overflows nor wraps into the past. */
    const int64_t max_ms = INT64_C(100) * 366 * 86400 * 1000;
    int64_t end = mph_clock_mono_ns() +
                  (ms > 0 ? (ms < max_ms ? ms : max_ms) : 0) * 1000000;
    for (;;) {
        if (mph_task_stopping(task))
            return true;
        int64_t left = (end - mph_clock_mono_ns()) / 1000000;
        if (left <= 0)
            return false;
        struct pollfd p = {s->stop_fd, POLLIN, 0};
        poll(&p, 1, left > 1000 ? 1000 : (int)left);
    }
}

void mph__services_set_clock(mph_app_t *app, const mph__svc_clock_t *clock)
{
    mph__services_t *s = services_of(app);
    if (s && clock)
        s->clock = *clock;
}

mph_err_t mph_app_services_enable(mph_app_t *app, bool enabled)
{
    mph_err_t err =
        check_declare(app, "services", enabled ? "enable" : "disable");
    if (err)
        return err;
    mph__services_t *s = services_of(app);
    if (!s)
        return MPH_ERR_NOMEM;
    s->disabled = !enabled;
    return MPH_OK;
}

bool mph__services_leader_enabled(const mph_app_t *app)
{
    return app->services && app->services->leader_enabled &&
           !app->services->disabled;
}

const char *mph__services_leader_topic(const mph_app_t *app)
{
    return mph__services_leader_enabled(app) ? app->services->leader_topic
                                             : NULL;
}

mph__svc_entry_t *mph__services_find(mph_app_t *app, const char *name)
{
    mph__services_t *s = app->services;
    for (size_t i = 0; s && i < s->nentries; i++)
        if (!strcmp(s->entries[i]->name, name))
            return s->entries[i];
    return NULL;
}

/* ------------------------------------------------------------------ */
/* schedule                                                            */

static void publish_next(mph__svc_entry_t *e)
{
    int64_t ms;
    if (e->kind == SVC_TIMER)
        ms = (real(e->svc) + (e->due - mono(e->svc))) / 1000000;
    else
        ms = e->due == INT64_MAX ? 0 : e->due / 1000000; /* 0: none */
    __atomic_store_n(&e->next_run_ms, ms, __ATOMIC_RELAXED);
}

/* The crontab entry's first run strictly after real ns t, or INT64_MAX. */
static int64_t cron_after(mph__svc_entry_t *e, int64_t t)
{
    int64_t s = t >= 0 ? t / 1000000000 : -((-t + 999999999) / 1000000000);
    int64_t next;
    if (mph__cron_next(&e->cron, e->tz, s, &next) != MPH_OK)
        return INT64_MAX;
    return next * 1000000000;
}

void mph__svc_arm(mph__svc_entry_t *e, int64_t now_ns)
{
    e->due =
        e->kind == SVC_TIMER ? now_ns + e->interval_ns : cron_after(e, now_ns);
    publish_next(e);
}

static int64_t clock_of(const mph__svc_entry_t *e)
{
    return e->kind == SVC_TIMER ? mono(e->svc) : real(e->svc);
}

/* The scheduled time after t: the grid or the cron times. */
static int64_t after(mph__svc_entry_t *e, int64_t t)
{
    return e->kind == SVC_TIMER ? t + e->interval_ns : cron_after(e, t);
}

static bool leader_ok(const mph__svc_entry_t *e)
{
    return !(e->flags & MPH_ON_LEADER) || ck_pr_load_int(&e->svc->leader) == 1;
}

int64_t mph__svc_tick(mph__svc_entry_t *e, int64_t now)
{
    if (now < e->due)
        return e->due;
    /* Ticks missed before this one (the thread was not scheduled, or the
     * process was stopped) count as overruns and are not run. */
    uint64_t missed = 0;
    for (int64_t n = after(e, e->due); n <= now && missed < 1000000;
         n = after(e, e->due)) {
        e->due = n;
        missed++;
    }
    if (e->kind == SVC_TIMER && missed == 1000000) {
        int64_t k = (now - e->due) / e->interval_ns;
        e->due += k * e->interval_ns;
        missed += (uint64_t)k;
    }
    if (!leader_ok(e)) {
        /* Not the leader: the tick is skipped, and not counted. */
        e->due = after(e, e->due);
        publish_next(e);
        return e->due;
    }
    if (missed)
        __atomic_add_fetch(&e->overruns, missed, __ATOMIC_RELAXED);
    __atomic_store_n(&e->last_run_ms, real(e->svc) / 1000000, __ATOMIC_RELAXED);
    __atomic_store_n(&e->running, 1, __ATOMIC_RELAXED);
    mph_err_t err = e->fn(e->svc->app, e->opaque);
    __atomic_store_n(&e->running, 0, __ATOMIC_RELAXED);
    __atomic_add_fetch(&e->runs, 1, __ATOMIC_RELAXED);
    if (err) {
        __atomic_add_fetch(&e->errors, 1, __ATOMIC_RELAXED);
        mph_log_limited(&e->log_lim, 10000, MPH_LOG_WARN, "%s '%s' failed: %s",
                        kind_names[e->kind], e->name, mph_err_str(err));
    }
    int64_t end = clock_of(e);
    e->due = after(e, e->due);
    /* Ticks that passed while the callback ran: each is an overrun; the
     * last one runs now (late), the others are dropped. */
    uint64_t passed = 0;
    if (e->due < end) {
        passed = 1;
        if (e->kind == SVC_TIMER) {
            passed = (uint64_t)((end - e->due + e->interval_ns - 1) /
                                e->interval_ns);
            e->due += (int64_t)(passed - 1) * e->interval_ns;
        } else {
            for (int64_t n = after(e, e->due); n < end && passed < 1000000;
                 n = after(e, e->due)) {
                e->due = n;
                passed++;
            }
        }
        __atomic_add_fetch(&e->overruns, passed, __ATOMIC_RELAXED);
    }
    publish_next(e);
    return e->due;
}

void mph__svc_stats(const mph__svc_entry_t *e, mph__svc_stats_t *out)
{
    out->runs = __atomic_load_n(&e->runs, __ATOMIC_RELAXED);
    out->overruns = __atomic_load_n(&e->overruns, __ATOMIC_RELAXED);
    out->errors = __atomic_load_n(&e->errors, __ATOMIC_RELAXED);
    out->last_run_ms = __atomic_load_n(&e->last_run_ms, __ATOMIC_RELAXED);
    out->next_run_ms = __atomic_load_n(&e->next_run_ms, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------ */
/* threads                                                             */

static void thread_name(const char *prefix, const char *name)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%s%s", prefix, name);
    mph_log_set_thread_name(buf);
    char os[16];
    size_t n = strlen(buf) < sizeof os - 1 ? strlen(buf) : sizeof os - 1;
    memcpy(os, buf, n);
    os[n] = 0;
    pthread_setname_np(pthread_self(), os);
}

static bool stop_seen(const mph__services_t *s, int timeout_ms)
{
    struct pollfd p = {s->stop_fd, POLLIN, 0};
    return poll(&p, 1, timeout_ms) > 0 && (p.revents & POLLIN);
}

static void *entry_main(void *arg)
{
    mph__svc_entry_t *e = arg;
    mph__services_t *s = e->svc;
    if (e->kind == SVC_TASK) {
        thread_name("task:", e->name);
        __atomic_store_n(&e->last_run_ms, real(s) / 1000000, __ATOMIC_RELAXED);
        __atomic_store_n(&e->running, 1, __ATOMIC_RELAXED);
        mph_err_t err = e->task_fn(s->app, &e->task, e->opaque);
        __atomic_store_n(&e->running, 0, __ATOMIC_RELAXED);
        __atomic_add_fetch(&e->runs, 1, __ATOMIC_RELAXED);
        if (err) {
            __atomic_add_fetch(&e->errors, 1, __ATOMIC_RELAXED);
            mph_log(MPH_LOG_WARN, "task '%s' returned %s", e->name,
                    mph_err_str(err));
        }
        return NULL;
    }
    thread_name("t:", e->name);
    for (;;) {
        int64_t next = mph__svc_tick(e, clock_of(e));
        int64_t now = clock_of(e);
        int64_t wait_ms = next > now + 3600000LL * 1000000
                              ? 3600000
                              : (next - now + 999999) / 1000000;
        if (wait_ms < 0)
            wait_ms = 0;
        if (e->kind == SVC_CRON && wait_ms > 1000)
            wait_ms = 1000; /* re-read the wall clock: it may be stepped */
        if (wait_ms > 3600000)
            wait_ms = 3600000;
        if (stop_seen(s, (int)wait_ms))
            break;
    }
    return NULL;
}

static void start_entries(mph__services_t *s)
{
    for (size_t i = 0; i < s->nentries; i++) {
        mph__svc_entry_t *e = s->entries[i];
        if (e->kind != SVC_TASK)
            mph__svc_arm(e, clock_of(e));
        int rc = pthread_create(&e->thread, NULL, entry_main, e);
        if (rc) {
            mph__app_fail(s->app, MPH_ERR_NOMEM,
                          "%s '%s': cannot start its thread: %s",
                          kind_names[e->kind], e->name, strerror(rc));
            return;
        }
        e->started = true;
    }
}

static void *services_main(void *arg)
{
    mph__services_t *s = arg;
    mph_log_set_thread_name("services");
    pthread_setname_np(pthread_self(), "services");
    bool ok = true;
    for (size_t i = 0; i < s->nstart && ok; i++) {
        mph_err_t err = s->on_start[i].fn(s->app, s->on_start[i].opaque);
        if (err) {
            mph__app_fail(s->app, err, "on_start hook %zu of %zu failed: %s",
                          i + 1, s->nstart, mph_err_str(err));
            ok = false;
        }
    }
    if (ok && !stop_seen(s, 0))
        start_entries(s);
    int told = 0;
    struct pollfd p[2] = {{s->stop_fd, POLLIN, 0}, {s->wake_fd, POLLIN, 0}};
    for (;;) {
        int leader = ck_pr_load_int(&s->leader);
        if (leader != told) {
            told = leader;
            mph_log(MPH_LOG_INFO, "%s the leader of group %s",
                    leader ? "now" : "no longer", s->app->app_id);
            if (s->leader_fn)
                s->leader_fn(s->app, leader == 1, s->leader_opaque);
        }
        p[0].revents = p[1].revents = 0;
        poll(p, 2, 1000);
        if (p[0].revents)
            break;
        if (p[1].revents)
            mph__eventfd_drain(s->wake_fd);
    }
    /* Stop: tasks see the stop flag, timers end after the run in progress. */
    for (size_t i = 0; i < s->nentries; i++) {
        if (s->entries[i]->started) {
            pthread_join(s->entries[i]->thread, NULL);
            s->entries[i]->started = false;
        }
    }
    if (told && s->leader_fn)
        s->leader_fn(s->app, false, s->leader_opaque);
    for (size_t i = s->nstop; i > 0; i--) {
        mph_err_t err = s->on_stop[i - 1].fn(s->app, s->on_stop[i - 1].opaque);
        if (err)
            mph__app_fail(s->app, err, "on_stop hook %zu of %zu failed: %s", i,
                          s->nstop, mph_err_str(err));
    }
    return NULL;
}

mph_err_t mph__services_prepare(mph_app_t *app, char *errstr,
                                size_t errstr_size)
{
    mph__services_t *s = app->services;
    if (!s || !s->leader_enabled || s->disabled)
        return MPH_OK;
    int64_t repl = mph_conf_get_int(app->conf, "topic_replication_factor", 1);
    mph__topic_spec_t spec = {s->leader_topic, 1, repl > 0 ? (int)repl : 1,
                              NULL};
    int64_t t = app->shutdown_timeout_ms;
    int timeout = t < 1000 ? 1000 : t > 30000 ? 30000 : (int)t;
    char why[512] = "";
    mph_err_t err = mph__kafka_create_topics(app->kenv, app->producer, &spec, 1,
                                             timeout, why, sizeof why);
    if (err) {
        snprintf(errstr, errstr_size, "leader election: topic %s: %s",
                 s->leader_topic, why);
        return err;
    }
    /* A just-created topic may take a moment to show in metadata; the
     * subscription would otherwise wait for the next metadata refresh. */
    int parts = 0;
    for (int i = 0; i < 50; i++) {
        if (mph__kafka_partition_count(app->producer, s->leader_topic, timeout,
                                       &parts) == MPH_OK &&
            parts > 0)
            break;
        usleep(100000);
    }
    if (parts != 1) {
        snprintf(errstr, errstr_size,
                 "leader election: topic %s has %d partitions, needs exactly 1 "
                 "(delete it; "
                 "mephisto creates it)",
                 s->leader_topic, parts);
        return MPH_ERR_INVALID;
    }
    return MPH_OK;
}

mph_err_t mph__services_start(mph_app_t *app, char *errstr, size_t errstr_size)
{
    mph__services_t *s = app->services;
    if (!s || s->started || s->disabled)
        return MPH_OK;
    ck_pr_store_int(&s->stopped, 0);
    ck_pr_store_int(&s->leader, 0);
    if (s->stop_fd < 0)
        s->stop_fd = mph__eventfd_new();
    if (s->wake_fd < 0)
        s->wake_fd = mph__eventfd_new();
    if (s->stop_fd < 0 || s->wake_fd < 0) {
        snprintf(errstr, errstr_size, "services: cannot create an eventfd");
        return MPH_ERR_IO;
    }
    int rc = pthread_create(&s->thread, NULL, services_main, s);
    if (rc) {
        snprintf(errstr, errstr_size, "services: cannot start the thread: %s",
                 strerror(rc));
        return MPH_ERR_NOMEM;
    }
    s->started = true;
    return MPH_OK;
}

void mph__services_stop(mph_app_t *app)
{
    mph__services_t *s = app->services;
    if (!s)
        return;
    pthread_mutex_lock(&s->stop_lock);
    if (s->started) {
        ck_pr_store_int(&s->stopped, 1);
        mph__eventfd_signal(s->stop_fd);
        pthread_join(s->thread, NULL);
        s->started = false;
    }
    pthread_mutex_unlock(&s->stop_lock);
}

void mph__services_free(mph_app_t *app)
{
    mph__services_t *s = app->services;
    if (!s)
        return;
    mph__services_stop(app);
    for (size_t i = 0; i < s->nentries; i++)
        entry_free(s->entries[i]);
    free(s->entries);
    free(s->on_start);
    free(s->on_stop);
    free(s->leader_topic);
    if (s->stop_fd >= 0)
        close(s->stop_fd);
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    pthread_mutex_destroy(&s->stop_lock);
    free(s);
    app->services = NULL;
}

rd_kafka_topic_partition_list_t *
mph__services_rebalance(mph_app_t *app, rd_kafka_topic_partition_list_t *parts,
                        bool assigned)
{
    mph__services_t *s = app->services;
    if (!s || !s->leader_enabled || s->disabled || !s->leader_topic ||
        !rd_kafka_topic_partition_list_find(parts, s->leader_topic, 0))
        return NULL;
    ck_pr_store_int(&s->leader, assigned ? 1 : 0);
    if (s->wake_fd >= 0)
        mph__eventfd_signal(s->wake_fd);
    mph_log(MPH_LOG_INFO, "leader partition %s [0] %s", s->leader_topic,
            assigned ? "assigned: this member is the leader" : "revoked");
    rd_kafka_topic_partition_list_t *rest =
        rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; i < parts->cnt; i++)
        if (strcmp(parts->elems[i].topic, s->leader_topic) != 0)
            rd_kafka_topic_partition_list_add(rest, parts->elems[i].topic,
                                              parts->elems[i].partition)
                ->offset = parts->elems[i].offset;
    return rest;
}

/* ------------------------------------------------------------------ */
/* /stats                                                              */

char *mph__services_stats_json(mph_app_t *app, size_t *len)
{
    mph__services_t *s = app->services;
    *len = 0;
    if (!s)
        return NULL;
    mph_jsonw_t *w = mph_jsonw_new(1024, NULL, 0);
    if (!w)
        return NULL;
    mph_err_t err = mph_jsonw_object_begin(w);
#define KEY(k)  (err = err ? err : mph_jsonw_key(w, k, strlen(k)))
#define STR(v)  (err = err ? err : mph_jsonw_str(w, v, strlen(v)))
#define I64(v)  (err = err ? err : mph_jsonw_i64(w, v))
#define U64(v)  (err = err ? err : mph_jsonw_u64(w, v))
#define BOOL(v) (err = err ? err : mph_jsonw_bool(w, v))
#define NUL()   (err = err ? err : mph_jsonw_null(w))
    KEY("leader_election");
    BOOL(s->leader_enabled);
    KEY("leader");
    BOOL(mph_app_is_leader(app));
    KEY("leader_topic");
    if (s->leader_enabled && s->leader_topic)
        STR(s->leader_topic);
    else
        NUL();
    KEY("on_start_hooks");
    U64(s->nstart);
    KEY("on_stop_hooks");
    U64(s->nstop);
    KEY("timers");
    err = err ? err : mph_jsonw_array_begin(w);
    for (size_t i = 0; i < s->nentries; i++) {
        const mph__svc_entry_t *e = s->entries[i];
        mph__svc_stats_t st;
        mph__svc_stats(e, &st);
        err = err ? err : mph_jsonw_object_begin(w);
        KEY("name");
        STR(e->name);
        KEY("kind");
        STR(kind_names[e->kind]);
        KEY("schedule");
        if (e->kind == SVC_TIMER) {
            char buf[64];
            snprintf(buf, sizeof buf, "every %lld ms",
                     (long long)(e->interval_ns / 1000000));
            STR(buf);
        } else if (e->kind == SVC_CRON) {
            STR(e->expr);
        } else {
            STR("once");
        }
        KEY("interval_ms");
        if (e->kind == SVC_TIMER)
            I64(e->interval_ns / 1000000);
        else
            NUL();
        KEY("timezone");
        if (e->kind == SVC_CRON)
            STR(e->tz);
        else
            NUL();
        KEY("on_leader");
        BOOL(e->flags & MPH_ON_LEADER);
        KEY("running");
        BOOL(__atomic_load_n(&e->running, __ATOMIC_RELAXED));
        KEY("last_run_ms");
        if (st.last_run_ms)
            I64(st.last_run_ms);
        else
            NUL();
        KEY("next_run_ms");
        if (e->kind == SVC_CRON && !st.next_run_ms &&
            ck_pr_load_int(&app->state) == APP_NEW) {
            /* Not started: when it would run next (for listings). */
            int64_t n = cron_after((mph__svc_entry_t *)e, real(s));
            if (n != INT64_MAX)
                I64(n / 1000000);
            else
                NUL();
        } else if (e->kind != SVC_TASK && st.next_run_ms &&
                   !ck_pr_load_int(&s->stopped)) {
            I64(st.next_run_ms);
        } else {
            NUL();
        }
        KEY("runs");
        U64(st.runs);
        KEY("overruns");
        U64(st.overruns);
        KEY("errors");
        U64(st.errors);
        err = err ? err : mph_jsonw_object_end(w);
    }
    err = err ? err : mph_jsonw_array_end(w);
    err = err ? err : mph_jsonw_object_end(w);
#undef KEY
#undef STR
#undef I64
#undef U64
#undef BOOL
#undef NUL
    const char *text = NULL;
    size_t n = 0;
    char *out = NULL;
    if (!err && mph_jsonw_finish(w, &text, &n) == MPH_OK &&
        (out = malloc(n + 1))) {
        memcpy(out, text, n);
        out[n] = 0;
        *len = n;
    }
    mph_jsonw_destroy(w);
    return out;
}

mph_err_t mph_app_services_json(mph_app_t *app, char **json_out, size_t *len)
{
    if (!app || !json_out || !len)
        return MPH_ERR_INVALID;
    *json_out = mph__services_stats_json(app, len);
    if (*json_out)
        return MPH_OK;
    if (app->services)
        return MPH_ERR_NOMEM;
    static const char none[] = "{\"leader_election\":false,\"leader\":false,"
                               "\"leader_topic\":null,\"on_start_hooks\":0,"
                               "\"on_stop_hooks\":0,\"timers\":[]}";
    *json_out = strdup(none);
    *len = sizeof none - 1;
    return *json_out ? MPH_OK : MPH_ERR_NOMEM;
}

/* ------------------------------------------------------------------ */
/* /metrics                                                            */

#define SVC_MAX_METRIC_ENTRIES 256

void mph__services_metrics(const char *json, size_t len,
                           struct mph__promtext *pt)
{
    if (!json || !len)
        return;
    mph_json_parser_t *p = mph_json_parser_new(0, NULL, 0);
    if (!p)
        return;
    struct row {
        char name[128], kind[16];
        int64_t v[5];
        bool have[5];
    } *rows = calloc(SVC_MAX_METRIC_ENTRIES, sizeof *rows);
    size_t n = 0;
    bool leader = false, election = false;
    static const char *const keys[5] = {"runs", "overruns", "errors",
                                        "last_run_ms", "next_run_ms"};
    mph_json_val_t arr, v;
    if (rows && mph_json_parse(p, json, len, len) == MPH_OK) {
        mph_json_get_bool(p, MPH_JSON_ROOT, "leader_election", &election);
        mph_json_get_bool(p, MPH_JSON_ROOT, "leader", &leader);
        if (mph_json_get_array(p, MPH_JSON_ROOT, "timers", &arr) == MPH_OK) {
            while (n < SVC_MAX_METRIC_ENTRIES &&
                   mph_json_array_next(p, arr, &v) == MPH_OK) {
                struct row *r = &rows[n];
                const char *s;
                size_t sl;
                if (mph_json_get_str(p, v, "name", &s, &sl) == MPH_OK)
                    snprintf(r->name, sizeof r->name, "%.*s", (int)sl, s);
                if (mph_json_get_str(p, v, "kind", &s, &sl) == MPH_OK)
                    snprintf(r->kind, sizeof r->kind, "%.*s", (int)sl, s);
                for (int k = 0; k < 5; k++)
                    r->have[k] =
                        mph_json_get_i64(p, v, keys[k], &r->v[k]) == MPH_OK;
                n++;
            }
        }
    }
    if (election) {
        mph__promtext_header(
            pt, "mephisto_leader", MPH__PROM_GAUGE,
            "1 while this member is the group's leader (holds partition 0 of "
            "<app_id>-__leader).");
        mph__promtext_sample_u64(pt, "mephisto_leader", NULL, 0,
                                 leader ? 1 : 0);
    }
    static const struct {
        const char *name, *help;
        int key;
        bool seconds;
    } fam[] = {
        {"mephisto_service_runs_total",
         "Runs of a timer or crontab entry (a task: its returns).", 0, false},
        {"mephisto_service_overruns_total",
         "Scheduled runs that could not start on time (a run still going, or "
         "the process "
         "held up); not queued.",
         1, false},
        {"mephisto_service_errors_total", "Runs that returned an error.", 2,
         false},
        {"mephisto_service_last_run_timestamp_seconds",
         "When the last run started.", 3, true},
        {"mephisto_service_next_run_timestamp_seconds",
         "When the next run is due.", 4, true},
    };
    for (size_t f = 0; n && f < sizeof fam / sizeof fam[0]; f++) {
        mph__promtext_header(
            pt, fam[f].name,
            fam[f].seconds ? MPH__PROM_GAUGE : MPH__PROM_COUNTER, fam[f].help);
        for (size_t i = 0; i < n; i++) {
            if (!rows[i].have[fam[f].key])
                continue;
            mph__promtext_label_t l[2] = {{"service", rows[i].name},
                                          {"kind", rows[i].kind}};
            if (fam[f].seconds)
                mph__promtext_sample(pt, fam[f].name, l, 2,
                                     (double)rows[i].v[fam[f].key] / 1e3);
            else
                mph__promtext_sample_u64(pt, fam[f].name, l, 2,
                                         (uint64_t)rows[i].v[fam[f].key]);
        }
    }
    free(rows);
    mph_json_parser_destroy(p);
}

/*
 * heartbeat — app services without agents: a timer on the group's leader,
 * a crontab entry, a background task and start/stop hooks
 * (docs/services.md).
 *
 *   mephisto worker --app build/examples/libheartbeat.so
 *   mephisto timers --app build/examples/libheartbeat.so
 *
 * Run it in several processes: only the leader (the member assigned
 * partition 0 of `heartbeat-__leader`) sends heartbeats; kill it and
 * another member takes over once the group notices (session_timeout_ms).
 *
 * Settings (app settings, read with mph_app_get):
 *   heartbeat.topic         where heartbeats go (default "heartbeats";
 *                           created at start when missing)
 *   heartbeat.interval_ms   between heartbeats (default 1000)
 *   heartbeat.report_cron   when the report is logged (default "0 3 * * *")
 *   heartbeat.timezone      the report's time zone (default "Europe/Berlin")
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mephisto.h>

typedef struct beat {
    mph_topic_t *topic;
    long sent;     /* written by the timer's thread only */
    long reported; /* read by the crontab's thread: a rough figure is fine */
} beat_t;

static const char *setting(mph_app_t *app, const char *name, const char *dflt)
{
    const char *v = mph_app_get(app, name);
    return v && *v ? v : dflt;
}

/* Every interval, on the leader only, on the timer's own thread. */
static mph_err_t heartbeat(mph_app_t *app, void *opaque)
{
    beat_t *b = opaque;
    char value[128];
    int n = snprintf(value, sizeof value,
                     "{\"app\":\"%s\",\"ts\":%lld,\"seq\":%ld}",
                     mph_app_id(app), (long long)mph_clock_wall_ms(), b->sent);
    mph_err_t err = mph_send(app, b->topic, MPH_PARTITION_ANY, mph_app_id(app),
                             strlen(mph_app_id(app)), value, (size_t)n, NULL, 0,
                             NULL, NULL);
    if (err == MPH_OK)
        __atomic_store_n(&b->sent, b->sent + 1, __ATOMIC_RELAXED);
    return err; /* an error is counted in /stats and logged */
}

/* At the crontab's times, in its time zone, on every member. */
static mph_err_t report(mph_app_t *app, void *opaque)
{
    beat_t *b = opaque;
    mph_log(MPH_LOG_INFO,
            "heartbeat report: %ld sent by this member, leader now: %s",
            __atomic_load_n(&b->sent, __ATOMIC_RELAXED),
            mph_app_is_leader(app) ? "yes" : "no");
    return MPH_OK;
}

/* A background task: runs until the app stops, polling its stop flag. */
static mph_err_t watch(mph_app_t *app, mph_task_t *task, void *opaque)
{
    (void)app;
    beat_t *b = opaque;
    while (!mph_task_sleep(task, 60000))
        mph_log(MPH_LOG_DEBUG, "heartbeat: %ld sent so far",
                __atomic_load_n(&b->sent, __ATOMIC_RELAXED));
    return MPH_OK;
}

static mph_err_t started(mph_app_t *app, void *opaque)
{
    (void)opaque;
    mph_log(MPH_LOG_INFO, "heartbeat: app %s started", mph_app_id(app));
    return MPH_OK;
}

static mph_err_t stopping(mph_app_t *app, void *opaque)
{
    beat_t *b = opaque;
    mph_log(MPH_LOG_INFO, "heartbeat: app %s stops after %ld heartbeats",
            mph_app_id(app), __atomic_load_n(&b->sent, __ATOMIC_RELAXED));
    return MPH_OK;
}

static void leader_changed(mph_app_t *app, bool leader, void *opaque)
{
    (void)opaque;
    mph_log(MPH_LOG_INFO, "heartbeat: %s the leader of %s",
            leader ? "now" : "no longer", mph_app_id(app));
}

int mephisto_app_init(mph_app_t *app)
{
    beat_t *b = calloc(1, sizeof *b);
    if (!b || mph_app_keep(app, b, free) != MPH_OK) {
        free(b);
        return -1;
    }
    char err[512];
    mph_topic_opts_t *o = mph_topic_opts_new();
    if (!o ||
        mph_topic_opts_set(o, "create", "true", err, sizeof err) != MPH_OK) {
        mph_topic_opts_destroy(o);
        return -1;
    }
    b->topic = mph_topic_new(app, setting(app, "heartbeat.topic", "heartbeats"),
                             o, err, sizeof err);
    mph_topic_opts_destroy(o);
    if (!b->topic) {
        mph_log(MPH_LOG_ERROR, "heartbeat: %s", err);
        return -1;
    }
    long interval =
        strtol(setting(app, "heartbeat.interval_ms", "1000"), NULL, 10);
    if (mph_app_timer(app, "heartbeat", interval, heartbeat, b,
                      MPH_ON_LEADER) != MPH_OK ||
        mph_app_crontab(app, "report",
                        setting(app, "heartbeat.report_cron", "0 3 * * *"),
                        setting(app, "heartbeat.timezone", "Europe/Berlin"),
                        report, b, 0) != MPH_OK ||
        mph_app_task(app, "watch", watch, b) != MPH_OK ||
        mph_app_on_start(app, started, b) != MPH_OK ||
        mph_app_on_stop(app, stopping, b) != MPH_OK ||
        mph_app_on_leader_change(app, leader_changed, b) != MPH_OK)
        return -1; /* the reason is in the log */
    return 0;
}

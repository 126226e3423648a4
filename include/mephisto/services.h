/*
 * mephisto/services.h — app services: timers, crontab entries, background
 * tasks, start and stop hooks, and leader election (Faust's @app.timer,
 * @app.crontab, @app.task, on_leader=True, on_startup/on_shutdown).
 *
 * Everything here is declared before mph_app_start() (MPH_ERR_STATE after)
 * and runs off the event path, never on a worker thread:
 *
 *   services thread ("services")   start hooks, stop hooks, the leader-change
 *                                  callback
 *   one thread per timer/crontab   that entry's callback ("t:<name>"), so a
 *                                  slow callback delays only its own next run
 *   one thread per task            that task's function ("task:<name>")
 *
 * Order at start: the services thread starts once the app's workers and
 * coordinator run; it calls the start hooks in declaration order, then
 * starts every timer, crontab entry and task. An error from a start hook
 * stops the app (mph_app_stop() returns it). Order at stop: before the app
 * leaves its group or flushes its producer, tasks are asked to stop (their
 * stop flag) and joined, timers and crontab entries finish the run in
 * progress and end, then the stop hooks run in reverse declaration order.
 * Records sent with mph_send() from any of these callbacks (hooks included)
 * are flushed by the stop that follows, within shutdown_timeout_ms.
 *
 * Sends: use mph_send() (agent.h); mph_event_* functions are for agent
 * callbacks only. mph_send's delivery callback runs on the coordinator.
 * To stop the app from a callback use mph_app_request_stop(), never
 * mph_app_stop() (the stop waits for these threads).
 *
 * Leader election (Faust's rule): the member of the consumer group that is
 * assigned partition 0 of the single-partition topic `<app_id>-__leader` is
 * the leader. The topic is created at start when the app uses leader
 * election: it declares an MPH_ON_LEADER timer or crontab entry, or calls
 * mph_app_on_leader_change(). It is a membership token only: no records
 * are read from it and no worker ever owns it. Exactly one member of the
 * group holds it after each rebalance; a member that dies loses it when
 * its session times out (session_timeout_ms).
 */
#ifndef MEPHISTO_SERVICES_H
#define MEPHISTO_SERVICES_H

#include "mephisto/app.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Flags of mph_app_timer() and mph_app_crontab(). */
#define MPH_ON_LEADER 0x1 /* run only while this member is the group's leader  \
                           */

/* A timer or crontab callback. Return MPH_OK, or an error: it is counted
 * in the entry's `errors` (/stats) and logged; the entry keeps running.
 * @locality the entry's own services thread */
typedef mph_err_t(mph_timer_fn)(mph_app_t *app, void *opaque);

/* Runs fn every interval_ms (>= 1) on its own services thread, the first
 * time interval_ms after the app started. Runs keep to the grid start +
 * k * interval_ms (no drift); a run that lasts past the next tick delays
 * that next run (it starts as soon as this one returns), and every tick
 * that passed while the callback ran counts as an overrun: those ticks are
 * not queued (at most one late run follows). flags: 0 or MPH_ON_LEADER
 * (ticks while not the leader are skipped, not counted). name (copied)
 * identifies the entry in /stats and `mephisto timers`; it is unique
 * among timers, crontab entries and tasks. opaque is owned by the caller
 * and must outlive the app. Errors: MPH_ERR_INVALID (NULL app, name or
 * fn, interval_ms < 1, unknown flags), MPH_ERR_EXISTS (name taken),
 * MPH_ERR_STATE (after start), MPH_ERR_NOMEM; each refusal is also logged
 * at level error with its reason. */
MPH_EXPORT mph_err_t mph_app_timer(mph_app_t *app, const char *name,
                                   int64_t interval_ms, mph_timer_fn *fn,
                                   void *opaque, int flags);

/* Runs fn at the times a 5-field cron expression names ("m h dom mon dow":
 * lists 1,2; ranges 1-5; steps *\/15, 10-40/10, 5/20; names jan-dec and
 * sun-sat; day of week 0-7 with 0 and 7 Sunday; when both day fields are
 * restricted a day matching either runs, as in cron; shorthands @hourly,
 * @daily, @midnight, @weekly, @monthly, @yearly, @annually) in the IANA
 * time zone timezone (e.g. "Europe/Berlin"; NULL or "UTC" for UTC), read
 * from the system tz database. Across daylight-saving changes a local time
 * that happens twice runs once (at its first occurrence) and a local time
 * that never happens is skipped. A run still going at the next scheduled
 * time counts an overrun; the next run starts when it returns. flags: 0
 * or MPH_ON_LEADER. A bad expression or zone is refused here with
 * MPH_ERR_INVALID, and the reason, naming the field, is logged at level
 * error (e.g. "crontab 'report': minute: 60 is out of range 0-59");
 * mph_crontab_check() gives the same reason in a buffer. Other errors as
 * mph_app_timer(). */
MPH_EXPORT mph_err_t mph_app_crontab(mph_app_t *app, const char *name,
                                     const char *expr, const char *timezone,
                                     mph_timer_fn *fn, void *opaque, int flags);

/* Checks a cron expression and time zone as mph_app_crontab() does:
 * MPH_OK, or MPH_ERR_INVALID with errstr naming the field (or
 * "timezone") and the reason. @locality any */
MPH_EXPORT mph_err_t mph_crontab_check(const char *expr, const char *timezone,
                                       char *errstr, size_t errstr_size);

typedef struct mph_task mph_task_t;

/* A background task: started once, after the start hooks, on its own
 * thread; it runs until it returns or the app stops. It must poll
 * mph_task_stopping() (or sleep with mph_task_sleep()) and return soon
 * after the stop began: the app's stop waits for it (the stop's bound,
 * shutdown_timeout_ms, is not enforced on a task that never returns). Its
 * return value is counted in `errors` when not MPH_OK (the app goes on).
 * @locality the task's own thread */
typedef mph_err_t(mph_task_fn)(mph_app_t *app, mph_task_t *task, void *opaque);

/* Declares a task. Errors as mph_app_timer(). */
MPH_EXPORT mph_err_t mph_app_task(mph_app_t *app, const char *name,
                                  mph_task_fn *fn, void *opaque);

/* True once the app began stopping. @locality any (the task's thread) */
MPH_EXPORT bool mph_task_stopping(const mph_task_t *task);

/* Sleeps up to ms milliseconds, waking at once when the stop begins
 * (INT64_MAX: until the stop). Returns true if the app is stopping.
 * @locality the task's own thread */
MPH_EXPORT bool mph_task_sleep(mph_task_t *task, int64_t ms);

/* A start or stop hook. A start hook's error stops the app; a stop hook's
 * error is logged and returned by mph_app_stop() if nothing else failed
 * first. @locality the services thread */
typedef mph_err_t(mph_hook_fn)(mph_app_t *app, void *opaque);

/* Declares a start hook (run in declaration order) or a stop hook (run in
 * reverse declaration order). Errors: MPH_ERR_INVALID, MPH_ERR_STATE,
 * MPH_ERR_NOMEM. */
MPH_EXPORT mph_err_t mph_app_on_start(mph_app_t *app, mph_hook_fn *fn,
                                      void *opaque);
MPH_EXPORT mph_err_t mph_app_on_stop(mph_app_t *app, mph_hook_fn *fn,
                                     void *opaque);

/* Called when this member becomes the leader (leader true) or stops being
 * it (false), after the rebalance that decided it. fn may be NULL: leader
 * election then runs without a callback (for mph_app_is_leader()). One
 * callback per app. Errors: MPH_ERR_STATE (after start), MPH_ERR_EXISTS
 * (set twice). @locality the services thread */
typedef void(mph_leader_fn)(mph_app_t *app, bool leader, void *opaque);
MPH_EXPORT mph_err_t mph_app_on_leader_change(mph_app_t *app, mph_leader_fn *fn,
                                              void *opaque);

/* True while this member holds partition 0 of `<app_id>-__leader`; always
 * false when the app uses no leader election. @locality any */
MPH_EXPORT bool mph_app_is_leader(const mph_app_t *app);

/* Before start, enabled=false keeps every service of the app from running:
 * no hook, timer, crontab entry or task runs and no leader election takes
 * place (they stay declared and are listed). For tools that start an app
 * only to look at it (`mephisto agents`). Errors: MPH_ERR_INVALID,
 * MPH_ERR_STATE (after start), MPH_ERR_NOMEM. @locality controlling */
MPH_EXPORT mph_err_t mph_app_services_enable(mph_app_t *app, bool enabled);

/* The app's services as the JSON object /stats shows under "services":
 * leader_election, leader, leader_topic, on_start_hooks, on_stop_hooks and
 * "timers", one object per timer, crontab entry and task in declaration
 * order (name, kind "timer"|"crontab"|"task", schedule, interval_ms,
 * timezone, on_leader, running, last_run_ms, next_run_ms (wall clock, ms
 * since the epoch, null when none), runs, overruns, errors). Works before
 * start too (what `mephisto timers` lists): runs are 0 and a crontab
 * entry's next_run_ms is its next time from now. *json_out is malloc'd
 * (free() it). Errors: MPH_ERR_INVALID, MPH_ERR_NOMEM. @locality any */
MPH_EXPORT mph_err_t mph_app_services_json(mph_app_t *app, char **json_out,
                                           size_t *len);

#ifdef __cplusplus
}
#endif
#endif

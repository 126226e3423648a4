/*
 * App services (timers, crontab, tasks, hooks, leader election): the
 * runtime side of include/mephisto/services.h. See services.c.
 *
 * Threads: declarations on the controlling thread before start; the
 * services thread and one thread per entry after start; the coordinator
 * reports leadership (mph__services_rebalance); any thread reads stats.
 */
#ifndef MPH_RUNTIME_SERVICES_H
#define MPH_RUNTIME_SERVICES_H

#include <librdkafka/rdkafka.h>

#include "mephisto/services.h"

typedef struct mph__services mph__services_t;
typedef struct mph__svc_entry mph__svc_entry_t;

/* The clocks the services read; injectable for tests. mono_ns schedules
 * timers, real_ns schedules crontab entries and stamps last/next runs. */
typedef struct mph__svc_clock {
    int64_t (*mono_ns)(void *opaque);
    int64_t (*real_ns)(void *opaque);
    void *opaque;
} mph__svc_clock_t;

/* Replaces the clocks (before start). @locality controlling thread */
void mph__services_set_clock(mph_app_t *app, const mph__svc_clock_t *clock);

/* Whether the app uses leader election (see services.h). */
bool mph__services_leader_enabled(const mph_app_t *app);
/* `<app_id>-__leader`, or NULL without leader election. Borrowed. */
const char *mph__services_leader_topic(const mph_app_t *app);

/* Creates the leader topic when the app uses leader election. Called by
 * mph_app_start before the coordinator subscribes. @locality controlling */
mph_err_t mph__services_prepare(mph_app_t *app, char *errstr,
                                size_t errstr_size);

/* Starts the services thread (a no-op when nothing is declared).
 * @locality controlling thread */
mph_err_t mph__services_start(mph_app_t *app, char *errstr, size_t errstr_size);

/* Stops tasks and timers, runs the stop hooks and joins every services
 * thread. Idempotent. Called by the coordinator before it leaves the
 * group, and by the app's teardown. @locality coordinator or controlling */
void mph__services_stop(mph_app_t *app);

/* Frees the registry. @locality controlling thread, after stop */
void mph__services_free(mph_app_t *app);

/* Rebalance hook: when parts holds the leader partition, records the
 * leadership change (assigned true: leader; false: not) and returns a copy
 * of parts without it (the caller destroys it), which is what workers and
 * the consumer's fetch assignment get; else NULL (use parts as is).
 * @locality coordinator (rebalance callback) */
rd_kafka_topic_partition_list_t *
mph__services_rebalance(mph_app_t *app, rd_kafka_topic_partition_list_t *parts,
                        bool assigned);

/* The "services" member of /stats: a JSON object (malloc'd, *len bytes),
 * or NULL without services. @locality any */
char *mph__services_stats_json(mph_app_t *app, size_t *len);

/* The services' Prometheus families from the "services" JSON of a stats
 * snapshot (json may be NULL: nothing is written): mephisto_leader,
 * mephisto_service_runs_total, _overruns_total, _errors_total (labels
 * service, kind), mephisto_service_last_run_timestamp_seconds and
 * mephisto_service_next_run_timestamp_seconds. @locality any */
struct mph__promtext;
void mph__services_metrics(const char *json, size_t len,
                           struct mph__promtext *pt);

/* ---- for tests: one entry's schedule, driven by hand ---- */

/* The entry called name, or NULL. @locality any */
mph__svc_entry_t *mph__services_find(mph_app_t *app, const char *name);
/* Schedules the entry's first run from now (mono ns for timers, real ns
 * for crontab entries), as start does. */
void mph__svc_arm(mph__svc_entry_t *e, int64_t now_ns);
/* Runs the entry if it is due at now_ns and returns when it is due next
 * (same clock). The entry thread's loop body. @locality the entry's thread */
int64_t mph__svc_tick(mph__svc_entry_t *e, int64_t now_ns);

typedef struct mph__svc_stats {
    uint64_t runs, overruns, errors;
    int64_t last_run_ms; /* wall clock; 0: never */
    int64_t next_run_ms; /* wall clock; 0: none */
} mph__svc_stats_t;
void mph__svc_stats(const mph__svc_entry_t *e, mph__svc_stats_t *out);

#endif

/*
 * Sensors: per-worker counters and latency histograms (Faust's Monitor).
 *
 * Each worker owns one mph__monitor_t and is its only writer; the recorders
 * below are inline and write with ck_pr stores so any thread (web, CLI
 * snapshot, tests) may read them with ck_pr loads at any time. Readers merge
 * the workers' monitors on read (monitor.c); nothing is shared or locked on
 * the event path.
 *
 * Per-partition entries are indexed [topic][partition] for every declared
 * topic (sized from the partition counts resolved at start).
 */
#ifndef MPH_RUNTIME_MONITOR_H
#define MPH_RUNTIME_MONITOR_H

#include <ck_pr.h>

#include "runtime/app.h"
#include "runtime/histogram.h"

typedef struct mph__part_stats {
    uint64_t events;       /* records processed */
    int64_t read_offset;   /* last offset processed, -1 none */
    int64_t commit_point;  /* commit point reported by the worker, -1 none */
    uint64_t owned;        /* 1 while this worker owns the partition */
} mph__part_stats_t;

typedef struct mph__monitor {
    int worker;
    size_t ntopics, nagents, ntables;
    uint64_t events_in;
    uint64_t events_failed;   /* an agent returned an error */
    uint64_t sends;           /* records handed to the producer */
    uint64_t sends_acked;
    uint64_t send_errors;     /* permanent delivery failures */
    uint64_t send_retries;
    uint64_t dead_lettered;
    uint64_t skipped;         /* decode errors under on_decode_error=skip */
    uint64_t pauses;          /* back-pressure pauses */
    uint64_t partitions;      /* partitions owned now */
    uint64_t *topic_in;       /* [ntopics] */
    uint64_t *topic_out;      /* [ntopics] records sent to the topic */
    uint64_t *agent_events;   /* [nagents] */
    uint64_t *agent_errors;   /* [nagents] */
    uint64_t (*table_ops)[4]; /* [ntables][get, set, delete, miss] */
    mph__part_stats_t **parts;    /* [ntopics][partitions] */
    mph__histogram_t processing;  /* ns from dequeue to the last agent's return */
    mph__histogram_t send_latency;/* ns from produce to broker ack */
} mph__monitor_t;

/* Allocates a monitor sized for app's registry (after topics resolved their
 * partition counts). NULL when out of memory. */
mph__monitor_t *mph__monitor_new(const mph_app_t *app, int worker, size_t ntables);
void mph__monitor_destroy(mph__monitor_t *m);

static inline void mph__mon_add(uint64_t *c, uint64_t by)
{
    ck_pr_store_64(c, ck_pr_load_64(c) + by);
}

/* @locality worker (the monitor's owner) for every recorder below */
static inline void mph__monitor_event(mph__monitor_t *m, int topic, int32_t partition,
                                      int64_t offset, uint64_t latency_ns)
{
    mph__mon_add(&m->events_in, 1);
    mph__mon_add(&m->topic_in[topic], 1);
    mph__part_stats_t *p = &m->parts[topic][partition];
    mph__mon_add(&p->events, 1);
    ck_pr_store_64((uint64_t *)&p->read_offset, (uint64_t)offset);
    mph__histogram_record(&m->processing, latency_ns);
}

static inline void mph__monitor_agent(mph__monitor_t *m, int agent, bool failed)
{
    mph__mon_add(&m->agent_events[agent], 1);
    if (failed) {
        mph__mon_add(&m->agent_errors[agent], 1);
        mph__mon_add(&m->events_failed, 1);
    }
}

static inline void mph__monitor_send(mph__monitor_t *m, int topic)
{
    mph__mon_add(&m->sends, 1);
    if (topic >= 0)
        mph__mon_add(&m->topic_out[topic], 1);
}

static inline void mph__monitor_ack(mph__monitor_t *m, uint64_t latency_ns)
{
    mph__mon_add(&m->sends_acked, 1);
    mph__histogram_record(&m->send_latency, latency_ns);
}

static inline void mph__monitor_partition(mph__monitor_t *m, int topic, int32_t partition,
                                          bool owned)
{
    mph__part_stats_t *p = &m->parts[topic][partition];
    ck_pr_store_64(&p->owned, owned ? 1 : 0);
    if (owned)
        ck_pr_store_64((uint64_t *)&p->commit_point, (uint64_t)-1);
}

static inline void mph__monitor_commit_point(mph__monitor_t *m, int topic, int32_t partition,
                                             int64_t commit)
{
    ck_pr_store_64((uint64_t *)&m->parts[topic][partition].commit_point, (uint64_t)commit);
}

#endif

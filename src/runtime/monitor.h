/*
 * Sensors: per-worker counters and latency histograms (Faust's Monitor),
 * user sensor dispatch, and the stats snapshot readers take.
 *
 * DESIGN. Each worker owns one mph__monitor_t and is its only writer; the
 * recorders below are inline and write with ck_pr stores so any thread
 * (web, mph_app_stats_json, tests) may read them with ck_pr loads at any
 * time. Readers merge the workers' monitors on read (mph__stats_collect in
 * monitor.c); nothing is shared or locked on the event path. A reader's
 * picture is not atomic across counters: each counter is exact as of some
 * moment of the read (the histogram rule of histogram.h, applied to every
 * field).
 *
 * User sensors (mephisto/sensor.h) are dispatched from the same recorders.
 * The monitor holds a pointer to the app's frozen sensor set, NULL when no
 * sensor was registered, and a mask of the hooks any of them has, so a
 * recorder whose hook no sensor has (an app without sensors, or with one
 * that only watches sends) pays one predictable, never-taken branch; the
 * dispatch itself is out of line.
 *
 * Per-partition entries are indexed [topic][partition] for every declared
 * topic (sized from the partition counts resolved at start).
 *
 * The reader side keeps, per monitor, the last samples of its event count
 * so that events/s can be computed from two reads; that state belongs to
 * readers only (under its own lock), the worker never touches it.
 */
#ifndef MPH_RUNTIME_MONITOR_H
#define MPH_RUNTIME_MONITOR_H

#include "mephisto/join.h"
#include "mephisto/window.h"
#include <ck_pr.h>

#include "runtime/app.h"
#include "runtime/coordinator.h"
#include "runtime/histogram.h"

typedef struct mph__part_stats {
    uint64_t events;      /* records processed */
    int64_t read_offset;  /* last offset processed, -1 none */
    int64_t commit_point; /* commit point reported by the worker, -1 none */
    uint64_t owned;       /* 1 while this worker owns the partition */
} mph__part_stats_t;

/* The frozen list of an app's user sensors (monitor.c). */
typedef struct mph__sensor_set mph__sensor_set_t;

/* Reader-side sampling state for rates (monitor.c). */
typedef struct mph__monitor_reader mph__monitor_reader_t;

/* Table operations counted per table, in this order. */
enum mph__table_op {
    MPH__TABLE_GET = 0,
    MPH__TABLE_SET,
    MPH__TABLE_DELETE,
    MPH__TABLE_MISS,
    MPH__TABLE_OPS
};

/* Bits of mph__monitor_t.sensor_hooks: the recorder hooks some user sensor
 * has. */
enum {
    MPH__HOOK_EVENT = 1u << 0,
    MPH__HOOK_AGENT = 1u << 1,
    MPH__HOOK_SEND = 1u << 2,
    MPH__HOOK_SEND_COMPLETED = 1u << 3,
    MPH__HOOK_SEND_ERROR = 1u << 4,
    MPH__HOOK_PARTITION = 1u << 5,
};

typedef struct mph__monitor {
    int worker;
    const mph_app_t *app;             /* names for sensors; borrowed */
    const mph__sensor_set_t *sensors; /* NULL: no user sensor registered */
    unsigned sensor_hooks;            /* MPH__HOOK_* of the sensors; 0 without */
    int64_t started_ns;               /* mph_clock_mono_ns() at creation */
    size_t ntopics, nagents, ntables;
    uint64_t events_in;
    uint64_t events_failed; /* an agent returned an error */
    uint64_t sends;         /* records handed to the producer */
    uint64_t sends_acked;
    uint64_t send_errors; /* permanent delivery failures */
    uint64_t send_retries;
    uint64_t dead_lettered;
    uint64_t skipped;       /* decode errors under on_decode_error=skip */
    uint64_t send_dead_lettered;   /* unsendable outputs, on_send_error=dead_letter */
    uint64_t send_skipped;         /* unsendable outputs, on_send_error=skip */
    uint64_t send_resent_inflight; /* re-sent after a purge while in flight */
    uint64_t producer_queued;      /* gauge: records in the producer, per drain */
    uint64_t pauses;        /* back-pressure pauses */
    uint64_t partitions;    /* partitions owned now */
    uint64_t txn_committed; /* exactly_once: transactions committed */
    uint64_t txn_aborted;   /* exactly_once: transactions aborted */
    uint64_t producer_fenced; /* exactly_once: 1 once a newer process fenced it */
    uint64_t producer_replaced; /* exactly_once: replaced after a fatal error */
    uint64_t *topic_in;     /* [ntopics] */
    uint64_t *topic_out;    /* [ntopics] records sent to the topic */
    uint64_t *agent_events; /* [nagents] */
    uint64_t *agent_errors; /* [nagents] */
    uint64_t (*table_ops)[MPH__TABLE_OPS]; /* [ntables][enum mph__table_op] */
    mph__part_stats_t **parts;             /* [ntopics][partitions] */
    mph__histogram_t
        processing; /* ns from dequeue to the last agent's return */
    mph__histogram_t send_latency; /* ns from produce to broker ack */
    mph__histogram_t txn_commit;   /* ns of a transaction's commit (exactly_once) */
    mph__monitor_reader_t *reader; /* readers only; see the DESIGN note */
} mph__monitor_t;

/* Allocates a monitor sized for app's registry (after topics resolved their
 * partition counts) and attaches the app's user sensors (registration is
 * closed from then on). NULL when out of memory. @locality controlling */
mph__monitor_t *mph__monitor_new(const mph_app_t *app, int worker,
                                 size_t ntables);
void mph__monitor_destroy(mph__monitor_t *m);

/* ---- user sensor dispatch (out of line; only when m->sensors) ---------- */

void mph__sensors_event(const mph__monitor_t *m, int topic, int32_t partition,
                        int64_t offset, uint64_t latency_ns);
void mph__sensors_agent(const mph__monitor_t *m, int agent, bool failed);
void mph__sensors_send(const mph__monitor_t *m, int topic);
void mph__sensors_send_completed(const mph__monitor_t *m, uint64_t latency_ns);
void mph__sensors_send_error(const mph__monitor_t *m, const char *topic,
                             int32_t partition, mph_err_t err, bool retrying);
void mph__sensors_partition(const mph__monitor_t *m, int topic,
                            int32_t partition, bool assigned);

/* Coordinator-side hooks: the coordinator calls these itself (the commit
 * and rebalance are recorded in its own stats). No-ops when app has no
 * sensor. @locality coordinator */
void mph__sensors_commit(const mph_app_t *app, mph_err_t err,
                         uint64_t latency_us);
void mph__sensors_rebalance(const mph_app_t *app, bool assigned,
                            int partitions);

/* ---- recorders: @locality worker (the monitor's owner) ----------------- */

#define MPH__MON_UNLIKELY(x) __builtin_expect(!!(x), 0)

static inline void mph__mon_add(uint64_t *c, uint64_t by)
{
    ck_pr_store_64(c, ck_pr_load_64(c) + by);
}

static inline void mph__monitor_event(mph__monitor_t *m, int topic,
                                      int32_t partition, int64_t offset,
                                      uint64_t latency_ns)
{
    mph__mon_add(&m->events_in, 1);
    mph__mon_add(&m->topic_in[topic], 1);
    mph__part_stats_t *p = &m->parts[topic][partition];
    mph__mon_add(&p->events, 1);
    ck_pr_store_64((uint64_t *)&p->read_offset, (uint64_t)offset);
    mph__histogram_record(&m->processing, latency_ns);
    if (MPH__MON_UNLIKELY(m->sensor_hooks & MPH__HOOK_EVENT))
        mph__sensors_event(m, topic, partition, offset, latency_ns);
}

static inline void mph__monitor_agent(mph__monitor_t *m, int agent, bool failed)
{
    mph__mon_add(&m->agent_events[agent], 1);
    if (failed) {
        mph__mon_add(&m->agent_errors[agent], 1);
        mph__mon_add(&m->events_failed, 1);
    }
    if (MPH__MON_UNLIKELY(m->sensor_hooks & MPH__HOOK_AGENT))
        mph__sensors_agent(m, agent, failed);
}

static inline void mph__monitor_send(mph__monitor_t *m, int topic)
{
    mph__mon_add(&m->sends, 1);
    if (topic >= 0)
        mph__mon_add(&m->topic_out[topic], 1);
    if (MPH__MON_UNLIKELY(m->sensor_hooks & MPH__HOOK_SEND))
        mph__sensors_send(m, topic);
}

static inline void mph__monitor_ack(mph__monitor_t *m, uint64_t latency_ns)
{
    mph__mon_add(&m->sends_acked, 1);
    mph__histogram_record(&m->send_latency, latency_ns);
    if (MPH__MON_UNLIKELY(m->sensor_hooks & MPH__HOOK_SEND_COMPLETED))
        mph__sensors_send_completed(m, latency_ns);
}

/* A delivery failed and the record is being sent again. topic is the
 * topic's name (borrowed for the call). */
static inline void mph__monitor_send_retry(mph__monitor_t *m, const char *topic,
                                           int32_t partition, mph_err_t err)
{
    mph__mon_add(&m->send_retries, 1);
    if (MPH__MON_UNLIKELY(m->sensor_hooks & MPH__HOOK_SEND_ERROR))
        mph__sensors_send_error(m, topic, partition, err, true);
}

/* A delivery failed permanently. */
static inline void mph__monitor_send_error(mph__monitor_t *m, const char *topic,
                                           int32_t partition, mph_err_t err)
{
    mph__mon_add(&m->send_errors, 1);
    if (MPH__MON_UNLIKELY(m->sensor_hooks & MPH__HOOK_SEND_ERROR))
        mph__sensors_send_error(m, topic, partition, err, false);
}

/* A record that failed to decode went to the dead-letter topic, or was
 * skipped (on_decode_error=skip). */
static inline void mph__monitor_dead_lettered(mph__monitor_t *m)
{
    mph__mon_add(&m->dead_lettered, 1);
}

static inline void mph__monitor_skipped(mph__monitor_t *m)
{
    mph__mon_add(&m->skipped, 1);
}

/* One table operation on table index table (enum mph__table_op). */
static inline void mph__monitor_table(mph__monitor_t *m, size_t table,
                                      enum mph__table_op op)
{
    mph__mon_add(&m->table_ops[table][op], 1);
}

static inline void mph__monitor_partition(mph__monitor_t *m, int topic,
                                          int32_t partition, bool owned)
{
    mph__part_stats_t *p = &m->parts[topic][partition];
    ck_pr_store_64(&p->owned, owned ? 1 : 0);
    if (owned)
        ck_pr_store_64((uint64_t *)&p->commit_point, (uint64_t)-1);
    if (MPH__MON_UNLIKELY(m->sensor_hooks & MPH__HOOK_PARTITION))
        mph__sensors_partition(m, topic, partition, owned);
}

static inline void mph__monitor_commit_point(mph__monitor_t *m, int topic,
                                             int32_t partition, int64_t commit)
{
    ck_pr_store_64((uint64_t *)&m->parts[topic][partition].commit_point,
                   (uint64_t)commit);
}

/* ---- reading: the stats snapshot --------------------------------------- */

/* Fixed upper bounds (ns) of the latency buckets exported to Prometheus, so
 * that every scrape has the same `le` set; a last +Inf bucket follows. */
#define MPH__STATS_LE_COUNT 22
extern const uint64_t mph__stats_le_ns[MPH__STATS_LE_COUNT];

typedef struct mph__stats_latency {
    uint64_t count;
    uint64_t sum_ns;
    uint64_t max_ns;
    uint64_t p50_ns, p99_ns, p999_ns;
    double mean_ns;
    /* le_counts[i]: values in (le[i-1], le[i]] (not cumulative); the last
     * entry counts the values above the last bound. A value's bucket is
     * decided by the upper bound of its histogram bucket, so a value equal
     * to a bound or up to 1/64 above it may count in the next one; no value
     * is ever counted under a bound it exceeds. */
    uint64_t le_counts[MPH__STATS_LE_COUNT + 1];
} mph__stats_latency_t;

/* Counters of one worker, or the sum over workers (the totals). */
typedef struct mph__stats_worker {
    int worker; /* -1 for the totals */
    uint64_t events_in, events_failed;
    uint64_t sends, sends_acked, send_errors, send_retries;
    uint64_t dead_lettered, skipped, pauses, partitions;
    uint64_t send_dead_lettered, send_skipped, send_resent_inflight;
    uint64_t txn_committed, txn_aborted, producer_fenced, producer_replaced;
    uint64_t producer_queued, producer_buffer_max_bytes; /* totals: sums */
    double events_per_s;     /* since the previous sample (see monitor.c) */
    double events_per_s_avg; /* since the monitor started */
    uint64_t *topic_in, *topic_out;        /* [stats.ntopics] */
    uint64_t *agent_events, *agent_errors; /* [stats.nagents] */
    uint64_t (*table_ops)[MPH__TABLE_OPS]; /* [stats.ntables] */
    mph__stats_latency_t processing, send_latency, txn_commit;
} mph__stats_worker_t;

typedef struct mph__stats_part {
    int32_t partition;
    int worker; /* the worker of this process that owns it, -1 none */
    uint64_t events;
    int64_t read_offset;  /* -1 none */
    int64_t commit_point; /* -1 none */
    int64_t low_offset;   /* -1 unknown */
    int64_t end_offset;   /* high watermark (cached), -1 unknown */
    int64_t lag;          /* end_offset - (read_offset + 1), -1 unknown */
} mph__stats_part_t;

typedef struct mph__stats_topic {
    const char *name; /* borrowed from the app */
    bool source;      /* an agent subscribes to it */
    int partitions;
    uint64_t events_in, events_out;
    mph__stats_part_t *parts; /* [nparts]: every partition of a source */
    size_t nparts;
} mph__stats_topic_t;

typedef struct mph__stats_agent {
    const char *name; /* borrowed from the app */
    uint64_t events, errors;
    const mph_agent_t *agent; /* punctuators and batches (punctuate.c); borrowed */
    int nworkers;
} mph__stats_agent_t;

/* Table counters summed over workers, by table index (declaration order). */
typedef struct mph__stats_table {
    size_t index;
    const char *name; /* borrowed from the app; NULL if it has no such table */
    uint64_t ops[MPH__TABLE_OPS];
    bool windowed;    /* window[] holds mph_window_stat() of each counter */
    int64_t window[MPH_WINDOW_STAT__COUNT];
} mph__stats_table_t;

/* The names of the join counters in /stats and /metrics, by
 * mph_join_stat_t. */
extern const char *const mph__join_stat_names[MPH_JOIN_STAT__COUNT];

/* The names of the window counters in /stats and /metrics, by
 * mph_window_stat_t. */
extern const char *const mph__window_stat_names[MPH_WINDOW_STAT__COUNT];

/* Changelog recovery (runtime/table.c records it on the app). */
typedef struct mph__stats_recovery {
    uint64_t recoveries;       /* hand-overs that recovered table shards */
    uint64_t records_restored; /* changelog records applied by the last one */
    uint64_t records_total;    /* records it had to apply (to the ends) */
    /* The shards restoring now (coordinator.c, restore.c): how many, and
     * the first MPH__STATS_RESTORING of them. */
    size_t nrestoring;
#define MPH__STATS_RESTORING 64
    mph__restore_stat_t restoring[MPH__STATS_RESTORING];
    /* The standby replicas held here (standby.c): how many, and the first
     * MPH__STATS_RESTORING of them. */
    size_t nstandbys;
    mph__restore_stat_t standbys[MPH__STATS_RESTORING];
} mph__stats_recovery_t;

typedef struct mph__stats {
    const char *app_id; /* borrowed from the app */
    int64_t wall_ms;    /* when the snapshot was taken */
    int64_t mono_ns;
    double uptime_s;
    bool running, ready;
    size_t nworkers;
    mph__stats_worker_t *workers; /* [nworkers] */
    mph__stats_worker_t totals;
    size_t ntopics;
    mph__stats_topic_t *topics; /* [ntopics], declaration order */
    size_t nagents;
    mph__stats_agent_t *agents; /* [nagents] */
    size_t ntables;
    mph__stats_table_t *tables; /* [ntables] */
    mph__stats_recovery_t recovery;
    bool have_coord;
    mph__coord_stats_t coord; /* commits, commit errors, rebalances */
    /* The "services" object (services.c): timers, crontab, tasks, leader;
     * malloc'd JSON, NULL when the app declares no services. */
    char *services_json;
    size_t services_len;
    /* Agent RPC counters (rpc.c), in the order of mph__stats_rpc_names;
     * have_rpc false when rpc is off. */
    bool have_rpc;
    uint64_t rpc[7];
    /* Joins in declaration order: name (borrowed from the app) and
     * counters (mph_join_stat_t; names in mph__join_stat_names). */
    size_t njoins;
    struct mph__stats_join {
        const char *name;
        uint64_t v[MPH_JOIN_STAT__COUNT];
    } *joins;
    /* Global tables: name (borrowed from the app), keys, bootstrapped. */
    size_t nglobals;
    struct mph__stats_global {
        const char *name;
        uint64_t keys;
        bool ready;
    } *globals;
} mph__stats_t;

/* Fills st (zero it first, or reuse after fini) from nmons monitors of app.
 * consumer (may be NULL) gives the cached watermarks; coord (may be NULL)
 * the commit statistics. now_ns is the mono clock of the snapshot (tests
 * pass their own). The monitors may be recorded into meanwhile.
 * Errors: MPH_ERR_NOMEM (st is then empty). @locality any reader */
mph_err_t mph__stats_collect(mph__stats_t *st, const mph_app_t *app,
                             mph__monitor_t *const *mons, size_t nmons,
                             rd_kafka_t *consumer, const mph__coord_t *coord,
                             int64_t now_ns);

/* mph__stats_collect over a running app's workers, consumer and
 * coordinator. MPH_ERR_STATE when the app is not running.
 * @locality any, while the app runs (not concurrently with its stop) */
mph_err_t mph__stats_take(mph__stats_t *st, mph_app_t *app);

/* Frees what collect allocated; st is empty afterwards. */
void mph__stats_fini(mph__stats_t *st);

/* Renders st as the /stats JSON document: a malloc'd NUL-terminated string
 * in *out (free() it) and its length. Errors: MPH_ERR_NOMEM. */
mph_err_t mph__stats_json(const mph__stats_t *st, char **out, size_t *len);

#endif

/*
 * Sensors: the per-worker monitors (allocation), user sensors (registration
 * and dispatch) and the reading side (the merged stats snapshot and its
 * JSON document). See monitor.h for the recording side and its thread rule.
 *
 * DESIGN.
 *
 * Reading. mph__stats_collect() loads every counter of every monitor with
 * ck_pr loads and copies each histogram with mph__histogram_snapshot(), so
 * a reader never takes a lock a worker could wait on and never writes
 * anything a worker reads. Totals are sums; the processing and send latency
 * percentiles of the totals come from the merged copies. A partition's
 * read offset and commit point come from the worker that owns it now (the
 * highest seen over all workers when none does), its end offset from
 * librdkafka's cached watermarks (rd_kafka_get_watermark_offsets: no
 * request, no wait), its lag is end - position where the position is the
 * offset after the last processed one, else the commit point.
 *
 * Rates. Each monitor has a small reader-side state (its own lock, never
 * touched by the worker): the last two samples of its event count, at
 * least one second apart. events/s is the difference to the older sample
 * divided by the time between, so a dashboard polling every second sees
 * the rate of the last one to two seconds and a scraper polling every
 * minute sees the rate of the last minute; before two samples exist it is
 * the average since the monitor started.
 *
 * User sensors. mph_app_add_sensor() keeps the app's registrations in an
 * object handed to the app with mph_app_keep() (freed with the app, found
 * again by its free function). The first monitor created at start freezes
 * the list into an immutable set every monitor points to, so workers read
 * it without locks; the coordinator hooks reach it through worker 0's
 * monitor, which outlives the coordinator's callbacks.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mephisto/global.h"
#include "mephisto/jsonw.h"
#include "mephisto/log.h"
#include "mephisto/rpc.h"
#include "mephisto/sensor.h"
#include "runtime/join.h"
#include "runtime/monitor.h"
#include "runtime/services.h"
#include "runtime/punctuate.h"
#include "runtime/table.h"
#include "runtime/worker.h"

const char *const mph__join_stat_names[MPH_JOIN_STAT__COUNT] = {
    [MPH_JOIN_STAT_LATE] = "late",
    [MPH_JOIN_STAT_INVALID] = "invalid",
    [MPH_JOIN_STAT_PAIRS] = "pairs",
    [MPH_JOIN_STAT_UNMATCHED] = "unmatched",
};

const char *const mph__window_stat_names[MPH_WINDOW_STAT__COUNT] = {
    [MPH_WINDOW_STAT_LATE_EVENTS] = "late_events",
    [MPH_WINDOW_STAT_LATE_WRITES] = "late_writes",
    [MPH_WINDOW_STAT_INVALID_TIME] = "invalid_time",
    [MPH_WINDOW_STAT_FUTURE_TIME] = "future_time",
    [MPH_WINDOW_STAT_CLOSED] = "closed",
    [MPH_WINDOW_STAT_CLOSE_CALLS] = "close_calls",
    [MPH_WINDOW_STAT_CLOSE_ERRORS] = "close_errors",
    [MPH_WINDOW_STAT_EXPIRED] = "expired",
    [MPH_WINDOW_STAT_EXPIRED_KEYS] = "expired_keys",
    [MPH_WINDOW_STAT_LIVE_WINDOWS] = "live_windows",
    [MPH_WINDOW_STAT_LIVE_PAIRS] = "live_pairs",
};

/* ------------------------------------------------------------------ */
/* user sensors                                                        */

struct mph_sensor {
    void *opaque;
    mph_sensor_event_fn *on_event;
    mph_sensor_agent_fn *on_agent;
    mph_sensor_send_fn *on_send;
    mph_sensor_send_completed_fn *on_send_completed;
    mph_sensor_send_error_fn *on_send_error;
    mph_sensor_partition_fn *on_partition;
    mph_sensor_commit_fn *on_commit;
    mph_sensor_rebalance_fn *on_rebalance;
    int added; /* apps it was added to (ck_pr); setters refuse once > 0 */
};

struct mph__sensor_set {
    size_t n;
    const mph_sensor_t *s[]; /* registration order */
};

/* An app's registrations, handed to the app with mph_app_keep() so that
 * they are freed with it; found again by their free function. */
typedef struct sensor_reg {
    mph_sensor_t **list;
    size_t n, cap;
    mph__sensor_set_t *set; /* frozen at start; NULL before */
} sensor_reg_t;

static void sensor_reg_free(void *ptr)
{
    sensor_reg_t *r = ptr;
    free(r->list);
    free(r->set);
    free(r);
}

/* @locality controlling (app->kept changes only there) */
static sensor_reg_t *reg_find(const mph_app_t *app)
{
    for (size_t i = 0; i < app->nkept; i++)
        if (app->kept[i].free_fn == sensor_reg_free)
            return app->kept[i].ptr;
    return NULL;
}

mph_sensor_t *mph_sensor_new(void *opaque, char *errstr, size_t errstr_size)
{
    mph_sensor_t *s = calloc(1, sizeof *s);
    if (!s) {
        if (errstr && errstr_size)
            snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    s->opaque = opaque;
    return s;
}

void mph_sensor_destroy(mph_sensor_t *sensor)
{
    free(sensor);
}

static mph_err_t setter_check(const mph_sensor_t *s)
{
    if (!s)
        return MPH_ERR_INVALID;
    if (ck_pr_load_int((int *)&s->added) > 0)
        return MPH_ERR_STATE;
    return MPH_OK;
}

#define SENSOR_SETTER(hook, type)                                              \
    mph_err_t mph_sensor_##hook(mph_sensor_t *sensor, type *fn)                \
    {                                                                          \
        mph_err_t err = setter_check(sensor);                                  \
        if (err == MPH_OK)                                                     \
            sensor->hook = fn;                                                 \
        return err;                                                            \
    }

SENSOR_SETTER(on_event, mph_sensor_event_fn)
SENSOR_SETTER(on_agent, mph_sensor_agent_fn)
SENSOR_SETTER(on_send, mph_sensor_send_fn)
SENSOR_SETTER(on_send_completed, mph_sensor_send_completed_fn)
SENSOR_SETTER(on_send_error, mph_sensor_send_error_fn)
SENSOR_SETTER(on_partition, mph_sensor_partition_fn)
SENSOR_SETTER(on_commit, mph_sensor_commit_fn)
SENSOR_SETTER(on_rebalance, mph_sensor_rebalance_fn)

mph_err_t mph_app_add_sensor(mph_app_t *app, mph_sensor_t *sensor)
{
    if (!app || !sensor)
        return MPH_ERR_INVALID;
    if (ck_pr_load_int(&app->state) != APP_NEW)
        return MPH_ERR_STATE;
    sensor_reg_t *r = reg_find(app);
    if (r && r->set)
        return MPH_ERR_STATE; /* frozen by a start (even a failed one) */
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MPH_ERR_NOMEM;
        if (mph_app_keep(app, r, sensor_reg_free) != MPH_OK) {
            free(r);
            return MPH_ERR_NOMEM;
        }
    }
    for (size_t i = 0; i < r->n; i++)
        if (r->list[i] == sensor)
            return MPH_ERR_EXISTS;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 4;
        mph_sensor_t **l = realloc(r->list, cap * sizeof *l);
        if (!l)
            return MPH_ERR_NOMEM;
        r->list = l;
        r->cap = cap;
    }
    r->list[r->n++] = sensor;
    ck_pr_store_int(&sensor->added, ck_pr_load_int(&sensor->added) + 1);
    return MPH_OK;
}

/* The app's frozen set, freezing it on first use; NULL without sensors
 * (and when out of memory, which is logged: the sensors are then not
 * called). @locality controlling (at start) */
static const mph__sensor_set_t *sensors_freeze(const mph_app_t *app)
{
    sensor_reg_t *r = reg_find(app);
    if (!r || r->n == 0)
        return NULL;
    if (!r->set) {
        r->set = malloc(sizeof *r->set + r->n * sizeof r->set->s[0]);
        if (!r->set) {
            mph_log(MPH_LOG_ERROR,
                    "app %s: out of memory: user sensors are not called",
                    app->app_id);
            return NULL;
        }
        r->set->n = r->n;
        for (size_t i = 0; i < r->n; i++)
            r->set->s[i] = r->list[i];
    }
    return r->set;
}

/* The MPH__HOOK_* bits of the recorder hooks set's sensors have (handlers
 * cannot change once a sensor was added to an app). */
static unsigned sensor_hooks(const mph__sensor_set_t *set)
{
    unsigned h = 0;
    for (size_t i = 0; set && i < set->n; i++) {
        const mph_sensor_t *s = set->s[i];
        h |= (s->on_event ? MPH__HOOK_EVENT : 0) | (s->on_agent ? MPH__HOOK_AGENT : 0) |
             (s->on_send ? MPH__HOOK_SEND : 0) |
             (s->on_send_completed ? MPH__HOOK_SEND_COMPLETED : 0) |
             (s->on_send_error ? MPH__HOOK_SEND_ERROR : 0) |
             (s->on_partition ? MPH__HOOK_PARTITION : 0);
    }
    return h;
}

/* The frozen set as the coordinator sees it: every monitor points to the
 * same one, and the workers outlive the coordinator's callbacks. */
static const mph__sensor_set_t *sensors_of(const mph_app_t *app)
{
    if (!app->workers || app->nworkers < 1 || !app->workers[0] ||
        !app->workers[0]->mon)
        return NULL;
    return app->workers[0]->mon->sensors;
}

/* Dispatch. Each runs on the thread the recorder runs on. */

void mph__sensors_event(const mph__monitor_t *m, int topic, int32_t partition,
                        int64_t offset, uint64_t latency_ns)
{
    const char *name = m->app->topics[topic]->name;
    for (size_t i = 0; i < m->sensors->n; i++) {
        const mph_sensor_t *s = m->sensors->s[i];
        if (s->on_event)
            s->on_event(s->opaque, m->worker, name, partition, offset,
                        latency_ns);
    }
}

void mph__sensors_agent(const mph__monitor_t *m, int agent, bool failed)
{
    const char *name = m->app->agents[agent]->name;
    for (size_t i = 0; i < m->sensors->n; i++) {
        const mph_sensor_t *s = m->sensors->s[i];
        if (s->on_agent)
            s->on_agent(s->opaque, m->worker, name, failed);
    }
}

void mph__sensors_send(const mph__monitor_t *m, int topic)
{
    const char *name = topic >= 0 ? m->app->topics[topic]->name : "";
    for (size_t i = 0; i < m->sensors->n; i++) {
        const mph_sensor_t *s = m->sensors->s[i];
        if (s->on_send)
            s->on_send(s->opaque, m->worker, name);
    }
}

void mph__sensors_send_completed(const mph__monitor_t *m, uint64_t latency_ns)
{
    for (size_t i = 0; i < m->sensors->n; i++) {
        const mph_sensor_t *s = m->sensors->s[i];
        if (s->on_send_completed)
            s->on_send_completed(s->opaque, m->worker, latency_ns);
    }
}

void mph__sensors_send_error(const mph__monitor_t *m, const char *topic,
                             int32_t partition, mph_err_t err, bool retrying)
{
    for (size_t i = 0; i < m->sensors->n; i++) {
        const mph_sensor_t *s = m->sensors->s[i];
        if (s->on_send_error)
            s->on_send_error(s->opaque, m->worker, topic ? topic : "",
                             partition, err, retrying);
    }
}

void mph__sensors_partition(const mph__monitor_t *m, int topic,
                            int32_t partition, bool assigned)
{
    const char *name = m->app->topics[topic]->name;
    for (size_t i = 0; i < m->sensors->n; i++) {
        const mph_sensor_t *s = m->sensors->s[i];
        if (s->on_partition)
            s->on_partition(s->opaque, m->worker, name, partition, assigned);
    }
}

void mph__sensors_commit(const mph_app_t *app, mph_err_t err,
                         uint64_t latency_us)
{
    const mph__sensor_set_t *set = sensors_of(app);
    for (size_t i = 0; set && i < set->n; i++)
        if (set->s[i]->on_commit)
            set->s[i]->on_commit(set->s[i]->opaque, err, latency_us);
}

void mph__sensors_rebalance(const mph_app_t *app, bool assigned, int partitions)
{
    const mph__sensor_set_t *set = sensors_of(app);
    for (size_t i = 0; set && i < set->n; i++)
        if (set->s[i]->on_rebalance)
            set->s[i]->on_rebalance(set->s[i]->opaque, assigned, partitions);
}

/* ------------------------------------------------------------------ */
/* monitors                                                            */

struct mph__monitor_reader {
    pthread_mutex_t lock;
    int64_t t_prev, t_last; /* 0: no sample */
    uint64_t v_prev, v_last;
};

mph__monitor_t *mph__monitor_new(const mph_app_t *app, int worker,
                                 size_t ntables)
{
    mph__monitor_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->worker = worker;
    m->app = app;
    m->started_ns = mph_clock_mono_ns();
    m->ntopics = app->ntopics;
    m->nagents = app->nagents;
    m->ntables = ntables;
    size_t nt = app->ntopics ? app->ntopics : 1;
    size_t na = app->nagents ? app->nagents : 1;
    m->topic_in = calloc(nt, sizeof *m->topic_in);
    m->topic_out = calloc(nt, sizeof *m->topic_out);
    m->agent_events = calloc(na, sizeof *m->agent_events);
    m->agent_errors = calloc(na, sizeof *m->agent_errors);
    m->table_ops = calloc(ntables ? ntables : 1, sizeof *m->table_ops);
    m->parts = calloc(nt, sizeof *m->parts);
    m->reader = calloc(1, sizeof *m->reader);
    if (!m->topic_in || !m->topic_out || !m->agent_events || !m->agent_errors ||
        !m->table_ops || !m->parts || !m->reader)
        goto fail;
    pthread_mutex_init(&m->reader->lock, NULL);
    for (size_t t = 0; t < app->ntopics; t++) {
        int n = app->topics[t]->partitions > 0 ? app->topics[t]->partitions : 1;
        m->parts[t] = calloc((size_t)n, sizeof **m->parts);
        if (!m->parts[t])
            goto fail;
        for (int p = 0; p < n; p++) {
            m->parts[t][p].read_offset = -1;
            m->parts[t][p].commit_point = -1;
        }
    }
    mph__histogram_init(&m->processing);
    mph__histogram_init(&m->send_latency);
    mph__histogram_init(&m->txn_commit);
    m->sensors = sensors_freeze(app);
    m->sensor_hooks = sensor_hooks(m->sensors);
    return m;
fail:
    mph__monitor_destroy(m);
    return NULL;
}

void mph__monitor_destroy(mph__monitor_t *m)
{
    if (!m)
        return;
    if (m->parts)
        for (size_t t = 0; t < m->ntopics; t++)
            free(m->parts[t]);
    free(m->parts);
    free(m->topic_in);
    free(m->topic_out);
    free(m->agent_events);
    free(m->agent_errors);
    free(m->table_ops);
    if (m->reader)
        pthread_mutex_destroy(&m->reader->lock);
    free(m->reader);
    free(m);
}

/* ------------------------------------------------------------------ */
/* reading                                                             */

const uint64_t mph__stats_le_ns[MPH__STATS_LE_COUNT] = {
    1000,       2500,       5000,       10000,      25000,     50000,
    100000,     250000,     500000,     1000000,    2500000,   5000000,
    10000000,   25000000,   50000000,   100000000,  250000000, 500000000,
    1000000000, 2500000000, 5000000000, 10000000000};

static uint64_t load64(const uint64_t *p)
{
    return ck_pr_load_64((uint64_t *)p);
}

static int64_t loadi64(const int64_t *p)
{
    return (int64_t)ck_pr_load_64((uint64_t *)p);
}

/* Summarises a histogram nobody records into. */
static void latency_of(mph__stats_latency_t *out, const mph__histogram_t *h)
{
    memset(out, 0, sizeof *out);
    out->count = mph__histogram_count(h);
    out->sum_ns = mph__histogram_sum(h);
    out->max_ns = mph__histogram_max(h);
    out->mean_ns = mph__histogram_mean(h);
    out->p50_ns = mph__histogram_value_at_percentile(h, 50.0);
    out->p99_ns = mph__histogram_value_at_percentile(h, 99.0);
    out->p999_ns = mph__histogram_value_at_percentile(h, 99.9);
    size_t pos = 0;
    mph__histogram_bucket_t b;
    size_t i = 0;
    while (mph__histogram_next(h, &pos, &b)) {
        while (i < MPH__STATS_LE_COUNT && b.upper > mph__stats_le_ns[i])
            i++;
        out->le_counts[i] += b.count;
    }
}

/* events/s of one monitor from its reader-side samples (see DESIGN). */
static void rate_of(mph__monitor_t *m, uint64_t events, int64_t now_ns,
                    double *rate, double *avg)
{
    mph__monitor_reader_t *r = m->reader;
    double since = (double)(now_ns - m->started_ns) / 1e9;
    *avg = since > 0 ? (double)events / since : 0.0;
    pthread_mutex_lock(&r->lock);
    if (r->t_last == 0 || now_ns - r->t_last >= 1000000000) {
        r->t_prev = r->t_last;
        r->v_prev = r->v_last;
        r->t_last = now_ns;
        r->v_last = events;
    }
    if (r->t_prev != 0 && now_ns > r->t_prev && events >= r->v_prev)
        *rate =
            (double)(events - r->v_prev) / ((double)(now_ns - r->t_prev) / 1e9);
    else
        *rate = *avg;
    pthread_mutex_unlock(&r->lock);
}

static mph_err_t worker_alloc(mph__stats_worker_t *w, size_t ntopics,
                              size_t nagents, size_t ntables)
{
    w->topic_in = calloc(ntopics ? ntopics : 1, sizeof *w->topic_in);
    w->topic_out = calloc(ntopics ? ntopics : 1, sizeof *w->topic_out);
    w->agent_events = calloc(nagents ? nagents : 1, sizeof *w->agent_events);
    w->agent_errors = calloc(nagents ? nagents : 1, sizeof *w->agent_errors);
    w->table_ops = calloc(ntables ? ntables : 1, sizeof *w->table_ops);
    if (!w->topic_in || !w->topic_out || !w->agent_events || !w->agent_errors ||
        !w->table_ops)
        return MPH_ERR_NOMEM;
    return MPH_OK;
}

static void worker_free(mph__stats_worker_t *w)
{
    free(w->topic_in);
    free(w->topic_out);
    free(w->agent_events);
    free(w->agent_errors);
    free(w->table_ops);
}

void mph__stats_fini(mph__stats_t *st)
{
    if (!st)
        return;
    for (size_t i = 0; st->workers && i < st->nworkers; i++)
        worker_free(&st->workers[i]);
    free(st->workers);
    worker_free(&st->totals);
    for (size_t t = 0; st->topics && t < st->ntopics; t++)
        free(st->topics[t].parts);
    free(st->topics);
    free(st->agents);
    free(st->tables);
    free(st->services_json);
    free(st->globals);
    free(st->joins);
    memset(st, 0, sizeof *st);
}

/* Copies monitor m's counters into w and adds them to the totals. */
static void collect_worker(mph__stats_t *st, mph__stats_worker_t *w,
                           mph__monitor_t *m, mph__histogram_t *scratch,
                           mph__histogram_t *all_proc,
                           mph__histogram_t *all_send, mph__histogram_t *all_txn)
{
    mph__stats_worker_t *T = &st->totals;
    w->worker = m->worker;
#define COPY(f)                                                                \
    do {                                                                       \
        w->f = load64(&m->f);                                                  \
        T->f += w->f;                                                          \
    } while (0)
    COPY(events_in);
    COPY(events_failed);
    COPY(sends);
    COPY(sends_acked);
    COPY(send_errors);
    COPY(send_retries);
    COPY(dead_lettered);
    COPY(skipped);
    COPY(send_dead_lettered);
    COPY(send_skipped);
    COPY(send_resent_inflight);
    COPY(producer_queued);
    COPY(pauses);
    COPY(partitions);
    COPY(txn_committed);
    COPY(txn_aborted);
    COPY(producer_fenced);
    COPY(producer_replaced);
#undef COPY
    w->producer_buffer_max_bytes = (uint64_t)m->app->producer_buffer_bytes;
    T->producer_buffer_max_bytes += w->producer_buffer_max_bytes;
    size_t nt = st->ntopics < m->ntopics ? st->ntopics : m->ntopics;
    for (size_t t = 0; t < nt; t++) {
        w->topic_in[t] = load64(&m->topic_in[t]);
        w->topic_out[t] = load64(&m->topic_out[t]);
        T->topic_in[t] += w->topic_in[t];
        T->topic_out[t] += w->topic_out[t];
    }
    size_t na = st->nagents < m->nagents ? st->nagents : m->nagents;
    for (size_t a = 0; a < na; a++) {
        w->agent_events[a] = load64(&m->agent_events[a]);
        w->agent_errors[a] = load64(&m->agent_errors[a]);
        T->agent_events[a] += w->agent_events[a];
        T->agent_errors[a] += w->agent_errors[a];
    }
    for (size_t i = 0; i < m->ntables && i < st->ntables; i++)
        for (int op = 0; op < MPH__TABLE_OPS; op++) {
            w->table_ops[i][op] = load64(&m->table_ops[i][op]);
            T->table_ops[i][op] += w->table_ops[i][op];
        }
    mph__histogram_snapshot(scratch, &m->processing);
    latency_of(&w->processing, scratch);
    mph__histogram_merge(all_proc, scratch);
    mph__histogram_snapshot(scratch, &m->send_latency);
    latency_of(&w->send_latency, scratch);
    mph__histogram_merge(all_send, scratch);
    mph__histogram_snapshot(scratch, &m->txn_commit);
    latency_of(&w->txn_commit, scratch);
    mph__histogram_merge(all_txn, scratch);
    rate_of(m, w->events_in, st->mono_ns, &w->events_per_s,
            &w->events_per_s_avg);
    T->events_per_s += w->events_per_s;
}

static void collect_partition(mph__stats_part_t *sp, const mph_topic_t *topic,
                              int t, int32_t p, mph__monitor_t *const *mons,
                              size_t nmons, rd_kafka_t *consumer)
{
    sp->partition = p;
    sp->worker = -1;
    sp->read_offset = -1;
    sp->commit_point = -1;
    sp->low_offset = -1;
    sp->end_offset = -1;
    sp->lag = -1;
    int64_t max_read = -1, max_commit = -1;
    for (size_t i = 0; i < nmons; i++) {
        const mph__monitor_t *m = mons[i];
        if ((size_t)t >= m->ntopics)
            continue;
        const mph__part_stats_t *ps = &m->parts[t][p];
        sp->events += load64(&ps->events);
        int64_t r = loadi64(&ps->read_offset);
        int64_t c = loadi64(&ps->commit_point);
        if (r > max_read)
            max_read = r;
        if (c > max_commit)
            max_commit = c;
        if (sp->worker < 0 && load64(&ps->owned)) {
            sp->worker = m->worker;
            sp->read_offset = r;
            sp->commit_point = c;
        }
    }
    if (sp->worker < 0) {
        sp->read_offset = max_read;
        sp->commit_point = max_commit;
    }
    int64_t lo = -1, hi = -1;
    if (consumer &&
        rd_kafka_get_watermark_offsets(consumer, topic->name, p, &lo, &hi) ==
            RD_KAFKA_RESP_ERR_NO_ERROR &&
        hi >= 0) {
        sp->low_offset = lo >= 0 ? lo : -1;
        sp->end_offset = hi;
        int64_t pos =
            sp->read_offset >= 0 ? sp->read_offset + 1 : sp->commit_point;
        if (pos >= 0)
            sp->lag = hi > pos ? hi - pos : 0;
    }
}

/* The counters of mph_rpc_stat, in the order of mph__stats_t.rpc. */
static const char *const rpc_names[7] = {"asks",    "replies", "timeouts", "late",
                                         "unknown", "errors",  "pending"};

mph_err_t mph__stats_collect(mph__stats_t *st, const mph_app_t *app,
                             mph__monitor_t *const *mons, size_t nmons,
                             rd_kafka_t *consumer, const mph__coord_t *coord,
                             int64_t now_ns)
{
    memset(st, 0, sizeof *st);
    mph__histogram_t *h = malloc(4 * sizeof *h);
    if (!h)
        return MPH_ERR_NOMEM;
    mph__histogram_t *scratch = &h[0], *all_proc = &h[1], *all_send = &h[2], *all_txn = &h[3];
    mph__histogram_init(all_proc);
    mph__histogram_init(all_send);
    mph__histogram_init(all_txn);

    st->app_id = app->app_id;
    st->wall_ms = mph_clock_wall_ms();
    st->mono_ns = now_ns;
    st->running = mph_app_running(app);
    st->ready = ck_pr_load_int((int *)&app->ready) == 1;
    st->ntopics = app->ntopics;
    st->nagents = app->nagents;
    int64_t started = now_ns;
    for (size_t i = 0; i < nmons; i++) {
        if (mons[i]->ntables > st->ntables)
            st->ntables = mons[i]->ntables;
        if (mons[i]->started_ns < started)
            started = mons[i]->started_ns;
    }
    st->uptime_s = (double)(now_ns - started) / 1e9;
    st->nworkers = nmons;
    st->workers = calloc(nmons ? nmons : 1, sizeof *st->workers);
    st->topics = calloc(st->ntopics ? st->ntopics : 1, sizeof *st->topics);
    st->agents = calloc(st->nagents ? st->nagents : 1, sizeof *st->agents);
    st->tables = calloc(st->ntables ? st->ntables : 1, sizeof *st->tables);
    if (!st->workers || !st->topics || !st->agents || !st->tables)
        goto nomem;
    st->totals.worker = -1;
    if (worker_alloc(&st->totals, st->ntopics, st->nagents, st->ntables))
        goto nomem;
    for (size_t i = 0; i < nmons; i++)
        if (worker_alloc(&st->workers[i], st->ntopics, st->nagents,
                         st->ntables))
            goto nomem;

    for (size_t i = 0; i < nmons; i++)
        collect_worker(st, &st->workers[i], mons[i], scratch, all_proc,
                       all_send, all_txn);
    latency_of(&st->totals.processing, all_proc);
    latency_of(&st->totals.send_latency, all_send);
    latency_of(&st->totals.txn_commit, all_txn);
    st->totals.events_per_s_avg =
        st->uptime_s > 0 ? (double)st->totals.events_in / st->uptime_s : 0.0;

    for (size_t t = 0; t < st->ntopics; t++) {
        const mph_topic_t *topic = app->topics[t];
        mph__stats_topic_t *ts = &st->topics[t];
        ts->name = topic->name;
        ts->source = topic->nagents > 0;
        ts->partitions = topic->partitions;
        ts->events_in = st->totals.topic_in[t];
        ts->events_out = st->totals.topic_out[t];
        if (!ts->source || topic->partitions <= 0)
            continue;
        ts->parts = calloc((size_t)topic->partitions, sizeof *ts->parts);
        if (!ts->parts)
            goto nomem;
        ts->nparts = (size_t)topic->partitions;
        for (int32_t p = 0; p < topic->partitions; p++)
            collect_partition(&ts->parts[p], topic, (int)t, p, mons, nmons,
                              consumer);
    }
    for (size_t a = 0; a < st->nagents; a++) {
        st->agents[a].name = app->agents[a]->name;
        st->agents[a].events = st->totals.agent_events[a];
        st->agents[a].errors = st->totals.agent_errors[a];
        st->agents[a].agent = app->agents[a];
        st->agents[a].nworkers = app->nworkers;
    }
    for (size_t i = 0; i < st->ntables; i++) {
        st->tables[i].index = i;
        st->tables[i].name = i < app->ntables ? app->tables[i]->name : NULL;
        memcpy(st->tables[i].ops, st->totals.table_ops[i],
               sizeof st->tables[i].ops);
        const mph_window_t *w =
            i < app->ntables ? mph_table_window(app->tables[i]) : NULL;
        st->tables[i].windowed = w != NULL;
        for (int k = 0; w && k < MPH_WINDOW_STAT__COUNT; k++)
            st->tables[i].window[k] = mph_window_stat(w, (mph_window_stat_t)k);
    }
    mph_app_t *mut = (mph_app_t *)app; /* ck_pr takes non-const pointers */
    st->recovery.recoveries = ck_pr_load_64(&mut->recoveries);
    int64_t done = (int64_t)ck_pr_load_64((uint64_t *)&mut->recovery_done);
    int64_t total = (int64_t)ck_pr_load_64((uint64_t *)&mut->recovery_total);
    st->recovery.records_restored = done > 0 ? (uint64_t)done : 0;
    st->recovery.records_total = total > 0 ? (uint64_t)total : 0;
    if (coord) {
        st->have_coord = true;
        mph__coord_stats(coord, &st->coord);
        st->recovery.nrestoring =
            mph__coord_restoring(coord, st->recovery.restoring, MPH__STATS_RESTORING);
        st->recovery.nstandbys =
            mph__coord_standbys(coord, st->recovery.standbys, MPH__STATS_RESTORING);
    }
    st->services_json = mph__services_stats_json(mut, &st->services_len);
    st->have_rpc = app->rpc != NULL;
    for (size_t i = 0; st->have_rpc && i < sizeof st->rpc / sizeof st->rpc[0]; i++)
        st->rpc[i] = mph_rpc_stat(app, rpc_names[i]);
    size_t njoins = mph__joins_list(app, NULL, 0);
    if (njoins) {
        const mph_join_t **js = calloc(njoins, sizeof *js);
        st->joins = calloc(njoins, sizeof *st->joins);
        if (!js || !st->joins) {
            free(js);
            goto nomem;
        }
        mph__joins_list(app, js, njoins);
        st->njoins = njoins;
        for (size_t i = 0; i < njoins; i++) {
            st->joins[i].name = mph_join_name(js[i]);
            for (int k = 0; k < MPH_JOIN_STAT__COUNT; k++) {
                int64_t v = mph_join_stat(js[i], (mph_join_stat_t)k);
                st->joins[i].v[k] = v > 0 ? (uint64_t)v : 0;
            }
        }
        free(js);
    }
    if (app->nglobals) {
        st->globals = calloc(app->nglobals, sizeof *st->globals);
        if (!st->globals)
            goto nomem;
        st->nglobals = app->nglobals;
        for (size_t i = 0; i < app->nglobals; i++) {
            st->globals[i].name = mph_global_table_name(app->globals[i]);
            st->globals[i].keys = mph_global_table_count(app->globals[i]);
            st->globals[i].ready = mph_global_table_ready(app->globals[i]);
        }
    }
    free(h);
    return MPH_OK;
nomem:
    free(h);
    mph__stats_fini(st);
    return MPH_ERR_NOMEM;
}

mph_err_t mph__stats_take(mph__stats_t *st, mph_app_t *app)
{
    memset(st, 0, sizeof *st);
    /* Register as a reader before looking at the workers: teardown marks
     * the app closing, then waits for readers to leave before it frees
     * them (app.c). Builtins, so that ThreadSanitizer sees the handshake. */
    __atomic_add_fetch(&app->stats_readers, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&app->closing, __ATOMIC_SEQ_CST) || !mph_app_running(app) ||
        !app->workers) {
        __atomic_sub_fetch(&app->stats_readers, 1, __ATOMIC_SEQ_CST);
        return MPH_ERR_STATE;
    }
    size_t n = (size_t)app->nworkers;
    mph_err_t err = MPH_ERR_NOMEM;
    mph__monitor_t **mons = malloc((n ? n : 1) * sizeof *mons);
    if (mons) {
        for (size_t i = 0; i < n; i++)
            mons[i] = app->workers[i]->mon;
        err = mph__stats_collect(st, app, mons, n, app->consumer, app->coord,
                                 mph_clock_mono_ns());
        free(mons);
    }
    __atomic_sub_fetch(&app->stats_readers, 1, __ATOMIC_SEQ_CST);
    return err;
}

/* ------------------------------------------------------------------ */
/* the /stats document                                                 */

/* A JSON writer with a sticky error, so rendering checks once at the end
 * (mph_jsonw's errors are not sticky). */
typedef struct jdoc {
    mph_jsonw_t *w;
    mph_err_t err;
} jdoc_t;

static void j_check(jdoc_t *j, mph_err_t err)
{
    if (err && !j->err)
        j->err = err;
}

static void j_key(jdoc_t *j, const char *key)
{
    if (!j->err)
        j_check(j, mph_jsonw_key(j->w, key, strlen(key)));
}

/* A name from the app: passed through when valid UTF-8, else with every
 * byte >= 0x80 replaced by '?' (names are the user's bytes). */
static void j_str(jdoc_t *j, const char *s)
{
    if (j->err)
        return;
    size_t len = strlen(s);
    mph_err_t err = mph_jsonw_str(j->w, s, len);
    if (err == MPH_ERR_UTF8) {
        char *copy = malloc(len ? len : 1);
        if (!copy) {
            j_check(j, MPH_ERR_NOMEM);
            return;
        }
        for (size_t i = 0; i < len; i++)
            copy[i] = (unsigned char)s[i] >= 0x80 ? '?' : s[i];
        err = mph_jsonw_str(j->w, copy, len);
        free(copy);
    }
    j_check(j, err);
}

static void j_u64(jdoc_t *j, uint64_t v)
{
    if (!j->err)
        j_check(j, mph_jsonw_u64(j->w, v));
}

static void j_i64(jdoc_t *j, int64_t v)
{
    if (!j->err)
        j_check(j, mph_jsonw_i64(j->w, v));
}

/* An offset or a lag: null when unknown (negative). */
static void j_offset(jdoc_t *j, int64_t v)
{
    if (j->err)
        return;
    j_check(j, v >= 0 ? mph_jsonw_i64(j->w, v) : mph_jsonw_null(j->w));
}

static void j_f64(jdoc_t *j, double v)
{
    if (!j->err)
        j_check(j, mph_jsonw_f64(j->w, isfinite(v) ? v : 0.0));
}

static void j_bool(jdoc_t *j, bool v)
{
    if (!j->err)
        j_check(j, mph_jsonw_bool(j->w, v));
}

static void j_null(jdoc_t *j)
{
    if (!j->err)
        j_check(j, mph_jsonw_null(j->w));
}

static void j_obj(jdoc_t *j, bool begin)
{
    if (!j->err)
        j_check(j, begin ? mph_jsonw_object_begin(j->w)
                         : mph_jsonw_object_end(j->w));
}

static void j_arr(jdoc_t *j, bool begin)
{
    if (!j->err)
        j_check(j, begin ? mph_jsonw_array_begin(j->w)
                         : mph_jsonw_array_end(j->w));
}

static void j_kv_u64(jdoc_t *j, const char *key, uint64_t v)
{
    j_key(j, key);
    j_u64(j, v);
}

static void j_kv_f64(jdoc_t *j, const char *key, double v)
{
    j_key(j, key);
    j_f64(j, v);
}

static void render_latency(jdoc_t *j, const char *key,
                           const mph__stats_latency_t *l)
{
    j_key(j, key);
    j_obj(j, true);
    j_kv_u64(j, "count", l->count);
    j_kv_f64(j, "mean", l->mean_ns);
    j_kv_u64(j, "p50", l->p50_ns);
    j_kv_u64(j, "p99", l->p99_ns);
    j_kv_u64(j, "p999", l->p999_ns);
    j_kv_u64(j, "max", l->max_ns);
    j_obj(j, false);
}

/* The members shared by "totals" and each entry of "workers". */
static void render_counters(jdoc_t *j, const mph__stats_worker_t *w)
{
    j_kv_u64(j, "events_in", w->events_in);
    j_kv_f64(j, "events_per_s", w->events_per_s);
    j_kv_f64(j, "events_per_s_avg", w->events_per_s_avg);
    j_kv_u64(j, "events_failed", w->events_failed);
    j_kv_u64(j, "sends", w->sends);
    j_kv_u64(j, "sends_acked", w->sends_acked);
    j_kv_u64(j, "send_errors", w->send_errors);
    j_kv_u64(j, "send_retries", w->send_retries);
    j_kv_u64(j, "dead_lettered", w->dead_lettered);
    j_kv_u64(j, "skipped", w->skipped);
    j_kv_u64(j, "send_dead_lettered", w->send_dead_lettered);
    j_kv_u64(j, "send_skipped", w->send_skipped);
    j_kv_u64(j, "send_resent_inflight", w->send_resent_inflight);
    j_kv_u64(j, "producer_queued", w->producer_queued);
    j_kv_u64(j, "producer_buffer_max_bytes", w->producer_buffer_max_bytes);
    j_kv_u64(j, "pauses", w->pauses);
    j_kv_u64(j, "partitions", w->partitions);
    j_kv_u64(j, "transactions_committed", w->txn_committed);
    j_kv_u64(j, "transactions_aborted", w->txn_aborted);
    j_kv_u64(j, "producer_fenced", w->producer_fenced);
    j_kv_u64(j, "producer_replaced", w->producer_replaced);
    render_latency(j, "processing_latency_ns", &w->processing);
    render_latency(j, "send_latency_ns", &w->send_latency);
    render_latency(j, "transaction_commit_latency_ns", &w->txn_commit);
}

static void render_worker(jdoc_t *j, const mph__stats_t *st,
                          const mph__stats_worker_t *w)
{
    j_obj(j, true);
    j_key(j, "worker");
    j_i64(j, w->worker);
    render_counters(j, w);
    j_key(j, "topics");
    j_arr(j, true);
    for (size_t t = 0; t < st->ntopics; t++) {
        j_obj(j, true);
        j_key(j, "name");
        j_str(j, st->topics[t].name);
        j_kv_u64(j, "events_in", w->topic_in[t]);
        j_kv_u64(j, "events_out", w->topic_out[t]);
        j_obj(j, false);
    }
    j_arr(j, false);
    j_key(j, "agents");
    j_arr(j, true);
    for (size_t a = 0; a < st->nagents; a++) {
        j_obj(j, true);
        j_key(j, "name");
        j_str(j, st->agents[a].name);
        j_kv_u64(j, "events", w->agent_events[a]);
        j_kv_u64(j, "errors", w->agent_errors[a]);
        j_obj(j, false);
    }
    j_arr(j, false);
    j_obj(j, false);
}

static void render_part(jdoc_t *j, const mph__stats_part_t *p)
{
    j_obj(j, true);
    j_key(j, "partition");
    j_i64(j, p->partition);
    j_key(j, "worker");
    if (p->worker >= 0)
        j_i64(j, p->worker);
    else
        j_null(j);
    j_kv_u64(j, "events", p->events);
    j_key(j, "read_offset");
    j_offset(j, p->read_offset);
    j_key(j, "commit_point");
    j_offset(j, p->commit_point);
    j_key(j, "low_offset");
    j_offset(j, p->low_offset);
    j_key(j, "end_offset");
    j_offset(j, p->end_offset);
    j_key(j, "lag");
    j_offset(j, p->lag);
    j_obj(j, false);
}

static const char *const table_op_names[MPH__TABLE_OPS] = {"gets", "sets",
                                                           "deletes", "misses"};

/* An agent's punctuators and batches (punctuate.c), summed over workers. */
static void render_punct(jdoc_t *j, const mph__stats_agent_t *sa)
{
    const mph_agent_t *a = sa->agent;
    if (!a)
        return;
    mph__punct_ctr_t c;
    if (a->npuncts) {
        j_key(j, "punctuators");
        j_arr(j, true);
        for (size_t k = 0; k < a->npuncts; k++) {
            const mph__punct_t *p = a->puncts[k];
            mph__punct_sum(p->ctr, sa->nworkers, &c);
            j_obj(j, true);
            j_key(j, "clock");
            j_str(j, p->flags == MPH_PUNCTUATE_WALL ? "wall" : "stream");
            j_key(j, "interval_ms");
            j_i64(j, p->interval_ms);
            j_kv_u64(j, "runs", c.runs);
            j_kv_u64(j, "overruns", c.overruns);
            j_kv_u64(j, "errors", c.errors);
            j_key(j, "last_run_ms");
            if (c.last_ms > 0)
                j_i64(j, c.last_ms);
            else
                j_null(j);
            j_key(j, "next_run_ms"); /* wall clock; stream time has no such time */
            if (c.next_ms > 0)
                j_i64(j, c.next_ms);
            else
                j_null(j);
            j_obj(j, false);
        }
        j_arr(j, false);
    }
    if (a->batch_n) {
        mph__punct_sum(a->batch_ctr, sa->nworkers, &c);
        j_key(j, "batch");
        j_obj(j, true);
        j_kv_u64(j, "max_n", a->batch_n);
        j_key(j, "within_ms");
        j_i64(j, a->batch_within_ms);
        j_kv_u64(j, "batches", c.batches);
        j_kv_u64(j, "events", c.batch_events);
        j_kv_u64(j, "errors", c.batch_errors);
        j_obj(j, false);
    }
}

static void render(jdoc_t *j, const mph__stats_t *st)
{
    j_obj(j, true);
    j_key(j, "app_id");
    j_str(j, st->app_id ? st->app_id : "");
    j_key(j, "version");
    j_str(j, mph_version());
    j_key(j, "time_ms");
    j_i64(j, st->wall_ms);
    j_kv_f64(j, "uptime_s", st->uptime_s);
    j_key(j, "running");
    j_bool(j, st->running);
    j_key(j, "ready");
    j_bool(j, st->ready);

    j_key(j, "totals");
    j_obj(j, true);
    render_counters(j, &st->totals);
    j_obj(j, false);

    j_key(j, "commits");
    if (st->have_coord) {
        j_obj(j, true);
        j_kv_u64(j, "commits", st->coord.commits);
        j_kv_u64(j, "commit_errors", st->coord.commit_errors);
        j_kv_u64(j, "last_commit_latency_us", st->coord.last_commit_us);
        j_kv_u64(j, "commit_partitions", st->coord.commit_partitions);
        j_kv_u64(j, "commit_repairs", st->coord.commit_repairs);
        j_kv_u64(j, "rebalances", st->coord.rebalances);
        j_kv_u64(j, "partitions_assigned", st->coord.assigned);
        j_obj(j, false);
    } else {
        j_null(j);
    }

    j_key(j, "topics");
    j_arr(j, true);
    for (size_t t = 0; t < st->ntopics; t++) {
        const mph__stats_topic_t *ts = &st->topics[t];
        j_obj(j, true);
        j_key(j, "name");
        j_str(j, ts->name);
        j_key(j, "source");
        j_bool(j, ts->source);
        j_key(j, "partition_count");
        j_i64(j, ts->partitions);
        j_kv_u64(j, "events_in", ts->events_in);
        j_kv_u64(j, "events_out", ts->events_out);
        j_key(j, "partitions");
        j_arr(j, true);
        for (size_t p = 0; p < ts->nparts; p++)
            render_part(j, &ts->parts[p]);
        j_arr(j, false);
        j_obj(j, false);
    }
    j_arr(j, false);

    j_key(j, "agents");
    j_arr(j, true);
    for (size_t a = 0; a < st->nagents; a++) {
        j_obj(j, true);
        j_key(j, "name");
        j_str(j, st->agents[a].name);
        j_kv_u64(j, "events", st->agents[a].events);
        j_kv_u64(j, "errors", st->agents[a].errors);
        render_punct(j, &st->agents[a]);
        j_obj(j, false);
    }
    j_arr(j, false);

    j_key(j, "workers");
    j_arr(j, true);
    for (size_t i = 0; i < st->nworkers; i++)
        render_worker(j, st, &st->workers[i]);
    j_arr(j, false);

    j_key(j, "tables");
    j_arr(j, true);
    for (size_t i = 0; i < st->ntables; i++) {
        j_obj(j, true);
        j_key(j, "name");
        if (st->tables[i].name)
            j_str(j, st->tables[i].name);
        else
            j_null(j);
        j_key(j, "index");
        j_u64(j, st->tables[i].index);
        for (int op = 0; op < MPH__TABLE_OPS; op++)
            j_kv_u64(j, table_op_names[op], st->tables[i].ops[op]);
        if (st->tables[i].windowed) {
            j_key(j, "window");
            j_obj(j, true);
            for (int k = 0; k < MPH_WINDOW_STAT__COUNT; k++)
                j_kv_u64(j, mph__window_stat_names[k],
                         st->tables[i].window[k] > 0
                             ? (uint64_t)st->tables[i].window[k]
                             : 0);
            j_obj(j, false);
        }
        j_obj(j, false);
    }
    j_arr(j, false);

    j_key(j, "recovery");
    j_obj(j, true);
    j_kv_u64(j, "recoveries", st->recovery.recoveries);
    j_kv_u64(j, "records_restored", st->recovery.records_restored);
    j_kv_u64(j, "records_total", st->recovery.records_total);
    /* Each shard restoring now (off the assign path): progress, rate, ETA. */
    j_kv_u64(j, "restoring_shards", st->recovery.nrestoring);
    j_key(j, "restoring");
    j_arr(j, true);
    for (size_t i = 0; i < st->recovery.nrestoring && i < MPH__STATS_RESTORING; i++) {
        const mph__restore_stat_t *r = &st->recovery.restoring[i];
        j_obj(j, true);
        j_key(j, "table");
        j_str(j, r->table >= 0 && (size_t)r->table < st->ntables && st->tables[r->table].name
                     ? st->tables[r->table].name
                     : "?");
        j_key(j, "partition");
        j_i64(j, r->partition);
        j_key(j, "worker");
        j_i64(j, r->worker);
        j_key(j, "records_restored");
        j_i64(j, r->records_restored);
        j_key(j, "records_total");
        j_i64(j, r->records_total);
        j_key(j, "progress");
        j_f64(j, r->records_total > 0 ? (double)r->records_restored / (double)r->records_total
                                      : (r->records_total == 0 ? 1.0 : 0.0));
        j_kv_f64(j, "rate", r->rate);
        j_kv_f64(j, "eta_s", r->eta_s);
        j_obj(j, false);
    }
    j_arr(j, false);
    /* Standby replicas held here: records applied and lag behind the end. */
    j_kv_u64(j, "standby_shards", st->recovery.nstandbys);
    j_key(j, "standbys");
    j_arr(j, true);
    for (size_t i = 0; i < st->recovery.nstandbys && i < MPH__STATS_RESTORING; i++) {
        const mph__restore_stat_t *r = &st->recovery.standbys[i];
        j_obj(j, true);
        j_key(j, "table");
        j_str(j, r->table >= 0 && (size_t)r->table < st->ntables && st->tables[r->table].name
                     ? st->tables[r->table].name
                     : "?");
        j_key(j, "partition");
        j_i64(j, r->partition);
        j_key(j, "records_applied");
        j_i64(j, r->records_restored);
        j_key(j, "lag");
        j_i64(j, r->lag);
        j_obj(j, false);
    }
    j_arr(j, false);
    j_obj(j, false);

    j_key(j, "services");
    if (st->services_json && !j->err)
        j_check(j, mph_jsonw_raw(j->w, st->services_json, st->services_len));
    else
        j_null(j);

    /* Agent RPC (null when rpc_enabled=false) and global tables. */
    j_key(j, "rpc");
    if (st->have_rpc) {
        j_obj(j, true);
        for (size_t i = 0; i < sizeof st->rpc / sizeof st->rpc[0]; i++)
            j_kv_u64(j, rpc_names[i], st->rpc[i]);
        j_obj(j, false);
    } else {
        j_null(j);
    }
    j_key(j, "joins");
    j_arr(j, true);
    for (size_t i = 0; i < st->njoins; i++) {
        j_obj(j, true);
        j_key(j, "name");
        j_str(j, st->joins[i].name ? st->joins[i].name : "?");
        for (int k = 0; k < MPH_JOIN_STAT__COUNT; k++)
            j_kv_u64(j, mph__join_stat_names[k], st->joins[i].v[k]);
        j_obj(j, false);
    }
    j_arr(j, false);
    j_key(j, "global_tables");
    j_arr(j, true);
    for (size_t i = 0; i < st->nglobals; i++) {
        j_obj(j, true);
        j_key(j, "name");
        j_str(j, st->globals[i].name ? st->globals[i].name : "?");
        j_kv_u64(j, "keys", st->globals[i].keys);
        j_key(j, "ready");
        j_bool(j, st->globals[i].ready);
        j_obj(j, false);
    }
    j_arr(j, false);
    j_obj(j, false);
}

mph_err_t mph__stats_json(const mph__stats_t *st, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    jdoc_t j = {mph_jsonw_new(4096, NULL, 0), MPH_OK};
    if (!j.w)
        return MPH_ERR_NOMEM;
    render(&j, st);
    const char *text = NULL;
    size_t n = 0;
    if (!j.err)
        j.err = mph_jsonw_finish(j.w, &text, &n);
    if (!j.err) {
        *out = malloc(n + 1);
        if (*out) {
            memcpy(*out, text, n);
            (*out)[n] = '\0';
            *len = n;
        } else {
            j.err = MPH_ERR_NOMEM;
        }
    }
    mph_jsonw_destroy(j.w);
    return j.err;
}

mph_err_t mph_app_stats_json(mph_app_t *app, char **json_out, size_t *len)
{
    if (!app || !json_out || !len)
        return MPH_ERR_INVALID;
    mph__stats_t st;
    mph_err_t err = mph__stats_take(&st, app);
    if (err)
        return err;
    err = mph__stats_json(&st, json_out, len);
    mph__stats_fini(&st);
    return err;
}

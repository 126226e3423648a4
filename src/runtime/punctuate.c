/*
 * DESIGN — punctuators, idle window closing and batching agents.
 *
 * Everything here runs on the worker that owns the partitions, from the
 * worker loop, between events (never inside one): the loop's io_uring
 * wait is bounded by the next due time this file returns, so timers cost
 * no thread and no lock. An app without punctuators, batching agents or
 * window_idle_close_ms has w->pw == NULL and the event path pays one
 * never-taken branch per event (process: pw_track) and one per agent
 * call (batch_n).
 *
 * Punctuators. A WALL punctuator runs on a grid of its interval on the
 * monotonic clock, the same for all the worker's partitions, so one due
 * time per punctuator and worker is enough and a run is one pass over
 * the slots. A STREAM punctuator is due per slot: the slot's stream time
 * (highest record timestamp, noted by process) against a due time per
 * (slot, punctuator); process only compares the new timestamp with the
 * slot's earliest due time and flags the worker, so the pass over slots
 * happens only when some slot is due. A late run runs once; the intervals
 * it missed are counted as overruns.
 *
 * The handle. A punctuator's callback gets the worker's event with a
 * stand-in message (partition set, offset -1, no key, value or headers)
 * and ev->punct set. Its sends carry the marker slot id MPH__SLOT_PUNCT
 * instead of an ack entry, and w->punct_inflight counts them until their
 * reports: under at_least_once a commit of a worker with tables waits
 * (punctuators held, events go on) until that count is zero before it
 * starts the table flush, so no table change of a punctuator becomes
 * durable before its outputs are acknowledged (a crash then restores the
 * state before the punctuator ran, and it runs again). Under exactly_once
 * they are records of the open transaction like any other.
 *
 * Idle window closing (window_idle_close_ms). An internal WALL timer: for
 * every windowed table and partition whose shard this worker holds, when
 * no source partition of that number processed a record for the idle
 * time, the windows' stream time moves to the wall clock
 * (mph__window_idle_close, which writes nothing unless a window becomes
 * due), so their on_close callbacks fire with a punctuator handle.
 *
 * Batching agents. process() hands each event of a batching agent's topic
 * to mph__pw_batch_add: the message is kept (not destroyed by the
 * drain), its ack entry opened and left open, so the commit point cannot
 * pass it. A batch is delivered (the agent's callback, once, with
 * ev->batch set) when full (after the event that filled it), when its
 * within time passed, and before every commit, hand-back and stop, so a
 * batch never spans two commits. Sends made by the callback go to the
 * entry of the batch's first event, so the whole batch stays uncommitted
 * until they are acknowledged; then every entry closes. A failed batch
 * follows on_agent_error as a whole. At most one batching agent per
 * topic: the message has one owner.
 *
 * Never: run a callback inside another event's dispatch; keep a message
 * of a slot that is gone; let a punctuator's send open an ack entry.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ck_pr.h>

#include "mephisto/window.h"
#include "runtime/punctuate.h"
#include "runtime/table.h"
#include "runtime/window.h"

#define INTERVAL_MAX 86400000
#define BATCH_MAX 100000
#define WITHIN_MAX 3600000

/* ------------------------------------------------------------------ */
/* declarations                                                       */

static mph__punct_ctr_t *ctr_new(const mph_app_t *app)
{
    size_t n = app->nworkers > 0 ? (size_t)app->nworkers : 1;
    mph__punct_ctr_t *c = aligned_alloc(64, n * sizeof *c);
    if (c)
        memset(c, 0, n * sizeof *c);
    return c;
}

mph_err_t mph_agent_punctuate(mph_agent_t *agent, int64_t interval_ms, int flags,
                              mph_punctuate_fn *fn, void *opaque)
{
    if (!agent || !fn || interval_ms < 1 || interval_ms > INTERVAL_MAX ||
        (flags != MPH_PUNCTUATE_WALL && flags != MPH_PUNCTUATE_STREAM))
        return MPH_ERR_INVALID;
    if (ck_pr_load_int(&agent->app->state) != APP_NEW)
        return MPH_ERR_STATE;
    mph__punct_t *p = calloc(1, sizeof *p);
    mph__punct_t **arr = realloc(agent->puncts, (agent->npuncts + 1) * sizeof *arr);
    if (arr)
        agent->puncts = arr;
    if (!p || !arr || !(p->ctr = ctr_new(agent->app))) {
        free(p);
        return MPH_ERR_NOMEM;
    }
    p->agent = agent;
    p->interval_ms = interval_ms;
    p->flags = flags;
    p->fn = fn;
    p->opaque = opaque;
    agent->puncts[agent->npuncts++] = p;
    return MPH_OK;
}

mph_err_t mph_agent_batch(mph_agent_t *agent, size_t max_n, int64_t within_ms)
{
    if (!agent || max_n < 1 || max_n > BATCH_MAX || within_ms < 1 || within_ms > WITHIN_MAX)
        return MPH_ERR_INVALID;
    if (ck_pr_load_int(&agent->app->state) != APP_NEW)
        return MPH_ERR_STATE;
    if (!agent->batch_ctr && !(agent->batch_ctr = ctr_new(agent->app)))
        return MPH_ERR_NOMEM;
    agent->batch_n = max_n;
    agent->batch_within_ms = within_ms;
    return MPH_OK;
}

void mph__punct_agent_free(mph_agent_t *a)
{
    for (size_t i = 0; i < a->npuncts; i++) {
        free(a->puncts[i]->ctr);
        free(a->puncts[i]);
    }
    free(a->puncts);
    free(a->batch_ctr);
}

void mph__punct_sum(const mph__punct_ctr_t *ctr, int n, mph__punct_ctr_t *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; ctr && i < n; i++) {
        const mph__punct_ctr_t *c = &ctr[i];
        out->runs += ck_pr_load_64((uint64_t *)&c->runs);
        out->overruns += ck_pr_load_64((uint64_t *)&c->overruns);
        out->errors += ck_pr_load_64((uint64_t *)&c->errors);
        out->batches += ck_pr_load_64((uint64_t *)&c->batches);
        out->batch_events += ck_pr_load_64((uint64_t *)&c->batch_events);
        out->batch_errors += ck_pr_load_64((uint64_t *)&c->batch_errors);
        int64_t last = (int64_t)ck_pr_load_64((uint64_t *)&c->last_ms);
        if (last > out->last_ms)
            out->last_ms = last;
        int64_t next = (int64_t)ck_pr_load_64((uint64_t *)&c->next_ms);
        if (next > 0 && (out->next_ms == 0 || next < out->next_ms))
            out->next_ms = next;
    }
}

static void ctr_add(uint64_t *c, uint64_t n)
{
    ck_pr_store_64(c, *c + n);
}

/* ------------------------------------------------------------------ */
/* the worker side                                                    */

typedef struct bbuf {
    rd_kafka_message_t **m;
    uint64_t *seq;
    size_t n, cap; /* cap grows by doubling up to the agent's max_n */
    int64_t first_ns;
} bbuf_t;

struct mph__pw {
    rd_kafka_message_t stand; /* the punctuator handle's stand-in record */
    mph__punct_t **wall, **stream;
    size_t nwall, nstream;
    uint8_t *wall_on, *stream_on; /* [k * ntopics + topic]: agent subscribed */
    int64_t *wall_next;           /* [nwall] monotonic ns */
    int64_t *sdue;                /* [slot * nstream + k]; INT64_MIN unset */
    uint32_t cap;                 /* slots covered by sdue and bufs */
    bool stream_dirty;
    bool hold;
    /* window_idle_close_ms */
    int64_t idle_ns, idle_every_ns, idle_next;
    mph_window_t **windows; /* [ntables], NULL when not windowed */
    /* batching agents */
    mph_agent_t **bagents;
    size_t nbagents;
    bbuf_t *bufs; /* [slot * nbagents + batch_index] */
    int64_t batch_next;
    bool batch_full;
    uint32_t full_sid;      /* the buffer that filled (batch_full) */
    mph_agent_t *full_agent;
};

static uint8_t *subs_of(const mph_app_t *app, mph__punct_t **ps, size_t n)
{
    size_t nt = app->ntopics ? app->ntopics : 1;
    uint8_t *on = calloc(n ? n * nt : 1, 1);
    for (size_t k = 0; on && k < n; k++)
        for (size_t t = 0; t < app->ntopics; t++)
            for (size_t i = 0; i < app->topics[t]->nagents; i++)
                if (app->topics[t]->agents[i] == ps[k]->agent)
                    on[k * nt + t] = 1;
    return on;
}

static int64_t grid_next(int64_t now, int64_t every)
{
    return (now / every + 1) * every;
}

mph_err_t mph__pw_open(mph__worker_t *w, char *errstr, size_t errstr_size)
{
    mph_app_t *app = w->app;
    int64_t idle = mph_conf_get_int(app->conf, "window_idle_close_ms", 0);
    size_t nwall = 0, nstream = 0, nb = 0;
    for (size_t i = 0; i < app->nagents; i++) {
        mph_agent_t *a = app->agents[i];
        for (size_t k = 0; k < a->npuncts; k++)
            a->puncts[k]->flags == MPH_PUNCTUATE_WALL ? nwall++ : nstream++;
        if (a->batch_n)
            nb++;
    }
    if (!nwall && !nstream && !nb && idle <= 0)
        return MPH_OK;
    /* One owner per message: at most one batching agent per topic. */
    for (size_t t = 0; t < app->ntopics; t++) {
        const mph_agent_t *first = NULL;
        for (size_t i = 0; i < app->topics[t]->nagents; i++) {
            mph_agent_t *a = app->topics[t]->agents[i];
            if (!a->batch_n)
                continue;
            if (first) {
                snprintf(errstr, errstr_size,
                         "topic %s: batching agents %s and %s both read it; a topic may "
                         "have at most one batching agent",
                         app->topics[t]->name, first->name, a->name);
                return MPH_ERR_INVALID;
            }
            first = a;
        }
    }
    struct mph__pw *pw = calloc(1, sizeof *pw);
    if (!pw)
        goto nomem;
    w->pw = pw;
    pw->stand.offset = -1;
    pw->wall = calloc(nwall + 1, sizeof *pw->wall);
    pw->stream = calloc(nstream + 1, sizeof *pw->stream);
    pw->wall_next = calloc(nwall + 1, sizeof *pw->wall_next);
    pw->bagents = calloc(nb + 1, sizeof *pw->bagents);
    if (!pw->wall || !pw->stream || !pw->wall_next || !pw->bagents)
        goto nomem;
    int64_t now = mph_clock_mono_ns();
    for (size_t i = 0; i < app->nagents; i++) {
        mph_agent_t *a = app->agents[i];
        for (size_t k = 0; k < a->npuncts; k++) {
            mph__punct_t *p = a->puncts[k];
            if (p->flags == MPH_PUNCTUATE_WALL) {
                pw->wall_next[pw->nwall] = grid_next(now, p->interval_ms * 1000000);
                pw->wall[pw->nwall++] = p;
            } else {
                pw->stream[pw->nstream++] = p;
            }
        }
        if (a->batch_n) {
            a->batch_index = (int)pw->nbagents;
            pw->bagents[pw->nbagents++] = a;
        }
    }
    pw->wall_on = subs_of(app, pw->wall, pw->nwall);
    pw->stream_on = subs_of(app, pw->stream, pw->nstream);
    if (!pw->wall_on || !pw->stream_on)
        goto nomem;
    pw->batch_next = INT64_MAX;
    pw->idle_next = INT64_MAX;
    if (idle > 0) {
        pw->windows = calloc(app->ntables ? app->ntables : 1, sizeof *pw->windows);
        if (!pw->windows)
            goto nomem;
        for (size_t t = 0; t < app->ntables; t++)
            pw->windows[t] = mph_table_window(app->tables[t]);
        pw->idle_ns = idle * 1000000;
        int64_t every = idle / 4;
        every = every < 10 ? 10 : every > 1000 ? 1000 : every;
        pw->idle_every_ns = every * 1000000;
        pw->idle_next = grid_next(now, pw->idle_every_ns);
    }
    w->pw_track = nstream > 0 || idle > 0;
    return MPH_OK;
nomem:
    snprintf(errstr, errstr_size, "worker %d: out of memory", w->index);
    return MPH_ERR_NOMEM;
}

static void buf_drop(bbuf_t *b)
{
    for (size_t i = 0; i < b->n; i++)
        rd_kafka_message_destroy(b->m[i]);
    b->n = 0;
}

void mph__pw_close(mph__worker_t *w)
{
    struct mph__pw *pw = w->pw;
    if (!pw)
        return;
    for (size_t i = 0; pw->bufs && i < (size_t)pw->cap * pw->nbagents; i++) {
        buf_drop(&pw->bufs[i]);
        free(pw->bufs[i].m);
        free(pw->bufs[i].seq);
    }
    free(pw->bufs);
    free(pw->wall);
    free(pw->stream);
    free(pw->wall_on);
    free(pw->stream_on);
    free(pw->wall_next);
    free(pw->sdue);
    free(pw->windows);
    free(pw->bagents);
    free(pw);
    w->pw = NULL;
}

/* Grows the per-slot arrays to the worker's slot count. */
static mph_err_t pw_reserve(struct mph__pw *pw, uint32_t nslots)
{
    if (nslots <= pw->cap)
        return MPH_OK;
    if (pw->nstream) {
        int64_t *d = realloc(pw->sdue, (size_t)nslots * pw->nstream * sizeof *d);
        if (!d)
            return MPH_ERR_NOMEM;
        for (size_t i = (size_t)pw->cap * pw->nstream; i < (size_t)nslots * pw->nstream; i++)
            d[i] = INT64_MIN;
        pw->sdue = d;
    }
    if (pw->nbagents) {
        bbuf_t *b = realloc(pw->bufs, (size_t)nslots * pw->nbagents * sizeof *b);
        if (!b)
            return MPH_ERR_NOMEM;
        memset(b + (size_t)pw->cap * pw->nbagents, 0,
               (size_t)(nslots - pw->cap) * pw->nbagents * sizeof *b);
        pw->bufs = b;
    }
    pw->cap = nslots;
    return MPH_OK;
}

void mph__pw_slot_added(mph__worker_t *w, uint32_t sid)
{
    struct mph__pw *pw = w->pw;
    mph__slot_t *s = &w->slots[sid];
    s->last_ns = mph_clock_mono_ns();
    s->stream_ms = -1;
    s->stream_due = INT64_MIN;
    if (!pw)
        return;
    if (pw_reserve(pw, w->nslots) != MPH_OK) {
        w->failed = true;
        mph__app_fail(w->app, MPH_ERR_NOMEM, "worker %d: out of memory for punctuators",
                      w->index);
        return;
    }
    for (size_t k = 0; k < pw->nstream; k++)
        pw->sdue[(size_t)sid * pw->nstream + k] = INT64_MIN;
}

void mph__pw_slot_removed(mph__worker_t *w, uint32_t sid)
{
    struct mph__pw *pw = w->pw;
    if (!pw || sid >= pw->cap)
        return;
    for (size_t k = 0; k < pw->nbagents; k++)
        buf_drop(&pw->bufs[(size_t)sid * pw->nbagents + k]);
}

/* The slot's first timestamp: each stream punctuator is due one interval
 * after it. */
static void stream_first(mph__worker_t *w, mph__slot_t *s, int64_t ts)
{
    struct mph__pw *pw = w->pw;
    size_t sid = (size_t)(s - w->slots), nt = w->app->ntopics ? w->app->ntopics : 1;
    int64_t next = INT64_MAX;
    for (size_t k = 0; k < pw->nstream && sid < pw->cap; k++) {
        if (!pw->stream_on[k * nt + (size_t)s->topic])
            continue;
        int64_t due = ts + pw->stream[k]->interval_ms;
        pw->sdue[sid * pw->nstream + k] = due;
        if (due < next)
            next = due;
    }
    s->stream_due = next;
}

void mph__pw_note(mph__worker_t *w, mph__slot_t *s, const rd_kafka_message_t *m, int64_t now_ns)
{
    s->last_ns = now_ns;
    if (!w->pw->nstream)
        return;
    int64_t ts = rd_kafka_message_timestamp(m, NULL);
    if (ts > s->stream_ms) {
        if (MPH__MON_UNLIKELY(s->stream_ms < 0))
            stream_first(w, s, ts);
        s->stream_ms = ts;
        if (ts >= s->stream_due)
            w->pw->stream_dirty = true;
    }
}

void mph__pw_hold(mph__worker_t *w, bool hold)
{
    if (w->pw)
        w->pw->hold = hold;
}

/* ---- running a punctuator ---- */

/* Points the worker's event at slot sid as a punctuator handle. */
static struct mph_event *handle_of(mph__worker_t *w, uint32_t sid, mph_agent_t *agent,
                                   int64_t time_ms)
{
    struct mph__pw *pw = w->pw;
    mph__slot_t *s = &w->slots[sid];
    struct mph_event *ev = &w->ev;
    pw->stand.partition = s->partition;
    ev->rkm = &pw->stand;
    ev->topic = w->app->topics[s->topic];
    ev->agent = agent;
    ev->slot = s;
    ev->slot_id = sid;
    ev->seq_open = false; /* set by its first send (worker.c send_record) */
    ev->hdrs_read = true;
    ev->hdrs = NULL;
    ev->json_state = 0;
    ev->record = NULL;
    ev->batch = NULL;
    ev->nbatch = 0;
    ev->punct = true;
    ev->punct_ts = time_ms;
    return ev;
}

/* After a punctuator handle's callback: counts and the error policy.
 * False when the worker must stop running callbacks. */
static bool handle_done(mph__worker_t *w, struct mph_event *ev, mph_err_t rc,
                        mph__punct_ctr_t *c, const char *kind, const char *name)
{
    ev->punct = false;
    if (ev->seq_open)
        w->events_since_commit++; /* it sent: exactly_once commits it */
    if (w->failed)
        return false;
    if (rc == MPH_OK)
        return true;
    if (c)
        ctr_add(&c->errors, 1);
    char what[300];
    snprintf(what, sizeof what, "%s %s", kind, name);
    mph_log_limited(&w->log_lim, 1000, MPH_LOG_ERROR, "%s failed on %s [%d]: %s", what,
                    ev->topic->name, (int)ev->rkm->partition, mph_err_str(rc));
    if (rc == MPH_ERR_STORE || rc == MPH_ERR_DISK_FULL || w->app->stop_on_agent_error) {
        w->failed = true;
        mph__app_fail(w->app, rc == MPH_ERR_STORE || rc == MPH_ERR_DISK_FULL ? rc
                                                                               : MPH_ERR_AGENT,
                      "%s failed on %s [%d]: %s; stopping without committing its changes%s",
                      what, ev->topic->name, (int)ev->rkm->partition, mph_err_str(rc),
                      rc == MPH_ERR_STORE || rc == MPH_ERR_DISK_FULL ? ""
                                                                     : " (on_agent_error=stop)");
        return false;
    }
    return true;
}

static bool run_one(mph__worker_t *w, mph__punct_t *p, uint32_t sid, int64_t time_ms)
{
    struct mph_event *ev = handle_of(w, sid, p->agent, time_ms);
    mph_err_t rc = p->fn(ev, time_ms, p->opaque);
    mph__punct_ctr_t *c = &p->ctr[w->index];
    ctr_add(&c->runs, 1);
    return handle_done(w, ev, rc, c, "punctuator of agent", p->agent->name);
}

static void run_wall(mph__worker_t *w, size_t k, int64_t now)
{
    struct mph__pw *pw = w->pw;
    mph__punct_t *p = pw->wall[k];
    int64_t every = p->interval_ms * 1000000;
    int64_t due = pw->wall_next[k];
    uint64_t missed = (uint64_t)((now - due) / every);
    pw->wall_next[k] = due + (int64_t)(missed + 1) * every;
    mph__punct_ctr_t *c = &p->ctr[w->index];
    if (missed)
        ctr_add(&c->overruns, missed);
    int64_t wall = mph_clock_wall_ms();
    ck_pr_store_64((uint64_t *)&c->last_ms, (uint64_t)wall);
    ck_pr_store_64((uint64_t *)&c->next_ms,
                   (uint64_t)(wall + (pw->wall_next[k] - now) / 1000000));
    size_t nt = w->app->ntopics ? w->app->ntopics : 1;
    for (uint32_t sid = 0; sid < w->nslots; sid++) {
        mph__slot_t *s = &w->slots[sid];
        if (!s->used || !pw->wall_on[k * nt + (size_t)s->topic])
            continue;
        if (!run_one(w, p, sid, wall))
            return;
    }
}

static void run_stream(mph__worker_t *w)
{
    struct mph__pw *pw = w->pw;
    pw->stream_dirty = false;
    size_t nt = w->app->ntopics ? w->app->ntopics : 1;
    for (uint32_t sid = 0; sid < w->nslots && sid < pw->cap; sid++) {
        mph__slot_t *s = &w->slots[sid];
        if (!s->used || s->stream_ms < 0 || s->stream_ms < s->stream_due)
            continue;
        int64_t st = s->stream_ms, next = INT64_MAX;
        for (size_t k = 0; k < pw->nstream; k++) {
            mph__punct_t *p = pw->stream[k];
            if (!pw->stream_on[k * nt + (size_t)s->topic])
                continue;
            int64_t *due = &pw->sdue[(size_t)sid * pw->nstream + k];
            if (*due == INT64_MIN)
                *due = st + p->interval_ms; /* the first timestamp seen */
            if (st >= *due) {
                mph__punct_ctr_t *c = &p->ctr[w->index];
                uint64_t missed = (uint64_t)((st - *due) / p->interval_ms);
                if (missed)
                    ctr_add(&c->overruns, missed);
                *due = st + p->interval_ms;
                ck_pr_store_64((uint64_t *)&c->last_ms, (uint64_t)mph_clock_wall_ms());
                if (!run_one(w, p, sid, st))
                    return;
            }
            if (*due < next)
                next = *due;
        }
        s->stream_due = next;
    }
}

/* ---- idle window closing ---- */

static void run_idle(mph__worker_t *w, int64_t now)
{
    struct mph__pw *pw = w->pw;
    mph_app_t *app = w->app;
    pw->idle_next = grid_next(now, pw->idle_every_ns);
    int64_t wall = mph_clock_wall_ms();
    for (size_t t = 0; t < app->ntables; t++) {
        mph_window_t *win = pw->windows[t];
        if (!win || !w->shards || !w->shards[t])
            continue;
        for (int p = 0; p < app->tables[t]->partitions; p++) {
            if (!w->shards[t][p])
                continue;
            /* Idle: no source partition p processed a record lately. */
            int32_t sid = -1;
            bool busy = false;
            for (size_t ti = 0; ti < app->ntopics && !busy; ti++) {
                if (p >= app->topics[ti]->partitions || w->slot_of[ti][p] < 0)
                    continue;
                int32_t id = w->slot_of[ti][p];
                if (sid < 0)
                    sid = id;
                busy = now - w->slots[id].last_ns < pw->idle_ns;
            }
            if (sid < 0 || busy)
                continue;
            struct mph_event *ev = handle_of(w, (uint32_t)sid, NULL, wall);
            mph_err_t rc = mph__window_idle_close(ev, win, wall);
            if (!handle_done(w, ev, rc, NULL, "idle close of window table",
                             app->tables[t]->name))
                return;
        }
    }
}

/* ---- batches ---- */

static bbuf_t *buf_of(struct mph__pw *pw, uint32_t sid, const mph_agent_t *a)
{
    return &pw->bufs[(size_t)sid * pw->nbagents + (size_t)a->batch_index];
}

bool mph__pw_batch_add(mph__worker_t *w, mph_agent_t *a, struct mph_event *ev)
{
    struct mph__pw *pw = w->pw;
    bbuf_t *b = buf_of(pw, ev->slot_id, a);
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        if (cap > a->batch_n && b->n < a->batch_n)
            cap = a->batch_n; /* (a full batch not delivered yet may grow) */
        rd_kafka_message_t **m = realloc(b->m, cap * sizeof *m);
        if (m)
            b->m = m;
        uint64_t *seq = m ? realloc(b->seq, cap * sizeof *seq) : NULL;
        if (!seq)
            return false;
        b->seq = seq;
        b->cap = cap;
    }
    if (!ev->seq_open) {
        if (mph__acks_open(&ev->slot->acks, ev->rkm->offset, &ev->seq) != MPH_OK)
            return false;
        ev->seq_open = true;
    }
    if (b->n == 0) {
        b->first_ns = mph_clock_mono_ns();
        int64_t due = b->first_ns + a->batch_within_ms * 1000000;
        if (due < pw->batch_next)
            pw->batch_next = due;
    }
    b->m[b->n] = ev->rkm;
    b->seq[b->n] = ev->seq;
    b->n++;
    if (b->n >= a->batch_n) {
        pw->batch_full = true;
        pw->full_sid = ev->slot_id;
        pw->full_agent = a;
    }
    return true;
}

/* Delivers batch b of agent a on slot sid (see the DESIGN note). False
 * when the worker must stop running callbacks. */
static bool deliver(mph__worker_t *w, mph_agent_t *a, uint32_t sid, bbuf_t *b)
{
    mph__slot_t *s = &w->slots[sid];
    struct mph_event *ev = &w->ev;
    size_t n = b->n;
    ev->topic = w->app->topics[s->topic];
    mph__event_batch_current(ev, b->m[0]);
    ev->agent = a;
    ev->slot = s;
    ev->slot_id = sid;
    ev->seq_open = true;
    ev->seq = b->seq[0]; /* sends hold the batch's first event */
    ev->punct = false;
    ev->batch = b->m;
    ev->nbatch = n;
    mph_err_t rc = a->fn(ev, a->opaque);
    ev->batch = NULL;
    ev->nbatch = 0;
    mph__punct_ctr_t *c = &a->batch_ctr[w->index];
    ctr_add(&c->batches, 1);
    ctr_add(&c->batch_events, n);
    mph__monitor_agent(w->mon, a->index, rc != MPH_OK);
    bool keep_open = w->failed;
    if (!keep_open && rc != MPH_OK) {
        ctr_add(&c->batch_errors, 1);
        const char *topic = w->app->topics[s->topic]->name;
        mph_log_limited(&w->log_lim, 1000, MPH_LOG_ERROR,
                        "agent %s failed on a batch of %zu events of %s [%d] (offsets %lld..%lld):"
                        " %s",
                        a->name, n, topic, (int)s->partition, (long long)b->m[0]->offset,
                        (long long)b->m[n - 1]->offset, mph_err_str(rc));
        if (rc == MPH_ERR_STORE || rc == MPH_ERR_DISK_FULL || w->app->stop_on_agent_error) {
            keep_open = true;
            w->failed = true;
            mph__app_fail(w->app,
                          rc == MPH_ERR_STORE || rc == MPH_ERR_DISK_FULL ? rc : MPH_ERR_AGENT,
                          "agent %s failed on a batch of %s [%d] offsets %lld..%lld: %s; "
                          "stopping without committing past the batch%s",
                          a->name, topic, (int)s->partition, (long long)b->m[0]->offset,
                          (long long)b->m[n - 1]->offset, mph_err_str(rc),
                          rc == MPH_ERR_STORE || rc == MPH_ERR_DISK_FULL
                              ? "" : " (on_agent_error=stop)");
        }
    }
    /* A failed stop keeps every entry open: the commit point stays before
     * the batch. Otherwise all close; sends still hold the first. */
    for (size_t i = 0; !keep_open && i < n; i++)
        mph__acks_close(&s->acks, b->seq[i]);
    buf_drop(b);
    return !w->failed;
}

/* Delivers the batches that are full or due by now_ns, or all (now_ns <
 * 0). Recomputes the next due time. */
static void batches(mph__worker_t *w, int64_t now_ns)
{
    struct mph__pw *pw = w->pw;
    pw->batch_full = false;
    int64_t next = INT64_MAX;
    for (uint32_t sid = 0; sid < w->nslots && sid < pw->cap; sid++) {
        if (!w->slots[sid].used)
            continue;
        for (size_t k = 0; k < pw->nbagents; k++) {
            mph_agent_t *a = pw->bagents[k];
            bbuf_t *b = buf_of(pw, sid, a);
            if (!b->n)
                continue;
            int64_t due = b->first_ns + a->batch_within_ms * 1000000;
            bool go = b->n >= a->batch_n || now_ns < 0 || now_ns >= due;
            if (go && !w->failed && !w->exit) {
                if (!deliver(w, a, sid, b))
                    return;
                continue;
            }
            if (due < next)
                next = due;
        }
    }
    pw->batch_next = next;
}

void mph__pw_batch_full(mph__worker_t *w)
{
    struct mph__pw *pw = w->pw;
    if (!pw->batch_full)
        return;
    /* Only the buffer of the event just added can have filled (one
     * batching agent per topic). batch_next may now be early: harmless. */
    pw->batch_full = false;
    if (!w->failed && !w->exit)
        deliver(w, pw->full_agent, pw->full_sid, buf_of(pw, pw->full_sid, pw->full_agent));
}

void mph__pw_flush_batches(mph__worker_t *w)
{
    if (w->pw && w->pw->nbagents && !w->failed)
        batches(w, -1);
}

void mph__pw_drop_batches(mph__worker_t *w)
{
    struct mph__pw *pw = w->pw;
    if (!pw || !pw->nbagents)
        return;
    for (size_t i = 0; i < (size_t)pw->cap * pw->nbagents; i++)
        buf_drop(&pw->bufs[i]);
    pw->batch_next = INT64_MAX;
}

int64_t mph__pw_run(mph__worker_t *w, int64_t now)
{
    struct mph__pw *pw = w->pw;
    if (w->failed || w->exit)
        return INT64_MAX;
    if (pw->nbagents && now >= pw->batch_next)
        batches(w, now);
    int64_t next = pw->batch_next;
    if (!pw->hold) {
        for (size_t k = 0; k < pw->nwall && !w->failed; k++)
            if (now >= pw->wall_next[k])
                run_wall(w, k, now);
        if (pw->stream_dirty && !w->failed)
            run_stream(w);
        if (now >= pw->idle_next && !w->failed)
            run_idle(w, now);
    }
    for (size_t k = 0; k < pw->nwall; k++)
        if (pw->wall_next[k] < next)
            next = pw->wall_next[k];
    if (pw->idle_next < next)
        next = pw->idle_next;
    return next;
}

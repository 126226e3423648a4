/*
 * DESIGN — the coordinator.
 *
 * The coordinator is the group member. It serves the consumer's queue (the
 * main queue is redirected there), where rebalances, errors and commit
 * results arrive; workers never see them.
 *
 * Assignment: partition p of every topic goes to worker p mod W (so the
 * partitions of co-partitioned topics and changelogs meet on one worker).
 * For each newly assigned partition the coordinator first posts MSG_ASSIGN
 * to the worker and waits for its MSG_ASSIGNED, then forwards the
 * partition's librdkafka queue into the worker's queue, and only then
 * assigns: a worker therefore has the partition's slot before the first
 * record of the new ownership can reach its queue. This is what lets the
 * worker serve its mailbox only between batches and drop any record
 * without a slot (worker.c): such a record can only belong to an ownership
 * that ended. The wait costs one mailbox round trip per rebalance; it is
 * bounded (hand_wait_ms), and a worker that does not answer stops the app
 * (a callback stuck that long leaves nothing else safe to do).
 *
 * Partitions whose table shards the worker does not hold yet are not in
 * that MSG_ASSIGN: they are assigned with the others but held (their
 * queues forwarded into a hold queue, not paused: see assign_parts) while a restore thread
 * rebuilds their shards (restore.c); each one is handed over, the same
 * way, as soon as its own shards are complete, so the ready partitions
 * process meanwhile and the assign callback never waits for a recovery.
 * app->ready (GET /ready) is 1 only while nothing restores. Standby
 * replicas (standby.c) of newly assigned partitions stop first, so that
 * the restore starts from their checkpoints; after every rebalance the
 * standbys are placed again.
 *
 * Revocation: MSG_REVOKE to each worker concerned, carrying one deadline
 * on the monotonic clock (now + shutdown_timeout_ms) that bounds both
 * sides: the worker flushes its tables and serves its producer until the
 * partition's sends are acknowledged, by that deadline, replies with the
 * final commit points and the shards, and forgets the partition. The
 * coordinator waits until the deadline plus REPLY_GRACE_MS (the time the
 * reply needs once the worker stopped waiting), commits the points
 * synchronously (unless the assignment was lost), un-forwards the queues
 * and unassigns.
 *
 * A reply that comes later (the worker was inside a long callback) is
 * still the only way its shards come back: the coordinator never looks at
 * a worker's shards (table.c). MSG_REVOKE and MSG_REVOKED carry a per-worker
 * sequence number, so a late reply is told apart from the answer to a
 * newer revocation, and before an assignment hands partitions to a worker
 * the coordinator waits for the answers to every revocation that worker
 * was sent, parks the shards they return, and only then builds the shard
 * set. Waiting is the design that cannot lose table updates: handing the
 * partition over without its shard, or with a copy rebuilt while the
 * worker still writes the original, would. A late reply's commit points
 * are committed when its partitions are assigned to this process again by
 * the very next assignment (before the assign, so fetching resumes after
 * them); otherwise they are dropped: another member may own, or have
 * owned, those partitions since, and committing them would rewind it.
 *
 * Commits: workers post commit points every commit_interval_ms or
 * commit_every events; the coordinator commits them asynchronously. Only
 * commit points (acks.c) ever reach Kafka. Workers send only the points
 * that moved, so a commit that lands late is not overwritten by the next
 * interval's: librdkafka defers a commit refused with NOT_COORDINATOR (or
 * one made while the coordinator is unknown) and sends it once the
 * coordinator is back, after commits made meanwhile, and the broker then
 * holds its older offsets. The commit callbacks come in the order the
 * broker applied the commits, so per partition the coordinator keeps the
 * highest offset it asked for (want) and the highest that landed
 * (landed); a success that lands below landed means an older commit
 * overtook a newer one, and the partition is committed again at want
 * (commit_repairs). Both are forgotten at every rebalance: between two
 * rebalances every partition in them is owned by this process.
 *
 * Stop: rd_kafka_consumer_close_queue() runs the revocation above for all
 * partitions, then the workers are told to stop and report; whatever they
 * report is committed; everything is bounded by shutdown_timeout_ms.
 * Before that, the app's services (timers, tasks, stop hooks) are stopped,
 * while mph_send() still works (services.c).
 *
 * Leader election: partition 0 of `<app_id>-__leader`, when the app uses
 * it, is subscribed to with the sources; the rebalance callback hands it to
 * services.c and takes it out of the list before anything above sees it,
 * so no worker owns it and it is never fetched or committed.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ck_pr.h>

#include "io/uring.h"
#include "mephisto/log.h"
#include "runtime/coordinator.h"
#include "runtime/mailbox.h"
#include "runtime/monitor.h"
#include "runtime/msg.h"
#include "runtime/services.h"
#include "runtime/restore.h"
#include "runtime/standby.h"
#include "runtime/table.h"
#include "runtime/worker.h"

struct mph__coord {
    mph_app_t *app;
    pthread_t thread;
    bool started;
    mph__mailbox_t mbox;
    rd_kafka_queue_t *cq; /* the consumer queue */
    int cq_fd;
    bool cooperative;
    mph__coord_stats_t stats;
    int64_t commit_started_ns;
    mph_log_limit_t log_lim;
    /* Per worker: the hand-over protocol's sequence numbers (msg.h). A
     * message kind is answered up to *_done; *_sent is the last posted. */
    uint64_t *revoke_sent, *revoke_done;
    uint64_t *assign_sent, *assign_done;
    uint64_t *stop_done;     /* 1 once MSG_STOPPED arrived */
    int64_t *revoke_deadline; /* of the last MSG_REVOKE posted */
    uint64_t *revoke_at;      /* assign_calls when the last MSG_REVOKE was posted */
    uint64_t assign_calls;    /* assignments handled so far */
    mph__restorer_t *restorer; /* shards restoring off the assign path (restore.c) */
    mph__standby_t *standby;   /* standby replicas (standby.c) */
    /* Per topic (app->topics order), per partition: the highest offset
     * asked to commit and the highest that landed since the last rebalance
     * (-1: none); see "Commits" above. Grown on demand. */
    struct commit_track {
        int64_t *want, *landed;
        int32_t n;
    } *track;
    size_t ntrack;
    size_t last_topic; /* topic_index's guess */
};

/* How long a revocation's reply may take to arrive after its deadline. */
#define REPLY_GRACE_MS 1000

/* How long to wait for a worker to answer a hand-over message it should
 * serve within one batch. */
static int64_t hand_wait_ms(const mph_app_t *app)
{
    return app->shutdown_timeout_ms > 10000 ? app->shutdown_timeout_ms : 10000;
}

static void stat_set(uint64_t *c, uint64_t v)
{
    ck_pr_store_64(c, v);
}

void mph__coord_stats(const mph__coord_t *c, mph__coord_stats_t *out)
{
    mph__coord_stats_t *s = (mph__coord_stats_t *)&c->stats;
    out->rebalances = ck_pr_load_64(&s->rebalances);
    out->assigned = ck_pr_load_64(&s->assigned);
    out->commits = ck_pr_load_64(&s->commits);
    out->commit_errors = ck_pr_load_64(&s->commit_errors);
    out->last_commit_us = ck_pr_load_64(&s->last_commit_us);
    out->commit_partitions = ck_pr_load_64(&s->commit_partitions);
    out->commit_repairs = ck_pr_load_64(&s->commit_repairs);
}

size_t mph__coord_restoring(const mph__coord_t *c, mph__restore_stat_t *out, size_t max)
{
    return c->restorer ? mph__restorer_stats(c->restorer, out, max) : 0;
}

size_t mph__coord_standbys(const mph__coord_t *c, mph__restore_stat_t *out, size_t max)
{
    return c->standby ? mph__standby_stats(c->standby, out, max) : 0;
}

mph_err_t mph__coord_post(mph__coord_t *c, void *msg)
{
    return mph__mailbox_push_mpsc(&c->mbox, msg);
}

/* ------------------------------------------------------------------ */

/* The app's index of topic name, or -1. Commits name one topic or a few,
 * so the last answer is tried first. */
static int topic_index(mph__coord_t *c, const char *name)
{
    mph_app_t *app = c->app;
    if (c->last_topic < app->ntopics && strcmp(app->topics[c->last_topic]->name, name) == 0)
        return (int)c->last_topic;
    for (size_t i = 0; i < app->ntopics; i++)
        if (strcmp(app->topics[i]->name, name) == 0) {
            c->last_topic = i;
            return (int)i;
        }
    return -1;
}

/* The track of (topic, partition), grown to hold it; NULL when unknown or
 * out of memory (the partition then goes unguarded). */
static struct commit_track *track_of(mph__coord_t *c, const char *topic, int32_t p)
{
    int t = topic_index(c, topic);
    if (t < 0 || (size_t)t >= c->ntrack || p < 0)
        return NULL;
    struct commit_track *k = &c->track[t];
    if (p >= k->n) {
        int32_t n = p + 1 > 2 * k->n ? p + 1 : 2 * k->n;
        int64_t *w = realloc(k->want, (size_t)n * sizeof *w);
        if (!w)
            return NULL;
        k->want = w;
        int64_t *l = realloc(k->landed, (size_t)n * sizeof *l);
        if (!l)
            return NULL;
        k->landed = l;
        for (int32_t i = k->n; i < n; i++)
            k->want[i] = k->landed[i] = -1;
        k->n = n;
    }
    return k;
}

/* Forgets what was asked and what landed (at every rebalance). */
static void track_reset(mph__coord_t *c)
{
    for (size_t t = 0; t < c->ntrack; t++)
        for (int32_t i = 0; i < c->track[t].n; i++)
            c->track[t].want[i] = c->track[t].landed[i] = -1;
}

static void commit_list(mph__coord_t *c, rd_kafka_topic_partition_list_t *l, bool sync)
{
    /* exactly_once: offsets commit inside the workers' transactions
     * (worker.c); the points still travel here for stats and hand-overs. */
    if (l->cnt == 0 || c->app->eos)
        return;
    c->commit_started_ns = mph_clock_mono_ns();
    stat_set(&c->stats.commit_partitions, c->stats.commit_partitions + (uint64_t)l->cnt);
    for (int i = 0; i < l->cnt; i++) {
        rd_kafka_topic_partition_t *e = &l->elems[i];
        struct commit_track *k = track_of(c, e->topic, e->partition);
        if (k && e->offset > k->want[e->partition])
            k->want[e->partition] = e->offset;
    }
    rd_kafka_resp_err_t e = rd_kafka_commit(c->app->consumer, l, sync ? 0 : 1);
    if (sync) {
        uint64_t us = (uint64_t)((mph_clock_mono_ns() - c->commit_started_ns) / 1000);
        stat_set(&c->stats.last_commit_us, us);
        mph__sensors_commit(c->app, e ? mph__kafka_err(e) : MPH_OK, us);
        if (e) {
            stat_set(&c->stats.commit_errors, c->stats.commit_errors + 1);
            mph_log(MPH_LOG_WARN, "commit failed: %s", rd_kafka_err2str(e));
        } else {
            stat_set(&c->stats.commits, c->stats.commits + 1);
        }
    } else if (e) {
        mph__sensors_commit(c->app, mph__kafka_err(e), 0);
        stat_set(&c->stats.commit_errors, c->stats.commit_errors + 1);
        mph_log_limited(&c->log_lim, 5000, MPH_LOG_WARN, "commit failed: %s",
                        rd_kafka_err2str(e));
    }
}

static void add_tps(mph__coord_t *c, rd_kafka_topic_partition_list_t *l, const mph__msg_t *m)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->tp[i].offset >= 0)
            rd_kafka_topic_partition_list_add(l, c->app->topics[m->tp[i].topic]->name,
                                              m->tp[i].partition)
                ->offset = m->tp[i].offset;
}

/* After a commit landed: notes what landed, and commits again, at the
 * highest offset asked or landed, the partitions where this commit landed
 * below an earlier one (see "Commits" above). */
static void repair_overtaken(mph__coord_t *c, const rd_kafka_topic_partition_list_t *offsets)
{
    rd_kafka_topic_partition_list_t *again = NULL;
    for (int i = 0; offsets && i < offsets->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &offsets->elems[i];
        if (e->offset < 0)
            continue;
        struct commit_track *k = track_of(c, e->topic, e->partition);
        if (!k)
            continue;
        if (k->landed[e->partition] <= e->offset) {
            k->landed[e->partition] = e->offset;
            continue;
        }
        if (!again)
            again = rd_kafka_topic_partition_list_new(offsets->cnt);
        /* want is below landed only when both commits were made before the
         * last rebalance forgot what was asked. */
        int64_t to = k->want[e->partition] > k->landed[e->partition] ? k->want[e->partition]
                                                                      : k->landed[e->partition];
        rd_kafka_topic_partition_list_add(again, e->topic, e->partition)->offset = to;
    }
    if (!again)
        return;
    stat_set(&c->stats.commit_repairs, c->stats.commit_repairs + (uint64_t)again->cnt);
    mph_log_limited(&c->log_lim, 5000, MPH_LOG_INFO,
                    "an older commit landed after a newer one: committing %d "
                    "partitions again",
                    again->cnt);
    commit_list(c, again, false);
    rd_kafka_topic_partition_list_destroy(again);
}

static void offset_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    mph__coord_t *c = opaque;
    /* A partition the broker refused fails the commit as a whole: the
     * workers send every point again on their next timer (worker.c). */
    for (int i = 0; !err && offsets && i < offsets->cnt; i++)
        if (offsets->elems[i].err)
            err = offsets->elems[i].err;
    uint64_t us = (uint64_t)((mph_clock_mono_ns() - c->commit_started_ns) / 1000);
    stat_set(&c->stats.last_commit_us, us);
    if (err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        mph__sensors_commit(c->app, err ? mph__kafka_err(err) : MPH_OK, us);
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        stat_set(&c->stats.commit_errors, c->stats.commit_errors + 1);
        mph_log_limited(&c->log_lim, 5000, MPH_LOG_WARN, "commit failed: %s",
                        rd_kafka_err2str(err));
    } else if (!err) {
        stat_set(&c->stats.commits, c->stats.commits + 1);
        repair_overtaken(c, offsets);
    }
}

/* Where the commit points of replies go while the coordinator waits:
 * a MSG_REVOKED whose seq is want[worker] (the revocation being waited
 * for) into collect, any other MSG_REVOKED (a late one) into late, and
 * MSG_STOPPED into collect. NULL lists drop the points. */
typedef struct reply_sink {
    rd_kafka_topic_partition_list_t *collect, *late;
    const uint64_t *want;
} reply_sink_t;

static void seq_done(uint64_t *done, const mph__msg_t *m)
{
    if (m->seq > done[m->worker])
        done[m->worker] = m->seq;
}

/* Handles one worker → coordinator message. */
static void handle_msg(mph__coord_t *c, mph__msg_t *m, const reply_sink_t *sink)
{
    int W = c->app->nworkers;
    bool known = m->worker >= 0 && m->worker < W;
    if ((m->kind == MSG_REVOKED || m->kind == MSG_STOPPED) && m->ptr) {
        mph__tables_park(c->app, m->ptr, m->kind == MSG_REVOKED && m->lost);
        m->ptr = NULL;
    }
    rd_kafka_topic_partition_list_t *to = NULL;
    switch (m->kind) {
    case MSG_COMMIT: {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)m->n);
        add_tps(c, l, m);
        commit_list(c, l, false);
        rd_kafka_topic_partition_list_destroy(l);
        break;
    }
    case MSG_REVOKED:
        if (known) {
            seq_done(c->revoke_done, m);
            if (sink && sink->want && m->seq == sink->want[m->worker])
                to = sink->collect;
            else if (sink && m->seq == c->revoke_sent[m->worker] &&
                     c->revoke_at[m->worker] == c->assign_calls)
                /* A late answer to the last revocation, with no assignment
                 * since: nobody else can have owned its partitions. */
                to = sink->late;
        }
        break;
    case MSG_ASSIGNED:
        if (known)
            seq_done(c->assign_done, m);
        break;
    case MSG_STOPPED:
        if (known)
            c->stop_done[m->worker] = 1;
        to = sink ? sink->collect : NULL;
        break;
    }
    if (to)
        add_tps(c, to, m);
    mph__msg_free(m);
}

static bool answered(const mph__coord_t *c, const uint64_t *done, const uint64_t *want)
{
    for (int w = 0; w < c->app->nworkers; w++)
        if (done[w] < want[w])
            return false;
    return true;
}

/* Serves the mailbox until done[w] >= want[w] for every worker, or the
 * deadline; true when every answer came. Commit points go to sink. */
static bool await_answers(mph__coord_t *c, const uint64_t *done, const uint64_t *want,
                          const reply_sink_t *sink, int64_t deadline_ns)
{
    for (;;) {
        mph__msg_t *m;
        while (!answered(c, done, want) && (m = mph__mailbox_pop_sc(&c->mbox)))
            handle_msg(c, m, sink);
        if (answered(c, done, want))
            return true;
        int64_t left = (deadline_ns - mph_clock_mono_ns()) / 1000000;
        if (left <= 0)
            return false;
        struct pollfd pfd = {c->mbox.fd, POLLIN, 0};
        poll(&pfd, 1, (int)(left > 100 ? 100 : left));
        if (pfd.revents)
            mph__eventfd_drain(c->mbox.fd);
    }
}

static bool in_list(const rd_kafka_topic_partition_list_t *l, const char *topic, int32_t p)
{
    return rd_kafka_topic_partition_list_find(l, topic, p) != NULL;
}

/* Before an assignment hands partitions to a worker, every revocation sent
 * to it must be answered: its shards come back with the answer (see the
 * DESIGN comment). Waits for those of the workers that get partitions;
 * ok[w] is false for a worker that did not answer in time (the app then
 * stops). Late commit points of partitions assigned again are committed
 * here, before the assign, so fetching resumes after them; only those of
 * the revocation right before this assignment (no other member can have
 * moved the partitions' offsets since). */
static void await_late_revocations(mph__coord_t *c, const size_t *count,
                                   const rd_kafka_topic_partition_list_t *parts, bool *ok)
{
    mph_app_t *app = c->app;
    int W = app->nworkers;
    uint64_t *want = calloc((size_t)W, sizeof *want);
    int64_t deadline = mph_clock_mono_ns();
    int waiting = 0;
    for (int w = 0; w < W; w++) {
        ok[w] = true;
        if (!count[w] || c->revoke_done[w] >= c->revoke_sent[w])
            continue;
        if (want)
            want[w] = c->revoke_sent[w];
        int64_t d = c->revoke_deadline[w] + (REPLY_GRACE_MS + hand_wait_ms(app)) * 1000000;
        if (d > deadline)
            deadline = d;
        waiting++;
    }
    if (!waiting) {
        free(want);
        return;
    }
    mph_log(MPH_LOG_WARN,
            "%d workers have not handed back the partitions of an earlier revocation yet; "
            "waiting for them before the assignment",
            waiting);
    rd_kafka_topic_partition_list_t *late = rd_kafka_topic_partition_list_new(8);
    reply_sink_t sink = {NULL, late, NULL};
    if (want)
        await_answers(c, c->revoke_done, want, &sink, deadline);
    for (int w = 0; w < W; w++) {
        if (count[w] && c->revoke_done[w] < c->revoke_sent[w]) {
            ok[w] = false;
            mph__app_fail(app, MPH_ERR_TIMEOUT,
                          "worker %d did not hand back its revoked partitions within %lld ms "
                          "of the deadline (an agent callback that does not return?); "
                          "stopping rather than process them without their table state",
                          w, (long long)(REPLY_GRACE_MS + hand_wait_ms(app)));
        }
    }
    rd_kafka_topic_partition_list_t *again = rd_kafka_topic_partition_list_new(late->cnt);
    for (int i = 0; i < late->cnt; i++)
        if (in_list(parts, late->elems[i].topic, late->elems[i].partition))
            rd_kafka_topic_partition_list_add(again, late->elems[i].topic,
                                              late->elems[i].partition)
                ->offset = late->elems[i].offset;
    if (again->cnt) {
        mph_log(MPH_LOG_INFO, "committing the late final points of %d partitions assigned again",
                again->cnt);
        commit_list(c, again, true);
    }
    rd_kafka_topic_partition_list_destroy(again);
    rd_kafka_topic_partition_list_destroy(late);
    free(want);
}

static int worker_of(const mph_app_t *app, int32_t partition)
{
    return (int)(partition % app->nworkers);
}

/* Splits the new partitions of worker w (msg->tp, whose shards the worker
 * does not keep yet) off into restore jobs, one per partition number,
 * leaving in msg only those that need nothing restored; their queues are
 * forwarded into the jobs' hold queues and they are added to held. False
 * (the app stops) when the shards cannot be collected. */
static bool hold_restoring(mph__coord_t *c, int w, mph__msg_t *msg,
                           rd_kafka_topic_partition_list_t *held)
{
    mph_app_t *app = c->app;
    int32_t *nums = malloc((msg->n ? msg->n : 1) * sizeof *nums);
    size_t nn = 0;
    for (size_t i = 0; nums && i < msg->n; i++) {
        bool seen = false;
        for (size_t j = 0; j < nn; j++)
            seen |= nums[j] == msg->tp[i].partition;
        if (!seen)
            nums[nn++] = msg->tp[i].partition;
    }
    char err[512] = "";
    mph__shard_set_t *set = nums ? mph__tables_handover(app, w, nums, nn, err, sizeof err) : NULL;
    free(nums);
    if (!set) {
        mph__app_fail(app, MPH_ERR_STORE, "table recovery for worker %d failed: %s", w,
                      err[0] ? err : "out of memory");
        return false;
    }
    msg->ptr = NULL;
    while (set->n > 0) {
        int32_t p = (int32_t)set->shards[0]->partition;
        mph__shard_set_t *sub = calloc(1, sizeof *sub + set->n * sizeof sub->shards[0]);
        mph__tp_t *tp = calloc(msg->n, sizeof *tp);
        rd_kafka_queue_t *hold = rd_kafka_queue_new(app->consumer);
        if (!sub || !tp || !hold) {
            free(sub);
            free(tp);
            if (hold)
                rd_kafka_queue_destroy(hold);
            mph__tables_park(app, set, false);
            mph__app_fail(app, MPH_ERR_NOMEM, "table recovery for worker %d: out of memory", w);
            return false;
        }
        size_t k = 0;
        for (size_t i = 0; i < set->n; i++) {
            if ((int32_t)set->shards[i]->partition == p)
                sub->shards[sub->n++] = set->shards[i];
            else
                set->shards[k++] = set->shards[i];
        }
        set->n = k;
        size_t ntp = 0;
        k = 0;
        for (size_t i = 0; i < msg->n; i++) {
            if (msg->tp[i].partition == p)
                tp[ntp++] = msg->tp[i];
            else
                msg->tp[k++] = msg->tp[i];
        }
        msg->n = k;
        for (size_t i = 0; i < ntp; i++) {
            const char *topic = app->topics[tp[i].topic]->name;
            rd_kafka_topic_partition_list_add(held, topic, tp[i].partition);
            rd_kafka_queue_t *pq = rd_kafka_queue_get_partition(app->consumer, topic,
                                                                tp[i].partition);
            if (pq) {
                rd_kafka_queue_forward(pq, hold);
                rd_kafka_queue_destroy(pq);
            }
        }
        if (mph__restorer_add(c->restorer, w, p, tp, ntp, hold, sub) != MPH_OK) {
            free(tp);
            rd_kafka_queue_destroy(hold);
            mph__tables_park(app, sub, false);
            mph__tables_park(app, set, false);
            mph__app_fail(app, MPH_ERR_NOMEM, "table recovery for worker %d: out of memory", w);
            return false;
        }
    }
    free(set);
    return true;
}

/* Hands every restored job to its worker: MSG_ASSIGN with its shards, wait
 * for MSG_ASSIGNED, then its records (the hold queue first, so that they
 * stay in order) go to the worker's queue. Sets
 * app->ready once nothing restores. */
static void hand_over_restored(mph__coord_t *c)
{
    mph_app_t *app = c->app;
    mph__restore_job_t *job;
    mph_err_t rerr = MPH_OK;
    char errstr[512] = "";
    while ((job = mph__restorer_take_ready(c->restorer, &rerr, errstr, sizeof errstr))) {
        int w = job->worker;
        mph__msg_t *m = mph__msg_new(MSG_ASSIGN, w, job->ntp);
        if (!m) {
            mph__tables_park(app, job->set, false);
            job->set = NULL;
            mph__restore_job_free(job);
            mph__app_fail(app, MPH_ERR_NOMEM, "worker %d: out of memory at hand-over", w);
            continue;
        }
        memcpy(m->tp, job->tp, job->ntp * sizeof *m->tp);
        m->ptr = job->set;
        job->set = NULL;
        m->seq = ++c->assign_sent[w];
        if (mph__worker_post(app->workers[w], m) != MPH_OK) {
            c->assign_sent[w]--;
            mph__tables_park(app, m->ptr, false);
            mph__msg_free(m);
            mph__restore_job_free(job);
            mph__app_fail(app, MPH_ERR_FULL, "worker %d mailbox full at assignment", w);
            continue;
        }
        int64_t deadline = mph_clock_mono_ns() + hand_wait_ms(app) * 1000000;
        if (!await_answers(c, c->assign_done, c->assign_sent, NULL, deadline)) {
            mph__app_fail(app, MPH_ERR_TIMEOUT,
                          "worker %d did not take its restored partition %d within %lld ms (an "
                          "agent callback that does not return?); stopping",
                          w, (int)job->partition, (long long)hand_wait_ms(app));
            mph__restore_job_free(job);
            continue;
        }
        rd_kafka_queue_t *wq = app->workers[w]->q;
        /* Forwarding moves what the hold queue holds to wq, in order; the
         * hold queue is unforwarded again before it is destroyed
         * (mph__restore_job_free), or its destruction would purge wq. */
        rd_kafka_queue_forward(job->hold, wq);
        for (size_t i = 0; i < job->ntp; i++) {
            const char *topic = app->topics[job->tp[i].topic]->name;
            rd_kafka_queue_t *pq = rd_kafka_queue_get_partition(app->consumer, topic,
                                                                job->tp[i].partition);
            if (pq) {
                rd_kafka_queue_forward(pq, wq);
                rd_kafka_queue_destroy(pq);
            }
        }
        mph_log(MPH_LOG_INFO,
                "partition %d restored on worker %d (%lld changelog records in %.2f s): processing",
                (int)job->partition, w, (long long)job->records, job->seconds);
        mph__restore_job_free(job);
    }
    if (rerr)
        mph__app_fail(app, MPH_ERR_STORE, "%s", errstr);
    ck_pr_store_int(&app->ready, c->assign_calls > 0 && mph__restorer_idle(c->restorer) ? 1 : 0);
}

/* exactly_once, before the restore of newly assigned partitions starts: a
 * previous owner's last transaction may still be pending with the offsets
 * of these partitions in it (it sent them in the old generation, so the
 * group took them, and its commit is slow). Its changelog records may not
 * even be on the broker yet (a commit produces them just before sending
 * the offsets, and only the commit flushes them), so a restore that read
 * the changelogs' ends now could stop before them while the offsets that
 * transaction commits count: their updates would be lost (test_eos
 * restore_waits_for_the_previous_owners_transaction). Reading the
 * committed offsets with require_stable (librdkafka does under
 * read_committed, KIP-447) answers UNSTABLE_OFFSET_COMMIT, per partition,
 * while such a transaction is pending; librdkafka retries a while, then
 * returns the partition with that error and the call itself succeeds. So
 * this asks again until no partition is unstable: then every record of a
 * committed transaction is below the high watermarks the restore reads
 * (recovery.c waits for the transactions still open there). One that has
 * not sent its offsets yet cannot any more: the new generation fences
 * them. Waiting longer than STABLE_WAIT_MS stops the app rather than
 * restore too little. */
#define STABLE_WAIT_MS 180000

static void await_stable_offsets(mph__coord_t *c, const rd_kafka_topic_partition_list_t *parts)
{
    mph_app_t *app = c->app;
    int64_t t0 = mph_clock_mono_ns(), warned = 0;
    for (;;) {
        rd_kafka_topic_partition_list_t *cp = rd_kafka_topic_partition_list_copy(parts);
        rd_kafka_resp_err_t e = rd_kafka_committed(app->consumer, cp, 10000);
        int unstable = 0;
        const rd_kafka_topic_partition_t *u = NULL;
        for (int i = 0; !e && i < cp->cnt; i++)
            if (cp->elems[i].err == RD_KAFKA_RESP_ERR_UNSTABLE_OFFSET_COMMIT) {
                unstable++;
                u = &cp->elems[i];
            }
        /* Which partitions wait, and why: the unstable ones, or all of
         * them when the call itself failed. */
        char which[300] = "all";
        if (u)
            snprintf(which, sizeof which, "%s [%d]", u->topic, (int)u->partition);
        int waiting = e ? parts->cnt : unstable;
        const char *why = e ? rd_kafka_err2str(e) : "UNSTABLE_OFFSET_COMMIT";
        rd_kafka_topic_partition_list_destroy(cp);
        int64_t now = mph_clock_mono_ns();
        if (!waiting) {
            if (now - t0 > 1000000000LL)
                mph_log(MPH_LOG_INFO, "exactly_once: offsets stable after %.1f s; restoring",
                        (double)(now - t0) / 1e9);
            return;
        }
        if ((now - t0) / 1000000 > STABLE_WAIT_MS) {
            mph__app_fail(app, MPH_ERR_TIMEOUT,
                          "exactly_once: the committed offsets of %d newly assigned partitions "
                          "(%s) are still unstable after %d s (%s): a transaction of their "
                          "previous owner stays open; stopping rather than restore their "
                          "tables without it", waiting, which, STABLE_WAIT_MS / 1000, why);
            return;
        }
        if (ck_pr_load_int(&app->state) >= APP_STOPPING)
            return; /* stopping: nothing is restored any more */
        if (warned == 0 || now - warned > 5000000000LL) {
            warned = now;
            mph_log(MPH_LOG_WARN, "exactly_once: waiting for a previous owner's transaction "
                    "to end before restoring %d partitions (%s): %s", waiting, which, why);
        }
        struct timespec ts = {0, 200000000};
        nanosleep(&ts, NULL);
    }
}

static void assign_parts(mph__coord_t *c, rd_kafka_topic_partition_list_t *parts)
{
    mph_app_t *app = c->app;
    int W = app->nworkers;
    size_t *count = calloc((size_t)W, sizeof *count);
    mph__msg_t **msgs = calloc((size_t)W, sizeof *msgs);
    for (int i = 0; i < parts->cnt; i++)
        count[worker_of(app, parts->elems[i].partition)]++;
    bool *ok = calloc((size_t)W, sizeof *ok);
    if (ok)
        await_late_revocations(c, count, parts, ok);
    mph__standby_taken(c->standby, parts);
    if (app->eos && app->ntables && parts->cnt > 0)
        await_stable_offsets(c, parts);
    for (int w = 0; w < W; w++)
        msgs[w] = count[w] && ok && ok[w] ? mph__msg_new(MSG_ASSIGN, w, count[w]) : NULL;
    free(ok);
    rd_kafka_topic_partition_list_t *held = rd_kafka_topic_partition_list_new(parts->cnt);
    memset(count, 0, (size_t)W * sizeof *count);
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        int ti = mph__app_topic_index(app, tp->topic);
        int w = worker_of(app, tp->partition);
        if (ti < 0 || !msgs[w])
            continue;
        msgs[w]->tp[count[w]].topic = ti;
        msgs[w]->tp[count[w]].partition = tp->partition;
        msgs[w]->tp[count[w]].offset = -1;
        count[w]++;
    }
    for (int w = 0; w < W; w++) {
        if (!msgs[w])
            continue;
        msgs[w]->n = count[w];
        if (app->ntables && !hold_restoring(c, w, msgs[w], held)) {
            mph__msg_free(msgs[w]);
            msgs[w] = NULL;
            continue;
        }
        if (msgs[w]->n == 0) { /* every partition restores first */
            mph__msg_free(msgs[w]);
            msgs[w] = NULL;
            continue;
        }
        msgs[w]->seq = ++c->assign_sent[w];
        if (mph__worker_post(app->workers[w], msgs[w]) != MPH_OK) {
            c->assign_sent[w]--;
            mph__tables_park(app, msgs[w]->ptr, false);
            mph__msg_free(msgs[w]);
            mph__app_fail(app, MPH_ERR_FULL, "worker %d mailbox full at assignment", w);
        }
    }
    /* No record of the new partitions may reach a worker before its slots
     * exist (worker.c drops records without a slot). */
    int64_t adeadline = mph_clock_mono_ns() + hand_wait_ms(app) * 1000000;
    if (!await_answers(c, c->assign_done, c->assign_sent, NULL, adeadline)) {
        for (int w = 0; w < W; w++)
            if (c->assign_done[w] < c->assign_sent[w])
                mph__app_fail(app, MPH_ERR_TIMEOUT,
                              "worker %d did not take its new partitions within %lld ms (an "
                              "agent callback that does not return?); stopping",
                              w, (long long)hand_wait_ms(app));
    }
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        if (in_list(held, tp->topic, tp->partition))
            continue; /* forwarded into its job's hold queue */
        rd_kafka_queue_t *pq = rd_kafka_queue_get_partition(app->consumer, tp->topic,
                                                            tp->partition);
        if (pq) {
            rd_kafka_queue_forward(pq, app->workers[worker_of(app, tp->partition)]->q);
            rd_kafka_queue_destroy(pq);
        }
    }
    free(count);
    free(msgs);
    rd_kafka_error_t *err = NULL;
    if (c->cooperative)
        err = rd_kafka_incremental_assign(app->consumer, parts);
    else
        rd_kafka_assign(app->consumer, parts);
    if (err) {
        mph_log(MPH_LOG_ERROR, "assign failed: %s", rd_kafka_error_string(err));
        rd_kafka_error_destroy(err);
    }
    if (held->cnt) {
        /* Held partitions are NOT paused: a pause bumps the partition's
         * fetch version, so the records already fetched into the hold queue
         * are discarded when served, and for a partition the app never
         * consumed from (app position unset) librdkafka resumes fetching
         * after them, not at them: they were lost (reliability scenario 5:
         * 639 committed inputs missing from the output after hand-overs
         * during a broker outage; windows::expiry_keeps_shards_bounded: the
         * first windows short). The hold queue bounds the prefetch instead:
         * librdkafka measures a partition's queue through its forwarding,
         * so fetching stops at queued.min.messages / queued.max.messages.kbytes
         * as it would for the worker's queue. */
        char errstr[512] = "";
        if (mph__restorer_start(c->restorer, errstr, sizeof errstr) != MPH_OK)
            mph__app_fail(app, MPH_ERR_NOMEM, "table recovery: %s", errstr);
    }
    int held_n = held->cnt;
    rd_kafka_topic_partition_list_destroy(held);
    c->assign_calls++;
    stat_set(&c->stats.assigned, c->stats.assigned + (uint64_t)parts->cnt);
    mph_log(MPH_LOG_INFO, "assigned %d partitions (%d held until their table shards are restored)",
            parts->cnt, held_n);
    hand_over_restored(c);
}

static void revoke_parts(mph__coord_t *c, rd_kafka_topic_partition_list_t *parts)
{
    mph_app_t *app = c->app;
    int W = app->nworkers;
    /* Partitions still restoring stop restoring now (restore.c). */
    int stopped = mph__restorer_cancel(c->restorer, parts);
    if (stopped)
        mph_log(MPH_LOG_INFO, "stopped restoring %d revoked partitions", stopped);
    size_t *count = calloc((size_t)W, sizeof *count);
    mph__msg_t **msgs = calloc((size_t)W, sizeof *msgs);
    for (int i = 0; i < parts->cnt; i++)
        count[worker_of(app, parts->elems[i].partition)]++;
    int posted = 0;
    /* Lost (session timed out, e.g. after a long pause): another member may
     * own them already, so the worker must not write their state anywhere. */
    bool lost = rd_kafka_assignment_lost(app->consumer);
    /* One deadline, on one clock, for both sides (see the DESIGN comment). */
    int64_t deadline = mph_clock_mono_ns() + app->shutdown_timeout_ms * 1000000;
    uint64_t *want = calloc((size_t)W, sizeof *want);
    for (int w = 0; w < W; w++) {
        msgs[w] = count[w] ? mph__msg_new(MSG_REVOKE, w, count[w]) : NULL;
        if (msgs[w]) {
            msgs[w]->lost = lost;
            msgs[w]->deadline_ns = deadline;
        }
    }
    memset(count, 0, (size_t)W * sizeof *count);
    for (int i = 0; i < parts->cnt; i++) {
        int ti = mph__app_topic_index(app, parts->elems[i].topic);
        int w = worker_of(app, parts->elems[i].partition);
        if (ti < 0 || !msgs[w])
            continue;
        msgs[w]->tp[count[w]].topic = ti;
        msgs[w]->tp[count[w]].partition = parts->elems[i].partition;
        count[w]++;
    }
    for (int w = 0; w < W; w++) {
        if (!msgs[w])
            continue;
        msgs[w]->n = count[w];
        /* Once posted, the message is the worker's (it frees it): nothing
         * of it is read after the post. */
        uint64_t seq = ++c->revoke_sent[w];
        msgs[w]->seq = seq;
        if (mph__worker_post(app->workers[w], msgs[w]) == MPH_OK) {
            posted++;
            c->revoke_deadline[w] = deadline;
            c->revoke_at[w] = c->assign_calls;
            if (want)
                want[w] = seq;
        } else {
            /* The worker would go on with partitions the group took away. */
            c->revoke_sent[w]--;
            mph__msg_free(msgs[w]);
            mph__app_fail(app, MPH_ERR_FULL, "worker %d mailbox full at revocation", w);
        }
    }
    rd_kafka_topic_partition_list_t *final = rd_kafka_topic_partition_list_new(parts->cnt);
    /* Late answers to earlier revocations are parked here too; their
     * points are dropped (their partitions were unassigned since). */
    reply_sink_t sink = {final, NULL, want};
    if (want &&
        !await_answers(c, c->revoke_done, want, &sink,
                       deadline + (int64_t)REPLY_GRACE_MS * 1000000)) {
        int late = 0;
        for (int w = 0; w < W; w++) {
            if (c->revoke_done[w] >= want[w])
                continue;
            late++;
            /* Before this callback returns (and the consumer rejoins): a
             * worker that handles it later must not commit a transaction
             * any more (worker.c, eos_abandoned). */
            ck_pr_store_64(&app->workers[w]->revoke_abandoned, want[w]);
        }
        ck_pr_fence_store();
        mph_log(MPH_LOG_WARN,
                "%d of %d workers did not hand back partitions in time; their shards and "
                "final points are taken when they do",
                late, posted);
    }
    free(want);
    if (rd_kafka_assignment_lost(app->consumer))
        mph_log(MPH_LOG_WARN, "assignment lost: not committing %d partitions", final->cnt);
    else
        commit_list(c, final, true);
    rd_kafka_topic_partition_list_destroy(final);

    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_queue_t *pq = rd_kafka_queue_get_partition(app->consumer, parts->elems[i].topic,
                                                            parts->elems[i].partition);
        if (pq) {
            rd_kafka_queue_forward(pq, NULL);
            rd_kafka_queue_destroy(pq);
        }
    }
    rd_kafka_error_t *err = NULL;
    if (c->cooperative)
        err = rd_kafka_incremental_unassign(app->consumer, parts);
    else
        rd_kafka_assign(app->consumer, NULL);
    if (err) {
        mph_log(MPH_LOG_ERROR, "unassign failed: %s", rd_kafka_error_string(err));
        rd_kafka_error_destroy(err);
    }
    free(count);
    free(msgs);
    mph_log(MPH_LOG_INFO, "revoked %d partitions", parts->cnt);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    (void)rk;
    mph__coord_t *c = opaque;
    stat_set(&c->stats.rebalances, c->stats.rebalances + 1);
    bool assigned = err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
    /* The leader token (services.c) is no worker's partition. */
    rd_kafka_topic_partition_list_t *rest = mph__services_rebalance(c->app, parts, assigned);
    if (rest)
        parts = rest;
    if (assigned)
        assign_parts(c, parts);
    else
        revoke_parts(c, parts);
    mph__standby_rebalanced(c->standby);
    track_reset(c);
    mph__sensors_rebalance(c->app, assigned, parts->cnt);
    if (rest)
        rd_kafka_topic_partition_list_destroy(rest);
}

/* Routes a record that arrived on the consumer queue to its worker. */
static void route_stray(mph__coord_t *c, rd_kafka_message_t *m)
{
    if (m->err) {
        mph_log_limited(&c->log_lim, 5000, MPH_LOG_WARN, "consumer: %s",
                        rd_kafka_message_errstr(m));
        if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
            char buf[512];
            rd_kafka_fatal_error(c->app->consumer, buf, sizeof buf);
            mph__app_fail(c->app, MPH_ERR_KAFKA, "fatal consumer error: %s", buf);
        }
        rd_kafka_message_destroy(m);
        return;
    }
    mph__msg_t *msg = mph__msg_new(MSG_RECORD, -1, 0);
    if (msg) {
        msg->ptr = m;
        if (mph__worker_post(c->app->workers[worker_of(c->app, m->partition)], msg) == MPH_OK)
            return;
        mph__msg_free(msg);
    }
    rd_kafka_message_destroy(m);
}

static void serve_consumer(mph__coord_t *c, int timeout_ms)
{
    rd_kafka_message_t *m;
    while ((m = rd_kafka_consumer_poll(c->app->consumer, timeout_ms))) {
        route_stray(c, m);
        timeout_ms = 0;
    }
}

static void graceful_stop(mph__coord_t *c)
{
    mph_app_t *app = c->app;
    int64_t deadline = mph_clock_mono_ns() + app->shutdown_timeout_ms * 1000000;
    mph_log(MPH_LOG_INFO, "stopping: leaving the group");
    rd_kafka_error_t *err = rd_kafka_consumer_close_queue(app->consumer, c->cq);
    if (err) {
        mph_log(MPH_LOG_WARN, "consumer close: %s", rd_kafka_error_string(err));
        rd_kafka_error_destroy(err);
    } else {
        while (!rd_kafka_consumer_closed(app->consumer) && mph_clock_mono_ns() < deadline)
            serve_consumer(c, 100);
    }
    for (int w = 0; w < app->nworkers; w++) {
        mph__msg_t *m = mph__msg_new(MSG_STOP, w, 0);
        if (!m || mph__worker_post(app->workers[w], m) != MPH_OK) {
            mph__msg_free(m);
            c->stop_done[w] = 1; /* nothing to wait for */
        }
    }
    rd_kafka_topic_partition_list_t *final = rd_kafka_topic_partition_list_new(8);
    int64_t wdeadline = mph_clock_mono_ns() + app->shutdown_timeout_ms * 1000000;
    uint64_t *want = calloc((size_t)app->nworkers, sizeof *want);
    for (int w = 0; want && w < app->nworkers; w++)
        want[w] = 1;
    reply_sink_t sink = {final, NULL, NULL};
    if (want)
        await_answers(c, c->stop_done, want, &sink, wdeadline);
    free(want);
    if (final->cnt > 0 && !rd_kafka_consumer_closed(app->consumer))
        commit_list(c, final, true);
    rd_kafka_topic_partition_list_destroy(final);
    /* Whatever the app producer still holds (mph_send) gets its chance. */
    int64_t left = (deadline - mph_clock_mono_ns()) / 1000000;
    rd_kafka_flush(app->producer, left > 0 ? (int)left : 0);
}

static void *coord_main(void *arg)
{
    mph__coord_t *c = arg;
    mph_app_t *app = c->app;
    mph_log_set_thread_name("coordinator");
    struct pollfd pfd[3] = {
        {app->stop_fd, POLLIN, 0}, {c->mbox.fd, POLLIN, 0}, {c->cq_fd, POLLIN, 0}};
    for (;;) {
        serve_consumer(c, 0);
        rd_kafka_poll(app->producer, 0);
        mph__msg_t *m;
        while ((m = mph__mailbox_pop_sc(&c->mbox)))
            handle_msg(c, m, NULL);
        hand_over_restored(c);
        mph__standby_poll(c->standby);
        int st = ck_pr_load_int(&app->state);
        if (st == APP_STOPPING)
            break;
        pfd[0].revents = pfd[1].revents = pfd[2].revents = 0;
        poll(pfd, 3, 100);
        if (pfd[0].revents)
            break;
        if (pfd[1].revents)
            mph__eventfd_drain(c->mbox.fd);
        if (pfd[2].revents)
            mph__eventfd_drain(c->cq_fd);
    }
    /* Timers, tasks and stop hooks end while mph_send still works; the
     * graceful stop flushes what they sent. */
    mph__services_stop(app);
    ck_pr_store_int(&app->state, APP_STOPPING);
    graceful_stop(c);
    /* Whatever still restores (the close failed) lets go of its shards
     * before the workers, whose stores they use, go away. */
    mph__restorer_cancel(c->restorer, NULL);
    mph__standby_stop(c->standby);
    for (int w = 0; w < app->nworkers; w++)
        mph__worker_join(app->workers[w]);
    mph_log(MPH_LOG_INFO, "stopped");
    return NULL;
}

static void coord_free_arrays(mph__coord_t *c)
{
    free(c->revoke_sent);
    free(c->revoke_done);
    free(c->assign_sent);
    free(c->assign_done);
    free(c->stop_done);
    free(c->revoke_deadline);
    free(c->revoke_at);
    for (size_t t = 0; t < c->ntrack; t++) {
        free(c->track[t].want);
        free(c->track[t].landed);
    }
    free(c->track);
}

mph__coord_t *mph__coord_new(mph_app_t *app, char *errstr, size_t errstr_size)
{
    mph__coord_t *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    c->app = app;
    c->cq_fd = -1;
    size_t W = app->nworkers > 0 ? (size_t)app->nworkers : 1;
    c->revoke_sent = calloc(W, sizeof *c->revoke_sent);
    c->revoke_done = calloc(W, sizeof *c->revoke_done);
    c->assign_sent = calloc(W, sizeof *c->assign_sent);
    c->assign_done = calloc(W, sizeof *c->assign_done);
    c->stop_done = calloc(W, sizeof *c->stop_done);
    c->revoke_deadline = calloc(W, sizeof *c->revoke_deadline);
    c->revoke_at = calloc(W, sizeof *c->revoke_at);
    c->ntrack = app->ntopics;
    c->track = calloc(app->ntopics ? app->ntopics : 1, sizeof *c->track);
    if (!c->track || !c->revoke_sent || !c->revoke_done || !c->assign_sent || !c->assign_done ||
        !c->stop_done || !c->revoke_deadline || !c->revoke_at ||
        mph__mailbox_init(&c->mbox, 4096) != MPH_OK) {
        snprintf(errstr, errstr_size, "coordinator: out of memory or file descriptors");
        coord_free_arrays(c);
        free(c);
        return NULL;
    }
    c->cq_fd = mph__eventfd_new();
    c->restorer = mph__restorer_new(app, c->mbox.fd, false);
    c->standby = c->restorer ? mph__standby_new(app, c->mbox.fd) : NULL;
    if (!c->restorer || !c->standby) {
        mph__restorer_destroy(c->restorer);
        snprintf(errstr, errstr_size, "coordinator: out of memory");
        mph__mailbox_fini(&c->mbox);
        coord_free_arrays(c);
        free(c);
        return NULL;
    }
    return c;
}

/* Installs the callbacks on the consumer's configuration. */
void mph__coord_configure(mph__coord_t *c, rd_kafka_conf_t *kc)
{
    rd_kafka_conf_set_rebalance_cb(kc, rebalance_cb);
    rd_kafka_conf_set_offset_commit_cb(kc, offset_commit_cb);
    rd_kafka_conf_set_opaque(kc, c);
}

mph_err_t mph__coord_start(mph__coord_t *c, char *errstr, size_t errstr_size)
{
    mph_app_t *app = c->app;
    rd_kafka_poll_set_consumer(app->consumer);
    c->cq = rd_kafka_queue_get_consumer(app->consumer);
    static const uint64_t one = 1;
    rd_kafka_queue_io_event_enable(c->cq, c->cq_fd, &one, sizeof one);
    c->cooperative = strcmp(rd_kafka_rebalance_protocol(app->consumer), "COOPERATIVE") == 0;

    size_t n = 1;
    for (size_t i = 0; i < app->ntopics; i++)
        n += app->topics[i]->nagents > 0;
    rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < app->ntopics; i++)
        if (app->topics[i]->nagents > 0)
            rd_kafka_topic_partition_list_add(subs, app->topics[i]->name, RD_KAFKA_PARTITION_UA);
    /* Leader election: membership of `<app_id>-__leader` (services.c). */
    if (mph__services_leader_topic(app))
        rd_kafka_topic_partition_list_add(subs, mph__services_leader_topic(app),
                                          RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = subs->cnt ? rd_kafka_subscribe(app->consumer, subs) : 0;
    rd_kafka_topic_partition_list_destroy(subs);
    if (e) {
        snprintf(errstr, errstr_size, "subscribe: %s", rd_kafka_err2str(e));
        return mph__kafka_err(e);
    }
    int rc = pthread_create(&c->thread, NULL, coord_main, c);
    if (rc) {
        snprintf(errstr, errstr_size, "cannot start the coordinator: %s", strerror(rc));
        return MPH_ERR_NOMEM;
    }
    c->started = true;
    return MPH_OK;
}

void mph__coord_join(mph__coord_t *c)
{
    if (c && c->started) {
        pthread_join(c->thread, NULL);
        c->started = false;
    }
}

void mph__coord_destroy(mph__coord_t *c)
{
    if (!c)
        return;
    mph__coord_join(c);
    mph__restorer_destroy(c->restorer);
    mph__standby_destroy(c->standby);
    mph__msg_t *m;
    if (c->mbox.buf)
        while ((m = mph__mailbox_pop_sc(&c->mbox)))
            mph__msg_free(m);
    if (c->cq) {
        rd_kafka_queue_io_event_enable(c->cq, -1, NULL, 0);
        rd_kafka_queue_destroy(c->cq);
    }
    if (c->cq_fd >= 0)
        close(c->cq_fd);
    mph__mailbox_fini(&c->mbox);
    coord_free_arrays(c);
    free(c);
}

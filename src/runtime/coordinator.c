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
 * to the worker, then forwards the partition's librdkafka queue into the
 * worker's queue, and only then assigns: the first record a worker sees for
 * a partition is therefore always preceded by the hand-over in its mailbox.
 *
 * Revocation: MSG_REVOKE to each worker concerned; the worker serves its
 * producer until the partition's sends are acknowledged (bounded by
 * shutdown_timeout_ms), replies with the final commit points and forgets
 * the partition. The coordinator commits those synchronously (unless the
 * assignment was lost), un-forwards the queues and unassigns.
 *
 * Commits: workers post commit points every commit_interval_ms or
 * commit_every events; the coordinator commits them asynchronously. Only
 * commit points (acks.c) ever reach Kafka.
 *
 * Stop: rd_kafka_consumer_close_queue() runs the revocation above for all
 * partitions, then the workers are told to stop and report; whatever they
 * report is committed; everything is bounded by shutdown_timeout_ms.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ck_pr.h>

#include "io/uring.h"
#include "mephisto/log.h"
#include "runtime/coordinator.h"
#include "runtime/mailbox.h"
#include "runtime/monitor.h"
#include "runtime/msg.h"
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
};

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
}

mph_err_t mph__coord_post(mph__coord_t *c, void *msg)
{
    return mph__mailbox_push_mpsc(&c->mbox, msg);
}

/* ------------------------------------------------------------------ */

static void commit_list(mph__coord_t *c, rd_kafka_topic_partition_list_t *l, bool sync)
{
    if (l->cnt == 0)
        return;
    c->commit_started_ns = mph_clock_mono_ns();
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

static void offset_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    (void)offsets;
    mph__coord_t *c = opaque;
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
    }
}

/* Handles one worker → coordinator message outside a revocation. */
static void handle_msg(mph__coord_t *c, mph__msg_t *m, rd_kafka_topic_partition_list_t *collect)
{
    if ((m->kind == MSG_REVOKED || m->kind == MSG_STOPPED) && m->ptr) {
        mph__tables_park(c->app, m->ptr);
        m->ptr = NULL;
    }
    if (m->kind == MSG_COMMIT) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)m->n);
        add_tps(c, l, m);
        commit_list(c, l, false);
        rd_kafka_topic_partition_list_destroy(l);
    } else if (collect) {
        add_tps(c, collect, m);
    }
    mph__msg_free(m);
}

/* Waits until `want` replies of kind arrived (or the deadline), adding
 * their commit points to collect and committing any COMMIT messages. */
static int await_replies(mph__coord_t *c, int kind, int want,
                         rd_kafka_topic_partition_list_t *collect, int64_t deadline_ns)
{
    int got = 0;
    while (got < want) {
        mph__msg_t *m;
        while (got < want && (m = mph__mailbox_pop_sc(&c->mbox))) {
            if (m->kind == kind)
                got++;
            handle_msg(c, m, m->kind == kind ? collect : NULL);
        }
        if (got >= want)
            break;
        int64_t left = (deadline_ns - mph_clock_mono_ns()) / 1000000;
        if (left <= 0)
            break;
        struct pollfd pfd = {c->mbox.fd, POLLIN, 0};
        poll(&pfd, 1, (int)(left > 100 ? 100 : left));
        if (pfd.revents)
            mph__eventfd_drain(c->mbox.fd);
    }
    return got;
}

static int worker_of(const mph_app_t *app, int32_t partition)
{
    return (int)(partition % app->nworkers);
}

static void assign_parts(mph__coord_t *c, rd_kafka_topic_partition_list_t *parts)
{
    mph_app_t *app = c->app;
    int W = app->nworkers;
    size_t *count = calloc((size_t)W, sizeof *count);
    mph__msg_t **msgs = calloc((size_t)W, sizeof *msgs);
    for (int i = 0; i < parts->cnt; i++)
        count[worker_of(app, parts->elems[i].partition)]++;
    for (int w = 0; w < W; w++)
        msgs[w] = count[w] ? mph__msg_new(MSG_ASSIGN, w, count[w]) : NULL;
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
        if (app->ntables) {
            /* Recover the shards of the worker's new partitions first. */
            int32_t *nums = malloc(count[w] * sizeof *nums);
            size_t nn = 0;
            for (size_t i = 0; nums && i < count[w]; i++) {
                bool seen = false;
                for (size_t j = 0; j < nn; j++)
                    seen |= nums[j] == msgs[w]->tp[i].partition;
                if (!seen)
                    nums[nn++] = msgs[w]->tp[i].partition;
            }
            char err[512] = "";
            msgs[w]->ptr = nums ? mph__tables_handover(app, w, nums, nn, err, sizeof err) : NULL;
            free(nums);
            if (!msgs[w]->ptr) {
                mph__app_fail(app, MPH_ERR_STORE, "table recovery for worker %d failed: %s", w,
                              err[0] ? err : "out of memory");
                mph__msg_free(msgs[w]);
                msgs[w] = NULL;
                continue;
            }
        }
        if (mph__worker_post(app->workers[w], msgs[w]) != MPH_OK) {
            mph__tables_park(app, msgs[w]->ptr);
            mph__msg_free(msgs[w]);
            mph__app_fail(app, MPH_ERR_FULL, "worker %d mailbox full at assignment", w);
        }
    }
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
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
    stat_set(&c->stats.assigned, c->stats.assigned + (uint64_t)parts->cnt);
    ck_pr_store_int(&app->ready, 1);
    mph_log(MPH_LOG_INFO, "assigned %d partitions", parts->cnt);
}

static void revoke_parts(mph__coord_t *c, rd_kafka_topic_partition_list_t *parts)
{
    mph_app_t *app = c->app;
    int W = app->nworkers;
    size_t *count = calloc((size_t)W, sizeof *count);
    mph__msg_t **msgs = calloc((size_t)W, sizeof *msgs);
    for (int i = 0; i < parts->cnt; i++)
        count[worker_of(app, parts->elems[i].partition)]++;
    int posted = 0;
    /* Lost (session timed out, e.g. after a long pause): another member may
     * own them already, so the worker must not write their state anywhere. */
    bool lost = rd_kafka_assignment_lost(app->consumer);
    for (int w = 0; w < W; w++) {
        msgs[w] = count[w] ? mph__msg_new(MSG_REVOKE, w, count[w]) : NULL;
        if (msgs[w])
            msgs[w]->lost = lost;
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
        if (mph__worker_post(app->workers[w], msgs[w]) == MPH_OK)
            posted++;
        else
            mph__msg_free(msgs[w]);
    }
    rd_kafka_topic_partition_list_t *final = rd_kafka_topic_partition_list_new(parts->cnt);
    int64_t deadline = mph_clock_mono_ns() + app->shutdown_timeout_ms * 1000000;
    int got = await_replies(c, MSG_REVOKED, posted, final, deadline);
    if (got < posted)
        mph_log(MPH_LOG_WARN, "%d of %d workers did not hand back partitions in time",
                posted - got, posted);
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
    if (assigned)
        assign_parts(c, parts);
    else
        revoke_parts(c, parts);
    mph__sensors_rebalance(c->app, assigned, parts->cnt);
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
    int posted = 0;
    for (int w = 0; w < app->nworkers; w++) {
        mph__msg_t *m = mph__msg_new(MSG_STOP, w, 0);
        if (m && mph__worker_post(app->workers[w], m) == MPH_OK)
            posted++;
        else
            mph__msg_free(m);
    }
    rd_kafka_topic_partition_list_t *final = rd_kafka_topic_partition_list_new(8);
    int64_t wdeadline = mph_clock_mono_ns() + app->shutdown_timeout_ms * 1000000;
    await_replies(c, MSG_STOPPED, posted, final, wdeadline);
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
    ck_pr_store_int(&app->state, APP_STOPPING);
    graceful_stop(c);
    for (int w = 0; w < app->nworkers; w++)
        mph__worker_join(app->workers[w]);
    mph_log(MPH_LOG_INFO, "stopped");
    return NULL;
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
    if (mph__mailbox_init(&c->mbox, 4096) != MPH_OK) {
        snprintf(errstr, errstr_size, "coordinator: out of memory or file descriptors");
        free(c);
        return NULL;
    }
    c->cq_fd = mph__eventfd_new();
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

    size_t n = 0;
    for (size_t i = 0; i < app->ntopics; i++)
        n += app->topics[i]->nagents > 0;
    rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < app->ntopics; i++)
        if (app->topics[i]->nagents > 0)
            rd_kafka_topic_partition_list_add(subs, app->topics[i]->name, RD_KAFKA_PARTITION_UA);
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
    free(c);
}

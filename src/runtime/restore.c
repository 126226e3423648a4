/*
 * DESIGN — restoring table shards off the assign path.
 *
 * A partition's table shards must be complete before its worker processes
 * a record of it, but recovering them can take minutes for a large table.
 * Recovery used to run inside the assign callback, so every partition of
 * the process (and the coordinator: commits, other rebalances) waited for
 * the biggest shard. Now the coordinator assigns everything at once and
 * splits the new partitions of each worker in two:
 *  - partition numbers whose shards the worker already holds (or that have
 *    no table) go to the worker at once, as before;
 *  - every other partition number becomes a job: its shards, its source
 *    partitions (all topics with that number) and a hold queue. The
 *    coordinator forwards those partitions' librdkafka queues into the hold
 *    queue instead of the worker's queue, so nothing of them reaches the
 *    worker before its shards (not paused: a pause would discard what was
 *    already fetched; coordinator.c, assign_parts).
 * The jobs of one assignment form a run: one thread ("restore") with one
 * group-less consumer (recovery.c) that recovers all their shards at once;
 * each shard is marked finished as soon as its own changelog partition is
 * complete and durable. The coordinator polls (each loop, ~100 ms): a job
 * whose shards are all finished is taken out here and handed to its worker
 * the usual way (coordinator.c: MSG_ASSIGN carrying the shards, wait for
 * MSG_ASSIGNED, then forward the hold queue and the partitions' queues to
 * the worker's queue, which keeps the records in order). The hold queue
 * is un-forwarded before it is destroyed: librdkafka destroys a queue of
 * its own by purging it, and a purge follows the forwarding, so destroying
 * it while forwarded emptied the worker's queue (records of every
 * partition of the worker, fetched and never processed, lost).
 *
 * Ownership: while a run is restoring a shard, only the run's thread
 * touches it (the parking lot marks it lent); the coordinator takes it
 * back only after the item's finished flag (a release store made after the
 * last write) or after the thread was joined. A revocation cancels the
 * jobs of the revoked partition numbers first: it raises their items'
 * cancel flags and waits for the run to finish them (one poll, ~100 ms;
 * the pending batch is flushed, so the shard keeps what it applied), then
 * parks the shards and drops the hold queues with whatever they held (the
 * records were never processed, and the next owner starts from the
 * committed offsets).
 *
 * This file must never hand over a shard that is not finished, and never
 * free a run whose thread may still run (stats read runs under the lock).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ck_pr.h>

#include "io/uring.h"
#include "mephisto/log.h"
#include "runtime/restore.h"
#include "state/recovery.h"

typedef struct restore_run {
    mph__restorer_t *r;
    pthread_t thread;
    bool started;
    int ended; /* ck_pr: mph__recover returned */
    mph_err_t err;
    char errstr[512];
    mph__recovery_item_t *items;
    size_t nitems;
    int njobs; /* jobs not yet taken or cancelled */
    struct restore_run *next;
} restore_run_t;

struct mph__restorer {
    mph_app_t *app;
    int wake_fd;
    bool follow; /* standby replicas: runs follow their changelogs until cancelled */
    pthread_mutex_t lock; /* guards runs (the list and the frees) against stats readers */
    restore_run_t *runs;
    mph__restore_job_t *jobs;    /* all jobs of started runs */
    mph__restore_job_t *pending; /* added, not started */
    int njobs;                   /* jobs alive (pending or in runs) */
};

mph__restorer_t *mph__restorer_new(mph_app_t *app, int wake_fd, bool follow)
{
    mph__restorer_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->app = app;
    r->wake_fd = wake_fd;
    r->follow = follow;
    pthread_mutex_init(&r->lock, NULL);
    return r;
}

void mph__restore_job_free(mph__restore_job_t *job)
{
    if (!job)
        return;
    if (job->hold) {
        /* librdkafka destroys a queue made by rd_kafka_queue_new by
         * purging it, and the purge of a forwarded queue purges the queue
         * it forwards to: after a hand-over (hold forwarded into the
         * worker's queue) that threw away every record the worker had
         * fetched but not yet processed, of all its partitions, and they
         * were never fetched again. Un-forwarded, the purge drops only
         * what the hold queue itself still holds (nothing after a
         * hand-over; a cancelled job's unprocessed records). */
        rd_kafka_queue_forward(job->hold, NULL);
        rd_kafka_queue_destroy(job->hold);
    }
    free(job->tp);
    free(job->set);
    free(job);
}

mph_err_t mph__restorer_add(mph__restorer_t *r, int worker, int32_t partition, mph__tp_t *tp,
                            size_t ntp, rd_kafka_queue_t *hold, mph__shard_set_t *set)
{
    mph__restore_job_t *job = calloc(1, sizeof *job);
    if (!job)
        return MPH_ERR_NOMEM;
    job->worker = worker;
    job->partition = partition;
    job->tp = tp;
    job->ntp = ntp;
    job->hold = hold;
    job->set = set;
    job->next = r->pending;
    r->pending = job;
    r->njobs++;
    return MPH_OK;
}

static void progress(const mph__recovery_progress_t *p, void *opaque)
{
    mph_app_t *app = opaque;
    ck_pr_store_64((uint64_t *)&app->recovery_total, (uint64_t)p->total);
    ck_pr_store_64((uint64_t *)&app->recovery_done, (uint64_t)p->done);
}

static void *run_main(void *arg)
{
    restore_run_t *run = arg;
    mph_app_t *app = run->r->app;
    mph_log_set_thread_name(run->r->follow ? "standby" : "restore");
    int64_t batch = mph_conf_get_int(app->conf, "recovery_batch_records", 100000);
    int timeout = (int)(app->shutdown_timeout_ms > 60000 ? app->shutdown_timeout_ms : 60000);
    if (!run->r->follow) {
        /* The stats show this restore from its start, not the last one's
         * numbers (mph__recover reports progress only once it reads). */
        ck_pr_store_64((uint64_t *)&app->recovery_total, 0);
        ck_pr_store_64((uint64_t *)&app->recovery_done, 0);
    }
    if (run->r->follow)
        run->err = mph__recover_follow(app->kenv, app->conf, run->items, run->nitems, batch,
                                       app->nworkers, run->errstr, sizeof run->errstr);
    else
        run->err = mph__recover(app->kenv, app->conf, run->items, run->nitems, batch,
                                app->nworkers, timeout, progress, app, run->errstr,
                                sizeof run->errstr);
    ck_pr_fence_store();
    ck_pr_store_int(&run->ended, 1);
    if (run->r->wake_fd >= 0)
        mph__eventfd_signal(run->r->wake_fd);
    return NULL;
}

/* Parks a job's shards and frees it (cancelled, or its run failed to
 * start). Only for shards no thread touches any more. */
static void drop_job(mph__restorer_t *r, mph__restore_job_t *job)
{
    mph__tables_park(r->app, job->set, false);
    job->set = NULL;
    mph__restore_job_free(job);
    r->njobs--;
}

mph_err_t mph__restorer_start(mph__restorer_t *r, char *errstr, size_t errstr_size)
{
    if (!r->pending)
        return MPH_OK;
    size_t n = 0;
    for (mph__restore_job_t *j = r->pending; j; j = j->next)
        n += j->set->n;
    restore_run_t *run = calloc(1, sizeof *run);
    mph__recovery_item_t *items = calloc(n ? n : 1, sizeof *items);
    if (!run || !items) {
        free(run);
        free(items);
        snprintf(errstr, errstr_size, "restore: out of memory");
        goto drop;
    }
    run->r = r;
    run->items = items;
    run->nitems = n;
    size_t k = 0;
    for (mph__restore_job_t *j = r->pending; j; j = j->next) {
        j->run = run;
        j->first = k;
        for (size_t i = 0; i < j->set->n; i++, k++) {
            mph__shard_t *sh = j->set->shards[i];
            items[k].shard = sh;
            items[k].changelog = r->app->tables[sh->table]->changelog;
            items[k].start = sh->applied + 1;
            items[k].total = -1;
        }
        run->njobs++;
    }
    int rc = pthread_create(&run->thread, NULL, run_main, run);
    if (rc) {
        snprintf(errstr, errstr_size, "cannot start a restore thread: %s", strerror(rc));
        free(run);
        free(items);
        goto drop;
    }
    run->started = true;
    if (!r->follow)
        ck_pr_add_64(&r->app->recoveries, 1);
    pthread_mutex_lock(&r->lock);
    run->next = r->runs;
    r->runs = run;
    pthread_mutex_unlock(&r->lock);
    mph__restore_job_t *last = r->pending;
    while (last->next)
        last = last->next;
    last->next = r->jobs;
    r->jobs = r->pending;
    r->pending = NULL;
    mph_log(MPH_LOG_INFO, "%s %zu table shards of %d partitions in the background",
            r->follow ? "standby replicas of" : "restoring", n, run->njobs);
    return MPH_OK;
drop:
    while (r->pending) {
        mph__restore_job_t *j = r->pending;
        r->pending = j->next;
        drop_job(r, j);
    }
    return MPH_ERR_NOMEM;
}

/* Frees runs whose thread ended and whose jobs are all gone. */
static void reap_runs(mph__restorer_t *r)
{
    pthread_mutex_lock(&r->lock);
    restore_run_t **pp = &r->runs;
    while (*pp) {
        restore_run_t *run = *pp;
        if (run->njobs == 0 && ck_pr_load_int(&run->ended)) {
            *pp = run->next;
            pthread_join(run->thread, NULL);
            free(run->items);
            free(run);
        } else {
            pp = &run->next;
        }
    }
    pthread_mutex_unlock(&r->lock);
}

static bool job_finished(const mph__restore_job_t *job)
{
    for (size_t i = 0; i < job->set->n; i++)
        if (!ck_pr_load_int(&job->run->items[job->first + i].finished))
            return false;
    return true;
}

static void unlink_job(mph__restorer_t *r, mph__restore_job_t *job)
{
    for (mph__restore_job_t **pp = &r->jobs; *pp; pp = &(*pp)->next)
        if (*pp == job) {
            *pp = job->next;
            job->next = NULL;
            break;
        }
    job->run->njobs--;
    r->njobs--;
}

mph__restore_job_t *mph__restorer_take_ready(mph__restorer_t *r, mph_err_t *err, char *errstr,
                                             size_t errstr_size)
{
    *err = MPH_OK;
    mph__restore_job_t *found = NULL;
    for (mph__restore_job_t *j = r->jobs; j && !found; j = j->next) {
        if (job_finished(j)) {
            found = j;
        } else if (ck_pr_load_int(&j->run->ended)) {
            /* The run stopped before this job's shards were complete. */
            ck_pr_fence_load();
            *err = j->run->err ? j->run->err : MPH_ERR_INTERNAL;
            snprintf(errstr, errstr_size, "table recovery for worker %d, partition %d: %s",
                     j->worker, (int)j->partition,
                     j->run->errstr[0] ? j->run->errstr : mph_err_str(*err));
            return NULL;
        }
    }
    if (!found) {
        reap_runs(r);
        return NULL;
    }
    ck_pr_fence_load();
    int64_t t0 = INT64_MAX;
    for (size_t i = 0; i < found->set->n; i++) {
        const mph__recovery_item_t *it = &found->run->items[found->first + i];
        found->records += it->records;
        int64_t st = (int64_t)ck_pr_load_64((uint64_t *)&it->started_ns);
        if (st < t0)
            t0 = st;
    }
    found->seconds = (double)(mph_clock_mono_ns() - t0) / 1e9;
    pthread_mutex_lock(&r->lock);
    unlink_job(r, found);
    pthread_mutex_unlock(&r->lock);
    reap_runs(r);
    return found;
}

/* True when parts names one of the job's source partitions. */
static bool job_in(mph_app_t *app, const mph__restore_job_t *job,
                   const rd_kafka_topic_partition_list_t *parts)
{
    for (int i = 0; i < parts->cnt; i++) {
        if (parts->elems[i].partition != job->partition)
            continue;
        int ti = mph__app_topic_index(app, parts->elems[i].topic);
        for (size_t k = 0; k < job->ntp; k++)
            if (job->tp[k].topic == ti)
                return true;
    }
    return false;
}

typedef struct match {
    const rd_kafka_topic_partition_list_t *parts; /* or */
    const int32_t *nums;
    size_t nnums;
    bool all;
} match_t;

static bool matches(mph_app_t *app, const mph__restore_job_t *j, const match_t *m)
{
    if (m->all)
        return true;
    if (m->parts)
        return job_in(app, j, m->parts);
    for (size_t i = 0; i < m->nnums; i++)
        if (m->nums[i] == j->partition)
            return true;
    return false;
}

static int cancel_matching(mph__restorer_t *r, const match_t *m);

int mph__restorer_cancel(mph__restorer_t *r, const rd_kafka_topic_partition_list_t *parts)
{
    match_t m = {parts, NULL, 0, parts == NULL};
    return cancel_matching(r, &m);
}

int mph__restorer_cancel_numbers(mph__restorer_t *r, const int32_t *nums, size_t n)
{
    match_t m = {NULL, nums, n, false};
    return cancel_matching(r, &m);
}

/* Jobs whose run ended before they finished (a failed run): their shards
 * are dropped (partly applied). Returns how many. */
int mph__restorer_drop_failed(mph__restorer_t *r)
{
    int n = 0;
    for (;;) {
        mph__restore_job_t *j = r->jobs;
        while (j && !(ck_pr_load_int(&j->run->ended) && !job_finished(j)))
            j = j->next;
        if (!j)
            return n;
        int32_t p = j->partition;
        mph_log(MPH_LOG_WARN, "%s of partition %d failed: %s",
                r->follow ? "standby replica" : "restore", (int)p,
                j->run->errstr[0] ? j->run->errstr : mph_err_str(j->run->err));
        mph__restorer_cancel_numbers(r, &p, 1);
        n++;
    }
}

static int cancel_matching(mph__restorer_t *r, const match_t *m)
{
    int cancelled = 0;
    /* Not started: nothing touches their shards. */
    for (mph__restore_job_t **pp = &r->pending; *pp;) {
        mph__restore_job_t *j = *pp;
        if (matches(r->app, j, m)) {
            *pp = j->next;
            drop_job(r, j);
            cancelled++;
        } else {
            pp = &j->next;
        }
    }
    /* Raise every flag first, so that all of them stop in the same poll. */
    for (mph__restore_job_t *j = r->jobs; j; j = j->next)
        if (matches(r->app, j, m))
            for (size_t i = 0; i < j->set->n; i++)
                ck_pr_store_int(&j->run->items[j->first + i].cancel, 1);
    int64_t t0 = mph_clock_mono_ns();
    bool warned = false;
    for (mph__restore_job_t **pp = &r->jobs; *pp;) {
        mph__restore_job_t *j = *pp;
        if (!matches(r->app, j, m)) {
            pp = &j->next;
            continue;
        }
        while (!job_finished(j) && !ck_pr_load_int(&j->run->ended)) {
            if (!warned && mph_clock_mono_ns() - t0 > 2000000000LL) {
                mph_log(MPH_LOG_WARN, "waiting for the restore thread to let go of the shards "
                                      "of revoked partitions");
                warned = true;
            }
            struct timespec ts = {0, 5000000};
            nanosleep(&ts, NULL);
        }
        ck_pr_fence_load();
        pthread_mutex_lock(&r->lock);
        unlink_job(r, j);
        pthread_mutex_unlock(&r->lock);
        /* A run that failed leaves its unfinished shards partly applied. */
        bool sound = job_finished(j);
        mph__tables_park(r->app, j->set, !sound);
        j->set = NULL;
        if (!r->follow)
            mph_log(MPH_LOG_INFO, "worker %d, partition %d: restore stopped (partition revoked)",
                    j->worker, (int)j->partition);
        mph__restore_job_free(j);
        cancelled++;
    }
    reap_runs(r);
    return cancelled;
}

bool mph__restorer_idle(const mph__restorer_t *r)
{
    return r->njobs == 0;
}

size_t mph__restorer_stats(mph__restorer_t *r, mph__restore_stat_t *out, size_t max)
{
    size_t n = 0;
    int64_t now = mph_clock_mono_ns();
    pthread_mutex_lock(&r->lock);
    for (restore_run_t *run = r->runs; run; run = run->next) {
        for (size_t i = 0; i < run->nitems; i++) {
            mph__recovery_item_t *it = &run->items[i];
            if (ck_pr_load_int(&it->finished) || ck_pr_load_int(&run->ended))
                continue;
            if (n < max) {
                mph__restore_stat_t *s = &out[n];
                s->table = it->shard->table;
                s->partition = (int32_t)it->shard->partition;
                s->worker = (int)(it->shard->partition % (uint32_t)r->app->nworkers);
                s->records_restored = (int64_t)ck_pr_load_64((uint64_t *)&it->records);
                s->records_total = (int64_t)ck_pr_load_64((uint64_t *)&it->total);
                int64_t st = (int64_t)ck_pr_load_64((uint64_t *)&it->started_ns);
                double secs = st ? (double)(now - st) / 1e9 : 0;
                s->rate = secs > 0 ? (double)s->records_restored / secs : 0;
                s->lag = (int64_t)ck_pr_load_64((uint64_t *)&it->lag);
                s->eta_s = s->rate > 0 && s->records_total >= 0
                               ? (double)(s->records_total - s->records_restored) / s->rate
                               : -1;
            }
            n++;
        }
    }
    pthread_mutex_unlock(&r->lock);
    return n;
}

void mph__restorer_destroy(mph__restorer_t *r)
{
    if (!r)
        return;
    mph__restorer_cancel(r, NULL);
    pthread_mutex_lock(&r->lock);
    while (r->runs) {
        restore_run_t *run = r->runs;
        r->runs = run->next;
        pthread_join(run->thread, NULL);
        free(run->items);
        free(run);
    }
    pthread_mutex_unlock(&r->lock);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

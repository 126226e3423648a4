/*
 * Restoring table shards off the assign path (see restore.c).
 * Every function here is @locality coordinator, except
 * mph__restorer_stats (@locality any).
 */
#ifndef MPH_RUNTIME_RESTORE_H
#define MPH_RUNTIME_RESTORE_H

#include "runtime/app.h"
#include "runtime/coordinator.h" /* mph__restore_stat_t */
#include "runtime/msg.h"
#include "runtime/table.h"

typedef struct mph__restorer mph__restorer_t;

/* A partition number of one worker whose shards are restoring: its source
 * partitions (tp, every topic) are assigned but held back. */
typedef struct mph__restore_job {
    int worker;
    int32_t partition;
    size_t ntp;
    mph__tp_t *tp;           /* owned */
    rd_kafka_queue_t *hold;  /* owned: the tps' records until the hand-over */
    mph__shard_set_t *set;   /* owned: the shards, recovered once the job is ready */
    int64_t records;         /* changelog records replayed (once ready) */
    double seconds;          /* time it took */
    /* private */
    struct restore_run *run;
    size_t first;            /* its items: run->items[first .. first + set->n) */
    struct mph__restore_job *next;
} mph__restore_job_t;

/* wake_fd (an eventfd, borrowed) is signalled when a run ends. follow:
 * the standby replicas' restorer (runs tail their changelogs until
 * cancelled; its jobs are never ready). */
mph__restorer_t *mph__restorer_new(mph_app_t *app, int wake_fd, bool follow);
/* Cancels and joins every run; the shards go back to the parking lot and
 * the hold queues are destroyed. NULL is a no-op. */
void mph__restorer_destroy(mph__restorer_t *r);

/* Queues a job (transferred on success: tp, hold and set become the
 * restorer's). Nothing runs until mph__restorer_start. */
mph_err_t mph__restorer_add(mph__restorer_t *r, int worker, int32_t partition, mph__tp_t *tp,
                            size_t ntp, rd_kafka_queue_t *hold, mph__shard_set_t *set);
/* Starts one restore thread, with one consumer, for the jobs added since
 * the last start. On failure the jobs are dropped like cancelled ones
 * (shards parked, hold queues destroyed) and errstr says why. */
mph_err_t mph__restorer_start(mph__restorer_t *r, char *errstr, size_t errstr_size);
/* A job whose shards are all recovered, removed from the restorer (the
 * caller owns it: hand it over, then mph__restore_job_free), or NULL.
 * Returns NULL with *err set (and errstr) when a run failed: its jobs
 * cannot be handed over (the app must stop). */
mph__restore_job_t *mph__restorer_take_ready(mph__restorer_t *r, mph_err_t *err, char *errstr,
                                             size_t errstr_size);
void mph__restore_job_free(mph__restore_job_t *job);
/* Stops restoring every job with a partition number in parts (revoked or
 * lost) at once and waits for its run to let go of the shards (about
 * 100 ms), then parks the shards (they keep what was applied) and
 * destroys the hold queues. Returns how many jobs it cancelled. */
int mph__restorer_cancel(mph__restorer_t *r, const rd_kafka_topic_partition_list_t *parts);
/* The same for the jobs of the partition numbers nums[0..n). */
int mph__restorer_cancel_numbers(mph__restorer_t *r, const int32_t *nums, size_t n);
/* Drops the jobs of runs that failed (shards destroyed: partly applied),
 * with a warning; returns how many. */
int mph__restorer_drop_failed(mph__restorer_t *r);
/* True when no job is restoring or waiting to be handed over. */
bool mph__restorer_idle(const mph__restorer_t *r);
/* Copies up to max entries (one per shard being restored) into out;
 * returns how many shards are restoring. @locality any */
size_t mph__restorer_stats(mph__restorer_t *r, mph__restore_stat_t *out, size_t max);

#endif

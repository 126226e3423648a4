/*
 * Changelog recovery: rebuilds shards from their changelog partitions
 * before the partitions are handed to workers (Faust's TableManager
 * recovery). Runs on a restore thread (runtime/restore.c), which owns the
 * shards while it recovers them.
 */
#ifndef MPH_STATE_RECOVERY_H
#define MPH_STATE_RECOVERY_H

#include "io/kafka.h"
#include "state/shard.h"

typedef struct mph__recovery_item {
    mph__shard_t *shard;   /* borrowed for the call */
    const char *changelog; /* topic */
    int64_t start;         /* first offset to read: shard->applied + 1 */
    int cancel;            /* in: set to 1 (ck_pr, any thread) to stop this item at once */
    /* results, written by the recovering thread; the ck_pr_load_* of
     * total, records and finished are safe from any thread */
    int64_t total;         /* records to read (from the watermarks); -1 until known */
    int64_t records;       /* changelog records applied */
    int64_t started_ns;    /* mph_clock_mono_ns() when the item started reading */
    int finished;          /* 1 once the shard is complete, or cancelled, and durable (the
                              store's bulk writes flushed): the caller may hand it over */
    bool cancelled;        /* finished because of cancel: complete up to shard->applied only */
    int64_t lag;           /* follow mode: records behind the changelog's high watermark */
    bool rebuilt;          /* started over from the beginning */
} mph__recovery_item_t;

typedef struct mph__recovery_progress {
    int64_t total;     /* records to read, from the watermarks */
    int64_t done;
    double rate;       /* records/s */
    double eta_s;
} mph__recovery_progress_t;

/* Reads every item's changelog partition from its start to the end seen at
 * the beginning (high watermark; transaction markers and compaction gaps
 * are handled), applying records in large batches (RocksDB: WAL off, then
 * flushed). Records of a shard with a format=faust changelog (shard->faust)
 * are decoded to the shard's form first; one that does not decode stops
 * recovery with its offset in errstr. A start beyond the high watermark or
 * before the low one rebuilds the shard from the beginning with a warning.
 * progress (may be NULL) is called about once a second and at the end.
 * Bounded by timeout_ms of no progress.
 *
 * Items finish one by one: each sets item->finished as soon as its own
 * partition reached its end (or its cancel flag was seen, within about
 * 100 ms), after its store's bulk writes were made durable, so a caller on
 * another thread may take that shard while the others still recover. On
 * error the items not finished must not be handed over (their shards may
 * be partly applied; destroy them). */
typedef void(mph__recovery_progress_fn)(const mph__recovery_progress_t *p, void *opaque);
mph_err_t mph__recover(const mph__kafka_env_t *env, const mph_conf_t *conf,
                       mph__recovery_item_t *items, size_t n, int64_t batch_records,
                       int workers, int timeout_ms, mph__recovery_progress_fn *progress,
                       void *opaque, char *errstr, size_t errstr_size);

/* A standby's tail: like mph__recover, but items do not finish at the end
 * of their changelog partitions; they follow them, writing checkpoints at
 * each end of partition and at least every second, until their cancel flag
 * is raised (then they finish as cancelled, durable up to shard->applied).
 * Returns once every item finished, or on error. */
mph_err_t mph__recover_follow(const mph__kafka_env_t *env, const mph_conf_t *conf,
                              mph__recovery_item_t *items, size_t n, int64_t batch_records,
                              int workers, char *errstr, size_t errstr_size);

#endif

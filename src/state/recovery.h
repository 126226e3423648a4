/*
 * Changelog recovery: rebuilds shards from their changelog partitions
 * before the partitions are handed to workers (Faust's TableManager
 * recovery). Runs on the coordinator.
 */
#ifndef MPH_STATE_RECOVERY_H
#define MPH_STATE_RECOVERY_H

#include "io/kafka.h"
#include "state/shard.h"

typedef struct mph__recovery_item {
    mph__shard_t *shard;   /* borrowed for the call */
    const char *changelog; /* topic */
    int64_t start;         /* first offset to read: shard->applied + 1 */
    /* results */
    int64_t records;       /* changelog records applied */
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
 * progress (may be NULL) is called about once a second and at the end. Bounded
 * by timeout_ms of no progress. */
typedef void(mph__recovery_progress_fn)(const mph__recovery_progress_t *p, void *opaque);
mph_err_t mph__recover(const mph__kafka_env_t *env, const mph_conf_t *conf,
                       mph__recovery_item_t *items, size_t n, int64_t batch_records,
                       int workers, int timeout_ms, mph__recovery_progress_fn *progress,
                       void *opaque, char *errstr, size_t errstr_size);

#endif

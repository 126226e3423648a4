/*
 * The coordinator thread: group membership, partition hand-over, commits.
 * See coordinator.c.
 */
#ifndef MPH_RUNTIME_COORDINATOR_H
#define MPH_RUNTIME_COORDINATOR_H

#include "runtime/app.h"

mph__coord_t *mph__coord_new(mph_app_t *app, char *errstr, size_t errstr_size);
/* Subscribes and starts the thread. */
mph_err_t mph__coord_start(mph__coord_t *c, char *errstr, size_t errstr_size);
/* Joins the thread (it exits after a stop request and the graceful stop). */
void mph__coord_join(mph__coord_t *c);
void mph__coord_destroy(mph__coord_t *c);
/* A message for the coordinator (transferred on success). @locality any */
mph_err_t mph__coord_post(mph__coord_t *c, void *msg);
/* Installs rebalance and commit callbacks on the consumer configuration
 * (before the consumer is created). */
void mph__coord_configure(mph__coord_t *c, rd_kafka_conf_t *kc);

/* Commit statistics. @locality any */
typedef struct mph__coord_stats {
    uint64_t rebalances;
    uint64_t assigned;
    uint64_t commits;
    uint64_t commit_errors;
    uint64_t last_commit_us;
    uint64_t commit_partitions; /* partitions carried by commit requests */
    uint64_t commit_repairs;    /* partitions committed again after an older
                                 * commit landed behind a newer one */
} mph__coord_stats_t;
void mph__coord_stats(const mph__coord_t *c, mph__coord_stats_t *out);

/* What /stats shows of each table shard being restored (restore.c). */
typedef struct mph__restore_stat {
    int table;
    int32_t partition;
    int worker;
    int64_t records_restored;
    int64_t records_total; /* -1 while the watermarks are being read */
    double rate;           /* records/s */
    double eta_s;          /* -1 when unknown */
    int64_t lag;           /* standbys: records behind the changelog's end */
} mph__restore_stat_t;
/* Copies up to max of the shards restoring now into out; returns how many
 * restore. @locality any (while the coordinator exists) */
size_t mph__coord_restoring(const mph__coord_t *c, mph__restore_stat_t *out, size_t max);
/* The same for the standby replicas held here (records_restored: records
 * applied; lag: records behind the changelog's end). @locality any */
size_t mph__coord_standbys(const mph__coord_t *c, mph__restore_stat_t *out, size_t max);

#endif

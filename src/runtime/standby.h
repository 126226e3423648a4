/*
 * Standby replicas (num_standby_replicas): placement and the coordinator's
 * driver. See standby.c. Every function is @locality coordinator except
 * mph__standby_place (pure, any thread) and mph__standby_stats (any).
 */
#ifndef MPH_RUNTIME_STANDBY_H
#define MPH_RUNTIME_STANDBY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/app.h"
#include "runtime/coordinator.h" /* mph__restore_stat_t */

/* Placement, the same on every member given the same group description.
 * Members are numbered 0..nmembers-1 in a fixed order (the caller sorts
 * them as the range assignor does); owned[m * nparts + p] says member m
 * owns partition p (of any source topic). Partition p gets at most n
 * standbys, never on a member that owns it: with range, first the members
 * the range assignor would give p to if one member left (p's first owner
 * leaving first, then the members after it), then the first owner's next
 * members in order (wrapping). out[p * n + k] is the k-th standby's member
 * index, or -1. A partition nobody owns gets none; nor does any partition
 * when there is one member. Returns the number of standbys placed. */
int mph__standby_place(size_t nmembers, int32_t nparts, const bool *owned, int n, bool range,
                       int *out);

typedef struct mph__standby mph__standby_t;

/* wake_fd (borrowed) is signalled when a standby run ends. Returns NULL
 * only when out of memory. With num_standby_replicas=0 or no table every
 * call below does nothing. */
mph__standby_t *mph__standby_new(mph_app_t *app, int wake_fd);
/* Stops every standby (its shards go back to the parking lot) and frees
 * s. Only after the workers' stores are still open (see coordinator.c).
 * NULL is a no-op. */
void mph__standby_destroy(mph__standby_t *s);
/* After each rebalance: read the group's members and assignments again
 * (DescribeConsumerGroups, asynchronous) and move the standbys. */
void mph__standby_rebalanced(mph__standby_t *s);
/* Partitions now assigned to this process: their standbys stop at once and
 * their shards go back to the parking lot, so the restore that follows
 * replays only the tail after the standby's checkpoint. */
void mph__standby_taken(mph__standby_t *s, const rd_kafka_topic_partition_list_t *parts);
/* From the coordinator's loop: answers of the group description, retries,
 * failed standbys. */
void mph__standby_poll(mph__standby_t *s);
/* Stops every standby (at stop). */
void mph__standby_stop(mph__standby_t *s);
/* One entry per standby shard (records_restored: records applied; lag:
 * records behind the changelog's end); returns how many. @locality any */
size_t mph__standby_stats(mph__standby_t *s, mph__restore_stat_t *out, size_t max);

#endif

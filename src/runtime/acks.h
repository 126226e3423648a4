/*
 * Per-partition acknowledgement tracking: the commit point.
 *
 * A partition's commit point is the offset after the highest message such
 * that it and every message before it were processed (all agent callbacks
 * returned) and every record they sent was acknowledged by the broker.
 *
 * Fast path: a message that sent nothing while nothing is pending moves the
 * commit point directly (no ring write). Otherwise messages are entries in
 * a ring indexed by a per-partition sequence number; an entry holds the
 * message offset and its count of unacknowledged sends (+1 while its
 * callbacks still run). Delivery reports decrement by sequence number and
 * the head advances over finished entries. Consecutive finished messages at
 * the tail share one entry, so the ring holds at most one entry per message
 * that still waits for a send plus one per gap between them.
 *
 * @locality the worker that owns the partition (single thread, no atomics)
 */
#ifndef MPH_RUNTIME_ACKS_H
#define MPH_RUNTIME_ACKS_H

#include <stdint.h>

#include "mephisto/common.h"

typedef struct mph__ack_entry {
    int64_t offset;
    uint32_t pending;
} mph__ack_entry_t;

typedef struct mph__acks {
    int64_t commit;        /* next offset to commit; -1 = nothing yet */
    uint64_t head, tail;   /* ring holds sequence numbers [head, tail) */
    uint32_t mask;         /* capacity - 1; capacity 0 until first use */
    mph__ack_entry_t *ring;
    uint64_t inflight;     /* sends not yet acknowledged */
} mph__acks_t;

void mph__acks_init(mph__acks_t *a);
void mph__acks_fini(mph__acks_t *a);

/* Opens an entry for offset whose callbacks are still running; returns its
 * sequence number. Sends made for it call mph__acks_add_send(). */
mph_err_t mph__acks_open(mph__acks_t *a, int64_t offset, uint64_t *seq);
void mph__acks_add_send(mph__acks_t *a, uint64_t seq);
/* The callbacks of the opened entry returned. */
void mph__acks_close(mph__acks_t *a, uint64_t seq);
/* A message that sent nothing finished. */
mph_err_t mph__acks_processed(mph__acks_t *a, int64_t offset);
/* A send of entry seq was acknowledged. Returns false if seq is unknown. */
bool mph__acks_ack(mph__acks_t *a, uint64_t seq);
/* True when nothing waits for the broker. */
static inline bool mph__acks_idle(const mph__acks_t *a)
{
    return a->head == a->tail;
}

#endif

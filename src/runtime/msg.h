/*
 * Messages between the coordinator and the workers (through mailboxes).
 * The sender allocates with mph__msg_new(); ownership passes to the
 * receiver with the push, which frees it with mph__msg_free().
 *
 * Hand-over protocol (coordinator.c says why): every MSG_ASSIGN and
 * MSG_REVOKE carries a sequence number, per worker and kind, that the
 * worker's reply (MSG_ASSIGNED, MSG_REVOKED) echoes; a worker answers its
 * mailbox in order, so a reply names every earlier message of its kind as
 * answered too. Table shards travel only inside these messages.
 */
#ifndef MPH_RUNTIME_MSG_H
#define MPH_RUNTIME_MSG_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

enum mph__msg_kind {
    /* coordinator → worker */
    MSG_ASSIGN,  /* tp[]: partitions now owned by the worker; reply MSG_ASSIGNED */
    MSG_REVOKE,  /* tp[]: give these back by deadline_ns; reply MSG_REVOKED */
    MSG_STOP,    /* flush, report, exit; reply MSG_STOPPED */
    MSG_RECORD,  /* ptr: an rd_kafka_message_t that reached the coordinator */
    MSG_TABLE_GET, /* ptr: an mph__table_req_t (shared, refcounted) */
    /* worker → coordinator */
    MSG_COMMIT,  /* tp[] with commit points to commit */
    MSG_REVOKED, /* tp[] with final commit points (offset -1: none) */
    MSG_STOPPED, /* tp[] with final commit points */
    MSG_ASSIGNED /* the slots of the MSG_ASSIGN with this seq exist */
};

typedef struct mph__tp {
    int topic;
    int32_t partition;
    int64_t offset;
} mph__tp_t;

typedef struct mph__msg {
    int kind;
    int worker;
    void *ptr; /* per kind (see above); ASSIGN/REVOKED: mph__shard_set_t */
    bool lost; /* MSG_REVOKE: the group already gave the partitions away;
                  MSG_REVOKED: the returned shards are not durable: drop them */
    uint64_t seq;        /* ASSIGN/REVOKE: per worker and kind; replies echo it */
    int64_t deadline_ns; /* MSG_REVOKE: mph_clock_mono_ns() by which to reply */
    size_t n;
    mph__tp_t tp[];
} mph__msg_t;

mph__msg_t *mph__msg_new(int kind, int worker, size_t n);
void mph__msg_free(mph__msg_t *msg);

#endif

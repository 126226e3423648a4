/*
 * A mailbox: a bounded multi-producer, single-consumer ring of message
 * pointers (ConcurrencyKit ck_ring, mpsc) plus an eventfd that wakes the
 * owner. Cross-thread control traffic (partition hand-over, commit points,
 * stop) travels only through mailboxes.
 *
 * Ownership: a pushed message is transferred to the mailbox's owner on
 * success; on failure (MPH_ERR_FULL after the bounded retry) it stays with
 * the sender.
 */
#ifndef MPH_RUNTIME_MAILBOX_H
#define MPH_RUNTIME_MAILBOX_H

#include <ck_ring.h>

#include "mephisto/common.h"

typedef struct mph__mailbox {
    ck_ring_t ring;
    ck_ring_buffer_t *buf;
    int fd; /* eventfd, signalled after each push */
} mph__mailbox_t;

/* capacity must be a power of two. */
mph_err_t mph__mailbox_init(mph__mailbox_t *mb, unsigned capacity);
void mph__mailbox_fini(mph__mailbox_t *mb);
/* Pushes msg and signals the owner; retries for up to 1 s while full.
 * @locality any */
mph_err_t mph__mailbox_push_mpsc(mph__mailbox_t *mb, void *msg);
/* Pops one message or returns NULL. @locality owner */
void *mph__mailbox_pop_sc(mph__mailbox_t *mb);

#endif

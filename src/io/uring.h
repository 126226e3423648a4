/*
 * A worker's event loop wait: one io_uring per thread that waits for every
 * kind of wake-up at once — eventfds (librdkafka queue io-events, mailbox
 * wake-ups) and a timer — with a single io_uring_wait_cqe.
 *
 * Each watched fd has at most one read in flight; after its completion is
 * delivered the caller re-arms it with mph__uring_watch(). The timer is one
 * IORING_OP_TIMEOUT re-armed per wait. liburing's -errno results are
 * converted here.
 *
 * @locality the owning thread only
 */
#ifndef MPH_IO_URING_H
#define MPH_IO_URING_H

#include "mephisto/common.h"

typedef struct mph__uring mph__uring_t;

mph__uring_t *mph__uring_new(unsigned entries, char *errstr, size_t errstr_size);
void mph__uring_destroy(mph__uring_t *u);

/* Arms an 8-byte read of eventfd fd; tag comes back when it completes. */
mph_err_t mph__uring_watch(mph__uring_t *u, int fd, uint64_t tag);

/* Submits armed reads and waits up to timeout_ns (0 = just reap, <0 =
 * forever) for completions. For each completed read calls
 * fn(opaque, tag). Returns the number of completions handled (0 on timeout)
 * or a negative mph_err_t. */
typedef void(mph__uring_fn)(void *opaque, uint64_t tag);
int mph__uring_wait(mph__uring_t *u, int64_t timeout_ns, mph__uring_fn *fn, void *opaque);

/* Creates a non-blocking eventfd; -1 on failure. Signal it with
 * mph__eventfd_signal() from any thread. */
int mph__eventfd_new(void);
void mph__eventfd_signal(int fd);
/* Reads and clears an eventfd without blocking. */
void mph__eventfd_drain(int fd);

#endif

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
 * The same wait can run on ppoll(2) instead (MPH__WAIT_POLL): for kernels
 * or sandboxes that refuse io_uring (container seccomp profiles,
 * kernel.io_uring_disabled) and for valgrind, which stops every thread
 * while one waits in io_uring_enter but not in ppoll. Its semantics are
 * the uring's: an armed fd stays armed until it is readable; then its
 * eventfd is read (cleared) and its tag delivered once.
 *
 * @locality the owning thread only
 */
#ifndef MPH_IO_URING_H
#define MPH_IO_URING_H

#include "mephisto/common.h"

typedef struct mph__uring mph__uring_t;

typedef enum {
    MPH__WAIT_AUTO,  /* io_uring; ppoll when the kernel refuses io_uring */
    MPH__WAIT_URING, /* io_uring or fail */
    MPH__WAIT_POLL,  /* ppoll */
} mph__wait_mode_t;

/* Parses the io_wait setting ("auto", "uring", "poll"); AUTO otherwise. */
mph__wait_mode_t mph__wait_mode_parse(const char *s);

/* Under AUTO, a refused io_uring falls back to ppoll and writes why to
 * fallback (when not NULL; "" when io_uring was used) for the caller to
 * log. NULL with errstr set on failure. */
mph__uring_t *mph__uring_new(unsigned entries, mph__wait_mode_t mode, char *fallback,
                             size_t fallback_size, char *errstr, size_t errstr_size);
/* True when u waits in ppoll. */
bool mph__uring_polls(const mph__uring_t *u);
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

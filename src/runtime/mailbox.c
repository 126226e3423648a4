#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "io/uring.h"
#include "runtime/mailbox.h"

/* ConcurrencyKit's ring publishes entries with inline assembly, which
 * ThreadSanitizer cannot see; tell it that a push happens-before the pop
 * that returns the message, so the message's contents are not reported as
 * a race. No effect in other builds. */
#if defined(__SANITIZE_THREAD__)
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define MAILBOX_RELEASE(mb) __tsan_release(mb)
#define MAILBOX_ACQUIRE(mb) __tsan_acquire(mb)
#else
#define MAILBOX_RELEASE(mb) ((void)(mb))
#define MAILBOX_ACQUIRE(mb) ((void)(mb))
#endif

mph_err_t mph__mailbox_init(mph__mailbox_t *mb, unsigned capacity)
{
    mb->buf = calloc(capacity, sizeof *mb->buf);
    if (!mb->buf)
        return MPH_ERR_NOMEM;
    ck_ring_init(&mb->ring, capacity);
    mb->fd = mph__eventfd_new();
    if (mb->fd < 0) {
        free(mb->buf);
        mb->buf = NULL;
        return MPH_ERR_IO;
    }
    return MPH_OK;
}

void mph__mailbox_fini(mph__mailbox_t *mb)
{
    if (mb->fd >= 0)
        close(mb->fd);
    mb->fd = -1;
    free(mb->buf);
    mb->buf = NULL;
}

mph_err_t mph__mailbox_push_mpsc(mph__mailbox_t *mb, void *msg)
{
    for (int i = 0; i < 1000; i++) {
        MAILBOX_RELEASE(mb);
        if (ck_ring_enqueue_mpsc(&mb->ring, mb->buf, msg)) {
            mph__eventfd_signal(mb->fd);
            return MPH_OK;
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return MPH_ERR_FULL;
}

void *mph__mailbox_pop_sc(mph__mailbox_t *mb)
{
    void *msg = NULL;
    if (ck_ring_dequeue_mpsc(&mb->ring, mb->buf, &msg)) {
        MAILBOX_ACQUIRE(mb);
        return msg;
    }
    return NULL;
}

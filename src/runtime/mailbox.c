#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "io/uring.h"
#include "runtime/mailbox.h"

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
    if (ck_ring_dequeue_mpsc(&mb->ring, mb->buf, &msg))
        return msg;
    return NULL;
}

/*
 * io_uring wait for worker loops. See uring.h. Every watched fd owns one
 * 8-byte buffer slot; a read stays armed until it completes, so a wake-up
 * written while the worker is busy is never lost: the completion is simply
 * waiting when the worker next calls mph__uring_wait().
 *
 * Poll mode keeps the same slots: an armed slot is in the next ppoll's set;
 * when ppoll reports it readable (or in error), its eventfd is read, the
 * slot disarmed and its tag delivered, as a completed read would be. Only
 * mph__uring_new and mph__uring_wait differ between the modes.
 */
#include <poll.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <liburing.h>

#include "io/uring.h"

#define MAX_WATCH 8
#define TIMEOUT_TAG UINT64_MAX

struct mph__uring {
    bool polls; /* ppoll instead of the ring (then ring is not initialised) */
    bool armed[MAX_WATCH]; /* poll mode */
    struct io_uring ring;
    uint64_t bufs[MAX_WATCH];
    uint64_t tags[MAX_WATCH];
    int fds[MAX_WATCH];
    int nwatch;
    bool timeout_armed;
    struct __kernel_timespec ts;
};

mph__wait_mode_t mph__wait_mode_parse(const char *s)
{
    if (s && !strcmp(s, "uring"))
        return MPH__WAIT_URING;
    if (s && !strcmp(s, "poll"))
        return MPH__WAIT_POLL;
    return MPH__WAIT_AUTO;
}

mph__uring_t *mph__uring_new(unsigned entries, mph__wait_mode_t mode, char *fallback,
                             size_t fallback_size, char *errstr, size_t errstr_size)
{
    if (fallback && fallback_size)
        fallback[0] = 0;
    mph__uring_t *u = calloc(1, sizeof *u);
    if (!u) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    if (mode == MPH__WAIT_POLL) {
        u->polls = true;
        return u;
    }
    int rc = io_uring_queue_init(entries < 8 ? 8 : entries, &u->ring, 0);
    if (rc < 0 && mode == MPH__WAIT_AUTO) {
        if (fallback && fallback_size)
            snprintf(fallback, fallback_size, "io_uring_queue_init: %s", strerror(-rc));
        u->polls = true;
        return u;
    }
    if (rc < 0) {
        snprintf(errstr, errstr_size, "io_uring_queue_init: %s (io_wait=uring)", strerror(-rc));
        free(u);
        return NULL;
    }
    return u;
}

bool mph__uring_polls(const mph__uring_t *u)
{
    return u->polls;
}

void mph__uring_destroy(mph__uring_t *u)
{
    if (!u)
        return;
    if (!u->polls)
        io_uring_queue_exit(&u->ring);
    free(u);
}

static int slot_of(mph__uring_t *u, int fd)
{
    for (int i = 0; i < u->nwatch; i++)
        if (u->fds[i] == fd)
            return i;
    if (u->nwatch == MAX_WATCH)
        return -1;
    u->fds[u->nwatch] = fd;
    return u->nwatch++;
}

mph_err_t mph__uring_watch(mph__uring_t *u, int fd, uint64_t tag)
{
    int s = slot_of(u, fd);
    if (s < 0)
        return MPH_ERR_FULL;
    if (u->polls) {
        u->tags[s] = tag;
        u->armed[s] = true;
        return MPH_OK;
    }
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (!sqe) {
        io_uring_submit(&u->ring);
        sqe = io_uring_get_sqe(&u->ring);
        if (!sqe)
            return MPH_ERR_FULL;
    }
    u->tags[s] = tag;
    io_uring_prep_read(sqe, fd, &u->bufs[s], sizeof u->bufs[s], 0);
    io_uring_sqe_set_data64(sqe, (uint64_t)s);
    return MPH_OK;
}

static int poll_wait(mph__uring_t *u, int64_t timeout_ns, mph__uring_fn *fn, void *opaque)
{
    struct pollfd pfd[MAX_WATCH];
    int slot[MAX_WATCH], n = 0;
    for (int i = 0; i < u->nwatch; i++)
        if (u->armed[i]) {
            pfd[n] = (struct pollfd){.fd = u->fds[i], .events = POLLIN};
            slot[n++] = i;
        }
    struct timespec ts = {timeout_ns / 1000000000, timeout_ns % 1000000000};
    int rc = ppoll(pfd, (nfds_t)n, timeout_ns < 0 ? NULL : &ts, NULL);
    if (rc < 0)
        return errno == EINTR ? 0 : MPH_ERR_IO;
    int handled = 0;
    for (int i = 0; i < n && handled < rc; i++) {
        if (!pfd[i].revents)
            continue;
        int s = slot[i];
        mph__eventfd_drain(u->fds[s]);
        u->armed[s] = false;
        handled++;
        fn(opaque, u->tags[s]);
    }
    return handled;
}

int mph__uring_wait(mph__uring_t *u, int64_t timeout_ns, mph__uring_fn *fn, void *opaque)
{
    if (u->polls)
        return poll_wait(u, timeout_ns, fn, opaque);
    struct io_uring_cqe *cqe = NULL;
    int rc;
    if (timeout_ns == 0) {
        io_uring_submit(&u->ring);
        rc = io_uring_peek_cqe(&u->ring, &cqe);
        if (rc == -EAGAIN)
            return 0;
    } else if (timeout_ns < 0) {
        rc = io_uring_submit_and_wait(&u->ring, 1);
        if (rc >= 0)
            rc = io_uring_peek_cqe(&u->ring, &cqe);
    } else {
        u->ts.tv_sec = timeout_ns / 1000000000;
        u->ts.tv_nsec = timeout_ns % 1000000000;
        rc = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &u->ts, NULL);
        if (rc == -ETIME)
            return 0;
    }
    if (rc == -EINTR)
        return 0;
    if (rc < 0)
        return MPH_ERR_IO;

    int handled = 0;
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(&u->ring, head, cqe)
    {
        seen++;
        uint64_t s = io_uring_cqe_get_data64(cqe);
        if (s == LIBURING_UDATA_TIMEOUT || s >= (uint64_t)u->nwatch)
            continue;
        handled++;
        fn(opaque, u->tags[s]);
    }
    io_uring_cq_advance(&u->ring, seen);
    return handled;
}

int mph__eventfd_new(void)
{
    return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

void mph__eventfd_signal(int fd)
{
    uint64_t one = 1;
    ssize_t w = write(fd, &one, sizeof one);
    (void)w;
}

void mph__eventfd_drain(int fd)
{
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof v);
    (void)r;
}

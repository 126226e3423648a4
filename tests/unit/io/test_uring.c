/* Unit tests of src/io/uring.c: the worker's wait, in both of its modes
 * (io_uring and ppoll). Each behaviour runs under both; the ppoll mode must
 * deliver exactly what the ring delivers. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io/uring.h"
#include "mph_test.h"

typedef struct seen {
    uint64_t tags[16];
    int n;
} seen_t;

static void record(void *opaque, uint64_t tag)
{
    seen_t *s = opaque;
    if (s->n < 16)
        s->tags[s->n] = tag;
    s->n++;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static mph__uring_t *open_mode(mph__wait_mode_t mode)
{
    char fallback[160], err[256];
    mph__uring_t *u = mph__uring_new(64, mode, fallback, sizeof fallback, err, sizeof err);
    cr_assert(u, "mph__uring_new: %s", err);
    if (mode == MPH__WAIT_POLL)
        cr_assert(mph__uring_polls(u));
    if (mode == MPH__WAIT_URING)
        cr_assert(!mph__uring_polls(u));
    if (mode == MPH__WAIT_AUTO)
        cr_assert_eq(mph__uring_polls(u), fallback[0] != 0, "auto falls back only with a reason");
    return u;
}

/* Each behaviour runs in both modes. */
#define BOTH_MODES(name)                                                                   \
    ParameterizedTestParameters(uring, name)                                               \
    {                                                                                      \
        static mph__wait_mode_t modes[] = {MPH__WAIT_URING, MPH__WAIT_POLL};              \
        return cr_make_param_array(mph__wait_mode_t, modes, 2);                            \
    }

/* A signal written before the wait is delivered once, with its tag; the
 * eventfd is cleared (a second wait times out) until the fd is re-armed
 * and signalled again. */
BOTH_MODES(signal_delivered_once)
ParameterizedTest(mph__wait_mode_t *mode, uring, signal_delivered_once)
{
    mph__uring_t *u = open_mode(*mode);
    int a = mph__eventfd_new(), b = mph__eventfd_new();
    cr_assert(a >= 0 && b >= 0);
    cr_assert_eq(mph__uring_watch(u, a, 7), MPH_OK);
    cr_assert_eq(mph__uring_watch(u, b, 9), MPH_OK);

    seen_t s = {0};
    cr_assert_eq(mph__uring_wait(u, 1000000, record, &s), 0, "nothing signalled: a timeout");
    cr_assert_eq(s.n, 0);

    mph__eventfd_signal(b);
    mph__eventfd_signal(b); /* two writes, one wake-up */
    cr_assert_eq(mph__uring_wait(u, 1000000000, record, &s), 1);
    cr_assert_eq(s.n, 1);
    cr_assert_eq(s.tags[0], 9);

    /* b is not armed any more: its next signal waits for a re-arm. */
    mph__eventfd_signal(b);
    cr_assert_eq(mph__uring_wait(u, 1000000, record, &s), 0);
    cr_assert_eq(mph__uring_watch(u, b, 10), MPH_OK);
    cr_assert_eq(mph__uring_wait(u, 1000000000, record, &s), 1, "the signal before the re-arm");
    cr_assert_eq(s.tags[1], 10);

    /* Both at once: both delivered by one wait or by two (the ring may
     * complete them in separate batches), each once. */
    mph__eventfd_signal(a);
    cr_assert_eq(mph__uring_watch(u, b, 11), MPH_OK);
    mph__eventfd_signal(b);
    int got = mph__uring_wait(u, 1000000000, record, &s);
    if (got == 1)
        got += mph__uring_wait(u, 1000000000, record, &s);
    cr_assert_eq(got, 2);
    cr_assert_eq(s.n, 4);
    bool seen7 = false, seen11 = false;
    for (int i = 2; i < 4; i++) {
        seen7 |= s.tags[i] == 7;
        seen11 |= s.tags[i] == 11;
    }
    cr_assert(seen7 && seen11);

    /* Just reap (timeout 0) never blocks. */
    cr_assert_eq(mph__uring_wait(u, 0, record, &s), 0);

    mph__uring_destroy(u);
    close(a);
    close(b);
}

/* The timeout is honoured: a wait with nothing signalled returns after
 * about its timeout, neither at once nor much later. */
BOTH_MODES(timeout_is_kept)
ParameterizedTest(mph__wait_mode_t *mode, uring, timeout_is_kept)
{
    mph__uring_t *u = open_mode(*mode);
    int a = mph__eventfd_new();
    cr_assert_eq(mph__uring_watch(u, a, 1), MPH_OK);
    seen_t s = {0};
    int64_t t0 = now_ns();
    cr_assert_eq(mph__uring_wait(u, 50000000, record, &s), 0);
    int64_t took = now_ns() - t0;
    cr_assert(took >= 45000000, "returned after %lld ns of a 50 ms wait", (long long)took);
    cr_assert(took < 5000000000LL, "returned after %lld ns of a 50 ms wait", (long long)took);
    mph__uring_destroy(u);
    close(a);
}

typedef struct waker {
    int fd;
} waker_t;

static void *wake_later(void *arg)
{
    waker_t *k = arg;
    usleep(20000);
    mph__eventfd_signal(k->fd);
    return NULL;
}

/* A wait without a timeout sleeps until another thread signals. */
BOTH_MODES(another_thread_wakes_a_sleeper)
ParameterizedTest(mph__wait_mode_t *mode, uring, another_thread_wakes_a_sleeper)
{
    mph__uring_t *u = open_mode(*mode);
    int a = mph__eventfd_new();
    cr_assert_eq(mph__uring_watch(u, a, 3), MPH_OK);
    waker_t k = {a};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, wake_later, &k), 0);
    seen_t s = {0};
    cr_assert_eq(mph__uring_wait(u, -1, record, &s), 1);
    cr_assert_eq(s.tags[0], 3);
    pthread_join(t, NULL);
    mph__uring_destroy(u);
    close(a);
}

Test(uring, mode_names)
{
    cr_assert_eq(mph__wait_mode_parse("uring"), MPH__WAIT_URING);
    cr_assert_eq(mph__wait_mode_parse("poll"), MPH__WAIT_POLL);
    cr_assert_eq(mph__wait_mode_parse("auto"), MPH__WAIT_AUTO);
    cr_assert_eq(mph__wait_mode_parse(NULL), MPH__WAIT_AUTO);
}

/* auto uses the ring where the kernel gives one (this machine's does; a
 * sandbox that refuses it gets the ppoll fallback, with its reason). */
Test(uring, auto_opens)
{
    mph__uring_t *u = open_mode(MPH__WAIT_AUTO);
    mph__uring_destroy(u);
}

/* Where the kernel refuses io_uring, auto falls back to ppoll and says
 * why, and the wait works; uring fails with the setting's name. */
Test(uring, refused_io_uring_falls_back_under_auto_only)
{
    mph_test_refuse_io_uring();
    char fallback[160], err[256] = "";
    cr_assert_null(mph__uring_new(64, MPH__WAIT_URING, fallback, sizeof fallback, err, sizeof err));
    cr_expect(strstr(err, "io_wait=uring") && strstr(err, "not permitted"), "error: %s", err);

    mph__uring_t *u = mph__uring_new(64, MPH__WAIT_AUTO, fallback, sizeof fallback, err, sizeof err);
    cr_assert_not_null(u, "%s", err);
    cr_expect(mph__uring_polls(u));
    cr_expect(strstr(fallback, "io_uring_queue_init") && strstr(fallback, "not permitted"),
              "fallback reason: %s", fallback);
    int a = mph__eventfd_new();
    cr_assert_eq(mph__uring_watch(u, a, 5), MPH_OK);
    mph__eventfd_signal(a);
    seen_t s = {0};
    cr_assert_eq(mph__uring_wait(u, 1000000000, record, &s), 1);
    cr_expect_eq(s.tags[0], 5);
    mph__uring_destroy(u);
    close(a);
}

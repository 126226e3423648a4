/*
 * Linked into every program of tests/tsan/ (tests/CMakeLists.txt): under
 * ThreadSanitizer, C11 threads routed through pthreads (see below). In
 * other builds this file is empty.
 */
#include <pthread.h>
#include <stdlib.h>

#if defined(__SANITIZE_THREAD__)
/* Debian's librdkafka uses C11 threads (thrd_*, mtx_*, cnd_*), which glibc
 * implements without the pthread calls ThreadSanitizer intercepts: TSan
 * would crash in librdkafka's threads and could not see its locks, so every
 * record handed from librdkafka to a worker would look like a race. This
 * program's exported definitions win symbol resolution and route them
 * through pthreads, which TSan understands. glibc's mtx_t and cnd_t have
 * the size and alignment of pthread_mutex_t and pthread_cond_t. */
#include <errno.h>
#include <stdint.h>
#include <threads.h>

#define EXPORT __attribute__((visibility("default")))

struct thrd_tramp {
    thrd_start_t fn;
    void *arg;
};

static void *thrd_tramp_main(void *p)
{
    struct thrd_tramp t = *(struct thrd_tramp *)p;
    free(p);
    return (void *)(intptr_t)t.fn(t.arg);
}

static int c11(int rc)
{
    return rc == 0 ? thrd_success : rc == ETIMEDOUT ? thrd_timedout : rc == EBUSY ? thrd_busy
                                                      : rc == ENOMEM ? thrd_nomem : thrd_error;
}

EXPORT int thrd_create(thrd_t *thr, thrd_start_t fn, void *arg)
{
    struct thrd_tramp *t = malloc(sizeof *t);
    if (!t)
        return thrd_nomem;
    t->fn = fn;
    t->arg = arg;
    int rc = pthread_create((pthread_t *)thr, NULL, thrd_tramp_main, t);
    if (rc)
        free(t);
    return c11(rc);
}

EXPORT int thrd_join(thrd_t thr, int *res)
{
    void *r = NULL;
    int rc = pthread_join((pthread_t)thr, &r);
    if (!rc && res)
        *res = (int)(intptr_t)r;
    return c11(rc);
}

EXPORT int thrd_detach(thrd_t thr)
{
    return c11(pthread_detach((pthread_t)thr));
}

EXPORT int mtx_init(mtx_t *m, int type)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    if (type & mtx_recursive)
        pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    int rc = pthread_mutex_init((pthread_mutex_t *)m, &a);
    pthread_mutexattr_destroy(&a);
    return c11(rc);
}

EXPORT int mtx_lock(mtx_t *m)
{
    return c11(pthread_mutex_lock((pthread_mutex_t *)m));
}

EXPORT int mtx_trylock(mtx_t *m)
{
    return c11(pthread_mutex_trylock((pthread_mutex_t *)m));
}

EXPORT int mtx_timedlock(mtx_t *restrict m, const struct timespec *restrict ts)
{
    return c11(pthread_mutex_timedlock((pthread_mutex_t *)m, ts));
}

EXPORT int mtx_unlock(mtx_t *m)
{
    return c11(pthread_mutex_unlock((pthread_mutex_t *)m));
}

EXPORT void mtx_destroy(mtx_t *m)
{
    pthread_mutex_destroy((pthread_mutex_t *)m);
}

EXPORT int cnd_init(cnd_t *c)
{
    return c11(pthread_cond_init((pthread_cond_t *)c, NULL));
}

EXPORT int cnd_signal(cnd_t *c)
{
    return c11(pthread_cond_signal((pthread_cond_t *)c));
}

EXPORT int cnd_broadcast(cnd_t *c)
{
    return c11(pthread_cond_broadcast((pthread_cond_t *)c));
}

EXPORT int cnd_wait(cnd_t *c, mtx_t *m)
{
    return c11(pthread_cond_wait((pthread_cond_t *)c, (pthread_mutex_t *)m));
}

EXPORT int cnd_timedwait(cnd_t *restrict c, mtx_t *restrict m, const struct timespec *restrict ts)
{
    return c11(pthread_cond_timedwait((pthread_cond_t *)c, (pthread_mutex_t *)m, ts));
}

EXPORT void cnd_destroy(cnd_t *c)
{
    pthread_cond_destroy((pthread_cond_t *)c);
}
#endif

#include <stdlib.h>
#include <string.h>

#include "runtime/acks.h"

void mph__acks_init(mph__acks_t *a)
{
    memset(a, 0, sizeof *a);
    a->commit = -1;
}

void mph__acks_fini(mph__acks_t *a)
{
    free(a->ring);
    a->ring = NULL;
}

static void advance(mph__acks_t *a)
{
    while (a->head != a->tail) {
        mph__ack_entry_t *e = &a->ring[a->head & a->mask];
        if (e->pending)
            break;
        a->commit = e->offset + 1;
        a->head++;
    }
}

static mph_err_t grow(mph__acks_t *a)
{
    uint32_t cap = a->mask ? (a->mask + 1) * 2 : 64;
    mph__ack_entry_t *r = malloc((size_t)cap * sizeof *r);
    if (!r)
        return MPH_ERR_NOMEM;
    for (uint64_t s = a->head; s != a->tail; s++)
        r[s & (cap - 1)] = a->ring[s & a->mask];
    free(a->ring);
    a->ring = r;
    a->mask = cap - 1;
    return MPH_OK;
}

static mph_err_t push(mph__acks_t *a, int64_t offset, uint32_t pending, uint64_t *seq)
{
    if (!a->ring || a->tail - a->head > a->mask) {
        mph_err_t err = grow(a);
        if (err)
            return err;
    }
    mph__ack_entry_t *e = &a->ring[a->tail & a->mask];
    e->offset = offset;
    e->pending = pending;
    if (seq)
        *seq = a->tail;
    a->tail++;
    return MPH_OK;
}

mph_err_t mph__acks_open(mph__acks_t *a, int64_t offset, uint64_t *seq)
{
    return push(a, offset, 1, seq);
}

void mph__acks_add_send(mph__acks_t *a, uint64_t seq)
{
    a->ring[seq & a->mask].pending++;
    a->inflight++;
}

void mph__acks_close(mph__acks_t *a, uint64_t seq)
{
    a->ring[seq & a->mask].pending--;
    if (seq == a->head)
        advance(a);
}

mph_err_t mph__acks_processed(mph__acks_t *a, int64_t offset)
{
    if (a->head == a->tail) {
        a->commit = offset + 1;
        return MPH_OK;
    }
    /* Finished messages behind a pending one: merge into a finished tail. */
    mph__ack_entry_t *last = &a->ring[(a->tail - 1) & a->mask];
    if (last->pending == 0) {
        last->offset = offset;
        return MPH_OK;
    }
    return push(a, offset, 0, NULL);
}

bool mph__acks_ack(mph__acks_t *a, uint64_t seq)
{
    if (seq < a->head || seq >= a->tail)
        return false;
    mph__ack_entry_t *e = &a->ring[seq & a->mask];
    if (e->pending == 0)
        return false;
    e->pending--;
    a->inflight--;
    if (seq == a->head)
        advance(a);
    return true;
}

/*
 * DESIGN — session windows (mph_table_session).
 *
 * A session is a run of one key's events no more than gap apart: it has a
 * start (its first event time) and an end (its last event time; the API
 * reports end + 1, exclusive like every window). An event at t joins every
 * session of its key with start - gap <= t <= end + gap. Sessions of a key
 * are kept more than gap apart, so an event joins at most two of them (one
 * ending before it, one starting after it: a late event that bridges
 * them), and those are merged: the merge function combines their values,
 * then the event's write applies to the merged value.
 *
 * Storage, as for the other windows: the shard key is the session start (8
 * bytes, sign-flipped big-endian) and the user key, so the changelog,
 * recovery and RocksDB see ordinary table records. The value is the user's
 * value followed by the session's end (8 bytes) and a 4-byte tag; the tag
 * tells a stored session from the table default that a lookup from another
 * thread gets for an absent key. A session whose start moves (an earlier
 * event, or a merge) is deleted under its old start (a tombstone in the
 * changelog) and written under the new one. The reserved meta key holds
 * stream time and the closed-through watermark, exactly as for the other
 * windows (window.c), so "which sessions closed" is as durable as the data.
 *
 * Per shard, in shard->ext (built lazily from the shard, freed by the table
 * layer whenever the contents change underneath: recovery, reset):
 *   - a map user key -> that key's sessions (start, end, closed), sorted by
 *     start;
 *   - one min-heap of due points: (point, start, key, phase). Phase close
 *     at end + gap + grace + 1, phase expire at end + 1 + gap +
 *     max(expires, grace). Entries are lazy: a session that grew keeps its
 *     old entry, which, when it comes up, finds the later point and is
 *     pushed again; an entry whose session is gone (merged, moved, deleted)
 *     is dropped when it comes up. So the heap holds about one entry per
 *     live session, not one per event.
 * Closing pops the heap in point order (on the event path, during the write
 * or advance whose event moved stream time), calls on_close once per
 * session, and marks it closed. A failing callback stops there: its entry
 * goes back, the watermark stays just below its point, and the next event
 * that moves stream time retries it (as for the other windows).
 *
 * Late: an event more than grace behind stream time (t + grace < stream
 * time) changes nothing, as in the other windows. An event that is not late
 * never touches a closed session: a session it could join ends at
 * >= t - gap, so it closes at >= t + grace + 1 > stream time.
 *
 * Never: write a closed session; call on_close twice for a session within
 * one run (except a failed callback's retry); take a lock on the event
 * path.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mephisto/log.h"
#include "runtime/app.h"
#include "runtime/table.h"
#include "runtime/window.h"
#include "runtime/worker.h"
#include "state/shard.h"
#include "state/store_memory.h"

#define TAG "\xffses"

/* ------------------------------------------------------------------ */
/* pure parts                                                         */

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

int64_t mph__session_close_point(const struct mph_window *w, int64_t end)
{
    return end + w->size + w->grace + 1;
}

int64_t mph__session_expire_point(const struct mph_window *w, int64_t end)
{
    return end + 1 + w->size + max64(w->expires, w->grace);
}

void mph__session_find(const int64_t *se, size_t stride, size_t n, int64_t gap,
                       int64_t t, size_t *first, size_t *count, int64_t *start,
                       int64_t *end)
{
    size_t f = n, c = 0;
    int64_t s = t, e = t;
    for (size_t i = 0; i < n; i++) {
        int64_t si = se[i * stride], ei = se[i * stride + 1];
        if (si - gap > t)
            break; /* sorted by start: none further can join */
        if (ei + gap < t)
            continue;
        if (f == n)
            f = i;
        c++;
        if (si < s)
            s = si;
        if (ei > e)
            e = ei;
    }
    *first = c ? f : n;
    *count = c;
    *start = s;
    *end = e;
}

static void be64_put(uint64_t u, unsigned char *out)
{
    for (int i = 7; i >= 0; i--, u >>= 8)
        out[i] = (unsigned char)(u & 0xff);
}

static uint64_t be64_get(const unsigned char *in)
{
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u = (u << 8) | in[i];
    return u;
}

mph_err_t mph__session_default_merge(const void *a, size_t alen, const void *b,
                                     size_t blen, struct mph__window_capture *c)
{
    if (alen == 8 && blen == 8) {
        unsigned char sum[8];
        be64_put(be64_get(a) + be64_get(b), sum);
        return mph__window_capture_set(c, sum, 8);
    }
    return mph__window_capture_set(c, b, blen);
}

size_t mph__session_value_encode(const void *v, size_t vl, int64_t end,
                                 unsigned char *out)
{
    if (vl)
        memcpy(out, v, vl);
    be64_put((uint64_t)end, out + vl);
    memcpy(out + vl + 8, TAG, 4);
    return vl + MPH__SESSION_SUFFIX;
}

bool mph__session_value_decode(const void *v, size_t vl, size_t *user_len,
                               int64_t *end)
{
    if (!v || vl < MPH__SESSION_SUFFIX ||
        memcmp((const unsigned char *)v + vl - 4, TAG, 4) != 0)
        return false;
    *user_len = vl - MPH__SESSION_SUFFIX;
    *end = (int64_t)be64_get((const unsigned char *)v + *user_len);
    return true;
}

/* ------------------------------------------------------------------ */
/* the per-shard index                                                */

typedef struct sess {
    int64_t start, end;
    int64_t closed; /* 0 or 1 (int64_t: no padding in the stored bytes) */
} sess_t;

enum { PH_CLOSE = 0, PH_EXPIRE = 1 };

typedef struct hent {
    int64_t point, start;
    int phase;
    size_t klen;
    unsigned char *key;
} hent_t;

typedef struct sext {
    struct mph_window *w;
    mph__mstore_t *keys; /* user key -> sess_t[] sorted by start */
    hent_t *heap;
    size_t hn, hcap;
    uint64_t live;
    bool have_st;
    int64_t st, closed;
    int busy;
    unsigned char *ck; /* storage-key buffer */
    size_t ckcap;
    unsigned char *vb; /* storage-value buffer */
    size_t vbcap;
    sess_t *list; /* scratch copy of one key's sessions */
    size_t lcap;
    const void *t_rkm;
    int64_t t_off;
    mph_err_t t_err;
    int64_t t_val;
    bool t_late_counted;
    mph_log_limit_t lim;
} sext_t;

static void sext_free(void *p)
{
    sext_t *x = p;
    mph__window_stat_add(x->w, MPH_WINDOW_STAT_LIVE_WINDOWS, -(int64_t)x->live);
    mph__window_stat_add(x->w, MPH_WINDOW_STAT_LIVE_PAIRS, -(int64_t)x->live);
    for (size_t i = 0; i < x->hn; i++)
        free(x->heap[i].key);
    free(x->heap);
    mph__mstore_destroy(x->keys);
    free(x->ck);
    free(x->vb);
    free(x->list);
    free(x);
}

static mph_err_t grow(unsigned char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return MPH_OK;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    unsigned char *b = realloc(*buf, c);
    if (!b)
        return MPH_ERR_NOMEM;
    *buf = b;
    *cap = c;
    return MPH_OK;
}

static bool hless(const hent_t *a, const hent_t *b)
{
    if (a->point != b->point)
        return a->point < b->point;
    return a->start < b->start;
}

static mph_err_t heap_push(sext_t *x, int64_t point, int64_t start, int phase,
                           const void *key, size_t klen)
{
    if (x->hn == x->hcap) {
        size_t c = x->hcap ? x->hcap * 2 : 64;
        hent_t *h = realloc(x->heap, c * sizeof *h);
        if (!h)
            return MPH_ERR_NOMEM;
        x->heap = h;
        x->hcap = c;
    }
    hent_t e = {point, start, phase, klen, malloc(klen ? klen : 1)};
    if (!e.key)
        return MPH_ERR_NOMEM;
    if (klen)
        memcpy(e.key, key, klen);
    size_t i = x->hn++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hless(&e, &x->heap[p]))
            break;
        x->heap[i] = x->heap[p];
        i = p;
    }
    x->heap[i] = e;
    return MPH_OK;
}

/* Removes the top entry into *out (the caller owns out->key). */
static void heap_pop(sext_t *x, hent_t *out)
{
    *out = x->heap[0];
    hent_t last = x->heap[--x->hn];
    size_t i = 0, n = x->hn;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const hent_t *best = &last;
        if (l < n && hless(&x->heap[l], best)) {
            m = l;
            best = &x->heap[l];
        }
        if (r < n && hless(&x->heap[r], best))
            m = r;
        if (m == i)
            break;
        x->heap[i] = x->heap[m];
        i = m;
    }
    if (n)
        x->heap[i] = last;
}

/* A copy of key's sessions in x->list; *n is their number. */
static mph_err_t list_get(sext_t *x, const void *key, size_t klen, size_t *n)
{
    const void *v = NULL;
    size_t vl = 0;
    *n = 0;
    if (mph__mstore_lookup(x->keys, key, klen, &v, &vl) != MPH__MSTORE_PRESENT)
        vl = 0;
    size_t cnt = vl / sizeof(sess_t);
    if (cnt + 2 > x->lcap) {
        size_t c = x->lcap ? x->lcap : 8;
        while (c < cnt + 2)
            c *= 2;
        sess_t *l = realloc(x->list, c * sizeof *l);
        if (!l)
            return MPH_ERR_NOMEM;
        x->list = l;
        x->lcap = c;
    }
    if (cnt)
        memcpy(x->list, v, cnt * sizeof(sess_t));
    *n = cnt;
    return MPH_OK;
}

static mph_err_t list_put(sext_t *x, const void *key, size_t klen, size_t n)
{
    if (!n)
        return mph__mstore_forget(x->keys, key, klen);
    return mph__mstore_fill(x->keys, key, klen, x->list, n * sizeof(sess_t));
}

/* Inserts s into x->list (room for 2 more is kept by list_get). */
static void list_insert(sext_t *x, size_t *n, sess_t s)
{
    size_t i = 0;
    while (i < *n && x->list[i].start < s.start)
        i++;
    memmove(x->list + i + 1, x->list + i, (*n - i) * sizeof(sess_t));
    x->list[i] = s;
    (*n)++;
}

static mph_err_t ckey(sext_t *x, int64_t start, const void *key, size_t klen,
                      size_t *cl)
{
    mph_err_t err = grow(&x->ck, &x->ckcap, MPH__WINDOW_PREFIX + klen);
    if (!err)
        *cl = mph__window_key(start, key, klen, x->ck);
    return err;
}

/* The user value of the stored session (start, key): borrowed. */
static mph_err_t sess_value(sext_t *x, mph__shard_t *sh, int64_t start,
                            const void *key, size_t klen, const void **v,
                            size_t *vl)
{
    size_t cl;
    mph_err_t err = ckey(x, start, key, klen, &cl);
    if (err)
        return err;
    size_t sl = 0;
    int64_t end;
    err = mph__shard_get(sh, x->ck, cl, v, &sl);
    if (err)
        return err;
    if (!mph__session_value_decode(*v, sl, vl, &end))
        return MPH_ERR_TYPE;
    return MPH_OK;
}

static mph_err_t write_meta(mph__shard_t *sh, sext_t *x)
{
    unsigned char v[MPH__WINDOW_META_VLEN];
    mph__window_meta_encode(x->st, x->closed, v);
    return mph__shard_set(sh, MPH__WINDOW_META_KEY, MPH__WINDOW_META_KLEN, v,
                          sizeof v);
}

static void count_op(mph_event_t *ev, struct mph_window *w, int op)
{
    if (ev)
        mph__table_count_op(ev, w->table, op);
}

/* --- building from the shard --- */

struct sbuild {
    sext_t *x;
    mph__shard_t *sh;
    bool have_meta;
    int64_t st, closed;
    size_t foreign;
    /* entries, pushed after the meta is known */
    struct sb_ent {
        int64_t start, end;
        size_t off, len;
    } * ents;
    size_t n, cap;
    unsigned char *arena;
    size_t used, acap;
};

static mph_err_t sbuild_visit(const void *key, size_t klen, const void *val,
                              size_t vlen, void *opaque)
{
    struct sbuild *b = opaque;
    int64_t start, end;
    const void *uk;
    size_t ul, vul;
    if (klen == MPH__WINDOW_META_KLEN &&
        !memcmp(key, MPH__WINDOW_META_KEY, klen)) {
        b->have_meta = mph__window_meta_decode(val, vlen, &b->st, &b->closed);
        return MPH_OK;
    }
    if (!mph__window_key_parse(key, klen, &start, &uk, &ul) ||
        !mph__session_value_decode(val, vlen, &vul, &end) || end < start) {
        b->foreign++;
        return MPH_OK;
    }
    if (b->n == b->cap) {
        size_t c = b->cap ? b->cap * 2 : 256;
        struct sb_ent *e = realloc(b->ents, c * sizeof *e);
        if (!e)
            return MPH_ERR_NOMEM;
        b->ents = e;
        b->cap = c;
    }
    if (grow(&b->arena, &b->acap, b->used + ul + 1) != MPH_OK)
        return MPH_ERR_NOMEM;
    if (ul)
        memcpy(b->arena + b->used, uk, ul);
    b->ents[b->n++] = (struct sb_ent){start, end, b->used, ul};
    b->used += ul;
    return MPH_OK;
}

static void process(mph_event_t *ev, mph__shard_t *sh, sext_t *x,
                    mph_err_t *cerr);

static mph_err_t sext_build(mph_event_t *ev, struct mph_window *w,
                            mph__shard_t *sh, sext_t **out)
{
    struct sbuild b = {0};
    sext_t *x = calloc(1, sizeof *x);
    if (!x || !(x->keys = mph__mstore_new())) {
        free(x);
        return MPH_ERR_NOMEM;
    }
    x->w = w;
    b.x = x;
    b.sh = sh;
    mph_err_t err = mph__shard_foreach(sh, sbuild_visit, &b);
    if (b.have_meta) {
        x->have_st = true;
        x->st = b.st;
        x->closed = b.closed;
    }
    for (size_t i = 0; !err && i < b.n; i++) {
        const unsigned char *k = b.arena + b.ents[i].off;
        size_t kl = b.ents[i].len, n;
        sess_t s = {b.ents[i].start, b.ents[i].end, 0};
        if (x->have_st && mph__session_close_point(w, s.end) <= x->closed)
            s.closed = 1;
        err = list_get(x, k, kl, &n);
        if (!err) {
            list_insert(x, &n, s);
            err = list_put(x, k, kl, n);
        }
        if (!err)
            err = heap_push(x,
                            s.closed ? mph__session_expire_point(w, s.end)
                                     : mph__session_close_point(w, s.end),
                            s.start, s.closed ? PH_EXPIRE : PH_CLOSE, k, kl);
        if (!err)
            x->live++;
    }
    free(b.ents);
    free(b.arena);
    mph__window_stat_add(w, MPH_WINDOW_STAT_LIVE_WINDOWS, (int64_t)x->live);
    mph__window_stat_add(w, MPH_WINDOW_STAT_LIVE_PAIRS, (int64_t)x->live);
    if (err) {
        sext_free(x);
        return err;
    }
    if (b.foreign)
        mph_log(MPH_LOG_WARN,
                "session table %s [%u]: %zu keys that are not sessions "
                "(written with "
                "mph_table_*?) are ignored",
                w->table->name, sh->partition, b.foreign);
    sh->ext = x;
    sh->ext_free = sext_free;
    /* Sessions that expired while the shard was elsewhere go now (closed
     * ones only: closing waits for an event, as for the other windows). */
    if (x->have_st)
        process(ev, sh, x, NULL);
    *out = x;
    return MPH_OK;
}

static mph_err_t sprepare(mph_event_t *ev, struct mph_window *w,
                          mph__shard_t **sh_out, sext_t **x_out)
{
    mph__shard_t *sh = mph__table_event_shard(ev, w->table);
    if (!sh)
        return MPH_ERR_PARTITION;
    sext_t *x = sh->ext;
    if (!x) {
        mph_err_t err = sext_build(ev, w, sh, &x);
        if (err)
            return err;
    } else if (sh->ext_free != sext_free || x->w != w) {
        return MPH_ERR_STATE;
    }
    if (x->busy)
        return MPH_ERR_STATE;
    *sh_out = sh;
    *x_out = x;
    return MPH_OK;
}

/* The event's time, once per event and shard (bad times counted once). */
static mph_err_t time_of(mph_event_t *ev, sext_t *x, int64_t *t)
{
    const void *rkm = ev->rkm;
    int64_t off = mph_event_offset(ev);
    if (x->t_rkm != rkm || x->t_off != off) {
        bool future = false;
        x->t_rkm = rkm;
        x->t_off = off;
        x->t_late_counted = false;
        x->t_err = mph__window_compute_time(ev, x->w, &x->t_val, &future);
        if (x->t_err) {
            mph__window_stat_add(x->w,
                                 future ? MPH_WINDOW_STAT_FUTURE_TIME
                                        : MPH_WINDOW_STAT_INVALID_TIME,
                                 1);
            mph_topic_t *tp = mph_event_topic(ev);
            mph_log_limited(
                &x->lim, 10000, MPH_LOG_WARN,
                "session table %s: dropping %s [%d] offset %lld: %s time (%s)",
                x->w->table->name, tp ? mph_topic_name(tp) : "?",
                (int)mph_event_partition(ev), (long long)off,
                future ? "far-future" : "no valid", mph_err_str(x->t_err));
        }
    }
    *t = x->t_val;
    return x->t_err;
}

/* ------------------------------------------------------------------ */
/* closing and expiry                                                 */

static size_t list_find(const sext_t *x, size_t n, int64_t start)
{
    for (size_t i = 0; i < n; i++)
        if (x->list[i].start == start)
            return i;
    return n;
}

/* Closes and expires what is due at stream time. With cerr NULL (building)
 * only expires. On a failed close the entry goes back and *cerr is set;
 * x->closed then stays below its point. */
static void process(mph_event_t *ev, mph__shard_t *sh, sext_t *x,
                    mph_err_t *cerr)
{
    struct mph_window *w = x->w;
    int64_t fail_point = INT64_MAX;
    /* Entries pushed back during this pass wait for the next one. */
    hent_t *later = NULL;
    size_t nlater = 0, clater = 0;
    while (x->hn && x->heap[0].point <= x->st) {
        hent_t e;
        heap_pop(x, &e);
        size_t n, i;
        bool keep = false; /* e goes back (not freed) */
        if (list_get(x, e.key, e.klen, &n) != MPH_OK) {
            keep = true;
            goto next;
        }
        i = list_find(x, n, e.start);
        if (i == n)
            goto next; /* merged, moved or deleted since */
        sess_t *s = &x->list[i];
        if (!s->closed) {
            int64_t p = mph__session_close_point(w, s->end);
            if (p > x->st) {
                e.point = p; /* it grew: its turn comes later */
                e.phase = PH_CLOSE;
                keep = true;
                goto next;
            }
            if (!cerr) {
                e.phase = PH_CLOSE;
                keep = true; /* building: closing waits for an event */
                goto next;
            }
            mph_err_t err = MPH_OK;
            if (w->on_close) {
                const void *v;
                size_t vl;
                err = sess_value(x, sh, s->start, e.key, e.klen, &v, &vl);
                count_op(ev, w, 0);
                if (!err) {
                    x->busy++;
                    err = w->on_close(ev, e.key, e.klen, s->start, s->end + 1,
                                      v, vl, w->close_opaque);
                    x->busy--;
                    mph__window_stat_add(w, MPH_WINDOW_STAT_CLOSE_CALLS, 1);
                    if (err)
                        mph__window_stat_add(w, MPH_WINDOW_STAT_CLOSE_ERRORS,
                                             1);
                }
            }
            if (err) {
                *cerr = err;
                fail_point = p;
                keep = true;
                goto next;
            }
            /* on_close may not touch this table: the list copy is current */
            s->closed = 1;
            mph__window_stat_add(w, MPH_WINDOW_STAT_CLOSED, 1);
            e.point = mph__session_expire_point(w, s->end);
            e.phase = PH_EXPIRE;
            keep = true;
            list_put(x, e.key, e.klen, n); /* same size: no allocation */
            if (e.point > x->st)
                goto next;
        }
        /* closed and due to expire */
        {
            int64_t p = mph__session_expire_point(w, s->end);
            if (p > x->st) {
                e.point = p;
                e.phase = PH_EXPIRE;
                keep = true;
                goto next;
            }
            size_t cl;
            if (ckey(x, s->start, e.key, e.klen, &cl) != MPH_OK) {
                keep = true;
                goto next;
            }
            mph_err_t de = mph__shard_delete(sh, x->ck, cl);
            if (de && de != MPH_ERR_NOENT) {
                keep = true;
                goto next;
            }
            count_op(ev, w, 2);
            memmove(x->list + i, x->list + i + 1, (n - i - 1) * sizeof(sess_t));
            list_put(x, e.key, e.klen, n - 1);
            x->live--;
            keep = false;
            mph__window_stat_add(w, MPH_WINDOW_STAT_EXPIRED, 1);
            mph__window_stat_add(w, MPH_WINDOW_STAT_EXPIRED_KEYS, 1);
            mph__window_stat_add(w, MPH_WINDOW_STAT_LIVE_WINDOWS, -1);
            mph__window_stat_add(w, MPH_WINDOW_STAT_LIVE_PAIRS, -1);
        }
    next:
        if (keep) {
            if (e.point <= x->st) {
                /* not done now (a failure): back after this pass */
                if (nlater == clater) {
                    size_t c = clater ? clater * 2 : 8;
                    hent_t *l = realloc(later, c * sizeof *l);
                    if (!l) {
                        free(e.key);
                        continue;
                    }
                    later = l;
                    clater = c;
                }
                later[nlater++] = e;
            } else if (heap_push(x, e.point, e.start, e.phase, e.key, e.klen) !=
                       MPH_OK) {
                /* out of memory: the session stays; rebuilt with the index */
            }
            if (e.point > x->st)
                free(e.key);
        } else {
            free(e.key);
        }
        if (fail_point != INT64_MAX)
            break;
    }
    for (size_t j = 0; j < nlater; j++) {
        heap_push(x, later[j].point, later[j].start, later[j].phase,
                  later[j].key, later[j].klen);
        free(later[j].key);
    }
    free(later);
    if (cerr)
        x->closed = fail_point != INT64_MAX ? fail_point - 1 : x->st;
}

static mph_err_t advance(mph_event_t *ev, mph__shard_t *sh, sext_t *x,
                         int64_t t)
{
    bool moved = false;
    int64_t before = x->closed;
    if (!x->have_st || t > x->st) {
        x->have_st = true;
        x->st = t;
        moved = true;
    }
    mph_err_t err = MPH_OK;
    if (x->hn && x->heap[0].point <= x->st)
        process(ev, sh, x, &err);
    else
        x->closed = x->st;
    if (moved || x->closed != before) {
        mph_err_t e = write_meta(sh, x);
        if (!err)
            err = e;
    }
    return err;
}

mph_err_t mph__session_advance(mph_event_t *ev, struct mph_window *w)
{
    mph__shard_t *sh;
    sext_t *x;
    mph_err_t err = sprepare(ev, w, &sh, &x);
    if (err)
        return err;
    int64_t t;
    if (time_of(ev, x, &t) != MPH_OK)
        return MPH_OK; /* counted */
    return advance(ev, sh, x, t);
}

mph_err_t mph__session_stream_time(mph_event_t *ev, struct mph_window *w,
                                   int64_t *t)
{
    mph__shard_t *sh;
    sext_t *x;
    mph_err_t err = sprepare(ev, w, &sh, &x);
    if (err)
        return err;
    if (!x->have_st)
        return MPH_ERR_NOENT;
    *t = x->st;
    return MPH_OK;
}

/* ------------------------------------------------------------------ */
/* writes                                                             */

static int64_t i64_default(const mph_table_t *t)
{
    if (t->opts.has_dflt && t->opts.dflt_len == 8)
        return (int64_t)be64_get(t->opts.dflt);
    return 0;
}

/* Deletes the stored session (start, key). */
static mph_err_t sess_delete(mph_event_t *ev, sext_t *x, mph__shard_t *sh,
                             int64_t start, const void *key, size_t klen)
{
    size_t cl;
    mph_err_t err = ckey(x, start, key, klen, &cl);
    if (err)
        return err;
    count_op(ev, x->w, 2);
    err = mph__shard_delete(sh, x->ck, cl);
    return err == MPH_ERR_NOENT ? MPH_OK : err;
}

mph_err_t mph__session_write(mph_event_t *ev, struct mph_window *w,
                             const void *key, size_t klen, int kind, int64_t by,
                             const void *val, size_t vlen,
                             mph_window_update_fn *fn, void *opaque)
{
    mph__shard_t *sh;
    sext_t *x;
    mph_err_t err = sprepare(ev, w, &sh, &x);
    if (err)
        return err;
    err = mph__table_check_key(ev, w->table, key, klen);
    if (err)
        return err;
    int64_t t;
    if (time_of(ev, x, &t) != MPH_OK)
        return MPH_OK; /* dropped and counted */
    mph_err_t cerr = advance(ev, sh, x, t);
    if (t + w->grace < x->st) {
        mph__window_stat_add(w, MPH_WINDOW_STAT_LATE_WRITES, 1);
        if (!x->t_late_counted) {
            x->t_late_counted = true;
            mph__window_stat_add(w, MPH_WINDOW_STAT_LATE_EVENTS, 1);
        }
        return cerr;
    }
    size_t n;
    if ((err = list_get(x, key, klen, &n)) != MPH_OK)
        return err;
    int64_t starts[2];
    size_t first = n, count = 0;
    int64_t ns = t, ne = t;
    mph__session_find(n ? &x->list[0].start : NULL,
                      sizeof(sess_t) / sizeof(int64_t), n, w->size, t, &first,
                      &count, &ns, &ne);
    if (count > 2)
        return MPH_ERR_INTERNAL; /* sessions closer than the gap: broken index
                                  */
    for (size_t i = 0; i < count; i++) {
        starts[i] = x->list[first + i].start;
        if (x->list[first + i].closed)
            return MPH_ERR_INTERNAL; /* see DESIGN: cannot happen */
    }
    /* The merged value before the event's write. */
    struct mph__window_capture old = {0};
    bool have_old = false;
    if (count >= 1) {
        const void *v;
        size_t vl;
        err = sess_value(x, sh, starts[0], key, klen, &v, &vl);
        count_op(ev, w, 0);
        if (!err)
            err = mph__window_capture_set(&old, v, vl);
        have_old = !err;
    }
    if (!err && count == 2) {
        const void *v;
        size_t vl;
        struct mph__window_capture b = {0};
        err = sess_value(x, sh, starts[1], key, klen, &v, &vl);
        count_op(ev, w, 0);
        if (!err)
            err = mph__window_capture_set(&b, v, vl);
        struct mph__window_capture m = {0};
        if (!err && w->merge) {
            mph_window_update_t u = {0};
            u.cap = &m;
            x->busy++;
            err = w->merge(old.buf, old.len, b.buf, b.len, &u, w->merge_opaque);
            x->busy--;
            if (!err && !m.set)
                err = mph__window_capture_set(&m, b.buf, b.len);
        } else if (!err) {
            err =
                mph__session_default_merge(old.buf, old.len, b.buf, b.len, &m);
        }
        if (!err) {
            free(old.buf);
            old = m;
        } else {
            free(m.buf);
        }
        free(b.buf);
    }
    /* The event's write on the merged value. */
    struct mph__window_capture nv = {0};
    bool remove = false; /* the sessions go and nothing is written */
    if (!err) {
        switch (kind) {
        case MPH__SESSION_INCR: {
            int64_t cur = i64_default(w->table);
            if (have_old) {
                if (old.len != 8) {
                    err = MPH_ERR_TYPE;
                    break;
                }
                cur = (int64_t)be64_get(old.buf);
            }
            unsigned char b8[8];
            be64_put((uint64_t)cur + (uint64_t)by, b8); /* wraps, no UB */
            err = mph__window_capture_set(&nv, b8, 8);
            break;
        }
        case MPH__SESSION_SET:
            err = mph__window_capture_set(&nv, val, vlen);
            break;
        case MPH__SESSION_DELETE:
            remove = true;
            break;
        case MPH__SESSION_UPDATE: {
            mph_window_update_t u = {0};
            u.cap = &nv;
            u.start = ns;
            u.key = key;
            u.klen = klen;
            u.existed = have_old;
            x->busy++;
            mph_err_t rc = fn(ns, ne + 1, have_old ? old.buf : NULL,
                              have_old ? old.len : 0, &u, opaque);
            x->busy--;
            if (rc == MPH_ERR_NOENT) {
                remove = true;
            } else if (rc) {
                err = rc;
            } else if (!nv.set) {
                if (have_old)
                    err = mph__window_capture_set(&nv, old.buf, old.len);
                else
                    remove = true; /* nothing to keep, nothing created */
            }
            break;
        }
        default:
            err = MPH_ERR_INVALID;
        }
    }
    free(old.buf);
    if (err) {
        free(nv.buf);
        return err;
    }
    /* Apply: old sessions go (those not at the new start), the new one is
     * written, the list and heap follow. */
    bool same_start = false;
    for (size_t i = 0; i < count && !err; i++) {
        if (!remove && starts[i] == ns) {
            same_start = true;
            continue;
        }
        err = sess_delete(ev, x, sh, starts[i], key, klen);
    }
    if (!err && !remove) {
        size_t cl;
        err = ckey(x, ns, key, klen, &cl);
        if (!err)
            err = grow(&x->vb, &x->vbcap, nv.len + MPH__SESSION_SUFFIX);
        if (!err) {
            size_t sl = mph__session_value_encode(nv.buf, nv.len, ne, x->vb);
            count_op(ev, w, 1);
            err = mph__shard_set(sh, x->ck, cl, x->vb, sl);
        }
    }
    free(nv.buf);
    if (err)
        return err; /* the shard may be ahead of the index: see below */
    /* The list: drop the joined sessions, insert the new one. */
    if (count)
        memmove(x->list + first, x->list + first + count,
                (n - first - count) * sizeof(sess_t));
    size_t nn = n - count;
    int64_t dlive = -(int64_t)count;
    if (!remove) {
        list_insert(x, &nn, (sess_t){ns, ne, 0});
        dlive++;
    }
    err = list_put(x, key, klen, nn);
    if (!err && !remove && !same_start)
        err = heap_push(x, mph__session_close_point(w, ne), ns, PH_CLOSE, key,
                        klen);
    if (err) {
        /* Out of memory: the shard holds the truth; rebuild from it. */
        sh->ext = NULL;
        sh->ext_free = NULL;
        sext_free(x);
        return err;
    }
    x->live = (uint64_t)((int64_t)x->live + dlive);
    mph__window_stat_add(w, MPH_WINDOW_STAT_LIVE_WINDOWS, dlive);
    mph__window_stat_add(w, MPH_WINDOW_STAT_LIVE_PAIRS, dlive);
    return cerr;
}

/* ------------------------------------------------------------------ */
/* reads                                                              */

mph_err_t mph__session_get(mph_event_t *ev, struct mph_window *w,
                           const void *key, size_t klen,
                           mph_window_which_t which, int64_t arg,
                           const void **value, size_t *value_len,
                           int64_t *start_out, int64_t *end_out)
{
    if (!ev || !value)
        return MPH_ERR_INVALID;
    if (klen > MPH__WINDOW_KEY_MAX)
        return MPH_ERR_RANGE;
    mph__shard_t *sh;
    sext_t *x;
    mph_err_t err = sprepare(ev, w, &sh, &x);
    if (err)
        return err;
    if ((err = mph__table_check_key(ev, w->table, key, klen)) != MPH_OK)
        return err;
    int64_t t = 0;
    switch (which) {
    case MPH_WINDOW_CURRENT:
    case MPH_WINDOW_DELTA:
        if ((err = time_of(ev, x, &t)) != MPH_OK)
            return err;
        if (which == MPH_WINDOW_DELTA) {
            if (arg < -MPH__WINDOW_TIME_MAX || arg > MPH__WINDOW_TIME_MAX)
                return MPH_ERR_RANGE;
            t -= arg;
        }
        break;
    case MPH_WINDOW_NOW:
        t = mph_clock_wall_ms();
        break;
    case MPH_WINDOW_AT:
        if (arg < -MPH__WINDOW_TIME_MAX || arg > MPH__WINDOW_TIME_MAX)
            return MPH_ERR_RANGE;
        break;
    default:
        return MPH_ERR_INVALID;
    }
    size_t n;
    if ((err = list_get(x, key, klen, &n)) != MPH_OK)
        return err;
    count_op(ev, w, 0);
    for (size_t i = 0; i < n; i++) {
        const sess_t *s = &x->list[i];
        bool hit = which == MPH_WINDOW_AT ? s->start == arg
                                          : s->start <= t && t <= s->end;
        if (!hit)
            continue;
        size_t vl;
        err = sess_value(x, sh, s->start, key, klen, value, &vl);
        if (err)
            return err;
        if (value_len)
            *value_len = vl;
        if (start_out)
            *start_out = s->start;
        if (end_out)
            *end_out = s->end + 1;
        return MPH_OK;
    }
    count_op(ev, w, 3);
    return MPH_ERR_NOENT;
}

mph_err_t mph__session_foreach_window(mph_event_t *ev, struct mph_window *w,
                                      const void *key, size_t klen,
                                      mph_window_visit_fn *fn, void *opaque)
{
    if (!ev)
        return MPH_ERR_INVALID;
    if (klen > MPH__WINDOW_KEY_MAX)
        return MPH_ERR_RANGE;
    mph__shard_t *sh;
    sext_t *x;
    mph_err_t err = sprepare(ev, w, &sh, &x);
    if (err)
        return err;
    if ((err = mph__table_check_key(ev, w->table, key, klen)) != MPH_OK)
        return err;
    size_t n;
    if ((err = list_get(x, key, klen, &n)) != MPH_OK)
        return err;
    /* x->list may be reused by nothing here (fn must not use the table) */
    for (size_t i = 0; i < n && !err; i++) {
        sess_t s = x->list[i];
        const void *v;
        size_t vl;
        mph_err_t g = sess_value(x, sh, s.start, key, klen, &v, &vl);
        count_op(ev, w, 0);
        if (g == MPH_ERR_NOENT)
            continue;
        if (g)
            return g;
        x->busy++;
        err = fn(s.start, s.end + 1, s.closed != 0, v, vl, opaque);
        x->busy--;
    }
    return err;
}

mph_err_t mph__session_foreach_key(mph_event_t *ev, struct mph_window *w,
                                   mph_window_key_fn *fn, void *opaque)
{
    mph__shard_t *sh;
    sext_t *x;
    mph_err_t err = sprepare(ev, w, &sh, &x);
    if (err)
        return err;
    mph__mstore_iter_t it;
    const void *k, *v;
    size_t kl, vl;
    mph__mstore_iter_init(&it, x->keys);
    x->busy++;
    while (!err && mph__mstore_iter_next(&it, &k, &kl, &v, &vl))
        err = fn(k, kl, vl / sizeof(sess_t), opaque);
    x->busy--;
    return err;
}

mph_err_t mph__session_lookup(mph_app_t *app, struct mph_window *w,
                              const void *key, size_t klen,
                              mph_window_which_t which, int64_t arg,
                              void **value, size_t *value_len,
                              int64_t *start_out, int64_t *end_out,
                              int timeout_ms)
{
    if (which != MPH_WINDOW_AT)
        return MPH_ERR_RANGE; /* a session is named by its start */
    if (arg < -MPH__WINDOW_TIME_MAX || arg > MPH__WINDOW_TIME_MAX)
        return MPH_ERR_RANGE;
    unsigned char *ck = malloc(MPH__WINDOW_PREFIX + klen);
    if (!ck)
        return MPH_ERR_NOMEM;
    size_t cl = mph__window_key(arg, key, klen, ck);
    mph_table_t *t = w->table;
    void *v = NULL;
    size_t vl = 0;
    mph_err_t err =
        mph__table_lookup_at(app, t, mph_table_partition_of(t, key, klen), ck,
                             cl, &v, &vl, timeout_ms);
    free(ck);
    if (err)
        return err;
    size_t ul;
    int64_t end;
    if (!mph__session_value_decode(v, vl, &ul, &end)) {
        free(v); /* the table's default: no session starts there */
        return MPH_ERR_NOENT;
    }
    *value = v;
    if (value_len)
        *value_len = ul;
    if (start_out)
        *start_out = arg;
    if (end_out)
        *end_out = end + 1;
    return MPH_OK;
}

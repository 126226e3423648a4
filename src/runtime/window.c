/*
 * DESIGN — windowed tables.
 *
 * A window handle is declared on a table; the table's shards then hold
 * (window, key) pairs under storage keys made of the window start (8 bytes,
 * big-endian, sign bit flipped so that negative starts — hopping windows
 * near time 0 — sort before positive ones) followed by the user key. So all
 * pairs of one window are one contiguous key range, a RocksDB shard lists
 * windows in time order, and the changelog carries pairs like any table
 * record. Every shard also holds one reserved 7-byte key (shorter than any
 * storage key, so it cannot collide) with the shard's stream time and its
 * closed-through watermark. Both move in memory (the shard's ext, below)
 * on nearly every event; the key is written once per flush, just before
 * the flush takes the shard's dirty set (shard.h: ext_due, ext_flush; a
 * moved stream time lists the shard for the flush as a write would). From
 * there it is an ordinary shard write: produced to the changelog and
 * written to RocksDB in the same WriteBatch as the checkpoint, so "which
 * windows have closed" is exactly as durable as the data, at the commit
 * that covers the events which moved it. (Written on every event before:
 * ~430 instructions each, callgrind.) After a graceful stop nothing closes
 * twice; after a crash the shard goes back to its last commit together
 * with the source offsets, and the closes since then are repeated (at
 * least once, bounded by what one commit covers).
 *
 * Derived state lives in shard->ext, the slot the table layer keeps for
 * layers above it (only the owning worker touches it; the table layer frees
 * it whenever the contents change underneath: recovery, reset). It is built
 * lazily on the first window call for the shard by iterating the shard once
 * (memory and RocksDB merged) and sorting by window start, then kept up to
 * date by every window write:
 *   - the live windows, an array sorted by start: [head, head+nclosed) are
 *     closed and wait for expiry, [head+nclosed, n) are open. Each window
 *     keeps the user keys it holds in a small arena of (u16 length, bytes)
 *     entries, appended when a write creates a pair (the shard read that
 *     every write does anyway tells whether the pair is new). A delete
 *     marks the window "churned": its entries may then repeat or be dead,
 *     and they are sorted, deduplicated and checked against the shard once,
 *     before the window is closed or expired;
 *   - the key index: user key -> number of live windows holding it (an
 *     mstore map of clean entries), for mph_window_foreach_key. Built on
 *     that call's first use for the shard, from the windows' key lists
 *     (compacted first), and kept up to date by every write from then on;
 *     a shard whose keys nobody lists pays nothing for it (it was two
 *     map updates per new pair and per expired pair: ~2,400 of the
 *     ~10,000 instructions per event of a window count, callgrind);
 *   - stream time, the watermark, and the two times at which the next
 *     window closes or expires, so that the per-event check is two
 *     comparisons when nothing happens.
 * Windows only ever close in start order, and a write never creates a
 * window that is due (its writes are late), so new windows always land in
 * the open part of the array. Expiry removes from the head; the array is
 * compacted when the dead prefix grows past half of it.
 *
 * Closing runs on the event path, inside the write (or advance) whose event
 * moved stream time past end + grace, in window order, calling on_close
 * with the event so that results can be sent and held by its commit point.
 * A failing callback stops closing at that window: the watermark stays just
 * below its due point (persisted), the error goes to the caller, and the
 * next advance retries it. Expiry deletes each pair (a tombstone in memory,
 * in RocksDB at the next commit, and in the changelog) and never touches a
 * window that has not closed; its point is end + max(expires, grace). A
 * pair created and expired between two commits was never written, so its
 * tombstone is skipped (fresh keys, store_memory.c): with windows shorter
 * than a commit interval most pairs never reach the changelog.
 *
 * Expiry by per-key deletes instead of a RocksDB DeleteRange: the changelog
 * needs a tombstone per key anyway (compaction is what bounds it; a range
 * delete cannot reach Kafka), the dirty set already carries deletes to
 * RocksDB atomically with the checkpoint, and the window's key arena says
 * exactly which keys to delete, so no store change was needed.
 *
 * The shape of a window (tumbling, hopping, sliding) reduces to three
 * numbers: size (every window is [start, start + size)), step (hopping;
 * = size for tumbling) and, for sliding, before: an event at t makes the
 * window starting at t - before with size before + after + 1.
 *
 * Never: take a lock or touch another worker's shard on the event path
 * (the registry lock below guards declarations and
 * mph_table_window only); write a window that is
 * due; call on_close twice for a (window, key) within one run, except when
 * the callback itself failed and its window is retried.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ck_pr.h>

#include "mephisto/log.h"
#include "runtime/app.h"
#include "runtime/table.h"
#include "runtime/window.h"
#include "runtime/worker.h"
#include "state/shard.h"
#include "state/store_memory.h"

/* ------------------------------------------------------------------ */
/* arithmetic                                                         */

int64_t mph__window_floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if (a % b != 0 && a < 0)
        q--;
    return q;
}

size_t mph__window_starts(const struct mph_window *w, int64_t t, int64_t *out,
                          size_t cap)
{
    if (w->kind == MPH__WINDOW_SLIDING) {
        if (cap)
            out[0] = t - w->before;
        return 1;
    }
    int64_t kmax = mph__window_floor_div(t, w->step);
    int64_t kmin = mph__window_floor_div(t - w->size, w->step) + 1;
    size_t n = 0;
    for (int64_t k = kmin; k <= kmax; k++, n++)
        if (n < cap)
            out[n] = k * w->step;
    return n;
}

int64_t mph__window_current(const struct mph_window *w, int64_t t)
{
    if (w->kind == MPH__WINDOW_SLIDING)
        return t - w->before;
    return mph__window_floor_div(t, w->step) * w->step;
}

bool mph__window_due(const struct mph_window *w, int64_t start, int64_t st)
{
    return start + w->size + w->grace <= st;
}

int64_t mph__window_expiry(const struct mph_window *w, int64_t start)
{
    return start + w->size + (w->expires > w->grace ? w->expires : w->grace);
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

#define SIGN_FLIP (UINT64_C(1) << 63)

size_t mph__window_key(int64_t start, const void *key, size_t klen,
                       unsigned char *out)
{
    be64_put((uint64_t)start ^ SIGN_FLIP, out);
    if (klen)
        memcpy(out + MPH__WINDOW_PREFIX, key, klen);
    return MPH__WINDOW_PREFIX + klen;
}

bool mph__window_key_parse(const void *ck, size_t cklen, int64_t *start,
                           const void **key, size_t *klen)
{
    if (cklen < MPH__WINDOW_PREFIX)
        return false;
    *start = (int64_t)(be64_get(ck) ^ SIGN_FLIP);
    *key = (const unsigned char *)ck + MPH__WINDOW_PREFIX;
    *klen = cklen - MPH__WINDOW_PREFIX;
    return true;
}

void mph__window_meta_encode(int64_t st, int64_t closed, unsigned char out[16])
{
    be64_put((uint64_t)st, out);
    be64_put((uint64_t)closed, out + 8);
}

bool mph__window_meta_decode(const void *v, size_t vlen, int64_t *st,
                             int64_t *closed)
{
    if (vlen != MPH__WINDOW_META_VLEN)
        return false;
    *st = (int64_t)be64_get(v);
    *closed = (int64_t)be64_get((const unsigned char *)v + 8);
    return *closed <= *st;
}

static bool span_ok(int64_t v, int64_t min)
{
    return v >= min && v <= MPH__WINDOW_SPAN_MAX;
}

mph_err_t mph__window_init(struct mph_window *w, int kind, int64_t a, int64_t b,
                           int64_t expires, char *errstr, size_t errstr_size)
{
    char tmp[256];
    if (!errstr || !errstr_size) {
        errstr = tmp;
        errstr_size = sizeof tmp;
    }
    memset(w, 0, sizeof *w);
    w->kind = kind;
    w->max_future = 86400000;
    if (!span_ok(expires, 0)) {
        snprintf(errstr, errstr_size,
                 "window: expires must be 0..2^41 ms, got %lld",
                 (long long)expires);
        return MPH_ERR_RANGE;
    }
    w->expires = expires;
    switch (kind) {
    case MPH__WINDOW_TUMBLING:
        b = a;
        /* fall through */
    case MPH__WINDOW_HOPPING:
        if (!span_ok(a, 1)) {
            snprintf(errstr, errstr_size,
                     "window: size must be 1..2^41 ms, got %lld", (long long)a);
            return MPH_ERR_RANGE;
        }
        if (b < 1 || b > a) {
            snprintf(errstr, errstr_size,
                     "window: step must be 1..size (%lld) ms, got %lld",
                     (long long)a, (long long)b);
            return MPH_ERR_RANGE;
        }
        if ((a + b - 1) / b > MPH__WINDOW_PER_TIME_MAX) {
            snprintf(errstr, errstr_size,
                     "window: size/step is %lld windows per time, at most %d "
                     "allowed",
                     (long long)((a + b - 1) / b), MPH__WINDOW_PER_TIME_MAX);
            return MPH_ERR_RANGE;
        }
        w->size = a;
        w->step = b;
        return MPH_OK;
    case MPH__WINDOW_SESSION:
        if (!span_ok(a, 1)) {
            snprintf(errstr, errstr_size,
                     "window: session gap must be 1..2^41 ms, got %lld",
                     (long long)a);
            return MPH_ERR_RANGE;
        }
        w->size = a; /* the gap */
        w->step = a;
        return MPH_OK;
    case MPH__WINDOW_SLIDING:
        if (!span_ok(a, 0) || !span_ok(b, 0) ||
            a + b + 1 > MPH__WINDOW_SPAN_MAX) {
            snprintf(errstr, errstr_size,
                     "window: before and after must be >= 0 and span at most "
                     "2^41 ms, got "
                     "%lld and %lld",
                     (long long)a, (long long)b);
            return MPH_ERR_RANGE;
        }
        w->before = a;
        w->after = b;
        w->size = a + b + 1;
        w->step = 1;
        return MPH_OK;
    default:
        snprintf(errstr, errstr_size, "window: unknown kind %d", kind);
        return MPH_ERR_INVALID;
    }
}

mph_err_t mph__window_parse_time_source(const char *spec, int *src,
                                        char **field)
{
    *field = NULL;
    if (!spec)
        return MPH_ERR_INVALID;
    if (!strcmp(spec, "event")) {
        *src = MPH__WINDOW_TIME_EVENT;
        return MPH_OK;
    }
    if (!strcmp(spec, "wall")) {
        *src = MPH__WINDOW_TIME_WALL;
        return MPH_OK;
    }
    if (!strncmp(spec, "field:", 6) && spec[6] && spec[6] != '.' &&
        spec[strlen(spec) - 1] != '.' && !strstr(spec, "..")) {
        *field = strdup(spec + 6);
        if (!*field)
            return MPH_ERR_NOMEM;
        *src = MPH__WINDOW_TIME_FIELD;
        return MPH_OK;
    }
    return MPH_ERR_INVALID;
}

/* ------------------------------------------------------------------ */
/* declaration and the registry (table -> window)                     */

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mph_window *reg_head;

static void window_free(void *p)
{
    struct mph_window *w = p;
    pthread_mutex_lock(&reg_lock);
    for (struct mph_window **pp = &reg_head; *pp; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    }
    pthread_mutex_unlock(&reg_lock);
    free(w->field);
    free(w);
}

static bool app_new(const mph_table_t *t)
{
    return ck_pr_load_int(&t->app->state) == APP_NEW;
}

static mph_window_t *declare(mph_table_t *t, int kind, int64_t a, int64_t b,
                             int64_t expires, char *errstr, size_t errstr_size)
{
    char tmp[256];
    if (!errstr || !errstr_size) {
        errstr = tmp;
        errstr_size = sizeof tmp;
    }
    if (!t) {
        snprintf(errstr, errstr_size, "window: NULL table");
        return NULL;
    }
    if (!app_new(t)) {
        snprintf(errstr, errstr_size,
                 "table %s: declare windows before the app starts", t->name);
        return NULL;
    }
    struct mph_window *w = malloc(sizeof *w);
    if (!w) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    if (mph__window_init(w, kind, a, b, expires, errstr, errstr_size) !=
        MPH_OK) {
        free(w);
        return NULL;
    }
    w->table = t;
    pthread_mutex_lock(&reg_lock);
    for (struct mph_window *o = reg_head; o; o = o->next) {
        if (o->table == t) {
            pthread_mutex_unlock(&reg_lock);
            snprintf(errstr, errstr_size, "table %s: already windowed",
                     t->name);
            free(w);
            return NULL;
        }
    }
    w->next = reg_head;
    reg_head = w;
    pthread_mutex_unlock(&reg_lock);
    if (mph_app_keep(t->app, w, window_free) != MPH_OK) {
        window_free(w);
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    return w;
}

mph_window_t *mph_table_tumbling(mph_table_t *table, int64_t size_ms,
                                 int64_t expires_ms, char *errstr,
                                 size_t errstr_size)
{
    return declare(table, MPH__WINDOW_TUMBLING, size_ms, size_ms, expires_ms,
                   errstr, errstr_size);
}

mph_window_t *mph_table_hopping(mph_table_t *table, int64_t size_ms,
                                int64_t step_ms, int64_t expires_ms,
                                char *errstr, size_t errstr_size)
{
    return declare(table, MPH__WINDOW_HOPPING, size_ms, step_ms, expires_ms,
                   errstr, errstr_size);
}

mph_window_t *mph_table_sliding(mph_table_t *table, int64_t before_ms,
                                int64_t after_ms, int64_t expires_ms,
                                char *errstr, size_t errstr_size)
{
    return declare(table, MPH__WINDOW_SLIDING, before_ms, after_ms, expires_ms,
                   errstr, errstr_size);
}

mph_window_t *mph_table_session(mph_table_t *table, int64_t gap_ms,
                                int64_t expires_ms, char *errstr,
                                size_t errstr_size)
{
    return declare(table, MPH__WINDOW_SESSION, gap_ms, 0, expires_ms, errstr,
                   errstr_size);
}

mph_err_t mph_window_on_merge(mph_window_t *w, mph_window_merge_fn *fn,
                              void *opaque)
{
    if (!w || w->kind != MPH__WINDOW_SESSION)
        return MPH_ERR_INVALID;
    if (!app_new(w->table))
        return MPH_ERR_STATE;
    w->merge = fn;
    w->merge_opaque = opaque;
    return MPH_OK;
}

mph_window_t *mph_table_window(const mph_table_t *table)
{
    pthread_mutex_lock(&reg_lock);
    struct mph_window *w = reg_head;
    while (w && w->table != table)
        w = w->next;
    pthread_mutex_unlock(&reg_lock);
    return w;
}

mph_table_t *mph_window_table(const mph_window_t *w)
{
    return w ? w->table : NULL;
}

mph_err_t mph_window_grace(mph_window_t *w, int64_t grace_ms)
{
    if (!w)
        return MPH_ERR_INVALID;
    if (!app_new(w->table))
        return MPH_ERR_STATE;
    if (!span_ok(grace_ms, 0))
        return MPH_ERR_RANGE;
    w->grace = grace_ms;
    return MPH_OK;
}

mph_err_t mph_window_time_source(mph_window_t *w, const char *spec)
{
    if (!w || !spec)
        return MPH_ERR_INVALID;
    if (!app_new(w->table))
        return MPH_ERR_STATE;
    int src;
    char *field;
    mph_err_t err = mph__window_parse_time_source(spec, &src, &field);
    if (err)
        return err;
    free(w->field);
    w->field = field;
    w->time_src = src;
    return MPH_OK;
}

mph_err_t mph_window_max_future(mph_window_t *w, int64_t max_future_ms)
{
    if (!w)
        return MPH_ERR_INVALID;
    if (!app_new(w->table))
        return MPH_ERR_STATE;
    if (max_future_ms < -1 || max_future_ms > MPH__WINDOW_TIME_MAX)
        return MPH_ERR_RANGE;
    w->max_future = max_future_ms;
    return MPH_OK;
}

mph_err_t mph_window_on_close(mph_window_t *w, mph_window_close_fn *fn,
                              void *opaque)
{
    if (!w)
        return MPH_ERR_INVALID;
    if (!app_new(w->table))
        return MPH_ERR_STATE;
    w->on_close = fn;
    w->close_opaque = opaque;
    return MPH_OK;
}

mph_err_t mph_window_ranges(const mph_window_t *w, int64_t time_ms,
                            int64_t *starts, size_t cap, size_t *n)
{
    if (!w || !n || (!starts && cap) || w->kind == MPH__WINDOW_SESSION)
        return MPH_ERR_INVALID;
    if (time_ms < -MPH__WINDOW_TIME_MAX || time_ms > MPH__WINDOW_TIME_MAX)
        return MPH_ERR_RANGE;
    *n = mph__window_starts(w, time_ms, starts, cap);
    return MPH_OK;
}

mph_err_t mph_window_current(const mph_window_t *w, int64_t time_ms,
                             int64_t *start, int64_t *end)
{
    if (!w || w->kind == MPH__WINDOW_SESSION)
        return MPH_ERR_INVALID;
    if (time_ms < -MPH__WINDOW_TIME_MAX || time_ms > MPH__WINDOW_TIME_MAX)
        return MPH_ERR_RANGE;
    int64_t s = mph__window_current(w, time_ms);
    if (start)
        *start = s;
    if (end)
        *end = s + w->size;
    return MPH_OK;
}

static void stat_add(struct mph_window *w, mph_window_stat_t s, int64_t n)
{
    if (n)
        ck_pr_add_64(&w->stats[s], (uint64_t)n);
}

void mph__window_stat_add(struct mph_window *w, mph_window_stat_t s, int64_t n)
{
    stat_add(w, s, n);
}

mph_err_t mph__window_capture_set(struct mph__window_capture *c,
                                  const void *value, size_t len)
{
    if (len > c->size) {
        unsigned char *b = realloc(c->buf, len);
        if (!b)
            return MPH_ERR_NOMEM;
        c->buf = b;
        c->size = len;
    }
    if (len)
        memcpy(c->buf, value, len);
    c->len = len;
    c->set = true;
    return MPH_OK;
}

int64_t mph_window_stat(const mph_window_t *w, mph_window_stat_t which)
{
    if (!w || (int)which < 0 || which >= MPH_WINDOW_STAT__COUNT)
        return -1;
    return (int64_t)ck_pr_load_64((uint64_t *)&w->stats[which]);
}

/* ------------------------------------------------------------------ */
/* the per-shard index (shard->ext)                                   */

typedef struct wslot {
    int64_t start;
    unsigned char *keys; /* entries: u16 length (host order), then the bytes */
    size_t used, cap;
    uint32_t live; /* live pairs */
    bool churn;    /* a pair was deleted: entries may repeat or be dead */
} wslot_t;

typedef struct wext {
    struct mph_window *w;
    wslot_t *wins;
    size_t head, n, cap;
    size_t nclosed;
    bool have_st;
    int64_t st;          /* stream time */
    int64_t closed;      /* every window with end + grace <= closed is closed */
    int64_t next_close;  /* due point of the first open window, or INT64_MAX */
    int64_t next_expire; /* expiry point of the first window, or INT64_MAX */
    mph__mstore_t *index; /* user key -> u64 number of windows holding it;
                           * NULL until mph_window_foreach_key first asks */
    uint64_t pairs;
    int busy;          /* inside a callback of ours: this table is off limits */
    unsigned char *ck; /* storage-key buffer */
    size_t ckcap;
    /* the event time, computed once per event */
    const void *t_rkm;
    int64_t t_off;
    mph_err_t t_err;
    int64_t t_val;
    bool t_late_counted;
    mph_log_limit_t lim;
} wext_t;

static void ext_free(void *p)
{
    wext_t *x = p;
    stat_add(x->w, MPH_WINDOW_STAT_LIVE_WINDOWS, -(int64_t)(x->n - x->head));
    stat_add(x->w, MPH_WINDOW_STAT_LIVE_PAIRS, -(int64_t)x->pairs);
    for (size_t i = x->head; i < x->n; i++)
        free(x->wins[i].keys);
    free(x->wins);
    mph__mstore_destroy(x->index);
    free(x->ck);
    free(x);
}

static mph_err_t ck_reserve(wext_t *x, size_t klen)
{
    size_t need = MPH__WINDOW_PREFIX + klen;
    if (need <= x->ckcap)
        return MPH_OK;
    size_t cap = x->ckcap ? x->ckcap : 256;
    while (cap < need)
        cap *= 2;
    unsigned char *b = realloc(x->ck, cap);
    if (!b)
        return MPH_ERR_NOMEM;
    x->ck = b;
    x->ckcap = cap;
    return MPH_OK;
}

static mph_err_t slot_append(wslot_t *s, const void *key, size_t klen)
{
    size_t need = s->used + 2 + klen;
    if (need > s->cap) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap < need)
            cap *= 2;
        unsigned char *b = realloc(s->keys, cap);
        if (!b)
            return MPH_ERR_NOMEM;
        s->keys = b;
        s->cap = cap;
    }
    uint16_t l = (uint16_t)klen;
    memcpy(s->keys + s->used, &l, 2);
    if (klen)
        memcpy(s->keys + s->used + 2, key, klen);
    s->used = need;
    return MPH_OK;
}

/* Walks the entries of a slot: *pos starts at 0. */
static bool slot_next(const wslot_t *s, size_t *pos, const unsigned char **key,
                      size_t *klen)
{
    if (*pos >= s->used)
        return false;
    uint16_t l;
    memcpy(&l, s->keys + *pos, 2);
    *key = s->keys + *pos + 2;
    *klen = l;
    *pos += 2 + (size_t)l;
    return true;
}

/* Counts key in (+1) or out of (-1) a window in the key index, when it
 * was built. Only an increment of a new key allocates (and may fail). */
static mph_err_t index_add(wext_t *x, const void *key, size_t klen, int delta)
{
    if (!x->index)
        return MPH_OK;
    const void *v;
    size_t vl;
    uint64_t n = 0;
    if (mph__mstore_lookup(x->index, key, klen, &v, &vl) ==
            MPH__MSTORE_PRESENT &&
        vl == 8)
        memcpy(&n, v, 8);
    n = delta > 0 ? n + 1 : (n ? n - 1 : 0);
    if (n == 0)
        return mph__mstore_forget(x->index, key, klen);
    return mph__mstore_fill(x->index, key, klen, &n, 8);
}

/* First index in [head, n) whose start >= start. */
static size_t slot_lower(const wext_t *x, int64_t start)
{
    size_t lo = x->head, hi = x->n;
    if (hi > lo && x->wins[hi - 1].start < start)
        return hi; /* the common case: a new latest window */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (x->wins[mid].start < start)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static wslot_t *slot_find(wext_t *x, int64_t start)
{
    size_t i = slot_lower(x, start);
    return i < x->n && x->wins[i].start == start ? &x->wins[i] : NULL;
}

static void refresh_points(wext_t *x)
{
    size_t open = x->head + x->nclosed;
    x->next_close = open < x->n ? x->wins[open].start + x->w->size + x->w->grace
                                : INT64_MAX;
    x->next_expire = x->head < x->n
                         ? mph__window_expiry(x->w, x->wins[x->head].start)
                         : INT64_MAX;
}

/* Inserts an empty open window (never due: see DESIGN). */
static wslot_t *slot_insert(wext_t *x, int64_t start)
{
    size_t i = slot_lower(x, start);
    if (i < x->n && x->wins[i].start == start)
        return &x->wins[i];
    if (i < x->head + x->nclosed)
        abort(); /* a due window was about to be created */
    if (x->n == x->cap) {
        if (x->head > 0) {
            memmove(x->wins, x->wins + x->head,
                    (x->n - x->head) * sizeof *x->wins);
            x->n -= x->head;
            i -= x->head;
            x->head = 0;
        }
        if (x->n == x->cap) {
            size_t cap = x->cap ? x->cap * 2 : 16;
            wslot_t *nw = realloc(x->wins, cap * sizeof *nw);
            if (!nw)
                return NULL;
            x->wins = nw;
            x->cap = cap;
        }
    }
    memmove(x->wins + i + 1, x->wins + i, (x->n - i) * sizeof *x->wins);
    memset(&x->wins[i], 0, sizeof x->wins[i]);
    x->wins[i].start = start;
    x->n++;
    stat_add(x->w, MPH_WINDOW_STAT_LIVE_WINDOWS, 1);
    refresh_points(x);
    return &x->wins[i];
}

/* A write created the pair (start, key): on failure (out of memory) the
 * caller removes it from the shard again, and a half-recorded entry is
 * dropped by the next compaction of its window. */
static mph_err_t pair_added(wext_t *x, int64_t start, const void *key,
                            size_t klen)
{
    wslot_t *s = slot_insert(x, start);
    if (!s || slot_append(s, key, klen) != MPH_OK)
        return MPH_ERR_NOMEM;
    if (index_add(x, key, klen, +1) != MPH_OK) {
        s->churn = true;
        return MPH_ERR_NOMEM;
    }
    s->live++;
    x->pairs++;
    stat_add(x->w, MPH_WINDOW_STAT_LIVE_PAIRS, 1);
    return MPH_OK;
}

static void pair_removed(wext_t *x, int64_t start, const void *key, size_t klen)
{
    wslot_t *s = slot_find(x, start);
    if (!s)
        return;
    if (s->live)
        s->live--;
    s->churn = true;
    x->pairs--;
    index_add(x, key, klen, -1);
    stat_add(x->w, MPH_WINDOW_STAT_LIVE_PAIRS, -1);
}

struct kref {
    const unsigned char *k;
    size_t len;
};

static int kref_cmp(const void *a, const void *b)
{
    const struct kref *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = n ? memcmp(x->k, y->k, n) : 0;
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* After deletes: keeps each key of the window once, and only if the shard
 * still holds the pair. */
static mph_err_t slot_compact(wext_t *x, mph__shard_t *sh, wslot_t *s)
{
    if (!s->churn)
        return MPH_OK;
    size_t cnt = 0, pos = 0, kl;
    const unsigned char *k;
    while (slot_next(s, &pos, &k, &kl))
        cnt++;
    struct kref *refs = malloc((cnt ? cnt : 1) * sizeof *refs);
    unsigned char *nb = malloc(s->used ? s->used : 1);
    if (!refs || !nb) {
        free(refs);
        free(nb);
        return MPH_ERR_NOMEM;
    }
    pos = 0;
    for (size_t i = 0; slot_next(s, &pos, &k, &kl); i++)
        refs[i] = (struct kref){k, kl};
    qsort(refs, cnt, sizeof *refs, kref_cmp);
    wslot_t out = {s->start, nb, 0, s->used, 0, false};
    mph_err_t err = MPH_OK;
    for (size_t i = 0; i < cnt && !err; i++) {
        if (i > 0 && !kref_cmp(&refs[i - 1], &refs[i]))
            continue;
        err = ck_reserve(x, refs[i].len);
        if (err)
            break;
        size_t cl = mph__window_key(s->start, refs[i].k, refs[i].len, x->ck);
        const void *v;
        size_t vl;
        mph_err_t g = mph__shard_get(sh, x->ck, cl, &v, &vl);
        if (g == MPH_OK) {
            slot_append(&out, refs[i].k,
                        refs[i].len); /* fits: nb is as large as s */
            out.live++;
        } else if (g != MPH_ERR_NOENT) {
            err = g;
        }
    }
    free(refs);
    if (err) {
        free(nb);
        return err;
    }
    /* The shard is the truth: reconcile the counts with it. */
    x->pairs = x->pairs + out.live - s->live;
    stat_add(x->w, MPH_WINDOW_STAT_LIVE_PAIRS,
             (int64_t)out.live - (int64_t)s->live);
    free(s->keys);
    *s = out;
    return MPH_OK;
}

/* --- building the index from the shard --- */

struct bent {
    int64_t start;
    size_t off;
    size_t len;
};

struct build {
    struct bent *ents;
    size_t n, cap;
    unsigned char *arena;
    size_t used, acap;
    bool have_meta;
    int64_t st, closed;
    size_t foreign;
    mph_err_t err;
};

static mph_err_t build_visit(const void *key, size_t klen, const void *val,
                             size_t vlen, void *opaque)
{
    struct build *b = opaque;
    int64_t start;
    const void *uk;
    size_t ul;
    if (klen == MPH__WINDOW_META_KLEN &&
        !memcmp(key, MPH__WINDOW_META_KEY, klen)) {
        b->have_meta = mph__window_meta_decode(val, vlen, &b->st, &b->closed);
        return MPH_OK;
    }
    if (!mph__window_key_parse(key, klen, &start, &uk, &ul)) {
        b->foreign++;
        return MPH_OK;
    }
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        struct bent *e = realloc(b->ents, cap * sizeof *e);
        if (!e)
            return MPH_ERR_NOMEM;
        b->ents = e;
        b->cap = cap;
    }
    if (b->used + ul > b->acap) {
        size_t cap = b->acap ? b->acap : 4096;
        while (cap < b->used + ul)
            cap *= 2;
        unsigned char *a = realloc(b->arena, cap);
        if (!a)
            return MPH_ERR_NOMEM;
        b->arena = a;
        b->acap = cap;
    }
    if (ul)
        memcpy(b->arena + b->used, uk, ul);
    b->ents[b->n++] = (struct bent){start, b->used, ul};
    b->used += ul;
    return MPH_OK;
}

static int bent_cmp(const void *a, const void *b)
{
    const struct bent *x = a, *y = b;
    return (x->start > y->start) - (x->start < y->start);
}

static void count_op(mph_event_t *ev, struct mph_window *w, int op)
{
    if (ev)
        mph__table_count_op(ev, w->table, op);
}

static void expire_due(mph_event_t *ev, mph__shard_t *sh, wext_t *x);
static mph_err_t write_meta(mph__shard_t *sh);

static mph_err_t ext_build(mph_event_t *ev, struct mph_window *w,
                           mph__shard_t *sh, wext_t **out)
{
    struct build b = {0};
    wext_t *x = calloc(1, sizeof *x);
    if (!x)
        return MPH_ERR_NOMEM;
    x->w = w;
    x->next_close = x->next_expire = INT64_MAX;
    mph_err_t err = mph__shard_foreach(sh, build_visit, &b);
    if (err)
        goto fail;
    if (b.n)
        qsort(b.ents, b.n, sizeof *b.ents, bent_cmp);
    for (size_t i = 0; i < b.n; i++) {
        if (!x->n || x->wins[x->n - 1].start != b.ents[i].start) {
            if (x->n == x->cap) {
                size_t cap = x->cap ? x->cap * 2 : 16;
                wslot_t *nw = realloc(x->wins, cap * sizeof *nw);
                if (!nw) {
                    err = MPH_ERR_NOMEM;
                    goto fail;
                }
                x->wins = nw;
                x->cap = cap;
            }
            memset(&x->wins[x->n], 0, sizeof x->wins[x->n]);
            x->wins[x->n++].start = b.ents[i].start;
        }
        wslot_t *s = &x->wins[x->n - 1];
        const unsigned char *k = b.arena + b.ents[i].off;
        if (slot_append(s, k, b.ents[i].len) != MPH_OK) {
            err = MPH_ERR_NOMEM;
            goto fail;
        }
        s->live++;
        x->pairs++;
    }
    if (b.have_meta) {
        x->have_st = true;
        x->st = b.st;
        x->closed = b.closed;
        while (x->nclosed < x->n &&
               mph__window_due(w, x->wins[x->nclosed].start, x->closed))
            x->nclosed++;
    }
    if (b.foreign)
        mph_log(MPH_LOG_WARN,
                "window table %s [%u]: %zu keys that are not window keys "
                "(written with "
                "mph_table_*?) are ignored",
                w->table->name, sh->partition, b.foreign);
    free(b.ents);
    free(b.arena);
    stat_add(w, MPH_WINDOW_STAT_LIVE_WINDOWS, (int64_t)x->n);
    stat_add(w, MPH_WINDOW_STAT_LIVE_PAIRS, (int64_t)x->pairs);
    refresh_points(x);
    sh->ext = x;
    sh->ext_free = ext_free;
    sh->ext_flush = write_meta;
    /* Windows that expired while the shard was elsewhere go now. */
    if (x->have_st && x->st >= x->next_expire)
        expire_due(ev, sh, x);
    *out = x;
    return MPH_OK;
fail:
    free(b.ents);
    free(b.arena);
    for (size_t i = 0; i < x->n; i++)
        free(x->wins[i].keys);
    free(x->wins);
    mph__mstore_destroy(x->index);
    free(x);
    return err;
}

/* The event's shard of w with its index, built on first use. */
static mph_err_t prepare(mph_event_t *ev, struct mph_window *w,
                         mph__shard_t **sh_out, wext_t **x_out)
{
    mph__shard_t *sh = mph__table_event_shard(ev, w->table);
    if (!sh)
        return MPH_ERR_PARTITION;
    wext_t *x = sh->ext;
    if (!x) {
        mph_err_t err = ext_build(ev, w, sh, &x);
        if (err)
            return err;
    } else if (sh->ext_free != ext_free || x->w != w) {
        return MPH_ERR_STATE;
    }
    if (x->busy)
        return MPH_ERR_STATE;
    *sh_out = sh;
    *x_out = x;
    return MPH_OK;
}

/* ------------------------------------------------------------------ */
/* event time                                                         */

static mph_err_t record_time(const mph_record_t *rec, const char *path,
                             int64_t *out)
{
    char seg[256];
    for (;;) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (n >= sizeof seg)
            return MPH_ERR_NOENT;
        memcpy(seg, path, n);
        seg[n] = '\0';
        if (!dot)
            return mph_record_get_i64_by_name(rec, seg, out);
        mph_err_t err = mph_record_get_record_by_name(rec, seg, &rec);
        if (err)
            return err;
        path = dot + 1;
    }
}

static mph_err_t field_time(mph_event_t *ev, const char *path, int64_t *out)
{
    const mph_record_t *rec = mph_event_record(ev);
    if (rec)
        return record_time(rec, path, out);
    mph_err_t err = MPH_OK;
    mph_json_parser_t *p = mph_event_json(ev, &err);
    if (!p)
        return err ? err : MPH_ERR_DECODE;
    err = mph_json_get_i64(p, MPH_JSON_ROOT, path, out);
    if (err != MPH_ERR_TYPE)
        return err;
    const char *s;
    size_t n;
    if (mph_json_get_str(p, MPH_JSON_ROOT, path, &s, &n) != MPH_OK)
        return MPH_ERR_TYPE;
    err = mph_record_timestamp_parse(s, n, out);
    return err == MPH_ERR_INVALID ? MPH_ERR_TYPE : err;
}

/* The raw time and whether it is usable: MPH_ERR_RANGE with *future set
 * for a time beyond max_future. */
mph_err_t mph__window_compute_time(mph_event_t *ev, const struct mph_window *w,
                                   int64_t *t, bool *future)
{
    *future = false;
    mph_err_t err = MPH_OK;
    switch (w->time_src) {
    case MPH__WINDOW_TIME_WALL:
        *t = mph_clock_wall_ms();
        return MPH_OK;
    case MPH__WINDOW_TIME_FIELD:
        err = field_time(ev, w->field, t);
        break;
    default:
        *t = mph_event_timestamp(ev);
        if (*t < 0)
            err = MPH_ERR_NOENT; /* the record has no timestamp */
        break;
    }
    if (err)
        return err;
    if (*t < 0 || *t > MPH__WINDOW_TIME_MAX)
        return MPH_ERR_RANGE;
    if (w->max_future >= 0 && *t > mph_clock_wall_ms() + w->max_future) {
        *future = true;
        return MPH_ERR_RANGE;
    }
    return MPH_OK;
}

mph_err_t mph_window_event_time(mph_event_t *ev, mph_window_t *w,
                                int64_t *time_ms)
{
    if (!ev || !w || !time_ms)
        return MPH_ERR_INVALID;
    bool future;
    int64_t t = 0;
    mph_err_t err = mph__window_compute_time(ev, w, &t, &future);
    if (!err)
        *time_ms = t;
    return err;
}

/* The event's time, once per event and shard (bad times are counted and
 * logged once). */
static mph_err_t time_of(mph_event_t *ev, wext_t *x, int64_t *t)
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
            stat_add(x->w,
                     future ? MPH_WINDOW_STAT_FUTURE_TIME
                            : MPH_WINDOW_STAT_INVALID_TIME,
                     1);
            mph_topic_t *tp = mph_event_topic(ev);
            mph_log_limited(
                &x->lim, 10000, MPH_LOG_WARN,
                "window table %s: dropping %s [%d] offset %lld: %s time (%s)",
                x->w->table->name, tp ? mph_topic_name(tp) : "?",
                (int)mph_event_partition(ev), (long long)off,
                future ? "far-future" : "no valid", mph_err_str(x->t_err));
        }
    }
    *t = x->t_val;
    return x->t_err;
}

/* ------------------------------------------------------------------ */
/* stream time: closing and expiry                                    */

/* The shard's ext_flush: writes stream time and watermark into the
 * reserved key, just before a flush takes the shard's dirty set. */
static mph_err_t write_meta(mph__shard_t *sh)
{
    wext_t *x = sh->ext;
    unsigned char v[MPH__WINDOW_META_VLEN];
    mph__window_meta_encode(x->st, x->closed, v);
    return mph__shard_set(sh, MPH__WINDOW_META_KEY, MPH__WINDOW_META_KLEN, v,
                          sizeof v);
}

static mph_err_t close_window(mph_event_t *ev, mph__shard_t *sh, wext_t *x,
                              wslot_t *s)
{
    struct mph_window *w = x->w;
    if (!w->on_close || !s->live)
        return MPH_OK;
    mph_err_t err = slot_compact(x, sh, s);
    if (err)
        return err;
    size_t pos = 0, kl;
    const unsigned char *k;
    int64_t calls = 0;
    while (!err && slot_next(s, &pos, &k, &kl)) {
        err = ck_reserve(x, kl);
        if (err)
            break;
        size_t cl = mph__window_key(s->start, k, kl, x->ck);
        const void *v;
        size_t vl;
        err = mph__shard_get(sh, x->ck, cl, &v, &vl);
        count_op(ev, w, 0);
        if (err == MPH_ERR_NOENT) {
            err = MPH_OK; /* cannot happen for a compacted window; harmless */
            continue;
        }
        if (err)
            break;
        x->busy++;
        err = w->on_close(ev, k, kl, s->start, s->start + w->size, v, vl,
                          w->close_opaque);
        x->busy--;
        calls++;
        if (err)
            stat_add(w, MPH_WINDOW_STAT_CLOSE_ERRORS, 1);
    }
    stat_add(w, MPH_WINDOW_STAT_CLOSE_CALLS, calls);
    return err;
}

static mph_err_t close_due(mph_event_t *ev, mph__shard_t *sh, wext_t *x)
{
    mph_err_t err = MPH_OK;
    while (x->head + x->nclosed < x->n) {
        wslot_t *s = &x->wins[x->head + x->nclosed];
        if (!mph__window_due(x->w, s->start, x->st))
            break;
        err = close_window(ev, sh, x, s);
        if (err)
            break;
        x->nclosed++;
        stat_add(x->w, MPH_WINDOW_STAT_CLOSED, 1);
    }
    refresh_points(x);
    return err;
}

static void expire_due(mph_event_t *ev, mph__shard_t *sh, wext_t *x)
{
    struct mph_window *w = x->w;
    while (x->nclosed > 0) {
        wslot_t *s = &x->wins[x->head];
        if (mph__window_expiry(w, s->start) > x->st)
            break;
        if (slot_compact(x, sh, s) != MPH_OK)
            break; /* retried at the next event */
        size_t pos = 0, kl;
        const unsigned char *k;
        uint32_t gone = 0;
        bool failed = false;
        while (slot_next(s, &pos, &k, &kl)) {
            if (ck_reserve(x, kl) != MPH_OK) {
                failed = true;
                break;
            }
            size_t cl = mph__window_key(s->start, k, kl, x->ck);
            mph_err_t e = mph__shard_delete(sh, x->ck, cl);
            if (e && e != MPH_ERR_NOENT) {
                failed = true;
                break;
            }
            count_op(ev, w, 2);
            index_add(x, k, kl, -1);
            gone++;
        }
        if (failed) {
            /* Out of memory mid-window: the deleted prefix stays deleted,
             * the rest is retried at the next event. */
            s->live -= gone < s->live ? gone : s->live;
            x->pairs -= gone;
            stat_add(w, MPH_WINDOW_STAT_EXPIRED_KEYS, gone);
            stat_add(w, MPH_WINDOW_STAT_LIVE_PAIRS, -(int64_t)gone);
            s->churn = true;
            break;
        }
        stat_add(w, MPH_WINDOW_STAT_EXPIRED, 1);
        stat_add(w, MPH_WINDOW_STAT_EXPIRED_KEYS, s->live);
        stat_add(w, MPH_WINDOW_STAT_LIVE_WINDOWS, -1);
        stat_add(w, MPH_WINDOW_STAT_LIVE_PAIRS, -(int64_t)s->live);
        x->pairs -= s->live;
        free(s->keys);
        x->head++;
        x->nclosed--;
    }
    if (x->head > 32 && x->head * 2 > x->n) {
        memmove(x->wins, x->wins + x->head, (x->n - x->head) * sizeof *x->wins);
        x->n -= x->head;
        x->head = 0;
    }
    refresh_points(x);
}

/* Moves stream time to t (if later), then closes and expires what is due.
 * Two comparisons when nothing is due. */
static mph_err_t advance(mph_event_t *ev, mph__shard_t *sh, wext_t *x,
                         int64_t t)
{
    bool moved = false;
    if (!x->have_st || t > x->st) {
        x->have_st = true;
        x->st = t;
        moved = true;
    }
    mph_err_t err = MPH_OK;
    if (x->st >= x->next_close)
        err = close_due(ev, sh, x);
    int64_t closed = x->next_close > x->st ? x->st : x->next_close - 1;
    if (x->st >= x->next_expire)
        expire_due(ev, sh, x);
    if (moved || closed != x->closed) {
        x->closed = closed;
        mph__shard_touch(sh); /* written at the next flush (write_meta) */
    }
    return err;
}

mph_err_t mph_window_advance(mph_event_t *ev, mph_window_t *w)
{
    if (!ev || !w)
        return MPH_ERR_INVALID;
    if (w->kind == MPH__WINDOW_SESSION)
        return mph__session_advance(ev, w);
    mph__shard_t *sh;
    wext_t *x;
    mph_err_t err = prepare(ev, w, &sh, &x);
    if (err)
        return err;
    int64_t t;
    if (time_of(ev, x, &t) != MPH_OK)
        return MPH_OK; /* counted */
    return advance(ev, sh, x, t);
}

/* window_idle_close_ms (punctuate.c): moves the shard's stream time to
 * now_ms, but only when that makes a window due, so an idle partition
 * with nothing to close writes nothing. */
mph_err_t mph__window_idle_close(mph_event_t *ev, mph_window_t *w, int64_t now_ms)
{
    mph__shard_t *sh;
    wext_t *x;
    mph_err_t err = prepare(ev, w, &sh, &x);
    if (err)
        return err;
    if (!x->have_st || now_ms <= x->st ||
        (now_ms < x->next_close && now_ms < x->next_expire))
        return MPH_OK;
    return advance(ev, sh, x, now_ms);
}

mph_err_t mph_window_stream_time(mph_event_t *ev, mph_window_t *w,
                                 int64_t *time_ms)
{
    if (!ev || !w || !time_ms)
        return MPH_ERR_INVALID;
    if (w->kind == MPH__WINDOW_SESSION)
        return mph__session_stream_time(ev, w, time_ms);
    mph__shard_t *sh;
    wext_t *x;
    mph_err_t err = prepare(ev, w, &sh, &x);
    if (err)
        return err;
    if (!x->have_st)
        return MPH_ERR_NOENT;
    *time_ms = x->st;
    return MPH_OK;
}

/* ------------------------------------------------------------------ */
/* writes                                                             */

enum op_kind { OP_INCR, OP_SET, OP_DELETE, OP_UPDATE };

struct op {
    enum op_kind kind;
    int64_t by;
    const void *val;
    size_t vlen;
    mph_window_update_fn *fn;
    void *opaque;
};

static int64_t i64_default(const mph_table_t *t)
{
    if (t->opts.has_dflt && t->opts.dflt_len == 8)
        return (int64_t)be64_get(t->opts.dflt);
    return 0;
}

static mph_err_t put(wext_t *x, mph__shard_t *sh, size_t cklen, int64_t start,
                     const void *key, size_t klen, bool existed,
                     const void *val, size_t vlen)
{
    mph_err_t err = mph__shard_set(sh, x->ck, cklen, val ? val : "", vlen);
    if (!err && !existed) {
        err = pair_added(x, start, key, klen);
        if (err) /* keep the shard and the index in step */
            mph__shard_delete(sh, x->ck, cklen);
    }
    return err;
}

mph_err_t mph_window_update_set(mph_window_update_t *u, const void *value,
                                size_t value_len)
{
    if (!u || (!value && value_len))
        return MPH_ERR_INVALID;
    if (u->cap) {
        mph_err_t e = mph__window_capture_set(u->cap, value, value_len);
        if (!e)
            u->set = true;
        return e;
    }
    mph_err_t err =
        mph__table_check_value(((wext_t *)u->x)->w->table, value, value_len);
    if (err) /* format=faust: a value its changelog could not hold */
        return err;
    err = put(u->x, u->sh, u->cklen, u->start, u->key, u->klen, u->existed,
              value, value_len);
    if (!err) {
        u->existed = true;
        u->set = true;
    }
    return err;
}

static mph_err_t apply_one(mph_event_t *ev, wext_t *x, mph__shard_t *sh,
                           int64_t start, const void *key, size_t klen,
                           const struct op *op)
{
    struct mph_window *w = x->w;
    size_t cl = mph__window_key(start, key, klen, x->ck);
    const void *old = NULL;
    size_t ol = 0;
    mph_err_t g = mph__shard_get(sh, x->ck, cl, &old, &ol);
    count_op(ev, w, 0);
    if (g && g != MPH_ERR_NOENT)
        return g;
    bool existed = g == MPH_OK;
    switch (op->kind) {
    case OP_INCR: {
        int64_t cur = i64_default(w->table);
        if (existed) {
            if (ol != 8)
                return MPH_ERR_TYPE;
            cur = (int64_t)be64_get(old);
        }
        unsigned char buf[8];
        be64_put((uint64_t)cur + (uint64_t)op->by, buf);
        /* format=faust: a value its changelog could not hold */
        mph_err_t ce = mph__table_check_value(w->table, buf, 8);
        if (ce)
            return ce;
        count_op(ev, w, 1);
        return put(x, sh, cl, start, key, klen, existed, buf, 8);
    }
    case OP_SET:
        /* format=faust: a value its changelog could not hold */
        if ((g = mph__table_check_value(w->table, op->val, op->vlen)))
            return g;
        count_op(ev, w, 1);
        return put(x, sh, cl, start, key, klen, existed, op->val, op->vlen);
    case OP_DELETE:
        if (!existed)
            return MPH_OK;
        count_op(ev, w, 2);
        g = mph__shard_delete(sh, x->ck, cl);
        if (g && g != MPH_ERR_NOENT)
            return g;
        pair_removed(x, start, key, klen);
        return MPH_OK;
    case OP_UPDATE: {
        mph_window_update_t u = {x,    sh,      cl,    start, key,
                                 klen, existed, false, NULL};
        x->busy++;
        mph_err_t rc = op->fn(start, start + w->size, existed ? old : NULL,
                              existed ? ol : 0, &u, op->opaque);
        x->busy--;
        if (u.set)
            count_op(ev, w, 1);
        if (rc == MPH_ERR_NOENT) {
            if (!u.existed)
                return MPH_OK;
            /* The buffer may have been reused by the callback's set. */
            mph__window_key(start, key, klen, x->ck);
            count_op(ev, w, 2);
            g = mph__shard_delete(sh, x->ck, cl);
            if (g && g != MPH_ERR_NOENT)
                return g;
            pair_removed(x, start, key, klen);
            return MPH_OK;
        }
        return rc;
    }
    }
    return MPH_ERR_INTERNAL;
}

static mph_err_t write_op(mph_event_t *ev, struct mph_window *w,
                          const void *key, size_t klen, const struct op *op)
{
    if (!ev || !w || (!key && klen))
        return MPH_ERR_INVALID;
    if (klen > MPH__WINDOW_KEY_MAX)
        return MPH_ERR_RANGE;
    if (!key)
        key = "";
    if (w->kind == MPH__WINDOW_SESSION)
        return mph__session_write(ev, w, key, klen, (int)op->kind, op->by,
                                  op->val, op->vlen, op->fn, op->opaque);
    mph__shard_t *sh;
    wext_t *x;
    mph_err_t err = prepare(ev, w, &sh, &x);
    if (err)
        return err;
    err = mph__table_check_key(ev, w->table, key, klen);
    if (err)
        return err;
    if ((err = ck_reserve(x, klen)) != MPH_OK)
        return err;
    int64_t t;
    if (time_of(ev, x, &t) != MPH_OK)
        return MPH_OK; /* dropped and counted */
    mph_err_t cerr = advance(ev, sh, x, t);
    int64_t starts[MPH__WINDOW_PER_TIME_MAX];
    size_t n = mph__window_starts(w, t, starts, MPH__WINDOW_PER_TIME_MAX);
    size_t late = 0;
    for (size_t i = 0; i < n && !err; i++) {
        if (mph__window_due(w, starts[i], x->st)) {
            late++;
            continue;
        }
        err = apply_one(ev, x, sh, starts[i], key, klen, op);
    }
    stat_add(w, MPH_WINDOW_STAT_LATE_WRITES, (int64_t)late);
    if (late == n && !x->t_late_counted) {
        x->t_late_counted = true;
        stat_add(w, MPH_WINDOW_STAT_LATE_EVENTS, 1);
    }
    return err ? err : cerr;
}

mph_err_t mph_window_incr(mph_event_t *ev, mph_window_t *w, const void *key,
                          size_t key_len, int64_t by)
{
    struct op op = {OP_INCR, by, NULL, 0, NULL, NULL};
    return write_op(ev, w, key, key_len, &op);
}

mph_err_t mph_window_set(mph_event_t *ev, mph_window_t *w, const void *key,
                         size_t key_len, const void *value, size_t value_len)
{
    if (!value && value_len)
        return MPH_ERR_INVALID;
    struct op op = {OP_SET, 0, value, value_len, NULL, NULL};
    return write_op(ev, w, key, key_len, &op);
}

mph_err_t mph_window_delete(mph_event_t *ev, mph_window_t *w, const void *key,
                            size_t key_len)
{
    struct op op = {OP_DELETE, 0, NULL, 0, NULL, NULL};
    return write_op(ev, w, key, key_len, &op);
}

mph_err_t mph_window_update(mph_event_t *ev, mph_window_t *w, const void *key,
                            size_t key_len, mph_window_update_fn *fn,
                            void *opaque)
{
    if (!fn)
        return MPH_ERR_INVALID;
    struct op op = {OP_UPDATE, 0, NULL, 0, fn, opaque};
    return write_op(ev, w, key, key_len, &op);
}

/* ------------------------------------------------------------------ */
/* reads                                                              */

/* The start of the window that which/arg names (see mph_window_which_t);
 * t is the event's time for CURRENT and DELTA. */
static mph_err_t window_named(const struct mph_window *w, mph_window_which_t which,
                              int64_t arg, int64_t t, int64_t *start,
                              int64_t *start_out, int64_t *end_out)
{
    switch (which) {
    case MPH_WINDOW_CURRENT:
        break;
    case MPH_WINDOW_DELTA:
        if (arg < -MPH__WINDOW_TIME_MAX || arg > MPH__WINDOW_TIME_MAX)
            return MPH_ERR_RANGE;
        t -= arg;
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
    *start = which == MPH_WINDOW_AT ? arg : mph__window_current(w, t);
    if (start_out)
        *start_out = *start;
    if (end_out)
        *end_out = *start + w->size;
    return MPH_OK;
}

static mph_err_t read_prepare(mph_event_t *ev, struct mph_window *w,
                              const void *key, size_t klen, mph__shard_t **sh,
                              wext_t **x)
{
    if (!ev || !w || (!key && klen))
        return MPH_ERR_INVALID;
    if (klen > MPH__WINDOW_KEY_MAX)
        return MPH_ERR_RANGE;
    mph_err_t err = prepare(ev, w, sh, x);
    if (err)
        return err;
    err = mph__table_check_key(ev, w->table, key ? key : "", klen);
    if (err)
        return err;
    return ck_reserve(*x, klen);
}

mph_err_t mph_window_get(mph_event_t *ev, mph_window_t *w, const void *key,
                         size_t key_len, mph_window_which_t which, int64_t arg,
                         const void **value, size_t *value_len,
                         int64_t *start_out, int64_t *end_out)
{
    if (!value)
        return MPH_ERR_INVALID;
    if (w && w->kind == MPH__WINDOW_SESSION)
        return mph__session_get(ev, w, key ? key : "", key_len, which, arg,
                                value, value_len, start_out, end_out);
    mph__shard_t *sh;
    wext_t *x;
    mph_err_t err = read_prepare(ev, w, key, key_len, &sh, &x);
    if (err)
        return err;
    int64_t t = 0, start;
    if ((which == MPH_WINDOW_CURRENT || which == MPH_WINDOW_DELTA) &&
        (err = time_of(ev, x, &t)) != MPH_OK)
        return err;
    if ((err = window_named(w, which, arg, t, &start, start_out, end_out)))
        return err;
    size_t cl = mph__window_key(start, key, key_len, x->ck);
    size_t l = 0;
    err = mph__shard_get(sh, x->ck, cl, value, &l);
    count_op(ev, w, 0);
    if (err == MPH_ERR_NOENT) {
        count_op(ev, w, 3);
        if (w->table->opts.has_dflt) {
            *value = w->table->opts.dflt;
            l = w->table->opts.dflt_len;
            err = MPH_OK;
        }
    }
    if (!err && value_len)
        *value_len = l;
    return err;
}

/* Any thread: the storage key of (window, key) goes to the worker owning
 * the user key's partition, which answers with a copy like any table read. */
mph_err_t mph_window_lookup(mph_app_t *app, mph_window_t *w, const void *key,
                            size_t key_len, mph_window_which_t which,
                            int64_t arg, void **value, size_t *value_len,
                            int64_t *start_out, int64_t *end_out,
                            int timeout_ms)
{
    if (!app || !w || !value || (!key && key_len))
        return MPH_ERR_INVALID;
    if (key_len > MPH__WINDOW_KEY_MAX)
        return MPH_ERR_RANGE;
    if (which != MPH_WINDOW_NOW && which != MPH_WINDOW_AT)
        return MPH_ERR_INVALID; /* CURRENT and DELTA need an event */
    if (w->kind == MPH__WINDOW_SESSION)
        return mph__session_lookup(app, w, key ? key : "", key_len, which, arg,
                                   value, value_len, start_out, end_out,
                                   timeout_ms);
    int64_t start;
    mph_err_t err = window_named(w, which, arg, 0, &start, start_out, end_out);
    if (err)
        return err;
    unsigned char *ck = malloc(MPH__WINDOW_PREFIX + key_len);
    if (!ck)
        return MPH_ERR_NOMEM;
    size_t cl = mph__window_key(start, key ? key : "", key_len, ck);
    mph_table_t *t = w->table;
    err = mph__table_lookup_at(
        app, t, mph_table_partition_of(t, key ? key : "", key_len), ck, cl,
        value, value_len, timeout_ms);
    free(ck);
    return err;
}

mph_err_t mph_window_get_i64(mph_event_t *ev, mph_window_t *w, const void *key,
                             size_t key_len, mph_window_which_t which,
                             int64_t arg, int64_t *out)
{
    if (!out)
        return MPH_ERR_INVALID;
    const void *v;
    size_t l = 0;
    mph_err_t err =
        mph_window_get(ev, w, key, key_len, which, arg, &v, &l, NULL, NULL);
    if (err == MPH_ERR_NOENT) {
        *out = 0;
        return MPH_OK;
    }
    if (err)
        return err;
    if (l != 8)
        return MPH_ERR_TYPE;
    *out = (int64_t)be64_get(v);
    return MPH_OK;
}

mph_err_t mph_window_foreach_window(mph_event_t *ev, mph_window_t *w,
                                    const void *key, size_t key_len,
                                    mph_window_visit_fn *fn, void *opaque)
{
    if (!fn)
        return MPH_ERR_INVALID;
    if (w && w->kind == MPH__WINDOW_SESSION)
        return mph__session_foreach_window(ev, w, key ? key : "", key_len, fn,
                                           opaque);
    mph__shard_t *sh;
    wext_t *x;
    mph_err_t err = read_prepare(ev, w, key, key_len, &sh, &x);
    if (err)
        return err;
    for (size_t i = x->head; i < x->n && !err; i++) {
        int64_t start = x->wins[i].start;
        size_t cl = mph__window_key(start, key, key_len, x->ck);
        const void *v;
        size_t vl;
        mph_err_t g = mph__shard_get(sh, x->ck, cl, &v, &vl);
        count_op(ev, w, 0);
        if (g == MPH_ERR_NOENT)
            continue;
        if (g)
            return g;
        x->busy++;
        err =
            fn(start, start + w->size, i < x->head + x->nclosed, v, vl, opaque);
        x->busy--;
    }
    return err;
}

/* Builds x's key index from its live windows' key lists (a churned list is
 * compacted first, which leaves each key once and only keys the shard
 * still holds). On failure (out of memory) there is no index and the next
 * call tries again. */
static mph_err_t index_build(mph__shard_t *sh, wext_t *x)
{
    if (!(x->index = mph__mstore_new()))
        return MPH_ERR_NOMEM;
    mph_err_t err = MPH_OK;
    for (size_t i = x->head; i < x->n && !err; i++) {
        wslot_t *s = &x->wins[i];
        err = slot_compact(x, sh, s);
        size_t pos = 0, kl;
        const unsigned char *k;
        while (!err && slot_next(s, &pos, &k, &kl))
            err = index_add(x, k, kl, +1);
    }
    if (err) {
        mph__mstore_destroy(x->index);
        x->index = NULL;
    }
    return err;
}

mph_err_t mph_window_foreach_key(mph_event_t *ev, mph_window_t *w,
                                 mph_window_key_fn *fn, void *opaque)
{
    if (!ev || !w || !fn)
        return MPH_ERR_INVALID;
    if (w->kind == MPH__WINDOW_SESSION)
        return mph__session_foreach_key(ev, w, fn, opaque);
    mph__shard_t *sh;
    wext_t *x;
    mph_err_t err = prepare(ev, w, &sh, &x);
    if (err)
        return err;
    if (!x->index && (err = index_build(sh, x)) != MPH_OK)
        return err;
    mph__mstore_iter_t it;
    const void *k, *v;
    size_t kl, vl;
    mph__mstore_iter_init(&it, x->index);
    x->busy++;
    while (!err && mph__mstore_iter_next(&it, &k, &kl, &v, &vl)) {
        uint64_t n = 0;
        if (vl == 8)
            memcpy(&n, v, 8);
        err = fn(k, kl, (size_t)n, opaque);
    }
    x->busy--;
    return err;
}

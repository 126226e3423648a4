/*
 * state/store_memory.c — per-shard in-memory map on ConcurrencyKit's ck_ht.
 *
 * DESIGN
 *
 * Storage. Each key lives in one heap block, an `ent`: a small header, the
 * value (inline up to VAL_INLINE bytes, else a separate heap buffer) and the
 * key bytes at the end. ck_ht (byte-string mode, its own MurmurHash64A with
 * a random per-map seed) maps the key to the ent: the slot's key pointer
 * points at ent->key and the slot's value is the ent itself, so an ent never
 * moves while it is in the table. Updating a value that fits the current
 * buffer is a memcpy: no allocation, no table operation.
 *
 * Dirty set. Writes set ENT_DIRTY and append the ent to a growable array the
 * first time, so each dirty key is listed once and visiting the dirty set
 * costs O(dirty), not O(map). A delete keeps the ent as a tombstone
 * (ENT_DELETED, value freed) so the commit can emit it; clearing the dirty
 * set frees tombstones and turns the other ents clean.
 *
 * Snapshots. An asynchronous commit carries the dirty set as it was when
 * it began (mph__mstore_snapshot_begin: the first snap_n ents of the dirty
 * array) while writes go on. A write to an ent that is already dirty during
 * a snapshot sets ENT_REDIRTY: its value is newer than the one the commit
 * carries, so when the commit succeeds (snapshot_commit) that ent stays
 * dirty, as do ents first dirtied after the snapshot began; the others
 * turn clean. A failed commit (snapshot_abort) leaves everything dirty.
 *
 * Fresh keys. ENT_FRESH marks an ent whose key is absent from the durable
 * state (the changelog, and the store behind a cache) and none of whose
 * values was visited by a commit since: an ent a put created in a whole
 * map (mph__mstore_set_complete: absence from the map is absence from the
 * changelog), or one mph__mstore_put_fresh created on the caller's word.
 * The first visit of its value clears the mark. A fresh tombstone is
 * skipped by the visit: nothing of the key was written, so there is
 * nothing to delete. That is what keeps a window pair that is created and
 * expires within one commit interval out of the changelog and RocksDB.
 * Clearing the mark is always safe (a redundant tombstone); it is set only
 * where absence is certain.
 *
 * Undo and rollback. exactly_once rolls a shard back to its last commit
 * when a transaction aborts. A cache drops its dirty ents (the store behind
 * is the committed state). A whole map needs pre-images, kept in undo mode
 * only (mph__mstore_set_undo), so at_least_once pays nothing: an array
 * `undo` parallel to the dirty array, undo[i] the state dirty[i] had before
 * its first write of the interval — "absent" (the write created the ent) or
 * a copy of its value (inline up to VAL_INLINE bytes, else one heap copy;
 * a delete moves its heap buffer into the record instead of freeing it).
 * Because a key joins the dirty array once per interval, a pre-image is
 * taken once, at that first write, and later writes cost nothing; no field
 * is added to the ent. Rollback removes the created ents and hands each
 * record's value back to its ent (no allocation, so it cannot fail).
 * Committing drops the records with the dirty marks; snapshot_commit
 * compacts them along with the dirty array. One case has no pre-image: a
 * key the snapshot carried and that was written again during it keeps its
 * old record, older than the value just committed, so the map notes
 * undo_lost and refuses rollback until its dirty set empties (exactly_once
 * commits synchronously, without writes during a snapshot). Rollback during
 * an active snapshot is refused: the caller aborts the snapshot first.
 *
 * Cache mode. Clean ents are on an intrusive doubly-linked LRU list (most
 * recent at the head); dirty ents are not on it, which is how they are never
 * evicted: eviction pops the tail until the map is within its bounds or the
 * list is empty. A lookup hit moves a clean ent to the head.
 *
 * Memory. The map header is all an idle shard costs: the hash table is made
 * on the first insert and destroyed when the map becomes empty. ck_ht's
 * allocations are counted through its ck_malloc callbacks, which have no
 * context argument; since a map has a single owner thread, each call into
 * ck_ht resets a thread-local byte counter and adds it to that map's total
 * afterwards. ck_ht frees an old table with "defer" set for concurrent
 * readers; there are none (single owner), so it is freed at once.
 *
 * Tombstones. ck_ht marks a removed slot as a tombstone and never makes it
 * empty again (its gc moves entries into earlier tombstones, leaving new
 * ones), and a put of a new key probes until an empty slot. Under churn —
 * window pairs created and expired, a cache evicting — every free slot
 * ends up a tombstone and each insert scans its whole probe limit (32 % of
 * the window benchmark's CPU went there). So once a map has seen more
 * removals than it holds entries (plus a little slack), the table is
 * rebuilt: a fresh ck_ht sized for the entries, each put again
 * (ht_rebuild), amortised O(1) per removal.
 *
 * Never: take a lock, hash by hand, or hand out a pointer into a buffer that
 * a later write of another key could free (except cache eviction, which the
 * header documents).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "state/store_memory.h"

#define VAL_INLINE    16
#define ENT_DIRTY     0x01
#define ENT_DELETED   0x02
#define ENT_LINKED    0x04 /* on the LRU list */
#define ENT_REDIRTY   0x08 /* written again during a snapshot */
#define ENT_FRESH     0x10 /* durably absent, no value visited since */
#define HT_INITIAL    8    /* slots of a new table (ck_ht's minimum is 2) */
#define DIRTY_INITIAL 16
#define DIRTY_KEEP    1024 /* dirty array capacity kept across clears */
#define HT_REBUILD_SLACK 32 /* removals beyond the entry count: rebuild */

struct ent {
    struct ent *prev, *next; /* LRU links, cache mode, clean ents only */
    uint32_t vlen;
    uint32_t vcap; /* capacity of v.heap; 0 when the value is inline */
    uint16_t klen;
    uint8_t flags;
    union {
        unsigned char inl[VAL_INLINE];
        unsigned char *heap;
    } v;
    unsigned char key[];
};

/* The state a key had before the first write of the commit interval. */
struct undo {
    uint32_t vlen;
    uint32_t vcap; /* capacity of v.heap; 0 when the value is inline */
    bool present;  /* false: the key was absent, the write created it */
    union {
        unsigned char inl[VAL_INLINE];
        unsigned char *heap;
    } v;
};

struct mph__mstore {
    ck_ht_t ht;
    bool ht_ready;
    bool cache;
    bool complete; /* the whole shard: absent here means absent durably */
    uint64_t seed;
    size_t max_entries, max_bytes; /* cache bounds; 0 = none */
    size_t live;                   /* present ents (not tombstones) */
    size_t ents;                   /* ents in the table, tombstones too */
    size_t bytes;                  /* ents, values and dirty array */
    int64_t ht_bytes;              /* ck_ht's own allocations */
    uint64_t allocs;
    size_t removed_since_gc;
    struct ent **dirty;
    size_t ndirty, dirty_cap;
    size_t snap_n;    /* dirty[0, snap_n) is the snapshot's dirty set */
    bool snap_active; /* between snapshot_begin and commit / abort */
    /* Undo mode (whole maps): undo[i] is the pre-image of dirty[i]. */
    bool undo_on;
    bool undo_lost; /* a kept dirty key has no pre-image of its commit */
    struct undo *undo;
    size_t undo_cap;
    struct ent *lru_head, *lru_tail;
};

/* ------------------------------------------------------------------------
 * Allocation and accounting
 * ------------------------------------------------------------------------ */

/* Bytes a malloc(n) costs: glibc's chunk header, 16-byte granules. */
static size_t heap_cost(size_t n)
{
    size_t c = (n + 8 + 15) & ~(size_t)15;
    return c < 32 ? 32 : c;
}

static _Thread_local int64_t tl_ht_bytes;
static _Thread_local uint64_t tl_ht_allocs;

static void *ht_malloc(size_t n)
{
    void *p = malloc(n);

    if (p != NULL) {
        tl_ht_bytes += (int64_t)heap_cost(n);
        tl_ht_allocs++;
    }
    return p;
}

static void *ht_realloc(void *p, size_t old, size_t n, bool defer)
{
    void *q;

    (void)defer;
    q = realloc(p, n);
    if (q != NULL) {
        tl_ht_bytes += (int64_t)heap_cost(n) - (int64_t)heap_cost(old);
        tl_ht_allocs++;
    }
    return q;
}

static void ht_free(void *p, size_t n, bool defer)
{
    (void)defer; /* single owner: no reader can still see p */
    if (p == NULL)
        return;
    free(p);
    tl_ht_bytes -= (int64_t)heap_cost(n);
}

static struct ck_malloc ht_allocator = {
    .malloc = ht_malloc, .realloc = ht_realloc, .free = ht_free};

/* Brackets a call into ck_ht that may allocate or free. */
static void ht_account_begin(void)
{
    tl_ht_bytes = 0;
    tl_ht_allocs = 0;
}

static void ht_account_end(mph__mstore_t *ms)
{
    ms->ht_bytes += tl_ht_bytes;
    ms->allocs += tl_ht_allocs;
}

static size_t ent_cost(size_t klen)
{
    return heap_cost(sizeof(struct ent) + klen);
}

/* ------------------------------------------------------------------------
 * Construction
 * ------------------------------------------------------------------------ */

static uint64_t new_seed(const void *salt)
{
    uint64_t s;
    struct timespec ts;

    if (getrandom(&s, sizeof(s), GRND_NONBLOCK) == (ssize_t)sizeof(s))
        return s;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)(uintptr_t)salt ^ (uint64_t)ts.tv_nsec ^
           ((uint64_t)ts.tv_sec << 32);
}

static mph__mstore_t *mstore_alloc(void)
{
    mph__mstore_t *ms = calloc(1, sizeof(*ms));

    if (ms == NULL)
        return NULL;
    ms->seed = new_seed(ms);
    ms->allocs = 1;
    return ms;
}

mph__mstore_t *mph__mstore_new(void)
{
    return mstore_alloc();
}

mph__mstore_t *mph__mstore_new_cache(size_t max_entries, size_t max_bytes)
{
    mph__mstore_t *ms = mstore_alloc();

    if (ms == NULL)
        return NULL;
    ms->cache = true;
    ms->max_entries = max_entries;
    ms->max_bytes = max_bytes;
    return ms;
}

static bool ht_ensure(mph__mstore_t *ms)
{
    bool ok;

    if (ms->ht_ready)
        return true;
    ht_account_begin();
    ok = ck_ht_init(&ms->ht, CK_HT_MODE_BYTESTRING | CK_HT_WORKLOAD_DELETE,
                    NULL, &ht_allocator, HT_INITIAL, ms->seed);
    ht_account_end(ms);
    ms->ht_ready = ok;
    return ok;
}

static void ent_free(mph__mstore_t *ms, struct ent *e)
{
    if (e->vcap > 0) {
        ms->bytes -= heap_cost(e->vcap);
        free(e->v.heap);
    }
    ms->bytes -= ent_cost(e->klen);
    free(e);
}

static void ht_release(mph__mstore_t *ms)
{
    if (!ms->ht_ready)
        return;
    ht_account_begin();
    ck_ht_destroy(&ms->ht);
    ht_account_end(ms);
    ms->ht_ready = false;
    ms->removed_since_gc = 0;
}

/* Frees the copy of a value an undo record holds, if any. */
static void undo_drop(mph__mstore_t *ms, struct undo *u)
{
    if (u->vcap > 0) {
        ms->bytes -= heap_cost(u->vcap);
        free(u->v.heap);
        u->vcap = 0;
    }
}

/* Forgets the pre-images of the whole dirty set (its keys are about to be
 * committed, or dropped). */
static void undo_forget_all(mph__mstore_t *ms)
{
    if (ms->undo_on) {
        for (size_t i = 0; i < ms->ndirty; i++)
            undo_drop(ms, &ms->undo[i]);
    }
    ms->undo_lost = false;
}

/* Frees the dirty array and the undo array beside it; their records must
 * have been dropped (undo_forget_all). */
static void dirty_array_release(mph__mstore_t *ms)
{
    if (ms->dirty_cap > 0)
        ms->bytes -= heap_cost(ms->dirty_cap * sizeof(*ms->dirty));
    free(ms->dirty);
    ms->dirty = NULL;
    ms->ndirty = ms->dirty_cap = 0;
    if (ms->undo_cap > 0)
        ms->bytes -= heap_cost(ms->undo_cap * sizeof(*ms->undo));
    free(ms->undo);
    ms->undo = NULL;
    ms->undo_cap = 0;
}

void mph__mstore_clear(mph__mstore_t *ms)
{
    ck_ht_iterator_t pos = CK_HT_ITERATOR_INITIALIZER;
    ck_ht_entry_t *slot;

    undo_forget_all(ms);
    if (ms->ht_ready) {
        while (ck_ht_next(&ms->ht, &pos, &slot))
            ent_free(ms, ck_ht_entry_value(slot));
    }
    ht_release(ms);
    dirty_array_release(ms);
    ms->live = ms->ents = 0;
    ms->lru_head = ms->lru_tail = NULL;
    ms->snap_active = false;
    ms->snap_n = 0;
}

void mph__mstore_destroy(mph__mstore_t *ms)
{
    if (ms == NULL)
        return;
    mph__mstore_clear(ms);
    free(ms);
}

/* ------------------------------------------------------------------------
 * LRU list (cache mode)
 * ------------------------------------------------------------------------ */

static void lru_unlink(mph__mstore_t *ms, struct ent *e)
{
    if (!(e->flags & ENT_LINKED))
        return;
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        ms->lru_head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        ms->lru_tail = e->prev;
    e->prev = e->next = NULL;
    e->flags &= (uint8_t)~ENT_LINKED;
}

static void lru_push_head(mph__mstore_t *ms, struct ent *e)
{
    if (!ms->cache)
        return;
    e->prev = NULL;
    e->next = ms->lru_head;
    if (ms->lru_head != NULL)
        ms->lru_head->prev = e;
    else
        ms->lru_tail = e;
    ms->lru_head = e;
    e->flags |= ENT_LINKED;
}

static void lru_touch(mph__mstore_t *ms, struct ent *e)
{
    if ((e->flags & ENT_LINKED) && ms->lru_head != e) {
        lru_unlink(ms, e);
        lru_push_head(ms, e);
    }
}

/* ------------------------------------------------------------------------
 * Table access
 * ------------------------------------------------------------------------ */

static const unsigned char empty_key[1];

static struct ent *ht_find(mph__mstore_t *ms, const void *key, size_t klen,
                           ck_ht_hash_t *h)
{
    ck_ht_entry_t probe;

    ck_ht_hash(h, &ms->ht, key, (uint16_t)klen);
    ck_ht_entry_key_set(&probe, key, (uint16_t)klen);
    if (!ck_ht_get_spmc(&ms->ht, *h, &probe))
        return NULL;
    return ck_ht_entry_value(&probe);
}

/* The ent of key, or NULL. *oom is set when the lookup itself ran out of
 * memory (then NULL does not mean absent). */
static struct ent *find(mph__mstore_t *ms, const void *key, size_t klen,
                        bool *oom)
{
    ck_ht_hash_t h;
    struct ent *e;

    *oom = false;
    if (!ms->ht_ready)
        return NULL;
    e = ht_find(ms, key, klen, &h);
    if (e != NULL && e->klen != klen) {
        /* ck_ht takes a slot whose key pointer equals the probe's without
         * comparing lengths: key pointed into this map's own storage with
         * another length. Look the bytes up from a copy instead. */
        unsigned char *copy = malloc(klen > 0 ? klen : 1);
        if (copy == NULL) {
            *oom = true;
            return NULL;
        }
        memcpy(copy, key, klen);
        e = ht_find(ms, copy, klen, &h);
        free(copy);
    }
    return e;
}

/* Puts every entry of ms->ht into a fresh ck_ht sized for them (load at
 * most one half) and swaps it in; on out of memory the old table stays.
 * See "Tombstones" in the DESIGN comment. */
static void ht_rebuild(mph__mstore_t *ms)
{
    ck_ht_t nt;
    ck_ht_iterator_t it = CK_HT_ITERATOR_INITIALIZER;
    ck_ht_entry_t *cur;
    bool ok;

    ht_account_begin();
    ok = ck_ht_init(&nt, CK_HT_MODE_BYTESTRING | CK_HT_WORKLOAD_DELETE, NULL,
                    &ht_allocator, (CK_HT_TYPE)(ms->ents * 2 + HT_INITIAL),
                    ms->seed);
    while (ok && ck_ht_next(&ms->ht, &it, &cur)) {
        struct ent *e = ck_ht_entry_value(cur);
        ck_ht_entry_t slot;
        ck_ht_hash_t h;

        ck_ht_hash(&h, &nt, e->key, e->klen);
        ck_ht_entry_set(&slot, h, e->key, e->klen, e);
        ok = ck_ht_put_spmc(&nt, h, &slot);
        if (!ok)
            ck_ht_destroy(&nt);
    }
    if (ok) {
        ck_ht_destroy(&ms->ht);
        ms->ht = nt;
        ms->removed_since_gc = 0;
    }
    ht_account_end(ms);
}

static void ht_remove(mph__mstore_t *ms, struct ent *e)
{
    ck_ht_entry_t probe;
    ck_ht_hash_t h;

    ck_ht_hash(&h, &ms->ht, e->key, e->klen);
    ck_ht_entry_key_set(&probe, e->key, e->klen);
    ht_account_begin();
    if (!ck_ht_remove_spmc(&ms->ht, h, &probe))
        abort(); /* an ent we hold must be in the table */
    ht_account_end(ms);
    ms->ents--;
    if (++ms->removed_since_gc > ms->ents + HT_REBUILD_SLACK)
        ht_rebuild(ms); /* amortised O(1) per removal */
}

/* Removes e from the table and frees it. */
static void ent_remove(mph__mstore_t *ms, struct ent *e)
{
    lru_unlink(ms, e);
    ht_remove(ms, e);
    if (!(e->flags & ENT_DELETED))
        ms->live--;
    ent_free(ms, e);
}

static const void *ent_value(const struct ent *e)
{
    return e->vcap > 0 ? e->v.heap : e->v.inl;
}

/* Makes e's value a copy of val. Allocates only when val does not fit the
 * current buffer (or would leave it mostly empty). false on out of memory,
 * e unchanged. */
static bool ent_set_value(mph__mstore_t *ms, struct ent *e, const void *val,
                          size_t vlen)
{
    if (vlen <= VAL_INLINE) {
        /* val may point into e's own value: copy it out before the heap
         * buffer (which shares the union with the inline bytes) goes. */
        unsigned char tmp[VAL_INLINE];
        if (vlen > 0)
            memcpy(tmp, val, vlen);
        if (e->vcap > 0) {
            ms->bytes -= heap_cost(e->vcap);
            free(e->v.heap);
            e->vcap = 0;
        }
        if (vlen > 0)
            memcpy(e->v.inl, tmp, vlen);
    } else if (e->vcap >= vlen && vlen >= e->vcap / 4) {
        memmove(e->v.heap, val, vlen);
    } else {
        unsigned char *buf = malloc(vlen);
        if (buf == NULL)
            return false;
        ms->allocs++;
        memcpy(buf, val, vlen);
        if (e->vcap > 0) {
            ms->bytes -= heap_cost(e->vcap);
            free(e->v.heap);
        }
        e->v.heap = buf;
        e->vcap = (uint32_t)vlen;
        ms->bytes += heap_cost(vlen);
    }
    e->vlen = (uint32_t)vlen;
    return true;
}

/* Room for one more dirty ent (and, in undo mode, its undo record). */
static bool dirty_reserve(mph__mstore_t *ms)
{
    struct ent **nd;
    struct undo *nu;
    size_t ncap;

    if (ms->ndirty == ms->dirty_cap) {
        ncap = ms->dirty_cap == 0 ? DIRTY_INITIAL : ms->dirty_cap * 2;
        nd = realloc(ms->dirty, ncap * sizeof(*nd));
        if (nd == NULL)
            return false;
        ms->allocs++;
        if (ms->dirty_cap > 0)
            ms->bytes -= heap_cost(ms->dirty_cap * sizeof(*nd));
        ms->bytes += heap_cost(ncap * sizeof(*nd));
        ms->dirty = nd;
        ms->dirty_cap = ncap;
    }
    if (ms->undo_on && ms->ndirty == ms->undo_cap) {
        ncap = ms->dirty_cap; /* > ndirty */
        nu = realloc(ms->undo, ncap * sizeof(*nu));
        if (nu == NULL)
            return false;
        ms->allocs++;
        if (ms->undo_cap > 0)
            ms->bytes -= heap_cost(ms->undo_cap * sizeof(*nu));
        ms->bytes += heap_cost(ncap * sizeof(*nu));
        ms->undo = nu;
        ms->undo_cap = ncap;
    }
    return true;
}

/* In undo mode, records the pre-image of a key about to be dirtied for the
 * first time in this commit interval: e's value, or "absent" when e is NULL
 * (the write creates the entry). The record goes to undo[ndirty], the slot
 * beside the one mark_dirty fills; it counts only once mark_dirty appended
 * e. Nothing is recorded for a key already dirty: its pre-image is kept.
 * steal moves a heap value into the record instead of copying it (for a
 * delete, which would free it); e's value is then empty. Space reserved by
 * the caller (dirty_reserve). false on out of memory, nothing recorded. */
static bool undo_save(mph__mstore_t *ms, struct ent *e, bool steal)
{
    struct undo *u;

    if (!ms->undo_on || (e != NULL && (e->flags & ENT_DIRTY)))
        return true;
    u = &ms->undo[ms->ndirty];
    u->vlen = 0;
    u->vcap = 0;
    u->present = e != NULL;
    if (e == NULL)
        return true;
    u->vlen = e->vlen;
    if (e->vcap == 0) {
        if (e->vlen > 0)
            memcpy(u->v.inl, e->v.inl, e->vlen);
    } else if (steal) {
        u->v.heap = e->v.heap;
        u->vcap = e->vcap;
        e->vcap = 0;
        e->vlen = 0;
    } else {
        unsigned char *buf = malloc(e->vlen);
        if (buf == NULL)
            return false;
        ms->allocs++;
        memcpy(buf, e->v.heap, e->vlen);
        u->v.heap = buf;
        u->vcap = e->vlen;
        ms->bytes += heap_cost(e->vlen);
    }
    return true;
}

/* Marks e dirty (space reserved by the caller) and takes it off the LRU. */
static void mark_dirty(mph__mstore_t *ms, struct ent *e)
{
    lru_unlink(ms, e);
    if (e->flags & ENT_DIRTY) {
        if (ms->snap_active)
            e->flags |= ENT_REDIRTY;
        return;
    }
    e->flags |= ENT_DIRTY;
    ms->dirty[ms->ndirty++] = e;
}

static bool over_bound(const mph__mstore_t *ms)
{
    return (ms->max_entries > 0 && ms->ents > ms->max_entries) ||
           (ms->max_bytes > 0 && mph__mstore_memory(ms) > ms->max_bytes);
}

static void evict(mph__mstore_t *ms)
{
    if (!ms->cache)
        return;
    while (ms->lru_tail != NULL && over_bound(ms))
        ent_remove(ms, ms->lru_tail);
}

/* Allocates a new ent for key with value val (NULL for a tombstone) and
 * inserts it. NULL on out of memory, the map unchanged. */
static struct ent *ent_insert(mph__mstore_t *ms, ck_ht_hash_t h,
                              const void *key, size_t klen, const void *val,
                              size_t vlen, uint8_t flags)
{
    ck_ht_entry_t slot;
    struct ent *e;
    bool ok;

    e = malloc(sizeof(*e) + klen);
    if (e == NULL)
        return NULL;
    ms->allocs++;
    ms->bytes += ent_cost(klen);
    e->prev = e->next = NULL;
    e->vlen = e->vcap = 0;
    e->klen = (uint16_t)klen;
    e->flags = flags;
    if (klen > 0)
        memcpy(e->key, key, klen);
    if (val != NULL && !ent_set_value(ms, e, val, vlen)) {
        ent_free(ms, e);
        return NULL;
    }
    ck_ht_entry_set(&slot, h, e->key, (uint16_t)klen, e);
    ht_account_begin();
    ok = ck_ht_put_spmc(&ms->ht, h, &slot);
    ht_account_end(ms);
    if (!ok) {
        ent_free(ms, e);
        return NULL;
    }
    ms->ents++;
    if (!(flags & ENT_DELETED))
        ms->live++;
    return e;
}

static bool args_ok(const void **key, size_t klen, size_t vlen)
{
    if (*key == NULL)
        *key = empty_key;
    return klen <= MPH__MSTORE_KEY_MAX && vlen <= UINT32_MAX;
}

/* ------------------------------------------------------------------------
 * Operations
 * ------------------------------------------------------------------------ */

mph__mstore_found_t mph__mstore_lookup(mph__mstore_t *ms, const void *key,
                                       size_t klen, const void **val,
                                       size_t *vlen)
{
    struct ent *e;
    bool oom;

    if (!args_ok(&key, klen, 0))
        return MPH__MSTORE_ABSENT;
    e = find(ms, key, klen, &oom);
    if (e == NULL)
        return MPH__MSTORE_ABSENT;
    if (e->flags & ENT_DELETED)
        return MPH__MSTORE_DELETED;
    lru_touch(ms, e);
    if (val != NULL)
        *val = ent_value(e);
    if (vlen != NULL)
        *vlen = e->vlen;
    return MPH__MSTORE_PRESENT;
}

mph_err_t mph__mstore_get(mph__mstore_t *ms, const void *key, size_t klen,
                          const void **val, size_t *vlen)
{
    return mph__mstore_lookup(ms, key, klen, val, vlen) == MPH__MSTORE_PRESENT
               ? MPH_OK
               : MPH_ERR_NOENT;
}

bool mph__mstore_contains(mph__mstore_t *ms, const void *key, size_t klen)
{
    return mph__mstore_lookup(ms, key, klen, NULL, NULL) == MPH__MSTORE_PRESENT;
}

static mph_err_t put(mph__mstore_t *ms, const void *key, size_t klen,
                     const void *val, size_t vlen, bool absent)
{
    ck_ht_hash_t h;
    struct ent *e;
    bool oom;

    if (!args_ok(&key, klen, vlen))
        return MPH_ERR_RANGE;
    if (val == NULL)
        val = empty_key;
    e = find(ms, key, klen, &oom);
    if (oom)
        return MPH_ERR_NOMEM;
    if (e != NULL) {
        if (!(e->flags & ENT_DIRTY) &&
            (!dirty_reserve(ms) || !undo_save(ms, e, false)))
            return MPH_ERR_NOMEM;
        if (!ent_set_value(ms, e, val, vlen)) {
            if (ms->undo_on && !(e->flags & ENT_DIRTY))
                undo_drop(ms, &ms->undo[ms->ndirty]); /* not counted */
            return MPH_ERR_NOMEM;
        }
        if (e->flags & ENT_DELETED) {
            e->flags &= (uint8_t)~ENT_DELETED;
            ms->live++;
        }
        mark_dirty(ms, e);
        evict(ms); /* a grown value may cross a byte bound */
        return MPH_OK;
    }
    if (!ht_ensure(ms) || !dirty_reserve(ms) || !undo_save(ms, NULL, false))
        return MPH_ERR_NOMEM;
    ck_ht_hash(&h, &ms->ht, key, (uint16_t)klen);
    e = ent_insert(ms, h, key, klen, val, vlen,
                   absent || ms->complete ? ENT_FRESH : 0);
    if (e == NULL)
        return MPH_ERR_NOMEM;
    mark_dirty(ms, e);
    evict(ms);
    return MPH_OK;
}

mph_err_t mph__mstore_put(mph__mstore_t *ms, const void *key, size_t klen,
                          const void *val, size_t vlen)
{
    return put(ms, key, klen, val, vlen, false);
}

mph_err_t mph__mstore_put_fresh(mph__mstore_t *ms, const void *key,
                                size_t klen, const void *val, size_t vlen)
{
    return put(ms, key, klen, val, vlen, true);
}

void mph__mstore_set_complete(mph__mstore_t *ms)
{
    ms->complete = true;
}

mph_err_t mph__mstore_delete(mph__mstore_t *ms, const void *key, size_t klen)
{
    ck_ht_hash_t h;
    struct ent *e;
    bool oom;

    if (!args_ok(&key, klen, 0))
        return MPH_ERR_RANGE;
    e = find(ms, key, klen, &oom);
    if (oom)
        return MPH_ERR_NOMEM;
    if (e != NULL) {
        if (e->flags & ENT_DELETED)
            return MPH_OK;
        if (!(e->flags & ENT_DIRTY) &&
            (!dirty_reserve(ms) || !undo_save(ms, e, true)))
            return MPH_ERR_NOMEM;
        if (e->vcap > 0) {
            ms->bytes -= heap_cost(e->vcap);
            free(e->v.heap);
        }
        e->vcap = e->vlen = 0;
        e->flags |= ENT_DELETED;
        ms->live--;
        mark_dirty(ms, e);
        return MPH_OK;
    }
    if (!ms->cache)
        return MPH_OK; /* a whole map: nothing to delete */
    if (!ht_ensure(ms) || !dirty_reserve(ms) || !undo_save(ms, NULL, false))
        return MPH_ERR_NOMEM;
    ck_ht_hash(&h, &ms->ht, key, (uint16_t)klen);
    e = ent_insert(ms, h, key, klen, NULL, 0, ENT_DELETED);
    if (e == NULL)
        return MPH_ERR_NOMEM;
    mark_dirty(ms, e);
    evict(ms);
    return MPH_OK;
}

mph_err_t mph__mstore_fill(mph__mstore_t *ms, const void *key, size_t klen,
                           const void *val, size_t vlen)
{
    ck_ht_hash_t h;
    struct ent *e;
    bool oom;

    if (!args_ok(&key, klen, vlen))
        return MPH_ERR_RANGE;
    if (val == NULL)
        val = empty_key;
    e = find(ms, key, klen, &oom);
    if (oom)
        return MPH_ERR_NOMEM;
    if (e != NULL) {
        if (e->flags & ENT_DIRTY)
            return MPH_OK;
        if (!ent_set_value(ms, e, val, vlen))
            return MPH_ERR_NOMEM;
        lru_touch(ms, e);
        evict(ms);
        return MPH_OK;
    }
    if (!ht_ensure(ms))
        return MPH_ERR_NOMEM;
    ck_ht_hash(&h, &ms->ht, key, (uint16_t)klen);
    e = ent_insert(ms, h, key, klen, val, vlen, 0);
    if (e == NULL)
        return MPH_ERR_NOMEM;
    lru_push_head(ms, e);
    evict(ms);
    return MPH_OK;
}

mph_err_t mph__mstore_forget(mph__mstore_t *ms, const void *key, size_t klen)
{
    struct ent *e;
    bool oom;

    if (!args_ok(&key, klen, 0))
        return MPH_ERR_RANGE;
    e = find(ms, key, klen, &oom);
    if (oom)
        return MPH_ERR_NOMEM;
    if (e == NULL)
        return MPH_OK;
    if (e->flags & ENT_DIRTY)
        return MPH_ERR_STATE;
    ent_remove(ms, e);
    if (ms->ents == 0)
        ht_release(ms);
    return MPH_OK;
}

size_t mph__mstore_count(const mph__mstore_t *ms)
{
    return ms->live;
}

size_t mph__mstore_dirty_count(const mph__mstore_t *ms)
{
    return ms->ndirty;
}

size_t mph__mstore_memory(const mph__mstore_t *ms)
{
    return heap_cost(sizeof(*ms)) + ms->bytes + (size_t)ms->ht_bytes;
}

uint64_t mph__mstore_alloc_count(const mph__mstore_t *ms)
{
    return ms->allocs;
}

/* ------------------------------------------------------------------------
 * Iteration and the dirty set
 * ------------------------------------------------------------------------ */

void mph__mstore_iter_init(mph__mstore_iter_t *it, mph__mstore_t *ms)
{
    it->ms = ms;
    ck_ht_iterator_init(&it->pos);
}

bool mph__mstore_iter_next(mph__mstore_iter_t *it, const void **key,
                           size_t *klen, const void **val, size_t *vlen)
{
    ck_ht_entry_t *slot;

    if (!it->ms->ht_ready)
        return false;
    while (ck_ht_next(&it->ms->ht, &it->pos, &slot)) {
        const struct ent *e = ck_ht_entry_value(slot);
        if (e->flags & ENT_DELETED)
            continue;
        *key = e->key;
        *klen = e->klen;
        if (val != NULL)
            *val = ent_value(e);
        if (vlen != NULL)
            *vlen = e->vlen;
        return true;
    }
    return false;
}

mph_err_t mph__mstore_dirty_foreach(mph__mstore_t *ms, mph__mstore_dirty_cb cb,
                                    void *opaque)
{
    size_t i;

    for (i = 0; i < ms->ndirty; i++) {
        struct ent *e = ms->dirty[i];
        bool deleted = (e->flags & ENT_DELETED) != 0;
        if (e->flags & ENT_FRESH) {
            if (deleted)
                continue; /* never written: nothing to delete */
            e->flags &= (uint8_t)~ENT_FRESH; /* this value may land */
        }
        mph_err_t rc =
            cb(opaque, e->key, e->klen, deleted ? NULL : ent_value(e),
               deleted ? 0 : e->vlen, deleted);
        if (rc != MPH_OK)
            return rc;
    }
    return MPH_OK;
}

void mph__mstore_dirty_clear(mph__mstore_t *ms)
{
    size_t i;

    undo_forget_all(ms);
    for (i = 0; i < ms->ndirty; i++) {
        struct ent *e = ms->dirty[i];
        if (e->flags & ENT_DELETED) {
            ent_remove(ms, e);
        } else {
            e->flags &= (uint8_t)~(ENT_DIRTY | ENT_FRESH);
            lru_push_head(ms, e);
        }
    }
    ms->ndirty = 0;
    if (ms->dirty_cap > DIRTY_KEEP)
        dirty_array_release(ms);
    if (ms->ht_ready && ms->ents == 0) {
        ht_release(ms);
    }
    evict(ms);
}

void mph__mstore_snapshot_begin(mph__mstore_t *ms)
{
    ms->snap_n = ms->ndirty;
    ms->snap_active = true;
}

void mph__mstore_snapshot_commit(mph__mstore_t *ms)
{
    size_t i, keep = 0;

    if (!ms->snap_active)
        return;
    for (i = 0; i < ms->ndirty; i++) {
        struct ent *e = ms->dirty[i];
        if (i >= ms->snap_n || (e->flags & ENT_REDIRTY)) {
            e->flags &= (uint8_t)~ENT_REDIRTY;
            if (ms->undo_on) {
                /* A key the commit carried and that was written again
                 * since: its pre-image predates the value just
                 * committed, which nothing kept. */
                if (i < ms->snap_n)
                    ms->undo_lost = true;
                ms->undo[keep] = ms->undo[i];
            }
            ms->dirty[keep++] = e; /* newer than what the commit carried */
        } else {
            if (ms->undo_on)
                undo_drop(ms, &ms->undo[i]);
            if (e->flags & ENT_DELETED) {
                ent_remove(ms, e);
            } else {
                e->flags &= (uint8_t) ~(ENT_DIRTY | ENT_FRESH);
                lru_push_head(ms, e);
            }
        }
    }
    ms->ndirty = keep;
    if (keep == 0)
        ms->undo_lost = false;
    ms->snap_active = false;
    ms->snap_n = 0;
    if (keep == 0 && ms->dirty_cap > DIRTY_KEEP)
        dirty_array_release(ms);
    if (ms->ht_ready && ms->ents == 0)
        ht_release(ms);
    evict(ms);
}

void mph__mstore_snapshot_abort(mph__mstore_t *ms)
{
    for (size_t i = 0; i < ms->ndirty; i++)
        ms->dirty[i]->flags &= (uint8_t)~ENT_REDIRTY;
    ms->snap_active = false;
    ms->snap_n = 0;
}

mph_err_t mph__mstore_drain_dirty(mph__mstore_t *ms, mph__mstore_dirty_cb cb,
                                  void *opaque)
{
    mph_err_t rc = mph__mstore_dirty_foreach(ms, cb, opaque);

    if (rc == MPH_OK)
        mph__mstore_dirty_clear(ms);
    return rc;
}

/* ------------------------------------------------------------------------
 * Undo mode and rollback
 * ------------------------------------------------------------------------ */

mph_err_t mph__mstore_set_undo(mph__mstore_t *ms, bool on)
{
    if (on == ms->undo_on)
        return MPH_OK;
    if (on) {
        if (ms->cache || ms->ndirty > 0)
            return MPH_ERR_STATE;
        ms->undo_on = true;
        return MPH_OK; /* the undo array comes with the first write */
    }
    undo_forget_all(ms);
    if (ms->undo_cap > 0)
        ms->bytes -= heap_cost(ms->undo_cap * sizeof(*ms->undo));
    free(ms->undo);
    ms->undo = NULL;
    ms->undo_cap = 0;
    ms->undo_on = false;
    return MPH_OK;
}

bool mph__mstore_undo(const mph__mstore_t *ms)
{
    return ms->undo_on;
}

/* Puts e back to its pre-image u: the value it had (taking u's heap copy
 * over, so nothing is allocated) and clean. */
static void undo_restore(mph__mstore_t *ms, struct ent *e, struct undo *u)
{
    if (e->vcap > 0) {
        ms->bytes -= heap_cost(e->vcap);
        free(e->v.heap);
    }
    if (u->vcap > 0) {
        e->v.heap = u->v.heap; /* its bytes are counted already */
        e->vcap = u->vcap;
        u->vcap = 0;
    } else {
        if (u->vlen > 0)
            memcpy(e->v.inl, u->v.inl, u->vlen);
        e->vcap = 0;
    }
    e->vlen = u->vlen;
    if (e->flags & ENT_DELETED)
        ms->live++;
    e->flags &= (uint8_t) ~(ENT_DIRTY | ENT_DELETED | ENT_FRESH | ENT_REDIRTY);
    lru_push_head(ms, e);
}

mph_err_t mph__mstore_rollback(mph__mstore_t *ms)
{
    size_t i;

    if (ms->snap_active)
        return MPH_ERR_STATE;
    if (!ms->cache && (!ms->undo_on || ms->undo_lost))
        return MPH_ERR_STATE;
    for (i = 0; i < ms->ndirty; i++) {
        struct ent *e = ms->dirty[i];
        if (ms->cache || !ms->undo[i].present)
            ent_remove(ms, e); /* the store behind, or nothing, holds it */
        else
            undo_restore(ms, e, &ms->undo[i]);
    }
    ms->ndirty = 0;
    ms->undo_lost = false;
    if (ms->dirty_cap > DIRTY_KEEP)
        dirty_array_release(ms);
    if (ms->ht_ready && ms->ents == 0)
        ht_release(ms);
    return MPH_OK;
}

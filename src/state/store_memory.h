/*
 * state/store_memory.h — the in-memory map of one table shard (internal).
 *
 * Two uses, one structure:
 *   - a *whole* map (mph__mstore_new): the entire shard of a `memory` table;
 *   - a *cache* (mph__mstore_new_cache): the bounded cache plus dirty set in
 *     front of a RocksDB shard, so tables larger than RAM work. Clean entries
 *     are evicted least-recently-used first when over the bound; dirty ones
 *     never are.
 *
 * Keys and values are byte strings, copied in. Keys are at most
 * MPH__MSTORE_KEY_MAX bytes (ck_ht stores key lengths in 16 bits); values at
 * most UINT32_MAX bytes. Writes (put, delete) mark a key dirty; a delete
 * leaves a tombstone until the dirty set is cleared. At a commit the table
 * layer visits the dirty set once per key with its latest value or
 * "deleted" (the coalesced changelog and the commit WriteBatch), writes
 * them, and then clears the marks.
 *
 * Rollback (exactly_once: an aborted transaction): mph__mstore_rollback
 * puts the map back to its state at the last commit, i.e. the last
 * dirty_clear, drain_dirty or snapshot_commit. A cache simply drops its
 * dirty entries and tombstones (the store behind holds the committed
 * state). A whole map is the only copy of its table, so it must have kept
 * each dirty key's pre-image: it does in undo mode (mph__mstore_set_undo),
 * off by default so that at_least_once pays nothing for it.
 *
 * Threads: a map belongs to the worker thread that owns its shard (or to the
 * coordinator while it recovers the shard, before hand-over). No function
 * here takes a lock or may be called from two threads at once.
 *
 * Errors: MPH_ERR_NOMEM (the map is unchanged), MPH_ERR_RANGE (key or value
 * too long), MPH_ERR_STATE (see mph__mstore_forget, mph__mstore_set_undo,
 * mph__mstore_rollback; nothing changed).
 */
#ifndef MPH_STATE_STORE_MEMORY_H
#define MPH_STATE_STORE_MEMORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ck_ht.h>

#include "mephisto/common.h"

#define MPH__MSTORE_KEY_MAX 65535u

typedef struct mph__mstore mph__mstore_t;

/* A whole, unbounded map. Allocates only its small header (well under
 * 1 KiB); the hash table is made on the first insert and freed again when
 * the map empties. NULL on out of memory. @locality owner */
mph__mstore_t *mph__mstore_new(void);

/* A cache in front of a store: deleting a key it does not hold still
 * records a tombstone (the key may exist behind it), and clean entries are
 * evicted when the map holds more than max_entries entries or uses more
 * than max_bytes (mph__mstore_memory); 0 means no bound of that kind.
 * NULL on out of memory. @locality owner */
mph__mstore_t *mph__mstore_new_cache(size_t max_entries, size_t max_bytes);

/* Frees the map and everything in it, dirty or not. NULL is a no-op. */
void mph__mstore_destroy(mph__mstore_t *ms);

typedef enum mph__mstore_found {
    MPH__MSTORE_ABSENT = 0,  /* not in the map (a cache asks the store) */
    MPH__MSTORE_PRESENT = 1, /* *val, *vlen are set */
    MPH__MSTORE_DELETED = 2  /* deleted, not yet cleared: the key is gone */
} mph__mstore_found_t;

/* Looks key up. On PRESENT, *val is borrowed: valid until the next write of
 * that key (put, delete, fill, forget), clear or destroy — and, in a cache,
 * until the next put, fill or dirty-clear, which may evict clean entries.
 * A hit marks the entry recently used. val and vlen may be NULL. */
mph__mstore_found_t mph__mstore_lookup(mph__mstore_t *ms, const void *key,
                                       size_t klen, const void **val,
                                       size_t *vlen);
/* lookup() as an error code: MPH_OK when present, else MPH_ERR_NOENT. */
mph_err_t mph__mstore_get(mph__mstore_t *ms, const void *key, size_t klen,
                          const void **val, size_t *vlen);
/* True when key is present (not absent, not deleted). */
bool mph__mstore_contains(mph__mstore_t *ms, const void *key, size_t klen);

/* Sets key to a copy of val and marks it dirty. Replacing a value with one
 * that fits its current buffer (every value of at most 16 bytes, e.g. an
 * i64 counter, fits inline) allocates nothing. In a cache it may evict
 * clean entries (never this one). */
mph_err_t mph__mstore_put(mph__mstore_t *ms, const void *key, size_t klen,
                          const void *val, size_t vlen);

/* put() for a key the caller knows is absent from the durable state behind
 * the map (e.g. a cache whose store just answered "not found"): should the
 * entry it creates be deleted before any commit visited one of its values,
 * the tombstone is not visited at all. Same as put() when the key is in the
 * map already, tombstone or not. */
mph_err_t mph__mstore_put_fresh(mph__mstore_t *ms, const void *key,
                                size_t klen, const void *val, size_t vlen);

/* Declares a whole map complete: it holds the shard's entire durable
 * state, so every put that creates an entry is a put_fresh(). */
void mph__mstore_set_complete(mph__mstore_t *ms);

/* Deletes key: the entry becomes a dirty tombstone until the dirty set is
 * cleared. Deleting an absent key records a tombstone in a cache and does
 * nothing in a whole map. */
mph_err_t mph__mstore_delete(mph__mstore_t *ms, const void *key, size_t klen);

/* Inserts or replaces key as a *clean* entry: a value read from the store
 * behind a cache, or a changelog record applied during recovery. A no-op
 * when key is dirty (the map's own write is newer). May evict in a cache. */
mph_err_t mph__mstore_fill(mph__mstore_t *ms, const void *key, size_t klen,
                           const void *val, size_t vlen);

/* Removes a clean entry without a tombstone (a changelog delete applied
 * during recovery, or cache invalidation). MPH_OK when removed or absent;
 * MPH_ERR_STATE, leaving it, when the entry is dirty. */
mph_err_t mph__mstore_forget(mph__mstore_t *ms, const void *key, size_t klen);

/* Number of present keys (tombstones not counted). For a cache, the keys it
 * holds now, not the shard's size. */
size_t mph__mstore_count(const mph__mstore_t *ms);
/* Number of dirty keys, tombstones included. */
size_t mph__mstore_dirty_count(const mph__mstore_t *ms);
/* Approximate bytes used: header, hash table, entries, values and dirty
 * list, each heap block counted with an estimate of malloc's overhead. */
size_t mph__mstore_memory(const mph__mstore_t *ms);
/* Heap allocations made by the map since it was created (for tests and
 * stats: an in-place update must not add to it). */
uint64_t mph__mstore_alloc_count(const mph__mstore_t *ms);

/* Removes every entry, dirty ones included, and frees the hash table
 * (used when a shard is dropped). Pre-images go too; undo mode stays. */
void mph__mstore_clear(mph__mstore_t *ms);

/* Iteration over present keys in no particular order. The iterator is
 * stable while the map is not written; any write ends its validity (a
 * lookup in a cache is not a write). Keys and values are borrowed like
 * lookup()'s. Stack-allocate an mph__mstore_iter_t and init it. */
typedef struct mph__mstore_iter {
    mph__mstore_t *ms;
    ck_ht_iterator_t pos;
} mph__mstore_iter_t;
void mph__mstore_iter_init(mph__mstore_iter_t *it, mph__mstore_t *ms);
bool mph__mstore_iter_next(mph__mstore_iter_t *it, const void **key,
                           size_t *klen, const void **val, size_t *vlen);

/* Called once per dirty key with its latest value, or with deleted = true
 * (val NULL, vlen 0). key and val are borrowed for the call. Must not write
 * the map. Returning anything but MPH_OK stops the visit. */
typedef mph_err_t (*mph__mstore_dirty_cb)(void *opaque, const void *key,
                                          size_t klen, const void *val,
                                          size_t vlen, bool deleted);

/* Visits every dirty key once (latest value wins: the coalescing of a
 * commit interval), except the tombstones of keys that never had a value
 * visited and are absent from the durable state (put_fresh,
 * set_complete): nothing was written of those. Changes nothing else.
 * Returns the first non-OK result of cb, else MPH_OK. */
mph_err_t mph__mstore_dirty_foreach(mph__mstore_t *ms, mph__mstore_dirty_cb cb,
                                    void *opaque);
/* Clears every dirty mark: tombstones are removed, written entries become
 * clean (and evictable in a cache). Call it after the commit that carried
 * the dirty set succeeded, with no write to the map in between. */
void mph__mstore_dirty_clear(mph__mstore_t *ms);
/* Asynchronous commits: snapshot_begin marks the dirty set as it is now
 * (visit it with dirty_foreach right away, before any write); writes may go
 * on. snapshot_commit, once that commit succeeded, turns clean exactly the
 * keys whose latest value it carried (keys written since stay dirty);
 * snapshot_abort, after a failed one, leaves every key dirty. At most one
 * snapshot at a time; dirty_clear must not be called during one. */
void mph__mstore_snapshot_begin(mph__mstore_t *ms);
void mph__mstore_snapshot_commit(mph__mstore_t *ms);
void mph__mstore_snapshot_abort(mph__mstore_t *ms);
/* dirty_foreach() and, if every cb returned MPH_OK, dirty_clear(); on a
 * failure the dirty set stays whole so the commit can be retried. */
mph_err_t mph__mstore_drain_dirty(mph__mstore_t *ms, mph__mstore_dirty_cb cb,
                                  void *opaque);

/* Undo mode of a whole map, for exactly_once. While on, the first write
 * (put, put_fresh, delete) of a key that is not dirty yet records the key's
 * previous state — its value (one copy) or "absent" — beside the dirty set;
 * later writes of that key record nothing. Committing (dirty_clear,
 * drain_dirty, snapshot_commit) forgets the records of the keys it turns
 * clean. Turning it on needs an empty dirty set (the keys already dirty
 * have no pre-image) and a whole map (a cache needs none): MPH_ERR_STATE
 * otherwise. Turning it off frees the records; rollback is then refused.
 * Off by default. @locality owner */
mph_err_t mph__mstore_set_undo(mph__mstore_t *ms, bool on);
/* True while undo mode is on. */
bool mph__mstore_undo(const mph__mstore_t *ms);

/* Undoes every write since the last commit and empties the dirty set:
 *   - a whole map in undo mode puts each dirty key back to its pre-image:
 *     the old value as a clean entry, or no entry for a key the interval
 *     created (fresh marks go with the entries: a restored entry is clean,
 *     so not fresh). Count, memory and contents are as after the commit,
 *     except for the capacity of the hash table and of the dirty and undo
 *     arrays, which stay;
 *   - a cache drops every dirty entry and tombstone; clean entries stay, and
 *     a later lookup of a dropped key asks the store behind again.
 * After a failed commit (drain_dirty's error, snapshot_abort) the dirty set
 * is whole and rollback undoes it all. It never allocates and cannot fail
 * otherwise; MPH_ERR_STATE, changing nothing, when:
 *   - a snapshot is active (end it with snapshot_abort first: the commit it
 *     carried failed, or rollback would not be called);
 *   - a whole map is not in undo mode;
 *   - a snapshot_commit kept dirty a key it carried that was written again
 *     during the snapshot: the value it committed for that key was not
 *     kept (exactly_once commits synchronously, so this does not arise
 *     there). It clears when the dirty set next empties.
 * Values and keys that lookup() or the iterator handed out for dirty keys
 * are invalid afterwards. @locality owner */
mph_err_t mph__mstore_rollback(mph__mstore_t *ms);

#endif /* MPH_STATE_STORE_MEMORY_H */
